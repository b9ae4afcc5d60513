"""Hostile records at landing: values at the edges of every column, and event ids reused.

No record stops the lander: each lands (times outside the landed range at its nearest
end, flagged in ``dq_results``) or is quarantined in ``dq_results`` (a number a column
cannot hold), and the batches after it land as usual, in this process and after a
restart. Quantities and their sums never overflow.
"""

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest
from confluent_kafka import Producer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocflow.connectors.broker import EmbeddedBroker
from allocflow.connectors.landing.aggregates import AGGREGATES, recompute_sql
from allocflow.connectors.landing.records import LandingRecord
from allocflow.connectors.landing.writer import DuckDBWriter
from allocflow.models.allocation_exceptions import AllocationException, ExceptionState
from allocflow.models.decisions import AllocationDecision, DecisionOutcome
from allocflow.models.order_status import OrderStatus, OrderStatusKind
from allocflow.models.route_alerts import RouteAlert, RouteAlertKind
from allocflow.models.topics import InputTopic, OutputTopic
from allocflow.models.vocabulary import OwnerRole, ReasonCode, Severity

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 6, tzinfo=UTC)
BEFORE_YEAR_1_UTC = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))
AFTER_YEAR_9999_UTC = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-5)))
EARLIEST = datetime(1, 1, 1)
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999999)
PAST_INT32 = 3_000_000_000
PAST_BIGINT = 2**64
HALF_BIGINT = 2**62


def _input(topic: InputTopic, offset: int, event: dict[str, object]) -> LandingRecord:
    return LandingRecord(topic.value, f"test-{topic.value}", 0, offset, json.dumps(event).encode())


def _output(topic: OutputTopic, offset: int, record: object) -> LandingRecord:
    value = record.model_dump_json().encode()  # type: ignore[attr-defined]
    return LandingRecord(topic.value, f"test-{topic.value}", 0, offset, value)


def _envelope(event_id: str, event_type: str, source: str, at: datetime) -> dict[str, object]:
    return {
        "event_id": event_id,
        "event_time": at.isoformat(),
        "source": source,
        "schema_version": 1,
        "event_type": event_type,
    }


def _placed(
    order_id: str, event_id: str, quantities: list[int], region: str = "west"
) -> dict[str, object]:
    return {
        **_envelope(event_id, "order.placed", "erp", T0),
        "order_id": order_id,
        "customer_id": "CUST-1",
        "customer_tier": "gold",
        "channel": "sales",
        "region": region,
        "promised_date": (T0 + timedelta(days=3)).isoformat(),
        "lines": [
            {"line_id": str(n), "sku": f"SKU-{n}", "qty": qty, "unit_price": 1.0, "unit_cost": 0.5}
            for n, qty in enumerate(quantities, start=1)
        ],
    }


def _shipment_event(event_id: str, event_type: str, at: datetime, **fields: object) -> dict:
    return {
        **_envelope(event_id, event_type, "tms", at),
        "shipment_id": "SH-1",
        "order_id": "SO-1",
        **fields,
    }


def _created(event_id: str) -> dict[str, object]:
    return _shipment_event(
        event_id,
        "shipment.created",
        T0,
        node_id="DC-A",
        carrier_id="CARR-1",
        lane="DC-A>west",
        dispatch_cutoff=(T0 + timedelta(hours=6)).isoformat(),
        promised_delivery=(T0 + timedelta(days=2)).isoformat(),
        lines=[{"line_id": "1", "sku": "SKU-1", "qty": 3}],
    )


def _scan(event_id: str, at: datetime) -> dict[str, object]:
    return {
        **_envelope(event_id, "carrier.in_transit", "carrier", at),
        "shipment_id": "SH-1",
        "carrier_id": "CARR-1",
        "tracking_no": "TRK-1",
        "location": "HUB",
    }


def _short(event_id: str, units: int) -> dict[str, object]:
    lines, rest = [], units
    while rest:
        qty = min(rest, 10_000_000)
        lines.append({"line_id": str(len(lines) + 1), "sku": "SKU-1", "qty_short": qty})
        rest -= qty
    return _shipment_event(event_id, "shipment.short_shipped", T0 + timedelta(hours=1), lines=lines)


