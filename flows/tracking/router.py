"""Routes shipment and carrier events to their lane, and the event-time clock to every lane.

Carrier scans name their shipment, not its lane: the router remembers each shipment's
lane from its ``shipment.created`` event (bounded by ``shipment_memory``). It also
watches the latest event time and, each time it crosses a multiple of ``tick_every``,
sends every known lane a :class:`~allocflow.flows.tracking.lane.Tick`, so a lane whose
own events stop (a stalled carrier) still reaches its deadlines.

The router also reads the orders feed, only to remember which orders exist (bounded
by ``shipment_memory`` too; order events reach no lane and move no clock): a
``shipment.created`` whose order it has not seen is followed, to its lane, by an
:class:`~allocflow.flows.tracking.lane.OrderNews` saying so, and by another one if the
order arrives later. A lane raises the risks of such a shipment as data quality.

Example:
    >>> from allocflow.models.codec import decode_event
    >>> from allocflow.models.topics import InputTopic
    >>> created = decode_event(InputTopic.SHIPMENTS, (
    ...     b'{"event_id":"e-1","event_type":"shipment.created","source":"tms",'
    ...     b'"event_time":"2026-03-02T06:00:00Z","shipment_id":"SH-1","order_id":"O-1",'
    ...     b'"node_id":"DC-NJ","carrier_id":"CARR-A","lane":"DC-NJ>west",'
    ...     b'"dispatch_cutoff":"2026-03-02T12:00:00Z",'
    ...     b'"promised_delivery":"2026-03-04T12:00:00Z",'
    ...     b'"lines":[{"line_id":"L-1","sku":"S-1","qty":2}]}'))
    >>> router = TrackingRouter(TrackingSettings())
    >>> [(key, type(item.payload).__name__) for key, item in router.route(created)]
    [('CARR-A|DC-NJ>west', 'ShipmentCreated'), ('CARR-A|DC-NJ>west', 'OrderNews')]

    The router had not seen order ``O-1``, so the lane hears that too.
"""

from datetime import datetime

from allocflow.flows.tracking.bounded import BoundedMap
from allocflow.flows.tracking.lane import LaneItem, OrderNews, Tick
from allocflow.flows.tracking.moments import at_seconds
from allocflow.flows.tracking.settings import TrackingSettings
from allocflow.models.carrier import CarrierEvent
from allocflow.models.envelope import EventEnvelope
from allocflow.models.orders import OrderCancelled, OrderChanged, OrderPlaced
from allocflow.models.shipments import (
    ShipmentCreated,
    ShipmentDelivered,
    ShipmentDispatched,
    ShipmentPicked,
    ShipmentShortShipped,
)
from allocflow.quality.recent import RecentMap

Routed = tuple[str, LaneItem]
"""A lane key (``carrier|lane``) and what that lane receives."""

ORDER_EVENTS = (OrderPlaced, OrderChanged, OrderCancelled)
"""Order events: each says its order exists."""

TRACKED_EVENTS = (
    ShipmentCreated,
    ShipmentPicked,
    ShipmentShortShipped,
    ShipmentDispatched,
    ShipmentDelivered,
    CarrierEvent,
    *ORDER_EVENTS,
)
"""The events the router takes: every shipment, carrier and order event."""

_Waiting = tuple[tuple[str, str, str], ...]
"""Shipments (carrier, lane, shipment id) waiting for their order to be seen."""


def is_tracked(event: EventEnvelope) -> bool:
    """Whether ``event`` concerns a shipment, so the router should see it."""
    return isinstance(event, TRACKED_EVENTS)


class TrackingRouter:
    """Keys shipment and carrier events by lane and broadcasts ticks to every lane."""

    def __init__(self, settings: TrackingSettings) -> None:
        """Route under ``settings`` (tick interval, shipments remembered)."""
        self._tick_s = settings.tick_every.total_seconds()
        self._lane_of = RecentMap[tuple[str, str]](settings.shipment_memory)
        self._lanes: dict[str, tuple[str, str]] = {}
        self._next_tick: datetime | None = None
        self._orders = RecentMap[bool](settings.shipment_memory)
        self._awaiting_order = BoundedMap[_Waiting](settings.shipment_memory)

    def route(self, event: EventEnvelope) -> list[Routed]:
        """Return the ticks due by ``event``'s time, then ``event`` keyed by its lane.

        Events of shipments the router does not know (never created, or forgotten)
        are not routed; the data-quality gate reports such orphans. An order event
        returns the news, for the lanes of shipments waiting for that order, that it
        exists; it moves no clock.
        """
        if isinstance(event, ORDER_EVENTS):
            return self._order_seen(event.order_id)
        routed = self._ticks(event.event_time)
        if isinstance(event, ShipmentCreated):
            return routed + self._created(event)
        shipment_id: str | None = getattr(event, "shipment_id", None)
        lane = None if shipment_id is None else self._lane_of.get(shipment_id)
        if lane is not None:
            carrier_id, lane_id = lane
            routed.append((f"{carrier_id}|{lane_id}", LaneItem(carrier_id, lane_id, event)))
        return routed

    def _created(self, event: ShipmentCreated) -> list[Routed]:
        carrier_id, lane_id, shipment_id = event.carrier_id, event.lane, event.shipment_id
        key = f"{carrier_id}|{lane_id}"
        known = self._lane_of.get(shipment_id) is not None
        self._lane_of.put(shipment_id, (carrier_id, lane_id))
        self._lanes.setdefault(key, (carrier_id, lane_id))
        routed = [(key, LaneItem(carrier_id, lane_id, event))]
        if known or self._orders.get(event.order_id):
            return routed
        waiting = self._awaiting_order.get(event.order_id) or ()
        self._awaiting_order.put(event.order_id, (*waiting, (carrier_id, lane_id, shipment_id)))
        news = OrderNews(shipment_id, seen=False)
        return [*routed, (key, LaneItem(carrier_id, lane_id, news))]

    def _order_seen(self, order_id: str) -> list[Routed]:
        self._orders.put(order_id, True)
        return [
            (f"{carrier_id}|{lane_id}", LaneItem(carrier_id, lane_id, OrderNews(shipment_id, True)))
            for carrier_id, lane_id, shipment_id in self._awaiting_order.pop(order_id) or ()
        ]

    def _ticks(self, event_time: datetime) -> list[Routed]:
        if self._next_tick is not None and event_time < self._next_tick:
            return []
        seconds = event_time.timestamp()
        floor = seconds - seconds % self._tick_s
        first = self._next_tick is None
        self._next_tick = at_seconds(floor + self._tick_s)
        if first:
            return []
        tick = Tick(at_seconds(floor))
        return [
            (key, LaneItem(carrier, lane, tick)) for key, (carrier, lane) in self._lanes.items()
        ]
