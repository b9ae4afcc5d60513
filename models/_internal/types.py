"""Constrained field types shared by every contract model."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

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


class ContractModel(BaseModel):
    """Base of every contract model: immutable, strict, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)
