"""Does the FPO authors' observation normalisation matter? ``obs_norm="reference"`` vs ours.

The FPO authors' running statistics drop the previous variance sum at every update, so their
std shrinks about as 1/sqrt(iterations) and the network sees ever larger inputs; they also
update the statistics before the update epochs and do not clip (see
``fpo_jax.normalization``). Ours (``obs_norm="welford"``, the default outside DM Control) are
exact running statistics. This script trains FPO with both, everything else equal, on

* ``CartpoleBalance`` (learns within a CPU budget), and
* ``ReacherEasy`` (harder: 6-dim observation with positions and velocities on different scales),

3 seeds each, vmapped in one program per (task, mode), at a CPU-sized layout: 256 envs, 128
trajectories x 4 minibatches of 30 steps (15,360 env steps per iteration), 4 epochs, the
paper's FPO settings otherwise (``preset(task, "fpo")``: lr 3e-4, clip 0.05, N = 8, 10 Euler
steps, discount 0.995, reward scale 10). 60 iterations, about as many as the paper's 60M-step
runs have (61), so the reference statistics shrink as far as they did there; but 60 x 15,360
= 0.92M env steps, 1.5 % of the paper's steps per run.

Run from the repository root::

    python experiments/obs_norm.py            # the committed result (~30 min on 2 busy cores)
    python experiments/obs_norm.py --smoke    # gridworld, tiny sizes, < 2 min, to /tmp
    python experiments/obs_norm.py --report   # rebuild from the stored JSON

Writes ``experiments/results/obs_norm.json`` (each run's curve, final statistics and wall time,
the provenance), and from it ``obs_norm.md`` and ``obs_norm.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (also puts the repository on sys.path)
import jax  # noqa: E402
import numpy as np  # noqa: E402

from fpo_jax.presets import preset  # noqa: E402
from fpo_jax.train import train  # noqa: E402

MODES = ("welford", "reference")
MODE_LABEL = {"welford": "ours (welford)", "reference": "authors' (reference)"}
LAYOUT = dict(num_envs=256, batch_size=128, num_minibatches=4, unroll_length=30, num_epochs=4,
              num_eval_envs=32, num_evals=10, checkpoint=False)  # fmt: skip
# budget -> (tasks, layout changes, iterations, seeds)
BUDGETS = {
    "default": (("CartpoleBalance", "ReacherEasy"), {}, 60, 3),
    "smoke": (
        ("gridworld",),
        dict(
            num_envs=16,
            batch_size=16,
            num_minibatches=2,
            unroll_length=10,
            num_epochs=2,
            num_eval_envs=8,
            num_evals=2,
            policy_hidden=(16, 16),
            value_hidden=(32, 32),
            num_pairs=4,
            flow_steps=4,
            eval_flow_steps=4,
        ),
        4,
        2,
    ),  # fmt: skip
}


def run(budget: str) -> dict:
    """Train both modes on every task of ``budget``; the compact record the report reads
    (``obs_norm.json``: curves, final statistics' std, wall times, provenance)."""
    common.enable_compilation_cache()
    tasks, changes, iterations, seeds = BUDGETS[budget]
    runs, details = [], []
    for task in tasks:
        base = preset(task, "fpo")
        layout = {**LAYOUT, **changes}
        per_iter = layout["batch_size"] * layout["num_minibatches"] * layout["unroll_length"]
        layout["num_timesteps"] = iterations * per_iter
        details.append(
            f"`{task}`: preset({task!r}, 'fpo') ({base.preset_source}) with "
            + ", ".join(f"{k}={v}" for k, v in layout.items() if getattr(base, k) != v)
            + f" ({iterations} iterations of {per_iter:,} env steps); {seeds} seeds (vmapped)"
        )
        for mode in MODES:
            common.log(
                f"{task}: obs_norm={mode}, {layout['num_timesteps']:,} steps x {seeds} seeds"
            )
            t0 = time.perf_counter()
            res = train(task, base, num_seeds=seeds, progress=False, obs_norm=mode, **layout)
            steps, curve = common.eval_curve(res.history, seeds)
            stats = jax.device_get(res.state.obs_stats)  # leading seed axis
            count = np.maximum(np.asarray(stats.count), 1.0)[:, None]
            std = np.sqrt(np.asarray(stats.m2) / count)  # (seeds, obs_dim)
            runs.append(dict(
                task=task, mode=mode, steps=np.asarray(steps).tolist(),
                curve=np.asarray(curve).tolist(), std=std.tolist(),
                wall=time.perf_counter() - t0,
            ))  # fmt: skip
            common.log(f"  final {common.fmt_pm(curve[-1])} ({runs[-1]['wall']:.0f} s)")
    c = res.config
    eval_note = (
        f"{c.num_eval_envs} episodes of up to {c.episode_length} steps per seed and evaluation"
    )
    return dict(budget=budget, tasks=list(tasks), seeds=seeds, details=details,
                eval_note=eval_note, runs=runs, provenance=common.provenance())  # fmt: skip


def report(record: dict) -> None:
    """The table and the figure from :func:`run`'s record."""
    tasks, seeds = record["tasks"], record["seeds"]
    results = {
        (r["task"], r["mode"]): dict(r, curve=np.asarray(r["curve"]), std=np.asarray(r["std"]))
        for r in record["runs"]
    }
    rows = []
    for task in tasks:
        for mode in MODES:
            r = results[(task, mode)]
            final, best = common.final_and_best(r["curve"])
            last3 = r["curve"][-3:].mean(axis=0)
            ratio = r["std"] / results[(task, "welford")]["std"]  # same seeds, same obs dims
            rows.append(
                [f"`{task}`", MODE_LABEL[mode], common.fmt_pm(r["curve"][0]),
                 common.fmt_pm(final), common.fmt_pm(last3), common.fmt_pm(best),
                 ", ".join(f"{v:.0f}" for v in final),
                 f"{np.median(ratio):.2f}", f"{r['wall']:.0f}"]
            )  # fmt: skip

    plt = common.pyplot()
    fig, axes = plt.subplots(1, len(tasks), figsize=(6.5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for j, mode in enumerate(MODES):
            r = results[(task, mode)]
            common.plot_curves(ax, np.asarray(r["steps"]), r["curve"], MODE_LABEL[mode], f"C{j}")
        common.label_return_axes(
            ax, f"{task}: FPO, obs_norm (mean ± s.e., {seeds} seeds)", legend_size=8
        )
    common.save_figure(fig, "obs_norm.png")

    md = [
        common.results_header(
            "Observation normalisation: ours (Welford) vs the FPO authors' (reference)",
            record["budget"],
            record["details"],
            data=[record["provenance"]],
        ),
        'FPO with `obs_norm="welford"` (ours, exact running statistics, updated after the '
        'epochs) and `obs_norm="reference"` (the authors\' code: the variance sum keeps only '
        "the newest batch, updated before the epochs, no clipping), everything else equal, same "
        "seeds. Eval return: the trainer's evaluation (random initial noise, 10 Euler steps, "
        f"{record['eval_note']}). Final = last "
        "evaluation, last 3 = mean of the last three evaluations, best = best after training "
        "started; mean ± standard error over seeds. 'std ratio' = median over observation "
        "dimensions and seeds of the final statistics' std, reference / welford: below 1 the "
        "reference statistics under-estimate the spread, i.e. the network sees inputs that "
        "many times larger than unit scale.\n",
        common.markdown_table(
            [
                "task",
                "obs_norm",
                "before training",
                "final",
                "last 3 evals",
                "best",
                "final per seed",
                "std ratio",
                "wall s",
            ],
            rows,
            "llrrrrrrr",
        ),  # fmt: skip
        "\n![learning curves](obs_norm.png)\n",
    ]
    common.write_result("obs_norm.md", "\n".join(md))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--budget", choices=sorted(BUDGETS), default="default")
    p.add_argument("--report", action="store_true", help="only rebuild from the stored JSON")
    args = common.parse_args(p, argv, "gridworld at tiny sizes", smoke_budget="smoke")
    path = common.out_dir() / "obs_norm.json"
    if not args.report:
        common.write_file(path, json.dumps(run(args.budget), indent=1))
    report(json.loads(path.read_text()))


if __name__ == "__main__":
    main()
