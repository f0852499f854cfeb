"""Config presets and validation: bad configs fail before compiling, in one sentence."""

import dataclasses
import json

import pytest

from fpo_jax.config import ConfigError, TrainConfig, replace, validate
from fpo_jax.presets import preset, preset_variants


def test_dm_control_preset_is_the_papers():
    c = preset("CartpoleBalance", "fpo")
    assert (c.num_envs, c.unroll_length, c.batch_size, c.num_minibatches, c.num_epochs) == (
        2048, 30, 1024, 32, 16,
    )  # fmt: skip
    assert (c.learning_rate, c.clip_epsilon, c.num_pairs, c.flow_steps) == (3e-4, 0.05, 8, 10)
    assert (c.discount, c.gae_lambda, c.reward_scaling) == (0.995, 0.95, 10.0)
    assert c.env_steps_per_iteration == 983_040
    assert "FPO paper" in c.preset_source
    # Brax's trainer order, as the authors' code runs it, for every algorithm on these tasks.
    for algo in ("fpo", "ppo", "dppo"):
        d = preset("CartpoleBalance", algo)
        assert (d.obs_norm, d.refresh_initial_states) == ("brax", False)
    assert (preset("ant").obs_norm, preset("gridworld").refresh_initial_states) == ("welford", True)
    assert preset("BallInCup").discount == 0.95
    ppo = preset("CheetahRun", "ppo")
    assert (ppo.clip_epsilon, ppo.entropy_cost) == (0.1, 0.01)
    assert preset("CheetahRun", "dppo").clip_epsilon == 0.2


def test_brax_preset_keeps_entropy_only_for_ppo():
    assert preset("ant", "ppo").entropy_cost == 0.01
    assert not hasattr(preset("ant", "fpo"), "entropy_cost")  # PPO's own setting
    assert "Brax" in preset("ant").preset_source


def test_ant_flow_policies_start_with_smaller_source_noise_and_other_envs_keep_the_papers():
    assert preset("ant", "fpo").flow_noise_scale == preset("ant", "dppo").flow_noise_scale == 0.3
    for env in ("hopper", "CartpoleBalance", "gridworld"):
        assert preset(env, "fpo").flow_noise_scale == 1.0
    # Case-insensitive names resolve to the registered spelling.
    assert preset("cartpolebalance").env == "CartpoleBalance"


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(num_envs=300), "multiple of num_envs"),
        (dict(batch_size=0), "batch_size must be a positive integer"),
        (dict(learning_rate=-1.0), "learning_rate must be positive"),
        (dict(discount=1.5), "discount must lie in"),
        (dict(max_grad_norm=0.0), "max_grad_norm"),
        (dict(ratio="median"), "ratio='median'"),
        (dict(integrator="leapfrog"), "integrator='leapfrog'"),
    ],
)
def test_invalid_configs_fail_in_one_sentence(changes, message):
    with pytest.raises(ConfigError, match=message) as info:
        validate(replace(TrainConfig(), **changes))
    assert "\n" not in str(info.value)


def test_unknown_field_and_json_round_trip():
    with pytest.raises(ConfigError, match="Unknown config fields"):
        replace(TrainConfig(), num_env=3)
    c = preset("CheetahRun", "ppo")
    assert TrainConfig.from_dict(json.loads(c.to_json())) == c


def test_derived_sizes():
    c = TrainConfig(num_envs=64, batch_size=32, num_minibatches=4, unroll_length=10,
                    iterations_per_call=2, num_timesteps=10_000)  # fmt: skip
    assert c.num_unrolls == 2
    assert c.env_steps_per_iteration == 1280
    assert c.env_steps_per_call == 2560
    assert c.num_calls == 4  # rounded up


def test_cli_variant_picks_the_named_preset_and_flags_still_override():
    from fpo_jax.cli import parse_config

    c = parse_config(["--env", "gridworld", "--algo", "ppo", "--variant", "paper",
                      "--num-epochs", "2"])  # fmt: skip
    assert c == replace(preset("gridworld", "ppo", variant="paper"), num_epochs=2)
    assert c.gaussian_fixed_std == 0.5
    assert parse_config(["--env", "gridworld"]) == preset("gridworld")
    with pytest.raises(ConfigError, match="variant='paper' is not one of"):
        parse_config(["--env", "CartpoleBalance", "--variant=paper"])


