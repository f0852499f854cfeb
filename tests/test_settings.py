"""Settings are owned by what reads them: each algorithm declares the config fields its agent
reads, and a changed value of a field the chosen algorithm never reads is refused."""

import ast
import dataclasses
import inspect
import json
import textwrap

import pytest

from fpo_jax import trainer
from fpo_jax.agents import ALGORITHMS, unread_settings
from fpo_jax.config import TrainConfig

FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def _config_reads(source: str) -> set[str]:
    """Config fields read in ``source``: ``c.x``, ``config.x``, ``self.config.x``."""
    found = set()
    for node in ast.walk(ast.parse(textwrap.dedent(source))):
        if isinstance(node, ast.Attribute) and node.attr in FIELDS:
            owner = ast.unparse(node.value)
            if owner in ("c", "config", "self.config", "cfg"):
                found.add(node.attr)
    return found


def _agent_reads(cls: type) -> set[str]:
    classes = [k for k in cls.__mro__ if k.__module__.startswith("fpo_jax.agents")]
    return set().union(*(_config_reads(inspect.getsource(k)) for k in classes))


@pytest.mark.parametrize("algo", ["fpo", "ppo", "dppo"])
def test_each_algorithm_declares_exactly_the_settings_its_agent_reads(algo):
    entry = ALGORITHMS[algo]
    assert entry.reads == _agent_reads(entry.make)


def test_the_trainer_reads_no_setting_only_some_algorithms_declare():
    # Otherwise a setting the trainer needs could be refused as "unread" by some algorithm. The
    # networks' activation and initialisation are read by the critic (trainer) and every default
    # policy alike.
    reads = [ALGORITHMS[a].reads for a in ("fpo", "ppo", "dppo")]
    declared, shared = set().union(*reads), set.intersection(*map(set, reads))
    trainer_reads = _config_reads(inspect.getsource(trainer))
    assert "learning_rate" in trainer_reads  # the reader sees the trainer's reads
    assert trainer_reads & declared == {"activation", "network_init"} <= shared


def test_unread_settings_name_what_other_algorithms_read():
    assert unread_settings("fpo") == frozenset()  # every shared setting some algorithm reads
    assert {"flow_noise_scale", "eval_flow_steps"} <= unread_settings("ppo")
    assert "eval_noise" not in unread_settings("ppo")  # the mean action or a sample
    assert {"trust_region", "integrator", "flow_entropy_cost"} <= unread_settings("dppo")
    assert "clip_epsilon" not in unread_settings("dppo")
    # An algorithm's own settings are not "unread" by the others: they are not theirs at all.
    assert not {"entropy_cost", "dppo_sigma", "num_pairs"} & unread_settings("ppo")


@pytest.mark.parametrize("algo", ["ppo", "dppo"])
def test_each_baseline_reads_every_setting_of_its_own(algo):
    from fpo_jax.config import algorithm_setting_names

    agent_class = ALGORITHMS[algo].make
    own = set(algorithm_setting_names(algo))
    assert own and not own & FIELDS
    read = set()
    for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(agent_class)))):
        if isinstance(node, ast.Attribute) and ast.unparse(node.value) == "self.settings":
            read.add(node.attr)
    assert read == own


def test_fpo_reads_every_setting_of_its_own_and_nothing_else_reads_them():
    from fpo_jax import diagnostics
    from fpo_jax.agents.fpo import FPOAgent, FPOSettings

    own = {f.name for f in dataclasses.fields(FPOSettings)}
    read = set()
    for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(FPOAgent)))):
        if isinstance(node, ast.Attribute) and ast.unparse(node.value) in ("s", "self.settings"):
            read.add(node.attr)
    read |= {n for n in own if f"settings.{n}" in inspect.getsource(diagnostics)}
    assert read == own


