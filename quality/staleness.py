"""Stale sources: a feed, or a warehouse (node), silent for too long in event time.

A source is stale when the gates' watermark (the latest event time over all feeds)
is more than its threshold past the last event from it. Each feed has its own
threshold (an order feed is quiet over a weekend, a carrier feed never is); nodes
share one. A source is reported once, and can be reported again after an event from
it arrives.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from allocflow.models.dq_alerts import DqCheck
from allocflow.models.envelope import EventEnvelope
from allocflow.models.vocabulary import Severity
from allocflow.quality.alerts import Finding

_FEED = "feed"
_NODE = "node_id"


@dataclass
class _LastSeen:
    at: datetime
    feed: str
    reported: bool = False


class StaleSourceCheck:
    """Remembers when each feed and node was last heard from."""

    def __init__(self, feed_after: Callable[[str], timedelta], node_after: timedelta) -> None:
        """Report a feed silent for ``feed_after(feed)`` and a node silent for ``node_after``."""
        self._feed_after = feed_after
        self._node_after = node_after
        self._last: dict[tuple[str, str], _LastSeen] = {}
        self._earliest_due: datetime | None = None

    def observe(self, feed: str, event: EventEnvelope) -> None:
        """Note that ``feed``, and the node ``event`` names if any, were heard from."""
        self._heard(_FEED, feed, feed, event.event_time)
        node_id = getattr(event, _NODE, None)
        if node_id is not None:
            self._heard(_NODE, node_id, feed, event.event_time)

    def due(self, watermark: datetime) -> list[Finding]:
        """Return a finding for every source newly stale at ``watermark``.

        Sources are scanned only once the watermark passes the earliest moment one of
        them can become stale (a lower bound: hearing from a source only delays it).
        """
        if self._earliest_due is None or watermark <= self._earliest_due:
            return []
        findings: list[Finding] = []
        earliest: datetime | None = None
        for (kind, name), last in self._last.items():
            if last.reported:
                continue
            silence = watermark - last.at
            threshold = self._threshold(kind, name)
            if silence > threshold:
                last.reported = True
                findings.append(self._finding(kind, name, last, silence))
            elif earliest is None or last.at + threshold < earliest:
                earliest = last.at + threshold
        self._earliest_due = earliest
        return findings

    def _heard(self, kind: str, name: str, feed: str, at: datetime) -> None:
        last = self._last.get((kind, name))
        if last is None or at > last.at:
            self._last[kind, name] = _LastSeen(at, feed)
            if last is None or last.reported:
                self._count_deadline(at + self._threshold(kind, name))

    def _count_deadline(self, due: datetime) -> None:
        """Lower the earliest deadline for a source it did not cover yet.

        A source already covered only moves its own deadline later when heard from,
        so the earliest deadline stays a lower bound without recomputing it per event.
        """
        if self._earliest_due is None or due < self._earliest_due:
            self._earliest_due = due

    def _threshold(self, kind: str, name: str) -> timedelta:
        return self._feed_after(name) if kind == _FEED else self._node_after

    def _finding(self, kind: str, name: str, last: _LastSeen, silence: timedelta) -> Finding:
        what = f"feed {name}" if kind == _FEED else f"node {name} (last named on {last.feed})"
        return Finding(
            check=DqCheck.STALE_FEED,
            rule=f"silent_{kind}",
            severity=Severity.CRITICAL if kind == _FEED else Severity.WARNING,
            feed=last.feed,
            detail=f"no event from {what} since {last.at.isoformat()}: silent for {silence}, "
            f"threshold {self._threshold(kind, name)}",
            entity={kind: name, "last_event_time": last.at.isoformat()},
        )
