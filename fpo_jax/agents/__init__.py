"""Algorithms behind one interface (see :mod:`fpo_jax.agents.base`), and their registry.

:data:`ALGORITHMS` is the single source of truth for algorithm names: config validation, the
CLI's ``--algo`` and the per-algorithm preset overrides all read it. A new algorithm is one
module with an :class:`Agent` plus one :func:`register_algorithm` call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp

from fpo_jax import normalization
from fpo_jax.agents.base import Agent
from fpo_jax.agents.dppo import DPPOAgent
from fpo_jax.agents.flow_policy import FlowPolicy
from fpo_jax.agents.fpo import FPOAgent
from fpo_jax.agents.ppo import GaussianPPOAgent


@dataclass(frozen=True)
class Algorithm:
    """A registry entry.

    Attributes:
      make: ``make(config, action_size) -> Agent``, usually the agent class itself.
      description: one line for ``--help``.
      preset_overrides: config fields this algorithm changes in each preset family
        (``"dm_control"``, ``"brax"``, ``"builtin"``, ``"default"``; see
        :func:`fpo_jax.presets.preset`). Missing families change nothing.
    """

    make: Callable[..., Agent]
    description: str
    preset_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


ALGORITHMS: dict[str, Algorithm] = {}


def register_algorithm(
    name: str,
    make: Callable[..., Agent],
    description: str,
    preset_overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Make ``name`` a valid ``algo`` (config, CLI, presets). Re-registering replaces the entry."""
    ALGORITHMS[name] = Algorithm(make, description, dict(preset_overrides or {}))


# Flow policies have no tractable entropy, so Brax PPO's entropy bonus is dropped for them; the
# clip is the FPO paper's 0.05 (FPO) / 0.2 (DPPO), and Brax PPO's own default 0.3 for PPO.
register_algorithm(
    "fpo",
    FPOAgent,
    "flow policy trained with the FPO surrogate",
    {"brax": dict(clip_epsilon=0.05, entropy_cost=0.0)},
)
# FPO paper, Table 1 baselines: tuned Gaussian PPO (lr 3e-4, clip 0.1, entropy 0.01) and DPPO
# (clip 0.2, sigma 0.05).
register_algorithm(
    "ppo",
    GaussianPPOAgent,
    "tanh-Gaussian PPO baseline",
    {
        "dm_control": dict(clip_epsilon=0.1, entropy_cost=0.01),
        "brax": dict(clip_epsilon=0.3),
        "builtin": dict(entropy_cost=0.01),
        "default": dict(entropy_cost=0.01),
    },
)
# DPPO is evaluated with the stochastic chain it is trained with (sigma noise at every step), as
# the FPO authors evaluate it; change --eval-sigma together with --dppo-sigma.
_DPPO_EVAL = dict(eval_integrator="stochastic", eval_sigma=0.05)
register_algorithm(
    "dppo",
    DPPOAgent,
    "denoising-MDP baseline (per-step Gaussian likelihoods of a stochastic flow chain)",
    {
        "dm_control": dict(clip_epsilon=0.2, dppo_sigma=0.05, **_DPPO_EVAL),
        "brax": dict(clip_epsilon=0.2, entropy_cost=0.0, **_DPPO_EVAL),
        "builtin": _DPPO_EVAL,
        "default": _DPPO_EVAL,
    },
)


Policy = Callable[[jax.Array, jax.Array], jax.Array]


def make_agent(config: Any, action_size: int) -> Agent:
    """The agent named by ``config.algo`` for an action space of ``action_size`` dims."""
    if config.algo not in ALGORITHMS:
        raise ValueError(f"algo={config.algo!r} is not one of {tuple(ALGORITHMS)}.")
    return ALGORITHMS[config.algo].make(config=config, action_size=action_size)


def make_policy(
    agent: Any, params: Any, obs_stats: normalization.RunningStats, config: Any
) -> Policy:
    """``policy(obs (..., obs_dim), key) -> action (..., A)`` in [-1, 1], jit-able.

    Normalises ``obs`` with ``obs_stats`` (as in training) and samples with the agent's
    evaluation sampler; ``params`` are the policy's own (``state.params["policy"]``).
    """

    def policy(obs: jax.Array, key: jax.Array) -> jax.Array:
        obs = normalization.normalize(
            obs_stats, obs, config.normalize_observations, mode=config.obs_norm
        )
        return jnp.tanh(agent.eval_act(params, obs, key))

    return policy


__all__ = [
    "ALGORITHMS",
    "Agent",
    "Algorithm",
    "DPPOAgent",
    "FPOAgent",
    "FlowPolicy",
    "GaussianPPOAgent",
    "Policy",
    "make_agent",
    "make_policy",
    "register_algorithm",
]
