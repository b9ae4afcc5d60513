"""Benchmark of the nightly-extract alternative: DuckDB recomputing every KPI from the raw log.

allocflow keeps its KPIs up to date while it lands: each batch adds
``contribution(after) - contribution(before)`` of the entity rows it touched to small
aggregate tables (``connectors/landing/aggregates.py``), and the KPI views
(``kpi_views.py``) read those. The batch alternative loads the raw log into DuckDB
every night, all of it (an order's KPIs need its whole history), and recomputes every
KPI from scratch. This benchmark measures both on the same messages and checks that
they give the same KPIs.

**The raw log.** The landing benchmark's file run (``bench/landing.py``,
:func:`prepare_run`, cached: ``allocflow simulate --seed 7 --faults all --fault-rate
0.002`` sized to about 1M input events, then ``allocflow run``): the four input files
and the output files the KPIs depend on (decisions with order statuses, exception
records, dead letters), the JSON Lines an extract would hold. The 10M log is that
run ``--copies`` (10) times, made with the landing benchmark's :func:`rewrite_line`
(copy ``k``: every id suffixed ``-c{k}``, every time shifted by ``k`` times the run's
span), written once to JSON Lines files and cached; writing them is not timed.

**Batch** (one fresh worker process per scale, a fresh DuckDB file, default threads),
three timed phases:

* *load*: every line of every file read as text (``read_csv`` with no delimiter or
  quote; lines that are not UTF-8 are dropped), parsed with ``json_transform`` into
  one typed table per file kind, keeping the fields the KPIs need. Each input event
  is marked valid by the rules of the input contract that a file can break here:
  JSON that parses (DuckDB's parser accepts a trailing comma, the contract does
  not, so that is checked too), ``schema_version`` 1, a known ``source``, an
  ``event_time`` with a time zone, a non-empty ``event_id`` and key field
  (``KEY_FIELD_OF_EVENT_TYPE``).
* *facts*: the entity tables the aggregates read, built in SQL from the valid input
  events not named by a dead letter (the flow's verdict on what it read; carrier
  events, which it does not read, rest on the rules above) and the output records,
  each deduplicated by id, with the lander's merge rules: the first placed event per
  order, the first and last decision per line by file offset, the highest status
  version, earliest times and first non-null values per shipment, summed short
  units, exception open and close records merged, and the order's summaries over its
  lines, shipments and exceptions (``connectors/landing/merges.py``). Only the
  columns the aggregates read are built (``columns_read``), and only orders that were
  placed (every order aggregate needs ``placed_at``; the lander also keeps rows for
  orders it only saw statuses or shipments of), the cheapest honest job; ``latency_ms``
  stays null because files carry no broker timestamps, as in the landed file. The SQL
  is straightforward, not tuned.
* *KPIs*: every aggregate of ``AGGREGATES`` created from scratch with the package's
  own :func:`recompute_sql`, every view of ``KPI_VIEWS`` created over them, and each
  view read whole once (``SELECT *``, fetched as Arrow), then ``CHECKPOINT``.

The route-alert and data-quality-alert files feed no KPI, so the batch does not read
them (the lander lands them: its message count includes them).

**Incremental** (a fresh worker process): the 1M run landed through
:class:`DuckDBWriter` into a fresh file, batches of ``--batch-size`` (5,000)
messages, file after file as ``allocflow land`` reads them (:func:`file_batches`).
Per batch, the batch's own seconds (decode to commit, ``BatchReport.seconds``) and
the seconds of its aggregate upkeep, timed by wrapping the writer's
``_capture`` (copies of the touched entity rows before and after the merge) and
``_apply_aggregate_deltas`` (the delta upserts and pruning). Then every KPI view is
read whole from a read-only connection: one warm-up, the median of
``--kpi-repeats`` (5). The 10M incremental landing takes about 50 minutes here, so it
is not repeated: the results quote ``bench/results/landing.json``'s 10M landing
(with its commit).

**Equality.** The batch KPIs must equal the incremental ones, or the comparison
means nothing. At 1M every KPI view (and every aggregate table) of the batch file is
compared with the landed file's, row for row (``EXCEPT ALL`` both ways, doubles
rounded to 6 decimals, sums of seconds depend on addition order). At 10M the
batch's hourly rows of each view, shifted back by their copy's offset, must equal
the landed 1M file's hourly rows ``--copies`` times each, and the day rows' integer
columns must add up to ``--copies`` times the 1M totals (day rows mix copies: a copy
starts at the run's first hour of day, on the day the previous copy ends).

The workers import allocflow as committed at ``HEAD`` (see ``bench/allocation.py``);
``--working-tree`` measures the checkout.

Usage::

    .venv/bin/python bench/batch_kpis.py            # about 1M and 10M, writes the results
    .venv/bin/python bench/batch_kpis.py --quick    # ~33,000 messages, 3 copies, prints only

Results go to ``bench/results/batch_kpis.json``.
"""

# ruff: noqa: S608
# SQL here is assembled from module constants, table names and the run's file paths.

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import duckdb
from allocation import (
    code_under_test,
    load_average,
    log,
    machine_facts,
    run_children,
    table,
    work_directory,
)
from landing import landed_files, percentiles, prepare_run, rewrite_line

