"""Diagnostics of flow policies: exact log densities and how well FPO's ratio tracks the exact one.

* :func:`flow_log_prob`: the exact log density of a (pre-tanh) action under the probability-flow
  ODE of a velocity field, by integrating the instantaneous change of variables.
* :func:`sampler_log_prob`: the exact log density of a (pre-tanh) action under the *discrete*
  sampler the policy runs (Euler / midpoint / RK4 steps of :func:`fpo_jax.flow.sample`), by
  inverting each step (Newton) and adding the steps' log-determinants; :func:`path_log_prob`
  (and :func:`sampled_log_prob`) give actions sampled from given (or fresh) source noise with
  their densities along the forward path, with no inversion.
* :func:`ratio_fidelity`: pure summary statistics comparing FPO's surrogate log-ratios (mean and
  per-sample forms) with exact log-ratios: correlation, sign agreement, agreement of PPO's clip
  decision, bias.
* :func:`fpo_log_ratios`: both log-ratios for an FPO agent's old and new parameters on a batch
  as the agent stores it (raw actions, (t, eps) pairs, old CFM losses).

Flow convention of :mod:`fpo_jax.flow`: t = 1 is noise, t = 0 the action,
``x_t = t * eps + (1 - t) * a``, sampling integrates ``dx/dt = v(obs, x, t)`` from t = 1 down
to t = 0. Everything here is pure and jit-able; the exact divergence costs A Jacobian-vector
products per velocity evaluation, so it is meant for small action dims.
"""

from __future__ import annotations

import math
from typing import Any

import chex
import jax
import jax.numpy as jnp
from jax import lax

from fpo_jax import loss
from fpo_jax.flow import _MEAN_STEPS, VelocityFn, step_times

Array = jax.Array

