"""GridWorld multimodality side by side: the FPO authors' own GridWorld FPO vs ours.

Trains the authors' PyTorch GridWorld FPO (their repository's ``gridworld/``, commit 418c255,
driven by ``experiments/authors_gridworld.py``: their classes and their ``main.py`` settings,
a budget, a seed, no rendering; nothing of theirs is copied or edited) and ours at
``preset("gridworld", "fpo", variant="paper")``, 3 seeds each at 300k env steps, then evaluates
both the same way, with the helpers of ``experiments/multimodality.py`` on our GridWorld built
with ``move_threshold=AUTHORS_MOVE_THRESHOLD`` (it moves exactly when their env does):

* goal shares: 500 episodes per start cell (x, 12), x in {0, 6, 12, 18, 24}, and seed, fresh
  noise at every step (``multimodality.goal_shares``); their policy is sampled the way their
  ``DiffusionPolicy`` samples (10 Euler steps, t = 0 noise -> 1 action, raw t input), ported to
  JAX from their trained weights;
* the action distribution at the saddle cell (12, 12): 1000 samples, the share moving up /
  down / neither in y;
* a figure in the style of the paper's Figure 1: 40 trajectories from (12, 12) per seed and
  method (``multimodality.saddle_trajectories``).

``--stage ablation`` trains ours at the paper variant with one group of its settings put back
to what the variant had before it matched their code (env moves, networks, optimizer), to show
which differences decide the split.

Experiments-only requirements (not dependencies of fpo_jax): CPU PyTorch
(``pip install torch==2.13.0``; an unpinned torch pulls a CUDA build of several GB),
``gymnasium`` and ``matplotlib``, and a checkout of the authors' repository::

    git --git-dir=<mirror of the authors' repository> worktree add /work/authors_fpo 418c255
    python experiments/gridworld_side_by_side.py --authors-repo /work/authors_fpo
    python experiments/gridworld_side_by_side.py --authors-repo PATH --stage ablation
    python experiments/gridworld_side_by_side.py --authors-repo PATH --smoke

Each training run's evaluation is kept in ``results/gridworld_side_by_side/`` (their trained
actor weights too), so a stopped run resumes and ``--stage report`` only rewrites
``results/gridworld_side_by_side.md`` and ``gridworld_side_by_side.png``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (also puts the repository on sys.path)
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import multimodality as mm  # noqa: E402
import numpy as np  # noqa: E402

from fpo_jax import envs  # noqa: E402
from fpo_jax.config import replace  # noqa: E402
from fpo_jax.presets import preset  # noqa: E402
from fpo_jax.toy_envs import AUTHORS_MOVE_THRESHOLD, discretize_action  # noqa: E402
from fpo_jax.train import train  # noqa: E402
from fpo_jax.trainer import Trainer  # noqa: E402

SEEDS = 3
EPISODES = 500  # per start cell and seed
ACTION_SAMPLES = 1000
NUM_TRAJ = 40
# Settings the paper variant had before it matched the authors' code, grouped by where they
# live; the ablation puts one group back at a time (and all of them: the old variant).
BEFORE = {
    "env moves at +-1/3 after tanh": dict(env_kwargs=()),
    "SiLU, sin/cos t embedding, Flax init": dict(
        activation="silu", flow_time_input="embedding", network_init="flax"
    ),
    "one global gradient clip, critic weight 0.25": dict(
        grad_clip_scope="global", value_loss_coef=0.25
    ),
}
# All three at once is the variant as it was (results/multimodality_gridworld_paper.md); run it
# with --with-old.
OLD_VARIANT = "all three (the variant before)"
OLD_CHANGES = {k: v for d in BEFORE.values() for k, v in d.items()}


class PolicyState(NamedTuple):
    """What multimodality's samplers read of a train state (a pytree, so it can be jitted)."""

    params: Any
    obs_stats: Any = None


def cache_dir() -> Path:
    return common.out_dir() / "gridworld_side_by_side"


# ----------------------------------------------------------------------------------------------
# The authors' policy, sampled in JAX from their trained weights


