"""Memory: the allocation flow's RSS over 10M input events (issue 8, item 6).

Target: flat RSS, or growth bounded by documented state windows.

The stream
    One base stream is simulated (``allocflow simulate --seed 7 --orders N --faults
    none``, baseline scenario, ``--base-orders`` 50,000 by default, about a million
    messages in the four input topics) and cached in the temporary directory. The
    flow's input is ``K`` copies of it back to back, ``K`` the smallest number that
    reaches ``--events`` (10M) messages: each ``<topic>.jsonl`` holds copy 0, then
    copy 1, … Copy 0 is the base stream as it is; copy ``k`` is rewritten by
    ``bench/landing.py``'s :func:`rewrite_line`: every id (``event_id``,
    ``order_id``, ``shipment_id``, ``reservation_id``, ``po_id``, …) gets the suffix
    ``-c{k}`` and every time is shifted by ``k`` times the base stream's span (rounded
    up to whole hours), so the copies follow each other in event time and every event
    is distinct: dedupe windows, the quality gate's entity memories, the per-order
    rollups, shipments, lane histories and closed orders all see 10M distinct events.
    SKUs, warehouses, customers, carriers and lanes are not ids and recur in every
    copy, as they would in a long-running stream. Simulating 10M events directly
    takes longer (the simulator's events per order grow with the run, and it writes
    at about 36k messages/s) and would not repeat a workload, so RSS at the end of
    each copy can be compared with the end of the previous one.

The measurement
    ``allocflow run --input IN --out OUT`` (one worker, no recovery store, every
    setting at its default) runs as a subprocess, importing allocflow as committed at
    ``HEAD`` (see ``bench/allocation.py``'s ``code_under_test``; ``--working-tree``
    measures the checkout). Every ``--interval`` (2 s) this process samples the
    flow's RSS (``VmRSS`` in ``/proc/PID/status``) and its progress: the read
    position of each input file (``/proc/PID/fdinfo``), turned into messages read
    with an index of line offsets taken while the input was written (one offset per
    1,000 lines; a file the flow has closed again counts as read to its end). The
    flow's reader runs at most one batch and one read buffer ahead of the steps, so
    messages read is messages processed to within a few thousand. Two peaks are
    reported: the highest sample, and ``ru_maxrss`` from ``wait4``, which also covers
    what happens after the input (the end-of-input epoch, the accounting) or after an
    interrupt.

    Reported: RSS at 10, 25, 50, 75 and 100 % of the input (the first sample at or
    past each share; 100 % is the last sample before the flow exits, if it read
    everything), the peaks, the least-squares slope of RSS against messages read in
    each half of what was read (MiB per million messages: flat means a second-half
    slope near 0) and RSS at the end of each copy. If the whole run does not fit in
    ``--budget`` (30 min, stream preparation included) the flow is interrupted
    (SIGINT) there, sampling stops (the interrupted flow closes its files, which would
    read as input finished) and the numbers cover the messages it read; RSS at the
    full input is then extrapolated from the second-half slope, labelled as such.

The attribution (``--attribute``)
    Which state grows: the flow runs twice with a recovery store, over 1 and over 3
    copies of the ``--quick`` base stream (3,000 orders), and the state of each
    stateful step is read back from the store's newest snapshots: keys, pickled
    bytes, and the Python heap of the unpickled states (``tracemalloc``), also split
    by attribute (``quality_gate._orphans._known``, ``allocate.seen``…) with the items
    of each container. The difference between the two runs per million messages
    says what grows; bytes per item times a documented window's capacity says where
    a bounded part stops. Heap bytes of unpickled copies are an estimate of what the
    live flow holds (strings shared in the flow are counted per copy; Bytewax's own
    per-key bookkeeping is not counted).

Usage::

    .venv/bin/python bench/memory.py                 # 10M events, about 30 min
    .venv/bin/python bench/memory.py --quick         # 200k events, printed only
    .venv/bin/python bench/memory.py --show          # the saved results (summary recomputed)
    .venv/bin/python bench/memory.py --attribute     # add the state per step (below)

``ALLOCFLOW_*`` variables in the environment reach the flow (e.g. smaller state
windows: ``ALLOCFLOW_DQ_ENTITY_MEMORY``, ``ALLOCFLOW_ROUTE_SHIPMENT_MEMORY``,
``ALLOCFLOW_ORDER_RETENTION_S``) and are recorded under ``parameters.settings``.

Results go to ``bench/results/memory.json`` (``--quick``: printed only, unless
``--output`` names a file). Run the full measurement under
``flock /tmp/allocflow-bench.lock`` so no other heavy benchmark shares the machine.
"""

