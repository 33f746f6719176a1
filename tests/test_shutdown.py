"""`cyklo dev`, `cyklo worker` and `cyklo api` stop within 10 s on SIGTERM and on SIGINT, also
when SIGINT was ignored at start (a `&` job in a script), whether or not they handled events,
and leave no process behind; a send in flight completes first.

Each command runs as a real process of the `cyklo` entry point from the venv, on free ports,
with a temporary data folder. The worker and the API talk to a Temporal dev server started
here. Every mode runs once by default; CYKLO_SHUTDOWN_REPEATS=20 runs each twenty times.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
import pytest
from sqlmodel import select
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from client.platform import Cyklo
from connection import installed_binary
from definition.model import Journey
from definition.schedule import daytime_zone
from emulator.server import ProviderEmulator
from process.shutdown import CHILD_GRACE_SECONDS
from publishing import publish_journeys
from routing.events import EventRouter, IncomingEvent
from settings import Settings, as_environment
from stack.local import end_child, free_port
from storage import customers, journey_versions
from storage.database import migrate, session_for
from storage.models import Message
from tests.conftest import JOURNEYS, REPO, emulator_settings, make_scenario
from workflows.journey import SEARCH_ATTRIBUTES

CYKLO = str(Path(sys.executable).parent / "cyklo")
STOP_WITHIN_SECONDS = 10.0
REPEATS = int(os.environ.get("CYKLO_SHUTDOWN_REPEATS", "1"))
KEY = "shutdown-test-key-0000001"


@dataclass(frozen=True)
class StopMode:
    name: str
    signal: signal.Signals
    sigint_ignored_at_start: bool = False


MODES = [
    StopMode("sigterm", signal.SIGTERM),
    StopMode("sigint", signal.SIGINT),
    StopMode("sigint-ignored-at-start", signal.SIGINT, sigint_ignored_at_start=True),
]


def _each_mode(test: Callable[..., object]) -> Callable[..., object]:
    """Every stop mode, REPEATS times. Each test runs two processes side by side, one idle and
    one that has handled events: the pair costs the time of one start."""
    marks = [
        pytest.mark.parametrize("run", range(REPEATS), ids=lambda run: f"run{run + 1}"),
        pytest.mark.parametrize("mode", MODES, ids=lambda mode: mode.name),
    ]
    for mark in marks:
        test = mark(test)
    return test


# --- the process under test ------------------------------------------------------------------


class Command:
    """One `cyklo …` process, its output in one pipe, read when it has ended."""

    def __init__(self, arguments: list[str], environment: dict[str, str], mode: StopMode) -> None:
        self.arguments, self.mode = arguments, mode
        self.process = subprocess.Popen(
            [CYKLO, *arguments],
            cwd=REPO,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # What the shell does for `cyklo … &` in a script: the child starts with SIGINT ignored.
            preexec_fn=_ignore_sigint if mode.sigint_ignored_at_start else None,
        )
        self._tree: list[psutil.Process] = []
        self._signalled_at = 0.0
        self.took = 0.0

    def wait_healthy(self, url: str) -> None:
        def healthy() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"cyklo {self.arguments[0]} ended at start:\n{self.process.communicate()[0]}"
                )
            return httpx.get(url + "/health", timeout=1).status_code == 200

        _wait_until(healthy, f"{url}/health answers")

    def signal(self, signum: int | None = None) -> None:
        """The mode's signal, or another; the clock and the process tree are taken at the first."""
        if not self._tree:
            root = psutil.Process(self.process.pid)
            self._tree = [root, *root.children(recursive=True)]
            self._signalled_at = time.monotonic()
        self.process.send_signal(signum or self.mode.signal)

    def stop(self) -> str:
        self.signal()
        return self.ended()

    def ended(self, exit_code: int = 0) -> str:
        """It ends within 10 s of the first signal with `exit_code`, and so does all it started."""
        assert self._tree, "signal it first"
        try:
            output, _ = self.process.communicate(
                timeout=max(0.0, self._signalled_at + STOP_WITHIN_SECONDS - time.monotonic())
            )
        except subprocess.TimeoutExpired:
            _kill(self._tree)
            output, _ = self.process.communicate()
            raise AssertionError(
                f"still running {STOP_WITHIN_SECONDS:g} s after {self.mode.name}:\n{output}"
            ) from None
        self.took = time.monotonic() - self._signalled_at
        assert self.process.returncode == exit_code, (
            f"exit {self.process.returncode} after {self.took:.1f} s:\n{output}"
        )
        assert _survivors(self._tree) == [], f"left running after {self.mode.name}:\n{output}"
        assert "Traceback" not in output, output
        return output

    def kill(self) -> None:
        """After a failed test: nothing of it may run on."""
        if self.process.poll() is None:
            root = psutil.Process(self.process.pid)
            _kill([root, *root.children(recursive=True)])
            self.process.communicate()


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _survivors(tree: list[psutil.Process], grace: float = 2.0) -> list[str]:
    """Processes of the tree still alive (a zombie is gone: it only waits to be reaped).
    The grace covers the kernel's delivery of a parent-death signal."""
    deadline = time.monotonic() + grace
    while True:
        alive = [process for process in tree if _alive(process)]
        if not alive or time.monotonic() > deadline:
            return [_describe(process) for process in alive]
        time.sleep(0.05)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _describe(process: psutil.Process) -> str:
    try:
        return f"{process.pid} {process.name()}"
    except psutil.NoSuchProcess:
        return f"{process.pid} (ended just now)"


