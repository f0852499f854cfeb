"""Multimodality: does FPO learn multimodal action distributions where Gaussian PPO cannot?

Trains FPO and Gaussian PPO (``algo="ppo"``) with the toy-env presets (``preset(env, algo)``) on

* ``bandit`` / ``bandit2d``: one-step tasks with two equally good, separated reward modes
  (``toy_envs.BANDIT_MODES``). We sample 2000 actions from each trained policy and measure the
  mass within +-0.2 (per coordinate) of each mode;
* ``gridworld`` (the paper's Figure 1): from start cells equidistant to both goal rows (y = 12,
  several x) we roll out many episodes and count which goal each reaches; the figure
  ``multimodality_gridworld_field*.png`` shows the sampled (denoised) action at every cell and a
  bundle of trajectories from the saddle cell (12, 12), FPO vs the Gaussian.

``--variant paper`` trains the gridworld at the FPO authors' settings
(``preset("gridworld", algo, variant="paper")``: N = 50, t uniform, clip 0.2, lr 3e-4, 10 epochs
of 6 minibatches on ~2048 steps, ...; the Gaussian baseline at a fixed std of 0.5) instead of
the CPU-fast default preset, and writes ``multimodality_gridworld_paper.md`` and
``multimodality_gridworld_{paper,field_paper}.png`` (gridworld only).

Policies are sampled the way they act during training: FPO from random initial noise (10 Euler
steps), Gaussian PPO from its Gaussian. Deterministic samplers are reported too: FPO from zero
noise (FPO++'s evaluation) and PPO's mean action (its evaluation sampler).

Run from the repository root::

    python experiments/multimodality.py                 # 0.3 x preset steps, 3 seeds (~5 min)
    python experiments/multimodality.py --smoke         # --budget quick, written to /tmp
    python experiments/multimodality.py --report        # rebuild from the stored JSON
    python experiments/multimodality.py --variant paper # authors' gridworld settings (~20 min)
    python experiments/multimodality.py --variant paper --smoke
    python experiments/multimodality.py --variant paper --report

Writes ``experiments/results/multimodality.json`` (the training curves' first and last
evaluation per seed, every sampler's per-seed mode and goal shares, the saddle cross-check, the
actions and trajectories the figures draw, the budget and the provenance), and from it alone
``multimodality.md`` and ``multimodality_{bandit,gridworld,gridworld_field}.png``;
``--variant paper``: ``multimodality_gridworld_paper.{json,md}`` and
``multimodality_gridworld_{paper,field_paper}.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (also puts the repository on sys.path)
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from fpo_jax import envs, flow, normalization  # noqa: E402
from fpo_jax.presets import preset  # noqa: E402
from fpo_jax.toy_envs import BANDIT_MODES, discretize_action  # noqa: E402
from fpo_jax.train import train  # noqa: E402
from fpo_jax.trainer import Trainer  # noqa: E402

ALGOS = ("fpo", "ppo")
ALGO_LABEL = {"fpo": "FPO", "ppo": "Gaussian PPO"}
# budget -> ({env: fraction of the preset's num_timesteps}, seeds, bandit samples per seed,
# gridworld episodes per start cell and seed)
BUDGETS = {
    "quick": ({"bandit": 0.05, "bandit2d": 0.05, "gridworld": 0.02}, 2, 500, 32),
    "default": ({"bandit": 0.3, "bandit2d": 0.3, "gridworld": 0.3}, 3, 2000, 500),
    "full": ({"bandit": 1.0, "bandit2d": 1.0, "gridworld": 1.0}, 5, 2000, 1000),
}
# --variant paper (gridworld only): budget -> env steps per seed (the preset's layout: 2040 env
# steps per iteration).
PAPER_STEPS = {"quick": 20_400, "default": 300_000, "full": 1_000_000}
MODE_RADIUS = 0.2
GRID_STARTS = ((0, 12), (6, 12), (12, 12), (18, 12), (24, 12))
SADDLE = (12, 12)


# ----------------------------------------------------------------------------------------------
# Samplers: (params, obs_stats, raw obs (..., obs_dim), key) -> squashed action (..., A)


def make_sampler(trainer: Trainer, mode: str):
    """mode: 'random' / 'zero' (flow policy from random / zero initial noise, the config's
    training integrator and steps), 'sample' / 'mean' (Gaussian policy sample / mean)."""
    agent, c = trainer.agent, trainer.config

    def act(params, stats, obs, key):
        obs = normalization.normalize(stats, envs.flat_obs(obs), c.normalize_observations)
        if c.algo == "ppo":
            loc, scale = agent.distribution(params["policy"], obs)
            raw = loc if mode == "mean" else loc + scale * jax.random.normal(key, loc.shape)
        else:
            raw = flow.sample(
                agent.velocity_fn,
                params["policy"],
                obs,
                key,
                action_dim=trainer.action_size,
                integrator=c.integrator,
                num_steps=c.flow_steps,
                noise=mode,
            )
        return jnp.tanh(raw)

    return act


def samplers_for(algo: str) -> tuple[tuple[str, str], ...]:
    """(sampler mode, label) pairs reported for an algorithm; the first is the stochastic one."""
    if algo == "fpo":
        return (("random", "FPO, random noise (training sampler)"), ("zero", "FPO, zero noise"))
    return (("sample", "Gaussian PPO, sampled"), ("mean", "Gaussian PPO, mean action (eval)"))


# ----------------------------------------------------------------------------------------------
# Bandits


# The two empty corners of bandit2d: a per-axis (factorised) distribution that covers both
# diagonal modes must put as much mass here as on the modes.
BANDIT2D_CORNERS = np.array([[0.6, -0.6], [-0.6, 0.6]], dtype=np.float32)


def mass_near(a: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Share of actions a (n, d) within MODE_RADIUS of each point (every coordinate)."""
    return np.all(np.abs(a[:, None, :] - points[None]) <= MODE_RADIUS, axis=-1).mean(axis=0)


