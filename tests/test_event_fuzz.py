"""Random event bodies (hypothesis): no server error, every refusal names a field, and nothing
accepted ever fails a workflow task — the journey stays healthy and handles the next purchase."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import hypothesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

from definition.events import DECLARED, DELIVERY_PROPERTIES, ValueKind, declared, invalid_declared
from routing.events import IncomingEvent
from tests.conftest import World
from tests.test_api import AS_SHOP, api, signed_up
from tests.test_event_rules import eventually, purchase, task_failures
from workflows.interface import JourneyEvent, workflow_id
from workflows.journey import JourneyWorkflow

__all__ = ["api"]

OURS = "<the example's customer>"
"""Stands for a fresh customer id, made in the test: strategies must not invent ids at random."""

TRICKY_TEXT = [
    "\udcff",
    "\ud800x",
    "a\x00b",
    "line\nbreak",
    "nan",
    "NaN",
    "Infinity",
    "-1",
    "1e999",
    "250.00",
    "1_000",
    "shoes",
    "ala@example.com",
    "+48 601 234 567",
    "601234567",
    "o-1",
    "x" * 300,
]
def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`good` about six times in seven (hypothesis favours the edges of a range: 0 and 6 are both good)."""
    return st.integers(min_value=0, max_value=6).flatmap(lambda n: bad if n == 3 else good)


names = sorted({name for spec in DECLARED.values() for name in spec} | set(DELIVERY_PROPERTIES))
text = st.text(st.characters(exclude_categories=()), max_size=12) | st.sampled_from(TRICKY_TEXT)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([10**400, -(10**400), 2**63, 10**18])
    | st.floats(allow_nan=True, allow_infinity=True)
    | text
)


def _deep(depth: int) -> Any:
    value: Any = "bottom"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3), max_leaves=8
) | st.builds(_deep, st.integers(min_value=20, max_value=200))
PLAUSIBLE = {
    ValueKind.ID: st.sampled_from(["o-1", 1001, "k-1", "shop:42", None]),
    ValueKind.TEXT: st.sampled_from(["shoes", "Buty męskie", "kategoria 42", ""]),
    ValueKind.NUMBER: st.sampled_from([250.0, "250.00", 0, 999_999_999, 19.9]),
    ValueKind.COUNT: st.sampled_from([0, 3, "2", 4.0]),
}
keys = mostly(st.sampled_from(names), st.sampled_from(["phone_number", "e_mail", "lastName", "ip_address"]) | text)
times = st.builds(
    lambda at, minutes: at.replace(tzinfo=timezone(timedelta(minutes=minutes))).isoformat(),
    mostly(
        st.datetimes(min_value=datetime(1960, 1, 1), max_value=datetime(2250, 1, 1)),
        st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    ),
    st.integers(min_value=-1439, max_value=1439),
) | st.sampled_from(["2026-03-02T10:00:00", "yesterday", "2026-03-02T10:00:00Z"])
types = mostly(
    st.sampled_from(
        ["signed_up", "purchase", "cart_abandoned", "email_opened", "email_clicked", "email_bounced", "visit"]
    ),
    st.text(max_size=8),
)


@st.composite
def event_bodies(draw: st.DrawFn) -> Any:
    """Mostly plausible events with some wrong parts; sometimes not an event at all."""
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        return draw(values)
    body: dict[str, Any] = {
        "customer_id": draw(mostly(st.just(OURS), values)),
        "type": draw(mostly(types, values)),
    }
    spec = declared(body["type"]) if isinstance(body["type"], str) else {}
    chosen = draw(st.lists(st.sampled_from(sorted(spec)), unique=True)) if spec else []
    properties = {name: draw(mostly(PLAUSIBLE[spec[name].kind], values)) for name in chosen}
    if draw(st.integers(min_value=0, max_value=3)) == 0:
        properties[draw(keys)] = draw(values)
    if draw(st.booleans()) or len(properties) > 0:
        body["properties"] = draw(mostly(st.just(properties), values))
    if draw(st.booleans()):
        body["occurred_at"] = draw(mostly(times, values))
    if draw(st.booleans()):
        body["event_id"] = draw(mostly(st.just("fz-given-id"), values))
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        body[draw(text)] = draw(values)  # a field no event has
    return body


def _with_customer(body: Any, customer: str, index: int) -> Any:
    if isinstance(body, dict):
        body = dict(body)
        if body.get("customer_id") == OURS:
            body["customer_id"] = customer
        if body.get("event_id") == "fz-given-id":
            body["event_id"] = f"{customer}-random-{index}"
    return body


def _encoded(body: Any) -> bytes:
    # Python's encoder writes lone surrogates as \udcff escapes, NaN as NaN and 10**400 in
    # full: what a careless client sends.
    return json.dumps(body, allow_nan=True).encode()


@settings(max_examples=300, deadline=None, database=None)
@given(body=event_bodies())
def test_validation_of_random_bodies_refuses_with_a_field_or_accepts_what_a_workflow_can_use(
    body: Any,
) -> None:
    try:
        event = IncomingEvent.model_validate(_with_customer(body, "c-1", 0))
    except ValidationError as error:
        for problem in error.errors():
            assert problem["msg"], problem
            json.dumps(problem["loc"]).encode()  # field names can be shown
        hypothesis.event("refused")
        return
    hypothesis.event("accepted")
    payload = JourneyEvent(
        event_id=event.event_id, type=event.type, occurred_at=event.occurred_at, properties=event.properties
    )
    assert invalid_declared(event.type, event.properties) == []
    assert pydantic_data_converter.payload_converter.to_payloads([payload])
    assert set(event.properties) <= set(DECLARED.get(event.type, DELIVERY_PROPERTIES))


_customers = itertools.count()


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=event_bodies())
async def test_random_event_bodies_never_break_the_api_or_a_journey(
    api: httpx.AsyncClient, world: World, body: Any
) -> None:
    index = next(_customers)
    customer = f"fz-{index}"
    assert (await api.post("/v1/events", json=signed_up(f"{customer}-start", customer), headers=AS_SHOP)).status_code == 202
    sent = _with_customer(body, customer, index)

    answer = await api.post(
        "/v1/events", content=_encoded(sent), headers={**AS_SHOP, "Content-Type": "application/json"}
    )

    assert answer.status_code in (202, 422), answer.text
    hypothesis.event(f"answered {answer.status_code}")
    answered = answer.json()
    if "results" not in answered:
        assert answer.status_code == 422 and all(problem.get("field") for problem in answered["detail"])
        return
    touched = {customer}
    for result in answered["results"]:
        if result["status"] == "rejected":
            assert result["errors"] and all(error["field"] for error in result["errors"]), result
        else:
            assert result["status"] in ("accepted", "duplicate"), result
            touched.add(sent["customer_id"] if isinstance(sent, dict) else customer)
    following = purchase(f"{customer}-after", customer)
    assert (await api.post("/v1/events", json=following, headers=AS_SHOP)).status_code == 202

    async def handled() -> bool:
        view = await world.env.client.get_workflow_handle(workflow_id("lifecycle", customer)).query(
            JourneyWorkflow.view
        )
        effects = {record.event_id: record.effect for record in view.recent_events}
        return following["event_id"] in effects and not effects[following["event_id"]].startswith("skipped")

    await eventually(handled)
    for someone in touched:
        for journey in ("lifecycle", "abandoned_cart"):
            handle = world.env.client.get_workflow_handle(workflow_id(journey, someone))
            try:
                assert await task_failures(handle) == 0, f"{journey} of {someone} failed a workflow task"
            except RPCError as error:
                assert error.status == RPCStatusCode.NOT_FOUND

