"""Rolling line decisions up to an order status (keyed by order)."""

from dataclasses import dataclass, field
from datetime import datetime

from allocflow.models.decisions import AllocationDecision, DecisionOutcome
from allocflow.models.ids import stable_id
from allocflow.models.order_status import OrderStatus, OrderStatusKind

_LINE_COUNT_FIELDS: dict[DecisionOutcome, str] = {
    DecisionOutcome.ALLOCATED: "lines_allocated",
    DecisionOutcome.PARTIAL: "lines_partial",
    DecisionOutcome.BACKORDERED: "lines_backordered",
    DecisionOutcome.HELD: "lines_held",
    DecisionOutcome.CANCELLED: "lines_cancelled",
}


@dataclass
class OrderRollup:
    """The latest decision of each line of one order.

    Attributes:
        lines: Latest decision by line id: the latest by event time; of decisions with
            the same event time, the one received last (a line's decisions all come from
            its SKU's shard, in the order they were made).
        seen: Line decisions received, stale ones included.
        last_status: Fingerprint of the status last emitted, to emit only changes.
    """

    lines: dict[str, AllocationDecision] = field(default_factory=dict)
    seen: int = 0
    last_status: tuple[tuple[str, str], ...] | None = None

    def apply(self, decision: AllocationDecision) -> OrderStatus | None:
        """Take a line's decision; return the order's new status if it changed.

        Decisions of different lines come from different shards, in any order; a
        line's older decision arriving after a newer one is ignored.
        """
        self.seen += 1
        current = self.lines.get(decision.line_id)
        if current is None or current.decided_at <= decision.decided_at:
            self.lines[decision.line_id] = decision
        status = self._status()
        signature = status.model_dump(exclude={"record_id", "version"})
        fingerprint = tuple(sorted((key, repr(value)) for key, value in signature.items()))
        if fingerprint == self.last_status:
            return None
        self.last_status = fingerprint
        return status

    def _status(self) -> OrderStatus:
        counts = dict.fromkeys(_LINE_COUNT_FIELDS.values(), 0)
        for decision in self.lines.values():
            counts[_LINE_COUNT_FIELDS[decision.outcome]] += 1
        live = [d for d in self.lines.values() if d.outcome is not DecisionOutcome.CANCELLED]
        nodes = sorted({a.node_id for d in live for a in d.allocations})
        latest = max(self.lines.values(), key=_order_key)
        return OrderStatus(
            record_id=stable_id("ost", latest.order_id, str(self.seen)),
            order_id=latest.order_id,
            version=self.seen,
            customer_id=latest.customer_id,
            status=_kind(counts, len(self.lines)),
            lines=len(self.lines),
            requested_qty=sum(d.requested_qty for d in live),
            allocated_qty=sum(d.allocated_qty for d in live),
            nodes=nodes,
            split_count=len(nodes),
            as_of=latest.decided_at,
            cause_event_id=latest.cause_event_id,
            policy_version=latest.policy_version,
            lines_allocated=counts["lines_allocated"],
            lines_partial=counts["lines_partial"],
            lines_backordered=counts["lines_backordered"],
            lines_held=counts["lines_held"],
            lines_cancelled=counts["lines_cancelled"],
        )


def _order_key(decision: AllocationDecision) -> tuple[datetime, str]:
    return (decision.decided_at, decision.decision_id)


def _kind(counts: dict[str, int], lines: int) -> OrderStatusKind:
    if counts["lines_cancelled"] == lines:
        return OrderStatusKind.CANCELLED
    if counts["lines_held"]:
        return OrderStatusKind.HELD
    live = lines - counts["lines_cancelled"]
    if counts["lines_allocated"] == live:
        return OrderStatusKind.ALLOCATED
    if counts["lines_allocated"] or counts["lines_partial"]:
        return OrderStatusKind.PARTIAL
    return OrderStatusKind.BACKORDERED
