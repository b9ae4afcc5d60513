"""Ceiling and peer: raw consume + decode, a hand-written loop, and allocflow, side by side.

One embedded broker (Tansu, 4 partitions per topic) holds one simulated backlog
(``allocflow simulate --orders N --seed 7 --faults none``, baseline scenario) in the
four input topics. Each repeat then measures, back to back on the same topics:

* ``consume``, ``orjson`` and ``decode`` (the **ceiling**): one confluent-kafka
  consumer, every partition assigned explicitly from the beginning (no consumer
  group: the embedded broker's group joins stall), ``consume(num_messages=…,
  timeout=…)`` in batches until every partition reports its end. ``consume`` does
  nothing with the values, ``orjson`` parses each with ``orjson.loads`` (a lower
  bound on any decoding), ``decode`` validates each with the package's decoder,
  ``decode_event(InputTopic(topic), value)``. No allocation logic.
* ``peer``: a hand-written single-process loop with the plain-Python rules and no
  Bytewax. It consumes and decodes the backlog as ``decode`` does, sorts it into the
  dataflow's merge order (the order ``AlignedKafkaSource`` releases a backlog in:
  ``(running maximum of event_time in the partition, topic rank, partition,
  offset)``), which is exact here because the whole input is read before anything
  is released, then applies the rules exactly as
  :func:`allocflow.flows.rules.reference.allocate_stream` does (route, one
  ``AllocationShard`` per shard, one ``OrderRollup`` per order) and produces every
  output with a confluent-kafka ``Producer`` (the package's producer settings) to
  fresh output topics: decisions and order statuses to ``allocation-decisions``,
  exceptions to ``allocation-exceptions``, keyed by order id, as the flow does. Every
  delivery is checked; the clock stops after the final ``flush``.
* ``allocflow``: ``allocflow run --no-tail`` as a subprocess, one worker, output
  topics pointed at fresh names. Its events/s is the input messages over the seconds
  of its ``allocation flow finished in X s`` log line (the dataflow alone, without
  interpreter start-up); the subprocess's wall time is recorded beside it. It does
  more than the peer: the quality gate, route tracking and the dead-letter, dq-alert
  and route-alert outputs.

The consumers written here set ``fetch.wait.max.ms`` to 10; allocflow's aligned
input uses the package's consumer settings, ``fetch.wait.max.ms`` 100, with batches
of ``DEFAULT_BATCH_SIZE`` messages. Medians over the repeats are reported, and the
ratios allocflow/ceiling and allocflow/peer of those medians.

Usage::

    .venv/bin/python bench/ceiling_peer.py [--orders 20000] [--repeats 3]
    .venv/bin/python bench/ceiling_peer.py --quick   # 2,000 orders, 1 repeat, nothing written
    .venv/bin/python bench/ceiling_peer.py --show    # the saved results

Results go to ``bench/results/ceiling_peer.json`` (``--quick``: printed only). The
peer and the ceiling import allocflow, and ``allocflow run`` runs, from the checkout
as it is (not an export of ``HEAD``); the number of modified tracked files is recorded.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson
from allocation import load_average, output_of
from allocation import machine_facts as shared_machine_facts
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from allocflow.connectors.aligned_kafka import DEFAULT_BATCH_SIZE
from allocflow.connectors.broker import EmbeddedBroker
from allocflow.connectors.kafka_config import KafkaConnection
from allocflow.connectors.policy_file import default_policy
from allocflow.flows.allocation import ALLOCATION_INPUTS
from allocflow.flows.rules.reference import allocate_stream
from allocflow.models.allocation_exceptions import AllocationException
from allocflow.models.codec import decode_event
from allocflow.models.envelope import EventEnvelope
from allocflow.models.topics import InputTopic, OutputTopic

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_PATH = BENCH_DIR / "results" / "ceiling_peer.json"
SEED = 7
DEFAULT_ORDERS = 20_000
DEFAULT_REPEATS = 3
QUICK_ORDERS = 2_000
PARTITIONS = 4
CONSUME_BATCH = 10_000
CONSUME_TIMEOUT_S = 0.5
FETCH_WAIT_MAX_MS = "10"
POLL_EVERY = 1_000
RUN_TIMEOUT_S = 3600
FINISHED = re.compile(r"allocation flow finished in ([0-9.]+) s")
CEILING_MODES = ("consume", "orjson", "decode")
MODES = (*CEILING_MODES, "peer", "allocflow")
MODE_TITLES = {
    "consume": "ceiling: consume only",
    "orjson": "ceiling: consume + orjson.loads",
    "decode": "ceiling: consume + decode_event",
    "peer": "peer: hand-written loop (rules, produce)",
    "allocflow": "allocflow run --no-tail (1 worker)",
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


# --- consuming ------------------------------------------------------------------------------


def consumer_config(connection: KafkaConnection) -> dict[str, str]:
    """Return the settings of the consumers written here: explicit assignment, fast fetches."""
    config = connection.consumer_config("bench-ceiling-peer")
    config["fetch.wait.max.ms"] = FETCH_WAIT_MAX_MS
    return config


def assignment(consumer: Consumer) -> list[TopicPartition]:
    """Return every partition of the input topics, from the beginning."""
    metadata = consumer.list_topics(timeout=10)
    return [
        TopicPartition(topic.value, partition, OFFSET_BEGINNING)
        for topic in ALLOCATION_INPUTS
        for partition in sorted(metadata.topics[topic.value].partitions)
    ]


def consume_all(connection: KafkaConnection, handle: Callable[[Any], None]) -> int:
    """Consume every input partition to its end, calling ``handle`` on each message.

    Returns:
        The number of messages handled.

    Raises:
        RuntimeError: The consumer reported an error other than a partition's end.
    """
    consumer = Consumer(consumer_config(connection))
    try:
        partitions = assignment(consumer)
        consumer.assign(partitions)
        open_partitions = {(tp.topic, tp.partition) for tp in partitions}
        handled = 0
        while open_partitions:
            for message in consumer.consume(num_messages=CONSUME_BATCH, timeout=CONSUME_TIMEOUT_S):
                error = message.error()
                if error is None:
                    handle(message)
                    handled += 1
                elif error.code() == KafkaError._PARTITION_EOF:
                    open_partitions.discard((message.topic(), message.partition()))
                else:
                    raise RuntimeError(f"consumer error: {error}")
        return handled
    finally:
        consumer.close()


def measure_ceiling(connection: KafkaConnection, mode: str) -> dict[str, Any]:
    """Consume the backlog once in ``mode`` (consume, orjson or decode); return the timing."""
    handlers: dict[str, Callable[[Any], None]] = {
        "consume": _ignore,
        "orjson": _parse,
        "decode": _decode,
    }
    started = time.perf_counter()
    messages = consume_all(connection, handlers[mode])
    seconds = time.perf_counter() - started
    return {"messages": messages, "seconds": round(seconds, 3), "events_per_s": messages / seconds}


def _ignore(message: Any) -> None:
    message.value()


def _parse(message: Any) -> None:
    orjson.loads(message.value())


def _decode(message: Any) -> None:
    decode_event(InputTopic(message.topic()), message.value())


# --- the peer -------------------------------------------------------------------------------


@dataclass
class MergeBuffer:
    """Decoded events with their merge keys, in the order the dataflow's input releases them.

    Attributes:
        running_max: Latest event time read per partition, in microseconds.
        keyed: ``(merge key, event)`` pairs.
    """

    running_max: dict[tuple[str, int], int] = field(default_factory=dict)
    keyed: list[tuple[tuple[int, int, int, int], EventEnvelope]] = field(default_factory=list)

    def add(self, message: Any) -> None:
        """Decode a consumed message and key it as ``AlignedKafkaSource`` does."""
        topic = InputTopic(message.topic())
        event = decode_event(topic, message.value())
        lane = (message.topic(), message.partition())
        micros = (event.event_time - _EPOCH) // _MICROSECOND
        latest = max(self.running_max.get(lane, micros), micros)
        self.running_max[lane] = latest
        rank = ALLOCATION_INPUTS.index(topic)
        self.keyed.append(((latest, rank, message.partition(), message.offset()), event))

    def events(self) -> Iterator[EventEnvelope]:
        """Yield the events in merge order."""
        self.keyed.sort(key=_merge_key)
        return (event for _key, event in self.keyed)


def _merge_key(item: tuple[tuple[int, int, int, int], EventEnvelope]) -> tuple[int, int, int, int]:
    return item[0]


@dataclass
class DeliveryCount:
    """Deliveries reported by the producer."""

    delivered: int = 0
    failed: int = 0
    first_error: str | None = None

    def report(self, error: KafkaError | None, _message: Any) -> None:
        """The producer's delivery callback."""
        if error is None:
            self.delivered += 1
            return
        self.failed += 1
        self.first_error = self.first_error or str(error)


