"""Broker faults: a run that starts before Kafka, a broker restarted empty, lost deliveries."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest

from allocflow.connectors.broker import EmbeddedBroker, free_port
from allocflow.connectors.kafka_config import KafkaConnection
from allocflow.connectors.kafka_io import CheckedProducer, DeliveryError, read_topic
from allocflow.connectors.stream_sinks import CheckedKafkaSink
from allocflow.flows.allocation import ALLOCATION_INPUTS
from allocflow.flows.cli import main
from allocflow.models.codec import ContractError, decode_event
from allocflow.models.orders import OrderPlaced
from allocflow.models.topics import InputTopic, OutputTopic

pytestmark = pytest.mark.integration

Lines = dict[InputTopic, list[bytes]]
OrderLine = tuple[str, str]


def test_run_started_before_the_broker_waits_for_it_then_decides_every_line(
    tmp_path: Path,
) -> None:
    port = free_port()
    names = _topic_names()
    stream = _simulated_stream(tmp_path, orders=60)
    log = tmp_path / "run.log"
    with _allocflow_run(["--bootstrap", f"127.0.0.1:{port}"], names, log) as run:
        _wait_for_log(log, f"waiting for Kafka at 127.0.0.1:{port} (no answer", run)
        with EmbeddedBroker(port=port) as broker:
            broker.create_topics(names.values(), partitions=4)
            _produce(broker.connection(), names, stream)
            decided = _decided_until(broker.connection(), names, _order_lines(stream), run)

    assert decided >= _order_lines(stream)
    text = log.read_text()
    assert f"Kafka at 127.0.0.1:{port} is ready after" in text


def test_land_waits_for_the_broker_and_gives_up_after_the_configured_wait(
    tmp_path: Path,
) -> None:
    port = free_port()
    command = [sys.executable, "-m", "allocflow.flows.cli", "land", "--db", str(tmp_path / "x.db")]
    env = {**os.environ, "ALLOCFLOW_BROKER_WAIT_TIMEOUT_S": "2"}
    result = subprocess.run(
        [*command, "--bootstrap", f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1, result.stderr[-3000:]
    assert f"waiting for Kafka at 127.0.0.1:{port} (no answer" in result.stderr
    assert f"allocflow land: Kafka at 127.0.0.1:{port} not ready after 2 s" in result.stderr


def test_run_survives_a_broker_restarted_empty_and_decides_what_comes_after(
    tmp_path: Path,
) -> None:
    port = free_port()
    names = _topic_names()
    before, after = _split_at_median(_simulated_stream(tmp_path, orders=80))
    log = tmp_path / "run.log"
    first = EmbeddedBroker(port=port)
    first.start()
    try:
        first.create_topics(names.values(), partitions=4)
        _produce(first.connection(), names, before)
        with _allocflow_run(["--bootstrap", first.bootstrap_servers], names, log) as run:
            _decided_until(first.connection(), names, _order_lines(before), run)
            first.stop()
            _wait_for_log(log, f"Kafka at 127.0.0.1:{port} unreachable since", run)
            with EmbeddedBroker(port=port) as second:
                second.create_topics(names.values(), partitions=4)
                _produce(second.connection(), names, after)
                decided = _decided_until(second.connection(), names, _order_lines(after), run)
                assert run.poll() is None, log.read_text()[-3000:]
    finally:
        first.stop()

    assert decided >= _order_lines(after)
    text = log.read_text()
    assert f"Kafka at 127.0.0.1:{port} reachable again after" in text
    assert f"topic {names[InputTopic.ORDERS]} on Kafka at 127.0.0.1:{port} was recreated" in text
    assert "the broker lost its data; reading the new topic from its beginning" in text


def test_run_stops_with_the_topic_and_the_reason_when_a_delivery_fails(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    names = _topic_names()
    kafka_broker.create_topics(names.values(), partitions=4)
    names[OutputTopic.ALLOCATION_DECISIONS] = "allocation decisions!"
    stream = _simulated_stream(tmp_path, orders=20)
    _produce(kafka_broker.connection(), names, stream)
    log = tmp_path / "run.log"
    args = ["--bootstrap", kafka_broker.bootstrap_servers, "--no-tail"]
    with _allocflow_run(args, names, log) as run:
        code = run.wait(timeout=120)

    text = log.read_text()
    assert code == 1, text[-3000:]
    assert "allocflow run: stopped, Kafka failed: " in text
    assert "topic 'allocation decisions!'" in text
    assert "Invalid topic" in text


def test_checked_sink_waits_for_a_gone_broker_then_reports_the_lost_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    with EmbeddedBroker(port=port) as broker:
        connection = KafkaConnection(broker.bootstrap_servers, extra={"message.timeout.ms": "7000"})
        partition = CheckedKafkaSink(connection, "decisions").build("out", 0, 1)
    caplog.set_level(logging.WARNING)

    started = time.monotonic()
    with pytest.raises(DeliveryError, match="topic 'decisions' key b'O-1': Local: Message timed"):
        partition.write_batch([("O-1", b"{}")])

    assert 7 <= time.monotonic() - started < 20
    assert f"waiting for Kafka at 127.0.0.1:{port} to take 1 message(s) for topic" in caplog.text
    assert "Kafka delivery to topic decisions at" in caplog.text
    partition.close()


def _topic_names() -> dict[InputTopic | OutputTopic, str]:
    suffix = uuid.uuid4().hex[:8]
    return {topic: f"{topic.value}-{suffix}" for topic in (*InputTopic, *OutputTopic)}


def _simulated_stream(tmp_path: Path, orders: int) -> Lines:
    out = tmp_path / "stream"
    assert main(["simulate", "--seed", "13", "--orders", str(orders), "--out", str(out)]) == 0
    return {
        topic: (out / f"{topic.value}.jsonl").read_bytes().splitlines()
        for topic in ALLOCATION_INPUTS
    }


def _split_at_median(stream: Lines) -> tuple[Lines, Lines]:
    """Cut the stream at the median event time of its orders: all before, all after."""
    times = sorted(_event_time(line) for line in stream[InputTopic.ORDERS])
    cut = times[len(times) // 2]
    before = {t: [line for line in lines if _event_time(line) < cut] for t, lines in stream.items()}
    after = {t: [line for line in lines if _event_time(line) >= cut] for t, lines in stream.items()}
    return before, after


def _event_time(line: bytes) -> datetime:
    return datetime.fromisoformat(json.loads(line)["event_time"])


def _order_lines(stream: Lines) -> set[OrderLine]:
    lines: set[OrderLine] = set()
    for raw in stream[InputTopic.ORDERS]:
        try:
            event = decode_event(InputTopic.ORDERS, raw)
        except ContractError:
            continue
        if isinstance(event, OrderPlaced):
            lines |= {(event.order_id, line.line_id) for line in event.lines}
    assert lines
    return lines


def _produce(
    connection: KafkaConnection, names: Mapping[InputTopic | OutputTopic, str], stream: Lines
) -> None:
    producer = CheckedProducer(connection)
    for topic, lines in stream.items():
        for line in lines:
            producer.produce(names[topic], line)
    producer.close(30)


def _decided_until(
    connection: KafkaConnection,
    names: Mapping[InputTopic | OutputTopic, str],
    wanted: set[OrderLine],
    run: "subprocess.Popen[bytes]",
    timeout_s: float = 60.0,
) -> set[OrderLine]:
    """Read the decisions topic until it decided every wanted line; fail on timeout."""
    deadline = time.monotonic() + timeout_s
    decided: set[OrderLine] = set()
    while not wanted <= decided:
        assert run.poll() is None, f"allocflow run exited with {run.returncode}"
        assert time.monotonic() < deadline, f"{len(wanted - decided)} lines never decided"
        records = read_topic(
            connection, names[OutputTopic.ALLOCATION_DECISIONS], idle_timeout_s=1.0, timeout_s=30
        )
        documents = [json.loads(record.value or b"") for record in records]
        decided = {
            (d["order_id"], d["line_id"])
            for d in documents
            if d["record_type"] == "allocation.decision"
        }
    return decided


def _wait_for_log(
    log: Path, text: str, run: "subprocess.Popen[bytes]", timeout_s: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text():
        assert run.poll() is None, f"allocflow run exited with {run.returncode}"
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)


@contextmanager
def _allocflow_run(
    args: list[str], names: Mapping[InputTopic | OutputTopic, str], log: Path
) -> Iterator["subprocess.Popen[bytes]"]:
    """``allocflow run`` over ``names`` as a subprocess logging into ``log``; always stopped."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.update({f"ALLOCFLOW_TOPIC_{topic.name}": name for topic, name in names.items()})
    command = [sys.executable, "-m", "allocflow.flows.cli", "run", *args]
    with log.open("wb") as output:
        run = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
        try:
            yield run
        finally:
            _stop(run)


def _stop(run: "subprocess.Popen[bytes]") -> None:
    if run.poll() is not None:
        return
    run.send_signal(signal.SIGINT)
    try:
        run.wait(timeout=15)
    except subprocess.TimeoutExpired:
        run.kill()
        run.wait()
