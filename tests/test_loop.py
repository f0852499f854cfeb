"""The host loop's parts (fpo_jax.loop) and the whole run as one pure function."""

from __future__ import annotations

import chex
import jax
import numpy as np
import pytest
from conftest import TINY

from fpo_jax import envs, loop
from fpo_jax.config import TrainConfig
from fpo_jax.errors import TrainingDiverged
from fpo_jax.train import train
from fpo_jax.trainer import make_train

RUN = dict(TINY, num_timesteps=3 * 8 * 2 * 8, num_evals=3, progress=False)


def test_evaluations_are_evenly_spaced_and_include_the_last_call():
    assert loop.eval_calls(10, 3) == {4, 7, 10}
    assert loop.eval_calls(3, 3) == {1, 2, 3}
    assert loop.eval_calls(5, 0) == {5}  # no periodic evaluation: still the final one


def test_divergence_policy_carries_one_member_and_stops_a_single_run():
    said: list[str] = []
    several = loop.DivergencePolicy(TrainConfig(num_seeds=3), None, log=said.append)
    several.check({"finite": np.array([True, False, True]), "policy_loss": 0.0}, call=2)
    several.check({"finite": np.array([True, False, True]), "policy_loss": 0.0}, call=3)
    assert several.diverged == [1] and len(said) == 1 and "member 1" in said[0]
    assert several.first_finite() == 0
    with pytest.raises(TrainingDiverged, match="at iteration 4"):
        several.check({"finite": np.array([False, False, False]), "x": np.nan}, call=4)
    single = loop.DivergencePolicy(TrainConfig(), None, log=said.append)
    with pytest.raises(TrainingDiverged, match="Non-finite policy_loss"):
        single.check({"finite": np.array([False]), "policy_loss": np.nan}, call=1)


class ListLogger:
    def __init__(self):
        self.records, self.closed = [], False

    def write(self, record):
        self.records.append(record)

    def close(self):
        self.closed = True


def test_a_users_logger_gets_every_record():
    logger = ListLogger()
    result = train("gridworld", loggers=[logger], **RUN)
    assert logger.closed
    assert [r["env_steps"] for r in logger.records] == [r["env_steps"] for r in result.history]
    assert logger.records[-1]["eval/episode_return"] == result.final_eval_return


def test_make_train_is_the_run_as_one_pure_function_of_a_key():
    config = TrainConfig(env="gridworld", **RUN)
    train_fn = jax.jit(jax.vmap(make_train(envs.make_env("gridworld"), config)))
    state, metrics = train_fn(jax.vmap(jax.random.PRNGKey)(np.arange(2)))
    assert metrics["policy_loss"].shape == (2, config.num_calls)
    reference = train("gridworld", config, num_seeds=2)
    chex.assert_trees_all_close(state.params, reference.state.params, rtol=2e-4, atol=1e-6)


def test_the_cpu_eta_line_offers_the_envs_cpu_preset_priced_at_this_runs_speed():
    from fpo_jax.presets import preset
    from fpo_jax.train import _cpu_variant_steps

    config = preset("ant", "fpo")  # the published layout: hours on a CPU
    cpu_steps = _cpu_variant_steps(config)
    assert cpu_steps == preset("ant", "fpo", variant="cpu").num_timesteps
    assert _cpu_variant_steps(preset("ant", "fpo", variant="cpu")) is None  # already used
    assert _cpu_variant_steps(preset("gridworld", "fpo")) is None  # no such variant
    said: list[str] = []
    progress = loop.Progress(config, 0, show_bar=False, log=said.append, cpu_variant=cpu_steps)
    call_seconds = 40.0
    progress.after_call({"call": 1, "env_steps_per_second": 1.0}, call_seconds, None)
    if jax.default_backend() != "cpu":
        pytest.skip("the ETA line is printed on a CPU only")
    (line,) = said
    expected = loop.format_seconds(cpu_steps * call_seconds / config.env_steps_per_call)
    assert "--variant cpu" in line and f"about {expected} at this speed" in line
    said.clear()
    plain = loop.Progress(config, 0, show_bar=False, log=said.append)
    plain.after_call({"call": 1, "env_steps_per_second": 1.0}, call_seconds, None)
    assert "--variant" not in said[0] and "--num-timesteps" in said[0]


def test_a_diverged_member_evaluates_as_nan_not_as_what_its_nan_actions_scored():
    class ScoresItsState:  # the evaluation of member i returns its state
        def evaluate(self, state, key):
            return {"eval/episode_return": state}

    config = TrainConfig(num_seeds=3, num_evals=1)
    evaluator = loop.Evaluator(ScoresItsState(), config, [{"seed": s} for s in range(3)])
    returns = jax.numpy.array([1.0, 0.0, 3.0])  # member 1 diverged: its NaN actions scored 0
    assert evaluator(returns, 1)["eval/episode_return"] == pytest.approx(4.0 / 3.0)
    record = evaluator(returns, 1, diverged=[1])
    assert record["eval/episode_return"] == pytest.approx(2.0)
    assert np.isnan(record["per_member/eval/episode_return"][1])
