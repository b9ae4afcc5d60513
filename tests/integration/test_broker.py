"""The embedded broker, topic setup and delivery-checked produce/read against real Tansu."""

import logging
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from allocflow.connectors.broker import BrokerStartError, EmbeddedBroker
from allocflow.connectors.kafka_admin import ensure_topics
from allocflow.connectors.kafka_io import (
    CheckedProducer,
    Delivery,
    DeliveryError,
    TopicReadError,
    read_topic,
)
from allocflow.flows.cli import main

pytestmark = pytest.mark.integration

_TOPICS = (
    "orders",
    "reservations",
    "shipments",
    "carrier-events",
    "allocation-decisions",
    "allocation-exceptions",
    "route-alerts",
    "dq-alerts",
    "dead-letter",
)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (dead, not yet reaped) counts as gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in {"Z", "X"}


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return not _alive(pid)


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "fake-tansu"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def test_broker_starts_and_answers_metadata(kafka_broker: EmbeddedBroker) -> None:
    host, port = kafka_broker.bootstrap_servers.rsplit(":", 1)

    metadata = AdminClient({"bootstrap.servers": kafka_broker.bootstrap_servers}).list_topics(
        timeout=5
    )

    assert host == "127.0.0.1"
    assert int(port) > 0
    assert kafka_broker.running
    assert [(b.host, b.port) for b in metadata.brokers.values()] == [(host, int(port))]


def test_topics_get_the_requested_partition_count(
    kafka_broker: EmbeddedBroker, unique_topic: str
) -> None:
    four, two = f"{unique_topic}-4", f"{unique_topic}-2"

    assert kafka_broker.create_topics([four], partitions=4) == {four: 4}
    assert kafka_broker.create_topics([two], partitions=2) == {two: 2}

    topics = AdminClient({"bootstrap.servers": kafka_broker.bootstrap_servers}).list_topics(
        timeout=5
    )
    assert len(topics.topics[four].partitions) == 4
    assert len(topics.topics[two].partitions) == 2


