"""Kafka security settings reach every client untouched, and secrets stay out of logs."""

import os

import pytest
from pydantic import ValidationError

from allocflow.connectors.kafka_config import redact
from allocflow.flows.settings import ENV_PREFIX, Settings

pytestmark = pytest.mark.unit

_SASL_SSL = {
    "security.protocol": "SASL_SSL",
    "sasl.mechanism": "SCRAM-SHA-512",
    "sasl.username": "allocator",
    "sasl.password": "s3cret-pw",
    "ssl.ca.location": "/etc/kafka/ca.pem",
    "ssl.certificate.location": "/etc/kafka/client.pem",
    "ssl.key.location": "/etc/kafka/client.key",
    "ssl.key.password": "key-pw",
}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def _sasl_ssl_settings() -> Settings:
    return Settings(
        bootstrap_servers="kafka-1:9093,kafka-2:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="allocator",
        sasl_password=_SASL_SSL["sasl.password"],
        ssl_ca_location="/etc/kafka/ca.pem",
        ssl_certificate_location="/etc/kafka/client.pem",
        ssl_key_location="/etc/kafka/client.key",
        ssl_key_password=_SASL_SSL["ssl.key.password"],
    )


def test_security_settings_reach_every_client_config_untouched() -> None:
    connection = _sasl_ssl_settings().kafka_connection()

    configs = {
        "producer": connection.producer_config(),
        "consumer": connection.consumer_config("g"),
        "admin": connection.admin_config(),
    }

    for name, config in configs.items():
        assert {key: config[key] for key in _SASL_SSL} == _SASL_SSL, name
        assert config["bootstrap.servers"] == "kafka-1:9093,kafka-2:9093", name


def test_security_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOCFLOW_BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("ALLOCFLOW_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("ALLOCFLOW_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("ALLOCFLOW_SASL_USERNAME", "allocator")
    monkeypatch.setenv("ALLOCFLOW_SASL_PASSWORD", "env-pw")
    monkeypatch.setenv("ALLOCFLOW_KAFKA_EXTRA", '{"socket.keepalive.enable": "true"}')

    config = Settings().kafka_connection().producer_config()

    assert config["security.protocol"] == "SASL_PLAINTEXT"
    assert config["sasl.mechanism"] == "PLAIN"
    assert config["sasl.username"] == "allocator"
    assert config["sasl.password"] == "env-pw"
    assert config["socket.keepalive.enable"] == "true"
    assert "ssl.ca.location" not in config


def test_extra_properties_win_over_defaults() -> None:
    settings = Settings(bootstrap_servers="kafka:9092", kafka_extra={"linger.ms": "5"})

    assert settings.kafka_connection().producer_config()["linger.ms"] == "5"


def test_redacted_hides_every_secret_and_keeps_the_rest() -> None:
    connection = _sasl_ssl_settings().kafka_connection()

    for config in (connection.producer_config(), connection.admin_config()):
        redacted = redact(config)

        assert redacted["sasl.password"] == "***"
        assert redacted["ssl.key.password"] == "***"
        assert "s3cret-pw" not in repr(redacted)
        assert "key-pw" not in repr(redacted)
        assert redacted["sasl.username"] == "allocator"
        assert redacted["ssl.key.location"] == "/etc/kafka/client.key"
        assert redacted.keys() == config.keys()


def test_settings_dump_masks_passwords() -> None:
    dumped = repr(_sasl_ssl_settings().model_dump())

    assert "s3cret-pw" not in dumped
    assert "key-pw" not in dumped


def test_bootstrap_argument_overrides_the_setting() -> None:
    settings = Settings(bootstrap_servers="kafka:9092")

    assert settings.kafka_connection("127.0.0.1:1234").bootstrap_servers == "127.0.0.1:1234"


def test_no_broker_at_all_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="ALLOCFLOW_BOOTSTRAP_SERVERS"):
        Settings().kafka_connection()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"security_protocol": "SASL_SSL"}, "sasl_mechanism is required with SASL_SSL"),
        (
            {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"},
            "sasl_username and sasl_password are required with PLAIN",
        ),
        (
            {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "SCRAM-SHA-256",
                "sasl_username": "allocator",
            },
            "sasl_username and sasl_password are required with SCRAM-SHA-256",
        ),
        (
            {"security_protocol": "SSL", "sasl_mechanism": "OAUTHBEARER"},
            "sasl_mechanism is set but security_protocol is not SASL_",
        ),
        ({"security_protocol": "SASL"}, "security_protocol"),
    ],
)
def test_incomplete_or_inconsistent_security_is_rejected(
    fields: dict[str, str], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**fields)


def test_oauthbearer_needs_no_password() -> None:
    settings = Settings(security_protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER")

    assert settings.kafka_security()["sasl.mechanism"] == "OAUTHBEARER"
