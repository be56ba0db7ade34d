#!/usr/bin/env bash
# Real-GPU check for the UNet step's fixed cost (issue 18; run through the session's device tool,
# not CI). `ssv2a bench unet --profile` (device counters, CPU recording / submit / wait time, GPU
# timestamps per dispatch) at batch 2 with 32 frames (16× less arithmetic than batch 6 × 256),
# batch 2 and batch 6 (10-s latent): this branch as it runs by default (split-K on), with split-K
# off (`--split-k-target 0`), and with split-K off and a compute pass per dispatch
# (`--split-passes`, the parent commit's layout); then the kernel and AudioLDM suites on the
# GPU (split-K runs there: its grids are small).
# Expects, in $D (default .perf-dev, an ignored folder of the checkout the device tool sends):
# ssv2a (stripped release binary), ops and models_audioldm (stripped test binaries, built with
# `cargo test --no-run`), gl/*.deb (the Vulkan loader, see the device README), this script.
set -uo pipefail
D=${D:-.perf-dev}
for f in "$D"/gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
export XDG_RUNTIME_DIR=/tmp/xdg; mkdir -p -m700 /tmp/xdg
# Test binaries look for fixtures under the path they were built in.
mkdir -p /work && ln -sfn "$PWD" /work/wt-perf
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
{
  date -u; nvidia-smi -L; nproc
  for bf in "2 32" "2 256" "6 256"; do
    set -- $bf
    echo "== batch $1, $2 frames: split-K (default)"; timeout 40 "$D"/ssv2a bench unet --batch "$1" --frames "$2" --reps 5 --profile
    echo "== batch $1, $2 frames: no split-K"; timeout 40 "$D"/ssv2a bench unet --batch "$1" --frames "$2" --reps 5 --split-k-target 0
    echo "== batch $1, $2 frames: no split-K, a pass per dispatch"; timeout 40 "$D"/ssv2a bench unet --batch "$1" --frames "$2" --reps 5 --split-k-target 0 --split-passes
  done
  echo "== ops"; REQUIRE_GPU=1 timeout 60 "$D"/ops --test-threads 8 2>&1 | grep -E "FAILED|panicked|test result"
  echo "== models_audioldm"; REQUIRE_GPU=1 timeout 60 "$D"/models_audioldm --skip cli_stage --nocapture 2>&1 | grep -E "FAILED|panicked|test result|split-K"
} 2>&1 | tee "$OUT/perf.log"
