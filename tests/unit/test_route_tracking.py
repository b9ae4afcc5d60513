"""Route-delay detection with explicit event-time sequences: every alert kind, exactly."""

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from itertools import count

import pytest
from pydantic import ValidationError

from allocflow.flows.allocation import _GateLogic
from allocflow.flows.snapshots import _PickledLogic
from allocflow.flows.tracking.degradation import DegradationWatch
from allocflow.flows.tracking.lane import LaneItem, LaneTracker, Tick
from allocflow.flows.tracking.lane_history import LaneHistory
from allocflow.flows.tracking.router import TrackingRouter
from allocflow.flows.tracking.settings import TrackingSettings
from allocflow.flows.tracking.shipment import RouteOutput
from allocflow.models.allocation_exceptions import AllocationException, ExceptionState
from allocflow.models.carrier import (
    CarrierDelivered,
    CarrierEtaUpdated,
    CarrierInTransit,
    CarrierPickedUp,
)
from allocflow.models.envelope import EventEnvelope, Source
from allocflow.models.orders import Channel, OrderLine, OrderPlaced
from allocflow.models.route_alerts import RouteAlert, RouteAlertKind
from allocflow.models.shipments import (
    ShipmentCreated,
    ShipmentDelivered,
    ShipmentDispatched,
    ShipmentLine,
)
from allocflow.models.vocabulary import OwnerRole, ReasonCode
from allocflow.quality.gate import QualityGate

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
CARRIER = "CARR-A"
LANE = "DC-NJ>west"
_ids = count()


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def _id() -> str:
    return f"e-{next(_ids)}"


def created(shipment: str, hours: float, cutoff: float, promise: float) -> ShipmentCreated:
    return ShipmentCreated(
        event_id=_id(),
        event_time=at(hours),
        source=Source.TMS,
        shipment_id=shipment,
        order_id=f"O-{shipment}",
        node_id="DC-NJ",
        carrier_id=CARRIER,
        lane=LANE,
        dispatch_cutoff=at(cutoff),
        promised_delivery=at(promise),
        lines=[ShipmentLine(line_id="L-1", sku="S-1", qty=1)],
    )


def dispatched(shipment: str, hours: float) -> ShipmentDispatched:
    return ShipmentDispatched(
        event_id=_id(),
        event_time=at(hours),
        source=Source.WMS,
        shipment_id=shipment,
        order_id=f"O-{shipment}",
        carrier_id=CARRIER,
        tracking_no="T-1",
    )


def picked_up(shipment: str, hours: float, eta: float | None = None) -> CarrierPickedUp:
    return CarrierPickedUp(**_scan(shipment, hours, eta))


def scan(shipment: str, hours: float, eta: float | None = None) -> CarrierInTransit:
    return CarrierInTransit(**_scan(shipment, hours, eta))


def eta_update(shipment: str, hours: float, eta: float) -> CarrierEtaUpdated:
    return CarrierEtaUpdated(**_scan(shipment, hours, eta))


def carrier_delivered(shipment: str, hours: float) -> CarrierDelivered:
    return CarrierDelivered(**_scan(shipment, hours, None))


def tms_delivered(shipment: str, hours: float) -> ShipmentDelivered:
    return ShipmentDelivered(
        event_id=_id(),
        event_time=at(hours),
        source=Source.TMS,
        shipment_id=shipment,
        order_id=f"O-{shipment}",
    )


def placed(order: str, hours: float) -> OrderPlaced:
    return OrderPlaced(
        event_id=_id(),
        event_time=at(hours),
        source=Source.ERP,
        order_id=order,
        customer_id="C-1",
        customer_tier="standard",
        channel=Channel.EDI,
        region="west",
        promised_date=at(hours + 72),
        lines=[OrderLine(line_id="L-1", sku="S-1", qty=1, unit_price=10, unit_cost=5)],
    )


