"""Memory of the compiled training step at the FPO paper's DM Control layout, per algorithm.

Compiles (never runs) one training iteration of FPO with stored pairs, FPO with key-stored
pairs, Gaussian PPO and DPPO at the preset layout of ``--env`` (CartpoleBalance: 2048 envs,
unroll 30, 1024 x 32 minibatches, 16 epochs, N = 8) and reports XLA's own accounting of it
(``compiled.memory_analysis()``): arguments, outputs, aliased (donated) state, temporaries and
the resulting peak. Nothing is executed, so the numbers hold for any device with the same
layout, and the script takes about a minute on a CPU.

    python experiments/step_memory.py [--env CartpoleBalance] [--smoke]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

from fpo_jax import envs  # noqa: E402
from fpo_jax.config import replace  # noqa: E402
from fpo_jax.memory import program_memory  # noqa: E402
from fpo_jax.presets import preset  # noqa: E402
from fpo_jax.trainer import Trainer  # noqa: E402

VARIANTS = {
    "FPO, pairs stored": ("fpo", {}),
    "FPO, pairs from one key": ("fpo", {"pair_storage": "key"}),
    "Gaussian PPO": ("ppo", {}),
    "DPPO": ("dppo", {}),
}


def step_memory(env, config) -> dict[str, float]:
    """XLA's memory accounting of ``train_step`` (donated state), in MiB."""
    trainer = Trainer(env, config)
    state = jax.eval_shape(trainer.init, jax.random.PRNGKey(0))
    compiled = jax.jit(trainer.train_step, donate_argnums=0).lower(state).compile()
    return {k: v / 2**20 for k, v in program_memory(compiled).as_dict().items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="CartpoleBalance")
    args = common.parse_args(p, argv, smoke="gridworld at its small preset layout")
    if args.smoke:
        args.env = "gridworld"
    watch = common.Stopwatch()
    env = envs.make_env(args.env)
    rows, layout = [], None
    for label, (algo, changes) in VARIANTS.items():
        config = replace(preset(args.env, algo), **changes)
        layout = (f"{config.num_envs} envs, unroll {config.unroll_length}, batch "
                  f"{config.batch_size} x {config.num_minibatches} minibatches, "
                  f"{config.num_epochs} epochs, N = {config.num_pairs}")  # fmt: skip
        m = step_memory(env, config)
        print(f"{label}: " + ", ".join(f"{k} {v:,.1f} MiB" for k, v in m.items()))
        rows.append([label] + [f"{m[k]:,.1f}" for k in ("argument", "output", "alias", "temp",
                                                         "peak")])  # fmt: skip
    text = common.results_header(f"Memory of the training step ({args.env})", layout or "")
    text += (
        "\nXLA's accounting of the compiled step (`compiled.memory_analysis()`, MiB); peak ="
        " argument + output - alias (the donated state) + temp. Compiled only, never run.\n\n"
    )
    text += common.markdown_table(["method", "argument", "output", "alias", "temp", "peak"], rows)
    text += "\n\n" + watch.line()
    common.write_result(f"step_memory_{args.env}.md", text)


if __name__ == "__main__":
    main()
