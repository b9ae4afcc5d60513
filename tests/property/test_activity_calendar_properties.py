"""Invariants of expected-activity calendars, and of the stale check that counts by them."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allocflow.models.activity_calendar import HORIZON, ActivityCalendar
from allocflow.models.codec import encode_event
from allocflow.models.dq_alerts import DqCheck
from allocflow.models.envelope import Source
from allocflow.models.inventory import StockSnapshot
from allocflow.quality.gate import QualityGate
from allocflow.quality.settings import GateSettings

pytestmark = pytest.mark.property

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_ZONES = ("UTC", "Europe/Berlin", "America/Chicago", "Asia/Kolkata", "Australia/Lord_Howe")
T0 = datetime(2026, 3, 20, tzinfo=UTC)  # daylight saving starts within the next weeks


@st.composite
def windows(draw: st.DrawFn) -> str:
    first, last = draw(st.sampled_from(_DAYS)), draw(st.sampled_from(_DAYS))
    start = draw(st.integers(0, 23 * 60 + 59))
    end = draw(st.integers(1, 24 * 60).filter(lambda minutes: minutes != start))
    return f"{first}-{last} {start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"


calendars = st.builds(
    lambda parts, zone: ActivityCalendar.parse(", ".join(parts) + f" {zone}"),
    st.lists(windows(), min_size=1, max_size=3),
    st.sampled_from(_ZONES),
)
instants = st.integers(0, 40 * 24 * 60).map(lambda minutes: T0 + timedelta(minutes=minutes))


@settings(max_examples=150, deadline=None)
@given(calendars, instants, instants, instants)
def test_active_time_adds_up_and_never_exceeds_elapsed_time(
    calendar: ActivityCalendar, a: datetime, b: datetime, c: datetime
) -> None:
    a, b, c = sorted((a, b, c))
    assert calendar.active_between(a, c) == calendar.active_between(a, b) + calendar.active_between(
        b, c
    )
    assert timedelta(0) <= calendar.active_between(a, c) <= c - a
    assert ActivityCalendar.parse(str(calendar)) == calendar


@settings(max_examples=150, deadline=None)
@given(calendars, instants, st.integers(1, 72 * 60).map(lambda m: timedelta(minutes=m)))
def test_the_deadline_is_where_the_active_time_reaches_the_limit(
    calendar: ActivityCalendar, start: datetime, limit: timedelta
) -> None:
    deadline = calendar.after_active(start, limit)
    if deadline is None:  # a rarely active calendar: never within the horizon
        assert calendar.active_between(start, start + HORIZON) < limit
        return
    assert calendar.active_between(start, deadline) == limit
    assert calendar.active_at(deadline - timedelta(microseconds=1))


@settings(max_examples=60, deadline=None)
@given(calendars, st.lists(st.integers(1, 36 * 60), min_size=1, max_size=30))
def test_a_node_is_reported_exactly_when_its_active_silence_passes_the_limit(
    calendar: ActivityCalendar, gaps: list[int]
) -> None:
    limit = timedelta(hours=3)
    gate = QualityGate(
        GateSettings(
            stale_feed_after=timedelta(days=3000),
            stale_feed_after_by_feed={},
            stale_node_after=limit,
            active_hours_by_node={"*": calendar},
        )
    )
    moment, reported = T0, 0
    for number, gap in enumerate(gaps):
        moment += timedelta(minutes=gap)
        # the heartbeat node names the clock forward; DC-NJ is named only at the start
        event = StockSnapshot(
            event_id=f"e-{number}",
            event_time=moment,
            source=Source.WMS,
            node_id="DC-HB" if number else "DC-NJ",
            sku="SKU-1",
            on_hand=1,
        )
        alerts = gate.admit("reservations", event, encode_event(event)).alerts
        reported += sum(
            a.check is DqCheck.STALE_FEED and a.entity.get("node_id") == "DC-NJ" for a in alerts
        )
    first = T0 + timedelta(minutes=gaps[0])
    assert reported == int(calendar.active_between(first, moment) > limit)
