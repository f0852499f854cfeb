"""How well FPO's likelihood-ratio surrogate tracks the exact ratio, and why FPO picks one mode
of the symmetric 1-D bandit.

The task is the built-in ``bandit`` (reward 1 at squashed actions -0.6 and +0.6, two equally
good modes; constant observation), trained with ``fpo_jax.train.train`` at its preset (N = 8
pairs, mean ratio, PPO clip 0.1, lr 1e-3, 1024 actions per iteration, 4 epochs x 4 minibatches)
and at one-setting variants: N = 32, the per-sample ratio, per-sample ratio + ASPO, lr 3e-4,
clip 0.05, source noise 0.5 (``flow_noise_scale``). A control trains the same flow network with
PPO on the **exact** likelihood ratio (:class:`ExactRatioFlowAgent`: actions sampled with RK4,
their log density by :func:`fpo_jax.diagnostics.flow_log_prob`, gradients through it), so that
the effect of the surrogate can be told apart from that of PPO-style updates as such.

Every ``--every`` calls of the compiled step (one training iteration each), ``progress_fn``
copies the state to the host. From the previous call's state it rebuilds the very rollout the
update used (``Trainer.collect`` is pure: same key, same actions) and, on its first
``--subset`` actions, compares FPO's surrogate log-ratio (the stored (t, eps) pairs and old CFM
losses against the new parameters' losses, :func:`fpo_jax.diagnostics.fpo_log_ratios`) with the
exact ``log pi_new(a) - log pi_old(a)`` of the pre-tanh action
(:func:`fpo_jax.diagnostics.ratio_fidelity`). The advantage sign is that of
``reward - V_old(obs)`` (discount 0, one-step episodes; the trainer normalises per minibatch).
For the control, whose rollout stores no pairs, fresh pairs are drawn as FPO would. The
rollout's actions also give the action histogram of the policy over training.

Run from the repository root::

    python experiments/ratio_fidelity.py            # ~15 min on 2 shared CPU cores
    python experiments/ratio_fidelity.py --smoke    # 2 settings, 4 iterations, to /tmp
    python experiments/ratio_fidelity.py --report   # rebuild from the stored JSON

Writes ``experiments/results/ratio_fidelity.json`` (every recorded statistic per call and seed,
4 significant digits; the final mode shares and returns; the arguments and the provenance), and
from it ``ratio_fidelity.md``, ``ratio_fidelity.png`` (ratio statistics over training) and
``ratio_fidelity_hist.png`` (action histograms over training, every setting and seed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (also puts the repository on sys.path)
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from fpo_jax import diagnostics, envs, flow, loss, normalization  # noqa: E402
from fpo_jax.agents import FPOAgent  # noqa: E402
from fpo_jax.config import replace  # noqa: E402
from fpo_jax.presets import preset  # noqa: E402
from fpo_jax.train import member_inputs, train  # noqa: E402
from fpo_jax.trainer import Trainer  # noqa: E402

ENV = "bandit"
MODES = (-0.6, 0.6)
NEAR = 0.2  # "at a mode": squashed action within +-0.2 of it (as experiments/multimodality.py)
BINS = 40
# Steps of the exact log density (RK4). The result records the largest change at 4x the steps.
LOG_PROB_STEPS = 32

SETTINGS: dict[str, dict[str, Any]] = {
    "preset (N 8, mean ratio, PPO clip 0.1, lr 1e-3)": {},
    "N = 32": dict(num_pairs=32),
    "per-sample ratio": dict(ratio="per_sample"),
    "per-sample ratio + ASPO": dict(ratio="per_sample", trust_region="aspo"),
    "per-sample ratio + ASPO, 2x steps": dict(ratio="per_sample", trust_region="aspo", steps=2),
    "lr 3e-4": dict(learning_rate=3e-4),
    "clip 0.05": dict(clip_epsilon=0.05),
    "source noise 0.5": dict(flow_noise_scale=0.5),
    "control: PPO on the exact ratio": dict(algo_control=True),
}


@dataclasses.dataclass(frozen=True)
class ExactRatioFlowAgent(FPOAgent):
    """The same flow policy trained with PPO on the exact likelihood ratio (a control).

    Acts with ``exact_steps`` RK4 steps from N(0, I) noise, so that the sampled actions follow
    the ODE density that :func:`fpo_jax.diagnostics.flow_log_prob` computes (to RK4 accuracy),
    and stores that log density; the objective is PPO's clipped surrogate on
    ``exp(log pi_new - log pi_old)`` with gradients through the log density.
    """

    name: str = "exact_ratio_flow"
    exact_steps: int = 16

    def _log_prob(self, params, obs, raw_action):
        return diagnostics.flow_log_prob(
            self.velocity_fn,
            params,
            obs,
            raw_action,
            num_steps=self.exact_steps,
            source_std=self.config.flow_noise_scale,
        )

    def act(self, params, obs, key):
        x = flow.sample(
            self.velocity_fn,
            params,
            obs,
            key,
            action_dim=self.action_size,
            integrator="rk4",
            num_steps=self.exact_steps,
        )
        raw = self.to_raw_action(x)
        return raw, {"log_prob": self._log_prob(params, obs, raw)}

    def objective(self, params, obs, raw_action, extras, advantages):
        c = self.config
        return loss.ppo_objective(
            self._log_prob(params, obs, raw_action),
            extras["log_prob"],
            advantages,
            clip_epsilon=c.clip_epsilon,
            trust_region=c.trust_region,
        )


def _mode_shares(squashed: np.ndarray) -> np.ndarray:
    """(..., n) squashed actions -> (..., 2) shares within NEAR of each mode."""
    return np.stack([np.mean(np.abs(squashed - m) < NEAR, axis=-1) for m in MODES], axis=-1)


class Monitor:
    """progress_fn: host copies of consecutive states, diagnostics on the rebuilt rollout."""

    def __init__(self, trainer: Trainer, agent: Any, initial_state: Any, every: int, subset: int):
        self.trainer, self.agent, self.every, self.subset = trainer, agent, every, subset
        self.prev = jax.device_get(initial_state)
        self.rows: list[dict[str, Any]] = []
        self.log_prob_check: list[float] = []
        self._diag = jax.jit(jax.vmap(self._one))
        self._diag_fine = jax.jit(jax.vmap(lambda p, n: self._one(p, n, steps=4 * LOG_PROB_STEPS)))

    def _one(self, prev, new, steps: int = LOG_PROB_STEPS):
        """One member: diagnostics of the update prev -> new on prev's rollout."""
        trainer, agent, c, m = self.trainer, self.agent, self.trainer.config, self.subset
        _, rollout = trainer.collect(prev)
        traj = jax.tree.map(lambda x: x[:, 0], rollout.traj)  # one-step trajectories: drop T
        obs, raw = traj["obs"][:m], traj["raw_action"][:m]
        extras = jax.tree.map(lambda x: x[:m], traj["extras"])
        old_policy, new_policy = prev.params["policy"], new.params["policy"]
        if "old_cfm_loss" not in extras:  # the control: draw FPO's pairs as FPO would
            t, eps = flow.draw_cfm_pairs(
                jax.random.PRNGKey(0),
                (m,),
                c.num_pairs,
                agent.action_size,
                t_kind=c.t_sampler,
                num_grid_steps=c.flow_steps,
            )
            old = loss.cfm_loss(
                agent.velocity_fn, old_policy, obs, agent.from_raw_action(raw), eps, t
            )
            extras = {"t": t, "eps": eps, "old_cfm_loss": old}
        pair_lr, exact_lr = diagnostics.fpo_log_ratios(
            agent, old_policy, new_policy, obs, raw, extras, num_steps=steps
        )
        value = trainer.value_net.apply(prev.params["value"], obs)
        adv = loss.normalize_advantages(traj["reward"][:m] * c.reward_scaling - value)
        out = diagnostics.ratio_fidelity(pair_lr, exact_lr, adv, clip_epsilon=c.clip_epsilon)
        mean_lr = jnp.mean(pair_lr, axis=-1)
        squashed = jnp.tanh(raw[:, 0])
        for name, side in (("plus", squashed > 0), ("minus", squashed <= 0)):
            w = side.astype(jnp.float32)
            n = jnp.maximum(jnp.sum(w), 1.0)
            out[f"{name}/share"] = jnp.mean(w)
            out[f"{name}/reward"] = jnp.sum(w * traj["reward"][:m]) / n
            out[f"{name}/exact_log_ratio"] = jnp.sum(w * exact_lr) / n
            out[f"{name}/surrogate_log_ratio"] = jnp.sum(w * mean_lr) / n
            # Each side's probability after the update, by importance weighting the old samples.
            out[f"{name}/share_new_exact"] = jnp.mean(w * jnp.exp(exact_lr))
            out[f"{name}/share_new_surrogate"] = jnp.mean(w * jnp.exp(mean_lr))
        out["exact_log_ratio"] = exact_lr
        hist, _ = jnp.histogram(jnp.tanh(traj["raw_action"][:, 0]), bins=BINS, range=(-1, 1))
        return out, hist

    def __call__(self, record: dict[str, Any], state: Any) -> None:
        new = jax.device_get(state)  # copy now: the state's buffers are donated to the next call
        call = int(record["call"])
        if call == 1 or call % self.every == 0:
            out, hist = jax.device_get(self._diag(self.prev, new))
            if len(self.log_prob_check) < 3 and call >= 10:
                fine, _ = jax.device_get(self._diag_fine(self.prev, new))
                diff = np.abs(fine["exact_log_ratio"] - out["exact_log_ratio"])
                self.log_prob_check.append(float(np.max(diff)))
            out.pop("exact_log_ratio")
            self.rows.append({"call": call, "env_steps": record["env_steps"], "hist": hist, **out})
        self.prev = new


