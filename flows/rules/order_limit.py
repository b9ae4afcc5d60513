"""``max_nodes_per_order`` as a rule each line can apply alone, on its own shard.

The lines of an order are decided on the shards of their SKUs, at different times, so
no line knows which nodes the others use. The limit is therefore enforced through
ranks: every line of an order that could otherwise spread over too many nodes may
only use the order's first ``max_nodes_per_order`` ranked candidate nodes (its
region's home node and nearest fallbacks). All lines of an order share the region,
hence the same ranked list, so together they never use more than that many nodes.
An order whose lines cannot reach the limit anyway (lines x ``max_nodes_per_line`` at most
``max_nodes_per_order``) is not restricted.

Example:
    >>> from allocflow.connectors.policy_file import default_policy
    >>> policy = default_policy()  # 2 nodes per line, 3 per order
    >>> order_max_rank(policy, lines=1), order_max_rank(policy, lines=2)
    (None, 3)
"""

from allocflow.models.policy import Policy


def order_max_rank(policy: Policy, lines: int) -> int | None:
    """Return the highest candidate rank a line of an order of ``lines`` lines may use.

    Args:
        policy: The allocation policy (its ``split`` limits).
        lines: How many lines the order was placed with.

    Returns:
        ``split.max_nodes_per_order``, or None when the order's lines can never use
        more nodes than that (each line is limited to ``max_nodes_per_line``).
    """
    split = policy.split
    if lines * split.max_nodes_per_line <= split.max_nodes_per_order:
        return None
    return split.max_nodes_per_order
