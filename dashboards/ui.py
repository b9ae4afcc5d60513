"""Pieces every dashboard page uses: the sidebar filters, freshness, number formats."""

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal

import streamlit as st

from allocflow.dashboards import data
from allocflow.dashboards.queries import TIME_RANGE_LENGTHS, Filters, Selection, TimeRange

REFRESH_S = 3
"""Seconds between two refreshes of a page's live part."""

TIME_RANGES: dict[TimeRange, str] = {
    "24h": "Last 24 h",
    "7d": "Last 7 d",
    "all": "All",
    "dates": "Date range",
}
"""The time range choices and their labels."""

_CONTEXT_KEY = "allocflow.page_context"
_SIDEBAR_STALE_KEY = "allocflow.sidebar_without_data"
_NO_VALUE = "—"


@dataclass(frozen=True)
class PageContext:
    """What the app hands every page.

    Attributes:
        db: The database path (see :func:`allocflow.dashboards.data.dashboard_db`).
        selection: The sidebar's choices.
    """

    db: str
    selection: Selection


def sidebar_selection(db: str) -> Selection:
    """Draw the sidebar filters and return what they select.

    When the database cannot be read the lists are empty; the page says why.
    """
    try:
        options = data.load_options(db)
    except data.DataUnavailableError:
        options = None
    st.session_state[_SIDEBAR_STALE_KEY] = options is None or options.status.watermark is None
    bar = st.sidebar
    bar.header("Filters")

    def pick(label: str, dimension: str, key: str) -> tuple[str, ...]:
        values = [] if options is None else options.values(dimension)
        return tuple(bar.multiselect(label, values, key=key, placeholder="All"))

    regions = pick("Region", "region", "region")
    channels = pick("Channel", "channel", "channel")
    tiers = pick("Customer tier", "customer_tier", "tier")
    nodes = pick("Node (shipment KPIs)", "node_id", "node")
    time_range: TimeRange = bar.selectbox(
        "Time range (event time)",
        list(TIME_RANGES),
        index=list(TIME_RANGES).index("7d"),
        format_func=TIME_RANGES.__getitem__,
        key="time_range",
        help="Windows end with the newest landed event (the watermark), not the wall clock.",
    )
    dates = _date_range(options) if time_range == "dates" else None
    return Selection(regions, channels, tiers, nodes, time_range, dates)


def _date_range(options: data.Options | None) -> tuple[date, date] | None:
    """A date range input spanning the data's days; None until two days are picked."""
    status = None if options is None else options.status
    if status is None or status.first_hour is None or status.last_hour is None:
        st.sidebar.caption("No landed data to pick dates from yet.")
        return None
    span = (status.first_hour.date(), status.last_hour.date())
    picked = st.sidebar.date_input("Dates (UTC)", value=span, key="dates")
    if isinstance(picked, tuple) and len(picked) == 2:
        return picked[0], picked[1]
    return None


def set_page_context(context: PageContext) -> None:
    """Hand the pages the database and the selection of this run."""
    st.session_state[_CONTEXT_KEY] = context


def page_context() -> PageContext:
    """The database and selection the app set for this run."""
    context: PageContext = st.session_state[_CONTEXT_KEY]
    return context


def unavailable(error: data.DataUnavailableError) -> None:
    """Say why there is nothing to show (waiting for the first snapshot, or unreadable).

    The page retries every :data:`REFRESH_S` seconds; once data can be read, the
    sidebar is redrawn with its filter values (:func:`ready`).
    """
    st.session_state[_SIDEBAR_STALE_KEY] = True
    message = f"{escape_markdown(str(error))}. The page retries every {REFRESH_S} s."
    if isinstance(error, data.WaitingForDataError):
        st.info(message, icon=":material/hourglass_top:")
    else:
        st.warning(f"The data is not available right now: {message}")


def ready(status: data.Status) -> bool:
    """Whether the page has landed data to show; says it is waiting when not.

    A snapshot published before the first event landed holds empty tables: instead
    of empty tiles the page says so. The first time data is there after a wait, the
    whole app reruns so that the sidebar's filters get their values.
    """
    if status.watermark is None:
        st.session_state[_SIDEBAR_STALE_KEY] = True
        st.info(
            f"Waiting for the first events: {escape_markdown(status.source.name)} holds no "
            f"landed event yet. The page retries every {REFRESH_S} s.",
            icon=":material/hourglass_top:",
        )
        return False
    if st.session_state.get(_SIDEBAR_STALE_KEY, False):
        st.session_state[_SIDEBAR_STALE_KEY] = False
        data.load_options.clear()
        st.rerun()
    return True


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>$~:&=^\"'])")


def escape_markdown(text: str) -> str:
    r"""``text`` with every Markdown, HTML, LaTeX and directive character backslash-escaped.

    For the dashboard's own messages that name a file; event data is never passed
    to a Markdown element at all (plain-text elements and tables show it).

    Example:
        >>> escape_markdown("![x](http://h/x.png) $a$ <b>")
        '\\!\\[x\\]\\(http\\://h/x\\.png\\) \\$a\\$ \\<b\\>'
    """
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def freshness(status: data.Status, filters: Filters | None = None) -> None:
    """A caption on how fresh the data is (and which window the page shows)."""
    parts = []
    if status.published_at is not None:
        age = (datetime.now(UTC).replace(tzinfo=None) - status.published_at).total_seconds()
        parts.append(f"Snapshot published {_time(status.published_at)} ({_age(age)} ago)")
    else:
        parts.append(
            f"Reading {escape_markdown(status.source.name)} directly (no snapshot published)"
        )
    parts.append(f"newest event {_time(status.watermark)}")
    parts.append(f"last landed {_time(status.landed_at)}")
    if filters is not None:
        parts.append(f"window {window_label(filters)}")
    st.caption(" · ".join(parts))


