"""The allocflow dashboard: operations KPIs, exceptions, carriers and data quality.

Run it with ``allocflow dashboard --db PATH``, or
``streamlit run dashboards/app.py -- --db PATH``. Without ``--db`` it reads the path
from the ``ALLOCFLOW_DASHBOARD_DB`` environment variable. ``PATH`` is the landing's
DuckDB file; the app reads its published snapshot ``PATH.snapshot`` while the
lander runs (see :mod:`allocflow.dashboards.data`).

This script draws the sidebar filters, which every page shares, and runs the page
picked in the navigation; the pages are the ``page_*.py`` scripts next to it.
"""

import streamlit as st

from allocflow.dashboards import data, ui

# Page script, URL path, title and icon of each page, the first being the default. (A
# string under it would be drawn on the page: Streamlit shows bare expressions.)
PAGES = (
    ("page_overview.py", "overview", "Operations overview", ":material/monitoring:"),
    ("page_exceptions.py", "exceptions", "Exceptions queue", ":material/report:"),
    ("page_carriers.py", "carriers", "Carriers & routes", ":material/local_shipping:"),
    ("page_quality.py", "quality", "Data quality", ":material/fact_check:"),
)

st.set_page_config(page_title="allocflow", page_icon=":material/inventory_2:", layout="wide")
_db = data.dashboard_db()
if _db is None:
    st.error(
        "No database to show: pass `--db PATH` after `--` "
        f"(`streamlit run dashboards/app.py -- --db PATH`) or set {data.DB_ENV}."
    )
    st.stop()
_selection = ui.sidebar_selection(str(_db))
ui.set_page_context(ui.PageContext(str(_db), _selection))
_navigation = st.navigation(
    [
        st.Page(script, title=title, icon=icon, url_path=path, default=index == 0)
        for index, (script, path, title, icon) in enumerate(PAGES)
    ]
)
_navigation.run()
