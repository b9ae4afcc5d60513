"""The allocation dataflow: orders, stock, shipments and carrier scans in; decisions out.

::

    raw messages ─► decode (stateless, per batch) ─┬─► dead letters
                                                   └─► events
    events ─► quality gate (stateful, one key) ─┬─► dq alerts
                                                └─► passed events ─► route ─► (shard, command)
    (shard, command) ─► allocate (stateful, keyed by SKU shard) ─┬─► exceptions
                                                                 └─► decisions
    decisions ─► remember orders (stateful, 64 order buckets) ─► roll up (stateful, keyed
                 by order) ─► order status; an order silent for ``order_retention`` is dropped
    passed events ─► route tracking (:mod:`allocflow.flows.route_tracking`) ─┬─► route alerts
                                                                            └─► exceptions

The quality gate (:class:`~allocflow.quality.gate.QualityGate`, with the config's
:class:`~allocflow.quality.settings.GateSettings`) holds one key, so one worker runs it:
its event-time clock and the stale-feed checks compare every feed with every other,
which needs the whole stream in one state, and at about 65k events/s alone it is not
the bottleneck. It drops duplicates (allocation still dedupes commands per shard) and
emits its alerts to ``dq-alerts``, including those it reports when a finite input ends.

Every command for a SKU travels one ordered path into its shard, and customer-level
facts are broadcast to every shard, so the decisions are the same for any number of
workers or processes. Both inputs merge the topics in event-time order: files with
``MergedFileSource``, Kafka with ``AlignedKafkaSource`` (exactly for a backlog, and
live once every active partition has moved past an event).
"""

import pickle
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import NamedTuple, TypeGuard, cast

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.operators import StatefulBatchLogic

from allocflow.connectors.aligned_kafka import aligned_kafka_source
from allocflow.connectors.input_stop import input_stop_requested
from allocflow.connectors.kafka_config import KafkaConnection
from allocflow.connectors.policy_file import default_policy, load_policy
from allocflow.connectors.stream_sinks import CheckedKafkaSink, write_json_lines
from allocflow.connectors.stream_sources import MergedFileSource, RawMessage
from allocflow.flows.route_tracking import track_routes
from allocflow.flows.rules.commands import Command
from allocflow.flows.rules.order_memory import (
    DEFAULT_ORDER_RETENTION,
    ForgetOrder,
    OrderMemory,
    order_bucket,
)
from allocflow.flows.rules.reference import DEFAULT_SHARDS
from allocflow.flows.rules.rollup import OrderRollup
from allocflow.flows.rules.routing import route
from allocflow.flows.rules.shard import AllocationShard, ShardOutput
from allocflow.flows.runtime import tune_garbage_collection
from allocflow.flows.settings import Settings
from allocflow.flows.snapshots import stateful_flat_map
from allocflow.flows.tracking.settings import TrackingSettings
from allocflow.flows.tracking.shipment import RouteOutput
from allocflow.models.allocation_exceptions import AllocationException
from allocflow.models.codec import (
    ContractError,
    dead_letter_record,
    decode_event,
    event_time_rejection,
)
from allocflow.models.dead_letter import DeadLetterRecord
from allocflow.models.decisions import AllocationDecision
from allocflow.models.dq_alerts import DqAlert
from allocflow.models.envelope import EventEnvelope
from allocflow.models.event_time import EventTimeRange
from allocflow.models.order_status import OrderStatus
from allocflow.models.policy import Policy
from allocflow.models.route_alerts import RouteAlert
from allocflow.models.topics import InputTopic, OutputTopic
from allocflow.quality.gate import QualityGate
from allocflow.quality.settings import GateSettings

ALLOCATION_INPUTS = (
    InputTopic.ORDERS,
    InputTopic.RESERVATIONS,
    InputTopic.SHIPMENTS,
    InputTopic.CARRIER_EVENTS,
)
"""Topics the dataflow reads (shipments for goods issues and, with carrier events, routes)."""

GATE_KEY = "gate"
"""The quality gate's single state key."""

OutputRecord = (
    AllocationDecision | AllocationException | OrderStatus | DeadLetterRecord | DqAlert | RouteAlert
)


class Admission(NamedTuple):
    """A decoded event on its way to the quality gate.

    Attributes:
        feed: The logical input topic.
        event: The decoded event.
        raw: Its message bytes, for alert samples.
    """

    feed: str
    event: EventEnvelope
    raw: bytes


_Decoded = Admission | DeadLetterRecord
_Gated = EventEnvelope | DqAlert


