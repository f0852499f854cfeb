#!/usr/bin/env bash
# Rehearse the GPU check on this CPU machine, in a stand-in for the accelerator image:
#
#   bash experiments/gpu/rehearse.sh        # from a clean clone; needs PyPI for steps 1-2
#
# 1. A Python 3.12 virtual environment in .rehearsal/venv (ignored by git) with jax / jaxlib
#    0.11.2 (the CPU build) and ONLY packages the image has (list below; their own dependencies
#    come along, and the script warns about any that experiments/gpu/image_packages.txt lacks).
# 2. The bundle: experiments/gpu/bundle.sh (wheels into .whl/, size checked against the carry
#    limit); the script fails if a bundled wheel is one the image already has, or if brax,
#    mujoco, playground or tyro can be imported before the bundle is installed.
# 3. The repository installed into the venv with --no-deps (for the unit tests; the check itself
#    imports it from the working tree through PYTHONPATH, as on the GPU machine).
# 4. `GPU_CHECK_SMOKE=1 bash experiments/gpu_check.sh` with that venv's python3, which installs
#    the bundle exactly as on the GPU machine (pip install --no-index --no-deps --target
#    .rehearsal/site .whl/*.whl; PYTHONPATH), into .rehearsal/results/gpu_smoke_<date>/.
#    Before it, `GPU_CHECK_PLAN_ONLY=1 bash experiments/gpu_check.sh` at the GPU sizes: every
#    command line of the real check is parsed and its config validated (no compilation).
# 5. The fast unit tests in the same environment (REHEARSE_TESTS to change the list).
#
# The venv is reused when its package list is unchanged (REHEARSE_FRESH=1 rebuilds it).
# Environment: REHEARSE_PYTHON (a Python 3.12; default pyenv's 3.12.1, then python3.12).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd)
T_START=$(date +%s)
R=$REPO/.rehearsal
VENV=$R/venv

# The image's packages that matter here, at versions that resolve with jax 0.11.2 (the image's
# own versions of the unpinned-there ones are unknown: see environment.txt of a GPU run).
IMAGE_SET=(
  jax==0.11.2 jaxlib==0.11.2 numpy==2.5.2
  flax==0.12.12 optax==0.2.8 chex==0.1.92 orbax-checkpoint==0.12.8
  scipy==1.18.1 matplotlib==3.11.2 tqdm==4.70.1 absl-py==2.5.1 etils==1.15.0 pillow==13.0.0
  pyyaml==6.0.4 rich==15.0.0 tensorboard==2.21.0 lxml==6.1.3 pytest==9.2.0
  typing-extensions==4.16.0
)
TESTS=${REHEARSE_TESTS:-"tests/test_loss.py tests/test_flow.py tests/test_networks.py tests/test_config.py tests/test_envs.py"}

PY312=${REHEARSE_PYTHON:-}
if [ -z "$PY312" ]; then
  for c in /root/.pyenv/versions/3.12.1/bin/python3.12 python3.12; do
    if command -v "$c" >/dev/null 2>&1; then PY312=$(command -v "$c") && break; fi
  done
fi
[ -n "$PY312" ] || { echo "rehearse: no Python 3.12 found (set REHEARSE_PYTHON)" >&2; exit 1; }
mkdir -p "$R"

