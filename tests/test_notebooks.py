"""The notebooks run top to bottom (smoke budget) in a fresh python3 kernel.

Each notebook is executed with nbclient and ``FPO_NOTEBOOK_SMOKE=1`` in the kernel's
environment, which forces its small budget; any cell error fails the test. The kernel runs in a
temporary directory so nothing is written into the repository, and the saved notebook is not
modified.

Smoke runs are almost all XLA compilation (each notebook compiles several training steps, most
of them over MuJoCo physics), so the kernels get XLA's CPU backend optimisation turned down:
that halves compile times here, and the tiny smoke runs do not notice the slower code.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 300
FAST_COMPILE_XLA_FLAGS = (
    "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
)
# Outputs are stripped from the saved notebooks, except where the figures are the point.
KEEP_OUTPUTS = {"multimodality"}


def _cells(path: Path) -> list:
    return nbformat.read(path, as_version=4).cells


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_layout(path):
    cells = [c for c in _cells(path) if c.cell_type == "code"]
    assert "IN_COLAB" in cells[0].source and "%pip install" in cells[0].source
    assert cells[0].source.count("FPO_JAX_SOURCE = ") == 1, "install cell: one source to set"
    assert "OWNER" not in path.read_text(), "no placeholder to edit in the notebooks"
    assert "parameters" in cells[1].metadata.get("tags", []), "2nd code cell: the parameters"
    assert "FAST" in cells[1].source
    if path.stem not in KEEP_OUTPUTS:
        assert not any(c.outputs for c in cells), f"{path.name}: strip the outputs"


def test_repository_url_in_one_place():
    # pyproject.toml's [project.urls] holds the repository URL; the notebooks do not repeat it
    # (their install cell installs whatever FPO_JAX_SOURCE names).
    url = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    assert url.startswith("https://github.com/")
    for path in NOTEBOOKS:
        assert url not in path.read_text(), path.name


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    # The kernel inherits this process's environment.
    monkeypatch.setenv("FPO_NOTEBOOK_SMOKE", "1")
    xla_flags = os.environ.get("XLA_FLAGS", "")
    monkeypatch.setenv("XLA_FLAGS", f"{xla_flags} {FAST_COMPILE_XLA_FLAGS}".strip())
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError (with the cell's traceback) on any error
