"""The in-stream data-quality gates, one check at a time, with exact expectations."""

import doctest
import importlib
import signal
from datetime import UTC, datetime, timedelta

import pytest
from bytewax.operators import StatefulBatchLogic
from pydantic import ValidationError

from allocflow.connectors.input_stop import inputs_end_on_signals
from allocflow.flows.allocation import _GateLogic
from allocflow.flows.cli import main
from allocflow.flows.settings import Settings
from allocflow.models.activity_calendar import ActivityCalendar
from allocflow.models.carrier import CarrierInTransit
from allocflow.models.codec import ContractError, decode_event, encode_event
from allocflow.models.dead_letter import DeadLetterReason
from allocflow.models.dq_alerts import DqAlert, DqCheck
from allocflow.models.envelope import EventEnvelope, Source
from allocflow.models.inventory import AdjustmentReason, StockAdjusted, StockSnapshot
from allocflow.models.limits import MAX_DURATION
from allocflow.models.orders import OrderCancelled
from allocflow.models.shipments import (
    ShipmentCreated,
    ShipmentDelivered,
    ShipmentDispatched,
    ShipmentLine,
)
from allocflow.models.topics import InputTopic
from allocflow.models.vocabulary import Severity
from allocflow.quality.alerts import truncated_sample
from allocflow.quality.gate import GateResult, QualityGate
from allocflow.quality.recent import RecentMap
from allocflow.quality.settings import GateSettings

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
RES = InputTopic.RESERVATIONS.value
SHIP = InputTopic.SHIPMENTS.value
CARRIER = InputTopic.CARRIER_EVENTS.value
ORDERS = InputTopic.ORDERS.value


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def snapshot(event_id: str, minutes: float, on_hand: int = 5, node: str = "DC-NJ") -> StockSnapshot:
    return StockSnapshot(
        event_id=event_id,
        event_time=at(minutes),
        source=Source.WMS,
        node_id=node,
        sku="SKU-1",
        on_hand=on_hand,
    )


def order(event_id: str, minutes: float, order_id: str) -> OrderCancelled:
    return OrderCancelled(
        event_id=event_id, event_time=at(minutes), source=Source.OMS, order_id=order_id
    )


def shipment(event_id: str, minutes: float, order_id: str, shipment_id: str) -> ShipmentCreated:
    return ShipmentCreated(
        event_id=event_id,
        event_time=at(minutes),
        source=Source.TMS,
        shipment_id=shipment_id,
        order_id=order_id,
        node_id="DC-NJ",
        carrier_id="UPS",
        lane="DC-NJ-NE",
        dispatch_cutoff=at(minutes + 60),
        promised_delivery=at(minutes + 600),
        lines=[ShipmentLine(line_id="1", sku="SKU-1", qty=1)],
    )


def scan(event_id: str, minutes: float, shipment_id: str) -> CarrierInTransit:
    return CarrierInTransit(
        event_id=event_id,
        event_time=at(minutes),
        source=Source.CARRIER,
        shipment_id=shipment_id,
        carrier_id="UPS",
        tracking_no="TRK1",
    )


def admit(gate: QualityGate, feed: str, event: EventEnvelope) -> GateResult:
    return gate.admit(feed, event, encode_event(event))


def checks(alerts: tuple[DqAlert, ...]) -> list[str]:
    return [alert.check.value for alert in alerts]


# --- settings ---------------------------------------------------------------------------


def test_settings_defaults() -> None:
    settings = GateSettings()
    assert (
        settings.dedupe_window,
        settings.allowed_lateness,
        settings.orphan_grace,
        settings.stale_feed_after,
        settings.stale_node_after,
        settings.entity_memory,
        settings.sample_chars,
    ) == (
        100_000,
        timedelta(0),
        timedelta(hours=1),
        timedelta(hours=24),
        timedelta(hours=8),
        1_000_000,
        500,
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dedupe_window", 0),
        ("allowed_lateness", timedelta(seconds=-1)),
        ("orphan_grace", timedelta(minutes=-5)),
        ("stale_feed_after", timedelta(0)),
        ("stale_node_after", timedelta(0)),
        ("entity_memory", 0),
        ("sample_chars", 2000),
    ],
)
def test_settings_errors_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        GateSettings.model_validate({field: value})
    assert [error["loc"] for error in caught.value.errors()] == [(field,)]


