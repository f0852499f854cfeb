"""Training throughput, side by side on one env and one batch layout, in one process.

Measures, on the same environment and the same rollout / batch / epoch shape:

1. raw simulator stepping: ``jit(lax.scan(vmap(env.step)))`` with zero actions over
   ``fpo_jax.envs.wrap_for_training`` (the upper limit for any trainer);
2. Brax's own PPO (``brax.training.agents.ppo.train.train``) with the same layout and 4x32 / 5x256
   networks (PyPI brax 0.14.2 needs ``jax.device_put_replicated``, which jax 0.10.2 removed: a shim
   is installed for this process only);
3. this project's Gaussian PPO and 4. this project's FPO, each as
   ``jax.jit(trainer.train_step, donate_argnums=0)``, compiled ahead of time so that compile time
   and steps/s are measured separately.

It then explains FPO's overhead: a small grid over ``flow_steps`` x ``num_pairs``, a rollout-only
vs update split, and the compiled step's memory (``compiled.memory_analysis()``) for
``pair_storage="stored"`` vs ``"key"``.

Run from the repository root::

    python experiments/bench_throughput.py                    # Playground CartpoleBalance
    python experiments/bench_throughput.py --quick            # ~1 minute smoke run
    python experiments/bench_throughput.py --env inverted_pendulum --backend spring

Results go to stdout and ``experiments/results/throughput_<env>_<platform>.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable as `python experiments/bench_throughput.py`
    sys.path.insert(0, str(REPO))

from fpo_jax import config as config_lib  # noqa: E402
from fpo_jax import envs  # noqa: E402
from fpo_jax.trainer import Trainer, TrainState  # noqa: E402

SHIM_NOTE: list[str] = []


# ----------------------------------------------------------------------------------------------
# Helpers


def block(tree: Any) -> Any:
    return jax.block_until_ready(tree)


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
        return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"
    except OSError:
        return "unavailable"


def fmt_rate(x: float | None) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:,.0f}"


def fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def fmt_ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or not b:
        return "-"
    return f"{a / b:.2f}"


def mib(nbytes: int | None) -> str:
    return "-" if nbytes is None else f"{nbytes / 2**20:.1f}"


@dataclasses.dataclass
class Result:
    method: str
    steps_per_s: float | None
    compile_s: float | None
    note: str = ""
    seconds_per_iteration: float | None = None
    memory: dict[str, int] | None = None
    extra: dict[str, float] = dataclasses.field(default_factory=dict)


def memory_of(compiled: Any) -> dict[str, int] | None:
    """Argument / output / temp / alias bytes of a compiled program and a peak estimate."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return None
    if m is None:
        return None
    out = {
        "argument": int(m.argument_size_in_bytes),
        "output": int(m.output_size_in_bytes),
        "alias": int(m.alias_size_in_bytes),
        "temp": int(m.temp_size_in_bytes),
    }
    # Live at once: inputs, outputs not aliased to (donated) inputs, and XLA's scratch buffers.
    out["peak"] = out["argument"] + out["output"] - out["alias"] + out["temp"]
    return out


def timed_calls(fn: Callable[[Any], Any], state: Any, calls: int) -> tuple[Any, float]:
    """Runs ``state = fn(state)[0]`` ``calls`` times; returns (state, seconds)."""
    t0 = time.perf_counter()
    for _ in range(calls):
        state = fn(state)[0]
    block(state)
    return state, time.perf_counter() - t0


# ----------------------------------------------------------------------------------------------
# 1. Raw stepping


