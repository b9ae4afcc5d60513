"""Chaos: kill -9 the pipeline at random points, restart it, compare with a run that never crashed.

One embedded broker holds one simulated stream (``allocflow simulate --faults all``) in
the input topics, 4 partitions each, produced before anything reads it (a backlog, so
the event-time merge is exact and both runs see the same order). Then:

* **reference**: ``allocflow run --no-tail --db ref.duckdb`` writes its own output
  topics and lands everything into its own DuckDB file, undisturbed;
* **chaos**: ``allocflow run --no-tail --db chaos.duckdb --recovery-dir STORE`` over
  the same inputs into other output topics, with snapshots every
  ``--snapshot-interval`` seconds, is killed with SIGKILL ``--kills`` times at random
  moments while it writes (each start after a random 3-10 % of the reference's
  decisions; the lander it runs dies with it) and restarted each time; the last run
  goes to the end.

With ``--signal TERM`` (or ``INT``) each start is stopped instead of killed: the run
ends its input, delivers its outputs, snapshots where it stopped and exits 130, so its
restart replays nothing (``replayed`` 0, checked by the integration test).

Compared: every output topic, deduplicated by record id (``lost``: ids of the
reference missing from the chaos run; ``duplicated``: ids only the chaos run has;
``mismatched``: same id, different record; ``replayed``: repeated copies of a record,
which at-least-once output allows). Order statuses are a changelog per order: each
order's current status is compared, by content. Earlier statuses depend on the order
in which an order's line decisions arrive from their shards, which a replay can change
(and with them the current status's version number, hence its id); they are only
counted (``statuses``: earlier status ids found in one run only). Also compared: every
fact table of the two DuckDB files except wall-clock columns and columns that depend
on batching (decisions' positions in their output topic, status versions); every KPI
view except ``kpi_allocation_latency`` (it measures wall-clock produce times). All of
lost, duplicated and mismatched, and every differing row, must be 0.

Usage::

    .venv/bin/python bench/chaos.py [--orders 3000] [--kills 3] [--seed 11] [--signal KILL]
"""

# The SQL below names fact tables, KPI views and DuckDB's own column names, never input.
# ruff: noqa: S608

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import orjson

from allocflow.connectors.broker import EmbeddedBroker
from allocflow.connectors.input_stop import EXIT_STOPPED
from allocflow.connectors.kafka_config import KafkaConnection
from allocflow.connectors.landing.kpi_views import KPI_VIEWS
from allocflow.connectors.landing.schema import FACT_TABLES
from allocflow.connectors.topic_counts import message_count, topic_values
from allocflow.models.topics import InputTopic, OutputTopic

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ID_FIELDS = ("decision_id", "record_id", "alert_id", "dead_letter_id")
"""The deterministic id of each output record type, in the order they are looked for."""
WALL_CLOCK_COLUMNS = frozenset(
    {
        "ingested_at",
        "produced_at",
        "latency_ms",
        "source_timestamp",
        "dead_lettered_at",
        "landed_from",
    }
)
"""Columns that record when (Kafka timestamps) or from which output topic a row was landed."""
BATCHING_COLUMNS = {
    "allocation_decisions": frozenset({"source_partition", "source_offset"}),
    "order_lines": frozenset({"first_offset", "last_offset"}),
    "orders": frozenset({"status_version"}),
}
"""Columns that depend on how output was batched, not on what it says: a decision's
position in its output topic (replays move it on) and the version number of an
order's current status."""
DOUBLE_DIGITS = 9
"""Decimals compared of floating-point columns (sums may add up in another order)."""
STATUS_NUMBERING = frozenset({"record_id", "version"})
"""An order status's id and version: which statuses precede the current one, so its
version number, depends on batching (see ``OrderStatus``); its content does not."""
SKIPPED_TABLES = frozenset({"landing_offsets", "landing_status"})
SKIPPED_VIEWS = frozenset({"kpi_allocation_latency"})
RUN_TIMEOUT_S = 900.0
STOP_TIMEOUT_S = 60.0


@dataclass
class TopicComparison:
    """One output topic of the chaos run against the reference's."""

    topic: str
    reference: int
    chaos: int
    lost: int
    duplicated: int
    mismatched: int
    replayed: int
    superseded_statuses: int = 0


