"""The steady training iteration, side by side: our FPO, our Gaussian PPO and the FPO authors' own.

One iteration = one rollout of 256 envs x 16 steps of 30 and 16 epochs of 32 minibatches of 128
trajectories (122,880 env steps, the paper's layout scaled to 256 envs), on Playground's
CartpoleBalance with MJX (``impl="jax"``). Each measurement is a fresh process that builds its
programs, runs one iteration (compiling) and then ``--iterations`` timed iterations, each
blocking on its outputs:

- ``authors``: the FPO authors' ``playground/`` code at commit 418c255, unmodified, imported from
  their checkout (``--authors-repo``): ``BatchedRolloutState.rollout`` then
  ``FpoState.training_step``, their two jitted programs, with ``FpoConfig``'s defaults (N = 8
  pairs, 10 flow steps, clip 0.05, 4 x 32 / 5 x 256 networks) at this layout. Their code needs
  Python 3.12 (it uses PEP 695 generics) with ``jax_dataclasses`` and ``wandb`` beside the same
  jax, MuJoCo and Playground as ours: ``--authors-python`` names that interpreter.
- ``fpo`` / ``ppo``: ours, ``fpo_jax.trainer.Trainer.train_step`` as ``fpo_jax.train`` compiles
  it (one program, state donated), with ``--env CartpoleBalance``'s defaults for the algorithm.

Processes run in the order authors, fpo, ppo, ppo, fpo, authors, so a drift of the machine's speed
cancels in each pair's ratio. Time it only on a quiet machine::

    python experiments/steady_step.py --authors-repo /work/authors_fpo \\
        --authors-python /work/venv312/bin/python
    python experiments/steady_step.py --report     # the table again from the stored JSON
    python experiments/steady_step.py --smoke ...  # tiny layout, to /tmp

Writes ``experiments/results/steady_step_CartpoleBalance_cpu.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (also puts the repository on sys.path)
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NAME = "steady_step_CartpoleBalance_cpu"
LAYOUT, SMOKE_LAYOUT = common.R1_LAYOUT, common.SMOKE_LAYOUT
ORDER = ("authors", "fpo", "ppo", "ppo", "fpo", "authors")

# The authors' side: their classes driven as their train_fpo.py drives them, without its logging.
# argv: iterations, layout as JSON. Prints "ITER i seconds" per iteration.
AUTHORS_CHILD = """
import json, sys, time
import jax
from mujoco_playground import registry
from flow_policy import fpo, rollouts

iterations, layout = int(sys.argv[1]), json.loads(sys.argv[2])
env = registry.load("CartpoleBalance", config_overrides={"impl": "jax"})
config = fpo.FpoConfig(
    num_envs=layout["num_envs"], batch_size=layout["batch_size"],
    num_minibatches=layout["num_minibatches"], unroll_length=layout["unroll_length"],
    num_updates_per_batch=layout["num_epochs"],
)
agent = fpo.FpoState.init(prng=jax.random.key(0), env=env, config=config)
rollout = rollouts.BatchedRolloutState.init(env, prng=jax.random.key(0), num_envs=config.num_envs)
for i in range(iterations + 1):
    start = time.perf_counter()
    rollout, transitions = rollout.rollout(
        agent, episode_length=config.episode_length, iterations_per_env=config.iterations_per_env
    )
    agent, metrics = agent.training_step(transitions)
    jax.block_until_ready((agent.params, metrics))
    print(f"ITER {i} {time.perf_counter() - start:.4f}", flush=True)
"""

# Ours: the training step of fpo_jax.train. argv: algo, iterations, layout as JSON.
OURS_CHILD = """
import json, sys, time
import jax
from fpo_jax import envs, runs
from fpo_jax.train import member_inputs, resolve_config
from fpo_jax.trainer import Trainer

algo, iterations, layout = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
config = resolve_config("CartpoleBalance", algo=algo, **layout)
env = envs.make_env(config.env, backend=config.backend, impl=config.impl, **config.env_options)
trainer = Trainer(env, config)
_, keys, hparams = member_inputs(config)
state = jax.jit(runs.over_members(trainer.init, config.num_members))(keys, hparams)
step = jax.jit(runs.over_members(trainer.train_step, config.num_members), donate_argnums=0)
for i in range(iterations + 1):
    start = time.perf_counter()
    state, metrics = step(state)
    jax.block_until_ready((state, metrics))
    print(f"ITER {i} {time.perf_counter() - start:.4f}", flush=True)