def test_ensure_topics_is_idempotent(
    kafka_broker: EmbeddedBroker, unique_topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    connection = kafka_broker.connection()
    names = [f"{unique_topic}-a", f"{unique_topic}-b"]

    first = ensure_topics(connection, names, partitions=3)
    again = ensure_topics(connection, [*names, f"{unique_topic}-c"], partitions=3)
    with caplog.at_level(logging.WARNING):
        other_count = ensure_topics(connection, names[:1], partitions=6)

    assert first == dict.fromkeys(names, 3)
    assert again == dict.fromkeys([*names, f"{unique_topic}-c"], 3)
    assert other_count == {names[0]: 3}
    assert "already exists with 3 partitions, not 6" in caplog.text


def test_round_trip_is_complete_and_keeps_per_key_order(
    kafka_broker: EmbeddedBroker, unique_topic: str
) -> None:
    connection = kafka_broker.connection()
    kafka_broker.create_topics([unique_topic], partitions=4)
    producer = CheckedProducer(connection)
    deliveries: list[Delivery] = []
    sent = [(f"sku-{n % 40}", n) for n in range(4000)]

    for key, sequence in sent:
        producer.produce(
            unique_topic,
            f"{key}:{sequence}",
            key=key,
            headers=[("seq", str(sequence).encode())],
            on_delivered=deliveries.append,
        )
    producer.flush(timeout_s=30)
    records = read_topic(connection, unique_topic, expected=len(sent), timeout_s=30)

    assert len(deliveries) == len(records) == len(sent)
    assert {(d.partition, d.offset) for d in deliveries} == {
        (r.partition, r.offset) for r in records
    }
    assert sorted((r.key, r.value) for r in records) == sorted(
        (k.encode(), f"{k}:{s}".encode()) for k, s in sent
    )
    assert all(r.headers == (("seq", r.value.split(b":")[1]),) for r in records if r.value)
    by_key: dict[bytes | None, list[tuple[int, int, int]]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        assert record.value is not None
        by_key[record.key].append(
            (record.partition, record.offset, int(record.value.split(b":")[1]))
        )
    for key, placed in by_key.items():
        assert len({partition for partition, _, _ in placed}) == 1, key
        sequences = [sequence for _, _, sequence in placed]
        assert sequences == sorted(sequences), key
    assert {partition for partition, _, _ in (p[0] for p in by_key.values())} == {0, 1, 2, 3}
    assert all(r.timestamp_ms is not None and r.timestamp_ms > 0 for r in records)


def test_read_topic_ends_when_the_topic_is_quiet(
    kafka_broker: EmbeddedBroker, unique_topic: str
) -> None:
    connection = kafka_broker.connection()
    kafka_broker.create_topics([unique_topic], partitions=4)
    producer = CheckedProducer(connection)
    for n in range(10):
        producer.produce(unique_topic, str(n), key=str(n))
    producer.flush(timeout_s=10)

    started = time.monotonic()
    records = read_topic(connection, unique_topic, idle_timeout_s=0.5, timeout_s=20)

    assert sorted(int(r.value or b"") for r in records) == list(range(10))
    assert time.monotonic() - started < 10


def test_read_topic_times_out_saying_how_many_it_got(
    kafka_broker: EmbeddedBroker, unique_topic: str
) -> None:
    connection = kafka_broker.connection()
    kafka_broker.create_topics([unique_topic], partitions=2)
    producer = CheckedProducer(connection)
    for n in range(3):
        producer.produce(unique_topic, str(n))
    producer.flush(timeout_s=10)

    with pytest.raises(TopicReadError, match="with 3 of 5 expected records") as raised:
        read_topic(connection, unique_topic, expected=5, timeout_s=1.5)
    assert raised.value.received == 3


def test_reading_a_missing_topic_is_a_clear_error(
    kafka_broker: EmbeddedBroker, unique_topic: str
) -> None:
    with pytest.raises(TopicReadError, match=f"topic '{unique_topic}' is not readable"):
        read_topic(kafka_broker.connection(), unique_topic, timeout_s=5)


def test_stop_leaves_no_process(tmp_path: Path) -> None:
    broker = EmbeddedBroker(log_dir=tmp_path)
    broker.start()
    pid = broker.pid
    assert pid is not None
    assert _alive(pid)

    broker.stop()
    broker.stop()

    assert not _alive(pid)
    assert not broker.running
    assert "listening on" in (tmp_path / "tansu.log").read_text()


def test_leaving_the_block_on_an_exception_stops_the_broker() -> None:
    seen: list[tuple[int | None, Path | None]] = []

    def fail_inside_the_block() -> None:
        with EmbeddedBroker() as broker:
            seen.append((broker.pid, broker.log_path))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_inside_the_block()

    [(pid, log_path)] = seen
    assert pid is not None
    assert log_path is not None
    assert not _alive(pid)
    assert not log_path.parent.exists()


def test_parent_killed_with_sigkill_leaves_no_orphan() -> None:
    code = (
        "import time\n"
        "from allocflow.connectors.broker import EmbeddedBroker\n"
        "broker = EmbeddedBroker()\n"
        "broker.start()\n"
        "print(broker.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert parent.stdout is not None
        broker_pid = int(parent.stdout.readline())
        assert _alive(broker_pid)

        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=5)

        assert _wait_gone(broker_pid, timeout_s=5)
    finally:
        parent.kill()
        parent.wait()


def test_binary_that_is_not_executable_is_a_start_error(tmp_path: Path) -> None:
    binary = tmp_path / "tansu"
    binary.write_text("not a program")

    with pytest.raises(BrokerStartError, match="is not executable"):
        EmbeddedBroker(binary=binary).start()


def test_port_in_use_is_a_start_error(kafka_broker: EmbeddedBroker) -> None:
    port = int(kafka_broker.bootstrap_servers.rsplit(":", 1)[1])

    with pytest.raises(BrokerStartError, match=f"127.0.0.1:{port}: Address already in use"):
        EmbeddedBroker(port=port).start()


def test_broker_that_exits_early_is_a_start_error_with_its_log(tmp_path: Path) -> None:
    binary = _script(tmp_path, 'echo "storage engine exploded" >&2\nexit 3')

    with pytest.raises(BrokerStartError, match="exited with code 3") as raised:
        EmbeddedBroker(binary=binary).start()
    assert "storage engine exploded" in str(raised.value)


def test_broker_that_never_answers_is_a_start_error_and_is_stopped(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    binary = _script(tmp_path, f"echo $$ > {pid_file}\nexec sleep 60")

    with pytest.raises(BrokerStartError, match=r"did not answer a metadata request within 0.5 s"):
        EmbeddedBroker(binary=binary, startup_timeout_s=0.5).start()
    assert not _alive(int(pid_file.read_text()))


def test_delivery_failure_raises_delivery_error(unique_topic: str) -> None:
    with EmbeddedBroker() as broker:
        connection = broker.connection()
    producer = CheckedProducer(connection, overrides={"message.timeout.ms": "1000"})
    producer.produce(unique_topic, b"lost?", key=b"order-7")

    with pytest.raises(DeliveryError, match="1 message") as raised:
        producer.flush(timeout_s=10)

    assert [(f.topic, f.key) for f in raised.value.failures] == [(unique_topic, b"order-7")]
    assert "timed out" in raised.value.failures[0].error
    assert unique_topic in str(raised.value)
    producer.flush(timeout_s=1)


def test_flush_timeout_counts_undelivered_messages(unique_topic: str) -> None:
    with EmbeddedBroker() as broker:
        connection = broker.connection()
    producer = CheckedProducer(connection, overrides={"message.timeout.ms": "1500"})
    producer.produce(unique_topic, b"x")

    with pytest.raises(DeliveryError, match="1 message\\(s\\) still undelivered") as raised:
        producer.flush(timeout_s=0.2)

    assert raised.value.undelivered == 1
    with pytest.raises(DeliveryError, match="failed delivery"):
        producer.flush(timeout_s=10)


def test_broker_command_creates_topics_and_stops_on_sigterm() -> None:
    command = subprocess.Popen(
        [sys.executable, "-m", "allocflow.flows.cli", "broker", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert command.stdout is not None
        lines = [command.stdout.readline() for _ in range(10)]
        bootstrap = lines[-1].removeprefix("Kafka bootstrap servers: ").strip()
        topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=5).topics

        command.send_signal(signal.SIGTERM)
        _, stderr = command.communicate(timeout=10)
    finally:
        command.kill()

    assert "topic orders: 4 partitions\n" in lines
    assert {name: len(t.partitions) for name, t in topics.items()} == dict.fromkeys(_TOPICS, 4)
    assert command.returncode == 0
    assert "stopped (pid" in stderr


def test_tail_command_prints_partition_offset_key_value(
    kafka_broker: EmbeddedBroker, unique_topic: str, capsys: pytest.CaptureFixture[str]
) -> None:
    kafka_broker.create_topics([unique_topic], partitions=1)
    producer = CheckedProducer(kafka_broker.connection())
    for n in range(3):
        producer.produce(unique_topic, f'{{"n": {n}}}', key=f"k{n}")
    producer.flush(timeout_s=10)

    code = main(["tail", unique_topic, "--bootstrap", kafka_broker.bootstrap_servers, "--max", "2"])

    assert code == 0
    assert capsys.readouterr().out.splitlines() == ['0\t0\tk0\t{"n": 0}', '0\t1\tk1\t{"n": 1}']


def test_tail_command_without_a_broker_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ALLOCFLOW_BOOTSTRAP_SERVERS", raising=False)

    code = main(["tail", "orders"])

    assert code == 2
    assert "ALLOCFLOW_BOOTSTRAP_SERVERS or --bootstrap" in capsys.readouterr().err
