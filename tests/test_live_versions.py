"""Versions of a live journey on the real Temporal dev server (with visibility): the plan
before publishing, customers per version, and support moving one customer to the newest
version now — through the CLI and the API, as a marketer and support use them."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from settings import get_settings
from tests.conftest import JOURNEYS
from tests.test_erasure_export import AS_SHOP, AS_SUPPORT, PROFILE, Api, on_dev_server  # noqa: F401 - the fixture
from tests.test_publish import cyklo


async def _in(api: Api, customer_id: str, stage: str) -> bool:
    listing = await api.http.get(f"/v1/journeys/lifecycle/customers?stage={stage}", headers=AS_SUPPORT)
    return customer_id in {row["customer_id"] for row in listing.json()["customers"]}


async def _customer(api: Api, customer_id: str, *types: str) -> None:
    assert (await api.http.put(f"/v1/customers/{customer_id}", json=PROFILE, headers=AS_SHOP)).status_code == 200
    for number, type in enumerate(types):
        properties = {"order_id": f"o-{customer_id}", "amount": 120.0} if type == "purchase" else {}
        event = {"event_id": f"{customer_id}-{number}", "customer_id": customer_id, "type": type, "properties": properties}
        assert (await api.http.post("/v1/events", json=event, headers=AS_SHOP)).status_code == 202


@pytest.fixture
def cli_env(on_dev_server: Api, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:  # noqa: F811 - the fixture
    """The CLI pointed at the same database and Temporal as the API, and an edited copy of
    the journeys: 5 days after the welcome instead of 3, stage `new` renamed `first_order`."""
    settings = on_dev_server.settings
    monkeypatch.setenv("CYKLO_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("TEMPORAL_ADDRESS", on_dev_server.client.service_client.config.target_host)
    get_settings.cache_clear()
    edited = tmp_path / "edited"
    shutil.copytree(JOURNEYS, edited, ignore=shutil.ignore_patterns("tests"))
    rename_new_stage(edited / "lifecycle.yaml")
    return edited


def rename_new_stage(lifecycle: Path, *, say_so: bool = True) -> None:
    """The edit of `cli_env`, on one journey file; `say_so=False` leaves out `renamed_stages`."""
    text = lifecycle.read_text()
    assert text.count("to: new}") == 2 and "\n  new:\n" in text
    text = text.replace("to: new}", "to: first_order}").replace("\n  new:\n", "\n  first_order:\n")
    text = text.replace("      - wait: 3d\n", "      - wait: 5d\n", 1)
    if say_so:
        text = text.replace("versioning: stage_boundary\n", "versioning: stage_boundary\nrenamed_stages: {new: first_order}\n")
    lifecycle.write_text(text)


async def test_plan_counts_customers_by_version_and_stage_and_support_upgrades_one(
    on_dev_server: Api,  # noqa: F811 - the fixture
    cli_env: Path,
) -> None:
    api = on_dev_server
    await _customer(api, "c-prospect", "signed_up")
    await _customer(api, "c-buyer", "signed_up", "purchase")
    await api.eventually(lambda: _in(api, "c-prospect", "prospect"))
    await api.eventually(lambda: _in(api, "c-buyer", "new"))

    plan = await asyncio.to_thread(cyklo, "publish", "--plan", str(cli_env))

    assert plan.exit_code == 0, plan.output
    lines = plan.stdout.splitlines()
    assert "lifecycle: would publish v2 (newest now v1)" in lines
    assert "  stage prospect step 2 changed: wait 3d → wait 5d" in lines
    assert "  customers running: 2" in lines
    assert (
        "          1  v1 new            keep v1's new until they leave it, then adopt v2 "
        "(mapped: new → first_order; `cyklo act upgrade` makes one go to first_order now)"
    ) in lines
    assert "          1  v1 prospect       adopt v2 at their next stage entry" in lines
    assert "abandoned_cart: unchanged (v1): nothing happens to its customers" in lines
    assert (await asyncio.to_thread(cyklo, "versions", "lifecycle")).stdout.splitlines()[1].split()[5] == "2"

    assert (await asyncio.to_thread(cyklo, "publish", str(cli_env))).exit_code == 0
    upgraded = await api.http.post(
        "/v1/customers/c-prospect/journeys/lifecycle/upgrade", json={"reason": "new welcome"}, headers=AS_SUPPORT
    )

    assert upgraded.status_code == 200, upgraded.text
    view = upgraded.json()
    assert (view["version"], view["stage"]) == (2, "prospect")
    assert view["stage_history"][-1]["adopted_from"] == 1
    assert view["support_actions"][-1]["action"] == "upgrade"
    # A customer of the renamed stage goes where the file says it went.
    renamed = await api.http.post("/v1/customers/c-buyer/journeys/lifecycle/upgrade", json={}, headers=AS_SUPPORT)
    assert renamed.status_code == 200, renamed.text
    assert (renamed.json()["version"], renamed.json()["stage"]) == (2, "first_order")

    async def counted() -> bool:
        rows = (await asyncio.to_thread(cyklo, "versions", "lifecycle")).stdout.splitlines()[1:3]
        return [row.split()[5] for row in rows] == ["0", "2"]

    await api.eventually(counted)
    again = await api.http.post(
        "/v1/customers/c-prospect/journeys/lifecycle/upgrade", json={}, headers=AS_SUPPORT
    )
    assert again.status_code == 409
    assert "already on the newest version (v2)" in again.json()["detail"]
