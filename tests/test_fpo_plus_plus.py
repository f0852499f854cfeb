"""The FPO++ recipe as settings of the trainer: EMA actor, optimizer, advantage clamp, action
perturbation, the traced (swept) path, artifacts, and the --variant fpo++ presets."""

from __future__ import annotations

import dataclasses
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import TINY

import fpo_jax
from fpo_jax import envs, flow, loss
from fpo_jax.agents import FPOAgent
from fpo_jax.checkpoint import Checkpointer
from fpo_jax.cli import parse_config
from fpo_jax.config import ConfigError, TrainConfig, validate
from fpo_jax.presets import explain, preset, preset_variants
from fpo_jax.train import train
from fpo_jax.trainer import Trainer, clip_by_global_norm_per_network, ema_update, make_optimizer

# Every FPO++ switch on (tiny sizes): what the recipe changes, not its layout.
SWITCHES = dict(
    ratio="per_sample", trust_region="aspo", t_sampler="beta", t_beta=2.0,
    cfm_loss_reduction="sqrt", cfm_loss_clamp=20.0, negative_advantage_cfm_clamp=20.0,
    log_ratio_clamp=10.0, log_ratio_straight_through=True, action_perturbation_std=0.1,
    advantage_clamp=100.0, ema_decay=0.5, ema_warmup_updates=1, weight_decay=1e-4,
    max_grad_norm=1.0, grad_clip_scope="per_network", activation="elu",
)  # fmt: skip
# One gradient step per iteration, so the EMA schedule can be checked iteration by iteration.
ONE_STEP = dict(TINY, env="gridworld", num_minibatches=1, batch_size=16, episode_length=100)


def trainer_for(**changes) -> Trainer:
    config = TrainConfig(**{**ONE_STEP, **changes})
    return Trainer(envs.make_env(config.env), config)


# ------------------------------------------------------------------------------------- EMA


def test_ema_update_copies_for_the_warmup_then_decays():
    params = [{"w": jnp.full((2,), float(i))} for i in range(1, 6)]  # params after update n
    ema = {"w": jnp.zeros(2)}
    seen = []
    for n, p in enumerate(params, start=1):
        ema = ema_update(ema, p, 0.9, jnp.asarray(n), 3)
        seen.append(float(ema["w"][0]))
    # Updates 1-3 copy (1, 2, 3); then 0.9 * 3 + 0.1 * 4 = 3.1 and 0.9 * 3.1 + 0.1 * 5 = 3.29.
    np.testing.assert_allclose(seen, [1.0, 2.0, 3.0, 3.1, 3.29], rtol=1e-6)


def test_trainer_keeps_the_ema_with_its_warmup_and_evaluates_it():
    trainer = trainer_for(ema_decay=0.5, ema_warmup_updates=1, eval_noise="zero")
    step = jax.jit(trainer.train_step)
    state0 = jax.jit(trainer.init)(jax.random.PRNGKey(0))
    chex.assert_trees_all_equal(state0.ema_params, state0.params["policy"])
    state1, _ = step(state0)
    # Update 1 is within the warm-up: a copy of the live policy.
    chex.assert_trees_all_equal(state1.ema_params, state1.params["policy"])
    state2, metrics = step(state1)
    assert bool(metrics["finite"])
    # Update 2: 0.5 * (policy after update 1) + 0.5 * (policy after update 2).
    expected = jax.tree.map(
        lambda a, b: 0.5 * a + 0.5 * b, state1.params["policy"], state2.params["policy"]
    )
    chex.assert_trees_all_close(state2.ema_params, expected, rtol=1e-6, atol=1e-7)
    assert not np.allclose(
        jax.tree.leaves(state2.ema_params)[0], jax.tree.leaves(state2.params["policy"])[0]
    )

    # Evaluation acts with the EMA copy: a state whose EMA is the initial policy evaluates
    # exactly as one whose live policy is.
    evaluate = jax.jit(trainer.evaluate)
    key = jax.random.PRNGKey(5)
    with_ema = state2.replace(ema_params=state0.params["policy"])
    live_init = state2.replace(
        params={**state2.params, "policy": state0.params["policy"]}, ema_params=None
    )
    ema_scores, live_scores = evaluate(with_ema, key), evaluate(live_init, key)
    # (An EMA run also reports its live policy's return: not part of the comparison.)
    chex.assert_trees_all_equal({k: ema_scores[k] for k in live_scores}, live_scores)
    obs = jnp.linspace(-1, 1, 8).reshape(4, 2)
    act = lambda s: trainer.policy_fn(s.eval_params, s.obs_stats)(obs, key)
    assert not np.allclose(act(with_ema), act(state2.replace(ema_params=None)))