@dataclass(frozen=True)
class FileEndpoints:
    """Read and write ``<topic>.jsonl`` files: inputs from one directory, outputs to another."""

    input_dir: Path
    output_dir: Path


@dataclass(frozen=True)
class KafkaEndpoints:
    """Read and write Kafka topics.

    Attributes:
        connection: The cluster.
        topics: Logical topic name → actual topic name, inputs and outputs.
        tail: Keep reading new messages (False: stop at the end of the input topics).
    """

    connection: KafkaConnection
    topics: dict[str, str]
    tail: bool = True


@dataclass(frozen=True)
class AllocationFlowConfig:
    """Everything the allocation dataflow needs.

    Attributes:
        policy: The allocation policy.
        shards: Number of SKU shards (fixed for a deployment: it is part of the state).
        endpoints: Where to read and write.
        gate: Parameters of the data-quality gate.
        tracking: Parameters of route-delay detection.
        order_retention: How long the roll-up remembers an order after its last
            decision (event time).
        event_times: The event times the inputs accept into their merge; the others
            are dead-lettered as ``EVENT_TIME_OUT_OF_RANGE``.
    """

    policy: Policy
    endpoints: FileEndpoints | KafkaEndpoints
    shards: int = DEFAULT_SHARDS
    gate: GateSettings = field(default_factory=GateSettings)
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    order_retention: timedelta = DEFAULT_ORDER_RETENTION
    event_times: EventTimeRange = field(default_factory=EventTimeRange)


def build_allocation_flow(config: AllocationFlowConfig) -> Dataflow:
    """Return the allocation dataflow for ``config``."""
    flow = Dataflow("allocflow-allocation")
    raw = _input(flow, config.endpoints, config.event_times)
    decoded = op.flat_map_batch("decode", raw, _decode_batch)
    split = op.branch("dead_or_alive", decoded, _is_dead_letter)
    alerts, events = _gate(cast(Stream[Admission], split.falses), config.gate)
    commands = op.flat_map_batch("route", events, _Router(config.policy, config.shards))
    outputs = stateful_flat_map("allocate", commands, _Allocator(config.policy))
    decisions = op.filter_map("decisions", outputs, _decision_or_none)
    by_bucket = op.key_on("key_by_order_bucket", decisions, _order_bucket_of)
    remembered = stateful_flat_map(
        "remember_orders", by_bucket, _OrderForgetter(config.order_retention)
    )
    by_order = op.key_on("key_by_order", op.key_rm("unkey_remembered", remembered), _order_id)
    statuses = stateful_flat_map("roll_up", by_order, _roll_up)
    routes = op.branch("route_alerts_apart", track_routes(events, config.tracking), _is_route_alert)
    records: dict[OutputTopic, Stream[OutputRecord]] = {
        OutputTopic.ALLOCATION_DECISIONS: op.merge(
            "decision_records",
            op.key_rm("unkey_decisions", outputs),
            op.key_rm("unkey_statuses", statuses),
            cast(Stream[OutputRecord], routes.falses),
        ),
        OutputTopic.ROUTE_ALERTS: cast(Stream[OutputRecord], routes.trues),
        OutputTopic.DEAD_LETTER: cast(Stream[OutputRecord], split.trues),
        OutputTopic.DQ_ALERTS: cast(Stream[OutputRecord], alerts),
    }
    _output(records, config.endpoints)
    return flow


def get_flow(
    input_dir: str, output_dir: str, policy_path: str, shards: int = DEFAULT_SHARDS
) -> Dataflow:
    """Build the file-to-file flow; for ``python -m bytewax.run`` with several processes.

    Tunes the process's garbage collector, as ``allocflow run`` does
    (:func:`~allocflow.flows.runtime.tune_garbage_collection`).

    Example: ``python -m bytewax.run "allocflow.flows.allocation:get_flow('in', 'out',
    'policy.toml')" -i 0 -a "host0:2101;host1:2101"``.
    """
    endpoints = FileEndpoints(Path(input_dir), Path(output_dir))
    tune_garbage_collection()
    return build_allocation_flow(
        AllocationFlowConfig(load_policy(Path(policy_path)), endpoints, shards)
    )


