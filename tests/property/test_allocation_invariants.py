"""Invariants of the allocation rules, checked after every command.

Two sources of commands: hypothesis-generated scripts (a few SKUs, the five nodes, every
tier and region, stock levels, adjustments, receipts, inbound, reservations, order
lines, changes, cancellations, credit holds, shipments) applied to one
``AllocationShard`` under several policy variants; and the simulator's streams, one per
scenario, routed to shards by a copy of ``allocate_stream``'s loop.

After every command, from the state (``SkuBook``) before and after it:

1. Supply covers allocations: ``NodeStock.overcommitted(at, horizon) == 0`` for every
   book and node, ``at`` the command's event time and ``horizon`` the policy's
   ``use_inbound_within_hours``.
2. State consistency: each node's ``allocated`` dict equals, key for key, the lines'
   ``allocations`` at that node (no zero or negative entries, no unknown lines); a
   line is held exactly when its customer is on hold; every order with a line in a
   book lists that book's SKU in ``AllocationShard.orders``.
3. Protection: a line that gained units at a node left there, after the command, at
   least the protection still owed to the tiers above it (see ``protection_owed``).
4. Split limits: a line that gained a node it did not use before (and lost nothing)
   uses at most ``max_nodes_per_line`` nodes, and every new node brings at least
   ``min_split_qty`` units, except the first node of a line that had none.
5. Decisions: allocated + backordered == requested (except cancelled), every outcome
   but ALLOCATED has a reason code, and each decision shows the line's state after the
   command; every line's latest decision is its current state (outcome, quantities,
   nodes, reason); decision ids are unique over the whole run.
6. Exceptions: record ids are unique; a close names an open exception of the line; the
   open exceptions of every line are the ones its state calls for (``wanted_reasons``).
7. Backorder order: see ``check_backorder_order``.
8. Determinism: the same commands applied to a fresh shard give identical outputs.
9. Order node limit (``max_nodes_per_order``): see ``check_order_node_limit``.
10. Short shipments: a decision's ``short_shipped_qty`` is the line's units shipped short
    and not made good, counted in ``backordered_qty`` but never waiting (never
    re-allocated), and a line has a ``SHORT_SHIPPED`` exception open exactly then.
"""

import dataclasses
import pickle
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from allocflow.connectors.policy_file import default_policy
from allocflow.connectors.simulator.engine import Simulation, SimulationConfig
from allocflow.connectors.simulator.scenarios import SCENARIOS, behaviour_for
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
from allocflow.flows.rules.exceptions import wanted_reasons
from allocflow.flows.rules.explain import outcome_of, reason_of
from allocflow.flows.rules.lines import LineState
from allocflow.flows.rules.order_limit import order_max_rank
from allocflow.flows.rules.reference import DEFAULT_SHARDS, allocate_stream
from allocflow.flows.rules.rollup import OrderRollup
from allocflow.flows.rules.routing import route
from allocflow.flows.rules.shard import AllocationShard, ShardOutput
from allocflow.flows.rules.sku_book import SkuBook
from allocflow.flows.rules.stock import NodeStock
from allocflow.models.allocation_exceptions import AllocationException, ExceptionState
from allocflow.models.decisions import AllocationDecision, DecisionOutcome
from allocflow.models.envelope import EventEnvelope
from allocflow.models.order_status import OrderStatus, OrderStatusKind
from allocflow.models.orders import Channel, OrderPlaced
from allocflow.models.policy import (
    ALL_NODES,
    BackorderRule,
    NodeExclusion,
    Policy,
    ProtectionRule,
    SplitRule,
)
from allocflow.models.vocabulary import ReasonCode

pytestmark = pytest.mark.property

DEFAULT = default_policy()
T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
SKUS = ("SKU-A", "SKU-B")
NODES = tuple(DEFAULT.nodes)
CHANNELS = tuple(Channel)
# (customer, tier, region): most share DC-NJ as home node so they compete for it;
# "walk-in" is a tier the policy does not know, "central" a region without a home node.
CUSTOMERS = (
    ("CUST-P", "platinum", "northeast"),
    ("CUST-G", "gold", "northeast"),
    ("CUST-S", "silver", "northeast"),
    ("CUST-B", "bronze", "northeast"),
    ("CUST-W", "walk-in", "central"),
    ("CUST-G2", "gold", "southeast"),
    ("CUST-S2", "silver", "midwest"),
    ("CUST-B2", "bronze", "west"),
)
APPROVALS = (ReasonCode.APPROVAL_REQUIRED, ReasonCode.BELOW_MARGIN)

Books = dict[str, SkuBook | None]
LineKey = tuple[str, str]


# --- policies -----------------------------------------------------------------------

