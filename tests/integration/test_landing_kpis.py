"""KPIs after incremental landing equal a from-scratch recomputation over the landed facts."""

import random
import shutil
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocflow.connectors.landing.aggregates import AGGREGATES, recompute_sql
from allocflow.connectors.landing.kpi_views import KPI_VIEWS, percentiles_sql
from allocflow.connectors.landing.records import LandingRecord
from allocflow.connectors.landing.writer import DuckDBWriter
from allocflow.models.allocation_exceptions import AllocationException, ExceptionState
from allocflow.models.topics import InputTopic, OutputTopic
from allocflow.models.vocabulary import OwnerRole, ReasonCode, Severity

pytestmark = pytest.mark.integration


def _records(run: Path) -> dict[str, list[LandingRecord]]:
    """Every message of a file run, per source file, in file order."""
    files = {t.value: run / "in" / f"{t.value}.jsonl" for t in InputTopic}
    files.update({t.value: run / "out" / f"{t.value}.jsonl" for t in OutputTopic})
    per_source: dict[str, list[LandingRecord]] = {}
    for topic, path in files.items():
        if path.is_file():
            lines = path.read_bytes().splitlines()
            per_source[topic] = [
                LandingRecord(topic, str(path), 0, i, line) for i, line in enumerate(lines) if line
            ]
    return per_source


def _interleaved(per_source: dict[str, list[LandingRecord]], seed: int) -> list[LandingRecord]:
    """All records, sources randomly interleaved, each source in its own order."""
    rng = random.Random(seed)
    queues = {source: list(records) for source, records in per_source.items()}
    merged: list[LandingRecord] = []
    while queues:
        source = rng.choice(sorted(queues))
        take = rng.randint(1, 400)
        merged.extend(queues[source][:take])
        queues[source] = queues[source][take:]
        if not queues[source]:
            del queues[source]
    return merged


def _land(path: Path, records: list[LandingRecord], batch_size: int) -> None:
    with DuckDBWriter(path) as writer:
        for start in range(0, len(records), batch_size):
            writer.land(records[start : start + batch_size])


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[object, ...]]:
    """Rows in a stable order; floats rounded (sums of seconds depend on addition order)."""
    rows = [
        tuple(round(v, 6) if isinstance(v, float) else v for v in row)
        for row in con.execute(sql).fetchall()
    ]
    return sorted(rows, key=repr)


def _differences(con: duckdb.DuckDBPyConnection, left: str, right: str) -> int:
    found = con.execute(
        f"SELECT (SELECT count(*) FROM (({left}) EXCEPT ALL ({right}))) "
        f"+ (SELECT count(*) FROM (({right}) EXCEPT ALL ({left})))"
    ).fetchone()
    assert found is not None
    return int(found[0])


@pytest.fixture(scope="module")
def landed(landed_run: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(landed_run / "allocflow.duckdb"), read_only=True)
    yield con
    con.close()


def test_the_fixture_landed_a_realistic_run(landed: duckdb.DuckDBPyConnection) -> None:
    counts = dict(landed.execute("SELECT fact, landed FROM fact_counts").fetchall())
    assert counts["orders"] >= 400
    assert counts["allocation_decisions"] > counts["order_lines"] > counts["orders"]
    assert counts["exceptions"] > 0
    assert counts["dead_letters"] > 0
    assert counts["shipments"] > 0


@pytest.mark.parametrize("aggregate", AGGREGATES, ids=lambda a: a.table)
def test_each_aggregate_equals_its_recomputation(landed: duckdb.DuckDBPyConnection, aggregate):
    assert _differences(landed, f"SELECT * FROM {aggregate.table}", recompute_sql(aggregate)) == 0


