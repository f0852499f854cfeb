"""FPO's surrogate ratio against the flow's exact ratio while training on the GridWorld and a DM
Control task, as ``--ratio-diagnostics`` logs it.

Each run trains with ``ratio_diagnostics=--actions``: after every iteration's update the trainer
compares, on that many actions spread over the batch, FPO's surrogate log-ratio
``mean_i (l_old_i - l_new_i)`` (and the per-pair form ``l_old_i - l_new_i``) with the exact
``log pi_new(a|s) - log pi_old(a|s)`` of the discrete sampler the policy acts with
(:func:`fpo_jax.diagnostics.sampler_log_prob`, the density the actions were drawn from):
their correlation, how often they agree on the sign (did the update make the action more or less
likely) and on PPO's clip decision, and the bias (:func:`fpo_jax.diagnostics.ratio_fidelity`).

Runs (3 seeds each, one program per run):

* ``gridworld`` at its default preset with N = 1, 8 and 50 (CFM pairs per action): the bias and
  agreement as N grows;
* ``CartpoleBalance`` (MuJoCo Playground) at the CPU layout of ``--variant fast`` (256 envs,
  batch 128 x 8, unroll 30, 4 epochs), N = 8, ``--steps-dm`` env steps.

Run from the repository root::

    python experiments/ratio_diagnostics.py           # ~15 min on 2 CPU cores
    python experiments/ratio_diagnostics.py --smoke   # a few iterations, to /tmp
    python experiments/ratio_diagnostics.py --report  # rebuild from the stored JSON

Writes ``experiments/results/ratio_diagnostics.md``, ``ratio_diagnostics.png`` and
``ratio_diagnostics.json`` (the arguments, the provenance, and every logged statistic per
iteration, the mean over seeds), from which ``--report`` rebuilds the other two.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (also puts the repository on sys.path)
import numpy as np  # noqa: E402

from fpo_jax.presets import preset  # noqa: E402
from fpo_jax.train import train  # noqa: E402

PREFIX = "ratio_diagnostics/"
STATS = (  # (logged key, column title)
    ("mean/corr", "corr"),
    ("mean/sign_agreement", "sign agreement"),
    ("mean/clip_agreement", "clip agreement"),
    ("mean/bias", "bias"),
    ("mean/rmse", "rmse"),
    ("per_sample/corr", "per-pair corr"),
    ("per_sample/sign_agreement", "per-pair sign agr."),
    ("mean/clip_fraction", "clipped (surrogate)"),
    ("exact/clip_fraction", "clipped (exact)"),
)


def runs(args: argparse.Namespace) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, env, overrides) of every run."""
    grid = [(f"gridworld, N = {n}", "gridworld", dict(num_pairs=n)) for n in (1, 8, 50)]
    fast = preset("CartpoleBalance", "fpo", variant="fast")
    dm_layout = {
        k: getattr(fast, k)
        for k in ("num_envs", "batch_size", "num_minibatches", "unroll_length", "num_epochs")
    }
    dm = [("CartpoleBalance, N = 8", "CartpoleBalance", dict(dm_layout, num_eval_envs=32))]
    out = []
    for label, env, overrides in grid + dm:
        steps = args.steps_grid if env == "gridworld" else args.steps_dm
        out.append((label, env, dict(overrides, num_timesteps=steps)))
    return out


def run(label: str, env: str, overrides: dict[str, Any], args: argparse.Namespace) -> dict:
    common.log(f"{label}: training {args.seeds} seeds")
    result = train(
        env, num_seeds=args.seeds, ratio_diagnostics=args.actions, num_evals=3, progress=False,
        **overrides,
    )  # fmt: skip
    rows = [r for r in result.history if f"{PREFIX}mean/corr" in r]
    return {
        "label": label,
        "env": env,
        "clip_epsilon": result.config.clip_epsilon,
        "steps": [r["env_steps"] for r in rows],
        # The mean over seeds of each statistic, per iteration.
        "stats": {k: [r[PREFIX + k] for r in rows] for k, _ in STATS},
        "final_return": common.eval_curve(result.history, args.seeds)[1][-1].tolist(),
    }


