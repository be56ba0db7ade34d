#!/usr/bin/env bash
# Third real-GPU check (2026-11-26): Cycle Mix 65×64×64 with the ziggurat normals (drawn in
# independently seeded blocks on all cores) next to the Box–Muller baseline and collapsed
# sampling (same process), the SSV2A goldens (incl. the pinned normal stream) on the GPU's
# Vulkan, and the full-size demo with the official preset.
# Same prerequisites as device_check.sh (.devbin/ssv2a and .devbin/models_ssv2a rebuilt).
source scripts/device_env.sh
{
  nvidia-smi -L; nproc; lscpu | grep -E "Model name|MHz" | head -2
  echo "== models_ssv2a"; REQUIRE_GPU=1 timeout 60 .devbin/models_ssv2a 2>&1 | grep -E "FAILED|panicked|test result|left|right"
  echo "== bench ssv2a (Cycle Mix: ziggurat, Box-Muller baseline, collapsed)"
  timeout 150 .devbin/ssv2a bench ssv2a --clip-batches 1 --box-muller --collapsed --reps 3
  echo "== demo full size, official preset"; timeout 150 .devbin/ssv2a demo --full-size --preset official -o /tmp/demo.wav
} 2>&1 | tee "$OUT/device3.log"
