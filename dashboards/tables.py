"""How the dashboard shows a table: readable labels and numbers, explanations in full.

Every table of every page goes through :func:`show`, so they all follow one policy:

- a column's label is its name in words (``opened_at`` → "opened at"), the name
  itself stays the column's key;
- an empty cell shows :data:`EMPTY_CELL`, never "None";
- a timestamp shows to the second (:data:`TIMESTAMP`), a fractional number with
  one decimal, a rate (``*_rate``, ``*_share``, ``share``) as a percentage;
- a column that explains something (:data:`EXPLAINING`: details, explanations,
  resolutions, reasons, check names, …) is wide, and with ``wrap=True`` its text
  wraps over up to four lines (rows of :data:`WRAPPED_ROW_HEIGHT` px); a cell
  still too long shows whole on hover or click, or in the column's tooltip.

Cells are drawn by the grid as plain text: event data in a table is never parsed
as Markdown or HTML.
"""

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import polars as pl
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

EMPTY_CELL = "—"
"""What an empty (null) cell shows."""

TIMESTAMP = "YYYY-MM-DD HH:mm:ss"
"""How a timestamp shows (UTC event or landing time; never its microseconds)."""

WRAPPED_ROW_HEIGHT = 80
"""Row height (px) of tables whose text wraps: above Streamlit's 4 rem (64 px), the height
from which it wraps cell text, and four lines of it."""

WRAPPED_ROWS_SHOWN = 8
"""Rows a wrapped table shows before it scrolls (an unwrapped one shows about ten)."""

_HEADER_PX = 38

EXPLAINING: Mapping[str, str] = {
    "detail": "What happened, in the pipeline's words.",
    "explanation": "Why the rule decided this, in the pipeline's words.",
    "resolution": "How the exception was closed.",
    "reason": "Why the message was dead-lettered.",
    "candidates": "The ranked nodes the rule considered, with their free stock.",
    "check_name": "The check or expectation that ran.",
    "sample": "Offending values, as the check recorded them.",
    "raw_preview": "The start of the raw message, as UTF-8 text.",
    "message": "What is wrong with the field.",
}
"""Columns that explain something, with the tooltip of their header."""

_RATE_SUFFIXES = ("_rate", "_share")


def label(name: str) -> str:
    """A column's name in words.

    Example:
        >>> label("opened_at"), label("hours_behind_watermark")
        ('opened at', 'hours behind watermark')
    """
    return name.replace("_", " ")


def is_rate(name: str) -> bool:
    """Whether a column holds a rate or share (0-1), shown as a percentage.

    Example:
        >>> is_rate("otif_rate"), is_rate("share"), is_rate("hours_open")
        (True, True, False)
    """
    return name == "share" or name.endswith(_RATE_SUFFIXES)


def column_config(
    frame: pl.DataFrame, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The column configuration of every column of ``frame`` by the module's policy.

    Args:
        frame: The table.
        overrides: Configurations (or labels) that replace the policy's for some columns.

    Returns:
        Column name → ``st.column_config`` column.
    """
    given = overrides or {}
    return {name: given.get(name, _policy(name, dtype)) for name, dtype in frame.schema.items()}


def _policy(name: str, dtype: pl.DataType) -> Any:
    text = label(name)
    if dtype.is_temporal() and isinstance(dtype, pl.Datetime):
        return st.column_config.DatetimeColumn(text, format=TIMESTAMP)
    if dtype.is_float():
        if is_rate(name):
            return st.column_config.NumberColumn(text, format="percent")
        return st.column_config.NumberColumn(text, format="%.1f")
    if name in EXPLAINING:
        return st.column_config.TextColumn(text, width="large", help=EXPLAINING[name])
    return st.column_config.Column(text)


def show(
    frame: Any,
    *,
    where: DeltaGenerator | None = None,
    overrides: Mapping[str, Any] | None = None,
    order: Sequence[str] | None = None,
    wrap: bool = False,
    width: int | Literal["stretch", "content"] = "stretch",
    columns_of: pl.DataFrame | None = None,
) -> None:
    """Draw ``frame`` in ``where`` by the module's policy.

    Args:
        frame: The table: a polars frame, or a pandas Styler of one (then pass the
            frame as ``columns_of``).
        where: The container (a column, a tab); default the page.
        overrides: Column configurations (or labels) replacing the policy's.
        order: The columns to show, in this order; default all, as they are.
        wrap: Wrap long text over up to four lines per row.
        width: ``"stretch"``, ``"content"`` or pixels.
        columns_of: The polars frame behind a Styler ``frame``.
    """
    source = frame if columns_of is None else columns_of
    height: int | Literal["auto"] = _wrapped_height(len(source)) if wrap else "auto"
    draw = st.dataframe if where is None else where.dataframe
    draw(
        frame,
        hide_index=True,
        width=width,
        height=height,
        column_config=column_config(source, overrides),
        column_order=order,
        placeholder=EMPTY_CELL,
        row_height=WRAPPED_ROW_HEIGHT if wrap else None,
    )


def _wrapped_height(rows: int) -> int:
    """Pixels that show up to :data:`WRAPPED_ROWS_SHOWN` wrapped rows and the header."""
    return _HEADER_PX + WRAPPED_ROW_HEIGHT * max(1, min(rows, WRAPPED_ROWS_SHOWN)) + 2
