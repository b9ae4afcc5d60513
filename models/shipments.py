"""Events on the ``shipments`` topic: a shipment's life in the warehouse and TMS."""

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from allocflow.models._internal.types import (
    ContractModel,
    EventTimestamp,
    Identifier,
    Quantity,
    check_total_units,
)
from allocflow.models.envelope import EventEnvelope


class ShipmentLine(ContractModel):
    """Units of one order line in a shipment."""

    line_id: Identifier = Field(description="Order line shipped.")
    sku: Identifier = Field(description="SKU shipped.")
    qty: Quantity = Field(description="Units in this shipment.")


class ShipmentCreated(EventEnvelope):
    """The TMS planned a shipment of order lines from a node with a carrier."""

    KEY_FIELD: ClassVar[str] = "shipment_id"
    event_type: Literal["shipment.created"] = "shipment.created"
    shipment_id: Identifier = Field(description="Shipment id.")
    order_id: Identifier = Field(description="Order being shipped.")
    node_id: Identifier = Field(description="Shipping warehouse.")
    carrier_id: Identifier = Field(description="Carrier booked.")
    lane: Identifier = Field(description="Lane: shipping node and destination region.")
    dispatch_cutoff: EventTimestamp = Field(description="Latest dispatch time for the promise.")
    promised_delivery: EventTimestamp = Field(description="Delivery promised to the customer.")
    lines: list[ShipmentLine] = Field(min_length=1, max_length=500, description="Lines shipped.")

    @model_validator(mode="after")
    def _cutoff_before_promise(self) -> "ShipmentCreated":
        if self.dispatch_cutoff > self.promised_delivery:
            raise ValueError("dispatch_cutoff must not be after promised_delivery")
        check_total_units([line.qty for line in self.lines])
        return self


class ShipmentPicked(EventEnvelope):
    """The warehouse finished picking the shipment."""

    KEY_FIELD: ClassVar[str] = "shipment_id"
    event_type: Literal["shipment.picked"] = "shipment.picked"
    shipment_id: Identifier = Field(description="Shipment id.")
    order_id: Identifier = Field(description="Order being shipped.")


class ShipmentDispatched(EventEnvelope):
    """The shipment left the warehouse with the carrier."""

    KEY_FIELD: ClassVar[str] = "shipment_id"
    event_type: Literal["shipment.dispatched"] = "shipment.dispatched"
    shipment_id: Identifier = Field(description="Shipment id.")
    order_id: Identifier = Field(description="Order being shipped.")
    carrier_id: Identifier = Field(description="Carrier that took it.")
    tracking_no: Identifier = Field(description="Carrier tracking number.")


class ShipmentDelivered(EventEnvelope):
    """The TMS recorded proof of delivery; ``event_time`` is the delivery time."""

    KEY_FIELD: ClassVar[str] = "shipment_id"
    event_type: Literal["shipment.delivered"] = "shipment.delivered"
    shipment_id: Identifier = Field(description="Shipment id.")
    order_id: Identifier = Field(description="Order delivered.")


class ShortLine(ContractModel):
    """Units of an order line that could not be shipped."""

    line_id: Identifier = Field(description="Order line short.")
    sku: Identifier = Field(description="SKU short.")
    qty_short: Quantity = Field(description="Units missing from the shipment.")


class ShipmentShortShipped(EventEnvelope):
    """The warehouse shipped less than planned (e.g. stock found damaged at pick)."""

    KEY_FIELD: ClassVar[str] = "shipment_id"
    event_type: Literal["shipment.short_shipped"] = "shipment.short_shipped"
    shipment_id: Identifier = Field(description="Shipment id.")
    order_id: Identifier = Field(description="Order affected.")
    lines: list[ShortLine] = Field(min_length=1, max_length=500, description="Lines short.")

    @model_validator(mode="after")
    def _total_units(self) -> "ShipmentShortShipped":
        check_total_units([line.qty_short for line in self.lines])
        return self
