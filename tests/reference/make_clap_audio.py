"""Golden fixture for CLAP's audio tower (HTSAT) as AudioLDM carries it (issue 15, item 4).

  clap_audio   audioldm 0.1.1's `CLAP` (audioldm/clap/open_clip/model.py, amodel HTSAT-tiny,
               tmodel roberta; built by make_clap.build_clap with its reduced text tower) whose
               `audio_branch` is replaced by the same class, `htsat.HTSAT_Swin_Transformer`, at
               reduced size (embed_dim 8, depths [2, 2, 2, 2], heads [2, 2, 4, 8], window 8,
               spec_size 256, patch 4, 10 classes) with HTSAT-tiny.json's audio_cfg (48 kHz,
               480,000 samples, n_fft 1024, hop 480, 64 mel bins, 50-14000 Hz), and
               `audio_projection.0` rebuilt as nn.Linear(8·8, joint) — CLAP sizes it from
               embed_dim (768), the only other change. Seeded random weights; BatchNorm running
               statistics randomised (mean ~ N(-30, 10²), var ~ U(50, 150), of the order of
               real log-mel statistics) so bn0 is tested; the STFT and mel weights are
               torchlibrosa's own (librosa slaney mel, periodic Hann DFT).

               Waveforms (48 kHz), one batch of three, fitted to 480,000 samples as AudioLDM's
               `get_audio_features` does (the body of its two branches copied below: that module
               imports torchaudio/torchvision, which have no build for this torch):
                 0  in.short [48007]: shorter, "repeatpad" (tiled 9 times, then zero-padded);
                 1  480,000 samples exactly: `wave(480000)` below, made from integers in both
                    languages (too large to store; in.exact_head holds its first 1000 samples
                    as a check of the generator);
                 2  `wave(491616)` (AudioLDM's 163,872 samples at 16 kHz, ×3): longer, cropped at
                    in.long_offset, drawn as the original does (np.random.randint(0, overflow+1)
                    after np.random.seed(SEED); AudioLDM's "fusion" truncation draws three
                    np.random.choice values first, which an unfused model never uses).
               state.*   cond_stage_model.model.audio_branch.* (every tensor of the reduced
                         HTSAT, with melW, bn0, tscam_conv and head, but without the tensors the
                         converter recomputes and only checks when present — STFT conv_real/
                         conv_imag (4.2 MB), relative_position_index, attn_mask — which
                         parity_full.py's full checkpoint covers) and .audio_projection.*;
               in.waveform [3, 480000] is NOT stored; the test rebuilds it from the above.
               inter.audio_branch.bn0      [2, 1, 1001, 64] items 0-1: log-mel after bn0;
               inter.audio_branch.image    [2, 1, 256, 256] items 0-1: reshape_wav2img;
               inter.audio_branch.{patch_embed, layers.<i>, norm} [1, N, C] item 0 only;
               inter.embedding             [3, 64]  (HTSAT's "embedding", the token mean);
               out.audio_embeds            [3, 16]  audio_projection(embedding), before
                                                    normalising (the `stage clap-audio` output);
               out.audio_embeds_normalized [3, 16]  CLAP.get_audio_embedding.

The released size (HTSAT-tiny, 512-d) is checked by parity_full.py (`--models clap`), which
builds it with `build_audio_clap` below.

Run: /work/venv/bin/python tests/reference/make_clap_audio.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

C.audioldm_submodules()
import audioldm.clap.open_clip.htsat as htsat  # noqa: E402
import audioldm.clap.open_clip.model as clap_model  # noqa: E402
import make_clap as MC  # noqa: E402

SCRIPT = "make_clap_audio.py"
VERSION = "1"
SEED = 17
PREFIX = "cond_stage_model.model."
MAX_LEN = 480000

TINY_HTSAT = dict(spec_size=256, patch_size=4, patch_stride=(4, 4), embed_dim=8, depths=[2, 2, 2, 2],
                  num_heads=[2, 2, 4, 8], window_size=8, num_classes=10)
JOINT_TINY = 16
SHORT_LEN = 48007
LONG_LEN = 491616


def wave(n: int) -> np.ndarray:
    """A deterministic 48 kHz test signal from integers (the Rust test makes the same values):
    white noise from a multiplicative hash plus a 110-sample triangle wave, each sample rounded
    once to f32 from an f64 expression of exact integer arithmetic and correctly rounded ops."""
    i = np.arange(n, dtype=np.uint64)
    h = (i * np.uint64(2654435761)) % np.uint64(1 << 32)
    noise = (h >> np.uint64(16)).astype(np.float64) / 65536.0 - 0.5
    tri = np.abs((i % np.uint64(110)).astype(np.float64) - 55.0) / 55.0 - 0.5
    return (0.3 * noise + 0.6 * tri).astype(np.float32)


def fit(audio_data: torch.Tensor, max_len: int = MAX_LEN):
    """audioldm/clap/training/data.py `get_audio_features`, the crop and "repeatpad" branches
    (verbatim apart from the fusion mel, which an unfused model never reads). Returns the
    fitted waveform and the crop offset (0 when not cropped)."""
    idx = 0
    if len(audio_data) > max_len:
        # random crop to max_len (for compatibility)
        overflow = len(audio_data) - max_len
        idx = np.random.randint(0, overflow + 1)
        audio_data = audio_data[idx : idx + max_len]
    else:  # padding if too short
        if len(audio_data) < max_len:  # do nothing if equal
            n_repeat = int(max_len / len(audio_data))
            audio_data = audio_data.repeat(n_repeat)
            audio_data = F.pad(
                audio_data,
                (0, max_len - len(audio_data)),
                mode="constant",
                value=0,
            )
    return audio_data, int(idx)


@torch.no_grad()
def randomize_branch(branch: nn.Module, gen: torch.Generator) -> None:
    """Random weights everywhere but the fixed STFT/mel extractors; relative position bias
    tables ~ N(0, 1); bn0 statistics of the order of real log-mel ones."""
    for name in ("bn0", "patch_embed", "layers", "norm", "tscam_conv", "head"):
        C.randomize(getattr(branch, name), gen)
    for n, p in branch.named_parameters():
        if n.endswith("relative_position_bias_table"):
            p.copy_(C._normal(p.shape, gen, 1.0))
    branch.bn0.running_mean.copy_(C._normal(branch.bn0.running_mean.shape, gen, 10.0, -30.0))
    branch.bn0.running_var.copy_(C._uniform(branch.bn0.running_var.shape, gen, 50.0, 150.0))


def build_audio_clap(htsat_kw: dict | None, joint: int, gen: torch.Generator):
    """audioldm 0.1.1's CLAP (reduced text tower, see make_clap.build_clap). `htsat_kw=None`
    keeps the audio branch CLAP builds (HTSAT-tiny, `create_htsat_model`); otherwise it is
    replaced by `HTSAT_Swin_Transformer(**htsat_kw)` with the same audio_cfg, and
    audio_projection.0 by nn.Linear(num_features, joint). Random weights (see randomize_branch)."""
    model = MC.build_clap(MC.TINY, joint, gen)
    if htsat_kw is not None:
        cfg = clap_model.CLAPAudioCfp(**MC.AUDIO_CFG)
        model.audio_branch = htsat.HTSAT_Swin_Transformer(config=cfg, **htsat_kw)
        model.audio_projection[0] = nn.Linear(model.audio_branch.num_features, joint)
    model.eval()
    randomize_branch(model.audio_branch, gen)
    with torch.no_grad():
        C.randomize(model.audio_projection, gen)
    return model


FIXED = ("attn_mask", "relative_position_index", "spectrogram_extractor.stft.conv_real.weight",
         "spectrogram_extractor.stft.conv_imag.weight")


def audio_state(model, fixed: bool = True) -> dict:
    """The audio side of the CLAP state dict in the checkpoint's names (`fixed=False` drops
    the tensors the converter recomputes and only checks: the STFT basis, the relative
    position indices and the shifted blocks' attention masks)."""
    sd = {}
    for k, v in model.state_dict().items():
        if not k.startswith(("audio_branch.", "audio_projection.")):
            continue
        if not fixed and k.endswith(FIXED):
            continue
        sd[PREFIX + k] = v
    return sd


