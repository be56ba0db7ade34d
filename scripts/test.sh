#!/usr/bin/env bash
# The test command: installs what is missing (scripts/setup.sh), then runs
#   1. the native suite (unit tests, every kernel vs its CPU reference on the Vulkan adapter —
#      lavapipe when there is no GPU card — model goldens, CLI tests), with REQUIRE_GPU=1 so a
#      missing driver fails instead of skipping;
#   2. the browser suite: the same kernel cases compiled to wasm32 and run in headless
#      Chromium's WebGPU through wasm-bindgen-test-runner;
#   3. a release build of the wasm library.
# Before them: `cargo fmt --check` and `cargo clippy -D warnings` natively and for wasm32.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/xdg-$(id -u)}"
mkdir -p -m700 "$XDG_RUNTIME_DIR"
export REQUIRE_GPU=1

echo "== fmt and clippy"
cargo fmt --check
cargo clippy --all-targets -- -D warnings
# Where /dev/null could not be made a device again (see setup.sh), empty it before the wasm32 probe.
if [ ! -c /dev/null ]; then : > /dev/null || true; fi
cargo clippy --target wasm32-unknown-unknown --no-default-features --lib --test web -- -D warnings

echo "== native suite"
cargo test --all-targets

echo "== browser suite (headless Chromium WebGPU)"
# Where /dev/null could not be made a device again (see setup.sh), empty what the native build
# wrote into it before cargo probes the wasm32 target with it.
if [ ! -c /dev/null ]; then : > /dev/null || true; fi
WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-600}" CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}" \
  cargo test --target wasm32-unknown-unknown --no-default-features --test web

echo "== wasm release build"
cargo build --lib --release --target wasm32-unknown-unknown --no-default-features
echo "all tests passed"
