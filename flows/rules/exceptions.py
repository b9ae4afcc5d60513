"""Line-level allocation exceptions: opened when a line needs a human, closed when not."""

from datetime import datetime
from typing import NamedTuple

from allocflow.flows.rules.commands import Cause
from allocflow.flows.rules.lines import LineState
from allocflow.models.allocation_exceptions import AllocationException, ExceptionState
from allocflow.models.ids import stable_id
from allocflow.models.vocabulary import OwnerRole, ReasonCode, Severity

_ROUTING: dict[ReasonCode, tuple[Severity, OwnerRole, str]] = {
    ReasonCode.STOCKOUT: (Severity.WARNING, OwnerRole.PLANNER, "no usable stock for the line"),
    ReasonCode.PARTIAL_FILL: (Severity.INFO, OwnerRole.PLANNER, "line only partly allocated"),
    ReasonCode.PROTECTED_STOCK: (
        Severity.INFO,
        OwnerRole.PLANNER,
        "stock exists but is protected for higher tiers",
    ),
    ReasonCode.SPLIT_REQUIRED: (
        Severity.WARNING,
        OwnerRole.PLANNER,
        "filling the line needs a split the policy does not allow",
    ),
    ReasonCode.NODE_EXCLUDED: (
        Severity.WARNING,
        OwnerRole.PLANNER,
        "only excluded nodes have stock",
    ),
    ReasonCode.CREDIT_HOLD: (
        Severity.WARNING,
        OwnerRole.CREDIT_CONTROLLER,
        "customer on credit hold",
    ),
    ReasonCode.APPROVAL_REQUIRED: (
        Severity.INFO,
        OwnerRole.APPROVER,
        "order value or line quantity above the approval threshold",
    ),
    ReasonCode.BELOW_MARGIN: (
        Severity.WARNING,
        OwnerRole.APPROVER,
        "line priced below the margin floor",
    ),
    ReasonCode.SHORT_SHIPPED: (
        Severity.WARNING,
        OwnerRole.LOGISTICS,
        "the warehouse shipped the line short",
    ),
}
_TOP_PRIORITY = 1
_CLOSED_BY_SHIPPING = frozenset(
    {ReasonCode.APPROVAL_REQUIRED, ReasonCode.BELOW_MARGIN, ReasonCode.SHORT_SHIPPED}
)


def wanted_reasons(line: LineState, cancelled: bool) -> set[ReasonCode]:
    """Return the exceptions a line should have open in its current state."""
    if cancelled:
        return set()
    reasons: set[ReasonCode] = set()
    if line.waiting:
        reasons.add(ReasonCode.CREDIT_HOLD if line.held else line.shortfall or ReasonCode.STOCKOUT)
    if not line.shipments:
        reasons.update(line.request.approvals)
    if line.short_outstanding:
        reasons.add(ReasonCode.SHORT_SHIPPED)
    return reasons


def sync_exceptions(
    line: LineState, cause: Cause, cancelled: bool, part: str = "", *, order_changed: bool = False
) -> list[AllocationException]:
    """Open and close the line's exceptions to match its state; return the records.

    Args:
        line: The line after a change (its open exceptions are updated in place).
        cause: The event behind the change.
        cancelled: Whether the order was cancelled.
        part: Which of the event's commands caused it, when that is not the line's own;
            part of the ids of the exceptions it opens.
        order_changed: Whether the change was the line's new ordered quantity.
    """
    wanted = wanted_reasons(line, cancelled)
    closing = _Closing(cancelled, order_changed)
    records = [
        _close(line, reason, cause, _resolution(line, reason, wanted, closing))
        for reason in sorted(set(line.open_exceptions) - wanted)
    ]
    records += [
        _open(line, reason, cause, part) for reason in sorted(wanted - set(line.open_exceptions))
    ]
    return records


def _open(line: LineState, reason: ReasonCode, cause: Cause, part: str) -> AllocationException:
    request = line.request
    exception_id = stable_id(
        "exc", request.order_id, request.line_id, reason, cause.event_id, *([part] if part else [])
    )
    line.open_exceptions[reason] = (exception_id, cause.event_time)
    missing = (
        f"{line.short_outstanding} of {line.requested} shipped short"
        if reason is ReasonCode.SHORT_SHIPPED
        else f"{line.waiting} of {line.requested} waiting"
    )
    detail = (
        f"{_ROUTING[reason][2]}: {request.sku}, {missing} "
        f"(customer {request.customer_id}, tier {request.tier})"
    )
    return _record(line, reason, exception_id, cause, opened_at=cause.event_time, detail=detail)


def _close(
    line: LineState, reason: ReasonCode, cause: Cause, resolution: str
) -> AllocationException:
    exception_id, opened_at = line.open_exceptions.pop(reason)
    return _record(
        line,
        reason,
        exception_id,
        cause,
        opened_at=opened_at,
        detail=f"{_ROUTING[reason][2]}: {line.request.sku}",
        closed_at=max(opened_at, cause.event_time),
        resolution=resolution,
    )


def _record(
    line: LineState,
    reason: ReasonCode,
    exception_id: str,
    cause: Cause,
    *,
    opened_at: datetime,
    detail: str,
    closed_at: datetime | None = None,
    resolution: str | None = None,
) -> AllocationException:
    state = ExceptionState.OPEN if closed_at is None else ExceptionState.CLOSED
    return AllocationException(
        record_id=stable_id("exr", exception_id, state),
        exception_id=exception_id,
        state=state,
        order_id=line.request.order_id,
        line_id=line.request.line_id,
        reason_code=reason,
        severity=_severity(line, reason),
        owner_role=_ROUTING[reason][1],
        opened_at=opened_at,
        closed_at=closed_at,
        resolution=resolution,
        detail=detail,
        cause_event_id=cause.event_id,
    )


def _severity(line: LineState, reason: ReasonCode) -> Severity:
    """Stock-outs of the top tier are critical; otherwise the reason's severity."""
    if reason is ReasonCode.STOCKOUT and line.request.priority == _TOP_PRIORITY:
        return Severity.CRITICAL
    return _ROUTING[reason][0]


class _Closing(NamedTuple):
    """What the change that closes exceptions was."""

    cancelled: bool
    order_changed: bool


def _shipping_resolution(reason: ReasonCode, closing: _Closing) -> str:
    """Why an exception that shipping closes (approvals, a short shipment) closed."""
    if reason is not ReasonCode.SHORT_SHIPPED:
        return "line shipped"
    # Nothing short any more: the order shrank to what shipped, or later shipments
    # made the units good.
    return "ordered quantity reduced" if closing.order_changed else "short units re-shipped"


def _resolution(
    line: LineState, reason: ReasonCode, wanted: set[ReasonCode], closing: _Closing
) -> str:
    if closing.cancelled:
        return "order cancelled"
    if reason in _CLOSED_BY_SHIPPING:
        return _shipping_resolution(reason, closing)
    if line.waiting == 0:
        return "allocated in full"
    if ReasonCode.CREDIT_HOLD in wanted:
        return "customer put on credit hold"
    if reason is ReasonCode.CREDIT_HOLD:
        return "credit hold released"
    return "reason changed to " + ", ".join(sorted(wanted))
