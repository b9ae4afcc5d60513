"""The allocation policy: tiers, channel weights, protection, sourcing, splits, approvals.

A policy is pure data, read once at start (``allocflow.connectors.policy_file``) and
applied to every decision, which records its ``policy_version``. Every rule that
relates two fields is checked here, so a policy that loads is one the rules engine
can apply. Errors of those checks are lines of ``path: reason``, where the path is
relative to the model that raised them (``docs/policy.md`` lists every field).

Example:
    >>> policy = Policy.model_validate(
    ...     {
    ...         "policy_version": "example-1",
    ...         "nodes": ["DC-A", "DC-B"],
    ...         "tiers": {"gold": {"priority": 1}, "silver": {"priority": 2}},
    ...         "channel_weights": {"ecommerce": 1.0, "edi": 1.2, "sales": 1.1},
    ...         "protection": [{"node": "*", "tier": "gold", "share": 0.2}],
    ...         "sourcing": {"home_nodes": {"east": "DC-A"}, "fallbacks": {"east": ["DC-B"]}},
    ...     }
    ... )
    >>> policy.tier_priority("silver"), policy.tier_priority("walk-in")
    (2, 3)
    >>> policy.protected_qty("DC-A", "silver", on_hand=50)
    10
    >>> from datetime import UTC, datetime
    >>> policy.candidate_nodes("east", datetime(2026, 3, 2, tzinfo=UTC))
    [('DC-A', 1, False), ('DC-B', 2, False)]
"""

import math
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator, model_validator

from allocflow.models._internal.types import Identifier, Quantity, Timestamp
from allocflow.models.limits import Hours
from allocflow.models.orders import Channel

ALL_NODES = "*"
"""The ``node`` of a protection rule that applies at every node."""

MAX_PRIORITY = 1_000
"""The largest tier priority; ``unknown_tier_priority`` may be one more."""
MAX_WEIGHT = 1_000.0
"""The largest channel weight."""
MAX_NODES_PER_SPLIT = 1_000
"""The largest ``max_nodes_per_line`` and ``max_nodes_per_order``."""
MAX_ORDER_VALUE = 1e15
"""The largest ``order_value_above``."""

_ChannelKey = Annotated[Channel, Strict(False)]
_Weight = Annotated[float, Field(gt=0, le=MAX_WEIGHT)]
_LineQty = Annotated[int, Field(ge=0, le=10_000_000)]
"""A line quantity: 0 to the contract's largest quantity."""
Problem = tuple[str, str]
"""A relative field path and what is wrong with it."""


def _raise_problems(problems: Iterable[Problem]) -> None:
    """Raise one ``ValueError`` with a ``path: reason`` line per problem, if there are any.

    Raises:
        ValueError: When ``problems`` is not empty.
    """
    lines = [f"{path}: {reason}" for path, reason in problems]
    if lines:
        raise ValueError("\n".join(lines))


def _duplicates(items: Iterable[Any]) -> list[tuple[int, Any]]:
    """Return the index and value of every item equal to an earlier one."""
    seen: set[Any] = set()
    repeated: list[tuple[int, Any]] = []
    for index, item in enumerate(items):
        if item in seen:
            repeated.append((index, item))
        seen.add(item)
    return repeated


