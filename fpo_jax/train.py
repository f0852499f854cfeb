"""Train a policy: ``python -m fpo_jax.train --env ant`` or ``fpo_jax.train.train(env, config)``.

The Python loop here only calls the compiled training step, evaluates, logs and checkpoints;
all the training math is inside :class:`fpo_jax.trainer.Trainer`'s compiled step.

Order of work, so that a mistake costs one sentence and no files: (1) every check that needs no
simulator (:func:`preflight`: config, env name, run directory, loggers, devices), (2) build the
env, the trainer and the initial state (and restore the checkpoint when resuming), (3) only then
create or clean the run directory, (4) compile, (5) train.

Seeds and sweeps always train as one program: the state has a leading *member* axis (a member is
one setting of the ``--sweep`` grid with one seed; without a sweep, members are the seeds, and
one seed is one member) and the trainer's pure functions are ``vmap``-ed over it. Swept
hyperparameters ride along in the state as traced values (``TrainState.hparams``).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fpo_jax import envs, parallel
from fpo_jax.checkpoint import Checkpointer, CheckpointError
from fpo_jax.config import (
    ConfigError,
    TrainConfig,
    preset,
    replace,
    sweep_members,
    validate,
)
from fpo_jax.run_log import MetricsWriter, plot_learning_curve
from fpo_jax.trainer import Trainer, TrainState

# Fields that may differ between a run and its resumption without changing what is computed.
_RESUMABLE_CHANGES = {"run_dir", "resume", "overwrite", "progress", "num_timesteps",
                      "compile_cache",
                      "tensorboard", "wandb_project", "preset_source", "num_devices",
                      "distributed"}  # fmt: skip
# What a run writes into its directory (what --overwrite removes; other files are left alone).
RUN_FILES = ("config.json", "members.json", "metrics.jsonl", "checkpoints",
             "learning_curve.png", "tensorboard")  # fmt: skip
_DISTRIBUTED_VARS = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")

# progress_fn(record, state) -> False to stop; see train().
ProgressFn = Callable[[dict[str, Any], TrainState], Any]


class TrainingDiverged(RuntimeError):
    """A non-finite loss or parameter appeared; the last good checkpoint was kept."""


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
      state: final :class:`TrainState` of every member, with a leading member axis (size
        ``config.num_members``, also when it is 1); :meth:`member` picks one.
      policy: the first member's ``policy(obs (..., obs_dim), key) -> action (..., A)`` in
        [-1, 1], jit-able, with the evaluation sampler; :meth:`policy_of` gives another's.
      history: one dict per call of the compiled step (env steps, losses, ratio statistics,
        eval returns when evaluated).
      config: the validated config that ran.
      trainer: the :class:`Trainer` (its pure functions, e.g. ``trainer.evaluate``).
      compile_seconds: time to compile the training step.
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
        return self.trainer.policy_fn(state.params, state.obs_stats, state.hparams)

    @property
    def final_eval_return(self) -> float:
        evals = [r["eval/episode_return"] for r in self.history if "eval/episode_return" in r]
        return float(evals[-1]) if evals and evals[-1] is not None else float("nan")


# ----------------------------------------------------------------------------------------------
# Checks before anything is built or written


def read_run_config(run_dir: str | Path) -> TrainConfig:
    """The config of the run in ``run_dir``; ConfigError naming the file if it is missing or bad."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: no config.json there, so no fpo_jax run to use.")
    try:
        return TrainConfig.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError, ValueError) as e:
        raise ConfigError(f"{path} is not a valid fpo_jax config ({e}).") from e


def _holds_run(directory: Path) -> list[str]:
    return [name for name in RUN_FILES if (directory / name).exists()]


def _check_writable(directory: Path) -> None:
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"--run-dir {directory} exists and is not a directory.")
    existing = directory
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--run-dir {directory}: {existing} is not writable.")


