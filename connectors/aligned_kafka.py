"""A Kafka input that emits the messages of several topics in event-time order.

Bytewax's Kafka input makes every Kafka partition its own source partition, consumed
in batches independently, so a dataflow may see a whole batch of orders before the
stock snapshots that happened earlier in business time. :class:`AlignedKafkaSource`
reads every partition of every topic with one consumer and releases the messages in
one merged order instead, the order
:class:`~allocflow.connectors.stream_sources.MergedFileSource` gives files.

Merge order:
    Each Kafka partition is a FIFO lane. A message's merge key is ``(merge time,
    topic rank, partition, offset)``, where the topic rank is the topic's position
    in ``topics`` and the merge time is the latest ``event_time`` read in its
    partition up to and including the message (see
    :func:`~allocflow.connectors.stream_sources.event_time_of`). Late messages and
    lines without a readable ``event_time`` take that running maximum, so they stay
    beside the neighbours they arrived with. Every partition is screened as a file is
    (:class:`~allocflow.connectors.event_time_screen.EventTimeScreen`): a message whose
    ``event_time`` is out of the accepted range, or jumps more than the skew ahead of
    its partition alone, never moves the running maximum and comes out with
    ``time_problem`` set. A jump waits for its partition's next readable message; at
    the end of a ``tail=False`` input it is accepted (as at the end of a file); in a
    tailing run, once its partition has been quiet at its end for ``idle_s``, it is
    accepted if it is at most the skew ahead of the latest event time of the other
    partitions, and quarantined otherwise.

Release rule:
    Every unread message of a partition has a merge key above the partition's
    *bound*, ``(running maximum, topic rank, partition)``. A buffered message is
    released once its key is at most the smallest bound of the *active*
    partitions, in merge-key order, so no message that could still arrive sorts
    before it. A partition is inactive once it reported its end (EOF) and received
    nothing for ``idle_s``; an active partition that has read nothing yet holds
    everything back. With every partition inactive, everything buffered is released.
    As a safety valve, a message buffered longer than ``max_hold_s`` is released
    ahead of the watermark, together with every buffered message that sorts before
    it, and logged once per partition. The valve is armed once every partition has
    reached its end at least once (the source is live) or when the watermark has not
    moved for ``max_hold_s`` (a partition is stuck), never while a backlog is still
    being read and the watermark advances.

Guarantee:
    With the whole input already in Kafka (a backlog replay) and no partition idle
    for ``idle_s`` mid-read, the output order is exactly the merge order:
    deterministic, and the same as ``MergedFileSource`` over one file per partition
    holding that partition's messages in offset order, ranked by (topic rank,
    partition). With ``tail=False`` a partition ends at its first EOF, so a backlog
    replay needs no idle wait at all. Live, a message is released once every active
    partition has moved past it, so the added latency is bounded by the slowest
    active partition's event-time lag, or by ``max_hold_s`` once the source is live.
    With sparse traffic that lag is the wait for a partition's next message, up to
    ``idle_s`` after its last one. A message produced to a partition after it went
    idle may sort before messages already released; it is emitted at once.

Broker faults:
    A cluster that becomes unreachable is logged once (``Kafka at HOST:PORT
    unreachable since …``) and every few seconds after; the consumer keeps retrying
    and the run goes on when the cluster answers again. Every few seconds (every
    second during an outage) the source compares the topics' ids with those it
    started with: a topic that is gone is logged (``the broker lost it``) and waited
    for; a topic with a new id was recreated, so the broker lost its data and the
    old offsets mean nothing: it is logged with the offsets read so far and read
    again from its new beginning. Messages already read from the old topic are
    kept. Consumer errors for a partition are logged at most every few seconds.

Recovery:
    The snapshot maps ``"<actual topic>:<partition>"`` to the offset of the
    partition's earliest unreleased message (its next offset to read when nothing is
    buffered), so a resumed run re-reads what was buffered and loses nothing.
    Partitions absent from the snapshot start at the beginning. A resumed partition
    restarts its running maximum at its first readable message, so an unreadable or
    late message at the very head of a resumed partition may come out earlier than
    in an uninterrupted run; nothing is lost or duplicated.

Example:
    ::

        flow = Dataflow("allocation")
        raw = aligned_kafka_source(
            flow, "read_kafka", connection, {"reservations": "res-prod", "orders": "orders-prod"}
        )
"""

