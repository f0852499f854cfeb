"""The fixed cost of a run: process start to the end of the first training call, against one
steady call, with a cold and a warm compilation cache.

Each measurement is a fresh Python process (``CHILD``) that imports the library, trains
``--calls`` calls of the compiled step on CartpoleBalance at the paper's layout scaled to 256 envs
(batch 128 x 32 minibatches, unroll 30, 16 epochs: 122,880 env steps per call, FPO, N = 8) through
``fpo_jax.train.train`` with the evaluation before training and after the last call (as a default
run evaluates), and prints a timestamp when each call's record is written. The parent stamps
every stderr line of the child on arrival, so the phases of the start are read off the library's
own log lines: imports (until "Building the env"), building the env and the trainer (until
"compiling"), compiling (until "compiled in"), then the evaluation before training and the first
call. A steady call is the time between the ends of calls 1 and 2.

Cold: a fresh, empty persistent compilation cache; warm: the cache the previous cold run filled.
Runs go cold, warm, warm, cold (A B B A), so a drift of the machine's speed cancels in the
medians. ``--repo PATH`` runs the child against another checkout (e.g. a ``git worktree`` of an
older commit) for a before/after comparison in the same script: ``--repo`` runs are interleaved
with this checkout's.

Time it only on a quiet machine::

    python experiments/first_call.py                       # ~6 min on 2 CPU cores
    python experiments/first_call.py --repo /tmp/before    # also an older checkout, interleaved
    python experiments/first_call.py --smoke               # tiny layout, to /tmp
    python experiments/first_call.py --report              # the table from the stored JSON

Writes ``experiments/results/first_call_CartpoleBalance_cpu.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (also puts the repository on sys.path)
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NAME = "first_call_CartpoleBalance_cpu"
LAYOUT, SMOKE_LAYOUT = common.R1_LAYOUT, common.SMOKE_LAYOUT
# Log lines of fpo_jax.train that end each phase of the start.
PHASES = (
    ("imports", ("Building the env",)),
    ("env and trainer", ("compiling the training step",)),
    ("compilation", ("compiled in", "loaded from the compilation cache in")),
)


# One measured process: imports the library of the checkout on PYTHONPATH (nothing else of this
# script or of experiments/common.py, which import this checkout's), trains the calls and stamps
# the end of each call on stdout. argv: cache dir, calls, layout as JSON.
CHILD = """
import json, sys, time
from fpo_jax import compile_cache
from fpo_jax.train import train

cache_dir, calls, layout = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
compile_cache.enable(cache_dir)


class Stamp:
    def write(self, record):
        print(f"CALL {record['call']} {time.time():.4f}", flush=True)


per_call = layout["batch_size"] * layout["num_minibatches"] * layout["unroll_length"]
train("CartpoleBalance", num_timesteps=calls * per_call, num_evals=1, num_eval_envs=128,
      progress=False, loggers=[Stamp()], **layout)
