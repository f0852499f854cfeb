"""K seeds as one vmapped program vs K sequential single-seed runs (issue: scale-out).

    python experiments/bench_seeds.py [--env gridworld] [--seeds 4] [--calls 5]

Both sides use the same compiled-step layout; sequential runs reuse one compiled single-seed step
(the fair case: a user looping over seeds in one process). Reports env steps/s after compile and
compile time of each, and the speed-up of the vmapped program. Writes
experiments/results/seeds_<env>_cpu.md.
"""

from __future__ import annotations

import argparse
import time

import common  # noqa: F401  (puts the repository on sys.path)
import jax

from fpo_jax import envs
from fpo_jax.config import TrainConfig
from fpo_jax.trainer import Trainer


def timed_calls(step, state, calls: int) -> tuple[object, float]:
    state, _ = step(state)  # warm-up
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(calls):
        state, metrics = step(state)
    jax.block_until_ready(metrics)
    return state, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartpoleBalance")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--num-envs", type=int, default=64)
    args = parser.parse_args()

    config = TrainConfig(
        env=args.env, num_envs=args.num_envs, batch_size=args.num_envs, num_minibatches=4,
        num_epochs=2, unroll_length=16, episode_length=1000,
    )  # fmt: skip
    trainer = Trainer(envs.make_env(args.env), config)
    keys = jax.vmap(jax.random.PRNGKey)(jax.numpy.arange(args.seeds))
    steps = config.env_steps_per_call * args.calls

    t0 = time.perf_counter()
    one = jax.jit(trainer.train_step, donate_argnums=0).lower(jax.jit(trainer.init)(keys[0]))
    one = one.compile()
    compile_one = time.perf_counter() - t0
    sequential = 0.0
    for i in range(args.seeds):
        _, seconds = timed_calls(one, jax.jit(trainer.init)(keys[i]), args.calls)
        sequential += seconds

    t0 = time.perf_counter()
    init_many = jax.jit(jax.vmap(trainer.init))(keys)
    many = jax.jit(jax.vmap(trainer.train_step), donate_argnums=0).lower(init_many).compile()
    compile_many = time.perf_counter() - t0
    _, vmapped = timed_calls(many, init_many, args.calls)

    rows = [
        ("K sequential single-seed runs", args.seeds * steps / sequential, compile_one, 1.0),
        ("K seeds vmapped in one program", args.seeds * steps / vmapped, compile_many,
         sequential / vmapped),
    ]  # fmt: skip
    table = common.markdown_table(
        ["method", "env steps/s (all seeds)", "compile s", "speed-up"],
        [(m, f"{sps:,.0f}", f"{c:.1f}", f"{s:.2f}") for m, sps, c, s in rows],
    )
    text = (
        common.results_header(
            f"K = {args.seeds} seeds: vmapped vs sequential ({args.env})",
            "cpu",
            [
                f"FPO, {args.num_envs} envs per seed, {config.env_steps_per_call:,} env steps per "
                f"call, {args.calls} timed calls per seed after one warm-up call"
            ],
        )  # fmt: skip
        + "\n"
        + table
    )
    print(text)
    common.write_result(f"seeds_{args.env}_cpu.md", text)


if __name__ == "__main__":
    main()
