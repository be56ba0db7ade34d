#!/usr/bin/env bash
# Builds the browser package into web/pkg (wasm32 release + wasm-bindgen --target web), then
# serve web/ over http://127.0.0.1 (a secure context, so navigator.gpu exists), e.g.
#   python3 -m http.server 8123 --bind 127.0.0.1 --directory web
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --lib --release --target wasm32-unknown-unknown --no-default-features
wasm-bindgen --target web --out-dir web/pkg target/wasm32-unknown-unknown/release/ssv2a.wasm
ls -la web/pkg
