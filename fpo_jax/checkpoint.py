"""Orbax checkpoints of the whole :class:`~fpo_jax.trainer.TrainState`.

A checkpoint holds params, optimizer state, observation statistics, env states, the PRNG key and
the iteration counter, so a resumed run continues bit for bit where it stopped. Orbax writes each
step to a temporary directory and renames it when complete, so a run killed mid-save (even with
``kill -9``) leaves the previous checkpoint intact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """Save and restore train states under ``directory`` (one sub-directory per iteration).

    Args:
      directory: created if missing.
      max_to_keep: older checkpoints beyond this many are deleted.
    """

    def __init__(self, directory: str | Path, max_to_keep: int = 3):
        self.directory = Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    def save(self, step: int, state: Any) -> None:
        """Write ``state`` as checkpoint ``step`` and wait until it is on disk."""
        self._manager.save(step, args=ocp.args.StandardSave(state))
        self._manager.wait_until_finished()

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def restore(self, like: Any, step: int | None = None) -> Any:
        """Restore checkpoint ``step`` (default: the latest) into the structure of ``like``.

        ``like`` is a state (or its ``jax.ShapeDtypeStruct`` tree) with the same structure, e.g. a
        freshly initialised one; its values are not used.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"No checkpoint found in {self.directory}.")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def close(self) -> None:
        self._manager.close()