def float32_list(x) -> list:
    """A float32 array as nested lists of Python floats, each the shortest decimal that reads
    back (``np.asarray(..., np.float32)``) as the same float32: exact and compact in JSON."""
    a = np.asarray(x, np.float32)
    out = np.vectorize(lambda v: float(str(v)), otypes=[object])(a)
    # A decimal next to the middle of two float32s could read back as the other one: keep those
    # few exactly (as float64).
    wrong = out.astype(np.float64).astype(np.float32) != a
    out[wrong] = a[wrong].astype(np.float64)
    return out.tolist()


def bandit_analysis(results, env_name: str, num_samples: int, seeds: int):
    """Sample ``num_samples`` actions per seed from each sampler of each algorithm.

    Returns (entries, samples): one entry per (algo, sampler) with the per-seed shares near each
    mode (seeds, modes), near the empty corners (``bandit2d`` only, else None) and the samples'
    mean reward; samples: seed 0's actions of each algorithm's stochastic sampler (the figure's).
    """
    modes = BANDIT_MODES[env_name]
    entries, samples = [], {}
    for algo in ALGOS:
        res = results[(env_name, algo)]
        states = [res.seed(i) for i in range(seeds)]
        obs = jnp.ones((num_samples, 1))
        for k, (mode, label) in enumerate(samplers_for(algo)):
            act = jax.jit(make_sampler(res.trainer, mode))
            mass, corners, reward = np.zeros((seeds, len(modes))), np.zeros(seeds), np.zeros(seeds)
            for i, st in enumerate(states):
                a = np.asarray(act(st.params, st.obs_stats, obs, jax.random.PRNGKey(100 + i)))
                mass[i] = mass_near(a, modes)
                if env_name == "bandit2d":
                    corners[i] = mass_near(a, BANDIT2D_CORNERS).sum()
                reward[i] = float(jnp.mean(res.trainer.env.reward_fn(jnp.asarray(a))))
                if i == 0 and k == 0:
                    samples[algo] = float32_list(a)
            entries.append(
                dict(algo=algo, mode=mode, label=label, mass=mass.tolist(), reward=reward.tolist(),
                     corners=corners.tolist() if env_name == "bandit2d" else None)
            )  # fmt: skip
    return entries, samples


def bandit_rows(env_name: str, entries: list[dict]) -> list[list[str]]:
    """The bandit table's rows from :func:`bandit_analysis`'s stored entries."""
    rows = []
    for e in entries:
        mass = np.asarray(e["mass"], np.float64)  # (seeds, modes)
        seeds = mass.shape[0]
        both = int(np.sum(np.min(mass, axis=1) >= 0.1))
        corners = e["corners"]
        rows.append(
            [f"`{env_name}`", e["label"]]
            + [common.fmt_pm(100 * mass[:, m]) for m in range(mass.shape[1])]
            + [common.fmt_pm(100 * np.asarray(corners, np.float64)) if corners is not None else "-"]
            + [common.fmt_pm(100 * (1 - mass.sum(axis=1))), f"{both} / {seeds}"]
            + [common.fmt_pm(np.asarray(e["reward"], np.float64), 3)]
        )
    return rows


