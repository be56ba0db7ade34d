#!/usr/bin/env bash
# Real-GPU check (run through the session's device tool, not CI): timings first (kernel benchmarks,
# UNet step batch 2/6, one full-size UNet step through Vulkan next to PyTorch CUDA on the same
# machine, with f32/f16 parity against CUDA), then the kernel and model suites on the machine's
# Vulkan adapter. Expects prebuilt, stripped release binaries in .devbin/ (ops, models,
# models_audioldm, ssv2a; built here with `cargo test --release --no-run` and `cargo build
# --release`), audioldm 0.1.1's UNet sources in .devbin/audioldm_src, and the Vulkan loader .debs
# in .gl/ (see the device README).
source "$(dirname "$0")/device_env.sh"
{
  nvidia-smi -L; nproc
  echo "== info"; .devbin/ssv2a info
  echo "== bench kernels"; timeout 120 .devbin/ssv2a bench kernels --reps 5
  echo "== bench unet b2 / b6"; timeout 60 .devbin/ssv2a bench unet --batch 2 --reps 5; timeout 60 .devbin/ssv2a bench unet --batch 6 --reps 3
  echo "== unet: PyTorch CUDA vs ssv2a Vulkan, with f32/f16 parity"
  PYTHONUNBUFFERED=1 timeout 150 python3 tests/reference/bench_unet.py --bin .devbin/ssv2a --device cuda --audioldm-src .devbin/audioldm_src --parity /tmp/unet-parity
  echo "== ops"; REQUIRE_GPU=1 timeout 60 .devbin/ops --test-threads 8 2>&1 | grep -E "FAILED|panicked|test result"
  echo "== models"; REQUIRE_GPU=1 timeout 40 .devbin/models 2>&1 | grep -E "FAILED|panicked|test result"
  echo "== models_audioldm"; REQUIRE_GPU=1 timeout 60 .devbin/models_audioldm 2>&1 | grep -E "FAILED|panicked|test result"
} 2>&1 | tee "$OUT/device.log"
