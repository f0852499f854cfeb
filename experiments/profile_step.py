"""Where one FPO (and Gaussian PPO) training iteration spends its time, part by part.

Times compiled pieces of one iteration at a given layout through the public API and multiplies
each by how often an iteration runs it:

* ``collect``: the whole rollout (flow sampling, env steps, drawing pairs and old CFM losses);
* ``update``: all epochs x minibatches of gradient steps (the rest of the iteration);
* inside the update: the policy objective forward + backward (for FPO the N-pair CFM losses),
  the critic forward + backward with GAE, the optimizer update, and the shuffle (permutation and
  gather of the rollout into minibatches).

Each inner piece is timed as the update runs it: one epoch, a ``lax.scan`` over the
minibatches whose carry depends on every step (so XLA cannot hoist work out of the loop), times
the number of epochs. The pieces are compiled apart, so they miss the fusion the real step gets
across them; "rest of update" (update minus the sum of its pieces) shows that difference. Each
timing is the best of ``--repeats`` calls after a warm-up.

    python experiments/profile_step.py                      # CartpoleBalance, 256 envs, 128 x 32 x 30, 16 epochs
    python experiments/profile_step.py --smoke              # tiny, for CI-like checks
    python experiments/profile_step.py --report             # the table again from the stored JSON

Writes ``experiments/results/profile_<env>_cpu.json`` (the layout, each algorithm's seconds per
piece, the provenance) and from it alone ``profile_<env>_cpu.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

from fpo_jax import envs, loss  # noqa: E402
from fpo_jax.config import replace  # noqa: E402
from fpo_jax.presets import preset  # noqa: E402
from fpo_jax.trainer import Trainer  # noqa: E402


def best_time(fn: Callable[[], Any], repeats: int) -> float:
    jax.block_until_ready(fn())  # warm-up (and compile)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return min(times)


def profile(trainer: Trainer, repeats: int) -> dict[str, float]:
    """Seconds per iteration of each piece (see module docstring)."""
    c = trainer.config
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0))
    collect = jax.jit(trainer.collect)
    update = jax.jit(trainer.update)
    after, rollout = collect(state)
    out = {
        "collect": best_time(lambda: collect(state), repeats),
        "update": best_time(lambda: update(after, rollout), repeats),
    }
    # One epoch's minibatches, as the update cuts them: (num_minibatches, batch_size, T, ...).
    split = lambda x: x.reshape(c.num_minibatches, c.batch_size, *x.shape[1:])
    traj = jax.tree.map(split, rollout.traj)
    bootstrap = split(rollout.bootstrap_obs)
    advantages = jax.random.normal(jax.random.PRNGKey(1), traj["reward"].shape)
    batches = (traj, bootstrap, advantages)

    def policy_loss(p, mb):
        t, _, adv = mb
        return trainer.agent.objective(p, t["obs"], t["raw_action"], t["extras"], adv)[0]

    def critic_loss(p, mb):
        t, boot, _ = mb
        values = trainer.value_net.apply(p, t["obs"])
        swap = lambda x: jnp.swapaxes(x, 0, 1)
        targets, _ = loss.compute_gae(swap(t["reward"]), swap(values),
                                      trainer.value_net.apply(p, boot), swap(t["done"]),
                                      swap(t["truncation"]), discount=c.discount,
                                      gae_lambda=c.gae_lambda)  # fmt: skip
        return loss.value_loss(values, jax.lax.stop_gradient(swap(targets)))

    def epoch_of(piece):
        """One epoch of ``piece`` as the update runs it: a scan over the minibatches whose
        carry (the parameters) depends on each step, so nothing is hoisted out of the loop."""

        def body(params, mb):
            grads = jax.grad(piece)(params, mb)
            return jax.tree.map(lambda p, g: p - 1e-9 * g, params, grads), None

        return jax.jit(lambda params: jax.lax.scan(body, params, batches)[0])

    params = state.params
    policy_epoch, critic_epoch = epoch_of(policy_loss), epoch_of(critic_loss)
    grads = jax.tree.map(jnp.zeros_like, params)

    def optimizer_epoch(p):
        def body(carry, _):
            p, s = carry
            updates, s = trainer.optimizer.update(grads, s, p)
            return (optax.apply_updates(p, updates), s), None

        return jax.lax.scan(body, (p, trainer.optimizer.init(p)), None,
                            length=c.num_minibatches)[0][0]  # fmt: skip

    def shuffle(key):
        perm = jax.random.permutation(key, c.batch_size * c.num_minibatches)
        return jax.tree.map(
            lambda x: x[perm].reshape(c.num_minibatches, c.batch_size, *x.shape[1:]),
            (rollout.traj, rollout.bootstrap_obs),
        )

    opt_fn, shuffle_fn = jax.jit(optimizer_epoch), jax.jit(shuffle)
    key = jax.random.PRNGKey(2)
    e = c.num_epochs
    out["policy objective fwd+bwd"] = e * best_time(lambda: policy_epoch(params["policy"]), repeats)
    out["critic + GAE fwd+bwd"] = e * best_time(lambda: critic_epoch(params["value"]), repeats)
    out["optimizer"] = e * best_time(lambda: opt_fn(params), repeats)
    out["shuffle"] = e * best_time(lambda: shuffle_fn(key), repeats)
    parts = ["policy objective fwd+bwd", "critic + GAE fwd+bwd", "optimizer", "shuffle"]
    out["rest of update"] = out["update"] - sum(out[p] for p in parts)
    return out


def measure(args: argparse.Namespace) -> dict:
    """Every algorithm's pieces: the stored data of the results file."""
    started = common.provenance()
    env = envs.make_env(args.env)
    layout = dict(num_envs=args.num_envs, batch_size=args.batch_size,
                  num_minibatches=args.num_minibatches, unroll_length=args.unroll_length,
                  num_epochs=args.num_epochs)  # fmt: skip
    results = {}
    for algo in args.algos:
        config = replace(preset(args.env, algo), **layout)
        results[algo] = profile(Trainer(env, config), args.repeats)
        print(f"{algo}: " + ", ".join(f"{k} {v:.2f} s" for k, v in results[algo].items()))
    return {
        "env": args.env,
        "layout": layout,
        "repeats": args.repeats,
        "algos": list(args.algos),
        "seconds": results,
        "machine": common.machine_info(),
        "provenance": common.provenance_until_now(started),
    }


