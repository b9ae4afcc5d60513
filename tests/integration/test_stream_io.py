"""allocflow's Bytewax sources and sinks, run in real dataflows against files and the broker."""

import logging
import pickle
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
import orjson
import pytest
from bytewax.connectors.kafka import KafkaError, KafkaSourceMessage
from bytewax.connectors.kafka import operators as kop
from bytewax.dataflow import Dataflow
from bytewax.errors import BytewaxRuntimeError
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main
from confluent_kafka import TIMESTAMP_CREATE_TIME
from confluent_kafka import KafkaError as ConfluentKafkaError

from allocflow.connectors.broker import EmbeddedBroker, free_port
from allocflow.connectors.kafka_config import KafkaConnection
from allocflow.connectors.kafka_io import CheckedProducer, DeliveryError, read_topic
from allocflow.connectors.simulator.engine import SimulationConfig
from allocflow.connectors.simulator.faults import FaultPlan
from allocflow.connectors.simulator.output import FileSink
from allocflow.connectors.simulator.runner import SimulationRequest, run_simulation
from allocflow.connectors.stream_sinks import CheckedKafkaSink, JsonLinesSink, write_json_lines
from allocflow.connectors.stream_sources import (
    KAFKA_SEQUENCE,
    MergedFileSource,
    RawMessage,
    SourceError,
    event_time_of,
    kafka_source,
)
from allocflow.models.codec import UTF8_BOM
from allocflow.models.topics import InputTopic

pytestmark = pytest.mark.integration

# Three files: a malformed line, a naive timestamp, a UTC offset, a late line, a tie
# across files, exact bytes with spaces and non-ASCII, and a last line without newline.
ORDERS = [
    b'{"event_id":"o1","event_time":"2026-03-02T06:00:00Z"}',
    b'{"event_id":"o2","event_time":"2026-03-02T06:05:00Z"}',
    b'{"event_id":"o3","event_time":',
    b'{"event_id":"o4","event_time":"2026-03-02T06:20:00+00:00"}',
]
RESERVATIONS = [
    b'{"event_id":"r1","event_time":"2026-03-02T06:05:00Z"}',
    b'{"event_id":"r2","event_time":"2026-03-02T05:00:00Z"}',
    b'{"event_id":"r3","event_time":"2026-03-02T07:00:00Z"}',
]
SHIPMENTS = [
    b'{"event_id":"s0","event_time":"2026-03-02T05:59:00"}',
    b'{"event_id":"s1","event_time":"2026-03-02T06:10:00+01:00"}',
    b'{"event_id":"s2","event_time":"2026-03-02T06:10:00Z"}',
    '{"event_id": "s3",  "event_time": "2026-03-02T06:30:00Z", "note": "Müller"}  '.encode(),
]
EXPECTED_ORDER = [
    ("shipments", 0),  # naive time: unreadable, the beginning of time
    ("shipments", 1),  # 05:10Z
    ("orders", 0),  # 06:00
    ("orders", 1),  # 06:05, file rank 0 wins the tie
    ("orders", 2),  # malformed: takes 06:05 from its predecessor
    ("reservations", 0),  # 06:05, rank 1
    ("reservations", 1),  # late (05:00): stays behind its predecessor at 06:05
    ("shipments", 2),  # 06:10
    ("orders", 3),  # 06:20
    ("shipments", 3),  # 06:30
    ("reservations", 2),  # 07:00
]


@pytest.fixture
def hand_files(tmp_path: Path) -> dict[str, Path]:
    files = {}
    for topic, lines in (
        ("orders", ORDERS),
        ("reservations", RESERVATIONS),
        ("shipments", SHIPMENTS),
    ):
        path = tmp_path / f"{topic}.jsonl"
        ending = b"" if topic == "shipments" else b"\n"
        path.write_bytes(b"\n".join(lines) + ending)
        files[topic] = path
    return files


def _expected_messages() -> list[RawMessage]:
    lines = {"orders": ORDERS, "reservations": RESERVATIONS, "shipments": SHIPMENTS}
    return [
        RawMessage(topic, None, index, None, lines[topic][index], None, sequence)
        for sequence, (topic, index) in enumerate(EXPECTED_ORDER)
    ]


def _run_source(files: dict[str, Path], batch_size: int = 1000) -> list[RawMessage]:
    got: list[RawMessage] = []
    flow = Dataflow("merge")
    merged = op.input("files", flow, MergedFileSource(files, batch_size=batch_size))
    op.output("out", merged, TestingSink(got))
    run_main(flow)
    return got


def test_file_lines_come_out_merged_by_event_time_with_exact_bytes(
    hand_files: dict[str, Path],
) -> None:
    assert _run_source(hand_files, batch_size=3) == _expected_messages()


