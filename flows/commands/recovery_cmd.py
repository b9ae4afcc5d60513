"""``allocflow recovery init``: create the Bytewax recovery store `allocflow run` resumes from."""

import argparse
import sys
from datetime import timedelta
from pathlib import Path

from allocflow.flows.runtime import Recovery, init_recovery_store
from allocflow.flows.settings import Settings

DEFAULT_PARTITIONS = 4
"""Recovery partitions created by default: at least the most workers ever run."""


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``recovery`` sub-command."""
    parser = subparsers.add_parser(
        "recovery", help="manage the recovery store that lets `allocflow run` resume"
    )
    actions = parser.add_subparsers(dest="action", required=True)
    init = actions.add_parser(
        "init",
        help="create an empty recovery store",
        description="Create the SQLite partitions of a Bytewax recovery store. The number of "
        "partitions is fixed for the store's life and must be at least the total number of "
        "workers ever run on it; one dataflow per store.",
    )
    init.add_argument(
        "directory", type=Path, nargs="?", help="store directory (default: ALLOCFLOW_RECOVERY_DIR)"
    )
    init.add_argument(
        "--partitions",
        type=int,
        default=DEFAULT_PARTITIONS,
        help=f"recovery partitions (default {DEFAULT_PARTITIONS})",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Create the store; exit 2 on a bad argument, 1 if the directory already holds one."""
    directory: Path | None = args.directory or settings.recovery_dir
    if directory is None:
        print(
            "allocflow recovery init: give DIRECTORY or set ALLOCFLOW_RECOVERY_DIR", file=sys.stderr
        )
        return 2
    if not 1 <= args.partitions <= 1024:
        print(
            f"allocflow recovery init: --partitions must be within 1..1024 (got {args.partitions})",
            file=sys.stderr,
        )
        return 2
    if existing_partitions(directory):
        print(
            f"allocflow recovery init: {directory} already holds a recovery store; "
            "delete it to start over (the next run then re-reads its inputs)",
            file=sys.stderr,
        )
        return 1
    directory.mkdir(parents=True, exist_ok=True)
    init_recovery_store(directory, args.partitions)
    print(f"created a recovery store with {args.partitions} partitions in {directory}")
    return 0


def existing_partitions(directory: Path) -> list[Path]:
    """Return the recovery partition files in ``directory`` (none if it does not exist)."""
    return sorted(directory.glob("part-*.sqlite3")) if directory.is_dir() else []


def recovery_for(directory: Path | None, settings: Settings) -> Recovery | None:
    """Return the recovery of a run, or None without a store.

    Raises:
        ValueError: ``directory`` is not an initialised store.
    """
    store = directory or settings.recovery_dir
    if store is None:
        return None
    if not existing_partitions(store):
        raise ValueError(
            f"{store} is not a recovery store: create it with `allocflow recovery init {store}`"
        )
    return Recovery(
        store,
        snapshot_interval=timedelta(seconds=settings.snapshot_interval_s),
        backup_interval=timedelta(seconds=settings.recovery_backup_interval_s),
    )
