"""A simulated message as it goes on a topic, with the fault it carries, if any."""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from allocflow.models.codec import encode_event
from allocflow.models.envelope import EventEnvelope
from allocflow.models.topics import INPUT_TOPICS, InputTopic

TOPIC_OF_EVENT_TYPE: dict[str, InputTopic] = {
    message.model_fields["event_type"].default: topic
    for topic, spec in INPUT_TOPICS.items()
    for message in spec.messages
}

KEY_FIELD_OF_EVENT_TYPE: dict[str, str] = {
    message.model_fields["event_type"].default: message.KEY_FIELD
    for spec in INPUT_TOPICS.values()
    for message in spec.messages
}


class FaultKind(StrEnum):
    """Kinds of data faults the simulator injects."""

    MALFORMED_JSON = "malformed_json"
    SCHEMA_VIOLATION = "schema_violation"
    DUPLICATE = "duplicate"
    LATE = "late"
    ORPHAN_SHIPMENT = "orphan_shipment"
    ORPHAN_SCAN = "orphan_scan"
    NEGATIVE_STOCK = "negative_stock"


@dataclass(frozen=True)
class SimRecord:
    """One message for an input topic.

    Attributes:
        topic: Logical topic.
        key: Message key.
        value: Message bytes.
        event_id: The event's id (for corrupted messages: the id written into them).
        event_type: The event's type.
        event_time: The event's business time.
        fault: The injected fault this message carries, or None for a clean one.
        detail: What exactly the fault is.
    """

    topic: InputTopic
    key: str
    value: bytes
    event_id: str
    event_type: str
    event_time: datetime
    fault: FaultKind | None = None
    detail: str = ""


def record_of(event: EventEnvelope) -> SimRecord:
    """Return the clean message of a simulated event."""
    return SimRecord(
        topic=TOPIC_OF_EVENT_TYPE[event.event_type],
        key=event.message_key(),
        value=encode_event(event),
        event_id=event.event_id,
        event_type=event.event_type,
        event_time=event.event_time,
    )
