"""Training throughput, side by side on one env and one batch layout, in one process.

Measures, on the same environment and the same rollout / batch / epoch shape:

1. raw simulator stepping: ``jit(lax.scan(vmap(env.step)))`` with zero actions over
   ``fpo_jax.envs.wrap_for_training`` (the upper limit for any trainer);
2. Brax's own PPO (``brax.training.agents.ppo.train.train``) with the same layout and 4x32 / 5x256
   networks (PyPI brax 0.14.2 calls ``jax.device_put_replicated``, which jax 0.10.2 removed: a
   shim is installed for this process only);
3. this project's Gaussian PPO and 4. this project's FPO, each as
   ``jax.jit(trainer.train_step, donate_argnums=0)`` compiled ahead of time, so compile time and
   steps/s are measured separately.

Then it explains FPO's overhead: a grid over ``flow_steps`` x ``num_pairs``, a rollout / update
split (the update half compiled alone), and the compiled step's memory
(``compiled.memory_analysis()``) for ``pair_storage="stored"`` vs ``"key"``.

Timing is robust to other processes on the machine: everything is compiled and warmed up first,
then the programs are timed one call each, round-robin, for several rounds (Brax PPO's epochs are
interleaved with the rounds through its progress callback), and the best call counts (the
median is reported too). Load from other processes only ever slows a call down.

Run from the repository root::

    python experiments/bench_throughput.py                    # Playground CartpoleBalance
    python experiments/bench_throughput.py --quick            # smoke run: tiny sizes, 3 programs
    python experiments/bench_throughput.py --env inverted_pendulum --backend spring

Results go to stdout and ``experiments/results/throughput_<env>_<platform>.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
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

SHIM_NOTES: list[str] = []


# ----------------------------------------------------------------------------------------------
# Helpers


def block(tree: Any) -> Any:
    return jax.block_until_ready(tree)


def load_average() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unavailable"


def fmt_rate(x: float | None) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:,.0f}"


def fmt_s(x: float | None, digits: int = 1) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def fmt_ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or not b else f"{a / b:.2f}"


def mib(nbytes: float | None) -> str:
    return "-" if nbytes is None else f"{nbytes / 2**20:.1f}"


def nbytes(shapes: Any) -> int:
    return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(shapes))


def memory_of(compiled: Any) -> dict[str, int] | None:
    """Argument / output / alias / temp bytes of a compiled program, and a peak estimate."""
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
    # Live at once: the inputs, the outputs not aliased to (donated) inputs, XLA's scratch.
    out["peak"] = out["argument"] + out["output"] - out["alias"] + out["temp"]
    return out


@dataclasses.dataclass
class Runner:
    """A compiled program and its state, ``state = step(state)``, timed one blocking call at a time.

    ``steps`` is the env steps one call performs (0 for the update-only programs).
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

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def median(self) -> float:
        return float(np.median(self.times))


@dataclasses.dataclass
class Method:
    """One row of the report: a full-iteration runner (or Brax's epochs) and its extras."""

    label: str
    compile_s: float | None = None
    note: str = ""
    runner: Runner | None = None
    update: Runner | None = None  # update-only program (ours)
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

    t0 = time.perf_counter()
    compiled = jax.jit(run, donate_argnums=0).lower(state).compile()
    compile_s = time.perf_counter() - t0
    steps = scan_length * cfg.num_envs * cfg.action_repeat
    return Method(
        "raw stepping (zero actions)",
        compile_s,
        f"{scan_length}-step scans",
        runner=Runner("raw", compiled, state, steps),
    )


# ----------------------------------------------------------------------------------------------
# 2. Brax PPO