from allocflow.connectors.landing.aggregates import AGGREGATES, MACROS, recompute_sql
from allocflow.connectors.landing.kpi_views import KPI_VIEWS
from allocflow.connectors.landing.merges import NOT_ALLOCATION_REASONS
from allocflow.connectors.landing.sources import file_batches
from allocflow.connectors.landing.writer import DuckDBWriter
from allocflow.connectors.simulator.records import KEY_FIELD_OF_EVENT_TYPE
from allocflow.models.envelope import Source

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_PATH = BENCH_DIR / "results" / "batch_kpis.json"
LANDING_RESULTS_PATH = BENCH_DIR / "results" / "landing.json"
RESULTS_VERSION = 1
DESCRIPTION = "Nightly batch recomputation of every KPI in DuckDB vs allocflow's incremental cost."

DEFAULT_MESSAGES = 1_000_000
DEFAULT_COPIES = 10
DEFAULT_BATCH_SIZE = 5000
KPI_REPEATS = 5
QUICK_MESSAGES = 20_000
QUICK_COPIES = 3
ROUND_DIGITS = 6
_MIB = 1024 * 1024

# --- the batch job's SQL ------------------------------------------------------------------

INPUT_KINDS = ("orders", "reservations", "shipments", "carrier-events")
"""Input files in the order the lander reads them; the rank orders events across files."""
_SEQ_STRIDE = 10**12
"""Rows per file kind in the global sequence (``rank * stride + rowid``)."""

_ENVELOPE = {
    "event_id": "VARCHAR",
    "event_time": "VARCHAR",
    "source": "VARCHAR",
    "schema_version": "BIGINT",
    "event_type": "VARCHAR",
}
STRUCTURES: dict[str, dict[str, Any]] = {
    "orders": {
        **_ENVELOPE,
        "order_id": "VARCHAR",
        "customer_tier": "VARCHAR",
        "channel": "VARCHAR",
        "region": "VARCHAR",
        "lines": [{"line_id": "VARCHAR"}],
    },
    "reservations": _ENVELOPE,
    "shipments": {
        **_ENVELOPE,
        "shipment_id": "VARCHAR",
        "order_id": "VARCHAR",
        "node_id": "VARCHAR",
        "carrier_id": "VARCHAR",
        "lane": "VARCHAR",
        "dispatch_cutoff": "VARCHAR",
        "promised_delivery": "VARCHAR",
        "lines": [{"qty_short": "BIGINT"}],
    },
    "carrier-events": {**_ENVELOPE, "shipment_id": "VARCHAR"},
    "allocation-decisions": {
        "record_type": "VARCHAR",
        "decision_id": "VARCHAR",
        "order_id": "VARCHAR",
        "line_id": "VARCHAR",
        "decided_at": "VARCHAR",
        "outcome": "VARCHAR",
        "requested_qty": "BIGINT",
        "allocated_qty": "BIGINT",
        "version": "BIGINT",
        "status": "VARCHAR",
        "as_of": "VARCHAR",
        "split_count": "BIGINT",
    },
    "allocation-exceptions": {
        "exception_id": "VARCHAR",
        "order_id": "VARCHAR",
        "reason_code": "VARCHAR",
        "severity": "VARCHAR",
        "owner_role": "VARCHAR",
        "opened_at": "VARCHAR",
        "closed_at": "VARCHAR",
    },
    "dead-letter": {"source_topic": "VARCHAR", "event_id": "VARCHAR"},
}
"""Fields parsed from each file kind (the KPIs need no others)."""

_TIMES = {
    "event_time",
    "dispatch_cutoff",
    "promised_delivery",
    "decided_at",
    "as_of",
    "opened_at",
    "closed_at",
}
_KEY_PATH = "CASE d.event_type {} END".format(
    " ".join(f"WHEN '{kind}' THEN '$.{key}'" for kind, key in KEY_FIELD_OF_EVENT_TYPE.items())
)
_SOURCES = ", ".join(f"'{source.value}'" for source in Source)

SETUP = (
    "SET TimeZone = 'UTC'",
    "SET enable_progress_bar = false",
    "CREATE MACRO utc_time(text) AS CAST(TRY_CAST(text AS TIMESTAMPTZ) AS TIMESTAMP)",
)


def table_name(kind: str) -> str:
    """The staging table of one file kind (``ev_carrier_events``)."""
    return "ev_" + kind.replace("-", "_")


def _lines_of(paths: Sequence[Path]) -> str:
    """Every line of ``paths``, as text, in file order (non-UTF-8 lines dropped)."""
    files = ", ".join(f"'{path}'" for path in paths)
    return (
        f"read_csv([{files}], columns = {{'line': 'VARCHAR'}}, delim = '\\x01', quote = '', "
        "escape = '', header = false, auto_detect = false, ignore_errors = true, "
        "max_line_size = 16777216)"
    )


def load_sql(kind: str, paths: Sequence[Path]) -> str:
    """Parse one file kind's lines into its typed staging table, in file order."""
    fields = STRUCTURES[kind]
    columns = ", ".join(_column(kind, name) for name in fields)
    valid = ""
    if kind in INPUT_KINDS:
        valid = (
            ", NOT regexp_matches(line, ',\\s*[}\\]]') AND d.schema_version = 1 "
            f"AND d.source IN ({_SOURCES}) "
            "AND regexp_matches(d.event_time, '(Z|[+-]\\d\\d:?\\d\\d)$') "
            "AND coalesce(d.event_id, '') <> '' "
            f"AND coalesce(json_extract_string(line, {_KEY_PATH}), '') <> '' AS valid"
        )
    structure = json.dumps(fields)
    return (
        f"CREATE TABLE {table_name(kind)} AS SELECT {columns}{valid} "
        f"FROM (SELECT line, json_transform(line, '{structure}') AS d "
        f"FROM {_lines_of(paths)} WHERE json_valid(line))"
    )


