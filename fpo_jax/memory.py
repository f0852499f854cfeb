"""Memory of a compiled program, from XLA's own analysis, and the memory free to run it.

The trainer checks a run against this before its first step (:func:`check_fits`), and the
experiment scripts report the same figures (``experiments/step_memory.py``). The figure is
XLA's buffer assignment of the compiled program, so it includes the update's scratch memory
(minibatch gradients, the CFM pairs' activations), which is most of a training step's peak.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax

from fpo_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class ProgramMemory:
    """XLA's accounting of one compiled program, in bytes.

    Attributes:
      argument: the inputs (e.g. the training state).
      output: the outputs.
      alias: outputs written into donated inputs (counted in both of the above).
      temp: the program's scratch buffers.
    """

    argument: int
    output: int
    alias: int
    temp: int

    @property
    def peak(self) -> int:
        """Bytes live at once while it runs: inputs, outputs not aliased to them, scratch."""
        return self.argument + self.output - self.alias + self.temp

    @property
    def beyond_arguments(self) -> int:
        """Bytes the program allocates on top of its (already allocated) inputs."""
        return self.peak - self.argument

    def times(self, n: int) -> ProgramMemory:
        """The memory of ``n`` copies (e.g. one per CPU device, all in one machine's RAM)."""
        return ProgramMemory(self.argument * n, self.output * n, self.alias * n, self.temp * n)

    def as_dict(self) -> dict[str, int]:
        return {**dataclasses.asdict(self), "peak": self.peak}


def program_memory(compiled: Any) -> ProgramMemory | None:
    """XLA's memory analysis of ``compiled`` (a ``jax.jit(f).lower(...).compile()`` result),
    or None where the backend reports none."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return None
    if m is None:
        return None
    return ProgramMemory(
        argument=int(m.argument_size_in_bytes),
        output=int(m.output_size_in_bytes),
        alias=int(m.alias_size_in_bytes),
        temp=int(m.temp_size_in_bytes),
    )


def free_bytes(device: Any = None) -> int | None:
    """Memory free for new buffers on ``device`` (default: this process's first device).

    An accelerator reports its allocator's limit and what is in use; a CPU, which reports
    neither, gets the machine's available RAM (``MemAvailable`` of ``/proc/meminfo``). None
    where neither is known.
    """
    device = device or jax.local_devices()[0]  # only this process's devices report memory
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - not every backend implements it
        stats = None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError):
        return None


def _size(nbytes: float) -> str:
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:,.1f} MiB"


def describe(memory: ProgramMemory, free: int | None) -> str:
    """One line: the program's peak, its parts and the free memory."""
    room = f"; {_size(free)} free on {jax.default_backend()}" if free is not None else ""
    return (
        f"about {_size(memory.peak)} at its peak (XLA's analysis of the compiled step: "
        f"{_size(memory.argument)} state, {_size(memory.temp)} scratch, "
        f"{_size(memory.output - memory.alias)} other outputs){room}"
    )


def check_fits(memory: ProgramMemory, free: int | None, what: str, remedy: str) -> None:
    """ConfigError when ``memory`` would not fit in ``free`` bytes; nothing when ``free`` is None.

    ``memory``'s arguments are already allocated (they are not in ``free``): what must fit is
    what the program allocates on top of them, :attr:`ProgramMemory.beyond_arguments`.
    """
    if free is None or memory.beyond_arguments <= free:
        return
    raise ConfigError(
        f"{what} needs about {_size(memory.peak)} at its peak "
        f"({_size(memory.beyond_arguments)} beyond its state), more than the "
        f"{_size(free)} free on {jax.default_backend()}: {remedy}"
    )
