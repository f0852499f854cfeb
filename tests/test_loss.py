"""The objectives in fpo_jax.loss against hand computations and their defining properties."""

import functools
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fpo_jax import loss

OBS_DIM, ACT_DIM, N = 3, 2, 4


def linear_velocity(params, obs, x_t, t):
    """A velocity field simple enough to compute by hand: v = x W + obs U + t b."""
    return x_t @ params["W"] + obs @ params["U"] + t * params["b"]


def make_params(key, scale=0.3):
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "W": scale * jax.random.normal(k1, (ACT_DIM, ACT_DIM)),
        "U": scale * jax.random.normal(k2, (OBS_DIM, ACT_DIM)),
        "b": scale * jax.random.normal(k3, (ACT_DIM,)),
    }


def make_batch(key, lead=(5,)):
    ko, ka, ke, kt, kadv = jax.random.split(key, 5)
    obs = jax.random.normal(ko, (*lead, OBS_DIM))
    actions = jax.random.normal(ka, (*lead, ACT_DIM))
    eps = jax.random.normal(ke, (*lead, N, ACT_DIM))
    t = jax.random.uniform(kt, (*lead, N, 1))
    adv = jax.random.normal(kadv, lead)
    return obs, actions, eps, t, adv


@pytest.fixture
def setup():
    params = make_params(jax.random.PRNGKey(0))
    return params, *make_batch(jax.random.PRNGKey(1))


def hand_cfm(params, obs, actions, eps, t, weighting):
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    obs, actions, eps, t = (np.asarray(x, np.float64) for x in (obs, actions, eps, t))
    out = np.zeros(eps.shape[:-1])
    for b in range(eps.shape[0]):
        for i in range(eps.shape[1]):
            ti = t[b, i, 0]
            x = ti * eps[b, i] + (1 - ti) * actions[b]
            v = x @ p["W"] + obs[b] @ p["U"] + ti * p["b"]
            if weighting == "velocity":
                err = v - (eps[b, i] - actions[b])
            else:
                err = eps[b, i] - (x + (1 - ti) * v)
            out[b, i] = np.mean(err**2)
    return out


def test_eps_weighting_is_velocity_weighting_times_one_minus_t_squared(setup):
    params, obs, actions, eps, t, _ = setup
    l_eps = loss.cfm_loss(linear_velocity, params, obs, actions, eps, t, weighting="eps")
    l_vel = loss.cfm_loss(linear_velocity, params, obs, actions, eps, t, weighting="velocity")
    np.testing.assert_allclose(l_eps, (1 - t[..., 0]) ** 2 * l_vel, rtol=1e-5, atol=1e-7)


def test_unknown_weighting_is_rejected(setup):
    params, obs, actions, eps, t, _ = setup
    with pytest.raises(ValueError, match="weighting"):
        loss.cfm_loss(linear_velocity, params, obs, actions, eps, t, weighting="x")


def _objective(params, batch, old, **kw):
    obs, actions, eps, t, adv = batch
    return loss.fpo_objective(linear_velocity, params, obs, actions, eps, t, old, adv, **kw)


def test_clipping_zeroes_gradient_outside_trust_region(setup):
    params, *batch = setup
    obs, actions, eps, t, _ = batch
    new = loss.cfm_loss(linear_velocity, params, obs, actions, eps, t)
    # old losses larger by 0.5 -> r = e^0.5 > 1 + e; positive advantages -> clipped.
    old = new + 0.5
    pos_batch = (*batch[:4], jnp.abs(batch[4]) + 0.1)
    g = jax.grad(lambda p: _objective(p, pos_batch, old, clip_epsilon=0.05)[0])(params)
    chex.assert_trees_all_close(g, jax.tree.map(jnp.zeros_like, g), atol=1e-8)
    _, metrics = _objective(params, pos_batch, old, clip_epsilon=0.05)
    np.testing.assert_allclose(metrics["clip_fraction"], 1.0)
    # Inside the trust region the gradient is not zero.
    g_in = jax.grad(lambda p: _objective(p, pos_batch, new + 0.01, clip_epsilon=0.05)[0])(params)
    assert max(float(jnp.abs(x).max()) for x in jax.tree.leaves(g_in)) > 1e-4


