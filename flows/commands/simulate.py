"""``allocflow simulate``: generate a realistic distributor stream to files or Kafka."""

import argparse
import json
import re
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from allocflow.connectors.kafka_admin import TopicSetupError, ensure_topics
from allocflow.connectors.kafka_io import CheckedProducer, DeliveryError
from allocflow.connectors.simulator.engine import DEFAULT_START, SimulationConfig
from allocflow.connectors.simulator.faults import DEFAULT_FAULT_RATE, FaultPlan
from allocflow.connectors.simulator.output import FileSink, KafkaSink, RecordSink
from allocflow.connectors.simulator.runner import SimulationRequest, run_simulation
from allocflow.connectors.simulator.scenarios import SCENARIOS, behaviour_for
from allocflow.flows.settings import Settings
from allocflow.models.topics import InputTopic

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``simulate`` sub-command."""
    parser = subparsers.add_parser(
        "simulate",
        help="generate a deterministic distributor event stream (files or Kafka)",
        description="Simulate a regional distributor's ERP/WMS/TMS/carrier feeds. The same "
        "seed and options always give byte-identical output.",
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--orders", type=int, help="number of orders to place (default 2000)")
    size.add_argument("--duration", type=parse_duration, help="order-arrival span, e.g. 8h, 2d")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=sorted(SCENARIOS),
        help="scenario to apply; repeat to combine (default: baseline)",
    )
    parser.add_argument(
        "--faults",
        default="none",
        help="faults to inject: none, all, or kind[=rate],… (kinds: malformed_json, "
        "schema_violation, duplicate, late, orphan_shipment, orphan_scan, negative_stock)",
    )
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=DEFAULT_FAULT_RATE,
        help=f"rate for kinds given without one (default {DEFAULT_FAULT_RATE})",
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--out", type=Path, help="write <topic>.jsonl files into this directory")
    target.add_argument(
        "--bootstrap", help="produce to Kafka at HOST:PORT (default: ALLOCFLOW_BOOTSTRAP_SERVERS)"
    )
    parser.add_argument("--rate", type=float, help="messages per second (default: unlimited)")
    parser.add_argument("--manifest", type=Path, help="manifest path (default: OUT/manifest.json)")
    parser.add_argument("--orders-per-hour", type=float, default=400.0, help="base order rate")
    parser.add_argument("--skus", type=int, default=400, help="number of SKUs (default 400)")
    parser.add_argument("--customers", type=int, default=500, help="number of customers")
    parser.add_argument(
        "--stock-cover-days",
        type=float,
        default=1.5,
        help="mean days of demand in stock at the start (default 1.5; lower: more stockouts)",
    )
    parser.add_argument(
        "--start", type=parse_start, default=DEFAULT_START, help="simulated start (ISO 8601, tz)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def parse_duration(text: str) -> timedelta:
    """Parse ``90m``, ``8h``, ``2d`` or ``3600s``.

    Raises:
        argparse.ArgumentTypeError: Not a positive duration in that form.
    """
    match = _DURATION.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(
            f"expected a positive duration like 8h or 90m, got {text!r}"
        )
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def parse_start(text: str) -> datetime:
    """Parse a timezone-aware ISO 8601 time.

    Raises:
        argparse.ArgumentTypeError: Not ISO 8601, or without a timezone.
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"start needs a timezone, e.g. {text}Z")
    return moment


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the simulation and print its summary; exit 2 on bad options, 1 on I/O errors."""
    try:
        request = _request(args)
        target = _target(args, settings)
    except ValueError as error:
        print(f"allocflow simulate: {error}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        sink, manifest_path, where = _open_sink(target, args, settings)
        manifest = run_simulation(request, sink)
    except (DeliveryError, TopicSetupError, OSError) as error:
        print(f"allocflow simulate: {error}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - started
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print(summary(manifest, elapsed, where, manifest_path))
    return 0


def _request(args: argparse.Namespace) -> SimulationRequest:
    scenarios: list[str] = args.scenario or ["baseline"]
    duration: timedelta | None = args.duration
    orders: int | None = args.orders if args.orders is not None or duration else 2000
    config = SimulationConfig(
        seed=args.seed,
        orders=orders,
        duration=duration,
        orders_per_hour=args.orders_per_hour,
        skus=args.skus,
        customers=args.customers,
        stock_cover_days=args.stock_cover_days,
        behaviour=behaviour_for(scenarios),
        start=args.start,
    )
    return SimulationRequest(
        config=config,
        faults=FaultPlan.parse(args.faults, args.fault_rate),
        scenarios=scenarios,
        rate=args.rate,
        progress=not args.no_progress,
    )


def _target(args: argparse.Namespace, settings: Settings) -> Path | str:
    if args.out is not None:
        out: Path = args.out
        return out
    bootstrap: str | None = args.bootstrap or settings.bootstrap_servers
    if not bootstrap:
        raise ValueError(
            "give --out DIR, or --bootstrap HOST:PORT (or ALLOCFLOW_BOOTSTRAP_SERVERS)"
        )
    return bootstrap


def _open_sink(
    target: Path | str, args: argparse.Namespace, settings: Settings
) -> tuple[RecordSink, Path, str]:
    if isinstance(target, Path):
        manifest: Path = args.manifest or target / "manifest.json"
        return FileSink(target), manifest, f"files in {target}"
    connection = settings.kafka_connection(target)
    topics = {topic: settings.topic_name(topic) for topic in InputTopic}
    ensure_topics(
        connection,
        list(topics.values()),
        settings.topic_partitions,
        settings.topic_replication_factor,
    )
    manifest = args.manifest or Path("simulation-manifest.json")
    sink = KafkaSink(CheckedProducer(connection), topics)
    return sink, manifest, f"Kafka at {target}"


def summary(manifest: dict[str, Any], elapsed_s: float, where: str, manifest_path: Path) -> str:
    """Return the end-of-run summary: messages per topic and type, faults, throughput."""
    lines = [
        f"simulated {manifest['messages']:,} messages to {where} in {elapsed_s:.1f} s "
        f"({manifest['messages'] / max(elapsed_s, 1e-9):,.0f} msg/s)",
        f"seed {manifest['seed']}, scenarios {', '.join(manifest['scenarios'])}, "
        f"events from {manifest['start']} to {manifest['last_event_time']}",
    ]
    for topic, counts in manifest["topics"].items():
        lines.append(f"  {topic:<16} {counts['messages']:>10,}")
        for event_type, count in counts["event_types"].items():
            lines.append(f"      {event_type:<24} {count:>10,}")
    injected = {kind: info["count"] for kind, info in manifest["faults"].items() if info["count"]}
    lines.append(f"  faults injected: {injected or 'none'}")
    lines.append(f"manifest: {manifest_path}")
    return "\n".join(lines)
