"""Golden fixture for CLAP's text tower as AudioLDM carries it (issue 15, items 1-2).

  clap_text            audioldm 0.1.1's `CLAP` (audioldm/clap/open_clip/model.py, tmodel
                       "roberta", amodel HTSAT-tiny as in AudioLDM) built by its own constructor,
                       with `RobertaModel.from_pretrained("roberta-base")` replaced by a reduced
                       `RobertaModel(RobertaConfig(...))` (layer_norm_eps 1e-5 as roberta-base,
                       eager attention), and seeded random weights. CLAP hard-codes the
                       projection's input width as 768 (`nn.Linear(768, joint_embed_shape)`);
                       the reduced width needs `text_projection.0` rebuilt as the same
                       nn.Linear(width, joint_embed_shape) — the only change to CLAP.
                       state.*     the text side in the original checkpoint's key layout
                                   (cond_stage_model.model.text_branch.*, .text_projection.*);
                       in.a.*      3 sequences of 9 tokens, padded (input_ids, attention_mask);
                       in.empty.*  "" as AudioLDM tokenizes it: ids [0, 2, 1, ...], mask
                                   [1, 1, 0, ...], length 512 (no vocabulary file needed);
                       out.<case>.text_embeds             CLAP.encode_text (before normalising),
                       out.<case>.text_embeds_normalized  CLAP.get_text_embedding (what AudioLDM's
                                                          get_unconditional_condition stores);
                       inter.<case>.text_branch.{embeddings, encoder.layer.<i>, pooler}.
  ckpt/audioldm_tiny.ckpt   the same text tower added under cond_stage_model.model.* to the tiny
                       AudioLDM checkpoint of make_audioldm.py (its other tensors untouched), so
                       `ssv2a convert --kind audioldm` must store out.empty.text_embeds_normalized
                       as `uncond_embedding`. ckpt/audioldm_tiny.json carries the head count
                       ("clap_text": {"num_attention_heads": 4}); shapes give everything else.

  clap_prompt          text to audio's conditioning end to end (`generate --prompt`): a reduced
                       CLAP as above, but with the tokenizer fixture's 1761-token vocabulary
                       (tests/fixtures/tokenizer/roberta/), and three prompts (one longer than
                       512 tokens) tokenized as AudioLDM's `CLAPAudioEmbeddingClassifierFreev2.
                       tokenizer` does (`RobertaTokenizer(text, padding="max_length",
                       truncation=True, max_length=512)`; that method's body is copied below
                       because audioldm/clap/encoders.py imports torchaudio, which has no build
                       for this torch), then `CLAP.get_text_embedding` as its text mode calls it.
                       state.*  as clap_text;  in.input_ids, in.attention_mask [3, 512];
                       out.text_embeds_normalized [3, 16].
                       Only this fixture: `make_clap.py prompt`.

The released size (roberta-base, 512-d projection) is checked by parity_full.py (`--models
clap`), which builds it with `build_clap` below.

Run: /work/venv/bin/python tests/reference/make_clap.py [prompt]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

C.audioldm_submodules()
import audioldm.clap.open_clip.model as clap_model  # noqa: E402
from transformers import RobertaConfig, RobertaModel  # noqa: E402

SCRIPT = "make_clap.py"
VERSION = "1"
SEED = 15
PREFIX = "cond_stage_model.model."

TINY = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=514, type_vocab_size=1)
JOINT_TINY = 16
# HTSAT-tiny.json's audio_cfg, as AudioLDM builds CLAP (the audio tower is not saved here).
AUDIO_CFG = dict(audio_length=1024, clip_samples=480000, mel_bins=64, sample_rate=48000,
                 window_size=1024, hop_size=480, fmin=50, fmax=14000, class_num=527,
                 model_type="HTSAT", model_name="tiny")


def build_clap(sizes: dict, joint: int, gen: torch.Generator) -> clap_model.CLAP:
    rcfg = RobertaConfig(**sizes, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                         hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    rcfg._attn_implementation = "eager"
    orig = clap_model.RobertaModel.from_pretrained
    clap_model.RobertaModel.from_pretrained = staticmethod(lambda name, *a, **k: RobertaModel(rcfg))
    try:
        text_cfg = clap_model.CLAPTextCfg(context_length=77, vocab_size=sizes["vocab_size"],
                                          width=sizes["hidden_size"], heads=sizes["num_attention_heads"],
                                          layers=sizes["num_hidden_layers"], model_type="roberta")
        model = clap_model.CLAP(embed_dim=768, audio_cfg=clap_model.CLAPAudioCfp(**AUDIO_CFG), text_cfg=text_cfg,
                                enable_fusion=False, fusion_type="None", joint_embed_shape=joint, mlp_act="relu")
    finally:
        clap_model.RobertaModel.from_pretrained = orig
    if sizes["hidden_size"] != 768:
        model.text_projection[0] = nn.Linear(sizes["hidden_size"], joint)
    model.eval()
    with torch.no_grad():
        C.randomize(model.text_branch, gen)
        C.randomize(model.text_projection, gen)
        for emb in (model.text_branch.embeddings.word_embeddings, model.text_branch.embeddings.position_embeddings,
                    model.text_branch.embeddings.token_type_embeddings):
            emb.weight.copy_(C._normal(emb.weight.shape, gen, 0.5))
    return model


def text_state(model) -> dict:
    """The text side of the CLAP state dict, in the checkpoint's names (no id buffers: recent
    transformers do not save them; older checkpoints have `embeddings.position_ids`)."""
    sd = {}
    for k, v in model.state_dict().items():
        if k.startswith(("text_branch.", "text_projection.")) and not k.endswith(("position_ids", "token_type_ids")):
            sd[PREFIX + k] = v
    return sd


def empty_tokens(length: int = 512):
    ids = torch.ones(1, length, dtype=torch.long)
    ids[0, 0], ids[0, 1] = 0, 2
    mask = torch.zeros(1, length, dtype=torch.long)
    mask[0, :2] = 1
    return ids, mask


def traced(model, ids, mask, record):
    """CLAP.encode_text / get_text_embedding (the original methods), and the named
    intermediates from hooks on the transformers modules."""
    names = [("text_branch.embeddings", model.text_branch.embeddings)]
    names += [(f"text_branch.encoder.layer.{i}", l) for i, l in enumerate(model.text_branch.encoder.layer)]
    names += [("text_branch.pooler", model.text_branch.pooler)]
    store, remove = C.capture_outputs(names)
    with torch.no_grad():
        emb = model.encode_text({"input_ids": ids, "attention_mask": mask}, device="cpu")
    remove()
    for name, _ in names:
        out = store[name]
        record(name, out[0] if isinstance(out, tuple) else out)
    with torch.no_grad():
        normed = model.get_text_embedding({"input_ids": ids.clone(), "attention_mask": mask.clone()})
    assert torch.allclose(normed, torch.nn.functional.normalize(emb, dim=-1))
    return emb, normed


def make_golden(gen):
    model = build_clap(TINY, JOINT_TINY, gen)
    cfg = {"clap_text": {**TINY, "layer_norm_eps": 1e-5, "pad_token_id": 1, "joint_embed_shape": JOINT_TINY}}
    fx = C.Fixture("clap_text", SCRIPT, VERSION, SEED,
                   "audioldm 0.1.1 CLAP text side (RobertaModel + text_projection) at reduced size, "
                   "random weights; a padded batch and \"\" at length 512", cfg,
                   libs=("transformers", "audioldm"))
    sd = text_state(model)
    fx.state(sd)
    # a: 3 sequences, lengths 9, 6, 3 (<s> ... </s>, then <pad>)
    lens = (9, 6, 3)
    ids = torch.ones(3, 9, dtype=torch.long)
    mask = torch.zeros(3, 9, dtype=torch.long)
    for i, n in enumerate(lens):
        ids[i, 0] = 0
        ids[i, 1:n - 1] = torch.randint(3, TINY["vocab_size"], (n - 2,), generator=gen)
        ids[i, n - 1] = 2
        mask[i, :n] = 1
    cases = [("a", ids, mask), ("empty", *empty_tokens())]
    for case, ids, mask in cases:
        fx.input(f"{case}.input_ids", ids)
        fx.input(f"{case}.attention_mask", mask)
        emb, normed = traced(model, ids, mask, lambda n, t, case=case: fx.intermediate(f"{case}.{n}", t))
        fx.output(f"{case}.text_embeds", emb)
        fx.output(f"{case}.text_embeds_normalized", normed)
        print("  " + C.describe(f"{case}.text_embeds", emb))
    fx.write()
    return sd, cases


def add_to_audioldm_ckpt(sd):
    path = C.FIXTURES / "ckpt" / "audioldm_tiny.ckpt"
    ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    state = {k: v for k, v in ckpt["state_dict"].items() if not k.startswith("cond_stage_model.")}
    state.update({k: v.clone() for k, v in sd.items()})
    ckpt["state_dict"] = state
    torch.save(ckpt, str(path))
    print(f"  wrote {path.relative_to(C.REPO)}: {path.stat().st_size:,} bytes, {len(sd)} CLAP text tensors added")


def tiny_text_state() -> dict:
    """The golden's text tower (same seed, same draws), for make_audioldm.py's checkpoint."""
    return text_state(build_clap(TINY, JOINT_TINY, torch.Generator().manual_seed(SEED)))


PROMPT_SEED = 16
PROMPTS = ["rain on a tin roof", "A dog barks twice, then a car passes by in the rain!",
           "thunder and heavy rain, " * 120]
TOKENIZER_DIR = C.FIXTURES / "tokenizer" / "roberta"


def audioldm_tokenize(tknz, text):
    """audioldm/clap/encoders.py, CLAPAudioEmbeddingClassifierFreev2.tokenizer (verbatim body)."""
    result = tknz(
        text,
        padding="max_length",
        truncation=True,
        max_length=512,
        return_tensors="pt",
    )
    return {k: v.squeeze(0) for k, v in result.items()}


def make_prompt_golden():
    from transformers import RobertaTokenizer
    tknz = RobertaTokenizer(str(TOKENIZER_DIR / "vocab.json"), str(TOKENIZER_DIR / "merges.txt"))
    sizes = {**TINY, "vocab_size": len(tknz.get_vocab())}
    gen = torch.Generator().manual_seed(PROMPT_SEED)
    model = build_clap(sizes, JOINT_TINY, gen)
    cfg = {"clap_text": {**sizes, "layer_norm_eps": 1e-5, "pad_token_id": 1, "joint_embed_shape": JOINT_TINY},
           "prompts": PROMPTS}
    fx = C.Fixture("clap_prompt", SCRIPT, VERSION, PROMPT_SEED,
                   "audioldm 0.1.1 CLAP text side at reduced size with the tokenizer fixture's vocabulary, "
                   "random weights; three prompts tokenized as AudioLDM does, get_text_embedding", cfg,
                   libs=("transformers", "audioldm"))
    fx.state(text_state(model))
    data = audioldm_tokenize(tknz, PROMPTS)
    ids, mask = data["input_ids"], data["attention_mask"]
    assert ids.shape == (3, 512) and int(mask[2].sum()) == 512, "the last prompt must be truncated"
    fx.input("input_ids", ids)
    fx.input("attention_mask", mask)
    with torch.no_grad():
        normed = model.get_text_embedding(data)
    fx.output("text_embeds_normalized", normed)
    print("  " + C.describe("text_embeds_normalized", normed))
    fx.write()


def main():
    if sys.argv[1:] == ["prompt"]:
        print("clap_prompt")
        make_prompt_golden()
        return
    gen = torch.Generator().manual_seed(SEED)
    print("clap_text")
    sd, _ = make_golden(gen)
    print("ckpt/audioldm_tiny.ckpt (+ CLAP text tower)")
    add_to_audioldm_ckpt(sd)
    print("clap_prompt")
    make_prompt_golden()


if __name__ == "__main__":
    main()
