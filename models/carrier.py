"""Events on the ``carrier-events`` topic: carrier scans, status and ETA updates."""

from typing import ClassVar, Literal

from pydantic import Field

from allocflow.models._internal.types import EventTimestamp, Identifier, Text
from allocflow.models.envelope import EventEnvelope


class CarrierEvent(EventEnvelope):
    """Fields of every carrier scan."""

    KEY_FIELD: ClassVar[str] = "shipment_id"
    shipment_id: Identifier = Field(description="Shipment scanned.")
    carrier_id: Identifier = Field(description="Carrier reporting.")
    tracking_no: Identifier = Field(description="Carrier tracking number.")
    location: Identifier | None = Field(default=None, description="Scan location code.")
    eta: EventTimestamp | None = Field(
        default=None, description="Carrier's current estimated delivery time."
    )


class CarrierPickedUp(CarrierEvent):
    """The carrier collected the shipment at the node."""

    event_type: Literal["carrier.picked_up"] = "carrier.picked_up"


class CarrierInTransit(CarrierEvent):
    """A transit scan at a hub or on the road."""

    event_type: Literal["carrier.in_transit"] = "carrier.in_transit"


class CarrierEtaUpdated(CarrierEvent):
    """The carrier revised its delivery estimate."""

    event_type: Literal["carrier.eta_updated"] = "carrier.eta_updated"
    eta: EventTimestamp = Field(description="The revised estimated delivery time.")
    reason: Text = Field(default="", description="Carrier's reason for the change.")


class CarrierException(CarrierEvent):
    """The carrier reported a problem (weather, damage, address, capacity)."""

    event_type: Literal["carrier.exception"] = "carrier.exception"
    code: Identifier = Field(description="Carrier exception code.")
    description: Text = Field(default="", description="Carrier's description.")


class CarrierDelivered(CarrierEvent):
    """The carrier delivered the shipment; ``event_time`` is the delivery time."""

    event_type: Literal["carrier.delivered"] = "carrier.delivered"
