"""Event-time watermarks: the latest event time seen per feed and over all feeds."""

from datetime import datetime


class Watermarks:
    """Tracks, per feed, the latest ``event_time`` seen, and the latest over all feeds.

    The overall watermark is the gates' clock: detection times, orphan deadlines and
    stale-feed checks are measured against it.

    Example:
        >>> from datetime import UTC
        >>> marks = Watermarks()
        >>> marks.advance("orders", datetime(2026, 3, 2, 6, tzinfo=UTC))
        >>> marks.advance("orders", datetime(2026, 3, 2, 5, tzinfo=UTC))
        >>> marks.of("orders").hour, marks.overall.hour
        (6, 6)
    """

    def __init__(self) -> None:
        """Start with no event seen."""
        self._by_feed: dict[str, datetime] = {}
        self._overall: datetime | None = None

    def of(self, feed: str) -> datetime | None:
        """Return the watermark of ``feed``, None before its first event."""
        return self._by_feed.get(feed)

    @property
    def overall(self) -> datetime | None:
        """The latest event time over all feeds, None before the first event."""
        return self._overall

    def advance(self, feed: str, event_time: datetime) -> None:
        """Account for an event of ``feed``; an older event moves no watermark."""
        current = self._by_feed.get(feed)
        if current is None or event_time > current:
            self._by_feed[feed] = event_time
        if self._overall is None or event_time > self._overall:
            self._overall = event_time