def bench_raw(env: Any, cfg: config_lib.TrainConfig, scan_length: int, calls: int) -> Result:
    wrapped = envs.wrap_for_training(
        env, episode_length=cfg.episode_length, action_repeat=cfg.action_repeat
    )
    _, action_size = envs.env_sizes(env)
    keys = jax.random.split(jax.random.PRNGKey(0), cfg.num_envs)
    state = block(jax.jit(wrapped.reset)(keys))
    zeros = jnp.zeros((cfg.num_envs, action_size))

    def run(state):
        def body(s, _):
            s = wrapped.step(s, zeros)
            return s, s.reward.sum()

        state, rewards = jax.lax.scan(body, state, None, length=scan_length)
        return state, rewards.sum()

    t0 = time.perf_counter()
    compiled = jax.jit(run, donate_argnums=0).lower(state).compile()
    compile_s = time.perf_counter() - t0
    state = block(compiled(state)[0])  # warm-up
    state, seconds = timed_calls(compiled, state, calls)
    steps = calls * scan_length * cfg.num_envs * cfg.action_repeat
    return Result("raw stepping (zero actions)", steps / seconds, compile_s)


# ----------------------------------------------------------------------------------------------
# 2. Brax PPO


def install_brax_shims() -> None:
    """PyPI brax 0.14.2 calls jax.device_put_replicated, removed in jax 0.10.2 (google/brax#671)."""
    if not hasattr(jax, "device_put_replicated"):

        def device_put_replicated(x: Any, devices: list[Any]) -> Any:
            # Stack one copy per device, then place it with an identity pmap over Brax's axis
            # name "i", so the result carries exactly the sharding of the outputs of Brax's
            # pmapped training epoch. With any other sharding (SingleDeviceSharding, or a pmap
            # over another axis name) jax 0.10.2 compiles that epoch a second time on its
            # second call.
            stacked = jax.tree.map(lambda a: jnp.stack([jnp.asarray(a)] * len(devices)), x)
            return jax.pmap(lambda t: t, axis_name="i", devices=devices)(stacked)

        jax.device_put_replicated = device_put_replicated
        SHIM_NOTE.append(
            "`jax.device_put_replicated` (removed in jax 0.10.2, called by PyPI brax 0.14.2's "
            "PPO) defined for this process as an identity `jax.pmap` over `stack([x] * n_devices)`."
        )


def bench_brax_ppo(
    env: Any, cfg: config_lib.TrainConfig, steps_per_epoch: int, epochs: int
) -> Result:
    """Brax PPO at the same layout; steps/s from its own per-epoch timing, compile by difference.

    One Brax 'epoch' (between progress callbacks) is ``steps_per_epoch`` training iterations in
    one pmapped call; the first epoch includes compilation.
    """
    install_brax_shims()
    from brax.training.agents.ppo import networks as ppo_networks
    from brax.training.agents.ppo import train as ppo_train

    kwargs: dict[str, Any] = {}
    if envs.is_playground_env(env):
        from mujoco_playground import wrapper as pg_wrapper

        kwargs["wrap_env_fn"] = pg_wrapper.wrap_for_brax_training

    def network_factory(obs_size, action_size, preprocess_observations_fn):
        return ppo_networks.make_ppo_networks(
            obs_size,
            action_size,
            preprocess_observations_fn=preprocess_observations_fn,
            policy_hidden_layer_sizes=cfg.policy_hidden,
            value_hidden_layer_sizes=cfg.value_hidden,
        )

    epoch_log: list[tuple[float, float, float]] = []  # (sps, walltime, time.perf_counter())

    def progress(step: int, metrics: dict[str, Any]) -> None:
        if "training/sps" in metrics:
            epoch_log.append(
                (
                    float(metrics["training/sps"]),
                    float(metrics["training/walltime"]),
                    time.perf_counter(),
                )
            )

    num_evals = epochs + 1  # Brax runs num_evals - 1 training epochs
    num_timesteps = epochs * steps_per_epoch * cfg.env_steps_per_iteration
    t0 = time.perf_counter()
    ppo_train.train(
        environment=env,
        num_timesteps=num_timesteps,
        num_envs=cfg.num_envs,
        episode_length=cfg.episode_length,
        action_repeat=cfg.action_repeat,
        learning_rate=cfg.learning_rate,
        entropy_cost=cfg.entropy_cost,
        discounting=cfg.discount,
        unroll_length=cfg.unroll_length,
        batch_size=cfg.batch_size,
        num_minibatches=cfg.num_minibatches,
        num_updates_per_batch=cfg.num_epochs,
        normalize_observations=cfg.normalize_observations,
        reward_scaling=cfg.reward_scaling,
        clipping_epsilon=cfg.clip_epsilon,
        gae_lambda=cfg.gae_lambda,
        vf_loss_coefficient=cfg.value_loss_coef,
        network_factory=network_factory,
        seed=0,
        num_evals=num_evals,
        run_evals=False,
        progress_fn=progress,
        **kwargs,
    )
    total_s = time.perf_counter() - t0
    if len(epoch_log) < 2:
        raise RuntimeError(f"Brax PPO reported {len(epoch_log)} epochs; need at least 2.")
    epoch_s = np.diff([0.0] + [w for _, w, _ in epoch_log])
    steady = float(np.median(epoch_s[1:]))
    sps = steps_per_epoch * cfg.env_steps_per_iteration / steady
    compile_s = float(epoch_s[0] - steady)  # first call minus a steady call
    note = (
        f"{epochs} epochs x {steps_per_epoch} it; first epoch {epoch_s[0]:.1f} s; "
        f"train() total {total_s:.1f} s"
    )
    return Result(
        "Brax PPO (brax.training)",
        sps,
        compile_s,
        note,
        seconds_per_iteration=steady / steps_per_epoch,
    )


