"""JAX's persistent compilation cache: turn it on or off, and count its entries.

The CLI turns it on (unless ``--no-compile-cache``); the experiment scripts turn it on in a
folder of their own, or off when they time compilation.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache as _jax_cache


def default_folder() -> Path:
    """``$JAX_COMPILATION_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/fpo_jax/xla`` (default
    ``~/.cache/fpo_jax/xla``)."""
    folder = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    if folder:
        return Path(folder)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fpo_jax" / "xla"


def enable(folder: str | Path | None = None, min_compile_seconds: float = 1.0) -> Path:
    """Turn the cache on in ``folder`` (default :func:`default_folder`), creating it; this takes
    effect also after programs were compiled with another folder.

    Programs that compile in under ``min_compile_seconds`` are not kept (reading them back
    would save little).
    """
    folder = Path(folder) if folder is not None else default_folder()
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_seconds)
    _jax_cache.reset_cache()  # JAX reads the folder once, at its first compile: read it again
    return folder


def disable() -> None:
    """Turn the cache off, also when ``$JAX_COMPILATION_CACHE_DIR`` is set: every program then
    compiles in full, however often an identical one compiled before."""
    jax.config.update("jax_enable_compilation_cache", False)
    jax.config.update("jax_compilation_cache_dir", None)
    _jax_cache.reset_cache()


def entries() -> int | None:
    """Number of programs in the cache folder, or None while the cache is off.

    A compile that leaves the count unchanged was loaded from the cache, not written to it.
    """
    folder = jax.config.jax_compilation_cache_dir
    if not jax.config.jax_enable_compilation_cache or not folder or not Path(folder).is_dir():
        return None
    return sum(1 for _ in Path(folder).iterdir())
