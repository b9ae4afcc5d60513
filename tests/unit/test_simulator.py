"""The scenario simulator: deterministic, truthful manifest, realistic and visible scenarios."""

import json
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from allocflow.connectors.simulator.engine import SimulationConfig
from allocflow.connectors.simulator.faults import FaultPlan
from allocflow.connectors.simulator.output import FileSink
from allocflow.connectors.simulator.runner import SimulationRequest, run_simulation
from allocflow.connectors.simulator.scenarios import behaviour_for
from allocflow.flows.cli import main
from allocflow.models.codec import ContractError, decode_event
from allocflow.models.dead_letter import DeadLetterReason
from allocflow.models.topics import InputTopic

pytestmark = pytest.mark.unit

ORDERS = 1500
ORDERS_PER_HOUR = 400.0


def _simulate(
    out: Path, scenarios: list[str], faults: str = "none", orders: int = ORDERS, seed: int = 7
) -> dict[str, Any]:
    request = SimulationRequest(
        config=SimulationConfig(
            seed=seed,
            orders=orders,
            orders_per_hour=ORDERS_PER_HOUR,
            behaviour=behaviour_for(scenarios),
        ),
        faults=FaultPlan.parse(faults, 0.01),
        scenarios=scenarios,
        progress=False,
    )
    return run_simulation(request, FileSink(out))


def _lines(out: Path, topic: InputTopic) -> list[bytes]:
    return (out / f"{topic.value}.jsonl").read_bytes().splitlines()


def _events(out: Path, topic: InputTopic, skip: set[int] = frozenset()) -> list[dict[str, Any]]:
    return [orjson.loads(line) for i, line in enumerate(_lines(out, topic)) if i not in skip]


def _fault_positions(manifest: dict[str, Any], topic: InputTopic) -> set[int]:
    return {
        entry["index"]
        for info in manifest["faults"].values()
        for entry in info["messages"]
        if entry["topic"] == topic.value
    }


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("baseline")
    return out, _simulate(out, ["baseline"])


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("faulty")
    return out, _simulate(out, ["baseline"], faults="all")


def _scenario(tmp_path_factory: pytest.TempPathFactory, name: str) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp(name)
    return out, _simulate(out, [name])


# -- determinism ----------------------------------------------------------------


def test_same_seed_gives_byte_identical_files_through_the_cli(tmp_path: Path) -> None:
    runs = []
    for name in ("first", "second"):
        out = tmp_path / name
        args = ["simulate", "--seed", "7", "--orders", "400", "--out", str(out)]
        assert main([*args, "--faults", "all", "--fault-rate", "0.01", "--no-progress"]) == 0
        runs.append({path.name: path.read_bytes() for path in sorted(out.iterdir())})
    assert runs[0] == runs[1]
    assert set(runs[0]) == {f"{t.value}.jsonl" for t in InputTopic} | {"manifest.json"}


def test_another_seed_gives_another_stream(tmp_path: Path) -> None:
    first = _simulate(tmp_path / "a", ["baseline"], orders=200, seed=1)
    second = _simulate(tmp_path / "b", ["baseline"], orders=200, seed=2)
    assert (tmp_path / "a" / "orders.jsonl").read_bytes() != (
        tmp_path / "b" / "orders.jsonl"
    ).read_bytes()
    assert first["seed"] != second["seed"]


# -- the manifest tells the truth -------------------------------------------------


def test_manifest_counts_match_the_files(faulty: tuple[Path, dict[str, Any]]) -> None:
    out, manifest = faulty
    malformed = {
        (entry["topic"], entry["index"]): entry["event_type"]
        for entry in manifest["faults"]["malformed_json"]["messages"]
    }
    total = 0
    for topic in InputTopic:
        lines = _lines(out, topic)
        total += len(lines)
        assert manifest["topics"][topic.value]["messages"] == len(lines)
        types = Counter(
            malformed.get((topic.value, index)) or orjson.loads(line)["event_type"]
            for index, line in enumerate(lines)
        )
        assert dict(types) == manifest["topics"][topic.value]["event_types"]
    assert manifest["messages"] == total


