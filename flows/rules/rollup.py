"""Rolling line decisions up to an order status (keyed by order)."""

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import NamedTuple

from allocflow.models.decisions import AllocationDecision, DecisionOutcome
from allocflow.models.ids import stable_id
from allocflow.models.order_status import OrderStatus, OrderStatusKind

_LINE_COUNT_FIELDS: dict[DecisionOutcome, str] = {
    DecisionOutcome.ALLOCATED: "lines_allocated",
    DecisionOutcome.PARTIAL: "lines_partial",
    DecisionOutcome.BACKORDERED: "lines_backordered",
    DecisionOutcome.HELD: "lines_held",
    DecisionOutcome.CANCELLED: "lines_cancelled",
    DecisionOutcome.SHORT_SHIPPED: "lines_short_shipped",
}


class LineDecision(NamedTuple):
    """What the roll-up keeps of a line's latest decision (small to snapshot).

    Attributes:
        decided_at: Event time of the decision.
        decision_id: Its id (breaks ties of ``decided_at``).
        outcome: The line's state after it.
        requested_qty: Units requested.
        allocated_qty: Units allocated or shipped.
        nodes: Nodes holding the allocation.
        customer_id: The order's customer.
        cause_event_id: The event that caused it.
        policy_version: The policy applied.
        short_shipped_qty: Units shipped short and not re-shipped.
    """

    decided_at: datetime
    decision_id: str
    outcome: DecisionOutcome
    requested_qty: int
    allocated_qty: int
    nodes: tuple[str, ...]
    customer_id: str
    cause_event_id: str
    policy_version: str
    short_shipped_qty: int = 0

    @classmethod
    def of(cls, decision: AllocationDecision) -> "LineDecision":
        """Keep what the order status needs of ``decision``."""
        return cls(
            decision.decided_at,
            decision.decision_id,
            decision.outcome,
            decision.requested_qty,
            decision.allocated_qty,
            tuple(allocation.node_id for allocation in decision.allocations),
            decision.customer_id,
            decision.cause_event_id,
            decision.policy_version,
            decision.short_shipped_qty,
        )


@dataclass
class OrderRollup:
    """The latest decision of each line of one order.

    Attributes:
        order_id: The order (set by its first decision).
        lines: Latest decision by line id: the latest by event time; of decisions with
            the same event time, the one received last (a line's decisions all come from
            its SKU's shard, in the order they were made).
        seen: Line decisions received, stale ones included.
        last_status: The status last emitted (without id and version), to emit only changes.
    """

    order_id: str = ""
    lines: dict[str, LineDecision] = field(default_factory=dict)
    seen: int = 0
    last_status: "_Summary | None" = None

    def apply(self, decision: AllocationDecision) -> OrderStatus | None:
        """Take a line's decision; return the order's new status if it changed.

        Decisions of different lines come from different shards, in any order; a
        line's older decision arriving after a newer one is ignored.
        """
        self.order_id = decision.order_id
        self.seen += 1
        current = self.lines.get(decision.line_id)
        if current is None or current.decided_at <= decision.decided_at:
            self.lines[decision.line_id] = LineDecision.of(decision)
        summary = self._summary()
        if summary == self.last_status:
            return None
        self.last_status = summary
        return summary.record(self.seen)

    def _summary(self) -> "_Summary":
        counts = dict.fromkeys(_LINE_COUNT_FIELDS.values(), 0)
        for line in self.lines.values():
            counts[_LINE_COUNT_FIELDS[line.outcome]] += 1
        live = [
            line for line in self.lines.values() if line.outcome is not DecisionOutcome.CANCELLED
        ]
        nodes = tuple(sorted({node for line in live for node in line.nodes}))
        latest = max(self.lines.values(), key=_order_key)
        return _Summary(
            order_id=self.order_id,
            customer_id=latest.customer_id,
            status=_kind(counts, len(self.lines)),
            lines=len(self.lines),
            requested_qty=sum(line.requested_qty for line in live),
            allocated_qty=sum(line.allocated_qty for line in live),
            short_shipped_qty=sum(line.short_shipped_qty for line in live),
            nodes=nodes,
            as_of=latest.decided_at,
            cause_event_id=latest.cause_event_id,
            policy_version=latest.policy_version,
            lines_allocated=counts["lines_allocated"],
            lines_partial=counts["lines_partial"],
            lines_backordered=counts["lines_backordered"],
            lines_held=counts["lines_held"],
            lines_cancelled=counts["lines_cancelled"],
            lines_short_shipped=counts["lines_short_shipped"],
        )


@dataclass(frozen=True)
class _Summary:
    """Everything of an order status but its id and version: what "changed" compares."""

    order_id: str
    customer_id: str
    status: OrderStatusKind
    lines: int
    requested_qty: int
    allocated_qty: int
    nodes: tuple[str, ...]
    as_of: datetime
    cause_event_id: str
    policy_version: str
    lines_allocated: int
    lines_partial: int
    lines_backordered: int
    lines_held: int
    lines_cancelled: int
    lines_short_shipped: int
    short_shipped_qty: int

    def record(self, version: int) -> OrderStatus:
        """Return the status record with its version; its id names the version and content.

        Which intermediate statuses an order passes through depends on the order in
        which its lines' decisions arrive from their shards, which batching can change
        (a replay after a crash); the id covers the content, so one id always means
        one record.
        """
        return OrderStatus(
            record_id=stable_id("ost", self.order_id, str(version), *self._parts()),
            version=version,
            order_id=self.order_id,
            customer_id=self.customer_id,
            status=self.status,
            lines=self.lines,
            lines_allocated=self.lines_allocated,
            lines_partial=self.lines_partial,
            lines_backordered=self.lines_backordered,
            lines_held=self.lines_held,
            lines_cancelled=self.lines_cancelled,
            lines_short_shipped=self.lines_short_shipped,
            requested_qty=self.requested_qty,
            allocated_qty=self.allocated_qty,
            short_shipped_qty=self.short_shipped_qty,
            nodes=list(self.nodes),
            split_count=len(self.nodes),
            as_of=self.as_of,
            cause_event_id=self.cause_event_id,
            policy_version=self.policy_version,
        )

    def _parts(self) -> list[str]:
        """Every field as a string, in declaration order (a shallow ``astuple``: no copies).

        The short-shipment fields count only when not zero, so statuses without a short
        shipment keep the ids they had before those fields existed.
        """
        short = self.lines_short_shipped or self.short_shipped_qty
        return [str(getattr(self, name)) for name in _SUMMARY_FIELDS if short or name in _ID_FIELDS]


_SUMMARY_FIELDS = tuple(summary_field.name for summary_field in fields(_Summary))
_ID_FIELDS = frozenset(_SUMMARY_FIELDS) - {"lines_short_shipped", "short_shipped_qty"}


def _order_key(line: LineDecision) -> tuple[datetime, str]:
    return (line.decided_at, line.decision_id)


def _kind(counts: dict[str, int], lines: int) -> OrderStatusKind:
    if counts["lines_cancelled"] == lines:
        return OrderStatusKind.CANCELLED
    if counts["lines_held"]:
        return OrderStatusKind.HELD
    if counts["lines_short_shipped"]:
        return OrderStatusKind.SHORT_SHIPPED
    live = lines - counts["lines_cancelled"]
    if counts["lines_allocated"] == live:
        return OrderStatusKind.ALLOCATED
    if counts["lines_allocated"] or counts["lines_partial"]:
        return OrderStatusKind.PARTIAL
    return OrderStatusKind.BACKORDERED