_LINES_FROM_DECISIONS = """
WITH ranked AS (
    SELECT d.*,
           row_number() OVER (PARTITION BY order_id, line_id ORDER BY source_offset) AS first_rank,
           row_number() OVER (PARTITION BY order_id, line_id ORDER BY source_offset DESC)
               AS last_rank
    FROM allocation_decisions AS d),
lines AS (
    SELECT f.order_id, f.line_id, f.outcome AS first_outcome, f.requested_qty AS first_req,
           f.allocated_qty AS first_alloc, l.outcome, l.requested_qty, l.allocated_qty
    FROM ranked AS f JOIN ranked AS l USING (order_id, line_id)
    WHERE f.first_rank = 1 AND l.last_rank = 1)
SELECT lines.*, p.placed_at, p.region, p.channel, p.customer_tier
FROM lines JOIN order_lines AS p USING (order_id, line_id)
WHERE p.placed_at IS NOT NULL
"""


def test_fill_rate_equals_recomputation_from_the_decision_log(
    landed: duckdb.DuckDBPyConnection,
) -> None:
    recomputed = f"""
        SELECT date_trunc('day', placed_at) AS day, region, channel, customer_tier,
               count(*) AS lines_decided,
               count(*) FILTER (WHERE first_outcome = 'allocated') AS lines_first_full,
               sum(first_req) AS units_first_requested, sum(first_alloc) AS units_first_alloc,
               count(*) FILTER (WHERE outcome <> 'cancelled') AS lines_active,
               count(*) FILTER (WHERE outcome = 'allocated') AS lines_current_full,
               sum(requested_qty) FILTER (WHERE outcome <> 'cancelled') AS units_req,
               sum(allocated_qty) FILTER (WHERE outcome <> 'cancelled') AS units_alloc
        FROM ({_LINES_FROM_DECISIONS}) GROUP BY ALL"""
    view = """
        SELECT period_start, region, channel, customer_tier, lines_decided, lines_first_full,
               units_first_requested, units_first_allocated, lines_active, lines_current_full,
               units_current_requested, units_current_allocated
        FROM kpi_fill_rate WHERE period = 'day' AND lines_decided > 0"""
    normalised = (
        "SELECT day, region, channel, customer_tier, lines_decided, lines_first_full, "
        "units_first_requested, units_first_alloc, lines_active, lines_current_full, "
        "coalesce(units_req, 0), coalesce(units_alloc, 0) FROM (" + recomputed + ")"
    )
    assert _differences(landed, view, normalised) == 0


def test_order_rates_equal_recomputation_from_lines_shipments_and_exceptions(
    landed: duckdb.DuckDBPyConnection,
) -> None:
    recomputed = f"""
        WITH lines AS ({_LINES_FROM_DECISIONS}),
        per_order AS (
            SELECT o.order_id, o.placed_at, o.region, o.channel, o.customer_tier, o.line_count,
                   o.split_count,
                   count(l.line_id) AS decided,
                   count(l.line_id) FILTER (WHERE l.first_outcome = 'allocated') AS first_full,
                   count(l.line_id) FILTER (WHERE l.outcome <> 'cancelled') AS active,
                   count(l.line_id) FILTER (WHERE l.outcome = 'allocated') AS full_now,
                   (SELECT count(*) FROM shipments AS s WHERE s.order_id = o.order_id) AS ships,
                   (SELECT count(*) FROM exceptions AS e WHERE e.order_id = o.order_id
                    AND e.reason_code NOT IN ('ROUTE_DELAY_RISK', 'DATA_QUALITY')) AS exc
            FROM orders AS o LEFT JOIN lines AS l USING (order_id)
            WHERE o.placed_at IS NOT NULL GROUP BY ALL)
        SELECT date_trunc('day', placed_at), region, channel, customer_tier,
               count(*), count(*) FILTER (WHERE active > 0 AND full_now = active),
               count(*) FILTER (WHERE active > 0
                                AND greatest(coalesce(split_count, 0), ships) > 1),
               count(*) FILTER (WHERE active > 0 AND full_now = active AND exc = 0),
               count(*) FILTER (WHERE exc > 0)
        FROM per_order WHERE line_count > 0 AND decided >= line_count GROUP BY ALL"""
    view = """
        SELECT f.period_start, f.region, f.channel, f.customer_tier, f.orders_decided,
               f.orders_current_full, s.orders_split, t.orders_touchless, t.orders_with_exception
        FROM kpi_fill_rate AS f
        JOIN kpi_split_rate AS s USING (period, period_start, region, channel, customer_tier)
        JOIN kpi_touchless_rate AS t USING (period, period_start, region, channel, customer_tier)
        WHERE f.period = 'day' AND f.orders_decided > 0"""
    assert _differences(landed, view, recomputed) == 0


