"""`cyklo preview`, `cyklo send-test` and the preview page: what a marketer checks before a
customer gets it, rendered by the send's own code, and test sends that never count."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlmodel import col, select
from typer.testing import CliRunner, Result

from api.app import create_app
from cli.main import app
from definition.schedule import daytime_zone
from definition.sms_text import sms_encoding
from emulator.server import ProviderEmulator
from settings import get_settings
from storage.database import session_for
from storage.models import Message
from tests.conftest import JOURNEYS, World
from worker import build_worker

SHOP_KEY = "shop-platform-key-0001"
SUPPORT_KEY = "support-desk-key-00001"
AS_SHOP = {"Authorization": f"Bearer {SHOP_KEY}"}


def cyklo(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args))
    # CliRunner swallows an escaped exception (a traceback for a real user): fail on it.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return result


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A working folder with a copy of the shipped journeys, nothing published."""
    shutil.copytree(JOURNEYS, tmp_path / "journeys")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CYKLO_DATABASE_URL", f"sqlite:///{tmp_path}/cyklo.db")
    monkeypatch.setenv("CYKLO_SHOP_NAME", "Butik Ali")
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_preview_prints_an_emails_subject_and_text_and_writes_its_html(shop: Path) -> None:
    shown = cyklo("preview", "welcome", "--locale", "en")

    assert shown.exit_code == 0, shown.output
    assert "lifecycle / prospect: email welcome (en)" in shown.stdout
    assert "Subject: Welcome to Butik Ali! Here's 10% off your first order" in shown.stdout
    html_file = Path(re.findall(r"^HTML: (.+)$", shown.stdout, re.MULTILINE)[0])
    assert "Butik Ali" in html_file.read_text(encoding="utf-8") and "<html" in html_file.read_text()


def test_preview_of_an_sms_gives_its_encoding_and_segments(shop: Path) -> None:
    shown = cyklo("preview", "thank_you", "--channel", "sms", "--json")

    assert shown.exit_code == 0, shown.output
    sms = json.loads(shown.stdout)
    assert set(sms) == {"subject", "text", "html", "encoding", "segments"}
    assert sms["text"].startswith("Butik Ali: Ala, dziękujemy za zamówienie o-1!")
    assert (sms["encoding"], sms["segments"]) == sms_encoding(sms["text"]) == ("UCS-2", 2)
    assert (sms["subject"], sms["html"]) == (None, None)


def test_preview_reads_the_files_on_disk_before_anything_is_published(shop: Path) -> None:
    subject = shop / "journeys/templates/pl/email/welcome.subject.txt"
    subject.write_text("Nowy temat dla {{ customer.first_name }}")

    shown = json.loads(cyklo("preview", "welcome", "--json").stdout)

    assert shown["subject"] == "Nowy temat dla Ala"
    assert "<html" in shown["html"] and "WELCOME10" in shown["text"]


def test_customer_and_event_files_replace_the_sample(shop: Path) -> None:
    (shop / "ola.yaml").write_text("first_name: Ola\nlocale: en\n")
    (shop / "order.yaml").write_text("type: purchase\nproperties:\n  order_id: Z-77\n  amount: 99.5\n")

    shown = cyklo(
        "preview", "thank_you", "--channel", "email", "--customer", "ola.yaml", "--event", "order.yaml"
    )

    assert shown.exit_code == 0, shown.output
    assert "Subject: Thanks for your order Z-77 — we've received it" in shown.stdout
    assert "Ola" in shown.stdout


def test_a_locale_the_journey_lacks_is_shown_in_its_first_as_sent(shop: Path) -> None:
    shown = cyklo("preview", "welcome", "--locale", "de")

    assert shown.exit_code == 0, shown.output
    assert "journey lifecycle has no 'de' templates: shown in 'pl', as sent" in shown.output
    assert "email welcome (pl)" in shown.stdout


def test_bad_input_is_named_by_file_line_and_field_without_a_trace(shop: Path) -> None:
    (shop / "bad.yaml").write_text("first_name: Ola\nlocal: en\n")

    bad_file = cyklo("preview", "welcome", "--customer", "bad.yaml")
    assert bad_file.exit_code == 1
    assert (
        "bad.yaml:2: local: unknown field; a customer file has first_name, locale, timezone, id"
        in bad_file.output
    )
    ambiguous = cyklo("preview", "thank_you")
    assert ambiguous.exit_code == 1
    assert "sends 'thank_you' by email, sms: choose one with --channel" in ambiguous.output
    mistyped = cyklo("preview", "welcom")
    assert mistyped.exit_code == 1 and "did you mean 'welcome'?" in mistyped.output
    for result in (bad_file, ambiguous, mistyped):
        assert "Traceback" not in result.output


def test_a_template_that_fails_to_render_exits_1_with_the_template_error(shop: Path) -> None:
    (shop / "journeys/templates/pl/sms/thank_you.txt").write_text(
        "{{ event.properties.amount | round(1, 'x') }}"
    )

    shown = cyklo("preview", "thank_you", "--channel", "sms")

    assert shown.exit_code == 1
    assert "lifecycle sms thank_you: template error: " in shown.output and "Traceback" not in shown.output


