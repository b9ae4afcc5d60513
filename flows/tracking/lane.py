"""One carrier lane's tracker: its shipments' state machines, their deadlines, its on-time rate.

Everything runs on event time. The lane's clock is the latest event time it has seen,
from its own events or from the ticks the router sends every lane; when the clock
passes a deadline, the deadline fires *as of its own time*, so the alerts (and their
``detected_at``) do not depend on how fast the input is replayed or how often ticks
come. No wall-clock timer is involved, so a backlog replayed far behind wall time
costs nothing while it waits (Bytewax's event clock can spin in that case,
bytewax/bytewax#578).

Per shipment:

* ``NOT_DISPATCHED``: no dispatch (or carrier pickup) by the dispatch cutoff;
  resolved by the dispatch.
* ``STALLED``: dispatched, no carrier scan for ``stall_after``; resolved by a scan.
* ``AT_RISK``: the expected delivery, the latest of the carrier's ETA, the
  prediction from the lane's recent transit times and *now*, is after the promise
  (plus ``at_risk_margin``); resolved when it is back within the promise, or by an
  on-time delivery.
* ``LATE``: delivered after the promise (informational; open alerts resolve).

Per lane: ``LANE_DEGRADED`` when the recent on-time rate is below
``on_time_threshold`` or ``degradation_margin`` below the lane's baseline; resolved
once it is ``recovery_margin`` above both.

A shipment not delivered ``forget_after`` past its promise stops being tracked, but the
lane keeps a small :class:`~allocflow.flows.tracking.shipment.ForgottenShipment` of it
(at most ``shipment_memory`` per lane, oldest dropped first), so its delivery, however
late, still raises ``LATE`` and counts in the lane's on-time rate. Deadline arithmetic
saturates (:mod:`~allocflow.flows.tracking.moments`): a deadline past year 9999 never
fires, a window start before year 1 is the start of the calendar.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from allocflow.flows.tracking.bounded import BoundedMap
from allocflow.flows.tracking.deadlines import Deadlines
from allocflow.flows.tracking.degradation import DegradationWatch
from allocflow.flows.tracking.lane_history import LaneHistory
from allocflow.flows.tracking.moments import after
from allocflow.flows.tracking.settings import TrackingSettings
from allocflow.flows.tracking.shipment import (
    ForgottenShipment,
    RouteOutput,
    TrackedShipment,
    late_alert,
)
from allocflow.models.carrier import CarrierDelivered, CarrierEvent, CarrierPickedUp
from allocflow.models.envelope import EventEnvelope
from allocflow.models.route_alerts import RouteAlertKind
from allocflow.models.shipments import ShipmentCreated, ShipmentDelivered, ShipmentDispatched

_HOUR_S = 3600.0


@dataclass(frozen=True)
class Tick:
    """The event-time clock reaching a lane, so its due deadlines fire."""

    time: datetime


@dataclass(frozen=True)
class OrderNews:
    """Whether the order a shipment names has been seen on the orders feed.

    The router sends ``seen=False`` right after a ``shipment.created`` whose order it
    has not seen, and ``seen=True`` when that order arrives later. A lane that hears
    nothing takes the order as seen.
    """

    shipment_id: str
    seen: bool


class LaneItem(NamedTuple):
    """What the router sends a lane: one of its shipments' events, or a tick.

    Attributes:
        carrier_id: The lane's carrier.
        lane: The lane id (node and destination region).
        payload: The event, a tick, or news of the shipment's order.
    """

    carrier_id: str
    lane: str
    payload: EventEnvelope | Tick | OrderNews


_CUTOFF = "cutoff"
_STALL = "stall"
_RISK = "risk"
_PROMISE = "promise"
_FORGET = "forget"
_KINDS = (_CUTOFF, _STALL, _RISK, _PROMISE, _FORGET)
_NOW = "now"
_ETA = "eta"
_PREDICTION = "prediction"


class LaneTracker:
    """Tracks every shipment of one carrier lane and the lane's on-time performance."""

    def __init__(self, settings: TrackingSettings, carrier_id: str, lane: str) -> None:
        """Track the lane ``lane`` of ``carrier_id`` under ``settings``."""
        self._settings = settings
        self.carrier_id = carrier_id
        self.lane = lane
        self._clock: datetime | None = None
        self._shipments: dict[str, TrackedShipment] = {}
        self._forgotten = BoundedMap[ForgottenShipment](settings.shipment_memory)
        self._deadlines = Deadlines()
        self._history = LaneHistory(settings.transit_window, settings.baseline_window)
        self._degradation = DegradationWatch(settings, carrier_id, lane)

    def apply(self, payload: EventEnvelope | Tick | OrderNews) -> list[RouteOutput]:
        """Advance the clock to ``payload``'s time, firing due deadlines, then apply it."""
        if isinstance(payload, Tick):
            return self._advance(payload.time)
        if isinstance(payload, OrderNews):
            return self._order_news(payload)
        records = self._advance(payload.event_time)
        return records + self._on_event(payload)

    def _advance(self, now: datetime) -> list[RouteOutput]:
        if self._clock is not None and now <= self._clock:
            return []
        self._clock = now
        records: list[RouteOutput] = []
        for at, shipment_id, kind in self._deadlines.due(now):
            shipment = self._shipments[shipment_id]
            detected_at = max(at, shipment.created.event_time)
            records += self._fire(shipment, kind, detected_at)
            records += shipment.settle(detected_at)
        self._history.advance(now)
        return records

    def _now(self, event: EventEnvelope) -> datetime:
        return event.event_time if self._clock is None else max(self._clock, event.event_time)

    def _on_event(self, event: EventEnvelope) -> list[RouteOutput]:
        if isinstance(event, ShipmentCreated):
            return self._create(event)
        delivered = isinstance(event, CarrierDelivered | ShipmentDelivered)
        shipment_id: str = getattr(event, "shipment_id", "")
        shipment = self._shipments.get(shipment_id)
        if shipment is None:
            forgotten = self._forgotten.pop(shipment_id) if delivered else None
            if forgotten is None:
                return []
            return self._delivered_after_forget(shipment_id, forgotten, event)
        shipment.last_event_id = event.event_id
        if delivered:
            return self._delivered(shipment, event)
        if isinstance(event, ShipmentDispatched):
            records = self._dispatched(shipment, event)
        elif isinstance(event, CarrierEvent):
            records = self._scanned(shipment, event)
        else:
            return []
        return records + shipment.settle(self._now(event))

    def _order_news(self, news: OrderNews) -> list[RouteOutput]:
        shipment = self._shipments.get(news.shipment_id)
        if shipment is None:
            forgotten = self._forgotten.get(news.shipment_id)
            if forgotten is not None:
                self._forgotten.put(news.shipment_id, forgotten._replace(order_seen=news.seen))
            return []
        if not news.seen:
            shipment.order_seen = False
            return []
        if shipment.order_seen or self._clock is None:
            shipment.order_seen = True
            return []
        return shipment.learn_order(self._clock)

    def _create(self, event: ShipmentCreated) -> list[RouteOutput]:
        if event.shipment_id in self._shipments:
            return []
        shipment = TrackedShipment(event, last_event_id=event.event_id)
        self._shipments[event.shipment_id] = shipment
        self._schedule(shipment, _CUTOFF, event.dispatch_cutoff)
        self._schedule(shipment, _PROMISE, self._latest_on_time(shipment))
        forget_at = after(event.promised_delivery, self._settings.forget_after)
        self._schedule(shipment, _FORGET, forget_at)
        return []

    def _dispatched(self, shipment: TrackedShipment, event: EventEnvelope) -> list[RouteOutput]:
        records: list[RouteOutput] = []
        if shipment.dispatched_at is None:
            shipment.dispatched_at = event.event_time
            if RouteAlertKind.NOT_DISPATCHED in shipment.open_alerts:
                late_by = event.event_time - shipment.created.dispatch_cutoff
                records += shipment.resolve(
                    RouteAlertKind.NOT_DISPATCHED,
                    self._now(event),
                    f"dispatched {_hours(late_by)} after the cutoff",
                )
        return records + self._contact(shipment, event)

    def _scanned(self, shipment: TrackedShipment, event: CarrierEvent) -> list[RouteOutput]:
        records = self._dispatched(shipment, event) if shipment.dispatched_at is None else []
        if isinstance(event, CarrierPickedUp) and shipment.picked_up_at is None:
            shipment.picked_up_at = event.event_time
        reported = shipment.eta_reported_at
        if event.eta is not None and (reported is None or event.event_time >= reported):
            shipment.eta, shipment.eta_reported_at = event.eta, event.event_time
        return records + self._contact(shipment, event)

    def _contact(self, shipment: TrackedShipment, event: EventEnvelope) -> list[RouteOutput]:
        records: list[RouteOutput] = []
        previous = shipment.last_contact
        if previous is None or event.event_time > previous:
            shipment.last_contact = event.event_time
            self._schedule(shipment, _STALL, after(event.event_time, self._settings.stall_after))
        if RouteAlertKind.STALLED in shipment.open_alerts and previous is not None:
            location = event.location if isinstance(event, CarrierEvent) else None
            where = f" at {location}" if location else ""
            records += shipment.resolve(
                RouteAlertKind.STALLED,
                self._now(event),
                f"{event.event_type}{where} after {_hours(event.event_time - previous)} silent",
            )
        return records + self._evaluate(shipment, self._now(event))

    def _delivered(self, shipment: TrackedShipment, event: EventEnvelope) -> list[RouteOutput]:
        delivered_at = event.event_time
        del self._shipments[shipment.shipment_id]
        self._deadlines.cancel(shipment.shipment_id, _KINDS)
        promise = shipment.created.promised_delivery
        on_time = delivered_at <= promise
        outcome = _outcome(delivered_at, promise)
        records = shipment.resolve_all(self._now(event), outcome)
        if not on_time:
            records.append(shipment.late(delivered_at, f"{outcome} (promised {_stamp(promise)})"))
        return records + self._record_delivery(delivered_at, shipment.transit_start, on_time, event)

    def _delivered_after_forget(
        self, shipment_id: str, forgotten: ForgottenShipment, event: EventEnvelope
    ) -> list[RouteOutput]:
        """A delivery of a shipment no longer tracked: still LATE, still in the lane's rate."""
        delivered_at, promise = event.event_time, forgotten.promised_delivery
        on_time = delivered_at <= promise
        records: list[RouteOutput] = []
        if not on_time:
            detail = (
                f"{_outcome(delivered_at, promise)} (promised {_stamp(promise)}; no longer "
                f"tracked since {_hours(self._settings.forget_after)} after the promise)"
            )
            order_id = forgotten.order_id if forgotten.order_seen else None
            records.append(
                late_alert(
                    carrier_id=self.carrier_id,
                    lane=self.lane,
                    shipment_id=shipment_id,
                    order_id=order_id,
                    promised_delivery=promise,
                    delivered_at=delivered_at,
                    detail=detail,
                )
            )
        return records + self._record_delivery(
            delivered_at, forgotten.transit_start, on_time, event
        )

    def _record_delivery(
        self, delivered_at: datetime, start: datetime | None, on_time: bool, event: EventEnvelope
    ) -> list[RouteOutput]:
        if start is not None and delivered_at >= start:
            self._history.record(delivered_at, (delivered_at - start).total_seconds(), on_time)
        return list(self._degradation.judge(self._history, self._now(event)))

    def _fire(
        self, shipment: TrackedShipment, kind: str, detected_at: datetime
    ) -> list[RouteOutput]:
        open_alerts = shipment.open_alerts
        if kind == _CUTOFF and shipment.dispatched_at is None:
            cutoff = _stamp(shipment.created.dispatch_cutoff)
            detail = f"not dispatched by the cutoff {cutoff}"
            return shipment.open_alert(RouteAlertKind.NOT_DISPATCHED, detected_at, detail)
        if kind == _STALL and RouteAlertKind.STALLED not in open_alerts:
            silent = _hours(self._settings.stall_after)
            detail = f"no carrier scan for {silent} since {_stamp(shipment.last_contact)}"
            return shipment.open_alert(RouteAlertKind.STALLED, detected_at, detail)
        if kind == _FORGET:
            self._forget(shipment)
            waited = _hours(self._settings.forget_after)
            return shipment.resolve_all(
                detected_at, f"no longer tracked: not delivered {waited} after the promise"
            )
        if kind in (_RISK, _PROMISE):
            return self._evaluate(shipment, detected_at)
        return []

    def _evaluate(self, shipment: TrackedShipment, now: datetime) -> list[RouteOutput]:
        expected, source = self._expected(shipment, now)
        promise, margin = shipment.created.promised_delivery, self._settings.at_risk_margin
        at_risk = expected - promise > margin or now - promise >= margin
        is_open = RouteAlertKind.AT_RISK in shipment.open_alerts
        if at_risk and not is_open:
            detail = self._risk_detail(shipment, now, expected, source)
            return shipment.open_alert(RouteAlertKind.AT_RISK, now, detail, expected)
        if not at_risk:
            self._schedule_risk_check(shipment, now)
            if is_open:
                promised = _stamp(shipment.created.promised_delivery)
                detail = (
                    f"expected delivery {_stamp(expected)} is back within the promise {promised}"
                )
                return shipment.resolve(RouteAlertKind.AT_RISK, now, detail)
        return []

    def _expected(self, shipment: TrackedShipment, now: datetime) -> tuple[datetime, str]:
        """Return the latest of now, the carrier ETA and the prediction, and which it is."""
        expected, source = now, _NOW
        if shipment.eta is not None and shipment.eta > expected:
            expected, source = shipment.eta, _ETA
        predicted = self._predicted(shipment, now)
        if predicted is not None and predicted > expected:
            expected, source = predicted, _PREDICTION
        return expected, source

    def _predicted(self, shipment: TrackedShipment, now: datetime) -> datetime | None:
        start = shipment.transit_start
        if start is None:
            return None
        settings = self._settings
        elapsed = max(0.0, (now - start).total_seconds())
        transit = self._history.predict_transit(
            elapsed, settings.prediction_quantile, settings.min_transit_samples
        )
        return None if transit is None else after(start, timedelta(seconds=transit))

    def _risk_detail(
        self, shipment: TrackedShipment, now: datetime, expected: datetime, source: str
    ) -> str:
        promise = _stamp(shipment.created.promised_delivery)
        if source == _NOW:
            return f"not delivered by {_stamp(expected)}, promised {promise}"
        if source == _ETA:
            return f"carrier ETA {_stamp(expected)} is after the promise {promise}"
        start = shipment.transit_start or now
        _, deliveries = self._history.recent_on_time()
        quantile = self._settings.prediction_quantile
        return (
            f"predicted delivery {_stamp(expected)} is after the promise {promise}: "
            f"{_hours(now - start)} in transit, and the lane's recent deliveries that took "
            f"longer took {_hours(expected - start)} (p{quantile * 100:.0f} of {deliveries} "
            "recent deliveries)"
        )

    def _schedule_risk_check(self, shipment: TrackedShipment, now: datetime) -> None:
        """Re-check when the prediction, as the distribution stands, passes the promise."""
        start = shipment.transit_start
        if start is None:
            return
        settings = self._settings
        budget = shipment.created.promised_delivery - start
        elapsed = self._history.elapsed_when_late(
            max(0.0, (now - start).total_seconds()),
            budget.total_seconds() + settings.at_risk_margin.total_seconds(),
            settings.prediction_quantile,
            settings.min_transit_samples,
        )
        if elapsed is not None:
            self._schedule(shipment, _RISK, after(start, timedelta(seconds=elapsed)))

    def _latest_on_time(self, shipment: TrackedShipment) -> datetime | None:
        """The promise plus the margin; None when that is past the calendar."""
        return after(shipment.created.promised_delivery, self._settings.at_risk_margin)

    def _schedule(self, shipment: TrackedShipment, kind: str, at: datetime | None) -> None:
        """Set the ``kind`` deadline to ``at``; None (past the calendar) means never."""
        if at is None:
            self._deadlines.cancel(shipment.shipment_id, (kind,))
        else:
            self._deadlines.schedule(shipment.shipment_id, kind, at)

    def _forget(self, shipment: TrackedShipment) -> None:
        """Stop tracking ``shipment`` undelivered; keep what judging its delivery needs."""
        del self._shipments[shipment.shipment_id]
        self._deadlines.cancel(shipment.shipment_id, _KINDS)
        self._forgotten.put(shipment.shipment_id, shipment.forgotten())


def _outcome(delivered_at: datetime, promise: datetime) -> str:
    if delivered_at <= promise:
        return "delivered on time"
    return f"delivered {_hours(delivered_at - promise)} late"


def _hours(span: timedelta) -> str:
    return f"{span.total_seconds() / _HOUR_S:.1f} h"


def _stamp(moment: datetime | None) -> str:
    return "never" if moment is None else moment.strftime("%Y-%m-%d %H:%M")