def _decision(order_id: str, line_id: str, requested: int, offset: int) -> AllocationDecision:
    return AllocationDecision(
        decision_id=f"dec-{order_id}-{line_id}-{offset}",
        order_id=order_id,
        line_id=line_id,
        sku=f"SKU-{line_id}",
        customer_id="CUST-1",
        decided_at=T0,
        cause_event_id=f"evt-{order_id}",
        policy_version="test",
        rule="backorder",
        outcome=DecisionOutcome.BACKORDERED,
        requested_qty=requested,
        allocated_qty=0,
        backordered_qty=requested,
        reason_code=ReasonCode.STOCKOUT,
        explanation="No stock anywhere.",
    )


def _status(order_id: str, requested: int) -> OrderStatus:
    return OrderStatus(
        record_id=f"status-{order_id}",
        order_id=order_id,
        customer_id="CUST-1",
        version=1,
        status=OrderStatusKind.BACKORDERED,
        lines=1,
        lines_allocated=0,
        lines_partial=0,
        lines_backordered=1,
        lines_held=0,
        lines_cancelled=0,
        requested_qty=requested,
        allocated_qty=0,
        nodes=[],
        split_count=0,
        as_of=T0,
        cause_event_id=f"evt-{order_id}",
        policy_version="test",
    )


def _exception(exception_id: str, opened_at: datetime) -> AllocationException:
    return AllocationException(
        record_id=f"{exception_id}-open",
        exception_id=exception_id,
        state=ExceptionState.OPEN,
        order_id="SO-OLD",
        reason_code=ReasonCode.STOCKOUT,
        severity=Severity.WARNING,
        owner_role=OwnerRole.PLANNER,
        opened_at=opened_at,
        detail="opened before year 1 in UTC",
        cause_event_id="evt-old",
    )


def _alert(alert_id: str, promised: datetime) -> RouteAlert:
    return RouteAlert(
        alert_id=alert_id,
        kind=RouteAlertKind.AT_RISK,
        severity=Severity.WARNING,
        carrier_id="CARR-1",
        lane="DC-A>west",
        shipment_id="SH-FAR",
        detected_at=T0,
        promised_delivery=promised,
        detail="promised after year 9999 in UTC",
    )


def _poison_batch() -> list[LandingRecord]:
    """Records every column or sum of which is at or past an edge."""
    decisions = OutputTopic.ALLOCATION_DECISIONS
    return [
        _output(OutputTopic.ALLOCATION_EXCEPTIONS, 0, _exception("exc-old", BEFORE_YEAR_1_UTC)),
        _output(OutputTopic.ROUTE_ALERTS, 0, _alert("alert-far", AFTER_YEAR_9999_UTC)),
        _output(decisions, 0, _status("SO-BIG", PAST_INT32)),
        _input(InputTopic.ORDERS, 0, _placed("SO-HUGE", "evt-SO-HUGE", [5, 5])),
        _output(decisions, 1, _decision("SO-HUGE", "1", HALF_BIGINT, 1)),
        _output(decisions, 2, _decision("SO-HUGE", "2", HALF_BIGINT, 2)),
        _output(decisions, 3, _decision("SO-HUGE", "3", PAST_BIGINT, 3)),
        _input(InputTopic.SHIPMENTS, 0, _created("evt-created")),
        *(
            _input(InputTopic.SHIPMENTS, n, _short(f"evt-short-{n}", 1_000_000_000))
            for n in (1, 2, 3)
        ),
    ]


def _one(con: duckdb.DuckDBPyConnection, sql: str, *params: object) -> object:
    row = con.execute(sql, list(params)).fetchone()
    assert row is not None
    return row[0]


def _normal_batch(offset: int) -> list[LandingRecord]:
    return [
        _input(InputTopic.ORDERS, offset, _placed("SO-NEXT", "evt-SO-NEXT", [2], "east")),
        _output(OutputTopic.ALLOCATION_DECISIONS, offset, _decision("SO-NEXT", "1", 2, offset)),
    ]


