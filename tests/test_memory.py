"""The trainer's memory check: XLA's analysis of the compiled step against its measured peak,
and the refusal of a run that would not fit."""

from __future__ import annotations

import ctypes
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from conftest import TINY

from fpo_jax import envs, memory
from fpo_jax.config import ConfigError, replace
from fpo_jax.presets import preset
from fpo_jax.runs import member_inputs
from fpo_jax.train import train
from fpo_jax.trainer import Trainer

_CLEAR_REFS = Path("/proc/self/clear_refs")


def _rss_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _measured_peak(step, state) -> int:
    """Bytes live at the peak of the first run of ``step(state)`` on the CPU.

    The CPU backend reports no allocator statistics (``memory_stats()`` is None), so this reads
    the process's resident memory: the peak-RSS mark is reset (``clear_refs`` 5), the step
    runs, and the rise of the mark over the RSS just before is what the step allocated on top
    of its (resident) state. glibc's mmap threshold is pinned at 64 KiB first, so every large
    XLA buffer is a fresh mapping that the mark counts, not a reuse of memory freed earlier
    (e.g. by the compiler). The first run is measured because XLA's CPU runtime may keep a
    program's scratch buffer mapped after it, and a later run then adds nothing.
    """
    ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 16)  # M_MMAP_THRESHOLD, which also stops it moving
    jax.block_until_ready(state)
    _CLEAR_REFS.write_text("5")
    before = _rss_bytes("VmRSS")
    jax.block_until_ready(step(state))
    return _rss_bytes("VmHWM") - before + memory.program_memory(step).argument


@pytest.mark.slow
@pytest.mark.skipif(not _CLEAR_REFS.exists(), reason="needs Linux's /proc/self/clear_refs")
@pytest.mark.parametrize(
    "layout",
    [  # ~50 MiB and ~160 MiB of scratch: large enough that the runtime's own pages are noise
        dict(num_envs=128, batch_size=256, num_minibatches=4, unroll_length=32, num_seeds=2),
        dict(
            num_envs=64,
            batch_size=128,
            num_minibatches=4,
            unroll_length=32,
            num_pairs=16,
            num_seeds=4,
        ),
    ],  # fmt: skip
)
def test_the_estimate_is_within_a_quarter_of_the_measured_peak(layout):
    # The runtime's thread pool is started by an unrelated program, so its first pages do not
    # count against the step.
    x = jnp.ones((512, 512))
    jax.block_until_ready(jax.jit(lambda a: jnp.tanh(a @ a) @ a)(x))
    config = replace(preset("gridworld", "fpo"), **{**TINY, **layout})
    trainer = Trainer(envs.make_env("gridworld"), config)
    _, keys, hparams = member_inputs(config)
    state = jax.jit(jax.vmap(trainer.init))(keys, hparams)
    step = jax.jit(jax.vmap(trainer.train_step), donate_argnums=0).lower(state).compile()
    estimate = memory.program_memory(step)
    assert estimate.temp > 10 * estimate.argument  # scratch dominates: states alone would miss it
    measured = _measured_peak(step, state)
    assert abs(estimate.peak / measured - 1) < 0.25, (estimate, measured)


@pytest.mark.slow  # one compile of the tiny step (~30 s on a busy 2-core CPU, cold cache)
def test_a_run_that_would_not_fit_is_refused_before_its_run_dir_is_written(
    tmp_path, monkeypatch, capsys
):
    # A device with 16 KiB free: the tiny step's scratch alone is more.
    monkeypatch.setattr(memory, "free_bytes", lambda device=None: 2**14)
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError) as e:
        train("gridworld", num_seeds=2, run_dir=str(run_dir), progress=False,
              num_timesteps=128, **TINY)  # fmt: skip
    assert "2 members in one program needs about" in str(e.value)
    assert "more than the 0.0 MiB free on cpu: sweep fewer settings or seeds" in str(e.value)
    assert not run_dir.exists()
    # The printed estimate is the one refused.
    printed = capsys.readouterr().err
    assert "2 members in one program: about" in printed and "0.0 MiB free on cpu" in printed


def test_check_fits_compares_what_the_step_adds_to_its_state_with_the_free_memory():
    need = memory.ProgramMemory(argument=100, output=100, alias=100, temp=900)
    memory.check_fits(need, 900, "a step", "shrink it.")  # the state is already allocated
    memory.check_fits(need, None, "a step", "shrink it.")  # nothing known: nothing refused
    with pytest.raises(ConfigError, match="a step needs about .* MiB at its peak.*: shrink it."):
        memory.check_fits(need, 899, "a step", "shrink it.")
