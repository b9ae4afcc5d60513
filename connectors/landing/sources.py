"""Where the lander reads from: the pipeline's JSON Lines files or its Kafka topics.

Both start where the DuckDB file says landing stopped (its ``landing_offsets``), so
a restarted lander neither skips nor repeats a message. Kafka partitions are
assigned explicitly (no consumer group): offsets live in the DuckDB file, in the
same transaction as the rows they produced.
"""

import logging
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaException,
    Message,
    TopicPartition,
)

from allocflow.connectors.kafka_config import KafkaConnection
from allocflow.connectors.landing.records import LandingRecord
from allocflow.models.dead_letter import DeadLetterReason

_LOG = logging.getLogger(__name__)

NextOffset = Callable[[str, int], int]
"""``(source, partition) -> first offset not landed yet``."""

_METADATA_TIMEOUT_S = 10.0
_REFRESH_PARTITIONS_S = 10.0


FilePosition = tuple[str, int]
"""``(logical topic, 0-based line index)`` of a line of a file run's input."""


def held_out_positions(dead_letters: Path) -> frozenset[FilePosition]:
    """The input lines a file run held out of its merge for their event time.

    The flow screens every input file's event times before the merge (see
    :mod:`allocflow.connectors.event_time_screen`) and dead-letters what it holds out
    as ``EVENT_TIME_OUT_OF_RANGE``, naming the topic and line. The flow never
    processed those events, so the lander must not land them as input events either
    (a 2099 event would otherwise set the landing watermark, and every exception's
    age, to 2099); they stay in ``dead_letters``.

    Args:
        dead_letters: The run's ``dead-letter.jsonl``; a missing file holds nothing.

    Returns:
        The held-out positions. Lines that are not dead-letter records are ignored
        (they are landed, and reported, as such).
    """
    if not dead_letters.is_file():
        return frozenset()
    held: set[FilePosition] = set()
    with dead_letters.open("rb") as lines:
        for line in lines:
            position = _held_out_position(line)
            if position is not None:
                held.add(position)
    return frozenset(held)


def _held_out_position(line: bytes) -> FilePosition | None:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(record, dict) or record.get("partition") is not None:
        return None
    topic, offset = record.get("source_topic"), record.get("offset")
    if record.get("reason_code") != DeadLetterReason.EVENT_TIME_OUT_OF_RANGE.value:
        return None
    if not isinstance(topic, str) or not isinstance(offset, int):
        return None
    return topic, offset


def file_batches(
    files: Mapping[str, Path],
    next_offset: NextOffset,
    batch_size: int,
    held_out: Collection[FilePosition] = frozenset(),
) -> Iterator[list[LandingRecord]]:
    """Batches of the lines of JSON Lines files, from the first line not landed yet.

    Args:
        files: Logical topic → file. Missing files are skipped (a run without
            dead letters writes no dead-letter file).
        next_offset: Where landing stopped, per source and partition.
        batch_size: Records per batch.
        held_out: Lines not to land (:func:`held_out_positions`).

    Yields:
        Batches of at most ``batch_size`` records, file after file.
    """
    batch: list[LandingRecord] = []
    for topic, path in files.items():
        if not path.is_file():
            continue
        source = str(path.resolve())
        start = next_offset(source, 0)
        with path.open("rb") as lines:
            for index, line in enumerate(lines):
                value = line.rstrip(b"\r\n")
                if index < start or not value or (topic, index) in held_out:
                    continue
                batch.append(LandingRecord(topic, source, 0, index, value))
                if len(batch) >= batch_size:
                    yield batch
                    batch = []
    if batch:
        yield batch


def kafka_time(stamp_ms: int) -> datetime | None:
    """A Kafka timestamp (ms since the epoch) as a UTC time; None if no date can hold it.

    Any producer may set any 64-bit timestamp; one past year 9999 must not stop landing.

    Example:
        >>> kafka_time(0).isoformat(), kafka_time(2**63 - 1)
        ('1970-01-01T00:00:00+00:00', None)
    """
    try:
        return _EPOCH + timedelta(milliseconds=stamp_ms)
    except OverflowError:
        return None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class KafkaLandingSource:
    """Every partition of the pipeline's topics, read from the first offset not landed.

    Topics that do not exist yet are looked up again every few seconds, as are new
    partitions.
    """

    def __init__(
        self, connection: KafkaConnection, topics: Mapping[str, str], next_offset: NextOffset
    ) -> None:
        """Create the consumer; partitions are assigned on the first poll.

        Args:
            connection: The cluster.
            topics: Logical topic → actual topic name.
            next_offset: Where landing stopped, per actual topic and partition.
        """
        config = connection.consumer_config("allocflow-lander")
        config["enable.partition.eof"] = "false"
        self._consumer = Consumer(config)
        self._logical = {name: logical for logical, name in topics.items()}
        self._next_offset = next_offset
        self._assigned: set[tuple[str, int]] = set()
        self._refreshed_at = float("-inf")

    def poll(self, max_records: int, timeout_s: float) -> list[LandingRecord]:
        """Up to ``max_records`` messages, waiting at most ``timeout_s`` for the first.

        Raises:
            KafkaException: The consumer failed.
        """
        self._assign_new_partitions()
        if not self._assigned:
            time.sleep(timeout_s)
            return []
        messages = self._consumer.consume(max_records, timeout=timeout_s)
        return [self._record(m) for m in messages if self._usable(m)]

    def close(self) -> None:
        """Leave the cluster."""
        self._consumer.close()

    def _assign_new_partitions(self) -> None:
        if time.monotonic() - self._refreshed_at < _REFRESH_PARTITIONS_S:
            return
        self._refreshed_at = time.monotonic()
        new = [tp for tp in self._partitions() if (tp.topic, tp.partition) not in self._assigned]
        if new:
            self._consumer.incremental_assign(new)
            self._assigned.update((tp.topic, tp.partition) for tp in new)
            _LOG.info("landing %d new partition(s)", len(new))

    def _partitions(self) -> list[TopicPartition]:
        try:
            metadata = self._consumer.list_topics(timeout=_METADATA_TIMEOUT_S)
        except KafkaException as error:
            _LOG.warning("no topic metadata yet: %s", error)
            return []
        partitions = []
        for name in self._logical:
            described = metadata.topics.get(name)
            if described is None or described.error is not None:
                continue
            for partition in sorted(described.partitions):
                offset = self._next_offset(name, partition)
                partitions.append(TopicPartition(name, partition, offset or OFFSET_BEGINNING))
        return partitions

    @staticmethod
    def _usable(message: Message) -> bool:
        error = message.error()
        if error is None:
            return True
        if error.fatal():
            raise KafkaException(error)
        _LOG.warning("consumer: %s", error)
        return False

    def _record(self, message: Message) -> LandingRecord:
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if topic is None or partition is None or offset is None:
            raise ValueError(f"Kafka message without a position: {topic}/{partition}@{offset}")
        kind, stamp = message.timestamp()
        timestamp = None if kind == TIMESTAMP_NOT_AVAILABLE else kafka_time(stamp)
        if timestamp is None and kind != TIMESTAMP_NOT_AVAILABLE:
            _LOG.warning(
                "%s[%d]@%d: Kafka timestamp %d ms is no time; landed without one",
                topic,
                partition,
                offset,
                stamp,
            )
        return LandingRecord(
            topic=self._logical[topic],
            source=topic,
            partition=partition,
            offset=offset,
            value=message.value() or b"",
            timestamp=timestamp,
        )
