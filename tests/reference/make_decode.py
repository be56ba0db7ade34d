"""Golden fixture for ssv2a's image decoding: what **Pillow 11.3** (its bundled libjpeg-turbo
3.1.1 and libwebp 1.5.0) decodes from JPEGs that cover the paths of ssv2a's JPEG decoder
(`src/media/jpeg/`), and from two WebP files (lossy and lossless; ssv2a decodes WebP with the
`image` crate).

The official SSV2A opens every image with PIL, so PIL's pixels are the reference. The inputs are
cut from the committed photo (`images/photo_203x200.jpg`, PIL's decode of it) and the structured
test image (`images/rgb_640x427.png`), at odd sizes so that partial blocks, partial MCUs and
upsampling edges are exercised, and encoded two ways:
  - by Pillow (4:4:4, 4:2:2, 4:2:0, progressive, optimised Huffman tables, greyscale, Adobe RGB
    with `keep_rgb`, CMYK, YCCK (a CMYK file with its Adobe transform flag set to 2), images of 1-5 pixels where libjpeg switches off fancy upsampling);
  - by libjpeg-turbo's `cjpeg` (Debian's libjpeg-turbo-progs), for what Pillow cannot write:
    4:4:0 (h1v2 upsampling), 4:1:1 and h4v2 (replication), mixed chroma factors, restart
    intervals, progressive with restarts, and progressive scan scripts that leave AC
    coefficients unrefined or uncoded (libjpeg then smooths blocks, and ssv2a does the same);
    plus an arithmetic-coded file, which ssv2a must refuse with a clear error.

Writes tests/fixtures/images/jpeg/*.jpg, tests/fixtures/images/webp/*.webp and
tests/fixtures/decode_pil.safetensors:
  <stem>  [H, W, C] uint8: np.asarray(Image.open(file)) (C = 1 for "L", 3 for "RGB", 4 for
          "CMYK", PIL's inverted CMYK polarity)
  webp.<stem> [H, W, 3] uint8: PIL's decode of images/webp/<stem>.webp
  committed.cmyk_48x40 the same for the committed CMYK image (the committed photo's PIL decode
          is `in.photo_203x200.decoded` in clip_preprocess.safetensors)
  metadata: <stem> -> PIL mode; versions; "opencv_imread_equals_pil": the colour files whose
  `cv2.imread` (what ultralytics' YOLO reads) equals PIL's decode exactly (checked when the ref
  venv's OpenCV imports; with 4.11.0 all of them did).

Run: /root/.venvs/pil11/bin/python tests/reference/make_decode.py   (needs cjpeg on PATH; the
     OpenCV part runs when `cv2` imports, e.g. from the ref venv's site-packages via CV2_PATH)
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, features
from safetensors.numpy import save_file

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "tests" / "fixtures" / "images"
OUT_DIR = IMAGES / "jpeg"
WEBP_DIR = IMAGES / "webp"
OUT = REPO / "tests" / "fixtures" / "decode_pil.safetensors"

# A scan script that never refines AC coefficients 1-5 below bit 1 (libjpeg smooths then).
UNREFINED_SCANS = """0,1,2: 0-0, 0, 1 ;
0: 1-5, 0, 1 ;
2: 1-63, 0, 0 ;
1: 1-63, 0, 0 ;
0: 6-63, 0, 0 ;
0,1,2: 0-0, 1, 0 ;
"""
# DC only (AC never coded): libjpeg smooths the DC too (`change_dc`).
DC_ONLY_SCANS = """0,1,2: 0-0, 0, 1 ;
0,1,2: 0-0, 1, 0 ;
"""
# 4:2:0 with luma AC 1-9 left at bit 1 and chroma AC never coded: smoothing across 2-row iMCUs
# and a partial last iMCU row (40 rows: 5 luma block rows in 3 iMCU rows of 2).
UNREFINED_420_SCANS = """0,1,2: 0-0, 0, 0 ;
0: 1-9, 0, 1 ;
0: 10-63, 0, 0 ;
"""


def sources():
    photo = np.asarray(Image.open(IMAGES / "photo_203x200.jpg").convert("RGB"))
    synth = np.asarray(Image.open(IMAGES / "rgb_640x427.png").convert("RGB"))
    return photo, synth


def cut(a, y, x, h, w):
    return np.ascontiguousarray(a[y:y + h, x:x + w])


def pil_jpeg(arr, mode="RGB", **kw):
    buf = io.BytesIO()
    img = Image.fromarray(arr)
    if mode != "RGB":
        img = img.convert(mode)
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


def as_ycck(jpeg: bytes) -> bytes:
    i = jpeg.index(b"Adobe")
    assert jpeg[i - 4:i - 2] == b"\xff\xee" and jpeg[i + 11] == 0, "expected an Adobe APP14 with transform 0"
    return jpeg[:i + 11] + b"\x02" + jpeg[i + 12:]


def cjpeg(arr, *args):
    with tempfile.TemporaryDirectory() as d:
        ppm = Path(d) / "in.ppm"
        h, w, _ = arr.shape
        ppm.write_bytes(f"P6\n{w} {h}\n255\n".encode() + arr.tobytes())
        extra = []
        if "-scans" in args:
            i = args.index("-scans")
            (Path(d) / "scans.txt").write_text(args[i + 1])
            args = args[:i] + ("-scans", str(Path(d) / "scans.txt")) + args[i + 2:]
        return subprocess.run(["cjpeg", *args, *extra, str(ppm)], check=True, capture_output=True).stdout


def main():
    assert features.version_feature("libjpeg_turbo") == "3.1.1", "run with Pillow 11.3 (libjpeg-turbo 3.1.1)"
    assert features.version("webp") == "1.5.0", "run with Pillow 11.3 (libwebp 1.5.0)"
    photo, synth = sources()
    files: dict[str, bytes] = {
        "pil_444_q95_61x47": pil_jpeg(cut(photo, 10, 20, 47, 61), quality=95, subsampling="4:4:4"),
        "pil_422_q75_77x33": pil_jpeg(cut(photo, 100, 50, 33, 77), quality=75, subsampling="4:2:2"),
        "pil_420_q50_prog_101x67": pil_jpeg(cut(photo, 60, 90, 67, 101), quality=50, subsampling="4:2:0", progressive=True),
        "pil_420_opt_q85_123x45": pil_jpeg(cut(synth, 200, 300, 45, 123), quality=85, optimize=True),
        "pil_gray_prog_45x29": pil_jpeg(cut(photo, 150, 150, 29, 45), mode="L", quality=85, progressive=True),
        "pil_rgb_keep_33x21": pil_jpeg(cut(photo, 5, 160, 21, 33), quality=90, keep_rgb=True, subsampling="4:4:4"),
        "pil_cmyk_29x23": pil_jpeg(cut(photo, 120, 10, 23, 29), mode="CMYK", quality=90),
        # YCCK: nothing here writes it, so take the CMYK file and set its Adobe transform flag to
        # 2: libjpeg then reads the same data as YCCK and converts it to CMYK.
        "pil_ycck_29x23": as_ycck(pil_jpeg(cut(photo, 120, 10, 23, 29), mode="CMYK", quality=90)),
        "pil_420_1x1": pil_jpeg(cut(photo, 100, 100, 1, 1), quality=90),
        "pil_420_4x9": pil_jpeg(cut(photo, 30, 30, 9, 4), quality=90),
        "pil_420_5x3": pil_jpeg(cut(photo, 90, 140, 3, 5), quality=90),
        "pil_422_3x2": pil_jpeg(cut(photo, 90, 140, 2, 3), quality=90, subsampling="4:2:2"),
        "cjpeg_440_57x43": cjpeg(cut(photo, 70, 40, 43, 57), "-quality", "88", "-sample", "1x2"),
        "cjpeg_411_45x31": cjpeg(cut(synth, 100, 100, 31, 45), "-quality", "80", "-sample", "4x1"),
        "cjpeg_h4v2_37x29": cjpeg(cut(photo, 20, 120, 29, 37), "-quality", "80", "-sample", "4x2"),
        "cjpeg_mixed_52x38": cjpeg(cut(photo, 140, 60, 38, 52), "-quality", "85", "-sample", "2x2,1x2,1x1"),
        "cjpeg_422_restart_optimize_63x40": cjpeg(cut(photo, 0, 0, 40, 63), "-quality", "70", "-sample", "2x1", "-restart", "1", "-optimize"),
        "cjpeg_420_prog_restart_70x50": cjpeg(cut(synth, 150, 250, 50, 70), "-quality", "75", "-progressive", "-restart", "3B"),
        "cjpeg_prog_unrefined_48x32": cjpeg(cut(photo, 80, 80, 32, 48), "-quality", "75", "-sample", "1x1", "-scans", UNREFINED_SCANS),
        "cjpeg_prog_unrefined_dc_only_41x27": cjpeg(cut(photo, 30, 100, 27, 41), "-quality", "60", "-sample", "2x1", "-scans", DC_ONLY_SCANS),
        "cjpeg_prog_unrefined_420_56x40": cjpeg(cut(synth, 60, 400, 40, 56), "-quality", "80", "-sample", "2x2", "-scans", UNREFINED_420_SCANS),
        "cjpeg_arithmetic_16x16": cjpeg(cut(photo, 0, 0, 16, 16), "-arithmetic"),
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for old in OUT_DIR.glob("*.jpg"):
        old.unlink()
    tensors, meta = {}, {"pillow": Image.__version__, "libjpeg_turbo": features.version_feature("libjpeg_turbo")}
    try:
        sys.path.insert(0, os.environ.get("CV2_PATH", "/root/.venvs/ref/lib/python3.11/site-packages"))
        import cv2
        meta["opencv"] = cv2.__version__
    except Exception:  # noqa: BLE001
        cv2 = None
    same_as_cv2: list[str] = []
    for stem, data in files.items():
        path = OUT_DIR / f"{stem}.jpg"
        path.write_bytes(data)
        img = Image.open(path)
        img.load()
        a = np.asarray(img)
        tensors[stem] = a.reshape(a.shape[0], a.shape[1], -1).copy()
        meta[stem] = img.mode
        if cv2 is not None and img.mode == "RGB":
            same_as_cv2.append(stem if np.array_equal(cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1], a) else f"DIFFERENT:{stem}")
        print(f"{stem}: {img.mode} {img.size} {len(data)} bytes")
    WEBP_DIR.mkdir(parents=True, exist_ok=True)
    webps = {"photo_q80_121x91": dict(quality=80), "photo_lossless_121x91": dict(lossless=True)}
    for stem, kw in webps.items():
        buf = io.BytesIO()
        Image.fromarray(cut(photo, 40, 50, 91, 121)).save(buf, "WEBP", **kw)
        path = WEBP_DIR / f"{stem}.webp"
        path.write_bytes(buf.getvalue())
        tensors[f"webp.{stem}"] = np.asarray(Image.open(path).convert("RGB")).copy()
        print(f"webp {stem}: {len(buf.getvalue())} bytes")
    meta["libwebp"] = features.version("webp")
    for name in ["photo_203x200.jpg", "cmyk_48x40.jpg"]:
        img = Image.open(IMAGES / name)
        img.load()
        a = np.asarray(img)
        stem = "committed." + name.rsplit(".", 1)[0]
        if img.mode != "RGB":  # the RGB one's PIL decode is in clip_preprocess.safetensors
            tensors[stem] = a.reshape(a.shape[0], a.shape[1], -1).copy()
            meta[stem] = img.mode
        elif cv2 is not None:
            same = np.array_equal(cv2.imread(str(IMAGES / name), cv2.IMREAD_COLOR)[..., ::-1], a)
            same_as_cv2.append(stem if same else f"DIFFERENT:{stem}")
    if cv2 is not None:
        meta["opencv_imread_equals_pil"] = " ".join(same_as_cv2)
        print("cv2.imread vs PIL:", meta["opencv_imread_equals_pil"])
    save_file(tensors, str(OUT), metadata={k: str(v) for k, v in sorted(meta.items())})
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes), {sum(len(d) for d in files.values())} bytes of JPEGs")


if __name__ == "__main__":
    main()