def test_without_ema_the_state_and_its_checkpoint_are_unchanged(tmp_path):
    trainer = trainer_for()
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0))
    assert state.ema_params is None and state.eval_params is state.params
    with_ema = jax.jit(trainer_for(ema_decay=0.9).init)(jax.random.PRNGKey(0))
    # The EMA adds exactly the policy's leaves, and a checkpoint round-trips them.
    extra = len(jax.tree.leaves(with_ema)) - len(jax.tree.leaves(state))
    assert extra == len(jax.tree.leaves(state.params["policy"]))
    ckpt = Checkpointer(tmp_path)
    ckpt.save(3, with_ema)
    restored, _ = ckpt.restore(like=jax.eval_shape(lambda: with_ema))
    ckpt.close()
    chex.assert_trees_all_equal(restored, with_ema)


def test_load_run_and_export_use_the_ema_actor(tmp_path):
    layout = {k: v for k, v in ONE_STEP.items() if k != "env"}
    run = train("gridworld", run_dir=str(tmp_path), progress=False, num_timesteps=2 * 16 * 8,
                num_evals=1, ema_decay=0.5, ema_warmup_updates=1, **layout)  # fmt: skip
    final = run.member(0)
    assert not np.allclose(
        jax.tree.leaves(final.ema_params)[0], jax.tree.leaves(final.params["policy"])[0]
    )
    loaded = fpo_jax.load_run(tmp_path)
    chex.assert_trees_all_close(loaded.params, final.ema_params)
    chex.assert_trees_all_close(loaded.state.ema_params, final.ema_params)
    exported = fpo_jax.load_policy(fpo_jax.export_policy(tmp_path, tmp_path / "p.msgpack"))
    chex.assert_trees_all_close(exported.params, final.ema_params)


# ------------------------------------------------------------------------------- optimizer


def test_per_network_clip_keeps_a_small_policy_gradient_that_the_global_clip_shrinks():
    grads = {"policy": {"w": jnp.array([0.3, 0.4])}, "value": {"w": jnp.array([30.0, 40.0])}}
    per_network = clip_by_global_norm_per_network(1.0)
    clipped, _ = per_network.update(grads, per_network.init(grads))
    chex.assert_trees_all_close(clipped["policy"], grads["policy"])  # norm 0.5: untouched
    np.testing.assert_allclose(clipped["value"]["w"], [0.6, 0.8], rtol=1e-6)  # norm 50 -> 1
    global_clip = optax.clip_by_global_norm(1.0)
    shrunk, _ = global_clip.update(grads, global_clip.init(grads))
    assert float(optax.global_norm(shrunk["policy"])) < 0.02  # 0.5 / ~50


def test_weight_decay_is_adamw_and_none_is_adam():
    params = {"policy": {"w": jnp.array([2.0])}, "value": {"w": jnp.array([-1.0])}}
    zero = jax.tree.map(jnp.zeros_like, params)
    for wd, expected in [(None, [2.0]), (0.1, [2.0 * (1 - 1e-2 * 0.1)])]:
        opt = make_optimizer(TrainConfig(learning_rate=1e-2, weight_decay=wd))
        updates, _ = opt.update(zero, opt.init(params), params)
        np.testing.assert_allclose(optax.apply_updates(params, updates)["policy"]["w"], expected)


