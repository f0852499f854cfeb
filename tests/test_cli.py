"""The CLI as a user runs it: a real subprocess (and, for the many bad-input cases, ``main``
in-process, which is the same code path without the import cost). Every user error exits with
status 2 and one sentence, before anything is built or written. Training, kill -9 and resume on
each env family: tests/test_feature_matrix.py."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_flags

from fpo_jax import cli as train_cli
from fpo_jax.config import TrainConfig


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
    "more devices than exist": (["--env", "gridworld", "--num-devices", "3"],
                                "num_devices=3 but JAX sees 1"),
    "resume elsewhere": (["--resume", "{run}", "--run-dir", "{new}"], "different directories"),
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
    paths = dict(run=run, new=tmp_path / "new", broken=broken, file=tmp_path / "file")
    args = [a.format(**paths) for a in args]
    before = snapshot(tmp_path)
    assert train_cli.main(args) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("[fpo_jax]")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0]
    assert snapshot(tmp_path) == before


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
