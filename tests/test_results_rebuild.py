"""Every results file whose data is stored in the repository is rebuilt by the script that names
it, and the rebuilt text is the committed text.

Each case copies the script's stored data into a fresh folder and runs the script's report mode
with ``--out-dir`` pointing there: that flag moves both where the report writes and where it reads
its data (``common.out_dir()``), so the committed files are never touched. The header lines that
describe the process writing the file (date, machine, versions, devices, commit, load, command,
compilation cache, wall time) differ between runs and are left out of the comparison.
"""

import difflib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = REPO / "experiments"
RESULTS = EXPERIMENTS / "results"

# results file -> (script, report flags, stored data under results/ that the report reads)
CASES = {
    "ppo_parity.md": (
        "ppo_parity.py",
        ["--report"],
        ["ppo_parity", "steady_step_CartpoleBalance_cpu.json"],
    ),
    "first_call_CartpoleBalance_cpu.md": (
        "first_call.py",
        ["--report"],
        ["first_call_CartpoleBalance_cpu.json"],
    ),
    "steady_step_CartpoleBalance_cpu.md": (
        "steady_step.py",
        ["--report"],
        ["steady_step_CartpoleBalance_cpu.json"],
    ),
    "ant_cpu.md": ("ant_cpu.py", ["--report"], ["ant_cpu"]),
    "ratio_diagnostics.md": ("ratio_diagnostics.py", ["--report"], ["ratio_diagnostics.json"]),
    "ratio_fidelity.md": ("ratio_fidelity.py", ["--report"], ["ratio_fidelity.json"]),
    "sampler_agnostic.md": ("sampler_agnostic.py", ["--report"], ["sampler_agnostic.json"]),
    "ablations.md": ("ablations.py", ["--report"], ["ablations.json"]),
    "obs_norm.md": ("obs_norm.py", ["--report"], ["obs_norm.json"]),
    "compile_anatomy_CartpoleBalance_cpu.md": (
        "compile_anatomy.py",
        ["--report"],
        ["compile_anatomy_CartpoleBalance_cpu.json"],
    ),
    "multimodality.md": ("multimodality.py", ["--report"], ["multimodality.json"]),
    "multimodality_gridworld_paper.md": (
        "multimodality.py",
        ["--variant", "paper", "--report"],
        ["multimodality_gridworld_paper.json"],
    ),
    "fpo_best_dm_control.md": (
        "fpo_best_dm_control.py",
        ["--report"],
        ["fpo_best_dm_control", "ppo_parity", "steady_step_CartpoleBalance_cpu.json"],
    ),
    "under_conditioned.md": ("under_conditioned.py", ["--report"], ["under_conditioned"]),
    "fpo_plus_plus_budgets.md": (
        "fpo_plus_plus_budgets.py",
        ["--report"],
        ["fpo_plus_plus_budgets"],
    ),
    "fast_preset.md": ("fast_preset.py", ["--stage", "report"], ["fast_preset"]),
    # Their checkout is only needed to evaluate authors' runs not evaluated yet; all are.
    "gridworld_side_by_side.md": (
        "gridworld_side_by_side.py",
        ["--stage", "report", "--authors-repo", "not-needed"],
        ["gridworld_side_by_side"],
    ),
    "dm_control_cpu-small.md": (
        "dm_control_table.py",
        ["--budget", "cpu-small", "--summarize-only"],
        ["dm_control_cpu-small.json"],
    ),
    "throughput_CartpoleBalance_cpu.md": (
        "bench_throughput.py",
        ["--report"],
        ["throughput_CartpoleBalance_cpu.json"],
    ),
    "profile_CartpoleBalance_cpu.md": (
        "profile_step.py",
        ["--report"],
        ["profile_CartpoleBalance_cpu.json"],
    ),
    "sweep_gridworld_cpu.md": ("bench_sweep.py", ["--report"], ["sweep_gridworld_cpu.json"]),
    "seeds_gridworld_cpu.md": (
        "bench_seeds.py",
        ["--env", "gridworld", "--report"],
        ["seeds_gridworld_cpu.json"],
    ),
    "dot_layout_cpu.md": ("bench_dot_layout.py", ["--report"], ["dot_layout_cpu.json"]),
    "step_memory_CartpoleBalance.md": (
        "step_memory.py",
        ["--report"],
        ["step_memory_CartpoleBalance.json"],
    ),
    "bitwise_before_after.md": (
        "bitwise_before_after.py",
        ["--report"],
        ["bitwise_before_after.json"],
    ),
}


# Lines about the process that wrote the file, not about the result.
PROCESS_LINES = (
    "- date:",
    "- machine:",
    "- python ",
    "- `jax.devices()`",
    "- commit:",
    "- load average",
    "- command:",
    "- XLA compilation cache",
    "Wall time of this run",
)


def result_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if not line.startswith(PROCESS_LINES)]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_results_file_rebuilds(name: str, tmp_path: Path) -> None:
    script, flags, stored = CASES[name]
    committed = RESULTS / name
    assert committed.exists(), f"{name} is not committed; run {script} {' '.join(flags)}"
    for item in stored:
        source = RESULTS / item
        if source.is_dir():
            shutil.copytree(source, tmp_path / item)
        else:
            shutil.copy2(source, tmp_path / item)
    env = dict(os.environ, MPLBACKEND="Agg")
    # A kept cache folder would change the header line naming the cache.
    env.pop("FPO_EXPERIMENTS_CACHE_DIR", None)
    cmd = [sys.executable, str(EXPERIMENTS / script), *flags, "--out-dir", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    rebuilt = tmp_path / name
    assert rebuilt.exists(), f"{script} did not write {name}:\n{proc.stdout[-2000:]}"
    diff = list(
        difflib.unified_diff(
            result_lines(committed),
            result_lines(rebuilt),
            f"committed {name}",
            f"rebuilt by {script}",
            lineterm="",
        )
    )
    assert not diff, "\n".join(diff[:80])