def test_settings_are_frozen_and_closed() -> None:
    with pytest.raises(ValidationError, match="dedupe_windw"):
        GateSettings.model_validate({"dedupe_windw": 5})
    with pytest.raises(ValidationError, match="frozen"):
        GateSettings().dedupe_window = 3  # type: ignore[misc]


# --- bounded memory and samples ---------------------------------------------------------


def test_recent_map_evicts_least_recently_used() -> None:
    recent = RecentMap[int](2)
    recent.put("a", 1)
    recent.put("b", 2)
    assert recent.get("a") == 1  # "a" is now the most recent
    recent.put("c", 3)
    assert ("a" in recent, "b" in recent, "c" in recent, len(recent)) == (True, False, True, 2)


def test_recent_map_needs_capacity() -> None:
    with pytest.raises(ValueError, match="capacity must be at least 1"):
        RecentMap[int](0)


def test_sample_is_cut_with_an_ellipsis() -> None:
    assert truncated_sample(b"abcdef", 3) == "abc…"
    assert truncated_sample(b"abc", 3) == "abc"
    assert truncated_sample(b"\xffa", 5) == "\ufffda"


# --- duplicates -------------------------------------------------------------------------


def test_duplicate_is_dropped_with_an_info_alert() -> None:
    gate = QualityGate()
    first = snapshot("e-1", 0)
    assert admit(gate, RES, first) == GateResult(True, ())
    result = admit(gate, RES, first)
    assert result.passed is False
    (alert,) = result.alerts
    assert (alert.check, alert.severity, alert.feed, alert.event_id, alert.detected_at) == (
        DqCheck.DUPLICATE,
        Severity.INFO,
        RES,
        "e-1",
        at(0),
    )
    assert (
        alert.detail
        == "event_id e-1 was already received on reservations; the redelivery was dropped"
    )
    assert alert.sample == encode_event(first).decode()
    assert (gate.passed, gate.deduplicated) == (1, 1)


def test_duplicate_window_is_per_feed_and_bounded() -> None:
    gate = QualityGate(GateSettings(dedupe_window=2))
    for number in range(3):
        admit(gate, RES, snapshot(f"e-{number}", number))
    assert gate.remembered_ids(RES) == 2
    assert admit(gate, RES, snapshot("e-0", 3)).passed is True  # forgotten: beyond the window
    assert admit(gate, RES, snapshot("e-2", 4)).passed is False
    assert admit(gate, ORDERS, order("e-2", 5, "SO-1")).passed is True  # other feed


# --- lateness ---------------------------------------------------------------------------


def test_event_behind_the_feed_watermark_is_late() -> None:
    gate = QualityGate(GateSettings(allowed_lateness=timedelta(minutes=30)))
    admit(gate, RES, snapshot("e-1", 120))
    assert admit(gate, RES, snapshot("e-2", 90)).alerts == ()  # exactly at the limit
    result = admit(gate, RES, snapshot("e-3", 89))
    assert result.passed is True
    (alert,) = result.alerts
    assert (alert.check, alert.severity, alert.event_id, alert.entity, alert.detected_at) == (
        DqCheck.LATE,
        Severity.WARNING,
        "e-3",
        {"sku": "SKU-1"},
        at(120),
    )
    assert alert.detail == (
        "stock.snapshot event_time 2026-03-02T07:29:00+00:00 is 0:31:00 behind the "
        "reservations watermark 2026-03-02T08:00:00+00:00 (allowed lateness 0:30:00)"
    )


def test_lateness_is_judged_per_feed() -> None:
    gate = QualityGate()
    admit(gate, RES, snapshot("e-1", 120))
    assert admit(gate, ORDERS, order("e-2", 10, "SO-1")).alerts == ()


# --- impossible values ------------------------------------------------------------------


def test_negative_snapshot_is_impossible() -> None:
    (alert,) = admit(QualityGate(), RES, snapshot("e-1", 0, on_hand=-7)).alerts
    assert (alert.check, alert.severity, alert.entity) == (
        DqCheck.IMPOSSIBLE_VALUE,
        Severity.CRITICAL,
        {"node_id": "DC-NJ", "sku": "SKU-1"},
    )
    assert alert.detail == (
        "stock.snapshot on_hand is -7 for sku SKU-1 at node DC-NJ; stock on hand cannot be negative"
    )


