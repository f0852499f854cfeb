"""A run directory's files and the rules for reusing one.

A run writes :data:`RUN_FILES` into its directory: ``config.json`` (the config that ran),
``members.json`` (each member's swept settings and seed), ``metrics.jsonl``, ``checkpoints/``,
the learning curve and TensorBoard files. This module reads a run's config, lists its members
and their inputs, and decides before anything is built whether a directory may be used:
an existing run is refused unless ``--resume`` (with a config that computes the same thing) or
``--overwrite`` is given. It needs no simulator and no CLI parser, so :mod:`fpo_jax.artifacts`
can load runs through it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from fpo_jax import parallel
from fpo_jax.config import TrainConfig, computed_fields, replace, sweep_members
from fpo_jax.errors import ConfigError

# What a run writes into its directory (what --overwrite removes; other files are left alone).
RUN_FILES = ("config.json", "members.json", "settings.txt", "env_sizes.json", "metrics.jsonl",
             "checkpoints", "learning_curve.png", "tensorboard")  # fmt: skip


def read_run_config(run_dir: str | Path) -> TrainConfig:
    """The config of the run in ``run_dir``; ConfigError naming the file if it is missing or bad."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: no config.json there, so no fpo_jax run to use.")
    try:
        return TrainConfig.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError, ValueError) as e:
        raise ConfigError(f"{path} is not a valid fpo_jax config ({e}).") from e


def holds_run(directory: Path) -> list[str]:
    """The names of :data:`RUN_FILES` present in ``directory``."""
    return [name for name in RUN_FILES if (directory / name).exists()]


def check_writable(directory: Path) -> None:
    """ConfigError unless ``directory`` is (or can be created as) a writable directory."""
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"--run-dir {directory} exists and is not a directory.")
    existing = directory
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--run-dir {directory}: {existing} is not writable.")


def check_resume_config(saved: TrainConfig, config: TrainConfig) -> None:
    """ConfigError, in one sentence, if ``config`` computes something else than the run's
    ``saved`` one: every field but the run options (:data:`fpo_jax.config.RUN_OPTIONS`) must
    match, except ``num_timesteps``, which may grow or shrink while the learning rate is
    constant (with ``lr_schedule="linear"`` the decay spans the whole run, so it may not)."""
    if config.variant != saved.variant:
        raise ConfigError(
            f"--variant {config.variant!r} cannot be used with --resume: the run was trained "
            f"with variant {saved.variant!r}, which it keeps."
        )
    diffs = [n for n in computed_fields() if getattr(saved, n) != getattr(config, n)]
    if "num_timesteps" in diffs and saved.lr_schedule == config.lr_schedule == "linear":
        raise ConfigError(
            f"Cannot resume with num_timesteps {saved.num_timesteps} -> {config.num_timesteps}: "
            "lr_schedule='linear' decays the learning rate over the whole run, so a new length "
            "changes every step's learning rate (a constant schedule could be extended)."
        )
    diffs = [n for n in diffs if n != "num_timesteps"]  # a constant rate: any length is fine
    if diffs:
        details = ", ".join(f"{n}: {getattr(saved, n)!r} -> {getattr(config, n)!r}" for n in diffs)
        raise ConfigError(f"Cannot resume with a config that changes what is computed ({details}).")


def resolve_run_dir(config: TrainConfig) -> TrainConfig:
    """Apply the refuse/resume rules of ``run_dir`` / ``resume`` / ``overwrite``; no writes.

    Returns the config with ``run_dir`` (and ``resume``) as resolved absolute paths (the run
    directory is where ``--resume`` points, whatever path its config.json recorded); raises
    ConfigError in one sentence when the directory may not be used.
    """
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
        check_resume_config(saved, config)
        if not (resume / "checkpoints").is_dir():
            raise ConfigError(f"--resume {config.resume}: the run has no checkpoints to resume.")
        check_writable(resume)
        config = replace(config, resume=str(resume), run_dir=str(resume))
    elif config.run_dir is not None:
        run_dir = Path(config.run_dir).expanduser().resolve()
        check_writable(run_dir)
        # Only process 0 writes the run, so only it asks (the others would see its files).
        found = holds_run(run_dir) if run_dir.is_dir() and parallel.is_main_process() else []
        if found and not config.overwrite:
            raise ConfigError(
                f"--run-dir {config.run_dir} already holds a run ({', '.join(found)}): pass "
                f"--resume {config.run_dir} to continue it or --overwrite to replace it."
            )
        config = replace(config, run_dir=str(run_dir))
    return config


def prepare_run_dir(
    config: TrainConfig, settings: str | None = None, sizes: tuple[int, int] | None = None
) -> Path | None:
    """Create the run directory (removing the old run's files with --overwrite); write config,
    ``settings`` (each setting with the preset layer that set it) to settings.txt and the env's
    ``sizes`` (observation, action) to env_sizes.json (what exporting the policy needs)."""
    if config.run_dir is None or not parallel.is_main_process():
        return Path(config.run_dir) if config.run_dir else None
    run_dir = Path(config.run_dir)
    if config.overwrite and config.resume is None:
        for name in holds_run(run_dir) if run_dir.is_dir() else []:
            path = run_dir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(config.to_json())
    (run_dir / "members.json").write_text(json.dumps(sweep_members(config), indent=1))
    if settings is not None:
        (run_dir / "settings.txt").write_text(settings + "\n")
    if sizes is not None:
        obs_size, action_size = sizes
        sizes_json = json.dumps({"obs_size": obs_size, "action_size": action_size})
        (run_dir / "env_sizes.json").write_text(sizes_json + "\n")
    return run_dir


def over_members(fn: Callable[..., Any], num_members: int) -> Callable[..., Any]:
    """``fn`` of one member's arguments, applied to arguments with a leading members axis.

    Several members: ``jax.vmap(fn)``. One member: the axis is taken off the arguments and put
    back on the outputs, so JAX traces ``fn`` without vmap's batching pass (about half the
    tracing of the evaluation and the initial state) and XLA gets no size-1 batch dimension.
    The initial state and the evaluation compute the same bits either way; the training step's
    float rounding differs from a vmapped one's (it also runs ~10 % faster on a CPU), so a
    single run matches member 0 of a multi-member run to rounding, as any two batch sizes do.
    ``experiments/compile_anatomy.py`` measures both forms.
    """
    if num_members > 1:
        return jax.vmap(fn)

    def one_member(*args: Any) -> Any:
        out = fn(*jax.tree.map(lambda x: x[0], args))
        return jax.tree.map(lambda x: jnp.expand_dims(x, 0), out)

    return one_member


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
