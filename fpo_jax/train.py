"""Train a policy: ``fpo_jax.train.train(env, config)``, or ``python -m fpo_jax.train --env ant``
(the command line lives in :mod:`fpo_jax.cli`; running this file as a script calls it).

The Python loop here only calls the compiled training step, evaluates, logs and checkpoints;
all the training math is inside :class:`fpo_jax.trainer.Trainer`'s compiled step.

Order of work, so that a mistake costs one sentence and no files: (1) every check that needs no
simulator (:func:`preflight`: config, env name, run directory, loggers, devices), (2) build the
env, the trainer and the initial state (and restore the checkpoint when resuming), (3) compile
the training step and refuse it if XLA's analysis of it says it would not fit in memory, (4) only
then create or clean the run directory, (5) train with that compiled step.

Seeds and sweeps always train as one program: the state has a leading *member* axis (a member is
one setting of the ``--sweep`` grid with one seed; without a sweep, members are the seeds, and
one seed is one member) and the trainer's pure functions are ``vmap``-ed over it. Swept
hyperparameters ride along in the state as traced values (``TrainState.hparams``).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fpo_jax import compile_cache, envs, loop, memory, parallel, program_cache, runs
from fpo_jax.agents import ALGORITHMS, unread_settings
from fpo_jax.checkpoint import Checkpointer
from fpo_jax.config import TrainConfig, parse_sweep, replace, validate
from fpo_jax.errors import ConfigError, TrainingDiverged  # noqa: F401  (re-exported)
from fpo_jax.presets import (
    CPU_VARIANTS,
    base_preset,
    explain,
    format_explanation,
    object_preset,
    preset,
    preset_variants,
    with_changes,
)
from fpo_jax.run_log import MetricsWriter, plot_learning_curve
from fpo_jax.runs import member_inputs
from fpo_jax.timing import Stopwatch
from fpo_jax.trainer import Trainer, TrainState, bind_agent

_DISTRIBUTED_VARS = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")

# progress_fn(record, state) -> False to stop; see train().
ProgressFn = Callable[[dict[str, Any], TrainState], Any]


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
      state: final :class:`TrainState` of every member, with a leading member axis (size
        ``config.num_members``, also when it is 1); :meth:`member` picks one.
      policy: the first member's ``policy(obs (..., obs_dim), key) -> action (..., A)`` in
        [-1, 1], jit-able, with the evaluation sampler; if member 0 diverged, the first member
        that did not (a line on stderr says which). :meth:`policy_of` gives another's.
      history: one dict per call of the compiled step (env steps, losses, ratio statistics,
        eval returns when evaluated).
      config: the validated config that ran.
      trainer: the :class:`Trainer` (its pure functions, e.g. ``trainer.evaluate``).
      compile_seconds: seconds until the training step was compiled (the evaluation and the
        initial state compile beside it; traced programs kept by :mod:`fpo_jax.program_cache`
        are not traced again).
      stopped_early: True when ``progress_fn`` stopped the run.
      members: each member's settings, ``{swept name: value, ..., "seed": s}``.
    """

    state: TrainState
    policy: Callable[[jax.Array, jax.Array], jax.Array]
    history: list[dict[str, Any]]
    config: TrainConfig
    trainer: Trainer
    compile_seconds: float
    stopped_early: bool = False
    members: list[dict[str, float]] = dataclasses.field(default_factory=list)

    def member(self, i: int) -> TrainState:
        """The final state of member ``i`` (no member axis); see ``members[i]`` for its settings."""
        if not 0 <= i < self.config.num_members:
            raise IndexError(f"member {i} out of range for {self.config.num_members} member(s).")
        return jax.tree.map(lambda x: x[i], self.state)

    def seed(self, i: int) -> TrainState:
        """Without a sweep, the final state of seed ``config.seed + i`` (= :meth:`member`)."""
        return self.member(i)

    def policy_of(self, i: int) -> Callable[[jax.Array, jax.Array], jax.Array]:
        """Member ``i``'s policy (see ``policy``), with its swept settings."""
        state = self.member(i)
        return self.trainer.policy_fn(state.eval_params, state.obs_stats, state.hparams)

    @property
    def final_eval_return(self) -> float:
        evals = [r["eval/episode_return"] for r in self.history if "eval/episode_return" in r]
        return float(evals[-1]) if evals and evals[-1] is not None else float("nan")