def run_setting(label: str, overrides: dict[str, Any], args: argparse.Namespace) -> dict:
    overrides = dict(overrides)
    control = overrides.pop("algo_control", False)
    config = replace(
        preset(ENV, "fpo"),
        num_timesteps=args.steps * overrides.pop("steps", 1),
        num_seeds=args.seeds,
        num_evals=2,
        **overrides,
    )
    env = envs.make_env(ENV)
    agent = (ExactRatioFlowAgent if control else FPOAgent)(config, env.action_size)
    trainer = Trainer(env, config, agent=agent)
    _, keys, hparams = member_inputs(config)
    monitor = Monitor(
        trainer, agent, jax.jit(jax.vmap(trainer.init))(keys, hparams), args.every, args.subset
    )
    common.log(f"{label}: training")
    result = train(ENV, config, agent=agent, progress_fn=monitor)
    state = result.state

    def final_samples(params, stats, key):
        obs = normalization.normalize(
            stats, jnp.ones((args.samples, 1)), config.normalize_observations
        )
        raw, _ = agent.act(params["policy"], obs, key)
        return jnp.tanh(raw[:, 0])

    keys = jax.random.split(jax.random.PRNGKey(123), args.seeds)
    samples = np.asarray(jax.jit(jax.vmap(final_samples))(state.params, state.obs_stats, keys))
    evals = [r for r in result.history if r.get("eval/episode_return") is not None]
    return {
        "label": label,
        "config": config,
        "rows": monitor.rows,
        "mode_shares": _mode_shares(samples),  # (seeds, 2), from the squashed samples
        "eval": np.asarray(evals[-1]["per_member/eval/episode_return"]).reshape(-1),
        "log_prob_check": monitor.log_prob_check,
    }


