"""The largest accepted settings and policy durations are safe: a run at the limits completes.

Before the limits, ``3e12`` seconds passed the start check and crashed the flow at the
first event that added it to an event time (OverflowError in the quality gate, the
route tracker and the order roll-up). Every duration setting and the policy's inbound
horizon are set to their maximum here, over a stream with injected faults, so every
deadline the flow computes uses them.
"""

import json
from pathlib import Path
from typing import Any, get_origin

import pytest
from pydantic.fields import FieldInfo

from allocflow.connectors.policy_file import default_policy
from allocflow.flows.cli import main
from allocflow.flows.settings import ENV_PREFIX, Settings
from allocflow.models.limits import MAX_DURATION_HOURS

pytestmark = pytest.mark.integration


def _upper_bound(info: FieldInfo) -> float:
    """Return a duration setting's largest accepted value."""
    metadata: list[Any] = list(info.metadata)
    if get_origin(info.annotation) is dict:
        value_type = info.annotation.__args__[1]  # type: ignore[union-attr]
        metadata = [item for inner in value_type.__metadata__ for item in inner.metadata]
    caps = [item.le for item in metadata if hasattr(item, "le")]
    assert caps, info
    return float(min(caps))


def test_a_run_with_every_duration_at_its_limit_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, info in Settings.model_fields.items():
        if not name.endswith("_s"):
            continue
        limit = _upper_bound(info)
        is_map = get_origin(info.annotation) is dict
        value = json.dumps({"orders": limit, "shipments": limit}) if is_map else repr(limit)
        monkeypatch.setenv(f"{ENV_PREFIX}{name.upper()}", value)
    policy = default_policy().model_dump(mode="json")
    policy["backorders"]["use_inbound_within_hours"] = MAX_DURATION_HOURS
    policy_path = tmp_path / "policy.yaml"
    policy_path.write_text(json.dumps(policy))
    stream = tmp_path / "stream"
    simulate = ["simulate", "--orders", "150", "--seed", "11", "--faults", "all"]
    assert main([*simulate, "--fault-rate", "0.05", "--out", str(stream), "--no-progress"]) == 0
    capsys.readouterr()
    out = tmp_path / "out"
    code = main(["run", "--input", str(stream), "--out", str(out), "--policy", str(policy_path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "valid" in captured.out.splitlines()[0]
    assert (out / "allocation-decisions.jsonl").stat().st_size > 0
    assert (out / "dq-alerts.jsonl").stat().st_size > 0