# ----------------------------------------------------------------------------------------------
# Checks before anything is built or written


def _check_distributed_vars() -> None:
    present = [v for v in _DISTRIBUTED_VARS if v in os.environ]
    if present and len(present) < len(_DISTRIBUTED_VARS):
        missing = [v for v in _DISTRIBUTED_VARS if v not in os.environ]
        raise ConfigError(
            f"--distributed: {', '.join(present)} set but {', '.join(missing)} missing (set all "
            "three, or none to let JAX detect a SLURM / TPU cluster)."
        )
    for name in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        if name in os.environ and not os.environ[name].strip().isdigit():
            raise ConfigError(f"--distributed: {name}={os.environ[name]!r} is not an integer.")


def check_algorithm(config: TrainConfig) -> None:
    """ConfigError unless ``config.algo`` is registered (:data:`fpo_jax.agents.ALGORITHMS`)."""
    if config.algo not in ALGORITHMS:
        raise ConfigError(f"algo={config.algo!r} is not one of {tuple(ALGORITHMS)}.")


def check_settings_read(config: TrainConfig, *, env: Any = None) -> None:
    """ConfigError if ``config`` changes a setting its algorithm never reads.

    A setting that another algorithm reads but ``config.algo`` does not
    (:func:`fpo_jax.agents.unread_settings`), at a value other than the algorithm's preset for
    the env and variant (``env``: the env object, when the run trains on one), would change
    nothing: it is refused in one sentence naming the setting and the algorithm, and so is
    sweeping one. A resumed run is compared with its own saved config instead (which is what
    it computes).
    """
    unread = unread_settings(config.algo)
    if not unread:
        return
    if config.resume is not None:
        base = runs.read_run_config(config.resume)
    else:
        base = base_preset(config, env)[0]
    for name in sorted(unread):
        value = getattr(config, name)
        if value != getattr(base, name):
            raise ConfigError(
                f"{name}={value!r} has no effect with algo={config.algo!r}, which never reads "
                f"{name} (its preset keeps {getattr(base, name)!r}): drop it or pick an "
                "algorithm that reads it."
            )
    for name in parse_sweep(config) if config.resume is None else ():
        if name in unread:
            raise ConfigError(
                f"--sweep {name}: algo={config.algo!r} never reads {name}, so every member "
                "would train the same."
            )


def preflight(config: TrainConfig, *, env: Any = None, check_reads: bool = True) -> TrainConfig:
    """Every check that needs no simulator, no compilation and no writes; raises ConfigError.

    ``env``: the env object the run trains on, if it was given as one. ``check_reads=False``
    skips refusing settings the registered algorithm never reads (for an injected agent, which
    may read others).

    Returns the config to run: validated, with the env's canonical name, and with ``run_dir``
    and ``resume`` as resolved absolute paths (the run directory is where ``--resume`` points,
    whatever path its config.json recorded).
    """
    config = validate(config)
    if env is None or isinstance(env, str):
        config = replace(config, env=envs.canonical_name(config.env))
    check_algorithm(config)
    if config.distributed:
        _check_distributed_vars()
    for enabled, module, extra, flag in [
        (config.tensorboard, "tensorboardX", "tensorboard", "--tensorboard"),
        (config.wandb_project is not None, "wandb", "wandb", "--wandb-project"),
    ]:
        if enabled and importlib.util.find_spec(module) is None:
            raise ConfigError(f"{flag} needs {module}: pip install 'fpo_jax[{extra}]'.")
    config = runs.resolve_run_dir(config)
    if check_reads:
        check_settings_read(config, env=env)
    if not config.distributed:
        available = jax.device_count()
        devices = config.num_devices or available
        if devices > available:
            raise ConfigError(f"num_devices={devices} but JAX sees {available} device(s).")
        for name in ("num_envs", "batch_size"):
            if getattr(config, name) % devices:
                raise ConfigError(
                    f"{name}={getattr(config, name)} must be a multiple of the {devices} "
                    "devices the env batch is sharded over (set --num-devices)."
                )
    return config


# ----------------------------------------------------------------------------------------------
# Host-side helpers


