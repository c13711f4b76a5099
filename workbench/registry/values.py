"""How floats are stored: SQLite has no NaN (it would store NULL anyway), so NaN is stored as NULL and
read back as NaN."""

from __future__ import annotations

import math


def float_or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def stored_float(value: float) -> float | None:
    number = float(value)
    return None if math.isnan(number) else number
