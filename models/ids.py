"""Deterministic ids for output records, so a replay produces the same ids.

Example:
    >>> stable_id("dec", "o-1", "l-1", "evt-9")
    'dec-2dabbf214992a59e64a2'
"""

import hashlib

_SEPARATOR = "\x1f"


def stable_id(prefix: str, *parts: str) -> str:
    """Return ``prefix`` followed by a 20-hex-digit digest of ``parts``.

    The digest is BLAKE2b over the parts joined by the ASCII unit separator, so
    ``("ab", "c")`` and ``("a", "bc")`` give different ids.

    Args:
        prefix: Short record kind, e.g. ``"dec"`` for decisions.
        *parts: The values that identify the record.

    Returns:
        A string such as ``"dec-2dabbf214992a59e64a2"``.
    """
    digest = hashlib.blake2b(_SEPARATOR.join(parts).encode(), digest_size=10).hexdigest()
    return f"{prefix}-{digest}"
