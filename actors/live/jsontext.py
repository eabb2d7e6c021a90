"""JSON text for clients (live-feed frames, and REST answers: the API hosts the feed) from values that may hold NaN.

Device values can be NaN or infinite (a float register full of garbage); JSON has no such
numbers, so they are sent as null rather than as invalid JSON or an error.
"""

from __future__ import annotations

import json
import math
from typing import Any


def json_text(data: Any, compact: bool = False) -> str:
    """`data` as JSON; non-finite floats anywhere inside become null."""
    separators = (",", ":") if compact else None
    try:
        return json.dumps(data, allow_nan=False, separators=separators, default=str)
    except ValueError:  # NaN/Infinity from a device value: not JSON, send null instead
        return json.dumps(finite(data), allow_nan=False, separators=separators, default=str)


def finite(value: Any) -> Any:
    """A copy of `value` with every non-finite float replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value
