"""Presets: the default :class:`~fpo_jax.config.TrainConfig` of each env and algorithm.

:func:`preset` picks a table by the env's family (Playground DM Control tasks: the FPO paper;
Brax envs: Brax's published PPO settings; built-in toy envs: small settings measured on a CPU;
anything else: ``TrainConfig`` defaults), then applies the algorithm's own overrides (its
registry entry, :data:`fpo_jax.agents.ALGORITHMS`), then a named variant. Each number says
where it comes from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from fpo_jax import envs
from fpo_jax.agents import ALGORITHMS, TRAIN_CONFIG_FIELDS, unread_settings
from fpo_jax.config import (
    SECTIONS,
    TrainConfig,
    algorithm_setting_names,
    replace,
    setting_owners,
    with_algorithm_settings,
)
from fpo_jax.errors import ConfigError

# The ten DeepMind Control tasks of the FPO paper's Table 1.
PAPER_DM_CONTROL_TASKS = (
    "BallInCup",
    "CartpoleBalance",
    "CheetahRun",
    "FingerSpin",
    "FingerTurnEasy",
    "FingerTurnHard",
    "FishSwim",
    "PointMass",
    "ReacherEasy",
    "ReacherHard",
)

# FPO paper (McAllister et al., arXiv 2507.21053), Playground DM Control experiments (2048 envs, unroll 30, 1024 x 32
# minibatches, 16 epochs, lr 3e-4, clip 0.05, N = 8, 10 Euler steps, discount 0.995, GAE 0.95,
# reward scale 10, value coefficient 0.25, no entropy term), under the trainer order of the
# authors' code, which is Brax PPO's: observation statistics updated with each rollout before its
# update epochs (obs_norm="brax") and every env restarting from its own first state. That order
# is the default here for every algorithm because it helped both on equal terms
# (experiments/results/ppo_parity.md, CartpoleBalance, R1 layout, 1.1M steps, 5 seeds, final
# stochastic / deterministic return: FPO 489 / 587 against 474 / 569 with Welford statistics and
# fresh initial states, PPO 565 / 640 against 439 / 446).
_DM_CONTROL_FPO = dict(
    num_timesteps=60_000_000,
    num_envs=2048,
    episode_length=1000,
    unroll_length=30,
    batch_size=1024,
    num_minibatches=32,
    num_epochs=16,
    learning_rate=3e-4,
    clip_epsilon=0.05,
    num_pairs=8,
    flow_steps=10,
    discount=0.995,
    gae_lambda=0.95,
    reward_scaling=10.0,
    value_loss_coef=0.25,
    entropy_cost=0.0,
    num_evals=10,
    obs_norm="brax",
    refresh_initial_states=False,
)
# Per-algorithm changes to every preset (the paper's tuned PPO and DPPO baselines, Brax's PPO
# clip, ...) live with each algorithm's registry entry: fpo_jax.agents.ALGORITHMS.
# The paper's text gives discount 0.95 for these two tasks, while the authors' released FPO
# script uses 0.995 for every task. We follow the paper's text (the specification its Table 1
# cites); `--discount 0.995` reproduces the script.
_DM_CONTROL_DISCOUNT = {"BallInCup": 0.95, "FingerSpin": 0.95}

# Flow policies (FPO, DPPO) on these envs: changes measured to matter, on top of the table
# below (Gaussian PPO does not read these fields). ant: with the paper's unit source noise the
# untrained flow acts with pre-tanh noise of std 1 and the ant falls within ~30 steps; FPO then
# learns slowly (eval return -15 -> 121 in 2M steps at 1024 envs; a clip x lr sweep reached at
# most 49 at 0.8M). With source noise 0.3 the
# same run went 208 -> 379 (random-noise evaluation; 1104 from zero noise), 0.6: 10 -> 346
# (experiments/README.md, "Ant at 2M steps").
_FLOW_POLICY_ENV = {"ant": dict(flow_noise_scale=0.3)}

# Brax's published PPO settings (the per-env table of Brax's training notebook,
# notebooks/training.ipynb), used for every algorithm on Brax envs.
_BRAX_PPO = {
    "ant": dict(
        num_timesteps=50_000_000, num_envs=4096, batch_size=2048, num_minibatches=32,
        num_epochs=4, unroll_length=5, discount=0.97, learning_rate=3e-4, entropy_cost=1e-2,
        reward_scaling=10.0, episode_length=1000, num_evals=10,
    ),
    "halfcheetah": dict(
        num_timesteps=50_000_000, num_envs=2048, batch_size=512, num_minibatches=32,
        num_epochs=8, unroll_length=20, discount=0.95, learning_rate=3e-4, entropy_cost=1e-3,
        reward_scaling=1.0, episode_length=1000, num_evals=20,
    ),
    "hopper": dict(
        num_timesteps=50_000_000, num_envs=4096, batch_size=2048, num_minibatches=32,
        num_epochs=4, unroll_length=20, discount=0.97, learning_rate=3e-4, entropy_cost=1e-3,
        reward_scaling=10.0, episode_length=1000, num_evals=20,
    ),
    "walker2d": dict(
        num_timesteps=50_000_000, num_envs=4096, batch_size=2048, num_minibatches=32,
        num_epochs=4, unroll_length=20, discount=0.97, learning_rate=3e-4, entropy_cost=1e-3,
        reward_scaling=10.0, episode_length=1000, num_evals=20,
    ),
    "reacher": dict(
        num_timesteps=50_000_000, num_envs=2048, batch_size=256, num_minibatches=32,
        num_epochs=8, unroll_length=50, discount=0.95, learning_rate=3e-4, entropy_cost=1e-3,
        reward_scaling=5.0, episode_length=1000, action_repeat=4, num_evals=20,
    ),
    "swimmer": dict(
        num_timesteps=50_000_000, num_envs=2048, batch_size=512, num_minibatches=32,
        num_epochs=8, unroll_length=20, discount=0.95, learning_rate=3e-4, entropy_cost=1e-3,
        reward_scaling=1.0, episode_length=1000, num_evals=20,
    ),
    "inverted_double_pendulum": dict(
        num_timesteps=20_000_000, num_envs=2048, batch_size=1024, num_minibatches=32,
        num_epochs=4, unroll_length=5, discount=0.97, learning_rate=3e-4, entropy_cost=1e-2,
        reward_scaling=10.0, episode_length=1000, num_evals=20,
    ),
    "humanoid": dict(
        num_timesteps=50_000_000, num_envs=2048, batch_size=1024, num_minibatches=32,
        num_epochs=8, unroll_length=10, discount=0.97, learning_rate=3e-4, entropy_cost=1e-3,
        reward_scaling=0.1, episode_length=1000, num_evals=10,
    ),
    "inverted_pendulum": dict(
        num_timesteps=2_000_000, num_envs=2048, batch_size=1024, num_minibatches=32,
        num_epochs=4, unroll_length=5, discount=0.97, learning_rate=3e-4, entropy_cost=1e-2,
        reward_scaling=10.0, episode_length=1000, num_evals=20,
    ),
}  # fmt: skip

# Small, CPU-friendly settings measured to learn here (see tests/test_learning.py).
_TOY = {
    "gridworld": dict(
        num_timesteps=300_000, num_envs=64, episode_length=100, unroll_length=20, batch_size=64,
        num_minibatches=4, num_epochs=4, discount=0.99, learning_rate=1e-3, reward_scaling=0.1,
        clip_epsilon=0.1, num_evals=5, num_eval_envs=64,
    ),
    "bandit": dict(
        num_timesteps=100_000, num_envs=64, episode_length=1, unroll_length=1, batch_size=256,
        num_minibatches=4, num_epochs=4, discount=0.0, learning_rate=1e-3, clip_epsilon=0.1,
        num_evals=5, num_eval_envs=256,
    ),
}  # fmt: skip
_TOY["bandit2d"] = _TOY["bandit"]
_TOY["aliased_reach"] = dict(
    num_timesteps=300_000, num_envs=64, episode_length=4, unroll_length=4, batch_size=64,
    num_minibatches=4, num_epochs=4, discount=0.9, learning_rate=3e-4, clip_epsilon=0.1,
    num_evals=6, num_eval_envs=512,
)  # fmt: skip
# Env settings that win over the algorithm's own (applied after them). aliased_reach evaluates
# every algorithm on sampled actions: a policy's mean or zero-noise action is one mode per
# observation, which by construction solves only the episodes that start on one side.
_ENV_OVER_ALGO = {"aliased_reach": dict(eval_noise="random")}

# Named variants of a preset: preset(env, algo, variant=...), on the CLI --variant NAME. Applied
# after the algorithm's overrides: (scope, variant) -> settings for every algorithm, and
# (scope, variant, algo) -> that algorithm's own; a scope is an env name or a preset family
# ("dm_control": every Playground DM Control task).
#
# "paper" for gridworld: the FPO authors' GridWorld run (their gridworld/main.py, PPO defaults
# and DiffusionPolicy, which the paper's Figure 1 comes from): N = 50 pairs with t ~ U(0, 1),
# the unweighted u-MSE CFM loss, clip 0.2, Adam 3e-4, gradient-norm clip 0.5, gamma 0.99,
# GAE lambda 0.98, 10 epochs of 6 minibatches on ~2048 env steps per batch (ours: 60 envs x 34
# steps = 2040, minibatches of 10 trajectories = 340 steps; theirs: one env, 2048 steps, 341-step
# minibatches), each pair's log-ratio and their mean clamped to [-3, 3], no entropy term, no
# observation normalisation (their observations already lie in [-1, 1]), reward scale 1, the
# 100-step limit of their env, 64 x 64 ReLU policy and critic MLPs with PyTorch's default
# initialisation, the raw flow time as the velocity net's input, velocity output unscaled, one
# gradient clip per network with the critic's squared error at weight 1 (their two Adams), and
# their env's moves: round(clip(a, -1, 1)) of the raw action, i.e. |tanh(a)| > tanh(0.5)
# (toy_envs.AUTHORS_MOVE_THRESHOLD). The Gaussian baseline has a fixed std of 0.5 as in the
# paper's appendix figure (their PPO code uses a fixed covariance of 0.5, i.e. std 0.71:
# --gaussian-fixed-std 0.7071). Not reproduced: GAE and advantage normalisation once per batch
# with the rollout's critic (ours per minibatch with the current one), truncation at 100 steps
# read as termination (ours bootstraps), their flow time running the other way (t = 0 noise;
# with raw t only the first layer's bias differs), their PPO's KL early stop (0.02) and their
# nominal linear lr decay over 200M steps (constant in practice). Side by side with their code:
# experiments/gridworld_side_by_side.py. Slow on a CPU: use the default preset for quick runs.
_GRIDWORLD_PAPER = dict(
    num_timesteps=1_000_000, num_envs=60, episode_length=100, unroll_length=34, batch_size=10,
    num_minibatches=6, num_epochs=10, learning_rate=3e-4, max_grad_norm=0.5, discount=0.99,
    gae_lambda=0.98, clip_epsilon=0.2, entropy_cost=0.0, reward_scaling=1.0,
    normalize_observations=False, num_pairs=50, t_sampler="uniform", cfm_weighting="velocity",
    log_ratio_clamp=3.0, pair_log_ratio_clamp=3.0, policy_hidden=(64, 64),
    value_hidden=(64, 64), velocity_output_scale=1.0, num_evals=10, num_eval_envs=128,
    activation="relu", network_init="torch", flow_time_input="raw", grad_clip_scope="per_network",
    value_loss_coef=1.0, env_kwargs=("move_threshold=0.46211715726000974",),
)  # fmt: skip
# "fast" for the DM Control tasks: a layout for a CPU budget, searched with sweeps on
# CartpoleBalance and CartpoleSwingup (experiments/fast_preset.py, results/fast_preset.md):
# 256 envs, 8 minibatches of 128 x 30 steps (30,720 steps per iteration), 4 epochs: a quarter
# of the paper layout's gradient work per env step. Over lr {3e-4, 1e-3} x clip {0.05, 0.1,
# 0.2} the paper's 3e-4 and 0.05 stayed best for FPO, and a source noise of 0.3 (vs 1) helped
# (CartpoleBalance 417 -> 473 at 1M steps). Per env step it matches the paper settings on
# CartpoleBalance and trails them on CartpoleSwingup; it needs ~3.5x less time per step, so at
# equal wall time on a CPU it leads on both. (Measured with Welford statistics and fresh initial
# states, this family's defaults before Brax's order replaced them.)
_DM_CONTROL_FAST = dict(
    num_envs=256, batch_size=128, num_minibatches=8, unroll_length=30, num_epochs=4,
    num_timesteps=2_000_000, num_evals=10, num_eval_envs=64,
)  # fmt: skip
# "tuned" for the DM Control tasks: each algorithm at the best setting measured at the layout of
# the PPO comparison (experiments/ppo_parity.py: Playground's PPO layout at 256 envs, 128 x 32
# minibatches of 30 steps, 16 epochs, 9 iterations = 1.1M env steps) under Brax's order.
# FPO: lr 3e-4, clip 0.1, source noise 0.3, the best of a sweep over lr {3e-4, 1e-3} x clip
# {0.05, 0.1} x source noise {0.3, 1} on CartpoleBalance (one seed per member; 561 stochastic /
# 610 deterministic against the paper setting's 489 / 563), confirmed with 5 seeds
# (experiments/fpo_best_dm_control.py, results/fpo_best_dm_control.md). Gaussian PPO:
# Playground's Brax PPO hyperparameters (lr 1e-3, entropy 0.01, Brax's clip 0.3), as "brax".
_DM_CONTROL_TUNED = dict(
    num_envs=256, batch_size=128, num_minibatches=32, unroll_length=30, num_epochs=16,
    num_timesteps=1_105_920, num_evals=10, num_eval_envs=128,
)  # fmt: skip
_DM_CONTROL_TUNED_FPO = dict(learning_rate=3e-4, clip_epsilon=0.1, flow_noise_scale=0.3)
# "brax": Brax PPO's own trainer, reproduced in this one (experiments/ppo_parity.py). For every
# algorithm, Brax's behaviour: observation statistics updated with each rollout before its update
# epochs and not clipped (obs_norm="brax"), every env restarting from its own first state, the
# stochastic policy evaluated. For PPO on DM Control, Playground's Brax PPO config
# (dm_control_suite_params.brax_ppo_config: lr 1e-3, entropy 0.01, discount 0.995 (0.95 for
# BallInCup and FingerSpin), reward scaling 10, 2048 envs, 1024 x 32 x 30, 16 epochs) with
# Brax's default clip 0.3 (the config's action repeat 4 for "PendulumSwingUp" never applies:
# the registered name is "PendulumSwingup", so the config Playground hands out has repeat 1,
# and so does ours); on Brax envs, the Brax notebook settings that the plain preset already
# holds. Brax's num_resets_per_eval (10 in
# Playground's config: all envs reset 10 times between evaluations) has no counterpart here.
_BRAX_BEHAVIOUR = dict(obs_norm="brax", refresh_initial_states=False, eval_noise="random")
_PLAYGROUND_BRAX_PPO = dict(learning_rate=1e-3, entropy_cost=0.01, clip_epsilon=0.3)
# "fpo++" for every family: the locomotion recipe of FPO++ ("Flow Policy Gradients for Robot
# Control", Yi, Choi et al., arXiv 2602.02481) on the family's layout (env counts, batch,
# epochs, discount, reward scale and learning rate stay the family's). For every algorithm: AdamW (
# weight decay 1e-4) with a gradient-norm clip of 1 per network (their separate actor and critic
# optimizers), advantages clipped to +-100 after normalisation, an EMA of the policy (decay
# 0.95; the first 500 gradient steps copy it) that evaluation and export use, actor 3 x 256 and
# critic 3 x 512 ELU; so a PPO or DPPO run with it differs from FPO++ only in the policy and its
# objective. FPO on top: per-sample ratios with ASPO, N = 16 pairs with t ~ Beta(1, 1) on
# [0.005, 0.995], CFM losses summed over action dims / sqrt(A) and clamped at 20 (also the new
# losses of negative-advantage actions), a straight-through log-ratio clamp of 10, action
# perturbation std 0.02, 64 Euler steps in rollouts and 5 from zero noise at evaluation.
# CPU cost, reasoned, not measured: per action a rollout evaluates the velocity net 64 + 16 = 80
# times (paper FPO: 10 + 8 = 18) and each epoch about 16 x 3 (pairs, forward + backward; paper:
# 8 x 3), and a 3 x 256 net costs ~30x the multiply-adds of the paper's 4 x 32. The 64 steps are
# a scan, so they add run time but no compile time; the update's epochs (4-16 here) keep most of
# the work in the update, so the step count is kept everywhere. Only the built-in toy envs,
# whose presets are sized for a CPU, get smaller networks (3 x 64 actor, 3 x 128 critic): at
# the FPO++ sizes the networks, not the trivial envs, would set the cost. The Brax and DM
# Control layouts stay accelerator-sized; on a CPU shrink them with flags (--num-envs ...).
#
# What depends on the scale of a run is not taken from the authors but from the family's preset:
# the learning rate (their 1e-4 is for thousands of iterations of 4096 Isaac Lab envs: the bandit
# at 30k steps went 0.00 -> 0.04 with it, 0.00 -> 0.95 with its preset's 1e-3), the source noise
# and the epochs. "fpo++authors" is the recipe with the authors' own numbers (lr 1e-4 too).
_FPO_PLUS_PLUS = dict(
    weight_decay=1e-4, max_grad_norm=1.0, grad_clip_scope="per_network",
    advantage_clamp=100.0, ema_decay=0.95, ema_warmup_updates=500, activation="elu",
    policy_hidden=(256, 256, 256), value_hidden=(512, 512, 512),
)  # fmt: skip
_FPO_PLUS_PLUS_AUTHORS = dict(_FPO_PLUS_PLUS, learning_rate=1e-4)
_FPO_PLUS_PLUS_FPO = dict(
    ratio="per_sample", trust_region="aspo", num_pairs=16, t_sampler="beta", t_beta=1.0,
    cfm_loss_reduction="sqrt", cfm_loss_clamp=20.0, negative_advantage_cfm_clamp=20.0,
    log_ratio_clamp=10.0, log_ratio_straight_through=True, action_perturbation_std=0.02,
    integrator="euler", flow_steps=64, eval_integrator="euler", eval_flow_steps=5,
    eval_noise="zero",
)  # fmt: skip
# "cpu" for Brax bodies: the published layout shrunk to what two CPU cores train in minutes.
# 1024 envs (more barely raise a CPU's stepping rate: raw ant stepping 15k steps/s at
# 1024 vs 14k at 256) with the published batch scaled by the same factor, so each iteration
# keeps its epochs and minibatch count on a quarter of the data (ant: 81,920 env steps per
# iteration instead of 327,680), and a 3M-step budget. Flow policies also take a higher
# learning rate and source noise 0.6 (ant, FPO, 2M steps at this layout, one seed each, eval
# return start -> end: lr 3e-4 / noise 0.3 194 -> 346, lr 1e-3 / 0.3 194 -> 750, lr 3e-4 / 0.6
# 11 -> 502, lr 1e-3 / 0.6 11 -> 1013; the dated record "Ant at 3M steps" in experiments/README.md).
CPU_NUM_ENVS = 1024
# The variants at that layout: a run of one of them is already sized for a CPU.
CPU_VARIANTS = ("cpu", "cpu-fpo++")
CPU_NUM_TIMESTEPS = 3_000_000


def _cpu_layout(published: dict[str, Any]) -> dict[str, Any]:
    """The "cpu" variant of one published Brax layout (see above)."""
    scale = CPU_NUM_ENVS / published["num_envs"]
    return dict(
        num_envs=CPU_NUM_ENVS,
        batch_size=max(1, int(published["batch_size"] * scale)),
        num_timesteps=CPU_NUM_TIMESTEPS,
        num_evals=6,
        num_eval_envs=32,
    )


_FLOW_POLICY_CPU = dict(learning_rate=1e-3, flow_noise_scale=0.6)
# "cpu-fpo++" for Brax bodies: the FPO++ recipe at the "cpu" variant's scale. The layout, and
# for flow policies the learning rate and source noise, are "cpu"'s; the networks stay the
# family's (4 x 32 actor, 5 x 256 critic, SiLU) and rollouts take 10 flow steps, so that a run
# costs on a CPU about what FPO's does there (FPO++'s 3 x 256 / 3 x 512 networks and 64 steps
# would cost several times more). The trust region is wider than FPO's 0.05: on ant at 1M env
# steps (experiments/ant_cpu.py, seed 0, FPO's "cpu" setting plus the part) ASPO alone at
# clip 0.05 ended at 51 and per-sample ratios with ASPO at 41, against FPO's 156 (210 over 3
# seeds); per-sample ratios with ASPO ended at 72 at clip 0.1 and 218 at clip 0.2. A likely
# reason, not tested alone: the sum over action dims / sqrt(A) makes each log-ratio sqrt(A)
# times the mean's (2.8x on ant), so a 0.05 region clips and penalises it early.
_FPO_PLUS_PLUS_CPU = dict(
    _FPO_PLUS_PLUS, policy_hidden=(32,) * 4, value_hidden=(256,) * 5, activation="silu"
)
_FPO_PLUS_PLUS_CPU_FPO = dict(
    _FPO_PLUS_PLUS_FPO, flow_steps=10, clip_epsilon=0.2, **_FLOW_POLICY_CPU
)
_VARIANTS: dict[tuple[str, ...], dict[str, Any]] = {
    ("dm_control", "brax"): _BRAX_BEHAVIOUR,
    ("dm_control", "brax", "ppo"): _PLAYGROUND_BRAX_PPO,
    ("brax", "brax"): _BRAX_BEHAVIOUR,
    ("gridworld", "paper"): _GRIDWORLD_PAPER,
    ("gridworld", "paper", "ppo"): dict(gaussian_fixed_std=0.5),
    ("dm_control", "fast"): _DM_CONTROL_FAST,
    ("dm_control", "fast", "fpo"): dict(flow_noise_scale=0.3),
    ("dm_control", "tuned"): _DM_CONTROL_TUNED,
    ("dm_control", "tuned", "fpo"): _DM_CONTROL_TUNED_FPO,
    ("dm_control", "tuned", "ppo"): _PLAYGROUND_BRAX_PPO,
    **{(family, "fpo++"): _FPO_PLUS_PLUS for family in ("brax", "dm_control", "default")},
    ("builtin", "fpo++"): dict(_FPO_PLUS_PLUS, policy_hidden=(64,) * 3, value_hidden=(128,) * 3),
    **{
        (family, "fpo++authors"): _FPO_PLUS_PLUS_AUTHORS
        for family in ("builtin", "brax", "dm_control", "default")
    },
    **{
        (f, v, "fpo"): _FPO_PLUS_PLUS_FPO
        for f in ("builtin", "brax", "dm_control", "default")
        for v in ("fpo++", "fpo++authors")
    },
    **{(env, "cpu"): _cpu_layout(published) for env, published in _BRAX_PPO.items()},
    # ant measured with MJX (raw stepping on this CPU: mjx 12-13k steps/s, spring 14-15k).
    ("ant", "cpu"): dict(_cpu_layout(_BRAX_PPO["ant"]), backend="mjx"),
    **{(env, "cpu", algo): _FLOW_POLICY_CPU for env in _BRAX_PPO for algo in ("fpo", "dppo")},
    **{
        (env, "cpu-fpo++"): dict(_cpu_layout(published), **_FPO_PLUS_PLUS_CPU)
        for env, published in _BRAX_PPO.items()
    },
    ("ant", "cpu-fpo++"): dict(_cpu_layout(_BRAX_PPO["ant"]), **_FPO_PLUS_PLUS_CPU, backend="mjx"),
    **{(env, "cpu-fpo++", "fpo"): _FPO_PLUS_PLUS_CPU_FPO for env in _BRAX_PPO},
    **{(env, "cpu-fpo++", "dppo"): _FLOW_POLICY_CPU for env in _BRAX_PPO},
}


def preset_family(env: str) -> str:
    """Which preset table applies to ``env``: "builtin", "brax" (a published Brax PPO config),
    "dm_control" (FPO paper), or "default" (TrainConfig defaults)."""
    if env in _TOY:
        return "builtin"
    if env in _BRAX_PPO:
        return "brax"
    if envs.is_dm_control_name(env):
        return "dm_control"
    return "default"


_FAMILY_SOURCE = {
    "builtin": "fpo_jax toy-env preset (measured on a 2-core CPU)",
    "brax": "Brax PPO published settings (Brax training notebook)",
    "dm_control": "FPO paper, Playground DM Control hyperparameters",
    "default": "TrainConfig defaults",
}


def preset_variants(env: str) -> tuple[str, ...]:
    """The named variants of ``env``'s preset (besides "default"): its own and its family's."""
    scopes = {env, preset_family(env)}
    return tuple(sorted({k[1] for k in _VARIANTS if k[0] in scopes}))


@dataclasses.dataclass(frozen=True)
class Layer:
    """One named layer of a preset: the settings it sets, in the order layers apply."""

    name: str
    settings: Mapping[str, Any]


def preset_layers(
    env: str, algo: str = "fpo", variant: str = "default", *, family: str | None = None
) -> list[Layer]:
    """The ordered layers :func:`preset` applies over ``TrainConfig``'s defaults (a later layer
    wins): the family table, the env's own rows, the algorithm's registry overrides, the env's
    settings that win over the algorithm's, then the variant's (for every algorithm, then
    ``algo``'s own). Layers that set nothing are left out. Arguments as :func:`preset`."""
    if algo not in ALGORITHMS:
        raise ConfigError(f"algo={algo!r} is not one of {tuple(ALGORITHMS)}.")
    if family is None:
        canonical = envs.canonical_name(env) if env else env
        family = preset_family(canonical)
    else:
        canonical = env
    table = {"builtin": _TOY.get(canonical, {}), "brax": _BRAX_PPO.get(canonical, {}),
             "dm_control": _DM_CONTROL_FPO, "default": {}}[family]  # fmt: skip
    layers = [
        Layer(
            f"family: {_FAMILY_SOURCE[family]}"
            + (f", {canonical}" if table and family != "dm_control" else ""),
            table,
        ),
        Layer(
            f"env: {canonical} (the paper's discount)",
            {"discount": _DM_CONTROL_DISCOUNT[canonical]}
            if family == "dm_control" and canonical in _DM_CONTROL_DISCOUNT
            else {},
        ),
        Layer(f"env: {canonical}, flow policies", _FLOW_POLICY_ENV.get(canonical, {})),
        Layer(f"algorithm: {algo}", ALGORITHMS[algo].preset_overrides.get(family, {})),
        Layer(f"env: {canonical}, every algorithm", _ENV_OVER_ALGO.get(canonical, {})),
    ]
    if variant != "default":
        # An env's own variant wins over its family's of the same name.
        scope = next((s for s in (canonical, family) if (s, variant) in _VARIANTS), None)
        if scope is None:
            raise ConfigError(
                f"variant={variant!r} is not one of {('default', *preset_variants(canonical))} "
                f"for env {canonical!r}."
            )
        layers.append(Layer(f"variant: {variant}", _VARIANTS[(scope, variant)]))
        layers.append(
            Layer(f"variant: {variant}, {algo}", _VARIANTS.get((scope, variant, algo), {}))
        )
    # Settings another algorithm reads but ``algo`` does not keep TrainConfig's defaults, so a
    # changed value of one is recognisable as the user's; another algorithm's own settings
    # (its settings class) are not ``algo``'s at all.
    unread = unread_settings(algo)
    own = algorithm_setting_names(algo)

    def is_algos(name: str) -> bool:
        return name not in unread and (name in TRAIN_CONFIG_FIELDS or name in own)

    layers = [Layer(x.name, {k: v for k, v in x.settings.items() if is_algos(k)}) for x in layers]
    return [x for x in layers if x.settings]


def preset(
    env: str, algo: str = "fpo", variant: str = "default", *, family: str | None = None
) -> TrainConfig:
    """Default config for an env and algorithm, with ``preset_source`` saying where it came from.

    * Playground DM Control tasks: the FPO paper's hyperparameters (and its tuned PPO / DPPO).
    * Brax envs with a published Brax PPO config: that config (entropy bonus only for PPO).
    * Built-in toy envs: small settings measured to learn on a CPU.
    * Anything else: ``TrainConfig`` defaults (a mid-sized layout, FPO paper optimiser).

    Then the algorithm's own overrides for that family (``fpo_jax.agents.ALGORITHMS``), then
    the named ``variant``'s, if not "default" (``preset("gridworld", algo, variant="paper")``:
    the FPO authors' GridWorld settings, see ``_GRIDWORLD_PAPER``). Settings that another
    algorithm reads but ``algo`` does not (:func:`fpo_jax.agents.unread_settings`) keep their
    ``TrainConfig`` defaults, so a changed value of one is recognisable as the user's. The
    layers, by name: :func:`preset_layers`; each setting with the layer that set it:
    :func:`explain`.

    ``family``: use this table instead of the env's own, with ``env`` only as a label (for an
    env object of a class no preset knows, :func:`fpo_jax.train.train` passes its class name
    and ``"default"``). Raises ConfigError for an unknown algorithm or variant and ValueError
    for an unknown env.
    """
    layers = preset_layers(env, algo, variant, family=family)
    if family is None:
        canonical = envs.canonical_name(env) if env else env
        family = preset_family(canonical)
    else:
        canonical = env
    overrides: dict[str, Any] = {}
    for layer in layers:
        overrides.update(layer.settings)
    source = _FAMILY_SOURCE[family]
    if variant != "default":
        source = f"{source}, variant {variant!r}"
    return TrainConfig(env=canonical, algo=algo, variant=variant, preset_source=source, **overrides)


def object_preset(
    env: Any, algo: str = "fpo", variant: str = "default"
) -> tuple[TrainConfig, str | None]:
    """The preset of an env object and the registered name it came from.

    An env of a class the registries know (a built-in ``Bandit``, a Brax ``Ant``, a Playground
    DM Control task) gets that env's preset, labelled with its registered name (or its class
    name, when several registered names share the class and their presets agree, as
    CartpoleBalance and CartpoleSwingup do). Any other env gets the algorithm's defaults
    (the "default" table), labelled with its class name, and the name returned is None.
    """
    label = type(env).__name__
    names = envs.registered_names(env)
    configs = [preset(n, algo, variant) for n in names]
    computed = [dataclasses.replace(c, env="", preset_source="") for c in configs]
    if names and all(c == computed[0] for c in computed):
        name = names[0]
        source = f"{configs[0].preset_source} (an env object of class {label}: {name}'s preset)"
        config = dataclasses.replace(
            configs[0], env=name if len(names) == 1 else label, preset_source=source
        )
        return config, name
    config = preset(label, algo, variant, family="default")
    source = f"{config.preset_source} (an env object of class {label}, which no preset knows)"
    return dataclasses.replace(config, preset_source=source), None


def base_preset(config: TrainConfig, env: Any = None) -> tuple[TrainConfig, list[Layer]]:
    """The preset ``config`` started from (its env, algorithm and variant), and its layers.
    ``env``: the env object the run trains on, if it was given as one (else ``config.env`` is
    a registered name, or a label of the default table)."""
    if env is not None and not isinstance(env, str):
        base, name = object_preset(env, config.algo, config.variant)
        family = None if name is not None else "default"
        layers = preset_layers(name or config.env, config.algo, config.variant, family=family)
        return base, layers
    try:
        name = envs.canonical_name(config.env)
    except ConfigError:
        name = None
    family = None if name is not None else "default"
    return (
        preset(name or config.env, config.algo, config.variant, family=family),
        preset_layers(name or config.env, config.algo, config.variant, family=family),
    )


# What the CLI adds to preset_source when it starts a Brax body from its CPU variant because
# no accelerator is present (the machine's layer); explain() names that layer.
CPU_MACHINE_NOTE = (
    " (no accelerator: the CPU-sized variant; --variant default for the published layout)"
)
DEFAULTS_LAYER = "TrainConfig default"
USER_LAYER = "your setting"
_LABELS = ("env", "algo", "variant")


def explain(
    env: str | TrainConfig,
    algo: str = "fpo",
    variant: str = "default",
    *,
    changes: Mapping[str, Any] | None = None,
    env_object: Any = None,
) -> list[tuple[str, Any, str]]:
    """Every setting, its value and the layer that set it, in field order:
    ``[(name, value, layer), ...]``.

    ``env`` is an env name (with ``algo`` and ``variant`` as :func:`preset`, and ``changes`` as
    a user's flags on top), or a whole config (``env_object``: the env object it trains on, if
    any): then each value that differs from the preset of its env, algorithm and variant is
    "your setting" (a flag, an override). A layer's name says where it comes from ("family:
    Brax PPO published settings ...", "algorithm: ppo", "variant: fpo++", ...);
    "TrainConfig default" is what no layer sets; env, algo and variant are "your choice".
    """
    if isinstance(env, TrainConfig):
        config = env
    else:
        config = with_changes(preset(env, algo, variant), changes or {})
    base, layers = base_preset(config, env_object)
    source: dict[str, str] = {}
    for layer in layers:
        source.update(dict.fromkeys(layer.settings, layer.name))
    rows = []
    # The algorithm's own settings stand where their pairs are kept, one row each.
    names = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "preset_source"]
    at = names.index("algo_settings")
    names[at : at + 1] = list(algorithm_setting_names(config.algo))
    own_default = f"{config.algo} default"
    for name in names:
        value = getattr(config, name)
        if name == "variant" and config.preset_source.endswith(CPU_MACHINE_NOTE):
            layer = "machine: no accelerator"
        elif name in _LABELS:
            layer = "your choice"
        elif value != getattr(base, name):
            layer = USER_LAYER
        else:
            fallback = own_default if name in algorithm_setting_names(config.algo) else None
            layer = source.get(name, fallback or DEFAULTS_LAYER)
        rows.append((name, value, layer))
    return rows


