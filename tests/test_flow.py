"""Tests for fpo_jax.flow: embeddings, CFM pairs, integrators, sampling."""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fpo_jax import flow
from fpo_jax.networks import VelocityMLP, velocity_fn_from_module


def _randn(*shape, seed=0):
    # Test inputs come from numpy: each new shape of a jax.random draw costs an XLA compile.
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), dtype=jnp.float32)


# ----------------------------------------------------------------------------- embeddings, times


def test_timestep_embedding_matches_hand_computation():
    t = jnp.array([[0.0], [0.3], [1.0]])
    emb = flow.timestep_embedding(t, num_frequencies=4)
    assert emb.shape == (3, 8)
    for row, tv in zip(np.asarray(emb), [0.0, 0.3, 1.0], strict=True):
        expected = [math.cos(tv * 2**k) for k in range(4)] + [math.sin(tv * 2**k) for k in range(4)]
        np.testing.assert_allclose(row, expected, rtol=1e-6, atol=1e-6)


def test_timestep_embedding_leading_dims():
    t = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 3, 5, 1)), jnp.float32)
    emb = flow.timestep_embedding(t, num_frequencies=3)
    chex.assert_shape(emb, (2, 3, 5, 6))
    # Each time is embedded on its own: the same numbers as a flat batch.
    flat = flow.timestep_embedding(t.reshape(30, 1), num_frequencies=3)
    chex.assert_trees_all_close(emb.reshape(30, 6), flat, rtol=1e-6)


def test_grid_times_support_and_shape():
    t = flow.sample_flow_times(jax.random.key(0), (4000,), kind="grid", num_grid_steps=10)
    assert t.shape == (4000, 1)
    values = np.unique(np.round(np.asarray(t) * 10).astype(int))
    np.testing.assert_array_equal(values, np.arange(1, 11))  # every grid point, never t = 0
    np.testing.assert_allclose(np.asarray(t) * 10, np.round(np.asarray(t) * 10), atol=1e-5)


def test_uniform_times_support_and_shape():
    t = flow.sample_flow_times(jax.random.key(1), (3, 1000), kind="uniform")
    assert t.shape == (3, 1000, 1)
    assert float(t.min()) >= 0.0 and float(t.max()) < 1.0
    assert abs(float(t.mean()) - 0.5) < 0.03


def test_bad_time_kind_raises():
    with pytest.raises(ValueError, match="valid kinds"):
        flow.sample_flow_times(jax.random.key(0), (3,), kind="gamma")


def test_draw_cfm_pairs_shapes_and_values():
    draw = jax.jit(flow.draw_cfm_pairs, static_argnums=(1, 2, 3), static_argnames="t_kind")
    t, eps = draw(jax.random.key(0), (7, 3), 8, 2, t_kind="uniform")
    chex.assert_shape([t, eps], [(7, 3, 8, 1), (7, 3, 8, 2)])
    assert 0.0 <= float(t.min()) and float(t.max()) < 1.0
    t, eps = draw(jax.random.key(0), 5, 4, 3)
    chex.assert_shape([t, eps], [(5, 4, 1), (5, 4, 3)])
    # Grid times (the default kind) on {1/10, ..., 1}; every pair draws its own noise.
    np.testing.assert_allclose(t * 10, np.round(np.asarray(t) * 10), atol=1e-5)
    assert float(t.min()) >= 0.1 - 1e-6 and float(t.max()) <= 1.0 + 1e-6
    assert len(np.unique(np.asarray(eps))) == eps.size


def test_expand_obs_follows_the_velocity_functions_declaration():
    obs = _randn(2, 3, 4)

    def v(params, obs, x, t):
        return x

    assert flow.expand_obs(v, obs, 5).shape == (2, 3, 5, 4)
    np.testing.assert_array_equal(flow.expand_obs(v, obs, 5)[:, :, 2], obs)
    v.broadcasts_obs = True
    assert flow.expand_obs(v, obs, 5).shape == (2, 3, 1, 4)