def plot_bandits(samples: dict, num_samples: int):
    """Seed 0's stochastic samples: a histogram on ``bandit``, scatter plots on ``bandit2d``."""
    plt = common.pyplot()
    fig, axes = plt.subplots(1, 1 + 2 * ("bandit2d" in samples), figsize=(13, 3.6), squeeze=False)
    axes = axes[0]
    ax = axes[0]
    bins = np.linspace(-1, 1, 81)
    s = {algo: np.asarray(a, np.float32) for algo, a in samples["bandit"].items()}
    ax.hist(s["fpo"][:, 0], bins=bins, alpha=0.6, label="FPO", color="C0")
    ax.hist(s["ppo"][:, 0], bins=bins, alpha=0.6, label="Gaussian PPO", color="C1")
    for m in BANDIT_MODES["bandit"][:, 0]:
        ax.axvspan(m - MODE_RADIUS, m + MODE_RADIUS, color="grey", alpha=0.15)
    ax.set_title(f"bandit: {num_samples} sampled actions (seed 0)")
    ax.set_xlabel("action (after tanh); grey: +-0.2 around each reward mode")
    ax.legend()
    if "bandit2d" in samples:
        for ax, algo in zip(axes[1:], ALGOS, strict=True):
            a = np.asarray(samples["bandit2d"][algo], np.float32)
            ax.scatter(a[:, 0], a[:, 1], s=3, alpha=0.3, color="C0" if algo == "fpo" else "C1")
            for m in BANDIT_MODES["bandit2d"]:
                ax.add_patch(
                    plt.Rectangle(m - MODE_RADIUS, 2 * MODE_RADIUS, 2 * MODE_RADIUS, fill=False)
                )
            ax.set_xlim(-1, 1)
            ax.set_ylim(-1, 1)
            ax.set_aspect("equal")
            ax.set_title(f"bandit2d: {ALGO_LABEL[algo]} samples (seed 0)")
    return common.save_figure(fig, "multimodality_bandit.png")


# ----------------------------------------------------------------------------------------------
# GridWorld


def goal_shares(trainer: Trainer, act, state, key, num_episodes: int):
    """Roll out num_episodes episodes from each cell of GRID_STARTS, all in one batch.

    Resets trainer.eval_env (built on the plain gridworld) and then places each episode on its
    start cell: GridWorld keeps the cell in ``pipeline_state`` and observes
    ``(cell - 12) / 12`` (see ``fpo_jax.toy_envs.GridWorld``), exactly what
    ``make_env("gridworld", start=cell)`` does at reset. One compiled program serves all starts
    (a start passed to the env's constructor is a compile-time constant).

    Returns (top, bottom): (len(GRID_STARTS),) shares of episodes reaching each goal.
    """
    eval_env, n_starts = trainer.eval_env, len(GRID_STARTS)
    cells = jnp.repeat(jnp.asarray(GRID_STARTS, jnp.int32), num_episodes, axis=0)
    k_reset, k_act = jax.random.split(key)
    s = eval_env.reset(jax.random.split(k_reset, cells.shape[0]))
    s = s.replace(pipeline_state=cells, obs=(cells.astype(jnp.float32) - 12.0) / 12.0)
    zeros = jnp.zeros((cells.shape[0],))

    def step(carry, k):
        s, alive, top, bottom = carry
        s = eval_env.step(s, act(state.params, state.obs_stats, s.obs, k))
        top = top + alive * s.metrics["reached_top"]
        bottom = bottom + alive * s.metrics["reached_bottom"]
        return (s, alive * (1.0 - s.done), top, bottom), None

    steps = trainer.config.episode_length
    init = (s, jnp.ones_like(zeros), zeros, zeros)
    (_, _, top, bottom), _ = jax.lax.scan(step, init, jax.random.split(k_act, steps))
    return top.reshape(n_starts, -1).mean(-1), bottom.reshape(n_starts, -1).mean(-1)


def gridworld_analysis(res, algo: str, num_episodes: int, seeds: int) -> list[dict]:
    """Per sampler: the shares of episodes reaching the top / bottom goal rows from each start,
    (seeds, len(GRID_STARTS)) each, float32 as computed."""
    entries = []
    keys = jax.random.split(jax.random.PRNGKey(7), seeds)
    for mode, label in samplers_for(algo):
        act = make_sampler(res.trainer, mode)
        fn = lambda st, k, act=act: goal_shares(res.trainer, act, st, k, num_episodes)
        # (seeds, len(GRID_STARTS)) each: res.state has a leading seed axis.
        top, bottom = map(np.asarray, jax.device_get(jax.jit(jax.vmap(fn))(res.state, keys)))
        entries.append(
            dict(algo=algo, mode=mode, label=label, top=float32_list(top),
                 bottom=float32_list(bottom))
        )  # fmt: skip
    return entries