def _copy(tree: Any) -> Any:
    """A copy of every array in ``tree`` (same sharding), safe from a later donation."""
    return jax.tree.map(jnp.copy, tree)


def _log(msg: str) -> None:
    if parallel.is_main_process():
        print(f"[fpo_jax] {msg}", file=sys.stderr, flush=True)


_distributed_initialized = False


def _initialize_distributed_once() -> None:
    global _distributed_initialized
    if not _distributed_initialized:
        parallel.initialize_distributed()
        _distributed_initialized = True


def _compile_step(trainer: Trainer, state: Any, also: str = "") -> tuple[Any, float]:
    """The compiled training step of ``state``'s layout (a state, or its ``jax.eval_shape``;
    the state donated) and its compile seconds. ``also``: what compiles beside it, for the log."""
    beside = f"; the {also} and the initial state beside it" if also else ""
    _log(f"compiling the training step (rollout and update, one program{beside})...")
    cache_entries = compile_cache.entries()
    clock = Stopwatch()
    step = runs.over_members(trainer.train_step, trainer.config.num_members)
    step_fn = jax.jit(step, donate_argnums=0).lower(state).compile()
    compile_seconds = clock.seconds()
    # A program found in the persistent cache is loaded, not written again.
    cached = cache_entries is not None and compile_cache.entries() == cache_entries
    how = "loaded from the compilation cache" if cached else "compiled"
    mesh = trainer.mesh
    devices = f"{mesh.size} devices" if mesh is not None else "1 device"
    _log(f"{how} in {compile_seconds:.1f} s on {jax.default_backend()} ({devices})")
    return step_fn, compile_seconds


def _package(obj: Any) -> str:
    """The top-level package ``obj`` (a class or function) is defined in."""
    return getattr(obj, "__module__", "").split(".")[0]


def _kept_programs(
    trainer: Trainer, evaluator: loop.Evaluator, keys: jax.Array, hparams: dict
) -> tuple[Any, Any, float] | None:
    """``(init, step, compile seconds)`` through :mod:`fpo_jax.program_cache` (the evaluation
    handed to ``evaluator``), or None when that cache is off or does not apply: part of the code
    is not the library's (its key covers only fpo_jax's source and the packages' versions), or
    a program cannot be exported. Programs traced in an earlier run are not traced again."""
    config = trainer.config
    library_code = (
        _package(type(trainer.env)) in ("fpo_jax", "brax", "mujoco_playground")
        and _package(type(trainer.agent)) == "fpo_jax"
        and _package(ALGORITHMS[config.algo].make) == "fpo_jax"
    )
    if not library_code or program_cache.folder() is None:
        return None
    key = program_cache.run_key(config)
    _log("compiling the training step, the evaluation and the initial state...")
    clock = Stopwatch()
    cache_entries = compile_cache.entries()
    init_fn = runs.over_members(trainer.init, config.num_members)
    step_fn = runs.over_members(trainer.train_step, config.num_members)
    with ThreadPoolExecutor(max_workers=2) as pool:
        # XLA compiles outside Python's lock: each program compiles while the next is traced.
        init, init_kept = program_cache.trace(key, "init", init_fn, (keys, hparams))
        if init is None:
            return None
        init_job = pool.submit(program_cache.Program, init)
        state_shape = init.out_shape
        evaluation, eval_kept = program_cache.trace(
            key, "evaluation", evaluator.function, (state_shape, evaluator.keys(0))
        )
        step, step_kept = program_cache.trace(key, "step", step_fn, (state_shape,))
        if step is None or evaluation is None:
            return None
        eval_job = pool.submit(program_cache.Program, evaluation)
        step_program = program_cache.Program(step, donate=True)
        evaluator.use_compiled(eval_job.result())
        init_program = init_job.result()
    seconds = clock.seconds()
    cached = cache_entries is not None and compile_cache.entries() == cache_entries
    how = "loaded from the compilation cache" if cached else "compiled"
    kept = (
        " (traced in an earlier run: not traced again)"
        if init_kept and eval_kept and step_kept
        else ""
    )
    _log(f"{how} in {seconds:.1f} s on {jax.default_backend()} (1 device){kept}")
    return init_program, step_program, seconds


