"""Statistics over seeds (host side, NumPy): the mean and its standard error.

One definition for the library (the spread of a run's seeds in ``metrics.jsonl``) and the
experiment scripts' tables, so that their error bars mean the same thing.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def mean_stderr(values: Any) -> tuple[float, float]:
    """Mean and standard error of the mean of ``values`` (any shape, flattened).

    The standard error is the *sample* standard deviation (``ddof=1``) over ``sqrt(n)``; it is
    0 for one value. NaNs are dropped first (a seed that produced no finite value, e.g. a
    diverged member, does not count); both are NaN when nothing finite is left.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    if v.size == 1:
        return float(v[0]), 0.0
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size))
