"""Where a run's compile goes: the three programs a run compiles (the training step, the
evaluation, the initial state), each measured by its HLO before and after XLA's optimisation
(instructions, fusions, while loops, computations), the seconds Python spends tracing and
lowering it, and XLA's compile seconds; the parts the programs have in common (the env's reset
and step, the policy's sampler) lowered alone; and the candidates that cut a program's compile,
each with what it costs at run time and whether it computes the same bits.

CartpoleBalance, FPO at the paper's layout scaled to 256 envs (batch 128 x 32 minibatches,
unroll 30, 16 epochs), one member, as ``fpo_jax.train.train`` builds them. The HLO counts are
properties of the programs, the same on a busy machine; the seconds are not: take them only on a
quiet machine (the header says the load at the start and at the end).

Candidates (each program built as a run builds it, then changed in one way):
- XLA CPU options (``compile(compiler_options=...)``, that program alone, the same lowering):
  ``opt level 0`` (``xla_backend_optimization_level`` 0), ``fusion emitters off``
  (``xla_cpu_use_fusion_emitters`` False: the older elemental emitters instead of the MLIR
  fusion emitters), ``LLVM expensive passes off`` (``xla_llvm_disable_expensive_passes``) and
  ``one codegen split`` (``xla_cpu_parallel_codegen_split_count`` 1: the module is not split
  for code generation on several threads; 'compile CPU s' beside 'compile s' shows how much
  of the default's compile ran in parallel);
- ``one member, no vmap``: a single-member run traced without the vmap over members (the
  member axis squeezed off the state and put back on the outputs).

    python experiments/compile_anatomy.py              # ~6 min on 2 quiet CPU cores
    python experiments/compile_anatomy.py --smoke      # tiny layout, to /tmp
    python experiments/compile_anatomy.py --report     # rebuild from the stored JSON

Writes ``experiments/results/compile_anatomy_CartpoleBalance_cpu.json`` (every count and time,
the layout, the provenance) and from it ``compile_anatomy_CartpoleBalance_cpu.md``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (also puts the repository on sys.path)
import jax  # noqa: E402
import numpy as np  # noqa: E402

from fpo_jax import envs  # noqa: E402
from fpo_jax.loop import Evaluator  # noqa: E402
from fpo_jax.presets import preset  # noqa: E402
from fpo_jax.runs import member_inputs  # noqa: E402
from fpo_jax.train import resolve_config  # noqa: E402
from fpo_jax.trainer import Trainer  # noqa: E402

ENV = "CartpoleBalance"
LAYOUT = common.R1_LAYOUT
SMOKE = dict(num_envs=16, batch_size=8, num_minibatches=2, unroll_length=8, num_epochs=2)
# The XLA CPU options tried as candidates, each alone (see the module docstring).
XLA_OPTIONS = {
    "opt level 0": {"xla_backend_optimization_level": 0},
    "fusion emitters off": {"xla_cpu_use_fusion_emitters": False},
    "LLVM expensive passes off": {"xla_llvm_disable_expensive_passes": True},
    "one codegen split": {"xla_cpu_parallel_codegen_split_count": 1},
}


def hlo_counts(text: str) -> dict[str, int]:
    """Counts in an HLO module's text: instructions (lines with '='), computations, fusions,
    while loops, dot products, conditionals and custom calls."""
    lines = text.splitlines()
    instructions = sum(1 for line in lines if " = " in line and not line.lstrip().startswith("//"))
    return {
        "instructions": instructions,
        "computations": sum(1 for line in lines if re.match(r"^(ENTRY |%?[\w.\-]+ \()", line)),
        "fusions": sum(1 for line in lines if re.search(r"\bfusion\(", line)),
        "while loops": sum(1 for line in lines if re.search(r"\bwhile\(", line)),
        "dot products": sum(1 for line in lines if re.search(r"\bdot\(", line)),
        "conditionals": sum(1 for line in lines if re.search(r"\bconditional\(", line)),
        "custom calls": sum(1 for line in lines if "custom-call(" in line),
    }


def _timed(fn):
    clock = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - clock


def _timed_with_cpu(fn):
    """``fn()``, its wall seconds and the CPU seconds of every thread of this process."""
    cpu = time.process_time()
    out, wall = _timed(fn)
    return out, wall, time.process_time() - cpu


def build(name: str, jitted, *args, options: dict | None = None) -> dict:
    """Lower (trace + lowering to XLA's input) and compile one program; its counts and seconds."""
    lowered, lower_s = _timed(lambda: jitted.lower(*args))
    compiled, compile_s, compile_cpu_s = _timed_with_cpu(
        lambda: lowered.compile(compiler_options=options or {})
    )
    common.log(f"{name}: lowered in {lower_s:.1f} s, compiled in {compile_s:.1f} s "
               f"({compile_cpu_s:.1f} CPU s)")  # fmt: skip
    return {"program": name, "lower_s": round(lower_s, 2), "compile_s": round(compile_s, 2),
            "compile_cpu_s": round(compile_cpu_s, 2),
            "before": hlo_counts(lowered.as_text(dialect="hlo")),
            "after": hlo_counts(compiled.as_text()), "compiled": compiled}  # fmt: skip


def run_seconds(compiled, *args, repeats: int) -> tuple[float, list]:
    """Median seconds of ``repeats`` calls, and the leaves of the first call's output."""
    first, times = None, []
    for _ in range(repeats):
        out, seconds = _timed(lambda: compiled(*args))
        times.append(seconds)
        first = jax.tree.leaves(out) if first is None else first
    return float(np.median(times)), first


def same_bits(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True)
        for x, y in zip(a, b, strict=True)
    )


