"""Trained policies as artifacts: load a run, export a params-only policy, load that policy.

* :func:`load_run` restores a run directory written by ``fpo_jax.train`` (its checkpoint) and
  returns the config, the policy parameters (their EMA copy when the run kept one), the
  observation statistics and a jit-able ``policy(obs, key)``; the sampler (integrator, steps, zero noise) can be chosen at load time.
* :func:`export_policy` writes what acting needs and nothing else (policy parameters,
  observation statistics, the config that rebuilds the network; no env state, optimizer or
  critic) to one Flax msgpack file. msgpack holds only data, so loading a shared policy runs no
  code (unlike pickle).
* :func:`load_policy` restores such a file without any simulator installed (no Brax, MuJoCo or
  Playground import).

A run trained with an injected network (``train(..., agent=FPOAgent(..., network=Net()))``)
is loaded by passing the same ``agent=`` (its parameters fit only that network).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from fpo_jax import evaluation, normalization
from fpo_jax.agents import make_agent, with_settings
from fpo_jax.checkpoint import Checkpointer
from fpo_jax.config import TrainConfig, sweep_members
from fpo_jax.config import member_config as config_of_member  # (``member_config`` is a local)
from fpo_jax.errors import ConfigError
from fpo_jax.evaluation import Policy, make_policy
from fpo_jax.runs import member_inputs, read_run_config

Array = jax.Array

# The run directory's record of its env's observation and action sizes (written by train):
# what an export needs besides the checkpoint, so that it builds no env.
ENV_SIZES_FILE = "env_sizes.json"
FORMAT = "fpo_jax.policy"
FORMAT_VERSION = 1


def _with_config(agent: Any, config: TrainConfig) -> Any:
    """An injected agent made to sample with ``config`` (the sampler chosen at load time)."""
    if agent is None:
        return None
    configured = with_settings(agent, config)
    return agent if configured is None else configured


@dataclass
class LoadedRun:
    """A trained policy restored from a run directory (see :func:`load_run`).

    Attributes:
      config: the member's config (its swept values and seed in place, the sampler chosen at
        load time).
      params: the policy's parameters (its EMA copy when the run kept one, ``ema_decay``).
      obs_stats: the observation normalisation statistics.
      policy: ``policy(obs (..., obs_dim), key) -> action (..., A)`` in [-1, 1], jit-able.
      step: the checkpoint's training iteration.
      env: the raw env rebuilt from the config.
      trainer: the :class:`~fpo_jax.trainer.Trainer` (e.g. ``trainer.evaluate``).
      state: the restored :class:`~fpo_jax.trainer.TrainState` of the chosen seed.
    """

    config: TrainConfig
    params: Any
    obs_stats: normalization.RunningStats
    policy: Policy
    step: int
    env: Any
    trainer: Any
    state: Any


def load_run(
    run_dir: str | Path,
    step: int | None = None,
    *,
    member: int = 0,
    integrator: str | None = None,
    flow_steps: int | None = None,
    noise: str | None = None,
    sigma: float | None = None,
    env: Any | None = None,
    agent: Any | None = None,
    value_network: Any | None = None,
) -> LoadedRun:
    """Restore the policy of a run directory written by ``fpo_jax.train`` (with checkpoints).

    Args:
      run_dir: the run directory (holds ``config.json`` and ``checkpoints/``), from any working
        directory, also after it was moved or copied.
      step: the checkpoint's iteration; default: the latest readable one.
      member: which member's policy to take (a sweep's setting x seed, in the order of the
        run's ``members.json``; without a sweep, the seed index).
      integrator, flow_steps, noise, sigma: the evaluation sampler to act with (default: the
        run's ``eval_*`` settings), e.g. ``noise="zero"`` for FPO++'s zero-noise sampling.
      env: the env object, for runs trained on an env object rather than a name.
      agent, value_network: the injected agent / critic the run was trained with, if any.

    Raises:
      ConfigError: not a run directory, bad seed index, or an env that cannot be rebuilt.
      CheckpointError: no readable checkpoint (or not the requested one).
    """
    # Simulators are imported here, on first use: load_policy and export files need none.
    from fpo_jax import envs
    from fpo_jax.trainer import Trainer

    run_dir = Path(run_dir).expanduser().resolve()
    config = read_run_config(run_dir)
    if not 0 <= member < config.num_members:
        raise ConfigError(
            f"member {member} is out of range: the run has {config.num_members} member(s)."
        )
    config = evaluation.with_sampler(config, integrator, flow_steps, noise, sigma)
    if env is None:
        try:
            env = envs.make_env(
                config.env, backend=config.backend, impl=config.impl, **config.env_options
            )
        except ConfigError as e:
            raise ConfigError(
                f"Cannot rebuild the run's env {config.env!r} by name ({e}); pass env=... ."
            ) from e
    ckpt_dir = run_dir / "checkpoints"
    if not ckpt_dir.is_dir():
        raise ConfigError(f"{run_dir} has no checkpoints/ (trained with checkpoint=False?).")
    trainer = Trainer(env, config, agent=_with_config(agent, config), value_network=value_network)
    # The checkpoint's structure, as train.py builds it (a leading member axis), restored onto
    # one device even when the run was sharded over several.
    _, keys, hparams = member_inputs(config)
    like = jax.eval_shape(jax.vmap(trainer.init), keys, hparams)
    one_device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    like = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=one_device), like)
    checkpointer = Checkpointer(ckpt_dir)
    try:
        state, step = checkpointer.restore(like=like, step=step)
    finally:
        checkpointer.close()
    state = jax.tree.map(lambda x: x[member], state)
    params = state.eval_params["policy"]  # the EMA copy when the run kept one
    # This member's own config: its swept values and seed in place (what export_policy saves).
    settings = sweep_members(config)[member]
    member_config = config_of_member(config, settings)
    return LoadedRun(
        config=member_config,
        params=params,
        obs_stats=state.obs_stats,
        policy=trainer.policy_fn(state.eval_params, state.obs_stats, state.hparams),
        step=int(step),
        env=env,
        trainer=trainer,
        state=state,
    )


def export_policy(
    run_dir: str | Path,
    path: str | Path,
    *,
    step: int | None = None,
    member: int = 0,
    integrator: str | None = None,
    flow_steps: int | None = None,
    noise: str | None = None,
    sigma: float | None = None,
    **load_kwargs: Any,
) -> Path:
    """Write the run's policy (params, observation statistics, config) to one msgpack file.

    Reads the checkpoint and the run's files only: no env, optimizer or trainer is built (and
    no simulator imported). ``step``, ``member`` and the sampler arguments are those of
    :func:`load_run`; with ``agent=`` / ``env=`` / ``value_network=`` (a run trained with an
    injected network, or a run directory written before the run recorded its env's sizes) it
    goes through :func:`load_run`. Returns the written path. The file holds no env state,
    optimizer state or critic.
    """
    run_dir = Path(run_dir).expanduser().resolve()
    sizes_file = run_dir / ENV_SIZES_FILE
    sampler = dict(integrator=integrator, flow_steps=flow_steps, noise=noise, sigma=sigma)
    if load_kwargs or not sizes_file.is_file():
        run = load_run(run_dir, step=step, member=member, **sampler, **load_kwargs)
        return save_policy(path, run.config, run.params, run.obs_stats, run.trainer.obs_size,
                           run.trainer.action_size, custom_network=load_kwargs.get("agent") is not None)  # fmt: skip
    config = read_run_config(run_dir)
    if not 0 <= member < config.num_members:
        raise ConfigError(
            f"member {member} is out of range: the run has {config.num_members} member(s)."
        )
    sizes = json.loads(sizes_file.read_text())
    if not (run_dir / "checkpoints").is_dir():
        raise ConfigError(f"{run_dir} has no checkpoints/ (trained with checkpoint=False?).")
    checkpointer = Checkpointer(run_dir / "checkpoints")
    try:
        leaves, _ = checkpointer.restore_leaves(
            (".params['policy']", ".ema_params", ".obs_stats"), step
        )
    finally:
        checkpointer.close()
    # What acts at evaluation: the EMA copy of the policy when the run kept one.
    prefix = (
        ".ema_params" if any(p.startswith(".ema_params") for p in leaves) else ".params['policy']"
    )
    params = _nested(
        {p[len(prefix) :]: x[member] for p, x in leaves.items() if p.startswith(prefix)}
    )
    obs_stats = normalization.RunningStats(
        **{f.name: jnp.asarray(leaves[f".obs_stats.{f.name}"][member])
           for f in dataclasses.fields(normalization.RunningStats)}
    )  # fmt: skip
    member_config = config_of_member(
        evaluation.with_sampler(config, **sampler), sweep_members(config)[member]
    )
    return save_policy(
        path, member_config, params, obs_stats, int(sizes["obs_size"]), int(sizes["action_size"])
    )


def _nested(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"['params']['Dense_0']['kernel']": x, ...}`` -> ``{"params": {"Dense_0": {...}}}``."""
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        keys = re.findall(r"\['([^']*)'\]", path)
        node = tree
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return tree


def save_policy(
    path: str | Path,
    config: TrainConfig,
    params: Any,
    obs_stats: normalization.RunningStats,
    obs_size: int,
    action_size: int,
    *,
    custom_network: bool = False,
) -> Path:
    """Write a policy artifact from its parts (see :func:`export_policy`)."""
    path = Path(path)
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "config": config.to_json(),
        "obs_size": obs_size,
        "action_size": action_size,
        "custom_network": custom_network,
        "params": jax.tree.map(np.asarray, params),
        "obs_stats": jax.tree.map(np.asarray, dataclasses.asdict(obs_stats)),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(serialization.msgpack_serialize(payload))
    return path


@dataclass
class LoadedPolicy:
    """A policy restored by :func:`load_policy`; call it as ``policy(obs, key)``.

    Attributes:
      config: the training config (its ``eval_*`` fields are the sampler in use).
      params: the policy's parameters.
      obs_stats: the observation normalisation statistics.
      obs_size, action_size: the sizes the policy was trained for.
      policy: ``policy(obs (..., obs_size), key) -> action (..., action_size)`` in [-1, 1].
    """

    config: TrainConfig
    params: Any
    obs_stats: normalization.RunningStats
    obs_size: int
    action_size: int
    policy: Policy

    def __call__(self, obs: Array, key: Array) -> Array:
        return self.policy(obs, key)


def load_policy(
    path: str | Path,
    *,
    integrator: str | None = None,
    flow_steps: int | None = None,
    noise: str | None = None,
    sigma: float | None = None,
    agent: Any | None = None,
) -> LoadedPolicy:
    """Restore a policy written by :func:`export_policy`; needs no simulator.

    Args:
      path: the msgpack file.
      integrator, flow_steps, noise, sigma: the sampler to act with (default: the exported
        run's evaluation sampler).
      agent: for a policy trained with a custom network, the agent holding that network.
    """
    path = Path(path)
    try:
        payload = serialization.msgpack_restore(path.read_bytes())
    except (OSError, ValueError, TypeError) as e:
        raise ConfigError(f"{path} is not a readable fpo_jax policy file ({e}).") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ConfigError(f"{path} is not an fpo_jax policy file.")
    if payload["version"] > FORMAT_VERSION:
        raise ConfigError(
            f"{path} has format version {payload['version']}; this fpo_jax reads up to "
            f"{FORMAT_VERSION}: upgrade fpo_jax."
        )
    if payload["custom_network"] and agent is None:
        raise ConfigError(
            f"{path} was trained with a custom network: pass agent=... holding that network."
        )
    config = TrainConfig.from_dict(json.loads(payload["config"]))
    config = evaluation.with_sampler(config, integrator, flow_steps, noise, sigma)
    action_size = int(payload["action_size"])
    agent = _with_config(agent, config) if agent is not None else make_agent(config, action_size)
    params = jax.tree.map(jnp.asarray, payload["params"])
    obs_stats = normalization.RunningStats(
        **{k: jnp.asarray(v) for k, v in payload["obs_stats"].items()}
    )
    return LoadedPolicy(
        config=config,
        params=params,
        obs_stats=obs_stats,
        obs_size=int(payload["obs_size"]),
        action_size=action_size,
        policy=make_policy(agent, params, obs_stats, config),
    )
