"""The main job on a CPU: Brax ant at ``--variant cpu``, FPO against Gaussian PPO and FPO++.

Four programs, 3 seeds each (one program per setting, ``--num-seeds 3``), each run by the CLI
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
  AdamW, lr 1e-4, ...), evaluated from zero noise with 5 Euler steps (the EMA actor);
* ``sweep``: how the variant's flow-policy settings were chosen: source noise 0.3 / 0.6 x
  lr 3e-4 / 1e-3, one seed each, 2M steps, as one program.

Each program writes a run directory under ``--runs-dir``; a program whose run directory already
holds a finished ``metrics.jsonl`` is not run again, so a stopped script resumes and ``--report``
rebuilds the table from the run directories alone.

    python experiments/ant_cpu.py                      # ~1.5 h on 2 quiet CPU cores
    python experiments/ant_cpu.py --programs fpo,ppo   # some of them
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
    # How the variant's flow-policy settings were chosen: one seed per setting, 2M steps.
    "sweep": (
        "FPO sweep: source noise x lr",
        ["--variant", "cpu", "--num-timesteps", "2000000", "--num-evals", "5",
         "--sweep", "flow_noise_scale=0.3,0.6", "--sweep", "learning_rate=3e-4,1e-3"],
    ),
}  # fmt: skip
COMPARED = ("fpo", "ppo", "fpo_paper", "fpo++")
EVALUATION = {
    "fpo": "sampler from random noise",
    "ppo": "mean action",
    "fpo_paper": "sampler from random noise",
    "fpo++": "EMA actor from zero noise, 5 Euler steps",
    "sweep": "sampler from random noise",
}
SMOKE = ["--num-envs", "64", "--batch-size", "32", "--num-timesteps", "2560", "--num-evals", "1"]


def run_dir(args: argparse.Namespace, name: str) -> Path:
    return args.runs_dir / f"ant_cpu_{name.replace('+', 'p')}"


def finished(path: Path) -> bool:
    rows = _rows(path)
    return bool(rows) and rows[-1].get("env_steps", 0) > 0 and "eval/episode_return" in rows[-1]


def _rows(path: Path) -> list[dict]:
    metrics = path / "metrics.jsonl"
    return [json.loads(line) for line in metrics.open()] if metrics.exists() else []


def run_program(name: str, args: argparse.Namespace) -> None:
    path = run_dir(args, name)
    if finished(path):
        return
    flags = PROGRAMS[name][1] + (SMOKE if args.smoke else [])
    cmd = [sys.executable, "-m", "fpo_jax.train", *BASE, *flags, "--run-dir", str(path)]
    if path.exists():
        cmd += ["--overwrite"]
    common.log(f"{name}: {' '.join(cmd[1:])}")
    subprocess.run(cmd, cwd=REPO, check=True)


def report(args: argparse.Namespace) -> None:
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    rows, commands = [], []
    for i, name in enumerate(COMPARED):
        label, flags = PROGRAMS[name]
        history = _rows(run_dir(args, name))
        if not history:
            continue
        steps, returns = common.eval_curve(history, 3)
        common.plot_curves(ax, steps, returns, label, f"C{i}")
        evals = [r for r in history if r.get("eval/episode_return") is not None]
        length = np.asarray(evals[-1]["per_member/eval/episode_length"])
        forward = np.asarray(evals[-1]["per_member/eval/reward_forward"])
        start, final = returns[0], returns[-1]
        rows.append([
            label, EVALUATION[name], common.fmt_pm(start, 0), common.fmt_pm(final, 0),
            ", ".join(f"{x:.0f}" for x in final), common.fmt_pm(forward, 0),
            common.fmt_pm(length, 0), f"{history[-1]['wall_time'] / 60:.0f}",
        ])  # fmt: skip
        commands.append(f"- {name}: `python -m fpo_jax.train {' '.join(BASE + flags)}`")
    common.label_return_axes(ax, "Brax ant on a CPU (1024 envs, 3 seeds)")
    fig.tight_layout()
    common.save_figure(fig, "ant_cpu.png")
    text = common.results_header(
        "The main job on a CPU: Brax ant, FPO vs Gaussian PPO and FPO++",
        "3,031,040 env steps per seed (37 iterations of 81,920), 3 seeds per program",
        ["1024 envs, batch 512 x 32 minibatches, unroll 5, 4 epochs, MJX backend",
         "evaluation: 32 envs, one 1000-step episode each, before training and at 5 points"],
    )  # fmt: skip
    text += "\n" + common.markdown_table(
        ["program", "evaluation", "start (mean ± s.e.)", "final (mean ± s.e.)", "final per seed",
         "final forward reward", "final episode length", "wall min (shared CPU)"],
        rows, "llrrlrrr",
    )  # fmt: skip
    text += "\nCommands (each run as one program of 3 seeds):\n\n" + "\n".join(commands) + "\n"
    text += "\n![eval return over env steps](ant_cpu.png)\n"
    text += sweep_table(args)
    common.write_result("ant_cpu.md", text)


def sweep_table(args: argparse.Namespace) -> str:
    """The flow-policy setting search behind the variant: one row per member."""
    path = run_dir(args, "sweep")
    history = _rows(path)
    if not history:
        return ""
    members = json.loads((path / "members.json").read_text())
    evals = [r for r in history if r.get("eval/episode_return") is not None]
    rows = [
        [m["flow_noise_scale"], m["learning_rate"], f"{evals[0]['per_member/eval/episode_return'][i]:.0f}",
         f"{evals[-1]['per_member/eval/episode_return'][i]:.0f}",
         f"{evals[-1]['per_member/eval/episode_length'][i]:.0f}"]
        for i, m in enumerate(members)
    ]  # fmt: skip
    variant = json.loads((path / "config.json").read_text()).get("variant")
    launched = (
        ""
        if variant == "cpu"
        else " This run predates the variant: it was launched with the same settings as explicit "
        "flags (`--backend mjx --num-envs 1024 --batch-size 512 ...`)."
    )
    return (
        f"\n## How the variant's FPO settings were chosen\n\n"
        f"`python -m fpo_jax.train {' '.join(BASE + PROGRAMS['sweep'][1])}` (one program, "
        f"seed 0, {evals[-1]['env_steps']:,} env steps; evaluation from random noise).{launched}"
        "\n\n"
        + common.markdown_table(
            ["flow_noise_scale", "learning_rate", "start", "final", "final episode length"],
            rows,
            "rrrrr",
        )  # fmt: skip
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--programs", default=",".join(PROGRAMS), help=", ".join(PROGRAMS))
    parser.add_argument("--runs-dir", type=Path, default=REPO / "runs")
    parser.add_argument("--report", action="store_true", help="only rebuild the table")
    args = common.parse_args(parser, argv, smoke="2 calls at 64 envs")
    if args.smoke and args.runs_dir == REPO / "runs":
        args.runs_dir = common.out_dir() / "runs"
    if not args.report:
        for name in args.programs.split(","):
            run_program(name.strip(), args)
    report(args)


if __name__ == "__main__":
    main()
