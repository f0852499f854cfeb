"""The main job on a CPU: Brax ant at ``--variant cpu``, FPO against Gaussian PPO and FPO++.

Five programs, 3 seeds each (one program per setting, ``--num-seeds 3``), each run by the CLI
(``python -m fpo_jax.train``) as a user would, at ant's CPU layout (1024 envs, batch 512 x 32
minibatches of 5 steps, 4 epochs, MJX, 3M env steps; evaluation on 32 envs at 6 points):

* ``fpo``: ``--variant cpu`` (FPO at ant's CPU preset: lr 1e-3, source noise 0.6), evaluated
  with its sampler from random noise;
* ``ppo``: ``--variant cpu --algo ppo`` (the Brax notebook's PPO settings for ant at the same
  layout), evaluated at its mean action;
* ``fpo_paper``: FPO with the paper's lr 3e-4 and unit source noise at the same layout;
* ``fpo++``: ``--variant fpo++`` at the same layout with the FPO preset's networks (4 x 32 SiLU
  actor, 5 x 256 critic) and 10 flow steps in rollouts, so that it costs what the others cost
  on a CPU: the FPO++ objective and optimiser (per-sample ratios, ASPO, clamps, Beta times, EMA,
  AdamW, the family's lr 3e-4, ant's source noise 0.3, clip 0.05, ...), evaluated from zero
  noise with 5 Euler steps (the EMA actor);
* ``fpo++_cpu``: the FPO++ recipe at ant's CPU scale, the settings ``--variant cpu-fpo++`` now
  sets (FPO's CPU lr 1e-3 and source noise 0.6, the FPO preset's networks, 10 flow steps, clip
  0.2), evaluated like ``fpo++``; the live policy's return on the same episodes beside it;
* ``sweep``: how the variant's flow-policy settings were chosen: source noise 0.3 / 0.6 x
  lr 3e-4 / 1e-3, one seed each, 2M steps, as one program.

* ``fpo_1M`` and ``part_*``: each FPO++ part alone on top of FPO at ``--variant cpu``, 1M env
  steps, one seed each (a screen), against FPO alone at the same budget; ``*_seeds_1_2``: seeds
  1 and 2 of FPO and of the parts that moved its return (``MOVERS``), pooled with seed 0;
  ``per_sample_aspo_clip``: per-sample ratios with ASPO at clip 0.1 and 0.2 (one program).

Each program writes a run directory under ``--runs-dir`` and then its compact metrics (every
evaluation per member, the per-iteration metrics that show a collapse coming, the settings that
scale decides) to ``experiments/results/ant_cpu/NAME.json``; a program stored there is not run
again, so a stopped script resumes, and ``--report`` rebuilds the tables and the figure from the
repository alone.

    python experiments/ant_cpu.py --programs fpo,ppo,fpo_paper,fpo++    # ~1.5 h on 2 quiet cores
    python experiments/ant_cpu.py --programs screen                     # the parts, ~35 min
    python experiments/ant_cpu.py --programs movers    # seeds 1, 2 of the parts that moved
    python experiments/ant_cpu.py --report
    python experiments/ant_cpu.py --smoke              # 2 calls at 64 envs, to /tmp

Writes ``experiments/results/ant_cpu.md`` and ``ant_cpu.png``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (also puts the repository on sys.path)
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BASE = ["--env", "ant", "--no-progress"]
SEEDS = ["--num-seeds", "3"]
PROGRAMS: dict[str, tuple[str, list[str]]] = {  # name -> (label, flags)
    "fpo": ("FPO, ant --variant cpu", ["--variant", "cpu", *SEEDS]),
    "ppo": ("Gaussian PPO, --variant cpu", ["--variant", "cpu", "--algo", "ppo", *SEEDS]),
    "fpo_paper": (
        "FPO, paper lr 3e-4 and unit noise",
        ["--variant", "cpu", "--learning-rate", "3e-4", "--flow-noise-scale", "1.0", *SEEDS],
    ),
    "fpo++": (
        "FPO++ objective and optimiser",
        ["--variant", "fpo++", *SEEDS, "--backend", "mjx", "--num-envs", "1024", "--batch-size", "512",
         "--num-timesteps", "3000000", "--num-evals", "6", "--num-eval-envs", "32",
         "--policy-hidden", "32", "32", "32", "32", "--value-hidden", *["256"] * 5,
         "--activation", "silu", "--flow-steps", "10"],
    ),
    # The same at ant's CPU scale: FPO's CPU learning rate and source noise, and the trust
    # region that per-sample ratios with ASPO needed on ant at 1M steps (per_sample_aspo_clip).
    "fpo++_cpu": (
        "FPO++ at ant's CPU scale (lr 1e-3, noise 0.6, clip 0.2)",
        ["--variant", "fpo++", *SEEDS, "--backend", "mjx", "--num-envs", "1024", "--batch-size", "512",
         "--num-timesteps", "3000000", "--num-evals", "6", "--num-eval-envs", "32",
         "--policy-hidden", "32", "32", "32", "32", "--value-hidden", *["256"] * 5,
         "--activation", "silu", "--flow-steps", "10",
         "--learning-rate", "1e-3", "--flow-noise-scale", "0.6", "--clip-epsilon", "0.2"],
    ),
    # How the variant's flow-policy settings were chosen: one seed per setting, 2M steps.
    "sweep": (
        "FPO sweep: source noise x lr",
        ["--variant", "cpu", "--num-timesteps", "2000000", "--num-evals", "5",
         "--sweep", "flow_noise_scale=0.3,0.6", "--sweep", "learning_rate=3e-4,1e-3"],
    ),
}  # fmt: skip
# What each FPO++ part does on ant, one at a time: FPO at --variant cpu plus that part alone,
# 1M env steps, one seed each (a screen; the parts that move the result get two more seeds).
PART_BASE = ["--variant", "cpu", "--num-timesteps", "1000000", "--num-evals", "4"]
PARTS: dict[str, list[str]] = {
    "per-sample ratio + ASPO": ["--ratio", "per_sample", "--trust-region", "aspo"],
    "per-sample ratio (PPO clip)": ["--ratio", "per_sample"],
    "ASPO (mean ratio)": ["--trust-region", "aspo"],
    "N = 16 pairs": ["--num-pairs", "16"],
    "Beta(1, 1) flow times": ["--t-sampler", "beta", "--t-beta", "1.0"],
    "sqrt CFM reduction + loss clamps": [
        "--cfm-loss-reduction", "sqrt", "--cfm-loss-clamp", "20",
        "--negative-advantage-cfm-clamp", "20",
    ],
    "log-ratio clamp 10, straight-through": [
        "--log-ratio-clamp", "10", "--log-ratio-straight-through",
    ],
    "advantage clamp 100": ["--advantage-clamp", "100"],
    "action perturbation 0.02": ["--action-perturbation-std", "0.02"],
    "EMA actor 0.95": ["--ema-decay", "0.95", "--ema-warmup-updates", "500"],
    "AdamW 1e-4 + per-network clip 1": [
        "--weight-decay", "1e-4", "--max-grad-norm", "1.0", "--grad-clip-scope", "per_network",
    ],
    "zero-noise evaluation": ["--eval-noise", "zero"],
}  # fmt: skip
PROGRAMS["fpo_1M"] = ("FPO, ant --variant cpu, 1M steps", PART_BASE)
for _label, _flags in PARTS.items():
    _name = "part_" + "".join(c if c.isalnum() else "_" for c in _label).strip("_").lower()
    PROGRAMS[_name] = (f"FPO + {_label}", [*PART_BASE, *_flags])
# Whether a wider trust region gives per-sample ratios with ASPO back what they cost FPO at
# clip 0.05 (one program, the clip traced, seed 0).
PROGRAMS["per_sample_aspo_clip"] = (
    "FPO + per-sample ratio + ASPO, clip swept",
    [*PART_BASE, *PARTS["per-sample ratio + ASPO"], "--sweep", "clip_epsilon=0.1,0.2"],
)
COMPARED = ("fpo", "ppo", "fpo_paper", "fpo++", "fpo++_cpu")
SWEEPS = ("sweep", "per_sample_aspo_clip")
SCREEN = ("fpo_1M", *[n for n in PROGRAMS if n.startswith("part_")])
# The parts that moved the screen's final return by more than a fifth of FPO's (156), and FPO
# itself to compare them with, get seeds 1 and 2 as one more program each ("NAME_seeds_1_2");
# the screen table then pools the three seeds.
MOVERS = (
    "fpo_1M", "part_per_sample_ratio___aspo", "part_beta_1__1__flow_times",
    "part_sqrt_cfm_reduction___loss_clamps", "part_ema_actor_0_95",
    "part_adamw_1e_4___per_network_clip_1", "part_zero_noise_evaluation",
)  # fmt: skip
MORE_SEEDS = ["--seed", "1", "--num-seeds", "2"]
for _name in MOVERS:
    _label, _flags = PROGRAMS[_name]
    PROGRAMS[_name + "_seeds_1_2"] = (_label, [*_flags, *MORE_SEEDS])
EVALUATION = {
    "fpo": "sampler from random noise",
    "ppo": "mean action",
    "fpo_paper": "sampler from random noise",
    "fpo++": "EMA actor from zero noise, 5 Euler steps",
    "fpo++_cpu": "EMA actor from zero noise, 5 Euler steps",
    "sweep": "sampler from random noise",
    "per_sample_aspo_clip": "live actor from random noise",
}
for _name, (_label, _flags) in PROGRAMS.items():
    if _name.startswith("part_") or _name.startswith("fpo_1M"):
        ema = "EMA actor" if "--ema-decay" in _flags else "live actor"
        noise = "zero noise" if "zero" in _flags else "random noise"
        EVALUATION[_name] = f"{ema} from {noise}"
SMOKE = ["--num-envs", "64", "--batch-size", "32", "--num-timesteps", "2560", "--num-evals", "1"]


def run_dir(args: argparse.Namespace, name: str) -> Path:
    return args.runs_dir / f"ant_cpu_{name.replace('+', 'p')}"


def finished(path: Path) -> bool:
    rows = _rows(path)
    return bool(rows) and rows[-1].get("env_steps", 0) > 0 and "eval/episode_return" in rows[-1]


def _rows(path: Path) -> list[dict]:
    metrics = path / "metrics.jsonl"
    return [json.loads(line) for line in metrics.open()] if metrics.exists() else []


def stored(name: str) -> Path:
    """The compact metrics of a finished program, kept in the repository (the run directory
    itself, with its checkpoints, is not)."""
    return common.out_dir() / "ant_cpu" / f"{name.replace('+', 'p')}.json"


# Per-iteration metrics kept with each program: what shows a collapse coming.
KEPT = ("clip_fraction", "log_ratio_std", "approx_kl", "policy_loss", "train/episode_return")


def store_program(name: str, path: Path) -> None:
    """Keep what the report needs from a finished run directory: every evaluation (each
    member's return, forward reward and episode length; the live vs EMA gap with an EMA), the
    per-iteration metrics in ``KEPT``, the members, the settings that scale decides, and the
    wall time."""
    history = _rows(path)
    config = json.loads((path / "config.json").read_text())
    evals = [
        {k: v for k, v in r.items()
         if k == "env_steps" or k.startswith("per_member/eval/") or k.startswith("eval/")}
        for r in history if r.get("eval/episode_return") is not None
    ]  # fmt: skip
    out = dict(
        program=name, command=f"python -m fpo_jax.train {' '.join(BASE + PROGRAMS[name][1])}",
        evaluation=EVALUATION[name], evals=evals,
        iterations={k: [r.get(k) for r in history if "call" in r and r["call"] > 0] for k in KEPT},
        members=json.loads((path / "members.json").read_text()),
        settings={k: config.get(k) for k in ("learning_rate", "flow_noise_scale", "clip_epsilon",
                                               "ema_decay", "num_epochs", "eval_noise",
                                               "variant")},
        wall_time=history[-1]["wall_time"], provenance=common.provenance(),
    )  # fmt: skip
    common.write_file(stored(name), json.dumps(out, indent=1))


def run_program(name: str, args: argparse.Namespace) -> None:
    path = run_dir(args, name)
    if stored(name).exists():
        return
    if finished(path):
        store_program(name, path)
        return
    flags = PROGRAMS[name][1] + (SMOKE if args.smoke else [])
    cmd = [sys.executable, "-m", "fpo_jax.train", *BASE, *flags, "--run-dir", str(path)]
    if path.exists():
        cmd += ["--overwrite"]
    common.log(f"{name}: {' '.join(cmd[1:])}")
    subprocess.run(cmd, cwd=REPO, check=True)
    store_program(name, path)


def _load(name: str) -> dict | None:
    path = stored(name)
    return json.loads(path.read_text()) if path.exists() else None


def _curve(run: dict, key: str = "eval/episode_return") -> tuple[np.ndarray, np.ndarray]:
    """(env steps (E,), each member's value (E, members)) of an evaluation metric."""
    steps = np.array([e["env_steps"] for e in run["evals"]])
    return steps, np.array([e[f"per_member/{key}"] for e in run["evals"]], np.float64)


def report(args: argparse.Namespace) -> None:
    """The tables and the figure, from the compact metrics stored under results/ant_cpu/."""
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    rows, commands, runs = [], [], []
    for i, name in enumerate(COMPARED):
        run = _load(name)
        if run is None:
            continue
        runs.append(run)
        steps, returns = _curve(run)
        common.plot_curves(ax, steps, returns, PROGRAMS[name][0], f"C{i}")
        forward = _curve(run, "eval/reward_forward")[1][-1]
        length = _curve(run, "eval/episode_length")[1][-1]
        clip, kl = (run["iterations"][k][-1] for k in ("clip_fraction", "approx_kl"))
        # With an EMA actor, the live policy's return on the same evaluation episodes.
        has_live = "per_member/eval/live_episode_return" in run["evals"][-1]
        live = _curve(run, "eval/live_episode_return")[1][-1] if has_live else None
        rows.append([
            PROGRAMS[name][0], run["evaluation"], common.fmt_pm(returns[0], 0),
            common.fmt_pm(returns[-1], 0), ", ".join(f"{x:.0f}" for x in returns[-1]),
            "-" if live is None else ", ".join(f"{x:.0f}" for x in live),
            common.fmt_pm(forward, 0), ", ".join(f"{x:.0f}" for x in forward),
            common.fmt_pm(length, 0), f"{clip:.4f}", f"{kl:.1e}", f"{run['wall_time'] / 60:.0f}",
        ])  # fmt: skip
        commands.append(f"- {name}: `{run['command']}`")
    screen = [run for run in map(_load, SCREEN) if run is not None]
    more_seeds = [run for n in MOVERS if (run := _load(n + "_seeds_1_2")) is not None]
    runs += screen + more_seeds
    sweeps = [run for run in map(_load, SWEEPS) if run is not None]
    runs += sweeps
    if not runs:
        raise SystemExit(f"No stored programs under {stored('fpo').parent}: run some first.")
    common.label_return_axes(ax, "Brax ant on a CPU (1024 envs, 3 seeds)")
    fig.tight_layout()
    common.save_figure(fig, "ant_cpu.png")
    budgets = []
    if rows:
        budgets.append(
            "compared programs: 3,031,040 env steps per seed (37 iterations of "
            "81,920), 3 seeds per program, evaluated before training and at 5 points"
        )
    if screen:
        budgets.append(
            f"screen: {screen[0]['evals'][-1]['env_steps']:,} env steps, seed 0 per program"
            + (", seeds 1 and 2 too for the parts that moved it" if more_seeds else "")
            + ", evaluated before training and at 4 points"
        )
    text = common.results_header(
        "The main job on a CPU: Brax ant, FPO vs Gaussian PPO and FPO++",
        "; ".join(budgets) or "see the tables",
        ["`--variant cpu`: 1024 envs, batch 512 x 32 minibatches, unroll 5, 4 epochs, MJX",
         "evaluation: 32 envs, one 1000-step episode each"],
        data=[r["provenance"] for r in runs],
    )  # fmt: skip
    if rows:
        text += "\n" + common.markdown_table(
            ["program", "evaluation", "start (mean ± s.e.)", "final (mean ± s.e.)",
             "final per seed", "live policy, same episodes, per seed", "final forward reward",
             "forward per seed",
             "final episode length", "clip fraction, last iteration",
             "approx. KL, last iteration", "wall min (shared CPU)"],
            rows, "llrrllrlrrrr",
        )  # fmt: skip
        text += "\nCommands (each run as one program of 3 seeds):\n\n" + "\n".join(commands)
        text += "\n\n![eval return over env steps](ant_cpu.png)\n"
    text += screen_table(screen)
    text += "".join(map(sweep_table, sweeps))
    common.write_result("ant_cpu.md", text)


def screen_table(screen: list[dict]) -> str:
    """Each FPO++ part alone on top of FPO, 1M steps: return and forward reward (a standing
    ant collects ~800 of return with a forward reward near 0), and which evaluation."""
    if not screen:
        return ""

    def cell(values: np.ndarray) -> str:  # one seed: the value; more: mean ± s.e.
        return f"{values[0]:.0f}" if len(values) == 1 else common.fmt_pm(values, 0)

    def final(runs: list[dict], key: str) -> np.ndarray:  # every seed's final value
        return np.concatenate([_curve(run, key)[1][-1] for run in runs])

    rows = []
    for run in screen:
        runs = [run, *filter(None, [_load(run["program"] + "_seeds_1_2")])]
        returns = final(runs, "eval/episode_return")
        has_gap = "per_member/eval/ema_minus_live_return" in run["evals"][-1]
        gap = final(runs, "eval/ema_minus_live_return") if has_gap else None
        rows.append([
            PROGRAMS[run["program"]][0], run["evaluation"], cell(returns),
            ", ".join(f"{x:.0f}" for x in returns), cell(final(runs, "eval/reward_forward")),
            cell(final(runs, "eval/episode_length")),
            "-" if gap is None else f"{gap.mean():+.0f}", len(returns),
        ])  # fmt: skip
    return (
        "\n## Each FPO++ part alone on ant (1M env steps)\n\n"
        f"`{' '.join(['python -m fpo_jax.train', *BASE, *PART_BASE])}` plus the part's flags.\n\n"
        + common.markdown_table(
            [
                "program",
                "evaluation",
                "final return",
                "per seed (seed 0 first)",
                "final forward reward",
                "final episode length",
                "EMA minus live return",
                "seeds",
            ],
            rows,
            "llrlrrrr",
        )  # fmt: skip
        + "\nWith more than one seed: mean ± standard error; the EMA gap is the seeds' mean.\n"
    )


def sweep_table(run: dict | None) -> str:
    """A sweep program (one seed, settings traced): one row per member, with the settings it
    swept, its return and its forward reward."""
    if run is None:
        return ""
    returns = _curve(run)[1]
    forward = _curve(run, "eval/reward_forward")[1]
    lengths = _curve(run, "eval/episode_length")[1]
    swept = [k for k in run["members"][0] if k != "seed"]
    rows = [
        [*(m[k] for k in swept), f"{returns[0][i]:.0f}", f"{returns[-1][i]:.0f}",
         f"{forward[-1][i]:.0f}", f"{lengths[-1][i]:.0f}"]
        for i, m in enumerate(run["members"])
    ]  # fmt: skip
    title = {
        "sweep": "How the variant's FPO settings were chosen",
        "per_sample_aspo_clip": "Per-sample ratios with ASPO at wider trust regions",
    }[run["program"]]
    return (
        f"\n## {title}\n\n"
        f"`{run['command']}` (one program, seed 0, {run['evals'][-1]['env_steps']:,} env steps; "
        f"evaluation: {run['evaluation']}).\n\n"
        + common.markdown_table(
            [*swept, "start", "final", "final forward reward", "final episode length"],
            rows,
            "r" * (len(swept) + 4),
        )  # fmt: skip
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--programs", default=",".join([*COMPARED, "sweep"]),
                        help="comma-separated; 'screen' = fpo_1M and every part_*, "
                        "'movers' = seeds 1 and 2 of the parts that moved the screen: "
                        + ", ".join(PROGRAMS))  # fmt: skip
    parser.add_argument("--runs-dir", type=Path, default=REPO / "runs")
    parser.add_argument("--report", action="store_true", help="only rebuild the table")
    args = common.parse_args(parser, argv, smoke="2 calls at 64 envs")
    if args.smoke and args.runs_dir == REPO / "runs":
        args.runs_dir = common.out_dir() / "runs"
    if not args.report:
        names = [n.strip() for n in args.programs.split(",")]
        groups = {"screen": SCREEN, "movers": tuple(f"{n}_seeds_1_2" for n in MOVERS)}
        names = [m for n in names for m in groups.get(n, (n,))]
        for name in names:
            run_program(name, args)
    report(args)


if __name__ == "__main__":
    main()
