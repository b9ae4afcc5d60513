"""The gates over simulated streams of every scenario: every input and every fault explained.

Each scenario is simulated with 300 orders, once with every fault kind at rate 0.01 and
once without faults, and replayed in the dataflow's merge order through the gates with
the default settings. Every alert must be explained by an injected fault: the
fault-free stream raises none.
"""

import json
from pathlib import Path

import pytest

from allocflow.flows.cli import main
from allocflow.models.dq_alerts import DqAlert, DqCheck
from allocflow.quality.accounting import account

pytestmark = pytest.mark.integration

SCENARIOS = [
    "baseline",
    "demand-spike",
    "inbound-delay",
    "carrier-disruption",
    "credit-holds",
    "order-changes",
]
FAULT_KINDS = {
    "malformed_json",
    "schema_violation",
    "duplicate",
    "late",
    "orphan_shipment",
    "orphan_scan",
    "negative_stock",
}


def simulate(out: Path, scenario: str, faults: str) -> dict[str, object]:
    args = ["simulate", "--orders", "300", "--scenario", scenario, "--faults", faults]
    assert main([*args, "--fault-rate", "0.01", "--out", str(out), "--no-progress"]) == 0
    manifest: dict[str, object] = json.loads((out / "manifest.json").read_text())
    return manifest


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_injected_fault_is_detected_by_its_check(scenario: str, tmp_path: Path) -> None:
    manifest = simulate(tmp_path, scenario, "all")
    accounting = account(tmp_path)

    faults = manifest["faults"]
    assert isinstance(faults, dict)
    injected = {kind: entry["count"] for kind, entry in faults.items()}
    assert set(injected) == FAULT_KINDS
    assert all(count > 0 for count in injected.values()), injected

    assert accounting.inputs == manifest["messages"]
    assert accounting.balanced
    assert (
        accounting.inputs == accounting.valid + accounting.dead_lettered + accounting.deduplicated
    )
    assert accounting.dead_lettered == injected["malformed_json"] + injected["schema_violation"]
    assert accounting.deduplicated == injected["duplicate"]

    assert accounting.missed == ()
    assert {kind: (d.injected, d.detected) for kind, d in accounting.detections.items()} == {
        kind: (count, count) for kind, count in injected.items()
    }
    assert accounting.false_alerts == ()
    assert DqCheck.STALE_FEED not in {alert.check for alert in accounting.alerts}
    assert_alerts_are_well_formed(accounting.alerts)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_fault_free_stream_raises_no_alert(scenario: str, tmp_path: Path) -> None:
    manifest = simulate(tmp_path, scenario, "none")
    accounting = account(tmp_path)

    assert accounting.inputs == accounting.valid == manifest["messages"]
    assert (accounting.dead_lettered, accounting.deduplicated) == (0, 0)
    assert accounting.detections == {}
    assert accounting.alerts == ()


def assert_alerts_are_well_formed(alerts: tuple[DqAlert, ...]) -> None:
    assert len({alert.alert_id for alert in alerts}) == len(alerts)
    for alert in alerts:
        assert alert.detail
        if alert.event_id is not None:
            assert alert.sample is not None
            assert alert.event_id in alert.sample