def test_negative_level_after_adjustment_is_impossible() -> None:
    def adjusted(event_id: str, after: int | None) -> StockAdjusted:
        return StockAdjusted(
            event_id=event_id,
            event_time=at(0),
            source=Source.WMS,
            node_id="DC-NJ",
            sku="SKU-1",
            delta=-3,
            reason=AdjustmentReason.DAMAGE,
            on_hand_after=after,
        )

    gate = QualityGate()
    assert admit(gate, RES, adjusted("e-1", 0)).alerts == ()
    assert admit(gate, RES, adjusted("e-2", None)).alerts == ()
    (alert,) = admit(gate, RES, adjusted("e-3", -1)).alerts
    assert alert.detail.startswith("stock.adjusted on_hand_after is -1 for sku SKU-1")


def test_zero_quantity_never_reaches_the_gate() -> None:
    document = encode_event(shipment("e-1", 0, "SO-1", "SH-1")).replace(b'"qty":1', b'"qty":0')
    with pytest.raises(ContractError) as caught:
        decode_event(InputTopic.SHIPMENTS, document)
    assert caught.value.reason_code is DeadLetterReason.SCHEMA_VIOLATION


@pytest.mark.parametrize("delivered_first", [False, True])
def test_delivered_before_dispatched_is_impossible(delivered_first: bool) -> None:
    dispatched = ShipmentDispatched(
        event_id="e-d",
        event_time=at(60),
        source=Source.WMS,
        shipment_id="SH-1",
        order_id="SO-1",
        carrier_id="UPS",
        tracking_no="TRK1",
    )
    delivered = ShipmentDelivered(
        event_id="e-v", event_time=at(30), source=Source.TMS, shipment_id="SH-1", order_id="SO-1"
    )
    gate = QualityGate(GateSettings(allowed_lateness=timedelta(hours=1)))
    admit(gate, ORDERS, order("e-o", 0, "SO-1"))
    first, second = (delivered, dispatched) if delivered_first else (dispatched, delivered)
    assert admit(gate, SHIP, first).alerts == ()
    (alert,) = admit(gate, SHIP, second).alerts
    assert (alert.check, alert.event_id, alert.entity) == (
        DqCheck.IMPOSSIBLE_VALUE,
        second.event_id,
        {"order_id": "SO-1", "shipment_id": "SH-1"},
    )
    assert alert.detail == (
        "shipment SH-1 delivered at 2026-03-02T06:30:00+00:00, before it was dispatched "
        "at 2026-03-02T07:00:00+00:00"
    )


# --- orphans ----------------------------------------------------------------------------


def test_shipment_for_unknown_order_fires_when_the_watermark_passes_the_grace() -> None:
    gate = QualityGate(GateSettings(orphan_grace=timedelta(minutes=60)))
    assert admit(gate, SHIP, shipment("e-s", 0, "SO-9", "SH-9")).alerts == ()
    assert admit(gate, RES, snapshot("e-1", 60)).alerts == ()  # at the deadline: not past it
    (alert,) = admit(gate, RES, snapshot("e-2", 61)).alerts
    assert (alert.check, alert.severity, alert.feed, alert.event_id, alert.detected_at) == (
        DqCheck.ORPHAN,
        Severity.WARNING,
        SHIP,
        "e-s",
        at(61),
    )
    assert alert.entity == {"order_id": "SO-9", "shipment_id": "SH-9"}
    assert alert.detail == (
        "shipment.created names order_id SO-9, but no event of that order arrived by "
        "2026-03-02T07:00:00+00:00 (grace 1:00:00 after 2026-03-02T06:00:00+00:00)"
    )
    assert admit(gate, SHIP, shipment("e-s2", 62, "SO-9", "SH-10")).alerts == ()  # once
    assert gate.finish() == ()


def test_order_within_grace_cancels_the_orphan() -> None:
    gate = QualityGate(GateSettings(orphan_grace=timedelta(minutes=60)))
    admit(gate, SHIP, shipment("e-s", 0, "SO-9", "SH-9"))
    admit(gate, ORDERS, order("e-o", 59, "SO-9"))
    assert admit(gate, RES, snapshot("e-1", 600)).alerts == ()
    assert gate.finish() == ()


