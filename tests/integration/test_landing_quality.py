"""The lander runs the expectation suites on a schedule and lands their results."""

from pathlib import Path

import duckdb
import pytest

from allocflow.connectors.landing.service import Lander, PeriodicTask
from allocflow.connectors.landing.snapshot import snapshot_path
from allocflow.connectors.landing.sources import file_batches
from allocflow.connectors.landing.writer import DuckDBWriter
from allocflow.flows.cli import main
from allocflow.models.topics import InputTopic

pytestmark = pytest.mark.integration


def test_scheduled_suites_land_their_results_and_reach_the_snapshot(
    landed_run: Path, tmp_path: Path
) -> None:
    db = tmp_path / "quality.duckdb"
    args = ["land", "--db", str(db), "--input", str(landed_run / "in"),
            "--out", str(landed_run / "out"), "--quality-every", "3600"]  # fmt: skip
    assert main(args) == 0
    with duckdb.connect(str(snapshot_path(db)), read_only=True) as snapshot:
        rows = snapshot.execute(
            "SELECT count(*), count(DISTINCT feed) FROM dq_results WHERE origin = 'gx'"
        ).fetchone()
        counts = snapshot.execute(
            "SELECT sum(results) FROM dq_result_counts WHERE origin = 'gx'"
        ).fetchone()
    assert rows is not None
    assert rows[0] > 50
    assert rows[1] == 7
    assert counts == (rows[0],)


def test_a_failing_task_does_not_stop_landing(landed_run: Path, tmp_path: Path) -> None:
    calls: list[int] = []

    def broken(con: duckdb.DuckDBPyConnection) -> str:
        calls.append(1)
        con.begin()
        raise RuntimeError("validation trouble")

    files = {t.value: landed_run / "in" / f"{t.value}.jsonl" for t in InputTopic}
    with DuckDBWriter(tmp_path / "robust.duckdb") as writer:
        lander = Lander(writer, snapshot_path(tmp_path / "robust.duckdb"), 1.5,
                        [PeriodicTask("broken", 0.0, broken)])  # fmt: skip
        totals = lander.land_batches(file_batches(files, writer.next_offset, 2000))
        landed = writer.connection.execute("SELECT count(*) FROM input_events").fetchone()
    assert len(calls) == totals.batches + 1
    assert landed is not None
    assert landed[0] > 10_000
    assert totals.publications >= 1
