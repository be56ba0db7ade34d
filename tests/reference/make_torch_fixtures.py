"""Write the PyTorch checkpoint fixtures of tests/checkpoint.rs, and what PyTorch reads back.

Run from the repository root with torch (and ultralytics 8.2.90 for the YOLO fixture):

    python tests/reference/make_torch_fixtures.py

For each fixture `tests/fixtures/torch/<name>.<ext>` it writes `<name>.golden.json`, what
`torch.load(weights_only=False)` returns under the fixture's path, flattened to state-dict
names:
- `path`: the dotted path the Rust test passes to `Checkpoint::tensors`,
- `names`: the flattened names in state-dict order,
- `tensors`: name -> dtype, shape, and the sha256 of the values converted with `.float()`
  (little-endian f32 bytes; bit-exact for f16/bf16/ints, f64 rounded to nearest like the Rust
  reader), plus the f32 bit patterns themselves for tensors of up to MAX_LISTED values,
- `values`: dotted path -> JSON of non-tensor leaves the test checks,
- `versions`: torch / ultralytics versions used.

Random weights are seeded; the files are small (a few hundred KB in all).
"""

import collections
import hashlib
import copy
import io
import json
import os
import re
import sys
import zipfile

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "torch")
OUT = os.path.normpath(OUT)
# Tensors up to this many values are also listed (as f32 bit patterns) for readable diffs.
MAX_LISTED = 64


def flatten(obj, prefix=""):
    """State-dict names of every tensor under obj, like ssv2a::convert::torch::flatten."""
    out = []

    def join(k):
        return f"{prefix}.{k}" if prefix else str(k)

    if isinstance(obj, torch.Tensor):
        out.append((prefix, obj))
    elif isinstance(obj, torch.nn.Module):
        # Module.state_dict(keep_vars=True) names, in its order.
        for k, v in obj.state_dict(keep_vars=True).items():
            out.append((join(k), v))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(k, (str, int)) and not isinstance(k, bool):
                out.extend(flatten(v, join(k)))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.extend(flatten(v, join(i)))
    return out


def resolve(obj, path):
    for seg in path.split(".") if path else []:
        if isinstance(obj, dict):
            obj = obj[seg] if seg in obj else obj[int(seg)]
        elif isinstance(obj, (list, tuple)):
            obj = obj[int(seg)]
        else:
            obj = getattr(obj, seg)
    return obj


def to_json(v):
    if isinstance(v, dict):
        return {str(k): to_json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [to_json(x) for x in v]
    if isinstance(v, torch.Tensor):
        return {"tensor": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)}
    if isinstance(v, bytes):
        return v.decode("latin-1")
    return v


def golden(name, fname, path="", values=(), load=None):
    """Load the fixture as PyTorch does and write <name>.golden.json."""
    f = os.path.join(OUT, fname)
    obj = load(f) if load else torch.load(f, weights_only=False, map_location="cpu")
    tensors = flatten(resolve(obj, path))
    names = [n for n, _ in tensors]
    assert len(set(names)) == len(names), f"{name}: duplicate names"
    info = {}
    for n, t in tensors:
        v = t.detach().float().contiguous().numpy().astype("<f4")
        entry = {
            "dtype": str(t.dtype).replace("torch.", ""),
            "shape": list(t.shape),
            "sha256": hashlib.sha256(v.tobytes()).hexdigest(),
        }
        if v.size <= MAX_LISTED:
            entry["bits"] = [int(b) for b in v.reshape(-1).view("<u4")]
        info[n] = entry
    doc = {
        "path": path,
        "names": names,
        "tensors": info,
        "values": {p: to_json(resolve(obj, p)) for p in values},
        "versions": versions(),
    }
    with open(os.path.join(OUT, f"{name}.golden.json"), "w") as out:
        text = json.dumps(doc, indent=1, sort_keys=True)
        # One line per list of numbers keeps the file short and diffs readable.
        text = re.sub(r"\[[-0-9.e,\s]*\]", lambda m: re.sub(r"\s+", "", m.group(0)), text)
        out.write(text + "\n")
    print(f"{fname}: {len(names)} tensors, {os.path.getsize(f)} bytes")


def versions():
    v = {"torch": torch.__version__}
    try:
        import ultralytics

        v["ultralytics"] = ultralytics.__version__
    except ImportError:
        pass
    return v


