"""Decoding input messages: every contract violation gives a reason code and a readable error."""

import json
import re
import unicodedata
from collections.abc import Callable
from typing import Any

import pytest

from allocflow.models._internal.types import IDENTIFIER_PATTERN, INVISIBLE_IN_IDS
from allocflow.models.codec import (
    UTF8_BOM,
    ContractError,
    decode_event,
    encode_event,
    event_time_rejection,
)
from allocflow.models.dead_letter import DeadLetterReason, FieldError
from allocflow.models.orders import OrderPlaced
from allocflow.models.topics import InputTopic

pytestmark = pytest.mark.unit

Mutation = Callable[[dict[str, Any]], None]


def _order_placed() -> dict[str, Any]:
    return {
        "event_id": "oms-20250314-004417",
        "event_type": "order.placed",
        "event_time": "2025-03-14T09:12:44-05:00",
        "source": "oms",
        "schema_version": 1,
        "order_id": "SO-0100482",
        "customer_id": "CUST-1042",
        "customer_tier": "gold",
        "channel": "ecommerce",
        "region": "southeast",
        "promised_date": "2025-03-18T17:00:00-05:00",
        "lines": [
            {"line_id": "1", "sku": "SKU-10482", "qty": 24, "unit_price": 18.5, "unit_cost": 11.2},
            {"line_id": "2", "sku": "SKU-10977", "qty": 6, "unit_price": 142.0, "unit_cost": 98.75},
        ],
    }


def _decode_error(raw: bytes, topic: InputTopic = InputTopic.ORDERS) -> ContractError:
    with pytest.raises(ContractError) as caught:
        decode_event(topic, raw)
    return caught.value


def _mutated(mutation: Mutation) -> bytes:
    document = _order_placed()
    mutation(document)
    return json.dumps(document).encode()


def _set(path: str, value: Any) -> Mutation:
    *parents, leaf = path.split(".")

    def mutate(document: dict[str, Any]) -> None:
        node: Any = document
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[leaf] = value

    return mutate


def _drop(field: str) -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        del document[field]

    return mutate


def test_a_valid_event_decodes_to_its_model() -> None:
    event = decode_event(InputTopic.ORDERS, json.dumps(_order_placed()).encode())
    assert isinstance(event, OrderPlaced)
    assert event.lines[1].qty == 6
    assert event.message_key() == "SO-0100482"
    assert decode_event(InputTopic.ORDERS, encode_event(event)) == event


@pytest.mark.parametrize(
    ("mutation", "field", "value", "message"),
    [
        pytest.param(
            _set("event_time", "2025-03-14T09:12:44"),
            "event_time",
            '"2025-03-14T09:12:44"',
            "should have timezone info",
            id="naive-datetime",
        ),
        pytest.param(
            _set("promised_date", "2025-03-18"),
            "promised_date",
            '"2025-03-18"',
            "RFC 3339",
            id="date-without-time",
        ),
        pytest.param(_set("lines.0.qty", 0), "lines.0.qty", "0", "greater than 0", id="qty-0"),
        pytest.param(
            _set("lines.1.qty", -3), "lines.1.qty", "-3", "greater than 0", id="qty-negative"
        ),
        pytest.param(
            _set("lines.0.qty", 2.5), "lines.0.qty", "2.5", "valid integer", id="qty-fraction"
        ),
        pytest.param(
            _set("lines.0.qty", "24"), "lines.0.qty", '"24"', "valid integer", id="qty-string"
        ),
        pytest.param(
            _set("lines.0.qty", 10**30),
            "lines.0.qty",
            str(10**30),
            "less than or equal",
            id="qty-beyond-64-bits",
        ),
        pytest.param(
            _set("lines.1.unit_price", -0.01),
            "lines.1.unit_price",
            "-0.01",
            "greater than or equal to 0",
            id="price-negative",
        ),
        pytest.param(
            _set("channel", "fax"),
            "channel",
            '"fax"',
            "'ecommerce', 'edi' or 'sales'",
            id="unknown-enum",
        ),
        pytest.param(_set("source", "ERP"), "source", '"ERP"', "'erp'", id="enum-wrong-case"),
        pytest.param(_set("order_id", ""), "order_id", '""', "at least 1 character", id="empty-id"),
        pytest.param(
            _set("customer_id", "CUST 1042"),
            "customer_id",
            '"CUST 1042"',
            "visible characters only: U+0020 at position 4",
            id="id-with-space",
        ),
        pytest.param(
            _set("lines.0.sku", " "),
            "lines.0.sku",
            '" "',
            "visible characters only",
            id="whitespace-id",
        ),
        pytest.param(
            _set("region", "x" * 129),
            "region",
            '"' + "x" * 119 + "…",
            "at most 128 characters",
            id="id-too-long",
        ),
        pytest.param(_set("lines", []), "lines", "[]", "at least 1 item", id="no-lines"),
        pytest.param(
            _set("fulfilment_node", "DC-ATL"),
            "fulfilment_node",
            '"DC-ATL"',
            "Extra inputs are not permitted",
            id="unknown-field",
        ),
        pytest.param(
            _drop("customer_id"), "customer_id", None, "Field required", id="missing-field"
        ),
        pytest.param(
            _drop("event_type"), "event_type", None, "Field required", id="missing-event-type"
        ),
    ],
)
def test_schema_violation_names_the_field_and_the_value(
    mutation: Mutation, field: str, value: str | None, message: str
) -> None:
    error = _decode_error(_mutated(mutation))
    assert error.reason_code is DeadLetterReason.SCHEMA_VIOLATION
    assert len(error.errors) == 1
    (found,) = error.errors
    assert (found.field, found.value) == (field, value)
    assert message in found.message
    assert error.event_id == "oms-20250314-004417"


