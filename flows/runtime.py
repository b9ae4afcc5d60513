"""Running a dataflow in this process: the one place that calls Bytewax's runtime."""

from collections.abc import Callable
from typing import cast

from bytewax.dataflow import Dataflow
from bytewax.run import cli_main

_cli_main = cast(Callable[..., None], cli_main)


def run_dataflow(flow: Dataflow, workers: int = 1) -> None:
    """Run ``flow`` with ``workers`` worker threads until its inputs end (or forever).

    Threads share the GIL: for more CPU, run several processes with
    ``python -m bytewax.run … -i N -a …`` (see docs/allocation.md).
    """
    _cli_main(flow, workers_per_process=workers)
