"""Does a change compute the same numbers? FPO, PPO and DPPO on a built-in, a Brax and a
Playground env, tiny layouts at fixed seeds, trained by this checkout and by another one (a
``git worktree`` of the commit before the change); the final parameters and every metric the
two share must be bitwise equal.

    python experiments/bitwise_before_after.py --before 0d43e5f
    python experiments/bitwise_before_after.py --report    # the table again from the stored JSON

Each checkout trains in its own subprocess (``python -c`` with that checkout first on
``sys.path``) and saves its numbers to an ``.npz``; this script compares them and writes
``experiments/results/bitwise_before_after.json`` (per case, the arrays both sides have, those
that differ and those only one side has; the commit compared with; the provenance) and from it
alone ``bitwise_before_after.md``. Metrics only one side has (a new diagnostic) are listed, not
compared.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (also puts the repository on sys.path)
import numpy as np  # noqa: E402

CASES = [(env, algo) for env in ("gridworld", "inverted_pendulum", "CartpoleBalance")
         for algo in ("fpo", "ppo", "dppo")]  # fmt: skip
TINY = dict(num_envs=8, batch_size=8, num_minibatches=2, num_epochs=2, unroll_length=8,
            episode_length=40, num_eval_envs=4, policy_hidden=(16, 16), value_hidden=(16, 16),
            num_timesteps=256, num_evals=2, progress=False, seed=3)  # fmt: skip

CHILD = """
import sys, json
sys.path.insert(0, sys.argv[1])
import jax, numpy as np
import fpo_jax
from fpo_jax.train import train
assert fpo_jax.__file__.startswith(sys.argv[1]), (fpo_jax.__file__, sys.argv[1])
cases, tiny, out = json.loads(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
arrays = {}
for env, algo in cases:
    extra = dict(backend="spring") if env == "inverted_pendulum" else {}
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in tiny.items()}
    r = train(env, algo=algo, **kw, **extra)
    for i, leaf in enumerate(jax.tree.leaves(r.state.params)):
        arrays[f"{env}/{algo}/param/{i}"] = np.asarray(leaf)
    for call, record in enumerate(r.history):
        for k, v in record.items():
            if isinstance(v, (int, float)) and k not in ("wall_time", "call_seconds",
                                                          "env_steps_per_second"):
                arrays[f"{env}/{algo}/metric/{call}/{k}"] = np.asarray(v)
np.savez(out, **arrays)
"""


NAME = "bitwise_before_after"


def run_checkout(repo: Path, out: Path) -> dict[str, np.ndarray]:
    common.log(f"training {len(CASES)} cases with {repo}")
    subprocess.run(
        [sys.executable, "-c", CHILD, str(repo), json.dumps(CASES), json.dumps(TINY), str(out)],
        check=True, cwd=repo,
    )  # fmt: skip
    return dict(np.load(out))


def measure(before_rev: str) -> dict:
    """Both checkouts' numbers, compared: the stored data of the results file."""
    started = common.provenance()
    resolved = subprocess.run(["git", "rev-parse", "--short", before_rev], cwd=common.REPO,
                              capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        worktree = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), before_rev],
                       check=True, cwd=common.REPO, capture_output=True)  # fmt: skip
        try:
            before = run_checkout(worktree, Path(tmp) / "before.npz")
            after = run_checkout(common.REPO, Path(tmp) / "after.npz")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)],
                           cwd=common.REPO, check=False)  # fmt: skip
    cases = []
    for env, algo in CASES:
        prefix = f"{env}/{algo}/"
        keys_b = {k for k in before if k.startswith(prefix)}
        keys_a = {k for k in after if k.startswith(prefix)}
        shared = sorted(keys_b & keys_a)
        cases.append({
            "env": env, "algo": algo, "shared": shared,
            "differ": [k for k in shared
                       if not np.array_equal(before[k], after[k], equal_nan=True)],
            "only_before": sorted(keys_b - keys_a), "only_after": sorted(keys_a - keys_b),
        })  # fmt: skip
    return {
        "before": before_rev,
        "before_commit": resolved or "unknown",
        "tiny": TINY,
        "cases": cases,
        "machine": common.machine_info(),
        "provenance": common.provenance_until_now(started),
    }


def report(data: dict) -> str:
    """The results file from the stored comparison alone."""
    rows = []
    for case in data["cases"]:
        shared, differ = case["shared"], case["differ"]
        params = [k for k in shared if "/param/" in k]
        metrics = [k for k in shared if "/metric/" in k]
        only = sorted({k.rsplit("/", 1)[-1] for k in case["only_before"] + case["only_after"]})
        rows.append([
            case["env"], case["algo"], f"{len(params)}", f"{len(metrics)}",
            "**yes**" if not differ else f"no: {', '.join(differ[:3])}",
            ", ".join(only) or "-",
        ])  # fmt: skip
    tiny = {k: tuple(v) if isinstance(v, list) else v for k, v in data["tiny"].items()}
    text = common.results_header(
        f"The same numbers before ({data['before']}) and after",
        "tiny layouts: " + ", ".join(f"{k} {v}" for k, v in tiny.items()),
        [f"before: `--before {data['before']}`, commit {data['before_commit']}; after: the "
         "checkout named in the data line below",
         "inverted_pendulum on Brax's spring backend"],
        data=[data["provenance"]],
    )  # fmt: skip
    text += "\n" + common.markdown_table(
        ["env", "algo", "parameter arrays", "metric values", "all bitwise equal",
         "metrics on one side only"],
        rows,
    )  # fmt: skip
    return text + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--before", help="the commit to compare with (needed to measure)")
    p.add_argument("--report", action="store_true", help="only rebuild the table from the JSON")
    args = common.parse_args(p, argv, smoke="the same (it is already tiny)")
    if not args.report and not args.before:
        p.error("--before COMMIT is needed to measure (or --report to rebuild the table)")
    path = common.out_dir() / f"{NAME}.json"
    if not args.report:
        common.write_file(path, json.dumps(measure(args.before), indent=1))
    common.write_result(f"{NAME}.md", report(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
