"""Shared test setup: a persistent XLA compilation cache for this test session.

Many tests (and the CLI subprocesses they start) compile the same small programs; the cache
turns the repeats into disk reads. It lives under .pytest_cache, so a clean clone starts empty.
"""

import os
from pathlib import Path

import pytest

from fpo_jax import compile_cache

CACHE = Path(__file__).resolve().parent.parent / ".pytest_cache" / "jax_compilation_cache"
CACHE.mkdir(parents=True, exist_ok=True)
# Subprocesses (CLI runs) inherit these through the environment.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(CACHE))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")
compile_cache.enable(
    os.environ["JAX_COMPILATION_CACHE_DIR"],
    float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
)

# One tiny layout for every test that trains: small networks, a few short trajectories. Tests
# that need other sizes override fields; the CLI tests turn it into flags with `tiny_flags`. Only
# shared settings: an algorithm's own (FPO's num_pairs...) would be refused by the others.
TINY = dict(
    num_envs=8,
    batch_size=8,
    num_minibatches=2,
    num_epochs=1,
    unroll_length=8,
    episode_length=50,
    num_eval_envs=4,
    policy_hidden=(16, 16),
    value_hidden=(32, 32),
    flow_steps=4,
    eval_flow_steps=4,
)


def tiny_flags(**changes) -> list[str]:
    """TINY (with ``changes``) as CLI flags, e.g. ``--policy-hidden 16 16``."""
    flags = []
    for name, value in {**TINY, **changes}.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, tuple):
            flags += [flag, *map(str, value)]
        else:
            flags += [flag, str(value)]
    return flags


@pytest.fixture
def tiny():
    """The shared tiny layout as a dict of config fields (a fresh copy per test)."""
    return dict(TINY)
