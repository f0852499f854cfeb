"""Switches that reproduce the FPO authors' code where we differ (default: what is right)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY

from fpo_jax import envs, loss, normalization
from fpo_jax.agents import FPOAgent, GaussianPPOAgent
from fpo_jax.config import ConfigError, TrainConfig, replace, validate
from fpo_jax.presets import preset
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


# --- GridWorld at the FPO authors' settings ----------------------------------------------------


def test_gridworld_paper_variant_is_the_authors_run_and_the_default_stays_cpu_fast():
    fpo = preset("gridworld", "fpo", variant="paper")
    assert (fpo.num_pairs, fpo.t_sampler, fpo.cfm_weighting) == (50, "uniform", "velocity")
    assert (fpo.clip_epsilon, fpo.learning_rate, fpo.max_grad_norm) == (0.2, 3e-4, 0.5)
    assert (fpo.discount, fpo.gae_lambda) == (0.99, 0.98)
    assert (fpo.num_epochs, fpo.num_minibatches, fpo.episode_length) == (10, 6, 100)
    assert abs(fpo.env_steps_per_iteration - 2048) <= 10  # theirs: 2048 steps per batch
    assert (fpo.log_ratio_clamp, fpo.pair_log_ratio_clamp) == (3.0, 3.0)
    assert "variant 'paper'" in fpo.preset_source
    ppo = preset("gridworld", "ppo", variant="paper")
    assert (ppo.gaussian_fixed_std, ppo.entropy_cost, ppo.clip_epsilon) == (0.5, 0.0, 0.2)
    assert not hasattr(fpo, "gaussian_fixed_std")  # PPO's own setting
    default = preset("gridworld", "fpo")
    assert default == preset("gridworld", "fpo", variant="default")
    assert (default.num_pairs, default.learning_rate) == (8, 1e-3)  # the CPU-fast preset
    with pytest.raises(
        ConfigError,
        match=r"variant='paper' is not one of \('default', 'brax', 'fast', 'fpo\+\+', 'fpo\+\+authors', 'tuned'\)",
    ):
        preset("CartpoleBalance", "fpo", variant="paper")
    with pytest.raises(ConfigError, match="variant='papr'"):
        preset("gridworld", "fpo", variant="papr")


def test_gridworld_paper_variant_has_the_authors_networks_optimizer_and_moves():
    from fpo_jax import networks, toy_envs
    from fpo_jax.trainer import gradient_clip

    c = preset("gridworld", "fpo", variant="paper")
    assert (c.activation, c.network_init, c.flow_time_input) == ("relu", "torch", "raw")
    assert c.grad_clip_scope == "per_network" and c.value_loss_coef == 1.0
    env = envs.make_env("gridworld", **c.env_options)
    assert env.move_threshold == toy_envs.AUTHORS_MOVE_THRESHOLD
    net = FPOAgent(c, 2).velocity_net
    assert (net.activation, net.time_input, net.init_scheme) == (networks.nn.relu, "raw", "torch")
    # Per-network clipping: a large critic gradient leaves the policy's untouched; one global
    # clip (norm 0.5) shrinks both by the same factor.
    grads = {"policy": {"w": jnp.full(4, 0.1)}, "value": {"w": jnp.full(4, 100.0)}}
    total = np.hypot(0.2, 200.0)  # the norms are 0.2 and 200
    for per_network, policy_norm, value_norm in (
        (True, 0.2, 0.5),
        (False, 0.1 / total, 100 / total),
    ):
        clip = gradient_clip(replace(c, grad_clip_scope="per_network" if per_network else "global"))
        out, _ = clip.update(grads, clip.init(grads))
        np.testing.assert_allclose(jnp.linalg.norm(out["policy"]["w"]), policy_norm, rtol=1e-4)
        np.testing.assert_allclose(jnp.linalg.norm(out["value"]["w"]), value_norm, rtol=1e-4)
    with pytest.raises(ConfigError, match="env_kwargs entry 'move_threshold'"):
        validate(replace(c, env_kwargs=("move_threshold",)))


def test_pair_log_ratio_clamp_clips_each_pair_before_the_mean():
    old = jnp.array([[0.0, 0.0, 0.0]])
    new = jnp.array([[-10.0, 1.0, 2.0]])  # differences 10, -1, -2
    plain = loss.fpo_log_ratio(old, new)
    np.testing.assert_allclose(plain, [7.0 / 3.0], rtol=1e-6)
    clamped = loss.fpo_log_ratio(old, new, pair_log_ratio_clamp=3.0, log_ratio_clamp=3.0)
    np.testing.assert_allclose(clamped, [0.0], atol=1e-6)  # (3 - 1 - 2) / 3
    per_pair = loss.fpo_log_ratio(old, new, ratio="per_sample", pair_log_ratio_clamp=3.0)
    np.testing.assert_allclose(per_pair, [[3.0, -1.0, -2.0]], rtol=1e-6)
    with pytest.raises(ConfigError, match="pair_log_ratio_clamp must be positive"):
        validate(TrainConfig(pair_log_ratio_clamp=0.0))


def test_gaussian_fixed_std_is_used_for_sampling_ratio_and_eval():
    config = TrainConfig(
        env="gridworld", algo="ppo", **TINY, gaussian_fixed_std=0.5, eval_noise="zero"
    )
    agent = GaussianPPOAgent(config, 2)
    params = agent.init(jax.random.PRNGKey(0), 2)
    obs = jax.random.normal(jax.random.PRNGKey(1), (4096, 2))
    loc, scale = agent.distribution(params, obs)
    np.testing.assert_array_equal(scale, 0.5)
    raw, extras = agent.act(params, obs, jax.random.PRNGKey(2))
    np.testing.assert_allclose(np.std(np.asarray(raw - loc)), 0.5, rtol=0.03)
    np.testing.assert_allclose(extras["log_prob"], loss.gaussian_log_prob(raw, loc, 0.5), rtol=1e-5)
    np.testing.assert_array_equal(agent.eval_act(params, obs, None), loc)
    _, metrics = agent.objective(params, obs, raw, extras, jnp.ones(obs.shape[0]))
    np.testing.assert_allclose(metrics["policy_scale"], 0.5)
    # The learned scale is the default, and a bad value fails in one sentence.
    learned = GaussianPPOAgent(TrainConfig(algo="ppo", **TINY), 2)
    assert not np.allclose(learned.distribution(params, obs)[1], 0.5)
    with pytest.raises(ConfigError, match="gaussian_fixed_std must be positive"):
        validate(TrainConfig(algo="ppo", gaussian_fixed_std=-1.0))


def test_gridworld_paper_variant_trains_one_iteration_for_fpo_and_fixed_std_ppo():
    for algo in ("fpo", "ppo"):
        c = preset("gridworld", algo, variant="paper")
        c = replace(c, num_envs=10, unroll_length=8, num_epochs=1, num_eval_envs=4)
        trainer = Trainer(envs.make_env("gridworld"), validate(c))
        state = jax.jit(trainer.init)(jax.random.PRNGKey(0))
        state, metrics = jax.jit(trainer.train_step)(state)
        assert np.isfinite(float(metrics["policy_loss"]))
        if algo == "ppo":
            np.testing.assert_allclose(metrics["policy_scale"], 0.5, rtol=1e-6)
