"""Check the re-built SSV2A modules (ssv2a_modules.py) against the official code.

The official repository is not pip-installable and is not vendored here. Point this script at a
checkout of github.com/wguo86/SSV2A (tested at 7f01d5f):

    python tests/reference/check_ssv2a_official.py --repo /path/to/SSV2A [--tiny]

It imports the official ssv2a/model/{modules,manifold,generator,remixer,aggregator,pipeline}.py
(with the data/CLIP/AudioLDM/wandb imports they pull in stubbed out), builds the official
Pipeline and Aggregator with the REAL ssv2a.json sizes (or the fixtures' tiny config with
--tiny), loads the re-built modules' random weights into them with strict=True, and checks,
bit for bit:
  * each module forward (manifold clip/clap encoders, generator, remixer, aggregator);
  * fold_clips / fold2claps / Styler.sample with the same torch RNG stream;
  * Pipeline.cycle_mix with the same torch and Python RNG streams (noise and permutations are
    replayed into the re-built cycle_mix), with and without fixed_src.
The official cycle_mix hard-codes a 512-wide CLAP; with --tiny that literal is replaced by the
configured clap_dim while loading pipeline.py (the only source change).
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402,F401  (thread settings)

import torch  # noqa: E402

import ssv2a_modules as S  # noqa: E402
from make_ssv2a import CONFIG as TINY  # noqa: E402

REAL = copy.deepcopy(TINY)
REAL.update({"clip_dim": 768, "clap_dim": 512, "manifold_dim": 768})
REAL["manifold"]["layers"] = [768, 768, 1536, 1536, 3072, 3072]
REAL["generator"]["layers"] = [768, 768, 896, 896, 1024, 1024, 2048, 2048]
REAL["remixer"]["slot"] = 64
REAL["remixer"]["styler"]["embed_dim"] = 768


def stub(name, **attrs):
    m = types.ModuleType(name)
    for k, v in attrs.items():
        setattr(m, k, v)
    sys.modules[name] = m
    return m


def load_official(repo: Path, clap_dim: int):
    def nothing(*a, **k):
        raise RuntimeError("stubbed")
    for pkg in ("ssv2a", "ssv2a.data", "ssv2a.model"):
        m = stub(pkg)
        m.__path__ = []
    stub("wandb")
    stub("ssv2a.data.utils", read_classes=nothing, random_mute=nothing, get_timestamp=lambda: "ts",
         clip_embed_images=nothing, save_wave=nothing, set_seed=nothing, emb2seq=nothing,
         batch_extract_frames=nothing, prior_embed_texts=nothing)
    stub("ssv2a.data.detect", detect=nothing)
    stub("ssv2a.data.tpairs", tpairs2tclips=nothing)
    stub("ssv2a.model.clap", clap_embed_auds=nothing)
    stub("ssv2a.model.aldm", build_audioldm=nothing, emb_to_audio=nothing)
    mods = {}
    for name in ("modules", "manifold", "generator", "remixer", "aggregator", "pipeline"):
        path = repo / "ssv2a" / "model" / f"{name}.py"
        src = path.read_text()
        if name == "pipeline" and clap_dim != 512:
            src = src.replace("torch.empty(B, 512)", f"torch.empty(B, {clap_dim})")
            src = src.replace("samples, 512)", f"samples, {clap_dim})")
        mod = types.ModuleType(f"ssv2a.model.{name}")
        mod.__file__ = str(path)
        sys.modules[f"ssv2a.model.{name}"] = mod
        exec(compile(src, str(path), "exec"), mod.__dict__)
        mods[name] = mod
    return mods


def same(name, a, b):
    ok = torch.equal(a, b)
    print(f"  {'OK ' if ok else 'BAD'} {name}: max |diff| {(a - b).abs().max().item():.3e}")
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True, type=Path)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--its", type=int, default=2)
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--var-samples", type=int, default=4)
    a = ap.parse_args()
    cfg = copy.deepcopy(TINY if a.tiny else REAL)
    off = load_official(a.repo, cfg["clap_dim"])
    gen = torch.Generator().manual_seed(7)

    mine = S.Pipeline(copy.deepcopy(cfg)).eval()
    with torch.no_grad():
        C.randomize(mine, gen)
        mine.remixer.styler.pred_token.normal_(generator=gen)
    theirs = off["pipeline"].Pipeline(copy.deepcopy(cfg), device="cpu").eval()
    ck = mine.checkpoint()
    theirs.manifold.load_state_dict(ck["manifold_state"], strict=True)
    theirs.generator.load_state_dict(ck["generator_state"], strict=True)
    theirs.remixer.load_state_dict(ck["remixer_state"], strict=True)
    print(f"strict load OK: {sum(len(v) for k, v in ck.items() if k.endswith('_state'))} tensors")

    ok = True
    b, slot = 2, cfg["remixer"]["slot"]
    with torch.no_grad():
        clips = torch.zeros(b, slot, cfg["clip_dim"])
        clips[0, :4] = torch.randn(4, cfg["clip_dim"], generator=gen)
        clips[1, :7] = torch.randn(7, cfg["clip_dim"], generator=gen)
        clips = torch.nn.functional.normalize(clips, dim=-1)
        claps = torch.nn.functional.normalize(torch.randn(b, 3, cfg["clap_dim"], generator=gen), dim=-1)
        src = torch.randn(b, slot, cfg["manifold_dim"], generator=gen)
        mu1, lv1 = mine.manifold.clip_encoder(clips)
        mu2, lv2, _ = theirs.manifold.clip_encoder(clips)
        ok &= same("manifold clip mu", mu1, mu2) & same("manifold clip logvar", lv1, lv2)
        mu1, lv1 = mine.manifold.clap_encoder(claps)
        mu2, lv2, _ = theirs.manifold.clap_encoder(claps)
        ok &= same("manifold clap mu", mu1, mu2) & same("manifold clap logvar", lv1, lv2)
        mu1, lv1 = mine.generator(src)
        mu2, lv2, _ = theirs.generator(src)
        ok &= same("generator mu", mu1, mu2) & same("generator logvar", lv1, lv2)
        mu1, lv1 = mine.remixer.styler(src, clips)
        mu2, lv2 = theirs.remixer.styler(src, clips)
        ok &= same("remixer mu", mu1, mu2) & same("remixer logvar", lv1, lv2)

        n = a.var_samples
        torch.manual_seed(11)
        f2 = theirs.manifold.fold_clips(clips, var_samples=n)
        torch.manual_seed(11)
        eps = torch.stack([torch.empty(b, slot, cfg["manifold_dim"]).normal_() for _ in range(n)])
        ok &= same("fold_clips (same RNG stream)", mine.manifold.fold_clips(clips, eps), f2)
        torch.manual_seed(12)
        g2 = theirs.generator.fold2claps(f2, var_samples=n)
        torch.manual_seed(12)
        eps = torch.stack([torch.empty(b, slot, cfg["clap_dim"]).normal_() for _ in range(n)])
        ok &= same("fold2claps", mine.generator.fold2claps(f2, eps), g2)
        torch.manual_seed(13)
        random.seed(13)
        r2 = theirs.remixer.sample(f2, clips, var_samples=n, normalize=True, shuffle=True)
        torch.manual_seed(13)
        random.seed(13)
        perm = torch.tensor(random.sample(range(slot), slot))
        eps = torch.stack([torch.empty(b, cfg["clap_dim"]).normal_() for _ in range(n)])
        ok &= same("remixer.sample (shuffle)", mine.remixer.sample(f2, clips, eps, perm=perm), r2)

        for case in ("i2a", "mm2a"):
            fixed = None
            cl = clips
            if case == "mm2a":
                cl = clips.clone()
                cl[:, 0] = 0
                cl[:, 3] = 0
                fixed = torch.zeros(b, slot, cfg["manifold_dim"])
                fixed[:, 1:4] = torch.randn(b, 3, cfg["manifold_dim"], generator=gen)
            torch.manual_seed(21)
            random.seed(21)
            out2 = theirs.cycle_mix(cl, fixed_src=fixed, its=a.its, var_samples=n, samples=a.samples, shuffle=True)
            torch.manual_seed(21)
            random.seed(21)
            m_, c_ = cfg["manifold_dim"], cfg["clap_dim"]
            r = a.its + 1
            noise = {"fold_clips": torch.stack([torch.empty(b, slot, m_).normal_() for _ in range(n)]),
                     "gen": torch.zeros(r, n, b, slot, c_), "fold_claps": torch.zeros(r, n, b, m_),
                     "remix": torch.zeros(r, a.samples, n, b, c_),
                     "perm": torch.zeros(r, a.samples, slot, dtype=torch.long)}
            for i in range(r):
                for k in range(n):
                    noise["gen"][i, k] = torch.empty(b, slot, c_).normal_()
                if i > 0:
                    for k in range(n):
                        noise["fold_claps"][i, k] = torch.empty(b, m_).normal_()
                for j in range(a.samples):
                    noise["perm"][i, j] = torch.tensor(random.sample(range(slot), slot))
                    for k in range(n):
                        noise["remix"][i, j, k] = torch.empty(b, c_).normal_()
            out1 = mine.cycle_mix(cl, noise, fixed_src=fixed, its=a.its, samples=a.samples)
            ok &= same(f"cycle_mix {case} (replayed RNG)", out1, out2)

        agg_mine = S.Aggregator(emb_dim=cfg["clap_dim"]).eval()
        C.randomize(agg_mine, gen)
        agg_theirs = off["aggregator"].Aggregator(emb_dim=cfg["clap_dim"], device="cpu").eval()
        ok &= same("aggregator PE buffer (as constructed)", agg_mine.pe.pe, agg_theirs.pe.pe)
        agg_theirs.load_state_dict(agg_mine.state_dict(), strict=True)
        x = torch.nn.functional.normalize(torch.randn(b, 64, cfg["clap_dim"], generator=gen), dim=-1)
        mu1, lv1 = agg_mine(x)
        mu2, lv2 = agg_theirs(x)
        ok &= same("aggregator mu", mu1, mu2) & same("aggregator logvar", lv1, lv2)
    print("ALL OK" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
