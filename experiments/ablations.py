"""FPO ablations: N pairs, clip epsilon, CFM weighting, ratio form, trust region.

Each row changes ONE setting of the paper's FPO configuration (N = 8, clip 0.05, eps-MSE
weighting, mean ratio, PPO clipping):

* N (``num_pairs``) in {1, 4, 8};
* clip epsilon in {0.05, 0.1, 0.2};
* ``cfm_weighting`` eps (eps-MSE, paper default) vs velocity (u-MSE);
* ``ratio`` mean (FPO) vs per_sample (FPO++);
* ``trust_region`` ppo vs aspo (FPO++).

Programs (see :func:`programs`): variants that change one *sweepable* setting
(``fpo_jax.config.sweepable_names``: clip epsilon, learning rate, the clamps, ...) train as ONE sweep
per setting, ``train(..., sweep=("clip_epsilon=0.05,0.1,0.2",), num_seeds=S)``: the clip
values x the seeds in one compiled program, the paper setting being its clip-0.05 member (a
sweep member reproduces the single run of its setting and seed; tests/test_sweep.py). Variants
of a *static* setting run as separate programs, one per variant, with its seeds vmapped: N
pairs (``num_pairs`` sets array shapes), u-MSE vs eps-MSE (``cfm_weighting``), the ratio form
(``ratio``) and the trust region (``trust_region``) choose the program's code, so no traced
value can switch them. Here: 6 programs per task (the clip sweep and 5 static variants)
instead of 8. A new variant of a sweepable setting (e.g. ``dict(learning_rate=1e-3)``) joins
that setting's sweep by itself.

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
    python experiments/ablations.py --smoke            # clip sweep and N = 1, budget smoke, to /tmp
    python experiments/ablations.py --report           # rebuild from the stored JSON

Writes ``experiments/results/ablations.json`` (each variant's curve, clip fraction and final
episode length, the programs' wall times, the provenance), and from it ``ablations.md`` and
``ablations.png``.
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
import jax  # noqa: E402
import numpy as np  # noqa: E402

from fpo_jax.config import TrainConfig, replace, sweepable_names  # noqa: E402
from fpo_jax.presets import preset  # noqa: E402
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
# --smoke: one sweep (the paper setting and the clips) and one static variant.
SMOKE_VARIANTS = (VARIANTS[0][1], "clip 0.1", "clip 0.2", "N = 1")
# budget -> (factor on TASKS' num_timesteps, seeds)
BUDGETS = {"small": (1.0, 2), "full": (4.0, 5), "smoke": (0.1, 2)}


def programs(variants, config: TrainConfig) -> list[tuple[str, list[str], dict[str, Any], tuple]]:
    """The variants as programs: ``(name, labels, changes, sweep)``, one ``train()`` each.

    A variant changing one sweepable field joins that field's sweep (``sweep`` = its values,
    one label per value, in order); the unchanged paper setting joins the first sweep with
    ``config``'s value of that field. Every other variant is a program of its own (``changes``).
    """
    sweeps: dict[str, list[tuple[str, float]]] = {}
    singles: list[tuple[str, dict[str, Any]]] = []
    paper = None
    for _, label, change in variants:
        if not change:
            paper = label
        elif len(change) == 1 and next(iter(change)) in sweepable_names(config.algo):
            [(name, value)] = change.items()
            sweeps.setdefault(name, []).append((label, value))
        else:
            singles.append((label, change))
    if paper is not None and sweeps:
        name = next(iter(sweeps))
        sweeps[name].insert(0, (paper, getattr(config, name)))
    elif paper is not None:
        singles.insert(0, (paper, {}))
    out = [
        (f"{name} sweep ({', '.join(f'{v:g}' for _, v in members)})", [lb for lb, _ in members],
         {}, (f"{name}={','.join(str(v) for _, v in members)}",))
        for name, members in sweeps.items()
    ]  # fmt: skip
    return out + [(label, [label], change, ()) for label, change in singles]


def member_values(record: dict[str, Any], name: str, k: int) -> np.ndarray:
    """Each of the ``k`` members' value of metric ``name`` in a history record, shape (k,)."""
    per = record.get(f"per_member/{name}")
    return np.asarray(per if per is not None else [record.get(name, np.nan)] * k, np.float64)


def final_episode_lengths(res: Any, variants: int) -> np.ndarray:
    """Each variant's final mean episode length (over its seeds' episodes), shape (variants,).

    A program of one variant: train()'s final evaluation (mean over the seeds). A sweep's
    variants: train() keeps each member's eval return but only the mean over members of the
    other eval metrics, so without per-member lengths in the history the members' final
    policies are evaluated afresh (``trainer.evaluate``: as many episodes, other ones).
    """
    last = [r for r in res.history if r.get("eval/episode_length") is not None][-1]
    if variants == 1:
        return np.array([last["eval/episode_length"]])
    per = last.get("per_member/eval/episode_length")
    if per is None:
        k = res.config.num_members
        keys = jax.random.split(jax.random.PRNGKey(res.config.seed), k)
        per = jax.jit(jax.vmap(res.trainer.evaluate))(res.state, keys)["eval/episode_length"]
    return np.asarray(per, dtype=np.float64).reshape(variants, -1).mean(axis=1)


