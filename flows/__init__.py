"""Dataflows, runtime settings and the ``allocflow`` command line."""
