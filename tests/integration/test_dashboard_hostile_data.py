"""Event data is shown as plain text: hostile strings in every displayed field stay inert.

A landed file's every free-text column (ids, dimensions, details, explanations,
resolutions, carrier locations and descriptions, dead-letter reasons, field errors and
raw bytes, check names and samples, feed sources) gets a prefix holding a Markdown
image and link, HTML tags, a ``<script>``, LaTeX, Streamlit colour and icon
directives, control, zero-width and bidi characters and a 2,000-character word. The
columns the contract restricts to a vocabulary (kinds, severities, reason codes,
feeds, …) keep their values: a real landed file cannot hold anything else there.

The app then runs on it: under AppTest no element that renders Markdown (text,
captions, alerts, headings, metric, tab and widget labels) holds any of it, while
the plain-text elements and tables do; in a real Chromium no page requests the
injected URL and none holds an image, link, script or formula made from it.
"""

import shutil
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import streamlit as st
from playwright.sync_api import Page, Request
from streamlit.testing.v1 import AppTest

from allocflow.dashboards.data import DB_ENV
from allocflow.dashboards.server import APP_PATH, StreamlitServer

pytestmark = pytest.mark.integration

INJECTED = "127.0.0.1:9"
"""The host every injected URL points at (the discard port: nothing answers)."""

HOSTILE = (
    f"![x](http://{INJECTED}/md.png) [link](http://{INJECTED}/link) "
    f'<img src="http://{INJECTED}/html.png"> <script>fetch("http://{INJECTED}/js")</script> '
    f"$\\href{{http://{INJECTED}/tex}}{{t}}$ $x^2$ :red[red] :material/warning: **bold** "
    "&amp; \x1b[31m\x07\x00\u202e\u200b\ufeff "
    f"{'W' * 2000} "
)
"""The prefix every free-text value gets."""

VOCABULARY = frozenset(
    {
        "kind",
        "origin",
        "stage",
        "fact",
        "landed_from",
        "severity",
        "status",
        "reason_code",
        "owner_role",
        "outcome",
        "first_outcome",
        "rule",
        "event_type",
        "topic",
        "source_topic",
        "feed",
    }
)
"""Columns whose values the contract or the pipeline restricts to a fixed vocabulary."""

_TIMEOUT_S = 60
_TIMEOUT_MS = 60_000
_PAGES = (None, "page_exceptions.py", "page_carriers.py", "page_quality.py")
_GX_FAILURE = """
INSERT INTO dq_results (result_id, origin, check_name, feed, severity, success, event_id,
                        detected_at, element_count, unexpected_count, detail, sample)
SELECT $h || 'gx-1', 'gx', $h || 'expect_column_values_to_not_be_null(order_id)', 'orders',
       'critical', false, NULL, max(watermark), 10, 1, $h || '1 of 10 rows', $h || '[1]'
FROM landing_status"""


def _free_text_columns(connection: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str]]:
    rows = connection.execute(
        """SELECT c.table_name, c.column_name, c.data_type FROM duckdb_columns() c
           JOIN duckdb_tables() t USING (table_name)
           WHERE NOT c.internal AND (c.data_type IN ('VARCHAR', 'VARCHAR[]', 'BLOB')
                 OR c.data_type LIKE 'STRUCT(%)[]')"""
    ).fetchall()
    return [(t, c, d) for t, c, d in rows if c not in VOCABULARY]


def _struct_fields(data_type: str) -> list[str]:
    """The VARCHAR fields of a ``STRUCT(...)[]`` type."""
    inner = data_type.removeprefix("STRUCT(").removesuffix(")[]")
    fields = [field.strip().rsplit(" ", 1) for field in inner.split(",")]
    return [name.strip('"') for name, kind in fields if kind == "VARCHAR"]


def _hostile_value(column: str, data_type: str) -> str | None:
    """SQL giving ``column`` its hostile value; None when it has no text to prefix."""
    if data_type == "VARCHAR":
        return f"$h || {column}"
    if data_type == "VARCHAR[]":
        return f"list_transform({column}, lambda v: $h || v)"
    if data_type == "BLOB":
        return f"encode($h) || {column}"
    fields = _struct_fields(data_type)
    if not fields:
        return None
    updates = ", ".join(f'"{f}" := $h || s."{f}"' for f in fields)
    return f"list_transform({column}, lambda s: struct_update(s, {updates}))"


