"""FPO++ at the budgets FPO learns at: FPO (the preset), ``--variant fpo++`` (the FPO++ recipe
with the env family's learning rate) and ``--variant fpo++authors`` (the recipe with the FPO++
authors' own numbers, lr 1e-4), 5 seeds each as one program per setting, on the built-in envs
at small budgets.

Each (env, variant) is stored as compact JSON under ``experiments/results/fpo_plus_plus_budgets/``
(eval return per evaluation and seed, the settings that differ from FPO's preset, the wall time);
one already there is not run again, so a stopped run resumes, and ``--report`` rebuilds the table
from the stored data without running anything. Evaluation is each variant's own: FPO's preset
samples from random source noise; the FPO++ variants act from zero noise with the EMA actor
(bandit), and ``aliased_reach`` evaluates every algorithm on sampled actions (its preset).

    python experiments/fpo_plus_plus_budgets.py                 # bandit at 30k, aliased_reach at 300k
    python experiments/fpo_plus_plus_budgets.py --report
    python experiments/fpo_plus_plus_budgets.py --smoke         # tiny, to /tmp
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

from fpo_jax.train import train  # noqa: E402

# env -> env steps (bandit: the budget of the FPO++ issue's report; aliased_reach: its preset).
BUDGETS = {"bandit": 30_000, "aliased_reach": 300_000}
VARIANTS = ("default", "fpo++", "fpo++authors")
SEEDS = 5
# The settings that scale decides, recorded with each run (and shown in the table).
FIELDS = ("learning_rate", "flow_noise_scale", "ema_decay", "num_epochs", "eval_noise")


def store() -> Path:
    return common.out_dir() / "fpo_plus_plus_budgets"


def run(env: str, variant: str, steps: int, seeds: int) -> dict[str, Any]:
    path = store() / f"{env}__{variant}.json"
    if path.exists():
        return json.loads(path.read_text())
    common.log(f"{env}, variant {variant}: {seeds} seeds, {steps:,} steps")
    t0 = time.perf_counter()
    res = train(env, variant=variant, num_timesteps=steps, num_seeds=seeds, progress=False)
    evals = [r for r in res.history if r.get("eval/episode_return") is not None]
    out = dict(
        env=env, variant=variant, steps=[int(r["env_steps"]) for r in evals],
        returns=[[float(x) for x in r["per_member/eval/episode_return"]] for r in evals],
        settings={f: getattr(res.config, f) for f in FIELDS},
        seconds=time.perf_counter() - t0, provenance=common.provenance(),
    )  # fmt: skip
    common.write_file(path, json.dumps(out, indent=1))
    return out


def report() -> None:
    runs = [json.loads(p.read_text()) for p in sorted(store().glob("*.json"))]
    if not runs:
        raise SystemExit(f"No runs under {store()}: run some first.")
    lines = [
        common.results_header(
            "FPO++ at the budgets FPO learns at (built-in envs)",
            ", ".join(f"{e} {s:,} env steps" for e, s in BUDGETS.items()) + f", {SEEDS} seeds",
            ["each variant's preset layout and evaluation (see the settings column)"],
            data=[r["provenance"] for r in runs if "provenance" in r],
        ),
        "Eval return at the start and at the end, mean ± standard error over seeds, and the "
        "seeds whose final return is at least 0.9 of the best seed's return of FPO:\n",
    ]
    rows = []
    for env in BUDGETS:
        mine = [r for r in runs if r["env"] == env]
        ref = next((r for r in mine if r["variant"] == "default"), None)
        bar = 0.9 * max(ref["returns"][-1]) if ref else float("nan")
        for r in sorted(mine, key=lambda r: VARIANTS.index(r["variant"])):
            start, end = (np.asarray(r["returns"][i]) for i in (0, -1))
            rows.append([
                env, r["variant"], common.fmt_pm(start, 2), common.fmt_pm(end, 2),
                ", ".join(f"{x:.2f}" for x in end), f"{int(np.sum(end >= bar))} / {len(end)}",
                ", ".join(f"{k} {v}" for k, v in r["settings"].items()),
                common.fmt_s(r["seconds"], 0),
            ])  # fmt: skip
    lines.append(
        common.markdown_table(
            [
                "env",
                "variant",
                "start",
                "end",
                "end per seed",
                ">= 0.9 x FPO's best",
                "settings",
                "wall time",
            ],
            rows,
        )  # fmt: skip
    )
    common.write_result("fpo_plus_plus_budgets.md", "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--envs", default=",".join(BUDGETS))
    p.add_argument("--report", action="store_true", help="only rebuild the table")
    args = common.parse_args(p, argv, smoke="1,024 steps, 2 seeds")
    seeds = 2 if args.smoke else SEEDS
    if not args.report:
        for env in args.envs.split(","):
            for variant in VARIANTS:
                run(env, variant, 1_024 if args.smoke else BUDGETS[env], seeds)
    report()


if __name__ == "__main__":
    main()
