"""Benchmark of allocation: the plain-Python rules loop versus the Bytewax flow.

One simulated stream (``allocflow simulate --faults none``, baseline scenario, sized
so that the three allocation topics, orders, reservations and shipments, hold at
least ``--events`` messages) is generated once and cached in the temporary directory
under a name made of the arguments. Each repeat then measures, back to back:

* ``rules``: :func:`allocate_stream`, the whole allocation in one Python loop, in a
  worker process of its own. The files are read and merged as the flow's
  :class:`MergedFileSource` does, decoded into events, then allocated; each phase is
  timed apart, so the rules are reported with decoding excluded and included.
  Encoding the outputs to JSON (what the flow's sinks write) is timed apart too.
* ``flow_1w``: ``allocflow run --input DIR --out DIR``, one worker, as a subprocess.
* ``flow_2p``: ``python -m bytewax.run "allocflow.flows.allocation:get_flow(…)"``
  as two processes (``-i 0`` and ``-i 1``, ``-a`` with two local ports).

Flow times are wall times from starting the process(es) until the last exits, so
they include interpreter start-up; ``flow_1w_startup`` (the same command on empty
input files) measures that fixed cost. Peak RSS and CPU time come from ``wait4`` of
each child process. Every flow run's output is checked against the rules loop's: the
same decision and exception records (compared as sorted sets of record hashes) and
the same final status per order (``record_id`` and ``version`` aside, as the
integration tests compare them).

The runs import allocflow as committed at ``HEAD`` (exported to a temporary directory
put first on ``PYTHONPATH``), because other work edits the checkout meanwhile;
``--working-tree`` measures the checkout as it is.

Usage::

    .venv/bin/python bench/allocation.py [--events 1000000] [--repeats 3] [--quick]
    .venv/bin/python bench/allocation.py --rules-only DIR   # one rules run (profiling)
    .venv/bin/python bench/allocation.py --show              # the saved results

Results go to ``bench/results/allocation.json`` (``--quick``: printed only, unless
``--output`` names a file); ``--show`` prints the tables of saved results again,
recomputing the summary from the recorded runs.
"""

import argparse
import hashlib
import io
import json
import math
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson

from allocflow.connectors.policy_file import default_policy
from allocflow.connectors.stream_sources import MergedFileSource, RawMessage
from allocflow.flows import rules
from allocflow.flows.allocation import ALLOCATION_INPUTS
from allocflow.flows.rules.reference import allocate_stream
from allocflow.models.codec import ContractError, decode_event
from allocflow.models.envelope import EventEnvelope
from allocflow.models.topics import InputTopic

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_PATH = BENCH_DIR / "results" / "allocation.json"
RESULTS_VERSION = 1
DESCRIPTION = "Benchmark of allocation: the plain-Python rules loop versus the Bytewax flow."

SEED = 7
DEFAULT_EVENTS = 1_000_000
DEFAULT_REPEATS = 3
QUICK_EVENTS = 50_000
QUICK_REPEATS = 1
EVENTS_PER_ORDER_GUESS = 8.0
"""Allocation-topic messages per simulated order (baseline, default cover): a first guess."""
ALLOCATION_TOPICS = ("orders", "reservations", "shipments")
CHILD_TIMEOUT_S = 4 * 3600
PROFILE_EVENTS = 200_000
PROFILE_RATE_HZ = 100
LONG_EPOCH_S = 3600
"""``-s`` for the epoch experiment: longer than any run, so state is snapshotted at the end only."""
MODES = ("rules", "flow_1w", "flow_2p")
MODE_TITLES = {
    "rules": "rules loop (allocate_stream)",
    "flow_1w": "flow, 1 worker (allocflow run)",
    "flow_2p": "flow, 2 processes (bytewax.run -i 0/1)",
}
_KIB = 1024
_DIGEST_BYTES = 16


# --- the stream ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Stream:
    """A simulated input stream on disk.

    Attributes:
        directory: Holds ``<topic>.jsonl`` and ``manifest.json``.
        orders: ``--orders`` it was simulated with.
        messages: Messages per topic (from the manifest).
        command: The simulate command line.
    """

    directory: Path
    orders: int
    messages: dict[str, int]
    command: list[str]

    @property
    def input_events(self) -> int:
        """Messages in the three topics the allocation flow reads."""
        return sum(self.messages[topic] for topic in ALLOCATION_TOPICS)


def simulate_command(orders: int, out: Path) -> list[str]:
    """Return the ``allocflow simulate`` command line for ``orders`` orders into ``out``."""
    return [
        _cli(),
        "simulate",
        "--seed",
        str(SEED),
        "--orders",
        str(orders),
        "--faults",
        "none",
        "--out",
        str(out),
        "--no-progress",
    ]