def _scan(shipment: str, hours: float, eta: float | None) -> dict[str, object]:
    return {
        "event_id": _id(),
        "event_time": at(hours),
        "source": Source.CARRIER,
        "shipment_id": shipment,
        "carrier_id": CARRIER,
        "tracking_no": "T-1",
        "location": "HUB-W",
        "eta": None if eta is None else at(eta),
    }


NO_STALLS = TrackingSettings(stall_after=timedelta(hours=500))


def tick(hours: float) -> Tick:
    return Tick(at(hours))


def run(
    items: Iterable[EventEnvelope | Tick], settings: TrackingSettings | None = None
) -> list[RouteOutput]:
    tracker = LaneTracker(settings or TrackingSettings(), CARRIER, LANE)
    return [record for item in items for record in tracker.apply(item)]


def alerts(records: list[RouteOutput]) -> list[tuple[str, str | None, float]]:
    """(kind, shipment, hours after T0) of every route alert, in order."""
    return [
        (r.kind.value, r.shipment_id, (r.detected_at - T0).total_seconds() / 3600)
        for r in records
        if isinstance(r, RouteAlert)
    ]


def exceptions(records: list[RouteOutput]) -> list[AllocationException]:
    return [r for r in records if isinstance(r, AllocationException)]


def on_time_journey(shipment: str, start: float, transit: float = 10) -> list[EventEnvelope]:
    """A shipment dispatched at once and delivered well within its promise."""
    return [
        created(shipment, start, start + 2, start + 48),
        dispatched(shipment, start + 1),
        picked_up(shipment, start + 1.5, eta=start + 1.5 + transit),
        carrier_delivered(shipment, start + 1.5 + transit),
    ]


def test_an_on_time_shipment_raises_nothing() -> None:
    assert run([*on_time_journey("SH-1", 0), tick(100)]) == []


def test_not_dispatched_by_the_cutoff_fires_at_the_cutoff_and_resolves_on_dispatch() -> None:
    records = run([created("SH-1", 0, 4, 48), tick(3), tick(5), dispatched("SH-1", 6.5)])
    assert alerts(records) == [("NOT_DISPATCHED", "SH-1", 4.0), ("RESOLVED", "SH-1", 6.5)]
    first, resolved = (r for r in records if isinstance(r, RouteAlert))
    assert resolved.resolves_alert_id == first.alert_id
    assert resolved.detail == "dispatched 2.5 h after the cutoff"
    opened, closed = exceptions(records)
    assert (opened.state, closed.state) == (ExceptionState.OPEN, ExceptionState.CLOSED)
    assert opened.exception_id == closed.exception_id
    assert (opened.order_id, opened.line_id) == ("O-SH-1", None)
    assert opened.reason_code is ReasonCode.ROUTE_DELAY_RISK
    assert opened.owner_role is OwnerRole.LOGISTICS
    assert (opened.opened_at, closed.closed_at) == (at(4), at(6.5))


def test_a_dispatch_exactly_at_the_cutoff_is_in_time() -> None:
    assert run([created("SH-1", 0, 4, 48), dispatched("SH-1", 4), tick(6)]) == []


def test_stalled_after_the_silence_and_resolved_by_the_next_scan() -> None:
    settings = TrackingSettings(stall_after=timedelta(hours=12))
    records = run(
        [
            created("SH-1", 0, 2, 96),
            dispatched("SH-1", 1),
            picked_up("SH-1", 2, eta=30),
            scan("SH-1", 10),
            tick(20),
            tick(23),
            scan("SH-1", 25),
        ],
        settings,
    )
    assert alerts(records) == [("STALLED", "SH-1", 22.0), ("RESOLVED", "SH-1", 25.0)]
    assert records[-2].detail == "carrier.in_transit at HUB-W after 15.0 h silent"


def test_a_stall_fires_on_a_tick_even_when_the_lane_has_no_events() -> None:
    settings = TrackingSettings(stall_after=timedelta(hours=12))
    records = run(
        [created("SH-1", 0, 2, 96), dispatched("SH-1", 1), tick(12.5), tick(13.5)], settings
    )
    assert alerts(records) == [("STALLED", "SH-1", 13.0)]


