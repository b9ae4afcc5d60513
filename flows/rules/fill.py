"""Planning how much of a line to take from which nodes, and explaining why."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from allocflow.flows.rules.lines import LineState
from allocflow.flows.rules.stock import NodeStock
from allocflow.models.decisions import Candidate
from allocflow.models.policy import Policy
from allocflow.models.vocabulary import ReasonCode

HigherTierAllocated = Callable[[str, int], int]
"""(node_id, priority) → units allocated at the node to lines of a higher priority."""


@dataclass(frozen=True)
class FillPlan:
    """What to take for a line now.

    Attributes:
        takes: Units to allocate, by node.
        candidates: Every node considered, in rank order, with why it was not used.
        rule: The rule that decided (``home-node``, ``fallback-rank-N``, ``split``, …).
        shortfall: Why the line stays short after the takes, if it does.
    """

    takes: dict[str, int]
    candidates: list[Candidate]
    rule: str
    shortfall: ReasonCode | None


@dataclass(frozen=True)
class _Option:
    node_id: str
    rank: int
    atp: int
    available: int
    rejected: ReasonCode | None


def protection_needed(
    policy: Policy, node_id: str, on_hand: int, tier: str, higher_allocated: int
) -> int:
    """Units at a node a line of ``tier`` must leave for higher tiers.

    Protection configured for tiers above the line's, minus what lines of those tiers
    have already been allocated there (their protection is then in use).
    """
    return max(0, policy.protected_qty(node_id, tier, on_hand) - higher_allocated)


def _protection_owed(
    policy: Policy,
    node_id: str,
    on_hand: int,
    line: LineState,
    higher_allocated: HigherTierAllocated,
) -> int:
    """Units at a node a line must leave for every tier above it.

    ``protection_needed`` for the line's own tier nets everything the higher tiers hold
    against everything protected for them; that alone would let a middle tier's
    allocations (gold's) release the share protected for a tier above it (platinum's).
    So the same is computed for each tier above the line too (the protection of the
    tiers above *that* tier against what those tiers hold) and the line leaves the most.
    """
    request = line.request
    owed = protection_needed(
        policy, node_id, on_hand, request.tier, higher_allocated(node_id, request.priority)
    )
    for tier, rule in policy.tiers.items():
        if rule.priority < request.priority:
            held = higher_allocated(node_id, rule.priority)
            owed = max(owed, protection_needed(policy, node_id, on_hand, tier, held))
    return owed


def plan_fill(
    line: LineState,
    stocks: dict[str, NodeStock],
    policy: Policy,
    at: datetime,
    higher_allocated: HigherTierAllocated,
) -> FillPlan:
    """Plan the allocation of a line's waiting units under the policy.

    Home node first, then fallbacks by rank; a single node that can fill the line wins;
    otherwise a split within the policy's limits; what remains waits as a backorder.
    Nodes ranked above the line's ``max_rank`` (the order's node limit) are never used.

    Args:
        line: The line (its waiting units are planned).
        stocks: The SKU's stock by node.
        policy: The allocation policy.
        at: Now, in event time (exclusions and inbound depend on it).
        higher_allocated: Allocations of higher tiers at a node (for protection).

    Returns:
        The plan; empty takes when nothing can be allocated.
    """
    options = _options(line, stocks, policy, at, higher_allocated)
    usable = [option for option in options if option.rejected is None]
    waiting = line.waiting
    planned, rule = _choose(line, _within_order_limit(line, usable), policy, waiting)
    capped = _capped_nodes(line, usable, planned)
    takes = planned
    if sum(planned.values()) < waiting and not policy.backorders.allow_partial:
        takes, rule = {}, "all-or-nothing"
    candidates = [_candidate(option, takes, planned, capped) for option in options]
    shortfall = _shortfall(waiting - sum(takes.values()), planned, candidates, options)
    return FillPlan(takes, candidates, rule, shortfall)


def _options(
    line: LineState,
    stocks: dict[str, NodeStock],
    policy: Policy,
    at: datetime,
    higher_allocated: HigherTierAllocated,
) -> list[_Option]:
    horizon = timedelta(hours=policy.backorders.use_inbound_within_hours)
    options = []
    for node_id, rank, excluded in policy.candidate_nodes(line.request.region, at):
        stock = stocks.get(node_id) or NodeStock()
        atp = stock.atp(at, horizon)
        needed = _protection_owed(policy, node_id, stock.on_hand, line, higher_allocated)
        available = max(0, atp - needed)
        rejected = None
        if excluded:
            rejected = ReasonCode.NODE_EXCLUDED
        elif atp == 0:
            rejected = ReasonCode.STOCKOUT
        elif available == 0:
            rejected = ReasonCode.PROTECTED_STOCK
        options.append(_Option(node_id, rank, atp, 0 if excluded else available, rejected))
    return options


def _within_order_limit(line: LineState, usable: list[_Option]) -> list[_Option]:
    """The usable nodes the order's node limit lets the line use (its first ranks)."""
    limit = line.request.max_rank
    if limit is None:
        return usable
    return [option for option in usable if option.rank <= limit]


