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
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
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
    assert "parameters" in cells[1].metadata.get("tags", []), "2nd code cell: the parameters"
    assert "FAST" in cells[1].source
    if path.stem not in KEEP_OUTPUTS:
        assert not any(c.outputs for c in cells), f"{path.name}: strip the outputs"


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
