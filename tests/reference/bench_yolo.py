"""YOLOv8x-oiv7 (601 classes) at 640x640: ssv2a on its GPU adapter vs PyTorch CPU, in one script.

    python tests/reference/bench_yolo.py [--bin target/release/ssv2a] [--size 640] [--reps 2]

PyTorch: ultralytics 8.2.90 DetectionModel("yolov8x.yaml", nc=601), random weights, fused (what
AutoBackend runs), float32, all CPU threads; `model(x)` and `model(x, augment=True)` (the three
TTA passes SSV2A runs), one warm-up then the median of --reps runs.
ssv2a: `ssv2a bench yolo --size N --reps R` (random yolov8x-oiv7 weights generated in Rust, fp16
storage; one warm-up run that compiles the pipelines, then R timed runs of each, readback
included). Weights do not change the work done, so the two are comparable.
The load average is printed before and after each part: on a shared machine wall times are only
as good as the load they ran under. Both sides also report process CPU seconds (user + system, all
threads; lavapipe runs on the ssv2a process's threads), which depend much less on the load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402,F401  (pins offline mode)

import torch  # noqa: E402


def load():
    return "load average {:.2f} {:.2f} {:.2f} on {} CPUs".format(*os.getloadavg(), os.cpu_count())


def bench_torch(size, reps):
    import yaml
    import ultralytics
    from ultralytics.nn.tasks import DetectionModel
    torch.set_num_threads(os.cpu_count() or 1)
    root = Path(ultralytics.__file__).parent / "cfg"
    d = yaml.safe_load((root / "models" / "v8" / "yolov8.yaml").read_text())
    d.update({"scale": "x", "nc": 601})
    m = DetectionModel(cfg=d, ch=3, nc=601, verbose=False).eval().fuse(verbose=False).eval()
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    out = {}
    with torch.no_grad():
        for name, fn in (("no TTA", lambda: m(x)), ("TTA", lambda: m(x, augment=True))):
            fn()
            ts, cs = [], []
            for _ in range(reps):
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                ts.append(time.perf_counter() - t0)
                cs.append(time.process_time() - c0)
            out[name] = (min(ts), statistics.median(ts), min(cs))
    return out, torch.get_num_threads()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.environ.get("SSV2A_BIN", str(C.REPO / "target" / "release" / "ssv2a")))
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--skip-ssv2a", action="store_true")
    a = ap.parse_args()
    print(f"torch {torch.__version__}; {load()}")
    if not a.skip_torch:
        t0 = time.perf_counter()
        res, threads = bench_torch(a.size, a.reps)
        for k, (best, med, cpu) in res.items():
            print(f"PyTorch CPU ({threads} threads) yolov8x-oiv7 {a.size}x{a.size} {k}: best {best:.3f} s wall "
                  f"(median {med:.3f} s), {cpu:.2f} s CPU")
        print(f"  ({time.perf_counter() - t0:.0f} s incl. build; {load()})")
    if not a.skip_ssv2a:
        t0 = time.perf_counter()
        p = subprocess.run([a.bin, "bench", "yolo", "--size", str(a.size), "--reps", str(a.reps)], capture_output=True, text=True)
        print(p.stdout.rstrip())
        if p.returncode != 0:
            print(p.stderr)
        print(f"  ({time.perf_counter() - t0:.0f} s incl. start-up; {load()})")


if __name__ == "__main__":
    main()