# 1. The stand-in image.
stamp="$PY312 ${IMAGE_SET[*]}"
if [ "${REHEARSE_FRESH:-0}" = 1 ] || [ ! -x "$VENV/bin/python3" ] \
  || [ "$(cat "$VENV/.stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "rehearse: building $VENV ($("$PY312" --version))"
  rm -rf "$VENV"
  "$PY312" -m venv "$VENV"
  { "$VENV/bin/python3" -m pip install -q --upgrade pip \
    && "$VENV/bin/python3" -m pip install -q "${IMAGE_SET[@]}"; } >"$R/venv_install.log" 2>&1 \
    || { cat "$R/venv_install.log"; exit 1; }
  echo "$stamp" >"$VENV/.stamp"
else
  echo "rehearse: reusing $VENV"
fi
"$VENV/bin/python3" -m pip list --format=freeze 2>/dev/null >"$R/venv_packages.txt"
"$VENV/bin/python3" - "$REPO/experiments/gpu/image_packages.txt" "$R/venv_packages.txt" <<'EOF'
import re, sys
norm = lambda s: re.sub(r"[-_.]+", "-", s).lower()
image = {norm(l.strip()) for l in open(sys.argv[1]) if l.strip() and not l.startswith("#")}
venv = [l.split("==")[0] for l in open(sys.argv[2]) if "==" in l]
extra = sorted(n for n in venv if norm(n) not in image and norm(n) not in {"pip", "fpo-jax"})
if extra:
    print(f"rehearse: warning: in the venv but not in the image's list: {', '.join(extra)}")
EOF

# 2. The bundle.
PYTHON="$VENV/bin/python3" bash experiments/gpu/bundle.sh 2>&1 | grep -v "is ignored: it is neither"
"$VENV/bin/python3" - "$REPO/experiments/gpu/image_packages.txt" "$REPO"/.whl/*.whl <<'EOF'
import os, re, sys
norm = lambda s: re.sub(r"[-_.]+", "-", s).lower()
image = {norm(l.strip()) for l in open(sys.argv[1]) if l.strip() and not l.startswith("#")}
dup = [w for w in sys.argv[2:] if norm(os.path.basename(w).split("-")[0]) in image]
if dup:
    sys.exit(f"rehearse: the bundle carries packages the image already has: {dup}")
EOF
if "$VENV/bin/python3" -c "import brax" 2>/dev/null || "$VENV/bin/python3" -c "import mujoco" \
  2>/dev/null || "$VENV/bin/python3" -c "import mujoco_playground" 2>/dev/null \
  || "$VENV/bin/python3" -c "import tyro" 2>/dev/null; then
  echo "rehearse: the venv already has brax / mujoco / playground / tyro: not a stand-in" >&2
  exit 1
fi

# 3. The repository, without its dependencies.
"$VENV/bin/python3" -m pip install -q --no-deps -e "$REPO" >"$R/install_repo.log" 2>&1 \
  || { cat "$R/install_repo.log"; exit 1; }

# 4. The check, as on the GPU machine: first its plan at the GPU sizes, then the smoke run.
RESULTS=$R/results/gpu_smoke_$(date -u +%Y%m%d_%H%M%S)
export PATH="$VENV/bin:$PATH"
set +e
GPU_CHECK_PLAN_ONLY=1 GPU_CHECK_PYTHON="$VENV/bin/python3" GPU_CHECK_SITE="$R/site" \
  GPU_CHECK_OUT="$RESULTS.plan" GPU_CHECK_XLA_CACHE="$R/xla_cache" GPU_CHECK_EXPORT= \
  bash experiments/gpu_check.sh >"$R/gpu_check_plan.log" 2>&1
plan_rc=$?
grep -v "^Failed to import" "$R/gpu_check_plan.log" | tail -n 9
t0=$(date +%s)
GPU_CHECK_SMOKE=1 GPU_CHECK_PYTHON="$VENV/bin/python3" GPU_CHECK_SITE="$R/site" \
  GPU_CHECK_OUT="$RESULTS" GPU_CHECK_XLA_CACHE="$R/xla_cache" GPU_CHECK_EXPORT= \
  bash experiments/gpu_check.sh 2>&1 | tee "$R/gpu_check_smoke.log"
check_rc=${PIPESTATUS[0]}
check_s=$(($(date +%s) - t0))

# 5. Unit tests on jax 0.11.2 with the bundle.
t0=$(date +%s)
# shellcheck disable=SC2086
PYTHONPATH="$R/site" JAX_COMPILATION_CACHE_DIR="$R/xla_cache/tests" \
  "$VENV/bin/python3" -m pytest -q -p no:cacheprovider $TESTS 2>&1 | tee "$R/pytest.log"
tests_rc=${PIPESTATUS[0]}
tests_s=$(($(date +%s) - t0))
set -e

echo
echo "rehearse: gpu_check plan at the GPU sizes: exit status $plan_rc"
echo "rehearse: gpu_check smoke: exit status $check_rc in ${check_s}s (results: $RESULTS)"
echo "rehearse: unit tests on jax $("$VENV/bin/python3" -c 'import jax; print(jax.__version__)'):" \
  "exit status $tests_rc in ${tests_s}s ($(tail -n 1 "$R/pytest.log"))"
echo "rehearse: total $(($(date +%s) - T_START))s"
if [ "$plan_rc" = 0 ] && [ "$check_rc" = 0 ] && [ "$tests_rc" = 0 ]; then
  echo "rehearse: PASS"
else
  echo "rehearse: FAIL"
  exit 1
fi