def stored_shares(entry: dict) -> tuple[np.ndarray, np.ndarray]:
    """A stored entry's (top, bottom) shares, back in float32 (as computed), so that the derived
    columns are the same arithmetic as in the run."""
    return np.asarray(entry["top"], np.float32), np.asarray(entry["bottom"], np.float32)


def gridworld_rows(entries: list[dict]) -> list[list[str]]:
    """The gridworld table's rows (per sampler, per start) from :func:`gridworld_analysis`."""
    rows = []
    for e in entries:
        top, bottom = stored_shares(e)
        seeds = top.shape[0]
        for i, start in enumerate(GRID_STARTS):
            t, b = top[:, i], bottom[:, i]
            minority = np.minimum(t, b) / np.maximum(t + b, 1e-9)
            rows.append(
                [
                    e["label"],
                    f"({start[0]}, {start[1]})",
                    common.fmt_pm(100 * t),
                    common.fmt_pm(100 * b),
                    common.fmt_pm(100 * np.clip(1 - t - b, 0, 1)),
                    common.fmt_pm(100 * minority),
                    f"{np.sum(np.minimum(t, b) >= 0.05)} / {seeds}",
                ]
            )
    return rows


def saddle_check(res, num_episodes: int, seeds: int) -> dict:
    """The saddle start through the documented API: ``Trainer(make_env("gridworld",
    start=SADDLE), config).evaluate`` (the trainer's eval sampler). Returns the per-seed
    reached_top / reached_bottom shares (float32 as computed)."""
    config = dataclasses.replace(res.config, num_eval_envs=num_episodes)
    trainer = Trainer(envs.make_env("gridworld", start=SADDLE), config)
    keys = jax.random.split(jax.random.PRNGKey(11), seeds)
    out = jax.device_get(jax.jit(jax.vmap(trainer.evaluate))(res.state, keys))
    return {
        side: float32_list(out[f"eval/reached_{side}"])  # (seeds,)
        for side in ("top", "bottom")
    }


def saddle_check_text(check: dict) -> str:
    """'top .. %, bottom .. %' of a stored :func:`saddle_check`."""
    top, bottom = (np.asarray(check[side], np.float32) for side in ("top", "bottom"))
    return f"top {common.fmt_pm(100 * top)} %, bottom {common.fmt_pm(100 * bottom)} %"


def saddle_trajectories(trainer: Trainer, act, state, key, num: int):
    """``num`` episodes from SADDLE with the sampler ``act``: cells (steps + 1, num, 2) (frozen
    after the episode ends) and the goal each reached (num,): +1 top, -1 bottom, 0 none."""
    eval_env = trainer.eval_env
    cells = jnp.tile(jnp.asarray(SADDLE, jnp.int32), (num, 1))
    k_reset, k_act = jax.random.split(key)
    s = eval_env.reset(jax.random.split(k_reset, num))
    s = s.replace(pipeline_state=cells, obs=(cells.astype(jnp.float32) - 12.0) / 12.0)

    def step(carry, k):
        s, pos, alive, goal = carry
        s = eval_env.step(s, act(state.params, state.obs_stats, s.obs, k))
        new = s.pipeline_state
        goal = goal + alive * (s.metrics["reached_top"] - s.metrics["reached_bottom"])
        pos = jnp.where(alive[:, None] > 0, new, pos)
        return (s, pos, alive * (1.0 - s.done), goal), pos

    init = (s, cells, jnp.ones((num,)), jnp.zeros((num,)))
    keys = jax.random.split(k_act, trainer.config.episode_length)
    (_, _, _, goal), path = jax.lax.scan(step, init, keys)
    return jnp.concatenate([cells[None], path]), goal


FIELD_SIZE = 25  # GridWorld's side


def field_cells() -> np.ndarray:
    """(C, 2) the non-goal cells (x, y), y in 2..22, in the order the field figure samples them."""
    xs, ys = np.meshgrid(np.arange(FIELD_SIZE), np.arange(2, FIELD_SIZE - 2), indexing="xy")
    return np.stack([xs.ravel(), ys.ravel()], -1)


