"""Screening the event times of one input partition before they join the merge.

Both inputs (:mod:`allocflow.connectors.stream_sources` for files,
:mod:`allocflow.connectors.aligned_kafka` for Kafka) merge their partitions by each
partition's running maximum event time. One event dated far in the future would
push that maximum, and so every later message of its partition, behind every other
partition. An :class:`EventTimeScreen` per partition keeps such an event out:

* an ``event_time`` outside the run's absolute range
  (:class:`~allocflow.models.event_time.EventTimeRange`) is quarantined at once;
* an ``event_time`` more than ``max_skew`` ahead of the partition's running maximum
  (or the partition's first event, which has nothing to compare with) is a *jump*:
  it is held, with the unreadable messages after it, until the partition's next
  readable event. If that event is at most ``max_skew`` earlier than the jump, the
  partition has really moved on and the jump is accepted; otherwise the jump was a
  lone outlier and is quarantined. A jump still held at the end of the partition
  is accepted: nothing follows it that it could reorder.

A quarantined event keeps the running maximum as its merge time (as a late event
does), so it comes out beside its neighbours, and never moves the maximum. The
dataflow dead-letters it as ``EVENT_TIME_OUT_OF_RANGE``. The screen depends only on
the partition's own messages, so a Kafka backlog and the same messages in a file
are screened alike.

Example:
    >>> from datetime import UTC, datetime
    >>> from allocflow.models.event_time import EventTimeRange
    >>> screen = EventTimeScreen[str](EventTimeRange())
    >>> day = lambda d: datetime(2026, 3, d, tzinfo=UTC)
    >>> screen.push(day(1), "a")  # the first event waits for the next one
    []
    >>> [(s.item, s.merge_time.day) for s in screen.push(day(2), "b")]
    [('a', 1), ('b', 2)]
    >>> screen.push(datetime(2099, 1, 1, tzinfo=UTC), "future")
    []
    >>> [(s.item, s.merge_time.day, s.problem is None) for s in screen.push(day(3), "c")]
    [('future', 2, False), ('c', 3, True)]
    >>> screen.finish()
    []
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, NamedTuple, TypeVar

from allocflow.models.event_time import EventTimeRange

T = TypeVar("T")


class Screened(NamedTuple, Generic[T]):
    """A message the screen let through, with its merge time and its verdict.

    Attributes:
        merge_time: The partition's running maximum event time including this
            message; None before the partition's first accepted event time.
        item: The message.
        problem: Why its ``event_time`` is out of range (it is to be quarantined);
            None when it is accepted or has no readable ``event_time``.
    """

    merge_time: datetime | None
    item: T
    problem: str | None


@dataclass
class _Pending(Generic[T]):
    """A message held behind an undecided jump."""

    item: T
    event_time: datetime | None
    refuted_by: str | None = None


class EventTimeScreen(Generic[T]):
    """The screen of one partition; see the module documentation.

    Messages come out in the order they were pushed, so a partition keeps its order.
    While jumps are undecided, every message after the first of them is held. A
    message more than the skew ahead of an undecided jump is a jump of its own
    (it neither confirms nor refutes the one before), so two outliers in a row are
    judged one by one too: each needs a later event near it.

    Args:
        limits: The accepted range and skew.
    """

    def __init__(self, limits: EventTimeRange) -> None:
        self._limits = limits
        self.running_max: datetime | None = None
        self._pending: list[_Pending[T]] = []
        self._jumps: list[_Pending[T]] = []

    @property
    def held(self) -> list[T]:
        """Messages held back behind an undecided jump (the jump first), oldest first."""
        return [pending.item for pending in self._pending]

    @property
    def jump_time(self) -> datetime | None:
        """The event time of the earliest undecided jump, if one is held."""
        return self._jumps[0].event_time if self._jumps else None

    def push(self, event_time: datetime | None, item: T) -> list[Screened[T]]:
        """Take the partition's next message; return the messages it lets through.

        Args:
            event_time: The message's ``event_time``; None when unreadable.
            item: The message.

        Returns:
            The messages decided by this one, in partition order; empty while a
            jump waits for the partition's next readable event.
        """
        if not self._jumps:
            return self._admit(event_time, item)
        if event_time is None or self._limits.problem(event_time) is not None:
            self._pending.append(_Pending(item, event_time))
            return []
        skew = self._limits.max_skew
        evidence = f"the next event is at {event_time.isoformat()}"
        while self._jumps and event_time < _time(self._jumps[-1]) - skew:
            self._jumps.pop().refuted_by = evidence
        if self._jumps and event_time > _time(self._jumps[-1]) + skew:
            jump = _Pending(item, event_time)
            self._jumps.append(jump)
            self._pending.append(jump)
            return []
        return self._flush() + self._admit(event_time, item)

    def finish(self) -> list[Screened[T]]:
        """End the partition: accept the jumps still held; return what was held."""
        return self._flush()

    def settle(self, reference: datetime | None) -> list[Screened[T]]:
        """Decide held jumps without the partition's next event (a live input gone quiet).

        Args:
            reference: The latest event time of the other partitions; None if they
                have none. A jump is accepted when it is at most ``max_skew`` ahead
                of it (the rest of the stream is there too) or when there is none.

        Returns:
            What was held, decided; empty when nothing was.
        """
        if reference is not None:
            evidence = f"the other partitions are at {reference.isoformat()}"
            while self._jumps and reference < _time(self._jumps[-1]) - self._limits.max_skew:
                self._jumps.pop().refuted_by = evidence
        return self._flush()

    def _admit(self, event_time: datetime | None, item: T) -> list[Screened[T]]:
        if event_time is None:
            return [Screened(self.running_max, item, None)]
        problem = self._limits.problem(event_time)
        if problem is not None:
            return [Screened(self.running_max, item, problem)]
        if self.running_max is None or event_time > self.running_max + self._limits.max_skew:
            jump = _Pending(item, event_time)
            self._jumps.append(jump)
            self._pending.append(jump)
            return []
        self.running_max = max(self.running_max, event_time)
        return [Screened(self.running_max, item, None)]

    def _flush(self) -> list[Screened[T]]:
        """Let out everything held, in order; the jumps not refuted are accepted."""
        out: list[Screened[T]] = []
        for pending in self._pending:
            moment = pending.event_time
            problem = self._problem_of(pending)
            if problem is None and moment is not None:
                self.running_max = max(self.running_max or moment, moment)
            out.append(Screened(self.running_max, pending.item, problem))
        self._pending = []
        self._jumps = []
        return out

    def _problem_of(self, pending: _Pending[T]) -> str | None:
        """Why a held message is quarantined: a refuted jump, or out of the range."""
        if pending.event_time is None:
            return None
        if pending.refuted_by is not None:
            return self._jump_problem(pending.event_time, pending.refuted_by)
        return self._limits.problem(pending.event_time)

    def _jump_problem(self, jump_time: datetime, evidence: str) -> str:
        skew = _duration(self._limits.max_skew)
        if self.running_max is None:
            return (
                f"event_time {jump_time.isoformat()}, among the first of its partition, is "
                f"more than {skew} ahead of the events after it ({evidence})"
            )
        return (
            f"event_time {jump_time.isoformat()} jumps more than {skew} ahead of its "
            f"partition's latest event time {self.running_max.isoformat()} and the events "
            f"after it do not follow ({evidence})"
        )


def _time(pending: _Pending[T]) -> datetime:
    if pending.event_time is None:
        raise ValueError("a jump always has an event time")
    return pending.event_time


def _duration(span: timedelta) -> str:
    seconds = span.total_seconds()
    if seconds % 86_400 == 0:
        return f"{seconds / 86_400:g} days"
    return f"{seconds:g} s"
