"""Configuration of confluent-kafka clients, built from one connection description."""

from collections.abc import Mapping
from dataclasses import dataclass, field

_SECRET_KEYS = frozenset(
    {"sasl.password", "ssl.key.password", "sasl.oauthbearer.client.secret", "ssl.key.pem"}
)
_SECRET_SUFFIXES = ("password", "secret", "credentials", ".pem", "oauthbearer.config")


def redact(config: Mapping[str, str]) -> dict[str, str]:
    """Return librdkafka ``config`` with secret values replaced, safe to log or print.

    Example:
        >>> redact({"sasl.username": "svc", "ssl.keystore.password": "p4ss"})
        {'sasl.username': 'svc', 'ssl.keystore.password': '***'}
    """
    return {key: "***" if _is_secret(key) else value for key, value in config.items()}


def _is_secret(key: str) -> bool:
    return key in _SECRET_KEYS or key.endswith(_SECRET_SUFFIXES)


@dataclass(frozen=True, repr=False)
class KafkaConnection:
    """How to reach a Kafka cluster.

    Its ``repr`` masks the secret properties, so a connection in a log line, an
    error or the repr of a sink that holds one never shows a password.

    Attributes:
        bootstrap_servers: ``host:port[,host:port…]``.
        client_id: Client id reported to the broker.
        security: librdkafka security properties (``security.protocol``, ``sasl.*``,
            ``ssl.*``), passed to every client untouched.
        extra: Any other librdkafka properties, applied last (they win).
    """

    bootstrap_servers: str
    client_id: str = "allocflow"
    security: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, str] = field(default_factory=dict)

    def admin_config(self) -> dict[str, str]:
        """Return the configuration of an ``AdminClient``."""
        return self._with_common({})

    def producer_config(self) -> dict[str, str]:
        """Return the configuration of a ``Producer``: idempotent, acks from all replicas."""
        return self._with_common(
            {
                "enable.idempotence": "true",
                "acks": "all",
                "linger.ms": "20",
                "compression.type": "lz4",
                "message.timeout.ms": "60000",
            }
        )

    def consumer_config(self, group_id: str) -> dict[str, str]:
        """Return the configuration of a ``Consumer`` that is assigned partitions explicitly.

        Args:
            group_id: Consumer group id; required by librdkafka even without subscribing.
        """
        return self._with_common(
            {
                "group.id": group_id,
                "enable.auto.commit": "false",
                "auto.offset.reset": "earliest",
                "enable.partition.eof": "true",
                "fetch.wait.max.ms": "100",
            }
        )

    def __repr__(self) -> str:
        return (
            f"KafkaConnection(bootstrap_servers={self.bootstrap_servers!r}, "
            f"client_id={self.client_id!r}, security={redact(self.security)!r}, "
            f"extra={redact(self.extra)!r})"
        )

    def _with_common(self, specific: dict[str, str]) -> dict[str, str]:
        config = {"bootstrap.servers": self.bootstrap_servers, "client.id": self.client_id}
        config.update(specific)
        config.update(self.security)
        config.update(self.extra)
        return config
