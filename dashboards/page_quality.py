"""Data quality: dead letters and data-quality check results."""

import polars as pl
import streamlit as st

from allocflow.dashboards import charts, data, ui


def _dead_letters(quality: data.Quality) -> None:
    st.subheader("Dead letters by topic and reason")
    counts = quality.dead_letter_counts
    if counts.is_empty():
        st.info("No dead letters landed yet.")
        return
    table, chart = st.columns(2)
    table.dataframe(counts, hide_index=True, width="stretch")
    chart.altair_chart(charts.dead_letters(counts), width="stretch")
    st.subheader("Newest dead letters")
    st.dataframe(quality.dead_letters, hide_index=True, width="stretch")


def _dq_results(quality: data.Quality) -> None:
    st.subheader("Data-quality results by check")
    if quality.dq_counts.is_empty():
        st.info("No data-quality results landed yet.")
        return
    st.dataframe(quality.dq_counts, hide_index=True, width="stretch")
    st.subheader("Newest data-quality results")
    st.dataframe(quality.dq_results, hide_index=True, width="stretch")


def _totals(quality: data.Quality) -> None:
    dead, results, failed = st.columns(3)
    dead.metric(
        "Dead letters", f"{quality.dead_letter_counts['dead_letters'].sum():,}", border=True
    )
    dq = quality.dq_counts.select(pl.col("results", "failed").sum()).row(0)
    results.metric("Data-quality results", f"{dq[0]:,}", border=True)
    failed.metric("Failed checks", f"{dq[1]:,}", border=True)


@st.fragment(run_every=ui.REFRESH_S)
def _live(db: str) -> None:
    try:
        quality = data.load_quality(db)
    except data.DataUnavailableError as error:
        ui.unavailable(error)
        return
    ui.freshness(quality.status)
    _totals(quality)
    _dead_letters(quality)
    _dq_results(quality)


st.title("Data quality")
st.caption(
    "Counts cover everything landed; the newest lists show the latest records "
    "(a snapshot keeps the newest thousand). Filters do not apply here."
)
_live(ui.page_context().db)
