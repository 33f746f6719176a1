"""The Python client for the shop platform: `identify` a customer, `track` events, in batches."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from definition.problems import SaidToPeople

BATCH = 1000


class CykloError(SaidToPeople, RuntimeError):
    """The API refused a request; `status` and `detail` say why, and the text says it as a
    person reads it: the reason, or one `field: message` line per bad field."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(_sentence(status, detail))
        self.status = status
        self.detail = detail


class CykloUnreachable(ConnectionError):
    """No cyklo API answered at `url`: nothing listening (`listening` False), or one that took
    the connection and did not answer in time."""

    def __init__(self, url: str, reason: str, listening: bool = False) -> None:
        super().__init__(f"no cyklo API at {url} ({reason})" if not listening else f"{url}: {reason}")
        self.url = url
        self.reason = reason
        self.listening = listening


class Cyklo:
    def __init__(self, base_url: str, api_key: str, timeout: float = 10.0) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout
        )

    def __enter__(self) -> Cyklo:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def identify(self, customer_id: str, **profile: Any) -> dict[str, Any]:
        """Create or replace a profile: email, phone, first_name, locale, timezone, consents, attributes."""
        return self._call("PUT", f"/v1/customers/{customer_id}", profile)

    def track(
        self,
        customer_id: str,
        type: str,
        properties: dict[str, Any] | None = None,
        *,
        event_id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> dict[str, Any]:
        """Send one event; give `event_id` so a retry counts once."""
        return self.track_batch(
            [event(customer_id, type, properties, event_id=event_id, occurred_at=occurred_at)]
        )

    def track_batch(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        """Send events in batches of up to 1,000; returns the merged per-event results."""
        merged: dict[str, Any] = {"accepted": 0, "duplicates": 0, "rejected": 0, "results": []}
        for start in range(0, len(events), BATCH):
            answer = self._call("POST", "/v1/events", events[start : start + BATCH], allow=(202, 422))
            for key in ("accepted", "duplicates", "rejected"):
                merged[key] += answer.get(key, 0)
            merged["results"] += [
                {**item, "index": item["index"] + start} for item in answer.get("results", [])
            ]
        return merged

    def customer(self, customer_id: str) -> dict[str, Any]:
        """Support's view: profile, consents, journeys (stage, step, next wake-up), messages, events."""
        return self._call("GET", f"/v1/customers/{customer_id}", None)

    def act(self, customer_id: str, journey_id: str, action: str, **body: Any) -> dict[str, Any]:
        """pause, resume, skip_wait, move_to (stage=…), exit; CykloError(409) says why one is refused."""
        return self._call("POST", f"/v1/customers/{customer_id}/journeys/{journey_id}/{action}", body)

    def import_start(self, after: str | None = None) -> dict[str, Any]:
        """Start the `imported` entries for the next page of customers after `after`; the
        answer's `next_after` is the next page's (None: done)."""
        return self._call("POST", "/v1/import/start", {"after": after})

    def erase(self, customer_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/v1/customers/{customer_id}", None)

    def _call(self, method: str, path: str, body: Any, allow: tuple[int, ...] = (200, 202)) -> dict[str, Any]:
        try:
            response = (
                self._http.request(method, path, json=body)
                if body is not None
                else self._http.request(method, path)
            )
        except httpx.ConnectTimeout:
            raise CykloUnreachable(str(self._http.base_url), "no connection in time") from None
        except httpx.TimeoutException:
            raise CykloUnreachable(str(self._http.base_url), "no answer in time", listening=True) from None
        except httpx.TransportError as error:
            raise CykloUnreachable(str(self._http.base_url), str(error) or "connection failed") from None
        whole_batch_refused = response.status_code == 422 and "results" not in response.text
        if response.status_code not in allow or whole_batch_refused:
            raise CykloError(response.status_code, _detail(response))
        result: dict[str, Any] = response.json()
        return result


def event(
    customer_id: str,
    type: str,
    properties: dict[str, Any] | None = None,
    *,
    event_id: str | None = None,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    return {
        "event_id": event_id or f"ev-{uuid.uuid4()}",
        "customer_id": customer_id,
        "type": type,
        "occurred_at": (occurred_at or datetime.now(UTC)).isoformat(),
        "properties": properties or {},
    }


def _detail(response: httpx.Response) -> Any:
    try:
        return response.json().get("detail", response.text)
    except ValueError:
        return response.text


def _sentence(status: int, detail: Any) -> str:
    if isinstance(detail, list):
        fields = [
            f"  {item.get('field', '?')}: {item.get('message', '')}"
            if isinstance(item, dict)
            else f"  {item}"
            for item in detail
        ]
        return "\n".join([f"the cyklo API refused it ({status}):", *fields])
    return f"the cyklo API refused it ({status}): {detail}"
