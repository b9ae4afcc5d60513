"""Route-delay detection on the carrier-disruption scenario: how good, how early, how fast.

``allocflow simulate --scenario carrier-disruption --seed 7 --faults none`` (CARR-NORTHSTAR
on DC-ATL>southeast is disrupted for orders placed in 20-80 % of the order horizon) is
written to a temporary directory, then the real dataflow runs over it (``allocflow run
--input --out``, in this process, wall time measured around it). From its output files
(``route-alerts.jsonl``, ``allocation-exceptions.jsonl``) and the input files:

* route alerts per kind, ``RESOLVED`` by the kind it resolves, ``ROUTE_DELAY_RISK``
  exceptions opened and closed;
* ground truth: a shipment is *late* when its first delivery (``carrier.delivered`` or
  ``shipment.delivered``) is after the ``promised_delivery`` of its ``shipment.created``;
  it is *flagged* when an ``AT_RISK`` alert was detected at or before that delivery.
  Precision, recall and F1 overall, on the disrupted lane and on the other lanes; false
  positives broken down; lead time of true positives before the promise and before
  the delivery; trigger source of the first ``AT_RISK`` (its detail starts with
  "carrier ETA", "predicted delivery" or "not delivered by");
* against the carrier's own ETA: for each late shipment, the first carrier scan before
  delivery whose ``eta`` is after the promise, compared with the first ``AT_RISK``;
* ``LANE_DEGRADED`` and its ``RESOLVED`` on the disrupted lane, in hours from the first
  and last delivery of a disrupted shipment (disrupted: on the lane, order placed in the
  window, as the simulator decides); ``STALLED`` and ``NOT_DISPATCHED`` per lane group.

Then the tracking logic alone: the input files are merged in the dataflow's order and
decoded once (not timed), and the shipment and carrier events go through
:class:`TrackingRouter` and one :class:`LaneTracker` per lane key, exactly what the
dataflow's ``route_to_lanes`` and ``track_lanes`` steps call (median of ``--repeats``).
Its alerts must be the flow's, id for id. The same pure-Python loop then measures
variants of the prediction (off, i.e. carrier ETAs and the promise only, and other
quantiles) on the same stream.

Usage::

    .venv/bin/python bench/route_delays.py [--orders 20000] [--seed 7] [--repeats 3]
    .venv/bin/python bench/route_delays.py --quick   # 2,000 orders, nothing written
    .venv/bin/python bench/route_delays.py --show    # the saved results

Results go to ``bench/results/route_delays.json``; the summary is printed. The
checkout is measured as it is (the commit is recorded, and whether the package
sources differ from it).
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from allocation import load_average, log, machine_facts, output_of, table

from allocflow.connectors.simulator.scenarios import CarrierDisruption
from allocflow.flows.cli import main as allocflow
from allocflow.flows.settings import Settings
from allocflow.flows.tracking.lane import LaneTracker
from allocflow.flows.tracking.router import TrackingRouter
from allocflow.flows.tracking.settings import TrackingSettings
from allocflow.models.carrier import CarrierEvent
from allocflow.models.codec import ContractError, decode_event
from allocflow.models.envelope import EventEnvelope
from allocflow.models.route_alerts import RouteAlert
from allocflow.models.shipments import ShipmentCreated, ShipmentDelivered, ShipmentDispatched
from allocflow.models.topics import InputTopic
from allocflow.quality.accounting import merged_messages

REPO_DIR = Path(__file__).resolve().parents[1]
RESULTS_PATH = REPO_DIR / "bench" / "results" / "route_delays.json"
DISRUPTION = CarrierDisruption()
DISRUPTED_LANE = f"{DISRUPTION.carrier_id}|{DISRUPTION.node_id}>{DISRUPTION.region}"
TRACKED = (ShipmentCreated, ShipmentDispatched, ShipmentDelivered, CarrierEvent)
"""Events the dataflow's route tracking takes (``logistics_events``)."""
SOURCES = {"carrier ETA": "carrier_eta", "predicted delivery": "prediction"}
NOT_DELIVERED = "promise_passed"
CLOSE_CALL = timedelta(hours=6)
HOUR_S = 3600.0
VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("prediction off (carrier ETA + promise)", {"min_transit_samples": 100_000}),
    ("prediction p25", {"prediction_quantile": 0.25}),
    ("prediction p50 (default)", {}),
    ("prediction p75", {"prediction_quantile": 0.75}),
    ("prediction p90", {"prediction_quantile": 0.9}),
    ("transit window 24 h", {"transit_window": timedelta(hours=24)}),
    ("transit window 48 h", {"transit_window": timedelta(hours=48)}),
)
"""Tracker settings compared on the same stream; the first (prediction off: no lane ever
has 100,000 recent deliveries, which also turns ``LANE_DEGRADED`` off) is the reference."""


