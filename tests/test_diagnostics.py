"""Tests for fpo_jax.diagnostics: exact flow log densities and the ratio-fidelity statistics."""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fpo_jax import diagnostics, flow
from fpo_jax.agents import FPOAgent
from fpo_jax.networks import VelocityMLP, velocity_fn_from_module
from fpo_jax.presets import preset


def _randn(*shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), dtype=jnp.float32)


# ----------------------------------------------------------------------------- Gaussian actions
#
# If a | obs ~ N(mu(obs), diag(s^2)) and eps ~ N(0, I) independent, then per dim
# x_t = t eps + (1 - t) a ~ N((1 - t) mu, sigma_t^2), sigma_t^2 = t^2 + (1 - t)^2 s^2, with
# Cov(eps, x_t) = t and Cov(a, x_t) = (1 - t) s^2. Gaussian conditioning gives the marginal
# CFM velocity E[eps - a | x_t = x]:
#   E[eps | x] = t (x - (1 - t) mu) / sigma_t^2
#   E[a | x]   = mu + (1 - t) s^2 (x - (1 - t) mu) / sigma_t^2
#   v(x, t)    = -mu + (t - (1 - t) s^2) / sigma_t^2 * (x - (1 - t) mu),
# affine in x; its flow carries N(0, I) at t = 1 exactly to N(mu, s^2) at t = 0.


def gaussian_velocity(mu, s, x, t):
    """Marginal velocity of actions N(mu, s^2) (per dim) in our convention; all broadcast."""
    s2 = jnp.square(s)
    return -mu + (t - (1 - t) * s2) / (t**2 + (1 - t) ** 2 * s2) * (x - (1 - t) * mu)


def gaussian_log_prob(mu, s, a):
    return jnp.sum(-0.5 * jnp.square((a - mu) / s) - jnp.log(s) - 0.5 * math.log(2 * math.pi), -1)


def affine_params(obs_dim, act_dim, s, obs_weight):
    """mu(obs) = obs @ w + b (w = 0: independent of obs), per-dim std s."""
    return {
        "w": obs_weight * _randn(obs_dim, act_dim, seed=1),
        "b": jnp.linspace(-0.4, 0.7, act_dim),
        "log_s": jnp.log(jnp.asarray(s, jnp.float32)),
    }


def affine_velocity(params, obs, x, t):
    mu = obs @ params["w"] + params["b"]
    return gaussian_velocity(mu, jnp.exp(params["log_s"]), x, t)


@pytest.mark.parametrize("use_jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize(
    "act_dim, s, obs_weight",
    [(1, [0.4], 0.0), (2, [0.3, 1.2], 0.5)],
    ids=["1d-fixed-mean", "2d-obs-dependent-mean"],
)
def test_flow_log_prob_matches_gaussian_closed_form(use_jit, act_dim, s, obs_weight):
    params = affine_params(3, act_dim, s, obs_weight)
    obs = _randn(4, 5, 3, seed=2)  # leading dims (4, 5)
    mu = obs @ params["w"] + params["b"]
    # Actions up to ~2.5 std from the mean, where the density varies over many nats.
    action = mu + jnp.asarray(s) * 1.2 * _randn(4, 5, act_dim, seed=3)
    fn = lambda p, o, a: diagnostics.flow_log_prob(affine_velocity, p, o, a)
    log_p = (jax.jit(fn) if use_jit else fn)(params, obs, action)
    assert log_p.shape == (4, 5)
    expected = gaussian_log_prob(mu, jnp.asarray(s), action)
    np.testing.assert_allclose(np.asarray(log_p), np.asarray(expected), atol=1e-2)


def test_flow_log_prob_source_std_is_the_action_scale():
    # The policy acts a = c x with x from the flow: a ~ N(c mu, (c s)^2).
    params = affine_params(2, 1, [0.5], 0.0)
    obs = _randn(6, 2, seed=4)
    c = 0.3
    action = c * (params["b"] + 0.5 * _randn(6, 1, seed=5))
    log_p = diagnostics.flow_log_prob(affine_velocity, params, obs, action, source_std=c)
    expected = gaussian_log_prob(c * params["b"], c * 0.5, action)
    np.testing.assert_allclose(np.asarray(log_p), np.asarray(expected), atol=1e-2)


def test_flow_log_prob_rejects_mismatched_leading_dims():
    params = affine_params(3, 1, [0.5], 0.0)
    with pytest.raises(AssertionError):
        diagnostics.flow_log_prob(affine_velocity, params, jnp.zeros((4, 3)), jnp.zeros((5, 1)))