def test_at_risk_when_the_carrier_eta_passes_the_promise_and_resolved_when_it_returns() -> None:
    records = run(
        [
            created("SH-1", 0, 2, 30),
            dispatched("SH-1", 1),
            picked_up("SH-1", 2, eta=20),
            eta_update("SH-1", 8, eta=34),
            eta_update("SH-1", 14, eta=28),
        ]
    )
    assert alerts(records) == [("AT_RISK", "SH-1", 8.0), ("RESOLVED", "SH-1", 14.0)]
    at_risk = records[0]
    assert isinstance(at_risk, RouteAlert)
    assert (at_risk.expected_delivery, at_risk.promised_delivery) == (at(34), at(30))
    assert at_risk.detail.startswith("carrier ETA 2026-03-03 16:00 is after the promise")
    assert [e.state for e in exceptions(records)] == [ExceptionState.OPEN, ExceptionState.CLOSED]


def test_at_risk_when_the_promise_passes_undelivered_then_late_on_delivery() -> None:
    records = run(
        [
            created("SH-1", 0, 2, 30),
            dispatched("SH-1", 1),
            picked_up("SH-1", 2, eta=20),
            scan("SH-1", 18, eta=20),
            tick(31),
            carrier_delivered("SH-1", 35),
            tms_delivered("SH-1", 35.5),
        ]
    )
    assert alerts(records) == [
        ("AT_RISK", "SH-1", 30.0),
        ("RESOLVED", "SH-1", 35.0),
        ("LATE", "SH-1", 35.0),
    ]
    resolved, late = records[-2:]
    assert resolved.detail == late.detail.split(" (")[0] == "delivered 5.0 h late"
    closed = exceptions(records)[-1]
    assert (closed.state, closed.resolution) == (ExceptionState.CLOSED, "delivered 5.0 h late")


def test_late_without_any_earlier_risk() -> None:
    records = run(
        [created("SH-1", 0, 2, 30), dispatched("SH-1", 1), carrier_delivered("SH-1", 29.5)],
        NO_STALLS,
    )
    assert records == []
    records = run(
        [created("SH-2", 0, 2, 30), dispatched("SH-2", 1), tms_delivered("SH-2", 30.25)],
        NO_STALLS,
    )
    assert alerts(records) == [
        ("AT_RISK", "SH-2", 30.0),
        ("RESOLVED", "SH-2", 30.25),
        ("LATE", "SH-2", 30.25),
    ]


def test_an_on_time_delivery_resolves_an_open_risk() -> None:
    records = run(
        [
            created("SH-1", 0, 2, 30),
            dispatched("SH-1", 1),
            picked_up("SH-1", 2, eta=40),
            carrier_delivered("SH-1", 29),
        ],
        NO_STALLS,
    )
    assert alerts(records) == [("AT_RISK", "SH-1", 2.0), ("RESOLVED", "SH-1", 29.0)]
    assert records[-1].detail == "delivered on time"


def _warm_lane(transit: float, shipments: int, start: float = 0) -> list[EventEnvelope]:
    """Deliveries that teach the lane a transit time of ``transit`` hours."""
    return [
        event
        for index in range(shipments)
        for event in [
            created(f"W-{transit}-{index}", start + index * 0.1, start + index * 0.1 + 2, 500),
            picked_up(f"W-{transit}-{index}", start + index * 0.1 + 1),
            carrier_delivered(f"W-{transit}-{index}", start + index * 0.1 + 1 + transit),
        ]
    ]


