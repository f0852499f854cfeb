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
            # Stack one copy per device, then place it with an identity pmap so that the result
            # carries exactly the sharding of pmap outputs (a different sharding on the first
            # call of Brax's pmapped training epoch would compile it a second time).
            stacked = jax.tree.map(lambda a: jnp.stack([jnp.asarray(a)] * len(devices)), x)
            return jax.pmap(lambda t: t, devices=devices)(stacked)

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
        "Brax PPO (brax.training)", sps, compile_s, note, seconds_per_iteration=steady / steps_per_epoch
    )


# ----------------------------------------------------------------------------------------------
# 3./4. Our trainer


def make_rollout_fn(trainer: Trainer) -> Callable[[TrainState], Any]:
    """The rollout half of ``Trainer._iteration``: refresh caches, then the unroll scan.

    Returns the trajectories (as the training step materialises them) so nothing is dropped.
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
        new_state = state.replace(env_state=env_state, obs_stats=stats, key=key)
        return new_state, (traj, bootstrap_obs)

    return rollout


def bench_ours(
    env: Any,
    cfg: config_lib.TrainConfig,
    label: str,
    calls: int,
    split: bool,
) -> tuple[Result, float | None]:
    """(result, rollout seconds per iteration or None)."""
    trainer = Trainer(env, cfg)
    state = block(jax.jit(trainer.init)(jax.random.PRNGKey(0)))

    t0 = time.perf_counter()
    lowered = jax.jit(trainer.train_step, donate_argnums=0).lower(state)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    memory = memory_of(compiled)

    state = block(compiled(state)[0])  # warm-up
    state, seconds = timed_calls(compiled, state, calls)
    per_it = seconds / (calls * cfg.iterations_per_call)
    result = Result(
        label,
        cfg.env_steps_per_iteration / per_it,
        t2 - t0,
        f"trace {t1 - t0:.1f} s + XLA {t2 - t1:.1f} s",
        seconds_per_iteration=per_it,
        memory=memory,
    )

    rollout_s = None
    if split:
        rollout = jax.jit(make_rollout_fn(trainer), donate_argnums=0).lower(state).compile()
        state = block(rollout(state)[0])  # warm-up
        state, seconds = timed_calls(rollout, state, calls)
        rollout_s = seconds / calls
    return result, rollout_s


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
    p.add_argument("--calls", type=int, default=3, help="timed calls per method, after a warm-up")
    p.add_argument("--raw-scan-length", type=int, default=1000)
    p.add_argument("--brax-epochs", type=int, default=3, help="Brax PPO epochs (first compiles)")
    p.add_argument("--brax-steps-per-epoch", type=int, default=1)
    p.add_argument("--no-brax", action="store_true")
    p.add_argument("--no-grid", action="store_true", help="skip the flow_steps x num_pairs grid")
    p.add_argument("--quick", action="store_true", help="~1 minute smoke run at tiny sizes")
    p.add_argument("--out", default=None, help="markdown output (default experiments/results/...)")
    args = p.parse_args(argv)

    if args.quick:
        args.num_envs, args.unroll_length, args.batch_size = 32, 10, 16
        args.num_minibatches, args.num_epochs = 4, 2
        args.calls, args.raw_scan_length = 2, 100
        args.brax_epochs, args.brax_steps_per_epoch = 2, 1
        args.episode_length = min(args.episode_length, 200)
        args.no_grid = True

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
    rollouts: dict[str, float | None] = {}

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

    def ours(key: str, label: str, cfg: config_lib.TrainConfig, split: bool = True) -> None:
        results[key], rollouts[key] = bench_ours(env, cfg, label, args.calls, split)
        r = results[key]
        log(
            f"{label}: {fmt_rate(r.steps_per_s)} steps/s, compile {r.compile_s:.1f} s, "
            f"peak {mib((r.memory or {}).get('peak'))} MiB"
        )

    ours("ppo", "fpo_jax PPO (Gaussian)", ppo_cfg)
    ours("fpo", "fpo_jax FPO (N=8, 10 Euler, stored)", fpo_cfg)
    ours(
        "fpo_key",
        "fpo_jax FPO (N=8, 10 Euler, key)",
        config_lib.replace(fpo_cfg, pair_storage="key"),
    )
    grid_keys: list[tuple[int, int, str]] = []
    for flow_steps in (1, 10):
        for num_pairs in (1, 8):
            key = f"fpo_k{flow_steps}_n{num_pairs}"
            grid_keys.append((flow_steps, num_pairs, key))
            if (flow_steps, num_pairs) == (10, 8) or args.no_grid:
                continue
            cfg = config_lib.replace(fpo_cfg, flow_steps=flow_steps, num_pairs=num_pairs)
            ours(key, f"fpo_jax FPO (N={num_pairs}, {flow_steps} Euler, stored)", cfg)
    results["fpo_k10_n8"], rollouts["fpo_k10_n8"] = results["fpo"], rollouts["fpo"]
    load_after = load_average()
    total_s = time.perf_counter() - wall0

    # ------------------------------------------------------------------ tables
    raw = results["raw"].steps_per_s
    brax_sps = results.get("brax", Result("", None, None)).steps_per_s
    lines: list[str] = []
    cmd = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    lines += [
        f"# Training throughput: {env_name} on {jax.default_backend()}",
        "",
        f"Command: `{cmd}`",
        "",
        f"Layout: {base.num_envs} envs, unroll_length {base.unroll_length}, batch_size "
        f"{base.batch_size}, num_minibatches {base.num_minibatches} ({base.num_unrolls} unrolls "
        f"per env per iteration), num_epochs {base.num_epochs}, episode_length "
        f"{base.episode_length}: {base.env_steps_per_iteration:,} env steps per iteration. "
        f"Policy 4x32, value 5x256 (all methods). Env: {env_name} "
        f"({'Brax backend ' + args.backend if args.backend else 'Playground impl ' + args.impl}).",
        "",
        "| method | env steps/s | compile s | vs Brax PPO | vs raw stepping | s / iteration | notes |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for key in ["raw", "brax", "ppo", "fpo", "fpo_key"]:
        if key not in results:
            continue
        r = results[key]
        lines.append(
            f"| {r.method} | {fmt_rate(r.steps_per_s)} | {fmt_s(r.compile_s)} | "
            f"{fmt_ratio(r.steps_per_s, brax_sps)} | {fmt_ratio(r.steps_per_s, raw)} | "
            f"{'-' if r.seconds_per_iteration is None else f'{r.seconds_per_iteration:.2f}'} | "
            f"{r.note} |"
        )
    lines += [
        "",
        f"**FPO / our PPO throughput: {fmt_ratio(results['fpo'].steps_per_s, results['ppo'].steps_per_s)}**"
        f" (FPO pair_storage=key / our PPO: "
        f"{fmt_ratio(results['fpo_key'].steps_per_s, results['ppo'].steps_per_s)}).",
        "",
        "Steps/s exclude compilation: ours are timed over "
        f"{args.calls} calls of the AOT-compiled step after a warm-up call (compile s = trace + "
        "XLA compile); Brax PPO's come from its own per-epoch timing (`training/sps`, "
        "`training/walltime`) with evals off, steady = median of the epochs after the first, and "
        "its compile s = first epoch - steady epoch. Raw stepping: "
        f"{args.raw_scan_length}-step scans, same env count.",
        "",
        "## Where FPO's time goes",
        "",
        "Rollout = refresh of the auto-reset caches + the unroll scan, jitted alone (same code as "
        "the training step's first half); update = full iteration - rollout.",
        "",
        "| method | flow steps | N pairs | env steps/s | s / iteration | rollout s | update s | "
        "compile s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def split_row(key: str, label: str, k: int | str, n: int | str) -> str:
        r = results[key]
        ro = rollouts.get(key)
        it = r.seconds_per_iteration
        upd = None if ro is None or it is None else it - ro
        return (
            f"| {label} | {k} | {n} | {fmt_rate(r.steps_per_s)} | {it:.2f} | "
            f"{'-' if ro is None else f'{ro:.2f}'} | {'-' if upd is None else f'{upd:.2f}'} | "
            f"{fmt_s(r.compile_s)} |"
        )

    lines.append(split_row("ppo", "our PPO", "-", "-"))
    for k, n, key in grid_keys:
        if key in results:
            lines.append(split_row(key, "FPO (stored)", k, n))
    lines.append(split_row("fpo_key", "FPO (key)", 10, 8))
    lines += [
        "",
        "## Memory of the compiled training step (`compiled.memory_analysis()`, MiB)",
        "",
        "peak = argument + output - alias (donated state) + temp.",
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
        out = REPO / "experiments" / "results" / f"throughput_{tag}_{jax.default_backend()}{suffix}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
