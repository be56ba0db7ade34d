#!/usr/bin/env bash
# Soak (issue 16; not part of CI): SOAK_N (default 100) back-to-back generations with the models
# kept loaded, then SOAK_N more that load every pack from its file and release it, in one
# process; prints RSS and GPU memory at the start, middle and end of each phase and fails on
# growth beyond noise. Lavapipe takes a few seconds per run.
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/xdg-$(id -u)}"
mkdir -p -m700 "$XDG_RUNTIME_DIR"
REQUIRE_GPU=1 SOAK_N="${SOAK_N:-100}" cargo test --release --test soak -- --ignored --nocapture
