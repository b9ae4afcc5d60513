"""Recovery: the cost of snapshots, and how fast a killed run catches up after a restart.

One simulated stream (``allocflow simulate --orders N --seed 7 --faults all
--fault-rate 0.002``, baseline scenario) is written once to a temporary directory.
Each repeat then runs, as subprocesses, back to back (the order rotates per repeat):

* ``none``: ``allocflow run --input DIR --out DIR``, no recovery store;
* ``snapshot 5 s`` and ``snapshot 1 s``: the same with ``--recovery-dir STORE`` (a
  fresh store from ``allocflow recovery init``) and ``ALLOCFLOW_SNAPSHOT_INTERVAL_S``
  5 or 1. The store's size (every file in it) is taken when the run has finished.

Events/s is the input messages the run's accounting reports ("N inputs read") over
the seconds of its "allocation flow finished in X s" log line: the dataflow alone,
without interpreter start-up, argument checks or the accounting; the subprocess's
wall time is recorded beside it. The overhead of a recovery mode is its extra flow
time against ``none`` in the same repeat, ``(t_mode / t_none - 1) * 100``; medians of
those ratios are reported, with the range.

Then, in each repeat, **restart**, twice: a run with a fresh store (snapshots every
5 s) is interrupted once its ``allocation-decisions.jsonl`` holds half the lines of the
reference (the first ``none`` run) and it has run for at least two snapshot intervals
(so the store holds a snapshot), then restarted with the same store and output
directory. **kill** interrupts it with SIGKILL, a crash: the restart replays from the
newest snapshot. **stop** sends SIGTERM (``docker stop``, Ctrl-C's SIGINT alike): the
run ends its input, delivers its outputs, snapshots where it stopped and exits 130,
and the restart replays nothing. *Caught up* is the time from starting the restart
until that file again holds as many lines as at the interruption (the resumed sink
first cuts the file back to the newest snapshot's length, so the count is taken only
once the restart has touched the file); *finished* is the time until the restart
exits. Both include the restart's interpreter start-up.

During every run the decision lines are sampled every 0.25 s: the ``none`` run's
samples give the time it took to write half its decisions and as many as the killed
run had at the kill (the samples themselves are not kept).

Every run's outputs are compared with the reference: every output file's lines as a
multiset, except ``order.status`` records, whose intermediate versions depend on how
a replay batches an order's line decisions (see ``allocflow.models.order_status``):
for those the highest version per order must be equal, and the intermediate records
that differ are only counted.

Usage::

    .venv/bin/python bench/recovery.py [--orders 10000] [--seed 7] [--repeats 3]
    .venv/bin/python bench/recovery.py --quick   # 2,000 orders, 1 repeat, nothing written
    .venv/bin/python bench/recovery.py --show    # the saved results

Results go to ``bench/results/recovery.json``. The runs import allocflow as committed
at ``HEAD`` (exported to a temporary directory put first on ``PYTHONPATH``, see
``bench/allocation.py``); ``--working-tree`` measures the checkout as it is.
"""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from allocation import (
    child_import_root,
    code_under_test,
    load_average,
    log,
    machine_facts,
    table,
)

from allocflow.connectors.input_stop import EXIT_STOPPED

REPO_DIR = Path(__file__).resolve().parents[1]
RESULTS_PATH = REPO_DIR / "bench" / "results" / "recovery.json"
FAULT_RATE = 0.002
DECISIONS = "allocation-decisions.jsonl"
STATUS_PREFIX = b'{"record_type":"order.status"'
MODES: dict[str, int | None] = {"none": None, "snapshot 5 s": 5, "snapshot 1 s": 1}
"""Runs per repeat: name and snapshot interval in seconds (None: no recovery store)."""
RESTART_INTERVAL_S = 5
KILL_FRACTION = 0.5
KILL_NOT_BEFORE_S = 2 * RESTART_INTERVAL_S
"""An interruption waits this long after the start: the first epoch closes one interval
into the flow, and start-up takes about a second, so the store then holds a snapshot."""
INTERRUPTIONS = {"kill": signal.SIGKILL, "stop": signal.SIGTERM}
"""How the restarted runs are interrupted: a crash, and a requested stop."""
STOP_TIMEOUT_S = 60.0
POLL_S = 0.05
SAMPLE_S = 0.25
MIB = 1024 * 1024
FINISHED = re.compile(r"allocation flow finished in ([0-9.]+) s")
INPUTS_READ = re.compile(r"^(\d+) inputs read", re.MULTILINE)


