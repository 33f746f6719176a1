"""`POST /v1/import/customers|orders|start`: an existing customer base in chunks, the same rows
as `cyklo import` takes (ingestion.imports), under the `import` scope."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from api import errors
from api.bounded_json import BoundedJsonRoute
from api.dependencies import RouterDep, SettingsDep, requires
from api.models import API_KEY
from definition.identifiers import Identifier
from ingestion.importer import NoImportedEntry, Started, customer_ids, load_chunk, start_customers
from ingestion.imports import CHUNK_ROWS, ImportKind, RawRow

router = APIRouter(
    tags=["import"],
    route_class=BoundedJsonRoute,
    dependencies=[API_KEY, Depends(requires("import"))],
    responses=errors.responses(401, 403, 413, 422, 503),
)


class ImportRows(BaseModel):
    rows: list[dict[str, Any]] = Field(max_length=CHUNK_ROWS)
    """Rows as `cyklo import` reads a JSON lines file: one object per customer or order."""
    first_line: int = Field(default=1, ge=1)
    """The line of the first row in the caller's file, so problems name the file's lines."""


class RowProblem(BaseModel):
    line: int
    field: str
    message: str


class ImportOutcome(BaseModel):
    loaded: int
    """Rows written: new, or different from what was saved."""
    unchanged: int
    """Good rows already saved the same (a repeated import)."""
    bad: int
    problems: list[RowProblem]


class StartCustomers(BaseModel):
    """Whom to start: these customers, or else the next page of customers with a profile (by
    id, after `after`; from the first without it)."""

    customer_ids: list[Identifier] | None = Field(default=None, min_length=1, max_length=CHUNK_ROWS)
    after: str | None = Field(default=None, max_length=128)


class StartOutcome(BaseModel):
    started: int
    already: int
    """Started by an earlier call: not started again."""
    failed: int
    """Temporal did not answer in time: send these again."""
    next_after: str | None = None
    """For a page: `after` of the next page; None when this was the last."""


async def _load(kind: ImportKind, body: ImportRows, settings: SettingsDep) -> ImportOutcome:
    rows = [RawRow(body.first_line + index, values) for index, values in enumerate(body.rows)]
    result = await asyncio.to_thread(load_chunk, settings.database_url, kind, rows, settings.currency)
    return ImportOutcome(
        loaded=result.counts.loaded,
        unchanged=result.counts.unchanged,
        bad=result.counts.bad,
        problems=[RowProblem(line=p.line, field=p.field, message=p.message) for p in result.problems],
    )


@router.post("/v1/import/customers")
async def import_customers(body: ImportRows, settings: SettingsDep) -> ImportOutcome:
    """Up to 1,000 customer profiles with consents (their source and time); a profile saved
    the same already is unchanged, a bad row is named by line and field and the rest saved."""
    return await _load(ImportKind.CUSTOMERS, body, settings)


@router.post("/v1/import/orders")
async def import_orders(body: ImportRows, settings: SettingsDep) -> ImportOutcome:
    """Up to 1,000 past orders, recorded as `purchase` events under their order id: history
    that no journey hears of and no message is credited with."""
    return await _load(ImportKind.ORDERS, body, settings)


@router.post(
    "/v1/import/start",
    response_model=StartOutcome,
    responses=errors.responses(
        409, r409={"description": "no published journey has an `imported: true` entry"}
    ),
)
async def import_start(body: StartCustomers, router: RouterDep, settings: SettingsDep) -> Any:
    """Start the journeys' `imported: true` entries for up to 1,000 customers, once per
    customer ever: each enters where its history puts it."""
    if body.customer_ids is not None:
        ids, next_after = body.customer_ids, None
    else:
        ids = await asyncio.to_thread(customer_ids, settings.database_url, body.after, CHUNK_ROWS)
        next_after = ids[-1] if len(ids) == CHUNK_ROWS else None
    try:
        outcome = await start_customers(router, ids) if ids else Started()
    except NoImportedEntry as problem:
        return errors.refusal(409, str(problem))
    return StartOutcome(
        started=outcome.started, already=outcome.already, failed=outcome.failed, next_after=next_after
    )
