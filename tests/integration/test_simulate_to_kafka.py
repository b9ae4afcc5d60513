"""A simulated stream produced to the embedded broker comes back complete and in key order."""

import json
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from allocflow.connectors.broker import EmbeddedBroker
from allocflow.connectors.kafka_io import Record, read_topic
from allocflow.flows.cli import main
from allocflow.models.codec import ContractError, decode_event
from allocflow.models.topics import InputTopic

pytestmark = pytest.mark.integration

SIMULATION = ["simulate", "--seed", "11", "--orders", "300", "--faults", "all"]
SIMULATION += ["--fault-rate", "0.01", "--no-progress"]


@pytest.fixture
def kafka_run(
    kafka_broker: EmbeddedBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[InputTopic, str], dict[str, Any]]:
    suffix = uuid.uuid4().hex[:8]
    names = {topic: f"{topic.value}-{suffix}" for topic in InputTopic}
    for topic, name in names.items():
        monkeypatch.setenv(f"ALLOCFLOW_TOPIC_{topic.name}", name)
    monkeypatch.setenv("ALLOCFLOW_BOOTSTRAP_SERVERS", kafka_broker.bootstrap_servers)
    manifest_path = tmp_path / "manifest.json"
    assert main([*SIMULATION, "--manifest", str(manifest_path)]) == 0
    return names, json.loads(manifest_path.read_text())


@pytest.fixture
def file_run(tmp_path: Path) -> Path:
    out = tmp_path / "files"
    assert main([*SIMULATION, "--out", str(out)]) == 0
    return out


def test_stream_comes_back_complete_and_in_per_key_order(
    kafka_broker: EmbeddedBroker,
    kafka_run: tuple[dict[InputTopic, str], dict[str, Any]],
    file_run: Path,
) -> None:
    names, manifest = kafka_run
    fault_keys = {
        (entry["topic"], entry["index"]): entry["key"]
        for info in manifest["faults"].values()
        for entry in info["messages"]
    }
    for topic, name in names.items():
        lines = (file_run / f"{topic.value}.jsonl").read_bytes().splitlines()
        records = read_topic(kafka_broker.connection(), name, expected=len(lines), timeout_s=60)
        assert len(records) == len(lines) == manifest["topics"][topic.value]["messages"]
        expected: dict[str, list[bytes]] = defaultdict(list)
        for index, line in enumerate(lines):
            key = fault_keys.get((topic.value, index)) or decode_event(topic, line).message_key()
            expected[key].append(line)
        assert _by_key(records) == expected, topic


def _by_key(records: list[Record]) -> dict[str, list[bytes]]:
    grouped: dict[str, list[bytes]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        assert record.key is not None
        assert record.value is not None
        grouped[record.key.decode()].append(record.value)
    return grouped


def test_manifest_locates_every_fault_in_kafka(
    kafka_broker: EmbeddedBroker,
    kafka_run: tuple[dict[InputTopic, str], dict[str, Any]],
    file_run: Path,
) -> None:
    names, manifest = kafka_run
    for topic, name in names.items():
        total = manifest["topics"][topic.value]["messages"]
        stored = {
            (record.partition, record.offset): record.value
            for record in read_topic(kafka_broker.connection(), name, expected=total)
        }
        lines = (file_run / f"{topic.value}.jsonl").read_bytes().splitlines()
        for info in manifest["faults"].values():
            for entry in info["messages"]:
                if entry["topic"] != topic.value:
                    continue
                assert stored[(entry["partition"], entry["offset"])] == lines[entry["index"]]


def test_broken_messages_still_reach_the_broker_verbatim(
    kafka_broker: EmbeddedBroker,
    kafka_run: tuple[dict[InputTopic, str], dict[str, Any]],
) -> None:
    names, manifest = kafka_run
    malformed = manifest["faults"]["malformed_json"]["messages"]
    assert malformed
    for entry in malformed:
        topic = InputTopic(entry["topic"])
        total = manifest["topics"][topic.value]["messages"]
        records = read_topic(kafka_broker.connection(), names[topic], expected=total)
        value = next(
            r.value
            for r in records
            if (r.partition, r.offset) == (entry["partition"], entry["offset"])
        )
        assert value is not None
        with pytest.raises(ContractError):
            decode_event(topic, value)