def get_kafka_flow(policy_path: str | None = None, tail: bool = True) -> Dataflow:
    """Build the Kafka flow from the ``ALLOCFLOW_*`` settings; for ``python -m bytewax.run``.

    Tunes the process's garbage collector, as ``allocflow run`` does
    (:func:`~allocflow.flows.runtime.tune_garbage_collection`).

    Every process of a cluster reads the same settings (bootstrap servers, topic names,
    security, gate and tracking parameters) from its environment. Example: ``python -m
    bytewax.run "allocflow.flows.allocation:get_kafka_flow()" -i 0 -a "host0:2101;host1:2101"``.

    Args:
        policy_path: A policy file; None for the packaged default policy.
        tail: Keep reading new messages (False: stop at the end of the input topics).
    """
    settings = Settings()
    tune_garbage_collection()
    topics = {t.value: settings.topic_name(t) for t in (*InputTopic, *OutputTopic)}
    endpoints = KafkaEndpoints(settings.kafka_connection(), topics, tail=tail)
    policy = default_policy() if policy_path is None else load_policy(Path(policy_path))
    return build_allocation_flow(
        AllocationFlowConfig(
            policy,
            endpoints,
            gate=settings.gate_settings(),
            tracking=settings.tracking_settings(),
            order_retention=settings.order_retention(),
            event_times=settings.event_time_range(),
        )
    )


def _input(
    flow: Dataflow, endpoints: FileEndpoints | KafkaEndpoints, event_times: EventTimeRange
) -> Stream[RawMessage]:
    if isinstance(endpoints, FileEndpoints):
        files = {t.value: endpoints.input_dir / f"{t.value}.jsonl" for t in ALLOCATION_INPUTS}
        return op.input("read_files", flow, MergedFileSource(files, event_times=event_times))
    topics = {t.value: endpoints.topics[t.value] for t in ALLOCATION_INPUTS}
    return aligned_kafka_source(
        flow,
        "read_kafka",
        endpoints.connection,
        topics,
        tail=endpoints.tail,
        event_times=event_times,
    )


def _output(
    records: dict[OutputTopic, Stream[OutputRecord]], endpoints: FileEndpoints | KafkaEndpoints
) -> None:
    decisions = records[OutputTopic.ALLOCATION_DECISIONS]
    split = op.branch("exceptions_apart", decisions, _is_exception)
    by_topic = {
        OutputTopic.ALLOCATION_DECISIONS: split.falses,
        OutputTopic.ALLOCATION_EXCEPTIONS: split.trues,
        OutputTopic.DEAD_LETTER: records[OutputTopic.DEAD_LETTER],
        OutputTopic.DQ_ALERTS: records[OutputTopic.DQ_ALERTS],
        OutputTopic.ROUTE_ALERTS: records[OutputTopic.ROUTE_ALERTS],
    }
    for topic, stream in by_topic.items():
        step = topic.value.replace("-", "_")
        if isinstance(endpoints, FileEndpoints):
            values = op.map(f"{step}_json", stream, _to_json)
            write_json_lines(f"write_{step}", values, endpoints.output_dir / f"{topic.value}.jsonl")
        else:
            messages = op.map(f"{step}_message", stream, _to_message)
            sink = CheckedKafkaSink(endpoints.connection, endpoints.topics[topic.value])
            op.output(f"produce_{step}", messages, sink)


def _gate(
    admissions: Stream[Admission], settings: GateSettings
) -> tuple[Stream[DqAlert], Stream[EventEnvelope]]:
    """Run every decoded event through the one quality gate; return (alerts, passed events)."""
    keyed = op.key_on("gate_key", admissions, _gate_key)
    builder = partial(_GateLogic.resume, settings)
    gated = op.key_rm("unkey_gate", op.stateful_batch("quality_gate", keyed, builder))
    split = op.branch("alerts_or_events", gated, _is_alert)
    return split.trues, cast(Stream[EventEnvelope], split.falses)


class _GateLogic(StatefulBatchLogic[Admission, _Gated, bytes]):
    """The gate step's logic: admit each event, report the pending orphans at end of input."""

    def __init__(self, gate: QualityGate) -> None:
        self._gate = gate

    @classmethod
    def resume(cls, settings: GateSettings, snapshot: bytes | None) -> "_GateLogic":
        """Continue from a snapshot, or start a fresh gate with ``settings``."""
        if snapshot is None:
            return cls(QualityGate(settings))
        return cls(pickle.loads(snapshot))  # noqa: S301 - our own recovery store

    def on_batch(self, values: list[Admission]) -> tuple[list[_Gated], bool]:
        """Return each event's alerts, followed by the event itself unless it is dropped."""
        out: list[_Gated] = []
        for feed, event, raw in values:
            result = self._gate.admit(feed, event, raw)
            out += result.alerts
            if result.passed:
                out.append(event)
        return out, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[tuple[DqAlert, ...], bool]:
        """Return the alerts the gate raises when the input ends.

        An input ended by a requested stop (:mod:`allocflow.connectors.input_stop`)
        has not ended: the events still waiting for their parent stay waiting, in
        the snapshot, for the run that resumes.
        """
        if input_stop_requested():
            return (), StatefulBatchLogic.RETAIN
        return self._gate.finish(), StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        """Return the gate pickled: an immutable copy in one pass (no deepcopy first)."""
        return pickle.dumps(self._gate, protocol=pickle.HIGHEST_PROTOCOL)


