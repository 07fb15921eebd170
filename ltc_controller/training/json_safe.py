"""Summaries and configs as strict JSON (one helper for every writer of ``summary.json`` files)."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["json_safe"]


def json_safe(x: Any) -> Any:
    """``x`` with tuples as lists and NaN / infinities as None, recursively through dicts and
    lists (``json.dumps(..., allow_nan=False)`` accepts the result; other values pass as they
    are)."""
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
