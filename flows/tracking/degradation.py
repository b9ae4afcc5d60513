"""A lane's degradation alert: its recent on-time rate against a threshold and its baseline.

Example:
    >>> from datetime import UTC, datetime, timedelta
    >>> from allocflow.flows.tracking.settings import TrackingSettings
    >>> settings = TrackingSettings(min_lane_deliveries=4, on_time_threshold=0.8)
    >>> history = LaneHistory(settings.transit_window, settings.baseline_window)
    >>> start = datetime(2026, 3, 2, tzinfo=UTC)
    >>> for hour in range(4):
    ...     history.record(start + timedelta(hours=hour), 36_000.0, hour == 0)
    >>> watch = DegradationWatch(settings, "CARR-A", "DC-NJ>west")
    >>> [alert.kind.value for alert in watch.judge(history, start + timedelta(hours=4))]
    ['LANE_DEGRADED']
"""

from datetime import datetime

from allocflow.flows.tracking.lane_history import LaneHistory
from allocflow.flows.tracking.settings import TrackingSettings
from allocflow.models.ids import stable_id
from allocflow.models.route_alerts import RouteAlert, RouteAlertKind
from allocflow.models.vocabulary import Severity

_HOUR_S = 3600.0


class DegradationWatch:
    """Opens ``LANE_DEGRADED`` when the lane's on-time rate drops, resolves it on recovery.

    The rate is judged against the higher of ``on_time_threshold`` and the baseline
    rate minus ``degradation_margin`` (the baseline counts once it has
    ``min_lane_deliveries`` deliveries); recovery needs ``recovery_margin`` above it.
    """

    def __init__(self, settings: TrackingSettings, carrier_id: str, lane: str) -> None:
        """Watch the lane ``lane`` of ``carrier_id``."""
        self._settings = settings
        self._carrier_id = carrier_id
        self._lane = lane
        self._open: RouteAlert | None = None
        self._episodes = 0

    def judge(self, history: LaneHistory, now: datetime) -> list[RouteAlert]:
        """Return the alert the lane's current rates call for, if any."""
        settings = self._settings
        on_time, deliveries = history.recent_on_time()
        if deliveries < settings.min_lane_deliveries:
            return []
        rate = on_time / deliveries
        baseline = self._baseline(history)
        limit = settings.on_time_threshold
        if baseline is not None:
            limit = max(limit, baseline - settings.degradation_margin)
        if self._open is None and rate < limit:
            return [self._degraded(history, now, rate, baseline, deliveries)]
        if self._open is not None and rate >= limit + settings.recovery_margin:
            return [self._recovered(self._open, now, rate, deliveries)]
        return []

    def _baseline(self, history: LaneHistory) -> float | None:
        on_time, deliveries = history.baseline_on_time()
        if deliveries < self._settings.min_lane_deliveries:
            return None
        return on_time / deliveries

    def _degraded(
        self,
        history: LaneHistory,
        now: datetime,
        rate: float,
        baseline: float | None,
        deliveries: int,
    ) -> RouteAlert:
        self._episodes += 1
        median = (history.transit_quantile(0.5) or 0.0) / _HOUR_S
        p90 = (history.transit_quantile(0.9) or 0.0) / _HOUR_S
        normal = "no baseline yet" if baseline is None else f"baseline {baseline:.0%}"
        self._open = RouteAlert(
            alert_id=stable_id(
                "ra",
                self._carrier_id,
                self._lane,
                RouteAlertKind.LANE_DEGRADED,
                str(self._episodes),
            ),
            kind=RouteAlertKind.LANE_DEGRADED,
            severity=Severity.CRITICAL,
            carrier_id=self._carrier_id,
            lane=self._lane,
            detected_at=now,
            detail=f"on-time rate {rate:.0%} over the last {deliveries} deliveries ({normal}, "
            f"threshold {self._settings.on_time_threshold:.0%}); transit p50 {median:.1f} h, "
            f"p90 {p90:.1f} h",
        )
        return self._open

    def _recovered(
        self, opened: RouteAlert, now: datetime, rate: float, deliveries: int
    ) -> RouteAlert:
        self._open = None
        return opened.model_copy(
            update={
                "alert_id": stable_id("ra", RouteAlertKind.RESOLVED, opened.alert_id),
                "kind": RouteAlertKind.RESOLVED,
                "severity": Severity.INFO,
                "detected_at": max(now, opened.detected_at),
                "resolves_alert_id": opened.alert_id,
                "detail": f"on-time rate back to {rate:.0%} over the last {deliveries} deliveries",
            }
        )
