"""The CLI as a user runs it: a real subprocess (and, for the many bad-input cases, ``main``
in-process, which is the same code path without the import cost). Every user error exits with
status 2 and one sentence, before anything is built or written. Training, kill -9 and resume on
each env family: tests/test_feature_matrix.py."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import jax
import pytest
from conftest import tiny_flags

from fpo_jax import cli as train_cli
from fpo_jax.config import SECTIONS, TrainConfig, algorithm_setting_names


def run_cli(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "fpo_jax.train", *args],
        capture_output=True, text=True, timeout=600, **kwargs,
    )  # fmt: skip


@pytest.mark.slow
def test_resume_with_a_conflicting_config_fails_before_compiling(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = TrainConfig(env="gridworld", num_envs=16, batch_size=16)
    (run_dir / "config.json").write_text(config.to_json())
    out = run_cli("--resume", str(run_dir), "--num-epochs", "7")
    assert out.returncode == 2
    assert "Cannot resume with a config that changes what is computed (num_epochs" in out.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (["--env", "antt"], "closest valid names: ant"),
        (["--env", "CartpoleBalanc"], "CartpoleBalance"),
        (["--env", "ant", "--num-envs", "3000"], "must be a multiple of num_envs"),
        (["--env", "gridworld", "--learning-rate", "-1"], "learning_rate must be positive"),
    ],
)
def test_bad_input_fails_at_once_with_one_clear_sentence(args, message):
    out = run_cli(*args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_help_lists_every_flag_with_the_preset_defaults():
    out = run_cli("--env", "CheetahRun", "--help")
    assert out.returncode == 0
    for flag in ["--num-timesteps", "--algo", "--resume", "--run-dir", "--num-pairs",
                 "--trust-region", "--eval-noise", "--seed"]:  # fmt: skip
        assert flag in out.stdout
    assert "60000000" in out.stdout  # the DM Control preset's budget is the default shown
    assert "--preset-source" not in out.stdout  # bookkeeping, not a setting
    assert "--overwrite" in out.stdout


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(root.rglob("*"))}  # fmt: skip


def a_finished_run(run_dir: Path) -> Path:
    """A directory as a finished run leaves it (its checkpoint content is not needed here)."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(TrainConfig(env="gridworld").to_json())
    (run_dir / "metrics.jsonl").write_text('{"call": 0, "env_steps": 0}\n')
    (run_dir / "checkpoints").mkdir()
    return run_dir


