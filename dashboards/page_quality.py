"""Data quality: check pass rates, open alerts, a dead-letter browser and feed freshness."""

from typing import Any

import polars as pl
import streamlit as st

from allocflow.dashboards import charts, data, tables, ui
from allocflow.dashboards.queries import QUIET, STALE, FreshnessLimits
from allocflow.models.activity_calendar import ANY_SOURCE

_STATE_STYLES = {
    STALE: "background-color: rgba(255, 75, 75, 0.25)",
    QUIET: "background-color: rgba(128, 128, 128, 0.2)",
}
_OPEN_ALERT_ORDER = (
    "detected_at",
    "severity",
    "feed",
    "detail",
    "check_name",
    "unexpected_count",
    "origin",
    "event_id",
    "sample",
    "result_id",
)
_DEAD_LETTER_ORDER = (
    "seen_at",
    "source_topic",
    "reason_code",
    "reason",
    "field_errors",
    "raw_preview",
    "source_partition",
    "source_offset",
    "message_key",
    "dead_letter_id",
)


def _totals(quality: data.Quality) -> None:
    dead, alerts, flagged, gx, stale = st.columns(5)
    dead.metric(
        "Dead letters", f"{quality.dead_letter_counts['dead_letters'].sum():,}", border=True
    )
    flags = quality.flagged.select(pl.col("alerts", "events").sum()).row(0)
    alerts.metric("Stream alerts", f"{flags[0]:,}", border=True)
    flagged.metric(
        "Input events flagged", ui.rate(flags[0] / flags[1] if flags[1] else None), border=True
    )
    runs = quality.gx_pass_rates
    latest = runs.filter(pl.col("detected_at") == pl.col("detected_at").max())
    passed = latest.select(pl.col("passed", "expectations").sum()).row(0)
    gx.metric(
        gx_tile_label(latest["covers_to"].max()),
        ui.rate(passed[0] / passed[1] if passed[1] else None),
        border=True,
    )
    stale.metric("Stale sources", f"{quality.freshness['stale'].sum():,}", border=True)


def _checks(quality: data.Quality) -> None:
    st.subheader("Expectation pass rate per table")
    if quality.gx_pass_rates.is_empty():
        st.info("No expectation suite has run yet.")
    else:
        st.altair_chart(charts.gx_pass_rate(quality.gx_pass_rates), width="stretch")
    st.subheader("In-stream alerts")
    tables.show(
        quality.flagged,
        width="content",
        overrides={"flagged_share": st.column_config.NumberColumn("flagged", format="percent")},
    )
    st.caption("Alerts over every landed input event of the feed.")
    if quality.stream_alerts.is_empty():
        st.info("No in-stream alerts landed yet.")
    else:
        st.altair_chart(charts.stream_alerts(quality.stream_alerts), width="stretch")
    st.subheader("Results by check")
    tables.show(quality.dq_counts)


def _open_alerts(quality: data.Quality) -> None:
    st.subheader("Open alerts")
    if quality.open_alerts.is_empty():
        st.info("No open alerts: no stream alert landed and the latest run passed.")
        return
    st.caption("Failing expectations of the latest run, then the newest in-stream alerts.")
    tables.show(quality.open_alerts, order=_OPEN_ALERT_ORDER, wrap=True)


def _dead_letter_browser(db: str, counts: pl.DataFrame) -> None:
    st.subheader("Dead letters")
    if counts.is_empty():
        st.info("No dead letters landed yet.")
        return
    table, chart = st.columns(2)
    tables.show(counts, where=table)
    chart.altair_chart(charts.dead_letters(counts), width="stretch")
    topic, reason = st.columns(2)
    topics = topic.multiselect(
        "Topic", counts["source_topic"].unique().sort().to_list(), key="dl_topic"
    )
    reasons = reason.multiselect(
        "Reason", counts["reason_code"].unique().sort().to_list(), key="dl_reason"
    )
    letters = data.load_dead_letters(db, tuple(topics), tuple(reasons))
    if letters.is_empty():
        st.info("No dead letters match.")
        return
    tables.show(letters, order=_DEAD_LETTER_ORDER, wrap=True)
    chosen = st.selectbox("Dead letter", letters["dead_letter_id"].to_list(), key="dead_letter")
    letter = None if chosen is None else data.load_dead_letter(db, chosen)
    if letter is None:
        return
    errors, payload = st.columns(2)
    errors.markdown("**Field errors**")
    tables.show(letter.errors, where=errors, order=("field", "value", "message"), wrap=True)
    payload.markdown(f"**Raw payload** ({letter.size:,} bytes, UTF-8 with errors replaced)")
    payload.code(letter.text, language=None, wrap_lines=True)
    payload.code(letter.hex, language=None)


