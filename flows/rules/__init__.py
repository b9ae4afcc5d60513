"""Allocation business rules as plain Python: no Bytewax, unit-testable on their own."""
