"""Flow PPO: a flow policy trained with PPO on the exact likelihood ratio of its own sampler,
and the exact-density entropy bonus that any flow agent can add.

The discrete sampler (Euler / midpoint / RK4 steps from ``x_1 ~ N(0, I)``) is an invertible map,
so its density is exact by the change of variables through each step
(:func:`fpo_jax.diagnostics.sampler_log_prob`). That is what FPO's surrogate approximates; this
agent uses it directly, as a yardstick for FPO.

Cost per update, for A action dims, K sampler steps and I Newton iterations: each action's
ratio inverts K steps, ``K * (I + 3)`` Jacobians of A x A (A Jacobian-vector products each),
and its gradient goes back through one Newton step per sampler step (the implicit function
theorem's gradient, not a pass back through all I iterations); the entropy bonus adds K
Jacobians per action on the forward path. FPO's surrogate costs N (pairs) velocity evaluations. Above
:data:`EXACT_DENSITY_MAX_ACTION_DIM` action dims the agent is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from fpo_jax import diagnostics, flow, loss
from fpo_jax.agents.base import Array, Extras, Params
from fpo_jax.agents.flow_policy import FlowPolicy
from fpo_jax.errors import ConfigError

# Beyond this many action dims the exact density (A x A Jacobians at every sampler step and
# Newton iteration) costs tens of times FPO's update: refused rather than silently slow.
EXACT_DENSITY_MAX_ACTION_DIM = 4


def check_exact_density_affordable(action_size: int, what: str) -> None:
    """ConfigError when ``what`` (an exact-density feature) would need Jacobians too large."""
    if action_size > EXACT_DENSITY_MAX_ACTION_DIM:
        raise ConfigError(
            f"{what} needs the sampler's exact density: an {action_size} x {action_size} "
            f"Jacobian at every sampler step of every action, which this library allows up to "
            f"{EXACT_DENSITY_MAX_ACTION_DIM} action dims; use FPO's surrogate for this env."
        )


def flow_entropy(agent: FlowPolicy, params: Params, obs: Array, noise: Array) -> Array:
    """The entropy of the executed (tanh-squashed) action, estimated per action from source
    noise drawn at rollout time and pushed through the current parameters' sampler:
    ``-log p(u) + log |det d tanh(u)/du|`` with ``u`` the pre-tanh action (reparameterised,
    so its gradient reaches the parameters). obs (*B, obs_dim), noise (*B, A) -> (*B,)."""
    c = agent.config
    raw, log_p = diagnostics.path_log_prob(
        agent.velocity_fn, params, obs, noise, integrator=c.integrator, num_steps=c.flow_steps,
        source_std=c.flow_noise_scale,
    )  # fmt: skip
    return -log_p + loss.tanh_log_det_jacobian(raw)


@dataclass(frozen=True)
class FlowPPOAgent(FlowPolicy):
    """A flow policy trained with PPO's clipped surrogate on the exact ratio
    ``pi_new(a|s) / pi_old(a|s)`` of its rollout sampler (``integrator``, ``flow_steps``),
    with an optional entropy bonus (``flow_entropy_cost``). Actions whose density cannot be
    computed (a sampler step that does not invert) are left out of the loss and counted
    (``exact_density_failures``)."""

    name: str = "flow_ppo"

    def __post_init__(self) -> None:
        check_exact_density_affordable(self.action_size, "algo='flow_ppo'")

    def log_prob(self, params: Params, obs: Array, raw_action: Array) -> tuple[Array, Array]:
        """obs (*B, obs_dim), raw_action (*B, A) -> (log density (*B,), failures ())."""
        c = self.config
        log_p, info = diagnostics.sampler_log_prob(
            self.velocity_fn, params, obs, raw_action, integrator=c.integrator,
            num_steps=c.flow_steps, source_std=c.flow_noise_scale, return_info=True,
        )  # fmt: skip
        return log_p, info["not_converged"]

    def act(self, params: Params, obs: Array, key: Array) -> tuple[Array, Extras]:
        """obs (*B, obs_dim) -> raw_action (*B, A), extras {log_prob (*B,), noise (*B, A)}."""
        c = self.config
        x, path = flow.sample(
            self.velocity_fn, params, obs, key, action_dim=self.action_size,
            integrator=c.integrator, num_steps=c.flow_steps, return_path=True,
        )  # fmt: skip
        raw_action = self.to_raw_action(x)
        # The density by the same inversion the update uses, so the first ratio is exactly 1.
        log_p, _ = self.log_prob(params, obs, raw_action)
        return raw_action, {"log_prob": log_p, "noise": path[..., 0, :]}

    def objective(
        self, params: Params, obs: Array, raw_action: Array, extras: Extras, advantages: Array
    ) -> tuple[Array, dict[str, Array]]:
        c = self.config
        log_p, failures = self.log_prob(params, obs, raw_action)
        old = extras["log_prob"]
        ok = jnp.isfinite(log_p) & jnp.isfinite(old)
        # A failed inversion acts as ratio 1 with no gradient, and is counted.
        new_safe = jnp.where(ok, log_p, jax.lax.stop_gradient(jnp.where(ok, old, 0.0)))
        old_safe = jnp.where(ok, old, 0.0)
        policy_loss, metrics = loss.ppo_objective(
            new_safe, old_safe, jnp.where(ok, advantages, 0.0), clip_epsilon=c.clip_epsilon,
            trust_region=c.trust_region,
        )  # fmt: skip
        metrics["exact_density_failures"] = jnp.sum(~ok).astype(jnp.float32)
        del failures
        if c.flow_entropy_cost:
            entropy = jnp.mean(flow_entropy(self, params, obs, extras["noise"]))
            metrics["entropy"] = entropy
            policy_loss = policy_loss - c.flow_entropy_cost * entropy
        return policy_loss, metrics
