"""The roll-up's order memory: orders silent for longer than the retention are forgotten."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from allocflow.flows.rules.order_memory import ORDER_BUCKETS, OrderMemory, order_bucket

pytestmark = pytest.mark.unit

START = datetime(2026, 3, 2, tzinfo=UTC)
RETENTION = timedelta(hours=10)


def at(hours: float) -> datetime:
    return START + timedelta(hours=hours)


def test_an_order_is_forgotten_once_silent_for_longer_than_the_retention() -> None:
    memory = OrderMemory(RETENTION)
    assert memory.touch("SO-1", at(0)) == []
    assert memory.touch("SO-2", at(5)) == []
    assert memory.touch("SO-1", at(9)) == []  # SO-1 decided again: its clock restarts
    assert memory.touch("SO-3", at(15)) == []  # SO-2 silent for exactly 10 h: kept
    assert memory.touch("SO-3", at(15.5)) == ["SO-2"]
    assert memory.touch("SO-4", at(30)) == ["SO-1", "SO-3"]
    assert len(memory) == 1


def test_a_late_decision_counts_at_the_watermark() -> None:
    memory = OrderMemory(RETENTION)
    memory.touch("SO-1", at(20))
    assert memory.touch("SO-2", at(1)) == []  # older than the watermark: counted at 20 h
    assert memory.touch("SO-3", at(30)) == []
    assert memory.touch("SO-3", at(30.5)) == ["SO-1", "SO-2"]


def test_buckets_are_stable_and_spread() -> None:
    buckets = {order_bucket(f"SO-{index:05d}") for index in range(5000)}
    assert len(buckets) == ORDER_BUCKETS
    assert order_bucket("SO-00042") == order_bucket("SO-00042")


@given(
    st.lists(
        st.tuples(st.integers(0, 20), st.integers(0, 200)),
        min_size=1,
        max_size=200,
    )
)
def test_forgets_exactly_the_orders_silent_past_the_retention(
    decisions: list[tuple[int, int]],
) -> None:
    memory = OrderMemory(RETENTION)
    last: dict[str, datetime] = {}
    watermark = START
    for order, hour in decisions:
        order_id = f"SO-{order}"
        watermark = max(watermark, at(hour))
        silent = memory.touch(order_id, at(hour))
        last[order_id] = watermark
        for dropped in silent:
            assert watermark - last[dropped] > RETENTION
            del last[dropped]
        assert all(watermark - seen <= RETENTION for seen in last.values())
    assert memory.last_decided == last