# ----------------------------------------------------------------------------- histogram


def test_flow_log_prob_matches_histogram_of_samples():
    # A random, untrained network with a large output scale: a markedly non-Gaussian density.
    module = VelocityMLP(action_dim=1, hidden_sizes=(16, 16), output_scale=5.0)
    velocity_fn = velocity_fn_from_module(module)
    params = module.init(jax.random.key(3), jnp.zeros((1, 1)), jnp.zeros((1, 1)), jnp.ones((1, 1)))
    obs = jnp.full((1, 1), 0.5)
    n = 100_000
    samples = flow.sample(
        velocity_fn,
        params,
        jnp.broadcast_to(obs, (n, 1)),
        jax.random.key(4),
        action_dim=1,
        integrator="rk4",
        num_steps=32,
    )
    samples = np.asarray(samples[:, 0])
    lo, hi = np.quantile(samples, [0.005, 0.995])
    width = (hi - lo) / 30
    edges = lo + width * np.arange(31)
    counts, _ = np.histogram(samples, bins=edges)
    hist = counts / (n * width)
    centres = 0.5 * (edges[1:] + edges[:-1])
    density = np.exp(
        np.asarray(
            diagnostics.flow_log_prob(
                velocity_fn, params, jnp.broadcast_to(obs, (30, 1)), jnp.asarray(centres)[:, None]
            )
        )
    )
    # A bin's count is binomial: the normalised histogram has std sqrt(p / (n w)), 2-6 % of a
    # bin's density here. Over 30 bins the largest deviation of pure noise is ~2.5 of those;
    # 4.5 would be exceeded by chance with probability ~2e-4. The 1 % term covers evaluating
    # the density at the centre instead of averaging it over the bin (w^2 p'' / 24 is smaller).
    tol = 4.5 * np.sqrt(density / (n * width)) + 0.01 * density
    assert np.all(np.abs(hist - density) < tol), np.c_[centres, hist, density, tol]
    # The density is far from the moment-matched Gaussian, so the check above is not one that
    # a Gaussian approximation would also pass.
    m, sd = samples.mean(), samples.std()
    gauss = np.exp(-0.5 * ((centres - m) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))
    assert np.any(np.abs(hist - gauss) > 3 * tol)


# ----------------------------------------------------------------------------- ratio fidelity


def test_ratio_fidelity_known_answers():
    # Four actions, two pairs each. Exact log-ratios and advantages chosen so every statistic
    # has a hand-computed value (clip e = 0.1: r > 1.1 iff log r > 0.0953, r < 0.9 iff
    # log r < -0.1054).
    pair = jnp.array([[0.3, 0.1], [-0.2, -0.4], [0.05, 0.05], [0.1, -0.3]])  # means .2 -.3 .05 -.1
    exact = jnp.array([0.4, -0.1, -0.2, -0.2])
    adv = jnp.array([1.0, -1.0, 1.0, -1.0])
    out = diagnostics.ratio_fidelity(pair, exact, adv, clip_epsilon=0.1)
    mean_form = np.array([0.2, -0.3, 0.05, -0.1])
    ex = np.asarray(exact)
    assert float(out["mean/corr"]) == pytest.approx(np.corrcoef(mean_form, ex)[0, 1], abs=1e-6)
    assert float(out["mean/sign_agreement"]) == pytest.approx(0.75)  # the third disagrees
    # Clipped under the mean form: A>0 & 0.2 (yes); A<0 & -0.3 (yes); A>0 & 0.05 (no);
    # A<0 & -0.1 (no, above -0.1054). Exact: yes; -0.1 no; A>0 & -0.2 no; A<0 & -0.2 yes.
    assert float(out["mean/clip_agreement"]) == pytest.approx(0.5)
    assert float(out["mean/clip_fraction"]) == pytest.approx(0.5)
    assert float(out["exact/clip_fraction"]) == pytest.approx(0.5)
    assert float(out["mean/bias"]) == pytest.approx(np.mean(mean_form - ex), abs=1e-6)
    # Per pair: signs (+,+ vs +), (-,- vs -), (+,+ vs -), (+,- vs -): 5 of 8 agree.
    assert float(out["per_sample/sign_agreement"]) == pytest.approx(5 / 8)
    # Clipped per pair (0.1 > 0.0953 counts): [y, y], [y, y], [n, n], [n, y] vs exact y, n, n,
    # y per action: agree 2 + 0 + 2 + 1 -> 5 of 8.
    assert float(out["per_sample/clip_agreement"]) == pytest.approx(5 / 8)
    assert float(out["per_sample/bias"]) == pytest.approx(float(out["mean/bias"]), abs=1e-6)
    rmse = np.sqrt(np.mean((np.asarray(pair) - ex[:, None]) ** 2))
    assert float(out["per_sample/rmse"]) == pytest.approx(rmse, abs=1e-6)


