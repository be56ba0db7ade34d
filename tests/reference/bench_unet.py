"""Full-size AudioLDM UNet step: PyTorch (audioldm 0.1.1 `UNetModel`) next to `ssv2a bench unet`.

Not part of CI. Builds the audioldm-s-full-v2 UNet with seeded random weights (`_common.randomize`,
so the zero-initialised output layers are not zero), times one step (batch 2 by default, 10 s
latent [2, 8, 256, 16]) in PyTorch after a warm-up, counts its FLOPs, then runs `ssv2a bench unet`
with the same shape and prints both times and their ratio, with the load average before and after
(the project machine is shared: report it with the numbers). With `--parity DIR` it also saves the
UNet as a Lightning-style checkpoint (`model.diffusion_model.*`), converts it with `ssv2a convert`
(f32 and f16 packs), runs `ssv2a stage unet` on the same inputs and compares ε with PyTorch's.

    python tests/reference/bench_unet.py --bin target/release/ssv2a            # CPU vs lavapipe
    python tests/reference/bench_unet.py --bin ... --device cuda               # CUDA vs Vulkan
    python tests/reference/bench_unet.py --bin ... --parity /tmp/unet-parity  # + full-size parity
    python tests/reference/bench_unet.py --bin ... --device cuda --no-tf32 --parity DIR   # fp32 CUDA reference
    python tests/reference/bench_unet.py --audioldm-src DIR ...                # audioldm not installed:
        # DIR holds latent_diffusion/{openaimodel,attention,util}.py of audioldm 0.1.1
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import statistics
import subprocess
import sys
import time
import types

from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402  (randomize; pins torch to 1 thread, undone in main)

import torch  # noqa: E402


def import_unet(src: str | None):
    """audioldm's UNetModel without running audioldm/__init__.py (it imports torchaudio)."""
    if src is None:
        spec = importlib.util.find_spec("audioldm")
        if spec is None:
            raise SystemExit("audioldm==0.1.1 is not installed: pass --audioldm-src")
        path = list(spec.submodule_search_locations)
    else:
        path = [src]
    pkg = types.ModuleType("audioldm")
    pkg.__path__ = path
    sys.modules["audioldm"] = pkg
    try:
        import audioldm.utils  # noqa: F401
    except Exception:
        utils = types.ModuleType("audioldm.utils")
        utils.instantiate_from_config = None  # only used by HybridConditioner
        sys.modules["audioldm.utils"] = utils
    from audioldm.latent_diffusion.openaimodel import UNetModel
    return UNetModel


