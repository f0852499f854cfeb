"""A K-member hyperparameter sweep as one program vs K sequential runs of the same settings.

    python experiments/bench_sweep.py                  # gridworld, K = 1, 4, 9, 12 iterations
    python experiments/bench_sweep.py --env CartpoleBalance --iterations 4   # slower compiles
    python experiments/bench_sweep.py --smoke          # tiny layout, K = 1, 2, to /tmp (~1 min)
    python experiments/bench_sweep.py --report         # the tables again from the stored JSON

The default makes 13 compiled runs (3 sweeps, 9 single runs, a warm-up); sized from a K = 1
probe on the shared 2-core CPU (load ~8: 35 s per single run, 18 s of it compiling the
training step), it should take about 5 minutes on 2 quiet cores and 10 on loaded ones.

The K settings are nested clip_epsilon x learning_rate grids: K = 1 is clip 0.05 / lr 3e-4,
K = 4 adds clip 0.1 and lr 1e-3, K = 9 adds clip 0.2 and lr 3e-3 (``--ks`` also takes 2, 3
and 6: 2 or 3 clips x 1 or 2 learning rates, see ``GRIDS``). One seed per setting. Both
sides go through the public API, in this one process:

* the sweep: ``train(env, config, sweep=("clip_epsilon=...", "learning_rate=..."))``, one
  compiled program whose state has a K-member axis and carries the two settings as traced
  values;
* sequential: ``train(env, config, clip_epsilon=c, learning_rate=lr)`` once per setting, one
  after the other (each compiles its own program, with the settings as constants).

Times per ``train()`` call: *total* = the whole call (env build, init, compiling the training
step, compiling the evaluation and the first evaluation, training); *compile* = compiling the
training step (``TrainResult.compile_seconds``); *training* = the training loop after
everything compiled (training calls and the final evaluation: the last ``wall_time`` of
``result.history``). The sequential times of a K are the sums over that K's settings: the
single runs (nine for K up to 9) are each timed once, interleaved with the sweeps (sweep K = 1,
its single run, sweep K = 4, its three new single runs, ...), and K = 4 sums the four of them
in its grid.
Speed-up = sequential / sweep (above 1: the sweep is faster).

Compilation cache: JAX's persistent compilation cache is OFF for this process (also if
``$JAX_COMPILATION_CACHE_DIR`` is set), so every run compiles all of its programs and no
sequential run loads a program compiled by an earlier one. ``train()`` starts a new
``Trainer`` per call, whose programs are traced and compiled anew (the single runs' compile
times in the second table show it). An untimed warm-up run on a tiny layout first pays the
process's one-time costs (imports, env registry, JAX's own caches), which would otherwise land
on the first timed run (not with ``--smoke``). Sequential runs in one process are the cheap
case: K separate CLI runs would also pay K process starts and imports. The script runs on any
JAX backend (a GPU's results go to ``sweep_<env>_gpu.md``).

Writes ``experiments/results/sweep_<env>_<platform>.json`` (every timed ``train()`` call's
seconds, members, env steps/s and final return, the warm-up's seconds, the layout, the
provenance) and from it alone ``sweep_<env>_<platform>.md`` (``--smoke``: a folder under /tmp);
``--report`` rebuilds the tables from the stored JSON (every platform's stored for ``--env``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (also puts the repository on sys.path)
import jax  # noqa: E402

from fpo_jax import compile_cache  # noqa: E402
from fpo_jax.config import replace  # noqa: E402
from fpo_jax.presets import preset  # noqa: E402
from fpo_jax.train import train  # noqa: E402

CLIPS = (0.05, 0.1, 0.2)
LEARNING_RATES = (3e-4, 1e-3, 3e-3)
# The batch layout of the runs (the gridworld preset's own layout, applied to any env): 64 envs,
# 4 minibatches of 64 trajectories of 20 steps (5,120 env steps per iteration), 4 epochs.
LAYOUT = dict(num_envs=64, batch_size=64, num_minibatches=4, num_epochs=4, unroll_length=20,
              num_eval_envs=64)  # fmt: skip
# --smoke: the test suite's tiny layout.
SMOKE_LAYOUT = dict(num_envs=8, batch_size=8, num_minibatches=2, num_epochs=1, unroll_length=8,
                    episode_length=50, num_eval_envs=4, policy_hidden=(16, 16),
                    value_hidden=(32, 32), num_pairs=4, flow_steps=4,
                    eval_flow_steps=4)  # fmt: skip


CACHE_NOTE = "XLA persistent compilation cache: off (every run compiles every program)"

# K -> (clip values, learning rates) of its grid: the first ones of CLIPS and LEARNING_RATES.
GRIDS = {1: (1, 1), 2: (2, 1), 3: (3, 1), 4: (2, 2), 6: (3, 2), 9: (3, 3)}


def grid(k: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The clip and learning-rate values of the K-member grid."""
    clips, lrs = GRIDS[k]
    return CLIPS[:clips], LEARNING_RATES[:lrs]


