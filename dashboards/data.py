"""Where the dashboard's data comes from, and the cached load behind each page.

The database is the landing's DuckDB file: ``--db PATH`` on the app's command line
(after ``--`` in ``streamlit run dashboards/app.py -- --db PATH``), or else the
``ALLOCFLOW_DASHBOARD_DB`` environment variable. While the lander runs it holds
``PATH`` and publishes a read-only copy at ``PATH.snapshot`` every second or two;
the dashboard opens that snapshot when it exists and ``PATH`` otherwise (a landed
file with no writer). Either way it opens read-only, runs one page's queries and
closes again, so it never holds a lock the writer needs and every number on a page
comes from the same file. Loads are cached for :data:`CACHE_TTL_S` seconds across
all sessions; a load that fails raises :class:`DataUnavailableError` and is not
cached, so the next refresh retries. Until the lander has published its first
snapshot (the file missing, or held by the lander with no snapshot yet) a load
raises :class:`WaitingForDataError`; its message and every other one are plain
words, never DuckDB's own text (that goes to the log).
"""

import argparse
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import streamlit as st

from allocflow.connectors.landing.snapshot import snapshot_path
from allocflow.dashboards import queries
from allocflow.dashboards.queries import (
    Filters,
    FreshnessLimits,
    Grain,
    QueueFilters,
    Selection,
)
from allocflow.flows.settings import Settings
from allocflow.quality.settings import GateSettings

_LOG = logging.getLogger(__name__)

DB_ENV = "ALLOCFLOW_DASHBOARD_DB"
"""Environment variable naming the database when the app gets no ``--db``."""

CACHE_TTL_S = 2
"""Seconds a load is reused (by every session) before the file is read again."""

_HOUR = timedelta(hours=1)


class DataUnavailableError(RuntimeError):
    """The database could not be opened or read; the message says why, in plain words."""


class WaitingForDataError(DataUnavailableError):
    """Nothing to read yet: no snapshot published and the landed file missing or being written."""


def dashboard_db(argv: Sequence[str] | None = None) -> Path | None:
    """The database the dashboard shows: ``--db`` in ``argv``, else ``$ALLOCFLOW_DASHBOARD_DB``.

    Args:
        argv: The app's arguments; default ``sys.argv[1:]``.

    Returns:
        The path, or None when neither names one.

    Example:
        >>> dashboard_db(["--db", "demo-data/allocflow.duckdb"]).as_posix()
        'demo-data/allocflow.duckdb'
    """
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--db", type=Path)
    known, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if known.db is not None:
        return Path(known.db)
    named = os.environ.get(DB_ENV)
    return Path(named) if named else None


def source_of(db: Path) -> Path:
    """The file to read: the published snapshot of ``db`` if there is one, else ``db``."""
    snapshot = snapshot_path(db)
    return snapshot if snapshot.exists() else db


@contextmanager
def read_only(db: Path) -> Iterator[tuple[duckdb.DuckDBPyConnection, Path]]:
    """Open the snapshot of ``db`` (or ``db``) read-only; close it on leaving.

    Yields:
        The connection and the file it reads.

    Raises:
        WaitingForDataError: Neither file exists yet, or the lander holds ``db`` and
            has not published its first snapshot.
        DataUnavailableError: The file cannot be opened or a query failed (DuckDB's
            message is logged, not raised).
    """
    source = source_of(db)
    if not source.exists():
        raise WaitingForDataError(
            f"Waiting for the first snapshot: neither {db} nor {snapshot_path(db)} exists yet "
            "(is the lander, `allocflow land` or `allocflow run --db`, running?)"
        )
    try:
        con = duckdb.connect(str(source), read_only=True)
    except duckdb.Error as error:
        raise _open_error(db, source, error) from error
    try:
        yield con, source
    except duckdb.Error as error:
        _LOG.warning("cannot read %s: %s", source, error)
        raise DataUnavailableError(
            f"{source.name} could not be read (the dashboard's log says why)"
        ) from error
    finally:
        con.close()


