"""Helpers shared by the experiment scripts: machine description, results header, markdown
tables and their cell formats, seed statistics, output folder and smoke mode. What the library
also needs lives in the library and is only used here or by the scripts: the standard error
(:mod:`fpo_jax.stats`), the compile cache (:mod:`fpo_jax.compile_cache`), timing
(:mod:`fpo_jax.timing`) and a compiled program's memory (:mod:`fpo_jax.memory`).

Every script writes ``experiments/results/<name>.md`` starting with :func:`results_header` (machine,
date, exact command, budget), so a committed result says where and how it was produced. With
``--smoke`` (see :func:`add_output_args`) a script runs at tiny sizes and writes to a folder under
``/tmp`` instead, so that smoke numbers never overwrite committed results.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "experiments" / "results"
SMOKE_DIR = Path(tempfile.gettempdir()) / "fpo_jax_smoke"
if str(REPO) not in sys.path:  # runnable as `python experiments/NAME.py` from a clean clone
    sys.path.insert(0, str(REPO))

from fpo_jax import compile_cache, timing  # noqa: E402
from fpo_jax.stats import mean_stderr  # noqa: E402, F401 - the scripts' seed statistics

# ----------------------------------------------------------------------------------------------
# Machine and run description


# The paper's DM Control layout scaled to 256 envs ("R1"): 128 x 32 minibatches of 30-step
# trajectories, 16 epochs, 122,880 env steps per iteration; and a tiny one for smoke runs.
R1_LAYOUT = dict(num_envs=256, batch_size=128, num_minibatches=32, unroll_length=30, num_epochs=16)
SMOKE_LAYOUT = dict(num_envs=32, batch_size=16, num_minibatches=4, unroll_length=8, num_epochs=2)


def command_line() -> str:
    """The exact command that started this process, shell-quoted."""
    return " ".join(["python", *(shlex.quote(a) for a in sys.argv)])


def load_average(digits: int = 1) -> str:
    """'1 / 5 / 15'-minute load averages, or 'unavailable'."""
    try:
        return " / ".join(f"{x:.{digits}f}" for x in os.getloadavg())
    except OSError:
        return "unavailable"


def package_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def machine_info() -> list[str]:
    """Markdown bullet lines: date, platform and CPU model, CPU count, versions, JAX devices."""
    import jax

    try:
        cpu_model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        cpu_model = platform.processor() or "unknown"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    versions = ", ".join(
        f"{d} {package_version(d)}"
        for d in ["jax", "jaxlib", "brax", "playground", "mujoco", "mujoco-mjx", "flax", "optax"]
    )
    return [
        f"- date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}",
        f"- machine: {platform.platform()}; CPU: {cpu_model}; `os.cpu_count()` = "
        f"{os.cpu_count()} (usable by this process: {usable})",
        f"- python {platform.python_version()}; {versions}",
        f"- `jax.devices()`: `{jax.devices()}`",
    ]


# Read when this module is imported, i.e. when a script starts: what "at the start" means.
def cpu_seconds() -> float:
    """CPU seconds of this process and of the subprocesses it has waited for (the CLI runs
    some scripts start)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


_PROCESS_START = {"load": None, "wall": time.time(), "cpu": cpu_seconds()}
_PROCESS_START["load"] = load_average()


