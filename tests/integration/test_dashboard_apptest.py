"""Every dashboard page, run headless with Streamlit's AppTest on the landed run.

The app takes its database from ``--db`` on its command line, as ``streamlit run
app.py -- --db PATH`` passes it; these tests set ``sys.argv`` the same way (AppTest
runs the script in this process). Without ``--db`` it falls back to the
``ALLOCFLOW_DASHBOARD_DB`` environment variable, tested here too. Fragment timers do
not fire under AppTest: each ``run()`` is one refresh. The data cache is global to the
process, so every test starts with an empty one.
"""

import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import polars as pl
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from allocflow.connectors.landing.records import LandingRecord
from allocflow.connectors.landing.snapshot import publish_snapshot, snapshot_path
from allocflow.connectors.landing.writer import DuckDBWriter
from allocflow.dashboards import data, queries, ui
from allocflow.dashboards.data import DB_ENV
from allocflow.dashboards.queries import Filters, Selection
from allocflow.dashboards.server import APP_PATH
from allocflow.models.route_alerts import RouteAlert, RouteAlertKind
from allocflow.models.topics import OutputTopic
from allocflow.models.vocabulary import Severity

pytestmark = pytest.mark.integration

_TIMEOUT_S = 60
_HOLD_LOCK = """
import sys, time, duckdb
connection = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(120)
"""


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    st.cache_data.clear()
    yield
    st.cache_data.clear()


@pytest.fixture
def db(landed_run: Path) -> Path:
    return landed_run / "allocflow.duckdb"


@pytest.fixture
def reopened_db(landed_run: Path, tmp_path: Path) -> Path:
    """A published snapshot alone (no landed file) whose first ten exceptions are open."""
    db = tmp_path / "reopened.duckdb"
    snapshot = db.with_name(db.name + ".snapshot")
    shutil.copy(landed_run / "allocflow.duckdb.snapshot", snapshot)
    with duckdb.connect(str(snapshot)) as connection:
        connection.execute(
            """UPDATE exceptions SET closed_at = NULL, resolution = NULL
               WHERE exception_id IN (SELECT exception_id FROM exceptions
                                      ORDER BY opened_at, exception_id LIMIT 10)"""
        )
    return db


_DQ_RESULTS = """
INSERT INTO dq_results (result_id, origin, check_name, feed, severity, success, event_id,
                        detected_at, element_count, unexpected_count, detail, sample)
VALUES
 ('gx-1a', 'gx', 'expect_column_values_to_not_be_null(order_id)', 'orders', 'critical', true,
  NULL, '2026-03-08 02:00', 420, 0, 'all 420 rows have order_id', NULL),
 ('gx-2a', 'gx', 'expect_column_values_to_not_be_null(order_id)', 'orders', 'critical', true,
  NULL, '2026-03-08 03:00', 420, 0, 'all 420 rows have order_id', NULL),
 ('gx-2b', 'gx', 'expect_column_values_to_be_between(qty)', 'order_lines', 'warning', false,
  NULL, '2026-03-08 03:00', 1300, 3, '3 of 1300 quantities out of range', '[{"line_id": "1"}]'),
 ('dqa-1', 'stream', 'duplicate', 'reservations', 'info', false, 'evt-r-17', '2026-03-08 01:12',
  NULL, 1, 'event evt-r-17 was already received on reservations', '{"event_id": "evt-r-17"}'),
 ('dqa-2', 'stream', 'late', 'reservations', 'warning', false, 'evt-r-91', '2026-03-08 02:05',
  NULL, 1, 'event is 2.5 h behind the reservations watermark', '{"event_id": "evt-r-91"}'),
 ('dqa-3', 'stream', 'orphan', 'orders', 'warning', false, 'evt-o-5', '2026-03-08 02:30',
  NULL, 1, 'line names unknown SKU SKU-99999', '{"event_id": "evt-o-5"}')
"""
"""Two GX runs (the latest with one failing expectation) and three in-stream alerts."""


