"""Traced programs kept on disk, so that a run whose programs were traced before skips tracing.

JAX's persistent compilation cache (:mod:`fpo_jax.compile_cache`) saves XLA's work, but a
process still traces every program in Python to find it there: about 10 s for the training
step, the evaluation and the initial state at the DM Control layout
(``experiments/results/compile_anatomy_CartpoleBalance_cpu.md``). This cache keeps each program
as JAX exports it (``jax.export``: the lowered StableHLO, with the pytree structure of its
inputs and outputs), keyed by what decides the program *without tracing it*:

- the run's settings, less those only the host loop reads (:data:`HOST_ONLY`: run directory,
  logging, the number of evaluations...);
- the source of every module of ``fpo_jax`` and the versions of the packages the programs are
  traced through (JAX, Flax, optax, Brax, MuJoCo, Playground...);
- the device (platform, kind, count) and the JAX and XLA flags that change a program.

A kept program is compiled from its StableHLO, which the compilation cache then finds (a cold
run compiles it the same way, so the second run's lookup hits). :func:`fpo_jax.train.train` uses
it only where all the code is the library's: an env made by name, the algorithm's own agent and
critic, one device; anything else traces as before. It lives beside the compilation cache folder
(``<folder>-programs``) and is on whenever that cache is on; ``FPO_JAX_PROGRAM_CACHE=0`` turns it
off alone. A file that cannot be read (another JAX, a truncated write) is traced again and
replaced. A program JAX cannot export (say, a custom call outside its stable set) is traced and
compiled as without the cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import pickle
import platform
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import jax

from fpo_jax.config import TrainConfig

# Settings the compiled programs never read: where a run writes, what it logs, when the host
# loop evaluates. Two runs that differ only in these share their programs.
HOST_ONLY = frozenset({
    "run_dir", "resume", "overwrite", "checkpoint", "progress", "compile_cache", "tensorboard",
    "wandb_project", "preset_source", "num_evals",
})  # fmt: skip

# Packages whose code the programs are traced through (a missing one counts as absent).
PACKAGES = (
    "jax", "jaxlib", "flax", "optax", "chex", "numpy", "brax", "mujoco", "mujoco-mjx",
    "playground",
)  # fmt: skip

# JAX flags that change what a traced function lowers to.
JAX_FLAGS = (
    "jax_enable_x64", "jax_default_matmul_precision", "jax_default_prng_impl",
    "jax_threefry_partitionable", "jax_numpy_rank_promotion", "jax_numpy_dtype_promotion",
)  # fmt: skip


def folder() -> Path | None:
    """The folder of kept programs, or None while the cache is off: JAX's compilation cache
    off, ``FPO_JAX_PROGRAM_CACHE=0``, or no ``flatbuffers`` (which JAX's export format needs)."""
    if os.environ.get("FPO_JAX_PROGRAM_CACHE", "1") == "0":
        return None
    xla_folder = jax.config.jax_compilation_cache_dir
    if not jax.config.jax_enable_compilation_cache or not xla_folder:
        return None
    if importlib.util.find_spec("flatbuffers") is None:
        return None
    xla_folder = Path(xla_folder)
    return xla_folder.parent / f"{xla_folder.name}-programs"


@lru_cache(maxsize=1)
def _code_fingerprint() -> str:
    """Hash of fpo_jax's source files and of the versions of the packages it traces through."""
    h = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        h.update(str(path.relative_to(package)).encode())
        h.update(path.read_bytes())
    for name in PACKAGES:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "absent"
        h.update(f"{name}={version};".encode())
    return h.hexdigest()


def _device_fingerprint() -> dict[str, Any]:
    return {
        "backend": jax.default_backend(),
        "kind": jax.devices()[0].device_kind,
        "devices": jax.device_count(),
        "processes": jax.process_count(),
        "machine": platform.machine(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "jax_flags": {name: str(getattr(jax.config, name, None)) for name in JAX_FLAGS},
    }


def run_key(config: TrainConfig) -> str:
    """The key of a run's programs: its settings (less :data:`HOST_ONLY`), the code and the
    device. Runs with equal keys trace to the same programs."""
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in HOST_ONLY}
    payload = json.dumps(
        {"settings": settings, "code": _code_fingerprint(), "device": _device_fingerprint()},
        sort_keys=True, default=repr,
    )  # fmt: skip
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


@dataclasses.dataclass(frozen=True)
class Traced:
    """A program as ``jax.export`` traced it, on the flat leaves of its arguments.

    ``in_tree`` / ``out_tree``: the pytree structures of its arguments (a tuple) and outputs;
    ``out_shape``: its outputs as ``jax.ShapeDtypeStruct`` leaves (what ``jax.eval_shape`` gives).
    """

    exported: jax.export.Exported
    in_tree: Any
    out_tree: Any

    @property
    def out_shape(self) -> Any:
        avals = self.exported.out_avals
        return self.out_tree.unflatten([jax.ShapeDtypeStruct(a.shape, a.dtype) for a in avals])


class Program:
    """A traced program compiled, called with the pytrees it was traced for.

    ``program(*args)`` flattens ``args`` (their structure must be the traced one), runs the
    executable on the leaves and rebuilds the outputs' structure; ``memory_analysis()`` is
    XLA's, as for any compiled program. ``donate``: the program may reuse its inputs' buffers.
    """

    def __init__(self, traced: Traced, donate: bool = False):
        self.traced = traced
        leaves = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in traced.exported.in_avals]
        donated = tuple(range(len(leaves))) if donate else ()
        call = jax.jit(traced.exported.call, donate_argnums=donated)
        self._compiled = call.lower(*leaves).compile()

    def __call__(self, *args: Any) -> Any:
        leaves, tree = jax.tree.flatten(args)
        if tree != self.traced.in_tree:
            raise TypeError(f"arguments of structure {tree}, traced for {self.traced.in_tree}")
        return self.traced.out_tree.unflatten(self._compiled(*leaves))

    def memory_analysis(self) -> Any:
        return self._compiled.memory_analysis()


