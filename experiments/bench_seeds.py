"""K seeds as one vmapped program vs K sequential single-seed runs (scale-out).

    python experiments/bench_seeds.py [--env gridworld] [--seeds 4] [--calls 5]
    python experiments/bench_seeds.py --smoke    # gridworld, 2 seeds, 1 call, to /tmp
    python experiments/bench_seeds.py --env gridworld --report   # the table from the JSON

Both sides use the representation ``fpo_jax.train`` runs: a state with a leading seed axis and
``jax.jit(jax.vmap(trainer.train_step))`` over it, of size 1 for each sequential run and of size
K for the vmapped program. The sequential runs reuse one compiled single-seed step (the fair
case: a user looping over seeds in one process). Reports env steps/s after compile and compile
time of each, and the speed-up of the vmapped program. Writes
``experiments/results/seeds_<env>_<platform>.json`` (each sequential run's and the vmapped
program's seconds of the timed calls, the compile seconds, the layout, the provenance) and from it
alone ``seeds_<env>_<platform>.md``; ``--report`` rebuilds the table from the stored JSON
(every platform's stored for ``--env``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (also puts the repository on sys.path)
import jax  # noqa: E402

from fpo_jax import envs  # noqa: E402
from fpo_jax.config import TrainConfig  # noqa: E402
from fpo_jax.trainer import Trainer  # noqa: E402


def compile_step(trainer: Trainer, state: object) -> tuple[object, float]:
    """``jax.jit(jax.vmap(trainer.train_step))`` for ``state``'s seed axis; (compiled, seconds)."""
    t0 = time.perf_counter()
    step = jax.jit(jax.vmap(trainer.train_step), donate_argnums=0).lower(state).compile()
    return step, time.perf_counter() - t0


def timed_calls(step, state, calls: int) -> tuple[object, float]:
    state, _ = step(state)  # warm-up
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(calls):
        state, metrics = step(state)
    jax.block_until_ready(metrics)
    return state, time.perf_counter() - start


def measure(args: argparse.Namespace) -> dict:
    """Sequential and vmapped: the stored data of the results file."""
    started = common.provenance()
    config = TrainConfig(
        env=args.env, num_envs=args.num_envs, batch_size=args.num_envs, num_minibatches=4,
        num_epochs=2, unroll_length=16, episode_length=1000,
    )  # fmt: skip
    trainer = Trainer(envs.make_env(args.env), config)
    init = jax.jit(jax.vmap(trainer.init))  # PRNG keys (seeds, 2) -> state, leading seed axis
    keys = jax.vmap(jax.random.PRNGKey)(jax.numpy.arange(args.seeds))

    singles = [init(keys[i : i + 1]) for i in range(args.seeds)]  # seed axis of size 1
    one, compile_one = compile_step(trainer, singles[0])
    sequential = [timed_calls(one, state, args.calls)[1] for state in singles]

    state = init(keys)  # seed axis of size K
    many, compile_many = compile_step(trainer, state)
    _, vmapped = timed_calls(many, state, args.calls)
    return {
        "env": args.env,
        "seeds": args.seeds,
        "calls": args.calls,
        "num_envs": args.num_envs,
        "env_steps_per_call": config.env_steps_per_call,
        "smoke": args.smoke,
        "platform": jax.default_backend(),
        "compile_one_s": compile_one,
        "sequential_s": sequential,
        "compile_many_s": compile_many,
        "vmapped_s": vmapped,
        "machine": common.machine_info(),
        "provenance": common.provenance_until_now(started),
    }


def report(data: dict) -> str:
    """The results file from the stored measurements alone."""
    seeds, steps = data["seeds"], data["env_steps_per_call"] * data["calls"]
    sequential, vmapped = sum(data["sequential_s"]), data["vmapped_s"]
    rows = [
        ("K sequential single-seed runs", seeds * steps / sequential, data["compile_one_s"], 1.0),
        ("K seeds vmapped in one program", seeds * steps / vmapped, data["compile_many_s"],
         sequential / vmapped),
    ]  # fmt: skip
    table = common.markdown_table(
        ["method", "env steps/s (all seeds)", "compile s", "speed-up"],
        [(m, f"{sps:,.0f}", f"{c:.1f}", f"{s:.2f}") for m, sps, c, s in rows],
    )
    return (
        common.results_header(
            f"K = {seeds} seeds: vmapped vs sequential ({data['env']})",
            "smoke" if data["smoke"] else data["platform"],
            [
                f"FPO, {data['num_envs']} envs per seed, {data['env_steps_per_call']:,} env steps "
                f"per call, {data['calls']} timed calls per seed after one warm-up call"
            ],
            data=[data["provenance"]],
        )  # fmt: skip
        + "\n"
        + table
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartpoleBalance")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument(
        "--report", action="store_true", help="only rebuild the tables from the stored JSON"
    )
    args = common.parse_args(parser, argv, "gridworld, 2 seeds, 1 timed call, 16 envs")
    if args.smoke:
        args.env, args.seeds, args.calls, args.num_envs = "gridworld", 2, 1, 16
    common.results_per_platform(
        parser, f"seeds_{args.env}", args.report, lambda: measure(args), report
    )


if __name__ == "__main__":
    main()