def produce(producer: Producer, topic: str, record: Any, deliveries: DeliveryCount) -> None:
    """Produce one output record, serving delivery reports while the local queue is full."""
    value = record.__pydantic_serializer__.to_json(record)
    while True:
        try:
            producer.produce(topic, value, key=record.order_id, on_delivery=deliveries.report)
        except BufferError:
            producer.poll(0.05)
        else:
            return


def run_peer(connection: KafkaConnection, outputs: dict[OutputTopic, str]) -> dict[str, Any]:
    """Consume, merge, allocate and produce the backlog once; return the timings and counts.

    Raises:
        RuntimeError: A delivery failed or stayed undelivered after the flush.
    """
    policy = default_policy()
    buffer = MergeBuffer()
    deliveries = DeliveryCount()
    producer = Producer(connection.producer_config())
    started = time.perf_counter()
    messages = consume_all(connection, buffer.add)
    consumed = time.perf_counter()
    events = buffer.events()
    sorted_at = time.perf_counter()
    produced = {OutputTopic.ALLOCATION_DECISIONS: 0, OutputTopic.ALLOCATION_EXCEPTIONS: 0}
    for count, record in enumerate(allocate_stream(events, policy), 1):
        topic = _output_topic(record)
        produce(producer, outputs[topic], record, deliveries)
        produced[topic] += 1
        if count % POLL_EVERY == 0:
            producer.poll(0)
    allocated = time.perf_counter()
    left = producer.flush(60)
    finished = time.perf_counter()
    if left or deliveries.failed or deliveries.delivered != sum(produced.values()):
        failed, error = deliveries.failed, deliveries.first_error
        raise RuntimeError(f"{left} undelivered, {failed} failed: {error}")
    seconds = finished - started
    return {
        "messages": messages,
        "seconds": round(seconds, 3),
        "events_per_s": messages / seconds,
        "phases_s": {
            "consume_decode_key": round(consumed - started, 3),
            "sort": round(sorted_at - consumed, 3),
            "allocate_produce": round(allocated - sorted_at, 3),
            "final_flush": round(finished - allocated, 3),
        },
        "produced": {topic.value: count for topic, count in produced.items()},
    }


