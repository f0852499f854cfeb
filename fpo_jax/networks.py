"""Flax (linen) networks: velocity field, value function, Gaussian policy.

Paper defaults: velocity MLP 4 x 32 SiLU on concat(obs, x_t, emb(t)) with output * 0.25 and an
8-dim time embedding; value MLP 5 x 256 SiLU; Gaussian policy 4 x 32 SiLU with
scale = softplus(s) + 1e-3. All sizes are configurable; leading batch dims are free.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from fpo_jax.flow import VelocityFn, timestep_embedding

Array = jax.Array


class MLP(nn.Module):
    """Fully connected network: Dense -> activation, repeated, then a linear output layer.

    y = W_L act(... act(W_1 x + b_1) ...) + b_L

    x: (..., in_dim) -> y: (..., out_dim).
    """

    hidden_sizes: Sequence[int]
    out_dim: int
    activation: Callable[[Array], Array] = nn.silu

    @nn.compact
    def __call__(self, x: Array) -> Array:
        # Flax's default init (LeCun normal kernels, zero biases) for every layer.
        for i, size in enumerate(self.hidden_sizes):
            x = self.activation(nn.Dense(size, name=f"hidden_{i}")(x))
        return nn.Dense(self.out_dim, name="output")(x)


def _broadcast_leading(*arrays: Array) -> list[Array]:
    """Broadcast the leading dims of arrays (..., d_i) to a common shape, keeping each last dim."""
    lead = jnp.broadcast_shapes(*(a.shape[:-1] for a in arrays))
    return [jnp.broadcast_to(a, (*lead, a.shape[-1])) for a in arrays]


class VelocityMLP(nn.Module):
    """Flow velocity field v_theta(obs, x_t, t).

    v = output_scale * MLP(concat(obs, x_t, emb(t))),
    emb(t) = [cos(t 2^k), sin(t 2^k)]_{k < num_frequencies}.

    obs: (..., obs_dim), x_t: (..., A), t: (..., 1) -> v: (..., A). Leading dims must be
    broadcast-compatible (e.g. obs (B, 1, obs_dim) against x_t (B, N, A)); they are broadcast here.
    """

    action_dim: int
    hidden_sizes: Sequence[int] = (32, 32, 32, 32)
    output_scale: float = 0.25
    num_frequencies: int = 4
    activation: Callable[[Array], Array] = nn.silu

    @nn.compact
    def __call__(self, obs: Array, x_t: Array, t: Array) -> Array:
        emb = timestep_embedding(t, self.num_frequencies)  # (..., 2F)
        inputs = jnp.concatenate(_broadcast_leading(obs, x_t, emb), axis=-1)
        out = MLP(self.hidden_sizes, self.action_dim, activation=self.activation, name="mlp")(
            inputs
        )
        # A small output scale keeps the initial flow close to the identity map on noise.
        return out * self.output_scale


class ValueMLP(nn.Module):
    """State-value function V(obs).

    obs: (..., obs_dim) -> V: (...,).
    """

    hidden_sizes: Sequence[int] = (256,) * 5
    activation: Callable[[Array], Array] = nn.silu

    @nn.compact
    def __call__(self, obs: Array) -> Array:
        value = MLP(self.hidden_sizes, 1, activation=self.activation, name="mlp")(obs)
        return jnp.squeeze(value, axis=-1)


class GaussianPolicyMLP(nn.Module):
    """Diagonal Gaussian policy head (the PPO baseline).

    [loc, s] = MLP(obs),  scale = softplus(s) + min_scale.

    obs: (..., obs_dim) -> (loc: (..., A), scale: (..., A)), scale >= min_scale.
    """

    action_dim: int
    hidden_sizes: Sequence[int] = (32,) * 4
    min_scale: float = 1e-3
    activation: Callable[[Array], Array] = nn.silu

    @nn.compact
    def __call__(self, obs: Array) -> tuple[Array, Array]:
        out = MLP(self.hidden_sizes, 2 * self.action_dim, activation=self.activation, name="mlp")(
            obs
        )
        loc, raw_scale = jnp.split(out, 2, axis=-1)
        scale = jax.nn.softplus(raw_scale) + self.min_scale
        return loc, scale


def velocity_fn_from_module(module: nn.Module) -> VelocityFn:
    """Adapt a Flax velocity module to the pure signature used by ``fpo_jax.flow``.

    velocity_fn(params, obs, x_t, t) = module.apply(params, obs, x_t, t)

    ``params`` is the variables dict returned by ``module.init`` (e.g. ``{"params": ...}``).
    obs: (..., obs_dim), x_t: (..., A), t: (..., 1) -> v: (..., A).
    """

    def velocity_fn(params: Any, obs: Array, x_t: Array, t: Array) -> Array:
        return module.apply(params, obs, x_t, t)

    return velocity_fn
