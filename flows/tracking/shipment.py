"""One tracked shipment: its promise, progress, and the route alerts open on it.

The shipment's alerts follow one rule: an *opening* alert (``NOT_DISPATCHED``,
``AT_RISK``, ``STALLED``) stays open until exactly one ``RESOLVED`` alert names it. While
any is open, the order has one open ``ROUTE_DELAY_RISK`` exception, closed when the last
one resolves or the shipment is delivered. Ids are deterministic: the shipment, the
kind, and how many times that kind opened on the shipment.
"""

from dataclasses import dataclass, field
from datetime import datetime

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
        open_alerts: Opening alerts not yet resolved, by kind.
        episodes: How many times each kind has opened on this shipment.
        exception: The open ``ROUTE_DELAY_RISK`` exception, if any.
        exception_episodes: How many such exceptions have opened.
    """

    created: ShipmentCreated
    dispatched_at: datetime | None = None
    picked_up_at: datetime | None = None
    last_contact: datetime | None = None
    eta: datetime | None = None
    eta_reported_at: datetime | None = None
    last_event_id: str = ""
    open_alerts: dict[RouteAlertKind, RouteAlert] = field(default_factory=dict)
    episodes: dict[RouteAlertKind, int] = field(default_factory=dict)
    exception: AllocationException | None = None
    exception_episodes: int = 0

    @property
    def shipment_id(self) -> str:
        """The shipment's id."""
        return self.created.shipment_id

    @property
    def transit_start(self) -> datetime | None:
        """Carrier pickup, else dispatch: where transit time is measured from."""
        return self.picked_up_at or self.dispatched_at

    def open_alert(
        self,
        kind: RouteAlertKind,
        detected_at: datetime,
        detail: str,
        expected_delivery: datetime | None = None,
    ) -> list[RouteOutput]:
        """Open a ``kind`` alert (and the order's exception if none is open)."""
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
        if self.exception is not None:
            return [alert]
        return [alert, self._open_exception(detected_at, detail)]

    def resolve(
        self, kind: RouteAlertKind, detected_at: datetime, detail: str
    ) -> list[RouteOutput]:
        """Resolve the open ``kind`` alert; close the exception once nothing is open."""
        opened = self.open_alerts.pop(kind)
        resolved = self._alert(
            stable_id("ra", RouteAlertKind.RESOLVED, opened.alert_id),
            RouteAlertKind.RESOLVED,
            max(detected_at, opened.detected_at),
            detail,
            None,
        ).model_copy(update={"resolves_alert_id": opened.alert_id})
        if self.open_alerts:
            return [resolved]
        return [resolved, *self.close_exception(detected_at, f"risk cleared: {detail}")]

    def resolve_all(self, detected_at: datetime, detail: str) -> list[RouteOutput]:
        """Close the exception with ``detail`` and resolve every open alert (in kind order)."""
        records = self.close_exception(detected_at, detail)
        for kind in sorted(self.open_alerts):
            records += self.resolve(kind, detected_at, detail)
        return records

    def late(self, delivered_at: datetime, detail: str) -> RouteAlert:
        """Return the ``LATE`` alert of a shipment delivered after its promise."""
        return self._alert(
            stable_id("ra", self.shipment_id, RouteAlertKind.LATE),
            RouteAlertKind.LATE,
            delivered_at,
            detail,
            delivered_at,
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
        exception_id = stable_id(
            "exc", self.shipment_id, ReasonCode.ROUTE_DELAY_RISK, str(self.exception_episodes)
        )
        self.exception = AllocationException(
            record_id=stable_id("exr", exception_id, ExceptionState.OPEN),
            exception_id=exception_id,
            state=ExceptionState.OPEN,
            order_id=self.created.order_id,
            reason_code=ReasonCode.ROUTE_DELAY_RISK,
            severity=Severity.WARNING,
            owner_role=OwnerRole.LOGISTICS,
            opened_at=opened_at,
            detail=f"shipment {self.shipment_id} ({self.created.carrier_id}, "
            f"{self.created.lane}): {detail}",
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
            order_id=created.order_id,
            detected_at=detected_at,
            promised_delivery=created.promised_delivery,
            expected_delivery=expected_delivery,
            detail=detail,
        )
