"""Deterministic scenario simulator of a regional distributor's event feeds."""
