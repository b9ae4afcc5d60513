"""Landing of the pipeline's records into one DuckDB file, and its read-only snapshots."""
