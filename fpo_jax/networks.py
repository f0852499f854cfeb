"""Flax (linen) networks: velocity field, value function, Gaussian policy.

Paper defaults: velocity MLP 4 x 32 SiLU on concat(obs, x_t, emb(t)) with output * 0.25 and an
8-dim time embedding; value MLP 5 x 256 SiLU; Gaussian policy 4 x 32 SiLU with
scale = softplus(s) + 1e-3. All sizes are configurable; leading batch dims are free.

Options for reproducing the FPO authors' PyTorch GridWorld networks: ``activation``
(``ACTIVATIONS`` names a few), ``time_input="raw"`` (t itself instead of its embedding) and
``init_scheme="torch"`` (PyTorch's default ``nn.Linear`` initialisation instead of Flax's).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, get_args

import flax.linen as nn
import jax
import jax.numpy as jnp

from fpo_jax.config import ActivationName
from fpo_jax.flow import VelocityFn, timestep_embedding

Array = jax.Array

# Hidden-layer activations by name (TrainConfig.activation); FPO++ uses ELU.
ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "silu": nn.silu,
    "elu": nn.elu,
    "relu": nn.relu,
    "tanh": jnp.tanh,
}
assert tuple(ACTIVATIONS) == get_args(ActivationName)


def layer_init(init: str, fan_in: int) -> tuple[Callable, Callable]:
    """(kernel_init, bias_init) of a dense layer with ``fan_in`` inputs.

    "flax": LeCun-normal kernel, zero bias (Flax's default). "torch": PyTorch's default
    ``nn.Linear`` initialisation, kernel and bias both U(-1/sqrt(fan_in), 1/sqrt(fan_in)), so
    weights about 0.6x Flax's in std and biases not zero.
    """
    if init == "flax":
        return nn.initializers.lecun_normal(), nn.initializers.zeros_init()
    if init == "torch":
        bound = 1.0 / float(fan_in) ** 0.5
        uniform = lambda key, shape, dtype=jnp.float32: jax.random.uniform(
            key, shape, dtype, -bound, bound
        )
        return uniform, uniform
    raise ValueError(f"init={init!r} is not one of ('flax', 'torch').")


class SplitInputDense(nn.Module):
    """``nn.Dense`` applied to ``concat(x_1, ..., x_k)`` without forming the concatenation.

    y = concat(x_1, ..., x_k) W + b = sum_i x_i W_i + b,   W = [W_1; ...; W_k] (rows split by d_i)

    Each x_i is projected on its own leading dims and the projections are broadcast only when
    summed, so an input with size-1 leading dims (obs (B, 1, obs_dim) shared by N pairs
    x_t (B, N, A)) costs B, not B * N, products. The parameters are exactly ``nn.Dense``'s
    (``kernel (sum_i d_i, features)``, ``bias (features,)``, same initialisers, same RNG use),
    so the two are interchangeable in a parameter tree and in checkpoints. ``init_scheme``: see
    :func:`layer_init`.

    x_i: (..., d_i) with broadcast-compatible leading dims -> y: (broadcast ..., features).
    """

    features: int
    init_scheme: str = "flax"

    @nn.compact
    def __call__(self, *inputs: Array) -> Array:
        dims = [x.shape[-1] for x in inputs]
        kernel_init, bias_init = layer_init(self.init_scheme, sum(dims))
        kernel = self.param("kernel", kernel_init, (sum(dims), self.features), jnp.float32)
        bias = self.param("bias", bias_init, (self.features,), jnp.float32)
        y = bias
        offset = 0
        for x, d in zip(inputs, dims, strict=True):
            y = y + matmul_2d(x, kernel[offset : offset + d])  # (..., features), broadcast here
            offset += d
        return y


def matmul_2d(x: Array, kernel: Array) -> Array:
    """``x @ kernel`` computed on ``x`` flattened to 2-D.

    x: (..., d), kernel: (d, f) -> (..., f). The same numbers as ``x @ kernel``; on XLA:CPU a
    dot over several leading dims runs 1.2-1.5x slower than the same dot over one flattened row
    dim (experiments/bench_dot_layout.py), so the leading dims are merged around it.
    """
    y = x.reshape(-1, x.shape[-1]) @ kernel
    return y.reshape(*x.shape[:-1], kernel.shape[-1])


class MLP(nn.Module):
    """Fully connected network: Dense -> activation, repeated, then a linear output layer.

    y = W_L act(... act(W_1 x + b_1) ...) + b_L

    x: (..., in_dim) -> y: (..., out_dim). Several inputs ``MLP(...)(x_1, ..., x_k)`` are read as
    ``x = concat(x_1, ..., x_k)`` with broadcast leading dims; the first layer is then computed
    per input (:class:`SplitInputDense`, same parameters as the single-input form), so an input
    shared along an axis is projected once instead of once per element of that axis.
    """

    hidden_sizes: Sequence[int]
    out_dim: int
    activation: Callable[[Array], Array] = nn.silu
    init_scheme: str = "flax"

    def _dense(self, size: int, fan_in: int, name: str) -> nn.Dense:
        kernel_init, bias_init = layer_init(self.init_scheme, fan_in)
        return nn.Dense(size, kernel_init=kernel_init, bias_init=bias_init, name=name)

    @nn.compact
    def __call__(self, *inputs: Array) -> Array:
        # init "flax": Flax's default (LeCun normal kernels, zero biases) for every layer.
        sizes = [*self.hidden_sizes, self.out_dim]
        names = [f"hidden_{i}" for i in range(len(self.hidden_sizes))] + ["output"]
        # Every layer runs on one flattened row dim (XLA:CPU is 1.2-1.5x faster on 2-D dots than
        # on the same dots over several leading dims); the shapes are restored at the end.
        if len(inputs) == 1:
            lead = inputs[0].shape[:-1]
            x = inputs[0].reshape(-1, inputs[0].shape[-1])
            x = self._dense(sizes[0], x.shape[-1], names[0])(x)
        else:
            x = SplitInputDense(sizes[0], init_scheme=self.init_scheme, name=names[0])(*inputs)
            lead = x.shape[:-1]
            x = x.reshape(-1, x.shape[-1])
        for size, name in zip(sizes[1:], names[1:], strict=True):
            x = self._dense(size, x.shape[-1], name)(self.activation(x))
        return x.reshape(*lead, x.shape[-1])


class VelocityMLP(nn.Module):
    """Flow velocity field v_theta(obs, x_t, t).

    v = output_scale * MLP(concat(obs, x_t, emb(t))),
    emb(t) = [cos(t 2^k), sin(t 2^k)]_{k < num_frequencies}; with ``time_input="raw"``,
    emb(t) = t (one input, as the FPO authors' GridWorld network takes it).

    The first layer is linear in the concatenation, so it is computed as
    ``obs W_obs + x_t W_x + emb(t) W_emb + b`` on the inputs as given, broadcast only after the
    projection: the observation part is computed once per observation, not once per (t, eps)
    pair. The parameters are those of the plain concat-then-Dense network (one first-layer kernel
    of ``obs_dim + A + 2F`` rows, ``obs_dim + A + 1`` with raw t), so checkpoints are unaffected.

    obs: (..., obs_dim), x_t: (..., A), t: (..., 1) -> v: (..., A). Leading dims must be
    broadcast-compatible (e.g. obs (B, 1, obs_dim) against x_t (B, N, A)); the output has their
    broadcast shape. ``broadcasts_obs = True`` tells :func:`fpo_jax.loss.cfm_loss` (through
    :func:`velocity_fn_from_module`) that it may pass obs with size-1 dims.
    """

    # Not a dataclass field (no annotation): a declaration read by velocity_fn_from_module.
    broadcasts_obs = True

    action_dim: int
    hidden_sizes: Sequence[int] = (32, 32, 32, 32)
    output_scale: float = 0.25
    num_frequencies: int = 4
    activation: Callable[[Array], Array] = nn.silu
    time_input: str = "embedding"
    init_scheme: str = "flax"

    @nn.compact
    def __call__(self, obs: Array, x_t: Array, t: Array) -> Array:
        if self.time_input == "raw":
            emb = jnp.asarray(t, jnp.float32)  # (..., 1)
        elif self.time_input == "embedding":
            emb = timestep_embedding(t, self.num_frequencies)  # (..., 2F)
        else:
            raise ValueError(f"time_input={self.time_input!r} is not 'embedding' or 'raw'.")
        mlp = MLP(
            self.hidden_sizes,
            self.action_dim,
            activation=self.activation,
            init_scheme=self.init_scheme,
            name="mlp",
        )
        out = mlp(obs, x_t, emb)
        # A small output scale keeps the initial flow close to the identity map on noise.
        return out * self.output_scale


class ValueMLP(nn.Module):
    """State-value function V(obs).

    obs: (..., obs_dim) -> V: (...,).
    """

    hidden_sizes: Sequence[int] = (256,) * 5
    activation: Callable[[Array], Array] = nn.silu
    init_scheme: str = "flax"

    @nn.compact
    def __call__(self, obs: Array) -> Array:
        mlp = MLP(
            self.hidden_sizes,
            1,
            activation=self.activation,
            init_scheme=self.init_scheme,
            name="mlp",
        )
        value = mlp(obs)
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
    init_scheme: str = "flax"

    @nn.compact
    def __call__(self, obs: Array) -> tuple[Array, Array]:
        mlp = MLP(
            self.hidden_sizes, 2 * self.action_dim, activation=self.activation,
            init_scheme=self.init_scheme, name="mlp",
        )  # fmt: skip
        out = mlp(obs)
        loc, raw_scale = jnp.split(out, 2, axis=-1)
        scale = jax.nn.softplus(raw_scale) + self.min_scale
        return loc, scale


def velocity_fn_from_module(module: nn.Module) -> VelocityFn:
    """Adapt a Flax velocity module to the pure signature used by ``fpo_jax.flow``.

    velocity_fn(params, obs, x_t, t) = module.apply(params, obs, x_t, t)

    ``params`` is the variables dict returned by ``module.init`` (e.g. ``{"params": ...}``).
    obs: (..., obs_dim), x_t: (..., A), t: (..., 1) -> v: (..., A).

    The function's ``broadcasts_obs`` attribute copies the module's (False if the module does
    not declare it): only a module that broadcasts obs against x_t itself, like
    :class:`VelocityMLP`, is handed obs with size-1 dims by :func:`fpo_jax.loss.cfm_loss`.
    """

    def velocity_fn(params: Any, obs: Array, x_t: Array, t: Array) -> Array:
        return module.apply(params, obs, x_t, t)

    velocity_fn.broadcasts_obs = bool(getattr(module, "broadcasts_obs", False))
    return velocity_fn