import heapq
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from allocflow.connectors.event_time_screen import EventTimeScreen, Screened
from allocflow.connectors.input_stop import input_stop_requested
from allocflow.connectors.kafka_config import KafkaConnection
from allocflow.connectors.kafka_health import (
    LOG_EVERY_S,
    BrokerWatch,
    changed_topics,
    topic_ids,
    with_error_callback,
)
from allocflow.connectors.stream_sources import (
    DEFAULT_BATCH_SIZE,
    KAFKA_SEQUENCE,
    RawMessage,
    event_time_of,
)
from allocflow.models.event_time import EventTimeRange

_LOG = logging.getLogger(__name__)

AlignedSnapshot = dict[str, int]
"""``"<actual topic>:<partition>"`` → offset of the next message to read on resume."""

_PARTITION = "aligned"
_POLL_S = 0.05
_METADATA_TIMEOUT_S = 30.0
_CHECK_EVERY_S = 5.0
_CHECK_EVERY_UNREACHABLE_S = 1.0
_CHECK_TIMEOUT_S = 1.0
_GONE = frozenset(
    {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION}
)
_OUT_OF_RANGE = frozenset({KafkaError.OFFSET_OUT_OF_RANGE, KafkaError._AUTO_OFFSET_RESET})
_MAX_BUFFERED = 20_000
"""Messages buffered per Kafka partition before it is paused (resumed at half)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_BEGINNING_OF_TIME = -(2**63)
_RELEASE_ALL = (2**63, 0)

_MergeKey = tuple[int, int]
"""(merge time in epoch microseconds, lane index); lanes are numbered in rank order."""


class AlignedKafkaError(RuntimeError):
    """The aligned Kafka input cannot go on: a topic is unusable or the client failed."""


class AlignedKafkaSource(FixedPartitionedSource[RawMessage, AlignedSnapshot]):
    """Reads Kafka topics with one consumer and emits their messages in event-time order.

    The source has one Bytewax partition, so one worker reads every Kafka partition
    of every topic; see the module documentation for the order and the guarantee.
    Partitions are assigned, never subscribed (no consumer group, nothing committed:
    recovery owns the offsets), and listed once, when the run starts.

    Args:
        connection: The cluster; its consumer configuration (security and ``extra``
            included) is used, with partition EOF reporting forced on.
        topics: Logical topic → actual topic name; the order sets the topic rank,
            which breaks ties between equal merge times.
        tail: Keep following the topics; False ends the input once every partition
            reached its end and everything read was emitted.
        idle_s: Seconds a partition at its end must stay quiet before it stops
            holding the others back.
        max_hold_s: Seconds a message may wait for the watermark once the source is
            live (or the watermark is stuck) before it is released anyway.
        batch_size: Most messages consumed, and emitted, per batch.
        event_times: The event times accepted into the merge.

    Raises:
        ValueError: No topics, two logical topics naming one actual topic, or a
            setting out of range.
    """

    def __init__(
        self,
        connection: KafkaConnection,
        topics: Mapping[str, str],
        *,
        tail: bool = True,
        idle_s: float = 2.0,
        max_hold_s: float = 30.0,
        batch_size: int = DEFAULT_BATCH_SIZE,
        event_times: EventTimeRange | None = None,
    ) -> None:
        _check_settings(topics, idle_s, max_hold_s, batch_size)
        self._connection = connection
        self._topics = tuple(topics.items())
        self._tail = tail
        self._idle_s = idle_s
        self._max_hold_s = max_hold_s
        self._batch_size = batch_size
        self._event_times = event_times or EventTimeRange()

    def list_parts(self) -> list[str]:
        """Return the single partition; any worker can reach the cluster."""
        return [_PARTITION]

    def build_part(
        self,
        step_id: str,
        for_part: str,
        resume_state: AlignedSnapshot | None,
    ) -> "AlignedKafkaPartition":
        """Connect a consumer and assign every partition at its resume offset.

        Raises:
            ValueError: ``for_part`` is not this source's partition.
            AlignedKafkaError: A topic is missing or its metadata unavailable.
        """
        if for_part != _PARTITION:
            raise ValueError(f"unknown partition {for_part!r} of an aligned Kafka source")
        watch = BrokerWatch(self._connection.bootstrap_servers, "consumer")
        consumer = Consumer(with_error_callback(self._consumer_config(step_id), watch))
        try:
            lanes = _lanes(consumer, self._topics, self._event_times)
            consumer.assign([lane.start(resume_state or {}) for lane in lanes])
            guard = self._guard(watch)
        except BaseException:
            consumer.close()
            raise
        _warn_unknown(resume_state or {}, lanes)
        return AlignedKafkaPartition(
            consumer,
            lanes,
            guard=guard,
            tail=self._tail,
            idle_s=self._idle_s,
            max_hold_s=self._max_hold_s,
            batch_size=self._batch_size,
        )

    def _consumer_config(self, step_id: str) -> dict[str, str]:
        config = self._connection.consumer_config(f"allocflow-aligned-{step_id}")
        config.update({"enable.partition.eof": "true", "enable.auto.commit": "false"})
        return config

    def _guard(self, watch: BrokerWatch) -> "TopicGuard":
        return TopicGuard(self._connection, watch, [name for _topic, name in self._topics])


def _check_settings(
    topics: Mapping[str, str], idle_s: float, max_hold_s: float, batch_size: int
) -> None:
    if not topics:
        raise ValueError("an aligned Kafka source needs at least one topic")
    if len(set(topics.values())) != len(topics):
        raise ValueError(f"two logical topics read the same Kafka topic: {dict(topics)}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive (got {batch_size})")
    if idle_s < 0 or max_hold_s <= 0:
        raise ValueError(f"need idle_s >= 0 and max_hold_s > 0 (got {idle_s}, {max_hold_s})")


class _Lane:
    """One Kafka partition: its FIFO buffer, event-time screen and read state.

    Args:
        index: Position in the merge order of lanes, i.e. in (topic rank, partition).
        topic: Logical topic.
        actual: Actual topic name.
        partition: Kafka partition.
        event_times: The event times accepted into the merge.
    """

    __slots__ = (
        "actual",
        "buffer",
        "ever_at_end",
        "finished",
        "index",
        "last_received",
        "next_offset",
        "partition",
        "paused",
        "quiet_at_end",
        "screen",
        "topic",
    )

    def __init__(
        self, index: int, topic: str, actual: str, partition: int, event_times: EventTimeRange
    ) -> None:
        self.index = index
        self.topic = topic
        self.actual = actual
        self.partition = partition
        self.buffer: deque[tuple[int, RawMessage, float]] = deque()
        self.screen = EventTimeScreen[tuple[RawMessage, float]](event_times)
        self.next_offset: int | None = None
        self.quiet_at_end = False
        self.ever_at_end = False
        self.finished = False
        self.paused = False
        self.last_received = time.monotonic()

    @property
    def name(self) -> str:
        """``"<actual topic>:<partition>"``, the lane's key in a snapshot."""
        return f"{self.actual}:{self.partition}"

    def topic_partition(self) -> TopicPartition:
        """Return the lane's Kafka partition, for pause and resume."""
        return TopicPartition(self.actual, self.partition)

    def start(self, snapshot: Mapping[str, int]) -> TopicPartition:
        """Take the lane's resume offset from ``snapshot``; return its assignment."""
        self.next_offset = snapshot.get(self.name)
        start = OFFSET_BEGINNING if self.next_offset is None else self.next_offset
        return TopicPartition(self.actual, self.partition, start)

    @property
    def running_max(self) -> int:
        """The latest accepted event time of the lane, in epoch microseconds."""
        return _micros(self.screen.running_max)

    def append(self, message: Any, now: float) -> bool:
        """Screen and buffer a consumed message; return whether it gave the buffer a head."""
        value: bytes = message.value() or b""
        offset: int = message.offset()
        timestamp_type, timestamp = message.timestamp()
        raw = RawMessage(
            topic=self.topic,
            partition=self.partition,
            offset=offset,
            key=message.key(),
            value=value,
            timestamp_ms=None if timestamp_type == TIMESTAMP_NOT_AVAILABLE else timestamp,
            sequence=KAFKA_SEQUENCE,
        )
        self.next_offset = offset + 1
        self.quiet_at_end = False
        self.last_received = now
        return self._buffer(self.screen.push(event_time_of(value), (raw, now)))

    def finish_screen(self) -> bool:
        """Accept a jump still held (the lane ended); return whether it gave the buffer a head."""
        return self._buffer(self.screen.finish())

    def settle_screen(self, reference: int | None) -> bool:
        """Decide a held jump against the other lanes' latest event time (epoch µs).

        Returns:
            Whether it gave the buffer a head.
        """
        moment = None if reference is None else _EPOCH + reference * _MICROSECOND
        return self._buffer(self.screen.settle(moment))

    def _buffer(self, screened: list[Screened[tuple[RawMessage, float]]]) -> bool:
        was_empty = not self.buffer
        for verdict in screened:
            raw, received = verdict.item
            if verdict.problem is not None:
                raw = replace(raw, time_problem=verdict.problem)
            self.buffer.append((_micros(verdict.merge_time), raw, received))
        return was_empty and bool(self.buffer)

    def head_key(self) -> _MergeKey:
        """Return the merge key of the oldest buffered message."""
        return self.buffer[0][0], self.index

    def bound(self) -> _MergeKey:
        """Return the key every message still unread in this lane sorts after."""
        return self.running_max, self.index

    def active(self, now: float, idle_s: float) -> bool:
        """Return whether the lane may still receive messages that hold others back."""
        if self.finished:
            return False
        return not (self.quiet_at_end and now - self.last_received >= idle_s)

    def resume_offset(self) -> int | None:
        """Return the offset to re-read from on resume; None when nothing is known."""
        held = self.screen.held
        if self.buffer:
            offset: int | None = self.buffer[0][1].offset
            return offset
        if held:
            return held[0][0].offset
        return self.next_offset


