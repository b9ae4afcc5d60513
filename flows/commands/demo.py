"""``allocflow demo``: everything locally — broker, simulator, allocation flow, live view."""

import argparse
import json
import sys
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any

from allocflow.connectors.broker import BrokerStartError, EmbeddedBroker
from allocflow.connectors.kafka_io import CheckedProducer
from allocflow.connectors.landing.snapshot import snapshot_path
from allocflow.connectors.processes import ChildProcess
from allocflow.connectors.simulator.engine import SimulationConfig
from allocflow.connectors.simulator.faults import FaultPlan
from allocflow.connectors.simulator.output import KafkaSink, OnStored
from allocflow.connectors.simulator.records import SimRecord
from allocflow.connectors.simulator.runner import SimulationRequest, run_simulation
from allocflow.connectors.simulator.scenarios import SCENARIOS, behaviour_for
from allocflow.connectors.topic_watch import TopicWatcher
from allocflow.dashboards.server import DashboardStartError, StreamlitServer
from allocflow.flows.commands.broker_cmd import stop_signals, topic_names
from allocflow.flows.settings import Settings
from allocflow.models.topics import InputTopic, OutputTopic

_STATUS_EVERY_S = 2.0
_SETTLE_S = 6.0
_DRAIN_TIMEOUT_S = 120.0
_OUTPUTS = (
    OutputTopic.ALLOCATION_DECISIONS,
    OutputTopic.ALLOCATION_EXCEPTIONS,
    OutputTopic.DEAD_LETTER,
    OutputTopic.DQ_ALERTS,
    OutputTopic.ROUTE_ALERTS,
)


DEMO_SCENARIOS = ("demand-spike", "carrier-disruption")
"""What the demo simulates unless ``--scenario`` says otherwise: something for every page."""


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``demo`` sub-command."""
    parser = subparsers.add_parser(
        "demo",
        help="run everything locally: broker, simulator, allocation flow, live view",
    )
    parser.add_argument("--orders", type=int, default=2000, help="orders to simulate")
    parser.add_argument("--rate", type=float, default=500.0, help="messages per second")
    parser.add_argument("--seed", type=int, default=7, help="random seed")
    parser.add_argument(
        "--scenario", action="append", choices=sorted(SCENARIOS), help="scenario (repeatable)"
    )
    parser.add_argument("--faults", default="all", help="faults to inject (see simulate)")
    parser.add_argument("--fault-rate", type=float, default=0.002, help="rate per fault kind")
    parser.add_argument(
        "--stock-cover-days", type=float, default=0.5, help="initial stock, in days of demand"
    )
    parser.add_argument(
        "--data-dir", type=Path, default=Path("demo-data"), help="manifest and logs go here"
    )
    parser.add_argument(
        "--exit-when-done", action="store_true", help="stop once the stream is processed"
    )
    parser.add_argument(
        "--port", type=int, default=8501, help="dashboard port (0 picks a free one)"
    )
    parser.add_argument("--no-dashboard", action="store_true", help="do not start the dashboard")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Start the broker and the flow, feed it live, show what comes out; until Ctrl-C."""
    scenarios: list[str] = args.scenario or list(DEMO_SCENARIOS)
    try:
        request = SimulationRequest(
            config=SimulationConfig(
                seed=args.seed,
                orders=args.orders,
                stock_cover_days=args.stock_cover_days,
                behaviour=behaviour_for(scenarios),
            ),
            faults=FaultPlan.parse(args.faults, args.fault_rate),
            scenarios=scenarios,
            rate=args.rate,
            progress=False,
        )
    except ValueError as error:
        print(f"allocflow demo: {error}", file=sys.stderr)
        return 2
    broker = EmbeddedBroker(
        binary=settings.broker_binary,
        port=settings.broker_port,
        startup_timeout_s=settings.broker_startup_timeout_s,
    )
    try:
        with broker:
            return _demo(broker, request, settings, args)
    except (BrokerStartError, DashboardStartError) as error:
        print(f"allocflow demo: {error}", file=sys.stderr)
        return 1


