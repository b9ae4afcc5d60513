"""Events on the ``orders`` topic: order lifecycle and customer credit holds."""

from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from allocflow.models._internal.types import (
    ContractModel,
    EventTimestamp,
    Identifier,
    Money,
    Quantity,
    Text,
    check_total_units,
)
from allocflow.models.envelope import EventEnvelope


class Channel(StrEnum):
    """Sales channel an order arrived through."""

    ECOMMERCE = "ecommerce"
    EDI = "edi"
    SALES = "sales"


class OrderLine(ContractModel):
    """One line of an order."""

    line_id: Identifier = Field(description="Line id, unique within the order.")
    sku: Identifier = Field(description="Stock-keeping unit ordered.")
    qty: Quantity = Field(description="Units ordered.")
    unit_price: Money = Field(description="Selling price per unit.")
    unit_cost: Money = Field(description="Landed cost per unit; price minus cost is the margin.")


class LineChange(ContractModel):
    """A new quantity for an existing order line."""

    line_id: Identifier = Field(description="Line being changed.")
    sku: Identifier = Field(description="SKU of that line.")
    qty: Quantity = Field(description="New ordered quantity (replaces the old one).")


def _require_unique(ids: list[str], what: str) -> None:
    seen: set[str] = set()
    for item in ids:
        if item in seen:
            raise ValueError(f"{what} {item!r} appears more than once")
        seen.add(item)


class OrderPlaced(EventEnvelope):
    """A customer placed an order."""

    KEY_FIELD: ClassVar[str] = "order_id"
    event_type: Literal["order.placed"] = "order.placed"
    order_id: Identifier = Field(description="Order id.")
    customer_id: Identifier = Field(description="Ordering customer.")
    customer_tier: Identifier = Field(description="Customer tier named in the policy.")
    channel: Channel = Field(description="Sales channel.")
    region: Identifier = Field(description="Delivery region; selects the home node.")
    promised_date: EventTimestamp = Field(description="Delivery promised to the customer.")
    lines: list[OrderLine] = Field(min_length=1, max_length=500, description="Order lines.")

    @model_validator(mode="after")
    def _lines_unique(self) -> "OrderPlaced":
        _require_unique([line.line_id for line in self.lines], "line_id")
        check_total_units([line.qty for line in self.lines])
        return self


class OrderChanged(EventEnvelope):
    """Quantities or the promised date of an open order changed."""

    KEY_FIELD: ClassVar[str] = "order_id"
    event_type: Literal["order.changed"] = "order.changed"
    order_id: Identifier = Field(description="Order id.")
    changes: list[LineChange] = Field(
        default_factory=list, max_length=500, description="New quantities of changed lines."
    )
    promised_date: EventTimestamp | None = Field(
        default=None, description="New promised delivery, when it changed."
    )

    @model_validator(mode="after")
    def _something_changed(self) -> "OrderChanged":
        if not self.changes and self.promised_date is None:
            raise ValueError("an order change needs at least one line change or a promised_date")
        _require_unique([change.line_id for change in self.changes], "line_id")
        check_total_units([change.qty for change in self.changes])
        return self


class OrderCancelled(EventEnvelope):
    """The whole order was cancelled; its allocations are released."""

    KEY_FIELD: ClassVar[str] = "order_id"
    event_type: Literal["order.cancelled"] = "order.cancelled"
    order_id: Identifier = Field(description="Order id.")
    reason: Text = Field(default="", description="Free-text cancellation reason.")


class CreditHoldPlaced(EventEnvelope):
    """Finance put a customer on credit hold; their orders must not be allocated."""

    KEY_FIELD: ClassVar[str] = "customer_id"
    event_type: Literal["credit.hold_placed"] = "credit.hold_placed"
    customer_id: Identifier = Field(description="Customer on hold.")
    hold_id: Identifier = Field(description="Id of the hold; the release names it.")
    reason: Text = Field(default="", description="Why the hold was placed.")


class CreditHoldReleased(EventEnvelope):
    """Finance released a customer's credit hold; allocation resumes."""

    KEY_FIELD: ClassVar[str] = "customer_id"
    event_type: Literal["credit.hold_released"] = "credit.hold_released"
    customer_id: Identifier = Field(description="Customer released.")
    hold_id: Identifier = Field(description="Id of the hold being released.")