def test_a_requested_stop_leaves_the_waiting_orphans_to_the_resumed_run() -> None:
    logic = _GateLogic(QualityGate())
    event = scan("e-c", 3, "SH-404")
    logic.on_batch([(CARRIER, event, encode_event(event))])
    with inputs_end_on_signals():
        signal.raise_signal(signal.SIGTERM)
        assert logic.on_eof() == ((), StatefulBatchLogic.RETAIN)
    resumed = _GateLogic.resume(GateSettings(), logic.snapshot())
    (alert,), _ = resumed.on_eof()
    assert (alert.check, alert.event_id) == (DqCheck.ORPHAN, "e-c")


def test_carrier_scan_for_unknown_shipment_is_an_orphan_at_end_of_input() -> None:
    gate = QualityGate()
    admit(gate, ORDERS, order("e-o", 0, "SO-1"))
    admit(gate, SHIP, shipment("e-s", 1, "SO-1", "SH-1"))
    assert admit(gate, CARRIER, scan("e-c1", 2, "SH-1")).alerts == ()
    assert admit(gate, CARRIER, scan("e-c2", 3, "SH-404")).alerts == ()
    (alert,) = gate.finish()
    assert (alert.check, alert.feed, alert.event_id, alert.detected_at, alert.entity) == (
        DqCheck.ORPHAN,
        CARRIER,
        "e-c2",
        at(63),
        {"shipment_id": "SH-404"},
    )


# --- stale sources ----------------------------------------------------------------------


def test_silent_feed_is_stale_once_until_it_resumes() -> None:
    settings = GateSettings(
        stale_feed_after=timedelta(hours=2),
        stale_feed_after_by_feed={},
        stale_node_after=timedelta(days=9),
    )
    gate = QualityGate(settings)
    admit(gate, ORDERS, order("e-o", 0, "SO-1"))
    assert admit(gate, RES, snapshot("e-1", 120)).alerts == ()
    (alert,) = admit(gate, RES, snapshot("e-2", 121)).alerts
    assert (alert.check, alert.severity, alert.feed, alert.event_id, alert.entity) == (
        DqCheck.STALE_FEED,
        Severity.CRITICAL,
        ORDERS,
        None,
        {"feed": ORDERS, "last_event_time": "2026-03-02T06:00:00+00:00"},
    )
    assert alert.detail == (
        "no event from feed orders since 2026-03-02T06:00:00+00:00: silent for 2:01:00, "
        "threshold 2:00:00"
    )
    assert admit(gate, RES, snapshot("e-3", 200)).alerts == ()  # reported once
    admit(gate, ORDERS, order("e-o2", 201, "SO-2"))
    assert checks(admit(gate, RES, snapshot("e-4", 322)).alerts) == ["stale_feed"]


def test_each_feed_has_its_own_silence() -> None:
    settings = GateSettings(
        stale_feed_after=timedelta(hours=2),
        stale_feed_after_by_feed={ORDERS: timedelta(hours=72)},
        stale_node_after=timedelta(days=9),
    )
    gate = QualityGate(settings)
    admit(gate, ORDERS, order("e-o", 0, "SO-1"))
    admit(gate, SHIP, shipment("e-s", 1, "SO-1", "SH-1"))
    (alert,) = admit(gate, RES, snapshot("e-1", 122)).alerts
    assert alert.entity["feed"] == SHIP
    assert admit(gate, RES, snapshot("e-2", 72 * 60)).alerts == ()
    (alert,) = admit(gate, RES, snapshot("e-3", 72 * 60 + 1)).alerts
    assert alert.entity["feed"] == ORDERS
    assert alert.detail.endswith("threshold 3 days, 0:00:00")


def test_default_silences_let_orders_rest_over_a_weekend() -> None:
    settings = GateSettings()
    assert settings.stale_after(ORDERS) == timedelta(hours=72)
    assert settings.stale_after(SHIP) == settings.stale_feed_after == timedelta(hours=24)


@pytest.mark.parametrize(
    ("by_feed", "reason"),
    [
        ({"order": timedelta(hours=1)}, "unknown feed 'order'"),
        ({ORDERS: timedelta(0)}, "must be positive|greater than 0"),
    ],
)
def test_bad_feed_silences_are_rejected(by_feed: dict[str, timedelta], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason) as error:
        GateSettings(stale_feed_after_by_feed=by_feed)
    assert "stale_feed_after_by_feed" in str(error.value)


