"""Up-front checks of the files and directories a run reads and writes.

Each check raises :class:`UnusablePathError` with one line: which option, which path, what
is wrong and what to do. Nothing is created or changed by a check, so a run refused
here leaves no trace (no empty output directory, no database file).

Example:
    >>> from pathlib import Path
    >>> writable_directory(Path("/etc/hostname/out"), "--out")
    Traceback (most recent call last):
    ...
    allocflow.flows.commands.run_paths.UnusablePathError: --out /etc/hostname/out: cannot be created: /etc/hostname is a file, not a directory; choose another directory
"""  # noqa: E501

import errno
import os
from collections.abc import Iterable
from pathlib import Path


class UnusablePathError(ValueError):
    """A path given to a command that it cannot use; the message is one line."""


def readable_files(paths: Iterable[Path], option: str) -> None:
    """Check that each path is a regular file this user can read.

    Raises:
        UnusablePathError: Naming the first path that is missing, not a file, or unreadable.
    """
    for path in paths:
        if not path.exists():
            raise UnusablePathError(f"{option}: {path} does not exist")
        if not path.is_file():
            raise UnusablePathError(f"{option}: {path} is not a regular file")
        try:
            with path.open("rb") as file:
                file.read(1)
        except OSError as error:
            raise UnusablePathError(
                f"{option}: cannot read {path}: {_reason(error)}; make it readable by this "
                f"user (uid {os.geteuid()})"
            ) from error


def writable_directory(path: Path, option: str) -> None:
    """Check that ``path`` is, or can be created as, a directory this user can write in.

    Raises:
        UnusablePathError: ``path`` is a file, lies under a file, or its nearest existing
            directory is not writable (permissions, read-only file system).
    """
    if path.exists() and not path.is_dir():
        raise UnusablePathError(f"{option} {path}: is a file, not a directory; give a directory")
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise UnusablePathError(
            f"{option} {path}: cannot be created: {existing} is a file, not a directory; "
            "choose another directory"
        )
    _check_access(existing, option, path)


def writable_files_in(directory: Path, names: Iterable[str], option: str) -> None:
    """Check that the files a run will rewrite in ``directory`` can be written, if present.

    Raises:
        UnusablePathError: Naming a file that is a directory or cannot be written.
    """
    for name in names:
        path = directory / name
        if path.is_dir():
            raise UnusablePathError(f"{option}: {path} is a directory; remove it or choose another")
        if path.exists() and not os.access(path, os.W_OK):
            raise UnusablePathError(
                f"{option}: {path} is not writable by this user; fix its permissions or "
                "choose another"
            )


def writable_file(path: Path, option: str) -> None:
    """Check that ``path`` is, or can be created as, a file this user can write.

    Its directory must be writable too: databases keep journals and snapshots beside it.

    Raises:
        UnusablePathError: ``path`` is a directory, lies under a file, or cannot be written.
    """
    if path.is_dir():
        raise UnusablePathError(f"{option} {path}: is a directory; give a file path")
    existing = _nearest_existing(path.parent)
    if not existing.is_dir():
        raise UnusablePathError(
            f"{option} {path}: cannot be created: {existing} is a file, not a directory; "
            "choose another path"
        )
    _check_access(existing, option, path)
    if path.exists() and not os.access(path, os.W_OK):
        raise UnusablePathError(
            f"{option} {path}: is not writable by this user; fix its permissions or choose "
            "another file"
        )


def _nearest_existing(path: Path) -> Path:
    """Return ``path`` or its nearest ancestor that exists."""
    current = path.absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def _check_access(directory: Path, option: str, path: Path) -> None:
    if os.access(directory, os.W_OK | os.X_OK):
        return
    read_only = os.statvfs(directory).f_flag & os.ST_RDONLY
    why = "is on a read-only file system" if read_only else "is not writable by this user"
    raise UnusablePathError(
        f"{option} {path}: {directory} {why}; choose a writable directory or fix its permissions"
    )


def _reason(error: OSError) -> str:
    reason = error.strerror or str(error)
    return f"{reason} (errno {errno.errorcode.get(error.errno or 0, error.errno)})"
