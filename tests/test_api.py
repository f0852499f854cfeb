"""The Python API a researcher extends: their own network, critic and algorithm in the real
trainer (with checkpoints and resume), progress callbacks, and the public collect / update."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fpo_jax
from fpo_jax import envs, loss
from fpo_jax.agents import ALGORITHMS, FPOAgent, register_algorithm
from fpo_jax.config import ConfigError, TrainConfig
from fpo_jax.presets import preset
from fpo_jax.train import train
from fpo_jax.trainer import Trainer

STEPS_PER_CALL = 8 * 2 * 8  # the tiny layout's batch_size * num_minibatches * unroll_length


def _broadcast_concat(*arrays):
    lead = jnp.broadcast_shapes(*(a.shape[:-1] for a in arrays))
    return jnp.concatenate([jnp.broadcast_to(a, (*lead, a.shape[-1])) for a in arrays], -1)


class TanhVelocity(nn.Module):
    """A user's velocity network: one tanh layer on concat(obs, x_t, t)."""

    action_dim: int

    @nn.compact
    def __call__(self, obs, x_t, t):
        h = nn.tanh(nn.Dense(24)(_broadcast_concat(obs, x_t, t)))
        return 0.1 * nn.Dense(self.action_dim)(h)


class TinyCritic(nn.Module):
    @nn.compact
    def __call__(self, obs):
        return jnp.squeeze(nn.Dense(1)(nn.relu(nn.Dense(12)(obs))), -1)


@pytest.mark.slow
def test_custom_velocity_network_and_critic_train_checkpoint_resume_and_load(tiny, tmp_path):
    config = TrainConfig(env="gridworld", **tiny, num_timesteps=2 * STEPS_PER_CALL, num_evals=2,
                         run_dir=str(tmp_path), progress=False)  # fmt: skip
    _, action_size = envs.env_sizes(envs.make_env("gridworld"))
    agent = FPOAgent(config, action_size, network=TanhVelocity(action_size))
    first = train("gridworld", config, agent=agent, value_network=TinyCritic())
    # The injected networks are the ones trained: their parameter trees.
    assert set(first.seed(0).params["policy"]["params"]) == {"Dense_0", "Dense_1"}
    assert first.seed(0).params["value"]["params"]["Dense_1"]["kernel"].shape == (2, 12)

    longer = dict(num_timesteps=4 * STEPS_PER_CALL, resume=str(tmp_path), run_dir=None)
    resumed = train("gridworld", config, agent=agent, value_network=TinyCritic(), **longer)
    assert int(resumed.seed(0).iteration) == 4
    assert [r["call"] for r in resumed.history] == [0, 1, 2, 3, 4]

    run = fpo_jax.load_run(tmp_path, agent=agent, value_network=TinyCritic(), noise="zero")
    assert run.step == 4
    assert run.trainer.agent.config.eval_noise == "zero"  # the injected agent samples as asked
    obs = jnp.zeros((3, 2))
    assert run.policy(obs, jax.random.PRNGKey(0)).shape == (3, 2)
    with pytest.raises(ConfigError, match="custom network"):
        fpo_jax.load_policy(fpo_jax.export_policy(
            tmp_path, tmp_path / "p.msgpack", agent=agent, value_network=TinyCritic()))  # fmt: skip


@dataclass(frozen=True)
class FixedStdGaussianAgent:
    """A user's algorithm: PPO with a state-independent, fixed exploration std."""

    config: Any
    action_size: int
    std: float = 0.5
    name: str = "fixed_std_ppo"

    def _mean(self, params, obs):
        return nn.Dense(self.action_size).apply(params, obs)

    def init(self, key, obs_size):
        return nn.Dense(self.action_size).init(key, jnp.zeros((1, obs_size)))

    def act(self, params, obs, key):
        mean = self._mean(params, obs)
        raw = mean + self.std * jax.random.normal(key, mean.shape)
        return raw, {"log_prob": loss.gaussian_log_prob(raw, mean, self.std)}

    def objective(self, params, obs, raw_action, extras, advantages):
        log_prob = loss.gaussian_log_prob(raw_action, self._mean(params, obs), self.std)
        return loss.ppo_objective(
            log_prob, extras["log_prob"], advantages, clip_epsilon=self.config.clip_epsilon
        )

    def eval_act(self, params, obs, key):
        return self._mean(params, obs)


@pytest.fixture
def fixed_std_algorithm():
    register_algorithm(
        "fixed_std_ppo",
        FixedStdGaussianAgent,
        "PPO with a fixed exploration std",
        {"builtin": dict(clip_epsilon=0.3)},
    )
    yield "fixed_std_ppo"
    del ALGORITHMS["fixed_std_ppo"]