def git_commit() -> str:
    """The checkout's commit (short hash) and whether its tracked files had changes, e.g.
    '0d43e5f (clean)' or '0d43e5f (uncommitted changes)'; 'unknown' outside a git checkout."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                              capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO, capture_output=True, text=True, check=True).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} ({'uncommitted changes' if dirty.strip() else 'clean'})"


def provenance() -> dict[str, Any]:
    """Who produced a piece of data, to store beside it: commit, command, device, the load
    average when this process started and now, and the process's wall and CPU seconds (its waited-for subprocesses' included)."""
    import jax

    return {
        "commit": git_commit(),
        "command": command_line(),
        "device": str(jax.devices()[0].device_kind if jax.devices() else "unknown"),
        "load_start": _PROCESS_START["load"],
        "load_end": load_average(),
        "wall_s": round(time.time() - _PROCESS_START["wall"], 1),
        "cpu_s": round(cpu_seconds() - _PROCESS_START["cpu"], 1),
    }


def provenance_until_now(started: dict[str, Any]) -> dict[str, Any]:
    """``started``, a :func:`provenance` record taken when measuring began (the commit and
    whether the tree was clean then, the command, the device, the load average at the start),
    with the load average, wall and CPU seconds of now, the end of measuring."""
    now = provenance()
    return {**started, **{k: now[k] for k in ("load_end", "wall_s", "cpu_s")}}


def stored_per_platform(stem: str) -> list[Path]:
    """The ``<stem>_<platform>.json`` files in :func:`out_dir` (one per JAX platform the script
    measured on): what a script that names its results by platform rebuilds with ``--report``."""
    return sorted(p for p in out_dir().glob(f"{stem}_*.json") if "_" not in p.stem[len(stem) + 1 :])


def results_per_platform(
    parser: argparse.ArgumentParser,
    stem: str,
    report_only: bool,
    measure: Callable[[], dict[str, Any]],
    report: Callable[[dict[str, Any]], str],
) -> None:
    """Measure (unless ``report_only``) into ``<stem>_<platform>.json``, then write the table of
    every stored ``<stem>_<platform>.json`` (:func:`stored_per_platform`) from its JSON alone,
    as ``<stem>_<platform>.md``. ``measure()`` returns the data, with its ``"platform"``."""
    if report_only:
        paths = stored_per_platform(stem)
        if not paths:
            parser.error(f"no stored {stem}_<platform>.json in {out_dir()}")
    else:
        data = measure()
        paths = [out_dir() / f"{stem}_{data['platform']}.json"]
        write_file(paths[0], json.dumps(data, indent=1))
    for path in paths:
        text = report(json.loads(path.read_text()))
        print(text)
        write_result(f"{path.stem}.md", text)


def provenance_lines(records: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown bullets naming the runs that produced a table's data (one per distinct
    commit and command), from :func:`provenance` records stored with the data."""
    seen, lines = set(), []
    for r in records:
        key = (r.get("commit"), r.get("command"))
        if key in seen:
            continue
        seen.add(key)
        times = f"; {r['wall_s']} s wall, {r['cpu_s']} s CPU" if r.get("wall_s") is not None else ""
        lines.append(
            f"- data from `{r.get('command')}` at commit {r.get('commit')} on {r.get('device')}: "
            f"load average (1/5/15 min) {r.get('load_start')} at its start, {r.get('load_end')} "
            f"at its end{times}"
        )
    return lines


def results_header(
    title: str,
    budget: str,
    budget_details: Sequence[str] = (),
    data: Sequence[dict[str, Any]] = (),
) -> str:
    """Markdown header: title, machine (:func:`machine_info`), this process's commit, load at
    its start and now, command, budget; ``data``: the :func:`provenance` records of the runs
    whose data the file reports (a report rebuilt later names them, not itself)."""
    lines = [
        f"# {title}",
        "",
        *machine_info(),
        f"- commit: {git_commit()}",
        f"- load average (1/5/15 min) at the start of this process: {_PROCESS_START['load']}; "
        f"when this file was written: {load_average()}",
        f"- command: `{command_line()}`",
        f"- budget: **{budget}**",
    ]
    lines += [f"  - {d}" for d in budget_details]
    lines += provenance_lines(data)
    if _CACHE_NOTE:
        lines.append(f"- {_CACHE_NOTE[0]}")
    return "\n".join(lines) + "\n"


class Stopwatch(timing.Stopwatch):
    """:class:`fpo_jax.timing.Stopwatch` with the 'wall time' line of each result."""

    def line(self) -> str:
        return (
            f"Wall time of this run: {self.seconds():.0f} s (CPU time {self.cpu_seconds():.0f} s; "
            f"load average at the end, 1/5/15 min: {load_average()}; other processes share the "
            "cores when it exceeds their number).\n"
        )


_CACHE_NOTE: list[str] = []


