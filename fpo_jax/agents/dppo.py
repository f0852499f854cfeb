"""DPPO baseline: the denoising chain as an MDP with exact per-step Gaussian likelihoods."""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

from fpo_jax import flow, loss
from fpo_jax.agents.base import Array, Extras, Params
from fpo_jax.agents.flow_policy import FlowPolicy
from fpo_jax.config import algorithm_settings, sweepable


@dataclass(frozen=True)
class DPPOSettings:
    """DPPO's own settings (``train(env, algo="dppo", dppo_sigma=0.1)``, ``--dppo-sigma 0.1``;
    the evaluation sigma follows it unless given). Every other algorithm refuses them."""

    dppo_sigma: float = sweepable(0.05)
    """Per-step noise std of the stochastic denoising chain (its likelihoods need it > 0)."""

    def __post_init__(self) -> None:
        # Checked with concrete values only: a swept setting arrives traced inside the step.
        if isinstance(self.dppo_sigma, int | float) and not self.dppo_sigma > 0:
            raise ValueError(
                f"dppo_sigma must be positive (its likelihoods need noise), got {self.dppo_sigma!r}."
            )


@dataclass(frozen=True)
class DPPOAgent(FlowPolicy):
    """Same velocity network as FPO, sampled with fixed-sigma stochastic Euler steps.

    Step k maps ``x_k`` (at ``t_k = 1 - k/K``) to ``x_{k+1} ~ N(x_k - dt v(x_k, t_k), sigma^2 I)``.
    Each step's log-likelihood is exact, so each gets its own PPO ratio, clipped with the
    environment advantage of the final action (see :func:`fpo_jax.loss.dppo_objective`).
    """

    name: str = "dppo"

    @property
    def settings(self) -> DPPOSettings:
        """DPPO's own settings in the run's config (:class:`DPPOSettings`)."""
        return algorithm_settings(self.config)

    def step_log_probs(self, params: Params, obs: Array, path: Array) -> Array:
        """Per-step log-likelihoods of a chain: obs (*B, obs_dim), path (*B, K+1, A) -> (*B, K)."""
        k = self.config.flow_steps
        x = path[..., :-1, :]  # (*B, K, A): state before each step
        x_next = path[..., 1:, :]
        t = jnp.broadcast_to(flow.step_times(k)[:, None], (*x.shape[:-1], 1))
        velocity_fn = self.velocity_fn
        obs_k = flow.expand_obs(velocity_fn, obs, k)  # (*B, 1 or K, obs_dim)
        mean = flow.euler_step(velocity_fn, params, obs_k, x, t, 1.0 / k)
        # Each step's transition x_k -> x_{k+1} is N(mean, sigma^2 I): one density per step.
        return loss.gaussian_log_prob(x_next, mean, self.settings.dppo_sigma)

    def act(self, params: Params, obs: Array, key: Array) -> tuple[Array, Extras]:
        """obs (*B, obs_dim) -> raw_action (*B, A), extras {path (*B, K+1, A),
        step_log_prob (*B, K)}."""
        c = self.config
        x, path = flow.sample(
            self.velocity_fn,
            params,
            obs,
            key,
            action_dim=self.action_size,
            integrator="stochastic",
            num_steps=c.flow_steps,
            sigma=self.settings.dppo_sigma,
            return_path=True,
        )
        extras = {"path": path, "step_log_prob": self.step_log_probs(params, obs, path)}
        return self.to_raw_action(x), extras

    def objective(
        self, params: Params, obs: Array, raw_action: Array, extras: Extras, advantages: Array
    ) -> tuple[Array, dict[str, Array]]:
        del raw_action  # the chain's last state
        new = self.step_log_probs(params, obs, extras["path"])
        return loss.dppo_objective(
            new, extras["step_log_prob"], advantages, clip_epsilon=self.config.clip_epsilon
        )
