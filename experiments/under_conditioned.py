"""An under-conditioned task: does a flow policy win where the observation leaves the right action
ambiguous between two modes?

The task is the built-in ``aliased_reach`` (:class:`fpo_jax.toy_envs.AliasedReach`): reach a
target on a line from its distance alone, not its side, with 4 attempts per episode (a miss
changes nothing). One mode per observation solves 50 % of the episodes, reaching for +|x*| or
-|x*| with probability 1/2 each solves 94 %, and every Gaussian shape tried by hand solves at most
~52 % (the env's docstring). So a policy that keeps both modes beats any single-mode one by
~44 points, and the question is whether training finds it.

Trained with ``fpo_jax.train.train`` at the env's preset (300k env steps, 64 envs x 4 attempts,
lr 3e-4, clip 0.1; evaluation on sampled actions for every algorithm), 5 seeds per setting as one
program: FPO (N = 8 pairs, the paper's mean ratio), FPO with per-sample ratios and ASPO (the
setting that kept both modes of the symmetric bandit, ``experiments/ratio_fidelity.py``) and
Gaussian PPO, and the options an exact density allows: each FPO setting with the sampler's exact
entropy bonus, and a flow policy trained with PPO on the sampler's exact ratio. Every ``--every`` calls the state is copied, and afterwards each copy's policy is
sampled at fixed distances: the share of actions within the goal radius of +|x*| and of -|x*|
shows whether and when a policy loses a mode.

Run from the repository root::

    python experiments/under_conditioned.py           # ~25 min on 2 quiet CPU cores
    python experiments/under_conditioned.py --report  # rebuild the table from the stored runs
    python experiments/under_conditioned.py --smoke   # 20k steps, 2 seeds, to /tmp

Writes ``experiments/results/under_conditioned.md`` and ``under_conditioned.png`` (success over
training and the mode shares at distance 0.6 over training) from one JSON per setting under
``experiments/results/under_conditioned/`` (a setting stored there is not run again).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (also puts the repository on sys.path)
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from fpo_jax import toy_envs  # noqa: E402
from fpo_jax.train import train  # noqa: E402

ENV = "aliased_reach"
# The flow policies' entropy bonus (the sampler's exact entropy, --flow-entropy-cost) at the
# Gaussian PPO preset's entropy coefficient.
ENTROPY = 0.01
SETTINGS: dict[str, dict[str, Any]] = {
    "FPO": dict(algo="fpo"),
    "FPO + entropy": dict(algo="fpo", flow_entropy_cost=ENTROPY),
    "FPO, per-sample + ASPO": dict(algo="fpo", ratio="per_sample", trust_region="aspo"),
    "FPO, per-sample + ASPO + entropy": dict(
        algo="fpo", ratio="per_sample", trust_region="aspo", flow_entropy_cost=ENTROPY
    ),
    "flow PPO (exact ratio)": dict(algo="flow_ppo"),
    "flow PPO (exact ratio) + entropy": dict(algo="flow_ppo", flow_entropy_cost=ENTROPY),
    "Gaussian PPO": dict(algo="ppo"),
}
COLORS = dict(zip(SETTINGS, ["C0", "C4", "C2", "C5", "C3", "C6", "C1"], strict=True))
DISTANCES = (0.3, 0.6, 0.9)  # observations at which the policies are sampled
TRACKED = 0.6  # the distance whose mode shares are followed over training
BOTH_MODES = 0.10  # "keeps both modes": >= 10 % of the actions at each


def mode_shares(policy, key: jax.Array, samples: int) -> np.ndarray:
    """(len(DISTANCES), 2): share of sampled actions within the goal radius of +d and of -d."""
    radius = toy_envs.AliasedReach().goal_radius
    out = []
    for d, k in zip(DISTANCES, jax.random.split(key, len(DISTANCES)), strict=True):
        a = np.asarray(policy(jnp.full((samples, 1), d, jnp.float32), k))[:, 0]
        out.append([np.mean(np.abs(a - d) < radius), np.mean(np.abs(a + d) < radius)])
    return np.array(out)


def run_setting(label: str, overrides: dict[str, Any], args: argparse.Namespace) -> dict:
    kept: list[tuple[int, Any]] = []  # (env steps, state copy) every --every calls

    def keep(record: dict[str, Any], state: Any) -> None:
        if record["call"] % args.every == 0:
            kept.append((record["env_steps"], state))

    common.log(f"{label}: training {args.seeds} seeds")
    budget = {} if args.steps is None else dict(num_timesteps=args.steps)
    result = train(
        ENV, num_seeds=args.seeds, progress=False, progress_fn=keep, **budget, **overrides
    )
    steps, success = common.eval_curve(result.history, args.seeds)
    key = jax.random.PRNGKey(7)
    trainer = result.trainer

    def shares_of(state: Any, i: int) -> np.ndarray:
        member = jax.tree.map(lambda x: x[i], state)
        policy = trainer.policy_fn(member.eval_params, member.obs_stats, member.hparams)
        return mode_shares(policy, key, args.samples)

    over_training = [
        (s, [shares_of(state, i)[DISTANCES.index(TRACKED)].tolist() for i in range(args.seeds)])
        for s, state in kept
    ]
    final = np.stack([shares_of(result.state, i) for i in range(args.seeds)])  # (seeds, D, 2)
    return {
        "label": label,
        "overrides": overrides,
        "steps": steps.tolist(),
        "success": success.tolist(),  # (evals, seeds)
        "final_shares": final.tolist(),
        "tracked_shares": over_training,
        "wall_seconds": result.history[-1]["wall_time"],
        "provenance": common.provenance(),
    }


# ----------------------------------------------------------------------------------------------
# Yardsticks, computed: a stationary policy that hits +d with probability p+ and -d with p- per
# attempt solves 1/2 (1 - (1 - p+)^4) + 1/2 (1 - (1 - p-)^4) of the episodes at distance d.

ATTEMPTS = 4


def success_at(p_plus: np.ndarray, p_minus: np.ndarray) -> np.ndarray:
    return 0.5 * (1 - (1 - p_plus) ** ATTEMPTS) + 0.5 * (1 - (1 - p_minus) ** ATTEMPTS)


def tanh_gaussian_hits(d: float, mu: np.ndarray, s: np.ndarray, radius: float) -> tuple:
    """P(|tanh(u) - d| < r) and P(|tanh(u) + d| < r) for u ~ N(mu, s^2) (arrays broadcast)."""
    from scipy.special import ndtr

    def inside(lo: float, hi: float) -> np.ndarray:
        lo_u = np.arctanh(np.clip(lo, -1 + 1e-7, 1 - 1e-7))
        hi_u = np.arctanh(np.clip(hi, -1 + 1e-7, 1 - 1e-7))
        return ndtr((hi_u - mu) / s) - ndtr((lo_u - mu) / s)

    return inside(d - radius, d + radius), inside(-d - radius, -d + radius)


def yardsticks(num_distances: int = 81) -> dict[str, float]:
    """Expected success over the env's distances (|x*| ~ U[min_distance, 1]) of: one mode per
    observation, both modes at 1/2 each, and the best tanh-Gaussian per distance, found by a
    grid search over its mean (601 values in [-3, 3]) and std (300 values, 1e-3 to 3, log)."""
    env = toy_envs.AliasedReach()
    ds = np.linspace(env.min_distance, 1.0, num_distances)
    mu = np.linspace(-3.0, 3.0, 601)[:, None]
    s = np.exp(np.linspace(np.log(1e-3), np.log(3.0), 300))[None, :]
    best = []
    for d in ds:
        p_plus, p_minus = tanh_gaussian_hits(float(d), mu, s, env.goal_radius)
        best.append(float(success_at(p_plus, p_minus).max()))
    # The average over a uniform distance: trapezoid rule on the grid.
    mean = lambda y: float(np.trapezoid(y, ds) / (ds[-1] - ds[0]))  # noqa: E731
    one, both = np.ones_like(ds), np.full_like(ds, 0.5)
    return {
        "one mode per observation": mean(success_at(one, 0 * one)),
        "+d or -d, probability 1/2 each": mean(success_at(both, both)),
        "best tanh-Gaussian per distance": mean(np.array(best)),
    }


# ----------------------------------------------------------------------------------------------
# Report


def both_modes(final_shares: np.ndarray) -> np.ndarray:
    """(seeds,) True where the policy keeps >= 10 % of its actions at each mode, at every
    sampled distance."""
    return np.all(final_shares.min(axis=-1) >= BOTH_MODES, axis=-1)


def summary_table(results: list[dict]) -> str:
    rows = []
    for res in results:
        success = np.asarray(res["success"])
        final = np.asarray(res["final_shares"])
        per_seed = ", ".join(f"{x:.2f}" for x in success[-1])
        on_modes = final.sum(axis=-1).mean(axis=-1)  # (seeds,) on either mode, over distances
        minority = final.min(axis=-1).mean(axis=-1)  # (seeds,) the rarer mode's share
        mean_curve = success.mean(axis=1)  # (E,) over seeds
        peak = int(np.argmax(mean_curve))
        rows.append([
            res["label"], common.fmt_pm(success[-1], 2), per_seed,
            f"{mean_curve[peak]:.2f} at {res['steps'][peak]:,}",
            common.fmt_pm(on_modes, 2), common.fmt_pm(minority, 3),
            f"{int(both_modes(final).sum())} / {success.shape[1]}",
        ])  # fmt: skip
    marks = yardsticks()
    for name, value in marks.items():
        rows.append([f"{name} (computed)", f"{value:.3f}", "-", "-", "-", "-", "-"])
    return common.markdown_table(
        ["policy", "final success (mean ± s.e.)", "per seed",
         "best mean success on the way (env steps)", "actions on a mode",
         "share of the rarer mode", "seeds with both modes (>= 10 % each)"],
        rows, "lrlrrrr",
    )  # fmt: skip


def shares_table(results: list[dict]) -> str:
    rows = []
    for res in results:
        final = np.asarray(res["final_shares"])  # (seeds, D, 2)
        for i, seed_shares in enumerate(final):
            cells = [f"{p:.2f} / {m:.2f}" for p, m in seed_shares]
            rows.append([res["label"], i, *cells])
    return common.markdown_table(
        ["policy", "seed", *[f"at distance {d}: +d / -d" for d in DISTANCES]], rows, "lr" + "r" * 3
    )


def plot(results: list[dict]) -> None:
    plt = common.pyplot()
    fig, (ax_s, ax_m) = plt.subplots(1, 2, figsize=(11, 4))
    for res in results:
        common.plot_curves(
            ax_s, np.asarray(res["steps"]), np.asarray(res["success"]), res["label"],
            COLORS[res["label"]],
        )  # fmt: skip
        steps = np.array([s for s, _ in res["tracked_shares"]])
        minority = np.array([[min(p, m) for p, m in seeds] for _, seeds in res["tracked_shares"]])
        for j in range(minority.shape[1]):
            ax_m.plot(steps, minority[:, j], color=COLORS[res["label"]], alpha=0.6,
                      label=res["label"] if j == 0 else None)  # fmt: skip
    ax_s.axhline(0.5, color="gray", ls=":", lw=1)
    ax_s.axhline(1 - 0.5**4, color="gray", ls="--", lw=1)
    ax_s.set(xlabel="env steps", ylabel="success (sampled actions)", ylim=(0, 1),
             title="aliased_reach: success (dotted: one mode, dashed: both modes)")  # fmt: skip
    ax_m.axhline(BOTH_MODES, color="gray", ls=":", lw=1)
    ax_m.set(xlabel="env steps", ylabel=f"share of the rarer mode at distance {TRACKED}",
             ylim=(0, 0.55), title="the rarer mode over training (one line per seed)")  # fmt: skip
    ax_s.legend(fontsize=8)
    ax_m.legend(fontsize=8)
    fig.tight_layout()
    common.save_figure(fig, "under_conditioned.png")


def store() -> Path:
    """One JSON per setting: a stopped run resumes, and --report rebuilds from them."""
    return common.out_dir() / "under_conditioned"


def setting_path(label: str) -> Path:
    name = "".join(c if c.isalnum() else "_" for c in label).strip("_")
    return store() / f"{name}.json"


def report(clock: common.Stopwatch) -> None:
    results = [json.loads(setting_path(label).read_text()) for label in SETTINGS
               if setting_path(label).exists()]  # fmt: skip
    if not results:
        raise SystemExit(f"No settings under {store()}: run some first.")
    plot(results)
    seeds = len(results[0]["success"][0])
    budget = f"{results[0]['steps'][-1]:,} env steps (the preset), {seeds} seeds per setting"
    text = common.results_header(
        "An under-conditioned task: aliased_reach", budget,
        [f"entropy bonus of the flow policies: {ENTROPY}; Gaussian PPO: its preset's 0.01"],
        data=[r["provenance"] for r in results if "provenance" in r],
    )  # fmt: skip
    text += "\n" + summary_table(results) + "\n"
    text += (
        "Success: the share of 512 evaluation episodes (sampled actions, 4 attempts each) that "
        "hit the target, after the last iteration. Mode shares: 2000 actions sampled per "
        f"distance {DISTANCES}, the share within the goal radius of +d and of -d. The computed "
        "rows: expected success over the env's distances of the policy named (the best "
        "tanh-Gaussian by a grid search over its mean and std at each distance).\n\n"
    )
    text += "## Per seed\n\n" + shares_table(results) + "\n"
    text += clock.line()
    common.write_result("under_conditioned.md", text)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="env steps (default: preset)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--every", type=int, default=20, help="copy the state every N calls")
    parser.add_argument("--samples", type=int, default=2000, help="actions per distance")
    parser.add_argument("--settings", default=None,
                        help="comma-separated labels to run (default: all); "
                        + "; ".join(SETTINGS))  # fmt: skip
    parser.add_argument("--report", action="store_true", help="only rebuild the table and figure")
    args = common.parse_args(parser, argv, smoke="20k steps, 2 seeds")
    if args.smoke:
        args.steps, args.seeds, args.every, args.samples = 20_480, 2, 20, 500
    common.enable_compilation_cache()
    clock = common.Stopwatch()
    labels = args.settings.split(",") if args.settings else list(SETTINGS)
    for label in labels if not args.report else ():
        if label not in SETTINGS:
            raise SystemExit(f"Unknown setting {label!r}; known: {list(SETTINGS)}.")
        if not setting_path(label).exists():
            result = run_setting(label, SETTINGS[label], args)
            common.write_file(setting_path(label), json.dumps(result, indent=1))
    report(clock)


if __name__ == "__main__":
    main()
