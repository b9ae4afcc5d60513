"""Event times outside the accepted range, through the real allocation flow over files.

One far-future event in the middle of a feed used to push the rest of its feed behind
every other feed (the merge orders each file by its running maximum event time), so it
changed half the decisions and raised false late and orphan alerts. Now it is
dead-lettered as ``EVENT_TIME_OUT_OF_RANGE`` and every other output is unchanged.
"""

import json
import shutil
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from bytewax.testing import run_main
from confluent_kafka import Producer

from allocflow.connectors.broker import EmbeddedBroker
from allocflow.connectors.kafka_config import KafkaConnection
from allocflow.connectors.kafka_io import read_topic
from allocflow.connectors.policy_file import default_policy
from allocflow.flows.allocation import (
    ALLOCATION_INPUTS,
    AllocationFlowConfig,
    FileEndpoints,
    build_allocation_flow,
)
from allocflow.flows.cli import main
from allocflow.flows.commands.run_accounting import account_run, input_files
from allocflow.models.codec import decode_event
from allocflow.models.dead_letter import DeadLetterReason, DeadLetterRecord
from allocflow.models.event_time import EventTimeRange
from allocflow.models.topics import InputTopic, OutputTopic
from allocflow.quality.accounting import account

pytestmark = pytest.mark.integration

OUTPUTS = [topic.value for topic in OutputTopic if topic is not OutputTopic.DEAD_LETTER]


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stream")
    simulate = ["simulate", "--seed", "7", "--orders", "300", "--faults", "none"]
    assert main([*simulate, "--out", str(out), "--no-progress"]) == 0
    return out


def _copy(stream: Path, target: Path) -> Path:
    target.mkdir()
    for topic in ALLOCATION_INPUTS:
        shutil.copy(stream / f"{topic.value}.jsonl", target / f"{topic.value}.jsonl")
    return target


def _insert(path: Path, index: int, line: bytes) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([*lines[:index], line + b"\n", *lines[index:]]))


def _run(inputs: Path, out: Path, event_times: EventTimeRange | None = None) -> None:
    config = AllocationFlowConfig(
        default_policy(), FileEndpoints(inputs, out), event_times=event_times or EventTimeRange()
    )
    run_main(build_allocation_flow(config))


def _outputs(out: Path) -> dict[str, Counter[str]]:
    found = {}
    for topic in OUTPUTS:
        path = out / f"{topic}.jsonl"
        found[topic] = Counter(path.read_text().splitlines() if path.exists() else [])
    return found


def _dead_letters(out: Path) -> list[DeadLetterRecord]:
    path = out / f"{OutputTopic.DEAD_LETTER.value}.jsonl"
    if not path.exists():
        return []
    return [DeadLetterRecord.model_validate_json(line) for line in path.read_bytes().splitlines()]


def _cancellation(order_id: str, moment: str) -> bytes:
    document = {
        "event_id": "evt-from-the-future",
        "event_time": moment,
        "source": "erp",
        "event_type": "order.cancelled",
        "order_id": order_id,
        "reason": "clock of the sending system set to 2099",
    }
    return json.dumps(document).encode()


def _placed_order_before(path: Path, index: int) -> str:
    for line in reversed(path.read_bytes().splitlines()[:index]):
        document = json.loads(line)
        if document["event_type"] == "order.placed":
            return str(document["order_id"])
    raise AssertionError("no order placed before the middle of the file")


def _landed(db: Path) -> tuple[int, object, list[tuple[object, ...]]]:
    with duckdb.connect(str(db), read_only=True) as con:
        inputs = con.sql("SELECT count(*) FROM input_events").fetchall()[0][0]
        watermark = con.sql("SELECT watermark FROM landing_status").fetchall()[0][0]
        future = con.sql(
            "SELECT event_id FROM input_events WHERE event_id = 'evt-from-the-future' "
            "UNION ALL SELECT order_id FROM orders WHERE cancelled_at >= '2099-01-01'"
        ).fetchall()
    return inputs, watermark, future


