"""How many messages a topic holds, and every message value in it, read to its end.

Both assign every partition explicitly (no consumer group: the embedded broker's
group joins can stall) and end at the partitions' ends as the broker reports them
when the read starts catching up, within a time limit that raises
:class:`~allocflow.connectors.kafka_io.TopicReadError` instead of hanging.

Example:
    ::

        stored = message_count(connection, "orders")
        values = list(topic_values(connection, "dead-letter"))
"""

import time
import uuid
from collections.abc import Iterator

from confluent_kafka import OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition

from allocflow.connectors.kafka_config import KafkaConnection
from allocflow.connectors.kafka_io import TopicReadError, iter_topic

_POLL_S = 0.2
_BATCH = 1000
_TRANSIENT = frozenset({KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT})


def message_count(connection: KafkaConnection, topic: str, *, timeout_s: float = 30.0) -> int:
    """Return how many messages ``topic`` holds: over its partitions, high - low watermark.

    The high watermark is the end offset the broker reports to a consumer at the end
    of each partition, not its ListOffsets answer: the embedded Tansu broker answers
    ListOffsets with the base offset of the partition's last record batch. So each
    partition is read from the offset ListOffsets names (its end, on Kafka) to the end.

    Args:
        connection: The cluster.
        topic: Topic name.
        timeout_s: Seconds the count may take.

    Returns:
        The number of messages.

    Raises:
        TopicReadError: The topic does not exist, the consumer failed, or the ends
            were not all reached within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    consumer = Consumer(connection.consumer_config(f"allocflow-count-{uuid.uuid4().hex}"))
    try:
        partitions = _partitions(consumer, topic, timeout_s)
        consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in partitions])
        ends = _partition_ends(consumer, topic, len(partitions), deadline)
        return sum(ends[p] - _low_watermark(consumer, topic, p, timeout_s) for p in partitions)
    finally:
        consumer.close()


def topic_values(
    connection: KafkaConnection, topic: str, *, timeout_s: float = 60.0
) -> Iterator[bytes]:
    """Yield the value of every message of ``topic``, to the partitions' ends.

    Args:
        connection: The cluster.
        topic: Topic name.
        timeout_s: Seconds the whole read may take.

    Yields:
        Message values (a message without one as ``b""``), in order within each partition.

    Raises:
        TopicReadError: The topic does not exist, the consumer failed, or the read
            did not reach every partition's end within ``timeout_s``.
    """
    for record in iter_topic(connection, topic, idle_timeout_s=0.0, timeout_s=timeout_s):
        yield record.value or b""


def _partitions(consumer: Consumer, topic: str, timeout_s: float) -> list[int]:
    try:
        described = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
    except KafkaException as exception:
        raise TopicReadError(f"no metadata for topic {topic!r}: {exception}", 0) from exception
    if described is None or described.error is not None or not described.partitions:
        reason = described.error if described is not None and described.error else "no partitions"
        raise TopicReadError(f"topic {topic!r} is not readable: {reason}", 0)
    return sorted(described.partitions)


def _partition_ends(
    consumer: Consumer, topic: str, partitions: int, deadline: float
) -> dict[int, int]:
    """Consume until every assigned partition reported its end; return the end offsets."""
    ends: dict[int, int] = {}
    while len(ends) < partitions:
        if time.monotonic() > deadline:
            missing = partitions - len(ends)
            raise TopicReadError(f"counting {topic!r}: {missing} partition end(s) not reached", 0)
        for message in consumer.consume(_BATCH, _POLL_S):
            error = message.error()
            if error is None or error.code() in _TRANSIENT or error.retriable():
                continue
            if error.code() != KafkaError._PARTITION_EOF:
                raise TopicReadError(f"counting {topic!r} failed: {error.str()}", 0)
            ends[message.partition() or 0] = message.offset() or 0
    return ends


def _low_watermark(consumer: Consumer, topic: str, partition: int, timeout_s: float) -> int:
    low, _ = consumer.get_watermark_offsets(
        TopicPartition(topic, partition), timeout=timeout_s, cached=False
    )
    return int(low)