def gridworld_figure_data(results, samples_per_cell: int = 4, num_traj: int = 40) -> dict:
    """What the gridworld figures draw, seed 0, each algorithm's stochastic sampler:

    * ``saddle``: 1000 sampled actions at SADDLE and their y move (-1, 0, +1);
    * ``flow_paths``: FPO's flow paths at SADDLE for 150 of them, (150, K + 1, 2) after tanh;
    * ``field``: ``samples_per_cell`` sampled actions at every non-goal cell and their y move,
      and ``num_traj`` episodes from SADDLE: cells (steps + 1, num_traj, 2) and goals (num_traj,).

    """
    data = {"saddle": {}, "field": {}, "samples_per_cell": samples_per_cell, "num_traj": num_traj}
    obs = jnp.zeros((1000, 2))  # the env's observation of cell (12, 12) is (0, 0)
    cells = np.repeat(field_cells(), samples_per_cell, 0)
    field_obs = (jnp.asarray(cells, jnp.float32) - 12.0) / 12.0
    for algo, mode in [("fpo", "random"), ("ppo", "sample")]:
        res = results[("gridworld", algo)]
        st = res.seed(0)
        sampler = jax.jit(make_sampler(res.trainer, mode))
        a = np.asarray(sampler(st.params, st.obs_stats, obs, jax.random.PRNGKey(3)))
        moves = np.asarray(discretize_action(jnp.asarray(a)))
        data["saddle"][algo] = dict(actions=float32_list(a), move_y=moves[:, 1].tolist())
        a = np.asarray(sampler(st.params, st.obs_stats, field_obs, jax.random.PRNGKey(5)))
        dy = np.asarray(discretize_action(jnp.asarray(a)))[:, 1]
        path, goal = saddle_trajectories(
            res.trainer, make_sampler(res.trainer, mode), st, jax.random.PRNGKey(6), num_traj
        )
        data["field"][algo] = dict(
            actions=float32_list(a), move_y=dy.tolist(), path=np.asarray(path).astype(int).tolist(),
            goal=np.rint(np.asarray(goal)).astype(int).tolist(),
        )  # fmt: skip
    res = results[("gridworld", "fpo")]
    st = res.seed(0)
    c = res.config
    o = normalization.normalize(st.obs_stats, obs[:150], c.normalize_observations)
    _, path = flow.sample(
        res.trainer.agent.velocity_fn, st.params["policy"], o, jax.random.PRNGKey(4),
        action_dim=2, num_steps=c.flow_steps, return_path=True,
    )  # fmt: skip
    data["flow_paths"] = float32_list(np.tanh(np.asarray(path)))  # (150, K+1, 2)
    return data


def _goal_bands(ax) -> None:
    for band in ((-0.5, 1.5), (FIELD_SIZE - 2.5, FIELD_SIZE - 0.5)):
        ax.axhspan(*band, color="C2", alpha=0.15)


def _grid_axes(ax) -> None:
    ax.plot(*SADDLE, "k*", ms=12)
    ax.set_xlim(-0.8, FIELD_SIZE - 0.2)
    ax.set_ylim(-0.8, FIELD_SIZE - 0.2)
    ax.set_aspect("equal")


def plot_gridworld_field(data: dict, name: str):
    """Row per algorithm: sampled actions at every non-goal cell (the denoised action field),
    and a bundle of trajectories from the saddle cell; from :func:`gridworld_figure_data`."""
    plt = common.pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 11))
    samples_per_cell, num_traj = data["samples_per_cell"], data["num_traj"]
    pos = np.repeat(field_cells(), samples_per_cell, 0).astype(float)
    for row, algo in enumerate(ALGOS):
        d = data["field"][algo]
        a, dy = np.asarray(d["actions"], np.float32), np.asarray(d["move_y"])
        ax = axes[row, 0]
        _goal_bands(ax)
        for sel, color, lab in [(dy > 0, "C2", "up"), (dy < 0, "C3", "down"),
                                (dy == 0, "grey", "no y move")]:  # fmt: skip
            ax.quiver(
                pos[sel, 0], pos[sel, 1], a[sel, 0], a[sel, 1], color=color, angles="xy",
                scale_units="xy", scale=2.2, width=0.002, label=f"{lab} {sel.mean():.0%}",
            )  # fmt: skip
        _grid_axes(ax)
        ax.set_title(f"{ALGO_LABEL[algo]}: {samples_per_cell} sampled actions per cell (seed 0)")
        ax.legend(loc="upper right", fontsize=7)
        path, goal = np.asarray(d["path"], float), np.asarray(d["goal"])
        ax = axes[row, 1]
        _goal_bands(ax)
        jitter = np.random.default_rng(0).uniform(-0.25, 0.25, (1, num_traj, 2))
        for i in range(num_traj):
            color = "C2" if goal[i] > 0 else ("C3" if goal[i] < 0 else "grey")
            p = path[:, i] + jitter[:, i]
            ax.plot(p[:, 0], p[:, 1], color=color, lw=0.8, alpha=0.6)
        _grid_axes(ax)
        ax.set_title(
            f"{ALGO_LABEL[algo]}: {num_traj} episodes from {SADDLE}: "
            f"top {np.mean(goal > 0):.0%}, bottom {np.mean(goal < 0):.0%}"
        )
    fig.suptitle("GridWorld: green = moves up / reaches the top rows, red = down / bottom rows")
    fig.tight_layout()
    return common.save_figure(fig, name)