def _exception(order_id: str, reason: ReasonCode, number: int) -> LandingRecord:
    opened = datetime(2026, 3, 9, tzinfo=UTC)
    exception = AllocationException(
        record_id=f"exc-test-{number}-open",
        exception_id=f"exc-test-{number}",
        state=ExceptionState.OPEN,
        order_id=order_id,
        reason_code=reason,
        severity=Severity.WARNING,
        owner_role=OwnerRole.LOGISTICS,
        opened_at=opened,
        detail=f"{reason.value} for the test",
        cause_event_id=f"evt-test-{number}",
    )
    topic = OutputTopic.ALLOCATION_EXCEPTIONS.value
    return LandingRecord(topic, "test", 0, number, exception.model_dump_json().encode())


def _order_counts(con: duckdb.DuckDBPyConnection, order_id: str) -> tuple[object, ...]:
    found = con.execute(
        "SELECT o.exceptions_opened, (SELECT sum(orders_touchless) FROM agg_order_fill), "
        "(SELECT sum(orders_with_exception) FROM agg_order_fill) "
        "FROM orders AS o WHERE order_id = ?",
        [order_id],
    ).fetchone()
    assert found is not None
    return tuple(found)


def test_route_delay_and_data_quality_exceptions_are_no_allocation_touch(
    landed_run: Path, tmp_path: Path
) -> None:
    path = tmp_path / "touch.duckdb"
    shutil.copy(landed_run / "allocflow.duckdb", path)
    with DuckDBWriter(path) as writer:
        con = writer.connection
        touchless = con.execute(
            "SELECT order_id FROM orders WHERE placed_at IS NOT NULL AND line_count > 0 "
            "AND lines_decided >= line_count AND lines_active > 0 "
            "AND lines_current_full = lines_active AND allocation_exceptions_opened = 0 "
            "ORDER BY order_id LIMIT 1"
        ).fetchone()
        assert touchless is not None
        order_id = str(touchless[0])
        opened, orders_touchless, with_exception = _order_counts(con, order_id)
        writer.land(
            [
                _exception(order_id, ReasonCode.ROUTE_DELAY_RISK, 0),
                _exception(order_id, ReasonCode.DATA_QUALITY, 1),
            ]
        )
        assert _order_counts(con, order_id) == (opened + 2, orders_touchless, with_exception)
        writer.land([_exception(order_id, ReasonCode.STOCKOUT, 2)])
        assert _order_counts(con, order_id) == (
            opened + 3,
            orders_touchless - 1,
            with_exception + 1,
        )
        for aggregate in AGGREGATES:
            differences = _differences(
                con, f"SELECT * FROM {aggregate.table}", recompute_sql(aggregate)
            )
            assert differences == 0, aggregate.table