def timed_train(config: Any, **changes: Any) -> dict[str, float]:
    """One ``train()`` call: total, compile and training-loop seconds, members, env steps/s."""
    t0 = time.perf_counter()
    result = train(config.env, config, **changes)
    total = time.perf_counter() - t0
    loop = result.history[-1]["wall_time"]
    members = result.config.num_members
    steps = result.history[-1]["env_steps"] * members
    return dict(total=total, compile=result.compile_seconds, loop=loop, members=members,
                steps_per_s=steps / loop, final=result.final_eval_return)  # fmt: skip


def measure(args: argparse.Namespace, ks: list[int]) -> dict:
    """The warm-up, the sweeps and the single runs: the stored data of the results file."""
    started = common.provenance()
    # common.disable_compilation_cache(), without its header line about this process: the
    # stored note goes into the header, so that a --report names it too.
    compile_cache.disable()
    layout = SMOKE_LAYOUT if args.smoke else LAYOUT

    base = replace(preset(args.env, "fpo"), **layout, progress=False, checkpoint=False)
    base = replace(base, num_timesteps=args.iterations * base.env_steps_per_iteration, num_evals=1)
    common.log(CACHE_NOTE)
    warm = time.perf_counter()
    if not args.smoke:  # one-time costs of the process, on a tiny layout (other programs)
        common.log("warm-up run (not timed)")
        train(base.env, base, **SMOKE_LAYOUT, num_timesteps=1)
    warm = time.perf_counter() - warm

    singles: dict[tuple[float, float], dict[str, float]] = {}
    sweeps: dict[int, dict[str, float]] = {}
    for k in ks:
        clips, lrs = grid(k)
        common.log(f"K = {k}: sweep of clip_epsilon {clips} x learning_rate {lrs}")
        sweeps[k] = timed_train(base, sweep=(
            "clip_epsilon=" + ",".join(map(str, clips)),
            "learning_rate=" + ",".join(map(str, lrs)),
        ))  # fmt: skip
        for setting in [(c, lr) for c in clips for lr in lrs if (c, lr) not in singles]:
            common.log(f"K = {k}: single run clip_epsilon={setting[0]}, learning_rate={setting[1]}")
            singles[setting] = timed_train(base, clip_epsilon=setting[0], learning_rate=setting[1])
    return {
        "env": args.env,
        "smoke": args.smoke,
        "platform": jax.default_backend(),
        "iterations": args.iterations,
        "layout": layout,
        "preset_source": base.preset_source,
        "env_steps_per_iteration": base.env_steps_per_iteration,
        "num_timesteps": base.num_timesteps,
        "compilation_cache": CACHE_NOTE,
        "warm_up_s": warm,
        # Each in the order it ran (sweeps and single runs alternated, see the docstring).
        "sweeps": [
            {"k": k, "clips": list(grid(k)[0]), "learning_rates": list(grid(k)[1]), **r}
            for k, r in sweeps.items()
        ],
        "singles": [
            {"clip_epsilon": c, "learning_rate": lr, **r} for (c, lr), r in singles.items()
        ],
        "machine": common.machine_info(),
        "provenance": common.provenance_until_now(started),
    }


