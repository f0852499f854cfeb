"""Hyperparameter sweeps x seeds as one compiled program (traced hyperparameters in the state)."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from conftest import TINY

import fpo_jax
from fpo_jax import cli as train_cli
from fpo_jax.config import ConfigError, TrainConfig, replace, sweep_members, validate
from fpo_jax.train import train

STEPS_PER_CALL = 8 * 2 * 8  # the tiny layout's batch_size * num_minibatches * unroll_length
RUN = dict(TINY, num_timesteps=3 * STEPS_PER_CALL, num_evals=3, progress=False)


def test_a_sweep_member_reproduces_the_single_run_of_its_setting_and_seed(tmp_path, capsys):
    sweep = train("gridworld", sweep=("clip_epsilon=0.05,0.3", "learning_rate=1e-3,3e-3"),
                  num_seeds=2, run_dir=str(tmp_path), **RUN)  # fmt: skip
    assert sweep.config.num_members == 8
    assert "8 members in one program: about" in capsys.readouterr().err  # the memory estimate
    i = sweep.members.index({"clip_epsilon": 0.3, "learning_rate": 3e-3, "seed": 1})
    single = train("gridworld", clip_epsilon=0.3, learning_rate=3e-3, seed=1, **RUN)
    for x, y in zip(jax.tree.leaves(sweep.member(i).params),
                    jax.tree.leaves(single.member(0).params), strict=True):  # fmt: skip
        np.testing.assert_allclose(x, y, rtol=2e-4, atol=1e-6)
    # Members really differ (the swept values reach the compiled step).
    a, b = (jax.tree.leaves(sweep.member(j).params)[0] for j in (0, 2))
    assert not np.allclose(a, b)

    # The run directory keeps members apart: their settings, and per-member metrics.
    members = json.loads((tmp_path / "members.json").read_text())
    assert members == sweep.members
    last = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()][-1]
    assert len(last["per_member/eval/episode_return"]) == len(last["per_member/policy_loss"]) == 8
    # One member's policy, with its own settings in its config.
    run = fpo_jax.load_run(tmp_path, member=i)
    assert (run.config.clip_epsilon, run.config.learning_rate, run.config.seed) == (0.3, 3e-3, 1)
    assert run.config.sweep == () and run.config.num_seeds == 1

    # Checkpoints and resume cover the whole grid.
    more = train("gridworld", sweep.config, resume=str(tmp_path), run_dir=None,
                 num_timesteps=4 * STEPS_PER_CALL)  # fmt: skip
    assert more.config.num_members == 8 and int(more.member(7).iteration) == 4


def test_sweep_members_are_settings_outer_seeds_inner():
    config = TrainConfig(seed=4, num_seeds=2, sweep=("clip_epsilon=0.1,0.2", "discount=0.9"))
    assert sweep_members(config) == [
        {"clip_epsilon": 0.1, "discount": 0.9, "seed": 4},
        {"clip_epsilon": 0.1, "discount": 0.9, "seed": 5},
        {"clip_epsilon": 0.2, "discount": 0.9, "seed": 4},
        {"clip_epsilon": 0.2, "discount": 0.9, "seed": 5},
    ]
    assert config.num_members == 4


@pytest.mark.parametrize(
    "entry, message",
    [
        ("num_pairs=4,8", "num_pairs is static"),
        ("hidden=1,2", "not a config field"),
        ("clip_epsilon", "not of the form name=v1,v2"),
        ("clip_epsilon=0.1,x", "must be numbers"),
        ("clip_epsilon=0.1,-1", "clip_epsilon must be positive"),
    ],
)
def test_bad_sweeps_are_one_sentence_before_anything_is_built(entry, message):
    with pytest.raises(ConfigError, match=message):
        validate(replace(TrainConfig(), sweep=(entry,)))


def test_cli_takes_one_sweep_flag_per_field(capsys):
    config = train_cli.parse_config(
        ["--env", "gridworld", "--sweep", "clip_epsilon=0.05,0.1,0.2", "--num-seeds", "3",
         "--sweep=learning_rate=3e-4,1e-3"]
    )  # fmt: skip
    # Parsed once, at the command line, into typed values.
    assert config.sweep == (("clip_epsilon", (0.05, 0.1, 0.2)), ("learning_rate", (3e-4, 1e-3)))
    assert config.num_members == 18
    assert train_cli.main(["--env", "gridworld", "--sweep", "num_envs=8,16"]) == 2
    assert "num_envs is static" in capsys.readouterr().err


class _PPOWithEntropyKnob:
    """A user's agent that is not a dataclass: delegates to the Gaussian PPO agent, declares
    what it reads and takes each sweep member's config through ``with_settings``."""

    name = "custom-ppo"
    reads = frozenset({"entropy_cost", "clip_epsilon"})

    def __init__(self, config, action_size):
        from fpo_jax.agents import GaussianPPOAgent

        self.action_size = action_size
        self._inner = GaussianPPOAgent(config, action_size)

    def with_settings(self, config):
        return _PPOWithEntropyKnob(config, self.action_size)

    def init(self, key, obs_size):
        return self._inner.init(key, obs_size)

    def act(self, params, obs, key):
        return self._inner.act(params, obs, key)

    def objective(self, params, obs, raw_action, extras, advantages):
        return self._inner.objective(params, obs, raw_action, extras, advantages)

    def eval_act(self, params, obs, key):
        return self._inner.eval_act(params, obs, key)