def test_at_risk_predicted_from_the_lane_before_the_carrier_eta_slips() -> None:
    settings = NO_STALLS.model_copy(update={"min_transit_samples": 5})
    warm = _warm_lane(60, 10)
    records = run(
        [
            *sorted(warm, key=lambda e: e.event_time),
            created("SH-1", 80, 83, 120),
            picked_up("SH-1", 82, eta=100),
        ],
        settings,
    )
    assert alerts(records) == [("AT_RISK", "SH-1", 82.0)]
    at_risk = records[0]
    assert isinstance(at_risk, RouteAlert)
    assert at_risk.expected_delivery == at(82 + 60)
    assert at_risk.detail.endswith(
        "0.0 h in transit, and the lane's recent deliveries that took longer took 60.0 h "
        "(p50 of 10 recent deliveries)"
    )


def test_the_prediction_deadline_fires_when_the_shipment_outlasts_the_fast_deliveries() -> None:
    settings = NO_STALLS.model_copy(update={"min_transit_samples": 5})
    history = sorted([*_warm_lane(10, 7), *_warm_lane(50, 5, start=1)], key=lambda e: e.event_time)
    story = [*history, created("SH-1", 60, 63, 100), picked_up("SH-1", 62, eta=75)]
    assert alerts(run([*story, tick(71.5)], settings)) == []
    records = run([*story, tick(71.5), tick(72.5)], settings)
    assert alerts(records) == [("AT_RISK", "SH-1", 72.0)]
    assert records[0].detail.startswith(
        "predicted delivery 2026-03-06 22:00 is after the promise 2026-03-06 10:00: "
        "10.0 h in transit"
    )


def test_out_of_order_scans_move_neither_the_eta_nor_the_stall_clock_back() -> None:
    settings = TrackingSettings(stall_after=timedelta(hours=12))
    records = run(
        [
            created("SH-1", 0, 2, 40),
            dispatched("SH-1", 1),
            picked_up("SH-1", 2, eta=30),
            scan("SH-1", 10, eta=32),
            scan("SH-1", 6, eta=50),
            tick(21),
            tick(23),
        ],
        settings,
    )
    assert alerts(records) == [("STALLED", "SH-1", 22.0)]


def test_events_after_delivery_and_of_unknown_shipments_are_ignored() -> None:
    records = run(
        [*on_time_journey("SH-1", 0), scan("SH-1", 20, eta=100), scan("SH-X", 21, eta=100)]
    )
    assert records == []


def test_a_shipment_never_delivered_is_forgotten_with_its_alerts_resolved() -> None:
    settings = TrackingSettings(forget_after=timedelta(hours=24), stall_after=timedelta(hours=200))
    records = run([created("SH-1", 0, 2, 30), dispatched("SH-1", 1), tick(31), tick(55)], settings)
    assert alerts(records) == [("AT_RISK", "SH-1", 30.0), ("RESOLVED", "SH-1", 54.0)]
    assert records[-1].detail == "no longer tracked: not delivered 24.0 h after the promise"


def test_lane_degraded_when_on_time_rate_drops_and_resolved_when_it_recovers() -> None:
    settings = NO_STALLS.model_copy(
        update={
            "min_lane_deliveries": 4,
            "on_time_threshold": 0.75,
            "transit_window": timedelta(hours=30),
        }
    )
    events: list[EventEnvelope] = []
    for index, late in enumerate([False, True, True, False, False, False, False, False]):
        start = index * 10.0
        shipment = f"SH-{index}"
        events += [
            created(shipment, start, start + 1, start + 12),
            dispatched(shipment, start + 0.5),
            tms_delivered(shipment, start + (14 if late else 8)),
        ]
    records = run(sorted(events, key=lambda e: e.event_time), settings)
    lane_alerts = [r for r in records if isinstance(r, RouteAlert) and r.shipment_id is None]
    assert [(a.kind.value, (a.detected_at - T0).total_seconds() / 3600) for a in lane_alerts] == [
        ("LANE_DEGRADED", 38.0),
        ("RESOLVED", 68.0),
    ]
    degraded, recovered = lane_alerts
    assert (degraded.carrier_id, degraded.lane, degraded.order_id) == (CARRIER, LANE, None)
    assert degraded.detail.startswith("on-time rate 50% over the last 4 deliveries (no baseline")
    assert recovered.resolves_alert_id == degraded.alert_id
    assert recovered.detail == "on-time rate back to 100% over the last 4 deliveries"


