"""The compiled training step on a real (built-in, pure-JAX) env: bookkeeping and determinism."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from brax.envs.base import Wrapper as BraxWrapper
from conftest import TINY

from fpo_jax import envs
from fpo_jax.config import TrainConfig
from fpo_jax.train import TrainingDiverged, train
from fpo_jax.trainer import Trainer

# The shared tiny layout, with a few more envs and gridworld's own episode limit.
SMALL = dict(TINY, env="gridworld", num_envs=16, batch_size=16, episode_length=100)


def on_policy_metrics(**changes):
    """One iteration whose single minibatch is the whole batch, with a negligible step size."""
    config = TrainConfig(**{**SMALL, "num_minibatches": 1, "batch_size": 32, **changes},
                         learning_rate=1e-12)  # fmt: skip
    trainer = Trainer(envs.make_env("gridworld"), config)
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0))
    step = jax.jit(trainer.train_step)
    state, _ = step(state)  # first iteration: statistics still empty
    _, metrics = step(state)  # second: observations normalised with running statistics
    return jax.device_get(metrics)


@pytest.mark.parametrize(
    "changes",
    [
        dict(algo="fpo"),
        dict(algo="fpo", pair_storage="key", ratio="per_sample", trust_region="aspo"),
        dict(algo="ppo", entropy_cost=0.01),
        dict(algo="dppo", dppo_sigma=0.05),
        dict(algo="fpo", flow_noise_scale=0.3),
        dict(algo="dppo", dppo_sigma=0.05, flow_noise_scale=0.3),
    ],
    ids=["fpo", "fpo-key-per_sample-aspo", "ppo", "dppo", "fpo-noise-0.3", "dppo-noise-0.3"],
)
def test_rollout_bookkeeping_gives_ratio_one_before_any_update(changes):
    """The stored extras and the normalisation used when acting are exactly those of the loss."""
    m = on_policy_metrics(**changes)
    assert bool(m["finite"])
    np.testing.assert_allclose(m["ratio_mean"], 1.0, atol=1e-5)
    np.testing.assert_allclose([m["ratio_min"], m["ratio_max"]], 1.0, atol=1e-4)
    assert m["clip_fraction"] == 0.0
    if changes["algo"] == "fpo":
        np.testing.assert_allclose(m["cfm_loss_new"], m["cfm_loss_old"], rtol=1e-5)


@pytest.fixture(scope="module")
def fpo_trainer():
    trainer = Trainer(envs.make_env("gridworld"), TrainConfig(**SMALL))
    return trainer, jax.jit(trainer.init), jax.jit(trainer.train_step), jax.jit(trainer.evaluate)


def test_same_seed_same_numbers_and_state_advances(fpo_trainer):
    trainer, init, step, _ = fpo_trainer
    results = []
    for _ in range(2):
        state = init(jax.random.PRNGKey(3))
        for _ in range(3):
            state, metrics = step(state)
        results.append(jax.device_get(state))
    a, b = results
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert int(a.iteration) == 3
    assert float(a.obs_stats.count) == 3 * trainer.config.env_steps_per_iteration
    fresh = [jax.device_get(init(jax.random.PRNGKey(s)).params) for s in (3, 4)]
    assert any(
        not np.array_equal(x, y)
        for x, y in zip(jax.tree.leaves(fresh[0]), jax.tree.leaves(fresh[1]), strict=True)
    )


def test_evaluation_counts_each_episode_once(fpo_trainer):
    trainer, init, _, evaluate = fpo_trainer
    out = jax.device_get(evaluate(init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1)))
    # Gridworld: +20 once at a goal, then the episode is over; at most 100 steps.
    assert 0 <= out["eval/episode_return"] <= 20
    assert 1 <= out["eval/episode_length"] <= 100
    reached = out["eval/reached_top"] + out["eval/reached_bottom"]
    np.testing.assert_allclose(out["eval/episode_return"], 20 * reached, rtol=1e-5)


def test_policy_fn_is_jittable_and_squashed(fpo_trainer):
    trainer, init, _, _ = fpo_trainer
    state = init(jax.random.PRNGKey(0))
    policy = jax.jit(trainer.policy_fn(state.params, state.obs_stats))
    actions = policy(np.zeros((5, 2), np.float32), jax.random.PRNGKey(0))
    assert actions.shape == (5, 2)
    assert np.all(np.abs(actions) <= 1.0)


class NaNRewardsAfter(BraxWrapper):
    """A real env whose rewards turn NaN after ``limit`` steps, as a broken simulator's would."""

    def __init__(self, env, limit):
        super().__init__(env)
        self.limit = limit

    def reset(self, rng):
        state = self.env.reset(rng)
        state.info["poison_steps"] = jnp.zeros((), jnp.int32)
        return state

    def step(self, state, action):
        steps = state.info["poison_steps"] + 1
        state = self.env.step(state, action)
        state.info["poison_steps"] = steps
        return state.replace(reward=jnp.where(steps > self.limit, jnp.nan, state.reward))


def test_divergence_stops_with_step_and_metric_and_keeps_checkpoints(tmp_path):
    config = TrainConfig(**SMALL, num_timesteps=256 * 10, num_evals=10, run_dir=str(tmp_path),
                         progress=False)  # fmt: skip
    steps_per_env_per_iteration = config.num_unrolls * config.unroll_length
    env = NaNRewardsAfter(envs.make_env("gridworld"), limit=3 * steps_per_env_per_iteration)
    with pytest.raises(TrainingDiverged, match=r"Non-finite .*value_loss.* at iteration 4 ") as e:
        train(env, config)
    assert "last good checkpoint: step 3" in str(e.value)
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [1, 2, 3]


def test_a_diverging_sweep_member_is_named_and_the_others_train_on(capsys):
    config = TrainConfig(**SMALL, num_timesteps=256 * 4, num_evals=2, progress=False,
                         sweep=("reward_scaling=1.0,1e38",))  # fmt: skip
    res = train(envs.make_env("gridworld"), config)
    assert "member 1 {'reward_scaling': 1e+38, 'seed': 0} diverged" in capsys.readouterr().err
    assert res.history[-1]["diverged_members"] == [1]
    finite = [bool(np.all([np.isfinite(x).all() for x in jax.tree.leaves(res.member(i).params)]))
              for i in range(2)]  # fmt: skip
    assert finite == [True, False]
    assert np.isfinite(res.history[-1]["per_member/eval/episode_return"][0])
    assert np.isfinite(res.final_eval_return)  # the mean over the members that did not diverge


@pytest.mark.parametrize("algo", ["fpo", "dppo"])
def test_flow_noise_scale_is_the_untrained_policys_spread(algo):
    """A near-identity flow (tiny velocity output) acts with its source noise: std = the scale,
    in training (act) and in evaluation (eval_act, random initial noise)."""
    from fpo_jax.agents import ALGORITHMS

    obs = jnp.zeros((4096, 3))
    for scale in (1.0, 0.25):
        own = dict(dppo_sigma=1e-4) if algo == "dppo" else {}  # DPPO's own chain noise
        config = TrainConfig(**{**SMALL, "algo": algo}, flow_noise_scale=scale,
                             velocity_output_scale=1e-4, **own)  # fmt: skip
        agent = ALGORITHMS[algo].make(config, 2)
        params = agent.init(jax.random.PRNGKey(0), 3)
        raw, _ = agent.act(params, obs, jax.random.PRNGKey(1))
        evaluated = agent.eval_act(params, obs, jax.random.PRNGKey(2))
        for actions in (raw, evaluated):
            np.testing.assert_allclose(np.std(actions), scale, rtol=0.05)
