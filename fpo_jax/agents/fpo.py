"""FPO: a flow-matching policy trained with the FPO surrogate."""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from fpo_jax import diagnostics, flow, loss
from fpo_jax.agents.base import Array, Extras, Params
from fpo_jax.agents.flow_policy import FlowPolicy
from fpo_jax.agents.flow_ppo import check_exact_density_affordable, flow_entropy


@dataclass(frozen=True)
class FPOAgent(FlowPolicy):
    """Flow policy: integrate ``v_theta(obs, x_t, t)`` from noise to action; train with FPO.

    At rollout time every action gets ``num_pairs`` (t, eps) pairs and their CFM losses under the
    rollout parameters; the objective recomputes the losses on the same pairs (see
    :func:`fpo_jax.loss.fpo_objective`).
    """

    name: str = "fpo"

    def __post_init__(self) -> None:
        if self.config.flow_entropy_cost:
            check_exact_density_affordable(self.action_size, "flow_entropy_cost")

    def act(self, params: Params, obs: Array, key: Array) -> tuple[Array, Extras]:
        """obs (*B, obs_dim) -> raw_action (*B, A), extras {eps (*B, N, A), t (*B, N, 1),
        old_cfm_loss (*B, N)}; with ``pair_storage="key"`` extras hold pair_key (*B, 2)
        instead of eps and t.

        With ``action_perturbation_std`` (FPO++) the sampled raw action gets N(0, std^2) noise;
        the perturbed one is returned (executed, stored) and its old CFM losses recorded."""
        c = self.config
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
        if c.action_perturbation_std is not None:
            # Its own key, split off only when on: without it the draws are today's.
            k_pairs, k_perturb = jax.random.split(k_pairs)
            raw = flow.perturb_actions(k_perturb, self.to_raw_action(x), c.action_perturbation_std)
            x = self.from_raw_action(raw)
        batch_shape = obs.shape[:-1]
        if c.pair_storage == "key":
            pair_keys = jax.random.split(k_pairs, math.prod(batch_shape)).reshape(*batch_shape, 2)
            t, eps = self.pairs_from_keys(pair_keys)
            pairs = {"pair_key": pair_keys}
        else:
            t, eps = flow.draw_cfm_pairs(
                k_pairs,
                batch_shape,
                c.num_pairs,
                self.action_size,
                t_kind=c.t_sampler,
                num_grid_steps=c.flow_steps,
                t_beta=c.t_beta,
            )
            pairs = {"eps": eps, "t": t}
        old = loss.cfm_loss(
            self.velocity_fn,
            params,
            obs,
            x,
            eps,
            t,
            weighting=c.cfm_weighting,
            reduction=c.cfm_loss_reduction,
        )
        return self.to_raw_action(x), {**pairs, "old_cfm_loss": old, **entropy_noise}

    def pairs_from_keys(self, pair_keys: Array) -> tuple[Array, Array]:
        """One raw key per action (*B, 2) -> its pairs t (*B, N, 1), eps (*B, N, A)."""
        c = self.config
        draw = lambda k: flow.draw_cfm_pairs(
            k,
            (),
            c.num_pairs,
            self.action_size,
            t_kind=c.t_sampler,
            num_grid_steps=c.flow_steps,
            t_beta=c.t_beta,
        )
        flat = pair_keys.reshape(-1, 2)
        t, eps = jax.vmap(draw)(flat)
        batch_shape = pair_keys.shape[:-1]
        return t.reshape(*batch_shape, *t.shape[1:]), eps.reshape(*batch_shape, *eps.shape[1:])

    def objective(
        self, params: Params, obs: Array, raw_action: Array, extras: Extras, advantages: Array
    ) -> tuple[Array, dict[str, Array]]:
        c = self.config
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
            ratio=c.ratio,
            trust_region=c.trust_region,
            weighting=c.cfm_weighting,
            cfm_loss_clamp=c.cfm_loss_clamp,
            log_ratio_clamp=self.log_ratio_clamp,
            pair_log_ratio_clamp=c.pair_log_ratio_clamp,
            cfm_loss_reduction=c.cfm_loss_reduction,
            negative_advantage_cfm_clamp=c.negative_advantage_cfm_clamp,
            log_ratio_straight_through=c.log_ratio_straight_through,
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
        return self.config.ratio_diagnostics

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
        c = self.config
        if c.log_ratio_clamp is None:
            return 3.0 if c.ratio == "per_sample" else None
        if isinstance(c.log_ratio_clamp, int | float) and c.log_ratio_clamp == float("inf"):
            return None
        return c.log_ratio_clamp  # a number, or a traced value in a sweep
