"""The API key never leaks: headers only for the API, a real sign-in for the support page,
CSRF-safe forms, encoded redirects, and access logs that carry no secret."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote, urlsplit

import httpx
import pytest
from itsdangerous import TimestampSigner

from api.access_log import RedactSecrets, redact_query
from api.app import create_app
from api.pages import SECURITY_HEADERS, _safe_return
from api.sessions import SupportSessions
from definition.schedule import daytime_zone
from settings import as_environment
from stack.local import free_port
from tests.conftest import JOURNEYS, REPO, World
from worker import build_worker

SUPPORT_KEY = "support-desk-key-00001"
READER_KEY = "support-reader-key-0002"
SHOP_KEY = "shop-platform-key-0003"
SESSION_SECRET = "session-secret-for-tests-0123456789abcdef"
AS_SHOP = {"Authorization": f"Bearer {SHOP_KEY}"}
AS_SUPPORT = {"Authorization": f"Bearer {SUPPORT_KEY}"}
# Characters the profile id rule allows that must still be encoded in a path segment.
CUSTOMER = "ala@shop:1"
PAGE = f"/support/{quote(CUSTOMER, safe='')}"


@pytest.fixture
async def app_and_world(world: World) -> AsyncIterator[tuple[object, World]]:
    settings = world.settings.model_copy(
        update={
            "journeys_dir": JOURNEYS,
            "api_keys": f"{SUPPORT_KEY}=support:read,support:write;{READER_KEY}=support:read;{SHOP_KEY}=events",
            "session_secret": SESSION_SECRET,
        }
    )
    app = create_app(settings, client=world.env.client)
    with ThreadPoolExecutor(max_workers=16) as executor:
        async with build_worker(world.env.client, settings, executor), app.router.lifespan_context(app):
            yield app, world


def browser(app: object, base_url: str = "http://cyklo.test") -> httpx.AsyncClient:
    """An HTTP client that keeps cookies as a browser does, without following redirects."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)  # type: ignore[arg-type]


@pytest.fixture
async def api(app_and_world: tuple[object, World]) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(app_and_world[0]) as client:
        yield client


async def enrol(api: httpx.AsyncClient, world: World, customer: str = CUSTOMER) -> None:
    profile = {"email": "ala@example.com", "timezone": daytime_zone(datetime.now(UTC)), "consents": {"email": True}}
    assert (
        await api.put(f"/v1/customers/{quote(customer, safe='')}", json=profile, headers=AS_SHOP)
    ).status_code == 200
    event = {"event_id": f"{customer}-signup", "customer_id": customer, "type": "signed_up"}
    assert (await api.post("/v1/events", json=event, headers=AS_SHOP)).status_code == 202
    await world.env.sleep(timedelta(minutes=5))


def hidden(page: httpx.Response, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page.text)
    assert found, f"no hidden field {name!r} in the page"
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, key: str, next: str = "/support") -> httpx.Response:
    form = await client.get("/support/login", params={"next": next})
    return await client.post(
        "/support/login", data={"key": key, "csrf": hidden(form, "csrf"), "next": hidden(form, "next")}
    )


async def paused_by(api: httpx.AsyncClient, customer: str = CUSTOMER) -> str | None:
    record = (await api.get(f"/v1/customers/{quote(customer, safe='')}", headers=AS_SUPPORT)).json()
    paused = record["journeys"]["lifecycle"]["paused"]
    return paused["by"] if paused else None