def run(args: argparse.Namespace, variants: list) -> dict:
    """Train every program of every task; the compact record the report reads
    (``ablations.json``: each variant's curve, clip fraction and final episode length, each
    program's wall time, the provenance)."""
    common.enable_compilation_cache()
    factor, seeds = BUDGETS[args.budget]
    seeds = args.seeds or seeds
    details, results, walls = [], [], []
    for task in args.tasks:
        base = preset(task, "fpo")
        ov = dict(TASKS[task], **PAPER_FPO)
        ov["num_timesteps"] = int(ov["num_timesteps"] * factor)
        plan = programs(variants, replace(base, **ov))
        details.append(
            f"`{task}`: preset({task!r}, 'fpo') ({base.preset_source}) with "
            + ", ".join(f"{k}={v}" for k, v in ov.items() if getattr(base, k) != v)
            + f"; {seeds} seeds; {len(plan)} programs: "
            + "; ".join(f"{name} ({len(labels) * seeds} members)" for name, labels, _, _ in plan)
        )
        for name, labels, change, sweep in plan:
            common.log(f"{task}: {name}")
            t0 = time.perf_counter()
            res = train(
                task, base, num_seeds=seeds, sweep=sweep, progress=False, **{**ov, **change}
            )
            walls.append(dict(task=task, program=name, seconds=time.perf_counter() - t0))
            k = res.config.num_members
            steps, curve = common.eval_curve(res.history, k)
            lengths = (final_episode_lengths(res, len(labels)) if task == "gridworld"
                       else np.full(len(labels), np.nan))  # fmt: skip
            clip = np.array([member_values(r, "clip_fraction", k) for r in res.history[1:]])
            for j, label in enumerate(labels):  # members: the sweep's values (outer) x seeds
                seeds_of = slice(j * seeds, (j + 1) * seeds)
                results.append(dict(
                    task=task, label=label, steps=np.asarray(steps).tolist(),
                    curve=np.asarray(curve[:, seeds_of]).tolist(), length=float(lengths[j]),
                    clip_fraction=float(np.nanmean(clip[:, seeds_of])),
                ))  # fmt: skip
                common.log(f"  {label}: final {common.fmt_pm(curve[-1, seeds_of])}")
            common.log(f"  ({walls[-1]['seconds']:.0f} s)")
    return dict(
        budget=args.budget, tasks=list(args.tasks), seeds=seeds, details=details,
        variants=[[group, label] for group, label, _ in variants], results=results,
        walls=walls, provenance=common.provenance(),
    )  # fmt: skip


def report(record: dict) -> None:
    """The table and the figure from :func:`run`'s record."""
    tasks, seeds = record["tasks"], record["seeds"]
    results = {(r["task"], r["label"]): dict(r, curve=np.asarray(r["curve"], np.float64))
               for r in record["results"]}  # fmt: skip
    headers = ["ablation", "variant"]
    for task in tasks:
        headers += [f"`{task}` final", f"`{task}` best", f"`{task}` clip fraction"]
        if task == "gridworld":
            headers.append("`gridworld` final episode length")
    rows = []
    for group, label in record["variants"]:
        row = [group, label]
        for task in tasks:
            final, best = common.final_and_best(results[(task, label)]["curve"])
            row += [
                common.fmt_pm(final, 2),
                common.fmt_pm(best, 2),
                f"{results[(task, label)]['clip_fraction']:.3f}",
            ]
            if task == "gridworld":
                row.append(f"{results[(task, label)]['length']:.1f}")
        rows.append(row)
    walls = record["walls"]
    wall_text = "; ".join(
        f"`{t}`: "
        + ", ".join(f"{w['program']} {w['seconds']:.0f} s" for w in walls if w["task"] == t)
        + f" (total {sum(w['seconds'] for w in walls if w['task'] == t):.0f} s)"
        for t in tasks
    )

    plt = common.pyplot()
    fig, axes = plt.subplots(1, len(tasks), figsize=(6.5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for j, (_, label) in enumerate(record["variants"]):
            r = results[(task, label)]
            common.plot_curves(ax, np.asarray(r["steps"]), r["curve"], label, f"C{j}")
        common.label_return_axes(ax, task)
    common.save_figure(fig, "ablations.png")

    md = [
        common.results_header(
            "FPO ablations", record["budget"], record["details"], data=[record["provenance"]]
        ),
        "Each row changes one setting of the paper's FPO configuration (first row). Final = "
        "last evaluation, best = best evaluation after training started; mean ± standard error "
        f"over {seeds} seeds. Clip fraction: share of ratios outside [1 - eps, 1 + eps], mean "
        "over the training iterations and seeds. Evaluation: the trainer's default sampler "
        "(random initial noise, "
        "10 Euler steps). Variants of a sweepable setting (clip) are members of one sweep "
        "program, the paper setting being its clip-0.05 member; the others are one program "
        "each. GridWorld final episode length: mean over the seeds at the final evaluation (for "
        "a sweep's variants, a fresh evaluation of the final policies, as train() records only "
        "the return per member).\n",
        common.markdown_table(headers, rows, "ll" + "r" * (len(headers) - 2)),
        f"\nWall time per program (compilation included; a sweep trains its variants "
        f"together): {wall_text}.\n",
        "\n![ablation curves](ablations.png)\n",
        "\nPaper (DM Control average, 60M steps): N=8 759.3, N=4 731.2, N=1 691.6; u-MSE 664.6; "
        "clip 0.1 623.3, clip 0.2 526.4.\n",
    ]
    common.write_result("ablations.md", "\n".join(md))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--budget", choices=sorted(BUDGETS), default="small")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--seeds", type=int, default=None)
    p.add_argument("--report", action="store_true", help="only rebuild from the stored JSON")
    args = common.parse_args(
        p, argv, "--budget smoke, only the clip sweep (3 variants) and N = 1", smoke_budget="smoke"
    )
    variants = [v for v in VARIANTS if v[1] in SMOKE_VARIANTS] if args.smoke else VARIANTS
    path = common.out_dir() / "ablations.json"
    if not args.report:
        common.write_file(path, json.dumps(run(args, variants), indent=1))
    report(json.loads(path.read_text()))


if __name__ == "__main__":
    main()
