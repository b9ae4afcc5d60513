"""The landed fact tables: DDL, one statement per table.

All times are UTC ``TIMESTAMP`` (naive, in UTC), quantities ``BIGINT`` and a quantity
summed over events ``HUGEINT`` (see :mod:`allocflow.connectors.landing.ranges`). Every
table has a primary key made of deterministic ids, so landing a record twice changes
nothing; input events are keyed by topic and ``event_id``, as the flow dedupes them per
feed. The KPI
aggregates and views are in :mod:`allocflow.connectors.landing.aggregates` and
:mod:`allocflow.connectors.landing.kpi_views`; ``docs/kpis.md`` documents them all.
"""

import duckdb

SCHEMA_VERSION = 4
"""Bumped when a table changes; a file of another version is refused, not migrated.

Version 4: ``input_events`` keyed by (topic, event_id), quantities ``BIGINT`` and their
sums ``HUGEINT``, ``landing_status.quarantined``, ``dq_results.covers_from`` and
``covers_to`` (the landed event-time range an expectation result covers)."""

FACT_TABLES: dict[str, str] = {
    "landing_offsets": """
        source VARCHAR NOT NULL,
        source_partition INTEGER NOT NULL,
        next_offset BIGINT NOT NULL,
        PRIMARY KEY (source, source_partition)""",
    "landing_status": """
        id INTEGER PRIMARY KEY,
        schema_version INTEGER NOT NULL,
        batches BIGINT NOT NULL,
        records BIGINT NOT NULL,
        skipped BIGINT NOT NULL,
        quarantined BIGINT NOT NULL DEFAULT 0,
        watermark TIMESTAMP,
        newest_message_at TIMESTAMP,
        landed_at TIMESTAMP NOT NULL""",
    "input_events": """
        event_id VARCHAR NOT NULL,
        topic VARCHAR NOT NULL,
        event_type VARCHAR NOT NULL,
        event_time TIMESTAMP NOT NULL,
        source VARCHAR NOT NULL,
        ingested_at TIMESTAMP,
        order_id VARCHAR,
        shipment_id VARCHAR,
        customer_id VARCHAR,
        sku VARCHAR,
        node_id VARCHAR,
        detail VARCHAR,
        PRIMARY KEY (topic, event_id)""",
    "orders": """
        order_id VARCHAR PRIMARY KEY,
        customer_id VARCHAR,
        customer_tier VARCHAR,
        channel VARCHAR,
        region VARCHAR,
        placed_at TIMESTAMP,
        promised_date TIMESTAMP,
        line_count INTEGER,
        cancelled_at TIMESTAMP,
        status VARCHAR,
        status_version BIGINT,
        status_as_of TIMESTAMP,
        requested_qty BIGINT,
        allocated_qty BIGINT,
        split_count BIGINT,
        nodes VARCHAR[],
        first_decided_at TIMESTAMP,
        allocated_at TIMESTAMP,
        lines_decided INTEGER NOT NULL DEFAULT 0,
        lines_first_full INTEGER NOT NULL DEFAULT 0,
        lines_active INTEGER NOT NULL DEFAULT 0,
        lines_current_full INTEGER NOT NULL DEFAULT 0,
        shipments INTEGER NOT NULL DEFAULT 0,
        shipment_nodes INTEGER NOT NULL DEFAULT 0,
        shipments_delivered INTEGER NOT NULL DEFAULT 0,
        first_dispatched_at TIMESTAMP,
        delivered_at TIMESTAMP,
        exceptions_opened INTEGER NOT NULL DEFAULT 0,
        exceptions_open INTEGER NOT NULL DEFAULT 0,
        allocation_exceptions_opened INTEGER NOT NULL DEFAULT 0""",
    "order_lines": """
        order_id VARCHAR NOT NULL,
        line_id VARCHAR NOT NULL,
        sku VARCHAR,
        ordered_qty BIGINT,
        unit_price DOUBLE,
        placed_at TIMESTAMP,
        region VARCHAR,
        channel VARCHAR,
        customer_tier VARCHAR,
        decisions INTEGER NOT NULL DEFAULT 0,
        first_decision_id VARCHAR,
        first_offset BIGINT,
        first_decided_at TIMESTAMP,
        first_outcome VARCHAR,
        first_requested_qty BIGINT,
        first_allocated_qty BIGINT,
        decision_id VARCHAR,
        last_offset BIGINT,
        decided_at TIMESTAMP,
        outcome VARCHAR,
        requested_qty BIGINT,
        allocated_qty BIGINT,
        backordered_qty BIGINT,
        reason_code VARCHAR,
        allocations STRUCT(node_id VARCHAR, qty BIGINT)[],
        PRIMARY KEY (order_id, line_id)""",
    "allocation_decisions": """
        decision_id VARCHAR PRIMARY KEY,
        order_id VARCHAR NOT NULL,
        line_id VARCHAR NOT NULL,
        sku VARCHAR NOT NULL,
        customer_id VARCHAR NOT NULL,
        decided_at TIMESTAMP NOT NULL,
        cause_event_id VARCHAR NOT NULL,
        policy_version VARCHAR NOT NULL,
        rule VARCHAR NOT NULL,
        outcome VARCHAR NOT NULL,
        requested_qty BIGINT NOT NULL,
        allocated_qty BIGINT NOT NULL,
        backordered_qty BIGINT NOT NULL,
        allocations STRUCT(node_id VARCHAR, qty BIGINT)[],
        candidates STRUCT(node_id VARCHAR, rank BIGINT, available_qty BIGINT,
                          rejected_reason VARCHAR)[],
        reason_code VARCHAR,
        explanation VARCHAR NOT NULL,
        source_partition INTEGER NOT NULL,
        source_offset BIGINT NOT NULL,
        produced_at TIMESTAMP,
        latency_ms DOUBLE""",
    "exceptions": """
        exception_id VARCHAR PRIMARY KEY,
        order_id VARCHAR NOT NULL,
        line_id VARCHAR,
        reason_code VARCHAR NOT NULL,
        severity VARCHAR NOT NULL,
        owner_role VARCHAR NOT NULL,
        opened_at TIMESTAMP NOT NULL,
        closed_at TIMESTAMP,
        resolution VARCHAR,
        detail VARCHAR,
        opened_by_event_id VARCHAR,
        closed_by_event_id VARCHAR""",
    "shipments": """
        shipment_id VARCHAR PRIMARY KEY,
        order_id VARCHAR,
        node_id VARCHAR,
        carrier_id VARCHAR,
        lane VARCHAR,
        dispatch_cutoff TIMESTAMP,
        promised_delivery TIMESTAMP,
        units BIGINT,
        created_at TIMESTAMP,
        picked_at TIMESTAMP,
        dispatched_at TIMESTAMP,
        delivered_at TIMESTAMP,
        carrier_delivered_at TIMESTAMP,
        short_units HUGEINT NOT NULL DEFAULT 0,
        tracking_no VARCHAR,
        first_scan_at TIMESTAMP,
        last_scan_at TIMESTAMP,
        scans BIGINT NOT NULL DEFAULT 0,
        latest_eta TIMESTAMP,
        eta_at TIMESTAMP""",
    "carrier_events": """
        event_id VARCHAR PRIMARY KEY,
        shipment_id VARCHAR NOT NULL,
        carrier_id VARCHAR NOT NULL,
        event_type VARCHAR NOT NULL,
        event_time TIMESTAMP NOT NULL,
        location VARCHAR,
        eta TIMESTAMP,
        code VARCHAR,
        description VARCHAR""",
    "dead_letters": """
        dead_letter_id VARCHAR PRIMARY KEY,
        source_topic VARCHAR NOT NULL,
        source_partition BIGINT,
        source_offset BIGINT,
        message_key VARCHAR,
        source_timestamp TIMESTAMP,
        event_id VARCHAR,
        reason_code VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        errors STRUCT(field VARCHAR, message VARCHAR, value VARCHAR)[],
        raw BLOB NOT NULL,
        landed_from VARCHAR NOT NULL,
        dead_lettered_at TIMESTAMP""",
    "dq_results": """
        result_id VARCHAR PRIMARY KEY,
        origin VARCHAR NOT NULL,
        check_name VARCHAR NOT NULL,
        feed VARCHAR NOT NULL,
        severity VARCHAR NOT NULL,
        success BOOLEAN NOT NULL,
        event_id VARCHAR,
        detected_at TIMESTAMP NOT NULL,
        element_count BIGINT,
        unexpected_count BIGINT,
        detail VARCHAR NOT NULL,
        sample VARCHAR,
        covers_from TIMESTAMP,
        covers_to TIMESTAMP""",
    "route_alerts": """
        alert_id VARCHAR PRIMARY KEY,
        kind VARCHAR NOT NULL,
        severity VARCHAR NOT NULL,
        carrier_id VARCHAR NOT NULL,
        lane VARCHAR NOT NULL,
        shipment_id VARCHAR,
        order_id VARCHAR,
        detected_at TIMESTAMP NOT NULL,
        promised_delivery TIMESTAMP,
        expected_delivery TIMESTAMP,
        resolves_alert_id VARCHAR,
        detail VARCHAR NOT NULL""",
}


class SchemaMismatchError(RuntimeError):
    """The database file was written by another schema version of allocflow."""


def create_fact_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create every fact table that does not exist yet."""
    for table, columns in FACT_TABLES.items():
        con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")


def check_schema_version(con: duckdb.DuckDBPyConnection) -> None:
    """Refuse a file landed by another schema version.

    Raises:
        SchemaMismatchError: The file's ``landing_status`` names another version.
    """
    found = con.execute("SELECT schema_version FROM landing_status WHERE id = 1").fetchone()
    if found is not None and found[0] != SCHEMA_VERSION:
        raise SchemaMismatchError(
            f"the database was landed with schema version {found[0]}, this allocflow "
            f"writes version {SCHEMA_VERSION}; land into a new file"
        )