_UNPRINTABLE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]"
)
PLAIN_LIMIT = 80
"""Characters of one value :func:`plain` keeps; the tables show it whole."""


def plain(value: object, limit: int = PLAIN_LIMIT) -> str:
    r"""A value of event data for a plain-text element: one line, printable, bounded.

    Control, zero-width and bidirectional-override characters become U+FFFD (they
    could hide or reorder what is shown), a value longer than ``limit`` is cut with
    an ellipsis, and None is a dash. The result is for ``st.text``, never Markdown.

    Example:
        >>> plain("gold\x1b[31m\u202e"), plain(None), plain("x" * 90, limit=5)
        ('gold�[31m�', '—', 'xxxx…')
    """
    if value is None:
        return _NO_VALUE
    text = _UNPRINTABLE.sub("\ufffd", str(value).replace("\n", " ").replace("\t", " "))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def window_label(filters: Filters) -> str:
    """The time window in words.

    Example:
        >>> window_label(Filters(start=datetime(2026, 3, 1, 4), end=datetime(2026, 3, 8, 4)))
        '2026-03-01 04:00 to 2026-03-08 04:00 UTC'
        >>> window_label(Filters())
        'all time'
    """
    if filters.start is None or filters.end is None:
        return "all time"
    return f"{filters.start:%Y-%m-%d %H:%M} to {filters.end:%Y-%m-%d %H:%M} UTC"


def previous_label(filters: Filters) -> str:
    """How the trend's baseline reads, e.g. ``vs previous 24 h``.

    Example:
        >>> previous_label(Filters(start=datetime(2026, 3, 1), end=datetime(2026, 3, 8)))
        'vs previous 7 d'
    """
    if filters.start is None or filters.end is None:
        return ""
    length = filters.end - filters.start
    named = {v: k for k, v in TIME_RANGE_LENGTHS.items()}.get(length)
    if named is not None:
        return f"vs previous {TIME_RANGES[named].removeprefix('Last ')}"
    return f"vs previous {length.days} d" if length.days else "vs previous window"


def _time(moment: datetime | None) -> str:
    return _NO_VALUE if moment is None else f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def _age(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else duration(seconds)


def rate(value: float | None) -> str:
    """A rate as a percentage.

    Example:
        >>> rate(0.8734), rate(None)
        ('87.3%', '—')
    """
    return _NO_VALUE if value is None else f"{value:.1%}"


def rate_delta(value: float | None, before: float | None) -> str | None:
    """The change of a rate in percentage points; None when either is missing.

    Example:
        >>> rate_delta(0.9, 0.85)
        '+5.0 pp'
    """
    if value is None or before is None:
        return None
    return f"{(value - before) * 100:+.1f} pp"


def duration(seconds: float | None) -> str:
    """A duration in the largest unit that keeps it readable.

    Example:
        >>> duration(42), duration(600), duration(13777.2), duration(200_000)
        ('42 s', '10.0 min', '3.8 h', '2.3 d')
    """
    if seconds is None:
        return _NO_VALUE
    magnitude = abs(seconds)
    if magnitude < 90:
        return f"{seconds:.0f} s"
    if magnitude < 90 * 60:
        return f"{seconds / 60:.1f} min"
    if magnitude < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def duration_delta(value: float | None, before: float | None) -> str | None:
    """The change of a duration, signed; None when either is missing.

    Example:
        >>> duration_delta(5400, 7200), duration_delta(9000, 1800)
        ('-30.0 min', '+2.0 h')
    """
    if value is None or before is None:
        return None
    change = duration(value - before)
    return change if change.startswith("-") else f"+{change}"


def delta_color(
    value: float | None, before: float | None, *, lower_is_better: bool = False
) -> Literal["normal", "inverse", "off"]:
    """How a metric colours its change: grey when there is none, red when it got worse.

    Example:
        >>> delta_color(3, 3), delta_color(0.2, 0.1), delta_color(0.2, 0.1, lower_is_better=True)
        ('off', 'normal', 'inverse')
    """
    if value is None or before is None or value == before:
        return "off"
    return "inverse" if lower_is_better else "normal"


def delta_arrow(value: float | None, before: float | None) -> Literal["auto", "off"]:
    """No arrow on a change of zero.

    Example:
        >>> delta_arrow(3, 3), delta_arrow(4, 3)
        ('off', 'auto')
    """
    return "off" if value is not None and value == before else "auto"


def count_delta(value: int, before: int | None) -> str | None:
    """The change of a count, signed; None without a baseline.

    Example:
        >>> count_delta(12, 9), count_delta(3, None)
        ('+3', None)
    """
    return None if before is None else f"{value - before:+,}"