# ------------------------------------------------------------------- advantages, actions


def test_advantage_clamp_bounds_the_advantages_the_objective_sees():
    """At the rollout parameters (ratio 1) the policy gradient is linear in the advantages, so
    clamping them to +-1e-6 shrinks it by orders of magnitude."""

    def policy_grad_norm(**changes):
        trainer = trainer_for(ratio="per_sample", **changes)
        state, rollout = jax.jit(trainer.collect)(jax.jit(trainer.init)(jax.random.PRNGKey(0)))
        view = trainer._view(state.hparams)
        minibatch = (rollout.traj, rollout.bootstrap_obs)
        grads = jax.grad(lambda p: trainer._loss(view, p, minibatch)[0])(state.params)
        return float(optax.global_norm(grads["policy"]))

    free, clamped = policy_grad_norm(), policy_grad_norm(advantage_clamp=1e-6)
    assert free > 1e-3 and clamped < 1e-4 * free


def test_the_stored_action_is_the_perturbed_one_and_the_losses_are_on_it():
    config = TrainConfig(**{**TINY, **SWITCHES, "action_perturbation_std": 0.5})
    agent = FPOAgent(config, action_size=2)
    params = agent.init(jax.random.key(0), 3)
    obs = jnp.linspace(-1, 1, 30).reshape(10, 3)
    key = jax.random.key(1)
    raw, extras = agent.act(params, obs, key)
    # The flow's own sample for the same key, before the perturbation.
    sample = flow.sample(agent.velocity_fn, params, obs, jax.random.split(key)[0], action_dim=2,
                         num_steps=config.flow_steps)  # fmt: skip
    noise = np.asarray(raw - agent.to_raw_action(sample))
    assert 0.2 < noise.std() < 0.8  # std 0.5 over 20 draws
    # The recorded old losses are those of the stored (perturbed) action, not of the sample.
    on_raw = loss.cfm_loss(agent.velocity_fn, params, obs, agent.from_raw_action(raw),
                           extras["eps"], extras["t"], reduction="sqrt")  # fmt: skip
    on_sample = loss.cfm_loss(agent.velocity_fn, params, obs, sample, extras["eps"], extras["t"],
                              reduction="sqrt")  # fmt: skip
    np.testing.assert_allclose(extras["old_cfm_loss"], on_raw, rtol=1e-6)
    assert not np.allclose(extras["old_cfm_loss"], on_sample)
    # So the objective at the rollout parameters sees ratio 1 on the stored action.
    _, metrics = agent.objective(params, obs, raw, extras, jnp.ones(10))
    np.testing.assert_allclose(metrics["ratio_mean"], 1.0, atol=1e-6)


def test_every_switch_on_keeps_the_ratio_one_before_any_update():
    config = TrainConfig(**{**ONE_STEP, **SWITCHES}, learning_rate=1e-12)
    trainer = Trainer(envs.make_env("gridworld"), config)
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0))
    step = jax.jit(trainer.train_step)
    state, _ = step(state)
    _, m = step(state)
    m = jax.device_get(m)
    assert bool(m["finite"])
    np.testing.assert_allclose([m["ratio_min"], m["ratio_max"]], 1.0, atol=1e-4)
    np.testing.assert_allclose(m["cfm_loss_new"], m["cfm_loss_old"], rtol=1e-5)


# ----------------------------------------------------------------------- the traced path


