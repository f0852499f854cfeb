"""Sampler-agnosticism: one trained FPO policy, evaluated with many samplers, no retraining.

FPO's ratio never looks at how an action was sampled, so the velocity field trained with
10-step Euler rollouts can be integrated any other way at deployment. We train one FPO policy
(Brax ``inverted_pendulum``, spring backend, the CPU layout of ``tests/test_learning.py``, all
seeds vmapped) and evaluate the SAME parameters with Euler 1 / 10 / 50 steps, midpoint 10,
RK4 10, the stochastic (DPPO-style) sampler with per-step sigma 0.05 / 0.1 / 0.3, and zero-noise
starts (FPO++). Each sampler is a
``Trainer(env, dataclasses.replace(config, eval_integrator=..., eval_flow_steps=...,
eval_noise=..., eval_sigma=...))`` whose ``jax.vmap``-ed ``evaluate`` runs on ``result.state``
(leading seed axis) with the same evaluation keys (same initial states) for every sampler.

Run from the repository root::

    python experiments/sampler_agnostic.py                 # ~7 min on 2 CPU cores
    python experiments/sampler_agnostic.py --budget full   # 5 seeds, 4x the steps, 256 episodes
    python experiments/sampler_agnostic.py --smoke         # tiny budget, 3 samplers, to /tmp
    python experiments/sampler_agnostic.py --report        # rebuild from the stored JSON

Writes ``experiments/results/sampler_agnostic.json`` (every sampler's per-seed returns, the
training record, the provenance), and from it ``sampler_agnostic.md`` and
``sampler_agnostic.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (also puts the repository on sys.path)
import jax  # noqa: E402
import numpy as np  # noqa: E402

from fpo_jax import envs  # noqa: E402
from fpo_jax.presets import preset  # noqa: E402
from fpo_jax.train import train  # noqa: E402
from fpo_jax.trainer import Trainer  # noqa: E402

TASK = "inverted_pendulum"
# tests/test_learning.py's CPU layout (16,384 steps per iteration), 8 iterations instead of 12.
LAYOUT = dict(
    backend="spring", num_timesteps=131_072, num_envs=128, batch_size=128, num_minibatches=8,
    num_epochs=4, unroll_length=16, episode_length=1000, learning_rate=1e-3, clip_epsilon=0.1,
    num_evals=2, num_eval_envs=32,
)  # fmt: skip
# budget -> (steps factor, seeds, eval episodes per seed and sampler)
BUDGETS = {"small": (1.0, 2, 64), "full": (4.0, 5, 256), "smoke": (0.05, 2, 8)}
# (label, integrator, steps, noise, sigma, velocity evaluations per action)
SAMPLERS = [
    ("Euler 10 (training sampler)", "euler", 10, "random", 0.0, 10),
    ("Euler 1", "euler", 1, "random", 0.0, 1),
    ("Euler 50", "euler", 50, "random", 0.0, 50),
    ("midpoint 10", "midpoint", 10, "random", 0.0, 20),
    ("RK4 10", "rk4", 10, "random", 0.0, 40),
    ("stochastic 10, sigma 0.05", "stochastic", 10, "random", 0.05, 10),
    ("stochastic 10, sigma 0.1", "stochastic", 10, "random", 0.1, 10),
    ("stochastic 10, sigma 0.3", "stochastic", 10, "random", 0.3, 10),
    ("Euler 10, zero noise", "euler", 10, "zero", 0.0, 10),
    ("RK4 10, zero noise", "rk4", 10, "zero", 0.0, 40),
    ("Euler 50, zero noise", "euler", 50, "zero", 0.0, 50),
]
# --smoke: the training sampler, an integrator change and a noise change.
SMOKE_SAMPLERS = ("Euler 10 (training sampler)", "RK4 10", "Euler 10, zero noise")


def run(args: argparse.Namespace) -> dict:
    """Train once, evaluate the final parameters with every sampler; the compact record the
    report reads (``sampler_agnostic.json``)."""
    clock = common.Stopwatch()
    common.enable_compilation_cache()
    factor, seeds, episodes = BUDGETS[args.budget]
    samplers = [s for s in SAMPLERS if not args.smoke or s[0] in SMOKE_SAMPLERS]
    layout = dict(LAYOUT, num_timesteps=int(LAYOUT["num_timesteps"] * factor))
    common.log(f"training FPO on {TASK}: {layout['num_timesteps']:,} steps x {seeds} seeds")
    res = train(TASK, preset(TASK, "fpo"), num_seeds=seeds, progress=False, **layout)
    train_s = clock.seconds()
    _, curve = common.eval_curve(res.history, seeds)

    env = envs.make_env(TASK, backend=res.config.backend)
    keys = jax.random.split(jax.random.PRNGKey(2024), seeds)
    evaluated = []
    for label, integrator, steps, noise, sigma, nfe in samplers:
        config = dataclasses.replace(
            res.config, eval_integrator=integrator, eval_flow_steps=steps, eval_noise=noise,
            eval_sigma=sigma, num_eval_envs=episodes,
        )  # fmt: skip
        trainer = Trainer(env, config)
        t0 = time.perf_counter()
        # res.state has a leading seed axis: every output is (seeds,).
        out = jax.device_get(jax.jit(jax.vmap(trainer.evaluate))(res.state, keys))
        evaluated.append(dict(
            label=label, nfe=nfe, returns=np.asarray(out["eval/episode_return"]).tolist(),
            episode_std=float(np.mean(out["eval/episode_return_std"])),
            seconds=time.perf_counter() - t0,
        ))  # fmt: skip
        common.log(f"{label}: {common.fmt_pm(out['eval/episode_return'])}")
    return dict(
        budget=args.budget, layout=layout, seeds=seeds, episodes=episodes,
        trainer_eval_envs=res.config.num_eval_envs, train_seconds=train_s,
        final_curve=np.asarray(curve[-1]).tolist(), samplers=evaluated,
        provenance=common.provenance(),
    )  # fmt: skip


def report(record: dict) -> None:
    """The table and the figure from :func:`run`'s record."""
    samplers = record["samplers"]
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(9, 4))
    labels = [s["label"] for s in samplers]
    stats = np.array([common.mean_stderr(np.asarray(s["returns"])) for s in samplers])
    ax.barh(np.arange(len(labels)), stats[:, 0], xerr=stats[:, 1], color="C0", alpha=0.8)
    for i, s in enumerate(samplers):
        ax.scatter(s["returns"], np.full(len(s["returns"]), i), color="k", s=10, zorder=3)
    ax.set_yticks(np.arange(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("eval episode return (bars: mean ± s.e.; dots: seeds)")
    ax.set_title(f"One FPO policy on {TASK}, evaluated with different samplers")
    common.save_figure(fig, "sampler_agnostic.png")

    rows = [
        [s["label"], s["nfe"], common.fmt_pm(np.asarray(s["returns"])),
         f"{s['episode_std']:.1f}", f"{s['seconds']:.0f}"]
        for s in samplers
    ]  # fmt: skip
    md = [
        common.results_header(
            "Sampler-agnostic evaluation of one FPO policy",
            record["budget"],
            [
                f"training: FPO on `{TASK}`, preset + "
                + ", ".join(f"{k}={v}" for k, v in record["layout"].items())
                + f", {record['seeds']} seeds (vmapped); trained with 10-step Euler from random "
                "noise",
                f"evaluation: {record['episodes']} episodes per seed and sampler, the same keys "
                "for every sampler; no retraining",
            ],
            data=[record["provenance"]],
        ),
        f"Training took {record['train_seconds']:.0f} s (compilation included); the trainer's "
        f"own final evaluation (Euler 10, random noise, {record['trainer_eval_envs']} "
        f"episodes): {common.fmt_pm(np.asarray(record['final_curve']))}.\n",
        "Return: mean ± standard error over seeds of the mean episode return (max 1000); "
        "'episode std' is the spread of returns across episodes within a seed (mean over seeds); "
        "NFE = velocity-network evaluations per action; s = compile + evaluation time.\n",
        common.markdown_table(["sampler", "NFE", "eval return", "episode std", "s"], rows, "lrrrr"),
        "\n![samplers](sampler_agnostic.png)\n",
    ]
    common.write_result("sampler_agnostic.md", "\n".join(md))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--budget", choices=sorted(BUDGETS), default="small")
    p.add_argument("--report", action="store_true", help="only rebuild from the stored JSON")
    smoke = f"--budget smoke and only the samplers {', '.join(SMOKE_SAMPLERS)}"
    args = common.parse_args(p, argv, smoke, smoke_budget="smoke")
    path = common.out_dir() / "sampler_agnostic.json"
    if not args.report:
        common.write_file(path, json.dumps(run(args), indent=1))
    report(json.loads(path.read_text()))


if __name__ == "__main__":
    main()
