"""The published contract files, generated from the models: JSON Schemas and AsyncAPI.

Every function is pure: the same models give byte-identical files, so the committed
copies under ``docs/contract/`` can be compared with a fresh generation.

Example:
    >>> files = contract_files()
    >>> sorted(files)[:2]
    ['allocation-decisions.schema.json', 'allocation-exceptions.schema.json']
    >>> files["asyncapi.json"].splitlines()[1]
    '  "asyncapi": "3.0.0",'
"""

import inspect
import json
from importlib.metadata import version
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from allocflow.models.envelope import SCHEMA_VERSION
from allocflow.models.topics import INPUT_TOPICS, OUTPUT_TOPICS, InputTopic, OutputTopic, TopicSpec

ASYNCAPI_FILE = "asyncapi.json"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID_PREFIX = f"urn:allocflow:contract:v{SCHEMA_VERSION}:"
KAFKA_BINDING_VERSION = "0.5.0"
DISCRIMINATOR = "event_type"

Topic = InputTopic | OutputTopic

_COMPONENT_SCHEMAS = "#/components/schemas/{model}"
_GENERATED_NOTE = "Generated from the allocflow models by `allocflow schema`; do not edit."
_ACRONYMS = {"dq": "DQ", "eta": "ETA"}


def topic_spec(topic: Topic) -> TopicSpec:
    """Return what ``topic`` carries."""
    if isinstance(topic, InputTopic):
        return INPUT_TOPICS[topic]
    return OUTPUT_TOPICS[topic]


def all_topics() -> list[Topic]:
    """Return every topic of the contract: the input topics, then the output topics."""
    return [*InputTopic, *OutputTopic]


def schema_file_name(topic: Topic) -> str:
    """Return the file name of the JSON Schema of ``topic``, e.g. ``orders.schema.json``."""
    return f"{topic.value}.schema.json"


def topic_schema(topic: Topic) -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of one message of ``topic``.

    Input topics give a ``oneOf`` over their event types, discriminated by ``event_type``,
    which the schema marks as required because the topic's decoder needs it.

    Args:
        topic: The topic to describe.

    Returns:
        The schema, with ``$schema``, ``$id``, ``title`` and ``description`` set.
    """
    spec = topic_spec(topic)
    schema = spec.adapter.json_schema(mode="validation")
    if isinstance(topic, InputTopic):
        _require_discriminator(schema["$defs"], spec.messages)
    _sort_required(schema)
    return {
        **schema,
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"{SCHEMA_ID_PREFIX}{topic.value}",
        "$comment": _GENERATED_NOTE,
        "title": spec.title,
        "description": spec.description,
    }


def asyncapi_document() -> dict[str, Any]:
    """Return the AsyncAPI 3.0.0 document of every topic, from allocflow's point of view.

    allocflow receives on the input topics and sends on the output topics. Each event
    or record type is one message whose payload refers to ``components.schemas``.

    Returns:
        The document as plain JSON-compatible data.
    """
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "allocflow event contract",
            "version": version("allocflow"),
            "description": (
                "Kafka topics that allocflow consumes (orders, stock and reservations, "
                "shipments, carrier events) and produces (allocation decisions and "
                "exceptions, route alerts, data-quality alerts, dead letters). Topic names "
                "are the defaults; deployments can rename them. Every message is one JSON "
                f"object whose `schema_version` is {SCHEMA_VERSION}. See docs/contract.md."
            ),
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "channels": {topic.value: _channel(topic) for topic in all_topics()},
        "operations": dict(_operation(topic) for topic in all_topics()),
        "components": {
            "messages": _component_messages(),
            "schemas": _component_schemas(),
        },
    }


def render(document: dict[str, Any]) -> str:
    """Serialise ``document`` deterministically: sorted keys, 2-space indent, final newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def contract_files() -> dict[str, str]:
    """Return every generated contract file, by file name, with its text."""
    files = {schema_file_name(topic): render(topic_schema(topic)) for topic in all_topics()}
    files[ASYNCAPI_FILE] = render(asyncapi_document())
    return dict(sorted(files.items()))


def message_title(model: type[BaseModel]) -> str:
    """Return a human title of a message from its type tag, e.g. ``Carrier ETA updated``."""
    words = _type_tag(model).replace(".", " ").replace("_", " ").split()
    title = " ".join(_ACRONYMS.get(word, word) for word in words)
    return title[0].upper() + title[1:]


def _type_tag(model: type[BaseModel]) -> str:
    fields = model.model_fields
    tag_field = fields.get(DISCRIMINATOR) or fields["record_type"]
    tag: str = tag_field.default
    return tag


def _require_discriminator(definitions: dict[str, Any], models: tuple[type[Any], ...]) -> None:
    for model in models:
        required = definitions[model.__name__]["required"]
        if DISCRIMINATOR not in required:
            required.append(DISCRIMINATOR)


def _sort_required(node: Any) -> None:
    """Sort every ``required`` list in place: its order means nothing, field order may move."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "required" and isinstance(value, list):
                value.sort()
            else:
                _sort_required(value)
    elif isinstance(node, list):
        for item in node:
            _sort_required(item)


def _channel(topic: Topic) -> dict[str, Any]:
    spec = topic_spec(topic)
    return {
        "address": topic.value,
        "title": spec.title,
        "description": spec.description,
        "messages": {
            model.__name__: {"$ref": f"#/components/messages/{model.__name__}"}
            for model in spec.messages
        },
    }


def _operation(topic: Topic) -> tuple[str, dict[str, Any]]:
    spec = topic_spec(topic)
    inbound = isinstance(topic, InputTopic)
    action = "receive" if inbound else "send"
    camel = "".join(word.capitalize() for word in topic.value.split("-"))
    operation = {
        "action": action,
        "channel": {"$ref": f"#/channels/{topic.value}"},
        "title": f"{action.capitalize()} {spec.title.lower()}",
        "summary": f"allocflow {'consumes' if inbound else 'publishes'} every message of "
        f"`{topic.value}`.",
        "messages": [
            {"$ref": f"#/channels/{topic.value}/messages/{model.__name__}"}
            for model in spec.messages
        ],
    }
    return f"{action}{camel}", operation


def _component_messages() -> dict[str, Any]:
    messages: dict[str, Any] = {}
    for topic in all_topics():
        spec = topic_spec(topic)
        for model in spec.messages:
            messages[model.__name__] = _message(model, spec)
    return messages


def _message(model: type[BaseModel], spec: TopicSpec) -> dict[str, Any]:
    return {
        "name": _type_tag(model),
        "title": message_title(model),
        "summary": _docstring_summary(model),
        "contentType": "application/json",
        "payload": {"$ref": _COMPONENT_SCHEMAS.format(model=model.__name__)},
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": spec.key_description},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def _docstring_summary(model: type[BaseModel]) -> str:
    return inspect.cleandoc(model.__doc__ or "").split("\n\n")[0].replace("\n", " ")


def _component_schemas() -> dict[str, Any]:
    inputs = [model for spec in INPUT_TOPICS.values() for model in spec.messages]
    outputs = [model for spec in OUTPUT_TOPICS.values() for model in spec.messages]
    _, schema = models_json_schema(
        [(model, "validation") for model in (*inputs, *outputs)],
        ref_template=_COMPONENT_SCHEMAS,
    )
    definitions: dict[str, Any] = schema["$defs"]
    _require_discriminator(definitions, tuple(inputs))
    _sort_required(definitions)
    return definitions
