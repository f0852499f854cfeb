"""Training configuration: one frozen dataclass, per-env presets, and validation.

``TrainConfig`` is flat on purpose: every field is a CLI flag of the same name
(``--num-timesteps``, ``--clip-epsilon``...). Presets (:func:`preset`) supply the defaults for an
environment and algorithm; explicit flags override them. :func:`validate` runs before anything is
compiled and fails with one sentence naming the field.

Batch layout (Brax semantics): each training iteration collects
``batch_size * num_minibatches`` trajectories of ``unroll_length`` steps, by stepping
``num_envs`` environments for ``batch_size * num_minibatches / num_envs`` consecutive unrolls;
then ``num_epochs`` passes of ``num_minibatches`` gradient steps on minibatches of ``batch_size``
trajectories.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import tyro

from fpo_jax.flow import DeterministicIntegrator, Integrator, NoiseKind, TimeKind
from fpo_jax.loss import Ratio, TrustRegion, Weighting

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


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Field names are the CLI flags."""

    env: str = "ant"
    """Environment name: a Brax env (ant, hopper...), a MuJoCo Playground env (CartpoleBalance,
    CheetahRun...) or a built-in toy env (gridworld, bandit, bandit2d)."""
    algo: str = "fpo"
    """Algorithm, a name in fpo_jax.agents.ALGORITHMS: fpo (flow policy, FPO), ppo (tanh-Gaussian
    PPO baseline), dppo (denoising-MDP baseline), or one you registered."""
    backend: str | None = None
    """Brax physics backend (generalized, positional, spring, mjx); None: Brax's default."""
    impl: str = "jax"
    """MuJoCo Playground implementation; 'jax' (MJX) is much faster than 'warp' on CPU."""
    env_kwargs: tuple[str, ...] = ()
    """Arguments of the env's constructor (make_env), 'name=value' each, the value read as JSON
    (e.g. 'move_threshold=0.462' for the gridworld)."""
    seed: int = 0
    """Seed of the first (or only) run."""
    num_seeds: int = 1
    """Train this many seeds (seed, seed+1, ...) as one vmapped program."""
    sweep: tuple[str, ...] = ()
    """Train a grid of settings in one program: 'name=v1,v2,...' per swept field (only fields
    that change no array shape: learning_rate, clip_epsilon, value_loss_coef, entropy_cost,
    discount, gae_lambda, reward_scaling, velocity_output_scale, flow_noise_scale,
    cfm_loss_clamp, log_ratio_clamp, pair_log_ratio_clamp, max_grad_norm, dppo_sigma,
    gaussian_fixed_std, eval_sigma); the grid is the product, times num_seeds. On the CLI
    repeat --sweep per field."""
    num_devices: int | None = None
    """Shard the env batch over this many devices (None: every device JAX sees, on all hosts)."""
    distributed: bool = False
    """Call jax.distributed.initialize first (multi-host; reads JAX_COORDINATOR_ADDRESS,
    JAX_NUM_PROCESSES, JAX_PROCESS_ID, or auto-detects SLURM / TPU / ... clusters)."""

    num_timesteps: int = 1_000_000
    """Environment steps to train for (rounded up to whole calls of the compiled step)."""
    num_envs: int = 256
    """Environments stepped in parallel during rollouts."""
    episode_length: int = 1000
    """Time limit of an episode, in env steps (truncation, not termination)."""
    action_repeat: int = 1
    """Each policy action is applied this many simulator steps."""
    unroll_length: int = 30
    """Steps per trajectory; GAE bootstraps from the critic after the last one."""
    batch_size: int = 256
    """Trajectories (of unroll_length steps) per minibatch."""
    num_minibatches: int = 8
    """Gradient steps per epoch (each on batch_size trajectories)."""
    num_epochs: int = 4
    """Passes over each iteration's data (Brax: num_updates_per_batch)."""
    iterations_per_call: int = 1
    """Training iterations scanned inside one call of the compiled step (between log points)."""

    learning_rate: float = 3e-4
    """Adam step size (paper: 3e-4)."""
    lr_schedule: Literal["constant", "linear"] = "constant"
    """'linear' decays the step size to 0 over the run."""
    max_grad_norm: float | None = None
    """Clip gradients to this global norm; None: no clipping (the paper's setting)."""
    grad_clip_per_network: bool = False
    """Apply max_grad_norm to the policy's and the critic's gradients separately (the FPO
    authors' GridWorld code: one optimizer per network) instead of to both together, where a
    large critic gradient also shrinks the policy's step."""
    discount: float = 0.99
    """Discount factor gamma."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    reward_scaling: float = 1.0
    """Rewards are multiplied by this before GAE (paper: 10 on DM Control)."""
    normalize_observations: bool = True
    """Normalise observations with running mean and std."""
    obs_norm: Literal["welford", "reference"] = "welford"
    """'welford': exact running statistics, updated every env step, used from the next
    iteration (so the first minibatch's ratio is exactly 1). 'reference': the FPO authors' code,
    to reproduce their numbers: its summed variance keeps only the newest batch (the std shrinks
    about as 1/sqrt(iterations)), it is updated once per iteration before the update epochs, and
    observations are not clipped."""
    refresh_initial_states: bool = True
    """Give auto-reset episodes fresh random initial states each iteration (one batched reset);
    False reuses each env's first state for the whole run, as Brax, Playground and the FPO
    authors' code do."""
    normalize_advantages: bool = True
    """Normalise advantages per minibatch."""
    value_loss_coef: float = 0.25
    """Weight of the critic's squared error in the loss."""
    entropy_cost: float = 0.0
    """Entropy bonus (Gaussian PPO only)."""
    clip_epsilon: float = 0.05
    """Trust-region size e of the clipped surrogate (paper FPO: 0.05)."""

    policy_hidden: tuple[int, ...] = (32, 32, 32, 32)
    """Hidden sizes of the velocity MLP (FPO, DPPO) or Gaussian policy MLP (PPO)."""
    value_hidden: tuple[int, ...] = (256, 256, 256, 256, 256)
    """Hidden sizes of the critic MLP."""
    activation: Literal["silu", "relu", "tanh"] = "silu"
    """Hidden-layer activation of the policy and critic MLPs (paper: SiLU; the FPO authors'
    GridWorld: ReLU)."""
    network_init: Literal["flax", "torch"] = "flax"
    """Initialisation of the default networks' layers: Flax's (LeCun-normal kernels, zero
    biases) or PyTorch's nn.Linear default (kernels and biases U(+-1/sqrt(fan_in)), the FPO
    authors' GridWorld)."""
    flow_time_input: Literal["embedding", "raw"] = "embedding"
    """Flow policies: the velocity MLP sees the flow time as its 8-dim sin/cos embedding (paper)
    or as t itself (the FPO authors' GridWorld)."""
    velocity_output_scale: float = 0.25
    """The velocity MLP's output is multiplied by this (paper: 0.25)."""
    flow_noise_scale: float = 1.0
    """Flow policies: std of the flow's source noise in pre-tanh action space (paper: 1). The
    flow models raw_action / flow_noise_scale, so an untrained flow (close to the identity map)
    acts with noise of about this std; below 1 it explores less at the start."""

    num_pairs: int = 8
    """N: Monte-Carlo (t, eps) pairs per action for the CFM loss."""
    t_sampler: TimeKind = "grid"
    """Flow times of the pairs: 'grid' = the rollout sampler's own times {1/K, ..., 1} with
    K = flow_steps ({0.1, ..., 1.0} for the paper's 10 steps, as the authors draw them);
    'uniform' = U(0, 1)."""
    cfm_weighting: Weighting = "eps"
    """CFM loss: 'eps' (paper's eps-MSE) or 'velocity' (u-MSE)."""
    ratio: Ratio = "mean"
    """'mean': one ratio from the pair-averaged losses (paper); 'per_sample': one per pair (FPO++)."""
    trust_region: TrustRegion = "ppo"
    """'ppo': clipped surrogate; 'aspo': FPO++'s asymmetric trust region."""
    cfm_loss_clamp: float | None = None
    """FPO++: clamp each CFM loss to at most this before the ratio (None: off)."""
    log_ratio_clamp: float | None = None
    """FPO++: clamp the log-ratio to [-c, c] before exp. None: off for ratio='mean', and 3 for
    ratio='per_sample' (as the FPO authors' code clamps per-pair ratios); 'inf' turns it off."""
    pair_log_ratio_clamp: float | None = None
    """Clamp each pair's loss difference l_old_i - l_new_i to [-c, c] before the pairs are
    averaged (ratio='mean'), as the FPO authors' GridWorld code does with c = 3; None: off."""
    pair_storage: Literal["stored", "key"] = "stored"
    """'stored': keep each action's N (t, eps) pairs in the rollout buffer; 'key': keep one PRNG
    key per action and regenerate the pairs in the loss (less memory, a little more compute)."""

    integrator: DeterministicIntegrator = "euler"
    """Integrator used to sample actions during rollouts."""
    flow_steps: int = 10
    """Integration steps per action during rollouts (and DPPO's chain length)."""
    dppo_sigma: float = 0.05
    """Per-step noise std of the DPPO baseline's stochastic sampler."""
    gaussian_fixed_std: float | None = None
    """Gaussian PPO only: a fixed, state-independent std of the pre-tanh Gaussian instead of the
    learned softplus scale (the FPO paper's GridWorld baseline: 0.5); None: learned."""

    num_evals: int = 10
    """Evaluations (and checkpoints) over the run, plus one before training."""
    num_eval_envs: int = 128
    """Episodes per evaluation."""
    eval_integrator: Integrator = "euler"
    """Integrator used at evaluation (flow policies)."""
    eval_flow_steps: int = 10
    """Integration steps at evaluation."""
    eval_noise: NoiseKind = "random"
    """Initial noise of evaluation samples: 'zero' is FPO++'s zero-noise sampling."""
    eval_sigma: float = 0.0
    """Per-step noise of the 'stochastic' eval integrator."""

    run_dir: str | None = None
    """Where config.json, metrics.jsonl, checkpoints/ and plots go; None: nothing written. A
    directory that already holds a run is refused unless --resume or --overwrite is given."""
    resume: str | None = None
    """Resume from the latest readable checkpoint in this run directory (any working directory;
    the run may have been moved or copied)."""
    overwrite: bool = False
    """Delete the run already in --run-dir (config, metrics, checkpoints, plots) and start anew."""
    checkpoint: bool = True
    """Save orbax checkpoints of the whole train state at each evaluation."""
    progress: bool = True
    """Show a progress bar on a terminal; otherwise (or with --no-progress) print one plain line
    per evaluation."""
    compile_cache: bool = True
    """CLI only: keep compiled programs in a persistent cache (~/.cache/fpo_jax/xla, or
    $JAX_COMPILATION_CACHE_DIR), so a second run of the same config skips compilation."""
    tensorboard: bool = False
    """Also write TensorBoard scalars to run_dir/tensorboard."""
    wandb_project: str | None = None
    """Also log to this Weights & Biases project."""

    # Bookkeeping, not a setting: no CLI flag.
    preset_source: tyro.conf.Suppress[str] = field(default="TrainConfig defaults", compare=False)
    """Where the defaults came from (set by presets)."""

    # Derived sizes --------------------------------------------------------------------------
    @property
    def num_unrolls(self) -> int:
        """Consecutive unrolls each env performs per iteration."""
        return self.batch_size * self.num_minibatches // self.num_envs

    @property
    def env_steps_per_iteration(self) -> int:
        return self.batch_size * self.num_minibatches * self.unroll_length * self.action_repeat

    @property
    def env_steps_per_call(self) -> int:
        return self.env_steps_per_iteration * self.iterations_per_call

    @property
    def env_options(self) -> dict[str, Any]:
        """``env_kwargs`` as keyword arguments of ``make_env``."""
        out = {}
        for entry in self.env_kwargs:
            name, sep, value = entry.partition("=")
            if not sep:
                raise ConfigError(f"env_kwargs entry {entry!r} is not of the form name=value.")
            try:
                out[name.strip()] = json.loads(value)
            except json.JSONDecodeError as e:
                raise ConfigError(f"env_kwargs entry {entry!r}: {value!r} is not JSON.") from e
        return out

    @property
    def num_members(self) -> int:
        """Runs trained together: the sweep grid's size times num_seeds."""
        size = 1
        for entry in self.sweep:
            size *= len(entry.partition("=")[2].split(","))
        return size * self.num_seeds

    @property
    def num_calls(self) -> int:
        """Calls of the compiled step needed to reach num_timesteps (rounded up)."""
        return max(1, -(-self.num_timesteps // self.env_steps_per_call))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"Unknown config fields {unknown}.")
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**d)


# Hyperparameters that change no array shape: they can be swept inside one compiled program
# (carried as traced values in the train state; see fpo_jax.trainer). Every other field is
# static: it changes shapes or the program's structure (N pairs, flow steps, network sizes, env
# counts, choices), so each value needs its own program.
SWEEPABLE = (
    "learning_rate",
    "clip_epsilon",
    "value_loss_coef",
    "entropy_cost",
    "discount",
    "gae_lambda",
    "reward_scaling",
    "velocity_output_scale",
    "flow_noise_scale",
    "cfm_loss_clamp",
    "log_ratio_clamp",
    "pair_log_ratio_clamp",
    "max_grad_norm",
    "dppo_sigma",
    "gaussian_fixed_std",
    "eval_sigma",
)


class ConfigError(ValueError):
    """An invalid configuration, reported before anything is compiled."""


def literal_choices() -> dict[str, tuple[Any, ...]]:
    """Each field typed ``Literal[...]`` -> its allowed values (the one place they are listed)."""
    hints = typing.get_type_hints(TrainConfig, include_extras=True)
    return {
        f.name: typing.get_args(hints[f.name])
        for f in dataclasses.fields(TrainConfig)
        if typing.get_origin(hints[f.name]) is Literal
    }


def _algorithm_names() -> tuple[str, ...]:
    from fpo_jax.agents import ALGORITHMS  # local import: agents import this module

    return tuple(ALGORITHMS)


def validate(config: TrainConfig) -> TrainConfig:
    """Check a config; raise ConfigError with one sentence naming the offending field."""
    c = config

    def fail(msg: str) -> None:
        raise ConfigError(msg)

    for name, choices in literal_choices().items():
        if getattr(c, name) not in choices:
            fail(f"{name}={getattr(c, name)!r} is not one of {choices}.")
    algorithms = _algorithm_names()
    if c.algo not in algorithms:
        fail(f"algo={c.algo!r} is not one of {algorithms}.")
    positive_ints = [
        "num_timesteps", "num_envs", "episode_length", "action_repeat", "unroll_length",
        "batch_size", "num_minibatches", "num_epochs", "iterations_per_call", "num_pairs",
        "flow_steps", "num_eval_envs", "eval_flow_steps", "num_seeds",
    ]  # fmt: skip
    for name in positive_ints:
        value = getattr(c, name)
        if not isinstance(value, int) or value <= 0:
            fail(f"{name} must be a positive integer, got {value!r}.")
    if c.num_evals < 0:
        fail(f"num_evals must be >= 0, got {c.num_evals}.")
    positive = ["learning_rate", "clip_epsilon", "reward_scaling", "velocity_output_scale",
                "flow_noise_scale"]  # fmt: skip
    for name in positive:
        if not getattr(c, name) > 0:
            fail(f"{name} must be positive, got {getattr(c, name)!r}.")
    for name in ["discount", "gae_lambda"]:
        if not 0.0 <= getattr(c, name) <= 1.0:
            fail(f"{name} must lie in [0, 1], got {getattr(c, name)!r}.")
    for name in ["value_loss_coef", "entropy_cost", "dppo_sigma", "eval_sigma"]:
        if getattr(c, name) < 0:
            fail(f"{name} must be >= 0, got {getattr(c, name)!r}.")
    for name in [
        "max_grad_norm", "cfm_loss_clamp", "log_ratio_clamp", "pair_log_ratio_clamp",
        "gaussian_fixed_std",
    ]:  # fmt: skip
        value = getattr(c, name)
        if value is not None and not value > 0:
            fail(f"{name} must be positive or None, got {value!r}.")
    if (c.batch_size * c.num_minibatches) % c.num_envs:
        fail(
            f"batch_size * num_minibatches ({c.batch_size} * {c.num_minibatches} = "
            f"{c.batch_size * c.num_minibatches}) must be a multiple of num_envs ({c.num_envs})."
        )
    if c.algo == "dppo" and c.dppo_sigma <= 0:
        fail("dppo_sigma must be positive for algo='dppo' (its likelihoods need noise).")
    if not c.policy_hidden or not c.value_hidden or min(c.policy_hidden + c.value_hidden) <= 0:
        fail("policy_hidden and value_hidden must be non-empty tuples of positive sizes.")
    if c.sweep:
        parse_sweep(c)
    c.env_options  # noqa: B018 (raises ConfigError if malformed)
    if c.num_devices is not None and c.num_devices <= 0:
        fail(f"num_devices must be a positive integer or None, got {c.num_devices!r}.")
    return c


def parse_sweep(config: TrainConfig) -> dict[str, tuple[float, ...]]:
    """``config.sweep`` ('name=v1,v2' entries) -> ``{name: values}``; ConfigError if invalid.

    Each value must make a valid config on its own (e.g. a positive clip_epsilon).
    """
    grid: dict[str, tuple[float, ...]] = {}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for entry in config.sweep:
        name, sep, values = entry.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not values.strip():
            fail_sweep(f"--sweep {entry!r} is not of the form name=v1,v2,... .")
        if name not in fields:
            fail_sweep(f"--sweep {name!r} is not a config field.")
        if name not in SWEEPABLE:
            fail_sweep(
                f"--sweep {name!r}: {name} is static (it changes array shapes or the program), "
                f"so each value needs its own run; sweepable: {', '.join(SWEEPABLE)}."
            )
        if name in grid:
            fail_sweep(f"--sweep {name!r} is given twice.")
        try:
            parsed = tuple(float(v) for v in values.split(","))
        except ValueError:
            fail_sweep(f"--sweep {entry!r}: the values must be numbers.")
        for value in parsed:
            try:
                validate(dataclasses.replace(config, sweep=(), **{name: value}))
            except ConfigError as e:
                fail_sweep(f"--sweep {name}={value:g}: {e}")
        grid[name] = parsed
    return grid


def fail_sweep(message: str) -> typing.NoReturn:
    raise ConfigError(message)


def sweep_members(config: TrainConfig) -> list[dict[str, float]]:
    """Every member of the run: the sweep grid's settings (outer) x the seeds (inner).

    Each member is ``{swept name: value, ..., "seed": seed}``; a run without a sweep has
    ``num_seeds`` members ``{"seed": s}``.
    """
    grid = parse_sweep(config)
    settings = [
        dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())
    ]
    return [
        {**setting, "seed": config.seed + i}
        for setting in settings
        for i in range(config.num_seeds)
    ]


# ----------------------------------------------------------------------------------------------
# Presets
# ----------------------------------------------------------------------------------------------

# FPO paper (McAllister et al., arXiv 2507.21053), Playground DM Control experiments (2048 envs, unroll 30, 1024 x 32
# minibatches, 16 epochs, lr 3e-4, clip 0.05, N = 8, 10 Euler steps, discount 0.995, GAE 0.95,
# reward scale 10, value coefficient 0.25, no entropy term).
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
# (experiments/results/ant_cpu_2M.md).
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
    activation="relu", network_init="torch", flow_time_input="raw", grad_clip_per_network=True,
    value_loss_coef=1.0, env_kwargs=("move_threshold=0.46211715726000974",),
)  # fmt: skip
# "fast" for the DM Control tasks: a layout for a CPU budget, searched with sweeps on
# CartpoleBalance and CartpoleSwingup (experiments/fast_preset.py, results/fast_preset.md):
# 256 envs, 8 minibatches of 128 x 30 steps (30,720 steps per iteration), 4 epochs: a quarter
# of the paper layout's gradient work per env step. Over lr {3e-4, 1e-3} x clip {0.05, 0.1,
# 0.2} the paper's 3e-4 and 0.05 stayed best for FPO, and a source noise of 0.3 (vs 1) helped
# (CartpoleBalance 417 -> 473 at 1M steps). Per env step it matches the paper settings on
# CartpoleBalance and trails them on CartpoleSwingup; it needs ~3.5x less time per step, so at
# equal wall time on a CPU it leads on both.
_DM_CONTROL_FAST = dict(
    num_envs=256, batch_size=128, num_minibatches=8, unroll_length=30, num_epochs=4,
    num_timesteps=2_000_000, num_evals=10, num_eval_envs=64,
)  # fmt: skip
_VARIANTS: dict[tuple[str, ...], dict[str, Any]] = {
    ("gridworld", "paper"): _GRIDWORLD_PAPER,
    ("gridworld", "paper", "ppo"): dict(gaussian_fixed_std=0.5),
    ("dm_control", "fast"): _DM_CONTROL_FAST,
    ("dm_control", "fast", "fpo"): dict(flow_noise_scale=0.3),
}


