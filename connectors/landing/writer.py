"""The single writer of the DuckDB file: one transaction per batch, idempotent.

A batch lands in one transaction: new input events, decisions and records go to
the fact tables, the entity rows they touch are merged, and every KPI aggregate
receives the difference those rows made — together with the next offset of every
source partition, so a restart resumes exactly after the last landed batch and a
replayed message is skipped. Deterministic ids make a re-produced record (the
pipeline restarted without recovery) land nothing either.

Example:
    ::

        with DuckDBWriter(Path("allocflow.duckdb")) as writer:
            report = writer.land(records)
            print(report.records, report.seconds)
"""

import logging
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self

import duckdb
import polars as pl

from allocflow.connectors.landing import merges, staging
from allocflow.connectors.landing.aggregates import (
    aggregates_of,
    columns_read,
    create_aggregates,
)
from allocflow.connectors.landing.errors import LandingError, first_line, what_to_do
from allocflow.connectors.landing.kpi_views import create_views
from allocflow.connectors.landing.records import LandingRecord, StagedRows, rows_of, utc
from allocflow.connectors.landing.schema import (
    SCHEMA_VERSION,
    check_schema_version,
    create_fact_tables,
)

_LOG = logging.getLogger(__name__)

_INGEST_CACHE_SIZE = 500_000
"""Recent input events whose ingest time is kept in memory to time decisions."""

ENTITIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "orders": ("affected_orders", ("order_id",)),
    "order_lines": ("affected_lines", ("order_id", "line_id")),
    "shipments": ("affected_shipments", ("shipment_id",)),
    "exceptions": ("affected_exceptions", ("exception_id",)),
    "allocation_decisions": ("affected_decisions", ("decision_id",)),
}
"""Entity tables that feed aggregates, with the frame of touched keys for each."""
_MERGED_ENTITIES = tuple(e for e in ENTITIES if e != "allocation_decisions")
"""Entities merged from staging frames (decisions are inserted before the merges)."""


_EVENT_KEY = ["topic", "event_id"]
"""What identifies an input event: the flow dedupes per feed, so two feeds may share an id."""

_ROWS_OF_AN_EVENT: dict[str, list[str]] = {
    "placed": _EVENT_KEY,
    "placed_lines": [*_EVENT_KEY, "line_id"],
    "cancelled": _EVENT_KEY,
    "shipments": _EVENT_KEY,
    "carrier_events": _EVENT_KEY,
}
"""Staging frames filled from input events, and what identifies one event's row in each.

A redelivered event in the same batch stages its rows twice; only the first are kept,
so additive columns (a shipment's scans, short units) count every event once however
the messages fall into batches.
"""


@dataclass(frozen=True)
class BatchReport:
    """What one batch did.

    Attributes:
        records: Messages in the batch.
        replayed: Messages skipped because their offset had already landed.
        skipped: Messages that could not be decoded (see the dead-letter topic).
        quarantined: Messages holding a value no landed column can hold; each is a
            ``dq_results`` row (origin ``landing``) instead.
        new_events: Input events landed for the first time.
        new_decisions: Decisions landed for the first time.
        seconds: Wall time of the batch, decode to commit.
    """

    records: int
    replayed: int
    skipped: int
    quarantined: int
    new_events: int
    new_decisions: int
    seconds: float