def _demo(
    broker: EmbeddedBroker,
    request: SimulationRequest,
    settings: Settings,
    args: argparse.Namespace,
) -> int:
    broker.create_topics(topic_names(settings), partitions=settings.topic_partitions)
    connection = settings.kafka_connection(broker.bootstrap_servers)
    inputs = {topic: settings.topic_name(topic) for topic in InputTopic}
    outputs = {topic: settings.topic_name(topic) for topic in _OUTPUTS}
    args.data_dir.mkdir(parents=True, exist_ok=True)
    db = _fresh_database(args.data_dir)
    _banner(broker, request, args.data_dir)
    with (
        stop_signals() as stop,
        _child("allocation flow", ["run"], broker, args.data_dir / "allocation.log") as flow,
        _child("lander", _land_args(db, broker), broker, args.data_dir / "land.log") as lander,
        _dashboard(args, db) as dashboard,
    ):
        _announce(flow, lander, dashboard, db)
        feed = _Feed(request, KafkaSink(CheckedProducer(connection), inputs), stop)
        feed.start()
        with TopicWatcher(connection, [*inputs.values(), *outputs.values()]) as watcher:
            _watch(watcher, feed, (flow, lander), outputs, stop)
            if stop.is_set():
                feed.join(timeout=30)
                print("allocflow demo: stopping the dashboard, the lander, the flow and the broker")
                return 0
            problem = _problem(feed, (flow, lander))
            if problem:
                print(f"allocflow demo: {problem}", file=sys.stderr)
                return 1
            _report(watcher, feed.manifest, args.data_dir, outputs)
            if args.exit_when_done:
                return 0
            print("\nEverything stays up; Ctrl-C stops it all.", flush=True)
            while not stop.wait(1.0) and broker.running and _problem(feed, (flow, lander)) is None:
                watcher.poll(0.1)
    print("allocflow demo: stopped the dashboard, the lander, the flow and the broker")
    return 0


def _fresh_database(data_dir: Path) -> Path:
    """The demo's DuckDB file, emptied: the embedded broker starts empty too."""
    db = data_dir / "allocflow.duckdb"
    for stale in (db, db.with_name(db.name + ".wal"), snapshot_path(db)):
        stale.unlink(missing_ok=True)
    return db


_QUALITY_EVERY_S = 30


def _land_args(db: Path, broker: EmbeddedBroker) -> list[str]:
    return [
        "land",
        "--db",
        str(db),
        "--bootstrap",
        broker.bootstrap_servers,
        "--quality-every",
        str(_QUALITY_EVERY_S),
    ]


def _child(name: str, args: list[str], broker: EmbeddedBroker, log: Path) -> ChildProcess:
    command = [sys.executable, "-m", "allocflow.flows.cli", *args]
    env = {"ALLOCFLOW_BOOTSTRAP_SERVERS": broker.bootstrap_servers}
    return ChildProcess(name, command, log, env=env)


def _dashboard(
    args: argparse.Namespace, db: Path
) -> AbstractContextManager[StreamlitServer | None]:
    if args.no_dashboard:
        return nullcontext()
    log = args.data_dir / "dashboard.log"
    return StreamlitServer(app_args=["--db", str(db.resolve())], port=args.port, log_path=log)


def _announce(
    flow: ChildProcess, lander: ChildProcess, dashboard: StreamlitServer | None, db: Path
) -> None:
    print(f"started the allocation flow (pid {flow.process.pid}, log {flow.log_path})")
    print(f"started the lander into {db} (pid {lander.process.pid}, log {lander.log_path})")
    if dashboard is not None:
        print(f"started the dashboard: {dashboard.url}  (pid {dashboard.pid})")
    print("Ctrl-C stops everything.\n", flush=True)


def _problem(feed: "_Feed", children: tuple[ChildProcess, ...]) -> str | None:
    if feed.error is not None:
        return f"the simulator failed: {feed.error}"
    for child in children:
        if child.poll() is not None:
            return f"the {child.name} stopped; see {child.log_path}"
    return None


class _FeedStoppedError(Exception):
    """The demo is stopping: the simulator stops feeding."""