def test_poison_records_land_or_are_quarantined_and_the_next_batches_land(tmp_path: Path) -> None:
    path = tmp_path / "hostile.duckdb"
    with DuckDBWriter(path) as writer:
        report = writer.land(_poison_batch())
        writer.land(_normal_batch(10))
        con = writer.connection
        assert report.quarantined == 1
        assert _one(con, "SELECT opened_at FROM exceptions WHERE exception_id = 'exc-old'") == (
            EARLIEST
        )
        assert _one(
            con, "SELECT promised_delivery FROM route_alerts WHERE alert_id = 'alert-far'"
        ) == (LATEST)
        assert _one(con, "SELECT requested_qty FROM orders WHERE order_id = 'SO-BIG'") == (
            PAST_INT32
        )
        assert _one(con, "SELECT short_units FROM shipments WHERE shipment_id = 'SH-1'") == (
            3_000_000_000
        )
        assert (
            _one(
                con,
                "SELECT sum(units_first_requested) FROM agg_line_fill WHERE region = 'west'",
            )
            == 2 * HALF_BIGINT
        )
        assert (
            _one(
                con,
                "SELECT count(*) FROM allocation_decisions WHERE decision_id = 'dec-SO-HUGE-3-3'",
            )
            == 0
        )
        flagged = con.execute(
            "SELECT feed, severity, detail FROM dq_results WHERE origin = 'landing' ORDER BY feed"
        ).fetchall()
        assert [(feed, severity) for feed, severity, _ in flagged] == [
            ("allocation-decisions", "critical"),
            ("allocation-exceptions", "warning"),
            ("route-alerts", "warning"),
        ]
        assert str(PAST_BIGINT) in flagged[0][2]
        assert "0001-01-01T00:00:00+05:00" in flagged[1][2]
        assert "9999-12-31T23:59:59-05:00" in flagged[2][2]
        assert _one(con, "SELECT count(*) FROM orders WHERE order_id = 'SO-NEXT'") == 1
        for aggregate in AGGREGATES:
            found = con.execute(
                f"SELECT count(*) FROM ((SELECT * FROM {aggregate.table}) "
                f"EXCEPT ALL ({recompute_sql(aggregate)}))"
            ).fetchone()
            assert found == (0,), aggregate.table
        counts = con.execute("SELECT * FROM fact_counts ORDER BY fact").fetchall()
    with DuckDBWriter(path) as restarted:
        again = restarted.land(_poison_batch())
        assert (again.replayed, again.quarantined) == (len(_poison_batch()), 0)
        reproduced = [
            LandingRecord(r.topic, r.source, r.partition, r.offset + 100, r.value)
            for r in _poison_batch()
        ]
        assert restarted.land(reproduced).quarantined == 1
        con = restarted.connection
        assert con.execute("SELECT * FROM fact_counts ORDER BY fact").fetchall() == counts
        restarted.land([_input(InputTopic.ORDERS, 200, _placed("SO-LATER", "evt-later", [1]))])
        assert _one(con, "SELECT count(*) FROM orders WHERE order_id = 'SO-LATER'") == 1
        assert _one(con, "SELECT quarantined FROM landing_status") == 2


@pytest.mark.parametrize("batches", [1, 2], ids=["same-batch", "separate-batches"])
def test_two_feeds_sharing_an_event_id_both_land_and_every_scan_counts(
    tmp_path: Path, batches: int
) -> None:
    shared = ["evt-shared-1", "evt-shared-2"]
    records = [
        _input(InputTopic.SHIPMENTS, 0, _created(shared[0])),
        _input(InputTopic.ORDERS, 0, _placed("SO-1", shared[1], [3])),
        _input(InputTopic.CARRIER_EVENTS, 0, _scan(shared[0], T0 + timedelta(hours=8))),
        _input(InputTopic.CARRIER_EVENTS, 1, _scan(shared[1], T0 + timedelta(hours=9))),
        _input(InputTopic.CARRIER_EVENTS, 2, _scan("evt-own", T0 + timedelta(hours=10))),
    ]
    with DuckDBWriter(tmp_path / "shared.duckdb") as writer:
        if batches == 1:
            writer.land(records)
        else:
            writer.land(records[:2])
            writer.land(records[2:])
        con = writer.connection
        landed = con.execute(
            "SELECT topic, event_id FROM input_events ORDER BY topic, event_id"
        ).fetchall()
        scans, created, first_scan = con.execute(
            "SELECT scans, created_at, first_scan_at FROM shipments WHERE shipment_id = 'SH-1'"
        ).fetchone() or (None, None, None)
        carrier_events = _one(con, "SELECT count(*) FROM carrier_events")
        lines = _one(con, "SELECT count(*) FROM order_lines WHERE order_id = 'SO-1'")
    assert landed == [
        ("carrier-events", "evt-own"),
        ("carrier-events", "evt-shared-1"),
        ("carrier-events", "evt-shared-2"),
        ("orders", "evt-shared-2"),
        ("shipments", "evt-shared-1"),
    ]
    assert (scans, carrier_events, lines) == (3, 3, 1)
    assert created == T0.replace(tzinfo=None)
    assert first_scan == (T0 + timedelta(hours=8)).replace(tzinfo=None)


