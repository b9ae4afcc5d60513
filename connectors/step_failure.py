"""Failures inside a dataflow step that the user can act on, reported as one clear line.

Bytewax turns an exception raised in a step (a sink that cannot write its file, say)
into a Rust panic: the panic hook prints the panic and a backtrace to stderr, then
the exception reaches Python wrapped in a ``BytewaxRuntimeError``. For a failure
whose cause the user can fix (a full disk, a file that cannot be written), that
backtrace buries the one line that matters. So a step raises such a failure as a
:class:`StepFailure` through :func:`failing`, which silences stderr from that moment
when a command runs the dataflow inside :func:`one_line_failures`; the command then
finds the failure with :func:`step_failure` and prints its message. stderr is
restored when the block ends, whatever happened.

Example:
    ::

        with one_line_failures():
            try:
                run_dataflow(flow, workers, recovery)
            except BytewaxRuntimeError as error:
                failure = step_failure(error)
                ...  # print(failure), exit 1
"""

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class StepFailure(Exception):  # noqa: N818 (a failure, not a programming error)
    """A failure inside a dataflow step; its message is one line: what, where, what to do."""


class _Stderr:
    """The saved stderr of the running :func:`one_line_failures` block, if any."""

    lock = threading.Lock()
    saved: int | None = None
    muted = False


def failing(error: StepFailure) -> StepFailure:
    """Return ``error`` to raise, silencing stderr first inside :func:`one_line_failures`.

    Outside such a block nothing changes: the failure and Bytewax's panic print as usual.
    """
    with _Stderr.lock:
        if _Stderr.saved is not None and not _Stderr.muted:
            sys.stderr.flush()
            with open(os.devnull, "wb") as devnull:
                os.dup2(devnull.fileno(), 2)
            _Stderr.muted = True
    return error


@contextmanager
def one_line_failures() -> Iterator[None]:
    """Let steps silence the panic of a :class:`StepFailure`; restore stderr at the end."""
    with _Stderr.lock:
        _Stderr.saved = os.dup(2)
        _Stderr.muted = False
    try:
        yield
    finally:
        with _Stderr.lock:
            saved, _Stderr.saved = _Stderr.saved, None
            if saved is not None:
                if _Stderr.muted:
                    os.dup2(saved, 2)
                os.close(saved)
            _Stderr.muted = False


def step_failure(error: BaseException) -> StepFailure | None:
    """Return the :class:`StepFailure` that caused ``error``, if one did."""
    current: BaseException | None = error
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        if isinstance(current, StepFailure):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
