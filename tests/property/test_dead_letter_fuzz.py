"""Fuzzing the flow's decode and gate path: garbage never crashes it, and is dead-lettered.

Each example writes a batch of messages to the three input files: valid events from a
small simulation, arbitrary bytes, and valid events with one field replaced by an
arbitrary JSON value or removed. The real allocation flow runs over them in-process.
Every message the codec rejects must come out as exactly one dead letter carrying its
raw bytes, and no other message may be dead-lettered.
"""

import functools
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from bytewax.testing import run_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocflow.connectors.policy_file import default_policy
from allocflow.flows.allocation import (
    ALLOCATION_INPUTS,
    AllocationFlowConfig,
    FileEndpoints,
    build_allocation_flow,
)
from allocflow.flows.cli import main
from allocflow.models.codec import ContractError, decode_event
from allocflow.models.dead_letter import DeadLetterRecord
from allocflow.models.topics import InputTopic, OutputTopic

pytestmark = pytest.mark.property

FEEDS = [topic.value for topic in ALLOCATION_INPUTS]
_REMOVE = object()
Message = tuple[str, bytes]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


@functools.cache
def samples() -> dict[str, list[bytes]]:
    """Valid messages of each feed, from a small fault-free simulation."""
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory)
        simulate = ["simulate", "--seed", "2", "--orders", "15", "--faults", "none"]
        assert main([*simulate, "--out", str(out), "--no-progress"]) == 0
        return {feed: (out / f"{feed}.jsonl").read_bytes().splitlines()[:40] for feed in FEEDS}


@st.composite
def broken_document(draw: st.DrawFn) -> Message:
    """A valid event with one field replaced by an arbitrary JSON value, or removed."""
    feed = draw(st.sampled_from(FEEDS))
    document: dict[str, Any] = json.loads(draw(st.sampled_from(samples()[feed])))
    field = draw(st.sampled_from(sorted(document)))
    value = draw(st.just(_REMOVE) | json_values)
    if value is _REMOVE:
        del document[field]
    else:
        document[field] = value
    return feed, json.dumps(document).encode()


def messages() -> st.SearchStrategy[list[Message]]:
    valid = st.sampled_from(FEEDS).flatmap(
        lambda feed: st.tuples(st.just(feed), st.sampled_from(samples()[feed]))
    )
    garbage = st.tuples(
        st.sampled_from(FEEDS), st.binary(max_size=80).map(lambda b: b.replace(b"\n", b" "))
    )
    return st.lists(valid | garbage | broken_document(), min_size=1, max_size=60)


def _rejected(feed: str, raw: bytes) -> bool:
    try:
        decode_event(InputTopic(feed), raw)
    except ContractError:
        return True
    return False


def _run_flow(batch: list[Message], root: Path) -> list[DeadLetterRecord]:
    lines: dict[str, list[bytes]] = {feed: [] for feed in FEEDS}
    for feed, raw in batch:
        lines[feed].append(raw)
    for feed, content in lines.items():
        (root / f"{feed}.jsonl").write_bytes(b"".join(line + b"\n" for line in content))
    endpoints = FileEndpoints(root, root / "out")
    run_main(build_allocation_flow(AllocationFlowConfig(default_policy(), endpoints)))
    path = root / "out" / f"{OutputTopic.DEAD_LETTER.value}.jsonl"
    lines = path.read_bytes().splitlines() if path.exists() else []
    return [DeadLetterRecord.model_validate_json(line) for line in lines]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.deferred(messages))
def test_every_invalid_message_becomes_one_dead_letter_with_its_bytes(batch: list[Message]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        dead = _run_flow(batch, Path(directory))
    expected: dict[tuple[str, int], bytes] = {}
    position = dict.fromkeys(FEEDS, 0)
    for feed, raw in batch:
        if _rejected(feed, raw):
            expected[(feed, position[feed])] = raw
        position[feed] += 1
    got = {(record.source_topic, record.offset or 0): record.raw for record in dead}
    assert len(got) == len(dead)
    assert got == expected
