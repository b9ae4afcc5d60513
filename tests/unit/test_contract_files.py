"""The published contract: generated files are current, valid, and the docs' examples hold."""

import json
import re
from base64 import urlsafe_b64decode
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator, Draft202012Validator
from pydantic import BaseModel

from allocflow.flows.cli import main
from allocflow.flows.commands.schema import check_contract
from allocflow.flows.contract_docs import (
    ASYNCAPI_FILE,
    Topic,
    all_topics,
    contract_files,
    schema_file_name,
    topic_schema,
    topic_spec,
)
from allocflow.models.codec import ContractError, decode_event
from allocflow.models.dead_letter import DeadLetterRecord
from allocflow.models.topics import InputTopic

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
CONTRACT_DIR = REPO / "docs" / "contract"
CONTRACT_DOC = REPO / "docs" / "contract.md"
REGENERATE = "run `allocflow schema --out docs/contract` and commit the result"


def _type_tag(model: type[BaseModel]) -> str:
    fields = model.model_fields
    tag: str = (fields.get("event_type") or fields["record_type"]).default
    return tag


MESSAGES: dict[str, tuple[Topic, type[BaseModel]]] = {
    _type_tag(model): (topic, model)
    for topic in all_topics()
    for model in topic_spec(topic).messages
}


def _doc_examples() -> list[dict[str, Any]]:
    text = CONTRACT_DOC.read_text(encoding="utf-8")
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, re.DOTALL)]


EXAMPLES = _doc_examples()


def _example_id(example: dict[str, Any]) -> str:
    return str(example.get("event_type") or example.get("record_type"))


def _tag_of(example: dict[str, Any]) -> str:
    tag = example.get("event_type") or example.get("record_type")
    assert tag in MESSAGES, f"json example of unknown type {tag!r}: {example}"
    return str(tag)


def _asyncapi() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(contract_files()[ASYNCAPI_FILE])
    return document


def _resolve(document: dict[str, Any], pointer: str) -> Any:
    assert pointer.startswith("#/"), f"reference outside the document: {pointer}"
    node: Any = document
    for part in pointer[2:].split("/"):
        key = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), f"{pointer}: {key!r} is not inside an object"
        assert key in node, f"{pointer} does not resolve: no {key!r}"
        node = node[key]
    return node


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _references(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _references(value)]
    return []


def test_committed_contract_files_match_the_models() -> None:
    problems = check_contract(CONTRACT_DIR)
    assert not problems, (
        "docs/contract/ is out of date; " + REGENERATE + ":\n" + "\n".join(problems)
    )


def test_generation_is_deterministic_json_with_sorted_keys() -> None:
    files = contract_files()
    assert files == contract_files()
    for name, text in files.items():
        document = json.loads(text)
        assert text == json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        assert name == ASYNCAPI_FILE or name.endswith(".schema.json")


def test_there_is_one_schema_file_per_topic_and_the_asyncapi_document() -> None:
    expected = {f"{topic.value}.schema.json" for topic in all_topics()} | {"asyncapi.json"}
    assert set(contract_files()) == expected
    assert len(expected) == 10


@pytest.mark.parametrize("topic", all_topics(), ids=str)
def test_topic_schema_is_a_valid_draft_2020_12_schema(topic: Topic) -> None:
    schema = json.loads(contract_files()[schema_file_name(topic)])
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"urn:allocflow:contract:v1:{topic.value}"
    assert schema["title"] == topic_spec(topic).title
    assert schema["description"] == topic_spec(topic).description
    for reference in _references(schema):
        _resolve(schema, reference)


@pytest.mark.parametrize("topic", list(InputTopic), ids=str)
def test_input_schemas_require_the_event_type(topic: InputTopic) -> None:
    schema = topic_schema(topic)
    for model in topic_spec(topic).messages:
        definition = schema["$defs"][model.__name__]
        assert "event_type" in definition["required"]
    without_type = {"event_id": "e-1", "event_time": "2025-03-14T06:00:00Z", "source": "wms"}
    assert not Draft202012Validator(schema).is_valid(without_type)


def test_asyncapi_document_header() -> None:
    document = _asyncapi()
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["version"] == version("allocflow")
    assert document["info"]["title"]
    assert document["info"]["description"]
    assert document["defaultContentType"] == "application/json"


def test_asyncapi_has_a_channel_and_an_operation_per_topic() -> None:
    document = _asyncapi()
    assert set(document["channels"]) == {topic.value for topic in all_topics()}
    operations = {
        operation["channel"]["$ref"]: operation for operation in document["operations"].values()
    }
    assert len(operations) == len(document["operations"]) == 9
    for topic in all_topics():
        channel = document["channels"][topic.value]
        assert channel["address"] == topic.value
        operation = operations[f"#/channels/{topic.value}"]
        assert operation["action"] == ("receive" if isinstance(topic, InputTopic) else "send")
        sent = sorted(_resolve(document, ref["$ref"])["$ref"] for ref in operation["messages"])
        assert sent == sorted(message["$ref"] for message in channel["messages"].values())
        assert len(sent) == len(topic_spec(topic).messages)