def test_cycle_time_percentiles_equal_recomputation_and_bound_the_exact_value(
    landed: duckdb.DuckDBPyConnection,
) -> None:
    stage = "date_diff('millisecond', placed_at, delivered_at) / 1000.0"
    histogram = f"""
        SELECT bucket, count(*) AS n, sum(count(*)) OVER (ORDER BY bucket) AS cum,
               sum(count(*)) OVER () AS total
        FROM (SELECT log_bucket({stage}) AS bucket FROM orders
              WHERE placed_at IS NOT NULL AND delivered_at IS NOT NULL) GROUP BY bucket"""
    recomputed = landed.execute(
        f"SELECT bucket_upper(min(bucket) FILTER (WHERE cum >= 0.5 * total)), "
        f"bucket_upper(min(bucket) FILTER (WHERE cum >= 0.9 * total)), max(total) "
        f"FROM ({histogram})"
    ).fetchone()
    exact = landed.execute(
        f"SELECT quantile_disc({stage}, 0.5), quantile_disc({stage}, 0.9) FROM orders "
        "WHERE placed_at IS NOT NULL AND delivered_at IS NOT NULL"
    ).fetchone()
    view = landed.execute(
        "SELECT p50, p90, orders FROM (SELECT bucket_upper(min(bucket) FILTER "
        "(WHERE cum >= 0.5 * total)) AS p50, bucket_upper(min(bucket) FILTER "
        "(WHERE cum >= 0.9 * total)) AS p90, max(total) AS orders FROM (SELECT bucket, "
        "sum(orders) OVER (ORDER BY bucket) AS cum, sum(orders) OVER () AS total FROM "
        "(SELECT bucket, sum(orders) AS orders FROM hist_cycle_time "
        "WHERE stage = 'placed_to_delivered' GROUP BY bucket)))"
    ).fetchone()
    assert recomputed is not None
    assert exact is not None
    assert view is not None
    assert view == pytest.approx(recomputed)
    assert view[2] > 100
    for estimate, true_value in zip(view[:2], exact, strict=True):
        assert true_value <= estimate <= true_value * 2 ** (1 / 16) + 1e-9


def test_on_time_equals_recomputation_from_shipments(landed: duckdb.DuckDBPyConnection) -> None:
    delivered = "coalesce(delivered_at, carrier_delivered_at)"
    recomputed = f"""
        SELECT date_trunc('day', created_at), node_id, carrier_id, lane, count(*),
               count(dispatched_at), count(*) FILTER (WHERE dispatched_at <= dispatch_cutoff),
               count({delivered}), count(*) FILTER (WHERE {delivered} <= promised_delivery),
               count(*) FILTER (WHERE {delivered} <= promised_delivery AND short_units = 0)
        FROM shipments WHERE created_at IS NOT NULL GROUP BY ALL"""
    view = """
        SELECT period_start, node_id, carrier_id, lane, shipments, dispatched,
               dispatched_on_time, delivered, delivered_on_time, delivered_otif
        FROM kpi_on_time WHERE period = 'day'"""
    assert _differences(landed, view, recomputed) == 0