def _kill(tree: list[psutil.Process]) -> None:
    for process in tree:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass


def _wait_until(condition: Callable[[], bool], what: str, seconds: float = 90.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {seconds:g} s")


def _sign_up(api_url: str, key: str, customer_id: str) -> None:
    """The shop's sign-up through the API: the profile, then the event."""
    with Cyklo(api_url, key) as cyklo:
        cyklo.identify(
            customer_id,
            email=f"{customer_id}@example.com",
            first_name="Ola",
            timezone=daytime_zone(datetime.now(UTC)),  # the welcome goes out now, not after the night's quiet hours
            consents={"email": True, "source": "signup"},
        )
        cyklo.track(customer_id, "signed_up", event_id=f"{customer_id}-signup")


# --- cyklo dev ---------------------------------------------------------------------------------


class DevStack(Command):
    def __init__(self, data: Path, mode: StopMode) -> None:
        api, temporal, emulator = free_port(), free_port(), free_port()
        self.data, self.api_url, self.emulator_url = (
            data,
            f"http://127.0.0.1:{api}",
            f"http://127.0.0.1:{emulator}",
        )
        arguments = ["dev", "--data", str(data), "--api-port", str(api), "--temporal-port", str(temporal)]
        environment = {name: value for name, value in os.environ.items() if name != "CYKLO_DATABASE_URL"}
        super().__init__([*arguments, "--emulator-port", str(emulator)], environment, mode)

    def sign_up(self, customer_id: str) -> None:
        _sign_up(self.api_url, (self.data / "dev-api-key").read_text().strip(), customer_id)

    def outbox(self) -> list[dict[str, object]]:
        answer = httpx.get(self.emulator_url + "/_emulator/messages", params={"channel": "email"}, timeout=5)
        return list(answer.json())

    def emulator(self, order: str, **body: str) -> None:
        httpx.post(self.emulator_url + f"/_emulator/{order}", json=body, timeout=5).raise_for_status()

    def ledger(self) -> list[tuple[str, str]]:
        with sqlite3.connect(self.data / "cyklo.db") as database:
            return list(database.execute("SELECT template, status FROM messages ORDER BY id"))


DevStacks = Callable[..., list[DevStack]]


@pytest.fixture
def dev_stacks(tmp_path: Path) -> Iterator[DevStacks]:
    """`cyklo dev` once per mode given, each with its own folder and ports, all started at once."""
    started: list[DevStack] = []

    def start(*modes: StopMode) -> list[DevStack]:
        stacks = [
            DevStack(tmp_path / f"data-{len(started) + number}", mode) for number, mode in enumerate(modes)
        ]
        started.extend(stacks)
        for stack in stacks:
            stack.wait_healthy(stack.api_url)
        return stacks

    yield start
    for stack in started:
        stack.kill()


@_each_mode
def test_cyklo_dev_stops_within_10_seconds_leaving_no_process(
    dev_stacks: DevStacks, mode: StopMode, run: int
) -> None:
    idle, busy = dev_stacks(mode, mode)
    busy.sign_up("c-dev")
    _wait_until(lambda: len(busy.outbox()) == 1, "the welcome reaches the emulator's outbox", 60)

    for stack in (idle, busy):
        output = stack.stop()

        assert "cyklo stopped" in output
        assert not _listening(stack.api_url)


def test_cyklo_dev_lets_the_send_in_flight_complete_before_it_stops(dev_stacks: DevStacks) -> None:
    [stack] = dev_stacks(MODES[0])
    stack.emulator("hold", channel="email")
    stack.sign_up("c-in-flight")
    _wait_until(lambda: len(stack.outbox()) == 1, "the provider has the welcome, its answer held", 60)

    stack.signal(signal.SIGTERM)
    time.sleep(1)
    assert stack.process.poll() is None, "cyklo dev waits for the send in flight"
    stack.emulator("release")
    stack.ended(exit_code=0)

    assert stack.ledger() == [("welcome", "sent")]


def test_a_second_signal_stops_cyklo_dev_at_once(dev_stacks: DevStacks) -> None:
    [stack] = dev_stacks(MODES[0])
    stack.emulator("hold", channel="email")
    stack.sign_up("c-impatient")
    _wait_until(lambda: len(stack.outbox()) == 1, "the provider has the welcome, its answer held", 60)

    stack.signal(signal.SIGTERM)
    time.sleep(0.5)
    assert stack.process.poll() is None, "the first signal waits for the send in flight"
    stack.signal(signal.SIGINT)
    output = stack.ended(exit_code=128 + signal.SIGINT)

    assert stack.took < 2, "the second signal does not wait"
    assert "stopping at once" in output
    assert stack.ledger() == [("welcome", "sending")], "cut mid-send: left for the ledger's at-most-once rule"


def test_the_temporal_dev_server_does_not_outlive_a_killed_cyklo_dev(dev_stacks: DevStacks) -> None:
    [stack] = dev_stacks(MODES[0])
    root = psutil.Process(stack.process.pid)
    tree = [root, *root.children(recursive=True)]
    assert any(process.name() == "temporal" for process in tree)

    stack.process.kill()
    stack.process.wait()

    assert _survivors(tree) == []


def _listening(url: str) -> bool:
    try:
        httpx.get(url + "/health", timeout=1)
    except httpx.HTTPError:
        return False
    return True


# --- cyklo worker and cyklo api, against a Temporal dev server of the test's own ------------


@dataclass
class Backing:
    """What `cyklo worker` and `cyklo api` run against: Temporal, the emulator, a database."""

    env: WorkflowEnvironment
    emulator: ProviderEmulator
    folder: Path

    def settings(self) -> Settings:
        """Each test its own task queue and database, so no earlier journey reaches its worker."""
        return emulator_settings(
            self.emulator,
            database_url=f"sqlite:///{self.folder}/{uuid.uuid4().hex[:8]}.db",
            journeys_dir=JOURNEYS,
            temporal_address=self.env.client.service_client.config.target_host,
            task_queue=f"shutdown-{uuid.uuid4().hex[:8]}",
            api_keys=f"{KEY}=events,support:read,support:write",
        )

    async def polled(self, task_queue: str) -> bool:
        answer = await self.env.client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace="default",
                task_queue=TaskQueue(name=task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
            )
        )
        return len(answer.pollers) > 0


