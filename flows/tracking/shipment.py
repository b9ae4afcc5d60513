"""One tracked shipment: its promise, progress, and the route alerts open on it.

The shipment's alerts follow one rule: an *opening* alert (``NOT_DISPATCHED``,
``AT_RISK``, ``STALLED``) stays open until exactly one ``RESOLVED`` alert names it. While
any is open, the order has one open exception, reconciled once per event or deadline
(:meth:`TrackedShipment.settle`), after every alert that event opens or resolves: a
scan that resolves ``STALLED`` and opens ``AT_RISK`` leaves the exception open. The
exception is ``ROUTE_DELAY_RISK`` (owner logistics), or ``DATA_QUALITY`` (owner
integration) while the shipment's order has not been seen on the orders feed; the
route alerts of such a shipment carry no ``order_id``. Ids are deterministic: the
shipment, the kind, and how many times that kind opened on the shipment.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from allocflow.models.allocation_exceptions import AllocationException, ExceptionState
from allocflow.models.ids import stable_id
from allocflow.models.route_alerts import RouteAlert, RouteAlertKind
from allocflow.models.shipments import ShipmentCreated
from allocflow.models.vocabulary import OwnerRole, ReasonCode, Severity

RouteOutput = RouteAlert | AllocationException
"""What the route tracker emits."""

_SEVERITY = {
    RouteAlertKind.NOT_DISPATCHED: Severity.WARNING,
    RouteAlertKind.AT_RISK: Severity.WARNING,
    RouteAlertKind.STALLED: Severity.WARNING,
    RouteAlertKind.LATE: Severity.WARNING,
}


class ForgottenShipment(NamedTuple):
    """What a lane keeps of a shipment it stopped tracking undelivered, to judge its delivery.

    Attributes:
        order_id: The order the shipment names.
        promised_delivery: The promise.
        transit_start: Carrier pickup, else dispatch, if either happened.
        order_seen: Whether the order had been seen on the orders feed.
    """

    order_id: str
    promised_delivery: datetime
    transit_start: datetime | None
    order_seen: bool


@dataclass
class TrackedShipment:
    """A shipment between creation and delivery.

    Attributes:
        created: The ``shipment.created`` event (order, lane, cutoff, promise).
        dispatched_at: When it left the node (first of dispatch and carrier pickup).
        picked_up_at: When the carrier collected it: its transit starts here.
        last_contact: Latest carrier scan (or the dispatch), for the stall check.
        eta: The carrier's latest estimated delivery.
        eta_reported_at: Event time of the scan that reported ``eta``.
        last_event_id: The newest event of the shipment, cause of timer-fired records.
        order_seen: Whether the order it names has been seen on the orders feed.
        open_alerts: Opening alerts not yet resolved, by kind.
        episodes: How many times each kind has opened on this shipment.
        exception: The open exception, if any.
        exception_episodes: How many such exceptions have opened.
        cleared: Detail of the latest resolution, the resolution of the exception it closes.
    """

    created: ShipmentCreated
    dispatched_at: datetime | None = None
    picked_up_at: datetime | None = None
    last_contact: datetime | None = None
    eta: datetime | None = None
    eta_reported_at: datetime | None = None
    last_event_id: str = ""
    order_seen: bool = True
    open_alerts: dict[RouteAlertKind, RouteAlert] = field(default_factory=dict)
    episodes: dict[RouteAlertKind, int] = field(default_factory=dict)
    exception: AllocationException | None = None
    exception_episodes: int = 0
    cleared: str = ""

    @property
    def shipment_id(self) -> str:
        """The shipment's id."""
        return self.created.shipment_id

    @property
    def transit_start(self) -> datetime | None:
        """Carrier pickup, else dispatch: where transit time is measured from."""
        return self.picked_up_at or self.dispatched_at

    def forgotten(self) -> ForgottenShipment:
        """Return what is kept of this shipment once it is no longer tracked."""
        created = self.created
        return ForgottenShipment(
            created.order_id, created.promised_delivery, self.transit_start, self.order_seen
        )

    def open_alert(
        self,
        kind: RouteAlertKind,
        detected_at: datetime,
        detail: str,
        expected_delivery: datetime | None = None,
    ) -> list[RouteOutput]:
        """Open a ``kind`` alert; :meth:`settle` opens the order's exception."""
        episode = self.episodes.get(kind, 0) + 1
        self.episodes[kind] = episode
        alert = self._alert(
            stable_id("ra", self.shipment_id, kind, str(episode)),
            kind,
            detected_at,
            detail,
            expected_delivery,
        )
        self.open_alerts[kind] = alert
        return [alert]

    def resolve(
        self, kind: RouteAlertKind, detected_at: datetime, detail: str
    ) -> list[RouteOutput]:
        """Resolve the open ``kind`` alert; :meth:`settle` closes the exception if none is left."""
        opened = self.open_alerts.pop(kind)
        self.cleared = detail
        resolved = self._alert(
            stable_id("ra", RouteAlertKind.RESOLVED, opened.alert_id),
            RouteAlertKind.RESOLVED,
            max(detected_at, opened.detected_at),
            detail,
            None,
        ).model_copy(update={"resolves_alert_id": opened.alert_id})
        return [resolved]

    def resolve_all(self, detected_at: datetime, detail: str) -> list[RouteOutput]:
        """Close the exception with ``detail`` and resolve every open alert (in kind order)."""
        records = self.close_exception(detected_at, detail)
        for kind in sorted(self.open_alerts):
            records += self.resolve(kind, detected_at, detail)
        return records

    def settle(self, at: datetime) -> list[RouteOutput]:
        """Reconcile the order's exception with the open alerts, once per event or deadline.

        Opens the exception if an alert is open and none is; closes it ("risk cleared")
        once no alert is open. Called after every alert of the event is opened or
        resolved, so the exception does not close and reopen at one instant.
        """
        if self.open_alerts and self.exception is None:
            newest = max(self.open_alerts.values(), key=lambda alert: alert.detected_at)
            return [self._open_exception(at, newest.detail)]
        if not self.open_alerts and self.exception is not None:
            return self.close_exception(at, f"risk cleared: {self.cleared}")
        return []

    def learn_order(self, at: datetime) -> list[RouteOutput]:
        """The order arrived: a ``DATA_QUALITY`` exception hands over to logistics."""
        self.order_seen = True
        opened = self.exception
        if opened is None or opened.reason_code is not ReasonCode.DATA_QUALITY:
            return []
        order_id = self.created.order_id
        handover = " (the delivery risk goes to logistics)" if self.open_alerts else ""
        records = self.close_exception(at, f"order {order_id} arrived{handover}")
        return records + self.settle(at)

    def late(self, delivered_at: datetime, detail: str) -> RouteAlert:
        """Return the ``LATE`` alert of a shipment delivered after its promise."""
        created = self.created
        return late_alert(
            carrier_id=created.carrier_id,
            lane=created.lane,
            shipment_id=self.shipment_id,
            order_id=created.order_id if self.order_seen else None,
            promised_delivery=created.promised_delivery,
            delivered_at=delivered_at,
            detail=detail,
        )

    def close_exception(self, closed_at: datetime, resolution: str) -> list[RouteOutput]:
        """Close the open exception, if any."""
        opened = self.exception
        if opened is None:
            return []
        self.exception = None
        closed_at = max(closed_at, opened.opened_at)
        return [
            opened.model_copy(
                update={
                    "record_id": stable_id("exr", opened.exception_id, ExceptionState.CLOSED),
                    "state": ExceptionState.CLOSED,
                    "closed_at": closed_at,
                    "resolution": resolution,
                    "cause_event_id": self.last_event_id,
                }
            )
        ]

    def _open_exception(self, opened_at: datetime, detail: str) -> AllocationException:
        self.exception_episodes += 1
        created = self.created
        route = f"shipment {self.shipment_id} ({created.carrier_id}, {created.lane})"
        if self.order_seen:
            reason, owner = ReasonCode.ROUTE_DELAY_RISK, OwnerRole.LOGISTICS
            text = f"{route}: {detail}"
        else:
            reason, owner = ReasonCode.DATA_QUALITY, OwnerRole.INTEGRATION
            unseen = f"order {created.order_id}, never seen on the orders feed"
            text = f"{route} names {unseen}: {detail}"
        exception_id = stable_id("exc", self.shipment_id, reason, str(self.exception_episodes))
        self.exception = AllocationException(
            record_id=stable_id("exr", exception_id, ExceptionState.OPEN),
            exception_id=exception_id,
            state=ExceptionState.OPEN,
            order_id=created.order_id,
            reason_code=reason,
            severity=Severity.WARNING,
            owner_role=owner,
            opened_at=opened_at,
            detail=text,
            cause_event_id=self.last_event_id,
        )
        return self.exception

    def _alert(
        self,
        alert_id: str,
        kind: RouteAlertKind,
        detected_at: datetime,
        detail: str,
        expected_delivery: datetime | None,
    ) -> RouteAlert:
        created = self.created
        return RouteAlert(
            alert_id=alert_id,
            kind=kind,
            severity=_SEVERITY.get(kind, Severity.INFO),
            carrier_id=created.carrier_id,
            lane=created.lane,
            shipment_id=created.shipment_id,
            order_id=created.order_id if self.order_seen else None,
            detected_at=detected_at,
            promised_delivery=created.promised_delivery,
            expected_delivery=expected_delivery,
            detail=detail,
        )


def late_alert(
    *,
    carrier_id: str,
    lane: str,
    shipment_id: str,
    order_id: str | None,
    promised_delivery: datetime,
    delivered_at: datetime,
    detail: str,
) -> RouteAlert:
    """Return the ``LATE`` alert of a shipment delivered after its promise.

    ``order_id`` is None when the order was never seen on the orders feed.
    """
    return RouteAlert(
        alert_id=stable_id("ra", shipment_id, RouteAlertKind.LATE),
        kind=RouteAlertKind.LATE,
        severity=_SEVERITY[RouteAlertKind.LATE],
        carrier_id=carrier_id,
        lane=lane,
        shipment_id=shipment_id,
        order_id=order_id,
        detected_at=delivered_at,
        promised_delivery=promised_delivery,
        expected_delivery=delivered_at,
        detail=detail,
    )