def test_aspo_pulls_a_too_small_ratio_back_for_negative_advantages():
    ratio = jnp.array([0.5, 0.8, 1.0, 1.5])
    adv = -jnp.ones(4)
    e = 0.05
    d_ppo = jax.grad(lambda r: -jnp.sum(loss.ppo_clip_objective(r, adv, e)))(ratio)
    d_aspo = jax.grad(lambda r: -jnp.sum(loss.aspo_objective(r, adv, e)))(ratio)
    # PPO: no gradient once r < 1 - e for A < 0 (the ratio is left where it is).
    np.testing.assert_allclose(d_ppo[:2], 0.0)
    # ASPO: d loss / d r < 0 for r < 1 - e, so gradient descent raises r back towards 1.
    assert jnp.all(d_aspo[:2] < 0)
    # and for r > 1 it pushes r down (d loss / d r > 0), like PPO.
    assert d_aspo[3] > 0 and d_ppo[3] > 0
    # Positive advantages: ASPO is exactly PPO clip.
    r = jnp.linspace(0.5, 1.5, 11)
    np.testing.assert_allclose(
        loss.aspo_objective(r, 1.0, e), loss.ppo_clip_objective(r, 1.0, e), rtol=1e-6
    )


def test_arbitrary_leading_dims_and_jit():
    params = make_params(jax.random.PRNGKey(2))
    batch = make_batch(jax.random.PRNGKey(3), lead=(2, 3, 4))
    old = loss.cfm_loss(linear_velocity, params, *batch[:4]) + 0.01
    f = jax.jit(lambda p, b, o: _objective(p, b, o, ratio="per_sample", trust_region="aspo"))
    value, metrics = f(params, batch, old)
    flat = tuple(x.reshape(24, *x.shape[3:]) for x in batch)
    value_flat, _ = _objective(
        params, flat, old.reshape(24, N), ratio="per_sample", trust_region="aspo"
    )
    np.testing.assert_allclose(value, value_flat, rtol=1e-5)
    assert metrics["ratio_mean"].shape == ()


# ----------------------------------------------------------------------------- input checks

B = 5  # batch of the `setup` fixture

# (argument, bad shape, the expected shape the message must name)
BAD_FPO_INPUTS = [
    ("advantages", (B, 1), "(5,)"),  # would broadcast against (B,) ratios to (B, B)
    ("old_cfm_loss", (B, N + 1), f"(5, {N})"),  # wrong N
    ("old_cfm_loss", (B,), f"(5, {N})"),  # one loss per action instead of per pair
    ("eps", (B + 1, N, ACT_DIM), f"(5, N, {ACT_DIM})"),  # batch disagrees with actions
    ("eps", (B, N, ACT_DIM + 1), f"(5, N, {ACT_DIM})"),  # A disagrees with actions
    ("t", (B, N), f"(5, {N}, 1)"),  # missing trailing 1
    ("t", (B, N + 1, 1), f"(5, {N}, 1)"),  # N disagrees with eps
    ("obs", (B, 1, OBS_DIM), "(5, obs_dim)"),
]


@pytest.mark.parametrize(("name", "shape", "expected"), BAD_FPO_INPUTS)
def test_fpo_objective_rejects_bad_shapes(setup, name, shape, expected):
    params, obs, actions, eps, t, adv = setup
    args = dict(obs=obs, actions=actions, eps=eps, t=t, old_cfm_loss=jnp.zeros((B, N)))
    args["advantages"] = adv
    args[name] = jnp.zeros(shape)
    with pytest.raises(
        ValueError, match=rf"fpo_objective: {name} has shape .*expected {re.escape(expected)}"
    ):
        loss.fpo_objective(linear_velocity, params, **args)