def test_lane_degraded_below_its_own_baseline_though_above_the_threshold() -> None:
    settings = TrackingSettings(
        transit_window=timedelta(hours=10),
        baseline_window=timedelta(hours=100),
        min_lane_deliveries=10,
    )
    history = LaneHistory(settings.transit_window, settings.baseline_window)
    for hour in range(20):
        history.record(at(hour), 36_000.0, True)
    for hour in range(20, 30):
        history.record(at(hour), 36_000.0, hour % 5 != 0)
    assert history.baseline_on_time() == (19, 19)
    assert history.recent_on_time() == (9, 11)
    watch = DegradationWatch(settings, CARRIER, LANE)
    (alert,) = watch.judge(history, at(29))
    assert alert.kind is RouteAlertKind.LANE_DEGRADED
    assert "on-time rate 82% over the last 11 deliveries (baseline 100%" in alert.detail


def test_alerts_do_not_depend_on_how_often_the_clock_ticks() -> None:
    settings = TrackingSettings(stall_after=timedelta(hours=12))
    story: list[EventEnvelope] = [
        created("SH-1", 0, 3, 30),
        created("SH-2", 0.5, 2, 40),
        dispatched("SH-2", 1),
        picked_up("SH-2", 2, eta=35),
        dispatched("SH-1", 5),
        scan("SH-2", 9, eta=45),
        tms_delivered("SH-1", 33),
    ]

    def with_ticks(every: float) -> list[EventEnvelope | Tick]:
        ticks = [tick(n * every) for n in range(1, int(60 / every))]
        return sorted([*story, *ticks], key=_time)

    expected = run(with_ticks(12), settings)
    assert expected
    assert run(with_ticks(0.25), settings) == expected
    assert run(with_ticks(7), settings) == expected


def _time(item: EventEnvelope | Tick) -> datetime:
    return item.time if isinstance(item, Tick) else item.event_time


def test_alert_ids_are_deterministic_and_distinct_per_episode() -> None:
    story = [
        created("SH-1", 0, 2, 30),
        dispatched("SH-1", 1),
        picked_up("SH-1", 2, eta=40),
        eta_update("SH-1", 5, eta=20),
        eta_update("SH-1", 8, eta=40),
    ]
    first, second = run(story), run(story)
    assert first == second
    ids = [r.alert_id for r in first if isinstance(r, RouteAlert)]
    assert len(ids) == len(set(ids)) == 3
    assert len({e.exception_id for e in exceptions(first)}) == 2


def test_router_keys_scans_by_the_lane_of_their_shipment_and_ticks_every_lane() -> None:
    router = TrackingRouter(TrackingSettings(tick_every=timedelta(hours=1)))
    assert router.route(placed("O-SH-1", 0.1)) == router.route(placed("O-SH-2", 0.1)) == []
    first = router.route(created("SH-1", 0.2, 1, 30))
    other = created("SH-2", 0.4, 1, 30).model_copy(update={"carrier_id": "CARR-B"})
    second = router.route(other)
    routed = router.route(scan("SH-1", 1.5))
    assert [key for key, _ in first] == ["CARR-A|DC-NJ>west"]
    assert [key for key, _ in second] == ["CARR-B|DC-NJ>west"]
    assert [(key, item.payload) for key, item in routed[:2]] == [
        ("CARR-A|DC-NJ>west", Tick(at(1))),
        ("CARR-B|DC-NJ>west", Tick(at(1))),
    ]
    assert routed[2] == ("CARR-A|DC-NJ>west", LaneItem(CARRIER, LANE, routed[2][1].payload))
    assert router.route(scan("SH-UNKNOWN", 1.6)) == []


