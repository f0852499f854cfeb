"""fpo_jax: Flow Policy Optimization (FPO) in JAX on Brax and MuJoCo Playground.

Entry points: :func:`fpo_jax.train.train` (and ``python -m fpo_jax.train``), the pure objective
:func:`fpo_jax.loss.fpo_objective`, and trained policies as artifacts: :func:`load_run`,
:func:`export_policy`, :func:`load_policy` (from :mod:`fpo_jax.artifacts`, imported on first
use so that ``import fpo_jax`` stays light and ``load_policy`` needs no simulator).
"""

from __future__ import annotations

from typing import Any

__all__ = ["export_policy", "load_policy", "load_run"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from fpo_jax import artifacts

        return getattr(artifacts, name)
    raise AttributeError(f"module 'fpo_jax' has no attribute {name!r}")
