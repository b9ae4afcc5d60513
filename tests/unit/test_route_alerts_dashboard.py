"""Open route alerts, their counts and outcomes, on a landed file and on its snapshot.

The alerts are :class:`RouteAlert` models landed through the real writer into a copy
of the landed run (its own route alerts removed first), then the snapshot is
published the way the lander publishes it. More than the snapshot's window of newest
alerts land, so the oldest open alert is only in the snapshot because it is open.
"""

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from allocflow.connectors.landing.records import LandingRecord
from allocflow.connectors.landing.snapshot import NEWEST_RECORDS, publish_snapshot, snapshot_path
from allocflow.connectors.landing.writer import DuckDBWriter
from allocflow.dashboards import queries
from allocflow.dashboards.queries import Filters
from allocflow.models.route_alerts import RouteAlert, RouteAlertKind
from allocflow.models.topics import OutputTopic
from allocflow.models.vocabulary import Severity

pytestmark = pytest.mark.unit

_BASE = datetime(2026, 3, 1, tzinfo=UTC)
_ATL = "DC-ATL>southeast"
_RNO = "DC-RNO>midwest"
_LATE_ALERTS = NEWEST_RECORDS + 5


def _alert(
    alert_id: str,
    kind: RouteAlertKind,
    hours: float,
    lane: str = _ATL,
    shipment: str | None = "SH-1",
    *,
    resolves: str | None = None,
) -> RouteAlert:
    detected = _BASE + timedelta(hours=hours)
    return RouteAlert(
        alert_id=alert_id,
        kind=kind,
        severity=Severity.CRITICAL if kind is RouteAlertKind.STALLED else Severity.WARNING,
        carrier_id="CARR-RNO" if lane == _RNO else "CARR-ATL",
        lane=lane,
        shipment_id=shipment,
        order_id=None if shipment is None else f"SO-{shipment}",
        detected_at=detected,
        promised_delivery=None if shipment is None else _BASE + timedelta(days=2),
        expected_delivery=None if shipment is None else _BASE + timedelta(days=2, hours=9),
        resolves_alert_id=resolves,
        detail=f"{kind.value} {alert_id}",
    )


_OPENING = [
    _alert("ra-stalled", RouteAlertKind.STALLED, 0),
    _alert("ra-at-risk", RouteAlertKind.AT_RISK, 1, _RNO, shipment="SH-2"),
    _alert(
        "ra-at-risk-fix", RouteAlertKind.RESOLVED, 2, _RNO, shipment="SH-2", resolves="ra-at-risk"
    ),
    _alert("ra-lane", RouteAlertKind.LANE_DEGRADED, 3, _RNO, shipment=None),
    _alert("ra-not-dispatched", RouteAlertKind.NOT_DISPATCHED, 4, shipment="SH-3"),
    _alert(
        "ra-not-dispatched-fix",
        RouteAlertKind.RESOLVED,
        24 * 5,
        shipment="SH-3",
        resolves="ra-not-dispatched",
    ),
]
"""Two alerts stay open (STALLED on DC-ATL, LANE_DEGRADED on DC-RNO), two are resolved."""

_LATE = [
    _alert(f"ra-late-{i:04d}", RouteAlertKind.LATE, 24 + i / 60, _RNO, shipment=f"SH-L{i}")
    for i in range(_LATE_ALERTS)
]


def _records(alerts: list[RouteAlert], first_offset: int = 0) -> list[LandingRecord]:
    topic = OutputTopic.ROUTE_ALERTS.value
    return [
        LandingRecord(topic, topic, 0, first_offset + i, alert.model_dump_json().encode())
        for i, alert in enumerate(alerts)
    ]


def _land(db: Path, alerts: list[RouteAlert], first_offset: int = 0) -> None:
    with DuckDBWriter(db) as writer:
        writer.land(_records(alerts, first_offset))
        publish_snapshot(writer.connection, snapshot_path(db))


