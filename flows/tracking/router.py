"""Routes shipment and carrier events to their lane, and the event-time clock to every lane.

Carrier scans name their shipment, not its lane: the router remembers each shipment's
lane from its ``shipment.created`` event (bounded by ``shipment_memory``). It also
watches the latest event time and, each time it crosses a multiple of ``tick_every``,
sends every known lane a :class:`~allocflow.flows.tracking.lane.Tick`, so a lane whose
own events stop (a stalled carrier) still reaches its deadlines.

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
    >>> [(key, item.lane) for key, item in router.route(created)]
    [('CARR-A|DC-NJ>west', 'DC-NJ>west')]
"""

from datetime import UTC, datetime

from allocflow.flows.tracking.lane import LaneItem, Tick
from allocflow.flows.tracking.settings import TrackingSettings
from allocflow.models.carrier import CarrierEvent
from allocflow.models.envelope import EventEnvelope
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

TRACKED_EVENTS = (
    ShipmentCreated,
    ShipmentPicked,
    ShipmentShortShipped,
    ShipmentDispatched,
    ShipmentDelivered,
    CarrierEvent,
)
"""The events the router takes: every shipment event and every carrier event."""


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

    def route(self, event: EventEnvelope) -> list[Routed]:
        """Return the ticks due by ``event``'s time, then ``event`` keyed by its lane.

        Events of shipments the router does not know (never created, or forgotten)
        are not routed; the data-quality gate reports such orphans.
        """
        routed = self._ticks(event.event_time)
        lane = self._lane(event)
        if lane is None:
            return routed
        carrier_id, lane_id = lane
        routed.append((f"{carrier_id}|{lane_id}", LaneItem(carrier_id, lane_id, event)))
        return routed

    def _lane(self, event: EventEnvelope) -> tuple[str, str] | None:
        shipment_id: str | None = getattr(event, "shipment_id", None)
        if shipment_id is None:
            return None
        if isinstance(event, ShipmentCreated):
            lane = (event.carrier_id, event.lane)
            self._lane_of.put(shipment_id, lane)
            self._lanes.setdefault(f"{event.carrier_id}|{event.lane}", lane)
            return lane
        return self._lane_of.get(shipment_id)

    def _ticks(self, event_time: datetime) -> list[Routed]:
        if self._next_tick is not None and event_time < self._next_tick:
            return []
        seconds = event_time.timestamp()
        floor = seconds - seconds % self._tick_s
        first = self._next_tick is None
        self._next_tick = datetime.fromtimestamp(floor + self._tick_s, UTC)
        if first:
            return []
        tick = Tick(datetime.fromtimestamp(floor, UTC))
        return [
            (key, LaneItem(carrier, lane, tick)) for key, (carrier, lane) in self._lanes.items()
        ]
