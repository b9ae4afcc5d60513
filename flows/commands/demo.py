"""``allocflow demo``: the embedded demo — broker, simulator and a live view of the topics."""

import argparse
import json
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

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
from allocflow.models.topics import InputTopic

_STATUS_EVERY_S = 2.0
_DRAIN_TIMEOUT_S = 60.0


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``demo`` sub-command."""
    parser = subparsers.add_parser(
        "demo",
        help="run everything locally: embedded broker, simulator, live view of the stream",
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
        "--data-dir", type=Path, default=Path("demo-data"), help="where the manifest goes"
    )
    parser.add_argument(
        "--exit-when-done", action="store_true", help="stop the broker when the stream is in"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Start the broker, feed it live, show what arrives; keep it up until Ctrl-C."""
    scenarios: list[str] = args.scenario or ["baseline"]
    try:
        request = SimulationRequest(
            config=SimulationConfig(
                seed=args.seed, orders=args.orders, behaviour=behaviour_for(scenarios)
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
    topics = {topic: settings.topic_name(topic) for topic in InputTopic}
    _banner(broker, request)
    feed = _Feed(request, KafkaSink(CheckedProducer(connection), topics))
    feed.start()
    with TopicWatcher(connection, topics.values()) as watcher:
        _watch(watcher, feed)
    if feed.error is not None:
        print(f"allocflow demo: the simulator failed: {feed.error}", file=sys.stderr)
        return 1
    _report(watcher, feed.manifest, args.data_dir)
    if args.exit_when_done:
        return 0
    print(f"\nThe broker stays up at {broker.bootstrap_servers}; Ctrl-C stops it.", flush=True)
    while broker.running:
        time.sleep(1)
    return 1


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


def _banner(broker: EmbeddedBroker, request: SimulationRequest) -> None:
    print(f"allocflow demo: embedded Kafka-protocol broker at {broker.bootstrap_servers}")
    print(
        f"simulating {request.config.orders:,} orders (seed {request.config.seed}, "
        f"scenarios {', '.join(request.scenarios)}) at {request.rate:,.0f} messages/s"
    )
    print(
        f"watch a topic in another terminal:\n  ALLOCFLOW_BOOTSTRAP_SERVERS="
        f"{broker.bootstrap_servers} .venv/bin/allocflow tail orders --follow\n",
        flush=True,
    )


def _watch(watcher: TopicWatcher, feed: _Feed) -> None:
    next_status = time.monotonic() + _STATUS_EVERY_S
    drain_deadline: float | None = None
    while True:
        watcher.poll(0.5)
        if time.monotonic() >= next_status:
            print(_status_line(watcher), flush=True)
            next_status += _STATUS_EVERY_S
        if feed.is_alive():
            continue
        if feed.error is not None or watcher.total() >= feed.manifest.get("messages", 0):
            return
        drain_deadline = drain_deadline or time.monotonic() + _DRAIN_TIMEOUT_S
        if time.monotonic() > drain_deadline:
            return


def _status_line(watcher: TopicWatcher) -> str:
    per_topic = "  ".join(
        f"{topic} {watcher.total(topic):,}" for topic in sorted({t for t, _ in watcher.counts})
    )
    return f"[{datetime.now():%H:%M:%S}] received {watcher.total():,} messages | {per_topic}"


def _report(watcher: TopicWatcher, manifest: dict[str, Any], data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = data_dir / "manifest.json"
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    sent, received = manifest["messages"], watcher.total()
    print(f"\nsent {sent:,} messages, read back {received:,} from the broker")
    for (topic, event_type), count in sorted(watcher.counts.items()):
        print(f"  {topic:<16} {event_type:<26} {count:>8,}")
    injected = {kind: info["count"] for kind, info in manifest["faults"].items() if info["count"]}
    print(f"faults injected (see {manifest_path}): {injected or 'none'}")
