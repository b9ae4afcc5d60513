"""`allocflow run` against the real broker: topics in, every line decided, nothing lost."""

import json
from pathlib import Path

import pytest

from allocflow.connectors.broker import EmbeddedBroker
from allocflow.connectors.kafka_io import read_topic
from allocflow.flows.cli import main
from allocflow.models.codec import ContractError, decode_event
from allocflow.models.orders import OrderPlaced
from allocflow.models.topics import InputTopic, OutputTopic

pytestmark = pytest.mark.integration


def test_run_from_kafka_decides_every_line_and_dead_letters_every_broken_message(
    kafka_broker: EmbeddedBroker,
    pipeline_topics: dict[InputTopic | OutputTopic, str],
    tmp_path: Path,
) -> None:
    names = pipeline_topics
    simulate = ["simulate", "--seed", "5", "--orders", "200", "--faults", "all"]
    manifest_path = tmp_path / "manifest.json"
    assert main([*simulate, "--fault-rate", "0.01", "--manifest", str(manifest_path)]) == 0
    assert main([*simulate, "--fault-rate", "0.01", "--out", str(tmp_path / "files")]) == 0
    assert main(["run", "--no-tail"]) == 0

    manifest = json.loads(manifest_path.read_text())
    broken = sum(
        1
        for kind in ("malformed_json", "schema_violation")
        for entry in manifest["faults"][kind]["messages"]
        if entry["topic"] in {"orders", "reservations", "shipments"}
    )
    connection = kafka_broker.connection()
    dead = read_topic(connection, names[OutputTopic.DEAD_LETTER], expected=broken, timeout_s=60)
    assert len(dead) == broken
    lines = set()
    for raw in (tmp_path / "files" / "orders.jsonl").read_bytes().splitlines():
        try:
            event = decode_event(InputTopic.ORDERS, raw)
        except ContractError:
            continue
        if isinstance(event, OrderPlaced):
            lines |= {(event.order_id, line.line_id) for line in event.lines}
    records = read_topic(connection, names[OutputTopic.ALLOCATION_DECISIONS], timeout_s=60)
    documents = [json.loads(record.value or b"") for record in records]
    decided = {
        (d["order_id"], d["line_id"])
        for d in documents
        if d["record_type"] == "allocation.decision"
    }
    assert decided == lines
    assert all(
        record.key == json.loads(record.value or b"")["order_id"].encode() for record in records
    )
