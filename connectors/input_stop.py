"""A graceful stop of a running dataflow: its inputs end, so it finishes like a drained run.

Bytewax turns any exception inside a step into a Rust panic, so Ctrl-C's
``KeyboardInterrupt`` used to stop ``allocflow run`` with a panic's backtrace, its
last epoch unflushed. Instead, while :func:`inputs_end_on_signals` is active, the
first SIGINT or SIGTERM only *requests* a stop: every allocflow source ends its input
at its next batch (:func:`input_stop_requested`), the dataflow closes its epoch, the
sinks deliver what they hold, and with a recovery store the positions read are
snapshotted, so a rerun continues from there. A second signal aborts at once, as
before.

Example:
    >>> with inputs_end_on_signals() as requested:
    ...     requested.is_set(), input_stop_requested()
    (False, False)
"""

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

_LOG = logging.getLogger(__name__)

_REQUESTED = threading.Event()

EXIT_STOPPED = 130
"""Exit code of a command stopped by a signal (the shell's 128 + SIGINT)."""

SignalHandler = Callable[[int, FrameType | None], object] | int | signal.Handlers
"""What :func:`signal.signal` takes: a function, SIG_DFL or SIG_IGN."""


def input_stop_requested() -> bool:
    """Whether the sources should end their input now."""
    return _REQUESTED.is_set()


@contextmanager
def inputs_end_on_signals() -> Iterator[threading.Event]:
    """Let SIGINT and SIGTERM end the inputs for the duration of the block.

    Must be entered from the main thread (Python delivers signals there). A signal
    the process was started ignoring (SIGINT of a shell's background job) stays
    ignored. The request is cleared on entry and on exit, so one process can run
    several dataflows.

    Yields:
        The event set by the first signal: the block's caller tells from it whether
        the dataflow ended by itself or on request.
    """
    _REQUESTED.clear()
    previous = {
        sig: _handler_of(sig)
        for sig in (signal.SIGINT, signal.SIGTERM)
        if signal.getsignal(sig) is not signal.SIG_IGN
    }

    def end_inputs(signum: int, _frame: FrameType | None) -> None:
        if _REQUESTED.is_set():
            raise KeyboardInterrupt
        _REQUESTED.set()
        _LOG.warning(
            "%s: ending the inputs; the flow finishes its epoch and delivers its outputs "
            "(signal again to abort at once)",
            signal.Signals(signum).name,
        )

    for sig in previous:
        signal.signal(sig, end_inputs)
    try:
        yield _REQUESTED
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _REQUESTED.clear()


def _handler_of(sig: signal.Signals) -> SignalHandler:
    """The current handler of ``sig``; the default one if it was not set from Python."""
    handler = signal.getsignal(sig)
    return signal.SIG_DFL if handler is None else handler
