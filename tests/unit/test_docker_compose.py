"""docker-compose.yml and the Dockerfile, checked structurally (no Docker engine runs here).

The file must parse, set only real settings, run Kafka in KRaft mode, point every
allocflow service at Kafka's internal listener, keep its data on declared volumes,
and agree with the services and ports table of docs/deployment.md.
"""

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from allocflow.flows.settings import ENV_PREFIX, Settings
from allocflow.models.topics import InputTopic, OutputTopic

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"

ALLOCFLOW_SERVICES = ("pipeline", "lander", "dashboard")
_VARIABLE = re.compile(r"\bALLOCFLOW_[A-Z0-9_]+")
_TABLE_START = "<!-- compose-services:start -->"
_TABLE_END = "<!-- compose-services:end -->"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def _environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        return dict(item.split("=", 1) for item in environment)
    return {key: str(value) for key, value in environment.items()}


def _command(service: dict[str, Any]) -> str:
    """The service's entrypoint and command as the shell gets them, on one line.

    Compose turns ``$$`` into ``$``; line continuations and indentation collapse.
    """
    text = " ".join(service.get("entrypoint", []) + service.get("command", []))
    return " ".join(text.replace("\\\n", " ").replace("$$", "$").split())


def _mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Container path → (volume or host path, read-only) of the short volume syntax."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *options = volume.split(":")
        mounts[target] = (source, "ro" in options)
    return mounts