# ----------------------------------------------------------------------------------------------
# 3./4. Our trainer


def make_rollout_fn(trainer: Trainer) -> Callable[[TrainState], Any]:
    """The rollout half of ``Trainer._iteration`` (cache refresh, unroll scan, reshape).

    state -> (state, (traj with leaves (num_envs * num_unrolls, T, ...), bootstrap_obs)).
    Only traced here (``jax.eval_shape``), to get the rollout buffer's shapes without compiling
    the simulator a second time.
    """
    c = trainer.config

    def rollout(state: TrainState):
        key, k_refresh, k_rollout, _ = jax.random.split(state.key, 4)
        env_state = envs.refresh_initial_states(
            trainer.train_env, state.env_state, jax.random.split(k_refresh, c.num_envs)
        )
        unroll = lambda carry, k: trainer._unroll(state.params, state.obs_stats, carry, k)
        (env_state, stats), (traj, bootstrap_obs, _) = jax.lax.scan(
            unroll, (env_state, state.obs_stats), jax.random.split(k_rollout, c.num_unrolls)
        )
        traj = jax.tree.map(
            lambda x: jnp.swapaxes(x, 1, 2).reshape(-1, c.unroll_length, *x.shape[3:]), traj
        )
        bootstrap_obs = bootstrap_obs.reshape(-1, bootstrap_obs.shape[-1])
        new_state = state.replace(env_state=env_state, obs_stats=stats, key=key)
        return new_state, (traj, bootstrap_obs)

    return rollout


def make_update_fn(trainer: Trainer) -> Callable[[TrainState, Any], Any]:
    """The update half of ``Trainer._iteration``: num_epochs x num_minibatches SGD steps."""
    c = trainer.config

    def update(state: TrainState, data: Any):
        key, _, _, k_sgd = jax.random.split(state.key, 4)
        epoch = lambda carry, k: trainer._epoch(data, carry, k)
        (params, opt_state), metrics = jax.lax.scan(
            epoch, (state.params, state.opt_state), jax.random.split(k_sgd, c.num_epochs)
        )
        state = state.replace(params=params, opt_state=opt_state, key=key)
        return state, jax.tree.map(jnp.mean, metrics)

    return update


