"""The manifest written beside a simulation: what was sent and every injected fault."""

from collections import Counter, defaultdict
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from allocflow.connectors.simulator.engine import SimulationConfig
from allocflow.connectors.simulator.faults import FaultPlan
from allocflow.connectors.simulator.records import FaultKind, SimRecord

MANIFEST_VERSION = 1


@dataclass
class FaultEntry:
    """One injected fault, located in the output.

    Attributes:
        kind: Fault kind.
        topic: Logical topic.
        index: Position of the message in its topic's output (0-based).
        event_id: Event id in (or meant for) the message.
        event_type: Event type of the message.
        key: Message key.
        detail: What exactly is wrong.
        partition: Kafka partition, when sent to Kafka.
        offset: Kafka offset, when sent to Kafka.
    """

    kind: FaultKind
    topic: str
    index: int
    event_id: str
    event_type: str
    key: str
    detail: str
    partition: int | None = None
    offset: int | None = None

    def as_json(self) -> dict[str, Any]:
        """Return the entry as a JSON object (Kafka position only when known)."""
        entry: dict[str, Any] = {
            "topic": self.topic,
            "index": self.index,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "key": self.key,
            "detail": self.detail,
        }
        if self.partition is not None:
            entry["partition"] = self.partition
            entry["offset"] = self.offset
        return entry


class ManifestBuilder:
    """Accumulates counts and fault locations while a simulation is written."""

    def __init__(self, config: SimulationConfig, plan: FaultPlan, scenarios: list[str]) -> None:
        """Start an empty manifest for ``config``."""
        self._config = config
        self._plan = plan
        self._scenarios = scenarios
        self._records: Counter[str] = Counter()
        self._types: dict[str, Counter[str]] = defaultdict(Counter)
        self._faults: dict[FaultKind, list[FaultEntry]] = defaultdict(list)
        self._total = 0

    def add(self, record: SimRecord) -> FaultEntry | None:
        """Count a written message; return its fault entry if it carries a fault."""
        topic = record.topic.value
        index = self._records[topic]
        self._records[topic] += 1
        self._total += 1
        self._types[topic][record.event_type] += 1
        if record.fault is None:
            return None
        entry = FaultEntry(
            record.fault,
            topic,
            index,
            record.event_id,
            record.event_type,
            record.key,
            record.detail,
        )
        self._faults[record.fault].append(entry)
        return entry

    @property
    def total(self) -> int:
        """Messages written so far."""
        return self._total

    def counts(self) -> dict[str, int]:
        """Return messages written per topic."""
        return dict(sorted(self._records.items()))

    def fault_counts(self) -> dict[str, int]:
        """Return injected faults per kind (every kind, zero included)."""
        return {kind.value: len(self._faults.get(kind, [])) for kind in FaultKind}

    def build(self, effects: dict[str, Any], last_event_time: str | None) -> dict[str, Any]:
        """Return the manifest document."""
        size = (
            {"orders": self._config.orders}
            if self._config.orders is not None
            else {
                "duration_s": self._config.duration.total_seconds() if self._config.duration else 0
            }
        )
        return {
            "manifest_version": MANIFEST_VERSION,
            "allocflow_version": version("allocflow"),
            "seed": self._config.seed,
            "scenarios": self._scenarios,
            "size": size,
            "orders_per_hour": self._config.orders_per_hour,
            "skus": self._config.skus,
            "customers": self._config.customers,
            "start": self._config.start.isoformat(),
            "last_event_time": last_event_time,
            "fault_rates": {kind.value: rate for kind, rate in sorted(self._plan.rates.items())},
            "messages": self.total,
            "clean_events": self.total
            - sum(self.fault_counts().values())
            + len(self._faults.get(FaultKind.LATE, [])),
            "topics": {
                topic: {"messages": count, "event_types": dict(sorted(self._types[topic].items()))}
                for topic, count in self.counts().items()
            },
            "faults": {
                kind: {
                    "count": count,
                    "messages": [
                        entry.as_json() for entry in self._faults.get(FaultKind(kind), [])
                    ],
                }
                for kind, count in self.fault_counts().items()
            },
            "scenario_effects": effects,
        }