def test_interpolant_endpoints_and_target():
    actions, eps = _randn(6, 2, seed=0), _randn(6, 4, 2, seed=1)
    t = jnp.asarray(np.random.default_rng(2).uniform(size=(6, 4, 1)), dtype=jnp.float32)
    a = actions[:, None, :]  # caller expands the pair axis
    x_t = flow.interpolate(a, eps, t)
    assert x_t.shape == (6, 4, 2)
    np.testing.assert_allclose(flow.interpolate(a, eps, jnp.ones_like(t)), eps, atol=1e-6)
    np.testing.assert_allclose(
        flow.interpolate(a, eps, jnp.zeros_like(t)), jnp.broadcast_to(a, eps.shape), atol=1e-6
    )
    # d x_t / dt = u = eps - a.
    dxdt = jax.jacfwd(lambda s: flow.interpolate(a, eps, s * jnp.ones_like(t)))(0.3)
    np.testing.assert_allclose(dxdt, flow.target_velocity(a, eps), atol=1e-5)


# ----------------------------------------------------------------------------- integrators


def _exp_velocity(params, obs, x, t):
    """v = c * cos(t) * x; the ODE dx/dt = v gives x(0) = x(1) * exp(-c sin 1)."""
    return params * obs * jnp.cos(t) * x


@pytest.mark.parametrize(("integrator", "order"), [("euler", 1), ("midpoint", 2), ("rk4", 4)])
def test_step_convergence_order(integrator, order):
    """The single-step functions, iterated from a random x(1), converge at their order."""
    with jax.enable_x64(True):
        c = jnp.array(1.5, dtype=jnp.float64)
        obs = jnp.ones((3, 1), dtype=jnp.float64)
        x1 = jnp.asarray(np.random.default_rng(0).normal(size=(3, 1)), dtype=jnp.float64)
        exact = x1 * jnp.exp(-c * jnp.sin(1.0))
        steps = np.array([4, 8, 16, 32])
        errors = []
        step = {"euler": flow.euler_step, "midpoint": flow.midpoint_step, "rk4": flow.rk4_step}
        for n in steps:
            x = x1
            for t in flow.step_times(int(n), jnp.float64):
                x = step[integrator](_exp_velocity, c, obs, x, jnp.full((3, 1), t), 1.0 / n)
            errors.append(float(jnp.max(jnp.abs(x - exact))))
        slope = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
        assert abs(slope - order) < 0.3, (integrator, slope, errors)


def _shift_velocity(params, obs, x, t):
    """v = cos(t) * (x + obs): exercises obs and t; linear so its exact solution is known."""
    return jnp.cos(t) * (x + obs)


@pytest.mark.parametrize(("integrator", "order"), [("euler", 1), ("midpoint", 2), ("rk4", 4)])
def test_sample_convergence_order(integrator, order):
    """Through ``sample`` itself with zero noise: x(1) = 0, dx/dt = cos(t) (x + o).

    y = x + o solves dy/dt = cos(t) y, so y(0) = y(1) exp(-sin 1) = o exp(-sin 1).
    """
    with jax.enable_x64(True):
        obs = jnp.array([[0.5, -1.0], [2.0, 0.3]], dtype=jnp.float64)
        exact = obs * jnp.exp(-jnp.sin(1.0)) - obs
        steps = np.array([4, 8, 16, 32])
        errors = []
        for n in steps:
            action = flow.sample(
                _shift_velocity,
                None,
                obs,
                None,
                action_dim=2,
                integrator=integrator,
                num_steps=int(n),
                noise="zero",
            )
            assert action.dtype == jnp.float64
            errors.append(float(jnp.max(jnp.abs(action - exact))))
        slope = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
        assert abs(slope - order) < 0.3, (integrator, slope, errors)


# ----------------------------------------------------------------------------- sample()


def _toy_velocity(params, obs, x, t):
    return params["w"] * jnp.tanh(x) + obs.sum(-1, keepdims=True) * t


TOY_PARAMS = {"w": jnp.array(0.5)}


def test_zero_noise_is_deterministic():
    obs = jnp.ones((4, 3))
    kw = dict(action_dim=2, num_steps=5, noise="zero")
    a1 = flow.sample(_toy_velocity, TOY_PARAMS, obs, jax.random.key(0), **kw)
    a2 = flow.sample(_toy_velocity, TOY_PARAMS, obs, jax.random.key(1), **kw)
    np.testing.assert_array_equal(a1, a2)
    r1 = flow.sample(_toy_velocity, TOY_PARAMS, obs, jax.random.key(0), action_dim=2)
    r2 = flow.sample(_toy_velocity, TOY_PARAMS, obs, jax.random.key(1), action_dim=2)
    assert not np.allclose(r1, r2)


