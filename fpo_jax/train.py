"""Train a policy: ``python -m fpo_jax.train --env ant`` or ``fpo_jax.train.train(env, config)``.

The Python loop here only calls the compiled training step, evaluates, logs and checkpoints;
all the training math is inside :class:`fpo_jax.trainer.Trainer`'s compiled step.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
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
from fpo_jax.checkpoint import Checkpointer
from fpo_jax.config import ConfigError, TrainConfig, preset, replace, validate
from fpo_jax.run_log import MetricsWriter, plot_learning_curve
from fpo_jax.trainer import Trainer, TrainState

# Fields that may differ between a run and its resumption without changing what is computed.
_RESUMABLE_CHANGES = {"run_dir", "resume", "progress", "num_timesteps", "tensorboard",
                      "wandb_project", "preset_source", "num_devices", "distributed"}  # fmt: skip


class TrainingDiverged(RuntimeError):
    """A non-finite loss or parameter appeared; the last good checkpoint was kept."""


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
      state: final :class:`TrainState` (with a leading seed axis when ``num_seeds > 1``).
      policy: ``policy(obs (..., obs_dim), key) -> action (..., A)`` in [-1, 1], jit-able; uses
        the evaluation sampler. With several seeds, the first seed's policy.
      history: one dict per call of the compiled step (env steps, losses, ratio statistics,
        eval returns when evaluated).
      config: the validated config that ran.
      trainer: the :class:`Trainer` (its pure functions, e.g. ``trainer.evaluate``).
      compile_seconds: time to compile the training step.
    """

    state: TrainState
    policy: Callable[[jax.Array, jax.Array], jax.Array]
    history: list[dict[str, Any]]
    config: TrainConfig
    trainer: Trainer
    compile_seconds: float

    @property
    def final_eval_return(self) -> float:
        evals = [r["eval/episode_return"] for r in self.history if "eval/episode_return" in r]
        return float(evals[-1]) if evals else float("nan")


def _eval_calls(num_calls: int, num_evals: int) -> set[int]:
    """Calls after which to evaluate and checkpoint: ``num_evals`` evenly spaced, last included."""
    if num_evals == 0:
        return {num_calls}
    return {math.ceil(i * num_calls / num_evals) for i in range(1, num_evals + 1)}


def _check_resume_config(saved: TrainConfig, config: TrainConfig) -> None:
    diffs = [
        f.name
        for f in dataclasses.fields(TrainConfig)
        if f.name not in _RESUMABLE_CHANGES and getattr(saved, f.name) != getattr(config, f.name)
    ]
    if diffs:
        details = ", ".join(f"{n}: {getattr(saved, n)!r} -> {getattr(config, n)!r}" for n in diffs)
        raise ConfigError(f"Cannot resume with a config that changes what is computed ({details}).")


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


_distributed_initialized = False


def _initialize_distributed_once() -> None:
    global _distributed_initialized
    if not _distributed_initialized:
        parallel.initialize_distributed()
        _distributed_initialized = True