def one_member(fn):
    """``fn`` of a single member's state, called on a state with a members axis of size 1."""

    def wrapped(*args):
        out = fn(*jax.tree.map(lambda x: x[0], args))
        return jax.tree.map(lambda x: x[None], out)

    return wrapped


JSON = "compile_anatomy_CartpoleBalance_cpu.json"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--report", action="store_true", help="only rebuild from the stored JSON")
    args = common.parse_args(p, argv, smoke="a tiny layout")
    if args.report:
        report(json.loads((common.out_dir() / JSON).read_text()))
        return
    common.disable_compilation_cache()
    layout = SMOKE if args.smoke else LAYOUT
    repeats = 1 if args.smoke else 2
    config = resolve_config(ENV, preset(ENV, "fpo"), **layout, num_eval_envs=128)
    env = envs.make_env(ENV)
    trainer = Trainer(env, config)
    members, keys, hparams = member_inputs(config)
    evaluator = Evaluator(trainer, config, members)
    eval_keys = evaluator.keys(0)

    # The three programs as a run builds them (fpo_jax.train.train), one after the other.
    init_jit = jax.jit(jax.vmap(trainer.init))
    step_jit = jax.jit(jax.vmap(trainer.train_step))  # a run also donates the state
    eval_jit = jax.jit(jax.vmap(trainer.evaluate))
    programs = [build("initial state", init_jit, keys, hparams)]
    state = programs[0]["compiled"](keys, hparams)
    programs.append(build("training step", step_jit, state))
    programs.append(build("evaluation", eval_jit, state, eval_keys))
    runs = {  # program -> (jitted, args)
        "initial state": (init_jit, (keys, hparams)),
        "training step": (step_jit, (state,)),
        "evaluation": (eval_jit, (state, eval_keys)),
    }
    plain = {"initial state": trainer.init, "training step": trainer.train_step,
             "evaluation": trainer.evaluate}  # fmt: skip

    # The parts two programs share, lowered alone at the batch they run at.
    obs_size, act_size = trainer.obs_size, trainer.action_size
    env_state = jax.jit(trainer.train_env.reset)(jax.random.split(keys[0], config.num_envs))
    policy = trainer.policy_fn(
        jax.tree.map(lambda x: x[0], state.eval_params),
        jax.tree.map(lambda x: x[0], state.obs_stats), {},
    )  # fmt: skip
    parts = [
        build("env reset (train batch)", jax.jit(trainer.train_env.reset),
              jax.random.split(keys[0], config.num_envs)),
        build("env step (train batch)", jax.jit(trainer.train_env.step), env_state,
              jax.numpy.zeros((config.num_envs, act_size))),
        build("policy action (eval batch)", jax.jit(policy),
              jax.numpy.zeros((config.num_eval_envs, obs_size)), keys[0]),
    ]  # fmt: skip

    # Candidates, one program and one change at a time, against that program as a run builds it.
    candidates = []
    for prog in programs:
        name = prog["program"]
        jitted, run_args = runs[name]
        base_s, base_out = run_seconds(prog["compiled"], *run_args, repeats=repeats)
        variants = [
            ("as a run builds it", prog),
            # The same lowering (JAX reuses it), compiled with other options.
            *((label, {**build(f"{name}, {label}", jitted, *run_args, options=options),
                       "lower_s": prog["lower_s"]})
              for label, options in XLA_OPTIONS.items()),
            ("one member, no vmap",
             build(f"{name}, one member", jax.jit(one_member(plain[name])), *run_args)),
        ]  # fmt: skip
        for label, built in variants:
            if built is prog:
                seconds, out = base_s, base_out
            else:
                seconds, out = run_seconds(built["compiled"], *run_args, repeats=repeats)
            common.log(f"{name}, {label}: one call {seconds:.2f} s")
            candidates.append({
                "program": name, "candidate": label, "lower_s": built["lower_s"],
                "compile_s": built["compile_s"], "compile_cpu_s": built["compile_cpu_s"],
                "run_s": round(seconds, 3),
                "instructions_after": built["after"]["instructions"],
                "same_bits": same_bits(out, base_out),
            })  # fmt: skip

    for r in programs + parts:
        r.pop("compiled")
    stored = {"layout": layout, "repeats": repeats, "programs": programs, "parts": parts,
              "candidates": candidates, "provenance": common.provenance()}  # fmt: skip
    common.write_file(common.out_dir() / JSON, json.dumps(stored, indent=1))
    report(stored)


