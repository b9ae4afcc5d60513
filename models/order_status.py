"""The ``order.status`` record on ``allocation-decisions``: an order's rolled-up state."""

from enum import StrEnum
from typing import Literal

from pydantic import Field

from allocflow.models._internal.types import ContractModel, Identifier, Timestamp
from allocflow.models.envelope import SCHEMA_VERSION


class OrderStatusKind(StrEnum):
    """Where an order stands, from its lines' latest decisions."""

    ALLOCATED = "allocated"
    PARTIAL = "partial"
    BACKORDERED = "backordered"
    HELD = "held"
    CANCELLED = "cancelled"
    SHORT_SHIPPED = "short_shipped"


class OrderStatus(ContractModel):
    """An order's status after a decision on one of its lines changed it.

    The records of an order form a changelog: the one with the highest ``version``
    is the order's current status, whose content is the same for every run over the
    same input. Which statuses come before it, and so the version numbers, depend on
    the order in which the order's lines were decided across shards, which batching
    (more workers, a replay after a crash) can change; ``record_id`` covers the
    content, so one id always means one record.
    """

    record_type: Literal["order.status"] = "order.status"
    schema_version: Literal[1] = SCHEMA_VERSION
    record_id: Identifier = Field(
        description="Deterministic id of this version and content; consumers dedupe on it."
    )
    order_id: Identifier = Field(description="Order.")
    customer_id: Identifier = Field(description="Customer.")
    version: int = Field(
        ge=1, description="Line decisions of the order seen so far; the highest is current."
    )
    status: OrderStatusKind = Field(description="The order's status.")
    lines: int = Field(ge=1, description="Lines decided so far.")
    lines_allocated: int = Field(ge=0, description="Lines allocated in full.")
    lines_partial: int = Field(ge=0, description="Lines partly allocated.")
    lines_backordered: int = Field(ge=0, description="Lines with nothing allocated.")
    lines_held: int = Field(ge=0, description="Lines held (credit hold).")
    lines_cancelled: int = Field(ge=0, description="Lines cancelled.")
    lines_short_shipped: int = Field(
        default=0, ge=0, description="Lines with units shipped short and not re-shipped."
    )
    requested_qty: int = Field(ge=0, description="Units ordered on lines not cancelled.")
    allocated_qty: int = Field(ge=0, description="Units allocated or shipped.")
    short_shipped_qty: int = Field(
        default=0,
        ge=0,
        description="Units shipped short and not re-shipped, on lines not cancelled.",
    )
    nodes: list[Identifier] = Field(description="Nodes the order is allocated from.")
    split_count: int = Field(ge=0, description="Number of nodes the order is allocated from.")
    as_of: Timestamp = Field(description="Event time of the order's latest line decision.")
    cause_event_id: Identifier = Field(description="Event behind that latest decision.")
    policy_version: Identifier = Field(description="Version of the policy applied.")
