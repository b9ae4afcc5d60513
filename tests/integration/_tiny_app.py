"""A one-metric Streamlit app for the server tests: the row count of ``--db``'s table ``t``."""

import argparse
import sys

import duckdb
import streamlit as st


def _row_count(db: str) -> int:
    with duckdb.connect(db, read_only=True) as connection:
        row = connection.execute("SELECT count(*) FROM t").fetchone()
    return 0 if row is None else int(row[0])


_parser = argparse.ArgumentParser()
_parser.add_argument("--db", required=True)
_args = _parser.parse_args(sys.argv[1:])
st.title("tiny")
st.metric("rows", _row_count(_args.db))