def test_an_event_held_out_for_its_event_time_is_not_landed(stream: Path, tmp_path: Path) -> None:
    clean = _copy(stream, tmp_path / "clean")
    poisoned = _copy(stream, tmp_path / "poisoned")
    orders = poisoned / "orders.jsonl"
    middle = len(orders.read_bytes().splitlines()) // 2
    _insert(
        orders, middle, _cancellation(_placed_order_before(orders, middle), "2099-01-01T00:00:00Z")
    )

    for name, inputs in (("clean", clean), ("poisoned", poisoned)):
        args = ["run", "--input", str(inputs), "--out", str(tmp_path / f"{name}-out")]
        assert main([*args, "--db", str(tmp_path / f"{name}.duckdb"), "--workers", "1"]) == 0

    assert _landed(tmp_path / "poisoned.duckdb") == _landed(tmp_path / "clean.duckdb")
    with duckdb.connect(str(tmp_path / "poisoned.duckdb"), read_only=True) as con:
        dead = con.sql("SELECT reason_code, source_topic, source_offset FROM dead_letters")
        assert dead.fetchall() == [("EVENT_TIME_OUT_OF_RANGE", "orders", middle)]


@pytest.mark.parametrize("where", ["middle", "first"])
def test_one_far_future_event_changes_no_other_output(
    stream: Path, tmp_path: Path, where: str
) -> None:
    clean = _copy(stream, tmp_path / "clean")
    poisoned = _copy(stream, tmp_path / "poisoned")
    orders = poisoned / "orders.jsonl"
    middle = len(orders.read_bytes().splitlines()) // 2
    index = middle if where == "middle" else 0
    order_id = _placed_order_before(orders, middle)
    future = _cancellation(order_id, "2099-01-01T00:00:00Z")
    _insert(orders, index, future)

    _run(clean, tmp_path / "clean-out")
    _run(poisoned, tmp_path / "poisoned-out")

    assert _outputs(tmp_path / "poisoned-out") == _outputs(tmp_path / "clean-out")
    assert _dead_letters(tmp_path / "clean-out") == []
    (dead,) = _dead_letters(tmp_path / "poisoned-out")
    assert dead.reason_code is DeadLetterReason.EVENT_TIME_OUT_OF_RANGE
    assert (dead.source_topic, dead.offset, dead.raw) == ("orders", index, future)
    assert dead.event_id == "evt-from-the-future"
    assert [error.field for error in dead.errors] == ["event_time"]
    assert "2099-01-01T00:00:00+00:00" in dead.reason
    accounting = account_run(input_files(poisoned, ALLOCATION_INPUTS), tmp_path / "poisoned-out")
    clean_accounting = account_run(input_files(clean, ALLOCATION_INPUTS), tmp_path / "clean-out")
    assert accounting.dead_lettered == {"EVENT_TIME_OUT_OF_RANGE": 1}
    assert accounting.inputs == clean_accounting.inputs + 1
    assert accounting.valid == clean_accounting.valid


def test_an_event_before_the_earliest_accepted_time_is_dead_lettered(
    stream: Path, tmp_path: Path
) -> None:
    inputs = _copy(stream, tmp_path / "in")
    orders = inputs / "orders.jsonl"
    middle = len(orders.read_bytes().splitlines()) // 2
    old = _cancellation(_placed_order_before(orders, middle), "2025-12-31T23:59:59Z")
    _insert(orders, middle, old)
    narrow = EventTimeRange(earliest=datetime(2026, 1, 1, tzinfo=UTC))

    _run(inputs, tmp_path / "out", narrow)

    (dead,) = _dead_letters(tmp_path / "out")
    assert dead.reason_code is DeadLetterReason.EVENT_TIME_OUT_OF_RANGE
    assert dead.raw == old
    assert "before the earliest accepted 2026-01-01T00:00:00+00:00" in dead.reason


