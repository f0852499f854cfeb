"""An FPO setting that learns fast on a CPU budget, searched with sweeps.

The paper's FPO settings (``preset(task, "fpo")``) aim at 60M env steps on a GPU. This script
searches, on a CPU budget, the settings the library has, and compares the result with the paper
settings and with our Gaussian PPO:

1. ``grid``: on each task, one program per task trains lr x clip x seeds as ONE sweep at the
   cheap layout ``FAST_LAYOUT`` (4 epochs, 8 minibatches: a quarter of the paper layout's
   gradient work per env step, and 4x as many policy iterations per env step).
2. ``noise``: at the grid's best lr and clip, the flow's source noise 0.1 and 0.3 (one sweep per
   task; the grid's own member is the paper's 1): the ant fix (``flow_noise_scale``). The
   fast setting is the grid's best point with the best noise (sums of final returns over tasks).
3. ``baselines``: each task with the paper settings at the CPU-sized paper layout
   ``PAPER_LAYOUT`` (256 envs, 128 x 32 minibatches, 16 epochs: the issue's probe layout) and
   our Gaussian PPO (its DM Control preset, the paper's tuned PPO) at the fast layout (and, on
   the first task, at the paper layout too).
4. ``time``: the fast setting on the first task for longer; with 3. it gives the steps and wall
   time to an eval return of ``THRESHOLD`` (those runs stop once every seed got there).
5. ``variants``: on the first task, static settings changed from the fast setting (a program
   each, 3 seeds): FPO++ (per-sample ratio + ASPO), N = 4 pairs, 5 flow steps, the
   zero-noise evaluation sampler (same training, so only the evaluation differs), and the
   paper layout (16 epochs of 32 minibatches) with the fast setting's lr, clip and noise.

Every program's evaluation curve is stored as JSON under ``experiments/results/fast_preset/``
(a stage skips programs already there, so a stopped search resumes); ``report`` (run after
each stage) writes ``fast_preset.md`` and ``fast_preset.png`` from whatever is there.

    python experiments/fast_preset.py                 # every stage, ~75 min on 2 quiet cores
    python experiments/fast_preset.py --stage grid    # one stage (then: --stage report)
    python experiments/fast_preset.py --smoke         # gridworld, tiny, ~3 min, to /tmp
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

from fpo_jax.presets import preset  # noqa: E402
from fpo_jax.train import train  # noqa: E402

TASKS = ("CartpoleBalance", "CartpoleSwingup")
THRESHOLD = 900.0  # eval return "solved" for the time-to-return table (first task)
SEEDS = 3
# The probe layout: the paper's (2048 envs, 1024 x 32, 16 epochs) scaled to 256 envs.
PAPER_LAYOUT = dict(num_envs=256, batch_size=128, num_minibatches=32, unroll_length=30,
                    num_epochs=16)  # fmt: skip
# 30,720 env steps and 32 gradient steps per iteration (the paper layout: 122,880 and 512).
FAST_LAYOUT = dict(num_envs=256, batch_size=128, num_minibatches=8, unroll_length=30,
                   num_epochs=4)  # fmt: skip
# A first grid with learning rate 3e-3 too diverged at 0.74M steps on CartpoleBalance (and
# stopped: train() then stopped at the first non-finite member).
GRID = {"learning_rate": (3e-4, 1e-3), "clip_epsilon": (0.05, 0.1, 0.2)}
# Then, at the grid's best lr and clip: the flow's source noise (sweepable; the grid's own
# member is noise 1, the paper's). Ant learns only with a smaller one
# (experiments/README.md, "Ant at 2M steps").
NOISE_GRID = (0.1, 0.3)
STATIC_VARIANTS = {  # in order of interest: a stopped search has the first ones
    "zero-noise evaluation": dict(eval_noise="zero"),
    "FPO++ (per-sample ratio, ASPO)": dict(ratio="per_sample", trust_region="aspo"),
    "N = 4": dict(num_pairs=4),
    "5 flow steps": dict(flow_steps=5, eval_flow_steps=5),
    "paper layout": PAPER_LAYOUT,
}
SEARCH_STEPS = 1_000_000
TIME_STEPS = 2_000_000
EVAL = dict(num_eval_envs=32, checkpoint=False, progress=False)

SMOKE = dict(
    tasks=("gridworld",),
    threshold=0.5,
    layout=dict(
        num_envs=16,
        batch_size=16,
        num_minibatches=2,
        unroll_length=8,
        num_epochs=2,
        policy_hidden=(16, 16),
        value_hidden=(32, 32),
    ),  # fmt: skip
    steps=2_048,
)


def store() -> Path:
    return common.out_dir() / "fast_preset"


def run_program(
    name: str, task: str, algo: str, config_changes: dict[str, Any], sweep: tuple[str, ...],
    num_timesteps: int, num_evals: int, stop_when_solved: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Train one program (a sweep or a single setting, ``SEEDS`` seeds) unless its JSON exists.

    ``stop_when_solved``: stop once every seed has evaluated at >= THRESHOLD (and the search
    budget is done), since the time-to-return table needs nothing after that.

    Returns ``{name, task, algo, changes, members, steps (E,), wall (E,), returns (E, K),
    compile_seconds, seconds}`` with K = members (sweep values x seeds, in members.json order).
    """
    path = store() / f"{task}__{name}.json".replace(" ", "_").replace("/", "-")
    if path.exists():
        return json.loads(path.read_text())
    common.log(f"{task}: {name} ({algo}, {sweep or 'no sweep'})")
    reached = np.zeros(SEEDS, bool)

    def stop_when_all_reached(record: dict[str, Any], state: Any) -> bool | None:
        returns = record.get("per_member/eval/episode_return")
        if returns is not None:
            reached[:] |= np.asarray(returns) >= THRESHOLD
        return False if reached.all() and record["env_steps"] >= SEARCH_STEPS else None

    t0 = time.perf_counter()
    res = train(task, preset(task, algo), num_seeds=SEEDS, sweep=sweep,
                num_timesteps=num_timesteps, num_evals=num_evals, **EVAL,
                progress_fn=stop_when_all_reached if stop_when_solved else None,
                **config_changes)  # fmt: skip
    seconds = time.perf_counter() - t0
    k = res.config.num_members
    evals = [r for r in res.history if r.get("eval/episode_return") is not None]
    out = dict(
        name=name, task=task, algo=algo, changes=config_changes, members=res.members,
        steps=[int(r["env_steps"]) for r in evals],
        wall=[float(r["wall_time"]) for r in evals],
        returns=np.asarray([r["per_member/eval/episode_return"] for r in evals], np.float64)
        .reshape(len(evals), k).tolist(),
        compile_seconds=res.compile_seconds, seconds=seconds, stopped_early=res.stopped_early,
        diverged_members=res.history[-1].get("diverged_members", []),
    )  # fmt: skip
    common.write_file(path, json.dumps(out, indent=1))
    common.log(f"  {seconds:.0f} s; final " + ", ".join(f"{x:.0f}" for x in out["returns"][-1]))
    return out


