"""FPO ablations: N pairs, clip epsilon, CFM weighting, ratio form, trust region.

Each row changes ONE setting of the paper's FPO configuration (N = 8, clip 0.05, eps-MSE
weighting, mean ratio, PPO clipping) and trains every seed of it as one vmapped program:

* N (``num_pairs``) in {1, 4, 8};
* clip epsilon in {0.05, 0.1, 0.2};
* ``cfm_weighting`` eps (eps-MSE, paper default) vs velocity (u-MSE);
* ``ratio`` mean (FPO) vs per_sample (FPO++);
* ``trust_region`` ppo vs aspo (FPO++).

Tasks (see ``TASKS``): ``bandit2d`` and ``gridworld``, the two cheapest tasks on which the
untrained policy is far from optimal, so differences in learning speed show within a small
budget; both are pure-JAX toy envs that compile in ~10-30 s. Every Playground DM Control task
costs 1.5-2 minutes of compilation per variant on this 2-core CPU (measured: CartpoleBalance
93 s, PointMass 108 s, ReacherEasy 86 s for the training step alone), i.e. >25 minutes for the
8 variants before any training, and Brax inverted_pendulum (spring) 67 s. ``bandit2d``'s optimum
is bimodal along a diagonal; ``gridworld`` has a sparse goal reward, and since a random policy
already reaches a goal in most episodes its return saturates early, so its table also reports
the final episode length (steps to a goal; shorter is better).

Run from the repository root::

    python experiments/ablations.py --budget small     # ~12 min on 2 CPU cores
    python experiments/ablations.py --budget full      # 5 seeds, 4x the steps
    python experiments/ablations.py --smoke            # 2 variants, budget smoke, to /tmp

Writes ``experiments/results/ablations.md`` and ``ablations.png``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (also puts the repository on sys.path)
import numpy as np  # noqa: E402

from fpo_jax.config import preset  # noqa: E402
from fpo_jax.train import train  # noqa: E402

# The paper's FPO setting; every variant changes one field of it.
PAPER_FPO = dict(num_pairs=8, clip_epsilon=0.05, cfm_weighting="eps", ratio="mean",
                 trust_region="ppo")  # fmt: skip
VARIANTS: list[tuple[str, str, dict[str, Any]]] = [
    ("paper setting", "N=8, clip 0.05, eps-MSE, mean ratio, PPO clip", {}),
    ("N", "N = 1", dict(num_pairs=1)),
    ("N", "N = 4", dict(num_pairs=4)),
    ("clip", "clip 0.1", dict(clip_epsilon=0.1)),
    ("clip", "clip 0.2", dict(clip_epsilon=0.2)),
    ("weighting", "u-MSE (cfm_weighting=velocity)", dict(cfm_weighting="velocity")),
    ("ratio", "per-sample ratio", dict(ratio="per_sample")),
    ("trust region", "ASPO", dict(trust_region="aspo")),
]

# Per task: overrides of preset(task, "fpo") for the small budget (the presets' own layouts).
TASKS: dict[str, dict[str, Any]] = {
    # The bandit preset (1024 steps per iteration) for 20 iterations: the paper setting climbs
    # from 0.07 to ~1 in this window, so learning speed shows.
    "bandit2d": dict(num_timesteps=20_480, num_evals=4),
    # The gridworld preset (5120 steps per iteration) for 8 iterations.
    "gridworld": dict(num_timesteps=40_960, num_evals=4),
}
# budget -> (factor on TASKS' num_timesteps, seeds)
BUDGETS = {"small": (1.0, 2), "full": (4.0, 5), "smoke": (0.1, 2)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--budget", choices=sorted(BUDGETS), default="small")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--seeds", type=int, default=None)
    args = common.parse_args(
        p, argv, "--budget smoke and only the first two variants", smoke_budget="smoke"
    )
    variants = VARIANTS[:2] if args.smoke else VARIANTS
    clock = common.Stopwatch()
    common.enable_compilation_cache()
    factor, seeds = BUDGETS[args.budget]
    seeds = args.seeds or seeds

    details, results = [], {}
    for task in args.tasks:
        base = preset(task, "fpo")
        ov = dict(TASKS[task], **PAPER_FPO)
        ov["num_timesteps"] = int(ov["num_timesteps"] * factor)
        details.append(
            f"`{task}`: preset({task!r}, 'fpo') ({base.preset_source}) with "
            + ", ".join(f"{k}={v}" for k, v in ov.items() if getattr(base, k) != v)
            + f"; {seeds} seeds (vmapped)"
        )
        for group, label, change in variants:
            common.log(f"{task}: {label}")
            t0 = time.perf_counter()
            res = train(task, base, num_seeds=seeds, progress=False, **{**ov, **change})
            steps, curve = common.eval_curve(res.history, seeds)
            lengths = [r["eval/episode_length"] for r in res.history if "eval/episode_length" in r]
            results[(task, label)] = dict(
                group=group, steps=steps, curve=curve, wall=time.perf_counter() - t0,
                length=lengths[-1],
                clip_fraction=np.nanmean([r.get("clip_fraction", np.nan) for r in res.history[1:]]),
            )  # fmt: skip
            common.log(
                f"  final {common.fmt_pm(curve[-1])} ({results[(task, label)]['wall']:.0f} s)"
            )

    headers = ["ablation", "variant"]
    for task in args.tasks:
        headers += [f"`{task}` final", f"`{task}` best", f"`{task}` clip fraction"]
        if task == "gridworld":
            headers.append("`gridworld` final episode length")
    rows = []
    for group, label, _ in variants:
        row = [group, label]
        for task in args.tasks:
            final, best = common.final_and_best(results[(task, label)]["curve"])
            row += [
                common.fmt_pm(final, 2),
                common.fmt_pm(best, 2),
                f"{results[(task, label)]['clip_fraction']:.3f}",
            ]
            if task == "gridworld":
                row.append(f"{results[(task, label)]['length']:.1f}")
        rows.append(row)
    walls = ", ".join(
        f"{t}: {np.mean([results[(t, v[1])]['wall'] for v in variants]):.0f} s" for t in args.tasks
    )

    plt = common.pyplot()
    fig, axes = plt.subplots(1, len(args.tasks), figsize=(6.5 * len(args.tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], args.tasks, strict=True):
        for j, (_, label, _) in enumerate(variants):
            r = results[(task, label)]
            common.plot_curves(ax, r["steps"], r["curve"], label, f"C{j}")
        ax.set_title(task)
        ax.set_xlabel("env steps")
        ax.set_ylabel("eval return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    common.save_figure(fig, "ablations.png")

    md = [
        common.results_header("FPO ablations", args.budget, details),
        "Each row changes one setting of the paper's FPO configuration (first row). Final = "
        "last evaluation, best = best evaluation after training started; mean ± standard error "
        f"over {seeds} seeds. Clip fraction: share of ratios outside [1 - eps, 1 + eps], mean "
        "over the training iterations and seeds. Evaluation: the trainer's default sampler "
        "(random initial noise, "
        "10 Euler steps).\n",
        common.markdown_table(headers, rows, "ll" + "r" * (len(headers) - 2)),
        f"\nMean wall time per variant (compilation included): {walls}.\n",
        "\n![ablation curves](ablations.png)\n",
        "\nPaper (DM Control average, 60M steps): N=8 759.3, N=4 731.2, N=1 691.6; u-MSE 664.6; "
        "clip 0.1 623.3, clip 0.2 526.4.\n",
        "\n" + clock.line(),
    ]
    common.write_result("ablations.md", "\n".join(md))


if __name__ == "__main__":
    main()