def traced(model, waveform: torch.Tensor, record=None):
    """CLAP.get_audio_embedding on [B, 480000] (its input dict as get_audio_features builds
    it, unfused), audio_projection(embedding) before normalising, and named intermediates."""
    branch = model.audio_branch
    names = [("audio_branch.bn0", branch.bn0), ("audio_branch.patch_embed", branch.patch_embed)]
    names += [(f"audio_branch.layers.{i}", l) for i, l in enumerate(branch.layers)]
    names += [("audio_branch.norm", branch.norm)]
    store, remove = C.capture_outputs(names)
    images = []
    orig = branch.reshape_wav2img

    def reshape_wav2img(x):
        out = orig(x)
        images.append(out)
        return out

    branch.reshape_wav2img = reshape_wav2img
    data = [{"waveform": w, "longer": torch.tensor([False])} for w in waveform]
    try:
        with torch.no_grad():
            normed = model.get_audio_embedding(data)
            embedding = model.encode_audio({"waveform": waveform, "longer": torch.zeros(len(waveform), 1, dtype=torch.bool)},
                                           device="cpu")["embedding"]
            emb = model.audio_projection(embedding)
    finally:
        remove()
        branch.reshape_wav2img = orig
    assert torch.allclose(normed, F.normalize(emb, dim=-1), atol=1e-6)
    if record is not None:
        for name, _ in names:
            out = store[name]
            out = out[0] if isinstance(out, tuple) else out
            if name == "audio_branch.bn0":
                record(name, out.transpose(1, 3)[:2])  # bn0 runs on [B, mel, T, 1]
                record("audio_branch.image", images[-1][:2])
            else:
                record(name, out[:1])
        record("embedding", embedding)
    return emb, normed


