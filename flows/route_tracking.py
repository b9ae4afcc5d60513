"""The route-tracking steps of the dataflow: shipment and carrier events in, route alerts out.

::

    passed events ─► logistics events ─► route to lanes (stateful, one key)
                  ─► track lanes (stateful, keyed by carrier|lane) ─► route alerts
                                                                   └► ROUTE_DELAY_RISK exceptions

The logistics events are every shipment and carrier event, plus the order events, from
which the router only learns which orders exist (a shipment naming an order never seen
raises its risks as ``DATA_QUALITY``). The router holds one key, like the quality gate
before it, so every lane receives its events and ticks along one ordered path and the
alerts are the same for any number of workers. Each lane's
:class:`~allocflow.flows.tracking.lane.LaneTracker` is snapshotted with the rest of the
state; it keeps its deadlines itself and uses no wall-clock timer.
"""

from functools import partial
from typing import cast

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.operators import KeyedStream

from allocflow.flows.snapshots import stateful_flat_map
from allocflow.flows.tracking.lane import LaneItem, LaneTracker
from allocflow.flows.tracking.router import Routed, TrackingRouter, is_tracked
from allocflow.flows.tracking.settings import TrackingSettings
from allocflow.flows.tracking.shipment import RouteOutput
from allocflow.models.envelope import EventEnvelope

ROUTER_KEY = "tracking-router"
"""The tracking router's single state key."""


def track_routes(events: Stream[EventEnvelope], settings: TrackingSettings) -> Stream[RouteOutput]:
    """Add the route-tracking steps after ``events``; return the alerts and exceptions."""
    logistics = op.filter("logistics_events", events, is_tracked)
    keyed = op.key_on("tracking_router_key", logistics, _router_key)
    routed = stateful_flat_map("route_to_lanes", keyed, partial(_route, settings))
    by_lane = cast(KeyedStream[LaneItem], op.key_rm("unkey_router", routed))
    outputs = stateful_flat_map("track_lanes", by_lane, partial(_track, settings))
    return op.key_rm("unkey_lanes", outputs)


def _router_key(_event: EventEnvelope) -> str:
    return ROUTER_KEY


def _route(
    settings: TrackingSettings, state: TrackingRouter | None, event: EventEnvelope
) -> tuple[TrackingRouter, list[Routed]]:
    router = state if state is not None else TrackingRouter(settings)
    return router, router.route(event)


def _track(
    settings: TrackingSettings, state: LaneTracker | None, item: LaneItem
) -> tuple[LaneTracker, list[RouteOutput]]:
    tracker = state if state is not None else LaneTracker(settings, item.carrier_id, item.lane)
    return tracker, tracker.apply(item.payload)