@pytest.fixture
def checked_db(landed_run: Path, tmp_path: Path) -> Path:
    """A landed file alone (no snapshot) whose data-quality results are :data:`_DQ_RESULTS`."""
    db = tmp_path / "checked.duckdb"
    shutil.copy(landed_run / "allocflow.duckdb", db)
    with duckdb.connect(str(db)) as connection:
        connection.execute("DELETE FROM dq_results")
        connection.execute(_DQ_RESULTS)
    return db


def _app(monkeypatch: pytest.MonkeyPatch, *args: str) -> AppTest:
    monkeypatch.setattr(sys, "argv", ["app.py", *args])
    monkeypatch.delenv(DB_ENV, raising=False)
    return AppTest.from_file(str(APP_PATH), default_timeout=_TIMEOUT_S)


def _run(app: AppTest, page: str | None = None) -> AppTest:
    app.run()
    if page is not None:
        app.switch_page(page).run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def _tiles(app: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in app.metric}


def _table(app: AppTest, column: str) -> pd.DataFrame:
    """The one dataframe on the page with ``column``."""
    found = [frame.value for frame in app.dataframe if column in frame.value.columns]
    assert len(found) == 1, f"{len(found)} dataframes have a column {column!r}"
    return found[0]


def _kpis(db: Path, filters_of: Selection) -> tuple[dict[str, Any], Filters, int]:
    snapshot = db.with_name(db.name + ".snapshot")
    with duckdb.connect(str(snapshot), read_only=True) as connection:
        filters = filters_of.resolve(queries.watermark_of(connection))
        kpis = queries.overview_kpis(connection, filters).row(0, named=True)
        open_now = queries.open_exceptions(connection, filters).item()
    return kpis, filters, open_now


def _percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"


def _expected_tiles(db: Path, selection: Selection) -> dict[str, str]:
    kpis, _, open_now = _kpis(db, selection)
    return {
        "Line fill, first pass": _percent(kpis["line_fill_rate_first_pass"]),
        "Line fill, current": _percent(kpis["line_fill_rate_current"]),
        "Order fill, first pass": _percent(kpis["order_fill_rate_first_pass"]),
        "Cycle time p50": ui.duration(kpis["cycle_p50_seconds"]),
        "Cycle time p90": ui.duration(kpis["cycle_p90_seconds"]),
        "Split rate": _percent(kpis["split_rate"]),
        "Touchless rate": _percent(kpis["touchless_rate"]),
        "On-time delivery": _percent(kpis["on_time_delivery_rate"]),
        "Open exceptions": str(open_now),
    }


def _open_exceptions(db: Path) -> int:
    with duckdb.connect(str(db), read_only=True) as connection:
        rows = connection.execute(
            "SELECT count(*) FROM exceptions WHERE closed_at IS NULL"
        ).fetchall()
    return int(rows[0][0])


def _charts(app: AppTest) -> list[str]:
    return [chart.proto.spec for chart in app.get("vega_lite_chart")]


def test_overview_tiles_show_the_numbers_of_the_queries(
    monkeypatch: pytest.MonkeyPatch, db: Path
) -> None:
    app = _run(_app(monkeypatch, "--db", str(db)))

    assert _tiles(app) == _expected_tiles(db, Selection())
    with duckdb.connect(str(db), read_only=True) as connection:
        lines = connection.execute(
            "SELECT sum(lines_first_full) / sum(lines_decided) FROM agg_line_fill"
        ).fetchall()
    assert _tiles(app)["Line fill, first pass"] == f"{lines[0][0] * 100:.1f}%"
    assert not app.warning
    assert "Snapshot published" in app.caption[0].value
    open_now = _open_exceptions(db)
    assert [n.value for n in app.info] == ([] if open_now else ["No open exceptions."])
    assert len(_charts(app)) == (4 if open_now else 3)


