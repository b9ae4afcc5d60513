"""Route-delay detection: per-shipment state machines and per-lane performance, in event time.

Plain Python without Bytewax (:mod:`allocflow.flows.route_tracking` wires it into the
dataflow): :class:`~allocflow.flows.tracking.router.TrackingRouter` keys shipment and
carrier events by carrier lane and ticks the clock of every lane;
:class:`~allocflow.flows.tracking.lane.LaneTracker` runs each lane's shipments and
on-time rate and emits ``route-alerts`` records and ``ROUTE_DELAY_RISK`` exceptions.
"""
