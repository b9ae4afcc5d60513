"""A file run with a recovery store, killed twice with SIGKILL, ends with the files of a clean run.

The file sinks truncate to their snapshot on resume, so the output files hold every
record exactly once; the state of every step (stock and allocations, backorder queues,
open exceptions, the gate's dedupe window and orphan deadlines, route deadlines) comes
back from the snapshot, so the records are the same as without the crashes.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from allocflow.flows.cli import main
from allocflow.models.topics import OutputTopic

pytestmark = pytest.mark.integration


def _records(out: Path, topic: OutputTopic) -> list[str]:
    """The file's records in a stable order; an order's statuses reduced to its current one.

    The current status is compared without its id and version: which statuses precede
    it depends on batching (see ``OrderStatus``), its content does not.
    """
    path = out / f"{topic.value}.jsonl"
    statuses: dict[str, dict[str, object]] = {}
    others: list[str] = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record.get("record_type") == "order.status":
            kept = statuses.get(record["order_id"])
            if kept is None or record["version"] > kept["version"]:  # type: ignore[operator]
                statuses[record["order_id"]] = record
        else:
            others.append(line)
    current = [
        {k: v for k, v in s.items() if k not in {"record_id", "version"}} for s in statuses.values()
    ]
    return sorted(others) + sorted(json.dumps(s, sort_keys=True) for s in current)


def _lines(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def _run_until(command: list[str], decisions: Path, lines: int, log: Path) -> bool:
    """Run ``command`` snapshotting every second; SIGKILL it once ``decisions`` holds ``lines``.

    Returns:
        True if it was killed, False if it finished first.
    """
    env = os.environ | {"ALLOCFLOW_SNAPSHOT_INTERVAL_S": "1"}
    with log.open("ab") as handle:
        process = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)
    try:
        while process.poll() is None:
            if _lines(decisions) >= lines:
                process.send_signal(signal.SIGKILL)
                process.wait()
                return True
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, log.read_text()[-3000:]
    return False


def test_two_kills_change_no_output(tmp_path: Path) -> None:
    stream, clean, crashed = tmp_path / "in", tmp_path / "clean", tmp_path / "crashed"
    simulate = ["simulate", "--orders", "1500", "--seed", "4", "--faults", "all"]
    simulate += ["--fault-rate", "0.005", "--scenario", "carrier-disruption"]
    assert main([*simulate, "--out", str(stream), "--no-progress"]) == 0
    assert main(["run", "--input", str(stream), "--out", str(clean)]) == 0
    store = tmp_path / "store"
    assert main(["recovery", "init", str(store)]) == 0

    command = [sys.executable, "-m", "allocflow.flows.cli", "run", "--input", str(stream)]
    command += ["--out", str(crashed), "--recovery-dir", str(store)]
    decisions = crashed / f"{OutputTopic.ALLOCATION_DECISIONS.value}.jsonl"
    total = _lines(clean / f"{OutputTopic.ALLOCATION_DECISIONS.value}.jsonl")
    log = tmp_path / "crashed.log"
    kills = [_run_until(command, decisions, int(total * share), log) for share in (0.3, 0.6)]
    assert kills == [True, True]
    assert "resuming from its newest snapshot" in log.read_text()
    assert not _run_until(command, decisions, total * 10, log)

    for topic in OutputTopic:
        assert _records(crashed, topic) == _records(clean, topic), topic
