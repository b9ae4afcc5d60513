"""SASL/TLS settings reach every Kafka client allocflow creates, and secrets stay hidden.

Each client is built as the code builds it, with its confluent-kafka class replaced by
one that records the configuration and stops: the only way to see a client's
configuration without a broker. A static scan then checks that no client
constructor in the package is left out: each one is fed from a
:class:`~allocflow.connectors.kafka_config.KafkaConnection` configuration.
"""

import ast
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import confluent_kafka
import confluent_kafka.admin
import pytest
from bytewax.dataflow import Dataflow
from confluent_kafka import KafkaException

import allocflow.connectors.landing.sources as landing_sources
from allocflow.connectors import aligned_kafka, kafka_admin, kafka_io, topic_counts, topic_watch
from allocflow.connectors.kafka_config import KafkaConnection
from allocflow.connectors.stream_sinks import CheckedKafkaSink
from allocflow.connectors.stream_sources import kafka_source
from allocflow.flows.cli import main
from allocflow.flows.settings import ENV_PREFIX, Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_FOLDERS = ("connectors", "flows", "quality", "dashboards", "models")

PASSWORD = "pw-9f3c1e-never-shown"  # noqa: S105 - a test value, not a credential
KEY_PASSWORD = "key-pw-27b4d0-never-shown"  # noqa: S105 - a test value, not a credential
SECRETS = (PASSWORD, KEY_PASSWORD)
SECURITY = {
    "security.protocol": "SASL_SSL",
    "sasl.mechanism": "SCRAM-SHA-512",
    "sasl.username": "allocator",
    "sasl.password": PASSWORD,
    "ssl.ca.location": "/etc/kafka/ca.pem",
    "ssl.key.password": KEY_PASSWORD,
}
BOOTSTRAP = "kafka-1:9093,kafka-2:9093"
_ENVIRONMENT = {
    "ALLOCFLOW_BOOTSTRAP_SERVERS": BOOTSTRAP,
    "ALLOCFLOW_SECURITY_PROTOCOL": "SASL_SSL",
    "ALLOCFLOW_SASL_MECHANISM": "SCRAM-SHA-512",
    "ALLOCFLOW_SASL_USERNAME": "allocator",
    "ALLOCFLOW_SASL_PASSWORD": PASSWORD,
    "ALLOCFLOW_SSL_CA_LOCATION": "/etc/kafka/ca.pem",
    "ALLOCFLOW_SSL_KEY_PASSWORD": KEY_PASSWORD,
}

_CLIENT_CLASSES = frozenset({"Producer", "Consumer", "AdminClient"})
_CONFIG_METHODS = frozenset({"producer_config", "consumer_config", "admin_config"})
_PLAINTEXT_BY_DESIGN = {
    ("connectors/broker.py", "_answers_metadata"): "probes the embedded Tansu broker it started",
}