def test_every_fault_kind_is_injected_and_located(faulty: tuple[Path, dict[str, Any]]) -> None:
    out, manifest = faulty
    for kind, info in manifest["faults"].items():
        assert info["count"] > 0, kind
        assert info["count"] == len(info["messages"])
        for entry in info["messages"]:
            raw = _lines(out, InputTopic(entry["topic"]))[entry["index"]]
            _check_fault(kind, entry, raw)


def _check_fault(kind: str, entry: dict[str, Any], raw: bytes) -> None:
    topic = InputTopic(entry["topic"])
    if kind in {"malformed_json", "schema_violation"}:
        with pytest.raises(ContractError) as caught:
            decode_event(topic, raw)
        malformed = caught.value.reason_code is DeadLetterReason.MALFORMED_JSON
        assert malformed == (kind == "malformed_json"), entry
        return
    event = decode_event(topic, raw)
    assert event.event_id == entry["event_id"]
    if kind == "negative_stock":
        assert getattr(event, "on_hand", 0) < 0
    elif kind == "orphan_shipment":
        assert getattr(event, "order_id", "").startswith("SO-9")
    elif kind == "orphan_scan":
        assert getattr(event, "shipment_id", "").startswith("SH-9")


def test_clean_messages_obey_the_contract_and_have_unique_ids(
    faulty: tuple[Path, dict[str, Any]],
) -> None:
    out, manifest = faulty
    duplicated = {e["event_id"] for e in manifest["faults"]["duplicate"]["messages"]}
    seen: Counter[str] = Counter()
    for topic in InputTopic:
        broken = {
            e["index"]
            for kind in ("malformed_json", "schema_violation")
            for e in manifest["faults"][kind]["messages"]
            if e["topic"] == topic.value
        }
        for index, line in enumerate(_lines(out, topic)):
            if index not in broken:
                seen[decode_event(topic, line).event_id] += 1
    repeated = {event_id for event_id, count in seen.items() if count > 1}
    assert repeated == duplicated


def test_orphans_reference_unknown_orders_and_shipments(
    faulty: tuple[Path, dict[str, Any]],
) -> None:
    out, manifest = faulty
    bad = _fault_positions(manifest, InputTopic.ORDERS)
    orders = {e["order_id"] for e in _events(out, InputTopic.ORDERS, bad) if "order_id" in e}
    bad = _fault_positions(manifest, InputTopic.SHIPMENTS)
    shipments = _events(out, InputTopic.SHIPMENTS, bad)
    created = {e["shipment_id"] for e in shipments if e["event_type"] == "shipment.created"}
    assert {e["order_id"] for e in shipments} <= orders
    bad = _fault_positions(manifest, InputTopic.CARRIER_EVENTS)
    assert {e["shipment_id"] for e in _events(out, InputTopic.CARRIER_EVENTS, bad)} <= created
    for entry in manifest["faults"]["orphan_shipment"]["messages"]:
        assert entry["key"] not in created
        assert entry["detail"].removeprefix("unknown ") not in orders


def test_late_messages_arrive_hours_behind_the_stream(faulty: tuple[Path, dict[str, Any]]) -> None:
    out, manifest = faulty
    for entry in manifest["faults"]["late"]["messages"]:
        lines = _lines(out, InputTopic(entry["topic"]))
        earlier = [_event_time(line) for line in lines[: entry["index"]]]
        newest_before = max(moment for moment in earlier if moment is not None)
        late_time = _event_time(lines[entry["index"]])
        assert late_time is not None
        assert newest_before - late_time >= timedelta(hours=1), entry


def _event_time(line: bytes) -> datetime | None:
    """The event time of a message, None for messages broken by a fault."""
    try:
        moment = _time(orjson.loads(line)["event_time"])
    except (orjson.JSONDecodeError, KeyError, ValueError):
        return None
    return moment if moment.tzinfo is not None else None


# -- realistic event time -------------------------------------------------------------


