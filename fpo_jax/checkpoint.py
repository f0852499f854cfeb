"""Orbax checkpoints of the whole :class:`~fpo_jax.trainer.TrainState`, for any env family.

A checkpoint holds params, optimizer state, observation statistics, env states, the PRNG key and
the iteration counter, so a resumed run continues bit for bit where it stopped.

Env states are arbitrary pytrees, and some leaves are ones orbax refuses or mangles: MJX states
of Playground envs hold zero-size arrays (``data.act`` of a model without actuator activations),
and a state may hold typed PRNG keys. So the state is stored *flat*: one entry per leaf that has
data (``leaf_00000``, ...), typed keys as their raw ``uint32`` data, plus a JSON entry listing
every leaf's path, shape and dtype. Zero-size leaves are rebuilt from that list on restore, and a
checkpoint whose structure does not match the state it is restored into is named as such.

Orbax writes each step to a temporary directory and renames it when complete, so a run killed
mid-save (even with ``kill -9``) leaves the previous checkpoint intact. Each finished step also
gets a manifest of its files' sizes and CRC-32s, so a checkpoint damaged afterwards (a truncated,
corrupt or deleted file) is recognised before it is read; :meth:`Checkpointer.restore` then names
it, moves it aside and falls back to the previous readable one.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from fpo_jax.errors import CheckpointError


def _leaf_name(i: int) -> str:
    return f"leaf_{i:05d}"


def _is_typed_key(x: Any) -> bool:
    return jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _describe(tree: Any) -> list[dict[str, Any]]:
    """Path, shape and dtype of every leaf of ``tree`` (concrete or abstract)."""
    return [
        {"path": jax.tree_util.keystr(path), "shape": list(x.shape), "dtype": str(x.dtype)}
        for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]
    ]


def _ignore_closed_event_loops(previous: Callable[[Any], None]) -> Callable[[Any], None]:
    """An unraisable-exception hook that drops the 'Event loop is closed' errors of orbax.

    When one read of a damaged checkpoint fails, orbax closes its event loop while
    tensorstore's other reads still complete, and each reports an unraisable RuntimeError:
    hundreds of tracebacks that say nothing the one-line report does not.
    """

    def hook(info: Any) -> None:
        if not (isinstance(info.exc_value, RuntimeError) and "Event loop is closed" in str(
                info.exc_value)):  # fmt: skip
            previous(info)

    return hook


_MANIFEST = "fpo_jax_manifest.json"


def _file_digests(step_dir: Path) -> dict[str, list[int]]:
    """Size and CRC-32 of every file under ``step_dir`` (the manifest itself excluded)."""
    digests = {}
    for path in sorted(step_dir.rglob("*")):
        if path.is_file() and path.name != _MANIFEST:
            digests[str(path.relative_to(step_dir))] = [
                path.stat().st_size,
                zlib.crc32(path.read_bytes()),
            ]
    return digests


def _write_manifest(step_dir: Path) -> None:
    tmp = step_dir / (_MANIFEST + ".tmp")
    tmp.write_text(json.dumps(_file_digests(step_dir)))
    tmp.rename(step_dir / _MANIFEST)  # atomic: a manifest is complete or absent


def _damage(step_dir: Path) -> str | None:
    """What is wrong with a checkpoint's files, or None (also when it has no manifest)."""
    manifest = step_dir / _MANIFEST
    if not manifest.is_file():
        return None
    expected = json.loads(manifest.read_text())
    found = _file_digests(step_dir)
    for name, (size, crc) in expected.items():
        if name not in found:
            return f"{name} is missing"
        if found[name][0] != size:
            return f"{name} has {found[name][0]} bytes instead of {size}"
        if found[name][1] != crc:
            return f"{name} is corrupt (checksum mismatch)"
    return None


