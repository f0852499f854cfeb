#!/usr/bin/env bash
# One-GPU check in one command, at most ~8 minutes on one H100 / H200 (GPU_CHECK_BUDGET_S).
#
#   bash experiments/gpu/bundle.sh                   # here, with PyPI: wheels the GPU image lacks
#   bash experiments/gpu_check.sh                    # there (device call: carry .whl)
#   GPU_CHECK_SMOKE=1 bash experiments/gpu_check.sh  # tiny sizes: the same steps in minutes on CPU
#   bash experiments/gpu/rehearse.sh                 # the smoke run in a copy of the GPU image
#   GPU_CHECK_PLAN_ONLY=1 bash experiments/gpu_check.sh  # imports + preflight only, any machine
#
# Steps, each under its own `timeout` (and all under one overall budget: a step that would start
# with too little time left is skipped and marked so):
#   0. machine and versions (nvidia-smi, jax.print_environment_info, pip list); installs .whl/*.whl
#      when present (`pip install --no-index --no-deps --target $GPU_CHECK_SITE`, then
#      PYTHONPATH), and checks the imports; it stops here (exit 2) if they fail, or if jax sees no
#      GPU outside smoke mode. Then a preflight parses every step's command line and validates
#      its config (seconds, no compilation; GPU_CHECK_PLAN_ONLY=1 stops after it).
#   1. main: the main job, `python -m fpo_jax.train --env ant` with its preset (Brax's published
#      PPO layout for ant), --num-timesteps cut to fit.
#   2. fpo_<task>: FPO at the paper's layout (the DM Control preset: 2048 envs, unroll 30,
#      1024 x 32 minibatches, 16 epochs, N = 8) on CartpoleBalance and CheetahRun, as many steps
#      as fit; metrics.jsonl is streamed every iteration, so a run cut by its timeout still has
#      its curve (marked partial).
#   3. throughput: experiments/bench_throughput.py at that layout on CartpoleBalance: raw
#      stepping, Brax PPO, our Gaussian PPO and FPO in one process (steps/s, ratios, compile s,
#      compiled-step memory). Run with the persistent compilation cache off, so that its compile
#      times are real.
#   4. seeds1 / seeds5: FPO on CartpoleBalance at the paper's layout, --num-seeds 1 and 5, same
#      steps per seed: wall-time ratio of the training calls (and of the whole processes).
#   5. summary: experiments/gpu/summarize.py -> summary.md, summary.json, curves.png.
#
# Everything goes to experiments/results/gpu_<UTC date>/ (GPU_CHECK_OUT=DIR to change): one log
# per step, steps.jsonl (exit status, wall and timeout of every step), runs/<step>/ (config.json,
# metrics.jsonl; checkpoints of the main job), throughput_CartpoleBalance.md, gpu_monitor.csv
# (nvidia-smi memory / utilisation every 0.5 s; jax runs with XLA_PYTHON_CLIENT_PREALLOCATE=false
# so that it shows what is used), summary.md. On the device machine ($OUT set), the folder (less
# checkpoints) is also packed to $OUT/gpu_results.tar.gz and summary.md copied to $OUT.
#
# Exit status: 0 when every step ran (on the GPU a training step stopped by its timeout counts as
# ran: its streamed metrics are the result), 1 when a step failed, 2 when the bundle, the imports
# or the preflight failed.
set -u -o pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

SMOKE=${GPU_CHECK_SMOKE:-0}
PY=${GPU_CHECK_PYTHON:-python3}
RESULTS=${GPU_CHECK_OUT:-experiments/results/gpu_$(date -u +%Y%m%d_%H%M)}
# fpo_jax.train refuses a run directory that already holds a run: never reuse a results folder.
if [ -e "$RESULTS" ]; then RESULTS="${RESULTS}_$(date -u +%S%N | cut -c1-6)"; fi
SITE=${GPU_CHECK_SITE:-/tmp/fpo_gpu_site}
BUNDLE=${GPU_CHECK_BUNDLE:-$REPO/.whl}
EXPORT=${GPU_CHECK_EXPORT:-${OUT:-}} # the device tool's $OUT: what is there comes back
export JAX_COMPILATION_CACHE_DIR=${GPU_CHECK_XLA_CACHE:-/tmp/fpo_gpu_xla_cache}
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=1
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg

# Sizes. Paper layout: 2048 envs x 30 steps x 16 unrolls = 983,040 env steps per iteration.
PAPER_IT=983040
if [ "$SMOKE" = "1" ]; then
  BUDGET_S=${GPU_CHECK_BUDGET_S:-3000}
  T_MAIN=600 T_FPO_CartpoleBalance=600 T_FPO_CheetahRun=600 T_BENCH=900 T_SEEDS1=400 T_SEEDS5=600
  # 16 envs, 16 x 2 minibatches: 2 iterations of 160 (ant) / 320 (DM Control) env steps.
  TINY=(--num-envs 16 --batch-size 16 --num-minibatches 2 --num-epochs 1 --episode-length 50
    --num-eval-envs 4)
  MAIN_ARGS=("${TINY[@]}" --unroll-length 5 --num-timesteps 320 --num-evals 1)
  FPO_ARGS=("${TINY[@]}" --unroll-length 10 --num-evals 1)
  FPO_STEPS_OTHER=640
  SEEDS_ARGS=("${TINY[@]}" --unroll-length 10 --num-timesteps 640)
  BENCH_ARGS=(--num-envs 16 --unroll-length 10 --batch-size 16 --num-minibatches 2
    --num-epochs 1 --episode-length 50 --rounds 1 --raw-scan-length 20)
else
  BUDGET_S=${GPU_CHECK_BUDGET_S:-480}
  # Caps (s). Guesses for one H100 (nothing has run there yet): each training step is mostly
  # compilation (30-60 s on CPU at these programs' sizes); CheetahRun's contacts compile and
  # step slowest; seeds1 repeats fpo_CartpoleBalance's program (a compilation-cache read).
  T_MAIN=60 T_FPO_CartpoleBalance=65 T_FPO_CheetahRun=90 T_BENCH=125 T_SEEDS1=40 T_SEEDS5=60
  # ant preset: 4096 envs x 5 steps x 16 unrolls = 327,680 env steps per iteration; 10 of them.
  MAIN_ARGS=(--num-timesteps 3276800 --num-evals 2)
  FPO_ARGS=(--num-evals 5)
  FPO_STEPS_CartpoleBalance=$((15 * PAPER_IT)) FPO_STEPS_CheetahRun=$((10 * PAPER_IT))
  FPO_STEPS_OTHER=$((10 * PAPER_IT))
  SEEDS_ARGS=(--num-timesteps $((2 * PAPER_IT)))
  BENCH_ARGS=(--num-envs 2048 --unroll-length 30 --batch-size 1024 --num-minibatches 32
    --num-epochs 16 --episode-length 1000 --rounds 2 --raw-scan-length 1000)
fi
TASKS=${GPU_CHECK_TASKS:-"CartpoleBalance CheetahRun"}
T_FPO_OTHER=${T_FPO_CartpoleBalance} # a task set with GPU_CHECK_TASKS
RESERVE_S=20 # kept back for the summary

mkdir -p "$RESULTS/runs"
STEPS_JSON="$RESULTS/steps.jsonl"
: >"$STEPS_JSON"
START=$(date +%s)
echo "gpu_check: smoke=$SMOKE budget=${BUDGET_S}s python=$PY results=$RESULTS"

record() { # record NAME RC T0 T1 TIMEOUT NOTE
  printf '{"step": "%s", "rc": %s, "start": %s, "end": %s, "wall_s": %s, "timeout_s": %s, "note": "%s"}\n' \
    "$1" "$2" "$3" "$4" "$(($4 - $3))" "$5" "$6" >>"$STEPS_JSON"
}

# step NAME CAP_S CMD...: run CMD with timeout min(CAP_S, budget left), log to NAME.log.
step() {
  local name=$1 cap=$2
  shift 2
  if [ "$PLANNING" = 1 ]; then # first pass: only write the command down for the preflight
    { printf '%s\t' "$name" && printf '%q ' "$@" && echo; } >>"$RESULTS/plan.tsv"
    return 0
  fi
  local now left t t0 rc
  now=$(date +%s)
  left=$((BUDGET_S - (now - START) - RESERVE_S))
  if [ "$left" -lt 20 ]; then
    echo "[$((now - START))s] $name: skipped (${left}s of the budget left)"
    record "$name" null "$now" "$now" 0 "skipped: budget"
    return 0
  fi
  t=$((cap < left ? cap : left))
  echo "[$((now - START))s] $name (timeout ${t}s): $*"
  echo "\$ $*" >"$RESULTS/$name.log"
  t0=$(date +%s)
  timeout --kill-after=10 "$t" "$@" >>"$RESULTS/$name.log" 2>&1
  rc=$?
  local t1
  t1=$(date +%s)
  echo "[$((t1 - START))s] $name: exit status $rc after $((t1 - t0))s$([ $rc = 124 ] && echo ' (timeout)')"
  [ "$rc" = 0 ] || tail -n 5 "$RESULTS/$name.log" | sed 's/^/    /'
  record "$name" "$rc" "$t0" "$t1" "$t" ""
}