def test_a_custom_agents_swept_setting_reaches_every_member():
    config = replace(TrainConfig(env="gridworld", algo="ppo", **RUN), entropy_cost=0.0)
    agent = _PPOWithEntropyKnob(config, 2)
    result = train("gridworld", config, agent=agent, sweep=("entropy_cost=0.0,5.0",))
    # Same seed, different entropy bonus: the members must end with different policies.
    a, b = (jax.tree.leaves(result.member(i).params["policy"]) for i in (0, 1))
    assert not all(np.allclose(x, y) for x, y in zip(a, b, strict=True))


def test_a_swept_setting_that_nothing_reads_is_refused():
    import flax.linen as nn

    from fpo_jax.agents import FPOAgent

    class TinyVelocity(nn.Module):
        @nn.compact
        def __call__(self, obs, x_t, t):
            return nn.Dense(x_t.shape[-1])(jax.numpy.concatenate([x_t, t], -1))

    config = TrainConfig(env="gridworld", **RUN)
    custom = FPOAgent(config, 2, network=TinyVelocity())
    # The default network reads velocity_output_scale; an injected one does not.
    with pytest.raises(ConfigError, match="velocity_output_scale: nothing reads it"):
        train("gridworld", config, agent=custom, sweep=("velocity_output_scale=0.1,0.5",))
    # An agent that declares nothing cannot be swept over its own settings.
    undeclared = _PPOWithEntropyKnob(replace(config, algo="ppo"), 2)
    object.__setattr__(undeclared, "reads", None)
    with pytest.raises(ConfigError, match="does not declare which settings it reads"):
        train("gridworld", replace(config, algo="ppo"), agent=undeclared,
              sweep=("clip_epsilon=0.1,0.2",))  # fmt: skip
    # Settings the trainer reads itself need nothing from the agent.
    train("gridworld", replace(config, algo="ppo"), agent=undeclared,
          sweep=("learning_rate=1e-3,3e-3",), num_timesteps=STEPS_PER_CALL, num_evals=1)  # fmt: skip


def test_a_sweep_is_typed_once_whatever_form_it_is_given_in():
    typed = (("clip_epsilon", (0.05, 0.1)), ("learning_rate", (3e-4, 1e-3)))
    as_strings = validate(TrainConfig(sweep=("clip_epsilon=0.05,0.1", "learning-rate=3e-4,1e-3")))
    assert as_strings.sweep == typed == validate(TrainConfig(sweep=typed)).sweep
    # Stored typed; a run directory written with strings loads typed too.
    assert TrainConfig.from_dict(json.loads(as_strings.to_json())).sweep == typed
    old = json.loads(TrainConfig().to_json())
    old["sweep"] = ["clip_epsilon=0.05,0.1", "learning_rate=3e-4,1e-3"]
    assert TrainConfig.from_dict(old).sweep == typed
    with pytest.raises(ConfigError, match="the values must be numbers"):
        validate(TrainConfig(sweep=(("clip_epsilon", ("a", 0.1)),)))
