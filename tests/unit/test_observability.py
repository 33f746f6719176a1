"""What /metrics calls a rejection, and when traces are on: pure rules, no server."""

from __future__ import annotations

from typing import Any, cast

import pytest

from api.ingest import route_all
from api.metrics import rejection_reason
from process.tracing import TracingSetupError, provider_from_environment
from routing.events import EventRouter

pytestmark = pytest.mark.unit

EVENT = {"event_id": "e-1", "customer_id": "c-1", "type": "signed_up"}


async def _reason(item: Any) -> str:
    # Rejected items never reach the router: the real validation path, without a server.
    (result,) = await route_all(cast(EventRouter, None), [item], budget=1.0)
    assert result.status == "rejected", result
    return rejection_reason(result)


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({**EVENT, "type": "Signed Up"}, "type"),
        ({**EVENT, "customer_id": ""}, "customer_id"),
        ({**EVENT, "occurred_at": "yesterday"}, "occurred_at"),
        ({**EVENT, "type": "review_submitted", "properties": {"score": 11}}, "properties"),
        (
            {
                **EVENT,
                "type": "purchase",
                "properties": {"order_id": "o-1", "amount": 1.0, "category": "ola@example.com"},
            },
            "personal_data",
        ),
        (
            {
                **EVENT,
                "type": "purchase",
                "properties": {"order_id": "o-1", "amount": 1.0, "category": "+48 601 234 567"},
            },
            "personal_data",
        ),
        ({**EVENT, "colour": "red"}, "unknown_field"),
        ([EVENT], "not_an_object"),
    ],
)
async def test_a_rejection_is_labelled_by_the_field_at_fault_never_by_what_was_sent(
    item: Any, reason: str
) -> None:
    assert await _reason(item) == reason


def test_traces_are_off_until_an_exporter_is_configured() -> None:
    assert provider_from_environment({}) is None
    assert provider_from_environment({"OTEL_TRACES_EXPORTER": "none"}) is None
    assert (
        provider_from_environment(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}
        )
        is None
    )


def test_an_otlp_endpoint_or_a_named_exporter_turns_them_on_under_the_service_name() -> None:
    by_endpoint = provider_from_environment({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    named = provider_from_environment({"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "cyklo-eu"})

    assert by_endpoint is not None and by_endpoint.resource.attributes["service.name"] == "cyklo"
    assert named is not None and named.resource.attributes["service.name"] == "cyklo-eu"


@pytest.mark.parametrize(
    ("environment", "variable"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
    ],
)
def test_an_exporter_cyklo_does_not_ship_is_refused_naming_the_variable(
    environment: dict[str, str], variable: str
) -> None:
    with pytest.raises(TracingSetupError, match=variable):
        provider_from_environment(environment)


def test_a_segment_call_refused_before_routing_is_counted_rejected_by_the_event_field() -> None:
    from api.metrics import EVENTS, EVENTS_REJECTED, count_refused_before_routing

    def counted() -> tuple[float, float, float, float]:
        return (
            EVENTS.labels("rejected")._value.get(),
            EVENTS_REJECTED.labels("customer_id")._value.get(),
            EVENTS_REJECTED.labels("properties")._value.get(),
            EVENTS_REJECTED.labels("unknown_field")._value.get(),
        )

    before = counted()
    count_refused_before_routing(["userId", "properties.revenue", "context.ip"])

    assert [after - was for after, was in zip(counted(), before, strict=True)] == [3, 1, 1, 1]