def test_fpo_owns_its_settings_and_no_other_algorithm_can_hold_them():
    from fpo_jax.agents.fpo import FPOSettings
    from fpo_jax.config import algorithm_setting_names, algorithm_settings, replace
    from fpo_jax.errors import ConfigError
    from fpo_jax.presets import preset

    fpo_own = set(algorithm_setting_names("fpo"))
    assert {
        "num_pairs",
        "ratio",
        "t_sampler",
        "cfm_loss_clamp",
        "action_perturbation_std",
    } <= fpo_own
    assert not fpo_own & FIELDS  # not TrainConfig's: the run's config holds them in algo_settings
    # Set and read by name, like a field; kept only where they differ from FPO's defaults.
    config = TrainConfig(num_pairs=16, ratio="per_sample", t_sampler="grid")
    assert config.algo_settings == (("num_pairs", 16), ("ratio", "per_sample"))
    assert config.num_pairs == 16 and algorithm_settings(config) == FPOSettings(
        16, ratio="per_sample"
    )
    assert dataclasses.replace(config, num_pairs=8).algo_settings == (("ratio", "per_sample"),)
    assert replace(config, num_pairs=4).num_pairs == 4
    # Another algorithm's config cannot hold them: refused by construction, naming the owner.
    with pytest.raises(
        ConfigError, match="num_pairs=4 has no effect with algo='ppo'.*setting of fpo"
    ):
        TrainConfig(algo="ppo", num_pairs=4)
    with pytest.raises(
        AttributeError, match="num_pairs is a setting of algo 'fpo', not of algo='ppo'"
    ):
        preset("bandit", "ppo").num_pairs  # noqa: B018
    # Switching the algorithm drops the previous one's own settings.
    assert replace(config, algo="ppo").algo_settings == ()
    # FPO's checks run before anything is built.
    with pytest.raises(ConfigError, match="num_pairs must be a positive integer"):
        from fpo_jax.config import validate

        validate(TrainConfig(num_pairs=0))
    # Runs written while they were TrainConfig fields load: FPO's into algo_settings, another
    # algorithm's dropped (they were never read).
    legacy = {**json.loads(TrainConfig().to_json()), "num_pairs": 4, "ratio": "mean"}
    assert TrainConfig.from_dict(legacy).algo_settings == (("num_pairs", 4),)
    assert TrainConfig.from_dict({**legacy, "algo": "ppo"}).algo_settings == ()


# ---------------------------------------------------------------------------------------------
# Refusals, through the Python API (all before anything is built)

UNREAD = [
    ("fpo", dict(entropy_cost=0.2), "entropy_cost=0.2 has no effect with algo='fpo'"),
    ("fpo", dict(gaussian_fixed_std=0.5), "gaussian_fixed_std=0.5 has no effect with algo='fpo'"),
    ("ppo", dict(num_pairs=16), "num_pairs=16 has no effect with algo='ppo'"),
    ("ppo", dict(eval_flow_steps=3), "eval_flow_steps=3 has no effect with algo='ppo'"),
    ("dppo", dict(ratio="per_sample"), "ratio='per_sample' has no effect with algo='dppo'"),
    ("dppo", dict(trust_region="aspo"), "trust_region='aspo' has no effect with algo='dppo'"),
    ("fpo", dict(sweep=("entropy_cost=0.1,0.2",)), "--sweep entropy_cost: algo='fpo' never"),
]


@pytest.mark.parametrize("algo, changes, message", UNREAD)
def test_a_changed_setting_the_algorithm_never_reads_is_refused(algo, changes, message):
    from fpo_jax.errors import ConfigError
    from fpo_jax.toy_envs import GridWorld
    from fpo_jax.train import train

    for env in ("gridworld", GridWorld()):  # a name and an env object
        with pytest.raises(ConfigError, match=message) as info:
            train(env, algo=algo, **changes)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("algo", ["fpo", "ppo", "dppo"])
def test_every_preset_passes_the_check_of_its_algorithm(algo):
    from fpo_jax.presets import preset, preset_variants
    from fpo_jax.train import check_settings_read

    for env in ("gridworld", "bandit", "ant", "hopper", "CartpoleBalance", "BallInCup"):
        for variant in ("default", *preset_variants(env)):
            check_settings_read(preset(env, algo, variant))
    # The presets keep TrainConfig's defaults for what the algorithm does not read: a PPO run
    # on ant has the unit source noise only flow policies change there.
    assert preset("ant", "ppo").flow_noise_scale == TrainConfig().flow_noise_scale
    assert preset("ant", "fpo").flow_noise_scale == 0.3


def test_an_injected_agent_is_not_held_to_the_registered_declaration():
    from fpo_jax.train import preflight

    # PPO's registered agent never reads the flow's source noise; an injected one may.
    config = TrainConfig(env="gridworld", algo="ppo", flow_noise_scale=0.3)
    assert preflight(config, check_reads=False).flow_noise_scale == 0.3


# ---------------------------------------------------------------------------------------------
# The config train() runs, built as the CLI builds it