class Block(torch.nn.Module):
    """A tiny custom module tree: conv, BN, a ModuleList, a parameter and a non-persistent buffer."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.heads = torch.nn.ModuleList([torch.nn.Linear(4, 3), torch.nn.Linear(3, 2, bias=False)])
        self.scale = torch.nn.Parameter(torch.tensor([0.5, 2.0]))
        self.register_buffer("table", torch.arange(6, dtype=torch.int64).reshape(2, 3))
        self.register_buffer("scratch", torch.zeros(3), persistent=False)
        self.act = torch.nn.SiLU()
        self.note = "not a tensor"


def fix_bn_stats(m):
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-1, 1)
            mod.running_var.uniform_(0.5, 2)
            mod.num_batches_tracked.fill_(7)


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)

    # 1. Every dtype, a 0-d tensor and an empty tensor; protocol 2 (torch's default).
    dtypes = {
        "f32": torch.randn(3, 4),
        "f16": torch.randn(5).half(),
        "bf16": torch.randn(2, 3).bfloat16(),
        "f64": torch.randn(2, 2, dtype=torch.float64),
        "i64": torch.arange(-3, 3, dtype=torch.int64).reshape(2, 3),
        "i32": torch.tensor([-(2**20), 7, 2**20], dtype=torch.int32),
        "i16": torch.tensor([-300, 300], dtype=torch.int16),
        "i8": torch.tensor([-128, 5, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 200, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.25),
        "empty": torch.zeros(0, 3),
        "special": torch.tensor([float("inf"), float("-inf"), float("nan"), -0.0, 1e-40]),
        "bytes": b"\x00\xffabc",
        "text": "héllo",
    }
    torch.save(dtypes, os.path.join(OUT, "dtypes.pt"))
    golden("dtypes", "dtypes.pt", values=["bytes", "text"])

    # 2. Views: transposed, sliced (storage offset), column (strided + offset), permuted,
    #    expanded (stride 0), and several tensors sharing one storage.
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 8
    shared = torch.randn(10)
    views = {
        "transposed": base.t(),
        "slice": base[1:3],
        "column": base[:, 4],
        "permuted": torch.randn(2, 3, 4).permute(2, 0, 1),
        "expanded": torch.tensor([1.5]).expand(4, 3),
        "shared_all": shared,
        "shared_mid": shared[3:7],
        "shared_step": shared[1::3],
        "half_t": torch.randn(3, 5).half().t(),
    }
    torch.save(views, os.path.join(OUT, "views.pt"))
    golden("views", "views.pt")

    # 3. A plain state dict (OrderedDict with `_metadata`).
    seq = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.GELU(), torch.nn.Linear(8, 2))
    torch.save(seq.state_dict(), os.path.join(OUT, "state_dict.pt"))
    golden("state_dict", "state_dict.pt")

    # 4. Lightning-style checkpoint (AudioLDM's layout: state_dict with EMA keys).
    sd = collections.OrderedDict()
    sd["model.diffusion_model.time_embed.0.weight"] = torch.randn(8, 4)
    sd["model.diffusion_model.time_embed.0.bias"] = torch.randn(8)
    sd["model.diffusion_model.out.2.weight"] = torch.randn(2, 8, 3, 3)
    sd["model_ema.decay"] = torch.tensor(0.9999)
    sd["model_ema.num_updates"] = torch.tensor(1234, dtype=torch.int32)
    sd["model_ema.diffusion_modeltime_embed0weight"] = torch.randn(8, 4)
    sd["model_ema.diffusion_modeltime_embed0bias"] = torch.randn(8)
    sd["model_ema.diffusion_modelout2weight"] = torch.randn(2, 8, 3, 3)
    sd["first_stage_model.decoder.conv_in.weight"] = torch.randn(4, 2, 3, 3).half()
    sd["scale_factor"] = torch.tensor(0.18215)
    sd["betas"] = torch.linspace(1e-4, 2e-2, 10, dtype=torch.float64).float()
    lightning = {
        "epoch": 12,
        "global_step": 34567,
        "pytorch-lightning_version": "1.9.0",
        "state_dict": sd,
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 13}}}},
        "callbacks": {"ModelCheckpoint{'monitor': 'val/loss'}": {"best_model_score": torch.tensor(0.25)}},
        "optimizer_states": [{"state": {0: {"step": torch.tensor(5.0), "exp_avg": torch.randn(3)}}, "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999)}]}],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": {"base_learning_rate": 3e-5, "scale_by_std": True, "unet_config": {"image_size": 64, "channel_mult": [1, 2, 3, 5], "dims": None}},
    }
    torch.save(lightning, os.path.join(OUT, "lightning.ckpt"))
    golden("lightning", "lightning.ckpt", path="state_dict", values=["epoch", "global_step", "hyper_parameters", "pytorch-lightning_version"])
    golden("lightning_all", "lightning.ckpt", path="")

    # 5. SSV2A's Pipeline.save: three state dicts and a timestamp.
    def mlp(d_in, d_out):
        return torch.nn.Sequential(torch.nn.Linear(d_in, d_out), torch.nn.LayerNorm(d_out)).state_dict()

    ssv2a = {
        "timestamp": "2024-05-01 12:00:00.000000",
        "manifold_state": mlp(6, 4),
        "generator_state": mlp(4, 5),
        "remixer_state": collections.OrderedDict([("styler.pred_token", torch.randn(2, 4))]),
    }
    torch.save(ssv2a, os.path.join(OUT, "ssv2a.pth"))
    golden("ssv2a", "ssv2a.pth", values=["timestamp"])

    # 6. A whole nn.Module (custom classes, pickled objects).
    block = Block()
    fix_bn_stats(block)
    block.eval()
    torch.save(block, os.path.join(OUT, "module.pt"))
    golden("module", "module.pt", values=["note"])

    # 7. Legacy (non-zip) format of the views and a module.
    torch.save({"views": views, "seq": seq.state_dict()}, os.path.join(OUT, "legacy.pt"), _use_new_zipfile_serialization=False)
    golden("legacy", "legacy.pt")

    # 8. Newer pickle protocols (FRAME, MEMOIZE, SHORT_BINUNICODE, STACK_GLOBAL, BINBYTES).
    torch.save({"sd": seq.state_dict(), "raw": b"xyz", "t": (1, 2.5, None, True)}, os.path.join(OUT, "proto4.pt"), pickle_protocol=4)
    golden("proto4", "proto4.pt", values=["raw", "t"])
    torch.save({"sd": seq.state_dict(), "view": base[1:, 2:]}, os.path.join(OUT, "proto5.pt"), pickle_protocol=5)
    golden("proto5", "proto5.pt")

    # 9. Any archive prefix: torch names the top folder after the file; rename it.
    buf = io.BytesIO()
    torch.save(seq.state_dict(), buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    with zipfile.ZipFile(os.path.join(OUT, "prefix.pt"), "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            rest = info.filename.split("/", 1)[1]
            dst.writestr("my-model_v2.final/" + rest, src.read(info.filename))
    golden("prefix", "prefix.pt")

    # 10. TorchScript archive (OpenAI CLIP's ViT-L-14.pt is one).
    scripted = torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1), torch.nn.BatchNorm2d(3)).eval())
    fix_bn_stats(scripted)
    torch.jit.save(scripted, os.path.join(OUT, "torchscript.pt"))
    golden("torchscript", "torchscript.pt", load=lambda f: torch.jit.load(f).state_dict())

    # 11. An ultralytics checkpoint, made as a training run makes one.
    try:
        make_yolo()
    except ImportError as e:
        print(f"skipping the ultralytics fixture: {e}", file=sys.stderr)


def make_yolo():
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel, yaml_model_load
    from ultralytics.utils import DEFAULT_CFG_DICT
    from ultralytics.utils.torch_utils import strip_optimizer

    torch.manual_seed(0)
    cfg = yaml_model_load("yolov8n.yaml")
    cfg.pop("scales", None)
    cfg["depth_multiple"], cfg["width_multiple"] = 0.33, 0.0625
    model = DetectionModel(cfg, nc=3, verbose=False)
    fix_bn_stats(model)
    model.names = {0: "person", 1: "cat", 2: "dog"}
    model.args = get_cfg()
    f = os.path.join(OUT, "yolo.pt")
    # Trainer.save_model, then strip_optimizer as every released .pt went through.
    torch.save(
        {
            "epoch": 3,
            "best_fitness": 0.5,
            "model": None,
            "ema": copy.deepcopy(model).half(),
            "updates": 10,
            "optimizer": None,
            "train_args": dict(DEFAULT_CFG_DICT),
            "train_metrics": {"metrics/mAP50(B)": 0.1},
            "train_results": None,
            "date": "2024-09-01T00:00:00",
            "version": "8.2.90",
        },
        f,
    )
    strip_optimizer(f)
    golden("yolo", "yolo.pt", path="model", values=["model.names", "model.stride", "model.yaml.nc", "model.yaml.width_multiple", "version", "ema"])


if __name__ == "__main__":
    main()
