"""Tests for fpo_jax.networks."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fpo_jax import flow
from fpo_jax.networks import (
    MLP,
    GaussianPolicyMLP,
    ValueMLP,
    VelocityMLP,
    velocity_fn_from_module,
)

OBS_DIM, ACT_DIM = 5, 3

# XLA compiles are the cost of these tests on CPU: structure is checked with jax.eval_shape (no
# compile), inputs come from numpy, and init/apply are jitted whole rather than run op by op.


def _randn(*shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), dtype=jnp.float32)


def _inputs(*dims):
    return [jnp.zeros((1, d)) for d in dims]


def _param_shapes(model, *input_dims):
    """Parameter shapes of model.init without running it: {"params": {...: ShapeDtypeStruct}}."""
    return jax.eval_shape(model.init, jax.random.key(0), *_inputs(*input_dims))


def _init(model, *input_dims):
    return jax.jit(model.init)(jax.random.key(0), *_inputs(*input_dims))


def _apply(model, params, *inputs):
    return jax.jit(model.apply)(params, *inputs)


@pytest.fixture(scope="module")
def velocity_params():
    """Parameters of the default VelocityMLP(ACT_DIM), shared across tests."""
    return _init(VelocityMLP(action_dim=ACT_DIM), OBS_DIM, ACT_DIM, 1)


def test_mlp_shapes_and_layers():
    model = MLP(hidden_sizes=(16, 8), out_dim=4)
    shapes = _param_shapes(model, 7)["params"]
    kernels = [shapes[name]["kernel"].shape for name in ("hidden_0", "hidden_1", "output")]
    assert kernels == [(7, 16), (16, 8), (8, 4)]
    out = jax.eval_shape(model.apply, _param_shapes(model, 7), jnp.ones((2, 3, 7)))
    assert out.shape == (2, 3, 4)


def test_mlp_activation_is_configurable():
    x = jnp.linspace(-2, 2, 14).reshape(2, 7)
    silu = MLP(hidden_sizes=(16,), out_dim=2)
    relu = MLP(hidden_sizes=(16,), out_dim=2, activation=nn.relu)
    params = _init(silu, 7)
    assert not np.allclose(_apply(silu, params, x), _apply(relu, params, x))


def test_velocity_default_sizes_match_paper():
    shapes = _param_shapes(VelocityMLP(action_dim=ACT_DIM), OBS_DIM, ACT_DIM, 1)["params"]["mlp"]
    # Input = obs + x_t + 8-dim time embedding; 4 hidden layers of 32.
    assert shapes["hidden_0"]["kernel"].shape == (OBS_DIM + ACT_DIM + 8, 32)
    assert [shapes[f"hidden_{i}"]["kernel"].shape[1] for i in range(4)] == [32] * 4
    assert "hidden_4" not in shapes
    assert shapes["output"]["kernel"].shape == (32, ACT_DIM)


def test_velocity_sizes_are_configurable():
    model = VelocityMLP(action_dim=2, hidden_sizes=(16, 8), num_frequencies=2)
    shapes = _param_shapes(model, OBS_DIM, 2, 1)["params"]["mlp"]
    assert shapes["hidden_0"]["kernel"].shape == (OBS_DIM + 2 + 4, 16)
    assert shapes["hidden_1"]["kernel"].shape == (16, 8)
    assert shapes["output"]["kernel"].shape == (8, 2)


def test_velocity_output_shape_and_scale(velocity_params):
    obs = _randn(4, 6, OBS_DIM, seed=1)
    x_t = _randn(4, 6, ACT_DIM, seed=2)
    t = jnp.asarray(np.random.default_rng(3).uniform(size=(4, 6, 1)), dtype=jnp.float32)
    scaled = VelocityMLP(action_dim=ACT_DIM, output_scale=0.25)
    unscaled = VelocityMLP(action_dim=ACT_DIM, output_scale=1.0)
    v = _apply(scaled, velocity_params, obs, x_t, t)
    assert v.shape == (4, 6, ACT_DIM)
    v_unscaled = _apply(unscaled, velocity_params, obs, x_t, t)
    np.testing.assert_allclose(v, 0.25 * v_unscaled, rtol=1e-6, atol=1e-7)


def test_velocity_broadcasts_obs_over_pairs(velocity_params):
    model = VelocityMLP(action_dim=ACT_DIM)
    obs = _randn(4, 1, OBS_DIM, seed=1)
    x_t = _randn(4, 8, ACT_DIM, seed=2)
    t = jnp.full((4, 8, 1), 0.4)
    v = _apply(model, velocity_params, obs, x_t, t)
    assert v.shape == (4, 8, ACT_DIM)
    v_explicit = _apply(model, velocity_params, jnp.broadcast_to(obs, (4, 8, OBS_DIM)), x_t, t)
    np.testing.assert_allclose(v, v_explicit, rtol=1e-6)


def test_velocity_fn_from_module_with_pair_axis(velocity_params):
    velocity_fn = velocity_fn_from_module(VelocityMLP(action_dim=ACT_DIM))
    batch, num_pairs = 7, 4
    obs = _randn(batch, num_pairs, OBS_DIM, seed=1)
    x_t = _randn(batch, num_pairs, ACT_DIM, seed=2)
    t = jnp.full((batch, num_pairs, 1), 0.3)
    v = jax.eval_shape(velocity_fn, velocity_params, obs, x_t, t)
    assert v.shape == (batch, num_pairs, ACT_DIM)
    # Through the sampler, with leading dims (B, N).
    sample = jax.jit(functools.partial(flow.sample, velocity_fn, action_dim=ACT_DIM))
    action = sample(velocity_params, obs, jax.random.key(3))
    assert action.shape == (batch, num_pairs, ACT_DIM)
    assert np.all(np.isfinite(action))


def test_value_shape():
    model = ValueMLP()
    shapes = _param_shapes(model, OBS_DIM)["params"]["mlp"]
    assert [shapes[f"hidden_{i}"]["kernel"].shape[1] for i in range(5)] == [256] * 5
    params = _init(model, OBS_DIM)
    assert _apply(model, params, jnp.ones((OBS_DIM,))).shape == ()
    assert _apply(model, params, jnp.ones((3, 4, OBS_DIM))).shape == (3, 4)


def test_gaussian_policy_shapes_and_min_scale():
    min_scale = 1e-3
    model = GaussianPolicyMLP(action_dim=ACT_DIM, min_scale=min_scale)
    params = _init(model, OBS_DIM)
    # Large inputs drive some raw scales very negative, where softplus -> 0.
    obs = 100.0 * _randn(2, 9, OBS_DIM, seed=1)
    loc, scale = _apply(model, params, obs)
    assert loc.shape == (2, 9, ACT_DIM) and scale.shape == (2, 9, ACT_DIM)
    assert float(scale.min()) >= min_scale
    # scale = softplus(raw) + min_scale, with raw the second half of the MLP output.
    raw = _apply(MLP((32,) * 4, 2 * ACT_DIM), {"params": params["params"]["mlp"]}, obs)
    np.testing.assert_allclose(loc, raw[..., :ACT_DIM], rtol=1e-6)
    np.testing.assert_allclose(
        scale, jax.nn.softplus(raw[..., ACT_DIM:]) + min_scale, rtol=1e-6, atol=1e-7
    )