def test_router_forgets_the_least_recent_shipments_beyond_its_memory() -> None:
    router = TrackingRouter(TrackingSettings(shipment_memory=1))
    router.route(created("SH-1", 0, 1, 30))
    router.route(created("SH-2", 0, 1, 30))
    assert router.route(scan("SH-1", 0.1)) == []
    assert len(router.route(scan("SH-2", 0.1))) == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stall_after", timedelta(0)),
        ("prediction_quantile", 1.0),
        ("min_transit_samples", 0),
        ("min_lane_deliveries", 0),
        ("on_time_threshold", 1.5),
        ("tick_every", timedelta(0)),
    ],
)
def test_bad_settings_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        TrackingSettings(**{field: value})


def test_no_step_of_the_flow_asks_for_a_wall_clock_timer() -> None:
    """Deadlines live in state and fire on event time: no step wakes Bytewax's clock.

    Bytewax calls ``notify_at`` after every batch; a wall-clock answer is what makes its
    event clock spin during a backlog replay (bytewax/bytewax#578).
    """
    stateful = _PickledLogic(lambda state, value: (state, [value]), None)
    assert stateful.notify_at() is None
    assert _GateLogic(QualityGate()).notify_at() is None


def track_all(
    items: Iterable[EventEnvelope | Tick], settings: TrackingSettings | None = None
) -> list[RouteOutput]:
    """Route events through the router to their lanes, as the dataflow does; ticks to all."""
    tracking = settings or TrackingSettings()
    router, lanes = TrackingRouter(tracking), dict[str, LaneTracker]()
    records: list[RouteOutput] = []
    for event in items:
        if isinstance(event, Tick):
            records += [record for lane in lanes.values() for record in lane.apply(event)]
            continue
        for key, item in router.route(event):
            lane = lanes.setdefault(key, LaneTracker(tracking, item.carrier_id, item.lane))
            records += lane.apply(item.payload)
    return records


FAR_FUTURE = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
YEAR_ONE_EAST = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))


def _moved(event: EventEnvelope, **times: datetime) -> EventEnvelope:
    """``event`` with other times, unvalidated: any datetime a contract might accept."""
    return event.model_copy(update=times)


@pytest.mark.parametrize("margin", [timedelta(0), timedelta(hours=6)])
def test_a_promise_at_the_end_of_the_calendar_never_fires_and_never_overflows(
    margin: timedelta,
) -> None:
    """A promise of 9999-12-31T23:59:59Z crashed the flow (OverflowError) in promise + 14 d."""
    settings = TrackingSettings(stall_after=timedelta(hours=12), at_risk_margin=margin)
    story = [
        placed("O-SH-1", 0),
        _moved(created("SH-1", 0, 2, 30), promised_delivery=FAR_FUTURE),
        dispatched("SH-1", 1),
        picked_up("SH-1", 2, eta=20),
        *_warm_lane(10, 12, start=3),
        carrier_delivered("W-10-0", 200),
    ]
    records = track_all(story, settings)
    assert [(kind, shipment) for kind, shipment, _ in alerts(records)] == [("STALLED", "SH-1")]


def test_events_at_both_ends_of_the_calendar_are_tracked_without_overflow() -> None:
    """Scans, ETAs, cutoffs and ticks at year 1 (east of UTC) and year 9999 are just times."""
    end = datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5)))
    stories = [
        _moved(
            created("SH-1", 0, 2, 30),
            event_time=YEAR_ONE_EAST,
            dispatch_cutoff=YEAR_ONE_EAST,
            promised_delivery=YEAR_ONE_EAST,
        ),
        _moved(picked_up("SH-1", 0), event_time=YEAR_ONE_EAST, eta=FAR_FUTURE),
        _moved(carrier_delivered("SH-1", 0), event_time=YEAR_ONE_EAST + timedelta(hours=1)),
        _moved(created("SH-2", 0, 2, 30), event_time=FAR_FUTURE, promised_delivery=end),
        _moved(dispatched("SH-2", 0), event_time=FAR_FUTURE),
        _moved(scan("SH-2", 0, eta=1), event_time=end, eta=end),
        _moved(tms_delivered("SH-2", 0), event_time=end),
    ]
    records = track_all(stories, TrackingSettings(min_transit_samples=1))
    assert [(kind, shipment) for kind, shipment, _ in alerts(records)] == [
        ("AT_RISK", "SH-1"),
        ("RESOLVED", "SH-1"),
        ("LATE", "SH-1"),
        ("AT_RISK", "SH-2"),
        ("RESOLVED", "SH-2"),
    ]