def plot_gridworld(data: dict, entries: list[dict], name: str):
    """Saddle-state action samples (FPO / PPO), FPO's flow paths there, and goal shares; from
    :func:`gridworld_figure_data` and :func:`gridworld_analysis`'s entries."""
    plt = common.pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2))
    for ax, algo in [(axes[0], "fpo"), (axes[2], "ppo")]:
        d = data["saddle"][algo]
        a, move_y = np.asarray(d["actions"], np.float32), np.asarray(d["move_y"])
        up, down = move_y > 0, move_y < 0
        ax.scatter(a[up, 0], a[up, 1], s=3, alpha=0.4, color="C2", label=f"up {up.mean():.0%}")
        ax.scatter(
            a[down, 0], a[down, 1], s=3, alpha=0.4, color="C3", label=f"down {down.mean():.0%}"
        )
        rest = ~(up | down)
        ax.scatter(
            a[rest, 0],
            a[rest, 1],
            s=3,
            alpha=0.4,
            color="grey",
            label=f"no y move {rest.mean():.0%}",
        )
        for v in (-1 / 3, 1 / 3):
            ax.axhline(v, color="k", lw=0.5)
            ax.axvline(v, color="k", lw=0.5)
        ax.set_xlim(-1.05, 1.05)
        ax.set_ylim(-1.05, 1.05)
        ax.set_aspect("equal")
        ax.set_xlabel("action x (after tanh)")
        ax.set_ylabel("action y")
        ax.set_title(f"{ALGO_LABEL[algo]}: {len(a)} actions at cell {SADDLE}")
        ax.legend(loc="lower right", fontsize=7, markerscale=3)
    # FPO flow paths at the saddle state.
    path = np.asarray(data["flow_paths"], np.float32)  # (150, K+1, 2)
    ax = axes[1]
    end_up = path[:, -1, 1] > 1 / 3
    for p, u in zip(path, end_up, strict=True):
        ax.plot(p[:, 0], p[:, 1], color="C2" if u else "C3", lw=0.5, alpha=0.5)
    ax.scatter(path[:, 0, 0], path[:, 0, 1], s=4, color="k", label="t = 1 (noise)")
    ax.scatter(path[:, -1, 0], path[:, -1, 1], s=4, color="C0", label="t = 0 (action)")
    ax.set_xlim(-1.05, 1.05)
    ax.set_ylim(-1.05, 1.05)
    ax.set_aspect("equal")
    ax.set_title(f"FPO flow paths at {SADDLE} (tanh of x_t)")
    ax.legend(loc="lower right", fontsize=7)
    # Goal shares per start, stochastic samplers, mean over seeds.
    ax = axes[3]
    width = 0.38
    x = np.arange(len(GRID_STARTS))
    for j, (algo, mode) in enumerate([("fpo", "random"), ("ppo", "sample")]):
        entry = next(e for e in entries if e["algo"] == algo and e["mode"] == mode)
        top, bottom = (s.mean(axis=0) for s in stored_shares(entry))  # per start
        ax.bar(x + (j - 0.5) * width, top, width, color=f"C{j}", label=f"{ALGO_LABEL[algo]}: top")
        ax.bar(
            x + (j - 0.5) * width, bottom, width, bottom=top, color=f"C{j}", alpha=0.45,
            hatch="//", label=f"{ALGO_LABEL[algo]}: bottom",
        )  # fmt: skip
    ax.set_xticks(x, [f"x={s[0]}" for s in GRID_STARTS])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of episodes (mean over seeds)")
    ax.set_title("goal reached from (x, 12), stochastic policy")
    ax.legend(fontsize=7)
    return common.save_figure(fig, name)


# ----------------------------------------------------------------------------------------------
# Run and report


def file_stem(variant: str) -> str:
    """Name of the stored data and the results file, without extension."""
    return "multimodality" if variant == "default" else f"multimodality_gridworld_{variant}"


