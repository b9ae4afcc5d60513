"""Stale sources: a feed, or a warehouse (node), silent for too long in event time.

A source is stale when, between its last event and the gates' watermark (the latest
event time over all feeds), it was silent for more than its threshold **of expected-
active time**: only the hours its activity calendar
(:class:`~allocflow.models.activity_calendar.ActivityCalendar`) marks active count.
A feed silent all night but heard from again in the morning is quiet, as expected;
a feed silent for its threshold of active hours is stale. The default calendar is
always active, so silence is then plain elapsed time. Each feed has its own threshold
(an order feed is quiet over a weekend, a carrier feed never is); nodes share one.
A source is reported once, and can be reported again after an event from it arrives.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from allocflow.models.activity_calendar import ActivityCalendar
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
    deadline: datetime | None = None
    """When its silence reaches the threshold of active time; set on the first scan."""
    never: bool = False
    """True when that moment is beyond the calendar's horizon."""


def _always_active(name: str) -> ActivityCalendar:
    del name
    return ActivityCalendar()


class StaleSourceCheck:
    """Remembers when each feed and node was last heard from."""

    def __init__(
        self,
        feed_after: Callable[[str], timedelta],
        node_after: timedelta,
        feed_calendar: Callable[[str], ActivityCalendar] = _always_active,
        node_calendar: Callable[[str], ActivityCalendar] = _always_active,
    ) -> None:
        """Report a feed silent for ``feed_after(feed)``, a node silent for ``node_after``.

        Silence counts only in the hours ``feed_calendar(feed)`` (``node_calendar(node)``)
        marks active; by default every hour.
        """
        self._feed_after = feed_after
        self._node_after = node_after
        self._feed_calendar = feed_calendar
        self._node_calendar = node_calendar
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
        them can become stale (a lower bound: hearing from a source only delays it, and
        its elapsed threshold comes no later than its threshold of active time).
        """
        if self._earliest_due is None or watermark <= self._earliest_due:
            return []
        findings: list[Finding] = []
        earliest: datetime | None = None
        for (kind, name), last in self._last.items():
            if last.reported:
                continue
            deadline = self._deadline(kind, name, last)
            if deadline is None:
                continue
            if watermark > deadline:
                last.reported = True
                findings.append(self._finding(kind, name, last, watermark))
            elif earliest is None or deadline < earliest:
                earliest = deadline
        self._earliest_due = earliest
        return findings

    def _deadline(self, kind: str, name: str, last: _LastSeen) -> datetime | None:
        """When ``last``'s silence reaches its threshold of active time (None: never)."""
        if last.deadline is None and not last.never:
            last.deadline = self._calendar(kind, name).after_active(
                last.at, self._threshold(kind, name)
            )
            last.never = last.deadline is None
        return last.deadline

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

    def _calendar(self, kind: str, name: str) -> ActivityCalendar:
        return self._feed_calendar(name) if kind == _FEED else self._node_calendar(name)

    def _finding(self, kind: str, name: str, last: _LastSeen, watermark: datetime) -> Finding:
        what = f"feed {name}" if kind == _FEED else f"node {name} (last named on {last.feed})"
        threshold, calendar = self._threshold(kind, name), self._calendar(kind, name)
        silence = watermark - last.at
        if calendar.always:
            silent = f"silent for {silence}"
        else:
            active = calendar.active_between(last.at, watermark)
            silent = f"silent for {active} of its active hours ({calendar}), {silence} in all"
        entity = {kind: name, "last_event_time": last.at.isoformat()}
        if not calendar.always:
            entity["active_hours"] = str(calendar)
        return Finding(
            check=DqCheck.STALE_FEED,
            rule=f"silent_{kind}",
            severity=Severity.CRITICAL if kind == _FEED else Severity.WARNING,
            feed=last.feed,
            detail=f"no event from {what} since {last.at.isoformat()}: {silent}, "
            f"threshold {threshold}",
            entity=entity,
        )