# ----------------------------------------------------------------------------------------------
# Report


def _series(res: dict, key: str) -> np.ndarray:
    """(calls, seeds) of one diagnostic."""
    return np.array([np.asarray(r[key]).reshape(-1) for r in res["rows"]], dtype=np.float64)


def _steps(res: dict) -> np.ndarray:
    return np.array([r["env_steps"] for r in res["rows"]])


def _weight_mean(res: dict) -> np.ndarray:
    """(calls, seeds) mean of exp(exact log-ratio) over the old policy's actions: 1 when the
    actions follow the ODE density that the exact log-ratio is computed under."""
    return _series(res, "plus/share_new_exact") + _series(res, "minus/share_new_exact")


def _share_after(res: dict, kind: str) -> np.ndarray:
    """(calls, seeds) share of a > 0 after the update, self-normalised importance weights."""
    plus, minus = _series(res, f"plus/share_new_{kind}"), _series(res, f"minus/share_new_{kind}")
    return plus / (plus + minus)


def mechanism_summary(results: list[dict]) -> str:
    """Per setting, pooled over seeds, updates while the majority side holds < 95 %:
    rich-get-richer (reward gap vs share imbalance) and the step towards the majority."""
    headers = [
        "setting",
        "updates",
        "corr(share imbalance, reward gap)",
        "mean reward gap majority - minority",
        "step to majority per update: exact / surrogate (pp)",
        "corr(exact step, surrogate step)",
        "calls until one side > 95 % (per seed)",
    ]
    rows = []
    for res in results:
        share = _series(res, "plus/share")
        gap = _series(res, "plus/reward") - _series(res, "minus/reward")
        side = np.sign(share - 0.5)
        open_ = np.maximum(share, 1 - share) < 0.95
        step_e = side * (_share_after(res, "exact") - share)
        step_s = side * (_share_after(res, "surrogate") - share)
        calls = np.array([r["call"] for r in res["rows"]])
        until = []
        for k in range(share.shape[1]):
            hit = np.flatnonzero(~open_[:, k])
            until.append(str(calls[hit[0]]) if hit.size else f"> {calls[-1]}")
        sel = open_ & np.isfinite(step_e) & np.isfinite(step_s)
        rows.append(
            [
                res["label"],
                int(sel.sum()),
                f"{np.corrcoef(np.abs(share - 0.5)[sel], (side * gap)[sel])[0, 1]:+.2f}",
                f"{np.mean((side * gap)[sel]):+.3f}",
                f"{100 * np.mean(step_e[sel]):+.2f} / {100 * np.mean(step_s[sel]):+.2f}",
                f"{np.corrcoef(step_e[sel], step_s[sel])[0, 1]:+.2f}",
                ", ".join(until),
            ]
        )
    return common.markdown_table(headers, rows, "lrrrrrl")