def test_every_bad_field_is_reported_in_one_error() -> None:
    document = _order_placed()
    document["promised_date"] = "2025-03-18T17:00:00"
    document["lines"][0]["qty"] = 0
    document["lines"][1]["line_id"] = ""

    error = _decode_error(json.dumps(document).encode())

    assert [(found.field, found.value) for found in error.errors] == [
        ("promised_date", '"2025-03-18T17:00:00"'),
        ("lines.0.qty", "0"),
        ("lines.1.line_id", '""'),
    ]
    assert str(error) == error.summary
    assert error.summary == (
        'promised_date: Input should have timezone info (got "2025-03-18T17:00:00"); '
        "lines.0.qty: Input should be greater than 0 (got 0); "
        'lines.1.line_id: String should have at least 1 character (got "")'
    )


def test_cross_field_rule_is_a_schema_violation_of_the_whole_message() -> None:
    document = _order_placed()
    document["lines"][1]["line_id"] = "1"

    error = _decode_error(json.dumps(document).encode())

    assert error.reason_code is DeadLetterReason.SCHEMA_VIOLATION
    assert error.errors[0].field == ""
    assert "line_id '1' appears more than once" in error.errors[0].message


@pytest.mark.parametrize(
    ("event_type", "topic"),
    [
        ("order.shipped", InputTopic.ORDERS),
        ("stock.snapshot", InputTopic.ORDERS),
        ("order.placed", InputTopic.SHIPMENTS),
        ("Order.Placed", InputTopic.ORDERS),
    ],
)
def test_unknown_or_other_topics_event_type(event_type: str, topic: InputTopic) -> None:
    error = _decode_error(_mutated(_set("event_type", event_type)), topic)
    assert error.reason_code is DeadLetterReason.UNKNOWN_EVENT_TYPE
    assert [(found.field, found.value) for found in error.errors] == [
        ("event_type", json.dumps(event_type))
    ]
    assert "does not match any of the expected tags" in error.errors[0].message
    assert error.event_id == "oms-20250314-004417"


@pytest.mark.parametrize("version", [True, 1.0, False])
def test_schema_version_is_a_strict_integer(version: object) -> None:
    error = _decode_error(_mutated(_set("schema_version", version)))
    assert error.reason_code is DeadLetterReason.UNSUPPORTED_SCHEMA_VERSION
    assert error.errors == [
        FieldError(
            field="schema_version",
            message="Input should be 1, a JSON integer",
            value=json.dumps(version),
        )
    ]


@pytest.mark.parametrize("version", [2, 0, "1"])
def test_unsupported_schema_version(version: object) -> None:
    error = _decode_error(_mutated(_set("schema_version", version)))
    assert error.reason_code is DeadLetterReason.UNSUPPORTED_SCHEMA_VERSION
    assert error.errors == [
        FieldError(field="schema_version", message="Input should be 1", value=json.dumps(version))
    ]


def test_schema_version_wins_over_other_problems() -> None:
    document = _order_placed()
    document["schema_version"] = 2
    del document["customer_id"]

    error = _decode_error(json.dumps(document).encode())

    assert error.reason_code is DeadLetterReason.UNSUPPORTED_SCHEMA_VERSION
    assert {found.field for found in error.errors} == {"schema_version", "customer_id"}


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b'{"event_id": "oms-1", "event_type": "order.placed",',
        b"{'event_id': 'oms-1'}",
        b"\xff\xfe{}",
        b'{"event_id": "oms-1"} trailing',
    ],
    ids=["empty", "truncated", "single-quotes", "not-utf8", "trailing-garbage"],
)
def test_malformed_bytes(raw: bytes) -> None:
    error = _decode_error(raw)
    assert error.reason_code is DeadLetterReason.MALFORMED_JSON
    (found,) = error.errors
    assert found.field == ""
    assert found.message.startswith("Invalid JSON")
    assert found.value == raw.decode("utf-8", errors="replace")
    assert error.event_id is None
    assert error.summary.startswith("message: Invalid JSON")


