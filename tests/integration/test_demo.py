"""`allocflow demo` end to end: broker, simulator, flow, lander, all stopped cleanly."""

import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.integration


def test_demo_runs_the_whole_pipeline_and_lands_every_output(tmp_path: Path) -> None:
    data = tmp_path / "demo-data"
    command = [sys.executable, "-m", "allocflow.flows.cli", "demo", "--exit-when-done"]
    command += ["--no-dashboard", "--orders", "400", "--rate", "4000", "--data-dir", str(data)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    written = result.stdout.split("the flow wrote:")[1].split("latest decision")[0]
    for topic in ("allocation-decisions", "allocation-exceptions", "dead-letter", "dq-alerts"):
        assert topic in written
    assert "route-alerts             route.alert" in written
    assert re.search(r"embedded Kafka broker on 127\.0\.0\.1:\d+ stopped", result.stderr)
    with duckdb.connect(str(data / "allocflow.duckdb"), read_only=True) as con:
        kinds = dict(
            con.execute("SELECT kind, count(*) FROM route_alerts GROUP BY kind").fetchall()
        )
        risks = con.execute(
            "SELECT count(*) FROM exceptions WHERE reason_code = 'ROUTE_DELAY_RISK'"
        ).fetchone()
    assert kinds.get("AT_RISK", 0) > 0
    assert risks is not None
    assert risks[0] > 0
