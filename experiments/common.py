"""Helpers shared by the experiment scripts: results header, markdown tables, seed statistics.

Every script writes ``experiments/results/<name>.md`` starting with :func:`results_header` (machine,
date, exact command, budget), so a committed result says where and how it was produced.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "experiments" / "results"
if str(REPO) not in sys.path:  # runnable as `python experiments/NAME.py` from a clean clone
    sys.path.insert(0, str(REPO))


# ----------------------------------------------------------------------------------------------
# Machine and run description


def command_line() -> str:
    """The exact command that started this process, shell-quoted."""
    return " ".join(["python", *(shlex.quote(a) for a in sys.argv)])


def results_header(title: str, budget: str, budget_details: Sequence[str] = ()) -> str:
    """Markdown header: title, date, machine (platform, CPU count, JAX devices), command, budget."""
    import jax

    try:
        load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        load = "unavailable"
    lines = [
        f"# {title}",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}",
        f"- machine: {platform.platform()}, `os.cpu_count()` = {os.cpu_count()}, "
        f"load average at the start (1/5/15 min): {load}",
        f"- `jax.devices()`: `{jax.devices()}` (jax {jax.__version__})",
        f"- command: `{command_line()}`",
        f"- budget: **{budget}**",
    ]
    lines += [f"  - {d}" for d in budget_details]
    if _CACHE_NOTE:
        lines.append(f"- {_CACHE_NOTE[0]}")
    return "\n".join(lines) + "\n"


class Stopwatch:
    """Wall time since construction, for the 'wall time' line of each result."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.start

    @staticmethod
    def cpu_seconds() -> float:
        """User + system CPU time of this process and its finished children."""
        import resource

        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    def line(self) -> str:
        try:
            load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
        except OSError:
            load = "unavailable"
        return (
            f"Wall time of this run: {self.seconds():.0f} s (CPU time {self.cpu_seconds():.0f} s; "
            f"load average at the end, 1/5/15 min: {load}; other processes share the cores "
            "when it exceeds their number).\n"
        )


_CACHE_NOTE: list[str] = []


def enable_compilation_cache() -> str:
    """Turn on JAX's persistent compilation cache; returns a sentence for the results header.

    Identical programs then compile once per script run: e.g. FPO and DPPO on one task share
    their init and evaluation programs. By default the cache is a fresh temporary directory,
    deleted at exit, so every invocation (and its reported wall time) starts cold; set
    ``FPO_EXPERIMENTS_CACHE_DIR`` to keep one across invocations.
    """
    import atexit
    import shutil
    import tempfile

    import jax

    path = os.environ.get("FPO_EXPERIMENTS_CACHE_DIR")
    note = f"persistent XLA cache {path} (FPO_EXPERIMENTS_CACHE_DIR; may be warm)"
    if not path:
        path = tempfile.mkdtemp(prefix="fpo_jax_xla_cache_")
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        note = (
            "XLA compilation cache: a fresh temporary directory (cold start, reused within the run)"
        )
    _CACHE_NOTE[:] = [note]
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    return note


# ----------------------------------------------------------------------------------------------
# Seed statistics


def mean_stderr(values: Any) -> tuple[float, float]:
    """Mean and standard error (sample std with ddof=1 over sqrt(n); 0 for one value).

    NaNs are dropped first (a seed that produced no finite value does not count).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    if v.size == 1:
        return float(v[0]), 0.0
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size))


def fmt_pm(values: Any, digits: int = 1) -> str:
    """'mean ± stderr' of the values (see :func:`mean_stderr`)."""
    m, s = mean_stderr(values)
    if not np.isfinite(m):
        return "n/a"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def eval_curve(history: list[dict[str, Any]], num_seeds: int) -> tuple[np.ndarray, np.ndarray]:
    """Eval points of a train() history: env_steps (E,) and per-seed returns (E, num_seeds)."""
    evals = [r for r in history if r.get("eval/episode_return") is not None]
    steps = np.array([r["env_steps"] for r in evals], dtype=np.int64)
    if num_seeds > 1:
        returns = np.array([r["per_seed/eval/episode_return"] for r in evals], dtype=np.float64)
    else:
        returns = np.array([[r["eval/episode_return"]] for r in evals], dtype=np.float64)
    return steps, returns.reshape(len(evals), num_seeds)


def final_and_best(returns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed final and best eval return of an (E, seeds) curve (the untrained eval excluded
    from 'best' when there are later ones)."""
    trained = returns[1:] if returns.shape[0] > 1 else returns
    return returns[-1], np.nanmax(trained, axis=0)


# ----------------------------------------------------------------------------------------------
# Output


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> str:
    """A GitHub markdown table; ``align`` is one char per column ('l' or 'r', default 'l')."""
    align = align or "l" * len(headers)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", "|" + "|".join(sep) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_result(name: str, text: str) -> Path:
    """Write ``experiments/results/<name>`` and say so on stdout."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(text)
    _say_wrote(path)
    return path


def _say_wrote(path: Path) -> None:
    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    print(f"wrote {shown}", flush=True)


def pyplot():
    """matplotlib.pyplot with the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, name: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    _say_wrote(path)
    return path


def plot_curves(ax: Any, steps: np.ndarray, returns: np.ndarray, label: str, color: str) -> None:
    """Mean over seeds with a ± standard-error band; returns is (E, seeds)."""
    stats = np.array([mean_stderr(r) for r in returns])
    ax.plot(steps, stats[:, 0], label=label, color=color, marker="o", ms=3)
    ax.fill_between(
        steps, stats[:, 0] - stats[:, 1], stats[:, 0] + stats[:, 1], color=color, alpha=0.2
    )


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
