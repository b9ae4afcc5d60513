"""The lander runs the expectation suites when landed data changed and lands their results.

Each result says which landed event-time range it covers (``covers_from``, ``covers_to``).
"""

import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from allocflow.connectors.landing.service import DataChangeTask, Lander
from allocflow.connectors.landing.snapshot import snapshot_path
from allocflow.connectors.landing.sources import KafkaLandingSource, file_batches
from allocflow.connectors.landing.writer import DuckDBWriter
from allocflow.flows.cli import main
from allocflow.flows.commands.land_cmd import LANDED_TOPICS
from allocflow.flows.settings import Settings
from allocflow.models.topics import InputTopic
from allocflow.quality.expectations import landing_watermark

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
                        [DataChangeTask("broken", 0.0, broken)])  # fmt: skip
        totals = lander.land_batches(file_batches(files, writer.next_offset, 2000))
        landed = writer.connection.execute("SELECT count(*) FROM input_events").fetchone()
    assert len(calls) == totals.batches + 1
    assert landed is not None
    assert landed[0] > 10_000
    assert totals.publications >= 1


def _gx_ranges(db: Path) -> list[tuple[datetime | None, datetime, int]]:
    """(covers_from, covers_to, results) of each landed expectation run, oldest first."""
    with duckdb.connect(str(db), read_only=True) as con:
        return [
            (start, end, count)
            for start, end, count in con.execute(
                "SELECT covers_from, covers_to, count(*) FROM dq_results WHERE origin = 'gx' "
                "GROUP BY ALL ORDER BY covers_to"
            ).fetchall()
        ]


def _watermark(db: Path) -> datetime:
    with duckdb.connect(str(db), read_only=True) as con:
        return landing_watermark(con)


def _lines(directory: Path) -> int:
    return sum(len(path.read_bytes().splitlines()) for path in directory.glob("*.jsonl"))


@pytest.mark.usefixtures("pipeline_topics")
def test_suites_catch_up_with_the_last_batches_once_the_stream_is_quiet(tmp_path: Path) -> None:
    simulate = ["simulate", "--seed", "3", "--orders", "80", "--faults", "none"]
    assert main([*simulate, "--out", str(tmp_path / "in")]) == 0
    assert main([*simulate, "--manifest", str(tmp_path / "manifest.json")]) == 0  # to Kafka
    messages = _lines(tmp_path / "in")
    settings = Settings()
    topics = {t.value: settings.topic_name(t) for t in LANDED_TOPICS}
    runs: list[tuple[datetime, int]] = []

    def note_watermark(con: duckdb.DuckDBPyConnection) -> str:
        runs.append((landing_watermark(con), lander.totals.records))
        return "noted"

    # far longer than landing these messages takes: only the quiet stream triggers a catch-up
    task = DataChangeTask("watermarks", 8.0, note_watermark)
    stop = threading.Event()
    with DuckDBWriter(tmp_path / "quiet.duckdb") as writer:
        lander = Lander(writer, None, 1.5, [task])
        source = KafkaLandingSource(settings.kafka_connection(), topics, writer.next_offset)
        follow = threading.Thread(
            target=lander.follow, args=(source, stop), kwargs={"batch_size": 200}
        )
        follow.start()
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not (runs and runs[-1][1] == messages):
                time.sleep(0.2)
            caught_up = list(runs)
        finally:
            stop.set()
            follow.join()
            source.close()
        watermark = landing_watermark(writer.connection)

    assert lander.totals.records == messages
    assert lander.totals.batches > 1
    # before the stop: the first batch, then (once quiet) everything
    assert caught_up[0][1] < messages
    assert caught_up[-1] == (watermark, messages)
    assert len({records for _, records in runs}) == len(runs)  # never twice over the same data
    assert runs == caught_up  # nothing new landed: the stop ran nothing more


@pytest.mark.usefixtures("pipeline_topics")
def test_a_finite_kafka_landing_ends_with_a_run_over_everything_landed(tmp_path: Path) -> None:
    simulate = ["simulate", "--seed", "4", "--orders", "80", "--faults", "none"]
    assert main([*simulate, "--manifest", str(tmp_path / "manifest.json")]) == 0  # to Kafka
    db = tmp_path / "finite.duckdb"

    args = ["land", "--db", str(db), "--bootstrap", Settings().kafka_connection().bootstrap_servers,
            "--until-idle", "2", "--batch-size", "300", "--quality-every", "3600",
            "--no-snapshot"]  # fmt: skip
    assert main(args) == 0

    ranges = _gx_ranges(db)
    watermark = _watermark(db)
    assert [r[:2] for r in ranges] == [(watermark - timedelta(hours=6), watermark)]
    # the results are those of the last run, over every event landed in the range (the
    # first run, after the first batch, saw only that batch)
    with duckdb.connect(str(db), read_only=True) as con:
        judged, landed = con.execute(
            """SELECT r.element_count, (SELECT count(*) FROM input_events
                                        WHERE event_time > r.covers_from
                                          AND event_time <= r.covers_to)
               FROM dq_results AS r
               WHERE r.origin = 'gx' AND r.feed = 'input_events'
                 AND r.check_name = 'expect_column_values_to_not_be_null(event_id)'"""
        ).fetchall()[0]
    assert judged == landed > 100


def test_run_with_db_validates_what_it_landed_once_at_the_end(
    landed_run: Path, tmp_path: Path
) -> None:
    db = tmp_path / "run.duckdb"
    args = ["run", "--input", str(landed_run / "in"), "--out", str(tmp_path / "out"),
            "--db", str(db), "--quality-every", "3600"]  # fmt: skip
    assert main(args) == 0

    ranges = _gx_ranges(db)
    watermark = _watermark(db)
    assert ranges[-1][:2] == (watermark - timedelta(hours=6), watermark)
    with duckdb.connect(str(snapshot_path(db)), read_only=True) as snapshot:
        published = snapshot.execute(
            "SELECT max(covers_to) FROM dq_results WHERE origin = 'gx'"
        ).fetchone()
    assert published == (watermark,)


def test_quality_every_needs_db_and_a_positive_value(landed_run: Path, tmp_path: Path) -> None:
    run = ["run", "--input", str(landed_run / "in"), "--out", str(tmp_path / "out")]
    assert main([*run, "--quality-every", "30"]) == 2
    assert main([*run, "--db", str(tmp_path / "x.duckdb"), "--quality-every", "0"]) == 2