BAD_INPUTS = {
    "run dir holds a run": (["--env", "gridworld", "--run-dir", "{run}"],
                            "already holds a run (config.json, metrics.jsonl, checkpoints)"),
    "missing logger": (["--env", "gridworld", "--wandb-project", "p", "--run-dir", "{new}"],
                       "--wandb-project needs wandb"),
    "algo not in registry": (["--env", "CartpoleBalance", "--algo", "sac"], "algo='sac'"),
    "misspelt env": (["--env", "cartpolebalanc"], "closest valid names: CartpoleBalance"),
    "resume and overwrite": (["--resume", "{run}", "--overwrite"], "contradict"),
    "resume without run": (["--resume", "{new}"], "no config.json there"),
    "corrupt config.json": (["--resume", "{broken}"], "broken/config.json is not a valid"),
    "run dir under a file": (["--env", "gridworld", "--run-dir", "{file}/run"], "not writable"),
    "more devices than exist": (["--env", "gridworld", "--num-devices", "{too_many}"],
                                "num_devices={too_many} but JAX sees {devices} device(s)"),
    "resume elsewhere": (["--resume", "{run}", "--run-dir", "{new}"], "different directories"),
    # A setting the chosen algorithm never reads.
    "fpo entropy": (["--env", "gridworld", "--algo", "fpo", "--entropy-cost", "0.2"],
                    "entropy_cost=0.2 has no effect with algo='fpo'"),
    "ppo pairs": (["--env", "gridworld", "--algo", "ppo", "--num-pairs", "16"],
                  "num_pairs=16 has no effect with algo='ppo'"),
    "dppo ratio": (["--env", "gridworld", "--algo", "dppo", "--ratio", "per_sample"],
                   "ratio='per_sample' has no effect with algo='dppo'"),
    "dppo trust region": (["--env", "gridworld", "--algo", "dppo", "--trust-region", "aspo"],
                          "trust_region='aspo' has no effect with algo='dppo'"),
    "fpo swept entropy": (["--env", "gridworld", "--sweep", "entropy_cost=0.1,0.2"],
                          "--sweep entropy_cost: algo='fpo' never reads entropy_cost"),
    # Resuming with something that changes what is computed.
    "longer linear schedule": (["--resume", "{linear}", "--num-timesteps", "2000000"],
                               "lr_schedule='linear' decays the learning rate"),
    "variant on resume": (["--resume", "{run}", "--variant", "paper"],
                          "--variant 'paper' cannot be used with --resume"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_each_user_error_is_one_sentence_exit_2_and_touches_no_file(case, tmp_path, capsys):
    if case == "missing logger" and importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    run = a_finished_run(tmp_path / "run")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    (tmp_path / "file").write_text("a file")
    args, message = BAD_INPUTS[case]
    linear = tmp_path / "linear"
    linear.mkdir()
    (linear / "checkpoints").mkdir()
    (linear / "config.json").write_text(
        TrainConfig(env="gridworld", lr_schedule="linear").to_json()
    )
    paths = dict(
        run=run, new=tmp_path / "new", broken=broken, file=tmp_path / "file", linear=linear,
        devices=jax.device_count(), too_many=jax.device_count() + 1,  # one more than there are
    )  # fmt: skip
    args = [a.format(**paths) for a in args]
    message = message.format(**paths)
    before = snapshot(tmp_path)
    assert train_cli.main(args) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("[fpo_jax]")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0]
    assert snapshot(tmp_path) == before


@pytest.mark.slow
def test_settings_nothing_reads_and_computed_changes_on_resume_are_refused_by_the_command(
    tmp_path,
):
    run = a_finished_run(tmp_path / "run")
    linear = tmp_path / "linear"
    linear.mkdir()
    (linear / "checkpoints").mkdir()
    (linear / "config.json").write_text(
        TrainConfig(env="gridworld", lr_schedule="linear").to_json()
    )
    for case in ["fpo entropy", "ppo pairs", "dppo ratio", "dppo trust region",
                 "longer linear schedule", "variant on resume"]:  # fmt: skip
        args, message = BAD_INPUTS[case]
        out = run_cli(*[a.format(run=run, linear=linear) for a in args])
        assert out.returncode == 2, (case, out.stderr[-2000:])
        lines = [line for line in out.stderr.splitlines() if not line.startswith("[fpo_jax]")]
        assert lines == [lines[0]] and message in lines[0], (case, out.stderr[-2000:])
    # Under a constant learning rate the same longer resume passes every check (it then fails
    # only because this directory holds no real checkpoint).
    out = run_cli("--resume", str(run), "--num-timesteps", "2000000", "--no-progress")
    assert "Cannot resume" not in out.stderr and "No checkpoint" in out.stderr, out.stderr[-2000:]


@pytest.mark.parametrize(
    "env_vars, message",
    [
        ({"JAX_PROCESS_ID": "0"}, "JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES missing"),
        ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"},
         "JAX_NUM_PROCESSES='two' is not an integer"),
    ],
)  # fmt: skip
def test_distributed_without_its_variables_is_one_sentence(env_vars, message, monkeypatch, capsys):
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env_vars.items():
        monkeypatch.setenv(name, value)
    assert train_cli.main(["--env", "gridworld", "--distributed"]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_overwrite_replaces_the_old_run_and_output_is_plain_lines_when_not_a_terminal(tmp_path):
    run = a_finished_run(tmp_path / "run")
    (run / "notes.txt").write_text("mine")  # not a run file: left alone
    (run / "checkpoints" / "99").mkdir()
    out = run_cli(*tiny_flags(num_timesteps=256, num_evals=2), "--env", "gridworld",
                  "--run-dir", str(run), "--overwrite")  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["1", "2"]
    assert (run / "notes.txt").read_text() == "mine"
    calls = [json.loads(line)["call"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert calls == [0, 1, 2]
    lines = out.stderr.splitlines()
    assert lines[0].startswith("[fpo_jax] fpo on gridworld, 256 env steps")
    assert "fpo_jax toy-env preset" in lines[0]
    assert any("compiling the training step" in line for line in lines)
    assert sum("env steps: eval return" in line for line in lines) == 2  # one per evaluation
    assert "\r" not in out.stderr  # no progress bar in a log file


@pytest.mark.slow
def test_show_config_prints_every_setting_with_its_layer_and_builds_nothing(tmp_path):
    # On this machine (no accelerator) a Brax body starts from its CPU variant, and says so.
    out = run_cli("--env", "ant", "--num-pairs", "4", "--show-config", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    rows = {line.split()[0]: line for line in lines if not line.startswith("# ")}
    # Grouped by the config's sections, FPO's own settings in theirs.
    headers = [line[2:] for line in lines if line.startswith("# ")]
    assert headers == ["what to train", "fpo's own settings", *list(SECTIONS)[2:]]
    # The header, every field but preset_source and algo_settings, and FPO's own settings.
    fpo_own = algorithm_setting_names("fpo")
    assert len(rows) == 1 + len(TrainConfig.__dataclass_fields__) - 2 + len(fpo_own)
    assert all(name in rows for name in fpo_own)
    assert "machine: no accelerator" in rows["variant"] and "'cpu'" in rows["variant"]
    assert "your setting" in rows["num_pairs"]
    assert "variant: cpu, fpo" in rows["learning_rate"]
    assert "Building the env" not in out.stderr and not list(tmp_path.iterdir())
    # A layout flag or --variant default keeps the published layout.
    for args in (["--num-envs", "64"], ["--variant", "default"]):
        config = train_cli.parse_config(["--env", "ant", *args])
        assert config.variant == "default"
    assert train_cli.parse_config(["--env", "ant"]).variant == (
        "cpu" if jax.default_backend() == "cpu" else "default"
    )
    assert train_cli.parse_config(["--env", "CartpoleBalance"]).variant == "default"