import argparse
import bisect
import json
import math
import os
import pickle
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence, Sized
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any

from allocation import (
    code_under_test,
    load_average,
    log,
    machine_facts,
    simulate_command,
    simulator_digest,
    table,
)
from landing import rewrite_line

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_PATH = BENCH_DIR / "results" / "memory.json"
RESULTS_VERSION = 1
DESCRIPTION = "Memory: the allocation flow's RSS over 10M input events."

DEFAULT_EVENTS = 10_000_000
DEFAULT_BASE_ORDERS = 50_000
DEFAULT_BUDGET_S = 30 * 60.0
DEFAULT_INTERVAL_S = 2.0
QUICK_EVENTS = 200_000
QUICK_BASE_ORDERS = 3_000
QUICK_INTERVAL_S = 0.5
INPUT_TOPICS = ("orders", "reservations", "shipments", "carrier-events")
OFFSET_STEP = 1_000
"""Lines between two entries of a file's offset index."""
CHECKPOINTS = (0.10, 0.25, 0.50, 0.75, 1.00)
STOP_GRACE_S = 30.0
ATTRIBUTE_COPIES = (1, 3)
"""Copies of the quick base stream the attribution runs read."""
ATTRIBUTE_SNAPSHOT_S = 3600
ATTRIBUTE_DEPTH = 3
"""Levels of attributes the state of a step is split into."""
_KIB = 1024
_MILLION = 1_000_000
_MIB = 1024 * 1024


# --- the stream ---------------------------------------------------------------------------


def base_stream(orders: int, cache_root: Path, import_root: str) -> Path:
    """Simulate (or reuse) the base stream of ``orders`` orders; return its directory."""
    directory = (
        cache_root
        / f"allocflow-bench-memory-seed7-orders{orders}-sim{simulator_digest(import_root)}"
    )
    manifest = directory / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text())["size"]["orders"] == orders:
        log(f"reusing the base stream {directory}")
        return directory
    shutil.rmtree(directory, ignore_errors=True)
    command = simulate_command(orders, directory)
    log(f"simulating the base stream: {' '.join(command)}")
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return directory


@dataclass
class InputFile:
    """One input file of the scaled stream.

    Attributes:
        path: The file.
        lines: Lines in it.
        offsets: Byte offset after every ``OFFSET_STEP``-th line.
        copy_ends: Lines in the file at the end of each copy.
    """

    path: Path
    lines: int
    offsets: list[int]
    copy_ends: list[int]

    def lines_before(self, position: int) -> int:
        """Return about how many whole lines lie before byte ``position``."""
        return bisect.bisect_right(self.offsets, position) * OFFSET_STEP


def base_span(base_dir: Path) -> timedelta:
    """Return the base stream's event-time span, rounded up to whole hours."""
    manifest = json.loads((base_dir / "manifest.json").read_text())
    span = datetime.fromisoformat(manifest["last_event_time"]) - datetime.fromisoformat(
        manifest["start"]
    )
    return timedelta(hours=math.ceil(span.total_seconds() / 3600))