SPLITS = (
    DEFAULT.split,
    SplitRule(allowed=False, max_nodes_per_line=1, max_nodes_per_order=1),
    SplitRule(allowed=True, max_nodes_per_line=3, max_nodes_per_order=3, min_split_qty=1),
)
PROTECTIONS = (
    tuple(DEFAULT.protection),
    (),
    # Three protected tiers, one of them a fixed quantity at one node.
    (*DEFAULT.protection, ProtectionRule(node="DC-NJ", tier="silver", qty=8)),
)
EXCLUSIONS = (
    NodeExclusion(
        node="DC-ATL",
        starts=T0 + timedelta(hours=3),
        ends=T0 + timedelta(hours=20),
        regions=["southeast", "northeast"],
    ),
    NodeExclusion(node="DC-NJ", starts=T0 + timedelta(hours=10), ends=T0 + timedelta(hours=30)),
)


def make_policy(
    split: SplitRule,
    protection: tuple[ProtectionRule, ...],
    partial: bool,
    horizon: float,
    excluded: bool,
) -> Policy:
    return DEFAULT.model_copy(
        update={
            "policy_version": "prop-1",
            "split": split,
            "protection": list(protection),
            "backorders": BackorderRule(allow_partial=partial, use_inbound_within_hours=horizon),
            "sourcing": DEFAULT.sourcing.model_copy(
                update={"exclusions": list(EXCLUSIONS) if excluded else []}
            ),
        }
    )


policies = st.builds(
    make_policy,
    split=st.sampled_from(SPLITS),
    protection=st.sampled_from(PROTECTIONS),
    partial=st.booleans(),
    horizon=st.sampled_from([0.0, 24.0]),
    excluded=st.booleans(),
)


# --- scripts: abstract steps interpreted against the state -----------------------------


@dataclass(frozen=True)
class Place:
    customer: int
    channel: int
    lines: tuple[tuple[int, int], ...]  # (SKU index, qty)
    approvals: int = 0  # bit mask over APPROVALS


@dataclass(frozen=True)
class Resize:
    order: int
    changes: tuple[tuple[int, int], ...]  # (line pick, new qty in % of the current one)


@dataclass(frozen=True)
class Cancel:
    order: int


@dataclass(frozen=True)
class Hold:
    customer: int
    held: bool


@dataclass(frozen=True)
class Level:
    sku: int
    node: int
    on_hand: int


@dataclass(frozen=True)
class Adjust:
    sku: int
    node: int
    delta: int
    po: int | None = None


@dataclass(frozen=True)
class Inbound:
    sku: int
    node: int
    po: int
    qty: int
    eta_hours: int


@dataclass(frozen=True)
class Reserve:
    sku: int
    node: int
    reservation: int
    qty: int | None


@dataclass(frozen=True)
class Ship:
    order: int
    node: int | None  # None: the first line's allocated node
    lines: tuple[tuple[int, int], ...]  # (line pick, qty)


@dataclass(frozen=True)
class Short:
    shipment: int  # pick among the shipments so far
    line: int  # pick among the order's lines (it may not be in the shipment)
    qty: int


Step = Place | Resize | Cancel | Hold | Level | Adjust | Inbound | Reserve | Ship | Short
Script = list[tuple[int, Step]]  # (hours since the previous event, step)

_sku = st.sampled_from([0, 0, 1])  # SKU-A more often: more lines compete for it
_node = st.integers(0, len(NODES) - 1)
_pick = st.integers(0, 40)
_place = st.builds(
    Place,
    customer=st.integers(0, len(CUSTOMERS) - 1),
    channel=st.integers(0, len(CHANNELS) - 1),
    lines=st.lists(st.tuples(_sku, st.integers(1, 40)), min_size=1, max_size=3).map(tuple),
    approvals=st.integers(0, 3),
)
steps: st.SearchStrategy[Step] = st.one_of(
    _place,
    _place,
    st.builds(
        Resize,
        order=_pick,
        changes=st.lists(st.tuples(_pick, st.integers(10, 200)), min_size=1, max_size=3).map(tuple),
    ),
    st.builds(Cancel, order=_pick),
    st.builds(Hold, customer=st.integers(0, len(CUSTOMERS) - 1), held=st.booleans()),
    st.builds(Level, sku=_sku, node=_node, on_hand=st.integers(-5, 80)),
    st.builds(Level, sku=_sku, node=st.just(0), on_hand=st.integers(0, 80)),
    st.builds(
        Adjust,
        sku=_sku,
        node=_node,
        delta=st.integers(-20, 60).filter(bool),
        po=st.none() | st.integers(0, 2),
    ),
    st.builds(
        Inbound,
        sku=_sku,
        node=_node,
        po=st.integers(0, 2),
        qty=st.integers(1, 60),
        eta_hours=st.integers(-6, 48),
    ),
    st.builds(
        Reserve,
        sku=_sku,
        node=_node,
        reservation=st.integers(0, 2),
        qty=st.none() | st.integers(1, 40),
    ),
    st.builds(
        Ship,
        order=_pick,
        node=st.none() | _node,
        lines=st.lists(st.tuples(_pick, st.integers(1, 25)), min_size=1, max_size=2).map(tuple),
    ),
    st.builds(Short, shipment=_pick, line=_pick, qty=st.integers(1, 30)),
)
scripts = st.lists(st.tuples(st.integers(0, 3), steps), min_size=12, max_size=50)


