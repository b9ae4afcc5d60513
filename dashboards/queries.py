"""Every SQL query of the dashboard: plain functions of a DuckDB connection and filters.

Each function takes a connection to a landed file or its snapshot (both have the
same tables and views) and returns a polars frame. Counts and rates come from the
hourly aggregate tables, never from counting fact rows, because a snapshot holds
only a subset of the facts. A rate over a slice is ``sum(numerator) /
sum(denominator)`` of the slice's hourly rows, and a percentile over a slice is
recomputed from the summed histogram with the rule the KPI views use, so a query
filtered to one view row answers exactly what that row says.

Times are event times (UTC, naive). The time window of :class:`Filters` applies to
each aggregate's hour: placement hour for order KPIs, creation hour for shipments.

Example:
    ::

        with duckdb.connect("allocflow.duckdb.snapshot", read_only=True) as con:
            filters = Selection(regions=("west",)).resolve(watermark_of(con))
            print(overview_kpis(con, filters))
"""

import re
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

import duckdb
import polars as pl

from allocflow.connectors.landing.kpi_views import (
    AGE_BUCKETS,
    OPENING_ROUTE_ALERT_KINDS,
    percentiles_sql,
)
from allocflow.connectors.landing.snapshot import CLOSED_EXCEPTIONS_DAYS
from allocflow.models.activity_calendar import ActivityCalendar, calendar_of
from allocflow.models.route_alerts import RouteAlertKind
from allocflow.models.vocabulary import ReasonCode

Grain = Literal["hour", "day"]
"""Time grain of a trend: one point per hour or per day."""

TimeRange = Literal["24h", "7d", "all", "dates"]
"""A time range choice: the last 24 hours or 7 days before the watermark, all, or dates."""

TIME_RANGE_LENGTHS: dict[TimeRange, timedelta] = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}
"""Length of each time range that ends at the watermark."""

HOURLY_TREND_LIMIT = timedelta(days=7)
"""Trends spanning at most this long are drawn per hour, longer ones per day."""

ShipmentDimension = Literal["carrier_id", "lane"]
"""A column on-time rates can be broken down by."""


@dataclass(frozen=True)
class FreshnessLimits:
    """When the dashboard calls a source stale: the pipeline's stale-feed and stale-node checks.

    The same limits, in hours of expected-active time, and the same activity calendars as
    the pipeline's gate (:func:`allocflow.dashboards.data.freshness_limits` reads them
    from its settings).

    Attributes:
        feed_hours: Any feed without its own limit.
        by_feed_hours: (feed, hours) pairs: the feeds with their own limit.
        node_hours: A node (warehouse), on any feed.
        feed_calendars: (feed or ``*``, calendar) pairs; a feed without one is always active.
        node_calendars: (node id or ``*``, calendar) pairs.

    Example:
        >>> limits = FreshnessLimits(24.0, (("orders", 72.0),), 8.0)
        >>> limits.for_feed("orders"), limits.for_feed("shipments")
        (72.0, 24.0)
    """

    feed_hours: float
    by_feed_hours: tuple[tuple[str, float], ...]
    node_hours: float
    feed_calendars: tuple[tuple[str, ActivityCalendar], ...] = ()
    node_calendars: tuple[tuple[str, ActivityCalendar], ...] = ()

    def for_feed(self, feed: str) -> float:
        """The limit of a feed's sources, in hours."""
        return dict(self.by_feed_hours).get(feed, self.feed_hours)

    def calendar(self, kind: str, name: str) -> ActivityCalendar:
        """The expected-activity calendar of a feed (``kind`` "feed") or a node."""
        calendars = self.feed_calendars if kind == FEED else self.node_calendars
        return calendar_of(dict(calendars), name)

    def limit(self, kind: str, name: str) -> float:
        """The silence limit of a feed (``kind`` "feed") or a node, in active hours."""
        return self.for_feed(name) if kind == FEED else self.node_hours


FEED, NODE = "feed", "node"
"""The two kinds of source the stale-source check watches."""
STALE, QUIET, FRESH = "stale", "quiet (outside active hours)", "fresh"
"""Freshness states: silent beyond the limit in active hours; beyond it only because of
hours the source is not expected to be active; within it."""


_SHIPMENT_DIMENSIONS: tuple[ShipmentDimension, ...] = ("carrier_id", "lane")
_HOUR = timedelta(hours=1)
_PREVIEW_BYTES = 240
_HEX_BYTES = 64
_PARAMETER = re.compile(r"\$(\w+)")


@dataclass(frozen=True)
class Filters:
    """What slice of the data a query covers. Empty tuples mean no restriction.

    Attributes:
        regions: Order regions (order KPIs and exceptions).
        channels: Order channels (order KPIs and exceptions).
        tiers: Customer tiers (order KPIs and exceptions).
        nodes: Fulfilment nodes (shipment KPIs only).
        start: First hour of the window (inclusive); None: unbounded.
        end: End of the window (exclusive); None: unbounded.
    """

    regions: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    tiers: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None

    def previous(self) -> "Filters | None":
        """The same slice over the window of equal length just before; None if unbounded.

        Example:
            >>> f = Filters(start=datetime(2026, 3, 2), end=datetime(2026, 3, 3))
            >>> f.previous().start, f.previous().end
            (datetime.datetime(2026, 3, 1, 0, 0), datetime.datetime(2026, 3, 2, 0, 0))
        """
        if self.start is None or self.end is None:
            return None
        return replace(self, start=self.start - (self.end - self.start), end=self.start)

    def parameters(self) -> dict[str, object]:
        """The named SQL parameters of the filters."""
        return {
            "regions": list(self.regions),
            "channels": list(self.channels),
            "tiers": list(self.tiers),
            "nodes": list(self.nodes),
            "start": self.start,
            "end": self.end,
        }


