"""Injecting data faults into a clean simulated stream, at stated rates per kind.

Faults are added as extra messages (a corrupted copy with its own event id, a
redelivered duplicate, an orphan, a negative stock level) or by holding a message
back (late arrival), so every clean event still arrives and each fault can be
accounted for on its own.
"""

import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import orjson

from allocflow.connectors.simulator.records import (
    KEY_FIELD_OF_EVENT_TYPE,
    FaultKind,
    SimRecord,
    record_of,
)
from allocflow.models.carrier import CarrierInTransit
from allocflow.models.codec import ContractError, decode_event
from allocflow.models.envelope import Source
from allocflow.models.ids import stable_id
from allocflow.models.inventory import StockSnapshot
from allocflow.models.shipments import ShipmentCreated, ShipmentLine

DEFAULT_FAULT_RATE = 0.005
_LATE_TYPES = frozenset({"carrier.in_transit", "carrier.eta_updated", "stock.adjusted"})
_ELIGIBLE_TYPES: dict[FaultKind, frozenset[str] | None] = {
    FaultKind.MALFORMED_JSON: None,
    FaultKind.SCHEMA_VIOLATION: None,
    FaultKind.DUPLICATE: None,
    FaultKind.LATE: _LATE_TYPES,
    FaultKind.ORPHAN_SHIPMENT: frozenset({"shipment.created"}),
    FaultKind.ORPHAN_SCAN: frozenset({"carrier.in_transit"}),
    FaultKind.NEGATIVE_STOCK: frozenset({"stock.snapshot"}),
}
_MIN_LATENESS = timedelta(hours=2)
_MAX_LATENESS = timedelta(hours=6)
_MAX_REDELIVERY_GAP = 200
_ORPHAN_ID_BASE = 90_000_000


@dataclass(frozen=True)
class FaultPlan:
    """Which faults to inject and how often.

    A rate is the probability that an eligible message gets the fault: every message
    for malformed JSON, schema violations and duplicates; carrier transit scans, ETA
    updates and stock adjustments for late arrival; shipment creations for orphan
    shipments; transit scans for orphan scans; stock snapshots for negative stock.

    Example:
        >>> FaultPlan.parse("duplicate=0.01,late", default_rate=0.002).rates["late"]
        0.002
    """

    rates: Mapping[FaultKind, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str, default_rate: float = DEFAULT_FAULT_RATE) -> "FaultPlan":
        """Parse ``all``, ``none`` or ``kind[=rate],…``.

        Raises:
            ValueError: Unknown kind, or a rate outside [0, 1].
        """
        spec = spec.strip()
        if spec in {"", "none"}:
            return cls()
        if spec == "all":
            return cls({kind: _checked_rate(default_rate, "default") for kind in FaultKind})
        rates: dict[FaultKind, float] = {}
        for item in spec.split(","):
            name, _, rate = item.strip().partition("=")
            if name not in FaultKind.__members__.values():
                known = ", ".join(kind.value for kind in FaultKind)
                raise ValueError(f"unknown fault kind {name!r}; choose from: {known}")
            rates[FaultKind(name)] = _checked_rate(float(rate) if rate else default_rate, name)
        return cls(rates)


def _checked_rate(rate: float, name: str) -> float:
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"fault rate of {name} must be within [0, 1] (got {rate})")
    return rate


@dataclass(order=True)
class _Held:
    release_at_index: int
    order: int
    record: SimRecord = field(compare=False)


