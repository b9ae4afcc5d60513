"""What the landed columns hold: times clamped into range (flagged), integers checked."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from allocflow.connectors.landing.ranges import (
    BIGINT_MAX,
    BIGINT_MIN,
    EARLIEST,
    LATEST,
    UnlandableValueError,
    landed_time,
    make_landable,
)
from allocflow.connectors.landing.sources import kafka_time

pytestmark = pytest.mark.unit

_OFFSETS = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
_ANY_TIME = st.builds(lambda naive, tz: naive.replace(tzinfo=tz), st.datetimes(), _OFFSETS)


def _exact_utc_minus_epoch(moment: datetime) -> timedelta:
    """The instant as a distance from the epoch: exact for every time Python holds."""
    return moment - datetime(1970, 1, 1, tzinfo=UTC)


@given(moment=_ANY_TIME)
def test_every_time_with_any_offset_lands_in_range_and_only_the_outside_is_clamped(
    moment: datetime,
) -> None:
    landed, clamped = landed_time(moment)
    assert EARLIEST <= landed <= LATEST
    assert landed.tzinfo is None
    exact = _exact_utc_minus_epoch(moment)
    inside = EARLIEST - datetime(1970, 1, 1) <= exact <= LATEST - datetime(1970, 1, 1)
    assert clamped is not inside
    if inside:
        assert landed == moment.astimezone(UTC).replace(tzinfo=None)


@given(first=_ANY_TIME, second=_ANY_TIME)
def test_clamping_keeps_the_order_of_any_two_times(first: datetime, second: datetime) -> None:
    if first <= second:
        assert landed_time(first)[0] <= landed_time(second)[0]
    else:
        assert landed_time(first)[0] >= landed_time(second)[0]


def test_the_edges_of_the_contract_land_at_the_edges_of_the_range() -> None:
    assert landed_time(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))) == (EARLIEST, True)
    late = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-5)))
    assert landed_time(late) == (LATEST, True)
    assert landed_time(datetime(1, 1, 1, tzinfo=UTC)) == (EARLIEST, False)
    assert landed_time(datetime(9999, 12, 31, 23, tzinfo=UTC)) == (
        datetime(9999, 12, 31, 23),
        False,
    )


def test_make_landable_converts_times_and_reports_each_clamped_column_once() -> None:
    early = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))
    frames = {
        "input_events": [{"event_time": early, "ingested_at": None, "detail": "x"}],
        "placed": [{"placed_at": early, "promised_date": datetime(2026, 3, 2, tzinfo=UTC)}],
        "placed_lines": [{"placed_at": early, "qty": 3}, {"placed_at": early, "qty": 4}],
    }
    clamped = make_landable(frames)
    assert [c.column for c in clamped] == ["event_time", "placed_at"]
    assert "0001-01-01T00:00:00+05:00" in clamped[0].describe()
    assert frames["placed"][0] == {"placed_at": EARLIEST, "promised_date": datetime(2026, 3, 2)}
    assert frames["placed_lines"][1] == {"placed_at": EARLIEST, "qty": 4}


@pytest.mark.parametrize("value", [BIGINT_MAX + 1, BIGINT_MIN - 1, 10**40])
def test_an_integer_no_bigint_holds_makes_the_record_unlandable(value: int) -> None:
    frames = {"decisions": [{"requested_qty": 1, "allocations": [{"node_id": "A", "qty": value}]}]}
    with pytest.raises(UnlandableValueError, match=f"allocations.qty {value} is outside"):
        make_landable(frames)


def test_integers_at_the_bigint_edges_land_unchanged() -> None:
    frames = {"statuses": [{"requested_qty": BIGINT_MAX, "split_count": BIGINT_MIN, "ok": True}]}
    assert make_landable(frames) == []
    assert frames["statuses"][0] == {
        "requested_qty": BIGINT_MAX,
        "split_count": BIGINT_MIN,
        "ok": True,
    }


@pytest.mark.parametrize("stamp", [2**63 - 1, -(2**63), 253_402_300_800_000])
def test_a_kafka_timestamp_past_any_date_is_no_time(stamp: int) -> None:
    assert kafka_time(stamp) is None


def test_a_kafka_timestamp_is_utc_milliseconds() -> None:
    assert kafka_time(1_772_431_200_123) == datetime(2026, 3, 2, 6, 0, 0, 123_000, tzinfo=UTC)
