"""Route tracking inside `allocflow run`: the same alerts as the plain tracker, any worker count.

A carrier-disruption stream goes through the dataflow from files with 1 worker, 2
worker threads and 2 processes, and from Kafka. The reference is the plain-Python
router and lane trackers fed the merged, decoded shipment and carrier events in the
dataflow's order. The
file replay runs days of event time in seconds of wall time: the tracker keeps its
deadlines in event time and uses no wall-clock timer, so the replay neither waits nor
spins, and its alerts are exactly the reference's. A tailing Kafka run over a backlog
months behind the wall clock raises every alert, then idles without burning CPU
(Bytewax's event clock spins in that case, bytewax/bytewax#578), and SIGTERM stops it
cleanly.
"""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from allocflow.connectors.broker import EmbeddedBroker
from allocflow.connectors.kafka_io import read_topic
from allocflow.connectors.topic_counts import message_count
from allocflow.flows.cli import main
from allocflow.flows.tracking.lane import LaneTracker
from allocflow.flows.tracking.router import TrackingRouter, is_tracked
from allocflow.flows.tracking.settings import TrackingSettings
from allocflow.models.codec import decode_event
from allocflow.models.route_alerts import RouteAlert, RouteAlertKind
from allocflow.models.topics import InputTopic, OutputTopic
from allocflow.quality.accounting import merged_messages

pytestmark = pytest.mark.integration

SIMULATE = [
    "simulate",
    "--seed",
    "5",
    "--orders",
    "1500",
    "--scenario",
    "carrier-disruption",
    "--faults",
    "none",
]