def _rounded(x: Any) -> Any:
    """Nested lists of floats with 4 significant digits (ints unchanged), for a small JSON."""
    a = np.asarray(x)
    if a.dtype.kind in "iub":
        return a.tolist()
    return np.vectorize(lambda v: float(f"{v:.4g}"), otypes=[object])(a).tolist()


def record(results: list[dict], args: argparse.Namespace, config_line: str) -> dict:
    """What the report needs, to store as ``ratio_fidelity.json``: every recorded statistic
    (per call and seed, 4 significant digits), the final mode shares and returns, the log
    density check, the arguments and the provenance."""
    out = []
    for res in results:
        rows = [{k: _rounded(v) for k, v in r.items()} for r in res["rows"]]
        out.append(
            {"label": res["label"], "rows": rows,
             "final_mode_shares": np.asarray(res["mode_shares"]).tolist(),
             "eval_return": np.asarray(res["eval"]).tolist()}
        )  # fmt: skip
    checks = [x for res in results for x in res["log_prob_check"]]
    meta = {k: getattr(args, k) for k in ("steps", "seeds", "every", "subset", "samples")}
    return dict(
        args=meta, config=config_line, provenance=common.provenance(), results=out,
        log_prob_check=dict(max=max(checks) if checks else None, count=len(checks)),
    )  # fmt: skip


