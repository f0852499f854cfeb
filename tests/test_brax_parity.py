"""Switches that reproduce Brax PPO's trainer (``--variant brax``) and what they change."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY

from fpo_jax import envs, normalization
from fpo_jax.agents import GaussianPPOAgent
from fpo_jax.config import TrainConfig
from fpo_jax.presets import preset
from fpo_jax.trainer import Trainer


def test_brax_statistics_are_exact_and_unclipped():
    rng = np.random.default_rng(0)
    batches = [5.0 * rng.standard_normal((512, 3)) + 2.0 for _ in range(4)]
    stats = normalization.RunningStats.zeros(3)
    for batch in batches:
        stats = normalization.update(stats, jnp.asarray(batch), mode="brax")
    everything = np.concatenate(batches)
    np.testing.assert_allclose(stats.mean, everything.mean(0), rtol=1e-4)
    np.testing.assert_allclose(stats.std, everything.std(0), rtol=1e-4)
    far = jnp.asarray(stats.mean + 50.0 * stats.std)[None]
    np.testing.assert_allclose(normalization.normalize(stats, far, mode="brax"), 50.0, rtol=1e-4)
    np.testing.assert_allclose(normalization.normalize(stats, far), 10.0)  # welford clips
    with pytest.raises(ValueError, match="Unknown normalisation mode 'brx'"):
        normalization.normalize(stats, far, mode="brx")


def test_brax_order_stores_raw_observations_and_updates_statistics_before_the_epochs():
    def trainer(obs_norm: str) -> Trainer:
        config = TrainConfig(env="gridworld", algo="ppo", **TINY, obs_norm=obs_norm)
        return Trainer(envs.make_env("gridworld"), config)

    welford, brax = trainer("welford"), trainer("brax")
    state = jax.jit(welford.init)(jax.random.PRNGKey(0))
    state, _ = jax.jit(welford.train_step)(state)  # statistics now hold one iteration
    after_w, rollout_w = jax.jit(welford.collect)(state)
    after_b, rollout_b = jax.jit(brax.collect)(state)
    # Both act with the statistics of the start of the iteration: the same actions.
    np.testing.assert_array_equal(rollout_b.traj["raw_action"], rollout_w.traj["raw_action"])
    # Welford stores what the policy saw; Brax stores raw observations (normalised in the loss).
    seen = normalization.normalize(state.obs_stats, rollout_b.traj["obs"])
    np.testing.assert_allclose(rollout_w.traj["obs"], seen, rtol=1e-5, atol=1e-6)
    assert not np.allclose(rollout_b.traj["obs"], rollout_w.traj["obs"])
    # Both end the rollout with the exact statistics of every observation so far.
    per_iteration = welford.config.env_steps_per_iteration
    for after in (after_w, after_b):
        assert float(after.obs_stats.count) == 2 * per_iteration
    np.testing.assert_allclose(after_b.obs_stats.mean, after_w.obs_stats.mean, rtol=1e-4)
    np.testing.assert_allclose(after_b.obs_stats.std, after_w.obs_stats.std, rtol=1e-4)


def test_brax_order_makes_the_first_ratio_differ_from_one():
    config = TrainConfig(env="gridworld", algo="ppo", **{**TINY, "num_minibatches": 1,
                         "batch_size": 16}, learning_rate=1e-12, obs_norm="brax")  # fmt: skip
    trainer = Trainer(envs.make_env("gridworld"), config)
    step = jax.jit(trainer.train_step)
    state, _ = step(jax.jit(trainer.init)(jax.random.PRNGKey(0)))
    _, metrics = step(state)
    # The loss sees statistics the policy did not act with (as in Brax PPO).
    assert abs(float(metrics["ratio_mean"]) - 1.0) > 1e-4


@pytest.mark.parametrize("noise", ["zero", "random"])
def test_gaussian_evaluation_is_the_mean_or_a_sample(noise):
    agent = GaussianPPOAgent(TrainConfig(algo="ppo", **TINY, eval_noise=noise), 2)
    params = agent.init(jax.random.PRNGKey(0), 3)
    obs = jnp.zeros((20_000, 3))  # one state: every row has the same loc and scale
    loc, scale = agent.distribution(params, obs)
    action = agent.eval_act(params, obs, jax.random.PRNGKey(1))
    if noise == "zero":
        np.testing.assert_array_equal(action, loc)
    else:
        np.testing.assert_allclose(np.mean(action, 0), loc[0], atol=4 * float(scale.max()) / 100)
        np.testing.assert_allclose(np.std(action, 0), scale[0], rtol=0.03)


def test_ppo_presets_evaluate_the_mean_and_the_brax_variant_samples():
    for env in ("CartpoleBalance", "ant", "gridworld"):
        assert preset(env, "ppo").eval_noise == "zero"
    for env in ("CartpoleBalance", "ant"):
        c = preset(env, "ppo", variant="brax")
        assert (c.eval_noise, c.obs_norm, c.refresh_initial_states) == ("random", "brax", False)


@pytest.mark.parametrize("task", ["CartpoleBalance", "PendulumSwingup", "BallInCup"])
def test_brax_variant_is_playgrounds_brax_ppo_config(task):
    """Each number of --variant brax against Playground's own config for the task."""
    from mujoco_playground.config import dm_control_suite_params

    brax = dm_control_suite_params.brax_ppo_config(task)
    ours = preset(task, "ppo", variant="brax")
    pairs = {
        "learning_rate": "learning_rate", "entropy_cost": "entropy_cost",
        "discount": "discounting", "reward_scaling": "reward_scaling",
        "num_envs": "num_envs", "batch_size": "batch_size",
        "num_minibatches": "num_minibatches", "unroll_length": "unroll_length",
        "num_epochs": "num_updates_per_batch", "action_repeat": "action_repeat",
        "episode_length": "episode_length", "normalize_observations": "normalize_observations",
        "num_timesteps": "num_timesteps",
    }  # fmt: skip
    for field, key in pairs.items():
        assert getattr(ours, field) == brax[key], field
    # Brax PPO's own defaults for what Playground leaves unset.
    import inspect

    from brax.training.agents.ppo import train as ppo_train

    defaults = inspect.signature(ppo_train.train).parameters
    assert ours.clip_epsilon == defaults["clipping_epsilon"].default
    assert ours.gae_lambda == defaults["gae_lambda"].default
    assert ours.max_grad_norm == defaults["max_grad_norm"].default
    assert ours.normalize_advantages == defaults["normalize_advantage"].default
    # Brax's value loss is 0.5 * vf_loss_coefficient * MSE; ours is value_loss_coef * MSE.
    assert ours.value_loss_coef == 0.5 * defaults["vf_loss_coefficient"].default
