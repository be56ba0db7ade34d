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

# /dev/null must be the null device. On a machine where it is a regular file (seen here: the
# environment recreated it as one), whatever a build-script probe writes to "null" piles up in
# it, and cargo's target probe (`rustc -` with stdin from /dev/null) then compiles that text and
# fails ("failed to run `rustc` to learn about target-specific information"). Recreate it.
if [ ! -c /dev/null ]; then
  echo "setup: /dev/null is not a character device; recreating it"
  if ! { $SUDO mknod -m 666 /dev/.null.ssv2a c 1 3 && $SUDO mv -f /dev/.null.ssv2a /dev/null; }; then
    echo "setup: cannot recreate /dev/null (needs root and CAP_MKNOD); emptying it instead" >&2
    : > /dev/null || true
  fi
fi

missing=()
for pkg in mesa-vulkan-drivers chromium chromium-driver; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

for comp in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$comp"; then
    echo "setup: adding the $comp component"
    rustup component add "$comp"
  fi
done

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