def stored_results(stored: dict) -> list[dict]:
    """The stored record's results in the form the tables read."""
    return [
        dict(label=r["label"], rows=r["rows"], mode_shares=np.asarray(r["final_mode_shares"]),
             eval=np.asarray(r["eval_return"], np.float64))
        for r in stored["results"]
    ]  # fmt: skip


def fidelity_table(results: list[dict], early_calls: int) -> str:
    headers = [
        "setting",
        "phase",
        "corr (mean / per-pair)",
        "sign agreement",
        "clip agreement",
        "clipped: surrogate / exact %",
        "bias (mean form)",
        "rmse (mean / per-pair)",
        "E_old[exp(exact)]",
    ]
    rows = []
    for res in results:
        calls = np.array([r["call"] for r in res["rows"]])
        for phase, sel in (("early", calls <= early_calls), ("late", calls > early_calls)):
            if not sel.any():
                continue

            def f(key, digits=2, scale=1.0, sel=sel, res=res):
                return common.fmt_pm(np.nanmean(_series(res, key)[sel], axis=0) * scale, digits)

            rows.append(
                [
                    res["label"],
                    f"{phase} (calls {'<=' if phase == 'early' else '>'} {early_calls})",
                    f"{f('mean/corr')} / {f('per_sample/corr')}",
                    f"{f('mean/sign_agreement')} / {f('per_sample/sign_agreement')}",
                    f"{f('mean/clip_agreement')} / {f('per_sample/clip_agreement')}",
                    f"{f('mean/clip_fraction', 1, 100)} / {f('exact/clip_fraction', 1, 100)}",
                    f("mean/bias", 3),
                    f"{f('mean/rmse', 3)} / {f('per_sample/rmse', 3)}",
                    common.fmt_pm(np.nanmean(_weight_mean(res)[sel], axis=0), 2),
                ]
            )
    return common.markdown_table(headers, rows, "l" * 8 + "r")


def modes_table(results: list[dict]) -> tuple[str, dict[str, int]]:
    headers = ["setting", "mode -0.6 % per seed", "mode +0.6 % per seed", "seeds with both >= 10 %",
               "final eval return"]  # fmt: skip
    rows, both = [], {}
    for res in results:
        shares = np.asarray(res["mode_shares"]) * 100  # (seeds, 2)
        n_both = int(np.sum(np.min(shares, axis=1) >= 10))
        both[res["label"]] = n_both
        rows.append(
            [
                res["label"],
                ", ".join(f"{s:.1f}" for s in shares[:, 0]),
                ", ".join(f"{s:.1f}" for s in shares[:, 1]),
                f"{n_both} / {shares.shape[0]}",
                common.fmt_pm(res["eval"], 2),
            ]
        )
    return common.markdown_table(headers, rows, "lrrrr"), both


def mechanism_table(res: dict, seed: int, last_call: int = 24) -> str:
    """Per recorded call of one seed: sides' shares, rewards and log-ratios, exact vs surrogate."""
    headers = [
        "call",
        "share a > 0 (old)",
        "reward a > 0 / a <= 0",
        "exact log-ratio a > 0 / a <= 0",
        "surrogate log-ratio a > 0 / a <= 0",
        "share a > 0 after: exact / surrogate",
        "E_old[exp(exact)]",
        "corr (mean form)",
    ]
    after_e, after_s = _share_after(res, "exact"), _share_after(res, "surrogate")
    weight = _weight_mean(res)
    rows = []
    for i, r in enumerate(res["rows"]):
        if r["call"] > last_call:
            break
        g = lambda k, r=r: float(np.asarray(r[k]).reshape(-1)[seed])
        rows.append(
            [
                r["call"],
                f"{g('plus/share'):.3f}",
                f"{g('plus/reward'):.3f} / {g('minus/reward'):.3f}",
                f"{g('plus/exact_log_ratio'):+.4f} / {g('minus/exact_log_ratio'):+.4f}",
                f"{g('plus/surrogate_log_ratio'):+.4f} / {g('minus/surrogate_log_ratio'):+.4f}",
                f"{after_e[i, seed]:.3f} / {after_s[i, seed]:.3f}",
                f"{weight[i, seed]:.2f}",
                f"{g('mean/corr'):.2f}",
            ]
        )
    return common.markdown_table(headers, rows, "rrrrrrrr")