@pytest.mark.parametrize("integrator", flow.INTEGRATORS)
def test_return_path_shape_and_endpoints(integrator):
    obs = jnp.ones((3, 5, 4))
    action, path = flow.sample(
        _toy_velocity,
        TOY_PARAMS,
        obs,
        jax.random.key(0),
        action_dim=2,
        integrator=integrator,
        num_steps=6,
        sigma=0.1,
        return_path=True,
    )
    assert action.shape == (3, 5, 2)
    assert path.shape == (3, 5, 7, 2)
    np.testing.assert_array_equal(path[..., -1, :], action)
    # Same key -> same initial noise as without the path.
    action2 = flow.sample(
        _toy_velocity,
        TOY_PARAMS,
        obs,
        jax.random.key(0),
        action_dim=2,
        integrator=integrator,
        num_steps=6,
        sigma=0.1,
    )
    np.testing.assert_allclose(action, action2, atol=1e-6)


def test_stochastic_step_spread():
    """With v = 0 and zero initial noise, each step adds N(0, sigma^2): increments have std sigma
    (not scaled by dt) and are independent across steps."""
    sigma, n = 0.2, 5
    obs = jnp.zeros((20000, 1))
    action, path = flow.sample(
        lambda p, o, x, t: jnp.zeros_like(x),
        None,
        obs,
        jax.random.key(4),
        action_dim=2,
        integrator="stochastic",
        num_steps=n,
        noise="zero",
        sigma=sigma,
        return_path=True,
    )
    increments = np.asarray(jnp.diff(path, axis=-2))  # (20000, n, 2)
    np.testing.assert_allclose(increments.std(axis=0), sigma, rtol=0.03)
    np.testing.assert_allclose(increments.mean(axis=0), 0.0, atol=0.01)
    np.testing.assert_allclose(np.asarray(action).std(axis=0), sigma * math.sqrt(n), rtol=0.03)
    corr = np.corrcoef(increments[:, 0, 0], increments[:, 1, 0])[0, 1]
    assert abs(corr) < 0.03


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(integrator="heun"), "valid integrators"),
        (dict(noise="gaussian"), "valid noise"),
        (dict(num_steps=0), "num_steps"),
    ],
)
def test_sample_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        flow.sample(
            _toy_velocity, TOY_PARAMS, jnp.ones((2, 3)), jax.random.key(0), action_dim=2, **kwargs
        )


def test_sample_needs_key_for_random_noise():
    with pytest.raises(ValueError, match="PRNG key"):
        flow.sample(_toy_velocity, TOY_PARAMS, jnp.ones((2, 3)), None, action_dim=2)


