"""``allocflow land``: land the pipeline's topics (or files) into one DuckDB file."""

import argparse
import logging
import sys
import threading
import time
from pathlib import Path

import duckdb

from allocflow.connectors.kafka_config import KafkaConnection
from allocflow.connectors.kafka_health import KafkaWaitTimeoutError, wait_for_kafka
from allocflow.connectors.landing.errors import LandingError
from allocflow.connectors.landing.schema import SchemaMismatchError
from allocflow.connectors.landing.service import DataChangeTask, Lander, LandingTotals
from allocflow.connectors.landing.snapshot import snapshot_path
from allocflow.connectors.landing.sources import (
    KafkaLandingSource,
    file_batches,
    held_out_positions,
)
from allocflow.connectors.landing.writer import DuckDBWriter
from allocflow.flows.commands.broker_cmd import stop_signals
from allocflow.flows.commands.quality_cmd import DEFAULT_FRESH_HOURS
from allocflow.flows.settings import Settings
from allocflow.models.topics import InputTopic, OutputTopic

_LOG = logging.getLogger(__name__)

DEFAULT_QUALITY_WINDOW_HOURS = 6.0
"""Event-time window the expectation suites validate beside the lander, by default."""

LANDED_TOPICS = (*InputTopic, *OutputTopic)
"""Every topic of the pipeline is landed: inputs for facts and timelines, outputs for
decisions, exceptions, alerts and dead letters."""


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``land`` sub-command."""
    parser = subparsers.add_parser(
        "land",
        help="land the pipeline's topics or files into DuckDB and publish the dashboard snapshot",
        description="Land every topic (or the JSON Lines files of a file run) into one DuckDB "
        "file: facts, KPI aggregates and views. Kafka: follows the topics until Ctrl-C, "
        "resuming where the file says landing stopped. Files: lands them and exits.",
    )
    parser.add_argument("--db", type=Path, required=True, help="the DuckDB file (created if new)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--bootstrap", help="Kafka HOST:PORT")
    source.add_argument("--input", type=Path, help="directory of the input <topic>.jsonl files")
    parser.add_argument("--out", type=Path, help="with --input: directory of the output files")
    parser.add_argument("--batch-size", type=int, default=5000, help="messages per transaction")
    parser.add_argument(
        "--publish-every", type=float, default=1.5, help="seconds between snapshots"
    )
    parser.add_argument(
        "--until-idle",
        type=float,
        help="Kafka: stop after this many seconds without a new message",
    )
    parser.add_argument("--no-snapshot", action="store_true", help="do not publish a snapshot")
    parser.add_argument(
        "--quality-every",
        type=float,
        help="run the expectation suites whenever landed data changed, at most every this "
        "many seconds, and once more when a finite landing ends (off by default); their "
        "results land in dq_results and reach the dashboard",
    )
    parser.add_argument(
        "--quality-window-hours",
        type=float,
        default=DEFAULT_QUALITY_WINDOW_HOURS,
        help="event-time window (hours before the landing watermark) the suites validate "
        f"(default {DEFAULT_QUALITY_WINDOW_HOURS:g})",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Open the file and land; exit 2 on bad options or a file held by another process."""
    problem = _check(args)
    if problem:
        print(f"allocflow land: {problem}", file=sys.stderr)
        return 2
    try:
        writer = DuckDBWriter(args.db)
    except (SchemaMismatchError, duckdb.IOException) as error:
        print(f"allocflow land: cannot open {args.db}: {error}", file=sys.stderr)
        return 2
    snapshot = None if args.no_snapshot else snapshot_path(args.db)
    tasks = (
        []
        if args.quality_every is None
        else [expectations_task(args.quality_every, args.quality_window_hours)]
    )
    with writer:
        lander = Lander(writer, snapshot, args.publish_every, tasks)
        started = time.perf_counter()
        try:
            if args.input is not None:
                totals = land_files(lander, args.input, args.out, args.batch_size)
            else:
                totals = _follow(lander, args, settings)
        except (KafkaWaitTimeoutError, LandingError) as error:
            print(f"allocflow land: {error}", file=sys.stderr)
            return 1
        except OSError as error:
            print(f"allocflow land: {_read_failure(error)}", file=sys.stderr)
            return 1
    _report(totals, time.perf_counter() - started)
    return 0


def land_files(
    lander: Lander, input_dir: Path, output_dir: Path | None, batch_size: int
) -> LandingTotals:
    """Land a file run's input files and, if given, its output files.

    Input lines the run dead-lettered for their event time are not landed as input
    events (:func:`~allocflow.connectors.landing.sources.held_out_positions`).
    """
    files = {t.value: input_dir / f"{t.value}.jsonl" for t in InputTopic}
    held_out: frozenset[tuple[str, int]] = frozenset()
    if output_dir is not None:
        files.update({t.value: output_dir / f"{t.value}.jsonl" for t in OutputTopic})
        held_out = held_out_positions(output_dir / f"{OutputTopic.DEAD_LETTER.value}.jsonl")
    batches = file_batches(files, lander.writer.next_offset, batch_size, held_out)
    return lander.land_batches(batches)


