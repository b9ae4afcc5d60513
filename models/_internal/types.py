"""Constrained field types shared by every contract model."""

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
)

from allocflow.models.event_time import CONTRACT_EARLIEST, CONTRACT_LATEST

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?$"
)
_LEAP_SECOND = re.compile(r"^(?P<minute>.{16}):60(\.\d+)?(?P<offset>[Zz]|[+-].*)?$")

MAX_QUANTITY = 10_000_000
"""Most units on one line of an order, a shipment, an inbound or a reservation."""

MAX_LINE_UNITS = 1_000_000_000
"""Most units in all the lines of one order or shipment together."""

_INVISIBLE_RANGES: tuple[tuple[int, int], ...] = (
    # Cc: C0 and C1 controls (NUL, ESC, DEL, …).
    (0x0000, 0x001F),
    (0x007F, 0x009F),
    # Z*: every space and separator (ASCII space, NBSP, thin spaces, U+2028/9, …).
    (0x0020, 0x0020),
    (0x00A0, 0x00A0),
    (0x1680, 0x1680),
    (0x2000, 0x200A),
    (0x2028, 0x2029),
    (0x202F, 0x202F),
    (0x205F, 0x205F),
    (0x3000, 0x3000),
    # Cf: format characters (soft hyphen, zero-width, bidi controls, BOM, tags, …),
    # as of Unicode 15.1.
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
    # Blank letters that render as nothing (Hangul fillers) and the combining grapheme
    # joiner.
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x3164, 0x3164),
    (0xFFA0, 0xFFA0),
    # Cs and Co: surrogates and private use; noncharacters U+FFFE, U+FFFF.
    (0xD800, 0xF8FF),
    (0xFFFE, 0xFFFF),
    (0xF0000, 0x10FFFF),
)
"""Characters no identifier may hold: invisible, or rendering as nothing or as blank."""


def _escape(code: int) -> str:
    return f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}"


def _character_class(ranges: tuple[tuple[int, int], ...]) -> str:
    return "".join(
        _escape(low) if low == high else f"{_escape(low)}-{_escape(high)}" for low, high in ranges
    )


IDENTIFIER_PATTERN = (
    "^[^"
    + _character_class(
        tuple(
            (max(low, 0xE000) if low == 0xD800 else low, high)
            for low, high in _INVISIBLE_RANGES
            if high <= 0xFFFF
        )
    )
    + "]+$"
)
"""The published pattern of an identifier: the rule for the Basic Multilingual Plane
without the surrogates (so that ECMA-262 regular expressions without the ``u`` flag,
which see a character beyond it as two surrogates, accept it), written with ``\\uXXXX``
escapes that ECMA-262, Python and Rust regular expressions all read. The validator
applies the whole rule."""

INVISIBLE_IN_IDS = re.compile("[" + _character_class(_INVISIBLE_RANGES) + "]")
"""Finds the first character an identifier must not hold."""


def _visible_only(value: str) -> str:
    """Reject whitespace, control, format and other invisible characters in an id."""
    if value.isascii() and value.isprintable() and " " not in value:
        return value  # the common case, without a regular expression
    found = INVISIBLE_IN_IDS.search(value)
    if found is not None:
        character = found.group()
        raise ValueError(
            f"an id must hold visible characters only: U+{ord(character):04X} at position "
            f"{found.start()} is whitespace, a control, format or other invisible character"
        )
    return value


def _rfc3339_only(value: Any) -> Any:
    """Accept datetimes and RFC 3339 text only (not epoch numbers, not other formats).

    A leap second (``23:59:60`` UTC, which RFC 3339 allows and Python cannot hold)
    becomes the last microsecond before it, ``23:59:59.999999``.
    """
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _RFC3339.match(value):
        return _without_leap_second(value) if value[16:19] == ":60" else value
    raise ValueError("timestamp must be RFC 3339 text, e.g. 2026-03-02T06:00:00Z")


def _without_leap_second(text: str) -> Any:
    leap = _LEAP_SECOND.match(text)
    if leap is None:
        return text
    try:
        moment = datetime.fromisoformat(f"{leap['minute']}:59.999999{leap['offset'] or ''}")
    except ValueError:
        return text
    utc_offset = moment.utcoffset()
    if utc_offset is None:
        return text  # rejected later: no offset
    utc_minute = (moment.hour * 60 + moment.minute - utc_offset.total_seconds() // 60) % 1440
    if utc_minute != 23 * 60 + 59:
        raise ValueError("a leap second (:60) only exists at 23:59:60 UTC")
    return moment


def _within_contract_range(value: datetime) -> datetime:
    if CONTRACT_EARLIEST.year < value.year < CONTRACT_LATEST.year - 1:
        return value  # no UTC offset moves such a time across a bound
    if not CONTRACT_EARLIEST <= value < CONTRACT_LATEST:
        raise ValueError(
            f"timestamp must be at or after {CONTRACT_EARLIEST:%Y-%m-%dT%H:%M:%SZ} and before "
            f"{CONTRACT_LATEST:%Y-%m-%dT%H:%M:%SZ}"
        )
    return value


def check_total_units(quantities: list[int]) -> None:
    """Reject the lines of one order or shipment whose units add up past ``MAX_LINE_UNITS``.

    Raises:
        ValueError: They do.
    """
    if sum(quantities) > MAX_LINE_UNITS:
        raise ValueError(f"the lines hold more than {MAX_LINE_UNITS:,} units together")


Identifier = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128),
    AfterValidator(_visible_only),
    Field(
        description="Non-empty identifier of visible characters: no whitespace, control, "
        "format (zero-width, BOM, bidi), private-use or blank characters (at most 128 "
        "characters).",
        json_schema_extra={"pattern": IDENTIFIER_PATTERN},
    ),
]
Quantity = Annotated[
    int,
    Field(
        gt=0,
        le=MAX_QUANTITY,
        description="A positive whole quantity in stock-keeping units.",
    ),
]
StockLevel = Annotated[
    int,
    Field(
        ge=-10_000_000,
        le=10_000_000,
        description=(
            "A stock level in units. The contract accepts negative levels because real WMS "
            "feeds send them; the data-quality gates flag them as impossible values."
        ),
    ),
]
Money = Annotated[
    float,
    Field(ge=0, le=1e9, allow_inf_nan=False, description="A non-negative amount per unit."),
]
Text = Annotated[str, StringConstraints(max_length=2000)]
Timestamp = Annotated[AwareDatetime, Strict(False), BeforeValidator(_rfc3339_only)]
"""A timezone-aware point in time, written in RFC 3339."""

EventTimestamp = Annotated[
    AwareDatetime,
    Strict(False),
    BeforeValidator(_rfc3339_only),
    AfterValidator(_within_contract_range),
]
"""A timestamp of an input event: RFC 3339, from 2000-01-01 and before 2200-01-01 (UTC)."""


class ContractModel(BaseModel):
    """Base of every contract model: immutable, strict, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)