def test_sidebar_filters_change_the_tiles(monkeypatch: pytest.MonkeyPatch, db: Path) -> None:
    app = _run(_app(monkeypatch, "--db", str(db)))
    everything = _tiles(app)

    app.multiselect(key="region").set_value(["west"])
    west = _tiles(_run(app))
    assert west == _expected_tiles(db, Selection(regions=("west",)))
    assert west["Line fill, first pass"] != everything["Line fill, first pass"]

    app.multiselect(key="node").set_value(["DC-RNO"])
    rno = _tiles(_run(app))
    assert rno == _expected_tiles(db, Selection(regions=("west",), nodes=("DC-RNO",)))
    assert rno["On-time delivery"] != west["On-time delivery"]
    assert rno["Line fill, first pass"] == west["Line fill, first pass"]

    app.multiselect(key="region").set_value([])
    app.multiselect(key="node").set_value([])
    app.selectbox(key="time_range").set_value("24h")
    last_day = _tiles(_run(app))
    assert last_day["Line fill, first pass"] == "—"  # every order was placed days earlier
    assert last_day == _expected_tiles(db, Selection(time_range="24h"))
    assert next(n.value for n in app.info) == "No orders decided in this window."


def test_date_range_selects_event_days(monkeypatch: pytest.MonkeyPatch, db: Path) -> None:
    app = _app(monkeypatch, "--db", str(db))
    _run(app).selectbox(key="time_range").set_value("dates")
    _run(app)

    assert app.date_input(key="dates").value == (date(2026, 3, 2), date(2026, 3, 4))
    placed_day = (date(2026, 3, 2), date(2026, 3, 2))
    app.date_input(key="dates").set_value(placed_day)
    tiles = _tiles(_run(app))
    assert tiles == _expected_tiles(db, Selection(time_range="dates", dates=placed_day))
    assert (
        tiles["Line fill, first pass"]
        == _tiles(_run(_app(monkeypatch, "--db", str(db))))["Line fill, first pass"]
    )


def test_exceptions_queue_and_order_timeline(monkeypatch: pytest.MonkeyPatch, db: Path) -> None:
    app = _run(_app(monkeypatch, "--db", str(db)), "page_exceptions.py")
    assert _tiles(app) == {"Open exceptions listed": str(_open_exceptions(db))}

    app.toggle(key="queue_closed").set_value(True)
    _run(app)
    with duckdb.connect(str(db), read_only=True) as connection:
        every = connection.execute("SELECT count(*) FROM exceptions").fetchall()[0][0]
        order_id = connection.execute(
            "SELECT order_id FROM orders WHERE exceptions_opened > 1 ORDER BY order_id DESC LIMIT 1"
        ).fetchall()[0][0]
        decisions = connection.execute(
            "SELECT decision_id, rule, outcome, explanation, len(candidates) > 0 "
            "FROM allocation_decisions WHERE order_id = ? ORDER BY decision_id",
            [order_id],
        ).fetchall()
    assert len(_table(app, "exception_id")) == every

    app.selectbox(key="order").set_value(order_id)
    _run(app)
    shown = _table(app, "decision_id").sort_values("decision_id")
    shown["ranked"] = shown["candidates"].str.len() > 0
    columns = ["decision_id", "rule", "outcome", "explanation", "ranked"]
    assert [tuple(row) for row in shown[columns].itertuples(index=False)] == decisions
    assert shown["ranked"].any()
    timeline = _table(app, "occurred_at")
    assert (timeline["source"] == "decision").sum() == len(decisions)
    assert {"input event", "exception opened", "exception closed"} <= set(timeline["source"])
    assert len(_table(app, "tracking_no")) >= 1


