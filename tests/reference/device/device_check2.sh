#!/usr/bin/env bash
# Second real-GPU check (2026-11-26): the full-size UNet step's fp32 parity against PyTorch CUDA
# with TF32 off (cuDNN's default TF32 limited the first check's fp32 reference to ~1e-3), PyTorch
# fp32 step times without TF32, and the CLIP / Cycle Mix / YOLO benchmarks and a full-size demo
# on the GPU through Vulkan. Same prerequisites as device_check.sh.
source scripts/device_env.sh
{
  nvidia-smi -L
  echo "== unet: PyTorch CUDA (TF32 off) vs ssv2a Vulkan, f32/f16 parity"
  PYTHONUNBUFFERED=1 timeout 150 python3 tests/reference/bench_unet.py --bin .devbin/ssv2a --device cuda --no-tf32 --audioldm-src .devbin/audioldm_src --parity /tmp/unet-parity --rounds 1 --repeat 5
  echo "== bench ssv2a (CLIP ViT-L/14 b1/b17, Cycle Mix 65x64x64)"; timeout 120 .devbin/ssv2a bench ssv2a
  echo "== bench yolo"; timeout 90 .devbin/ssv2a bench yolo --reps 3
  echo "== demo full size, fast preset"; timeout 150 .devbin/ssv2a demo --full-size -o /tmp/demo.wav
} 2>&1 | tee "$OUT/device2.log"
