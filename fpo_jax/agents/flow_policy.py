"""What every flow-policy agent (FPO, DPPO) shares: the velocity network, its init and eval sampler."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp

from fpo_jax import flow, networks
from fpo_jax.agents.base import Array, Params
from fpo_jax.config import TrainConfig


@dataclass(frozen=True)
class FlowPolicy:
    """A policy that integrates a velocity field ``v(obs, x_t, t)`` from noise (t = 1) to action.

    The flow lives in its own space x, with N(0, I) source noise; the raw (pre-tanh) action is
    ``flow_noise_scale * x`` (:meth:`to_raw_action`), a fixed linear map, so likelihood ratios and
    CFM losses are those of x, and a scale below 1 shrinks the untrained policy's exploration.

    Args:
      config: the run's config (sampler settings, sizes of the default network).
      action_size: A.
      network: the velocity network, any Flax module with
        ``__call__(obs (..., obs_dim), x_t (..., A), t (..., 1)) -> v (..., A)`` whose leading dims
        broadcast (obs may come with size-1 dims where x_t has N pairs). Default: the paper's
        :class:`~fpo_jax.networks.VelocityMLP` sized by ``config``.
    """

    config: TrainConfig
    action_size: int
    network: Any = None

    def with_settings(self, config: TrainConfig) -> FlowPolicy:
        """This agent reading ``config`` (a sweep member's, with traced values)."""
        return dataclasses.replace(self, config=config)

    @property
    def velocity_net(self) -> Any:
        """The velocity module in use (the injected one, or the paper's MLP)."""
        if self.network is not None:
            return self.network
        c = self.config
        return networks.VelocityMLP(
            action_dim=self.action_size,
            hidden_sizes=c.policy_hidden,
            output_scale=c.velocity_output_scale,
            activation=networks.ACTIVATIONS[c.activation],
            time_input=c.flow_time_input,
            init_scheme=c.network_init,
        )

    @property
    def velocity_fn(self) -> flow.VelocityFn:
        return networks.velocity_fn_from_module(self.velocity_net)

    def init(self, key: Array, obs_size: int) -> Params:
        return self.velocity_net.init(
            key, jnp.zeros((1, obs_size)), jnp.zeros((1, self.action_size)), jnp.ones((1, 1))
        )

    def to_raw_action(self, x: Array) -> Array:
        """The flow's sample (source noise of std 1) -> raw action (std ``flow_noise_scale``)."""
        return x * self.config.flow_noise_scale

    def from_raw_action(self, raw_action: Array) -> Array:
        """Inverse of :meth:`to_raw_action`: the action in the flow's own space."""
        return raw_action / self.config.flow_noise_scale

    def eval_act(self, params: Params, obs: Array, key: Array) -> Array:
        """Evaluation sampler: the config's eval integrator, step count and noise start."""
        c = self.config
        return self.to_raw_action(
            flow.sample(
                self.velocity_fn,
                params,
                obs,
                key,
                action_dim=self.action_size,
                integrator=c.eval_integrator,
                num_steps=c.eval_flow_steps,
                noise=c.eval_noise,
                sigma=c.eval_sigma,
            )
        )