@pytest.mark.parametrize(
    ("method", "path", "body", "good_header"),
    [
        ("PUT", "/v1/customers/c-url", {"email": "url@example.com"}, AS_SHOP),
        ("DELETE", "/v1/customers/c-url", None, AS_SUPPORT),
        ("POST", "/v1/events", {"customer_id": "c-url", "type": "signed_up"}, AS_SHOP),
        ("GET", "/v1/customers/c-url", None, AS_SUPPORT),
        ("POST", "/v1/customers/c-url/journeys/lifecycle/pause", {}, AS_SUPPORT),
    ],
)
async def test_a_key_in_the_url_is_refused_on_every_route_even_beside_a_good_header(
    api: httpx.AsyncClient, method: str, path: str, body: object, good_header: dict[str, str]
) -> None:
    for params in ({"key": SUPPORT_KEY}, {"key": SHOP_KEY}, {"api_key": SHOP_KEY}):
        answer = await api.request(method, path, params=params, json=body)
        with_header = await api.request(method, path, params=params, json=body, headers=good_header)
        for refused in (answer, with_header):
            assert refused.status_code == 401, (method, path, refused.text)
            assert "send `Authorization: Bearer KEY`" in refused.json()["detail"]
    assert (await api.get("/v1/customers/c-url", headers=AS_SUPPORT)).status_code == 404, "nothing was saved"
    assert (await api.put("/v1/customers/c-url", json={}, headers=AS_SHOP)).status_code == 200


async def test_a_key_in_a_support_page_url_is_refused_with_a_page_that_points_to_sign_in(
    api: httpx.AsyncClient,
) -> None:
    answer = await api.get(PAGE, params={"key": SUPPORT_KEY})

    assert answer.status_code == 401 and answer.headers["content-type"].startswith("text/html")
    assert "Keys in URLs are refused" in answer.text and 'href="/support/login"' in answer.text
    assert SUPPORT_KEY not in answer.text and "set-cookie" not in answer.headers


async def test_signing_in_once_brings_support_back_to_the_customer_they_asked_for(
    app_and_world: tuple[object, World], api: httpx.AsyncClient
) -> None:
    await enrol(api, app_and_world[1])
    async with browser(app_and_world[0]) as person:
        asked = await person.get(PAGE)
        assert asked.status_code == 303
        assert asked.headers["location"] == "/support/login?next=" + quote(PAGE, safe="/")

        form = await person.get(asked.headers["location"])
        assert hidden(form, "next") == PAGE
        signed_in = await person.post(
            "/support/login", data={"key": SUPPORT_KEY, "csrf": hidden(form, "csrf"), "next": PAGE}
        )
        assert signed_in.status_code == 303 and signed_in.headers["location"] == PAGE

        page = await person.get(PAGE)
        assert page.status_code == 200
        assert f"<h1>Customer {CUSTOMER}</h1>" in page.text and "Signed in with key …0001" in page.text
        assert SUPPORT_KEY not in page.text and "?key=" not in page.text
        assert f'action="{PAGE}/lifecycle/pause"' in page.text


async def test_the_session_cookie_is_httponly_strict_scoped_to_support_and_holds_no_key(
    app_and_world: tuple[object, World],
) -> None:
    async with browser(app_and_world[0]) as person:
        signed_in = await sign_in(person, SUPPORT_KEY)
    async with browser(app_and_world[0], "https://cyklo.test") as over_tls:
        signed_in_over_tls = await sign_in(over_tls, SUPPORT_KEY)

    cookie = _session_cookie(signed_in)
    assert {"httponly", "samesite=strict", "path=/support", "max-age=28800"} <= cookie
    assert "secure" not in cookie, "plain http (127.0.0.1): a Secure cookie would never come back"
    assert "secure" in _session_cookie(signed_in_over_tls)
    assert SUPPORT_KEY not in signed_in.headers["set-cookie"]
    assert signed_in.headers["location"] == "/support"


def _session_cookie(answer: httpx.Response) -> set[str]:
    (header,) = [
        value for value in answer.headers.get_list("set-cookie") if value.startswith("cyklo_support=")
    ]
    return {part.strip().lower() for part in header.split(";")[1:]}


async def test_a_wrong_key_or_one_without_support_scope_cannot_sign_in(
    app_and_world: tuple[object, World],
) -> None:
    async with browser(app_and_world[0]) as person:
        wrong = await sign_in(person, "not-a-key-of-this-shop-000")
        shop = await sign_in(person, SHOP_KEY)
        still_out = await person.get("/support")

    assert wrong.status_code == 401 and "That key is not known" in wrong.text
    assert shop.status_code == 403 and "lacks the scope &#39;support:read&#39;" in shop.text
    assert "cyklo_support=" not in str(wrong.headers) + str(shop.headers)
    assert still_out.status_code == 303 and still_out.headers["location"].startswith("/support/login")


