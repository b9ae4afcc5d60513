"""Settings: read from the environment, validated at start, documented in docs/configuration.md."""

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from allocflow.flows.cli import main
from allocflow.flows.commands.settings_cmd import settings_reference
from allocflow.flows.settings import Settings
from allocflow.flows.tracking.settings import TrackingSettings
from allocflow.models.topics import InputTopic, OutputTopic

pytestmark = pytest.mark.unit

DOC = Path(__file__).parents[2] / "docs" / "configuration.md"


def test_configuration_doc_lists_every_setting() -> None:
    text = DOC.read_text()
    table = re.search(
        r"<!-- settings-table:start -->\n(.*)\n<!-- settings-table:end -->", text, re.S
    )
    assert table is not None
    assert table.group(1) == settings_reference(), (
        "docs/configuration.md is stale: paste the output of `allocflow settings --markdown`"
    )


def test_every_field_is_described() -> None:
    for name, info in Settings.model_fields.items():
        assert info.description, name


def test_environment_sets_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOCFLOW_TOPIC_ORDERS", "erp.orders.v1")
    monkeypatch.setenv("ALLOCFLOW_KAFKA_EXTRA", '{"socket.keepalive.enable": "true"}')
    settings = Settings()
    assert settings.topic_name(InputTopic.ORDERS) == "erp.orders.v1"
    assert settings.kafka_connection("h:1").consumer_config("g")["socket.keepalive.enable"] == (
        "true"
    )


def test_every_logical_topic_has_a_setting() -> None:
    settings = Settings()
    for topic in (*InputTopic, *OutputTopic):
        assert settings.topic_name(topic) == topic.value


def test_bad_setting_stops_the_cli_naming_field_and_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ALLOCFLOW_TOPIC_PARTITIONS", "many")
    assert main(["settings"]) == 2
    error = capsys.readouterr().err
    assert "topic_partitions (ALLOCFLOW_TOPIC_PARTITIONS)" in error
    assert "'many'" in error


def test_secret_values_are_never_echoed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ALLOCFLOW_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("ALLOCFLOW_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("ALLOCFLOW_SASL_USERNAME", "svc-allocflow")
    monkeypatch.setenv("ALLOCFLOW_SASL_PASSWORD", "hunter2-secret")
    assert main(["settings"]) == 0
    shown = capsys.readouterr().out
    assert "hunter2-secret" not in shown
    assert json.loads(shown)["sasl_password"] == "*" * 10
    monkeypatch.setenv("ALLOCFLOW_KAFKA_EXTRA", "not json hunter2-secret")
    assert main(["settings"]) == 2
    error = capsys.readouterr().err
    assert "kafka_extra" in error
    assert "hunter2-secret" not in error


def test_gate_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOCFLOW_DQ_ALLOWED_LATENESS_S", "300")
    monkeypatch.setenv("ALLOCFLOW_DQ_DEDUPE_WINDOW", "5000")
    gate = Settings().gate_settings()
    assert gate.allowed_lateness == timedelta(minutes=5)
    assert gate.dedupe_window == 5000
    assert gate.orphan_grace == timedelta(hours=1)


def test_a_bad_gate_setting_names_its_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOCFLOW_DQ_STALE_FEED_AFTER_S", "0")
    with pytest.raises(ValidationError, match="dq_stale_feed_after_s"):
        Settings()


def test_feed_silences_come_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().gate_settings().stale_after("orders") == timedelta(hours=72)
    monkeypatch.setenv(
        "ALLOCFLOW_DQ_STALE_FEED_AFTER_BY_FEED_S", '{"orders": 14400, "carrier-events": 7200}'
    )
    gate = Settings().gate_settings()
    assert gate.stale_after("orders") == timedelta(hours=4)
    assert gate.stale_after("carrier-events") == timedelta(hours=2)
    assert gate.stale_after("shipments") == timedelta(hours=24)


@pytest.mark.parametrize(
    ("value", "reason"),
    [('{"order": 5}', "unknown feed 'order'"), ('{"orders": -1}', "greater than 0")],
)
def test_a_bad_feed_silence_names_its_field(
    monkeypatch: pytest.MonkeyPatch, value: str, reason: str
) -> None:
    monkeypatch.setenv("ALLOCFLOW_DQ_STALE_FEED_AFTER_BY_FEED_S", value)
    with pytest.raises(ValidationError, match=reason) as error:
        Settings()
    assert "dq_stale_feed_after_by_feed_s" in str(error.value)


def test_tracking_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOCFLOW_ROUTE_STALL_AFTER_S", "7200")
    monkeypatch.setenv("ALLOCFLOW_ROUTE_PREDICTION_QUANTILE", "0.8")
    tracking = Settings().tracking_settings()
    assert tracking.stall_after == timedelta(hours=2)
    assert tracking.prediction_quantile == 0.8
    assert tracking.tick_every == timedelta(minutes=15)


def test_tracking_defaults_match_the_tracker_defaults() -> None:
    assert Settings().tracking_settings() == TrackingSettings()


def test_a_bad_tracking_setting_names_its_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOCFLOW_ROUTE_PREDICTION_QUANTILE", "1")
    with pytest.raises(ValidationError, match="route_prediction_quantile"):
        Settings()


def test_secrets_in_kafka_extra_are_masked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = {"sasl.oauthbearer.client.secret": "hunter2-secret", "linger.ms": "5"}
    monkeypatch.setenv("ALLOCFLOW_KAFKA_EXTRA", json.dumps(extra))
    assert main(["settings"]) == 0
    shown = capsys.readouterr().out
    assert "hunter2-secret" not in shown
    assert json.loads(shown)["kafka_extra"] == {
        "sasl.oauthbearer.client.secret": "***",
        "linger.ms": "5",
    }
    assert "hunter2-secret" not in repr(Settings())


def test_the_gate_entity_memory_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().gate_settings().entity_memory == 1_000_000
    monkeypatch.setenv("ALLOCFLOW_DQ_ENTITY_MEMORY", "250000")
    assert Settings().gate_settings().entity_memory == 250_000
    monkeypatch.setenv("ALLOCFLOW_DQ_ENTITY_MEMORY", "0")
    with pytest.raises(ValidationError, match="dq_entity_memory"):
        Settings()


def test_the_order_retention_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().order_retention() == timedelta(days=30)
    monkeypatch.setenv("ALLOCFLOW_ORDER_RETENTION_S", "86400")
    assert Settings().order_retention() == timedelta(days=1)
    monkeypatch.setenv("ALLOCFLOW_ORDER_RETENTION_S", "0")
    with pytest.raises(ValidationError, match="order_retention_s"):
        Settings()
