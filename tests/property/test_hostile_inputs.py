"""Hostile input through the whole pipeline: decode, the allocation flow, the DuckDB lander.

Each example writes a batch of messages to the four input files: valid events from a
small simulation, and events with one field replaced by a value at the edge of some
field type (extreme and malformed dates, leap seconds, huge, negative and non-finite
numbers, control and invisible characters, very long strings, deep nesting), plus raw
lines (a byte order mark, invalid UTF-8, lone surrogates, empty lines) and orders that
hold the most units the contract allows. ``allocflow run --db`` runs over them
in-process. It must not crash, and every record must be accounted for exactly once:

* every line the codec rejects is one dead letter with the codec's reason;
* every line the codec accepts is either dead-lettered for its event time
  (``EVENT_TIME_OUT_OF_RANGE``), dropped as a duplicate, or valid;
* ``inputs = valid + dead-lettered + deduplicated`` in the run's accounting;
* every valid event is landed in ``input_events`` (and nothing else is), and every
  dead letter in ``dead_letters``.
"""

import functools
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocflow.flows.allocation import ALLOCATION_INPUTS
from allocflow.flows.cli import main
from allocflow.flows.commands.run_accounting import account_run, input_files
from allocflow.models.codec import UTF8_BOM, ContractError, decode_event
from allocflow.models.dead_letter import DeadLetterReason, DeadLetterRecord
from allocflow.models.topics import InputTopic, OutputTopic

pytestmark = pytest.mark.property

FEEDS = [topic.value for topic in ALLOCATION_INPUTS]
Message = tuple[str, bytes]

HOSTILE_DATES: list[Any] = [
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00+05:00",
    "1999-12-31T23:59:59.999999Z",
    "2000-01-01T00:00:00Z",
    "2199-12-31T23:59:59.999999Z",
    "2200-01-01T00:00:00Z",
    "2016-12-31T23:59:60Z",
    "2016-12-31T11:59:60Z",
    "2026-03-02T12:00:00+23:59",
    "2026-03-02T12:00:00-23:59",
    "2026-03-02T12:00:00",
    "2026-02-30T25:61:61Z",
    "+002026-03-02T12:00:00Z",
    "2099-01-01T00:00:00Z",
]
HOSTILE_NUMBERS: list[Any] = [
    0,
    -1,
    1,
    10_000_000,
    10_000_001,
    2**31,
    -(2**31) - 1,
    2**63,
    2**64 + 1,
    10**400,
    1e308,
    -1e308,
    5e-324,
    -0.0,
    1.5,
    float("nan"),
    float("inf"),
    float("-inf"),
    True,
    None,
    "1",
]
HOSTILE_STRINGS: list[Any] = [
    "",
    "a" * 128,
    "a" * 129,
    "x" * 2000,
    "x" * 2001,
    "NUL\x00",
    "ESC\x1b[31mred",
    "zero\u200bwidth",
    "\ufeffbom",
    "rtl\u202eoverride",
    "tag\U000e0041",
    "SKU-📦",
    "注文-42",
    "![x](http://127.0.0.1:9/x.png)",
    "<script>alert(1)</script>",
    "'; DROP TABLE input_events; --",
    "\ud800",
]


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


HOSTILE_STRUCTURES: list[Any] = [_nested(200), {"a": {"b": {"c": []}}}, [], {}]
HOSTILE_VALUES = st.sampled_from(
    HOSTILE_DATES + HOSTILE_NUMBERS + HOSTILE_STRINGS + HOSTILE_STRUCTURES
)
RAW_LINES = st.sampled_from(
    [
        b"",
        b"\r",
        b"\xff\xfe{}",
        b'{"event_id": "\\ud800"}',
        b"[" * 5000 + b"]" * 5000,
        b'{"a": ' * 2000 + b"1" + b"}" * 2000,
        b"null",
        b"NaN",
    ]
)


@functools.cache
def samples() -> dict[str, list[bytes]]:
    """Valid messages of each feed, from a small fault-free simulation."""
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory)
        simulate = ["simulate", "--seed", "5", "--orders", "12", "--faults", "none"]
        assert main([*simulate, "--out", str(out), "--no-progress"]) == 0
        return {feed: (out / f"{feed}.jsonl").read_bytes().splitlines()[:30] for feed in FEEDS}


@st.composite
def hostile_document(draw: st.DrawFn) -> Message:
    """A valid event with one field (or a field of its first line) made hostile."""
    feed = draw(st.sampled_from(FEEDS))
    document: dict[str, Any] = json.loads(draw(st.sampled_from(samples()[feed])))
    document["event_id"] = f"hostile-{draw(st.integers(0, 10**9))}"
    target = document
    lines = document.get("lines") or document.get("changes")
    if lines and draw(st.booleans()):
        target = lines[0]
    field = draw(st.sampled_from(sorted(target)))
    target[field] = draw(HOSTILE_VALUES)
    return feed, json.dumps(document).encode()