@pytest.mark.slow
def test_a_registered_algorithm_trains_by_name_with_resume(fixed_std_algorithm, tiny, tmp_path):
    config = preset("gridworld", fixed_std_algorithm)
    assert config.clip_epsilon == 0.3  # the registry's per-family override
    first = train("gridworld", config, **tiny, num_timesteps=2 * STEPS_PER_CALL, num_evals=2,
                  run_dir=str(tmp_path), progress=False)  # fmt: skip
    assert isinstance(first.trainer.agent, FixedStdGaussianAgent)
    assert np.isfinite(first.history[-1]["policy_loss"])
    again = train("gridworld", first.config, resume=str(tmp_path), progress=False,
                  num_timesteps=3 * STEPS_PER_CALL)  # fmt: skip
    assert int(again.seed(0).iteration) == 3


def test_unregistered_algorithm_is_one_sentence_everywhere():
    with pytest.raises(ConfigError, match=r"algo='sac' is not one of \('fpo', 'ppo', 'dppo'"):
        preset("CartpoleBalance", "sac")
    with pytest.raises(ConfigError, match="algo='sac'"):
        train("gridworld", algo="sac")


@pytest.mark.slow
def test_progress_fn_sees_each_call_and_can_stop_with_a_checkpoint(tiny, tmp_path):
    seen = []

    def progress(record, state):
        seen.append((record["call"], int(state.iteration[0])))
        return record["call"] < 2  # False after the second call: stop

    result = train("gridworld", **tiny, num_timesteps=6 * STEPS_PER_CALL, num_evals=1,
                   run_dir=str(tmp_path), progress=False, progress_fn=progress)  # fmt: skip
    assert seen == [(1, 1), (2, 2)]
    assert result.stopped_early
    assert result.history[-1]["call"] == 2 and "eval/episode_return" in result.history[-1]
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == [2]


def test_collect_then_update_is_the_training_step(tiny):
    trainer = Trainer(envs.make_env("gridworld"), TrainConfig(env="gridworld", **tiny))
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0))
    via_step, metrics_step = jax.jit(trainer.train_step)(state)
    collected, rollout = jax.jit(trainer.collect)(state)
    assert rollout.traj["obs"].shape == (16, 8, 2)  # (trajectories, unroll, obs)
    assert rollout.traj["extras"]["old_cfm_loss"].shape == (16, 8, 8)  # N = 8 pairs
    via_halves, metrics_halves = jax.jit(trainer.update)(collected, rollout)
    chex.assert_trees_all_equal(via_step, via_halves)
    chex.assert_trees_all_equal(metrics_step, metrics_halves)


@dataclass(frozen=True)
class PerSampleLossAgent(FixedStdGaussianAgent):
    """Breaks the agent contract: a loss per sample instead of one scalar."""

    def objective(self, params, obs, raw_action, extras, advantages):
        value, metrics = super().objective(params, obs, raw_action, extras, advantages)
        return jnp.full(advantages.shape, value), metrics


@dataclass(frozen=True)
class UnbatchedExtrasAgent(FixedStdGaussianAgent):
    """Breaks the agent contract: an extra without the batch's leading dims."""

    def act(self, params, obs, key):
        raw, extras = super().act(params, obs, key)
        return raw, {**extras, "summary": jnp.zeros(3)}


@pytest.mark.parametrize(
    "agent_class, message",
    [(PerSampleLossAgent, "agent.objective's loss"), (UnbatchedExtrasAgent, "agent.act's extras")],
)
def test_an_agent_breaking_its_contract_is_named_when_the_step_is_traced(agent_class, message):
    config = TrainConfig(env="gridworld", algo="ppo", num_envs=8, batch_size=8, num_minibatches=2,
                         unroll_length=4, num_epochs=1)  # fmt: skip
    trainer = Trainer(envs.make_env("gridworld"), config, agent=agent_class(config, 2))
    state = jax.eval_shape(trainer.init, jax.random.PRNGKey(0))
    with pytest.raises(AssertionError, match=message):
        jax.eval_shape(trainer.train_step, state)  # traced only: nothing compiles


def test_an_agent_for_another_action_size_is_refused(tiny):
    config = TrainConfig(env="gridworld", **tiny)
    with pytest.raises(ValueError, match="built for 3-dim actions"):
        Trainer(envs.make_env("gridworld"), config, agent=FPOAgent(config, 3))


