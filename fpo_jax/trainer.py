"""The compiled training step: rollout scan -> GAE -> epochs x minibatches of optax updates.

:class:`Trainer` turns an environment and a :class:`~fpo_jax.config.TrainConfig` into pure
functions over an explicit :class:`TrainState` pytree:

* ``init(key) -> TrainState``
* ``collect(state) -> (state, rollout)``: the rollout half of one iteration (steps 1-2 below);
* ``update(state, rollout) -> (state, metrics)``: the learning half (step 3);
* ``train_step(state) -> (state, metrics)``: ``config.iterations_per_call`` whole iterations
  (``update(*collect(state))``) in one ``lax.scan``; :mod:`fpo_jax.train` jits it, donating the
  state, so both halves compile into one program;
* ``evaluate(state, key) -> metrics``: episodes on separate envs without auto-reset, with the
  configured evaluation sampler.

The algorithm and the critic are injected (Brax's ``network_factory`` idea): ``agent`` is any
object implementing :class:`fpo_jax.agents.Agent` (default: the one ``config.algo`` names, built
with the paper's networks), ``value_network`` any Flax module ``obs (..., obs_dim) -> (...,)``.

One training iteration (all inside one compiled program, no host round trip):

1. refresh the auto-reset cache with fresh initial states (see :mod:`fpo_jax.envs`);
2. ``num_unrolls`` unrolls of ``unroll_length`` steps of ``num_envs`` envs (``lax.scan`` over time
   of vmapped env steps); the agent samples each action and stores what its objective needs
   (FPO: the N (t, eps) pairs and their old CFM losses);
3. ``num_epochs`` shuffles of the trajectories into ``num_minibatches`` minibatches, each a
   gradient step on ``policy loss + value_loss_coef * value loss``, with GAE recomputed inside the
   loss from the current critic (Brax style, under stop-gradient).

Observations are normalised with the running statistics *as they were at the start of the
iteration* both when acting and when computing the loss, so the ratio is exactly 1 on the first
minibatch; statistics gathered during the rollout take effect from the next iteration.
(``obs_norm="brax"`` and ``"reference"`` instead follow Brax PPO's and the FPO authors' order:
statistics updated once after the rollout and used in the loss; see
:mod:`fpo_jax.normalization`.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from fpo_jax import envs, evaluation, loss, networks, normalization, parallel
from fpo_jax.agents import Agent, FlowPolicy, agent_settings, make_agent, with_settings
from fpo_jax.config import (
    TrainConfig,
    algorithm_setting_names,
    parse_sweep,
    sweepable_names,
    validate,
    with_algorithm_settings,
)
from fpo_jax.errors import ConfigError

Array = jax.Array
Metrics = dict[str, Array]


@struct.dataclass
class Rollout:
    """One iteration's experience, as :meth:`Trainer.collect` hands it to :meth:`Trainer.update`.

    ``traj``: dict of arrays with leading dims (num_trajectories, unroll_length), num_trajectories
    = batch_size * num_minibatches: ``obs`` (normalised as when acting; raw with
    ``obs_norm="brax"`` / ``"reference"``, which normalise in :meth:`Trainer.update`), ``raw_action``,
    ``extras`` (the agent's), ``reward``, ``done``, ``truncation``. ``bootstrap_obs``:
    (num_trajectories, obs_dim), the normalised observation after each trajectory's last step.
    ``logs``: per-unroll episode counts and return sums (for the metrics).
    """

    traj: Any
    bootstrap_obs: Array
    logs: Any


@struct.dataclass
class TrainState:
    """Everything a run needs to continue exactly where it stopped (a checkpoint is this).

    ``params = {"policy": ..., "value": ...}``; ``env_state`` has leading dim ``num_envs``;
    ``key`` is a raw ``uint32[2]`` PRNG key; ``iteration`` counts finished training iterations.
    ``hparams``: the swept hyperparameters as float32 scalars, ``{name: ()}`` (empty without a
    sweep); they override the config's values inside the compiled step, so one program trains
    a whole grid of settings when the state has a leading member axis.
    ``ema_params``: with ``config.ema_decay`` (FPO++), the exponential moving average of
    ``params["policy"]`` (same structure), which evaluation and exported policies use; None
    (no leaves, so checkpoints of runs without it are unchanged) otherwise.
    """

    params: Any
    opt_state: Any
    obs_stats: normalization.RunningStats
    env_state: Any
    key: Array
    iteration: Array
    hparams: dict[str, Array] = struct.field(default_factory=dict)
    ema_params: Any = None

    @property
    def eval_params(self) -> Any:
        """``params`` with the policy replaced by its EMA copy when there is one: what acts at
        evaluation and deployment."""
        return evaluation.evaluated_params(self.params, self.ema_params)


def bind_agent(agent: Any, config: TrainConfig) -> Any:
    """An injected agent reading the run's own settings, so that it trains with exactly what
    the run records.

    An agent built from a config (``agent.config``, a :class:`TrainConfig`) that differs from
    the run's is handed the run's (``with_settings``, or a copy of a dataclass agent); one that
    cannot take it is refused in one sentence naming the first setting that differs. An agent
    without a ``TrainConfig`` reads its own settings and is returned as it is.
    """
    own = getattr(agent, "config", None)
    if not isinstance(own, TrainConfig) or own == config:
        return agent
    bound = with_settings(agent, config)
    if bound is not None:
        return bound
    names = [f.name for f in dataclasses.fields(TrainConfig) if f.compare]
    if own.algo == config.algo:  # name the algorithm's own setting, not the pairs holding it
        at = names.index("algo_settings")
        names[at : at + 1] = list(algorithm_setting_names(config.algo))
    name = next(n for n in names if getattr(own, n) != getattr(config, n))
    raise ConfigError(
        f"The injected agent was built with {name}={getattr(own, name)!r} but the run records "
        f"{name}={getattr(config, name)!r}, and the agent offers no with_settings(config) to "
        "take the run's settings: build it from the run's config."
    )


@dataclasses.dataclass(frozen=True)
class _View:
    """The config, agent and optimizer as one member sees them (swept values traced)."""

    config: TrainConfig
    agent: Any
    optimizer: optax.GradientTransformation


def ema_update(
    ema: Any, params: Any, decay: Array | float, num_updates: Array, warmup: Array | int
) -> Any:
    """One step of FPO++'s parameter EMA, after the ``num_updates``-th gradient step (1-based).

    ``ema <- params`` while ``num_updates <= warmup`` (the first ``warmup`` updates copy the live
    parameters), then ``ema <- decay * ema + (1 - decay) * params``. Leafwise on any pytree;
    ``decay`` may be traced.
    """
    copy = num_updates <= warmup
    return jax.tree.map(lambda e, p: jnp.where(copy, p, decay * e + (1.0 - decay) * p), ema, params)


def clip_by_global_norm_per_network(max_norm: Any) -> optax.GradientTransformation:
    """``optax.clip_by_global_norm`` applied to each top-level entry of a dict on its own.

    On ``{"policy": g_pi, "value": g_v}`` each is scaled to global norm at most ``max_norm``
    separately, as with FPO++'s two optimizers (actor, critic), each with its own clip. Adam and
    AdamW act per parameter, so two of them with the same settings on disjoint parameters equal
    one over both; the clip is the only part that differs (a large critic gradient no longer
    shrinks the policy's step). Stateless.
    """
    clip = optax.clip_by_global_norm(max_norm)

    def update(updates, state, params=None):
        del params
        return {k: clip.update(v, clip.init(v))[0] for k, v in updates.items()}, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Adam (AdamW with ``weight_decay``) with an optional gradient-norm clip (global, or per
    network with ``grad_clip_scope="per_network"``) and a constant or linearly decaying step
    size."""
    total_updates = (
        config.num_calls * config.iterations_per_call * config.num_epochs * config.num_minibatches
    )
    if config.lr_schedule == "linear":
        lr: Any = optax.linear_schedule(config.learning_rate, 0.0, total_updates)
    else:
        lr = config.learning_rate
    parts = []
    clip = gradient_clip(config)
    if clip is not None:
        parts.append(clip)
    if config.weight_decay is not None:
        parts.append(optax.adamw(lr, weight_decay=config.weight_decay))
    else:
        parts.append(optax.adam(lr))
    return optax.chain(*parts)


def gradient_clip(config: TrainConfig) -> optax.GradientTransformation | None:
    """The clip of ``make_optimizer`` on ``{"policy": ..., "value": ...}`` gradients, or None:
    of both networks' gradients together, or with ``grad_clip_scope="per_network"`` of each
    network's on its own (the same as one optimizer per network, as Adam is per parameter)."""
    if config.max_grad_norm is None:
        return None
    if config.grad_clip_scope == "per_network":
        return clip_by_global_norm_per_network(config.max_grad_norm)
    return optax.clip_by_global_norm(config.max_grad_norm)


# Sweepable settings the trainer reads itself (optimizer, GAE, value loss, advantages, EMA);
# the agent reads every other swept setting, or nothing does.
TRAINER_SETTINGS = frozenset({
    "learning_rate", "max_grad_norm", "weight_decay", "value_loss_coef", "discount",
    "gae_lambda", "reward_scaling", "advantage_clamp", "ema_decay",
})  # fmt: skip


def _check_sweep_reaches(
    agent: Any, grid: dict[str, tuple[float, ...]], own: frozenset[str] = frozenset()
) -> None:
    """Refuse a swept setting that nothing reads, or that the agent reads but cannot receive.
    ``own``: the algorithm's own settings (read by its agent by construction)."""
    for_agent = sorted(set(grid) - TRAINER_SETTINGS)
    if not for_agent:
        return
    name = type(agent).__name__
    declared = agent_settings(agent)
    if declared is None and any(n not in own for n in for_agent):
        raise ConfigError(
            f"--sweep {', '.join(for_agent)}: the agent {name} does not declare which settings "
            "it reads (a `reads` attribute), so a swept value might reach nothing."
        )
    reads = frozenset(declared or ()) | own
    unread = [n for n in for_agent if n not in reads]
    if unread:
        raise ConfigError(
            f"--sweep {', '.join(unread)}: nothing reads it with the agent {name} (an injected "
            "network ignores the default network's settings), so every member would train the "
            "same."
        )
    if with_settings(agent, TrainConfig()) is None:
        raise ConfigError(
            f"--sweep {', '.join(for_agent)}: the agent {name} has no `with_settings(config)` "
            "method, so it cannot receive each member's value."
        )


def _stats_after_rollout(config: TrainConfig) -> bool:
    """Whether the rollout stores raw observations, normalised in the loss with statistics
    updated once after the rollout (Brax's and the FPO authors' order)."""
    return config.obs_norm in ("brax", "reference")


def _all_finite(tree: Any) -> Array:
    leaves = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree.leaves(tree)
        if jnp.issubdtype(x.dtype, jnp.floating)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


class Trainer:
    """Pure training functions for one environment and config (see module docstring).

    Args:
      env: a raw Brax ``Env``, MuJoCo Playground ``MjxEnv`` or built-in toy env
        (:func:`fpo_jax.envs.make_env` builds one by name).
      config: the run's configuration; validated here, before anything is compiled.
      agent: the algorithm (any :class:`~fpo_jax.agents.Agent`, e.g.
        ``FPOAgent(config, action_size, network=MyVelocityNet())``); default:
        ``make_agent(config, action_size)``.
      value_network: the critic, a Flax module ``obs (..., obs_dim) -> V (...,)``; default:
        ``ValueMLP`` with ``config``'s sizes, activation and initialisation.
      mesh: optional ``jax.sharding.Mesh`` with a ``"data"`` axis (see :mod:`fpo_jax.parallel`):
        env states and trajectories are sharded over it along their env/trajectory axis,
        parameters and optimizer state replicated; the compiler inserts the gradient all-reduce.
        The math is the same as on one device, so curves agree up to float rounding.
    """

    def __init__(
        self,
        env: Any,
        config: TrainConfig,
        *,
        agent: Agent | None = None,
        value_network: Any | None = None,
        mesh: jax.sharding.Mesh | None = None,
    ):
        config = validate(config)
        # A swept field that is None (e.g. max_grad_norm: off) takes its first swept value here,
        # so the program has the structure that the traced values then fill in.
        grid = parse_sweep(config)
        config = dataclasses.replace(
            config,
            **{n: v[0] for n, v in grid.items() if getattr(config, n, 0) is None},
        )
        self.config = config
        self.mesh = mesh
        if mesh is not None:
            parallel.check_divisible(config, mesh)
        self.env = env
        self.obs_size, self.action_size = envs.env_sizes(env)
        if agent is None:
            agent = make_agent(config, self.action_size)
        elif getattr(agent, "action_size", self.action_size) != self.action_size:
            raise ValueError(
                f"The agent was built for {agent.action_size}-dim actions but the env "
                f"{config.env!r} has {self.action_size}."
            )
        else:
            agent = bind_agent(agent, config)
        _check_sweep_reaches(agent, grid, frozenset(algorithm_setting_names(config.algo)))
        self.agent = agent
        self.value_net = (
            networks.ValueMLP(
                hidden_sizes=config.value_hidden,
                activation=networks.ACTIVATIONS[config.activation],
                init_scheme=config.network_init,
            )
            if value_network is None
            else value_network
        )
        self.optimizer = make_optimizer(config)
        self.train_env = envs.wrap_for_training(
            env, episode_length=config.episode_length, action_repeat=config.action_repeat
        )
        self.eval_env = envs.wrap_for_eval(
            env, episode_length=config.episode_length, action_repeat=config.action_repeat
        )

    # ------------------------------------------------------------------ state
    def _view(self, hparams: dict[str, Array]) -> _View:
        """What the traced code reads its settings from: the config with ``hparams`` in place."""
        if not hparams:
            return _View(self.config, self.agent, self.optimizer)
        # Traced values, no validation; the algorithm's own settings go to algo_settings.
        own = algorithm_setting_names(self.config.algo)
        config = dataclasses.replace(
            self.config, **{k: v for k, v in hparams.items() if k not in own}
        )
        if set(hparams) & set(own):
            config = with_algorithm_settings(config, {k: v for k, v in hparams.items() if k in own})
        agent = self.agent
        if set(hparams) - TRAINER_SETTINGS:  # the agent reads some: hand it the member's config
            agent = with_settings(agent, config)
        return _View(config, agent, make_optimizer(config))

    def init(self, key: Array, hparams: dict[str, Any] | None = None) -> TrainState:
        """Fresh parameters, optimizer state, statistics and env states from a raw PRNG key.

        ``hparams``: swept hyperparameters (names in :func:`fpo_jax.config.sweepable_names`) and
        this member's values; vmap ``init`` over them to build a sweep's states.
        """
        hparams = {k: jnp.asarray(v, jnp.float32) for k, v in (hparams or {}).items()}
        can = sweepable_names(self.config.algo)
        unknown = sorted(set(hparams) - set(can))
        if unknown:
            raise ValueError(f"{unknown} cannot be swept; sweepable: {can}.")
        c = self.config
        k_policy, k_value, k_env, k_next = jax.random.split(key, 4)
        params = {
            "policy": self.agent.init(k_policy, self.obs_size),
            "value": self.value_net.init(k_value, jnp.zeros((1, self.obs_size))),
        }
        env_state = self._shard(self.train_env.reset(jax.random.split(k_env, c.num_envs)))
        return TrainState(
            params=params,
            opt_state=self.optimizer.init(params),
            obs_stats=normalization.RunningStats.zeros(self.obs_size),
            env_state=env_state,
            key=k_next,
            iteration=jnp.zeros((), jnp.int32),
            hparams=hparams,
            # A copy, not the same buffers: the state is donated to the compiled step.
            ema_params=None if c.ema_decay is None else jax.tree.map(jnp.copy, params["policy"]),
        )

    def _shard(self, tree: Any, axis: int = 0) -> Any:
        """Constrain ``tree``'s leaves to be sharded over the mesh's data axis along ``axis``."""
        return parallel.shard_along(tree, self.mesh, axis)

    def _normalize(self, stats: normalization.RunningStats, obs: Array) -> Array:
        c = self.config
        return normalization.normalize(stats, obs, c.normalize_observations, mode=c.obs_norm)

    # ------------------------------------------------------------------ rollout
    def _unroll(self, agent, params, stats_for_acting, carry, key):
        """One unroll of ``unroll_length`` steps. Returns (carry, (traj (T, B, ...), bootstrap))."""
        env_state, new_stats = carry

        stats_after_rollout = _stats_after_rollout(self.config)

        def env_step(carry, step_key):
            env_state, new_stats = carry
            raw_obs = envs.flat_obs(env_state.obs)
            obs = self._normalize(stats_for_acting, raw_obs)
            raw_action, extras = agent.act(params["policy"], obs, step_key)
            # The agent's contract (fpo_jax.agents.base), checked at trace time for any agent.
            batch = obs.shape[:-1]
            chex.assert_shape(raw_action, (*batch, agent.action_size), custom_message="agent.act")
            chex.assert_tree_shape_prefix(extras, batch, custom_message="agent.act's extras")
            next_state = self.train_env.step(env_state, jnp.tanh(raw_action))
            done = next_state.done
            episode_return = next_state.info["episode_metrics"]["sum_reward"]
            transition = {
                # 'brax' / 'reference' normalise in the loss, with the statistics updated
                # after the rollout; 'welford' stores what the policy saw.
                "obs": raw_obs if stats_after_rollout else obs,
                "raw_action": raw_action,
                "extras": extras,
                "reward": next_state.reward,
                "done": done,
                "truncation": next_state.info["truncation"],
            }
            logs = {
                "episodes": jnp.sum(done),
                "episode_return_sum": jnp.sum(jnp.where(done > 0, episode_return, 0.0)),
            }
            if not stats_after_rollout:
                new_stats = normalization.update(new_stats, raw_obs)
            return (next_state, new_stats), (transition, logs)

        keys = jax.random.split(key, self.config.unroll_length)
        (env_state, new_stats), (traj, logs) = jax.lax.scan(env_step, (env_state, new_stats), keys)
        bootstrap_obs = envs.flat_obs(env_state.obs)
        if not stats_after_rollout:
            bootstrap_obs = self._normalize(stats_for_acting, bootstrap_obs)
        return (env_state, new_stats), (traj, bootstrap_obs, logs)

    # ------------------------------------------------------------------ update
    def _loss(self, view: _View, params, minibatch) -> tuple[Array, Metrics]:
        """Loss of one minibatch of trajectories: obs (b, T, obs_dim), bootstrap_obs (b, obs_dim)."""
        c = view.config
        traj, bootstrap_obs = minibatch
        values, value_targets, advantages = self._advantages(
            c, params["value"], traj, bootstrap_obs
        )
        policy_loss, metrics = view.agent.objective(
            params["policy"], traj["obs"], traj["raw_action"], traj["extras"], advantages
        )
        chex.assert_rank(policy_loss, 0, custom_message="agent.objective's loss")
        v_loss = loss.value_loss(values, value_targets)
        total = policy_loss + c.value_loss_coef * v_loss
        metrics.update(policy_loss=policy_loss, value_loss=v_loss, total_loss=total)
        return total, metrics

    def _advantages(self, c: TrainConfig, value_params, traj, bootstrap_obs):
        """Critic values (b, T), GAE value targets (b, T) and the advantages the objective sees
        (b, T): normalised and clamped as configured; trajectories (b, T, ...)."""
        values = self.value_net.apply(value_params, traj["obs"])  # (b, T)
        bootstrap_value = self.value_net.apply(value_params, bootstrap_obs)  # (b,)
        truncation = traj["truncation"]
        termination = traj["done"] * (1.0 - truncation)
        to_time_major = lambda x: jnp.swapaxes(x, 0, 1)
        value_targets, advantages = loss.compute_gae(
            to_time_major(traj["reward"] * c.reward_scaling),
            to_time_major(values),
            bootstrap_value,
            to_time_major(termination),
            to_time_major(truncation),
            discount=c.discount,
            gae_lambda=c.gae_lambda,
        )
        value_targets, advantages = to_time_major(value_targets), to_time_major(advantages)
        if isinstance(c.normalize_advantages, bool):
            if c.normalize_advantages:
                advantages = loss.normalize_advantages(advantages)
        else:  # switched by the late phase: a traced boolean
            advantages = jnp.where(
                c.normalize_advantages, loss.normalize_advantages(advantages), advantages
            )
        if c.advantage_clamp is not None:  # FPO++: after normalisation
            advantages = jnp.clip(advantages, -c.advantage_clamp, c.advantage_clamp)
        return values, value_targets, advantages

    def _ratio_diagnostics(self, view: _View, old_params, new_params, data) -> Metrics:
        """The agent's surrogate ratio against the exact one on ``agent.diagnosed_actions``
        actions spread evenly over the iteration's batch (advantages from the critic that
        collected it); see :meth:`fpo_jax.agents.FPOAgent.ratio_diagnostics`."""
        traj, bootstrap_obs = data
        _, _, advantages = self._advantages(view.config, old_params["value"], traj, bootstrap_obs)
        flat = lambda x: x.reshape(-1, *x.shape[2:])  # (num_traj, T, ...) -> (num_traj * T, ...)
        total = advantages.size
        idx = np.linspace(0, total - 1, min(view.agent.diagnosed_actions, total)).astype(int)
        pick = lambda x: flat(x)[idx]
        return view.agent.ratio_diagnostics(
            old_params["policy"], new_params["policy"], pick(traj["obs"]),
            pick(traj["raw_action"]), jax.tree.map(pick, traj["extras"]), pick(advantages),
        )  # fmt: skip

    def _sgd_step(self, view: _View, carry, minibatch):
        """carry: (params, opt_state, ema_params or None, gradient steps done so far)."""
        params, opt_state, ema, num_updates = carry
        grads, metrics = jax.grad(self._loss, argnums=1, has_aux=True)(view, params, minibatch)
        updates, opt_state = view.optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        num_updates = num_updates + 1
        if ema is not None:
            c = view.config
            ema = ema_update(ema, params["policy"], c.ema_decay, num_updates, c.ema_warmup_updates)
        metrics["grad_norm"] = optax.global_norm(grads)
        return (params, opt_state, ema, num_updates), metrics

    def _late_phase_epochs(self, view: _View, data, carry, key, iteration):
        """The update's epochs when the settings switch after ``late_phase_after`` iterations
        (FPO++'s long-run schedule): from then on ``late_num_epochs`` epochs, EMA decay
        ``late_ema_decay`` and ``late_normalize_advantages``. One program for both phases: it
        scans the larger epoch count and skips the epochs the current phase does not run;
        metrics are means over the epochs that ran."""
        c = self.config
        late = iteration >= c.late_phase_after
        early_epochs = c.num_epochs
        late_epochs = c.late_num_epochs if c.late_num_epochs is not None else early_epochs
        changes = {}
        if c.late_ema_decay is not None:
            changes["ema_decay"] = jnp.where(late, c.late_ema_decay, view.config.ema_decay)
        if c.late_normalize_advantages is not None:
            changes["normalize_advantages"] = jnp.where(
                late, c.late_normalize_advantages, c.normalize_advantages
            )
        if changes:
            view = dataclasses.replace(view, config=dataclasses.replace(view.config, **changes))
        active = jnp.where(late, late_epochs, early_epochs)

        def epoch(carry, inputs):
            index, k = inputs
            run = lambda cr: self._epoch(view, data, cr, k)
            shapes = jax.eval_shape(run, carry)[1]
            nan = lambda m: jnp.full(m.shape, jnp.nan, m.dtype)
            skip = lambda cr: (cr, jax.tree.map(nan, shapes))
            return jax.lax.cond(index < active, run, skip, carry)

        total = max(early_epochs, late_epochs)
        carry, sgd_metrics = jax.lax.scan(
            epoch, carry, (jnp.arange(total), jax.random.split(key, total))
        )
        metrics = jax.tree.map(jnp.nanmean, sgd_metrics)
        metrics["late_phase"] = late.astype(jnp.float32)
        return carry, metrics

    def _epoch(self, view: _View, data, carry, key):
        c = self.config
        num_traj = c.batch_size * c.num_minibatches
        perm = jax.random.permutation(key, num_traj)
        minibatches = jax.tree.map(
            lambda x: x[perm].reshape(c.num_minibatches, c.batch_size, *x.shape[1:]), data
        )
        minibatches = self._shard(minibatches, axis=1)
        return jax.lax.scan(lambda cr, mb: self._sgd_step(view, cr, mb), carry, minibatches)

    # ------------------------------------------------------------------ iteration
    def collect(self, state: TrainState) -> tuple[TrainState, Rollout]:
        """The rollout half of an iteration: ``num_unrolls`` unrolls of all ``num_envs`` envs.

        Returns the state with env states, observation statistics and key advanced (the new
        statistics take effect from the next iteration: the rollout's observations are
        normalised with those of ``state``), and the :class:`Rollout`. Pure; jit-able.
        """
        c = self.config
        key, k_refresh, k_rollout = jax.random.split(state.key, 3)
        env_state = state.env_state
        if c.refresh_initial_states:
            env_state = envs.refresh_initial_states(
                self.train_env, env_state, jax.random.split(k_refresh, c.num_envs)
            )
        env_state = self._shard(env_state)
        agent = self._view(state.hparams).agent
        unroll = lambda carry, k: self._unroll(agent, state.params, state.obs_stats, carry, k)
        (env_state, new_stats), (traj, bootstrap_obs, logs) = jax.lax.scan(
            unroll, (env_state, state.obs_stats), jax.random.split(k_rollout, c.num_unrolls)
        )
        # (U, T, B, ...) -> (U * B, T, ...): one row per trajectory.
        traj = jax.tree.map(
            lambda x: jnp.swapaxes(x, 1, 2).reshape(-1, c.unroll_length, *x.shape[3:]), traj
        )
        bootstrap_obs = bootstrap_obs.reshape(-1, bootstrap_obs.shape[-1])
        traj, bootstrap_obs = self._shard((traj, bootstrap_obs))
        if _stats_after_rollout(c) and c.normalize_observations:
            # Once per iteration, from the rollout's observations, before the update epochs.
            new_stats = normalization.update(new_stats, traj["obs"], mode=c.obs_norm)
        state = state.replace(
            env_state=self._shard(env_state),
            obs_stats=new_stats if c.normalize_observations else state.obs_stats,
            key=key,
        )
        return state, Rollout(traj=traj, bootstrap_obs=bootstrap_obs, logs=logs)

    def update(self, state: TrainState, rollout: Rollout) -> tuple[TrainState, Metrics]:
        """The learning half: ``num_epochs`` x ``num_minibatches`` optax steps on ``rollout``.

        Returns the state with params, optimizer state, key and iteration advanced, and the
        iteration's metrics (means over its gradient steps, episode statistics, ``finite``).
        Pure; jit-able.
        """
        c = self.config
        key, k_sgd = jax.random.split(state.key)
        traj, bootstrap_obs = rollout.traj, rollout.bootstrap_obs
        if _stats_after_rollout(c):  # raw observations, normalised with the new statistics
            traj = {**traj, "obs": self._normalize(state.obs_stats, traj["obs"])}
            bootstrap_obs = self._normalize(state.obs_stats, bootstrap_obs)
        data = (traj, bootstrap_obs)
        view = self._view(state.hparams)
        # Gradient steps before this iteration's (the EMA's warm-up counts them).
        done = state.iteration * (c.num_epochs * c.num_minibatches)
        carry = (state.params, state.opt_state, state.ema_params, done)
        if c.late_phase_after is None:
            epoch = lambda carry, k: self._epoch(view, data, carry, k)
            (params, opt_state, ema, _), sgd_metrics = jax.lax.scan(
                epoch, carry, jax.random.split(k_sgd, c.num_epochs)
            )
            metrics = jax.tree.map(jnp.mean, sgd_metrics)
        else:
            (params, opt_state, ema, _), metrics = self._late_phase_epochs(
                view, data, carry, k_sgd, state.iteration
            )
        if getattr(view.agent, "diagnosed_actions", 0):  # off by default: nothing traced
            metrics.update(self._ratio_diagnostics(view, state.params, params, data))
        episodes = jnp.sum(rollout.logs["episodes"])
        metrics["train/episodes"] = episodes
        metrics["train/episode_return"] = jnp.where(
            episodes > 0,
            jnp.sum(rollout.logs["episode_return_sum"]) / jnp.maximum(episodes, 1),
            jnp.nan,
        )
        metrics["train/reward_per_step"] = jnp.mean(rollout.traj["reward"])
        metrics["finite"] = _all_finite((params, ema)) & jnp.isfinite(metrics["total_loss"])
        state = state.replace(
            params=params,
            opt_state=opt_state,
            ema_params=ema,
            key=key,
            iteration=state.iteration + 1,
        )
        return state, metrics

    def _iteration(self, state: TrainState, _=None) -> tuple[TrainState, Metrics]:
        return self.update(*self.collect(state))

    def train_step(self, state: TrainState) -> tuple[TrainState, Metrics]:
        """``iterations_per_call`` training iterations; metrics averaged over them.

        ``metrics["finite"]`` is False if any iteration produced a non-finite loss or parameter.
        """
        state, metrics = jax.lax.scan(
            self._iteration, state, None, length=self.config.iterations_per_call
        )
        finite = jnp.all(metrics.pop("finite"))
        metrics = jax.tree.map(jnp.nanmean, metrics)
        metrics["finite"] = finite
        return state, metrics

    # ------------------------------------------------------------------ evaluation
    def policy_fn(
        self,
        params: Any,
        obs_stats: normalization.RunningStats,
        hparams: dict[str, Array] | None = None,
    ) -> Callable:
        """``policy(obs (..., obs_dim), key) -> action (..., A)`` in ``[-1, 1]``, jit-able.

        ``params`` are the whole ``state.eval_params`` (the policy's EMA copy when the run keeps
        one, else ``state.params``; ``hparams`` its ``state.hparams``, for a sweep member); uses the evaluation sampler of the config (integrator, steps, noise
        start). A dict observation is read through its "state" entry.
        """
        agent = self._view(hparams or {}).agent
        act = evaluation.make_policy(agent, params["policy"], obs_stats, self.config)
        return lambda obs, key: act(envs.flat_obs(obs), key)

    def describe_evaluation(self) -> str:
        """What :meth:`evaluate` plays, in one line (deterministic or stochastic, the sampler,
        live or EMA parameters, the episodes): :func:`fpo_jax.evaluation.describe_evaluation`."""
        flow_sampler = isinstance(self.agent, FlowPolicy)
        return evaluation.describe_evaluation(self.config, flow_sampler=flow_sampler)

    def evaluate(self, state: TrainState, key: Array) -> Metrics:
        """The run's evaluation of ``state`` (:func:`fpo_jax.evaluation.evaluate`): mean
        undiscounted return of ``num_eval_envs`` episodes of the evaluated parameters (the EMA
        actor when the run keeps one; then also the live policy's return on the same episodes,
        ``eval/live_episode_return`` and ``eval/ema_minus_live_return``)."""
        return evaluation.evaluate(
            self.eval_env,
            lambda params: self.policy_fn(params, state.obs_stats, state.hparams),
            state.params,
            state.ema_params,
            key,
            self.config,
        )


def make_train(
    env: Any,
    config: TrainConfig,
    *,
    agent: Agent | None = None,
    value_network: Any | None = None,
) -> Callable[..., tuple[TrainState, Metrics]]:
    """The whole run as one pure function of a key (PureJaxRL's ``make_train``).

    ``train_fn(key, hparams=None) -> (state, metrics)``: ``Trainer.init`` then
    ``config.num_calls`` calls of ``train_step`` in one ``lax.scan``; ``metrics`` has a leading
    axis of calls. No evaluation, files or host callbacks: jit it, vmap it over keys (seeds)
    and ``hparams`` (a sweep member's values, as :meth:`Trainer.init` takes them) yourself.
    ``train_fn(jax.random.PRNGKey(seed))`` trains exactly what
    :func:`fpo_jax.train.train` does for that seed.
    """
    trainer = Trainer(env, config, agent=agent, value_network=value_network)

    def train_fn(key: Array, hparams: dict[str, Any] | None = None):
        state = trainer.init(key, hparams)
        return jax.lax.scan(lambda s, _: trainer.train_step(s), state, None, config.num_calls)

    return train_fn
