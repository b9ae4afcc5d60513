"""The allocation rules on small explicit scenarios: one shard, a few lines, exact numbers.

Every scenario uses the default policy (``flows/policies/default.toml``) unless it says
otherwise: nodes DC-NJ, DC-ATL, DC-CHI, DC-DAL, DC-RNO; protection 15 % of on-hand for
platinum plus 10 % for gold at every node; split allowed, 2 nodes per line, an extra node
only for 5 units or more. Northeast orders try DC-NJ, then DC-ATL, DC-CHI, DC-DAL.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from allocflow.connectors.policy_file import default_policy
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
from allocflow.flows.rules.fill import plan_fill
from allocflow.flows.rules.lines import LineState
from allocflow.flows.rules.order_limit import order_max_rank
from allocflow.flows.rules.reference import allocate_stream
from allocflow.flows.rules.rollup import OrderRollup
from allocflow.flows.rules.routing import route
from allocflow.flows.rules.shard import AllocationShard, ShardOutput
from allocflow.flows.rules.sku_book import FINISHED_LINE_RETENTION
from allocflow.flows.rules.stock import NodeStock
from allocflow.models.allocation_exceptions import AllocationException, ExceptionState
from allocflow.models.decisions import AllocationDecision, DecisionOutcome, NodeAllocation
from allocflow.models.envelope import EventEnvelope, Source
from allocflow.models.inventory import StockSnapshot
from allocflow.models.order_status import OrderStatus, OrderStatusKind
from allocflow.models.orders import (
    Channel,
    LineChange,
    OrderChanged,
    OrderLine,
    OrderPlaced,
)
from allocflow.models.policy import (
    BackorderRule,
    NodeExclusion,
    Policy,
    SplitRule,
)
from allocflow.models.shipments import (
    ShipmentCreated,
    ShipmentLine,
    ShipmentShortShipped,
    ShortLine,
)
from allocflow.models.vocabulary import OwnerRole, ReasonCode, Severity

pytestmark = pytest.mark.unit

POLICY = default_policy()
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
SKU = "SKU-1"
NJ, ATL, CHI, DAL, RNO = "DC-NJ", "DC-ATL", "DC-CHI", "DC-DAL", "DC-RNO"

# --- a shard with an event clock ---------------------------------------------------


@dataclass
class Outputs:
    """What one command produced, with lookups by line."""

    records: list[ShardOutput]

    @property
    def decisions(self) -> list[AllocationDecision]:
        return [r for r in self.records if isinstance(r, AllocationDecision)]

    @property
    def exceptions(self) -> list[AllocationException]:
        return [r for r in self.records if isinstance(r, AllocationException)]

    def decision(self, order_id: str, line_id: str = "1") -> AllocationDecision:
        found = [d for d in self.decisions if (d.order_id, d.line_id) == (order_id, line_id)]
        assert len(found) == 1, f"expected one decision for {order_id}/{line_id}: {found}"
        return found[0]

    def order(self) -> list[str]:
        """Order ids of the decisions, in output order."""
        return [d.order_id for d in self.decisions]

    def exception_states(self, order_id: str) -> dict[ReasonCode, ExceptionState]:
        return {e.reason_code: e.state for e in self.exceptions if e.order_id == order_id}


@dataclass
class Desk:
    """An allocation shard fed one command at a time, each with its own event id."""

    policy: Policy = POLICY
    shard: AllocationShard = field(init=False)
    clock: int = 0

    def __post_init__(self) -> None:
        self.shard = AllocationShard(self.policy)

    def cause(self, at: datetime | None = None) -> Cause:
        self.clock += 1
        return Cause(f"evt-{self.clock:03d}", at or T0 + timedelta(minutes=self.clock))

    def apply(self, command: Command) -> Outputs:
        return Outputs(self.shard.apply(command))

    def level(self, node: str, on_hand: int, sku: str = SKU) -> Outputs:
        return self.apply(StockLevel(self.cause(), sku, node, on_hand))

    def receive(self, node: str, delta: int, po_id: str | None = None, sku: str = SKU) -> Outputs:
        return self.apply(StockChange(self.cause(), sku, node, delta, po_id))

    def order(
        self,
        order_id: str,
        qty: int,
        *,
        tier: str = "platinum",
        region: str = "northeast",
        channel: Channel = Channel.ECOMMERCE,
        customer: str | None = None,
        line_id: str = "1",
        sku: str = SKU,
        approvals: tuple[ReasonCode, ...] = (),
        at: datetime | None = None,
    ) -> Outputs:
        cause = self.cause(at)
        return self.apply(
            LineRequest(
                cause=cause,
                order_id=order_id,
                line_id=line_id,
                sku=sku,
                qty=qty,
                customer_id=customer or f"CUST-{order_id}",
                tier=tier,
                priority=self.policy.tier_priority(tier),
                channel_weight=self.policy.channel_weights[channel],
                region=region,
                placed_at=cause.event_time,
                approvals=approvals,
            )
        )

    def resize(self, order_id: str, qty: int, line_id: str = "1", sku: str = SKU) -> Outputs:
        return self.apply(LineResize(self.cause(), order_id, line_id, sku, qty))

    def cancel(self, order_id: str) -> Outputs:
        return self.apply(OrderCancel(self.cause(), order_id))

    def hold(self, customer: str, held: bool = True) -> Outputs:
        return self.apply(CreditHold(self.cause(), customer, f"HOLD-{customer}", held))

    def reserve(self, node: str, reservation_id: str, qty: int | None) -> Outputs:
        return self.apply(ReservationChange(self.cause(), SKU, node, reservation_id, qty))

    def ship(
        self,
        order_id: str,
        node: str,
        qty: int,
        line_id: str = "1",
        *,
        shipment: str = "SH-1",
        at: datetime | None = None,
    ) -> Outputs:
        return self.apply(
            ShipmentIssue(self.cause(at), SKU, node, order_id, line_id, qty, shipment)
        )

    def short(
        self,
        order_id: str,
        qty: int,
        line_id: str = "1",
        *,
        shipment: str = "SH-1",
        at: datetime | None = None,
    ) -> Outputs:
        return self.apply(ShipmentShort(self.cause(at), SKU, order_id, line_id, shipment, qty))

    def stock(self, node: str, sku: str = SKU) -> NodeStock:
        return self.shard.books[sku].stocks[node]

    def line(self, order_id: str, line_id: str = "1", sku: str = SKU) -> LineState:
        return self.shard.books[sku].lines[(order_id, line_id)]


def placed(decision: AllocationDecision) -> dict[str, int]:
    return {a.node_id: a.qty for a in decision.allocations}


def rejected(decision: AllocationDecision) -> dict[str, ReasonCode | None]:
    return {c.node_id: c.rejected_reason for c in decision.candidates}


def available(decision: AllocationDecision) -> dict[str, int]:
    return {c.node_id: c.available_qty for c in decision.candidates}


def with_policy(**update: object) -> Policy:
    return POLICY.model_copy(update=update)


# --- home node, fallbacks, splits --------------------------------------------------


def test_the_home_node_fills_a_line_it_can_fill() -> None:
    desk = Desk()
    desk.level(NJ, 100)
    desk.level(ATL, 100)
    out = desk.order("SO-1", 20, tier="silver")
    decision = out.decision("SO-1")
    assert decision.outcome is DecisionOutcome.ALLOCATED
    assert decision.rule == "home-node"
    assert placed(decision) == {NJ: 20}
    assert decision.reason_code is None
    assert (decision.requested_qty, decision.allocated_qty, decision.backordered_qty) == (20, 20, 0)
    # Candidates in rank order; silver may use 75 of 100 (25 % protected for gold/platinum).
    assert [(c.node_id, c.rank) for c in decision.candidates] == [
        (NJ, 1),
        (ATL, 2),
        (CHI, 3),
        (DAL, 4),
    ]
    assert available(decision) == {NJ: 75, ATL: 75, CHI: 0, DAL: 0}
    assert rejected(decision) == {
        NJ: None,
        ATL: None,
        CHI: ReasonCode.STOCKOUT,
        DAL: ReasonCode.STOCKOUT,
    }
    assert decision.explanation.startswith("Allocated")
    assert "20 at DC-NJ of 20 ordered" in decision.explanation
    assert "DC-NJ (rank 1, 75 available)" in decision.explanation
    assert "DC-CHI (rank 3, 0 available, STOCKOUT)" in decision.explanation
    assert decision.policy_version == POLICY.policy_version
    assert decision.decided_at == T0 + timedelta(minutes=3)
    assert out.exceptions == []
    assert desk.stock(NJ).allocated == {("SO-1", "1"): 20}


def test_a_short_home_node_falls_back_to_the_first_ranked_node_that_can_fill() -> None:
    desk = Desk()
    desk.level(NJ, 5)
    desk.level(ATL, 10)
    desk.level(CHI, 100)
    decision = desk.order("SO-1", 20, tier="silver").decision("SO-1")
    # DC-NJ (rank 1) and DC-ATL (rank 2) are short; DC-CHI (rank 3) fills it without a split.
    assert decision.rule == "fallback-rank-3"
    assert decision.outcome is DecisionOutcome.ALLOCATED
    assert placed(decision) == {CHI: 20}
    assert available(decision) == {NJ: 5, ATL: 8, CHI: 75, DAL: 0}
    assert rejected(decision)[NJ] is None

    desk.level(ATL, 100)
    decision = desk.order("SO-2", 20, tier="silver").decision("SO-2")
    assert decision.rule == "fallback-rank-2"
    assert placed(decision) == {ATL: 20}


def test_a_line_no_single_node_can_fill_is_split_across_two_nodes() -> None:
    desk = Desk()
    desk.level(NJ, 12)
    desk.level(ATL, 12)
    decision = desk.order("SO-1", 20).decision("SO-1")
    assert decision.rule == "split"
    assert decision.outcome is DecisionOutcome.ALLOCATED
    assert placed(decision) == {NJ: 12, ATL: 8}
    assert decision.reason_code is None
    assert "12 at DC-NJ" in decision.explanation
    assert "8 at DC-ATL" in decision.explanation


def test_a_third_node_is_split_required() -> None:
    desk = Desk()
    for node in (NJ, ATL, CHI):
        desk.level(node, 12)
    out = desk.order("SO-1", 30)
    decision = out.decision("SO-1")
    assert decision.rule == "split"
    assert decision.outcome is DecisionOutcome.PARTIAL
    assert placed(decision) == {NJ: 12, ATL: 12}
    assert decision.backordered_qty == 6
    assert decision.reason_code is ReasonCode.SPLIT_REQUIRED
    assert rejected(decision) == {
        NJ: None,
        ATL: None,
        CHI: ReasonCode.SPLIT_REQUIRED,
        DAL: ReasonCode.STOCKOUT,
    }
    assert "split rules forbid another node" in decision.explanation
    [exception] = out.exceptions
    assert (exception.reason_code, exception.state) == (
        ReasonCode.SPLIT_REQUIRED,
        ExceptionState.OPEN,
    )
    assert (exception.owner_role, exception.severity) == (OwnerRole.PLANNER, Severity.WARNING)


def test_a_remainder_below_the_minimum_split_is_backordered_not_split() -> None:
    # docs/policy.md: "a line for 100 units whose home node has 90 may take 90 there and
    # 10 from a fallback; if the home node has 97, the 3 missing units are not worth a
    # second node."
    desk = Desk()
    desk.level(NJ, 90)
    desk.level(ATL, 50)
    decision = desk.order("SO-1", 100).decision("SO-1")
    assert placed(decision) == {NJ: 90, ATL: 10}
    assert decision.rule == "split"

    desk = Desk()
    desk.level(NJ, 97)
    desk.level(ATL, 50)
    decision = desk.order("SO-1", 100).decision("SO-1")
    assert placed(decision) == {NJ: 97}
    assert decision.outcome is DecisionOutcome.PARTIAL
    assert decision.backordered_qty == 3
    assert decision.reason_code is ReasonCode.SPLIT_REQUIRED
    assert rejected(decision)[ATL] is ReasonCode.SPLIT_REQUIRED
    assert available(decision)[ATL] == 50


def test_a_small_remainder_still_tops_up_a_node_the_line_already_uses() -> None:
    desk = Desk()
    desk.level(NJ, 90)
    first = desk.order("SO-1", 100).decision("SO-1")
    assert (placed(first), first.reason_code) == ({NJ: 90}, ReasonCode.PARTIAL_FILL)
    # 3 more units at DC-NJ: not an additional node, so the minimum split does not apply.
    decision = desk.receive(NJ, 3).decision("SO-1")
    assert decision.rule == "backorder:home-node"
    assert placed(decision) == {NJ: 93}
    assert decision.backordered_qty == 7
    # A new node for a 7-unit remainder is worth a split (>= 5 units).
    decision = desk.receive(CHI, 20).decision("SO-1")
    assert placed(decision) == {NJ: 93, CHI: 7}
    assert decision.outcome is DecisionOutcome.ALLOCATED


def test_when_splits_are_not_allowed_one_node_serves_the_line() -> None:
    split = SplitRule(allowed=False, max_nodes_per_line=1, max_nodes_per_order=1)
    desk = Desk(with_policy(split=split))
    desk.level(NJ, 12)
    desk.level(ATL, 12)
    decision = desk.order("SO-1", 20).decision("SO-1")
    assert placed(decision) == {NJ: 12}
    assert decision.outcome is DecisionOutcome.PARTIAL
    assert decision.reason_code is ReasonCode.SPLIT_REQUIRED
    assert rejected(decision)[ATL] is ReasonCode.SPLIT_REQUIRED

    desk.level(CHI, 25)
    decision = desk.order("SO-2", 20).decision("SO-2")
    assert (decision.rule, placed(decision)) == ("fallback-rank-3", {CHI: 20})


def test_plan_fill_prefers_a_single_node_over_a_split() -> None:
    line = LineState(
        request=LineRequest(
            cause=Cause("evt-1", T0),
            order_id="SO-1",
            line_id="1",
            sku=SKU,
            qty=30,
            customer_id="CUST-1",
            tier="platinum",
            priority=1,
            channel_weight=1.0,
            region="southeast",
            placed_at=T0,
        ),
        requested=30,
    )
    stocks = {ATL: NodeStock(on_hand=20), DAL: NodeStock(on_hand=20), CHI: NodeStock(on_hand=40)}
    plan = plan_fill(line, stocks, POLICY, T0, lambda _node, _priority: 0)
    assert (plan.takes, plan.rule, plan.shortfall) == ({CHI: 30}, "fallback-rank-4", None)
    assert [(c.node_id, c.rank, c.available_qty) for c in plan.candidates] == [
        (ATL, 1, 20),
        (DAL, 2, 20),
        (NJ, 3, 0),
        (CHI, 4, 40),
    ]


# --- supply protection --------------------------------------------------------------


def test_silver_cannot_take_the_quarter_protected_for_gold_and_platinum() -> None:
    desk = Desk()
    desk.level(NJ, 100)
    assert placed(desk.order("SO-1", 75, tier="silver").decision("SO-1")) == {NJ: 75}

    out = desk.order("SO-2", 10, tier="silver")
    decision = out.decision("SO-2")
    assert decision.outcome is DecisionOutcome.BACKORDERED
    assert decision.rule == "no-supply"
    assert decision.reason_code is ReasonCode.PROTECTED_STOCK
    assert rejected(decision)[NJ] is ReasonCode.PROTECTED_STOCK
    assert available(decision)[NJ] == 0
    assert "protected for higher tiers" in decision.explanation
    assert [(e.reason_code, e.owner_role) for e in out.exceptions] == [
        (ReasonCode.PROTECTED_STOCK, OwnerRole.PLANNER)
    ]

    decision = desk.order("SO-3", 25, tier="platinum").decision("SO-3")
    assert (decision.outcome, placed(decision)) == (DecisionOutcome.ALLOCATED, {NJ: 25})


def test_gold_may_use_the_gold_share_but_not_the_platinum_share() -> None:
    desk = Desk()
    desk.level(NJ, 100)
    desk.order("SO-1", 75, tier="silver")
    assert placed(desk.order("SO-2", 10, tier="gold").decision("SO-2")) == {NJ: 10}
    decision = desk.order("SO-3", 5, tier="gold").decision("SO-3")
    assert decision.reason_code is ReasonCode.PROTECTED_STOCK
    decision = desk.order("SO-4", 15, tier="platinum").decision("SO-4")
    assert placed(decision) == {NJ: 15}


def test_gold_allocations_do_not_release_the_platinum_share_to_lower_tiers() -> None:
    # Gold holding 25 units uses up the gold share (10) but not platinum's 15: silver may
    # take 100 - 25 - 15 = 60, and a platinum order after it still finds its 15 units.
    desk = Desk()
    desk.level(NJ, 100)
    desk.order("SO-1", 25, tier="gold")
    decision = desk.order("SO-2", 100, tier="silver").decision("SO-2")
    assert placed(decision) == {NJ: 60}
    assert decision.reason_code is ReasonCode.PARTIAL_FILL
    decision = desk.order("SO-3", 15, tier="platinum").decision("SO-3")
    assert (decision.outcome, placed(decision)) == (DecisionOutcome.ALLOCATED, {NJ: 15})


def test_the_worked_protection_example_of_the_policy_doc() -> None:
    desk = Desk()
    desk.level(ATL, 200)
    bronze = desk.order("SO-1", 180, tier="bronze", region="southeast").decision("SO-1")
    assert placed(bronze) == {ATL: 150}
    gold = desk.order("SO-2", 40, tier="gold", region="southeast").decision("SO-2")
    assert placed(gold) == {ATL: 20}
    platinum = desk.order("SO-3", 40, tier="platinum", region="southeast").decision("SO-3")
    assert placed(platinum) == {ATL: 30}


# --- node exclusions ------------------------------------------------------------------

FLOOD = NodeExclusion(
    node=NJ,
    starts=T0 + timedelta(hours=1),
    ends=T0 + timedelta(hours=5),
    reason="flood",
    regions=["northeast"],
)


def test_an_excluded_node_is_skipped_inside_its_window_for_its_regions_only() -> None:
    desk = Desk(with_policy(sourcing=POLICY.sourcing.model_copy(update={"exclusions": [FLOOD]})))
    desk.level(NJ, 100)
    desk.level(ATL, 100)
    inside = T0 + timedelta(hours=2)
    decision = desk.order("SO-1", 10, at=inside).decision("SO-1")
    assert (decision.rule, placed(decision)) == ("fallback-rank-2", {ATL: 10})
    assert rejected(decision)[NJ] is ReasonCode.NODE_EXCLUDED
    assert available(decision)[NJ] == 0
    # Midwest orders may still use DC-NJ (their rank 2): the exclusion lists northeast only.
    desk.level(CHI, 0)
    decision = desk.order("SO-2", 10, region="midwest", at=inside).decision("SO-2")
    assert (decision.rule, placed(decision)) == ("fallback-rank-2", {NJ: 10})
    # Outside the window (start inclusive, end exclusive) DC-NJ is the home node again.
    before = desk.order("SO-3", 10, at=T0 + timedelta(minutes=59)).decision("SO-3")
    assert placed(before) == {NJ: 10}
    at_end = desk.order("SO-4", 10, at=T0 + timedelta(hours=5)).decision("SO-4")
    assert placed(at_end) == {NJ: 10}
    at_start = desk.order("SO-5", 10, at=T0 + timedelta(hours=1)).decision("SO-5")
    assert placed(at_start) == {ATL: 10}


def test_stock_only_at_an_excluded_node_is_node_excluded() -> None:
    desk = Desk(with_policy(sourcing=POLICY.sourcing.model_copy(update={"exclusions": [FLOOD]})))
    desk.level(NJ, 100)
    out = desk.order("SO-1", 10, at=T0 + timedelta(hours=2))
    decision = out.decision("SO-1")
    assert decision.outcome is DecisionOutcome.BACKORDERED
    assert decision.reason_code is ReasonCode.NODE_EXCLUDED
    assert "excluded" in decision.explanation
    assert [e.reason_code for e in out.exceptions] == [ReasonCode.NODE_EXCLUDED]


# --- all or nothing, stockouts ----------------------------------------------------------


def test_all_or_nothing_backorders_a_line_it_cannot_fill_in_full() -> None:
    desk = Desk(with_policy(backorders=BackorderRule(allow_partial=False)))
    desk.level(NJ, 10)
    out = desk.order("SO-1", 20)
    decision = out.decision("SO-1")
    assert decision.outcome is DecisionOutcome.BACKORDERED
    assert decision.rule == "all-or-nothing"
    assert placed(decision) == {}
    assert decision.backordered_qty == 20
    # Not a split problem: the only node with stock has too little.
    assert decision.reason_code is ReasonCode.PARTIAL_FILL
    assert rejected(decision)[NJ] is ReasonCode.PARTIAL_FILL
    assert available(decision)[NJ] == 10
    assert desk.stock(NJ).allocated == {}

    decision = desk.receive(NJ, 10).decision("SO-1")
    assert (decision.rule, decision.outcome) == ("backorder:home-node", DecisionOutcome.ALLOCATED)
    assert placed(decision) == {NJ: 20}


def test_all_or_nothing_still_splits_when_the_split_fills_the_line() -> None:
    desk = Desk(with_policy(backorders=BackorderRule(allow_partial=False)))
    desk.level(NJ, 10)
    desk.level(ATL, 10)
    decision = desk.order("SO-1", 20).decision("SO-1")
    assert (decision.outcome, placed(decision)) == (DecisionOutcome.ALLOCATED, {NJ: 10, ATL: 10})


def test_all_or_nothing_blocked_by_the_split_rules_is_split_required() -> None:
    split = SplitRule(allowed=False, max_nodes_per_line=1, max_nodes_per_order=1)
    desk = Desk(with_policy(split=split, backorders=BackorderRule(allow_partial=False)))
    desk.level(NJ, 10)
    desk.level(ATL, 10)
    decision = desk.order("SO-1", 20).decision("SO-1")
    assert decision.outcome is DecisionOutcome.BACKORDERED
    assert decision.reason_code is ReasonCode.SPLIT_REQUIRED
    assert rejected(decision) == {
        NJ: ReasonCode.PARTIAL_FILL,
        ATL: ReasonCode.SPLIT_REQUIRED,
        CHI: ReasonCode.STOCKOUT,
        DAL: ReasonCode.STOCKOUT,
    }


@pytest.mark.parametrize(
    ("tier", "severity"), [("platinum", Severity.CRITICAL), ("silver", Severity.WARNING)]
)
def test_a_stockout_backorders_the_line_and_opens_a_stockout(tier: str, severity: Severity) -> None:
    desk = Desk()
    out = desk.order("SO-1", 10, tier=tier)
    decision = out.decision("SO-1")
    assert decision.outcome is DecisionOutcome.BACKORDERED
    assert (decision.rule, decision.reason_code) == ("no-supply", ReasonCode.STOCKOUT)
    assert set(rejected(decision).values()) == {ReasonCode.STOCKOUT}
    assert decision.explanation.startswith("Backordered")
    assert "nothing of 10 ordered, 10 waiting" in decision.explanation
    assert "no node it may use has stock" in decision.explanation
    [exception] = out.exceptions
    assert exception.reason_code is ReasonCode.STOCKOUT
    assert exception.state is ExceptionState.OPEN
    assert (exception.severity, exception.owner_role) == (severity, OwnerRole.PLANNER)
    assert exception.opened_at == decision.decided_at
    assert SKU in exception.detail


# --- backorders -------------------------------------------------------------------------


def test_a_receipt_serves_backorders_by_tier_then_channel_then_age() -> None:
    desk = Desk()
    desk.apply(InboundUpdate(desk.cause(), SKU, NJ, "PO-1", 35, T0 + timedelta(days=2)))
    desk.order("SO-1", 10, tier="bronze")
    desk.order("SO-2", 10, tier="gold")
    desk.order("SO-3", 10, tier="gold", channel=Channel.EDI)
    desk.order("SO-4", 10, tier="platinum")
    desk.order("SO-5", 10, tier="gold")
    desk.order("SO-6", 10, tier="silver", channel=Channel.SALES)
    out = desk.receive(NJ, 35, po_id="PO-1")
    # Platinum first; then gold EDI (weight 1.2) before gold web (1.0); the older gold
    # web order before the newer; 35 units run out before silver and bronze.
    assert out.order() == ["SO-4", "SO-3", "SO-2", "SO-5"]
    assert [d.rule for d in out.decisions] == ["backorder:home-node"] * 4
    assert [placed(d) for d in out.decisions] == [{NJ: 10}, {NJ: 10}, {NJ: 10}, {NJ: 5}]
    assert out.decision("SO-5").outcome is DecisionOutcome.PARTIAL
    assert out.decision("SO-5").reason_code is ReasonCode.PARTIAL_FILL
    assert desk.line("SO-6").committed == desk.line("SO-1").committed == 0
    assert desk.stock(NJ).inbound == {}
    closed = [e for e in out.exceptions if e.state is ExceptionState.CLOSED]
    assert {(e.order_id, e.resolution) for e in closed} >= {
        ("SO-4", "allocated in full"),
        ("SO-3", "allocated in full"),
        ("SO-2", "allocated in full"),
    }
    assert out.exception_states("SO-5") == {
        ReasonCode.STOCKOUT: ExceptionState.CLOSED,
        ReasonCode.PARTIAL_FILL: ExceptionState.OPEN,
    }


def test_a_cancellation_releases_stock_to_a_waiting_line_and_closes_its_exceptions() -> None:
    desk = Desk()
    desk.level(NJ, 10)
    first = desk.order("SO-1", 15, approvals=(ReasonCode.APPROVAL_REQUIRED,))
    assert first.exception_states("SO-1") == {
        ReasonCode.APPROVAL_REQUIRED: ExceptionState.OPEN,
        ReasonCode.PARTIAL_FILL: ExceptionState.OPEN,
    }
    desk.order("SO-2", 6)
    out = desk.cancel("SO-1")
    assert out.order() == ["SO-1", "SO-2"]
    cancelled = out.decision("SO-1")
    assert cancelled.outcome is DecisionOutcome.CANCELLED
    assert (cancelled.rule, cancelled.reason_code) == (
        "order-cancelled",
        ReasonCode.ORDER_CANCELLED,
    )
    assert (cancelled.allocated_qty, cancelled.backordered_qty) == (0, 0)
    served = out.decision("SO-2")
    assert (served.rule, served.outcome) == ("backorder:home-node", DecisionOutcome.ALLOCATED)
    assert placed(served) == {NJ: 6}
    closes = {
        (e.order_id, e.reason_code): e.resolution
        for e in out.exceptions
        if e.state is ExceptionState.CLOSED
    }
    assert closes == {
        ("SO-1", ReasonCode.APPROVAL_REQUIRED): "order cancelled",
        ("SO-1", ReasonCode.PARTIAL_FILL): "order cancelled",
        ("SO-2", ReasonCode.STOCKOUT): "allocated in full",
    }
    assert desk.stock(NJ).allocated == {("SO-2", "1"): 6}
    assert "SO-1" not in desk.shard.orders
    assert desk.cancel("SO-1").records == []


# --- order changes ------------------------------------------------------------------------


def test_resizing_down_releases_the_lowest_ranked_node_first_and_serves_a_backorder() -> None:
    desk = Desk()
    desk.level(NJ, 90)
    desk.level(ATL, 50)
    assert placed(desk.order("SO-1", 100).decision("SO-1")) == {NJ: 90, ATL: 10}
    waiting = desk.order("SO-2", 45, region="southeast").decision("SO-2")
    assert (placed(waiting), waiting.backordered_qty) == ({ATL: 40}, 5)

    out = desk.resize("SO-1", 90)
    assert out.order() == ["SO-1", "SO-2"]
    resized = out.decision("SO-1")
    assert (resized.rule, resized.outcome) == ("order-change", DecisionOutcome.ALLOCATED)
    assert placed(resized) == {NJ: 90}
    served = out.decision("SO-2")
    assert (served.rule, placed(served)) == ("backorder:home-node", {ATL: 45})
    assert desk.stock(ATL).allocated == {("SO-2", "1"): 45}


def test_resizing_up_allocates_more() -> None:
    desk = Desk()
    desk.level(NJ, 100)
    desk.order("SO-1", 10)
    decision = desk.resize("SO-1", 30).decision("SO-1")
    assert (decision.rule, decision.outcome) == (
        "order-change:home-node",
        DecisionOutcome.ALLOCATED,
    )
    assert placed(decision) == {NJ: 30}
    decision = desk.resize("SO-1", 120).decision("SO-1")
    assert decision.outcome is DecisionOutcome.PARTIAL
    assert (placed(decision), decision.backordered_qty) == ({NJ: 100}, 20)
    assert decision.reason_code is ReasonCode.PARTIAL_FILL


def test_a_line_changed_twice_in_one_event_gets_distinct_decision_ids() -> None:
    # One order.changed event shrinks two lines of the same SKU: each change frees stock
    # for the same waiting line, which gets a decision per change, each with its own id.
    desk = Desk()
    desk.level(NJ, 20)
    desk.order("SO-1", 10, line_id="1")
    desk.order("SO-1", 10, line_id="2")
    desk.order("SO-2", 10)
    event = OrderChanged(
        event_id="evt-change",
        event_time=T0 + timedelta(hours=1),
        source=Source.ERP,
        order_id="SO-1",
        changes=[
            LineChange(line_id="1", sku=SKU, qty=5),
            LineChange(line_id="2", sku=SKU, qty=5),
        ],
    )
    records = [r for _, command in route(event, POLICY, 1) for r in desk.shard.apply(command)]
    served = [d for d in Outputs(records).decisions if d.order_id == "SO-2"]
    assert [(d.outcome, d.allocated_qty) for d in served] == [
        (DecisionOutcome.PARTIAL, 5),
        (DecisionOutcome.ALLOCATED, 10),
    ]
    ids = [d.decision_id for d in Outputs(records).decisions]
    assert len(set(ids)) == len(ids) == 4
    assert {d.cause_event_id for d in served} == {"evt-change"}


# --- credit holds -----------------------------------------------------------------------


def test_a_held_customer_gets_held_lines_until_the_release_allocates_them() -> None:
    desk = Desk()
    desk.level(NJ, 100)
    assert desk.hold("CUST-A").records == []
    out = desk.order("SO-1", 10, customer="CUST-A")
    decision = out.decision("SO-1")
    assert decision.outcome is DecisionOutcome.HELD
    assert (decision.rule, decision.reason_code) == ("credit-hold", ReasonCode.CREDIT_HOLD)
    assert (decision.allocated_qty, decision.backordered_qty, decision.candidates) == (0, 10, [])
    [exception] = out.exceptions
    assert (exception.reason_code, exception.owner_role, exception.state) == (
        ReasonCode.CREDIT_HOLD,
        OwnerRole.CREDIT_CONTROLLER,
        ExceptionState.OPEN,
    )
    assert desk.stock(NJ).allocated == {}
    # Supply arriving does not allocate a held line.
    assert desk.receive(NJ, 5).decisions == []

    out = desk.hold("CUST-A", held=False)
    decision = out.decision("SO-1")
    assert (decision.rule, decision.outcome) == (
        "credit-release:home-node",
        DecisionOutcome.ALLOCATED,
    )
    assert placed(decision) == {NJ: 10}
    [closed] = out.exceptions
    assert (closed.reason_code, closed.state, closed.exception_id) == (
        ReasonCode.CREDIT_HOLD,
        ExceptionState.CLOSED,
        exception.exception_id,
    )
    assert closed.closed_at == decision.decided_at


def test_a_hold_on_a_waiting_line_holds_it_and_a_hold_on_an_allocated_line_keeps_it() -> None:
    desk = Desk()
    desk.level(NJ, 10)
    desk.order("SO-1", 10, customer="CUST-A")
    desk.order("SO-2", 5, customer="CUST-A")
    out = desk.hold("CUST-A")
    assert out.order() == ["SO-2"]
    held = out.decision("SO-2")
    assert (held.outcome, held.rule) == (DecisionOutcome.HELD, "credit-hold")
    closes = {e.reason_code: e.resolution for e in out.exceptions if e.state == "closed"}
    assert closes == {ReasonCode.STOCKOUT: "customer put on credit hold"}
    assert desk.stock(NJ).allocated == {("SO-1", "1"): 10}
    # Stock freed while the line is held goes to nobody; the release takes it.
    assert desk.resize("SO-1", 4).order() == ["SO-1"]
    released = desk.hold("CUST-A", held=False).decision("SO-2")
    assert (released.outcome, placed(released)) == (DecisionOutcome.ALLOCATED, {NJ: 5})


# --- supply drops -----------------------------------------------------------------------


def test_a_lower_stock_level_deallocates_the_lowest_priority_newest_line_first() -> None:
    desk = Desk()
    desk.level(NJ, 100)
    desk.order("SO-1", 30, tier="gold")
    desk.order("SO-2", 20, tier="bronze")
    desk.order("SO-3", 20, tier="bronze")
    out = desk.level(NJ, 40)
    assert out.order() == ["SO-3", "SO-2"]
    newest = out.decision("SO-3")
    assert (newest.rule, newest.outcome) == ("supply-shortfall", DecisionOutcome.BACKORDERED)
    assert newest.reason_code is ReasonCode.STOCKOUT
    older = out.decision("SO-2")
    assert (older.outcome, placed(older)) == (DecisionOutcome.PARTIAL, {NJ: 10})
    assert desk.stock(NJ).allocated == {("SO-1", "1"): 30, ("SO-2", "1"): 10}


def test_a_reservation_takes_supply_and_its_release_gives_it_back() -> None:
    desk = Desk()
    desk.level(NJ, 100)
    desk.order("SO-1", 30, tier="gold")
    desk.order("SO-2", 20, tier="bronze")
    desk.order("SO-3", 20, tier="bronze")
    out = desk.reserve(NJ, "RES-1", 40)
    assert out.order() == ["SO-3"]
    assert placed(out.decision("SO-3")) == {NJ: 10}
    out = desk.reserve(NJ, "RES-1", None)
    served = out.decision("SO-3")
    assert (served.rule, placed(served)) == ("backorder:home-node", {NJ: 20})


# --- shipments ----------------------------------------------------------------------------


def test_a_shipment_from_the_allocated_node_consumes_the_allocation_silently() -> None:
    desk = Desk()
    desk.level(NJ, 100)
    desk.order("SO-1", 10, approvals=(ReasonCode.APPROVAL_REQUIRED,))
    out = desk.ship("SO-1", NJ, 4)
    assert out.decisions == []
    [closed] = out.exceptions
    assert (closed.reason_code, closed.state, closed.resolution) == (
        ReasonCode.APPROVAL_REQUIRED,
        ExceptionState.CLOSED,
        "line shipped",
    )
    assert desk.stock(NJ).on_hand == 96
    assert desk.stock(NJ).allocated == {("SO-1", "1"): 6}
    assert desk.line("SO-1").shipped == {NJ: 4}

    out = desk.ship("SO-1", NJ, 6)
    assert out.records == []
    assert desk.stock(NJ).allocated == {}
    assert ("SO-1", "1") not in desk.shard.books[SKU].lines
    assert "SO-1" not in desk.shard.orders


def test_a_shipment_from_another_node_repoints_the_line_and_frees_its_allocation() -> None:
    desk = Desk()
    desk.level(NJ, 10)
    desk.level(RNO, 50)
    desk.order("SO-1", 10, approvals=(ReasonCode.APPROVAL_REQUIRED,))
    desk.order("SO-2", 10)
    out = desk.ship("SO-1", RNO, 10)
    assert out.order() == ["SO-1", "SO-2"]
    shipped = out.decision("SO-1")
    assert (shipped.rule, shipped.outcome) == ("warehouse-shipment", DecisionOutcome.ALLOCATED)
    assert placed(shipped) == {RNO: 10}
    assert shipped.candidates == []
    served = out.decision("SO-2")
    assert (served.rule, placed(served)) == ("backorder:home-node", {NJ: 10})
    closes = {(e.order_id, e.reason_code, e.resolution) for e in out.exceptions if e.closed_at}
    assert closes == {
        ("SO-1", ReasonCode.APPROVAL_REQUIRED, "line shipped"),
        ("SO-2", ReasonCode.STOCKOUT, "allocated in full"),
    }
    assert desk.stock(RNO).on_hand == 40


def test_a_line_shipped_beyond_its_quantity_reports_what_shipped() -> None:
    # A warehouse may ship more than the order line asks for (over-delivery); the
    # decision must still be a valid record (allocated + backordered == requested).
    desk = Desk()
    desk.level(NJ, 100)
    desk.order("SO-1", 10)
    desk.order("SO-1", 10, line_id="2")
    desk.ship("SO-1", NJ, 4)
    decision = desk.resize("SO-1", 2).decision("SO-1")
    assert (decision.requested_qty, decision.allocated_qty, decision.backordered_qty) == (4, 4, 0)
    decision = desk.ship("SO-1", ATL, 12, line_id="2").decision("SO-1", "2")
    assert (decision.requested_qty, decision.allocated_qty) == (12, 12)
    assert placed(decision) == {ATL: 12}


# --- short shipments ------------------------------------------------------------------------


def _event_time(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


def _stock_event(node: str, on_hand: int, sku: str = SKU) -> StockSnapshot:
    return StockSnapshot(
        event_id=f"evt-stock-{node}-{sku}",
        event_time=_event_time(0),
        source=Source.WMS,
        node_id=node,
        sku=sku,
        on_hand=on_hand,
    )


def _shipment_event(shipment: str, node: str, lines: dict[str, int], minute: int) -> EventEnvelope:
    return ShipmentCreated(
        event_id=f"evt-{shipment}",
        event_time=_event_time(minute),
        source=Source.TMS,
        shipment_id=shipment,
        order_id="SO-1",
        node_id=node,
        carrier_id="CARR-1",
        lane=f"{node}>northeast",
        dispatch_cutoff=_event_time(minute + 60),
        promised_delivery=_event_time(minute + 3000),
        lines=[ShipmentLine(line_id=line, sku=SKU, qty=qty) for line, qty in lines.items()],
    )


def _short_event(shipment: str, lines: dict[str, int], minute: int) -> EventEnvelope:
    return ShipmentShortShipped(
        event_id=f"evt-{shipment}-short-{minute}",
        event_time=_event_time(minute),
        source=Source.WMS,
        shipment_id=shipment,
        order_id="SO-1",
        lines=[ShortLine(line_id=line, sku=SKU, qty_short=qty) for line, qty in lines.items()],
    )


def _latest(records: list[ShardOutput | OrderStatus]) -> AllocationDecision:
    return [r for r in records if isinstance(r, AllocationDecision)][-1]


def _status(records: list[ShardOutput | OrderStatus]) -> OrderStatus:
    return max((r for r in records if isinstance(r, OrderStatus)), key=lambda r: r.version)


def test_a_line_shipped_one_unit_short_shows_it_and_opens_a_logistics_exception() -> None:
    # The issue's case: 30 ordered, 30 allocated and shipped, 1 reported short at pick.
    events = [
        _stock_event(NJ, 100),
        _placed([_line("1", 30, 10.0, 5.0)]),
        _shipment_event("SH-1", NJ, {"1": 30}, minute=10),
        _short_event("SH-1", {"1": 1}, minute=12),
    ]
    records = list(allocate_stream(events, POLICY))
    decision = _latest(records)
    assert (decision.cause_event_id, decision.rule, decision.outcome, decision.reason_code) == (
        "evt-SH-1-short-12",
        "short-shipment",
        DecisionOutcome.SHORT_SHIPPED,
        ReasonCode.SHORT_SHIPPED,
    )
    assert (
        decision.requested_qty,
        decision.allocated_qty,
        decision.backordered_qty,
        decision.short_shipped_qty,
    ) == (30, 29, 1, 1)
    assert placed(decision) == {NJ: 29}
    assert "1 shipped short" in decision.explanation
    [opened] = [
        r for r in records if isinstance(r, AllocationException) and r.cause_event_id.endswith("12")
    ]
    assert (opened.state, opened.reason_code, opened.owner_role, opened.severity) == (
        ExceptionState.OPEN,
        ReasonCode.SHORT_SHIPPED,
        OwnerRole.LOGISTICS,
        Severity.WARNING,
    )
    assert "1 of 30 shipped short" in opened.detail
    status = _status(records)
    assert (status.status, status.lines_short_shipped, status.short_shipped_qty) == (
        OrderStatusKind.SHORT_SHIPPED,
        1,
        1,
    )
    assert (status.requested_qty, status.allocated_qty) == (30, 29)


def test_a_re_shipment_of_the_short_units_closes_the_exception() -> None:
    desk = Desk()
    desk.level(NJ, 100)
    desk.order("SO-1", 30)
    desk.ship("SO-1", NJ, 30)
    assert ("SO-1", "1") not in desk.shard.books[SKU].lines  # shipped in full: finished
    desk.short("SO-1", 2)
    assert desk.line("SO-1").short_outstanding == 2
    out = desk.ship("SO-1", NJ, 1, shipment="SH-2")
    assert (out.decision("SO-1").outcome, out.decision("SO-1").short_shipped_qty) == (
        DecisionOutcome.SHORT_SHIPPED,
        1,
    )
    assert out.exceptions == []
    out = desk.ship("SO-1", NJ, 1, shipment="SH-3")
    decision = out.decision("SO-1")
    assert (decision.outcome, decision.allocated_qty, decision.short_shipped_qty) == (
        DecisionOutcome.ALLOCATED,
        30,
        0,
    )
    [closed] = out.exceptions
    assert (closed.reason_code, closed.state, closed.resolution) == (
        ReasonCode.SHORT_SHIPPED,
        ExceptionState.CLOSED,
        "short units re-shipped",
    )
    assert ("SO-1", "1") not in desk.shard.books[SKU].lines


def test_a_cancellation_or_a_smaller_order_closes_a_short_shipment_exception() -> None:
    desk = Desk()
    desk.level(NJ, 100)
    desk.order("SO-1", 30)
    desk.order("SO-2", 30)
    desk.ship("SO-1", NJ, 20)
    desk.short("SO-1", 1)
    desk.ship("SO-2", NJ, 30)
    desk.short("SO-2", 3)
    closed = desk.cancel("SO-1").exception_states("SO-1")
    assert closed == {ReasonCode.SHORT_SHIPPED: ExceptionState.CLOSED}
    out = desk.resize("SO-2", 27)
    assert out.decision("SO-2").outcome is DecisionOutcome.ALLOCATED
    [resolved] = out.exceptions
    assert (resolved.reason_code, resolved.resolution) == (
        ReasonCode.SHORT_SHIPPED,
        "ordered quantity reduced",
    )


def test_short_units_are_not_re_allocated_and_do_not_hide_other_waiting_units() -> None:
    desk = Desk()
    desk.level(NJ, 30)
    desk.order("SO-1", 40)  # 30 allocated, 10 waiting
    desk.ship("SO-1", NJ, 30)
    decision = desk.short("SO-1", 2).decision("SO-1")
    assert (decision.outcome, decision.reason_code) == (
        DecisionOutcome.SHORT_SHIPPED,
        ReasonCode.SHORT_SHIPPED,
    )
    assert (decision.allocated_qty, decision.backordered_qty, decision.short_shipped_qty) == (
        28,
        12,
        2,
    )
    assert set(desk.line("SO-1").open_exceptions) == {
        ReasonCode.PARTIAL_FILL,
        ReasonCode.SHORT_SHIPPED,
    }
    out = desk.receive(NJ, 50)
    decision = out.decision("SO-1")  # only the 10 waiting units are allocated
    assert (decision.allocated_qty, decision.short_shipped_qty) == (38, 2)
    assert desk.stock(NJ).allocated == {("SO-1", "1"): 10}


def test_a_short_report_counts_only_what_the_shipment_carried_of_the_line() -> None:
    desk = Desk()
    desk.level(NJ, 100)
    desk.order("SO-1", 10)
    desk.order("SO-1", 10, line_id="2")
    desk.ship("SO-1", NJ, 10)
    assert desk.short("SO-1", 5, line_id="2").records == []  # SH-1 did not carry line 2
    assert desk.short("SO-1", 4, shipment="SH-9").records == []  # unknown shipment
    assert desk.short("SO-1", 25).decision("SO-1").short_shipped_qty == 10
    assert desk.short("SO-1", 1).records == []  # nothing of SH-1 left to be short
    assert desk.stock(NJ).on_hand == 90  # the goods issue stands: a WMS count corrects it


def test_a_short_report_long_after_the_line_finished_is_not_booked() -> None:
    desk = Desk()
    desk.level(NJ, 100)
    desk.order("SO-1", 10)
    desk.ship("SO-1", NJ, 10)
    late = T0 + FINISHED_LINE_RETENTION + timedelta(hours=1)
    desk.order("SO-2", 10, at=late)
    desk.ship("SO-2", NJ, 10, shipment="SH-2", at=late)  # forgets lines finished before
    assert desk.short("SO-1", 1, at=late).records == []
    assert desk.short("SO-2", 1, shipment="SH-2", at=late).decision("SO-2").short_shipped_qty == 1


def test_a_line_a_short_shipment_reopens_is_held_while_its_customer_is() -> None:
    desk = Desk()
    desk.level(NJ, 100)
    desk.order("SO-1", 10, customer="CUST-A")
    desk.ship("SO-1", NJ, 10)  # shipped in full: the line is finished
    desk.hold("CUST-A")
    desk.short("SO-1", 1)
    line = desk.shard.books["SKU-1"].lines[("SO-1", "1")]
    assert line.held
    desk.hold("CUST-A", held=False)
    assert not line.held


# --- the order's node limit ----------------------------------------------------------------


def _allocate_order(desk: Desk, lines: list[OrderLine]) -> Outputs:
    """Route an order.placed (gold, northeast: NJ, ATL, CHI, DAL) and apply its lines."""
    return Outputs([r for request in _requests(_placed(lines)) for r in desk.shard.apply(request)])


def test_the_lines_of_an_order_together_use_at_most_max_nodes_per_order_nodes() -> None:
    desk = Desk()
    desk.level(NJ, 20)
    desk.level(ATL, 30)
    desk.level(CHI, 20, sku="SKU-2")
    desk.level(DAL, 30, sku="SKU-2")
    out = _allocate_order(desk, [_line("1", 30, 10.0, 5.0), _line("2", 30, 10.0, 5.0, "SKU-2")])
    first, second = out.decision("SO-1", "1"), out.decision("SO-1", "2")
    assert set(placed(first)) == {NJ, ATL}
    # Line 2 alone would take CHI and DAL: the order would ship from four nodes.
    assert set(placed(second)) == {CHI}
    assert (second.outcome, second.reason_code) == (
        DecisionOutcome.PARTIAL,
        ReasonCode.SPLIT_REQUIRED,
    )
    assert rejected(second)[DAL] is ReasonCode.SPLIT_REQUIRED
    assert available(second)[DAL] > 0
    assert "max_nodes_per_order 3" in second.explanation
    assert "first 3 ranked nodes, not DC-DAL" in second.explanation
    assert {e.reason_code for e in out.exceptions} == {ReasonCode.SPLIT_REQUIRED}


def test_an_order_that_cannot_reach_the_limit_may_use_every_ranked_node() -> None:
    desk = Desk()
    desk.level(DAL, 100)
    desk.level(DAL, 100, sku="SKU-2")
    single = _allocate_order(desk, [_line("1", 10, 10.0, 5.0)]).decision("SO-1")
    assert (single.rule, placed(single)) == ("fallback-rank-4", {DAL: 10})
    desk = Desk()
    desk.level(DAL, 100)
    desk.level(DAL, 100, sku="SKU-2")
    out = _allocate_order(desk, [_line("1", 10, 10.0, 5.0), _line("2", 10, 10.0, 5.0, "SKU-2")])
    # Two lines of two nodes each could reach four: both stay within the first three ranks.
    for line_id in ("1", "2"):
        decision = out.decision("SO-1", line_id)
        assert (decision.outcome, decision.reason_code) == (
            DecisionOutcome.BACKORDERED,
            ReasonCode.SPLIT_REQUIRED,
        )


def test_backorders_served_later_keep_to_the_order_limit() -> None:
    desk = Desk()
    out = _allocate_order(desk, [_line("1", 10, 10.0, 5.0), _line("2", 10, 10.0, 5.0)])
    assert {d.outcome for d in out.decisions} == {DecisionOutcome.BACKORDERED}
    assert desk.receive(DAL, 100).decisions == []  # rank 4: beyond the order's limit
    served = desk.receive(CHI, 100).decisions
    assert [placed(d) for d in served] == [{CHI: 10}, {CHI: 10}]


@pytest.mark.parametrize(
    ("split", "lines", "max_rank"),
    [
        (SplitRule(max_nodes_per_line=2, max_nodes_per_order=3), 1, None),
        (SplitRule(max_nodes_per_line=2, max_nodes_per_order=3), 2, 3),
        (SplitRule(max_nodes_per_line=2, max_nodes_per_order=4), 2, None),
        (SplitRule(max_nodes_per_line=2, max_nodes_per_order=4), 3, 4),
        (SplitRule(allowed=False, max_nodes_per_line=1, max_nodes_per_order=1), 1, None),
        (SplitRule(allowed=False, max_nodes_per_line=1, max_nodes_per_order=1), 2, 1),
    ],
)
def test_an_order_is_limited_to_its_first_ranks_only_when_its_lines_could_exceed_the_limit(
    split: SplitRule, lines: int, max_rank: int | None
) -> None:
    assert order_max_rank(with_policy(split=split), lines) == max_rank


# --- de-duplication, approvals, ids ------------------------------------------------------


def test_a_redelivered_command_is_ignored() -> None:
    desk = Desk()
    receipt = StockChange(desk.cause(), SKU, NJ, 10)
    assert desk.apply(receipt).records == []
    assert desk.apply(receipt).records == []
    assert desk.stock(NJ).on_hand == 10
    request = LineRequest(
        desk.cause(), "SO-1", "1", SKU, 4, "CUST-1", "platinum", 1, 1.0, "northeast", T0
    )
    assert len(desk.apply(request).decisions) == 1
    assert desk.apply(request).records == []
    assert desk.stock(NJ).allocated == {("SO-1", "1"): 4}


def _placed(lines: list[OrderLine], event_id: str = "evt-order") -> OrderPlaced:
    return OrderPlaced(
        event_id=event_id,
        event_time=T0,
        source=Source.ERP,
        order_id="SO-1",
        customer_id="CUST-1",
        customer_tier="gold",
        channel=Channel.EDI,
        region="northeast",
        promised_date=T0 + timedelta(days=3),
        lines=lines,
    )


def _line(line_id: str, qty: int, price: float, cost: float, sku: str = SKU) -> OrderLine:
    return OrderLine(line_id=line_id, sku=sku, qty=qty, unit_price=price, unit_cost=cost)


def _requests(event: EventEnvelope) -> list[LineRequest]:
    commands = [command for _, command in route(event, POLICY, 1)]
    assert all(isinstance(command, LineRequest) for command in commands)
    return [command for command in commands if isinstance(command, LineRequest)]


def test_approval_thresholds_open_approver_exceptions_without_blocking_allocation() -> None:
    desk = Desk()
    desk.level(NJ, 500)
    desk.level(NJ, 500, sku="SKU-2")
    # 90 x 300 + 20 x 5 = 27 100 > 25 000; line 2 sells below cost.
    event = _placed([_line("1", 90, 300.0, 200.0), _line("2", 20, 5.0, 8.0, sku="SKU-2")])
    requests = _requests(event)
    assert [r.approvals for r in requests] == [
        (ReasonCode.APPROVAL_REQUIRED,),
        (ReasonCode.APPROVAL_REQUIRED, ReasonCode.BELOW_MARGIN),
    ]
    assert [(r.priority, r.channel_weight) for r in requests] == [(2, 1.2), (2, 1.2)]
    out = Outputs([r for request in requests for r in desk.shard.apply(request)])
    assert [d.outcome for d in out.decisions] == [DecisionOutcome.ALLOCATED] * 2
    opened = {(e.line_id, e.reason_code): (e.owner_role, e.severity) for e in out.exceptions}
    assert opened == {
        ("1", ReasonCode.APPROVAL_REQUIRED): (OwnerRole.APPROVER, Severity.INFO),
        ("2", ReasonCode.APPROVAL_REQUIRED): (OwnerRole.APPROVER, Severity.INFO),
        ("2", ReasonCode.BELOW_MARGIN): (OwnerRole.APPROVER, Severity.WARNING),
    }


@pytest.mark.parametrize(
    ("lines", "approvals"),
    [
        ([_line("1", 100, 250.0, 100.0)], ()),  # exactly 25 000: not above
        ([_line("1", 100, 250.01, 100.0)], (ReasonCode.APPROVAL_REQUIRED,)),
        ([_line("1", 400, 1.0, 0.5)], ()),
        ([_line("1", 401, 1.0, 0.5)], (ReasonCode.APPROVAL_REQUIRED,)),
        ([_line("1", 1, 10.0, 10.0)], ()),  # margin exactly at the floor (0.0)
        ([_line("1", 1, 10.0, 10.01)], (ReasonCode.BELOW_MARGIN,)),
    ],
)
def test_approval_thresholds_are_strict(
    lines: list[OrderLine], approvals: tuple[ReasonCode, ...]
) -> None:
    [request] = _requests(_placed(lines))
    assert request.approvals == approvals


def _script(desk: Desk) -> list[Command]:
    return [
        StockLevel(desk.cause(), SKU, NJ, 10),
        LineRequest(desk.cause(), "SO-1", "1", SKU, 8, "C-1", "gold", 2, 1.0, "northeast", T0),
        LineRequest(desk.cause(), "SO-1", "2", SKU, 8, "C-1", "gold", 2, 1.0, "northeast", T0),
        LineRequest(desk.cause(), "SO-2", "1", SKU, 8, "C-2", "bronze", 4, 1.0, "northeast", T0),
        StockChange(desk.cause(), SKU, NJ, 30),
        LineResize(desk.cause(), "SO-1", "1", SKU, 2),
        OrderCancel(desk.cause(), "SO-1"),
    ]


def test_decision_ids_are_stable_and_distinct_per_line_and_cause() -> None:
    runs = []
    for _ in range(2):
        desk = Desk()
        runs.append([r for command in _script(desk) for r in desk.shard.apply(command)])
    first, second = runs
    assert [r.model_dump() for r in first] == [r.model_dump() for r in second]
    decisions = Outputs(first).decisions
    ids = [d.decision_id for d in decisions]
    assert len(ids) == len(set(ids))
    by_line: dict[tuple[str, str], set[str]] = {}
    for d in decisions:
        by_line.setdefault((d.order_id, d.line_id), set()).add(d.cause_event_id)
    # SO-1/1: its request, its resize, the cancellation; SO-1/2: its request, the
    # receipt that filled it, the cancellation.
    assert by_line[("SO-1", "1")] == {"evt-002", "evt-006", "evt-007"}
    assert by_line[("SO-1", "2")] == {"evt-003", "evt-005", "evt-007"}
    assert by_line[("SO-2", "1")] == {"evt-004", "evt-005"}
    record_ids = [e.record_id for e in Outputs(first).exceptions]
    assert len(record_ids) == len(set(record_ids))


# --- order rollup --------------------------------------------------------------------------


def _decision(
    line_id: str,
    outcome: DecisionOutcome,
    allocations: dict[str, int],
    *,
    minute: int,
    requested: int = 10,
    event: str | None = None,
) -> AllocationDecision:
    allocated = sum(allocations.values())
    cancelled = outcome is DecisionOutcome.CANCELLED
    reasons = {
        DecisionOutcome.ALLOCATED: None,
        DecisionOutcome.PARTIAL: ReasonCode.PARTIAL_FILL,
        DecisionOutcome.BACKORDERED: ReasonCode.STOCKOUT,
        DecisionOutcome.HELD: ReasonCode.CREDIT_HOLD,
        DecisionOutcome.CANCELLED: ReasonCode.ORDER_CANCELLED,
    }
    event_id = event or f"evt-{line_id}-{minute}"
    return AllocationDecision(
        decision_id=f"dec-{line_id}-{event_id}",
        order_id="SO-1",
        line_id=line_id,
        sku=SKU,
        customer_id="CUST-1",
        decided_at=T0 + timedelta(minutes=minute),
        cause_event_id=event_id,
        policy_version=POLICY.policy_version,
        rule="test",
        outcome=outcome,
        requested_qty=requested,
        allocated_qty=allocated,
        backordered_qty=0 if cancelled else requested - allocated,
        allocations=[NodeAllocation(node_id=n, qty=q) for n, q in allocations.items()],
        reason_code=reasons[outcome],
        explanation="test",
    )


def test_the_rollup_derives_the_order_status_from_the_latest_line_decisions() -> None:
    rollup = OrderRollup()
    first = rollup.apply(_decision("1", DecisionOutcome.ALLOCATED, {NJ: 10}, minute=1))
    assert first is not None
    assert (first.status, first.version, first.lines, first.split_count) == (
        OrderStatusKind.ALLOCATED,
        1,
        1,
        1,
    )
    status = rollup.apply(_decision("2", DecisionOutcome.BACKORDERED, {}, minute=2))
    assert status is not None
    assert (status.status, status.version, status.lines_backordered) == (
        OrderStatusKind.PARTIAL,
        2,
        1,
    )
    assert (status.requested_qty, status.allocated_qty) == (20, 10)
    status = rollup.apply(_decision("2", DecisionOutcome.ALLOCATED, {ATL: 6, CHI: 4}, minute=3))
    assert status is not None
    assert (status.status, status.nodes, status.split_count) == (
        OrderStatusKind.ALLOCATED,
        [ATL, CHI, NJ],
        3,
    )
    status = rollup.apply(_decision("1", DecisionOutcome.HELD, {}, minute=4))
    assert status is not None
    assert (status.status, status.lines_held, status.version) == (OrderStatusKind.HELD, 1, 4)
    assert status.as_of == T0 + timedelta(minutes=4)
    rollup.apply(_decision("1", DecisionOutcome.CANCELLED, {}, minute=5))
    status = rollup.apply(_decision("2", DecisionOutcome.CANCELLED, {}, minute=5))
    assert status is not None
    assert (status.status, status.lines_cancelled, status.requested_qty) == (
        OrderStatusKind.CANCELLED,
        2,
        0,
    )
    assert (status.nodes, status.split_count, status.version) == ([], 0, 6)


def test_the_rollup_is_partial_or_backordered_by_its_lines() -> None:
    rollup = OrderRollup()
    status = rollup.apply(_decision("1", DecisionOutcome.BACKORDERED, {}, minute=1))
    assert status is not None
    assert status.status is OrderStatusKind.BACKORDERED
    status = rollup.apply(_decision("1", DecisionOutcome.PARTIAL, {NJ: 4}, minute=2))
    assert status is not None
    assert (status.status, status.lines_partial, status.allocated_qty) == (
        OrderStatusKind.PARTIAL,
        1,
        4,
    )


def test_the_rollup_ignores_stale_decisions_and_unchanged_states() -> None:
    rollup = OrderRollup()
    allocated = _decision("1", DecisionOutcome.ALLOCATED, {NJ: 10}, minute=5)
    first = rollup.apply(allocated)
    assert first is not None
    # An older decision of the same line arriving late changes nothing (but is counted).
    assert rollup.apply(_decision("1", DecisionOutcome.BACKORDERED, {}, minute=2)) is None
    # A redelivered decision emits nothing either.
    assert rollup.apply(allocated) is None
    status = rollup.apply(_decision("1", DecisionOutcome.PARTIAL, {NJ: 4}, minute=7))
    assert status is not None
    assert (status.status, status.version, status.as_of) == (
        OrderStatusKind.PARTIAL,
        4,
        T0 + timedelta(minutes=7),
    )
    held = rollup.apply(_decision("2", DecisionOutcome.HELD, {}, minute=8))
    assert held is not None
    assert (held.status, held.version, held.lines) == (OrderStatusKind.HELD, 5, 2)
    assert len({first.record_id, status.record_id, held.record_id}) == 3


@pytest.mark.parametrize("events", [("evt-a", "evt-b"), ("evt-b", "evt-a")])
def test_a_later_decision_at_the_same_event_time_replaces_the_earlier(
    events: tuple[str, str],
) -> None:
    # Two events at the same instant (two shipments of one order, say): the line's
    # decision processed last is its state, whatever the ids.
    rollup = OrderRollup()
    rollup.apply(_decision("1", DecisionOutcome.BACKORDERED, {}, minute=1, event=events[0]))
    status = rollup.apply(
        _decision("1", DecisionOutcome.ALLOCATED, {NJ: 10}, minute=1, event=events[1])
    )
    assert status is not None
    assert status.status is OrderStatusKind.ALLOCATED