@pytest.mark.parametrize(
    ("raw", "value"),
    [(b"[1, 2]", "[1,2]"), (b'"order.placed"', '"order.placed"'), (b"42", "42"), (b"null", "null")],
)
def test_non_object_json(raw: bytes, value: str) -> None:
    error = _decode_error(raw)
    assert error.reason_code is DeadLetterReason.SCHEMA_VIOLATION
    assert error.errors == [FieldError(field="", message="Input should be an object", value=value)]
    assert error.summary == f"message: Input should be an object (got {value})"


def test_long_values_are_truncated_in_the_error() -> None:
    error = _decode_error(_mutated(_set("lines.0.sku", "SKU " * 100)))
    (found,) = error.errors
    assert found.value is not None
    assert len(found.value) == 121
    assert found.value.endswith("…")


def test_event_id_is_kept_only_when_readable() -> None:
    document = _order_placed()
    document["event_id"] = ""
    assert _decode_error(json.dumps(document).encode()).event_id is None
    document["event_id"] = 17
    assert _decode_error(json.dumps(document).encode()).event_id is None


@pytest.mark.parametrize(
    ("field", "text"),
    [
        (field, text)
        for field in ("event_time", "promised_date")
        for text in (
            "9999-12-31T23:59:59Z",
            "0001-01-01T00:00:00+05:00",
            "1999-12-31T23:59:59.999999Z",
            "2000-01-01T04:59:59+05:00",
            "2200-01-01T00:00:00Z",
            "2199-12-31T20:00:00-05:00",
        )
    ],
)
def test_timestamps_outside_the_contract_range_are_schema_violations(field: str, text: str) -> None:
    error = _decode_error(_mutated(_set(field, text)))
    assert error.reason_code is DeadLetterReason.SCHEMA_VIOLATION
    assert [(found.field, found.value) for found in error.errors] == [(field, json.dumps(text))]
    assert error.errors[0].message == (
        "timestamp must be at or after 2000-01-01T00:00:00Z and before 2200-01-01T00:00:00Z"
    )


@pytest.mark.parametrize(
    "text", ["2000-01-01T00:00:00Z", "2000-01-01T05:00:00+05:00", "2199-12-31T23:59:59.999999Z"]
)
def test_the_ends_of_the_contract_range_are_accepted(text: str) -> None:
    event = decode_event(InputTopic.ORDERS, _mutated(_set("promised_date", text)))
    assert isinstance(event, OrderPlaced)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2016-12-31T23:59:60Z", "2016-12-31T23:59:59.999999+00:00"),
        ("2016-12-31T23:59:60.25Z", "2016-12-31T23:59:59.999999+00:00"),
        ("2017-01-01T00:59:60+01:00", "2017-01-01T00:59:59.999999+01:00"),
        ("2016-12-31T18:59:60-05:00", "2016-12-31T18:59:59.999999-05:00"),
    ],
)
def test_a_leap_second_becomes_the_last_microsecond_before_it(text: str, expected: str) -> None:
    event = decode_event(InputTopic.ORDERS, _mutated(_set("event_time", text)))
    assert event.event_time.isoformat() == expected


@pytest.mark.parametrize("text", ["2016-12-31T12:59:60Z", "2016-12-31T23:58:60Z"])
def test_a_second_60_other_than_a_leap_second_is_rejected(text: str) -> None:
    error = _decode_error(_mutated(_set("event_time", text)))
    assert error.reason_code is DeadLetterReason.SCHEMA_VIOLATION
    assert error.errors[0].message == "a leap second (:60) only exists at 23:59:60 UTC"


@pytest.mark.parametrize(
    "character",
    [
        "\x00",  # NUL
        "\x1b",  # ESC
        "\x7f",  # DEL
        "\x85",  # C1 next line
        "\u00a0",  # no-break space
        "\u00ad",  # soft hyphen
        "\u200b",  # zero-width space
        "\u200d",  # zero-width joiner
        "\u202e",  # right-to-left override
        "\u2028",  # line separator
        "\u2060",  # word joiner
        "\u3164",  # Hangul filler
        "\ufeff",  # byte order mark
        "\ue000",  # private use
        "\U000e0041",  # tag latin capital A
    ],
    ids=lambda c: f"U+{ord(c):04X}",
)
@pytest.mark.parametrize("where", ["order_id", "lines.0.sku", "event_id"])
def test_ids_with_invisible_characters_are_rejected(character: str, where: str) -> None:
    error = _decode_error(_mutated(_set(where, f"SO-{character}1")))
    assert error.reason_code is DeadLetterReason.SCHEMA_VIOLATION
    (found,) = error.errors
    assert found.field == where
    assert found.message.startswith(
        f"an id must hold visible characters only: U+{ord(character):04X} at position 3"
    )