async def test_a_form_without_its_token_or_sent_from_another_site_changes_nothing(
    app_and_world: tuple[object, World], api: httpx.AsyncClient
) -> None:
    await enrol(api, app_and_world[1])
    pause = f"{PAGE}/lifecycle/pause"
    async with browser(app_and_world[0]) as person:
        await sign_in(person, SUPPORT_KEY)
        token = hidden(await person.get(PAGE), "csrf")
        without_token = await person.post(pause, data={})
        wrong_token = await person.post(pause, data={"csrf": "0" * 64})
        cross_site = await person.post(pause, data={"csrf": token}, headers={"Origin": "http://evil.test"})
        cross_referer = await person.post(
            pause, data={"csrf": token}, headers={"Referer": "http://evil.test/x"}
        )
        assert await paused_by(api) is None
        # What a browser sends with this site's own form under Referrer-Policy: no-referrer.
        own_form = await person.post(pause, data={"csrf": token}, headers={"Origin": "null"})
    async with browser(app_and_world[0]) as stranger:
        await stranger.get("/support/login")
        sign_in_forged = await stranger.post("/support/login", data={"key": SUPPORT_KEY, "csrf": "x"})

    for refused in (without_token, wrong_token, sign_in_forged):
        assert refused.status_code == 403 and "out of date or did not come from this site" in refused.text
    for refused in (cross_site, cross_referer):
        assert refused.status_code == 403 and "sent from another site is refused" in refused.text
    assert "cyklo_support=" not in str(sign_in_forged.headers)
    assert own_form.status_code == 303 and own_form.headers["location"] == f"{PAGE}?notice=pause%3A%20done"
    assert await paused_by(api) == "key …0001"


async def test_a_key_that_may_only_read_sees_the_page_but_cannot_act(
    app_and_world: tuple[object, World], api: httpx.AsyncClient
) -> None:
    await enrol(api, app_and_world[1])
    async with browser(app_and_world[0]) as reader:
        await sign_in(reader, READER_KEY)
        page = await reader.get(PAGE)
        refused = await reader.post(f"{PAGE}/lifecycle/pause", data={"csrf": hidden(page, "csrf")})
        shown = await reader.get(refused.headers["location"])

    assert page.status_code == 200 and "Signed in with key …0002" in page.text
    assert "pause refused: this key lacks the scope &#39;support:write&#39;" in shown.text
    assert await paused_by(api) is None


async def test_the_redirect_after_an_action_encodes_the_customer_id_and_lands_on_the_same_customer(
    app_and_world: tuple[object, World], api: httpx.AsyncClient
) -> None:
    await enrol(api, app_and_world[1])
    tricky = "x?x=1#"
    async with browser(app_and_world[0]) as person:
        await sign_in(person, SUPPORT_KEY)
        token = hidden(await person.get(PAGE), "csrf")
        acted = await person.post(f"/support/{quote(tricky, safe='')}/lifecycle/pause", data={"csrf": token})
        landed = await person.get(acted.headers["location"])
        paused = await person.post(f"{PAGE}/lifecycle/pause", data={"csrf": token})
        back = await person.get(paused.headers["location"])

    location = urlsplit(acted.headers["location"])
    assert acted.headers["location"].startswith("/support/x%3Fx%3D1%23?notice=")
    assert unquote(location.path) == f"/support/{tricky}" and location.fragment == ""
    assert "is not in journey" in unquote(location.query)
    assert landed.status_code == 404 and "no customer &#39;x?x=1#&#39;" in landed.text
    assert paused.headers["location"] == "/support/ala%40shop%3A1?notice=pause%3A%20done"
    assert f"<h1>Customer {CUSTOMER}</h1>" in back.text and "pause: done" in back.text