def _open_error(db: Path, source: Path, error: duckdb.Error) -> DataUnavailableError:
    """The plain-words error for a file DuckDB would not open."""
    if source == db and "lock" in str(error).lower():
        _LOG.info("waiting for the first snapshot of %s: %s", db, error)
        return WaitingForDataError(
            f"Waiting for the first snapshot: the lander is writing {db.name} and has not "
            f"published {snapshot_path(db).name} yet"
        )
    _LOG.warning("cannot open %s: %s", source, error)
    return DataUnavailableError(f"{source.name} could not be opened (the dashboard's log says why)")


@dataclass(frozen=True)
class Status:
    """How fresh the data is.

    Attributes:
        source: The file read: the published snapshot, or the landed file itself.
        published_at: When the snapshot was published (UTC); None for a landed file.
        watermark: Event time of the newest landed input event.
        landed_at: When the last batch landed (UTC).
        first_hour: First hour the KPI aggregates cover.
        last_hour: Last hour the KPI aggregates cover.
    """

    source: Path
    published_at: datetime | None
    watermark: datetime | None
    landed_at: datetime | None
    first_hour: datetime | None
    last_hour: datetime | None


def _status(con: duckdb.DuckDBPyConnection, source: Path) -> Status:
    row = queries.status(con).row(0, named=True)
    return Status(
        source=source,
        published_at=row["published_at"],
        watermark=row["watermark"],
        landed_at=row["landed_at"],
        first_hour=row["first_hour"],
        last_hour=row["last_hour"],
    )


def _one(frame: pl.DataFrame, column: str) -> int:
    return int(frame.item(0, column))


@dataclass(frozen=True)
class Options:
    """What the filters offer.

    Attributes:
        status: Freshness of the data the options come from.
        dimensions: ``dimension`` (region, channel, customer_tier, node_id), ``value``.
        exception_fields: ``field`` (reason_code, owner_role, severity), ``value``.
    """

    status: Status
    dimensions: pl.DataFrame
    exception_fields: pl.DataFrame

    def values(self, dimension: str) -> list[str]:
        """The values of one sidebar dimension."""
        return _values(self.dimensions, "dimension", dimension)

    def exception_values(self, field: str) -> list[str]:
        """The values of one exception field."""
        return _values(self.exception_fields, "field", field)


def _values(frame: pl.DataFrame, key: str, name: str) -> list[str]:
    return [str(v) for v in frame.filter(pl.col(key) == name)["value"].to_list()]


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_options(db: str) -> Options:
    """The filter options and the data's freshness."""
    with read_only(Path(db)) as (con, source):
        return Options(
            _status(con, source), queries.dimension_values(con), queries.exception_values(con)
        )


@dataclass(frozen=True)
class Overview:
    """Everything the operations overview shows.

    Attributes:
        status: Freshness.
        filters: The resolved filters (window anchored at the watermark).
        grain: Time grain of the trends.
        kpis: :func:`queries.overview_kpis` over the window.
        previous_kpis: The same over the window before; None when unbounded.
        open_exceptions: Exceptions open now.
        open_exceptions_before: Open at the window's start, when that is comparable.
        fill_trend: :func:`queries.fill_rate_trend`.
        split_trend: :func:`queries.split_rate_trend`.
        cycle_trend: :func:`queries.cycle_time_trend`.
        aging: :func:`queries.exception_aging`.
    """

    status: Status
    filters: Filters
    grain: Grain
    kpis: pl.DataFrame
    previous_kpis: pl.DataFrame | None
    open_exceptions: int
    open_exceptions_before: int | None
    fill_trend: pl.DataFrame
    split_trend: pl.DataFrame
    cycle_trend: pl.DataFrame
    aging: pl.DataFrame


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_overview(db: str, selection: Selection) -> Overview:
    """The operations overview for the sidebar's selection."""
    with read_only(Path(db)) as (con, source):
        status = _status(con, source)
        filters = selection.resolve(status.watermark)
        previous = filters.previous()
        baseline = queries.exceptions_baseline(filters, status.watermark)
        grain = queries.trend_grain(filters, status.first_hour, status.last_hour)
        return Overview(
            status=status,
            filters=filters,
            grain=grain,
            kpis=queries.overview_kpis(con, filters),
            previous_kpis=None if previous is None else queries.overview_kpis(con, previous),
            open_exceptions=_one(queries.open_exceptions(con, filters), "open_exceptions"),
            open_exceptions_before=None
            if baseline is None
            else _one(queries.open_exceptions(con, filters, baseline), "open_exceptions"),
            fill_trend=queries.fill_rate_trend(con, filters, grain),
            split_trend=queries.split_rate_trend(con, filters, grain),
            cycle_trend=queries.cycle_time_trend(con, filters, grain),
            aging=queries.exception_aging(con, filters),
        )


