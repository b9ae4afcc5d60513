"""Watching several topics at once: message counts per event type, and the latest one."""

import uuid
from collections import Counter
from collections.abc import Iterable
from types import TracebackType
from typing import Self

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from allocflow.connectors.kafka_config import KafkaConnection

_BATCH = 1000


class TopicWatcher:
    """Reads every partition of some topics from the beginning and counts what arrives.

    Attributes:
        counts: Messages per (topic, event_type or record_type); ``"<not JSON>"`` when
            undecodable.
        latest: The newest message value per (topic, event_type or record_type).
    """

    def __init__(self, connection: KafkaConnection, topics: Iterable[str]) -> None:
        """Assign every partition of ``topics`` (which must exist) from the beginning."""
        self.counts: Counter[tuple[str, str]] = Counter()
        self.latest: dict[tuple[str, str], bytes] = {}
        self._consumer = Consumer(connection.consumer_config(f"allocflow-watch-{uuid.uuid4().hex}"))
        metadata = self._consumer.list_topics(timeout=10)
        assignment = [
            TopicPartition(topic, partition, OFFSET_BEGINNING)
            for topic in topics
            for partition in sorted(metadata.topics[topic].partitions)
        ]
        self._consumer.assign(assignment)

    def poll(self, timeout_s: float) -> int:
        """Read what is available within ``timeout_s``; return how many messages arrived."""
        received = 0
        for message in self._consumer.consume(_BATCH, timeout_s):
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(f"watching topics failed: {error.str()}")
                continue
            topic, value = message.topic(), message.value()
            if topic is None or value is None:
                continue
            kind = _event_type(value)
            self.counts[(topic, kind)] += 1
            self.latest[(topic, kind)] = value
            received += 1
        return received

    def total(self, topic: str | None = None) -> int:
        """Return messages seen in ``topic``, or in all topics."""
        return sum(n for (name, _), n in self.counts.items() if topic in (None, name))

    def close(self) -> None:
        """Close the consumer."""
        self._consumer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _event_type(value: bytes) -> str:
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError:
        return "<not JSON>"
    if not isinstance(document, dict):
        return "<not an object>"
    kind = document.get("event_type") or document.get("record_type")
    return kind if isinstance(kind, str) else "<no type>"