@dataclass
class LineCounter:
    """Counts the lines of a growing file by reading only what was appended.

    Attributes:
        path: The file.
        offset: Bytes read so far.
        lines: Newlines in them.
    """

    path: Path
    offset: int = 0
    lines: int = 0

    def update(self) -> int:
        """Read what was appended (start over if the file was cut); return the lines."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return self.lines
        if size < self.offset:
            self.offset = self.lines = 0
        with self.path.open("rb") as file:
            file.seek(self.offset)
            data = file.read(size - self.offset)
        self.offset += len(data)
        self.lines += data.count(b"\n")
        return self.lines


# --- running allocflow ---------------------------------------------------------------------


def allocflow_command(*args: str) -> list[str]:
    """Return the command line of ``allocflow ARGS`` in this environment."""
    return [sys.executable, "-m", "allocflow.flows.cli", *args]


def child_env(interval_s: int | None) -> dict[str, str]:
    """Return the environment of a run: the snapshot interval set, no inherited store."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ALLOCFLOW_")}
    if interval_s is not None:
        env["ALLOCFLOW_SNAPSHOT_INTERVAL_S"] = str(interval_s)
    return env


def simulate(orders: int, seed: int, out: Path) -> None:
    """Write the stream to ``out``."""
    subprocess.run(
        allocflow_command(
            "simulate",
            "--orders",
            str(orders),
            "--seed",
            str(seed),
            "--faults",
            "all",
            "--fault-rate",
            str(FAULT_RATE),
            "--out",
            str(out),
            "--no-progress",
        ),
        check=True,
        capture_output=True,
        env=child_env(None),
    )


def init_store(store: Path) -> None:
    """Create an empty recovery store in ``store``."""
    subprocess.run(
        allocflow_command("recovery", "init", str(store)),
        check=True,
        capture_output=True,
        env=child_env(None),
    )


def run_command(inputs: Path, out: Path, store: Path | None) -> list[str]:
    """Return the ``allocflow run`` command over ``inputs`` into ``out``."""
    recovery = ["--recovery-dir", str(store)] if store is not None else []
    return allocflow_command("run", "--input", str(inputs), "--out", str(out), *recovery)


