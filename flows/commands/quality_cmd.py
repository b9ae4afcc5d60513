"""``allocflow quality run``: validate the landed tables with the expectation suites.

Reads the published snapshot when there is one (the lander holds the main file),
else (or with ``--no-snapshot``) the main file read-only; validates a window of
each table with Great Expectations; prints a report; writes the results into the
main file's ``dq_results`` when no writer holds it. Exits 0 when every expectation
passed, 1 when one failed, 2 on bad options or an unreadable database.

Great Expectations is imported only when the command runs: its import takes seconds.
"""

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from allocflow.connectors.landing.snapshot import snapshot_path
from allocflow.flows.settings import Settings

if TYPE_CHECKING:
    from allocflow.quality.expectations import QualityRun, TableOutcome

DEFAULT_FRESH_HOURS = 24.0
"""A feed whose newest event is older than this (before the watermark) is stale."""


SNAPSHOT_NOTE = (
    "Read the lander's snapshot: it holds the recent orders and their rows, not rows "
    "outside them (such as a shipment whose order never landed); add --no-snapshot to "
    "validate the file itself while the lander is stopped."
)


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``quality`` sub-command and its ``run`` action."""
    parser = subparsers.add_parser(
        "quality",
        help="data-quality checks over the landed DuckDB file",
        description="Data-quality checks over the landed DuckDB file.",
    )
    actions = parser.add_subparsers(dest="quality_action", required=True, metavar="ACTION")
    run_parser = actions.add_parser(
        "run",
        help="validate the landed tables with the Great Expectations suites",
        description="Validate each landed table (its rows of the event-time window ending at "
        "the landing watermark, or all rows) with its expectation suite, print a report and "
        "write the results into dq_results. Reads PATH.snapshot when the lander publishes one "
        "(unless --no-snapshot). Exit status: 0 all passed, 1 an expectation failed, 2 bad "
        "options.",
    )
    run_parser.add_argument("--db", type=Path, required=True, help="the landed DuckDB file")
    run_parser.add_argument(
        "--window-hours",
        type=float,
        help="validate the rows of the last H hours of event time before the watermark "
        "(default: all rows)",
    )
    run_parser.add_argument(
        "--fresh-hours",
        type=float,
        default=DEFAULT_FRESH_HOURS,
        help="a feed is stale when its newest event is older than this before the watermark",
    )
    run_parser.add_argument(
        "--no-snapshot",
        action="store_true",
        help="validate PATH itself even when PATH.snapshot exists (not while the lander runs)",
    )
    run_parser.add_argument("--html", type=Path, help="write GX data docs into this directory")
    run_parser.add_argument(
        "--no-write", action="store_true", help="do not write the results into dq_results"
    )
    run_parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:  # noqa: ARG001 - handler signature
    """Validate, report, write; see the module docstring for the exit status."""
    problem = _check(args)
    if problem:
        print(f"allocflow quality run: {problem}", file=sys.stderr)
        return 2
    from allocflow.quality.expectations import (  # noqa: PLC0415 - GX takes seconds to import
        ExpectationRunner,
        NothingLandedError,
    )

    source = args.db if args.no_snapshot else _source(args.db)
    runner = ExpectationRunner()
    try:
        with duckdb.connect(source, read_only=True) as con:
            result = runner.run(con, args.window_hours, args.fresh_hours)
    except (duckdb.IOException, NothingLandedError) as error:
        print(f"allocflow quality run: cannot validate {source}: {error}", file=sys.stderr)
        return 2
    print(report(result, source))
    if source != args.db:
        print(SNAPSHOT_NOTE)
    if args.html is not None:
        print(f"GX data docs: {runner.build_docs(args.html)}")
    if not args.no_write:
        print(_write(args.db, result))
    return 0 if result.success else 1


def _check(args: argparse.Namespace) -> str | None:
    if not args.db.is_file():
        return f"--db {args.db} is not a file"
    if args.window_hours is not None and args.window_hours <= 0:
        return f"--window-hours must be positive (got {args.window_hours})"
    if args.fresh_hours <= 0:
        return f"--fresh-hours must be positive (got {args.fresh_hours})"
    if args.html is not None and args.html.exists() and not args.html.is_dir():
        return f"--html {args.html} is not a directory"
    return None


def _source(database: Path) -> Path:
    """The snapshot when the lander publishes one, else the database itself."""
    snapshot = snapshot_path(database)
    return snapshot if snapshot.is_file() else database


def _write(database: Path, result: "QualityRun") -> str:
    """Write the results into ``dq_results`` unless a writer holds the file; say what happened."""
    from allocflow.quality.expectations import write_results  # noqa: PLC0415 - as in run()

    rows = result.results()
    try:
        with duckdb.connect(database) as con:
            write_results(con, rows)
    except duckdb.IOException as error:
        return (
            f"Results NOT written: {database} is held by another process ({error}). "
            "The lander holds it while it runs: run this command again once it has stopped "
            "(same window, same result ids), or keep --no-write for a report only."
        )
    return f"Wrote {len(rows)} results into dq_results of {database}"


def report(result: "QualityRun", source: Path) -> str:
    """Return the readable report: totals, then per table its passes and failures."""
    results = result.results()
    failed = sum(not r.success for r in results)
    lines = [
        f"Validated {source}, {result.window.label()}: {len(result.tables)} tables, "
        f"{len(results)} expectations, {len(results) - failed} passed, {failed} failed"
    ]
    for table in result.tables:
        lines.extend(_table_lines(table))
    return "\n".join(lines)


def _table_lines(table: "TableOutcome") -> list[str]:
    passed = len(table.results) - len(table.failed)
    lines = [
        f"  {table.table} ({table.rows:,} rows, {table.seconds * 1000:.0f} ms): "
        f"{passed} passed, {len(table.failed)} failed"
    ]
    lines.extend(f"    FAILED [{r.severity}] {r.check_name}: {r.detail}" for r in table.failed)
    return lines
