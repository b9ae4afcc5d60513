"""Waiting for a Kafka cluster, and saying clearly when it goes away and comes back.

:func:`wait_for_kafka` blocks a command until the cluster answers a metadata request
and the topics it needs exist, logging every few seconds what it is waiting for.
:class:`BrokerWatch` is a client ``error_cb`` that turns librdkafka's stream of
connection errors into one log line when the cluster becomes unreachable and one
every few seconds while it stays so. :func:`topic_ids` reads the topic ids that tell
a recreated topic (a broker that lost its data) from the one a client was reading.

Example:
    ::

        wait_for_kafka(connection, ["orders", "reservations"], max_wait_s=0)
        watch = BrokerWatch(connection.bootstrap_servers, "consumer")
        consumer = Consumer({**connection.consumer_config("g"), "error_cb": watch})
"""

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient

from allocflow.connectors.kafka_config import KafkaConnection

_LOG = logging.getLogger(__name__)

LOG_EVERY_S = 5.0
"""Seconds between two log lines about the same wait or outage."""

_PROBE_TIMEOUT_S = 2.0
_QUIET = 0
"""librdkafka ``log_level`` of the waiting client: its connection errors are what the
wait reports, once every few seconds, instead of several lines a second."""
_BACKOFF_S = (0.2, 0.5, 1.0, 2.0)
_UNREACHABLE = frozenset({KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE})


class KafkaWaitTimeoutError(RuntimeError):
    """The cluster did not answer, or the topics did not appear, within the allowed wait."""


def wait_for_kafka(
    connection: KafkaConnection,
    topics: Collection[str],
    *,
    max_wait_s: float = 0.0,
    stop: threading.Event | None = None,
) -> bool:
    """Block until the cluster answers and every topic in ``topics`` exists.

    Each attempt is a metadata request of all topics (it never auto-creates one),
    retried with a growing backoff; every :data:`LOG_EVERY_S` seconds a line says
    ``waiting for Kafka at HOST:PORT (reason)``.

    Args:
        connection: The cluster.
        topics: Topic names that must exist.
        max_wait_s: Seconds to wait at most; 0 waits forever.
        stop: Set to give up quietly (Ctrl-C in a command that handles signals).

    Returns:
        True once ready; False when ``stop`` was set first.

    Raises:
        KafkaWaitTimeoutError: ``max_wait_s`` passed first; the message says why.
    """
    config = with_error_callback(connection.admin_config(), _ignore)
    config["log_level"] = _QUIET
    admin = AdminClient(config)
    started = last_log = time.monotonic()
    attempt = 0
    while True:
        reason = _not_ready(admin, topics)
        waited = time.monotonic() - started
        if reason is None:
            if attempt:
                _LOG.info("Kafka at %s is ready after %.1f s", connection.bootstrap_servers, waited)
            return True
        if attempt == 0 or time.monotonic() - last_log >= LOG_EVERY_S:
            last_log = time.monotonic()
            _LOG.warning(
                "waiting for Kafka at %s (%s); waited %.0f s so far",
                connection.bootstrap_servers,
                reason,
                waited,
            )
        if max_wait_s and waited >= max_wait_s:
            raise KafkaWaitTimeoutError(
                f"Kafka at {connection.bootstrap_servers} not ready after {waited:.0f} s "
                f"({reason}); the limit is ALLOCFLOW_BROKER_WAIT_TIMEOUT_S={max_wait_s:g}"
            )
        pause = _BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)]
        attempt += 1
        if stop is not None and stop.wait(pause):
            return False
        if stop is None:
            time.sleep(pause)


def _not_ready(admin: AdminClient, topics: Collection[str]) -> str | None:
    """Return why the cluster is not ready yet, None when it is."""
    try:
        metadata = admin.list_topics(timeout=_PROBE_TIMEOUT_S)
    except KafkaException as error:
        return f"no answer: {_reason(error)}"
    missing = sorted(
        name
        for name in topics
        if name not in metadata.topics or metadata.topics[name].error is not None
    )
    if missing:
        return f"topics not created yet: {', '.join(missing)}"
    return None


