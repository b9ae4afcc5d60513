"""The read-only snapshot dashboards read while the writer holds the DuckDB file.

DuckDB lets one process write a file and no other process open it meanwhile, so
the writer publishes a second, small file every second or two: it builds it under
a temporary name and renames it over the previous one. A reader that opened the
old file keeps reading it; the next open sees the new one; nobody ever sees a
half-written batch, and the dashboards keep working while the pipeline restarts.

The snapshot holds every KPI aggregate (so the KPI views answer exactly as on the
main file), the summaries as tables, all open exceptions and those closed in the
last week, the most recent placed orders (an order known only from its shipment or
exception, an orphan, is left out), and — for the orders in it — lines, decisions,
shipments and events, so the exceptions queue can show each order's timeline. It
holds every open route alert and the newest others (with the resolutions of those),
so ``open_route_alerts`` answers as on the main file.
"""

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from allocflow.connectors.landing.aggregates import AGGREGATES, MACROS
from allocflow.connectors.landing.errors import LandingError, first_line, what_to_do
from allocflow.connectors.landing.kpi_views import SUMMARY_VIEWS, create_views

_LOG = logging.getLogger(__name__)

RECENT_ORDERS = 5000
"""Most recent orders (by placement time) copied besides those with exceptions."""
NEWEST_RECORDS = 1000
"""Newest dead letters, data-quality results and route alerts copied (route alerts besides
every open one, and with the alerts the newest resolve or are resolved by)."""
CLOSED_EXCEPTIONS_DAYS = 7
"""Closed exceptions stay in the snapshot this long (event time) after closing."""


def snapshot_path(database: Path) -> Path:
    """Where the snapshot of a database file is published: ``<file>.snapshot``.

    Example:
        >>> snapshot_path(Path("demo-data/allocflow.duckdb")).as_posix()
        'demo-data/allocflow.duckdb.snapshot'
    """
    return database.with_name(database.name + ".snapshot")


@dataclass(frozen=True)
class Publication:
    """One published snapshot.

    Attributes:
        path: The snapshot file.
        published_at: When it was renamed into place (UTC).
        seconds: Time to build and publish it.
        bytes: Its size.
    """

    path: Path
    published_at: datetime
    seconds: float
    bytes: int


_SELECTIONS: dict[str, str] = {
    "landing_status": "SELECT * FROM landing_status",
    "exceptions": f"""
        SELECT e.* FROM exceptions AS e, (SELECT watermark FROM landing_status) AS w
        WHERE e.closed_at IS NULL
           OR e.closed_at >= w.watermark - INTERVAL {CLOSED_EXCEPTIONS_DAYS} DAY""",
    "orders": "SELECT o.* FROM orders AS o SEMI JOIN snap_order_ids USING (order_id) "
    "WHERE o.placed_at IS NOT NULL",
    "order_lines": "SELECT l.* FROM order_lines AS l SEMI JOIN snap_order_ids USING (order_id)",
    "allocation_decisions": """SELECT d.* FROM allocation_decisions AS d
        SEMI JOIN snap_order_ids USING (order_id)""",
    "shipments": "SELECT s.* FROM shipments AS s SEMI JOIN snap_order_ids USING (order_id)",
    "input_events": """SELECT i.* FROM input_events AS i
        WHERE i.order_id IN (SELECT order_id FROM snap_order_ids)
           OR i.shipment_id IN (SELECT shipment_id FROM snap.shipments)""",
    "carrier_events": """SELECT c.* FROM carrier_events AS c
        SEMI JOIN snap.shipments USING (shipment_id)""",
    "dead_letters": f"""SELECT * FROM dead_letters
        ORDER BY coalesce(dead_lettered_at, source_timestamp) DESC NULLS LAST, dead_letter_id
        LIMIT {NEWEST_RECORDS}""",
    "dq_results": f"""SELECT * FROM dq_results ORDER BY detected_at DESC, result_id
        LIMIT {NEWEST_RECORDS}""",
    "route_alerts": f"""
        WITH newest AS (SELECT * FROM route_alerts ORDER BY detected_at DESC, alert_id
                        LIMIT {NEWEST_RECORDS})
        SELECT * FROM newest
        UNION SELECT * FROM open_route_alerts
        UNION SELECT r.* FROM route_alerts AS r
              WHERE r.resolves_alert_id IN (SELECT alert_id FROM newest)
        UNION SELECT o.* FROM route_alerts AS o
              WHERE o.alert_id IN (SELECT resolves_alert_id FROM newest)""",
}
"""What each fact table of the snapshot holds, in build order."""

