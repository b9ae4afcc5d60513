"""``allocflow demo``: everything locally — broker, simulator, allocation flow, live view."""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from allocflow.connectors.broker import BrokerStartError, EmbeddedBroker
from allocflow.connectors.kafka_io import CheckedProducer
from allocflow.connectors.simulator.engine import SimulationConfig
from allocflow.connectors.simulator.faults import FaultPlan
from allocflow.connectors.simulator.output import KafkaSink
from allocflow.connectors.simulator.runner import SimulationRequest, run_simulation
from allocflow.connectors.simulator.scenarios import SCENARIOS, behaviour_for
from allocflow.connectors.topic_watch import TopicWatcher
from allocflow.flows.commands.broker_cmd import topic_names
from allocflow.flows.settings import Settings
from allocflow.models.topics import InputTopic, OutputTopic

_STATUS_EVERY_S = 2.0
_SETTLE_S = 6.0
_DRAIN_TIMEOUT_S = 120.0
_OUTPUTS = (
    OutputTopic.ALLOCATION_DECISIONS,
    OutputTopic.ALLOCATION_EXCEPTIONS,
    OutputTopic.DEAD_LETTER,
)


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``demo`` sub-command."""
    parser = subparsers.add_parser(
        "demo",
        help="run everything locally: broker, simulator, allocation flow, live view",
    )
    parser.add_argument("--orders", type=int, default=2000, help="orders to simulate")
    parser.add_argument("--rate", type=float, default=2000.0, help="messages per second")
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
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Start the broker and the flow, feed it live, show what comes out; until Ctrl-C."""
    scenarios: list[str] = args.scenario or ["baseline"]
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
    except BrokerStartError as error:
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
    _banner(broker, request, args.data_dir)
    with _AllocationProcess(broker.bootstrap_servers, args.data_dir / "allocation.log") as flow:
        feed = _Feed(request, KafkaSink(CheckedProducer(connection), inputs))
        feed.start()
        with TopicWatcher(connection, [*inputs.values(), *outputs.values()]) as watcher:
            _watch(watcher, feed, flow, outputs)
            if feed.error is not None:
                print(f"allocflow demo: the simulator failed: {feed.error}", file=sys.stderr)
                return 1
            if flow.poll() is not None:
                log = args.data_dir / "allocation.log"
                print(f"allocflow demo: the allocation flow stopped; see {log}", file=sys.stderr)
                return 1
            _report(watcher, feed.manifest, args.data_dir, outputs)
            if args.exit_when_done:
                return 0
            print(f"\nThe broker stays up at {broker.bootstrap_servers}; Ctrl-C stops it.")
            while broker.running and flow.poll() is None:
                watcher.poll(1.0)
    return 1


class _AllocationProcess:
    """``allocflow run`` against the demo broker, as a child process."""

    def __init__(self, bootstrap: str, log_path: Path) -> None:
        self._log: IO[bytes] = log_path.open("wb")
        environment = dict(os.environ, ALLOCFLOW_BOOTSTRAP_SERVERS=bootstrap)
        command = [sys.executable, "-m", "allocflow.flows.cli", "run"]
        self.process = subprocess.Popen(
            command, env=environment, stdout=self._log, stderr=subprocess.STDOUT
        )

    def __enter__(self) -> "subprocess.Popen[bytes]":
        return self.process

    def __exit__(self, *_: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


class _Feed(threading.Thread):
    """Runs the simulator into Kafka in the background."""

    def __init__(self, request: SimulationRequest, sink: KafkaSink) -> None:
        super().__init__(name="allocflow-simulator", daemon=True)
        self._request = request
        self._sink = sink
        self.manifest: dict[str, Any] = {}
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            self.manifest = run_simulation(self._request, self._sink)
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
    flow: "subprocess.Popen[bytes]",
    outputs: dict[OutputTopic, str],
) -> None:
    """Show progress until the feed is in and the flow's outputs stop growing."""
    next_status = time.monotonic() + _STATUS_EVERY_S
    last_output, last_change = -1, time.monotonic()
    deadline: float | None = None
    while flow.poll() is None:
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
