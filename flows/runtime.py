"""Running a dataflow in this process: the one place that calls Bytewax's runtime."""

import atexit
import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import cast

from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

_cli_main = cast(Callable[..., None], cli_main)
_recovery_config = cast(Callable[[Path, timedelta], RecoveryConfig], RecoveryConfig)
_init_db_dir = cast(Callable[[Path, int], None], init_db_dir)

UNRECOVERABLE_EPOCH = timedelta(hours=1)
"""Epoch length without recovery. Bytewax snapshots every stateful key touched in an
epoch at its close even when nothing keeps the snapshots (about a fifth of the flow's
time with its default 10 s epochs); without a recovery store epochs serve nothing else,
so they are made long."""


@dataclass(frozen=True)
class Recovery:
    """Where and how often a dataflow snapshots its state.

    Attributes:
        directory: An initialised Bytewax recovery store (``allocflow recovery init``).
        snapshot_interval: Time between snapshots (the epoch length; whole seconds).
        backup_interval: How long superseded snapshots are kept.
    """

    directory: Path
    snapshot_interval: timedelta
    backup_interval: timedelta = timedelta(0)


GC_THRESHOLDS = (50_000, 50, 100)
"""CPython's collection thresholds while a flow runs (the defaults are 700, 10, 10)."""


def tune_garbage_collection() -> None:
    """Collect garbage cycles less often, and never look at what start-up allocated.

    The flow's state is millions of long-lived objects (dedupe windows, entity
    memories, roll-ups, SKU books). With CPython's default thresholds the cycle
    collector walks them again and again, and that cost grows with the state: the flow
    ran at 7,536 events/s over 149k events but 5,578 over 606k. The state holds no
    reference cycles that need prompt collection. Measured (606,281 events from
    files, one worker): 108.7 s with the defaults, 76.7 s with :data:`GC_THRESHOLDS`.

    The frozen objects are unfrozen at exit: DuckDB's bindings report objects the
    collector never reached as leaks when the interpreter shuts down.
    """
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    atexit.unregister(gc.unfreeze)
    atexit.register(gc.unfreeze)


@contextmanager
def tuned_garbage_collection() -> Iterator[None]:
    """Tune the collector (:func:`tune_garbage_collection`) for the block, then restore it.

    Example:
        >>> before = gc.get_threshold()
        >>> with tuned_garbage_collection():
        ...     gc.get_threshold() == GC_THRESHOLDS
        True
        >>> gc.get_threshold() == before, gc.get_freeze_count()
        (True, 0)
    """
    thresholds = gc.get_threshold()
    tune_garbage_collection()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def run_dataflow(flow: Dataflow, workers: int = 1, recovery: Recovery | None = None) -> None:
    """Run ``flow`` with ``workers`` worker threads until its inputs end (or forever).

    With ``recovery``, the state of every stateful step and the input positions are
    snapshotted every ``snapshot_interval`` into the recovery store, and a run over a
    store that holds snapshots resumes from the newest complete one. Without it,
    epochs last :data:`UNRECOVERABLE_EPOCH`.

    Threads share the GIL: for more CPU, run several processes with
    ``python -m bytewax.run … -i N -a …`` (see docs/allocation.md). The garbage
    collector is tuned while the flow runs (:func:`tuned_garbage_collection`).
    """
    with tuned_garbage_collection():
        if recovery is None:
            _cli_main(flow, workers_per_process=workers, epoch_interval=UNRECOVERABLE_EPOCH)
            return
        _cli_main(
            flow,
            workers_per_process=workers,
            epoch_interval=recovery.snapshot_interval,
            recovery_config=_recovery_config(recovery.directory, recovery.backup_interval),
        )


def init_recovery_store(directory: Path, partitions: int) -> None:
    """Create ``partitions`` empty recovery partitions in the existing ``directory``."""
    _init_db_dir(directory, partitions)
