"""Scale-out: 1 vs 4 devices, two processes with jax.distributed, K seeds in one program."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from fpo_jax import envs
from fpo_jax.config import TrainConfig
from fpo_jax.trainer import Trainer

SCRIPTS = Path(__file__).parent / "scripts"


@pytest.mark.slow
def test_four_devices_train_like_one(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    out = subprocess.run(
        [sys.executable, str(SCRIPTS / "sharded_vs_single.py")],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["devices"] == 4
    assert result["env_state_devices"] == 4  # the env batch really is split over 4 devices
    np.testing.assert_allclose(result["sharded_curve"], result["single_curve"], rtol=1e-4)
    assert result["max_param_diff"] < 1e-4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_on_localhost_hold_identical_parameters(tmp_path):
    port = _free_port()
    procs = []
    for pid in range(2):
        env = {
            **os.environ,
            "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
            "JAX_NUM_PROCESSES": "2",
            "JAX_PROCESS_ID": str(pid),
            "JAX_PLATFORMS": "cpu",
        }
        procs.append(subprocess.Popen(
            [sys.executable, str(SCRIPTS / "distributed_worker.py"), str(tmp_path)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))  # fmt: skip
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (_stdout, stderr) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, stderr[-3000:]
    assert "process 1 of 2: 2 devices" in outputs[1][0]
    a = np.load(tmp_path / "params_0.npz")
    b = np.load(tmp_path / "params_1.npz")
    assert len(a.files) > 0
    for name in a.files:
        np.testing.assert_array_equal(a[name], b[name])
    # Only process 0 wrote the logs.
    assert (tmp_path / "run" / "metrics.jsonl").exists()


def test_k_seeds_in_one_program_equal_k_single_seed_runs():
    config = TrainConfig(
        env="gridworld", num_envs=16, batch_size=16, num_minibatches=2, num_epochs=1,
        unroll_length=8, policy_hidden=(16, 16), value_hidden=(32, 32), num_pairs=4, flow_steps=4,
    )  # fmt: skip
    trainer = Trainer(envs.make_env("gridworld"), config)
    keys = jax.vmap(jax.random.PRNGKey)(np.arange(3))
    many = jax.jit(jax.vmap(trainer.init))(keys)
    step_many = jax.jit(jax.vmap(trainer.train_step))
    step_one = jax.jit(trainer.train_step)
    singles = [jax.jit(trainer.init)(keys[i]) for i in range(3)]
    for _ in range(2):
        many, _ = step_many(many)
        singles = [step_one(s)[0] for s in singles]
    for i, single in enumerate(singles):
        for x, y in zip(jax.tree.leaves(many.params), jax.tree.leaves(single.params), strict=True):
            np.testing.assert_allclose(x[i], y, rtol=1e-4, atol=1e-6)
