"""Streamlit dashboards over the landed DuckDB facts and KPI views."""
