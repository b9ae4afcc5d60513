"""The KPI views: stable names and columns for dashboards and BI tools.

Each view reads the small aggregate tables (never the raw facts, except
``kpi_exception_aging``, which reads the open exceptions), rolls the hourly rows up
to days, and divides summed numerators by summed denominators, so a rate for a
wider slice is always ``sum(numerator) / sum(denominator)`` of its rows.
Percentiles come from 16-per-doubling histograms. ``docs/kpis.md`` has the formulas.
"""

import duckdb

from allocflow.connectors.landing.aggregates import measure_type
from allocflow.models.route_alerts import RouteAlertKind
from allocflow.models.vocabulary import ReasonCode

_ORDER_DIMS = ("region", "channel", "customer_tier")
_SHIPMENT_DIMS = ("node_id", "carrier_id", "lane")

AGE_BUCKETS = (("0-1h", 1), ("1-4h", 4), ("4-24h", 24), ("1-3d", 72), ("3d+", None))
"""Exception age buckets: label and exclusive upper bound in hours (None: no bound)."""


def _by_period(table: str, dims: tuple[str, ...], measures: tuple[str, ...]) -> str:
    """Hourly rows of an aggregate plus the same rows summed per day."""
    keys = ", ".join(dims)
    hourly = ", ".join(measures)
    daily = ", ".join(f"CAST(sum({m}) AS {measure_type(m)}) AS {m}" for m in measures)
    return (
        f"SELECT 'hour' AS period, hour AS period_start, {keys}, {hourly} FROM {table} "
        f"UNION ALL SELECT 'day' AS period, date_trunc('day', hour) AS period_start, {keys}, "
        f"{daily} FROM {table} GROUP BY ALL"
    )


def _rate(numerator: str, denominator: str) -> str:
    return f"CAST({numerator} AS DOUBLE) / nullif({denominator}, 0)"


def percentiles_sql(source: str, groups: tuple[str, ...], count: str, scale: str = "") -> str:
    """p50 and p90 of a histogram (``bucket`` and ``count`` columns of ``source``) per group.

    A bucket reads as ``bucket_upper(bucket)``; a percentile is the smallest bucket
    whose cumulative count reaches that share of the group's total. The result has the
    group columns, ``count`` (the group's total) and ``p50``, ``p90`` (times ``scale``,
    an SQL suffix such as ``" / 3600.0"``). Empty ``groups``: one row over everything.
    """
    keys = "".join(f"{g}, " for g in groups)
    partition = f"PARTITION BY {', '.join(groups)}" if groups else ""
    return f"""
    WITH h AS (SELECT {keys}bucket, sum({count}) AS n FROM ({source}) GROUP BY ALL),
    c AS (SELECT *, sum(n) OVER ({partition} ORDER BY bucket) AS cumulative,
                 sum(n) OVER ({partition}) AS total FROM h)
    SELECT {keys}CAST(max(total) AS BIGINT) AS {count},
           bucket_upper(min(bucket) FILTER (WHERE cumulative >= 0.5 * total)){scale} AS p50,
           bucket_upper(min(bucket) FILTER (WHERE cumulative >= 0.9 * total)){scale} AS p90
    FROM c {"GROUP BY ALL" if groups else ""}"""


_LINE_MEASURES = (
    "lines_decided",
    "lines_first_full",
    "units_first_requested",
    "units_first_allocated",
    "lines_active",
    "lines_current_full",
    "units_current_requested",
    "units_current_allocated",
)
_ORDER_MEASURES = (
    "orders_decided",
    "orders_first_full",
    "orders_active",
    "orders_current_full",
    "orders_split",
    "orders_touchless",
    "orders_with_exception",
)
_FILL_MEASURES = (*_LINE_MEASURES, *_ORDER_MEASURES[:4])
_FILL_SUMS = ", ".join(
    f"CAST(coalesce(sum({m}), 0) AS {measure_type(m)}) AS {m}" for m in _FILL_MEASURES
)

KPI_FILL_RATE = f"""
CREATE OR REPLACE VIEW kpi_fill_rate AS
WITH u AS (
    SELECT * FROM ({_by_period("agg_line_fill", _ORDER_DIMS, _LINE_MEASURES)})
    UNION ALL BY NAME
    SELECT * FROM ({_by_period("agg_order_fill", _ORDER_DIMS, _ORDER_MEASURES[:4])})),
s AS (
    SELECT period, period_start, {", ".join(_ORDER_DIMS)},
           {_FILL_SUMS}
    FROM u GROUP BY ALL)
SELECT *,
    {_rate("lines_first_full", "lines_decided")} AS line_fill_rate_first_pass,
    {_rate("lines_current_full", "lines_active")} AS line_fill_rate_current,
    {_rate("units_first_allocated", "units_first_requested")} AS unit_fill_rate_first_pass,
    {_rate("units_current_allocated", "units_current_requested")} AS unit_fill_rate_current,
    {_rate("orders_first_full", "orders_decided")} AS order_fill_rate_first_pass,
    {_rate("orders_current_full", "orders_active")} AS order_fill_rate_current
FROM s
"""

