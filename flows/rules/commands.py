"""What the allocation state reacts to: line-level commands derived from input events.

Commands are small, immutable and picklable: they cross workers and processes.
"""

from dataclasses import dataclass
from datetime import datetime

from allocflow.models.vocabulary import ReasonCode


@dataclass(frozen=True)
class Cause:
    """The input event behind a command.

    Attributes:
        event_id: The event's id; decision ids derive from it.
        event_time: The event's business time.
    """

    event_id: str
    event_time: datetime


@dataclass(frozen=True)
class LineRequest:
    """An order line asking for stock.

    Attributes:
        cause: The order.placed event.
        order_id: Order.
        line_id: Line.
        sku: SKU.
        qty: Units ordered.
        customer_id: Customer.
        tier: Customer tier.
        priority: Tier priority (1 = highest).
        channel_weight: Channel weight (higher first within a tier).
        region: Delivery region.
        placed_at: When the order was placed (age for backorder order).
        approvals: Reasons the line needs approval (margin, value, quantity).
        max_rank: The highest sourcing rank the line may use, so that the order's lines
            together never use more than ``split.max_nodes_per_order`` nodes (see
            :func:`~allocflow.flows.rules.order_limit.order_max_rank`); None: any rank.
    """

    cause: Cause
    order_id: str
    line_id: str
    sku: str
    qty: int
    customer_id: str
    tier: str
    priority: int
    channel_weight: float
    region: str
    placed_at: datetime
    approvals: tuple[ReasonCode, ...] = ()
    max_rank: int | None = None


@dataclass(frozen=True)
class LineResize:
    """A new ordered quantity for a line (order.changed)."""

    cause: Cause
    order_id: str
    line_id: str
    sku: str
    qty: int


@dataclass(frozen=True)
class OrderCancel:
    """An order was cancelled; broadcast to every shard."""

    cause: Cause
    order_id: str


@dataclass(frozen=True)
class CreditHold:
    """A customer's credit hold was placed (held=True) or released; broadcast."""

    cause: Cause
    customer_id: str
    hold_id: str
    held: bool


@dataclass(frozen=True)
class StockLevel:
    """An absolute on-hand level from the WMS."""

    cause: Cause
    sku: str
    node_id: str
    on_hand: int


@dataclass(frozen=True)
class StockChange:
    """A relative on-hand change (receipt, count, damage, return)."""

    cause: Cause
    sku: str
    node_id: str
    delta: int
    po_id: str | None = None


@dataclass(frozen=True)
class InboundUpdate:
    """Expected inbound supply of a purchase order line (new or re-dated)."""

    cause: Cause
    sku: str
    node_id: str
    po_id: str
    qty: int
    eta: datetime


@dataclass(frozen=True)
class ReservationChange:
    """An ERP/WMS reservation made (qty > 0) or released (qty None)."""

    cause: Cause
    sku: str
    node_id: str
    reservation_id: str
    qty: int | None


@dataclass(frozen=True)
class ShipmentIssue:
    """Units of a line left a node in a shipment (goods issue)."""

    cause: Cause
    sku: str
    node_id: str
    order_id: str
    line_id: str
    qty: int
    shipment_id: str = ""


@dataclass(frozen=True)
class ShipmentShort:
    """Units of a line the warehouse did not ship after all (shipment.short_shipped)."""

    cause: Cause
    sku: str
    order_id: str
    line_id: str
    shipment_id: str
    qty: int


SkuCommand = (
    LineRequest
    | LineResize
    | StockLevel
    | StockChange
    | InboundUpdate
    | ReservationChange
    | ShipmentIssue
    | ShipmentShort
)
"""Commands for one SKU's state."""

BroadcastCommand = OrderCancel | CreditHold
"""Commands every shard receives."""

Command = SkuCommand | BroadcastCommand