class DuckDBWriter:
    """Owns the DuckDB file; lands batches of records into facts and KPI aggregates."""

    def __init__(self, path: Path) -> None:
        """Open (or create) the file, its tables, aggregates and views.

        Raises:
            SchemaMismatchError: The file was landed by another schema version.
            duckdb.IOException: Another process holds the file.
        """
        self.path = path
        self._con = _connect(path)
        self._con.execute("SET enable_progress_bar = false")
        create_fact_tables(self._con)
        check_schema_version(self._con)
        create_aggregates(self._con)
        create_views(self._con)
        self._next_offsets = self._load_offsets()
        self._ingested: OrderedDict[str, datetime] = OrderedDict()
        self._awaiting_cause = self._load_awaiting_cause()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The writer's connection (for snapshots and reads in the same process)."""
        return self._con

    def next_offset(self, source: str, partition: int) -> int:
        """The first offset of a source partition that has not landed yet."""
        return self._next_offsets.get((source, partition), 0)

    def land(self, records: Sequence[LandingRecord]) -> BatchReport:
        """Land a batch in one transaction; records already landed are skipped.

        Raises:
            LandingError: The batch could not land (a full disk, a failed write);
                nothing of it did, and the writer's memory is as before the batch.
        """
        started = time.perf_counter()
        fresh = [r for r in records if r.offset >= self.next_offset(r.source, r.partition)]
        staged = rows_of(fresh)
        frames = staging.typed_frames(staged.frames)
        self._con.execute("BEGIN TRANSACTION")
        try:
            landed = self._land_frames(frames)
            offsets = self._advance_offsets(fresh)
            self._record_status(fresh, staged, frames["input_events"])
            self._con.execute("COMMIT")
        except duckdb.Error as error:
            self._roll_back()
            raise LandingError(
                f"could not land a batch of {len(fresh):,} messages into {self.path} "
                f"({first_line(error)}); nothing of the batch landed. {what_to_do(self.path)}"
            ) from error
        except BaseException:
            self._roll_back()
            raise
        self._next_offsets.update(offsets)
        self._remember(landed, frames["input_events"])
        return BatchReport(
            records=len(records),
            replayed=len(records) - len(fresh),
            skipped=staged.skipped,
            quarantined=staged.quarantined,
            new_events=landed.events,
            new_decisions=landed.decisions,
            seconds=time.perf_counter() - started,
        )

    def close(self) -> None:
        """Checkpoint and close the file.

        A failed checkpoint (a full disk) is logged, not raised: every committed batch
        is in the file's write-ahead log, which the next open replays.
        """
        try:
            self._con.close()
        except duckdb.Error as error:
            _LOG.warning(
                "could not checkpoint %s on close (%s); the landed batches are safe in its "
                "write-ahead log and the next open replays it",
                self.path,
                first_line(error),
            )

    def _roll_back(self) -> None:
        """End the batch's transaction, which a failed ``COMMIT`` has ended already."""
        try:
            self._con.execute("ROLLBACK")
        except duckdb.Error as error:
            _LOG.debug("rollback after a failed batch: %s", first_line(error))

    def _land_frames(self, frames: dict[str, pl.DataFrame]) -> "_Landed":
        events = self._insert_new("input_events", frames["input_events"], _EVENT_KEY)
        new_keys = events.select(_EVENT_KEY)
        fresh = {
            name: frames[name]
            .join(new_keys, on=_EVENT_KEY, how="semi", maintain_order="left")
            .unique(subset=key, keep="first", maintain_order=True)
            .drop("topic")
            for name, key in _ROWS_OF_AN_EVENT.items()
        }
        late_latency, resolved = self._late_latencies(events)
        self._register(
            {
                "b_latency": late_latency,
                "affected_decisions": pl.concat(
                    [frames["decisions"].select("decision_id"), late_latency.select("decision_id")]
                ).unique(),
            }
        )
        touched = {"allocation_decisions": frames["decisions"].height + late_latency.height > 0}
        self._capture("before", ("allocation_decisions",), touched)
        decisions, awaiting = self._new_decisions(frames["decisions"])
        stage = {
            "b_placed": staging.placed_orders(fresh["placed"]).drop("event_id"),
            "b_placed_lines": staging.placed_lines(fresh["placed_lines"]).drop("event_id"),
            "b_cancelled": staging.cancellations(fresh["cancelled"]),
            "b_statuses": staging.order_statuses(frames["statuses"]),
            "b_line_decisions": staging.line_decisions(decisions),
            "b_exceptions": staging.exceptions(frames["exceptions"]),
            "b_shipments": staging.shipments(fresh["shipments"].drop("event_id")),
            "b_carrier_events": fresh["carrier_events"],
            "b_route_alerts": frames["route_alerts"],
            "b_dq_results": frames["dq_results"],
            "b_dead_letters": frames["dead_letters"],
            "b_latency": late_latency,
        }
        self._register(stage)
        affected = self._affected(stage)
        self._register(affected)
        touched.update({e: affected[ENTITIES[e][0]].height > 0 for e in _MERGED_ENTITIES})
        self._capture("before", _MERGED_ENTITIES, touched)
        self._merge(stage, summarise=touched["orders"])
        self._capture("after", ENTITIES, touched)
        self._apply_aggregate_deltas(touched)
        return _Landed(events.height, decisions.height, resolved, awaiting)

    def _insert_new(self, table: str, frame: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
        """Insert rows whose key is new; return those rows."""
        if frame.is_empty():
            return frame
        self._con.register("b_new", frame)
        inserted = self._con.execute(
            f"INSERT INTO {table} BY NAME SELECT * FROM b_new ON CONFLICT DO NOTHING "
            f"RETURNING {', '.join(keys)}"
        ).fetchall()
        self._con.unregister("b_new")
        new_keys = pl.DataFrame(inserted, schema=frame.select(keys).schema, orient="row")
        return frame.join(new_keys, on=keys, how="semi", maintain_order="left")

    def _new_decisions(
        self, decisions: pl.DataFrame
    ) -> tuple[pl.DataFrame, list[tuple[str, str, datetime]]]:
        """Time the batch's decisions against their causes, then insert the new ones.

        Returns:
            The new decisions, and ``(cause, decision, produced)`` of those whose cause
            has not landed yet (remembered once the batch commits).
        """
        timed = decisions.with_columns(
            pl.Series("latency_ms", self._latencies(decisions), dtype=pl.Float64)
        )
        new = self._insert_new("allocation_decisions", timed, ["decision_id"])
        awaiting = [
            (cause, decision_id, produced)
            for decision_id, cause, produced, latency in new.select(
                "decision_id", "cause_event_id", "produced_at", "latency_ms"
            ).iter_rows()
            if produced is not None and latency is None
        ]
        return new, awaiting

    def _latencies(self, decisions: pl.DataFrame) -> list[float | None]:
        causes = decisions["cause_event_id"].to_list()
        known = self._ingest_times([c for c in set(causes) if c not in self._ingested])
        latencies: list[float | None] = []
        for cause, produced in zip(causes, decisions["produced_at"].to_list(), strict=True):
            ingested = self._ingested.get(cause) or known.get(cause)
            latencies.append(_latency_ms(ingested, produced))
        return latencies

    def _ingest_times(self, event_ids: list[str]) -> dict[str, datetime]:
        """Ingest times of events landed in earlier batches but no longer cached.

        A decision names its cause by ``event_id`` alone; an id two feeds share is timed
        from the earlier ingest (a latency is never made shorter than it was).
        """
        if not event_ids:
            return {}
        self._con.register("b_causes", pl.DataFrame({"event_id": event_ids}))
        rows = self._con.execute(
            "SELECT event_id, min(ingested_at) FROM input_events "
            "SEMI JOIN b_causes USING (event_id) WHERE ingested_at IS NOT NULL GROUP BY event_id"
        ).fetchall()
        self._con.unregister("b_causes")
        return dict(rows)

    def _late_latencies(self, events: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
        """Latencies of earlier decisions whose cause event landed only now.

        Returns:
            ``decision_id``, ``latency_ms`` rows, and the causes they resolve (forgotten
            once the batch commits).
        """
        rows: list[tuple[str, float]] = []
        resolved: dict[str, None] = {}
        for event_id, ingested in events.select("event_id", "ingested_at").iter_rows():
            waiting = self._awaiting_cause.get(event_id)
            if waiting is None or event_id in resolved:
                continue
            resolved[event_id] = None
            for decision_id, produced in waiting:
                latency = _latency_ms(ingested, produced)
                if latency is not None:
                    rows.append((decision_id, latency))
        frame = pl.DataFrame(
            rows, schema={"decision_id": pl.String, "latency_ms": pl.Float64}, orient="row"
        )
        return frame, list(resolved)

    def _affected(self, stage: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
        shipment_ids = stage["b_shipments"].select("shipment_id")
        self._con.register("b_touched_shipments", shipment_ids)
        shipped_orders = self._con.sql(
            "SELECT DISTINCT order_id FROM shipments SEMI JOIN b_touched_shipments "
            "USING (shipment_id) WHERE order_id IS NOT NULL"
        ).pl()
        orders = pl.concat(
            [
                stage[name].select("order_id")
                for name in (
                    "b_placed",
                    "b_cancelled",
                    "b_statuses",
                    "b_line_decisions",
                    "b_exceptions",
                    "b_shipments",
                )
            ]
            + [shipped_orders.cast({"order_id": pl.String})]
        )
        lines = pl.concat(
            [
                stage["b_placed_lines"].select("order_id", "line_id"),
                stage["b_line_decisions"].select("order_id", "line_id"),
            ]
        )
        return {
            "affected_orders": orders.drop_nulls().unique(),
            "affected_lines": lines.unique(),
            "affected_shipments": shipment_ids.unique(),
            "affected_exceptions": stage["b_exceptions"].select("exception_id").unique(),
        }

    def _register(self, frames: dict[str, pl.DataFrame]) -> None:
        for name, frame in frames.items():
            self._con.register(name, frame)

    def _capture(self, when: str, entities: Iterable[str], touched: dict[str, bool]) -> None:
        for entity in entities:
            if not touched[entity]:
                continue
            affected, keys = ENTITIES[entity]
            columns = ", ".join(dict.fromkeys([*keys, *columns_read(entity)]))
            self._con.execute(
                f"CREATE OR REPLACE TEMP TABLE {when}_{entity} AS SELECT {columns} "
                f"FROM {entity} SEMI JOIN {affected} USING ({', '.join(keys)})"
            )

    def _merge(self, stage: dict[str, pl.DataFrame], *, summarise: bool) -> None:
        statements = (
            ("b_placed", merges.PLACED_ORDERS),
            ("b_placed_lines", merges.PLACED_LINES),
            ("b_cancelled", merges.CANCELLED_ORDERS),
            ("b_statuses", merges.ORDER_STATUSES),
            ("b_line_decisions", merges.LINE_DECISIONS),
            ("b_exceptions", merges.EXCEPTIONS),
            ("b_shipments", merges.SHIPMENTS),
            ("b_latency", _LATE_LATENCY),
            *((frame, merges.log_insert(table, frame)) for table, frame in merges.LOGS.items()),
        )
        for frame, statement in statements:
            if not stage[frame].is_empty():
                self._con.execute(statement)
        if summarise:
            for statement in merges.ORDER_SUMMARIES:
                self._con.execute(statement)

    def _apply_aggregate_deltas(self, touched: dict[str, bool]) -> None:
        for entity in ENTITIES:
            if not touched[entity]:
                continue
            for aggregate in aggregates_of(entity):
                self._con.execute(aggregate.apply_delta_sql(f"before_{entity}", f"after_{entity}"))
                self._con.execute(aggregate.prune_sql())

    def _advance_offsets(self, records: Iterable[LandingRecord]) -> dict[tuple[str, int], int]:
        offsets: dict[tuple[str, int], int] = {}
        for record in records:
            key = (record.source, record.partition)
            offsets[key] = max(offsets.get(key, 0), record.offset + 1)
        if offsets:
            frame = pl.DataFrame(
                [(s, p, o) for (s, p), o in offsets.items()],
                schema={"source": pl.String, "source_partition": pl.Int32, "next_offset": pl.Int64},
                orient="row",
            )
            self._con.register("b_offsets", frame)
            self._con.execute(
                "INSERT INTO landing_offsets SELECT * FROM b_offsets ON CONFLICT DO UPDATE "
                "SET next_offset = greatest(landing_offsets.next_offset, excluded.next_offset)"
            )
        return offsets

    def _record_status(
        self, records: Sequence[LandingRecord], staged: StagedRows, events: pl.DataFrame
    ) -> None:
        watermark = events["event_time"].max() if events.height else None
        stamps = [r.timestamp for r in records if r.timestamp is not None]
        newest_message = utc(max(stamps)) if stamps else None
        self._con.execute(
            "INSERT INTO landing_status (id, schema_version, batches, records, skipped, "
            "quarantined, watermark, newest_message_at, landed_at) "
            "VALUES (1, ?, 1, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
            "batches = landing_status.batches + 1, "
            "records = landing_status.records + excluded.records, "
            "skipped = landing_status.skipped + excluded.skipped, "
            "quarantined = landing_status.quarantined + excluded.quarantined, "
            "watermark = greatest(landing_status.watermark, excluded.watermark), "
            "newest_message_at = greatest(landing_status.newest_message_at, "
            "excluded.newest_message_at), "
            "landed_at = excluded.landed_at",
            [
                SCHEMA_VERSION,
                len(records),
                staged.skipped,
                staged.quarantined,
                watermark,
                newest_message,
                _now(),
            ],
        )

    def _remember(self, landed: "_Landed", events: pl.DataFrame) -> None:
        """Update the writer's memory with a committed batch."""
        for event_id in landed.resolved_causes:
            self._awaiting_cause.pop(event_id, None)
        for cause, decision_id, produced in landed.awaiting_cause:
            self._awaiting_cause.setdefault(cause, []).append((decision_id, produced))
        for event_id, ingested in events.select("event_id", "ingested_at").iter_rows():
            if ingested is None:
                continue
            known = self._ingested.get(event_id)
            self._ingested[event_id] = ingested if known is None else min(known, ingested)
        while len(self._ingested) > _INGEST_CACHE_SIZE:
            self._ingested.popitem(last=False)

    def _load_offsets(self) -> dict[tuple[str, int], int]:
        rows = self._con.execute(
            "SELECT source, source_partition, next_offset FROM landing_offsets"
        ).fetchall()
        return {(source, partition): offset for source, partition, offset in rows}

    def _load_awaiting_cause(self) -> dict[str, list[tuple[str, datetime]]]:
        rows = self._con.execute(
            "SELECT cause_event_id, decision_id, produced_at FROM allocation_decisions "
            "WHERE latency_ms IS NULL AND produced_at IS NOT NULL"
        ).fetchall()
        awaiting: dict[str, list[tuple[str, datetime]]] = {}
        for cause, decision_id, produced in rows:
            awaiting.setdefault(cause, []).append((decision_id, produced))
        return awaiting


@dataclass(frozen=True)
class _Landed:
    """What a batch's transaction did, applied to the writer's memory once it commits.

    Attributes:
        events: Input events landed for the first time.
        decisions: Decisions landed for the first time.
        resolved_causes: Cause events that timed the decisions waiting for them.
        awaiting_cause: ``(cause, decision, produced)`` of new decisions whose cause
            has not landed.
    """

    events: int
    decisions: int
    resolved_causes: list[str]
    awaiting_cause: list[tuple[str, str, datetime]]


_LATE_LATENCY = (
    "UPDATE allocation_decisions SET latency_ms = b_latency.latency_ms FROM b_latency "
    "WHERE allocation_decisions.decision_id = b_latency.decision_id"
)


_OPEN_RETRY_S = 5.0


def _connect(path: Path) -> duckdb.DuckDBPyConnection:
    """Open the file read-write, retrying while a reader briefly holds it.

    Dashboards read the file itself until the first snapshot exists.
    """
    deadline = time.monotonic() + _OPEN_RETRY_S
    while True:
        try:
            return duckdb.connect(str(path))
        except duckdb.IOException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _latency_ms(ingested: datetime | None, produced: datetime | None) -> float | None:
    if ingested is None or produced is None:
        return None
    return max((produced - ingested).total_seconds() * 1000.0, 0.0)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