def write_scaled(base_dir: Path, copies: int, out_dir: Path) -> dict[str, InputFile]:
    """Write ``copies`` copies of the base stream, one after the other, into ``out_dir``.

    Args:
        base_dir: The base stream.
        copies: Number of copies; copy ``k > 0`` is rewritten by :func:`rewrite_line`.
        out_dir: Where the ``<topic>.jsonl`` files go.

    Returns:
        Topic → the written file and its offset index.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    span = base_span(base_dir)
    written: dict[str, InputFile] = {}
    for topic in INPUT_TOPICS:
        base_lines = (base_dir / f"{topic}.jsonl").read_bytes().splitlines()
        target = InputFile(out_dir / f"{topic}.jsonl", 0, [], [])
        position = 0
        with target.path.open("wb") as handle:
            for copy in range(copies):
                for line in base_lines:
                    data = (line if copy == 0 else rewrite_line(line, copy, span * copy)) + b"\n"
                    handle.write(data)
                    position += len(data)
                    target.lines += 1
                    if target.lines % OFFSET_STEP == 0:
                        target.offsets.append(position)
                target.copy_ends.append(target.lines)
        written[topic] = target
    return written


def count_lines(path: Path) -> int:
    """Return the number of lines in ``path``."""
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


# --- sampling the flow ----------------------------------------------------------------------


class Progress:
    """Messages the flow has read, from the positions of its open input files."""

    def __init__(self, pid: int, files: dict[str, InputFile]) -> None:
        self._pid = pid
        self._by_path = {str(file.path.resolve()): file for file in files.values()}
        self._seen: set[str] = set()

    def messages_read(self) -> int:
        """Return the input lines read so far (all of a file once it was closed again)."""
        positions = self._positions()
        self._seen.update(positions)
        total = 0
        for path, file in self._by_path.items():
            if path in positions:
                total += min(file.lines, file.lines_before(positions[path]))
            elif path in self._seen:
                total += file.lines
        return total

    def _positions(self) -> dict[str, int]:
        positions: dict[str, int] = {}
        fd_dir = Path(f"/proc/{self._pid}/fd")
        try:
            descriptors = list(fd_dir.iterdir())
        except OSError:
            return positions
        for descriptor in descriptors:
            try:
                target = os.readlink(descriptor)
                if target in self._by_path:
                    info = Path(f"/proc/{self._pid}/fdinfo/{descriptor.name}").read_text()
                    positions[target] = int(info.split("pos:", 1)[1].split()[0])
            except (OSError, IndexError, ValueError):
                continue
        return positions


def rss_mib(pid: int) -> float | None:
    """Return a process's resident set size in MiB (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / _KIB, 1)
    except OSError:
        return None
    return None