@pytest.mark.parametrize("algo", ["fpo", "ppo", "dppo"])
def test_train_applies_the_algorithms_preset_overrides_to_an_env_object_and_a_name(algo):
    from fpo_jax.cli import parse_config
    from fpo_jax.toy_envs import GridWorld
    from fpo_jax.train import resolve_config

    by_name = resolve_config("gridworld", algo=algo)
    assert by_name == parse_config(["--env", "gridworld", "--algo", algo])
    by_object = resolve_config(GridWorld(), algo=algo)
    expected = {  # the registry's overrides for the default and built-in families
        "fpo": dict(eval_integrator="euler", eval_sigma=0.0),
        "ppo": dict(entropy_cost=0.01, eval_integrator="euler", eval_sigma=0.0),
        "dppo": dict(dppo_sigma=0.05, eval_integrator="stochastic", eval_sigma=0.05),
    }[algo]
    for config in (by_object, by_name):
        assert config.algo == algo
        assert {n: getattr(config, n) for n in expected} == expected
        assert hasattr(config, "entropy_cost") == (algo == "ppo")  # PPO's own
    # An object of a registered env's class gets that env's preset, as its name does.
    assert by_object.env == "gridworld"
    assert by_object == by_name
    assert (by_name.num_envs, by_name.clip_epsilon) == (64, 0.1)


def test_dppo_sigma_moves_the_evaluation_sigma_unless_eval_sigma_is_given():
    from fpo_jax.cli import parse_config
    from fpo_jax.train import resolve_config

    base = ["--env", "gridworld", "--algo", "dppo"]
    assert parse_config(base).eval_sigma == 0.05
    moved = parse_config([*base, "--dppo-sigma", "0.1"])
    assert (moved.dppo_sigma, moved.eval_sigma) == (0.1, 0.1)
    kept = parse_config([*base, "--dppo-sigma", "0.1", "--eval-sigma", "0.05"])
    assert (kept.dppo_sigma, kept.eval_sigma) == (0.1, 0.05)
    assert resolve_config("gridworld", algo="dppo", dppo_sigma=0.1).eval_sigma == 0.1
    api_kept = resolve_config("gridworld", algo="dppo", dppo_sigma=0.1, eval_sigma=0.0)
    assert api_kept.eval_sigma == 0.0


# ---------------------------------------------------------------------------------------------
# Resuming: run options may change, what is computed may not


def _saved_run(tmp_path, **changes):
    """A run directory as train() leaves it before its first checkpoint is read."""
    from fpo_jax.presets import preset

    config = preset("gridworld", "fpo", **changes.pop("preset", {}))
    config = dataclasses.replace(config, run_dir=str(tmp_path), **changes)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "config.json").write_text(config.to_json())
    return config


@pytest.mark.parametrize("schedule", ["constant", "linear"])
def test_resume_allows_a_longer_run_only_under_a_constant_learning_rate(schedule, tmp_path):
    from fpo_jax.errors import ConfigError
    from fpo_jax.train import preflight

    saved = _saved_run(tmp_path, lr_schedule=schedule)
    longer = dataclasses.replace(saved, resume=str(tmp_path), num_timesteps=2 * saved.num_timesteps)
    if schedule == "constant":
        assert preflight(longer).num_timesteps == 2 * saved.num_timesteps
    else:
        with pytest.raises(ConfigError, match="lr_schedule='linear' decays") as info:
            preflight(longer)
        assert "\n" not in str(info.value)


def test_resume_allows_run_options_and_refuses_computed_changes(tmp_path):
    from fpo_jax.errors import ConfigError
    from fpo_jax.train import preflight

    saved = _saved_run(tmp_path)
    resume = dict(resume=str(tmp_path), run_dir=None)
    options = dict(progress=False, checkpoint=False, compile_cache=False, num_devices=1)
    assert preflight(dataclasses.replace(saved, **resume, **options)).checkpoint is False
    for name, value in [("num_evals", 3), ("gae_lambda", 0.9), ("eval_noise", "zero")]:
        with pytest.raises(ConfigError, match=f"changes what is computed .*{name}"):
            preflight(dataclasses.replace(saved, **resume, **{name: value}))


def test_the_variant_is_kept_with_the_run_and_survives_resume(tmp_path):
    from fpo_jax.cli import parse_config
    from fpo_jax.errors import ConfigError
    from fpo_jax.train import preflight

    saved = _saved_run(tmp_path, preset=dict(variant="paper"))
    assert saved.variant == "paper"
    resumed = parse_config(["--resume", str(tmp_path)])
    assert resumed.variant == "paper" and resumed.num_pairs == 50
    preflight(resumed)
    with pytest.raises(ConfigError, match="--variant 'default' cannot be used with --resume"):
        preflight(parse_config(["--resume", str(tmp_path), "--variant", "default"]))