def _follow(lander: Lander, args: argparse.Namespace, settings: Settings) -> LandingTotals:
    """Follow the topics until stopped, once the cluster answers (topics may come later).

    Raises:
        KafkaWaitTimeoutError: The cluster did not answer within ``broker_wait_timeout_s``.
    """
    connection = settings.kafka_connection(args.bootstrap)
    topics = {t.value: settings.topic_name(t) for t in LANDED_TOPICS}
    with stop_signals() as stop:
        if not wait_for_kafka(connection, (), max_wait_s=settings.broker_wait_timeout_s, stop=stop):
            return lander.totals
        return _land_topics(lander, args, connection, topics, stop)


def _land_topics(
    lander: Lander,
    args: argparse.Namespace,
    connection: KafkaConnection,
    topics: dict[str, str],
    stop: threading.Event,
) -> LandingTotals:
    source = KafkaLandingSource(connection, topics, lander.writer.next_offset)
    print(f"Landing {len(topics)} topics from {connection.bootstrap_servers} into {args.db}")
    try:
        if args.until_idle is not None:
            _stop_when_idle(lander, stop, args.until_idle)
        return lander.follow(source, stop, batch_size=args.batch_size)
    finally:
        source.close()


def _stop_when_idle(lander: Lander, stop: threading.Event, idle_s: float) -> None:
    """Set ``stop`` once no message arrived for ``idle_s`` seconds.

    Time spent landing or running the expectation suites is not idle time: the idle
    time counts from when the last batch landed or the last task ended.
    """
    started = time.monotonic()

    def watch() -> None:
        while not stop.wait(0.5):
            quiet_since = max(started, lander.idle_since)
            if not lander.busy and time.monotonic() - quiet_since >= idle_s:
                stop.set()

    threading.Thread(target=watch, name="land-idle-watch", daemon=True).start()


def expectations_task(min_interval_s: float, window_hours: float) -> DataChangeTask:
    """The expectation suites over the recent window, written by the lander itself.

    Args:
        min_interval_s: Fewest seconds between two runs while data keeps landing.
        window_hours: Width of the event-time window ending at the landing watermark.
    """
    from allocflow.quality.expectations import (  # noqa: PLC0415 - GX takes seconds to import
        ExpectationRunner,
        NothingLandedError,
        write_results,
    )

    runner = ExpectationRunner()

    def validate(con: duckdb.DuckDBPyConnection) -> str:
        try:
            result = runner.run(con, window_hours, DEFAULT_FRESH_HOURS)
        except NothingLandedError:
            return "nothing landed yet"
        write_results(con, result.results())
        failed = sum(len(outcome.failed) for outcome in result.tables)
        return f"{len(result.results())} expectations over {result.window.label()}, {failed} failed"

    return DataChangeTask("expectation suites", min_interval_s, validate)


def _check(args: argparse.Namespace) -> str | None:
    if args.batch_size < 1:
        return f"--batch-size must be at least 1 (got {args.batch_size})"
    if args.publish_every <= 0:
        return f"--publish-every must be positive (got {args.publish_every})"
    if args.out is not None and args.input is None:
        return "--out goes with --input (the output files of a file run)"
    if args.input is not None and not args.input.is_dir():
        return f"--input {args.input} is not a directory"
    if args.until_idle is not None and args.until_idle <= 0:
        return f"--until-idle must be positive (got {args.until_idle})"
    return _check_quality(args)


def _check_quality(args: argparse.Namespace) -> str | None:
    if args.quality_every is not None and args.quality_every <= 0:
        return f"--quality-every must be positive (got {args.quality_every})"
    if args.quality_window_hours <= 0:
        return f"--quality-window-hours must be positive (got {args.quality_window_hours})"
    return None


def _read_failure(error: OSError) -> str:
    """One line for an input that could not be read."""
    where = f" {error.filename}" if error.filename else ""
    return (
        f"cannot read{where} ({error.strerror or error}); make it readable and run the same "
        "command again: landing resumes after the last landed batch"
    )


def _report(totals: LandingTotals, seconds: float) -> None:
    print(
        f"Landed {totals.records:,} messages in {totals.batches:,} batches "
        f"({totals.records_per_second:,.0f} msg/s of landing time, {seconds:.1f} s in all); "
        f"{totals.publications} snapshot(s) published"
        + (
            f"; {totals.quarantined:,} quarantined (see dq_results, origin landing)"
            if totals.quarantined
            else ""
        )
    )
