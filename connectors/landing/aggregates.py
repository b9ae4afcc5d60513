"""Incrementally maintained KPI aggregates, and the from-scratch recomputation of each.

Every aggregate is a sum over the rows of one *entity* table (``orders``,
``order_lines``, ``shipments``, ``exceptions``, ``allocation_decisions``), grouped by
an hour bucket and dimensions. Each row of the entity contributes its measures to
one group (or, for a histogram, to one bucket of one group).

When a batch changes some entity rows, the lander captures those rows before and
after the change and adds ``contribution(after) - contribution(before)`` to the
aggregate table, in the batch's transaction. The aggregate therefore always
equals :func:`recompute_sql` over the whole entity table; a test proves it after
incremental runs, and ``docs/kpis.md`` states each formula.
"""

import re
from dataclasses import dataclass

import duckdb

MACROS = (
    "CREATE OR REPLACE MACRO log_bucket(x) AS "
    "CASE WHEN x < 1 THEN -1 ELSE CAST(floor(16 * log2(x)) AS INTEGER) END",
    "CREATE OR REPLACE MACRO bucket_upper(b) AS "
    "CASE WHEN b < 0 THEN 1.0 ELSE pow(2, (b + 1) / 16.0) END",
    "CREATE OR REPLACE MACRO seconds_between(a, b) AS "
    "CAST(date_diff('millisecond', a, b) AS DECIMAL(18, 0)) * 0.001",
)
"""Histogram buckets: 16 per doubling (each ≤ 4.5 % wide) and one for values under 1; a
bucket reads as its upper bound. Durations are exact decimals of seconds (millisecond
precision), so sums maintained by adding and subtracting contributions stay equal to a
recomputation (floating-point sums depend on their order)."""


@dataclass(frozen=True)
class Aggregate:
    """One aggregate table kept up to date from one entity table.

    Attributes:
        table: The aggregate table's name.
        entity: The entity table whose rows contribute.
        keys: Group columns and the SQL expression of each over an entity row.
        measures: Summed columns and the SQL expression of each row's contribution.
        where: Which entity rows contribute at all.
        expand: Optional ``CROSS JOIN`` source turning one row into several (a
            histogram over several stages); its columns may appear in ``keys``.
    """

    table: str
    entity: str
    keys: dict[str, str]
    measures: dict[str, str]
    where: str = "TRUE"
    expand: str = ""

    def ddl(self) -> str:
        """The ``CREATE TABLE`` of the aggregate."""
        keys = ", ".join(f"{name} {_key_type(name)} NOT NULL" for name in self.keys)
        measures = ", ".join(f"{name} {measure_type(name)} NOT NULL" for name in self.measures)
        return (
            f"CREATE TABLE IF NOT EXISTS {self.table} ({keys}, {measures}, "
            f"PRIMARY KEY ({', '.join(self.keys)}))"
        )

    def contribution_sql(self, rows: str) -> str:
        """Grouped contributions of ``rows`` (which carry a ``_sign`` of +1 or -1)."""
        keys = ", ".join(f"{expr} AS {name}" for name, expr in self.keys.items())
        measures = ", ".join(
            f"sum(_sign * ({expr})) AS {name}" for name, expr in self.measures.items()
        )
        return (
            f"SELECT {keys}, {measures} FROM {rows} AS e {self.expand} "
            f"WHERE {self.where} GROUP BY ALL"
        )

    def apply_delta_sql(self, before: str, after: str) -> str:
        """Add ``contribution(after) - contribution(before)`` to the aggregate."""
        rows = (
            f"(SELECT *, 1 AS _sign FROM {after} "
            f"UNION ALL BY NAME SELECT *, -1 AS _sign FROM {before})"
        )
        updates = ", ".join(
            f"{name} = {self.table}.{name} + excluded.{name}" for name in self.measures
        )
        return (
            f"INSERT INTO {self.table} {self.contribution_sql(rows)} "
            f"ON CONFLICT ({', '.join(self.keys)}) DO UPDATE SET {updates}"
        )

    def prune_sql(self) -> str:
        """Delete groups whose every measure went back to zero."""
        zero = " AND ".join(f"{name} = 0" for name in self.measures)
        return f"DELETE FROM {self.table} WHERE {zero}"


