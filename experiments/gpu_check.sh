#!/usr/bin/env bash
# One-GPU check, at most 8 minutes: FPO on two DM Control tasks at the paper's layout and
# hyperparameters (2048 envs, 1024 x 32 minibatches, 16 epochs, N = 8, ...), 10M steps each
# (the paper runs 60M; see the estimate below), then the throughput benchmark.
#
#   bash experiments/gpu_check.sh                   # on a machine with one H100 / H200
#   GPU_CHECK_SMOKE=1 bash experiments/gpu_check.sh # tiny CPU smoke run of the same commands
#
# Everything goes to experiments/results/gpu_<UTC date>/ (override: GPU_CHECK_OUT=DIR):
#   nvidia-smi.txt, environment.txt, dm_control_gpu.{md,png,json}, runs/<task>_fpo/metrics.jsonl,
#   throughput_CartpoleBalance_gpu.md, and one log per step.
#
# Estimate: an iteration of the paper's layout is 983,040 env steps (2048 envs x 480 steps) and
# 512 minibatch updates. Brax PPO with this layout runs DM Control at a few 100k steps/s on one
# A100-class GPU and FPO costs ~1.5x PPO, so 10M steps (11 iterations) + ~1 min of compilation
# should fit one 150 s slot for CartpoleBalance; CheetahRun's physics is slower and may stop
# early. Every step has its own `timeout`; training streams metrics.jsonl per iteration, so a run
# cut short still shows up in the table, marked "partial" with the steps it reached.
set -u
cd "$(dirname "$0")/.."

SMOKE=${GPU_CHECK_SMOKE:-0}
OUT=${GPU_CHECK_OUT:-experiments/results/gpu_$(date -u +%Y%m%d_%H%M)}
if [ "$SMOKE" = "1" ]; then
  BUDGET=smoke; TASKS=${GPU_CHECK_TASKS:-"CartpoleBalance"}; T_TRAIN=420; T_BENCH=0
else
  BUDGET=gpu-short; TASKS=${GPU_CHECK_TASKS:-"CartpoleBalance CheetahRun"}; T_TRAIN=150; T_BENCH=140
fi
SEEDS=${GPU_CHECK_SEEDS:-1}
STEPS=${GPU_CHECK_STEPS:-}
mkdir -p "$OUT"
echo "gpu_check: budget=$BUDGET tasks=[$TASKS] seeds=$SEEDS out=$OUT"
START=$(date +%s)

# 1. The machine.
{
  date -u
  echo "command: GPU_CHECK_SMOKE=$SMOKE bash experiments/gpu_check.sh"
  uname -a
  timeout 20 nvidia-smi || echo "nvidia-smi not available"
  timeout 20 nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv \
    || true
} > "$OUT/nvidia-smi.txt" 2>&1
timeout 60 python -c "import jax, os, platform; print(platform.platform()); \
print('os.cpu_count():', os.cpu_count()); print('jax', jax.__version__, jax.devices())" \
  > "$OUT/environment.txt" 2>&1

# The GPU image must have this project's dependencies (brax, mujoco, mujoco-mjx, playground,
# tyro, and jax with CUDA); fail at once, not after the timeouts, if they are missing.
if ! timeout 120 python -c "import brax, mujoco, mujoco_playground, tyro, fpo_jax.envs" \
    > "$OUT/imports.log" 2>&1; then
  echo "gpu_check: missing dependencies, see $OUT/imports.log"; cat "$OUT/imports.log"; exit 2
fi

# 2. FPO at the paper's settings, one task per process so that each gets its own timeout.
STEPS_FLAG=()
if [ -n "$STEPS" ]; then STEPS_FLAG=(--steps "$STEPS"); fi
for task in $TASKS; do
  echo "training FPO on $task (timeout ${T_TRAIN}s)"
  timeout "$T_TRAIN" python experiments/dm_control_table.py --budget "$BUDGET" --algos fpo \
    --tasks "$task" --seeds "$SEEDS" "${STEPS_FLAG[@]}" --out-dir "$OUT" --tag gpu \
    --run-root "$OUT/runs" --append > "$OUT/train_$task.log" 2>&1
  echo "  exit status $? (124 = stopped by timeout; the streamed metrics are summarised)"
done
# shellcheck disable=SC2086
timeout 60 python experiments/dm_control_table.py --budget "$BUDGET" --algos fpo --tasks $TASKS \
  --seeds "$SEEDS" "${STEPS_FLAG[@]}" --out-dir "$OUT" --tag gpu --run-root "$OUT/runs" \
  --summarize-only > "$OUT/summary.log" 2>&1
echo "  summary exit status $?"

# 3. Throughput benchmark (its defaults, on CartpoleBalance).
if [ "$T_BENCH" -gt 0 ]; then
  echo "throughput benchmark (timeout ${T_BENCH}s)"
  timeout "$T_BENCH" python experiments/bench_throughput.py --env CartpoleBalance \
    --out "$OUT/throughput_CartpoleBalance_gpu.md" > "$OUT/bench.log" 2>&1
  echo "  exit status $?"
fi

echo "gpu_check finished in $(($(date +%s) - START)) s; results in $OUT"
ls -la "$OUT"
