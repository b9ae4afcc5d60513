"""The envelope every input event carries."""

from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field

from allocflow.models._internal.types import ContractModel, EventTimestamp, Identifier

SCHEMA_VERSION: Literal[1] = 1
"""Major version of the event contract. A breaking change increments it."""


def _integer_only(value: Any) -> Any:
    """Reject ``true`` and ``1.0``: they equal 1 in Python, but the contract's types are strict."""
    if isinstance(value, bool | float):
        raise ValueError("Input should be 1, a JSON integer")
    return value


class Source(StrEnum):
    """The system that emitted an event."""

    ERP = "erp"
    OMS = "oms"
    WMS = "wms"
    TMS = "tms"
    CARRIER = "carrier"


class EventEnvelope(ContractModel):
    """Fields shared by every input event.

    Subclasses narrow ``event_type`` (the discriminator) to a literal and add the keys
    of their subject.
    """

    KEY_FIELD: ClassVar[str]
    """Name of the field whose value is the Kafka message key of the event."""

    event_id: Identifier = Field(
        description="Globally unique id of this event; the de-duplication key."
    )
    event_time: EventTimestamp = Field(
        description="Business time at which the fact happened (timezone-aware, ISO 8601)."
    )
    source: Source = Field(description="System that emitted the event.")
    schema_version: Annotated[Literal[1], BeforeValidator(_integer_only)] = Field(
        default=SCHEMA_VERSION,
        description="Major version of the event contract: the JSON integer 1 (not true, "
        '1.0 or "1").',
    )
    event_type: str = Field(description="Type of the event; selects its schema.")

    def message_key(self) -> str:
        """Return the Kafka message key: the subject key that orders this event's stream.

        Returns:
            The value of the field named by ``KEY_FIELD``.
        """
        return str(getattr(self, self.KEY_FIELD))
