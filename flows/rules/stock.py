"""Supply of one SKU at one node, and what is available to promise from it."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass
class NodeStock:
    """Supply and commitments of one SKU at one node.

    Attributes:
        on_hand: Units physically on hand (WMS), after goods issues.
        reservations: Units reserved outside allocflow, by reservation id.
        inbound: Expected purchase-order supply, by PO id: (qty, eta).
        allocated: Units allocflow committed to open lines, by (order_id, line_id).
    """

    on_hand: int = 0
    reservations: dict[str, int] = field(default_factory=dict)
    inbound: dict[str, tuple[int, datetime]] = field(default_factory=dict)
    allocated: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def allocated_total(self) -> int:
        """Units committed to open lines."""
        return sum(self.allocated.values())

    def supply(self, at: datetime, inbound_horizon: timedelta) -> int:
        """Units that can back commitments: on hand (never below 0) - reserved + inbound.

        Args:
            at: Now, in event time.
            inbound_horizon: Inbound due within this much time counts; zero: none.
        """
        arriving = 0
        if inbound_horizon > timedelta(0):
            arriving = sum(qty for qty, eta in self.inbound.values() if eta <= at + inbound_horizon)
        return max(0, self.on_hand) - sum(self.reservations.values()) + arriving

    def atp(self, at: datetime, inbound_horizon: timedelta) -> int:
        """Available to promise: supply minus what is already allocated (never below 0)."""
        return max(0, self.supply(at, inbound_horizon) - self.allocated_total)

    def overcommitted(self, at: datetime, inbound_horizon: timedelta) -> int:
        """Units allocated beyond supply (0 when commitments are covered)."""
        return max(0, self.allocated_total - max(0, self.supply(at, inbound_horizon)))
