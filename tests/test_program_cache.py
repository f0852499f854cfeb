"""Traced programs kept on disk: a second run skips tracing and computes the same bits."""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np
import pytest

from fpo_jax import compile_cache, program_cache
from fpo_jax.presets import preset
from fpo_jax.toy_envs import GridWorld
from fpo_jax.train import train

STEPS_PER_CALL = 8 * 2 * 8  # the tiny layout's batch_size * num_minibatches * unroll_length


@pytest.fixture
def own_cache(tmp_path):
    """A compilation cache (and so a program cache) of this test's own, then the session's."""
    compile_cache.enable(tmp_path / "xla", min_compile_seconds=0.0)
    yield tmp_path / "xla-programs"
    compile_cache.enable(
        os.environ["JAX_COMPILATION_CACHE_DIR"],
        float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
    )


def _run(tiny, env="gridworld", **changes):
    settings = {**tiny, "num_timesteps": 3 * STEPS_PER_CALL, "num_evals": 1, **changes}
    return train(env, **settings, progress=False)


def _assert_same(a, b):
    for x, y in zip(jax.tree.leaves(a.state), jax.tree.leaves(b.state), strict=True):
        np.testing.assert_array_equal(x, y)
    assert a.history[-1]["eval/episode_return"] == b.history[-1]["eval/episode_return"]


def test_kept_programs_are_not_traced_again_and_compute_the_same_bits(
    tiny, own_cache, capfd, monkeypatch
):
    first = _run(tiny)
    assert sorted(p.name.split("-")[0] for p in own_cache.iterdir()) == [
        "evaluation", "init", "step",
    ]  # fmt: skip
    assert "not traced again" not in capfd.readouterr().err

    # A rerun that differs only in what the host loop reads finds all three.
    again = _run(tiny, checkpoint=False, num_evals=2)
    assert "not traced again" in capfd.readouterr().err
    assert program_cache.entries() == 3
    _assert_same(first, again)

    # Files that cannot be read are traced again and replaced.
    for path in own_cache.iterdir():
        path.write_bytes(b"not a program")
    _assert_same(first, _run(tiny))
    assert "not traced again" not in capfd.readouterr().err
    assert all(path.stat().st_size > 1000 for path in own_cache.iterdir())

    # Without the cache: traced and compiled by plain jax.jit, the same bits.
    monkeypatch.setenv("FPO_JAX_PROGRAM_CACHE", "0")
    assert program_cache.folder() is None
    _assert_same(first, _run(tiny))
    assert "not traced again" not in capfd.readouterr().err


@pytest.mark.parametrize(
    "env, changes",
    [("inverted_pendulum", {"backend": "spring"}), ("CartpoleBalance", {})],
)
def test_kept_programs_of_a_brax_and_a_playground_env_compute_the_same_bits(
    tiny, own_cache, capfd, env, changes
):
    # Their env states (Brax pipeline states, MJX data with zero-size arrays) cross the
    # exported programs' boundary as arguments and results.
    first = _run(tiny, env, num_timesteps=2 * STEPS_PER_CALL, **changes)
    assert "not traced again" not in capfd.readouterr().err
    again = _run(tiny, env, num_timesteps=2 * STEPS_PER_CALL, **changes)
    assert "not traced again" in capfd.readouterr().err
    _assert_same(first, again)


def test_only_settings_the_host_loop_reads_share_a_key():
    config = preset("gridworld", "fpo")
    key = program_cache.run_key(config)
    for name in program_cache.HOST_ONLY:
        value = getattr(config, name)
        changed = (
            not value if isinstance(value, bool) else value + 1 if isinstance(value, int) else "x"
        )
        assert program_cache.run_key(dataclasses.replace(config, **{name: changed})) == key, name
    for name, value in [
        ("learning_rate", 1.234e-3),
        ("num_envs", 16),
        ("seed", 1),
        ("algo", "ppo"),
    ]:
        other = dataclasses.replace(config, **{name: value})
        assert program_cache.run_key(other) != key, name


def test_a_run_on_an_env_object_keeps_nothing(tiny, own_cache):
    # A cache folder of its own: the session's is shared with the other test workers.
    config = dataclasses.replace(preset("gridworld", "fpo"), **tiny, num_timesteps=STEPS_PER_CALL)
    before = program_cache.entries()
    # The key covers only the library's code: an env object's class could be anyone's.
    train(GridWorld(), dataclasses.replace(config, seed=12345), num_evals=1, progress=False)
    assert program_cache.entries() == before


def test_a_program_refuses_arguments_of_another_structure(own_cache):
    traced, kept = program_cache.trace("k", "double", lambda x: {"y": 2 * x}, (np.ones(3),))
    assert not kept
    program = program_cache.Program(traced)
    np.testing.assert_array_equal(program(np.ones(3))["y"], 2 * np.ones(3))
    assert program_cache.trace("k", "double", None, (np.ones(3),))[1]  # kept: fn not called
    with pytest.raises(TypeError, match="structure"):
        program((np.ones(3),))