@pytest.mark.slow
def test_swept_fpo_plus_plus_settings_match_the_static_run(tmp_path):
    """Every numeric FPO++ setting as a traced (swept) value trains the same numbers as the
    same setting given statically."""
    values = dict(t_beta=2.0, negative_advantage_cfm_clamp=0.5, action_perturbation_std=0.1,
                  advantage_clamp=1.5, weight_decay=1e-3)  # fmt: skip
    base = dict(ONE_STEP, **{k: v for k, v in SWITCHES.items() if k not in values},
                num_timesteps=3 * 16 * 8, num_evals=1, progress=False)  # fmt: skip
    base.pop("ema_decay"), base.pop("env")
    sweep = tuple(f"{k}={v}" for k, v in values.items()) + ("ema_decay=0.3,0.8",)
    swept = train("gridworld", sweep=sweep, **base)
    assert swept.config.num_members == 2
    single = train("gridworld", ema_decay=0.8, **values, **base)
    for x, y in zip(jax.tree.leaves((swept.member(1).params, swept.member(1).ema_params)),
                    jax.tree.leaves((single.member(0).params, single.member(0).ema_params)),
                    strict=True):  # fmt: skip
        np.testing.assert_allclose(x, y, rtol=2e-4, atol=1e-6)
    a, b = (jax.tree.leaves(swept.member(i).ema_params)[0] for i in (0, 1))
    assert not np.allclose(a, b)  # the swept decay reaches the compiled step


# -------------------------------------------------------------------------- the variant


@pytest.mark.parametrize("env", ["gridworld", "inverted_pendulum", "CartpoleBalance"])
def test_fpo_plus_plus_variant_is_the_recipe_on_every_family(env):
    c = validate(preset(env, "fpo", variant="fpo++"))
    assert "variant 'fpo++'" in c.preset_source
    assert (c.ratio, c.trust_region, c.t_sampler, c.t_beta, c.cfm_loss_reduction) == (
        "per_sample", "aspo", "beta", 1.0, "sqrt")  # fmt: skip
    assert (c.cfm_loss_clamp, c.negative_advantage_cfm_clamp, c.log_ratio_clamp) == (20, 20, 10)
    assert c.log_ratio_straight_through and c.advantage_clamp == 100
    assert (c.ema_decay, c.ema_warmup_updates, c.weight_decay) == (0.95, 500, 1e-4)
    # What depends on a run's scale stays the family's; the authors' numbers are one flag away.
    assert c.learning_rate == preset(env, "fpo").learning_rate
    assert c.flow_noise_scale == preset(env, "fpo").flow_noise_scale
    theirs = validate(preset(env, "fpo", variant="fpo++authors"))
    assert theirs.learning_rate == 1e-4
    assert theirs.policy_hidden == (256,) * 3  # their networks, on every family
    same = dict(learning_rate=c.learning_rate, variant=c.variant, policy_hidden=c.policy_hidden,
                value_hidden=c.value_hidden)  # fmt: skip
    assert dataclasses.replace(theirs, **same) == c
    assert (c.max_grad_norm, c.grad_clip_scope, c.action_perturbation_std) == (
        1.0, "per_network", 0.02)  # fmt: skip
    assert (c.num_pairs, c.flow_steps, c.eval_flow_steps, c.eval_noise) == (16, 64, 5, "zero")
    assert c.activation == "elu" and len(c.policy_hidden) == len(c.value_hidden) == 3
    if env != "gridworld":  # the built-in toy envs get CPU-sized networks
        assert (c.policy_hidden, c.value_hidden) == ((256,) * 3, (512,) * 3)
    # The family's layout stays.
    default = preset(env, "fpo")
    assert (c.num_envs, c.batch_size, c.discount) == (
        default.num_envs, default.batch_size, default.discount)  # fmt: skip
    # A Gaussian PPO baseline shares the optimizer, networks and EMA, not FPO's objective.
    p = preset(env, "ppo", variant="fpo++")
    assert (p.ema_decay, p.weight_decay, p.activation) == (0.95, 1e-4, "elu")
    assert not {"ratio", "num_pairs"} & {name for name, _ in p.algo_settings}
    assert not hasattr(p, "ratio")  # FPO's own: not PPO's to hold