@pytest.fixture(scope="module")
async def backing(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Backing]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=installed_binary("temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=list(SEARCH_ATTRIBUTES),
        dev_server_log_level="error",
    )
    try:
        with ProviderEmulator() as emulator:
            yield Backing(env, emulator, tmp_path_factory.mktemp("shutdown"))
    finally:
        await env.shutdown()


def _environment(settings: Settings) -> dict[str, str]:
    return {**os.environ, **as_environment(settings)}


async def _until_polled(backing: Backing, task_queue: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not await backing.polled(task_queue):
        assert time.monotonic() < deadline, f"no worker polls {task_queue} within {seconds:g} s"
        await asyncio.sleep(0.1)


async def _route_sign_up(backing: Backing, settings: Settings, customer_id: str) -> None:
    """The shop's signed_up event, as the API would route it to the journey."""
    migrate(settings.database_url)
    publish_journeys(settings, [JOURNEYS])
    scenario = make_scenario(id=customer_id, timezone=daytime_zone(datetime.now(UTC)))
    with session_for(settings.database_url) as session:
        customers.upsert(session, scenario.customer)
        lifecycle = Journey.model_validate_json(journey_versions.get(session, "lifecycle").definition)
    router = EventRouter(backing.env.client, settings, [lifecycle])
    await router.route(
        IncomingEvent(
            event_id=f"{customer_id}-signup",
            customer_id=customer_id,
            type="signed_up",
            occurred_at=datetime.now(UTC),
        )
    )


def _welcomes(backing: Backing, customer_id: str) -> int:
    return sum(
        1
        for message in backing.emulator.messages("email")
        if message.custom_args.get("customer_id") == customer_id
    )


def _ledger(settings: Settings) -> list[tuple[str, str]]:
    with session_for(settings.database_url) as session:
        rows = session.exec(select(Message).order_by(Message.id)).all()  # type: ignore[arg-type]
        return [(row.template, row.status) for row in rows]


@_each_mode
async def test_cyklo_worker_stops_within_10_seconds_leaving_no_process(
    backing: Backing, mode: StopMode, run: int
) -> None:
    idle_settings, busy_settings = backing.settings(), backing.settings()
    idle, busy = (
        Command(["worker"], _environment(settings), mode) for settings in (idle_settings, busy_settings)
    )
    try:
        await _until_polled(backing, idle_settings.task_queue)
        await _until_polled(backing, busy_settings.task_queue)
        customer_id = f"c-worker-{uuid.uuid4().hex[:6]}"
        await _route_sign_up(backing, busy_settings, customer_id)
        _wait_until(
            lambda: _ledger(busy_settings) == [("welcome", "sent")], "the worker sends the welcome", 60
        )
        assert _welcomes(backing, customer_id) == 1

        for worker in (idle, busy):
            assert "cyklo worker: stopped" in worker.stop()
    finally:
        idle.kill()
        busy.kill()


async def test_a_send_the_provider_never_answers_is_cut_at_the_stop_budget(backing: Backing) -> None:
    """The promise is 10 s even when a provider hangs: the send is given up, never resent."""
    settings = backing.settings().model_copy(update={"provider_timeout_seconds": 60})
    worker = Command(["worker"], _environment(settings), MODES[0])
    customer_id = f"c-hung-{uuid.uuid4().hex[:6]}"
    backing.emulator.hold("email")
    try:
        await _until_polled(backing, settings.task_queue)
        await _route_sign_up(backing, settings, customer_id)
        _wait_until(
            lambda: _welcomes(backing, customer_id) == 1, "the provider has the welcome, its answer held", 60
        )
        worker.signal()
        output = worker.ended(exit_code=1)
    finally:
        backing.emulator.release()
        worker.kill()

    assert "stopping at once" in output
    assert _ledger(settings) == [("welcome", "sending")], "a later attempt records it failed, never resends"


@_each_mode
async def test_cyklo_api_stops_within_10_seconds_leaving_no_process(
    backing: Backing, mode: StopMode, run: int
) -> None:
    idle_url, busy_url = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    idle, busy = (
        Command(["api", "--port", url.rsplit(":", 1)[1]], _environment(backing.settings()), mode)
        for url in (idle_url, busy_url)
    )
    try:
        idle.wait_healthy(idle_url)
        busy.wait_healthy(busy_url)
        _sign_up(busy_url, KEY, f"c-api-{uuid.uuid4().hex[:6]}")

        for api, url in ((idle, idle_url), (busy, busy_url)):
            api.stop()
            assert not _listening(url)
    finally:
        idle.kill()
        busy.kill()


# --- the stop itself, in small processes without servers ------------------------------------


def _python(code: str, mode: StopMode = MODES[0]) -> subprocess.Popen[str]:
    """A small Python program of the repository, started as a command is: SIGINT ignored if asked."""
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_ignore_sigint if mode.sigint_ignored_at_start else None,
    )


