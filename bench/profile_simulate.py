"""Where the simulator spends its time: py-spy samples of one run per target, summarised.

For each target (files, kafka) this runs ``py-spy record --format raw --idle`` on a
child process that does one measurement of ``bench/simulate.py`` and nothing else,
then reduces the collapsed stacks of its main thread to the functions with the most
samples, on the stack at all (inclusive) and on top of it (self), and to the stages of
the pipeline in :data:`STAGES`. Idle samples are kept, so waits (the final Kafka flush)
count. Only Python frames are sampled: the producer's librdkafka threads and the broker
process do not show, and time spent in native code (pydantic-core, orjson) is charged
to the Python function that called it.

Results go to ``bench/results/simulate_profile.json``.

Usage::

    .venv/bin/python bench/profile_simulate.py [--orders 20000] [--rate 100]
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import simulate

RESULTS_PATH = simulate.BENCH_DIR / "results" / "simulate_profile.json"
TARGETS: tuple[simulate.Target, ...] = ("files", "kafka")
DEFAULT_ORDERS = 20_000
DEFAULT_RATE = 100
TOP = 25


def _markers(function: str, simulator_module: str) -> frozenset[tuple[str, str]]:
    return frozenset({(function, f"connectors/simulator/{simulator_module}.py")})


def _sink_markers(method: str) -> frozenset[tuple[str, str]]:
    return _markers(f"FileSink.{method}", "output") | _markers(f"KafkaSink.{method}", "output")


# Stages of a simulated message, innermost first: a sample is charged to the first
# stage, going from the sampled frame towards the root, whose (function, file) is on
# the stack. py-spy names a method by its qualified name, e.g. ``FileSink.write``.
STAGES: tuple[tuple[str, frozenset[tuple[str, str]]], ...] = (
    ("JSON encoding (pydantic serializer)", frozenset({("encode_event", "models/codec.py")})),
    ("creating event models (ids, pydantic validation)", _markers("Simulation._emit", "engine")),
    ("sink write (file write or Kafka produce)", _sink_markers("write")),
    ("sink close (Kafka: final flush)", _sink_markers("close")),
    ("byte metering (benchmark only)", frozenset({("MeteredSink.write", "simulate.py")})),
    ("manifest counting", _markers("ManifestBuilder.add", "manifest")),
    ("scenario effects", _markers("ScenarioEffects.observe", "effects")),
    ("message record (key, SimRecord)", _markers("record_of", "records")),
    ("simulation logic (engine, world, demand)", _markers("Simulation.run", "engine")),
    (
        "runner loop (fault injector, pacer, progress)",
        _markers("FaultInjector.inject", "faults")
        | _markers("_clean_records", "runner")
        | _markers("run_simulation", "runner"),
    ),
)
OTHER_STAGE = "other (imports, broker start, topic setup)"

_THREAD_ROOT = "Thread._bootstrap "
_FRAME = re.compile(r"^(?P<function>.+?) \((?P<file>[^()]*)\)$")


@dataclass
class Profile:
    """Collapsed stacks reduced to counts.

    Attributes:
        samples: Samples of the main thread.
        other_threads: Samples of other Python threads (tqdm's monitor), left out.
        inclusive: Samples with the function anywhere on the stack.
        leaf: Samples with the function on top of the stack (its own time).
        stages: Samples per stage of :data:`STAGES`.
    """

    samples: int = 0
    other_threads: int = 0
    inclusive: Counter[str] = field(default_factory=Counter)
    leaf: Counter[str] = field(default_factory=Counter)
    stages: Counter[str] = field(default_factory=Counter)

    def add(self, frames: Sequence[str], count: int) -> None:
        """Count one collapsed stack (root first) seen ``count`` times."""
        if frames[0].startswith(_THREAD_ROOT):
            self.other_threads += count
            return
        names = [_function_of(frame) for frame in frames]
        self.samples += count
        self.leaf[names[-1]] += count
        for name in set(names):
            self.inclusive[name] += count
        self.stages[_stage_of(names)] += count

    def as_json(self, top: int) -> dict[str, Any]:
        """Return the ``top`` functions of each kind and every stage, with shares."""
        return {
            "samples": self.samples,
            "other_thread_samples": self.other_threads,
            "stages": self._shares(self.stages, len(self.stages)),
            "top_inclusive": self._shares(self.inclusive, top),
            "top_self": self._shares(self.leaf, top),
        }

    def _shares(self, counts: Counter[str], top: int) -> list[dict[str, Any]]:
        return [
            {"function": name, "samples": count, "share": count / self.samples}
            for name, count in counts.most_common(top)
        ]


def parse_collapsed(lines: Iterable[str]) -> Profile:
    """Reduce py-spy ``raw`` output (``frame;frame;… count`` per line) to a profile."""
    profile = Profile()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if stack:
            profile.add(stack.split(";"), int(count))
    return profile


def _function_of(frame: str) -> str:
    """Return ``function (file)``: the frame without the line number py-spy adds."""
    match = _FRAME.match(frame)
    if match is None:
        return frame
    file = match.group("file").rsplit(":", 1)[0]
    return f"{match.group('function')} ({file})"


def _stage_of(names: Sequence[str]) -> str:
    for name in reversed(names):
        function, _, rest = name.partition(" (")
        file = rest.removesuffix(")")
        for stage, markers in STAGES:
            if any(function == marker and _is_file(file, suffix) for marker, suffix in markers):
                return stage
    return OTHER_STAGE


def _is_file(file: str, suffix: str) -> bool:
    """Whether ``file`` (as py-spy shortens it) is the file named by ``suffix``."""
    return file == suffix or file.endswith(f"/{suffix}")


def record(target: simulate.Target, orders: int, rate: int, directory: Path) -> dict[str, Any]:
    """Sample one measurement of ``target`` with py-spy; return the measurement.

    The collapsed stacks go to ``directory/<target>.txt``.
    """
    result_path = directory / f"{target}.json"
    child = [sys.executable, __file__, "--child", target, "--orders", str(orders)]
    command = [
        str(Path(sys.executable).with_name("py-spy")),
        *("record", "--format", "raw", "--rate", str(rate), "--idle"),
        *("--output", str(directory / f"{target}.txt"), "--"),
        *child,
        *("--child-result", str(result_path)),
    ]
    subprocess.run(command, check=True, capture_output=True)
    result: dict[str, Any] = json.loads(result_path.read_text())
    return result


def profile_target(
    target: simulate.Target, orders: int, rate: int, code: dict[str, Any]
) -> dict[str, Any]:
    """Profile one measurement of ``target`` running ``code``; return its summary."""
    with tempfile.TemporaryDirectory(prefix="allocflow-profile-") as tmp:
        result = record(target, orders, rate, Path(tmp))
        profile = parse_collapsed((Path(tmp) / f"{target}.txt").read_text().splitlines())
    simulate.check_sources(code, result.pop("source_digest"), result.pop("import_root"))
    simulate.log(f"{target}: {profile.samples:,} samples, {result['wall_s']:.1f} s sampled")
    return {"measurement": result, **profile.as_json(TOP)}


def profile(args: argparse.Namespace, code: dict[str, Any]) -> dict[str, Any]:
    """Profile every target; return the results document."""
    started = datetime.now(UTC)
    load_before = simulate.load_average()
    targets = {target: profile_target(target, args.orders, args.rate, code) for target in TARGETS}
    return {
        "benchmark": "simulate_profile",
        "started": started.isoformat(timespec="seconds"),
        "command": args.command,
        "settings": {"orders": args.orders, "rate_hz": args.rate, "seed": simulate.SEED},
        "py_spy": simulate.output_of([str(Path(sys.executable).with_name("py-spy")), "--version"]),
        "machine": simulate.machine_facts(),
        "code": {name: value for name, value in code.items() if name != "import_root"},
        "load_average": {"before": load_before, "after": simulate.load_average()},
        "targets": targets,
    }


def render(results: dict[str, Any], top: int = 10) -> str:
    """Return the stage shares per target and the ``top`` self-time frames as Markdown."""
    targets: dict[str, dict[str, Any]] = results["targets"]
    return "\n\n".join([_render_stages(targets), *(_render_top(targets, t, top) for t in targets)])


def _render_stages(targets: dict[str, dict[str, Any]]) -> str:
    shares = {
        target: {row["function"]: row["share"] for row in profile["stages"]}
        for target, profile in targets.items()
    }
    rows = [
        [stage, *(_percent(shares[target].get(stage, 0.0)) for target in targets)]
        for stage in [*(stage for stage, _ in STAGES), OTHER_STAGE]
    ]
    rows.append(["samples (main thread)", *(f"{p['samples']:,}" for p in targets.values())])
    header = ["stage (share of samples)", *(simulate.TARGET_TITLES[t] for t in targets)]
    return simulate.table(header, rows)


def _render_top(targets: dict[str, dict[str, Any]], target: str, top: int) -> str:
    rows = [
        [f"`{row['function']}`", _percent(row["share"])]
        for row in targets[target]["top_self"][:top]
    ]
    return simulate.table([f"top self time, {simulate.TARGET_TITLES[target]}", "share"], rows)


def _percent(share: float) -> str:
    return f"{100 * share:.1f} %"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--orders", type=int, default=DEFAULT_ORDERS, help="orders per run")
    parser.add_argument("--rate", type=int, default=DEFAULT_RATE, help="samples per second")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH, help="results file")
    parser.add_argument(
        "--working-tree", action="store_true", help="profile the checkout as it is, not HEAD"
    )
    parser.add_argument("--show", action="store_true", help="print saved results, run nothing")
    parser.add_argument("--child", choices=TARGETS, help=argparse.SUPPRESS)
    parser.add_argument("--child-result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.command = " ".join(
        ["bench/profile_simulate.py", *(sys.argv[1:] if argv is None else argv)]
    )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Profile every target (or show saved results); print the table, write the JSON."""
    args = parse_args(argv)
    if args.child:
        args.child_result.write_text(json.dumps(simulate.measure(args.child, args.orders)))
        return 0
    if args.show:
        print(render(json.loads(args.output.read_text())))
        return 0
    with simulate.code_under_test(args.working_tree) as code:
        results = profile(args, code)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))
    print(f"\nresults: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
