"""Run the expectation suites over micro-batches of the landed tables.

One :class:`ExpectationRunner` per process builds an ephemeral GX context and one
validation definition per suite, once (GX's import takes seconds and its setup tens
of milliseconds); each run then reads one pandas batch per table from DuckDB — the
rows whose event time is in ``(watermark - window, watermark]``, or all rows — and
validates it. Results come back as plain rows shaped like ``dq_results``: origin
``gx``, the check (expectation type and columns), the feed (table), severity, the
counts and a detail naming up to five offending rows by their keys. A result's id
is stable per (window, table, check), so writing a run twice changes nothing.
"""

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from allocflow.models.ids import stable_id
from allocflow.quality._gx import PandasFrame, ProgressBarsConfig, gx
from allocflow.quality.suites import FRESH_AFTER, TableSuite, build_suites

ORIGIN = "gx"
"""``dq_results.origin`` of expectation results."""
EXAMPLES = 5
"""Offending rows named per failed expectation."""
DOCS_SITE = "allocflow"
"""Name of the GX data docs site written by :meth:`ExpectationRunner.build_docs`."""

_WATERMARK = "SELECT watermark FROM landing_status WHERE id = 1"
_UPSERT = """
INSERT INTO dq_results (result_id, origin, check_name, feed, severity, success, event_id,
                        detected_at, element_count, unexpected_count, detail, sample,
                        covers_from, covers_to)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (result_id) DO UPDATE SET
    success = excluded.success, element_count = excluded.element_count,
    unexpected_count = excluded.unexpected_count, detail = excluded.detail,
    sample = excluded.sample, covers_from = excluded.covers_from,
    covers_to = excluded.covers_to
"""


class NothingLandedError(RuntimeError):
    """The database has no landing watermark: nothing was landed into it yet."""


@dataclass(frozen=True)
class Window:
    """The event-time window a run validates.

    Attributes:
        end: The landing watermark (newest landed event time); rows up to it.
        hours: Width of the window; None validates every row.
    """

    end: datetime
    hours: float | None

    @property
    def start(self) -> datetime | None:
        """Exclusive lower bound, None for all rows."""
        return None if self.hours is None else self.end - timedelta(hours=self.hours)

    def label(self) -> str:
        """Return a readable form, e.g. ``(2026-03-08 01:00, 2026-03-08 03:00]``."""
        end = self.end.isoformat(sep=" ", timespec="seconds")
        if self.start is None:
            return f"all rows up to {end}"
        return f"({self.start.isoformat(sep=' ', timespec='seconds')}, {end}]"


@dataclass(frozen=True)
class ResultRow:
    """One expectation result, with the columns of ``dq_results``.

    ``covers_from`` (exclusive; None: from the first landed row) and ``covers_to`` (the
    landing watermark when the suites ran) are the event-time range of the rows the
    result judged.
    """

    result_id: str
    origin: str
    check_name: str
    feed: str
    severity: str
    success: bool
    event_id: str | None
    detected_at: datetime
    element_count: int | None
    unexpected_count: int | None
    detail: str
    sample: str | None
    covers_from: datetime | None
    covers_to: datetime

    def values(self) -> tuple[object, ...]:
        """Return the values in ``dq_results`` column order."""
        return (
            self.result_id, self.origin, self.check_name, self.feed, self.severity,
            self.success, self.event_id, self.detected_at, self.element_count,
            self.unexpected_count, self.detail, self.sample, self.covers_from, self.covers_to,
        )  # fmt: skip


@dataclass(frozen=True)
class TableOutcome:
    """The validation of one table's batch.

    Attributes:
        table: The table.
        rows: Rows in the batch.
        seconds: Time GX took to validate it (reading excluded).
        results: One row per expectation, in suite order.
    """

    table: str
    rows: int
    seconds: float
    results: tuple[ResultRow, ...]

    @property
    def failed(self) -> tuple[ResultRow, ...]:
        """The results that did not succeed."""
        return tuple(r for r in self.results if not r.success)


