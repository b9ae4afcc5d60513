"""``allocflow run``: run the allocation dataflow over files or Kafka topics."""

import argparse
import logging
import sys
import threading
import time
from pathlib import Path

import duckdb
from bytewax.errors import BytewaxRuntimeError

from allocflow.connectors.aligned_kafka import AlignedKafkaError
from allocflow.connectors.input_stop import EXIT_STOPPED, inputs_end_on_signals
from allocflow.connectors.kafka_health import KafkaWaitTimeoutError, wait_for_kafka
from allocflow.connectors.kafka_io import DeliveryError, TopicReadError
from allocflow.connectors.landing.errors import LandingError
from allocflow.connectors.landing.schema import SchemaMismatchError
from allocflow.connectors.landing.service import Lander
from allocflow.connectors.landing.snapshot import snapshot_path
from allocflow.connectors.landing.writer import DuckDBWriter
from allocflow.connectors.policy_file import PolicyError, default_policy, load_policy
from allocflow.connectors.processes import ChildProcess
from allocflow.connectors.step_failure import StepFailure, one_line_failures, step_failure
from allocflow.flows.allocation import (
    ALLOCATION_INPUTS,
    AllocationFlowConfig,
    FileEndpoints,
    KafkaEndpoints,
    build_allocation_flow,
)
from allocflow.flows.commands import run_paths
from allocflow.flows.commands.land_cmd import (
    DEFAULT_QUALITY_WINDOW_HOURS,
    expectations_task,
    land_files,
)
from allocflow.flows.commands.recovery_cmd import existing_partitions, recovery_for
from allocflow.flows.commands.run_accounting import (
    account_kafka_run,
    account_run,
    input_files,
    kafka_scope,
)
from allocflow.flows.rules.reference import DEFAULT_SHARDS
from allocflow.flows.runtime import Recovery, run_dataflow
from allocflow.flows.settings import Settings
from allocflow.models.policy import Policy
from allocflow.models.topics import InputTopic, OutputTopic

_LOG = logging.getLogger(__name__)

