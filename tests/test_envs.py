"""Tests for fpo_jax.envs and fpo_jax.toy_envs on the real simulators (Brax, MJX via Playground).

Compiles are the cost here, so each simulator compiles two functions once (module fixtures):
the batched reset, and one rollout that scans the step and then refreshes the initial states.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mujoco_playground._src import mjx_env as pg_mjx_env

from fpo_jax import envs, toy_envs
from fpo_jax.config import ConfigError

NUM_ENVS = 4
EPISODE_LENGTH = 5
NUM_STEPS = 7  # past the episode limit, so every env auto-resets once


def _avals(tree) -> list:
    """(path, shape, dtype, weak_type) per leaf; a list because MJX data has numpy static fields."""
    return [
        (jax.tree_util.keystr(path), x.shape, x.dtype, jax.typeof(x).weak_type)
        for path, x in jax.tree_util.tree_leaves_with_path(tree)
    ]


def _keys(seed: int, n: int = NUM_ENVS) -> jax.Array:
    return jax.random.split(jax.random.PRNGKey(seed), n)


class Compiled:
    """A wrapped env with its jitted reset and rollout (scan of step, then refresh)."""

    def __init__(self, env, episode_length: int = EPISODE_LENGTH):
        self.env = env
        self.wrapped = envs.wrap_for_training(env, episode_length=episode_length)
        self.traces = 0

        def rollout(state, actions, refresh_keys):
            self.traces += 1  # Python side effect: runs once per trace

            def body(s, a):
                s = self.wrapped.step(s, a)
                return s, s

            final, traj = jax.lax.scan(body, state, actions)
            refreshed = envs.refresh_initial_states(self.wrapped, final, refresh_keys)
            return final, traj, refreshed

        self.reset = jax.jit(self.wrapped.reset)
        self.rollout = jax.jit(rollout)
        self.state0 = self.reset(_keys(0))
        self.actions = jnp.zeros((NUM_STEPS, NUM_ENVS, env.action_size))
        self.final, self.traj, self.refreshed = self.rollout(self.state0, self.actions, _keys(1))


@pytest.fixture(scope="module")
def brax_run() -> Compiled:
    return Compiled(envs.make_env("inverted_pendulum", backend="spring"))


@pytest.fixture(scope="module")
def playground_run() -> Compiled:
    return Compiled(envs.make_env("CartpoleBalance"))


@pytest.fixture(params=["brax", "playground"])
def run(request) -> Compiled:
    return request.getfixturevalue(f"{request.param}_run")


def _first_obs(state):
    key = "first_obs" if "first_obs" in state.info else "AutoResetWrapper_first_obs"
    return state.info[key]


# ----------------------------------------------------------------------------------------------
# Registry


def test_make_env_sources():
    assert envs.list_envs().keys() == {"brax", "playground", "builtin"}
    assert {"ant", "inverted_pendulum"} <= set(envs.list_envs()["brax"])
    assert "CartpoleBalance" in envs.list_envs()["playground"]
    assert set(envs.list_envs()["builtin"]) == {"gridworld", "bandit", "bandit2d", "aliased_reach"}

    brax_env = envs.make_env("inverted_pendulum", backend="generalized")
    assert brax_env.backend == "generalized" and not envs.is_playground_env(brax_env)
    assert envs.env_sizes(brax_env) == (4, 1)

    pg_env = envs.make_env("cartpolebalance")  # differs only by case
    assert envs.is_playground_env(pg_env)
    assert pg_env._config.impl == "jax"  # not Playground's CPU-slow "warp" default
    assert envs.env_sizes(pg_env) == (5, 1)

    assert envs.env_sizes(envs.make_env("gridworld")) == (2, 2)
    assert envs.env_sizes(envs.make_env("bandit")) == (1, 1)
    assert envs.env_sizes(envs.make_env("bandit2d")) == (1, 2)
    assert envs.DEFAULT_EPISODE_LENGTH["gridworld"] == 100


@pytest.mark.parametrize(
    ("name", "suggestion"), [("CartpoleBalanc", "CartpoleBalance"), ("antt", "ant")]
)
def test_unknown_name_lists_close_matches(name, suggestion):
    with pytest.raises(ValueError, match="Unknown environment") as info:
        envs.make_env(name)
    assert suggestion in str(info.value)


def test_bad_backend_and_impl():
    with pytest.raises(ValueError, match="Brax backend"):
        envs.make_env("inverted_pendulum", backend="physx")
    with pytest.raises(ValueError, match="only to Brax envs"):
        envs.make_env("CartpoleBalance", backend="spring")
    with pytest.raises(ValueError, match="Playground impl"):
        envs.make_env("CartpoleBalance", impl="cuda")


def test_missing_menagerie_assets(monkeypatch, tmp_path):
    # An empty asset folder: Playground skips its download and MuJoCo fails to open the meshes.
    monkeypatch.setattr(pg_mjx_env, "MENAGERIE_PATH", tmp_path)
    with pytest.raises(ConfigError, match="Menagerie"):
        envs.make_env("Go1JoystickFlatTerrain")


def test_flat_obs():
    x = jnp.zeros((3, 7))
    assert envs.flat_obs(x) is x
    assert envs.flat_obs({"state": x, "privileged_state": jnp.zeros((3, 9))}) is x
    with pytest.raises(ValueError, match="no 'state' entry"):
        envs.flat_obs({"pixels": x})


def test_strip_weak_types():
    tree = {"weak": jnp.asarray(1.0), "py": 2.0, "strong": jnp.zeros(2, jnp.int32), "none": None}
    assert jax.typeof(tree["weak"]).weak_type
    out = envs.strip_weak_types(tree)
    assert not any(jax.typeof(x).weak_type for x in jax.tree.leaves(out))
    assert out["weak"].dtype == jnp.float32 and out["strong"].dtype == jnp.int32
    traced = jax.jit(lambda x: envs.strip_weak_types(x * 2.0))(1.0)  # works on tracers
    assert not jax.typeof(traced).weak_type


# ----------------------------------------------------------------------------------------------
# Training wrapper on Brax and Playground


def test_training_shapes(run):
    obs_size, action_size = envs.env_sizes(run.env)
    assert run.state0.obs.shape == (NUM_ENVS, obs_size)
    assert run.state0.reward.shape == run.state0.done.shape == (NUM_ENVS,)
    assert run.traj.obs.shape == (NUM_STEPS, NUM_ENVS, obs_size)
    assert run.traj.reward.shape == (NUM_STEPS, NUM_ENVS)
    assert np.all(np.isfinite(run.traj.obs))


def test_state_avals_match_and_no_retrace(run):
    # Equal avals (shape, dtype, weak_type) between reset and step: the scan-carry condition.
    step_state = jax.tree.map(lambda x: x[0], run.traj)
    assert _avals(run.state0) == _avals(step_state) == _avals(run.final) == _avals(run.refreshed)
    before = run.traces
    run.rollout(run.final, run.actions, _keys(2))  # feed the step output back in
    assert run.traces == before


def test_auto_reset(run):
    steps, done, trunc = (
        np.asarray(x) for x in (run.traj.info["steps"], run.traj.done, run.traj.info["truncation"])
    )
    # Zero actions keep both poles up for 5 steps: every episode ends by the time limit.
    assert np.all(done[: EPISODE_LENGTH - 1] == 0)
    assert np.all(done[EPISODE_LENGTH - 1] == 1) and np.all(trunc[EPISODE_LENGTH - 1] == 1)
    expected = np.array([1, 2, 3, 4, 5, 1, 2], np.float32)[:, None]
    np.testing.assert_array_equal(steps, np.broadcast_to(expected, steps.shape))
    # The done step returns the cached first observation (the reset one).
    np.testing.assert_allclose(run.traj.obs[EPISODE_LENGTH - 1], run.state0.obs)


def test_refresh_initial_states(run):
    final, refreshed = run.final, run.refreshed
    # Running episodes are untouched...
    np.testing.assert_array_equal(refreshed.obs, final.obs)
    np.testing.assert_array_equal(refreshed.info["steps"], final.info["steps"])
    physics = "pipeline_state" if hasattr(final, "pipeline_state") else "data"
    jax.tree.map(
        np.testing.assert_array_equal, getattr(refreshed, physics), getattr(final, physics)
    )
    # ...while the cache now holds a fresh reset's first states.
    fresh = run.reset(_keys(1))
    np.testing.assert_allclose(_first_obs(refreshed), fresh.obs)
    assert not np.allclose(_first_obs(refreshed), _first_obs(final))
    assert _avals(refreshed) == _avals(final)


def test_refresh_needs_auto_reset_state():
    env = envs.wrap_for_eval(envs.make_env("bandit"), episode_length=1)
    with pytest.raises(ValueError, match="cached first state"):
        envs.refresh_initial_states(env, env.reset(_keys(0)), _keys(1))


def test_full_reset_is_playground_only():
    with pytest.raises(ValueError, match="full_reset"):
        envs.wrap_for_training(envs.make_env("gridworld"), episode_length=5, full_reset=True)


def test_reset_keys():
    wrapped = envs.wrap_for_training(envs.make_env("gridworld"), episode_length=5)
    typed = jax.random.split(jax.random.key(0), NUM_ENVS)
    raw = jax.random.key_data(typed)
    np.testing.assert_array_equal(wrapped.reset(typed).obs, wrapped.reset(raw).obs)
    with pytest.raises(ValueError, match="one key per env"):
        wrapped.reset(jax.random.PRNGKey(0))


# ----------------------------------------------------------------------------------------------
# Eval wrapper


def test_eval_has_no_auto_reset():
    env = envs.make_env("gridworld", start=(12, 12))
    wrapped = envs.wrap_for_eval(env, episode_length=3)
    state = wrapped.reset(_keys(0))

    def body(s, a):
        s = wrapped.step(s, a)
        return s, s

    actions = jnp.ones((6, NUM_ENVS, 2))  # move +x, +y each step: never reaches a goal row
    _, traj = jax.jit(lambda s, a: jax.lax.scan(body, s, a))(state, actions)
    np.testing.assert_array_equal(
        traj.done, np.array([0, 0, 1, 1, 1, 1.0])[:, None] * np.ones(NUM_ENVS)
    )
    np.testing.assert_array_equal(traj.info["steps"][:, 0], np.arange(1, 7))
    # No reset: the walk continues from where it was (x = 12 + t until the wall at 24).
    np.testing.assert_allclose(traj.obs[:, 0, 0], (np.arange(13, 19) - 12) / 12)
    assert "first_obs" not in state.info


@pytest.mark.parametrize(
    ("name", "kwargs"), [("inverted_pendulum", {"backend": "spring"}), ("CartpoleBalance", {})]
)
def test_eval_wrapper_state_types(name, kwargs):
    # Traced only (no compile): reset and step states have equal avals, no auto-reset caches.
    env = envs.make_env(name, **kwargs)
    wrapped = envs.wrap_for_eval(env, episode_length=5)
    state = jax.eval_shape(wrapped.reset, _keys(0))
    stepped = jax.eval_shape(wrapped.step, state, jnp.zeros((NUM_ENVS, env.action_size)))
    assert _avals(state) == _avals(stepped)
    assert state.obs.shape == (NUM_ENVS, envs.env_sizes(env)[0])
    assert not any("first" in k for k in state.info)


# ----------------------------------------------------------------------------------------------
# Toy envs


def test_gridworld_goals():
    env = toy_envs.GridWorld()
    bottom = env.step(toy_envs.GridWorld(start=(3, 2)).reset(None), jnp.array([0.0, -1.0]))
    assert float(bottom.reward) == 20.0 and float(bottom.done) == 1.0
    assert (
        float(bottom.metrics["reached_bottom"]) == 1.0
        and float(bottom.metrics["reached_top"]) == 0.0
    )
    top = env.step(toy_envs.GridWorld(start=(20, 22)).reset(None), jnp.array([0.5, 0.9]))
    assert float(top.reward) == 20.0 and float(top.done) == 1.0
    assert float(top.metrics["reached_top"]) == 1.0
    np.testing.assert_array_equal(top.pipeline_state, [21, 23])
    inner = env.step(toy_envs.GridWorld(start=(12, 12)).reset(None), jnp.array([1.0, 1.0]))
    assert float(inner.reward) == 0.0 and float(inner.done) == 0.0


def test_gridworld_obs_and_actions():
    env = toy_envs.GridWorld(start=(0, 2))
    state = env.reset(None)
    np.testing.assert_allclose(state.obs, [-1.0, -10 / 12])
    assert state.obs.dtype == jnp.float32 and state.obs.shape == (2,)
    np.testing.assert_array_equal(
        toy_envs.discretize_action(jnp.array([-1.0, -0.34, -0.3, 0.0, 0.3, 0.34, 1.0])),
        [-1, -1, 0, 0, 0, 1, 1],
    )
    state = env.step(state, jnp.array([-0.9, 0.2]))  # x clipped at the wall, y stays
    np.testing.assert_array_equal(state.pipeline_state, [0, 2])
    state = env.step(state, jnp.array([0.9, 0.4]))
    np.testing.assert_array_equal(state.pipeline_state, [1, 3])
    np.testing.assert_allclose(state.obs, (np.array([1, 3]) - 12) / 12)


def test_gridworld_authors_move_threshold_rounds_the_raw_action():
    # The FPO authors' env moves by round(clip(a, -1, 1)) of the raw action a; ours receives
    # tanh(a). With AUTHORS_MOVE_THRESHOLD both give the same move for every raw a.
    raw = jnp.array([-3.0, -0.9, -0.51, -0.49, -0.2, 0.0, 0.3, 0.49, 0.51, 0.8, 2.5])
    theirs = np.round(np.clip(np.asarray(raw), -1, 1)).astype(int)
    ours = toy_envs.discretize_action(jnp.tanh(raw), toy_envs.AUTHORS_MOVE_THRESHOLD)
    np.testing.assert_array_equal(ours, theirs)
    # The default thresholds (1/3 after tanh) move already at |a| = 0.4.
    assert int(toy_envs.discretize_action(jnp.tanh(jnp.array(0.4)))) == 1
    env = toy_envs.GridWorld(start=(12, 12), move_threshold=toy_envs.AUTHORS_MOVE_THRESHOLD)
    state = env.step(env.reset(None), jnp.tanh(jnp.array([0.4, -0.6])))
    np.testing.assert_array_equal(state.pipeline_state, [12, 11])
    with pytest.raises(ValueError, match="move_threshold"):
        toy_envs.GridWorld(move_threshold=1.0)


def test_gridworld_starts():
    env = toy_envs.GridWorld()
    pos = np.asarray(jax.vmap(env.reset)(_keys(0, 4000)).pipeline_state)
    assert pos[:, 1].min() == 2 and pos[:, 1].max() == 22  # never on a goal row
    assert pos[:, 0].min() == 0 and pos[:, 0].max() == 24
    fixed = jax.vmap(envs.make_env("gridworld", start=(12, 12)).reset)(_keys(0, 8))
    np.testing.assert_array_equal(fixed.pipeline_state, np.full((8, 2), 12))
    with pytest.raises(ValueError, match="non-goal cell"):
        toy_envs.GridWorld(start=(12, 24))


def test_gridworld_training_wrapper():
    # Episode limit 100 from the episode wrapper; a goal reached ends the episode early.
    wrapped = envs.wrap_for_training(envs.make_env("gridworld", start=(12, 3)), episode_length=100)
    state = wrapped.reset(_keys(0))
    down = jnp.broadcast_to(jnp.array([0.0, -1.0]), (NUM_ENVS, 2))
    for _ in range(2):
        state = wrapped.step(state, down)
    np.testing.assert_array_equal(state.reward, 20.0)
    np.testing.assert_array_equal(state.info["truncation"], 0.0)  # terminated, not truncated
    np.testing.assert_allclose(state.obs, np.broadcast_to([0.0, -9 / 12], (NUM_ENVS, 2)))  # reset
    np.testing.assert_array_equal(state.info["episode_metrics"]["reached_bottom"], 1.0)


def test_bandits():
    env = envs.make_env("bandit")
    state = env.reset(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(state.obs, [1.0])
    rewards = [float(env.step(state, jnp.array(a)).reward) for a in ([-0.6], [0.6], [0.0])]
    assert rewards[0] == pytest.approx(1.0) and rewards[1] == pytest.approx(1.0)
    assert rewards[2] < 1e-3
    grid = jnp.linspace(-1, 1, 201)[:, None]
    assert float(env.reward_fn(grid).max()) <= 1.0 + 1e-6
    assert float(env.step(state, jnp.array([0.6])).done) == 1.0

    env2 = envs.make_env("bandit2d")
    for mode in toy_envs.BANDIT_MODES["bandit2d"]:
        assert float(env2.reward_fn(jnp.asarray(mode))) == pytest.approx(1.0)
    assert float(env2.reward_fn(jnp.array([0.6, -0.6]))) < 1e-3  # off-diagonal corner
    assert float(env2.reward_fn(jnp.zeros(2))) < 1e-3

    wrapped = envs.wrap_for_training(env2, episode_length=1)
    out = wrapped.step(wrapped.reset(_keys(0)), jnp.full((NUM_ENVS, 2), 0.6))
    np.testing.assert_array_equal(out.done, 1.0)
    np.testing.assert_array_equal(out.info["truncation"], 0.0)
    np.testing.assert_allclose(out.reward, 1.0, rtol=1e-6)


def test_aliased_reach_hides_the_side_and_rewards_only_a_hit():
    env = envs.make_env("aliased_reach")
    states = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(0), 2000))
    target = np.asarray(states.pipeline_state)
    np.testing.assert_allclose(np.asarray(states.obs)[:, 0], np.abs(target))  # distance only
    assert 0.4 < np.mean(target > 0) < 0.6 and np.abs(target).min() >= 0.2
    state = env.reset(jax.random.PRNGKey(1))
    x = float(state.pipeline_state)
    hit = env.step(state, jnp.array([x + 0.04]))
    assert float(hit.reward) == 1.0 and float(hit.done) == 1.0 and float(hit.metrics["success"])
    miss = env.step(state, jnp.array([-x]))  # the other side: nothing changes
    assert float(miss.reward) == 0.0 and float(miss.done) == 0.0
    np.testing.assert_array_equal(miss.obs, state.obs)
    assert float(miss.pipeline_state) == x
    with pytest.raises(ValueError, match="goal_radius"):
        envs.make_env("aliased_reach", goal_radius=0.3)


def test_aliased_reach_pays_for_both_modes_and_not_for_one():
    # Over 4 attempts (the episode wrapper's limit): one mode per observation solves the half
    # of the episodes on its side; +-|x*| with probability 1/2 each solves 1 - 2^-4 of them.
    env = envs.wrap_for_training(
        envs.make_env("aliased_reach"),
        episode_length=toy_envs.DEFAULT_EPISODE_LENGTH["aliased_reach"],
    )

    def success(policy):
        state, solved = env.reset(_keys(0, 4096)), np.zeros(4096, bool)
        for t in range(toy_envs.DEFAULT_EPISODE_LENGTH["aliased_reach"]):
            state = env.step(state, policy(state.obs, jax.random.PRNGKey(t)))
            solved |= np.asarray(state.reward) > 0  # an episode ends at its first hit
        return solved.mean()

    one_mode = success(lambda obs, key: obs)
    both = success(
        lambda obs, key: obs * jnp.where(jax.random.bernoulli(key, 0.5, obs.shape), 1, -1)
    )
    assert one_mode == pytest.approx(0.5, abs=0.03)
    assert both == pytest.approx(1 - 0.5**4, abs=0.02)