async def test_signing_out_ends_the_session_in_the_browser(app_and_world: tuple[object, World]) -> None:
    async with browser(app_and_world[0]) as person:
        await sign_in(person, SUPPORT_KEY)
        index = await person.get("/support")
        refused = await person.post("/support/logout", data={})
        still_in = await person.get("/support")
        signed_out = await person.post("/support/logout", data={"csrf": hidden(index, "csrf")})
        after = await person.get("/support")

    assert refused.status_code == 403 and still_in.status_code == 200
    assert signed_out.status_code == 303 and signed_out.headers["location"] == "/support/login"
    assert (
        'cyklo_support=""' in signed_out.headers["set-cookie"]
        and "Max-Age=0" in signed_out.headers["set-cookie"]
    )
    assert after.status_code == 303 and after.headers["location"].startswith("/support/login")


async def test_every_support_answer_keeps_the_page_out_of_caches_frames_and_referers(
    app_and_world: tuple[object, World], api: httpx.AsyncClient
) -> None:
    await enrol(api, app_and_world[1])
    async with browser(app_and_world[0]) as person:
        answers = [
            await person.get(PAGE),
            await person.get("/support/login"),
            await person.get("/support/login", params={"key": SUPPORT_KEY}),
            await sign_in(person, READER_KEY),
            await person.get("/support"),
            await person.get("/support", params={"customer": CUSTOMER}),
            await person.get(PAGE),
            await person.get("/support/nobody"),
            await person.post(f"{PAGE}/lifecycle/pause", data={}),
        ]

    assert [answer.status_code for answer in answers] == [303, 200, 401, 303, 200, 303, 200, 404, 403]
    for answer in answers:
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers.get(name) == value, (answer.request.url, name)
    assert "frame-ancestors 'none'" in SECURITY_HEADERS["Content-Security-Policy"]
    assert answers[5].headers["location"] == PAGE


@pytest.mark.parametrize(
    ("asked", "returned"),
    [
        (PAGE, PAGE),
        ("/support", "/support"),
        ("//evil.test/support", "/support"),
        ("https://evil.test/support/x", "/support"),
        ("/support/../admin", "/support"),
        ("/support/x?key=1", "/support"),
        ("/support/x#frag", "/support"),
        ("/support/\\evil.test", "/support"),
        ("/supportx", "/support"),
        ("/support/login", "/support"),
        ("/support/x%zz", "/support"),
    ],
)
def test_the_page_to_return_to_after_sign_in_is_only_a_support_path_of_this_site(
    asked: str, returned: str
) -> None:
    assert _safe_return(asked) == returned


def test_a_session_ends_when_its_key_is_revoked_expires_or_is_tampered_with(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = {SUPPORT_KEY: frozenset({"support:read", "support:write"})}
    sessions = SupportSessions(SESSION_SECRET, keys, timedelta(hours=8))
    signed = sessions.sign_in(SUPPORT_KEY)
    assert signed is not None and sessions.sign_in("unknown-key-0000000000") is None
    caller, cookie = signed
    session = sessions.resume(cookie)
    assert session is not None and session.caller == caller and session.may("support:write")

    fewer_scopes = SupportSessions(
        SESSION_SECRET, {SUPPORT_KEY: frozenset({"support:read"})}, timedelta(hours=8)
    )
    revoked = SupportSessions(SESSION_SECRET, {READER_KEY: frozenset({"support:read"})}, timedelta(hours=8))
    other_secret = SupportSessions("another-secret-" + "0" * 32, keys, timedelta(hours=8))
    narrowed = fewer_scopes.resume(cookie)
    assert narrowed is not None and not narrowed.may("support:write"), "scopes are the key's current ones"
    assert revoked.resume(cookie) is None and other_secret.resume(cookie) is None
    assert sessions.resume(cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")) is None
    assert sessions.resume("") is None and sessions.resume(None) is None

    nine_hours_ago = int(time.time()) - 9 * 3600
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: nine_hours_ago)
    old = sessions.sign_in(SUPPORT_KEY)
    monkeypatch.undo()
    assert old is not None and sessions.resume(old[1]) is None, "eight hours is the limit"

    form_cookie, form_token = sessions.new_sign_in_form()
    assert sessions.sign_in_form_matches(form_cookie, form_token)
    assert not sessions.sign_in_form_matches(None, form_token)
    assert not sessions.sign_in_form_matches(form_cookie, form_cookie), "the token is a MAC, not a copy"


def test_an_access_line_keeps_only_harmless_query_values() -> None:
    assert redact_query("/v1/events") == "/v1/events"
    assert (
        redact_query("/v1/journeys/j/customers?stage=new&limit=5")
        == "/v1/journeys/j/customers?stage=new&limit=5"
    )
    assert redact_query(f"/health?key={SHOP_KEY}&x=1") == "/health?key=[redacted]&x=[redacted]"
    assert redact_query(f"/health?{SHOP_KEY}") == "/health?[redacted]"
    assert redact_query("/support/login?next=/support/a%40b") == "/support/login?next=/support/a%40b"


def test_log_lines_lose_configured_secrets_and_bearer_credentials() -> None:
    redact = RedactSecrets([SHOP_KEY, "short"])
    access = logging.LogRecord(
        "uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", f"/x/{SHOP_KEY}?token=abc", "1.1", 401), None,
    )  # fmt: skip
    other = logging.LogRecord(
        "uvicorn.error", logging.ERROR, "", 0, "headers %s", ({"authorization": f"Bearer {SHOP_KEY}x"},), None
    )

    assert redact.filter(access) and redact.filter(other)
    assert access.getMessage() == '127.0.0.1:5 - "GET /x/[redacted]?token=[redacted] HTTP/1.1" 401'
    assert SHOP_KEY not in other.getMessage() and "Bearer [redacted]" in other.getMessage()


