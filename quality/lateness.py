"""Late and out-of-order events, judged against their feed's event-time watermark."""

from datetime import datetime, timedelta

from allocflow.models.dq_alerts import DqCheck
from allocflow.models.envelope import EventEnvelope
from allocflow.models.vocabulary import Severity
from allocflow.quality.alerts import Finding


def check_lateness(
    feed: str, event: EventEnvelope, watermark: datetime | None, allowed: timedelta
) -> Finding | None:
    """Return a finding if ``event`` is older than ``watermark - allowed``.

    Args:
        feed: The event's feed.
        event: The event.
        watermark: The feed's watermark before this event; None for its first event.
        allowed: Allowed lateness.
    """
    if watermark is None or event.event_time >= watermark - allowed:
        return None
    behind = watermark - event.event_time
    return Finding(
        check=DqCheck.LATE,
        rule="behind_watermark",
        severity=Severity.WARNING,
        feed=feed,
        detail=f"{event.event_type} event_time {event.event_time.isoformat()} is {behind} "
        f"behind the {feed} watermark {watermark.isoformat()} (allowed lateness {allowed})",
        event_id=event.event_id,
        entity={type(event).KEY_FIELD: event.message_key()},
    )