def test_the_run_command_takes_the_range_from_the_settings(
    stream: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    inputs = _copy(stream, tmp_path / "in")
    monkeypatch.setenv("ALLOCFLOW_EVENT_TIME_LATEST", "2026-03-03T00:00:00Z")

    assert main(["run", "--input", str(inputs), "--out", str(tmp_path / "out")]) == 0

    dead = _dead_letters(tmp_path / "out")
    assert dead
    assert {record.reason_code for record in dead} == {DeadLetterReason.EVENT_TIME_OUT_OF_RANGE}
    report = capsys.readouterr().out
    assert f"dead-lettered by reason: EVENT_TIME_OUT_OF_RANGE {len(dead)}" in report


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"ALLOCFLOW_EVENT_TIME_MAX_SKEW_S": "inf"}, "event_time_max_skew_s"),
        ({"ALLOCFLOW_EVENT_TIME_MAX_SKEW_S": "0"}, "event_time_max_skew_s"),
        ({"ALLOCFLOW_EVENT_TIME_EARLIEST": "1900-01-01T00:00:00Z"}, "event_time_earliest"),
        ({"ALLOCFLOW_EVENT_TIME_EARLIEST": "2026-01-01T00:00:00"}, "event_time_earliest"),
        ({"ALLOCFLOW_EVENT_TIME_LATEST": "9999-12-31T00:00:00Z"}, "event_time_latest"),
        (
            {
                "ALLOCFLOW_EVENT_TIME_EARLIEST": "2100-01-01T00:00:00Z",
                "ALLOCFLOW_EVENT_TIME_LATEST": "2050-01-01T00:00:00Z",
            },
            "event_time_earliest (2100-01-01T00:00:00+00:00) must be before event_time_latest",
        ),
    ],
)
def test_a_bad_range_setting_stops_the_run_at_start_naming_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    environment: dict[str, str],
    message: str,
) -> None:
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    for topic in ALLOCATION_INPUTS:
        (tmp_path / f"{topic.value}.jsonl").write_bytes(b"")
    args = ["run", "--input", str(tmp_path), "--out", str(tmp_path / "out")]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _produce_stream(connection: KafkaConnection, directory: Path, names: dict[str, str]) -> None:
    """Produce every input file line by line, keyed as the contract says."""
    producer = Producer(connection.producer_config())
    for topic in ALLOCATION_INPUTS:
        for line in (directory / f"{topic.value}.jsonl").read_bytes().splitlines():
            key = decode_event(topic, line).message_key().encode()
            producer.produce(names[topic.value], line, key)
            producer.poll(0)
    assert producer.flush(60) == 0


def _kafka_run(
    broker: EmbeddedBroker, directory: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Counter[bytes]]:
    suffix = uuid.uuid4().hex[:8]
    names = {topic.value: f"{topic.value}-{suffix}" for topic in (*InputTopic, *OutputTopic)}
    broker.create_topics(names.values(), partitions=4)
    for topic in (*InputTopic, *OutputTopic):
        monkeypatch.setenv(f"ALLOCFLOW_TOPIC_{topic.name}", names[topic.value])
    monkeypatch.setenv("ALLOCFLOW_BOOTSTRAP_SERVERS", broker.bootstrap_servers)
    connection = broker.connection()
    _produce_stream(connection, directory, names)
    assert main(["run", "--no-tail"]) == 0
    return {
        topic.value: Counter(
            record.value or b"" for record in read_topic(connection, names[topic.value])
        )
        for topic in OutputTopic
    }


def test_one_far_future_event_changes_no_other_output_on_kafka(
    kafka_broker: EmbeddedBroker,
    stream: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    poisoned = _copy(stream, tmp_path / "poisoned")
    orders = poisoned / "orders.jsonl"
    middle = len(orders.read_bytes().splitlines()) // 2
    future = _cancellation(_placed_order_before(orders, middle), "2099-01-01T00:00:00Z")
    _insert(orders, middle, future)

    clean_outputs = _kafka_run(kafka_broker, stream, monkeypatch)
    poisoned_outputs = _kafka_run(kafka_broker, poisoned, monkeypatch)

    dead_letter = OutputTopic.DEAD_LETTER.value
    assert clean_outputs.pop(dead_letter) == Counter()
    (raw,) = poisoned_outputs.pop(dead_letter)
    dead = DeadLetterRecord.model_validate_json(raw)
    assert dead.reason_code is DeadLetterReason.EVENT_TIME_OUT_OF_RANGE
    assert dead.raw == future
    assert poisoned_outputs == clean_outputs
    assert sum(clean_outputs[OutputTopic.ALLOCATION_DECISIONS.value].values()) > 1000


def test_the_gate_accounting_counts_a_screened_event_as_dead_lettered(
    stream: Path, tmp_path: Path
) -> None:
    inputs = _copy(stream, tmp_path / "in")
    shutil.copy(stream / "manifest.json", inputs / "manifest.json")
    orders = inputs / "orders.jsonl"
    middle = len(orders.read_bytes().splitlines()) // 2
    _insert(
        orders, middle, _cancellation(_placed_order_before(orders, middle), "2099-01-01T00:00:00Z")
    )

    accounting = account(inputs)
    clean = account(stream)

    assert accounting.balanced
    assert accounting.inputs == clean.inputs + 1
    assert accounting.dead_lettered == clean.dead_lettered + 1
    assert accounting.valid == clean.valid
    assert accounting.alerts == clean.alerts
