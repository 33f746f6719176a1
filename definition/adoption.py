"""Customers in flight and newer versions: which version a running customer adopts, and where
a customer of a stage that a later version renamed or removed goes — never guessed.

Pure: the journey machine adopts at stage entries with it, `cyklo publish` refuses a version
that loses a stage with it, and `cyklo publish --plan` tells what will happen with it.
"""

from __future__ import annotations

from definition.model import REMOVED_STAGE_EXITS, Journey


def stage_in(journey: Journey, stage: str) -> str | None:
    """Where a customer of `stage` (a stage of an earlier version) is in `journey`: the same
    stage, the one it was renamed to, the one its removal sends to, or `exit`; None when the
    version does not say."""
    if stage in journey.stages:
        return stage
    if stage in journey.renamed_stages:
        return journey.renamed_stages[stage]
    return journey.removed_stages.get(stage)


def unmapped_stages(before: Journey, after: Journey) -> list[str]:
    """Stages of `before` that `after` neither has nor maps: publishing `after` would have to
    guess where their customers go."""
    return [stage for stage in before.stages if stage_in(after, stage) is None]


def adopted_by_running_customers(newest: Journey) -> bool:
    return newest.versioning == "stage_boundary"


def fate(stage: str, version: int, newest: Journey, newest_version: int) -> str:
    """What publishing `newest` does to the customers of `stage` on `version`: a line of
    `cyklo publish --plan`."""
    if version >= newest_version:
        return f"already on v{newest_version}"
    if not adopted_by_running_customers(newest):
        return f"stay on v{version}: v{newest_version} says `versioning: pin`"
    target = stage_in(newest, stage)
    if target is None:
        return f"stay on v{version}: v{newest_version} has no stage {stage!r} and does not map it"
    if target == stage:
        return f"adopt v{newest_version} at their next stage entry"
    where = "exit the journey" if target == REMOVED_STAGE_EXITS else f"go to {target}"
    return (
        f"keep v{version}'s {stage} until they leave it, then adopt v{newest_version} "
        f"(mapped: {stage} → {target}; `cyklo act upgrade` makes one {where} now)"
    )
