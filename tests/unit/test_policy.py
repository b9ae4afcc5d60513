"""The allocation policy: model rules, file loading, the default policy and the CLI."""

import copy
import json
import random
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from allocflow.connectors.policy_file import (
    PolicyError,
    default_policy,
    load_policy,
    validation_problems,
)
from allocflow.connectors.simulator.world import NODES, build_world
from allocflow.flows.cli import main
from allocflow.models import policy as policy_module
from allocflow.models.orders import Channel
from allocflow.models.policy import Policy

pytestmark = pytest.mark.unit

DOC = Path(__file__).parents[2] / "docs" / "policy.md"
T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)

BASE: dict[str, Any] = {
    "policy_version": "test-1",
    "nodes": ["DC-A", "DC-B", "DC-C"],
    "tiers": {"gold": {"priority": 1}, "silver": {"priority": 2}},
    "channel_weights": {"ecommerce": 1.0, "edi": 1.2, "sales": 1.1},
    "protection": [{"node": "*", "tier": "gold", "share": 0.2}],
    "sourcing": {
        "home_nodes": {"east": "DC-A", "west": "DC-C"},
        "fallbacks": {"east": ["DC-B", "DC-C"]},
        "exclusions": [],
    },
}

SAME_POLICY_TOML = """
policy_version = "same-1"
nodes = ["DC-A", "DC-B"]
unknown_tier_priority = 9

[tiers.gold]
priority = 1
description = "Key accounts"

[channel_weights]
ecommerce = 1
edi = 1.5
sales = 1.25

[[protection]]
node = "DC-A"
tier = "gold"
qty = 10

[sourcing.home_nodes]
east = "DC-A"

[sourcing.fallbacks]
east = ["DC-B"]

[[sourcing.exclusions]]
node = "DC-B"
starts = 2026-03-01T00:00:00Z
ends = 2026-03-03T00:00:00+01:00
reason = "stocktake"
regions = ["east"]

[split]
allowed = false
max_nodes_per_line = 1

[approval]
margin_floor = 0.05

[backorders]
use_inbound_within_hours = 24
"""

SAME_POLICY_YAML = """
policy_version: same-1
nodes: [DC-A, DC-B]
unknown_tier_priority: 9
tiers:
  gold: {priority: 1, description: Key accounts}
channel_weights: {ecommerce: 1, edi: 1.5, sales: 1.25}
protection:
  - {node: DC-A, tier: gold, qty: 10}
sourcing:
  home_nodes: {east: DC-A}
  fallbacks: {east: [DC-B]}
  exclusions:
    - node: DC-B
      starts: 2026-03-01T00:00:00Z
      ends: 2026-03-03T00:00:00+01:00
      reason: stocktake
      regions: [east]
split: {allowed: false, max_nodes_per_line: 1}
approval: {margin_floor: 0.05}
backorders: {use_inbound_within_hours: 24}
"""


def _policy(change: Callable[[dict[str, Any]], None] | None = None) -> Policy:
    data = copy.deepcopy(BASE)
    if change is not None:
        change(data)
    return Policy.model_validate(data)


def _problems(change: Callable[[dict[str, Any]], None]) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        _policy(change)
    return validation_problems(caught.value)


def _exclusion(
    node: str, starts: datetime, ends: datetime, regions: list[str] | None = None
) -> dict[str, Any]:
    return {"node": node, "starts": starts, "ends": ends, "regions": regions or []}


# The default policy


def test_default_policy_is_valid_with_the_documented_values() -> None:
    policy = default_policy()
    assert policy.policy_version == "default-2026.1"
    assert policy.nodes == ["DC-NJ", "DC-ATL", "DC-CHI", "DC-DAL", "DC-RNO"]
    assert {name: tier.priority for name, tier in policy.tiers.items()} == {
        "platinum": 1,
        "gold": 2,
        "silver": 3,
        "bronze": 4,
    }
    assert policy.unknown_tier_priority == 5
    assert policy.channel_weights == {Channel.EDI: 1.2, Channel.SALES: 1.1, Channel.ECOMMERCE: 1.0}
    assert [(rule.node, rule.tier, rule.share) for rule in policy.protection] == [
        ("*", "platinum", 0.15),
        ("*", "gold", 0.10),
    ]
    assert (policy.split.allowed, policy.split.max_nodes_per_line) == (True, 2)
    assert (policy.split.max_nodes_per_order, policy.split.min_split_qty) == (3, 5)
    assert policy.approval.order_value_above == 25000
    assert policy.approval.line_qty_above == 400
    assert policy.approval.margin_floor == 0.0
    assert policy.backorders.reallocate
    assert policy.backorders.allow_partial
    assert policy.backorders.use_inbound_within_hours == 0


