"""Duplicate ``event_id``s, remembered in a bounded window per feed."""

from allocflow.models.dq_alerts import DqCheck
from allocflow.models.vocabulary import Severity
from allocflow.quality.alerts import Finding
from allocflow.quality.recent import RecentMap


class DuplicateCheck:
    """Recognises a redelivered event by its ``event_id`` within a window per feed.

    Each feed remembers its last ``window`` distinct event ids (least recently seen
    forgotten first), so memory stays bounded at ``window`` ids per feed; a
    redelivery further back than that passes undetected.
    """

    def __init__(self, window: int) -> None:
        """Remember ``window`` event ids per feed."""
        self._window = window
        self._seen: dict[str, RecentMap[bool]] = {}

    def remembered(self, feed: str) -> int:
        """Return how many event ids ``feed`` remembers now."""
        seen = self._seen.get(feed)
        return 0 if seen is None else len(seen)

    def check(self, feed: str, event_id: str) -> Finding | None:
        """Remember ``event_id``; return a finding if it was seen already in the window."""
        seen = self._seen.setdefault(feed, RecentMap[bool](self._window))
        if seen.get(event_id):
            return Finding(
                check=DqCheck.DUPLICATE,
                rule="redelivered",
                severity=Severity.INFO,
                feed=feed,
                detail=f"event_id {event_id} was already received on {feed}; "
                "the redelivery was dropped",
                event_id=event_id,
            )
        seen.put(event_id, True)
        return None