def test_cyklo_api_writes_access_lines_that_never_carry_a_key_or_session(world: World) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = world.settings.model_copy(
        update={
            "journeys_dir": JOURNEYS,
            "api_keys": f"{SUPPORT_KEY}=support:read,support:write;{SHOP_KEY}=events",
            "session_secret": SESSION_SECRET,
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "api", "--port", str(port)],
        cwd=REPO,
        env={**os.environ, **as_environment(settings)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_until_up(url, process)
        with httpx.Client(base_url=url, timeout=10) as shop:
            in_url = shop.get("/health", params={"key": SHOP_KEY}).status_code
            events_in_url = shop.post("/v1/events", params={"key": SHOP_KEY}, json={}).status_code
            with_header = shop.put("/v1/customers/c-log", json={}, headers=AS_SHOP).status_code
            support = shop.get("/v1/customers/c-log", headers={"X-API-Key": SUPPORT_KEY}).status_code
        with httpx.Client(base_url=url, timeout=10) as person:
            form = person.get("/support/login", params={"next": "/support/c-log"})
            signed_in = person.post(
                "/support/login",
                data={"key": SUPPORT_KEY, "csrf": hidden(form, "csrf"), "next": "/support/c-log"},
                # From a TLS-terminating proxy on 127.0.0.1, which uvicorn trusts by default.
                headers={"X-Forwarded-Proto": "https"},
            )
        # The cookie is Secure now, so plain http would not send it back: as the proxy would.
        session = signed_in.cookies.get("cyklo_support") or ""
        with httpx.Client(base_url=url, timeout=10, cookies={"cyklo_support": session}) as behind_proxy:
            page = behind_proxy.get("/support/c-log").status_code
    finally:
        process.send_signal(signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()

    # /health takes no key, so one in its URL is ignored there, but still never written down.
    assert (in_url, events_in_url, with_header, support, page) == (200, 401, 200, 200, 200), output
    assert signed_in.status_code == 303 and "Secure" in signed_in.headers["set-cookie"] and session
    assert '"GET /health?key=[redacted] HTTP/1.1" 200' in output
    assert '"POST /v1/events?key=[redacted] HTTP/1.1" 401' in output
    assert '"POST /support/login HTTP/1.1" 303' in output and '"GET /support/c-log HTTP/1.1" 200' in output
    for secret in (SHOP_KEY, SUPPORT_KEY, SESSION_SECRET, session):
        assert secret not in output


def _wait_until_up(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"cyklo api stopped: {process.communicate()[0]}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError("cyklo api did not come up")