def recompute_sql(aggregate: Aggregate) -> str:
    """The aggregate computed from scratch over its whole entity table."""
    rows = f"(SELECT *, 1 AS _sign FROM {aggregate.entity})"
    return aggregate.contribution_sql(rows)


def _key_type(name: str) -> str:
    return {"hour": "TIMESTAMP", "bucket": "INTEGER"}.get(name, "VARCHAR")


def measure_type(name: str) -> str:
    """SQL type of a measure column: seconds are exact decimals, units HUGEINT, counts BIGINT.

    A sum of units adds ``BIGINT`` quantities, which fewer than 2^64 rows cannot take
    past ``HUGEINT``; a count cannot pass ``BIGINT``.

    Example:
        >>> [measure_type(m) for m in ("resolve_seconds", "units_first_requested", "opened")]
        ['DECIMAL(38, 3)', 'HUGEINT', 'BIGINT']
    """
    if name.endswith("_seconds"):
        return "DECIMAL(38, 3)"
    return "HUGEINT" if name.startswith("units_") else "BIGINT"


_ORDER_DIMS = {
    "hour": "date_trunc('hour', e.placed_at)",
    "region": "e.region",
    "channel": "e.channel",
    "customer_tier": "e.customer_tier",
}

_UNLESS_CANCELLED = "CASE WHEN e.outcome <> 'cancelled' THEN {} ELSE 0 END"

LINE_FILL = Aggregate(
    table="agg_line_fill",
    entity="order_lines",
    keys=_ORDER_DIMS,
    measures={
        "lines_decided": "1",
        "lines_first_full": "CAST(e.first_outcome = 'allocated' AS INTEGER)",
        "units_first_requested": "e.first_requested_qty",
        "units_first_allocated": "e.first_allocated_qty",
        "lines_active": "CAST(e.outcome <> 'cancelled' AS INTEGER)",
        "lines_current_full": "CAST(e.outcome = 'allocated' AS INTEGER)",
        "units_current_requested": _UNLESS_CANCELLED.format("e.requested_qty"),
        "units_current_allocated": _UNLESS_CANCELLED.format("e.allocated_qty"),
    },
    where="e.placed_at IS NOT NULL AND e.decisions > 0",
)

_ORDER_DECIDED = "e.placed_at IS NOT NULL AND e.line_count > 0 AND e.lines_decided >= e.line_count"
_ORDER_FILLED = "e.lines_active > 0 AND e.lines_current_full = e.lines_active"

ORDER_FILL = Aggregate(
    table="agg_order_fill",
    entity="orders",
    keys=_ORDER_DIMS,
    measures={
        "orders_decided": "1",
        "orders_first_full": "CAST(e.lines_first_full = e.line_count AS INTEGER)",
        "orders_active": "CAST(e.lines_active > 0 AS INTEGER)",
        "orders_current_full": f"CAST({_ORDER_FILLED} AS INTEGER)",
        "orders_split": (
            "CAST(e.lines_active > 0 AND greatest(coalesce(e.split_count, 0), e.shipments) > 1 "
            "AS INTEGER)"
        ),
        "orders_touchless": (
            f"CAST({_ORDER_FILLED} AND e.allocation_exceptions_opened = 0 AS INTEGER)"
        ),
        "orders_with_exception": "CAST(e.allocation_exceptions_opened > 0 AS INTEGER)",
    },
    where=_ORDER_DECIDED,
)

_CYCLE_STAGES = """CROSS JOIN (VALUES
    ('placed_to_allocated', 1), ('allocated_to_dispatched', 2),
    ('dispatched_to_delivered', 3), ('placed_to_delivered', 4)) AS s(stage, stage_no)"""
_STAGE_START = (
    "CASE s.stage_no WHEN 1 THEN e.placed_at WHEN 2 THEN e.allocated_at "
    "WHEN 3 THEN e.first_dispatched_at ELSE e.placed_at END"
)
_STAGE_END = (
    "CASE s.stage_no WHEN 1 THEN e.allocated_at WHEN 2 THEN e.first_dispatched_at "
    "ELSE e.delivered_at END"
)

CYCLE_TIME = Aggregate(
    table="hist_cycle_time",
    entity="orders",
    keys={
        **_ORDER_DIMS,
        "stage": "s.stage",
        "bucket": f"log_bucket(seconds_between({_STAGE_START}, {_STAGE_END}))",
    },
    measures={"orders": "1"},
    where=f"e.placed_at IS NOT NULL AND {_STAGE_START} IS NOT NULL AND {_STAGE_END} IS NOT NULL",
    expand=_CYCLE_STAGES,
)