def test_default_sourcing_matches_the_simulated_world() -> None:
    world = build_world(random.Random(1), n_skus=5, n_customers=5)
    sourcing = default_policy().sourcing
    assert sourcing.home_nodes == {node.region: node.node_id for node in NODES}
    for region, home in sourcing.home_nodes.items():
        nearest = [node.node_id for node in world.nodes_by_distance(region)]
        assert nearest[0] == home
        assert sourcing.fallbacks[region] == nearest[1:4], region


# Loading files


def test_toml_and_yaml_of_the_same_policy_are_equal(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text(SAME_POLICY_TOML)
    (tmp_path / "p.yaml").write_text(SAME_POLICY_YAML)
    (tmp_path / "p.yml").write_text(SAME_POLICY_YAML)
    from_toml = load_policy(tmp_path / "p.toml")
    assert from_toml == load_policy(tmp_path / "p.yaml") == load_policy(tmp_path / "p.yml")
    assert from_toml.sourcing.exclusions[0].ends == datetime(2026, 3, 2, 23, 0, tzinfo=UTC)
    assert from_toml.channel_weights[Channel.ECOMMERCE] == 1.0


def test_policy_error_names_the_file_and_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        SAME_POLICY_TOML.replace("priority = 1", "priority = 0").replace(
            "allowed = false", "allowed = 'no'"
        )
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert caught.value.problems == [
        "tiers.gold.priority: Input should be greater than or equal to 1 (got 0)",
        "split.allowed: Input should be a valid boolean (got 'no')",
    ]
    assert str(caught.value) == (
        f"{path}: invalid policy\n"
        "  tiers.gold.priority: Input should be greater than or equal to 1 (got 0)\n"
        "  split.allowed: Input should be a valid boolean (got 'no')"
    )


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("p.json", "{}", "unsupported file type '.json'; use .toml, .yaml or .yml"),
        ("p.toml", 'policy_version = "x"\nnodes = \n', "not valid TOML: Invalid value (at line 2"),
        ("p.toml", "a = 1\na = 2\n", "not valid TOML: Cannot overwrite a value (at line 2"),
        (
            "p.yaml",
            "nodes: [DC-A\ntiers: {}\n",
            "not valid YAML: did not find expected ',' or ']' (at line 2",
        ),
        (
            "p.yaml",
            "nodes: []\nnodes: [DC-A]\n",
            "not valid YAML: duplicate key 'nodes' (at line 2",
        ),
        ("p.yml", "- DC-A\n", "the document must be a mapping of fields (got a list)"),
        ("p.yml", "", "the document must be a mapping of fields (got empty)"),
    ],
)
def test_unparseable_files_are_policy_errors(
    tmp_path: Path, name: str, content: str, expected: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert str(caught.value).startswith(f"{path}: invalid policy\n  {expected}")


def test_unreadable_files_are_policy_errors(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"cannot read the file: .*No such file"):
        load_policy(tmp_path / "missing.toml")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PolicyError, match=r"cannot read the file: 'utf-8' codec"):
        load_policy(binary)


def test_yaml_timestamps_need_a_timezone(tmp_path: Path) -> None:
    path = tmp_path / "naive.yaml"
    path.write_text(SAME_POLICY_YAML.replace("2026-03-01T00:00:00Z", "2026-03-01T00:00:00"))
    with pytest.raises(PolicyError, match=r"sourcing\.exclusions\.0\.starts: Input should have"):
        load_policy(path)


# Field and cross-field rules


def _parent(data: dict[str, Any], path: str) -> tuple[Any, str | int]:
    """Return the container holding the dotted ``path`` (made on the way) and its last key."""
    *parents, last = path.split(".")
    target: Any = data
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
    return target, int(last) if isinstance(target, list) else last


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        target, key = _parent(data, path)
        target[key] = value

    return change


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        target, key = _parent(data, path)
        del target[key]

    return change