def enable_compilation_cache() -> str:
    """Turn on JAX's persistent compilation cache (:func:`fpo_jax.compile_cache.enable`);
    returns a sentence for the results header.

    Identical programs then compile once per script run: e.g. FPO and DPPO on one task share
    their init and evaluation programs. By default the cache is a fresh temporary directory,
    deleted at exit, so every invocation (and its reported wall time) starts cold; set
    ``FPO_EXPERIMENTS_CACHE_DIR`` to keep one across invocations.
    """
    import atexit
    import shutil

    path = os.environ.get("FPO_EXPERIMENTS_CACHE_DIR")
    note = f"persistent XLA cache {path} (FPO_EXPERIMENTS_CACHE_DIR; may be warm)"
    if not path:
        path = tempfile.mkdtemp(prefix="fpo_jax_xla_cache_")
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        note = (
            "XLA compilation cache: a fresh temporary directory (cold start, reused within the run)"
        )
    _CACHE_NOTE[:] = [note]
    compile_cache.enable(path)
    return note


def disable_compilation_cache() -> str:
    """Turn JAX's persistent compilation cache off (:func:`fpo_jax.compile_cache.disable`);
    returns a sentence for the results header.

    For timings that include compilation: every program then compiles in full, however many
    times an identical one compiled before in this process or another.
    """
    compile_cache.disable()
    _CACHE_NOTE[:] = ["XLA persistent compilation cache: off (every run compiles every program)"]
    return _CACHE_NOTE[0]


# ----------------------------------------------------------------------------------------------
# Seed statistics


def fmt_difference(a: Any, b: Any) -> str:
    """'difference ± s.e.': the mean of ``a`` minus the mean of ``b``, with the two standard
    errors combined (independent samples)."""
    (mean_a, se_a), (mean_b, se_b) = mean_stderr(a), mean_stderr(b)
    return f"{mean_a - mean_b:+.0f} ± {np.hypot(se_a, se_b):.0f}"


def fmt_pm(values: Any, digits: int = 1) -> str:
    """'mean ± stderr' of the values (:func:`fpo_jax.stats.mean_stderr`: ddof=1); one value
    alone, which has no spread to show."""
    m, s = mean_stderr(values)
    if not np.isfinite(m):
        return "n/a"
    if np.size(values) == 1:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def eval_curve(history: list[dict[str, Any]], num_seeds: int) -> tuple[np.ndarray, np.ndarray]:
    """Eval points of a train() history: env_steps (E,) and per-seed returns (E, num_seeds).

    train() records every member's (here: seed's) return as ``per_member/eval/episode_return``.
    """
    evals = [r for r in history if r.get("eval/episode_return") is not None]
    steps = np.array([r["env_steps"] for r in evals], dtype=np.int64)
    returns = [r["per_member/eval/episode_return"] for r in evals]
    return steps, np.array(returns, dtype=np.float64).reshape(len(evals), num_seeds)


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


def _finite(x: float | None) -> bool:
    return x is not None and bool(np.isfinite(x))


def fmt_rate(x: float | None) -> str:
    """A rate with thousands separators, '-' when missing."""
    return f"{x:,.0f}" if _finite(x) else "-"


def fmt_s(x: float | None, digits: int = 1) -> str:
    """Seconds (or any float) with ``digits`` decimals, '-' when missing."""
    return f"{x:.{digits}f}" if _finite(x) else "-"


def fmt_ratio(a: float | None, b: float | None) -> str:
    """a / b with 2 decimals, '-' when either is missing or b is 0."""
    return f"{a / b:.2f}" if _finite(a) and _finite(b) and b else "-"


def fmt_mib(nbytes: float | None) -> str:
    """Bytes as MiB with 1 decimal, '-' when missing."""
    return f"{nbytes / 2**20:.1f}" if _finite(nbytes) else "-"


# ----------------------------------------------------------------------------------------------
# Where results go; smoke mode


_OUT_DIR: list[Path] = [RESULTS]


