"""Every feature on every env family the README names, through the real CLI at tiny sizes.

For a built-in env, a Brax env and a MuMoCo Playground DM Control env: train two seeds with a run
directory and checkpoints, ``kill -9`` the same run part-way, move the run directory, resume it
from another working directory, and require the final state to equal the uninterrupted run's bit
for bit; then the evaluation records, loading the trained policy (``load_run``, ``export_policy``
/ ``load_policy``) and rendering it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import tiny_flags

import fpo_jax
from fpo_jax import envs, render
from fpo_jax.checkpoint import Checkpointer
from fpo_jax.runs import read_run_config
from fpo_jax.trainer import Trainer

FAMILIES = {
    "builtin": ["--env", "gridworld"],
    "brax": ["--env", "inverted_pendulum", "--backend", "spring"],
    "playground": ["--env", "CartpoleBalance"],
}
CALLS = 20  # each call of the compiled step is evaluated and checkpointed
STEPS_PER_CALL = 8 * 2 * 8  # batch_size * num_minibatches * unroll_length of the tiny layout
RUN_FLAGS = [
    *tiny_flags(),
    "--num-seeds", "2", "--num-evals", str(CALLS),
    "--num-timesteps", str(CALLS * STEPS_PER_CALL), "--no-progress",
]  # fmt: skip


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fpo_jax.train", *args],
        capture_output=True, text=True, timeout=900, cwd=cwd,
    )  # fmt: skip


def checkpoint_steps(run_dir: Path) -> list[int]:
    ckpts = run_dir / "checkpoints"
    if not ckpts.is_dir():
        return []
    return sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())


def final_state(run_dir: Path):
    config = read_run_config(run_dir)
    trainer = Trainer(envs.make_env(config.env, backend=config.backend), config)
    keys = jax.vmap(jax.random.PRNGKey)(np.arange(config.num_seeds))
    like = jax.eval_shape(jax.vmap(trainer.init), keys)
    return Checkpointer(run_dir / "checkpoints").restore(like=like)


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_train_kill_resume_evaluate_load_render(family, tmp_path):
    flags = [*FAMILIES[family], *RUN_FLAGS]
    straight = tmp_path / "straight"
    done = run_cli(*flags, "--run-dir", "straight", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    # The same run, killed with SIGKILL after a few checkpoints.
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fpo_jax.train", *flags, "--run-dir", str(killed)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
    )  # fmt: skip
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and max(
            checkpoint_steps(killed), default=0) < 3:  # fmt: skip
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert max(checkpoint_steps(killed)) < CALLS

    # Moved, then resumed from another working directory: the moved location is what counts.
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    shutil.move(killed, moved)
    resumed = run_cli("--resume", str(moved), "--no-progress", cwd=tmp_path / "elsewhere")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr
    assert not killed.exists()

    (a, step_a), (b, step_b) = final_state(straight), final_state(moved)
    assert step_a == step_b == CALLS
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)

    # Metrics: each call once, in order; wall time continues across the resume; every call
    # evaluated for both seeds.
    records = [json.loads(line) for line in (moved / "metrics.jsonl").read_text().splitlines()]
    assert [r["call"] for r in records] == list(range(CALLS + 1))
    wall = [r["wall_time"] for r in records]
    assert wall == sorted(wall)
    for r in records:
        assert len(r["per_member/eval/episode_return"]) == 2
        assert np.isfinite(r["eval/episode_return"])
    assert (moved / "learning_curve.png").stat().st_size > 0

    # The trained policy: from the run, and as a params-only artifact.
    run = fpo_jax.load_run(moved, member=1, noise="zero")
    assert run.step == CALLS and run.config.eval_noise == "zero"
    obs = jax.random.normal(jax.random.PRNGKey(0), (5, run.trainer.obs_size))
    actions = jax.jit(run.policy)(obs, jax.random.PRNGKey(1))
    assert actions.shape == (5, run.trainer.action_size)
    assert np.all(np.abs(actions) <= 1.0)
    artifact = fpo_jax.export_policy(moved, tmp_path / "policy.msgpack", member=1)
    loaded = fpo_jax.load_policy(artifact, noise="zero")
    np.testing.assert_allclose(loaded(obs, jax.random.PRNGKey(1)), actions, rtol=1e-5, atol=1e-6)

    # Rendering: the gridworld is drawn by us; MuJoCo envs need an OpenGL backend.
    if family == "builtin":
        states = render.rollout(run.env, run.policy, jax.random.PRNGKey(0), 10)
        frames = render.render_states(run.env, states)
        assert frames[0].ndim == 3 and frames[0].max() > 0
    else:
        out = tmp_path / "policy.mp4"
        proc = subprocess.run(
            [sys.executable, "-m", "fpo_jax.render", str(moved), "--out", str(out),
             "--episode-length", "10", "--no-stop-at-done", "--height", "48", "--width", "64"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if proc.returncode != 0 and "MuJoCo cannot render" in proc.stderr:
            pytest.skip(f"no OpenGL backend here: {proc.stderr.strip().splitlines()[-1]}")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert out.stat().st_size > 0