class SamplerTest(chex.TestCase):
    """The samplers traced under ``jax.jit`` and run eagerly (one run per chex variant)."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_euler_reaches_target_of_dirac_flow(self):
        """For a point target a*, the marginal velocity is u = (x_t - a*) / t; the last Euler
        step (t = dt) lands exactly on a*, for any step count: a check of the time convention."""
        target = jnp.array([0.7, -1.2])

        def v(params, obs, x, t):
            return (x - target) / t

        for n in (1, 3, 10):
            sample = self.variant(functools.partial(flow.sample, v, action_dim=2, num_steps=n))
            out = sample(None, jnp.zeros((5, 1)), jax.random.key(n))
            chex.assert_trees_all_close(out, jnp.broadcast_to(target, (5, 2)), atol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_path_steps_follow_euler(self):
        obs = jnp.ones((4, 3))
        sample = self.variant(functools.partial(
            flow.sample, _toy_velocity, action_dim=2, num_steps=4, return_path=True))  # fmt: skip
        _, path = sample(TOY_PARAMS, obs, jax.random.key(2))
        chex.assert_shape(path, (4, 5, 2))
        times = flow.step_times(4)
        expected = [
            flow.euler_step(_toy_velocity, TOY_PARAMS, obs, path[:, k], jnp.full((4, 1), times[k]),
                            0.25)
            for k in range(4)
        ]  # fmt: skip
        chex.assert_trees_all_close(list(jnp.moveaxis(path[:, 1:], 1, 0)), expected, atol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_stochastic_sigma_zero_equals_euler(self):
        obs = jnp.ones((4, 3))
        kw = dict(action_dim=2, num_steps=7, return_path=True)
        euler = self.variant(functools.partial(flow.sample, _toy_velocity, **kw))
        stochastic = self.variant(functools.partial(
            flow.sample, _toy_velocity, integrator="stochastic", sigma=0.0, **kw))  # fmt: skip
        chex.assert_trees_all_close(
            euler(TOY_PARAMS, obs, jax.random.key(3)),
            stochastic(TOY_PARAMS, obs, jax.random.key(3)),
            atol=1e-6,
        )

    def test_a_velocity_of_another_shape_is_refused_when_traced(self):
        def per_pair(params, obs, x, t):  # (B, 1, A): would broadcast x to (B, B, A)
            return x[:, None, :]

        with self.assertRaisesRegex(AssertionError, "velocity_fn's output"):
            flow.sample(per_pair, None, jnp.ones((4, 3)), jax.random.key(0), action_dim=2)


# ----------------------------------------------------------------------------- jit / vmap


@pytest.mark.parametrize("integrator", flow.INTEGRATORS)
def test_jit_vmap_and_leading_dims(integrator):
    obs = _randn(3, 5, 4)
    fn = functools.partial(
        flow.sample,
        _toy_velocity,
        action_dim=2,
        integrator=integrator,
        num_steps=4,
        sigma=0.05,
    )
    jitted = jax.jit(fn)
    keys = jax.random.split(jax.random.key(2), 6)
    single = jitted(TOY_PARAMS, obs, keys[2])
    assert single.shape == (3, 5, 2)
    batched = jax.jit(jax.vmap(fn, in_axes=(None, None, 0)))(TOY_PARAMS, obs, keys)
    assert batched.shape == (6, 3, 5, 2)
    np.testing.assert_allclose(batched[2], single, atol=1e-5)


def test_vmap_over_obs_matches_leading_dims():
    """With zero noise, vmapping over an obs axis equals passing that axis as a leading dim."""
    obs = _randn(3, 5, 4)
    fn = functools.partial(flow.sample, _toy_velocity, action_dim=2, num_steps=4, noise="zero")
    rows = jax.jit(jax.vmap(fn, in_axes=(None, 0, None)))(TOY_PARAMS, obs, None)
    np.testing.assert_allclose(rows, jax.jit(fn)(TOY_PARAMS, obs, None), atol=1e-5)


def test_cfm_helpers_under_jit_and_vmap():
    @jax.jit
    def pairs(key):
        return flow.draw_cfm_pairs(key, (3, 5), 8, 2)

    keys = jax.random.split(jax.random.key(0), 4)
    t, eps = jax.vmap(pairs)(keys)
    chex.assert_shape([t, eps], [(4, 3, 5, 8, 1), (4, 3, 5, 8, 2)])
    # vmap over keys draws what each key draws alone.
    chex.assert_trees_all_close((t[2], eps[2]), pairs(keys[2]), rtol=1e-6)
    # From a zero action the interpolant is t * eps.
    x_t = jax.jit(flow.interpolate)(jnp.zeros((4, 3, 5, 1, 2)), eps, t)
    chex.assert_trees_all_close(x_t, t * eps, rtol=1e-6)


# ----------------------------------------------------------------------------- learning


def test_flow_learns_bimodal_distribution():
    """Fit a small flow with the CFM loss to 0.5 N(-1, 0.1^2) + 0.5 N(1, 0.1^2) and sample it."""
    model = VelocityMLP(action_dim=1, hidden_sizes=(64, 64), output_scale=1.0)
    velocity_fn = velocity_fn_from_module(model)
    obs_dim, batch = 1, 512
    params = jax.jit(model.init)(
        jax.random.key(0), jnp.zeros((1, obs_dim)), jnp.zeros((1, 1)), jnp.zeros((1, 1))
    )
    optimizer = optax.adam(3e-3)
    opt_state = optimizer.init(params)

    def loss_fn(params, key):
        k_mode, k_jitter, k_eps, k_t = jax.random.split(key, 4)
        sign = jnp.where(jax.random.bernoulli(k_mode, 0.5, (batch, 1)), 1.0, -1.0)
        actions = sign + 0.1 * jax.random.normal(k_jitter, (batch, 1))
        eps = jax.random.normal(k_eps, (batch, 1))
        t = flow.sample_flow_times(k_t, (batch,), kind="uniform")
        x_t = flow.interpolate(actions, eps, t)
        v = velocity_fn(params, jnp.zeros((batch, obs_dim)), x_t, t)
        return jnp.mean(jnp.square(v - flow.target_velocity(actions, eps)))

    @jax.jit
    def train(params, opt_state, key):
        def step(carry, key):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(loss_fn)(params, key)
            updates, opt_state = optimizer.update(grads, opt_state)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, opt_state), losses = jax.lax.scan(
            step, (params, opt_state), jax.random.split(key, 600)
        )
        return params, losses

    params, losses = train(params, opt_state, jax.random.key(1))
    assert float(losses[-50:].mean()) < float(losses[:50].mean())

    sample = jax.jit(functools.partial(flow.sample, velocity_fn, action_dim=1, num_steps=20))
    samples = sample(params, jnp.zeros((2000, obs_dim)), jax.random.key(2))
    samples = np.asarray(samples[:, 0])
    frac_neg, frac_pos = np.mean(samples < 0), np.mean(samples > 0)
    near_zero = np.mean(np.abs(samples) < 0.3)
    near_modes = np.mean(np.abs(np.abs(samples) - 1.0) < 0.3)
    assert frac_neg > 0.25 and frac_pos > 0.25, (frac_neg, frac_pos)
    assert near_zero < 0.1, near_zero
    assert near_modes > 0.7, near_modes


# ---------------------------------------------------------------------------------------------
# FPO++: Beta flow times, action perturbation
# ---------------------------------------------------------------------------------------------


def _beta_time_cdf(x, beta, lo=0.005, hi=0.995):
    """P(t <= x) for t = (1 - u)^(1/beta), u ~ U(lo, hi): FPO++'s tau ~ Beta(1, beta) inverse CDF
    draw, with our t = 1 - tau."""
    x = np.asarray(x, np.float64)
    u_min = np.clip(1.0 - x**beta, lo, hi)  # t <= x  <=>  u >= 1 - x^beta
    return (hi - u_min) / (hi - lo)


@pytest.mark.parametrize("beta", [1.0, 2.5, 0.5])
def test_beta_times_follow_fpo_plus_plus_distribution_in_our_direction(beta):
    from scipy import stats

    t = np.asarray(flow.sample_flow_times(jax.random.key(3), (20000,), kind="beta", beta=beta))
    assert t.shape == (20000, 1)
    lo, hi = (1 - 0.995) ** (1 / beta), (1 - 0.005) ** (1 / beta)
    assert t.min() >= lo - 1e-6 and t.max() <= hi + 1e-6
    assert stats.kstest(t[:, 0], lambda x: _beta_time_cdf(x, beta)).pvalue > 1e-3
    # The reversed orientation (t drawn like their tau) is rejected unless beta = 1.
    reversed_p = stats.kstest(1.0 - t[:, 0], lambda x: _beta_time_cdf(x, beta)).pvalue
    assert (reversed_p > 1e-3) == (beta == 1.0)
    # Analytic mean of the untruncated Beta(beta, 1): beta / (beta + 1) (truncation is 0.5 %).
    assert abs(t.mean() - beta / (beta + 1)) < 0.01


def test_beta_times_take_a_traced_beta():
    draw = jax.jit(
        lambda b: flow.sample_flow_times(jax.random.key(0), (4000,), kind="beta", beta=b)
    )
    assert float(draw(3.0).mean()) > float(draw(1.0).mean()) + 0.2  # 0.75 vs 0.5
    with pytest.raises(ValueError, match="beta"):
        flow.sample_flow_times(jax.random.key(0), (3,), kind="beta", beta=0.0)


def test_perturb_actions_adds_noise_of_the_given_std():
    actions = _randn(50000, 2)
    out = flow.perturb_actions(jax.random.key(0), actions, 0.02)
    noise = np.asarray(out - actions)
    assert out.shape == actions.shape
    np.testing.assert_allclose(noise.std(axis=0), 0.02, rtol=0.03)
    np.testing.assert_allclose(noise.mean(axis=0), 0.0, atol=1e-3)