def run_flow(
    command: list[str],
    files: dict[str, InputFile],
    interval_s: float,
    deadline: float,
    log_path: Path,
) -> dict[str, Any]:
    """Run the flow, sampling RSS and progress until it exits or the deadline passes.

    Args:
        command: The ``allocflow run`` command line.
        files: The input files (for progress).
        interval_s: Seconds between samples.
        deadline: ``time.monotonic()`` at which the flow is stopped if still running.
        log_path: Where its stdout and stderr go.

    Returns:
        Samples (``s``, ``messages``, ``rss_mib``; none once the flow is interrupted:
        it closes its files then, which would read as input finished), wall time, exit
        status, whether and when it was interrupted at the deadline, and its peak RSS
        and CPU time from ``wait4``.
    """
    samples: list[dict[str, float]] = []
    stopped_at: float | None = None
    with log_path.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    progress = Progress(process.pid, files)
    started = time.monotonic()
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        rss = rss_mib(process.pid)
        if rss is not None and stopped_at is None:
            samples.append(
                {
                    "s": round(time.monotonic() - started, 2),
                    "messages": progress.messages_read(),
                    "rss_mib": rss,
                }
            )
        stopped_at = _stop_at_deadline(process, deadline, stopped_at)
        time.sleep(interval_s)
    process.returncode = os.waitstatus_to_exitcode(status)
    return {
        "samples": samples,
        "wall_s": round(time.monotonic() - started, 1),
        "returncode": process.returncode,
        "stopped_at_budget": stopped_at is not None,
        "interrupted_after_s": None if stopped_at is None else round(stopped_at - started, 2),
        "peak_rss_mib": round(usage.ru_maxrss / _KIB, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
    }


def _stop_at_deadline(
    process: subprocess.Popen[bytes], deadline: float, stopped_at: float | None
) -> float | None:
    """Interrupt the flow once the deadline passes, kill it if it lingers; return when."""
    now = time.monotonic()
    if stopped_at is None and now >= deadline:
        log("the time budget is spent: interrupting the flow")
        process.send_signal(signal.SIGINT)
        return now
    if stopped_at is not None and now - stopped_at > STOP_GRACE_S:
        process.kill()
    return stopped_at


# --- analysis -------------------------------------------------------------------------------


def slope(samples: Sequence[dict[str, float]]) -> float | None:
    """Return the least-squares slope of RSS against messages, MiB per million messages."""
    if len(samples) < 2:
        return None
    xs = [sample["messages"] / _MILLION for sample in samples]
    ys = [sample["rss_mib"] for sample in samples]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return None
    return round(sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread, 2)


def at_share(samples: Sequence[dict[str, float]], messages: int) -> dict[str, float] | None:
    """Return the first sample at or past ``messages`` read (the last one if none is)."""
    for sample in samples:
        if sample["messages"] >= messages:
            return sample
    return samples[-1] if samples else None


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """Return RSS at the checkpoints and copy ends, the peaks and the slopes of each half.

    Computed from the recorded samples (up to the interrupt, if the flow was stopped),
    so ``--show`` recomputes it from a results file.
    """
    total = results["stream"]["total_messages"]
    stop = results["flow"]["interrupted_after_s"]
    samples = [sample for sample in results["samples"] if stop is None or sample["s"] <= stop]
    reached = max((sample["messages"] for sample in samples), default=0)
    during = [sample for sample in samples if sample["messages"] < total]
    finished = results["flow"]["returncode"] == 0 and reached == total
    checkpoints = {}
    for share in CHECKPOINTS:
        wanted = math.ceil(share * total)
        sample = samples[-1] if share == 1.0 and finished else at_share(during, wanted)
        if sample is not None and sample["messages"] >= wanted:
            checkpoints[f"{share:.0%}"] = sample
    half = reached / 2
    first_half = [sample for sample in samples if 0 < sample["messages"] < half]
    second_half = [sample for sample in samples if half <= sample["messages"] < reached]
    copies = [
        {"copy": index, "messages": end, **(at_share(during, end) or {})}
        for index, end in enumerate(results["stream"]["copy_ends"])
        if end <= reached
    ]
    reached_at = at_share(samples, reached)
    return {
        "messages_read": reached,
        "share_read": round(reached / total, 4),
        "checkpoints": checkpoints,
        "copy_ends": copies,
        "peak_rss_mib_sampled": max((sample["rss_mib"] for sample in samples), default=None),
        "peak_rss_mib_wait4": results["flow"]["peak_rss_mib_wait4"],
        "slope_first_half_mib_per_million": slope(first_half),
        "slope_second_half_mib_per_million": slope(second_half),
        "messages_per_s": round(reached / reached_at["s"]) if reached_at else None,
    }


def extrapolate(summary: dict[str, Any], total: int) -> dict[str, Any] | None:
    """Return RSS at ``total`` messages by the second-half slope, if the run fell short."""
    rate = summary["slope_second_half_mib_per_million"]
    if summary["messages_read"] >= total or rate is None or not summary["copy_ends"]:
        return None
    last = summary["copy_ends"][-1]
    return {
        "label": "extrapolation from the second-half slope, not a measurement",
        "messages": total,
        "rss_mib": round(last["rss_mib"] + rate * (total - last["messages"]) / _MILLION, 1),
    }


# --- the benchmark --------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--events", type=int, help=f"input messages (default {DEFAULT_EVENTS:,})")
    parser.add_argument(
        "--base-orders",
        type=int,
        help=f"orders in the base stream (default {DEFAULT_BASE_ORDERS:,})",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=DEFAULT_BUDGET_S,
        help="seconds for everything, preparation included; the flow is stopped after "
        f"(default {DEFAULT_BUDGET_S:.0f})",
    )
    parser.add_argument("--interval", type=float, help="seconds between samples (default 2)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_EVENTS:,} events, {QUICK_BASE_ORDERS:,} base orders, no file",
    )
    parser.add_argument("--output", type=Path, help=f"results file (default {RESULTS_PATH})")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="where the base stream is cached and the scaled one written (default: tmp)",
    )
    parser.add_argument(
        "--working-tree", action="store_true", help="measure the checkout, not HEAD"
    )
    parser.add_argument(
        "--attribute",
        action="store_true",
        help="measure each step's state at small scale (two runs with a recovery store) and "
        "add it to the saved results (with --quick: print it)",
    )
    parser.add_argument(
        "--show",
        nargs="?",
        type=Path,
        const=RESULTS_PATH,
        metavar="FILE",
        help=f"print the tables of saved results (default {RESULTS_PATH}) and exit",
    )
    args = parser.parse_args(argv)
    args.events = args.events or (QUICK_EVENTS if args.quick else DEFAULT_EVENTS)
    args.base_orders = args.base_orders or (
        QUICK_BASE_ORDERS if args.quick else DEFAULT_BASE_ORDERS
    )
    args.interval = args.interval or (QUICK_INTERVAL_S if args.quick else DEFAULT_INTERVAL_S)
    if args.output is None and not args.quick:
        args.output = RESULTS_PATH
    return args


