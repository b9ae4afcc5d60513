"""Bounded numbers for settings and policies: durations and counts that cannot overflow.

Every duration allocflow is configured with is added to or subtracted from event
times (deadlines, grace periods, retention). Python datetimes end at year 9999, so an
unbounded duration (``inf``, ``1e300``, or just ``3e12`` seconds) crashes the flow at
the first event that needs it. Each duration setting and policy field is therefore one
of the types below, capped at :data:`MAX_DURATION` (10 years): far beyond any useful
value, and small enough that any event time before year 9989 plus or minus it stays a
valid datetime. Counts carry their own upper bounds where they are declared.

Example:
    >>> from pydantic import TypeAdapter
    >>> TypeAdapter(Seconds).validate_python(3600.0)
    3600.0
    >>> TypeAdapter(Seconds).validate_python(float("inf"))
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for ...
    ...Input should be less than or equal to 315360000...
"""

from collections.abc import Iterable
from datetime import timedelta
from typing import Annotated, Any, get_args, get_origin

import annotated_types
from pydantic import Field
from pydantic.fields import FieldInfo

MAX_DURATION = timedelta(days=3650)
"""The longest duration any setting or policy field may have: 10 years."""
MAX_DURATION_S = 315_360_000
""":data:`MAX_DURATION` in seconds."""
MAX_DURATION_HOURS = 87_600
""":data:`MAX_DURATION` in hours."""

Seconds = Annotated[float, Field(ge=0, le=MAX_DURATION_S)]
"""A duration in seconds, from 0 to 10 years; ``inf`` and ``nan`` are out of range."""
PositiveSeconds = Annotated[float, Field(gt=0, le=MAX_DURATION_S)]
"""A duration in seconds, more than 0 and at most 10 years."""
Hours = Annotated[float, Field(ge=0, le=MAX_DURATION_HOURS)]
"""A duration in hours, from 0 to 10 years."""
Duration = Annotated[timedelta, Field(ge=timedelta(0), le=MAX_DURATION)]
"""A duration from 0 to 10 years."""
PositiveDuration = Annotated[timedelta, Field(gt=timedelta(0), le=MAX_DURATION)]
"""A duration longer than 0 and at most 10 years."""

_SYMBOLS = (
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Ge, "ge", "≥"),
    (annotated_types.Lt, "lt", "<"),
    (annotated_types.Le, "le", "≤"),
)


def bounds(metadata: Iterable[Any]) -> str:
    """Return the range the constraints in ``metadata`` allow, e.g. ``> 0, ≤ 315360000``.

    Example:
        >>> bounds([annotated_types.Gt(0), annotated_types.Le(10)])
        '> 0, ≤ 10'
        >>> bounds([])
        ''
    """
    parts: list[str] = []
    for item in _flat(metadata):
        for kind, attribute, symbol in _SYMBOLS:
            if isinstance(item, kind):
                parts.append(f"{symbol} {_shown(getattr(item, attribute))}")
    return ", ".join(parts)


def field_bounds(info: FieldInfo) -> str:
    """Return the range a model field allows, or its values' range for a mapping or list.

    Example:
        >>> from pydantic import BaseModel
        >>> class Example(BaseModel):
        ...     silences: dict[str, PositiveSeconds] = {}
        >>> field_bounds(Example.model_fields["silences"])
        'each > 0, ≤ 315360000'
    """
    own = bounds(info.metadata)
    if own:
        return own
    values = _value_type(info.annotation)
    if values is None:
        return ""
    inner = bounds(get_args(values)[1:]) if get_origin(values) is Annotated else ""
    return f"each {inner}" if inner else ""


def has_upper_bound(metadata: Iterable[Any]) -> bool:
    """Return whether ``metadata`` caps the value (``le`` or ``lt``)."""
    caps = annotated_types.Le | annotated_types.Lt
    return any(isinstance(item, caps) for item in _flat(metadata))


def _flat(metadata: Iterable[Any]) -> list[Any]:
    """Return the constraints in ``metadata``, those of nested ``Field(...)`` included."""
    flat: list[Any] = []
    for item in metadata:
        flat += _flat(item.metadata) if isinstance(item, FieldInfo) else [item]
    return flat


def _value_type(annotation: Any) -> Any:
    """Return the value type of a ``dict`` or ``list`` annotation, else None."""
    origin = get_origin(annotation)
    if origin is dict:
        return get_args(annotation)[1]
    if origin is list:
        return get_args(annotation)[0]
    return None


def _shown(limit: Any) -> str:
    if isinstance(limit, timedelta):
        return f"{round(limit.total_seconds())} s"
    return str(limit)