_DERIVED = {
    (
        "shipments",
        "lines",
    ): "list_sum(list_transform(d.lines, lambda x: x.qty_short)) AS short_units",
}
"""Parsed fields kept as something else (a short-shipped event keeps its units short)."""


def _column(kind: str, name: str) -> str:
    if (kind, name) in _DERIVED:
        return _DERIVED[kind, name]
    return f"utc_time(d.{name}) AS {name}" if name in _TIMES else f"d.{name}"


def _valid_events(kind: str) -> str:
    rank = INPUT_KINDS.index(kind)
    return (
        f"SELECT rowid + {rank * _SEQ_STRIDE} AS seq, '{kind}' AS topic, * "
        f"FROM {table_name(kind)} AS e WHERE valid AND NOT EXISTS (SELECT 1 FROM dead_lettered "
        f"AS x WHERE x.source_topic = '{kind}' AND x.event_id = e.event_id)"
    )


_FIRST_PER_EVENT = "QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY seq) = 1"
_DELIVERED = "coalesce(delivered_at, carrier_delivered_at)"
_NOT_ALLOCATION = ", ".join(f"'{reason.value}'" for reason in NOT_ALLOCATION_REASONS)


def _first_known(column: str) -> str:
    return f"arg_min({column}, seq) FILTER (WHERE {column} IS NOT NULL) AS {column}"


def _when(event_type: str, column: str) -> str:
    return f"min(event_time) FILTER (WHERE event_type = '{event_type}') AS {column}"


FACTS: dict[str, str] = {
    "dead_lettered": (
        "CREATE TABLE dead_lettered AS SELECT DISTINCT source_topic, event_id "
        f"FROM {table_name('dead-letter')} WHERE event_id IS NOT NULL"
    ),
    "valid_events": "CREATE TABLE valid_events AS SELECT * FROM ("
    + " UNION ALL BY NAME ".join(f"({_valid_events(kind)})" for kind in INPUT_KINDS)
    + f") {_FIRST_PER_EVENT}",
    "input_events": (
        "CREATE TABLE input_events AS SELECT event_id, topic, event_type, event_time, seq "
        "FROM valid_events"
    ),
    "placed": """
        CREATE TABLE placed AS
        SELECT order_id, customer_tier, channel, region, event_time AS placed_at,
               CAST(len(lines) AS INTEGER) AS line_count, lines
        FROM valid_events WHERE event_type = 'order.placed'
        QUALIFY row_number() OVER (PARTITION BY order_id ORDER BY event_time, seq) = 1""",
    "decisions": f"""
        CREATE TABLE decisions AS
        SELECT rowid AS seq, * FROM {table_name("allocation-decisions")}
        WHERE record_type = 'allocation.decision'
        QUALIFY row_number() OVER (PARTITION BY decision_id ORDER BY rowid) = 1""",
    "allocation_decisions": """
        CREATE TABLE allocation_decisions AS
        SELECT decision_id, decided_at, CAST(NULL AS DOUBLE) AS latency_ms FROM decisions""",
    "order_lines": """
        CREATE TABLE order_lines AS
        WITH placed_lines AS (
            SELECT order_id, unnest(lines, recursive := true), placed_at, region, channel,
                   customer_tier
            FROM placed),
        decided AS (
            SELECT order_id, line_id, CAST(count(*) AS INTEGER) AS decisions,
                   arg_min(outcome, seq) AS first_outcome,
                   arg_min(requested_qty, seq) AS first_requested_qty,
                   arg_min(allocated_qty, seq) AS first_allocated_qty,
                   arg_max(outcome, seq) AS outcome,
                   arg_max(requested_qty, seq) AS requested_qty,
                   arg_max(allocated_qty, seq) AS allocated_qty
            FROM decisions GROUP BY order_id, line_id)
        SELECT order_id, line_id, placed_at, region, channel, customer_tier,
               coalesce(decisions, 0) AS decisions, first_outcome, first_requested_qty,
               first_allocated_qty, outcome, requested_qty, allocated_qty
        FROM placed_lines FULL JOIN decided USING (order_id, line_id)""",
    "shipments": f"""
        CREATE TABLE shipments AS
        SELECT shipment_id, {_first_known("order_id")}, {_first_known("node_id")},
               {_first_known("carrier_id")}, {_first_known("lane")},
               {_first_known("dispatch_cutoff")}, {_first_known("promised_delivery")},
               {_when("shipment.created", "created_at")},
               {_when("shipment.dispatched", "dispatched_at")},
               {_when("shipment.delivered", "delivered_at")},
               {_when("carrier.delivered", "carrier_delivered_at")},
               CAST(coalesce(sum(short_units), 0) AS INTEGER) AS short_units
        FROM valid_events WHERE topic IN ('shipments', 'carrier-events')
        GROUP BY shipment_id""",
    "exceptions": f"""
        CREATE TABLE exceptions AS
        SELECT exception_id, arg_min(order_id, seq) AS order_id,
               arg_min(reason_code, seq) AS reason_code, arg_min(severity, seq) AS severity,
               arg_min(owner_role, seq) AS owner_role, arg_min(opened_at, seq) AS opened_at,
               arg_max(closed_at, seq) FILTER (WHERE closed_at IS NOT NULL) AS closed_at
        FROM (SELECT rowid AS seq, * FROM {table_name("allocation-exceptions")})
        GROUP BY exception_id""",
    "orders": f"""
        CREATE TABLE orders AS
        WITH statuses AS (
            SELECT order_id, CAST(arg_max(split_count, version) AS INTEGER) AS split_count,
                   min(as_of) FILTER (WHERE status = 'allocated') AS allocated_at
            FROM {table_name("allocation-decisions")} WHERE record_type = 'order.status'
            GROUP BY order_id),
        lines AS (
            SELECT order_id,
                   count(*) FILTER (WHERE decisions > 0) AS lines_decided,
                   count(*) FILTER (WHERE first_outcome = 'allocated') AS lines_first_full,
                   count(*) FILTER (WHERE decisions > 0 AND outcome <> 'cancelled')
                       AS lines_active,
                   count(*) FILTER (WHERE outcome = 'allocated') AS lines_current_full
            FROM order_lines GROUP BY order_id),
        shipped AS (
            SELECT order_id, count(*) AS shipments, min(dispatched_at) AS first_dispatched_at,
                   CASE WHEN count(*) FILTER (WHERE {_DELIVERED} IS NULL) = 0
                        THEN max({_DELIVERED}) END AS delivered_at
            FROM shipments WHERE order_id IS NOT NULL GROUP BY order_id),
        raised AS (
            SELECT order_id, count(*) FILTER (WHERE reason_code NOT IN ({_NOT_ALLOCATION}))
                       AS allocation_exceptions_opened
            FROM exceptions GROUP BY order_id)
        SELECT order_id, customer_tier, channel, region, placed_at, line_count, split_count,
               allocated_at, coalesce(lines_decided, 0) AS lines_decided,
               coalesce(lines_first_full, 0) AS lines_first_full,
               coalesce(lines_active, 0) AS lines_active,
               coalesce(lines_current_full, 0) AS lines_current_full,
               coalesce(shipments, 0) AS shipments, first_dispatched_at, delivered_at,
               coalesce(allocation_exceptions_opened, 0) AS allocation_exceptions_opened
        FROM placed LEFT JOIN statuses USING (order_id) LEFT JOIN lines USING (order_id)
             LEFT JOIN shipped USING (order_id) LEFT JOIN raised USING (order_id)""",
    "landing_status": (
        "CREATE TABLE landing_status AS SELECT 1 AS id, max(event_time) AS watermark "
        "FROM input_events"
    ),
}
"""The fact-building statements, in order; the entity tables carry the lander's names."""