def test_transit_time_percentiles_bound_the_exact_value_per_carrier(
    landed: duckdb.DuckDBPyConnection,
) -> None:
    transit = (
        "date_diff('millisecond', dispatched_at, coalesce(delivered_at, carrier_delivered_at)) "
        "/ 3600000.0"
    )
    exact = landed.execute(
        f"SELECT carrier_id, count(*), quantile_disc({transit}, 0.5), "
        f"quantile_disc({transit}, 0.9) FROM shipments "
        f"WHERE created_at IS NOT NULL AND {transit} IS NOT NULL GROUP BY 1 ORDER BY 1"
    ).fetchall()
    view = landed.execute(
        "SELECT carrier_id, sum(shipments) FROM kpi_transit_time WHERE period = 'day' "
        "GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert [row[:2] for row in exact] == view
    assert len(view) >= 3
    percentiles = percentiles_sql(
        "SELECT carrier_id, bucket, shipments FROM hist_transit_time",
        ("carrier_id",),
        "shipments",
        " / 3600.0",
    )
    for carrier, _, p50, p90 in exact:
        estimate = landed.execute(
            f"SELECT p50, p90 FROM ({percentiles}) WHERE carrier_id = ?", [carrier]
        ).fetchone()
        assert estimate is not None
        for value, true_value in zip(estimate, (p50, p90), strict=True):
            assert true_value <= value <= true_value * 2 ** (1 / 16) + 1e-9, carrier


def test_exception_kpis_equal_recomputation(landed: duckdb.DuckDBPyConnection) -> None:
    resolution = """
        SELECT date_trunc('day', opened_at), reason_code, count(*), count(closed_at),
               round(sum(date_diff('millisecond', opened_at, closed_at)) / 3600000.0
                     / nullif(count(closed_at), 0), 6)
        FROM exceptions GROUP BY ALL"""
    view = """
        SELECT period_start, reason_code, opened, closed, round(mean_hours_to_resolve, 6)
        FROM kpi_exception_resolution WHERE period = 'day'"""
    assert _differences(landed, view, resolution) == 0
    aging = """
        SELECT reason_code, count(*) FROM exceptions
        WHERE closed_at IS NULL AND reason_code <> 'DATA_QUALITY' GROUP BY ALL"""
    aging_view = "SELECT reason_code, sum(open_exceptions) FROM kpi_exception_aging GROUP BY ALL"
    assert _differences(landed, aging_view, aging) == 0


def test_hourly_rows_add_up_to_daily_rows(landed: duckdb.DuckDBPyConnection) -> None:
    for view in ("kpi_fill_rate", "kpi_split_rate", "kpi_touchless_rate", "kpi_on_time"):
        columns = [
            name
            for (name,) in landed.execute(
                f"SELECT column_name FROM information_schema.columns "
                f"WHERE table_name = '{view}' AND data_type = 'BIGINT'"
            ).fetchall()
        ]
        sums = ", ".join(f"sum({c})" for c in columns)
        hourly, daily = (
            landed.execute(f"SELECT {sums} FROM {view} WHERE period = '{p}'").fetchone()
            for p in ("hour", "day")
        )
        assert hourly == daily, view


@settings(
    max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 10_000), batch_size=st.integers(400, 3000))
def test_kpis_do_not_depend_on_arrival_order_or_batching(
    landed_run: Path, tmp_path_factory: pytest.TempPathFactory, seed: int, batch_size: int
) -> None:
    path = tmp_path_factory.mktemp("order") / "kpis.duckdb"
    records = _interleaved(_records(landed_run), seed)
    _land(path, records, batch_size)
    reference = duckdb.connect(str(landed_run / "allocflow.duckdb"), read_only=True)
    shuffled = duckdb.connect(str(path), read_only=True)
    try:
        for view in KPI_VIEWS:
            if view == "kpi_exception_aging":
                continue
            assert _rows(shuffled, f"SELECT * FROM {view}") == _rows(
                reference, f"SELECT * FROM {view}"
            ), view
    finally:
        reference.close()
        shuffled.close()


@pytest.mark.parametrize("gap", [0, 900], ids=["same-batch", "next-batch"])
def test_redelivered_input_events_land_once(landed_run: Path, tmp_path: Path, gap: int) -> None:
    """A redelivery in the same batch or a later one adds no scan, short unit or order line."""
    per_source = _records(landed_run)
    for topic in (t.value for t in InputTopic):
        copies: list[LandingRecord] = []
        for record in per_source[topic]:
            copies.append(record)
            if len(copies) > gap:
                again = copies[-gap - 1]
                copies.append(LandingRecord(again.topic, again.source, 0, 0, again.value))
        per_source[topic] = [
            LandingRecord(r.topic, r.source, 0, offset, r.value) for offset, r in enumerate(copies)
        ]
    path = tmp_path / "redelivered.duckdb"
    _land(path, [r for records in per_source.values() for r in records], 700)
    with duckdb.connect(str(path), read_only=True) as con:
        con.execute(f"ATTACH '{landed_run / 'allocflow.duckdb'}' AS ref (READ_ONLY)")
        for table in ("shipments", "orders", "order_lines", "carrier_events", "exceptions"):
            assert _differences(con, f"FROM main.{table}", f"FROM ref.{table}") == 0, table
        (scans,) = con.execute("SELECT sum(scans) FROM shipments").fetchone() or (None,)
        (events,) = con.execute("SELECT count(*) FROM carrier_events").fetchone() or (None,)
        assert scans == events
