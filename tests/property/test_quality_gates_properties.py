"""Invariants of the data-quality gates over generated streams."""

import pickle
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allocflow.models.codec import encode_event
from allocflow.models.dq_alerts import DqAlert, DqCheck
from allocflow.models.envelope import EventEnvelope, Source
from allocflow.models.inventory import StockSnapshot
from allocflow.models.orders import OrderCancelled
from allocflow.models.shipments import ShipmentPicked
from allocflow.models.topics import InputTopic
from allocflow.quality.gate import QualityGate
from allocflow.quality.settings import GateSettings

pytestmark = pytest.mark.property

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
RES = InputTopic.RESERVATIONS.value
GRACE = timedelta(minutes=30)


def snapshot(event_id: str, minute: int, on_hand: int = 1) -> StockSnapshot:
    return StockSnapshot(
        event_id=event_id,
        event_time=T0 + timedelta(minutes=minute),
        source=Source.WMS,
        node_id="DC-NJ",
        sku="SKU-1",
        on_hand=on_hand,
    )


def run(gate: QualityGate, stream: list[tuple[str, EventEnvelope]]) -> list[DqAlert]:
    return run_without_finish(gate, stream) + list(gate.finish())


@settings(max_examples=150, deadline=None)
@given(
    ids=st.lists(st.integers(0, 30), max_size=200),
    window=st.integers(1, 40),
)
def test_duplicates_never_pass_twice_within_the_window(ids: list[int], window: int) -> None:
    gate = QualityGate(GateSettings(dedupe_window=window))
    recent: list[int] = []  # reference model: least recently seen first
    for minute, number in enumerate(ids):
        passed = gate.admit(RES, snapshot(f"e-{number}", minute), b"{}").passed
        assert passed is (number not in recent)
        if number in recent:
            recent.remove(number)
        recent = [*recent, number][-window:]
        assert gate.remembered_ids(RES) == len(recent) <= window
    assert gate.passed + gate.deduplicated == len(ids)


stream_items = st.lists(
    st.tuples(st.integers(0, 15), st.integers(0, 600), st.integers(-3, 3)), max_size=60
)


@settings(max_examples=100, deadline=None)
@given(items=stream_items)
def test_alert_ids_are_deterministic(items: list[tuple[int, int, int]]) -> None:
    stream: list[tuple[str, EventEnvelope]] = [
        (RES, snapshot(f"e-{number}", minute, on_hand)) for number, minute, on_hand in items
    ]
    first = run(QualityGate(), stream)
    second = run(QualityGate(), stream)
    assert [alert.alert_id for alert in first] == [alert.alert_id for alert in second]
    assert first == second


def _order(order_id: str, minute: int) -> OrderCancelled:
    return OrderCancelled(
        event_id=f"o-{order_id}",
        event_time=T0 + timedelta(minutes=minute),
        source=Source.OMS,
        order_id=order_id,
    )


def _picked(order_id: str, minute: int) -> ShipmentPicked:
    return ShipmentPicked(
        event_id=f"s-{order_id}",
        event_time=T0 + timedelta(minutes=minute),
        source=Source.WMS,
        shipment_id=f"SH-{order_id}",
        order_id=order_id,
    )


@settings(max_examples=150, deadline=None)
@given(
    shipments=st.lists(
        st.tuples(st.integers(0, 300), st.integers(-60, 30), st.booleans()),
        max_size=25,
    ),
    ticks=st.lists(st.integers(0, 600), max_size=30),
)
def test_only_orders_missing_past_the_grace_are_orphans(
    shipments: list[tuple[int, int, bool]], ticks: list[int]
) -> None:
    """A shipment whose order arrives by ``shipment time + grace`` never yields an orphan."""
    timed: list[tuple[int, int, str, EventEnvelope]] = []
    missing = set()
    for number, (minute, order_offset, order_arrives) in enumerate(shipments):
        order_id = f"SO-{number}"
        timed.append((minute, 1, InputTopic.SHIPMENTS.value, _picked(order_id, minute)))
        if order_arrives:
            order_minute = max(0, minute + order_offset)
            timed.append((order_minute, 0, InputTopic.ORDERS.value, _order(order_id, order_minute)))
        else:
            missing.add(order_id)
    timed += [(tick, 2, RES, snapshot(f"t-{i}", tick)) for i, tick in enumerate(ticks)]
    stream = [(feed, event) for _, _, feed, event in sorted(timed, key=lambda item: item[:2])]
    alerts = run(QualityGate(GateSettings(orphan_grace=GRACE)), stream)
    orphans = [alert for alert in alerts if alert.check is DqCheck.ORPHAN]
    assert sorted(alert.entity["order_id"] for alert in orphans) == sorted(missing)
    for alert in orphans:
        shipped_at = T0 + timedelta(minutes=shipments[int(alert.entity["order_id"][3:])][0])
        assert alert.detected_at >= shipped_at + GRACE


@settings(max_examples=60, deadline=None)
@given(items=stream_items, cut=st.integers(0, 60))
def test_gate_resumes_from_a_snapshot_with_the_same_alerts(
    items: list[tuple[int, int, int]], cut: int
) -> None:
    """The gate is the state of a stateful dataflow step: pickling it mid-stream loses nothing."""
    stream: list[tuple[str, EventEnvelope]] = [
        (RES, snapshot(f"e-{number}", minute, on_hand)) for number, minute, on_hand in items
    ]
    uninterrupted = run(QualityGate(), stream)
    gate = QualityGate()
    before = run_without_finish(gate, stream[:cut])
    resumed: QualityGate = pickle.loads(pickle.dumps(gate))  # noqa: S301 - our own bytes
    assert before + run(resumed, stream[cut:]) == uninterrupted


def run_without_finish(gate: QualityGate, stream: list[tuple[str, EventEnvelope]]) -> list[DqAlert]:
    alerts: list[DqAlert] = []
    for feed, event in stream:
        alerts += gate.admit(feed, event, encode_event(event)).alerts
    return alerts