# --- cyklo send-test ---------------------------------------------------------------------


@pytest.fixture
async def stack(world: World, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    """The worker and the API on the test Temporal server; `cyklo` commands reach the same
    database and the emulator through the environment, as they would the real providers."""
    settings = world.settings.model_copy(
        update={
            "journeys_dir": JOURNEYS,
            "api_keys": f"{SHOP_KEY}=events;{SUPPORT_KEY}=support:read",
            "session_secret": "session-secret-for-tests-0123456789abcdef",
        }
    )
    for name, value in {
        "CYKLO_DATABASE_URL": settings.database_url,
        "CYKLO_JOURNEYS_DIR": str(JOURNEYS),
        "SENDGRID_API_KEY": settings.sendgrid_api_key,
        "CYKLO_SENDGRID_HOST": settings.sendgrid_host,
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    application = create_app(settings, client=world.env.client)
    with ThreadPoolExecutor(max_workers=16) as executor:
        async with (
            build_worker(world.env.client, settings, executor),
            application.router.lifespan_context(application),
        ):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://cyklo.test") as client:
                yield client
    get_settings.cache_clear()


async def test_test_sends_reach_the_provider_are_recorded_as_tests_and_never_cap_a_real_send(
    stack: httpx.AsyncClient, world: World, emulator: ProviderEmulator, tmp_path: Path
) -> None:
    profile = {
        "email": "ala@example.com",
        "first_name": "Ala",
        "timezone": daytime_zone(datetime.now(UTC)),
        "consents": {"email": True},
    }
    assert (await stack.put("/v1/customers/c-ala", json=profile, headers=AS_SHOP)).status_code == 200
    as_ala = tmp_path / "ala.yaml"
    as_ala.write_text("id: c-ala\nfirst_name: Ala\n")

    # Three marketing emails "for" Ala in a day: as real sends they would use up her weekly cap.
    said = [
        cyklo("send-test", "welcome", "--to", "marketer@shop.example", "--customer", str(as_ala))
        for _ in range(3)
    ]

    for result in said:
        assert result.exit_code == 0, result.output
    tests = emulator.messages("email")
    assert [message.to for message in tests] == ["marketer@shop.example"] * 3
    printed = [re.findall(r"provider message id (\S+),", result.stdout) for result in said]
    assert printed == [[message.provider_id] for message in tests]
    preview = json.loads(cyklo("preview", "welcome", "--json").stdout)
    assert tests[0].subject == preview["subject"]
    row_id = tests[0].custom_args["cyklo_message_id"]
    assert tests[0].text == preview["text"].replace("?m=preview", f"?m={row_id}"), (
        "the preview is what is sent"
    )
    with session_for(world.settings.database_url) as db:
        rows = db.exec(select(Message).where(Message.customer_id == "c-ala").order_by(col(Message.id))).all()
    assert [(row.test, row.status, row.template, row.provider_message_id) for row in rows] == [
        (True, "sent", "welcome", message.provider_id) for message in tests
    ]

    signed_up = {"event_id": "ala-signup", "customer_id": "c-ala", "type": "signed_up"}
    assert (await stack.post("/v1/events", json=signed_up, headers=AS_SHOP)).status_code == 202
    await world.env.sleep(timedelta(minutes=5))

    with session_for(world.settings.database_url) as db:
        real = db.exec(
            select(Message).where(Message.customer_id == "c-ala", col(Message.test).is_(False))
        ).all()
    assert [(row.template, row.status) for row in real] == [("welcome", "sent")]
    assert [message.to for message in emulator.messages("email")][3:] == ["ala@example.com"]
    # Support sees them in Ala's history, told apart.
    record = (
        await stack.get("/v1/customers/c-ala", headers={"Authorization": f"Bearer {SUPPORT_KEY}"})
    ).json()
    assert sorted(message["test"] for message in record["messages"]) == [False, True, True, True]
    await signed_in(stack, "/support/c-ala")
    assert (await stack.get("/support/c-ala")).text.count("email welcome (test send)") == 3


def test_send_test_of_an_sms_goes_through_twilio_to_the_dev_emulator(
    shop: Path, emulator: ProviderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CYKLO_DATABASE_URL")
    get_settings.cache_clear()
    port = emulator.url.rsplit(":", 1)[1]

    said = cyklo(
        "send-test",
        "thank_you",
        "--to",
        "601 234 567",
        "--dev",
        "--data",
        "dev-data",
        "--emulator-port",
        port,
    )

    assert said.exit_code == 0, said.output
    [sms] = emulator.messages("sms")
    assert (
        sms.to == "+48601234567"
        and sms.body is not None
        and sms.body.startswith("Butik Ali: Ala, dziękujemy")
    )
    assert f"provider message id {sms.provider_id}" in said.stdout
    with session_for(f"sqlite:///{shop}/dev-data/cyklo.db") as db:
        [row] = db.exec(select(Message)).all()
    assert (row.test, row.channel, row.sms_encoding, row.sms_segments) == (
        True,
        "sms",
        *sms_encoding(sms.body),
    )


def test_send_test_refuses_an_address_that_is_not_one_and_sends_nothing(
    shop: Path, emulator: ProviderEmulator
) -> None:
    refused = cyklo(
        "send-test",
        "welcome",
        "--to",
        "marketer@",
        "--dev",
        "--emulator-port",
        emulator.url.rsplit(":", 1)[1],
    )

    assert refused.exit_code == 1 and "--to 'marketer@' is not an email address" in refused.output
    assert emulator.messages() == []


# --- the preview page ----------------------------------------------------------------------


def hidden(page: httpx.Response, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page.text)
    assert found, f"no hidden field {name!r} in the page"
    return found.group(1)


async def signed_in(stack: httpx.AsyncClient, next: str) -> httpx.Response:
    form = await stack.get("/support/login", params={"next": next})
    return await stack.post(
        "/support/login",
        data={"key": SUPPORT_KEY, "csrf": hidden(form, "csrf"), "next": hidden(form, "next")},
    )


async def test_the_preview_page_shows_every_message_of_the_published_journey_in_each_locale(
    stack: httpx.AsyncClient,
) -> None:
    asked = await stack.get("/support/preview/lifecycle")
    assert asked.status_code == 303
    assert asked.headers["location"] == "/support/login?next=/support/preview/lifecycle"

    back = await signed_in(stack, "/support/preview/lifecycle")
    assert back.headers["location"] == "/support/preview/lifecycle"
    page = await stack.get("/support/preview/lifecycle")

    assert page.status_code == 200
    sections = re.findall(r'<section class="message" id="([a-z]+-[a-z_]+)">', page.text)
    assert {"email-welcome", "email-thank_you", "sms-thank_you", "sms-first_order_last_call"} <= set(sections)
    assert len(sections) == 15
    # Two locales of each: the email's HTML in a sandbox that lets nothing run, the SMS counted.
    assert (
        page.text.count('<div class="locale" data-locale="pl">') == page.text.count('data-locale="en"') == 15
    )
    assert page.text.count('<iframe sandbox=""') == 2 * 13
    assert "Subject: Welcome to cyklo shop! Here&#39;s 10% off your first order" in page.text
    assert re.search(r"\d+ characters · UCS-2 ·\s+2 segments", page.text)
    assert page.text.count('srcdoc="&lt;!doctype html&gt;\n&lt;html lang=&#34;pl&#34;&gt;') == 13, (
        "escaped, whole"
    )
    policy = page.headers["content-security-policy"]
    assert "img-src https: data:" in policy and "script-src" not in policy and "default-src 'none'" in policy
    assert page.headers["x-frame-options"] == "DENY"
    index = await stack.get("/support")
    assert 'href="/support/preview/lifecycle"' in index.text


async def test_the_preview_page_of_a_journey_never_published_says_so(stack: httpx.AsyncClient) -> None:
    await signed_in(stack, "/support")

    missing = await stack.get("/support/preview/no_such_journey")

    assert missing.status_code == 404
    assert "journey &#39;no_such_journey&#39; is not published" in missing.text


async def test_in_a_browser_each_email_shows_in_its_frame_and_its_scripts_do_not_run(
    stack: httpx.AsyncClient, tmp_path: Path
) -> None:
    from tests.test_end_to_end import CHROMIUM, CHROMIUM_FLAGS

    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it): apt-get install chromium")
    from playwright.async_api import Route, async_playwright

    await signed_in(stack, "/support")
    page_answer = await stack.get("/support/preview/lifecycle")
    # The page as the API served it, headers included, with a script in one email that must not run.
    html = page_answer.text.replace(
        'srcdoc="&lt;!doctype html&gt;',
        'srcdoc="&lt;script&gt;document.write(&#34;SCRIPT RAN&#34;)&lt;/script&gt;&lt;!doctype html&gt;',
        1,
    )
    headers = {name: value for name, value in page_answer.headers.items() if name != "content-length"}

    async def serve(route: Route) -> None:
        await route.fulfill(status=200, headers=headers, body=html)

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        page = await browser.new_page()
        await page.route("http://cyklo.test/**", serve)
        await page.goto("http://cyklo.test/support/preview/lifecycle")
        welcome = page.frame_locator("#email-welcome [data-locale=en] iframe")
        await welcome.locator("body").wait_for()

        assert "WELCOME10" in await welcome.locator("body").inner_text()
        polish = (
            await page.frame_locator("#email-welcome [data-locale=pl] iframe").locator("body").inner_text()
        )
        assert "Cześć" in polish
        assert "SCRIPT RAN" not in polish, "a script in an email ran"
        await page.screenshot(path=str(tmp_path / "preview.png"), full_page=True)
        await browser.close()