@dataclass(frozen=True)
class Queue:
    """The exceptions queue.

    Attributes:
        status: Freshness.
        exceptions: :func:`queries.exceptions_queue`.
    """

    status: Status
    exceptions: pl.DataFrame


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_queue(db: str, selection: Selection, queue: QueueFilters) -> Queue:
    """The exceptions queue for the sidebar's selection and the queue's filters."""
    with read_only(Path(db)) as (con, source):
        status = _status(con, source)
        filters = selection.resolve(status.watermark)
        return Queue(status, queries.exceptions_queue(con, filters, queue))


@dataclass(frozen=True)
class OrderDetail:
    """One order's story.

    Attributes:
        summary: :func:`queries.order_summary` (no row when the data lacks the order).
        timeline: :func:`queries.order_timeline`.
        decisions: :func:`queries.order_decisions`.
        shipments: :func:`queries.order_shipments`.
    """

    summary: pl.DataFrame
    timeline: pl.DataFrame
    decisions: pl.DataFrame
    shipments: pl.DataFrame


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_order(db: str, order_id: str) -> OrderDetail:
    """Summary, timeline, decisions and shipments of one order."""
    with read_only(Path(db)) as (con, _):
        return OrderDetail(
            summary=queries.order_summary(con, order_id),
            timeline=queries.order_timeline(con, order_id),
            decisions=queries.order_decisions(con, order_id),
            shipments=queries.order_shipments(con, order_id),
        )


@dataclass(frozen=True)
class Carriers:
    """On-time performance and route alerts.

    Attributes:
        status: Freshness.
        filters: The resolved filters.
        by_carrier: :func:`queries.on_time_by` carrier.
        by_lane: :func:`queries.on_time_by` lane.
        alerts_landed: :func:`queries.route_alerts_landed`.
        open_alerts: :func:`queries.open_route_alerts`.
        open_counts: :func:`queries.open_route_alert_counts`.
        outcomes: :func:`queries.route_alert_outcomes`.
    """

    status: Status
    filters: Filters
    by_carrier: pl.DataFrame
    by_lane: pl.DataFrame
    alerts_landed: int
    open_alerts: pl.DataFrame
    open_counts: pl.DataFrame
    outcomes: pl.DataFrame


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_carriers(db: str, selection: Selection) -> Carriers:
    """On-time rates by carrier and by lane for the selection, and the route alerts."""
    with read_only(Path(db)) as (con, source):
        status = _status(con, source)
        filters = selection.resolve(status.watermark)
        return Carriers(
            status=status,
            filters=filters,
            by_carrier=queries.on_time_by(con, filters, "carrier_id"),
            by_lane=queries.on_time_by(con, filters, "lane"),
            alerts_landed=queries.route_alerts_landed(con),
            open_alerts=queries.open_route_alerts(con, filters),
            open_counts=queries.open_route_alert_counts(con, filters),
            outcomes=queries.route_alert_outcomes(con, filters),
        )


@dataclass(frozen=True)
class Transit:
    """Transit times (dispatch to delivery) per carrier.

    Attributes:
        distribution: :func:`queries.transit_distribution`.
        percentiles: :func:`queries.transit_percentiles`.
    """

    distribution: pl.DataFrame
    percentiles: pl.DataFrame


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_transit(db: str, selection: Selection, lane: str | None) -> Transit:
    """Transit-time distribution and p50/p90 per carrier, on one lane or (None) on all."""
    with read_only(Path(db)) as (con, source):
        filters = selection.resolve(_status(con, source).watermark)
        return Transit(
            distribution=queries.transit_distribution(con, filters, lane),
            percentiles=queries.transit_percentiles(con, filters, lane),
        )


