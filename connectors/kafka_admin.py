"""Kafka topic administration: create topics idempotently and wait until they are usable."""

import logging
import time
from collections.abc import Iterable, Mapping

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from allocflow.connectors.kafka_config import KafkaConnection

_LOG = logging.getLogger(__name__)

_METADATA_RETRY_S = 0.1


class TopicSetupError(RuntimeError):
    """Topics could not be created, or did not show up in the metadata in time."""


def ensure_topics(
    connection: KafkaConnection,
    names: Iterable[str],
    partitions: int,
    replication_factor: int = 1,
    timeout_s: float = 15.0,
) -> dict[str, int]:
    """Create the topics that do not exist yet and wait until every one is usable.

    Existing topics are left as they are, whatever their partition count (a warning
    is logged when it differs from ``partitions``).

    Args:
        connection: The cluster.
        names: Topic names.
        partitions: Partitions of each new topic.
        replication_factor: Replicas of each new topic.
        timeout_s: Seconds to wait for creation and for the metadata to show them.

    Returns:
        The partition count of every topic, by name.

    Raises:
        TopicSetupError: The broker refused a topic, or the metadata did not show every
            topic with its partitions within ``timeout_s``.
    """
    wanted = sorted(set(names))
    if not wanted:
        return {}
    deadline = time.monotonic() + timeout_s
    config: dict[str, str | int | float | bool] = dict(connection.admin_config())
    admin = AdminClient(config)
    created = _create(admin, wanted, partitions, replication_factor, timeout_s)
    expected = {name: partitions if name in created else None for name in wanted}
    counts = _wait_for_metadata(admin, expected, deadline)
    for name in sorted(set(wanted) - created):
        if counts[name] != partitions:
            _LOG.warning(
                "topic %s already exists with %d partitions, not %d", name, counts[name], partitions
            )
    return counts


def _create(
    admin: AdminClient, names: list[str], partitions: int, replication_factor: int, timeout_s: float
) -> set[str]:
    """Create ``names`` and return those that are new; existing ones are no error."""
    futures = admin.create_topics(
        [NewTopic(name, partitions, replication_factor) for name in names],
        request_timeout=timeout_s,
        operation_timeout=timeout_s,
    )
    created: set[str] = set()
    failures: list[str] = []
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as exception:
            error: KafkaError = exception.args[0]
            if error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                failures.append(f"{name}: {error.str()}")
        else:
            created.add(name)
    if failures:
        raise TopicSetupError("could not create topics: " + "; ".join(failures))
    if created:
        _LOG.info("created topics %s with %d partitions", ", ".join(sorted(created)), partitions)
    return created


def _wait_for_metadata(
    admin: AdminClient, expected: Mapping[str, int | None], deadline: float
) -> dict[str, int]:
    """Wait until the metadata lists every topic; ``None`` accepts any partition count."""
    while True:
        remaining = deadline - time.monotonic()
        try:
            counts = _partition_counts(admin, list(expected), max(remaining, 0.1))
            problem = "not in the metadata with their partitions in time"
        except KafkaException as exception:
            counts = {}
            problem = f"metadata request failed ({exception})"
        missing = [name for name, want in expected.items() if not _ready(counts, name, want)]
        if not missing:
            return {name: counts[name] for name in expected}
        if remaining <= 0:
            raise TopicSetupError(
                f"topics {problem}: "
                + ", ".join(_shortfall(name, counts, expected[name]) for name in missing)
            )
        time.sleep(_METADATA_RETRY_S)


def _shortfall(name: str, counts: Mapping[str, int], want: int | None) -> str:
    return f"{name} (has {counts.get(name, 0)} partitions, wants {want or 'any'})"


def _ready(counts: Mapping[str, int], name: str, want: int | None) -> bool:
    has = counts.get(name, 0)
    return has > 0 and want in (None, has)


def _partition_counts(admin: AdminClient, names: list[str], timeout_s: float) -> dict[str, int]:
    """Return the partition count of each topic the metadata shows without error."""
    metadata = admin.list_topics(timeout=timeout_s)
    counts: dict[str, int] = {}
    for name in names:
        topic = metadata.topics.get(name)
        if topic is not None and topic.error is None:
            counts[name] = len(topic.partitions)
    return counts