def install_brax_shims() -> None:
    """PyPI brax 0.14.2 calls jax.device_put_replicated, removed in jax 0.10.2 (google/brax#671)."""
    if hasattr(jax, "device_put_replicated"):
        return

    def device_put_replicated(x: Any, devices: list[Any]) -> Any:
        # Stack one copy per device, then place it with an identity pmap over Brax's axis name
        # "i": the result then carries exactly the sharding of the outputs of Brax's pmapped
        # training epoch. With any other sharding (a plain device_put, or a pmap over another
        # axis name) jax 0.10.2 compiles that epoch a second time on its second call.
        stacked = jax.tree.map(lambda a: jnp.stack([jnp.asarray(a)] * len(devices)), x)
        return jax.pmap(lambda t: t, axis_name="i", devices=devices)(stacked)

    jax.device_put_replicated = device_put_replicated
    SHIM_NOTES.append(
        "`jax.device_put_replicated` (removed in jax 0.10.2, called by PyPI brax 0.14.2's PPO, "
        "google/brax#671) is defined for this process only, as an identity `jax.pmap(axis_name="
        "'i')` over `stack([x] * n_devices)`. Placing the replicated train state with a plain "
        "`device_put` instead works too, but makes jax compile Brax's training epoch twice (the "
        "first call's input sharding differs from later calls'): a first attempt measured that "
        "second compile as 'steady-state' time. Nothing else in Brax's PPO needed changing."
    )


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
# 3./4. Our trainer


