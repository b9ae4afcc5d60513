"""The gates inside `allocflow run`: the same alerts as the gate alone, every fault reported.

A simulated stream with every fault kind at rate 0.01 goes through the allocation flow
from files (1 worker, 2 threads, 2 processes) and from Kafka. The reference is the gate
run standalone by ``allocflow.quality.accounting`` over the feeds the flow reads.
"""

import json
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from allocflow.connectors.broker import EmbeddedBroker
from allocflow.connectors.kafka_io import read_topic
from allocflow.flows.allocation import ALLOCATION_INPUTS
from allocflow.flows.cli import main
from allocflow.models.dq_alerts import DqAlert
from allocflow.models.topics import InputTopic, OutputTopic
from allocflow.quality.accounting import (
    CHECK_OF_FAULT,
    DEAD_LETTER_FAULTS,
    Accounting,
    InjectedFault,
    account,
    read_faults,
)

pytestmark = pytest.mark.integration

SIMULATE = [
    "simulate",
    "--seed",
    "13",
    "--orders",
    "300",
    "--faults",
    "all",
    "--fault-rate",
    "0.01",
]
FEEDS = {topic.value for topic in ALLOCATION_INPUTS}


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stream")
    assert main([*SIMULATE, "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.fixture(scope="module")
def standalone(stream: Path, tmp_path_factory: pytest.TempPathFactory) -> Accounting:
    """The gate alone over the feeds the allocation flow reads, in its merge order."""
    feeds = tmp_path_factory.mktemp("feeds")
    for name in (*(f"{feed}.jsonl" for feed in FEEDS), "manifest.json"):
        shutil.copy(stream / name, feeds / name)
    return account(feeds)


@pytest.fixture(scope="module")
def faults(stream: Path) -> list[InjectedFault]:
    return [fault for fault in read_faults(stream / "manifest.json") if fault.topic in FEEDS]


def _alerts(out: Path) -> list[DqAlert]:
    path = out / f"{OutputTopic.DQ_ALERTS.value}.jsonl"
    return [DqAlert.model_validate_json(line) for line in path.read_bytes().splitlines()]


def _dead_letters(out: Path) -> int:
    return len((out / f"{OutputTopic.DEAD_LETTER.value}.jsonl").read_bytes().splitlines())


def test_the_stream_has_every_fault_the_gates_check(faults: list[InjectedFault]) -> None:
    kinds = Counter(fault.kind for fault in faults)
    expected = {*DEAD_LETTER_FAULTS, "duplicate", "late", "orphan_shipment", "orphan_scan"}
    assert set(kinds) >= expected
    assert kinds["negative_stock"] > 0


@pytest.mark.parametrize("workers", [1, 2])
def test_file_run_alerts_equal_the_gate_alone(
    stream: Path,
    standalone: Accounting,
    faults: list[InjectedFault],
    tmp_path: Path,
    workers: int,
) -> None:
    args = ["run", "--input", str(stream), "--out", str(tmp_path), "--workers", str(workers)]
    assert main(args) == 0
    alerts = _alerts(tmp_path)
    assert alerts == list(standalone.alerts)
    raised = {(alert.check, alert.event_id) for alert in alerts}
    missing = [
        fault
        for fault in faults
        if fault.kind in CHECK_OF_FAULT
        and (CHECK_OF_FAULT[fault.kind], fault.event_id) not in raised
    ]
    assert missing == []
    assert _dead_letters(tmp_path) == sum(fault.kind in DEAD_LETTER_FAULTS for fault in faults)


def test_two_processes_raise_the_same_alerts(
    stream: Path,
    standalone: Accounting,
    tmp_path: Path,
    run_in_two_processes: Callable[[Path, Path], None],
) -> None:
    run_in_two_processes(stream, tmp_path)
    assert _alerts(tmp_path) == list(standalone.alerts)


def test_kafka_run_produces_the_same_alerts(
    kafka_broker: EmbeddedBroker,
    pipeline_topics: dict[InputTopic | OutputTopic, str],
    standalone: Accounting,
    tmp_path: Path,
) -> None:
    names = pipeline_topics
    assert main([*SIMULATE, "--no-progress", "--manifest", str(tmp_path / "manifest.json")]) == 0
    assert main(["run", "--no-tail"]) == 0
    expected = len(standalone.alerts)
    records = read_topic(
        kafka_broker.connection(), names[OutputTopic.DQ_ALERTS], expected=expected, timeout_s=60
    )
    alerts = [DqAlert.model_validate_json(record.value or b"") for record in records]
    assert Counter(map(_finding, alerts)) == Counter(map(_finding, standalone.alerts))
    assert all(
        record.key == DqAlert.model_validate_json(record.value or b"").feed.encode()
        for record in records
    )


def _finding(alert: DqAlert) -> tuple[str, str, str | None, tuple[tuple[str, str], ...]]:
    """What an alert is about; its detection time (and so its id) follows the merge order.

    Kafka merges partitions by event time rather than the files' line order, so the
    gate's clock, hence ``detected_at``, can differ in ties and out-of-order stretches.
    """
    return alert.check.value, alert.feed, alert.event_id, tuple(sorted(alert.entity.items()))


def test_the_allowed_lateness_setting_reaches_the_flow(
    landed_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def late_alerts(out: Path) -> int:
        lines = (out / "dq-alerts.jsonl").read_bytes().splitlines()
        return sum(1 for line in lines if json.loads(line)["check"] == "late")

    strict, lenient = tmp_path / "strict", tmp_path / "lenient"
    assert main(["run", "--input", str(landed_run / "in"), "--out", str(strict)]) == 0
    monkeypatch.setenv("ALLOCFLOW_DQ_ALLOWED_LATENESS_S", str(30 * 86_400))
    assert main(["run", "--input", str(landed_run / "in"), "--out", str(lenient)]) == 0
    assert late_alerts(strict) > 0
    assert late_alerts(lenient) == 0