def check_step_fits(step_fn: Any, config: TrainConfig, free: int | None = None) -> None:
    """Print the compiled step's peak memory (XLA's analysis) and refuse a run it would not fit.

    ``free``: bytes free for the step's new buffers; default: what the device reports
    (:func:`fpo_jax.memory.free_bytes`). Raises ConfigError, before anything is written, when
    the step needs more on top of the state it runs on. XLA's figure is per device; a CPU's
    devices all live in one machine's RAM, so there it counts once per device.
    """
    need = memory.program_memory(step_fn)  # per device
    if need is None:  # a backend without the analysis: nothing to go by
        return
    devices = config.num_devices or jax.device_count()
    if jax.default_backend() == "cpu" and devices > 1 and not config.distributed:
        need = need.times(devices)  # the CPU devices of one process share its machine's RAM
    free = memory.free_bytes() if free is None else free
    k = config.num_members
    what = f"{k} members in one program" if k > 1 else "the training step"
    _log(f"{what}: {memory.describe(need, free)}")
    remedy = "sweep fewer settings or seeds, or " if k > 1 else ""
    memory.check_fits(need, free, what, f"{remedy}use fewer --num-envs or a smaller --batch-size.")


# ----------------------------------------------------------------------------------------------
# Training


def resolve_config(
    env: str | Any, config: TrainConfig | None = None, **overrides: Any
) -> TrainConfig:
    """The config :func:`train` runs (before :func:`preflight`), built as the CLI builds it.

    Without ``config``: the preset of ``env``, ``overrides.get("algo")`` and
    ``overrides.get("variant")``; an env object of a class the registries know gets that env's
    preset, any other env object the algorithm's defaults
    (:func:`fpo_jax.presets.object_preset`). Then ``overrides`` as flags
    (:func:`fpo_jax.presets.with_changes`).
    """
    env_is_name = isinstance(env, str)
    if config is None:
        algo, variant = overrides.get("algo", "fpo"), overrides.get("variant", "default")
        config = preset(env, algo, variant) if env_is_name else object_preset(env, algo, variant)[0]
    elif env_is_name and envs.canonical_name(env) != envs.canonical_name(config.env):
        raise ConfigError(f"train({env!r}, config) but config.env is {config.env!r}.")
    return with_changes(config, overrides) if overrides else config