# Butcher tableaus (c, a, b) of the explicit integrators, same names as fpo_jax.flow's samplers.
_TABLEAUS: dict[str, tuple[tuple[float, ...], tuple[tuple[float, ...], ...], tuple[float, ...]]] = {
    "euler": ((0.0,), (), (1.0,)),
    "midpoint": ((0.0, 0.5), ((0.5,),), (0.0, 1.0)),
    "rk4": (
        (0.0, 0.5, 0.5, 1.0),
        ((0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
        (1 / 6, 1 / 3, 1 / 3, 1 / 6),
    ),
}
INTEGRATORS: tuple[str, ...] = tuple(_TABLEAUS)

# RK4 with 32 steps: within 1e-3 of the closed form on tests/test_diagnostics.py's Gaussians
# (source std down to 0.3) and of a 128-step solution on trained bandit policies.
DEFAULT_NUM_STEPS = 32


def _velocity_and_divergence(
    velocity_fn: VelocityFn, params: Any, obs: Array, x: Array, t: Array
) -> tuple[Array, Array]:
    """obs (M, obs_dim), x (M, A), t (M, 1) -> v (M, A), div_x v (M,).

    Each row is its own function of x (the velocity of one action does not depend on the other
    rows), so the divergence is the trace of the per-row Jacobian ``jacfwd`` (A JVPs per row).
    """

    def row(o: Array, xi: Array, ti: Array) -> tuple[Array, Array]:
        def f(y: Array) -> tuple[Array, Array]:
            v = velocity_fn(params, o[None], y[None], ti[None])[0]
            return v, v

        jac, v = jax.jacfwd(f, has_aux=True)(xi)  # (A, A), (A,)
        return v, jnp.trace(jac)

    return jax.vmap(row)(obs, x, t)


def _rows(
    obs: Array, action: Array, num_steps: int, source_std: float | Array
) -> tuple[tuple[int, ...], int, Any, Array, Array, Array]:
    """Checks and flattens the arguments of a density: -> (batch shape, A, dtype, source_std,
    obs (rows, obs_dim), action in the flow's units (rows, A))."""
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a Python int >= 1, got {num_steps!r}.")
    obs, action = jnp.asarray(obs), jnp.asarray(action)
    if action.ndim < 1:
        raise ValueError(f"action must have shape (..., A), got {action.shape}.")
    chex.assert_equal_shape_prefix([obs, action], action.ndim - 1)
    batch_shape, act_dim = action.shape[:-1], action.shape[-1]
    rows = math.prod(batch_shape)
    dtype = jnp.result_type(action.dtype, jnp.float32)
    source_std = jnp.asarray(source_std, dtype)
    chex.assert_shape(source_std, ())
    obs2 = obs.reshape(rows, obs.shape[-1])
    x = (action / source_std).reshape(rows, act_dim).astype(dtype)
    return batch_shape, act_dim, dtype, source_std, obs2, x


def _standard_normal_log_prob(x: Array) -> Array:
    """log N(x; 0, I) of rows x (rows, A) -> (rows,)."""
    return -0.5 * jnp.sum(jnp.square(x), axis=-1) - 0.5 * x.shape[-1] * math.log(2 * math.pi)


def flow_log_prob(
    velocity_fn: VelocityFn,
    params: Any,
    obs: Array,
    action: Array,
    *,
    num_steps: int = DEFAULT_NUM_STEPS,
    integrator: str = "rk4",
    source_std: float | Array = 1.0,
) -> Array:
    """Exact log density of a pre-tanh action under the probability-flow ODE of ``velocity_fn``.

    The policy: ``x_1 ~ N(0, I)``, integrate ``dx/dt = v(obs, x, t)`` from t = 1 to t = 0, act
    ``a = source_std * x_0`` (``FlowPolicy.to_raw_action`` with ``source_std =
    flow_noise_scale``; equivalently a flow from N(0, source_std^2 I) with velocity
    ``source_std * v(a / source_std, t)``).

    Derivation. Let p_t be the density of x_t. Transported by the ODE, it obeys the continuity
    equation ``d/dt p_t + div(p_t v) = 0``; along a solution x(t) this gives
    ``d/dt log p_t(x(t)) = -div_x v(x(t), t)`` whichever way t runs. Integrating from t = 0 to 1,
    ``log p_1(x(1)) - log p_0(x(0)) = -int_0^1 div_x v(x(t), t) dt``, so

        log p_0(x_0) = log N(x(1); 0, I) + int_0^1 div_x v(x(t), t) dt,

    where x(t) solves the ODE forward in time from x(0) = x_0 = a / source_std (the reverse of
    sampling). Sign check: with v = c x (c > 0), sampling from t = 1 to 0 contracts by
    e^{-c}, so p_0 must be e^{cA} times denser, and div v = cA > 0 adds exactly that. Finally
    ``log p(a) = log p_0(a / source_std) - A log(source_std)``.

    The state (x, log-density increment) is integrated with a fixed-step explicit Runge-Kutta
    method in ``lax.scan``; the divergence is the exact trace of the Jacobian (``jax.jacfwd``
    over x).

    Args:
      velocity_fn: ``(params, obs (..., obs_dim), x_t (..., A), t (..., 1)) -> v (..., A)``
        (:data:`fpo_jax.flow.VelocityFn`); called here on single rows (leading dims (1,)).
      params: parameters of ``velocity_fn``.
      obs: (..., obs_dim) observations, the same leading dims as ``action``.
      action: (..., A) pre-tanh actions.
      num_steps: integration steps (>= 1) from t = 0 to t = 1.
      integrator: one of ``INTEGRATORS`` ("euler", "midpoint", "rk4").
      source_std: the std of the source noise in action units (the agent's
        ``flow_noise_scale``); a positive float or scalar array.

    Returns:
      (...,) log densities, in nats, of the actions in R^A.
    """
    if integrator not in _TABLEAUS:
        raise ValueError(f"Unknown integrator {integrator!r}; valid integrators are {INTEGRATORS}.")
    batch_shape, act_dim, dtype, source_std, obs2, x0 = _rows(obs, action, num_steps, source_std)
    rows = x0.shape[0]

    c, a, b = _TABLEAUS[integrator]
    dt = jnp.asarray(1.0 / num_steps, dtype)
    times = jnp.arange(num_steps, dtype=dtype) / num_steps  # step k: t_k -> t_k + dt

    def body(carry: tuple[Array, Array], t0: Array) -> tuple[tuple[Array, Array], None]:
        x, delta = carry
        ks: list[tuple[Array, Array]] = []
        for i, ci in enumerate(c):
            xi = x
            for aij, (kv, _) in zip(a[i - 1] if i else (), ks, strict=True):
                xi = xi + dt * aij * kv
            t = jnp.full((rows, 1), t0 + ci * dt, dtype)
            ks.append(_velocity_and_divergence(velocity_fn, params, obs2, xi, t))
        x = x + dt * sum(bi * kv for bi, (kv, _) in zip(b, ks, strict=True))
        delta = delta + dt * sum(bi * kd for bi, (_, kd) in zip(b, ks, strict=True))
        return (x, delta), None

    (x1, delta), _ = lax.scan(body, (x0, jnp.zeros((rows,), dtype)), times)
    log_p = _standard_normal_log_prob(x1) + delta - act_dim * jnp.log(source_std)
    out = log_p.reshape(batch_shape)
    chex.assert_shape(out, batch_shape)
    return out


# ---------------------------------------------------------------------------------------------
# The exact density of the discrete sampler
# ---------------------------------------------------------------------------------------------

# Integrators whose single step is a deterministic map x_t -> x_{t - dt} (flow.sample's).
SAMPLER_INTEGRATORS: tuple[str, ...] = ("euler", "midpoint", "rk4")
# Newton iterations per step inversion, and the residual (relative to the step's output) below
# which an inversion counts as converged.
NEWTON_ITERATIONS = 12
NEWTON_TOLERANCE = 1e-4


def _row_step(integrator: str, velocity_fn: VelocityFn, params: Any, obs_row: Array, t: Array,
              dt: Array) -> Any:  # fmt: skip
    """One sampler step of one row as a function ``x (A,) -> x_next (A,)`` at time ``t``."""
    step_fn = _MEAN_STEPS[integrator]

    def step(x: Array) -> Array:
        return step_fn(velocity_fn, params, obs_row[None], x[None], jnp.reshape(t, (1, 1)), dt)[0]

    return step


def _log_abs_det(jac: Array) -> tuple[Array, Array]:
    """(A, A) Jacobian -> (log |det|, whether the map keeps orientation (det > 0))."""
    sign, logabs = jnp.linalg.slogdet(jac)
    return logabs, sign > 0


def sampler_log_prob(
    velocity_fn: VelocityFn,
    params: Any,
    obs: Array,
    action: Array,
    *,
    integrator: str = "euler",
    num_steps: int = 10,
    source_std: float | Array = 1.0,
    newton_iterations: int = NEWTON_ITERATIONS,
    tolerance: float = NEWTON_TOLERANCE,
    return_info: bool = False,
) -> Array | tuple[Array, dict[str, Array]]:
    """Exact log density of a pre-tanh action under the discrete sampler that
    :func:`fpo_jax.flow.sample` runs (``noise="random"``), with no ODE in between.

    The sampler draws ``x_1 ~ N(0, I)``, applies ``num_steps`` steps ``x_{k+1} = F_k(x_k)``
    of the chosen integrator (``F_k(x) = x - dt v(x, t_k)`` for Euler) from t = 1 down to
    t = 0, and acts ``a = source_std * x_K``. Each step is an invertible map for the step sizes
    a flow allows (Euler: ``dt * Lip(v) < 1``), so by the change of variables through every step

        log p(a) = log N(x_1; 0, I) - sum_k log |det dF_k/dx (x_k)| - A log(source_std),

    where ``x_K = a / source_std`` and each earlier ``x_k = F_k^{-1}(x_{k+1})`` is found by
    Newton's method (``newton_iterations`` steps from the explicit guess ``y + dt v(y, t_k)``,
    each solving with the step's exact A x A Jacobian, then one more that carries the
    gradient: differentiable in ``params`` and ``action`` by the implicit function theorem,
    at the cost of one step's backward pass per inversion). An inversion that does not converge
    (residual ``max |F_k(x) - y|`` above ``tolerance * (1 + max |y|)``), or a step whose
    Jacobian flips orientation (the step is not invertible there), gives NaN for that action,
    never a wrong number; ``return_info=True`` also returns how many.

    Args:
      velocity_fn: ``(params, obs (..., obs_dim), x_t (..., A), t (..., 1)) -> v (..., A)``;
        called here on single rows (leading dims (1,)).
      params: parameters of ``velocity_fn``.
      obs: (..., obs_dim) observations, the same leading dims as ``action``.
      action: (..., A) pre-tanh actions.
      integrator: one of ``SAMPLER_INTEGRATORS`` ("euler", "midpoint", "rk4").
      num_steps: the sampler's number of steps (>= 1).
      source_std: the std of the source noise in action units (the agent's
        ``flow_noise_scale``); a positive float or scalar array.
      newton_iterations, tolerance: the inversion's iterations and convergence test.
      return_info: also return ``{"not_converged": () int32 count of NaN actions,
        "max_residual": () the largest relative residual of any inversion}``.

    Returns:
      (...,) log densities in nats of the actions in R^A (NaN where an inversion failed); with
      ``return_info``, ``(log_p, info)``.
    """
    if integrator not in SAMPLER_INTEGRATORS:
        raise ValueError(
            f"Unknown integrator {integrator!r} for the sampler's density; valid: "
            f"{SAMPLER_INTEGRATORS} (the stochastic DPPO chain has no deterministic inverse)."
        )
    batch_shape, act_dim, dtype, source_std, obs2, x_last = _rows(
        obs, action, num_steps, source_std
    )
    rows = x_last.shape[0]
    dt = jnp.asarray(1.0 / num_steps, dtype)
    times = step_times(num_steps, dtype)[::-1]  # the last step first: t = dt, 2 dt, ..., 1

    def invert_row(o: Array, y: Array, t: Array) -> tuple[Array, Array, Array, Array]:
        step = _row_step(integrator, velocity_fn, params, o, t, dt)
        # Newton's iterations run on constants (no gradient is taped through them); one more
        # Newton step from their solution carries the gradient, which is then the implicit
        # function theorem's (dx/dy = J^-1, dx/dparams = -J^-1 dF/dparams at F(x) = y), so
        # backpropagation goes through one step instead of every iteration.
        frozen = _row_step(integrator, velocity_fn, lax.stop_gradient(params),
                           lax.stop_gradient(o), t, dt)  # fmt: skip
        y_const = lax.stop_gradient(y)
        v = velocity_fn(lax.stop_gradient(params), lax.stop_gradient(o)[None], y_const[None],
                        jnp.reshape(t, (1, 1)))[0]  # fmt: skip

        def newton(_: int, x: Array) -> Array:
            jac = jax.jacfwd(frozen)(x)
            return x - jnp.linalg.solve(jac, frozen(x) - y_const)

        x_star = lax.fori_loop(0, newton_iterations, newton, y_const + dt * v)
        jac_star = jax.jacfwd(frozen)(x_star)
        gap = step(x_star) - y
        x = x_star - jnp.linalg.solve(jac_star, gap)
        residual = jnp.max(jnp.abs(lax.stop_gradient(gap))) / (1.0 + jnp.max(jnp.abs(y_const)))
        logdet, orientation = _log_abs_det(jax.jacfwd(step)(x))
        ok = (residual <= tolerance) & orientation & jnp.all(jnp.isfinite(x))
        return x, logdet, ok, residual

    def body(carry, t):
        y, logdet_sum, ok, worst = carry
        x, logdet, ok_k, residual = jax.vmap(invert_row, in_axes=(0, 0, None))(obs2, y, t)
        return (x, logdet_sum + logdet, ok & ok_k, jnp.maximum(worst, residual)), None

    init = (x_last, jnp.zeros((rows,), dtype), jnp.ones((rows,), bool), jnp.zeros((rows,), dtype))
    (x1, logdet_sum, ok, worst), _ = lax.scan(body, init, times)
    log_p = _standard_normal_log_prob(x1) - logdet_sum - act_dim * jnp.log(source_std)
    log_p = jnp.where(ok, log_p, jnp.nan).reshape(batch_shape)
    chex.assert_shape(log_p, batch_shape)
    if not return_info:
        return log_p
    info = {"not_converged": jnp.sum(~ok).astype(jnp.int32), "max_residual": jnp.max(worst)}
    return log_p, info


def path_log_prob(
    velocity_fn: VelocityFn,
    params: Any,
    obs: Array,
    noise: Array,
    *,
    integrator: str = "euler",
    num_steps: int = 10,
    source_std: float | Array = 1.0,
) -> tuple[Array, Array]:
    """The discrete sampler's action from given source noise and its exact log density, with
    no inversion: the change of variables along the forward path,
    ``log p(a) = log N(x_1) - sum_k log |det dF_k/dx (x_k)| - A log(source_std)``.

    obs (..., obs_dim), noise x_1 (..., A) -> (pre-tanh action (..., A), log_p (...,)).
    Differentiable in ``params`` through the sampler: with ``noise ~ N(0, I)`` independent of
    the parameters, ``-mean(log_p)`` is a reparameterised estimate of the policy's entropy.
    Cost per action: ``num_steps`` Jacobians of A x A (A Jacobian-vector products each) on top
    of the sampling.
    """
    if integrator not in SAMPLER_INTEGRATORS:
        raise ValueError(f"Unknown integrator {integrator!r}; valid: {SAMPLER_INTEGRATORS}.")
    # The noise is already in the flow's units: the shared argument checks with unit scale.
    batch_shape, action_dim, dtype, _, obs2, x1 = _rows(obs, noise, num_steps, 1.0)
    rows = x1.shape[0]
    source_std = jnp.asarray(source_std, dtype)
    dt = jnp.asarray(1.0 / num_steps, dtype)

    def forward_row(o: Array, x: Array, t: Array) -> tuple[Array, Array]:
        step = _row_step(integrator, velocity_fn, params, o, t, dt)
        return step(x), jnp.linalg.slogdet(jax.jacfwd(step)(x))[1]

    def body(carry, t):
        x, logdet_sum = carry
        x_next, logdet = jax.vmap(forward_row, in_axes=(0, 0, None))(obs2, x, t)
        return (x_next, logdet_sum + logdet), None

    (x0, logdet_sum), _ = lax.scan(
        body, (x1, jnp.zeros((rows,), dtype)), step_times(num_steps, dtype)
    )
    log_p = _standard_normal_log_prob(x1) - logdet_sum - action_dim * jnp.log(source_std)
    return (x0 * source_std).reshape(noise.shape), log_p.reshape(batch_shape)


def sampled_log_prob(
    velocity_fn: VelocityFn,
    params: Any,
    obs: Array,
    key: Array,
    *,
    action_dim: int,
    integrator: str = "euler",
    num_steps: int = 10,
    source_std: float | Array = 1.0,
) -> tuple[Array, Array]:
    """Fresh pre-tanh actions from the discrete sampler and their exact log densities
    (:func:`path_log_prob` of ``x_1 ~ N(0, I)`` drawn from ``key``).

    obs (..., obs_dim) -> (action (..., A), log_p (...,)).
    """
    obs = jnp.asarray(obs)
    dtype = jnp.result_type(obs.dtype, jnp.float32)
    noise = jax.random.normal(key, (*obs.shape[:-1], action_dim), dtype)
    return path_log_prob(
        velocity_fn, params, obs, noise, integrator=integrator, num_steps=num_steps,
        source_std=source_std,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Surrogate vs exact ratio
# ---------------------------------------------------------------------------------------------


def _pearson(x: Array, y: Array) -> Array:
    """Pearson correlation of two same-shape arrays over all elements (NaN if one is constant)."""
    x, y = x.ravel(), y.ravel()
    xc, yc = x - jnp.mean(x), y - jnp.mean(y)
    return jnp.sum(xc * yc) / jnp.sqrt(jnp.sum(jnp.square(xc)) * jnp.sum(jnp.square(yc)))


def ppo_clipped(log_ratio: Array, advantages: Array, clip_epsilon: float | Array) -> Array:
    """Where PPO's clipped surrogate has zero gradient (the sample is "clipped"), elementwise.

    clipped = (A > 0 and r > 1 + e) or (A < 0 and r < 1 - e),  r = exp(log_ratio).

    log_ratio (...) and advantages broadcastable to it -> (...) bool.
    """
    r = jnp.exp(log_ratio)
    return ((advantages > 0) & (r > 1.0 + clip_epsilon)) | (
        (advantages < 0) & (r < 1.0 - clip_epsilon)
    )


def _compare(surrogate: Array, exact: Array, advantages: Array, clip_epsilon: Any) -> dict:
    """Diagnostics of one surrogate form; all arguments of one broadcast shape."""
    clip_s = ppo_clipped(surrogate, advantages, clip_epsilon)
    clip_e = ppo_clipped(exact, advantages, clip_epsilon)
    return {
        "corr": _pearson(surrogate, exact),
        "sign_agreement": jnp.mean((jnp.sign(surrogate) == jnp.sign(exact)).astype(jnp.float32)),
        "clip_agreement": jnp.mean((clip_s == clip_e).astype(jnp.float32)),
        "clip_fraction": jnp.mean(clip_s.astype(jnp.float32)),
        "bias": jnp.mean(surrogate - exact),
        "rmse": jnp.sqrt(jnp.mean(jnp.square(surrogate - exact))),
    }


def ratio_fidelity(
    pair_log_ratio: Array,
    exact_log_ratio: Array,
    advantages: Array,
    *,
    clip_epsilon: float | Array,
) -> dict[str, Array]:
    """How well FPO's surrogate log-ratios track the exact log-ratio ``log pi_new - log pi_old``.

    Two surrogate forms are compared with the exact log-ratio of the same action:

    * ``mean/...``: FPO's paper ratio, ``mean_i (l_old_i - l_new_i)`` (..., one per action);
    * ``per_sample/...``: FPO++'s per-pair ratios ``l_old_i - l_new_i`` (..., N), each compared
      with its action's exact log-ratio (and advantage).

    For each form (scalars, over all elements):

    * ``corr``: Pearson correlation of surrogate and exact log-ratios (NaN if either is constant);
    * ``sign_agreement``: fraction where both log-ratios have the same sign (did the update make
      the action more or less likely);
    * ``clip_agreement``: fraction where PPO's clip decision (:func:`ppo_clipped`: clipped iff
      A > 0 and r > 1 + e, or A < 0 and r < 1 - e) is the same under both ratios;
    * ``clip_fraction``: fraction clipped under the surrogate (``exact/clip_fraction``: under the
      exact ratio);
    * ``bias``: mean of surrogate minus exact log-ratio; ``rmse``: root mean square of it.

    Args:
      pair_log_ratio: (..., N) per-pair surrogate log-ratios ``l_old_i - l_new_i``.
      exact_log_ratio: (...,) exact ``log pi_new(a|s) - log pi_old(a|s)``.
      advantages: (...,) the advantage of each action (only its sign matters).
      clip_epsilon: PPO's e.

    Returns:
      dict of scalar float32 arrays, keys ``mean/<name>``, ``per_sample/<name>``,
      ``exact/clip_fraction``.
    """
    if jnp.ndim(pair_log_ratio) < 1:
        raise ValueError(
            f"pair_log_ratio must have shape (..., N), got {jnp.shape(pair_log_ratio)}."
        )
    chex.assert_shape(exact_log_ratio, pair_log_ratio.shape[:-1])
    chex.assert_equal_shape([exact_log_ratio, advantages])
    mean_form = jnp.mean(pair_log_ratio, axis=-1)
    out = {
        f"mean/{k}": v
        for k, v in _compare(mean_form, exact_log_ratio, advantages, clip_epsilon).items()
    }
    shape = pair_log_ratio.shape
    per = _compare(
        pair_log_ratio,
        jnp.broadcast_to(exact_log_ratio[..., None], shape),
        jnp.broadcast_to(advantages[..., None], shape),
        clip_epsilon,
    )
    out.update({f"per_sample/{k}": v for k, v in per.items()})
    clip_exact = ppo_clipped(exact_log_ratio, advantages, clip_epsilon)
    out["exact/clip_fraction"] = jnp.mean(clip_exact.astype(jnp.float32))
    return out


def fpo_log_ratios(
    agent: Any,
    old_params: Any,
    new_params: Any,
    obs: Array,
    raw_action: Array,
    extras: dict[str, Array],
    *,
    density: str = "sampler",
    num_steps: int = DEFAULT_NUM_STEPS,
    integrator: str = "rk4",
) -> tuple[Array, Array]:
    """FPO's per-pair surrogate log-ratios and the exact log-ratio of a batch.

    The surrogate is what :func:`fpo_jax.loss.fpo_objective` computes before any clamp: the
    pairs stored at rollout time (``extras``: ``eps`` and ``t``, or ``pair_key``) and their old
    CFM losses, against :func:`fpo_jax.loss.cfm_loss` under ``new_params`` on the action in the
    flow's own space (``agent.from_raw_action``), with the agent's loss weighting. The exact
    log-ratio is the log density of the raw (pre-tanh) action under the new minus the old
    parameters, with ``source_std = flow_noise_scale`` (the scale cancels in the difference but
    is kept so each term is a true log density): with ``density="sampler"`` (default) the
    density of the discrete sampler the agent acts with (:func:`sampler_log_prob` with the
    agent's ``integrator`` and ``flow_steps``), the distribution the actions were drawn from;
    with ``density="ode"`` the probability-flow ODE's (:func:`flow_log_prob` with
    ``num_steps`` steps of ``integrator``), which the sampler only approximates.

    Args:
      agent: an :class:`fpo_jax.agents.FPOAgent` (its ``velocity_fn``, ``config`` and
        ``from_raw_action`` are used).
      old_params, new_params: the agent's policy parameters (``state.params["policy"]``) that
        acted (and stored ``old_cfm_loss``) and after the update.
      obs: (..., obs_dim) observations as the policy saw them (normalised).
      raw_action: (..., A) pre-tanh actions.
      extras: the agent's stored extras: ``old_cfm_loss`` (..., N) and ``eps`` (..., N, A),
        ``t`` (..., N, 1), or ``pair_key`` (..., 2).

    Returns:
      (pair_log_ratio (..., N) = l_old_i - l_new_i, exact_log_ratio (...,)).
    """
    c = agent.config
    if "pair_key" in extras:
        t, eps = agent.pairs_from_keys(extras["pair_key"])
    else:
        t, eps = extras["t"], extras["eps"]
    new_loss = loss.cfm_loss(
        agent.velocity_fn,
        new_params,
        obs,
        agent.from_raw_action(raw_action),
        eps,
        t,
        weighting=agent.settings.cfm_weighting,
        reduction=agent.settings.cfm_loss_reduction,
    )
    pair_log_ratio = loss.fpo_log_ratio(extras["old_cfm_loss"], new_loss, ratio="per_sample")
    if density == "sampler":
        log_prob = lambda p: sampler_log_prob(
            agent.velocity_fn, p, obs, raw_action, integrator=c.integrator,
            num_steps=c.flow_steps, source_std=c.flow_noise_scale,
        )  # fmt: skip
    elif density == "ode":
        log_prob = lambda p: flow_log_prob(
            agent.velocity_fn, p, obs, raw_action, num_steps=num_steps, integrator=integrator,
            source_std=c.flow_noise_scale,
        )  # fmt: skip
    else:
        raise ValueError(f"density must be 'sampler' or 'ode', got {density!r}.")
    exact = log_prob(new_params) - log_prob(old_params)
    chex.assert_shape(pair_log_ratio, (*raw_action.shape[:-1], eps.shape[-2]))
    return pair_log_ratio, exact
