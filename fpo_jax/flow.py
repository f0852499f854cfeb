"""Flow-matching primitives: time embedding, CFM pairs, interpolant, and ODE/SDE samplers.

Convention (the authors' JAX code): flow time t in [0, 1], **t = 1 is noise, t = 0 is the action**.

    x_t = t * eps + (1 - t) * a,        u = dx_t/dt = eps - a.

Sampling integrates dx/dt = v(obs, x, t) from t = 1 (x_1 ~ N(0, I), or x_1 = 0 for zero-noise
sampling) down to t = 0 with a uniform step dt = 1 / num_steps:  x_{t - dt} = x_t - dt * v(x_t, t)
for Euler, and the matching higher-order updates for midpoint and RK4.

A velocity function has the signature

    velocity_fn(params, obs, x_t, t) -> v,   obs: (..., obs_dim), x_t: (..., A), t: (..., 1),
                                             v: (..., A).

By default all three inputs arrive with the same leading dims. A velocity function that sets the
attribute ``broadcasts_obs = True`` (``fpo_jax.networks.velocity_fn_from_module`` does for
``VelocityMLP``) promises to broadcast leading dims itself; it may then receive obs with size-1
dims where x_t has N pairs, e.g. obs (B, 1, obs_dim) with x_t (B, N, A), so that work on the
observation is done once per observation, not once per pair (see ``expand_obs``).

Everything here is pure, free of Flax, and works under ``jit`` and ``vmap`` with any leading dims.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, get_args

import chex
import jax
import jax.numpy as jnp
from jax import lax

from fpo_jax.config import Integrator, NoiseKind, TimeKind

Array = jax.Array
VelocityFn = Callable[[Any, Array, Array, Array], Array]
StepFn = Callable[[VelocityFn, Any, Array, Array, Array, Any], Array]

# The choices are owned by fpo_jax.config (TrainConfig's fields are typed with them); the
# tuples check arguments here.
TIME_KINDS: tuple[str, ...] = get_args(TimeKind)
INTEGRATORS: tuple[str, ...] = get_args(Integrator)
NOISE_KINDS: tuple[str, ...] = get_args(NoiseKind)


# ---------------------------------------------------------------------------------------------
# Time embedding and CFM pairs
# ---------------------------------------------------------------------------------------------


def timestep_embedding(t: Array, num_frequencies: int = 4) -> Array:
    """Sinusoidal embedding of the flow time.

    emb(t) = [cos(t * 2^0), ..., cos(t * 2^(F-1)), sin(t * 2^0), ..., sin(t * 2^(F-1))]

    Args:
      t: (..., 1) flow times.
      num_frequencies: F; the paper uses F = 4 (8 dims).

    Returns:
      (..., 2 * F) embedding.
    """
    t = jnp.asarray(t)
    t = t.astype(jnp.result_type(t.dtype, jnp.float32))
    freqs = 2.0 ** jnp.arange(num_frequencies, dtype=t.dtype)  # (F,)
    angles = t * freqs  # (..., 1) * (F,) -> (..., F)
    return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)


def _as_shape(shape: int | Sequence[int]) -> tuple[int, ...]:
    return (shape,) if isinstance(shape, int) else tuple(shape)


# XLA compiles a rank-1 threefry draw several times faster than a rank-3+ one (about 0.4 s vs
# 1.5 s on CPU), so draws are made flat and reshaped. Under JAX's default partitionable threefry
# the numbers are identical to drawing the shape directly.


def _normal(key: Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> Array:
    """Standard normal draws of the given shape."""
    return jax.random.normal(key, (math.prod(shape),), dtype=dtype).reshape(shape)


def _uniform(key: Array, shape: tuple[int, ...]) -> Array:
    """U(0, 1) draws of the given shape."""
    return jax.random.uniform(key, (math.prod(shape),)).reshape(shape)


# FPO++'s interval for the probabilities fed to the Beta inverse CDF: it keeps the flow times
# away from both ends (see sample_flow_times, kind="beta").
BETA_PROBABILITY_RANGE = (0.005, 0.995)


def _randint(key: Array, shape: tuple[int, ...], low: int, high: int) -> Array:
    """Uniform integers in [low, high) of the given shape."""
    return jax.random.randint(key, (math.prod(shape),), low, high).reshape(shape)


def sample_flow_times(
    key: Array,
    shape: int | Sequence[int],
    *,
    kind: str = "grid",
    num_grid_steps: int = 10,
    beta: Array | float = 1.0,
) -> Array:
    """Draw flow times for CFM pairs.

    kind="grid":    t = k / K with k ~ Uniform{1, ..., K}  (K = num_grid_steps; {0.1, ..., 1.0}
                    for K = 10, the sampling grid of the paper code; t = 0 is never drawn).
    kind="uniform": t ~ U(0, 1).
    kind="beta":    FPO++'s inverse-CDF draw of Beta(1, beta), mapped to our time direction.
                    FPO++ writes the interpolant as ``tau a + (1 - tau) eps`` (tau = 1 is the
                    action), so ``tau = 1 - t``. They draw ``u ~ U(lo, hi)`` with
                    ``(lo, hi) = BETA_PROBABILITY_RANGE = (0.005, 0.995)`` and set
                    ``tau = F^-1(u) = 1 - (1 - u)^(1 / beta)``, the inverse CDF of Beta(1, beta)
                    (CDF ``F(tau) = 1 - (1 - tau)^beta``). Hence, in our convention,

                        t = 1 - tau = (1 - u)^(1 / beta),  u ~ U(lo, hi),

                    i.e. t ~ Beta(beta, 1) (density ``beta t^(beta - 1)``) truncated to
                    ``[(1 - hi)^(1/beta), (1 - lo)^(1/beta)]``; for beta = 1, t ~ U(0.005, 0.995).
                    beta > 1 puts more pairs near the noise end (their tau -> 0, our t -> 1).

    Args:
      key: PRNG key.
      shape: leading shape S of the draws.
      kind: one of ``TIME_KINDS``.
      num_grid_steps: K, used by kind="grid".
      beta: > 0, used by kind="beta"; may be a traced value (a swept hyperparameter).

    Returns:
      (*S, 1) flow times.
    """
    if kind not in TIME_KINDS:
        raise ValueError(f"Unknown flow-time kind {kind!r}; valid kinds are {TIME_KINDS}.")
    shape = (*_as_shape(shape), 1)
    if kind == "grid":
        if num_grid_steps < 1:
            raise ValueError(f"num_grid_steps must be >= 1, got {num_grid_steps}.")
        k = _randint(key, shape, 1, num_grid_steps + 1)
        return k.astype(jnp.float32) / num_grid_steps
    if kind == "beta":
        if isinstance(beta, int | float) and not beta > 0:
            raise ValueError(f"beta must be > 0, got {beta!r}.")
        lo, hi = BETA_PROBABILITY_RANGE
        u = lo + (hi - lo) * _uniform(key, shape)
        return jnp.power(1.0 - u, 1.0 / beta)
    return _uniform(key, shape)


def perturb_actions(key: Array, actions: Array, std: Array | float) -> Array:
    """FPO++'s action perturbation: ``a + std * z``, ``z ~ N(0, I)``; ``(..., A) -> (..., A)``.

    The perturbed action is the one executed *and* stored, so the CFM losses (old and new) and
    hence the ratio are computed on it. ``std`` may be a traced value.
    """
    return actions + std * _normal(key, tuple(actions.shape), actions.dtype)


def draw_cfm_pairs(
    key: Array,
    batch_shape: int | Sequence[int],
    num_pairs: int,
    action_dim: int,
    *,
    t_kind: str = "grid",
    num_grid_steps: int = 10,
    t_beta: Array | float = 1.0,
) -> tuple[Array, Array]:
    """Draw N Monte-Carlo pairs (t_i, eps_i) per action for the CFM loss.

    t_i ~ sample_flow_times(kind=t_kind, beta=t_beta),  eps_i ~ N(0, I_A).

    Args:
      key: PRNG key (split into one key for t and one for eps).
      batch_shape: leading shape B of the actions.
      num_pairs: N.
      action_dim: A.

    Returns:
      t: (*B, N, 1), eps: (*B, N, A).
    """
    key_t, key_eps = jax.random.split(key)
    shape = (*_as_shape(batch_shape), num_pairs)
    t = sample_flow_times(key_t, shape, kind=t_kind, num_grid_steps=num_grid_steps, beta=t_beta)
    eps = _normal(key_eps, (*shape, action_dim))
    return t, eps


def interpolate(actions: Array, eps: Array, t: Array) -> Array:
    """Linear interpolant between action (t = 0) and noise (t = 1).

    x_t = t * eps + (1 - t) * a

    Plain broadcasting: with an extra pair axis the caller expands dims,
    e.g. ``interpolate(actions[..., None, :], eps, t)`` for actions (..., A), eps (..., N, A),
    t (..., N, 1).

    Args:
      actions: (..., A), broadcastable against eps.
      eps: (..., A) noise.
      t: (..., 1) flow times.

    Returns:
      x_t: broadcast shape of the inputs, (..., A).
    """
    return t * eps + (1.0 - t) * actions


def target_velocity(actions: Array, eps: Array) -> Array:
    """Conditional CFM target velocity u = dx_t/dt = eps - a.

    Args:
      actions: (..., A), broadcastable against eps (expand a pair axis as for ``interpolate``).
      eps: (..., A).

    Returns:
      u: (..., A).
    """
    return eps - actions


def expand_obs(velocity_fn: VelocityFn, obs: Array, num: int) -> Array:
    """Observations to evaluate ``num`` inputs per observation (N pairs, K chain steps) with.

    obs (..., obs_dim) -> (..., 1, obs_dim) if ``velocity_fn.broadcasts_obs`` is true (the
    function broadcasts it against x_t (..., num, A) itself, after its own per-observation work),
    else the explicit broadcast (..., num, obs_dim) that any velocity function accepts.
    """
    obs = obs[..., None, :]
    if getattr(velocity_fn, "broadcasts_obs", False):
        return obs
    return jnp.broadcast_to(obs, (*obs.shape[:-2], num, obs.shape[-1]))


# ---------------------------------------------------------------------------------------------
# Single integrator steps: x at time t -> x at time t - dt
# ---------------------------------------------------------------------------------------------


def euler_step(
    velocity_fn: VelocityFn, params: Any, obs: Array, x: Array, t: Array, dt: Array | float
) -> Array:
    """One Euler step from t down to t - dt.

    x_{t-dt} = x_t - dt * v(x_t, t)

    Args:
      velocity_fn: (params, obs, x_t, t) -> v.
      obs: (..., obs_dim).
      x: (..., A) state at time t.
      t: (..., 1) current time.
      dt: scalar step size (> 0).

    Returns:
      (..., A) state at time t - dt.
    """
    return x - dt * velocity_fn(params, obs, x, t)


def midpoint_step(
    velocity_fn: VelocityFn, params: Any, obs: Array, x: Array, t: Array, dt: Array | float
) -> Array:
    """One explicit-midpoint (RK2) step from t down to t - dt.

    x_mid = x_t - dt/2 * v(x_t, t);   x_{t-dt} = x_t - dt * v(x_mid, t - dt/2)

    Shapes as in ``euler_step``.
    """
    half = 0.5 * dt
    x_mid = x - half * velocity_fn(params, obs, x, t)
    return x - dt * velocity_fn(params, obs, x_mid, t - half)


def rk4_step(
    velocity_fn: VelocityFn, params: Any, obs: Array, x: Array, t: Array, dt: Array | float
) -> Array:
    """One classical Runge-Kutta (RK4) step from t down to t - dt.

    k1 = v(x, t)                 k2 = v(x - dt/2 k1, t - dt/2)
    k3 = v(x - dt/2 k2, t - dt/2)  k4 = v(x - dt k3, t - dt)
    x_{t-dt} = x - dt/6 (k1 + 2 k2 + 2 k3 + k4)

    Shapes as in ``euler_step``.
    """
    half = 0.5 * dt
    k1 = velocity_fn(params, obs, x, t)
    k2 = velocity_fn(params, obs, x - half * k1, t - half)
    k3 = velocity_fn(params, obs, x - half * k2, t - half)
    k4 = velocity_fn(params, obs, x - dt * k3, t - dt)
    return x - (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


# The DPPO baseline's step is x_{t-dt} = euler_step(...) + sigma * z, so its mean is the Euler
# step and its log-density is fpo_jax.loss.gaussian_log_prob(x_next, mean, sigma).
stochastic_step_mean = euler_step

_MEAN_STEPS: dict[str, StepFn] = {
    "euler": euler_step,
    "midpoint": midpoint_step,
    "rk4": rk4_step,
    "stochastic": stochastic_step_mean,
}


# ---------------------------------------------------------------------------------------------
# Sampling entry point
# ---------------------------------------------------------------------------------------------


def step_times(num_steps: int, dtype: Any = jnp.float32) -> Array:
    """Times at which each of the num_steps integration steps starts.

    t_k = 1 - k / num_steps for k = 0..num_steps-1, i.e. (1, 1 - dt, ..., dt).

    Returns:
      (num_steps,) times; step k maps x at t_k to x at t_k - dt.
    """
    # Computed directly (not by repeated subtraction) so the last step lands exactly on t = 0.
    return 1.0 - jnp.arange(num_steps, dtype=dtype) / num_steps


def _validate_sample_args(integrator: str, noise: str, num_steps: int) -> None:
    if integrator not in INTEGRATORS:
        raise ValueError(f"Unknown integrator {integrator!r}; valid integrators are {INTEGRATORS}.")
    if noise not in NOISE_KINDS:
        raise ValueError(f"Unknown noise {noise!r}; valid noise kinds are {NOISE_KINDS}.")
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a Python int >= 1, got {num_steps!r}.")


def sample(
    velocity_fn: VelocityFn,
    params: Any,
    obs: Array,
    key: Array | None,
    *,
    action_dim: int,
    integrator: str = "euler",
    num_steps: int = 10,
    noise: str = "random",
    sigma: Array | float = 0.0,
    return_path: bool = False,
) -> Array | tuple[Array, Array]:
    """Sample actions by integrating the flow from t = 1 (noise) down to t = 0 (action).

    x_1 ~ N(0, I) (noise="random") or x_1 = 0 (noise="zero", FPO++ zero sampling), then
    num_steps steps of size dt = 1 / num_steps with the chosen integrator:
      euler / midpoint / rk4:  deterministic ODE steps (``euler_step`` etc.);
      stochastic:              x_{t-dt} = x_t - dt * v(x_t, t) + sigma * z,  z ~ N(0, I)
                               (DPPO baseline; sigma is the per-step std, not scaled by dt).

    Args:
      velocity_fn: (params, obs, x_t, t) -> v.
      params: parameters passed through to velocity_fn.
      obs: (..., obs_dim) observations; the leading dims B are the batch of actions sampled.
      key: PRNG key; may be None only when noise="zero" and integrator is not "stochastic".
      action_dim: A.
      integrator: one of ``INTEGRATORS``.
      num_steps: number of integration steps (>= 1).
      noise: one of ``NOISE_KINDS``.
      sigma: per-step noise std of the "stochastic" integrator (ignored otherwise).
      return_path: also return every intermediate state.

    Returns:
      action: (*B, A) sample at t = 0; with return_path=True, (action, path) where
      path: (*B, num_steps + 1, A) holds x at t = 1, 1 - dt, ..., 0.
    """
    _validate_sample_args(integrator, noise, num_steps)
    stochastic = integrator == "stochastic"
    if key is None and (noise == "random" or stochastic):
        raise ValueError(f"A PRNG key is needed for noise={noise!r}, integrator={integrator!r}.")
    if key is None:
        key = jax.random.key(0)  # never consumed: every draw below is skipped

    obs = jnp.asarray(obs)
    batch_shape = obs.shape[:-1]
    dtype = jnp.result_type(obs.dtype, jnp.float32)
    x_shape = (*batch_shape, action_dim)
    key_init, key_steps = jax.random.split(key)

    if noise == "random":
        x1 = _normal(key_init, x_shape, dtype)
    else:
        x1 = jnp.zeros(x_shape, dtype=dtype)

    step_fn = _MEAN_STEPS[integrator]
    dt = jnp.asarray(1.0 / num_steps, dtype=dtype)
    times = step_times(num_steps, dtype)  # (num_steps,)
    step_keys = jax.random.split(key_steps, num_steps)

    def body(x, inputs):
        t_scalar, step_key = inputs
        t = jnp.full((*batch_shape, 1), t_scalar, dtype=dtype)
        x_next = step_fn(velocity_fn, params, obs, x, t, dt)
        # At trace time: a velocity of another shape would broadcast x into a wrong batch.
        chex.assert_shape(x_next, x_shape, custom_message="sample: velocity_fn's output vs x_t")
        if stochastic:
            x_next = x_next + sigma * _normal(step_key, x_shape, dtype)
        return x_next, x_next

    action, xs = lax.scan(body, x1, (times, step_keys))  # xs: (num_steps, *B, A)
    if not return_path:
        return action
    path = jnp.concatenate([x1[None], xs], axis=0)  # (num_steps + 1, *B, A)
    return action, jnp.moveaxis(path, 0, -2)
