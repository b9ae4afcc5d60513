"""The time ranges the contract accepts: every input timestamp, and event times in a stream.

Two limits apply to input events:

* Every timestamp of an input event (``event_time``, ``promised_date``,
  ``promised_delivery``, ``eta``, ``dispatch_cutoff``) must lie in
  ``[CONTRACT_EARLIEST, CONTRACT_LATEST)``; the models reject anything else as a
  schema violation, so no accepted time overflows date arithmetic downstream.
* An ``event_time`` must also lie in the :class:`EventTimeRange` of a run (settings;
  by default the contract's range, which a deployment may narrow), and must not jump
  more than ``max_skew`` ahead of what its partition (a file, or a Kafka partition)
  has shown so far, unless the partition's next events follow it. An event outside
  it is dead-lettered as
  ``EVENT_TIME_OUT_OF_RANGE`` and never moves the merge of the inputs.

Example:
    >>> limits = EventTimeRange(earliest=datetime(2026, 1, 1, tzinfo=UTC))
    >>> limits.problem(datetime(2025, 12, 31, tzinfo=UTC))
    'event_time 2025-12-31T00:00:00+00:00 is before the earliest accepted 2026-01-01T00:00:00+00:00'
    >>> limits.problem(datetime(2026, 3, 2, tzinfo=UTC)) is None
    True
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from allocflow.models.limits import MAX_DURATION

CONTRACT_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
"""No timestamp of an input event is earlier."""

CONTRACT_LATEST = datetime(2200, 1, 1, tzinfo=UTC)
"""Every timestamp of an input event is earlier than this."""

DEFAULT_EARLIEST = CONTRACT_EARLIEST
"""Default earliest accepted ``event_time``: the contract's."""

DEFAULT_MAX_SKEW = timedelta(days=7)
"""Default largest jump of ``event_time`` ahead of its partition's latest event time."""

MAX_SKEW_LIMIT = MAX_DURATION
"""The largest ``max_skew`` a run accepts (10 years, as every duration setting)."""


@dataclass(frozen=True)
class EventTimeRange:
    """The event times a run accepts into the merge of its inputs.

    Attributes:
        earliest: Earliest accepted ``event_time`` (inclusive).
        latest: Every accepted ``event_time`` is earlier than this.
        max_skew: How far an ``event_time`` may jump ahead of the latest event time
            of its partition before the jump needs the partition's next event to
            confirm it.

    Raises:
        ValueError: A bound is naive or outside the contract's range, ``earliest``
            is not before ``latest``, or ``max_skew`` is not in (0, 3650 days].
    """

    earliest: datetime = DEFAULT_EARLIEST
    latest: datetime = CONTRACT_LATEST
    max_skew: timedelta = DEFAULT_MAX_SKEW

    def __post_init__(self) -> None:
        for name in ("earliest", "latest"):
            bound: datetime = getattr(self, name)
            if bound.utcoffset() is None:
                raise ValueError(f"event_time_{name} needs a UTC offset (got {bound})")
            if not CONTRACT_EARLIEST <= bound <= CONTRACT_LATEST:
                raise ValueError(
                    f"event_time_{name} must lie between {CONTRACT_EARLIEST.isoformat()} and "
                    f"{CONTRACT_LATEST.isoformat()} (got {bound.isoformat()})"
                )
        if self.earliest >= self.latest:
            raise ValueError(
                f"event_time_earliest ({self.earliest.isoformat()}) must be before "
                f"event_time_latest ({self.latest.isoformat()})"
            )
        if not timedelta(0) < self.max_skew <= MAX_SKEW_LIMIT:
            raise ValueError(
                f"event_time_max_skew_s must be above 0 and at most {MAX_SKEW_LIMIT.days} days "
                f"(got {self.max_skew.total_seconds()} s)"
            )

    def problem(self, event_time: datetime) -> str | None:
        """Return why ``event_time`` is outside the absolute range, None if inside."""
        if event_time < self.earliest:
            return (
                f"event_time {event_time.isoformat()} is before the earliest accepted "
                f"{self.earliest.isoformat()}"
            )
        if event_time >= self.latest:
            return (
                f"event_time {event_time.isoformat()} is not before the latest accepted "
                f"{self.latest.isoformat()}"
            )
        return None


UNBOUNDED_EVENT_TIMES = EventTimeRange(CONTRACT_EARLIEST, CONTRACT_LATEST, MAX_SKEW_LIMIT)
"""The widest range a run accepts: the contract's, with the largest skew."""