@dataclass(frozen=True)
class Selection:
    """The sidebar's choices, before the time range is anchored at the watermark.

    Attributes:
        regions: Selected regions; empty: all.
        channels: Selected channels; empty: all.
        tiers: Selected customer tiers; empty: all.
        nodes: Selected nodes; empty: all.
        time_range: Which window to show.
        dates: First and last day (inclusive) when ``time_range`` is ``"dates"``.
    """

    regions: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    tiers: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()
    time_range: TimeRange = "7d"
    dates: tuple[date, date] | None = None

    def resolve(self, watermark: datetime | None) -> Filters:
        """The filters of this selection, its window anchored at ``watermark``."""
        start, end = time_window(self.time_range, watermark, self.dates)
        return Filters(self.regions, self.channels, self.tiers, self.nodes, start, end)


@dataclass(frozen=True)
class QueueFilters:
    """Which exceptions the queue lists. Empty tuples mean no restriction.

    Attributes:
        reasons: Reason codes.
        owners: Owner roles.
        severities: Severities.
        include_closed: Also list the closed exceptions the data holds (a snapshot
            keeps those closed in the last week).
    """

    reasons: tuple[str, ...] = ()
    owners: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    include_closed: bool = False


def time_window(
    time_range: TimeRange, watermark: datetime | None, dates: tuple[date, date] | None = None
) -> tuple[datetime | None, datetime | None]:
    """The window ``[start, end)`` of a time range choice, by event time.

    The last 24 h and 7 d end with the hour holding the watermark (the newest landed
    event), not at the wall clock: the data may be historical.

    Example:
        >>> time_window("24h", datetime(2026, 3, 8, 3, 3))
        (datetime.datetime(2026, 3, 7, 4, 0), datetime.datetime(2026, 3, 8, 4, 0))
        >>> time_window("dates", None, (date(2026, 3, 1), date(2026, 3, 2)))
        (datetime.datetime(2026, 3, 1, 0, 0), datetime.datetime(2026, 3, 3, 0, 0))
    """
    if time_range == "dates" and dates is not None:
        first, last = dates
        return datetime.combine(first, time()), datetime.combine(last, time()) + timedelta(days=1)
    length = TIME_RANGE_LENGTHS.get(time_range)
    if length is None or watermark is None:
        return None, None
    end = watermark.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return end - length, end


def exceptions_baseline(filters: Filters, watermark: datetime | None) -> datetime | None:
    """When to count open exceptions to compare with those open now, or None.

    The window's start, when the window reaches the watermark (so "now" is in it)
    and starts within the week of closed exceptions a snapshot keeps.

    Example:
        >>> now = datetime(2026, 3, 8, 3, 3)
        >>> exceptions_baseline(Selection(time_range="24h").resolve(now), now)
        datetime.datetime(2026, 3, 7, 4, 0)
        >>> exceptions_baseline(Selection(time_range="all").resolve(now), now) is None
        True
    """
    if filters.start is None or filters.end is None or watermark is None:
        return None
    kept_since = watermark - timedelta(days=CLOSED_EXCEPTIONS_DAYS)
    return filters.start if filters.end > watermark and filters.start >= kept_since else None


def trend_grain(filters: Filters, first_hour: datetime | None, last_hour: datetime | None) -> Grain:
    """Per hour when the window, clipped to the data's hours, spans at most a week.

    Example:
        >>> trend_grain(Filters(), datetime(2026, 3, 1), datetime(2026, 3, 2))
        'hour'
        >>> trend_grain(Filters(), datetime(2026, 1, 1), datetime(2026, 3, 2))
        'day'
    """
    if first_hour is None or last_hour is None:
        return "hour"
    start = max(first_hour, filters.start) if filters.start else first_hour
    data_end = last_hour + timedelta(hours=1)
    end = min(data_end, filters.end) if filters.end else data_end
    return "hour" if end - start <= HOURLY_TREND_LIMIT else "day"


def _frame(
    con: duckdb.DuckDBPyConnection, sql: str, parameters: dict[str, object] | None = None
) -> pl.DataFrame:
    """Run ``sql`` with those of ``parameters`` it names (``$name``) and fetch a frame."""
    names = set(_PARAMETER.findall(sql))
    used = {name: value for name, value in (parameters or {}).items() if name in names}
    frame: pl.DataFrame = con.sql(sql, params=used).pl()
    return frame


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> Any:
    """The single value ``sql`` returns (fetched to the end, so the connection is free)."""
    rows = con.execute(sql).fetchall()
    return rows[0][0]


def _rate(numerator: str, denominator: str) -> str:
    return f"CAST({numerator} AS DOUBLE) / nullif({denominator}, 0)"


def _sums(columns: tuple[str, ...]) -> str:
    return ", ".join(f"CAST(coalesce(sum({c}), 0) AS BIGINT) AS {c}" for c in columns)


def _percentiles(source: str, groups: tuple[str, ...], count: str) -> str:
    """p50 and p90 seconds of a histogram per group, by the KPI views' rule."""
    return (
        f"SELECT * RENAME (p50 AS p50_seconds, p90 AS p90_seconds) "
        f"FROM ({percentiles_sql(source, groups, count)})"
    )


_ORDER_SLICE = """(len($regions) = 0 OR list_contains($regions, region))
    AND (len($channels) = 0 OR list_contains($channels, channel))
    AND (len($tiers) = 0 OR list_contains($tiers, customer_tier))"""
_NODE_SLICE = "(len($nodes) = 0 OR list_contains($nodes, node_id))"
_WINDOW = "($start IS NULL OR hour >= $start) AND ($end IS NULL OR hour < $end)"
_ORDER_WHERE = f"WHERE {_ORDER_SLICE} AND {_WINDOW}"
_SHIPMENT_WHERE = f"WHERE {_NODE_SLICE} AND {_WINDOW}"

