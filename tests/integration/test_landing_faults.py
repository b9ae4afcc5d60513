"""Write failures while landing: one clear line, a non-zero exit, nothing half-landed.

The faults are real: a file-size limit (``RLIMIT_FSIZE``, what a full disk looks like
to DuckDB: a write fails half-way) on the ``allocflow land`` process, and a snapshot
path that a directory already holds.
"""

import resource
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from allocflow.connectors.landing.aggregates import AGGREGATES, recompute_sql
from allocflow.connectors.landing.schema import FACT_TABLES
from allocflow.connectors.landing.snapshot import snapshot_path
from allocflow.flows.cli import main

pytestmark = pytest.mark.integration

_FILE_SIZE_LIMIT = 1_000_000
"""Bytes any file of the limited process may grow to: some batches fit, not all."""
_STATE_TABLES = ("landing_offsets", "landing_status")


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated input stream and its clean landing (``reference.duckdb``)."""
    root = tmp_path_factory.mktemp("faults")
    assert main(["simulate", "--seed", "3", "--orders", "300", "--out", str(root / "in")]) == 0
    assert main(_land(root / "reference.duckdb", root / "in")) == 0
    return root


def _land(db: Path, inputs: Path) -> list[str]:
    return ["land", "--db", str(db), "--input", str(inputs), "--batch-size", "300", "--no-snapshot"]


def _limit_file_size() -> None:
    """In the child: writes past the limit fail with EFBIG instead of killing it."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (_FILE_SIZE_LIMIT, _FILE_SIZE_LIMIT))


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def _differences(con: duckdb.DuckDBPyConnection, left: str, right: str) -> int:
    return _scalar(
        con,
        f"SELECT (SELECT count(*) FROM (({left}) EXCEPT ALL ({right}))) "
        f"+ (SELECT count(*) FROM (({right}) EXCEPT ALL ({left})))",
    )


def test_a_full_disk_stops_landing_with_one_line_and_a_rerun_completes_it(
    stream: Path, tmp_path: Path
) -> None:
    db = tmp_path / "full.duckdb"
    limited = subprocess.run(
        [sys.executable, "-m", "allocflow.flows.cli", *_land(db, stream / "in")],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limit_file_size,
        check=False,
    )
    lines = limited.stderr.strip().splitlines()
    assert limited.returncode == 1, limited.stderr
    assert len(lines) == 1, limited.stderr
    assert lines[0].startswith(f"allocflow land: could not land a batch of 300 messages into {db}")
    assert "nothing of the batch landed" in lines[0]
    assert "run the same command again" in lines[0]

    with duckdb.connect(str(db), read_only=True) as con:
        landed = _scalar(con, "SELECT records FROM landing_status")
        assert landed == _scalar(con, "SELECT sum(next_offset) FROM landing_offsets")
        assert landed == _scalar(con, "SELECT count(*) FROM input_events")
        assert landed % 300 == 0
        with duckdb.connect(str(stream / "reference.duckdb"), read_only=True) as reference:
            total = _scalar(reference, "SELECT records FROM landing_status")
        assert 0 < landed < total

    assert main(_land(db, stream / "in")) == 0
    with duckdb.connect(str(db), read_only=True) as con:
        con.execute(f"ATTACH '{stream / 'reference.duckdb'}' AS ref (READ_ONLY)")
        for table in FACT_TABLES:
            if table not in _STATE_TABLES:
                assert _differences(con, f"FROM main.{table}", f"FROM ref.{table}") == 0, table
        for aggregate in AGGREGATES:
            assert _differences(con, f"FROM {aggregate.table}", recompute_sql(aggregate)) == 0
        assert _scalar(con, "SELECT records FROM landing_status") == total


def test_a_snapshot_that_cannot_be_published_stops_landing_and_leaves_no_partial_file(
    stream: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "blocked.duckdb"
    blocker = snapshot_path(db)
    blocker.mkdir()
    (blocker / "keep").write_text("a directory holds the snapshot path")
    args = ["land", "--db", str(db), "--input", str(stream / "in"), "--batch-size", "300"]

    assert main(args) == 1

    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        f"allocflow land: could not publish the dashboard snapshot {blocker}"
    )
    assert "every landed batch is safe" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocked.duckdb", blocker.name]
    with duckdb.connect(str(db), read_only=True) as con:
        landed = _scalar(con, "SELECT records FROM landing_status")
        assert landed == _scalar(con, "SELECT sum(next_offset) FROM landing_offsets") > 0
