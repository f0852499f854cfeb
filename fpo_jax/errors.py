"""The errors fpo_jax reports to its users, each in one sentence.

This module imports nothing, so every layer (config, envs, checkpoints, training, rendering)
can raise these without depending on the others. The CLI turns them into exit codes:
:class:`ConfigError` and :class:`CheckpointError` exit 2, :class:`TrainingDiverged` exits 3.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """An invalid configuration, reported before anything is compiled."""


class CheckpointError(RuntimeError):
    """No readable checkpoint (or none matching the state's structure)."""


class TrainingDiverged(RuntimeError):
    """A non-finite loss or parameter appeared; the last good checkpoint was kept."""


class RenderError(ValueError):
    """The environment cannot be rendered (no MuJoCo model and no drawing of ours)."""


__all__ = ["CheckpointError", "ConfigError", "RenderError", "TrainingDiverged"]
