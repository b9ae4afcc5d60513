"""One SKU's allocation book: stock per node, its lines, and the rules applied to them."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from allocflow.flows.rules.commands import (
    InboundUpdate,
    LineRequest,
    LineResize,
    ReservationChange,
    ShipmentIssue,
    ShipmentShort,
    StockChange,
    StockLevel,
)
from allocflow.flows.rules.fill import plan_fill
from allocflow.flows.rules.lines import LineState
from allocflow.flows.rules.stock import NodeStock
from allocflow.models.decisions import Candidate
from allocflow.models.policy import Policy
from allocflow.models.vocabulary import ReasonCode

LineKey = tuple[str, str]

FINISHED_LINE_RETENTION = timedelta(days=3)
"""How long (event time) a line shipped in full is kept for a late short-shipment report."""


@dataclass
class LineChange:
    """How a command changed a line, for its decision record.

    Attributes:
        rule: The rule that decided the line's new state.
        candidates: Nodes considered, when an allocation was attempted.
    """

    rule: str
    candidates: list[Candidate] = field(default_factory=list)


@dataclass
class SkuBook:
    """Stock, open lines and backorders of one SKU.

    Methods apply one command and return the lines they changed, with the rule that
    changed each; the shard turns those into decision and exception records.

    Attributes:
        sku: The SKU.
        stocks: Its stock by node.
        lines: Its lines not yet shipped in full (nor cancelled).
        finished: Lines shipped in full in the last ``FINISHED_LINE_RETENTION``, oldest
            first, with when they finished: a short shipment reported later reopens one.
    """

    sku: str
    stocks: dict[str, NodeStock] = field(default_factory=dict)
    lines: dict[LineKey, LineState] = field(default_factory=dict)
    finished: dict[LineKey, tuple[datetime, LineState]] = field(default_factory=dict)

    # -- demand -----------------------------------------------------------------

    def request(
        self, command: LineRequest, held: bool, policy: Policy
    ) -> dict[LineKey, LineChange]:
        """Add a new line and allocate it (unless its customer is held)."""
        key = (command.order_id, command.line_id)
        if key in self.lines:
            return {}
        line = LineState(request=command, requested=command.qty, held=held)
        self.lines[key] = line
        if held:
            return {key: LineChange("credit-hold")}
        return {key: self._allocate(line, command.cause.event_time, policy)}

    def resize(self, command: LineResize, policy: Policy) -> dict[LineKey, LineChange]:
        """Change a line's ordered quantity; release or allocate the difference."""
        line = self.lines.get((command.order_id, command.line_id))
        if line is None:
            return {}
        # Units already shipped stay ordered: a line can't be cut below what left.
        line.requested = max(command.qty, sum(line.shipped.values()))
        changes = {line.key: LineChange("order-change")}
        at = command.cause.event_time
        freed = self._trim(line, policy, at)
        if line.waiting and not line.held:
            changes[line.key] = self._allocate(line, at, policy, rule_prefix="order-change")
        if freed:
            changes.update(self._serve_backorders(at, policy))
        return changes

    def cancel(
        self, order_id: str, at: datetime, policy: Policy
    ) -> tuple[list[LineState], dict[LineKey, LineChange]]:
        """Cancel an order's lines of this SKU; return them and the backorders served."""
        cancelled = [line for key, line in sorted(self.lines.items()) if key[0] == order_id]
        for line in cancelled:
            self._release(line)
            del self.lines[line.key]
        served = self._serve_backorders(at, policy) if cancelled else {}
        return cancelled, served

    def hold(
        self, customer_id: str, held: bool, at: datetime, policy: Policy
    ) -> dict[LineKey, LineChange]:
        """Put a customer's waiting lines on hold, or release them and allocate.

        Finished lines follow the hold too (they wait for nothing, so nothing changes
        for them now), so a line a short shipment reopens is held exactly when its
        customer is.
        """
        for _, finished in self.finished.values():
            if finished.request.customer_id == customer_id:
                finished.held = held
        changes: dict[LineKey, LineChange] = {}
        for key, line in sorted(self.lines.items()):
            if line.request.customer_id != customer_id or line.held == held:
                continue
            line.held = held
            if line.waiting == 0:
                continue
            if held:
                changes[key] = LineChange("credit-hold")
            else:
                changes[key] = self._allocate(line, at, policy, rule_prefix="credit-release")
        return changes

    # -- supply -----------------------------------------------------------------

    def set_level(self, command: StockLevel, policy: Policy) -> dict[LineKey, LineChange]:
        """Take an absolute on-hand level from the WMS."""
        self._stock(command.node_id).on_hand = command.on_hand
        return self._rebalance(command.cause.event_time, policy)

    def change_level(self, command: StockChange, policy: Policy) -> dict[LineKey, LineChange]:
        """Apply a relative on-hand change; a receipt also settles its purchase order."""
        stock = self._stock(command.node_id)
        stock.on_hand += command.delta
        if command.po_id is not None:
            stock.inbound.pop(command.po_id, None)
        return self._rebalance(command.cause.event_time, policy)

    def expect(self, command: InboundUpdate, policy: Policy) -> dict[LineKey, LineChange]:
        """Record (or re-date) expected inbound supply."""
        self._stock(command.node_id).inbound[command.po_id] = (command.qty, command.eta)
        return self._rebalance(command.cause.event_time, policy)

    def reserve(self, command: ReservationChange, policy: Policy) -> dict[LineKey, LineChange]:
        """Apply an ERP/WMS reservation, or its release."""
        reservations = self._stock(command.node_id).reservations
        if command.qty is None:
            reservations.pop(command.reservation_id, None)
        else:
            reservations[command.reservation_id] = command.qty
        return self._rebalance(command.cause.event_time, policy)

    def issue(self, command: ShipmentIssue, policy: Policy) -> dict[LineKey, LineChange]:
        """Book units leaving a node in a shipment, against the line's allocations."""
        stock = self._stock(command.node_id)
        stock.on_hand -= command.qty
        at = command.cause.event_time
        line = self.lines.get((command.order_id, command.line_id))
        changes: dict[LineKey, LineChange] = {}
        if line is not None:
            line.record_issue(command.shipment_id, command.node_id, command.qty)
            changes = self._consume(line, command.node_id, command.qty, policy, at)
        _merge(changes, self._rebalance(at, policy))
        return changes

    def short_ship(self, command: ShipmentShort, _policy: Policy) -> dict[LineKey, LineChange]:
        """Book units a shipment did not ship after all; a finished line reopens.

        The units are neither shipped nor waiting: the line reports them as shipped
        short until a later shipment makes them good, and they are not re-allocated.
        On-hand does not change (the goods issue took them; a WMS count corrects it).
        """
        key = (command.order_id, command.line_id)
        line = self.lines.get(key)
        if line is None and key in self.finished:
            line = self.finished[key][1]
        if line is None or not line.record_short(command.shipment_id, command.qty):
            return {}
        if self.finished.pop(key, None) is not None:
            self.lines[key] = line
        return {key: LineChange("short-shipment")}

    def finish(self, key: LineKey, at: datetime) -> LineState | None:
        """Move the line to ``finished`` if it is shipped in full; return it if it was.

        Lines finished more than ``FINISHED_LINE_RETENTION`` before ``at`` are forgotten.
        """
        line = self.lines.get(key)
        if line is None or not line.fully_shipped:
            return None
        del self.lines[key]
        self._forget_finished(at - FINISHED_LINE_RETENTION)
        self.finished[key] = (at, line)
        return line

    # -- internals --------------------------------------------------------------

    def _forget_finished(self, before: datetime) -> None:
        while self.finished:
            key, (finished_at, _) = next(iter(self.finished.items()))
            if finished_at >= before:
                return
            del self.finished[key]

    def _stock(self, node_id: str) -> NodeStock:
        return self.stocks.setdefault(node_id, NodeStock())

    def _higher_allocated(self, node_id: str, priority: int) -> int:
        stock = self.stocks.get(node_id)
        if stock is None:
            return 0
        return sum(
            qty
            for key, qty in stock.allocated.items()
            if key in self.lines and self.lines[key].request.priority < priority
        )

    def _allocate(
        self, line: LineState, at: datetime, policy: Policy, rule_prefix: str = ""
    ) -> LineChange:
        plan = plan_fill(line, self.stocks, policy, at, self._higher_allocated)
        for node_id, qty in plan.takes.items():
            line.allocations[node_id] = line.allocations.get(node_id, 0) + qty
            stock = self._stock(node_id)
            stock.allocated[line.key] = stock.allocated.get(line.key, 0) + qty
        line.shortfall = plan.shortfall
        rule = f"{rule_prefix}:{plan.rule}" if rule_prefix else plan.rule
        return LineChange(rule, plan.candidates)

    def _release(self, line: LineState) -> None:
        for node_id, qty in line.allocations.items():
            self._unallocate(line, node_id, qty)
        line.allocations.clear()

    def _unallocate(self, line: LineState, node_id: str, qty: int) -> None:
        stock = self._stock(node_id)
        left = stock.allocated.get(line.key, 0) - qty
        if left > 0:
            stock.allocated[line.key] = left
        else:
            stock.allocated.pop(line.key, None)

    def _trim(self, line: LineState, policy: Policy, at: datetime) -> bool:
        """Release allocations beyond the ordered quantity, lowest-ranked node first."""
        excess = line.committed - line.requested
        freed = False
        for node_id in _lowest_rank_first(line, policy, at):
            if excess <= 0:
                break
            take = min(excess, line.allocations[node_id])
            self._take_from(line, node_id, take)
            excess -= take
            freed = True
        return freed

    def _take_from(self, line: LineState, node_id: str, qty: int) -> None:
        self._unallocate(line, node_id, qty)
        left = line.allocations[node_id] - qty
        if left > 0:
            line.allocations[node_id] = left
        else:
            del line.allocations[node_id]

    def _consume(
        self, line: LineState, node_id: str, qty: int, policy: Policy, at: datetime
    ) -> dict[LineKey, LineChange]:
        """Move shipped units (already booked on the line) out of allocations.

        Other nodes give up theirs when the shipping node did not hold enough.
        """
        # Shipped beyond the ordered quantity (over-delivery): what left is what counts.
        line.requested = max(line.requested, sum(line.shipped.values()))
        from_node = min(qty, line.allocations.get(node_id, 0))
        if from_node:
            self._take_from(line, node_id, from_node)
        rest = qty - from_node
        for other in _lowest_rank_first(line, policy, at):
            if rest <= 0:
                break
            take = min(rest, line.allocations[other])
            self._take_from(line, other, take)
            rest -= take
        if rest > 0 or (qty > from_node):
            return {line.key: LineChange("warehouse-shipment")}
        self._trim(line, policy, at)
        return {}

    def _rebalance(self, at: datetime, policy: Policy) -> dict[LineKey, LineChange]:
        """De-allocate where supply no longer covers allocations, then serve backorders."""
        horizon = timedelta(hours=policy.backorders.use_inbound_within_hours)
        changes: dict[LineKey, LineChange] = {}
        for node_id, stock in sorted(self.stocks.items()):
            excess = stock.overcommitted(at, horizon)
            if excess <= 0:
                continue
            for key in sorted(stock.allocated, key=self._priority_of, reverse=True):
                if excess <= 0:
                    break
                line = self.lines[key]
                take = min(excess, line.allocations.get(node_id, 0))
                self._take_from(line, node_id, take)
                line.shortfall = ReasonCode.STOCKOUT
                excess -= take
                changes[key] = LineChange("supply-shortfall")
        _merge(changes, self._serve_backorders(at, policy))
        return changes

    def _priority_of(self, key: LineKey) -> tuple[int, float, datetime, str, str]:
        return self.lines[key].priority_key()

    def _serve_backorders(self, at: datetime, policy: Policy) -> dict[LineKey, LineChange]:
        """Allocate waiting lines in priority order, then oldest first."""
        if not policy.backorders.reallocate:
            return {}
        horizon = timedelta(hours=policy.backorders.use_inbound_within_hours)
        changes: dict[LineKey, LineChange] = {}
        waiting = sorted(
            (line for line in self.lines.values() if line.waiting and not line.held),
            key=LineState.priority_key,
        )
        for line in waiting:
            if not any(stock.atp(at, horizon) for stock in self.stocks.values()):
                break
            before, shortfall = line.committed, line.shortfall
            change = self._allocate(line, at, policy, rule_prefix="backorder")
            if line.committed != before:
                changes[line.key] = change
            else:  # no decision: the line keeps the reason its last decision gave
                line.shortfall = shortfall
        return changes


def _merge(changes: dict[LineKey, LineChange], later: dict[LineKey, LineChange]) -> None:
    """Add later changes; a line changed again moves to its latest place (service order)."""
    for key, change in later.items():
        changes.pop(key, None)
        changes[key] = change


def _lowest_rank_first(line: LineState, policy: Policy, at: datetime) -> list[str]:
    """The line's allocated nodes, least preferred by its sourcing rank first."""
    ranks = {node: rank for node, rank, _ in policy.candidate_nodes(line.request.region, at)}
    return sorted(line.allocations, key=lambda node: (-ranks.get(node, len(ranks) + 1), node))
