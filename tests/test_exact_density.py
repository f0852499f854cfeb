"""What the sampler's exact density allows: PPO on the exact ratio of a flow policy
(``algo="flow_ppo"``) and an entropy bonus for flow policies (``flow_entropy_cost``)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fpo_jax.agents import FlowPPOAgent, FPOAgent
from fpo_jax.errors import ConfigError
from fpo_jax.presets import preset


def _batch(agent, seed=0, n=16):
    obs = jax.random.normal(jax.random.PRNGKey(seed), (n, 1))
    params = agent.init(jax.random.PRNGKey(seed + 1), 1)
    raw_action, extras = agent.act(params, obs, jax.random.PRNGKey(seed + 2))
    advantages = jax.random.normal(jax.random.PRNGKey(seed + 3), (n,))
    return params, obs, raw_action, extras, advantages


def test_flow_ppo_ratio_is_exactly_one_before_the_update_and_moves_after():
    config = dataclasses.replace(preset("bandit", "flow_ppo"), flow_steps=4)
    agent = FlowPPOAgent(config, 1)
    params, obs, raw_action, extras, adv = _batch(agent)
    assert extras["log_prob"].shape == (16,) and bool(jnp.all(jnp.isfinite(extras["log_prob"])))
    loss, metrics = agent.objective(params, obs, raw_action, extras, adv)
    assert float(metrics["ratio_max"]) == float(metrics["ratio_min"]) == 1.0
    assert float(metrics["exact_density_failures"]) == 0.0
    grads = jax.grad(lambda p: agent.objective(p, obs, raw_action, extras, adv)[0])(params)
    assert any(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(grads))
    moved = jax.tree.map(lambda p, g: p - 0.05 * g, params, grads)
    _, after = agent.objective(moved, obs, raw_action, extras, adv)
    assert float(after["ratio_max"]) > 1.0 > float(after["ratio_min"])


def test_the_flow_entropy_bonus_is_read_only_when_on_and_reaches_the_parameters():
    off = FPOAgent(dataclasses.replace(preset("bandit"), flow_steps=4), 1)
    _, _, _, extras_off, _ = _batch(off)
    assert "noise" not in extras_off  # the default program stores nothing more
    on = FPOAgent(dataclasses.replace(off.config, flow_entropy_cost=0.1), 1)
    params, obs, raw_action, extras, adv = _batch(on)
    np.testing.assert_array_equal(raw_action, _batch(off)[2])  # the same actions either way
    _, metrics = on.objective(params, obs, raw_action, extras, adv)
    assert np.isfinite(float(metrics["entropy"]))

    def entropy_part(p):
        return (
            on.objective(p, obs, raw_action, extras, adv)[0]
            - off.objective(p, obs, raw_action, extras_off, adv)[0]
        )

    grads = jax.grad(entropy_part)(params)
    assert any(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(grads))


def test_exact_density_features_are_refused_for_large_action_spaces():
    with pytest.raises(ConfigError, match="algo='flow_ppo' needs the sampler's exact density"):
        FlowPPOAgent(preset("ant", "flow_ppo"), 8)
    with pytest.raises(ConfigError, match="flow_entropy_cost needs"):
        FPOAgent(dataclasses.replace(preset("ant"), flow_entropy_cost=0.01), 8)
    from fpo_jax.train import train

    with pytest.raises(ConfigError, match="flow_entropy_cost=0.1 has no effect with algo='ppo'"):
        train("bandit", algo="ppo", flow_entropy_cost=0.1)


@pytest.mark.slow
def test_flow_ppo_and_the_entropy_bonus_train_through_the_api():
    from fpo_jax.train import train

    tiny = dict(num_timesteps=2_048, num_evals=1, progress=False, flow_steps=4)
    for algo, extra in (("flow_ppo", {}), ("fpo", dict(flow_entropy_cost=0.01))):
        result = train("bandit", algo=algo, **tiny, **extra)
        record = result.history[-1]
        assert np.isfinite(record["eval/episode_return"]) and np.isfinite(record["policy_loss"])


@pytest.mark.slow
@pytest.mark.parametrize(
    "env, changes",
    [("CartpoleBalance", {}), ("inverted_pendulum", {"backend": "spring"})],
    ids=["playground", "brax"],
)
def test_flow_ppo_with_the_entropy_bonus_trains_on_real_simulators(env, changes, tiny):
    """Flow PPO on the sampler's exact ratio, with the flow entropy bonus, on a Playground and
    a Brax env: the exact density is found for every action of a simulator's batch and the bonus is
    measured."""
    from fpo_jax.train import train

    result = train(env, algo="flow_ppo", flow_entropy_cost=0.01, num_timesteps=2 * 8 * 2 * 8,
                   num_evals=1, progress=False, **tiny, **changes)  # fmt: skip
    record = result.history[-1]
    assert record["exact_density_failures"] == 0.0
    assert np.isfinite(record["entropy"]) and np.isfinite(record["policy_loss"])
    assert np.isfinite(record["eval/episode_return"])
    assert result.config.algo == "flow_ppo" and result.config.flow_entropy_cost == 0.01
