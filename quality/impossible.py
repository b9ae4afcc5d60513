"""Impossible values: negative stock levels, and a delivery before its dispatch.

A quantity of zero or less never reaches the gates: the contract rejects it, so the
message is dead-lettered with reason ``SCHEMA_VIOLATION``.
"""

from datetime import datetime

from allocflow.models.dq_alerts import DqCheck
from allocflow.models.envelope import EventEnvelope
from allocflow.models.inventory import StockAdjusted, StockSnapshot
from allocflow.models.shipments import ShipmentDelivered, ShipmentDispatched
from allocflow.models.vocabulary import Severity
from allocflow.quality.alerts import Finding
from allocflow.quality.recent import RecentMap


class ImpossibleValueCheck:
    """Flags values no real warehouse can produce.

    Dispatch and delivery times are remembered for ``memory`` shipments each, so the
    order of the two events does not matter.
    """

    def __init__(self, memory: int) -> None:
        """Remember dispatch and delivery times of ``memory`` shipments each."""
        self._dispatched = RecentMap[datetime](memory)
        self._delivered = RecentMap[datetime](memory)

    def check(self, feed: str, event: EventEnvelope) -> Finding | None:
        """Return a finding if ``event`` carries an impossible value."""
        if isinstance(event, StockSnapshot) and event.on_hand < 0:
            return _negative_stock(feed, event, "on_hand", event.on_hand)
        if isinstance(event, StockAdjusted) and (event.on_hand_after or 0) < 0:
            return _negative_stock(feed, event, "on_hand_after", event.on_hand_after or 0)
        if isinstance(event, ShipmentDispatched):
            self._dispatched.put(event.shipment_id, event.event_time)
            delivered = self._delivered.get(event.shipment_id)
            return _delivery_order(feed, event, event.event_time, delivered)
        if isinstance(event, ShipmentDelivered):
            self._delivered.put(event.shipment_id, event.event_time)
            dispatched = self._dispatched.get(event.shipment_id)
            return _delivery_order(feed, event, dispatched, event.event_time)
        return None


def _negative_stock(
    feed: str, event: StockSnapshot | StockAdjusted, field: str, level: int
) -> Finding:
    return Finding(
        check=DqCheck.IMPOSSIBLE_VALUE,
        rule=f"negative_{field}",
        severity=Severity.CRITICAL,
        feed=feed,
        detail=f"{event.event_type} {field} is {level} for sku {event.sku} at node "
        f"{event.node_id}; stock on hand cannot be negative",
        event_id=event.event_id,
        entity={"node_id": event.node_id, "sku": event.sku},
    )


def _delivery_order(
    feed: str,
    event: ShipmentDispatched | ShipmentDelivered,
    dispatched: datetime | None,
    delivered: datetime | None,
) -> Finding | None:
    if dispatched is None or delivered is None or delivered >= dispatched:
        return None
    return Finding(
        check=DqCheck.IMPOSSIBLE_VALUE,
        rule="delivered_before_dispatched",
        severity=Severity.WARNING,
        feed=feed,
        detail=f"shipment {event.shipment_id} delivered at {delivered.isoformat()}, "
        f"before it was dispatched at {dispatched.isoformat()}",
        event_id=event.event_id,
        entity={"shipment_id": event.shipment_id, "order_id": event.order_id},
    )