def test_ratio_fidelity_perfect_surrogate():
    exact = _randn(3, 50, seed=6) * 0.2
    pair = jnp.broadcast_to(exact[..., None], (3, 50, 4))
    adv = _randn(3, 50, seed=7)
    out = diagnostics.ratio_fidelity(pair, exact, adv, clip_epsilon=0.05)
    for form in ("mean", "per_sample"):
        assert float(out[f"{form}/corr"]) == pytest.approx(1.0, abs=1e-5)
        assert float(out[f"{form}/sign_agreement"]) == 1.0
        assert float(out[f"{form}/clip_agreement"]) == 1.0
        assert abs(float(out[f"{form}/bias"])) < 1e-6


def test_ratio_fidelity_checks_shapes():
    with pytest.raises(AssertionError):
        diagnostics.ratio_fidelity(
            jnp.zeros((5, 4)), jnp.zeros((4,)), jnp.zeros((4,)), clip_epsilon=0.1
        )


# ----------------------------------------------------------------------------- FPO agent


class GaussianField(nn.Module):
    """The marginal velocity of actions N(obs @ w + b, s^2) (a real, trainable Flax network)."""

    action_dim: int

    @nn.compact
    def __call__(self, obs, x_t, t):
        mu = nn.Dense(self.action_dim)(obs)
        log_s = self.param("log_s", nn.initializers.zeros_init(), (self.action_dim,))
        return gaussian_velocity(mu, jnp.exp(log_s), x_t, t)


@pytest.mark.parametrize("pair_storage", ["stored", "key"])
def test_fpo_log_ratios_exact_part_and_scale(pair_storage):
    c = 0.5
    config = dataclasses.replace(
        preset("bandit"), flow_noise_scale=c, num_pairs=4, pair_storage=pair_storage
    )
    agent = FPOAgent(config, 2, network=GaussianField(2))
    obs = _randn(6, 3, seed=8)
    old = agent.init(jax.random.key(0), 3)
    new = jax.tree.map(lambda x: x + 0.2 * _randn(*x.shape, seed=9), old)
    raw_action, extras = agent.act(old, obs, jax.random.PRNGKey(1))  # raw keys, as the trainer

    ratios = lambda o, n: diagnostics.fpo_log_ratios(agent, o, n, obs, raw_action, extras,
                                                     density="ode")  # fmt: skip
    # One program for both comparisons: old -> new, and old -> old (unchanged parameters).
    (pair_lr, exact_lr), (same, _) = jax.jit(lambda o, n: (ratios(o, n), ratios(o, o)))(old, new)
    assert pair_lr.shape == (6, 4) and exact_lr.shape == (6,)

    def closed_form(p):  # raw = c x, x ~ N(mu, s^2)
        q = p["params"]
        mu = obs @ q["Dense_0"]["kernel"] + q["Dense_0"]["bias"]
        return gaussian_log_prob(c * mu, c * jnp.exp(q["log_s"]), raw_action)

    np.testing.assert_allclose(exact_lr, closed_form(new) - closed_form(old), atol=1e-2)
    # Unchanged parameters: the surrogate recomputes the stored losses on the flow-space action
    # (raw / c), so it is zero; it would not be if the scale were dropped.
    np.testing.assert_allclose(same, 0.0, atol=1e-5)


# ------------------------------------------------------------- the discrete sampler's density
#
# With an affine velocity field v(x, t) = alpha(t) x + beta(t) (per dim) every sampler step is
# affine, so the sampler's output is exactly Gaussian whatever the number of steps: for Euler,
# x -> (1 - dt alpha(t_k)) x - dt beta(t_k); for midpoint, the composition of two such maps.
# The closed form composes them: x_0 = m x_1 + c, so a = s (m x_1 + c) ~ N(s c, (s m)^2).


def affine_field(alpha, beta):
    """v(x, t) = alpha(t) * x + beta(t), the same for every row and dim."""

    def velocity_fn(params, obs, x, t):
        return alpha(t) * x + beta(t)

    return velocity_fn