@dataclass
class ChaosReport:
    """What the chaos run did and how it compares."""

    orders: int
    input_messages: int
    stop_signal: str = signal.SIGKILL.name
    kills: list[float] = field(default_factory=list)
    reference_s: float = 0.0
    chaos_s: float = 0.0
    topics: list[TopicComparison] = field(default_factory=list)
    table_mismatches: dict[str, int] = field(default_factory=dict)
    view_mismatches: dict[str, int] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        """Nothing lost, duplicated or mismatched anywhere."""
        bad = sum(t.lost + t.duplicated + t.mismatched for t in self.topics)
        return (
            bad == 0
            and not any(self.table_mismatches.values())
            and not any(self.view_mismatches.values())
        )


def run_chaos(
    work: Path,
    orders: int,
    kills: int,
    seed: int,
    snapshot_s: int,
    *,
    stop_signal: signal.Signals = signal.SIGKILL,
) -> ChaosReport:
    """Run the whole experiment in ``work`` and return its report.

    ``stop_signal`` is what interrupts each start: SIGKILL (a crash) or SIGTERM/SIGINT
    (a requested stop).
    """
    with EmbeddedBroker(log_dir=work) as broker:
        connection = broker.connection()
        runs = {name: _output_topics(name) for name in ("ref", "chaos")}
        inputs = [topic.value for topic in InputTopic]
        outputs = [name for names in runs.values() for name in names.values()]
        broker.create_topics([*inputs, *outputs], partitions=4)
        base = _environment(broker.bootstrap_servers)
        report = ChaosReport(
            orders=orders,
            input_messages=_simulate(work, base, orders, seed),
            stop_signal=stop_signal.name,
        )
        started = time.perf_counter()
        _allocflow(_run_args(work / "ref.duckdb"), base | _topic_env(runs["ref"]), work / "ref.log")
        report.reference_s = time.perf_counter() - started
        store = work / "recovery"
        _allocflow(["recovery", "init", str(store)], base, work / "recovery-init.log")
        run = _ChaosRun(
            command=_command([*_run_args(work / "chaos.duckdb"), "--recovery-dir", str(store)]),
            env=base
            | _topic_env(runs["chaos"])
            | {"ALLOCFLOW_SNAPSHOT_INTERVAL_S": str(snapshot_s)},
            log=work / "chaos.log",
            connection=connection,
            decisions_topic=runs["chaos"][OutputTopic.ALLOCATION_DECISIONS],
            reference_decisions=message_count(
                connection, runs["ref"][OutputTopic.ALLOCATION_DECISIONS]
            ),
            stop_signal=stop_signal,
        )
        started = time.perf_counter()
        report.kills = _run_with_kills(run, kills, random.Random(seed))
        report.chaos_s = time.perf_counter() - started
        report.topics = [
            compare_topic(connection, runs["ref"][topic], runs["chaos"][topic])
            for topic in OutputTopic
        ]
    report.table_mismatches, report.view_mismatches = compare_databases(
        work / "ref.duckdb", work / "chaos.duckdb"
    )
    return report


def compare_topic(connection: KafkaConnection, reference: str, chaos: str) -> TopicComparison:
    """Compare two output topics record by record, keyed by each record's id.

    Order statuses form a changelog per order: the current (highest version) status
    of each order is compared, keyed by order; the statuses before it may differ when
    a replay delivers an order's line decisions in another order (see
    :class:`~allocflow.models.order_status.OrderStatus`), and are counted apart.
    """
    expected, expected_history = _keyed(topic_values(connection, reference))
    got, got_history = _keyed(topic_values(connection, chaos))
    mismatched = sum(
        1
        for key, copies in got.items()
        if key in expected and any(copy != expected[key][0] for copy in copies)
    )
    return TopicComparison(
        topic=reference.removeprefix("ref-"),
        reference=sum(len(copies) for copies in expected.values()),
        chaos=sum(len(copies) for copies in got.values()),
        lost=len(expected.keys() - got.keys()),
        duplicated=len(got.keys() - expected.keys()),
        mismatched=mismatched,
        replayed=sum(len(copies) - 1 for copies in got.values()),
        superseded_statuses=len(got_history ^ expected_history),
    )


