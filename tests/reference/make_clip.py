"""Golden fixtures for OpenAI CLIP (issue 5): a tiny ViT-B/L-style CLIP and the image preprocessing.

  clip_vit_tiny                 clip.model.CLIP (OpenAI layout: visual.conv1.weight, ...,
                                visual.transformer.resblocks.i.attn.in_proj_weight, text tower too),
                                vision forward with per-block intermediates + text forward
  tests/fixtures/images/*       the test images (generated below); their preprocessing golden is
                                made by make_clip_preprocess.py under Pillow 11.3 (this script's
                                venv has Pillow 13, whose resampler order differs, see that script)

Run: /root/.venvs/ref/bin/python tests/reference/make_clip.py
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

C.pkg_resources_shim()
import clip  # noqa: E402  (clip-anytorch: OpenAI's clip package)
from clip.model import CLIP, VisionTransformer  # noqa: E402

SCRIPT = "make_clip.py"
VERSION = "v1"
SEED = 14224
LIBS = ("clip-anytorch", "Pillow", "torchvision")
IMAGES = C.FIXTURES / "images"

# clip.model.CLIP constructor arguments (build_model() names), tiny. CLIP derives
# vision_heads = vision_width // 64 (= 1 here); the visual tower is rebuilt with 4 heads (head dim
# 16) so the head split is tested; the Rust side must take the head count from config.
CLIP_CFG = {
    "embed_dim": 32,
    "image_resolution": 70,
    "vision_layers": 2,
    "vision_width": 64,
    "vision_patch_size": 14,
    "context_length": 77,
    "vocab_size": 200,
    "transformer_width": 32,
    "transformer_heads": 2,
    "transformer_layers": 1,
}
VISION_HEADS = 4


# ------------------------------------------------------------------------------ test images

def _font(size):
    return ImageFont.load_default(size=size)


def _gradient(w, h, c0, c1, horizontal=True):
    t = np.linspace(0.0, 1.0, w if horizontal else h, dtype=np.float64)
    ramp = (np.outer(1 - t, c0) + np.outer(t, c1))  # [n, 3]
    if horizontal:
        arr = np.broadcast_to(ramp[None, :, :], (h, w, 3))
    else:
        arr = np.broadcast_to(ramp[:, None, :], (h, w, 3))
    return np.ascontiguousarray(np.round(arr).astype(np.uint8))


def make_images():
    """Small generated images with structure; returns {stem: (path, note)}."""
    IMAGES.mkdir(parents=True, exist_ok=True)
    out = {}

    # 1. RGB PNG, 640x427: downscale by ~1.9 (antialiased bicubic support widens), sharp edges, text
    w, h = 640, 427
    arr = _gradient(w, h, (20, 40, 200), (250, 180, 30))
    yy, xx = np.mgrid[0:h, 0:w]
    arr[(xx // 16 + yy // 16) % 2 == 0, 1] //= 2                      # checkerboard in G
    img = Image.fromarray(arr, "RGB")
    d = ImageDraw.Draw(img)
    d.rectangle([40, 40, 200, 150], fill=(255, 255, 255), outline=(0, 0, 0), width=3)
    d.ellipse([380, 200, 600, 410], fill=(200, 30, 60))
    for i in range(0, 640, 7):                                         # 1-px lines: aliasing test
        d.line([(i, 300), (i, 420)], fill=(0, 0, 0))
    d.text((60, 70), "SSV2A 224", fill=(10, 10, 10), font=_font(36))
    p = IMAGES / "rgb_640x427.png"
    img.save(p, optimize=True)
    out["rgb_640x427"] = (p, "RGB PNG, downscale x1.9, edges, thin lines, text")

    # 2. JPEG, 203x200: long side resizes to 227 -> centre-crop offset round(1.5) = 2 (banker's)
    w, h = 203, 200
    arr = _gradient(w, h, (240, 230, 200), (30, 90, 60), horizontal=False)
    img = Image.fromarray(arr, "RGB")
    d = ImageDraw.Draw(img)
    d.ellipse([20, 30, 120, 130], fill=(250, 200, 0), outline=(90, 40, 0), width=4)
    d.polygon([(130, 180), (190, 20), (200, 190)], fill=(40, 40, 160))
    d.text((10, 150), "jpeg q90", fill=(255, 255, 255), font=_font(22))
    p = IMAGES / "photo_203x200.jpg"
    img.save(p, quality=90)
    out["photo_203x200"] = (p, "baseline JPEG q90 4:2:0; crop offset 2 from round(1.5) (banker's rounding)")

    # 3. RGBA PNG, 97x61 (upscale): PIL resizes RGBA premultiplied (RGBa) before convert("RGB")
    w, h = 97, 61
    rgb = _gradient(w, h, (255, 0, 0), (0, 0, 255))
    alpha = np.tile(np.linspace(0, 255, w).round().astype(np.uint8), (h, 1))
    alpha[:, :20] = 0                                                   # fully transparent, RGB kept
    alpha[20:40, 40:60] = 255
    rgba = np.dstack([rgb, alpha])
    rgba[5:15, 5:15, :3] = (0, 255, 0)                                  # hidden green under alpha 0
    img = Image.fromarray(rgba, "RGBA")
    ImageDraw.Draw(img).text((45, 42), "a", fill=(255, 255, 255, 255), font=_font(14))
    p = IMAGES / "rgba_97x61.png"
    img.save(p)
    out["rgba_97x61"] = (p, "RGBA PNG, upscale; alpha 0..255 with colour under alpha 0")

    # 4. Grayscale PNG, 61x97 portrait (upscale; vertical crop)
    w, h = 61, 97
    g = np.tile(np.linspace(0, 255, h).round().astype(np.uint8)[:, None], (1, w))
    g[::8, :] = 255 - g[::8, :]
    img = Image.fromarray(g, "L")
    ImageDraw.Draw(img).rectangle([10, 30, 50, 60], outline=0, width=2)
    p = IMAGES / "gray_61x97.png"
    img.save(p)
    out["gray_61x97"] = (p, "mode L PNG, portrait, upscale")

    # 5. Palette PNG, 150x100: PIL resizes mode P with NEAREST whatever filter is asked
    w, h = 150, 100
    arr = _gradient(w, h, (0, 120, 255), (255, 255, 0))
    rgb = Image.fromarray(arr, "RGB")
    ImageDraw.Draw(rgb).text((20, 30), "P", fill=(255, 0, 0), font=_font(40))
    img = rgb.quantize(colors=16, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    p = IMAGES / "palette_150x100.png"
    img.save(p)
    out["palette_150x100"] = (p, "mode P PNG (16 colours): PIL.Image.resize uses NEAREST for P")
    return out


# ------------------------------------------------------------------------------ fixtures

def tiny_clip(gen):
    model = CLIP(**CLIP_CFG)
    model.visual = VisionTransformer(input_resolution=CLIP_CFG["image_resolution"],
                                     patch_size=CLIP_CFG["vision_patch_size"], width=CLIP_CFG["vision_width"],
                                     layers=CLIP_CFG["vision_layers"], heads=VISION_HEADS,
                                     output_dim=CLIP_CFG["embed_dim"])
    model.eval()
    with torch.no_grad():
        C.randomize(model, gen)
        for m in model.modules():
            if isinstance(m, torch.nn.MultiheadAttention):
                w = m.in_proj_weight
                w.copy_(torch.randn(w.shape, generator=gen) / math.sqrt(w.shape[1]))
                m.in_proj_bias.copy_(torch.randn(m.in_proj_bias.shape, generator=gen) * 0.1)
        v = model.visual
        s = v.conv1.out_channels ** -0.5
        v.class_embedding.copy_(torch.randn(v.class_embedding.shape, generator=gen) * s)
        v.positional_embedding.copy_(torch.randn(v.positional_embedding.shape, generator=gen) * s)
        v.proj.copy_(torch.randn(v.proj.shape, generator=gen) * s)
        model.token_embedding.weight.copy_(torch.randn(model.token_embedding.weight.shape, generator=gen))
        model.positional_embedding.copy_(torch.randn(model.positional_embedding.shape, generator=gen) * 0.1)
        model.text_projection.copy_(torch.randn(model.text_projection.shape, generator=gen)
                                    * CLIP_CFG["transformer_width"] ** -0.5)
    return model


def vision_traced(v, x, record):
    """VisionTransformer.forward with intermediates (token tensors stored as [B, L, W])."""
    h = v.conv1(x)
    record("visual.conv1", h)
    h = h.reshape(h.shape[0], h.shape[1], -1).permute(0, 2, 1)
    h = torch.cat([v.class_embedding.to(h.dtype) + torch.zeros(h.shape[0], 1, h.shape[-1], dtype=h.dtype), h], dim=1)
    h = h + v.positional_embedding.to(h.dtype)
    record("visual.embeddings", h)
    h = v.ln_pre(h)
    record("visual.ln_pre", h)
    h = h.permute(1, 0, 2)
    for i, blk in enumerate(v.transformer.resblocks):
        h = blk(h)
        record(f"visual.transformer.resblocks.{i}", h.permute(1, 0, 2))
    h = h.permute(1, 0, 2)
    h = v.ln_post(h[:, 0, :])
    record("visual.ln_post", h)
    out = h @ v.proj
    ref = v(x)
    assert torch.equal(out, ref), (out - ref).abs().max()
    return ref


def make_clip_model(images, gen):
    model = tiny_clip(gen)
    cfg = dict(CLIP_CFG, vision_heads=VISION_HEADS)
    fx = C.Fixture("clip_vit_tiny", SCRIPT, VERSION, SEED,
                   "OpenAI CLIP (clip.model.CLIP, clip-anytorch) in the OpenAI checkpoint layout "
                   "(visual.*, transformer.*, token_embedding, ln_final, text_projection, logit_scale). "
                   "Vision: conv1 patchify (no bias), class token + positional embedding, ln_pre, "
                   "pre-LN residual blocks (nn.MultiheadAttention with packed in_proj, QuickGELU MLP), "
                   "ln_post on token 0, @ proj. vision_heads is 4 although CLIP() would derive "
                   "vision_width//64 = 1: read it from config. Token intermediates are [B, L, W] (the "
                   "model runs L-major internally). in.pixels: row 0 = _transform(70) of "
                   "images/rgb_640x427.png, row 1 = _transform(70) of images/rgba_97x61.png. "
                   "image_embeds is before L2 normalisation. Text: argmax-token (EOT = highest id) "
                   "pooling; text_last_hidden = ln_final output.",
                   cfg, LIBS)
    fx.state(model.state_dict())
    t = clip.clip._transform(CLIP_CFG["image_resolution"])
    x = torch.stack([t(Image.open(images["rgb_640x427"][0])), t(Image.open(images["rgba_97x61"][0]))])
    fx.input("pixels", x)
    with torch.no_grad():
        emb = vision_traced(model.visual, x, fx.intermediate)
        assert torch.equal(emb, model.encode_image(x))
    fx.output("image_embeds", emb)
    print("  " + C.describe("image_embeds", emb))
    # text tower (kept so the converter's handling of the full OpenAI layout is tested)
    V = CLIP_CFG["vocab_size"]
    tokens = torch.zeros(2, CLIP_CFG["context_length"], dtype=torch.long)
    for i, n in enumerate((5, 11)):
        tokens[i, 0] = V - 2                                            # "<|startoftext|>"
        tokens[i, 1:1 + n] = torch.randint(1, V - 2, (n,), generator=gen)
        tokens[i, 1 + n] = V - 1                                        # "<|endoftext|>"
    fx.input("tokens", tokens)
    with torch.no_grad():
        te = model.encode_text(tokens)
        h = model.token_embedding(tokens) + model.positional_embedding
        h = model.transformer(h.permute(1, 0, 2)).permute(1, 0, 2)
        last = model.ln_final(h)
        assert torch.equal(last[torch.arange(2), tokens.argmax(dim=-1)] @ model.text_projection, te)
    fx.output("text_embeds", te)
    fx.output("text_last_hidden", last)
    fx.write()


def main():
    gen = torch.Generator().manual_seed(SEED)
    print("test images")
    images = make_images()
    for stem, (p, _n) in images.items():
        print(f"  wrote {p.relative_to(C.REPO)}: {p.stat().st_size:,} bytes")
    print("clip_vit_tiny")
    make_clip_model(images, gen)
    print("next: /root/.venvs/pil11/bin/python tests/reference/make_clip_preprocess.py (Pillow 11.3), "
          "/root/.venvs/ref/bin/python tests/reference/make_clip_ckpt.py")


if __name__ == "__main__":
    main()
