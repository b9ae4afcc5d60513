"""Invariants of route tracking over generated shipment stories, in and out of order."""

import pickle
import random
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from itertools import count

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allocflow.flows.tracking.lane import LaneTracker, Tick
from allocflow.flows.tracking.router import TrackingRouter
from allocflow.flows.tracking.settings import TrackingSettings
from allocflow.flows.tracking.shipment import RouteOutput
from allocflow.models.allocation_exceptions import AllocationException, ExceptionState
from allocflow.models.carrier import CarrierDelivered, CarrierInTransit, CarrierPickedUp
from allocflow.models.envelope import EventEnvelope, Source
from allocflow.models.orders import Channel, OrderLine, OrderPlaced
from allocflow.models.route_alerts import RouteAlert, RouteAlertKind
from allocflow.models.shipments import (
    ShipmentCreated,
    ShipmentDelivered,
    ShipmentDispatched,
    ShipmentLine,
)

pytestmark = pytest.mark.property

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
_TIME_FIELDS = ("event_time", "dispatch_cutoff", "promised_delivery", "eta")
OPENING = {
    RouteAlertKind.NOT_DISPATCHED,
    RouteAlertKind.AT_RISK,
    RouteAlertKind.STALLED,
    RouteAlertKind.LANE_DEGRADED,
}
SETTINGS = TrackingSettings(
    stall_after=timedelta(hours=10),
    min_transit_samples=3,
    min_lane_deliveries=3,
    transit_window=timedelta(hours=48),
    tick_every=timedelta(hours=1),
)


@dataclass(frozen=True)
class Story:
    """One shipment's life, in hours after its creation."""

    created: float
    cutoff: float
    promise: float
    dispatch: float | None
    scans: tuple[tuple[float, float | None], ...]
    delivery: float | None
    lane: int


stories = st.builds(
    Story,
    created=st.floats(0, 48),
    cutoff=st.floats(0.5, 6),
    promise=st.floats(8, 60),
    dispatch=st.none() | st.floats(0, 10),
    scans=st.lists(st.tuples(st.floats(0, 70), st.none() | st.floats(5, 90)), max_size=4).map(
        tuple
    ),
    delivery=st.none() | st.floats(5, 80),
    lane=st.integers(0, 2),
)


def events_of(stories: list[Story]) -> list[EventEnvelope]:
    ids = count()
    events: list[EventEnvelope] = []
    for number, story in enumerate(stories):
        shipment, carrier, lane = f"SH-{number}", f"CARR-{story.lane}", "DC-NJ>west"

        def at(hours: float, story: Story = story) -> datetime:
            return T0 + timedelta(hours=story.created + hours)

        common = {"source": Source.TMS, "shipment_id": shipment}
        if number % 3:
            events.append(placed(f"O-{number}", at(-1), f"e-{next(ids)}"))
        events.append(
            ShipmentCreated(
                event_id=f"e-{next(ids)}",
                event_time=at(0),
                order_id=f"O-{number}",
                node_id="DC-NJ",
                carrier_id=carrier,
                lane=lane,
                dispatch_cutoff=at(story.cutoff),
                promised_delivery=at(story.cutoff + story.promise),
                lines=[ShipmentLine(line_id="L-1", sku="S-1", qty=1)],
                **common,
            )
        )
        if story.dispatch is not None:
            events.append(
                ShipmentDispatched(
                    event_id=f"e-{next(ids)}",
                    event_time=at(story.dispatch),
                    order_id=f"O-{number}",
                    carrier_id=carrier,
                    tracking_no="T",
                    **common,
                )
            )
        scan_fields = {"carrier_id": carrier, "tracking_no": "T", "shipment_id": shipment}
        for index, (hours, eta) in enumerate(story.scans):
            kind = CarrierPickedUp if index == 0 else CarrierInTransit
            events.append(
                kind(
                    event_id=f"e-{next(ids)}",
                    event_time=at(hours),
                    source=Source.CARRIER,
                    eta=None if eta is None else at(eta),
                    **scan_fields,
                )
            )
        if story.delivery is not None:
            events.append(
                CarrierDelivered(
                    event_id=f"e-{next(ids)}",
                    event_time=at(story.delivery),
                    source=Source.CARRIER,
                    **scan_fields,
                )
            )
            events.append(
                ShipmentDelivered(
                    event_id=f"e-{next(ids)}",
                    event_time=at(story.delivery + 0.1),
                    order_id=f"O-{number}",
                    **common,
                )
            )
    return events