def synthetic_like(shapes: Any, seed: int = 0) -> Any:
    """Arrays of the given shapes: small normal floats (|x| for losses), random uint32 bits."""
    leaves, treedef = jax.tree.flatten(shapes)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    out = []
    for k, leaf in zip(keys, leaves, strict=True):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            out.append(jnp.abs(0.1 * jax.random.normal(k, leaf.shape, leaf.dtype)))
        elif leaf.dtype == jnp.uint32:
            out.append(jax.random.bits(k, leaf.shape, jnp.uint32))
        else:
            out.append(jnp.zeros(leaf.shape, leaf.dtype))
    return jax.tree.unflatten(treedef, out)


def nbytes(shapes: Any) -> int:
    return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(shapes))


def bench_ours(
    env: Any, cfg: config_lib.TrainConfig, label: str, calls: int, split: bool
) -> Result:
    """Full training step (AOT compiled, donated state); optionally the update half alone.

    The update half runs on synthetic data of the rollout buffer's exact shapes (the SGD phase
    has no data-dependent control flow, so its cost does not depend on the values); the rollout
    half is the full step minus the update. ``extra`` gets update_s / update_compile_s /
    buffer_bytes / extras_bytes.
    """
    trainer = Trainer(env, cfg)
    state = block(jax.jit(trainer.init)(jax.random.PRNGKey(0)))

    t0 = time.perf_counter()
    lowered = jax.jit(trainer.train_step, donate_argnums=0).lower(state)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()

    _, (traj_shapes, boot_shapes) = jax.eval_shape(make_rollout_fn(trainer), state)
    extra: dict[str, float] = {
        "buffer_bytes": nbytes((traj_shapes, boot_shapes)),
        "extras_bytes": nbytes(traj_shapes["extras"]),
    }

    state = block(compiled(state)[0])  # warm-up
    state, seconds = timed_calls(compiled, state, calls)
    per_it = seconds / (calls * cfg.iterations_per_call)

    if split:
        data = block(synthetic_like((traj_shapes, boot_shapes)))
        t3 = time.perf_counter()
        update = jax.jit(make_update_fn(trainer), donate_argnums=0).lower(state, data).compile()
        extra["update_compile_s"] = time.perf_counter() - t3
        state = block(update(state, data)[0])  # warm-up
        state, seconds = timed_calls(lambda st: update(st, data), state, calls)
        extra["update_s"] = seconds / calls

    return Result(
        label,
        cfg.env_steps_per_iteration / per_it,
        t2 - t0,
        f"trace {t1 - t0:.1f} s + XLA {t2 - t1:.1f} s",
        seconds_per_iteration=per_it,
        memory=memory_of(compiled),
        extra=extra,
    )


# ----------------------------------------------------------------------------------------------
# Report