def _check_resume_config(saved: TrainConfig, config: TrainConfig) -> None:
    diffs = [
        f.name
        for f in dataclasses.fields(TrainConfig)
        if f.name not in _RESUMABLE_CHANGES and getattr(saved, f.name) != getattr(config, f.name)
    ]
    if diffs:
        details = ", ".join(f"{n}: {getattr(saved, n)!r} -> {getattr(config, n)!r}" for n in diffs)
        raise ConfigError(f"Cannot resume with a config that changes what is computed ({details}).")


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


def preflight(config: TrainConfig, *, env_is_name: bool = True) -> TrainConfig:
    """Every check that needs no simulator, no compilation and no writes; raises ConfigError.

    Returns the config to run: validated, with the env's canonical name, and with ``run_dir``
    and ``resume`` as resolved absolute paths (the run directory is where ``--resume`` points,
    whatever path its config.json recorded).
    """
    config = validate(config)
    if env_is_name:
        config = replace(config, env=envs.canonical_name(config.env))
    if config.distributed:
        _check_distributed_vars()
    for enabled, module, extra, flag in [
        (config.tensorboard, "tensorboardX", "tensorboard", "--tensorboard"),
        (config.wandb_project is not None, "wandb", "wandb", "--wandb-project"),
    ]:
        if enabled and importlib.util.find_spec(module) is None:
            raise ConfigError(f"{flag} needs {module}: pip install 'fpo_jax[{extra}]'.")
    if config.resume is not None:
        if config.overwrite:
            raise ConfigError("--resume and --overwrite contradict each other: pick one.")
        resume = Path(config.resume).expanduser().resolve()
        saved = read_run_config(resume)
        # The run_dir recorded in a moved or copied run's config.json is stale, not a conflict.
        if (
            config.run_dir is not None
            and config.run_dir != saved.run_dir
            and Path(config.run_dir).expanduser().resolve() != resume
        ):
            raise ConfigError(
                f"--resume {config.resume} and --run-dir {config.run_dir} name different "
                "directories."
            )
        _check_resume_config(saved, config)
        if not (resume / "checkpoints").is_dir():
            raise ConfigError(f"--resume {config.resume}: the run has no checkpoints to resume.")
        _check_writable(resume)
        config = replace(config, resume=str(resume), run_dir=str(resume))
    elif config.run_dir is not None:
        run_dir = Path(config.run_dir).expanduser().resolve()
        _check_writable(run_dir)
        # Only process 0 writes the run, so only it asks (the others would see its files).
        found = _holds_run(run_dir) if run_dir.is_dir() and parallel.is_main_process() else []
        if found and not config.overwrite:
            raise ConfigError(
                f"--run-dir {config.run_dir} already holds a run ({', '.join(found)}): pass "
                f"--resume {config.run_dir} to continue it or --overwrite to replace it."
            )
        config = replace(config, run_dir=str(run_dir))
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


def _eval_calls(num_calls: int, num_evals: int) -> set[int]:
    """Calls after which to evaluate and checkpoint: ``num_evals`` evenly spaced, last included."""
    if num_evals == 0:
        return {num_calls}
    return {math.ceil(i * num_calls / num_evals) for i in range(1, num_evals + 1)}


def _nanmean(x: Any) -> float:
    """Mean over seeds ignoring NaN (e.g. no episode ended in a call); NaN if all are NaN."""
    x = np.asarray(x, dtype=np.float64)
    finite = ~np.isnan(x)
    return float(x[finite].mean()) if finite.any() else float("nan")


def _format_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _log(msg: str) -> None:
    if parallel.is_main_process():
        print(f"[fpo_jax] {msg}", file=sys.stderr, flush=True)