def train(
    env: str | Any,
    config: TrainConfig | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train with FPO (or the PPO / DPPO baselines) and return the state, policy and metrics.

    Args:
      env: an env name for :func:`fpo_jax.envs.make_env`, or an env object (a Brax ``Env``,
        a MuJoCo Playground ``MjxEnv`` or a built-in toy env).
      config: the full config; default: the preset for ``env`` and ``overrides.get("algo")``.
      **overrides: config fields to change, e.g. ``num_timesteps=200_000, algo="ppo"``.

    Returns:
      a :class:`TrainResult`.

    Raises:
      ConfigError: invalid config (before anything is compiled).
      TrainingDiverged: a non-finite loss or parameter; the last good checkpoint is kept.
    """
    if config is None:
        name = env if isinstance(env, str) else type(env).__name__
        config = preset(name, overrides.get("algo", "fpo")) if isinstance(env, str) else (
            TrainConfig(env=name))  # fmt: skip
    config = validate(replace(config, **overrides) if overrides else config)
    if config.distributed:
        _initialize_distributed_once()
    main_process = parallel.is_main_process()
    resume_dir = Path(config.resume) if config.resume else None
    if resume_dir is not None:
        saved_path = resume_dir / "config.json"
        if not saved_path.exists():
            raise ConfigError(f"--resume {resume_dir}: no config.json there, so no run to resume.")
        _check_resume_config(TrainConfig.from_dict(json.loads(saved_path.read_text())), config)
        config = replace(config, run_dir=str(resume_dir))
    run_dir = Path(config.run_dir) if config.run_dir else None

    env_obj = (
        envs.make_env(config.env, backend=config.backend, impl=config.impl)
        if isinstance(env, str)
        else env
    )
    use_mesh = (config.num_devices or jax.device_count()) > 1
    mesh = parallel.make_mesh(config.num_devices) if use_mesh else None
    trainer = Trainer(env_obj, config, mesh=mesh)
    k = config.num_seeds
    seeds = jnp.arange(config.seed, config.seed + k)
    keys = jax.vmap(jax.random.PRNGKey)(seeds)
    multi = k > 1
    batched = (lambda f: jax.vmap(f)) if multi else (lambda f: f)
    first = (lambda x: x[0]) if multi else (lambda x: x)

    state = jax.jit(batched(trainer.init))(keys if multi else keys[0])
    ckpt = None
    start_call = 0
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        if main_process:
            (run_dir / "config.json").write_text(config.to_json())
        if config.checkpoint:
            ckpt = Checkpointer(run_dir / "checkpoints")
    if resume_dir is not None:
        if ckpt is None or ckpt.latest_step() is None:
            raise ConfigError(f"--resume {resume_dir}: no checkpoint to resume from.")
        state = ckpt.restore(like=state)
        start_call = int(np.asarray(first(state.iteration))) // config.iterations_per_call
        _log(
            f"resumed from {ckpt.directory} at iteration {start_call * config.iterations_per_call}"
        )

    writer = MetricsWriter(
        run_dir if main_process else None,
        tensorboard=config.tensorboard and main_process,
        wandb_project=config.wandb_project if main_process else None,
        config=dataclasses.asdict(config),
    )
    if resume_dir is not None:
        writer.load_existing(start_call * config.env_steps_per_call)

    t0 = time.perf_counter()
    step_fn = jax.jit(batched(trainer.train_step), donate_argnums=0).lower(state).compile()
    compile_seconds = time.perf_counter() - t0
    eval_fn = jax.jit(batched(trainer.evaluate))
    devices = f"{mesh.size} devices" if mesh is not None else "1 device"
    _log(
        f"{config.algo} on {config.env} ({devices}, {k} seed{'s' if multi else ''}): "
        f"{config.num_calls} calls x "
        f"{config.env_steps_per_call:,} env steps ({config.preset_source}); "
        f"training step compiled in {compile_seconds:.1f} s on {jax.default_backend()}"
    )

    eval_calls = _eval_calls(config.num_calls, config.num_evals)
    eval_base_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 0x5EED)

    def run_eval(state: TrainState, call: int) -> dict[str, Any]:
        ekey = jax.random.fold_in(eval_base_key, call)
        ekeys = jax.random.split(ekey, k) if multi else ekey
        out = jax.device_get(eval_fn(state, ekeys))
        record = {name: np.mean(v) for name, v in out.items()}
        if multi:
            record["per_seed/eval/episode_return"] = out["eval/episode_return"]
            record["eval/episode_return_stderr"] = np.std(out["eval/episode_return"]) / np.sqrt(k)
        return record

    if start_call == 0 and config.num_evals > 0:
        writer.write({"call": 0, "env_steps": 0, "wall_time": 0.0, **run_eval(state, 0)})

    progress = None
    if config.progress and main_process:
        from tqdm.auto import tqdm

        progress = tqdm(
            total=config.num_calls * config.env_steps_per_call * k,
            initial=start_call * config.env_steps_per_call * k,
            unit="step",
            unit_scale=True,
            dynamic_ncols=True,
            desc=f"{config.algo}/{config.env}",
        )
    t_start = time.perf_counter()
    for call in range(start_call + 1, config.num_calls + 1):
        t_call = time.perf_counter()
        state, metrics = step_fn(state)
        metrics = jax.device_get(metrics)
        call_seconds = time.perf_counter() - t_call
        if not np.all(metrics["finite"]):
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
            "wall_time": time.perf_counter() - t_start,
            "env_steps_per_second": config.env_steps_per_call * k / call_seconds,
        }
        record.update({n: _nanmean(v) for n, v in metrics.items() if n != "finite"})
        if call in eval_calls:
            record.update(run_eval(state, call))
            if ckpt is not None:
                ckpt.save(int(np.asarray(first(state.iteration))), state)
        writer.write(record)
        if call == start_call + 1 and jax.default_backend() == "cpu" and main_process:
            remaining = call_seconds * (config.num_calls - call)
            if remaining > 120:
                _log(
                    f"no accelerator: this run will take about {_format_seconds(remaining)} "
                    "more on this CPU; shorten it with --num-timesteps (or smaller --num-envs / "
                    "--num-epochs), or install the GPU build: pip install 'fpo_jax[cuda]'."
                )
        if progress is not None:
            progress.update(config.env_steps_per_call * k)
            postfix = {"sps": f"{record['env_steps_per_second']:.0f}"}
            last_eval = [r for r in writer.history if "eval/episode_return" in r]
            if last_eval:
                postfix["eval"] = f"{last_eval[-1]['eval/episode_return']:.1f}"
            progress.set_postfix(postfix)
    if progress is not None:
        progress.close()
    writer.close()
    if run_dir is not None and main_process:
        plot_learning_curve(
            writer.history, run_dir / "learning_curve.png", f"{config.algo} on {config.env}"
        )
    if ckpt is not None:
        ckpt.close()
    final_state = jax.tree.map(first, state) if multi else state
    policy = trainer.policy_fn(final_state.params, final_state.obs_stats)
    return TrainResult(
        state=state,
        policy=policy,
        history=writer.history,
        config=config,
        trainer=trainer,
        compile_seconds=compile_seconds,
    )


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    """CLI flags -> config: the preset of ``--env``/``--algo`` (or of the resumed run), then flags."""
    import tyro

    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--env", default=TrainConfig.env)
    pre.add_argument("--algo", default=TrainConfig.algo)
    pre.add_argument("--resume", default=None)
    known, _ = pre.parse_known_args(argv)
    if known.resume and (Path(known.resume) / "config.json").exists():
        default = TrainConfig.from_dict(
            json.loads((Path(known.resume) / "config.json").read_text())
        )
    else:
        default = preset(known.env, known.algo)
    return tyro.cli(
        TrainConfig,
        default=default,
        args=argv,
        description="Train a flow policy with FPO (or the PPO / DPPO baselines). The defaults "
        "shown are the preset for --env/--algo; every flag overrides it.",
    )


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_config(argv)
        result = train(config.env, config)
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"error: training diverged: {e}", file=sys.stderr)
        return 3
    _log(f"final eval return: {result.final_eval_return:.2f}")
    if config.run_dir:
        _log(f"run directory: {config.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