def _listeners(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,…`` → name → (host, port)."""
    listeners = {}
    for item in value.split(","):
        name, _, address = item.partition("://")
        host, _, port = address.rpartition(":")
        listeners[name] = (host, int(port))
    return listeners


def _doc_table() -> list[dict[str, str]]:
    text = DEPLOYMENT_DOC.read_text(encoding="utf-8")
    table = text.split(_TABLE_START, 1)[1].split(_TABLE_END, 1)[0].strip().splitlines()
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    rows = []
    for line in table[2:]:
        cells = [cell.strip().strip("`") for cell in line.strip("|").split("|")]
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def test_compose_file_parses_with_the_expected_services(
    services: dict[str, dict[str, Any]],
) -> None:
    assert set(services) == {"kafka", "topics", *ALLOCFLOW_SERVICES}


def test_commands_leave_variables_to_the_container_shell() -> None:
    text = COMPOSE.read_text(encoding="utf-8").replace("$$", "")

    assert "$" not in text, "a single $ is interpolated by compose from the host environment"


def test_every_allocflow_variable_is_a_setting() -> None:
    fields = {ENV_PREFIX + name.upper() for name in Settings.model_fields}

    used = set(_VARIABLE.findall(COMPOSE.read_text(encoding="utf-8")))

    assert used, "the compose file configures allocflow through ALLOCFLOW_* variables"
    assert used <= fields, f"not settings: {sorted(used - fields)}"


@pytest.mark.parametrize("name", ALLOCFLOW_SERVICES)
def test_each_service_environment_is_valid_settings(
    services: dict[str, dict[str, Any]], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in list(os.environ):
        if variable.startswith(ENV_PREFIX):
            monkeypatch.delenv(variable)
    for variable, value in _environment(services[name]).items():
        monkeypatch.setenv(variable, value)

    Settings()


def test_kafka_is_the_official_image_in_kraft_mode(services: dict[str, dict[str, Any]]) -> None:
    kafka = services["kafka"]
    environment = _environment(kafka)

    assert kafka["image"].startswith("apache/kafka:")
    assert set(environment["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any("ZOOKEEPER" in key for key in environment)
    assert environment["CLUSTER_ID"]
    controller = environment["KAFKA_CONTROLLER_LISTENER_NAMES"]
    node_id, _, voter = environment["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert node_id == str(environment["KAFKA_NODE_ID"])
    assert voter == f"kafka:{_listeners(environment['KAFKA_LISTENERS'])[controller][1]}"
    protocols = dict(
        item.split(":") for item in environment["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(protocols) == set(_listeners(environment["KAFKA_LISTENERS"]))
    assert environment["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"


def test_allocflow_services_use_the_internal_listener(services: dict[str, dict[str, Any]]) -> None:
    kafka = _environment(services["kafka"])
    internal = kafka["KAFKA_INTER_BROKER_LISTENER_NAME"]
    host, port = _listeners(kafka["KAFKA_ADVERTISED_LISTENERS"])[internal]
    assert _listeners(kafka["KAFKA_LISTENERS"])[internal][1] == port
    assert host == "kafka"

    for name in ("topics", "pipeline", "lander"):
        assert _environment(services[name])["ALLOCFLOW_BOOTSTRAP_SERVERS"] == f"{host}:{port}"
    assert '--bootstrap "$ALLOCFLOW_BOOTSTRAP_SERVERS"' in _command(services["lander"])


def test_topics_service_creates_all_nine_topics(services: dict[str, dict[str, Any]]) -> None:
    topics = services["topics"]
    environment = _environment(topics)
    command = _command(topics)

    assert topics["image"] == services["kafka"]["image"]
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert "kafka-topics.sh" in command
    assert "--create --if-not-exists" in command
    assert '--partitions "$ALLOCFLOW_TOPIC_PARTITIONS"' in command
    assert int(environment["ALLOCFLOW_TOPIC_PARTITIONS"]) >= 4
    for topic in (*InputTopic, *OutputTopic):
        variable = f"ALLOCFLOW_TOPIC_{topic.name}"
        assert environment[variable] == topic.value
        assert f'"${variable}"' in command, variable


def test_pipeline_initialises_and_uses_a_recovery_store_on_a_volume(
    services: dict[str, dict[str, Any]],
) -> None:
    pipeline = services["pipeline"]
    recovery_dir = _environment(pipeline)["ALLOCFLOW_RECOVERY_DIR"]
    command = _command(pipeline)

    assert recovery_dir in _mounts(pipeline)
    assert 'allocflow recovery init "$ALLOCFLOW_RECOVERY_DIR"' in command
    assert 'allocflow run --recovery-dir "$ALLOCFLOW_RECOVERY_DIR"' in command
    assert "--db" not in command, "the lander is a service of its own"
    assert pipeline["depends_on"]["topics"]["condition"] == "service_completed_successfully"


def test_lander_and_dashboard_share_the_database_volume(
    services: dict[str, dict[str, Any]],
) -> None:
    lander, dashboard = services["lander"], services["dashboard"]
    database = re.search(r"allocflow land --db (\S+)", _command(lander))
    assert database is not None
    path = Path(database.group(1))

    lander_mount = _mounts(lander)[str(path.parent)]
    dashboard_mount = _mounts(dashboard)[str(path.parent)]

    assert lander_mount == (dashboard_mount[0], False)
    assert dashboard_mount[1], "the dashboard mounts the data read-only"
    assert f"allocflow dashboard --db {path} --address 0.0.0.0" in _command(dashboard)
    assert f"{path}.snapshot" in _command(dashboard)
    assert lander.get("deploy", {}).get("replicas", 1) == 1, "one writer per DuckDB file"


def test_volumes_are_declared_and_hold_the_data(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = set(compose["volumes"])
    used = {
        source
        for service in services.values()
        for source, _ in _mounts(service).values()
        if not source.startswith((".", "/"))
    }

    assert used == declared
    assert _mounts(services["kafka"])[_environment(services["kafka"])["KAFKA_LOG_DIRS"]]


def test_services_and_ports_agree_with_the_deployment_doc(
    services: dict[str, dict[str, Any]],
) -> None:
    rows = {row["service"]: row for row in _doc_table()}

    assert set(rows) == set(services)
    for name, service in services.items():
        published = [port.split(":") for port in service.get("ports", [])]
        row = rows[name]
        assert row["image"] == service["image"], name
        if published:
            assert published == [[row["host port"], row["container port"]]], name
        else:
            assert (row["host port"], row["container port"]) == ("—", "—"), name


def test_allocflow_services_build_the_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    for name in ALLOCFLOW_SERVICES:
        build = services[name]["build"]
        assert (build["context"], build["dockerfile"]) == (".", "Dockerfile"), name
        assert services[name]["image"] == "allocflow:local", name


def test_dockerfile_installs_the_package() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]

    assert instructions[0] == "FROM python:3.12-slim"
    assert re.search(
        r"^RUN PIP_CONSTRAINT=/src/requirements.lock pip install \.(\s|$)", text, re.MULTILINE
    ), "installs the locked versions"
    for folder in ("models", "connectors", "flows", "dashboards", "quality"):
        assert f"COPY {folder} {folder}" in text
    assert "COPY pyproject.toml README.md requirements.lock ./" in text
    assert re.search(r"^USER allocflow$", text, re.MULTILINE), "runs as a non-root user"
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert ".venv" in ignored
