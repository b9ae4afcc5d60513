"""Topics of the contract: which events each carries and how messages are keyed."""

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, TypeAlias

from pydantic import Field, TypeAdapter

from allocflow.models.allocation_exceptions import AllocationException
from allocflow.models.carrier import (
    CarrierDelivered,
    CarrierEtaUpdated,
    CarrierException,
    CarrierInTransit,
    CarrierPickedUp,
)
from allocflow.models.dead_letter import DeadLetterRecord
from allocflow.models.decisions import AllocationDecision
from allocflow.models.dq_alerts import DqAlert
from allocflow.models.inventory import (
    InboundExpected,
    ReservationCreated,
    ReservationReleased,
    StockAdjusted,
    StockSnapshot,
)
from allocflow.models.order_status import OrderStatus
from allocflow.models.orders import (
    CreditHoldPlaced,
    CreditHoldReleased,
    OrderCancelled,
    OrderChanged,
    OrderPlaced,
)
from allocflow.models.route_alerts import RouteAlert
from allocflow.models.shipments import (
    ShipmentCreated,
    ShipmentDelivered,
    ShipmentDispatched,
    ShipmentPicked,
    ShipmentShortShipped,
)

OrdersEvent: TypeAlias = Annotated[
    OrderPlaced | OrderChanged | OrderCancelled | CreditHoldPlaced | CreditHoldReleased,
    Field(discriminator="event_type"),
]
ReservationsEvent: TypeAlias = Annotated[
    StockSnapshot | StockAdjusted | InboundExpected | ReservationCreated | ReservationReleased,
    Field(discriminator="event_type"),
]
ShipmentsEvent: TypeAlias = Annotated[
    ShipmentCreated
    | ShipmentPicked
    | ShipmentDispatched
    | ShipmentDelivered
    | ShipmentShortShipped,
    Field(discriminator="event_type"),
]
CarrierEventsEvent: TypeAlias = Annotated[
    CarrierPickedUp | CarrierInTransit | CarrierEtaUpdated | CarrierException | CarrierDelivered,
    Field(discriminator="event_type"),
]
InputEvent: TypeAlias = (
    OrderPlaced
    | OrderChanged
    | OrderCancelled
    | CreditHoldPlaced
    | CreditHoldReleased
    | StockSnapshot
    | StockAdjusted
    | InboundExpected
    | ReservationCreated
    | ReservationReleased
    | ShipmentCreated
    | ShipmentPicked
    | ShipmentDispatched
    | ShipmentDelivered
    | ShipmentShortShipped
    | CarrierPickedUp
    | CarrierInTransit
    | CarrierEtaUpdated
    | CarrierException
    | CarrierDelivered
)
DecisionsRecord: TypeAlias = Annotated[
    AllocationDecision | OrderStatus, Field(discriminator="record_type")
]
OutputRecord: TypeAlias = (
    AllocationDecision | OrderStatus | AllocationException | RouteAlert | DqAlert | DeadLetterRecord
)


class InputTopic(StrEnum):
    """Logical input topics; the value is the default topic name."""

    ORDERS = "orders"
    RESERVATIONS = "reservations"
    SHIPMENTS = "shipments"
    CARRIER_EVENTS = "carrier-events"


class OutputTopic(StrEnum):
    """Logical output topics; the value is the default topic name."""

    ALLOCATION_DECISIONS = "allocation-decisions"
    ALLOCATION_EXCEPTIONS = "allocation-exceptions"
    ROUTE_ALERTS = "route-alerts"
    DQ_ALERTS = "dq-alerts"
    DEAD_LETTER = "dead-letter"


@dataclass(frozen=True)
class TopicSpec:
    """What a topic carries.

    Attributes:
        title: Human title of the topic.
        description: What the topic is for, who produces and who consumes it.
        messages: Model classes of the messages, in documentation order.
        key_description: How the Kafka message key is chosen.
        adapter: Validator of one message of the topic (discriminated on the type field).
    """

    title: str
    description: str
    messages: tuple[type[Any], ...]
    key_description: str
    adapter: TypeAdapter[Any]


INPUT_TOPICS: dict[InputTopic, TopicSpec] = {
    InputTopic.ORDERS: TopicSpec(
        title="Orders",
        description="Order lifecycle from the OMS/ERP and customer credit holds from finance.",
        messages=(OrderPlaced, OrderChanged, OrderCancelled, CreditHoldPlaced, CreditHoldReleased),
        key_description="order_id for order events, customer_id for credit events.",
        adapter=TypeAdapter(OrdersEvent),
    ),
    InputTopic.RESERVATIONS: TopicSpec(
        title="Reservations and stock",
        description="Stock levels and adjustments from the WMS, inbound supply and "
        "reservations from ERP/WMS.",
        messages=(
            StockSnapshot,
            StockAdjusted,
            InboundExpected,
            ReservationCreated,
            ReservationReleased,
        ),
        key_description="sku, so every supply change of a SKU is ordered.",
        adapter=TypeAdapter(ReservationsEvent),
    ),
    InputTopic.SHIPMENTS: TopicSpec(
        title="Shipments",
        description="Shipment lifecycle from the WMS/TMS.",
        messages=(
            ShipmentCreated,
            ShipmentPicked,
            ShipmentDispatched,
            ShipmentDelivered,
            ShipmentShortShipped,
        ),
        key_description="shipment_id.",
        adapter=TypeAdapter(ShipmentsEvent),
    ),
    InputTopic.CARRIER_EVENTS: TopicSpec(
        title="Carrier events",
        description="Carrier scans, status and ETA updates.",
        messages=(
            CarrierPickedUp,
            CarrierInTransit,
            CarrierEtaUpdated,
            CarrierException,
            CarrierDelivered,
        ),
        key_description="shipment_id.",
        adapter=TypeAdapter(CarrierEventsEvent),
    ),
}

OUTPUT_TOPICS: dict[OutputTopic, TopicSpec] = {
    OutputTopic.ALLOCATION_DECISIONS: TopicSpec(
        title="Allocation decisions",
        description="One record per order-line decision, with policy version, deciding rule, "
        "candidates and reason, and the order-status changelog rolled up from them. Consumed "
        "by planners and downstream ERP/WMS.",
        messages=(AllocationDecision, OrderStatus),
        key_description="order_id.",
        adapter=TypeAdapter(DecisionsRecord),
    ),
    OutputTopic.ALLOCATION_EXCEPTIONS: TopicSpec(
        title="Allocation exceptions",
        description="Exceptions opened and closed, with reason code, severity and owner role.",
        messages=(AllocationException,),
        key_description="order_id.",
        adapter=TypeAdapter(AllocationException),
    ),
    OutputTopic.ROUTE_ALERTS: TopicSpec(
        title="Route alerts",
        description="Shipment delay risks and carrier lane degradation.",
        messages=(RouteAlert,),
        key_description="shipment_id, or the lane for lane-level alerts.",
        adapter=TypeAdapter(RouteAlert),
    ),
    OutputTopic.DQ_ALERTS: TopicSpec(
        title="Data-quality alerts",
        description="Findings of the data-quality gates and expectation suites.",
        messages=(DqAlert,),
        key_description="feed (input topic name).",
        adapter=TypeAdapter(DqAlert),
    ),
    OutputTopic.DEAD_LETTER: TopicSpec(
        title="Dead letter",
        description="Input messages that broke the contract, with the reason and raw bytes.",
        messages=(DeadLetterRecord,),
        key_description="The original message key, unchanged.",
        adapter=TypeAdapter(DeadLetterRecord),
    ),
}