def report(data: dict) -> str:
    """The results file from the stored measurements alone."""
    algos, results, layout = data["algos"], data["seconds"], data["layout"]
    names = list(next(iter(results.values())))
    iteration = {a: r["collect"] + r["update"] for a, r in results.items()}
    rows = []
    for name in names:
        row = [name]
        for algo in algos:
            seconds = results[algo][name]
            row += [common.fmt_s(seconds, 2), f"{100 * seconds / iteration[algo]:.0f} %"]
        rows.append(row)
    rows.append(["iteration (collect + update)"]
                + sum(([common.fmt_s(iteration[a], 2), "100 %"] for a in algos), []))  # fmt: skip
    headers = ["piece (per iteration)"] + sum(([f"{a} s", f"{a} share"] for a in algos), [])
    text = common.results_header(
        f"Where one training iteration's time goes ({data['env']})",
        f"{layout['num_envs']} envs, batch {layout['batch_size']} x {layout['num_minibatches']} "
        f"minibatches, unroll {layout['unroll_length']}, {layout['num_epochs']} epochs; best of "
        f"{data['repeats']}",
        data=[data["provenance"]],
    )
    text += "\n" + common.markdown_table(headers, rows) + "\n\n"
    if len(algos) > 1:
        a, b = algos[:2]
        text += (
            f"Iteration time {a} / {b}: {iteration[a] / iteration[b]:.2f}; throughput {a} / {b}: "
            f"{iteration[b] / iteration[a]:.2f}.\n"
        )
    return text


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="CartpoleBalance")
    p.add_argument("--num-envs", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--num-minibatches", type=int, default=32)
    p.add_argument("--unroll-length", type=int, default=30)
    p.add_argument("--num-epochs", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--algos", nargs="+", default=["fpo", "ppo"])
    p.add_argument("--report", action="store_true", help="only rebuild the table from the JSON")
    args = common.parse_args(p, argv, smoke="gridworld, 16 envs, 2 epochs, 1 repeat")
    if args.smoke:
        args.env, args.num_envs, args.batch_size, args.num_minibatches = "gridworld", 16, 16, 2
        args.num_epochs, args.unroll_length, args.repeats = 2, 8, 1
    path = common.out_dir() / f"profile_{args.env}_cpu.json"
    if not args.report:
        common.write_file(path, json.dumps(measure(args), indent=1))
    common.write_result(f"profile_{args.env}_cpu.md", report(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
