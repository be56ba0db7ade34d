"""Golden fixture for OpenAI CLIP's image preprocessing, made with **Pillow 11.3** (issue 5).

OpenAI `clip.clip._transform(224)` is torchvision's Resize(224, BICUBIC) -> CenterCrop(224) ->
convert("RGB") -> ToTensor -> Normalize(mean, std) on a PIL image. This script runs the same
PIL calls torchvision makes (torchvision is not needed):

  Resize(224):    img.resize((w', h'), BICUBIC), short side 224, long side int(224*long/short)
                  (PIL itself forces NEAREST for "P" and "1" images and resizes RGBA/LA
                  premultiplied)
  CenterCrop:     img.crop((left, top, left + 224, top + 224)), top/left = int(round((s-224)/2))
  convert("RGB"), then (x / 255 - mean) / std in float32

Why Pillow 11.3: the official SSV2A ran Pillow <= 12, whose resampler always runs the
horizontal pass first; the Pillow 13.0.0 wheel sometimes runs the vertical pass first (see
make_resize_fixture.py and src/media/image.rs). ssv2a reproduces the classic order.

Writes tests/fixtures/clip_preprocess.safetensors:
  out.<stem>.crop        [224, 224, 3] uint8: the resized + cropped RGB image (what the network
                         sees before scaling); compared byte for byte
  inter.<stem>.geometry  [4] f32: resized h, w, crop top, left
  out.rgb_640x427.pixels [3, 224, 224] f32: the normalised tensor of one image (checks the
                         scaling and normalisation arithmetic)
  in.photo_203x200.decoded [200, 203, 3] uint8: PIL's JPEG decode, to tell decoder differences
                         from resize differences
Also generates two extra inputs under tests/fixtures/images/ (deterministic):
  cmyk_48x40.jpg    a CMYK JPEG (PIL resizes in CMYK and converts after; ssv2a's decoder
                    converts first: the test reports the difference)
  rgb16_40x30.png   a 16-bit RGB PNG (PIL keeps the high byte of each sample)

Run: /root/.venvs/pil11/bin/python tests/reference/make_clip_preprocess.py
(a venv with pillow==11.3.0, numpy and safetensors)
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
from pathlib import Path

import numpy as np
import PIL
from PIL import Image
from safetensors.numpy import save_file

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "tests" / "fixtures" / "images"
OUT = REPO / "tests" / "fixtures" / "clip_preprocess.safetensors"
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
N_PX = 224
ORDER = ["rgb_640x427.png", "photo_203x200.jpg", "rgba_97x61.png", "gray_61x97.png", "palette_150x100.png",
         "cmyk_48x40.jpg", "rgb16_40x30.png"]


def make_extra_images():
    rng = np.random.default_rng(48)
    # CMYK JPEG: smooth ramps with a sharp block (PIL writes Adobe-inverted CMYK).
    h, w = 40, 48
    y, x = np.mgrid[0:h, 0:w]
    cmyk = np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (w + h - 2), 60 + 0 * x], -1).astype(np.uint8)
    cmyk[10:20, 30:40] = (0, 200, 220, 30)
    Image.fromarray(cmyk, "CMYK").save(IMAGES / "cmyk_48x40.jpg", quality=92)
    # 16-bit RGB PNG: values whose low byte matters for rounding (x*257 + noise).
    h, w = 30, 40
    base = np.stack([np.tile(np.linspace(0, 65535, w), (h, 1)), np.tile(np.linspace(65535, 0, h)[:, None], (1, w)),
                     rng.integers(0, 65536, (h, w))], -1)
    arr = np.clip(base + rng.integers(-200, 200, (h, w, 3)), 0, 65535).astype(">u2")
    # PIL cannot write 16-bit RGB PNGs; write it with zlib by hand (filter 0 on every row).
    import struct
    import zlib
    raw = b"".join(b"\x00" + arr[r].tobytes() for r in range(h))
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    (IMAGES / "rgb16_40x30.png").write_bytes(png)


def geometry(w, h):
    if w <= h:
        rw, rh = N_PX, int(N_PX * h / w)
    else:
        rw, rh = int(N_PX * w / h), N_PX
    top, left = int(round((rh - N_PX) / 2.0)), int(round((rw - N_PX) / 2.0))
    return rw, rh, top, left


def main():
    assert PIL.__version__.split(".")[0] in ("10", "11", "12"), "use Pillow <= 12 (see the docstring)"
    make_extra_images()
    tensors, notes = {}, {}
    for name in ORDER:
        path = IMAGES / name
        stem = path.stem
        raw = path.read_bytes()
        img = Image.open(io.BytesIO(raw))
        img.load()
        rw, rh, top, left = geometry(*img.size)
        resized = img.resize((rw, rh), Image.Resampling.BICUBIC)   # torchvision's F_pil.resize call
        crop = resized.crop((left, top, left + N_PX, top + N_PX)).convert("RGB")
        arr = np.asarray(crop, dtype=np.uint8)
        tensors[f"out.{stem}.crop"] = np.ascontiguousarray(arr)
        tensors[f"inter.{stem}.geometry"] = np.array([rh, rw, top, left], dtype=np.float32)
        notes[stem] = {"mode": img.mode, "size_wh": list(img.size), "sha256": hashlib.sha256(raw).hexdigest()}
        if stem == "rgb_640x427":
            x = (arr.astype(np.float32) / np.float32(255.0) - MEAN) / STD
            tensors[f"out.{stem}.pixels"] = np.ascontiguousarray(x.transpose(2, 0, 1))
        if path.suffix == ".jpg" and img.mode != "CMYK":
            tensors[f"in.{stem}.decoded"] = np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))
        print(f"  {name}: {img.mode} {img.size[0]}x{img.size[1]} -> {rw}x{rh}, crop top {top} left {left}")
    meta = {
        "script": "make_clip_preprocess.py v1",
        "pillow": PIL.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "description": "OpenAI CLIP _transform(224) with Pillow 11.3 (classic horizontal-then-vertical resampling): "
                       "out.<stem>.crop = resized + centre-cropped + convert('RGB') uint8 [224,224,3]; "
                       "inter.<stem>.geometry = [resized h, resized w, top, left]; out.rgb_640x427.pixels = "
                       "(crop/255 - mean)/std as [3,224,224] f32.",
        "images": json.dumps(notes, sort_keys=True),
        "mean": json.dumps(MEAN.tolist()),
        "std": json.dumps(STD.tolist()),
    }
    save_file(tensors, str(OUT), metadata=meta)
    print(f"wrote {OUT.relative_to(REPO)}: {OUT.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