def make_rollout_fn(trainer: Trainer) -> Callable[[TrainState], Any]:
    """The rollout half of ``Trainer._iteration`` (cache refresh, unroll scan, reshape).

    state -> (state, (traj with leaves (num_envs * num_unrolls, T, ...), bootstrap_obs)). Only
    traced (``jax.eval_shape``) here, for the rollout buffer's shapes.
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
        return state.replace(env_state=env_state, obs_stats=stats, key=key), (traj, bootstrap_obs)

    return rollout


def make_update_fn(trainer: Trainer) -> Callable[[TrainState, Any], TrainState]:
    """The update half of ``Trainer._iteration``: num_epochs x num_minibatches SGD steps."""
    c = trainer.config

    def update(state: TrainState, data: Any) -> TrainState:
        key, _, _, k_sgd = jax.random.split(state.key, 4)
        epoch = lambda carry, k: trainer._epoch(data, carry, k)
        (params, opt_state), _ = jax.lax.scan(
            epoch, (state.params, state.opt_state), jax.random.split(k_sgd, c.num_epochs)
        )
        return state.replace(params=params, opt_state=opt_state, key=key)

    return update


def synthetic_like(shapes: Any, seed: int = 0) -> Any:
    """Arrays of the given shapes: |0.1 N(0, 1)| floats, random uint32 bits, integer zeros."""
    leaves, treedef = jax.tree.flatten(shapes)
    out = []
    for k, leaf in zip(
        jax.random.split(jax.random.PRNGKey(seed), len(leaves)), leaves, strict=True
    ):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            out.append(jnp.abs(0.1 * jax.random.normal(k, leaf.shape, leaf.dtype)))
        elif leaf.dtype == jnp.uint32:
            out.append(jax.random.bits(k, leaf.shape, jnp.uint32))
        else:
            out.append(jnp.zeros(leaf.shape, leaf.dtype))
    return jax.tree.unflatten(treedef, out)


def build_ours(env: Any, cfg: config_lib.TrainConfig, label: str, with_update: bool) -> Method:
    """The AOT-compiled training step with donated state, and optionally its update half alone.

    The update half runs on synthetic data of the rollout buffer's exact shapes: the SGD phase
    has no data-dependent control flow, so its cost does not depend on the values.
    """
    trainer = Trainer(env, cfg)
    state = block(jax.jit(trainer.init)(jax.random.PRNGKey(0)))

    t0 = time.perf_counter()
    lowered = jax.jit(trainer.train_step, donate_argnums=0).lower(state)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    _, (traj, bootstrap) = jax.eval_shape(make_rollout_fn(trainer), state)
    method = Method(
        label,
        compile_s=t2 - t0,
        note=f"trace {t1 - t0:.1f} s + XLA {t2 - t1:.1f} s",
        runner=Runner(label, lambda s: compiled(s)[0], state, cfg.env_steps_per_call),
        memory=memory_of(compiled),
        buffer_bytes=nbytes((traj, bootstrap)),
        extras_bytes=nbytes(traj["extras"]),
    )
    if with_update:
        data = block(synthetic_like((traj, bootstrap)))
        update_state = jax.tree.map(jnp.copy, state)
        t3 = time.perf_counter()
        update = jax.jit(make_update_fn(trainer), donate_argnums=0).lower(update_state, data)
        update = update.compile()
        method.update_compile_s = time.perf_counter() - t3
        method.update = Runner(label + " [update]", lambda s: update(s, data), update_state, 0)
    return method


# ----------------------------------------------------------------------------------------------
# Report


def machine_info() -> list[str]:
    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "missing"

    try:
        cpu_model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        cpu_model = "unknown"
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    versions = ", ".join(
        f"{d} {version(d)}"
        for d in ["jax", "jaxlib", "brax", "playground", "mujoco", "mujoco-mjx", "flax", "optax"]
    )
    return [
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- `platform.processor()`: `{platform.processor() or '(empty)'}`; /proc/cpuinfo model: "
        f"{cpu_model}",
        f"- `os.cpu_count()`: {os.cpu_count()} (usable by this process: {affinity})",
        f"- python {platform.python_version()}; {versions}",
        f"- `jax.devices()`: `{jax.devices()}`",
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="CartpoleBalance", help="any fpo_jax.envs.make_env name")
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
    p.add_argument("--no-grid", action="store_true", help="skip the flow_steps x num_pairs grid")
    p.add_argument("--no-split", action="store_true", help="skip the update-only programs")
    p.add_argument("--no-key", action="store_true", help="skip FPO with pair_storage='key'")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: tiny sizes; raw stepping, our PPO and FPO only",
    )
    p.add_argument("--out", default=None, help="markdown output (default experiments/results/...)")
    args = p.parse_args(argv)
    if args.quick:
        args.num_envs, args.unroll_length, args.batch_size = 32, 10, 16
        args.num_minibatches, args.num_epochs, args.rounds = 4, 2, 2
        args.raw_scan_length = 100
        args.episode_length = min(args.episode_length, 200)
        args.no_brax = args.no_grid = args.no_split = args.no_key = True
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cmd_args = sys.argv[1:] if argv is None else argv
    cmd = "python experiments/bench_throughput.py " + " ".join(shlex.quote(a) for a in cmd_args)
    load_before = load_average()
    wall0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - wall0:6.1f} s] {msg}", flush=True)

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
    per_it = base.env_steps_per_iteration
    log(
        f"{env_name} ({args.backend or args.impl}): {base.num_envs} envs, unroll "
        f"{base.unroll_length}, batch {base.batch_size} x {base.num_minibatches} minibatches "
        f"({base.num_unrolls} unrolls/env), {base.num_epochs} epochs = {per_it} env steps per "
        f"iteration; load average {load_before}"
    )

    # ------------------------------------------------------------------ compile everything
    methods: dict[str, Method] = {}
    methods["raw"] = build_raw(env, base, args.raw_scan_length)
    log(f"compiled raw stepping in {methods['raw'].compile_s:.1f} s")

    def ours(key: str, label: str, cfg: config_lib.TrainConfig, with_update: bool) -> None:
        methods[key] = m = build_ours(env, cfg, label, with_update and not args.no_split)
        upd = "" if m.update_compile_s is None else f", update alone {m.update_compile_s:.1f} s"
        log(f"compiled {label} in {m.compile_s:.1f} s{upd}")

    ours("ppo", "fpo_jax PPO (Gaussian)", ppo_cfg, True)
    ours("fpo", "fpo_jax FPO (N=8, 10 Euler, stored)", fpo_cfg, True)
    if not args.no_key:
        key_cfg = config_lib.replace(fpo_cfg, pair_storage="key")
        ours("fpo_key", "fpo_jax FPO (N=8, 10 Euler, key)", key_cfg, True)
    grid = [(k, n) for k in (1, 10) for n in (1, 8)]
    grid_key = lambda k, n: "fpo" if (k, n) == (10, 8) else f"fpo_k{k}_n{n}"
    if not args.no_grid:
        for k, n in grid:
            if (k, n) != (10, 8):
                cfg = config_lib.replace(fpo_cfg, flow_steps=k, num_pairs=n)
                # The update half does not depend on flow_steps: compile it once per N
                # (N = 8 stored is the default FPO's).
                ours(
                    grid_key(k, n), f"fpo_jax FPO (N={n}, {k} Euler, stored)", cfg, (k, n) == (1, 1)
                )
    update_of = {key: key for key in methods}
    update_of.update({"fpo_k10_n1": "fpo_k1_n1", "fpo_k1_n8": "fpo"})

    # ------------------------------------------------------------------ time, round-robin
    runners = [m.runner for m in methods.values() if m.runner is not None]
    runners += [m.update for m in methods.values() if m.update is not None]
    for r in runners:
        r.warm_up()
    log(f"warmed up {len(runners)} programs; timing them round-robin")

    def one_round() -> None:
        for r in runners:
            r.timed()
        log(f"round {len(runners[0].times)} done (load average {load_average()})")

    if args.no_brax:
        for _ in range(args.rounds):
            one_round()
    else:
        try:
            methods["brax"] = run_brax_ppo(
                env, ppo_cfg, args.brax_steps_per_epoch, args.rounds + 1, one_round
            )
        except Exception as e:  # noqa: BLE001 - report it and carry on with the others
            log(f"Brax PPO failed: {type(e).__name__}: {e}")
            methods["brax"] = Method("Brax PPO (brax.training)", error=f"{type(e).__name__}: {e}")
            while len(runners[0].times) < args.rounds:
                one_round()
    load_after = load_average()
    total_s = time.perf_counter() - wall0

    # ------------------------------------------------------------------ report
    raw = methods["raw"].rate()
    brax = methods["brax"].rate() if "brax" in methods else None
    where = f"Brax backend {args.backend}" if args.backend else f"Playground impl {args.impl}"
    lines = [
        f"# Training throughput: {env_name} on {jax.default_backend()}",
        "",
        f"Command (repository root): `{cmd.strip()}`",
        "",
        f"Layout (every method): {base.num_envs} envs, unroll_length {base.unroll_length}, "
        f"batch_size {base.batch_size}, num_minibatches {base.num_minibatches} "
        f"({base.num_unrolls} unrolls per env per iteration), num_epochs (Brax: "
        f"num_updates_per_batch) {base.num_epochs}, episode_length {base.episode_length}: "
        f"{per_it:,} env steps per iteration. Policy 4x32, value 5x256 (SiLU). Env: {env_name} "
        f"({where}).",
        "",
        "| method | env steps/s (best) | (median) | compile s | vs Brax PPO | vs raw stepping | "
        "s / iteration | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key in ["raw", "brax", "ppo", "fpo", "fpo_key"]:
        if key not in methods:
            continue
        m = methods[key]
        if m.error:
            lines.append(f"| {m.label} | failed | | | | | | {m.error} |")
            continue
        it = "-" if key == "raw" else fmt_s(m.seconds(per_it), 2)
        lines.append(
            f"| {m.label} | {fmt_rate(m.rate())} | {fmt_rate(m.rate('median'))} | "
            f"{fmt_s(m.compile_s)} | {fmt_ratio(m.rate(), brax)} | {fmt_ratio(m.rate(), raw)} | "
            f"{it} | {m.note} |"
        )
    ratio = fmt_ratio(methods["fpo"].rate(), methods["ppo"].rate())
    lines += ["", f"**FPO / our PPO throughput: {ratio}**"]
    if "fpo_key" in methods:
        key_ratio = fmt_ratio(methods["fpo_key"].rate(), methods["ppo"].rate())
        lines[-1] += f" (FPO with pair_storage=key / our PPO: {key_ratio})"
    lines += [
        "",
        "How it was timed: every program was compiled and run once first; then each was timed "
        f"for one blocking call per round, round-robin, {len(runners[0].times)} rounds; 'best' is "
        "the fastest call (other processes can only slow a call down), 'median' the median. Ours: "
        "`jax.jit(trainer.train_step, donate_argnums=0).lower(state).compile()`, one iteration "
        "per call; compile s = trace + XLA compile; the step includes the per-iteration refresh of "
        "the auto-reset cache (a batched env reset), so it compiles reset and step. Brax PPO: one "
        "iteration per epoch (`num_evals` = rounds + 2, evals off), epoch times from its own "
        "`training/walltime`, one round of the other programs after each epoch via its "
        "`progress_fn`; compile s = first epoch - best epoch (its separately compiled env reset "
        "is not included, nor is our init's). Raw stepping: "
        f"{args.raw_scan_length}-step `lax.scan`s of `vmap(step)` of the auto-resetting training "
        "env, zero actions, same env count.",
        "",
    ]
    if not args.no_split:
        lines += [
            "## Where FPO's time goes",
            "",
            "update = the SGD half of an iteration (num_epochs x num_minibatches steps) compiled "
            "alone and run on synthetic data of the rollout buffer's exact shapes (its cost does "
            "not depend on the values); rollout = best full iteration - best update (cache "
            "refresh, unroll scan, action sampling and, for FPO, the N old CFM losses per "
            "action). The update does not depend on flow_steps, so it is compiled once per N. "
            "buffer = the rollout buffer (trajectories + bootstrap obs); extras = its per-action "
            "policy data (FPO stored: N (t, eps) pairs + N old CFM losses; key: one PRNG key + N "
            "losses; PPO: one log-prob). peak from `compiled.memory_analysis()` of the full step.",
            "",
            "The rollout column is a difference of two timings, each with the run's noise: a "
            "rollout near 0, or below 0, means the rollout is within that noise. The simulator "
            f"alone needs {fmt_s(per_it / raw if raw else None, 2)} s per iteration (raw "
            "stepping).",
            "",
            "| method | flow steps | N | env steps/s | s / iteration | rollout s | update s | "
            "buffer MiB | extras MiB | peak MiB | compile s | update compile s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]

        def split_row(key: str, label: str, k: Any, n: Any) -> str:
            m = methods[key]
            it = m.seconds(per_it)
            u_m = methods[update_of[key]]
            upd = u_m.update.best if u_m.update is not None else None
            ro = None if upd is None or it is None else it - upd
            return (
                f"| {label} | {k} | {n} | {fmt_rate(m.rate())} | {fmt_s(it, 2)} | "
                f"{fmt_s(ro, 2)} | {fmt_s(upd, 2)} | {mib(m.buffer_bytes)} | "
                f"{mib(m.extras_bytes)} | {mib((m.memory or {}).get('peak'))} | "
                f"{fmt_s(m.compile_s)} | {fmt_s(u_m.update_compile_s)} |"
            )

        lines.append(split_row("ppo", "our PPO", "-", "-"))
        for k, n in grid:
            if grid_key(k, n) in methods:
                lines.append(split_row(grid_key(k, n), "FPO (stored)", k, n))
        if "fpo_key" in methods:
            lines.append(split_row("fpo_key", "FPO (key)", 10, 8))
        lines.append("")
    _, action_size = envs.env_sizes(env)
    n = fpo_cfg.num_pairs
    lines += [
        "## Memory of the compiled training step (`compiled.memory_analysis()`, MiB)",
        "",
        "peak = argument + output - alias (the donated state) + temp (XLA's scratch: rollout "
        "buffer, its shuffled copies, activations and gradients of a minibatch...). Per action "
        f"the FPO extras are N(A+1) + N = {n * (action_size + 1) + n} floats with "
        f"pair_storage=stored vs 2 + N = {2 + n} words with key (A = {action_size}, N = {n}).",
        "",
        "| method | argument | output | alias | temp | peak | env steps/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key in ["ppo", "fpo", "fpo_key"]:
        if key in methods:
            m = methods[key]
            mem = m.memory or {}
            cells = " | ".join(mib(mem.get(f)) for f in ["argument", "output", "alias", "temp"])
            lines.append(f"| {m.label} | {cells} | {mib(mem.get('peak'))} | {fmt_rate(m.rate())} |")
    lines += ["", "## Machine", "", *machine_info()]
    lines += [
        f"- load average (1 / 5 / 15 min) before: {load_before}; after: {load_after}. Other "
        "processes were competing for the cores whenever the 1-minute load exceeds ~1 (this "
        "benchmark itself counts for about 1).",
        f"- benchmark wall time: {total_s:.0f} s",
    ]
    if SHIM_NOTES:
        lines += ["", "## Shims (this process only)", "", *[f"- {s}" for s in SHIM_NOTES]]
    text = "\n".join(lines) + "\n"
    print("\n" + text)

    if args.out:
        out = Path(args.out)
    else:
        tag = env_name + (f"_{args.backend}" if args.backend else "")
        suffix = "_quick" if args.quick else ""
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
