"""Events on the ``reservations`` topic: stock levels, inbound supply and reservations."""

from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from allocflow.models._internal.types import EventTimestamp, Identifier, Quantity, StockLevel
from allocflow.models.envelope import EventEnvelope


class AdjustmentReason(StrEnum):
    """Why a node's stock of a SKU changed outside allocation."""

    RECEIPT = "receipt"
    CYCLE_COUNT = "cycle_count"
    DAMAGE = "damage"
    RETURN = "return"


class StockSnapshot(EventEnvelope):
    """Absolute on-hand quantity of a SKU at a node, as counted by the WMS."""

    KEY_FIELD: ClassVar[str] = "sku"
    event_type: Literal["stock.snapshot"] = "stock.snapshot"
    node_id: Identifier = Field(description="Warehouse (node).")
    sku: Identifier = Field(description="SKU.")
    on_hand: StockLevel = Field(description="Units physically on hand.")


class StockAdjusted(EventEnvelope):
    """A relative change of on-hand stock: receipt, cycle-count correction, damage, return."""

    KEY_FIELD: ClassVar[str] = "sku"
    event_type: Literal["stock.adjusted"] = "stock.adjusted"
    node_id: Identifier = Field(description="Warehouse (node).")
    sku: Identifier = Field(description="SKU.")
    delta: int = Field(
        ge=-10_000_000,
        le=10_000_000,
        description="Change in units (positive adds stock). Zero is rejected.",
    )
    reason: AdjustmentReason = Field(description="Why the stock changed.")
    po_id: Identifier | None = Field(
        default=None, description="Purchase order received, for receipts."
    )
    on_hand_after: StockLevel | None = Field(
        default=None, description="On-hand level after the change, when the WMS reports it."
    )

    @field_validator("delta")
    @classmethod
    def _delta_not_zero(cls, delta: int) -> int:
        if delta == 0:
            raise ValueError("delta must not be 0")
        return delta


class InboundExpected(EventEnvelope):
    """A purchase order line is expected at a node; re-sent with a new ETA when it slips."""

    KEY_FIELD: ClassVar[str] = "sku"
    event_type: Literal["inbound.expected"] = "inbound.expected"
    po_id: Identifier = Field(description="Purchase order id.")
    supplier_id: Identifier = Field(description="Supplier.")
    node_id: Identifier = Field(description="Receiving warehouse.")
    sku: Identifier = Field(description="SKU.")
    qty: Quantity = Field(description="Units expected.")
    eta: EventTimestamp = Field(description="Expected arrival at the node.")


class ReservationCreated(EventEnvelope):
    """ERP or WMS reserved stock outside allocflow (e.g. a manual hold for a key account)."""

    KEY_FIELD: ClassVar[str] = "sku"
    event_type: Literal["reservation.created"] = "reservation.created"
    reservation_id: Identifier = Field(description="Reservation id.")
    node_id: Identifier = Field(description="Warehouse (node).")
    sku: Identifier = Field(description="SKU.")
    qty: Quantity = Field(description="Units reserved.")
    order_id: Identifier | None = Field(default=None, description="Order it is for, if any.")


class ReservationReleased(EventEnvelope):
    """A reservation made by ERP or WMS was released; its stock is free again."""

    KEY_FIELD: ClassVar[str] = "sku"
    event_type: Literal["reservation.released"] = "reservation.released"
    reservation_id: Identifier = Field(description="Reservation being released.")
    node_id: Identifier = Field(description="Warehouse (node).")
    sku: Identifier = Field(description="SKU.")
