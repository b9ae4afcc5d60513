"""`allocflow run --no-tail` from Kafka accounts for every input message, as file runs do.

The counting helpers are checked on their own first: the embedded Tansu broker answers
ListOffsets with the base offset of a partition's last record batch, so a topic written
in several batches is the case that matters.
"""

import json
import time
from pathlib import Path

import pytest

from allocflow.connectors.broker import EmbeddedBroker
from allocflow.connectors.kafka_io import CheckedProducer, TopicReadError
from allocflow.connectors.topic_counts import message_count, topic_values
from allocflow.flows.allocation import ALLOCATION_INPUTS
from allocflow.flows.cli import main
from allocflow.models.topics import InputTopic, OutputTopic

pytestmark = pytest.mark.integration

SIMULATE = ["simulate", "--seed", "9", "--orders", "120", "--faults", "all"]
SIMULATE += ["--fault-rate", "0.03", "--no-progress"]
FEEDS = {topic.value for topic in ALLOCATION_INPUTS}


def test_counts_a_topic_written_in_many_batches(
    kafka_broker: EmbeddedBroker, unique_topic: str
) -> None:
    kafka_broker.create_topics([unique_topic], partitions=3)
    connection = kafka_broker.connection()
    producer = CheckedProducer(connection)
    values = [f"message {index}".encode() for index in range(250)]
    for index, value in enumerate(values):
        producer.produce(unique_topic, value, key=str(index))
        if index % 40 == 0:
            producer.flush(timeout_s=30)
    producer.flush(timeout_s=30)

    assert message_count(connection, unique_topic) == len(values)
    assert sorted(topic_values(connection, unique_topic)) == sorted(values)


def test_an_empty_topic_counts_nothing(kafka_broker: EmbeddedBroker, unique_topic: str) -> None:
    kafka_broker.create_topics([unique_topic], partitions=2)
    connection = kafka_broker.connection()
    assert message_count(connection, unique_topic) == 0
    assert list(topic_values(connection, unique_topic)) == []


def test_a_missing_topic_is_an_error_not_a_hang(
    kafka_broker: EmbeddedBroker, unique_topic: str
) -> None:
    connection = kafka_broker.connection()
    started = time.monotonic()
    with pytest.raises(TopicReadError, match=unique_topic):
        message_count(connection, unique_topic, timeout_s=5)
    with pytest.raises(TopicReadError, match=unique_topic):
        list(topic_values(connection, unique_topic, timeout_s=5))
    assert time.monotonic() - started < 12


@pytest.fixture
def kafka_stream(
    pipeline_topics: dict[InputTopic | OutputTopic, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> tuple[int, int, int]:
    """Simulate to the pipeline topics; return the inputs, broken and duplicate messages."""
    manifest_path = tmp_path / "manifest.json"
    assert main([*SIMULATE, "--manifest", str(manifest_path)]) == 0
    capsys.readouterr()
    manifest = json.loads(manifest_path.read_text())
    faults = {
        kind: sum(1 for entry in info["messages"] if entry["topic"] in FEEDS)
        for kind, info in manifest["faults"].items()
    }
    inputs = sum(manifest["topics"][feed]["messages"] for feed in FEEDS)
    return inputs, faults["malformed_json"] + faults["schema_violation"], faults["duplicate"]


def test_no_tail_run_prints_the_same_accounting_as_a_file_run(
    kafka_stream: tuple[int, int, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs, dead, duplicates = kafka_stream
    assert main([*SIMULATE, "--out", str(tmp_path / "in")]) == 0
    capsys.readouterr()

    assert main(["run", "--no-tail"]) == 0
    kafka_report = capsys.readouterr().out.splitlines()
    assert main(["run", "--input", str(tmp_path / "in"), "--out", str(tmp_path / "out")]) == 0
    file_report = capsys.readouterr().out.splitlines()

    assert dead > 0
    assert duplicates > 0
    assert kafka_report[0] == _first_line(inputs, dead, duplicates)
    assert kafka_report == file_report


def test_a_rerun_with_db_counts_the_earlier_run_too(
    kafka_stream: tuple[int, int, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs, dead, duplicates = kafka_stream
    assert main(["run", "--no-tail"]) == 0
    capsys.readouterr()

    assert main(["run", "--no-tail", "--db", str(tmp_path / "allocflow.duckdb")]) == 0
    report = capsys.readouterr().out.splitlines()

    assert report[0] == _first_line(inputs, 2 * dead, 2 * duplicates)


def _first_line(inputs: int, dead: int, duplicates: int) -> str:
    return (
        f"{inputs} inputs read: {inputs - dead - duplicates} valid, "
        f"{dead} dead-lettered, {duplicates} deduplicated"
    )