def test_event_time_is_read_only_when_aware() -> None:
    assert event_time_of(ORDERS[0]) is not None
    assert event_time_of(SHIPMENTS[0]) is None
    assert event_time_of(ORDERS[2]) is None
    assert event_time_of(b'{"event_time": "yesterday"}') is None
    assert event_time_of(b'["event_time"]') is None


class _CrashAt:
    """A mapper that raises on the item with a given sequence, until disarmed."""

    def __init__(self, sequence: int) -> None:
        self.sequence = sequence
        self.armed = True

    def __call__(self, message: RawMessage) -> RawMessage:
        if self.armed and message.sequence == self.sequence:
            raise RuntimeError("simulated crash")
        return message


def _replay_flow(
    files: dict[str, Path], crash: _CrashAt, got: list[RawMessage], out: Path
) -> Dataflow:
    flow = Dataflow("replay")
    merged = op.input("files", flow, MergedFileSource(files, batch_size=2))
    passed = op.map("crash", merged, crash)
    op.output("out", passed, TestingSink(got))
    write_json_lines("file", op.map("value", passed, _value_of), out)
    return flow


def _value_of(message: RawMessage) -> bytes:
    return message.value


def test_a_byte_order_mark_at_the_start_of_a_file_keeps_the_line_and_its_time(
    tmp_path: Path,
) -> None:
    orders = tmp_path / "orders.jsonl"
    shipments = tmp_path / "shipments.jsonl"
    orders.write_bytes(UTF8_BOM + ORDERS[1] + b"\n" + ORDERS[3] + b"\n")
    shipments.write_bytes(SHIPMENTS[2] + b"\n")

    got = _run_source({"orders": orders, "shipments": shipments})

    assert event_time_of(UTF8_BOM + ORDERS[1]) == event_time_of(ORDERS[1])
    # 06:05 (after the BOM), then 06:10, then 06:20: the BOM line is merged by its time.
    assert [(m.topic, m.offset) for m in got] == [("orders", 0), ("shipments", 0), ("orders", 1)]
    assert got[0].value == UTF8_BOM + ORDERS[1]
    assert all(m.time_problem is None for m in got)


def test_replay_resumes_after_a_crash_without_loss_or_duplicate_lines(
    hand_files: dict[str, Path], tmp_path: Path
) -> None:
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)
    out = tmp_path / "out" / "replayed.jsonl"
    crash = _CrashAt(sequence=7)
    expected = _expected_messages()

    first: list[RawMessage] = []
    with pytest.raises(BytewaxRuntimeError):
        run_main(
            _replay_flow(hand_files, crash, first, out),
            epoch_interval=timedelta(0),
            recovery_config=RecoveryConfig(str(recovery)),
        )
    crash.armed = False
    second: list[RawMessage] = []
    run_main(
        _replay_flow(hand_files, crash, second, out),
        epoch_interval=timedelta(0),
        recovery_config=RecoveryConfig(str(recovery)),
    )

    resumed_at = second[0].sequence
    assert 0 < resumed_at <= len(first)
    assert first == expected[: len(first)]
    assert second == expected[resumed_at:]
    assert out.read_bytes() == b"".join(message.value + b"\n" for message in expected)


def test_resumed_partition_skips_what_was_emitted(hand_files: dict[str, Path]) -> None:
    source = MergedFileSource(hand_files, batch_size=4)
    part = source.build_part("files", "merged", None)
    first = part.next_batch()
    snapshot = part.snapshot()
    part.close()

    resumed = source.build_part("files", "merged", snapshot)
    rest = resumed.next_batch() + resumed.next_batch()
    with pytest.raises(StopIteration):
        resumed.next_batch()
    resumed.close()

    assert snapshot == 4
    assert first + rest == _expected_messages()
    with pytest.raises(ValueError, match="cannot resume at message 12"):
        source.build_part("files", "merged", 12)