def _ready(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready", process.communicate()[0]


STOPPING = """
import asyncio, sys, threading, time
from process.shutdown import run_until_stopped

async def main(stop):
    {before}
    print("ready", flush=True)
    await stop.wait()
    {teardown}
    print("stopped in order", flush=True)

run_until_stopped(main, budget_seconds=2)
"""


@pytest.mark.parametrize("mode", MODES, ids=lambda mode: mode.name)
def test_a_thread_nobody_waits_for_does_not_hold_up_the_exit(mode: StopMode) -> None:
    """The second way `cyklo dev` hung: the interpreter's exit waiting on a non-daemon thread."""
    process = _python(
        STOPPING.format(before="threading.Thread(target=time.sleep, args=(60,)).start()", teardown="pass"),
        mode,
    )
    _ready(process)
    started = time.monotonic()
    process.send_signal(mode.signal)
    output, _ = process.communicate(timeout=10)

    assert process.returncode == 0, output
    assert "stopped in order" in output
    assert time.monotonic() - started < 1.5


def test_a_signal_while_starting_is_kept_for_when_it_serves() -> None:
    process = _python(STOPPING.format(before="print('ready', flush=True); time.sleep(1)", teardown="pass"))
    _ready(process)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=10)

    assert process.returncode == 0, output
    assert "stopped in order" in output