def _decode_batch(batch: list[RawMessage]) -> list[_Decoded]:
    return [_decode(message) for message in batch]


def _decode(message: RawMessage) -> _Decoded:
    """Decode a message; dead-letter it if it breaks the contract or its time was screened out."""
    try:
        event = decode_event(InputTopic(message.topic), message.value)
        if message.time_problem is not None:
            raise event_time_rejection(event, message.time_problem)
    except ContractError as error:
        return dead_letter_record(
            error,
            topic=message.topic,
            raw=message.value,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
        )
    return Admission(message.topic, event, message.value)


class _Router:
    """Routes each passed event's commands to shards."""

    def __init__(self, policy: Policy, shards: int) -> None:
        self._policy = policy
        self._shards = shards

    def __call__(self, batch: list[EventEnvelope]) -> Iterable[tuple[str, Command]]:
        for event in batch:
            yield from route(event, self._policy, self._shards)


class _Allocator:
    """The stateful step's mapper: one ``AllocationShard`` per shard key."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy

    def __call__(
        self, state: AllocationShard | None, command: Command
    ) -> tuple[AllocationShard, list[ShardOutput]]:
        shard = state if state is not None else AllocationShard(self._policy)
        return shard, shard.apply(command)


@dataclass(frozen=True)
class _OrderForgetter:
    """Passes each decision on, followed by the orders of its bucket that fell silent."""

    retention: timedelta

    def __call__(
        self, state: OrderMemory | None, decision: AllocationDecision
    ) -> tuple[OrderMemory, list[AllocationDecision | ForgetOrder]]:
        memory = state if state is not None else OrderMemory(self.retention)
        silent = memory.touch(decision.order_id, decision.decided_at)
        return memory, [decision, *(ForgetOrder(order_id) for order_id in silent)]


def _roll_up(
    state: OrderRollup | None, item: AllocationDecision | ForgetOrder
) -> tuple[OrderRollup | None, list[OrderStatus]]:
    """Keep an order's rollup until its bucket forgets it.

    Until then a cancelled order's other lines may still report.
    """
    if isinstance(item, ForgetOrder):
        return None, []
    rollup = state if state is not None else OrderRollup()
    status = rollup.apply(item)
    return rollup, ([] if status is None else [status])


def _is_dead_letter(item: _Decoded) -> TypeGuard[DeadLetterRecord]:
    return isinstance(item, DeadLetterRecord)


def _gate_key(_admission: Admission) -> str:
    return GATE_KEY


def _is_alert(item: _Gated) -> TypeGuard[DqAlert]:
    return isinstance(item, DqAlert)


def _is_route_alert(record: RouteOutput) -> TypeGuard[RouteAlert]:
    return isinstance(record, RouteAlert)


def _is_exception(record: OutputRecord) -> TypeGuard[AllocationException]:
    return isinstance(record, AllocationException)


def _decision_or_none(item: tuple[str, ShardOutput]) -> AllocationDecision | None:
    output = item[1]
    return output if isinstance(output, AllocationDecision) else None


def _order_id(item: AllocationDecision | ForgetOrder) -> str:
    return item.order_id


def _order_bucket_of(decision: AllocationDecision) -> str:
    return order_bucket(decision.order_id)


def _to_json(record: OutputRecord) -> bytes:
    return record.__pydantic_serializer__.to_json(record)


def _to_message(record: OutputRecord) -> tuple[str | None, bytes]:
    return _message_key(record), _to_json(record)


def _message_key(record: OutputRecord) -> str | None:
    if isinstance(record, DeadLetterRecord):
        return record.key
    if isinstance(record, DqAlert):
        return record.feed
    if isinstance(record, RouteAlert):
        return record.shipment_id or f"{record.carrier_id}|{record.lane}"
    return record.order_id
