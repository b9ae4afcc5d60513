"""Detection of injected faults per kind and scenario, and alerts on fault-free streams.

For every simulator scenario, one stream with every fault kind injected
(``allocflow simulate --orders N --scenario S --faults all --fault-rate R --seed 7``)
and one without faults (``--faults none``) are replayed through the gates with the
default settings (``allocflow.quality.accounting.account``). Printed and written to
``bench/results/quality_detection.json``: per scenario and fault kind, injected and
detected counts; false alerts (explained by no injected fault) of the faulty stream;
and every alert of the fault-free stream (each is a false alert).

Usage::

    .venv/bin/python bench/quality_detection.py [--orders 2000] [--fault-rate 0.005]
"""

import argparse
import contextlib
import io
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from allocation import machine_facts, output_of, table

from allocflow.connectors.simulator.scenarios import SCENARIOS
from allocflow.flows.cli import main as allocflow
from allocflow.quality.accounting import account

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "quality_detection.json"
SEED = 7


def simulate(out: Path, orders: int, scenario: str, faults: str, fault_rate: float) -> None:
    """Write one simulated stream to ``out``."""
    args = ["simulate", "--orders", str(orders), "--scenario", scenario, "--seed", str(SEED)]
    args += ["--faults", faults, "--fault-rate", str(fault_rate), "--out", str(out)]
    with contextlib.redirect_stdout(io.StringIO()):
        code = allocflow([*args, "--no-progress"])
    if code != 0:
        raise RuntimeError(f"simulating {scenario} failed")


def measure(work: Path, orders: int, scenario: str, fault_rate: float) -> dict[str, Any]:
    """Account for the faulty and the fault-free stream of ``scenario``."""
    faulty, clean = work / f"{scenario}-faults", work / f"{scenario}-clean"
    simulate(faulty, orders, scenario, "all", fault_rate)
    simulate(clean, orders, scenario, "none", fault_rate)
    with_faults, without = account(faulty), account(clean)
    return {
        "scenario": scenario,
        "inputs": with_faults.inputs,
        "balanced": with_faults.balanced,
        "detections": {
            kind: {"injected": d.injected, "detected": d.detected}
            for kind, d in with_faults.detections.items()
        },
        "false_alerts": len(with_faults.false_alerts),
        "fault_free_inputs": without.inputs,
        "fault_free_alerts": dict(Counter(alert.check.value for alert in without.alerts)),
    }


def main() -> int:
    """Measure every scenario, print the table and write the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--fault-rate", type=float, default=0.005)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="allocflow-dq-detect-") as work:
        results = [
            measure(Path(work), args.orders, scenario, args.fault_rate) for scenario in SCENARIOS
        ]
    kinds = sorted({kind for result in results for kind in result["detections"]})
    rows = [
        [
            result["scenario"],
            *(
                "{detected}/{injected}".format(**result["detections"][kind])
                if kind in result["detections"]
                else "-"
                for kind in kinds
            ),
            str(result["false_alerts"]),
            str(sum(result["fault_free_alerts"].values())),
        ]
        for result in results
    ]
    print(table(["scenario", *kinds, "false", "fault-free alerts"], rows))
    document = {
        "orders": args.orders,
        "fault_rate": args.fault_rate,
        "seed": SEED,
        "scenarios": results,
        "machine": machine_facts(),
        "commit": output_of(["git", "rev-parse", "HEAD"]),
    }
    RESULTS_PATH.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
