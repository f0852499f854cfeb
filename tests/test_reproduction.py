"""Switches that reproduce the FPO authors' code where we differ (default: what is right)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY

from fpo_jax import envs, normalization
from fpo_jax.agents import FPOAgent
from fpo_jax.config import TrainConfig, preset
from fpo_jax.trainer import Trainer


def authors_statistics(batches: list[np.ndarray]) -> list[np.ndarray]:
    """The FPO authors' update written out by hand in NumPy (float64): the summed variance is
    replaced by the newest batch's term; the std is sqrt(summed variance / count)."""
    count, mean, summed = 0.0, np.zeros(batches[0].shape[-1]), None
    stds = []
    for batch in batches:
        count += len(batch)
        new_mean = mean + (batch - mean).sum(0) / count
        summed = ((batch - mean) * (batch - new_mean)).sum(0)
        mean = new_mean
        stds.append(np.sqrt(summed / count))
    return stds


def test_reference_statistics_follow_the_authors_update_and_shrink_as_1_over_sqrt_k():
    rng = np.random.default_rng(0)
    batches = [3.0 * rng.standard_normal((4096, 2)) + 1.0 for _ in range(61)]
    want = authors_statistics(batches)
    stats = normalization.RunningStats.zeros(2)
    welford = normalization.RunningStats.zeros(2)
    for k, batch in enumerate(batches, start=1):
        stats = normalization.update(stats, jnp.asarray(batch), mode="reference")
        welford = normalization.update(welford, jnp.asarray(batch))
        np.testing.assert_allclose(stats.std, want[k - 1], rtol=2e-4)
        if k in (2, 4, 16, 61):  # the numbers: 2.11, 1.50, 0.76, 0.38 for std 3
            np.testing.assert_allclose(stats.std, 3.0 / np.sqrt(k), rtol=0.03)
    np.testing.assert_allclose(welford.std, 3.0, rtol=0.01)  # ours: the true std


def one_iteration_pair(**changes):
    config = TrainConfig(env="gridworld", **{**TINY, "num_minibatches": 1, "batch_size": 16,
                                             **changes}, learning_rate=1e-12)  # fmt: skip
    trainer = Trainer(envs.make_env("gridworld"), config)
    step = jax.jit(trainer.train_step)
    state, _ = step(jax.jit(trainer.init)(jax.random.PRNGKey(0)))
    return trainer, state, jax.device_get(step(state)[1])


def test_reference_normalisation_updates_before_the_epochs_so_the_first_ratio_is_not_one():
    _, _, ours = one_iteration_pair()
    np.testing.assert_allclose(ours["ratio_mean"], 1.0, atol=1e-5)
    trainer, state, reference = one_iteration_pair(obs_norm="reference")
    assert abs(float(reference["ratio_mean"]) - 1.0) > 1e-4  # ours: 1 to float rounding (1e-7)
    # Updated once per iteration with all of its observations.
    assert float(state.obs_stats.count) == trainer.config.env_steps_per_iteration


def test_dppo_is_evaluated_with_its_stochastic_chain():
    for env in ("CheetahRun", "ant", "gridworld"):
        c = preset(env, "dppo")
        assert (c.eval_integrator, c.eval_sigma) == ("stochastic", c.dppo_sigma)
    assert preset("CheetahRun", "fpo").eval_integrator == "euler"


@pytest.mark.parametrize("flow_steps", [4, 10])
def test_pair_times_follow_the_rollout_sampler_grid(flow_steps):
    config = TrainConfig(env="gridworld", **{**TINY, "flow_steps": flow_steps, "num_pairs": 64})
    agent = FPOAgent(config, 2)
    params = agent.init(jax.random.PRNGKey(0), 2)
    _, extras = agent.act(params, jnp.zeros((32, 2)), jax.random.PRNGKey(1))
    grid = np.arange(1, flow_steps + 1) / flow_steps
    np.testing.assert_allclose(np.unique(extras["t"]), grid, rtol=1e-6)


def test_per_sample_ratios_clamp_the_log_ratio_at_3_by_default():
    def clamp(**changes):
        return FPOAgent(TrainConfig(**changes), 2).log_ratio_clamp

    assert clamp(ratio="per_sample") == 3.0
    assert clamp(ratio="mean") is None
    assert clamp(ratio="per_sample", log_ratio_clamp=5.0) == 5.0
    assert clamp(ratio="per_sample", log_ratio_clamp=float("inf")) is None


@pytest.mark.parametrize("refresh", [True, False])
def test_initial_state_refresh_can_be_switched_off(refresh):
    config = TrainConfig(env="gridworld", **TINY, refresh_initial_states=refresh)
    trainer = Trainer(envs.make_env("gridworld"), config)
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0))
    after, _ = jax.jit(trainer.collect)(state)
    before_cache = state.env_state.info["first_obs"]
    changed = not np.array_equal(after.env_state.info["first_obs"], before_cache)
    assert changed == refresh
