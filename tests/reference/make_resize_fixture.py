"""Resampling goldens: Pillow bicubic (what torchvision's Resize runs on PIL images, incl. the
premultiplied-alpha path for RGBA) and OpenCV INTER_LINEAR (ultralytics' letterbox).

Writes tests/fixtures/resize.safetensors: in.<img> [H,W,C] uint8, and
out.<img>.<op>.<w>x<h> for each case.

Pillow version matters: Pillow <= 12 (the versions the official SSV2A ran with, and Pillow's
own source as of mid-2026) always resamples horizontally first; the Pillow 13.0.0 wheel on PyPI
sometimes does the vertical pass first (always when widening while shrinking in height), which
changes results by a few levels on natural images and up to ~26 on noise. ssv2a reproduces the
classic order, so regenerate this fixture with Pillow 11.3:
    python -m venv /tmp/pil11 && /tmp/pil11/bin/pip install pillow==11.3.0 numpy safetensors opencv-python-headless==4.11.0.86
    /tmp/pil11/bin/python tests/reference/make_resize_fixture.py
"""
import json
import numpy as np
import PIL
import PIL.Image as Image
import cv2
from safetensors.numpy import save_file

rng = np.random.default_rng(1234)
imgs = {}
h, w = 61, 97
y, x = np.mgrid[0:h, 0:w]
a = np.stack([(x * 255 // w), (y * 255 // h), ((x * y) % 256)], -1).astype(np.uint8)
a[20:30, 10:60] = 255
a[40:45, :] = rng.integers(0, 256, (5, w, 3))
imgs["grad"] = a
imgs["noise"] = rng.integers(0, 256, (30, 41, 3)).astype(np.uint8)
rgba = rng.integers(0, 256, (23, 17, 4)).astype(np.uint8)
rgba[..., 3] = np.where(rgba[..., 3] > 128, 255, rgba[..., 3])
rgba[:3, :, 3] = 0
imgs["rgba"] = rgba

tensors = {}
for name, arr in imgs.items():
    tensors[f"in.{name}"] = arr
    im = Image.fromarray(arr, "RGBA" if arr.shape[2] == 4 else "RGB")
    for (ow, oh) in [(33, 17), (90, 70), (7, 64)]:
        tensors[f"out.{name}.pil_bicubic.{ow}x{oh}"] = np.array(im.resize((ow, oh), Image.BICUBIC))
        if arr.shape[2] == 3:
            tensors[f"out.{name}.cv2_linear.{ow}x{oh}"] = cv2.resize(arr, (ow, oh), interpolation=cv2.INTER_LINEAR)

assert PIL.__version__.split(".")[0] in ("10", "11", "12"), "use Pillow <= 12 (see the docstring)"
meta = {"script": "make_resize_fixture.py v2", "pillow": PIL.__version__, "opencv": cv2.__version__, "seed": "1234",
        "description": "Pillow BICUBIC and OpenCV INTER_LINEAR resize goldens"}
save_file(tensors, "tests/fixtures/resize.safetensors", metadata=meta)
print(len(tensors), "tensors")