@pytest.mark.parametrize(("name", "shape", "expected"), BAD_FPO_INPUTS[3:])
def test_cfm_loss_rejects_bad_shapes(setup, name, shape, expected):
    params, obs, actions, eps, t, _ = setup
    args = dict(obs=obs, actions=actions, eps=eps, t=t)
    args[name] = jnp.zeros(shape)
    with pytest.raises(
        ValueError, match=rf"cfm_loss: {name} has shape .*expected {re.escape(expected)}"
    ):
        loss.cfm_loss(linear_velocity, params, **args)


def test_cfm_loss_rejects_a_velocity_of_the_wrong_shape(setup):
    params, obs, actions, eps, t, _ = setup
    one_dim = lambda p, o, x, t: linear_velocity(p, o, x, t)[..., :1]  # (B, N, 1) for A = 2
    with pytest.raises(
        ValueError, match=rf"output of velocity_fn .*expected \(5, {N}, {ACT_DIM}\)"
    ):
        loss.cfm_loss(one_dim, params, obs, actions, eps, t)


@pytest.mark.parametrize("clip_epsilon", [0.0, -0.1, float("nan")])
def test_non_positive_clip_epsilon_is_rejected(setup, clip_epsilon):
    params, *batch = setup
    old = jnp.zeros((B, N))
    with pytest.raises(ValueError, match="fpo_objective: clip_epsilon must be > 0"):
        _objective(params, batch, old, clip_epsilon=clip_epsilon, trust_region="aspo")
    lp, adv = jnp.zeros(3), jnp.ones(3)
    with pytest.raises(ValueError, match="ppo_objective: clip_epsilon"):
        loss.ppo_objective(lp, lp, adv, clip_epsilon=clip_epsilon)
    with pytest.raises(ValueError, match="dppo_objective: clip_epsilon"):
        loss.dppo_objective(lp[:, None], lp[:, None], adv, clip_epsilon=clip_epsilon)
    with pytest.raises(ValueError, match="aspo_objective: clip_epsilon"):
        loss.aspo_objective(lp, adv, clip_epsilon)


def test_traced_clip_epsilon_is_accepted_and_valid_leading_dims_work_under_jit():
    """A traced clip_epsilon (a hyperparameter in the state) cannot be checked and passes; the
    shape checks accept any consistent leading dims, under jit and vmap."""
    params = make_params(jax.random.PRNGKey(2))
    batch = make_batch(jax.random.PRNGKey(3), lead=(2, 3))
    old = loss.cfm_loss(linear_velocity, params, *batch[:4]) + 0.01
    f = jax.jit(lambda p, b, o, e: _objective(p, b, o, clip_epsilon=e, trust_region="aspo")[0])
    value = f(params, batch, old, jnp.float32(0.05))
    np.testing.assert_allclose(
        value, _objective(params, batch, old, trust_region="aspo")[0], rtol=1e-6
    )
    # vmap over the leading axis: each call sees (3, ...) and the checks still pass.
    per_row = jax.vmap(lambda b, o: _objective(params, b, o)[0])(batch, old)
    assert per_row.shape == (2,)


def test_ppo_dppo_and_gae_reject_bad_shapes():
    lp, adv = jnp.zeros(4), jnp.ones(4)
    with pytest.raises(
        ValueError, match=r"ppo_objective: advantages has shape \(4, 1\), expected \(4,\)"
    ):
        loss.ppo_objective(lp, lp, adv[:, None])
    with pytest.raises(
        ValueError, match=r"ppo_objective: log_prob_old has shape \(3,\), expected \(4,\)"
    ):
        loss.ppo_objective(lp, lp[:3], adv)
    steps = jnp.zeros((4, 10))
    with pytest.raises(
        ValueError, match=r"dppo_objective: advantages has shape \(4, 10\), expected \(4,\)"
    ):
        loss.dppo_objective(steps, steps, steps)
    with pytest.raises(
        ValueError,
        match=r"dppo_objective: step_log_prob_old has shape \(4, 9\), expected \(4, 10\)",
    ):
        loss.dppo_objective(steps, steps[:, 1:], adv)
    rollout = jnp.zeros((6, 4))
    kw = dict(discount=0.99, gae_lambda=0.95)
    with pytest.raises(
        ValueError, match=r"compute_gae: bootstrap_value has shape \(4, 1\), expected \(4,\)"
    ):
        loss.compute_gae(rollout, rollout, jnp.zeros((4, 1)), rollout, rollout, **kw)
    with pytest.raises(
        ValueError, match=r"compute_gae: truncation has shape \(6,\), expected \(6, 4\)"
    ):
        loss.compute_gae(rollout, rollout, jnp.zeros(4), rollout, rollout[:, 0], **kw)