def test_dm_control_fast_variant_changes_only_the_layout_and_fpos_source_noise():
    """--variant fast is a cheaper layout of the same algorithms: against each task's default
    it changes only sizes and budget (the same for FPO and PPO, a quarter of the gradient epochs
    per env step, smaller iterations), plus FPO's source noise; everything else is the task's."""
    from fpo_jax.cli import parse_config

    layout = {"num_envs", "batch_size", "num_minibatches", "unroll_length", "num_epochs",
              "num_timesteps", "num_evals", "num_eval_envs"}  # fmt: skip
    for env in ("CartpoleBalance", "CheetahRun", "ReacherEasy"):
        changed = {}
        for algo in ("fpo", "ppo"):
            fast, default = preset(env, algo, variant="fast"), preset(env, algo)
            assert validate(fast) == fast
            assert parse_config(["--env", env, "--algo", algo, "--variant", "fast"]) == fast
            changed[algo] = {f.name for f in dataclasses.fields(fast)
                             if getattr(fast, f.name) != getattr(default, f.name)}  # fmt: skip
            changed[algo] -= {"preset_source", "variant"}  # what records the choice
            assert fast.num_epochs * 4 == default.num_epochs
            assert fast.env_steps_per_iteration < default.env_steps_per_iteration
        assert changed["fpo"] - layout == {"flow_noise_scale"}
        assert changed["ppo"] <= layout
        fpo, ppo = preset(env, "fpo", variant="fast"), preset(env, "ppo", variant="fast")
        assert all(getattr(fpo, name) == getattr(ppo, name) for name in layout)
    assert "fast" not in preset_variants("gridworld")


def test_dm_control_tuned_variant_is_the_ppo_comparisons_layout_with_the_sweeps_best_fpo():
    """--variant tuned trains at ppo_parity's layout and budget, FPO with the setting its stored
    sweep found best (results/fpo_best_dm_control/sweep.json) and PPO with Playground's."""
    import sys
    from pathlib import Path

    experiments = Path(__file__).resolve().parent.parent / "experiments"
    sys.path.insert(0, str(experiments))
    import fpo_best_dm_control
    import ppo_parity

    sweep = json.loads((experiments / "results/fpo_best_dm_control/sweep.json").read_text())
    best = fpo_best_dm_control.best_member(sweep)
    assert set(best) == set(fpo_best_dm_control.GRID)
    for env in ("CartpoleBalance", "CheetahRun"):
        fpo = preset(env, "fpo", variant="tuned")
        assert validate(fpo) == fpo
        assert {name: getattr(fpo, name) for name in best} == best
        task = ppo_parity.TASKS["CartpoleBalance"]
        for name, value in task["layout"].items():
            assert getattr(fpo, name) == value
        assert fpo.num_timesteps == task["iterations"] * fpo.env_steps_per_iteration
        assert (fpo.obs_norm, fpo.refresh_initial_states) == ("brax", False)
        ppo = preset(env, "ppo", variant="tuned")
        assert (ppo.learning_rate, ppo.entropy_cost, ppo.clip_epsilon) == (1e-3, 0.01, 0.3)
        assert ppo.num_timesteps == fpo.num_timesteps and ppo.num_envs == fpo.num_envs


def test_every_brax_body_has_a_cpu_variant_that_shrinks_its_layout():
    from fpo_jax.presets import _BRAX_PPO, CPU_NUM_ENVS, CPU_NUM_TIMESTEPS

    for env, published in _BRAX_PPO.items():
        assert "cpu" in preset_variants(env)
        for algo in ("fpo", "ppo", "dppo"):
            config = validate(preset(env, algo, variant="cpu"))
            assert config.num_envs == CPU_NUM_ENVS and config.num_timesteps == CPU_NUM_TIMESTEPS
            # The published batch scaled with the env count; epochs, minibatches, unroll kept.
            assert config.batch_size / published["batch_size"] == pytest.approx(
                CPU_NUM_ENVS / published["num_envs"]
            )
            assert (config.num_epochs, config.unroll_length) == (
                published["num_epochs"], published["unroll_length"],
            )  # fmt: skip
    ant_fpo, ant_ppo = preset("ant", "fpo", variant="cpu"), preset("ant", "ppo", variant="cpu")
    assert (ant_fpo.learning_rate, ant_fpo.flow_noise_scale, ant_fpo.backend) == (1e-3, 0.6, "mjx")
    assert ant_ppo.learning_rate == preset("ant", "ppo").learning_rate  # measured for FPO only


def test_the_config_reads_in_its_sections():
    from fpo_jax.config import RUN_OPTIONS, SECTIONS

    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    # Every field in exactly one section, the class in the sections' order (bookkeeping last).
    assert fields == [name for names in SECTIONS.values() for name in names] + ["preset_source"]
    assert SECTIONS["run options"] == RUN_OPTIONS
    assert SECTIONS["the algorithm's own settings"] == ("algo_settings",)