def add_output_args(parser: argparse.ArgumentParser, smoke: str) -> None:
    """``--smoke`` (tiny sizes, described by ``smoke``) and ``--out-dir``."""
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"smoke run: {smoke}; writes to {SMOKE_DIR}/<script> unless --out-dir is given",
    )
    parser.add_argument(
        "--out-dir",
        default=None,
        help="folder for the tables and figures (default: experiments/results; with --smoke, "
        f"{SMOKE_DIR}/<script>)",
    )


def set_out_dir(args: argparse.Namespace, smoke: bool = False) -> Path:
    """The folder chosen by :func:`add_output_args`'s flags; write_result and save_figure use it.

    ``smoke``: a smoke-sized run chosen another way (e.g. ``--budget smoke``) goes to the smoke
    folder too.
    """
    if args.out_dir:
        path = Path(args.out_dir)
    elif args.smoke or smoke:
        path = SMOKE_DIR / Path(sys.argv[0]).stem
    else:
        path = RESULTS
    _OUT_DIR[0] = path
    return path


def parse_args(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    smoke: str,
    smoke_budget: str | None = None,
) -> argparse.Namespace:
    """Add ``--smoke`` / ``--out-dir`` (:func:`add_output_args`), parse, set the output folder.

    With ``smoke_budget``, ``--smoke`` selects ``--budget smoke_budget``, and that budget goes to
    the smoke folder however it was chosen.
    """
    add_output_args(parser, smoke)
    args = parser.parse_args(argv)
    if smoke_budget is not None and args.smoke:
        args.budget = smoke_budget
    set_out_dir(args, smoke=smoke_budget is not None and args.budget == smoke_budget)
    return args


def out_dir() -> Path:
    return _OUT_DIR[0]


def write_bytes(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` (bytes, or text) to ``path`` (creating its folder) and say so on stdout."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    _say_wrote(path)
    return path


def write_file(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` (creating its folder) and say so on stdout."""
    return write_bytes(path, text)


def write_result(name: str, text: str) -> Path:
    """Write ``<out_dir()>/<name>`` (default ``experiments/results/<name>``)."""
    return write_file(out_dir() / name, text)


def _say_wrote(path: Path) -> None:
    path = path.resolve()
    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    print(f"wrote {shown}", flush=True)


def pyplot():
    """matplotlib.pyplot with the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, name: str) -> Path:
    """Save ``fig`` as ``<out_dir()>/<name>`` and close it."""
    path = out_dir() / name
    path.parent.mkdir(parents=True, exist_ok=True)
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


def label_return_axes(ax: Any, title: str, legend_size: int = 7) -> None:
    """Title, 'env steps' / 'eval return' labels, a light grid and the legend."""
    ax.set_title(title)
    ax.set_xlabel("env steps")
    ax.set_ylabel("eval return")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# Brax

SHIM_NOTES: list[str] = []


def install_brax_shims() -> None:
    """PyPI brax 0.14.2 calls jax.device_put_replicated, removed in jax 0.10.2 (google/brax#671)."""
    import jax
    import jax.numpy as jnp

    if hasattr(jax, "device_put_replicated"):
        return

    def device_put_replicated(x: Any, devices: list[Any]) -> Any:
        # Stack one copy per device, then place it with an identity pmap over Brax's axis name
        # "i": the result then carries exactly the sharding of the outputs of Brax's pmapped
        # training epoch. With any other sharding (a plain device_put, or a pmap over another
        # axis name) jax 0.10.2 compiles that epoch a second time on its second call.
        stacked = jax.tree.map(lambda a: jnp.stack([jnp.asarray(a)] * len(devices)), x)
        return jax.pmap(lambda t: t, axis_name="i", devices=devices)(stacked)

    jax.device_put_replicated = device_put_replicated
    SHIM_NOTES.append(
        "`jax.device_put_replicated` (removed in jax 0.10.2, called by PyPI brax 0.14.2's PPO, "
        "google/brax#671) is defined for this process only, as an identity `jax.pmap(axis_name="
        "'i')` over `stack([x] * n_devices)`. Placing the replicated train state with a plain "
        "`device_put` instead works too, but makes jax compile Brax's training epoch twice (the "
        "first call's input sharding differs from later calls'): a first attempt measured that "
        "second compile as 'steady-state' time. Nothing else in Brax's PPO needed changing."
    )
