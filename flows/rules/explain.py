"""Turning a line's state into the decision record a planner reads."""

from allocflow.flows.rules.commands import Cause
from allocflow.flows.rules.lines import LineState
from allocflow.models.decisions import (
    AllocationDecision,
    Candidate,
    DecisionOutcome,
    NodeAllocation,
)
from allocflow.models.ids import stable_id
from allocflow.models.vocabulary import ReasonCode

_REASON_TEXT: dict[ReasonCode, str] = {
    ReasonCode.STOCKOUT: "no node it may use has stock",
    ReasonCode.PARTIAL_FILL: "not enough stock at the nodes it may use",
    ReasonCode.PROTECTED_STOCK: "the remaining stock is protected for higher tiers",
    ReasonCode.SPLIT_REQUIRED: "more stock exists, but the split rules forbid another node",
    ReasonCode.NODE_EXCLUDED: "the nodes with stock are excluded now",
    ReasonCode.CREDIT_HOLD: "the customer is on credit hold",
    ReasonCode.ORDER_CANCELLED: "the order was cancelled",
    ReasonCode.SHORT_SHIPPED: "the warehouse shipped units short; they are not re-allocated",
}


def outcome_of(line: LineState, cancelled: bool) -> DecisionOutcome:
    """Return the line's state: cancelled, held, short shipped, allocated, partial or backordered.

    ``short_shipped`` wins over the allocation states: units the customer was meant to
    get did not ship, whatever else of the line is allocated or waiting.
    """
    if cancelled:
        return DecisionOutcome.CANCELLED
    if line.held and line.waiting:
        return DecisionOutcome.HELD
    if line.short_outstanding:
        return DecisionOutcome.SHORT_SHIPPED
    if line.waiting == 0:
        return DecisionOutcome.ALLOCATED
    return DecisionOutcome.PARTIAL if line.committed else DecisionOutcome.BACKORDERED


def reason_of(line: LineState, outcome: DecisionOutcome) -> ReasonCode | None:
    """Return the reason code for anything short of a full allocation."""
    if outcome is DecisionOutcome.CANCELLED:
        return ReasonCode.ORDER_CANCELLED
    if outcome is DecisionOutcome.HELD:
        return ReasonCode.CREDIT_HOLD
    if outcome is DecisionOutcome.SHORT_SHIPPED:
        return ReasonCode.SHORT_SHIPPED
    if outcome is DecisionOutcome.ALLOCATED:
        return None
    return line.shortfall or ReasonCode.STOCKOUT


def decision_for(
    line: LineState,
    cause: Cause,
    policy_version: str,
    *,
    rule: str,
    candidates: list[Candidate],
    cancelled: bool = False,
    part: str = "",
) -> AllocationDecision:
    """Build the decision record of a line after a command changed it.

    Args:
        line: The line after the change.
        cause: The event that caused the change; with the line it fixes the id.
        policy_version: Version of the policy applied.
        rule: The rule that decided.
        candidates: Nodes considered (empty when no allocation was attempted).
        cancelled: Whether the order was cancelled.
        part: Which of the event's commands caused it, when that is not the line's own
            (see ``AllocationShard._records``); part of the id.
    """
    outcome = outcome_of(line, cancelled)
    reason = reason_of(line, outcome)
    committed = line.committed_by_node()
    allocated = sum(committed.values())
    short = 0 if cancelled else line.short_outstanding
    request = line.request
    return AllocationDecision(
        decision_id=stable_id(
            "dec", request.order_id, request.line_id, cause.event_id, *([part] if part else [])
        ),
        order_id=request.order_id,
        line_id=request.line_id,
        sku=request.sku,
        customer_id=request.customer_id,
        decided_at=cause.event_time,
        cause_event_id=cause.event_id,
        policy_version=policy_version,
        rule=rule,
        outcome=outcome,
        requested_qty=line.requested,
        allocated_qty=allocated,
        backordered_qty=0 if cancelled else line.waiting + short,
        short_shipped_qty=short,
        allocations=[NodeAllocation(node_id=n, qty=q) for n, q in committed.items()],
        candidates=candidates,
        reason_code=reason,
        explanation=_explain(line, outcome, reason, rule=rule, candidates=candidates),
    )


def _explain(
    line: LineState,
    outcome: DecisionOutcome,
    reason: ReasonCode | None,
    *,
    rule: str,
    candidates: list[Candidate],
) -> str:
    committed = line.committed_by_node()
    placed = ", ".join(f"{qty} at {node}" for node, qty in committed.items()) or "nothing"
    state = outcome.value.replace("_", " ").capitalize()
    head = f"{state} by rule {rule}: {placed} of {line.requested} ordered"
    parts = [head]
    if outcome not in {DecisionOutcome.ALLOCATED, DecisionOutcome.CANCELLED}:
        short = line.short_outstanding
        parts.append(f"{line.waiting} waiting" + (f", {short} shipped short" if short else ""))
    if reason is not None:
        parts.append(_REASON_TEXT.get(reason, reason.value))
    limit = _order_limit_text(line, candidates)
    if limit:
        parts.append(limit)
    considered = "; ".join(_describe(candidate) for candidate in candidates)
    if considered:
        parts.append(f"considered {considered}")
    return ", ".join(parts[:2]) + ("; " + "; ".join(parts[2:]) if parts[2:] else "") + "."


def _order_limit_text(line: LineState, candidates: list[Candidate]) -> str:
    """Name ``max_nodes_per_order`` when it kept a node with stock from a short line."""
    limit = line.request.max_rank
    blocked = [
        candidate.node_id
        for candidate in candidates
        if limit is not None
        and candidate.rank > limit
        and candidate.rejected_reason is ReasonCode.SPLIT_REQUIRED
    ]
    if not blocked:
        return ""
    return (
        f"max_nodes_per_order {limit}: the order's lines may use only its first {limit} "
        f"ranked nodes, not {', '.join(blocked)}"
    )


def _describe(candidate: Candidate) -> str:
    why = f", {candidate.rejected_reason.value}" if candidate.rejected_reason else ""
    return f"{candidate.node_id} (rank {candidate.rank}, {candidate.available_qty} available{why})"
