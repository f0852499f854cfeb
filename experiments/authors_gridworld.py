"""Train the FPO authors' own GridWorld FPO (PyTorch) for a fixed budget and seed.

Experiments-only requirement: CPU PyTorch (``pip install torch==2.13.0``; an unpinned ``torch``
pulls a CUDA build of several GB) plus ``gymnasium``, next to a checkout of the authors'
repository (its ``gridworld/`` folder, commit 418c255). Nothing of theirs is copied here: their
modules are imported from the checkout and driven through their own classes.

What this driver sets from outside, and why:

* their ``main.py`` hyperparameters (2048 steps per batch, 10 epochs, lr 3e-4, clip 0.2,
  N = 50, gamma 0.99, their PPO defaults for lambda, minibatches and gradient clipping), with
  ``render=False`` and their own ``seed`` option (``torch.manual_seed``); ``numpy.random`` (their
  minibatch shuffle) and the env's generator (``env.reset(seed=...)``) are seeded here;
* ``learn(total_timesteps=200_000_000)`` as their ``main.py`` calls it, so the learning rate
  stays as released (its linear decay over 200M steps is < 0.5 % at 1M). Their package logs
  through ``wandb`` at the end of every iteration; a stand-in ``wandb`` module (the one runtime
  patch, unavoidable: ``wandb`` is a hard import of theirs and the loop has no other exit) records
  the logs and stops ``learn`` after the first iteration whose step count reaches the budget;
* the working directory: a temporary folder, since ``learn`` saves ``./fpo_actor.pth`` every
  10 iterations.

``train_authors(repo, steps, seed)`` returns the trained actor's layers as numpy arrays
(``{"layer1.weight": (64, 5), ...}``; input ``concat(obs, x_t, t)`` with t = 0 noise, 1 action)
and the per-iteration log.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import numpy as np

# Their main.py settings; the rest (lambda 0.98, 6 minibatches, grad-norm clip 0.5, no entropy)
# are their PPO class defaults and stay untouched.
AUTHORS_HYPERPARAMETERS = dict(
    timesteps_per_batch=2048,
    max_timesteps_per_episode=200,
    gamma=0.99,
    n_updates_per_iteration=10,
    lr=3e-4,
    clip=0.2,
    render=False,
    num_fpo_samples=50,
    positive_advantage=False,
)
AS_RELEASED_TOTAL = 200_000_000  # their main.py's learn(total_timesteps=...)


class BudgetReached(Exception):
    """Raised by the stand-in wandb when an iteration's step count reaches the budget."""


def _stand_in_wandb(budget: int, log: list[dict[str, Any]]) -> types.ModuleType:
    mod = types.ModuleType("wandb")

    def _log(data: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        if "timesteps_so_far" in data:  # their per-iteration summary
            log.append(dict(data))
            if data["timesteps_so_far"] >= budget:
                raise BudgetReached

    mod.log = _log
    mod.init = mod.save = lambda *a, **k: None
    mod.Histogram = lambda *a, **k: None
    return mod


def train_authors(repo: str | Path, steps: int, seed: int) -> tuple[dict, list[dict]]:
    """Train their GridWorld FPO for >= ``steps`` env steps (whole 2048-step iterations)."""
    import matplotlib

    matplotlib.use("Agg")  # their env builds a figure in its constructor
    import torch

    torch.set_num_threads(1)
    root = str(Path(repo).resolve() / "gridworld")
    log: list[dict[str, Any]] = []
    sys.modules["wandb"] = _stand_in_wandb(steps, log)
    if root not in sys.path:
        sys.path.insert(0, root)
    from models.diffusion_policy import DiffusionPolicy
    from models.fpo import FPO
    from models.network import FeedForwardNN
    from utils.gridworld import GridWorldEnv

    np.random.seed(seed)  # noqa: NPY002 (their minibatch shuffle uses the global generator)
    env = GridWorldEnv(mode="two_walls")
    env.reset(seed=seed)
    model = FPO(
        actor_class=DiffusionPolicy,
        critic_class=FeedForwardNN,
        env=env,
        seed=seed,
        **AUTHORS_HYPERPARAMETERS,
    )
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(open(os.devnull, "w")):
        os.chdir(tmp)
        try:
            model.learn(total_timesteps=AS_RELEASED_TOTAL)
        except BudgetReached:
            pass
        finally:
            os.chdir(cwd)
    env.close()
    weights = {k: v.detach().cpu().numpy() for k, v in model.actor.state_dict().items()}
    return weights, log


def main() -> None:
    """``python experiments/authors_gridworld.py REPO STEPS SEED OUT.npz``: one run to a file."""
    repo, steps, seed, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    t0 = time.perf_counter()
    weights, log = train_authors(repo, steps, seed)
    np.savez(
        out,
        wall_s=time.perf_counter() - t0,
        env_steps=log[-1]["timesteps_so_far"],
        returns=np.array([d["avg_episode_return"] for d in log]),
        **{f"actor/{k}": v for k, v in weights.items()},
    )
    print(f"seed {seed}: {log[-1]['timesteps_so_far']} steps, {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