def test_silent_node_is_stale() -> None:
    gate = QualityGate(GateSettings(stale_node_after=timedelta(hours=1)))
    admit(gate, RES, snapshot("e-1", 0, node="DC-ATL"))
    (alert,) = admit(gate, RES, snapshot("e-2", 61, node="DC-NJ")).alerts
    assert (alert.severity, alert.feed, alert.entity) == (
        Severity.WARNING,
        RES,
        {"node_id": "DC-ATL", "last_event_time": "2026-03-02T06:00:00+00:00"},
    )
    assert alert.detail.startswith("no event from node DC-ATL (last named on reservations)")


def test_alert_ids_are_deterministic_and_distinct() -> None:
    def run() -> list[str]:
        gate = QualityGate()
        alerts = admit(gate, RES, snapshot("e-1", 0, on_hand=-1)).alerts
        alerts += admit(gate, RES, snapshot("e-1", 0, on_hand=-1)).alerts
        return [alert.alert_id for alert in alerts]

    first = run()
    assert first == run()
    assert len(set(first)) == 2
    assert all(alert_id.startswith("dqa-") for alert_id in first)


@pytest.mark.parametrize(
    "module_name",
    [
        "allocflow.quality.alerts",
        "allocflow.quality.gate",
        "allocflow.quality.recent",
        "allocflow.quality.settings",
        "allocflow.quality.watermarks",
    ],
)
def test_docstring_examples(module_name: str) -> None:
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert (result.attempted > 0, result.failed) == (True, 0)


# --- expected-activity calendars ----------------------------------------------------------

BUSINESS_HOURS = "Mon-Fri 07:00-19:00 Europe/Berlin"
"""In March 2026 (before daylight saving time) 07:00 in Berlin is 06:00 UTC: T0."""


def business_stream(
    weeks: int, silent: tuple[str, datetime, datetime] | None = None
) -> list[tuple[str, EventEnvelope]]:
    """Orders and stock counts (node DC-NJ) every 15 min in Berlin business hours only.

    Quiet every night and weekend; ``silent`` = (feed, from, to) drops that feed's
    events in ``[from, to)`` as well.
    """
    calendar = ActivityCalendar.parse(BUSINESS_HOURS)
    stream: list[tuple[str, EventEnvelope]] = []
    for step in range(weeks * 7 * 24 * 4):
        moment = T0 + timedelta(minutes=15 * step)
        if not calendar.active_at(moment):
            continue
        minutes = step * 15
        for feed, event in (
            (ORDERS, order(f"e-o-{step}", minutes, f"SO-{step}")),
            (RES, snapshot(f"e-r-{step}", minutes)),
        ):
            if silent is not None and feed == silent[0] and silent[1] <= moment < silent[2]:
                continue
            stream.append((feed, event))
    return stream


def stale_alerts(settings: GateSettings, stream: list[tuple[str, EventEnvelope]]) -> list[DqAlert]:
    gate = QualityGate(settings)
    alerts = [alert for feed, event in stream for alert in admit(gate, feed, event).alerts]
    return [alert for alert in alerts if alert.check is DqCheck.STALE_FEED]


def test_quiet_nights_and_weekends_raise_no_stale_alert_with_business_hours() -> None:
    limits = {
        "stale_feed_after": timedelta(hours=4),
        "stale_feed_after_by_feed": {},
        "stale_node_after": timedelta(hours=2),
    }
    stream = business_stream(weeks=3)

    always = stale_alerts(GateSettings(**limits), stream)
    calendars = GateSettings(
        **limits,
        active_hours_by_feed={"*": BUSINESS_HOURS},
        active_hours_by_node={"*": BUSINESS_HOURS},
    )

    # 12 quiet nights and 2 weekends between the 15 working days; each morning the first
    # order finds the stock feed and its node silent since the evening
    assert len(always) == (12 + 2) * 2
    assert {a.entity.get("feed") or a.entity.get("node_id") for a in always} == {RES, "DC-NJ"}
    assert stale_alerts(calendars, stream) == []