@dataclass(frozen=True)
class QualityRun:
    """A validation of every suite over one window."""

    window: Window
    tables: tuple[TableOutcome, ...]

    @property
    def success(self) -> bool:
        """True when every expectation of every table succeeded."""
        return not any(t.failed for t in self.tables)

    def results(self) -> list[ResultRow]:
        """Return every result row, table by table."""
        return [r for t in self.tables for r in t.results]


class ExpectationRunner:
    """The GX context and validation definitions of the suites, built once per process."""

    def __init__(self, suites: Sequence[TableSuite] | None = None) -> None:
        """Build the ephemeral context, with progress bars off, and one definition per suite.

        Args:
            suites: The suites to run; all of :func:`build_suites` by default.
        """
        self._context = gx.get_context(mode="ephemeral")
        self._context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = self._context.data_sources.add_pandas("landed")
        self._suites = tuple(suites if suites is not None else build_suites())
        self._definitions = {s.table: self._define(source, s) for s in self._suites}

    def _define(self, source: Any, suite: TableSuite) -> Any:
        batch = source.add_dataframe_asset(suite.table).add_batch_definition_whole_dataframe(
            "window"
        )
        gx_suite = gx.ExpectationSuite(name=suite.table)
        for expectation in suite.expectations:
            gx_suite.add_expectation(expectation)
        gx_suite = self._context.suites.add(gx_suite)
        return self._context.validation_definitions.add(
            gx.ValidationDefinition(name=suite.table, data=batch, suite=gx_suite)
        )

    def run(
        self, con: duckdb.DuckDBPyConnection, window_hours: float | None, fresh_hours: float
    ) -> QualityRun:
        """Validate each table's rows of the window ending at the landing watermark.

        Args:
            con: A connection to the landed database (read-only is enough).
            window_hours: Width of the event-time window; None for all rows.
            fresh_hours: A feed is fresh when its newest event is at most this old
                relative to the watermark.

        Returns:
            The results of every suite.

        Raises:
            NothingLandedError: The database has no watermark yet.
        """
        window = Window(landing_watermark(con), window_hours)
        self._forget_validations()
        fresh_after = window.end - timedelta(hours=fresh_hours)
        outcomes = tuple(
            self.validate(suite, read_batch(con, suite, window), window, fresh_after)
            for suite in self._suites
        )
        return QualityRun(window, outcomes)

    def _forget_validations(self) -> None:
        """Drop the validation results GX stored in memory for earlier runs.

        GX stores every validation result in the context; a long-lived runner would
        grow with each run, and data docs are meant to show the latest run.
        """
        store = self._context.validation_results_store
        for key in store.list_keys():
            store.remove_key(key)

    def validate(
        self, suite: TableSuite, batch: PandasFrame, window: Window, fresh_after: datetime
    ) -> TableOutcome:
        """Validate one table's batch with its suite.

        Args:
            suite: The table's suite (one given to the constructor).
            batch: The rows, with the suite's columns and derived columns.
            window: The window the batch was read for (names the result ids).
            fresh_after: Value of the freshness suite parameter.

        Returns:
            The table's results.
        """
        started = time.perf_counter()
        validation = self._definitions[suite.table].run(
            batch_parameters={"dataframe": batch},
            expectation_parameters={FRESH_AFTER: fresh_after},
            result_format={
                "result_format": "SUMMARY",
                "unexpected_index_column_names": list(suite.key),
                "partial_unexpected_count": EXAMPLES,
            },
        )
        seconds = time.perf_counter() - started
        results = tuple(_result_row(r, suite.table, window) for r in validation.results)
        return TableOutcome(suite.table, len(batch), seconds, results)

    def build_docs(self, directory: Path) -> Path:
        """Write GX data docs of the suites and the latest run into ``directory``.

        Args:
            directory: Where the static site goes (created if missing).

        Returns:
            The site's ``index.html``.
        """
        site = {
            "class_name": "SiteBuilder",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(directory.resolve()),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
        if DOCS_SITE in self._context.get_site_names():
            self._context.update_data_docs_site(DOCS_SITE, site)
        else:
            self._context.add_data_docs_site(DOCS_SITE, site)
        self._context.build_data_docs(site_names=[DOCS_SITE])
        return directory / "index.html"


def landing_watermark(con: duckdb.DuckDBPyConnection) -> datetime:
    """Return the landing watermark (newest landed event time).

    Raises:
        NothingLandedError: Nothing was landed yet.
    """
    found = con.execute(_WATERMARK).fetchall()
    if not found or found[0][0] is None:
        raise NothingLandedError("nothing has been landed into this database yet")
    watermark: datetime = found[0][0]
    return watermark


def read_batch(con: duckdb.DuckDBPyConnection, suite: TableSuite, window: Window) -> PandasFrame:
    """Read a table's rows of the window as pandas: the suite's columns and derived ones.

    Args:
        con: A connection to the landed database.
        suite: The table's suite.
        window: The event-time window; all rows when it has no start.

    Returns:
        The batch.
    """
    relation = con.table(suite.table)
    if window.start is not None:
        event_time = duckdb.SQLExpression(suite.event_time)
        relation = relation.filter(
            (event_time > duckdb.ConstantExpression(window.start))
            & (event_time <= duckdb.ConstantExpression(window.end))
        )
    columns = [duckdb.ColumnExpression(c) for c in suite.columns()]
    derived = [duckdb.SQLExpression(sql).alias(name) for name, sql in suite.derived]
    return relation.select(*columns, *derived).df()


def write_results(con: duckdb.DuckDBPyConnection, rows: Sequence[ResultRow]) -> None:
    """Upsert result rows into ``dq_results`` in one transaction (same id: replaced)."""
    con.begin()
    try:
        con.executemany(_UPSERT, [r.values() for r in rows])
    except duckdb.Error:
        con.rollback()
        raise
    con.commit()


def check_name(kwargs: Mapping[str, Any], expectation_type: str) -> str:
    """Return ``type(columns)``, e.g. ``expect_column_values_to_not_be_null(order_id)``."""
    if "column" in kwargs:
        return f"{expectation_type}({kwargs['column']})"
    return f"{expectation_type}({kwargs['column_A']}, {kwargs['column_B']})"


def _result_row(result: Any, table: str, window: Window) -> ResultRow:
    config = result.expectation_config
    outcome: Mapping[str, Any] = result.result or {}
    name = check_name(config.kwargs, config.type)
    start = "all" if window.start is None else window.start.isoformat()
    examples = [
        {column: _plain(value) for column, value in example.items()}
        for example in list(outcome.get("partial_unexpected_index_list") or [])[:EXAMPLES]
    ]
    sample = json.dumps(examples) if examples else None
    return ResultRow(
        result_id=stable_id("dq-gx", start, window.end.isoformat(), table, name),
        origin=ORIGIN,
        check_name=name,
        feed=table,
        severity=str(getattr(config.severity, "value", config.severity)),
        success=bool(result.success),
        event_id=None,
        detected_at=window.end,
        element_count=outcome.get("element_count"),
        unexpected_count=outcome.get("unexpected_count"),
        detail=_detail(result, outcome, sample),
        sample=sample,
        covers_from=window.start,
        covers_to=window.end,
    )


def _plain(value: Any) -> str | int | float | bool | None:
    """Return a JSON value of a GX example value: NaN and NaT as null, timestamps as text."""
    if value is None or isinstance(value, str | bool):
        return value
    if (isinstance(value, float) and math.isnan(value)) or str(value) == "NaT":
        return None
    if isinstance(value, int | float):
        return value
    if hasattr(value, "dtype") and value.dtype.kind in "iuf":  # numpy scalars
        number: int | float = value.item()
        return number
    return str(value)


def _detail(result: Any, outcome: Mapping[str, Any], sample: str | None) -> str:
    if result.exception_info and result.exception_info.get("raised_exception"):
        return f"GX could not evaluate it: {result.exception_info.get('exception_message')}"
    if "observed_value" in outcome:
        kwargs = result.expectation_config.kwargs
        expected = {k: v for k, v in kwargs.items() if k.endswith("_value")}
        return f"observed {outcome['observed_value']}; expected {json.dumps(expected, default=str)}"
    count, total = outcome.get("unexpected_count") or 0, outcome.get("element_count") or 0
    if not count:
        return f"all {total} rows as expected"
    return f"{count} of {total} rows unexpected; e.g. {sample}"
