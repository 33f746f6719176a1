"""A newcomer's first day: the docs without internet, an event that comes before its profile,
an outbox that outlives a restart, errors in words."""

from __future__ import annotations

import re
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
import requests

from activities.sms import twilio_client
from client.platform import Cyklo, CykloUnreachable
from definition.schedule import daytime_zone
from emulator.server import ProviderEmulator
from tests.conftest import World, emulator_settings
from tests.test_api import ALA, AS_SHOP, AS_SUPPORT, api, signed_up  # noqa: F401 (api: a fixture)
from tests.test_support_login import AS_SHOP as SHOP
from tests.test_support_login import AS_SUPPORT as SUPPORT
from tests.test_support_login import SUPPORT_KEY, app_and_world, browser, sign_in  # noqa: F401 (a fixture)

ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")
SWAGGER_ASSET = re.compile(r"""(?:url|Url)\s*[:=]\s*["']([^"']+\.(?:js|css|png))["']""")


async def test_docs_pages_load_every_script_and_style_from_our_own_server(api: httpx.AsyncClient) -> None:  # noqa: F811
    for page in ("/docs", "/redoc"):
        html = (await api.get(page)).text
        assets = set(ASSET.findall(html)) | set(SWAGGER_ASSET.findall(html))
        scripts = [asset for asset in assets if asset.endswith(".js")]
        assert scripts, f"{page} names its scripts: {html[:300]}"
        for asset in assets:
            assert asset.startswith("/"), f"{page} loads {asset} from elsewhere"
            answer = await api.get(asset)
            assert answer.status_code == 200 and len(answer.content) > 100, (page, asset, answer.status_code)


async def test_an_event_before_its_profile_is_accepted_with_a_warning_and_its_journey_shown(
    api: httpx.AsyncClient,  # noqa: F811
) -> None:
    early = await api.post("/v1/events", json=signed_up("early-1", customer="c-early"), headers=AS_SHOP)
    assert (await api.put("/v1/customers/c-ala", json=ALA, headers=AS_SHOP)).status_code == 200
    known = await api.post("/v1/events", json=signed_up("known-1", customer="c-ala"), headers=AS_SHOP)

    assert early.status_code == 202
    (result,) = early.json()["results"]
    assert result["status"] == "accepted"
    assert result["warning"] == "no profile yet: messages will be suppressed until one is saved"
    assert known.json()["results"][0]["warning"] is None

    record = await api.get("/v1/customers/c-early", headers=AS_SUPPORT)
    assert record.status_code == 200
    assert record.json()["profile"] is None
    assert record.json()["journeys"]["lifecycle"]["stage"] == "prospect"
    assert [event["event_id"] for event in record.json()["events"]] == ["early-1"]
    assert (await api.get("/v1/customers/c-nobody", headers=AS_SUPPORT)).status_code == 404


def test_the_outbox_outlives_a_restart_of_the_emulator(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.jsonl"
    with ProviderEmulator(outbox=outbox) as first:
        settings = emulator_settings(first)
        sent = twilio_client(settings).messages.create(
            to="+48601234567", from_=settings.sms_from, body="Cześć!"
        )

    with ProviderEmulator(outbox=outbox) as again:
        (kept,) = again.messages("sms")
        page = requests.get(f"{again.url}/outbox", timeout=5).text
        settings = emulator_settings(again)
        listed = twilio_client(settings).messages.list(to="+48601234567")

    assert (kept.provider_id, kept.to, kept.body) == (sent.sid, "+48601234567", "Cześć!")
    assert "Outbox — 1 message(s)" in page and "Cześć!" in page
    assert [message.sid for message in listed] == [sent.sid], "Twilio's message list remembers it too"


async def test_the_support_page_speaks_the_customers_time_and_opens_a_sent_message(
    app_and_world: tuple[object, World],  # noqa: F811 - the fixture
) -> None:
    app, world = app_and_world
    zone = daytime_zone(datetime.now(UTC))
    async with browser(app) as person:
        profile = {
            "email": "ala@example.com",
            "first_name": "Ala",
            "timezone": zone,
            "consents": {"email": True},
        }
        assert (await person.put("/v1/customers/c-ala", json=profile, headers=SHOP)).status_code == 200
        event = {"event_id": "ala-signup", "customer_id": "c-ala", "type": "signed_up"}
        assert (await person.post("/v1/events", json=event, headers=SHOP)).status_code == 202
        await world.env.sleep(timedelta(minutes=5))
        record = (await person.get("/v1/customers/c-ala", headers=SUPPORT)).json()
        (welcome,) = record["messages"]
        await sign_in(person, SUPPORT_KEY)
        page = (await person.get("/support/c-ala")).text
        opened = await person.get(f"/support/c-ala/messages/{welcome['id']}")
        missing = await person.get("/support/c-ala/messages/999999")

    due = datetime.fromisoformat(welcome["scheduled_at"]).replace(tzinfo=UTC)
    local = due.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")
    utc = due.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert f'<time title="{utc}">{local}</time>' in page, "the customer's time, UTC on hover"
    assert f'href="/support/c-ala/messages/{welcome["id"]}">email welcome</a>' in page
    assert (
        "email welcome, wait 3d, then email first_order_nudge, wait 7d, then sms first_order_last_call"
        in page
    )
    assert (
        "vip on purchase if orders in the last 365 days is at least 5 or spent in the last 365 days is at least 2000"
        in page
    )

    assert opened.status_code == 200
    assert f'<b id="discount-code">{welcome["discount_code"]}</b>' in opened.text
    assert '<p class="subject">Subject: ' in opened.text and "<iframe sandbox=" in opened.text
    assert "Ala" in opened.text, "rendered for this customer, not the sample"
    assert missing.status_code == 404


async def test_the_support_page_shows_the_journey_of_a_customer_with_no_profile_yet(
    app_and_world: tuple[object, World],  # noqa: F811 - the fixture
) -> None:
    app, world = app_and_world
    async with browser(app) as person:
        event = {"event_id": "early-signup", "customer_id": "c-early", "type": "signed_up"}
        assert (await person.post("/v1/events", json=event, headers=SHOP)).status_code == 202
        await world.env.sleep(timedelta(minutes=5))
        await sign_in(person, SUPPORT_KEY)
        page = await person.get("/support/c-early")

    assert page.status_code == 200
    assert 'id="no-profile"' in page.text and "every message\n   is suppressed" in page.text
    assert 'class="current-stage">prospect<' in page.text
    assert "suppressed" in page.text


def test_the_client_tells_an_api_that_is_not_there_from_one_that_does_not_answer() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # takes the connection, never answers
        slow_url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with Cyklo(slow_url, "key", timeout=0.3) as cyklo, pytest.raises(CykloUnreachable) as slow:
            cyklo.customer("c-1")
    with Cyklo(slow_url, "key", timeout=0.3) as cyklo, pytest.raises(CykloUnreachable) as gone:
        cyklo.customer("c-1")

    assert slow.value.listening and slow.value.reason == "no answer in time"
    assert not gone.value.listening and str(gone.value).startswith(f"no cyklo API at {slow_url}")