def preset_family(env: str) -> str:
    """Which preset table applies to ``env``: "builtin", "brax" (a published Brax PPO config),
    "dm_control" (FPO paper), or "default" (TrainConfig defaults)."""
    from fpo_jax import envs  # local import: config must stay importable without simulators

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


def preset(env: str, algo: str = "fpo", variant: str = "default") -> TrainConfig:
    """Default config for an env and algorithm, with ``preset_source`` saying where it came from.

    * Playground DM Control tasks: the FPO paper's hyperparameters (and its tuned PPO / DPPO).
    * Brax envs with a published Brax PPO config: that config (entropy bonus only for PPO).
    * Built-in toy envs: small settings measured to learn on a CPU.
    * Anything else: ``TrainConfig`` defaults (a mid-sized layout, FPO paper optimiser).

    Then the algorithm's own overrides for that family (``fpo_jax.agents.ALGORITHMS``), then
    the named ``variant``'s, if not "default" (``preset("gridworld", algo, variant="paper")``:
    the FPO authors' GridWorld settings, see ``_GRIDWORLD_PAPER``).
    Raises ConfigError for an unknown algorithm or variant and ValueError for an unknown env.
    """
    from fpo_jax import envs
    from fpo_jax.agents import ALGORITHMS

    if algo not in ALGORITHMS:
        raise ConfigError(f"algo={algo!r} is not one of {tuple(ALGORITHMS)}.")
    canonical = envs.canonical_name(env) if env else env
    family = preset_family(canonical)
    overrides: dict[str, Any] = dict(
        {"builtin": _TOY.get(canonical, {}), "brax": _BRAX_PPO.get(canonical, {}),
         "dm_control": _DM_CONTROL_FPO, "default": {}}[family]
    )  # fmt: skip
    if family == "dm_control" and canonical in _DM_CONTROL_DISCOUNT:
        overrides["discount"] = _DM_CONTROL_DISCOUNT[canonical]
    overrides.update(_FLOW_POLICY_ENV.get(canonical, {}))  # read by flow policies only
    overrides.update(ALGORITHMS[algo].preset_overrides.get(family, {}))
    source = _FAMILY_SOURCE[family]
    if variant != "default":
        # An env's own variant wins over its family's of the same name.
        scope = next((s for s in (canonical, family) if (s, variant) in _VARIANTS), None)
        if scope is None:
            raise ConfigError(
                f"variant={variant!r} is not one of {('default', *preset_variants(canonical))} "
                f"for env {canonical!r}."
            )
        overrides.update(_VARIANTS[(scope, variant)])
        overrides.update(_VARIANTS.get((scope, variant, algo), {}))
        source = f"{source}, variant {variant!r}"
    return TrainConfig(env=canonical, algo=algo, preset_source=source, **overrides)


def replace(config: TrainConfig, **changes: Any) -> TrainConfig:
    """``dataclasses.replace`` that reports unknown field names in one sentence."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ConfigError(f"Unknown config fields {unknown}; see `python -m fpo_jax.train --help`.")
    return dataclasses.replace(config, **changes)
