"""Issue 5 benchmark: PyTorch CPU next to `ssv2a bench ssv2a` in one run (random weights, real sizes).

  PyTorch (this process, all cores): OpenAI CLIP ViT-L/14 `encode_image` at batch 1 and 17, and the
  official Cycle Mix (the re-built `Pipeline.cycle_mix`: S remixer passes per round, N-sample averages)
  at its/samples/var_samples 64/64/64 for --torch-rounds rounds, scaled to 65 rounds (labelled).
  ssv2a: `ssv2a bench ssv2a` (CLIP batch 1 and 17, Cycle Mix 65 × 64 × 64 with one shared remixer pass
  per round, and optionally the literal shuffled version).

Load matters on a shared machine: the load average is printed next to every number, and ssv2a also
prints its process CPU time (lavapipe runs inside the process).

Run: /root/.venvs/ref/bin/python tests/reference/bench_ssv2a.py --bin /path/to/release/ssv2a
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(os.cpu_count() or 1)


def load():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def timed(fn, reps):
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def torch_clip(batches, reps):
    C.pkg_resources_shim()
    from clip.model import CLIP
    model = CLIP(embed_dim=768, image_resolution=224, vision_layers=24, vision_width=1024, vision_patch_size=14,
                 context_length=77, vocab_size=49408, transformer_width=768, transformer_heads=12,
                 transformer_layers=12).eval()
    for b in batches:
        x = torch.randn(b, 3, 224, 224)
        with torch.no_grad():
            t = timed(lambda: model.encode_image(x), reps)
        print(f"PyTorch CPU  clip ViT-L/14 batch {b:>2}: best {t:.3f} s ({t / b:.3f} s/image); load {load()}", flush=True)


def torch_cycle_mix(rounds):
    import ssv2a_modules as S
    from check_ssv2a_official import REAL
    cfg = copy.deepcopy(REAL)
    pipe = S.Pipeline(copy.deepcopy(cfg)).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        C.randomize(pipe, gen)
    slot, n, s = 64, 64, 64
    clips = torch.zeros(1, slot, 768)
    clips[0, :17] = F.normalize(torch.randn(17, 768, generator=gen), dim=-1)
    its = rounds - 1
    noise = {"fold_clips": torch.randn(n, 1, slot, 768, generator=gen),
             "gen": torch.randn(its + 1, n, 1, slot, 512, generator=gen),
             "fold_claps": torch.randn(its + 1, n, 1, 768, generator=gen),
             "remix": torch.randn(its + 1, s, n, 1, 512, generator=gen), "perm": None}
    t0 = time.perf_counter()
    pipe.cycle_mix(clips, noise, its=its, samples=s)
    t = time.perf_counter() - t0
    print(f"PyTorch CPU  cycle mix (official: {s} remixer passes per round) {rounds} rounds: {t:.2f} s "
          f"-> {t / rounds * 65:.1f} s for 65 rounds (scaled); load {load()}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("SSV2A_BIN", str(C.REPO / "target" / "release" / "ssv2a")))
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--torch-rounds", type=int, default=8, help="rounds of the PyTorch Cycle Mix actually run")
    ap.add_argument("--ssv2a-args", default="--collapsed --shuffled-its 7", help="extra `ssv2a bench ssv2a` arguments")
    a = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores; torch {torch.__version__} with {torch.get_num_threads()} threads; "
          f"load at start {load()}", flush=True)
    torch_clip([1, 17], a.reps)
    torch_cycle_mix(a.torch_rounds)
    cmd = [a.bin, "bench", "ssv2a", "--reps", str(a.reps)] + a.ssv2a_args.split()
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
