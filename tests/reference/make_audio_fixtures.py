"""Audio decoding and resampling fixtures for tests/audio.rs (tests/fixtures/audio/).

Writes small audio files in each accepted format with soundfile (libsndfile: WAV PCM 8/16/24/32
and float 32/64, FLAC, MP3 through its bundled LAME, Ogg Vorbis, and Ogg Opus as the unsupported
codec), and `reference.safetensors` with:
  dec.<file>            channel 0 of each file as soundfile decodes it (float32),
  ta.<orig>_<new>.in    a test signal, and
  ta.<orig>_<new>.out   torchaudio.functional.resample(in, orig, new) with its defaults,
  norm.in / norm.out    SSV2A's source normalisation (normalize_wav, then peak 0.5) in numpy.

torchaudio has no build for this torch, so `torchaudio_resample` below re-derives its default
resampler (`_get_sinc_resample_kernel` + `_apply_sinc_resample_kernel`, torchaudio
src/torchaudio/functional/functional.py) in torch, float32 throughout as torchaudio computes it
for a float32 waveform (the kernel's dtype is the waveform's), then F.conv1d with stride orig.

Run: /work/venv/bin/python tests/reference/make_audio_fixtures.py
"""

import json
import math
import platform
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from safetensors.numpy import save_file

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "audio"
torch.set_num_threads(1)


def torchaudio_resample(x: torch.Tensor, orig: int, new: int, lw: int = 6, rolloff: float = 0.99):
    """torchaudio.functional.resample(x, orig, new) for a 1-D float32 x, default arguments."""
    if orig == new:
        return x
    g = math.gcd(orig, new)
    o, n = orig // g, new // g
    base = min(o, n) * rolloff
    width = math.ceil(lw * o / base)
    dt = x.dtype
    idx = torch.arange(-width, width + o, dtype=dt)[None, None] / o
    t = torch.arange(0, -n, -1, dtype=dt)[:, None, None] / n + idx
    t = (t * base).clamp(-lw, lw)
    window = torch.cos(t * math.pi / lw / 2) ** 2
    t = t * math.pi
    kernel = torch.where(t == 0, torch.tensor(1.0).to(t), t.sin() / t) * (window * (base / o))
    length = x.shape[-1]
    xp = F.pad(x[None, None], (width, width + o))
    y = F.conv1d(xp, kernel, stride=o)  # [1, n, frames]
    y = y.transpose(1, 2).reshape(-1)
    return y[: math.ceil(n * length / o)]


def signal(sr: int, secs: float, seed: int, channels: int) -> np.ndarray:
    """Channel 0: a log chirp 100 Hz → 0.4·sr plus a little noise; channel 1: a 440 Hz sine."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * secs)) / sr
    f0, f1 = 100.0, 0.4 * sr
    k = math.log(f1 / f0) / secs
    c0 = 0.6 * np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k) + 0.05 * rng.standard_normal(t.size)
    cols = [c0, 0.3 * np.sin(2 * np.pi * 440 * t)][:channels]
    return np.stack(cols, axis=1).astype(np.float32)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    files = {
        # name: (format, subtype, rate, channels, seconds)
        "pcm_u8.wav": ("WAV", "PCM_U8", 16000, 1, 0.1),
        "pcm16_stereo.wav": ("WAV", "PCM_16", 22050, 2, 0.15),
        "pcm24.wav": ("WAV", "PCM_24", 16000, 1, 0.1),
        "pcm32.wav": ("WAV", "PCM_32", 16000, 1, 0.1),
        "float32.wav": ("WAV", "FLOAT", 16000, 1, 0.1),
        "float64.wav": ("WAV", "DOUBLE", 8000, 1, 0.1),
        "stereo.flac": ("FLAC", "PCM_16", 44100, 2, 0.2),
        "stereo.mp3": ("MP3", "MPEG_LAYER_III", 44100, 2, 0.5),
        "stereo.ogg": ("OGG", "VORBIS", 44100, 2, 0.3),
        "opus.ogg": ("OGG", "OPUS", 48000, 1, 0.1),
    }
    tensors = {}
    for i, (name, (fmt, sub, sr, ch, secs)) in enumerate(files.items()):
        x = signal(sr, secs, i, ch)
        path = OUT / name
        sf.write(path, x, sr, format=fmt, subtype=sub)
        if sub != "OPUS":
            d, r = sf.read(path, dtype="float32", always_2d=True)
            assert r == sr
            tensors[f"dec.{name}"] = np.ascontiguousarray(d[:, 0])
        print(f"{name}: {path.stat().st_size} bytes")

    rng = np.random.default_rng(7)
    for orig, new, n in [(16000, 48000, 1001), (44100, 16000, 2205), (22050, 16000, 1103), (48000, 16000, 960), (11025, 16000, 777), (32000, 48000, 640), (8000, 16000, 333)]:
        t = np.arange(n) / orig
        x = (0.5 * np.sin(2 * np.pi * 0.31 * orig * t) + 0.3 * rng.standard_normal(n)).astype(np.float32)
        y = torchaudio_resample(torch.from_numpy(x), orig, new).numpy()
        tensors[f"ta.{orig}_{new}.in"] = x
        tensors[f"ta.{orig}_{new}.out"] = np.ascontiguousarray(y)

    # SSV2A's clap.py: normalize_wav (mean, /(max+1e-8), *0.5), then /max, *0.5, nan_to_num.
    x = (0.2 + 0.7 * rng.standard_normal(3000)).astype(np.float32)
    w = x - np.mean(x)
    w = w / (np.max(np.abs(w)) + 1e-8)
    w = w * 0.5
    w = w[None, ...]
    w = w / np.max(np.abs(w))
    w = np.nan_to_num(0.5 * w)
    tensors["norm.in"] = x
    tensors["norm.out"] = np.ascontiguousarray(w[0].astype(np.float32))

    meta = {
        "script": "tests/reference/make_audio_fixtures.py",
        "torch": torch.__version__,
        "numpy": np.__version__,
        "soundfile": sf.__version__,
        "libsndfile": sf.__libsndfile_version__,
        "python": platform.python_version(),
        "files": json.dumps(files),
    }
    save_file(tensors, OUT / "reference.safetensors", metadata=meta)
    print("reference.safetensors:", (OUT / "reference.safetensors").stat().st_size, "bytes")


if __name__ == "__main__":
    main()