class _Captured(Exception):  # noqa: N818 - a signal, not an error
    """Raised by a fake client constructor: carries the configuration it was given."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__("client configuration captured")
        self.config = config


def _fake_client(config: dict[str, Any], *_args: object, **_kwargs: object) -> None:
    raise _Captured(dict(config))


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


@pytest.fixture
def settings() -> Settings:
    return Settings(
        bootstrap_servers=BOOTSTRAP,
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="allocator",
        sasl_password=PASSWORD,
        ssl_ca_location="/etc/kafka/ca.pem",
        ssl_key_password=KEY_PASSWORD,
    )


@pytest.fixture
def connection(settings: Settings) -> KafkaConnection:
    return settings.kafka_connection()


def _capture(
    monkeypatch: pytest.MonkeyPatch, module: object, name: str, build: Callable[[], object]
) -> dict[str, Any]:
    monkeypatch.setattr(module, name, _fake_client)
    with pytest.raises(_Captured) as captured:
        build()
    return captured.value.config


def _assert_secured(config: dict[str, Any]) -> None:
    assert {key: config.get(key) for key in SECURITY} == SECURITY
    assert config["bootstrap.servers"] == BOOTSTRAP


def _substeps(step: object) -> list[object]:
    substeps = getattr(step, "substeps", [])
    return list(substeps.values() if isinstance(substeps, dict) else substeps)


def _bytewax_kafka_source(connection: KafkaConnection) -> Any:
    flow = Dataflow("security")
    kafka_source(flow, "kafka", connection, {"orders": "orders"})
    steps = _substeps(flow)
    while steps:
        step = steps.pop()
        source = getattr(step, "source", None)
        if source is not None:
            return source
        steps.extend(_substeps(step))
    raise AssertionError("the dataflow has no input step")


CLIENTS: dict[str, tuple[object, str, Callable[[KafkaConnection], object]]] = {
    "CheckedProducer": (kafka_io, "Producer", kafka_io.CheckedProducer),
    "CheckedProducer with overrides": (
        kafka_io,
        "Producer",
        lambda c: kafka_io.CheckedProducer(c, {"message.timeout.ms": "1000"}),
    ),
    "CheckedKafkaSink (dataflow outputs)": (
        kafka_io,
        "Producer",
        lambda c: CheckedKafkaSink(c, "allocation-decisions").build("out", 0, 1),
    ),
    "iter_topic / read_topic / allocflow tail": (
        kafka_io,
        "Consumer",
        lambda c: next(kafka_io.iter_topic(c, "orders")),
    ),
    "message_count (run accounting)": (
        topic_counts,
        "Consumer",
        lambda c: topic_counts.message_count(c, "orders"),
    ),
    "TopicWatcher (demo)": (
        topic_watch,
        "Consumer",
        lambda c: topic_watch.TopicWatcher(c, ["orders"]),
    ),
    "KafkaLandingSource (lander)": (
        landing_sources,
        "Consumer",
        lambda c: landing_sources.KafkaLandingSource(c, {"orders": "orders"}, lambda _t, _p: 0),
    ),
    "ensure_topics": (
        kafka_admin,
        "AdminClient",
        lambda c: kafka_admin.ensure_topics(c, ["orders"], partitions=4),
    ),
    "AlignedKafkaSource (allocation input)": (
        aligned_kafka,
        "Consumer",
        lambda c: (source := aligned_kafka.AlignedKafkaSource(c, {"orders": "orders"})).build_part(
            "read_kafka", source.list_parts()[0], None
        ),
    ),
    "bytewax KafkaSource (kafka_source)": (
        __import__("bytewax.connectors.kafka", fromlist=["AdminClient"]),
        "AdminClient",
        lambda c: _bytewax_kafka_source(c).list_parts(),
    ),
}


@pytest.mark.parametrize("name", list(CLIENTS))
def test_every_client_gets_the_security_settings(
    name: str, connection: KafkaConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    module, client_class, build = CLIENTS[name]

    config = _capture(monkeypatch, module, client_class, lambda: build(connection))

    _assert_secured(config)


def test_a_bootstrap_override_keeps_the_security_settings(settings: Settings) -> None:
    connection = settings.kafka_connection("127.0.0.1:1")

    for config in (
        connection.producer_config(),
        connection.consumer_config("g"),
        connection.admin_config(),
    ):
        assert {key: config[key] for key in SECURITY} == SECURITY
        assert config["bootstrap.servers"] == "127.0.0.1:1"


def _capture_first_client(monkeypatch: pytest.MonkeyPatch, run: Callable[[], object]) -> Any:
    """Replace every confluent-kafka client class allocflow imported; run; return the first."""
    originals = {
        confluent_kafka.Producer,
        confluent_kafka.Consumer,
        confluent_kafka.admin.AdminClient,
    }
    for module_name, module in list(sys.modules.items()):
        if module_name.startswith("allocflow."):
            for name in _CLIENT_CLASSES:
                if getattr(module, name, None) in originals:
                    monkeypatch.setattr(module, name, _fake_client)
    with pytest.raises(_Captured) as captured:
        run()
    return captured.value.config


@pytest.mark.parametrize(
    "argv",
    [
        ["land", "--db", "{tmp}/a.duckdb", "--bootstrap", BOOTSTRAP],
        ["tail", "orders", "--bootstrap", BOOTSTRAP],
        ["simulate", "--orders", "1", "--bootstrap", BOOTSTRAP],
        ["run", "--bootstrap", BOOTSTRAP, "--no-tail"],
    ],
    ids=["land", "tail", "simulate", "run"],
)
def test_commands_build_clients_from_the_environment(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable, value in _ENVIRONMENT.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.chdir(tmp_path)
    command = [part.replace("{tmp}", str(tmp_path)) for part in argv]

    config = _capture_first_client(monkeypatch, lambda: main(command))

    _assert_secured(config)


def _package_files() -> Iterator[Path]:
    for folder in PACKAGE_FOLDERS:
        yield from sorted((ROOT / folder).rglob("*.py"))


def _config_builders(tree: ast.Module) -> set[str]:
    """Functions and methods of a module that call a KafkaConnection config method."""
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and any(_calls_config_method(inner) for inner in ast.walk(node))
    }


def _calls_config_method(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in _CONFIG_METHODS
    )


def _callee(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _from_connection(
    expression: ast.expr, function: ast.AST, builders: set[str], seen: frozenset[str]
) -> bool:
    """Whether ``expression`` is built from a KafkaConnection configuration.

    It is when it contains a call of a config method or of a function of this
    module that calls one, or names a local variable every assignment of which is.
    """
    for node in ast.walk(expression):
        if _calls_config_method(node):
            return True
        if isinstance(node, ast.Call) and _callee(node) in builders:
            return True
        if isinstance(node, ast.Name) and node.id not in seen:
            values = [value for target, value in _assignments(function) if target == node.id]
            if values and all(
                _from_connection(v, function, builders, seen | {node.id}) for v in values
            ):
                return True
    return False


def _assignments(function: ast.AST) -> Iterator[tuple[str, ast.expr]]:
    """(name, value) of every plain or annotated assignment to a name in ``function``."""
    for node in ast.walk(function):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    yield target.id, node.value
        elif (
            isinstance(node, ast.AnnAssign)
            and node.value is not None
            and isinstance(node.target, ast.Name)
        ):
            yield node.target.id, node.value


def _client_constructions() -> Iterator[tuple[str, str, ast.Call, ast.AST]]:
    """Every ``Producer(…)``, ``Consumer(…)`` and ``AdminClient(…)`` call in the package."""
    for path in _package_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Call) and _callee(node) in _CLIENT_CLASSES:
                    yield path.relative_to(ROOT).as_posix(), function.name, node, function


def test_no_client_is_built_without_the_connection_configuration() -> None:
    unsecured = []
    found = 0
    for relative, function_name, call, function in _client_constructions():
        found += 1
        if (relative, function_name) in _PLAINTEXT_BY_DESIGN:
            continue
        tree = ast.parse((ROOT / relative).read_text(encoding="utf-8"))
        builders = _config_builders(tree)
        config = call.args[0] if call.args else None
        if config is None or not _from_connection(config, function, builders, frozenset()):
            unsecured.append(f"{relative}:{call.lineno} in {function_name}")

    assert found >= len(CLIENTS) - 1
    assert not unsecured, f"clients built without KafkaConnection's configuration: {unsecured}"


def test_the_static_scan_flags_a_client_built_from_scratch() -> None:
    function = ast.parse(
        "def f(servers):\n"
        "    config = {'bootstrap.servers': servers}\n"
        "    return Consumer(config)\n"
    ).body[0]
    call = next(
        n for n in ast.walk(function) if isinstance(n, ast.Call) and _callee(n) == "Consumer"
    )

    assert not _from_connection(call.args[0], function, set(), frozenset())


# --- secrets -------------------------------------------------------------------------


def _assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def test_settings_command_masks_the_passwords(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for variable, value in _ENVIRONMENT.items():
        monkeypatch.setenv(variable, value)

    assert main(["settings"]) == 0

    out, err = capsys.readouterr()
    _assert_no_secret(out + err)
    assert '"sasl_password": "**********"' in out
    assert '"ssl_key_password": "**********"' in out


def test_settings_errors_do_not_echo_the_passwords(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for variable, value in _ENVIRONMENT.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.delenv("ALLOCFLOW_SASL_MECHANISM")

    assert main(["settings"]) == 2

    out, err = capsys.readouterr()
    assert "sasl_mechanism is required" in err
    _assert_no_secret(out + err)


def test_reprs_mask_the_passwords(settings: Settings, connection: KafkaConnection) -> None:
    sink = CheckedKafkaSink(connection, "allocation-decisions")

    for shown in (repr(settings), str(settings), repr(connection), str(connection), repr(sink)):
        _assert_no_secret(shown)
    assert "'sasl.password': '***'" in repr(connection)


def test_a_failing_client_does_not_reveal_the_passwords(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    for variable, value in _ENVIRONMENT.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.setenv("ALLOCFLOW_SSL_CA_LOCATION", "/nonexistent/allocflow-ca.pem")
    caplog.set_level(logging.DEBUG)

    with pytest.raises(KafkaException) as failure:
        main(["--log-level", "DEBUG", "tail", "orders", "--bootstrap", "127.0.0.1:1"])

    assert "ssl.ca.location" in str(failure.value)
    out, err = capfd.readouterr()
    for text in (str(failure.value), repr(failure.value), caplog.text, out, err):
        _assert_no_secret(text)


def test_an_unreachable_cluster_error_does_not_reveal_the_passwords(
    settings: Settings, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    connection = KafkaConnection(
        "127.0.0.1:1",
        security={
            key: value for key, value in settings.kafka_security().items() if "ssl.ca" not in key
        },
    )
    caplog.set_level(logging.DEBUG)

    with pytest.raises(kafka_io.TopicReadError) as failure:
        kafka_io.read_topic(connection, "orders", timeout_s=1.0)

    out, err = capfd.readouterr()
    for text in (str(failure.value), caplog.text, out, err):
        _assert_no_secret(text)