def authors_sampler(params, stats, obs, key):
    """Their DiffusionPolicy's sampler: x ~ N(0, I) at t = 0, 10 Euler steps of
    v = L3 relu(L2 relu(L1 [obs, x, t])) to t = 1; returns tanh of the raw action, which our
    GridWorld with AUTHORS_MOVE_THRESHOLD moves on exactly as their env moves on the raw one.

    params: {"layer1.weight": (64, 5), ...} (torch layout, out x in); obs (..., 2) -> (..., 2).
    """
    del stats
    return jnp.tanh(authors_raw_action(params, obs, jax.random.normal(key, obs.shape[:-1] + (2,))))


def authors_raw_action(params, obs, noise):
    """The raw action their sampler integrates from the initial ``noise`` (..., 2)."""
    dense = lambda name, h: h @ params[f"{name}.weight"].T + params[f"{name}.bias"]
    x = noise
    for k in range(10):
        t = jnp.full(obs.shape[:-1] + (1,), k / 10.0)
        h = jax.nn.relu(dense("layer1", jnp.concatenate([obs, x, t], -1)))
        x = x + 0.1 * dense("layer3", jax.nn.relu(dense("layer2", h)))
    return x


def load_authors(steps: int, seed: int) -> dict:
    d = np.load(cache_dir() / f"authors_{steps}_seed{seed}.npz")
    return {k: d[k] for k in d.files}


def train_authors(repo: str, steps: int, seed: int) -> None:
    """One run in its own process (their code keeps global state: torch / numpy RNGs)."""
    out = cache_dir() / f"authors_{steps}_seed{seed}.npz"
    if out.exists():
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    script = Path(__file__).resolve().parent / "authors_gridworld.py"
    common.log(f"training the authors' GridWorld FPO: {steps:,} steps, seed {seed}")
    subprocess.run([sys.executable, str(script), repo, str(steps), str(seed), str(out)], check=True)


# ----------------------------------------------------------------------------------------------
# Evaluation (both methods, one code path)


def evaluate(trainer: Trainer, act, states: list, key) -> dict[str, np.ndarray]:
    """Goal shares from multimodality's start cells, saddle actions and trajectories.

    states: one state per seed (a TrainState or a PolicyState). Returns arrays with a leading seed
    axis: top / bottom (S, len(GRID_STARTS)), moves (S, ACTION_SAMPLES, 2) in {-1, 0, 1},
    actions (S, ACTION_SAMPLES, 2) squashed, path (S, steps + 1, NUM_TRAJ, 2), goal (S, NUM_TRAJ).
    """
    threshold = trainer.env.move_threshold
    out: dict[str, list] = {k: [] for k in ("top", "bottom", "moves", "actions", "path", "goal")}
    shares = jax.jit(lambda st, k: mm.goal_shares(trainer, act, st, k, EPISODES))
    traj = jax.jit(lambda st, k: mm.saddle_trajectories(trainer, act, st, k, NUM_TRAJ))
    saddle_obs = jnp.zeros((ACTION_SAMPLES, 2))  # the observation of (12, 12)
    for i, st in enumerate(states):
        k1, k2, k3 = jax.random.split(jax.random.fold_in(key, i), 3)
        top, bottom = shares(st, k1)
        a = jax.jit(act)(st.params, st.obs_stats, saddle_obs, k2)
        path, goal = traj(st, k3)
        for name, v in zip(
            out, (top, bottom, discretize_action(a, threshold), a, path, goal), strict=True
        ):
            out[name].append(np.asarray(v))
    return {k: np.stack(v) for k, v in out.items()}


def eval_trainer(config) -> Trainer:
    return Trainer(envs.make_env("gridworld", **config.env_options), config)


def check_port(repo: str, params: dict) -> float:
    """Max |difference| between their DiffusionPolicy.sample_action (torch) and
    :func:`authors_sampler` on the same weights, initial noise and observations."""
    import torch

    sys.path.insert(0, str(Path(repo).resolve() / "gridworld"))
    from models.diffusion_policy import DiffusionPolicy

    policy = DiffusionPolicy(5, 2, device=torch.device("cpu"), fixed_noise_inference=True)
    policy.load_state_dict({k: torch.tensor(np.array(v)) for k, v in params.items()})
    worst = 0.0
    for obs in ([0.0, 0.0], [0.5, -1 / 12], [-1.0, 0.75]):
        theirs = policy.sample_action(torch.tensor(obs)).detach().numpy()
        noise = jnp.asarray(policy.init_noise.numpy())
        ours = np.asarray(authors_raw_action(params, jnp.asarray([obs]), noise))[0]
        worst = max(worst, float(np.max(np.abs(ours - theirs))))
    return worst


