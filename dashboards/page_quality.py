"""Data quality: check pass rates, open alerts, a dead-letter browser and feed freshness."""

from typing import Any

import polars as pl
import streamlit as st

from allocflow.dashboards import charts, data, ui
from allocflow.dashboards.queries import FreshnessLimits

_STALE_STYLE = "background-color: rgba(255, 75, 75, 0.25)"


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
        "Latest GX run passed",
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
    st.dataframe(
        quality.flagged,
        hide_index=True,
        width="content",
        column_config={"flagged_share": st.column_config.NumberColumn("flagged", format="percent")},
    )
    st.caption("Alerts over every landed input event of the feed.")
    if quality.stream_alerts.is_empty():
        st.info("No in-stream alerts landed yet.")
    else:
        st.altair_chart(charts.stream_alerts(quality.stream_alerts), width="stretch")
    st.subheader("Results by check")
    st.dataframe(quality.dq_counts, hide_index=True, width="stretch")


def _open_alerts(quality: data.Quality) -> None:
    st.subheader("Open alerts")
    if quality.open_alerts.is_empty():
        st.info("No open alerts: no stream alert landed and the latest run passed.")
        return
    st.caption("Failing expectations of the latest run, then the newest in-stream alerts.")
    st.dataframe(quality.open_alerts, hide_index=True, width="stretch")


def _dead_letter_browser(db: str, counts: pl.DataFrame) -> None:
    st.subheader("Dead letters")
    if counts.is_empty():
        st.info("No dead letters landed yet.")
        return
    table, chart = st.columns(2)
    table.dataframe(counts, hide_index=True, width="stretch")
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
    st.dataframe(letters, hide_index=True, width="stretch")
    chosen = st.selectbox("Dead letter", letters["dead_letter_id"].to_list(), key="dead_letter")
    letter = None if chosen is None else data.load_dead_letter(db, chosen)
    if letter is None:
        return
    errors, payload = st.columns(2)
    errors.markdown("**Field errors**")
    errors.dataframe(letter.errors, hide_index=True, width="stretch")
    payload.markdown(f"**Raw payload** ({letter.size:,} bytes, UTF-8 with errors replaced)")
    payload.code(letter.text, language=None, wrap_lines=True)
    payload.code(letter.hex, language=None)


def _stale(row: Any) -> list[str]:
    """The style of each cell of a row (a pandas Series): tinted when the source is stale."""
    return [_STALE_STYLE if row["stale"] else ""] * len(row)


def _freshness(freshness: pl.DataFrame, limits: FreshnessLimits) -> None:
    st.subheader("Feed freshness")
    st.caption(
        "Hours from each source's last event to the watermark; highlighted beyond "
        f"{limits_text(limits)}: the pipeline's stale-feed and stale-node limits "
        "(`ALLOCFLOW_DQ_STALE_*` settings)."
    )
    st.dataframe(
        freshness.to_pandas().style.apply(_stale, axis=1),
        hide_index=True,
        width="stretch",
        column_config={
            "hours_behind_watermark": st.column_config.NumberColumn("hours behind", format="%.1f")
        },
    )


def limits_text(limits: FreshnessLimits) -> str:
    """The limits in words, e.g. "24 h for a feed (orders 72 h) or 8 h for a node"."""
    own = ", ".join(f"{feed} {hours:g} h" for feed, hours in limits.by_feed_hours)
    feeds = f"{limits.feed_hours:g} h for a feed" + (f" ({own})" if own else "")
    return f"{feeds} or {limits.node_hours:g} h for a node"


@st.fragment(run_every=ui.REFRESH_S)
def _live(db: str) -> None:
    try:
        limits = data.freshness_limits()
        quality = data.load_quality(db, limits)
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
