"""The envelope every input event carries."""

from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import Field

from allocflow.models._internal.types import ContractModel, Identifier, Timestamp

SCHEMA_VERSION: Literal[1] = 1
"""Major version of the event contract. A breaking change increments it."""


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
    event_time: Timestamp = Field(
        description="Business time at which the fact happened (timezone-aware, ISO 8601)."
    )
    source: Source = Field(description="System that emitted the event.")
    schema_version: Literal[1] = Field(
        default=SCHEMA_VERSION, description="Major version of the event contract."
    )
    event_type: str = Field(description="Type of the event; selects its schema.")

    def message_key(self) -> str:
        """Return the Kafka message key: the subject key that orders this event's stream.

        Returns:
            The value of the field named by ``KEY_FIELD``.
        """
        return str(getattr(self, self.KEY_FIELD))
