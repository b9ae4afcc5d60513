"""Overflow-safe event-time arithmetic: a moment past the end of the calendar never comes.

The contract accepts any timezone-aware datetime Python can hold (years 1 to 9999, in
any offset), so a promise of ``9999-12-31T23:59:59Z`` plus ``forget_after``, or a scan
near year 1 minus the transit window, is out of range. Every sum and difference of
the tracker goes through these helpers: a deadline past the calendar is ``None``
(never scheduled, so it never fires) and a window start before it is :data:`FAR_PAST`
(nothing is older). Differences of two datetimes never overflow, so comparisons are
written as differences (``expected - promise > margin``) where they can be.

Example:
    >>> from datetime import UTC, datetime, timedelta
    >>> far = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    >>> after(far, timedelta(days=14)) is None
    True
    >>> before(datetime(1, 1, 1, tzinfo=UTC), timedelta(hours=72)) == FAR_PAST
    True
    >>> at_seconds(far.timestamp() + 900) == FAR_FUTURE
    True
"""

from datetime import UTC, datetime, timedelta

FAR_PAST = datetime.min.replace(tzinfo=UTC)
"""The earliest moment a datetime holds (0001-01-01T00:00:00Z)."""
FAR_FUTURE = datetime.max.replace(tzinfo=UTC)
"""The latest moment a datetime holds (9999-12-31T23:59:59.999999Z)."""
_FAR_PAST_S = FAR_PAST.timestamp()
_FAR_FUTURE_S = FAR_FUTURE.timestamp()


def after(moment: datetime, span: timedelta) -> datetime | None:
    """Return ``moment + span``, or None when that is past the calendar (never)."""
    try:
        return moment + span
    except OverflowError:
        return None


def before(moment: datetime, span: timedelta) -> datetime:
    """Return ``moment - span``, or :data:`FAR_PAST` when that is before the calendar."""
    try:
        return moment - span
    except OverflowError:
        return FAR_PAST


def at_seconds(seconds: float) -> datetime:
    """Return the UTC moment ``seconds`` after the epoch, clamped to the calendar."""
    if seconds <= _FAR_PAST_S:
        return FAR_PAST
    if seconds >= _FAR_FUTURE_S:
        return FAR_FUTURE
    return datetime.fromtimestamp(seconds, UTC)