# ---------------------------------------------------------------------------------------------
# One truth: the agent trains with exactly the settings the run records

# Candidate values of settings that change no array shape of the gridworld's state, per field.
CANDIDATES = {
    "learning_rate": (1e-4, 3e-3), "clip_epsilon": (0.1, 0.3), "entropy_cost": (0.003, 0.03),
    "discount": (0.9, 0.97), "gae_lambda": (0.8, 0.9), "reward_scaling": (0.5, 2.0),
    "flow_noise_scale": (0.5, 0.8), "velocity_output_scale": (0.5, 1.0),
    "num_pairs": (2, 4), "flow_steps": (3, 5), "eval_flow_steps": (2, 7),
    "eval_noise": ("zero", "random"), "dppo_sigma": (0.1, 0.2),
    "gaussian_fixed_std": (0.3, 0.6), "ratio": ("per_sample", "mean"),
    "trust_region": ("aspo", "ppo"), "t_sampler": ("uniform", "grid"),
}  # fmt: skip


def _settings_of(algo):
    """The shared settings ``algo`` declares it reads, and its own (its settings class)."""
    from fpo_jax.config import algorithm_setting_names

    return set(ALGORITHMS[algo].reads) | set(algorithm_setting_names(algo))


def _one_truth_case(rng, algo, env, injected, swept):
    """Build what train() builds (no compile) and return (recorded config, trainer, hparams)."""
    from fpo_jax.agents import FPOAgent, GaussianPPOAgent, make_agent
    from fpo_jax.envs import env_sizes
    from fpo_jax.networks import VelocityMLP
    from fpo_jax.runs import member_inputs
    from fpo_jax.train import preflight, resolve_config
    from fpo_jax.trainer import Trainer, bind_agent

    reads = _settings_of(algo) | {"learning_rate", "discount", "gae_lambda", "reward_scaling"}
    names = sorted(set(CANDIDATES) & reads)
    if injected == "network":
        names = [n for n in names if n != "velocity_output_scale"]
    picked = rng.choice(names, size=3, replace=False)
    overrides = {str(n): CANDIDATES[n][rng.integers(2)] for n in picked}
    if swept:
        overrides["sweep"] = (
            ("clip_epsilon=0.07,0.2",) if algo != "dppo" else ("discount=0.9,0.95",)
        )
        overrides.pop("clip_epsilon" if algo != "dppo" else "discount", None)
    config = resolve_config(env, algo=algo, **overrides)
    config = preflight(config, env=env, check_reads=injected is None)
    base = resolve_config(env, algo=algo)  # what an injected agent was built from
    _, action_size = env_sizes(env if not isinstance(env, str) else __import__(
        "fpo_jax.envs", fromlist=["make_env"]).make_env(env))  # fmt: skip
    agent = None
    if injected == "agent":
        agent = make_agent(base, action_size)
    elif injected == "network":
        cls = GaussianPPOAgent if algo == "ppo" else (FPOAgent if algo == "fpo" else None)
        if cls is None:
            return None
        net = VelocityMLP(action_dim=action_size * (2 if algo == "ppo" else 1), hidden_sizes=(8,))
        agent = cls(base, action_size, network=net)
    if agent is not None:
        agent = bind_agent(agent, config)
    envobj = env if not isinstance(env, str) else None
    from fpo_jax import envs

    t = Trainer(envobj or envs.make_env(config.env), config, agent=agent)
    _, _, hparams = member_inputs(config)
    return config, t, hparams


@pytest.mark.parametrize("algo", ["fpo", "ppo", "dppo"])
def test_the_agent_reads_what_the_run_records(algo):
    """A property over random overrides: for an env name and an env object, the preset agent,
    an injected agent built from another config and an injected network, with and without a
    sweep, the settings the traced step's agent reads equal the run's recorded values (each
    swept member's own value inside the step)."""
    import jax
    import numpy as np

    from fpo_jax.toy_envs import GridWorld

    rng = np.random.default_rng(7)
    for env in ("gridworld", GridWorld()):
        for injected in (None, "agent", "network"):
            for swept in (False, True):
                case = _one_truth_case(rng, algo, env, injected, swept)
                if case is None:
                    continue
                config, t, hparams = case
                fields = _settings_of(algo) & set(CANDIDATES)
                agent_config = t.agent.config
                for name in fields - set(hparams):
                    assert getattr(agent_config, name) == getattr(config, name), (name, injected)
                for i in range(config.num_members):
                    member = {k: v[i] for k, v in hparams.items()}
                    view = t._view(member)
                    for name, value in member.items():
                        seen = getattr(view.agent.config if name not in
                                       {"discount"} else view.config, name)  # fmt: skip
                        np.testing.assert_allclose(np.asarray(jax.device_get(seen)), value)