def prepare_stream(events: int, cache_root: Path, import_root: str) -> Stream:
    """Simulate (or reuse) a stream with at least ``events`` allocation-topic messages.

    The number of orders is guessed, then raised until the stream is big enough.
    Streams are cached under ``cache_root`` by seed, target and a digest of the
    simulator's sources, so a changed simulator never reuses an old stream.

    Args:
        events: Minimum number of messages in orders, reservations and shipments.
        cache_root: Directory for cached streams.
        import_root: Directory the ``allocflow`` packages are imported from.

    Returns:
        The stream.
    """
    key = f"allocflow-bench-allocation-seed{SEED}-events{events}-sim{simulator_digest(import_root)}"
    directory = cache_root / key
    orders = math.ceil(events / EVENTS_PER_ORDER_GUESS)
    while True:
        stream = _cached(directory, orders)
        if stream is None:
            shutil.rmtree(directory, ignore_errors=True)
            command = simulate_command(orders, directory)
            log(f"simulating {orders:,} orders: {' '.join(command)}")
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            stream = _cached(directory, orders)
            if stream is None:
                raise RuntimeError(f"the simulator wrote no usable manifest in {directory}")
        if stream.input_events >= events:
            log(f"stream {directory}: {stream.input_events:,} allocation-topic messages")
            return stream
        orders = math.ceil(orders * events / stream.input_events * 1.01)


def simulator_digest(import_root: str) -> str:
    """Return a short digest of the simulator's source files under ``import_root``."""
    digest = hashlib.sha256()
    folder = Path(import_root) / "allocflow" / "connectors" / "simulator"
    for path in sorted(folder.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _cached(directory: Path, orders: int) -> Stream | None:
    manifest_path = directory / "manifest.json"
    if not manifest_path.is_file():
        return None
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("size", {}).get("orders") != orders:
        return None
    messages = {topic: int(info["messages"]) for topic, info in manifest["topics"].items()}
    return Stream(directory, orders, messages, simulate_command(orders, directory))


# --- the rules loop (runs in a worker process) ----------------------------------------------


def rules_run(stream_dir: Path) -> dict[str, Any]:
    """Run the rules loop over a stream and time its phases; the worker's entry point.

    Timed phases: read and merge the files (as the flow's source does), decode every
    message (the raw messages are then dropped), and allocate: ``allocate_stream``
    with each output counted and dropped, as a streaming consumer would. Peak RSS and
    CPU time are taken right after. A second, untimed pass of the rules then encodes
    every output to JSON, what the flow's sinks write (only the encoding is timed), and
    feeds the output digests.

    Args:
        stream_dir: Directory of the simulated stream.

    Returns:
        Timings, counts, digests, peak RSS and where allocflow was imported from.
    """
    policy = default_policy()
    started = time.perf_counter()
    files = {topic.value: stream_dir / f"{topic.value}.jsonl" for topic in ALLOCATION_INPUTS}
    partition = MergedFileSource(files).build_part("bench", "merged", None)
    messages: list[RawMessage] = []
    while True:
        try:
            messages += partition.next_batch()
        except StopIteration:
            break
    partition.close()
    read_s = time.perf_counter() - started
    input_events = len(messages)

    started = time.perf_counter()
    events: list[EventEnvelope] = []
    dead_letters = 0
    for message in messages:
        try:
            events.append(decode_event(InputTopic(message.topic), message.value))
        except ContractError:
            dead_letters += 1
    decode_s = time.perf_counter() - started
    del messages

    started = time.perf_counter()
    outputs = 0
    for _ in allocate_stream(events, policy):
        outputs += 1
    rules_s = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)

    encode_s = 0.0
    digests = OutputDigest()
    for output in allocate_stream(events, policy):
        started = time.perf_counter()
        line = output.__pydantic_serializer__.to_json(output)
        encode_s += time.perf_counter() - started
        digests.add(line)
    summary = digests.summary()
    if sum(digests.counts.values()) != outputs:
        raise RuntimeError("the second pass of the rules gave a different number of outputs")
    return {
        "input_events": input_events,
        "read_s": read_s,
        "decode_s": decode_s,
        "rules_s": rules_s,
        "encode_s": encode_s,
        "dead_letters": dead_letters,
        **summary,
        "peak_rss_mib": [_mib(usage.ru_maxrss)],
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "import_root": _import_root(),
    }


# --- output checks ------------------------------------------------------------------------


class OutputDigest:
    """Counts and order-independent digests of allocation output records.

    Decisions and exceptions are compared as sorted sets of line hashes; order statuses
    by the final status of each order (highest version) without ``record_id`` and
    ``version``, which depend on the order decisions reach the rollup.
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._lines: dict[str, list[bytes]] = {
            "allocation.decision": [],
            "allocation.exception": [],
        }
        self._final: dict[str, tuple[int, bytes]] = {}

    def add(self, line: bytes) -> None:
        """Account for one output record (one JSON document)."""
        record = orjson.loads(line)
        kind = str(record["record_type"])
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if kind == "order.status":
            order, number = str(record.pop("order_id")), int(record.pop("version"))
            record.pop("record_id")
            current = self._final.get(order)
            if current is None or current[0] < number:
                self._final[order] = (number, orjson.dumps(record, option=orjson.OPT_SORT_KEYS))
        elif kind in self._lines:
            self._lines[kind].append(_hash(line))

    def summary(self) -> dict[str, Any]:
        """Return the counts and digests (JSON-ready)."""
        statuses = sorted(
            _hash(order.encode() + b"\0" + doc) for order, (_, doc) in self._final.items()
        )
        return {
            "decisions": self.counts.get("allocation.decision", 0),
            "statuses": self.counts.get("order.status", 0),
            "exceptions": self.counts.get("allocation.exception", 0),
            "orders_with_status": len(self._final),
            "digests": {
                "decisions": _combine(self._lines["allocation.decision"]),
                "exceptions": _combine(self._lines["allocation.exception"]),
                "final_statuses": _combine(statuses),
            },
        }


def _hash(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=_DIGEST_BYTES).digest()


def _combine(hashes: list[bytes]) -> str:
    return hashlib.sha256(b"".join(sorted(hashes))).hexdigest()


def read_flow_outputs(out_dir: Path) -> dict[str, Any]:
    """Return counts and digests of a flow run's output files."""
    digests = OutputDigest()
    for name in ("allocation-decisions", "allocation-exceptions"):
        path = out_dir / f"{name}.jsonl"
        if path.exists():
            with path.open("rb") as handle:
                for line in handle:
                    digests.add(line.rstrip(b"\n"))
    dead = out_dir / "dead-letter.jsonl"
    dead_letters = sum(1 for _ in dead.open("rb")) if dead.exists() else 0
    return {**digests.summary(), "dead_letters": dead_letters}


