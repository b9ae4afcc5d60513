"""The Great Expectations suites over the landed fixture run: clean, corrupted, written, CLI."""

import json
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from allocflow.connectors.landing.snapshot import snapshot_path
from allocflow.flows.cli import main
from allocflow.quality.expectations import ExpectationRunner, QualityRun, write_results

pytestmark = pytest.mark.integration

NOT_NULL = "expect_column_values_to_not_be_null"

# Real problems of the fixture run: the simulator's orphan faults (``--faults all``) land a
# shipment.created for an order that was never placed (an order row with no placement) and
# transit scans for shipments that were never created (a shipment row with no creation).
ORPHAN_ORDERS = "SELECT count(*) FROM orders WHERE placed_at IS NULL"
ORPHAN_SHIPMENTS = "SELECT count(*) FROM shipments WHERE created_at IS NULL"


@pytest.fixture(scope="module")
def runner() -> ExpectationRunner:
    """One GX context for the module, as a scheduled process would keep."""
    return ExpectationRunner()


def _copy(landed_run: Path, target: Path, *, snapshot: bool = False) -> Path:
    db = target / "allocflow.duckdb"
    shutil.copy(landed_run / "allocflow.duckdb", db)
    if snapshot:
        shutil.copy(snapshot_path(landed_run / "allocflow.duckdb"), snapshot_path(db))
    return db


def _failures(run: QualityRun) -> dict[tuple[str, str], int | None]:
    return {(r.feed, r.check_name): r.unexpected_count for t in run.tables for r in t.failed}


def _count(db: Path, sql: str) -> int:
    with duckdb.connect(db, read_only=True) as con:
        found: int = con.execute(sql).fetchall()[0][0]
    return found


def _baseline(db: Path) -> dict[tuple[str, str], int | None]:
    orders, shipments = _count(db, ORPHAN_ORDERS), _count(db, ORPHAN_SHIPMENTS)
    assert orders > 0
    assert shipments > 0
    return {
        ("orders", f"{NOT_NULL}(customer_id)"): orders,
        ("orders", f"{NOT_NULL}(placed_at)"): orders,
        ("shipments", f"{NOT_NULL}(order_id)"): shipments,
        ("shipments", f"{NOT_NULL}(created_at)"): shipments,
    }


def _run(runner: ExpectationRunner, db: Path, window_hours: float | None = None) -> QualityRun:
    with duckdb.connect(db, read_only=True) as con:
        return runner.run(con, window_hours, fresh_hours=24)


def test_clean_run_fails_only_on_the_injected_orphans(
    runner: ExpectationRunner, landed_run: Path, tmp_path: Path
) -> None:
    db = _copy(landed_run, tmp_path)
    run = _run(runner, db)
    assert _failures(run) == _baseline(db)
    failed = [r for r in run.results() if not r.success]
    assert {r.severity for r in failed} == {"warning"}
    assert all(json.loads(r.sample or "[]") for r in failed)  # each names offending rows
    with duckdb.connect(db, read_only=True) as con:
        tables = dict(con.execute("SELECT 'n', count(*) FROM allocation_decisions").fetchall())
    decisions = next(t for t in run.tables if t.table == "allocation_decisions")
    assert decisions.rows == tables["n"]
    assert {t.table for t in run.tables} == {
        "orders", "order_lines", "allocation_decisions", "exceptions", "shipments",
        "carrier_events", "input_events",
    }  # fmt: skip


def test_recent_window_passes_and_selects_by_event_time(
    runner: ExpectationRunner, landed_run: Path, tmp_path: Path
) -> None:
    db = _copy(landed_run, tmp_path)
    run = _run(runner, db, window_hours=6)
    assert run.success
    assert run.window.start is not None
    with duckdb.connect(db, read_only=True) as con:
        expected = con.execute(
            "SELECT count(*) FROM input_events WHERE event_time > ? AND event_time <= ?",
            [run.window.start, run.window.end],
        ).fetchall()[0][0]
    inputs = next(t for t in run.tables if t.table == "input_events")
    assert 0 < inputs.rows == expected < _count(db, "SELECT count(*) FROM input_events")


