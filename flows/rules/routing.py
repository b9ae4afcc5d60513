"""From contract events to shard-keyed commands: stateless, so it runs at the flow's edge.

Example:
    >>> shard_of("SKU-10001", 16)
    'shard-013'
"""

import hashlib
from collections.abc import Iterator

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
from allocflow.flows.rules.order_limit import order_max_rank
from allocflow.models.envelope import EventEnvelope
from allocflow.models.inventory import (
    InboundExpected,
    ReservationCreated,
    ReservationReleased,
    StockAdjusted,
    StockSnapshot,
)
from allocflow.models.orders import (
    CreditHoldPlaced,
    CreditHoldReleased,
    OrderCancelled,
    OrderChanged,
    OrderPlaced,
)
from allocflow.models.policy import Policy
from allocflow.models.shipments import ShipmentCreated, ShipmentShortShipped
from allocflow.models.vocabulary import ReasonCode

Keyed = tuple[str, Command]


def shard_of(sku: str, shards: int) -> str:
    """Return the shard key of a SKU: a stable hash (not Python's), so every process agrees."""
    digest = hashlib.blake2b(sku.encode(), digest_size=8).digest()
    return f"shard-{int.from_bytes(digest, 'big') % shards:03d}"


def all_shards(shards: int) -> list[str]:
    """Return every shard key."""
    return [f"shard-{index:03d}" for index in range(shards)]


def route(event: EventEnvelope, policy: Policy, shards: int) -> Iterator[Keyed]:
    """Yield the (shard, command) pairs an input event means for allocation.

    Events that do not concern allocation (picks, dispatches, deliveries, carrier
    scans) yield nothing.
    """
    cause = Cause(event.event_id, event.event_time)
    if isinstance(event, OrderPlaced):
        yield from _order_lines(event, cause, policy, shards)
    elif isinstance(event, OrderChanged):
        for change in event.changes:
            resize = LineResize(cause, event.order_id, change.line_id, change.sku, change.qty)
            yield shard_of(change.sku, shards), resize
    elif isinstance(event, OrderCancelled):
        yield from _broadcast(OrderCancel(cause, event.order_id), shards)
    elif isinstance(event, CreditHoldPlaced | CreditHoldReleased):
        held = isinstance(event, CreditHoldPlaced)
        yield from _broadcast(CreditHold(cause, event.customer_id, event.hold_id, held), shards)
    elif isinstance(event, ShipmentCreated):
        for line in event.lines:
            issue = ShipmentIssue(
                cause,
                line.sku,
                event.node_id,
                event.order_id,
                line.line_id,
                line.qty,
                event.shipment_id,
            )
            yield shard_of(line.sku, shards), issue
    elif isinstance(event, ShipmentShortShipped):
        for short in event.lines:
            missing = ShipmentShort(
                cause, short.sku, event.order_id, short.line_id, event.shipment_id, short.qty_short
            )
            yield shard_of(short.sku, shards), missing
    else:
        command = _supply_command(event, cause)
        if command is not None:
            yield shard_of(command.sku, shards), command


def _supply_command(
    event: EventEnvelope, cause: Cause
) -> StockLevel | StockChange | InboundUpdate | ReservationChange | None:
    if isinstance(event, StockSnapshot):
        return StockLevel(cause, event.sku, event.node_id, event.on_hand)
    if isinstance(event, StockAdjusted):
        return StockChange(cause, event.sku, event.node_id, event.delta, event.po_id)
    if isinstance(event, InboundExpected):
        return InboundUpdate(cause, event.sku, event.node_id, event.po_id, event.qty, event.eta)
    if isinstance(event, ReservationCreated):
        return ReservationChange(cause, event.sku, event.node_id, event.reservation_id, event.qty)
    if isinstance(event, ReservationReleased):
        return ReservationChange(cause, event.sku, event.node_id, event.reservation_id, None)
    return None


def _broadcast(command: Command, shards: int) -> Iterator[Keyed]:
    for shard in all_shards(shards):
        yield shard, command


def _order_lines(event: OrderPlaced, cause: Cause, policy: Policy, shards: int) -> Iterator[Keyed]:
    order_value = sum(line.qty * line.unit_price for line in event.lines)
    priority = policy.tier_priority(event.customer_tier)
    weight = policy.channel_weights[event.channel]
    max_rank = order_max_rank(policy, len(event.lines))
    for line in event.lines:
        request = LineRequest(
            cause=cause,
            order_id=event.order_id,
            line_id=line.line_id,
            sku=line.sku,
            qty=line.qty,
            customer_id=event.customer_id,
            tier=event.customer_tier,
            priority=priority,
            channel_weight=weight,
            region=event.region,
            placed_at=event.event_time,
            approvals=_approvals(policy, order_value, line.qty, line.unit_price, line.unit_cost),
            max_rank=max_rank,
        )
        yield shard_of(line.sku, shards), request


def _approvals(
    policy: Policy, order_value: float, qty: int, price: float, cost: float
) -> tuple[ReasonCode, ...]:
    rule = policy.approval
    reasons: list[ReasonCode] = []
    over_value = rule.order_value_above is not None and order_value > rule.order_value_above
    over_qty = rule.line_qty_above is not None and qty > rule.line_qty_above
    if over_value or over_qty:
        reasons.append(ReasonCode.APPROVAL_REQUIRED)
    if rule.margin_floor is not None and _margin(price, cost) < rule.margin_floor:
        reasons.append(ReasonCode.BELOW_MARGIN)
    return tuple(reasons)


def _margin(price: float, cost: float) -> float:
    return (price - cost) / price if price > 0 else float("-inf")