def make_hostile(db: Path) -> None:
    """Prefix every free-text value of ``db`` with :data:`HOSTILE`; open ten exceptions."""
    with duckdb.connect(str(db)) as connection:
        for table, column, data_type in _free_text_columns(connection):
            value = _hostile_value(f'"{column}"', data_type)
            if value is not None:
                connection.execute(
                    f'UPDATE "{table}" SET "{column}" = {value}',
                    {"h": HOSTILE},
                )
        connection.execute(_GX_FAILURE, {"h": HOSTILE})
        connection.execute(
            """UPDATE exceptions SET
                   closed_at = CASE WHEN chosen THEN NULL
                                    ELSE coalesce(closed_at, opened_at + INTERVAL 1 HOUR) END,
                   resolution = CASE WHEN chosen THEN NULL ELSE coalesce(resolution, $h) END
               FROM (SELECT exception_id, row_number() OVER (ORDER BY opened_at) <= 10 AS chosen
                     FROM exceptions WHERE order_id IN (SELECT order_id FROM orders)) AS c
               WHERE c.exception_id = exceptions.exception_id""",
            {"h": HOSTILE},
        )
        connection.execute(
            """UPDATE exceptions SET closed_at = coalesce(closed_at, opened_at + INTERVAL 1 HOUR)
               WHERE order_id NOT IN (SELECT order_id FROM orders)"""
        )


