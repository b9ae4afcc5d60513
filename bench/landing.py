"""Benchmark of landing into DuckDB and of the KPI views dashboards query.

One file run is generated once and cached in the temporary directory under a name
made of the arguments and a digest of the sources that produce it: ``allocflow
simulate --seed 7 --faults all --fault-rate 0.002``, sized so that the four input
topics hold at least ``--messages`` messages (about 1M), then ``allocflow run``
over it, whose three output files (decisions with order statuses, exception records,
dead letters) are landed too. Then, each step in a fresh worker process (so its peak
RSS and CPU time, from ``wait4``, are its own):

* ``landing``: the run's files, inputs then outputs, file after file as ``allocflow
  land --input --out`` reads them (:func:`file_batches`), land through
  :class:`DuckDBWriter` into a fresh file, once per ``--batch-sizes`` (5,000 and
  20,000). Landing time is the sum of the batches' own seconds (decode to commit,
  :class:`BatchReport`); messages/s and rows/s (rows in every fact table at the end)
  are taken over it. The snapshot is then published three times with
  :func:`publish_snapshot` (each rebuilds it from scratch) and timed.
* ``kpi``: every view of ``KPI_VIEWS`` is read whole (``SELECT *``, fetched as an
  Arrow table) from a read-only connection to the main file, then to its snapshot:
  one warm-up, then the median of ``--kpi-repeats`` (5). Each view's rows on the
  snapshot are compared with the main file's.
* ``scaled``: about 10M events, made by landing the run's files ``--copies`` (10)
  times into one fresh file, batch size 5,000. Copy 0 is the files as they are; in
  copy ``k`` every id (``event_id``, ``order_id``, ``shipment_id``, ``decision_id``,
  ``cause_event_id``…) gets the suffix ``-c{k}`` and every time is shifted by ``k``
  times the run's span (rounded up to whole hours), so copies follow each other in
  time and nothing deduplicates (empty ids, a fault, stay empty). Rewriting (orjson
  over parsed dicts) is excluded from landing time; lines that are not JSON
  (malformed-JSON faults) and dead letters' raw bytes stay as they are. The landed
  counts must scale with the copies. The KPI views are then timed on this file and
  its snapshot as above.
* ``live``: staleness as a dashboard sees it. An embedded Tansu broker with the nine
  topics (four partitions each), ``allocflow land --bootstrap … --publish-every 1.5``
  as a subprocess, and a producer sending the run's messages (inputs and outputs
  interleaved by relative position in their files) at ``--rate`` messages/s for
  ``--duration`` seconds, Kafka timestamps = produce time. Every 0.5 s a reader
  opens the snapshot read-only and reads ``snapshot_info.published_at`` and
  ``landing_status.newest_message_at``: snapshot age is now minus the first, data
  staleness now minus the second (the age of the newest message the dashboard can
  see); the reader's open + query time and its errors are recorded too.

The workers and the lander import allocflow as committed at ``HEAD`` (exported to a
temporary directory put first on ``PYTHONPATH``, see ``bench/allocation.py``),
because other work edits the checkout meanwhile; ``--working-tree`` measures the
checkout as it is. This process itself only orchestrates (it starts the broker and
produces) with the installed checkout.

Usage::

    .venv/bin/python bench/landing.py [--messages 1000000] [--copies 10] [--quick]
    .venv/bin/python bench/landing.py --show    # the saved results

Results go to ``bench/results/landing.json`` (``--quick``: printed only, unless
``--output`` names a file).
"""

import argparse
import functools
import hashlib
import heapq
import itertools
import json
import math
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import duckdb
import orjson
from allocation import (
    code_under_test,
    load_average,
    log,
    machine_facts,
    run_children,
    table,
    work_directory,
)
from confluent_kafka import Producer

from allocflow.connectors import landing as landing_package
from allocflow.connectors.broker import EmbeddedBroker
from allocflow.connectors.landing.kpi_views import KPI_VIEWS
from allocflow.connectors.landing.records import LandingRecord
from allocflow.connectors.landing.schema import FACT_TABLES
from allocflow.connectors.landing.snapshot import publish_snapshot, snapshot_path
from allocflow.connectors.landing.sources import file_batches
from allocflow.connectors.landing.writer import DuckDBWriter
from allocflow.flows.settings import Settings
from allocflow.models.topics import InputTopic, OutputTopic

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_PATH = BENCH_DIR / "results" / "landing.json"
RESULTS_VERSION = 1
DESCRIPTION = "Benchmark of landing into DuckDB and of the KPI views dashboards query."