def test_exceptions_queue_lists_open_exceptions(
    monkeypatch: pytest.MonkeyPatch, reopened_db: Path
) -> None:
    app = _run(_app(monkeypatch, "--db", str(reopened_db)))
    open_now = _open_exceptions(snapshot_path(reopened_db))
    assert open_now >= 10
    with duckdb.connect(str(snapshot_path(reopened_db)), read_only=True) as connection:
        operations = queries.open_exceptions(connection, Filters()).item()  # no DATA_QUALITY
    assert _tiles(app)["Open exceptions"] == str(operations)
    assert len(_charts(app)) == 4

    _run(app.switch_page("page_exceptions.py"))
    queue = _table(app, "exception_id")
    assert _tiles(app) == {"Open exceptions listed": str(open_now)}
    assert len(queue) == open_now
    assert set(queue["status"]) == {"open"}
    reason = str(queue["reason_code"].iloc[0])
    app.multiselect(key="queue_reason_code").set_value([reason])
    _run(app)
    narrowed = _table(app, "exception_id")
    assert set(narrowed["reason_code"]) == {reason}
    assert len(narrowed) == (queue["reason_code"] == reason).sum()
    assert app.selectbox(key="order").value == narrowed["order_id"].iloc[0]


def test_carriers_page(monkeypatch: pytest.MonkeyPatch, db: Path) -> None:
    app = _run(_app(monkeypatch, "--db", str(db)), "page_carriers.py")

    with duckdb.connect(str(db), read_only=True) as connection:
        carriers = connection.execute(
            """SELECT carrier_id, count(*), count(*) FILTER (WHERE coalesce(delivered_at,
                      carrier_delivered_at) <= promised_delivery) / count(*) FILTER (WHERE
                      coalesce(delivered_at, carrier_delivered_at) IS NOT NULL)
               FROM shipments WHERE created_at IS NOT NULL GROUP BY 1 ORDER BY 1"""
        ).fetchall()
    by_carrier, by_lane = (f.value for f in app.dataframe if "otif_rate" in f.value.columns)
    shown = by_carrier[["carrier_id", "shipments", "on_time_delivery_rate"]]
    assert [tuple(row[:2]) for row in shown.itertuples(index=False)] == [c[:2] for c in carriers]
    assert list(shown["on_time_delivery_rate"]) == pytest.approx([c[2] for c in carriers])
    assert len(by_lane) > len(by_carrier)
    charts = _charts(app)
    assert len(charts) == 3
    assert "Transit time by carrier" in charts[2]


def _land_alerts(db: Path, alerts: list[RouteAlert]) -> None:
    topic = OutputTopic.ROUTE_ALERTS.value
    records = [
        LandingRecord(topic, topic, 0, i, alert.model_dump_json().encode())
        for i, alert in enumerate(alerts)
    ]
    with DuckDBWriter(db) as writer:
        writer.land(records)
        publish_snapshot(writer.connection, snapshot_path(db))


def _route_alert(alert_id: str, kind: RouteAlertKind, day: int, **fields: Any) -> RouteAlert:
    return RouteAlert(
        alert_id=alert_id,
        kind=kind,
        severity=Severity.WARNING,
        carrier_id="CARR-NORTHSTAR",
        lane="DC-NJ>northeast",
        shipment_id=f"SH-{alert_id}",
        order_id=f"SO-{alert_id}",
        detected_at=datetime(2026, 3, day, tzinfo=UTC),
        promised_delivery=datetime(2026, 3, day + 1, tzinfo=UTC),
        expected_delivery=datetime(2026, 3, day + 2, tzinfo=UTC),
        detail=f"{kind.value} {alert_id}",
        **fields,
    )


@pytest.fixture
def alerts_db(landed_run: Path, tmp_path: Path) -> Path:
    """A copy of the landed run whose route alerts are only two open and one resolved."""
    db = tmp_path / "alerts.duckdb"
    shutil.copy(landed_run / "allocflow.duckdb", db)
    with duckdb.connect(str(db)) as connection:
        connection.execute("DELETE FROM route_alerts")
    _land_alerts(
        db,
        [
            _route_alert("stalled", RouteAlertKind.STALLED, 2),
            _route_alert("at-risk", RouteAlertKind.AT_RISK, 3),
            _route_alert("fixed", RouteAlertKind.NOT_DISPATCHED, 4),
            _route_alert("fix", RouteAlertKind.RESOLVED, 5, resolves_alert_id="fixed"),
        ],
    )
    return db