def test_a_feed_silent_for_its_limit_of_active_hours_is_stale_across_a_night() -> None:
    settings = GateSettings(
        stale_feed_after=timedelta(hours=4),
        stale_feed_after_by_feed={},
        stale_node_after=timedelta(days=9),
        active_hours_by_feed={"*": BUSINESS_HOURS},
    )
    tuesday_17 = T0 + timedelta(days=1, hours=10)  # 17:00 in Berlin
    wednesday_11 = T0 + timedelta(days=2, hours=4)
    stream = business_stream(weeks=1, silent=(RES, tuesday_17 + timedelta(minutes=1), wednesday_11))

    (alert,) = stale_alerts(settings, stream)

    # 2 active hours on Tuesday evening, 2 on Wednesday morning: due at 09:00 in Berlin
    assert alert.detected_at == T0 + timedelta(days=2, hours=2, minutes=15)
    assert alert.entity == {
        "feed": RES,
        "last_event_time": tuesday_17.isoformat(),
        "active_hours": BUSINESS_HOURS,
    }
    assert alert.detail == (
        "no event from feed reservations since 2026-03-03T16:00:00+00:00: silent for 4:15:00 "
        f"of its active hours ({BUSINESS_HOURS}), 16:15:00 in all, threshold 4:00:00"
    )


def test_a_feed_silent_in_active_hours_is_stale_and_again_after_it_resumes() -> None:
    settings = GateSettings(
        stale_feed_after=timedelta(hours=4),
        stale_feed_after_by_feed={},
        stale_node_after=timedelta(hours=2),
        active_hours_by_feed={"*": BUSINESS_HOURS},
        active_hours_by_node={"DC-NJ": BUSINESS_HOURS},
    )
    wednesday_9 = T0 + timedelta(days=2, hours=2)
    outage = (RES, wednesday_9, wednesday_9 + timedelta(hours=6))
    first = (RES, wednesday_9 + timedelta(days=1), wednesday_9 + timedelta(days=1, hours=3))

    alerts = stale_alerts(settings, business_stream(weeks=2, silent=outage))
    twice = stale_alerts(settings, business_stream(weeks=2, silent=outage)[:-1])
    with_second = [
        (feed, event)
        for feed, event in business_stream(weeks=2, silent=outage)
        if not (feed == first[0] and first[1] <= event.event_time < first[2])
    ]

    assert [(a.entity.get("feed"), a.entity.get("node_id")) for a in alerts] == [
        (None, "DC-NJ"),
        (RES, None),
    ]
    assert [a.detected_at - wednesday_9 for a in alerts] == [
        timedelta(hours=2),  # last heard 08:45, 2 h limit passed at 10:45, noticed at 11:00
        timedelta(hours=4),
    ]
    assert len(twice) == 2
    # a second outage, the next day, is reported again (node 2 h, feed within 3 h: node only)
    assert len(stale_alerts(settings, with_second)) == 3


def test_calendars_are_read_from_settings_and_named_when_wrong() -> None:
    settings = GateSettings(
        active_hours_by_feed={ORDERS: "mon-fri 07:00-19:00 Europe/Berlin"},
        active_hours_by_node={"*": "daily 06:00-22:00", "DC-NJ": "always"},
    )
    assert str(settings.feed_calendar(ORDERS)) == BUSINESS_HOURS
    assert settings.feed_calendar(SHIP).always
    assert str(settings.node_calendar("DC-ATL")) == "daily 06:00-22:00 UTC"
    assert settings.node_calendar("DC-NJ").always
    with pytest.raises(ValidationError, match="'orders': unknown day 'Mox'") as error:
        GateSettings(active_hours_by_feed={ORDERS: "Mox-Fri 07:00-19:00"})
    assert "active_hours_by_feed" in str(error.value)
    with pytest.raises(ValidationError, match="unknown feed 'order'"):
        GateSettings(active_hours_by_feed={"order": "always"})


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DQ_ACTIVE_HOURS_BY_FEED", '{"orders": "Mon-Fri 07:00-19:00 Europe/Berlon"}',
         "'orders': unknown time zone 'Europe/Berlon'"),
        ("DQ_ACTIVE_HOURS_BY_FEED", '{"order": "always"}', "unknown feed 'order'"),
        ("DQ_ACTIVE_HOURS_BY_NODE", '{"DC-NJ": "Mon-Fri 07:00-25:00"}',
         "'DC-NJ': invalid time '25:00'"),
        ("DQ_ACTIVE_HOURS_BY_NODE", '{"DC-NJ": "Mon-Fri 07:00-07:00"}',
         "opens and closes at the same time"),
    ],
)  # fmt: skip
def test_a_bad_calendar_setting_stops_the_start_with_exit_2_naming_it(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
    message: str,
) -> None:
    monkeypatch.setenv(f"ALLOCFLOW_{variable}", value)
    assert main(["settings"]) == 2
    error = capsys.readouterr().err
    assert f"{variable.lower()} (ALLOCFLOW_{variable})" in error
    assert message in error