def run(args: argparse.Namespace) -> dict:
    """Train, analyse, and return everything :func:`report` needs: the record stored as
    ``<file_stem>.json`` (per-seed numbers and the figures' samples as computed, the budget,
    the provenance)."""
    common.enable_compilation_cache()
    fractions, seeds, num_samples, num_episodes = BUDGETS[args.budget]

    results, train_rows, budget_lines = {}, [], []
    for env_name in args.envs:
        variant = args.variant if env_name == "gridworld" else "default"
        for algo in ALGOS:
            cfg = preset(env_name, algo, variant=variant)
            steps = int(cfg.num_timesteps * fractions[env_name])
            if variant == "paper":
                steps = PAPER_STEPS[args.budget]
            common.log(f"training {algo} on {env_name}: {steps:,} steps x {seeds} seeds")
            res = train(env_name, cfg, num_timesteps=steps, num_seeds=seeds, progress=False)
            results[(env_name, algo)] = res
            _, curve = common.eval_curve(res.history, seeds)
            final, _ = common.final_and_best(curve)
            train_rows.append(
                dict(env=env_name, algo=algo, env_steps=int(res.history[-1]["env_steps"]),
                     before=curve[0].tolist(), final=np.asarray(final).tolist())
            )  # fmt: skip
        base = preset(env_name, "fpo", variant=variant)
        how = (
            f"num_timesteps {steps:,}"
            if variant == "paper"
            else f"num_timesteps x {fractions[env_name]} = "
            f"{int(base.num_timesteps * fractions[env_name]):,}"
        )
        budget_lines.append(
            f"`{env_name}`: preset(env, algo, variant={variant!r}) ({base.preset_source}), "
            f"{how}, num_envs {base.num_envs}, {seeds} seeds (num_seeds={seeds}, vmapped)"
        )
        if variant == "paper":
            ppo = preset(env_name, "ppo", variant=variant)
            budget_lines.append(
                "paper variant: "
                + ", ".join(
                    f"{k}={getattr(base, k)}"
                    for k in (
                        "num_pairs",
                        "t_sampler",
                        "cfm_weighting",
                        "clip_epsilon",
                        "learning_rate",
                        "max_grad_norm",
                        "discount",
                        "gae_lambda",
                        "num_epochs",
                        "num_minibatches",
                        "env_steps_per_iteration",
                        "log_ratio_clamp",
                        "pair_log_ratio_clamp",
                        "flow_entropy_cost",
                        "episode_length",
                        "policy_hidden",
                        "value_hidden",
                    )
                )  # fmt: skip
                + f"; Gaussian: gaussian_fixed_std={ppo.gaussian_fixed_std}, "
                f"entropy_cost={ppo.entropy_cost}, clip_epsilon={ppo.clip_epsilon}"
            )

    record = dict(
        variant=args.variant, budget=args.budget, envs=list(args.envs), seeds=seeds,
        num_samples=num_samples, num_episodes=num_episodes, budget_lines=budget_lines,
        training=train_rows, bandits={}, gridworld=None,
    )  # fmt: skip
    for env_name in [e for e in args.envs if e.startswith("bandit")]:
        entries, samples = bandit_analysis(results, env_name, num_samples, seeds)
        record["bandits"][env_name] = dict(samplers=entries, samples=samples)
    if "gridworld" in args.envs:
        entries = []
        for algo in ALGOS:
            common.log(f"gridworld rollouts from the equidistant starts: {algo}")
            entries += gridworld_analysis(results[("gridworld", algo)], algo, num_episodes, seeds)
        record["gridworld"] = dict(
            samplers=entries,
            saddle_check={
                algo: saddle_check(results[("gridworld", algo)], num_episodes, seeds)
                for algo in ALGOS
            },
            figures=gridworld_figure_data(results),
        )
    record["provenance"] = common.provenance()
    return record