@pytest.mark.slow
@pytest.mark.parametrize(
    "env, changes",
    [("CartpoleBalance", {}), ("inverted_pendulum", {"backend": "spring"})],
    ids=["playground", "brax"],
)
def test_sweeps_noise_and_members_on_real_simulators(env, changes, tiny, tmp_path):
    """A sweep, the authors' normalisation, no initial-state refresh, a custom velocity network
    and a stopping progress_fn, on a Playground and a Brax env in one run; then one member's
    policy loaded from the run directory."""
    from fpo_jax.config import replace
    from fpo_jax.presets import preset

    config = replace(preset(env), **tiny, **changes, num_timesteps=3 * STEPS_PER_CALL,
                     num_evals=3, progress=False, run_dir=str(tmp_path),
                     sweep=("clip_epsilon=0.1,0.2",), obs_norm="reference",
                     refresh_initial_states=False)  # fmt: skip
    _, action_size = envs.env_sizes(envs.make_env(env, **changes))
    agent = FPOAgent(config, action_size, network=TanhVelocity(action_size))
    result = train(env, config, agent=agent, progress_fn=lambda record, state: record["call"] < 2)
    assert result.stopped_early and result.history[-1]["call"] == 2
    assert len(result.history[-1]["per_member/eval/episode_return"]) == 2
    assert np.all(np.isfinite(result.history[-1]["per_member/total_loss"]))
    run = fpo_jax.load_run(tmp_path, member=1, agent=agent)
    assert run.step == 2 and run.config.clip_epsilon == 0.2
    obs = jnp.zeros((3, run.trainer.obs_size))
    assert run.policy(obs, jax.random.PRNGKey(0)).shape == (3, action_size)


@pytest.mark.slow
@pytest.mark.parametrize(
    "env, changes",
    [("CartpoleBalance", {}), ("inverted_pendulum", {"backend": "spring"})],
    ids=["playground", "brax"],
)
def test_source_noise_sweep_with_a_diverging_member_on_real_simulators(env, changes, tiny):
    """flow_noise_scale as a swept setting, and members that diverge (reward scale 1e38) carried
    as NaN while the others train, on a Playground and a Brax env."""
    from fpo_jax.config import replace
    from fpo_jax.presets import preset

    config = replace(preset(env), **tiny, **changes, num_timesteps=2 * STEPS_PER_CALL,
                     num_evals=1, progress=False,
                     sweep=("flow_noise_scale=0.3,1.0", "reward_scaling=1.0,1e38"))  # fmt: skip
    result = train(env, config)
    assert result.history[-1]["diverged_members"] == [1, 3]
    for i, scale in [(0, 0.3), (2, 1.0)]:
        assert result.members[i] == {"flow_noise_scale": scale, "reward_scaling": 1.0, "seed": 0}
        leaves = jax.tree.leaves(result.member(i).params)
        assert all(np.isfinite(x).all() for x in leaves)
    assert np.isfinite(result.final_eval_return)


@pytest.mark.slow
def test_progress_fn_state_stays_readable_after_the_next_call_donates_its_buffers(tiny):
    kept = []

    def progress(record, state):
        kept.append(state)

    result = train("gridworld", **tiny, num_timesteps=3 * STEPS_PER_CALL, num_evals=1,
                   progress=False, progress_fn=progress)  # fmt: skip
    assert len(kept) == 3
    # The state of call 1, read after calls 2 and 3 ran (and donated the step's buffers).
    assert [int(s.iteration[0]) for s in kept] == [1, 2, 3]
    first = jax.tree.leaves(kept[0].params)
    assert all(np.isfinite(np.asarray(x)).all() for x in first)
    last = jax.tree.leaves(result.state.params)
    assert any(not np.array_equal(a, b) for a, b in zip(first, last, strict=True))


@pytest.mark.slow
def test_result_policy_is_the_first_finite_members_when_member_0_diverges(tiny, capsys):
    result = train("gridworld", **tiny, num_timesteps=2 * STEPS_PER_CALL, num_evals=1,
                   progress=False, sweep=("learning_rate=1e30,1e-3",))  # fmt: skip
    assert result.history[-1]["diverged_members"] == [0]
    assert "result.policy is member 1's" in capsys.readouterr().err
    obs, key = jnp.zeros((5, result.trainer.obs_size)), jax.random.PRNGKey(0)
    action = result.policy(obs, key)
    assert np.isfinite(action).all()
    np.testing.assert_array_equal(action, result.policy_of(1)(obs, key))
    assert not np.isfinite(result.policy_of(0)(obs, key)).all()


def test_env_kwargs_build_the_env_in_train_and_load_run(tiny, tmp_path):
    from fpo_jax.toy_envs import AUTHORS_MOVE_THRESHOLD

    config = TrainConfig(env="gridworld", **tiny, num_timesteps=STEPS_PER_CALL, num_evals=1,
                         run_dir=str(tmp_path), progress=False,
                         env_kwargs=(f"move_threshold={AUTHORS_MOVE_THRESHOLD}",))  # fmt: skip
    result = train("gridworld", config)
    assert result.trainer.env.move_threshold == AUTHORS_MOVE_THRESHOLD
    run = fpo_jax.load_run(tmp_path)
    assert run.trainer.env.move_threshold == AUTHORS_MOVE_THRESHOLD
    assert envs.make_env("gridworld").move_threshold == 1 / 3  # the default