def test_the_pipeline_settings_give_the_gate_its_calendars() -> None:
    settings = Settings(
        dq_active_hours_by_feed={ORDERS: BUSINESS_HOURS},
        dq_active_hours_by_node={"*": "Mon-Sat 06:00-22:00 America/Chicago"},
    )
    gate = settings.gate_settings()
    assert str(gate.feed_calendar(ORDERS)) == BUSINESS_HOURS
    assert str(gate.node_calendar("DC-DAL")) == "Mon-Sat 06:00-22:00 America/Chicago"
    assert Settings().gate_settings().feed_calendar(ORDERS).always


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("always", "always"),
        (" ALWAYS ", "always"),
        ("mon-fri 7:00-19:00", "Mon-Fri 07:00-19:00 UTC"),
        ("Sun-Thu 22:00-06:00 America/Chicago", "Sun-Thu 22:00-06:00 America/Chicago"),
        ("Fri-Mon 08:00-24:00, sat 01:00-02:00 Asia/Tokyo",
         "Fri-Mon 08:00-24:00, Sat 01:00-02:00 Asia/Tokyo"),
        ("Daily 00:00-24:00 Europe/Berlin", "daily 00:00-24:00 Europe/Berlin"),
    ],
)  # fmt: skip
def test_calendar_text_is_read_and_normalised(text: str, normalised: str) -> None:
    calendar = ActivityCalendar.parse(text)
    assert str(calendar) == normalised
    assert ActivityCalendar.parse(str(calendar)) == calendar


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty calendar"),
        ("Mon-Fri", "cannot read 'Mon-Fri'"),
        ("Mon-Fry 07:00-19:00", "unknown day 'Fry'"),
        ("Mon 07:00-24:01", "invalid time '24:01'"),
        ("Mon 24:00-02:00", "invalid time '24:00'"),
        ("Mon 07:60-08:00", "invalid time '07:60'"),
        ("Mon 08:00-08:00", "opens and closes at the same time"),
        ("Mon 08:00-09:00 Nowhere/City", "unknown time zone 'Nowhere/City'"),
        ("Mon 08:00-09:00 UTC, Tue 08:00-09:00", "the time zone goes after the last window"),
        ("Mon 08:00-09:00 " + "x" * 500, "at most 500 characters"),
    ],
)
def test_unreadable_calendars_say_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ActivityCalendar.parse(text)


def test_active_time_counts_real_time_across_daylight_saving_and_midnight() -> None:
    whole_days = ActivityCalendar.parse("daily 00:00-24:00 Europe/Berlin")
    # 2026-03-29: clocks go from 02:00 to 03:00 in Berlin; the local day lasts 23 h
    day_start = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)  # 00:00 in Berlin
    assert whole_days.active_between(day_start, day_start + timedelta(days=1)) == timedelta(days=1)
    office = ActivityCalendar.parse("Mon-Fri 07:00-19:00 Europe/Berlin")
    friday = datetime(2026, 3, 27, 6, 0, tzinfo=UTC)  # 07:00 CET
    monday = datetime(2026, 3, 30, 5, 0, tzinfo=UTC)  # 07:00 CEST
    assert office.active_between(friday, monday) == timedelta(hours=12)
    assert office.after_active(friday, timedelta(hours=13)) == monday + timedelta(hours=1)
    nights = ActivityCalendar.parse("Sun-Thu 22:00-06:00 UTC")
    sunday = datetime(2026, 3, 1, tzinfo=UTC)
    assert nights.active_between(sunday, sunday + timedelta(days=7)) == timedelta(hours=40)
    assert nights.active_at(sunday + timedelta(days=1, hours=5))  # Monday 05:00
    assert not nights.active_at(sunday + timedelta(days=6, hours=5))  # Saturday 05:00


def test_overlapping_windows_count_once_and_a_silence_past_the_horizon_never_ends() -> None:
    calendar = ActivityCalendar.parse("Mon-Fri 07:00-19:00, Mon 06:00-10:00 UTC")
    assert calendar.active_between(T0, T0 + timedelta(days=1)) == timedelta(hours=13)
    assert str(calendar) == "Mon-Fri 07:00-19:00, Mon 06:00-10:00 UTC"
    rare = ActivityCalendar.parse("Mon 00:00-00:01")
    assert rare.after_active(T0, MAX_DURATION) is None