KPI_SPLIT_RATE = f"""
CREATE OR REPLACE VIEW kpi_split_rate AS
SELECT period, period_start, {", ".join(_ORDER_DIMS)}, orders_active, orders_split,
       {_rate("orders_split", "orders_active")} AS split_rate
FROM ({_by_period("agg_order_fill", _ORDER_DIMS, ("orders_active", "orders_split"))})
"""

KPI_TOUCHLESS_RATE = f"""
CREATE OR REPLACE VIEW kpi_touchless_rate AS
SELECT period, period_start, {", ".join(_ORDER_DIMS)}, orders_decided, orders_touchless,
       orders_with_exception, {_rate("orders_touchless", "orders_decided")} AS touchless_rate
FROM ({
    _by_period(
        "agg_order_fill",
        _ORDER_DIMS,
        ("orders_decided", "orders_touchless", "orders_with_exception"),
    )
})
"""

_CYCLE_GROUPS = ("period", "period_start", *_ORDER_DIMS, "stage")
KPI_CYCLE_TIME = f"""
CREATE OR REPLACE VIEW kpi_cycle_time AS
SELECT period, period_start, {", ".join(_ORDER_DIMS)}, stage, orders,
       p50 AS p50_seconds, p90 AS p90_seconds
FROM ({
    percentiles_sql(
        _by_period("hist_cycle_time", (*_ORDER_DIMS, "stage", "bucket"), ("orders",)),
        _CYCLE_GROUPS,
        "orders",
    )
})
"""

_SHIPMENT_MEASURES = (
    "shipments",
    "dispatched",
    "dispatched_on_time",
    "delivered",
    "delivered_on_time",
    "delivered_otif",
)
KPI_ON_TIME = f"""
CREATE OR REPLACE VIEW kpi_on_time AS
SELECT period, period_start, {", ".join(_SHIPMENT_DIMS)}, {", ".join(_SHIPMENT_MEASURES)},
       {_rate("dispatched_on_time", "dispatched")} AS on_time_dispatch_rate,
       {_rate("delivered_on_time", "delivered")} AS on_time_delivery_rate,
       {_rate("delivered_otif", "delivered")} AS otif_rate
FROM ({_by_period("agg_shipments", _SHIPMENT_DIMS, _SHIPMENT_MEASURES)})
"""

_TRANSIT_GROUPS = ("period", "period_start", *_SHIPMENT_DIMS)
KPI_TRANSIT_TIME = f"""
CREATE OR REPLACE VIEW kpi_transit_time AS
SELECT period, period_start, {", ".join(_SHIPMENT_DIMS)}, shipments,
       p50 AS p50_hours, p90 AS p90_hours
FROM ({
    percentiles_sql(
        _by_period("hist_transit_time", (*_SHIPMENT_DIMS, "bucket"), ("shipments",)),
        _TRANSIT_GROUPS,
        "shipments",
        " / 3600.0",
    )
})
"""

_AGE_CASE = " ".join(
    f"WHEN age_hours < {bound} THEN '{label}'" for label, bound in AGE_BUCKETS if bound is not None
)
_AGE_ORDER = " ".join(
    f"WHEN age_hours < {bound} THEN {i}" for i, (_, bound) in enumerate(AGE_BUCKETS) if bound
)
KPI_EXCEPTION_AGING = f"""
CREATE OR REPLACE VIEW kpi_exception_aging AS
WITH open AS (
    SELECT e.*, w.watermark AS as_of,
           greatest((epoch_us(w.watermark) - epoch_us(e.opened_at)) / 3600000000.0, 0)
               AS age_hours
    FROM exceptions AS e, (SELECT watermark FROM landing_status WHERE id = 1) AS w
    WHERE e.closed_at IS NULL AND e.reason_code <> '{ReasonCode.DATA_QUALITY.value}')
SELECT as_of, reason_code, owner_role, severity,
       CASE {_AGE_CASE} ELSE '{AGE_BUCKETS[-1][0]}' END AS age_bucket,
       CASE {_AGE_ORDER} ELSE {len(AGE_BUCKETS) - 1} END AS age_bucket_order,
       count(*) AS open_exceptions, max(age_hours) AS oldest_hours
FROM open GROUP BY ALL
"""

_RESOLVE_GROUPS = ("period", "period_start", "reason_code")
KPI_EXCEPTION_RESOLUTION = f"""
CREATE OR REPLACE VIEW kpi_exception_resolution AS
WITH counts AS (
    SELECT period, period_start, reason_code, sum(opened) AS opened, sum(closed) AS closed,
           sum(resolve_seconds) AS resolve_seconds
    FROM ({
    _by_period(
        "agg_exceptions",
        ("reason_code", "owner_role", "severity"),
        ("opened", "closed", "resolve_seconds"),
    )
})
    GROUP BY ALL),
p AS ({
    percentiles_sql(
        _by_period("hist_exception_resolve", ("reason_code", "bucket"), ("exceptions",)),
        _RESOLVE_GROUPS,
        "exceptions",
        " / 3600.0",
    )
})
SELECT c.period, c.period_start, c.reason_code, CAST(c.opened AS BIGINT) AS opened,
       CAST(c.closed AS BIGINT) AS closed,
       c.resolve_seconds / 3600.0 / nullif(c.closed, 0) AS mean_hours_to_resolve,
       p.p50 AS p50_hours_to_resolve, p.p90 AS p90_hours_to_resolve
FROM counts AS c LEFT JOIN p USING (period, period_start, reason_code)
"""