def test_carriers_page_shows_open_route_alerts(
    monkeypatch: pytest.MonkeyPatch, alerts_db: Path
) -> None:
    app = _run(_app(monkeypatch, "--db", str(alerts_db)), "page_carriers.py")

    assert list(_table(app, "hours_late")["alert_id"]) == ["at-risk", "stalled"]
    assert _tiles(app) == {
        "Not dispatched": "0",
        "At risk": "1",
        "Stalled": "1",
        "Lane degraded": "0",
    }
    outcomes = _table(app, "resolved_kind")
    assert list(outcomes[["alert_id", "resolved_kind"]].itertuples(index=False, name=None)) == [
        ("fix", "NOT_DISPATCHED")
    ]
    assert not app.info


def test_carriers_page_transit_chart_follows_the_lane(
    monkeypatch: pytest.MonkeyPatch, db: Path
) -> None:
    app = _run(_app(monkeypatch, "--db", str(db)), "page_carriers.py")
    lane = app.selectbox(key="transit_lane")
    assert lane.value == "All lanes"
    by_lane = [f.value for f in app.dataframe if list(f.value.columns[:1]) == ["lane"]]
    assert lane.options == ["All lanes", *by_lane[0]["lane"]]
    everything = _charts(app)[2]

    lane.select("DC-NJ>northeast").run()

    assert not app.exception
    assert app.selectbox(key="transit_lane").value == "DC-NJ>northeast"
    assert _charts(app)[2] != everything


def test_carriers_page_without_route_alerts(
    monkeypatch: pytest.MonkeyPatch, db: Path, tmp_path: Path
) -> None:
    quiet = tmp_path / "quiet.duckdb"
    shutil.copy(db, quiet)
    with duckdb.connect(str(quiet)) as connection:
        connection.execute("DELETE FROM route_alerts")
    app = _run(_app(monkeypatch, "--db", str(quiet)), "page_carriers.py")

    assert [n.value for n in app.info] == ["No route alerts landed yet."]
    assert not app.metric


def _gx_label(covers_to: datetime | None) -> str:
    """The GX tile's label: the end of the landed range the latest run judged."""
    if covers_to is None:
        return "Latest GX run passed"
    return f"Latest GX run, data up to {covers_to:%Y-%m-%d %H:%M}: passed"


def _quality_tiles(db: Path) -> dict[str, str]:
    """The data-quality page's tiles, from the queries over ``db`` (or its snapshot)."""
    snapshot = db.with_name(db.name + ".snapshot")
    with duckdb.connect(str(snapshot if snapshot.exists() else db), read_only=True) as connection:
        dead_letters = queries.dead_letter_counts(connection)["dead_letters"].sum()
        flagged = queries.flagged_share(connection)
        runs = queries.gx_pass_rates(connection)
        stale = queries.feed_freshness(connection, data.freshness_limits())["stale"].sum()
    latest = runs.filter(pl.col("detected_at") == pl.col("detected_at").max())
    alerts, events = flagged["alerts"].sum(), flagged["events"].sum()
    return {
        "Dead letters": f"{dead_letters:,}",
        "Stream alerts": f"{alerts:,}",
        "Input events flagged": _percent(alerts / events),
        _gx_label(latest["covers_to"].max()): _percent(
            latest["passed"].sum() / latest["expectations"].sum() if latest.height else None
        ),
        "Stale sources": f"{stale:,}",
    }


