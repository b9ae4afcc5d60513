"""The aligned Kafka source: merge order, resume and idleness against the embedded broker.

A scripted consumer stands in for Kafka where the arrival order must be chosen: the
output must not depend on how the partitions' messages interleave on arrival.
"""

import logging
import pickle
import random
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main
from confluent_kafka import KafkaError, Message, Producer

from allocflow.connectors import aligned_kafka
from allocflow.connectors.aligned_kafka import (
    AlignedKafkaError,
    AlignedKafkaPartition,
    AlignedKafkaSource,
    aligned_kafka_source,
)
from allocflow.connectors.broker import EmbeddedBroker
from allocflow.connectors.kafka_config import KafkaConnection
from allocflow.connectors.kafka_io import CheckedProducer
from allocflow.connectors.simulator.engine import SimulationConfig
from allocflow.connectors.simulator.faults import FaultPlan
from allocflow.connectors.simulator.output import KafkaSink
from allocflow.connectors.simulator.runner import SimulationRequest, run_simulation
from allocflow.connectors.stream_sources import (
    KAFKA_SEQUENCE,
    MergedFileSource,
    RawMessage,
    event_time_of,
)
from allocflow.flows.allocation import ALLOCATION_INPUTS
from allocflow.models.topics import InputTopic

pytestmark = pytest.mark.integration

PARTITIONS = 4
T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
BEGINNING = datetime.min.replace(tzinfo=UTC)
MALFORMED = b'{"id":"broken","event_time":'
DRAIN_TIMEOUT_S = 30.0

Position = tuple[str, int, int]
"""(logical topic, partition, offset)."""


@dataclass(frozen=True)
class Produced:
    """Messages stored in Kafka, by position."""

    topics: dict[str, str]
    values: dict[Position, bytes]
    keys: dict[Position, bytes | None]


def _document(ident: str, moment: datetime) -> bytes:
    return f'{{"id":"{ident}","event_time":"{moment.isoformat()}"}}'.encode()


def _skewed_lanes(rng: random.Random) -> dict[str, list[list[bytes]]]:
    """Three topics of four partitions; whole minutes, so times tie across partitions.

    ``early`` holds the first hour, ``later`` starts 40 minutes in, ``mixed`` spans
    both and carries a malformed head, a naive time, a late line and an empty value.
    """
    lanes: dict[str, list[list[bytes]]] = {}
    for topic, start_min in (("early", 0), ("later", 40), ("mixed", 0)):
        lanes[topic] = []
        for partition in range(PARTITIONS):
            minute = start_min + rng.randrange(5)
            lines = []
            for n in range(rng.randrange(15, 30)):
                lines.append(_document(f"{topic}-{partition}-{n}", T0 + timedelta(minutes=minute)))
                minute += rng.randrange(4)
            lanes[topic].append(lines)
    mixed = lanes["mixed"]
    mixed[0].insert(0, MALFORMED)
    mixed[1].insert(5, b'{"id":"naive","event_time":"2026-03-02T06:30:00"}')
    mixed[2].insert(8, _document("late", T0 - timedelta(hours=2)))
    mixed[3].insert(3, b"")
    return lanes