_DELIVERED_AT = "coalesce(e.delivered_at, e.carrier_delivered_at)"
_DELIVERED_ON_TIME = f"{_DELIVERED_AT} <= e.promised_delivery"

ON_TIME = Aggregate(
    table="agg_shipments",
    entity="shipments",
    keys={
        "hour": "date_trunc('hour', e.created_at)",
        "node_id": "e.node_id",
        "carrier_id": "e.carrier_id",
        "lane": "e.lane",
    },
    measures={
        "shipments": "1",
        "dispatched": "CAST(e.dispatched_at IS NOT NULL AS INTEGER)",
        "dispatched_on_time": (
            "CAST(coalesce(e.dispatched_at <= e.dispatch_cutoff, FALSE) AS INTEGER)"
        ),
        "delivered": f"CAST({_DELIVERED_AT} IS NOT NULL AS INTEGER)",
        "delivered_on_time": f"CAST(coalesce({_DELIVERED_ON_TIME}, FALSE) AS INTEGER)",
        "delivered_otif": (
            f"CAST(coalesce({_DELIVERED_ON_TIME}, FALSE) AND e.short_units = 0 AS INTEGER)"
        ),
    },
    where="e.created_at IS NOT NULL",
)

_TRANSIT = f"seconds_between(e.dispatched_at, {_DELIVERED_AT})"

TRANSIT_TIME = Aggregate(
    table="hist_transit_time",
    entity="shipments",
    keys={**ON_TIME.keys, "bucket": f"log_bucket({_TRANSIT})"},
    measures={"shipments": "1"},
    where=f"e.created_at IS NOT NULL AND {_TRANSIT} IS NOT NULL",
)

EXCEPTIONS = Aggregate(
    table="agg_exceptions",
    entity="exceptions",
    keys={
        "hour": "date_trunc('hour', e.opened_at)",
        "reason_code": "e.reason_code",
        "owner_role": "e.owner_role",
        "severity": "e.severity",
    },
    measures={
        "opened": "1",
        "closed": "CAST(e.closed_at IS NOT NULL AS INTEGER)",
        "resolve_seconds": "coalesce(seconds_between(e.opened_at, e.closed_at), 0)",
    },
)

EXCEPTION_RESOLVE = Aggregate(
    table="hist_exception_resolve",
    entity="exceptions",
    keys={
        "hour": "date_trunc('hour', e.opened_at)",
        "reason_code": "e.reason_code",
        "bucket": "log_bucket(seconds_between(e.opened_at, e.closed_at))",
    },
    measures={"exceptions": "1"},
    where="e.closed_at IS NOT NULL",
)

ALLOCATION_LATENCY = Aggregate(
    table="hist_allocation_latency",
    entity="allocation_decisions",
    keys={"hour": "date_trunc('hour', e.decided_at)", "bucket": "log_bucket(e.latency_ms)"},
    measures={"decisions": "1"},
    where="e.latency_ms IS NOT NULL",
)

AGGREGATES: tuple[Aggregate, ...] = (
    LINE_FILL,
    ORDER_FILL,
    CYCLE_TIME,
    ON_TIME,
    TRANSIT_TIME,
    EXCEPTIONS,
    EXCEPTION_RESOLVE,
    ALLOCATION_LATENCY,
)


def create_aggregates(con: duckdb.DuckDBPyConnection) -> None:
    """Create the histogram macros and every aggregate table."""
    for macro in MACROS:
        con.execute(macro)
    for aggregate in AGGREGATES:
        con.execute(aggregate.ddl())


def aggregates_of(entity: str) -> tuple[Aggregate, ...]:
    """The aggregates fed by one entity table."""
    return tuple(a for a in AGGREGATES if a.entity == entity)


def columns_read(entity: str) -> tuple[str, ...]:
    """The entity columns its aggregates read (``e.<column>`` in their SQL), sorted.

    Example:
        >>> columns_read("exceptions")
        ('closed_at', 'opened_at', 'owner_role', 'reason_code', 'severity')
    """
    sql = " ".join(
        " ".join([*a.keys.values(), *a.measures.values(), a.where, a.expand])
        for a in aggregates_of(entity)
    )
    return tuple(sorted(set(re.findall(r"\be\.(\w+)", sql))))
