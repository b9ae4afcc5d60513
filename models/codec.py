"""Decoding input messages against the contract, with errors that name field and value.

Example:
    >>> from allocflow.models.topics import InputTopic
    >>> try:
    ...     decode_event(InputTopic.ORDERS, b'{"event_type": "order.cancelled"}')
    ... except ContractError as violation:
    ...     print(violation.reason_code.value, "|", violation.errors[0].field)
    SCHEMA_VIOLATION | event_id
"""

import hashlib
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from allocflow.models.dead_letter import DeadLetterReason, DeadLetterRecord, FieldError
from allocflow.models.envelope import EventEnvelope
from allocflow.models.ids import stable_id
from allocflow.models.topics import INPUT_TOPICS, InputEvent, InputTopic

UTF8_BOM = b"\xef\xbb\xbf"
"""A UTF-8 byte order mark; ignored at the start of a message."""

_VALUE_PREVIEW = 120
_TEXT_LIMIT = 2000
_MAX_ERRORS = 100


class ContractError(ValueError):
    """A message that breaks the event contract.

    Attributes:
        reason_code: Category of the problem.
        errors: Every problem found, by field.
        event_id: The message's event_id when one could be read, else None.
    """

    def __init__(
        self, reason_code: DeadLetterReason, errors: list[FieldError], event_id: str | None
    ) -> None:
        self.reason_code = reason_code
        self.errors = errors
        self.event_id = event_id
        super().__init__(self.summary)

    @property
    def summary(self) -> str:
        """One line naming every bad field and its value."""
        return "; ".join(_describe(error) for error in self.errors)


def decode_event(topic: InputTopic, raw: bytes) -> InputEvent:
    """Validate one message of an input topic.

    Args:
        topic: The topic the message was read from.
        raw: The message value.

    Returns:
        The event, as the model its ``event_type`` names.

    A UTF-8 byte order mark before the JSON (Windows tools write one at the start of
    a file) is ignored; JSON itself forbids it.

    Raises:
        ContractError: The bytes are not JSON, or the JSON breaks the contract.
    """
    try:
        event: InputEvent = INPUT_TOPICS[topic].adapter.validate_json(raw.removeprefix(UTF8_BOM))
    except ValidationError as error:
        raise _violation(error, raw) from None
    return event


def event_time_rejection(event: EventEnvelope, problem: str) -> ContractError:
    """The error of a valid event whose ``event_time`` the run does not accept.

    Args:
        event: The event.
        problem: Why its time is out of range (from the input's event-time screen).

    Returns:
        An ``EVENT_TIME_OUT_OF_RANGE`` error naming ``event_time`` and its value.
    """
    value = _preview(event.event_time.isoformat())
    return ContractError(
        DeadLetterReason.EVENT_TIME_OUT_OF_RANGE,
        [FieldError(field="event_time", message=problem, value=value)],
        event.event_id,
    )


def encode_event(event: EventEnvelope) -> bytes:
    """Serialise an event to the JSON bytes that go on its topic."""
    return event.__pydantic_serializer__.to_json(event)


def _violation(error: ValidationError, raw: bytes) -> ContractError:
    details = error.errors(include_url=False)
    return ContractError(
        reason_code=_reason_code(details),
        errors=[_field_error(detail) for detail in details],
        event_id=_event_id_of(raw),
    )


def _reason_code(details: list[ErrorDetails]) -> DeadLetterReason:
    kinds = {detail["type"] for detail in details}
    if "json_invalid" in kinds:
        return DeadLetterReason.MALFORMED_JSON
    if "union_tag_invalid" in kinds:
        return DeadLetterReason.UNKNOWN_EVENT_TYPE
    if any(detail["loc"][1:2] == ("schema_version",) for detail in details):
        return DeadLetterReason.UNSUPPORTED_SCHEMA_VERSION
    return DeadLetterReason.SCHEMA_VIOLATION


def _field_error(detail: ErrorDetails) -> FieldError:
    kind = detail["type"]
    if kind == "union_tag_not_found":
        return FieldError(field="event_type", message="Field required")
    if kind == "union_tag_invalid":
        tag = (detail.get("ctx") or {}).get("tag")
        return FieldError(field="event_type", message=detail["msg"], value=_preview(tag))
    location = "" if kind == "json_invalid" else ".".join(str(p) for p in detail["loc"][1:])
    value = None if kind == "missing" else _preview(detail["input"])
    message = detail["msg"].removeprefix("Value error, ")
    return FieldError(field=location, message=message, value=value)


def _preview(value: Any) -> str:
    if isinstance(value, bytes):
        text = value.decode("utf-8", errors="replace")
    else:
        text = _json_text(value)
    return text if len(text) <= _VALUE_PREVIEW else text[:_VALUE_PREVIEW] + "…"


def _json_text(value: Any) -> str:
    try:
        return orjson.dumps(value, default=repr).decode()
    except orjson.JSONEncodeError:
        # orjson refuses integers beyond 64 bits, which valid JSON may carry.
        return repr(value)


def _describe(error: FieldError) -> str:
    where = error.field or "message"
    got = "" if error.value is None else f" (got {error.value})"
    return f"{where}: {error.message}{got}"


def _event_id_of(raw: bytes) -> str | None:
    try:
        document = orjson.loads(raw.removeprefix(UTF8_BOM))
    except orjson.JSONDecodeError:
        return None
    event_id = document.get("event_id") if isinstance(document, dict) else None
    return event_id if isinstance(event_id, str) and event_id else None


def dead_letter_record(
    error: ContractError,
    *,
    topic: str,
    raw: bytes,
    partition: int | None = None,
    offset: int | None = None,
    key: bytes | None = None,
    timestamp: datetime | None = None,
) -> DeadLetterRecord:
    """Build the dead-letter record of a rejected message; nothing of it is lost.

    The id comes from the message's position (partition, offset; for a file, the line)
    when it has one, so a replay gives the same id; else from its bytes. The readable
    reason is cut to the record's limit; the raw bytes are kept whole, and the field
    errors up to ``_MAX_ERRORS`` of them.

    Args:
        error: Why the message was rejected.
        topic: Topic it was read from.
        raw: Its value, verbatim.
        partition: Its partition, if read from Kafka.
        offset: Its offset, if read from Kafka.
        key: Its key, if any.
        timestamp: Its broker timestamp, if any.

    Returns:
        The record for the dead-letter topic.
    """
    if offset is not None:
        dead_letter_id = stable_id("dlq", topic, str(partition), str(offset))
    else:
        dead_letter_id = stable_id("dlq", topic, hashlib.blake2b(raw).hexdigest())
    return DeadLetterRecord(
        dead_letter_id=dead_letter_id,
        source_topic=topic,
        partition=partition,
        offset=offset,
        key=None if key is None else _cut(key.decode("utf-8", errors="replace")),
        source_timestamp=timestamp,
        event_id=None if error.event_id is None else _cut(error.event_id),
        reason_code=error.reason_code,
        reason=_cut(error.summary),
        errors=error.errors[:_MAX_ERRORS],
        raw=raw,
    )


def _cut(text: str) -> str:
    return text if len(text) <= _TEXT_LIMIT else text[: _TEXT_LIMIT - 1] + "…"