def _produce(
    connection: KafkaConnection, topics: Mapping[str, str], lanes: dict[str, list[list[bytes]]]
) -> Produced:
    values: dict[Position, bytes] = {}
    keys: dict[Position, bytes | None] = {}
    logical_of = {actual: logical for logical, actual in topics.items()}
    failures: list[str] = []

    def stored(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            failures.append(error.str())
            return
        actual, partition, offset = message.topic(), message.partition(), message.offset()
        assert actual is not None
        assert partition is not None
        assert offset is not None
        position = (logical_of[actual], partition, offset)
        values[position] = message.value() or b""
        keys[position] = message.key()

    producer = Producer(connection.producer_config())
    for logical, partitions in lanes.items():
        for partition, lines in enumerate(partitions):
            for n, line in enumerate(lines):
                value = line or None
                key = f"{logical}-{partition}-{n}".encode()
                producer.produce(
                    topics[logical], value, key, partition=partition, on_delivery=stored
                )
                producer.poll(0)
    assert producer.flush(30) == 0
    assert failures == []
    return Produced(dict(topics), values, keys)


def _merge_order(
    values: Mapping[Position, bytes], ranks: Sequence[str], start: Mapping[tuple[str, int], int]
) -> list[Position]:
    """The expected output: every lane from its start offset, merged on the running max."""
    keyed = []
    for (topic, partition), offsets in _lanes_of(values).items():
        running = BEGINNING
        for offset in offsets:
            if offset < start.get((topic, partition), 0):
                continue
            running = max(running, event_time_of(values[(topic, partition, offset)]) or BEGINNING)
            keyed.append((running, ranks.index(topic), partition, offset))
    return [(ranks[rank], partition, offset) for _, rank, partition, offset in sorted(keyed)]


def _lanes_of(values: Mapping[Position, bytes]) -> dict[tuple[str, int], list[int]]:
    lanes: dict[tuple[str, int], list[int]] = {}
    for topic, partition, offset in sorted(values):
        lanes.setdefault((topic, partition), []).append(offset)
    return lanes


def _starts(snapshot: Mapping[str, int], topics: Mapping[str, str]) -> dict[tuple[str, int], int]:
    logical_of = {actual: logical for logical, actual in topics.items()}
    starts = {}
    for name, offset in snapshot.items():
        actual, _, partition = name.rpartition(":")
        starts[(logical_of[actual], int(partition))] = offset
    return starts


def _positions(messages: Sequence[RawMessage]) -> list[Position]:
    positions = []
    for message in messages:
        assert message.partition is not None
        assert message.offset is not None
        positions.append((message.topic, message.partition, message.offset))
    return positions


def _run_flow(source: AlignedKafkaSource) -> list[RawMessage]:
    got: list[RawMessage] = []
    flow = Dataflow("aligned")
    op.output("out", op.input("kafka", flow, source), TestingSink(got))
    run_main(flow)
    return got


def _new_topics(broker: EmbeddedBroker, *logical: str) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    topics = {name: f"aligned-{name}-{suffix}" for name in logical}
    broker.create_topics(topics.values(), partitions=PARTITIONS)
    return topics


@pytest.fixture(scope="module")
def skewed(kafka_broker: EmbeddedBroker) -> Produced:
    topics = _new_topics(kafka_broker, "early", "later", "mixed")
    return _produce(kafka_broker.connection(), topics, _skewed_lanes(random.Random(42)))


def test_backlog_comes_out_in_exact_merge_order_once_and_repeatably(
    kafka_broker: EmbeddedBroker, skewed: Produced
) -> None:
    connection = kafka_broker.connection()
    expected = _merge_order(skewed.values, list(skewed.topics), {})

    first: list[RawMessage] = []
    flow = Dataflow("aligned")
    stream = aligned_kafka_source(flow, "kafka", connection, skewed.topics, tail=False)
    op.output("out", stream, TestingSink(first))
    run_main(flow)
    second = _run_flow(AlignedKafkaSource(connection, skewed.topics, tail=False, batch_size=7))

    assert _positions(first) == expected
    assert _positions(second) == _positions(first)
    assert [m.value for m in second] == [m.value for m in first]
    for message, position in zip(first, _positions(first), strict=True):
        assert message.value == skewed.values[position]
        assert message.key == skewed.keys[position]
        assert message.sequence == KAFKA_SEQUENCE
        assert message.timestamp_ms
    assert expected[0] == ("mixed", 0, 0)


def test_backlog_order_equals_the_file_merge_of_one_file_per_partition(
    kafka_broker: EmbeddedBroker, skewed: Produced, tmp_path: Path
) -> None:
    files = {}
    for (topic, partition), offsets in _lanes_of(skewed.values).items():
        path = tmp_path / f"{topic}-{partition}.jsonl"
        path.write_bytes(b"".join(skewed.values[(topic, partition, o)] + b"\n" for o in offsets))
        files[f"{topic}-{partition}"] = path
    replayed: list[RawMessage] = []
    flow = Dataflow("files")
    op.output("out", op.input("files", flow, MergedFileSource(files)), TestingSink(replayed))
    run_main(flow)

    aligned = _run_flow(AlignedKafkaSource(kafka_broker.connection(), skewed.topics, tail=False))

    assert [(m.topic, m.offset) for m in replayed] == [
        (f"{m.topic}-{m.partition}", m.offset) for m in aligned
    ]


def _drain(part: AlignedKafkaPartition) -> list[RawMessage]:
    got: list[RawMessage] = []
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            got.extend(part.next_batch())
        except StopIteration:
            return got
    raise AssertionError(f"the input did not end within {DRAIN_TIMEOUT_S} s")


def _read_until_buffered(part: AlignedKafkaPartition, at_least: int) -> list[RawMessage]:
    got: list[RawMessage] = []
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while len(got) < at_least or part.buffered == 0:
        assert time.monotonic() < deadline, f"only {len(got)} emitted, {part.buffered} buffered"
        got.extend(part.next_batch())
    return got


def test_a_resumed_partition_re_reads_what_it_had_not_released(
    kafka_broker: EmbeddedBroker, skewed: Produced
) -> None:
    source = AlignedKafkaSource(kafka_broker.connection(), skewed.topics, tail=False, batch_size=10)
    part = source.build_part("kafka", "aligned", None)
    first = _read_until_buffered(part, at_least=40)
    buffered = part.buffered
    snapshot = part.snapshot()
    part.close()

    resumed = source.build_part("kafka", "aligned", snapshot)
    rest = _drain(resumed)
    resumed.close()

    ranks = list(skewed.topics)
    everything = _merge_order(skewed.values, ranks, {})
    assert buffered > 0
    assert _positions(first) == everything[: len(first)]
    emitted_per_lane = Counter((topic, partition) for topic, partition, _ in _positions(first))
    for (topic, partition), offsets in _lanes_of(skewed.values).items():
        name = f"{skewed.topics[topic]}:{partition}"
        assert snapshot.get(name, 0) == emitted_per_lane[(topic, partition)] <= len(offsets)
    assert _positions(rest) == _merge_order(skewed.values, ranks, _starts(snapshot, skewed.topics))
    assert Counter(_positions(first) + _positions(rest)) == Counter(list(skewed.values))


def _single_lane_values(count: int) -> list[list[bytes]]:
    lines = [_document(f"busy-{n}", T0 + timedelta(minutes=n)) for n in range(count)]
    return [lines[p::PARTITIONS] for p in range(PARTITIONS)]


def _read_count(
    part: AlignedKafkaPartition, count: int, started: float
) -> tuple[list[RawMessage], float]:
    """Read until ``count`` messages came out; return them and when the first did."""
    got: list[RawMessage] = []
    first_at = None
    while len(got) < count:
        assert time.monotonic() - started < DRAIN_TIMEOUT_S, f"{len(got)} of {count} emitted"
        batch = part.next_batch()
        if batch and first_at is None:
            first_at = time.monotonic() - started
        got.extend(batch)
    assert first_at is not None
    return got, first_at


def test_an_idle_topic_holds_the_others_back_only_for_idle_s(
    kafka_broker: EmbeddedBroker,
) -> None:
    connection = kafka_broker.connection()
    topics = _new_topics(kafka_broker, "busy", "quiet")
    produced = _produce(connection, topics, {"busy": _single_lane_values(20)})
    idle_s = 1.0
    started = time.monotonic()
    part = AlignedKafkaSource(connection, topics, idle_s=idle_s).build_part("k", "aligned", None)
    try:
        got, first_at = _read_count(part, 20, started)
        later = _produce(connection, topics, {"quiet": [[_document("q", T0)]]})
        woken, _ = _read_count(part, 1, time.monotonic())
    finally:
        part.close()

    assert idle_s * 0.9 <= first_at <= idle_s + 30
    assert _positions(got) == _merge_order(produced.values, list(topics), {})
    assert _positions(woken) == list(later.values.keys())


def test_a_message_held_longer_than_max_hold_s_is_released_and_logged_once(
    kafka_broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    connection = kafka_broker.connection()
    topics = _new_topics(kafka_broker, "busy", "quiet")
    produced = _produce(connection, topics, {"busy": _single_lane_values(12)})
    source = AlignedKafkaSource(connection, topics, idle_s=60, max_hold_s=1.0)
    started = time.monotonic()
    part = source.build_part("k", "aligned", None)
    try:
        with caplog.at_level(logging.WARNING):
            got, first_at = _read_count(part, 12, started)
    finally:
        part.close()

    assert 1.0 <= first_at <= 30.0
    assert _positions(got) == _merge_order(produced.values, list(topics), {})
    forced = [r for r in caplog.records if "ahead of it" in r.getMessage()]
    partitions = [record.args[1] for record in forced if isinstance(record.args, tuple)]
    assert 1 <= len(partitions) == len(set(partitions)) <= PARTITIONS
    assert all("held back by topic quiet" in r.getMessage() for r in forced)


@pytest.fixture
def simulated(kafka_broker: EmbeddedBroker) -> tuple[dict[str, str], dict[str, Any]]:
    suffix = uuid.uuid4().hex[:8]
    names = {topic: f"aligned-sim-{topic.value}-{suffix}" for topic in InputTopic}
    kafka_broker.create_topics(names.values(), partitions=PARTITIONS)
    request = SimulationRequest(
        config=SimulationConfig(seed=3, orders=150),
        faults=FaultPlan.parse("all", 0.02),
        scenarios=[],
        progress=False,
    )
    sink = KafkaSink(CheckedProducer(kafka_broker.connection()), names)
    manifest = run_simulation(request, sink)
    return {topic.value: names[topic] for topic in ALLOCATION_INPUTS}, manifest


def test_the_allocation_inputs_come_out_in_event_time_order(
    kafka_broker: EmbeddedBroker, simulated: tuple[dict[str, str], dict[str, Any]]
) -> None:
    topics, manifest = simulated
    got: list[RawMessage] = []
    flow = Dataflow("aligned_simulation")
    stream = aligned_kafka_source(flow, "kafka", kafka_broker.connection(), topics, tail=False)
    op.output("out", stream, TestingSink(got))
    run_main(flow)

    positions = _positions(got)
    assert len(positions) == len(set(positions))
    assert len(got) == sum(manifest["topics"][topic]["messages"] for topic in topics)
    redelivered = {
        (entry["topic"], entry["partition"], entry["offset"])
        for kind in ("late", "duplicate")
        for entry in manifest["faults"][kind]["messages"]
    }
    assert redelivered & set(positions)
    times = [
        (event_time, message.topic)
        for message, position in zip(got, positions, strict=True)
        if position not in redelivered and (event_time := event_time_of(message.value))
    ]
    assert {topic for _, topic in times} == set(topics)
    assert [t for t, _ in times] == sorted(t for t, _ in times)


@dataclass(frozen=True)
class _FakeMessage:
    """What ``Consumer.consume`` returns: a message, or an error such as EOF."""

    actual: str | None
    part: int | None
    at: int | None
    payload: bytes | None
    failure: KafkaError | None = None

    def error(self) -> KafkaError | None:
        return self.failure

    def topic(self) -> str | None:
        return self.actual

    def partition(self) -> int | None:
        return self.part

    def offset(self) -> int | None:
        return self.at

    def value(self) -> bytes | None:
        return self.payload

    def key(self) -> bytes:
        return b"k"

    def timestamp(self) -> tuple[int, int]:
        return 1, 1_700_000_000_000


class _ScriptedConsumer:
    """Stands in for ``confluent_kafka.Consumer``: hands out scripted batches."""

    def __init__(self, partitions: Mapping[str, int], batches: list[list[_FakeMessage]]) -> None:
        self.partitions = partitions
        self.batches = batches
        self.assigned: list[Any] = []
        self.closed = False

    def list_topics(self, topic: str, timeout: float) -> SimpleNamespace:
        assert timeout > 0
        partitions = dict.fromkeys(range(self.partitions.get(topic, 0)))
        described = SimpleNamespace(error=None, partitions=partitions)
        return SimpleNamespace(topics={topic: described} if partitions else {})

    def assign(self, partitions: list[Any]) -> None:
        self.assigned = partitions

    def consume(self, num_messages: int, timeout: float) -> list[_FakeMessage]:
        assert num_messages > 0
        assert timeout <= 0.1
        return self.batches.pop(0) if self.batches else []

    def pause(self, partitions: list[Any]) -> None:
        assert partitions

    def resume(self, partitions: list[Any]) -> None:
        assert partitions

    def close(self) -> None:
        self.closed = True


def _eof(actual: str, partition: int) -> _FakeMessage:
    return _FakeMessage(actual, partition, None, None, KafkaError(KafkaError._PARTITION_EOF))


def _random_arrival(
    rng: random.Random, lanes: dict[str, list[list[bytes]]], topics: Mapping[str, str]
) -> list[list[_FakeMessage]]:
    """Every lane's messages in order, lanes interleaved at random, cut into random batches."""
    queues = [
        [
            _FakeMessage(topics[topic], partition, offset, line or None)
            for offset, line in enumerate(lines)
        ]
        + [_eof(topics[topic], partition)]
        for topic, partitions in lanes.items()
        for partition, lines in enumerate(partitions)
    ]
    arrival: list[_FakeMessage] = []
    while queues:
        queue = rng.choice(queues)
        take = rng.randint(1, 6)
        arrival.extend(queue[:take])
        del queue[:take]
        queues = [queue for queue in queues if queue]
    batches = []
    while arrival:
        size = rng.randint(1, 9)
        batches.append(arrival[:size])
        del arrival[:size]
    return batches


def _scripted_part(
    monkeypatch: pytest.MonkeyPatch,
    consumer: _ScriptedConsumer,
    topics: Mapping[str, str],
    **options: Any,
) -> AlignedKafkaPartition:

    def build(config: dict[str, str]) -> _ScriptedConsumer:
        assert config["enable.partition.eof"] == "true"
        assert config["enable.auto.commit"] == "false"
        return consumer

    monkeypatch.setattr(aligned_kafka, "Consumer", build)
    source = AlignedKafkaSource(KafkaConnection("scripted:9092"), topics, **options)
    return source.build_part("kafka", "aligned", None)


@pytest.mark.parametrize("seed", range(25))
def test_the_output_does_not_depend_on_the_arrival_interleaving(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rng = random.Random(seed)
    lanes = _skewed_lanes(random.Random(42))
    topics = {topic: f"actual-{topic}" for topic in lanes}
    values = {
        (topic, partition, offset): line
        for topic, partitions in lanes.items()
        for partition, lines in enumerate(partitions)
        for offset, line in enumerate(lines)
    }
    consumer = _ScriptedConsumer(
        dict.fromkeys(topics.values(), PARTITIONS), _random_arrival(rng, lanes, topics)
    )
    part = _scripted_part(monkeypatch, consumer, topics, tail=False, batch_size=rng.randint(1, 50))

    got = _drain(part)
    part.close()

    assert _positions(got) == _merge_order(values, list(topics), {})
    assert consumer.closed
    assert [m.value for m in got] == [values[p] for p in _positions(got)]


def test_a_lone_partition_never_waits_for_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [_document(f"o{n}", T0 + timedelta(minutes=n)) for n in range(3)]
    batches = [
        [_FakeMessage("orders-prod", 0, 0, lines[0]), _FakeMessage("orders-prod", 0, 1, lines[1])],
        [_FakeMessage("orders-prod", 0, 2, lines[2])],
    ]
    consumer = _ScriptedConsumer({"orders-prod": 1}, batches)
    part = _scripted_part(monkeypatch, consumer, {"orders": "orders-prod"}, idle_s=60)

    emitted = [_positions(part.next_batch()) for _ in range(3)]

    assert emitted == [[("orders", 0, 0), ("orders", 0, 1)], [("orders", 0, 2)], []]
    assert part.snapshot() == {"orders-prod:0": 3}


def test_transient_errors_are_logged_and_fatal_ones_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    topics = {"orders": "orders-prod"}
    transient = _FakeMessage(
        "orders-prod", 1, None, None, KafkaError(KafkaError._TRANSPORT, "down")
    )
    fatal = _FakeMessage(None, None, None, None, KafkaError(KafkaError._FATAL, "boom", fatal=True))
    line = _document("o1", T0)
    batches = [
        [transient, _FakeMessage("orders-prod", 1, 0, line), _eof("orders-prod", 1)],
        [_eof("orders-prod", 0)],
        [fatal],
    ]
    consumer = _ScriptedConsumer({"orders-prod": 2}, batches)
    part = _scripted_part(monkeypatch, consumer, topics, idle_s=0.0)

    with caplog.at_level(logging.WARNING):
        first = part.next_batch()
        second = part.next_batch()
    with pytest.raises(AlignedKafkaError, match="fatal Kafka consumer error on the consumer: boom"):
        part.next_batch()

    assert first == []
    assert _positions(second) == [("orders", 1, 0)]
    assert part.snapshot() == {"orders-prod:1": 1}
    assert "topic orders-prod partition 1: down (_TRANSPORT)" in caplog.text


def test_a_missing_topic_or_bad_settings_fail_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    connection = KafkaConnection("scripted:9092")
    with pytest.raises(ValueError, match="same Kafka topic"):
        AlignedKafkaSource(connection, {"orders": "t", "reservations": "t"})
    with pytest.raises(ValueError, match="batch_size"):
        AlignedKafkaSource(connection, {"orders": "t"}, batch_size=0)
    consumer = _ScriptedConsumer({"orders-prod": 2}, [])
    with pytest.raises(AlignedKafkaError, match="'missing' is not readable"):
        _scripted_part(monkeypatch, consumer, {"orders": "orders-prod", "x": "missing"})
    assert consumer.closed


def test_the_source_pickles() -> None:
    source = AlignedKafkaSource(
        KafkaConnection("127.0.0.1:9092", security={"security.protocol": "SSL"}),
        {"reservations": "r", "orders": "o"},
        idle_s=0.5,
    )
    copy = pickle.loads(pickle.dumps(source))  # noqa: S301
    assert copy.__dict__ == source.__dict__


FUTURE = _document("from-2099", datetime(2099, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize("at", [10, 0], ids=["middle", "head"])
def test_one_far_future_message_reorders_nothing_and_is_flagged(
    kafka_broker: EmbeddedBroker, at: int, tmp_path: Path
) -> None:
    connection = kafka_broker.connection()
    clean_lanes = _skewed_lanes(random.Random(42))
    poisoned_lanes = _skewed_lanes(random.Random(42))
    poisoned_lanes["early"][1].insert(at, FUTURE)
    clean = _new_topics(kafka_broker, "early", "later", "mixed")
    poisoned = _new_topics(kafka_broker, "early", "later", "mixed")
    _produce(connection, clean, clean_lanes)
    produced = _produce(connection, poisoned, poisoned_lanes)

    expected = _run_flow(AlignedKafkaSource(connection, clean, tail=False))
    got = _run_flow(AlignedKafkaSource(connection, poisoned, tail=False, batch_size=7))

    flagged = [m for m in got if m.time_problem is not None]
    assert [(m.value, m.partition, m.offset) for m in flagged] == [(FUTURE, 1, at)]
    assert "2099-01-01T00:00:00+00:00" in (flagged[0].time_problem or "")
    assert [m.value for m in got if m.value != FUTURE] == [m.value for m in expected]
    assert all(m.time_problem is None for m in expected)
    files = {}
    for (topic, partition), offsets in _lanes_of(produced.values).items():
        path = tmp_path / f"{topic}-{partition}.jsonl"
        path.write_bytes(b"".join(produced.values[(topic, partition, o)] + b"\n" for o in offsets))
        files[f"{topic}-{partition}"] = path
    replayed: list[RawMessage] = []
    flow = Dataflow("files")
    op.output("out", op.input("files", flow, MergedFileSource(files)), TestingSink(replayed))
    run_main(flow)
    assert [(m.topic, m.offset, m.time_problem) for m in replayed] == [
        (f"{m.topic}-{m.partition}", m.offset, m.time_problem) for m in got
    ]


def test_a_live_partition_settles_a_lone_jump_once_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    near = _document("near", T0 + timedelta(days=1))
    batches = [
        [
            _FakeMessage("orders-prod", 0, 0, _document("o0", T0)),
            _FakeMessage("orders-prod", 0, 1, _document("o1", T0 + timedelta(minutes=1))),
            _FakeMessage("orders-prod", 0, 2, FUTURE),
            _eof("orders-prod", 0),
            _FakeMessage("orders-prod", 1, 0, near),
            _eof("orders-prod", 1),
        ],
    ]
    consumer = _ScriptedConsumer({"orders-prod": 2}, batches)
    part = _scripted_part(monkeypatch, consumer, {"orders": "orders-prod"}, idle_s=0.0)

    emitted = part.next_batch()
    part.close()

    assert [(m.partition, m.offset, m.time_problem is None) for m in emitted] == [
        (0, 0, True),
        (0, 1, True),
        (0, 2, False),
        (1, 0, True),
    ]