def run_authors_eval(repo: str, steps: int, seeds: int) -> None:
    out = cache_dir() / f"eval_authors_{steps}.npz"
    done = [s for s in range(seeds) if (cache_dir() / f"authors_{steps}_seed{s}.npz").exists()]
    if not done or (out.exists() and list(np.load(out)["seed"]) == done):
        return
    runs = [load_authors(steps, s) for s in done]
    states = [
        PolicyState({k[6:]: jnp.asarray(v) for k, v in r.items() if k.startswith("actor/")})
        for r in runs
    ]
    err = check_port(repo, {k: np.asarray(v) for k, v in states[0].params.items()})
    common.log(f"their sampler vs its JAX port, same weights and noise: max |diff| {err:.1e}")
    if err > 1e-4:
        raise RuntimeError(f"the JAX port of their sampler differs from theirs by {err}")
    trainer = eval_trainer(preset("gridworld", "fpo", variant="paper"))
    res = evaluate(trainer, authors_sampler, states, jax.random.PRNGKey(2))
    res["seed"] = np.array(done)
    res["port_error"] = np.array(err)
    res["env_steps"] = np.array([int(r["env_steps"]) for r in runs])
    res["wall_s"] = np.array([float(r["wall_s"]) for r in runs])
    res["final_train_return"] = np.array([float(np.mean(r["returns"][-5:])) for r in runs])
    np.savez(out, **res)


def run_ours(label: str, changes: dict, steps: int, seeds: int) -> None:
    out = cache_dir() / f"eval_ours_{slug(label)}_{steps}.npz"
    if out.exists():
        return
    cfg = replace(preset("gridworld", "fpo", variant="paper"), **changes)
    common.log(f"training ours ({label}): {steps:,} steps x {seeds} seeds")
    t0 = time.perf_counter()
    res = train("gridworld", cfg, num_timesteps=steps, num_seeds=seeds, progress=False)
    wall = time.perf_counter() - t0
    states = [res.seed(i) for i in range(seeds)]
    ev = evaluate(
        res.trainer, mm.make_sampler(res.trainer, "random"), states, jax.random.PRNGKey(2)
    )
    _, curve = common.eval_curve(res.history, seeds)
    ev["seed"] = np.arange(seeds)
    ev["env_steps"] = np.full(seeds, res.history[-1]["env_steps"])
    ev["wall_s"] = np.full(seeds, wall)
    ev["final_eval_return"] = np.asarray(curve[-1])
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **ev)


def slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label).strip("_")[:40]


# ----------------------------------------------------------------------------------------------
# Report


SADDLE_INDEX = mm.GRID_STARTS.index(mm.SADDLE)