ENTITY_TABLES = ("orders", "order_lines", "shipments", "exceptions", "allocation_decisions")


# --- the 10M log --------------------------------------------------------------------------


def scaled_copies(run: dict[str, Any], copies: int, cache_root: Path) -> list[Path]:
    """Run directories of copies 0… of the run (copy 0 is the run itself); cached.

    Copy ``k`` holds the run's files rewritten by :func:`rewrite_line` (ids suffixed,
    times shifted by ``k`` spans), under ``in/`` and ``out/`` like the run.
    """
    run_dir = Path(run["directory"])
    root = cache_root / f"allocflow-bench-batch-{run_dir.name}-x{copies}"
    directories = [run_dir] + [root / f"copy{copy}" for copy in range(1, copies)]
    done = root / "done.json"
    if done.is_file():
        log(f"reusing the cached copies in {root}")
        return directories
    shutil.rmtree(root, ignore_errors=True)
    span = timedelta(hours=int(run["span_hours"]))
    started = time.perf_counter()
    for copy, directory in enumerate(directories[1:], start=1):
        log(f"writing copy {copy} of {copies - 1} to {directory}")
        for path in landed_files(run_dir).values():
            target = directory / path.parent.name / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            with path.open("rb") as source, target.open("wb") as sink:
                for line in source:
                    value = line.rstrip(b"\r\n")
                    sink.write(rewrite_line(value, copy, span * copy) + b"\n" if value else b"\n")
    done.write_text(json.dumps({"copies": copies, "seconds": time.perf_counter() - started}))
    return directories


def files_by_kind(directories: Iterable[Path]) -> dict[str, list[Path]]:
    """The files of the run directories the KPIs read, per file kind, in copy order.

    Route and data-quality alerts feed no KPI (and a file run writes none).
    """
    kinds: dict[str, list[Path]] = {}
    for directory in directories:
        for kind, path in landed_files(directory).items():
            if kind in STRUCTURES:
                kinds.setdefault(kind, []).append(path)
    return kinds


# --- worker: batch ------------------------------------------------------------------------


def _timed(con: duckdb.DuckDBPyConnection, statements: dict[str, str]) -> dict[str, float]:
    seconds: dict[str, float] = {}
    for name, statement in statements.items():
        started = time.perf_counter()
        con.execute(statement)
        seconds[name] = round(time.perf_counter() - started, 4)
    return seconds


