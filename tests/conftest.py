"""Shared test setup: a persistent XLA compilation cache for this test session.

Many tests (and the CLI subprocesses they start) compile the same small programs; the cache
turns the repeats into disk reads. It lives under .pytest_cache, so a clean clone starts empty.
"""

import os
from pathlib import Path

import jax

CACHE = Path(__file__).resolve().parent.parent / ".pytest_cache" / "jax_compilation_cache"
CACHE.mkdir(parents=True, exist_ok=True)
# Subprocesses (CLI runs) inherit these through the environment.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(CACHE))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update(
    "jax_persistent_cache_min_compile_time_secs",
    float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
)