def grid_sweep() -> tuple[str, ...]:
    return tuple(f"{n}={','.join(str(v) for v in vals)}" for n, vals in GRID.items())


def split_members(prog: dict[str, Any]) -> dict[tuple, np.ndarray]:
    """A program's curves per setting: {(swept values...): returns (E, seeds)}."""
    returns = np.asarray(prog["returns"])
    out: dict[tuple, list[int]] = {}
    for i, m in enumerate(prog["members"]):
        out.setdefault(tuple(m.get(n) for n in GRID if n in m), []).append(i)
    return {key: returns[:, idx] for key, idx in out.items()}


def final_mean(curve: np.ndarray) -> float:
    """Mean final return over seeds; a diverged seed (NaN) counts as -inf."""
    return float(np.mean(np.nan_to_num(curve[-1], nan=-np.inf)))


def best_grid_point(grids: dict[str, dict[str, Any]]) -> tuple[float, float]:
    """(lr, clip) with the highest final return summed over tasks (mean over seeds each)."""
    score: dict[tuple, float] = {}
    for prog in grids.values():
        for key, curve in split_members(prog).items():
            score[key] = score.get(key, 0.0) + final_mean(curve)
    return max(score, key=score.get)  # type: ignore[arg-type]


def noise_scores(grids: dict[str, Any], noise: dict[str, Any]) -> dict[float, float]:
    """Source noise -> final return summed over tasks, at the grid's best (lr, clip); noise 1
    is that grid point itself."""
    best = best_grid_point(grids)
    scores = {1.0: sum(final_mean(split_members(g)[best]) for g in grids.values())}
    for prog in noise.values():
        returns = np.asarray(prog["returns"])
        for value in NOISE_GRID:
            idx = [i for i, m in enumerate(prog["members"]) if m["flow_noise_scale"] == value]
            scores[value] = scores.get(value, 0.0) + final_mean(returns[:, idx])
    return scores