def placed(order_id: str, moment: datetime, event_id: str) -> OrderPlaced:
    line = OrderLine(line_id="L-1", sku="S-1", qty=1, unit_price=10.0, unit_cost=5.0)
    return OrderPlaced(
        event_id=event_id,
        event_time=moment,
        source=Source.ERP,
        order_id=order_id,
        customer_id="C-1",
        customer_tier="standard",
        channel=Channel.EDI,
        region="west",
        promised_date=moment + timedelta(days=3),
        lines=[line],
    )


def track(events: list[EventEnvelope], tracking: TrackingSettings = SETTINGS) -> list[RouteOutput]:
    router, lanes = TrackingRouter(tracking), dict[str, LaneTracker]()
    records: list[RouteOutput] = []
    for event in events:
        for key, item in router.route(event):
            lane = lanes.setdefault(key, LaneTracker(tracking, item.carrier_id, item.lane))
            records += lane.apply(item.payload)
    return records


def in_time_order(events: list[EventEnvelope]) -> list[EventEnvelope]:
    return sorted(events, key=lambda event: event.event_time)


def assert_alerts_pair_up(records: list[RouteOutput]) -> None:
    alerts = [record for record in records if isinstance(record, RouteAlert)]
    assert len({alert.alert_id for alert in alerts}) == len(alerts)
    opened: dict[str, RouteAlert] = {}
    open_kinds: set[tuple[str | None, str, RouteAlertKind]] = set()
    for alert in alerts:
        key = (alert.shipment_id, f"{alert.carrier_id}|{alert.lane}", alert.kind)
        if alert.kind in OPENING:
            assert key not in open_kinds, f"{alert.kind} opened twice at once"
            open_kinds.add(key)
            opened[alert.alert_id] = alert
        elif alert.kind is RouteAlertKind.RESOLVED:
            assert alert.resolves_alert_id is not None
            first = opened.pop(alert.resolves_alert_id)
            open_kinds.remove((first.shipment_id, f"{first.carrier_id}|{first.lane}", first.kind))
            assert alert.detected_at >= first.detected_at


def assert_exceptions_pair_up(records: list[RouteOutput]) -> None:
    exceptions = [record for record in records if isinstance(record, AllocationException)]
    states = Counter((e.exception_id, e.state) for e in exceptions)
    assert all(n == 1 for n in states.values())
    open_ids: set[str] = set()
    for exception in exceptions:
        if exception.state is ExceptionState.OPEN:
            open_ids.add(exception.exception_id)
        else:
            open_ids.remove(exception.exception_id)


@settings(max_examples=200, deadline=None)
@given(st.lists(stories, min_size=1, max_size=8), st.randoms(use_true_random=False))
def test_alerts_and_exceptions_pair_up_in_any_order(
    generated: list[Story], shuffler: random.Random
) -> None:
    events = in_time_order(events_of(generated))
    for index in range(len(events) - 1):
        if shuffler.random() < 0.2:
            events[index], events[index + 1] = events[index + 1], events[index]
    records = track(events)
    assert_alerts_pair_up(records)
    assert_exceptions_pair_up(records)


@settings(max_examples=150, deadline=None)
@given(st.lists(stories, min_size=1, max_size=8))
def test_late_exactly_for_shipments_delivered_after_their_promise(generated: list[Story]) -> None:
    records = track(in_time_order(events_of(generated)))
    late = {r.shipment_id for r in records if isinstance(r, RouteAlert) and r.kind == "LATE"}
    assert late == {
        f"SH-{number}"
        for number, story in enumerate(generated)
        if story.delivery is not None and story.delivery > story.cutoff + story.promise
    }


@settings(max_examples=100, deadline=None)
@given(st.lists(stories, min_size=1, max_size=8), st.sampled_from([0.5, 2.0, 4.0]))
def test_alerts_do_not_depend_on_the_tick_interval(generated: list[Story], hours: float) -> None:
    """Up to the last tick both runs have seen: after it, quiet lanes wait for the next one."""
    events = in_time_order(events_of(generated))
    other = SETTINGS.model_copy(update={"tick_every": timedelta(hours=hours)})
    seconds = events[-1].event_time.timestamp()
    cut = datetime.fromtimestamp(seconds - seconds % (4 * 3600), UTC)
    assert before(track(events, other), cut) == before(track(events), cut)


def before(records: list[RouteOutput], cut: datetime) -> list[str]:
    """Records detected before ``cut``, in a canonical order (lanes interleave differently)."""
    return sorted(record.model_dump_json() for record in records if _detected(record) < cut)


def _detected(record: RouteOutput) -> datetime:
    if isinstance(record, RouteAlert):
        return record.detected_at
    return record.closed_at or record.opened_at