class FaultInjector:
    """Adds faults to a clean, time-ordered stream of messages."""

    def __init__(self, plan: FaultPlan, seed: int) -> None:
        """Prepare the injector; its draws depend only on ``seed`` and the stream."""
        self._plan = plan
        self._seed = seed
        self._rng = random.Random(f"allocflow-faults:{seed}")
        self._count = 0
        self._index = 0
        self._duplicates: list[_Held] = []
        self._late: list[tuple[datetime, SimRecord]] = []

    def inject(self, records: Iterable[SimRecord]) -> Iterator[SimRecord]:
        """Yield the stream with faults added, in arrival order."""
        if not any(self._plan.rates.values()):
            yield from records
            return
        for record in records:
            self._index += 1
            yield from self._release(record)
            if self._hit(FaultKind.LATE, record):
                self._hold_late(record)
            else:
                yield record
            yield from self._extras(record)
        yield from (record for _, record in sorted(self._late, key=lambda held: held[0]))
        yield from (held.record for held in sorted(self._duplicates))

    def _hit(self, kind: FaultKind, record: SimRecord) -> bool:
        rate = self._plan.rates.get(kind, 0.0)
        eligible = _ELIGIBLE_TYPES[kind]
        if rate == 0.0 or (eligible is not None and record.event_type not in eligible):
            return False
        return self._rng.random() < rate

    def _release(self, current: SimRecord) -> Iterator[SimRecord]:
        due = [held for held in self._late if held[0] <= current.event_time]
        for held in due:
            self._late.remove(held)
            yield held[1]
        while self._duplicates and self._duplicates[0].release_at_index <= self._index:
            yield self._duplicates.pop(0).record

    def _hold_late(self, record: SimRecord) -> None:
        lateness = self._rng.uniform(_MIN_LATENESS.total_seconds(), _MAX_LATENESS.total_seconds())
        release_after = record.event_time + timedelta(seconds=round(lateness))
        detail = f"held back until event time {release_after.isoformat()}"
        self._late.append((release_after, replace(record, fault=FaultKind.LATE, detail=detail)))

    def _extras(self, record: SimRecord) -> Iterator[SimRecord]:
        if self._hit(FaultKind.DUPLICATE, record):
            gap = self._rng.randint(1, _MAX_REDELIVERY_GAP)
            duplicate = replace(
                record, fault=FaultKind.DUPLICATE, detail=f"redelivered {gap} messages later"
            )
            self._duplicates.append(_Held(self._index + gap, self._new_count(), duplicate))
            self._duplicates.sort()
        if self._hit(FaultKind.MALFORMED_JSON, record):
            yield self._malformed(record)
        if self._hit(FaultKind.SCHEMA_VIOLATION, record):
            yield self._violating(record)
        if self._hit(FaultKind.NEGATIVE_STOCK, record):
            yield self._negative_stock(record)
        if self._hit(FaultKind.ORPHAN_SHIPMENT, record):
            yield self._orphan_shipment(record)
        if self._hit(FaultKind.ORPHAN_SCAN, record):
            yield self._orphan_scan(record)

    def _new_count(self) -> int:
        self._count += 1
        return self._count

    def _fault_event_id(self) -> str:
        return stable_id("evt", str(self._seed), "fault", str(self._new_count()))

    def _copy_with_new_id(self, record: SimRecord) -> tuple[str, dict[str, Any]]:
        document = orjson.loads(record.value)
        event_id = self._fault_event_id()
        document["event_id"] = event_id
        return event_id, document

    def _malformed(self, record: SimRecord) -> SimRecord:
        event_id, document = self._copy_with_new_id(record)
        text = orjson.dumps(document)
        how = self._rng.choice(("truncated", "unquoted key", "trailing comma", "bad utf-8"))
        if how == "truncated":
            value = text[: self._rng.randint(1, len(text) - 2)]
        elif how == "unquoted key":
            value = text.replace(b'"event_id"', b"event_id", 1)
        elif how == "trailing comma":
            value = text[:-1] + b",}"
        else:
            value = text.replace(b'"source":"', b'"source":"\xff\xfe', 1)
        _require_rejected(record, value, how)
        return replace(
            record,
            value=value,
            event_id=event_id,
            fault=FaultKind.MALFORMED_JSON,
            detail=how,
        )

    def _violating(self, record: SimRecord) -> SimRecord:
        event_id, document = self._copy_with_new_id(record)
        field_name, how = _violate(self._rng, document)
        value = orjson.dumps(document)
        _require_rejected(record, value, how)
        return replace(
            record,
            value=value,
            event_id=event_id,
            fault=FaultKind.SCHEMA_VIOLATION,
            detail=f"{field_name}: {how}",
        )

    def _negative_stock(self, record: SimRecord) -> SimRecord:
        clean = orjson.loads(record.value)
        event = StockSnapshot(
            event_id=self._fault_event_id(),
            event_time=record.event_time,
            source=Source.WMS,
            node_id=clean["node_id"],
            sku=clean["sku"],
            on_hand=-self._rng.randint(1, 50),
        )
        return replace(
            record_of(event), fault=FaultKind.NEGATIVE_STOCK, detail=f"on_hand {event.on_hand}"
        )

    def _orphan_shipment(self, record: SimRecord) -> SimRecord:
        clean = ShipmentCreated.model_validate_json(record.value)
        number = _ORPHAN_ID_BASE + self._new_count()
        event = clean.model_copy(
            update={
                "event_id": self._fault_event_id(),
                "shipment_id": f"SH-{number}",
                "order_id": f"SO-{number}",
                "lines": [ShipmentLine(line_id="1", sku=clean.lines[0].sku, qty=1)],
            }
        )
        return replace(
            record_of(event), fault=FaultKind.ORPHAN_SHIPMENT, detail=f"unknown {event.order_id}"
        )

    def _orphan_scan(self, record: SimRecord) -> SimRecord:
        clean = CarrierInTransit.model_validate_json(record.value)
        number = _ORPHAN_ID_BASE + self._new_count()
        event = clean.model_copy(
            update={
                "event_id": self._fault_event_id(),
                "shipment_id": f"SH-{number}",
                "tracking_no": f"TRK{number}",
            }
        )
        return replace(
            record_of(event), fault=FaultKind.ORPHAN_SCAN, detail=f"unknown {event.shipment_id}"
        )