"""


def measure(repo: Path, cache_dir: str, args: argparse.Namespace) -> dict[str, float]:
    """Spawn one child against ``repo``; seconds from the spawn to each phase's end and call."""
    env = dict(os.environ, PYTHONPATH=str(repo))
    layout = SMOKE_LAYOUT if args.smoke else LAYOUT
    cmd = [sys.executable, "-c", CHILD, cache_dir, str(args.calls), json.dumps(layout)]
    start = time.time()
    proc = subprocess.Popen(
        cmd, env=env, cwd=tempfile.gettempdir(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    stamps: dict[str, float] = {}
    for line in proc.stderr:  # the library logs to stderr; stamp each line as it arrives
        for phase, markers in PHASES:
            if any(m in line for m in markers) and phase not in stamps:
                stamps[phase] = time.time() - start
    out, _ = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"child failed ({proc.returncode}): {out[-2000:]}")
    calls = {int(w[1]): float(w[2]) - start for w in (ln.split() for ln in out.splitlines())
             if w and w[0] == "CALL"}  # fmt: skip
    stamps["first call"] = calls[1]
    stamps["steady call"] = calls[2] - calls[1]
    stamps["process"] = time.time() - start
    return stamps


def table(results: dict[tuple[str, str], list[dict[str, float]]]) -> str:
    rows = []
    for (label, cache), runs in results.items():
        med = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
        prev, parts = 0.0, []
        for phase, _ in PHASES:
            parts.append(f"{med[phase] - prev:.1f}")
            prev = med[phase]
        rest = med["first call"] - prev  # the evaluation before training and the first call
        rows.append([
            label, cache, len(runs), *parts, f"{rest:.1f}", f"{med['first call']:.1f}",
            f"{med['steady call']:.1f}", f"**{med['first call'] / med['steady call']:.2f}**",
        ])  # fmt: skip
    return common.markdown_table(
        ["checkout", "cache", "runs", "imports s", "env + trainer s", "compile s",
         "eval before + 1st call s", "start to end of 1st call s", "steady call s",
         "1st / steady"],
        rows, "llr" + "r" * 7,
    )  # fmt: skip


def report(data: dict) -> str:
    """The results file from the stored measurements."""
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    for run in data["runs"]:
        results.setdefault((run["checkout"], run["cache"]), []).append(run["stamps"])
    budget = f"CartpoleBalance, FPO, {data['layout']}, {data['calls']} calls per process"
    details = [f"--repo: {data['repo_commit']}"] if data.get("repo_commit") else []
    text = common.results_header(
        "The fixed cost of a run against a steady call", budget, details, data=[data["provenance"]]
    )
    text += "\n" + table(results) + "\n"
    text += (
        "Medians over the runs. Phases from the spawn of the process: imports (until 'Building "
        "the env'), building the env and the trainer (until 'compiling'), compilation (until "
        "'compiled in' or 'loaded from the compilation cache in'), then the evaluation before "
        "training and the first call; a steady call is the time between the ends of calls 1 "
        "and 2. A warm cache holds what the cold run before it compiled (and, where the checkout "
        "keeps traced programs, `fpo_jax.program_cache`, those too).\n"
    )
    return text


def repo_commit(repo: Path) -> str:
    done = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    return done.stdout.strip() or "unknown"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--repo", type=Path, default=None, help="another checkout to compare")
    parser.add_argument("--report", action="store_true", help="only rebuild the table")
    args = common.parse_args(parser, argv, smoke="tiny layout")
    path = common.out_dir() / f"{NAME}.json"
    if not args.report:
        checkouts = [("this checkout", REPO)]
        if args.repo:
            checkouts.append(("--repo", args.repo.resolve()))
        runs: list[dict] = []
        with tempfile.TemporaryDirectory(prefix="fpo_first_call_") as tmp:
            for order in ("cold", "warm", "warm", "cold"):
                for label, repo in checkouts if order == "cold" else reversed(checkouts):
                    slug = "repo" if label == "--repo" else "this"
                    done = sum(1 for r in runs if r["checkout"] == label and r["cache"] == order)
                    # cold: a fresh, empty cache; warm: the one the first cold run filled.
                    cache = Path(tmp) / f"{slug}_cold_{done if order == 'cold' else 0}"
                    common.log(f"{label}, {order} cache")
                    stamps = measure(repo, str(cache), args)
                    runs.append({"checkout": label, "cache": order, "stamps": stamps})
                    common.log("  " + ", ".join(f"{k} {v:.1f} s" for k, v in stamps.items()))
        data = {
            "layout": SMOKE_LAYOUT if args.smoke else LAYOUT,
            "calls": args.calls,
            "repo_commit": repo_commit(args.repo) if args.repo else None,
            "runs": runs,
            "provenance": common.provenance(),
        }
        common.write_file(path, json.dumps(data, indent=1))
    common.write_result(f"{NAME}.md", report(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
