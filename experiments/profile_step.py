"""Where one FPO (and Gaussian PPO) training iteration spends its time, part by part.

Times compiled pieces of one iteration at a given layout through the public API and multiplies
each by how often an iteration runs it:

* ``collect``: the whole rollout (flow sampling, env steps, drawing pairs and old CFM losses);
* ``update``: all epochs x minibatches of gradient steps (the rest of the iteration);
* inside one gradient step: the policy objective forward + backward (for FPO the N-pair CFM
  losses), the critic forward + backward, GAE, the optimizer update; and per epoch the shuffle
  (permutation and gather of the rollout into minibatches).

The pieces are compiled separately, so they miss the fusion across pieces that the real step
gets; the "rest" column (update minus the sum of its pieces) shows that difference. Each piece
is the best of ``--repeats`` timed calls after a warm-up.

    python experiments/profile_step.py                      # CartpoleBalance, issue-14 layout
    python experiments/profile_step.py --smoke              # tiny, for CI-like checks
"""

from __future__ import annotations

import argparse
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
from fpo_jax.config import preset, replace  # noqa: E402
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
    # One minibatch, as the update cuts it: (batch_size, unroll_length, ...).
    take = lambda x: x[: c.batch_size]
    traj = jax.tree.map(take, rollout.traj)
    bootstrap = take(rollout.bootstrap_obs)
    params = state.params
    steps = c.num_epochs * c.num_minibatches
    advantages = jax.random.normal(jax.random.PRNGKey(1), traj["reward"].shape)

    def policy_loss(p):
        return trainer.agent.objective(p, traj["obs"], traj["raw_action"], traj["extras"],
                                       advantages)[0]  # fmt: skip

    def critic_loss(p):
        return jnp.mean(jnp.square(trainer.value_net.apply(p, traj["obs"])))

    def gae(p):
        values = trainer.value_net.apply(p, traj["obs"])
        swap = lambda x: jnp.swapaxes(x, 0, 1)
        return loss.compute_gae(swap(traj["reward"]), swap(values),
                                trainer.value_net.apply(p, bootstrap), swap(traj["done"]),
                                swap(traj["truncation"]), discount=c.discount,
                                gae_lambda=c.gae_lambda)  # fmt: skip

    grads = jax.grad(lambda p: policy_loss(p["policy"]) + critic_loss(p["value"]))(params)
    opt_state = trainer.optimizer.init(params)

    def optimizer_step(g, s, p):
        updates, s = trainer.optimizer.update(g, s, p)
        return optax.apply_updates(p, updates), s

    def shuffle(key):
        perm = jax.random.permutation(key, c.batch_size * c.num_minibatches)
        return jax.tree.map(
            lambda x: x[perm].reshape(c.num_minibatches, c.batch_size, *x.shape[1:]),
            (rollout.traj, rollout.bootstrap_obs),
        )

    policy_grad = jax.jit(jax.grad(policy_loss))
    critic_grad = jax.jit(jax.grad(critic_loss))
    gae_fn, opt_fn, shuffle_fn = jax.jit(gae), jax.jit(optimizer_step), jax.jit(shuffle)
    key = jax.random.PRNGKey(2)
    out["policy fwd+bwd"] = steps * best_time(lambda: policy_grad(params["policy"]), repeats)
    out["critic fwd+bwd"] = steps * best_time(lambda: critic_grad(params["value"]), repeats)
    out["GAE (+ critic fwd)"] = steps * best_time(lambda: gae_fn(params["value"]), repeats)
    out["optimizer"] = steps * best_time(lambda: opt_fn(grads, opt_state, params), repeats)
    out["shuffle"] = c.num_epochs * best_time(lambda: shuffle_fn(key), repeats)
    parts = ["policy fwd+bwd", "critic fwd+bwd", "GAE (+ critic fwd)", "optimizer", "shuffle"]
    out["rest of update"] = out["update"] - sum(out[p] for p in parts)
    return out


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
    args = common.parse_args(p, argv, smoke="gridworld, 16 envs, 2 epochs, 1 repeat")
    if args.smoke:
        args.env, args.num_envs, args.batch_size, args.num_minibatches = "gridworld", 16, 16, 2
        args.num_epochs, args.unroll_length, args.repeats = 2, 8, 1
    watch = common.Stopwatch()
    env = envs.make_env(args.env)
    layout = dict(num_envs=args.num_envs, batch_size=args.batch_size,
                  num_minibatches=args.num_minibatches, unroll_length=args.unroll_length,
                  num_epochs=args.num_epochs)  # fmt: skip
    results = {}
    for algo in args.algos:
        config = replace(preset(args.env, algo), **layout)
        results[algo] = profile(Trainer(env, config), args.repeats)
        print(f"{algo}: " + ", ".join(f"{k} {v:.2f} s" for k, v in results[algo].items()))
    names = list(next(iter(results.values())))
    iteration = {a: r["collect"] + r["update"] for a, r in results.items()}
    rows = []
    for name in names:
        row = [name]
        for algo in args.algos:
            seconds = results[algo][name]
            row += [common.fmt_s(seconds, 2), f"{100 * seconds / iteration[algo]:.0f} %"]
        rows.append(row)
    rows.append(["iteration (collect + update)"]
                + sum(([common.fmt_s(iteration[a], 2), "100 %"] for a in args.algos), []))  # fmt: skip
    headers = ["piece (per iteration)"] + sum(([f"{a} s", f"{a} share"] for a in args.algos), [])
    text = common.results_header(
        f"Where one training iteration's time goes ({args.env})",
        f"{args.num_envs} envs, batch {args.batch_size} x {args.num_minibatches} minibatches, "
        f"unroll {args.unroll_length}, {args.num_epochs} epochs; best of {args.repeats}",
    )
    text += "\n" + common.markdown_table(headers, rows) + "\n\n"
    if len(args.algos) > 1:
        a, b = args.algos[:2]
        text += f"Iteration time {a} / {b}: {iteration[a] / iteration[b]:.2f}.\n\n"
    text += watch.line()
    common.write_result(f"profile_{args.env}_cpu.md", text)


if __name__ == "__main__":
    main()
