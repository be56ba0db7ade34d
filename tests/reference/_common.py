"""Shared helpers for the golden-fixture scripts (tests/reference/make_*.py).

Every fixture is one safetensors file under tests/fixtures/ holding, all as f32:
  state.<key>   the state dict in the ORIGINAL checkpoint's key layout,
  in.<name>     inputs (including injected noise),
  out.<name>    outputs,
  inter.<name>  intermediate activations, in execution order,
and string metadata: script, torch + library versions, seed, description, config (JSON
with the original code's config key names), intermediates (comma-separated inter.* names
in execution order), plus optional extra fields.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import platform
import sys
import types
from collections import OrderedDict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
MAX_FIXTURE_BYTES = 2_000_000

# One thread: CPU reductions (conv, matmul) then give the same bits on every run.
torch.set_num_threads(1)


# --------------------------------------------------------------------------------------
# Imports of upstream code that needs a little help on this Python/torch stack
# --------------------------------------------------------------------------------------

def audioldm_submodules() -> None:
    """Make `import audioldm.<sub>` work without running audioldm/__init__.py.

    audioldm 0.1.1's package __init__ imports its pipeline, which imports torchaudio and
    librosa (only needed for reading wav files and for CLAP). No torchaudio build matches
    torch 2.15 on PyPI, so we register the package as a bare namespace and import the
    model modules themselves (VAE, HiFi-GAN, UNet, DDPM/LatentDiffusion, DDIM), which are
    the unmodified upstream files.
    """
    if "audioldm" in sys.modules:
        return
    spec = importlib.util.find_spec("audioldm")
    if spec is None:
        raise SystemExit("audioldm==0.1.1 is not installed (pip install --no-deps audioldm==0.1.1)")
    pkg = types.ModuleType("audioldm")
    pkg.__path__ = list(spec.submodule_search_locations)
    pkg.__file__ = spec.origin
    sys.modules["audioldm"] = pkg


def pkg_resources_shim() -> None:
    """OpenAI clip (clip-anytorch) does `from pkg_resources import packaging`; setuptools>=81 dropped it."""
    try:
        import pkg_resources  # noqa: F401  (only checking that it exists)
        return
    except Exception:
        pass
    import packaging
    import packaging.version
    mod = types.ModuleType("pkg_resources")
    mod.packaging = packaging
    sys.modules["pkg_resources"] = mod


# --------------------------------------------------------------------------------------
# Versions
# --------------------------------------------------------------------------------------

def dist_version(name: str) -> str:
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:
        return "not installed"


def versions(*names: str) -> dict:
    v = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
         "safetensors": dist_version("safetensors")}
    for n in names:
        v[n] = dist_version(n)
    return v


# --------------------------------------------------------------------------------------
# Seeded re-initialisation (zero-initialised layers get random values too)
# --------------------------------------------------------------------------------------

def _normal(shape, gen, std=1.0, mean=0.0):
    return torch.randn(shape, generator=gen, dtype=torch.float32) * std + mean


def _uniform(shape, gen, lo, hi):
    return torch.rand(shape, generator=gen, dtype=torch.float32) * (hi - lo) + lo


@torch.no_grad()
def randomize(module: torch.nn.Module, gen: torch.Generator, bias_std: float = 0.1,
              norm_std: float = 0.1, weight_gain: float = 1.0) -> None:
    """Give every parameter (and BatchNorm statistics) seeded random values.

    Linear/Conv weights ~ N(0, gain²/fan_in) so activations stay O(1); biases ~ N(0, bias_std²);
    norm affine weights ~ 1 + N(0, norm_std²), biases ~ N(0, norm_std²); BatchNorm running_mean
    ~ N(0, 0.1²), running_var ~ U(0.5, 1.5). Parameters of other module types are left to the
    caller. Weight-normed convs (weight_g / weight_v) get a random direction and a random
    positive magnitude.
    """
    nn = torch.nn
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d)):
            has_wn = hasattr(m, "weight_v")
            w = m.weight_v if has_wn else m.weight
            if isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d)):
                stride = int(np.prod(m.stride))
                fan_in = w.shape[0] * int(np.prod(w.shape[2:])) / stride
            else:
                fan_in = w[0].numel()
            std = weight_gain / math.sqrt(max(fan_in, 1))
            if has_wn:
                # effective weight g·v/|v| (norm over all dims but 0): random direction, random
                # row norm U(0.5, 1.5)·std·sqrt(row numel), i.e. about the plain init's scale.
                m.weight_v.copy_(_normal(w.shape, gen))
                g = _uniform((w.shape[0],), gen, 0.5, 1.5) * std * math.sqrt(w[0].numel())
                m.weight_g.copy_(g.reshape(m.weight_g.shape))
            else:
                m.weight.copy_(_normal(w.shape, gen, std))
            if m.bias is not None:
                m.bias.copy_(_normal(m.bias.shape, gen, bias_std))
        elif isinstance(m, (nn.GroupNorm, nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d)):
            if getattr(m, "weight", None) is not None:
                m.weight.copy_(_normal(m.weight.shape, gen, norm_std, 1.0))
            if getattr(m, "bias", None) is not None:
                m.bias.copy_(_normal(m.bias.shape, gen, norm_std))
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.copy_(_normal(m.running_mean.shape, gen, 0.1))
                m.running_var.copy_(_uniform(m.running_var.shape, gen, 0.5, 1.5))


# --------------------------------------------------------------------------------------
# Fixture writer
# --------------------------------------------------------------------------------------

class Fixture:
    """Collects tensors in insertion order and writes one safetensors file."""

    def __init__(self, name: str, script: str, script_version: str, seed: int, description: str,
                 config: dict, libs: tuple = (), extra_meta: dict | None = None,
                 max_bytes: int = MAX_FIXTURE_BYTES):
        self.name = name
        self.max_bytes = max_bytes
        self.tensors: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        self.inter: list[str] = []
        self.meta = {
            "script": f"{script} {script_version}",
            "seed": str(seed),
            "description": description,
            "config": json.dumps(config, sort_keys=False),
        }
        for k, v in versions(*libs).items():
            self.meta[k] = v
        if extra_meta:
            for k, v in extra_meta.items():
                self.meta[k] = v if isinstance(v, str) else json.dumps(v)

    def _put(self, key: str, t) -> None:
        if key in self.tensors:
            raise KeyError(f"duplicate fixture key {key}")
        if not isinstance(t, torch.Tensor):
            t = torch.as_tensor(np.asarray(t))
        self.tensors[key] = t.detach().to(torch.float32).contiguous().clone()

    def state(self, sd: dict, prefix: str = "") -> None:
        for k, v in sd.items():
            self._put(f"state.{prefix}{k}", v)

    def input(self, name: str, t) -> None:
        self._put(f"in.{name}", t)

    def output(self, name: str, t) -> None:
        self._put(f"out.{name}", t)

    def intermediate(self, name: str, t) -> None:
        self._put(f"inter.{name}", t)
        self.inter.append(f"inter.{name}")

    def set_meta(self, key: str, value) -> None:
        self.meta[key] = value if isinstance(value, str) else json.dumps(value)

    def write(self) -> int:
        FIXTURES.mkdir(parents=True, exist_ok=True)
        self.meta["intermediates"] = ",".join(self.inter)
        path = FIXTURES / f"{self.name}.safetensors"
        write_safetensors(path, self.tensors, self.meta)
        size = path.stat().st_size
        if size > self.max_bytes:
            raise SystemExit(f"{path.name} is {size} bytes, over the {self.max_bytes} byte budget")
        n = sum(t.numel() for t in self.tensors.values())
        print(f"  wrote {path.relative_to(REPO)}: {size:,} bytes, {len(self.tensors)} tensors, {n:,} values")
        return size


def write_safetensors(path: Path, tensors: "OrderedDict[str, torch.Tensor]", meta: dict) -> None:
    """Byte-for-byte deterministic safetensors writer (f32 only).

    safetensors.torch.save_file serialises __metadata__ through a hash map, so two runs give
    different header bytes; here the header lists __metadata__ (sorted) and then the tensors
    in insertion order, data laid out in the same order, header padded to 8 bytes.
    """
    header = {"__metadata__": {k: meta[k] for k in sorted(meta)}}
    offset = 0
    blobs = []
    for name, t in tensors.items():
        assert t.dtype == torch.float32
        b = t.contiguous().numpy().astype("<f4", copy=False).tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)


def check_finite(name: str, t: torch.Tensor) -> None:
    if not torch.isfinite(t).all():
        raise SystemExit(f"non-finite values in {name}")


def describe(name: str, t: torch.Tensor) -> str:
    t = t.detach().float()
    return f"{name}: {tuple(t.shape)} mean {t.mean():+.4f} std {t.std() if t.numel() > 1 else 0:.4f} max|.| {t.abs().max():.4f}"


def capture_outputs(named_modules: list[tuple[str, torch.nn.Module]]):
    """Register forward hooks that store each module's output; returns (store, remove)."""
    store: "OrderedDict[str, object]" = OrderedDict()
    handles = []
    for name, mod in named_modules:
        def hook(_m, _inp, out, name=name):
            store[name] = out
        handles.append(mod.register_forward_hook(hook))

    def remove():
        for h in handles:
            h.remove()
    return store, remove