def test_log_ratio_rejects_mismatched_losses_and_bad_clamps():
    new = jnp.zeros((3, 4))
    with pytest.raises(
        ValueError, match=r"fpo_log_ratio: old_cfm_loss has shape \(3, 5\), expected \(3, 4\)"
    ):
        loss.fpo_log_ratio(jnp.zeros((3, 5)), new)
    with pytest.raises(ValueError, match="log_ratio_clamp must be > 0"):
        loss.fpo_log_ratio(new, new, log_ratio_clamp=0.0)
    with pytest.raises(ValueError, match="cfm_loss_clamp must be > 0"):
        loss.fpo_log_ratio(new, new, cfm_loss_clamp=-1.0)


def test_clamps_bound_the_ratio():
    old = jnp.array([[0.0, 0.0], [10.0, 10.0]])
    new = jnp.array([[10.0, 10.0], [0.0, 0.0]])
    log_r = loss.fpo_log_ratio(old, new, log_ratio_clamp=1.0)
    np.testing.assert_allclose(log_r, [-1.0, 1.0])
    log_r = loss.fpo_log_ratio(old, new, cfm_loss_clamp=2.0)
    np.testing.assert_allclose(log_r, [-2.0, 2.0])
    log_r = loss.fpo_log_ratio(old, new, ratio="per_sample")
    assert log_r.shape == (2, 2)
    # Gradient flows only through the new losses.
    g = jax.grad(lambda o: jnp.sum(loss.fpo_log_ratio(o, new)))(old)
    np.testing.assert_allclose(g, 0.0)


def test_gaussian_log_prob_entropy_and_tanh_jacobian():
    x = jnp.array([[0.3, -1.2], [2.0, 0.0]])
    loc = jnp.array([[0.0, -1.0], [1.5, 0.5]])
    scale = jnp.array([[0.5, 2.0], [1.0, 0.1]])
    xs, ls, ss = (np.asarray(a, np.float64) for a in (x, loc, scale))
    ref = np.sum(-((xs - ls) ** 2) / (2 * ss**2) - np.log(ss * np.sqrt(2 * np.pi)), axis=-1)
    np.testing.assert_allclose(loss.gaussian_log_prob(x, loc, scale), ref, rtol=1e-5)
    np.testing.assert_allclose(
        loss.gaussian_entropy(scale), np.sum(0.5 * np.log(2 * np.pi * np.e * ss**2), -1), rtol=1e-5
    )
    np.testing.assert_allclose(
        loss.tanh_log_det_jacobian(x), np.sum(np.log(1 - np.tanh(xs) ** 2), -1), rtol=1e-4
    )


