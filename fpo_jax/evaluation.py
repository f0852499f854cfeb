"""Evaluation in one place, for every algorithm: which parameters act (the live policy or its
EMA copy), how actions are drawn (noise, integrator, steps, sigma), how many episodes, and
whether the evaluated policy is deterministic.

Agents expose one evaluation function, ``eval_act(params, obs, key) -> raw_action``, which
reads the ``eval_*`` settings of the config they were built with; this module turns it into
the policy that acts (:func:`make_policy`: normalised observations in, squashed actions out),
plays the episodes (:func:`run_episodes`) and names what was evaluated
(:func:`describe_evaluation`), so that a table can say which evaluation each number used.
:func:`with_sampler` is the one way to change the evaluation sampler after training
(:func:`fpo_jax.artifacts.load_run`, :func:`fpo_jax.artifacts.load_policy`).

This module sits below the agents and the trainer: it imports only the config, the
observation statistics and JAX.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from fpo_jax import normalization
from fpo_jax.config import TrainConfig, replace

Array = jax.Array
Policy = Callable[[Array, Array], Array]
"""``policy(obs (..., obs_dim), key) -> action (..., A)`` in [-1, 1], jit-able."""
Metrics = dict[str, Array]


def evaluated_params(params: Any, ema_params: Any) -> Any:
    """What acts at evaluation and deployment: ``params`` (``{"policy": ..., "value": ...}``)
    with the policy replaced by its EMA copy when the run keeps one (``ema_decay``)."""
    if ema_params is None:
        return params
    return {**params, "policy": ema_params}


def make_policy(
    agent: Any, params: Any, obs_stats: normalization.RunningStats, config: TrainConfig
) -> Policy:
    """``policy(obs (..., obs_dim), key) -> action (..., A)`` in [-1, 1], jit-able.

    Normalises ``obs`` with ``obs_stats`` (as in training) and samples with the agent's
    evaluation sampler (``agent.eval_act``); ``params`` are the policy's own
    (``state.params["policy"]``, or its EMA copy).
    """

    def policy(obs: Array, key: Array) -> Array:
        obs = normalization.normalize(
            obs_stats, obs, config.normalize_observations, mode=config.obs_norm
        )
        return jnp.tanh(agent.eval_act(params, obs, key))

    return policy


def with_sampler(
    config: TrainConfig,
    integrator: str | None = None,
    flow_steps: int | None = None,
    noise: str | None = None,
    sigma: float | None = None,
) -> TrainConfig:
    """``config`` with the evaluation sampler's settings that are given replaced
    (``eval_integrator``, ``eval_flow_steps``, ``eval_noise``, ``eval_sigma``)."""
    changes = {
        name: value
        for name, value in [
            ("eval_integrator", integrator),
            ("eval_flow_steps", flow_steps),
            ("eval_noise", noise),
            ("eval_sigma", sigma),
        ]
        if value is not None
    }
    return replace(config, **changes) if changes else config


def is_deterministic(config: TrainConfig, flow_sampler: bool = True) -> bool:
    """Whether the evaluated policy is a function of the observation: a flow policy started
    from zero noise with a deterministic integrator, a Gaussian policy's mean action."""
    if not flow_sampler:
        return config.eval_noise == "zero"
    return config.eval_noise == "zero" and config.eval_integrator != "stochastic"


def describe_evaluation(config: TrainConfig, flow_sampler: bool = True) -> str:
    """One line naming what an evaluation of ``config`` plays, e.g. "deterministic: from zero
    noise, euler x 5 steps, the EMA actor, 128 episodes of up to 1000 steps". ``flow_sampler``:
    the policy samples with a flow (FPO, DPPO...), not a Gaussian."""
    kind = "deterministic" if is_deterministic(config, flow_sampler) else "stochastic"
    if flow_sampler:
        how = (
            f"from {config.eval_noise} noise, {config.eval_integrator} x "
            f"{config.eval_flow_steps} steps"
        )
        if config.eval_integrator == "stochastic":
            how += f" (sigma {config.eval_sigma:g})"
    else:
        how = "the mean action" if config.eval_noise == "zero" else "a Gaussian sample"
    actor = "the EMA actor" if config.ema_decay is not None else "the live policy"
    n, steps = config.num_eval_envs, config.episode_length
    return (
        f"{kind}: {how}, {actor}, {n} episode{'s' * (n != 1)} of up to "
        f"{steps} step{'s' * (steps != 1)}"
    )


def run_episodes(
    eval_env: Any, policy: Callable[[Any, Array], Array], key: Array, config: TrainConfig
) -> Metrics:
    """Mean undiscounted return of ``config.num_eval_envs`` episodes, no auto-reset.

    ``eval_env``: an env wrapped by :func:`fpo_jax.envs.wrap_for_eval`; ``policy(obs, key)``
    acts on its observations. Rewards (and env metrics) after an episode's end are masked out.
    Returns ``eval/episode_return``, ``eval/episode_return_std``, ``eval/episode_length`` and
    ``eval/<metric>`` for each of the env's metrics (episode sums, averaged over episodes).
    """
    c = config
    k_reset, k_act = jax.random.split(key)
    env_state = eval_env.reset(jax.random.split(k_reset, c.num_eval_envs))
    num_steps = -(-c.episode_length // c.action_repeat)
    zeros = jnp.zeros((c.num_eval_envs,))
    metric_sums = {k: zeros for k in env_state.metrics}

    def step(carry, step_key):
        env_state, ret, length, alive, sums = carry
        next_state = eval_env.step(env_state, policy(env_state.obs, step_key))
        ret = ret + jnp.where(alive > 0, next_state.reward, 0.0)
        length = length + alive
        sums = {k: v + jnp.where(alive > 0, next_state.metrics[k], 0.0) for k, v in sums.items()}
        alive = alive * (1.0 - next_state.done)
        return (next_state, ret, length, alive, sums), None

    init = (env_state, zeros, zeros, jnp.ones_like(zeros), metric_sums)
    (_, ret, length, _, sums), _ = jax.lax.scan(step, init, jax.random.split(k_act, num_steps))
    out = {
        "eval/episode_return": jnp.mean(ret),
        "eval/episode_return_std": jnp.std(ret),
        "eval/episode_length": jnp.mean(length),
    }
    out.update({f"eval/{k}": jnp.mean(v) for k, v in sums.items()})
    return out


def evaluate(
    eval_env: Any,
    policy_of: Callable[[Any], Callable[[Any, Array], Array]],
    params: Any,
    ema_params: Any,
    key: Array,
    config: TrainConfig,
) -> Metrics:
    """The run's evaluation: :func:`run_episodes` of the evaluated parameters
    (:func:`evaluated_params`). ``policy_of(params) -> policy`` builds the acting policy from
    the whole parameters. With an EMA actor the live parameters also play the same episodes
    (same keys): ``eval/live_episode_return`` and ``eval/ema_minus_live_return``, whose drift
    shows a collapse of either coming."""
    out = run_episodes(eval_env, policy_of(evaluated_params(params, ema_params)), key, config)
    if ema_params is not None:
        live = run_episodes(eval_env, policy_of(params), key, config)
        out["eval/live_episode_return"] = live["eval/episode_return"]
        out["eval/ema_minus_live_return"] = out["eval/episode_return"] - live["eval/episode_return"]
    return out