_LINE_COLUMNS = ("lines_decided", "lines_first_full", "lines_active", "lines_current_full")
_ORDER_COLUMNS = (
    "orders_decided",
    "orders_first_full",
    "orders_active",
    "orders_current_full",
    "orders_split",
    "orders_touchless",
)
_SHIPMENT_COLUMNS = (
    "shipments",
    "dispatched",
    "dispatched_on_time",
    "delivered",
    "delivered_on_time",
    "delivered_otif",
)
_FILL_RATES = f"""
    {_rate("lines_first_full", "lines_decided")} AS line_fill_rate_first_pass,
    {_rate("lines_current_full", "lines_active")} AS line_fill_rate_current,
    {_rate("orders_first_full", "orders_decided")} AS order_fill_rate_first_pass,
    {_rate("orders_current_full", "orders_active")} AS order_fill_rate_current"""
_ON_TIME_RATES = f"""
    {_rate("dispatched_on_time", "dispatched")} AS on_time_dispatch_rate,
    {_rate("delivered_on_time", "delivered")} AS on_time_delivery_rate,
    {_rate("delivered_otif", "delivered")} AS otif_rate"""
_TOTAL_CYCLE = "stage = 'placed_to_delivered'"


def watermark_of(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """The event time of the newest landed input event, None before any landed."""
    watermark: datetime | None = _scalar(con, "SELECT max(watermark) FROM landing_status")
    return watermark


def status(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """One row on how fresh the data is and which hours it covers.

    Columns: ``watermark`` (newest landed event time), ``landed_at`` (last landed
    batch), ``published_at`` (snapshot publication; null in a main file), and
    ``first_hour`` / ``last_hour`` (the hours the aggregates cover).
    """
    has_info = _scalar(
        con, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'snapshot_info'"
    )
    published = "(SELECT max(published_at) FROM snapshot_info)" if has_info else "NULL"
    hours = " UNION ALL ".join(
        f"SELECT hour FROM {t}"
        for t in ("agg_line_fill", "agg_order_fill", "agg_shipments", "agg_exceptions")
    )
    return _frame(
        con,
        f"""SELECT max(watermark) AS watermark, max(landed_at) AS landed_at,
                   CAST({published} AS TIMESTAMP) AS published_at,
                   (SELECT min(hour) FROM ({hours})) AS first_hour,
                   (SELECT max(hour) FROM ({hours})) AS last_hour
            FROM landing_status""",
    )


def dimension_values(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """The values each sidebar filter offers: columns ``dimension`` and ``value``."""
    order_dims = " UNION ".join(
        f"SELECT '{d}' AS dimension, {d} AS value FROM {t}"
        for d in ("region", "channel", "customer_tier")
        for t in ("agg_line_fill", "agg_order_fill")
    )
    return _frame(
        con,
        f"""SELECT * FROM ({order_dims}
                UNION SELECT 'node_id', node_id FROM agg_shipments)
            WHERE value IS NOT NULL ORDER BY dimension, value""",
    )


def exception_values(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """The reason codes, owner roles and severities exceptions were opened with."""
    return _frame(
        con,
        """SELECT * FROM (
                SELECT DISTINCT 'reason_code' AS field, reason_code AS value FROM agg_exceptions
                UNION SELECT 'owner_role', owner_role FROM agg_exceptions
                UNION SELECT 'severity', severity FROM agg_exceptions)
            ORDER BY field, value""",
    )


def overview_kpis(con: duckdb.DuckDBPyConnection, filters: Filters) -> pl.DataFrame:
    """One row with the overview's rates and cycle times over the filters' slice.

    Columns: the line and order fill rates (first pass, current), split and touchless
    rates, p50/p90 placed-to-delivered cycle time in seconds, on-time delivery rate,
    and the counts behind them. A rate with a zero denominator is null.
    """
    cycle = _percentiles(
        f"SELECT bucket, orders FROM hist_cycle_time {_ORDER_WHERE} AND {_TOTAL_CYCLE}",
        (),
        "orders",
    )
    sql = f"""
        WITH lines AS (SELECT {_sums(_LINE_COLUMNS)} FROM agg_line_fill {_ORDER_WHERE}),
        orders AS (SELECT {_sums(_ORDER_COLUMNS)} FROM agg_order_fill {_ORDER_WHERE}),
        cycle AS ({cycle}),
        ship AS (SELECT {_sums(_SHIPMENT_COLUMNS)} FROM agg_shipments {_SHIPMENT_WHERE})
        SELECT {_FILL_RATES},
            {_rate("orders_split", "orders_active")} AS split_rate,
            {_rate("orders_touchless", "orders_decided")} AS touchless_rate,
            cycle.p50_seconds AS cycle_p50_seconds, cycle.p90_seconds AS cycle_p90_seconds,
            {_ON_TIME_RATES},
            lines.*, orders.*, coalesce(cycle.orders, 0) AS cycle_orders, ship.*
        FROM lines, orders, cycle, ship"""
    return _frame(con, sql, filters.parameters())


def fill_rate_trend(con: duckdb.DuckDBPyConnection, filters: Filters, grain: Grain) -> pl.DataFrame:
    """Line and order fill rates (first pass, current) per period of placement."""
    sql = f"""
        WITH l AS (SELECT date_trunc($grain, hour) AS period_start, {_sums(_LINE_COLUMNS)}
                   FROM agg_line_fill {_ORDER_WHERE} GROUP BY 1),
        o AS (SELECT date_trunc($grain, hour) AS period_start, {_sums(_ORDER_COLUMNS)}
              FROM agg_order_fill {_ORDER_WHERE} GROUP BY 1)
        SELECT period_start, {_FILL_RATES}
        FROM l FULL JOIN o USING (period_start) ORDER BY period_start"""
    return _frame(con, sql, {**filters.parameters(), "grain": grain})


def split_rate_trend(
    con: duckdb.DuckDBPyConnection, filters: Filters, grain: Grain
) -> pl.DataFrame:
    """Split and touchless rates per period of placement, with their counts."""
    sql = f"""
        SELECT date_trunc($grain, hour) AS period_start, {_sums(_ORDER_COLUMNS)},
               {_rate("sum(orders_split)", "sum(orders_active)")} AS split_rate,
               {_rate("sum(orders_touchless)", "sum(orders_decided)")} AS touchless_rate
        FROM agg_order_fill {_ORDER_WHERE} GROUP BY 1 ORDER BY 1"""
    return _frame(con, sql, {**filters.parameters(), "grain": grain})


def cycle_time_trend(
    con: duckdb.DuckDBPyConnection, filters: Filters, grain: Grain
) -> pl.DataFrame:
    """p50 and p90 cycle time (seconds) per period of placement and stage."""
    source = f"""SELECT date_trunc($grain, hour) AS period_start, stage, bucket, orders
                 FROM hist_cycle_time {_ORDER_WHERE}"""
    sql = (
        f"SELECT * FROM ({_percentiles(source, ('period_start', 'stage'), 'orders')}) ORDER BY 1, 2"
    )
    return _frame(con, sql, {**filters.parameters(), "grain": grain})


_EXCEPTION_FROM = """
    FROM exceptions AS e LEFT JOIN orders AS o USING (order_id),
         (SELECT max(watermark) AS watermark FROM landing_status) AS w"""

_OPERATIONS_EXCEPTION = f"($data_quality OR e.reason_code <> '{ReasonCode.DATA_QUALITY.value}')"
"""Operations counts leave out ``DATA_QUALITY`` exceptions (integration's) unless asked."""

_OPERATIONS_ROUTE_ALERT = "($data_quality OR shipment_id IS NULL OR order_id IS NOT NULL)"
"""Operations counts leave out route alerts of shipments whose order was never seen
(``order_id`` NULL on a shipment's alert: a data fault, docs/route-delays.md) unless asked."""


def _hours_between(start: str, end: str) -> str:
    """SQL of the exact hours from ``start`` to ``end`` (two TIMESTAMPTZ expressions).

    Whole microseconds divided once, so the value is the correctly rounded double of
    the exact interval (``date_diff('second', …)`` would drop the sub-second part).
    """
    return f"((epoch_us({end}) - epoch_us({start})) / 3600000000.0)"


def _age_case(value: str) -> str:
    """SQL of the age bucket label and its order, the KPI view's buckets."""
    labels = " ".join(f"WHEN {value} < {b} THEN '{label}'" for label, b in AGE_BUCKETS if b)
    orders = " ".join(f"WHEN {value} < {b} THEN {i}" for i, (_, b) in enumerate(AGE_BUCKETS) if b)
    last = len(AGE_BUCKETS) - 1
    return (
        f"CASE {labels} ELSE '{AGE_BUCKETS[last][0]}' END AS age_bucket, "
        f"CASE {orders} ELSE {last} END AS age_bucket_order"
    )


def open_exceptions(
    con: duckdb.DuckDBPyConnection,
    filters: Filters,
    as_of: datetime | None = None,
    *,
    include_data_quality: bool = False,
) -> pl.DataFrame:
    """One row, ``open_exceptions``: exceptions open now, or at ``as_of``.

    Region, channel and tier apply (through each exception's order); the time window
    does not. A snapshot keeps exceptions closed in the last week, so an ``as_of``
    within that week counts exactly. ``DATA_QUALITY`` exceptions (records about
    entities the pipeline never saw) count only with ``include_data_quality``.
    """
    sql = f"""
        SELECT count(*) AS open_exceptions {_EXCEPTION_FROM}
        WHERE {_ORDER_SLICE} AND {_OPERATIONS_EXCEPTION}
          AND CASE WHEN $as_of IS NULL THEN e.closed_at IS NULL
            ELSE e.opened_at <= $as_of AND coalesce(e.closed_at > $as_of, TRUE) END"""
    parameters = {**filters.parameters(), "as_of": as_of, "data_quality": include_data_quality}
    return _frame(con, sql, parameters)


def exception_aging(
    con: duckdb.DuckDBPyConnection, filters: Filters, *, include_data_quality: bool = False
) -> pl.DataFrame:
    """Open exceptions per reason code and age bucket (age at the watermark).

    ``DATA_QUALITY`` exceptions are left out unless ``include_data_quality``.
    """
    sql = f"""
        WITH open AS (
            SELECT e.reason_code,
                   greatest({_hours_between("e.opened_at", "w.watermark")}, 0) AS age
            {_EXCEPTION_FROM}
            WHERE e.closed_at IS NULL AND {_ORDER_SLICE} AND {_OPERATIONS_EXCEPTION})
        SELECT reason_code, {_age_case("age")}, count(*) AS open_exceptions,
               max(age) AS oldest_hours
        FROM open GROUP BY ALL ORDER BY age_bucket_order, reason_code"""
    return _frame(con, sql, {**filters.parameters(), "data_quality": include_data_quality})


def exceptions_queue(
    con: duckdb.DuckDBPyConnection, filters: Filters, queue: QueueFilters
) -> pl.DataFrame:
    """The exceptions to work on, oldest open first (then closed ones, if asked for).

    ``age_hours`` is the exact time open in hours (microsecond precision, not rounded:
    the page formats it): until the watermark for open exceptions, until closing for
    closed ones. Region, channel and tier apply; the time window does not.
    """
    sql = f"""
        SELECT e.exception_id, e.order_id, e.line_id,
               CASE WHEN e.closed_at IS NULL THEN 'open' ELSE 'closed' END AS status,
               e.reason_code, e.severity, e.owner_role, e.opened_at, e.closed_at,
               greatest({_hours_between("e.opened_at", "coalesce(e.closed_at, w.watermark)")},
                        0) AS age_hours,
               e.detail, e.resolution, o.region, o.channel, o.customer_tier
        {_EXCEPTION_FROM}
        WHERE {_ORDER_SLICE}
          AND (len($reasons) = 0 OR list_contains($reasons, e.reason_code))
          AND (len($owners) = 0 OR list_contains($owners, e.owner_role))
          AND (len($severities) = 0 OR list_contains($severities, e.severity))
          AND ($include_closed OR e.closed_at IS NULL)
        ORDER BY e.closed_at IS NOT NULL, e.opened_at, e.exception_id"""
    return _frame(
        con,
        sql,
        {
            **filters.parameters(),
            "reasons": list(queue.reasons),
            "owners": list(queue.owners),
            "severities": list(queue.severities),
            "include_closed": queue.include_closed,
        },
    )


def order_summary(con: duckdb.DuckDBPyConnection, order_id: str) -> pl.DataFrame:
    """The order's row: customer, dimensions, status, quantities, nodes, milestones."""
    sql = """
        SELECT order_id, customer_id, customer_tier, channel, region, status, placed_at,
               promised_date, line_count, requested_qty, allocated_qty, split_count,
               array_to_string(nodes, ', ') AS nodes, allocated_at, first_dispatched_at,
               delivered_at, cancelled_at, exceptions_opened, exceptions_open
        FROM orders WHERE order_id = $order_id"""
    return _frame(con, sql, {"order_id": order_id})


def order_timeline(con: duckdb.DuckDBPyConnection, order_id: str) -> pl.DataFrame:
    """Everything that happened to an order, oldest first.

    Input events of the order and its shipments (carrier scans from the richer
    ``carrier_events``), allocation decisions, and exceptions opened and closed. Columns:
    ``occurred_at``, ``source``, ``event``, ``ref`` (line, SKU or shipment), ``detail``.
    """
    sql = """
        WITH s AS (SELECT shipment_id FROM shipments WHERE order_id = $order_id),
        c AS (SELECT * FROM carrier_events WHERE shipment_id IN (SELECT shipment_id FROM s)),
        t AS (
            SELECT event_time AS occurred_at, 0 AS step, 'input event' AS source,
                   event_type AS event, coalesce(shipment_id, sku) AS ref, detail
            FROM input_events
            WHERE (order_id = $order_id OR shipment_id IN (SELECT shipment_id FROM s))
              AND event_id NOT IN (SELECT event_id FROM c)
            UNION ALL
            SELECT event_time, 0, 'carrier event', event_type, shipment_id,
                   concat_ws(' · ', carrier_id, location, code, description,
                             'ETA ' || strftime(eta, '%Y-%m-%d %H:%M'))
            FROM c
            UNION ALL
            SELECT decided_at, 1, 'decision', rule || ' → ' || outcome, 'line ' || line_id,
                   explanation
            FROM allocation_decisions WHERE order_id = $order_id
            UNION ALL
            SELECT opened_at, 2, 'exception opened', reason_code, 'line ' || line_id,
                   concat_ws(' · ', severity, owner_role, detail)
            FROM exceptions WHERE order_id = $order_id
            UNION ALL
            SELECT closed_at, 3, 'exception closed', reason_code, 'line ' || line_id, resolution
            FROM exceptions WHERE order_id = $order_id AND closed_at IS NOT NULL)
        SELECT * EXCLUDE (step) FROM t ORDER BY occurred_at, step, ref, event"""
    return _frame(con, sql, {"order_id": order_id})


def order_decisions(con: duckdb.DuckDBPyConnection, order_id: str) -> pl.DataFrame:
    """The order's allocation decisions, with their candidates and allocations as text."""
    sql = """
        SELECT decided_at, line_id, sku, rule, outcome, requested_qty, allocated_qty,
               backordered_qty, reason_code, explanation,
               array_to_string(list_transform(allocations,
                   lambda a: a.node_id || ': ' || a.qty), ', ') AS allocations,
               array_to_string(list_transform(candidates,
                   lambda c: '#' || c.rank || ' ' || c.node_id || ' (' || c.available_qty || ' free'
                        || coalesce(', ' || c.rejected_reason, '') || ')'), '; ') AS candidates,
               policy_version, decision_id
        FROM allocation_decisions WHERE order_id = $order_id
        ORDER BY decided_at, line_id, source_offset"""
    return _frame(con, sql, {"order_id": order_id})


def order_shipments(con: duckdb.DuckDBPyConnection, order_id: str) -> pl.DataFrame:
    """The order's shipments with their milestones."""
    sql = """
        SELECT shipment_id, node_id, carrier_id, lane, units, short_units, created_at,
               dispatch_cutoff, dispatched_at, promised_delivery, latest_eta,
               coalesce(delivered_at, carrier_delivered_at) AS delivered_at, tracking_no, scans
        FROM shipments WHERE order_id = $order_id ORDER BY created_at, shipment_id"""
    return _frame(con, sql, {"order_id": order_id})


def on_time_by(
    con: duckdb.DuckDBPyConnection, filters: Filters, by: ShipmentDimension
) -> pl.DataFrame:
    """On-time dispatch, on-time delivery and OTIF rates per carrier or per lane.

    Raises:
        ValueError: ``by`` is not a shipment dimension.
    """
    if by not in _SHIPMENT_DIMENSIONS:
        raise ValueError(f"on-time rates break down by {_SHIPMENT_DIMENSIONS}, not {by!r}")
    sql = f"""
        SELECT *, {_ON_TIME_RATES} FROM (
            SELECT {by}, {_sums(_SHIPMENT_COLUMNS)}
            FROM agg_shipments {_SHIPMENT_WHERE} GROUP BY 1)
        ORDER BY 1"""
    return _frame(con, sql, filters.parameters())


def _lane_node_slice(lane: str) -> str:
    """The node filter on a lane's origin node: lanes are ``NODE>region`` (docs/contract.md)."""
    return f"(len($nodes) = 0 OR list_contains($nodes, split_part({lane}, '>', 1)))"


_ALERT_COLUMNS = """detected_at, kind, severity, carrier_id, lane, shipment_id, order_id,
    promised_delivery, expected_delivery"""


def route_alerts_landed(con: duckdb.DuckDBPyConnection) -> int:
    """How many route alerts were landed in all (a snapshot counts them all too)."""
    landed: int = _scalar(con, "SELECT landed FROM fact_counts WHERE fact = 'route_alerts'")
    return landed


def open_route_alerts(
    con: duckdb.DuckDBPyConnection, filters: Filters, *, include_data_quality: bool = False
) -> pl.DataFrame:
    """Route alerts still open, newest first.

    Open: an opening kind (``NOT_DISPATCHED``, ``AT_RISK``, ``STALLED``,
    ``LANE_DEGRADED``) that no ``RESOLVED`` alert references. The node filter applies
    to the lane's origin node; the time window does not (open means open now).
    ``hours_late`` is the expected delivery minus the promise, in hours. Alerts of
    shipments whose order was never seen are listed only with ``include_data_quality``.
    """
    sql = f"""
        SELECT {_ALERT_COLUMNS},
               round(date_diff('second', promised_delivery, expected_delivery) / 3600.0, 1)
                   AS hours_late,
               detail, alert_id
        FROM open_route_alerts WHERE {_lane_node_slice("lane")} AND {_OPERATIONS_ROUTE_ALERT}
        ORDER BY detected_at DESC, alert_id"""
    return _frame(con, sql, {**filters.parameters(), "data_quality": include_data_quality})


def open_route_alert_counts(
    con: duckdb.DuckDBPyConnection, filters: Filters, *, include_data_quality: bool = False
) -> pl.DataFrame:
    """Open route alerts per opening kind, zero when none: ``kind``, ``open_alerts``.

    Alerts of shipments whose order was never seen count only with ``include_data_quality``.
    """
    kinds = ", ".join(f"('{kind.value}', {i})" for i, kind in enumerate(OPENING_ROUTE_ALERT_KINDS))
    sql = f"""
        SELECT k.kind, CAST(count(a.alert_id) AS BIGINT) AS open_alerts
        FROM (VALUES {kinds}) AS k(kind, position)
        LEFT JOIN (SELECT * FROM open_route_alerts
                   WHERE {_lane_node_slice("lane")} AND {_OPERATIONS_ROUTE_ALERT}) AS a
            USING (kind)
        GROUP BY k.kind, k.position ORDER BY k.position"""
    return _frame(con, sql, {**filters.parameters(), "data_quality": include_data_quality})


def route_alert_outcomes(
    con: duckdb.DuckDBPyConnection, filters: Filters, limit: int = 20
) -> pl.DataFrame:
    """The newest resolutions and late deliveries, newest first.

    A ``RESOLVED`` row names the kind it cleared (``resolved_kind``) and how long that
    alert was open (``hours_open``), when the data still holds it. The node filter
    applies; the time window does not.
    """
    sql = f"""
        SELECT a.detected_at, a.kind, o.kind AS resolved_kind,
               round(date_diff('second', o.detected_at, a.detected_at) / 3600.0, 1)
                   AS hours_open,
               a.severity, a.carrier_id, a.lane, a.shipment_id, a.order_id,
               a.promised_delivery, a.expected_delivery, a.detail, a.alert_id,
               a.resolves_alert_id
        FROM route_alerts AS a LEFT JOIN route_alerts AS o ON o.alert_id = a.resolves_alert_id
        WHERE a.kind IN ('{RouteAlertKind.RESOLVED.value}', '{RouteAlertKind.LATE.value}')
          AND {_lane_node_slice("a.lane")}
        ORDER BY a.detected_at DESC, a.alert_id LIMIT $limit"""
    return _frame(con, sql, {**filters.parameters(), "limit": limit})


_TRANSIT_WHERE = f"{_SHIPMENT_WHERE} AND ($lane IS NULL OR lane = $lane)"
_DISPLAY_BUCKETS = 4
"""Histogram buckets per displayed bin: 4 of 16 per doubling, bins about 19 % wide."""


def transit_distribution(
    con: duckdb.DuckDBPyConnection, filters: Filters, lane: str | None = None
) -> pl.DataFrame:
    """How long delivered shipments took from dispatch to delivery, per carrier.

    From the ``hist_transit_time`` aggregate (every shipment, also in a snapshot),
    binned four histogram buckets to a bin. Node and time window (creation hour) apply;
    ``lane`` None means every lane. Columns: ``carrier_id``, ``lower_hours``,
    ``upper_hours``, ``shipments`` and ``share`` (of the carrier's shipments).
    """
    sql = f"""
        WITH b AS (
            SELECT carrier_id, floor(bucket / {_DISPLAY_BUCKETS}) AS bin,
                   sum(shipments) AS shipments
            FROM hist_transit_time {_TRANSIT_WHERE} GROUP BY ALL)
        SELECT carrier_id,
               bucket_upper(bin * {_DISPLAY_BUCKETS} - 1) / 3600.0 AS lower_hours,
               bucket_upper((bin + 1) * {_DISPLAY_BUCKETS} - 1) / 3600.0 AS upper_hours,
               CAST(shipments AS BIGINT) AS shipments,
               shipments / sum(shipments) OVER (PARTITION BY carrier_id) AS share
        FROM b ORDER BY carrier_id, bin"""
    return _frame(con, sql, {**filters.parameters(), "lane": lane})


def transit_percentiles(
    con: duckdb.DuckDBPyConnection, filters: Filters, lane: str | None = None
) -> pl.DataFrame:
    """p50 and p90 transit time per carrier, by the KPI views' histogram rule.

    Node, time window and ``lane`` apply as in :func:`transit_distribution`. Columns:
    ``carrier_id``, ``shipments``, ``p50_seconds``, ``p90_seconds``.
    """
    source = f"SELECT carrier_id, bucket, shipments FROM hist_transit_time {_TRANSIT_WHERE}"
    sql = f"SELECT * FROM ({_percentiles(source, ('carrier_id',), 'shipments')}) ORDER BY 1"
    return _frame(con, sql, {**filters.parameters(), "lane": lane})


def dead_letter_counts(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Dead letters per source topic and reason code, most first."""
    sql = """
        SELECT source_topic, reason_code, CAST(dead_letters AS BIGINT) AS dead_letters, last_seen
        FROM dead_letter_counts ORDER BY dead_letters DESC, source_topic, reason_code"""
    return _frame(con, sql)


def dq_result_counts(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Data-quality results per origin, check, feed and severity: passed and failed."""
    sql = """
        SELECT origin, check_name, feed, severity, CAST(results AS BIGINT) AS results,
               CAST(results - failures AS BIGINT) AS passed, CAST(failures AS BIGINT) AS failed,
               last_detected
        FROM dq_result_counts ORDER BY failed DESC, origin, check_name, feed, severity"""
    return _frame(con, sql)


def newest_dead_letters(
    con: duckdb.DuckDBPyConnection,
    topics: tuple[str, ...] = (),
    reasons: tuple[str, ...] = (),
    limit: int = 100,
) -> pl.DataFrame:
    """The newest dead letters of some topics and reason codes, with a preview of their raw bytes.

    Args:
        con: The connection.
        topics: Source topics to list; empty: all.
        reasons: Reason codes to list; empty: all.
        limit: How many to list at most.

    Returns:
        One row per dead letter, newest first; ``raw_preview`` is the start of the raw
        message as text (UTF-8, lossy).
    """
    sql = """
        SELECT coalesce(dead_lettered_at, source_timestamp) AS seen_at, source_topic,
               source_partition, source_offset, message_key, reason_code, reason,
               len(errors) AS field_errors, raw, dead_letter_id
        FROM dead_letters
        WHERE (len($topics) = 0 OR list_contains($topics, source_topic))
          AND (len($reasons) = 0 OR list_contains($reasons, reason_code))
        ORDER BY seen_at DESC NULLS LAST, dead_letter_id LIMIT $limit"""
    parameters = {"topics": list(topics), "reasons": list(reasons), "limit": limit}
    frame = _frame(con, sql, parameters)
    preview = pl.Series(
        "raw_preview", [raw_preview(raw) for raw in frame["raw"].to_list()], dtype=pl.String
    )
    return frame.with_columns(preview).drop("raw")


def dead_letter_errors(con: duckdb.DuckDBPyConnection, dead_letter_id: str) -> pl.DataFrame:
    """The field errors of one dead letter: ``field``, ``message``, ``value``, in order."""
    sql = """
        SELECT e.field, e.message, e.value
        FROM (SELECT unnest(errors) AS e FROM dead_letters WHERE dead_letter_id = $id)"""
    return _frame(con, sql, {"id": dead_letter_id})


def dead_letter_raw(con: duckdb.DuckDBPyConnection, dead_letter_id: str) -> bytes | None:
    """The raw bytes of one dead letter; None when the data lacks it."""
    rows = con.execute(
        "SELECT raw FROM dead_letters WHERE dead_letter_id = ?", [dead_letter_id]
    ).fetchall()
    return bytes(rows[0][0]) if rows else None


def raw_preview(raw: bytes) -> str:
    r"""The first bytes of a raw message as text; undecodable bytes become U+FFFD.

    Example:
        >>> raw_preview(b'{"qty": 1, \xff}') == '{"qty": 1, \ufffd}'
        True
    """
    text = raw[:_PREVIEW_BYTES].decode("utf-8", errors="replace")
    return text + "…" if len(raw) > _PREVIEW_BYTES else text


def raw_hex(raw: bytes, length: int = _HEX_BYTES) -> str:
    r"""The first ``length`` bytes as hex, 16 to a line, each line with its offset.

    Example:
        >>> raw_hex(b'{"qty": \xff}')
        '0000  7b 22 71 74 79 22 3a 20 ff 7d'
        >>> raw_hex(b"x" * 40, length=20).splitlines()[-1]
        '0010  78 78 78 78 …'
    """
    head = raw[:length]
    starts = range(0, len(head), 16)
    lines = [f"{start:04x}  {head[start : start + 16].hex(' ')}" for start in starts]
    if len(raw) > length:
        lines[-1] += " …"
    return "\n".join(lines)


def gx_pass_rates(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Great Expectations pass rate per table and run (the run's watermark), oldest first.

    Columns: ``detected_at`` (the run), ``feed`` (the table), ``covers_from`` (exclusive;
    null: from the first landed row) and ``covers_to``, the landed event-time range the
    run judged, ``expectations``, ``passed`` and ``pass_rate`` (passed / expectations).
    """
    sql = f"""
        SELECT detected_at, feed, min(covers_from) AS covers_from,
               max(coalesce(covers_to, detected_at)) AS covers_to,
               CAST(count(*) AS BIGINT) AS expectations,
               CAST(count(*) FILTER (WHERE success) AS BIGINT) AS passed,
               {_rate("count(*) FILTER (WHERE success)", "count(*)")} AS pass_rate
        FROM dq_results WHERE origin = 'gx' GROUP BY ALL ORDER BY detected_at, feed"""
    return _frame(con, sql)


def stream_alerts_per_hour(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """In-stream gate alerts per feed, check and hour of detection (event time).

    Columns: ``hour``, ``feed``, ``check_name``, ``alerts``. A snapshot holds only the
    newest results, so its hours start where those do.
    """
    sql = """
        SELECT date_trunc('hour', detected_at) AS hour, feed, check_name,
               CAST(count(*) AS BIGINT) AS alerts
        FROM dq_results WHERE origin = 'stream' GROUP BY ALL ORDER BY hour, feed, check_name"""
    return _frame(con, sql)


def flagged_share(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Per feed: landed input events, in-stream alerts, and alerts per event.

    Both counts are complete in a snapshot: events come from ``feed_freshness``,
    alerts from ``dq_result_counts``. Columns: ``feed``, ``events``, ``alerts``,
    ``flagged_share`` (null for a feed without events).
    """
    sql = f"""
        WITH events AS (SELECT feed, sum(events) AS events FROM feed_freshness GROUP BY 1),
        alerts AS (SELECT feed, sum(failures) AS alerts FROM dq_result_counts
                   WHERE origin = 'stream' GROUP BY 1)
        SELECT feed, CAST(coalesce(events, 0) AS BIGINT) AS events,
               CAST(coalesce(alerts, 0) AS BIGINT) AS alerts,
               {_rate("coalesce(alerts, 0)", "events")} AS flagged_share
        FROM events FULL JOIN alerts USING (feed) ORDER BY feed"""
    return _frame(con, sql)


def open_alerts(con: duckdb.DuckDBPyConnection, limit: int = 100) -> pl.DataFrame:
    """The newest in-stream alerts and the failing expectations of the latest GX run.

    Columns: ``detected_at``, ``origin``, ``severity``, ``feed``, ``check_name``,
    ``event_id`` (the offending event; null for an expectation), ``unexpected_count``,
    ``detail``, ``sample``, ``result_id``; the latest run's failures first, then the
    ``limit`` newest alerts.
    """
    sql = """
        SELECT * FROM (
            SELECT detected_at, origin, severity, feed, check_name, event_id, unexpected_count,
                   detail, sample, result_id, 0 AS part
            FROM dq_results
            WHERE origin = 'gx' AND NOT success
              AND detected_at = (SELECT max(detected_at) FROM dq_results WHERE origin = 'gx')
            UNION ALL (
            SELECT detected_at, origin, severity, feed, check_name, event_id, unexpected_count,
                   detail, sample, result_id, 1 AS part
            FROM dq_results WHERE origin = 'stream'
            ORDER BY detected_at DESC, result_id LIMIT $limit))
        ORDER BY part, detected_at DESC, feed, check_name, result_id"""
    return _frame(con, sql, {"limit": limit}).drop("part")


def feed_freshness(con: duckdb.DuckDBPyConnection, limits: FreshnessLimits) -> pl.DataFrame:
    """Each feed and each node as the pipeline's stale-source check judges them, stale first.

    A feed's last event is the newest on any of its sources; a node's the newest event
    on any feed naming it (its ``feed`` is that event's). Its silence counts only in the
    active hours of its calendar (:meth:`FreshnessLimits.calendar`): ``stale`` when the
    silent active hours pass its limit, ``quiet (outside active hours)`` when only the
    hours it is not expected to be active take it past the limit, else ``fresh``.

    Columns: ``kind`` (feed or node), ``name``, ``feed``, ``events``, ``last_event_time``,
    ``hours_behind_watermark`` (exact), ``active_hours`` (the calendar),
    ``silent_active_hours``, ``stale_after_hours``, ``state``, ``stale``.
    """
    sql = """
        SELECT 'feed' AS kind, feed AS name, feed, CAST(sum(events) AS BIGINT) AS events,
               max(last_event_time) AS last_event_time, max(watermark) AS watermark
        FROM feed_freshness GROUP BY feed
        UNION ALL
        SELECT 'node', node_id, arg_max(feed, last_event_time), CAST(sum(events) AS BIGINT),
               max(last_event_time), max(watermark)
        FROM feed_freshness WHERE node_id IS NOT NULL GROUP BY node_id"""
    rows = [judge_freshness(row, limits) for row in _frame(con, sql).iter_rows(named=True)]
    rows.sort(key=lambda r: (not r["stale"], r["state"] != QUIET, -r["hours_behind_watermark"]))
    return pl.DataFrame(rows, schema=_FRESHNESS_SCHEMA)


_FRESHNESS_SCHEMA = {
    "kind": pl.String(),
    "name": pl.String(),
    "feed": pl.String(),
    "events": pl.Int64(),
    "last_event_time": pl.Datetime("us"),
    "hours_behind_watermark": pl.Float64(),
    "active_hours": pl.String(),
    "silent_active_hours": pl.Float64(),
    "stale_after_hours": pl.Float64(),
    "state": pl.String(),
    "stale": pl.Boolean(),
}


def judge_freshness(row: dict[str, Any], limits: FreshnessLimits) -> dict[str, Any]:
    """One source's row with its silence (in all and in active hours) and state."""
    last: datetime = row["last_event_time"]
    watermark: datetime = row["watermark"]
    calendar = limits.calendar(row["kind"], row["name"])
    limit = limits.limit(row["kind"], row["name"])
    behind = (watermark - last) / _HOUR
    silent = calendar.active_between(last.replace(tzinfo=UTC), watermark.replace(tzinfo=UTC))
    silent_hours = silent / _HOUR
    state = STALE if silent_hours > limit else QUIET if behind > limit else FRESH
    return {
        "kind": row["kind"],
        "name": row["name"],
        "feed": row["feed"],
        "events": row["events"],
        "last_event_time": last,
        "hours_behind_watermark": behind,
        "active_hours": str(calendar),
        "silent_active_hours": silent_hours,
        "stale_after_hours": limit,
        "state": state,
        "stale": state == STALE,
    }