@pytest.fixture(scope="module")
def alerted(landed_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the landed run with only these alerts, landed, and its snapshot."""
    db = tmp_path_factory.mktemp("alerts") / "allocflow.duckdb"
    shutil.copy(landed_run / "allocflow.duckdb", db)
    with duckdb.connect(str(db)) as connection:
        connection.execute("DELETE FROM route_alerts")
    _land(db, [*_OPENING, *_LATE])
    return db


@pytest.fixture(params=["snapshot", "landed"])
def con(request: pytest.FixtureRequest, alerted: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to the snapshot, then to the landed file."""
    path = snapshot_path(alerted) if request.param == "snapshot" else alerted
    with duckdb.connect(str(path), read_only=True) as connection:
        yield connection


def test_open_alerts_are_opening_kinds_nothing_resolved(con: duckdb.DuckDBPyConnection) -> None:
    alerts = queries.open_route_alerts(con, Filters())
    assert alerts["alert_id"].to_list() == ["ra-lane", "ra-stalled"]
    stalled = alerts.row(1, named=True)
    assert stalled["kind"] == "STALLED"
    assert stalled["severity"] == "critical"
    assert (stalled["carrier_id"], stalled["lane"]) == ("CARR-ATL", _ATL)
    assert (stalled["shipment_id"], stalled["order_id"]) == ("SH-1", "SO-SH-1")
    assert stalled["detected_at"] == _BASE.replace(tzinfo=None)
    assert stalled["hours_late"] == 9.0
    assert stalled["detail"] == "STALLED ra-stalled"
    lane = alerts.row(0, named=True)
    assert (lane["shipment_id"], lane["order_id"], lane["hours_late"]) == (None, None, None)


def test_open_alert_counts_cover_every_opening_kind(con: duckdb.DuckDBPyConnection) -> None:
    counts = queries.open_route_alert_counts(con, Filters())
    assert dict(counts.iter_rows()) == {
        "NOT_DISPATCHED": 0,
        "AT_RISK": 0,
        "STALLED": 1,
        "LANE_DEGRADED": 1,
    }


def test_node_filter_applies_to_the_lanes_origin(con: duckdb.DuckDBPyConnection) -> None:
    atlanta = Filters(nodes=("DC-ATL",))
    assert queries.open_route_alerts(con, atlanta)["alert_id"].to_list() == ["ra-stalled"]
    counts = dict(queries.open_route_alert_counts(con, atlanta).iter_rows())
    assert counts["LANE_DEGRADED"] == 0
    outcomes = queries.route_alert_outcomes(con, atlanta)
    assert outcomes["alert_id"].to_list() == ["ra-not-dispatched-fix"]


def test_outcomes_are_the_newest_resolutions_and_late_deliveries(
    con: duckdb.DuckDBPyConnection,
) -> None:
    outcomes = queries.route_alert_outcomes(con, Filters(), limit=3)
    first = outcomes.row(0, named=True)
    assert first["alert_id"] == "ra-not-dispatched-fix"
    assert (first["kind"], first["resolved_kind"]) == ("RESOLVED", "NOT_DISPATCHED")
    assert first["hours_open"] == 24 * 5 - 4
    newest_late = [f"ra-late-{i:04d}" for i in range(_LATE_ALERTS - 1, _LATE_ALERTS - 3, -1)]
    assert outcomes["alert_id"].to_list()[1:] == newest_late
    assert set(outcomes["kind"][1:]) == {"LATE"}


def test_every_alert_counts_in_the_landed_total(con: duckdb.DuckDBPyConnection) -> None:
    assert queries.route_alerts_landed(con) == len(_OPENING) + _LATE_ALERTS


def test_snapshot_holds_the_old_open_alert_beyond_its_window(alerted: Path) -> None:
    with duckdb.connect(str(snapshot_path(alerted)), read_only=True) as snapshot:
        held = {row[0] for row in snapshot.execute("SELECT alert_id FROM route_alerts").fetchall()}
    newest = {f"ra-late-{i:04d}" for i in range(_LATE_ALERTS - NEWEST_RECORDS + 1, _LATE_ALERTS)}
    assert "ra-late-0000" not in held
    assert held == newest | {
        "ra-not-dispatched-fix",
        "ra-not-dispatched",
        "ra-stalled",
        "ra-lane",
    }


def test_a_later_resolution_closes_an_alert_and_relanding_changes_nothing(
    alerted: Path, tmp_path: Path
) -> None:
    db = tmp_path / "allocflow.duckdb"
    shutil.copy(alerted, db)
    landed = len(_OPENING) + _LATE_ALERTS
    _land(db, [*_OPENING, *_LATE], first_offset=landed)
    fix = _alert("ra-stalled-fix", RouteAlertKind.RESOLVED, 30, resolves="ra-stalled")
    _land(db, [fix], first_offset=2 * landed)
    for path in (db, snapshot_path(db)):
        with duckdb.connect(str(path), read_only=True) as connection:
            assert queries.open_route_alerts(connection, Filters())["alert_id"].to_list() == [
                "ra-lane"
            ]
            assert queries.route_alerts_landed(connection) == landed + 1