def compare_databases(reference: Path, chaos: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Count rows that differ, per fact table and per KPI view, between two landed files."""
    with duckdb.connect(str(chaos), read_only=True) as con:
        con.execute(f"ATTACH '{reference}' AS ref (READ_ONLY)")
        tables = {
            table: _differences(con, table) for table in FACT_TABLES if table not in SKIPPED_TABLES
        }
        views = {view: _differences(con, view) for view in KPI_VIEWS if view not in SKIPPED_VIEWS}
    return tables, views


def _differences(con: duckdb.DuckDBPyConnection, relation: str) -> int:
    """Rows of ``relation`` in one file and not the other, counting repeats (EXCEPT ALL)."""
    columns = _compared_columns(con, relation)
    mine, theirs = f"SELECT {columns} FROM main.{relation}", f"SELECT {columns} FROM ref.{relation}"
    row = con.execute(
        f"SELECT (SELECT count(*) FROM ({mine} EXCEPT ALL {theirs})) "
        f"+ (SELECT count(*) FROM ({theirs} EXCEPT ALL {mine}))"
    ).fetchone()
    return int(row[0]) if row else 0


def _compared_columns(con: duckdb.DuckDBPyConnection, relation: str) -> str:
    """The relation's columns but wall-clock and output-position ones; floats rounded."""
    described = con.execute(f"DESCRIBE main.{relation}").fetchall()
    skipped = WALL_CLOCK_COLUMNS | BATCHING_COLUMNS.get(relation, frozenset())
    return ", ".join(
        f'round("{name}", {DOUBLE_DIGITS})' if kind in {"DOUBLE", "FLOAT"} else f'"{name}"'
        for name, kind, *_ in described
        if name not in skipped
    )


def _keyed(values: Iterable[bytes]) -> tuple[dict[str, list[dict[str, Any]]], set[str]]:
    """Records by id (an order's current status by order), and the ids of earlier statuses."""
    records: dict[str, list[dict[str, Any]]] = {}
    current: dict[str, dict[str, Any]] = {}
    earlier: set[str] = set()
    for value in values:
        record = orjson.loads(value)
        if record.get("record_type") == "order.status":
            earlier.add(record["record_id"])
            kept = current.get(record["order_id"])
            if kept is None or record["version"] > kept["version"]:
                current[record["order_id"]] = record
            continue
        record_id = next(str(record[name]) for name in ID_FIELDS if name in record)
        records.setdefault(record_id, []).append(record)
    for order_id, status in current.items():
        earlier.discard(status["record_id"])
        content = {k: v for k, v in status.items() if k not in STATUS_NUMBERING}
        records[f"status:{order_id}"] = [content]
    return records, earlier


def _output_topics(run: str) -> dict[OutputTopic, str]:
    return {topic: f"{run}-{topic.value}" for topic in OutputTopic}


def _topic_env(names: dict[OutputTopic, str]) -> dict[str, str]:
    return {f"ALLOCFLOW_TOPIC_{topic.name}": name for topic, name in names.items()}


def _environment(bootstrap: str) -> dict[str, str]:
    """This process's environment without ALLOCFLOW_ settings, pointed at ``bootstrap``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ALLOCFLOW_")}
    return env | {"ALLOCFLOW_BOOTSTRAP_SERVERS": bootstrap}


def _simulate(work: Path, env: dict[str, str], orders: int, seed: int) -> int:
    manifest = work / "manifest.json"
    command = ["simulate", "--orders", str(orders), "--seed", str(seed), "--faults", "all"]
    command += ["--fault-rate", "0.003", "--no-progress", "--manifest", str(manifest)]
    _allocflow(command, env, work / "simulate.log")
    return int(json.loads(manifest.read_text())["messages"])


def _run_args(db: Path) -> list[str]:
    return ["run", "--no-tail", "--db", str(db)]


@dataclass(frozen=True)
class _ChaosRun:
    """How to start the chaos run, and how to watch its progress.

    Attributes:
        command: The ``allocflow run`` command line.
        env: Its environment.
        log: Where its output goes (appended by every start).
        connection: The broker.
        decisions_topic: The run's decisions topic, whose growth shows it is processing.
        reference_decisions: How many decisions the reference run wrote.
        stop_signal: What interrupts a start.
    """

    command: list[str]
    env: dict[str, str]
    log: Path
    connection: KafkaConnection
    decisions_topic: str
    reference_decisions: int
    stop_signal: signal.Signals


def _run_with_kills(run: _ChaosRun, kills: int, rng: random.Random) -> list[float]:
    """Interrupt the run ``kills`` times at random moments while it writes; then finish it.

    Each start is killed once it has written a random 3-10 % of the reference's
    decisions (replays included), so every kill lands mid-output. Three kills cover
    at most 30 % of the output plus what each poll overshoots (a fraction of a second
    of output), so even a fast run is killed well before its end.

    Returns:
        Seconds after each (re)start at which the run was interrupted.

    Raises:
        RuntimeError: If a start failed, ended before its interruption, or did not
            stop as a requested stop should.
    """
    moments = [
        _kill_after(run, round(rng.uniform(0.03, 0.1) * run.reference_decisions))
        for _ in range(kills)
    ]
    with _started(run.command, run.env, run.log) as process:
        if process.wait(timeout=RUN_TIMEOUT_S) != 0:
            raise RuntimeError(f"the last chaos run failed; see {run.log}")
    return moments


def _kill_after(run: _ChaosRun, decisions: int) -> float:
    """Start the run and interrupt it once it has written ``decisions`` more decisions.

    Returns:
        Seconds it ran until the signal.

    Raises:
        RuntimeError: If it ended before the signal, or a requested stop did not end
            the run with exit code 130 within :data:`STOP_TIMEOUT_S`.
    """
    target = message_count(run.connection, run.decisions_topic) + decisions
    with _started(run.command, run.env, run.log) as process:
        started = time.perf_counter()
        while process.poll() is None:
            if message_count(run.connection, run.decisions_topic) >= target:
                process.send_signal(run.stop_signal)
                ran = round(time.perf_counter() - started, 2)
                _check_stopped(process, run)
                return ran
            time.sleep(0.05)
    raise RuntimeError(
        f"the chaos run ended (exit {process.returncode}) before writing {decisions} "
        f"decisions; see {run.log}"
    )


def _check_stopped(process: "subprocess.Popen[bytes]", run: _ChaosRun) -> None:
    """Wait for the interrupted run; a requested stop must exit 130 in time."""
    if run.stop_signal is signal.SIGKILL:
        process.wait()
        return
    try:
        code = process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError(
            f"the run did not stop within {STOP_TIMEOUT_S:.0f} s of {run.stop_signal.name}; "
            f"see {run.log}"
        ) from None
    if code != EXIT_STOPPED:
        raise RuntimeError(
            f"the run exited {code} on {run.stop_signal.name}, not {EXIT_STOPPED}; see {run.log}"
        )


@contextmanager
def _started(
    command: list[str], env: dict[str, str], log: Path
) -> Iterator["subprocess.Popen[bytes]"]:
    with log.open("ab") as handle:
        process = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _allocflow(args: list[str], env: dict[str, str], log: Path) -> None:
    with log.open("ab") as handle:
        code = subprocess.run(
            _command(args),
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            timeout=RUN_TIMEOUT_S,
            check=False,
        ).returncode
    if code != 0:
        raise RuntimeError(f"allocflow {args[0]} failed ({code}); see {log}")


def _command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "allocflow.flows.cli", *args]


def _print(report: ChaosReport) -> None:
    print(f"{report.orders} orders, {report.input_messages:,} input messages")
    print(f"reference run {report.reference_s:.1f} s; chaos run {report.chaos_s:.1f} s")
    print(f"{report.stop_signal} {len(report.kills)} times, after {report.kills} s of each run")
    print(
        f"{'topic':<24}{'reference':>10}{'chaos':>8}{'lost':>6}{'dup':>6}{'mismatch':>9}"
        f"{'replayed':>9}{'statuses':>9}"
    )
    for t in report.topics:
        print(
            f"{t.topic:<24}{t.reference:>10}{t.chaos:>8}{t.lost:>6}{t.duplicated:>6}"
            f"{t.mismatched:>9}{t.replayed:>9}{t.superseded_statuses:>9}"
        )
    tables = sum(report.table_mismatches.values())
    views = sum(report.view_mismatches.values())
    print(f"fact tables differing rows: {tables}; KPI views differing rows: {views}")
    print("CLEAN" if report.clean else "NOT CLEAN")


def _git_commit() -> str:
    result = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    return result.stdout.strip()


def main() -> int:
    """Run the experiment, print the table, write ``bench/results/chaos[-term|-int].json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--orders", type=int, default=3000)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--snapshot-interval", type=int, default=1)
    parser.add_argument(
        "--signal",
        choices=["KILL", "TERM", "INT"],
        default="KILL",
        help="KILL crashes each start; TERM and INT ask it to stop",
    )
    parser.add_argument("--no-write", action="store_true", help="do not write the JSON results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="allocflow-chaos-") as work:
        report = run_chaos(
            Path(work),
            args.orders,
            args.kills,
            args.seed,
            args.snapshot_interval,
            stop_signal=signal.Signals[f"SIG{args.signal}"],
        )
    _print(report)
    if not args.no_write:
        result = {
            "benchmark": "chaos",
            "commit": _git_commit(),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "snapshot_interval_s": args.snapshot_interval,
            "clean": report.clean,
            **asdict(report),
        }
        suffix = "" if args.signal == "KILL" else f"-{args.signal.lower()}"
        (RESULTS_DIR / f"chaos{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0 if report.clean else 1


if __name__ == "__main__":
    raise SystemExit(main())
