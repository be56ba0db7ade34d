"""Golden fixtures for SSV2A's own modules (issue 5), from the re-built modules in ssv2a_modules.py.

  ssv2a_modules     manifold CLIP/CLAP encoders, generator, remixer (Styler + ESALayer) with
                    intermediates, and the variational "average of N samples" with injected ε
  ssv2a_cyclemix    Pipeline.cycle_mix with all noise and slot permutations injected: an I2A case
                    and an MM2A case (fixed_src); weights of ssv2a_modules
  ssv2a_aggregator  temporal Aggregator (base-2048 PE) in eval mode, its sample(), and the
                    official train-mode (dropout on) forward with injected keep-masks
  ckpt/ssv2a_tiny.pth + ckpt/ssv2a_tiny.json   Pipeline.save() layout + its config
  ckpt/agg_tiny.pth                            plain Aggregator state dict

Widths are the real ones divided by 16 (768 -> 48, 512 -> 32, ...), same structure.
Run: /root/.venvs/ref/bin/python tests/reference/make_ssv2a.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import ssv2a_modules as S  # noqa: E402

SCRIPT = "make_ssv2a.py"
VERSION = "v1"
SEED = 5052026
LIBS = ()

# ssv2a.json field names (third-party copy, spec §3.3), widths / 16, slot 64 -> 8.
CONFIG = {
    "audioldm_version": "audioldm-s-full-v2",
    "checkpoints": "",
    "classes": "",
    "fps": 4,
    "sample_rate": 16000,
    "clip_dim": 48,
    "clap_dim": 32,
    "manifold_dim": 48,
    "detector": {"detection_model": "", "segment_model": "", "crop": True, "conf": 0.25, "iou": 0,
                 "max_det": 64, "top_k": 16, "ps_topk": 32, "kneedle": True, "rf_its": 0},
    "manifold": {"variational": True, "arch": "mlp", "layers": [48, 48, 96, 96, 192, 192], "dropout": 0.2,
                 "resnet": True, "kl_weight": 5e-5, "cr_weight": 0.35, "clap_voc": ""},
    "generator": {"disabled": False, "variational": True, "arch": "mlp",
                  "layers": [48, 48, 56, 56, 64, 64, 128, 128], "dropout": 0.2, "resnet": True,
                  "kl_weight": 5e-5},
    "remixer": {"slot": 8, "cfg": 0.2, "guidance": "manifold",
                "styler": {"variational": True, "arch": "transformer", "embed_dim": 48, "num_layers": 1,
                           "nhead": 8, "dropout": 0.2, "kl_weight": 5e-5}},
}
AGG = {"emb_dim": 32, "nhead": 8, "exp_rate": 2, "resolution": 1024, "dropout": 0.2, "num_layers": 1}


def build(gen):
    pipe = S.Pipeline(CONFIG).eval()
    agg = S.Aggregator(**{k: v for k, v in AGG.items() if k != "num_layers"}).eval()
    with torch.no_grad():
        for m in (pipe, agg):
            C.randomize(m, gen)
        pipe.remixer.styler.pred_token.copy_(torch.randn(2, 48, generator=gen))  # official init N(0, 1)
        agg.pred_token.copy_(torch.randn(2, AGG["emb_dim"], generator=gen))
    return pipe, agg


def unit(x):
    return F.normalize(x, dim=-1)


def slots(gen, b, n_src, dim, slot):
    """[B, slot, dim]: slot 0 = 'global' embedding, then n_src[b] sources, then zero padding."""
    x = torch.zeros(b, slot, dim)
    for i in range(b):
        x[i, : 1 + n_src[i]] = unit(torch.randn(1 + n_src[i], dim, generator=gen))
    return x


def recorder(fx, prefix):
    return lambda n, t: fx.intermediate(f"{prefix}.{n}", t)


def make_modules(pipe, gen):
    fx = C.Fixture("ssv2a_modules", SCRIPT, VERSION, SEED,
                   "SSV2A modules re-built from spec ssv2a.md §2-3 (official classes Manifold/"
                   "ManifoldEncoder, Generator, Remixer/Styler, MLP with ResWrapper, ESALayer), eval mode. "
                   "Stages per interfaces.md: manifold-clip / manifold-clap (x -> mu, logvar), generator "
                   "(x -> mu, logvar), remixer (src, clips -> mu, logvar). Zero rows are padding slots "
                   "(they get non-zero codes). variational.*: the 'average of N samples' "
                   "acc += (eps_i*exp(0.5*logvar) + mu)/N with injected eps [N,...]; fold2claps and "
                   "remixer.sample L2-normalise; remixer.sample permutes the slots by in.variational.perm "
                   "first (official: random.sample).",
                   CONFIG, LIBS)
    sd = pipe.checkpoint()
    for part in ("manifold_state", "generator_state", "remixer_state"):
        fx.state(sd[part], prefix=f"{part}.")
    b, slot = 2, CONFIG["remixer"]["slot"]
    with torch.no_grad():
        clips = slots(gen, b, [3, 6], CONFIG["clip_dim"], slot)
        fx.input("manifold_clip.x", clips)
        mu, lv = pipe.manifold.clip_encoder(clips, recorder(fx, "manifold_clip"))
        fx.output("manifold_clip.mu", mu)
        fx.output("manifold_clip.logvar", lv)
        print("  " + C.describe("manifold_clip.mu", mu) + "; " + C.describe("logvar", lv))

        claps = unit(torch.randn(b, 3, CONFIG["clap_dim"], generator=gen))
        claps[1, 2] = 0.0
        fx.input("manifold_clap.x", claps)
        mu, lv = pipe.manifold.clap_encoder(claps, recorder(fx, "manifold_clap"))
        fx.output("manifold_clap.mu", mu)
        fx.output("manifold_clap.logvar", lv)

        folds = torch.randn(b, slot, CONFIG["manifold_dim"], generator=gen)
        fx.input("generator.x", folds)
        mu, lv = pipe.generator(folds, recorder(fx, "generator"))
        fx.output("generator.mu", mu)
        fx.output("generator.logvar", lv)
        print("  " + C.describe("generator.mu", mu) + "; " + C.describe("logvar", lv))

        src = torch.randn(b, slot, CONFIG["manifold_dim"], generator=gen)
        fx.input("remixer.src", src)
        fx.input("remixer.clips", clips)
        mu, lv = pipe.remixer.styler(src, clips, recorder(fx, "remixer"))
        fx.output("remixer.mu", mu)
        fx.output("remixer.logvar", lv)
        print("  " + C.describe("remixer.mu", mu) + "; " + C.describe("logvar", lv))

        n = 4
        eps = torch.randn(n, b, slot, CONFIG["manifold_dim"], generator=gen)
        fx.input("variational.fold_clips.eps", eps)
        fold = pipe.manifold.fold_clips(clips, eps)
        fx.output("variational.fold_clips", fold)
        eps = torch.randn(n, b, 3, CONFIG["manifold_dim"], generator=gen)
        fx.input("variational.fold_claps.eps", eps)
        fx.output("variational.fold_claps", pipe.manifold.fold_claps(claps, eps))
        eps = torch.randn(n, b, slot, CONFIG["clap_dim"], generator=gen)
        fx.input("variational.fold2claps.eps", eps)
        fx.output("variational.fold2claps", pipe.generator.fold2claps(fold, eps))
        eps = torch.randn(n, b, CONFIG["clap_dim"], generator=gen)
        perm = torch.randperm(slot, generator=gen)
        fx.input("variational.remix.eps", eps)
        fx.input("variational.perm", perm)
        fx.output("variational.remix", pipe.remixer.sample(fold, clips, eps, perm=perm))
    fx.write()


def cycle_noise(gen, b, slot, m, c, n, its, s):
    r = its + 1
    return {
        "fold_clips": torch.randn(n, b, slot, m, generator=gen),
        "gen": torch.randn(r, n, b, slot, c, generator=gen),
        "fold_claps": torch.randn(r, n, b, m, generator=gen),
        "remix": torch.randn(r, s, n, b, c, generator=gen),
        "perm": torch.stack([torch.stack([torch.randperm(slot, generator=gen) for _ in range(s)])
                             for _ in range(r)]),
    }


def make_cyclemix(pipe, gen):
    its, samples, n = 2, 4, 4
    b, slot = 2, CONFIG["remixer"]["slot"]
    m, c = CONFIG["manifold_dim"], CONFIG["clap_dim"]
    fx = C.Fixture("ssv2a_cyclemix", SCRIPT, VERSION, SEED,
                   "Pipeline.cycle_mix (spec ssv2a.md §2.6) with all noise injected, in the official "
                   "draw order: fold_clips eps [N,B,slot,M] once; per round i: gen eps [N,B,slot,C] "
                   "(generator.fold2claps), fold_claps eps [N,B,M] (i>0 only; round 0 slice unused), "
                   "then for each candidate j: slot permutation perm[i,j] and remix eps [N,B,C]. "
                   "Selection: argmin over candidates of the unbiased std over all slots of "
                   "cos(candidate, slot CLAP) (slot 0 CLAP zeroed, so its cos is 0), update when "
                   "strictly below the best so far (initial 1.0). i2a.*: slot 0 = global CLIP, sources, "
                   "zero padding. mm2a.*: slot 0 and 'audio' slots have zero CLIP rows and take their "
                   "codes from fixed_src every round. Weights: ssv2a_modules.",
                   {**CONFIG, "cycle_its": its, "cycle_samples": samples, "var_samples": n}, LIBS,
                   extra_meta={"weights_from": "ssv2a_modules"})
    with torch.no_grad():
        clips = slots(gen, b, [2, 5], CONFIG["clip_dim"], slot)
        noise = cycle_noise(gen, b, slot, m, c, n, its, samples)
        fx.input("i2a.clips", clips)
        for k, v in noise.items():
            fx.input(f"i2a.noise.{k}", v)
        out = pipe.cycle_mix(clips, noise, its=its, samples=samples, record=recorder(fx, "i2a"))
        fx.output("i2a.claps", out)
        print("  i2a: best per round", [fx.tensors[f"inter.i2a.round{i}.best"].tolist() for i in range(its + 1)])

        # MM2A: slot 0 empty, slots 1-2 images/texts (clip + fold), slot 3 an audio (fold only)
        clips = torch.zeros(b, slot, CONFIG["clip_dim"])
        clips[:, 1:3] = unit(torch.randn(b, 2, CONFIG["clip_dim"], generator=gen))
        fixed = torch.zeros(b, slot, m)
        fixed[:, 1:4] = torch.randn(b, 3, m, generator=gen)
        noise = cycle_noise(gen, b, slot, m, c, n, its, samples)
        fx.input("mm2a.clips", clips)
        fx.input("mm2a.fixed_src", fixed)
        for k, v in noise.items():
            fx.input(f"mm2a.noise.{k}", v)
        out = pipe.cycle_mix(clips, noise, fixed_src=fixed, its=its, samples=samples, record=recorder(fx, "mm2a"))
        fx.output("mm2a.claps", out)
        print("  mm2a: best per round", [fx.tensors[f"inter.mm2a.round{i}.best"].tolist() for i in range(its + 1)])
    fx.write()


def make_aggregator(agg, gen):
    e, b, L = AGG["emb_dim"], 2, 16
    h = AGG["nhead"]
    fx = C.Fixture("ssv2a_aggregator", SCRIPT, VERSION, SEED,
                   "Temporal Aggregator (aggregator.py:16-49) at emb_dim 32 (official: hard-coded 512), "
                   "8 heads, FFN x2, PE resolution 1024 (base 2048; the buffer pe.pe [1024,1,E] is in the "
                   "state dict), 2 prediction tokens at positions 0-1. eval.*: eval mode. sample.*: "
                   "Aggregator.sample with N=1 injected eps, L2-normalised. train.*: the official "
                   "video_to_audio path leaves the module in train mode; dropout (p 0.2) is driven by "
                   "the stored multipliers (0 or 1/0.8) on the attention context [B,H,d,d], after the "
                   "FFN GELU [B,T,2E], and after each head's LayerNorm [B,E].",
                   AGG, LIBS)
    fx.state(agg.state_dict())
    with torch.no_grad():
        claps = unit(torch.randn(b, L, e, generator=gen))
        fx.input("claps", claps)
        mu, lv = agg(claps, recorder(fx, "eval"))
        fx.output("eval.mu", mu)
        fx.output("eval.logvar", lv)
        print("  " + C.describe("eval.mu", mu) + "; " + C.describe("logvar", lv))
        eps = torch.randn(1, b, e, generator=gen)
        fx.input("sample.eps", eps)
        fx.output("sample.clap", agg.sample(claps, eps))

        def keep(shape):
            return (torch.rand(shape, generator=gen) >= AGG["dropout"]).float() / (1 - AGG["dropout"])
        t = L + 2
        masks = {"context": keep((b, h, e // h, e // h)), "ffn": keep((b, t, e * AGG["exp_rate"])),
                 "head_mu": keep((b, e)), "head_sigma": keep((b, e))}
        for k, v in masks.items():
            fx.input(f"train.mask.{k}", v)
        mu, lv = agg(claps, recorder(fx, "train"), masks=masks)
        fx.output("train.mu", mu)
        fx.output("train.logvar", lv)
        fx.output("train.sample.clap", agg.sample(claps, eps, masks=masks))
    fx.write()
    return claps


def save_ckpts(pipe, agg):
    d = C.FIXTURES / "ckpt"
    d.mkdir(parents=True, exist_ok=True)
    torch.save(pipe.checkpoint(), str(d / "ssv2a_tiny.pth"))
    (d / "ssv2a_tiny.json").write_text(json.dumps(CONFIG, indent=4) + "\n")
    torch.save(agg.state_dict(), str(d / "agg_tiny.pth"))
    for f in ("ssv2a_tiny.pth", "ssv2a_tiny.json", "agg_tiny.pth"):
        print(f"  wrote {(d / f).relative_to(C.REPO)}: {(d / f).stat().st_size:,} bytes")
    # strict round trip, as Pipeline.load / pipeline.py:330 load them
    ck = torch.load(str(d / "ssv2a_tiny.pth"), map_location="cpu", weights_only=True)
    fresh = S.Pipeline(json.loads((d / "ssv2a_tiny.json").read_text()))
    fresh.manifold.load_state_dict(ck["manifold_state"])
    fresh.generator.load_state_dict(ck["generator_state"])
    fresh.remixer.load_state_dict(ck["remixer_state"])
    S.Aggregator(**{k: v for k, v in AGG.items() if k != "num_layers"}).load_state_dict(
        torch.load(str(d / "agg_tiny.pth"), map_location="cpu", weights_only=True))


def main():
    gen = torch.Generator().manual_seed(SEED)
    pipe, agg = build(gen)
    for name, mod in (("manifold", pipe.manifold), ("generator", pipe.generator), ("remixer", pipe.remixer),
                      ("aggregator", agg)):
        print(f"  {name}: {len(mod.state_dict())} tensors, {sum(v.numel() for v in mod.state_dict().values()):,} values")
    print("ssv2a_modules");    make_modules(pipe, gen)
    print("ssv2a_cyclemix");   make_cyclemix(pipe, gen)
    print("ssv2a_aggregator"); make_aggregator(agg, gen)
    print("ckpt/ssv2a_tiny.pth, ckpt/agg_tiny.pth"); save_ckpts(pipe, agg)


if __name__ == "__main__":
    main()
