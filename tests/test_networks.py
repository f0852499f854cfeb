"""Tests for fpo_jax.networks."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fpo_jax import flow, loss
from fpo_jax.networks import (
    MLP,
    GaussianPolicyMLP,
    SplitInputDense,
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


# ----------------------------------------------------------------------------- factorized layer


def _concat_reference(params, obs, x_t, t, hidden_sizes=(32,) * 4, output_scale=0.25):
    """The plain network: broadcast, concat(obs, x_t, emb(t)), then the Dense stack."""
    emb = flow.timestep_embedding(t)
    lead = jnp.broadcast_shapes(obs.shape[:-1], x_t.shape[:-1], emb.shape[:-1])
    inputs = jnp.concatenate(
        [jnp.broadcast_to(a, (*lead, a.shape[-1])) for a in (obs, x_t, emb)], axis=-1
    )
    x = inputs
    mlp = params["params"]["mlp"]
    names = [f"hidden_{i}" for i in range(len(hidden_sizes))]
    for name in names:
        x = nn.silu(x @ mlp[name]["kernel"] + mlp[name]["bias"])
    return output_scale * (x @ mlp["output"]["kernel"] + mlp["output"]["bias"])


def test_velocity_param_tree_is_that_of_the_concat_network():
    """Same names and shapes as MLP(hidden, A) on the concatenated input: checkpoints still load."""
    model = VelocityMLP(action_dim=ACT_DIM)
    shapes = _param_shapes(model, OBS_DIM, ACT_DIM, 1)
    concat_mlp = _param_shapes(MLP((32,) * 4, ACT_DIM), OBS_DIM + ACT_DIM + 8)
    as_shapes = lambda tree: jax.tree.map(lambda x: (x.shape, x.dtype), tree)
    assert as_shapes(shapes) == as_shapes({"params": {"mlp": concat_mlp["params"]}})


@pytest.mark.parametrize("hidden_sizes", [(32,) * 4, ()])
def test_factorized_first_layer_equals_concat_then_dense(hidden_sizes):
    """obs (B, 1, d) projected once and broadcast after the first layer == the plain network."""
    model = VelocityMLP(action_dim=ACT_DIM, hidden_sizes=hidden_sizes)
    params = _init(model, OBS_DIM, ACT_DIM, 1)
    obs = _randn(6, 1, OBS_DIM, seed=1)
    x_t = _randn(6, 8, ACT_DIM, seed=2)
    t = jnp.asarray(np.random.default_rng(3).uniform(size=(6, 8, 1)), dtype=jnp.float32)
    v = _apply(model, params, obs, x_t, t)
    assert v.shape == (6, 8, ACT_DIM)
    ref = _concat_reference(params, obs, x_t, t, hidden_sizes)
    np.testing.assert_allclose(v, ref, rtol=1e-5, atol=1e-5)


def test_split_input_dense_is_dense_on_the_concatenation():
    a, b = _randn(4, 1, 3, seed=1), _randn(4, 5, 2, seed=2)
    split, dense = SplitInputDense(7), nn.Dense(7)
    p_split = jax.jit(split.init)(jax.random.key(0), a, b)
    concat = jnp.concatenate([jnp.broadcast_to(a, (4, 5, 3)), b], axis=-1)
    p_dense = jax.jit(dense.init)(jax.random.key(0), concat)
    # Same parameter names, shapes and initial values as nn.Dense.
    jax.tree.map(np.testing.assert_array_equal, p_split, p_dense)
    np.testing.assert_allclose(
        _apply(split, p_split, a, b), _apply(dense, p_dense, concat), rtol=1e-5, atol=1e-6
    )


def test_cfm_loss_passes_unbroadcast_obs_and_its_values_are_unchanged(velocity_params):
    """cfm_loss hands VelocityMLP obs (B, 1, d) and gives the plain network's losses; a function
    that does not declare broadcasts_obs still gets obs (B, N, d)."""
    model = VelocityMLP(action_dim=ACT_DIM)
    velocity_fn = velocity_fn_from_module(model)
    assert velocity_fn.broadcasts_obs
    seen = []

    def plain(params, obs, x_t, t):  # e.g. a user network that concatenates its inputs
        seen.append(obs.shape)
        return _concat_reference(params, obs, x_t, t)

    batch, num_pairs = 5, 8
    obs, actions = _randn(batch, OBS_DIM, seed=1), _randn(batch, ACT_DIM, seed=2)
    t, eps = flow.draw_cfm_pairs(jax.random.key(0), batch, num_pairs, ACT_DIM)
    args = (obs, actions, eps, t)
    factorized = jax.jit(lambda p: loss.cfm_loss(velocity_fn, p, *args))(velocity_params)
    reference = loss.cfm_loss(plain, velocity_params, *args)
    assert seen == [(batch, num_pairs, OBS_DIM)]
    np.testing.assert_allclose(factorized, reference, rtol=1e-5, atol=1e-6)

    seen.clear()
    plain.broadcasts_obs = True
    loss.cfm_loss(plain, velocity_params, *args)
    assert seen == [(batch, 1, OBS_DIM)]


def test_modules_without_the_declaration_get_broadcast_obs():
    class Concat(nn.Module):  # concatenates, so it needs obs broadcast to x_t's leading dims
        @nn.compact
        def __call__(self, obs, x_t, t):
            return nn.Dense(x_t.shape[-1])(jnp.concatenate([obs, x_t, t], axis=-1))

    velocity_fn = velocity_fn_from_module(Concat())
    assert not velocity_fn.broadcasts_obs
    obs, actions = _randn(4, OBS_DIM, seed=1), _randn(4, ACT_DIM, seed=2)
    t, eps = flow.draw_cfm_pairs(jax.random.key(0), 4, 3, ACT_DIM)
    params = jax.jit(Concat().init)(jax.random.key(1), obs[:1], actions[:1], t[:1, 0])
    assert loss.cfm_loss(velocity_fn, params, obs, actions, eps, t).shape == (4, 3)


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


def test_torch_init_draws_kernels_and_biases_uniform_in_one_over_sqrt_fan_in():
    model = MLP(hidden_sizes=(64,), out_dim=2, init_scheme="torch")
    p = _init(model, 5)["params"]
    for name, fan_in in (("hidden_0", 5), ("output", 64)):
        for leaf in (p[name]["kernel"], p[name]["bias"]):
            bound = 1 / np.sqrt(fan_in)
            assert float(jnp.abs(leaf).max()) <= bound and float(jnp.abs(leaf).max()) > 0.5 * bound
    flax_bias = _init(MLP(hidden_sizes=(64,), out_dim=2), 5)["params"]["hidden_0"]["bias"]
    assert float(jnp.abs(flax_bias).max()) == 0.0
    with pytest.raises(ValueError, match="init="):
        _param_shapes(MLP(hidden_sizes=(4,), out_dim=1, init_scheme="xavier"), 3)


def test_velocity_raw_time_input_takes_t_itself():
    model = VelocityMLP(
        action_dim=ACT_DIM, time_input="raw", init_scheme="torch", activation=nn.relu
    )
    shapes = _param_shapes(model, OBS_DIM, ACT_DIM, 1)["params"]["mlp"]
    assert shapes["hidden_0"]["kernel"].shape == (OBS_DIM + ACT_DIM + 1, 32)
    params = _init(model, OBS_DIM, ACT_DIM, 1)
    obs, x = _randn(4, OBS_DIM), _randn(4, ACT_DIM, seed=1)
    t = jnp.full((4, 1), 0.3)
    # Same as the plain MLP on concat(obs, x_t, t), times the output scale.
    mlp = MLP((32,) * 4, ACT_DIM, activation=nn.relu, init_scheme="torch")
    expected = 0.25 * _apply(
        mlp, {"params": params["params"]["mlp"]}, jnp.concatenate([obs, x, t], -1)
    )
    np.testing.assert_allclose(_apply(model, params, obs, x, t), expected, rtol=1e-5, atol=1e-6)


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
