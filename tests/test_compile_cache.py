"""The compile-cache helper the CLI, the experiments and this test session share."""

import os

import jax
import jax.numpy as jnp

from fpo_jax import compile_cache


def test_a_compiled_program_lands_in_the_folder_and_off_means_no_count(tmp_path):
    try:
        folder = compile_cache.enable(tmp_path / "xla", min_compile_seconds=0.0)
        assert folder.is_dir() and compile_cache.entries() == 0
        # A program no other test compiles (the constant makes it unique to this test).
        jax.jit(lambda x: jnp.sin(x) * 1.2345678).lower(jnp.ones(3)).compile()
        assert compile_cache.entries() > 0
        compile_cache.disable()
        assert compile_cache.entries() is None
    finally:  # back to the session's cache (tests/conftest.py)
        compile_cache.enable(
            os.environ["JAX_COMPILATION_CACHE_DIR"],
            float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
        )