# Every difference found between their gridworld/ code and ours at the paper variant, and
# whether the variant now matches it (read from both codes).
DIFFERENCES = [
    ("env move", "round(clip(a, -1, 1)) of the raw action", "tanh(a), moves at +-1/3",
     "matched: `move_threshold` = tanh(0.5) (exactly the same moves)"),
    ("activation", "ReLU", "SiLU", "matched: `activation='relu'`"),
    ("initialisation", "PyTorch nn.Linear default, U(+-1/sqrt(fan_in)) kernels and biases",
     "Flax LeCun normal, zero biases", "matched: `network_init='torch'`"),
    ("flow-time input", "raw t", "8-dim sin/cos embedding", "matched: `flow_time_input='raw'`"),
    ("flow-time direction", "t = 0 noise, t = 1 action; target x1 - eps",
     "t = 1 noise; target eps - a",
     "not matched (with raw t an affine change of the first layer's input: only the "
     "initial bias differs)"),
    ("optimizers", "one Adam per network, each gradient clipped to norm 0.5, critic MSE weight 1",
     "one Adam, one global clip 0.5 over both, critic weight 0.25",
     'matched: `grad_clip_scope="per_network"`, `value_loss_coef=1.0`'),
    ("advantages", "GAE once per batch with the rollout's critic, normalised over the batch",
     "GAE per minibatch with the current critic, normalised per minibatch", "not matched"),
    ("critic target", "A + V of the rollout's critic", "GAE return of the current critic",
     "not matched"),
    ("truncation at 100 steps", "read as termination (no bootstrap)", "bootstrapped",
     "not matched"),
    ("rollout", "one env, whole episodes until >= 2048 steps", "60 envs x 34 steps (2040), auto-reset",
     "not matched (same start distribution)"),
    ("minibatches", "6 of step // 6 random transitions, plus a 7th of the remainder (< 6)",
     "6 of 10 whole 34-step trajectories", "not matched"),
    ("learning rate", "linear decay over 200M steps (< 0.5 % by 1M)", "constant", "not matched"),
    ("same already", "N = 50, t ~ U(0, 1), u-MSE, per-pair and mean log-ratio clamps 3, clip 0.2, "
     "lr 3e-4, 10 epochs, gamma 0.99, lambda 0.98, 64-64 nets, output unscaled, no obs "
     "normalisation, reward 20 unscaled, 10 Euler steps from N(0, I), random non-goal starts",
     "", ""),
]  # fmt: skip


def split_rows(name: str, ev: dict) -> list[list[str]]:
    """One row per seed: saddle shares, first moves at the saddle, starts that split."""
    rows = []
    for s in range(ev["top"].shape[0]):
        top, bottom = ev["top"][s], ev["bottom"][s]
        dy = ev["moves"][s][:, 1]
        both = int(np.sum(np.minimum(top, bottom) >= 0.1))
        rows.append(
            [
                name,
                str(ev["seed"][s]) if "seed" in ev else str(s),
                f"{ev['env_steps'][s]:,}",
                f"{100 * top[SADDLE_INDEX]:.1f} / {100 * bottom[SADDLE_INDEX]:.1f}",
                f"{100 * np.mean(dy > 0):.0f} / {100 * np.mean(dy < 0):.0f} / "
                f"{100 * np.mean(dy == 0):.0f}",
                f"{both} / {len(mm.GRID_STARTS)}",
                "yes" if min(top[SADDLE_INDEX], bottom[SADDLE_INDEX]) >= 0.1 else "no",
            ]
        )
    return rows


def seeds_that_split(ev: dict) -> int:
    return int(np.sum(np.minimum(ev["top"][:, SADDLE_INDEX], ev["bottom"][:, SADDLE_INDEX]) >= 0.1))


def plot(evals: dict[str, dict], name: str) -> None:
    """Figure 1 style: per method (row) and seed (column) the trajectories from (12, 12);
    last column: the sampled actions at (12, 12), all seeds."""
    plt = common.pyplot()
    seeds = max(ev["top"].shape[0] for ev in evals.values())
    fig, axes = plt.subplots(len(evals), seeds + 1, figsize=(3.3 * (seeds + 1), 3.4 * len(evals)))
    axes = np.atleast_2d(axes)
    size = 25
    rng = np.random.default_rng(0)
    for row, (method, ev) in enumerate(evals.items()):
        for s in range(seeds):
            ax = axes[row, s]
            if s >= ev["top"].shape[0]:  # a method with fewer seeds
                ax.axis("off")
                continue
            for band in ((-0.5, 1.5), (size - 2.5, size - 0.5)):
                ax.axhspan(*band, color="C2", alpha=0.15)
            path, goal = ev["path"][s].astype(float), ev["goal"][s]
            jitter = rng.uniform(-0.3, 0.3, (1, path.shape[1], 2))
            for i in range(path.shape[1]):
                color = "C0" if goal[i] > 0 else ("C3" if goal[i] < 0 else "grey")
                p = path[:, i] + jitter[:, i]
                ax.plot(p[:, 0], p[:, 1], color=color, lw=0.7, alpha=0.6)
            ax.plot(*mm.SADDLE, "k*", ms=10)
            ax.set_xlim(-0.8, size - 0.2)
            ax.set_ylim(-0.8, size - 0.2)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            t, b = ev["top"][s, SADDLE_INDEX], ev["bottom"][s, SADDLE_INDEX]
            seed = ev["seed"][s] if "seed" in ev else s
            ax.set_title(f"{method}, seed {seed}\ntop {t:.0%} / bottom {b:.0%}", fontsize=8)
        ax = axes[row, seeds]
        for s in range(ev["actions"].shape[0]):
            a = ev["actions"][s][:300]
            ax.scatter(a[:, 0], a[:, 1], s=2, alpha=0.4, label=f"seed {s}")
        for v in (-AUTHORS_MOVE_THRESHOLD, AUTHORS_MOVE_THRESHOLD):
            ax.axhline(v, color="k", lw=0.5)
            ax.axvline(v, color="k", lw=0.5)
        ax.set_xlim(-1.05, 1.05)
        ax.set_ylim(-1.05, 1.05)
        ax.set_aspect("equal")
        ax.set_title(f"{method}: actions at (12, 12)\n(tanh of the raw action)", fontsize=8)
        ax.legend(fontsize=6, markerscale=3, loc="lower right")
    fig.suptitle(
        f"GridWorld, {NUM_TRAJ} episodes from (12, 12) per seed: blue = top goal, red = bottom"
    )
    common.save_figure(fig, name)


