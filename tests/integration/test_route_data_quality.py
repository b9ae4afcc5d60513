"""Route risks of shipments whose order never existed are data quality, not operations work.

A simulated stream with orphan shipments (``shipment.created`` naming an order the
orders feed never had) and orphan scans goes through ``allocflow run --db``. Before,
every open exception and open route alert at the end of the demo belonged to such
orders, as ``ROUTE_DELAY_RISK`` for logistics, in the "Open exceptions" tile and the
aging chart. Now they are ``DATA_QUALITY`` exceptions for integration, their route
alerts carry no ``order_id``, and the operations counts leave them out unless asked.
"""

import json
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from allocflow.dashboards.queries import (
    Filters,
    exception_aging,
    open_exceptions,
    open_route_alert_counts,
    open_route_alerts,
)
from allocflow.flows.cli import main

pytestmark = pytest.mark.integration

_KNOWN_ORDERS = """(SELECT order_id FROM input_events
                    WHERE topic = 'orders' AND event_type = 'order.placed')"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, duckdb.DuckDBPyConnection]:
    base = tmp_path_factory.mktemp("orphans")
    stream, out, db = base / "stream", base / "out", base / "allocflow.duckdb"
    simulate = ["simulate", "--seed", "7", "--orders", "600", "--no-progress"]
    faults = ["--faults", "orphan_shipment,orphan_scan", "--fault-rate", "0.02"]
    assert main([*simulate, *faults, "--out", str(stream)]) == 0
    assert main(["run", "--input", str(stream), "--out", str(out), "--db", str(db)]) == 0
    con = duckdb.connect(str(db), read_only=True)
    yield out, con
    con.close()


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    ((value,),) = con.execute(sql).fetchall()
    assert isinstance(value, int)
    return value


def test_risks_of_unknown_orders_are_data_quality_for_integration(
    run: tuple[Path, duckdb.DuckDBPyConnection],
) -> None:
    _, con = run
    by_kind = Counter(
        con.execute(
            f"""SELECT reason_code, owner_role, order_id IN {_KNOWN_ORDERS}
                FROM exceptions WHERE reason_code IN ('ROUTE_DELAY_RISK', 'DATA_QUALITY')"""
        ).fetchall()
    )
    assert by_kind[("DATA_QUALITY", "integration", False)] > 0
    assert by_kind[("ROUTE_DELAY_RISK", "logistics", True)] > 0
    assert set(by_kind) == {
        ("DATA_QUALITY", "integration", False),
        ("ROUTE_DELAY_RISK", "logistics", True),
    }
    unmarked = _scalar(
        con,
        f"""SELECT count(*) FROM route_alerts
            WHERE order_id IS NOT NULL AND order_id NOT IN {_KNOWN_ORDERS}""",
    )
    marked = _scalar(
        con, "SELECT count(*) FROM route_alerts WHERE shipment_id IS NOT NULL AND order_id IS NULL"
    )
    assert (unmarked, marked > 0) == (0, True)


def test_operations_counts_leave_data_faults_out_unless_asked(
    run: tuple[Path, duckdb.DuckDBPyConnection],
) -> None:
    _, con = run
    open_by_reason = dict(
        con.execute(
            "SELECT reason_code, count(*) FROM exceptions WHERE closed_at IS NULL GROUP BY 1"
        ).fetchall()
    )
    data_faults = open_by_reason.pop("DATA_QUALITY", 0)
    assert data_faults > 0
    operations = sum(open_by_reason.values())
    assert open_exceptions(con, Filters()).item() == operations
    assert open_exceptions(con, Filters(), include_data_quality=True).item() == (
        operations + data_faults
    )
    aging = exception_aging(con, Filters())
    assert "DATA_QUALITY" not in aging["reason_code"].to_list()
    assert aging["open_exceptions"].sum() == operations
    with_faults = exception_aging(con, Filters(), include_data_quality=True)
    assert with_faults["open_exceptions"].sum() == operations + data_faults
    view = _scalar(con, "SELECT coalesce(sum(open_exceptions), 0) FROM kpi_exception_aging")
    assert view == operations


def test_open_route_alerts_leave_shipments_of_unknown_orders_out_unless_asked(
    run: tuple[Path, duckdb.DuckDBPyConnection],
) -> None:
    _, con = run
    every = open_route_alerts(con, Filters(), include_data_quality=True)
    shown = open_route_alerts(con, Filters())
    faults = every.filter(every["shipment_id"].is_not_null() & every["order_id"].is_null())
    assert faults.height > 0
    assert shown.height == every.height - faults.height
    assert shown.filter(shown["shipment_id"].is_not_null())["order_id"].null_count() == 0
    counts = open_route_alert_counts(con, Filters())["open_alerts"].sum()
    assert counts == shown.height
    assert open_route_alert_counts(con, Filters(), include_data_quality=True)[
        "open_alerts"
    ].sum() == (every.height)


def test_each_orphan_shipment_raises_at_most_one_open_exception(
    run: tuple[Path, duckdb.DuckDBPyConnection],
) -> None:
    out, _ = run
    lines = (out / "allocation-exceptions.jsonl").read_text().splitlines()
    opened = Counter(
        json.loads(line)["detail"].split()[1]
        for line in lines
        if '"DATA_QUALITY"' in line and '"state":"open"' in line
    )
    assert opened
    assert max(opened.values()) == 1