def machine_info() -> list[str]:
    import brax
    import flax
    import optax

    try:
        import mujoco_playground

        pg = getattr(mujoco_playground, "__version__", "installed")
    except ImportError:  # pragma: no cover
        pg = "missing"
    try:
        cpu_model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        cpu_model = "unknown"
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return [
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- platform.processor(): `{platform.processor() or '(empty)'}`; CPU model: {cpu_model}",
        f"- os.cpu_count(): {os.cpu_count()}; usable by this process: {affinity}",
        f"- python {platform.python_version()}, jax {jax.__version__}, "
        f"jaxlib {jax.lib.__version__ if hasattr(jax.lib, '__version__') else '?'}, "
        f"brax {brax.__version__}, flax {flax.__version__}, optax {optax.__version__}, "
        f"playground {pg}",
        f"- jax.devices(): `{jax.devices()}`",
    ]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="CartpoleBalance")
    p.add_argument("--backend", default=None, help="Brax physics backend (Brax envs only)")
    p.add_argument("--impl", default="jax", help="Playground implementation (jax or warp)")
    p.add_argument("--num-envs", type=int, default=256)
    p.add_argument("--unroll-length", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--num-minibatches", type=int, default=8)
    p.add_argument("--num-epochs", type=int, default=4)
    p.add_argument("--episode-length", type=int, default=1000)
    p.add_argument("--calls", type=int, default=2, help="timed calls per method, after a warm-up")
    p.add_argument("--raw-scan-length", type=int, default=1000)
    p.add_argument(
        "--brax-epochs", type=int, default=3, help="Brax PPO epochs (>= 2; first compiles)"
    )
    p.add_argument("--brax-steps-per-epoch", type=int, default=1)
    p.add_argument("--no-brax", action="store_true")
    p.add_argument("--no-grid", action="store_true", help="skip the flow_steps x num_pairs grid")
    p.add_argument("--no-split", action="store_true", help="skip the rollout / update split")
    p.add_argument(
        "--quick", action="store_true", help="smoke run: tiny sizes, no Brax PPO, no grid"
    )
    p.add_argument("--out", default=None, help="markdown output (default experiments/results/...)")
    args = p.parse_args(argv)

    if args.quick:
        args.num_envs, args.unroll_length, args.batch_size = 32, 10, 16
        args.num_minibatches, args.num_epochs = 4, 2
        args.calls, args.raw_scan_length = 2, 100
        args.episode_length = min(args.episode_length, 200)
        args.no_brax = args.no_grid = True

    load_before = load_average()
    wall0 = time.perf_counter()
    env_kwargs = {"backend": args.backend} if args.backend else {}
    env = envs.make_env(args.env, impl=args.impl, **env_kwargs)
    env_name = envs.canonical_name(args.env)

    base = config_lib.replace(
        config_lib.TrainConfig(),
        env=env_name,
        backend=args.backend,
        impl=args.impl,
        num_envs=args.num_envs,
        unroll_length=args.unroll_length,
        batch_size=args.batch_size,
        num_minibatches=args.num_minibatches,
        num_epochs=args.num_epochs,
        episode_length=args.episode_length,
        num_evals=0,
        progress=False,
        checkpoint=False,
    )
    config_lib.validate(base)
    ppo_cfg = config_lib.replace(base, algo="ppo", entropy_cost=0.01, clip_epsilon=0.1)
    fpo_cfg = config_lib.replace(base, algo="fpo")  # N = 8, 10 Euler steps, pairs stored

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - wall0:6.1f} s] {msg}", flush=True)

    log(
        f"env {env_name} ({args.backend or args.impl}), {base.num_envs} envs, unroll "
        f"{base.unroll_length}, batch {base.batch_size} x {base.num_minibatches} minibatches "
        f"({base.num_unrolls} unrolls/env), {base.num_epochs} epochs: "
        f"{base.env_steps_per_iteration} env steps per iteration; load avg {load_before}"
    )

    results: dict[str, Result] = {}

    results["raw"] = bench_raw(env, base, args.raw_scan_length, args.calls)
    log(f"raw: {fmt_rate(results['raw'].steps_per_s)} steps/s")

    if not args.no_brax:
        try:
            results["brax"] = bench_brax_ppo(
                env, ppo_cfg, args.brax_steps_per_epoch, args.brax_epochs
            )
            log(f"Brax PPO: {fmt_rate(results['brax'].steps_per_s)} steps/s")
        except Exception as e:  # noqa: BLE001 - report and carry on with the others
            log(f"Brax PPO failed: {type(e).__name__}: {e}")
            results["brax"] = Result("Brax PPO (brax.training)", None, None, f"failed: {e}")

    def ours(key: str, label: str, cfg: config_lib.TrainConfig) -> None:
        results[key] = r = bench_ours(env, cfg, label, args.calls, not args.no_split)
        log(
            f"{label}: {fmt_rate(r.steps_per_s)} steps/s, {r.seconds_per_iteration:.2f} s/it "
            f"(update {r.extra.get('update_s', float('nan')):.2f} s), compile "
            f"{r.compile_s:.1f} s, peak {mib((r.memory or {}).get('peak'))} MiB"
        )

    ours("ppo", "fpo_jax PPO (Gaussian)", ppo_cfg)
    ours("fpo", "fpo_jax FPO (N=8, 10 Euler, stored)", fpo_cfg)
    ours(
        "fpo_key",
        "fpo_jax FPO (N=8, 10 Euler, key)",
        config_lib.replace(fpo_cfg, pair_storage="key"),
    )
    grid: list[tuple[int, int, str]] = []
    for flow_steps in (1, 10):
        for num_pairs in (1, 8):
            key = "fpo" if (flow_steps, num_pairs) == (10, 8) else f"fpo_k{flow_steps}_n{num_pairs}"
            grid.append((flow_steps, num_pairs, key))
            if key != "fpo" and not args.no_grid:
                cfg = config_lib.replace(fpo_cfg, flow_steps=flow_steps, num_pairs=num_pairs)
                ours(key, f"fpo_jax FPO (N={num_pairs}, {flow_steps} Euler, stored)", cfg)
    load_after = load_average()
    total_s = time.perf_counter() - wall0

    # ------------------------------------------------------------------ tables
    raw = results["raw"].steps_per_s
    brax_sps = results.get("brax", Result("", None, None)).steps_per_s
    lines: list[str] = []
    cmd = "python " + " ".join(
        shlex.quote(a) for a in [sys.argv[0], *(sys.argv[1:] if argv is None else argv)]
    )
    where = f"Brax backend {args.backend}" if args.backend else f"Playground impl {args.impl}"
    lines += [
        f"# Training throughput: {env_name} on {jax.default_backend()}",
        "",
        f"Command (repository root): `{cmd}`",
        "",
        f"Layout (all methods): {base.num_envs} envs, unroll_length {base.unroll_length}, "
        f"batch_size {base.batch_size}, num_minibatches {base.num_minibatches} "
        f"({base.num_unrolls} unrolls per env per iteration), num_epochs {base.num_epochs}, "
        f"episode_length {base.episode_length}: {base.env_steps_per_iteration:,} env steps per "
        f"iteration. Policy 4x32, value 5x256. Env: {env_name} ({where}).",
        "",
        "| method | env steps/s | compile s | vs Brax PPO | vs raw stepping | s / iteration | "
        "notes |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for key in ["raw", "brax", "ppo", "fpo", "fpo_key"]:
        if key not in results:
            continue
        r = results[key]
        it = "-" if r.seconds_per_iteration is None else f"{r.seconds_per_iteration:.2f}"
        lines.append(
            f"| {r.method} | {fmt_rate(r.steps_per_s)} | {fmt_s(r.compile_s)} | "
            f"{fmt_ratio(r.steps_per_s, brax_sps)} | {fmt_ratio(r.steps_per_s, raw)} | {it} | "
            f"{r.note} |"
        )
    fpo_ppo = fmt_ratio(results["fpo"].steps_per_s, results["ppo"].steps_per_s)
    key_ppo = fmt_ratio(results["fpo_key"].steps_per_s, results["ppo"].steps_per_s)
    lines += [
        "",
        f"**FPO / our PPO throughput: {fpo_ppo}** (FPO with pair_storage=key / our PPO: "
        f"{key_ppo}).",
        "",
        f"Steps/s exclude compilation. Ours: {args.calls} timed calls of the AOT-compiled "
        "`jit(trainer.train_step, donate_argnums=0)` after one warm-up call, one iteration per "
        "call; compile s = trace + XLA compile (the step includes the per-iteration cache refresh, "
        "i.e. a batched env reset, so it compiles reset and step). Brax PPO: its own per-epoch "
        "timing (`training/walltime`) with evals off; steady = median of the epochs after the "
        "first; compile s = first epoch - steady epoch (its separately jitted env reset is not "
        "included; neither is ours). Raw stepping: "
        f"{args.raw_scan_length}-step `lax.scan`s of the vmapped, auto-resetting training env.",
        "",
    ]
    if not args.no_split:
        lines += [
            "## Where FPO's time goes",
            "",
            "update = the SGD half of an iteration (num_epochs x num_minibatches steps), jitted "
            "alone and run on synthetic data of the rollout buffer's exact shapes (no "
            "data-dependent control flow, so values do not change its cost); rollout = full "
            "iteration - update (cache refresh + unroll scan with action sampling and, for FPO, "
            "the N old CFM losses per action). Buffer = the rollout buffer (trajectories + "
            "bootstrap obs); extras = its per-action policy data (FPO: N (t, eps) pairs + N old "
            "CFM losses, or one key + N losses; PPO: one log-prob).",
            "",
            "| method | flow steps | N pairs | env steps/s | s / iteration | rollout s | "
            "update s | buffer MiB | extras MiB | compile s | update compile s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]

        def split_row(key: str, label: str, k: int | str, n: int | str) -> str:
            r = results[key]
            it = r.seconds_per_iteration or float("nan")
            upd = r.extra.get("update_s")
            ro = None if upd is None else it - upd
            return (
                f"| {label} | {k} | {n} | {fmt_rate(r.steps_per_s)} | {it:.2f} | "
                f"{'-' if ro is None else f'{ro:.2f}'} | {'-' if upd is None else f'{upd:.2f}'} | "
                f"{mib(r.extra.get('buffer_bytes'))} | {mib(r.extra.get('extras_bytes'))} | "
                f"{fmt_s(r.compile_s)} | {fmt_s(r.extra.get('update_compile_s'))} |"
            )

        lines.append(split_row("ppo", "our PPO", "-", "-"))
        for k, n, key in grid:
            if key in results:
                lines.append(split_row(key, "FPO (stored)", k, n))
        lines.append(split_row("fpo_key", "FPO (key)", 10, 8))
        lines.append("")
    _, action_size = envs.env_sizes(env)
    n = fpo_cfg.num_pairs
    lines += [
        "## Memory of the compiled training step (`compiled.memory_analysis()`, MiB)",
        "",
        "peak = argument + output - alias (the donated state) + temp (XLA's scratch, which holds "
        "the rollout buffer). Per action the buffer's FPO extras are "
        f"N(A+1) + N = {n * (action_size + 1) + n} floats with pair_storage=stored vs 2 + N = "
        f"{2 + n} words with key (A = {action_size}, N = {n}).",
        "",
        "| method | argument | output | alias | temp | peak | env steps/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key in ["ppo", "fpo", "fpo_key"]:
        r = results[key]
        m = r.memory or {}
        lines.append(
            f"| {r.method} | {mib(m.get('argument'))} | {mib(m.get('output'))} | "
            f"{mib(m.get('alias'))} | {mib(m.get('temp'))} | {mib(m.get('peak'))} | "
            f"{fmt_rate(r.steps_per_s)} |"
        )
    lines += ["", "## Machine", "", *machine_info()]
    lines += [
        f"- load average (1/5/15 min) before: {load_before}; after: {load_after} "
        "(other processes share these cores when the 1-min load exceeds 1)",
        f"- benchmark wall time: {total_s:.0f} s",
    ]
    if SHIM_NOTE:
        lines += ["", "## Shims", "", *[f"- {s}" for s in SHIM_NOTE]]
    text = "\n".join(lines) + "\n"
    print("\n" + text)

    out = Path(args.out) if args.out else None
    if out is None:
        suffix = "_quick" if args.quick else ""
        tag = env_name + (f"_{args.backend}" if args.backend else "")
        out = (
            REPO
            / "experiments"
            / "results"
            / f"throughput_{tag}_{jax.default_backend()}{suffix}.md"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
