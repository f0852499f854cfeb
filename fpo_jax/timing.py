"""Wall and CPU time of a piece of host code (a run, a compile, an experiment)."""

from __future__ import annotations

import resource
import time


class Stopwatch:
    """Wall time since construction (or the last :meth:`restart`)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def restart(self) -> None:
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.start

    @staticmethod
    def cpu_seconds() -> float:
        """User + system CPU time of this process and its finished children."""
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def format_seconds(seconds: float) -> str:
    """'42 s', '17 min' or '2.5 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
