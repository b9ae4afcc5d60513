"""Event-time deadlines of a lane's shipments: a heap, with rescheduling by replacement.

Scheduling a (shipment, kind) again replaces its previous deadline; the replaced heap
entry is skipped when it surfaces. Times are kept as POSIX seconds in the heap, which
compares much faster than aware datetimes.

Example:
    >>> from datetime import UTC, datetime, timedelta
    >>> noon = datetime(2026, 3, 2, 12, tzinfo=UTC)
    >>> deadlines = Deadlines()
    >>> deadlines.schedule("SH-1", "stall", noon)
    >>> deadlines.schedule("SH-1", "stall", noon + timedelta(hours=2))
    >>> deadlines.schedule("SH-2", "cutoff", noon + timedelta(hours=1))
    >>> [(s, k, at.hour) for at, s, k in deadlines.due(noon + timedelta(hours=3))]
    [('SH-2', 'cutoff', 13), ('SH-1', 'stall', 14)]
"""

import heapq
from collections.abc import Iterator
from datetime import datetime


class Deadlines:
    """At most one deadline per (shipment, kind); ``due`` yields them in time order."""

    def __init__(self) -> None:
        """Start with no deadline."""
        self._heap: list[tuple[float, str, str]] = []
        self._scheduled: dict[tuple[str, str], tuple[float, datetime]] = {}

    def schedule(self, shipment_id: str, kind: str, at: datetime) -> None:
        """Set the ``kind`` deadline of ``shipment_id`` to ``at``, replacing any earlier one."""
        seconds = at.timestamp()
        self._scheduled[(shipment_id, kind)] = (seconds, at)
        heapq.heappush(self._heap, (seconds, shipment_id, kind))

    def cancel(self, shipment_id: str, kinds: tuple[str, ...]) -> None:
        """Drop the ``kinds`` deadlines of ``shipment_id``."""
        for kind in kinds:
            self._scheduled.pop((shipment_id, kind), None)

    def due(self, now: datetime) -> Iterator[tuple[datetime, str, str]]:
        """Yield, and forget, (time, shipment, kind) of each deadline before ``now``.

        Deadlines scheduled while iterating are yielded too if they are before ``now``.
        """
        limit = now.timestamp()
        heap = self._heap
        while heap and heap[0][0] < limit:
            seconds, shipment_id, kind = heapq.heappop(heap)
            current = self._scheduled.get((shipment_id, kind))
            if current is None or current[0] != seconds:
                continue
            del self._scheduled[(shipment_id, kind)]
            yield current[1], shipment_id, kind
