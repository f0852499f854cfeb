"""The host loop around the compiled training step, as small parts that can be replaced one by one.

:func:`fpo_jax.train.train` runs, per call of the compiled step (``iterations_per_call``
training iterations of every member)::

    state, metrics = step(state)
    divergence.check(metrics, call)          # DivergencePolicy: name, carry as NaN, or stop
    record = call_record(...)                # the metrics line of this call
    if evaluator.due(call):                  # Evaluator: schedule + evaluation episodes
        record.update(evaluator(state, call))
    progress_fn(record, state copy)          # the user's callback (may stop the run)
    writer.write(record)                     # MetricsWriter: metrics.jsonl, TensorBoard, W&B,
                                             # and the user's own loggers
    checkpointer.save(state)                 # after each evaluation
    progress.after_call(record, ...)         # Progress: bar or plain lines, the CPU ETA line

Each part is a small class with one concern, so a user replaces one (e.g. a custom logger,
``train(..., loggers=[MyLogger()])``) without copying the loop. Nothing here runs inside the
compiled step.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fpo_jax.checkpoint import Checkpointer
from fpo_jax.config import TrainConfig, sweep_members
from fpo_jax.errors import TrainingDiverged
from fpo_jax.runs import over_members
from fpo_jax.stats import mean_stderr
from fpo_jax.timing import format_seconds

Log = Callable[[str], None]


def nanmean(x: Any) -> float:
    """Mean over members ignoring NaN (e.g. no episode ended in a call); NaN if all are NaN."""
    x = np.asarray(x, dtype=np.float64)
    finite = ~np.isnan(x)
    return float(x[finite].mean()) if finite.any() else float("nan")


def eval_calls(num_calls: int, num_evals: int) -> set[int]:
    """Calls after which to evaluate and checkpoint: ``num_evals`` evenly spaced, last included."""
    if num_evals == 0:
        return {num_calls}
    return {math.ceil(i * num_calls / num_evals) for i in range(1, num_evals + 1)}


class Evaluator:
    """When to evaluate, and the evaluation episodes of every member.

    ``due(call)``: ``config.num_evals`` evenly spaced calls, the last one included.
    ``evaluator(state, call, diverged) -> record``: the mean over members of each evaluation
    metric (the ``diverged`` members are NaN and skipped), each member's own (``per_member/...``) and, for
    seeds of one setting, the standard error of the return. A member's evaluation key depends
    on its seed and the call only, so a sweep member and the single run of its setting and seed
    evaluate on the same episodes.
    """

    def __init__(self, trainer: Any, config: TrainConfig, members: list[dict[str, float]]):
        self.config = config
        self.members = members
        self.calls = eval_calls(config.num_calls, config.num_evals)
        self.function = over_members(trainer.evaluate, config.num_members)  # (state, keys)
        self._evaluate = jax.jit(self.function)
        self._base_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 0x5EED)
        self._member_seeds = jnp.array([m["seed"] for m in members])

    def compile(self, state_shape: Any) -> None:
        """Compile the evaluation program ahead of its first use, for a state of this shape
        (e.g. ``jax.eval_shape`` of the init), so that it can compile while other programs do
        (:func:`fpo_jax.train.train` compiles it beside the training step)."""
        self._evaluate = self._evaluate.lower(state_shape, self.keys(0)).compile()

    def use_compiled(self, program: Any) -> None:
        """Evaluate with ``program``, compiled elsewhere from :attr:`function` for this layout
        (e.g. from :mod:`fpo_jax.program_cache`)."""
        self._evaluate = program

    def due(self, call: int) -> bool:
        return call in self.calls

    def keys(self, call: int) -> jax.Array:
        """(members,) evaluation keys of ``call``: from each member's seed and the call only."""
        call_key = jax.random.fold_in(self._base_key, call)
        return jax.vmap(lambda s: jax.random.fold_in(call_key, s))(self._member_seeds)

    def __call__(self, state: Any, call: int, diverged: Sequence[int] = ()) -> dict[str, Any]:
        """``diverged``: members reported as NaN whatever their episodes returned (NaN
        parameters act with NaN actions, which some envs score as an ordinary 0)."""
        out = jax.device_get(self._evaluate(state, self.keys(call)))
        if diverged:
            out = {k: np.where(np.isin(np.arange(len(v)), diverged), np.nan, v)
                   for k, v in out.items()}  # fmt: skip
        record: dict[str, Any] = {name: nanmean(v) for name, v in out.items()}
        record.update({f"per_member/{name}": v for name, v in out.items()})
        if self.config.num_members > 1 and not self.config.sweep:
            # The seeds' spread; a sweep's members differ on purpose.
            record["eval/episode_return_stderr"] = mean_stderr(out["eval/episode_return"])[1]
        return record