def format_explanation(rows: list[tuple[str, Any, str]]) -> str:
    """:func:`explain`'s rows as an aligned plain-text table (what ``--show-config`` prints),
    under a ``# section`` line per section of the config (:data:`fpo_jax.config.SECTIONS`;
    the algorithm's own settings under ``# <algo>'s own settings``)."""
    algo = next((value for name, value, _ in rows if name == "algo"), "the algorithm")
    section_of = {name: title for title, names in SECTIONS.items() for name in names}
    cells = [("setting", "value", "set by")] + [(n, repr(v), w) for n, v, w in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(2)]
    lines, current = [], None
    for (a, b, c), name in zip(cells, [None, *(r[0] for r in rows)], strict=True):
        title = None if name is None else section_of.get(name, f"{algo}'s own settings")
        if title is not None and title != current:
            lines.append(f"# {title}")
            current = title
        lines.append(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}")
    return "\n".join(lines)


def with_changes(config: TrainConfig, changes: Mapping[str, Any]) -> TrainConfig:
    """``config`` with ``changes`` applied as a user's flags are: a setting that follows
    another in its algorithm's registry entry (DPPO: ``eval_sigma`` follows ``dppo_sigma``)
    takes the leader's new value when only the leader is changed and the two were equal. A
    name of the algorithm's own settings class goes to ``algo_settings``; a name that is
    neither a config field nor one of the algorithm's settings is refused (ConfigError)."""
    algo = changes.get("algo", config.algo)
    own_names = algorithm_setting_names(algo)
    flat = {k: v for k, v in changes.items() if k not in own_names}
    own = {k: v for k, v in changes.items() if k in own_names}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    # Another algorithm's own setting is refused by replace, in a sentence naming its owner.
    unknown = sorted(n for n in set(flat) - fields if not setting_owners(n))
    if unknown:
        mine = f" nor a setting of algo={algo!r}" + (
            f" (its own: {', '.join(own_names)})" if own_names else ""
        )
        raise ConfigError(f"{unknown[0]} is not a config field{mine}.")
    new = replace(config, **flat)
    if own:
        new = with_algorithm_settings(new, own)
    entry = ALGORITHMS.get(new.algo)
    for follower, leader in (entry.follows if entry else {}).items():
        linked = getattr(config, follower) == getattr(config, leader)
        if leader in changes and follower not in changes and linked:
            new = replace(new, **{follower: getattr(new, leader)})
    return new