def test_a_delivery_after_the_forget_window_is_still_late_and_counts_in_the_lane() -> None:
    """Deliveries more than ``forget_after`` late raised no LATE and never reached the lane."""
    settings = NO_STALLS.model_copy(
        update={"forget_after": timedelta(hours=24), "min_lane_deliveries": 1}
    )
    story = [
        created("SH-1", 0, 2, 30),
        dispatched("SH-1", 1),
        picked_up("SH-1", 2),
        tick(55),
        carrier_delivered("SH-1", 70),
        tms_delivered("SH-1", 71),
    ]
    records = run(story, settings)
    assert alerts(records) == [
        ("AT_RISK", "SH-1", 30.0),
        ("RESOLVED", "SH-1", 54.0),
        ("LATE", "SH-1", 70.0),
        ("LANE_DEGRADED", None, 70.0),
    ]
    late = records[-2]
    assert isinstance(late, RouteAlert)
    assert (late.order_id, late.promised_delivery, late.expected_delivery) == (
        "O-SH-1",
        at(30),
        at(70),
    )
    assert late.detail == (
        "delivered 40.0 h late (promised 2026-03-03 12:00; no longer tracked since 24.0 h "
        "after the promise)"
    )
    assert "on-time rate 0% over the last 1 deliveries" in records[-1].detail
    assert late.alert_id == run([*story[:3], carrier_delivered("SH-1", 35)])[-1].alert_id


def test_a_forgotten_shipment_keeps_only_a_bounded_trace() -> None:
    settings = NO_STALLS.model_copy(
        update={"forget_after": timedelta(hours=1), "shipment_memory": 2}
    )
    story = [created(f"SH-{n}", 0, 2, 30) for n in range(3)]
    late = [carrier_delivered(f"SH-{n}", 40) for n in range(3)]
    records = run([*story, tick(35), *late], settings)
    assert [shipment for kind, shipment, _ in alerts(records) if kind == "LATE"] == [
        "SH-1",
        "SH-2",
    ]


def test_a_scan_that_clears_a_stall_but_finds_the_shipment_at_risk_keeps_one_exception() -> None:
    """STALLED resolved before AT_RISK opened closed the exception and reopened it at once."""
    settings = TrackingSettings(stall_after=timedelta(hours=12))
    records = run(
        [
            created("SH-1", 0, 2, 40),
            dispatched("SH-1", 1),
            picked_up("SH-1", 2, eta=30),
            tick(15),
            scan("SH-1", 20, eta=45),
            scan("SH-1", 30, eta=45),
            carrier_delivered("SH-1", 41),
        ],
        settings,
    )
    assert alerts(records) == [
        ("STALLED", "SH-1", 14.0),
        ("RESOLVED", "SH-1", 20.0),
        ("AT_RISK", "SH-1", 20.0),
        ("RESOLVED", "SH-1", 41.0),
        ("LATE", "SH-1", 41.0),
    ]
    opened, closed = exceptions(records)
    assert (opened.state, closed.state) == (ExceptionState.OPEN, ExceptionState.CLOSED)
    assert opened.exception_id == closed.exception_id
    assert (opened.opened_at, closed.closed_at) == (at(14), at(41))
    assert closed.resolution == "delivered 1.0 h late"