def same_outputs(flow: dict[str, Any], rules: dict[str, Any]) -> list[str]:
    """Return what differs between a flow run's outputs and the rules loop's (empty: same)."""
    differences = [
        f"{name}: flow {flow[name]}, rules {rules[name]}"
        for name in ("decisions", "exceptions", "orders_with_status", "dead_letters")
        if flow[name] != rules[name]
    ]
    differences += [
        f"digest of {name} differs"
        for name, digest in rules["digests"].items()
        if flow["digests"][name] != digest
    ]
    return differences


# --- child processes ----------------------------------------------------------------------


@dataclass(frozen=True)
class ChildRun:
    """Processes started together and waited for.

    Attributes:
        wall_s: From starting the first process until the last exited.
        peak_rss_mib: Peak RSS of each process.
        cpu_s: User + system CPU time of each process.
    """

    wall_s: float
    peak_rss_mib: list[float]
    cpu_s: list[float]


def run_children(commands: Sequence[Sequence[str]], log_dir: Path) -> ChildRun:
    """Start ``commands`` at once, wait for all, and measure them.

    Args:
        commands: One command line per process.
        log_dir: Where each process's stdout and stderr go (``<index>.log``).

    Raises:
        RuntimeError: A process failed; the message holds the tail of its log.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    logs = [(log_dir / f"{index}.log").open("wb") for index in range(len(commands))]
    started = time.perf_counter()
    processes = [
        subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT)
        for command, log in zip(commands, logs, strict=True)
    ]
    results: dict[int, tuple[int, resource.struct_rusage]] = {}
    deadline = started + CHILD_TIMEOUT_S
    while len(results) < len(processes):
        for process in processes:
            if process.pid in results:
                continue
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                results[pid] = (os.waitstatus_to_exitcode(status), usage)
                process.returncode = results[pid][0]
        if time.perf_counter() > deadline:
            for process in processes:
                if process.pid not in results:
                    process.kill()
            raise RuntimeError(f"timed out after {CHILD_TIMEOUT_S} s: {commands}")
        time.sleep(0.01)
    wall_s = time.perf_counter() - started
    for log in logs:
        log.close()
    for index, process in enumerate(processes):
        code = results[process.pid][0]
        if code != 0:
            tail = (log_dir / f"{index}.log").read_text(errors="replace")[-4000:]
            raise RuntimeError(f"{' '.join(commands[index])} exited with {code}:\n{tail}")
    usages = [results[process.pid][1] for process in processes]
    return ChildRun(
        wall_s=wall_s,
        peak_rss_mib=[_mib(usage.ru_maxrss) for usage in usages],
        cpu_s=[usage.ru_utime + usage.ru_stime for usage in usages],
    )


def measure_rules(stream: Stream, work: Path) -> dict[str, Any]:
    """Run the rules loop in a fresh worker process; return its report."""
    report = work / "rules.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--rules-only", str(stream.directory)]
    run = run_children([[*command, "--report", str(report)]], work / "rules-logs")
    result: dict[str, Any] = json.loads(report.read_text())
    result["process_wall_s"] = run.wall_s
    return result


def flow_1w_command(input_dir: Path, out_dir: Path) -> list[str]:
    """Return the one-worker flow command line."""
    return [_cli(), "run", "--input", str(input_dir), "--out", str(out_dir)]


def flow_2p_commands(input_dir: Path, out_dir: Path, import_root: str) -> list[list[str]]:
    """Return the two command lines of the two-process flow (fresh local ports).

    Args:
        input_dir: The stream.
        out_dir: Where the outputs go.
        import_root: Directory the ``allocflow`` packages are imported from (the
            default policy file is taken from there).
    """
    policy = str(Path(import_root) / "allocflow" / "flows" / "policies" / "default.toml")
    flow = f"allocflow.flows.allocation:get_flow({str(input_dir)!r}, {str(out_dir)!r}, {policy!r})"
    addresses = ";".join(f"127.0.0.1:{port}" for port in free_ports(2))
    return [
        [sys.executable, "-m", "bytewax.run", flow, "-i", str(index), "-a", addresses]
        for index in range(2)
    ]


def measure_flow(commands: Sequence[Sequence[str]], out_dir: Path) -> dict[str, Any]:
    """Run a flow, then read its outputs; the output directory is removed afterwards."""
    run = run_children(commands, out_dir.with_name(out_dir.name + "-logs"))
    outputs = read_flow_outputs(out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)
    return {
        "wall_s": run.wall_s,
        "peak_rss_mib": run.peak_rss_mib,
        "cpu_s": run.cpu_s,
        **outputs,
    }


def measure_startup(work: Path) -> float:
    """Return the wall time of the one-worker flow over empty input files."""
    empty = work / "empty-input"
    empty.mkdir(parents=True, exist_ok=True)
    for topic in ALLOCATION_TOPICS:
        (empty / f"{topic}.jsonl").write_bytes(b"")
    out = work / "empty-output"
    run = run_children([flow_1w_command(empty, out)], work / "empty-logs")
    shutil.rmtree(out, ignore_errors=True)
    return run.wall_s


def free_ports(count: int) -> list[int]:
    """Return ``count`` local ports that were free a moment ago."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


