"""Evaluation in one module: what it plays, and that its description says what happens."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fpo_jax import evaluation
from fpo_jax.config import TrainConfig, replace
from fpo_jax.envs import make_env
from fpo_jax.normalization import RunningStats
from fpo_jax.presets import preset
from fpo_jax.trainer import Trainer

TINY = dict(num_envs=4, batch_size=4, num_minibatches=1, unroll_length=4, num_eval_envs=4,
            episode_length=5, policy_hidden=(8,), value_hidden=(8,))  # fmt: skip


@pytest.mark.parametrize(
    ("algo", "changes", "deterministic", "words"),
    [
        ("fpo", {}, False, "from random noise, euler x 10 steps, the live policy"),
        ("fpo", dict(eval_noise="zero"), True, "from zero noise"),
        ("fpo", dict(eval_noise="zero", eval_integrator="stochastic", eval_sigma=0.1), False,
         "stochastic x 10 steps (sigma 0.1)"),
        ("ppo", dict(eval_noise="zero"), True, "the mean action, the live policy"),
        ("ppo", dict(eval_noise="random"), False, "a Gaussian sample"),
        ("dppo", {}, False, "stochastic x 10 steps (sigma 0.05)"),
        ("fpo", dict(eval_noise="zero", ema_decay=0.9), True, "the EMA actor"),
    ],
)  # fmt: skip
def test_the_description_says_what_the_policy_does(algo, changes, deterministic, words):
    config = replace(preset("bandit2d", algo), **TINY, **changes)
    trainer = Trainer(make_env("bandit2d"), config)
    line = trainer.describe_evaluation()
    assert line.startswith("deterministic" if deterministic else "stochastic"), line
    assert words in line and "4 episodes of up to 5 steps" in line, line
    # The claim is checked against the policy itself: the same observations under two keys.
    agent = trainer.agent
    params = agent.init(jax.random.PRNGKey(0), trainer.obs_size)
    stats = RunningStats.zeros(trainer.obs_size)
    policy = evaluation.make_policy(agent, params, stats, config)
    obs = jax.random.normal(jax.random.PRNGKey(1), (64, trainer.obs_size))
    a, b = policy(obs, jax.random.PRNGKey(2)), policy(obs, jax.random.PRNGKey(3))
    assert bool(jnp.all(a == b)) == deterministic
    assert bool(jnp.all(jnp.abs(a) <= 1.0))


def test_with_sampler_changes_only_what_is_given():
    config = TrainConfig(env="gridworld", eval_noise="random", eval_flow_steps=10)
    assert evaluation.with_sampler(config) is config
    moved = evaluation.with_sampler(config, noise="zero", flow_steps=4)
    assert (moved.eval_noise, moved.eval_flow_steps) == ("zero", 4)
    assert (moved.eval_integrator, moved.eval_sigma) == (config.eval_integrator, config.eval_sigma)


def test_the_ema_actor_is_evaluated_and_the_live_policy_beside_it_on_the_same_episodes():
    config = replace(preset("bandit2d", "fpo"), **TINY, ema_decay=0.9, eval_noise="zero")
    trainer = Trainer(make_env("bandit2d"), config)
    state = trainer.init(jax.random.PRNGKey(0))
    # Make the EMA copy differ from the live policy.
    ema = jax.tree.map(lambda x: x + 0.5, state.params["policy"])
    state = state.replace(ema_params=ema)
    key = jax.random.PRNGKey(4)
    out = jax.jit(trainer.evaluate)(state, key)

    def returns(params):
        policy = trainer.policy_fn(params, state.obs_stats)
        return evaluation.run_episodes(trainer.eval_env, policy, key, config)

    ema_run = returns({**state.params, "policy": ema})
    live_run = returns(state.params)
    np.testing.assert_allclose(out["eval/episode_return"], ema_run["eval/episode_return"])
    np.testing.assert_allclose(out["eval/live_episode_return"], live_run["eval/episode_return"])
    np.testing.assert_allclose(
        out["eval/ema_minus_live_return"],
        ema_run["eval/episode_return"] - live_run["eval/episode_return"],
        rtol=1e-6, atol=1e-6,
    )  # fmt: skip
    assert evaluation.evaluated_params(state.params, None) is state.params
    assert evaluation.evaluated_params(state.params, ema)["policy"] is ema


def test_episodes_stop_counting_at_their_end():
    # bandit2d episodes last one step: any longer limit still counts one step and one reward.
    config = replace(preset("bandit2d", "fpo"), **{**TINY, "episode_length": 7})
    trainer = Trainer(make_env("bandit2d"), config)
    state = trainer.init(jax.random.PRNGKey(0))
    out = jax.jit(trainer.evaluate)(state, jax.random.PRNGKey(1))
    assert float(out["eval/episode_length"]) == 1.0
