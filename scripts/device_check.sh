#!/usr/bin/env bash
# Real-GPU check (run through the session's device tool, not CI), timings first:
#   - the adapter; the UNet step at batch 2 and 6 through Vulkan next to PyTorch CUDA (its
#     defaults, TF32) on the same machine, with the step's profile (dispatches, GPU time per
#     kernel family);
#   - end to end at the released sizes on random weights: the fast preset and the official
#     settings (200 DDIM steps × 3 candidates), warm, with per-stage timings;
#   - the kernel, model (CLAP text tower included) and pipeline suites on the machine's Vulkan
#     adapter.
# Expects, in .devbin/ (ignored; built here): ssv2a (release, stripped), the test binaries ops,
# models, models_clap, models_audioldm, pipeline (`cargo test --no-run`, stripped; `name.xz` is
# decompressed first), audioldm
# 0.1.1's latent_diffusion/{openaimodel,attention,util}.py in .devbin/audioldm_src, and the
# Vulkan loader .debs in .gl/ (see the device README). Writes $OUT/device.log.
source "$(dirname "$0")/device_env.sh"
B=.devbin
# Binaries may travel xz-compressed (the device tool carries at most 64 MiB).
python3 -c 'import lzma, pathlib, sys
for p in pathlib.Path(sys.argv[1]).glob("*.xz"):
    q = p.with_suffix(""); q.write_bytes(lzma.decompress(p.read_bytes())); q.chmod(0o755)' $B
{
  date -u; nvidia-smi -L; nproc
  echo "== info"; $B/ssv2a info | head -3
  for b in 2 6; do
    echo "== unet batch $b: PyTorch CUDA (TF32 default) vs ssv2a Vulkan"
    PYTHONUNBUFFERED=1 timeout 90 python3 tests/reference/bench_unet.py --bin $B/ssv2a --device cuda --batch $b --audioldm-src $B/audioldm_src
  done
  echo "== unet batch 6 profile"; timeout 40 $B/ssv2a bench unet --batch 6 --reps 3 --profile | sed -n '/profile of/,$p' | head -12
  echo "== demo full size, fast preset (second run warm)"
  timeout 60 $B/ssv2a demo --full-size --quiet -o /tmp/fast.wav >/dev/null 2>&1
  timeout 60 $B/ssv2a demo --full-size --quiet -o /tmp/fast.wav 2>&1 | sed -n '/timings:/,$p'
  echo "== demo full size, official preset"
  timeout 120 $B/ssv2a demo --full-size --preset official --quiet -o /tmp/official.wav 2>&1 | sed -n '/timings:/,$p'
  for t in ops models models_clap models_audioldm pipeline; do
    echo "== $t"; REQUIRE_GPU=1 timeout 90 $B/$t --test-threads 4 --skip cli_stage 2>&1 | grep -E "FAILED|panicked|test result"
  done
} 2>&1 | tee "$OUT/device.log"