def start(command: list[str], interval_s: int | None, logs: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` with its stdout and stderr in ``logs.out`` and ``logs.err``."""
    return subprocess.Popen(
        command,
        env=child_env(interval_s),
        stdout=logs.with_suffix(".out").open("wb"),
        stderr=logs.with_suffix(".err").open("wb"),
    )


def finished_run(process: subprocess.Popen[bytes], logs: Path) -> dict[str, Any]:
    """Wait for a run; return its flow seconds and input messages from its output.

    Raises:
        SystemExit: The run failed or its output lacks the log line or the accounting.
    """
    code = process.wait()
    err = logs.with_suffix(".err").read_text()
    out = logs.with_suffix(".out").read_text()
    seconds, inputs = FINISHED.search(err), INPUTS_READ.search(out)
    if code or seconds is None or inputs is None:
        raise SystemExit(f"allocflow run failed ({code}):\n{err[-2000:]}")
    return {"flow_seconds": float(seconds.group(1)), "inputs": int(inputs.group(1))}


def progress(
    process: subprocess.Popen[bytes], counter: LineCounter, started: float
) -> list[tuple[float, int]]:
    """Sample the decision lines every ``SAMPLE_S`` until the process exits.

    Returns:
        ``(seconds since started, lines)`` pairs, the last taken after the exit.
    """
    timeline = []
    while process.poll() is None:
        timeline.append((round(time.perf_counter() - started, 2), counter.update()))
        time.sleep(SAMPLE_S)
    timeline.append((round(time.perf_counter() - started, 2), counter.update()))
    return timeline


def seconds_to(timeline: list[tuple[float, int]], lines: int) -> float | None:
    """Return the first sampled time with at least ``lines`` decision lines."""
    return next((seconds for seconds, count in timeline if count >= lines), None)


def store_mib(store: Path) -> float:
    """Return the size of every file in the recovery store, in MiB."""
    return round(sum(path.stat().st_size for path in store.iterdir()) / MIB, 2)


def timed_run(inputs: Path, work: Path, name: str, interval_s: int | None) -> dict[str, Any]:
    """Run the flow once in ``work/name`` with a fresh store (if any); return its numbers."""
    store = work / f"{name}.store" if interval_s is not None else None
    if store is not None:
        init_store(store)
    started = time.perf_counter()
    process = start(run_command(inputs, work / name, store), interval_s, work / name)
    timeline = progress(process, LineCounter(work / name / DECISIONS), started)
    result = finished_run(process, work / name)
    result["wall_seconds"] = round(time.perf_counter() - started, 2)
    result["decision_lines"] = timeline[-1][1]
    result["timeline"] = timeline
    result["events_per_second"] = round(result["inputs"] / result["flow_seconds"])
    result["store_mib"] = store_mib(store) if store is not None else None
    return result


# --- kill and restart --------------------------------------------------------------------


def run_until(
    process: subprocess.Popen[bytes], counter: LineCounter, lines: int, not_before: float = 0.0
) -> bool:
    """Poll until ``counter`` reaches ``lines`` and ``perf_counter`` ``not_before``.

    Returns:
        False if the process exited first.
    """
    while counter.update() < lines or time.perf_counter() < not_before:
        if process.poll() is not None:
            return False
        time.sleep(POLL_S)
    return True


def touched_since(path: Path, started_ns: int, process: subprocess.Popen[bytes]) -> None:
    """Wait until ``path`` was modified after ``started_ns`` (or the process exited)."""
    while process.poll() is None:
        if path.exists() and path.stat().st_mtime_ns > started_ns:
            return
        time.sleep(POLL_S)


def interrupt_and_restart(
    inputs: Path, work: Path, reference_lines: int, interruption: str
) -> dict[str, Any]:
    """Interrupt a recovering run at half the reference's decisions, restart it, time it.

    Args:
        inputs: The input files.
        work: The repeat's directory.
        reference_lines: Decision lines of the reference run.
        interruption: A key of :data:`INTERRUPTIONS`.

    Raises:
        SystemExit: The first run finished before it could be interrupted, or a stopped
            run did not exit 130 in time.
    """
    store, out = work / f"restart-{interruption}.store", work / f"restart-{interruption}"
    init_store(store)
    counter = LineCounter(out / DECISIONS)
    started = time.perf_counter()
    first = start(run_command(inputs, out, store), RESTART_INTERVAL_S, work / interruption)
    if not run_until(
        first, counter, int(reference_lines * KILL_FRACTION), started + KILL_NOT_BEFORE_S
    ):
        raise SystemExit("the run finished before it could be interrupted: use more --orders")
    first.send_signal(INTERRUPTIONS[interruption])
    interrupted_after = time.perf_counter() - started
    _wait_interrupted(first, interruption)
    at_kill = LineCounter(out / DECISIONS).update()
    restarted_ns = time.time_ns()
    restarted = time.perf_counter()
    second = start(
        run_command(inputs, out, store), RESTART_INTERVAL_S, work / f"{interruption}-restarted"
    )
    touched_since(out / DECISIONS, restarted_ns, second)
    resumed = LineCounter(out / DECISIONS)
    resumed_at = resumed.update()
    caught_up = run_until(second, resumed, at_kill)
    caught_up_s = time.perf_counter() - restarted
    result = finished_run(second, work / f"{interruption}-restarted")
    return {
        "signal": INTERRUPTIONS[interruption].name,
        "killed_after_seconds": round(interrupted_after, 2),
        "decision_lines_at_kill": at_kill,
        "decision_lines_when_restart_first_seen": resumed_at,
        "caught_up_seconds": round(caught_up_s, 2) if caught_up else None,
        "finished_seconds": round(time.perf_counter() - restarted, 2),
        "restart_flow_seconds": result["flow_seconds"],
        "store_mib": store_mib(store),
    }


def _wait_interrupted(process: subprocess.Popen[bytes], interruption: str) -> None:
    """Wait for the interrupted run; a stopped one must exit 130 within the timeout."""
    if INTERRUPTIONS[interruption] is signal.SIGKILL:
        process.wait()
        return
    try:
        code = process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        raise SystemExit(f"the stopped run did not exit within {STOP_TIMEOUT_S:.0f} s") from None
    if code != EXIT_STOPPED:
        raise SystemExit(f"the stopped run exited {code}, not {EXIT_STOPPED}")


# --- comparing outputs -----------------------------------------------------------------------


def split_statuses(path: Path) -> tuple[Counter[bytes], list[bytes]]:
    """Return the file's lines other than order statuses, and its order-status lines."""
    others, statuses = Counter[bytes](), []
    with path.open("rb") as lines:
        for line in lines:
            if line.startswith(STATUS_PREFIX):
                statuses.append(line)
            else:
                others[line] += 1
    return others, statuses


def current_statuses(lines: list[bytes]) -> dict[str, tuple[int, bytes]]:
    """Return each order's highest-version status record."""
    current: dict[str, tuple[int, bytes]] = {}
    for line in lines:
        record = orjson.loads(line)
        known = current.get(record["order_id"])
        if known is None or record["version"] > known[0]:
            current[record["order_id"]] = (record["version"], line)
    return current


def compare_file(reference: Path, other: Path) -> dict[str, Any]:
    """Compare one output file with the reference's; order statuses by order."""
    ref_lines, ref_statuses = split_statuses(reference)
    lines, statuses = split_statuses(other) if other.exists() else (Counter[bytes](), [])
    result: dict[str, Any] = {
        "lines": sum(lines.values()) + len(statuses),
        "reference_lines": sum(ref_lines.values()) + len(ref_statuses),
        "missing": (ref_lines - lines).total(),
        "extra": (lines - ref_lines).total(),
    }
    if ref_statuses or statuses:
        ref_current, current = current_statuses(ref_statuses), current_statuses(statuses)
        result["orders"] = len(ref_current)
        result["current_status_mismatches"] = sum(
            ref_current.get(order) != current.get(order) for order in ref_current | current
        )
        result["intermediate_statuses_differing"] = (
            Counter(ref_statuses) - Counter(statuses)
        ).total()
    result["equal"] = (
        result["missing"] == result["extra"] == result.get("current_status_mismatches", 0) == 0
    )
    return result


def compare_outputs(reference: Path, other: Path) -> dict[str, Any]:
    """Compare every output file of ``other`` with ``reference``'s."""
    names = sorted({path.name for path in [*reference.glob("*.jsonl"), *other.glob("*.jsonl")]})
    files = {name: compare_file(reference / name, other / name) for name in names}
    return {"equal": all(file["equal"] for file in files.values()), "files": files}


# --- measuring ----------------------------------------------------------------------------------


def repeat_once(inputs: Path, work: Path, repeat: int, reference: Path | None) -> dict[str, Any]:
    """Run every mode (rotated by ``repeat``), then kill and restart; compare with ``reference``."""
    names = list(MODES)
    names = names[repeat % len(names) :] + names[: repeat % len(names)]
    runs: dict[str, Any] = {}
    for name in names:
        log(f"repeat {repeat + 1}: {name}")
        runs[name] = timed_run(inputs, work, name.replace(" ", "-"), MODES[name])
    reference = reference or work / "none"
    for name in names:
        runs[name]["outputs"] = compare_outputs(reference, work / name.replace(" ", "-"))
    reference_lines = LineCounter(reference / DECISIONS).update()
    timeline = runs["none"].pop("timeline")
    for run in runs.values():
        run.pop("timeline", None)
    restarts = {}
    for interruption in INTERRUPTIONS:
        log(f"repeat {repeat + 1}: {interruption} at {KILL_FRACTION:.0%} and restart")
        restart = interrupt_and_restart(inputs, work, reference_lines, interruption)
        restart["outputs"] = compare_outputs(reference, work / f"restart-{interruption}")
        restart["no_recovery_run_seconds"] = runs["none"]["wall_seconds"]
        restart["no_recovery_seconds_to_kill_lines"] = seconds_to(
            timeline, restart["decision_lines_at_kill"]
        )
        restarts[interruption] = restart
    runs["none"]["seconds_to_half_decisions"] = seconds_to(
        timeline, int(runs["none"]["decision_lines"] * KILL_FRACTION)
    )
    return {"order": names, "runs": runs, "restarts": restarts}


def _median_range(values: list[float], digits: int = 1) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def summarize(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """Return medians per mode, the overhead against ``none`` and the restart medians."""
    modes = {}
    for name in MODES:
        runs = [repeat["runs"][name] for repeat in repeats]
        overhead = [
            100 * (run["flow_seconds"] / repeat["runs"]["none"]["flow_seconds"] - 1)
            for run, repeat in zip(runs, repeats, strict=True)
        ]
        stores = [run["store_mib"] for run in runs if run["store_mib"] is not None]
        modes[name] = {
            "flow_seconds": _median_range([run["flow_seconds"] for run in runs]),
            "wall_seconds": _median_range([run["wall_seconds"] for run in runs]),
            "events_per_second": _median_range([run["events_per_second"] for run in runs], 0),
            "overhead_pct": _median_range(overhead),
            "store_mib": _median_range(stores, 2) if stores else None,
            "outputs_equal": all(run["outputs"]["equal"] for run in runs),
        }
    return {
        "modes": modes,
        "restarts": {
            interruption: _restart_summary([repeat["restarts"][interruption] for repeat in repeats])
            for interruption in INTERRUPTIONS
        },
    }


def _restart_summary(restarts: list[dict[str, Any]]) -> dict[str, Any]:
    caught = [r["caught_up_seconds"] for r in restarts if r["caught_up_seconds"] is not None]
    return {
        "killed_after_seconds": _median_range([r["killed_after_seconds"] for r in restarts]),
        "caught_up_seconds": _median_range(caught) if caught else None,
        "finished_seconds": _median_range([r["finished_seconds"] for r in restarts]),
        "outputs_equal": all(r["outputs"]["equal"] for r in restarts),
    }


def measure(orders: int, seed: int, repeats: int, working_tree: bool) -> dict[str, Any]:
    """Simulate once, run every repeat, summarize; return the result."""
    load_before = load_average()
    with (
        code_under_test(working_tree) as code,
        tempfile.TemporaryDirectory(prefix="allocflow-recovery-bench-") as tmp,
    ):
        inputs = Path(tmp) / "in"
        log(f"simulating {orders:,} orders")
        simulate(orders, seed, inputs)
        runs, reference = [], None
        for repeat in range(repeats):
            work = Path(tmp) / f"repeat-{repeat}"
            work.mkdir()
            runs.append(repeat_once(inputs, work, repeat, reference))
            reference = reference or work / "none"
        imports_from = child_import_root()
    return {
        "command": " ".join(["bench/recovery.py", *sys.argv[1:]]),
        "orders": orders,
        "seed": seed,
        "fault_rate": FAULT_RATE,
        "input_events": runs[0]["runs"]["none"]["inputs"],
        "repeats": repeats,
        "kill_fraction": KILL_FRACTION,
        "kill_not_before_s": KILL_NOT_BEFORE_S,
        "restart_snapshot_interval_s": RESTART_INTERVAL_S,
        "summary": summarize(runs),
        "runs": runs,
        "code": {**code, "child_imports_from": imports_from},
        "machine": machine_facts(),
        "load_average": {"before": load_before, "after": load_average()},
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


# --- report -------------------------------------------------------------------------------------


def _span(value: dict[str, float] | None, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value['median']:,}{unit} ({value['min']:,}..{value['max']:,})"


def render(result: dict[str, Any]) -> str:
    """Return the printed summary."""
    summary = result["summary"]
    header = ["mode", "flow s", "events/s", "overhead %", "wall s", "store MiB", "outputs ="]
    rows = [
        [
            name,
            _span(mode["flow_seconds"]),
            _span(mode["events_per_second"]),
            _span(mode["overhead_pct"]) if name != "none" else "-",
            _span(mode["wall_seconds"]),
            _span(mode["store_mib"]),
            str(mode["outputs_equal"]),
        ]
        for name, mode in summary["modes"].items()
    ]
    restart_header = [
        "repeat",
        "signal",
        "after s",
        "decision lines at kill",
        "at restart",
        "caught up s",
        "finished s",
        "no-recovery run s",
        "no-recovery s to kill lines",
        "outputs =",
    ]
    restart_rows = [
        [
            str(number),
            r["signal"],
            str(r["killed_after_seconds"]),
            f"{r['decision_lines_at_kill']:,}",
            f"{r['decision_lines_when_restart_first_seen']:,}",
            str(r["caught_up_seconds"]),
            str(r["finished_seconds"]),
            str(r["no_recovery_run_seconds"]),
            str(r["no_recovery_seconds_to_kill_lines"]),
            str(r["outputs"]["equal"]),
        ]
        for number, repeat in enumerate(result["runs"], 1)
        for r in repeat["restarts"].values()
    ]
    lines = [
        f"{interruption} and restart (snapshots every {result['restart_snapshot_interval_s']} "
        f"s): caught up {_span(restart['caught_up_seconds'], ' s')}, finished "
        f"{_span(restart['finished_seconds'], ' s')}; outputs equal the reference: "
        f"{restart['outputs_equal']}"
        for interruption, restart in summary["restarts"].items()
    ]
    return "\n\n".join(
        [
            f"{result['input_events']:,} input events, {result['repeats']} repeat(s); "
            "median (min..max)",
            table(header, rows),
            table(restart_header, restart_rows),
            "\n".join(lines),
        ]
    )


def main() -> None:
    """Measure (or show the saved results) and print the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--quick", action="store_true", help="2,000 orders, 1 repeat, results printed only"
    )
    parser.add_argument("--working-tree", action="store_true", help="measure the checkout")
    parser.add_argument("--show", action="store_true", help="print the saved results")
    args = parser.parse_args()
    if args.show:
        print(render(json.loads(RESULTS_PATH.read_text())))
        return
    if args.quick:
        args.orders, args.repeats = 2_000, 1
    result = measure(args.orders, args.seed, args.repeats, args.working_tree)
    if not args.quick:
        RESULTS_PATH.write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))


if __name__ == "__main__":
    main()
