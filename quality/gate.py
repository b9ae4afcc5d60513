"""The in-stream data-quality gate: every check, applied to decoded events in order.

Plain Python without Bytewax: the dataflow keeps one gate as the state of a stateful
step and feeds it the events that passed contract validation (schema problems never
get here; they are dead-lettered when decoded).

Example:
    >>> from allocflow.models.codec import decode_event
    >>> from allocflow.models.topics import InputTopic
    >>> raw = (b'{"event_id":"e-1","event_type":"stock.snapshot","source":"wms",'
    ...        b'"event_time":"2026-03-02T06:00:00Z","node_id":"DC-NJ","sku":"A","on_hand":-3}')
    >>> gate = QualityGate()
    >>> event = decode_event(InputTopic.RESERVATIONS, raw)
    >>> result = gate.admit("reservations", event, raw)
    >>> result.passed, [alert.check.value for alert in result.alerts]
    (True, ['impossible_value'])
    >>> gate.admit("reservations", event, raw).passed, gate.deduplicated
    (False, 1)
"""

from dataclasses import dataclass
from datetime import datetime

from allocflow.models.dq_alerts import DqAlert
from allocflow.models.envelope import EventEnvelope
from allocflow.quality.alerts import Finding, build_alert
from allocflow.quality.duplicates import DuplicateCheck
from allocflow.quality.impossible import ImpossibleValueCheck
from allocflow.quality.lateness import check_lateness
from allocflow.quality.orphans import OrphanCheck, PendingOrphan
from allocflow.quality.settings import GateSettings
from allocflow.quality.staleness import StaleSourceCheck
from allocflow.quality.watermarks import Watermarks


@dataclass(frozen=True)
class GateResult:
    """What the gate decided about one event.

    Attributes:
        passed: False when the event is a duplicate and must be dropped.
        alerts: Alerts raised by this event, or fired because it advanced the watermark
            (orphan deadlines, stale sources).
    """

    passed: bool
    alerts: tuple[DqAlert, ...]


class QualityGate:
    """Runs the duplicate, lateness, impossible-value, orphan and stale-source checks."""

    def __init__(self, settings: GateSettings | None = None) -> None:
        """Start with empty state under ``settings`` (defaults when None)."""
        self.settings = settings or GateSettings()
        self._watermarks = Watermarks()
        self._duplicates = DuplicateCheck(self.settings.dedupe_window)
        self._impossible = ImpossibleValueCheck(self.settings.entity_memory)
        self._orphans = OrphanCheck(self.settings.orphan_grace, self.settings.entity_memory)
        self._stale = StaleSourceCheck(
            self.settings.stale_after,
            self.settings.stale_node_after,
            self.settings.feed_calendar,
            self.settings.node_calendar,
        )
        self.passed = 0
        self.deduplicated = 0

    def remembered_ids(self, feed: str) -> int:
        """Return how many event ids the duplicate check remembers for ``feed``."""
        return self._duplicates.remembered(feed)

    def admit(self, feed: str, event: EventEnvelope, raw: bytes) -> GateResult:
        """Judge the next event of ``feed``.

        Args:
            feed: The logical input topic the event came from.
            event: The decoded event.
            raw: Its message bytes, for alert samples.

        Returns:
            Whether the event passes (duplicates do not), and the alerts raised.
        """
        duplicate = self._duplicates.check(feed, event.event_id)
        if duplicate is not None:
            self.deduplicated += 1
            return GateResult(False, (self._alert(duplicate, self._clock(event), raw),))
        findings = [
            check_lateness(feed, event, self._watermarks.of(feed), self.settings.allowed_lateness),
            self._impossible.check(feed, event),
        ]
        self._orphans.observe(feed, event, raw)
        self._stale.observe(feed, event)
        self._watermarks.advance(feed, event.event_time)
        now = self._clock(event)
        alerts = [self._alert(finding, now, raw) for finding in findings if finding is not None]
        alerts += [self._orphan_alert(pending, now) for pending in self._orphans.due(now)]
        alerts += [self._alert(finding, now, None) for finding in self._stale.due(now)]
        self.passed += 1
        return GateResult(True, tuple(alerts))

    def finish(self) -> tuple[DqAlert, ...]:
        """Report every event still waiting for its parent: the input has ended.

        Each is detected at its deadline, as if the watermark had passed it.
        """
        return tuple(
            self._orphan_alert(pending, pending.deadline) for pending in self._orphans.drain()
        )

    def _clock(self, event: EventEnvelope) -> datetime:
        overall = self._watermarks.overall
        return event.event_time if overall is None else max(overall, event.event_time)

    def _orphan_alert(self, pending: PendingOrphan, detected_at: datetime) -> DqAlert:
        return self._alert(pending.finding, detected_at, pending.raw)

    def _alert(self, finding: Finding, detected_at: datetime, raw: bytes | None) -> DqAlert:
        return build_alert(finding, detected_at, raw, self.settings.sample_chars)
