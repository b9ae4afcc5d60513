"""The one error landing stops with: a write to the DuckDB file or its snapshot failed."""

from pathlib import Path


class LandingError(RuntimeError):
    """Landing cannot go on; the message is one line: what failed, where, what to do.

    Nothing of a failed batch has landed (its transaction rolled back), and no
    half-built snapshot is left behind, so running the same command again resumes
    after the last landed batch.
    """


def first_line(error: BaseException) -> str:
    """The first non-empty line of an error's message (DuckDB's run over several).

    Example:
        >>> first_line(OSError(chr(10) + "IO Error: No space left" + chr(10) + "details"))
        'IO Error: No space left'
    """
    for line in str(error).splitlines():
        if line.strip():
            return line.strip()
    return type(error).__name__


def what_to_do(path: Path) -> str:
    """The advice every landing error ends with."""
    return (
        f"free space on (or fix write access to) {path.parent}, then run the same command "
        "again: landing resumes after the last landed batch"
    )
