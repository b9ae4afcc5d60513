"""Constrained field types shared by every contract model."""

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
)

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?$"
)


def _rfc3339_only(value: Any) -> Any:
    """Accept datetimes and RFC 3339 text only (not epoch numbers, not other formats)."""
    if isinstance(value, datetime) or (isinstance(value, str) and _RFC3339.match(value)):
        return value
    raise ValueError("timestamp must be RFC 3339 text, e.g. 2026-03-02T06:00:00Z")


Identifier = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^\S+$"),
    Field(description="Non-empty identifier without whitespace (at most 128 characters)."),
]
Quantity = Annotated[
    int,
    Field(gt=0, le=10_000_000, description="A positive whole quantity in stock-keeping units."),
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


class ContractModel(BaseModel):
    """Base of every contract model: immutable, strict, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)