# --- one repeat ---------------------------------------------------------------------------


def run_repeat(stream: Stream, work: Path, repeat: int, import_root: str) -> dict[str, Any]:
    """Measure every mode once, in order: rules, one worker, two processes, start-up."""
    result: dict[str, Any] = {"repeat": repeat}
    for mode in MODES:
        load_before = load_average()
        log(f"repeat {repeat}: {MODE_TITLES[mode]} (load {_loads(load_before)})")
        if mode == "rules":
            measured = measure_rules(stream, work / f"r{repeat}")
        elif mode == "flow_1w":
            out = work / f"r{repeat}-flow-1w"
            measured = measure_flow([flow_1w_command(stream.directory, out)], out)
        else:
            out = work / f"r{repeat}-flow-2p"
            measured = measure_flow(flow_2p_commands(stream.directory, out, import_root), out)
        measured["load_before"], measured["load_after"] = load_before, load_average()
        result[mode] = measured
        log(f"  {_describe(mode, measured, stream.input_events)}")
    result["flow_1w_startup_s"] = measure_startup(work / f"r{repeat}")
    for mode in ("flow_1w", "flow_2p"):
        result[mode]["differences"] = same_outputs(result[mode], result["rules"])
        result[mode]["matches_rules"] = not result[mode]["differences"]
        if result[mode]["differences"]:
            log(f"  {mode} differs from the rules: {result[mode]['differences']}")
    return result


def _describe(mode: str, measured: dict[str, Any], events: int) -> str:
    wall = measured["rules_s"] if mode == "rules" else measured["wall_s"]
    return f"{wall:.1f} s, {events / wall:,.0f} events/s, {measured['decisions']:,} decisions"


# --- summary ------------------------------------------------------------------------------


def spread(values: Sequence[float]) -> dict[str, float]:
    """Return the median, minimum and maximum of ``values``."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _seconds(run: dict[str, Any], mode: str) -> float:
    """Return a run's time for a mode: in-process phases for the rules, wall for flows."""
    if mode == "rules_only":
        return float(run["rules"]["rules_s"])
    if mode == "rules_with_decode":
        rules = run["rules"]
        return float(rules["read_s"] + rules["decode_s"] + rules["rules_s"])
    return float(run[mode]["wall_s"])


def _cpu(run: dict[str, Any], mode: str) -> float:
    """Return a run's CPU seconds for a mode (summed over processes)."""
    source = "rules" if mode.startswith("rules") else mode
    cpu = run[source]["cpu_s"]
    return float(sum(cpu) if isinstance(cpu, list) else cpu)


def summarise(runs: list[dict[str, Any]], events: int) -> dict[str, Any]:
    """Return medians (with min and max) over the repeats, rates and ratios.

    Ratios are throughput ratios taken within each repeat (so that both sides saw the
    same load), then the median and range over the repeats.
    """
    first = runs[0]
    decisions = int(first["rules"]["decisions"])
    modes: dict[str, Any] = {}
    for mode in ("rules_only", "rules_with_decode", "flow_1w", "flow_2p"):
        seconds = [_seconds(run, mode) for run in runs]
        source = "rules" if mode.startswith("rules") else mode
        processes = len(first[source]["peak_rss_mib"])
        modes[mode] = {
            "seconds": spread(seconds),
            "events_per_s": spread([events / value for value in seconds]),
            "decisions_per_s": spread([decisions / value for value in seconds]),
            "cpu_s": spread([_cpu(run, mode) for run in runs]),
            "peak_rss_mib": [
                statistics.median(run[source]["peak_rss_mib"][index] for run in runs)
                for index in range(processes)
            ],
        }

    def ratio(faster: str, slower: str) -> dict[str, float]:
        return spread([_seconds(run, slower) / _seconds(run, faster) for run in runs])

    def phase(name: str) -> dict[str, float]:
        return spread([float(run["rules"][name]) for run in runs])

    return {
        "input_events": events,
        "outputs": {
            "decisions": decisions,
            "statuses": first["rules"]["statuses"],
            "exceptions": first["rules"]["exceptions"],
            "dead_letters": first["rules"]["dead_letters"],
            "orders_with_status": first["rules"]["orders_with_status"],
            "statuses_per_run": {
                mode: [run[mode]["statuses"] for run in runs]
                for mode in ("rules", "flow_1w", "flow_2p")
            },
        },
        **modes,
        "rules_phases_s": {
            "read_and_merge": phase("read_s"),
            "decode": phase("decode_s"),
            "allocate": phase("rules_s"),
            "encode_outputs": phase("encode_s"),
        },
        "flow_1w_startup_s": spread([float(run["flow_1w_startup_s"]) for run in runs]),
        "ratios": {
            "flow_1w_over_rules_only": ratio("flow_1w", "rules_only"),
            "flow_1w_over_rules_with_decode": ratio("flow_1w", "rules_with_decode"),
            "flow_2p_over_flow_1w": ratio("flow_2p", "flow_1w"),
        },
        "notes": {
            "ratios": "throughput of the first over the second (events/s), within each "
            "repeat; above 1 means the first is faster",
            "peak_rss_mib": "per process, median; the rules loop's includes every decoded "
            "event, held in memory so that decoding can be timed apart",
            "cpu_s": "user + system; rules: the worker through read, decode and allocate; "
            "flows: summed over the processes, start-up included",
            "seconds": "rules: phases timed in-process; flows: wall time of the "
            "process(es), start-up included",
        },
        "all_flow_runs_match_rules": all(
            run[mode]["matches_rules"] for run in runs for mode in ("flow_1w", "flow_2p")
        ),
    }


