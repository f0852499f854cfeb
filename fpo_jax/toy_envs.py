"""Built-in toy environments in pure JAX: the FPO paper's GridWorld, two one-step bandits and an
under-conditioned reaching task.

All four are `brax.envs.base.Env` subclasses, so Brax's own training wrappers (vmap, episode
limit, auto-reset) apply to them unchanged. Every state field has the same dtype at reset and at
step, so a rollout `lax.scan` carries them without retracing.

Actions arrive already tanh-squashed into [-1, 1] (the trainer squashes the flow's output), so
the discretisation below uses thresholds at +-1/3 rather than rounding: rounding a squashed
action would make the "stay" move hard to reach.
``GridWorld(move_threshold=AUTHORS_MOVE_THRESHOLD)`` moves exactly when the FPO authors' GridWorld
does: theirs rounds the unsquashed action clipped to [-1, 1], i.e. moves when |a| > 0.5, which
is |tanh(a)| > tanh(0.5).

- `GridWorld` (paper, Figure 1): reach the top or bottom two rows of a 25 x 25 grid.
- `Bandit`: a one-step task whose reward has two equally good, well separated optima, so the
  optimal stochastic policy is bimodal ("bandit": 1-D, "bandit2d": 2-D).
- `AliasedReach` ("aliased_reach"): reach a target on a line seeing its distance but not its
  side: the observation leaves the right action ambiguous between two distinct modes, and any
  single-mode policy loses return (an under-conditioned task).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from brax.envs.base import Env, State

# Episode limits the trainer's presets use; the limit itself is applied by the episode wrapper.
DEFAULT_EPISODE_LENGTH: dict[str, int] = {
    "gridworld": 100, "bandit": 1, "bandit2d": 1, "aliased_reach": 4,
}  # fmt: skip

# Reward optima of the bandits in (squashed) action space, shape (num_modes, action_dim).
# bandit2d puts its two modes on one diagonal: a factorised (per-axis) distribution cannot put
# mass on both without also covering the two empty off-diagonal corners.
BANDIT_MODES: dict[str, np.ndarray] = {
    "bandit": np.array([[-0.6], [0.6]], dtype=np.float32),
    "bandit2d": np.array([[0.6, 0.6], [-0.6, -0.6]], dtype=np.float32),
}
# GridWorld move threshold on the squashed action equivalent to the FPO authors' round(clip(a,
# -1, 1)) of the raw action a: a component moves when |a| > 0.5, i.e. |tanh(a)| > tanh(0.5).
AUTHORS_MOVE_THRESHOLD = float(np.tanh(0.5))
# Width (standard deviation) of each reward bump: modes 8 widths apart, reward(0) = e^-8.
BANDIT_WIDTH = 0.15


def discretize_action(action: jax.Array, threshold: float = 1.0 / 3.0) -> jax.Array:
    """Maps a squashed action in [-1, 1] to moves in {-1, 0, 1} per component.

    action: (..., d) float  ->  (..., d) int32; a > threshold -> +1, a < -threshold -> -1,
    else 0 (default threshold 1/3: three equal bins).
    """
    return jnp.where(action > threshold, 1, jnp.where(action < -threshold, -1, 0)).astype(jnp.int32)


class GridWorld(Env):
    """The FPO paper's GridWorld (Figure 1).

    Cells are (x, y) with x, y in 0..size-1 (25 x 25 by default). The goals are the two rows at
    each end of the y axis: "bottom" is y in {0, 1}, "top" is y in {size-2, size-1}. Reaching a
    goal gives `goal_reward` (+20) and terminates (done = 1); every other step gives 0.

    - observation: (position - c) / c with c = (size - 1) / 2, float32 of shape (2,), in [-1, 1].
    - action: (2,) in [-1, 1], each component discretised to a move in {-1, 0, 1} (thresholds
      at +-`move_threshold`, default 1/3, see `discretize_action`; `AUTHORS_MOVE_THRESHOLD`
      reproduces the FPO authors' rounding); the new position is clipped to the grid.
    - reset: a uniformly random non-goal cell, or the fixed `start` cell if one is given (for the
      multimodality experiment: a start equidistant to both goal rows, e.g. (12, 12)).
    - metrics: `reached_top` / `reached_bottom` (float32 0/1) say which goal the step reached.
    - pipeline_state: the cell, int32 of shape (2,); kept there (not in `info`) so the Brax
      auto-reset wrapper restores it together with the observation.

    The 100-step limit is not part of the env: the episode wrapper applies it
    (`DEFAULT_EPISODE_LENGTH["gridworld"]`).
    """

    def __init__(
        self,
        size: int = 25,
        goal_rows: int = 2,
        goal_reward: float = 20.0,
        start: Sequence[int] | None = None,
        move_threshold: float = 1.0 / 3.0,
    ):
        if size < 2 * goal_rows + 1:
            raise ValueError(f"GridWorld size {size} leaves no non-goal row for {goal_rows=}.")
        self.size = size
        self.goal_rows = goal_rows
        self.goal_reward = goal_reward
        if not 0.0 <= move_threshold < 1.0:
            raise ValueError(f"GridWorld move_threshold must lie in [0, 1), got {move_threshold}.")
        self.move_threshold = float(move_threshold)
        self.start = None
        if start is not None:
            x, y = (int(v) for v in start)
            if not (0 <= x < size and goal_rows <= y < size - goal_rows):
                raise ValueError(
                    f"GridWorld start {tuple(start)} must be a non-goal cell: 0 <= x < {size} and "
                    f"{goal_rows} <= y < {size - goal_rows}."
                )
            self.start = (x, y)

    def _obs(self, pos: jax.Array) -> jax.Array:
        center = (self.size - 1) / 2.0
        return (pos.astype(jnp.float32) - center) / center

    def _metrics(self, pos: jax.Array) -> dict[str, jax.Array]:
        y = pos[1]
        return {
            "reached_top": (y >= self.size - self.goal_rows).astype(jnp.float32),
            "reached_bottom": (y < self.goal_rows).astype(jnp.float32),
        }

    def reset(self, rng: jax.Array) -> State:
        """rng: (2,) raw key -> State with obs (2,), reward (), done ()."""
        if self.start is not None:
            pos = jnp.asarray(self.start, dtype=jnp.int32)
        else:
            kx, ky = jax.random.split(rng)
            x = jax.random.randint(kx, (), 0, self.size, dtype=jnp.int32)
            y = jax.random.randint(
                ky, (), self.goal_rows, self.size - self.goal_rows, dtype=jnp.int32
            )
            pos = jnp.stack([x, y])
        zero = jnp.zeros((), jnp.float32)
        metrics = {k: jnp.zeros_like(v) for k, v in self._metrics(pos).items()}
        return State(
            pipeline_state=pos, obs=self._obs(pos), reward=zero, done=zero, metrics=metrics
        )

    def step(self, state: State, action: jax.Array) -> State:
        """action: (2,) in [-1, 1] -> next State."""
        move = discretize_action(action, self.move_threshold)
        pos = jnp.clip(state.pipeline_state + move, 0, self.size - 1)
        metrics = self._metrics(pos)
        reached = jnp.maximum(metrics["reached_top"], metrics["reached_bottom"])
        return state.replace(
            pipeline_state=pos,
            obs=self._obs(pos),
            reward=reached * jnp.float32(self.goal_reward),
            done=reached,
            metrics=metrics,
        )

    @property
    def observation_size(self) -> int:
        return 2

    @property
    def action_size(self) -> int:
        return 2

    @property
    def backend(self) -> str:
        return "builtin"


class Bandit(Env):
    """One-step task with a multimodal reward in action space.

    reward(a) = max_m exp(-||a - m||^2 / (2 width^2)) over the modes m (`BANDIT_MODES`), on the
    action clipped to [-1, 1]: 1 at every mode, near 0 between them. Every step ends the episode
    (done = 1; episode length 1). The observation is the constant [1.0] (shape (1,)) so policy
    networks have an input. pipeline_state is None: there is nothing to simulate.
    """

    def __init__(self, modes: np.ndarray | Sequence[Sequence[float]], width: float = BANDIT_WIDTH):
        self.modes = np.asarray(modes, dtype=np.float32)  # (num_modes, action_dim)
        if self.modes.ndim != 2:
            raise ValueError(
                f"Bandit modes must have shape (num_modes, action_dim), got {self.modes.shape}."
            )
        self.width = float(width)

    def reward_fn(self, action: jax.Array) -> jax.Array:
        """action: (..., action_dim) -> reward (...,)."""
        a = jnp.clip(action, -1.0, 1.0)[..., None, :]  # (..., 1, d)
        sq_dist = jnp.sum((a - jnp.asarray(self.modes)) ** 2, axis=-1)  # (..., num_modes)
        return jnp.exp(-jnp.min(sq_dist, axis=-1) / (2.0 * self.width**2))

    def reset(self, rng: jax.Array) -> State:
        del rng  # deterministic start
        zero = jnp.zeros((), jnp.float32)
        return State(pipeline_state=None, obs=jnp.ones((1,), jnp.float32), reward=zero, done=zero)

    def step(self, state: State, action: jax.Array) -> State:
        """action: (action_dim,) -> State with the reward and done = 1."""
        reward = self.reward_fn(action).astype(jnp.float32)
        return state.replace(reward=reward, done=jnp.ones((), jnp.float32))

    @property
    def observation_size(self) -> int:
        return 1

    @property
    def action_size(self) -> int:
        return int(self.modes.shape[1])

    @property
    def backend(self) -> str:
        return "builtin"


def make_bandit(name: str = "bandit", width: float = BANDIT_WIDTH) -> Bandit:
    """The registered bandit `name` ("bandit" or "bandit2d")."""
    return Bandit(BANDIT_MODES[name], width=width)


class AliasedReach(Env):
    """Reach a target on a line whose distance is observed but not its side.

    - state: the target's position x* (pipeline_state, float32 of shape ()); reset draws |x*|
      uniformly in [`min_distance`, 1] and its sign with probability 1/2, once per episode.
    - observation: (|x*|,), float32 of shape (1,): how far the target is, not on which side.
    - action: (1,) in [-1, 1], where to reach.
    - reward: 1 when |action - x*| < `goal_radius`, which ends the episode (done = 1); a miss
      gives 0 and leaves everything as it was (the arm returns to its rest pose), so the next
      attempt sees the same observation. The episode wrapper ends the episode unsolved after
      `DEFAULT_EPISODE_LENGTH["aliased_reach"]` (4) attempts. metrics: `success` (0/1).

    The observation leaves the right action ambiguous between two distinct modes, +|x*| and
    -|x*|, and nothing a policy does reveals the side (an under-conditioned task, like a humanoid
    that sees only its root target). A policy with one mode per observation (a deterministic
    policy, or a Gaussian that commits to one side) solves the half of the episodes whose target
    lies on its side; one that reaches for +|x*| or -|x*| with probability 1/2 each solves
    1 - 2^-4 = 94 % of them. A Gaussian wide enough to cover both modes puts most of its mass
    between or beyond them, where the narrow target is not. See experiments/under_conditioned.py.
    """

    def __init__(self, goal_radius: float = 0.05, min_distance: float = 0.2):
        if not 0.0 < goal_radius < min_distance <= 1.0:
            raise ValueError(
                "AliasedReach needs 0 < goal_radius < min_distance <= 1, got "
                f"goal_radius={goal_radius}, min_distance={min_distance}."
            )
        self.goal_radius = float(goal_radius)
        self.min_distance = float(min_distance)

    def reset(self, rng: jax.Array) -> State:
        """rng: (2,) raw key -> State with obs (1,), reward (), done ()."""
        k_distance, k_side = jax.random.split(rng)
        distance = jax.random.uniform(k_distance, (), jnp.float32, self.min_distance, 1.0)
        side = jnp.where(jax.random.bernoulli(k_side), 1.0, -1.0).astype(jnp.float32)
        zero = jnp.zeros((), jnp.float32)
        return State(
            pipeline_state=side * distance,
            obs=distance[None],
            reward=zero,
            done=zero,
            metrics={"success": zero},
        )

    def step(self, state: State, action: jax.Array) -> State:
        """action: (1,) in [-1, 1] -> next State (the same target and observation)."""
        hit = jnp.abs(action[0] - state.pipeline_state) < self.goal_radius
        success = hit.astype(jnp.float32)
        return state.replace(reward=success, done=success, metrics={"success": success})

    @property
    def observation_size(self) -> int:
        return 1

    @property
    def action_size(self) -> int:
        return 1

    @property
    def backend(self) -> str:
        return "builtin"


# name -> constructor(**kwargs); envs.make_env looks names up here.
TOY_ENVS = {
    "aliased_reach": AliasedReach,
    "gridworld": GridWorld,
    "bandit": functools.partial(make_bandit, "bandit"),
    "bandit2d": functools.partial(make_bandit, "bandit2d"),
}
