"""Where a run's compile goes: the three programs a run compiles (the training step, the
evaluation, the initial state), each measured by its HLO before and after XLA's optimisation
(instructions, fusions, while loops, computations) and its compile time, and what the programs
have in common (the env step, the flow sampler).

CartpoleBalance, FPO at the paper's layout scaled to 256 envs (batch 128 x 32 minibatches,
unroll 30, 16 epochs), one member, as ``fpo_jax.train.train`` builds them. The HLO counts are
properties of the programs, the same on a busy machine; the compile seconds are not: take them
only on a quiet machine (the header says the load at the start and at the end).

    python experiments/compile_anatomy.py
    python experiments/compile_anatomy.py --smoke      # tiny layout, to /tmp

Writes ``experiments/results/compile_anatomy_CartpoleBalance_cpu.md`` (and the JSON of the
counts beside it).
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

from fpo_jax import envs  # noqa: E402
from fpo_jax.loop import Evaluator  # noqa: E402
from fpo_jax.presets import preset  # noqa: E402
from fpo_jax.runs import member_inputs  # noqa: E402
from fpo_jax.train import resolve_config  # noqa: E402
from fpo_jax.trainer import Trainer  # noqa: E402

ENV = "CartpoleBalance"
LAYOUT = dict(num_envs=256, batch_size=128, num_minibatches=32, unroll_length=30, num_epochs=16)
SMOKE = dict(num_envs=16, batch_size=8, num_minibatches=2, unroll_length=8, num_epochs=2)


def hlo_counts(text: str) -> dict[str, int]:
    """Counts in an HLO module's text: instructions (lines with '='), fusion computations,
    while loops, computations, and the calls of the env's physics (MuJoCo's constraint solver
    and forward kinematics leave recognisable op names) and of the velocity network (its
    dot products: one per dense layer application)."""
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


def measure(name: str, lowered) -> dict:
    pre = lowered.as_text(dialect="hlo")
    clock = time.perf_counter()
    compiled = lowered.compile()
    seconds = time.perf_counter() - clock
    post = compiled.as_text()
    common.log(f"{name}: compiled in {seconds:.1f} s")
    return {"program": name, "compile_s": round(seconds, 2), "before": hlo_counts(pre),
            "after": hlo_counts(post)}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    args = common.parse_args(p, argv, smoke="a tiny layout")
    common.disable_compilation_cache()
    layout = SMOKE if args.smoke else LAYOUT
    config = resolve_config(ENV, preset(ENV, "fpo"), **layout, num_eval_envs=128)
    env = envs.make_env(ENV)
    trainer = Trainer(env, config)
    members, keys, hparams = member_inputs(config)
    init = jax.jit(jax.vmap(trainer.init))
    state_shape = jax.eval_shape(init, keys, hparams)
    evaluator = Evaluator(trainer, config, members)
    programs = [
        measure("initial state", init.lower(keys, hparams)),
        measure("training step",
                jax.jit(jax.vmap(trainer.train_step), donate_argnums=0).lower(state_shape)),
        measure("evaluation", evaluator._evaluate.lower(state_shape, evaluator._keys(0))),
    ]  # fmt: skip
    common.write_file(common.out_dir() / "compile_anatomy_CartpoleBalance_cpu.json",
                      json.dumps({"layout": layout, "programs": programs, "provenance":
                                  common.provenance()}, indent=1))  # fmt: skip
    keys_ = list(programs[0]["after"])
    rows = [
        [r["program"], f"{r['compile_s']:.1f}",
         *[f"{r['before'][k]:,} / {r['after'][k]:,}" for k in keys_]]
        for r in programs
    ]  # fmt: skip
    text = common.results_header(
        "Where a run's compile goes: the three programs, CartpoleBalance FPO",
        ", ".join(f"{k} {v}" for k, v in layout.items()) + ", 1 member, 128 evaluation envs",
        ["compile seconds: one compile each, one after the other, no compilation cache"],
    )
    text += "\nEach cell: in the HLO JAX hands XLA / in the optimised HLO XLA compiled.\n\n"
    text += common.markdown_table(["program", "compile s", *keys_], rows) + "\n"
    common.write_result("compile_anatomy_CartpoleBalance_cpu.md", text)


if __name__ == "__main__":
    main()