_ORDER_IDS = f"""
CREATE OR REPLACE TEMP TABLE snap_order_ids AS
SELECT order_id FROM snap.exceptions
UNION
SELECT order_id FROM (SELECT order_id FROM orders WHERE placed_at IS NOT NULL
                      ORDER BY placed_at DESC LIMIT {RECENT_ORDERS})
"""


def publish_snapshot(con: duckdb.DuckDBPyConnection, target: Path) -> Publication:
    """Build the snapshot of the writer's database and rename it over ``target``.

    Args:
        con: The writer's connection.
        target: The snapshot path (see :func:`snapshot_path`).

    Returns:
        What was published.

    Raises:
        LandingError: It could not be written (a full disk, no write access); nothing
            of it is left behind and the previous snapshot stays in place.
    """
    started = time.perf_counter()
    building = target.with_name(target.name + f".building-{os.getpid()}")
    try:
        _remove(building)
        _build(con, building)
        published_at = _finish(building)
        os.replace(building, target)
    except (duckdb.Error, OSError) as error:
        _abandon(con, building)
        raise LandingError(
            f"could not publish the dashboard snapshot {target} ({first_line(error)}); every "
            f"landed batch is safe and no partial snapshot was left. {what_to_do(target)}"
        ) from error
    return Publication(
        path=target,
        published_at=published_at,
        seconds=time.perf_counter() - started,
        bytes=target.stat().st_size,
    )


def _build(con: duckdb.DuckDBPyConnection, building: Path) -> None:
    con.execute(f"ATTACH '{building}' AS snap")
    try:
        _copy_tables(con)
    finally:
        con.execute("DETACH DATABASE IF EXISTS snap")


def _abandon(con: duckdb.DuckDBPyConnection, building: Path) -> None:
    """Drop a snapshot that failed half-way: detach it, delete its files."""
    with contextlib.suppress(duckdb.Error):  # one whose checkpoint failed is detached already
        con.execute("DETACH DATABASE IF EXISTS snap")
    try:
        _remove(building)
    except OSError as error:
        _LOG.warning("could not remove the partial snapshot %s: %s", building, error)


def _remove(building: Path) -> None:
    """Delete a snapshot file and its write-ahead log, if there."""
    building.unlink(missing_ok=True)
    building.with_name(building.name + ".wal").unlink(missing_ok=True)


def _copy_tables(con: duckdb.DuckDBPyConnection) -> None:
    for table in _SELECTIONS:
        con.execute(f"CREATE TABLE snap.{table} AS SELECT * FROM {table} LIMIT 0")
    con.execute("INSERT INTO snap.landing_status " + _SELECTIONS["landing_status"])
    con.execute("INSERT INTO snap.exceptions " + _SELECTIONS["exceptions"])
    con.execute(_ORDER_IDS)
    for table in ("orders", "order_lines", "allocation_decisions", "shipments"):
        con.execute(f"INSERT INTO snap.{table} {_SELECTIONS[table]}")
    for table in ("input_events", "carrier_events", "dead_letters", "dq_results", "route_alerts"):
        con.execute(f"INSERT INTO snap.{table} {_SELECTIONS[table]}")
    for aggregate in AGGREGATES:
        con.execute(f"CREATE TABLE snap.{aggregate.table} AS SELECT * FROM {aggregate.table}")
    for view in SUMMARY_VIEWS:
        con.execute(f"CREATE TABLE snap.{view} AS SELECT * FROM {view}")


def _finish(building: Path) -> datetime:
    """Add the macros, the KPI views and the publication time to the built file."""
    published_at = datetime.now(UTC).replace(tzinfo=None)
    snap = duckdb.connect(str(building))
    try:
        for macro in MACROS:
            snap.execute(macro)
        create_views(snap, summaries=False)
        snap.execute("CREATE TABLE snapshot_info (published_at TIMESTAMP NOT NULL)")
        snap.execute("INSERT INTO snapshot_info VALUES (?)", [published_at])
    finally:
        snap.close()
    return published_at
