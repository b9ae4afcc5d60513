"""Cost of the Great Expectations suites: import, setup, and validation per table batch.

Measures, on a landed DuckDB file (for instance the test fixture's: ``allocflow
simulate --seed 11 --orders 400 --scenario demand-spike --faults all --fault-rate
0.01 --stock-cover-days 0.5``, ``allocflow run``, ``allocflow land``):

* ``import_s``: importing :mod:`allocflow.quality.expectations` (which imports GX) in
  a fresh interpreter, several times;
* ``setup_ms``: building the ephemeral context and the validation definitions;
* per table, at the landed size and with the batch repeated up to about
  ``--rows`` rows: reading the batch from DuckDB as pandas (``read_ms``, landed size
  only) and validating it (``validate_ms``), medians of ``--repeat`` runs.

Usage::

    .venv/bin/python bench/gx_expectations.py --db RUN/allocflow.duckdb \
        --out bench/results/gx_expectations.json
"""

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb

IMPORT = (
    "import time; t = time.perf_counter(); import allocflow.quality.expectations; "
    "print(time.perf_counter() - t)"
)


def _import_seconds(runs: int) -> list[float]:
    return [
        float(subprocess.run([sys.executable, "-c", IMPORT], capture_output=True, text=True,
                             check=True).stdout)
        for _ in range(runs)
    ]  # fmt: skip


def _median_ms(action: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1)


def main() -> None:
    """Measure and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    imports = _import_seconds(3)
    from allocflow.quality.expectations import (  # noqa: PLC0415 - timed above, in a child
        ExpectationRunner,
        Window,
        landing_watermark,
        read_batch,
    )
    from allocflow.quality.suites import build_suites  # noqa: PLC0415

    started = time.perf_counter()
    runner = ExpectationRunner()
    setup_ms = (time.perf_counter() - started) * 1000
    tables = []
    with duckdb.connect(args.db, read_only=True) as con:
        window = Window(landing_watermark(con), None)
        for suite in build_suites():
            batch = read_batch(con, suite, window)
            big = batch.iloc[[i % len(batch) for i in range(max(args.rows, len(batch)))]]
            row: dict[str, Any] = {
                "table": suite.table,
                "expectations": len(suite.expectations),
                "rows": len(batch),
                "read_ms": _median_ms(lambda s=suite: read_batch(con, s, window), args.repeat),
                "repeated_rows": len(big),
            }
            for label, frame in (("landed", batch), ("repeated", big)):
                row[f"validate_ms_{label}"] = _median_ms(
                    lambda f=frame, s=suite: runner.validate(s, f, window, window.end),
                    args.repeat,
                )
            tables.append(row)
            print(row)
    result = {
        "import_s": [round(s, 2) for s in imports],
        "setup_ms": round(setup_ms, 1),
        "repeat": args.repeat,
        "tables": tables,
        "total_validate_ms_landed": round(math.fsum(t["validate_ms_landed"] for t in tables), 1),
        "total_validate_ms_repeated": round(
            math.fsum(t["validate_ms_repeated"] for t in tables), 1
        ),
    }
    print(json.dumps(result, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