def inputs():
    """The three raw waveforms and the fitted batch [3, 480000], plus the crop offset."""
    gen = torch.Generator().manual_seed(SEED + 1)
    short = (torch.rand(SHORT_LEN, generator=gen) * 2 - 1) * 0.5
    short = short * torch.linspace(0.2, 1.0, SHORT_LEN)
    np.random.seed(SEED)
    a, _ = fit(short)
    b, _ = fit(torch.from_numpy(wave(MAX_LEN)))
    c, off = fit(torch.from_numpy(wave(LONG_LEN)))
    assert off > 0
    return short, torch.stack([a, b, c]), off


def main():
    gen = torch.Generator().manual_seed(SEED)
    model = build_audio_clap(TINY_HTSAT, JOINT_TINY, gen)
    audio_cfg = {k: v for k, v in MC.AUDIO_CFG.items()}
    htsat_cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in TINY_HTSAT.items()}
    cfg = {"clap_audio": {**audio_cfg, "spec_size": 256}, "htsat": htsat_cfg, "joint_embed_shape": JOINT_TINY}
    fx = C.Fixture("clap_audio", SCRIPT, VERSION, SEED,
                   "audioldm 0.1.1 CLAP audio side (HTSAT_Swin_Transformer + audio_projection) at reduced "
                   "size, random weights; a repeatpadded, an exact and a cropped 48 kHz waveform", cfg,
                   libs=("audioldm", "torchlibrosa", "librosa"), max_bytes=2_500_000)
    print("clap_audio")
    fx.state(audio_state(model, fixed=False))
    short, batch, off = inputs()
    fx.input("short", short)
    fx.input("exact_head", batch[1, :1000])
    fx.input("long_offset", torch.tensor([float(off)]))
    emb, normed = traced(model, batch, fx.intermediate)
    fx.output("audio_embeds", emb)
    fx.output("audio_embeds_normalized", normed)
    print("  " + C.describe("audio_embeds", emb) + f", crop offset {off}")
    fx.write()


if __name__ == "__main__":
    main()