def benchmark(args: argparse.Namespace, code: dict[str, Any], work: Path) -> dict[str, Any]:
    """Prepare the scaled stream, run the flow over it sampling RSS, and summarise."""
    started = time.monotonic()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    load_before = load_average()
    base_dir = base_stream(args.base_orders, args.cache_dir, code["import_root"])
    base_messages = {topic: count_lines(base_dir / f"{topic}.jsonl") for topic in INPUT_TOPICS}
    copies = math.ceil(args.events / sum(base_messages.values()))
    log(f"writing {copies} copies of {sum(base_messages.values()):,} messages into {work}")
    files = write_scaled(base_dir, copies, work / "in")
    total = sum(file.lines for file in files.values())
    preparation_s = round(time.monotonic() - started, 1)
    command = [str(Path(sys.executable).with_name("allocflow")), "run"]
    command += ["--input", str(work / "in"), "--out", str(work / "out")]
    log(f"running the flow over {total:,} messages: {' '.join(command)}")
    run = run_flow(command, files, args.interval, started + args.budget, work / "flow.log")
    flow_log = (work / "flow.log").read_text(errors="replace").splitlines()
    results = {
        "benchmark": "memory",
        "results_version": RESULTS_VERSION,
        "started": started_at,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["bench/memory.py", *(sys.argv[1:])]),
        "machine": machine_facts(),
        "code": code,
        "load_average": {"before": load_before, "after": load_average()},
        "parameters": {
            "events": args.events,
            "base_orders": args.base_orders,
            "budget_s": args.budget,
            "interval_s": args.interval,
            "settings": {
                name: value for name, value in os.environ.items() if name.startswith("ALLOCFLOW_")
            },
        },
        "stream": {
            "base_simulate_command": " ".join(simulate_command(args.base_orders, base_dir)),
            "base_messages": base_messages,
            "base_span_hours": base_span(base_dir).total_seconds() / 3600,
            "copies": copies,
            "copy_ends": [
                sum(file.copy_ends[copy] for file in files.values()) for copy in range(copies)
            ],
            "messages": {topic: file.lines for topic, file in files.items()},
            "total_messages": total,
            "preparation_s": preparation_s,
        },
        "flow": {
            "command": "allocflow run --input IN --out OUT",
            "wall_s": run["wall_s"],
            "returncode": run["returncode"],
            "stopped_at_budget": run["stopped_at_budget"],
            "interrupted_after_s": run["interrupted_after_s"],
            "peak_rss_mib_wait4": run["peak_rss_mib"],
            "cpu_s": run["cpu_s"],
            "finished_line": next((line for line in flow_log if "flow finished in" in line), None),
            "accounting": [line for line in flow_log if "inputs read" in line],
            "outputs": {
                path.stem: count_lines(path) for path in sorted((work / "out").glob("*.jsonl"))
            },
        },
        "samples": run["samples"],
    }
    results["summary"] = summarise(results)
    results["extrapolated"] = extrapolate(results["summary"], total)
    return results