class PolicyModel(BaseModel):
    """Base of every policy model: immutable, strict, unknown (misspelt) fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


class TierRule(PolicyModel):
    """A customer tier."""

    priority: int = Field(
        ge=1, le=MAX_PRIORITY, description="Allocation priority; 1 is served first."
    )
    description: str = Field(default="", description="What the tier is, for people.")


class ProtectionRule(PolicyModel):
    """Stock at a node that only a tier and the tiers above it may consume."""

    node: Identifier = Field(description="Node the rule protects stock at, or '*' for every node.")
    tier: Identifier = Field(
        description="Tier the stock is protected for; tiers with a higher priority (lower "
        "number) may consume it too, lower tiers may not."
    )
    qty: Quantity | None = Field(
        default=None, description="Units of each SKU's on-hand stock protected."
    )
    share: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Share of each SKU's on-hand stock protected (rounded down to units).",
    )

    @model_validator(mode="after")
    def _one_amount(self) -> "ProtectionRule":
        if (self.qty is None) == (self.share is None):
            raise ValueError(
                f"set exactly one of qty and share (got qty={self.qty!r}, share={self.share!r})"
            )
        return self

    def amount(self, on_hand: int) -> int:
        """Return the units this rule protects out of ``on_hand`` (negative counts as 0).

        Args:
            on_hand: Units of the SKU on hand at the node.

        Returns:
            ``qty``, or ``share`` of the on-hand units rounded down.
        """
        if self.qty is not None:
            return self.qty
        return math.floor((self.share or 0.0) * max(on_hand, 0))


class NodeExclusion(PolicyModel):
    """A period during which a node must not be sourced from."""

    node: Identifier = Field(description="Excluded node.")
    starts: Timestamp = Field(description="Start of the exclusion (inclusive).")
    ends: Timestamp = Field(description="End of the exclusion (exclusive).")
    reason: str = Field(default="", description="Why, for people (e.g. 'hurricane closure').")
    regions: list[Identifier] = Field(
        default_factory=list,
        description="Regions the exclusion applies to; empty means every region.",
    )

    @model_validator(mode="after")
    def _period_is_positive(self) -> "NodeExclusion":
        if self.ends <= self.starts:
            raise ValueError(
                f"ends: must be after starts (got starts={self.starts.isoformat()}, "
                f"ends={self.ends.isoformat()})"
            )
        return self

    @field_validator("regions")
    @classmethod
    def _regions_unique(cls, regions: list[str]) -> list[str]:
        _raise_problems(
            (str(index), f"region {region!r} appears more than once")
            for index, region in _duplicates(regions)
        )
        return regions

    def covers(self, region: str, at: datetime) -> bool:
        """Return whether the exclusion applies to orders for ``region`` at time ``at``.

        Args:
            region: Delivery region of the order.
            at: Time of the decision (timezone-aware).

        Returns:
            True when ``starts <= at < ends`` and the region is listed (or none are).
        """
        in_period = self.starts <= at < self.ends
        return in_period and (not self.regions or region in self.regions)


class SourcingRule(PolicyModel):
    """Which nodes serve a region, in which order, and when a node is out of use."""

    home_nodes: dict[Identifier, Identifier] = Field(
        default_factory=dict, description="Region → the node tried first for its orders."
    )
    fallbacks: dict[Identifier, list[Identifier]] = Field(
        default_factory=dict,
        description="Region → the nodes tried after the home node, best first.",
    )
    exclusions: list[NodeExclusion] = Field(
        default_factory=list, description="Periods during which nodes must not be used."
    )


class SplitRule(PolicyModel):
    """Whether and how far an order may be split across nodes."""

    allowed: bool = Field(
        default=True, description="Whether one line may be filled from more than one node."
    )
    max_nodes_per_line: int = Field(
        default=2,
        ge=1,
        le=MAX_NODES_PER_SPLIT,
        description="Most nodes one line may be filled from.",
    )
    max_nodes_per_order: int = Field(
        default=3,
        ge=1,
        le=MAX_NODES_PER_SPLIT,
        description="Most nodes the lines of one order may ship from in total.",
    )
    min_split_qty: Quantity = Field(
        default=1, description="Fewest units worth sourcing from an additional node."
    )

    @model_validator(mode="after")
    def _limits_agree(self) -> "SplitRule":
        problems: list[Problem] = []
        if not self.allowed and self.max_nodes_per_line != 1:
            problems.append(
                (
                    "max_nodes_per_line",
                    f"must be 1 when allowed is false (got {self.max_nodes_per_line})",
                )
            )
        if self.max_nodes_per_line > self.max_nodes_per_order:
            problems.append(
                (
                    "max_nodes_per_line",
                    f"must not exceed max_nodes_per_order {self.max_nodes_per_order} "
                    f"(got {self.max_nodes_per_line})",
                )
            )
        _raise_problems(problems)
        return self


class ApprovalRule(PolicyModel):
    """Thresholds above (or below) which a decision waits for a person's approval."""

    order_value_above: float | None = Field(
        default=None,
        ge=0,
        le=MAX_ORDER_VALUE,
        description="Order value (sum of qty * unit price) above which approval is needed; "
        "unset: never.",
    )
    line_qty_above: _LineQty | None = Field(
        default=None,
        description="Line quantity above which approval is needed; unset: never.",
    )
    margin_floor: float | None = Field(
        default=None,
        ge=0,
        lt=1,
        description="Lowest line margin (price - cost) / price allowed without approval; "
        "unset: never.",
    )