@pytest.mark.parametrize("env", ["ant", "hopper"])
def test_cpu_fpo_plus_plus_is_the_recipe_at_the_cpu_variants_scale(env):
    c = validate(preset(env, "fpo", variant="cpu-fpo++"))
    recipe, cpu = preset(env, "fpo", variant="fpo++"), preset(env, "fpo", variant="cpu")
    # The recipe's parts stay; the layout and what depends on scale are the cpu variant's.
    for name in (
        "ratio",
        "trust_region",
        "t_sampler",
        "cfm_loss_reduction",
        "cfm_loss_clamp",
        "ema_decay",
        "weight_decay",
        "grad_clip_scope",
        "eval_noise",
        "num_pairs",
    ):
        assert getattr(c, name) == getattr(recipe, name), name
    for name in (
        "num_envs",
        "batch_size",
        "num_timesteps",
        "backend",
        "learning_rate",
        "flow_noise_scale",
        "policy_hidden",
        "value_hidden",
        "activation",
    ):
        assert getattr(c, name) == getattr(cpu, name), name
    assert (c.flow_steps, c.clip_epsilon) == (10, 0.2)
    # Gaussian PPO under it: the cpu layout and FPO++'s optimiser, its own learning rate.
    p = validate(preset(env, "ppo", variant="cpu-fpo++"))
    assert (p.num_envs, p.weight_decay) == (cpu.num_envs, 1e-4)
    assert p.learning_rate == preset(env, "ppo", variant="cpu").learning_rate
    assert "cpu-fpo++" not in preset_variants("CartpoleBalance")


def test_cpu_fpo_plus_plus_is_what_the_ant_cpu_experiment_passed_as_flags():
    # experiments/ant_cpu.py's "fpo++_cpu" row ran these flags; the variant must be that run.
    flags = [
        "--env",
        "ant",
        "--variant",
        "fpo++",
        "--backend",
        "mjx",
        "--num-envs",
        "1024",
        "--batch-size",
        "512",
        "--num-timesteps",
        "3000000",
        "--num-evals",
        "6",
        "--num-eval-envs",
        "32",
        "--policy-hidden",
        "32",
        "32",
        "32",
        "32",
        "--value-hidden",
        *["256"] * 5,
        "--activation",
        "silu",
        "--flow-steps",
        "10",
        "--learning-rate",
        "1e-3",
        "--flow-noise-scale",
        "0.6",
        "--clip-epsilon",
        "0.2",
    ]
    by_flags = parse_config(flags)
    by_variant = parse_config(["--env", "ant", "--variant", "cpu-fpo++"])
    ignore = dict(variant=None, preset_source=None)
    assert dataclasses.replace(by_flags, **ignore) == dataclasses.replace(by_variant, **ignore)
    layers = {n: layer for n, _, layer in explain("ant", "fpo", "cpu-fpo++")}
    assert layers["clip_epsilon"] == layers["flow_steps"] == "variant: cpu-fpo++, fpo"
    assert layers["num_envs"] == "variant: cpu-fpo++"


# A tiny layout; the variant's own networks, pairs and flow steps.
TINY_RUN = dict(num_envs=8, batch_size=8, num_minibatches=2, num_epochs=1, unroll_length=8,
                episode_length=50, num_eval_envs=4, num_timesteps=8 * 2 * 8, num_evals=1,
                progress=False, ema_warmup_updates=1)  # fmt: skip


def _tiny_fpo_plus_plus(env: str, variant: str = "fpo++", **changes):
    result = train(env, preset(env, "fpo", variant=variant), **{**TINY_RUN, **changes})
    record = result.history[-1]
    assert np.isfinite(record["eval/episode_return"])
    assert np.isfinite(record["policy_loss"]) and np.isfinite(record["value_loss"])
    assert result.member(0).ema_params is not None
    return result


@pytest.mark.slow
def test_tiny_fpo_plus_plus_run_on_a_builtin_env():
    _tiny_fpo_plus_plus("gridworld", episode_length=100)


@pytest.mark.slow
@pytest.mark.parametrize(
    "env, changes",
    [("inverted_pendulum", dict(backend="generalized")), ("CartpoleBalance", {})],
)
def test_tiny_fpo_plus_plus_run_on_brax_and_playground(env, changes):
    _tiny_fpo_plus_plus(env, **changes)