MAX_WORKERS = 256
"""The most worker threads a run may ask for."""


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
    parser.add_argument(
        "--db",
        type=Path,
        help="land everything into this DuckDB file (facts, KPIs, dashboard snapshot): "
        "files after the run; Kafka by an `allocflow land` process beside the flow",
    )
    parser.add_argument(
        "--quality-every",
        type=float,
        help="with --db: run the expectation suites over the landed data whenever it changed, "
        "at most every this many seconds, and once at the end of a finite run (as "
        "`allocflow land --quality-every`)",
    )
    parser.add_argument(
        "--recovery-dir",
        type=Path,
        help="resume from and snapshot into this recovery store (default: "
        "ALLOCFLOW_RECOVERY_DIR; create it with `allocflow recovery init DIR`)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Validate everything, then run the dataflow; exit 2 on bad options or policy."""
    try:
        policy = _policy(args.policy)
        config = AllocationFlowConfig(
            policy,
            _endpoints(args, settings),
            _shards(args.shards),
            settings.gate_settings(),
            settings.tracking_settings(),
            settings.order_retention(),
            settings.event_time_range(),
        )
        recovery = recovery_for(args.recovery_dir, settings)
        _check_writable(args.db, recovery)
    except (PolicyError, ValueError) as error:
        print(f"allocflow run: {error}", file=sys.stderr)
        return 2
    if not 1 <= args.workers <= MAX_WORKERS:
        print(
            f"allocflow run: --workers must be within 1..{MAX_WORKERS} (got {args.workers})",
            file=sys.stderr,
        )
        return 2
    if args.quality_every is not None and (args.quality_every <= 0 or args.db is None):
        print("allocflow run: --quality-every needs --db and a positive value", file=sys.stderr)
        return 2
    _LOG.info(
        "policy %s, %d shards, %d worker(s)", policy.policy_version, config.shards, args.workers
    )
    _log_recovery(recovery)
    if isinstance(config.endpoints, KafkaEndpoints):
        if not _wait_for_kafka(config.endpoints, settings.broker_wait_timeout_s):
            return 1
        return _run_kafka(args, config, config.endpoints, recovery)
    return _run_files(args, config, config.endpoints, recovery)


def _run_files(
    args: argparse.Namespace,
    config: AllocationFlowConfig,
    endpoints: FileEndpoints,
    recovery: Recovery | None,
) -> int:
    """Run the file flow, print its accounting and land it with --db.

    SIGINT or SIGTERM ends the input early (:func:`_stopped_on_request`).
    """
    started = time.perf_counter()
    with inputs_end_on_signals() as stop_requested:
        failure = _run_file_flow(config, args.workers, recovery)
        if failure is not None:
            landing = "" if args.db is None else f"; nothing was landed into {args.db}"
            print(f"allocflow run: stopped: {failure}{landing}", file=sys.stderr)
            return 1
        if stop_requested.is_set():
            return _stopped_on_request(recovery)
    _LOG.info("allocation flow finished in %.1f s", time.perf_counter() - started)
    _print_accounting(endpoints)
    if args.db is not None:
        return _land_files(args.db, endpoints, args.quality_every)
    return 0


def _run_file_flow(
    config: AllocationFlowConfig, workers: int, recovery: Recovery | None
) -> StepFailure | None:
    """Run the file flow; the failure an output file met (a full disk), else None.

    Bytewax's panic for such a failure is silenced (:mod:`allocflow.connectors.step_failure`):
    the caller prints one line instead.
    """
    with one_line_failures():
        try:
            run_dataflow(build_allocation_flow(config), workers, recovery)
        except Exception as error:  # Bytewax re-raises a step's exception, or wraps it
            failure = step_failure(error)
            if failure is None:
                raise
            return failure
    return None


def _wait_for_kafka(endpoints: KafkaEndpoints, max_wait_s: float) -> bool:
    """Wait until the cluster answers and every input topic exists.

    Output topics are not waited for: a broker that creates topics on first use
    creates them, and with creation off the first delivery fails loudly.
    """
    inputs = [endpoints.topics[topic.value] for topic in ALLOCATION_INPUTS]
    try:
        wait_for_kafka(endpoints.connection, inputs, max_wait_s=max_wait_s)
    except KafkaWaitTimeoutError as error:
        print(f"allocflow run: {error}", file=sys.stderr)
        return False
    return True


def _run_kafka(
    args: argparse.Namespace,
    config: AllocationFlowConfig,
    endpoints: KafkaEndpoints,
    recovery: Recovery | None,
) -> int:
    """Run the Kafka flow (with a lander beside it for --db); exit 1 if Kafka fails it.

    SIGINT or SIGTERM (Ctrl-C, ``docker stop``) ends the input and lets the flow
    deliver its outputs; the run then exits 130 (:func:`_stopped_on_request`).
    """
    started = time.perf_counter()
    if args.db is None:
        with inputs_end_on_signals() as stop_requested:
            if not _run_flow(config, args.workers, recovery):
                return 1
            if stop_requested.is_set():
                return _stopped_on_request(recovery)
        _LOG.info("allocation flow finished in %.1f s", time.perf_counter() - started)
        return _print_kafka_accounting(endpoints)
    return _run_kafka_and_land(args, config, endpoints, recovery)


def _run_kafka_and_land(
    args: argparse.Namespace,
    config: AllocationFlowConfig,
    endpoints: KafkaEndpoints,
    recovery: Recovery | None,
) -> int:
    """Run the Kafka flow with ``allocflow land`` beside it (--db); see :func:`_run_kafka`."""
    started = time.perf_counter()
    with _kafka_lander(args, endpoints) as lander, inputs_end_on_signals() as stop_requested:
        if not _run_flow(config, args.workers, recovery):
            return 1
        if stop_requested.is_set():
            lander.stop()
            return _stopped_on_request(recovery)
        _LOG.info("allocation flow finished in %.1f s", time.perf_counter() - started)
        accounted = _print_kafka_accounting(endpoints)
        landed = _finish_landing(lander, drain=args.no_tail, stop_requested=stop_requested)
        if stop_requested.is_set():
            return _stopped_on_request(recovery)
        return landed or accounted


def _stopped_on_request(recovery: Recovery | None) -> int:
    """Say where a run stopped on a signal leaves the user; :data:`EXIT_STOPPED`."""
    resume = (
        f"a run with --recovery-dir {recovery.directory} resumes after the last input read"
        if recovery is not None
        else "without a recovery store, a new run starts again from the start of the inputs"
    )
    print(f"allocflow run: stopped on request, outputs delivered; {resume}", file=sys.stderr)
    return EXIT_STOPPED


def _run_flow(config: AllocationFlowConfig, workers: int, recovery: Recovery | None) -> bool:
    """Run the Kafka flow; False, with the reason on stderr, when Kafka made it fail."""
    try:
        run_dataflow(build_allocation_flow(config), workers, recovery)
    except BytewaxRuntimeError as error:
        cause = _kafka_cause(error)
        if isinstance(cause, KeyboardInterrupt):
            raise cause from None
        if cause is None:
            raise
        print(
            f"allocflow run: stopped, Kafka failed: {cause} "
            "(nothing is lost: run again to redo the last epoch, from the newest snapshot "
            "with --recovery-dir, else from the start of the input topics)",
            file=sys.stderr,
        )
        return False
    return True


def _kafka_cause(
    error: BaseException,
) -> DeliveryError | AlignedKafkaError | KeyboardInterrupt | None:
    """Return the Kafka error (or Ctrl-C) that stopped the dataflow, if that was it."""
    current: BaseException | None = error
    while current is not None:
        if isinstance(current, DeliveryError | AlignedKafkaError | KeyboardInterrupt):
            return current
        current = current.__cause__ or current.__context__
    return None


def _log_recovery(recovery: Recovery | None) -> None:
    if recovery is None:
        _LOG.info("no recovery store: a restart re-reads the inputs from the start")
        return
    _LOG.info(
        "recovery store %s: resuming from its newest snapshot, snapshotting every %d s",
        recovery.directory,
        recovery.snapshot_interval.total_seconds(),
    )


def _print_accounting(endpoints: FileEndpoints) -> None:
    """Print where every input message of the finished file run went."""
    inputs = input_files(endpoints.input_dir, ALLOCATION_INPUTS)
    print(account_run(inputs, endpoints.output_dir).report())


def _print_kafka_accounting(endpoints: KafkaEndpoints) -> int:
    """Print where the input messages of a finished ``--no-tail`` run went; 1 if unreadable.

    A tailing run never finishes by itself (it ends with Ctrl-C): nothing to print.
    """
    if endpoints.tail:
        return 0
    _LOG.info(kafka_scope(endpoints.topics, ALLOCATION_INPUTS))
    try:
        accounting = account_kafka_run(endpoints.connection, endpoints.topics, ALLOCATION_INPUTS)
    except TopicReadError as error:
        print(f"allocflow run: cannot count the run's topics: {error}", file=sys.stderr)
        return 1
    print(accounting.report())
    return 0


_LANDER_DRAIN_IDLE_S = 5.0
_LANDER_DRAIN_TIMEOUT_S = 600.0
_LANDER_POLL_S = 0.5


def _kafka_lander(args: argparse.Namespace, endpoints: KafkaEndpoints) -> ChildProcess:
    """``allocflow land`` beside the flow; with --no-tail it stops once the topics are quiet."""
    command = [
        sys.executable,
        "-m",
        "allocflow.flows.cli",
        "land",
        "--db",
        str(args.db),
        "--bootstrap",
        endpoints.connection.bootstrap_servers,
    ]
    if args.no_tail:
        command += ["--until-idle", str(_LANDER_DRAIN_IDLE_S)]
    if args.quality_every is not None:
        command += ["--quality-every", str(args.quality_every)]
    log_path = args.db.with_name(args.db.name + ".land.log")
    _LOG.info("landing into %s (lander log: %s)", args.db, log_path)
    return ChildProcess("lander", command, log_path)


def _finish_landing(lander: ChildProcess, *, drain: bool, stop_requested: threading.Event) -> int:
    """Let the lander drain the topics (or stop it); 1 if it failed or did not drain in time.

    A stop requested while it drains stops it at once; it resumes from its offsets.
    """
    code = _drained(lander, stop_requested) if drain else lander.stop()
    if stop_requested.is_set():
        return 0
    if code != 0:
        print(f"allocflow run: the lander failed; see {lander.log_path}", file=sys.stderr)
        return 1
    return 0


def _drained(lander: ChildProcess, stop_requested: threading.Event) -> int | None:
    """Wait for the lander to exit on its own; stop it on request; None on timeout."""
    deadline = time.monotonic() + _LANDER_DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        code = lander.wait(_LANDER_POLL_S)
        if code is not None:
            return code
        if stop_requested.is_set():
            return lander.stop()
    return None


def _land_files(db: Path, endpoints: FileEndpoints, quality_every: float | None) -> int:
    try:
        writer = DuckDBWriter(db)
    except (SchemaMismatchError, duckdb.IOException) as error:
        print(f"allocflow run: cannot land into {db}: {error}", file=sys.stderr)
        return 1
    tasks = (
        []
        if quality_every is None
        else [expectations_task(quality_every, DEFAULT_QUALITY_WINDOW_HOURS)]
    )
    with writer:
        try:
            totals = land_files(
                Lander(writer, snapshot_path(db), tasks=tasks),
                endpoints.input_dir,
                endpoints.output_dir,
                5000,
            )
        except LandingError as error:
            print(f"allocflow run: {error}", file=sys.stderr)
            return 1
    _LOG.info("landed %d messages into %s", totals.records, db)
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
    run_paths.readable_files(
        (input_dir / f"{topic.value}.jsonl" for topic in ALLOCATION_INPUTS), "--input"
    )
    run_paths.writable_directory(output_dir, "--out")
    run_paths.writable_files_in(
        output_dir, (f"{topic.value}.jsonl" for topic in OutputTopic), "--out"
    )
    return FileEndpoints(input_dir, output_dir)


def _check_writable(db: Path | None, recovery: Recovery | None) -> None:
    """Check that --db and the recovery store can be written before anything runs.

    Raises:
        UnusablePathError: Naming the option, the path and what to do.
    """
    if db is not None:
        run_paths.writable_file(db, "--db")
    if recovery is not None:
        run_paths.writable_directory(recovery.directory, "--recovery-dir")
        run_paths.writable_files_in(
            recovery.directory,
            (path.name for path in existing_partitions(recovery.directory)),
            "--recovery-dir",
        )