class BackorderRule(PolicyModel):
    """What happens to units that could not be allocated."""

    reallocate: bool = Field(
        default=True,
        description="Re-allocate backordered lines when supply arrives or is freed, highest "
        "priority first, then oldest.",
    )
    allow_partial: bool = Field(
        default=True,
        description="Allocate what is available and backorder the rest; false: all or nothing.",
    )
    use_inbound_within_hours: Hours = Field(
        default=0.0,
        description="Expected inbound due within this many hours counts as supply; 0: never.",
    )


def _below_every_tier(data: dict[str, Any]) -> int:
    """Default ``unknown_tier_priority``: one below the lowest tier priority."""
    tiers: dict[str, TierRule] = data.get("tiers", {})
    return max((tier.priority for tier in tiers.values()), default=0) + 1


class Policy(PolicyModel):
    """The allocation policy every decision applies and records the version of."""

    policy_version: Identifier = Field(
        description="Version recorded on every decision, e.g. 'default-2026.1'."
    )
    description: str = Field(default="", description="What the policy is for, for people.")
    nodes: list[Identifier] = Field(min_length=1, description="The fulfilment nodes, unique.")
    tiers: dict[Identifier, TierRule] = Field(
        min_length=1, description="Customer tier name → its rule; priorities are unique."
    )
    unknown_tier_priority: int = Field(
        default_factory=_below_every_tier,
        ge=1,
        le=MAX_PRIORITY + 1,
        description="Priority of customers whose tier is not in tiers; must be lower "
        "(a larger number) than every tier's. Default: one below the lowest tier.",
    )
    channel_weights: dict[_ChannelKey, _Weight] = Field(
        description="Channel → weight (> 0); within a tier, higher weight is served first. "
        "Every channel needs one."
    )
    protection: list[ProtectionRule] = Field(
        default_factory=list, description="Stock reserved for tiers at nodes."
    )
    sourcing: SourcingRule = Field(
        default_factory=SourcingRule, description="Home nodes, fallbacks and exclusions."
    )
    split: SplitRule = Field(default_factory=SplitRule, description="Split limits.")
    approval: ApprovalRule = Field(default_factory=ApprovalRule, description="Approval thresholds.")
    backorders: BackorderRule = Field(
        default_factory=BackorderRule, description="Backorder handling."
    )

    @field_validator("nodes")
    @classmethod
    def _nodes_unique(cls, nodes: list[str]) -> list[str]:
        _raise_problems(
            (str(index), f"node {node!r} appears more than once")
            for index, node in _duplicates(nodes)
        )
        return nodes

    @field_validator("tiers")
    @classmethod
    def _priorities_unique(cls, tiers: dict[str, TierRule]) -> dict[str, TierRule]:
        owners: dict[int, str] = {}
        problems: list[Problem] = []
        for name, rule in tiers.items():
            if rule.priority in owners:
                problems.append(
                    (
                        f"{name}.priority",
                        f"duplicate priority {rule.priority} "
                        f"(tier {owners[rule.priority]!r} has it too)",
                    )
                )
            owners.setdefault(rule.priority, name)
        _raise_problems(problems)
        return tiers

    @field_validator("channel_weights")
    @classmethod
    def _weights_complete(cls, weights: dict[Channel, float]) -> dict[Channel, float]:
        _raise_problems(
            (channel.value, "no weight; every channel needs one")
            for channel in Channel
            if channel not in weights
        )
        return weights

    @model_validator(mode="after")
    def _references_resolve(self) -> "Policy":
        _raise_problems(
            [
                *self._tier_problems(),
                *self._protection_problems(),
                *self._home_node_problems(),
                *self._fallback_problems(),
                *self._exclusion_problems(),
            ]
        )
        return self

    def _tier_problems(self) -> list[Problem]:
        lowest = max(rule.priority for rule in self.tiers.values())
        if self.unknown_tier_priority > lowest:
            return []
        return [
            (
                "unknown_tier_priority",
                f"must be greater than every tier priority (got {self.unknown_tier_priority}, "
                f"lowest tier priority is {lowest})",
            )
        ]

    def _protection_problems(self) -> list[Problem]:
        problems: list[Problem] = []
        for index, rule in enumerate(self.protection):
            if rule.tier not in self.tiers:
                problems.append((f"protection.{index}.tier", f"tier {rule.tier!r} is not in tiers"))
            if rule.node != ALL_NODES and rule.node not in self.nodes:
                problems.append(
                    (f"protection.{index}.node", f"node {rule.node!r} is not in nodes or '*'")
                )
        return problems

    def _home_node_problems(self) -> list[Problem]:
        return [
            (f"sourcing.home_nodes.{region}", f"node {node!r} is not in nodes")
            for region, node in self.sourcing.home_nodes.items()
            if node not in self.nodes
        ]

    def _fallback_problems(self) -> list[Problem]:
        problems: list[Problem] = []
        for region, ranked in self.sourcing.fallbacks.items():
            path = f"sourcing.fallbacks.{region}"
            home = self.sourcing.home_nodes.get(region)
            if home is None:
                problems.append((path, f"region {region!r} has no entry in sourcing.home_nodes"))
            for index, node in enumerate(ranked):
                if node not in self.nodes:
                    problems.append((f"{path}.{index}", f"node {node!r} is not in nodes"))
                elif node == home:
                    problems.append((f"{path}.{index}", f"node {node!r} is the region's home node"))
            problems += [
                (f"{path}.{index}", f"node {node!r} appears more than once")
                for index, node in _duplicates(ranked)
            ]
        return problems

    def _exclusion_problems(self) -> list[Problem]:
        problems: list[Problem] = []
        for index, exclusion in enumerate(self.sourcing.exclusions):
            path = f"sourcing.exclusions.{index}"
            if exclusion.node not in self.nodes:
                problems.append((f"{path}.node", f"node {exclusion.node!r} is not in nodes"))
            problems += [
                (f"{path}.regions.{position}", f"region {region!r} is not in sourcing.home_nodes")
                for position, region in enumerate(exclusion.regions)
                if region not in self.sourcing.home_nodes
            ]
        return problems

    def tier_priority(self, tier: str) -> int:
        """Return the priority of ``tier`` (1 is served first).

        Args:
            tier: Customer tier as named on the order.

        Returns:
            The tier's priority, or ``unknown_tier_priority`` for a tier not in the policy.
        """
        rule = self.tiers.get(tier)
        return self.unknown_tier_priority if rule is None else rule.priority

    def protected_qty(self, node: str, tier: str, on_hand: int) -> int:
        """Return the units of a SKU at ``node`` that customers of ``tier`` must not consume.

        Sums every protection rule for ``node`` (or '*') whose tier has a higher priority
        (a lower number) than ``tier``; the sum is capped at the on-hand units.

        Args:
            node: Node the stock is at.
            tier: Tier of the customer asking for the stock (unknown tiers rank last).
            on_hand: Units of the SKU on hand at the node (negative counts as 0).

        Returns:
            Protected units, between 0 and ``max(on_hand, 0)``.
        """
        priority = self.tier_priority(tier)
        protected = sum(
            rule.amount(on_hand)
            for rule in self.protection
            if rule.node in (node, ALL_NODES) and self.tier_priority(rule.tier) < priority
        )
        return min(protected, max(on_hand, 0))

    def candidate_nodes(self, region: str, at: datetime) -> list[tuple[str, int, bool]]:
        """Return the nodes that may serve ``region``, best first, as ``(node, rank, excluded)``.

        Args:
            region: Delivery region of the order.
            at: Time of the decision (timezone-aware).

        Returns:
            The home node (rank 1) then the region's fallbacks (rank 2, 3, …); for a region
            without a home node, every node in policy order. ``excluded`` is True when an
            exclusion for the node covers ``region`` at ``at``.
        """
        home = self.sourcing.home_nodes.get(region)
        if home is None:
            ranked = list(self.nodes)
        else:
            ranked = [home, *self.sourcing.fallbacks.get(region, [])]
        return [
            (node, rank, self._excluded(node, region, at))
            for rank, node in enumerate(ranked, start=1)
        ]

    def _excluded(self, node: str, region: str, at: datetime) -> bool:
        return any(
            exclusion.node == node and exclusion.covers(region, at)
            for exclusion in self.sourcing.exclusions
        )
