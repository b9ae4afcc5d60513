"""A bounded map that forgets its least recently used keys first."""

from collections import OrderedDict
from typing import Generic, TypeVar

_Value = TypeVar("_Value")


class RecentMap(Generic[_Value]):
    """A map of at most ``capacity`` keys; storing a new key beyond it evicts the oldest.

    Example:
        >>> recent = RecentMap[int](2)
        >>> recent.put("a", 1); recent.put("b", 2); recent.put("c", 3)
        >>> (recent.get("a"), len(recent))
        (None, 2)
    """

    def __init__(self, capacity: int) -> None:
        """Hold at most ``capacity`` keys (at least 1)."""
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1 (got {capacity})")
        self._capacity = capacity
        self._items: OrderedDict[str, _Value] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def get(self, key: str) -> _Value | None:
        """Return the value of ``key`` (marking it recently used), None if unknown."""
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: str, value: _Value) -> None:
        """Store ``value`` under ``key`` as the most recent key, evicting the oldest if full."""
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self._capacity:
            self._items.popitem(last=False)