# --- attribution: state per step -----------------------------------------------------------


def attribute(args: argparse.Namespace, code: dict[str, Any], work: Path) -> dict[str, Any]:
    """Measure each stateful step's state after two numbers of copies of a small stream.

    The flow runs with a recovery store (one partition, ``ALLOCFLOW_SNAPSHOT_INTERVAL_S``
    an hour, so the only snapshot is the one taken at the end of the input) over
    ``ATTRIBUTE_COPIES`` copies of the ``--quick`` base stream. For every step the
    newest snapshot of each key is read back: keys, pickled bytes, and heap bytes of
    the unpickled states (``tracemalloc``). Growth per million messages is the
    difference between the two runs over the difference in messages.

    Returns:
        Per run and per step: keys, pickled and heap bytes; per step the growth.
    """
    base_dir = base_stream(QUICK_BASE_ORDERS, args.cache_dir, code["import_root"])
    runs = [
        attribution_run(base_dir, copies, work / f"copies{copies}") for copies in ATTRIBUTE_COPIES
    ]
    small, large = runs
    per_million = _MILLION / (large["messages"] - small["messages"])
    growth = {
        step: {
            f"{unit}_per_million_messages": round(
                (state[unit] - small["steps"].get(step, {}).get(unit, 0)) * per_million
            )
            for unit in ("keys", "pickled_bytes", "heap_bytes")
        }
        for step, state in large["steps"].items()
    }
    part_growth = {
        f"{step}.{path}": {
            f"{unit}_per_million_messages": round(
                (
                    part[unit]
                    - small["steps"].get(step, {}).get("parts", {}).get(path, {}).get(unit, 0)
                )
                * per_million
            )
            for unit in ("items", "heap_bytes")
        }
        for step, state in large["steps"].items()
        for path, part in state["parts"].items()
    }
    return {
        "command": " ".join(["bench/memory.py", *(sys.argv[1:])]),
        "commit": code["commit"],
        "base_orders": QUICK_BASE_ORDERS,
        "runs": runs,
        "growth": growth,
        "part_growth": part_growth,
    }


def attribution_run(base_dir: Path, copies: int, work: Path) -> dict[str, Any]:
    """Run the flow with a recovery store over ``copies`` copies; measure each step's state."""
    files = write_scaled(base_dir, copies, work / "in")
    store = work / "recovery"
    store.mkdir()
    cli = str(Path(sys.executable).with_name("allocflow"))
    subprocess.run([cli, "recovery", "init", str(store), "--partitions", "1"], check=True)
    command = [cli, "run", "--input", str(work / "in"), "--out", str(work / "out")]
    command += ["--recovery-dir", str(store)]
    log(f"attribution: {copies} copies: {' '.join(command)}")
    environment = dict(os.environ, ALLOCFLOW_SNAPSHOT_INTERVAL_S=str(ATTRIBUTE_SNAPSHOT_S))
    subprocess.run(command, check=True, env=environment, capture_output=True)
    return {
        "copies": copies,
        "messages": sum(file.lines for file in files.values()),
        "steps": step_states(next(store.glob("*.sqlite3"))),
    }


def step_states(partition: Path) -> dict[str, dict[str, Any]]:
    """Return keys, pickled and heap bytes, and the heap by attribute, of each step's state."""
    with sqlite3.connect(partition) as connection:
        rows = connection.execute(
            "SELECT step_id, ser_change FROM snaps AS s WHERE ser_change IS NOT NULL "
            "AND snap_epoch = (SELECT MAX(snap_epoch) FROM snaps "
            "WHERE step_id = s.step_id AND state_key = s.state_key)"
        ).fetchall()
    blobs: dict[str, list[bytes]] = {}
    for step_id, change in rows:
        blobs.setdefault(step_id.rsplit(".", 1)[-1], []).append(change)
    return {
        step: {
            "keys": len(changes),
            "pickled_bytes": sum(len(change) for change in changes),
            "heap_bytes": heap_bytes(lambda changes=changes: [_state(c) for c in changes]),
            "parts": state_parts([_state(change) for change in changes]),
        }
        for step, changes in sorted(blobs.items())
    }