"""

LABELS = {
    "authors": "the FPO authors' FPO (418c255)",
    "fpo": "fpo_jax FPO",
    "ppo": "fpo_jax PPO (Gaussian)",
}


def measure(program: str, args: argparse.Namespace) -> list[float]:
    """One fresh process of ``program``: the seconds of each iteration (the first compiles)."""
    layout = json.dumps(SMOKE_LAYOUT if args.smoke else LAYOUT)
    iterations = str(args.iterations)
    if program == "authors":
        src = Path(args.authors_repo).resolve() / "playground" / "src"
        cmd = [args.authors_python, "-c", AUTHORS_CHILD, iterations, layout]
        env = dict(os.environ, PYTHONPATH=str(src))
    else:
        cmd = [sys.executable, "-c", OURS_CHILD, program, iterations, layout]
        env = dict(os.environ, PYTHONPATH=str(REPO))
    # No persistent compilation cache on either side: both compile in full.
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    done = subprocess.run(
        cmd, env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SystemExit(f"{program} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return [
        float(w[2]) for w in (ln.split() for ln in done.stdout.splitlines()) if w[:1] == ["ITER"]
    ]


def report(data: dict) -> str:
    runs = data["runs"]
    steady = {p: [float(np.median(r["seconds"][1:])) for r in runs if r["program"] == p]
              for p in LABELS}  # fmt: skip
    first = {p: [r["seconds"][0] for r in runs if r["program"] == p] for p in LABELS}
    steps = data["env_steps_per_iteration"]
    rows = []
    for p, label in LABELS.items():
        if not steady[p]:
            continue
        s = float(np.median(steady[p]))
        rows.append([
            label, len(steady[p]), ", ".join(f"{x:.2f}" for x in steady[p]), f"{s:.2f}",
            f"{steps / s:,.0f}", ", ".join(f"{x:.1f}" for x in first[p]),
        ])  # fmt: skip
    text = common.results_header(
        "The steady training iteration: our FPO, our PPO and the FPO authors' FPO",
        f"CartpoleBalance (MJX), {data['layout']}: {steps:,} env steps per iteration; "
        f"{data['iterations']} timed iterations per process, processes in the order "
        f"{', '.join(data['order'])}",
        data=[data["provenance"]],
    )
    text += "\n" + common.markdown_table(
        ["program", "processes", "median iteration s (each process)", "median s",
         "env steps/s", "first iteration s (compiles)"],
        rows, "lrrrrr",
    )  # fmt: skip
    pairs = []
    for other, what in [
        ("authors", "our FPO's speed against the authors' FPO (their seconds / ours)"),
        ("ppo", "our FPO's speed against our PPO (PPO's seconds / FPO's)"),
    ]:
        if steady[other] and steady["fpo"]:
            # Within each adjacent pair of processes (A B ... B A), then their median.
            per = [o / f for o, f in zip(steady[other], steady["fpo"], strict=True)]
            pairs.append(f"- {what}: **{np.median(per):.2f}x** (each adjacent pair: "
                         f"{', '.join(f'{x:.2f}' for x in per)})")  # fmt: skip
    text += "\n" + "\n".join(pairs) + "\n\n"
    text += (
        "Each process builds its programs, runs one iteration (which compiles; no persistent "
        "compilation cache on either side) and then the timed iterations, blocking on each "
        "iteration's outputs; a process's figure is the median of its timed iterations. Ours: "
        "the training step of `fpo_jax.train` (rollout and update in one program, the state "
        "donated) with `--env CartpoleBalance`'s defaults for the algorithm. The authors': "
        "their `BatchedRolloutState.rollout` then `FpoState.training_step` (two programs) with "
        "`FpoConfig`'s defaults at this layout, run by Python 3.12 beside the same jax, MuJoCo "
        "and Playground.\n"
    )
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--authors-repo", help="checkout of the authors' repository at 418c255")
    parser.add_argument("--authors-python", help="a Python 3.12 with jax_dataclasses and wandb")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--report", action="store_true", help="only rebuild the table")
    args = common.parse_args(parser, argv, smoke="tiny layout, 2 iterations")
    path = common.out_dir() / f"{NAME}.json"
    if not args.report:
        if not (args.authors_repo and args.authors_python):
            parser.error("--authors-repo and --authors-python are needed to measure")
        if args.smoke:
            args.iterations = 2
        runs = []
        for program in ORDER:
            common.log(f"{program}...")
            seconds = measure(program, args)
            common.log(f"  {program}: " + ", ".join(f"{s:.2f}" for s in seconds))
            runs.append({"program": program, "seconds": seconds})
        layout = SMOKE_LAYOUT if args.smoke else LAYOUT
        data = {
            "layout": layout,
            "env_steps_per_iteration": layout["batch_size"] * layout["num_minibatches"]
            * layout["unroll_length"],
            "iterations": args.iterations,
            "order": list(ORDER),
            "runs": runs,
            "provenance": common.provenance(),
        }  # fmt: skip
        common.write_file(path, json.dumps(data, indent=1))
    common.write_result(f"{NAME}.md", report(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