SEED = 7
FAULT_RATE = "0.002"
DEFAULT_MESSAGES = 1_000_000
DEFAULT_COPIES = 10
DEFAULT_BATCH_SIZES = (5000, 20000)
DEFAULT_RATE = 2000
DEFAULT_DURATION_S = 60.0
KPI_REPEATS = 5
SNAPSHOT_REPEATS = 3
PUBLISH_EVERY_S = 1.5
READ_EVERY_S = 0.5
LIVE_PARTITIONS = 4
LIVE_DRAIN_S = 10.0
QUICK_MESSAGES = 20_000
QUICK_COPIES = 3
QUICK_RATE = 1000
QUICK_DURATION_S = 8.0
MESSAGES_PER_ORDER_GUESS = 14.0
"""Input messages per simulated order (baseline, faults at 0.002): a first guess."""
INPUT_FILES = ("orders", "reservations", "shipments", "carrier-events")
OUTPUT_FILES = (
    "allocation-decisions",
    "allocation-exceptions",
    "route-alerts",
    "dq-alerts",
    "dead-letter",
)
"""Topic files in the order ``allocflow land --input --out`` lands them."""
ID_KEYS = frozenset(
    {
        "event_id",
        "order_id",
        "shipment_id",
        "decision_id",
        "record_id",
        "exception_id",
        "alert_id",
        "result_id",
        "dead_letter_id",
        "cause_event_id",
        "reservation_id",
        "po_id",
    }
)
"""Keys whose string values are ids made distinct per copy (line ids are per order)."""
TIME_SUFFIXES = ("_at", "_time", "_date", "_delivery", "_cutoff", "_timestamp")
TIME_KEYS = frozenset({"eta", "as_of"})
COUNTED_TABLES_SKIP = ("landing_offsets", "landing_status")
CHILD_TIMEOUT_S = 4 * 3600
_KIB = 1024
_MIB = 1024 * 1024


# --- the file run ---------------------------------------------------------------------------


def _cli() -> str:
    return str(Path(sys.executable).with_name("allocflow"))


def simulate_command(orders: int, out: Path) -> list[str]:
    """Return the ``allocflow simulate`` command line for ``orders`` orders into ``out``."""
    return [
        _cli(),
        "simulate",
        "--seed",
        str(SEED),
        "--orders",
        str(orders),
        "--faults",
        "all",
        "--fault-rate",
        FAULT_RATE,
        "--out",
        str(out),
        "--no-progress",
    ]


def run_command(input_dir: Path, out_dir: Path) -> list[str]:
    """Return the ``allocflow run`` command line (the allocation flow over files)."""
    return [_cli(), "run", "--input", str(input_dir), "--out", str(out_dir)]


