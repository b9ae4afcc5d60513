"""An allocation shard: the books of the SKUs routed to it, and the customer facts they share.

Every command that concerns a SKU reaches the SKU's shard through one ordered path;
customer-level facts (credit holds) and order cancellations are broadcast to every
shard. That is what keeps decisions identical for any number of workers.
"""

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from allocflow.flows.rules.commands import (
    Cause,
    Command,
    CreditHold,
    InboundUpdate,
    LineRequest,
    LineResize,
    OrderCancel,
    ReservationChange,
    ShipmentIssue,
    ShipmentShort,
    StockChange,
    StockLevel,
)
from allocflow.flows.rules.exceptions import sync_exceptions
from allocflow.flows.rules.explain import decision_for
from allocflow.flows.rules.lines import LineState
from allocflow.flows.rules.sku_book import LineChange, LineKey, SkuBook
from allocflow.models.allocation_exceptions import AllocationException
from allocflow.models.decisions import AllocationDecision
from allocflow.models.policy import Policy

ShardOutput = AllocationDecision | AllocationException
DEDUPE_WINDOW = 100_000
"""Command keys remembered per shard to drop redelivered events."""


@dataclass
class AllocationShard:
    """The allocation state of one shard.

    Attributes:
        policy: The allocation policy.
        books: Books by SKU.
        holds: Customers on credit hold: customer id → hold id.
        orders: SKUs holding lines of each order, for cancellations.
        seen: Recently applied command keys (bounded), for de-duplication.
    """

    policy: Policy
    books: dict[str, SkuBook] = field(default_factory=dict)
    holds: dict[str, str] = field(default_factory=dict)
    orders: dict[str, set[str]] = field(default_factory=dict)
    seen: OrderedDict[tuple[str, ...], None] = field(default_factory=OrderedDict)

    def apply(self, command: Command) -> list[ShardOutput]:
        """Apply one command; return the decisions and exception records it causes."""
        if self._duplicate(command):
            return []
        if isinstance(command, OrderCancel):
            return self._cancel(command)
        if isinstance(command, CreditHold):
            return self._hold(command)
        book = self.books.setdefault(command.sku, SkuBook(command.sku))
        changes = self._dispatch(book, command)
        subject = None
        if isinstance(command, LineResize | ShipmentIssue | ShipmentShort):
            subject = (command.order_id, command.line_id)
        if isinstance(command, ShipmentShort) and changes:  # a finished line may reopen
            self.orders.setdefault(command.order_id, set()).add(command.sku)
        outputs = self._records(book, changes, command.cause, subject)
        if isinstance(command, ShipmentIssue):
            shipped = book.lines.get((command.order_id, command.line_id))
            if shipped is not None and shipped.key not in changes:
                outputs += sync_exceptions(shipped, command.cause, cancelled=False)
        if isinstance(command, ShipmentIssue | LineResize):
            outputs += self._forget_if_finished(
                book, (command.order_id, command.line_id), command.cause
            )
        return outputs

    def _dispatch(self, book: SkuBook, command: Command) -> dict[LineKey, LineChange]:
        if isinstance(command, LineRequest):
            self.orders.setdefault(command.order_id, set()).add(command.sku)
            return book.request(command, command.customer_id in self.holds, self.policy)
        handler = _SKU_HANDLERS.get(type(command))
        if handler is None:
            raise TypeError(f"not a SKU command: {command!r}")
        return handler(book, command, self.policy)

    def _cancel(self, command: OrderCancel) -> list[ShardOutput]:
        outputs: list[ShardOutput] = []
        for sku in sorted(self.orders.pop(command.order_id, set())):
            book = self.books[sku]
            cancelled, served = book.cancel(command.order_id, command.cause.event_time, self.policy)
            for line in cancelled:
                outputs.append(
                    self._decision(line, LineChange("order-cancelled"), command.cause, True)
                )
                outputs += sync_exceptions(line, command.cause, cancelled=True)
            outputs += self._records(book, served, command.cause)
        return outputs

    def _hold(self, command: CreditHold) -> list[ShardOutput]:
        if command.held:
            self.holds[command.customer_id] = command.hold_id
        else:
            self.holds.pop(command.customer_id, None)
        outputs: list[ShardOutput] = []
        for _, book in sorted(self.books.items()):
            changes = book.hold(
                command.customer_id, command.held, command.cause.event_time, self.policy
            )
            outputs += self._records(book, changes, command.cause)
        return outputs

    def _records(
        self,
        book: SkuBook,
        changes: dict[LineKey, LineChange],
        cause: Cause,
        subject: LineKey | None = None,
    ) -> list[ShardOutput]:
        """Decision and exception records of the changed lines, in the order they changed.

        ``subject`` is the line a per-line command is about. One event can carry several
        such commands for a SKU (an order change of two lines, a shipment of two lines),
        and each may change a third line (a backorder served with freed stock): the
        records of lines other than the subject name it, so their ids stay distinct.
        """
        outputs: list[ShardOutput] = []
        for key, change in changes.items():  # in the order the book changed the lines
            line = book.lines.get(key)
            if line is None:
                continue
            part = "" if subject is None or key == subject else "/".join(subject)
            outputs.append(self._decision(line, change, cause, False, part))
            resized = change.rule == "order-change" or change.rule.startswith("order-change:")
            outputs += sync_exceptions(
                line, cause, cancelled=False, part=part, order_changed=resized
            )
        return outputs

    def _decision(
        self, line: LineState, change: LineChange, cause: Cause, cancelled: bool, part: str = ""
    ) -> AllocationDecision:
        return decision_for(
            line,
            cause,
            self.policy.policy_version,
            rule=change.rule,
            candidates=change.candidates,
            cancelled=cancelled,
            part=part,
        )

    def _forget_if_finished(self, book: SkuBook, key: LineKey, cause: Cause) -> list[ShardOutput]:
        """Finish a line shipped in full, closing what it still has open."""
        line = book.finish(key, cause.event_time)
        if line is None:
            return []
        order_id = line.request.order_id
        skus = self.orders.get(order_id)
        if skus is not None and not any(other[0] == order_id for other in book.lines):
            skus.discard(book.sku)
            if not skus:
                del self.orders[order_id]
        outputs: list[ShardOutput] = [*sync_exceptions(line, cause, cancelled=False)]
        return outputs

    def _duplicate(self, command: Command) -> bool:
        key = _dedupe_key(command)
        if key in self.seen:
            return True
        self.seen[key] = None
        if len(self.seen) > DEDUPE_WINDOW:
            self.seen.popitem(last=False)
        return False


_SKU_HANDLERS: dict[type, Callable[[SkuBook, Any, Policy], dict[LineKey, LineChange]]] = {
    LineResize: SkuBook.resize,
    StockLevel: SkuBook.set_level,
    StockChange: SkuBook.change_level,
    InboundUpdate: SkuBook.expect,
    ReservationChange: SkuBook.reserve,
    ShipmentIssue: SkuBook.issue,
    ShipmentShort: SkuBook.short_ship,
}


def _dedupe_key(command: Command) -> tuple[str, ...]:
    """The same event always yields commands with the same keys; distinct commands differ."""
    return (
        command.cause.event_id,
        type(command).__name__,
        getattr(command, "sku", ""),
        getattr(command, "line_id", ""),
    )