RULE_VIOLATIONS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "unknown node in fallbacks",
        _set("sourcing.fallbacks.east", ["DC-B", "DC-XYZ"]),
        "sourcing.fallbacks.east.1: node 'DC-XYZ' is not in nodes",
    ),
    (
        "home node in its own fallbacks",
        _set("sourcing.fallbacks.east", ["DC-A", "DC-B"]),
        "sourcing.fallbacks.east.0: node 'DC-A' is the region's home node",
    ),
    (
        "repeated fallback",
        _set("sourcing.fallbacks.east", ["DC-B", "DC-B"]),
        "sourcing.fallbacks.east.1: node 'DC-B' appears more than once",
    ),
    (
        "fallbacks for a region without home node",
        _set("sourcing.fallbacks.north", ["DC-B"]),
        "sourcing.fallbacks.north: region 'north' has no entry in sourcing.home_nodes",
    ),
    (
        "unknown home node",
        _set("sourcing.home_nodes.west", "DC-Z"),
        "sourcing.home_nodes.west: node 'DC-Z' is not in nodes",
    ),
    (
        "duplicate node",
        _set("nodes", ["DC-A", "DC-B", "DC-A", "DC-C"]),
        "nodes.2: node 'DC-A' appears more than once",
    ),
    (
        "no nodes",
        _set("nodes", []),
        "nodes: List should have at least 1 item after validation, not 0 (got [])",
    ),
    (
        "duplicate tier priority",
        _set("tiers.silver.priority", 1),
        "tiers.silver.priority: duplicate priority 1 (tier 'gold' has it too)",
    ),
    (
        "tier priority below 1",
        _set("tiers.silver.priority", 0),
        "tiers.silver.priority: Input should be greater than or equal to 1 (got 0)",
    ),
    (
        "unknown tier priority not below every tier",
        _set("unknown_tier_priority", 2),
        "unknown_tier_priority: must be greater than every tier priority "
        "(got 2, lowest tier priority is 2)",
    ),
    (
        "unknown tier in protection",
        _set("protection.0.tier", "diamond"),
        "protection.0.tier: tier 'diamond' is not in tiers",
    ),
    (
        "unknown node in protection",
        _set("protection.0.node", "DC-Z"),
        "protection.0.node: node 'DC-Z' is not in nodes or '*'",
    ),
    (
        "protection qty and share both set",
        _set("protection.0.qty", 5),
        "protection.0: set exactly one of qty and share (got qty=5, share=0.2)",
    ),
    (
        "protection qty and share both unset",
        _drop("protection.0.share"),
        "protection.0: set exactly one of qty and share (got qty=None, share=None)",
    ),
    (
        "protection share above 1",
        _set("protection.0.share", 1.5),
        "protection.0.share: Input should be less than or equal to 1 (got 1.5)",
    ),
    (
        "protection share of 0",
        _set("protection.0.share", 0.0),
        "protection.0.share: Input should be greater than 0 (got 0.0)",
    ),
    (
        "exclusion ends before it starts",
        _set("sourcing.exclusions", [_exclusion("DC-A", T0, T0 - timedelta(hours=1))]),
        "sourcing.exclusions.0.ends: must be after starts "
        "(got starts=2026-03-02T06:00:00+00:00, ends=2026-03-02T05:00:00+00:00)",
    ),
    (
        "exclusion of an unknown node",
        _set("sourcing.exclusions", [_exclusion("DC-Z", T0, T0 + timedelta(hours=1))]),
        "sourcing.exclusions.0.node: node 'DC-Z' is not in nodes",
    ),
    (
        "exclusion for an unknown region",
        _set(
            "sourcing.exclusions",
            [_exclusion("DC-A", T0, T0 + timedelta(hours=1), ["east", "est"])],
        ),
        "sourcing.exclusions.0.regions.1: region 'est' is not in sourcing.home_nodes",
    ),
    (
        "exclusion start as epoch seconds",
        _set("sourcing.exclusions", [_exclusion("DC-A", T0, T0) | {"starts": 1772431200}]),
        "sourcing.exclusions.0.starts: timestamp must be RFC 3339 text, "
        "e.g. 2026-03-02T06:00:00Z (got 1772431200)",
    ),
    (
        "split not allowed but two nodes per line",
        _set("split", {"allowed": False, "max_nodes_per_line": 2}),
        "split.max_nodes_per_line: must be 1 when allowed is false (got 2)",
    ),
    (
        "more nodes per line than per order",
        _set("split", {"max_nodes_per_line": 3, "max_nodes_per_order": 2}),
        "split.max_nodes_per_line: must not exceed max_nodes_per_order 2 (got 3)",
    ),
    (
        "typo in a nested field",
        _set("split.min_splt_qty", 5),
        "split.min_splt_qty: unknown field (misspelt?) (got 5)",
    ),
    (
        "typo in a top-level field",
        _set("protecton", []),
        "protecton: unknown field (misspelt?) (got [])",
    ),
    (
        "margin floor of 1",
        _set("approval.margin_floor", 1.0),
        "approval.margin_floor: Input should be less than 1 (got 1.0)",
    ),
    (
        "missing channel weight",
        _drop("channel_weights.sales"),
        "channel_weights.sales: no weight; every channel needs one",
    ),
    (
        "channel weight of 0",
        _set("channel_weights.edi", 0),
        "channel_weights.edi: Input should be greater than 0 (got 0)",
    ),
    (
        "text where a number belongs",
        _set("split.min_split_qty", "5"),
        "split.min_split_qty: Input should be a valid integer (got '5')",
    ),
    (
        "negative inbound horizon",
        _set("backorders.use_inbound_within_hours", -1),
        "backorders.use_inbound_within_hours: Input should be greater than or equal to 0 (got -1)",
    ),
    (
        "missing policy version",
        _drop("policy_version"),
        "policy_version: Field required",
    ),
]


