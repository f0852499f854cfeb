"""--ratio-diagnostics: FPO's surrogate ratio against the exact ratio, logged while training."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from conftest import TINY

from fpo_jax import envs
from fpo_jax.config import ConfigError, TrainConfig
from fpo_jax.train import train
from fpo_jax.trainer import Trainer

RUN = dict(TINY, num_timesteps=2 * 8 * 2 * 8, num_evals=1, progress=False)


def test_off_by_default_and_the_step_is_unchanged():
    config = TrainConfig(env="gridworld", **RUN)
    trainer = Trainer(envs.make_env("gridworld"), config)
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0))
    _, plain = jax.jit(trainer.train_step)(state)
    assert not any(k.startswith("ratio_diagnostics/") for k in plain)
    on = Trainer(envs.make_env("gridworld"), TrainConfig(env="gridworld", **RUN,
                                                         ratio_diagnostics=16))  # fmt: skip
    _, diagnosed = jax.jit(on.train_step)(state)
    # The same training, with the comparison added after the update.
    for name, value in plain.items():
        np.testing.assert_allclose(diagnosed[name], value, rtol=1e-6, err_msg=name)
    corr = float(diagnosed["ratio_diagnostics/mean/corr"])
    assert -1.0 <= corr <= 1.0
    for k in ("mean/sign_agreement", "mean/clip_agreement", "per_sample/clip_agreement"):
        assert 0.0 <= float(diagnosed[f"ratio_diagnostics/{k}"]) <= 1.0, k


def test_logged_to_the_metrics_and_refused_where_nothing_reads_it():
    result = train("gridworld", ratio_diagnostics=32, **RUN)
    last = result.history[-1]
    diag = {k: v for k, v in last.items() if k.startswith("ratio_diagnostics/")}
    assert diag and all(math.isfinite(v) for v in diag.values()), diag
    with pytest.raises(ConfigError, match="ratio_diagnostics"):
        train("gridworld", algo="ppo", ratio_diagnostics=32, num_timesteps=256, progress=False)
    with pytest.raises(ConfigError, match="ratio_diagnostics must be an integer >= 0"):
        train("gridworld", ratio_diagnostics=-1, **RUN)


@pytest.mark.slow
@pytest.mark.parametrize("env", ["inverted_pendulum", "CartpoleBalance"])
def test_diagnostics_and_the_brax_variant_on_simulators(env):
    """FPO with --ratio-diagnostics and PPO with --variant brax, on a Brax and a Playground env."""
    layout = dict(num_envs=8, batch_size=8, num_minibatches=2, num_epochs=1, unroll_length=8,
                  episode_length=50, num_eval_envs=4, policy_hidden=(16, 16),
                  value_hidden=(32, 32), num_timesteps=128, num_evals=1, progress=False)  # fmt: skip
    fpo = train(env, ratio_diagnostics=16, num_pairs=4, flow_steps=4, **layout)
    diag = {k: v for k, v in fpo.history[-1].items() if k.startswith("ratio_diagnostics/")}
    assert diag and all(math.isfinite(v) for v in diag.values()), diag
    ppo = train(env, algo="ppo", variant="brax", **layout)
    assert (ppo.config.obs_norm, ppo.config.eval_noise) == ("brax", "random")
    assert math.isfinite(ppo.final_eval_return)
