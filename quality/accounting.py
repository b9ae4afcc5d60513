"""Accounting of the gates over a simulated stream: every input and every fault explained.

Replays the JSON Lines files of ``allocflow simulate --out DIR`` in the order the
dataflow reads them (:class:`~allocflow.connectors.stream_sources.MergedFilePartition`,
merged by event time), decodes each message, runs the gate over the valid ones, and
matches the alerts against the faults the simulator listed in ``manifest.json``:

* ``malformed_json`` and ``schema_violation`` are detected when their line is
  dead-lettered (decoding fails; a line the input screens out for its event time is
  dead-lettered too, as ``EVENT_TIME_OUT_OF_RANGE``);
* ``duplicate``, ``late``, ``orphan_shipment``, ``orphan_scan`` and ``negative_stock``
  are detected by an alert of the matching check carrying the fault's ``event_id``.

Every alert explained by no fault is a false alert. (A fault-free simulation keeps
every feed alive until its end: the ERP still places and releases credit holds while
the last orders are delivered, so no feed goes silent.)
"""

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from allocflow.connectors.stream_sources import MergedFilePartition, RawMessage
from allocflow.models.codec import ContractError, decode_event
from allocflow.models.dq_alerts import DqAlert, DqCheck
from allocflow.models.topics import InputTopic
from allocflow.quality.gate import QualityGate
from allocflow.quality.settings import GateSettings

DEAD_LETTER_FAULTS = frozenset({"malformed_json", "schema_violation"})
"""Fault kinds detected by contract validation (the message is dead-lettered)."""

CHECK_OF_FAULT: dict[str, DqCheck] = {
    "duplicate": DqCheck.DUPLICATE,
    "late": DqCheck.LATE,
    "orphan_shipment": DqCheck.ORPHAN,
    "orphan_scan": DqCheck.ORPHAN,
    "negative_stock": DqCheck.IMPOSSIBLE_VALUE,
}
"""The gate check expected to detect each other fault kind."""

_BATCH = 5000


@dataclass(frozen=True)
class InjectedFault:
    """One fault from the manifest.

    Attributes:
        kind: Fault kind.
        topic: Logical topic.
        index: Line of the message in its topic's file (0-based).
        event_id: The event id the fault carries.
        detail: The simulator's description.
    """

    kind: str
    topic: str
    index: int
    event_id: str
    detail: str


@dataclass(frozen=True)
class Detection:
    """Faults of one kind: how many were injected and how many detected."""

    injected: int
    detected: int


@dataclass(frozen=True)
class Accounting:
    """Where every input message went and which alerts every fault raised.

    Attributes:
        inputs: Messages read.
        valid: Messages that passed the gate.
        dead_lettered: Messages rejected by contract validation.
        deduplicated: Valid messages dropped as duplicates.
        alerts: Every alert, in the order raised.
        detections: Per fault kind, injected and detected counts.
        missed: Injected faults no check detected.
        false_alerts: Alerts explained by no injected fault.
    """

    inputs: int
    valid: int
    dead_lettered: int
    deduplicated: int
    alerts: tuple[DqAlert, ...]
    detections: dict[str, Detection]
    missed: tuple[InjectedFault, ...]
    false_alerts: tuple[DqAlert, ...]

    @property
    def balanced(self) -> bool:
        """True when inputs = valid + dead-lettered + deduplicated exactly."""
        return self.inputs == self.valid + self.dead_lettered + self.deduplicated


@dataclass
class _Replay:
    """What a replay observed, before matching it against the manifest."""

    inputs: int = 0
    dead_lettered: set[tuple[str, int]] = field(default_factory=set)
    alerts: list[DqAlert] = field(default_factory=list)


def account(directory: Path, settings: GateSettings | None = None) -> Accounting:
    """Replay the simulation in ``directory`` through a gate and account for it.

    Args:
        directory: Output of ``allocflow simulate --out``: ``<topic>.jsonl`` files and
            ``manifest.json``.
        settings: Gate settings; defaults when None.

    Returns:
        The accounting.
    """
    gate = QualityGate(settings)
    replay = _replay(directory, gate)
    faults = read_faults(directory / "manifest.json")
    raised = {(alert.check, alert.event_id) for alert in replay.alerts}
    missed = tuple(fault for fault in faults if not _detected(fault, replay, raised))
    explained = {(CHECK_OF_FAULT[f.kind], f.event_id) for f in faults if f.kind in CHECK_OF_FAULT}
    return Accounting(
        inputs=replay.inputs,
        valid=gate.passed,
        dead_lettered=len(replay.dead_lettered),
        deduplicated=gate.deduplicated,
        alerts=tuple(replay.alerts),
        detections=_detections(faults, missed),
        missed=missed,
        false_alerts=tuple(
            alert for alert in replay.alerts if (alert.check, alert.event_id) not in explained
        ),
    )


def read_faults(manifest: Path) -> list[InjectedFault]:
    """Return every fault the simulator listed in ``manifest``.

    Raises:
        ValueError: The manifest names a fault kind this accounting does not know.
    """
    document: dict[str, Any] = orjson.loads(manifest.read_bytes())
    faults: list[InjectedFault] = []
    for kind, listed in document["faults"].items():
        if kind not in DEAD_LETTER_FAULTS and kind not in CHECK_OF_FAULT:
            raise ValueError(f"manifest {manifest} lists an unknown fault kind {kind!r}")
        faults += [
            InjectedFault(kind, entry["topic"], entry["index"], entry["event_id"], entry["detail"])
            for entry in listed["messages"]
        ]
    return faults


def merged_messages(directory: Path) -> Iterator[RawMessage]:
    """Yield the messages of the topic files in ``directory`` in the dataflow's merge order."""
    files = tuple(
        (topic.value, directory / f"{topic.value}.jsonl")
        for topic in InputTopic
        if (directory / f"{topic.value}.jsonl").exists()
    )
    partition = MergedFilePartition(files, _BATCH, 0)
    try:
        while True:
            try:
                batch = partition.next_batch()
            except StopIteration:
                return
            yield from batch
    finally:
        partition.close()


def _replay(directory: Path, gate: QualityGate) -> _Replay:
    replay = _Replay()
    for message in merged_messages(directory):
        replay.inputs += 1
        try:
            event = decode_event(InputTopic(message.topic), message.value)
        except ContractError:
            event = None
        if event is None or message.time_problem is not None:
            # Broken, or screened out for its event time: the flow dead-letters it.
            replay.dead_lettered.add((message.topic, message.offset or 0))
            continue
        result = gate.admit(message.topic, event, message.value)
        replay.alerts += result.alerts
    replay.alerts += gate.finish()
    return replay


def _detected(
    fault: InjectedFault, replay: _Replay, raised: set[tuple[DqCheck, str | None]]
) -> bool:
    if fault.kind in DEAD_LETTER_FAULTS:
        return (fault.topic, fault.index) in replay.dead_lettered
    return (CHECK_OF_FAULT[fault.kind], fault.event_id) in raised


def _detections(
    faults: list[InjectedFault], missed: tuple[InjectedFault, ...]
) -> dict[str, Detection]:
    injected = Counter(fault.kind for fault in faults)
    not_found = Counter(fault.kind for fault in missed)
    return {
        kind: Detection(count, count - not_found[kind]) for kind, count in sorted(injected.items())
    }
