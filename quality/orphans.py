"""Orphans: shipment events for an unknown order, carrier events for an unknown shipment.

An event that names an unknown parent opens a deadline of its ``event_time`` plus the
grace period. The parent arriving before the gates' watermark passes the deadline
cancels it; otherwise the deadline fires as an orphan alert. Each unknown parent is
reported once, for the first event that named it.
"""

import heapq
from dataclasses import dataclass
from datetime import datetime, timedelta

from allocflow.models.carrier import CarrierEvent
from allocflow.models.dq_alerts import DqCheck
from allocflow.models.envelope import EventEnvelope
from allocflow.models.topics import InputTopic
from allocflow.models.vocabulary import Severity
from allocflow.quality.alerts import Finding
from allocflow.quality.recent import RecentMap

_ORDER = "order_id"
_SHIPMENT = "shipment_id"


@dataclass(frozen=True)
class PendingOrphan:
    """An event waiting for its parent until ``deadline``.

    Attributes:
        deadline: Event time after which the event is an orphan.
        finding: The orphan finding, reported if the deadline passes.
        raw: The event's message, for the alert's sample.
    """

    deadline: datetime
    finding: Finding
    raw: bytes


class OrphanCheck:
    """Remembers known orders and shipments and the deadlines of events waiting for one.

    Known ids are bounded (``memory`` orders and ``memory`` shipments, least recently
    seen forgotten first); an order forgotten and then shipped again is reported.
    """

    def __init__(self, grace: timedelta, memory: int) -> None:
        """Wait ``grace`` for a parent; remember ``memory`` orders and shipments each."""
        self._grace = grace
        self._known = {_ORDER: RecentMap[bool](memory), _SHIPMENT: RecentMap[bool](memory)}
        self._pending: dict[tuple[str, str], PendingOrphan] = {}
        self._deadlines: list[tuple[datetime, str, str]] = []

    @property
    def pending(self) -> int:
        """Events waiting for their parent now."""
        return len(self._pending)

    def observe(self, feed: str, event: EventEnvelope, raw: bytes) -> None:
        """Learn the ids ``event`` establishes, and open a deadline if its parent is unknown."""
        if feed == InputTopic.ORDERS:
            order_id = getattr(event, _ORDER, None)
            if order_id is not None:
                self._learn(_ORDER, order_id)
        elif feed == InputTopic.SHIPMENTS:
            self._learn(_SHIPMENT, getattr(event, _SHIPMENT))
            self._expect(_ORDER, getattr(event, _ORDER), feed, event, raw)
        elif isinstance(event, CarrierEvent):
            self._expect(_SHIPMENT, event.shipment_id, feed, event, raw)

    def due(self, watermark: datetime) -> list[PendingOrphan]:
        """Return, and forget, the waiting events whose deadline ``watermark`` passed."""
        fired: list[PendingOrphan] = []
        while self._deadlines and self._deadlines[0][0] < watermark:
            _, kind, key = heapq.heappop(self._deadlines)
            fired.extend(self._fire(kind, key))
        return fired

    def drain(self) -> list[PendingOrphan]:
        """Return, and forget, every waiting event: the input ended without its parent."""
        fired: list[PendingOrphan] = []
        while self._deadlines:
            _, kind, key = heapq.heappop(self._deadlines)
            fired.extend(self._fire(kind, key))
        return fired

    def _learn(self, kind: str, key: str) -> None:
        self._known[kind].put(key, True)
        self._pending.pop((kind, key), None)

    def _fire(self, kind: str, key: str) -> list[PendingOrphan]:
        pending = self._pending.pop((kind, key), None)
        if pending is None:
            return []
        self._known[kind].put(key, True)
        return [pending]

    def _expect(self, kind: str, key: str, feed: str, event: EventEnvelope, raw: bytes) -> None:
        if self._known[kind].get(key) or (kind, key) in self._pending:
            return
        deadline = event.event_time + self._grace
        parent = "order" if kind == _ORDER else "shipment"
        finding = Finding(
            check=DqCheck.ORPHAN,
            rule=f"unknown_{parent}",
            severity=Severity.WARNING,
            feed=feed,
            detail=f"{event.event_type} names {kind} {key}, but no event of that {parent} "
            f"arrived by {deadline.isoformat()} (grace {self._grace} after "
            f"{event.event_time.isoformat()})",
            event_id=event.event_id,
            entity={kind: key, **_subject(event)},
        )
        self._pending[kind, key] = PendingOrphan(deadline, finding, raw)
        heapq.heappush(self._deadlines, (deadline, kind, key))


def _subject(event: EventEnvelope) -> dict[str, str]:
    return {type(event).KEY_FIELD: event.message_key()}