def state_parts(states: list[Any]) -> dict[str, dict[str, int]]:
    """Return heap bytes and items of each attribute of the states, summed over keys.

    Attributes that are objects with attributes of their own are split further, up to
    ``ATTRIBUTE_DEPTH`` levels (``_orphans._known``); containers, including classes
    with a length such as the gate's ``RecentMap``, are not split but count their
    items (``len``).
    """
    parts: dict[str, dict[str, int]] = {}
    for state in states:
        for path, value in _leaves(state, "", ATTRIBUTE_DEPTH):
            part = parts.setdefault(path, {"heap_bytes": 0, "items": 0})
            blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            part["heap_bytes"] += heap_bytes(lambda blob=blob: pickle.loads(blob))  # noqa: S301
            part["items"] += _items(value)
    return parts


def _items(value: Any) -> int:
    """Return a container's items; 1 for anything else (strings included)."""
    return len(value) if isinstance(value, Sized) and not isinstance(value, str | bytes) else 1


def _leaves(value: Any, path: str, depth: int) -> list[tuple[str, Any]]:
    fields = getattr(value, "__dict__", None)
    if depth == 0 or not fields or isinstance(value, Sized | Enum):
        return [(path or type(value).__name__, value)]
    return [
        leaf
        for name, item in fields.items()
        for leaf in _leaves(item, f"{path}.{name}" if path else name, depth - 1)
    ]


