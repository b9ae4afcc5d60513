"""The one place Great Expectations is imported, with its analytics switched off first.

GX 1.24 sends nothing (its PostHog client is gone), but older 1.x releases did and
the documented switch is ``GX_ANALYTICS_ENABLED``; it is set before the import as
defence in depth. The import takes seconds, so only modules that validate import
this one, and commands import them lazily.

GX's own annotations are partial (its expectations are pydantic models whose
re-exports mypy cannot see), so the modules are exposed as ``Any``: callers treat
GX as untyped and convert what it returns into typed rows at once.
"""

import logging
import os
from typing import Any

os.environ["GX_ANALYTICS_ENABLED"] = "False"
logging.getLogger("great_expectations").setLevel(logging.WARNING)  # its INFO is import noise

import great_expectations  # noqa: E402 - after the analytics switch and the log level
import great_expectations.expectations  # noqa: E402 - as above
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402

gx: Any = great_expectations
"""The ``great_expectations`` package."""
gxe: Any = great_expectations.expectations
"""The ``great_expectations.expectations`` module (the expectation classes)."""
PandasFrame = Any
"""A ``pandas.DataFrame``, the only batch type GX 1.24 reads in process (pandas has no
type information installed)."""

__all__ = ["PandasFrame", "ProgressBarsConfig", "gx", "gxe"]
