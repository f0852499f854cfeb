"""FPO: a flow-matching policy trained with the FPO surrogate."""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, fields
from typing import Literal

import jax
import jax.numpy as jnp

from fpo_jax import diagnostics, flow, loss
from fpo_jax.agents.base import Array, Extras, Params
from fpo_jax.agents.flow_policy import FlowPolicy
from fpo_jax.agents.flow_ppo import check_exact_density_affordable, flow_entropy
from fpo_jax.config import CFMReduction, Ratio, TimeKind, Weighting, algorithm_settings, sweepable


@dataclass(frozen=True)
class FPOSettings:
    """FPO's own settings: its Monte-Carlo CFM pairs, the form of its ratio and the FPO++ parts
    (set by name like any setting: ``train(env, num_pairs=16)``, ``--num-pairs 16``; read with
    ``fpo_jax.config.algorithm_settings(config)``). Every other algorithm refuses them."""

    num_pairs: int = 8
    """N: Monte-Carlo (t, eps) pairs per action for the CFM loss."""
    t_sampler: TimeKind = "grid"
    """Flow times of the pairs: 'grid' = the rollout sampler's own times {1/K, ..., 1} with
    K = flow_steps ({0.1, ..., 1.0} for the paper's 10 steps, as the authors draw them);
    'uniform' = U(0, 1); 'beta' = FPO++'s Beta draw (t_beta)."""
    pair_storage: Literal["stored", "key"] = "stored"
    """'stored': keep each action's N (t, eps) pairs in the rollout buffer; 'key': keep one PRNG
    key per action and regenerate the pairs in the loss (less memory, a little more compute)."""
    cfm_weighting: Weighting = "eps"
    """CFM loss: 'eps' (paper's eps-MSE) or 'velocity' (u-MSE)."""
    ratio: Ratio = "mean"
    """'mean': one ratio from the pair-averaged losses (paper); 'per_sample': one per pair (FPO++)."""
    cfm_loss_clamp: float | None = sweepable(None)
    """FPO++: clamp each CFM loss to at most this before the ratio (None: off)."""
    log_ratio_clamp: float | None = sweepable(None)
    """FPO++: clamp the log-ratio to [-c, c] before exp. None: off for ratio='mean', and 3 for
    ratio='per_sample' (as the FPO authors' code clamps per-pair ratios); 'inf' turns it off."""
    pair_log_ratio_clamp: float | None = sweepable(None)
    """Clamp each pair's loss difference l_old_i - l_new_i to [-c, c] before the pairs are
    averaged (ratio='mean'), as the FPO authors' GridWorld code does with c = 3; None: off."""
    ratio_diagnostics: int = 0
    """After each iteration's update, compare the surrogate ratio with the flow's exact ratio
    pi_new(a|s) / pi_old(a|s) on this many actions of the batch (correlation, sign and
    clip-decision agreement, bias; metrics ratio_diagnostics/... in metrics.jsonl). 0: off, and
    nothing of it is compiled. Costs an exact log density per action, twice."""
    # FPO++ recipe ("Flow Policy Gradients for Robot Control", Yi, Choi et al., arXiv
    # 2602.02481). Each is off by default; --variant fpo++ turns them on.
    t_beta: float = sweepable(1.0)
    """t_sampler='beta': the b of FPO++'s Beta(1, b) flow-time draw (their time runs the other
    way; ours is t ~ Beta(b, 1) truncated, see fpo_jax.flow.sample_flow_times). FPO++: 1."""
    cfm_loss_reduction: CFMReduction = "mean"
    """Reduce each pair's squared error over action dims by 'mean' (paper) or 'sqrt' (FPO++:
    sum / sqrt(action dims))."""
    negative_advantage_cfm_clamp: float | None = sweepable(None)
    """Clamp the new CFM loss to at most this where the advantage is negative (FPO++: 20);
    None: off."""
    log_ratio_straight_through: bool = False
    """Make log_ratio_clamp straight-through: clipped forward, unclipped gradient (FPO++, with a
    clamp of 10)."""
    action_perturbation_std: float | None = sweepable(None)
    """Add N(0, std^2) noise to each sampled raw action; the perturbed action is executed,
    stored and used in the CFM losses (FPO++: 0.02). None: off."""

    def __post_init__(self) -> None:
        # Checked with concrete values only: a swept setting arrives traced inside the step.
        hints = typing.get_type_hints(FPOSettings)
        for f in fields(FPOSettings):  # (not self's: the CLI's class adds TrainConfig's)
            choices = typing.get_args(hints[f.name])
            if typing.get_origin(hints[f.name]) is Literal and getattr(self, f.name) not in choices:
                raise ValueError(f"{f.name}={getattr(self, f.name)!r} is not one of {choices}.")
        for name in ("num_pairs", "ratio_diagnostics"):
            value, least = getattr(self, name), 1 if name == "num_pairs" else 0
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                kind = "a positive integer" if least else "an integer >= 0"
                raise ValueError(f"{name} must be {kind}, got {value!r}.")
        for name in ("cfm_loss_clamp", "log_ratio_clamp", "pair_log_ratio_clamp",
                     "negative_advantage_cfm_clamp", "t_beta", "action_perturbation_std"):  # fmt: skip
            value = getattr(self, name)
            if value is None or not isinstance(value, int | float):
                continue
            if name == "action_perturbation_std" and not value >= 0:
                raise ValueError(f"{name} must be >= 0 or None, got {value!r}.")
            if name != "action_perturbation_std" and not value > 0:
                none = "" if name == "t_beta" else " or None"
                raise ValueError(f"{name} must be positive{none}, got {value!r}.")
        if isinstance(self.t_beta, int | float) and self.t_beta != 1.0 and self.t_sampler != "beta":
            raise ValueError(
                f"t_beta={self.t_beta!r} is read only with t_sampler='beta' (got {self.t_sampler!r})."
            )
        if (
            self.log_ratio_straight_through
            and self.log_ratio_clamp is None
            and self.ratio == "mean"
        ):
            raise ValueError(
                "log_ratio_straight_through needs a log_ratio_clamp (ratio='mean' has none)."
            )


