"""Dead-letter records: built from any rejected message, nothing lost, stable ids."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allocflow.models.codec import ContractError, dead_letter_record, decode_event
from allocflow.models.dead_letter import DeadLetterReason, DeadLetterRecord
from allocflow.models.topics import OUTPUT_TOPICS, InputTopic, OutputTopic

ADAPTER = OUTPUT_TOPICS[OutputTopic.DEAD_LETTER].adapter


def _rejection(raw: bytes, topic: InputTopic = InputTopic.ORDERS) -> ContractError:
    with pytest.raises(ContractError) as caught:
        decode_event(topic, raw)
    return caught.value


@pytest.mark.unit
def test_record_keeps_position_key_reason_and_bytes() -> None:
    raw = b'{"event_id": "e-1", "event_type": "order.cancelled"}'
    record = dead_letter_record(
        _rejection(raw), topic="orders", raw=raw, partition=3, offset=42, key=b"SO-1"
    )
    assert (record.source_topic, record.partition, record.offset, record.key) == (
        "orders",
        3,
        42,
        "SO-1",
    )
    assert record.event_id == "e-1"
    assert record.reason_code is DeadLetterReason.SCHEMA_VIOLATION
    assert "event_time: Field required" in record.reason
    assert record.raw == raw


@pytest.mark.unit
def test_id_depends_on_position_so_a_replay_gives_the_same_id() -> None:
    raw = b"{broken"
    error = _rejection(raw)
    first = dead_letter_record(error, topic="orders", raw=raw, partition=0, offset=7)
    again = dead_letter_record(error, topic="orders", raw=raw, partition=0, offset=7)
    other = dead_letter_record(error, topic="orders", raw=raw, partition=0, offset=8)
    assert first.dead_letter_id == again.dead_letter_id != other.dead_letter_id
    without_position = dead_letter_record(error, topic="orders", raw=raw)
    assert (
        without_position.dead_letter_id
        == dead_letter_record(error, topic="orders", raw=raw).dead_letter_id
    )


@pytest.mark.unit
def test_a_message_with_hundreds_of_bad_lines_still_fits_the_record() -> None:
    lines = [{"line_id": "", "sku": "", "qty": 0, "unit_price": -1, "unit_cost": -1}] * 300
    raw = json.dumps({"event_id": "e-2", "event_type": "order.placed", "lines": lines}).encode()
    record = dead_letter_record(_rejection(raw), topic="orders", raw=raw)
    assert len(record.reason) <= 2000
    assert record.reason.endswith("…")
    assert len(record.errors) == 100
    assert ADAPTER.validate_json(ADAPTER.dump_json(record)) == record


@pytest.mark.property
@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=300), partition=st.integers(0, 64), offset=st.integers(0, 2**40))
def test_any_rejected_bytes_become_a_valid_record_that_round_trips(
    raw: bytes, partition: int, offset: int
) -> None:
    try:
        decode_event(InputTopic.SHIPMENTS, raw)
    except ContractError as error:
        record = dead_letter_record(
            error, topic="shipments", raw=raw, partition=partition, offset=offset, key=raw[:10]
        )
        assert isinstance(record, DeadLetterRecord)
        assert ADAPTER.validate_json(ADAPTER.dump_json(record)).raw == raw
