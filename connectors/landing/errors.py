"""The one error landing stops with: a write to the DuckDB file or its snapshot failed."""

from pathlib import Path


class LandingError(RuntimeError):
    """Landing cannot go on; the message is one line: what failed, where, what to do.

    Nothing of a failed batch has landed (its transaction rolled back), and no
    half-built snapshot is left behind, so running the same command again resumes
    after the last landed batch.
    """


_MAX_REASON_CHARS = 600


def first_line(error: BaseException) -> str:
    """An error's message on one line (DuckDB's run over several; the cause is often last).

    Example:
        >>> first_line(OSError("IO Error: checkpoint failed." + chr(10) + "No space left"))
        'IO Error: checkpoint failed. No space left'
    """
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    if len(text) > _MAX_REASON_CHARS:
        text = text[: _MAX_REASON_CHARS - 1] + "…"
    return text or type(error).__name__


def what_to_do(path: Path) -> str:
    """The advice every landing error ends with."""
    return (
        f"free space on (or fix write access to) {path.parent}, then run the same command "
        "again: landing resumes after the last landed batch"
    )
