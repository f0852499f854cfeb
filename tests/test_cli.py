"""The CLI as a user runs it: a real subprocess, real checkpoints on disk, kill -9 and resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from fpo_jax import envs
from fpo_jax.checkpoint import Checkpointer
from fpo_jax.config import TrainConfig
from fpo_jax.trainer import Trainer

# A run of 40 short calls, evaluated and checkpointed after every one of them.
FLAGS = (
    "--env gridworld --num-envs 16 --batch-size 16 --num-minibatches 2 --num-epochs 1 "
    "--unroll-length 8 --num-eval-envs 8 --policy-hidden 16 16 --value-hidden 32 32 "
    "--num-pairs 4 --flow-steps 4 --eval-flow-steps 4 --num-timesteps 10240 --num-evals 40 "
    "--no-progress"
).split()


def run_cli(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "fpo_jax.train", *args],
        capture_output=True, text=True, timeout=600, **kwargs,
    )  # fmt: skip


def checkpoint_steps(run_dir: Path) -> list[int]:
    ckpts = run_dir / "checkpoints"
    if not ckpts.exists():
        return []
    return sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())


def final_state(run_dir: Path):
    config = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    trainer = Trainer(envs.make_env(config.env), config)
    keys = jax.vmap(jax.random.PRNGKey)(np.arange(config.num_seeds))
    like = jax.eval_shape(jax.vmap(trainer.init), keys)
    return Checkpointer(run_dir / "checkpoints").restore(like=like)[0]


def test_kill_9_and_resume_ends_bit_for_bit_like_an_uninterrupted_run(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = run_cli(*FLAGS, "--run-dir", str(straight))
    assert done.returncode == 0, done.stderr

    proc = subprocess.Popen(
        [sys.executable, "-m", "fpo_jax.train", *FLAGS, "--run-dir", str(killed)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if len(checkpoint_steps(killed)) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    interrupted_at = checkpoint_steps(killed)[-1]
    assert interrupted_at < 40

    resumed = run_cli("--resume", str(killed))
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr

    a, b = final_state(straight), final_state(killed)
    assert int(a.iteration) == int(b.iteration) == 40
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    # The metrics file has each call once, in order, as if never interrupted.
    calls = [
        json.loads(line)["call"] for line in (killed / "metrics.jsonl").read_text().splitlines()
    ]
    assert calls == list(range(41))
    assert (killed / "learning_curve.png").stat().st_size > 0


def test_resume_with_a_conflicting_config_fails_before_compiling(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = TrainConfig(env="gridworld", num_envs=16, batch_size=16)
    (run_dir / "config.json").write_text(config.to_json())
    out = run_cli("--resume", str(run_dir), "--num-epochs", "7")
    assert out.returncode == 2
    assert "Cannot resume with a config that changes what is computed (num_epochs" in out.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--env", "antt"], "closest valid names: ant"),
        (["--env", "CartpoleBalanc"], "CartpoleBalance"),
        (["--env", "ant", "--num-envs", "3000"], "must be a multiple of num_envs"),
        (["--env", "gridworld", "--learning-rate", "-1"], "learning_rate must be positive"),
    ],
)
def test_bad_input_fails_at_once_with_one_clear_sentence(args, message):
    out = run_cli(*args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_help_lists_every_flag_with_the_preset_defaults():
    out = run_cli("--env", "CheetahRun", "--help")
    assert out.returncode == 0
    for flag in ["--num-timesteps", "--algo", "--resume", "--run-dir", "--num-pairs",
                 "--trust-region", "--eval-noise", "--seed"]:  # fmt: skip
        assert flag in out.stdout
    assert "60000000" in out.stdout  # the DM Control preset's budget is the default shown
