"""A newcomer adds an algorithm in one module plus one registration, without editing the package:
REINFORCE with a baseline, defined only here, with its own typed settings class. It trains
through the API, sweeps one of its settings in one program, checkpoints and resumes, and a
setting it does not have is refused (and its own settings are refused for every other
algorithm)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fpo_jax.agents import ALGORITHMS, register_algorithm
from fpo_jax.config import TrainConfig, algorithm_settings, sweepable
from fpo_jax.errors import ConfigError
from fpo_jax.loss import gaussian_log_prob

# ---------------------------------------------------------------------------- the new module


@dataclasses.dataclass(frozen=True)
class ReinforceSettings:
    """REINFORCE's own settings: a fixed action std (sweepable) and the policy's width."""

    action_std: float = sweepable(0.5)
    hidden: int = 16

    def __post_init__(self) -> None:
        if isinstance(self.action_std, float | int) and self.action_std <= 0:
            raise ValueError(f"action_std must be positive, got {self.action_std!r}")


class MeanNet(nn.Module):
    action_size: int
    hidden: int

    @nn.compact
    def __call__(self, obs):
        return nn.Dense(self.action_size)(nn.tanh(nn.Dense(self.hidden)(obs)))


@dataclasses.dataclass(frozen=True)
class ReinforceAgent:
    """REINFORCE with the trainer's critic as baseline: loss = -mean(log pi(a|s) * A)."""

    config: TrainConfig
    action_size: int
    name: str = "reinforce"
    reads = frozenset()  # no shared TrainConfig setting: everything it reads is its own

    def with_settings(self, config: TrainConfig) -> ReinforceAgent:
        return dataclasses.replace(self, config=config)

    @property
    def settings(self) -> ReinforceSettings:
        return algorithm_settings(self.config)

    def _net(self) -> MeanNet:
        return MeanNet(self.action_size, self.settings.hidden)

    def init(self, key, obs_size):
        return self._net().init(key, jnp.zeros((1, obs_size)))

    def act(self, params, obs, key):
        mean = self._net().apply(params, obs)
        return mean + self.settings.action_std * jax.random.normal(key, mean.shape), {}

    def objective(self, params, obs, raw_action, extras, advantages):
        mean = self._net().apply(params, obs)
        log_prob = gaussian_log_prob(raw_action, mean, self.settings.action_std)
        loss = -jnp.mean(log_prob * jax.lax.stop_gradient(advantages))
        return loss, {"log_prob": jnp.mean(log_prob)}

    def eval_act(self, params, obs, key):
        return self._net().apply(params, obs)


@pytest.fixture(autouse=True)
def reinforce_registered():
    register_algorithm(
        "reinforce", ReinforceAgent, "REINFORCE with a baseline (a test's own algorithm)",
        reads=(), settings=ReinforceSettings,
    )  # fmt: skip
    yield
    ALGORITHMS.pop("reinforce")
    register_algorithm("reinforce", ReinforceAgent, "", settings=None)  # forget its settings
    ALGORITHMS.pop("reinforce")


# ------------------------------------------------------------------------------------ tests

TINY = dict(num_envs=16, batch_size=16, num_minibatches=2, num_epochs=2, num_evals=2,
            num_eval_envs=32, progress=False)  # fmt: skip


def test_its_own_settings_are_typed_set_by_name_and_reach_the_agent():
    from fpo_jax.train import resolve_config, train

    config = resolve_config("bandit", algo="reinforce", action_std=0.3, num_timesteps=4_096)
    assert config.algo_settings == (("action_std", 0.3),)
    assert algorithm_settings(config) == ReinforceSettings(action_std=0.3)
    result = train("bandit", config, **TINY)
    assert result.trainer.agent.settings.action_std == 0.3
    assert np.isfinite(result.final_eval_return)
    # The run's config.json keeps them, typed.
    again = TrainConfig.from_dict(json.loads(result.config.to_json()))
    assert algorithm_settings(again) == ReinforceSettings(action_std=0.3)


def test_settings_it_does_not_have_are_refused_and_its_own_are_refused_for_others():
    from fpo_jax.train import train

    with pytest.raises(ConfigError, match="num_pairs=4 has no effect with algo='reinforce'"):
        train("bandit", algo="reinforce", num_pairs=4)
    with pytest.raises(
        ConfigError, match="action_std=0.3 has no effect with algo='fpo'.*reinforce"
    ):
        train("bandit", algo="fpo", action_std=0.3)
    with pytest.raises(ConfigError, match="action_std must be positive"):
        train("bandit", algo="reinforce", action_std=-1.0)
    with pytest.raises(ConfigError, match="hidden='wide' is not a int"):
        train("bandit", algo="reinforce", hidden="wide")
    with pytest.raises(ConfigError, match="reinforce's setting hidden is static"):
        train("bandit", algo="reinforce", sweep=("hidden=8,16",))


def test_a_sweep_of_its_own_setting_trains_each_member_with_its_value(tmp_path):
    import fpo_jax
    from fpo_jax.train import train

    single = train("bandit", algo="reinforce", action_std=0.6, num_timesteps=4_096, **TINY)
    swept = train("bandit", algo="reinforce", sweep=("action_std=0.3,0.6",),
                  num_timesteps=4_096, run_dir=str(tmp_path), **TINY)  # fmt: skip
    # A member's own config, as load_run and export_policy give it, holds its value.
    assert algorithm_settings(fpo_jax.load_run(tmp_path, member=1).config).action_std == 0.6
    exported = fpo_jax.load_policy(fpo_jax.export_policy(tmp_path, tmp_path / "p", member=0))
    assert algorithm_settings(exported.config).action_std == 0.3
    assert [m["action_std"] for m in swept.members] == [0.3, 0.6]
    # Member 1 (0.6, seed 0) is the single run of that setting and seed (to float rounding: a
    # single run's step is traced without the members vmap).
    for x, y in zip(jax.tree.leaves(single.member(0).params),
                    jax.tree.leaves(swept.member(1).params), strict=True):  # fmt: skip
        np.testing.assert_allclose(x, y, rtol=2e-4, atol=1e-5)
    a, b = (jax.tree.leaves(swept.member(i).params["policy"])[0] for i in (0, 1))
    assert not np.allclose(a, b)


@pytest.mark.slow
def test_it_checkpoints_resumes_and_takes_its_flags_on_the_command_line(tmp_path):
    from fpo_jax.cli import parse_config
    from fpo_jax.train import train

    config = parse_config(["--env", "bandit", "--algo", "reinforce", "--action-std", "0.4"])
    assert algorithm_settings(config).action_std == 0.4
    run = Path(tmp_path) / "run"
    straight = train("bandit", config, num_timesteps=8_192, **TINY)
    train("bandit", config, num_timesteps=4_096, run_dir=str(run), **TINY)
    resumed = train("bandit", config, num_timesteps=8_192, resume=str(run), **TINY)
    for x, y in zip(jax.tree.leaves(straight.state.params),
                    jax.tree.leaves(resumed.state.params), strict=True):  # fmt: skip
        np.testing.assert_array_equal(x, y)
    # A resumed run may not change the algorithm's own settings.
    with pytest.raises(ConfigError):
        train("bandit", config, action_std=0.5, num_timesteps=8_192, resume=str(run), **TINY)
