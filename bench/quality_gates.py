"""Cost of the data-quality gates alone: events per second through ``QualityGate.admit``.

One simulated stream (``allocflow simulate --orders N --faults all --fault-rate R``,
baseline scenario, seed 7) is written to a temporary directory, merged in the
dataflow's order and decoded once; decoding is not timed. Each repeat then feeds every
valid event to a fresh gate and times that loop (``time.perf_counter``), then
``finish()``. The median rate is printed and written to
``bench/results/quality_gates.json``.

Usage::

    .venv/bin/python bench/quality_gates.py [--orders 20000] [--repeats 5]
"""

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from allocflow.flows.cli import main as allocflow
from allocflow.models.codec import ContractError, decode_event
from allocflow.models.envelope import EventEnvelope
from allocflow.models.topics import InputTopic
from allocflow.quality.accounting import merged_messages
from allocflow.quality.gate import QualityGate

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "quality_gates.json"
FAULT_RATE = 0.01

Decoded = list[tuple[str, EventEnvelope, bytes]]


def decoded_stream(directory: Path) -> Decoded:
    """Return the valid events of the simulation in ``directory``, in merge order."""
    events: Decoded = []
    for message in merged_messages(directory):
        try:
            events.append(
                (
                    message.topic,
                    decode_event(InputTopic(message.topic), message.value),
                    message.value,
                )
            )
        except ContractError:
            continue
    return events


def gate_seconds(events: Decoded) -> tuple[float, int]:
    """Return the time one fresh gate takes over ``events``, and the alerts it raised."""
    gate = QualityGate()
    alerts = 0
    started = time.perf_counter()
    for feed, event, raw in events:
        alerts += len(gate.admit(feed, event, raw).alerts)
    alerts += len(gate.finish())
    return time.perf_counter() - started, alerts


def main() -> None:
    """Simulate, decode, time the gates and record the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="allocflow-dq-bench-") as out:
        allocflow(
            [
                "simulate",
                "--orders",
                str(args.orders),
                "--faults",
                "all",
                "--fault-rate",
                str(FAULT_RATE),
                "--out",
                out,
                "--no-progress",
            ]
        )
        events = decoded_stream(Path(out))
    runs = [gate_seconds(events) for _ in range(args.repeats)]
    seconds = statistics.median(run[0] for run in runs)
    result = {
        "orders": args.orders,
        "fault_rate": FAULT_RATE,
        "events": len(events),
        "alerts": runs[0][1],
        "repeats": args.repeats,
        "median_seconds": round(seconds, 3),
        "events_per_second": round(len(events) / seconds),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    RESULTS_PATH.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