def _micros(moment: datetime | None) -> int:
    """Epoch microseconds of an event time; the beginning of time for None."""
    if moment is None:
        return _BEGINNING_OF_TIME
    return (moment - _EPOCH) // _MICROSECOND


def _lanes(
    consumer: Consumer, topics: tuple[tuple[str, str], ...], event_times: EventTimeRange
) -> list[_Lane]:
    """Return one lane per Kafka partition, numbered in (topic rank, partition) order."""
    lanes: list[_Lane] = []
    for topic, actual in topics:
        for partition in _partitions(consumer, actual):
            lanes.append(_Lane(len(lanes), topic, actual, partition, event_times))
    return lanes


def _partitions(consumer: Consumer, actual: str) -> list[int]:
    try:
        metadata = consumer.list_topics(actual, timeout=_METADATA_TIMEOUT_S)
    except KafkaException as error:
        raise AlignedKafkaError(f"no metadata for Kafka topic {actual!r}: {error}") from error
    described = metadata.topics.get(actual)
    if described is None or described.error is not None or not described.partitions:
        reason = "no partitions" if described is None else str(described.error or "no partitions")
        raise AlignedKafkaError(f"Kafka topic {actual!r} is not readable: {reason}")
    return sorted(described.partitions)


def _warn_unknown(snapshot: Mapping[str, int], lanes: list[_Lane]) -> None:
    unknown = sorted(set(snapshot) - {lane.name for lane in lanes})
    if unknown:
        _LOG.warning("resume offsets of partitions no longer read are ignored: %s", unknown)