S_FULL_V2 = dict(image_size=64, extra_film_condition_dim=512, extra_film_use_concat=True, in_channels=8,
                 out_channels=8, model_channels=128, attention_resolutions=[8, 4, 2], num_res_blocks=2,
                 channel_mult=[1, 2, 3, 5], num_head_channels=32, use_spatial_transformer=True, transformer_depth=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("SSV2A_BIN", "target/release/ssv2a"))
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--frames", type=int, default=256)
    ap.add_argument("--dtype", default="f16", help="ssv2a weight storage (f16 or f32)")
    ap.add_argument("--device", default="cpu", help="PyTorch device (cpu or cuda)")
    ap.add_argument("--repeat", type=int, default=3, help="timed PyTorch steps (median)")
    ap.add_argument("--reps", type=int, default=2, help="timed ssv2a steps")
    ap.add_argument("--rounds", type=int, default=2, help="alternating PyTorch / ssv2a rounds")
    ap.add_argument("--audioldm-src")
    ap.add_argument("--no-ssv2a", action="store_true")
    ap.add_argument("--parity", metavar="DIR", help="also convert + `ssv2a stage unet` and compare ε (f32, f16)")
    ap.add_argument("--no-tf32", action="store_true",
                    help="CUDA: keep PyTorch's convolutions and matmuls in full fp32 (cuDNN uses TF32 by default, "
                         "which limits an fp32 reference to ~1e-3)")
    a = ap.parse_args()
    if a.no_tf32:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    UNetModel = import_unet(a.audioldm_src)
    unet = UNetModel(**S_FULL_V2).eval()
    with torch.no_grad():
        C.randomize(unet, torch.Generator().manual_seed(31337))
    unet = unet.to(a.device)
    params = sum(p.numel() for p in unet.parameters())
    x = torch.randn(a.batch, 8, a.frames, 16, device=a.device)
    t = torch.tensor([996, 501] * (a.batch // 2) + [996] * (a.batch % 2), device=a.device)
    y = torch.nn.functional.normalize(torch.randn(a.batch, 512, device=a.device), dim=-1)

    def step():
        with torch.no_grad():
            out = unet(x, t, y=y)
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()
        return out

    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as fc:
        step()
    gflop = fc.get_total_flops() / 1e9
    name = torch.cuda.get_device_name() if a.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    if a.parity:
        parity(a, unet, x, t, y)
    # Rounds alternate PyTorch and ssv2a so that both see the same (shared machine's) load.
    ratios = []
    for r in range(a.rounds):
        load0 = os.getloadavg()
        times = []
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        t_torch = statistics.median(times)
        print(f"round {r}: PyTorch {torch.__version__} ({name}): UNet step batch {a.batch} [{a.batch}, 8, {a.frames}, 16], "
              f"{params:,} params, {gflop:.0f} GFLOP: median {t_torch:.3f} s of {a.repeat} "
              f"(min {min(times):.3f}), {gflop / t_torch:.0f} GFLOP/s")
        if a.no_ssv2a:
            continue
        cmd = [a.bin, "bench", "unet", "--batch", str(a.batch), "--frames", str(a.frames), "--dtype", a.dtype,
               "--reps", str(a.reps)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        sys.stdout.write(res.stdout)
        if res.returncode != 0:
            sys.stdout.write(res.stderr)
            raise SystemExit(f"{' '.join(cmd)} failed")
        best = float(re.search(r"best ([0-9.]+) s", res.stdout).group(1))
        median = float(re.search(r"median ([0-9.]+) s", res.stdout).group(1))
        load1 = os.getloadavg()
        ratios.append(median / t_torch)
        print(f"round {r}: ssv2a / PyTorch step time {median / t_torch:.2f}x (median), {best / t_torch:.2f}x (best); "
              f"ssv2a {gflop / best:.1f} GFLOP/s; load average before {load0[0]:.2f}, after {load1[0]:.2f} "
              f"({os.cpu_count()} CPUs)")
    if ratios:
        print(f"ssv2a / PyTorch over {len(ratios)} rounds: {', '.join(f'{q:.2f}x' for q in ratios)}")


def parity(a, unet, x, t, y):
    from safetensors.torch import load_file, save_file
    work = Path(a.parity)
    work.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        eps = unet(x, t, y=y).float().cpu()
    ckpt = work / "unet-random.ckpt"
    sd = {f"model.diffusion_model.{k}": v.detach().cpu().contiguous() for k, v in unet.state_dict().items()}
    torch.save({"state_dict": sd}, str(ckpt))
    fin = work / "in.safetensors"
    save_file({"x": x.cpu().contiguous(), "t": t.float().cpu().contiguous(), "film": y.cpu().contiguous()}, str(fin))
    for dtype in ("f32", "f16"):
        pack = work / f"unet-{dtype}.safetensors"
        subprocess.run([a.bin, "convert", "--kind", "audioldm", "--input", str(ckpt), "--output", str(pack),
                        "--dtype", dtype], check=True, capture_output=True)
        fout = work / f"out-{dtype}.safetensors"
        t0 = time.perf_counter()
        subprocess.run([a.bin, "stage", "unet", "--weights", str(pack), "--input", str(fin), "--output", str(fout)],
                       check=True, capture_output=True)
        wall = time.perf_counter() - t0
        out = load_file(str(fout))["eps"]
        err = (out - eps).abs()
        rel = (err.max() / eps.abs().max()).item()
        snr = (10 * torch.log10(eps.pow(2).sum() / (out - eps).pow(2).sum())).item()
        print(f"parity ({dtype} pack): max abs err {err.max().item():.3e}, max err / max |ref| {rel:.2e}, "
              f"SNR {snr:.1f} dB, |ref| max {eps.abs().max().item():.2f}; `ssv2a stage unet` wall {wall:.1f} s")


if __name__ == "__main__":
    main()