def test_every_asyncapi_reference_resolves_within_the_document() -> None:
    document = _asyncapi()
    references = _references(document)
    assert len(references) > 100
    for reference in references:
        _resolve(document, reference)


@pytest.mark.parametrize("tag", sorted(MESSAGES))
def test_every_message_type_has_an_asyncapi_message(tag: str) -> None:
    document = _asyncapi()
    topic, model = MESSAGES[tag]
    reference = document["channels"][topic.value]["messages"][model.__name__]["$ref"]
    message = _resolve(document, reference)
    assert message["name"] == tag
    assert message["title"]
    assert message["summary"] == (model.__doc__ or "").strip().splitlines()[0]
    kafka = message["bindings"]["kafka"]
    assert kafka["bindingVersion"] == "0.5.0"
    assert kafka["key"] == {"type": "string", "description": topic_spec(topic).key_description}
    payload = _resolve(document, message["payload"]["$ref"])
    Draft7Validator.check_schema(payload)
    tag_field = "event_type" if isinstance(topic, InputTopic) else "record_type"
    assert payload["properties"][tag_field]["const"] == tag


def test_the_docs_show_an_example_of_every_event_and_record_type() -> None:
    shown = {_tag_of(example) for example in EXAMPLES}
    assert sorted(set(MESSAGES) - shown) == []


@pytest.mark.parametrize("example", EXAMPLES, ids=_example_id)
def test_doc_example_validates_against_model_and_topic_schema(example: dict[str, Any]) -> None:
    topic, model = MESSAGES[_tag_of(example)]
    raw = json.dumps(example).encode()
    assert type(topic_spec(topic).adapter.validate_json(raw)) is model
    model.model_validate_json(raw)
    validator = Draft202012Validator(
        topic_schema(topic), format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    errors = [
        f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(example)
    ]
    assert errors == []


@pytest.mark.parametrize(
    "example",
    [example for example in EXAMPLES if example.get("record_type") == "dead_letter"],
    ids=lambda example: example["reason_code"],
)
def test_doc_dead_letter_examples_are_what_the_codec_reports(example: dict[str, Any]) -> None:
    record = DeadLetterRecord.model_validate_json(json.dumps(example))
    assert record.raw == urlsafe_b64decode(example["raw"])
    with pytest.raises(ContractError) as caught:
        decode_event(InputTopic(record.source_topic), record.raw)
    assert caught.value.reason_code == record.reason_code
    assert caught.value.summary == record.reason
    assert caught.value.errors == record.errors
    assert caught.value.event_id == record.event_id


def test_the_docs_show_every_dead_letter_reason() -> None:
    reasons = {example["reason_code"] for example in EXAMPLES if "reason_code" in example}
    assert {"MALFORMED_JSON", "UNKNOWN_EVENT_TYPE", "UNSUPPORTED_SCHEMA_VERSION"} <= reasons
    assert "SCHEMA_VIOLATION" in reasons


def _field_names(schema: dict[str, Any]) -> set[str]:
    definitions = [schema, *schema.get("$defs", {}).values()]
    return {name for definition in definitions for name in definition.get("properties", {})}


@pytest.mark.parametrize("topic", all_topics(), ids=str)
def test_the_docs_name_every_field_of_the_topic(topic: Topic) -> None:
    text = CONTRACT_DOC.read_text(encoding="utf-8")
    undocumented = sorted(
        name for name in _field_names(topic_schema(topic)) if not re.search(rf"[`.]{name}`", text)
    )
    assert undocumented == []


def test_schema_command_writes_then_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schema", "--out", str(tmp_path)]) == 0
    assert {path.name for path in tmp_path.iterdir()} == set(contract_files())
    assert main(["schema", "--check", str(tmp_path)]) == 0
    assert "up to date" in capsys.readouterr().out


def test_schema_check_lists_differing_missing_and_stale_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["schema", "--out", str(tmp_path)])
    (tmp_path / "orders.schema.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / ASYNCAPI_FILE).unlink()
    (tmp_path / "orders-v0.schema.json").write_text("{}\n", encoding="utf-8")
    capsys.readouterr()

    assert main(["schema", "--check", str(tmp_path)]) == 1

    report = capsys.readouterr().err
    assert f"differs: {tmp_path / 'orders.schema.json'}" in report
    assert f"missing: {tmp_path / ASYNCAPI_FILE}" in report
    assert f"unexpected: {tmp_path / 'orders-v0.schema.json'}" in report
    assert "shipments.schema.json" not in report
    assert f"allocflow schema --out {tmp_path}" in report
