"""One process of a two-process jax.distributed run on localhost (CPU, gloo collectives).

Usage: python distributed_worker.py OUT_DIR   (with JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES,
JAX_PROCESS_ID set). Trains a few steps through the public API and saves this process's copy of
the parameters to OUT_DIR/params_<process>.npz.
"""

import sys
from pathlib import Path

import jax
import numpy as np

from fpo_jax.train import train

out = Path(sys.argv[1])
result = train(
    "gridworld", distributed=True, num_envs=16, batch_size=16, num_minibatches=2, num_epochs=1,
    unroll_length=8, num_eval_envs=8, policy_hidden=(16, 16), value_hidden=(32, 32), num_pairs=4,
    flow_steps=4, eval_flow_steps=4, num_timesteps=16 * 16 * 3, num_evals=1, progress=False,
    run_dir=str(out / "run"),
)  # fmt: skip
local = [np.asarray(x.addressable_shards[0].data) for x in jax.tree.leaves(result.state.params)]
np.savez(out / f"params_{jax.process_index()}.npz", *local)
print(f"process {jax.process_index()} of {jax.process_count()}: {jax.device_count()} devices")
