"""Chaos: the pipeline killed with SIGKILL three times loses, duplicates and changes nothing.

Runs ``bench/chaos.py`` (the same harness as the benchmark, smaller): a backlog in the
embedded broker, a reference run, and a run with a recovery store killed at random
moments while it writes and restarted each time; then every output topic (by record
id), every landed fact table and every KPI view are compared. A run stopped by SIGTERM
instead (``docker stop``, Ctrl-C's SIGINT) delivers its outputs and snapshots where it
stopped, so its restart replays nothing at all.
"""

import importlib.util
import signal
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHAOS = Path(__file__).parents[2] / "bench" / "chaos.py"


def _harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("allocflow_bench_chaos", CHAOS)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_three_kills_lose_duplicate_and_change_nothing(tmp_path: Path) -> None:
    chaos = _harness()
    report = chaos.run_chaos(tmp_path, orders=2000, kills=3, seed=5, snapshot_s=1)
    assert len(report.kills) == 3
    by_topic = {comparison.topic: comparison for comparison in report.topics}
    assert by_topic["allocation-decisions"].reference > 5_000
    assert sum(c.replayed for c in report.topics) > 0, "no kill interrupted the output"
    for comparison in report.topics:
        assert (comparison.lost, comparison.duplicated, comparison.mismatched) == (0, 0, 0), (
            comparison
        )
    assert report.table_mismatches
    assert not any(report.table_mismatches.values()), report.table_mismatches
    assert report.view_mismatches
    assert not any(report.view_mismatches.values()), report.view_mismatches
    assert report.clean


def test_stops_on_sigterm_resume_without_replaying_anything(tmp_path: Path) -> None:
    chaos = _harness()
    report = chaos.run_chaos(
        tmp_path, orders=3000, kills=2, seed=3, snapshot_s=5, stop_signal=signal.SIGTERM
    )
    assert len(report.kills) == 2
    for comparison in report.topics:
        assert (comparison.lost, comparison.duplicated, comparison.mismatched) == (0, 0, 0), (
            comparison
        )
        assert comparison.replayed == 0, comparison
    assert not any(report.table_mismatches.values()), report.table_mismatches
    assert not any(report.view_mismatches.values()), report.view_mismatches
    assert report.clean