def test_gaussian_log_prob_with_a_scalar_sigma():
    """DPPO's per-step density: a scalar sigma counts once per action dim."""
    rng = np.random.default_rng(0)
    x, m = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    sigma = 0.3
    expected = np.sum(
        -((x - m) ** 2) / (2 * sigma**2) - np.log(sigma) - 0.5 * np.log(2 * np.pi), axis=-1
    )
    got = loss.gaussian_log_prob(jnp.asarray(x), jnp.asarray(m), sigma)
    assert got.shape == (4,)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # A per-dimension sigma, broadcast over the batch.
    sig = np.array([0.1, 0.5, 2.0])
    expected = np.sum(
        -((x - m) ** 2) / (2 * sig**2) - np.log(sig) - 0.5 * np.log(2 * np.pi), axis=-1
    )
    got = loss.gaussian_log_prob(jnp.asarray(x), jnp.asarray(m), jnp.asarray(sig))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_ppo_and_dppo_objectives_on_policy():
    adv = jnp.array([1.0, -2.0, 0.5])
    lp = jnp.array([-1.0, -0.3, -2.0])
    value, m = loss.ppo_objective(lp, lp, adv, clip_epsilon=0.2)
    np.testing.assert_allclose(value, -jnp.mean(adv), rtol=1e-6)
    np.testing.assert_allclose(m["approx_kl"], 0.0, atol=1e-7)
    steps = jnp.tile(lp[:, None], (1, 10))
    value, m = loss.dppo_objective(steps, steps, adv, clip_epsilon=0.2)
    np.testing.assert_allclose(value, -jnp.mean(adv), rtol=1e-6)
    # Each step's ratio is clipped separately.
    new = steps.at[:, 0].add(1.0)
    _, m = loss.dppo_objective(new, steps, adv, clip_epsilon=0.2)
    np.testing.assert_allclose(m["clip_fraction"], 0.1, rtol=1e-6)


def python_gae(rewards, values, bootstrap, termination, truncation, gamma, lam):
    """Straightforward loop over time, one environment at a time."""
    T, B = rewards.shape
    vs = np.zeros((T, B))
    adv = np.zeros((T, B))
    for b in range(B):
        acc = 0.0
        for t in reversed(range(T)):
            v_next = bootstrap[b] if t == T - 1 else values[t + 1, b]
            if truncation[t, b]:
                acc = 0.0  # the time limit cut the episode: nothing propagates through it
                vs[t, b] = values[t, b]
                continue
            c = 1.0 - termination[t, b]
            delta = rewards[t, b] + gamma * c * v_next - values[t, b]
            acc = delta + gamma * lam * c * acc
            vs[t, b] = acc + values[t, b]
        for t in range(T):
            vs_next = bootstrap[b] if t == T - 1 else vs[t + 1, b]
            if truncation[t, b]:
                adv[t, b] = 0.0
            else:
                c = 1.0 - termination[t, b]
                adv[t, b] = rewards[t, b] + gamma * c * vs_next - values[t, b]
    return vs, adv


def test_gae_lambda_one_no_dones_is_discounted_return_minus_value():
    T = 6
    rewards = jnp.ones((T, 1))
    values = jnp.zeros((T, 1))
    zeros = jnp.zeros((T, 1))
    vs, adv = loss.compute_gae(
        rewards, values, jnp.zeros(1), zeros, zeros, discount=0.5, gae_lambda=1.0
    )
    expected = np.array([sum(0.5**k for k in range(T - t)) for t in range(T)])
    np.testing.assert_allclose(vs[:, 0], expected, rtol=1e-6)
    np.testing.assert_allclose(adv[:, 0], expected, rtol=1e-6)


