"""Training configuration: one frozen dataclass and the checks of its own fields.

``TrainConfig`` holds the settings every algorithm shares, flat: every field is a CLI flag of
the same name (``--num-timesteps``, ``--clip-epsilon``...). An algorithm's own settings belong to
its settings class (``FPOSettings``, ``PPOSettings``, ``DPPOSettings`` in the algorithms'
modules of :mod:`fpo_jax.agents`), registered with the algorithm (:data:`ALGORITHM_SETTINGS`);
a config keeps the chosen algorithm's in ``algo_settings`` and they are set and read by name
like fields (``TrainConfig(num_pairs=16).num_pairs``, ``--num-pairs 16``), while a config of
another algorithm cannot hold them. Presets (:func:`fpo_jax.presets.preset`) supply the
defaults for an environment and algorithm; explicit flags override them. :func:`validate` runs
before anything is compiled and fails with one sentence naming the field. Checks that need a
registry (is the algorithm registered, does the env exist) live where the registries are known:
:func:`fpo_jax.train.preflight`.

This module sits at the bottom of the package: it imports only :mod:`fpo_jax.errors`, and owns
the choices of every ``Literal``-typed setting (the functions in :mod:`fpo_jax.loss` and
:mod:`fpo_jax.flow` check their arguments against the same aliases).

Batch layout (Brax semantics): each training iteration collects
``batch_size * num_minibatches`` trajectories of ``unroll_length`` steps, by stepping
``num_envs`` environments for ``batch_size * num_minibatches / num_envs`` consecutive unrolls;
then ``num_epochs`` passes of ``num_minibatches`` gradient steps on minibatches of ``batch_size``
trajectories.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from fpo_jax.errors import ConfigError

# The choices, once: TrainConfig's fields are typed with these Literals, and fpo_jax.loss /
# fpo_jax.flow check their arguments against them.
Weighting = Literal["eps", "velocity"]
Ratio = Literal["mean", "per_sample"]
TrustRegion = Literal["ppo", "aspo"]
CFMReduction = Literal["mean", "sqrt"]
TimeKind = Literal["grid", "uniform", "beta"]
DeterministicIntegrator = Literal["euler", "midpoint", "rk4"]
Integrator = Literal[DeterministicIntegrator, "stochastic"]
NoiseKind = Literal["random", "zero"]
ActivationName = Literal["silu", "elu", "relu", "tanh"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Field names are the CLI flags."""

    # -- what to train: the env, the algorithm, the preset variant, seeds and the sweep grid.
    env: str = "ant"
    """Environment name: a Brax env (ant, hopper...), a MuJoCo Playground env (CartpoleBalance,
    CheetahRun...) or a built-in toy env (gridworld, bandit, bandit2d, aliased_reach)."""
    algo: str = "fpo"
    """Algorithm, a name in fpo_jax.agents.ALGORITHMS: fpo (flow policy, FPO), ppo (tanh-Gaussian
    PPO baseline), dppo (denoising-MDP baseline), or one you registered."""
    variant: str = "default"
    """The named variant of the env's preset the defaults came from (on the CLI it picks the
    preset: 'paper' for gridworld, 'fast' for DM Control tasks, 'cpu' for Brax bodies, 'brax',
    'fpo++'); kept with the run, so
    --resume continues the same variant."""
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
    sweep: tuple[tuple[str, tuple[float, ...]], ...] = ()
    """Train a grid of settings in one program: ``(name, (v1, v2, ...))`` per swept field, typed;
    'name=v1,v2,...' strings are accepted where a config is made (the CLI's ``--sweep``,
    ``train(..., sweep=...)``, a config built by hand) and parsed once, by :func:`typed_sweep`,
    when the config is validated (only fields
    that change no array shape, :data:`SWEEPABLE`, and the algorithm's own settings marked
    sweepable, e.g. FPO's cfm_loss_clamp, log_ratio_clamp, pair_log_ratio_clamp, t_beta,
    negative_advantage_cfm_clamp, action_perturbation_std); the grid is the product, times
    num_seeds. On the CLI repeat --sweep per field."""

    # -- the algorithm's own settings: set and read by name; kept in algo_settings.
    algo_settings: tuple[tuple[str, Any], ...] = ()
    """The chosen algorithm's own settings that differ from their defaults, as sorted
    (name, value) pairs: for an algorithm registered with a settings class
    (:func:`fpo_jax.agents.register_algorithm`'s ``settings``); set them by name like any
    other setting (``train(env, algo="mine", my_setting=0.3)``, ``--my-setting 0.3``), read
    them with :func:`algorithm_settings`."""

    # -- layout and budget: Brax's batch semantics (module docstring).
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

    # -- optimisation: the optimiser, returns and advantages, the shared objective; the FPO++
    # recipe's parts that every algorithm has ("Flow Policy Gradients for Robot Control", Yi, Choi
    # et al., arXiv 2602.02481; FPO's own are in FPOSettings), each off by default, --variant fpo++
    # turns them on; and the long-run schedule switch.
    learning_rate: float = 3e-4
    """Adam step size (paper: 3e-4)."""
    lr_schedule: Literal["constant", "linear"] = "constant"
    """'linear' decays the step size to 0 over the run."""
    max_grad_norm: float | None = None
    """Clip gradients to this global norm; None: no clipping (the paper's setting)."""
    grad_clip_scope: Literal["global", "per_network"] = "global"
    """max_grad_norm over all parameters ('global') or over the policy's and the critic's
    separately ('per_network': FPO++'s separate actor and critic optimizers)."""
    weight_decay: float | None = None
    """AdamW decoupled weight decay on all parameters (FPO++: 1e-4); None: plain Adam."""
    discount: float = 0.99
    """Discount factor gamma."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    reward_scaling: float = 1.0
    """Rewards are multiplied by this before GAE (paper: 10 on DM Control)."""
    normalize_advantages: bool = True
    """Normalise advantages per minibatch."""
    advantage_clamp: float | None = None
    """Clip advantages to [-c, c] after normalisation (FPO++: 100); None: off. Every algorithm."""
    value_loss_coef: float = 0.25
    """Weight of the critic's squared error in the loss."""
    clip_epsilon: float = 0.05
    """Trust-region size e of the clipped surrogate (paper FPO: 0.05)."""
    trust_region: TrustRegion = "ppo"
    """'ppo': clipped surrogate; 'aspo': FPO++'s asymmetric trust region."""
    flow_entropy_cost: float = 0.0
    """Entropy bonus of flow policies (FPO, flow PPO): the exact entropy of the executed action
    under the policy's own sampler, differentiated through it (action dims <= 4); 0: off."""
    ema_decay: float | None = None
    """Keep an exponential moving average of the policy's parameters, updated after every
    gradient step, and evaluate / export it (FPO++: 0.95); None: off. Every algorithm."""
    ema_warmup_updates: int = 500
    """With ema_decay: the first this many gradient steps copy the live policy (FPO++: 500)."""
    late_phase_after: int | None = None
    """Long-run safeguard (the FPO++ authors' schedule past 2000 iterations): after this many
    training iterations the late_* settings replace their early values; None: off."""
    late_ema_decay: float | None = None
    """With late_phase_after: the EMA decay from then on (FPO++ authors: 0.99)."""
    late_num_epochs: int | None = None
    """With late_phase_after: the update epochs from then on (FPO++ authors: 16)."""
    late_normalize_advantages: bool | None = None
    """With late_phase_after: normalise advantages from then on or not (FPO++ authors: no)."""

    # -- observations and initial states: the trainer's order: Brax's, the authors' or ours.
    normalize_observations: bool = True
    """Normalise observations with running mean and std."""
    obs_norm: Literal["welford", "brax", "reference"] = "welford"
    """'welford': exact running statistics, updated every env step, used from the next
    iteration (so the first minibatch's ratio is exactly 1); normalised observations clipped to
    [-10, 10]. 'brax': Brax PPO's order: the same exact statistics, updated once per iteration
    with the rollout's observations before the update epochs and used in the loss (the policy
    acted with the previous ones), not clipped. 'reference': the FPO authors' code, to reproduce
    their numbers: Brax's order, but its summed variance keeps only the newest batch (the std
    shrinks about as 1/sqrt(iterations)). DM Control presets default to 'brax'."""
    refresh_initial_states: bool = True
    """Give auto-reset episodes fresh random initial states each iteration (one batched reset);
    False reuses each env's first state for the whole run, as Brax, Playground and the FPO
    authors' code do (and DM Control presets)."""

    # -- networks and the rollout sampler: the default networks' shapes and the flow's sampler while
    # collecting.
    policy_hidden: tuple[int, ...] = (32, 32, 32, 32)
    """Hidden sizes of the velocity MLP (FPO, DPPO) or Gaussian policy MLP (PPO)."""
    value_hidden: tuple[int, ...] = (256, 256, 256, 256, 256)
    """Hidden sizes of the critic MLP."""
    activation: ActivationName = "silu"
    """Hidden-layer activation of the default policy and critic networks (paper: SiLU; FPO++:
    'elu'; the FPO authors' GridWorld: 'relu')."""
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
    integrator: DeterministicIntegrator = "euler"
    """Integrator used to sample actions during rollouts."""
    flow_steps: int = 10
    """Integration steps per action during rollouts (and DPPO's chain length)."""

    # -- evaluation: how often, how many episodes, and the evaluation sampler (fpo_jax.evaluation).
    num_evals: int = 10
    """Evaluations (and checkpoints) over the run, plus one before training."""
    num_eval_envs: int = 128
    """Episodes per evaluation."""
    eval_integrator: Integrator = "euler"
    """Integrator used at evaluation (flow policies)."""
    eval_flow_steps: int = 10
    """Integration steps at evaluation."""
    eval_noise: NoiseKind = "random"
    """Initial noise of evaluation samples: 'zero' is FPO++'s zero-noise sampling. Gaussian PPO:
    'zero' acts with the mean action (its presets), 'random' samples (Brax PPO's default)."""
    eval_sigma: float = 0.0
    """Per-step noise of the 'stochastic' eval integrator."""

    # -- run options: where and how the run is kept and shown, never what it computes (RUN_OPTIONS
    # below; --resume may change them).
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
    num_devices: int | None = None
    """Shard the env batch over this many devices (None: every device JAX sees, on all hosts)."""
    distributed: bool = False
    """Call jax.distributed.initialize first (multi-host; reads JAX_COORDINATOR_ADDRESS,
    JAX_NUM_PROCESSES, JAX_PROCESS_ID, or auto-detects SLURM / TPU / ... clusters)."""

    # Bookkeeping, not a setting: no CLI flag (fpo_jax.cli hides it).
    preset_source: str = field(default="TrainConfig defaults", compare=False)
    """Where the defaults came from (set by presets)."""

    def __getattr__(self, name: str) -> Any:
        """The chosen algorithm's own settings read like fields (``config.num_pairs`` of an FPO
        config: its value in ``algo_settings``, or the settings class's default); a setting of
        another algorithm is an AttributeError that names its owner."""
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            algo = object.__getattribute__(self, "algo")
        except AttributeError:  # not initialised yet (copy, unpickling)
            raise AttributeError(name) from None
        if not ALGORITHMS_REGISTERED:
            raise AttributeError(
                f"'TrainConfig' object has no attribute {name!r} (an algorithm's own setting "
                "reads like one once fpo_jax.agents is imported)"
            )
        if name in algorithm_setting_names(algo):
            return getattr(algorithm_settings(self), name)
        owners = setting_owners(name)
        if owners:
            raise AttributeError(
                f"{name} is a setting of algo {' / '.join(map(repr, owners))}, not of "
                f"algo={algo!r}: read it as fpo_jax.config.algorithm_settings(config).{name} "
                f"of a config of that algorithm."
            )
        raise AttributeError(f"'TrainConfig' object has no attribute {name!r}")

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
        for entry in self.sweep:  # typed, or a string not yet validated
            size *= len(entry[1]) if not isinstance(entry, str) else entry.count(",") + 1
        return size * self.num_seeds

    @property
    def num_calls(self) -> int:
        """Calls of the compiled step needed to reach num_timesteps (rounded up)."""
        return max(1, -(-self.num_timesteps // self.env_steps_per_call))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """A config from its JSON form. Runs written before an algorithm owned its settings kept
        every algorithm's as flat fields: the chosen algorithm's move into ``algo_settings``,
        the others (which it never read) are dropped."""
        known = {f.name for f in dataclasses.fields(cls)}
        if set(d) - known:
            _require_registered_algorithms()
        own = algorithm_setting_names(d.get("algo", cls.algo))
        unknown = sorted(k for k in set(d) - known if k not in own and not setting_owners(k))
        if unknown:
            raise ValueError(f"Unknown config fields {unknown}.")
        d = {k: v for k, v in d.items() if k in known or k in own}
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        if "algo_settings" in d:  # JSON keeps the pairs as lists
            d["algo_settings"] = tuple(tuple(pair) for pair in d["algo_settings"])
        if "sweep" in d:  # typed pairs as lists; runs written before kept 'name=v1,v2' strings
            d["sweep"] = tuple(e if isinstance(e, str) else (e[0], tuple(e[1])) for e in d["sweep"])
        config = cls(**d)
        if any(isinstance(e, str) for e in config.sweep):
            config = dataclasses.replace(config, sweep=typed_sweep(config, config.sweep))
        return config


# A config is built with its algorithm's own settings by name, as with its fields
# (TrainConfig(num_pairs=16), dataclasses.replace(config, num_pairs=16)): they go to
# algo_settings; a setting of another algorithm is refused in one sentence.
_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(TrainConfig))
_dataclass_init = TrainConfig.__init__


@functools.wraps(_dataclass_init)
def _init_with_algorithm_settings(self: TrainConfig, *args: Any, **kwargs: Any) -> None:
    named = [k for k in kwargs if k not in _FIELD_NAMES]
    if named:
        algo = kwargs.get("algo", args[1] if len(args) > 1 else TrainConfig.algo)
        values = {k: kwargs.pop(k) for k in named}
        kwargs["algo_settings"] = _route(algo, kwargs.get("algo_settings", ()), values)
    _dataclass_init(self, *args, **kwargs)


TrainConfig.__init__ = _init_with_algorithm_settings  # type: ignore[method-assign]


# The config's sections, in field order: what --show-config groups its rows by.
SECTIONS: dict[str, tuple[str, ...]] = {
    "what to train": (
        "env",
        "algo",
        "variant",
        "backend",
        "impl",
        "env_kwargs",
        "seed",
        "num_seeds",
        "sweep",
    ),
    "the algorithm's own settings": ("algo_settings",),
    "layout and budget": (
        "num_timesteps",
        "num_envs",
        "episode_length",
        "action_repeat",
        "unroll_length",
        "batch_size",
        "num_minibatches",
        "num_epochs",
        "iterations_per_call",
    ),
    "optimisation": (
        "learning_rate",
        "lr_schedule",
        "max_grad_norm",
        "grad_clip_scope",
        "weight_decay",
        "discount",
        "gae_lambda",
        "reward_scaling",
        "normalize_advantages",
        "advantage_clamp",
        "value_loss_coef",
        "clip_epsilon",
        "trust_region",
        "flow_entropy_cost",
        "ema_decay",
        "ema_warmup_updates",
        "late_phase_after",
        "late_ema_decay",
        "late_num_epochs",
        "late_normalize_advantages",
    ),
    "observations and initial states": (
        "normalize_observations",
        "obs_norm",
        "refresh_initial_states",
    ),
    "networks and the rollout sampler": (
        "policy_hidden",
        "value_hidden",
        "activation",
        "network_init",
        "flow_time_input",
        "velocity_output_scale",
        "flow_noise_scale",
        "integrator",
        "flow_steps",
    ),
    "evaluation": (
        "num_evals",
        "num_eval_envs",
        "eval_integrator",
        "eval_flow_steps",
        "eval_noise",
        "eval_sigma",
    ),
    "run options": (
        "run_dir",
        "resume",
        "overwrite",
        "checkpoint",
        "progress",
        "compile_cache",
        "tensorboard",
        "wandb_project",
        "num_devices",
        "distributed",
    ),
}


# Fields that say where and how a run is kept and shown (directory, resuming, checkpoints,
# progress, loggers, devices, compile cache), never what it computes: a resumed run may change
# them. Every other field (but the bookkeeping preset_source) is part of the computation.
RUN_OPTIONS = SECTIONS["run options"]


def computed_fields() -> tuple[str, ...]:
    """The fields that define what a run computes: all but :data:`RUN_OPTIONS` and the
    bookkeeping ``preset_source``."""
    skip = {*RUN_OPTIONS, "preset_source"}
    return tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in skip)


# Hyperparameters that change no array shape: they can be swept inside one compiled program
# (carried as traced values in the train state; see fpo_jax.trainer). Every other field is
# static: it changes shapes or the program's structure (N pairs, flow steps, network sizes, env
# counts, choices), so each value needs its own program.
SWEEPABLE = (
    "learning_rate",
    "clip_epsilon",
    "value_loss_coef",
    "discount",
    "gae_lambda",
    "reward_scaling",
    "velocity_output_scale",
    "flow_noise_scale",
    "max_grad_norm",
    "eval_sigma",
    # FPO++ recipe (FPO's own sweepable settings are marked in FPOSettings)
    "advantage_clamp",
    "ema_decay",
    "weight_decay",
)


def sweepable_names(algo: str) -> tuple[str, ...]:
    """What a run of ``algo`` can sweep: :data:`SWEEPABLE` and its own settings marked
    :func:`sweepable`."""
    own = algorithm_setting_names(algo)
    return SWEEPABLE + tuple(n for n, f in own.items() if f.metadata.get("sweepable"))


def literal_choices() -> dict[str, tuple[Any, ...]]:
    """Each field typed ``Literal[...]`` -> its allowed values (the one place they are listed)."""
    hints = typing.get_type_hints(TrainConfig, include_extras=True)
    return {
        f.name: typing.get_args(hints[f.name])
        for f in dataclasses.fields(TrainConfig)
        if typing.get_origin(hints[f.name]) is Literal
    }


def validate(config: TrainConfig) -> TrainConfig:
    """Check a config's own fields; raise ConfigError with one sentence naming the field.

    Whether ``algo`` is registered and ``env`` exists is checked by
    :func:`fpo_jax.train.preflight`, which knows the registries.
    """
    c = config

    def fail(msg: str) -> None:
        raise ConfigError(msg)

    for name, choices in literal_choices().items():
        if getattr(c, name) not in choices:
            fail(f"{name}={getattr(c, name)!r} is not one of {choices}.")
    _check_algorithm_settings(c, fail)
    positive_ints = [
        "num_timesteps", "num_envs", "episode_length", "action_repeat", "unroll_length",
        "batch_size", "num_minibatches", "num_epochs", "iterations_per_call",
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
    for name in ["value_loss_coef", "flow_entropy_cost", "eval_sigma"]:
        if getattr(c, name) < 0:
            fail(f"{name} must be >= 0, got {getattr(c, name)!r}.")
    if c.max_grad_norm is not None and not c.max_grad_norm > 0:
        fail(f"max_grad_norm must be positive or None, got {c.max_grad_norm!r}.")
    # FPO++ recipe (FPO's own parts are checked by FPOSettings)
    if c.advantage_clamp is not None and not c.advantage_clamp > 0:
        fail(f"advantage_clamp must be positive or None, got {c.advantage_clamp!r}.")
    if c.weight_decay is not None and not c.weight_decay >= 0:
        fail(f"weight_decay must be >= 0 or None, got {c.weight_decay!r}.")
    if c.ema_decay is not None and not 0.0 <= c.ema_decay < 1.0:
        fail(f"ema_decay must lie in [0, 1) or be None, got {c.ema_decay!r}.")
    late = [n for n in ("late_ema_decay", "late_num_epochs", "late_normalize_advantages")
            if getattr(c, n) is not None]  # fmt: skip
    if c.late_phase_after is None and late:
        fail(f"{late[0]} needs late_phase_after (the iteration the late phase starts at).")
    if c.late_phase_after is not None:
        if not isinstance(c.late_phase_after, int) or c.late_phase_after < 0:
            fail(f"late_phase_after must be an integer >= 0, got {c.late_phase_after!r}.")
        if not late:
            fail("late_phase_after is set but no late_* setting changes anything.")
        if c.late_ema_decay is not None and (c.ema_decay is None or not 0 < c.late_ema_decay < 1):
            fail("late_ema_decay needs ema_decay (an EMA actor) and a value in (0, 1), got "
                 f"{c.late_ema_decay!r}.")  # fmt: skip
        if c.late_num_epochs is not None and (
            not isinstance(c.late_num_epochs, int) or c.late_num_epochs < 1
        ):
            fail(f"late_num_epochs must be an integer >= 1, got {c.late_num_epochs!r}.")
    if not isinstance(c.ema_warmup_updates, int) or c.ema_warmup_updates < 0:
        fail(f"ema_warmup_updates must be an integer >= 0, got {c.ema_warmup_updates!r}.")
    # Settings that would be read by nothing (a silent no-op) are refused.
    if c.grad_clip_scope != "global" and c.max_grad_norm is None:
        fail("grad_clip_scope='per_network' needs max_grad_norm (the norm to clip to).")
    if (c.batch_size * c.num_minibatches) % c.num_envs:
        fail(
            f"batch_size * num_minibatches ({c.batch_size} * {c.num_minibatches} = "
            f"{c.batch_size * c.num_minibatches}) must be a multiple of num_envs ({c.num_envs})."
        )
    if not c.policy_hidden or not c.value_hidden or min(c.policy_hidden + c.value_hidden) <= 0:
        fail("policy_hidden and value_hidden must be non-empty tuples of positive sizes.")
    if c.sweep:
        typed = typed_sweep(c, c.sweep)
        if typed != c.sweep:
            c = dataclasses.replace(c, sweep=typed)
    c.env_options  # noqa: B018 (raises ConfigError if malformed)
    if c.num_devices is not None and c.num_devices <= 0:
        fail(f"num_devices must be a positive integer or None, got {c.num_devices!r}.")
    return c


# Algorithms' own settings classes, filled by fpo_jax.agents.register_algorithm (this module
# imports nothing of the package): algo name -> a frozen dataclass whose fields are its
# settings; a field with metadata {"sweepable": True} (see ``sweepable``) may be swept.
ALGORITHM_SETTINGS: dict[str, type] = {}


def sweepable(default: Any) -> Any:
    """A field of an algorithm's settings class that changes no array shape, so it can be
    swept in one program (rejax's way: the field's kind says whether it can be vmapped)."""
    return dataclasses.field(default=default, metadata={"sweepable": True})


def _require_registered_algorithms() -> None:
    """ConfigError unless the algorithms are registered: their settings classes are known
    once :mod:`fpo_jax.agents` is imported (by ``fpo_jax.presets``, ``fpo_jax.train``...;
    this module sits below it and imports nothing of the package)."""
    if not ALGORITHMS_REGISTERED:
        raise ConfigError(
            "The algorithms' own settings (num_pairs, ratio, ...) are known once fpo_jax.agents "
            "is imported: import it (or fpo_jax.presets / fpo_jax.train) first."
        )


# Set by fpo_jax.agents when it has registered the built-in algorithms.
ALGORITHMS_REGISTERED: list[bool] = []


def setting_owners(name: str) -> list[str]:
    """The registered algorithms whose own settings class has a field ``name``."""
    _require_registered_algorithms()
    return [algo for algo in ALGORITHM_SETTINGS if name in algorithm_setting_names(algo)]


def _route(algo: str, pairs: typing.Iterable[tuple[str, Any]], values: dict[str, Any]) -> tuple:
    """``algo_settings`` with ``values`` (names of ``algo``'s own settings) merged in; a name of
    another algorithm's settings is a ConfigError naming it, any other name a TypeError."""
    _require_registered_algorithms()
    own = algorithm_setting_names(algo)
    for name, value in values.items():
        if name in own:
            continue
        owners = setting_owners(name)
        if owners:
            raise ConfigError(
                f"{name}={value!r} has no effect with algo={algo!r}, which never reads {name} "
                f"(a setting of {' / '.join(owners)}): drop it or pick an algorithm that reads it."
            )
        raise TypeError(f"TrainConfig got an unexpected keyword argument {name!r}")
    return _normalized_settings(algo, {**dict(pairs), **values})


def _normalized_settings(algo: str, values: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Sorted (name, value) pairs without the concrete values equal to their defaults, so two
    configs that compute the same compare equal (traced values are kept as they are)."""
    own = algorithm_setting_names(algo)

    def is_default(name: str, value: Any) -> bool:
        f = own.get(name)
        if f is None or f.default is dataclasses.MISSING:
            return False
        plain = value is None or isinstance(value, bool | int | float | str)
        return plain and (value is None) == (f.default is None) and value == f.default

    return tuple(sorted((k, v) for k, v in values.items() if not is_default(k, v)))


def algorithm_settings(config: TrainConfig) -> Any:
    """The chosen algorithm's own settings (an instance of its settings class, with
    ``config.algo_settings`` over the class defaults), or None when it registered none."""
    cls = ALGORITHM_SETTINGS.get(config.algo)
    return None if cls is None else cls(**dict(config.algo_settings))


def algorithm_setting_names(algo: str) -> dict[str, dataclasses.Field]:
    """``{name: field}`` of ``algo``'s own settings class (empty when it has none)."""
    cls = ALGORITHM_SETTINGS.get(algo)
    return {} if cls is None else {f.name: f for f in dataclasses.fields(cls)}


def with_algorithm_settings(config: TrainConfig, values: dict[str, Any]) -> TrainConfig:
    """``config`` with its algorithm's own ``values`` set (merged, sorted), unchecked (swept
    values may be traced); :func:`validate` checks them."""
    merged = {**dict(config.algo_settings), **values}
    return dataclasses.replace(config, algo_settings=_normalized_settings(config.algo, merged))


def _check_algorithm_settings(c: TrainConfig, fail: Callable[[str], None]) -> None:
    own = algorithm_setting_names(c.algo)
    for name, value in c.algo_settings:
        if name not in own:
            have = ", ".join(own) or "none"
            fail(f"{name} is not a setting of algo={c.algo!r} (its own settings: {have}).")
        kind = own[name].type
        kind = kind if isinstance(kind, type) else {"float": float, "int": int, "bool": bool,
                                                    "str": str}.get(str(kind))  # fmt: skip
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            continue
        if kind is not None and not isinstance(value, kind):
            fail(f"{name}={value!r} is not a {kind.__name__} (a setting of algo={c.algo!r}).")
    if c.algo_settings:
        try:
            algorithm_settings(c)
        except (TypeError, ValueError) as e:
            fail(f"algo={c.algo!r}'s settings: {e}")


def member_config(config: TrainConfig, member: dict[str, float]) -> TrainConfig:
    """One member's own config: its swept values (``sweep_members(config)[i]``, its seed
    included) in place, no sweep, one seed; the algorithm's own settings into
    ``algo_settings``."""
    own = algorithm_setting_names(config.algo)
    flat = {k: v for k, v in member.items() if k not in own}
    out = replace(config, sweep=(), num_seeds=1, **flat)
    mine = {k: v for k, v in member.items() if k in own}
    return with_algorithm_settings(out, mine) if mine else out


def typed_sweep(
    config: TrainConfig, entries: typing.Iterable[str | tuple[str, typing.Sequence[float]]]
) -> tuple[tuple[str, tuple[float, ...]], ...]:
    """The one parser of sweeps: ``entries`` ('name=v1,v2' strings or (name, values) pairs) ->
    typed ``((name, (v1, v2, ...)), ...)``; ConfigError if a name is not a sweepable field
    (of the config, or of the algorithm's own settings), is given twice, or a value is not a
    number or makes an invalid config on its own (e.g. a negative clip_epsilon)."""
    out: dict[str, tuple[float, ...]] = {}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    own = algorithm_setting_names(config.algo)
    base = dataclasses.replace(config, sweep=())
    for entry in entries:
        if isinstance(entry, str):
            name, sep, text = entry.partition("=")
            if not sep or not text.strip():
                fail_sweep(f"--sweep {entry!r} is not of the form name=v1,v2,... .")
            try:
                values = tuple(float(v) for v in text.split(","))
            except ValueError:
                fail_sweep(f"--sweep {entry!r}: the values must be numbers.")
        else:
            name, raw = entry
            try:
                values = tuple(float(v) for v in raw)
            except (TypeError, ValueError):
                fail_sweep(f"--sweep {name}: the values must be numbers, got {raw!r}.")
        name = name.strip().replace("-", "_")
        if name not in fields and name not in own:
            owners = setting_owners(name)
            if owners:
                fail_sweep(
                    f"--sweep {name}: algo={config.algo!r} never reads {name} (a setting of "
                    f"{' / '.join(owners)}), so every member would train the same."
                )
            fail_sweep(f"--sweep {name!r} is not a config field nor a setting of {config.algo}.")
        if name in own:
            if not own[name].metadata.get("sweepable"):
                fail_sweep(f"--sweep {name!r}: {config.algo}'s setting {name} is static.")
        elif name not in SWEEPABLE:
            fail_sweep(
                f"--sweep {name!r}: {name} is static (it changes array shapes or the program), "
                f"so each value needs its own run; sweepable: "
                f"{', '.join(sweepable_names(config.algo))}."
            )
        if name in out:
            fail_sweep(f"--sweep {name!r} is given twice.")
        if not values:
            fail_sweep(f"--sweep {name}: no values.")
        for value in values:
            try:
                if name in own:
                    validate(with_algorithm_settings(base, {name: value}))
                else:
                    validate(dataclasses.replace(base, **{name: value}))
            except ConfigError as e:
                fail_sweep(f"--sweep {name}={value:g}: {e}")
        out[name] = values
    return tuple(out.items())


def parse_sweep(config: TrainConfig) -> dict[str, tuple[float, ...]]:
    """The sweep grid ``{name: values}`` of a validated config (typed: nothing to parse); a
    config not yet validated has its strings parsed by :func:`typed_sweep` first."""
    entries = config.sweep
    if any(isinstance(e, str) for e in entries):
        entries = typed_sweep(config, entries)
    return {name: tuple(values) for name, values in entries}


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


def replace(config: TrainConfig, **changes: Any) -> TrainConfig:
    """``dataclasses.replace`` that reports unknown field names in one sentence."""
    unknown = sorted(n for n in set(changes) - _FIELD_NAMES if not setting_owners(n))
    if unknown:
        raise ConfigError(f"Unknown config fields {unknown}; see `python -m fpo_jax.train --help`.")
    if "algo" in changes and changes["algo"] != config.algo:
        # The previous algorithm's own settings mean nothing to the new one.
        config = dataclasses.replace(config, algo=changes["algo"], algo_settings=())
    return dataclasses.replace(config, **changes)