def _choose(
    line: LineState, usable: list[_Option], policy: Policy, waiting: int
) -> tuple[dict[str, int], str]:
    if waiting <= 0 or not usable:
        return {}, "no-supply"
    room = policy.split.max_nodes_per_line - len(line.nodes)
    single = next(
        (o for o in usable if o.available >= waiting and _fits(line, o, room, waiting, policy)),
        None,
    )
    if single is not None:
        return {single.node_id: waiting}, _rank_rule(single.rank)
    return _split(line, usable, policy, waiting)


def _fits(line: LineState, option: _Option, room: int, waiting: int, policy: Policy) -> bool:
    """A node the line uses already, or a further one with room and enough units for it."""
    if option.node_id in line.nodes:
        return True
    return room > 0 and (not line.nodes or waiting >= policy.split.min_split_qty)


def _split(
    line: LineState, usable: list[_Option], policy: Policy, waiting: int
) -> tuple[dict[str, int], str]:
    takes: dict[str, int] = {}
    nodes = set(line.nodes)
    for option in usable:
        remaining = waiting - sum(takes.values())
        if remaining == 0:
            break
        new_node = option.node_id not in nodes
        if new_node and len(nodes) >= policy.split.max_nodes_per_line:
            continue
        take = min(option.available, remaining)
        if new_node and nodes and take < policy.split.min_split_qty:
            continue
        takes[option.node_id] = take
        nodes.add(option.node_id)
    if len(nodes) > 1:
        return takes, "split"
    first = next((o for o in usable if o.node_id in takes), None)
    return takes, _rank_rule(first.rank) if first else "no-supply"


def _rank_rule(rank: int) -> str:
    return "home-node" if rank == 1 else f"fallback-rank-{rank}"


def _capped_nodes(line: LineState, usable: list[_Option], takes: dict[str, int]) -> set[str]:
    """Usable nodes left unused although the line is short: the split rules stopped them.

    The split rules here are the line's (``max_nodes_per_line``, ``min_split_qty``) and
    the order's (``max_nodes_per_order``, through the line's ``max_rank``).
    """
    if sum(takes.values()) >= line.waiting:
        return set()
    return {option.node_id for option in usable if option.node_id not in takes}


def _candidate(
    option: _Option, takes: dict[str, int], planned: dict[str, int], capped: set[str]
) -> Candidate:
    rejected = option.rejected
    if rejected is None and option.node_id in capped:
        rejected = ReasonCode.SPLIT_REQUIRED
    elif rejected is None and option.node_id in planned and option.node_id not in takes:
        rejected = ReasonCode.PARTIAL_FILL  # all or nothing: it would only fill part
    return Candidate(
        node_id=option.node_id,
        rank=option.rank,
        available_qty=option.available,
        rejected_reason=rejected if option.node_id not in takes else None,
    )


def _shortfall(
    missing: int, takes: dict[str, int], candidates: list[Candidate], options: list[_Option]
) -> ReasonCode | None:
    if missing <= 0:
        return None
    reasons = {candidate.rejected_reason for candidate in candidates}
    if ReasonCode.SPLIT_REQUIRED in reasons:
        return ReasonCode.SPLIT_REQUIRED
    if takes:
        return ReasonCode.PARTIAL_FILL
    if ReasonCode.PROTECTED_STOCK in reasons:
        return ReasonCode.PROTECTED_STOCK
    if any(o.rejected is ReasonCode.NODE_EXCLUDED and o.atp > 0 for o in options):
        return ReasonCode.NODE_EXCLUDED
    return ReasonCode.STOCKOUT
