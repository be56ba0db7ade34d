#!/usr/bin/env bash
# Installs what a fresh Debian/Ubuntu machine lacks to build ssv2a and run its tests:
#   - mesa-vulkan-drivers (lavapipe: Vulkan on the CPU, for GPU tests without a GPU card),
#   - chromium + chromium-driver (headless WebGPU for the browser suite),
#   - the wasm32-unknown-unknown Rust target,
#   - wasm-bindgen-cli at exactly the version of the `wasm-bindgen` crate in Cargo.toml.
# Idempotent: skips what is already there. Needs root (or sudo) for apt.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

missing=()
for pkg in mesa-vulkan-drivers chromium chromium-driver; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  echo "setup: adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

want=$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)".*/\1/p' Cargo.toml)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  echo "setup: installing wasm-bindgen-cli $want (found: ${have:-none})"
  cargo install -q wasm-bindgen-cli --version "$want"
fi
