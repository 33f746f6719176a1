"""The whole results of a period, as `cyklo report` prints them: the journeys' funnels, the
experiments and the lifecycle KPIs, one section each, each the report its own API route
serves (`/v1/reports/journeys/{journey}`, `/v1/reports/experiments`, `/v1/reports/lifecycle`).

The CSV is one table: a leading `section` column (`journeys`, `experiments`, `lifecycle`),
then every section's columns in turn, a column the sections share (`journey`, `converted`,
`conversion_rate`, `revenue`) shared, the others left empty on the other sections' rows. The
lifecycle's own part of a row (stages_now, flow, cohort, …) is its `kpi`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from reports import experiments, funnel, lifecycle
from reports.experiments import ExperimentsReport
from reports.funnel import JourneysReport
from reports.lifecycle import LifecycleReport

LIFECYCLE_COLUMNS = {"section": "kpi"}
"""The lifecycle CSV's own columns renamed where they would clash with the combined one's."""


def _union(*columns: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for names in columns for name in names))


CSV_COLUMNS = _union(
    ["section"],
    funnel.CSV_COLUMNS,
    experiments.CSV_COLUMNS,
    (LIFECYCLE_COLUMNS.get(name, name) for name in lifecycle.CSV_COLUMNS),
)


class Results(BaseModel):
    journeys: JourneysReport
    experiments: ExperimentsReport
    lifecycle: LifecycleReport

    def as_text(self) -> str:
        sections = (
            ("Journeys", self.journeys.as_text()),
            ("Experiments", self.experiments.as_text()),
            ("Lifecycle", self.lifecycle.as_text()),
        )
        return "\n\n".join(f"== {title}\n\n{text.rstrip()}" for title, text in sections)

    def as_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.csv_rows())
        return out.getvalue()

    def csv_rows(self) -> Iterable[dict[str, Any]]:
        for row in funnel.csv_rows(self.journeys.journeys):
            yield {"section": "journeys", **row}
        for row in self.experiments.csv_rows():
            yield {"section": "experiments", **row}
        for row in self.lifecycle.csv_rows():
            yield {
                "section": "lifecycle",
                **{LIFECYCLE_COLUMNS.get(name, name): value for name, value in row.items()},
            }