def plot_fidelity(results: list[dict]) -> None:
    plt = common.pyplot()
    panels = [
        ("mean/corr", "corr(surrogate, exact) log-ratio, mean form"),
        ("per_sample/corr", "corr, per-pair form"),
        ("mean/clip_agreement", "PPO clip decision agreement, mean form"),
        ("mean/bias", "bias: surrogate - exact log-ratio, mean form"),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5))
    colors = plt.cm.tab10(np.arange(len(results)))
    for ax, (key, title) in zip(axes.ravel(), panels, strict=True):
        for res, color in zip(results, colors, strict=True):
            y = _series(res, key)
            ax.plot(_steps(res), np.nanmean(y, axis=1), color=color, label=res["label"], lw=1.5)
            ax.fill_between(_steps(res), y.min(axis=1), y.max(axis=1), color=color, alpha=0.12)
        if key.endswith("bias"):  # a few nats early, hundreds once a mode is very narrow
            ax.set_yscale("symlog", linthresh=0.1)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    common.save_figure(fig, "ratio_fidelity.png")


def plot_histograms(results: list[dict]) -> None:
    plt = common.pyplot()
    seeds = np.asarray(results[0]["rows"][0]["hist"]).shape[0]
    fig, axes = plt.subplots(
        len(results), seeds, figsize=(3.2 * seeds, 1.6 * len(results)), squeeze=False
    )
    for i, res in enumerate(results):
        hist = np.array([r["hist"] for r in res["rows"]], dtype=np.float64)  # (calls, seeds, BINS)
        hist /= np.maximum(hist.sum(axis=-1, keepdims=True), 1)
        steps = _steps(res)
        for s in range(seeds):
            ax = axes[i, s]
            ax.imshow(
                hist[:, s].T,
                origin="lower",
                aspect="auto",
                extent=(steps[0], steps[-1], -1, 1),
                cmap="magma",
                vmax=0.3,
            )
            for m in MODES:
                ax.axhline(m, color="w", lw=0.4, ls=":")
            ax.set_yticks([-0.6, 0, 0.6])
            ax.tick_params(labelsize=6)
            if s == 0:
                ax.set_ylabel(res["label"], fontsize=6)
            if i == 0:
                ax.set_title(f"seed {s}: tanh(action) over training", fontsize=8)
    fig.supxlabel("env steps", fontsize=8)
    common.save_figure(fig, "ratio_fidelity_hist.png")


