#!/usr/bin/env bash
# Real-GPU check for the UNet step's fixed cost (issue 18; run through the session's device tool,
# not CI): `ssv2a bench unet` at batch 2 and 6 (10-s latent) and at batch 2 with 32 frames (16×
# less arithmetic than batch 6 × 256), each with the parent commit's binary (baseline), this
# branch's with `--profile` (device counters, CPU recording / submit / wait time, GPU timestamps
# per dispatch), and this branch's with `--split-passes --profile` (a compute pass per dispatch,
# the old layout, in the same binary).
# Expects, in $D (default .perf-dev, an ignored folder of the checkout the device tool sends):
# ssv2a-base and ssv2a-new (stripped release binaries built here), gl/*.deb (the Vulkan loader,
# see the device README), this script.
set -uo pipefail
D=${D:-.perf-dev}
for f in "$D"/gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
export XDG_RUNTIME_DIR=/tmp/xdg; mkdir -p -m700 /tmp/xdg
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
{
  date -u; nvidia-smi -L; nproc; lscpu | grep -E "Model name" | head -1
  "$D"/ssv2a-new info
  for bf in "2 32" "2 256" "6 256"; do
    set -- $bf
    echo "== batch $1, $2 frames: parent commit"; timeout 50 "$D"/ssv2a-base bench unet --batch "$1" --frames "$2" --reps 5
    echo "== batch $1, $2 frames: this branch, --profile"; timeout 50 "$D"/ssv2a-new bench unet --batch "$1" --frames "$2" --reps 5 --profile
    echo "== batch $1, $2 frames: this branch, --split-passes --profile"; timeout 50 "$D"/ssv2a-new bench unet --batch "$1" --frames "$2" --reps 5 --profile --split-passes
  done
} 2>&1 | tee "$OUT/perf.log"
