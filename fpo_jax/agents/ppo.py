"""Gaussian PPO baseline: a tanh-squashed diagonal Gaussian policy, as in Brax."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from fpo_jax import loss, networks
from fpo_jax.agents.base import Array, Extras, Params
from fpo_jax.config import TrainConfig, algorithm_settings, sweepable


@dataclass(frozen=True)
class PPOSettings:
    """Gaussian PPO's own settings (set by name like any setting: ``train(env, algo="ppo",
    entropy_cost=0.01)``, ``--entropy-cost 0.01``). Every other algorithm refuses them."""

    entropy_cost: float = sweepable(0.0)
    """Weight of the entropy bonus (of the tanh-squashed Gaussian, one-sample estimate)."""
    gaussian_fixed_std: float | None = sweepable(None)
    """A fixed, state-independent std of the pre-tanh Gaussian instead of the learned softplus
    scale (the FPO paper's GridWorld baseline: 0.5); None: learned."""

    def __post_init__(self) -> None:
        # Checked with concrete values only: a swept setting arrives traced inside the step.
        if isinstance(self.entropy_cost, int | float) and not self.entropy_cost >= 0:
            raise ValueError(f"entropy_cost must be >= 0, got {self.entropy_cost!r}.")
        std = self.gaussian_fixed_std
        if isinstance(std, int | float) and not std > 0:
            raise ValueError(f"gaussian_fixed_std must be positive or None, got {std!r}.")


@dataclass(frozen=True)
class GaussianPPOAgent:
    """``a = tanh(u)``, ``u ~ N(mu(obs), diag(s(obs)^2))`` with ``s = softplus(.) + 1e-3``.

    The ratio uses the Gaussian log-probs of the pre-squash ``u`` (the squash's Jacobian cancels).
    The entropy bonus estimates the squashed distribution's entropy with one sample:
    ``H = H_gauss + E[log |d tanh(u)/du|]``. Evaluation (``config.eval_noise``): "zero" acts
    with the mean ``tanh(mu)`` (the FPO paper's baseline), "random" samples like a rollout
    (Brax PPO's default ``deterministic_eval=False``). With
    ``gaussian_fixed_std`` set (:class:`PPOSettings`), ``s`` is that constant (the network's scale head is
    ignored) and only the mean is learned.
    """

    config: TrainConfig
    action_size: int
    network: Any = None
    """Policy module ``obs (..., obs_dim) -> (loc (..., A), scale (..., A))``; default:
    :class:`~fpo_jax.networks.GaussianPolicyMLP` sized by ``config.policy_hidden``."""
    name: str = "ppo"

    @property
    def settings(self) -> PPOSettings:
        """PPO's own settings in the run's config (:class:`PPOSettings`)."""
        return algorithm_settings(self.config)

    def with_settings(self, config: TrainConfig) -> GaussianPPOAgent:
        """This agent reading ``config`` (a sweep member's, with traced values)."""
        return dataclasses.replace(self, config=config)

    @property
    def policy_net(self) -> Any:
        if self.network is not None:
            return self.network
        c = self.config
        return networks.GaussianPolicyMLP(
            action_dim=self.action_size,
            hidden_sizes=c.policy_hidden,
            activation=networks.ACTIVATIONS[c.activation],
            init_scheme=c.network_init,
        )

    def init(self, key: Array, obs_size: int) -> Params:
        return self.policy_net.init(key, jnp.zeros((1, obs_size)))

    def distribution(self, params: Params, obs: Array) -> tuple[Array, Array]:
        """obs (*B, obs_dim) -> (loc (*B, A), scale (*B, A)) of the pre-squash Gaussian."""
        loc, scale = self.policy_net.apply(params, obs)
        fixed_std = self.settings.gaussian_fixed_std
        if fixed_std is not None:
            scale = jnp.full_like(loc, fixed_std)
        return loc, scale

    def act(self, params: Params, obs: Array, key: Array) -> tuple[Array, Extras]:
        """obs (*B, obs_dim) -> raw_action (*B, A), extras {log_prob (*B,)}."""
        loc, scale = self.distribution(params, obs)
        raw_action = loc + scale * jax.random.normal(key, loc.shape, loc.dtype)
        return raw_action, {"log_prob": loss.gaussian_log_prob(raw_action, loc, scale)}

    def objective(
        self, params: Params, obs: Array, raw_action: Array, extras: Extras, advantages: Array
    ) -> tuple[Array, dict[str, Array]]:
        c = self.config
        loc, scale = self.distribution(params, obs)
        log_prob = loss.gaussian_log_prob(raw_action, loc, scale)
        policy_loss, metrics = loss.ppo_objective(
            log_prob, extras["log_prob"], advantages, clip_epsilon=c.clip_epsilon,
            trust_region=c.trust_region,
        )  # fmt: skip
        # Reparameterised sample for the squashed-entropy estimate (needs no stored noise).
        sample = jax.lax.stop_gradient(raw_action - loc) / jax.lax.stop_gradient(scale)
        entropy = loss.gaussian_entropy(scale) + loss.tanh_log_det_jacobian(loc + scale * sample)
        metrics["entropy"] = jnp.mean(entropy)
        metrics["policy_scale"] = jnp.mean(scale)
        return policy_loss - self.settings.entropy_cost * jnp.mean(entropy), metrics

    def eval_act(self, params: Params, obs: Array, key: Array) -> Array:
        loc, scale = self.distribution(params, obs)
        if self.config.eval_noise == "zero":
            return loc
        return loc + scale * jax.random.normal(key, loc.shape, loc.dtype)
