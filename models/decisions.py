"""The ``allocation-decisions`` record: one decision per order line and cause."""

from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from allocflow.models._internal.types import ContractModel, Identifier, Quantity, Text, Timestamp
from allocflow.models.envelope import SCHEMA_VERSION
from allocflow.models.vocabulary import ReasonCode


class DecisionOutcome(StrEnum):
    """State of an order line after the decision."""

    ALLOCATED = "allocated"
    PARTIAL = "partial"
    BACKORDERED = "backordered"
    HELD = "held"
    CANCELLED = "cancelled"
    SHORT_SHIPPED = "short_shipped"


class NodeAllocation(ContractModel):
    """Units committed at one node."""

    node_id: Identifier = Field(description="Node the units are committed at.")
    qty: Quantity = Field(description="Units committed.")


class Candidate(ContractModel):
    """A node the decision considered, in rank order."""

    node_id: Identifier = Field(description="Candidate node.")
    rank: int = Field(ge=1, description="Preference rank in the policy (1 = home node).")
    available_qty: int = Field(ge=0, description="Units available to this line at the node.")
    rejected_reason: ReasonCode | None = Field(
        default=None, description="Why the node was not used, if it was not."
    )


class AllocationDecision(ContractModel):
    """A decision on one order line, with everything needed to explain it."""

    record_type: Literal["allocation.decision"] = "allocation.decision"
    schema_version: Literal[1] = SCHEMA_VERSION
    decision_id: Identifier = Field(description="Deterministic id; consumers dedupe on it.")
    order_id: Identifier = Field(description="Order.")
    line_id: Identifier = Field(description="Order line.")
    sku: Identifier = Field(description="SKU.")
    customer_id: Identifier = Field(description="Customer.")
    decided_at: Timestamp = Field(description="Event time of the event that caused it.")
    cause_event_id: Identifier = Field(description="Event that caused the decision.")
    policy_version: Identifier = Field(description="Version of the policy applied.")
    rule: Identifier = Field(description="Policy rule that decided.")
    outcome: DecisionOutcome = Field(description="State of the line after the decision.")
    requested_qty: int = Field(ge=0, description="Units the line asks for.")
    allocated_qty: int = Field(ge=0, description="Units committed in total.")
    backordered_qty: int = Field(
        ge=0,
        description=(
            "Units the customer still waits for: waiting for supply, plus the units "
            "shipped short (short_shipped_qty), which are not re-allocated."
        ),
    )
    short_shipped_qty: int = Field(
        default=0,
        ge=0,
        description="Units of the line shipped short and not re-shipped (part of backordered_qty).",
    )
    allocations: list[NodeAllocation] = Field(
        default_factory=list, description="Units committed per node."
    )
    candidates: list[Candidate] = Field(
        default_factory=list, description="Nodes considered, in rank order."
    )
    reason_code: ReasonCode | None = Field(
        default=None, description="Why the line is short of a full allocation."
    )
    explanation: Text = Field(description="One sentence a planner can read.")

    @model_validator(mode="after")
    def _quantities_add_up(self) -> "AllocationDecision":
        if sum(a.qty for a in self.allocations) != self.allocated_qty:
            raise ValueError("allocated_qty must equal the sum of allocations")
        if self.outcome is not DecisionOutcome.CANCELLED and (
            self.allocated_qty + self.backordered_qty != self.requested_qty
        ):
            raise ValueError("allocated_qty + backordered_qty must equal requested_qty")
        if self.short_shipped_qty > self.backordered_qty:
            raise ValueError("short_shipped_qty must not exceed backordered_qty")
        if self.outcome is not DecisionOutcome.ALLOCATED and self.reason_code is None:
            raise ValueError(f"a {self.outcome.value} decision needs a reason_code")
        return self