class Checkpointer:
    """Save and restore train states under ``directory`` (one sub-directory per iteration).

    Args:
      directory: created if missing.
      max_to_keep: older checkpoints beyond this many are deleted.
      log: where to report a damaged checkpoint that was skipped (default: ignore).
    """

    def __init__(
        self,
        directory: str | Path,
        max_to_keep: int = 3,
        log: Callable[[str], None] | None = None,
    ):
        self.directory = Path(directory).absolute()
        self._log = log or (lambda msg: None)
        self._previous_hook: Callable[[Any], None] | None = None
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True
            ),
        )

    def _quiet_orbax_read_errors(self) -> None:
        """After a failed read, orbax's leftover async reads fail too and each logs a traceback
        (asyncio logger, unraisable hook) that adds nothing to our one line; mute them until
        :meth:`close`."""
        if self._previous_hook is None:
            self._previous_hook = sys.unraisablehook
            sys.unraisablehook = _ignore_closed_event_loops(sys.unraisablehook)
            self._asyncio_level = logging.getLogger("asyncio").level
            logging.getLogger("asyncio").setLevel(logging.CRITICAL)

    @property
    def unreadable_directory(self) -> Path:
        """Where damaged checkpoints are moved (beside the checkpoints, never deleted)."""
        return self.directory.parent / f"{self.directory.name}_unreadable"

    def _set_aside(self, steps: list[int]) -> None:
        # Left in place, a damaged step would stay "latest" and block a new save of that step.
        self.unreadable_directory.mkdir(exist_ok=True)
        for step in steps:
            source = self.directory / str(step)
            target = self.unreadable_directory / str(step)
            while target.exists():
                target = target.with_name(target.name + "_")
            source.rename(target)
        self._manager.reload()

    def save(self, step: int, state: Any) -> None:
        """Write ``state`` as checkpoint ``step`` and wait until it is on disk."""
        leaves = jax.tree.leaves(state)
        stored = {
            _leaf_name(i): jax.random.key_data(x) if _is_typed_key(x) else x
            for i, x in enumerate(leaves)
            if x.size > 0
        }
        args = ocp.args.Composite(
            leaves=ocp.args.StandardSave(stored),
            structure=ocp.args.JsonSave({"leaves": _describe(state)}),
        )
        self._manager.save(step, args=args)
        self._manager.wait_until_finished()
        if jax.process_index() == 0:
            # Checksums let a damaged checkpoint be recognised before orbax reads it.
            _write_manifest(self.directory / str(step))

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def restore(self, like: Any, step: int | None = None) -> tuple[Any, int]:
        """Restore checkpoint ``step``, or the latest readable one, into the structure of ``like``.

        ``like`` is a state (or its ``jax.ShapeDtypeStruct`` tree, with shardings where the
        restored arrays should live) of the same structure, e.g. a freshly initialised one; its
        values are not used. With ``step=None``, a checkpoint that fails to read is reported
        through ``log`` and the previous one is tried.

        Returns:
          (state, step of the checkpoint restored).

        Raises:
          CheckpointError: no checkpoint, the requested one unreadable, none readable, or the
            checkpoint holds a state of another structure (another env, algorithm or network).
        """
        steps = self.all_steps()
        if not steps:
            raise CheckpointError(f"No checkpoint found in {self.directory}.")
        if step is not None:
            if step not in steps:
                raise CheckpointError(
                    f"No checkpoint {step} in {self.directory} (there are: {steps})."
                )
            return self._restore_step(like, step), step
        errors = []
        for candidate in reversed(steps):
            damage = _damage(self.directory / str(candidate))
            if damage is not None:
                errors.append(candidate)
                self._log(f"checkpoint {candidate} in {self.directory} is damaged ({damage})")
                continue
            try:
                state = self._restore_step(like, candidate)
            except CheckpointError:
                raise
            except Exception as e:  # damaged files surface as many exception types
                self._quiet_orbax_read_errors()
                first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
                errors.append(candidate)
                self._log(
                    f"checkpoint {candidate} in {self.directory} is unreadable "
                    f"({type(e).__name__}: {first_line[:160]})"
                )
                continue
            if errors:
                self._set_aside(errors)
                self._log(
                    f"using checkpoint {candidate} instead; moved the unreadable ones to "
                    f"{self.unreadable_directory}"
                )
            return state, candidate
        raise CheckpointError(
            f"None of the checkpoints in {self.directory} is readable (steps {steps})."
        )

    def _restore_step(self, like: Any, step: int) -> Any:
        like_leaves, treedef = jax.tree.flatten(like)
        expected = _describe(like)
        saved = self._manager.restore(
            step, args=ocp.args.Composite(structure=ocp.args.JsonRestore())
        )["structure"]["leaves"]
        if saved != expected:
            mismatch = next(
                (f"{s['path']} {s['shape']} {s['dtype']} vs {e['path']} {e['shape']} {e['dtype']}"
                 for s, e in zip(saved, expected, strict=False) if s != e),
                f"{len(saved)} vs {len(expected)} leaves",
            )  # fmt: skip
            raise CheckpointError(
                f"Checkpoint {step} in {self.directory} holds a state of another structure than "
                f"this run's (another env, algorithm, network or number of seeds?): first "
                f"difference {mismatch}."
            )
        abstract = {}
        for i, x in enumerate(like_leaves):
            if x.size == 0:
                continue
            x = ocp.utils.to_shape_dtype_struct(x)
            if _is_typed_key(x):
                data = jax.eval_shape(jax.random.key_data, x)
                x = jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=x.sharding)
            abstract[_leaf_name(i)] = x
        stored = self._manager.restore(
            step, args=ocp.args.Composite(leaves=ocp.args.StandardRestore(abstract))
        )["leaves"]
        leaves = []
        for i, x in enumerate(like_leaves):
            if x.size == 0:
                leaves.append(jnp.zeros(x.shape, x.dtype))
            elif _is_typed_key(x):
                impl = jax.random.key_impl(x) if isinstance(x, jax.Array) else None
                leaves.append(jax.random.wrap_key_data(stored[_leaf_name(i)], impl=impl))
            else:
                leaves.append(stored[_leaf_name(i)])
        return jax.tree.unflatten(treedef, leaves)

    def restore_leaves(
        self, prefixes: tuple[str, ...], step: int | None = None
    ) -> tuple[dict[str, Any], int]:
        """The leaves of checkpoint ``step`` (default: the latest) whose path (as
        ``jax.tree_util.keystr`` writes it, e.g. ``.obs_stats.mean``) starts with one of
        ``prefixes``, as ``{path: numpy array}``, read without a template state: the
        checkpoint's own description of its leaves gives their shapes, so neither an env nor a
        trainer is needed. Raises CheckpointError when there is no such checkpoint."""
        steps = self.all_steps()
        if step is None:  # the latest whose files are whole
            step = next(
                (s for s in reversed(steps) if _damage(self.directory / str(s)) is None), None
            )
        if step is None or step not in steps:
            raise CheckpointError(
                f"No readable checkpoint {step or ''} in {self.directory} (there are: {steps})."
            )
        saved = self._manager.restore(
            step, args=ocp.args.Composite(structure=ocp.args.JsonRestore())
        )["structure"]["leaves"]
        one_device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        abstract = {
            _leaf_name(i): jax.ShapeDtypeStruct(tuple(x["shape"]), x["dtype"], sharding=one_device)
            for i, x in enumerate(saved)
            if math.prod(x["shape"]) > 0 and "key<" not in x["dtype"]
        }
        stored = self._manager.restore(
            step, args=ocp.args.Composite(leaves=ocp.args.StandardRestore(abstract))
        )["leaves"]
        return {
            x["path"]: np.asarray(stored[_leaf_name(i)])
            for i, x in enumerate(saved)
            if x["path"].startswith(prefixes) and _leaf_name(i) in stored
        }, step

    def close(self) -> None:
        self._manager.close()
        if self._previous_hook is not None:
            gc.collect()  # let the failed reads' futures report (muted) now
            sys.unraisablehook = self._previous_hook
            logging.getLogger("asyncio").setLevel(self._asyncio_level)
            self._previous_hook = None
