"""``allocflow run``: run the allocation dataflow over files or Kafka topics."""

import argparse
import logging
import sys
import time
from pathlib import Path

from allocflow.connectors.policy_file import PolicyError, default_policy, load_policy
from allocflow.flows.allocation import (
    ALLOCATION_INPUTS,
    AllocationFlowConfig,
    FileEndpoints,
    KafkaEndpoints,
    build_allocation_flow,
)
from allocflow.flows.rules.reference import DEFAULT_SHARDS
from allocflow.flows.runtime import run_dataflow
from allocflow.flows.settings import Settings
from allocflow.models.policy import Policy
from allocflow.models.topics import InputTopic, OutputTopic

_LOG = logging.getLogger(__name__)


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``run`` sub-command."""
    parser = subparsers.add_parser(
        "run",
        help="allocate in the stream: orders, stock and shipments in, decisions out",
        description="Run the allocation dataflow. From files (--input DIR, as written by "
        "`allocflow simulate --out`) it runs to the end of the files; from Kafka it tails "
        "the input topics until Ctrl-C.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--input", type=Path, help="directory of <topic>.jsonl input files")
    source.add_argument(
        "--bootstrap", help="Kafka HOST:PORT (default: ALLOCFLOW_BOOTSTRAP_SERVERS)"
    )
    parser.add_argument("--policy", type=Path, help="policy file (default: the packaged one)")
    parser.add_argument("--out", type=Path, help="write <topic>.jsonl outputs here")
    parser.add_argument("--workers", type=int, default=1, help="worker threads (default 1)")
    parser.add_argument(
        "--shards", type=int, default=DEFAULT_SHARDS, help=f"SKU shards (default {DEFAULT_SHARDS})"
    )
    parser.add_argument(
        "--no-tail", action="store_true", help="Kafka: stop at the end of the input topics"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Validate everything, then run the dataflow; exit 2 on bad options or policy."""
    try:
        policy = _policy(args.policy)
        config = AllocationFlowConfig(policy, _endpoints(args, settings), _shards(args.shards))
    except (PolicyError, ValueError) as error:
        print(f"allocflow run: {error}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print(f"allocflow run: --workers must be at least 1 (got {args.workers})", file=sys.stderr)
        return 2
    _LOG.info(
        "policy %s, %d shards, %d worker(s)", policy.policy_version, config.shards, args.workers
    )
    started = time.perf_counter()
    run_dataflow(build_allocation_flow(config), args.workers)
    _LOG.info("allocation flow finished in %.1f s", time.perf_counter() - started)
    return 0


def _policy(path: Path | None) -> Policy:
    return default_policy() if path is None else load_policy(path)


def _shards(shards: int) -> int:
    if not 1 <= shards <= 4096:
        raise ValueError(f"--shards must be within 1..4096 (got {shards})")
    return shards


def _endpoints(args: argparse.Namespace, settings: Settings) -> FileEndpoints | KafkaEndpoints:
    if args.input is not None:
        return _file_endpoints(args.input, args.out)
    connection = settings.kafka_connection(args.bootstrap)
    topics = {t.value: settings.topic_name(t) for t in (*InputTopic, *OutputTopic)}
    if args.out is not None:
        raise ValueError("--out writes files for --input runs; Kafka runs write to the topics")
    return KafkaEndpoints(connection, topics, tail=not args.no_tail)


def _file_endpoints(input_dir: Path, output_dir: Path | None) -> FileEndpoints:
    if output_dir is None:
        raise ValueError("--input needs --out DIR for the output files")
    missing = [
        str(input_dir / f"{topic.value}.jsonl")
        for topic in ALLOCATION_INPUTS
        if not (input_dir / f"{topic.value}.jsonl").is_file()
    ]
    if missing:
        raise ValueError(f"input files not found: {', '.join(missing)}")
    return FileEndpoints(input_dir, output_dir)