class _StoppableSink:
    """The Kafka sink, refusing records once the demo is asked to stop."""

    def __init__(self, sink: KafkaSink, stop: threading.Event) -> None:
        self._sink = sink
        self._stop = stop

    def write(self, record: SimRecord, on_stored: OnStored | None = None) -> None:
        if self._stop.is_set():
            raise _FeedStoppedError
        self._sink.write(record, on_stored)

    def close(self) -> None:
        self._sink.close()


class _Feed(threading.Thread):
    """Runs the simulator into Kafka in the background, until done or stopped."""

    def __init__(self, request: SimulationRequest, sink: KafkaSink, stop: threading.Event) -> None:
        super().__init__(name="allocflow-simulator", daemon=True)
        self._request = request
        self._sink = _StoppableSink(sink, stop)
        self.manifest: dict[str, Any] = {}
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            self.manifest = run_simulation(self._request, self._sink)
        except _FeedStoppedError:
            self._sink.close()
        except Exception as error:
            self.error = error


def _banner(broker: EmbeddedBroker, request: SimulationRequest, data_dir: Path) -> None:
    print(f"allocflow demo: embedded Kafka-protocol broker at {broker.bootstrap_servers}")
    print(
        f"simulating {request.config.orders:,} orders (seed {request.config.seed}, "
        f"scenarios {', '.join(request.scenarios)}) at {request.rate:,.0f} messages/s"
    )
    print(f"the allocation flow runs beside it (log: {data_dir / 'allocation.log'})")
    print(
        f"watch a topic in another terminal:\n  ALLOCFLOW_BOOTSTRAP_SERVERS="
        f"{broker.bootstrap_servers} .venv/bin/allocflow tail allocation-decisions --follow\n",
        flush=True,
    )


def _watch(
    watcher: TopicWatcher,
    feed: _Feed,
    children: tuple[ChildProcess, ...],
    outputs: dict[OutputTopic, str],
    stop: threading.Event,
) -> None:
    """Show progress until the feed is in and the flow's outputs stop growing."""
    next_status = time.monotonic() + _STATUS_EVERY_S
    last_output, last_change = -1, time.monotonic()
    deadline: float | None = None
    while not stop.is_set() and all(child.poll() is None for child in children):
        watcher.poll(0.5)
        now = time.monotonic()
        if now >= next_status:
            print(_status_line(watcher, outputs), flush=True)
            next_status += _STATUS_EVERY_S
        produced = sum(watcher.total(name) for name in outputs.values())
        if produced != last_output:
            last_output, last_change = produced, now
        if feed.is_alive():
            continue
        if feed.error is not None:
            return
        deadline = deadline or now + _DRAIN_TIMEOUT_S
        settled = produced > 0 and now - last_change >= _SETTLE_S
        if settled or now > deadline:
            return


def _status_line(watcher: TopicWatcher, outputs: dict[OutputTopic, str]) -> str:
    inputs = sum(
        watcher.total(name) for name in {t for t, _ in watcher.counts} - set(outputs.values())
    )
    produced = "  ".join(f"{name} {watcher.total(name):,}" for name in outputs.values())
    return f"[{datetime.now():%H:%M:%S}] in {inputs:,} messages | out: {produced}"


def _report(
    watcher: TopicWatcher,
    manifest: dict[str, Any],
    data_dir: Path,
    outputs: dict[OutputTopic, str],
) -> None:
    manifest_path = data_dir / "manifest.json"
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print(f"\nsent {manifest['messages']:,} messages; the flow wrote:")
    for (topic, kind), count in sorted(watcher.counts.items()):
        if topic in outputs.values():
            print(f"  {topic:<24} {kind:<24} {count:>8,}")
    latest = watcher.latest.get((outputs[OutputTopic.ALLOCATION_DECISIONS], "allocation.decision"))
    if latest is not None:
        decision = json.loads(latest)
        print(f"\nlatest decision, {decision['order_id']} line {decision['line_id']}:")
        print(f"  {decision['explanation']}")
    injected = {kind: info["count"] for kind, info in manifest["faults"].items() if info["count"]}
    print(f"\nfaults injected (see {manifest_path}): {injected or 'none'}")
