"""Batch reductions before SQL, file batches, and the aggregates' delta arithmetic."""

from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from allocflow.connectors.landing import staging
from allocflow.connectors.landing.aggregates import MACROS, Aggregate, recompute_sql
from allocflow.connectors.landing.sources import file_batches

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 2, 6)


def _frame(name: str, rows: list[dict[str, object]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=staging.SCHEMAS[name])


def test_order_statuses_keep_the_highest_version_and_the_first_allocated_time() -> None:
    rows = [
        {"order_id": "O1", "status_version": 2, "status": "allocated",
         "status_as_of": T0.replace(hour=8)},
        {"order_id": "O1", "status_version": 3, "status": "partial",
         "status_as_of": T0.replace(hour=9)},
        {"order_id": "O1", "status_version": 1, "status": "backordered", "status_as_of": T0},
    ]  # fmt: skip
    reduced = staging.order_statuses(_frame("statuses", rows)).to_dicts()
    assert len(reduced) == 1
    assert reduced[0]["status"] == "partial"
    assert reduced[0]["status_version"] == 3
    assert reduced[0]["first_decided_at"] == T0
    assert reduced[0]["allocated_at"] == T0.replace(hour=8)


def test_line_decisions_take_first_and_latest_by_offset_whatever_the_batch_order() -> None:
    rows = [
        {"decision_id": f"d{offset}", "order_id": "O1", "line_id": "1", "sku": "S",
         "source_offset": offset, "outcome": outcome, "requested_qty": 5, "allocated_qty": qty}
        for offset, outcome, qty in ((9, "allocated", 5), (3, "backordered", 0), (6, "partial", 2))
    ]  # fmt: skip
    line = staging.line_decisions(_frame("decisions", rows)).to_dicts()[0]
    assert line["decisions"] == 3
    assert (line["first_decision_id"], line["first_outcome"], line["first_offset"]) == (
        "d3",
        "backordered",
        3,
    )
    assert (line["decision_id"], line["outcome"], line["allocated_qty"]) == ("d9", "allocated", 5)


def test_shipment_events_merge_into_one_row() -> None:
    rows = [
        {"event_id": "e1", "shipment_id": "SH1", "order_id": "O1", "node_id": "DC-A",
         "created_at": T0, "short_units": 0, "scans": 0},
        {"event_id": "e2", "shipment_id": "SH1", "first_scan_at": T0.replace(hour=9),
         "last_scan_at": T0.replace(hour=9), "scans": 1, "short_units": 0,
         "latest_eta": T0.replace(day=5), "eta_at": T0.replace(hour=9)},
        {"event_id": "e3", "shipment_id": "SH1", "first_scan_at": T0.replace(hour=12),
         "last_scan_at": T0.replace(hour=12), "scans": 1, "short_units": 2,
         "latest_eta": T0.replace(day=4), "eta_at": T0.replace(hour=12)},
    ]  # fmt: skip
    shipment = staging.shipments(_frame("shipments", rows).drop("event_id")).to_dicts()[0]
    assert shipment["order_id"] == "O1"
    assert shipment["node_id"] == "DC-A"
    assert shipment["scans"] == 2
    assert shipment["short_units"] == 2
    assert shipment["first_scan_at"] == T0.replace(hour=9)
    assert shipment["last_scan_at"] == T0.replace(hour=12)
    assert shipment["latest_eta"] == T0.replace(day=4)


def test_exception_open_and_close_records_merge() -> None:
    rows = [
        {"exception_id": "x", "order_id": "O1", "reason_code": "STOCKOUT", "opened_at": T0,
         "detail": "no stock", "opened_by_event_id": "e1"},
        {"exception_id": "x", "order_id": "O1", "reason_code": "STOCKOUT", "opened_at": T0,
         "closed_at": T0.replace(hour=9), "resolution": "allocated", "closed_by_event_id": "e7"},
    ]  # fmt: skip
    merged = staging.exceptions(_frame("exceptions", rows)).to_dicts()
    assert merged == [
        {
            "exception_id": "x", "order_id": "O1", "line_id": None, "reason_code": "STOCKOUT",
            "severity": None, "owner_role": None, "opened_at": T0,
            "closed_at": T0.replace(hour=9), "resolution": "allocated", "detail": "no stock",
            "opened_by_event_id": "e1", "closed_by_event_id": "e7",
        }
    ]  # fmt: skip


def test_file_batches_resume_after_the_landed_offset_and_skip_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "orders.jsonl"
    path.write_bytes(b"a\nb\n\nc\nd\n")
    source = str(path.resolve())
    landed = {(source, 0): 2}
    batches = list(file_batches({"orders": path}, lambda *at: landed.get(at, 0), 2))
    assert [[(r.offset, r.value) for r in batch] for batch in batches] == [[(3, b"c"), (4, b"d")]]
    missing = {"dead-letter": tmp_path / "missing.jsonl"}
    assert list(file_batches(missing, lambda *at: landed.get(at, 0), 2)) == []


def test_an_aggregate_delta_moves_a_row_between_groups() -> None:
    con = duckdb.connect()
    for macro in MACROS:
        con.execute(macro)
    con.execute("CREATE TABLE items (id VARCHAR, grp VARCHAR, qty INTEGER)")
    aggregate = Aggregate(
        table="agg_items", entity="items", keys={"grp": "e.grp"}, measures={"n": "1", "q": "e.qty"}
    )
    con.execute(aggregate.ddl())
    con.execute("INSERT INTO items VALUES ('a', 'x', 2), ('b', 'x', 3)")
    con.execute("CREATE TABLE before AS SELECT * FROM items WHERE false")
    con.execute("CREATE TABLE after AS SELECT * FROM items")
    con.execute(aggregate.apply_delta_sql("before", "after"))
    con.execute("CREATE OR REPLACE TABLE before AS SELECT * FROM items WHERE id = 'a'")
    con.execute("UPDATE items SET grp = 'y', qty = 5 WHERE id = 'a'")
    con.execute("CREATE OR REPLACE TABLE after AS SELECT * FROM items WHERE id = 'a'")
    con.execute(aggregate.apply_delta_sql("before", "after"))
    con.execute(aggregate.prune_sql())
    assert sorted(con.execute("SELECT * FROM agg_items").fetchall()) == [("x", 1, 3), ("y", 1, 5)]
    assert sorted(con.execute(recompute_sql(aggregate)).fetchall()) == [("x", 1, 3), ("y", 1, 5)]


def test_histogram_buckets_bound_values_within_a_sixteenth_of_a_doubling() -> None:
    con = duckdb.connect()
    for macro in MACROS:
        con.execute(macro)
    for value in (0.2, 1.0, 1.5, 37.0, 3600.0, 86_400.0 * 3):
        row = con.execute("SELECT bucket_upper(log_bucket(?))", [value]).fetchone()
        assert row is not None
        upper = float(row[0])
        assert value <= upper <= max(value, 1.0) * 2 ** (1 / 16) + 1e-9
