"""Brax PPO and our Gaussian PPO side by side, with identical settings and evaluation.

Brax PPO (``brax.training.agents.ppo.train``, Brax's own networks: 4 x 32 / 5 x 256 swish,
tanh-Gaussian) runs with MuJoCo Playground's published settings for the task
(``mujoco_playground.config.dm_control_suite_params.brax_ppo_config``) at a CPU-sized layout;
ours runs the same settings through ``fpo_jax.train.train`` with all seeds as one program.
Both evaluate the **stochastic** policy (Brax's default, ``deterministic_eval=False``; ours
``eval_noise="random"``) on 128 envs for a whole 1000-step episode after every iteration, and
once before training.

The layout is the paper's scaled to 256 envs: batch 128 x 32 minibatches of 30-step
trajectories (122,880 env steps per iteration), 16 epochs; Brax's ``num_resets_per_eval`` is 0
at this budget (each env restarts from its own first state, as ours does with
``refresh_initial_states=False``).

Programs (each stored as JSON under ``experiments/results/ppo_parity/``; a program already
there is not run again, so a stopped run resumes; ``--report`` rebuilds the tables):

* ``brax``: Brax PPO, one process-sequential run per seed;
* ``ours:NAME``: our PPO with the Brax settings and the changes ``OURS[NAME]`` (all seeds in
  one program); ``ours:brax`` is ``--variant brax``, the others switch single differences;
* ``fpo:NAME``: our FPO at the same layout and evaluation protocol (its sampler from random
  noise), the task's FPO preset (the paper's settings) with the changes ``FPO[NAME]``: the flow
  policy against the Brax-strength Gaussian baseline at equal env steps.

    python experiments/ppo_parity.py --task CartpoleBalance --programs brax
    python experiments/ppo_parity.py --task CartpoleBalance --programs ours:brax,ours:default
    python experiments/ppo_parity.py --task CartpoleBalance --programs fpo:paper
    python experiments/ppo_parity.py --report
    python experiments/ppo_parity.py --smoke        # tiny, ~3 min, to /tmp

More seeds of a stored program: ``--first-seed K --seeds S`` runs seeds K .. K+S-1 into a file
of their own (``<task>__<program>__seeds_K_<last>.json``), and the report joins every file of a
program into one row, seeds in order (their evaluation steps must agree). So a program too long
for one sitting runs a few seeds at a time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (also puts the repository on sys.path)
import jax  # noqa: E402
import numpy as np  # noqa: E402

from fpo_jax import envs  # noqa: E402
from fpo_jax.config import replace, sweep_members, validate  # noqa: E402
from fpo_jax.presets import preset  # noqa: E402
from fpo_jax.train import train  # noqa: E402

# The paper's layout (2048 envs, 1024 x 32, 16 epochs) scaled to 256 envs: 122,880 env steps
# per iteration.
R1 = common.R1_LAYOUT
# The layout of the PPO learning test in tests/test_learning.py (16,384 steps per iteration).
CI = dict(num_envs=128, batch_size=128, num_minibatches=8, unroll_length=16, num_epochs=4)
# Per task: layout, iterations, env arguments. CartpoleBalance as in the baseline probe (1.1M
# steps); CartpoleSwingup longer, since it is harder; Brax inverted_pendulum (Brax's notebook
# settings) at the learning test's budget, to show the test's threshold is one Brax PPO meets.
TASKS: dict[str, dict[str, Any]] = {
    "CartpoleBalance": dict(layout=R1, iterations=9, env={}),
    "CartpoleSwingup": dict(layout=R1, iterations=18, env={}),
    "inverted_pendulum": dict(layout=CI, iterations=12, env=dict(backend="spring")),
}
SEEDS = 5
NUM_EVAL_ENVS = 128

# Our PPO: the Brax-parity preset, then single changes back to our own defaults.
OURS: dict[str, dict[str, Any]] = {
    "brax": {},
    # Our defaults before the parity work, with Brax's hyperparameters (the baseline probe).
    "fpo_jax defaults": dict(obs_norm="welford", refresh_initial_states=True),
    "fresh initial states": dict(refresh_initial_states=True),
    "welford obs statistics": dict(obs_norm="welford"),
}


def store() -> Path:
    return common.out_dir() / "ppo_parity"


def program_path(task: str, name: str, first_seed: int = 0, seeds: int = 1) -> Path:
    """Where a program's seeds are stored: seeds from 0 under the program's own name, later
    seeds (``first_seed`` > 0) in a file naming them."""
    stem = f"{task}__{name}"
    if first_seed:
        stem += f"__seeds_{first_seed}_{first_seed + seeds - 1}"
    return store() / f"{stem}.json".replace(" ", "_").replace("/", "-")


def brax_settings(task: str) -> dict[str, Any]:
    """Brax PPO's arguments for ``task`` at the task's layout.

    DM Control: Playground's Brax PPO config (``dm_control_suite_params.brax_ppo_config``).
    Brax envs: Brax's notebook settings, as our plain preset holds them. ``num_resets_per_eval``
    is 0 (envs restart from their own first state, as ours do with --variant brax).
    """
    layout = TASKS[task]["layout"]
    if envs.is_dm_control_name(task):
        from mujoco_playground.config import dm_control_suite_params

        cfg = dict(dm_control_suite_params.brax_ppo_config(task))
        cfg.pop("num_timesteps")
        cfg.pop("num_evals")
    else:
        c = preset(task, "ppo")
        cfg = dict(
            learning_rate=c.learning_rate, entropy_cost=c.entropy_cost, discounting=c.discount,
            reward_scaling=c.reward_scaling, episode_length=c.episode_length,
            action_repeat=c.action_repeat, normalize_observations=c.normalize_observations,
        )  # fmt: skip
    cfg.update(
        num_envs=layout["num_envs"],
        batch_size=layout["batch_size"],
        num_minibatches=layout["num_minibatches"],
        unroll_length=layout["unroll_length"],
        num_updates_per_batch=layout["num_epochs"],
        num_resets_per_eval=0,
    )
    return cfg


def iteration_steps(task: str) -> int:
    s = brax_settings(task)
    return s["batch_size"] * s["num_minibatches"] * s["unroll_length"] * s["action_repeat"]


def run_brax(task: str, seed: int, iterations: int) -> dict[str, Any]:
    """One Brax PPO run (Brax's own networks, 4 x 32 / 5 x 256 swish; stochastic evaluation):
    eval return before training and after each iteration."""
    common.install_brax_shims()
    from brax.training.agents.ppo import train as ppo_train

    env = envs.make_env(task, **TASKS[task]["env"])
    if envs.is_playground_env(env):
        from mujoco_playground import wrapper as pg_wrapper

        wrap = dict(wrap_env_fn=pg_wrapper.wrap_for_brax_training)
    else:
        wrap = {}
    steps, returns, wall = [], [], []
    t0 = time.perf_counter()

    def progress(step: int, metrics: dict[str, Any]) -> None:
        if "eval/episode_reward" in metrics:
            steps.append(int(step))
            returns.append(float(metrics["eval/episode_reward"]))
            wall.append(time.perf_counter() - t0)
            common.log(f"  brax seed {seed}: {step} steps, eval {returns[-1]:.1f}")

    ppo_train.train(
        environment=env,
        **wrap,
        num_timesteps=iterations * iteration_steps(task),
        num_evals=iterations + 1,  # one before training, one after each iteration
        num_eval_envs=NUM_EVAL_ENVS,
        deterministic_eval=False,
        seed=seed,
        progress_fn=progress,
        **brax_settings(task),
    )
    return dict(steps=steps, returns=returns, wall=wall)


# Our FPO: the task's FPO preset (for DM Control, the paper's settings), then changes.
FPO: dict[str, dict[str, Any]] = {
    # The paper's settings under Welford statistics and fresh initial states (the DM Control
    # family's defaults when these runs were made; Brax's order is its default now).
    "paper": dict(obs_norm="welford", refresh_initial_states=True),
    # The trainer behaviour of the PPO rows it is compared with (--variant brax's, less PPO's
    # own hyperparameters): exact statistics before the epochs, no fresh initial states.
    "brax order": dict(obs_norm="brax", refresh_initial_states=False),
    # FPO++ as --variant fpo++ sets it for DM Control (its parts at the family's learning rate
    # and source noise), under the same trainer order.
    "fpo++ brax order": dict(variant="fpo++", obs_norm="brax", refresh_initial_states=False),
    # The same with the trust region that kept FPO++ learning on ant (ASPO at 0.05 stopped it
    # there; experiments/ant_cpu.py's clip screen).
    "fpo++ clip 0.2 brax order": dict(
        variant="fpo++", clip_epsilon=0.2, obs_norm="brax", refresh_initial_states=False
    ),
    # FPO++ with FPO's networks (4 x 32 actor, 5 x 256 critic, SiLU) and rollout sampler (10
    # flow steps) instead of the authors' 3 x 256 / 3 x 512 ELU and 64 steps: the setting
    # --variant cpu-fpo++ uses on the Brax bodies, here at the family's trust region.
    "fpo++ family networks brax order": dict(
        variant="fpo++",
        policy_hidden=(32,) * 4,
        value_hidden=(256,) * 5,
        activation="silu",
        flow_steps=10,
        obs_norm="brax",
        refresh_initial_states=False,
    ),
}


def ours_config(task: str, changes: dict[str, Any]) -> Any:
    """Our PPO with ``--variant brax`` at the task's layout, stochastic evaluation, ``changes``."""
    config = preset(task, "ppo", variant="brax")
    return replace(
        config, **TASKS[task]["layout"], **TASKS[task]["env"], num_eval_envs=NUM_EVAL_ENVS,
        eval_noise="random", **changes,
    )  # fmt: skip


def fpo_config(task: str, changes: dict[str, Any]) -> Any:
    """Our FPO (the task's preset, or the variant ``changes["variant"]`` names) at the task's
    layout, evaluated on its sampler from random noise (stochastic, as the PPO programs here),
    with the other ``changes``."""
    changes = dict(changes)
    variant = changes.pop("variant", "default")
    return replace(
        preset(task, "fpo", variant), **TASKS[task]["layout"], **TASKS[task]["env"],
        num_eval_envs=NUM_EVAL_ENVS, eval_noise="random", **changes,
    )  # fmt: skip


def program_config(
    task: str, program: str, iterations: int, seeds: int, first_seed: int = 0
) -> Any:
    """The config one of our programs trains with (layout, budget, seeds ``first_seed`` ..
    ``first_seed + seeds - 1``, evaluation)."""
    kind, name = program.split(":", 1)
    changes = (FPO if kind == "fpo" else OURS)[name]
    config = fpo_config(task, changes) if kind == "fpo" else ours_config(task, changes)
    return validate(replace(
        config, seed=first_seed, num_seeds=seeds,
        num_timesteps=iterations * config.env_steps_per_iteration, num_evals=iterations + 1,
        progress=False,
    ))  # fmt: skip


def save_policy(state: Any, path: Path) -> None:
    """Each seed's final policy parameters and observation statistics, beside the program's
    JSON (a few dozen KB): what re-scoring needs."""
    from flax import serialization

    policy = jax.device_get({"policy": state.eval_params["policy"], "obs_stats": state.obs_stats})
    common.write_bytes(path.with_suffix(".policy.msgpack"), serialization.to_bytes(policy))


def final_scores(task: str, config: Any, state: Any) -> dict[str, list[float]]:
    """Each seed's final parameters scored both ways on the same episodes' keys: stochastically
    (FPO from random source noise, PPO a Gaussian sample) and deterministically (FPO from zero
    noise, PPO its mean action). The evaluation key is the last training call's, so the
    stochastic score repeats the run's own last evaluation."""
    from fpo_jax.loop import Evaluator
    from fpo_jax.trainer import Trainer

    env = envs.make_env(task, **TASKS[task]["env"])
    scores = {}
    for kind, noise in (("stochastic", "random"), ("deterministic", "zero")):
        scored = replace(config, eval_noise=noise)
        evaluator = Evaluator(Trainer(env, scored), scored, sweep_members(scored))
        record = evaluator(state, scored.num_calls)
        scores[kind] = [float(x) for x in record["per_member/eval/episode_return"]]
        common.log(f"  final, {kind}: " + ", ".join(f"{x:.0f}" for x in scores[kind]))
    return scores


def restore_final_state(task: str, config: Any, path: Path) -> Any:
    """A state whose policy and observation statistics are the saved final ones (the rest is
    a fresh initial state: evaluation reads nothing else)."""
    from flax import serialization

    from fpo_jax.runs import member_inputs
    from fpo_jax.trainer import Trainer

    trainer = Trainer(envs.make_env(task, **TASKS[task]["env"]), config)
    _, keys, hparams = member_inputs(config)
    state = jax.jit(jax.vmap(trainer.init))(keys, hparams)
    template = {"policy": state.params["policy"], "obs_stats": state.obs_stats}
    saved = serialization.from_bytes(template, path.with_suffix(".policy.msgpack").read_bytes())
    # The saved policy is the evaluated one (the EMA actor where the run keeps one): evaluation
    # reads it from ema_params then, so it goes there too.
    ema = None if state.ema_params is None else saved["policy"]
    return state.replace(params={**state.params, "policy": saved["policy"]},
                         obs_stats=saved["obs_stats"], ema_params=ema)  # fmt: skip


def run_program(
    task: str, program: str, iterations: int, seeds: int, first_seed: int = 0
) -> dict[str, Any]:
    # "fpo:brax_order" is "fpo:brax order" on a shell.
    known = {"brax", *(f"ours:{n}" for n in OURS), *(f"fpo:{n}" for n in FPO)}
    program = next((k for k in known if k.replace(" ", "_") == program.replace(" ", "_")), program)
    path = program_path(task, program, first_seed, seeds)
    stored = json.loads(path.read_text()) if path.exists() else None
    if stored is not None and (program == "brax" or stored.get("final") is not None):
        return stored
    if stored is None and path.with_suffix(".policy.msgpack").exists() and program != "brax":
        # Saved parameters of a finished run whose curve was lost: score them, say so.
        stored = dict(task=task, program=program, changes={}, steps=None, wall=None,
                      returns=None, seconds=None, provenance=common.provenance(), final=None,
                      note="curve lost: the run was stopped while scoring; its saved final "
                      "parameters were scored afterwards")  # fmt: skip
        kind, name = program.split(":", 1)
        stored["changes"] = (FPO if kind == "fpo" else OURS)[name]
    if stored is not None and "final" in stored and path.with_suffix(".policy.msgpack").exists():
        # Trained and saved, stopped before its scores: score the saved parameters.
        config = program_config(task, program, iterations, seeds, first_seed)
        common.log(f"{task}: {program}, scoring the saved final parameters")
        stored["final"] = final_scores(task, config, restore_final_state(task, config, path))
        common.write_file(path, json.dumps(stored, indent=1))
        return stored
    # A stored program without its final parameters' scores runs again; the same code and
    # seeds reproduce its curve bit for bit, which `matches_stored_run` records.
    common.log(f"{task}: {program}, seeds {first_seed}..{first_seed + seeds - 1}, "
               f"{iterations} iterations")  # fmt: skip
    t0 = time.perf_counter()
    if program == "brax":
        runs = [run_brax(task, seed, iterations) for seed in range(first_seed, first_seed + seeds)]
        steps = runs[0]["steps"]
        returns = np.array([r["returns"] for r in runs]).T  # (E, seeds)
        wall = runs[0]["wall"]
        changes: dict[str, Any] = {}
    else:
        kind, name = program.split(":", 1)
        changes = (FPO if kind == "fpo" else OURS)[name]
        config = program_config(task, program, iterations, seeds, first_seed)
        res = train(task, config)
        evals = [r for r in res.history if r.get("eval/episode_return") is not None]
        steps = [int(r["env_steps"]) for r in evals]
        returns = np.array([r["per_member/eval/episode_return"] for r in evals]).reshape(
            len(evals), seeds
        )
        wall = [float(r["wall_time"]) for r in evals]
        save_policy(res.state, path)
    out = dict(
        task=task, program=program, changes=changes, steps=steps, wall=wall,
        returns=returns.tolist(), seconds=time.perf_counter() - t0,
        provenance=common.provenance(), first_seed=first_seed,
    )  # fmt: skip
    if stored is not None:
        out["matches_stored_run"] = stored["returns"] == out["returns"]
        common.log(f"  same curve as the stored run: {out['matches_stored_run']}")
    if program != "brax":
        # The curve and the parameters are kept first, so a stop while scoring loses nothing.
        out["final"] = None
        common.write_file(path, json.dumps(out, indent=1))
        out["final"] = final_scores(task, config, res.state)
    common.write_file(path, json.dumps(out, indent=1))
    common.log(f"  {out['seconds']:.0f} s; final " + ", ".join(f"{x:.0f}" for x in returns[-1]))
    return out


# The trainer behaviour each program ran with: Brax's order (observation statistics updated
# with each rollout before its epochs, every env restarting from its own first state) or our
# Welford statistics after the update with fresh initial states every iteration (the defaults
# of every env family when these runs were made; DM Control's default is Brax's order now).
BEHAVIOUR = {
    "ours:brax": "Brax's order",
    "fpo:brax order": "Brax's order",
    "fpo:fpo++ brax order": "Brax's order",
    "fpo:fpo++ clip 0.2 brax order": "Brax's order",
    "fpo:fpo++ family networks brax order": "Brax's order",
    "ours:fpo_jax defaults": "Welford statistics, fresh initial states",
    "fpo:paper": "Welford statistics, fresh initial states",
    "ours:welford obs statistics": "Welford statistics, own first states",
    "ours:fresh initial states": "Brax's statistics, fresh initial states",
}


def equal_terms_table(programs: list[dict[str, Any]]) -> list[str]:
    """Markdown lines: each program's final parameters scored stochastically and
    deterministically (programs stored with their ``final`` scores only)."""
    scored = [p for p in programs if "final" in p]
    if not scored:
        return []
    rows = []
    for p in sorted(scored, key=lambda p: (BEHAVIOUR.get(p["program"], ""), p["program"])):
        sto, det = (np.asarray(p["final"][k], np.float64) for k in ("stochastic", "deterministic"))
        rows.append([
            p["program"], BEHAVIOUR.get(p["program"], "-"), len(sto), common.fmt_pm(sto, 0),
            common.fmt_pm(det, 0), ", ".join(f"{x:.0f}" for x in det),
            {True: "yes", False: "no"}.get(
                p.get("matches_stored_run"), "curve lost" if p.get("returns") is None else "(new)"
            ),
        ])  # fmt: skip
    return [
        "\nOn equal terms: the final parameters of each program scored both ways on the same "
        "episodes (the last evaluation's keys): stochastic (FPO from random source noise, PPO a "
        "Gaussian sample) and deterministic (FPO from zero noise, PPO its mean action); "
        "mean ± standard error over seeds. 'Same curve' says whether the rerun reproduced the "
        "stored program's evaluation curve exactly (the code that produced it is unchanged):\n",
        common.markdown_table(
            [
                "program",
                "trainer behaviour",
                "seeds",
                "stochastic",
                "deterministic",
                "deterministic per seed",
                "same curve as stored",
            ],
            rows,
        ),  # fmt: skip
    ]


def equal_wall_time(programs: list[dict[str, Any]], task: str) -> list[str]:
    """Markdown lines: each FPO program at FPO's own preset (``fpo:...`` without a variant,
    whose step is the one timed; its trainer behaviour from
    :data:`BEHAVIOUR` or its own ``"behaviour"``) at the wall time our PPO (same behaviour) spent
    on its whole budget, from the steady iterations timed on a quiet machine by
    ``experiments/steady_step.py`` (its stored JSON; nothing when it is absent or the task is
    another). FPO's mean curve is read at the env steps that wall time buys, by linear
    interpolation between evaluations."""
    path = common.out_dir() / "steady_step_CartpoleBalance_cpu.json"
    if task != "CartpoleBalance" or not path.is_file():
        return []
    timed = json.loads(path.read_text())
    per_program = {}
    for run in timed["runs"]:
        per_program.setdefault(run["program"], []).append(float(np.median(run["seconds"][1:])))
    t_fpo, t_ppo = (float(np.median(per_program[k])) for k in ("fpo", "ppo"))

    def behaviour(p: dict[str, Any]) -> str | None:
        return p.get("behaviour") or BEHAVIOUR.get(p["program"])

    rows = []
    for f in programs:
        ppo = next((p for p in programs if p["program"].startswith("ours:")
                    and behaviour(p) == behaviour(f)), None)  # fmt: skip
        if not f["program"].startswith("fpo:") or ppo is None or f.get("returns") is None:
            continue
        if "variant" in f.get("changes", {}):  # other networks or settings: another step time
            continue
        budget = ppo["steps"][-1]
        reach = budget * t_ppo / t_fpo  # FPO's env steps in the time PPO took for its budget
        fpo_curve = np.asarray(f["returns"], np.float64).mean(axis=1)
        ppo_final = np.asarray(ppo["returns"][-1], np.float64)
        rows.append([
            f["program"], ppo["program"], behaviour(f), f"{budget:,}",
            f"{reach:,.0f}", f"{np.interp(reach, f['steps'], fpo_curve):.0f}",
            common.fmt_pm(ppo_final, 0),
        ])  # fmt: skip
    if not rows:
        return []
    return [
        f"\nAt equal wall time (stochastic evaluation): a steady iteration at this layout took "
        f"{t_fpo:.2f} s for our FPO and {t_ppo:.2f} s for our PPO on a quiet machine "
        f"(`steady_step_CartpoleBalance_cpu.md`, the DM Control defaults), so in the time PPO "
        f"spends on its budget FPO gets {t_ppo / t_fpo:.2f} of the env steps. FPO's mean curve "
        "read there (linear between evaluations), against PPO's final return (FPO programs of a "
        "variant, whose networks and step differ, are left out):\n",
        common.markdown_table(
            [
                "FPO program",
                "PPO program",
                "trainer behaviour",
                "PPO's env steps",
                "FPO's env steps in that time",
                "FPO's return there",
                "PPO's final return",
            ],
            rows,
        ),  # fmt: skip
    ]


def join_seeds(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One program from its stored files (each a run of some of its seeds), seeds in order:
    returns and final scores side by side, wall seconds added up; the evaluation steps must
    agree. A single file is returned as it is."""
    if len(parts) == 1:
        return parts[0]
    parts = sorted(parts, key=lambda p: p.get("first_seed", 0))
    name = f"{parts[0]['task']}: {parts[0]['program']}"
    if len({json.dumps(p["steps"]) for p in parts}) > 1:
        raise SystemExit(f"{name}: its seed files were evaluated at different env steps.")
    if any(p.get("returns") is None or p.get("final") is None for p in parts):
        raise SystemExit(f"{name}: a seed file lacks its curve or final scores; rerun it.")
    first = parts[0]
    out = dict(first, returns=np.concatenate([np.asarray(p["returns"]) for p in parts], 1).tolist(),
               seconds=sum(p["seconds"] for p in parts),
               final={k: sum((p["final"][k] for p in parts), []) for k in first["final"]})  # fmt: skip
    matches = [p.get("matches_stored_run") for p in parts]
    out["matches_stored_run"] = None if None in matches else all(matches)
    return out


def report() -> None:
    stored = [json.loads(p.read_text()) for p in sorted(store().glob("*.json"))]
    if not stored:
        raise SystemExit(f"No programs under {store()}: run some first.")
    by_program: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for p in stored:
        by_program.setdefault((p["task"], p["program"]), []).append(p)
    progs = [join_seeds(parts) for parts in by_program.values()]
    lines = [
        common.results_header(
            "Brax PPO vs fpo_jax PPO, identical settings and evaluation",
            "per task: see the tables",
            [
                *[
                    f"{task}: {t['layout']['num_envs']} envs, {t['layout']['batch_size']} x "
                    f"{t['layout']['num_minibatches']} minibatches of {t['layout']['unroll_length']}"
                    f" steps, {t['layout']['num_epochs']} epochs, {t['iterations']} iterations"
                    + (f", {t['env']}" if t["env"] else "")
                    for task, t in TASKS.items()
                ],
                "Playground's Brax PPO config for each DM Control task, Brax's notebook settings "
                "for Brax envs, otherwise; `num_resets_per_eval` 0",
                f"evaluation: the stochastic policy, {NUM_EVAL_ENVS} envs, one 1000-step "
                "episode each, before training and after every iteration",
            ],
            data=[p["provenance"] for p in stored if "provenance" in p],
        )
    ]
    plt = common.pyplot()
    tasks = sorted({p["task"] for p in progs})
    fig, axes = plt.subplots(2, len(tasks), figsize=(6 * len(tasks), 8), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for col, task in enumerate(tasks):
        every = [p for p in progs if p["task"] == task]
        # A program whose curve was lost (stopped while scoring; its saved parameters scored
        # later) is in the equal-terms table only.
        mine = [p for p in every if p.get("returns") is not None]
        mine.sort(key=lambda p: (p["program"] != "brax", p["program"] != "ours:brax", p["program"]))
        lines += [f"\n## {task}\n", "Eval return, mean ± standard error over seeds:\n"]
        steps = max((p["steps"] for p in mine), key=len)
        headers = ["program", "seeds", *[f"{s / 1e6:.2f}M" for s in steps]]
        rows = []
        for i, p in enumerate(mine):
            r = np.asarray(p["returns"], np.float64)
            rows.append([p["program"], r.shape[1], *[common.fmt_pm(x, 0) for x in r]])
            common.plot_curves(axes[0, col], np.asarray(p["steps"]), r, p["program"],
                               colors[i % len(colors)])  # fmt: skip
            axes[1, col].scatter(np.full(r.shape[1], i), r[-1], color=colors[i % len(colors)])
        lines.append(common.markdown_table(headers, rows))
        lines += ["\nFinal return per seed (seed 0 first) and wall time of the program:\n"]
        lines.append(
            common.markdown_table(
                ["program", "final returns", "seeds >= 900", "wall time", "changes"],
                [
                    [p["program"], ", ".join(f"{x:.0f}" for x in p["returns"][-1]),
                     f"{int(np.sum(np.asarray(p['returns'][-1]) >= 900))} / "
                     f"{len(p['returns'][-1])}", common.fmt_s(p["seconds"], 0),
                     json.dumps(p["changes"]) if p["changes"] else "-"]
                    for p in mine
                ],
            )
        )  # fmt: skip
        brax = next((p for p in mine if p["program"] == "brax"), None)
        if brax is not None:
            b = np.asarray(brax["returns"][-1], np.float64)
            lines.append("\nFinal mean minus Brax PPO's, ± the two standard errors combined:\n")
            for p in mine:
                if p is brax or len(p["returns"]) != len(brax["returns"]):
                    continue
                o = np.asarray(p["returns"][-1], np.float64)
                lines.append(f"- {p['program']}: {common.fmt_difference(o, b)}")
        lines += equal_terms_table(every)
        lines += equal_wall_time(every, task)
        common.label_return_axes(axes[0, col], task)
        axes[1, col].set_xticks(range(len(mine)), [p["program"] for p in mine], rotation=30,
                                ha="right", fontsize=7)  # fmt: skip
        axes[1, col].set_ylabel("final eval return (one dot per seed)")
        axes[1, col].grid(alpha=0.3)
    common.save_figure(fig, "ppo_parity.png")
    lines.append("\n![curves and final returns](ppo_parity.png)\n")
    common.write_result("ppo_parity.md", "\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--task", default="CartpoleBalance", choices=sorted(TASKS))
    p.add_argument("--programs", default="brax,ours:brax",
                   help="comma-separated: brax, ours:NAME with NAME in " + ", ".join(OURS)
                   + "; fpo:NAME with NAME in " + ", ".join(FPO))  # fmt: skip
    p.add_argument("--seeds", type=int, default=SEEDS)
    p.add_argument("--first-seed", type=int, default=0,
                   help="run seeds FIRST_SEED .. FIRST_SEED + SEEDS - 1 (stored apart from seed 0's "
                   "file; the report joins them)")  # fmt: skip
    p.add_argument("--iterations", type=int, default=None, help="default: per task")
    p.add_argument("--report", action="store_true", help="only rebuild the tables and figure")
    args = common.parse_args(p, argv, smoke="1 iteration at 64 envs, 2 seeds")
    if args.first_seed < 0:
        p.error(f"--first-seed must be 0 or more, got {args.first_seed}")
    if args.smoke:
        TASKS[args.task]["layout"] = dict(
            num_envs=64, batch_size=32, num_minibatches=4, unroll_length=16, num_epochs=2
        )
        args.seeds, args.iterations = 2, 1
    if not args.report:
        iterations = args.iterations or TASKS[args.task]["iterations"]
        for program in args.programs.split(","):
            run_program(args.task, program.strip(), iterations, args.seeds, args.first_seed)
    report()


if __name__ == "__main__":
    main()
