"""Why ``fpo_jax.networks.MLP`` flattens its inputs: dense layers over 2-D vs N-D row layouts.

Times a forward + backward pass (one SGD step per minibatch, 32 minibatches in a ``lax.scan``,
best of 5) of the two networks of an FPO update, fed the same numbers in two layouts:

* the 4 x 32 SiLU velocity MLP over one minibatch's pairs: 128 trajectories x 30 steps x N = 8
  pairs = 30,720 rows, as ``(3840, 8, d)`` (how the CFM loss holds them) and as ``(30720, d)``;
* the 5 x 256 SiLU critic over one minibatch: ``(30, 128, d)`` (time-major, as GAE needs it)
  and ``(3840, d)``.

The layers are ``x @ W + b`` exactly as Flax's ``nn.Dense`` computes them, so the rows only
differ in how many leading dims the dot sees.

    python experiments/bench_dot_layout.py          # ~1 min; time it on a quiet machine
    python experiments/bench_dot_layout.py --smoke  # smaller rows, to /tmp
    python experiments/bench_dot_layout.py --report # the table again from the stored JSON

Writes ``experiments/results/dot_layout_cpu.json`` (each case's shapes and best seconds, the
provenance) and from it alone ``dot_layout_cpu.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (also puts the repository on sys.path)
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

MINIBATCHES = 32
REPEATS = 5
NAME = "dot_layout_cpu"


def init_mlp(sizes: list[int]) -> list[tuple[jax.Array, jax.Array]]:
    keys = jax.random.split(jax.random.PRNGKey(0), len(sizes) - 1)
    return [(jax.random.normal(k, (a, b)) / a**0.5, jnp.zeros(b))
            for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)]  # fmt: skip


def mlp(params: list[tuple[jax.Array, jax.Array]], x: jax.Array) -> jax.Array:
    """x (..., d_in) -> (..., d_out), SiLU between layers; no reshapes."""
    for i, (w, b) in enumerate(params):
        x = x @ w + b
        if i < len(params) - 1:
            x = jax.nn.silu(x)
    return x


def epoch_seconds(sizes: list[int], shape: tuple[int, ...], repeats: int = REPEATS) -> float:
    """Best time of 32 minibatches of forward + backward + SGD on inputs of ``shape``."""
    params = init_mlp(sizes)
    xs = jax.random.normal(jax.random.PRNGKey(1), (MINIBATCHES, *shape))

    def body(p, x):
        grads = jax.grad(lambda p: jnp.mean(mlp(p, x) ** 2))(p)
        return jax.tree.map(lambda a, g: a - 1e-3 * g, p, grads), None

    run = jax.jit(lambda p: jax.lax.scan(body, p, xs)[0])
    jax.block_until_ready(run(params))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(run(params))
        best = min(best, time.perf_counter() - t0)
    return best


def measure(smoke: bool) -> dict:
    """Both networks in both layouts: the stored data of the results file."""
    started = common.provenance()
    scale = 8 if smoke else 1
    velocity = [5 + 1 + 8, 32, 32, 32, 32, 1]  # obs, x_t, time embedding -> A = 1
    critic = [5, 256, 256, 256, 256, 256, 1]
    cases = [
        ("velocity 4 x 32", velocity, (3840 // scale, 8, velocity[0]),
         (30720 // scale, velocity[0])),
        ("critic 5 x 256", critic, (30, 128 // scale, critic[0]), (3840 // scale, critic[0])),
    ]  # fmt: skip
    measured = []
    for name, sizes, nd, flat in cases:
        t_nd, t_2d = epoch_seconds(sizes, nd), epoch_seconds(sizes, flat)
        measured.append({"network": name, "sizes": sizes, "nd_shape": nd, "nd_s": t_nd,
                         "flat_shape": flat, "flat_s": t_2d})  # fmt: skip
        common.log(f"{name}: {1e3 * t_nd:.0f} ms N-D vs {1e3 * t_2d:.0f} ms 2-D")
    return {
        "minibatches": MINIBATCHES,
        "repeats": REPEATS,
        "smoke": smoke,
        "cases": measured,
        "machine": common.machine_info(),
        "provenance": common.provenance_until_now(started),
    }


def report(data: dict) -> str:
    """The results file from the stored measurements alone."""
    rows = []
    for c in data["cases"]:
        t_nd, t_2d = c["nd_s"], c["flat_s"]
        rows.append([c["network"], str(tuple(c["nd_shape"])), f"{1e3 * t_nd:.0f}",
                     str(tuple(c["flat_shape"])), f"{1e3 * t_2d:.0f}",
                     f"{t_nd / t_2d:.2f}"])  # fmt: skip
    n = data["minibatches"]
    text = common.results_header(
        "Dense layers over N-D vs flattened 2-D rows (XLA:CPU)",
        f"{n} minibatches, forward + backward + SGD, best of {data['repeats']}"
        + (" (smoke: rows / 8)" if data["smoke"] else ""),
        data=[data["provenance"]],
    )
    text += "\n" + common.markdown_table(
        ["network", "N-D input", f"ms / {n} minibatches", "2-D input", f"ms / {n} minibatches",
         "N-D / 2-D"], rows, "llrlrr")  # fmt: skip
    return text


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--report", action="store_true", help="only rebuild the table from the JSON")
    args = common.parse_args(p, argv, "smaller rows (same layouts)")
    path = common.out_dir() / f"{NAME}.json"
    if not args.report:
        common.write_file(path, json.dumps(measure(args.smoke), indent=1))
    common.write_result(f"{NAME}.md", report(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