def train(
    env: str | Any,
    config: TrainConfig | None = None,
    *,
    agent: Any | None = None,
    value_network: Any | None = None,
    progress_fn: ProgressFn | None = None,
    loggers: Sequence[Any] = (),
    **overrides: Any,
) -> TrainResult:
    """Train with FPO (or the PPO / DPPO baselines) and return the state, policy and metrics.

    Args:
      env: an env name for :func:`fpo_jax.envs.make_env` (any case), or an env object (a Brax
        ``Env``, a MuJoCo Playground ``MjxEnv`` or a built-in toy env).
      config: the full config; default: the preset for ``env``, ``overrides.get("algo")`` and
        ``overrides.get("variant")``, as the CLI builds it (for an env object: the default
        table with the algorithm's own overrides, ``preset(name, algo, family="default")``).
      agent: the algorithm, any :class:`fpo_jax.agents.Agent` (e.g.
        ``FPOAgent(config, action_size, network=MyVelocityNet())``); default: ``config.algo``'s.
      value_network: the critic, a Flax module ``obs (..., obs_dim) -> (...,)``; default: the
        paper's MLP. A run with an injected agent or critic resumes when given the same again.
      progress_fn: called on the host after each call of the compiled step as
        ``progress_fn(record, state)``: ``record`` is that call's metrics dict (the line written
        to metrics.jsonl), ``state`` the current :class:`TrainState` (leading member axis), a
        copy that stays valid after later calls (the compiled step donates its own buffers).
        Returning ``False`` (not merely falsy ``None``) stops the run cleanly: it is evaluated
        and checkpointed at that point, and can be resumed later.
      loggers: your own metric sinks, objects with ``write(record)`` (and optionally
        ``close()``): each gets every line that metrics.jsonl gets, as plain Python values,
        on the main process (see :mod:`fpo_jax.loop` for the other parts of the host loop).
      **overrides: config fields to change, e.g. ``num_timesteps=200_000, algo="ppo"``, applied
        as CLI flags are (:func:`fpo_jax.presets.with_changes`: ``dppo_sigma`` also moves the
        DPPO evaluation sigma unless ``eval_sigma`` is given). A changed setting the algorithm
        never reads is refused (ConfigError), unless ``agent`` is injected.

    Returns:
      a :class:`TrainResult`.

    Raises:
      ConfigError: a user error (bad config, run directory, missing logger package...), raised
        before anything is built, compiled or written.
      CheckpointError: resuming, and no checkpoint of the run is readable.
      TrainingDiverged: a non-finite loss or parameter; the last good checkpoint is kept.
    """
    env_is_name = isinstance(env, str)
    config = resolve_config(env, config, **overrides)
    if config.distributed:
        _check_distributed_vars()
        _initialize_distributed_once()
    config = preflight(config, env=env, check_reads=agent is None)
    if agent is not None:  # it trains with the run's settings, or is refused here
        agent = bind_agent(agent, config)
    k = config.num_members
    _log(
        f"{config.algo} on {config.env}, {config.num_timesteps:,} env steps x {k} "
        f"member{'s' if k > 1 else ''} ({config.num_calls} calls of "
        f"{config.env_steps_per_call:,}); defaults: {config.preset_source}. Building the env..."
    )

    env_obj = (
        envs.make_env(config.env, backend=config.backend, impl=config.impl, **config.env_options)
        if env_is_name
        else env
    )
    use_mesh = (config.num_devices or jax.device_count()) > 1
    mesh = parallel.make_mesh(config.num_devices) if use_mesh else None
    trainer = Trainer(env_obj, config, agent=agent, value_network=value_network, mesh=mesh)
    _log(f"evaluation: {trainer.describe_evaluation()}")
    members, keys, hparams = member_inputs(config)
    evaluator = loop.Evaluator(trainer, config, members)
    init = jax.jit(runs.over_members(trainer.init, config.num_members))
    known_code = env_is_name and agent is None and value_network is None
    kept = (
        _kept_programs(trainer, evaluator, keys, hparams) if known_code and mesh is None else None
    )
    if kept is not None:
        init_fn, step_fn, compile_seconds = kept
        state = init_fn(keys, hparams)
    elif mesh is None:
        # The step, the evaluation and the initial state compile at once, from the state's
        # shape: XLA compiles outside Python's lock, so a second core is not left idle.
        state_shape = jax.eval_shape(init, keys, hparams)
        with ThreadPoolExecutor(max_workers=2) as pool:
            init_job = pool.submit(lambda: init.lower(keys, hparams).compile())
            eval_job = pool.submit(evaluator.compile, state_shape)
            step_fn, compile_seconds = _compile_step(trainer, state_shape, also="evaluation")
            eval_job.result()  # re-raises a compile error of the evaluation here
            state = init_job.result()(keys, hparams)
    else:  # the state's sharding decides the programs' layouts: compile from the real state
        state = init(keys, hparams)
        step_fn = None

    ckpt = None
    start_call = 0
    if config.resume is not None:
        ckpt = Checkpointer(Path(config.resume) / "checkpoints", log=_log)
        state, step = ckpt.restore(like=state)
        start_call = int(np.asarray(state.iteration)[0]) // config.iterations_per_call
        _log(f"resumed from {ckpt.directory} at iteration {step}")
    if step_fn is None:
        step_fn, compile_seconds = _compile_step(trainer, state)
    # The program that runs: its memory is checked before the run directory is written.
    try:
        check_step_fits(step_fn, config)
    except ConfigError:
        if ckpt is not None:
            ckpt.close()
        raise
    run_dir = runs.prepare_run_dir(
        config,
        format_explanation(explain(config, env_object=None if env_is_name else env)),
        (trainer.obs_size, trainer.action_size),
    )
    if run_dir is not None and config.checkpoint and ckpt is None:
        ckpt = Checkpointer(run_dir / "checkpoints", log=_log)
    main_process = parallel.is_main_process()
    writer = MetricsWriter(
        run_dir if main_process else None,
        tensorboard=config.tensorboard and main_process,
        wandb_project=config.wandb_project if main_process else None,
        config=dataclasses.asdict(config),
        loggers=loggers if main_process else (),
    )
    try:
        return _train_loop(
            config, trainer, state, start_call, ckpt, writer, run_dir, progress_fn, evaluator,
            step_fn, compile_seconds,
        )  # fmt: skip
    finally:
        writer.close()
        if ckpt is not None:
            ckpt.close()