def _interactive() -> bool:
    """A progress bar helps on a terminal or in a notebook; a log file wants plain lines."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules


_distributed_initialized = False


def _initialize_distributed_once() -> None:
    global _distributed_initialized
    if not _distributed_initialized:
        parallel.initialize_distributed()
        _distributed_initialized = True


def enable_compilation_cache() -> Path:
    """Turn on JAX's persistent compilation cache (what the CLI does unless --no-compile-cache).

    The folder is ``$JAX_COMPILATION_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/fpo_jax/xla``
    (default ``~/.cache/fpo_jax/xla``). Programs that compile in under a second are not kept.
    """
    folder = os.environ.get("JAX_COMPILATION_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fpo_jax" / "xla"
    )
    Path(folder).mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    return Path(folder)


def _compilation_cache_entries() -> int | None:
    folder = jax.config.jax_compilation_cache_dir
    if not jax.config.jax_enable_compilation_cache or not folder or not Path(folder).is_dir():
        return None
    return sum(1 for _ in Path(folder).iterdir())


def _prepare_run_dir(config: TrainConfig) -> Path | None:
    """Create the run directory (removing the old run's files with --overwrite); write config."""
    if config.run_dir is None or not parallel.is_main_process():
        return Path(config.run_dir) if config.run_dir else None
    run_dir = Path(config.run_dir)
    if config.overwrite and config.resume is None:
        for name in _holds_run(run_dir) if run_dir.is_dir() else []:
            path = run_dir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(config.to_json())
    (run_dir / "members.json").write_text(json.dumps(sweep_members(config), indent=1))
    return run_dir


def member_inputs(config: TrainConfig) -> tuple[list[dict[str, float]], jax.Array, dict]:
    """The members of a run, their PRNG keys ``(M, 2)`` and swept values ``{name: (M,)}``.

    Member ``(setting, seed)`` starts from ``PRNGKey(seed)``, exactly as the single run of that
    setting and seed would, so a sweep member reproduces that run.
    """
    members = sweep_members(config)
    keys = jax.vmap(jax.random.PRNGKey)(jnp.array([m["seed"] for m in members]))
    names = [n for n in members[0] if n != "seed"]
    hparams = {n: jnp.array([m[n] for m in members], jnp.float32) for n in names}
    return members, keys, hparams


def _bytes(tree: Any) -> int:
    return sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def _device_memory_bytes() -> int | None:
    device = jax.local_devices()[0]  # only this process's devices report their memory
    try:
        stats = device.memory_stats()
    except Exception:  # not every backend implements it
        stats = None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None


def _check_members_fit(trainer: Trainer, state: TrainState, config: TrainConfig) -> None:
    """Before compiling a sweep or several seeds: the states and one iteration's rollouts of
    all members must fit. (Tracing ``collect`` costs a second or so: single runs skip it.)"""
    if config.num_members == 1:
        return
    one = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), state)
    rollout = jax.eval_shape(trainer.collect, one)[1]
    need = _bytes(state) + config.num_members * _bytes(rollout)
    have = _device_memory_bytes()
    room = f" of {have / 2**30:.1f} GiB" if have else ""
    _log(
        f"{config.num_members} members in one program: about {need / 2**20:,.0f} MiB for "
        f"their states and rollouts{room} (plus working memory)"
    )
    if have is not None and need > 0.8 * have:
        raise ConfigError(
            f"{config.num_members} members need about {need / 2**30:.1f} GiB for states and "
            f"rollouts, more than 80 % of the device's {have / 2**30:.1f} GiB: sweep fewer "
            "settings or seeds, or use fewer --num-envs."
        )


# ----------------------------------------------------------------------------------------------
# Training