def first_reach(steps: list[int], wall: list[float], curve: np.ndarray, threshold: float):
    """Per seed: (env steps, wall seconds) of the first evaluation >= threshold, or None."""
    out = []
    for s in range(curve.shape[1]):
        hit = np.flatnonzero(curve[:, s] >= threshold)
        out.append((steps[hit[0]], wall[hit[0]]) if hit.size else None)
    return out


def main(argv: list[str] | None = None) -> None:
    global TASKS, THRESHOLD, PAPER_LAYOUT, FAST_LAYOUT, SEARCH_STEPS, TIME_STEPS
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--stage", default="all",
                   choices=["all", "grid", "noise", "baselines", "time", "variants",
                            "report"])  # fmt: skip
    args = common.parse_args(p, argv, "gridworld, tiny layout, 2k steps")
    if args.smoke:
        TASKS, THRESHOLD = SMOKE["tasks"], SMOKE["threshold"]
        PAPER_LAYOUT = FAST_LAYOUT = SMOKE["layout"]
        SEARCH_STEPS = TIME_STEPS = SMOKE["steps"]
    common.enable_compilation_cache()
    stages = ["grid", "noise", "baselines", "time", "variants"]
    stages = stages if args.stage == "all" else [args.stage]
    search_evals, time_evals = (4, 2) if args.smoke else (8, 32)

    def grids() -> dict[str, dict[str, Any]]:
        return {task: run_program("grid", task, "fpo", FAST_LAYOUT, grid_sweep(), SEARCH_STEPS,
                                  search_evals) for task in TASKS}  # fmt: skip

    def at_best_grid_point() -> dict[str, Any]:
        lr, clip = best_grid_point(grids())
        return dict(FAST_LAYOUT, learning_rate=lr, clip_epsilon=clip)

    def noise_runs() -> dict[str, dict[str, Any]]:
        sweep = (f"flow_noise_scale={','.join(str(v) for v in NOISE_GRID)}",)
        return {task: run_program("source noise", task, "fpo", at_best_grid_point(), sweep,
                                  SEARCH_STEPS, search_evals) for task in TASKS}  # fmt: skip

    def fast_changes() -> dict[str, Any]:
        scores = noise_scores(grids(), noise_runs())
        noise = max(scores, key=scores.get)  # type: ignore[arg-type]
        return dict(at_best_grid_point(), flow_noise_scale=noise)

    for stage in stages:
        if stage == "grid":
            grids()
        elif stage == "noise":
            noise_runs()
        elif stage == "variants":
            fast = fast_changes()
            for label, change in STATIC_VARIANTS.items():
                run_program(label, TASKS[0], "fpo", dict(fast, **change), (), SEARCH_STEPS,
                            search_evals)  # fmt: skip
        elif stage == "baselines":
            for task in TASKS:
                steps = TIME_STEPS if task == TASKS[0] else SEARCH_STEPS
                evals = 16 if task == TASKS[0] and not args.smoke else search_evals
                timed = task == TASKS[0]  # these runs give the time-to-return table
                run_program("paper settings", task, "fpo", PAPER_LAYOUT, (), steps, evals, timed)
                if timed:
                    run_program("PPO, paper layout", task, "ppo", PAPER_LAYOUT, (), steps, evals,
                                timed)  # fmt: skip
                run_program("PPO, fast layout", task, "ppo", FAST_LAYOUT, (), steps, time_evals,
                            timed)  # fmt: skip
        elif stage == "time":
            run_program("fast setting", TASKS[0], "fpo", fast_changes(), (), TIME_STEPS,
                        time_evals, stop_when_solved=True)  # fmt: skip
            for task in TASKS[1:]:  # for the equal-wall-time comparison
                run_program("fast setting", task, "fpo", fast_changes(), (), SEARCH_STEPS,
                            search_evals)  # fmt: skip
    report(args.smoke)