def gx_tile_label(covers_to: Any) -> str:
    """The GX tile's label: which landed data the latest run judged.

    Example:
        >>> from datetime import datetime
        >>> gx_tile_label(datetime(2026, 3, 8, 2, 36, 39, 639293))
        'Latest GX run, data up to 2026-03-08 02:36: passed'
        >>> gx_tile_label(None)
        'Latest GX run passed'
    """
    if covers_to is None:
        return "Latest GX run passed"
    return f"Latest GX run, data up to {covers_to:%Y-%m-%d %H:%M}: passed"


def _stale(row: Any) -> list[str]:
    """The style of each cell of a row (a pandas Series): by the source's state."""
    return [_STATE_STYLES.get(row["state"], "")] * len(row)


def _freshness(freshness: pl.DataFrame, limits: FreshnessLimits) -> None:
    st.subheader("Feed freshness")
    st.caption(
        "Each feed and warehouse as the pipeline's stale-source check judges it: hours from "
        "its last event to the watermark, and how many of them its calendar expected it to "
        f"be active ({calendars_text(limits)}, `ALLOCFLOW_DQ_ACTIVE_HOURS_BY_*`); "
        f"highlighted beyond {limits_text(limits)} (`ALLOCFLOW_DQ_STALE_*`): **stale** (red) "
        "when silent that long in active hours, **quiet (outside active hours)** (grey) when "
        "only hours it is not expected to be active take it past its limit."
    )
    styled = (
        freshness.to_pandas()
        .style.apply(_stale, axis=1)
        .format(_FRESHNESS_FORMATS, na_rep=tables.EMPTY_CELL)
    )
    tables.show(
        styled,
        columns_of=freshness,
        overrides={
            "hours_behind_watermark": st.column_config.NumberColumn("hours behind"),
            "stale_after_hours": st.column_config.NumberColumn("stale after (h)"),
            "silent_active_hours": st.column_config.NumberColumn("silent in active hours"),
        },
    )


def _timestamp(moment: Any) -> str:
    """A Styler formatter: a timestamp to the second."""
    return f"{moment:%Y-%m-%d %H:%M:%S}"


# A Styler's own formats: its display text wins over a column's format. (A comment: a
# bare string here would be drawn on the page, Streamlit shows bare expressions.)
_FRESHNESS_FORMATS = {
    "hours_behind_watermark": "{:.1f} h",
    "silent_active_hours": "{:.1f} h",
    "stale_after_hours": "{:g} h",
    "last_event_time": _timestamp,
}


def limits_text(limits: FreshnessLimits) -> str:
    """The limits in words, e.g. "24 h for a feed (orders 72 h) or 8 h for a node"."""
    own = ", ".join(f"{feed} {hours:g} h" for feed, hours in limits.by_feed_hours)
    feeds = f"{limits.feed_hours:g} h for a feed" + (f" ({own})" if own else "")
    return f"{feeds} or {limits.node_hours:g} h for a node"


def calendars_text(limits: FreshnessLimits) -> str:
    """The expected-activity calendars in words, e.g. "orders Mon-Fri 07:00-19:00 UTC".

    Example:
        >>> calendars_text(FreshnessLimits(24.0, (), 8.0))
        'every source always active'
    """
    named = [_named("feed", name, calendar) for name, calendar in limits.feed_calendars]
    named += [_named("node", name, calendar) for name, calendar in limits.node_calendars]
    if not named:
        return "every source always active"
    return "; ".join(named) + "; otherwise always active"


def _named(kind: str, name: str, calendar: object) -> str:
    return f"other {kind}s {calendar}" if name == ANY_SOURCE else f"{kind} {name} {calendar}"


@st.fragment(run_every=ui.REFRESH_S)
def _live(db: str) -> None:
    try:
        limits = data.freshness_limits()
        quality = data.load_quality(db, limits)
        if not ui.ready(quality.status):
            return
        ui.freshness(quality.status)
        _totals(quality)
        _checks(quality)
        _open_alerts(quality)
        _dead_letter_browser(db, quality.dead_letter_counts)
        _freshness(quality.freshness, limits)
    except data.DataUnavailableError as error:
        ui.unavailable(error)


st.title("Data quality")
st.caption(
    "Counts, flagged shares and freshness cover everything landed; lists and hourly alerts "
    "show the newest results (a snapshot keeps the newest thousand). Filters do not apply here."
)
_live(ui.page_context().db)
