"""The event-time screen of one partition and the accepted event-time range."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from allocflow.connectors.event_time_screen import EventTimeScreen, Screened
from allocflow.models.event_time import CONTRACT_LATEST, EventTimeRange

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
FUTURE = datetime(2099, 6, 1, tzinfo=UTC)


def _day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def _run(
    items: list[tuple[str, datetime | None]], limits: EventTimeRange | None = None
) -> list[Screened[str]]:
    screen = EventTimeScreen[str](limits or EventTimeRange())
    out: list[Screened[str]] = []
    for name, moment in items:
        out += screen.push(moment, name)
    return out + screen.finish()


def _verdicts(screened: list[Screened[str]]) -> list[tuple[str, datetime | None, bool]]:
    return [(s.item, s.merge_time, s.problem is None) for s in screened]


def test_a_lone_far_future_event_is_quarantined_at_its_neighbours_time() -> None:
    out = _run([("a", _day(0)), ("b", _day(1)), ("x", FUTURE), ("c", _day(1.5)), ("d", _day(2))])
    assert _verdicts(out) == [
        ("a", _day(0), True),
        ("b", _day(1), True),
        ("x", _day(1), False),
        ("c", _day(1.5), True),
        ("d", _day(2), True),
    ]
    problem = out[2].problem
    assert problem is not None
    assert "2099-06-01T00:00:00+00:00 jumps more than 7 days ahead" in problem
    assert "the next event is at 2026-03-03T18:00:00+00:00" in problem


def test_a_far_future_first_event_is_quarantined_too() -> None:
    out = _run([("x", FUTURE), ("a", _day(0)), ("b", _day(1))])
    assert _verdicts(out) == [("x", None, False), ("a", _day(0), True), ("b", _day(1), True)]
    assert "among the first of its partition" in (out[0].problem or "")


def test_two_outliers_in_a_row_are_both_quarantined() -> None:
    later = datetime(2150, 1, 1, tzinfo=UTC)
    out = _run([("a", _day(0)), ("x", FUTURE), ("y", later), ("b", _day(1))])
    assert _verdicts(out) == [
        ("a", _day(0), True),
        ("x", _day(0), False),
        ("y", _day(0), False),
        ("b", _day(1), True),
    ]


def test_a_genuine_gap_is_accepted_when_the_next_events_follow_it() -> None:
    out = _run([("a", _day(0)), ("after-gap", _day(20)), ("late", _day(19)), ("b", _day(21))])
    assert _verdicts(out) == [
        ("a", _day(0), True),
        ("after-gap", _day(20), True),
        ("late", _day(20), True),
        ("b", _day(21), True),
    ]


def test_a_sparse_partition_of_monthly_events_loses_nothing() -> None:
    out = _run([(f"m{n}", _day(30 * n)) for n in range(6)])
    assert all(s.problem is None for s in out)
    assert [s.merge_time for s in out] == [_day(30 * n) for n in range(6)]


def test_a_jump_at_the_end_of_the_partition_is_accepted() -> None:
    out = _run([("a", _day(0)), ("last", _day(40)), ("unreadable", None)])
    assert _verdicts(out) == [
        ("a", _day(0), True),
        ("last", _day(40), True),
        ("unreadable", _day(40), True),
    ]


def test_unreadable_messages_behind_a_jump_keep_their_place() -> None:
    out = _run([("a", _day(0)), ("x", FUTURE), ("u", None), ("b", _day(1))])
    assert _verdicts(out) == [
        ("a", _day(0), True),
        ("x", _day(0), False),
        ("u", _day(0), True),
        ("b", _day(1), True),
    ]


def test_times_outside_the_absolute_range_are_quarantined_at_once() -> None:
    limits = EventTimeRange(
        earliest=datetime(2020, 1, 1, tzinfo=UTC), latest=datetime(2030, 1, 1, tzinfo=UTC)
    )
    screen = EventTimeScreen[str](limits)
    assert screen.push(_day(0), "a") == []
    assert _verdicts(screen.push(_day(1), "b")) == [("a", _day(0), True), ("b", _day(1), True)]
    old = screen.push(datetime(2019, 12, 31, 23, tzinfo=UTC), "old")
    late = screen.push(datetime(2030, 1, 1, tzinfo=UTC), "too-late")
    assert _verdicts(old + late) == [("old", _day(1), False), ("too-late", _day(1), False)]
    assert "before the earliest accepted 2020-01-01T00:00:00+00:00" in (old[0].problem or "")
    assert "not before the latest accepted 2030-01-01T00:00:00+00:00" in (late[0].problem or "")


def test_a_quiet_live_partition_settles_its_jump_against_the_others() -> None:
    near = EventTimeScreen[str](EventTimeRange())
    near.push(_day(0), "a")
    assert _verdicts(near.settle(_day(3))) == [("a", _day(0), True)]

    far = EventTimeScreen[str](EventTimeRange())
    far.push(_day(0), "a")
    far.push(_day(1), "b")
    far.push(FUTURE, "x")
    assert far.held == ["x"]
    assert far.jump_time == FUTURE
    settled = far.settle(_day(2))
    assert _verdicts(settled) == [("x", _day(1), False)]
    assert "the other partitions are at" in (settled[0].problem or "")
    assert far.held == []

    alone = EventTimeScreen[str](EventTimeRange())
    alone.push(FUTURE, "x")
    assert _verdicts(alone.settle(None)) == [("x", FUTURE, True)]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"earliest": datetime(1999, 12, 31, tzinfo=UTC)}, "event_time_earliest must lie"),
        ({"latest": CONTRACT_LATEST + timedelta(days=1)}, "event_time_latest must lie"),
        ({"earliest": datetime(2030, 1, 1), "latest": CONTRACT_LATEST}, "needs a UTC offset"),
        (
            {
                "earliest": datetime(2030, 1, 1, tzinfo=UTC),
                "latest": datetime(2030, 1, 1, tzinfo=UTC),
            },
            "must be before event_time_latest",
        ),
        ({"max_skew": timedelta(0)}, "event_time_max_skew_s must be above 0"),
        ({"max_skew": timedelta(days=3651)}, "at most 3650 days"),
    ],
)
def test_a_bad_range_is_refused_naming_the_setting_and_the_limit(
    arguments: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        EventTimeRange(**arguments)  # type: ignore[arg-type]


def test_offsets_are_compared_as_instants() -> None:
    limits = EventTimeRange(earliest=datetime(2026, 1, 1, tzinfo=UTC))
    east = timezone(timedelta(hours=5))
    assert limits.problem(datetime(2026, 1, 1, 4, 59, tzinfo=east)) is not None
    assert limits.problem(datetime(2026, 1, 1, 5, 0, tzinfo=east)) is None
