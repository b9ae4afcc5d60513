"""The dashboard's SQL, checked against the landed run and against independent SQL.

Every query runs on the published snapshot (what the dashboard reads while the
lander runs) and most also on the landed file itself; the expected numbers come from
plain SQL over the aggregate tables and the KPI views, or from the full fact tables
of the landed file.
"""

import shutil
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from allocflow.dashboards import data, queries
from allocflow.dashboards.queries import Filters, QueueFilters, Selection
from allocflow.models.activity_calendar import ActivityCalendar
from allocflow.quality.settings import GateSettings

pytestmark = pytest.mark.unit


@pytest.fixture(params=["snapshot", "landed"])
def con(request: pytest.FixtureRequest, landed_run: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to the snapshot, then to the landed file."""
    db = landed_run / "allocflow.duckdb"
    path = db.with_name(db.name + ".snapshot") if request.param == "snapshot" else db
    with duckdb.connect(str(path), read_only=True) as connection:
        yield connection


@pytest.fixture
def landed(landed_run: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """The landed file itself: every fact, not the snapshot's subset."""
    with duckdb.connect(str(landed_run / "allocflow.duckdb"), read_only=True) as connection:
        yield connection


@pytest.fixture
def reopened(landed_run: Path, tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A copy of the snapshot whose ten first exceptions are open again."""
    copy = tmp_path / "reopened.duckdb"
    shutil.copy(landed_run / "allocflow.duckdb.snapshot", copy)
    with duckdb.connect(str(copy)) as connection:
        connection.execute(
            """UPDATE exceptions SET closed_at = NULL, resolution = NULL
               WHERE exception_id IN (SELECT exception_id FROM exceptions
                                      ORDER BY opened_at, exception_id LIMIT 10)"""
        )
    with duckdb.connect(str(copy), read_only=True) as connection:
        yield connection


_DQ_RESULTS = """
INSERT INTO dq_results (result_id, origin, check_name, feed, severity, success, event_id,
                        detected_at, element_count, unexpected_count, detail, sample)
VALUES
 ('gx-1a', 'gx', 'expect_column_values_to_not_be_null(order_id)', 'orders', 'critical', true,
  NULL, '2026-03-08 02:00', 420, 0, 'all 420 rows have order_id', NULL),
 ('gx-1b', 'gx', 'expect_column_values_to_be_between(qty)', 'order_lines', 'warning', false,
  NULL, '2026-03-08 02:00', 1300, 3, '3 of 1300 quantities out of range', '[{"line_id": "1"}]'),
 ('gx-1c', 'gx', 'expect_column_values_to_be_unique(line_key)', 'order_lines', 'critical', true,
  NULL, '2026-03-08 02:00', 1300, 0, 'line_key is unique', NULL),
 ('gx-2a', 'gx', 'expect_column_values_to_not_be_null(order_id)', 'orders', 'critical', false,
  NULL, '2026-03-08 03:00', 420, 2, '2 of 420 rows lack order_id', '[{"order_id": null}]'),
 ('gx-2b', 'gx', 'expect_column_values_to_be_between(qty)', 'order_lines', 'warning', true,
  NULL, '2026-03-08 03:00', 1300, 0, 'quantities in range', NULL),
 ('gx-2c', 'gx', 'expect_column_values_to_be_unique(line_key)', 'order_lines', 'critical', true,
  NULL, '2026-03-08 03:00', 1300, 0, 'line_key is unique', NULL),
 ('dqa-1', 'stream', 'duplicate', 'reservations', 'info', false, 'evt-r-17', '2026-03-08 01:12',
  NULL, 1, 'event evt-r-17 was already received on reservations', '{"event_id": "evt-r-17"}'),
 ('dqa-2', 'stream', 'late', 'reservations', 'warning', false, 'evt-r-90', '2026-03-08 01:40',
  NULL, 1, 'event is 2.5 h behind the reservations watermark', '{"event_id": "evt-r-90"}'),
 ('dqa-3', 'stream', 'duplicate', 'reservations', 'info', false, 'evt-r-91', '2026-03-08 02:05',
  NULL, 1, 'event evt-r-91 was already received on reservations', '{"event_id": "evt-r-91"}'),
 ('dqa-4', 'stream', 'orphan', 'shipments', 'warning', false, 'evt-s-5', '2026-03-08 02:30',
  NULL, 1, 'shipment names unknown order SO-9999999', '{"event_id": "evt-s-5"}'),
 ('dqa-5', 'stream', 'stale_feed', 'orders', 'critical', false, NULL, '2026-03-08 03:00',
  NULL, 1, 'orders: no event for 139 h', NULL)
"""
"""Two GX runs over two tables and five in-stream alerts on three feeds."""


def _with_dq_results(landed_run: Path, tmp_path: Path, insert: str | None) -> Path:
    """A copy of the landed file whose data-quality results are just ``insert``'s."""
    copy = tmp_path / "dq.duckdb"
    shutil.copy(landed_run / "allocflow.duckdb", copy)
    with duckdb.connect(str(copy)) as connection:
        connection.execute("DELETE FROM dq_results")
        if insert is not None:
            connection.execute(insert)
    return copy


@pytest.fixture
def checked(landed_run: Path, tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A copy of the landed file whose data-quality results are :data:`_DQ_RESULTS`."""
    copy = _with_dq_results(landed_run, tmp_path, _DQ_RESULTS)
    with duckdb.connect(str(copy), read_only=True) as connection:
        yield connection


@pytest.fixture
def unchecked(landed_run: Path, tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A copy of the landed file without data-quality results."""
    copy = _with_dq_results(landed_run, tmp_path, None)
    with duckdb.connect(str(copy), read_only=True) as connection:
        yield connection


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None) -> object:
    rows = con.execute(sql, params or []).fetchall()
    assert len(rows) == 1
    return rows[0][0]


def _kpis(con: duckdb.DuckDBPyConnection, filters: Filters) -> dict[str, object]:
    frame = queries.overview_kpis(con, filters)
    assert frame.height == 1
    return frame.row(0, named=True)


def _watermark(con: duckdb.DuckDBPyConnection) -> datetime:
    watermark = queries.watermark_of(con)
    assert watermark is not None
    return watermark


# --- overview tiles -------------------------------------------------------------------


def test_unfiltered_rates_are_sums_over_the_aggregates(con: duckdb.DuckDBPyConnection) -> None:
    kpis = _kpis(con, Filters())

    lines = con.execute(
        "SELECT sum(lines_first_full) / sum(lines_decided), "
        "sum(lines_current_full) / sum(lines_active) FROM agg_line_fill"
    ).fetchall()[0]
    orders = con.execute(
        "SELECT sum(orders_first_full) / sum(orders_decided), sum(orders_split) / "
        "sum(orders_active), sum(orders_touchless) / sum(orders_decided) FROM agg_order_fill"
    ).fetchall()[0]
    on_time = _one(con, "SELECT sum(delivered_on_time) / sum(delivered) FROM agg_shipments")
    assert kpis["line_fill_rate_first_pass"] == pytest.approx(lines[0])
    assert kpis["line_fill_rate_current"] == pytest.approx(lines[1])
    assert kpis["order_fill_rate_first_pass"] == pytest.approx(orders[0])
    assert kpis["split_rate"] == pytest.approx(orders[1])
    assert kpis["touchless_rate"] == pytest.approx(orders[2])
    assert kpis["on_time_delivery_rate"] == pytest.approx(on_time)
    assert kpis["lines_decided"] == _one(con, "SELECT count(*) FROM order_lines") == 1300
    assert 0 < kpis["line_fill_rate_first_pass"] < 1  # type: ignore[operator]


def test_region_filter_equals_the_view_filtered(con: duckdb.DuckDBPyConnection) -> None:
    overall = _kpis(con, Filters())["line_fill_rate_first_pass"]
    regions = [r for (r,) in con.execute("SELECT DISTINCT region FROM kpi_fill_rate").fetchall()]
    shown = {}
    for region in regions:
        shown[region] = _kpis(con, Filters(regions=(region,)))["line_fill_rate_first_pass"]
        expected = _one(
            con,
            "SELECT sum(lines_first_full) / sum(lines_decided) FROM kpi_fill_rate "
            "WHERE period = 'day' AND region = ?",
            [region],
        )
        assert shown[region] == pytest.approx(expected)
    assert len(regions) >= 3
    assert any(rate != pytest.approx(overall) for rate in shown.values())


def test_several_dimensions_filter_together(con: duckdb.DuckDBPyConnection) -> None:
    filters = Filters(regions=("west", "south"), channels=("edi",), tiers=("gold", "silver"))

    kpis = _kpis(con, filters)

    expected = con.execute(
        """SELECT sum(orders_first_full) / sum(orders_decided), sum(orders_split) /
                  sum(orders_active)
           FROM agg_order_fill WHERE region IN ('west', 'south') AND channel = 'edi'
             AND customer_tier IN ('gold', 'silver')"""
    ).fetchall()[0]
    assert kpis["order_fill_rate_first_pass"] == pytest.approx(expected[0])
    assert kpis["split_rate"] == pytest.approx(expected[1])
    assert kpis["orders_decided"] < _kpis(con, Filters())["orders_decided"]  # type: ignore[operator]


def test_cycle_percentiles_equal_the_views_day_rows(con: duckdb.DuckDBPyConnection) -> None:
    days = _one(con, "SELECT count(DISTINCT date_trunc('day', hour)) FROM hist_cycle_time")
    assert days == 1, "the check below needs the data to span one day"
    rows = con.execute(
        """SELECT region, channel, customer_tier, stage, period_start, orders, p50_seconds,
                  p90_seconds
           FROM kpi_cycle_time WHERE period = 'day' ORDER BY ALL"""
    ).fetchall()

    checked = 0
    for region, channel, tier, stage, day, orders, p50, p90 in rows:
        filters = Filters(regions=(region,), channels=(channel,), tiers=(tier,))
        trend = queries.cycle_time_trend(con, filters, "day").filter(stage=stage)
        assert trend.rows() == [(day, stage, orders, p50, p90)]
        if stage == "placed_to_delivered":
            kpis = _kpis(con, filters)
            assert (kpis["cycle_p50_seconds"], kpis["cycle_p90_seconds"]) == (p50, p90)
            checked += 1
    assert checked >= 20


def test_cycle_time_over_everything_uses_the_views_rule(con: duckdb.DuckDBPyConnection) -> None:
    kpis = _kpis(con, Filters())

    buckets = con.execute(
        """SELECT bucket, sum(orders) FROM hist_cycle_time WHERE stage = 'placed_to_delivered'
           GROUP BY bucket ORDER BY bucket"""
    ).fetchall()
    total = sum(n for _, n in buckets)
    running, p50_bucket = 0, None
    for bucket, n in buckets:
        running += n
        if running >= 0.5 * total:
            p50_bucket = bucket
            break
    assert p50_bucket is not None
    assert kpis["cycle_p50_seconds"] == pytest.approx(2 ** ((p50_bucket + 1) / 16))
    assert kpis["cycle_orders"] == total
    assert kpis["cycle_p90_seconds"] > kpis["cycle_p50_seconds"]  # type: ignore[operator]


def test_node_filter_applies_to_shipment_kpis_only(con: duckdb.DuckDBPyConnection) -> None:
    everything = _kpis(con, Filters())
    atlanta = _kpis(con, Filters(nodes=("DC-ATL",)))

    expected = con.execute(
        "SELECT sum(delivered_on_time) / sum(delivered), sum(shipments) FROM agg_shipments "
        "WHERE node_id = 'DC-ATL'"
    ).fetchall()[0]
    assert atlanta["on_time_delivery_rate"] == pytest.approx(expected[0])
    assert atlanta["shipments"] == expected[1]
    assert atlanta["shipments"] < everything["shipments"]  # type: ignore[operator]
    assert atlanta["line_fill_rate_first_pass"] == everything["line_fill_rate_first_pass"]


def test_time_window_is_anchored_at_the_watermark(con: duckdb.DuckDBPyConnection) -> None:
    watermark = _watermark(con)
    week = Selection(time_range="7d").resolve(watermark)
    day = Selection(time_range="24h").resolve(watermark)
    first_hour = _one(con, "SELECT min(hour) FROM agg_line_fill")

    assert week.end == watermark.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    assert _kpis(con, week) == _kpis(con, Filters())  # the run's events all lie in the last week
    empty = _kpis(con, day)  # orders were placed days before the newest landed event
    assert empty["lines_decided"] == 0
    assert empty["line_fill_rate_first_pass"] is None
    previous = week.previous()
    assert previous is not None
    assert _kpis(con, previous)["orders_decided"] == 0
    assert isinstance(first_hour, datetime)
    one_hour = Filters(start=first_hour, end=first_hour + timedelta(hours=1))
    assert _kpis(con, one_hour)["lines_decided"] == _one(
        con, "SELECT sum(lines_decided) FROM agg_line_fill WHERE hour = ?", [first_hour]
    )


def test_fill_and_split_trends_sum_the_hourly_view_rows(con: duckdb.DuckDBPyConnection) -> None:
    fill = queries.fill_rate_trend(con, Filters(), "hour")
    split = queries.split_rate_trend(con, Filters(), "hour")

    expected_fill = con.execute(
        """SELECT period_start, sum(lines_first_full) / sum(lines_decided),
                  sum(orders_current_full) / sum(orders_active)
           FROM kpi_fill_rate WHERE period = 'hour' GROUP BY 1 ORDER BY 1"""
    ).fetchall()
    expected_split = con.execute(
        """SELECT period_start, sum(orders_split) / sum(orders_active)
           FROM kpi_split_rate WHERE period = 'hour' GROUP BY 1 ORDER BY 1"""
    ).fetchall()
    got_fill = fill.select("period_start", "line_fill_rate_first_pass", "order_fill_rate_current")
    assert [r[0] for r in got_fill.rows()] == [r[0] for r in expected_fill]
    for got, expected in zip(got_fill.rows(), expected_fill, strict=True):
        assert got[1:] == pytest.approx(expected[1:])
    assert split["period_start"].to_list() == [r[0] for r in expected_split]
    assert split["split_rate"].to_list() == pytest.approx([r[1] for r in expected_split])
    daily = queries.split_rate_trend(con, Filters(), "day")
    assert daily.height == 1
    assert daily["orders_active"].sum() == split["orders_active"].sum()


# --- exceptions -----------------------------------------------------------------------


def test_open_exceptions_equal_the_aggregate(con: duckdb.DuckDBPyConnection) -> None:
    now = queries.open_exceptions(con, Filters())["open_exceptions"].item()

    assert now == _one(
        con,
        "SELECT sum(opened) - sum(closed) FROM agg_exceptions WHERE reason_code <> 'DATA_QUALITY'",
    )
    assert queries.exception_aging(con, Filters()).is_empty() == (now == 0)


def test_open_exceptions_as_of_a_past_moment(landed: duckdb.DuckDBPyConnection) -> None:
    spans = landed.execute("SELECT opened_at, closed_at FROM exceptions").fetchall()
    moment = datetime(2026, 3, 2, 7, 30)

    expected = sum(
        1 for opened, closed in spans if opened <= moment and (closed is None or closed > moment)
    )
    counted = queries.open_exceptions(landed, Filters(), as_of=moment)["open_exceptions"].item()
    assert counted == expected > 0
    earliest = min(opened for opened, _ in spans) - timedelta(seconds=1)
    assert queries.open_exceptions(landed, Filters(), as_of=earliest).item() == 0


def test_aging_of_reopened_exceptions_equals_the_view(
    reopened: duckdb.DuckDBPyConnection,
) -> None:
    aging = queries.exception_aging(reopened, Filters())

    view = reopened.execute(
        """SELECT reason_code, age_bucket, age_bucket_order, sum(open_exceptions),
                  max(oldest_hours)
           FROM kpi_exception_aging GROUP BY ALL ORDER BY age_bucket_order, reason_code"""
    ).fetchall()
    assert aging.rows() == view
    still_open = _one(
        reopened,
        "SELECT count(*) FROM exceptions WHERE closed_at IS NULL AND reason_code <> 'DATA_QUALITY'",
    )
    assert aging["open_exceptions"].sum() == still_open
    assert queries.open_exceptions(reopened, Filters()).item() == still_open
    assert isinstance(still_open, int)
    assert still_open >= 10


def test_exception_filters_follow_the_order(reopened: duckdb.DuckDBPyConnection) -> None:
    by_region = dict(
        reopened.execute(
            """SELECT o.region, count(*) FROM exceptions e JOIN orders o USING (order_id)
               WHERE e.closed_at IS NULL GROUP BY 1"""
        ).fetchall()
    )
    assert any(region is not None for region in by_region)
    for region, expected in by_region.items():
        if region is None:  # orders known only from shipments: no region to filter on
            continue
        filters = Filters(regions=(region,))
        assert queries.open_exceptions(reopened, filters).item() == expected
        assert queries.exceptions_queue(reopened, filters, QueueFilters()).height == expected
        assert queries.exception_aging(reopened, filters)["open_exceptions"].sum() == expected


def test_queue_lists_open_exceptions_oldest_first_with_their_age(
    reopened: duckdb.DuckDBPyConnection,
) -> None:
    watermark = _watermark(reopened)

    queue = queries.exceptions_queue(reopened, Filters(), QueueFilters())

    assert queue.height == _one(reopened, "SELECT count(*) FROM exceptions WHERE closed_at IS NULL")
    assert set(queue["status"]) == {"open"}
    assert queue["opened_at"].is_sorted()
    for opened, age in queue.select("opened_at", "age_hours").rows():
        assert age == pytest.approx((watermark - opened).total_seconds() / 3600, abs=0.005)
    reason = queue["reason_code"][0]
    narrowed = queries.exceptions_queue(reopened, Filters(), QueueFilters(reasons=(reason,)))
    assert set(narrowed["reason_code"]) == {reason}
    assert narrowed.height == (queue["reason_code"] == reason).sum()
    approvers = queries.exceptions_queue(reopened, Filters(), QueueFilters(owners=("approver",)))
    assert set(approvers["owner_role"]) <= {"approver"}


def test_queue_with_closed_exceptions_lists_every_exception_of_the_week(
    con: duckdb.DuckDBPyConnection, landed: duckdb.DuckDBPyConnection
) -> None:
    queue = queries.exceptions_queue(con, Filters(), QueueFilters(include_closed=True))

    assert queue.height == _one(landed, "SELECT count(*) FROM exceptions")
    closed = queue.filter(status="closed")
    hours = [
        (c - o) // timedelta(microseconds=1) / 3_600_000_000
        for o, c in closed.select("opened_at", "closed_at").rows()
    ]
    assert closed["age_hours"].to_list() == hours
    warnings = queries.exceptions_queue(
        con, Filters(), QueueFilters(severities=("warning",), include_closed=True)
    )
    assert warnings.height == _one(
        landed, "SELECT count(*) FROM exceptions WHERE severity = 'warning'"
    )


# --- one order ------------------------------------------------------------------------


def _order_with_shipments_and_exceptions(landed: duckdb.DuckDBPyConnection) -> str:
    order_id = _one(
        landed,
        """SELECT order_id FROM orders WHERE exceptions_opened > 0 AND shipments > 1
           ORDER BY order_id LIMIT 1""",
    )
    assert isinstance(order_id, str)
    return order_id


def test_order_timeline_holds_every_event_once(
    con: duckdb.DuckDBPyConnection, landed: duckdb.DuckDBPyConnection
) -> None:
    order_id = _order_with_shipments_and_exceptions(landed)

    timeline = queries.order_timeline(con, order_id)

    counts = dict(timeline.group_by("source").len().rows())
    assert counts["decision"] == _one(
        landed, "SELECT count(*) FROM allocation_decisions WHERE order_id = $1", [order_id]
    )
    assert counts["exception opened"] == _one(
        landed, "SELECT count(*) FROM exceptions WHERE order_id = $1", [order_id]
    )
    assert counts["carrier event"] == _one(
        landed,
        """SELECT count(*) FROM carrier_events
           WHERE shipment_id IN (SELECT shipment_id FROM shipments WHERE order_id = $1)""",
        [order_id],
    )
    assert counts["input event"] == _one(
        landed,
        """SELECT count(*) FROM input_events
           WHERE (order_id = $1
                  OR shipment_id IN (SELECT shipment_id FROM shipments WHERE order_id = $1))
             AND topic <> 'carrier-events'""",
        [order_id],
    )
    assert timeline["occurred_at"].is_sorted()
    assert timeline.row(0, named=True)["event"] == "order.placed"


def test_order_decisions_show_rule_outcome_explanation_and_candidates(
    con: duckdb.DuckDBPyConnection, landed: duckdb.DuckDBPyConnection
) -> None:
    order_id = _order_with_shipments_and_exceptions(landed)

    decisions = queries.order_decisions(con, order_id)

    expected = landed.execute(
        """SELECT decision_id, rule, outcome, explanation,
                  list_transform(candidates, lambda c: c.node_id)
           FROM allocation_decisions WHERE order_id = $1""",
        [order_id],
    ).fetchall()
    assert len(expected) == decisions.height > 0
    shown = {row["decision_id"]: row for row in decisions.iter_rows(named=True)}
    for decision_id, rule, outcome, explanation, nodes in expected:
        row = shown[decision_id]
        assert (row["rule"], row["outcome"], row["explanation"]) == (rule, outcome, explanation)
        assert all(node in row["candidates"] for node in nodes)
    summary = queries.order_summary(con, order_id)
    assert summary["order_id"].to_list() == [order_id]
    shipments = queries.order_shipments(con, order_id)
    assert shipments.height == _one(
        landed, "SELECT count(*) FROM shipments WHERE order_id = $1", [order_id]
    )


# --- carriers -------------------------------------------------------------------------


@pytest.mark.parametrize("by", ["carrier_id", "lane"])
def test_on_time_rates_equal_the_view(con: duckdb.DuckDBPyConnection, by: str) -> None:
    rates = queries.on_time_by(con, Filters(), by)  # type: ignore[arg-type]

    sql = f"""SELECT {by}, sum(shipments), sum(dispatched_on_time) / sum(dispatched),
                     sum(delivered_on_time) / sum(delivered), sum(delivered_otif) / sum(delivered)
              FROM kpi_on_time WHERE period = 'day' GROUP BY 1 ORDER BY 1"""
    expected = con.execute(sql).fetchall()
    got = rates.select(
        by, "shipments", "on_time_dispatch_rate", "on_time_delivery_rate", "otif_rate"
    ).rows()
    assert [row[:2] for row in got] == [row[:2] for row in expected]
    for row, want in zip(got, expected, strict=True):
        assert row[2:] == pytest.approx(want[2:])


def test_on_time_by_node_and_unknown_dimension(con: duckdb.DuckDBPyConnection) -> None:
    rates = queries.on_time_by(con, Filters(nodes=("DC-NJ",)), "carrier_id")

    assert rates["shipments"].sum() == _one(
        con, "SELECT sum(shipments) FROM agg_shipments WHERE node_id = 'DC-NJ'"
    )
    with pytest.raises(ValueError, match="not 'node_id'"):
        queries.on_time_by(con, Filters(), "node_id")  # type: ignore[arg-type]


_TRANSIT_HOURS = (
    "date_diff('millisecond', dispatched_at, coalesce(delivered_at, carrier_delivered_at)) "
    "/ 3600000.0"
)


@pytest.mark.parametrize(
    ("filters", "lane", "where"),
    [
        (Filters(), None, "TRUE"),
        (Filters(nodes=("DC-NJ",)), None, "node_id = 'DC-NJ'"),
        (Filters(), "DC-NJ>northeast", "lane = 'DC-NJ>northeast'"),
    ],
    ids=["all", "node", "lane"],
)
def test_transit_distribution_holds_every_delivered_shipment(
    con: duckdb.DuckDBPyConnection,
    landed: duckdb.DuckDBPyConnection,
    filters: Filters,
    lane: str | None,
    where: str,
) -> None:
    distribution = queries.transit_distribution(con, filters, lane)

    expected = landed.execute(
        f"""SELECT carrier_id, count(*), min({_TRANSIT_HOURS}), max({_TRANSIT_HOURS})
            FROM shipments WHERE created_at IS NOT NULL AND {_TRANSIT_HOURS} IS NOT NULL
              AND {where} GROUP BY 1 ORDER BY 1"""
    ).fetchall()
    assert expected
    for carrier, shipments, shortest, longest in expected:
        bins = distribution.filter(distribution["carrier_id"] == carrier)
        assert bins["shipments"].sum() == shipments
        assert bins["share"].sum() == pytest.approx(1.0)
        assert bins["lower_hours"].min() < shortest
        assert longest <= bins["upper_hours"].max()
        assert (bins["lower_hours"][1:] >= bins["upper_hours"][:-1]).all()
    assert distribution["carrier_id"].unique().sort().to_list() == [e[0] for e in expected]


def test_transit_percentiles_equal_the_view_and_honour_the_window(
    con: duckdb.DuckDBPyConnection,
) -> None:
    everything = queries.transit_percentiles(con, Filters())
    view = con.execute(
        """SELECT carrier_id, sum(shipments) FROM kpi_transit_time WHERE period = 'day'
           GROUP BY 1 ORDER BY 1"""
    ).fetchall()
    assert everything.select("carrier_id", "shipments").rows() == view
    assert (everything["p50_seconds"] <= everything["p90_seconds"]).all()

    day = _one(con, "SELECT min(period_start) FROM kpi_transit_time")
    assert isinstance(day, datetime)
    one_day = Filters(start=day, end=day + timedelta(days=1))
    single = queries.transit_percentiles(con, one_day, "DC-NJ>northeast")
    rows = con.execute(
        """SELECT carrier_id, shipments, p50_hours * 3600, p90_hours * 3600 FROM kpi_transit_time
           WHERE period = 'day' AND period_start = ? AND lane = 'DC-NJ>northeast'
           ORDER BY 1""",
        [day],
    ).fetchall()
    assert rows
    assert [row[:2] for row in single.rows()] == [row[:2] for row in rows]
    for got, want in zip(single.rows(), rows, strict=True):
        assert got[2:] == pytest.approx(want[2:])


def test_open_route_alerts_agree_on_snapshot_and_landed_file(
    landed_run: Path, landed: duckdb.DuckDBPyConnection
) -> None:
    snapshot = landed_run / "allocflow.duckdb.snapshot"
    with duckdb.connect(str(snapshot), read_only=True) as connection:
        shown = queries.open_route_alerts(connection, Filters())
        counts = queries.open_route_alert_counts(connection, Filters())
    assert shown.equals(queries.open_route_alerts(landed, Filters()))
    assert counts["open_alerts"].sum() == shown.height


# --- data quality ---------------------------------------------------------------------


def test_dead_letter_counts_cover_every_dead_letter(
    con: duckdb.DuckDBPyConnection, landed: duckdb.DuckDBPyConnection
) -> None:
    counts = queries.dead_letter_counts(con)

    total = _one(landed, "SELECT count(*) FROM dead_letters")
    assert counts["dead_letters"].sum() == total
    assert isinstance(total, int)
    assert total > 0
    by_topic = dict(
        landed.execute("SELECT source_topic, count(*) FROM dead_letters GROUP BY 1").fetchall()
    )
    for topic, expected in by_topic.items():
        assert counts.filter(source_topic=topic)["dead_letters"].sum() == expected
    assert counts["dead_letters"].is_sorted(descending=True)


def test_newest_dead_letters_preview_their_raw_bytes(con: duckdb.DuckDBPyConnection) -> None:
    newest = queries.newest_dead_letters(con, limit=25)

    raw = dict(con.execute("SELECT dead_letter_id, raw FROM dead_letters").fetchall())
    assert newest.height == 25
    for dead_letter_id, preview in newest.select("dead_letter_id", "raw_preview").rows():
        assert preview == queries.raw_preview(raw[dead_letter_id])
        assert preview.startswith(raw[dead_letter_id][:20].decode("utf-8", errors="replace"))


def test_raw_preview_replaces_bad_bytes_and_shortens() -> None:
    assert queries.raw_preview(b"\xff\xfeok") == "\ufffd\ufffdok"
    long = queries.raw_preview(b"x" * 1000)
    assert long.endswith("…")
    assert len(long) < 300


def test_dq_counts_equal_the_results(
    con: duckdb.DuckDBPyConnection, landed: duckdb.DuckDBPyConnection
) -> None:
    counts = queries.dq_result_counts(con)

    assert counts["results"].sum() == _one(landed, "SELECT count(*) FROM dq_results")
    assert counts["failed"].sum() == _one(
        landed, "SELECT count(*) FROM dq_results WHERE NOT success"
    )
    assert (counts["passed"] + counts["failed"] == counts["results"]).all()


def test_without_dq_results_the_checks_are_empty(unchecked: duckdb.DuckDBPyConnection) -> None:
    assert queries.gx_pass_rates(unchecked).is_empty()
    assert queries.stream_alerts_per_hour(unchecked).is_empty()
    assert queries.open_alerts(unchecked).is_empty()
    flagged = queries.flagged_share(unchecked)
    assert flagged["alerts"].sum() == 0
    assert flagged["events"].sum() == _one(unchecked, "SELECT sum(events) FROM feed_freshness")


def test_gx_pass_rate_per_table_and_run(checked: duckdb.DuckDBPyConnection) -> None:
    rates = queries.gx_pass_rates(checked)

    assert rates.select("detected_at", "feed", "expectations", "passed").rows() == [
        (datetime(2026, 3, 8, 2), "order_lines", 2, 1),
        (datetime(2026, 3, 8, 2), "orders", 1, 1),
        (datetime(2026, 3, 8, 3), "order_lines", 2, 2),
        (datetime(2026, 3, 8, 3), "orders", 1, 0),
    ]
    assert rates["pass_rate"].to_list() == [0.5, 1.0, 1.0, 0.0]


def test_stream_alerts_per_feed_check_and_hour(checked: duckdb.DuckDBPyConnection) -> None:
    alerts = queries.stream_alerts_per_hour(checked)

    assert alerts.rows() == [
        (datetime(2026, 3, 8, 1), "reservations", "duplicate", 1),
        (datetime(2026, 3, 8, 1), "reservations", "late", 1),
        (datetime(2026, 3, 8, 2), "reservations", "duplicate", 1),
        (datetime(2026, 3, 8, 2), "shipments", "orphan", 1),
        (datetime(2026, 3, 8, 3), "orders", "stale_feed", 1),
    ]


def test_flagged_share_is_alerts_over_the_feeds_events(
    checked: duckdb.DuckDBPyConnection, landed: duckdb.DuckDBPyConnection
) -> None:
    flagged = queries.flagged_share(checked)

    events = dict(landed.execute("SELECT topic, count(*) FROM input_events GROUP BY 1").fetchall())
    assert dict(flagged.select("feed", "events").rows()) == events
    assert dict(flagged.select("feed", "alerts").rows()) == {
        "carrier-events": 0,
        "orders": 1,
        "reservations": 3,
        "shipments": 1,
    }
    for feed, share in flagged.select("feed", "flagged_share").rows():
        alerts = {"orders": 1, "reservations": 3, "shipments": 1}.get(feed, 0)
        assert share == pytest.approx(alerts / events[feed])


def test_open_alerts_are_the_latest_runs_failures_then_newest_alerts(
    checked: duckdb.DuckDBPyConnection,
) -> None:
    alerts = queries.open_alerts(checked, limit=3)

    assert alerts["result_id"].to_list() == ["gx-2a", "dqa-5", "dqa-4", "dqa-3"]
    first = alerts.row(0, named=True)
    assert (first["origin"], first["severity"], first["feed"], first["unexpected_count"]) == (
        "gx",
        "critical",
        "orders",
        2,
    )
    assert first["sample"] == '[{"order_id": null}]'
    assert alerts.row(2, named=True)["event_id"] == "evt-s-5"
    assert queries.open_alerts(checked)["result_id"].to_list()[1:] == [
        "dqa-5",
        "dqa-4",
        "dqa-3",
        "dqa-2",
        "dqa-1",
    ]


DEFAULT_LIMITS = data.limits_of(GateSettings())


def test_feed_freshness_judges_each_feed_and_node_as_the_gate_does(
    con: duckdb.DuckDBPyConnection,
) -> None:
    freshness = queries.feed_freshness(con, DEFAULT_LIMITS)

    last_by_source = {
        ("feed", feed): last
        for feed, last in con.execute(
            "SELECT feed, max(last_event_time) FROM feed_freshness GROUP BY feed"
        ).fetchall()
    } | {
        ("node", node): last
        for node, last in con.execute(
            "SELECT node_id, max(last_event_time) FROM feed_freshness "
            "WHERE node_id IS NOT NULL GROUP BY node_id"
        ).fetchall()
    }
    watermark = _one(con, "SELECT max(watermark) FROM feed_freshness")
    assert {
        (r["kind"], r["name"]): r["last_event_time"] for r in freshness.iter_rows(named=True)
    } == (last_by_source)
    for row in freshness.iter_rows(named=True):
        limit = DEFAULT_LIMITS.limit(row["kind"], row["name"])
        assert row["stale_after_hours"] == limit
        assert row["hours_behind_watermark"] == (watermark - row["last_event_time"]) / timedelta(
            hours=1
        )
        assert row["active_hours"] == "always"
        assert row["silent_active_hours"] == row["hours_behind_watermark"]
        assert row["stale"] == (row["hours_behind_watermark"] > limit)
    assert (DEFAULT_LIMITS.node_hours, DEFAULT_LIMITS.feed_hours) == (8, 24)
    assert DEFAULT_LIMITS.by_feed_hours == (("orders", 72),)
    # The OMS placed its last order 132 h before the watermark, but the ERP still places
    # and releases credit holds: the orders feed is alive, and the gate raised no stale
    # alert on this stream either (the table used to show the OMS source stale)
    assert set(freshness["state"]) == {"fresh"}


_FRESHNESS = """
CREATE TABLE feed_freshness AS
SELECT feed, source, node_id, 10 AS events, CAST(last AS TIMESTAMP) AS last_event_time,
       TIMESTAMP '2026-03-09 07:00' AS watermark
FROM (VALUES ('orders', 'erp', NULL, '2026-03-06 17:30'),
             ('orders', 'oms', NULL, '2026-03-06 12:00'),
             ('reservations', 'wms', 'DC-NJ', '2026-03-06 11:00'),
             ('shipments', 'tms', 'DC-ATL', '2026-03-06 17:00'),
             ('shipments', 'tms', 'DC-NJ', '2026-03-08 11:00'),
             ('shipments', 'tms', NULL, '2026-03-09 06:30')) AS f(feed, source, node_id, last)
"""
"""Sources seen at Monday 08:00 in Berlin (07:00 UTC): orders last heard on Friday at
18:30 (17:30 UTC), stock counts at 12:00, DC-NJ on Sunday, DC-ATL on Friday at 18:00."""


def test_feed_freshness_counts_silence_in_active_hours_only() -> None:
    office = ActivityCalendar.parse("Mon-Fri 07:00-19:00 Europe/Berlin")
    limits = queries.FreshnessLimits(
        4.0,
        (),
        8.0,
        feed_calendars=(("*", office),),
        node_calendars=(("DC-ATL", office),),
    )
    with duckdb.connect() as memory:
        memory.execute(_FRESHNESS)
        freshness = queries.feed_freshness(memory, limits)

    judged = {
        (r["kind"], r["name"]): (r["state"], r["silent_active_hours"], r["active_hours"])
        for r in freshness.iter_rows(named=True)
    }
    assert judged == {
        # Friday 18:30-19:00 and Monday 07:00-08:00: 1.5 active hours of 61.5
        ("feed", "orders"): ("quiet (outside active hours)", 1.5, str(office)),
        # Friday 12:00-19:00 and Monday 07:00-08:00
        ("feed", "reservations"): ("stale", 8.0, str(office)),
        ("feed", "shipments"): ("fresh", 0.5, str(office)),
        ("node", "DC-NJ"): ("stale", 20.0, "always"),  # named by the shipments on Sunday
        ("node", "DC-ATL"): ("quiet (outside active hours)", 2.0, str(office)),
    }
    assert list(freshness["name"]) == ["reservations", "DC-NJ", "DC-ATL", "orders", "shipments"]
    assert freshness.filter(name="DC-NJ")["feed"].item() == "shipments"
    assert list(freshness["stale"]) == [True, True, False, False, False]


# --- dead-letter browser --------------------------------------------------------------


def test_dead_letters_filter_by_topic_and_reason(con: duckdb.DuckDBPyConnection) -> None:
    some = queries.newest_dead_letters(con, ("orders", "shipments"), ("MALFORMED_JSON",))

    expected = _one(
        con,
        "SELECT count(*) FROM dead_letters WHERE source_topic IN ('orders', 'shipments') "
        "AND reason_code = 'MALFORMED_JSON'",
    )
    assert some.height == expected > 0
    assert set(some["source_topic"]) == {"orders", "shipments"}
    assert set(some["reason_code"]) == {"MALFORMED_JSON"}
    assert queries.newest_dead_letters(con, reasons=("no such reason",)).is_empty()


def test_dead_letter_errors_and_raw(con: duckdb.DuckDBPyConnection) -> None:
    dead_letter_id, errors, raw = con.execute(
        "SELECT dead_letter_id, errors, raw FROM dead_letters "
        "WHERE reason_code = 'SCHEMA_VIOLATION' ORDER BY len(errors) DESC, dead_letter_id LIMIT 1"
    ).fetchall()[0]

    shown = queries.dead_letter_errors(con, dead_letter_id)
    assert shown.height == len(errors) >= 1
    assert shown.rows() == [(e["field"], e["message"], e["value"]) for e in errors]
    assert queries.dead_letter_raw(con, dead_letter_id) == raw
    assert queries.dead_letter_raw(con, "dlq-missing") is None
    assert queries.dead_letter_errors(con, "dlq-missing").is_empty()


def test_raw_hex_shows_offsets_and_cuts() -> None:
    assert queries.raw_hex(b"\x00\xff") == "0000  00 ff"
    lines = queries.raw_hex(bytes(range(100))).splitlines()
    assert lines[0] == "0000  " + " ".join(f"{b:02x}" for b in range(16))
    assert lines[-1].startswith("0030  30 31")
    assert lines[-1].endswith(" …")
    assert len(lines) == 4


# --- freshness, options ---------------------------------------------------------------


def test_status_tells_snapshot_from_landed_file(landed_run: Path) -> None:
    db = landed_run / "allocflow.duckdb"
    for path, published in ((db.with_name(db.name + ".snapshot"), True), (db, False)):
        with duckdb.connect(str(path), read_only=True) as connection:
            row = queries.status(connection).row(0, named=True)
            status = connection.execute(
                "SELECT watermark, landed_at FROM landing_status"
            ).fetchall()
        assert (row["watermark"], row["landed_at"]) == status[0]
        assert (row["published_at"] is not None) == published
        assert row["first_hour"] <= row["last_hour"]


def test_filter_options_are_the_landed_values(
    con: duckdb.DuckDBPyConnection, landed: duckdb.DuckDBPyConnection
) -> None:
    options = queries.dimension_values(con)
    fields = queries.exception_values(con)

    for dimension, source in (
        ("region", "orders"),
        ("channel", "orders"),
        ("customer_tier", "orders"),
        ("node_id", "shipments"),
    ):
        sql = f"SELECT DISTINCT {dimension} FROM {source} WHERE {dimension} IS NOT NULL ORDER BY 1"
        expected = [v for (v,) in landed.execute(sql).fetchall()]
        assert options.filter(dimension=dimension)["value"].to_list() == expected
    reasons = landed.execute("SELECT DISTINCT reason_code FROM exceptions ORDER BY 1").fetchall()
    assert fields.filter(field="reason_code")["value"].to_list() == [v for (v,) in reasons]


# --- pure helpers ---------------------------------------------------------------------


def test_time_windows() -> None:
    watermark = datetime(2026, 3, 8, 3, 3, 54)

    assert queries.time_window("24h", watermark) == (
        datetime(2026, 3, 7, 4),
        datetime(2026, 3, 8, 4),
    )
    assert queries.time_window("7d", watermark) == (
        datetime(2026, 3, 1, 4),
        datetime(2026, 3, 8, 4),
    )
    assert queries.time_window("all", watermark) == (None, None)
    assert queries.time_window("7d", None) == (None, None)
    assert queries.time_window("dates", watermark, (date(2026, 3, 2), date(2026, 3, 2))) == (
        datetime(2026, 3, 2),
        datetime(2026, 3, 3),
    )
    assert queries.time_window("dates", watermark) == (None, None)


def test_previous_window_and_exceptions_baseline() -> None:
    watermark = datetime(2026, 3, 8, 3, 3)
    day = Selection(time_range="24h").resolve(watermark)
    past = Selection(time_range="dates", dates=(date(2026, 3, 2), date(2026, 3, 3))).resolve(
        watermark
    )

    assert day.previous() == Filters(start=datetime(2026, 3, 6, 4), end=datetime(2026, 3, 7, 4))
    assert Filters().previous() is None
    assert queries.exceptions_baseline(day, watermark) == day.start
    assert queries.exceptions_baseline(past, watermark) is None
    assert queries.exceptions_baseline(Filters(), watermark) is None


def test_trend_grain_follows_the_span_of_the_data_shown() -> None:
    first, last = datetime(2026, 1, 1), datetime(2026, 3, 1)

    assert queries.trend_grain(Filters(), first, last) == "day"
    week = Filters(start=datetime(2026, 2, 20), end=datetime(2026, 2, 27))
    assert queries.trend_grain(week, first, last) == "hour"
    assert queries.trend_grain(Filters(), None, None) == "hour"


def test_dashboard_db_comes_from_argv_then_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(data.DB_ENV, str(tmp_path / "env.duckdb"))

    assert data.dashboard_db(["--db", "x.duckdb"]) == Path("x.duckdb")
    assert data.dashboard_db(["--dbx", "y"]) == tmp_path / "env.duckdb"
    monkeypatch.delenv(data.DB_ENV)
    assert data.dashboard_db([]) is None


def test_source_is_the_snapshot_when_published(landed_run: Path, tmp_path: Path) -> None:
    db = landed_run / "allocflow.duckdb"
    alone = tmp_path / "alone.duckdb"
    shutil.copy(db, alone)

    assert data.source_of(db) == db.with_name(db.name + ".snapshot")
    assert data.source_of(alone) == alone
    with data.read_only(alone) as (connection, source):
        assert source == alone
        assert queries.status(connection)["published_at"].item() is None
    with (
        pytest.raises(
            data.WaitingForDataError, match=r"Waiting for the first snapshot: neither .* nor "
        ),
        data.read_only(tmp_path / "missing.duckdb"),
    ):
        pass