@pytest.fixture(scope="module")
def hostile_db(landed_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the landed file (no snapshot: the app reads it) made hostile."""
    db = tmp_path_factory.mktemp("hostile") / "hostile.duckdb"
    shutil.copy(landed_run / "allocflow.duckdb", db)
    make_hostile(db)
    return db


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    st.cache_data.clear()
    yield
    st.cache_data.clear()


def _markdown_texts(app: AppTest) -> dict[str, list[str]]:
    """Every string the app hands an element that renders Markdown, by element type."""
    found: dict[str, list[str]] = {}
    for kind in (
        "markdown",
        "caption",
        "title",
        "header",
        "subheader",
        "info",
        "warning",
        "error",
        "success",
        "exception",
        "toast",
        "latex",
    ):
        found[kind] = [str(element.value) for element in app.get(kind)]
    found["metric"] = [f"{m.label} {m.value} {m.delta} {m.proto.help}" for m in app.get("metric")]  # type: ignore[attr-defined]
    found["tab"] = [tab.label for tab in app.tabs]
    for kind in ("selectbox", "multiselect", "toggle", "date_input"):
        found[kind] = [
            f"{w.label} {w.help or ''} {w.placeholder if kind != 'toggle' else ''}"  # type: ignore[attr-defined]
            for w in app.get(kind)
        ]
    return found


def _app(monkeypatch: pytest.MonkeyPatch, db: Path) -> AppTest:
    monkeypatch.setattr("sys.argv", ["app.py", "--db", str(db)])
    monkeypatch.delenv(DB_ENV, raising=False)
    return AppTest.from_file(str(APP_PATH), default_timeout=_TIMEOUT_S)


def _hostile_order(db: Path) -> str:
    with duckdb.connect(str(db), read_only=True) as connection:
        rows = connection.execute(
            """SELECT e.order_id FROM exceptions e JOIN orders o USING (order_id)
               WHERE e.closed_at IS NULL ORDER BY e.opened_at, e.exception_id LIMIT 1"""
        ).fetchall()
    order_id: str = rows[0][0]
    return order_id


@pytest.mark.parametrize("page", _PAGES)
def test_no_markdown_element_shows_event_data(
    monkeypatch: pytest.MonkeyPatch, hostile_db: Path, page: str | None
) -> None:
    app = _app(monkeypatch, hostile_db)
    app.run()
    if page is not None:
        app.switch_page(page).run()
    if page == "page_exceptions.py":
        app.selectbox(key="order").set_value(_hostile_order(hostile_db)).run()
    if page == "page_quality.py":
        app.selectbox(key="dead_letter").run()

    assert not app.exception, [e.value for e in app.exception]
    leaks = {
        kind: [t[:120] for t in texts if INJECTED in t]
        for kind, texts in _markdown_texts(app).items()
    }
    assert {kind: texts for kind, texts in leaks.items() if texts} == {}
    assert any(INJECTED in text for text in _plain_texts(app))  # the data is there, as text


def _plain_texts(app: AppTest) -> list[str]:
    """What the app shows as plain text: table cells, widget options, text and code."""
    cells = [
        str(value)
        for frame in app.dataframe
        for column in frame.value.columns
        for value in frame.value[column]
    ]
    options = [
        str(o) for kind in ("selectbox", "multiselect") for w in app.get(kind) for o in w.options
    ]  # type: ignore[attr-defined]
    return [*cells, *options, *(t.value for t in app.text), *(c.value for c in app.code)]


def test_order_summary_is_plain_text(monkeypatch: pytest.MonkeyPatch, hostile_db: Path) -> None:
    app = _app(monkeypatch, hostile_db)
    app.run()
    app.switch_page("page_exceptions.py").run()
    app.selectbox(key="order").set_value(_hostile_order(hostile_db)).run()

    summaries = [text.value for text in app.text if "units allocated" in text.value]
    assert len(summaries) == 1
    summary = summaries[0]
    assert f"![x](http://{INJECTED}/md.png)" in summary  # shown, literally
    assert not set(summary) & {"\x00", "\x07", "\x1b", "\u202e", "\u200b", "\ufeff"}
    assert len(summary) < 600  # each value cut at 80 characters; the tables hold them whole


_MARKUP_FROM_INJECTED = """host => ({
    linked: document.querySelectorAll(`[src*="${host}"], [href*="${host}"]`).length,
    scripts: [...document.scripts].filter(s => s.textContent.includes(host)).length,
    formulas: document.querySelectorAll(".katex").length,
    bold: [...document.querySelectorAll("strong, b")].filter(b => b.textContent === "bold").length,
})"""


def _injected_markup(page: Page) -> dict[str, int]:
    """How many elements of the page were made from the injected strings."""
    counts: dict[str, int] = page.evaluate(_MARKUP_FROM_INJECTED, INJECTED)
    return counts


def _open(page: Page, title: str) -> None:
    page.locator("[data-testid=stSidebarNavLink]").filter(has_text=title).click()
    page.get_by_role("heading", name=title).wait_for(timeout=_TIMEOUT_MS)


def _open_options(page: Page, widget: str, label: str) -> None:
    """Open a select widget's option list (drawn from the data), then close it."""
    page.locator(f"[data-testid={widget}]").filter(has_text=label).first.click()
    page.get_by_role("option").first.wait_for(timeout=_TIMEOUT_MS)
    page.keyboard.press("Escape")


def test_browser_renders_and_requests_nothing_injected(
    browser_page: Page, hostile_db: Path, tmp_path: Path
) -> None:
    requested: list[str] = []

    def note(request: Request) -> None:
        if INJECTED in request.url:
            requested.append(request.url)

    browser_page.on("request", note)
    markup: dict[str, dict[str, int]] = {}
    with StreamlitServer(
        app_args=["--db", str(hostile_db)], log_path=tmp_path / "streamlit.log"
    ) as server:
        browser_page.set_viewport_size({"width": 1400, "height": 3000})
        browser_page.goto(server.url)
        browser_page.locator("[data-testid=stMetricValue]").first.wait_for(timeout=_TIMEOUT_MS)
        _open_options(browser_page, "stMultiSelect", "Customer tier")
        markup["overview"] = _injected_markup(browser_page)

        _open(browser_page, "Exceptions queue")
        browser_page.get_by_role("tab", name="Timeline").wait_for(timeout=_TIMEOUT_MS)
        texts = browser_page.locator("[data-testid=stText]").all_inner_texts()
        _open_options(browser_page, "stSelectbox", "Order")
        markup["exceptions"] = _injected_markup(browser_page)

        _open(browser_page, "Carriers & routes")
        _open_options(browser_page, "stSelectbox", "Lane")
        markup["carriers"] = _injected_markup(browser_page)

        _open(browser_page, "Data quality")
        browser_page.get_by_text("Raw payload").wait_for(timeout=_TIMEOUT_MS)
        markup["quality"] = _injected_markup(browser_page)
        browser_page.wait_for_load_state("networkidle", timeout=_TIMEOUT_MS)

    assert requested == []
    assert any(f"![x](http://{INJECTED}/md.png)" in text for text in texts)  # shown literally
    nothing = {"linked": 0, "scripts": 0, "formulas": 0, "bold": 0}
    assert markup == dict.fromkeys(markup, nothing)