@dataclass
class _Order:
    order_id: str
    customer: int
    lines: list[tuple[str, str]]  # (line id, SKU)
    placed: dict[str, int] = field(default_factory=dict)  # line id → qty ordered


@dataclass
class Player:
    """Turns steps into commands (one event each, sharing its cause) against the state."""

    policy: Policy
    shard: AllocationShard = field(init=False)
    now: datetime = T0
    events: int = 0
    orders: list[_Order] = field(default_factory=list)
    shipments: list[tuple[str, _Order]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.shard = AllocationShard(self.policy)

    def commands(self, hours: int, step: Step) -> list[Command]:
        self.now += timedelta(hours=hours)
        self.events += 1
        cause = Cause(f"evt-{self.events:03d}", self.now)
        return list(self._commands(cause, step))

    def _commands(self, cause: Cause, step: Step) -> Iterator[Command]:
        if isinstance(step, Place):
            yield from self._place(cause, step)
        elif isinstance(step, Hold):
            customer = CUSTOMERS[step.customer][0]
            yield CreditHold(cause, customer, f"HOLD-{customer}", step.held)
        elif isinstance(step, Level):
            yield StockLevel(cause, SKUS[step.sku], NODES[step.node], step.on_hand)
        elif isinstance(step, Adjust):
            po = None if step.po is None else f"PO-{step.po}"
            yield StockChange(cause, SKUS[step.sku], NODES[step.node], step.delta, po)
        elif isinstance(step, Inbound):
            eta = self.now + timedelta(hours=step.eta_hours)
            yield InboundUpdate(
                cause, SKUS[step.sku], NODES[step.node], f"PO-{step.po}", step.qty, eta
            )
        elif isinstance(step, Reserve):
            reservation = f"RES-{step.reservation}"
            yield ReservationChange(cause, SKUS[step.sku], NODES[step.node], reservation, step.qty)
        elif isinstance(step, Short):
            yield from self._short(cause, step)
        elif self.orders:
            order = self.orders[step.order % len(self.orders)]
            if isinstance(step, Cancel):
                yield OrderCancel(cause, order.order_id)
            elif isinstance(step, Resize):
                for line_id, sku, percent in _unique_lines(order, step.changes):
                    qty = max(1, self._requested(order, line_id, sku) * percent // 100)
                    yield LineResize(cause, order.order_id, line_id, sku, qty)
            else:
                yield from self._ship(cause, order, step)

    def _place(self, cause: Cause, step: Place) -> Iterator[Command]:
        customer, tier, region = CUSTOMERS[step.customer]
        channel = CHANNELS[step.channel]
        order = _Order(f"SO-{len(self.orders) + 1:03d}", step.customer, [])
        self.orders.append(order)
        approvals = tuple(
            reason for bit, reason in enumerate(APPROVALS) if step.approvals >> bit & 1
        )
        max_rank = order_max_rank(self.policy, len(step.lines))
        for number, (sku_index, qty) in enumerate(step.lines, start=1):
            line_id, sku = str(number), SKUS[sku_index]
            order.lines.append((line_id, sku))
            order.placed[line_id] = qty
            yield LineRequest(
                cause=cause,
                order_id=order.order_id,
                line_id=line_id,
                sku=sku,
                qty=qty,
                customer_id=customer,
                tier=tier,
                priority=self.policy.tier_priority(tier),
                channel_weight=self.policy.channel_weights[channel],
                region=region,
                placed_at=cause.event_time,
                approvals=approvals,
                max_rank=max_rank,
            )

    def _requested(self, order: _Order, line_id: str, sku: str) -> int:
        book = self.shard.books.get(sku)
        line = book.lines.get((order.order_id, line_id)) if book else None
        return line.requested if line else order.placed[line_id]

    def _ship(self, cause: Cause, order: _Order, step: Ship) -> Iterator[Command]:
        picked = _unique_lines(order, step.lines)
        if step.node is not None:
            node = NODES[step.node]
        else:
            line_id, sku, _ = picked[0]
            book = self.shard.books.get(sku)
            line = book.lines.get((order.order_id, line_id)) if book else None
            node = min(line.allocations) if line and line.allocations else NODES[0]
        shipment = f"SH-{self.events:03d}"
        self.shipments.append((shipment, order))
        for line_id, sku, qty in picked:
            yield ShipmentIssue(cause, sku, node, order.order_id, line_id, qty, shipment)

    def _short(self, cause: Cause, step: Short) -> Iterator[Command]:
        if not self.shipments:
            return
        shipment, order = self.shipments[step.shipment % len(self.shipments)]
        line_id, sku = order.lines[step.line % len(order.lines)]
        yield ShipmentShort(cause, sku, order.order_id, line_id, shipment, step.qty)


def _unique_lines(order: _Order, picks: Iterable[tuple[int, int]]) -> list[tuple[str, str, int]]:
    chosen: dict[str, tuple[str, str, int]] = {}
    for pick, qty in picks:
        line_id, sku = order.lines[pick % len(order.lines)]
        chosen.setdefault(line_id, (line_id, sku, qty))
    return list(chosen.values())


# --- the invariants -----------------------------------------------------------------


def horizon(policy: Policy) -> timedelta:
    return timedelta(hours=policy.backorders.use_inbound_within_hours)


def protection_owed(policy: Policy, book: SkuBook, node: str, priority: int) -> int:
    """Units at ``node`` a line of ``priority`` must leave for the tiers above it.

    For every tier priority q above the line's (q < priority), the protection rules of
    tiers q and above reserve P_q units (capped at on hand) that only those tiers may
    use; what those tiers hold there (A_q) counts against it. The line must leave the
    largest remainder, ``max(0, max_q(P_q - A_q))``: allocations of one tier never
    release the share protected for a tier above it.
    """
    stock = book.stocks.get(node) or NodeStock()
    owed = 0
    for q in sorted({rule.priority for rule in policy.tiers.values()}):
        if q >= priority:
            break
        protected = sum(
            rule.amount(stock.on_hand)
            for rule in policy.protection
            if rule.node in (node, ALL_NODES) and policy.tier_priority(rule.tier) <= q
        )
        held = sum(
            qty for key, qty in stock.allocated.items() if book.lines[key].request.priority <= q
        )
        owed = max(owed, min(protected, max(stock.on_hand, 0)) - held)
    return owed


def usable_by(policy: Policy, book: SkuBook, line: LineState, node: str, at: datetime) -> int:
    """Units at ``node`` the line could take now: ATP less the protection it owes."""
    stock = book.stocks.get(node) or NodeStock()
    owed = protection_owed(policy, book, node, line.request.priority)
    return max(0, stock.atp(at, horizon(policy)) - owed)


def check_supply_covers_allocations(policy: Policy, book: SkuBook, at: datetime) -> None:
    for node, stock in book.stocks.items():
        assert stock.overcommitted(at, horizon(policy)) == 0, (book.sku, node, stock)


def check_state_consistency(shard: AllocationShard, book: SkuBook) -> None:
    for node, stock in book.stocks.items():
        expected = {
            key: line.allocations[node]
            for key, line in book.lines.items()
            if node in line.allocations
        }
        assert stock.allocated == expected, (book.sku, node)
        assert all(qty > 0 for qty in stock.allocated.values())
    for key, line in book.lines.items():
        assert line.key == key
        assert all(qty > 0 for qty in line.allocations.values()), line
        assert line.held == (line.request.customer_id in shard.holds), line
        assert book.sku in shard.orders.get(key[0], set()), key


def _gains(old: LineState | None, new: LineState) -> dict[str, int]:
    before = old.allocations if old else {}
    return {
        node: qty - before.get(node, 0)
        for node, qty in new.allocations.items()
        if qty > before.get(node, 0)
    }


def _lost(old: LineState | None, new: LineState) -> bool:
    if old is None:
        return False
    return any(new.allocations.get(node, 0) < qty for node, qty in old.allocations.items()) or (
        new.shipped != old.shipped
    )


def check_protection(policy: Policy, old: SkuBook | None, book: SkuBook, at: datetime) -> None:
    """Invariant 3: every unit a line gained left the protection owed above its tier.

    Gains are measured against the snapshot taken before the command; what is owed is
    computed on the book after it, because the command may change on-hand before it
    allocates (a snapshot, a receipt). Allocations later in the same command keep the
    inequality: a higher tier's units count against the protection they consume, and a
    lower tier must leave at least as much.
    """
    for key, line in book.lines.items():
        previous = old.lines.get(key) if old else None
        for node in _gains(previous, line):
            atp = book.stocks[node].atp(at, horizon(policy))
            owed = protection_owed(policy, book, node, line.request.priority)
            assert atp >= owed, (key, node, line.request.tier, atp, owed)


def check_split_limits(policy: Policy, old: SkuBook | None, book: SkuBook) -> None:
    """Invariant 4: new nodes respect max_nodes_per_line and min_split_qty."""
    split = policy.split
    for key, line in book.lines.items():
        previous = old.lines.get(key) if old else None
        if _lost(previous, line):
            continue
        had = previous.nodes if previous else set()
        new = {node: qty for node, qty in _gains(previous, line).items() if node not in had}
        if not new:
            continue
        assert len(line.nodes) <= split.max_nodes_per_line, (key, line.nodes)
        small = [node for node, qty in new.items() if qty < split.min_split_qty]
        assert not small or (not had and len(small) == 1), (key, had, new)


@dataclass
class Ledger:
    """What the outputs said so far: latest decision and open exceptions of each line."""

    latest: dict[LineKey, AllocationDecision] = field(default_factory=dict)
    rules: set[str] = field(default_factory=set)
    outcomes: set[DecisionOutcome] = field(default_factory=set)
    decision_ids: set[str] = field(default_factory=set)
    record_ids: set[str] = field(default_factory=set)
    open: dict[LineKey, dict[ReasonCode, str]] = field(default_factory=dict)
    # Orders a warehouse shipped from a node allocflow had not allocated (enough) at.
    forced: set[str] = field(default_factory=set)

    def take(self, outputs: list[ShardOutput]) -> None:
        for output in outputs:
            if isinstance(output, AllocationDecision):
                assert output.decision_id not in self.decision_ids, output
                self.decision_ids.add(output.decision_id)
                self.latest[(output.order_id, output.line_id)] = output
                self.rules.add(output.rule.partition(":")[0])
                self.outcomes.add(output.outcome)
            else:
                self._exception(output)

    def _exception(self, record: AllocationException) -> None:
        assert record.record_id not in self.record_ids, record
        self.record_ids.add(record.record_id)
        assert record.line_id is not None
        opened = self.open.setdefault((record.order_id, record.line_id), {})
        if record.state is ExceptionState.OPEN:
            assert record.reason_code not in opened, record
            opened[record.reason_code] = record.exception_id
        else:
            assert opened.pop(record.reason_code, None) == record.exception_id, record


def check_decision(decision: AllocationDecision, line: LineState | None) -> None:
    """Invariant 5 for one decision, against the line's state after the command."""
    if decision.outcome is not DecisionOutcome.CANCELLED:
        assert decision.allocated_qty + decision.backordered_qty == decision.requested_qty
    if decision.outcome is not DecisionOutcome.ALLOCATED:
        assert decision.reason_code is not None
    if decision.outcome is DecisionOutcome.CANCELLED:
        assert line is None
    elif line is not None:
        check_shows(decision, line)


def check_shows(decision: AllocationDecision, line: LineState) -> None:
    """The decision is the line's current state: one outcome, its quantities and nodes."""
    outcome = outcome_of(line, cancelled=False)
    assert decision.outcome is outcome, (decision, line)
    assert decision.reason_code == reason_of(line, outcome), (decision, line)
    assert decision.requested_qty == line.requested
    assert decision.short_shipped_qty == line.short_outstanding
    assert decision.backordered_qty == line.waiting + line.short_outstanding
    assert {a.node_id: a.qty for a in decision.allocations} == line.committed_by_node()
    # Units shipped short are neither committed nor waiting: nothing re-allocates them.
    assert line.committed + line.waiting + line.short_outstanding == line.requested, line
    assert (decision.outcome is DecisionOutcome.SHORT_SHIPPED) == (
        line.short_outstanding > 0 and not (line.held and line.waiting)
    )


def check_lines_match_ledger(book: SkuBook, ledger: Ledger) -> None:
    for key, line in book.lines.items():
        assert key in ledger.latest, key
        check_shows(ledger.latest[key], line)
        assert set(line.open_exceptions) == wanted_reasons(line, cancelled=False), line
        assert ledger.open.get(key, {}) == {
            reason: exception_id for reason, (exception_id, _) in line.open_exceptions.items()
        }


def check_backorder_order(
    policy: Policy,
    old: Books,
    shard: AllocationShard,
    decisions: list[AllocationDecision],
    at: datetime,
) -> None:
    """Invariant 7: backorders are served by priority, and none is skipped for a lower one.

    Within one command and one SKU, the decisions of lines served from the backlog (rule
    ``backorder:…``) appear in priority order: tier priority, then higher channel
    weight, then older ``placed_at`` (then order and line id), strictly increasing.

    And: when such a line L gained units at node N, every line H still waiting after the
    command, not held, ranked before L, could not have used N at the end of the
    command, because one of:

    a. N is not one of H's candidate nodes, or is excluded for H's region now, or is
       ranked beyond H's ``max_rank`` (its order's node limit);
    b. nothing is left at N for H's tier: ATP minus the protection H owes is 0;
    c. N would be a new node for H and H already uses max_nodes_per_line nodes;
    d. N would be a new node for H, H already uses a node, and what H could take there,
       min(usable, waiting), is below min_split_qty;
    e. the policy allocates all or nothing (a greedy full fill may need stock in a
       different combination, so no per-node claim holds).

    This is the strongest form that holds for the single pass of ``_serve_backorders``:
    protection and split limits legitimately let a lower line take stock that a higher
    one cannot use, and e. exempts all-or-nothing.
    """
    served: dict[str, list[tuple[LineState, dict[str, int]]]] = {}
    for decision in decisions:
        if not decision.rule.startswith("backorder:"):
            continue
        book = shard.books[decision.sku]
        line = book.lines[(decision.order_id, decision.line_id)]
        before = old.get(decision.sku)
        gains = _gains(before.lines.get(line.key) if before else None, line)
        served.setdefault(decision.sku, []).append((line, gains))
    for lines in served.values():  # each SKU's book serves its own queue
        keys = [line.priority_key() for line, _ in lines]
        assert keys == sorted(keys), keys
        assert len(set(keys)) == len(keys), keys
    if not policy.backorders.allow_partial:
        return
    for lower, gains in (pair for lines in served.values() for pair in lines):
        book = shard.books[lower.request.sku]
        for higher in book.lines.values():
            if not higher.waiting or higher.held or higher.priority_key() >= lower.priority_key():
                continue
            for node in gains:
                assert _cannot_use(policy, book, higher, node, at), (higher, lower, node)


def _cannot_use(policy: Policy, book: SkuBook, line: LineState, node: str, at: datetime) -> bool:
    candidates = {n: excluded for n, _, excluded in policy.candidate_nodes(line.request.region, at)}
    if candidates.get(node, True):
        return True
    limit = line.request.max_rank
    if limit is not None and _ranks(policy, line.request.region)[node] > limit:
        return True
    usable = usable_by(policy, book, line, node, at)
    if usable == 0:
        return True
    if node in line.nodes:
        return False
    if len(line.nodes) >= policy.split.max_nodes_per_line:
        return True
    return bool(line.nodes) and min(usable, line.waiting) < policy.split.min_split_qty


def _forced(old: Books, command: ShipmentIssue) -> bool:
    """Whether a shipment took more from its node than allocflow had allocated the line there."""
    book = old.get(command.sku)
    line = book.lines.get((command.order_id, command.line_id)) if book else None
    return line is None or line.allocations.get(command.node_id, 0) < command.qty


def _ranks(policy: Policy, region: str) -> dict[str, int]:
    return {node: rank for node, rank, _ in policy.candidate_nodes(region, T0)}


def check_order_node_limit(
    policy: Policy, shards: Iterable[AllocationShard], orders: Iterable[str], ledger: Ledger
) -> None:
    """Invariant 9: the lines of an order together stay within ``max_nodes_per_order``.

    Every line of an order limited to its first ranks (``max_rank``) holds allocations
    only at nodes of those ranks. And the nodes the order's lines hold units at
    (allocated or shipped) are at most ``max_nodes_per_order``, unless a warehouse
    shipped more of a line from a node than allocflow had allocated there (a fact
    allocflow books, not a choice it made; see ``_forced``).
    """
    shards = list(shards)
    for order_id in orders:
        nodes: set[str] = set()
        for shard in shards:
            for sku in shard.orders.get(order_id, ()):
                for key, line in shard.books[sku].lines.items():
                    if key[0] != order_id:
                        continue
                    limit = line.request.max_rank
                    if limit is not None:
                        ranks = _ranks(policy, line.request.region)
                        assert all(ranks[node] <= limit for node in line.allocations), line
                    nodes |= set(line.committed_by_node())
        if order_id not in ledger.forced:
            assert len(nodes) <= policy.split.max_nodes_per_order, (order_id, nodes)


def affected(shard: AllocationShard, command: Command) -> list[str]:
    """The SKUs whose books ``command`` can change.

    A credit hold changes only books holding a line of its customer (their lines are
    held or released, and what that frees or takes serves the same book).
    """
    if isinstance(command, CreditHold):
        return sorted(
            sku
            for sku, book in shard.books.items()
            if any(line.request.customer_id == command.customer_id for line in book.lines.values())
        )
    if isinstance(command, OrderCancel):
        return sorted(shard.books)
    return [command.sku]


def snapshot(shard: AllocationShard, command: Command) -> Books:
    return {sku: _copy_book(shard.books.get(sku)) for sku in affected(shard, command)}


def _copy_book(book: SkuBook | None) -> SkuBook | None:
    """A deep copy of the book without its finished lines (no invariant reads them).

    Copied through pickle, as a recovery snapshot copies it: several times faster than
    ``copy.deepcopy`` (the credit-holds stream copies every book at each hold).
    """
    if book is None:
        return None
    copied: SkuBook = pickle.loads(  # noqa: S301 (our own bytes, just written)
        pickle.dumps(dataclasses.replace(book, finished={}), pickle.HIGHEST_PROTOCOL)
    )
    return copied


def check_command(
    policy: Policy,
    shard: AllocationShard,
    *,
    command: Command,
    old: Books,
    outputs: list[ShardOutput],
    ledger: Ledger,
    shards: Iterable[AllocationShard] = (),
) -> None:
    """Every invariant after one command (``old``: the books it could touch, before).

    ``shards``: every shard of the run, for the order-level checks (default: ``shard``).
    """
    at = command.cause.event_time
    ledger.take(outputs)
    if isinstance(command, ShipmentIssue) and _forced(old, command):
        ledger.forced.add(command.order_id)
    decisions = [output for output in outputs if isinstance(output, AllocationDecision)]
    for decision in decisions:
        book = shard.books.get(decision.sku)
        check_decision(
            decision, book.lines.get((decision.order_id, decision.line_id)) if book else None
        )
        assert decision.policy_version == policy.policy_version
    for sku, before in old.items():
        book = shard.books.get(sku)
        if book is None:
            continue
        check_supply_covers_allocations(policy, book, at)
        check_state_consistency(shard, book)
        check_protection(policy, before, book, at)
        check_split_limits(policy, before, book)
        check_lines_match_ledger(book, ledger)
    gone = {(o.order_id, o.line_id) for o in outputs if o.line_id is not None} - {
        key for book in shard.books.values() for key in book.lines
    }
    for key in gone:
        assert not ledger.open.get(key), (key, ledger.open[key])
    check_backorder_order(policy, old, shard, decisions, at)
    touched = {decision.order_id for decision in decisions}
    check_order_node_limit(policy, list(shards) or [shard], touched, ledger)


# --- generated scripts ---------------------------------------------------------------


def play(policy: Policy, script: Script, *, check: bool) -> list[ShardOutput]:
    player = Player(policy)
    ledger = Ledger()
    outputs: list[ShardOutput] = []
    for hours, step in script:
        for command in player.commands(hours, step):
            old = snapshot(player.shard, command) if check else {}
            produced = player.shard.apply(command)
            if check:
                check_command(
                    policy,
                    player.shard,
                    command=command,
                    old=old,
                    outputs=produced,
                    ledger=ledger,
                )
            outputs += produced
    return outputs


STRICT_DEFAULT = make_policy(DEFAULT.split, tuple(DEFAULT.protection), True, 0.0, False)
THREE_TIERS = make_policy(DEFAULT.split, PROTECTIONS[2], True, 24.0, True)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(policy=policies, script=scripts)
# Gold holding stock must not release platinum's share to silver.
@example(
    policy=STRICT_DEFAULT,
    script=[
        (0, Level(0, 0, 100)),
        (0, Place(1, 0, ((0, 25),))),
        (1, Place(2, 0, ((0, 100),))),
    ],
)
# A 3-unit remainder is not worth a second node (min_split_qty 5).
@example(
    policy=STRICT_DEFAULT,
    script=[(0, Level(0, 0, 97)), (0, Level(0, 1, 50)), (1, Place(0, 0, ((0, 100),)))],
)
# One order change shrinking two lines serves the same backorder twice.
@example(
    policy=STRICT_DEFAULT,
    script=[
        (0, Level(0, 0, 20)),
        (0, Place(0, 0, ((0, 10), (0, 10)))),
        (1, Place(0, 0, ((0, 10),))),
        (1, Resize(0, ((0, 50), (1, 50)))),
    ],
)
# Shipping more than ordered, and shrinking a line below what shipped.
@example(
    policy=STRICT_DEFAULT,
    script=[
        (0, Level(0, 0, 50)),
        (0, Place(0, 0, ((0, 10), (0, 10)))),
        (1, Ship(0, None, ((0, 4),))),
        (1, Resize(0, ((0, 20),))),
        (1, Ship(0, 1, ((1, 12),))),
    ],
)
# A receipt serving lines whose ids sort against their priority.
@example(
    policy=STRICT_DEFAULT,
    script=[
        (0, Place(3, 0, ((0, 10),))),
        (0, Place(1, 0, ((0, 10),))),
        (0, Place(0, 0, ((0, 10),))),
        (1, Adjust(0, 0, 25)),
    ],
)
# A resize down releasing the fallback of a split line.
@example(
    policy=STRICT_DEFAULT,
    script=[
        (0, Level(0, 0, 90)),
        (0, Level(0, 1, 50)),
        (0, Place(0, 0, ((0, 100),))),
        (0, Place(5, 0, ((0, 45),))),
        (1, Resize(0, ((0, 90),))),
    ],
)
# Three protected tiers, an exclusion window and inbound within the horizon.
@example(
    policy=THREE_TIERS,
    script=[
        (0, Inbound(0, 0, 0, 30, 6)),
        (0, Level(0, 0, 40)),
        (0, Place(1, 1, ((0, 30),))),
        (4, Place(3, 0, ((0, 40),))),
        (1, Adjust(0, 0, 10, 0)),
        (1, Place(0, 0, ((0, 20),))),
    ],
)
# A line shipped in full, reported short, then made good by a second shipment.
@example(
    policy=STRICT_DEFAULT,
    script=[
        (0, Level(0, 0, 50)),
        (0, Place(0, 0, ((0, 10),))),
        (1, Ship(0, None, ((0, 10),))),
        (1, Short(0, 0, 3)),
        (1, Ship(0, None, ((0, 3),))),
    ],
)
# Two lines that alone would use four nodes: the order keeps to its first three ranks.
@example(
    policy=STRICT_DEFAULT,
    script=[
        (0, Level(0, 0, 20)),
        (0, Level(0, 1, 30)),
        (0, Level(1, 2, 20)),
        (0, Level(1, 3, 40)),
        (0, Place(0, 0, ((0, 30), (1, 30)))),
    ],
)
def test_invariants_hold_after_every_command(policy: Policy, script: Script) -> None:
    outputs = play(policy, script, check=True)
    again = play(policy, script, check=False)
    assert [o.model_dump() for o in outputs] == [o.model_dump() for o in again]


# --- simulator streams -----------------------------------------------------------------


def checked_stream(
    events: list[EventEnvelope], policy: Policy, shards: int = DEFAULT_SHARDS
) -> tuple[list[ShardOutput | OrderStatus], Ledger]:
    """``allocate_stream``'s loop, checking every invariant after every command."""
    states: dict[str, AllocationShard] = {}
    rollups: dict[str, OrderRollup] = {}
    ledger = Ledger()
    records: list[ShardOutput | OrderStatus] = []
    for event in events:
        for key, command in route(event, policy, shards):
            state = states.setdefault(key, AllocationShard(policy))
            old = snapshot(state, command)
            outputs = state.apply(command)
            check_command(
                policy,
                state,
                command=command,
                old=old,
                outputs=outputs,
                ledger=ledger,
                shards=states.values(),
            )
            for output in outputs:
                records.append(output)
                if isinstance(output, AllocationDecision):
                    status = rollups.setdefault(output.order_id, OrderRollup()).apply(output)
                    if status is not None:
                        records.append(status)
    return records, ledger


def check_order_statuses(records: list[ShardOutput | OrderStatus], ledger: Ledger) -> None:
    """The last status of each order reflects the latest decision of each of its lines."""
    final: dict[str, OrderStatus] = {}
    for record in records:
        if isinstance(record, OrderStatus):
            previous = final.get(record.order_id)
            assert previous is None or record.version > previous.version
            final[record.order_id] = record
    lines: dict[str, list[AllocationDecision]] = {}
    for (order_id, _), decision in ledger.latest.items():
        lines.setdefault(order_id, []).append(decision)
    assert set(final) == set(lines)
    for order_id, decisions in lines.items():
        status = final[order_id]
        live = [d for d in decisions if d.outcome is not DecisionOutcome.CANCELLED]
        assert status.lines == len(decisions)
        assert status.allocated_qty == sum(d.allocated_qty for d in live), order_id
        assert status.nodes == sorted({a.node_id for d in live for a in d.allocations})
        if not live:
            assert status.status is OrderStatusKind.CANCELLED


INBOUND_WITHIN_A_DAY = DEFAULT.model_copy(
    update={"backorders": BackorderRule(use_inbound_within_hours=24.0)}
)


@pytest.mark.parametrize(
    ("scenario", "policy"),
    [
        *(pytest.param(name, DEFAULT, id=name) for name in sorted(SCENARIOS)),
        # Late purchase orders matter once inbound counts as supply.
        pytest.param("inbound-delay", INBOUND_WITHIN_A_DAY, id="inbound-delay-24h-horizon"),
    ],
)
def test_simulated_streams_keep_the_invariants(scenario: str, policy: Policy) -> None:
    config = SimulationConfig(
        seed=11, orders=300, stock_cover_days=0.1, behaviour=behaviour_for([scenario])
    )
    events = list(Simulation(config).run())
    records, ledger = checked_stream(events, policy)
    assert [r.model_dump() for r in records] == [
        r.model_dump() for r in allocate_stream(events, policy)
    ]
    # The stream exercised the rules: shortfalls, backorders served, goods issues, shorts.
    assert {DecisionOutcome.PARTIAL, DecisionOutcome.BACKORDERED} <= ledger.outcomes
    assert {"backorder", "supply-shortfall", "warehouse-shipment", "short-shipment"} <= (
        ledger.rules
    )
    check_order_statuses(records, ledger)
    check_orders_placed_within_the_node_limit(events, records, policy)


def check_orders_placed_within_the_node_limit(
    events: list[EventEnvelope], records: list[ShardOutput | OrderStatus], policy: Policy
) -> None:
    """The decisions an order's placement caused put it on at most max_nodes_per_order nodes."""
    placements = {e.order_id: e.event_id for e in events if isinstance(e, OrderPlaced)}
    nodes: dict[str, set[str]] = {}
    for record in records:
        if isinstance(record, AllocationDecision) and (
            placements.get(record.order_id) == record.cause_event_id
        ):
            nodes.setdefault(record.order_id, set()).update(a.node_id for a in record.allocations)
    assert nodes
    assert max(len(used) for used in nodes.values()) <= policy.split.max_nodes_per_order