@pytest.mark.slow
def test_tiny_cpu_fpo_plus_plus_run_on_a_brax_body():
    # The variant exists for the Brax bodies only (the cpu layout is theirs).
    _tiny_fpo_plus_plus("inverted_pendulum", "cpu-fpo++", backend="generalized")


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(t_beta=2.0), "t_beta=2.0 is read only with t_sampler='beta'"),
        (dict(grad_clip_scope="per_network"), "needs max_grad_norm"),
        (dict(log_ratio_straight_through=True), "needs a log_ratio_clamp"),
        (dict(ema_decay=1.0), "ema_decay must lie in"),
        (dict(t_sampler="beta", t_beta=0.0), "t_beta must be positive"),
        (dict(action_perturbation_std=-0.1), "action_perturbation_std must be >= 0"),
    ],
)
def test_fpo_plus_plus_settings_that_nothing_would_read_or_that_are_invalid_are_refused(
    changes, message
):
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(TrainConfig(**changes))


# --------------------------------------------------------------- long-run safeguards


def _iterations(trainer: Trainer, n: int):
    step = jax.jit(trainer.train_step)
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0))
    out = []
    for _ in range(n):
        state, metrics = step(state)
        out.append((jax.device_get((state.params, state.ema_params)), jax.device_get(metrics)))
    return out


def test_the_late_phase_switches_epochs_ema_and_advantage_normalisation_at_its_iteration():
    base = dict(ema_decay=0.5, ema_warmup_updates=0, num_epochs=1)
    plain = _iterations(trainer_for(**base), 2)
    # A late phase that changes nothing computes what the plain run does.
    same = _iterations(trainer_for(**base, late_phase_after=1, late_num_epochs=1,
                                   late_ema_decay=0.5, late_normalize_advantages=True), 2)  # fmt: skip
    for (p, _), (q, _) in zip(plain, same, strict=True):
        for x, y in zip(jax.tree.leaves(p), jax.tree.leaves(q), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)
    assert [float(m["late_phase"]) for _, m in same] == [0.0, 1.0]
    # Each late setting alone: the first iteration (early phase) is the plain one's, the
    # second (late phase) differs.
    for late in (dict(late_num_epochs=3), dict(late_ema_decay=0.99),
                 dict(late_normalize_advantages=False)):  # fmt: skip
        run = _iterations(trainer_for(**base, late_phase_after=1, **late), 2)
        first = zip(jax.tree.leaves(plain[0][0]), jax.tree.leaves(run[0][0]), strict=True)
        for x, y in first:
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)
        second = zip(jax.tree.leaves(plain[1][0]), jax.tree.leaves(run[1][0]), strict=True)
        assert any(not np.allclose(x, y, rtol=1e-5, atol=1e-7) for x, y in second), late


def test_late_settings_are_refused_without_their_phase_or_their_ema():
    with pytest.raises(ConfigError, match="late_num_epochs needs late_phase_after"):
        validate(TrainConfig(late_num_epochs=16))
    with pytest.raises(ConfigError, match="late_ema_decay needs ema_decay"):
        validate(TrainConfig(late_phase_after=10, late_ema_decay=0.99))
    with pytest.raises(ConfigError, match="no late_\\* setting changes anything"):
        validate(TrainConfig(late_phase_after=10))


def test_an_ema_run_reports_the_live_policy_and_the_gap_at_each_evaluation():
    trainer = trainer_for(ema_decay=0.5, ema_warmup_updates=0)
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0))
    state, _ = jax.jit(trainer.train_step)(state)
    out = jax.jit(trainer.evaluate)(state, jax.random.PRNGKey(1))
    live = jax.jit(trainer.evaluate)(state.replace(ema_params=None), jax.random.PRNGKey(1))
    np.testing.assert_allclose(out["eval/live_episode_return"], live["eval/episode_return"])
    np.testing.assert_allclose(
        out["eval/ema_minus_live_return"],
        out["eval/episode_return"] - live["eval/episode_return"], atol=1e-6,
    )  # fmt: skip
    assert "eval/live_episode_return" not in live
