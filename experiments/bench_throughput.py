"""Training throughput, side by side on one env and one batch layout, in one process.

Measures, on the same environment and the same rollout / batch / epoch shape:

1. raw simulator stepping: ``jit(lax.scan(vmap(env.step)))`` with zero actions over
   ``fpo_jax.envs.wrap_for_training`` (the upper limit for any trainer);
2. Brax's own PPO (``brax.training.agents.ppo.train.train``) with the same layout and 4x32 / 5x256
   networks (PyPI brax 0.14.2 calls ``jax.device_put_replicated``, which jax 0.10.2 removed: a
   shim is installed for this process only);
3. this project's Gaussian PPO, FPO and DPPO, through the trainer's public API only: the whole
   iteration as ``jax.jit(trainer.train_step, donate_argnums=0)`` (collect and update in one
   program, as ``fpo_jax.train`` runs it), compiled ahead of time so that compile time and steps/s
   are measured separately; and its two halves compiled as two programs,
   ``jax.jit(trainer.collect)`` and ``jax.jit(trainer.update)``, timed one after the other (update
   on the rollout that collect just returned).

Then it explains FPO's overhead: collect vs update for a grid over ``flow_steps`` x
``num_pairs``, and the compiled step's memory (``compiled.memory_analysis()``) for
``pair_storage="stored"`` vs ``"key"``.

Timing is robust to other processes on the machine: everything is compiled and warmed up first,
then the programs are timed one call each, round-robin, for several rounds (Brax PPO's epochs are
interleaved with the rounds through its progress callback), and the best call counts (the
median is reported too). Load from other processes only ever slows a call down.

Run from the repository root::

    python experiments/bench_throughput.py                    # Playground CartpoleBalance
    python experiments/bench_throughput.py --smoke            # tiny sizes on gridworld, ~1-2 min
    python experiments/bench_throughput.py --env inverted_pendulum --backend spring

Results go to stdout and ``experiments/results/throughput_<env>_<platform>.md`` (``--out``;
with ``--smoke`` a folder under /tmp), built from ``throughput_<env>_<platform>.json`` beside it
alone (every program's timed calls, compile seconds and memory, the layout, the load before and
after, the provenance); ``--report`` rebuilds the markdown from that JSON without measuring::

    python experiments/bench_throughput.py --report           # every platform's stored for --env
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (also puts the repository on sys.path)
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from common import fmt_mib, fmt_rate, fmt_ratio, fmt_s  # noqa: E402

from fpo_jax import config as config_lib  # noqa: E402
from fpo_jax import envs  # noqa: E402
from fpo_jax.memory import program_memory  # noqa: E402
from fpo_jax.trainer import Trainer  # noqa: E402

# ----------------------------------------------------------------------------------------------
# Programs and their timings


def block(tree: Any) -> Any:
    return jax.block_until_ready(tree)


def compile_timed(
    fn: Callable, *args: Any, donate: tuple[int, ...] = (0,)
) -> tuple[Any, str, float]:
    """``jax.jit(fn, donate_argnums=donate).lower(*args).compile()``; (compiled, note, seconds)."""
    t0 = time.perf_counter()
    lowered = jax.jit(fn, donate_argnums=donate).lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    return compiled, f"trace {t1 - t0:.1f} s + XLA {t2 - t1:.1f} s", t2 - t0


def nbytes(shapes: Any) -> int:
    return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(shapes))


@dataclasses.dataclass
class Runner:
    """A compiled program and its state, ``state = step(state)``, timed one blocking call at a time.

    ``steps`` is the env steps one call performs.
    """

    name: str
    step: Callable[[Any], Any]
    state: Any
    steps: int
    times: list[float] = dataclasses.field(default_factory=list)

    def call(self) -> float:
        t0 = time.perf_counter()
        self.state = block(self.step(self.state))
        return time.perf_counter() - t0

    def warm_up(self) -> None:
        self.call()

    def timed(self) -> None:
        self.times.append(self.call())


@dataclasses.dataclass
class Halves:
    """``trainer.collect`` and ``trainer.update`` compiled as two programs; one call is one
    iteration: collect, then update on the rollout it returned, each timed to its end."""

    collect: Callable[[Any], Any]
    update: Callable[[Any, Any], Any]
    state: Any
    collect_times: list[float] = dataclasses.field(default_factory=list)
    update_times: list[float] = dataclasses.field(default_factory=list)

    def call(self) -> tuple[float, float]:
        t0 = time.perf_counter()
        state, rollout = block(self.collect(self.state))
        t1 = time.perf_counter()
        self.state, _ = block(self.update(state, rollout))
        return t1 - t0, time.perf_counter() - t1

    def warm_up(self) -> None:
        self.call()

    def timed(self) -> None:
        collect_s, update_s = self.call()
        self.collect_times.append(collect_s)
        self.update_times.append(update_s)


@dataclasses.dataclass
class Method:
    """One row of the report: a full-iteration runner (or Brax's epochs) and its extras."""

    label: str
    compile_s: float | None = None
    note: str = ""
    runner: Runner | None = None
    halves: Halves | None = None  # ours: collect and update as separate programs
    collect_compile_s: float | None = None
    update_compile_s: float | None = None
    memory: dict[str, int] | None = None
    buffer_bytes: int | None = None
    extras_bytes: int | None = None
    # Brax PPO has no runner: its per-epoch seconds and steps per epoch.
    epoch_times: list[float] = dataclasses.field(default_factory=list)
    steps_per_epoch: int = 0
    error: str | None = None

    def _times(self) -> tuple[list[float], int]:
        if self.runner is not None:
            return self.runner.times, self.runner.steps
        return self.epoch_times, self.steps_per_epoch

    def rate(self, stat: str = "best") -> float | None:
        times, steps = self._times()
        if not times:
            return None
        t = min(times) if stat == "best" else float(np.median(times))
        return steps / t

    def seconds(self, steps_per_iteration: int) -> float | None:
        """Best seconds per training iteration."""
        times, steps = self._times()
        return min(times) * steps_per_iteration / steps if times else None

    def half_seconds(self) -> tuple[float | None, float | None]:
        """Best collect and best update seconds (one iteration each)."""
        h = self.halves
        if h is None or not h.collect_times:
            return None, None
        return min(h.collect_times), min(h.update_times)


# ----------------------------------------------------------------------------------------------
# 1. Raw stepping


def build_raw(env: Any, cfg: config_lib.TrainConfig, scan_length: int) -> Method:
    wrapped = envs.wrap_for_training(
        env, episode_length=cfg.episode_length, action_repeat=cfg.action_repeat
    )
    _, action_size = envs.env_sizes(env)
    state = block(jax.jit(wrapped.reset)(jax.random.split(jax.random.PRNGKey(0), cfg.num_envs)))
    zeros = jnp.zeros((cfg.num_envs, action_size))

    def run(state):
        def body(s, _):
            s = wrapped.step(s, zeros)
            return s, None

        return jax.lax.scan(body, state, None, length=scan_length)[0]

    compiled, _, compile_s = compile_timed(run, state)
    steps = scan_length * cfg.num_envs * cfg.action_repeat
    return Method(
        "raw stepping (zero actions)",
        compile_s,
        f"{scan_length}-step scans",
        runner=Runner("raw", compiled, state, steps),
    )


# ----------------------------------------------------------------------------------------------
# 2. Brax PPO


def run_brax_ppo(
    env: Any,
    cfg: config_lib.TrainConfig,
    steps_per_epoch: int,
    epochs: int,
    after_epoch: Callable[[], None],
) -> Method:
    """Brax PPO at the same layout, ``epochs`` epochs of ``steps_per_epoch`` iterations.

    Epoch times come from Brax's own ``training/walltime`` (the first includes compilation);
    ``after_epoch`` runs after each epoch, outside Brax's timing (a round of the other programs).
    """
    common.install_brax_shims()
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

    walltimes: list[float] = []

    def progress(step: int, metrics: dict[str, Any]) -> None:
        if "training/walltime" in metrics:
            walltimes.append(float(metrics["training/walltime"]))
            after_epoch()

    t0 = time.perf_counter()
    ppo_train.train(
        environment=env,
        num_timesteps=epochs * steps_per_epoch * cfg.env_steps_per_iteration,
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
        num_evals=epochs + 1,  # Brax runs num_evals - 1 training epochs
        run_evals=False,
        progress_fn=progress,
        **kwargs,
    )
    total_s = time.perf_counter() - t0
    if len(walltimes) < 2:
        raise RuntimeError(f"Brax PPO reported {len(walltimes)} epochs; need at least 2.")
    epoch_s = np.diff([0.0, *walltimes])
    steady = float(np.min(epoch_s[1:]))
    return Method(
        "Brax PPO (brax.training)",
        compile_s=float(epoch_s[0] - steady),  # first epoch minus a steady one
        note=(
            f"{len(epoch_s) - 1} timed epochs of {steps_per_epoch} it; first epoch "
            f"{epoch_s[0]:.1f} s; train() total {total_s:.0f} s incl. other programs' rounds"
        ),
        epoch_times=[float(x) for x in epoch_s[1:]],
        steps_per_epoch=steps_per_epoch * cfg.env_steps_per_iteration,
    )


# ----------------------------------------------------------------------------------------------
# 3. Ours, through the trainer's public API


def build_ours(env: Any, cfg: config_lib.TrainConfig, label: str, split: bool) -> Method:
    """``trainer.train_step`` compiled ahead of time with donated state, and with ``split`` also
    ``trainer.collect`` and ``trainer.update`` as two programs (state donated; the rollout is not,
    since no output of update has its shapes)."""
    trainer = Trainer(env, cfg)
    init = jax.jit(trainer.init)
    state = block(init(jax.random.PRNGKey(0)))
    step, note, compile_s = compile_timed(trainer.train_step, state)
    state_shape, rollout_shape = jax.eval_shape(trainer.collect, state)
    method = Method(
        label,
        compile_s=compile_s,
        note=note,
        runner=Runner(label, lambda s: step(s)[0], state, cfg.env_steps_per_call),
        memory=None if (mem := program_memory(step)) is None else mem.as_dict(),
        buffer_bytes=nbytes((rollout_shape.traj, rollout_shape.bootstrap_obs)),
        extras_bytes=nbytes(rollout_shape.traj["extras"]),
    )
    if split:
        halves_state = block(init(jax.random.PRNGKey(0)))
        collect, _, method.collect_compile_s = compile_timed(trainer.collect, halves_state)
        update, _, method.update_compile_s = compile_timed(
            trainer.update, state_shape, rollout_shape
        )
        method.halves = Halves(collect, update, halves_state)
    return method


# ----------------------------------------------------------------------------------------------
# Command line and report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--env",
        default=None,
        help="any fpo_jax.envs.make_env name (default CartpoleBalance; gridworld with --smoke)",
    )
    p.add_argument("--backend", default=None, help="Brax physics backend (Brax envs only)")
    p.add_argument("--impl", default="jax", help="Playground implementation (jax or warp)")
    p.add_argument("--num-envs", type=int, default=256)
    p.add_argument("--unroll-length", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--num-minibatches", type=int, default=8)
    p.add_argument("--num-epochs", type=int, default=4)
    p.add_argument("--episode-length", type=int, default=1000)
    p.add_argument(
        "--rounds", type=int, default=3, help="timed round-robin rounds (one call per program)"
    )
    p.add_argument("--raw-scan-length", type=int, default=1000)
    p.add_argument("--brax-steps-per-epoch", type=int, default=1)
    p.add_argument("--no-brax", action="store_true", help="skip Brax PPO")
    p.add_argument("--no-dppo", action="store_true", help="skip our DPPO")
    p.add_argument("--no-grid", action="store_true", help="skip the flow_steps x num_pairs grid")
    p.add_argument(
        "--no-split", action="store_true", help="skip the separate collect / update programs"
    )
    p.add_argument("--no-key", action="store_true", help="skip FPO with pair_storage='key'")
    p.add_argument("--quick", dest="smoke", action="store_true", help="the same as --smoke")
    p.add_argument(
        "--out",
        default=None,
        help="markdown output file, its data beside it as .json (default: in --out-dir)",
    )
    p.add_argument(
        "--report", action="store_true", help="only rebuild the report from the stored JSON"
    )
    args = common.parse_args(
        p, argv, "gridworld unless --env, 32 envs, 2 rounds; raw stepping, Brax PPO, our PPO / "
        "FPO / DPPO with collect / update; no grid, no pair_storage=key"
    )  # fmt: skip
    if args.smoke:
        args.num_envs, args.unroll_length, args.batch_size = 32, 10, 16
        args.num_minibatches, args.num_epochs, args.rounds = 4, 2, 2
        args.raw_scan_length = 100
        args.episode_length = min(args.episode_length, 200)
        args.no_grid = args.no_key = True
    args.env = args.env or ("gridworld" if args.smoke else "CartpoleBalance")
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    return args


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Compile every program, then time them round-robin: the stored data of the results file."""
    started = common.provenance()
    clock = common.Stopwatch()
    load_before = common.load_average(2)

    env = envs.make_env(args.env, backend=args.backend, impl=args.impl)
    env_name = envs.canonical_name(args.env)
    base = config_lib.validate(
        config_lib.replace(
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
    )
    ppo_cfg = config_lib.replace(base, algo="ppo", entropy_cost=0.01, clip_epsilon=0.1)
    fpo_cfg = config_lib.replace(base, algo="fpo")  # N = 8, 10 Euler steps, pairs stored
    dppo_cfg = config_lib.replace(base, algo="dppo", clip_epsilon=0.2)  # 10 steps, sigma 0.05
    source = next(src for src, names in envs.list_envs().items() if env_name in names)
    where = {
        "playground": f"Playground, impl {args.impl}",
        "brax": f"Brax, backend {args.backend or 'default'}",
    }.get(source, source)
    per_it = base.env_steps_per_iteration
    common.log(
        f"{env_name} ({where}): {base.num_envs} envs, unroll "
        f"{base.unroll_length}, batch {base.batch_size} x {base.num_minibatches} minibatches "
        f"({base.num_unrolls} unrolls/env), {base.num_epochs} epochs = {per_it} env steps per "
        f"iteration; load average {load_before}"
    )

    # ------------------------------------------------------------------ compile everything
    methods: dict[str, Method] = {}
    methods["raw"] = build_raw(env, base, args.raw_scan_length)
    common.log(f"compiled raw stepping in {methods['raw'].compile_s:.1f} s")

    def ours(key: str, label: str, cfg: config_lib.TrainConfig) -> None:
        methods[key] = m = build_ours(env, cfg, label, split=not args.no_split)
        halves = "" if m.halves is None else (
            f"; collect alone {m.collect_compile_s:.1f} s, update alone {m.update_compile_s:.1f} s"
        )  # fmt: skip
        common.log(f"compiled {label} in {m.compile_s:.1f} s{halves}")

    ours("ppo", "fpo_jax PPO (Gaussian)", ppo_cfg)
    ours("fpo", "fpo_jax FPO (N=8, 10 Euler, stored)", fpo_cfg)
    if not args.no_dppo:
        ours("dppo", "fpo_jax DPPO (10 steps, sigma 0.05)", dppo_cfg)
    if not args.no_key:
        ours(
            "fpo_key",
            "fpo_jax FPO (N=8, 10 Euler, key)",
            config_lib.replace(fpo_cfg, pair_storage="key"),
        )
    grid = [(k, n) for k in (1, 10) for n in (1, 8)]
    grid_key = lambda k, n: "fpo" if (k, n) == (10, 8) else f"fpo_k{k}_n{n}"
    if not args.no_grid:
        for k, n in grid:
            if (k, n) != (10, 8):
                cfg = config_lib.replace(fpo_cfg, flow_steps=k, num_pairs=n)
                ours(grid_key(k, n), f"fpo_jax FPO (N={n}, {k} Euler, stored)", cfg)

    # ------------------------------------------------------------------ time, round-robin
    programs: list[Runner | Halves] = [m.runner for m in methods.values() if m.runner is not None]
    programs += [m.halves for m in methods.values() if m.halves is not None]
    for prog in programs:
        prog.warm_up()
    common.log(f"warmed up {len(programs)} programs; timing them round-robin")
    rounds_done = [0]

    def one_round() -> None:
        for prog in programs:
            prog.timed()
        rounds_done[0] += 1
        common.log(f"round {rounds_done[0]} done (load average {common.load_average(2)})")

    if args.no_brax:
        for _ in range(args.rounds):
            one_round()
    else:
        try:
            methods["brax"] = run_brax_ppo(
                env, ppo_cfg, args.brax_steps_per_epoch, args.rounds + 1, one_round
            )
        except Exception as e:  # noqa: BLE001 - report it and carry on with the others
            common.log(f"Brax PPO failed: {type(e).__name__}: {e}")
            methods["brax"] = Method("Brax PPO (brax.training)", error=f"{type(e).__name__}: {e}")
            while rounds_done[0] < args.rounds:
                one_round()
    load_after = common.load_average(2)

    _, action_size = envs.env_sizes(env)
    return {
        "env": env_name,
        "backend": args.backend,
        "where": where,
        "platform": jax.default_backend(),
        "layout": {
            "num_envs": base.num_envs,
            "unroll_length": base.unroll_length,
            "batch_size": base.batch_size,
            "num_minibatches": base.num_minibatches,
            "num_unrolls": base.num_unrolls,
            "num_epochs": base.num_epochs,
            "episode_length": base.episode_length,
            "env_steps_per_iteration": per_it,
        },
        "raw_scan_length": args.raw_scan_length,
        "split": not args.no_split,
        "dppo_flow_steps": None if args.no_dppo else dppo_cfg.flow_steps,
        "grid": [[k, n, grid_key(k, n)] for k, n in grid],
        "action_size": action_size,
        "num_pairs": fpo_cfg.num_pairs,
        "rounds": rounds_done[0],
        "methods": {key: method_record(m) for key, m in methods.items()},
        "load_before": load_before,
        "load_after": load_after,
        "wall_s": clock.seconds(),
        "shim_notes": list(common.SHIM_NOTES),
        "machine": common.machine_info(),
        "provenance": common.provenance_until_now(started),
    }


def method_record(m: Method) -> dict[str, Any]:
    """What the report needs of a method: its timings (every call), compile seconds, memory."""
    times, steps = m._times()
    h = m.halves
    return {
        "label": m.label, "compile_s": m.compile_s, "note": m.note, "error": m.error,
        "times": list(times), "steps": steps,
        "collect_times": None if h is None else h.collect_times,
        "update_times": None if h is None else h.update_times,
        "collect_compile_s": m.collect_compile_s, "update_compile_s": m.update_compile_s,
        "memory": m.memory, "buffer_bytes": m.buffer_bytes, "extras_bytes": m.extras_bytes,
    }  # fmt: skip


def rate(m: dict[str, Any], stat: str = "best") -> float | None:
    """Env steps per second of a stored method: its best (or median) call."""
    times = m["times"]
    if not times:
        return None
    t = min(times) if stat == "best" else float(np.median(times))
    return m["steps"] / t


def iteration_seconds(m: dict[str, Any], steps_per_iteration: int) -> float | None:
    """Best seconds per training iteration of a stored method."""
    return min(m["times"]) * steps_per_iteration / m["steps"] if m["times"] else None


def half_seconds(m: dict[str, Any]) -> tuple[float | None, float | None]:
    """Best collect and best update seconds (one iteration each) of a stored method."""
    if not m["collect_times"]:
        return None, None
    return min(m["collect_times"]), min(m["update_times"])


def report(data: dict[str, Any]) -> str:
    """The results file from the stored measurements alone."""
    methods, lay = data["methods"], data["layout"]
    env_name, where, per_it = data["env"], data["where"], lay["env_steps_per_iteration"]
    grid = [(k, n) for k, n, _ in data["grid"]]
    grid_key = {(k, n): key for k, n, key in data["grid"]}
    raw = rate(methods["raw"])
    brax = rate(methods["brax"]) if "brax" in methods else None
    rows = []
    for key in ["raw", "brax", "ppo", "fpo", "dppo", "fpo_key"]:
        if key not in methods:
            continue
        m = methods[key]
        if m["error"]:
            rows.append([m["label"], "failed", "", "", "", "", "", m["error"]])
            continue
        it = "-" if key == "raw" else fmt_s(iteration_seconds(m, per_it), 2)
        rows.append(
            [m["label"], fmt_rate(rate(m)), fmt_rate(rate(m, "median")), fmt_s(m["compile_s"]),
             fmt_ratio(rate(m), brax), fmt_ratio(rate(m), raw), it, m["note"]]
        )  # fmt: skip
    ratios = [
        f"**FPO / our PPO throughput: {fmt_ratio(rate(methods['fpo']), rate(methods['ppo']))}**"
    ]
    for key, name in [("fpo_key", "FPO with pair_storage=key"), ("dppo", "DPPO")]:
        if key in methods:
            ratios.append(
                f"{name} / our PPO: {fmt_ratio(rate(methods[key]), rate(methods['ppo']))}"
            )
    layout = (
        f"{lay['num_envs']} envs, unroll_length {lay['unroll_length']}, batch_size "
        f"{lay['batch_size']}, num_minibatches {lay['num_minibatches']} ({lay['num_unrolls']} "
        f"unrolls per env per iteration), num_epochs (Brax: num_updates_per_batch) "
        f"{lay['num_epochs']}, episode_length {lay['episode_length']}"
    )
    lines = [
        common.results_header(
            f"Training throughput: {env_name} on {data['platform']}",
            f"{per_it:,} env steps per iteration; every program timed for one call per round, "
            f"{data['rounds']} rounds",
            data=[data["provenance"]],
        ),
        f"Layout (every method): {layout}: {per_it:,} env steps per iteration. Policy 4x32, "
        f"value 5x256 (SiLU). Env: {env_name} ({where}).",
        "",
        common.markdown_table(
            [
                "method",
                "env steps/s (best)",
                "(median)",
                "compile s",
                "vs Brax PPO",
                "vs raw stepping",
                "s / iteration",
                "notes",
            ],
            rows,
            "lrrrrrrl",
        ).rstrip(),  # fmt: skip
        "",
        ratios[0] + (f" ({'; '.join(ratios[1:])})" if ratios[1:] else ""),
        "",
        "How it was timed: every program was compiled and run once first; then each was timed "
        f"for one blocking call per round, round-robin, {data['rounds']} rounds; 'best' is the "
        "fastest call (other processes can only slow a call down), 'median' the median. Ours: "
        "`jax.jit(trainer.train_step, donate_argnums=0).lower(state).compile()`, one iteration "
        "per call (collect and update in one program); compile s = trace + XLA compile; the step "
        "includes the per-iteration refresh of the auto-reset cache (a batched env reset), so it "
        "compiles reset and step. Brax PPO: one iteration per epoch (`num_evals` = rounds + 2, "
        "evals off), epoch times from its own `training/walltime`, one round of the other "
        "programs after each epoch via its `progress_fn`; compile s = first epoch - best epoch "
        "(its separately compiled env reset is not included, nor is our init's). Raw stepping: "
        f"{data['raw_scan_length']}-step `lax.scan`s of `vmap(step)` of the auto-resetting training "
        "env, zero actions, same env count.",
        "",
    ]
    if data["split"]:
        split_rows = []

        def split_row(key: str, label: str, k: Any, n: Any) -> None:
            m = methods[key]
            step_s = iteration_seconds(m, per_it)
            collect_s, update_s = half_seconds(m)
            both = None if collect_s is None else collect_s + update_s
            split_rows.append(
                [label, k, n, fmt_rate(rate(m)), fmt_s(step_s, 3), fmt_s(collect_s, 3),
                 fmt_s(update_s, 3), fmt_s(both, 3), fmt_ratio(both, step_s),
                 fmt_mib(m["buffer_bytes"]), fmt_mib(m["extras_bytes"]),
                 fmt_mib((m["memory"] or {}).get("peak")), fmt_s(m["compile_s"]),
                 fmt_s(m["collect_compile_s"]), fmt_s(m["update_compile_s"])]
            )  # fmt: skip

        split_row("ppo", "our PPO", "-", "-")
        if "dppo" in methods:
            split_row("dppo", "DPPO", data["dppo_flow_steps"], "-")
        for k, n in grid:
            if grid_key[k, n] in methods:
                split_row(grid_key[k, n], "FPO (stored)", k, n)
        if "fpo_key" in methods:
            split_row("fpo_key", "FPO (key)", 10, 8)
        lines += [
            "## Where the time goes: collect vs update",
            "",
            "step = `trainer.train_step` (one program, as `fpo_jax.train` runs it); collect = "
            "`jax.jit(trainer.collect)` (auto-reset cache refresh, the unroll scan of env steps "
            "and action sampling, and for FPO the N (t, eps) pairs and old CFM losses per action) "
            "and update = `jax.jit(trainer.update)` (num_epochs x num_minibatches SGD steps on "
            "that rollout), compiled as two programs and timed one after the other in the same "
            "rounds (best call of each). (collect + update) / step above 1 is what compiling "
            "the halves into one program saves (the rollout handed between two programs, two "
            "launches); near 1, the two ways cost the same within the run's noise. "
            "buffer = the rollout (trajectories + bootstrap obs); extras = its per-action policy "
            "data (FPO stored: N (t, eps) pairs + N old CFM losses; key: one PRNG key + N losses; "
            "PPO: one log-prob; DPPO: the per-step log-probs of its chain). peak from "
            f"`compiled.memory_analysis()` of the step. The simulator alone needs "
            f"{fmt_s(per_it / raw if raw else None, 2)} s per iteration (raw stepping).",
            "",
            common.markdown_table(
                [
                    "method",
                    "flow steps",
                    "N",
                    "env steps/s",
                    "step s",
                    "collect s",
                    "update s",
                    "collect + update s",
                    "(collect + update) / step",
                    "buffer MiB",
                    "extras MiB",
                    "peak MiB",
                    "step compile s",
                    "collect compile s",
                    "update compile s",
                ],
                split_rows,
                "l" + "r" * 14,
            ),  # fmt: skip
        ]
    action_size, n = data["action_size"], data["num_pairs"]
    mem_rows = []
    for key in ["ppo", "fpo", "dppo", "fpo_key"]:
        if key in methods:
            m = methods[key]
            mem = m["memory"] or {}
            mem_rows.append(
                [m["label"], *(fmt_mib(mem.get(f)) for f in ["argument", "output", "alias",
                                                             "temp"]),
                 fmt_mib(mem.get("peak")), fmt_rate(rate(m))]
            )  # fmt: skip
    lines += [
        "## Memory of the compiled training step (`compiled.memory_analysis()`, MiB)",
        "",
        "peak = argument + output - alias (the donated state) + temp (XLA's scratch: rollout "
        "buffer, its shuffled copies, activations and gradients of a minibatch...). Per action "
        f"the FPO extras are N(A+1) + N = {n * (action_size + 1) + n} floats with "
        f"pair_storage=stored vs 2 + N = {2 + n} words with key (A = {action_size}, N = {n}).",
        "",
        common.markdown_table(
            ["method", "argument", "output", "alias", "temp", "peak", "env steps/s"],
            mem_rows,
            "lrrrrrr",
        ),
        "## Machine (of the measuring run)",
        "",
        *data["machine"],
        f"- load average (1 / 5 / 15 min) before: {data['load_before']}; after: "
        f"{data['load_after']}. Other processes were competing for the cores whenever the "
        "1-minute load exceeds ~1 (this benchmark itself counts for about 1).",
        f"- benchmark wall time: {data['wall_s']:.0f} s",
    ]
    if data["shim_notes"]:
        lines += ["", "## Shims (that process only)", "", *[f"- {s}" for s in data["shim_notes"]]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    tag = envs.canonical_name(args.env) + (f"_{args.backend}" if args.backend else "")
    if args.report:
        if args.out:  # the JSON beside the markdown
            stored = [Path(args.out).with_suffix(".json")]
        else:
            stored = common.stored_per_platform(f"throughput_{tag}")
            if not stored:
                raise SystemExit(
                    f"no stored throughput_{tag}_<platform>.json in {common.out_dir()}"
                )
    else:
        data = measure(args)
        name = f"throughput_{tag}_{data['platform']}.json"
        path = Path(args.out).with_suffix(".json") if args.out else common.out_dir() / name
        common.write_file(path, json.dumps(data, indent=1))
        stored = [path]
    for path in stored:
        text = report(json.loads(path.read_text()))
        print("\n" + text)
        common.write_file(args.out or path.with_suffix(".md"), text)


if __name__ == "__main__":
    main()
