"""How long the roll-up remembers an order: until it has had no decision for a while.

An order's roll-up (:class:`~allocflow.flows.rules.rollup.OrderRollup`) must outlive
its allocation: a change, a cancellation or a backorder served weeks later all come
back to it. But an order that has had no decision for ``retention`` of event time is
finished for any practical purpose, and keeping every order ever seen would make
memory grow with the stream. Orders are spread over :data:`ORDER_BUCKETS` buckets by a
stable hash; each bucket's :class:`OrderMemory` notes when each of its orders was last
decided and names the orders that fell silent, so the roll-up can drop them.

Example:
    >>> from datetime import UTC, datetime, timedelta
    >>> memory = OrderMemory(retention=timedelta(days=10))
    >>> day = lambda d: datetime(2026, 3, d, tzinfo=UTC)
    >>> memory.touch("SO-1", day(1)), memory.touch("SO-2", day(5))
    ([], [])
    >>> memory.touch("SO-2", day(11)), memory.touch("SO-3", day(12))
    ([], ['SO-1'])
"""

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

ORDER_BUCKETS = 64
"""Buckets of orders: the keys of the step that decides which orders to forget."""

DEFAULT_ORDER_RETENTION = timedelta(days=30)
"""How long an order is remembered after its last decision, by default."""


@dataclass(frozen=True)
class ForgetOrder:
    """Tells the roll-up to drop an order's state.

    Attributes:
        order_id: The order no decision has touched for the retention period.
    """

    order_id: str


def order_bucket(order_id: str) -> str:
    """Return the bucket key of an order: a stable hash (not Python's), so processes agree."""
    digest = hashlib.blake2b(order_id.encode(), digest_size=8).digest()
    return f"orders-{int.from_bytes(digest, 'big') % ORDER_BUCKETS:02d}"


@dataclass
class OrderMemory:
    """When each order of one bucket was last decided, oldest first.

    Attributes:
        retention: How long an order is kept after its last decision (event time).
        watermark: The latest decision time seen in the bucket.
        last_decided: The bucket's watermark when each order was last decided; its
            insertion order is the order of those times, so the oldest comes first.
    """

    retention: timedelta
    watermark: datetime | None = None
    last_decided: dict[str, datetime] = field(default_factory=dict)

    def touch(self, order_id: str, decided_at: datetime) -> list[str]:
        """Note a decision of ``order_id``; return the orders silent for longer than retention.

        The returned orders are forgotten here too. A decision older than the
        watermark counts as made at the watermark, which keeps the times in order.
        """
        if self.watermark is None or decided_at > self.watermark:
            self.watermark = decided_at
        self.last_decided.pop(order_id, None)
        self.last_decided[order_id] = self.watermark
        cutoff = self.watermark - self.retention
        silent: list[str] = []
        for candidate, at in self.last_decided.items():
            if at >= cutoff:
                break
            silent.append(candidate)
        for candidate in silent:
            del self.last_decided[candidate]
        return silent

    def __len__(self) -> int:
        """Return how many orders the bucket remembers."""
        return len(self.last_decided)