def test_the_exception_closes_once_every_risk_of_the_scan_has_cleared() -> None:
    settings = TrackingSettings(stall_after=timedelta(hours=12))
    records = run(
        [
            created("SH-1", 0, 2, 40),
            dispatched("SH-1", 1),
            picked_up("SH-1", 2, eta=30),
            tick(15),
            scan("SH-1", 20, eta=35),
        ],
        settings,
    )
    opened, closed = exceptions(records)
    assert closed.resolution == "risk cleared: carrier.in_transit at HUB-W after 18.0 h silent"
    assert (opened.opened_at, closed.closed_at) == (at(14), at(20))


def test_a_scan_without_a_location_clears_a_stall_without_printing_none() -> None:
    settings = TrackingSettings(stall_after=timedelta(hours=12))
    silent = scan("SH-1", 20).model_copy(update={"location": None})
    records = run([created("SH-1", 0, 2, 96), dispatched("SH-1", 1), tick(15), silent], settings)
    resolved = [r for r in records if isinstance(r, RouteAlert)][-1]
    closed = exceptions(records)[-1]
    assert resolved.detail == "carrier.in_transit after 19.0 h silent"
    assert closed.resolution == "risk cleared: carrier.in_transit after 19.0 h silent"


def test_risks_of_a_shipment_whose_order_was_never_seen_are_data_quality() -> None:
    """Orphan shipments filled the operations queue with ROUTE_DELAY_RISK of no order."""
    records = track_all([created("SH-1", 0, 4, 48), tick(5), placed("O-OTHER", 6)])
    (alert,) = [r for r in records if isinstance(r, RouteAlert)]
    (opened,) = exceptions(records)
    assert (alert.kind, alert.shipment_id, alert.order_id) == (
        RouteAlertKind.NOT_DISPATCHED,
        "SH-1",
        None,
    )
    assert (opened.reason_code, opened.owner_role, opened.order_id) == (
        ReasonCode.DATA_QUALITY,
        OwnerRole.INTEGRATION,
        "O-SH-1",
    )
    assert opened.detail == (
        "shipment SH-1 (CARR-A, DC-NJ>west) names order O-SH-1, never seen on the orders "
        "feed: not dispatched by the cutoff 2026-03-02 10:00"
    )


def test_a_shipment_whose_order_was_seen_is_a_route_delay_risk_for_logistics() -> None:
    records = track_all([placed("O-SH-1", 0), created("SH-1", 0.5, 4, 48), tick(5)])
    (alert,) = [r for r in records if isinstance(r, RouteAlert)]
    (opened,) = exceptions(records)
    assert alert.order_id == "O-SH-1"
    assert (opened.reason_code, opened.owner_role) == (
        ReasonCode.ROUTE_DELAY_RISK,
        OwnerRole.LOGISTICS,
    )


def test_an_order_arriving_after_its_shipment_hands_the_risk_over_to_logistics() -> None:
    records = track_all(
        [
            created("SH-1", 0, 4, 48),
            tick(5),
            placed("O-SH-1", 6),
            dispatched("SH-1", 7),
        ]
    )
    first, second = (e for e in exceptions(records) if e.state is ExceptionState.OPEN)
    closed = [e for e in exceptions(records) if e.state is ExceptionState.CLOSED]
    assert (first.reason_code, second.reason_code) == (
        ReasonCode.DATA_QUALITY,
        ReasonCode.ROUTE_DELAY_RISK,
    )
    assert [(e.exception_id, e.resolution) for e in closed] == [
        (first.exception_id, "order O-SH-1 arrived (the delivery risk goes to logistics)"),
        (second.exception_id, "risk cleared: dispatched 3.0 h after the cutoff"),
    ]
    assert second.opened_at == closed[0].closed_at == at(5)
    resolved = [r for r in records if isinstance(r, RouteAlert)][-1]
    assert resolved.order_id == "O-SH-1"


def test_an_order_arriving_within_its_shipments_grace_changes_nothing() -> None:
    """The order event merged just after its shipment: no data-quality record at all."""
    records = track_all([created("SH-1", 0, 4, 48), placed("O-SH-1", 0.1), tick(5)])
    assert [e.reason_code for e in exceptions(records)] == [ReasonCode.ROUTE_DELAY_RISK]
