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
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from allocflow.flows.tracking.deadlines import Deadlines
from allocflow.flows.tracking.degradation import DegradationWatch
from allocflow.flows.tracking.lane_history import LaneHistory
from allocflow.flows.tracking.settings import TrackingSettings
from allocflow.flows.tracking.shipment import RouteOutput, TrackedShipment
from allocflow.models.carrier import CarrierDelivered, CarrierEvent, CarrierPickedUp
from allocflow.models.envelope import EventEnvelope
from allocflow.models.route_alerts import RouteAlertKind
from allocflow.models.shipments import ShipmentCreated, ShipmentDelivered, ShipmentDispatched

_HOUR_S = 3600.0


@dataclass(frozen=True)
class Tick:
    """The event-time clock reaching a lane, so its due deadlines fire."""

    time: datetime


class LaneItem(NamedTuple):
    """What the router sends a lane: one of its shipments' events, or a tick.

    Attributes:
        carrier_id: The lane's carrier.
        lane: The lane id (node and destination region).
        payload: The event or tick.
    """

    carrier_id: str
    lane: str
    payload: EventEnvelope | Tick


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
        self._deadlines = Deadlines()
        self._history = LaneHistory(settings.transit_window, settings.baseline_window)
        self._degradation = DegradationWatch(settings, carrier_id, lane)

    def apply(self, payload: EventEnvelope | Tick) -> list[RouteOutput]:
        """Advance the clock to ``payload``'s time, firing due deadlines, then apply it."""
        if isinstance(payload, Tick):
            return self._advance(payload.time)
        records = self._advance(payload.event_time)
        return records + self._on_event(payload)

    def _advance(self, now: datetime) -> list[RouteOutput]:
        if self._clock is not None and now <= self._clock:
            return []
        self._clock = now
        records: list[RouteOutput] = []
        for at, shipment_id, kind in self._deadlines.due(now):
            records += self._fire(self._shipments[shipment_id], kind, at)
        self._history.advance(now)
        return records

    def _now(self, event: EventEnvelope) -> datetime:
        return event.event_time if self._clock is None else max(self._clock, event.event_time)

    def _on_event(self, event: EventEnvelope) -> list[RouteOutput]:
        if isinstance(event, ShipmentCreated):
            return self._create(event)
        shipment = self._shipments.get(getattr(event, "shipment_id", ""))
        if shipment is None:
            return []
        shipment.last_event_id = event.event_id
        if isinstance(event, CarrierDelivered | ShipmentDelivered):
            return self._delivered(shipment, event)
        if isinstance(event, ShipmentDispatched):
            return self._dispatched(shipment, event)
        if isinstance(event, CarrierEvent):
            return self._scanned(shipment, event)
        return []

    def _create(self, event: ShipmentCreated) -> list[RouteOutput]:
        if event.shipment_id in self._shipments:
            return []
        shipment = TrackedShipment(event, last_event_id=event.event_id)
        self._shipments[event.shipment_id] = shipment
        self._schedule(shipment, _CUTOFF, event.dispatch_cutoff)
        self._schedule(shipment, _PROMISE, self._latest_on_time(shipment))
        self._schedule(shipment, _FORGET, event.promised_delivery + self._settings.forget_after)
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
            self._schedule(shipment, _STALL, event.event_time + self._settings.stall_after)
        if RouteAlertKind.STALLED in shipment.open_alerts and previous is not None:
            where = f" at {event.location}" if isinstance(event, CarrierEvent) else ""
            records += shipment.resolve(
                RouteAlertKind.STALLED,
                self._now(event),
                f"{event.event_type}{where} after {_hours(event.event_time - previous)} silent",
            )
        return records + self._evaluate(shipment, self._now(event))

    def _delivered(self, shipment: TrackedShipment, event: EventEnvelope) -> list[RouteOutput]:
        delivered_at = event.event_time
        self._forget(shipment)
        promise = shipment.created.promised_delivery
        on_time = delivered_at <= promise
        outcome = (
            "delivered on time" if on_time else f"delivered {_hours(delivered_at - promise)} late"
        )
        records = shipment.resolve_all(self._now(event), outcome)
        if not on_time:
            records.append(shipment.late(delivered_at, f"{outcome} (promised {_stamp(promise)})"))
        start = shipment.transit_start
        if start is not None and delivered_at >= start:
            self._history.record(delivered_at, (delivered_at - start).total_seconds(), on_time)
        return records + self._degradation.judge(self._history, self._now(event))

    def _fire(self, shipment: TrackedShipment, kind: str, at: datetime) -> list[RouteOutput]:
        detected_at = max(at, shipment.created.event_time)
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
            after = _hours(self._settings.forget_after)
            return shipment.resolve_all(
                detected_at, f"no longer tracked: not delivered {after} after the promise"
            )
        if kind in (_RISK, _PROMISE):
            return self._evaluate(shipment, detected_at)
        return []

    def _evaluate(self, shipment: TrackedShipment, now: datetime) -> list[RouteOutput]:
        expected, source = self._expected(shipment, now)
        latest = self._latest_on_time(shipment)
        at_risk = expected > latest or now >= latest
        is_open = RouteAlertKind.AT_RISK in shipment.open_alerts
        if at_risk and not is_open:
            detail = self._risk_detail(shipment, now, expected, source)
            return shipment.open_alert(RouteAlertKind.AT_RISK, now, detail, expected)
        if not at_risk:
            self._schedule_risk_check(shipment, now)
            if is_open:
                promise = _stamp(shipment.created.promised_delivery)
                detail = (
                    f"expected delivery {_stamp(expected)} is back within the promise {promise}"
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
        return None if transit is None else start + timedelta(seconds=transit)

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
        elapsed = self._history.elapsed_when_late(
            max(0.0, (now - start).total_seconds()),
            (self._latest_on_time(shipment) - start).total_seconds(),
            settings.prediction_quantile,
            settings.min_transit_samples,
        )
        if elapsed is not None:
            self._schedule(shipment, _RISK, start + timedelta(seconds=elapsed))

    def _latest_on_time(self, shipment: TrackedShipment) -> datetime:
        return shipment.created.promised_delivery + self._settings.at_risk_margin

    def _schedule(self, shipment: TrackedShipment, kind: str, at: datetime) -> None:
        self._deadlines.schedule(shipment.shipment_id, kind, at)

    def _forget(self, shipment: TrackedShipment) -> None:
        del self._shipments[shipment.shipment_id]
        self._deadlines.cancel(shipment.shipment_id, _KINDS)


def _hours(span: timedelta) -> str:
    return f"{span.total_seconds() / _HOUR_S:.1f} h"


def _stamp(moment: datetime | None) -> str:
    return "never" if moment is None else moment.strftime("%Y-%m-%d %H:%M")