# --- code under test and machine facts --------------------------------------------------


@contextmanager
def work_directory(prefix: str, parent: Path | None, keep: bool) -> Iterator[Path]:
    """A fresh directory for a benchmark's files, removed afterwards unless ``keep``."""
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield work
    finally:
        if keep:
            log(f"DuckDB files kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


@contextmanager
def code_under_test(working_tree: bool, commit: str | None = None) -> Iterator[dict[str, Any]]:
    """Make every child import allocflow as committed (or the working tree).

    The package is installed in editable mode and other work edits the checkout, so by
    default ``commit`` (``HEAD`` when None) is exported to a temporary directory put
    first on ``PYTHONPATH``.

    Yields:
        ``source`` (``commit`` or ``working tree``), ``commit`` and ``import_root``.
    """
    commit = commit or output_of(["git", "-C", str(REPO_DIR), "rev-parse", "HEAD"])
    if working_tree or commit is None:
        yield {"source": "working tree", "commit": commit, "import_root": _import_root()}
        return
    with tempfile.TemporaryDirectory(prefix="allocflow-bench-src-") as tmp:
        root = export_packages(commit, Path(tmp))
        saved = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), saved]))
        sys.path.insert(0, str(root))
        try:
            yield {"source": "commit", "commit": commit, "import_root": str(root)}
        finally:
            sys.path.remove(str(root))
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved


def export_packages(commit: str, directory: Path) -> Path:
    """Export the allocflow packages at ``commit`` into ``directory/import``; return it."""
    archive = subprocess.run(
        ["git", "-C", str(REPO_DIR), "archive", "--format=tar", commit],
        check=True,
        capture_output=True,
    ).stdout
    export = directory / "export"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(export, filter="data")
    project = tomllib.loads((export / "pyproject.toml").read_text())
    root = directory / "import"
    for package, folder in sorted(project["tool"]["setuptools"]["package-dir"].items()):
        shutil.copytree(export / folder, root.joinpath(*package.split(".")), dirs_exist_ok=True)
    return root


def _import_root() -> str:
    return str(Path(rules.__file__).parents[3])


def child_import_root() -> str | None:
    """Return where a child process (same environment) imports ``allocflow.flows`` from."""
    return output_of([sys.executable, "-c", "import allocflow.flows as f; print(f.__file__)"])


