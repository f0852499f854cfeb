"""Memory of the compiled training step at the FPO paper's DM Control layout, per algorithm.

Compiles (never runs) one training iteration of FPO with stored pairs, FPO with key-stored
pairs, Gaussian PPO and DPPO at the preset layout of ``--env`` (CartpoleBalance: 2048 envs,
unroll 30, 1024 x 32 minibatches, 16 epochs, N = 8) and reports XLA's own accounting of it
(``compiled.memory_analysis()``): arguments, outputs, aliased (donated) state, temporaries and
the resulting peak. Nothing is executed, so the numbers hold for any device with the same
layout, and the script takes about a minute on a CPU.

    python experiments/step_memory.py [--env CartpoleBalance] [--smoke]
    python experiments/step_memory.py --report   # the table again from the stored JSON

Writes ``experiments/results/step_memory_<env>.json`` (each variant's layout and XLA's
accounting in bytes, the provenance) and from it alone ``step_memory_<env>.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

from fpo_jax import envs  # noqa: E402
from fpo_jax.config import algorithm_settings, replace  # noqa: E402
from fpo_jax.memory import program_memory  # noqa: E402
from fpo_jax.presets import preset  # noqa: E402
from fpo_jax.trainer import Trainer  # noqa: E402

VARIANTS = {
    "FPO, pairs stored": ("fpo", {}),
    "FPO, pairs from one key": ("fpo", {"pair_storage": "key"}),
    "Gaussian PPO": ("ppo", {}),
    "DPPO": ("dppo", {}),
}


def step_memory(env, config) -> dict[str, int]:
    """XLA's memory accounting of ``train_step`` (donated state), in bytes."""
    trainer = Trainer(env, config)
    state = jax.eval_shape(trainer.init, jax.random.PRNGKey(0))
    compiled = jax.jit(trainer.train_step, donate_argnums=0).lower(state).compile()
    return program_memory(compiled).as_dict()


def measure(env_name: str) -> dict:
    """Every variant's layout and memory: the stored data of the results file."""
    started = common.provenance()
    env = envs.make_env(env_name)
    variants = []
    for label, (algo, changes) in VARIANTS.items():
        config = replace(preset(env_name, algo), **changes)
        layout = {
            k: getattr(config, k)
            for k in ("num_envs", "unroll_length", "batch_size", "num_minibatches", "num_epochs")
        }
        # FPO's own setting: the other algorithms' configs have none (reading it raises).
        layout["num_pairs"] = getattr(algorithm_settings(config), "num_pairs", None)
        nbytes = step_memory(env, config)
        print(f"{label}: " + ", ".join(f"{k} {v / 2**20:,.1f} MiB" for k, v in nbytes.items()))
        variants.append({"label": label, "algo": algo, "changes": changes, "layout": layout,
                         "bytes": nbytes})  # fmt: skip
    return {
        "env": env_name,
        "variants": variants,
        "machine": common.machine_info(),
        "provenance": common.provenance_until_now(started),
    }


def report(data: dict) -> str:
    """The results file from the stored measurements alone."""
    rows = []
    for v in data["variants"]:
        mib = {k: b / 2**20 for k, b in v["bytes"].items()}
        rows.append([v["label"]] + [f"{mib[k]:,.1f}" for k in ("argument", "output", "alias",
                                                               "temp", "peak")])  # fmt: skip
    layouts = [v["layout"] for v in data["variants"]]
    layout = ""
    if layouts:
        c = layouts[-1]
        pairs = [x["num_pairs"] for x in layouts if x.get("num_pairs") is not None]
        layout = (f"{c['num_envs']} envs, unroll {c['unroll_length']}, batch {c['batch_size']} "
                  f"x {c['num_minibatches']} minibatches, {c['num_epochs']} epochs"
                  + (f", N = {pairs[-1]}" if pairs else ""))  # fmt: skip
    text = common.results_header(
        f"Memory of the training step ({data['env']})", layout, data=[data["provenance"]]
    )
    text += (
        "\nXLA's accounting of the compiled step (`compiled.memory_analysis()`, MiB); peak ="
        " argument + output - alias (the donated state) + temp. Compiled only, never run.\n\n"
    )
    text += common.markdown_table(["method", "argument", "output", "alias", "temp", "peak"], rows)
    return text


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="CartpoleBalance")
    p.add_argument("--report", action="store_true", help="only rebuild the table from the JSON")
    args = common.parse_args(p, argv, smoke="gridworld at its small preset layout")
    if args.smoke:
        args.env = "gridworld"
    path = common.out_dir() / f"step_memory_{args.env}.json"
    if not args.report:
        common.write_file(path, json.dumps(measure(args.env), indent=1))
    common.write_result(f"step_memory_{args.env}.md", report(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