def test_data_quality_page_counts_every_dead_letter(
    monkeypatch: pytest.MonkeyPatch, db: Path
) -> None:
    app = _run(_app(monkeypatch, "--db", str(db)), "page_quality.py")

    with duckdb.connect(str(db), read_only=True) as connection:
        dead_letters = connection.execute("SELECT count(*) FROM dead_letters").fetchall()[0][0]
        raw = dict(connection.execute("SELECT dead_letter_id, raw FROM dead_letters").fetchall())
    assert dead_letters > 0
    assert _tiles(app) == _quality_tiles(db)
    assert _tiles(app)["Dead letters"] == str(dead_letters)
    assert _table(app, "last_seen")["dead_letters"].sum() == dead_letters
    newest = _table(app, "raw_preview")
    for dead_letter_id, preview in newest[["dead_letter_id", "raw_preview"]].itertuples(
        index=False
    ):
        assert preview == queries.raw_preview(raw[dead_letter_id])
    assert "No expectation suite has run yet." in [n.value for n in app.info]


def test_data_quality_checks_alerts_and_freshness(
    monkeypatch: pytest.MonkeyPatch, checked_db: Path
) -> None:
    app = _run(_app(monkeypatch, "--db", str(checked_db)), "page_quality.py")

    assert _tiles(app) == _quality_tiles(checked_db)
    assert _tiles(app)["Stream alerts"] == "3"
    # results landed before covers_to existed: their watermark is the range's end
    assert _tiles(app)["Latest GX run, data up to 2026-03-08 03:00: passed"] == "50.0%"
    assert not app.info
    assert len(_charts(app)) == 3  # pass rate, alerts per hour, dead letters
    flagged = _table(app, "flagged_share").set_index("feed")
    assert flagged.loc["reservations", "alerts"] == 2
    assert flagged.loc["orders", "alerts"] == 1
    alerts = _table(app, "unexpected_count")
    assert list(alerts["result_id"]) == ["gx-2b", "dqa-3", "dqa-2", "dqa-1"]
    assert list(alerts["event_id"].iloc[1:]) == ["evt-o-5", "evt-r-91", "evt-r-17"]
    freshness = _table(app, "hours_behind_watermark")
    with duckdb.connect(str(checked_db), read_only=True) as connection:
        expected = queries.feed_freshness(connection, data.freshness_limits())
    assert list(freshness["state"]) == list(expected["state"])
    assert len(freshness) == expected.height > 4  # four feeds and the warehouses
    assert _tiles(app)["Stale sources"] == str(expected["stale"].sum())


def test_freshness_follows_the_pipelines_stale_feed_settings(
    monkeypatch: pytest.MonkeyPatch, checked_db: Path
) -> None:
    monkeypatch.setenv("ALLOCFLOW_DQ_STALE_FEED_AFTER_S", str(1000 * 3600))
    monkeypatch.setenv("ALLOCFLOW_DQ_STALE_FEED_AFTER_BY_FEED_S", '{"shipments": 1800}')
    monkeypatch.setenv("ALLOCFLOW_DQ_STALE_NODE_AFTER_S", str(1000 * 3600))
    app = _run(_app(monkeypatch, "--db", str(checked_db)), "page_quality.py")

    captions = " ".join(c.value for c in app.caption)
    assert "highlighted beyond 1000 h for a feed (shipments 0.5 h) or 1000 h for a node" in captions
    freshness = _table(app, "hours_behind_watermark")
    limits = data.freshness_limits()
    assert limits.for_feed("shipments") == 0.5
    with duckdb.connect(str(checked_db), read_only=True) as connection:
        expected = queries.feed_freshness(connection, limits)
    assert list(freshness["stale"]) == list(expected["stale"])
    assert set(expected.filter("stale")["feed"]) <= {"shipments"}


def test_the_gx_tile_says_which_landed_data_the_latest_run_judged(
    monkeypatch: pytest.MonkeyPatch, checked_db: Path
) -> None:
    with duckdb.connect(str(checked_db)) as connection:
        connection.execute(
            "UPDATE dq_results SET covers_from = detected_at - INTERVAL 6 HOUR, "
            "covers_to = detected_at - INTERVAL 96 HOUR WHERE origin = 'gx'"
        )

    app = _run(_app(monkeypatch, "--db", str(checked_db)), "page_quality.py")

    # the latest run (detected at 03:00) judged data up to four days earlier
    assert _tiles(app)["Latest GX run, data up to 2026-03-04 03:00: passed"] == "50.0%"
    assert "Latest GX run passed" not in _tiles(app)