def train(
    env: str | Any,
    config: TrainConfig | None = None,
    *,
    agent: Any | None = None,
    value_network: Any | None = None,
    progress_fn: ProgressFn | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train with FPO (or the PPO / DPPO baselines) and return the state, policy and metrics.

    Args:
      env: an env name for :func:`fpo_jax.envs.make_env` (any case), or an env object (a Brax
        ``Env``, a MuJoCo Playground ``MjxEnv`` or a built-in toy env).
      config: the full config; default: the preset for ``env`` and ``overrides.get("algo")``.
      agent: the algorithm, any :class:`fpo_jax.agents.Agent` (e.g.
        ``FPOAgent(config, action_size, network=MyVelocityNet())``); default: ``config.algo``'s.
      value_network: the critic, a Flax module ``obs (..., obs_dim) -> (...,)``; default: the
        paper's MLP. A run with an injected agent or critic resumes when given the same again.
      progress_fn: called on the host after each call of the compiled step as
        ``progress_fn(record, state)``: ``record`` is that call's metrics dict (the line written
        to metrics.jsonl), ``state`` the current :class:`TrainState` (leading seed axis).
        Returning ``False`` (not merely falsy ``None``) stops the run cleanly: it is evaluated
        and checkpointed at that point, and can be resumed later.
      **overrides: config fields to change, e.g. ``num_timesteps=200_000, algo="ppo"``.

    Returns:
      a :class:`TrainResult`.

    Raises:
      ConfigError: a user error (bad config, run directory, missing logger package...), raised
        before anything is built, compiled or written.
      CheckpointError: resuming, and no checkpoint of the run is readable.
      TrainingDiverged: a non-finite loss or parameter; the last good checkpoint is kept.
    """
    env_is_name = isinstance(env, str)
    if config is None:
        algo = overrides.get("algo", "fpo")
        config = preset(env, algo) if env_is_name else TrainConfig(env=type(env).__name__)
    elif env_is_name and envs.canonical_name(env) != envs.canonical_name(config.env):
        raise ConfigError(f"train({env!r}, config) but config.env is {config.env!r}.")
    config = replace(config, **overrides) if overrides else config
    if config.distributed:
        _check_distributed_vars()
        _initialize_distributed_once()
    config = preflight(config, env_is_name=env_is_name)
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
    members, keys, hparams = member_inputs(config)
    state = jax.jit(jax.vmap(trainer.init))(keys, hparams)
    _check_members_fit(trainer, state, config)

    ckpt = None
    start_call = 0
    if config.resume is not None:
        ckpt = Checkpointer(Path(config.resume) / "checkpoints", log=_log)
        state, step = ckpt.restore(like=state)
        start_call = int(np.asarray(state.iteration)[0]) // config.iterations_per_call
        _log(f"resumed from {ckpt.directory} at iteration {step}")
    run_dir = _prepare_run_dir(config)
    if run_dir is not None and config.checkpoint and ckpt is None:
        ckpt = Checkpointer(run_dir / "checkpoints", log=_log)
    main_process = parallel.is_main_process()
    writer = MetricsWriter(
        run_dir if main_process else None,
        tensorboard=config.tensorboard and main_process,
        wandb_project=config.wandb_project if main_process else None,
        config=dataclasses.asdict(config),
    )
    try:
        return _train_loop(
            config, trainer, state, start_call, ckpt, writer, run_dir, progress_fn, mesh, members
        )
    finally:
        writer.close()
        if ckpt is not None:
            ckpt.close()


def _train_loop(
    config: TrainConfig,
    trainer: Trainer,
    state: TrainState,
    start_call: int,
    ckpt: Checkpointer | None,
    writer: MetricsWriter,
    run_dir: Path | None,
    progress_fn: ProgressFn | None,
    mesh: Any,
    members: list[dict[str, float]],
) -> TrainResult:
    k = config.num_members
    main_process = parallel.is_main_process()
    wall_offset = 0.0
    if config.resume is not None:
        writer.load_existing(start_call * config.env_steps_per_call)
        wall_offset = max((r.get("wall_time") or 0.0 for r in writer.history), default=0.0)

    _log("compiling the training step (rollout and update, one program)...")
    cache_entries = _compilation_cache_entries()
    t0 = time.perf_counter()
    step_fn = jax.jit(jax.vmap(trainer.train_step), donate_argnums=0).lower(state).compile()
    compile_seconds = time.perf_counter() - t0
    eval_fn = jax.jit(jax.vmap(trainer.evaluate))
    devices = f"{mesh.size} devices" if mesh is not None else "1 device"
    # A program found in the persistent cache is loaded, not written again.
    cached = cache_entries is not None and _compilation_cache_entries() == cache_entries
    how = "loaded from the compilation cache" if cached else "compiled"
    _log(f"{how} in {compile_seconds:.1f} s on {jax.default_backend()} ({devices})")

    eval_calls = _eval_calls(config.num_calls, config.num_evals)
    eval_base_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 0x5EED)
    total_steps = config.num_calls * config.env_steps_per_call

    # Each member's evaluation key depends on its seed only: a sweep member and the single run
    # of its setting and seed evaluate on the same episodes.
    member_seeds = jnp.array([m["seed"] for m in members])

    def run_eval(state: TrainState, call: int) -> dict[str, Any]:
        call_key = jax.random.fold_in(eval_base_key, call)
        ekeys = jax.vmap(lambda s: jax.random.fold_in(call_key, s))(member_seeds)
        out = jax.device_get(eval_fn(state, ekeys))
        record = {name: _nanmean(v) for name, v in out.items()}  # diverged members are NaN
        record.update({f"per_member/{name}": v for name, v in out.items()})
        if k > 1 and not config.sweep:  # the seeds' spread; a sweep's members differ on purpose
            record["eval/episode_return_stderr"] = np.std(out["eval/episode_return"]) / np.sqrt(k)
        return record

    def save(state: TrainState) -> None:
        if ckpt is not None:
            ckpt.save(int(np.asarray(state.iteration)[0]), state)

    if start_call == 0 and config.num_evals > 0:
        writer.write({"call": 0, "env_steps": 0, "wall_time": 0.0, **run_eval(state, 0)})

    show_bar = config.progress and main_process and _interactive()
    progress = None
    if show_bar:
        from tqdm.auto import tqdm

        progress = tqdm(
            total=total_steps * k,
            initial=start_call * config.env_steps_per_call * k,
            unit="step",
            unit_scale=True,
            dynamic_ncols=True,
            desc=f"{config.algo}/{config.env}",
        )
    stopped_early = False
    # Members are independent runs: one that diverges (e.g. a sweep's largest learning rate) is
    # named once and carried on as NaN while the others train; only when all have, it stops.
    diverged: list[int] = []
    t_start = time.perf_counter()
    for call in range(start_call + 1, config.num_calls + 1):
        t_call = time.perf_counter()
        state, metrics = step_fn(state)
        metrics = jax.device_get(metrics)
        call_seconds = time.perf_counter() - t_call
        finite = np.asarray(metrics["finite"]).reshape(-1)
        if k > 1 and finite.any():
            for i in np.flatnonzero(~finite):
                if i not in diverged:
                    diverged.append(int(i))
                    _log(
                        f"member {i} {sweep_members(config)[i]} diverged (non-finite losses or "
                        f"parameters) at iteration {call * config.iterations_per_call}; it is "
                        "kept as NaN and the other members go on."
                    )
        elif not finite.all():
            bad = [n for n, v in metrics.items() if not np.all(np.isfinite(v))] or ["parameters"]
            kept = f"; last good checkpoint: step {ckpt.latest_step()}" if ckpt else ""
            raise TrainingDiverged(
                f"Non-finite {', '.join(bad)} at iteration {call * config.iterations_per_call} "
                f"(env step {call * config.env_steps_per_call:,}){kept}."
            )
        env_steps = call * config.env_steps_per_call
        record: dict[str, Any] = {
            "call": call,
            "env_steps": env_steps,
            "wall_time": wall_offset + time.perf_counter() - t_start,
            "env_steps_per_second": config.env_steps_per_call * k / call_seconds,
        }
        record.update({n: _nanmean(v) for n, v in metrics.items() if n != "finite"})
        if diverged:
            record["diverged_members"] = sorted(diverged)
        if k > 1:  # each member's own numbers, in the order of members.json
            record.update(
                {f"per_member/{n}": np.asarray(v) for n, v in metrics.items() if n != "finite"}
            )
        evaluated = call in eval_calls
        if evaluated:
            record.update(run_eval(state, call))
        if progress_fn is not None and progress_fn(dict(record), state) is False:
            stopped_early = True
            if not evaluated:
                record.update(run_eval(state, call))
                evaluated = True
        # The record first: a run killed between the two resumes from the previous checkpoint
        # and rewrites this record, so metrics.jsonl never misses a call.
        writer.write(record)
        if evaluated:
            save(state)
        if call == start_call + 1 and jax.default_backend() == "cpu" and main_process:
            remaining = call_seconds * (config.num_calls - call)
            if remaining > 120:
                _log(
                    f"no accelerator: this run will take about {_format_seconds(remaining)} "
                    "more on this CPU; shorten it with --num-timesteps (or smaller --num-envs / "
                    "--num-epochs), or install the GPU build (see the README)."
                )
        if progress is not None:
            progress.update(config.env_steps_per_call * k)
            postfix = {"sps": f"{record['env_steps_per_second']:.0f}"}
            last_eval = [r for r in writer.history if r.get("eval/episode_return") is not None]
            if last_eval:
                postfix["eval"] = f"{last_eval[-1]['eval/episode_return']:.1f}"
            progress.set_postfix(postfix)
        elif evaluated:
            _log(
                f"{env_steps:,}/{total_steps:,} env steps: eval return "
                f"{record['eval/episode_return']:.2f}, {record['env_steps_per_second']:,.0f} "
                f"env steps/s, {_format_seconds(record['wall_time'])} elapsed"
            )
        if stopped_early:
            _log(f"progress_fn stopped the run after {env_steps:,} env steps")
            break
    if progress is not None:
        progress.close()
    if run_dir is not None and main_process:
        plot_learning_curve(
            writer.history,
            run_dir / "learning_curve.png",
            f"{config.algo} on {config.env}",
            members=members,
        )
    final = jax.tree.map(lambda x: x[0], state)
    return TrainResult(
        state=state,
        policy=trainer.policy_fn(final.params, final.obs_stats, final.hparams),
        history=writer.history,
        config=config,
        trainer=trainer,
        compile_seconds=compile_seconds,
        stopped_early=stopped_early,
        members=members,
    )


# ----------------------------------------------------------------------------------------------
# Command line


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    """CLI flags -> config: the preset of ``--env``/``--algo``/``--variant`` (or of the resumed
    run), then flags."""
    import tyro

    from fpo_jax.agents import ALGORITHMS

    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--env", default=TrainConfig.env)
    pre.add_argument("--algo", default=TrainConfig.algo)
    pre.add_argument("--resume", default=None)
    pre.add_argument("--sweep", action="append", default=None)
    pre.add_argument("--variant", default="default")
    known, _ = pre.parse_known_args(argv)
    # --sweep repeats (one per field): collected here, then removed for tyro; --variant picks
    # the preset (not a config field).
    argv = _without_option(_without_option(argv, "--sweep"), "--variant")
    if known.resume:
        default = read_run_config(known.resume)
    else:
        default = preset(known.env, known.algo, variant=known.variant)
    algos = "; ".join(f"{name}: {a.description}" for name, a in ALGORITHMS.items())
    config = tyro.cli(
        TrainConfig,
        default=default,
        args=argv,
        description="Train a flow policy with FPO (or the PPO / DPPO baselines). The defaults "
        "shown are the preset for --env/--algo; every flag overrides it. Algorithms: "
        + algos
        + ". Sweeps: --sweep clip_epsilon=0.05,0.1 --sweep learning_rate=3e-4,1e-3 trains the "
        "grid (x --num-seeds) as one program. Preset variants: --variant paper (gridworld: the "
        "FPO authors' GridWorld settings), --variant fast (DM Control tasks: a layout and FPO "
        "settings searched for a CPU budget).",
    )
    if known.sweep is not None:
        config = replace(config, sweep=tuple(known.sweep))
    return config


def _without_option(argv: list[str], option: str) -> list[str]:
    """``argv`` without ``option VALUE`` / ``option=VALUE`` pairs."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    config = None
    try:
        config = parse_config(argv)
        if config.compile_cache:
            enable_compilation_cache()
        result = train(config.env, config)
    except (ConfigError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"error: training diverged: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        where = f"; continue with --resume {config.run_dir}" if config and config.run_dir else ""
        print(f"interrupted{where}", file=sys.stderr)
        return 130
    _log(f"final eval return: {result.final_eval_return:.2f}")
    if result.config.run_dir:
        _log(f"run directory: {result.config.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
