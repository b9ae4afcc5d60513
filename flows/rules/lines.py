"""The state of one order line inside its SKU's book."""

from dataclasses import dataclass, field
from datetime import datetime

from allocflow.flows.rules.commands import LineRequest
from allocflow.models.vocabulary import ReasonCode


@dataclass
class LineState:
    """What allocflow knows about an order line.

    Attributes:
        request: The line as ordered (its qty is the original quantity).
        requested: Units currently ordered (after changes).
        allocations: Open allocations by node.
        shipped: Units shipped, by node: issued in shipments, less what they shipped short.
        shipments: Units issued in each shipment: shipment id → (node, units).
        short: Units each shipment shipped short: shipment id → units.
        held: Whether its customer is on credit hold.
        shortfall: Why the line is short of a full allocation, if it is.
        open_exceptions: Open exceptions of the line: reason → (exception id, opened at).
    """

    request: LineRequest
    requested: int
    allocations: dict[str, int] = field(default_factory=dict)
    shipped: dict[str, int] = field(default_factory=dict)
    shipments: dict[str, tuple[str, int]] = field(default_factory=dict)
    short: dict[str, int] = field(default_factory=dict)
    held: bool = False
    shortfall: ReasonCode | None = None
    open_exceptions: dict[ReasonCode, tuple[str, datetime]] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        """(order_id, line_id)."""
        return (self.request.order_id, self.request.line_id)

    @property
    def committed(self) -> int:
        """Units allocated or already shipped."""
        return sum(self.allocations.values()) + sum(self.shipped.values())

    @property
    def waiting(self) -> int:
        """Units still waiting for supply (units shipped short do not wait: not re-allocated)."""
        return max(0, self.requested - self.committed - sum(self.short.values()))

    @property
    def short_outstanding(self) -> int:
        """Units shipped short that nothing has made good yet (a re-shipment, a smaller order)."""
        return min(sum(self.short.values()), max(0, self.requested - self.committed))

    def record_issue(self, shipment_id: str, node_id: str, qty: int) -> None:
        """Note units of the line issued at ``node_id`` in a shipment."""
        self.shipped[node_id] = self.shipped.get(node_id, 0) + qty
        _, issued = self.shipments.get(shipment_id, (node_id, 0))
        self.shipments[shipment_id] = (node_id, issued + qty)

    def record_short(self, shipment_id: str, qty: int) -> int:
        """Take units a shipment shipped short off what it shipped; return how many counted.

        A shipment can only be short of what it carried of the line: units beyond that,
        or of a shipment that did not carry the line, are not counted.
        """
        node_id, issued = self.shipments.get(shipment_id, ("", 0))
        counted = min(qty, issued - self.short.get(shipment_id, 0))
        if counted <= 0:
            return 0
        self.short[shipment_id] = self.short.get(shipment_id, 0) + counted
        left = self.shipped.get(node_id, 0) - counted
        if left > 0:
            self.shipped[node_id] = left
        else:
            self.shipped.pop(node_id, None)
        return counted

    @property
    def nodes(self) -> set[str]:
        """Nodes the line is (or was) fulfilled from."""
        return {node for node, qty in (*self.allocations.items(), *self.shipped.items()) if qty}

    @property
    def fully_shipped(self) -> bool:
        """Whether every ordered unit has been issued."""
        return sum(self.shipped.values()) >= self.requested

    def priority_key(self) -> tuple[int, float, datetime, str, str]:
        """Backorder order: tier priority, channel weight (higher first), age, ids."""
        request = self.request
        return (
            request.priority,
            -request.channel_weight,
            request.placed_at,
            request.order_id,
            request.line_id,
        )

    def committed_by_node(self) -> dict[str, int]:
        """Allocated plus shipped units, by node."""
        total = dict(self.shipped)
        for node, qty in self.allocations.items():
            total[node] = total.get(node, 0) + qty
        return {node: qty for node, qty in sorted(total.items()) if qty}
