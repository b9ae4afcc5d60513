"""Landing from the real broker: `allocflow run --db` lands everything, once, and resumes."""

import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import pytest

from allocflow.connectors.broker import EmbeddedBroker
from allocflow.connectors.landing.snapshot import publish_snapshot, snapshot_path
from allocflow.connectors.landing.writer import DuckDBWriter
from allocflow.flows.cli import main
from allocflow.models.topics import OutputTopic

pytestmark = pytest.mark.integration


def _counts(path: Path) -> dict[str, int]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return dict(con.execute("SELECT fact, landed FROM fact_counts").fetchall())
    finally:
        con.close()


@pytest.mark.usefixtures("pipeline_topics")
def test_run_with_db_lands_every_topic_once_and_a_restart_resumes(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    simulate = ["simulate", "--seed", "5", "--orders", "150", "--faults", "all"]
    manifest = str(tmp_path / "manifest.json")
    assert main([*simulate, "--fault-rate", "0.01", "--manifest", manifest]) == 0
    assert main([*simulate, "--fault-rate", "0.01", "--out", str(tmp_path / "in")]) == 0
    db = tmp_path / "kafka.duckdb"

    assert main(["run", "--no-tail", "--db", str(db)]) == 0

    files_db = tmp_path / "files.duckdb"
    assert main(["run", "--input", str(tmp_path / "in"), "--out", str(tmp_path / "out")]) == 0
    assert main(["land", "--db", str(files_db), "--input", str(tmp_path / "in"),
                 "--out", str(tmp_path / "out"), "--no-snapshot"]) == 0  # fmt: skip
    from_kafka, from_files = _counts(db), _counts(files_db)
    for fact in ("orders", "order_lines", "allocation_decisions", "shipments", "input_events"):
        assert from_kafka[fact] == from_files[fact], fact
    assert from_kafka["dead_letters"] == from_files["dead_letters"] > 0

    con = duckdb.connect(str(db), read_only=True)
    timed, total = con.execute(
        "SELECT count(latency_ms), count(*) FROM allocation_decisions"
    ).fetchone() or (0, 0)
    hist = con.execute("SELECT sum(decisions) FROM hist_allocation_latency").fetchone()
    latency = con.execute("SELECT p50_ms FROM kpi_allocation_latency WHERE period = 'day'")
    assert latency.fetchall()
    con.close()
    assert timed == total > 0
    assert hist == (total,)
    assert snapshot_path(db).is_file()

    again = subprocess.run(
        [sys.executable, "-m", "allocflow.flows.cli", "land", "--db", str(db),
         "--bootstrap", kafka_broker.bootstrap_servers, "--until-idle", "3"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert "Landed 0 messages" in again.stdout
    assert _counts(db) == from_kafka


def test_a_replayed_file_run_lands_nothing_new(landed_run: Path, tmp_path: Path) -> None:
    db = tmp_path / "replay.duckdb"
    args = ["land", "--db", str(db), "--input", str(landed_run / "in"),
            "--out", str(landed_run / "out"), "--no-snapshot"]  # fmt: skip
    assert main(args) == 0
    first = _counts(db)
    kpis = duckdb.connect(str(db), read_only=True)
    before = kpis.execute("SELECT * FROM kpi_fill_rate ORDER BY ALL").fetchall()
    kpis.close()
    copy = tmp_path / "copy"
    copy.mkdir()
    for topic in OutputTopic:
        source = landed_run / "out" / f"{topic.value}.jsonl"
        if source.is_file():
            (copy / source.name).write_bytes(source.read_bytes())
    reproduced = [
        "land", "--db", str(db), "--input", str(landed_run / "in"), "--out", str(copy),
        "--no-snapshot",
    ]  # fmt: skip
    assert main(reproduced) == 0
    assert _counts(db) == first
    kpis = duckdb.connect(str(db), read_only=True)
    assert kpis.execute("SELECT * FROM kpi_fill_rate ORDER BY ALL").fetchall() == before
    kpis.close()


def test_a_file_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    with DuckDBWriter(db) as writer:
        writer.connection.execute(
            "INSERT INTO landing_status (id, schema_version, batches, records, skipped, "
            "landed_at) VALUES (1, 999, 0, 0, 0, now())"
        )
    args = ["land", "--db", str(db), "--input", str(tmp_path), "--no-snapshot"]
    assert main(args) == 2


def test_a_file_of_schema_version_3_is_refused_with_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Version 4 keys input events by topic and widens quantities: a v3 file is not reused."""
    db = tmp_path / "v3.duckdb"
    con = duckdb.connect(str(db))
    con.execute(
        "CREATE TABLE landing_status (id INTEGER PRIMARY KEY, schema_version INTEGER NOT NULL, "
        "batches BIGINT NOT NULL, records BIGINT NOT NULL, skipped BIGINT NOT NULL, "
        "watermark TIMESTAMP, newest_message_at TIMESTAMP, landed_at TIMESTAMP NOT NULL)"
    )
    con.execute("INSERT INTO landing_status VALUES (1, 3, 1, 10, 0, NULL, NULL, now())")
    con.close()
    args = ["land", "--db", str(db), "--input", str(tmp_path), "--no-snapshot"]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "schema version 3" in error
    assert "land into a new file" in error


def test_readers_of_the_snapshot_never_fail_while_it_is_republished(
    landed_run: Path, tmp_path: Path
) -> None:
    db = tmp_path / "live.duckdb"
    db.write_bytes((landed_run / "allocflow.duckdb").read_bytes())
    target = snapshot_path(db)
    errors: list[Exception] = []
    reads: list[int] = []
    done = threading.Event()

    def read_continuously() -> None:
        while not done.is_set():
            try:
                con = duckdb.connect(str(target), read_only=True)
                row = con.execute("SELECT sum(lines_decided) FROM kpi_fill_rate").fetchone()
                con.close()
                reads.append(int(row[0]) if row else 0)
            except duckdb.Error as error:
                errors.append(error)

    with DuckDBWriter(db) as writer:
        publish_snapshot(writer.connection, target)
        reader = threading.Thread(target=read_continuously)
        reader.start()
        for _ in range(15):
            publish_snapshot(writer.connection, target)
        done.set()
        reader.join()
    assert errors == []
    assert len(reads) > 15
    assert len(set(reads)) == 1