def report(stored: dict) -> None:
    """The tables and figures from a stored record (:func:`record`)."""
    results, a = stored_results(stored), stored["args"]
    early = 10
    header = common.results_header(
        "FPO's ratio vs the exact ratio; modes of the symmetric bandit",
        f"{a['steps']:,} env steps per run, {a['seeds']} seeds (vmapped) per setting",
        [
            stored["config"],
            f"ratio diagnostics every {a['every']} calls on {a['subset']} actions of the "
            f"iteration's own batch; exact log density: RK4, {LOG_PROB_STEPS} steps",
            f"final mode shares from {a['samples']} samples per seed (training sampler)",
        ],
        data=[stored["provenance"]],
    )
    modes, _ = modes_table(results)
    check = stored["log_prob_check"]
    text = [
        header,
        "\n## Does FPO's ratio track the exact ratio?\n",
        "Per update (one call = one iteration), on the iteration's own actions: FPO's surrogate "
        "log-ratio (mean form `mean_i l_old_i - mean_i l_new_i`, and the per-pair terms "
        "`l_old_i - l_new_i`, before any clamp) against the exact `log pi_new(a) - log "
        "pi_old(a)` of the pre-tanh action (probability-flow ODE, `fpo_jax.diagnostics."
        "flow_log_prob`). Mean ± standard error over seeds of the per-update statistics, "
        f"averaged over the first {early} calls (early) and the rest (late). Clip agreement: "
        "the fraction of actions on which PPO's clip decision (clipped iff A > 0 and r > 1 + e, "
        "or A < 0 and r < 1 - e) is the same under both ratios. For the control the surrogate "
        "is what FPO would compute with fresh pairs; it is not used in training.\n",
        fidelity_table(results, early),
        f"\nExact log-ratio at {LOG_PROB_STEPS} vs {4 * LOG_PROB_STEPS} RK4 steps: largest "
        f"difference {check['max'] if check['max'] is not None else float('nan'):.1e} over "
        f"{check['count']} checked updates.\n",
        "\n![ratio statistics over training](ratio_fidelity.png)\n",
        "\n## Modes at the end of training\n",
        f"Share (%) of samples within ±{NEAR} of each mode (squashed action).\n",
        modes,
        "\n![action histograms over training](ratio_fidelity_hist.png)\n",
        "\n## How one side wins\n",
        "Per setting, pooled over seeds, the recorded updates while neither side (a > 0, a <= 0) "
        "holds 95 % of the batch. Share imbalance: |share(a > 0) - 0.5|; reward gap: the mean "
        "reward of the majority side's actions minus the minority's. Step to majority: how many "
        "percentage points the update moves the majority side's probability, estimated on the "
        "old actions with self-normalised importance weights from the exact and from FPO's "
        "(mean-form) log-ratio.\n",
        mechanism_summary(results),
        f"\n## How the mass moves: {results[0]['label']}, seed 0\n",
        "Old-policy shares and mean rewards of the two sides (a > 0, a <= 0) in the batch, the "
        "mean log-ratio of each side's actions, and the side's probability after the update "
        "estimated from the old samples with the exact and with FPO's (mean-form) ratio "
        "(self-normalised), and the mean exact importance weight (1 while the sampled actions "
        "follow the ODE density the exact ratio is computed under).\n",
        mechanism_table(results[0], 0),
    ]
    common.write_result("ratio_fidelity.md", "\n".join(text))
    plot_fidelity(results)
    plot_histograms(results)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40_960, help="env steps per run")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--every", type=int, default=2, help="diagnostics every this many calls")
    parser.add_argument("--subset", type=int, default=512, help="actions of the batch compared")
    parser.add_argument("--samples", type=int, default=2000, help="final samples per seed")
    parser.add_argument("--settings", nargs="*", default=None, help="labels to run (default all)")
    parser.add_argument("--report", action="store_true", help="only rebuild from the stored JSON")
    args = common.parse_args(parser, argv, "2 settings, 2 seeds, 4 iterations")
    path = common.out_dir() / "ratio_fidelity.json"
    if args.report:
        report(json.loads(path.read_text()))
        return
    if args.smoke:
        args.steps, args.seeds, args.every, args.subset, args.samples = 4096, 2, 1, 64, 200
    labels = args.settings or (
        [*list(SETTINGS)[:1], list(SETTINGS)[-1]] if args.smoke else list(SETTINGS)
    )
    common.enable_compilation_cache()
    results = [run_setting(label, SETTINGS[label], args) for label in labels]
    config = results[0]["config"]
    config_line = (
        f"`{ENV}` preset: {config.num_envs} envs, {config.batch_size} x "
        f"{config.num_minibatches} one-step trajectories per iteration, {config.num_epochs} "
        f"epochs, flow steps {config.flow_steps} ({config.integrator}), N = "
        f"{config.num_pairs}, lr {config.learning_rate}, clip {config.clip_epsilon}"
    )
    stored = record(results, args, config_line)
    common.write_file(path, json.dumps(stored))
    report(stored)


if __name__ == "__main__":
    main()
