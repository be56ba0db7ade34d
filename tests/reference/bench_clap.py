"""Issue 15 benchmark: CLAP's towers, PyTorch CPU next to `ssv2a bench clap` in one run (random
weights, released sizes).

  PyTorch (this process, all cores): audioldm 0.1.1's CLAP (make_clap.build_clap at roberta-base
  size, its own HTSAT-tiny audio branch; make_clap_audio.randomize_branch): `encode_text` on one
  sequence of 512 tokens (256 real, as `ssv2a bench clap` makes), and
  `audio_projection(encode_audio(...)["embedding"])` on 10 s clips at 48 kHz, batch 1 and 3
  (front end included).
  ssv2a: `ssv2a bench clap` (the same shapes, f16 weights by default).

The load average is printed next to every number (a shared machine).

Run: /work/venv/bin/python tests/reference/bench_clap.py --bin /path/to/release/ssv2a
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402,F401  (sets up audioldm imports)

import torch  # noqa: E402

torch.set_num_threads(os.cpu_count() or 1)

import make_clap as MC  # noqa: E402
import make_clap_audio as MA  # noqa: E402


def load():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def timed(fn, reps):
    with torch.no_grad():
        fn()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[0], ts[len(ts) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.environ.get("SSV2A_BIN", "ssv2a"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dtype", default="f16")
    a = ap.parse_args()
    gen = torch.Generator().manual_seed(15)
    sizes = dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1)
    model = MC.build_clap(sizes, 512, gen)
    MA.randomize_branch(model.audio_branch, gen)
    torch_rows = {}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; load {load()}")
    ids = torch.ones(1, 512, dtype=torch.long)
    mask = torch.zeros(1, 512, dtype=torch.long)
    ids[0, 0], ids[0, 255] = 0, 2
    ids[0, 1:255] = torch.randint(3, 50000, (254,), generator=gen)
    mask[0, :256] = 1
    data = {"input_ids": ids, "attention_mask": mask}
    best, med = timed(lambda: model.encode_text(data, device="cpu"), a.reps)
    torch_rows["text"] = best
    print(f"pytorch clap-text batch 1, 512 tokens: best {best:.3f} s, median {med:.3f} s; load {load()}")
    for b in (1, 3):
        wave = torch.randn(b, 480000, generator=gen) * 0.1
        d = {"waveform": wave, "longer": torch.zeros(b, 1, dtype=torch.bool)}
        best, med = timed(lambda d=d: model.audio_projection(model.encode_audio(d, device="cpu")["embedding"]), a.reps)
        torch_rows[f"audio{b}"] = best
        print(f"pytorch clap-audio batch {b}, 10 s clips: best {best:.3f} s, median {med:.3f} s; load {load()}")
    del model
    p = subprocess.run([a.bin, "bench", "clap", "--reps", str(a.reps), "--dtype", a.dtype], capture_output=True, text=True)
    print(p.stdout, end="")
    if p.returncode != 0:
        raise SystemExit(f"ssv2a bench clap failed:\n{p.stderr}")
    ours = {}
    for line in p.stdout.splitlines():
        m = re.match(r"clap-text .*best ([0-9.]+) s", line)
        if m:
            ours["text"] = float(m.group(1))
        m = re.match(r"clap-audio .*batch (\d+),.*best ([0-9.]+) s", line)
        if m:
            ours[f"audio{m.group(1)}"] = float(m.group(2))
    print("\n== ssv2a / PyTorch CPU (best times) ==")
    for k, t in torch_rows.items():
        if k in ours:
            print(f"  {k:8}: ssv2a {ours[k]:.3f} s, PyTorch {t:.3f} s, ratio {ours[k] / t:.2f}x")


if __name__ == "__main__":
    main()