@pytest.mark.parametrize("identifier", ["SO-Ärger-1", "注文-42", "SKU-📦", "a/b:c#d"])
def test_ids_of_visible_unicode_are_accepted(identifier: str) -> None:
    event = decode_event(InputTopic.ORDERS, _mutated(_set("order_id", identifier)))
    assert isinstance(event, OrderPlaced)
    assert event.order_id == identifier


def test_free_text_may_hold_any_character() -> None:
    reason = "customer\x00 asked\x1b[31m \u200bto\ufeff cancel\u202e"
    document = {
        "event_id": "oms-1",
        "event_type": "order.cancelled",
        "event_time": "2025-03-14T09:12:44Z",
        "source": "oms",
        "order_id": "SO-1",
        "reason": reason,
    }
    event = decode_event(InputTopic.ORDERS, json.dumps(document).encode())
    assert getattr(event, "reason", None) == reason


def test_a_byte_order_mark_before_the_message_is_ignored() -> None:
    raw = json.dumps(_order_placed()).encode()
    assert decode_event(InputTopic.ORDERS, UTF8_BOM + raw) == decode_event(InputTopic.ORDERS, raw)


@pytest.mark.parametrize(
    "raw",
    [
        b" " + UTF8_BOM + b"{}",
        UTF8_BOM + UTF8_BOM + b"{}",
        b'{"event_id": ' + UTF8_BOM + b'"oms-1"}',
    ],
    ids=["after-space", "twice", "inside"],
)
def test_a_byte_order_mark_anywhere_else_is_malformed_json(raw: bytes) -> None:
    assert _decode_error(raw).reason_code is DeadLetterReason.MALFORMED_JSON


def test_a_byte_order_mark_keeps_the_event_id_of_a_rejected_message() -> None:
    document = _order_placed()
    del document["customer_id"]
    error = _decode_error(UTF8_BOM + json.dumps(document).encode())
    assert error.event_id == "oms-20250314-004417"


def test_an_order_holding_more_than_a_billion_units_is_rejected() -> None:
    document = _order_placed()
    document["lines"] = [
        {"line_id": str(n), "sku": "SKU-1", "qty": 10_000_000, "unit_price": 1, "unit_cost": 1}
        for n in range(101)
    ]
    error = _decode_error(json.dumps(document).encode())
    assert error.reason_code is DeadLetterReason.SCHEMA_VIOLATION
    assert error.errors[0].message == "the lines hold more than 1,000,000,000 units together"
    document["lines"] = document["lines"][:100]
    assert isinstance(decode_event(InputTopic.ORDERS, json.dumps(document).encode()), OrderPlaced)


def test_event_time_rejection_names_the_event_time() -> None:
    event = decode_event(InputTopic.ORDERS, json.dumps(_order_placed()).encode())
    error = event_time_rejection(event, "event_time is too far ahead")
    assert error.reason_code is DeadLetterReason.EVENT_TIME_OUT_OF_RANGE
    assert error.event_id == "oms-20250314-004417"
    assert error.errors == [
        FieldError(
            field="event_time",
            message="event_time is too far ahead",
            value='"2025-03-14T09:12:44-05:00"',
        )
    ]


def _id_accepted(identifier: str) -> bool:
    try:
        decode_event(InputTopic.ORDERS, _mutated(_set("order_id", identifier)))
    except ContractError:
        return False
    return True


def test_every_control_format_private_and_separator_character_is_refused_in_ids() -> None:
    refused = {"Cc", "Cf", "Co", "Zs", "Zl", "Zp"}
    invisible = [
        chr(code)
        for code in range(0x110000)
        if unicodedata.category(chr(code)) in refused and not 0xD800 <= code <= 0xDFFF
    ]
    assert len(invisible) > 137_000
    accepted = [c for c in invisible if INVISIBLE_IN_IDS.search(c) is None]
    assert accepted == []


def test_the_published_id_pattern_agrees_with_the_validator_on_the_bmp() -> None:
    pattern = re.compile(IDENTIFIER_PATTERN)
    samples = [chr(code) for code in range(0, 0x10000, 7) if not 0xD800 <= code <= 0xDFFF]
    disagreeing = [
        f"U+{ord(c):04X}"
        for c in samples
        if (pattern.match(f"a{c}b") is not None) != _id_accepted(f"a{c}b")
    ]
    assert disagreeing == []