def test_quiet_and_stale_sources_are_told_apart_on_the_page(
    monkeypatch: pytest.MonkeyPatch, checked_db: Path
) -> None:
    with duckdb.connect(str(checked_db), read_only=True) as connection:
        watermark = connection.execute("SELECT max(watermark) FROM feed_freshness").fetchone()
    assert watermark is not None
    # every node expected active only in the hour after the watermark: quiet, however long
    # silent; every feed silent for more than a minute of its always-active hours: stale
    opens = watermark[0].replace(minute=0, second=0, microsecond=0).hour + 1
    window = f"daily {opens % 24:02d}:00-{opens % 24 + 1:02d}:00"
    monkeypatch.setenv("ALLOCFLOW_DQ_STALE_FEED_AFTER_S", "60")
    monkeypatch.setenv("ALLOCFLOW_DQ_STALE_FEED_AFTER_BY_FEED_S", "{}")
    monkeypatch.setenv("ALLOCFLOW_DQ_STALE_NODE_AFTER_S", "60")
    monkeypatch.setenv("ALLOCFLOW_DQ_ACTIVE_HOURS_BY_NODE", f'{{"*": "{window}"}}')

    app = _run(_app(monkeypatch, "--db", str(checked_db)), "page_quality.py")

    shown = _table(app, "hours_behind_watermark")
    nodes = set(shown[shown["kind"] == "node"]["state"])
    feeds_behind = shown[(shown["kind"] == "feed") & (shown["hours_behind_watermark"] > 1 / 60)]
    assert nodes == {"quiet (outside active hours)"}
    assert set(feeds_behind["state"]) == {"stale"}
    assert _tiles(app)["Stale sources"] == str(len(feeds_behind))
    captions = " ".join(c.value for c in app.caption)
    assert f"other nodes {window} UTC" in captions


def test_dead_letter_browser_shows_one_record(monkeypatch: pytest.MonkeyPatch, db: Path) -> None:
    app = _run(_app(monkeypatch, "--db", str(db)), "page_quality.py")

    app.multiselect(key="dl_topic").set_value(["orders"])
    app.multiselect(key="dl_reason").set_value(["SCHEMA_VIOLATION"])
    _run(app)
    listed = _table(app, "raw_preview")
    assert set(listed["source_topic"]) == {"orders"}
    assert set(listed["reason_code"]) == {"SCHEMA_VIOLATION"}
    chosen = app.selectbox(key="dead_letter").value
    assert chosen == listed["dead_letter_id"].iloc[0]
    with duckdb.connect(str(db), read_only=True) as connection:
        errors, raw = connection.execute(
            "SELECT errors, raw FROM dead_letters WHERE dead_letter_id = ?", [chosen]
        ).fetchall()[0]
    shown = _table(app, "message")
    assert list(shown["field"]) == [e["field"] for e in errors]
    code = [block.value for block in app.code]
    assert code == [raw.decode("utf-8", errors="replace"), queries.raw_hex(raw)]


_RAW_DUCKDB = ("IO Error", "Could not set lock", "Conflicting lock", "Error:")


def _messages(app: AppTest) -> list[str]:
    """Every alert, caption and Markdown text of the page and its sidebar."""
    kinds = ("info", "warning", "error", "exception", "caption", "markdown")
    return [str(element.value) for kind in kinds for element in app.get(kind)]


def _assert_waiting(app: AppTest, *words: str) -> None:
    """The page says it waits (with ``words``), shows no number and no DuckDB error text."""
    waiting = [i.value for i in app.info if i.value.startswith("Waiting for the first")]
    assert len(waiting) == 1, _messages(app)
    for word in words:
        assert word in waiting[0]
    assert "retries every 3 s" in waiting[0]
    assert not app.warning
    assert not app.metric
    assert not app.dataframe
    assert not [m for m in _messages(app) if any(raw in m for raw in _RAW_DUCKDB)]


