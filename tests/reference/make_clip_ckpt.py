"""Checkpoints of the tiny CLIP in the two other layouts `ssv2a convert --kind clip` reads (issue 5).

Both hold the weights of tests/fixtures/clip_vit_tiny.safetensors (state.*, OpenAI layout), which
this script loads into clip.model.CLIP (vision heads 4, see make_clip.py):

  ckpt/clip_tiny_jit.pt          torch.jit.trace of the model in fp16, saved with torch.jit.save:
                                 a TorchScript archive like OpenAI's ViT-L-14.pt (which is a traced
                                 fp16 CLIP). Its state_dict equals the fixture's weights rounded to fp16.
  ckpt/clip_tiny_hf.safetensors  transformers' CLIPModel layout (vision_model.*, text_model.*,
  ckpt/clip_tiny_hf.json         visual_projection.weight, text_projection.weight, logit_scale) and its
                                 config.json. The script loads it into transformers.CLIPModel and
                                 checks that image_embeds equal the OpenAI model's (to 1e-5).

Run: /root/.venvs/ref/bin/python tests/reference/make_clip_ckpt.py
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

C.pkg_resources_shim()
from clip.model import CLIP, VisionTransformer  # noqa: E402

from parity_full import clip_to_hf  # noqa: E402

CKPT = C.FIXTURES / "ckpt"


def load_tiny():
    fx = load_file(str(C.FIXTURES / "clip_vit_tiny.safetensors"))
    from safetensors import safe_open
    with safe_open(str(C.FIXTURES / "clip_vit_tiny.safetensors"), "pt") as f:
        cfg = json.loads(f.metadata()["config"])
    heads = cfg.pop("vision_heads")
    model = CLIP(**cfg)
    model.visual = VisionTransformer(input_resolution=cfg["image_resolution"], patch_size=cfg["vision_patch_size"],
                                     width=cfg["vision_width"], layers=cfg["vision_layers"], heads=heads,
                                     output_dim=cfg["embed_dim"])
    sd = {k[len("state."):]: v for k, v in fx.items() if k.startswith("state.")}
    model.load_state_dict(sd, strict=True)
    return model.eval(), cfg, heads, fx


def main():
    model, cfg, heads, fx = load_tiny()
    pixels, tokens = fx["in.pixels"], fx["in.tokens"].long()
    with torch.no_grad():
        ref = model.encode_image(pixels)
    assert torch.allclose(ref, fx["out.image_embeds"], atol=1e-6)

    # 1. TorchScript archive, fp16 like OpenAI's release.
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():  # trace a copy: the traced module shares its parameters
        traced = torch.jit.trace(copy.deepcopy(model), (pixels, tokens), check_trace=False)
    traced = traced.half()
    path = CKPT / "clip_tiny_jit.pt"
    torch.jit.save(traced, str(path))
    back = torch.jit.load(str(path)).state_dict()
    assert set(back) == set(sd), sorted(set(back) ^ set(sd))
    for k, v in sd.items():
        assert v.dtype == torch.float32, k
        assert back[k].dtype == torch.float16 and torch.equal(back[k].float(), v.half().float()), k
    print(f"  wrote {path.relative_to(C.REPO)}: {path.stat().st_size:,} bytes, {len(back)} tensors (fp16)")

    # 2. Hugging Face layout, checked through transformers.CLIPModel.
    from transformers import CLIPConfig, CLIPModel
    hf_cfg = CLIPConfig(
        projection_dim=cfg["embed_dim"],
        vision_config={"hidden_size": cfg["vision_width"], "intermediate_size": 4 * cfg["vision_width"],
                       "num_hidden_layers": cfg["vision_layers"], "num_attention_heads": heads,
                       "patch_size": cfg["vision_patch_size"], "image_size": cfg["image_resolution"],
                       "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5},
        text_config={"hidden_size": cfg["transformer_width"], "intermediate_size": 4 * cfg["transformer_width"],
                     "num_hidden_layers": cfg["transformer_layers"], "num_attention_heads": cfg["transformer_heads"],
                     "max_position_embeddings": cfg["context_length"], "vocab_size": cfg["vocab_size"],
                     "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "eos_token_id": 2},
    )
    hf_sd = {k: v.contiguous() for k, v in clip_to_hf(sd).items()}
    hf = CLIPModel(hf_cfg).eval()
    missing, unexpected = hf.load_state_dict(hf_sd, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    assert not missing and not unexpected, (missing, unexpected)
    with torch.no_grad():
        # vision tower + projection (get_image_features' return type changed across versions)
        emb = hf.visual_projection(hf.vision_model(pixel_values=pixels).pooler_output)
    err = (emb - ref).abs().max().item()
    assert err < 1e-5, err
    path = CKPT / "clip_tiny_hf.safetensors"
    save_file(hf_sd, str(path), metadata={"format": "pt"})
    (CKPT / "clip_tiny_hf.json").write_text(json.dumps(hf_cfg.to_dict(), indent=1, sort_keys=True, default=str) + "\n")
    print(f"  wrote {path.relative_to(C.REPO)}: {path.stat().st_size:,} bytes; transformers vs OpenAI image_embeds {err:.1e}")


if __name__ == "__main__":
    main()