def _output_topic(record: Any) -> OutputTopic:
    if isinstance(record, AllocationException):
        return OutputTopic.ALLOCATION_EXCEPTIONS
    return OutputTopic.ALLOCATION_DECISIONS


# --- allocflow ------------------------------------------------------------------------------


def output_topics(run: str) -> dict[OutputTopic, str]:
    """Return fresh output topic names for one run."""
    return {topic: f"{run}-{topic.value}" for topic in OutputTopic}


def base_environment(bootstrap: str) -> dict[str, str]:
    """Return this process's environment without ALLOCFLOW_ settings, pointed at ``bootstrap``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ALLOCFLOW_")}
    return env | {"ALLOCFLOW_BOOTSTRAP_SERVERS": bootstrap}


def topic_environment(names: dict[OutputTopic, str]) -> dict[str, str]:
    """Return the ``ALLOCFLOW_TOPIC_*`` settings that point the outputs at ``names``."""
    return {f"ALLOCFLOW_TOPIC_{topic.name}": name for topic, name in names.items()}


def allocflow(args: list[str], env: dict[str, str], log: Path) -> None:
    """Run ``allocflow ARGS`` with its output in ``log``.

    Raises:
        RuntimeError: It exited non-zero (the message holds the log's tail).
    """
    command = [str(Path(sys.executable).with_name("allocflow")), *args]
    with log.open("wb") as out:
        code = subprocess.run(
            command,
            check=False,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=RUN_TIMEOUT_S,
        ).returncode
    if code != 0:
        raise RuntimeError(f"{' '.join(args)} exited {code}:\n{log.read_text()[-3000:]}")


def run_allocflow(env: dict[str, str], log: Path, messages: int) -> dict[str, Any]:
    """Run ``allocflow run --no-tail`` once; return its flow time and events/s."""
    started = time.perf_counter()
    allocflow(["run", "--no-tail"], env, log)
    wall = time.perf_counter() - started
    match = FINISHED.search(log.read_text())
    if match is None:
        raise RuntimeError(f"no 'allocation flow finished' line in {log}")
    seconds = float(match.group(1))
    return {
        "messages": messages,
        "seconds": seconds,
        "wall_s": round(wall, 3),
        "events_per_s": messages / seconds,
    }


def topic_sizes(connection: KafkaConnection, names: dict[OutputTopic, str]) -> dict[str, int]:
    """Return the messages in each output topic (high watermarks summed over partitions)."""
    consumer = Consumer(consumer_config(connection))
    try:
        metadata = consumer.list_topics(timeout=10)
        return {
            topic.value: sum(
                consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=10)[1]
                for partition in metadata.topics[name].partitions
            )
            for topic, name in names.items()
        }
    finally:
        consumer.close()


# --- the experiment -------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """The broker and the stream in it.

    Attributes:
        broker: The running broker.
        work: Scratch directory for logs.
        messages: Input messages in the four topics.
        per_topic: Input messages per topic.
    """

    broker: EmbeddedBroker
    work: Path
    messages: int
    per_topic: dict[str, int]

    @property
    def connection(self) -> KafkaConnection:
        """The broker's connection."""
        return self.broker.connection("bench-ceiling-peer")


def simulate(broker: EmbeddedBroker, work: Path, orders: int) -> Setup:
    """Produce the simulated backlog into the input topics; return the setup."""
    manifest = work / "manifest.json"
    args = ["simulate", "--orders", str(orders), "--seed", str(SEED), "--faults", "none"]
    args += ["--bootstrap", broker.bootstrap_servers, "--no-progress", "--manifest", str(manifest)]
    allocflow(args, base_environment(broker.bootstrap_servers), work / "simulate.log")
    document = json.loads(manifest.read_text())
    per_topic = {topic: entry["messages"] for topic, entry in document["topics"].items()}
    return Setup(broker, work, int(document["messages"]), per_topic)


def repeat_once(setup: Setup, repeat: int) -> dict[str, Any]:
    """Run every mode once, back to back; return their results."""
    result: dict[str, Any] = {"repeat": repeat}
    for mode in CEILING_MODES:
        result[mode] = measure_ceiling(setup.connection, mode)
        _check_count(mode, result[mode]["messages"], setup.messages)
    peer_topics = output_topics(f"peer{repeat}")
    flow_topics = output_topics(f"flow{repeat}")
    setup.broker.create_topics([*peer_topics.values(), *flow_topics.values()], PARTITIONS)
    result["peer"] = run_peer(setup.connection, peer_topics)
    _check_count("peer", result["peer"]["messages"], setup.messages)
    env = base_environment(setup.broker.bootstrap_servers) | topic_environment(flow_topics)
    log = setup.work / f"run{repeat}.log"
    result["allocflow"] = run_allocflow(env, log, setup.messages)
    result["allocflow"]["output_topics"] = topic_sizes(setup.connection, flow_topics)
    for mode in MODES:
        _progress(f"repeat {repeat}: {mode}: {result[mode]['events_per_s']:,.0f} events/s")
    return result


def _check_count(mode: str, got: int, expected: int) -> None:
    if got != expected:
        raise RuntimeError(f"{mode} read {got} messages, the simulator sent {expected}")


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def summarize(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the median events/s of each mode and the ratios of allocflow to the others."""
    medians = {
        mode: statistics.median(run[mode]["events_per_s"] for run in repeats) for mode in MODES
    }
    flow = medians["allocflow"]
    return {
        "median_events_per_s": {mode: round(value) for mode, value in medians.items()},
        "range_events_per_s": {
            mode: [
                round(min(r[mode]["events_per_s"] for r in repeats)),
                round(max(r[mode]["events_per_s"] for r in repeats)),
            ]
            for mode in MODES
        },
        "allocflow_over_ceiling": round(flow / medians["decode"], 3),
        "allocflow_over_orjson_ceiling": round(flow / medians["orjson"], 3),
        "allocflow_over_peer": round(flow / medians["peer"], 3),
        "peer_over_ceiling": round(medians["peer"] / medians["decode"], 3),
        "target_allocflow_over_peer": 0.7,
    }


def machine_facts() -> dict[str, Any]:
    """Return what the numbers ran on: the shared facts, the Kafka client, the code."""
    changed = output_of(["git", "-C", str(REPO_DIR), "status", "--porcelain", "-uno"]) or ""
    return {
        **shared_machine_facts(),
        "confluent_kafka": version("confluent-kafka"),
        "git_commit": output_of(["git", "-C", str(REPO_DIR), "rev-parse", "HEAD"]),
        "git_dirty_files": len(changed.splitlines()),
    }


def measure(orders: int, repeats: int) -> dict[str, Any]:
    """Run the whole experiment; return the results document."""
    load_before = load_average()
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="ceiling-peer-") as scratch:
        work = Path(scratch)
        with EmbeddedBroker(log_dir=work) as broker:
            broker.create_topics([topic.value for topic in InputTopic], PARTITIONS)
            setup = simulate(broker, work, orders)
            _progress(f"{setup.messages:,} input messages in {broker.bootstrap_servers}")
            runs = [repeat_once(setup, repeat) for repeat in range(1, repeats + 1)]
    return {
        "benchmark": "ceiling_peer",
        "started": started.isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "stream": {
            "orders": orders,
            "seed": SEED,
            "faults": "none",
            "partitions": PARTITIONS,
            "messages": setup.messages,
            "per_topic": setup.per_topic,
        },
        "settings": {
            "bench_consumer_fetch_wait_max_ms": int(FETCH_WAIT_MAX_MS),
            "bench_consume_batch": CONSUME_BATCH,
            "allocflow_input_fetch_wait_max_ms": 100,
            "allocflow_input_batch": DEFAULT_BATCH_SIZE,
        },
        "machine": machine_facts(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "repeats": runs,
        "summary": summarize(runs),
    }


def render(result: dict[str, Any]) -> str:
    """Return the results table."""
    summary = result["summary"]
    ceiling = summary["median_events_per_s"]["decode"]
    flow = summary["median_events_per_s"]["allocflow"]
    lines = [
        f"{result['stream']['messages']:,} input messages ({result['stream']['orders']:,} orders), "
        f"{len(result['repeats'])} repeat(s), medians",
        "",
        f"{'mode':<44} {'events/s':>10} {'vs ceiling':>11} {'allocflow/x':>12}",
    ]
    for mode in MODES:
        rate = summary["median_events_per_s"][mode]
        lines.append(
            f"{MODE_TITLES[mode]:<44} {rate:>10,} {rate / ceiling:>10.2f}x {flow / rate:>11.2f}x"
        )
    lines += [
        "",
        f"allocflow/ceiling (decode) {summary['allocflow_over_ceiling']:.2f}x, "
        f"allocflow/peer {summary['allocflow_over_peer']:.2f}x (target >= 0.7x)",
    ]
    return "\n".join(lines)


def main() -> None:
    """Parse the arguments, measure, print the table and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=DEFAULT_ORDERS)
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    parser.add_argument("--quick", action="store_true", help="2,000 orders, 1 repeat, no file")
    parser.add_argument("--output", type=Path, default=None, help=f"default {RESULTS_PATH}")
    parser.add_argument("--show", action="store_true", help="print the saved results' table")
    args = parser.parse_args()
    if args.show:
        print(render(json.loads(RESULTS_PATH.read_text())))
        return
    orders, repeats = (QUICK_ORDERS, 1) if args.quick else (args.orders, args.repeats)
    result = measure(orders, repeats)
    print(render(result))
    output = args.output or (None if args.quick else RESULTS_PATH)
    if output is not None:
        output.write_text(json.dumps(result, indent=2) + "\n")
        print(f"results written to {output}")


if __name__ == "__main__":
    main()