@dataclass(frozen=True)
class FPOAgent(FlowPolicy):
    """Flow policy: integrate ``v_theta(obs, x_t, t)`` from noise to action; train with FPO.

    At rollout time every action gets ``num_pairs`` (t, eps) pairs and their CFM losses under the
    rollout parameters; the objective recomputes the losses on the same pairs (see
    :func:`fpo_jax.loss.fpo_objective`).
    """

    name: str = "fpo"

    @property
    def settings(self) -> FPOSettings:
        """FPO's own settings in the run's config (:class:`FPOSettings`)."""
        return algorithm_settings(self.config)

    def __post_init__(self) -> None:
        if self.config.flow_entropy_cost:
            check_exact_density_affordable(self.action_size, "flow_entropy_cost")

    def act(self, params: Params, obs: Array, key: Array) -> tuple[Array, Extras]:
        """obs (*B, obs_dim) -> raw_action (*B, A), extras {eps (*B, N, A), t (*B, N, 1),
        old_cfm_loss (*B, N)}; with ``pair_storage="key"`` extras hold pair_key (*B, 2)
        instead of eps and t.

        With ``action_perturbation_std`` (FPO++) the sampled raw action gets N(0, std^2) noise;
        the perturbed one is returned (executed, stored) and its old CFM losses recorded."""
        c, s = self.config, self.settings
        k_sample, k_pairs = jax.random.split(key)
        # The entropy bonus pushes the source noise through the updated parameters' sampler.
        keep_noise = bool(c.flow_entropy_cost)
        sampled = flow.sample(
            self.velocity_fn,
            params,
            obs,
            k_sample,
            action_dim=self.action_size,
            integrator=c.integrator,
            num_steps=c.flow_steps,
            return_path=keep_noise,
        )
        x, path = sampled if keep_noise else (sampled, None)
        entropy_noise = {"noise": path[..., 0, :]} if keep_noise else {}
        if s.action_perturbation_std is not None:
            # Its own key, split off only when on: without it the draws are today's.
            k_pairs, k_perturb = jax.random.split(k_pairs)
            raw = flow.perturb_actions(k_perturb, self.to_raw_action(x), s.action_perturbation_std)
            x = self.from_raw_action(raw)
        batch_shape = obs.shape[:-1]
        if s.pair_storage == "key":
            pair_keys = jax.random.split(k_pairs, math.prod(batch_shape)).reshape(*batch_shape, 2)
            t, eps = self.pairs_from_keys(pair_keys)
            pairs = {"pair_key": pair_keys}
        else:
            t, eps = flow.draw_cfm_pairs(
                k_pairs,
                batch_shape,
                s.num_pairs,
                self.action_size,
                t_kind=s.t_sampler,
                num_grid_steps=c.flow_steps,
                t_beta=s.t_beta,
            )
            pairs = {"eps": eps, "t": t}
        old = loss.cfm_loss(
            self.velocity_fn,
            params,
            obs,
            x,
            eps,
            t,
            weighting=s.cfm_weighting,
            reduction=s.cfm_loss_reduction,
        )
        return self.to_raw_action(x), {**pairs, "old_cfm_loss": old, **entropy_noise}

    def pairs_from_keys(self, pair_keys: Array) -> tuple[Array, Array]:
        """One raw key per action (*B, 2) -> its pairs t (*B, N, 1), eps (*B, N, A)."""
        c, s = self.config, self.settings
        draw = lambda k: flow.draw_cfm_pairs(
            k,
            (),
            s.num_pairs,
            self.action_size,
            t_kind=s.t_sampler,
            num_grid_steps=c.flow_steps,
            t_beta=s.t_beta,
        )
        flat = pair_keys.reshape(-1, 2)
        t, eps = jax.vmap(draw)(flat)
        batch_shape = pair_keys.shape[:-1]
        return t.reshape(*batch_shape, *t.shape[1:]), eps.reshape(*batch_shape, *eps.shape[1:])

    def objective(
        self, params: Params, obs: Array, raw_action: Array, extras: Extras, advantages: Array
    ) -> tuple[Array, dict[str, Array]]:
        c, s = self.config, self.settings
        if "pair_key" in extras:
            t, eps = self.pairs_from_keys(extras["pair_key"])
        else:
            t, eps = extras["t"], extras["eps"]
        policy_loss, metrics = loss.fpo_objective(
            self.velocity_fn,
            params,
            obs,
            self.from_raw_action(raw_action),
            eps,
            t,
            extras["old_cfm_loss"],
            advantages,
            clip_epsilon=c.clip_epsilon,
            ratio=s.ratio,
            trust_region=c.trust_region,
            weighting=s.cfm_weighting,
            cfm_loss_clamp=s.cfm_loss_clamp,
            log_ratio_clamp=self.log_ratio_clamp,
            pair_log_ratio_clamp=s.pair_log_ratio_clamp,
            cfm_loss_reduction=s.cfm_loss_reduction,
            negative_advantage_cfm_clamp=s.negative_advantage_cfm_clamp,
            log_ratio_straight_through=s.log_ratio_straight_through,
        )
        if c.flow_entropy_cost:
            entropy = jnp.mean(flow_entropy(self, params, obs, extras["noise"]))
            metrics["entropy"] = entropy
            policy_loss = policy_loss - c.flow_entropy_cost * entropy
        return policy_loss, metrics

    @property
    def diagnosed_actions(self) -> int:
        """How many actions of each iteration's batch :meth:`ratio_diagnostics` compares after
        the update (``config.ratio_diagnostics``; 0: off)."""
        return self.settings.ratio_diagnostics

    def ratio_diagnostics(
        self,
        old_params: Params,
        new_params: Params,
        obs: Array,
        raw_action: Array,
        extras: Extras,
        advantages: Array,
    ) -> dict[str, Array]:
        """FPO's surrogate log-ratios (mean and per-pair forms) against the exact log-ratio of
        the flow (:func:`fpo_jax.diagnostics.fpo_log_ratios`): correlation, sign and clip-decision
        agreement, bias (:func:`fpo_jax.diagnostics.ratio_fidelity`), as scalar metrics
        ``ratio_diagnostics/...``. obs (n, obs_dim), raw_action (n, A), extras of n actions,
        advantages (n,)."""
        pair, exact = diagnostics.fpo_log_ratios(
            self, old_params, new_params, obs, raw_action, extras
        )
        out = diagnostics.ratio_fidelity(
            pair, exact, advantages, clip_epsilon=self.config.clip_epsilon
        )
        return {f"ratio_diagnostics/{k}": v for k, v in out.items()}

    @property
    def log_ratio_clamp(self) -> float | None:
        """The configured clamp; by default 3 for per-pair ratios (the FPO authors' choice:
        a single pair's ratio is far noisier than the pair-averaged one), none for 'mean'."""
        s = self.settings
        if s.log_ratio_clamp is None:
            return 3.0 if s.ratio == "per_sample" else None
        if isinstance(s.log_ratio_clamp, int | float) and s.log_ratio_clamp == float("inf"):
            return None
        return s.log_ratio_clamp  # a number, or a traced value in a sweep
