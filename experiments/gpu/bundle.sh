#!/usr/bin/env bash
# Download the wheels that the accelerator image lacks into .whl/ (ignored by git), for CPython
# 3.12 on manylinux x86_64, to be carried to the GPU machine with the working tree.
#
#   bash experiments/gpu/bundle.sh          # needs PyPI (pip as configured); run from anywhere
#
# The GPU machine cannot reach any registry; it installs these with
#   python3 -m pip install --no-index --no-deps --target DIR .whl/*.whl && export PYTHONPATH=DIR
# (experiments/gpu_check.sh does that). Its image already has Python 3.12, jax / jaxlib 0.11.2 with
# the CUDA 13 plugin, flax, optax, chex, orbax-checkpoint, numpy, scipy, matplotlib, tqdm, absl-py,
# etils, pillow, pyyaml, rich, tensorboard, lxml, typing-extensions, packaging, protobuf, pytest.
#
# What is carried, and why (checked by experiments/gpu/rehearse.sh on jax 0.11.2):
#   brax, mujoco (pure-Python front end), mujoco-core (the compiled library), mujoco-mjx,
#   playground, tyro + docstring-parser + typeguard (our CLI), ml-collections (Playground's
#   configs), trimesh (imported by mujoco.mjx), jaxopt (imported by brax.generalized at
#   `import brax.envs`).
# What is NOT carried, although the packages' metadata asks for it (installs use --no-deps):
#   mujoco-studio (12.8 MB; mujoco's interactive viewer), glfw, PyOpenGL, websockets, mediapy,
#   ipython, flask, flask-cors, tensorboardX: none is imported when fpo_jax trains or benchmarks
#   headless (rendering and --tensorboard need some of them);
#   warp-lang: too large; Playground 0.2.0 tries `import warp` and, if that fails, prints
#   "Failed to import warp: No module named 'warp'" (and the same for mujoco_warp) and carries on.
#   Only impl="warp" needs it, and fpo_jax always loads Playground envs with impl="jax".
#
# Environment: BUNDLE_DIR (default .whl), BUNDLE_EXTRA (more name==version specs, e.g.
# "tensorboardX==2.6.5" for --tensorboard), PYTHON (a Python with pip; default python3; any
# version works, --python-version picks the target).
set -euo pipefail
cd "$(dirname "$0")/../.."

DEST=${BUNDLE_DIR:-.whl}
PY=${PYTHON:-python3}
LIMIT=$((64 * 1024 * 1024)) # what may travel with a device call: working tree + carried paths

# Versions that import and train on jax 0.11.2 (and on the CPU set, jax 0.10.2).
WHEELS=(
  brax==0.14.2
  mujoco==4.0.0
  mujoco-core==4.0.0
  mujoco-mjx==3.17.0
  playground==0.2.0
  tyro==1.0.17
  docstring-parser==0.18.0
  typeguard==4.6.1
  ml-collections==1.1.0
  trimesh==5.2.0
  jaxopt==0.8.5
)
# shellcheck disable=SC2206
EXTRA=(${BUNDLE_EXTRA:-})

# pip matches manylinux_2_N tags exactly: list the ones these wheels use (mujoco-core is 2_27/2_28).
PLATFORMS=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 \
  manylinux2014_x86_64 manylinux_2_5_x86_64 manylinux1_x86_64; do
  PLATFORMS+=(--platform "$tag")
done

# Start from an empty folder: two versions of one package stop the whole install there.
TMP=$(mktemp -d "${TMPDIR:-/tmp}/fpo_bundle.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --abi cp312 --abi abi3 --abi none "${PLATFORMS[@]}" \
  -d "$TMP" "${WHEELS[@]}" "${EXTRA[@]}"

count=$(find "$TMP" -maxdepth 1 -type f -name '*.whl' | wc -l)
if [ "$count" -ne $((${#WHEELS[@]} + ${#EXTRA[@]})) ]; then
  echo "bundle: expected $((${#WHEELS[@]} + ${#EXTRA[@]})) wheels, got $count" >&2
  ls "$TMP" >&2
  exit 1
fi
rm -rf "$DEST"
mkdir -p "$DEST"
mv "$TMP"/*.whl "$DEST"/

# Size check: the wheels plus everything else that travels (tracked files and untracked files
# that git does not ignore; a shared/ folder inside the checkout too).
wheel_bytes=$(find "$DEST" -maxdepth 1 -type f -name '*.whl' -printf '%s\n' \
  | awk '{s += $1} END {print s + 0}')
repo_bytes=$({ git ls-files -z --cached --others --exclude-standard \
  | xargs -0 -r stat -c '%s' 2>/dev/null || true; } | awk '{s += $1} END {print s + 0}')
if [ -d shared ] && ! git ls-files --error-unmatch shared >/dev/null 2>&1; then
  repo_bytes=$((repo_bytes + $(du -sb shared | cut -f1)))
fi
total=$((wheel_bytes + repo_bytes))
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }

echo "bundle: $count wheels in $DEST/"
find "$DEST" -maxdepth 1 -type f -name '*.whl' -printf '%s %f\n' | sort -k2 \
  | awk '{printf "  %8.2f MiB  %s\n", $1 / 1048576, $2}'
echo "bundle: wheels $(mib "$wheel_bytes") + working tree $(mib "$repo_bytes") = $(mib "$total")" \
  "(limit $(mib "$LIMIT"))"
if [ "$total" -gt "$LIMIT" ]; then
  echo "bundle: over the 64 MiB carry limit" >&2
  exit 1
fi