def source_digest(import_root: str) -> str:
    """Return a short digest of the sources a file run depends on (simulator, flows, models)."""
    digest = hashlib.sha256()
    base = Path(import_root) / "allocflow"
    for folder in ("connectors/simulator", "flows", "models"):
        for path in sorted((base / folder).rglob("*")):
            if path.suffix in {".py", ".toml"} and path.is_file():
                digest.update(str(path.relative_to(base)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def prepare_run(messages: int, cache_root: Path, import_root: str) -> dict[str, Any]:
    """Simulate and allocate (or reuse) a file run with at least ``messages`` input messages.

    The number of orders is guessed, then raised until the input is big enough; the
    allocation flow runs once over the final input. Runs are cached under
    ``cache_root`` by seed, fault rate, target and a digest of the sources.

    Args:
        messages: Minimum number of messages in the four input topics.
        cache_root: Directory for cached runs.
        import_root: Directory the ``allocflow`` packages are imported from.

    Returns:
        The run's description (``directory``, commands, counts, span); also saved
        as ``run.json`` in its directory.
    """
    key = (
        f"allocflow-bench-landing-seed{SEED}-faults{FAULT_RATE}-messages{messages}"
        f"-src{source_digest(import_root)}"
    )
    directory = cache_root / key
    described = directory / "run.json"
    if described.is_file():
        run = json.loads(described.read_text())
        log(f"reusing the cached run {directory} ({run['input_messages']:,} input messages)")
        return dict(run, cached=True)
    shutil.rmtree(directory, ignore_errors=True)
    orders = math.ceil(messages / MESSAGES_PER_ORDER_GUESS * 1.02)
    while True:
        shutil.rmtree(directory / "in", ignore_errors=True)
        command = simulate_command(orders, directory / "in")
        log(f"simulating {orders:,} orders: {' '.join(command)}")
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        manifest = json.loads((directory / "in" / "manifest.json").read_text())
        if int(manifest["messages"]) >= messages:
            break
        orders = math.ceil(orders * messages / int(manifest["messages"]) * 1.01)
    allocate = run_command(directory / "in", directory / "out")
    log(f"allocating: {' '.join(allocate)}")
    started = time.perf_counter()
    subprocess.run(allocate, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_wall_s = time.perf_counter() - started
    start = datetime.fromisoformat(manifest["start"])
    end = datetime.fromisoformat(manifest["last_event_time"])
    span_hours = math.ceil((end - start).total_seconds() / 3600)
    run = {
        "directory": str(directory),
        "simulate_command": " ".join(command),
        "run_command": " ".join(allocate),
        "run_wall_s": round(run_wall_s, 1),
        "orders": orders,
        "input_messages": int(manifest["messages"]),
        "messages": {name: _lines(directory / "in" / f"{name}.jsonl") for name in INPUT_FILES}
        | {name: _lines(directory / "out" / f"{name}.jsonl") for name in OUTPUT_FILES},
        "event_time_from": manifest["start"],
        "event_time_to": manifest["last_event_time"],
        "span_hours": span_hours,
    }
    run["total_messages"] = sum(run["messages"].values())
    described.write_text(json.dumps(run, indent=2) + "\n")
    log(f"run ready: {run['total_messages']:,} messages in {directory} ({run_wall_s:.0f} s)")
    return dict(run, cached=False)


def _lines(path: Path) -> int:
    if not path.is_file():
        return 0
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def landed_files(run_dir: Path) -> dict[str, Path]:
    """Logical topic → file of a run, inputs then outputs (files that exist)."""
    files = {name: run_dir / "in" / f"{name}.jsonl" for name in INPUT_FILES}
    files.update({name: run_dir / "out" / f"{name}.jsonl" for name in OUTPUT_FILES})
    return {name: path for name, path in files.items() if path.is_file()}


# --- rewriting copies -----------------------------------------------------------------------


@functools.cache
def _is_time_key(key: str) -> bool:
    return key in TIME_KEYS or key.endswith(TIME_SUFFIXES)


def _shift_time(text: str, shift: timedelta) -> str:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    shifted = (moment + shift).isoformat()
    return shifted.replace("+00:00", "Z") if text.endswith("Z") else shifted


def _rewrite(value: Any, suffix: str, shift: timedelta) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str):
                if key in ID_KEYS and item:
                    value[key] = item + suffix
                elif _is_time_key(key):
                    value[key] = _shift_time(item, shift)
            elif isinstance(item, dict | list):
                _rewrite(item, suffix, shift)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list):
                _rewrite(item, suffix, shift)


def rewrite_line(line: bytes, copy: int, shift: timedelta) -> bytes:
    """Return a message of copy ``copy``: ids suffixed ``-c{copy}``, times shifted.

    Lines that are not JSON objects are returned as they are. A dead letter's
    ``raw`` (the original bytes, base64) is not an id or a time, so it is kept. Empty
    ids (a schema-violation fault) stay empty, so the copy breaks the contract too.

    Example:
        >>> rewrite_line(b'{"event_id":"e1","event_time":"2026-03-02T06:00:00Z"}', 2,
        ...              timedelta(hours=1))
        b'{"event_id":"e1-c2","event_time":"2026-03-02T07:00:00Z"}'
    """
    try:
        document = orjson.loads(line)
    except orjson.JSONDecodeError:
        return line
    if not isinstance(document, dict):
        return line
    _rewrite(document, f"-c{copy}", shift)
    return orjson.dumps(document)


# --- worker: land -------------------------------------------------------------------------


class _Clock:
    """Seconds spent outside landing (reading and rewriting copies)."""

    def __init__(self) -> None:
        self.seconds = 0.0


def _copy_batches(
    files: dict[str, Path], copies: int, span: timedelta, batch_size: int, clock: _Clock
) -> Iterator[tuple[int, list[Any]]]:
    """Batches of copies 1… of the files, rewritten; each yielded with its copy number."""
    for copy in range(1, copies):
        batch: list[Any] = []
        started = time.perf_counter()
        for topic, path in files.items():
            source = f"{path.resolve()}#copy{copy}"
            with path.open("rb") as lines:
                for index, line in enumerate(lines):
                    value = line.rstrip(b"\r\n")
                    if not value:
                        continue
                    value = rewrite_line(value, copy, span * copy)
                    batch.append(LandingRecord(topic, source, 0, index, value))
                    if len(batch) >= batch_size:
                        clock.seconds += time.perf_counter() - started
                        yield copy, batch
                        started = time.perf_counter()
                        batch = []
        clock.seconds += time.perf_counter() - started
        if batch:
            yield copy, batch


def land_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Land a run's files (``copies`` times) into a fresh file; the worker's entry point.

    Args:
        spec: ``run_dir``, ``db``, ``batch_size``, ``copies``, ``span_hours``.

    Returns:
        Per-batch records and seconds, table counts, file size, snapshot timings.
    """
    db = Path(spec["db"])
    for stale in (db, snapshot_path(db), db.with_name(db.name + ".wal")):
        stale.unlink(missing_ok=True)
    files = landed_files(Path(spec["run_dir"]))
    batch_size = int(spec["batch_size"])
    clock = _Clock()
    records: list[int] = []
    seconds: list[float] = []
    copies: list[int] = []
    skipped = 0
    started = time.perf_counter()
    with DuckDBWriter(db) as writer:
        first = ((0, batch) for batch in file_batches(files, writer.next_offset, batch_size))
        span = timedelta(hours=int(spec["span_hours"]))
        rest = _copy_batches(files, int(spec["copies"]), span, batch_size, clock)
        for copy, batch in itertools.chain(first, rest):
            report = writer.land(batch)
            records.append(report.records)
            seconds.append(round(report.seconds, 5))
            copies.append(copy)
            skipped += report.skipped
            if len(records) % 200 == 0:
                log(f"  {sum(records):,} messages landed ({sum(records) / sum(seconds):,.0f}/s)")
        wall_s = time.perf_counter() - started
        counts = {
            name: _count(writer.connection, name)
            for name in FACT_TABLES
            if name not in COUNTED_TABLES_SKIP
        }
        publications = [
            publish_snapshot(writer.connection, snapshot_path(db)) for _ in range(SNAPSHOT_REPEATS)
        ]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "batch_records": records,
        "batch_seconds": seconds,
        "batch_copy": copies,
        "skipped": skipped,
        "wall_s": round(wall_s, 2),
        "rewrite_s": round(clock.seconds, 2),
        "rows": counts,
        "file_bytes": db.stat().st_size,
        "snapshot_seconds": [round(p.seconds, 3) for p in publications],
        "snapshot_bytes": publications[-1].bytes,
        "peak_rss_mib": round(usage.ru_maxrss / _KIB, 1),
        "import_root": _import_root(),
    }


def _count(con: Any, name: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {name}").fetchone()  # noqa: S608 (table names)
    return int(row[0])


def _import_root() -> str:
    return str(Path(landing_package.__file__).parents[3])


# --- worker: KPI queries ------------------------------------------------------------------


def kpi_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Time every KPI view on a file and on its snapshot; the worker's entry point.

    Args:
        spec: ``db`` and ``repeats``.

    Returns:
        Per target (``main``, ``snapshot``): open time and, per view, seconds of every
        timed repeat and rows; per view whether the snapshot's rows equal the main's.
    """
    db = Path(spec["db"])
    result: dict[str, Any] = {}
    contents: dict[str, dict[str, list[tuple[Any, ...]]]] = {}
    for target, path in (("main", db), ("snapshot", snapshot_path(db))):
        started = time.perf_counter()
        con = duckdb.connect(str(path), read_only=True)
        opened_s = time.perf_counter() - started
        con.execute("SET enable_progress_bar = false")
        views: dict[str, Any] = {}
        contents[target] = {}
        for view in KPI_VIEWS:
            query = f"SELECT * FROM {view}"  # noqa: S608 (view names are module constants)
            con.execute(query).to_arrow_table()
            times = []
            for _ in range(int(spec["repeats"])):
                started = time.perf_counter()
                arrow = con.execute(query).to_arrow_table()
                times.append(time.perf_counter() - started)
            views[view] = {"seconds": [round(t, 5) for t in times], "rows": arrow.num_rows}
            contents[target][view] = sorted(con.execute(query).fetchall(), key=repr)
        con.close()
        result[target] = {"open_s": round(opened_s, 4), "views": views}
    result["snapshot_equals_main"] = {
        view: contents["main"][view] == contents["snapshot"][view] for view in KPI_VIEWS
    }
    return result


# --- running workers ------------------------------------------------------------------------


def run_worker(kind: str, spec: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run a worker in a fresh process; return its report with wall, peak RSS and CPU."""
    name = f"{kind}-{len(list(work.glob(f'{kind}-*.spec.json')))}"
    spec_path, report = work / f"{name}.spec.json", work / f"{name}.report.json"
    spec_path.write_text(json.dumps(spec))
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        kind,
        "--spec",
        str(spec_path),
        "--report",
        str(report),
    ]
    load_before = load_average()
    child = run_children([command], work / f"{name}-logs")
    result: dict[str, Any] = json.loads(report.read_text())
    result["process"] = {
        "wall_s": round(child.wall_s, 2),
        "peak_rss_mib": child.peak_rss_mib[0],
        "cpu_s": round(child.cpu_s[0], 1),
    }
    result["load_before"], result["load_after"] = load_before, load_average()
    return result


def measure_landing(
    run: dict[str, Any], work: Path, batch_size: int, copies: int, label: str
) -> dict[str, Any]:
    """Land the run ``copies`` times with ``batch_size``; summarise the worker's report."""
    db = work / f"{label}.duckdb"
    log(f"landing {label}: {copies} cop{'y' if copies == 1 else 'ies'}, batch size {batch_size:,}")
    spec = {
        "run_dir": run["directory"],
        "db": str(db),
        "batch_size": batch_size,
        "copies": copies,
        "span_hours": run["span_hours"],
    }
    report = run_worker("land", spec, work)
    entry = {"label": label, "db": str(db), "batch_size": batch_size, "copies": copies, **report}
    entry["summary"] = summarise_landing(entry)
    summary = entry["summary"]
    log(
        f"  {summary['messages']:,} messages in {summary['landing_s']:.1f} s: "
        f"{summary['messages_per_s']:,.0f} msg/s, {summary['rows_per_s']:,.0f} rows/s, "
        f"file {summary['file_mib']:,.0f} MiB, snapshot {summary['snapshot_s']['median']:.2f} s"
    )
    return entry


def measure_kpis(db: str, work: Path, repeats: int) -> dict[str, Any]:
    """Time the KPI views on ``db`` and its snapshot in a fresh worker."""
    log(f"KPI views on {Path(db).name} and its snapshot")
    result = run_worker("kpi", {"db": db, "repeats": repeats}, work)
    for target in ("main", "snapshot"):
        for view in result[target]["views"].values():
            view["median_s"] = statistics.median(view["seconds"])
    return result


# --- summaries ------------------------------------------------------------------------------


def spread(values: Sequence[float]) -> dict[str, float]:
    """Return the median, minimum and maximum of ``values``."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def quantile(values: Sequence[float], share: float) -> float:
    """Return the ``share`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """Return p50, p90 and max of ``values`` (nearest rank)."""
    return {
        "p50": quantile(values, 0.5),
        "p90": quantile(values, 0.9),
        "max": max(values),
        "count": len(values),
    }


def summarise_landing(entry: dict[str, Any]) -> dict[str, Any]:
    """Return throughput, batch-time percentiles, growth and sizes of one landing."""
    records, seconds = entry["batch_records"], entry["batch_seconds"]
    messages, landing_s = sum(records), sum(seconds)
    rows = sum(entry["rows"].values())
    tenth = max(1, len(records) // 10)

    def rate(part: slice) -> dict[str, float]:
        return {
            "batches": len(records[part]),
            "messages_per_s": sum(records[part]) / sum(seconds[part]),
            "batch_p50_s": quantile(seconds[part], 0.5),
        }

    per_copy = []
    for copy in sorted(set(entry["batch_copy"])):
        chosen = [i for i, c in enumerate(entry["batch_copy"]) if c == copy]
        per_copy.append(
            {
                "batches": len(chosen),
                "messages_per_s": sum(records[i] for i in chosen) / sum(seconds[i] for i in chosen),
                "batch_p50_s": quantile([seconds[i] for i in chosen], 0.5),
            }
        )
    return {
        "messages": messages,
        "batches": len(records),
        "landing_s": landing_s,
        "messages_per_s": messages / landing_s,
        "rows": rows,
        "rows_per_s": rows / landing_s,
        "batch_s": percentiles(seconds),
        "first_10pct": rate(slice(0, tenth)),
        "last_10pct": rate(slice(len(records) - tenth, len(records))),
        "by_copy": per_copy,
        "file_mib": entry["file_bytes"] / _MIB,
        "snapshot_s": spread(entry["snapshot_seconds"]),
        "snapshot_mib": entry["snapshot_bytes"] / _MIB,
        "peak_rss_mib": entry["process"]["peak_rss_mib"],
    }


def check_scaling(single: dict[str, Any], scaled: dict[str, Any]) -> dict[str, Any]:
    """Compare the counts of the scaled landing with the single one's (within 1 %)."""
    copies = scaled["copies"]
    ratios = {
        name: scaled["rows"][name] / single["rows"][name]
        for name in single["rows"]
        if single["rows"][name]
    }
    problems = [
        f"{name}: {scaled['rows'][name]:,} landed from {copies} copies, "
        f"{single['rows'][name]:,} from one (ratio {ratios[name]:.3f})"
        for name in ("orders", "input_events", "allocation_decisions")
        if abs(ratios[name] - copies) > 0.01 * copies
    ]
    for problem in problems:
        log(f"  SCALING PROBLEM: {problem}")
    return {
        "copies": copies,
        "ok": not problems,
        "problems": problems,
        "ratios": {name: round(value, 4) for name, value in ratios.items()},
    }


# --- live: staleness ------------------------------------------------------------------------


def interleaved(files: dict[str, Path], limit: int) -> list[tuple[str, bytes]]:
    """The first ``limit`` messages of the files merged by relative position in each file."""
    sizes = {topic: _lines(path) for topic, path in files.items()}

    def lines(topic: str, path: Path) -> Iterator[tuple[float, str, bytes]]:
        with path.open("rb") as handle:
            for index, line in enumerate(handle):
                value = line.rstrip(b"\r\n")
                if value:
                    yield (index + 0.5) / sizes[topic], topic, value

    merged = heapq.merge(*(lines(topic, path) for topic, path in files.items() if sizes[topic]))
    return [(topic, value) for _, topic, value in itertools.islice(merged, limit)]


class PacedProducer(threading.Thread):
    """Sends messages at a fixed rate from a thread of its own.

    Attributes:
        done: Set once every message was sent and acknowledged.
        sent_s: Seconds from the first send until the last acknowledgement.
    """

    def __init__(
        self, producer: Producer, messages: list[tuple[str, bytes]], topics: dict[str, str]
    ) -> None:
        super().__init__(name="bench-producer", daemon=True)
        self._producer = producer
        self._messages = messages
        self._topics = topics
        self.rate = 1.0
        self.done = threading.Event()
        self.sent_s = 0.0

    def run(self) -> None:
        """Send every message, ``rate`` per second, then flush."""
        started = time.monotonic()
        index = 0
        while index < len(self._messages):
            due = min(len(self._messages), int((time.monotonic() - started) * self.rate) + 1)
            while index < due:
                topic, value = self._messages[index]
                try:
                    self._producer.produce(self._topics[topic], value=value)
                except BufferError:
                    self._producer.poll(0.05)
                    continue
                index += 1
            self._producer.poll(0)
            time.sleep(0.005)
        self._producer.flush(60)
        self.sent_s = time.monotonic() - started
        self.done.set()


def _read_snapshot(path: Path) -> tuple[datetime, datetime | None, int]:
    """Open a snapshot read-only; return its publication time, newest message and records."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        row = con.execute(
            "SELECT (SELECT max(published_at) FROM snapshot_info), "
            "(SELECT max(newest_message_at) FROM landing_status), "
            "(SELECT coalesce(max(records), 0) FROM landing_status)"
        ).fetchone()
    finally:
        con.close()
    if row is None or row[0] is None:
        raise RuntimeError("snapshot without a publication time")
    return row[0], row[1], int(row[2])


def sample_snapshot(
    snapshot: Path, producer: PacedProducer, expected: int
) -> tuple[list[dict[str, Any]], list[str], float | None]:
    """Read the snapshot every ``READ_EVERY_S`` until all landed (or the drain timed out).

    Returns:
        Samples, reader errors, and when (seconds after the start) the snapshot first
        counted every message, None if it never did.
    """
    samples: list[dict[str, Any]] = []
    errors: list[str] = []
    drained_at: float | None = None
    started = time.monotonic()
    while drained_at is None:
        tick = time.monotonic()
        finished = producer.done.is_set()
        if finished and tick - started > producer.sent_s + LIVE_DRAIN_S:
            break
        if snapshot.exists():
            try:
                read_started = time.perf_counter()
                published, newest, landed = _read_snapshot(snapshot)
                read_s = time.perf_counter() - read_started
            except Exception as error:
                errors.append(f"{tick - started:.1f} s: {error}")
            else:
                now = datetime.now(UTC).replace(tzinfo=None)
                stale = None if newest is None else (now - newest).total_seconds()
                samples.append(
                    {
                        "t": round(tick - started, 3),
                        "phase": "drain" if finished else "producing",
                        "snapshot_age_s": (now - published).total_seconds(),
                        "data_staleness_s": stale,
                        "read_s": read_s,
                        "landed": landed,
                    }
                )
                if finished and landed >= expected:
                    drained_at = tick - started
        time.sleep(max(0.0, READ_EVERY_S - (time.monotonic() - tick)))
    return samples, errors, drained_at


def measure_live(run: dict[str, Any], work: Path, rate: float, duration_s: float) -> dict[str, Any]:
    """Produce at a fixed rate to a live lander and sample staleness from its snapshot.

    Raises:
        RuntimeError: The lander failed.
    """
    messages = interleaved(landed_files(Path(run["directory"])), int(rate * duration_s))
    settings = Settings()
    topics = {t.value: settings.topic_name(t) for t in (*InputTopic, *OutputTopic)}
    db = work / "live.duckdb"
    load_before = load_average()
    log(f"live: {len(messages):,} messages at {rate:,.0f}/s through an embedded broker")
    lander_log = work / "live-lander.log"
    with EmbeddedBroker() as broker, lander_log.open("wb") as log_file:
        broker.create_topics(topics.values(), partitions=LIVE_PARTITIONS)
        command = [_cli(), "land", "--bootstrap", broker.bootstrap_servers, "--db", str(db)]
        command += ["--publish-every", str(PUBLISH_EVERY_S)]
        lander = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            producer = PacedProducer(
                Producer(broker.connection("allocflow-bench").producer_config()), messages, topics
            )
            producer.rate = rate
            producer.start()
            samples, errors, drained_at = sample_snapshot(
                db.with_name(db.name + ".snapshot"), producer, len(messages)
            )
            producer.join()
        finally:
            lander.send_signal(signal.SIGINT)
            try:
                lander.wait(60)
            except subprocess.TimeoutExpired:
                lander.kill()
                lander.wait()
    output = lander_log.read_text(errors="replace")
    if lander.returncode != 0:
        raise RuntimeError(f"the lander exited with {lander.returncode}:\n{output[-3000:]}")
    command[3] = "HOST:PORT"
    command[5] = "live.duckdb"
    return {
        "rate_per_s": rate,
        "duration_s": duration_s,
        "messages": len(messages),
        "produce_s": round(producer.sent_s, 2),
        "partitions": LIVE_PARTITIONS,
        "lander_command": " ".join([Path(command[0]).name, *command[1:]]),
        "lander_output": output.strip().splitlines()[-1:],
        "landed_at_end": _read_snapshot(db.with_name(db.name + ".snapshot"))[2],
        "all_landed_after_s": drained_at,
        "reader_every_s": READ_EVERY_S,
        "reader_errors": errors,
        "samples": samples,
        "summary": summarise_live([s for s in samples if s["phase"] == "producing"]),
        "load_before": load_before,
        "load_after": load_average(),
    }


def summarise_live(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """p50, p90 and max of snapshot age, data staleness and reader time while producing."""
    stale = [s["data_staleness_s"] for s in samples if s["data_staleness_s"] is not None]
    return {
        "samples": len(samples),
        "snapshot_age_s": percentiles([s["snapshot_age_s"] for s in samples]),
        "data_staleness_s": percentiles(stale) if stale else None,
        "reader_open_query_s": percentiles([s["read_s"] for s in samples]),
    }


# --- main ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument(
        "--messages",
        type=int,
        default=None,
        help=f"minimum input-topic messages of the run (default {DEFAULT_MESSAGES:,})",
    )
    parser.add_argument(
        "--copies",
        type=int,
        default=None,
        help=f"copies of the run landed for the scaled step (default {DEFAULT_COPIES})",
    )
    parser.add_argument(
        "--batch-sizes",
        type=lambda text: [int(part) for part in text.split(",")],
        default=list(DEFAULT_BATCH_SIZES),
        help="batch sizes of the single landing, comma-separated (default 5000,20000); "
        "the first is used for the scaled landing",
    )
    parser.add_argument("--rate", type=float, default=None, help="live: messages/s produced")
    parser.add_argument("--duration", type=float, default=None, help="live: seconds producing")
    parser.add_argument("--kpi-repeats", type=int, default=KPI_REPEATS, help="timed KPI reads")
    parser.add_argument(
        "--steps",
        default="landing,kpi,scaled,live",
        help="steps to run, comma-separated (default landing,kpi,scaled,live)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_MESSAGES:,} messages, {QUICK_COPIES} copies, "
        f"{QUICK_DURATION_S:.0f} s live, no results file",
    )
    parser.add_argument("--output", type=Path, help=f"results file (default {RESULTS_PATH})")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="where generated runs are cached (default: the temporary directory)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the DuckDB files (print where)")
    parser.add_argument(
        "--working-tree", action="store_true", help="measure the checkout, not HEAD"
    )
    parser.add_argument(
        "--show",
        nargs="?",
        type=Path,
        const=RESULTS_PATH,
        metavar="FILE",
        help=f"print the tables of saved results (default {RESULTS_PATH}) and exit",
    )
    parser.add_argument("--worker", choices=("land", "kpi"), help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = args.quick
    if args.messages is None:
        args.messages = QUICK_MESSAGES if quick else DEFAULT_MESSAGES
    if args.copies is None:
        args.copies = QUICK_COPIES if quick else DEFAULT_COPIES
    if args.rate is None:
        args.rate = QUICK_RATE if quick else DEFAULT_RATE
    if args.duration is None:
        args.duration = QUICK_DURATION_S if quick else DEFAULT_DURATION_S
    args.steps = [step.strip() for step in args.steps.split(",") if step.strip()]
    unknown = set(args.steps) - {"landing", "kpi", "scaled", "live"}
    if unknown:
        parser.error(f"unknown steps: {', '.join(sorted(unknown))}")
    if args.messages < 1 or args.copies < 2 or not args.batch_sizes:
        parser.error("--messages must be positive, --copies at least 2, --batch-sizes given")
    if args.output is None and not quick:
        args.output = RESULTS_PATH
    return args


def benchmark(args: argparse.Namespace, code: dict[str, Any], work: Path) -> dict[str, Any]:
    """Prepare the run and measure the chosen steps."""
    load_before = load_average()
    run = prepare_run(args.messages, args.cache_dir, code["import_root"])
    results: dict[str, Any] = {
        "benchmark": "landing",
        "results_version": RESULTS_VERSION,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["bench/landing.py", *(sys.argv[1:])]),
        "machine": {**machine_facts(), "duckdb": version("duckdb"), "polars": version("polars")},
        "code": code,
        "run": run,
        "landing": {},
        "kpi": {},
    }
    single: dict[str, Any] | None = None
    partial = None if args.output is None else args.output.with_suffix(".partial.json")

    def save_partial() -> None:
        if partial is not None:
            partial.write_text(json.dumps(results, indent=1) + "\n")

    if "landing" in args.steps or "kpi" in args.steps:
        sizes = args.batch_sizes if "landing" in args.steps else args.batch_sizes[:1]
        for size in sizes:
            entry = measure_landing(run, work, size, 1, f"single-b{size}")
            results["landing"][entry["label"]] = entry
            single = single or entry
            save_partial()
    if "kpi" in args.steps and single is not None:
        results["kpi"]["single"] = measure_kpis(single["db"], work, args.kpi_repeats)
        save_partial()
    if "scaled" in args.steps:
        if single is None:
            single = measure_landing(run, work, args.batch_sizes[0], 1, "single-counts")
        for path in work.glob("single-*.duckdb*"):
            path.unlink()
        label = f"scaled-x{args.copies}-b{args.batch_sizes[0]}"
        entry = measure_landing(run, work, args.batch_sizes[0], args.copies, label)
        entry["scaling"] = check_scaling(single, entry)
        log(
            f"  orders {single['rows']['orders']:,} x {args.copies} -> "
            f"{entry['rows']['orders']:,}; input events {single['rows']['input_events']:,} -> "
            f"{entry['rows']['input_events']:,}"
        )
        results["landing"][label] = entry
        save_partial()
        results["kpi"]["scaled"] = measure_kpis(entry["db"], work, args.kpi_repeats)
        save_partial()
    if "live" in args.steps:
        results["live"] = measure_live(run, work, args.rate, args.duration)
    results["load_average"] = {"before": load_before, "after": load_average()}
    if partial is not None:
        partial.unlink(missing_ok=True)
    return results


def worker_main(args: argparse.Namespace) -> int:
    """Run one worker step from its spec file and write its report."""
    spec = json.loads(args.spec.read_text())
    report = land_worker(spec) if args.worker == "land" else kpi_worker(spec)
    args.report.write_text(json.dumps(report) + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (``--show``: print saved results)."""
    args = parse_args(argv)
    if args.worker is not None:
        return worker_main(args)
    if args.show is not None:
        print(render(json.loads(args.show.read_text())))
        return 0
    with (
        code_under_test(args.working_tree) as code,
        work_directory("allocflow-bench-landing-", args.cache_dir, args.keep) as work,
    ):
        results = benchmark(args, code, work)
    print(render(results))
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=1) + "\n")
        log(f"results written to {args.output}")
    return 0


# --- rendering ----------------------------------------------------------------------------


def render(results: dict[str, Any]) -> str:
    """Return the results as Markdown: run, landing, growth, KPI views, staleness."""
    machine, run = results["machine"], results["run"]
    lines = [
        f"run: {run['total_messages']:,} messages ({run['input_messages']:,} input, "
        f"{run['total_messages'] - run['input_messages']:,} output) from "
        f"`{_short_command(run['simulate_command'])}` + `allocflow run`; span "
        f"{run['span_hours']} h",
        f"{machine['cpu_model']}, {machine['logical_cpus']} CPUs, Python {machine['python']}, "
        f"DuckDB {machine['duckdb']}, allocflow {machine['allocflow']} "
        f"({results['code']['source']} {(results['code']['commit'] or '')[:12]})",
    ]
    if "load_average" in results:
        loads = results["load_average"]
        lines.append(
            f"load average before {_loads(loads['before'])}, after {_loads(loads['after'])}"
        )
    if results["landing"]:
        lines += ["", render_landing(results["landing"])]
    if results["kpi"]:
        lines += ["", render_kpis(results)]
    if "live" in results:
        lines += ["", render_live(results["live"])]
    return "\n".join(lines)


def render_landing(landing: dict[str, Any]) -> str:
    """Return the landing table, the growth line and the scaling check."""
    header = [
        "landing",
        "batch",
        "messages",
        "rows",
        "landing s",
        "msg/s",
        "rows/s",
        "batch s p50 / p90 / max",
        "file MiB",
        "peak RSS MiB",
        "snapshot s / MiB",
    ]
    rows = []
    notes = []
    for label, entry in landing.items():
        summary = summarise_landing(entry)
        batch = summary["batch_s"]
        rows.append(
            [
                label,
                f"{entry['batch_size']:,}",
                f"{summary['messages']:,}",
                f"{summary['rows']:,}",
                f"{summary['landing_s']:,.1f}",
                f"{summary['messages_per_s']:,.0f}",
                f"{summary['rows_per_s']:,.0f}",
                f"{batch['p50']:.2f} / {batch['p90']:.2f} / {batch['max']:.2f}",
                f"{summary['file_mib']:,.0f}",
                f"{summary['peak_rss_mib']:,.0f}",
                f"{summary['snapshot_s']['median']:.2f} / {summary['snapshot_mib']:,.1f}",
            ]
        )
        first, last = summary["first_10pct"], summary["last_10pct"]
        if entry["copies"] > 1:
            copies = summary["by_copy"]
            by_copy = ", ".join(f"{value['messages_per_s']:,.0f}" for value in copies)
            notes.append(
                f"{label}: first 10 % of batches {first['messages_per_s']:,.0f} msg/s "
                f"(p50 {first['batch_p50_s']:.2f} s), last 10 % {last['messages_per_s']:,.0f} "
                f"msg/s (p50 {last['batch_p50_s']:.2f} s); first copy "
                f"{copies[0]['messages_per_s']:,.0f} msg/s (batch p50 "
                f"{copies[0]['batch_p50_s']:.2f} s), last copy "
                f"{copies[-1]['messages_per_s']:,.0f} msg/s (batch p50 "
                f"{copies[-1]['batch_p50_s']:.2f} s); msg/s by copy: {by_copy}; rewriting "
                f"copies took {entry['rewrite_s']:,.0f} s (not in landing time)"
            )
            scaling = entry.get("scaling")
            if scaling:
                ratios = scaling["ratios"]
                notes.append(
                    f"{label}: rows / single landing's: orders {ratios['orders']:.3f}, "
                    f"input events {ratios['input_events']:.3f}, decisions "
                    f"{ratios['allocation_decisions']:.3f} ({scaling['copies']} copies); "
                    f"orders {entry['rows']['orders']:,}"
                )
    return "\n".join([table(header, rows), "", *notes])


def render_kpis(results: dict[str, Any]) -> str:
    """Return the KPI view table: median ms per view, file and target."""
    kpi = results["kpi"]
    columns = [
        (name, target)
        for name in ("single", "scaled")
        if name in kpi
        for target in ("main", "snapshot")
    ]
    titles = {
        "single": "1x",
        "scaled": f"{results['landing'].get(_scaled_label(results), {}).get('copies', '')}x",
    }
    header = [
        "view (ms, median)",
        *[f"{titles[name]} {target}" for name, target in columns],
        "rows",
    ]
    views = list(kpi[columns[0][0]]["main"]["views"])
    rows = []
    for view in views:
        cells = [view]
        for name, target in columns:
            entry = kpi[name][target]["views"][view]
            same = "" if target == "main" or kpi[name]["snapshot_equals_main"][view] else " ≠"
            cells.append(f"{statistics.median(entry['seconds']) * 1000:,.1f}{same}")
        cells.append(
            " / ".join(f"{kpi[name]['main']['views'][view]['rows']:,}" for name in dict(columns))
        )
        rows.append(cells)
    opened = ", ".join(
        f"{titles[name]} {target} {kpi[name][target]['open_s'] * 1000:,.0f} ms"
        for name, target in columns
    )
    return "\n".join(
        [
            table(header, rows),
            "",
            f"read-only open: {opened}; ≠: snapshot rows differ from the main file's",
        ]
    )


def _scaled_label(results: dict[str, Any]) -> str:
    return next((label for label in results["landing"] if label.startswith("scaled")), "")


def render_live(live: dict[str, Any]) -> str:
    """Return the staleness table and the live run's facts."""
    summary = live["summary"]
    rows = []
    for key, title in (
        ("snapshot_age_s", "snapshot age (now - published_at)"),
        ("data_staleness_s", "data staleness (now - newest_message_at)"),
        ("reader_open_query_s", "reader open + query"),
    ):
        stats = summary[key]
        if stats is None:
            continue
        rows.append([title, f"{stats['p50']:.2f}", f"{stats['p90']:.2f}", f"{stats['max']:.2f}"])
    return "\n".join(
        [
            table(["seconds, while producing", "p50", "p90", "max"], rows),
            "",
            f"{live['messages']:,} messages at {live['rate_per_s']:,.0f}/s (sent in "
            f"{live['produce_s']:.1f} s), {summary['samples']} samples every "
            f"{live['reader_every_s']} s, reader errors {len(live['reader_errors'])}; landed at "
            f"the end {live['landed_at_end']:,}, all landed "
            f"{_after(live['all_landed_after_s'])} after producing started",
        ]
    )


def _after(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f} s"


def _short_command(command: str) -> str:
    parts = command.split()
    parts[0] = Path(parts[0]).name
    if "--out" in parts:
        index = parts.index("--out")
        parts[index + 1] = "DIR"
    return " ".join(parts)


def _loads(loads: Iterable[float]) -> str:
    return " / ".join(f"{value:.2f}" for value in loads)


if __name__ == "__main__":
    sys.exit(main())
