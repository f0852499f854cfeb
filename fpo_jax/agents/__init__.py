"""Algorithms behind one interface (see :mod:`fpo_jax.agents.base`), and their registry.

:data:`ALGORITHMS` is the single source of truth for algorithm names: config validation, the
CLI's ``--algo`` and the per-algorithm preset overrides all read it. A new algorithm is one
module with an :class:`Agent` plus one :func:`register_algorithm` call.

Each entry also declares the settings its agent reads (``reads``); a setting that another
algorithm reads but the chosen one does not is refused when changed (see
:func:`unread_settings`), so a value nothing reads is an error, not a silent no-op.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from fpo_jax.agents.base import Agent
from fpo_jax.agents.dppo import DPPOAgent, DPPOSettings
from fpo_jax.agents.flow_policy import FlowPolicy
from fpo_jax.agents.flow_ppo import FlowPPOAgent
from fpo_jax.agents.fpo import FPOAgent, FPOSettings
from fpo_jax.agents.ppo import GaussianPPOAgent, PPOSettings
from fpo_jax.config import ALGORITHM_SETTINGS, ALGORITHMS_REGISTERED, TrainConfig
from fpo_jax.evaluation import Policy, make_policy  # where evaluation lives; kept here too


@dataclass(frozen=True)
class Algorithm:
    """A registry entry.

    Attributes:
      make: ``make(config, action_size) -> Agent``, usually the agent class itself.
      description: one line for ``--help``.
      preset_overrides: config fields this algorithm changes in each preset family
        (``"dm_control"``, ``"brax"``, ``"builtin"``, ``"default"``; see
        :func:`fpo_jax.presets.preset`). Missing families change nothing.
      reads: the config fields its agent reads (the settings the trainer reads for every
        algorithm, such as the layout, optimiser and GAE, are not listed); None: not declared,
        so nothing is refused on its behalf.
      follows: ``{follower: leader}``: settings whose value follows another's when only the
        leader is changed and the two were equal (DPPO: the evaluation sigma follows
        ``dppo_sigma``); see :func:`fpo_jax.presets.with_changes`.
    """

    make: Callable[..., Agent]
    description: str
    preset_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    reads: frozenset[str] | None = None
    follows: Mapping[str, str] = field(default_factory=dict)


ALGORITHMS: dict[str, Algorithm] = {}
TRAIN_CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainConfig))


def register_algorithm(
    name: str,
    make: Callable[..., Agent],
    description: str,
    preset_overrides: Mapping[str, Mapping[str, Any]] | None = None,
    reads: Collection[str] | None = None,
    follows: Mapping[str, str] | None = None,
    settings: type | None = None,
) -> None:
    """Make ``name`` a valid ``algo`` (config, CLI, presets). Re-registering replaces the entry.

    ``reads``, ``follows``: see :class:`Algorithm`. ``settings``: the algorithm's own settings,
    a frozen dataclass whose fields (typed, with defaults; :func:`fpo_jax.config.sweepable` for
    those that may be swept) are set by name like any other setting and refused for every
    other algorithm; its agent reads them with :func:`fpo_jax.config.algorithm_settings`.
    """
    if settings is not None:
        if not dataclasses.is_dataclass(settings):
            raise TypeError(f"settings of {name!r} must be a dataclass, got {settings!r}.")
        clash = sorted({f.name for f in dataclasses.fields(settings)} & TRAIN_CONFIG_FIELDS)
        if clash:
            raise ValueError(f"settings of {name!r} reuse TrainConfig's names {clash}.")
        ALGORITHM_SETTINGS[name] = settings
    else:
        ALGORITHM_SETTINGS.pop(name, None)
    declared = None if reads is None else frozenset(reads)
    ALGORITHMS[name] = Algorithm(
        make, description, dict(preset_overrides or {}), declared, dict(follows or {})
    )


def unread_settings(algo: str) -> frozenset[str]:
    """Settings another registered algorithm reads and ``algo`` does not (empty if ``algo``
    declares nothing): a value of one of these that differs from ``algo``'s preset changes
    nothing, so it is refused (see :func:`fpo_jax.train.preflight`)."""
    own = ALGORITHMS[algo].reads
    if own is None:
        return frozenset()
    read_by_some = set().union(*(a.reads or () for a in ALGORITHMS.values()))
    return frozenset(read_by_some - own)


# What every flow policy (FPO, DPPO) reads: the velocity network and the evaluation sampler.
_FLOW_POLICY_READS = frozenset({
    "policy_hidden", "activation", "network_init", "flow_time_input", "velocity_output_scale",
    "flow_noise_scale", "eval_integrator", "eval_flow_steps", "eval_noise", "eval_sigma",
})  # fmt: skip


# Flow policies have no tractable entropy and do not read entropy_cost, so presets keep it at 0
# for them (fpo_jax.presets drops what an algorithm does not read, Brax PPO's entropy bonus
# among it); the clip is the FPO paper's 0.05 (FPO) / 0.2 (DPPO), and Brax PPO's own 0.3 for PPO.
register_algorithm(
    "fpo",
    FPOAgent,
    "flow policy trained with the FPO surrogate",
    {"brax": dict(clip_epsilon=0.05)},
    # Of the shared settings; its own (pairs, ratio form, clamps...) are FPOSettings'.
    reads=_FLOW_POLICY_READS
    | {"clip_epsilon", "integrator", "flow_steps", "trust_region", "flow_entropy_cost"},
    settings=FPOSettings,
)
# FPO paper, Table 1 baselines: tuned Gaussian PPO (lr 3e-4, clip 0.1, entropy 0.01, evaluated
# at the mean action) and DPPO (clip 0.2, sigma 0.05).
_PPO_EVAL = dict(eval_noise="zero")
register_algorithm(
    "ppo",
    GaussianPPOAgent,
    "tanh-Gaussian PPO baseline",
    {
        "dm_control": dict(clip_epsilon=0.1, entropy_cost=0.01, **_PPO_EVAL),
        "brax": dict(clip_epsilon=0.3, **_PPO_EVAL),
        "builtin": dict(entropy_cost=0.01, **_PPO_EVAL),
        "default": dict(entropy_cost=0.01, **_PPO_EVAL),
    },
    # Of the shared settings (its entropy bonus and fixed std are PPOSettings'). Evaluation:
    # the mean action or a sample (eval_noise); no flow sampler settings.
    reads={
        "policy_hidden",
        "activation",
        "network_init",
        "clip_epsilon",
        "trust_region",
        "eval_noise",
    },
    settings=PPOSettings,
)
# DPPO is evaluated with the stochastic chain it is trained with (sigma noise at every step), as
# the FPO authors evaluate it; --dppo-sigma moves the evaluation sigma too unless --eval-sigma
# is given.
_DPPO_EVAL = dict(eval_integrator="stochastic", eval_sigma=0.05)
register_algorithm(
    "dppo",
    DPPOAgent,
    "denoising-MDP baseline (per-step Gaussian likelihoods of a stochastic flow chain)",
    {
        "dm_control": dict(clip_epsilon=0.2, dppo_sigma=0.05, **_DPPO_EVAL),
        "brax": dict(clip_epsilon=0.2, **_DPPO_EVAL),
        "builtin": _DPPO_EVAL,
        "default": _DPPO_EVAL,
    },
    # Always the stochastic chain: no integrator choice, and its own per-step PPO clip (its
    # sigma is DPPOSettings').
    reads=_FLOW_POLICY_READS | {"clip_epsilon", "flow_steps"},
    follows={"eval_sigma": "dppo_sigma"},
    settings=DPPOSettings,
)

# A flow policy trained with PPO on its sampler's exact likelihood ratio (a yardstick for FPO's
# surrogate; small action spaces only), the paper's PPO clip 0.1 in every family.
register_algorithm(
    "flow_ppo",
    FlowPPOAgent,
    "flow policy trained with PPO on the exact ratio of its sampler (action dims <= 4)",
    {family: dict(clip_epsilon=0.1) for family in ("dm_control", "brax", "builtin", "default")},
    reads=_FLOW_POLICY_READS
    | {"clip_epsilon", "trust_region", "integrator", "flow_steps", "flow_entropy_cost"},
)

ALGORITHMS_REGISTERED.append(True)  # the config may now read and route their settings by name

# Settings only the default networks read: an injected network ignores them.
DEFAULT_NETWORK_SETTINGS = frozenset(
    {"policy_hidden", "velocity_output_scale", "activation", "network_init", "flow_time_input"}
)


def agent_settings(agent: Any) -> frozenset[str] | None:
    """The settings ``agent`` reads: its own ``reads`` attribute if it has one, else its
    registry entry's (without :data:`DEFAULT_NETWORK_SETTINGS` when a network was injected);
    None when neither declares anything."""
    declared = getattr(agent, "reads", None)
    if declared is not None:
        return frozenset(declared)
    entry = next((a for a in ALGORITHMS.values() if a.make is type(agent)), None)
    if entry is None or entry.reads is None:
        return None
    if getattr(agent, "network", None) is not None:
        return entry.reads - DEFAULT_NETWORK_SETTINGS
    return entry.reads


def with_settings(agent: Any, config: Any) -> Any:
    """``agent`` reading ``config`` (a sweep member's, with traced values): its
    ``with_settings(config)`` method, or for a dataclass agent with a ``config`` field a copy
    with that field replaced; None if the agent offers neither."""
    if hasattr(agent, "with_settings"):
        return agent.with_settings(config)
    if dataclasses.is_dataclass(agent) and hasattr(agent, "config"):
        return dataclasses.replace(agent, config=config)
    return None


def make_agent(config: Any, action_size: int) -> Agent:
    """The agent named by ``config.algo`` for an action space of ``action_size`` dims."""
    if config.algo not in ALGORITHMS:
        raise ValueError(f"algo={config.algo!r} is not one of {tuple(ALGORITHMS)}.")
    return ALGORITHMS[config.algo].make(config=config, action_size=action_size)


__all__ = [
    "ALGORITHMS",
    "Agent",
    "Algorithm",
    "DPPOAgent",
    "DEFAULT_NETWORK_SETTINGS",
    "FPOAgent",
    "FlowPPOAgent",
    "FlowPolicy",
    "GaussianPPOAgent",
    "Policy",
    "agent_settings",
    "make_agent",
    "make_policy",
    "register_algorithm",
    "unread_settings",
    "with_settings",
]
