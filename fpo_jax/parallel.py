"""Scale-out with JAX itself: a device mesh, sharding constraints, multi-host initialisation.

Data parallelism is expressed with GSPMD sharding annotations rather than explicit collectives:
the env batch (and the trajectories it produces) is sharded over the mesh's ``"data"`` axis,
parameters and optimizer state are replicated, and XLA inserts the all-reduce of the gradient
(the loss is a mean over the global minibatch). The program computes exactly what it computes
on one device, so 1-device and N-device runs agree up to float rounding.

Multi-host: call :func:`initialize_distributed` (the CLI's ``--distributed``) in every process
before anything else touches JAX; :func:`make_mesh` then spans every device of every host, and
each process steps the environments that live on its own devices.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh named ``"data"`` over the first ``num_devices`` devices (default: all, all hosts)."""
    devices = jax.devices()
    if num_devices is not None:
        if not 1 <= num_devices <= len(devices):
            raise ValueError(f"num_devices={num_devices} but JAX sees {len(devices)} devices.")
        devices = devices[:num_devices]
    return Mesh(np.array(devices), (DATA_AXIS,))


def check_divisible(config: Any, mesh: Mesh) -> None:
    """The env batch and the trajectory batches must split evenly over the devices."""
    n = mesh.shape[DATA_AXIS]
    for name, value in [("num_envs", config.num_envs), ("batch_size", config.batch_size)]:
        if value % n:
            raise ValueError(f"{name}={value} must be a multiple of the {n} devices of the mesh.")


def shard_along(tree: Any, mesh: Mesh | None, axis: int = 0) -> Any:
    """Constrain every array leaf of ``tree`` to be split over ``"data"`` along ``axis``.

    A no-op without a mesh; leaves with fewer than ``axis + 1`` dims are replicated. Works inside
    ``jit`` (a sharding constraint) and under ``vmap`` (the vmapped axis stays unsharded).
    """
    if mesh is None:
        return tree

    def constrain(x):
        if not hasattr(x, "ndim") or x.ndim <= axis:
            spec = PartitionSpec()
        else:
            spec = PartitionSpec(*([None] * axis), DATA_AXIS)
        return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))

    return jax.tree.map(constrain, tree)


def initialize_distributed() -> None:
    """``jax.distributed.initialize`` from the standard environment variables.

    Reads ``JAX_COORDINATOR_ADDRESS`` (host:port of process 0), ``JAX_NUM_PROCESSES`` and
    ``JAX_PROCESS_ID`` when set; otherwise lets JAX auto-detect a cluster (SLURM, TPU pods, ...).
    On CPU the cross-process collectives use gloo.
    """
    # Only affects the CPU backend; must be set before the backend starts.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs = {}
    if "JAX_COORDINATOR_ADDRESS" in os.environ:
        kwargs = dict(
            coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
            num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
            process_id=int(os.environ["JAX_PROCESS_ID"]),
        )
    jax.distributed.initialize(**kwargs)


def is_main_process() -> bool:
    """Only process 0 writes logs, plots and progress (orbax coordinates checkpoint writes)."""
    return jax.process_index() == 0
