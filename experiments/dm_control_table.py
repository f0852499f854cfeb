"""The FPO paper's Table 1: FPO vs tuned Gaussian PPO vs DPPO on ten DM Control tasks.

Each (task, algorithm) pair is trained with ``preset(task, algo)`` (the paper's hyperparameters:
2048 envs, unroll 30, 1024 x 32 minibatches, 16 epochs, lr 3e-4, N = 8, discount 0.995 (0.95 for
BallInCup and FingerSpin), reward scale 10; clip 0.05 FPO / 0.1 PPO / 0.2 DPPO), all seeds of a
pair in one vmapped program (``num_seeds``). The table reports the final evaluation return
(1000-step episodes) as mean ± standard error over seeds per task, then the average over tasks
(mean ± standard error across tasks, as in the paper), next to the paper's numbers.

Budgets (``--budget``):

* ``full``: the paper: 10 tasks, 60M env steps, 5 seeds, 128 eval episodes, 10 evaluations.
* ``gpu-short``: paper layout and hyperparameters, 10M steps, 2 seeds (a one-GPU check).
* ``cpu-small``: 3 cheap tasks, 2 seeds, and a small layout (64 envs, 64 x 8 minibatches,
  4 epochs: 15,360 steps and 32 updates per iteration instead of 983,040 and 512), 92,160 steps
  (6 iterations), 16 eval episodes, 2 evaluations after the initial one; everything else
  (networks, lr, clip, N, discounts, reward scale, unroll 30, 1000-step episodes) at the paper's
  values. One run costs ~3-4 min here, ~2 of them compilation. Not comparable to 60M steps.
* ``smoke``: 1 task, tiny layout, 1 seed: checks the pipeline in a few minutes. ``--smoke`` runs
  it for FPO only (unless ``--algos`` is given) and writes to a folder under /tmp.

``--tasks``, ``--algos``, ``--seeds``, ``--steps`` override the budget. Results are saved after
every run to ``<out-dir>/dm_control_<tag>.json`` (``--append`` merges into an existing file),
and the table / figure are rebuilt from it (``--summarize-only`` just rebuilds them). With
``--run-root DIR`` each run also streams ``metrics.jsonl`` to ``DIR/<task>_<algo>/``, and runs cut
short (e.g. by ``timeout``) are summarised from there, marked as partial.

Run from the repository root::

    python experiments/dm_control_table.py --budget cpu-small     # ~30 min on 2 CPU cores
    python experiments/dm_control_table.py --budget full          # the paper's protocol (GPU)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (also puts the repository on sys.path)
import numpy as np  # noqa: E402

from fpo_jax.presets import PAPER_DM_CONTROL_TASKS, preset  # noqa: E402
from fpo_jax.train import train  # noqa: E402

ALGOS = ("fpo", "ppo", "dppo")
ALGO_LABEL = {
    "fpo": "FPO (N=8, clip 0.05)",
    "ppo": "Gaussian PPO (tuned)",
    "dppo": "DPPO (clip 0.2, sigma 0.05)",
}
# The FPO paper, Table 1: average over the 10 tasks, 60M steps, 5 seeds (mean ± standard error across tasks).
PAPER_AVERAGE = {"fpo": (759.3, 45.3), "ppo": (667.8, 66.0), "dppo": (652.5, 83.7)}
# The FPO authors' notebook, CheetahRun at 60M steps (single numbers).
PAPER_TASK = {("CheetahRun", "fpo"): 877.8, ("CheetahRun", "ppo"): 560.7}

BUDGETS: dict[str, dict[str, Any]] = {
    "full": dict(tasks=PAPER_DM_CONTROL_TASKS, seeds=5, overrides={}),
    "gpu-short": dict(
        tasks=("CartpoleBalance", "CheetahRun"),
        seeds=2,
        overrides=dict(num_timesteps=10_000_000, num_evals=5),
    ),
    "cpu-small": dict(
        tasks=("CartpoleBalance", "PointMass", "ReacherEasy"),
        seeds=2,
        overrides=dict(
            num_timesteps=92_160,  # 6 iterations of 15,360 steps
            num_envs=64,
            batch_size=64,
            num_minibatches=8,
            num_epochs=4,
            num_evals=2,
            num_eval_envs=16,
        ),
    ),
    "smoke": dict(
        tasks=("CartpoleBalance",),
        seeds=1,
        overrides=dict(
            num_timesteps=3_840, num_envs=16, batch_size=16, num_minibatches=4, num_epochs=1,
            unroll_length=30, num_evals=1, num_eval_envs=4, episode_length=200,
        ),
    ),
}  # fmt: skip


def run_config(task: str, algo: str, budget: dict[str, Any], args: argparse.Namespace):
    overrides = dict(budget["overrides"])
    if args.steps is not None:
        overrides["num_timesteps"] = args.steps
    return preset(task, algo), overrides


def record_from_history(history: list[dict[str, Any]], seeds: int) -> dict[str, Any]:
    steps, returns = common.eval_curve(history, seeds)
    sps = [r["env_steps_per_second"] for r in history if r.get("env_steps_per_second")]
    return {
        "steps": steps.tolist(),
        "returns": returns.tolist(),
        "env_steps": int(history[-1]["env_steps"]) if history else 0,
        "env_steps_per_second": float(np.median(sps)) if sps else None,
        "train_wall_s": float(history[-1].get("wall_time", 0.0)) if history else 0.0,
    }


def load_partial(run_dir: Path, seeds: int) -> dict[str, Any] | None:
    """A run cut short: its streamed metrics.jsonl, or None."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return None
    history = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not history:
        return None
    rec = record_from_history(history, seeds)
    rec["partial"] = True
    return rec