Records = list[str]


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stream")
    assert main([*SIMULATE, "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.fixture(scope="module")
def reference(stream: Path) -> tuple[Records, Records]:
    """Alerts and exceptions of the plain tracker over the stream, in the dataflow's order."""
    settings = TrackingSettings()
    router, lanes = TrackingRouter(settings), dict[str, LaneTracker]()
    records = []
    for message in merged_messages(stream):
        event = decode_event(InputTopic(message.topic), message.value)
        if not is_tracked(event):
            continue
        for key, item in router.route(event):
            lane = lanes.setdefault(key, LaneTracker(settings, item.carrier_id, item.lane))
            records += lane.apply(item.payload)
    alerts = sorted(r.model_dump_json() for r in records if isinstance(r, RouteAlert))
    exceptions = sorted(r.model_dump_json() for r in records if not isinstance(r, RouteAlert))
    return alerts, exceptions


def _outputs(out: Path) -> tuple[Records, Records]:
    alerts = (out / f"{OutputTopic.ROUTE_ALERTS.value}.jsonl").read_text().splitlines()
    lines = (out / f"{OutputTopic.ALLOCATION_EXCEPTIONS.value}.jsonl").read_text().splitlines()
    route_exceptions = [line for line in lines if '"ROUTE_DELAY_RISK"' in line]
    return _normalised(alerts), _normalised(route_exceptions)


def _normalised(lines: list[str]) -> Records:
    return sorted(json.dumps(json.loads(line), separators=(",", ":")) for line in lines)


def _as_json(records: Records) -> Records:
    return sorted(json.dumps(json.loads(r), separators=(",", ":")) for r in records)


def test_the_disruption_raises_every_alert_kind(reference: tuple[Records, Records]) -> None:
    alerts, exceptions = reference
    kinds = Counter(json.loads(alert)["kind"] for alert in alerts)
    assert set(kinds) == {kind.value for kind in RouteAlertKind}
    opening = sum(kinds[k] for k in ("NOT_DISPATCHED", "AT_RISK", "STALLED", "LANE_DEGRADED"))
    assert kinds["RESOLVED"] <= opening
    states = Counter(json.loads(exception)["state"] for exception in exceptions)
    assert states["open"] >= states["closed"] > 0
    degraded = [json.loads(a) for a in alerts if json.loads(a)["kind"] == "LANE_DEGRADED"]
    assert {(a["carrier_id"], a["lane"]) for a in degraded} == {
        ("CARR-NORTHSTAR", "DC-ATL>southeast")
    }


@pytest.mark.parametrize("workers", [1, 2])
def test_file_run_alerts_equal_the_plain_tracker(
    stream: Path, reference: tuple[Records, Records], tmp_path: Path, workers: int
) -> None:
    args = ["run", "--input", str(stream), "--out", str(tmp_path), "--workers", str(workers)]
    assert main(args) == 0
    alerts, exceptions = _outputs(tmp_path)
    assert alerts == _as_json(reference[0])
    assert exceptions == _as_json(reference[1])


def test_two_processes_raise_the_same_alerts(
    stream: Path,
    reference: tuple[Records, Records],
    tmp_path: Path,
    run_in_two_processes: Callable[[Path, Path], None],
) -> None:
    run_in_two_processes(stream, tmp_path)
    alerts, exceptions = _outputs(tmp_path)
    assert alerts == _as_json(reference[0])
    assert exceptions == _as_json(reference[1])


@pytest.fixture
def backlog(
    pipeline_topics: dict[InputTopic | OutputTopic, str], tmp_path: Path
) -> dict[InputTopic | OutputTopic, str]:
    """The simulated stream produced into the pipeline's input topics; their names."""
    assert main([*SIMULATE, "--no-progress", "--manifest", str(tmp_path / "manifest.json")]) == 0
    return pipeline_topics


def test_kafka_run_produces_the_route_alerts(
    kafka_broker: EmbeddedBroker,
    backlog: dict[InputTopic | OutputTopic, str],
    reference: tuple[Records, Records],
) -> None:
    assert main(["run", "--no-tail"]) == 0
    expected = [json.loads(alert) for alert in reference[0]]
    records = read_topic(
        kafka_broker.connection(),
        backlog[OutputTopic.ROUTE_ALERTS],
        expected=len(expected),
        timeout_s=60,
    )
    produced = [json.loads(record.value or b"") for record in records]
    assert Counter(map(_finding, produced)) == Counter(map(_finding, expected))
    assert all(
        record.key == (alert["shipment_id"] or f"{alert['carrier_id']}|{alert['lane']}").encode()
        for record, alert in zip(records, produced, strict=True)
    )


IDLE_WINDOW_S = 5.0
IDLE_CPU_SHARE = 0.25
"""Most of one core a caught-up run may use while it waits: a spinning event clock
uses all of it; polling Kafka uses about 1 %."""


def test_a_tailing_run_behind_the_wall_clock_idles_and_stops_on_sigterm(
    kafka_broker: EmbeddedBroker,
    backlog: dict[InputTopic | OutputTopic, str],
    reference: tuple[Records, Records],
    tmp_path: Path,
) -> None:
    log = tmp_path / "run.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "allocflow.flows.cli", "run"],
            env=dict(os.environ),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        alerts = backlog[OutputTopic.ROUTE_ALERTS]
        _wait_for(lambda: message_count(kafka_broker.connection(), alerts) >= len(reference[0]))
        busy = _cpu_seconds(process.pid)
        time.sleep(IDLE_WINDOW_S)
        assert _cpu_seconds(process.pid) - busy < IDLE_CPU_SHARE * IDLE_WINDOW_S
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 130
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text()
    assert "stopped on request, outputs delivered" in text
    assert "panicked" not in text
    assert "leaked" not in text
    assert message_count(kafka_broker.connection(), alerts) == len(reference[0])


def _wait_for(condition: Callable[[], bool], timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the tailing run did not catch up in time"
        time.sleep(0.5)


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _finding(alert: dict[str, Any]) -> tuple[str, str | None, str]:
    """What an alert is about: Kafka merges partitions by event time, files by line order."""
    return alert["kind"], alert["shipment_id"], alert["lane"]