@pytest.mark.parametrize(
    ("change", "expected"),
    [(change, expected) for _, change, expected in RULE_VIOLATIONS],
    ids=[name for name, _, _ in RULE_VIOLATIONS],
)
def test_each_rule_names_the_field_path_and_value(
    change: Callable[[dict[str, Any]], None], expected: str
) -> None:
    assert _problems(change) == [expected]


def test_unknown_channel_is_named() -> None:
    problems = _problems(_set("channel_weights.phone", 1.0))
    assert problems == [
        "channel_weights.phone.[key]: Input should be 'ecommerce', 'edi' or 'sales' (got 'phone')"
    ]


def test_a_failed_tier_does_not_hide_behind_a_default_error() -> None:
    problems = _problems(_set("tiers.gold.priority", "high"))
    assert problems == ["tiers.gold.priority: Input should be a valid integer (got 'high')"]


def test_split_not_allowed_with_one_node_per_line_is_valid() -> None:
    policy = _policy(_set("split", {"allowed": False, "max_nodes_per_line": 1}))
    assert not policy.split.allowed


def test_policy_is_immutable() -> None:
    policy = _policy()
    with pytest.raises(ValidationError, match="frozen"):
        policy.policy_version = "other"  # type: ignore[misc]


# Tiers and protection


def test_unknown_tier_priority_defaults_below_every_tier() -> None:
    policy = _policy(_set("tiers.bronze", {"priority": 7}))
    assert policy.unknown_tier_priority == 8
    assert policy.tier_priority("bronze") == 7
    assert policy.tier_priority("walk-in") == 8
    assert _policy(_set("unknown_tier_priority", 20)).tier_priority("walk-in") == 20


@pytest.mark.parametrize(
    ("tier", "on_hand", "protected"),
    [
        ("platinum", 100, 0),
        ("gold", 100, 15),
        ("silver", 100, 25),
        ("bronze", 100, 25),
        ("walk-in", 100, 25),
        ("silver", 7, 1),
        ("silver", 0, 0),
        ("silver", -4, 0),
    ],
)
def test_default_protection_by_tier(tier: str, on_hand: int, protected: int) -> None:
    assert default_policy().protected_qty("DC-ATL", tier, on_hand) == protected


def test_node_specific_quantity_protection_is_capped_at_on_hand() -> None:
    policy = _policy(
        _set(
            "protection",
            [
                {"node": "DC-A", "tier": "gold", "qty": 30},
                {"node": "*", "tier": "gold", "share": 0.5},
            ],
        )
    )
    assert policy.protected_qty("DC-A", "silver", 100) == 80
    assert policy.protected_qty("DC-A", "silver", 40) == 40
    assert policy.protected_qty("DC-B", "silver", 100) == 50
    assert policy.protected_qty("DC-A", "gold", 100) == 0


# Sourcing


def test_candidate_nodes_rank_home_then_fallbacks() -> None:
    assert _policy().candidate_nodes("east", T0) == [
        ("DC-A", 1, False),
        ("DC-B", 2, False),
        ("DC-C", 3, False),
    ]
    assert _policy().candidate_nodes("west", T0) == [("DC-C", 1, False)]


def test_exclusion_window_includes_start_and_excludes_end() -> None:
    ends = T0 + timedelta(hours=6)
    policy = _policy(_set("sourcing.exclusions", [_exclusion("DC-B", T0, ends)]))
    tick = timedelta(microseconds=1)
    assert [policy.candidate_nodes("east", at)[1] for at in (T0 - tick, T0, ends - tick, ends)] == [
        ("DC-B", 2, False),
        ("DC-B", 2, True),
        ("DC-B", 2, True),
        ("DC-B", 2, False),
    ]


