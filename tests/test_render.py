"""Rendering: the ``python -m fpo_jax.render`` CLI on a real Brax env, and the Python helpers.

Run directories are written the way ``fpo_jax.train`` writes them (``config.json`` plus an orbax
checkpoint of the whole train state) but hold a synthetic state of the right structure: compiling
a training step (or even ``init``) costs a minute or more on a small CPU and adds nothing to what
rendering reads.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY

import fpo_jax
from fpo_jax import envs, render
from fpo_jax.checkpoint import Checkpointer
from fpo_jax.config import TrainConfig
from fpo_jax.trainer import Trainer, TrainState

REPO = Path(__file__).resolve().parents[1]

# The shared tiny layout (only the state's structure matters for rendering); each test sets
# its own episode length.
SMALL = {k: v for k, v in TINY.items() if k != "episode_length"}


def write_run(run_dir: Path, config: TrainConfig) -> TrainState:
    """A run directory as train.py writes it, holding a synthetic train state; returns the state.

    The state has the exact structure of ``train``'s (a leading seed axis) but is filled without
    running ``init``, which would cost a compile: random floats (scaled down, so the policy stays
    tame), zero integers, and empty observation statistics.
    """
    trainer = Trainer(envs.make_env(config.env, backend=config.backend, impl=config.impl), config)
    seeds = jnp.arange(config.seed, config.seed + config.num_seeds)
    abstract = jax.eval_shape(jax.vmap(trainer.init), jax.vmap(jax.random.PRNGKey)(seeds))
    rng = np.random.default_rng(config.seed)

    def fill(x):
        if jnp.issubdtype(x.dtype, jnp.floating):
            return jnp.asarray(0.1 * rng.standard_normal(x.shape), x.dtype)
        return jnp.zeros(x.shape, x.dtype)

    state = jax.tree.map(fill, abstract)
    stats = jax.tree.map(jnp.zeros_like, state.obs_stats)  # count 0: no normalisation
    state = state.replace(obs_stats=stats, iteration=jnp.full_like(state.iteration, 3))
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(config.to_json())
    ckpt = Checkpointer(run_dir / "checkpoints")
    ckpt.save(3, state)
    ckpt.close()
    return state


@pytest.mark.slow
def test_cli_writes_mp4_of_brax_episode(tmp_path):
    config = TrainConfig(
        env="inverted_pendulum", backend="spring", episode_length=50, run_dir=str(tmp_path), **SMALL
    )
    write_run(tmp_path, config)
    out = tmp_path / "x.mp4"
    env = {k: v for k, v in os.environ.items() if k != "MUJOCO_GL"}  # the module's default
    proc = subprocess.run(
        [sys.executable, "-m", "fpo_jax.render", str(tmp_path), "--out", str(out),
         "--episode-length", "20", "--no-stop-at-done", "--height", "64", "--width", "96"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if proc.returncode != 0 and "MuJoCo cannot render" in proc.stderr:
        pytest.skip(f"no OpenGL backend for MuJoCo here: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr
    assert "21 frames" in proc.stderr

    import mediapy

    video = mediapy.read_video(out)
    assert video.shape == (21, 64, 96, 3)  # the initial state + 20 steps
    assert video.metadata.fps == pytest.approx(
        1.0 / float(envs.make_env("inverted_pendulum", backend="spring").dt)
    )
    assert video.max() > 0  # not a black screen


def test_cli_reports_missing_run(tmp_path):
    assert render.main([str(tmp_path / "nothing")]) == 2


def test_load_run_multi_seed_and_gridworld_frames(tmp_path):
    config = TrainConfig(env="gridworld", episode_length=30, num_seeds=2, seed=5, **SMALL)
    saved = write_run(tmp_path, config)
    run = fpo_jax.load_run(tmp_path, member=1)
    assert run.step == 3
    want = jax.tree.map(lambda x: x[1], saved.params["policy"])
    jax.tree.map(np.testing.assert_array_equal, run.state.params["policy"], want)

    states = render.rollout(run.env, run.policy, jax.random.PRNGKey(0), 30)
    frames = render.render_states(run.env, states)
    assert len(frames) == len(states) <= 31
    assert frames[0].shape == (250, 250, 3) and frames[0].dtype == np.uint8
    if len(states) < 31:  # stopped at the goal: the last state is done
        assert states[-1].done == 1


def test_bandit_has_nothing_to_render():
    bandit = envs.make_env("bandit")
    with pytest.raises(render.RenderError, match="MuJoCo-based env"):
        render.render_policy(bandit, lambda obs, key: jnp.zeros(1), jax.random.PRNGKey(0), 1)
