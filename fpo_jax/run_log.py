"""Host-side run records: metrics.jsonl, optional TensorBoard / Weights & Biases, learning curve.

Nothing here enters jitted code.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def to_python(value: Any) -> Any:
    """Arrays -> floats / lists so a metrics dict is JSON-serialisable (NaN -> None)."""
    arr = np.asarray(value)
    if arr.ndim == 0:
        x = arr.item()
        if isinstance(x, float) and not math.isfinite(x):
            return None
        return x
    return [to_python(v) for v in arr]


class MetricsWriter:
    """Append one JSON line per record to ``run_dir/metrics.jsonl`` (and TensorBoard / W&B).

    Args:
      run_dir: the run directory, or None to keep records in memory only.
      tensorboard: also write TensorBoard scalars (needs ``pip install fpo_jax[tensorboard]``).
      wandb_project: also log to this Weights & Biases project (needs ``fpo_jax[wandb]``).
      config: logged to W&B as the run config.
      loggers: the user's own, any objects with ``write(record)`` (and optionally ``close()``),
        given each record as plain Python values (numbers, lists of per-member values).
    """

    def __init__(
        self,
        run_dir: Path | None,
        *,
        tensorboard: bool = False,
        wandb_project: str | None = None,
        config: dict[str, Any] | None = None,
        loggers: Sequence[Any] = (),
    ):
        self.loggers = list(loggers)
        self.path = None if run_dir is None else Path(run_dir) / "metrics.jsonl"
        self.history: list[dict[str, Any]] = []
        self._tb = None
        self._wandb = None
        if tensorboard and run_dir is not None:
            try:
                from tensorboardX import SummaryWriter
            except ImportError as e:
                raise ImportError(
                    "--tensorboard needs tensorboardX: pip install 'fpo_jax[tensorboard]'."
                ) from e
            self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
        if wandb_project is not None:
            try:
                import wandb
            except ImportError as e:
                raise ImportError(
                    "--wandb-project needs wandb: pip install 'fpo_jax[wandb]'."
                ) from e
            self._wandb = wandb.init(project=wandb_project, config=config)

    def load_existing(self, max_env_steps: int) -> None:
        """On resume: keep the records up to the checkpoint, drop any written after it."""
        if self.path is None or not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                if record["env_steps"] <= max_env_steps:
                    kept.append(record)
        self.history = kept
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def write(self, record: dict[str, Any]) -> None:
        record = {k: to_python(v) for k, v in record.items()}
        self.history.append(record)
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        step = record["env_steps"]
        scalars = {k: v for k, v in record.items() if isinstance(v, (int, float))}
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, v, step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log(scalars, step=step)
        for logger in self.loggers:
            logger.write(dict(record))

    def close(self) -> None:
        for logger in self.loggers:
            if hasattr(logger, "close"):
                logger.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def plot_learning_curve(
    history: list[dict[str, Any]],
    path: Path,
    title: str = "",
    members: list[dict[str, Any]] | None = None,
) -> Path | None:
    """Eval return against env steps, saved as a PNG.

    One line per sweep setting (the mean over its seeds, each seed thin beside it); without a
    sweep, the mean over seeds with each seed thin. ``members``: each member's settings (as in
    ``members.json``), in the order of the ``per_member/eval/episode_return`` lists.
    """
    # A bare Figure (no pyplot): drawing a file must not switch a notebook's backend.
    from matplotlib.figure import Figure

    evals = [r for r in history if r.get("eval/episode_return") is not None]
    if not evals:
        return None
    steps = [r["env_steps"] for r in evals]
    per_member = [r.get("per_member/eval/episode_return") for r in evals]
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    if members and all(isinstance(p, list) and len(p) == len(members) for p in per_member):
        curves = np.asarray(per_member, dtype=float).T  # (members, evals)
        settings: dict[str, list[int]] = {}
        for i, m in enumerate(members):
            label = ", ".join(f"{k}={v:g}" for k, v in m.items() if k != "seed") or "mean"
            settings.setdefault(label, []).append(i)
        for n, (label, rows) in enumerate(settings.items()):
            color = f"C{n % 10}"
            for row in rows if len(rows) > 1 else []:
                ax.plot(steps, curves[row], color=color, alpha=0.25, lw=1)
            ax.plot(steps, np.nanmean(curves[rows], axis=0), color=color, lw=2, marker="o",
                    label=label)  # fmt: skip
        if len(settings) > 1:
            ax.legend(fontsize=7)
    else:
        ax.plot(steps, [r["eval/episode_return"] for r in evals], color="C0", lw=2, marker="o")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("eval episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path
