"""The ``dead-letter`` record: an input message that broke the contract, kept verbatim."""

from enum import StrEnum
from typing import Literal

from pydantic import ConfigDict, Field

from allocflow.models._internal.types import ContractModel, Identifier, Text, Timestamp
from allocflow.models.envelope import SCHEMA_VERSION


class DeadLetterReason(StrEnum):
    """Why a message was dead-lettered."""

    MALFORMED_JSON = "MALFORMED_JSON"
    UNKNOWN_EVENT_TYPE = "UNKNOWN_EVENT_TYPE"
    UNSUPPORTED_SCHEMA_VERSION = "UNSUPPORTED_SCHEMA_VERSION"
    SCHEMA_VIOLATION = "SCHEMA_VIOLATION"
    EVENT_TIME_OUT_OF_RANGE = "EVENT_TIME_OUT_OF_RANGE"
    """A valid event whose ``event_time`` is outside the run's accepted range, or jumps
    ahead of its partition alone (see :mod:`allocflow.models.event_time`)."""


class FieldError(ContractModel):
    """One problem found in a message, named by its field path."""

    field: str = Field(description="Dotted path of the field, e.g. 'lines.0.qty'; '' = document.")
    message: Text = Field(description="What is wrong with it.")
    value: Text | None = Field(default=None, description="The offending value, truncated.")


class DeadLetterRecord(ContractModel):
    """An input message that could not be accepted, with its reason and its raw bytes."""

    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    record_type: Literal["dead_letter"] = "dead_letter"
    schema_version: Literal[1] = SCHEMA_VERSION
    dead_letter_id: Identifier = Field(
        description="Deterministic id from the message's position (or bytes); dedupe on it."
    )
    source_topic: Identifier = Field(description="Topic the message was read from.")
    partition: int | None = Field(default=None, ge=0, description="Its partition, if any.")
    offset: int | None = Field(default=None, ge=0, description="Its offset, if any.")
    key: Text | None = Field(default=None, description="Its message key, decoded as UTF-8.")
    source_timestamp: Timestamp | None = Field(
        default=None, description="The message's broker timestamp, if any."
    )
    event_id: Text | None = Field(
        default=None, description="The event_id, when one could be read from the message."
    )
    reason_code: DeadLetterReason = Field(description="Category of the problem.")
    reason: Text = Field(description="Readable summary naming each bad field and value.")
    errors: list[FieldError] = Field(description="Every problem found, by field.")
    raw: bytes = Field(
        description="The message value exactly as received; in JSON, URL-safe base64 with "
        "padding (RFC 4648 §5: '-' and '_' instead of '+' and '/')."
    )