@st.composite
def biggest_order(draw: st.DrawFn) -> Message:
    """An order of 100 lines of 10,000,000 units: the most the contract accepts."""
    document: dict[str, Any] = json.loads(samples()["orders"][0])
    number = draw(st.integers(0, 10**9))
    document["event_id"] = f"big-{number}"
    document["order_id"] = f"SO-BIG-{number}"
    document["lines"] = [
        {
            "line_id": str(n),
            "sku": "SKU-10001",
            "qty": 10_000_000,
            "unit_price": 1e9,
            "unit_cost": 0,
        }
        for n in range(100)
    ]
    return "orders", json.dumps(document).encode()


def messages() -> st.SearchStrategy[list[Message]]:
    valid = st.sampled_from(FEEDS).flatmap(
        lambda feed: st.tuples(st.just(feed), st.sampled_from(samples()[feed]))
    )
    with_bom = valid.map(lambda message: (message[0], UTF8_BOM + message[1]))
    raw = st.tuples(st.sampled_from(FEEDS), RAW_LINES)
    return st.lists(
        valid | valid | hostile_document() | hostile_document() | with_bom | raw | biggest_order(),
        min_size=10,
        max_size=60,
    )


def _codec_verdict(feed: str, raw: bytes) -> tuple[str | None, str | None]:
    """(reason the codec rejects the line for, event id if it accepts it)."""
    try:
        event = decode_event(InputTopic(feed), raw)
    except ContractError as error:
        return error.reason_code.value, None
    return None, event.event_id


@contextmanager
def _run(batch: list[Message]) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        lines: dict[str, list[bytes]] = {feed: [] for feed in FEEDS}
        for feed, raw in batch:
            lines[feed].append(raw)
        for feed, content in lines.items():
            (root / f"{feed}.jsonl").write_bytes(b"".join(line + b"\n" for line in content))
        db = root / "allocflow.duckdb"
        args = ["run", "--input", str(root), "--out", str(root / "out"), "--db", str(db)]
        assert main(args) == 0
        yield root


def _dead_letters(out: Path) -> dict[tuple[str, int], DeadLetterRecord]:
    path = out / f"{OutputTopic.DEAD_LETTER.value}.jsonl"
    records = (
        [DeadLetterRecord.model_validate_json(line) for line in path.read_bytes().splitlines()]
        if path.exists()
        else []
    )
    by_position = {(record.source_topic, record.offset or 0): record for record in records}
    assert len(by_position) == len(records), "a line was dead-lettered twice"
    return by_position


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.deferred(messages))
def test_hostile_input_is_accounted_for_exactly_once_from_decode_to_duckdb(
    batch: list[Message],
) -> None:
    with _run(batch) as root:
        out = root / "out"
        dead = _dead_letters(out)
        accounting = account_run(input_files(root, ALLOCATION_INPUTS), out)
        with duckdb.connect(str(root / "allocflow.duckdb"), read_only=True) as db:
            landed = set(db.sql("SELECT event_id, topic FROM input_events").fetchall())
            landed_dead = db.sql("SELECT count(*) FROM dead_letters").fetchall()[0][0]

    accepted: list[tuple[str, str]] = []
    screened: set[tuple[str, str]] = set()
    position = dict.fromkeys(FEEDS, 0)
    for feed, raw in batch:
        index = position[feed]
        position[feed] += 1
        reason, event_id = _codec_verdict(feed, raw)
        record = dead.get((feed, index))
        if reason is not None:
            assert record is not None, f"{feed}[{index}] rejected but not dead-lettered"
            assert record.reason_code.value == reason
            assert record.raw == raw
            continue
        assert event_id is not None
        if record is not None:
            assert record.reason_code is DeadLetterReason.EVENT_TIME_OUT_OF_RANGE, record.reason
            screened.add((event_id, feed))
            continue
        accepted.append((event_id, feed))
    valid = set(accepted)

    assert accounting.inputs == len(batch)
    assert sum(accounting.dead_lettered.values()) == len(dead)
    assert accounting.deduplicated == len(accepted) - len(valid)
    assert accounting.valid == len(valid)
    assert accounting.inputs == accounting.valid + len(dead) + accounting.deduplicated
    assert landed_dead == len(dead)
    assert valid <= landed, f"valid events not landed: {sorted(valid - landed)[:5]}"
    # The events the flow held out for their event time are dead letters only: the
    # database holds what the flow processed.
    assert landed == valid, f"landed but not processed: {sorted(landed - valid)[:5]}"