@settings(max_examples=100, deadline=None)
@given(st.lists(stories, min_size=1, max_size=8), st.integers(0, 60))
def test_a_snapshot_restored_mid_stream_continues_identically(
    generated: list[Story], cut: int
) -> None:
    events = in_time_order(events_of(generated))
    cut = min(cut, len(events))
    router, lanes = TrackingRouter(SETTINGS), dict[str, LaneTracker]()
    records: list[RouteOutput] = []
    for position, event in enumerate(events):
        if position == cut:
            router, lanes = pickle.loads(pickle.dumps((router, lanes)))  # noqa: S301
        for key, item in router.route(event):
            lane = lanes.setdefault(key, LaneTracker(SETTINGS, item.carrier_id, item.lane))
            records += lane.apply(item.payload)
    assert records == track(events)


def test_ticks_alone_fire_deadlines_of_quiet_lanes() -> None:
    (story,) = [Story(0, 1, 20, 0.5, (), None, 0)]
    tracker = LaneTracker(SETTINGS, "CARR-0", "DC-NJ>west")
    for event in events_of([story]):
        tracker.apply(event)
    fired = tracker.apply(Tick(T0 + timedelta(hours=30)))
    assert {r.kind for r in fired if isinstance(r, RouteAlert)} == {
        RouteAlertKind.STALLED,
        RouteAlertKind.AT_RISK,
    }


@settings(max_examples=150, deadline=None)
@given(st.lists(stories, min_size=1, max_size=8), st.sampled_from([0.5, 3.0, 20.0]))
def test_late_exactly_for_shipments_delivered_after_their_promise_however_late(
    generated: list[Story], forget_hours: float
) -> None:
    """Shipments no longer tracked (``forget_after`` past the promise) are still judged."""
    tracking = SETTINGS.model_copy(update={"forget_after": timedelta(hours=forget_hours)})
    records = track(in_time_order(events_of(generated)), tracking)
    late = {r.shipment_id for r in records if isinstance(r, RouteAlert) and r.kind == "LATE"}
    assert late == {
        f"SH-{number}"
        for number, story in enumerate(generated)
        if story.delivery is not None and story.delivery > story.cutoff + story.promise
    }


@settings(max_examples=200, deadline=None)
@given(st.lists(stories, min_size=1, max_size=8), st.randoms(use_true_random=False))
def test_an_exception_never_closes_and_reopens_at_one_instant(
    generated: list[Story], shuffler: random.Random
) -> None:
    """One exception per risk episode: an event never closes a shipment's and opens another.

    (Two events at one instant still can: the first clears every risk, the second finds
    a new one.)
    """
    events = in_time_order(events_of(generated))
    for index in range(len(events) - 1):
        if shuffler.random() < 0.2:
            events[index], events[index + 1] = events[index + 1], events[index]
    router, lanes = TrackingRouter(SETTINGS), dict[str, LaneTracker]()
    for event in events:
        for key, item in router.route(event):
            lane = lanes.setdefault(key, LaneTracker(SETTINGS, item.carrier_id, item.lane))
            changes = [
                (record.detail.split()[1], record.reason_code, record.state)
                for record in lane.apply(item.payload)
                if isinstance(record, AllocationException)
            ]
            for position, (shipment, reason, state) in enumerate(changes):
                if state is ExceptionState.CLOSED:
                    assert (shipment, reason, ExceptionState.OPEN) not in changes[position:]


_ZONES = st.builds(
    lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-23 * 60, 23 * 60)
)
_ANY_TIME = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=_ZONES
) | st.sampled_from(
    [
        datetime.min.replace(tzinfo=UTC),
        datetime.max.replace(tzinfo=UTC),
        datetime.min.replace(tzinfo=timezone(timedelta(hours=5))),
        datetime.max.replace(tzinfo=timezone(timedelta(hours=-5))),
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(stories, min_size=1, max_size=5),
    st.lists(st.tuples(st.integers(0, 200), st.sampled_from(_TIME_FIELDS), _ANY_TIME)),
)
def test_tracking_never_overflows_whatever_the_times(
    generated: list[Story], moves: list[tuple[int, str, datetime]]
) -> None:
    """Any aware datetime Python holds, in any field, in any offset: no exception escapes."""
    events = in_time_order(events_of(generated))
    for position, name, moment in moves:
        index = position % len(events)
        if name in type(events[index]).model_fields:
            events[index] = events[index].model_copy(update={name: moment})
    tracking = SETTINGS.model_copy(update={"at_risk_margin": timedelta(hours=1)})
    records = track(events, tracking)
    assert_alerts_pair_up(records)
    assert_exceptions_pair_up(records)