def _count(con: duckdb.DuckDBPyConnection, name: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {name}").fetchone()
    return int(row[0]) if row else 0


def batch_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Load the raw log, build the facts and recompute every KPI; the worker's entry point.

    Args:
        spec: ``db`` (a fresh file) and ``files`` (file kind → paths).

    Returns:
        Seconds per phase and per statement, rows per table and per view, file size.
    """
    db = Path(spec["db"])
    db.unlink(missing_ok=True)
    files = {kind: [Path(p) for p in paths] for kind, paths in spec["files"].items()}
    con = duckdb.connect(str(db))
    for statement in SETUP:
        con.execute(statement)
    load = _timed(con, {kind: load_sql(kind, paths) for kind, paths in files.items()})
    facts = _timed(con, FACTS)
    aggregates = _timed(
        con,
        {
            **{f"macro-{i}": macro for i, macro in enumerate(MACROS)},
            **{a.table: f"CREATE TABLE {a.table} AS {recompute_sql(a)}" for a in AGGREGATES},
            **{f"create-{name}": ddl for name, ddl in KPI_VIEWS.items()},
        },
    )
    view_rows: dict[str, int] = {}
    views: dict[str, float] = {}
    for view in KPI_VIEWS:
        started = time.perf_counter()
        view_rows[view] = con.execute(f"SELECT * FROM {view}").to_arrow_table().num_rows
        views[view] = round(time.perf_counter() - started, 4)
    started = time.perf_counter()
    con.execute("CHECKPOINT")
    checkpoint_s = time.perf_counter() - started
    rows = {
        name: _count(con, name)
        for name in [table_name(kind) for kind in files] + ["input_events", *ENTITY_TABLES]
    }
    rows |= {a.table: _count(con, a.table) for a in AGGREGATES}
    con.close()
    phases = {
        "load_s": sum(load.values()),
        "facts_s": sum(facts.values()),
        "kpis_s": sum(aggregates.values()) + sum(views.values()),
        "checkpoint_s": round(checkpoint_s, 4),
    }
    return {
        "phases": phases,
        "total_s": sum(phases.values()),
        "statements": {"load": load, "facts": facts, "aggregates": aggregates, "views": views},
        "rows": rows,
        "view_rows": view_rows,
        "file_bytes": db.stat().st_size,
    }


# --- worker: incremental ------------------------------------------------------------------


class UpkeepTimedWriter(DuckDBWriter):
    """The lander's writer, also timing its aggregate upkeep (captures and deltas)."""

    upkeep_s = 0.0

    def _capture(self, when: str, entities: Iterable[str], touched: dict[str, bool]) -> None:
        started = time.perf_counter()
        super()._capture(when, entities, touched)
        self.upkeep_s += time.perf_counter() - started

    def _apply_aggregate_deltas(self, touched: dict[str, bool]) -> None:
        started = time.perf_counter()
        super()._apply_aggregate_deltas(touched)
        self.upkeep_s += time.perf_counter() - started


def read_views(db: Path, repeats: int) -> dict[str, Any]:
    """Median seconds and rows of every KPI view read whole (after one warm-up)."""
    con = duckdb.connect(str(db), read_only=True)
    con.execute("SET enable_progress_bar = false")
    views: dict[str, Any] = {}
    for view in KPI_VIEWS:
        query = f"SELECT * FROM {view}"
        con.execute(query).to_arrow_table()
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            rows = con.execute(query).to_arrow_table().num_rows
            seconds.append(time.perf_counter() - started)
        views[view] = {"median_s": round(statistics.median(seconds), 5), "rows": rows}
    con.close()
    return views


def incremental_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Land the run in batches, timing each batch and its aggregate upkeep; read the views.

    Args:
        spec: ``run_dir``, ``db`` (a fresh file), ``batch_size``, ``repeats``.

    Returns:
        Per-batch records, seconds and upkeep seconds; table counts; view reads.
    """
    db = Path(spec["db"])
    db.unlink(missing_ok=True)
    records: list[int] = []
    seconds: list[float] = []
    upkeep: list[float] = []
    with UpkeepTimedWriter(db) as writer:
        files = landed_files(Path(spec["run_dir"]))
        for batch in file_batches(files, writer.next_offset, int(spec["batch_size"])):
            before = writer.upkeep_s
            report = writer.land(batch)
            records.append(report.records)
            seconds.append(round(report.seconds, 5))
            upkeep.append(round(writer.upkeep_s - before, 5))
        rows = {name: _count(writer.connection, name) for name in ("input_events", *ENTITY_TABLES)}
    return {
        "batch_records": records,
        "batch_seconds": seconds,
        "batch_upkeep_seconds": upkeep,
        "rows": rows,
        "file_bytes": db.stat().st_size,
        "views": read_views(db, int(spec["repeats"])),
    }


# --- worker: equality ---------------------------------------------------------------------


def _select(con: duckdb.DuckDBPyConnection, relation: str, shift: str = "") -> str:
    """``SELECT`` of a relation's columns, doubles rounded; ``shift`` rewrites period_start."""
    described = con.execute(f"DESCRIBE {relation}").fetchall()
    columns = []
    for name, kind, *_ in described:
        if kind == "DOUBLE":
            columns.append(f"round({name}, {ROUND_DIGITS}) AS {name}")
        elif name == "period_start" and shift:
            columns.append(f"{shift} AS period_start")
        else:
            columns.append(name)
    return f"SELECT {', '.join(columns)} FROM {relation}"


def _differences(con: duckdb.DuckDBPyConnection, left: str, right: str) -> int:
    row = con.execute(
        f"SELECT (SELECT count(*) FROM (({left}) EXCEPT ALL ({right}))) "
        f"+ (SELECT count(*) FROM (({right}) EXCEPT ALL ({left})))"
    ).fetchone()
    return int(row[0]) if row else -1


def compare_same(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Every KPI view and aggregate of ``batch`` against the landed file's, row for row."""
    result: dict[str, Any] = {}
    for name in [*KPI_VIEWS, *(a.table for a in AGGREGATES)]:
        landed, batch = f"landed.main.{name}", f"batch.main.{name}"
        result[name] = {
            "landed_rows": _count(con, landed.replace(".main.", ".")),
            "batch_rows": _count(con, batch.replace(".main.", ".")),
            "differences": _differences(con, _select(con, landed), _select(con, batch)),
        }
    return result


def compare_scaled(
    con: duckdb.DuckDBPyConnection, copies: int, first_hour: str, span_hours: int
) -> dict[str, Any]:
    """The scaled batch's hourly rows (shifted back per copy) and day totals vs the landed 1M."""
    copy = f"floor(date_diff('hour', TIMESTAMP '{first_hour}', period_start) / {span_hours})"
    shift = f"period_start - to_hours(CAST({copy} * {span_hours} AS BIGINT))"
    result: dict[str, Any] = {}
    for view in KPI_VIEWS:
        landed, batch = f"landed.main.{view}", f"batch.main.{view}"
        columns = {row[0]: row[1] for row in con.execute(f"DESCRIBE {landed}").fetchall()}
        if "period" not in columns:
            result[view] = {"checked": False, "batch_rows": _count(con, f"batch.{view}")}
            continue
        hourly = " WHERE period = 'hour'"
        expected = (
            f"SELECT l.* FROM ({_select(con, landed)}{hourly}) AS l, range({copies}) AS c(copy)"
        )
        found = _select(con, batch, shift) + hourly
        integers = [name for name, kind in columns.items() if kind in {"BIGINT", "HUGEINT"}]
        sums = ", ".join(f"sum({name})" for name in integers)
        day_landed = con.execute(f"SELECT {sums} FROM {landed} WHERE period = 'day'").fetchone()
        day_batch = con.execute(f"SELECT {sums} FROM {batch} WHERE period = 'day'").fetchone()
        result[view] = {
            "checked": True,
            "batch_hour_rows": _count_where(con, batch, "hour"),
            "landed_hour_rows": _count_where(con, landed, "hour"),
            "hour_differences": _differences(con, expected, found),
            "day_totals_equal": [copies * (v or 0) for v in day_landed or ()]
            == [v or 0 for v in day_batch or ()],
        }
    return result


def _count_where(con: duckdb.DuckDBPyConnection, relation: str, period: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {relation} WHERE period = ?", [period]).fetchone()
    return int(row[0]) if row else 0


def compare_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Compare batch files with the landed file; the worker's entry point.

    Args:
        spec: ``landed`` (the incremental file), ``same`` (the batch file of the same
            run), ``scaled`` (the batch file of the copies), ``copies``, ``first_hour``,
            ``span_hours``.
    """
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"ATTACH '{spec['landed']}' AS landed (READ_ONLY)")
    con.execute(f"ATTACH '{spec['same']}' AS batch (READ_ONLY)")
    same = compare_same(con)
    con.execute("DETACH batch")
    con.execute(f"ATTACH '{spec['scaled']}' AS batch (READ_ONLY)")
    scaled = compare_scaled(con, int(spec["copies"]), spec["first_hour"], int(spec["span_hours"]))
    con.close()
    return {"same_run": same, "scaled": scaled}


WORKERS = {"batch": batch_worker, "incremental": incremental_worker, "compare": compare_worker}


# --- orchestration ------------------------------------------------------------------------


def run_worker(kind: str, spec: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run a worker in a fresh process; return its report with wall, peak RSS, CPU, load."""
    name = f"{kind}-{len(list(work.glob(f'{kind}-*.spec.json')))}"
    spec_path, report = work / f"{name}.spec.json", work / f"{name}.report.json"
    spec_path.write_text(json.dumps(spec))
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", kind]
    command += ["--spec", str(spec_path), "--report", str(report)]
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


def measure_batch(label: str, directories: list[Path], work: Path) -> dict[str, Any]:
    """Recompute every KPI from the files of ``directories`` in a fresh worker."""
    files = files_by_kind(directories)
    spec = {
        "db": str(work / f"batch-{label}.duckdb"),
        "files": {k: [str(p) for p in v] for k, v in files.items()},
    }
    log(f"batch recomputation {label}: {len(directories)} run cop(ies)")
    result = run_worker("batch", spec, work)
    result["db"] = spec["db"]
    result["messages"] = sum(_lines(path) for paths in files.values() for path in paths)
    result["input_messages"] = sum(
        _lines(path) for kind in INPUT_KINDS for path in files.get(kind, [])
    )
    phases = result["phases"]
    log(
        f"  {result['messages']:,} messages: load {phases['load_s']:.1f} s, facts "
        f"{phases['facts_s']:.1f} s, KPIs {phases['kpis_s']:.1f} s, total {result['total_s']:.1f} s"
    )
    return result


def _lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def measure_incremental(
    run: dict[str, Any], work: Path, batch_size: int, repeats: int
) -> dict[str, Any]:
    """Land the run in a fresh worker; summarise landing, upkeep and view reads."""
    log(f"incremental landing, batches of {batch_size:,}")
    spec = {
        "run_dir": run["directory"],
        "db": str(work / "landed.duckdb"),
        "batch_size": batch_size,
        "repeats": repeats,
    }
    result = run_worker("incremental", spec, work)
    result["db"] = spec["db"]
    result["summary"] = summarise_incremental(result)
    summary = result["summary"]
    log(
        f"  {summary['messages']:,} messages in {summary['landing_s']:.1f} s: "
        f"{summary['us_per_message']:.0f} µs/message, upkeep "
        f"{summary['upkeep_us_per_message']:.0f} µs/message; "
        f"every view read in {summary['views_read_ms']:.0f} ms"
    )
    return result


def summarise_incremental(entry: dict[str, Any]) -> dict[str, Any]:
    """Per-message and per-batch costs of the landing, and the cost of reading every view."""
    records, seconds = entry["batch_records"], entry["batch_seconds"]
    upkeep = entry["batch_upkeep_seconds"]
    messages, landing_s, upkeep_s = sum(records), sum(seconds), sum(upkeep)
    return {
        "messages": messages,
        "batches": len(records),
        "landing_s": landing_s,
        "messages_per_s": messages / landing_s,
        "us_per_message": landing_s / messages * 1e6,
        "upkeep_s": upkeep_s,
        "upkeep_share": upkeep_s / landing_s,
        "upkeep_us_per_message": upkeep_s / messages * 1e6,
        "batch_s": percentiles(seconds),
        "batch_upkeep_s": percentiles(upkeep),
        "views_read_ms": sum(v["median_s"] for v in entry["views"].values()) * 1000,
        "file_mib": entry["file_bytes"] / _MIB,
    }


def landing_reference() -> dict[str, Any] | None:
    """The 10M incremental landing of ``bench/results/landing.json``, summarised, if any."""
    if not LANDING_RESULTS_PATH.is_file():
        return None
    saved = json.loads(LANDING_RESULTS_PATH.read_text())
    scaled = [entry for label, entry in saved["landing"].items() if label.startswith("scaled")]
    if not scaled:
        return None
    summary = scaled[0]["summary"]
    views = saved["kpi"]["scaled"]["main"]["views"]
    return {
        "source": str(LANDING_RESULTS_PATH.relative_to(BENCH_DIR.parent)),
        "commit": saved["code"]["commit"],
        "date": saved["date"],
        "label": scaled[0]["label"],
        "messages": summary["messages"],
        "batches": summary["batches"],
        "landing_s": summary["landing_s"],
        "us_per_message": summary["landing_s"] / summary["messages"] * 1e6,
        "last_10pct_us_per_message": 1e6 / summary["last_10pct"]["messages_per_s"],
        "batch_s": summary["batch_s"],
        "views_read_ms": sum(v["median_s"] for v in views.values()) * 1000,
        "views_measured": sorted(views),
    }


def check_equality(
    run: dict[str, Any], landed: str, batch: dict[str, dict[str, Any]], copies: int, work: Path
) -> dict[str, Any]:
    """Compare the batch files with the landed one in a fresh worker; log what differs."""
    log("comparing the batch KPIs with the incremental ones")
    first = datetime.fromisoformat(run["event_time_from"]).astimezone(UTC)
    spec = {
        "landed": landed,
        "same": batch["single"]["db"],
        "scaled": batch[f"x{copies}"]["db"],
        "copies": copies,
        "first_hour": first.replace(minute=0, second=0, microsecond=0, tzinfo=None).isoformat(),
        "span_hours": run["span_hours"],
    }
    result = run_worker("compare", spec, work)
    same_ok = all(entry["differences"] == 0 for entry in result["same_run"].values())
    scaled_ok = all(
        entry["hour_differences"] == 0 and entry["day_totals_equal"]
        for entry in result["scaled"].values()
        if entry["checked"]
    )
    result["same_run_equal"], result["scaled_equal"] = same_ok, scaled_ok
    for name, entry in result["same_run"].items():
        if entry["differences"]:
            log(f"  MISMATCH at 1M: {name}: {entry['differences']:,} rows differ")
    for name, entry in result["scaled"].items():
        if entry["checked"] and (entry["hour_differences"] or not entry["day_totals_equal"]):
            log(f"  MISMATCH at 10M: {name}: {entry}")
    log(f"  equal at 1M: {same_ok}; scaled equal: {scaled_ok}")
    return result


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--messages", type=int, default=None, help="input messages of the run")
    parser.add_argument("--copies", type=int, default=None, help="copies for the scaled log")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--kpi-repeats", type=int, default=KPI_REPEATS)
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_MESSAGES:,} input messages, {QUICK_COPIES} copies, prints only",
    )
    parser.add_argument("--output", type=Path, help=f"results file (default {RESULTS_PATH})")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--keep", action="store_true", help="keep the DuckDB files")
    parser.add_argument("--working-tree", action="store_true", help="measure the checkout")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.messages is None:
        args.messages = QUICK_MESSAGES if args.quick else DEFAULT_MESSAGES
    if args.copies is None:
        args.copies = QUICK_COPIES if args.quick else DEFAULT_COPIES
    if args.copies < 2:
        parser.error("--copies must be at least 2")
    if args.output is None and not args.quick:
        args.output = RESULTS_PATH
    return args


def benchmark(args: argparse.Namespace, code: dict[str, Any], work: Path) -> dict[str, Any]:
    """Prepare the logs, measure batch and incremental, check they agree."""
    load_before = load_average()
    run = prepare_run(args.messages, args.cache_dir, code["import_root"])
    directories = scaled_copies(run, args.copies, args.cache_dir)
    batch = {
        "single": measure_batch("single", directories[:1], work),
        f"x{args.copies}": measure_batch(f"x{args.copies}", directories, work),
    }
    incremental = measure_incremental(run, work, args.batch_size, args.kpi_repeats)
    equality = check_equality(run, incremental["db"], batch, args.copies, work)
    return {
        "benchmark": "batch_kpis",
        "results_version": RESULTS_VERSION,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["bench/batch_kpis.py", *(sys.argv[1:])]),
        "machine": {**machine_facts(), "duckdb": version("duckdb"), "polars": version("polars")},
        "code": code,
        "parameters": {
            "messages": args.messages,
            "copies": args.copies,
            "batch_size": args.batch_size,
            "kpi_repeats": args.kpi_repeats,
        },
        "run": run,
        "batch": batch,
        "incremental": incremental,
        "incremental_10m_reference": landing_reference(),
        "equality": equality,
        "load_average": {"before": load_before, "after": load_average()},
    }


