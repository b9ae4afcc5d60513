"""The ``allocation-exceptions`` record: an exception opened, and later closed."""

from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from allocflow.models._internal.types import ContractModel, Identifier, Text, Timestamp
from allocflow.models.envelope import SCHEMA_VERSION
from allocflow.models.vocabulary import OwnerRole, ReasonCode, Severity


class ExceptionState(StrEnum):
    """Whether the record opens or closes the exception."""

    OPEN = "open"
    CLOSED = "closed"


class AllocationException(ContractModel):
    """An order-level or line-level exception that needs a human or waits for a resolution."""

    record_type: Literal["allocation.exception"] = "allocation.exception"
    schema_version: Literal[1] = SCHEMA_VERSION
    record_id: Identifier = Field(description="Deterministic id of this record (open or close).")
    exception_id: Identifier = Field(description="Deterministic id shared by open and close.")
    state: ExceptionState = Field(description="Open or closed.")
    order_id: Identifier = Field(description="Order affected.")
    line_id: Identifier | None = Field(default=None, description="Line affected, if one.")
    reason_code: ReasonCode = Field(description="Why it was opened.")
    severity: Severity = Field(description="Urgency.")
    owner_role: OwnerRole = Field(description="Role expected to act.")
    opened_at: Timestamp = Field(description="Event time it opened; aging starts here.")
    closed_at: Timestamp | None = Field(default=None, description="Event time it closed.")
    resolution: Text | None = Field(default=None, description="How it was resolved.")
    detail: Text = Field(description="What happened, for the owner.")
    cause_event_id: Identifier = Field(description="Event that opened or closed it.")

    @model_validator(mode="after")
    def _closed_has_close_time(self) -> "AllocationException":
        closed = self.state is ExceptionState.CLOSED
        if closed != (self.closed_at is not None):
            raise ValueError("closed_at is required exactly when state is closed")
        if self.closed_at is not None and self.closed_at < self.opened_at:
            raise ValueError("closed_at must not be before opened_at")
        return self