def machine_facts() -> dict[str, Any]:
    """Return what the numbers depend on: CPU, cores, memory, Python, versions."""
    return {
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "memory_total_mib": _memory_total_mib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "allocflow": version("allocflow"),
        "bytewax": version("bytewax"),
        "pydantic": version("pydantic"),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_total_mib() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // _KIB
    except OSError:
        pass
    return None


def output_of(command: list[str]) -> str | None:
    """Return a command's stripped stdout, or None if it fails."""
    try:
        done = subprocess.run(command, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


def load_average() -> list[float]:
    """Return the 1, 5 and 15 minute load averages."""
    return [round(value, 2) for value in os.getloadavg()]


def log(message: str) -> None:
    """Print a progress line to stderr."""
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def _cli() -> str:
    return str(Path(sys.executable).with_name("allocflow"))


def _mib(kibibytes: float) -> float:
    """Convert ``ru_maxrss`` (KiB on Linux) to MiB."""
    return round(kibibytes / _KIB, 1)


def _loads(loads: list[float]) -> str:
    return " / ".join(f"{value:.2f}" for value in loads)


# --- rendering ----------------------------------------------------------------------------


def render(results: dict[str, Any]) -> str:
    """Return the results as Markdown: heading, table of medians (min-max), ratios."""
    summary = results["summary"]
    events = summary["input_events"]
    titles = {
        "rules_only": "rules loop, decoded events in memory",
        "rules_with_decode": "rules loop + read/merge + decode",
        "flow_1w": MODE_TITLES["flow_1w"],
        "flow_2p": MODE_TITLES["flow_2p"],
    }
    header = ["", "seconds", "input events/s", "decisions/s", "CPU s", "peak RSS MiB"]
    rows = [_row(title, summary[mode]) for mode, title in titles.items()]
    ratios = summary["ratios"]
    phases = summary["rules_phases_s"]
    outputs = summary["outputs"]
    statuses = outputs["statuses_per_run"]
    machine = results["machine"]
    lines = [
        f"{events:,} input events ({_topics(results['stream']['messages'])}); "
        f"median (min-max) of {results['repeats']} repeat(s)",
        f"{machine['cpu_model']}, {machine['logical_cpus']} CPUs, Python {machine['python']}, "
        f"allocflow {machine['allocflow']} ({results['code']['source']} "
        f"{(results['code']['commit'] or '')[:12]}), bytewax {machine['bytewax']}",
        f"load average before {_loads(results['load_average']['before'])}, "
        f"after {_loads(results['load_average']['after'])}",
        "",
        table(header, rows),
        "",
        f"outputs: {outputs['decisions']:,} decisions, {outputs['exceptions']:,} exception "
        f"records, {outputs['dead_letters']:,} dead letters; order statuses per run: rules "
        f"{_counts(statuses['rules'])}, flow 1 worker {_counts(statuses['flow_1w'])}, "
        f"2 processes {_counts(statuses['flow_2p'])}",
        "rules-loop phases (s): "
        + ", ".join(f"{name} {_spread(phases[key], '.1f')}" for key, name in _PHASES.items())
        + f"; flow start-up on empty input {_spread(summary['flow_1w_startup_s'], '.1f')}",
        "throughput ratios within a repeat: flow 1 worker / rules loop "
        f"{_spread(ratios['flow_1w_over_rules_only'], '.2f')}, flow 1 worker / rules loop "
        f"with decode {_spread(ratios['flow_1w_over_rules_with_decode'], '.2f')}, "
        f"2 processes / 1 worker {_spread(ratios['flow_2p_over_flow_1w'], '.2f')}",
        "flow outputs equal the rules loop's in every run: "
        + ("yes" if summary["all_flow_runs_match_rules"] else "NO"),
    ]
    return "\n".join(lines)


_PHASES = {
    "read_and_merge": "read+merge",
    "decode": "decode",
    "allocate": "allocate",
    "encode_outputs": "encode outputs",
}


def _row(title: str, mode: dict[str, Any]) -> list[str]:
    rss = " + ".join(f"{value:,.0f}" for value in mode["peak_rss_mib"])
    return [
        title,
        _spread(mode["seconds"], ",.1f"),
        _spread(mode["events_per_s"]),
        _spread(mode["decisions_per_s"]),
        _spread(mode["cpu_s"], ",.1f"),
        rss,
    ]


def _spread(stats: dict[str, float], spec: str = ",.0f") -> str:
    if stats["min"] == stats["max"]:
        return format(stats["median"], spec)
    low, high = format(stats["min"], spec), format(stats["max"], spec)
    return f"{format(stats['median'], spec)} ({low}-{high})"


def _counts(values: list[int]) -> str:
    return " / ".join(f"{value:,}" for value in values)


def _topics(messages: dict[str, int]) -> str:
    return ", ".join(f"{topic} {messages[topic]:,}" for topic in ALLOCATION_TOPICS)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Return a Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# --- profiles and the epoch experiment ----------------------------------------------------


def profile(cache_root: Path, import_root: str) -> dict[str, Any]:
    """Profile the rules loop and the one-worker flow with py-spy on a smaller stream.

    Both run over the same ~200,000-event stream, sampled at ``PROFILE_RATE_HZ``; the
    raw (collapsed) stacks are reduced to shares of samples. For the rules loop only
    the first, timed pass of ``allocate_stream`` counts.

    Args:
        cache_root: Directory for cached streams.
        import_root: Directory the ``allocflow`` packages are imported from.

    Returns:
        The ``profile`` entry of the results.
    """
    stream = prepare_stream(PROFILE_EVENTS, cache_root, import_root)
    spy = str(Path(sys.executable).with_name("py-spy"))
    entry: dict[str, Any] = {
        "stream": {
            "simulate_command": " ".join(stream.command),
            "input_events": stream.input_events,
        },
        "sampling_hz": PROFILE_RATE_HZ,
    }
    with tempfile.TemporaryDirectory(prefix="allocflow-bench-profile-") as tmp:
        work = Path(tmp)
        report = work / "rules.json"
        rules_command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--rules-only",
            str(stream.directory),
            "--report",
            str(report),
        ]
        log("profiling the rules loop")
        rules_raw = _spy(spy, rules_command, work / "rules.txt")
        first_pass = f"rules_run ({Path(__file__).name}:{_first_pass_line()})"
        entry["rules"] = {
            "command": "py-spy record -f raw -r 100 -- " + " ".join(rules_command),
            "report": json.loads(report.read_text()),
            **collapse(rules_raw, keep=first_pass, frames=_RULES_FRAMES),
        }
        out = work / "flow-out"
        flow_command = flow_1w_command(stream.directory, out)
        log("profiling the one-worker flow")
        flow_raw = _spy(spy, flow_command, work / "flow.txt")
        entry["flow_1w"] = {
            "command": "py-spy record -f raw -r 100 -- " + " ".join(flow_command),
            **collapse(flow_raw, keep=None, frames=_FLOW_FRAMES),
        }
    return entry


_RULES_FRAMES = {
    "plan_fill": "plan a line's allocation (plan_fill)",
    "_protection_owed": "protection owed to higher tiers",
    "Policy.candidate_nodes": "candidate nodes of the region",
    "SkuBook.request": "new order lines (SkuBook.request)",
    "SkuBook.issue": "goods issues (SkuBook.issue)",
    "SkuBook._rebalance": "rebalance after a supply change",
    "SkuBook._serve_backorders": "serve backorders",
    "AllocationShard._records": "build decision and exception records",
    "OrderRollup.apply": "order rollup",
    "BaseModel.__init__": "pydantic model construction",
    "route": "route events to shards",
}
_FLOW_FRAMES = {
    "_StatefulFlatMapLogic.snapshot": "state snapshots (copy.deepcopy at each epoch)",
    "AllocationShard.apply": "allocation rules (AllocationShard.apply)",
    "_roll_up": "order rollup",
    "_Router.__call__": "decode and route",
    "MergedFilePartition.next_batch": "read and merge the files",
    "_to_json": "encode outputs to JSON",
    "JsonLinesPartition.write_batch": "write output files",
}


def _stream_dir(results: dict[str, Any]) -> Path:
    """Return the directory of the saved results' stream (from its simulate command)."""
    command = str(results["stream"]["simulate_command"]).split()
    directory = Path(command[command.index("--out") + 1])
    if not (directory / "manifest.json").is_file():
        raise FileNotFoundError(f"the benchmark's stream is gone: {directory}")
    return directory


def _first_pass_line() -> int:
    """Return the line of ``rules_run`` that runs the timed pass of ``allocate_stream``."""
    source = Path(__file__).read_text().splitlines()
    start = next(i for i, line in enumerate(source) if line.startswith("def rules_run("))
    marker = "for _ in allocate_stream(events, policy):"
    return next(i for i in range(start, len(source)) if source[i].strip() == marker) + 1


def _spy(spy: str, command: list[str], output: Path) -> Path:
    """Run ``command`` under ``py-spy record -f raw``; return the raw stacks file."""
    record = [spy, "record", "-f", "raw", "-r", str(PROFILE_RATE_HZ), "-o", str(output)]
    run_children([[*record, "--", *command]], output.with_suffix(".logs"))
    return output


def collapse(raw: Path, keep: str | None, frames: dict[str, str]) -> dict[str, Any]:
    """Reduce py-spy raw stacks to shares of samples.

    Args:
        raw: The ``-f raw`` output (one ``frame;frame;… count`` line per stack).
        keep: Count only stacks with a frame starting with this text (None: all).
        frames: Function name → description; their inclusive shares are reported.

    Returns:
        ``samples``, ``inclusive`` shares of ``frames`` and the top ``self`` shares.
    """
    leaf: dict[str, int] = {}
    inclusive = dict.fromkeys(frames, 0)
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        names = [_function(frame) for frame in stack.split(";")]
        if keep is not None and not any(frame.startswith(keep) for frame in stack.split(";")):
            continue
        count = int(count_text)
        total += count
        leaf[names[-1]] = leaf.get(names[-1], 0) + count
        for name in set(names) & set(frames):
            inclusive[name] += count
    top = sorted(leaf.items(), key=lambda item: -item[1])[:15]
    return {
        "samples": total,
        "inclusive_share": {
            name: {"what": frames[name], "share": round(count / total, 4)}
            for name, count in inclusive.items()
        },
        "self_share_top": {name: round(count / total, 4) for name, count in top},
    }


def _function(frame: str) -> str:
    """``name (path:line)`` → ``name``."""
    return frame.rsplit(" (", 1)[0]


def epoch_experiment(results: dict[str, Any], work: Path, import_root: str) -> dict[str, Any]:
    """Run the flow with the default 10 s epochs and with one long epoch, once each.

    Bytewax snapshots the state of every key touched in an epoch at its end, recovery
    or not, and ``stateful_flat_map`` snapshots by ``copy.deepcopy``. ``-s`` sets the
    epoch length. The runs use ``python -m bytewax.run`` (no recovery) over the
    benchmark's own stream and are checked against its rules loop.

    Args:
        results: The saved benchmark results (stream, rules digests).
        work: Scratch directory.
        import_root: Directory the ``allocflow`` packages are imported from.

    Returns:
        The ``epoch_experiment`` entry of the results.
    """
    stream_dir = _stream_dir(results)
    rules = results["runs"][0]["rules"]
    events = int(results["stream"]["input_events"])
    variants: dict[str, list[list[str]]] = {}
    one = flow_2p_commands(stream_dir, work / "OUT", import_root)[0][:4]
    variants["flow_1w_epoch_10s"] = [one]
    variants[f"flow_1w_epoch_{LONG_EPOCH_S}s"] = [[*one, "-s", str(LONG_EPOCH_S)]]
    variants[f"flow_2p_epoch_{LONG_EPOCH_S}s"] = [
        [*command, "-s", str(LONG_EPOCH_S)]
        for command in flow_2p_commands(stream_dir, work / "OUT", import_root)
    ]
    entry: dict[str, Any] = {"input_events": events, "runs": {}}
    for name, commands in variants.items():
        out = work / name
        concrete = [[part.replace(str(work / "OUT"), str(out)) for part in c] for c in commands]
        load_before = load_average()
        log(f"epoch experiment: {name}")
        measured = measure_flow(concrete, out)
        differences = same_outputs(measured, rules)
        entry["runs"][name] = {
            "commands": [" ".join(c) for c in concrete],
            "wall_s": measured["wall_s"],
            "events_per_s": events / measured["wall_s"],
            "cpu_s": measured["cpu_s"],
            "peak_rss_mib": measured["peak_rss_mib"],
            "decisions": measured["decisions"],
            "matches_rules": not differences,
            "differences": differences,
            "load_before": load_before,
            "load_after": load_average(),
        }
        log(f"  {measured['wall_s']:.1f} s, {events / measured['wall_s']:,.0f} events/s")
    return entry


# --- main ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument(
        "--events",
        type=int,
        default=None,
        help=f"minimum allocation-topic messages (default {DEFAULT_EVENTS:,})",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help=f"repeats (default {DEFAULT_REPEATS})"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_EVENTS:,} events, {QUICK_REPEATS} repeat, no results file",
    )
    parser.add_argument("--output", type=Path, help=f"results file (default {RESULTS_PATH})")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="where simulated streams are cached (default: the temporary directory)",
    )
    parser.add_argument(
        "--working-tree", action="store_true", help="measure the checkout, not HEAD"
    )
    parser.add_argument(
        "--rules-only", type=Path, metavar="DIR", help="run the rules loop once over DIR"
    )
    parser.add_argument("--report", type=Path, help="with --rules-only: write the report here")
    parser.add_argument(
        "--show",
        nargs="?",
        type=Path,
        const=RESULTS_PATH,
        metavar="FILE",
        help=f"print the tables of saved results (default {RESULTS_PATH}) and exit",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="add py-spy profiles (200,000 events) and the epoch experiment to saved results",
    )
    args = parser.parse_args(argv)
    if args.events is None:
        args.events = QUICK_EVENTS if args.quick else DEFAULT_EVENTS
    if args.repeats is None:
        args.repeats = QUICK_REPEATS if args.quick else DEFAULT_REPEATS
    if args.events < 1 or args.repeats < 1:
        parser.error("--events and --repeats must be at least 1")
    if args.output is None and not args.quick:
        args.output = RESULTS_PATH
    return args