def test_a_simulated_run_merges_every_line_once_in_event_time_order(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    request = SimulationRequest(
        config=SimulationConfig(seed=5, orders=200),
        faults=FaultPlan.parse("all", 0.01),
        scenarios=[],
        progress=False,
    )
    manifest = run_simulation(request, FileSink(out))
    files = {topic.value: out / f"{topic.value}.jsonl" for topic in InputTopic}

    merged = _run_source(files)

    lines = {topic: path.read_bytes().splitlines() for topic, path in files.items()}
    assert [m.sequence for m in merged] == list(range(sum(map(len, lines.values()))))
    for topic, topic_lines in lines.items():
        in_topic = [m for m in merged if m.topic == topic]
        assert [m.offset for m in in_topic] == list(range(len(topic_lines))), topic
        assert [m.value for m in in_topic] == topic_lines, topic
    redelivered = _redelivered(manifest)
    assert redelivered
    times = [
        event_time
        for m in merged
        if (m.topic, m.offset) not in redelivered and (event_time := event_time_of(m.value))
    ]
    assert len(times) > 1000
    assert times == sorted(times)


def _redelivered(manifest: dict[str, Any]) -> set[tuple[str, int]]:
    """Messages that arrive after newer ones by design: late ones and duplicates."""
    return {
        (entry["topic"], entry["index"])
        for kind in ("late", "duplicate")
        for entry in manifest["faults"][kind]["messages"]
    }


def _produce(connection: KafkaConnection, topic: str, count: int) -> list[tuple[bytes, bytes]]:
    producer = CheckedProducer(connection)
    sent = [(f"sku-{n % 13}".encode(), f'{{"n": {n}}}'.encode()) for n in range(count)]
    for key, value in sent:
        producer.produce(topic, value, key=key)
    producer.close(timeout_s=30)
    return sent


def test_kafka_source_reads_every_partition_with_logical_names(
    kafka_broker: EmbeddedBroker, unique_topic: str
) -> None:
    connection = kafka_broker.connection()
    other = f"{unique_topic}-other"
    kafka_broker.create_topics([unique_topic, other], partitions=4)
    sent = _produce(connection, unique_topic, 400)
    sent_other = _produce(connection, other, 30)
    messages: list[RawMessage] = []
    errors: list[SourceError] = []
    flow = Dataflow("kafka_read")
    read = kafka_source(
        flow,
        "kafka",
        connection,
        {"orders": unique_topic, "reservations": other},
        batch_size=50,
        tail=False,
    )
    op.output("messages", read.messages, TestingSink(messages))
    op.output("errors", read.errors, TestingSink(errors))

    run_main(flow)

    assert errors == []
    by_topic = {
        topic: Counter((m.key, m.value) for m in messages if m.topic == topic)
        for topic in ("orders", "reservations")
    }
    assert by_topic == {"orders": Counter(sent), "reservations": Counter(sent_other)}
    assert {m.partition for m in messages if m.topic == "orders"} == {0, 1, 2, 3}
    assert all(m.sequence == KAFKA_SEQUENCE and m.timestamp_ms for m in messages)
    for partition in range(4):
        offsets = [m.offset for m in messages if (m.topic, m.partition) == ("orders", partition)]
        assert offsets == list(range(len(offsets)))


def test_kafka_source_logs_and_emits_every_consumer_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    good = KafkaSourceMessage(
        key=b"k",
        value=b"v",
        topic="orders-prod",
        offset=7,
        partition=2,
        timestamp=(TIMESTAMP_CREATE_TIME, 1_700_000_000_000),
    )
    failure = KafkaError(
        ConfluentKafkaError(ConfluentKafkaError.UNKNOWN_TOPIC_OR_PART, "no such partition"),
        KafkaSourceMessage(key=None, value=None, topic="orders-prod", partition=3),
    )
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(kop, "input", _fake_input(calls, [good], [failure]))
    connection = KafkaConnection(
        "broker:9092", security={"security.protocol": "SSL"}, extra={"fetch.min.bytes": "1"}
    )
    messages: list[RawMessage] = []
    errors: list[SourceError] = []
    flow = Dataflow("kafka_errors")
    read = kafka_source(flow, "kafka", connection, {"orders": "orders-prod"})
    op.output("messages", read.messages, TestingSink(messages))
    op.output("errors", read.errors, TestingSink(errors))

    with caplog.at_level(logging.ERROR):
        run_main(flow)

    assert messages == [RawMessage("orders", 2, 7, b"k", b"v", 1_700_000_000_000, -1)]
    assert errors == [
        SourceError(
            "orders",
            3,
            None,
            ConfluentKafkaError.UNKNOWN_TOPIC_OR_PART,
            "UNKNOWN_TOPIC_OR_PART",
            "no such partition",
        )
    ]
    assert "topic orders partition 3" in caplog.text
    assert "no such partition" in caplog.text
    (call,) = calls
    assert call["topics"] == ["orders-prod"]
    assert call["brokers"] == ["broker:9092"]
    assert call["tail"] is True
    config = call["add_config"]
    assert config["security.protocol"] == "SSL"
    assert config["fetch.min.bytes"] == "1"
    assert not {"group.id", "enable.auto.commit", "enable.partition.eof"} & set(config)


def _fake_input(
    calls: list[dict[str, Any]], oks: list[Any], errs: list[Any]
) -> Callable[..., kop.KafkaOpOut[Any, Any]]:
    """Stand in for ``kop.input``: record its arguments, emit the given items."""

    def fake(step_id: str, flow: Dataflow, **kwargs: Any) -> kop.KafkaOpOut[Any, Any]:
        calls.append(kwargs)
        return kop.KafkaOpOut(
            op.input(f"{step_id}_oks", flow, TestingSource(oks)),
            op.input(f"{step_id}_errs", flow, TestingSource(errs)),
        )

    return fake


def test_checked_kafka_sink_delivers_every_item(
    kafka_broker: EmbeddedBroker, unique_topic: str
) -> None:
    connection = kafka_broker.connection()
    kafka_broker.create_topics([unique_topic], partitions=4)
    items = [
        (None if n % 10 == 0 else f"order-{n % 17}", f'{{"n":{n}}}'.encode()) for n in range(1500)
    ]
    flow = Dataflow("kafka_write")
    op.output(
        "out",
        op.input("in", flow, TestingSource(items, batch_size=100)),
        CheckedKafkaSink(connection, unique_topic),
    )

    run_main(flow)

    records = read_topic(connection, unique_topic, expected=len(items), timeout_s=60)
    stored = Counter((r.key.decode() if r.key else None, r.value) for r in records)
    assert stored == Counter(items)


def test_checked_kafka_sink_fails_the_dataflow_when_delivery_fails() -> None:
    nowhere = KafkaConnection(f"127.0.0.1:{free_port()}", extra={"message.timeout.ms": "1000"})
    flow = Dataflow("kafka_write_fails")
    items: list[tuple[str | None, bytes]] = [("k", b"{}")]
    op.output("out", op.input("in", flow, TestingSource(items)), CheckedKafkaSink(nowhere, "t"))

    with pytest.raises(BytewaxRuntimeError) as raised:
        run_main(flow)
    part = CheckedKafkaSink(nowhere, "t").build("out", 0, 1)
    with pytest.raises(DeliveryError, match="failed delivery"):
        part.write_batch(items)
    part.close()

    assert "DeliveryError" in _chain_text(raised.value)


def _chain_text(error: BaseException) -> str:
    texts = []
    current: BaseException | None = error
    while current is not None:
        texts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return "\n".join(texts)


def test_json_lines_sink_writes_every_document_once_and_replaces_old_files(
    tmp_path: Path,
) -> None:
    out = tmp_path / "new" / "dir" / "docs.jsonl"
    out.parent.mkdir(parents=True)
    out.write_bytes(b'{"from":"an earlier run"}\n')
    documents = [orjson.dumps({"n": n, "text": "zß"}) for n in range(2500)]
    flow = Dataflow("jsonl")
    write_json_lines("file", op.input("in", flow, TestingSource(documents, batch_size=300)), out)

    run_main(flow)

    assert out.read_bytes().split(b"\n") == [*documents, b""]


def test_json_lines_partition_truncates_to_its_snapshot_on_resume(tmp_path: Path) -> None:
    sink = JsonLinesSink(tmp_path / "a" / "b.jsonl")
    part = sink.build_part("file", "file", None)
    part.write_batch([b'{"n":1}', b'{"n":2}'])
    snapshot = part.snapshot()
    part.write_batch([b'{"n":3}'])
    part.close()

    resumed = sink.build_part("file", "file", snapshot)
    kept = sink.path.read_bytes()
    resumed.write_batch([b'{"n":4}'])
    resumed.close()

    assert snapshot == len(b'{"n":1}\n{"n":2}\n')
    assert kept == b'{"n":1}\n{"n":2}\n'
    assert sink.path.read_bytes() == b'{"n":1}\n{"n":2}\n{"n":4}\n'
    assert resumed.snapshot() == len(sink.path.read_bytes())
    with pytest.raises(ValueError, match="fewer than"):
        sink.build_part("file", "file", 10_000)


def test_json_lines_partition_refuses_a_document_with_a_newline(tmp_path: Path) -> None:
    part = JsonLinesSink(tmp_path / "x.jsonl").build_part("file", "file", None)
    with pytest.raises(ValueError, match="newline"):
        part.write_batch([b'{"a":\n1}'])
    part.close()
    assert (tmp_path / "x.jsonl").read_bytes() == b""


def test_sources_sinks_and_their_items_pickle(tmp_path: Path) -> None:
    connection = KafkaConnection("127.0.0.1:9092", security={"security.protocol": "SSL"})
    objects: list[object] = [
        MergedFileSource({"orders": tmp_path / "o.jsonl"}),
        CheckedKafkaSink(connection, "decisions"),
        JsonLinesSink(tmp_path / "o.jsonl"),
        RawMessage("orders", 1, 2, b"k", b"v", 3, -1),
        SourceError("orders", 1, None, 3, "UNKNOWN_TOPIC_OR_PART", "gone"),
    ]
    for thing in objects:
        assert pickle.loads(pickle.dumps(thing)).__dict__ == thing.__dict__  # noqa: S301