def report(data: dict) -> str:
    """The results file from the stored measurements alone."""
    sweeps = {r["k"]: r for r in data["sweeps"]}
    singles = {(r["clip_epsilon"], r["learning_rate"]): r for r in data["singles"]}
    rows = []
    for k, sw in sweeps.items():
        seq = [singles[(c, lr)] for c in sw["clips"] for lr in sw["learning_rates"]]
        s_total, s_compile, s_loop = (sum(r[f] for r in seq) for f in ("total", "compile", "loop"))
        rows.append([
            k, common.fmt_s(sw["total"]), common.fmt_s(s_total),
            f"**{common.fmt_ratio(s_total, sw['total'])}**",
            common.fmt_s(sw["compile"]), common.fmt_s(s_compile),
            common.fmt_ratio(s_compile, sw["compile"]),
            common.fmt_s(sw["loop"]), common.fmt_s(s_loop),
            f"**{common.fmt_ratio(s_loop, sw['loop'])}**",
            common.fmt_rate(sw["steps_per_s"]), common.fmt_rate(k * data["num_timesteps"] / s_loop),
        ])  # fmt: skip
    table = common.markdown_table(
        ["K", "sweep total s", "sequential total s", "speed-up (compile included)",
         "sweep compile s", "sequential compile s", "compile ratio", "sweep training s",
         "sequential training s", "speed-up (compile excluded)", "sweep env steps/s",
         "sequential env steps/s"],
        rows, "r" * 12,
    )  # fmt: skip
    runs = [(f"sweep K = {k}", r) for k, r in sweeps.items()]
    runs += [(f"single clip {c:g}, lr {lr:g}", r) for (c, lr), r in singles.items()]
    details = common.markdown_table(
        ["run", "members", "total s", "compile s", "other s", "training s", "env steps/s",
         "final eval return (mean over members)"],
        [[name, r["members"], common.fmt_s(r["total"]), common.fmt_s(r["compile"]),
          common.fmt_s(r["total"] - r["compile"] - r["loop"]), common.fmt_s(r["loop"]),
          common.fmt_rate(r["steps_per_s"]), f"{r['final']:.2f}"] for name, r in runs],
        "lrrrrrrr",
    )  # fmt: skip

    env, platform, smoke = data["env"], data["platform"], data["smoke"]
    layout_text = ", ".join(f"{k}={tuple(v) if isinstance(v, list) else v}"
                            for k, v in data["layout"].items())  # fmt: skip
    return "\n".join([
        common.results_header(
            f"K-member sweep in one program vs K sequential runs ({env}, {platform})",
            "smoke" if smoke else platform,
            [f"FPO, preset({env!r}, 'fpo') ({data['preset_source']}) with {layout_text}",
             f"{data['iterations']} iterations of {data['env_steps_per_iteration']:,} env steps "
             f"per run and member ({data['num_timesteps']:,} env steps), one seed per setting, an "
             "evaluation before and after training",
             "settings: nested grids, K = " + ", ".join(
                 f"{k}: clip_epsilon {tuple(r['clips'])} x learning_rate "
                 f"{tuple(r['learning_rates'])}" for k, r in sweeps.items()),
             data["compilation_cache"]],
            data=[data["provenance"]],
        ),
        "Speed-up = K sequential runs / one K-member sweep (above 1: the sweep is faster). "
        "Total = the whole `train()` call; compile = compiling the training step; training = "
        "the training loop after everything compiled (training calls and the final "
        "evaluation). Sequential = the sum of the K single runs of the same settings (timed "
        "once each, in this process).\n",
        table,
        "## Each run\n",
        "other = total - compile - training: env build, init, compiling the evaluation and the "
        "first evaluation.\n",
        details,
        f"Untimed warm-up run before the first timed run: {data['warm_up_s']:.1f} s"
        + (" (none with --smoke: the first timed run pays the process's one-time costs).\n"
           if smoke else ".\n"),
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--env", default="gridworld")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 9], choices=sorted(GRIDS))
    parser.add_argument(
        "--iterations", type=int, default=12, help="training iterations per run (default 12)"
    )
    parser.add_argument(
        "--report", action="store_true", help="only rebuild the tables from the stored JSON"
    )
    args = common.parse_args(
        parser, argv, "gridworld at the tests' tiny layout, K = 1 and 2, 2 iterations, no warm-up"
    )
    if args.smoke:
        args.env, args.ks, args.iterations = "gridworld", [1, 2], 2
    common.results_per_platform(
        parser,
        f"sweep_{args.env}",
        args.report,
        lambda: measure(args, sorted(set(args.ks))),
        report,
    )


if __name__ == "__main__":
    main()