class TopicGuard:
    """Notices, in a background thread, a cluster that came back and recreated topics.

    The thread reads the topics' ids once the cluster answers, then compares them
    every few seconds (every second while the cluster is unreachable or a topic is
    gone), logging every change; the reading worker collects the recreated topics
    with :meth:`take_recreated`, so it never waits for the cluster itself.

    Args:
        connection: The cluster.
        watch: The consumer's connection watch; told when the cluster answers.
        topics: Actual names of the topics read.
    """

    def __init__(self, connection: KafkaConnection, watch: BrokerWatch, topics: list[str]) -> None:
        config = with_error_callback(connection.admin_config(), watch)
        config["log_level"] = 0
        self._admin = AdminClient(config)
        self._watch = watch
        self._topics = topics
        self._servers = connection.bootstrap_servers
        self._ids: dict[str, str] | None = None
        self._gone: set[str] = set()
        self._recreated: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kafka-topic-guard", daemon=True)
        self._thread.start()

    def take_recreated(self) -> list[str]:
        """Return the topics recreated since the last call."""
        with self._lock:
            recreated, self._recreated = self._recreated, []
        return recreated

    def close(self) -> None:
        """Stop the thread."""
        self._stop.set()
        self._thread.join(_CHECK_TIMEOUT_S + 1.0)

    def _run(self) -> None:
        while True:
            self._check()
            urgent = self._ids is None or self._watch.unreachable or self._gone
            if self._stop.wait(_CHECK_EVERY_UNREACHABLE_S if urgent else _CHECK_EVERY_S):
                return

    def _check(self) -> None:
        try:
            current = topic_ids(self._admin, self._topics, _CHECK_TIMEOUT_S)
        except KafkaException:
            return
        self._watch.reachable()
        if self._ids is None:
            self._ids = current
            return
        for name, new_id in changed_topics(self._ids, current).items():
            if new_id is None:
                self._note_gone(name)
            else:
                self._note_recreated(name, self._ids[name], new_id)
                self._ids[name] = new_id

    def _note_recreated(self, name: str, old_id: str, new_id: str) -> None:
        self._gone.discard(name)
        _LOG.warning(
            "topic %s on Kafka at %s was recreated (id %s, now %s): the broker lost its "
            "data; reading the new topic from its beginning",
            name,
            self._servers,
            old_id,
            new_id,
        )
        with self._lock:
            self._recreated.append(name)

    def _note_gone(self, name: str) -> None:
        if name in self._gone:
            return
        self._gone.add(name)
        _LOG.warning(
            "topic %s is gone from Kafka at %s: the broker lost it; waiting for it to come back",
            name,
            self._servers,
        )