def _cpu_variant_steps(config: TrainConfig) -> int | None:
    """The budget of the env's CPU-sized preset ("cpu" variant), for the CPU ETA line to offer;
    None when there is none or the run already uses it."""
    if config.variant in CPU_VARIANTS or not config.env or "cpu" not in preset_variants(config.env):
        return None
    return preset(config.env, config.algo, variant="cpu").num_timesteps


def _train_loop(
    config: TrainConfig,
    trainer: Trainer,
    state: TrainState,
    start_call: int,
    ckpt: Checkpointer | None,
    writer: MetricsWriter,
    run_dir: Path | None,
    progress_fn: ProgressFn | None,
    evaluator: loop.Evaluator,
    step_fn: Any,
    compile_seconds: float,
) -> TrainResult:
    """Calls of the compiled step with the host-side parts of :mod:`fpo_jax.loop` around them."""
    members = evaluator.members
    main_process = parallel.is_main_process()
    wall_offset = 0.0
    if config.resume is not None:
        writer.load_existing(start_call * config.env_steps_per_call)
        wall_offset = max((r.get("wall_time") or 0.0 for r in writer.history), default=0.0)
    divergence = loop.DivergencePolicy(config, ckpt, log=_log)
    show_bar = config.progress and main_process and loop.interactive()
    progress = loop.Progress(
        config, start_call, show_bar=show_bar, log=_log, cpu_variant=_cpu_variant_steps(config)
    )

    if start_call == 0 and config.num_evals > 0:
        writer.write({"call": 0, "env_steps": 0, "wall_time": 0.0, **evaluator(state, 0)})
    stopped_early = False
    last_eval = next(
        (r["eval/episode_return"] for r in reversed(writer.history) if "eval/episode_return" in r),
        None,
    )
    run_clock = Stopwatch()
    for call in range(start_call + 1, config.num_calls + 1):
        call_clock = Stopwatch()
        state, metrics = step_fn(state)
        metrics = jax.device_get(metrics)
        call_seconds = call_clock.seconds()
        divergence.check(metrics, call)
        record = loop.call_record(
            call, config, metrics, wall_offset + run_clock.seconds(), call_seconds,
            divergence.diverged,
        )  # fmt: skip
        evaluated = evaluator.due(call)
        if evaluated:
            record.update(evaluator(state, call, divergence.diverged))
        # The next call donates ``state``'s buffers: the callback gets its own copy, which
        # stays readable however long it is kept.
        if progress_fn is not None and progress_fn(dict(record), _copy(state)) is False:
            stopped_early = True
            if not evaluated:
                record.update(evaluator(state, call, divergence.diverged))
                evaluated = True
        # The record first: a run killed between the two resumes from the previous checkpoint
        # and rewrites this record, so metrics.jsonl never misses a call.
        writer.write(record)
        if evaluated:
            last_eval = record["eval/episode_return"]
            if ckpt is not None:
                ckpt.save(int(np.asarray(state.iteration)[0]), state)
        if main_process:
            progress.after_call(record, call_seconds, last_eval)
        if stopped_early:
            _log(f"progress_fn stopped the run after {record['env_steps']:,} env steps")
            break
    progress.close()
    if run_dir is not None and main_process:
        plot_learning_curve(
            writer.history,
            run_dir / "learning_curve.png",
            f"{config.algo} on {config.env}",
            members=members,
        )
    first = divergence.first_finite()
    if first > 0:
        _log(
            f"result.policy is member {first}'s {members[first]}, the first that did not "
            f"diverge (member 0 {members[0]} did)"
        )
    final = jax.tree.map(lambda x: x[first], state)
    return TrainResult(
        state=state,
        policy=trainer.policy_fn(final.eval_params, final.obs_stats, final.hparams),
        history=writer.history,
        config=config,
        trainer=trainer,
        compile_seconds=compile_seconds,
        stopped_early=stopped_early,
        members=members,
    )


if __name__ == "__main__":
    # `python -m fpo_jax.train ...` runs the command line, fpo_jax.cli, as the program; this
    # module does not depend on it (the CLI is built on train()).
    import runpy

    runpy.run_module("fpo_jax.cli", run_name="__main__", alter_sys=True)