def test_a_kafka_lander_lands_past_poison_records_and_keeps_landing(
    kafka_broker: EmbeddedBroker,
    pipeline_topics: dict[InputTopic | OutputTopic, str],
    tmp_path: Path,
) -> None:
    """On a real broker the lander exits cleanly, then a restart lands only what is new."""
    producer = Producer(kafka_broker.connection().producer_config())

    def send(records: list[LandingRecord], **options: int) -> None:
        for record in records:
            topic = pipeline_topics[_TOPICS[record.topic]]
            producer.produce(topic, record.value, key=b"k", partition=0, **options)
        assert producer.flush(30) == 0

    far_kafka_time = [_input(InputTopic.ORDERS, 0, _placed("SO-FAR", "evt-far", [1], "north"))]
    send(_poison_batch())
    send(far_kafka_time, timestamp=2**62)
    db = tmp_path / "kafka.duckdb"
    land = [sys.executable, "-m", "allocflow.flows.cli", "land", "--db", str(db),
            "--bootstrap", kafka_broker.bootstrap_servers, "--until-idle", "3"]  # fmt: skip

    first = subprocess.run(land, capture_output=True, text=True, timeout=180, check=False)
    assert first.returncode == 0, first.stderr
    assert f"Landed {len(_poison_batch()) + 1} messages" in first.stdout
    assert "; 1 quarantined (see dq_results, origin landing)" in first.stdout
    send(_normal_batch(0))
    second = subprocess.run(land, capture_output=True, text=True, timeout=180, check=False)
    assert second.returncode == 0, second.stderr
    assert "Landed 2 messages" in second.stdout

    with duckdb.connect(str(db), read_only=True) as con:
        assert _one(con, "SELECT quarantined FROM landing_status") == 1
        assert _one(con, "SELECT count(*) FROM dq_results WHERE origin = 'landing'") == 3
        assert _one(con, "SELECT ingested_at FROM input_events WHERE event_id = 'evt-far'") is None
        assert (
            _one(con, "SELECT count(*) FROM allocation_decisions WHERE order_id = 'SO-NEXT'") == 1
        )
        assert (
            _one(con, "SELECT short_units FROM shipments WHERE shipment_id = 'SH-1'") == 3 * 10**9
        )


_TOPICS: dict[str, InputTopic | OutputTopic] = {t.value: t for t in (*InputTopic, *OutputTopic)}


_OFFSETS = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
_EDGE_TIMES = st.one_of(
    st.builds(lambda naive, tz: naive.replace(tzinfo=tz), st.datetimes(), _OFFSETS),
    st.sampled_from([BEFORE_YEAR_1_UTC, AFTER_YEAR_9999_UTC, T0]),
)
_EDGE_INTEGERS = st.one_of(
    st.integers(0, 2**70),
    st.sampled_from([0, 2**31, 2**63 - 1, 2**63, 2**64]),
)
_SPECS = st.lists(
    st.one_of(
        st.tuples(st.just("alert"), _EDGE_TIMES),
        st.tuples(st.just("decision"), _EDGE_INTEGERS),
        st.tuples(st.just("status"), _EDGE_INTEGERS),
        st.tuples(st.just("scan"), st.integers(0, 48)),
        st.tuples(st.just("created"), st.none()),
        st.tuples(st.just("garbage"), st.binary(max_size=40)),
    ),
    max_size=40,
)