KPI_ALLOCATION_LATENCY = f"""
CREATE OR REPLACE VIEW kpi_allocation_latency AS
SELECT period, period_start, decisions, p50 AS p50_ms, p90 AS p90_ms
FROM ({
    percentiles_sql(
        _by_period("hist_allocation_latency", ("bucket",), ("decisions",)),
        ("period", "period_start"),
        "decisions",
    )
})
"""

KPI_VIEWS: dict[str, str] = {
    "kpi_fill_rate": KPI_FILL_RATE,
    "kpi_cycle_time": KPI_CYCLE_TIME,
    "kpi_split_rate": KPI_SPLIT_RATE,
    "kpi_exception_aging": KPI_EXCEPTION_AGING,
    "kpi_exception_resolution": KPI_EXCEPTION_RESOLUTION,
    "kpi_on_time": KPI_ON_TIME,
    "kpi_transit_time": KPI_TRANSIT_TIME,
    "kpi_allocation_latency": KPI_ALLOCATION_LATENCY,
    "kpi_touchless_rate": KPI_TOUCHLESS_RATE,
}

OPENING_ROUTE_ALERT_KINDS = (
    RouteAlertKind.NOT_DISPATCHED,
    RouteAlertKind.AT_RISK,
    RouteAlertKind.STALLED,
    RouteAlertKind.LANE_DEGRADED,
)
"""Route alert kinds that open an alert; a later ``RESOLVED`` alert closes each."""

OPEN_ROUTE_ALERTS = f"""
CREATE OR REPLACE VIEW open_route_alerts AS
SELECT a.* FROM route_alerts AS a
WHERE a.kind IN ({", ".join(f"'{k.value}'" for k in OPENING_ROUTE_ALERT_KINDS)})
  AND a.alert_id NOT IN (SELECT resolves_alert_id FROM route_alerts
                         WHERE kind = '{RouteAlertKind.RESOLVED.value}'
                           AND resolves_alert_id IS NOT NULL)
"""
"""Route alerts of an opening kind that no ``RESOLVED`` alert references (yet)."""

SUMMARY_VIEWS: dict[str, str] = {
    "dead_letter_counts": """
CREATE OR REPLACE VIEW dead_letter_counts AS
SELECT source_topic, reason_code, count(*) AS dead_letters,
       max(coalesce(dead_lettered_at, source_timestamp)) AS last_seen
FROM dead_letters GROUP BY ALL
""",
    "dq_result_counts": """
CREATE OR REPLACE VIEW dq_result_counts AS
SELECT origin, check_name, feed, severity, count(*) AS results,
       count(*) FILTER (WHERE NOT success) AS failures, max(detected_at) AS last_detected
FROM dq_results GROUP BY ALL
""",
    "feed_freshness": """
CREATE OR REPLACE VIEW feed_freshness AS
SELECT topic AS feed, source, node_id, count(*) AS events, max(event_time) AS last_event_time,
       max(ingested_at) AS last_ingested_at,
       (SELECT watermark FROM landing_status WHERE id = 1) AS watermark,
       date_diff('second', max(event_time), (SELECT watermark FROM landing_status WHERE id = 1))
           / 3600.0 AS hours_behind_watermark
FROM input_events GROUP BY ALL
""",
    "fact_counts": """
CREATE OR REPLACE VIEW fact_counts AS
SELECT 'orders' AS fact, count(*) AS landed FROM orders
UNION ALL SELECT 'order_lines', count(*) FROM order_lines
UNION ALL SELECT 'allocation_decisions', count(*) FROM allocation_decisions
UNION ALL SELECT 'exceptions', count(*) FROM exceptions
UNION ALL SELECT 'shipments', count(*) FROM shipments
UNION ALL SELECT 'carrier_events', count(*) FROM carrier_events
UNION ALL SELECT 'input_events', count(*) FROM input_events
UNION ALL SELECT 'dead_letters', count(*) FROM dead_letters
UNION ALL SELECT 'dq_results', count(*) FROM dq_results
UNION ALL SELECT 'route_alerts', count(*) FROM route_alerts
""",
}
"""Whole-table summaries over the facts; a snapshot holds them as tables."""


def create_views(con: duckdb.DuckDBPyConnection, *, summaries: bool = True) -> None:
    """Create (or replace) the KPI views and ``open_route_alerts``; the summaries by default."""
    for ddl in KPI_VIEWS.values():
        con.execute(ddl)
    con.execute(OPEN_ROUTE_ALERTS)
    if summaries:
        for ddl in SUMMARY_VIEWS.values():
            con.execute(ddl)
