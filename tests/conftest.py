"""Fixtures shared by every test: the embedded Kafka broker, unique topic names, a browser."""

import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from importlib.resources import files
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from allocflow.connectors.broker import EmbeddedBroker
from allocflow.models.topics import InputTopic, OutputTopic

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[EmbeddedBroker]:
    """A Tansu broker for the whole test session, stopped at the end."""
    with EmbeddedBroker() as broker:
        yield broker


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest) -> str:
    """A topic name no other test uses: the test's name plus a random suffix."""
    base = re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name)[:80].strip("-")
    return f"{base}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """Debian's Chromium; skips the test when it is missing, fails instead under CI=true."""
    problem = _chromium_problem()
    if problem is not None:
        reason = (
            f"browser test needs a runnable {CHROMIUM}: {problem}. Install it with `make browser` "
            "(as root with apt-get) or `sudo apt-get install --no-install-recommends chromium "
            "fonts-liberation`; never `playwright install`"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: a skipped browser test is a failure)")
        pytest.skip(reason)
    return str(CHROMIUM)


@pytest.fixture
def browser_page(chromium_executable: str) -> Iterator[Page]:
    """A page (1400x1000) of a fresh headless Chromium, closed after the test."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_executable, args=CHROMIUM_FLAGS
        )
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            yield context.new_page()
            context.close()
        finally:
            browser.close()


def _chromium_problem() -> str | None:
    """Return why Chromium cannot be used, None when ``chromium --version`` works."""
    if not CHROMIUM.exists():
        return "it is not installed"
    try:
        result = subprocess.run(
            [CHROMIUM, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"`chromium --version` failed: {error}"
    if result.returncode != 0:
        details = result.stderr.strip() or "no output"
        return f"`chromium --version` exited with {result.returncode} ({details})"
    return None


@pytest.fixture(scope="session")
def landed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated run (demand spike, faults on) allocated and landed from files.

    The directory holds ``in/`` (simulator output), ``out/`` (allocation flow output)
    and ``allocflow.duckdb`` (landed in batches of 700 messages, so KPIs are built
    incrementally across many transactions) with its published snapshot.
    """
    root = tmp_path_factory.mktemp("landed")
    allocflow = [sys.executable, "-m", "allocflow.flows.cli"]
    steps = (
        ["simulate", "--seed", "11", "--orders", "400", "--scenario", "demand-spike",
         "--faults", "all", "--fault-rate", "0.01", "--stock-cover-days", "0.5",
         "--out", str(root / "in")],
        ["run", "--input", str(root / "in"), "--out", str(root / "out")],
        ["land", "--db", str(root / "allocflow.duckdb"), "--input", str(root / "in"),
         "--out", str(root / "out"), "--batch-size", "700"],
    )  # fmt: skip
    for step in steps:
        subprocess.run([*allocflow, *step], check=True, capture_output=True, timeout=240)
    return root


@pytest.fixture
def pipeline_topics(
    kafka_broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch
) -> dict[InputTopic | OutputTopic, str]:
    """The nine pipeline topics under names no other test uses, created with 4 partitions.

    The ``ALLOCFLOW_TOPIC_*`` and ``ALLOCFLOW_BOOTSTRAP_SERVERS`` variables point every
    command the test runs at them.
    """
    suffix = uuid.uuid4().hex[:8]
    names = {topic: f"{topic.value}-{suffix}" for topic in (*InputTopic, *OutputTopic)}
    for topic, name in names.items():
        monkeypatch.setenv(f"ALLOCFLOW_TOPIC_{topic.name}", name)
    monkeypatch.setenv("ALLOCFLOW_BOOTSTRAP_SERVERS", kafka_broker.bootstrap_servers)
    kafka_broker.create_topics(names.values(), partitions=4)
    return names


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def _run_flow_in_two_processes(
    flow: str, log_dir: Path, env: Mapping[str, str] | None = None
) -> None:
    """Run ``python -m bytewax.run FLOW`` as processes 0 and 1 of one cluster.

    Fails the test (with both processes' logs, kept in ``log_dir``) unless both exit 0.
    """
    addresses = ";".join(f"127.0.0.1:{port}" for port in _free_ports(2))
    logs = [log_dir / f"process-{index}.log" for index in range(2)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", flow, "-i", str(index), "-a", addresses],
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        for index, log in enumerate(logs)
    ]
    try:
        codes = [process.wait(timeout=300) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    assert codes == [0, 0], "\n".join(log.read_text()[-3000:] for log in logs)


def _run_in_two_processes(stream: Path, out: Path) -> None:
    policy = files("allocflow.flows") / "policies" / "default.toml"
    flow = f"allocflow.flows.allocation:get_flow({str(stream)!r}, {str(out)!r}, {str(policy)!r})"
    _run_flow_in_two_processes(flow, out)


@pytest.fixture
def run_in_two_processes() -> Callable[[Path, Path], None]:
    """Run the allocation flow over ``stream`` into ``out`` as a real ``bytewax.run`` pair.

    Fails the test (with both processes' logs) unless both exit 0.
    """
    return _run_in_two_processes


@pytest.fixture
def run_flow_in_two_processes() -> Callable[[str, Path, Mapping[str, str] | None], None]:
    """Run any ``bytewax.run`` flow spec as a two-process cluster, with an environment."""
    return _run_flow_in_two_processes