_PAGES = [None, "page_exceptions.py", "page_carriers.py", "page_quality.py"]


@pytest.mark.parametrize("page", _PAGES)
def test_missing_database_waits_for_the_first_snapshot_on_every_page(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, page: str | None
) -> None:
    missing = tmp_path / "nothing-landed-yet.duckdb"

    app = _run(_app(monkeypatch, "--db", str(missing)), page)

    _assert_waiting(app, "Waiting for the first snapshot", "nothing\\-landed\\-yet")
    app.selectbox(key="time_range").set_value("dates")
    _run(app)
    assert "No landed data to pick dates from yet." in [c.value for c in app.sidebar.caption]
    _assert_waiting(app, "Waiting for the first snapshot")


@pytest.mark.parametrize("page", _PAGES)
def test_database_locked_by_the_lander_waits_then_recovers(
    monkeypatch: pytest.MonkeyPatch, db: Path, tmp_path: Path, page: str | None
) -> None:
    alone = tmp_path / "alone.duckdb"  # the lander holds it and published no snapshot yet
    shutil.copy(db, alone)
    writer = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(alone)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "holding\n"
        app = _run(_app(monkeypatch, "--db", str(alone)), page)
        _assert_waiting(app, "Waiting for the first snapshot", "the lander is writing")
        assert app.multiselect(key="region").options == []
    finally:
        writer.kill()
        writer.wait()

    _run(app)
    assert not app.info or not app.info[0].value.startswith("Waiting")
    assert "Reading alone\\.duckdb directly" in " ".join(c.value for c in app.caption)
    assert app.multiselect(key="region").options
    if page is None:
        assert (
            _tiles(app)["Line fill, first pass"]
            == _expected_tiles(db, Selection())["Line fill, first pass"]
        )


@pytest.mark.parametrize("page", _PAGES)
def test_snapshot_without_events_waits_for_the_first_events(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, page: str | None
) -> None:
    db = tmp_path / "fresh.duckdb"
    with DuckDBWriter(db) as writer:  # the lander's first snapshot, before anything landed
        publish_snapshot(writer.connection, snapshot_path(db))

    app = _run(_app(monkeypatch, "--db", str(db)), page)

    _assert_waiting(app, "Waiting for the first events", "fresh\\.duckdb\\.snapshot")


def test_unreadable_file_warns_without_duckdb_text(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.duckdb"
    broken.write_bytes(b"this is not a DuckDB file" * 100)

    app = _run(_app(monkeypatch, "--db", str(broken)))

    assert len(app.warning) == 1
    assert "broken\\.duckdb could not be opened" in app.warning[0].value
    assert not [m for m in _messages(app) if any(raw in m for raw in _RAW_DUCKDB)]


def test_database_from_the_environment(monkeypatch: pytest.MonkeyPatch, db: Path) -> None:
    app = _app(monkeypatch)
    monkeypatch.setenv(DB_ENV, str(db))

    _run(app)

    assert _tiles(app) == _expected_tiles(db, Selection())


def test_no_database_named_is_an_error_message(monkeypatch: pytest.MonkeyPatch) -> None:
    app = _run(_app(monkeypatch))

    assert DB_ENV in app.error[0].value
    assert not app.metric


def test_snapshot_freshness_is_shown(monkeypatch: pytest.MonkeyPatch, db: Path) -> None:
    app = _run(_app(monkeypatch, "--db", str(db)), "page_quality.py")

    with duckdb.connect(str(db.with_name(db.name + ".snapshot")), read_only=True) as connection:
        published, watermark = connection.execute(
            "SELECT published_at, watermark FROM snapshot_info, landing_status"
        ).fetchall()[0]
    caption = " ".join(c.value for c in app.caption)
    assert isinstance(published, datetime)
    assert f"Snapshot published {published:%Y-%m-%d %H:%M:%S} UTC" in caption
    assert f"newest event {watermark:%Y-%m-%d %H:%M:%S} UTC" in caption