def report(steps_list: list[int], seeds: int, with_ablation: bool) -> None:
    header = common.results_header(
        "GridWorld multimodality: the FPO authors' code vs fpo_jax, side by side",
        ", ".join(f"{s:,}" for s in steps_list) + f" env steps, {seeds} seeds each",
        [
            "theirs: github.com/akanazawa/fpo `gridworld/` at 418c255 (PyTorch, CPU), their "
            "main.py settings, driven by experiments/authors_gridworld.py (seeded, no rendering, "
            "stopped after the first 2048-step iteration that reaches the budget)",
            "ours: `preset('gridworld', 'fpo', variant='paper')`, the seeds vmapped in one "
            "program (num_seeds)",
            f"evaluation: {EPISODES} episodes per start cell (x, 12) and seed, fresh noise every "
            f"step; {ACTION_SAMPLES} actions sampled at (12, 12); our GridWorld with "
            "move_threshold = tanh(0.5) (moves exactly as their env)",
        ],
    )
    md = [header]
    evals_fig = {}
    summary = []
    for steps in steps_list:
        rows = []
        for method, path in (
            ("theirs", cache_dir() / f"eval_authors_{steps}.npz"),
            ("ours, paper", cache_dir() / f"eval_ours_paper_{steps}.npz"),
        ):
            if not path.exists():
                continue
            ev = dict(np.load(path))
            rows += split_rows(method, ev)
            summary.append(
                [method, f"{steps:,}", f"{seeds_that_split(ev)} / {ev['top'].shape[0]}",
                 f"{ev['wall_s'].mean():.0f} s per seed" if method == "theirs" else
                 f"{ev['wall_s'][0]:.0f} s (all seeds in one program)"]
            )  # fmt: skip
            if steps == steps_list[0]:
                evals_fig[method] = ev
        if rows:
            md += [
                f"\n## {steps:,} env steps\n",
                "Per seed: the share of episodes from the saddle cell (12, 12) reaching the top "
                "/ bottom goal rows; the sampled first move's y component at (12, 12) (up / down "
                "/ none, %); how many of the 5 start cells (x, 12) send >= 10 % of their episodes "
                "to each goal; whether (12, 12) does.\n",
                common.markdown_table(
                    [
                        "method",
                        "seed",
                        "env steps",
                        "(12, 12): top / bottom %",
                        "first move at (12, 12): up / down / none %",
                        "start cells with >= 10 % to each goal",
                        "(12, 12) splits",
                    ],
                    rows,
                    "llrrrrl",
                ),  # fmt: skip
            ]
    md += [
        "\n## Summary\n",
        common.markdown_table(
            [
                "method",
                "env steps",
                "seeds whose (12, 12) splits (>= 10 % to each goal)",
                "training wall time (shared CPU, not a speed comparison)",
            ],
            summary,
            "lrrr",
        ),  # fmt: skip
    ]
    if with_ablation:
        steps = steps_list[0]
        rows = []
        for label in ["paper (all matched)", *BEFORE, OLD_VARIANT]:
            path = (
                cache_dir()
                / f"eval_ours_{slug('paper' if label.startswith('paper') else label)}_{steps}.npz"
            )
            if not path.exists():
                continue
            ev = dict(np.load(path))
            top, bottom = ev["top"][:, SADDLE_INDEX], ev["bottom"][:, SADDLE_INDEX]
            rows.append(
                [label, f"{seeds_that_split(ev)} / {len(top)}",
                 ", ".join(f"{100 * t:.0f}/{100 * b:.0f}" for t, b in zip(top, bottom, strict=True)),
                 ", ".join(f"{100 * np.mean(m[:, 1] > 0):.0f}/{100 * np.mean(m[:, 1] < 0):.0f}"
                           for m in ev["moves"])]
            )  # fmt: skip
        md += [
            f"\n## Ablation ({steps:,} env steps, ours): one group of settings put back\n",
            "Ours at the paper variant with one group of settings back to what the variant had "
            "before it matched the authors' code. Seeds that split at (12, 12) (>= 10 % of the "
            "episodes to each goal), the top/bottom shares per seed (%), and the sampled first "
            "move per seed (up/down %). All three groups put back is the variant as it was "
            "before, measured in `multimodality_gridworld_paper.md` (same budget and seeds, "
            "before this change): 0 / 3 seeds split, each sent 100 % of the saddle episodes to "
            "one goal (`--with-old` reruns it here).\n",
            common.markdown_table(
                [
                    "ours at the paper variant, but",
                    "seeds that split",
                    "(12, 12) top/bottom % per seed",
                    "first move up/down % per seed",
                ],
                rows,
                "lrll",
            ),  # fmt: skip
        ]
    md += [
        "\n## Differences between their code and ours (paper variant)\n",
        common.markdown_table(["what", "theirs", "ours before", "the paper variant now"],
                              DIFFERENCES, "llll"),
    ]  # fmt: skip
    plot(evals_fig, "gridworld_side_by_side.png")
    md.append("\n![side by side](gridworld_side_by_side.png)\n")
    common.write_result("gridworld_side_by_side.md", "\n".join(md))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--authors-repo", required=True, help="checkout of the authors' repository")
    p.add_argument("--steps", type=int, nargs="+", default=[300_000])
    p.add_argument("--seeds", type=int, default=SEEDS)
    p.add_argument(
        "--stage", choices=["all", "authors", "ours", "ablation", "report"], default="all",
        help="all: theirs and ours, then the report (no ablation); ablation: ours with each "
        "group of settings put back (first --steps), then the report with the ablation",
    )  # fmt: skip
    p.add_argument(
        "--with-old", action="store_true",
        help="ablation: also train the variant as it was before (all three groups put back)",
    )  # fmt: skip
    args = common.parse_args(p, argv, "20k steps, 2 seeds")
    if args.smoke:
        args.steps, args.seeds = [20_400], 2
    common.enable_compilation_cache()
    if args.stage in ("all", "authors"):
        for steps in args.steps:
            for seed in range(args.seeds):
                train_authors(args.authors_repo, steps, seed)
    for steps in args.steps:  # evaluates the seeds trained so far
        run_authors_eval(args.authors_repo, steps, args.seeds)
    if args.stage in ("all", "ours"):
        for steps in args.steps:
            run_ours("paper", {}, steps, args.seeds)
    if args.stage == "ablation":
        for label, changes in BEFORE.items():
            run_ours(label, changes, args.steps[0], args.seeds)
        if args.with_old:
            run_ours(OLD_VARIANT, OLD_CHANGES, args.steps[0], args.seeds)
    with_ablation = args.stage in ("ablation", "report") and any(
        (cache_dir() / f"eval_ours_{slug(label)}_{args.steps[0]}.npz").exists() for label in BEFORE
    )
    report(args.steps, args.seeds, with_ablation)


if __name__ == "__main__":
    main()