def report(record: dict) -> None:
    """The results file and its figures, from :func:`run`'s record only."""
    variant, num_samples, num_episodes = (
        record["variant"], record["num_samples"], record["num_episodes"],
    )  # fmt: skip
    suffix = "" if variant == "default" else f"_{variant}"
    train_rows = [
        [f"`{r['env']}`", ALGO_LABEL[r["algo"]], f"{r['env_steps']:,}",
         common.fmt_pm(np.asarray(r["before"]), 2), common.fmt_pm(np.asarray(r["final"]), 2)]
        for r in record["training"]
    ]  # fmt: skip
    md = [
        common.results_header(
            "Multimodality: FPO vs Gaussian PPO on the bandits and GridWorld"
            if variant == "default"
            else "Multimodality: GridWorld at the FPO authors' settings (preset variant "
            f"{variant!r})",
            record["budget"],
            record["budget_lines"]
            + [
                f"{num_samples} action samples per seed (bandits); "
                f"{num_episodes} episodes per start cell and seed (gridworld)"
            ],
            data=[record["provenance"]],
        ),  # fmt: skip
        "Evaluation return of the runs (the trainer's eval sampler: FPO from random noise, "
        "PPO at the mean action; mean ± standard error over seeds):\n",
        common.markdown_table(
            ["env", "algo", "env steps", "eval return before training", "final eval return"],
            train_rows,
            "llrrr",
        ),
    ]

    bandits = record["bandits"]
    if bandits:
        rows = [
            row for env_name, b in bandits.items() for row in bandit_rows(env_name, b["samplers"])
        ]
        md += [
            "\n## Bandits: action mass near each reward mode\n",
            f"Share (%) of {num_samples} sampled actions per seed within ±{MODE_RADIUS} of each "
            "reward mode (every coordinate): `bandit` modes A = -0.6, B = +0.6; `bandit2d` modes "
            "A = (0.6, 0.6), B = (-0.6, -0.6), and its empty corners (0.6, -0.6), (-0.6, 0.6), "
            "where a per-axis distribution covering both modes must put as much mass as on them. "
            "Mean ± standard error over seeds; 'both modes' counts seeds with at least 10 % on "
            "each mode; elsewhere = near no mode (corners included); reward is the samples' mean "
            "reward (1 at a mode).\n",
            common.markdown_table(
                [
                    "env",
                    "sampler",
                    "mode A %",
                    "mode B %",
                    "empty corners %",
                    "elsewhere %",
                    "seeds with both modes >= 10 %",
                    "mean reward",
                ],
                rows,
                "llrrrrrr",
            ),  # fmt: skip
        ]
        if "bandit" in bandits:
            plot_bandits({env: b["samples"] for env, b in bandits.items()}, num_samples)
            md.append("\n![bandit samples](multimodality_bandit.png)\n")

    grid = record["gridworld"]
    if grid is not None:
        check = grid["saddle_check"]
        checks = [
            f"{ALGO_LABEL[a]} (its eval sampler): {saddle_check_text(check[a])}" for a in ALGOS
        ]
        md += [
            "\n## GridWorld: which goal is reached from cells equidistant to both goal rows\n",
            f"{num_episodes} episodes per start cell and seed (100-step limit); shares in % of "
            "episodes, mean ± standard error over seeds. 'minority share' = min(top, bottom) / "
            "(top + bottom): 50 % is an even split, 0 % means one goal only. 'seeds that split' "
            "counts seeds sending at least 5 % of the episodes to each goal.\n",
            common.markdown_table(
                [
                    "sampler",
                    "start (x, y)",
                    "top goal %",
                    "bottom goal %",
                    "no goal %",
                    "minority share %",
                    "seeds that split",
                ],
                gridworld_rows(grid["samplers"]),
                "llrrrrr",
            ),  # fmt: skip
        ]
        md.append(
            f"\nCross-check of the start cell {SADDLE} through the documented API "
            f"(`Trainer(make_env('gridworld', start={SADDLE}), config).evaluate`, "
            f"{num_episodes} episodes per seed, other keys): " + "; ".join(checks) + ".\n"
        )
        plot_gridworld(grid["figures"], grid["samplers"], f"multimodality_gridworld{suffix}.png")
        md.append(f"\n![gridworld](multimodality_gridworld{suffix}.png)\n")
        plot_gridworld_field(grid["figures"], f"multimodality_gridworld_field{suffix}.png")
        md.append(
            "\nThe action field (left: 4 sampled actions per non-goal cell, arrows in the squashed "
            "action space; an arrow's y component above 1/3 moves up, below -1/3 down) and 40 "
            f"episodes from the saddle cell {SADDLE} (right, jittered), seed 0, each policy's "
            "stochastic sampler:\n"
            f"\n![gridworld field](multimodality_gridworld_field{suffix}.png)\n"
        )
    common.write_result(f"{file_stem(variant)}.md", "\n".join(md))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--budget", choices=sorted(BUDGETS), default="default")
    p.add_argument(
        "--envs", nargs="+", default=["bandit", "bandit2d", "gridworld"],
        choices=["bandit", "bandit2d", "gridworld"],
    )  # fmt: skip
    p.add_argument(
        "--variant", choices=["default", "paper"], default="default",
        help="gridworld preset variant; 'paper' (the FPO authors' settings) trains the gridworld "
        "only and writes multimodality_gridworld_paper.{json,md}",
    )  # fmt: skip
    p.add_argument(
        "--report", action="store_true",
        help="only rebuild the results file and figures from the stored JSON (of --variant)",
    )  # fmt: skip
    args = common.parse_args(p, argv, "--budget quick", smoke_budget="quick")
    if args.variant != "default":
        args.envs = ["gridworld"]
    path = common.out_dir() / f"{file_stem(args.variant)}.json"
    if not args.report:
        common.write_file(path, json.dumps(run(args)))
    report(json.loads(path.read_text()))


if __name__ == "__main__":
    main()