# ----------------------------------------------------------------------------------------------
# Table and figure


def summarize(data: dict[str, Any], tag: str, header: str) -> None:
    runs = data["runs"]
    tasks = [t for t in data["tasks"] if any(f"{t}/{a}" in runs for a in data["algos"])]
    algos = [a for a in ALGOS if a in data["algos"]]
    rows, per_algo_means = [], {a: [] for a in algos}
    for task in tasks:
        row = [task]
        for algo in algos:
            rec = runs.get(f"{task}/{algo}")
            if rec is None or not rec["returns"]:
                row.append("not run")
                continue
            final = np.asarray(rec["returns"][-1])
            m, _ = common.mean_stderr(final)
            per_algo_means[algo].append(m)
            cell = common.fmt_pm(final)
            if rec.get("partial"):
                cell += f" (partial: {rec['steps'][-1]:,} steps)"
            if (task, algo) in PAPER_TASK:
                cell += f" [paper {PAPER_TASK[(task, algo)]}]"
            row.append(cell)
        rows.append(row)
    avg = [f"**average over {len(tasks)} tasks**"]
    for algo in algos:
        vals = per_algo_means[algo]
        complete = len(vals) == len(tasks)
        avg.append(f"**{common.fmt_pm(vals)}**" + ("" if complete else f" ({len(vals)} tasks)"))
    paper = ["paper, 10 tasks, 60M steps, 5 seeds"] + [
        f"{PAPER_AVERAGE[a][0]} ± {PAPER_AVERAGE[a][1]}" for a in algos
    ]
    table = common.markdown_table(
        ["task", *(ALGO_LABEL[a] for a in algos)], rows + [avg, paper], "l" + "r" * len(algos)
    )

    detail_rows = []
    for task in tasks:
        for algo in algos:
            rec = runs.get(f"{task}/{algo}")
            if rec is None:
                continue
            final, best = common.final_and_best(np.asarray(rec["returns"]))
            sps = rec.get("env_steps_per_second")
            detail_rows.append(
                [task, algo, f"{rec['env_steps']:,}", len(final), common.fmt_pm(best),
                 "-" if sps is None else f"{sps:,.0f}",
                 f"{rec.get('compile_s', float('nan')):.0f}",
                 f"{rec.get('total_wall_s', rec.get('train_wall_s', 0.0)):.0f}"]
            )  # fmt: skip
    details = common.markdown_table(
        ["task", "algo", "env steps", "seeds", "best eval return", "env steps/s (all seeds)",
         "compile s", "wall s"],
        detail_rows,
        "llrrrrrr",
    )  # fmt: skip

    plt = common.pyplot()
    ncols = min(len(tasks), 5)
    nrows = -(-len(tasks) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3.2 * nrows), squeeze=False)
    for ax, task in zip(axes.flat, tasks, strict=False):
        for j, algo in enumerate(algos):
            rec = runs.get(f"{task}/{algo}")
            if rec and rec["returns"]:
                common.plot_curves(
                    ax, np.asarray(rec["steps"]), np.asarray(rec["returns"]), algo, f"C{j}"
                )
        common.label_return_axes(ax, task)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    fig.suptitle(f"DM Control, budget {tag}: mean ± s.e. over seeds")
    png = f"dm_control_{tag}.png"
    common.save_figure(fig, png)

    text = "\n".join(
        [
            header,
            data.get("note", ""),
            "\n## Final evaluation return (mean ± standard error over seeds)\n",
            "Layout of the paper's Table 1. The average row is the mean over tasks of the per-task "
            "means ± the standard error across tasks (the paper's convention). Paper numbers: "
            "the FPO paper's Table 1 (McAllister et al., arXiv 2507.21053; 60M steps, 5 seeds); "
            "per-task paper numbers are only known for CheetahRun (authors' notebook).\n",
            table,
            "\n## Runs\n",
            "Best = best evaluation after training started (mean ± s.e. over seeds); env steps/s "
            "is the median over training calls, counting all seeds; wall s includes compilation "
            "and evaluation.\n",
            details,
            f"\n![learning curves]({png})\n",
            data.get("wall_line", ""),
        ]
    )
    common.write_result(f"dm_control_{tag}.md", text)


# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--budget", choices=sorted(BUDGETS), default="cpu-small")
    p.add_argument("--tasks", nargs="+", default=None, help="default: the budget's tasks")
    p.add_argument(
        "--algos", nargs="+", default=None, choices=ALGOS, help="default: all (fpo with --smoke)"
    )
    p.add_argument("--seeds", type=int, default=None, help="default: the budget's seeds")
    p.add_argument("--steps", type=int, default=None, help="num_timesteps (default: budget's)")
    p.add_argument("--tag", default=None, help="output name suffix (default: the budget)")
    p.add_argument("--run-root", default=None, help="stream each run's metrics.jsonl here")
    p.add_argument("--append", action="store_true", help="merge into an existing results JSON")
    p.add_argument("--summarize-only", action="store_true")
    args = common.parse_args(p, argv, "--budget smoke, FPO only unless --algos", "smoke")
    args.algos = args.algos or (["fpo"] if args.smoke else list(ALGOS))

    clock = common.Stopwatch()
    common.enable_compilation_cache()
    budget = BUDGETS[args.budget]
    tag = args.tag or args.budget
    seeds = args.seeds or budget["seeds"]
    tasks = list(args.tasks or budget["tasks"])
    common.out_dir().mkdir(parents=True, exist_ok=True)
    json_path = common.out_dir() / f"dm_control_{tag}.json"
    data: dict[str, Any] = {"tasks": [], "algos": [], "runs": {}}
    if (args.append or args.summarize_only) and json_path.exists():
        data = json.loads(json_path.read_text())
    for t in tasks:
        if t not in data["tasks"]:
            data["tasks"].append(t)
    for a in args.algos:
        if a not in data["algos"]:
            data["algos"].append(a)

    example = preset(tasks[0], "fpo")
    overrides = dict(budget["overrides"])
    if args.steps is not None:
        overrides["num_timesteps"] = args.steps
    changed = ", ".join(
        f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in overrides.items()
    )
    details = [
        f"tasks: {', '.join(tasks)}; algorithms: {', '.join(args.algos)}; {seeds} "
        f"{'seed' if seeds == 1 else 'seeds'} per (task, algorithm) as one vmapped program "
        f"(num_seeds={seeds})",
        "hyperparameters: preset(task, algo) = the paper's"
        + (f", except (scaled for this budget): {changed}" if changed else " (unchanged)"),
        f"paper layout for comparison: num_envs {example.num_envs}, batch_size "
        f"{example.batch_size} x {example.num_minibatches} minibatches, {example.num_epochs} "
        f"epochs, unroll {example.unroll_length}, {example.num_timesteps:,} steps, 5 seeds, "
        f"{example.num_eval_envs} eval episodes",
    ]
    if args.budget != "full":
        details.append(
            "**small budget: these numbers are NOT comparable to the paper's 60M-step results**"
        )
    header = common.results_header(
        f"DM Control (paper Table 1 layout), budget {args.budget}", args.budget, details
    )

    run_root = Path(args.run_root) if args.run_root else None
    if not args.summarize_only:
        for task in tasks:
            for algo in args.algos:
                cfg, ov = run_config(task, algo, budget, args)
                run_dir = run_root / f"{task}_{algo}" if run_root else None
                common.log(f"{algo} on {task}: {seeds} seed(s), {ov or 'paper settings'}")
                t0 = time.perf_counter()
                res = train(
                    task, cfg, num_seeds=seeds, progress=False, checkpoint=False,
                    run_dir=str(run_dir) if run_dir else None, **ov,
                )  # fmt: skip
                rec = record_from_history(res.history, seeds)
                rec["compile_s"] = res.compile_seconds
                rec["total_wall_s"] = time.perf_counter() - t0
                data["runs"][f"{task}/{algo}"] = rec
                common.log(
                    f"  final eval return {common.fmt_pm(rec['returns'][-1])} "
                    f"({rec['total_wall_s']:.0f} s, compile {res.compile_seconds:.0f} s)"
                )
                json_path.write_text(json.dumps(data))
        data["wall_line"] = clock.line()
    if run_root is not None:  # runs cut short by a timeout: summarise what they streamed
        for task in data["tasks"]:
            for algo in data["algos"]:
                if f"{task}/{algo}" not in data["runs"]:
                    rec = load_partial(run_root / f"{task}_{algo}", seeds)
                    if rec is not None:
                        data["runs"][f"{task}/{algo}"] = rec
    json_path.write_text(json.dumps(data))
    summarize(data, tag, header)


if __name__ == "__main__":
    main()
