"""The event-time screen of one input partition: no single event can reorder the others.

A partition's messages get their merge time from the screen. Whatever the partition
holds (late events, unreadable lines, genuine jumps), adding one event far ahead of
its neighbours must change nothing for the other messages: same order, same merge
times, same verdicts; the added event is quarantined with the merge time of its
neighbours.
"""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from allocflow.connectors.event_time_screen import EventTimeScreen, Screened
from allocflow.models.event_time import EventTimeRange

pytestmark = pytest.mark.property

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
LIMITS = EventTimeRange(max_skew=timedelta(days=7))

Item = tuple[str, datetime | None]


def _screen(items: list[Item]) -> list[Screened[str]]:
    screen = EventTimeScreen[str](LIMITS)
    out: list[Screened[str]] = []
    for name, moment in items:
        out += screen.push(moment, name)
    return out + screen.finish()


@st.composite
def partitions(draw: st.DrawFn) -> list[Item]:
    """A partition: steps forward of minutes to days (a gap now and then), some late
    events, some unreadable lines."""
    count = draw(st.integers(2, 40))
    moment = T0 + timedelta(minutes=draw(st.integers(0, 10_000)))
    items: list[Item] = []
    for n in range(count):
        kind = draw(st.sampled_from(["step", "step", "step", "late", "unreadable", "gap"]))
        if kind == "unreadable":
            items.append((f"m{n}", None))
            continue
        if kind == "late":
            items.append((f"m{n}", moment - timedelta(hours=draw(st.integers(1, 300)))))
            continue
        most = 20 * 24 * 60 if kind == "gap" else 24 * 60
        moment += timedelta(minutes=draw(st.integers(0, most)))
        items.append((f"m{n}", moment))
    return items


@given(
    items=partitions(),
    data=st.data(),
    ahead=st.sampled_from([timedelta(days=8), timedelta(days=400), timedelta(days=26_000)]),
)
def test_one_event_far_ahead_changes_nothing_for_the_others(
    items: list[Item], data: st.DataObject, ahead: timedelta
) -> None:
    readable = [moment for _, moment in items if moment is not None]
    # Before a readable event (not at the end: the last event of a partition can
    # reorder nothing, so an unconfirmed jump there is accepted).
    slots = [n for n in range(len(items)) if any(moment is not None for _, moment in items[n:])]
    if not readable or not slots:
        return
    at = data.draw(st.sampled_from(slots))
    future = max(readable) + ahead
    with_outlier = [*items[:at], ("future", future), *items[at:]]

    plain = _screen(items)
    screened = _screen(with_outlier)

    others = [verdict for verdict in screened if verdict.item != "future"]
    (outlier,) = [verdict for verdict in screened if verdict.item == "future"]
    assert others == plain
    assert outlier.problem is not None
    assert [verdict.item for verdict in screened] == [name for name, _ in with_outlier]
    before = screened[: screened.index(outlier)]
    assert outlier.merge_time == (before[-1].merge_time if before else None)


@given(items=partitions())
def test_merge_times_never_decrease_and_every_message_comes_out_once_in_order(
    items: list[Item],
) -> None:
    screened = _screen(items)
    assert [verdict.item for verdict in screened] == [name for name, _ in items]
    times = [verdict.merge_time for verdict in screened if verdict.merge_time is not None]
    assert times == sorted(times)
    leading = 0
    while leading < len(screened) and screened[leading].merge_time is None:
        leading += 1
    assert all(verdict.merge_time is not None for verdict in screened[leading:])