def benchmark(args: argparse.Namespace, code: dict[str, Any]) -> dict[str, Any]:
    """Simulate (or reuse) the stream, run the repeats and summarise them."""
    load_before = load_average()
    stream = prepare_stream(args.events, args.cache_dir, code["import_root"])
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="allocflow-bench-allocation-") as tmp:
        for repeat in range(1, args.repeats + 1):
            runs.append(run_repeat(stream, Path(tmp), repeat, code["import_root"]))
    return {
        "benchmark": "allocation",
        "results_version": RESULTS_VERSION,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["bench/allocation.py", *(sys.argv[1:])]),
        "machine": machine_facts(),
        "code": {**code, "child_imports_from": child_import_root()},
        "load_average": {"before": load_before, "after": load_average()},
        "repeats": args.repeats,
        "stream": {
            "simulate_command": " ".join(stream.command),
            "orders": stream.orders,
            "messages": stream.messages,
            "input_events": stream.input_events,
            "note": "input events: orders + reservations + shipments (carrier-events unread)",
        },
        "commands": {
            "flow_1w": " ".join(flow_1w_command(stream.directory, Path("OUT"))),
            "flow_2p": [
                " ".join(command)
                for command in flow_2p_commands(stream.directory, Path("OUT"), code["import_root"])
            ],
        },
        "summary": summarise(runs, stream.input_events),
        "runs": runs,
    }