def test_region_specific_exclusion_applies_only_to_its_regions() -> None:
    exclusion = _exclusion("DC-C", T0, T0 + timedelta(days=1), ["east"])
    policy = _policy(_set("sourcing.exclusions", [exclusion]))
    assert policy.candidate_nodes("east", T0)[2] == ("DC-C", 3, True)
    assert policy.candidate_nodes("west", T0) == [("DC-C", 1, False)]


def test_unknown_region_gets_every_node_in_policy_order() -> None:
    exclusions = [
        _exclusion("DC-A", T0, T0 + timedelta(days=1)),
        _exclusion("DC-B", T0, T0 + timedelta(days=1), ["east"]),
    ]
    policy = _policy(_set("sourcing.exclusions", exclusions))
    assert policy.candidate_nodes("north", T0) == [
        ("DC-A", 1, True),
        ("DC-B", 2, False),
        ("DC-C", 3, False),
    ]


# The command line


def test_cli_check_accepts_a_valid_file(capsys: pytest.CaptureFixture[str]) -> None:
    path = Path(__file__).parents[2] / "flows" / "policies" / "default.toml"
    assert main(["policy", "check", str(path)]) == 0
    assert capsys.readouterr().out == (
        f"{path}: ok (policy_version default-2026.1; 4 tiers, 5 nodes, 2 protection rules, "
        "5 regions, 0 exclusions)\n"
    )


def test_cli_check_rejects_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        SAME_POLICY_YAML.replace("fallbacks: {east: [DC-B]}", "fallbacks: {east: [DC-Q]}")
    )
    assert main(["policy", "check", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"{path}: invalid policy\n  sourcing.fallbacks.east.0: node 'DC-Q' is not in nodes\n"
    )


def test_cli_show_prints_the_default_as_json_that_loads_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "show"]) == 0
    shown = capsys.readouterr().out
    assert json.loads(shown)["policy_version"] == "default-2026.1"
    copy_path = tmp_path / "copy.yaml"
    copy_path.write_text(shown)
    assert load_policy(copy_path) == default_policy()


def test_cli_show_prints_a_file_or_its_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.toml"
    path.write_text(SAME_POLICY_TOML)
    assert main(["policy", "show", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["sourcing"]["exclusions"][0]["reason"] == "stocktake"
    assert main(["policy", "show", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read the file" in capsys.readouterr().err


# Documentation


def _policy_models() -> list[type[BaseModel]]:
    return [
        value
        for value in vars(policy_module).values()
        if isinstance(value, type)
        and issubclass(value, policy_module.PolicyModel)
        and value is not policy_module.PolicyModel
    ]


def test_every_field_is_described_and_documented() -> None:
    doc = DOC.read_text()
    models = _policy_models()
    assert len(models) == 8
    for model in models:
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name}"
            assert re.search(rf"`{name}`", doc), f"docs/policy.md does not mention `{name}`"


# Ranges


@pytest.mark.parametrize(
    ("field", "value", "limit"),
    [
        ("backorders.use_inbound_within_hours", 1.5e12, "less than or equal to 87600"),
        ("backorders.use_inbound_within_hours", 87_601, "less than or equal to 87600"),
        ("split.max_nodes_per_order", 10**30, "less than or equal to 1000"),
        ("approval.line_qty_above", 2**31, "less than or equal to 10000000"),
        ("approval.order_value_above", 1.5e300, "less than or equal to 1000000000000000"),
        ("channel_weights.edi", 1.5e300, "less than or equal to 1000"),
    ],
)
def test_out_of_range_numbers_are_named_with_their_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, value: float, limit: str
) -> None:
    data = json.loads(json.dumps(BASE, default=str))
    *parents, name = field.split(".")
    target = data
    for parent in parents:
        target = target.setdefault(parent, {})
    target[name] = value
    path = tmp_path / "policy.yaml"
    path.write_text(json.dumps(data))
    assert main(["policy", "check", str(path)]) == 2
    error = capsys.readouterr().err
    assert f"  {field}: Input should be {limit}" in error


def test_the_longest_inbound_horizon_is_accepted() -> None:
    policy = _policy(lambda data: data.update(backorders={"use_inbound_within_hours": 87_600}))
    assert policy.backorders.use_inbound_within_hours == 87_600