class Alert(NamedTuple):
    """A route alert, from the flow's file or the tracker, reduced to what is judged."""

    alert_id: str
    kind: str
    lane_key: str
    shipment_id: str | None
    detected_at: datetime
    detail: str
    resolves: str | None


@dataclass
class Shipment:
    """One shipment's truth from the input files.

    Attributes:
        lane_key: ``carrier|lane``.
        order_id: Its order.
        promise: ``promised_delivery``.
        delivered: First delivery (``carrier.delivered`` or ``shipment.delivered``).
        eta_slip: First carrier scan before delivery whose ``eta`` is after the promise.
        disrupted: Disrupted by the scenario (on the lane, order placed in the window).
    """

    lane_key: str
    order_id: str
    promise: datetime
    delivered: datetime | None = None
    eta_slip: datetime | None = None
    disrupted: bool = False

    @property
    def late(self) -> bool:
        """Delivered after the promise."""
        return self.delivered is not None and self.delivered > self.promise


# --- inputs and outputs ---------------------------------------------------------------


def simulate(orders: int, seed: int, out: Path) -> None:
    """Write the carrier-disruption stream to ``out``."""
    code = allocflow(
        [
            "simulate",
            "--scenario",
            "carrier-disruption",
            "--orders",
            str(orders),
            "--seed",
            str(seed),
            "--faults",
            "none",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    if code:
        raise SystemExit(f"simulate failed ({code})")


def run_flow(inputs: Path, out: Path) -> float:
    """Run the allocation flow over ``inputs`` into ``out``; return its wall seconds."""
    started = time.perf_counter()
    code = allocflow(["run", "--input", str(inputs), "--out", str(out)])
    seconds = time.perf_counter() - started
    if code:
        raise SystemExit(f"allocflow run failed ({code})")
    return seconds


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as lines:
        for line in lines:
            yield orjson.loads(line)


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def load_shipments(inputs: Path) -> dict[str, Shipment]:
    """Return every created shipment with its first delivery and first ETA slip."""
    shipments: dict[str, Shipment] = {}
    for event in _lines(inputs / "shipments.jsonl"):
        kind, shipment_id = event["event_type"], event.get("shipment_id")
        if kind == "shipment.created":
            shipments[shipment_id] = Shipment(
                f"{event['carrier_id']}|{event['lane']}",
                event["order_id"],
                _time(event["promised_delivery"]),
            )
        elif kind == "shipment.delivered" and shipment_id in shipments:
            _delivered(shipments[shipment_id], _time(event["event_time"]))
    scans = sorted(_lines(inputs / "carrier-events.jsonl"), key=lambda scan: scan["event_time"])
    for scan in scans:
        if scan["shipment_id"] in shipments:
            _scanned(shipments[scan["shipment_id"]], scan)
    _mark_disrupted(inputs, shipments)
    return shipments


def _delivered(shipment: Shipment, at: datetime) -> None:
    if shipment.delivered is None or at < shipment.delivered:
        shipment.delivered = at


def _scanned(shipment: Shipment, scan: dict[str, Any]) -> None:
    at = _time(scan["event_time"])
    if scan["event_type"] == "carrier.delivered":
        _delivered(shipment, at)
        return
    eta = scan.get("eta")
    if shipment.eta_slip is not None or eta is None or _time(eta) <= shipment.promise:
        return
    if shipment.delivered is None or at < shipment.delivered:
        shipment.eta_slip = at


def _mark_disrupted(inputs: Path, shipments: dict[str, Shipment]) -> None:
    """Mark the shipments the simulator disrupted: on the lane, order placed in the window."""
    manifest = json.loads((inputs / "manifest.json").read_text())
    start = _time(manifest["start"])
    horizon = timedelta(hours=manifest["size"]["orders"] / manifest["orders_per_hour"])
    placed = {
        event["order_id"]: _time(event["event_time"])
        for event in _lines(inputs / "orders.jsonl")
        if event["event_type"] == "order.placed"
    }
    for shipment in shipments.values():
        at = placed.get(shipment.order_id)
        if shipment.lane_key == DISRUPTED_LANE and at is not None:
            shipment.disrupted = DISRUPTION.window.contains((at - start) / horizon)


def load_alerts(out: Path) -> list[Alert]:
    """Return the flow's route alerts."""
    return [
        Alert(
            row["alert_id"],
            row["kind"],
            f"{row['carrier_id']}|{row['lane']}",
            row["shipment_id"],
            _time(row["detected_at"]),
            row["detail"],
            row["resolves_alert_id"],
        )
        for row in _lines(out / "route-alerts.jsonl")
    ]


def exception_counts(out: Path) -> dict[str, int]:
    """Return ``ROUTE_DELAY_RISK`` exceptions opened, closed and left open."""
    states: dict[str, set[str]] = {"open": set(), "closed": set()}
    for row in _lines(out / "allocation-exceptions.jsonl"):
        if row["reason_code"] == "ROUTE_DELAY_RISK":
            states[row["state"]].add(row["exception_id"])
    return {
        "opened": len(states["open"]),
        "closed": len(states["closed"]),
        "open_at_end": len(states["open"] - states["closed"]),
    }


# --- AT_RISK against lateness -----------------------------------------------------------


def _source(detail: str) -> str:
    for prefix, source in SOURCES.items():
        if detail.startswith(prefix):
            return source
    return NOT_DELIVERED


def _pct(values: list[float], quantile: float) -> float | None:
    """Linear-interpolated percentile, rounded to 0.1; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    position = quantile * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (position - low), 1)


def _spread(values: list[float]) -> dict[str, float | int | None]:
    return {
        "n": len(values),
        "p10": _pct(values, 0.1),
        "p50": _pct(values, 0.5),
        "p90": _pct(values, 0.9),
    }


def _hours(span: timedelta) -> float:
    return span.total_seconds() / HOUR_S


def first_at_risk(alerts: Iterable[Alert], shipments: dict[str, Shipment]) -> dict[str, Alert]:
    """Return each shipment's first ``AT_RISK`` detected at or before its delivery."""
    first: dict[str, Alert] = {}
    for alert in alerts:
        shipment = shipments.get(alert.shipment_id or "")
        if alert.kind != "AT_RISK" or shipment is None or shipment.delivered is None:
            continue
        if alert.detected_at > shipment.delivered:
            continue
        known = first.get(alert.shipment_id or "")
        if known is None or alert.detected_at < known.detected_at:
            first[alert.shipment_id or ""] = alert
    return first


def confusion(
    shipments: dict[str, Shipment],
    flagged: dict[str, Alert],
    keep: Callable[[Shipment], bool] | None = None,
) -> dict[str, Any]:
    """Return delivered, late, flagged, TP/FP/FN, precision, recall and F1 of ``keep``'s."""
    counts = Counter[str]()
    for shipment_id, shipment in shipments.items():
        if shipment.delivered is None or (keep is not None and not keep(shipment)):
            continue
        hit = shipment_id in flagged
        counts["delivered"] += 1
        counts["late"] += shipment.late
        counts["flagged"] += hit
        counts["tp"] += hit and shipment.late
        counts["fp"] += hit and not shipment.late
        counts["fn"] += shipment.late and not hit
    precision = counts["tp"] / counts["flagged"] if counts["flagged"] else None
    recall = counts["tp"] / counts["late"] if counts["late"] else None
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else None
    return {
        **{key: counts[key] for key in ("delivered", "late", "flagged", "tp", "fp", "fn")},
        "precision": None if precision is None else round(precision, 4),
        "recall": None if recall is None else round(recall, 4),
        "f1": None if f1 is None else round(f1, 4),
    }


def false_positives(
    shipments: dict[str, Shipment], flagged: dict[str, Alert], alerts: list[Alert]
) -> dict[str, Any]:
    """Break the flagged on-time shipments down by source, lane, clearing and margin."""
    cleared = {alert.resolves: alert.detected_at for alert in alerts if alert.kind == "RESOLVED"}
    counts = Counter[str]()
    for shipment_id, alert in flagged.items():
        shipment = shipments[shipment_id]
        if shipment.late or shipment.delivered is None:
            continue
        counts[f"source_{_source(alert.detail)}"] += 1
        counts["disrupted_lane" if shipment.lane_key == DISRUPTED_LANE else "other_lanes"] += 1
        counts["disrupted_shipment"] += shipment.disrupted
        resolved_at = cleared.get(alert.alert_id)
        counts["cleared_before_delivery"] += bool(resolved_at and resolved_at < shipment.delivered)
        counts["delivered_within_6h_of_promise"] += (
            shipment.promise - shipment.delivered <= CLOSE_CALL
        )
    return dict(sorted(counts.items()))


def lead_times(shipments: dict[str, Shipment], flagged: dict[str, Alert]) -> dict[str, Any]:
    """Hours from the first ``AT_RISK`` of each true positive to its promise and delivery."""
    before_promise, before_delivery = [], []
    for shipment_id, alert in flagged.items():
        shipment = shipments[shipment_id]
        if shipment.late and shipment.delivered is not None:
            before_promise.append(_hours(shipment.promise - alert.detected_at))
            before_delivery.append(_hours(shipment.delivered - alert.detected_at))
    return {
        "hours_before_promise": _spread(before_promise),
        "hours_before_delivery": _spread(before_delivery),
    }


def against_carrier_eta(
    shipments: dict[str, Shipment], flagged: dict[str, Alert]
) -> dict[str, Any]:
    """Compare, for late shipments, the first ``AT_RISK`` with the carrier's first ETA slip.

    The slip is the first carrier scan before delivery whose ``eta`` is after the promise.
    """
    counts = Counter[str]()
    earlier_by: list[float] = []
    for shipment_id, shipment in shipments.items():
        if not shipment.late:
            continue
        alert = flagged.get(shipment_id)
        slip = shipment.eta_slip
        if alert is None:
            counts["not_flagged"] += 1
        elif slip is None:
            counts["flagged_carrier_eta_never_slipped"] += 1
        elif alert.detected_at < slip:
            counts["flagged_before_eta_slip"] += 1
            earlier_by.append(_hours(slip - alert.detected_at))
        elif alert.detected_at == slip:
            counts["flagged_at_eta_slip"] += 1
        else:
            counts["flagged_after_eta_slip"] += 1
    return {**dict(sorted(counts.items())), "hours_earlier": _spread(earlier_by)}


def at_risk_quality(shipments: dict[str, Shipment], alerts: list[Alert]) -> dict[str, Any]:
    """Everything about ``AT_RISK`` against actual lateness."""
    flagged = first_at_risk(alerts, shipments)
    late_sources = Counter(
        _source(alert.detail) for sid, alert in flagged.items() if shipments[sid].late
    )
    return {
        "overall": confusion(shipments, flagged),
        "disrupted_lane": confusion(shipments, flagged, lambda s: s.lane_key == DISRUPTED_LANE),
        "other_lanes": confusion(shipments, flagged, lambda s: s.lane_key != DISRUPTED_LANE),
        "disrupted_shipments": confusion(shipments, flagged, lambda s: s.disrupted),
        "first_trigger_source": dict(Counter(_source(a.detail) for a in flagged.values())),
        "first_trigger_source_true_positives": dict(late_sources),
        "false_positives": false_positives(shipments, flagged, alerts),
        "lead_time_true_positives": lead_times(shipments, flagged),
        "against_carrier_eta": against_carrier_eta(shipments, flagged),
    }


# --- lanes -------------------------------------------------------------------------------


def lane_alerts(
    shipments: dict[str, Shipment], alerts: list[Alert], manifest_disrupted: int
) -> dict[str, Any]:
    """Degradation timing on the disrupted lane; shipment alerts per lane group.

    ``manifest_disrupted`` is the simulator's own count, which the shipments marked
    disrupted here must equal.
    """
    first, last = disrupted_deliveries(shipments)
    return {
        "disrupted_shipments": sum(s.disrupted for s in shipments.values()),
        "disrupted_shipments_in_manifest": manifest_disrupted,
        "first_disrupted_delivery": first.isoformat(),
        "last_disrupted_delivery": last.isoformat(),
        **degradation(shipments, alerts),
        "per_group": {
            group: _shipment_alerts(shipments, alerts, group == "disrupted_lane")
            for group in ("disrupted_lane", "other_lanes")
        },
    }


def disrupted_deliveries(shipments: dict[str, Shipment]) -> tuple[datetime, datetime]:
    """Return the first and last delivery of a disrupted shipment."""
    disrupted = sorted(s.delivered for s in shipments.values() if s.disrupted and s.delivered)
    return disrupted[0], disrupted[-1]


def degradation(shipments: dict[str, Shipment], alerts: list[Alert]) -> dict[str, Any]:
    """Return the ``LANE_DEGRADED`` episodes, on the disrupted lane and elsewhere.

    Times are hours after the first disrupted delivery (degraded) and after the last
    one (resolved; None if still degraded when the stream ends).
    """
    first, last = disrupted_deliveries(shipments)
    resolved = {alert.resolves: alert for alert in alerts if alert.kind == "RESOLVED"}
    episodes: dict[str, list[dict[str, Any]]] = {"disrupted_lane": [], "other_lanes": []}
    for alert in alerts:
        if alert.kind != "LANE_DEGRADED":
            continue
        end = resolved.get(alert.alert_id)
        group = "disrupted_lane" if alert.lane_key == DISRUPTED_LANE else "other_lanes"
        episodes[group].append(
            {
                "lane": alert.lane_key,
                "degraded_h_after_first_disrupted_delivery": round(
                    _hours(alert.detected_at - first), 1
                ),
                "resolved_h_after_last_disrupted_delivery": None
                if end is None
                else round(_hours(end.detected_at - last), 1),
                "detail": alert.detail,
            }
        )
    return {f"degraded_{group}": found for group, found in episodes.items()}


def _shipment_alerts(
    shipments: dict[str, Shipment], alerts: list[Alert], on_lane: bool
) -> dict[str, Any]:
    count = sum((s.lane_key == DISRUPTED_LANE) == on_lane for s in shipments.values())
    kinds = Counter(
        a.kind
        for a in alerts
        if a.kind in ("STALLED", "NOT_DISPATCHED") and (a.lane_key == DISRUPTED_LANE) == on_lane
    )
    return {
        "shipments": count,
        **{
            kind: {
                "alerts": kinds[kind],
                "per_1000_shipments": round(1000 * kinds[kind] / count, 1),
            }
            for kind in ("STALLED", "NOT_DISPATCHED")
        },
    }


def alert_counts(alerts: list[Alert]) -> dict[str, Any]:
    """Return alerts per kind, and ``RESOLVED`` per kind resolved."""
    kind_of = {alert.alert_id: alert.kind for alert in alerts}
    return {
        "by_kind": dict(sorted(Counter(alert.kind for alert in alerts).items())),
        "resolved_by_kind": dict(
            sorted(
                Counter(
                    kind_of.get(alert.resolves or "", "?")
                    for alert in alerts
                    if alert.kind == "RESOLVED"
                ).items()
            )
        ),
    }


# --- the tracking logic alone -------------------------------------------------------------


def tracked_events(inputs: Path) -> tuple[int, list[EventEnvelope]]:
    """Return the input messages and the decoded events route tracking takes, in order."""
    messages, events = 0, []
    for message in merged_messages(inputs):
        messages += 1
        try:
            event = decode_event(InputTopic(message.topic), message.value)
        except ContractError:
            continue
        if isinstance(event, TRACKED):
            events.append(event)
    return messages, events


def track(events: list[EventEnvelope], settings: TrackingSettings) -> tuple[float, list[Alert]]:
    """Run the router and the lane trackers over ``events``; return seconds and alerts."""
    router = TrackingRouter(settings)
    lanes: dict[str, LaneTracker] = {}
    outputs: list[Any] = []
    started = time.perf_counter()
    for event in events:
        for key, item in router.route(event):
            lane = lanes.get(key)
            if lane is None:
                lane = lanes[key] = LaneTracker(settings, item.carrier_id, item.lane)
            outputs += lane.apply(item.payload)
    seconds = time.perf_counter() - started
    return seconds, [_alert(record) for record in outputs if isinstance(record, RouteAlert)]


def _alert(record: RouteAlert) -> Alert:
    return Alert(
        record.alert_id,
        record.kind.value,
        f"{record.carrier_id}|{record.lane}",
        record.shipment_id,
        record.detected_at,
        record.detail,
        record.resolves_alert_id,
    )


def tracker_throughput(
    events: list[EventEnvelope], settings: TrackingSettings, repeats: int
) -> tuple[dict[str, Any], list[Alert]]:
    """Time the tracking logic ``repeats`` times; return the result and the first alerts."""
    runs = [track(events, settings) for _ in range(repeats)]
    seconds = statistics.median(run[0] for run in runs)
    return {
        "events": len(events),
        "repeats": repeats,
        "median_seconds": round(seconds, 2),
        "events_per_second": round(len(events) / seconds),
    }, runs[0][1]


def variants(
    events: list[EventEnvelope], settings: TrackingSettings, shipments: dict[str, Shipment]
) -> list[dict[str, Any]]:
    """``AT_RISK`` quality and lane degradation under each of ``VARIANTS``.

    Each variant's true positives are also compared with the first variant's (the
    prediction off): how many it flags earlier, and by how many hours (p50).
    """
    results = []
    reference: dict[str, Alert] = {}
    for name, change in VARIANTS:
        log(f"variant: {name}")
        changed = settings.model_copy(update=change)
        _, alerts = track(events, changed)
        quality = at_risk_quality(shipments, alerts)
        flagged = first_at_risk(alerts, shipments)
        reference = reference or flagged
        results.append(
            {
                "variant": name,
                "settings": {key: changed.model_dump(mode="json")[key] for key in change},
                **{key: quality["overall"][key] for key in ("flagged", "tp", "fp", "fn")},
                **{key: quality["overall"][key] for key in ("precision", "recall", "f1")},
                "disrupted_lane": quality["disrupted_lane"],
                "lead_h_before_promise": quality["lead_time_true_positives"][
                    "hours_before_promise"
                ],
                "first_trigger_source": quality["first_trigger_source"],
                "against_carrier_eta": quality["against_carrier_eta"],
                "earlier_than_prediction_off": earlier(shipments, flagged, reference),
                "lane_degraded": degradation(shipments, alerts),
            }
        )
    return results


def earlier(
    shipments: dict[str, Shipment], flagged: dict[str, Alert], reference: dict[str, Alert]
) -> dict[str, Any]:
    """Late shipments ``flagged`` earlier (or only) than in ``reference``, and by how much."""
    hours = []
    for shipment_id, alert in flagged.items():
        if not shipments[shipment_id].late:
            continue
        known = reference.get(shipment_id)
        if known is None or alert.detected_at < known.detected_at:
            hours.append(_hours(known.detected_at - alert.detected_at) if known else None)
    gains = [gain for gain in hours if gain is not None]
    return {
        "late_flagged_earlier": len(gains),
        "late_flagged_only_here": len(hours) - len(gains),
        "hours_earlier": _spread(gains),
    }


# --- report -------------------------------------------------------------------------------


def code_version() -> dict[str, Any]:
    """Return the commit measured and whether the package sources differ from it."""
    folders = ["models", "flows", "connectors", "quality"]
    changes = output_of(["git", "-C", str(REPO_DIR), "status", "--porcelain", "--", *folders])
    return {
        "commit": output_of(["git", "-C", str(REPO_DIR), "rev-parse", "HEAD"]),
        "package_sources_modified": bool(changes),
    }


def render(result: dict[str, Any]) -> str:
    """Return the printed summary."""
    quality, lanes = result["at_risk"], result["lanes"]
    header = ["AT_RISK", "delivered", "late", "flagged", "TP", "FP", "FN", "P", "R", "F1"]
    keys = ("delivered", "late", "flagged", "tp", "fp", "fn", "precision", "recall", "f1")
    rows = [
        [group, *(str(quality[group][key]) for key in keys)]
        for group in ("overall", "disrupted_lane", "other_lanes", "disrupted_shipments")
    ]
    flow, tracker = result["flow"], result["tracker"]
    return "\n\n".join(
        [
            table(header, rows),
            f"alerts: {result['alerts']}\nROUTE_DELAY_RISK exceptions: {result['exceptions']}",
            f"true positives' lead time: {quality['lead_time_true_positives']}",
            f"first trigger: {quality['first_trigger_source']}; of true positives: "
            f"{quality['first_trigger_source_true_positives']}",
            f"false positives: {quality['false_positives']}",
            f"against the carrier ETA: {quality['against_carrier_eta']}",
            "disrupted lane: "
            + json.dumps({k: v for k, v in lanes.items() if k != "per_group"}, indent=1),
            f"STALLED / NOT_DISPATCHED: {lanes['per_group']}",
            _variant_table(result["variants"]),
            f"flow: {flow['seconds']} s for {flow['input_events']:,} events "
            f"({flow['events_per_second']:,}/s); tracking logic alone: "
            f"{tracker['median_seconds']} s for {tracker['events']:,} events "
            f"({tracker['events_per_second']:,}/s), matches the flow: {tracker['matches_flow']}",
        ]
    )


def _variant_table(results: list[dict[str, Any]]) -> str:
    header = [
        "variant",
        "flagged",
        "P",
        "R",
        "lead p50 h",
        "only at promise",
        "before ETA slip",
        "earlier than off (p50 h)",
        "degraded h after 1st",
        "other lanes degraded",
    ]
    rows = []
    for v in results:
        gain = v["earlier_than_prediction_off"]
        degraded = v["lane_degraded"]
        rows.append(
            [
                v["variant"],
                str(v["flagged"]),
                str(v["precision"]),
                str(v["recall"]),
                str(v["lead_h_before_promise"]["p50"]),
                str(v["first_trigger_source"].get(NOT_DELIVERED, 0)),
                str(v["against_carrier_eta"].get("flagged_before_eta_slip", 0)),
                f"{gain['late_flagged_earlier']} ({gain['hours_earlier']['p50']})",
                ", ".join(
                    str(e["degraded_h_after_first_disrupted_delivery"])
                    for e in degraded["degraded_disrupted_lane"]
                )
                or "-",
                str(len(degraded["degraded_other_lanes"])),
            ]
        )
    return table(header, rows)


def measure(orders: int, seed: int, repeats: int) -> dict[str, Any]:
    """Simulate, run the flow, judge its alerts, time the tracker; return the result."""
    settings = Settings().tracking_settings()
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="allocflow-route-bench-") as tmp:
        inputs, out = Path(tmp) / "in", Path(tmp) / "out"
        log(f"simulating {orders:,} orders")
        simulate(orders, seed, inputs)
        log("running the flow")
        flow_seconds = run_flow(inputs, out)
        shipments = load_shipments(inputs)
        alerts = load_alerts(out)
        exceptions = exception_counts(out)
        manifest = json.loads((inputs / "manifest.json").read_text())
        log("decoding the stream for the tracker")
        messages, events = tracked_events(inputs)
    log("timing the tracker")
    tracker, tracker_alerts = tracker_throughput(events, settings, repeats)
    tracker["matches_flow"] = {a.alert_id for a in tracker_alerts} == {a.alert_id for a in alerts}
    effects = manifest["scenario_effects"]["carrier_disruption"]
    return {
        "command": " ".join(["bench/route_delays.py", *sys.argv[1:]]),
        "scenario": "carrier-disruption",
        "orders": orders,
        "seed": seed,
        "disrupted_lane": DISRUPTED_LANE,
        "settings": settings.model_dump(mode="json"),
        "flow": {
            "seconds": round(flow_seconds, 1),
            "input_events": messages,
            "events_per_second": round(messages / flow_seconds),
        },
        "alerts": alert_counts(alerts),
        "exceptions": exceptions,
        "at_risk": at_risk_quality(shipments, alerts),
        "lanes": lane_alerts(shipments, alerts, effects["shipments_disrupted"]),
        "tracker": tracker,
        "variants": variants(events, settings, shipments),
        "code": code_version(),
        "machine": machine_facts(),
        "load_average": {"before": load_before, "after": load_average()},
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main() -> None:
    """Measure (or show the saved results) and print the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--quick", action="store_true", help="2,000 orders, 1 repeat, results printed only"
    )
    parser.add_argument("--show", action="store_true", help="print the saved results")
    args = parser.parse_args()
    if args.show:
        print(render(json.loads(RESULTS_PATH.read_text())))
        return
    if args.quick:
        args.orders, args.repeats = 2_000, 1
    result = measure(args.orders, args.seed, args.repeats)
    if not args.quick:
        RESULTS_PATH.write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))


if __name__ == "__main__":
    main()