def _outside(moment: datetime) -> bool:
    since = moment - datetime(1970, 1, 1, tzinfo=UTC)
    epoch = datetime(1970, 1, 1)
    return not EARLIEST - epoch <= since <= LATEST - epoch


def _spec_records(specs: list[tuple[str, object]]) -> tuple[list[LandingRecord], dict[str, int]]:
    """Records for the specs, and how many of each outcome the lander must report."""
    records: list[LandingRecord] = []
    expected = dict.fromkeys(("alerts", "decisions", "statuses", "inputs", "scans"), 0)
    expected.update(skipped=0, quarantined=0, flagged=0)
    per_topic: dict[str, int] = {}
    for index, (kind, value) in enumerate(specs):
        if kind == "alert":
            assert isinstance(value, datetime)
            record = _output(OutputTopic.ROUTE_ALERTS, index, _alert(f"alert-{index}", value))
            expected["alerts"] += 1
            expected["flagged"] += _outside(value)
        elif kind in ("decision", "status"):
            assert isinstance(value, int)
            fits = value <= 2**63 - 1
            made = _decision(f"SO-{index}", "1", value, index) if kind == "decision" else None
            topic = OutputTopic.ALLOCATION_DECISIONS
            record = _output(topic, index, made or _status(f"SO-{index}", value))
            expected["decisions" if kind == "decision" else "statuses"] += fits
            expected["quarantined"] += not fits
        elif kind == "garbage":
            assert isinstance(value, bytes)
            record = LandingRecord("orders", "test-orders", 0, index, value)
            expected["skipped"] += 1
        else:
            topic = InputTopic.CARRIER_EVENTS if kind == "scan" else InputTopic.SHIPMENTS
            number = per_topic[topic.value] = per_topic.get(topic.value, -1) + 1
            at = T0 + timedelta(minutes=value if isinstance(value, int) else 0)
            event = _scan(f"evt-{number}", at) if kind == "scan" else _created(f"evt-{number}")
            record = _input(topic, index, event)
            expected["inputs"] += 1
            expected["scans"] += kind == "scan"
        records.append(record)
    return records, expected


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(specs=_SPECS, batch_size=st.integers(1, 15))
def test_any_mix_of_edge_values_lands_each_record_exactly_once(
    tmp_path_factory: pytest.TempPathFactory, specs: list[tuple[str, object]], batch_size: int
) -> None:
    records, expected = _spec_records(specs)
    path = tmp_path_factory.mktemp("edges") / "edges.duckdb"
    with DuckDBWriter(path) as writer:
        for start in range(0, len(records), batch_size):
            writer.land(records[start : start + batch_size])
        writer.land(_normal_batch(len(records)))
        con = writer.connection
        found = {
            "alerts": _one(con, "SELECT count(*) FROM route_alerts"),
            "decisions": _one(con, "SELECT count(*) FROM allocation_decisions") - 1,
            "statuses": _one(con, "SELECT count(*) FROM orders WHERE status IS NOT NULL"),
            "inputs": _one(con, "SELECT count(*) FROM input_events") - 1,
            "scans": _one(con, "SELECT coalesce(sum(scans), 0) FROM shipments"),
            "skipped": _one(con, "SELECT coalesce(max(skipped), 0) FROM landing_status"),
            "quarantined": _one(con, "SELECT coalesce(max(quarantined), 0) FROM landing_status"),
            "flagged": _one(
                con,
                "SELECT count(*) FROM dq_results WHERE origin = 'landing' AND NOT success "
                "AND severity = 'warning'",
            ),
        }
        assert found == expected
        assert _one(con, "SELECT records FROM landing_status") == len(records) + 2
        for aggregate in AGGREGATES:
            assert (
                _one(
                    con,
                    f"SELECT count(*) FROM ((SELECT * FROM {aggregate.table}) "
                    f"EXCEPT ALL ({recompute_sql(aggregate)}))",
                )
                == 0
            ), aggregate.table
