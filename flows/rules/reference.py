"""The allocation rules run in one Python loop, without Bytewax.

The dataflow must produce exactly what this produces for the same ordered input;
tests compare the two, and it is the "hand-written loop" a user might write instead.
"""

from collections.abc import Iterable, Iterator

from allocflow.flows.rules.rollup import OrderRollup
from allocflow.flows.rules.routing import route
from allocflow.flows.rules.shard import AllocationShard, ShardOutput
from allocflow.models.decisions import AllocationDecision
from allocflow.models.envelope import EventEnvelope
from allocflow.models.order_status import OrderStatus
from allocflow.models.policy import Policy

DEFAULT_SHARDS = 16


def allocate_stream(
    events: Iterable[EventEnvelope], policy: Policy, shards: int = DEFAULT_SHARDS
) -> Iterator[ShardOutput | OrderStatus]:
    """Yield every decision, exception record and order status, in processing order."""
    states: dict[str, AllocationShard] = {}
    rollups: dict[str, OrderRollup] = {}
    for event in events:
        for shard, command in route(event, policy, shards):
            state = states.setdefault(shard, AllocationShard(policy))
            for output in state.apply(command):
                yield output
                if isinstance(output, AllocationDecision):
                    status = rollups.setdefault(output.order_id, OrderRollup()).apply(output)
                    if status is not None:
                        yield status