def affine_sampler_gaussian(integrator, num_steps, alpha, beta):
    """(m, c) of the sampler's map x_1 -> x_0 = m x_1 + c for the affine field, per dim."""
    m, c, dt = 1.0, 0.0, 1.0 / num_steps
    for k in range(num_steps):
        t = 1.0 - k / num_steps
        if integrator == "euler":
            a1, b1 = 1.0 - dt * alpha(t), -dt * beta(t)
        else:  # midpoint: x_mid = x - dt/2 v(x, t); x' = x - dt v(x_mid, t - dt/2)
            am, bm = 1.0 - 0.5 * dt * alpha(t), -0.5 * dt * beta(t)
            a1 = 1.0 - dt * alpha(t - 0.5 * dt) * am
            b1 = -dt * (alpha(t - 0.5 * dt) * bm + beta(t - 0.5 * dt))
        m, c = a1 * m, a1 * c + b1
    return m, c


@pytest.mark.parametrize("integrator", ["euler", "midpoint"])
@pytest.mark.parametrize("num_steps", [1, 3, 10])
@pytest.mark.parametrize("target_std", [1.0, 0.1, 1e-3])
def test_sampler_log_prob_is_exact_for_affine_fields(integrator, num_steps, target_std):
    # A constant contraction sized so that the output's std is target_std, plus a drift.
    dt = 1.0 / num_steps
    if integrator == "euler":
        rate = (1.0 - target_std ** (1.0 / num_steps)) / dt  # (1 - dt rate)^K = target_std
    else:  # (1 - dt r + (dt r)^2 / 2)^K = target_std: solve the quadratic per step
        q = target_std ** (1.0 / num_steps)
        rate = (1.0 - math.sqrt(max(2.0 * q - 1.0, 0.0))) / dt if q >= 0.5 else 1.0 / dt
    alpha = lambda t: rate + 0.0 * t  # noqa: E731
    beta = lambda t: 0.3 - 0.2 * t  # noqa: E731
    velocity_fn = affine_field(alpha, beta)
    m, c = affine_sampler_gaussian(integrator, num_steps, alpha, beta)
    source_std = 0.7
    mean, std = source_std * c, source_std * abs(m)
    if integrator == "euler":
        np.testing.assert_allclose(std, 0.7 * target_std, rtol=1e-6)
    # Actions around the mode, within 3 std, in 2 dims.
    z = _randn(64, 2, seed=3)
    action = mean + std * jnp.clip(z, -3, 3)
    obs = jnp.zeros((64, 1))
    log_p, info = diagnostics.sampler_log_prob(
        velocity_fn, None, obs, action, integrator=integrator, num_steps=num_steps,
        source_std=source_std, return_info=True,
    )  # fmt: skip
    expected = jnp.sum(
        -0.5 * jnp.square((action - mean) / std) - jnp.log(std) - 0.5 * math.log(2 * math.pi),
        axis=-1,
    )
    assert int(info["not_converged"]) == 0
    np.testing.assert_allclose(log_p, expected, rtol=1e-5, atol=2e-3)
    # The sampler itself produces that Gaussian.
    samples = source_std * flow.sample(velocity_fn, None, jnp.zeros((4096, 1)),
                                       jax.random.PRNGKey(0), action_dim=2,
                                       integrator=integrator, num_steps=num_steps)  # fmt: skip
    np.testing.assert_allclose(jnp.mean(samples, axis=0), mean, atol=5 * std / 64 + 1e-6)
    np.testing.assert_allclose(jnp.std(samples, axis=0), std, rtol=0.06)


def _tiny_mlp_velocity(action_dim=2, seed=0):
    net = VelocityMLP(action_dim=action_dim, hidden_sizes=(16, 16))
    params = net.init(jax.random.PRNGKey(seed), jnp.zeros((1, 3)), jnp.zeros((1, action_dim)),
                      jnp.zeros((1, 1)))  # fmt: skip
    return velocity_fn_from_module(net), params


