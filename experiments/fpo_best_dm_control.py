"""FPO at its best on a DM Control task, on the terms of the PPO comparison it is set against.

CartpoleBalance at the layout of ``experiments/ppo_parity.py`` (256 envs, 128 x 32 minibatches
of 30 steps, 16 epochs, 9 iterations = 1.1M env steps) under Brax's trainer order (exact
observation statistics before the epochs, every env restarting from its own first state), the
order of the ``ours:brax`` PPO row and of Brax PPO itself. Two stages, each stored as JSON under
``experiments/results/fpo_best_dm_control/`` (a stored stage is not run again):

* ``sweep``: one program over learning rate x clip x source noise (``GRID``), one seed per
  member, all members trained together;
* ``confirm``: the sweep member with the best final stochastic return, 5 seeds.

Every program's final parameters are scored both ways on the same episodes: stochastically (from
random source noise, as Brax PPO's 715 was measured) and deterministically (from zero noise).
``--report`` rebuilds ``fpo_best_dm_control.md`` from the stored JSON, with the PPO rows of
``ppo_parity`` beside it.

    python experiments/fpo_best_dm_control.py --stages sweep     # ~40 min of both cores
    python experiments/fpo_best_dm_control.py --stages confirm   # ~25 min
    python experiments/fpo_best_dm_control.py --report
    python experiments/fpo_best_dm_control.py --smoke            # tiny, to /tmp
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
import ppo_parity  # noqa: E402

from fpo_jax.config import replace, sweep_members, validate  # noqa: E402
from fpo_jax.train import train  # noqa: E402

TASK = "CartpoleBalance"
GRID = {
    "learning_rate": (3e-4, 1e-3),
    "clip_epsilon": (0.05, 0.1),
    "flow_noise_scale": (0.3, 1.0),
}
BRAX_ORDER = dict(obs_norm="brax", refresh_initial_states=False)
CONFIRM_SEEDS = 5


def store() -> Path:
    return common.out_dir() / "fpo_best_dm_control"


def stage_config(stage: str, iterations: int, best: dict[str, float] | None = None) -> Any:
    """The config a stage trains with: the task's FPO preset (the paper's settings) at the
    parity layout, Brax's order, stochastic evaluation; the sweep's grid or the best member."""
    base = ppo_parity.fpo_config(TASK, BRAX_ORDER)
    if stage == "sweep":
        changes = dict(sweep=tuple(f"{k}={','.join(map(str, v))}" for k, v in GRID.items()),
                       num_seeds=1)  # fmt: skip
    else:
        changes = dict(best or {}, num_seeds=CONFIRM_SEEDS)
    config = replace(base, **changes)
    return validate(replace(
        config, num_timesteps=iterations * config.env_steps_per_iteration,
        num_evals=iterations + 1, progress=False,
    ))  # fmt: skip


def best_member(sweep: dict[str, Any]) -> dict[str, float]:
    """The swept settings of the member with the best final stochastic return."""
    i = int(np.argmax(sweep["final"]["stochastic"]))
    return {k: v for k, v in sweep["members"][i].items() if k != "seed"}


def run_stage(stage: str, iterations: int) -> dict[str, Any]:
    path = store() / f"{stage}.json"
    if path.exists():
        return json.loads(path.read_text())
    best = None
    if stage == "confirm":
        sweep_path = store() / "sweep.json"
        if not sweep_path.exists():
            raise SystemExit("Run --stages sweep first: the confirmation takes its best member.")
        best = best_member(json.loads(sweep_path.read_text()))
    config = stage_config(stage, iterations, best)
    members = sweep_members(config)
    common.log(f"{TASK}: {stage}, {len(members)} members, {iterations} iterations")
    t0 = time.perf_counter()
    res = train(TASK, config)
    evals = [r for r in res.history if r.get("eval/episode_return") is not None]
    returns = np.array([r["per_member/eval/episode_return"] for r in evals]).reshape(
        len(evals), len(members)
    )
    ppo_parity.save_policy(res.state, path)
    out = dict(
        task=TASK, stage=stage, members=members, best=best,
        changes={**BRAX_ORDER, **(best or {})}, steps=[int(r["env_steps"]) for r in evals],
        wall=[float(r["wall_time"]) for r in evals], returns=returns.tolist(),
        seconds=time.perf_counter() - t0, provenance=common.provenance(),
    )  # fmt: skip
    out["final"] = ppo_parity.final_scores(TASK, config, res.state)
    common.write_file(path, json.dumps(out, indent=1))
    return out


# The ppo_parity programs under the same trainer order, shown beside the confirmation.
PARITY_ROWS = {
    "fpo:brax order": "FPO, the paper's setting",
    "ours:brax": "our PPO, --variant brax",
    "brax": "Brax PPO",
}


def _swept_settings(program: str) -> str:
    """The grid's settings of one of ppo_parity's FPO programs, read from the config its code
    builds ("-" for the PPO programs)."""
    if not program.startswith("fpo:"):
        return "-"
    config = ppo_parity.fpo_config(TASK, ppo_parity.FPO[program.split(":", 1)[1]])
    return ", ".join(f"{k} {getattr(config, k):g}" for k in GRID)


def _parity_finals() -> dict[str, dict[str, np.ndarray | None]]:
    """Each stored ppo_parity program of ``PARITY_ROWS``: its final stochastic and (where
    scored) deterministic returns per seed."""
    finals = {}
    for name in PARITY_ROWS:
        path = ppo_parity.program_path(TASK, name)
        if not path.exists():
            continue
        p = json.loads(path.read_text())
        final = p.get("final") or {"stochastic": p["returns"][-1]}
        det = final.get("deterministic")
        finals[name] = dict(
            stochastic=np.asarray(final["stochastic"], np.float64),
            deterministic=None if det is None else np.asarray(det, np.float64),
        )
    return finals


def report() -> None:
    stages = {p.stem: json.loads(p.read_text()) for p in sorted(store().glob("*.json"))}
    if not stages:
        raise SystemExit(f"Nothing under {store()}: run --stages sweep first.")
    layout = ppo_parity.TASKS[TASK]["layout"]
    lines = [
        common.results_header(
            f"FPO at its best on {TASK}, on the PPO comparison's terms",
            f"{len(next(iter(stages.values()))['steps']) - 1} iterations of "
            f"{layout['batch_size'] * layout['num_minibatches'] * layout['unroll_length']:,} "
            "env steps",
            [
                f"{layout['num_envs']} envs, {layout['batch_size']} x "
                f"{layout['num_minibatches']} minibatches of {layout['unroll_length']} steps, "
                f"{layout['num_epochs']} epochs; the task's FPO preset (the paper's settings) "
                "with Brax's trainer order (obs_norm=brax, refresh_initial_states=False)",
                "sweep: " + " x ".join(f"{k} {v}" for k, v in GRID.items()) + ", one seed each",
                f"evaluation: {ppo_parity.NUM_EVAL_ENVS} episodes of 1000 steps; final "
                "parameters scored stochastically (random source noise) and deterministically "
                "(zero noise) on the same episodes",
            ],
            data=[s["provenance"] for s in stages.values()],
        )
    ]
    sweep = stages.get("sweep")
    if sweep is not None:
        lines += ["\n## Sweep\n", "Final return of each member (one seed):\n"]
        rows = []
        order = np.argsort(sweep["final"]["stochastic"])[::-1]
        for i in order:
            m = sweep["members"][i]
            rows.append([
                *[f"{m[k]:g}" for k in GRID], f"{sweep['final']['stochastic'][i]:.0f}",
                f"{sweep['final']['deterministic'][i]:.0f}",
                f"{max(r[i] for r in sweep['returns']):.0f}",
            ])  # fmt: skip
        lines.append(common.markdown_table(
            [*GRID, "stochastic", "deterministic", "best eval on the way"], rows
        ))  # fmt: skip
        lines.append(f"\nSweep wall time: {common.fmt_s(sweep['seconds'], 0)} s.")
    confirm = stages.get("confirm")
    table = []
    if confirm is not None:
        sto = np.asarray(confirm["final"]["stochastic"], np.float64)
        det = np.asarray(confirm["final"]["deterministic"], np.float64)
        table.append([
            "FPO, best sweep member", ", ".join(f"{k} {v:g}" for k, v in confirm["best"].items()),
            len(sto), common.fmt_pm(sto, 0), common.fmt_pm(det, 0),
            ", ".join(f"{x:.0f}" for x in sto),
        ])  # fmt: skip
    finals = _parity_finals()
    for name, final in finals.items():
        f_sto, f_det = final["stochastic"], final["deterministic"]
        table.append([
            PARITY_ROWS[name], _swept_settings(name), len(f_sto), common.fmt_pm(f_sto, 0),
            "-" if f_det is None else common.fmt_pm(f_det, 0),
            ", ".join(f"{x:.0f}" for x in f_sto),
        ])  # fmt: skip
    differences = []
    if confirm is not None:
        for name, final in finals.items():
            f_det = final["deterministic"]
            differences.append(
                f"- best member minus {PARITY_ROWS[name]}: stochastic "
                + common.fmt_difference(sto, final["stochastic"])
                + ("" if f_det is None else ", deterministic " + common.fmt_difference(det, f_det))
            )
    if table:
        lines += [
            "\n## Confirmation beside PPO\n",
            "Final return, mean ± standard error over seeds (the rows below the first from "
            "`ppo_parity.md`, same layout, budget and trainer order):\n",
            common.markdown_table(
                [
                    "program",
                    "settings",
                    "seeds",
                    "stochastic",
                    "deterministic",
                    "stochastic per seed",
                ],
                table,
            ),  # fmt: skip
        ]
        if differences:
            lines += ["\nDifferences of the means, ± the two standard errors combined:\n",
                      *differences]  # fmt: skip
    if confirm is not None:
        # The best member against our PPO under the same order, at equal wall time.
        best = {"program": "fpo:best member", "behaviour": ppo_parity.BEHAVIOUR["ours:brax"],
                "steps": confirm["steps"], "returns": confirm["returns"]}  # fmt: skip
        ppo_path = ppo_parity.program_path(TASK, "ours:brax")
        if ppo_path.is_file():
            lines += ppo_parity.equal_wall_time([best, json.loads(ppo_path.read_text())], TASK)
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    if sweep is not None:
        r = np.asarray(sweep["returns"], np.float64)
        for i, m in enumerate(sweep["members"]):
            label = ", ".join(f"{m[k]:g}" for k in GRID)
            ax.plot(np.asarray(sweep["steps"]) / 1e6, r[:, i], color=colors[i % len(colors)],
                    alpha=0.6, lw=1, label=label)  # fmt: skip
    if confirm is not None:
        common.plot_curves(ax, np.asarray(confirm["steps"]), np.asarray(confirm["returns"]),
                           "confirmation (5 seeds)", "black")  # fmt: skip
    common.label_return_axes(ax, f"{TASK}: FPO sweep (lr, clip, noise)")
    common.save_figure(fig, "fpo_best_dm_control.png")
    lines.append("\n![curves](fpo_best_dm_control.png)\n")
    common.write_result("fpo_best_dm_control.md", "\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--stages", default="sweep,confirm", help="comma-separated: sweep, confirm")
    p.add_argument("--report", action="store_true", help="only rebuild the table and figure")
    args = common.parse_args(p, argv, smoke="1 iteration at 64 envs, every stage")
    iterations = ppo_parity.TASKS[TASK]["iterations"]
    if args.smoke:
        ppo_parity.TASKS[TASK]["layout"] = dict(
            num_envs=64, batch_size=32, num_minibatches=4, unroll_length=16, num_epochs=2
        )
        iterations = 1
        globals()["CONFIRM_SEEDS"] = 2
    if not args.report:
        for stage in args.stages.split(","):
            run_stage(stage.strip(), iterations)
    report()


if __name__ == "__main__":
    main()