def add_profiles(args: argparse.Namespace) -> int:
    """Profile and run the epoch experiment at the saved results' commit; save them too."""
    path = args.output or RESULTS_PATH
    results = json.loads(path.read_text())
    commit = None if results["code"]["source"] != "commit" else results["code"]["commit"]
    with code_under_test(commit is None, commit) as code:
        results["profile"] = profile(args.cache_dir, code["import_root"])
        with tempfile.TemporaryDirectory(prefix="allocflow-bench-epochs-") as tmp:
            results["epoch_experiment"] = epoch_experiment(results, Path(tmp), code["import_root"])
        results["epoch_experiment"]["command"] = " ".join(["bench/allocation.py", *(sys.argv[1:])])
        results["epoch_experiment"]["commit"] = code["commit"]
    path.write_text(json.dumps(results, indent=2) + "\n")
    log(f"profiles and the epoch experiment added to {path}")
    return (
        0
        if all(run["matches_rules"] for run in results["epoch_experiment"]["runs"].values())
        else 1
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (``--rules-only``: one rules-loop run; ``--show``: print results)."""
    args = parse_args(argv)
    if args.show is not None:
        saved = json.loads(args.show.read_text())
        saved["summary"] = summarise(saved["runs"], saved["stream"]["input_events"])
        print(render(saved))
        return 0
    if args.rules_only is not None:
        report = rules_run(args.rules_only)
        text = json.dumps(report, indent=2)
        if args.report is not None:
            args.report.write_text(text + "\n")
        else:
            print(text)
        return 0
    if args.profile:
        return add_profiles(args)
    with code_under_test(args.working_tree) as code:
        results = benchmark(args, code)
    print(render(results))
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n")
        log(f"results written to {args.output}")
    return 0 if results["summary"]["all_flow_runs_match_rules"] else 1


if __name__ == "__main__":
    sys.exit(main())