def test_each_topic_is_in_event_time_order_without_faults(
    baseline: tuple[Path, dict[str, Any]],
) -> None:
    out, _ = baseline
    for topic in InputTopic:
        times = [_time(e["event_time"]) for e in _events(out, topic)]
        assert times == sorted(times), topic


def test_lifecycles_happen_in_a_realistic_order(baseline: tuple[Path, dict[str, Any]]) -> None:
    out, _ = baseline
    placed = {
        e["order_id"]: _time(e["event_time"])
        for e in _events(out, InputTopic.ORDERS)
        if e["event_type"] == "order.placed"
    }
    steps: dict[str, dict[str, datetime]] = defaultdict(dict)
    for event in _events(out, InputTopic.SHIPMENTS):
        steps[event["shipment_id"]][event["event_type"]] = _time(event["event_time"])
        if event["event_type"] == "shipment.created":
            assert _time(event["event_time"]) > placed[event["order_id"]]
    for event in _events(out, InputTopic.CARRIER_EVENTS):
        dispatched = steps[event["shipment_id"]]["shipment.dispatched"]
        assert _time(event["event_time"]) > dispatched
    for shipment, times in steps.items():
        order = ["shipment.created", "shipment.picked", "shipment.dispatched", "shipment.delivered"]
        seen = [times[step] for step in order if step in times]
        assert seen == sorted(seen), shipment
        assert "shipment.delivered" in times, shipment


def test_cancelled_orders_are_never_shipped(tmp_path_factory: pytest.TempPathFactory) -> None:
    out, manifest = _scenario(tmp_path_factory, "order-changes")
    orders = _events(out, InputTopic.ORDERS)
    placed = sum(e["event_type"] == "order.placed" for e in orders)
    cancelled = {e["order_id"] for e in orders if e["event_type"] == "order.cancelled"}
    changed = sum(e["event_type"] == "order.changed" for e in orders)
    shipped = {e["order_id"] for e in _events(out, InputTopic.SHIPMENTS)}
    assert not cancelled & shipped
    assert 0.06 < len(cancelled) / placed < 0.10
    assert 0.12 < changed / placed < 0.18
    assert manifest["scenario_effects"]["orders_cancelled_share"] == round(
        len(cancelled) / placed, 4
    )


# -- scenarios change the stream visibly ----------------------------------------------