def report(stored: dict) -> None:
    """The markdown from the stored measurements (``JSON``)."""
    layout, programs, parts = stored["layout"], stored["programs"], stored["parts"]
    candidates = stored["candidates"]
    repeats = stored["repeats"]
    keys_ = list(programs[0]["after"])

    def count_rows(rows):
        return [
            [r["program"], f"{r['lower_s']:.1f}", f"{r['compile_s']:.1f}", f"{r['compile_cpu_s']:.1f}",
             *[f"{r['before'][k]:,} / {r['after'][k]:,}" for k in keys_]]
            for r in rows
        ]  # fmt: skip

    headers = ["program", "lower s", "compile s", "compile CPU s", *keys_]
    text = common.results_header(
        "Where a run's compile goes: the three programs, CartpoleBalance FPO",
        ", ".join(f"{k} {v}" for k, v in layout.items()) + ", 1 member, 128 evaluation envs",
        ["seconds: one lowering and one compile each, one after the other, no compilation cache",
         f"run seconds: median of {repeats} calls of the compiled program"],
        data=[stored["provenance"]],
    )  # fmt: skip
    text += (
        "\n'lower s': Python tracing the program and lowering it to XLA's input (holds Python's "
        "lock: the programs a run builds at once are traced one at a time). 'compile s': XLA, "
        "wall; 'compile CPU s': the CPU seconds of all of the process's threads meanwhile (above "
        "'compile s' where XLA compiled on both cores). Each count: in the HLO JAX hands XLA / in "
        "the optimised HLO XLA compiled.\n\n"
    )
    text += common.markdown_table(headers, count_rows(programs)) + "\n"
    text += "\n## The parts the programs share, lowered alone\n\n"
    text += (
        "The env's reset is in the initial state and in the evaluation; its step in the training "
        "step's rollout and in the evaluation; the policy's sampler in both too (the evaluation "
        "runs it on the evaluated parameters, and again on the live ones with an EMA actor).\n\n"
    )
    text += common.markdown_table(headers, count_rows(parts)) + "\n"
    text += "\n## Candidates: each program changed in one way\n\n"
    text += common.markdown_table(
        ["program", "candidate", "lower s", "compile s", "compile CPU s", "one call s",
         "instructions (optimised)", "same bits as built by a run"],
        [[c["program"], c["candidate"], f"{c['lower_s']:.1f}", f"{c['compile_s']:.1f}", f"{c['compile_cpu_s']:.1f}",
          f"{c['run_s']:.2f}", f"{c['instructions_after']:,}", "yes" if c["same_bits"] else "no"]
         for c in candidates],
    ) + "\n"  # fmt: skip
    common.write_result("compile_anatomy_CartpoleBalance_cpu.md", text)


if __name__ == "__main__":
    main()