@dataclass(frozen=True)
class Quality:
    """Dead letters, data-quality results and feed freshness.

    Attributes:
        status: Freshness.
        dead_letter_counts: :func:`queries.dead_letter_counts`.
        dq_counts: :func:`queries.dq_result_counts`.
        gx_pass_rates: :func:`queries.gx_pass_rates`.
        stream_alerts: :func:`queries.stream_alerts_per_hour`.
        flagged: :func:`queries.flagged_share`.
        open_alerts: :func:`queries.open_alerts`.
        freshness: :func:`queries.feed_freshness`.
    """

    status: Status
    dead_letter_counts: pl.DataFrame
    dq_counts: pl.DataFrame
    gx_pass_rates: pl.DataFrame
    stream_alerts: pl.DataFrame
    flagged: pl.DataFrame
    open_alerts: pl.DataFrame
    freshness: pl.DataFrame


def freshness_limits() -> FreshnessLimits:
    """The pipeline's stale-source limits and calendars, from its ``ALLOCFLOW_DQ_*`` settings.

    The dashboard runs with the pipeline's environment (``allocflow dashboard``
    validated it at start), so its highlighting follows the same limits as the alerts.
    Read at every refresh (about a millisecond), so a test or a restart with other
    settings never sees stale ones.
    """
    return limits_of(Settings().gate_settings())


def limits_of(gate: GateSettings) -> FreshnessLimits:
    """The freshness limits of the gate settings ``gate``, in hours.

    Example:
        >>> limits = limits_of(GateSettings())
        >>> limits.for_feed("orders"), limits.for_feed("shipments"), limits.node_hours
        (72.0, 24.0, 8.0)
    """
    return FreshnessLimits(
        feed_hours=gate.stale_feed_after / _HOUR,
        by_feed_hours=tuple(
            (feed, after / _HOUR) for feed, after in sorted(gate.stale_feed_after_by_feed.items())
        ),
        node_hours=gate.stale_node_after / _HOUR,
        feed_calendars=tuple(sorted(gate.active_hours_by_feed.items())),
        node_calendars=tuple(sorted(gate.active_hours_by_node.items())),
    )


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_quality(db: str, limits: FreshnessLimits) -> Quality:
    """Dead-letter and data-quality counts, pass rates, open alerts and feed freshness."""
    with read_only(Path(db)) as (con, source):
        return Quality(
            status=_status(con, source),
            dead_letter_counts=queries.dead_letter_counts(con),
            dq_counts=queries.dq_result_counts(con),
            gx_pass_rates=queries.gx_pass_rates(con),
            stream_alerts=queries.stream_alerts_per_hour(con),
            flagged=queries.flagged_share(con),
            open_alerts=queries.open_alerts(con),
            freshness=queries.feed_freshness(con, limits),
        )


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_dead_letters(db: str, topics: tuple[str, ...], reasons: tuple[str, ...]) -> pl.DataFrame:
    """The newest dead letters of some topics and reason codes (empty: all)."""
    with read_only(Path(db)) as (con, _):
        return queries.newest_dead_letters(con, topics, reasons)


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter's field errors and raw payload.

    Attributes:
        errors: :func:`queries.dead_letter_errors`.
        text: The raw payload decoded as UTF-8 (undecodable bytes become U+FFFD).
        hex: :func:`queries.raw_hex` of the raw payload.
        size: The raw payload's length in bytes.
    """

    errors: pl.DataFrame
    text: str
    hex: str
    size: int


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_dead_letter(db: str, dead_letter_id: str) -> DeadLetter | None:
    """One dead letter's errors and payload; None when the data no longer holds it."""
    with read_only(Path(db)) as (con, _):
        raw = queries.dead_letter_raw(con, dead_letter_id)
        if raw is None:
            return None
        return DeadLetter(
            errors=queries.dead_letter_errors(con, dead_letter_id),
            text=raw.decode("utf-8", errors="replace"),
            hex=queries.raw_hex(raw),
            size=len(raw),
        )