def report(smoke: bool) -> None:
    """fast_preset.md / .png from the programs stored so far."""
    progs = {p.stem: json.loads(p.read_text()) for p in sorted(store().glob("*.json"))}
    if not progs:
        common.log("nothing stored yet")
        return
    by = {(p["task"], p["name"]): p for p in progs.values()}
    lines = [common.results_header(
        "A fast FPO setting for a CPU budget", "smoke" if smoke else "default",
        [f"tasks: {', '.join(TASKS)}; {SEEDS} seeds per setting (vmapped with the sweep)",
         f"search layout (`FAST_LAYOUT`): {FAST_LAYOUT}",
         f"paper layout scaled to a CPU (`PAPER_LAYOUT`): {PAPER_LAYOUT}",
         f"search budget {SEARCH_STEPS:,} env steps; time-to-{THRESHOLD:g} budget "
         f"{TIME_STEPS:,} env steps; evaluation: {EVAL['num_eval_envs']} episodes"]),
    ]  # fmt: skip
    grids = {t: by[(t, "grid")] for t in TASKS if (t, "grid") in by}
    if grids:
        lines.append("## lr x clip grid at the search layout (final eval return, mean ± s.e.)\n")
        keys = sorted({k for g in grids.values() for k in split_members(g)})
        rows = []
        for key in keys:
            row = [f"{key[0]:g}", f"{key[1]:g}"]
            for task in TASKS:
                curve = split_members(grids[task]).get(key) if task in grids else None
                row.append(common.fmt_pm(curve[-1]) if curve is not None else "-")
            rows.append(row)
        lines.append(common.markdown_table(["learning rate", "clip", *TASKS], rows,
                                           "rr" + "r" * len(TASKS)))  # fmt: skip
        if len(grids) == len(TASKS):
            lr, clip = best_grid_point(grids)
            lines.append(f"\nBest on the sum over tasks: learning rate {lr:g}, clip {clip:g}.\n")
    noise = {t: by[(t, "source noise")] for t in TASKS if (t, "source noise") in by}
    if len(grids) == len(TASKS) and noise:
        lines.append("\n## Source noise at that point (final eval return, mean ± s.e.)\n")
        best = best_grid_point(grids)
        rows = [
            [
                "1 (paper; the grid's member)",
                *[common.fmt_pm(split_members(grids[t])[best][-1]) for t in TASKS],
            ]
        ]
        for value in NOISE_GRID:
            row = [f"{value:g}"]
            for task in TASKS:
                prog = noise.get(task)
                idx = (
                    [i for i, m in enumerate(prog["members"]) if m["flow_noise_scale"] == value]
                    if prog
                    else []
                )
                row.append(common.fmt_pm(np.asarray(prog["returns"])[-1, idx]) if idx else "-")
            rows.append(row)
        lines.append(common.markdown_table(["flow_noise_scale", *TASKS], rows,
                                           "l" + "r" * len(TASKS)))  # fmt: skip
        if len(noise) == len(TASKS):
            scores = noise_scores(grids, noise)
            lines.append(f"\nBest on the sum over tasks: {max(scores, key=scores.get):g}.\n")
    rows = []
    for (task, name), prog in by.items():
        if name in ("grid", "source noise"):
            continue
        curve = np.asarray(prog["returns"])
        final, best = common.final_and_best(curve)
        at_search = np.asarray(prog["steps"]) <= SEARCH_STEPS
        rows.append([task, name, prog["algo"], f"{prog['steps'][-1]:,}",
                     common.fmt_pm(curve[at_search][-1]), common.fmt_pm(final),
                     common.fmt_pm(best), f"{prog['seconds']:.0f}"])  # fmt: skip
    if rows:
        lines.append("\n## Single settings (3 seeds each)\n")
        lines.append(common.markdown_table(
            ["task", "setting", "algo", "steps", f"return at {SEARCH_STEPS:,}", "final",
             "best", "program s"], rows, "lllrrrrr"))  # fmt: skip
    equal = []
    for task in TASKS:
        if (task, "fast setting") not in by:
            continue
        fast = by[(task, "fast setting")]
        # the fast setting's wall time at its last evaluation within the search budget
        i = max(j for j, st in enumerate(fast["steps"]) if st <= SEARCH_STEPS)
        budget = fast["wall"][i]
        for name in ("fast setting", "paper settings", "PPO, paper layout", "PPO, fast layout"):
            prog = by.get((task, name))
            if prog is None:
                continue
            j = max(j for j, w in enumerate(prog["wall"]) if w <= budget)
            equal.append([task, name, prog["algo"], f"{budget:.0f}", f"{prog['steps'][j]:,}",
                          common.fmt_pm(np.asarray(prog["returns"])[j])])  # fmt: skip
    if equal:
        lines.append("\n## At equal wall time (the fast setting's time for the search budget)\n")
        lines.append(common.markdown_table(
            ["task", "setting", "algo", "wall s", "env steps by then", "eval return then"],
            equal, "lllrrr"))  # fmt: skip
        lines.append(
            "\nWall time since the first training call (compilation excluded, evaluations "
            f"included), {SEEDS} seeds as one program; each row's last evaluation by then.\n"
        )
    timed = [(n, by[(TASKS[0], n)]) for n in ("fast setting", "paper settings",
             "PPO, paper layout", "PPO, fast layout") if (TASKS[0], n) in by]  # fmt: skip
    if timed:
        lines.append(f"\n## Steps and wall time to an eval return of {THRESHOLD:g} "
                     f"({TASKS[0]})\n")  # fmt: skip
        rows = []
        for name, prog in timed:
            hits = first_reach(prog["steps"], prog["wall"], np.asarray(prog["returns"]),
                               THRESHOLD)  # fmt: skip
            reached = [h for h in hits if h is not None]
            med = [np.median([h[i] for h in reached]) if reached else np.nan for i in (0, 1)]
            rows.append([name, f"{len(reached)} / {len(hits)}",
                         f"{med[0]:,.0f}" if reached else "not reached",
                         f"{med[1]:.0f}" if reached else "-",
                         ", ".join("-" if h is None else f"{h[0]:,}" for h in hits),
                         f"{prog['compile_seconds']:.0f}"])  # fmt: skip
        lines.append(common.markdown_table(
            ["setting", "seeds reaching it", "median env steps", "median wall s",
             "env steps per seed", "compile s"], rows, "lrrrlr"))  # fmt: skip
        lines.append(
            "\nWall time: seconds since the program's first training call (compilation "
            "excluded, evaluations included) at the first evaluation reaching the return, for "
            f"the {SEEDS} seeds trained together as one vmapped program; the same for every "
            "row, so the rows compare. Evaluations come every iteration (paper layout, "
            f"{PAPER_LAYOUT.get('batch_size', 0) * PAPER_LAYOUT.get('num_minibatches', 0) * PAPER_LAYOUT.get('unroll_length', 0):,} steps) "
            "or every other iteration (fast layout); a return is only seen when evaluated.\n"
        )  # fmt: skip
    plt = common.pyplot()
    fig, axes = plt.subplots(1, len(TASKS), figsize=(6.5 * len(TASKS), 4), squeeze=False)
    for ax, task in zip(axes[0], TASKS, strict=True):
        j = 0
        for (t, name), prog in by.items():
            if t != task or name in ("grid", "source noise"):
                continue
            common.plot_curves(ax, np.asarray(prog["steps"]), np.asarray(prog["returns"]),
                               name, f"C{j}")  # fmt: skip
            j += 1
        common.label_return_axes(ax, task)
    common.save_figure(fig, "fast_preset.png")
    lines.append("\n![curves](fast_preset.png)\n")
    common.write_result("fast_preset.md", "\n".join(lines))


if __name__ == "__main__":
    main()
