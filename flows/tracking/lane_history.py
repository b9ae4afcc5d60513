"""A carrier lane's recent deliveries: transit-time distribution, prediction, on-time rates.

Deliveries are kept by delivery time in two windows: the *recent* window (the last
``transit_window`` of event time), which predicts transit times and gives the rolling
on-time rate, and the *baseline* window before it, whose on-time rate is the lane's own
normal.

Example:
    >>> from datetime import UTC, datetime, timedelta
    >>> start = datetime(2026, 3, 2, tzinfo=UTC)
    >>> history = LaneHistory(timedelta(hours=72), timedelta(days=7))
    >>> for hours in (10, 12, 14, 30):
    ...     history.record(start + timedelta(hours=hours), hours * 3600.0, hours < 20)
    >>> history.predict_transit(0.0, 0.5, min_samples=4) / 3600
    14.0
    >>> history.predict_transit(13 * 3600.0, 0.5, min_samples=4) / 3600
    30.0
    >>> history.recent_on_time()
    (3, 4)
"""

from bisect import bisect_left, bisect_right, insort
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from allocflow.flows.tracking.moments import before


@dataclass(frozen=True, order=True)
class Delivery:
    """One delivered shipment on the lane.

    Attributes:
        delivered_at: Event time of delivery.
        transit_s: Seconds from carrier pickup (or dispatch) to delivery.
        on_time: Delivered no later than promised.
    """

    delivered_at: datetime
    transit_s: float
    on_time: bool


class LaneHistory:
    """Deliveries of one lane over the recent and baseline windows."""

    def __init__(self, transit_window: timedelta, baseline_window: timedelta) -> None:
        """Keep ``transit_window`` of recent deliveries and ``baseline_window`` before it."""
        self._transit_window = transit_window
        self._baseline_window = baseline_window
        self._recent: list[Delivery] = []
        self._transits: list[float] = []
        self._recent_on_time = 0
        self._baseline: deque[Delivery] = deque()
        self._baseline_on_time = 0

    def record(self, delivered_at: datetime, transit_s: float, on_time: bool) -> None:
        """Add a delivery; then slide the windows to end at ``delivered_at`` or later."""
        delivery = Delivery(delivered_at, transit_s, on_time)
        insort(self._recent, delivery)
        insort(self._transits, transit_s)
        self._recent_on_time += on_time
        self.advance(delivered_at)

    def advance(self, now: datetime) -> None:
        """Move deliveries older than the recent window to the baseline, and drop expired ones."""
        recent_start = before(now, self._transit_window)
        while self._recent and self._recent[0].delivered_at < recent_start:
            self._to_baseline(self._recent.pop(0))
        baseline_start = before(recent_start, self._baseline_window)
        while self._baseline and self._baseline[0].delivered_at < baseline_start:
            self._baseline_on_time -= self._baseline.popleft().on_time

    def recent_on_time(self) -> tuple[int, int]:
        """Return (on-time deliveries, deliveries) of the recent window."""
        return self._recent_on_time, len(self._recent)

    def baseline_on_time(self) -> tuple[int, int]:
        """Return (on-time deliveries, deliveries) of the baseline window."""
        return self._baseline_on_time, len(self._baseline)

    def transit_quantile(self, quantile: float) -> float | None:
        """Return the ``quantile`` of recent transit seconds (nearest rank), None if none."""
        if not self._transits:
            return None
        return self._transits[_rank(quantile, len(self._transits))]

    def predict_transit(self, elapsed_s: float, quantile: float, min_samples: int) -> float | None:
        """Predict the whole transit of a shipment that has travelled ``elapsed_s`` so far.

        The prediction is the ``quantile`` of the recent transits longer than
        ``elapsed_s``; a shipment already slower than every one of them is predicted
        to arrive now (``elapsed_s``).

        Returns:
            Seconds of transit, or None with fewer than ``min_samples`` recent deliveries.
        """
        if len(self._transits) < min_samples:
            return None
        return max(
            elapsed_s, self._tail_quantile(bisect_right(self._transits, elapsed_s), quantile)
        )

    def elapsed_when_late(
        self, elapsed_s: float, budget_s: float, quantile: float, min_samples: int
    ) -> float | None:
        """Return the travelled time after which the prediction first exceeds ``budget_s``.

        The prediction only grows with the elapsed time, so this is the deadline at
        which a shipment on time now becomes at risk, if the distribution stays as it is.

        Returns:
            Seconds travelled (a recent transit time: the prediction exceeds the budget
            once the shipment is slower than it), or None if the prediction exceeds the
            budget only once the elapsed time itself does, or cannot be made.
        """
        count = len(self._transits)
        if count < min_samples:
            return None
        low, high = bisect_right(self._transits, elapsed_s), count
        while low < high:
            middle = (low + high) // 2
            if self._tail_quantile(middle, quantile) > budget_s:
                high = middle
            else:
                low = middle + 1
        if low in (0, count):
            return None
        return self._transits[low - 1]

    def _tail_quantile(self, start: int, quantile: float) -> float:
        """Return the ``quantile`` of the sorted transits from index ``start`` (-inf if none)."""
        size = len(self._transits) - start
        if size <= 0:
            return float("-inf")
        return self._transits[start + _rank(quantile, size)]

    def _to_baseline(self, delivery: Delivery) -> None:
        del self._transits[bisect_left(self._transits, delivery.transit_s)]
        self._recent_on_time -= delivery.on_time
        self._baseline.append(delivery)
        self._baseline_on_time += delivery.on_time


def _rank(quantile: float, size: int) -> int:
    """Index of the nearest-rank ``quantile`` among ``size`` sorted values."""
    return min(size - 1, int(quantile * size))