def _corrupt(db: Path) -> dict[str, list[str]]:
    """Break rows in ways the suites must catch; return the keys broken, per breakage."""
    with duckdb.connect(db) as con:

        def keys(sql: str) -> list[str]:
            return [row[0] for row in con.execute(sql).fetchall()]

        over = keys("""SELECT decision_id FROM allocation_decisions WHERE outcome = 'allocated'
                       ORDER BY decision_id LIMIT 2""")
        con.execute(
            "UPDATE allocation_decisions SET allocated_qty = requested_qty + 1 "
            "WHERE decision_id IN (SELECT unnest(?))",
            [over],
        )
        outcome = keys("""SELECT decision_id FROM allocation_decisions WHERE outcome = 'allocated'
                          ORDER BY decision_id DESC LIMIT 1""")
        con.execute(
            "UPDATE allocation_decisions SET outcome = 'approved' WHERE decision_id = ?", outcome
        )
        # a writer without the NOT NULL constraint (or a broken snapshot) loses keys
        con.execute("ALTER TABLE exceptions ALTER COLUMN order_id DROP NOT NULL")
        keyless = keys("SELECT exception_id FROM exceptions ORDER BY exception_id LIMIT 3")
        con.execute(
            "UPDATE exceptions SET order_id = NULL WHERE exception_id IN (SELECT unnest(?))",
            [keyless],
        )
        early = keys("""SELECT shipment_id FROM shipments WHERE delivered_at IS NOT NULL
                        ORDER BY shipment_id LIMIT 4""")
        con.execute(
            "UPDATE shipments SET delivered_at = dispatched_at - INTERVAL 1 HOUR "
            "WHERE shipment_id IN (SELECT unnest(?))",
            [early],
        )
    return {"over": over, "outcome": outcome, "keyless": keyless, "early": early}


def test_corrupted_rows_fail_exactly_the_expected_expectations(
    runner: ExpectationRunner, landed_run: Path, tmp_path: Path
) -> None:
    db = _copy(landed_run, tmp_path)
    baseline = _baseline(db)
    broken = _corrupt(db)
    run = _run(runner, db)
    assert _failures(run) == {
        **baseline,
        ("allocation_decisions",
         "expect_column_pair_values_a_to_be_greater_than_b(requested_qty, allocated_qty)"): 2,
        ("allocation_decisions",
         "expect_column_pair_values_to_be_equal(allocated_plus_backordered, requested_qty)"): 2,
        ("allocation_decisions", "expect_column_values_to_be_in_set(outcome)"): 1,
        ("exceptions", f"{NOT_NULL}(order_id)"): 3,
        ("shipments",
         "expect_column_pair_values_a_to_be_greater_than_b(delivered_at, dispatched_at)"): 4,
    }  # fmt: skip
    by_check = {(r.feed, r.check_name): r for r in run.results()}
    named = by_check["exceptions", f"{NOT_NULL}(order_id)"]
    assert {e["exception_id"] for e in json.loads(named.sample or "")} == set(broken["keyless"])
    assert named.severity == "critical"
    outcome = by_check["allocation_decisions", "expect_column_values_to_be_in_set(outcome)"]
    assert json.loads(outcome.sample or "") == [
        {"outcome": "approved", "decision_id": broken["outcome"][0]}
    ]