def heap_bytes(build: Callable[[], Any]) -> int:
    """Return the Python heap what ``build`` returns takes, measured with ``tracemalloc``."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        built = build()
        size = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    del built
    return size


def _state(change: bytes) -> Any:
    """Unpickle a snapshot: Bytewax pickles what the step returned, often pickled bytes."""
    value = pickle.loads(change)  # noqa: S301 - the store this benchmark just wrote
    return pickle.loads(value) if isinstance(value, bytes) else value  # noqa: S301


# --- rendering ------------------------------------------------------------------------------


def render(results: dict[str, Any]) -> str:
    """Return the results as Markdown: checkpoints, peak, slopes and copy ends."""
    summary = results["summary"]
    stream = results["stream"]
    rows = [
        [share, f"{sample['messages']:,}", f"{sample['s']:,.0f}", f"{sample['rss_mib']:,.0f}"]
        for share, sample in summary["checkpoints"].items()
    ]
    lines = [
        f"## Memory: {stream['total_messages']:,} input messages "
        f"({stream['copies']} copies of {sum(stream['base_messages'].values()):,})",
        "",
        table(["share of input", "messages read", "s", "RSS MiB"], rows),
        "",
        f"- peak RSS: {summary['peak_rss_mib_sampled']:,.0f} MiB highest sample, "
        f"{summary['peak_rss_mib_wait4']:,.0f} MiB by wait4 (up to exit)",
        f"- slope, first half: {_slope(summary['slope_first_half_mib_per_million'])}",
        f"- slope, second half: {_slope(summary['slope_second_half_mib_per_million'])}",
        f"- read {summary['messages_read']:,} messages ({summary['share_read']:.1%}) at "
        f"{summary['messages_per_s'] or 0:,} messages/s; flow exit {results['flow']['returncode']}"
        + (", stopped at the time budget" if results["flow"]["stopped_at_budget"] else ""),
        f"- preparation {stream['preparation_s']:,.0f} s, flow {results['flow']['wall_s']:,.0f} s; "
        f"load average {_loads(results['load_average']['before'])} before, "
        f"{_loads(results['load_average']['after'])} after",
    ]
    if results["extrapolated"]:
        guess = results["extrapolated"]
        lines.append(
            f"- {guess['label']}: {guess['rss_mib']:,.0f} MiB at {guess['messages']:,} messages"
        )
    copy_rows = [
        [str(copy["copy"]), f"{copy['messages']:,}", f"{copy.get('rss_mib', 0):,.0f}"]
        for copy in summary["copy_ends"]
    ]
    lines += [
        "",
        "RSS at the end of each copy:",
        "",
        table(["copy", "messages", "RSS MiB"], copy_rows),
    ]
    if "attribution" in results:
        lines += ["", render_attribution(results["attribution"])]
    return "\n".join(lines)


def _loads(loads: Sequence[float]) -> str:
    return " / ".join(f"{value:.2f}" for value in loads)


def _slope(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+,.1f} MiB per million messages"


def render_attribution(attribution: dict[str, Any]) -> str:
    """Return the state per step as Markdown: size after each run and growth."""
    small, large = attribution["runs"]
    rows = []
    for step, growth in attribution["growth"].items():
        sizes = [run["steps"].get(step, {}) for run in (small, large)]
        rows.append(
            [
                f"`{step}`",
                *(f"{size.get('keys', 0):,}" for size in sizes),
                *(f"{size.get('heap_bytes', 0) / _MIB:,.1f}" for size in sizes),
                f"{growth['keys_per_million_messages']:,}",
                f"{growth['heap_bytes_per_million_messages'] / _MIB:,.0f}",
            ]
        )
    header = [
        "step",
        f"keys, {small['messages']:,} msgs",
        f"keys, {large['messages']:,} msgs",
        f"heap MiB, {small['messages']:,}",
        f"heap MiB, {large['messages']:,}",
        "keys per M msgs",
        "heap MiB per M msgs",
    ]
    return "\n".join(
        [
            "State per step (recovery snapshots, unpickled):",
            "",
            table(header, rows),
            "",
            "Its largest parts (attributes of the states, summed over keys):",
            "",
            render_parts(attribution),
        ]
    )


def render_parts(attribution: dict[str, Any]) -> str:
    """Return the parts of the states that take at least 1 % of the larger run's heap."""
    small, large = attribution["runs"]
    parts = {
        f"{step}.{path}": (small["steps"].get(step, {}).get("parts", {}).get(path, {}), part)
        for step, state in large["steps"].items()
        for path, part in state["parts"].items()
    }
    floor = sum(state["heap_bytes"] for state in large["steps"].values()) / 100
    rows = [
        [
            f"`{name}`",
            *(f"{size.get('items', 0):,}" for size in sizes),
            *(f"{size.get('heap_bytes', 0) / _MIB:,.1f}" for size in sizes),
            f"{attribution['part_growth'][name]['heap_bytes_per_million_messages'] / _MIB:,.0f}",
        ]
        for name, sizes in sorted(parts.items(), key=lambda item: -item[1][1]["heap_bytes"])
        if sizes[1]["heap_bytes"] >= floor
    ]
    header = [
        "part",
        f"items, {small['messages']:,} msgs",
        f"items, {large['messages']:,} msgs",
        f"heap MiB, {small['messages']:,}",
        f"heap MiB, {large['messages']:,}",
        "heap MiB per M msgs",
    ]
    return table(header, rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (``--show``: print saved results; ``--attribute``: add attribution)."""
    args = parse_args(argv)
    if args.show is not None:
        saved = json.loads(args.show.read_text())
        saved["summary"] = summarise(saved)
        saved["extrapolated"] = extrapolate(saved["summary"], saved["stream"]["total_messages"])
        print(render(saved))
        return 0
    with (
        code_under_test(args.working_tree) as code,
        tempfile.TemporaryDirectory(prefix="allocflow-bench-memory-", dir=args.cache_dir) as tmp,
    ):
        if args.attribute:
            return add_attribution(args, code, Path(tmp))
        results = benchmark(args, code, Path(tmp))
    print(render(results))
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n")
        log(f"results written to {args.output}")
    return 0 if results["flow"]["returncode"] == 0 else 1


def add_attribution(args: argparse.Namespace, code: dict[str, Any], work: Path) -> int:
    """Measure the state per step; add it to the saved results (``--quick``: print it)."""
    attribution = attribute(args, code, work)
    print(render_attribution(attribution))
    if args.output is not None:
        results = json.loads(args.output.read_text())
        results["attribution"] = attribution
        args.output.write_text(json.dumps(results, indent=2) + "\n")
        log(f"attribution added to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