def worker_main(args: argparse.Namespace) -> int:
    """Run one worker from its spec file and write its report."""
    report = WORKERS[args.worker](json.loads(args.spec.read_text()))
    args.report.write_text(json.dumps(report) + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print its tables, save the results."""
    args = parse_args(argv)
    if args.worker is not None:
        return worker_main(args)
    with (
        code_under_test(args.working_tree) as code,
        work_directory("allocflow-bench-batch-work-", args.cache_dir, args.keep) as work,
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
    """Return the results as Markdown: batch phases, incremental costs, equality."""
    return "\n\n".join(
        [render_batch(results), render_incremental(results), render_equality(results)]
    )


def render_batch(results: dict[str, Any]) -> str:
    """The batch recomputation's phases at each scale."""
    rows = []
    for label, entry in results["batch"].items():
        phases = entry["phases"]
        rows.append(
            [
                label,
                f"{entry['input_messages']:,}",
                f"{entry['messages']:,}",
                f"{phases['load_s']:.1f}",
                f"{phases['facts_s']:.1f}",
                f"{phases['kpis_s']:.2f}",
                f"{phases['checkpoint_s']:.1f}",
                f"{entry['total_s']:.1f}",
                f"{entry['process']['cpu_s']:.0f}",
                f"{entry['process']['peak_rss_mib']:,.0f}",
                f"{entry['file_bytes'] / _MIB:,.0f}",
            ]
        )
    header = [
        "batch",
        "input events",
        "messages read",
        "load s",
        "facts s",
        "KPIs s",
        "checkpoint s",
        "total s",
        "CPU s",
        "peak RSS MiB",
        "file MiB",
    ]
    return "Batch recomputation from the raw log:\n\n" + table(header, rows)


def render_incremental(results: dict[str, Any]) -> str:
    """The incremental cost: per message, per batch, per dashboard read."""
    summary = results["incremental"]["summary"]
    rows = [
        [
            "the run (measured)",
            f"{summary['messages']:,}",
            f"{summary['us_per_message']:.0f}",
            f"{summary['upkeep_us_per_message']:.0f} ({summary['upkeep_share']:.0%})",
            f"{summary['batch_s']['p50'] * 1000:.0f} / {summary['batch_s']['p90'] * 1000:.0f}",
            f"{summary['batch_upkeep_s']['p50'] * 1000:.0f}",
            f"{summary['views_read_ms']:.0f}",
        ]
    ]
    reference = results.get("incremental_10m_reference")
    if reference:
        rows.append(
            [
                f"10M ({reference['source']}, `{reference['commit'][:7]}`)",
                f"{reference['messages']:,}",
                f"{reference['us_per_message']:.0f} (last 10 %: "
                f"{reference['last_10pct_us_per_message']:.0f})",
                "not measured",
                f"{reference['batch_s']['p50'] * 1000:.0f} / "
                f"{reference['batch_s']['p90'] * 1000:.0f}",
                "not measured",
                f"{reference['views_read_ms']:.0f} ({len(reference['views_measured'])} views)",
            ]
        )
    header = [
        "incremental",
        "messages",
        "µs / message",
        "upkeep µs / message",
        "batch ms p50 / p90",
        "upkeep ms / batch p50",
        "read every view ms",
    ]
    size = results["parameters"]["batch_size"]
    return f"Incremental landing (batches of {size:,}):\n\n" + table(header, rows)


def render_equality(results: dict[str, Any]) -> str:
    """Rows and differences per KPI view: 1M row for row, 10M hourly rows per copy."""
    equality = results["equality"]
    rows = []
    for view in KPI_VIEWS:
        same = equality["same_run"][view]
        scaled = equality["scaled"][view]
        scaled_text = (
            f"{scaled['batch_hour_rows']:,} / {scaled['hour_differences']:,} / "
            f"{'yes' if scaled['day_totals_equal'] else 'NO'}"
            if scaled["checked"]
            else f"{scaled['batch_rows']:,} rows, not checked"
        )
        rows.append(
            [
                f"`{view}`",
                f"{same['landed_rows']:,}",
                f"{same['batch_rows']:,}",
                f"{same['differences']:,}",
                scaled_text,
            ]
        )
    copies = results["parameters"]["copies"]
    header = [
        "view",
        "landed rows",
        "batch rows",
        "differences",
        f"x{copies} batch: hour rows / differences / day totals equal",
    ]
    return "Batch KPIs against the incremental ones:\n\n" + table(header, rows)


if __name__ == "__main__":
    sys.exit(main())