def _phase(values: list[float], phase: str) -> float:
    """Mean over the first or the last third of the iterations."""
    v = np.asarray(values, dtype=float)
    third = max(1, len(v) // 3)
    part = v[:third] if phase == "early" else v[-third:]
    return float(np.nanmean(part))


def table(results: list[dict]) -> str:
    rows = []
    for res in results:
        for phase in ("early", "late"):
            cells = [f"{_phase(res['stats'][k], phase):.3f}" for k, _ in STATS]
            rows.append([res["label"], phase, *cells])
    return common.markdown_table(
        ["run", "iterations", *[t for _, t in STATS]], rows, "ll" + "r" * len(STATS)
    )


def plot(results: list[dict]) -> None:
    plt = common.pyplot()
    keys = ("mean/corr", "mean/sign_agreement", "mean/clip_agreement", "mean/bias")
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.6))
    for ax, key in zip(axes, keys, strict=True):
        for i, res in enumerate(results):
            steps = np.asarray(res["steps"], dtype=float)
            ax.plot(steps / steps.max(), res["stats"][key], label=res["label"], color=f"C{i}")
        ax.set(xlabel="fraction of training", title=dict(STATS)[key])
    axes[0].legend(fontsize=7)
    fig.suptitle("FPO's surrogate log-ratio vs the exact log-ratio, each update (mean of 3 seeds)")
    fig.tight_layout()
    common.save_figure(fig, "ratio_diagnostics.png")


def report(stored: dict[str, Any]) -> None:
    """The table and the figure from a stored run (``ratio_diagnostics.json``: the arguments,
    the provenance and each run's per-iteration statistics)."""
    results, a = stored["results"], stored["args"]
    plot(results)
    budget = (
        f"gridworld {a['steps_grid']:,} env steps, CartpoleBalance {a['steps_dm']:,}; "
        f"{a['seeds']} seeds; {a['actions']} actions compared per update"
    )
    text = common.results_header(
        "FPO's surrogate ratio against the exact ratio", budget, data=[stored["provenance"]]
    )
    text += "\n" + table(results) + "\n"
    text += (
        "Each cell: the mean over seeds and over the first (early) or last (late) third of the "
        "updates. corr: Pearson correlation of the surrogate and exact log-ratios; sign / clip "
        "agreement: share of actions where both say the same (clip: PPO's decision at the run's "
        "clip_epsilon); bias: mean surrogate minus exact log-ratio; per-pair: each pair's "
        "l_old - l_new against its action's exact log-ratio; clipped: the share of actions PPO "
        "clips under each ratio.\n\n"
    )
    finals = [[r["label"], r["clip_epsilon"], common.fmt_pm(r["final_return"], 1)] for r in results]
    text += common.markdown_table(["run", "clip_epsilon", "final eval return"], finals, "lrr")
    common.write_result("ratio_diagnostics.md", text)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--actions", type=int, default=256, help="actions compared per update")
    parser.add_argument("--steps-grid", type=int, default=300_000)
    parser.add_argument("--steps-dm", type=int, default=614_400)
    parser.add_argument("--report", action="store_true", help="only rebuild from the stored JSON")
    args = common.parse_args(parser, argv, smoke="a few iterations, 2 seeds, 32 actions")
    path = common.out_dir() / "ratio_diagnostics.json"
    if args.report:
        report(json.loads(path.read_text()))
        return
    if args.smoke:
        args.seeds, args.actions, args.steps_grid, args.steps_dm = 2, 32, 10_240, 61_440
    common.enable_compilation_cache()
    results = [run(*spec, args) for spec in runs(args)]
    kept = {k: getattr(args, k) for k in ("seeds", "actions", "steps_grid", "steps_dm")}
    stored = dict(args=kept, provenance=common.provenance(), results=results)
    common.write_file(path, json.dumps(stored, indent=1))
    report(stored)


if __name__ == "__main__":
    main()
