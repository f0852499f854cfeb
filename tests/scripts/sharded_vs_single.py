"""Run in a fresh process with XLA_FLAGS=--xla_force_host_platform_device_count=4.

Trains the same config from the same seed on 1 device and sharded over 4, prints a JSON verdict.
"""

import json

import jax
import numpy as np

from fpo_jax import envs, parallel
from fpo_jax.config import TrainConfig
from fpo_jax.trainer import Trainer

config = TrainConfig(
    env="gridworld", num_envs=16, batch_size=16, num_minibatches=2, num_epochs=2, unroll_length=8,
    num_eval_envs=8, policy_hidden=(16, 16), value_hidden=(32, 32), num_pairs=4, flow_steps=4,
)  # fmt: skip


def run(mesh):
    trainer = Trainer(envs.make_env("gridworld"), config, mesh=mesh)
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0))
    step = jax.jit(trainer.train_step, donate_argnums=0)
    curve = []
    for _ in range(3):
        state, metrics = step(state)
        curve.append(float(metrics["total_loss"]))
    obs_devices = len(jax.tree.leaves(state.env_state.obs)[0].sharding.device_set)
    return jax.device_get(state.params), curve, obs_devices


single_params, single_curve, _ = run(None)
sharded_params, sharded_curve, n = run(parallel.make_mesh(4))
max_diff = max(
    float(np.max(np.abs(a - b)))
    for a, b in zip(jax.tree.leaves(single_params), jax.tree.leaves(sharded_params), strict=True)
)
print(json.dumps({"devices": jax.device_count(), "env_state_devices": n, "max_param_diff": max_diff,
                  "single_curve": single_curve, "sharded_curve": sharded_curve}))  # fmt: skip