def test_a_stop_that_overruns_its_budget_ends_the_process_with_1() -> None:
    process = _python(STOPPING.format(before="pass", teardown="time.sleep(60)"))
    _ready(process)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=10)

    assert process.returncode == 1, output
    assert "the stop took over 2 s: stopping at once" in output
    assert 2 <= time.monotonic() - started < 3.5


def test_a_second_signal_ends_the_process_at_once() -> None:
    process = _python(STOPPING.format(before="pass", teardown="time.sleep(60)"))
    _ready(process)
    process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=10)

    assert process.returncode == 128 + signal.SIGTERM, output
    assert "SIGTERM again: stopping at once" in output
    assert time.monotonic() - started < 1


def test_a_child_started_to_die_with_its_parent_dies_when_the_parent_is_killed() -> None:
    parent = _python(
        "import subprocess; from stack.local import die_with_parent; "
        "child = subprocess.Popen(['sleep', '60'], start_new_session=True, preexec_fn=die_with_parent()); "
        "print('ready', flush=True); child.wait()"
    )
    _ready(parent)
    [child] = psutil.Process(parent.pid).children()

    parent.kill()
    parent.wait()

    assert _survivors([child]) == []


async def test_a_child_that_ignores_sigterm_is_killed_after_its_grace() -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    started = time.monotonic()

    await end_child(child)

    assert child.returncode == -signal.SIGKILL
    assert CHILD_GRACE_SECONDS <= time.monotonic() - started < CHILD_GRACE_SECONDS + 1
