"""Checkpoints of the whole train state: every env family's state, damaged files, wrong runs."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from fpo_jax import envs
from fpo_jax.checkpoint import Checkpointer, CheckpointError
from fpo_jax.config import TrainConfig
from fpo_jax.trainer import Trainer


def initial_state(tiny, env: str, **changes):
    config = TrainConfig(env=env, **{**tiny, **changes})
    trainer = Trainer(envs.make_env(env, backend=config.backend), config)
    return jax.jit(trainer.init)(jax.random.PRNGKey(0))


def assert_same(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


@pytest.mark.slow
@pytest.mark.parametrize(
    "env, changes",
    [
        ("CartpoleBalance", {}),  # MJX state: zero-size arrays (data.act, ...)
        ("CartpoleBalance", dict(ema_decay=0.95)),  # plus the policy's EMA copy
        ("inverted_pendulum", dict(backend="generalized")),
        ("inverted_pendulum", dict(backend="positional")),
        ("inverted_pendulum", dict(backend="spring")),
        ("inverted_pendulum", dict(backend="mjx")),
        ("gridworld", {}),
    ],
)
def test_every_env_familys_state_round_trips_exactly(tiny, tmp_path, env, changes):
    state = initial_state(tiny, env, **changes)
    leaves = jax.tree.leaves(state)
    if env == "CartpoleBalance":
        assert any(x.size == 0 for x in leaves)
    assert any(not np.issubdtype(x.dtype, np.floating) for x in leaves)
    ckpt = Checkpointer(tmp_path)
    ckpt.save(7, state)
    restored, step = ckpt.restore(like=jax.eval_shape(lambda: state))
    ckpt.close()
    assert step == 7
    assert_same(state, restored)


@pytest.fixture
def gridworld_state(tiny):
    return initial_state(tiny, "gridworld")


def damage(checkpoint_dir):
    """Truncate the largest data file of a checkpoint, as a full disk or a bad copy would."""
    biggest = max(
        (p for p in checkpoint_dir.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size
    )
    biggest.write_bytes(biggest.read_bytes()[: biggest.stat().st_size // 2])


def test_damaged_latest_checkpoint_falls_back_to_the_previous(gridworld_state, tmp_path):
    ckpt = Checkpointer(tmp_path / "checkpoints")
    older = gridworld_state.replace(iteration=gridworld_state.iteration + 1)
    ckpt.save(1, older)
    ckpt.save(2, gridworld_state)
    ckpt.close()
    damage(tmp_path / "checkpoints" / "2")
    messages = []
    ckpt = Checkpointer(tmp_path / "checkpoints", log=messages.append)
    restored, step = ckpt.restore(like=gridworld_state)
    assert step == 1
    assert_same(restored, older)
    assert "checkpoint 2" in messages[0] and "damaged" in messages[0]
    assert "using checkpoint 1 instead" in messages[1]
    # The damaged step was moved aside (kept, not deleted), so step 2 can be written again.
    assert (tmp_path / "checkpoints_unreadable" / "2").is_dir()
    ckpt.save(2, gridworld_state)
    assert_same(ckpt.restore(like=gridworld_state)[0], gridworld_state)
    ckpt.close()


def test_no_readable_checkpoint_is_one_clear_error(gridworld_state, tmp_path):
    ckpt = Checkpointer(tmp_path)
    with pytest.raises(CheckpointError, match="No checkpoint found"):
        ckpt.restore(like=gridworld_state)
    ckpt.save(1, gridworld_state)
    ckpt.close()
    damage(tmp_path / "1")
    with pytest.raises(CheckpointError, match=r"None of the checkpoints .* is readable"):
        Checkpointer(tmp_path).restore(like=gridworld_state)


def test_a_checkpoint_of_another_run_is_named_as_such(gridworld_state, tiny, tmp_path):
    ckpt = Checkpointer(tmp_path)
    ckpt.save(1, gridworld_state)
    other = initial_state(tiny, "gridworld", policy_hidden=(8,))
    with pytest.raises(CheckpointError, match="another structure"):
        ckpt.restore(like=other)
    with pytest.raises(CheckpointError, match=r"No checkpoint 5 .* \[1\]"):
        ckpt.restore(like=gridworld_state, step=5)
    ckpt.close()