def _require_rejected(record: SimRecord, value: bytes, how: str) -> None:
    """Guard the simulator itself: a corrupted copy must break the contract."""
    try:
        decode_event(record.topic, value)
    except ContractError:
        return
    raise RuntimeError(f"simulator bug: {how} copy of {record.event_type} passed validation")


def _naive_timestamp(document: dict[str, Any]) -> str:
    document["event_time"] = document["event_time"].replace("Z", "")[:19]
    return "event_time"


def _unknown_source(document: dict[str, Any]) -> str:
    document["source"] = "fax-gateway"
    return "source"


def _empty_id(document: dict[str, Any]) -> str:
    subject = KEY_FIELD_OF_EVENT_TYPE[document["event_type"]]
    document[subject] = ""
    return subject


def _missing_id(document: dict[str, Any]) -> str:
    subject = KEY_FIELD_OF_EVENT_TYPE[document["event_type"]]
    del document[subject]
    return subject


def _version_2(document: dict[str, Any]) -> str:
    document["schema_version"] = 2
    return "schema_version"


def _non_positive_qty(document: dict[str, Any], bad_qty: int) -> str:
    if "qty" in document:
        document["qty"] = bad_qty
        return "qty"
    document["lines"][0]["qty"] = bad_qty
    return "lines.0.qty"


_VIOLATIONS: dict[str, Callable[[dict[str, Any]], str]] = {
    "naive timestamp": _naive_timestamp,
    "unknown source": _unknown_source,
    "empty id": _empty_id,
    "missing id": _missing_id,
    "version 2": _version_2,
}


def _violate(rng: random.Random, document: dict[str, Any]) -> tuple[str, str]:
    """Break one rule of the contract in ``document``; return the field and how."""
    has_qty = "qty" in document or "qty" in (document.get("lines") or [{}])[0]
    how = rng.choice([*_VIOLATIONS, "non-positive qty"] if has_qty else list(_VIOLATIONS))
    if how == "non-positive qty":
        return _non_positive_qty(document, rng.choice((0, -rng.randint(1, 10)))), how
    return _VIOLATIONS[how](document), how