def test_an_injected_agent_that_cannot_take_the_run_settings_is_refused():
    from fpo_jax.errors import ConfigError
    from fpo_jax.presets import preset
    from fpo_jax.train import train

    class Stubborn:
        """An agent built from a config, with no way to take another."""

        def __init__(self, config):
            self.config = config
            self.action_size = 2

    agent = Stubborn(preset("gridworld", "fpo"))
    with pytest.raises(ConfigError, match="built with num_pairs=8 but the run records num_pairs=4"):
        train("gridworld", agent=agent, num_pairs=4, progress=False)


# ---------------------------------------------------------------------------------------------
# Presets you can see


def test_explain_names_the_layer_of_every_setting_and_folds_to_the_preset():
    from fpo_jax.presets import explain, preset, preset_variants

    rows = {n: (v, layer) for n, v, layer in explain("ant", "fpo", "cpu", changes={"num_pairs": 4})}
    assert rows["num_pairs"] == (4, "your setting")
    assert rows["learning_rate"] == (1e-3, "variant: cpu, fpo")
    assert rows["flow_noise_scale"] == (0.6, "variant: cpu, fpo")
    assert rows["discount"][1].startswith("family: Brax PPO published settings")
    assert rows["clip_epsilon"][1] == "algorithm: fpo"
    assert rows["gae_lambda"][1] == "TrainConfig default"
    # ant's flow-policy layer, visible under the FPO++ recipe:
    fpp = {n: layer for n, _, layer in explain("ant", "fpo", "fpo++")}
    assert fpp["flow_noise_scale"] == "env: ant, flow policies"
    assert fpp["ratio"] == "variant: fpo++, fpo"
    # Every row's value is the preset's, for every env family, algorithm and variant.
    for env in ("gridworld", "bandit", "ant", "CartpoleBalance", "BallInCup"):
        for algo in ("fpo", "ppo", "dppo"):
            for variant in ("default", *preset_variants(env)):
                config = preset(env, algo, variant)
                for name, value, layer in explain(env, algo, variant):
                    assert getattr(config, name) == value
                    assert layer != "your setting", (env, algo, variant, name)


def test_an_env_object_of_a_known_class_gets_its_env_preset():
    from fpo_jax import envs, toy_envs
    from fpo_jax.presets import object_preset, preset
    from fpo_jax.train import resolve_config

    ppo = resolve_config(envs.make_env("bandit"), algo="ppo")
    assert ppo.clip_epsilon == preset("bandit", "ppo").clip_epsilon == 0.1
    assert ppo.env == "bandit" and "bandit's preset" in ppo.preset_source
    assert object_preset(toy_envs.GridWorld())[0].num_envs == preset("gridworld").num_envs
    assert object_preset(envs.make_env("inverted_pendulum"))[1] == "inverted_pendulum"
    # Another bandit (other modes) is no registered env: the algorithm's defaults, said so.
    other, name = object_preset(toy_envs.Bandit(modes=[[0.5]]), "ppo")
    assert name is None and "which no preset knows" in other.preset_source
    assert other.num_envs == preset("x", "ppo", family="default").num_envs


def test_a_playground_env_object_gets_the_dm_control_preset():
    from fpo_jax import envs
    from fpo_jax.presets import object_preset, preset

    config, name = object_preset(envs.make_env("CartpoleBalance"))
    # CartpoleBalance and CartpoleSwingup share a class and a preset: the class labels the run.
    assert name in ("CartpoleBalance", "CartpoleSwingup") and config.env == "Balance"
    assert config.num_envs == preset("CartpoleBalance").num_envs == 2048


def test_brax_envs_build_without_the_maintenance_warning():
    import warnings

    from fpo_jax import envs

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        envs.make_env("inverted_pendulum")
    assert not [w for w in caught if "not actively being maintained" in str(w.message)]