def topic_ids(admin: AdminClient, topics: Collection[str], timeout_s: float) -> dict[str, str]:
    """Return the id of every topic in ``topics`` that exists, by name.

    A topic deleted and created again (a broker restarted with empty storage) gets a
    new id, even when its name and partition count are the same.

    Args:
        admin: A client of the cluster.
        topics: Topic names.
        timeout_s: Seconds the request may take.

    Raises:
        KafkaException: The cluster did not answer in time.
    """
    futures = admin.describe_topics(TopicCollection(list(topics)), request_timeout=timeout_s)
    ids: dict[str, str] = {}
    for name, future in futures.items():
        try:
            ids[name] = str(future.result().topic_id)
        except KafkaException as error:
            if _code(error) in _UNREACHABLE or _code(error) == KafkaError._TIMED_OUT:
                raise
    return ids


class BrokerWatch:
    """A librdkafka ``error_cb`` that logs when a cluster becomes unreachable, and after.

    The first connection error logs ``Kafka at HOST:PORT unreachable since HH:MM:SS``;
    while errors keep coming, a line every :data:`LOG_EVERY_S` seconds says for how
    long. :meth:`reachable` ends the outage with a line saying how long it lasted.
    Other client errors are logged as warnings, at most one per :data:`LOG_EVERY_S`.

    Args:
        bootstrap_servers: The cluster, for the log lines.
        client: What the client is, e.g. ``"consumer"``.
    """

    def __init__(self, bootstrap_servers: str, client: str) -> None:
        self._servers = bootstrap_servers
        self._client = client
        self._down_since: float | None = None
        self._down_at = ""
        self._last_log = float("-inf")

    @property
    def unreachable(self) -> bool:
        """Whether the last news from the client was a connection error."""
        return self._down_since is not None

    def __call__(self, error: KafkaError) -> None:
        """Take an error report from the client."""
        now = time.monotonic()
        if error.code() not in _UNREACHABLE:
            if now - self._last_log >= LOG_EVERY_S:
                self._last_log = now
                _LOG.warning("Kafka %s error: %s (%s)", self._client, error.str(), error.name())
            return
        if self._down_since is None:
            self._down_since, self._last_log = now, now
            self._down_at = datetime.now(UTC).strftime("%H:%M:%S UTC")
            _LOG.warning(
                "Kafka at %s unreachable since %s (%s): the %s retries",
                self._servers,
                self._down_at,
                error.str(),
                self._client,
            )
        elif now - self._last_log >= LOG_EVERY_S:
            self._last_log = now
            _LOG.warning(
                "Kafka at %s unreachable since %s (%.0f s): %s",
                self._servers,
                self._down_at,
                now - self._down_since,
                error.str(),
            )

    def reachable(self) -> None:
        """Note that the cluster answered; ends an outage with a log line."""
        if self._down_since is None:
            return
        _LOG.warning(
            "Kafka at %s reachable again after %.0f s unreachable",
            self._servers,
            time.monotonic() - self._down_since,
        )
        self._down_since = None


def with_error_callback(
    config: Mapping[str, str], callback: Callable[[KafkaError], None]
) -> dict[str, Any]:
    """Return a client configuration with ``error_cb`` set to ``callback``."""
    return {**config, "error_cb": callback}


def changed_topics(before: Mapping[str, str], after: Mapping[str, str]) -> dict[str, str | None]:
    """Return the topics of ``before`` that are gone (None) or have a new id in ``after``."""
    return {name: after.get(name) for name, old in before.items() if after.get(name) != old}


def _reason(error: KafkaException) -> str:
    first = error.args[0] if error.args else None
    return first.str() if isinstance(first, KafkaError) else str(error)


def _code(error: KafkaException) -> int | None:
    first = error.args[0] if error.args else None
    return first.code() if isinstance(first, KafkaError) else None


def _ignore(_error: KafkaError) -> None:
    """Swallow client errors: the wait loop reports what it could not do."""
