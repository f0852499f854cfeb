"""Pure objectives: FPO, Gaussian PPO, DPPO, value loss and GAE.

Everything here is a pure function of arrays (plus, for the CFM loss, a velocity function and its
parameters), so it can be jitted, vmapped and differentiated freely. Leading batch dims ``...``
are free unless a docstring says otherwise.

Flow convention (that of the FPO paper's code: "Flow Matching Policy Gradients", McAllister et
al. 2025, arXiv 2507.21053): flow time ``t`` in [0, 1], **t = 1 is noise, t = 0 is the action**;
interpolant ``x_t = t * eps + (1 - t) * a`` and target velocity ``u = eps - a``. FPO++ options
(per-sample ratio, ASPO, clamps) follow "Flow Policy Gradients for Robot Control" (Yi et al.
2026, arXiv 2602.02481).

The trust-region objectives are written as *losses* (to minimise): the negative of the surrogate
objective that PPO maximises.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, Literal, get_args

import chex
import jax
import jax.numpy as jnp

from fpo_jax.config import CFMReduction, Ratio, TrustRegion, Weighting
from fpo_jax.flow import VelocityFn, expand_obs

Array = jax.Array

# The choices are owned by fpo_jax.config (TrainConfig's fields are typed with them).
WEIGHTINGS: tuple[str, ...] = get_args(Weighting)
RATIOS: tuple[str, ...] = get_args(Ratio)
TRUST_REGIONS: tuple[str, ...] = get_args(TrustRegion)
CFM_REDUCTIONS: tuple[str, ...] = get_args(CFMReduction)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {choices}.")


# Input checks. Shapes are static under jit/vmap, so these run once at trace time and cost
# nothing in the compiled program; they turn silent broadcasting bugs (e.g. advantages (B, 1)
# against ratios (B,) giving a (B, B) objective) into one clear sentence.


def _fmt_shape(dims: Sequence[int | str]) -> str:
    """(5, 'N', 2) -> "(5, N, 2)"; (5,) -> "(5,)"."""
    inner = ", ".join(str(d) for d in dims)
    return f"({inner},)" if len(dims) == 1 else f"({inner})"


def _check_shape(
    fn: str, name: str, x: Array, expected: Sequence[int | str], meaning: str, reference: str
) -> None:
    """Raise a ValueError unless ``x.shape`` equals ``expected`` (strings are free dims)."""
    shape = tuple(jnp.shape(x))
    ok = len(shape) == len(expected) and all(
        isinstance(e, str) or s == e for s, e in zip(shape, expected, strict=True)
    )
    if not ok:
        raise ValueError(
            f"{fn}: {name} has shape {_fmt_shape(shape)}, expected {_fmt_shape(expected)} = "
            f"{meaning} ({reference})."
        )


def _check_min_ndim(fn: str, name: str, x: Array, ndim: int, meaning: str) -> None:
    if jnp.ndim(x) < ndim:
        raise ValueError(
            f"{fn}: {name} has shape {_fmt_shape(jnp.shape(x))}, expected {meaning} "
            f"(at least {ndim} dims)."
        )


def _check_positive(fn: str, name: str, value: Any) -> None:
    """Reject ``value <= 0`` when it is a concrete Python/NumPy number.

    A traced value (a hyperparameter carried in the training state) cannot be inspected at trace
    time and is left alone.
    """
    if isinstance(value, numbers.Real) and not value > 0:  # `not >` also catches NaN
        raise ValueError(f"{fn}: {name} must be > 0, got {value!r}.")


def _check_pairs(fn: str, obs: Array, actions: Array, eps: Array, t: Array) -> tuple[int, ...]:
    """Check obs (*B, obs_dim), actions (*B, A), eps (*B, N, A), t (*B, N, 1); return B.

    ``actions`` fixes the batch shape B and A, ``eps`` the number of pairs N.
    """
    _check_min_ndim(fn, "actions", actions, 1, "(..., A)")
    batch, act_dim = tuple(jnp.shape(actions)[:-1]), jnp.shape(actions)[-1]
    ref = f"batch shape and A from actions {_fmt_shape(jnp.shape(actions))}"
    _check_shape(fn, "eps", eps, (*batch, "N", act_dim), "(*batch, N, A)", ref)
    num_pairs = jnp.shape(eps)[-2]
    ref_n = f"{ref}, N from eps {_fmt_shape(jnp.shape(eps))}"
    _check_shape(fn, "t", t, (*batch, num_pairs, 1), "(*batch, N, 1)", ref_n)
    _check_shape(fn, "obs", obs, (*batch, "obs_dim"), "(*batch, obs_dim)", ref)
    return batch


# --------------------------------------------------------------------------------------------
# Conditional flow matching
# --------------------------------------------------------------------------------------------


def cfm_loss(
    velocity_fn: VelocityFn,
    params: Any,
    obs: Array,
    actions: Array,
    eps: Array,
    t: Array,
    *,
    weighting: Literal["eps", "velocity"] = "eps",
    reduction: Literal["mean", "sqrt"] = "mean",
) -> Array:
    """Per-pair conditional flow matching loss.

    For every (t_i, eps_i) pair, with ``x_t = t_i * eps_i + (1 - t_i) * a`` and ``u = eps_i - a``:

    * ``weighting="velocity"`` ("u-MSE"): ``l_i = mean_d (v_i - u)^2``
    * ``weighting="eps"`` ("eps-MSE", the paper default): the output is read as predicting the
      noise through ``eps_hat = x_t + (1 - t) v``, and
      ``l_i = mean_d (eps_i - eps_hat)^2 = (1 - t_i)^2 mean_d (v_i - u)^2``.

    where ``v_i = velocity_fn(params, obs, x_t, t_i)`` and ``mean_d`` averages over action dims
    (``reduction="mean"``, the FPO paper). ``reduction="sqrt"`` (FPO++) replaces ``mean_d`` by
    ``sum_d / sqrt(A)`` (see :func:`reduce_action_dims`).

    Args:
      velocity_fn: ``(params, obs (..., N, obs_dim), x_t (..., N, act_dim), t (..., N, 1))
        -> (..., N, act_dim)``. If ``velocity_fn.broadcasts_obs`` is true it receives obs as
        ``(..., 1, obs_dim)`` instead and must broadcast it against ``x_t`` itself (see
        :func:`fpo_jax.flow.expand_obs`).
      params: parameters passed through to ``velocity_fn``.
      obs: ``(..., obs_dim)``, same leading dims as ``actions``; given one pair axis (of size 1
        or N, see ``velocity_fn``) before calling ``velocity_fn``.
      actions: ``(..., act_dim)``, the (pre-squash) actions the losses are about; their leading
        dims ``...`` are the batch shape every other argument must share.
      eps: ``(..., N, act_dim)`` noise of each pair.
      t: ``(..., N, 1)`` flow time of each pair (note the trailing 1).
      weighting: ``"eps"`` or ``"velocity"``.
      reduction: ``"mean"`` or ``"sqrt"`` over the action dims.

    Returns:
      ``(..., N)`` loss of each pair.

    Raises:
      ValueError: if the shapes of ``obs``, ``eps``, ``t`` or of the velocity disagree with
        ``actions`` (checked at trace time; free under ``jit``).
    """
    _check_choice("weighting", weighting, WEIGHTINGS)
    _check_choice("reduction", reduction, CFM_REDUCTIONS)
    _check_pairs("cfm_loss", obs, actions, eps, t)
    a = actions[..., None, :]  # (..., 1, act_dim), broadcast against the pair axis
    x_t = t * eps + (1.0 - t) * a
    # (..., 1, obs_dim) for a network that broadcasts it itself (VelocityMLP projects each obs
    # once for its N pairs), else (..., N, obs_dim).
    v = velocity_fn(params, expand_obs(velocity_fn, obs, eps.shape[-2]), x_t, t)
    # A network returning (..., N, 1) for A > 1 would otherwise broadcast silently.
    _check_shape(
        "cfm_loss",
        "the output of velocity_fn",
        v,
        eps.shape,
        "(*batch, N, A)",
        f"the shape of eps {_fmt_shape(eps.shape)}",
    )
    if weighting == "velocity":
        err = v - (eps - a)
    else:
        err = eps - (x_t + (1.0 - t) * v)
    return reduce_action_dims(jnp.square(err), reduction)


def reduce_action_dims(squared_error: Array, reduction: Literal["mean", "sqrt"] = "mean") -> Array:
    """Reduce per-dim squared errors ``(..., A) -> (..., )`` to one loss per pair.

    * ``"mean"`` (FPO paper): ``sum_d e_d / A``.
    * ``"sqrt"`` (FPO++): ``sum_d e_d / sqrt(A)``, i.e. ``sqrt(A)`` times the mean. For errors of
      unit variance per dim the loss then grows as ``sqrt(A)`` and its spread stays ``O(1)``
      instead of shrinking as ``1/sqrt(A)``, so the log-ratio ``l_old - l_new`` of a
      high-dimensional action is not squashed towards 0.
    """
    _check_choice("reduction", reduction, CFM_REDUCTIONS)
    _check_min_ndim("reduce_action_dims", "squared_error", squared_error, 1, "(..., A)")
    if reduction == "sqrt":
        return jnp.sum(squared_error, axis=-1) / math.sqrt(squared_error.shape[-1])
    return jnp.mean(squared_error, axis=-1)


def straight_through_clip(x: Array, lo: Array | float, hi: Array | float) -> Array:
    """``clip(x, lo, hi)`` in the forward pass, the identity's gradient in the backward pass.

    ``y = x + stop_gradient(clip(x, lo, hi) - x)``: ``y == clip(x, lo, hi)`` and
    ``dy/dx = 1`` everywhere, also where the clip is active (a plain clip has gradient 0 there).
    Elementwise; any shape.
    """
    return x + jax.lax.stop_gradient(jnp.clip(x, lo, hi) - x)


def clamp_negative_advantage_loss(
    new_cfm_loss: Array, advantages: Array, clamp: Array | float
) -> Array:
    """FPO++: bound the new CFM loss from above where the advantage is negative.

    ``l_i <- min(l_i, c)`` where ``A < 0``, unchanged where ``A >= 0``. A negative advantage asks
    for a lower ratio ``exp(l_old - l_new)``, i.e. a *higher* new loss; past ``c`` the clamp
    zeroes that gradient, so the network is not pushed arbitrarily far from the bad action.

    Args:
      new_cfm_loss: ``(..., N)``.
      advantages: ``(...)``, one per action.
      clamp: ``c > 0``; may be traced.

    Returns:
      ``(..., N)``.
    """
    fn = "clamp_negative_advantage_loss"
    _check_min_ndim(fn, "new_cfm_loss", new_cfm_loss, 1, "(..., N)")
    _check_shape(
        fn,
        "advantages",
        advantages,
        jnp.shape(new_cfm_loss)[:-1],
        "(*batch,), one per action",
        f"new_cfm_loss {_fmt_shape(jnp.shape(new_cfm_loss))}",
    )
    _check_positive(fn, "clamp", clamp)
    negative = (advantages < 0)[..., None]  # (..., 1) against (..., N)
    return jnp.where(negative, jnp.minimum(new_cfm_loss, clamp), new_cfm_loss)


# --------------------------------------------------------------------------------------------
# Trust regions on a likelihood ratio
# --------------------------------------------------------------------------------------------


def ppo_clip_objective(ratio: Array, advantages: Array, clip_epsilon: float) -> Array:
    """PPO's clipped surrogate, elementwise (to maximise).

    ``J = min(r A, clip(r, 1 - e, 1 + e) A)``

    Args:
      ratio: ``(...)`` likelihood ratios.
      advantages: broadcastable to ``ratio``.
      clip_epsilon: ``e``.

    Returns:
      ``(...)`` the per-element surrogate.
    """
    _check_positive("ppo_clip_objective", "clip_epsilon", clip_epsilon)
    clipped = jnp.clip(ratio, 1.0 - clip_epsilon, 1.0 + clip_epsilon)
    return jnp.minimum(ratio * advantages, clipped * advantages)


def aspo_objective(ratio: Array, advantages: Array, clip_epsilon: float) -> Array:
    """Asymmetric trust region of FPO++ (ASPO), elementwise (to maximise).

    PPO clip where ``A >= 0``; for ``A < 0`` the SPO objective
    ``J = r A - |A| / (2 e) * (r - 1)^2``, whose quadratic penalty keeps pulling the ratio back
    towards 1 instead of only zeroing its gradient outside ``[1 - e, 1 + e]``.

    Args:
      ratio: ``(...)`` likelihood ratios.
      advantages: broadcastable to ``ratio``.
      clip_epsilon: ``e``.

    Returns:
      ``(...)`` the per-element surrogate.
    """
    # e = 0 would divide by zero in the penalty (inf/nan losses).
    _check_positive("aspo_objective", "clip_epsilon", clip_epsilon)
    advantages = jnp.broadcast_to(
        advantages, jnp.broadcast_shapes(jnp.shape(ratio), jnp.shape(advantages))
    )
    spo = ratio * advantages - jnp.abs(advantages) / (2.0 * clip_epsilon) * jnp.square(ratio - 1.0)
    return jnp.where(advantages >= 0, ppo_clip_objective(ratio, advantages, clip_epsilon), spo)


def trust_region_objective(
    ratio: Array,
    advantages: Array,
    clip_epsilon: float,
    trust_region: Literal["ppo", "aspo"] = "ppo",
) -> Array:
    """Dispatch to :func:`ppo_clip_objective` or :func:`aspo_objective` (to maximise)."""
    _check_choice("trust_region", trust_region, TRUST_REGIONS)
    if trust_region == "aspo":
        return aspo_objective(ratio, advantages, clip_epsilon)
    return ppo_clip_objective(ratio, advantages, clip_epsilon)


def _ratio_metrics(ratio: Array, log_ratio: Array, clip_epsilon: float) -> dict[str, Array]:
    """Diagnostics shared by every ratio-based objective."""
    return {
        "ratio_mean": jnp.mean(ratio),
        "ratio_min": jnp.min(ratio),
        "ratio_max": jnp.max(ratio),
        "clip_fraction": jnp.mean((jnp.abs(ratio - 1.0) > clip_epsilon).astype(jnp.float32)),
        # k3 estimator of KL(old || new): E[(r - 1) - log r], >= 0 and low variance.
        "approx_kl": jnp.mean((ratio - 1.0) - log_ratio),
        # The spread of the log-ratios: widening over iterations is a collapse coming.
        "log_ratio_std": jnp.std(log_ratio),
    }


# --------------------------------------------------------------------------------------------
# FPO
# --------------------------------------------------------------------------------------------


def fpo_log_ratio(
    old_cfm_loss: Array,
    new_cfm_loss: Array,
    *,
    ratio: Literal["mean", "per_sample"] = "mean",
    cfm_loss_clamp: float | None = None,
    log_ratio_clamp: float | None = None,
    pair_log_ratio_clamp: float | None = None,
    log_ratio_straight_through: bool = False,
) -> Array:
    """Log of FPO's likelihood-ratio surrogate.

    * ``ratio="mean"`` (paper): ``log r = mean_i l_old_i - mean_i l_new_i``, shape ``(...)``.
    * ``ratio="per_sample"`` (FPO++): ``log r_i = l_old_i - l_new_i``, shape ``(..., N)``.

    FPO++'s safety clamps, both off by default: ``cfm_loss_clamp = c`` replaces each loss by
    ``min(l, c)`` before the difference, ``log_ratio_clamp = k`` clips the log-ratio to
    ``[-k, k]`` before the exponential. ``pair_log_ratio_clamp = p`` (off by default) clips each
    pair's difference ``l_old_i - l_new_i`` to ``[-p, p]`` before the pairs are averaged, as the
    FPO authors' GridWorld code does (``p = 3``, then ``k = 3`` on the mean).
    ``log_ratio_straight_through=True`` (FPO++) makes the ``k`` clamp straight-through
    (:func:`straight_through_clip`): the forward value is clipped (``exp`` cannot overflow) but
    the gradient is that of the unclipped log-ratio, so saturated pairs still learn. (FPO++
    bounds the log-ratio only from above, at 10; the symmetric clamp here differs from that
    only below ``-k``, i.e. for ratios under ``exp(-k)``.)

    Args:
      old_cfm_loss: ``(..., N)`` losses recorded at rollout time (treated as constants).
      new_cfm_loss: ``(..., N)`` losses under the current parameters.

    Returns:
      ``(...)`` for ``"mean"``, ``(..., N)`` for ``"per_sample"``.
    """
    _check_choice("ratio", ratio, RATIOS)
    fn = "fpo_log_ratio"
    _check_min_ndim(fn, "new_cfm_loss", new_cfm_loss, 1, "(..., N)")
    _check_shape(
        fn,
        "old_cfm_loss",
        old_cfm_loss,
        jnp.shape(new_cfm_loss),
        "(*batch, N)",
        f"the shape of new_cfm_loss {_fmt_shape(jnp.shape(new_cfm_loss))}",
    )
    if cfm_loss_clamp is not None:
        _check_positive(fn, "cfm_loss_clamp", cfm_loss_clamp)
    if log_ratio_clamp is not None:
        _check_positive(fn, "log_ratio_clamp", log_ratio_clamp)
    if pair_log_ratio_clamp is not None:
        _check_positive(fn, "pair_log_ratio_clamp", pair_log_ratio_clamp)
    old = jax.lax.stop_gradient(old_cfm_loss)
    new = new_cfm_loss
    if cfm_loss_clamp is not None:
        old = jnp.minimum(old, cfm_loss_clamp)
        new = jnp.minimum(new, cfm_loss_clamp)
    if pair_log_ratio_clamp is not None:
        log_r = jnp.clip(old - new, -pair_log_ratio_clamp, pair_log_ratio_clamp)
        log_r = jnp.mean(log_r, axis=-1) if ratio == "mean" else log_r
    elif ratio == "mean":
        log_r = jnp.mean(old, axis=-1) - jnp.mean(new, axis=-1)
    else:
        log_r = old - new
    if log_ratio_clamp is not None:
        clip = straight_through_clip if log_ratio_straight_through else jnp.clip
        log_r = clip(log_r, -log_ratio_clamp, log_ratio_clamp)
    return log_r


def fpo_objective(
    velocity_fn: VelocityFn,
    params: Any,
    obs: Array,
    actions: Array,
    eps: Array,
    t: Array,
    old_cfm_loss: Array,
    advantages: Array,
    *,
    clip_epsilon: float = 0.05,
    ratio: Literal["mean", "per_sample"] = "mean",
    trust_region: Literal["ppo", "aspo"] = "ppo",
    weighting: Literal["eps", "velocity"] = "eps",
    cfm_loss_clamp: float | None = None,
    log_ratio_clamp: float | None = None,
    pair_log_ratio_clamp: float | None = None,
    cfm_loss_reduction: Literal["mean", "sqrt"] = "mean",
    negative_advantage_cfm_clamp: float | None = None,
    log_ratio_straight_through: bool = False,
) -> tuple[Array, dict[str, Array]]:
    """The FPO surrogate loss (to minimise) and its diagnostics.

    FPO replaces PPO's likelihood ratio by the ratio of exponentiated CFM losses measured on the
    same (t_i, eps_i) pairs before and after the update:

    ``r = exp(mean_i l_old_i - mean_i l_new_i)``  (``ratio="per_sample"``: one ``r_i`` per pair)

    ``loss = -mean( J(r, A) )`` with ``J`` PPO's clipped surrogate (``trust_region="ppo"``) or
    FPO++'s ASPO (``"aspo"``); per-sample ratios share their action's advantage and are averaged.

    Args:
      velocity_fn: ``(params, obs (..., N, obs_dim), x_t (..., N, A), t (..., N, 1))
        -> (..., N, A)``; bring your own network. With ``velocity_fn.broadcasts_obs`` true, obs
        arrives as ``(..., 1, obs_dim)`` (see :func:`cfm_loss`).
      params: current parameters (differentiated).
      obs: ``(..., obs_dim)`` observations (already normalised if the policy expects it).
      actions: ``(..., A)`` pre-squash actions taken at rollout time; their leading dims ``...``
        are the batch shape every other argument must share.
      eps: ``(..., N, A)`` noise of the pairs drawn at rollout time.
      t: ``(..., N, 1)`` flow times of the pairs drawn at rollout time.
      old_cfm_loss: ``(..., N)`` CFM losses of those pairs under the rollout parameters.
      advantages: ``(...)`` one advantage per action (not ``(..., 1)``), already normalised by
        the caller if desired.
      clip_epsilon: trust-region size ``e > 0`` (paper: 0.05); may be a traced value.
      ratio: ``"mean"`` (paper) or ``"per_sample"`` (FPO++).
      trust_region: ``"ppo"`` or ``"aspo"``.
      weighting: CFM loss weighting, see :func:`cfm_loss`.
      cfm_loss_clamp: optional upper clamp on each CFM loss before the difference.
      log_ratio_clamp: optional symmetric clamp on the log-ratio before ``exp``.
      pair_log_ratio_clamp: optional symmetric clamp on each pair's loss difference before the
        pairs are averaged (see :func:`fpo_log_ratio`).
      cfm_loss_reduction: ``"mean"`` (paper) or ``"sqrt"`` (FPO++) over action dims, see
        :func:`reduce_action_dims`; ``old_cfm_loss`` must have been computed with the same one.
      negative_advantage_cfm_clamp: optional FPO++ upper bound on the *new* CFM loss of actions
        with a negative advantage (:func:`clamp_negative_advantage_loss`), applied before
        ``cfm_loss_clamp``.
      log_ratio_straight_through: make ``log_ratio_clamp`` straight-through (FPO++).

    Returns:
      ``(loss, metrics)``: scalar loss; metrics ``ratio_mean/min/max``, ``clip_fraction``,
      ``approx_kl``, ``cfm_loss_new``, ``cfm_loss_old`` (scalars).

    Raises:
      ValueError: naming the argument and the shape it should have, if the shapes disagree
        (``actions`` fixes the batch shape and A, ``eps`` fixes N), or if ``clip_epsilon`` is a
        number ``<= 0``. Shapes are static, so the checks cost nothing under ``jit``.
    """
    fn = "fpo_objective"
    _check_positive(fn, "clip_epsilon", clip_epsilon)
    batch = _check_pairs(fn, obs, actions, eps, t)
    num_pairs = jnp.shape(eps)[-2]
    ref = (
        f"batch shape from actions {_fmt_shape(jnp.shape(actions))}, "
        f"N from eps {_fmt_shape(jnp.shape(eps))}"
    )
    _check_shape(fn, "old_cfm_loss", old_cfm_loss, (*batch, num_pairs), "(*batch, N)", ref)
    _check_shape(
        fn,
        "advantages",
        advantages,
        batch,
        "(*batch,), one per action",
        f"batch shape from actions {_fmt_shape(jnp.shape(actions))}",
    )
    new_cfm_loss = cfm_loss(
        velocity_fn, params, obs, actions, eps, t, weighting=weighting, reduction=cfm_loss_reduction
    )
    clamped_new = new_cfm_loss
    if negative_advantage_cfm_clamp is not None:
        clamped_new = clamp_negative_advantage_loss(
            new_cfm_loss, advantages, negative_advantage_cfm_clamp
        )
    log_r = fpo_log_ratio(
        old_cfm_loss,
        clamped_new,
        ratio=ratio,
        cfm_loss_clamp=cfm_loss_clamp,
        log_ratio_clamp=log_ratio_clamp,
        pair_log_ratio_clamp=pair_log_ratio_clamp,
        log_ratio_straight_through=log_ratio_straight_through,
    )
    r = jnp.exp(log_r)
    adv = advantages[..., None] if ratio == "per_sample" else advantages
    objective = trust_region_objective(r, adv, clip_epsilon, trust_region)
    metrics = _ratio_metrics(r, log_r, clip_epsilon)
    metrics["cfm_loss_new"] = jnp.mean(new_cfm_loss)
    metrics["cfm_loss_old"] = jnp.mean(old_cfm_loss)
    return -jnp.mean(objective), metrics


# --------------------------------------------------------------------------------------------
# Gaussian PPO
# --------------------------------------------------------------------------------------------

_LOG_2PI = math.log(2.0 * math.pi)  # a Python float: no JAX work at import time


def gaussian_log_prob(x: Array, loc: Array, scale: Array | float) -> Array:
    """Log-density of a diagonal Gaussian, summed over the last axis.

    ``log N(x; mu, diag(s^2)) = sum_d [-(x_d - mu_d)^2 / (2 s_d^2) - log s_d - log(2 pi) / 2]``

    Used for the Gaussian PPO policy and for each step of DPPO's stochastic sampler
    (``loc`` = the Euler step mean, ``scale`` = its fixed sigma).

    Args:
      x, loc: ``(..., D)``.
      scale: ``(..., D)`` or anything broadcastable to it, e.g. a scalar sigma; > 0.

    Returns:
      ``(...)``.
    """
    chex.assert_equal_shape([x, loc])  # (..., D) each: a (..., 1) loc would broadcast silently
    z = (x - loc) / scale
    # Every term is broadcast to z's (..., D) before the sum, so a scalar scale counts D times.
    return jnp.sum(-0.5 * jnp.square(z) - jnp.log(scale) - 0.5 * _LOG_2PI, axis=-1)


def gaussian_entropy(scale: Array) -> Array:
    """Entropy of a diagonal Gaussian: ``sum_d [1/2 + log(2 pi)/2 + log s_d]``; ``(..., D) -> (...)``."""
    return jnp.sum(0.5 + 0.5 * _LOG_2PI + jnp.log(scale), axis=-1)


def tanh_log_det_jacobian(x: Array) -> Array:
    """``sum_d log |d tanh(x_d) / dx_d| = sum_d 2 (log 2 - x_d - softplus(-2 x_d))``.

    Numerically stable form of ``log(1 - tanh(x)^2)``; ``(..., D) -> (...)``.
    """
    return jnp.sum(2.0 * (jnp.log(2.0) - x - jax.nn.softplus(-2.0 * x)), axis=-1)


def ppo_objective(
    log_prob_new: Array,
    log_prob_old: Array,
    advantages: Array,
    *,
    clip_epsilon: float = 0.2,
    trust_region: Literal["ppo", "aspo"] = "ppo",
) -> tuple[Array, dict[str, Array]]:
    """PPO clipped-surrogate loss from log-likelihoods (to minimise).

    ``r = exp(log pi_new(a|s) - log pi_old(a|s))``, ``loss = -mean(J(r, A))``.

    For a tanh-squashed Gaussian the log-det-Jacobian of the squash is the same for old and new
    policies (same pre-squash action), so the ratio can use the unsquashed Gaussian log-probs.

    Args:
      log_prob_new: ``(...)`` under the current parameters (differentiated).
      log_prob_old: ``(...)`` recorded at rollout time.
      advantages: ``(...)``.

    Returns:
      ``(loss, metrics)`` with ``ratio_mean/min/max``, ``clip_fraction``, ``approx_kl``.

    Raises:
      ValueError: if the three arrays do not have the same shape, or ``clip_epsilon <= 0``.
    """
    fn = "ppo_objective"
    _check_positive(fn, "clip_epsilon", clip_epsilon)
    shape = jnp.shape(log_prob_new)
    ref = f"the shape of log_prob_new {_fmt_shape(shape)}"
    _check_shape(fn, "log_prob_old", log_prob_old, shape, "log_prob_new.shape", ref)
    _check_shape(fn, "advantages", advantages, shape, "log_prob_new.shape", ref)
    log_r = log_prob_new - jax.lax.stop_gradient(log_prob_old)
    r = jnp.exp(log_r)
    objective = trust_region_objective(r, advantages, clip_epsilon, trust_region)
    return -jnp.mean(objective), _ratio_metrics(r, log_r, clip_epsilon)


# --------------------------------------------------------------------------------------------
# DPPO (denoising-MDP baseline)
# --------------------------------------------------------------------------------------------


def dppo_objective(
    step_log_prob_new: Array,
    step_log_prob_old: Array,
    advantages: Array,
    *,
    clip_epsilon: float = 0.2,
) -> tuple[Array, dict[str, Array]]:
    """DPPO-style loss over the denoising chain (to minimise).

    The sampler is a chain of K stochastic steps ``x_{k+1} ~ N(mu_theta(x_k, t_k), sigma^2 I)``;
    each step has an exact Gaussian likelihood, so each gets its own ratio
    ``r_k = exp(log p_new(x_{k+1}|x_k) - log p_old(x_{k+1}|x_k))``, clipped with the
    environment advantage of the action it leads to, and averaged over steps:

    ``loss = -mean_{batch, k} min(r_k A, clip(r_k, 1 - e, 1 + e) A)``

    Args:
      step_log_prob_new: ``(..., K)`` per-step log-likelihoods under the current parameters.
      step_log_prob_old: ``(..., K)`` recorded at rollout time.
      advantages: ``(...)``.

    Returns:
      ``(loss, metrics)`` with ``ratio_mean/min/max``, ``clip_fraction``, ``approx_kl``.

    Raises:
      ValueError: if the shapes disagree, or ``clip_epsilon <= 0``.
    """
    fn = "dppo_objective"
    _check_positive(fn, "clip_epsilon", clip_epsilon)
    _check_min_ndim(fn, "step_log_prob_new", step_log_prob_new, 1, "(..., K)")
    shape = jnp.shape(step_log_prob_new)
    ref = f"the shape of step_log_prob_new {_fmt_shape(shape)}"
    _check_shape(fn, "step_log_prob_old", step_log_prob_old, shape, "(*batch, K)", ref)
    _check_shape(fn, "advantages", advantages, shape[:-1], "(*batch,), one per action", ref)
    log_r = step_log_prob_new - jax.lax.stop_gradient(step_log_prob_old)
    r = jnp.exp(log_r)
    objective = ppo_clip_objective(r, advantages[..., None], clip_epsilon)
    return -jnp.mean(objective), _ratio_metrics(r, log_r, clip_epsilon)


# --------------------------------------------------------------------------------------------
# Critic and advantages
# --------------------------------------------------------------------------------------------


def value_loss(values: Array, targets: Array) -> Array:
    """Mean squared error of the critic: ``mean((V(s) - V_target)^2)``, targets not differentiated.

    Args:
      values: ``(...)``; targets: ``(...)``.

    Returns:
      scalar.
    """
    chex.assert_equal_shape([values, targets])  # (B, 1) against (B,) would average (B, B) errors
    return jnp.mean(jnp.square(values - jax.lax.stop_gradient(targets)))


def compute_gae(
    rewards: Array,
    values: Array,
    bootstrap_value: Array,
    termination: Array,
    truncation: Array,
    *,
    discount: float,
    gae_lambda: float,
) -> tuple[Array, Array]:
    """Generalized advantage estimation over a time-major rollout, with Brax's semantics.

    For ``t = T-1 .. 0``, with ``V_{T} = bootstrap_value``, ``c_t = 1 - termination_t`` (no
    bootstrap through a true terminal) and ``m_t = 1 - truncation_t``:

    ``delta_t = m_t (r_t + gamma c_t V_{t+1} - V_t)``

    ``(vs - V)_t = delta_t + gamma lambda c_t m_t (vs - V)_{t+1}``

    ``A_t = m_t (r_t + gamma c_t vs_{t+1} - V_t)``  (one-step advantage on lambda-returns)

    A truncated step (time limit, not a true end) is excluded: its advantage is zero and it does
    not propagate, because after an auto-reset ``V_{t+1}`` is the value of the next episode's
    first state, not of the state the time limit cut off.

    Args:
      rewards, termination, truncation: ``(T, ...)``; termination is 1 only for true terminals
        (``done * (1 - truncation)``).
      values: ``(T, ...)`` critic values of the observations at each step.
      bootstrap_value: ``(...)`` critic value of the observation after the last step.
      discount: ``gamma``.
      gae_lambda: ``lambda``.

    Returns:
      ``(value_targets vs, advantages)``, both ``(T, ...)``, without gradients.

    Raises:
      ValueError: if the per-step arrays differ in shape or ``bootstrap_value`` is not
        ``rewards.shape[1:]``.
    """
    fn = "compute_gae"
    _check_min_ndim(fn, "rewards", rewards, 1, "(T, ...)")
    shape = jnp.shape(rewards)
    ref = f"the shape of rewards {_fmt_shape(shape)}"
    for name, x in (("values", values), ("termination", termination), ("truncation", truncation)):
        _check_shape(fn, name, x, shape, "rewards.shape", ref)
    _check_shape(fn, "bootstrap_value", bootstrap_value, shape[1:], "rewards.shape[1:]", ref)
    not_term = 1.0 - termination
    not_trunc = 1.0 - truncation
    next_values = jnp.concatenate([values[1:], bootstrap_value[None]], axis=0)
    deltas = not_trunc * (rewards + discount * not_term * next_values - values)

    def backward(acc, inputs):
        delta, c, m = inputs
        acc = delta + discount * gae_lambda * c * m * acc
        return acc, acc

    _, vs_minus_v = jax.lax.scan(
        backward, jnp.zeros_like(bootstrap_value), (deltas, not_term, not_trunc), reverse=True
    )
    vs = vs_minus_v + values
    next_vs = jnp.concatenate([vs[1:], bootstrap_value[None]], axis=0)
    advantages = not_trunc * (rewards + discount * not_term * next_vs - values)
    return jax.lax.stop_gradient(vs), jax.lax.stop_gradient(advantages)


def normalize_advantages(advantages: Array, eps: float = 1e-8) -> Array:
    """``(A - mean(A)) / (std(A) + eps)`` over all elements; ``(...) -> (...)``."""
    return (advantages - jnp.mean(advantages)) / (jnp.std(advantages) + eps)
