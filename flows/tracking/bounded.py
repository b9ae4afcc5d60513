"""A bounded map that forgets its least recently stored keys first, and can hand a key back.

Example:
    >>> remembered = BoundedMap[int](2)
    >>> remembered.put("a", 1); remembered.put("b", 2); remembered.put("c", 3)
    >>> (remembered.pop("a"), remembered.pop("b"), remembered.pop("b"), len(remembered))
    (None, 2, None, 1)
"""

from collections import OrderedDict
from typing import Generic, TypeVar

_Value = TypeVar("_Value")


class BoundedMap(Generic[_Value]):
    """At most ``capacity`` keys; storing a key beyond it evicts the oldest stored one."""

    def __init__(self, capacity: int) -> None:
        """Hold at most ``capacity`` keys (at least 1)."""
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1 (got {capacity})")
        self._capacity = capacity
        self._items: OrderedDict[str, _Value] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> _Value | None:
        """Return the value of ``key``, None if it is not held."""
        return self._items.get(key)

    def put(self, key: str, value: _Value) -> None:
        """Store ``value`` under ``key`` as the newest key, evicting the oldest if full."""
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self._capacity:
            self._items.popitem(last=False)

    def pop(self, key: str) -> _Value | None:
        """Remove ``key`` and return its value, None if it was not held."""
        return self._items.pop(key, None)