def _export(fn: Callable[..., Any], args_like: tuple) -> Traced:
    """Trace ``fn(*args_like)`` on flat leaves."""
    leaves, in_tree = jax.tree.flatten(args_like)
    out_tree = []

    def flat_fn(*flat: Any) -> list[Any]:
        out_leaves, tree = jax.tree.flatten(fn(*jax.tree.unflatten(in_tree, flat)))
        out_tree.append(tree)
        return out_leaves

    shapes = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in leaves]
    exported = jax.export.export(jax.jit(flat_fn))(*shapes)
    return Traced(exported, in_tree, out_tree[0])


def _path(key: str, name: str) -> Path | None:
    base = folder()
    return None if base is None else base / f"{name}-{key}.pkl"


def _load(path: Path) -> Traced | None:
    try:
        blob, in_tree, out_tree = pickle.loads(path.read_bytes())
        return Traced(jax.export.deserialize(blob), in_tree, out_tree)
    except Exception:  # noqa: BLE001 - another JAX's file, a truncated write...: trace again
        return None


def _store(path: Path, traced: Traced) -> None:
    blob = pickle.dumps((bytes(traced.exported.serialize()), traced.in_tree, traced.out_tree))
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as f:
        f.write(blob)
    os.replace(f.name, path)  # the file appears whole or not at all


def trace(
    key: str, name: str, fn: Callable[..., Any], args_like: tuple
) -> tuple[Traced | None, bool]:
    """``(traced, was_kept)``: the program ``name`` of ``fn`` for arguments shaped like
    ``args_like`` (arrays or ``jax.ShapeDtypeStruct``s), as kept under ``key``, else traced now
    and kept. ``(None, False)`` while the cache is off or when JAX cannot export the program
    (e.g. a custom call outside its stable set): then compile it the usual way."""
    path = _path(key, name)
    if path is None:
        return None, False
    kept = _load(path) if path.is_file() else None
    if kept is not None:
        return kept, True
    try:
        traced = _export(fn, args_like)
    except Exception:  # noqa: BLE001 - not exportable; the usual path reports real errors
        return None, False
    _store(path, traced)
    return traced, False


def entries() -> int:
    """Number of kept programs (0 while the cache is off)."""
    base = folder()
    return 0 if base is None or not base.is_dir() else len(list(base.glob("*.pkl")))
