"""DPPO baseline: the denoising chain as an MDP with exact per-step Gaussian likelihoods."""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

from fpo_jax import flow, loss
from fpo_jax.agents.base import Array, Extras, Params
from fpo_jax.agents.flow_policy import FlowPolicy


@dataclass(frozen=True)
class DPPOAgent(FlowPolicy):
    """Same velocity network as FPO, sampled with fixed-sigma stochastic Euler steps.

    Step k maps ``x_k`` (at ``t_k = 1 - k/K``) to ``x_{k+1} ~ N(x_k - dt v(x_k, t_k), sigma^2 I)``.
    Each step's log-likelihood is exact, so each gets its own PPO ratio, clipped with the
    environment advantage of the final action (see :func:`fpo_jax.loss.dppo_objective`).
    """

    name: str = "dppo"

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
        return loss.gaussian_log_prob(x_next, mean, self.config.dppo_sigma)

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
            sigma=c.dppo_sigma,
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
