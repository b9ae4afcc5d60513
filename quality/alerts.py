"""Building ``DqAlert`` records with deterministic ids and truncated samples."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from allocflow.models.dq_alerts import DqAlert, DqCheck
from allocflow.models.ids import stable_id
from allocflow.models.vocabulary import Severity

_ELLIPSIS = "…"


@dataclass(frozen=True)
class Finding:
    """What a check found, before it becomes an alert.

    Attributes:
        check: The check that fired.
        rule: Which rule of the check, e.g. ``"negative_on_hand"``; part of the id.
        severity: Urgency.
        feed: Logical input topic the finding is about.
        detail: What is wrong with which value.
        event_id: The offending event, if one.
        entity: Keys of the affected entity.
    """

    check: DqCheck
    rule: str
    severity: Severity
    feed: str
    detail: str
    event_id: str | None = None
    entity: Mapping[str, str] | None = None


def build_alert(
    finding: Finding, detected_at: datetime, raw: bytes | None, sample_chars: int
) -> DqAlert:
    """Return the alert of ``finding``.

    The id depends only on the finding and the detection time, so a replay of the same
    input in the same order gives the same ids.

    Args:
        finding: What was found.
        detected_at: Event time of detection.
        raw: The offending message, for the sample; None when there is none.
        sample_chars: Most characters of the sample.

    Returns:
        The ``dq-alerts`` record.
    """
    entity = dict(sorted((finding.entity or {}).items()))
    alert_id = stable_id(
        "dqa",
        finding.check.value,
        finding.rule,
        finding.feed,
        finding.event_id or "",
        *(f"{key}={value}" for key, value in entity.items()),
        detected_at.isoformat(),
    )
    return DqAlert(
        alert_id=alert_id,
        check=finding.check,
        severity=finding.severity,
        feed=finding.feed,
        event_id=finding.event_id,
        entity=entity,
        detected_at=detected_at,
        detail=finding.detail[:2000],
        sample=None if raw is None else truncated_sample(raw, sample_chars),
    )


def truncated_sample(raw: bytes, limit: int) -> str:
    """Return ``raw`` as text, cut to ``limit`` characters with a trailing ellipsis.

    Example:
        >>> truncated_sample(b'{"event_id": "e-1"}', 8)
        '{"event_…'
    """
    text = raw.decode("utf-8", errors="replace")
    return text if len(text) <= limit else text[:limit] + _ELLIPSIS