def test_results_are_written_and_a_rerun_is_idempotent(
    runner: ExpectationRunner, landed_run: Path, tmp_path: Path
) -> None:
    db = _copy(landed_run, tmp_path)
    first = _run(runner, db)
    with duckdb.connect(db) as con:
        write_results(con, first.results())
    second = _run(runner, db)
    assert [r.result_id for r in second.results()] == [r.result_id for r in first.results()]
    with duckdb.connect(db) as con:
        write_results(con, second.results())
        rows = con.execute(
            "SELECT result_id, origin, feed, success, unexpected_count, detected_at "
            "FROM dq_results WHERE origin = 'gx' ORDER BY result_id"
        ).fetchall()
    assert len(rows) == len(first.results()) == len({r.result_id for r in first.results()})
    assert sorted(rows) == sorted(
        (r.result_id, "gx", r.feed, r.success, r.unexpected_count, first.window.end)
        for r in first.results()
    )
    windowed = _run(runner, db, window_hours=6)
    assert not {r.result_id for r in windowed.results()} & {r.result_id for r in first.results()}
    with duckdb.connect(db) as con:
        write_results(con, windowed.results())
        ranges = con.execute(
            "SELECT covers_from, covers_to, count(*) FROM dq_results WHERE origin = 'gx' "
            "GROUP BY ALL ORDER BY covers_from NULLS FIRST"
        ).fetchall()
    # each result says which landed event times it judged: all rows up to the watermark,
    # or the window's (watermark - 6 h, watermark]
    end = first.window.end
    assert ranges == [
        (None, end, len(first.results())),
        (end - timedelta(hours=6), end, len(windowed.results())),
    ]
    # GX keeps validation results in memory: only the latest run's are kept (and documented)
    for docs in (tmp_path / "docs", tmp_path / "docs-again"):
        assert runner.build_docs(docs) == docs / "index.html"
        assert len(list((docs / "validations").rglob("*.html"))) == len(windowed.tables)


def _dq_rows(db: Path) -> int:
    return _count(db, "SELECT count(*) FROM dq_results WHERE origin = 'gx'")


def test_command_exit_codes_report_and_html(
    landed_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = _copy(landed_run, tmp_path, snapshot=True)
    assert main(["quality", "run", "--db", str(db), "--window-hours", "6", "--no-write"]) == 0
    assert _dq_rows(db) == 0
    # the snapshot holds placed orders and their rows: the orphans are not in it
    html = tmp_path / "docs"
    assert main(["quality", "run", "--db", str(db), "--html", str(html)]) == 0
    out = capsys.readouterr().out
    assert f"Validated {snapshot_path(db)}, all rows up to " in out
    assert "70 expectations, 70 passed, 0 failed" in out
    assert "Read the lander's snapshot" in out
    assert "Wrote 70 results into dq_results" in out
    assert "allocation_decisions" in (html / "index.html").read_text()
    assert main(["quality", "run", "--db", str(db), "--no-snapshot"]) == 1
    out = capsys.readouterr().out
    assert f"Validated {db}, all rows up to " in out
    assert "snapshot" not in out
    orphans, shipments = _count(db, ORPHAN_SHIPMENTS), _count(db, "SELECT count(*) FROM shipments")
    assert f"shipments ({shipments:,} rows, " in out
    assert f"[warning] {NOT_NULL}(created_at): {orphans} of {shipments} rows unexpected" in out
    # same window and watermark: the same 70 result ids, now with the failures
    assert _dq_rows(db) == 70
    assert _count(db, "SELECT count(*) FROM dq_results WHERE origin = 'gx' AND NOT success") == 4
    assert main(["quality", "run", "--db", str(db), "--window-hours", "0"]) == 2
    assert main(["quality", "run", "--db", str(tmp_path / "missing.duckdb")]) == 2


def test_command_does_not_wait_for_a_held_file(
    landed_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = _copy(landed_run, tmp_path, snapshot=True)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
         "sys.stdin.read()", str(db)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        assert main(["quality", "run", "--db", str(db), "--window-hours", "6"]) == 0
    finally:
        holder.communicate("", timeout=30)
    out = capsys.readouterr().out
    assert "Results NOT written" in out
    assert "run this command again" in out
    assert _dq_rows(db) == 0