# ---------------------------------------------------------------------------------------------
# 0. Machine, bundle, imports.
MONITOR_PID=
if command -v nvidia-smi >/dev/null 2>&1; then
  {
    date -u
    timeout 20 nvidia-smi
    timeout 20 nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  } >"$RESULTS/nvidia-smi.txt" 2>&1
  nvidia-smi --query-gpu=timestamp,memory.used,memory.total,utilization.gpu \
    --format=csv,noheader,nounits -lms 500 >"$RESULTS/gpu_monitor.csv" 2>/dev/null &
  MONITOR_PID=$!
else
  echo "nvidia-smi not available" >"$RESULTS/nvidia-smi.txt"
fi
finish() { [ -n "$MONITOR_PID" ] && kill "$MONITOR_PID" 2>/dev/null; }
trap finish EXIT

t0=$(date +%s)
if compgen -G "$BUNDLE/*.whl" >/dev/null; then
  rm -rf "$SITE"
  if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$BUNDLE"/*.whl >"$RESULTS/bundle_install.log" 2>&1; then
    echo "gpu_check: installing the bundle failed, see $RESULTS/bundle_install.log"
    cat "$RESULTS/bundle_install.log"
    exit 2
  fi
  export PYTHONPATH="$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}"
  ls "$BUNDLE"/*.whl | xargs -n1 basename >>"$RESULTS/bundle_install.log"
  echo "gpu_check: installed $(ls "$BUNDLE"/*.whl | wc -l) wheels from $BUNDLE into $SITE"
else
  export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
  echo "gpu_check: no bundle at $BUNDLE; using the installed packages"
fi
record bundle 0 "$t0" "$(date +%s)" 0 ""

{
  echo "command: GPU_CHECK_SMOKE=$SMOKE bash experiments/gpu_check.sh"
  echo "git: $(git rev-parse HEAD 2>/dev/null) $(git status --porcelain 2>/dev/null | wc -l) files changed"
  echo "PYTHONPATH=$PYTHONPATH"
  uname -a
  timeout 120 "$PY" -c "import jax; jax.print_environment_info()"
  timeout 60 "$PY" -m pip list 2>/dev/null
} >"$RESULTS/environment.txt" 2>&1

t0=$(date +%s)
timeout 180 "$PY" - >"$RESULTS/imports.log" 2>&1 <<'EOF'
import importlib.metadata as md
import os

import jax

import brax.envs  # noqa: F401
import mujoco
import mujoco.mjx  # noqa: F401
import mujoco_playground  # noqa: F401  (prints "Failed to import warp": expected, impl="jax")
import tyro  # noqa: F401
from brax.training.agents.ppo import train as _ppo  # noqa: F401

import fpo_jax.envs
import fpo_jax.train  # noqa: F401

for dist in ["jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "brax", "mujoco",
             "mujoco-mjx", "playground", "tyro"]:
    try:
        print(f"{dist} {md.version(dist)}")
    except md.PackageNotFoundError:
        print(f"{dist} missing")
print("mujoco.__file__", mujoco.__file__)
print("fpo_jax.envs.__file__", fpo_jax.envs.__file__)
print("devices", jax.devices(), "backend", jax.default_backend())
cpu_ok = os.environ.get("GPU_CHECK_SMOKE") == "1" or os.environ.get("GPU_CHECK_PLAN_ONLY") == "1"
if not cpu_ok and jax.default_backend() != "gpu":
    raise SystemExit("jax sees no GPU (set GPU_CHECK_SMOKE=1 for the CPU smoke run)")
EOF
rc=$?
record imports "$rc" "$t0" "$(date +%s)" 180 ""
if [ "$rc" != 0 ]; then
  echo "gpu_check: import check failed (exit status $rc), see $RESULTS/imports.log"
  cat "$RESULTS/imports.log"
  exit 2
fi
grep -v "^Failed to import" "$RESULTS/imports.log" | tail -n 3

# ---------------------------------------------------------------------------------------------
run_steps() {
# 1. The main job.
step main "$T_MAIN" "$PY" -m fpo_jax.train --env ant "${MAIN_ARGS[@]}" \
  --run-dir "$RESULTS/runs/main" --no-progress

# 2. FPO at the paper's layout, one task per process.
for task in $TASKS; do
  cap_var=T_FPO_$task steps_var=FPO_STEPS_$task
  step "fpo_$task" "${!cap_var:-$T_FPO_OTHER}" "$PY" -m fpo_jax.train --env "$task" --algo fpo \
    "${FPO_ARGS[@]}" --num-timesteps "${!steps_var:-$FPO_STEPS_OTHER}" --run-dir "$RESULTS/runs/fpo_$task" --no-checkpoint --no-progress
done

# 3. Throughput at that layout (compilation cache off: compile times are measured). Only raw
# stepping, Brax PPO, our PPO and FPO: the optional programs are skipped where the script has
# a flag for that (--no-dppo only in newer versions of it).
SKIP=(--no-grid --no-split --no-key)
grep -q -- '"--no-dppo"' experiments/bench_throughput.py && SKIP+=(--no-dppo)
step throughput "$T_BENCH" env JAX_ENABLE_COMPILATION_CACHE=false "$PY" \
  experiments/bench_throughput.py --env CartpoleBalance "${BENCH_ARGS[@]}" "${SKIP[@]}" \
  --out "$RESULTS/throughput_CartpoleBalance.md"

# 4. --num-seeds 5 vs 1 (same steps per seed).
for k in 1 5; do
  cap=$T_SEEDS1
  [ "$k" = 5 ] && cap=$T_SEEDS5
  step "seeds$k" "$cap" "$PY" -m fpo_jax.train --env CartpoleBalance --algo fpo \
    "${SEEDS_ARGS[@]}" --num-seeds "$k" --num-evals 0 --run-dir "$RESULTS/runs/seeds$k" \
    --no-checkpoint --no-progress
done
}

# Preflight: every training / benchmark command line is parsed and its config validated (seconds,
# no compilation), so that a bad flag or layout fails here rather than after minutes of GPU time.
PLANNING=1
: >"$RESULTS/plan.tsv"
run_steps
PLANNING=0
t0=$(date +%s)
timeout 120 "$PY" - "$RESULTS/plan.tsv" >"$RESULTS/preflight.log" 2>&1 <<'EOF'
import importlib.util
import os
import shlex
import sys

from fpo_jax import config as config_lib
from fpo_jax.cli import parse_config
from fpo_jax.train import check_algorithm, check_settings_read

bench = None
for line in open(sys.argv[1]):
    name, cmd = line.rstrip("\n").split("\t", 1)
    argv = shlex.split(cmd)
    if "fpo_jax.train" in argv:
        cfg = config_lib.validate(parse_config(argv[argv.index("fpo_jax.train") + 1 :]))
        check_algorithm(cfg)
        check_settings_read(cfg)
        print(f"{name}: {cfg.algo} on {cfg.env}, {cfg.num_envs} envs x {cfg.num_seeds} seeds, "
              f"{cfg.env_steps_per_iteration:,} env steps / iteration, {cfg.num_timesteps:,} steps")
    elif any(a.endswith("bench_throughput.py") for a in argv):
        i = next(i for i, a in enumerate(argv) if a.endswith("bench_throughput.py"))
        if bench is None:
            spec = importlib.util.spec_from_file_location("bench_throughput", argv[i])
            bench = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = bench
            sys.path.insert(0, os.path.dirname(os.path.abspath(argv[i])))  # its `import common`
            spec.loader.exec_module(bench)
        args = bench.parse_args(argv[i + 1 :])
        print(f"{name}: bench_throughput.py on {args.env}, {args.num_envs} envs")
    else:
        raise SystemExit(f"preflight: unknown step command: {cmd}")
print("preflight ok")
EOF
rc=$?
record preflight "$rc" "$t0" "$(date +%s)" 120 ""
cat "$RESULTS/preflight.log"
if [ "$rc" != 0 ]; then
  echo "gpu_check: preflight failed (exit status $rc): a step's command line is wrong"
  exit 2
fi
if [ "${GPU_CHECK_PLAN_ONLY:-0}" = 1 ]; then
  echo "gpu_check: GPU_CHECK_PLAN_ONLY=1: the plan is valid; stopping before the steps"
  exit 0
fi
run_steps

# ---------------------------------------------------------------------------------------------
# 5. Summary, and the copy that comes back from the device machine.
finish
t0=$(date +%s)
timeout 120 "$PY" experiments/gpu/summarize.py "$RESULTS" --smoke "$SMOKE" \
  >"$RESULTS/summary.log" 2>&1
summary_rc=$?
cat "$RESULTS/summary.log"
record summary "$summary_rc" "$t0" "$(date +%s)" 120 ""

if [ -n "$EXPORT" ] && [ -d "$EXPORT" ] && [ -w "$EXPORT" ]; then
  tar -czf "$EXPORT/gpu_results.tar.gz" --exclude='checkpoints' \
    -C "$(dirname "$RESULTS")" "$(basename "$RESULTS")" && cp "$RESULTS/summary.md" "$EXPORT/" \
    && echo "gpu_check: packed $RESULTS into $EXPORT/gpu_results.tar.gz"
fi
echo "gpu_check finished in $(($(date +%s) - START)) s; results in $RESULTS"
exit "$summary_rc"