class AlignedKafkaPartition(StatefulSourcePartition[RawMessage, AlignedSnapshot]):
    """The single partition of :class:`AlignedKafkaSource`: the consumer and the merge.

    Args:
        consumer: A consumer with every lane's partition assigned; closed by
            :meth:`close`.
        lanes: The lanes, in merge order.
        guard: Watches the topics for a broker that lost them.
        tail: See :class:`AlignedKafkaSource`.
        idle_s: See :class:`AlignedKafkaSource`.
        max_hold_s: See :class:`AlignedKafkaSource`.
        batch_size: See :class:`AlignedKafkaSource`.
    """

    def __init__(
        self,
        consumer: Consumer,
        lanes: list[_Lane],
        *,
        guard: TopicGuard,
        tail: bool,
        idle_s: float,
        max_hold_s: float,
        batch_size: int,
    ) -> None:
        self._consumer = consumer
        self._lanes = lanes
        self._guard = guard
        self._error_logged: dict[tuple[str, int], float] = {}
        self._by_partition = {(lane.actual, lane.partition): lane for lane in lanes}
        self._tail = tail
        self._idle_s = idle_s
        self._max_hold_s = max_hold_s
        self._batch_size = batch_size
        self._heads: list[_MergeKey] = []
        self._more_ready = False
        self._watermark: _MergeKey = (_BEGINNING_OF_TIME, 0)
        self._watermark_moved = time.monotonic()
        self._live = False
        self._forced: set[int] = set()

    @property
    def buffered(self) -> int:
        """Messages read from Kafka and not emitted yet (those the screens hold included)."""
        return sum(len(lane.buffer) + len(lane.screen.held) for lane in self._lanes)

    def next_batch(self) -> list[RawMessage]:
        """Consume what is available and return the messages the watermark releases.

        Returns:
            Up to ``batch_size`` messages in merge order; empty when none is released.

        Raises:
            StopIteration: ``tail=False`` and every partition is read and emitted, or
                a stop was requested (:mod:`allocflow.connectors.input_stop`); the
                snapshot then resumes at the earliest message not emitted.
            AlignedKafkaError: The client reported a fatal error.
        """
        if input_stop_requested():
            raise StopIteration
        self._restart_recreated(self._guard.take_recreated())
        self._ingest(self._consume())
        now = time.monotonic()
        self._settle_quiet_jumps(now)
        batch = self._release(self._limit(now))
        self._more_ready = len(batch) == self._batch_size
        self._throttle()
        if not batch and not self._tail and all(lane.finished for lane in self._lanes):
            raise StopIteration
        return batch

    def snapshot(self) -> AlignedSnapshot:
        """Return every partition's offset of its earliest unreleased message."""
        return {
            lane.name: offset
            for lane in self._lanes
            if (offset := lane.resume_offset()) is not None
        }

    def close(self) -> None:
        """Stop watching the topics and close the consumer."""
        self._guard.close()
        self._consumer.close()

    def _consume(self) -> list[Any]:
        timeout = 0.0 if self._more_ready else _POLL_S
        try:
            messages: list[Any] = self._consumer.consume(self._batch_size, timeout)
        except KafkaException as exception:
            self._on_error(exception.args[0], None)
            return []
        return messages

    def _restart_recreated(self, topics: list[str]) -> None:
        """Read the lanes of recreated topics again from their new beginning."""
        lanes = [lane for lane in self._lanes if lane.actual in topics and not lane.finished]
        if not lanes:
            return
        for lane in lanes:
            _LOG.warning(
                "topic %s partition %d had been read up to offset %s; those offsets are "
                "gone with the old topic",
                lane.actual,
                lane.partition,
                lane.next_offset,
            )
            lane.next_offset = None
            lane.quiet_at_end = False
            lane.paused = False
        self._consumer.incremental_unassign([lane.topic_partition() for lane in lanes])
        self._consumer.incremental_assign(
            [TopicPartition(lane.actual, lane.partition, OFFSET_BEGINNING) for lane in lanes]
        )

    def _ingest(self, messages: Iterable[Any]) -> None:
        now = time.monotonic()
        for message in messages:
            error = message.error()
            if error is not None:
                self._on_error(error, message)
                continue
            lane = self._by_partition[(message.topic(), message.partition())]
            if lane.append(message, now):
                heapq.heappush(self._heads, lane.head_key())

    def _on_error(self, error: KafkaError, message: Any) -> None:
        """Take an end-of-partition report; log other errors, raise fatal ones."""
        if error.code() == KafkaError._PARTITION_EOF:
            self._reached_end(self._by_partition[(message.topic(), message.partition())])
            return
        where = (
            "the consumer"
            if message is None or message.topic() is None
            else f"topic {message.topic()} partition {message.partition()}"
        )
        if error.fatal():
            raise AlignedKafkaError(
                f"fatal Kafka consumer error on {where}: {error.str()} ({error.name()})"
            )
        self._log_error(where, error)

    def _log_error(self, where: str, error: KafkaError) -> None:
        """Log a retriable consumer error, at most every few seconds per place and kind."""
        now = time.monotonic()
        if now - self._error_logged.get((where, error.code()), float("-inf")) < LOG_EVERY_S:
            return
        self._error_logged[(where, error.code())] = now
        if error.code() in _GONE:
            meaning = "gone from Kafka: the broker lost it; waiting for it to come back"
        elif error.code() in _OUT_OF_RANGE:
            meaning = "offset out of range: the broker lost data; reading from its earliest"
        else:
            meaning = "retrying"
        _LOG.warning(
            "Kafka consumer error on %s: %s (%s); %s", where, error.str(), error.name(), meaning
        )

    def _reached_end(self, lane: _Lane) -> None:
        lane.quiet_at_end = True
        lane.ever_at_end = True
        if not self._tail and not lane.finished:
            lane.finished = True
            self._consumer.pause([lane.topic_partition()])
            if lane.finish_screen():
                heapq.heappush(self._heads, lane.head_key())

    def _settle_quiet_jumps(self, now: float) -> None:
        """Decide the jumps of lanes quiet at their end, against the other lanes' times.

        Lanes with a reference go first, since each settled lane may give the others
        one; a jump with no other lane to compare with is accepted last.
        """
        waiting = [
            lane
            for lane in self._lanes
            if lane.screen.jump_time is not None and not lane.active(now, self._idle_s)
        ]
        while waiting:
            settled = [lane for lane in waiting if self._reference(lane) is not None]
            for lane in settled or waiting:
                if lane.settle_screen(self._reference(lane)):
                    heapq.heappush(self._heads, lane.head_key())
            waiting = [lane for lane in waiting if lane.screen.jump_time is not None]

    def _reference(self, lane: _Lane) -> int | None:
        """The latest accepted event time of the other lanes (epoch µs), if any."""
        times = [
            other.running_max
            for other in self._lanes
            if other is not lane and other.running_max != _BEGINNING_OF_TIME
        ]
        return max(times, default=None)

    def _limit(self, now: float) -> _MergeKey:
        """Return the largest merge key that may be released now."""
        watermark = self._advance_watermark(now)
        self._live = self._live or all(lane.ever_at_end for lane in self._lanes)
        if not self._live and now - self._watermark_moved < self._max_hold_s:
            return watermark
        overdue = [
            lane
            for lane in self._lanes
            if lane.buffer and now - lane.buffer[0][2] >= self._max_hold_s
        ]
        for lane in overdue:
            self._log_forced(lane, now, watermark)
        return max([watermark, *(lane.head_key() for lane in overdue)])

    def _advance_watermark(self, now: float) -> _MergeKey:
        """Return the smallest bound of the active lanes; note when it last changed."""
        bounds = [lane.bound() for lane in self._lanes if lane.active(now, self._idle_s)]
        watermark = min(bounds, default=_RELEASE_ALL)
        if watermark != self._watermark:
            self._watermark = watermark
            self._watermark_moved = now
        return watermark

    def _log_forced(self, lane: _Lane, now: float, watermark: _MergeKey) -> None:
        if lane.index in self._forced or lane.head_key() <= watermark:
            return
        self._forced.add(lane.index)
        blocker = self._lanes[watermark[1]]
        _LOG.warning(
            "topic %s partition %d: a message waited %.1f s for the event-time watermark, "
            "held back by topic %s partition %d; released ahead of it (logged once)",
            lane.topic,
            lane.partition,
            now - lane.buffer[0][2],
            blocker.topic,
            blocker.partition,
        )

    def _release(self, limit: _MergeKey) -> list[RawMessage]:
        """Pop buffered messages in merge order while their key is at most ``limit``."""
        batch: list[RawMessage] = []
        heads = self._heads
        while heads and heads[0] <= limit and len(batch) < self._batch_size:
            lane = self._lanes[heads[0][1]]
            batch.append(lane.buffer.popleft()[1])
            if lane.buffer:
                heapq.heapreplace(heads, lane.head_key())
            else:
                heapq.heappop(heads)
        return batch

    def _throttle(self) -> None:
        """Pause partitions with a full buffer; resume them once it is half empty."""
        for lane in self._lanes:
            if lane.finished:
                continue
            if not lane.paused and len(lane.buffer) >= _MAX_BUFFERED:
                lane.paused = True
                self._consumer.pause([lane.topic_partition()])
            elif lane.paused and len(lane.buffer) <= _MAX_BUFFERED // 2:
                lane.paused = False
                self._consumer.resume([lane.topic_partition()])


def aligned_kafka_source(
    flow: Dataflow,
    step_id: str,
    connection: KafkaConnection,
    topics: Mapping[str, str],
    *,
    tail: bool = True,
    event_times: EventTimeRange | None = None,
) -> Stream[RawMessage]:
    """Read Kafka topics into a dataflow in event-time order; see :class:`AlignedKafkaSource`.

    Args:
        flow: The dataflow.
        step_id: Step id of the input.
        connection: The cluster.
        topics: Logical topic → actual topic name; the order sets the topic rank.
        tail: Keep following the topics; False ends the input at their end.
        event_times: The event times accepted into the merge (default: the defaults).

    Returns:
        The messages, in merge order; those screened out carry ``time_problem``.
    """
    source = AlignedKafkaSource(connection, topics, tail=tail, event_times=event_times)
    return op.input(step_id, flow, source)