def test_demand_spike_multiplies_orders_in_the_region(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    out, manifest = _scenario(tmp_path_factory, "demand-spike")
    start = _time(manifest["start"])
    horizon = timedelta(hours=ORDERS / ORDERS_PER_HOUR)
    counts: Counter[tuple[bool, bool]] = Counter()
    for event in _events(out, InputTopic.ORDERS):
        if event["event_type"] == "order.placed":
            share = (_time(event["event_time"]) - start) / horizon
            counts[(event["region"] == "southeast", 0.3 <= share < 0.7)] += 1
    inside = counts[(True, True)] / counts[(False, True)]
    outside = counts[(True, False)] / counts[(False, False)]
    assert 2.2 < inside / outside < 3.8
    assert manifest["scenario_effects"]["demand_spike"]["measured_factor"] == pytest.approx(
        inside / outside, rel=1e-3
    )


def test_inbound_delay_slips_the_suppliers_purchase_orders(
    tmp_path_factory: pytest.TempPathFactory, baseline: tuple[Path, dict[str, Any]]
) -> None:
    out, _ = _scenario(tmp_path_factory, "inbound-delay")

    def slips(directory: Path) -> list[tuple[str, timedelta]]:
        first_eta: dict[str, datetime] = {}
        found = []
        for event in _events(directory, InputTopic.RESERVATIONS):
            if event["event_type"] != "inbound.expected":
                continue
            eta = _time(event["eta"])
            if event["po_id"] in first_eta:
                found.append((event["supplier_id"], eta - first_eta[event["po_id"]]))
            first_eta.setdefault(event["po_id"], eta)
        return found

    delayed = slips(out)
    assert len(delayed) > 20
    assert {supplier for supplier, _ in delayed} == {"SUP-GLOBEX"}
    assert all(timedelta(hours=48) <= slip for _, slip in delayed)
    assert slips(baseline[0]) == []


def test_carrier_disruption_makes_the_lane_late_with_slipping_etas(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    out, manifest = _scenario(tmp_path_factory, "carrier-disruption")
    effect = manifest["scenario_effects"]["carrier_disruption"]
    assert effect["shipments_disrupted"] > 10
    assert effect["late_share_on_lane"] > effect["late_share_elsewhere"] + 0.25
    carrier = _events(out, InputTopic.CARRIER_EVENTS)
    lane_shipments = {
        e["shipment_id"]
        for e in _events(out, InputTopic.SHIPMENTS)
        if e["event_type"] == "shipment.created"
        and e["lane"] == "DC-ATL>southeast"
        and e["carrier_id"] == "CARR-NORTHSTAR"
    }
    exceptions = [e for e in carrier if e["event_type"] == "carrier.exception"]
    assert exceptions
    assert {e["shipment_id"] for e in exceptions} <= lane_shipments
    etas: dict[str, list[datetime]] = defaultdict(list)
    for event in carrier:
        if event["event_type"] == "carrier.eta_updated" and event["shipment_id"] in lane_shipments:
            etas[event["shipment_id"]].append(_time(event["eta"]))
    slipping = [series for series in etas.values() if len(series) >= 2]
    assert slipping
    assert all(series == sorted(series) for series in slipping)


def test_credit_holds_are_released_and_gate_shipping(
    tmp_path_factory: pytest.TempPathFactory, baseline: tuple[Path, dict[str, Any]]
) -> None:
    out, _ = _scenario(tmp_path_factory, "credit-holds")
    orders = _events(out, InputTopic.ORDERS)
    holds = [e for e in orders if e["event_type"] == "credit.hold_placed"]
    released = {e["hold_id"] for e in orders if e["event_type"] == "credit.hold_released"}
    baseline_holds = sum(
        e["event_type"] == "credit.hold_placed" for e in _events(baseline[0], InputTopic.ORDERS)
    )
    assert len(holds) > 5 * max(1, baseline_holds)
    last_order = max(_time(e["event_time"]) for e in orders if e["event_type"] == "order.placed")
    still_open = {h["hold_id"]: _time(h["event_time"]) for h in holds} | dict.fromkeys(released)
    assert released <= {h["hold_id"] for h in holds}
    # Only a hold placed while the last orders drain may still be open when the stream ends.
    assert all(at is None or at > last_order for at in still_open.values())
    windows: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    opened = {}
    for event in orders:
        if event["event_type"] == "credit.hold_placed":
            opened[event["hold_id"]] = _time(event["event_time"])
        elif event["event_type"] == "credit.hold_released":
            windows[event["customer_id"]].append(
                (opened[event["hold_id"]], _time(event["event_time"]))
            )
    customer_of = {e["order_id"]: e["customer_id"] for e in orders if "lines" in e}
    for shipment in _events(out, InputTopic.SHIPMENTS):
        if shipment["event_type"] == "shipment.created":
            moment = _time(shipment["event_time"])
            for begin, end in windows[customer_of[shipment["order_id"]]]:
                assert not begin < moment < end, shipment["shipment_id"]


# -- bad options -----------------------------------------------------------------------


def test_config_needs_exactly_one_size() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        SimulationConfig(seed=1, orders=10, duration=timedelta(hours=1))
    with pytest.raises(ValueError, match="positive"):
        SimulationConfig(seed=1, orders=0)


def test_unknown_fault_kind_is_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["simulate", "--out", str(tmp_path), "--faults", "typo=0.1", "--no-progress"])
    assert code == 2
    assert "unknown fault kind 'typo'" in capsys.readouterr().err


def test_fault_rate_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match=r"within \[0, 1\]"):
        FaultPlan.parse("duplicate=1.5")


def test_duration_sizes_the_run(tmp_path: Path) -> None:
    code = main(["simulate", "--duration", "2h", "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["size"] == {"duration_s": 7200.0}
    placed = manifest["topics"]["orders"]["event_types"]["order.placed"]
    assert 500 < placed < 1100