@pytest.mark.parametrize("integrator", ["euler", "midpoint"])
def test_sampler_log_prob_inverts_the_sampler_on_a_nonlinear_field(integrator):
    # The inversion's density equals the forward path's change of variables of the same samples.
    velocity_fn, params = _tiny_mlp_velocity()
    obs = _randn(32, 3, seed=1)
    key = jax.random.PRNGKey(2)
    action, forward = diagnostics.sampled_log_prob(
        velocity_fn, params, obs, key, action_dim=2, integrator=integrator, num_steps=10,
        source_std=0.5,
    )  # fmt: skip
    inverted, info = diagnostics.sampler_log_prob(
        velocity_fn, params, obs, action, integrator=integrator, num_steps=10, source_std=0.5,
        return_info=True,
    )  # fmt: skip
    assert int(info["not_converged"]) == 0
    np.testing.assert_allclose(inverted, forward, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("integrator", ["euler", "midpoint"])
def test_sampler_log_prob_gradients_match_finite_differences(integrator):
    # The inversion's iterations carry no gradient; the last Newton step gives the implicit
    # function theorem's. Checked along a random direction of the parameters, and per action.
    velocity_fn, params = _tiny_mlp_velocity()
    obs, action = _randn(16, 3, seed=1), 0.8 * _randn(16, 2, seed=2)

    def total(p, a):
        return jnp.sum(diagnostics.sampler_log_prob(
            velocity_fn, p, obs, a, integrator=integrator, num_steps=8, source_std=0.7))  # fmt: skip

    g_params, g_action = jax.grad(total, argnums=(0, 1))(params, action)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(3), len(leaves))
    direction = jax.tree.unflatten(
        tree, [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves, strict=True)]
    )
    h = 1e-2
    shifted = [jax.tree.map(lambda x, d, s=s: x + s * h * d, params, direction) for s in (1, -1)]
    numeric = (total(shifted[0], action) - total(shifted[1], action)) / (2 * h)
    analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(g_params),
                                                   jax.tree.leaves(direction), strict=True))  # fmt: skip
    np.testing.assert_allclose(analytic, numeric, rtol=2e-2)
    assert abs(float(analytic)) > 1e-2  # the parameters' gradient is not lost
    e = jnp.zeros_like(action).at[0, 1].set(1.0)
    numeric_a = (total(params, action + h * e) - total(params, action - h * e)) / (2 * h)
    np.testing.assert_allclose(g_action[0, 1], numeric_a, rtol=2e-2, atol=1e-3)


def test_sampler_log_prob_integrates_to_one_in_one_dim():
    velocity_fn, params = _tiny_mlp_velocity(action_dim=1, seed=4)
    grid = jnp.linspace(-4.0, 4.0, 4001)[:, None]
    obs = jnp.broadcast_to(_randn(1, 3, seed=5), (grid.shape[0], 3))
    log_p = diagnostics.sampler_log_prob(velocity_fn, params, obs, grid, num_steps=10)
    mass = float(jnp.sum(jnp.exp(log_p)) * (grid[1, 0] - grid[0, 0]))
    assert abs(mass - 1.0) < 2e-3, mass


def test_sampler_log_prob_says_when_a_step_cannot_be_inverted():
    # dt * alpha = 1 makes the Euler step x -> 0 * x (singular); dt * alpha = 2 makes it
    # x -> -x, which reverses orientation: no step of a flow with a valid step size does either.
    for alpha in (10.0, 20.0):
        velocity_fn = affine_field(lambda t, a=alpha: a + 0.0 * t, lambda t: 0.0 * t)
        log_p, info = diagnostics.sampler_log_prob(
            velocity_fn, None, jnp.zeros((5, 1)), _randn(5, 1), num_steps=10, return_info=True
        )
        assert bool(jnp.all(jnp.isnan(log_p))) and int(info["not_converged"]) == 5
    with pytest.raises(ValueError, match="stochastic DPPO chain"):
        diagnostics.sampler_log_prob(velocity_fn, None, jnp.zeros((1, 1)), jnp.zeros((1, 2)),
                                     integrator="stochastic")  # fmt: skip


def test_fpo_log_ratios_default_to_the_density_of_the_agents_own_sampler():
    # An affine (Gaussian) field: the sampler's Euler steps give a Gaussian of their own, whose
    # density sampler_log_prob computes exactly; the ratio diagnostics use it.
    config = dataclasses.replace(preset("bandit"), flow_noise_scale=0.5, num_pairs=4,
                                 flow_steps=3)  # fmt: skip
    agent = FPOAgent(config, 2, network=GaussianField(2))
    obs = _randn(6, 3, seed=8)
    old = agent.init(jax.random.key(0), 3)
    new = jax.tree.map(lambda x: x + 0.2 * _randn(*x.shape, seed=9), old)
    raw_action, extras = agent.act(old, obs, jax.random.PRNGKey(1))
    _, exact = diagnostics.fpo_log_ratios(agent, old, new, obs, raw_action, extras)
    by_sampler = lambda p: diagnostics.sampler_log_prob(  # noqa: E731
        agent.velocity_fn, p, obs, raw_action, integrator="euler", num_steps=3, source_std=0.5
    )
    np.testing.assert_allclose(exact, by_sampler(new) - by_sampler(old), rtol=1e-5, atol=1e-5)
    _, ode = diagnostics.fpo_log_ratios(agent, old, new, obs, raw_action, extras, density="ode")
    assert not np.allclose(exact, ode, atol=1e-3)  # 3 Euler steps are not the ODE