class DivergencePolicy:
    """What a non-finite loss or parameter does.

    One member of several diverging (say, a sweep's largest learning rate) is named once and
    carried on as NaN while the others train; a single-member run, or every member, diverging
    stops the run with :class:`~fpo_jax.errors.TrainingDiverged` (the last good checkpoint is
    kept).
    """

    def __init__(self, config: TrainConfig, checkpointer: Checkpointer | None, log: Log):
        self.config = config
        self.checkpointer = checkpointer
        self.log = log
        self.diverged: list[int] = []

    def check(self, metrics: dict[str, Any], call: int) -> None:
        """``metrics["finite"]``: (members,) booleans of this call."""
        c = self.config
        finite = np.asarray(metrics["finite"]).reshape(-1)
        iteration = call * c.iterations_per_call
        if c.num_members > 1 and finite.any():
            for i in np.flatnonzero(~finite):
                if i not in self.diverged:
                    self.diverged.append(int(i))
                    self.log(
                        f"member {i} {sweep_members(c)[i]} diverged (non-finite losses or "
                        f"parameters) at iteration {iteration}; it is kept as NaN and the other "
                        "members go on."
                    )
        elif not finite.all():
            bad = [n for n, v in metrics.items() if not np.all(np.isfinite(v))] or ["parameters"]
            ckpt = self.checkpointer
            kept = f"; last good checkpoint: step {ckpt.latest_step()}" if ckpt else ""
            raise TrainingDiverged(
                f"Non-finite {', '.join(bad)} at iteration {iteration} "
                f"(env step {call * c.env_steps_per_call:,}){kept}."
            )

    def first_finite(self) -> int:
        """The first member that did not diverge (one always exists: else the run stopped)."""
        return next(i for i in range(self.config.num_members) if i not in self.diverged)


class Progress:
    """What the user sees while the run goes: a progress bar on a terminal or in a notebook,
    otherwise one plain line per evaluation; after the first call on a CPU, the expected time
    of the rest of the run and how to shorten it: the env's CPU-sized preset (``--variant cpu``,
    ``cpu_variant`` env steps) when it has one."""

    def __init__(
        self,
        config: TrainConfig,
        start_call: int,
        *,
        show_bar: bool,
        log: Log,
        cpu_variant: int | None = None,
    ):
        self.config = config
        self.cpu_variant = cpu_variant
        self.start_call = start_call
        self.log = log
        self.total_steps = config.num_calls * config.env_steps_per_call
        self._bar = None
        if show_bar:
            from tqdm.auto import tqdm

            k = config.num_members
            self._bar = tqdm(
                total=self.total_steps * k,
                initial=start_call * config.env_steps_per_call * k,
                unit="step",
                unit_scale=True,
                dynamic_ncols=True,
                desc=f"{config.algo}/{config.env}",
            )

    def after_call(
        self, record: dict[str, Any], call_seconds: float, last_eval_return: float | None
    ) -> None:
        c = self.config
        call = record["call"]
        if call == self.start_call + 1 and jax.default_backend() == "cpu":
            remaining = call_seconds * (c.num_calls - call)
            if remaining > 120:
                offer = ""
                if self.cpu_variant:
                    # Env steps cost about the same at the CPU layout (more envs barely speed a
                    # CPU up), so this run's rate prices the smaller budget.
                    seconds = self.cpu_variant * call_seconds / c.env_steps_per_call
                    offer = (
                        f" --variant cpu sizes it for a CPU ({self.cpu_variant:,} env steps, "
                        f"about {format_seconds(seconds)} at this speed);"
                    )
                self.log(
                    f"no accelerator: this run will take about {format_seconds(remaining)} "
                    f"more on this CPU;{offer} shorten it with --num-timesteps (or smaller "
                    "--num-envs / --num-epochs), or install the GPU build (see the README)."
                )
        if self._bar is not None:
            self._bar.update(c.env_steps_per_call * c.num_members)
            postfix = {"sps": f"{record['env_steps_per_second']:.0f}"}
            if last_eval_return is not None:
                postfix["eval"] = f"{last_eval_return:.1f}"
            self._bar.set_postfix(postfix)
        elif "eval/episode_return" in record:
            self.log(
                f"{record['env_steps']:,}/{self.total_steps:,} env steps: eval return "
                f"{record['eval/episode_return']:.2f}, {record['env_steps_per_second']:,.0f} "
                f"env steps/s, {format_seconds(record['wall_time'])} elapsed"
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def interactive() -> bool:
    """A progress bar helps on a terminal or in a notebook; a log file wants plain lines."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules


def call_record(
    call: int,
    config: TrainConfig,
    metrics: dict[str, Any],
    wall_time: float,
    call_seconds: float,
    diverged: list[int],
) -> dict[str, Any]:
    """The metrics line of one call: counters, wall time, throughput, the mean over members of
    each metric, and (several members) each member's own, in the order of members.json."""
    k = config.num_members
    record: dict[str, Any] = {
        "call": call,
        "env_steps": call * config.env_steps_per_call,
        "wall_time": wall_time,
        "env_steps_per_second": config.env_steps_per_call * k / call_seconds,
    }
    record.update({n: nanmean(v) for n, v in metrics.items() if n != "finite"})
    if diverged:
        record["diverged_members"] = sorted(diverged)
    if k > 1:
        record.update(
            {f"per_member/{n}": np.asarray(v) for n, v in metrics.items() if n != "finite"}
        )
    return record
