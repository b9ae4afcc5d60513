"""Every table on every page is readable: no "None", raw floats or microseconds; wide explanations.

Runs the app under AppTest on the landed run (with open exceptions, an order and a
dead letter picked, so every table is drawn) and checks what each ``st.dataframe``
hands the browser: its column configuration, its placeholder for empty cells and,
for a styled table, the display text the browser shows as is.
"""

import json
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Dataframe

from allocflow.dashboards import tables
from allocflow.dashboards.data import DB_ENV
from allocflow.dashboards.server import APP_PATH

pytestmark = pytest.mark.integration

_TIMEOUT_S = 60
_WRAPPING_ROW_PX = 64
"""Streamlit wraps cell text in rows taller than 4 rem."""
_WIDE_PX = 400
"""A "large" column is 400 px."""
_LONG_FRACTION = re.compile(r"\d\.\d{3,}")
_PAGES = ("page_overview.py", "page_exceptions.py", "page_carriers.py", "page_quality.py")


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    st.cache_data.clear()
    yield
    st.cache_data.clear()


@pytest.fixture(scope="module")
def busy_db(landed_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The landed file alone, its ten oldest exceptions of known orders open, one GX failure."""
    db = tmp_path_factory.mktemp("tables") / "busy.duckdb"
    shutil.copy(landed_run / "allocflow.duckdb", db)
    with duckdb.connect(str(db)) as connection:
        connection.execute(
            """UPDATE exceptions SET closed_at = NULL, resolution = NULL
               WHERE exception_id IN (
                   SELECT exception_id FROM exceptions
                   WHERE order_id IN (SELECT order_id FROM orders)
                   ORDER BY opened_at LIMIT 10)"""
        )
        connection.execute(
            """INSERT INTO dq_results (result_id, origin, check_name, feed, severity, success,
                   detected_at, element_count, unexpected_count, detail)
               SELECT 'gx-1', 'gx', 'expect_column_values_to_be_between(requested_qty)',
                      'order_lines', 'warning', false, max(watermark), 10, 1, '1 of 10 rows'
               FROM landing_status"""
        )
    return db


def _page(monkeypatch: pytest.MonkeyPatch, db: Path, page: str) -> AppTest:
    monkeypatch.setattr(sys, "argv", ["app.py", "--db", str(db)])
    monkeypatch.delenv(DB_ENV, raising=False)
    app = AppTest.from_file(str(APP_PATH), default_timeout=_TIMEOUT_S)
    app.run()
    app.switch_page(page).run()
    if page == "page_exceptions.py":
        app.toggle(key="queue_closed").set_value(True).run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def _config(frame: Dataframe) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(frame.proto.columns or "{}")
    return config


def _display_values(frame: Dataframe) -> list[dict[str, str]] | None:
    """A styled table's display text per cell; None for a table without a Styler."""
    raw = frame.proto.arrow_data.styler.display_values
    if not raw:
        return None
    rows: list[dict[str, str]] = pa.ipc.open_stream(raw).read_all().to_pylist()
    return rows


def _integral(column: Any) -> bool:
    """Whether a float column holds whole numbers only (a nullable integer, in pandas)."""
    values = column.dropna()
    return bool((values == values.round()).all())


def _problems(frame: Dataframe) -> list[str]:
    """What makes one table hard to read, by column."""
    config, value = _config(frame), frame.value
    found = [] if frame.proto.placeholder == tables.EMPTY_CELL else ["empty cells show None"]
    shown = _display_values(frame)
    for name, dtype in value.dtypes.items():
        column = config.get(str(name), {})
        kind = column.get("type_config", {})
        if shown is not None and dtype.kind in "fM":
            cells = [row[str(name)] for row in shown]
            found += [
                f"{name}: {c!r}"
                for c in cells
                if _LONG_FRACTION.search(c) or c in ("None", "nan", "NaT")
            ]
        elif dtype.kind == "f" and not kind.get("format") and not _integral(value[name]):
            found.append(f"{name}: number without a format")
        elif dtype.kind == "M" and (kind.get("format") or "SSS").count("S"):
            found.append(f"{name}: timestamp with fractions of a second")
        if name in tables.EXPLAINING and column.get("width") not in (
            "large",
            *range(_WIDE_PX, 2000),
        ):
            found.append(f"{name}: explanation in a narrow column ({column.get('width')})")
    explains = [name for name in value.columns if name in tables.EXPLAINING]
    if {"detail", "explanation"} & set(explains) and len(value) > 0:
        wraps = frame.proto.row_height > _WRAPPING_ROW_PX
        if not wraps and not all(config.get(n, {}).get("width") for n in explains):
            found.append("explanations neither wrap nor get a wide column")
    return found


@pytest.mark.parametrize("page", _PAGES)
def test_every_table_is_readable(monkeypatch: pytest.MonkeyPatch, busy_db: Path, page: str) -> None:
    app = _page(monkeypatch, busy_db, page)

    frames = list(app.dataframe)
    problems = {", ".join(map(str, frame.value.columns[:3])): _problems(frame) for frame in frames}
    assert {table: found for table, found in problems.items() if found} == {}
    assert len(frames) >= {"page_overview.py": 0, "page_exceptions.py": 4}.get(page, 3)


def test_exception_explanations_wrap(monkeypatch: pytest.MonkeyPatch, busy_db: Path) -> None:
    app = _page(monkeypatch, busy_db, "page_exceptions.py")

    wrapped = {
        column
        for frame in app.dataframe
        if frame.proto.row_height > _WRAPPING_ROW_PX
        for column in frame.value.columns
    }
    assert {"detail", "explanation", "resolution"} <= wrapped
    queue = next(f for f in app.dataframe if "exception_id" in f.value.columns)
    age = _config(queue)["age_hours"]
    assert age["type_config"]["format"] == "%.1f h"


def test_no_page_draws_a_stray_string(monkeypatch: pytest.MonkeyPatch, busy_db: Path) -> None:
    for page in _PAGES:
        app = _page(monkeypatch, busy_db, page)
        stray = [m.value for m in app.markdown if not m.value.startswith("**")]
        assert stray == [], page
