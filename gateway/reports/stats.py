"""Median and 90th percentile as the center reads them: nearest rank, on the values there are."""
from __future__ import annotations

import math
import statistics


def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 2) if values else None


def p90(values) -> float | None:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    return round(values[max(0, math.ceil(0.9 * len(values)) - 1)], 2)


def rate(flags) -> float | None:
    """Share of True among the judged (True / False); None when nothing was judged."""
    judged = [f for f in flags if f is not None]
    return round(sum(1 for f in judged if f) / len(judged), 4) if judged else None