def test_value_loss_and_normalize():
    np.testing.assert_allclose(loss.value_loss(jnp.array([1.0, 3.0]), jnp.array([0.0, 1.0])), 2.5)
    a = loss.normalize_advantages(jnp.array([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_allclose([a.mean(), a.std()], [0.0, 1.0], atol=1e-6)


# --------------------------------------------------------------------------------------------
# FPO++ switches
# --------------------------------------------------------------------------------------------


def test_straight_through_log_ratio_clamp_clips_forward_and_passes_the_gradient():
    old = jnp.array([[0.0, 30.0, 1.0], [0.5, 0.2, 0.0]])  # (B=2, N=3)
    new = jnp.array([[12.0, 1.0, 0.5], [0.1, 0.3, 0.0]])  # log r_00 = -12, log r_01 = 29
    k = 10.0

    def log_r(new, straight_through, clamp=k):
        return loss.fpo_log_ratio(old, new, ratio="per_sample", log_ratio_clamp=clamp,
                                  log_ratio_straight_through=straight_through)  # fmt: skip

    # Forward: exactly the clipped log-ratio, as with the plain clamp.
    np.testing.assert_allclose(log_r(new, True), jnp.clip(old - new, -k, k))
    np.testing.assert_allclose(log_r(new, True), log_r(new, False))
    # Backward: d/d new of the unclamped log-ratio (-1 everywhere), also where the clamp is
    # active; the plain clamp gives 0 there.
    weights = jnp.arange(1.0, 7.0).reshape(2, 3)
    grad = lambda st, clamp: jax.grad(lambda n: jnp.sum(weights * log_r(n, st, clamp)))(new)
    np.testing.assert_allclose(grad(True, k), grad(False, None))
    np.testing.assert_allclose(grad(True, k), -weights)
    assert float(grad(False, k)[0, 0]) == 0.0 and float(grad(False, k)[0, 1]) == 0.0


def test_sqrt_reduction_is_sum_over_sqrt_of_action_dims(setup):
    params, obs, actions, eps, t, _ = setup
    mean = loss.cfm_loss(linear_velocity, params, obs, actions, eps, t)
    sqrt = loss.cfm_loss(linear_velocity, params, obs, actions, eps, t, reduction="sqrt")
    np.testing.assert_allclose(sqrt, mean * np.sqrt(ACT_DIM), rtol=1e-6)
    # Unit squared errors in 9 dims: mean 1, sqrt 9 / 3 = 3.
    ones = jnp.ones((4, 9))
    np.testing.assert_allclose(loss.reduce_action_dims(ones, "sqrt"), 3.0)
    np.testing.assert_allclose(loss.reduce_action_dims(ones, "mean"), 1.0)
    with pytest.raises(ValueError, match="reduction"):
        loss.reduce_action_dims(ones, "sum")


def test_negative_advantage_clamp_bounds_only_negative_advantage_losses():
    new = jnp.array([[25.0, 3.0], [25.0, 3.0]])  # (B=2, N=2)
    adv = jnp.array([-1.0, 2.0])
    out = loss.clamp_negative_advantage_loss(new, adv, 20.0)
    np.testing.assert_allclose(out, [[20.0, 3.0], [25.0, 3.0]])
    with pytest.raises(ValueError, match="advantages"):
        loss.clamp_negative_advantage_loss(new, adv[:, None], 20.0)


def test_negative_advantage_clamp_stops_pushing_a_bad_action_away(setup):
    """Pairs with A < 0 whose new loss exceeds the clamp no longer get a gradient."""
    params, obs, actions, eps, t, _ = setup
    adv = -jnp.ones(actions.shape[:-1])
    new = loss.cfm_loss(linear_velocity, params, obs, actions, eps, t)
    clamp = float(jnp.median(new))  # about half the pairs above it
    old = new + 0.01  # ratios near 1: inside ASPO's penalty, where gradients are non-zero

    def objective(p, c):
        return loss.fpo_objective(linear_velocity, p, obs, actions, eps, t, old, adv,
                                  ratio="per_sample", trust_region="aspo",
                                  negative_advantage_cfm_clamp=c)[0]  # fmt: skip

    free = jax.grad(objective)(params, None)
    clamped = jax.grad(objective)(params, clamp)
    assert not np.allclose(free["b"], clamped["b"])
    # Every pair above the clamp: no gradient at all.
    assert np.allclose(jax.grad(objective)(params, float(jnp.min(new)) / 2)["b"], 0.0)


# ----------------------------------------------------------------------------- with and without jit


class PureFunctionsTest(chex.TestCase):
    """The pure API gives the same (hand-computed) numbers traced under ``jax.jit`` and run
    eagerly: chex runs each test once per variant."""

    def setUp(self):
        super().setUp()
        self.params = make_params(jax.random.PRNGKey(0))
        self.batch = make_batch(jax.random.PRNGKey(1))

    @chex.variants(with_jit=True, without_jit=True)
    def test_cfm_loss_matches_hand_computation(self):
        obs, actions, eps, t, _ = self.batch
        for weighting in ("eps", "velocity"):
            cfm = self.variant(functools.partial(
                loss.cfm_loss, linear_velocity, weighting=weighting))  # fmt: skip
            got = cfm(self.params, obs, actions, eps, t)
            chex.assert_shape(got, (B, N))
            expected = hand_cfm(self.params, obs, actions, eps, t, weighting)
            chex.assert_trees_all_close(got, expected.astype(np.float32), rtol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_on_policy_ratio_is_one_and_loss_is_minus_mean_advantage(self):
        old = loss.cfm_loss(linear_velocity, self.params, *self.batch[:4])
        adv = self.batch[4]
        for ratio in ("mean", "per_sample"):
            for trust_region in ("ppo", "aspo"):
                objective = self.variant(functools.partial(
                    _objective, ratio=ratio, trust_region=trust_region))  # fmt: skip
                value, metrics = objective(self.params, self.batch, old)
                chex.assert_trees_all_close(
                    (value, metrics["ratio_mean"], metrics["clip_fraction"]),
                    (-jnp.mean(adv), 1.0, 0.0),
                    rtol=1e-5,
                    atol=1e-6,
                )
                chex.assert_trees_all_close(
                    metrics["cfm_loss_new"], metrics["cfm_loss_old"], rtol=1e-6
                )

    @chex.variants(with_jit=True, without_jit=True)
    def test_on_policy_gradient_is_advantage_weighted_cfm_gradient(self):
        """At r = 1: grad(-mean r A) = grad(mean_b A_b mean_i l_new_bi) (the paper's key
        identity), for both ratios and weightings; the gradients are whole pytrees."""
        obs, actions, eps, t, adv = self.batch
        for ratio in ("mean", "per_sample"):
            for weighting in ("eps", "velocity"):
                old = loss.cfm_loss(linear_velocity, self.params, obs, actions, eps, t,
                                    weighting=weighting)  # fmt: skip

                def fpo(p, old=old, ratio=ratio, weighting=weighting):
                    return _objective(p, self.batch, old, ratio=ratio, weighting=weighting)[0]

                def weighted_cfm(p, weighting=weighting):
                    new = loss.cfm_loss(linear_velocity, p, obs, actions, eps, t,
                                        weighting=weighting)  # fmt: skip
                    return jnp.mean(adv * jnp.mean(new, axis=-1))

                g_fpo = self.variant(jax.grad(fpo))(self.params)
                g_ref = jax.grad(weighted_cfm)(self.params)
                chex.assert_trees_all_close(g_fpo, g_ref, rtol=1e-4, atol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_gae_matches_python_loop_with_termination_and_truncation(self):
        rng = np.random.default_rng(0)
        T, batch = 12, 3
        rewards = rng.normal(size=(T, batch))
        values = rng.normal(size=(T, batch))
        bootstrap = rng.normal(size=(batch,))
        termination = np.zeros((T, batch))
        truncation = np.zeros((T, batch))
        termination[4, 0] = 1.0
        termination[10, 1] = 1.0
        truncation[6, 1] = 1.0
        truncation[T - 1, 2] = 1.0
        inputs = (rewards, values, bootstrap, termination, truncation)
        gae = self.variant(functools.partial(loss.compute_gae, discount=0.99, gae_lambda=0.95))
        got = gae(*(jnp.asarray(x, jnp.float32) for x in inputs))
        expected = python_gae(*inputs, 0.99, 0.95)
        chex.assert_trees_all_close(
            got, tuple(x.astype(np.float32) for x in expected), rtol=1e-4, atol=1e-5
        )

    def test_value_loss_refuses_targets_that_would_broadcast(self):
        # (B, 1) values against (B,) targets would average a (B, B) matrix of errors.
        with self.assertRaisesRegex(AssertionError, "different shapes"):
            loss.value_loss(jnp.zeros((4, 1)), jnp.zeros(4))
