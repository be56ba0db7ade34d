//! CLAP as AudioLDM carries it (`cond_stage_model.model.*` of an AudioLDM checkpoint; see
//! ../shared/spec/models.md §4): the text tower ([`text`]), which gives classifier-free
//! guidance its unconditional embedding, the L2-normalised text embedding of `""`, and the
//! audio tower ([`audio`]: HTSAT on 48 kHz waveforms, with its front end in [`frontend`] and
//! Swin token bookkeeping in [`swin`]), for re-ranking AudioLDM's candidates and audio prompts.
//! [`load_audio`] loads it from an AudioLDM pack; packs converted before it have none and say so.
//!
//! The AudioLDM converter packs the text tower under its original names and stores that
//! embedding as [`UNCOND_TENSOR`] ([`add_uncond_embedding`]); packs made before it have no
//! tower and no embedding. The demo's random AudioLDM pack computes its own the same way.
//!
//! **The tokenizer travels in the pack** as two `__metadata__` strings, the files' exact text:
//! [`TOKENIZER_VOCAB_META`] (`vocab.json`) and [`TOKENIZER_MERGES_META`] (`merges.txt`), with
//! their sha256 in `tokenizer.vocab_sha256` / `tokenizer.merges_sha256` ([`add_tokenizer`]).
//! Metadata rather than u8 tensors: the files are text, every pack source (files, web bytes, the
//! demo's random packs) carries metadata without new tensor dtypes, and the strict tensor
//! accounting of [`Weights::finish`] stays about weights. roberta-base's files make the header
//! about 1.4 MB. The converter builds the tokenizer from them before writing anything, so a
//! malformed file fails the conversion; a pack without them still runs every image mode, and
//! text-to-audio says how to add them ([`load_tokenizer`]).

pub mod audio;
pub mod frontend;
pub mod swin;
pub mod text;

pub use audio::{AudioConfig, ClapAudio};
pub use text::{ClapText, TextConfig, TextTokens};

use crate::convert::plan::{Plan, Recipe, TensorSource};
use crate::models::audioldm::{self, AudioLdmConfig};
use crate::tokenize::RobertaTokenizer;
use crate::weights::{serialize_pack, PackTensor, Weights};
use crate::{Error, Gpu, Result};

/// Where CLAP lives in an AudioLDM state dict and pack.
pub const PREFIX: &str = "cond_stage_model.model";

/// The AudioLDM pack component name of the text tower.
pub const TEXT_COMPONENT: &str = "clap_text";

/// The AudioLDM pack component name of the audio tower.
pub const AUDIO_COMPONENT: &str = "clap_audio";

/// Name of the stored unconditional embedding in an AudioLDM pack ([joint_embed_shape], unit
/// norm, f32).
pub const UNCOND_TENSOR: &str = "uncond_embedding";

/// Pack metadata holding the tokenizer's `vocab.json` (its text).
pub const TOKENIZER_VOCAB_META: &str = "tokenizer.vocab_json";

/// Pack metadata holding the tokenizer's `merges.txt` (its text).
pub const TOKENIZER_MERGES_META: &str = "tokenizer.merges_txt";

/// AudioLDM's tokenizer length (`padding="max_length", max_length=512`).
pub const TOKENIZER_MAX_LENGTH: usize = 512;

impl TextTokens {
    /// `RobertaTokenizer("")` padded to `len`, as AudioLDM tokenizes the unconditional text:
    /// ids `[<s>=0, </s>=2, <pad>=1, …]`, mask `[1, 1, 0, …]`. No vocabulary is needed.
    pub fn empty_text(len: usize) -> Result<TextTokens> {
        if len < 2 {
            return Err(Error::arg("empty_text", format!("length {len}: \"\" takes 2 tokens (<s> </s>)")));
        }
        let mut ids = vec![1u32; len];
        let mut mask = vec![0f32; len];
        ids[0] = 0;
        ids[1] = 2;
        mask[0] = 1.0;
        mask[1] = 1.0;
        Ok(TextTokens { batch: 1, len, ids, mask })
    }
}

/// CLAP's `get_text_embedding([""])` with AudioLDM's tokenizer settings (length 512, or the
/// model's position limit if smaller): the unit-norm unconditional embedding.
pub async fn uncond_embedding(model: &ClapText) -> Result<Vec<f32>> {
    let len = TOKENIZER_MAX_LENGTH.min(model.config.max_len());
    model.embed(&TextTokens::empty_text(len)?)?.to_vec().await
}

/// Whether an AudioLDM pack holds the CLAP text tower.
pub fn has_text(w: &Weights) -> bool {
    audioldm::has_component(w, TEXT_COMPONENT)
}

/// Load the text tower of an AudioLDM pack (its config is the pack config's `clap_text`).
pub fn load_text(w: &Weights) -> Result<ClapText> {
    let cfg = audioldm::pack_config(w)?;
    let (true, Some(c)) = (has_text(w), cfg.clap_text.as_ref()) else {
        return Err(Error::Format(format!(
            "{}: this AudioLDM pack has no CLAP text tower (components: {}); convert the checkpoint again with this version of `ssv2a convert --kind audioldm`",
            w.source(),
            w.meta("components").unwrap_or("none")
        )));
    };
    ClapText::load(&w.sub(PREFIX), c)
}

/// Whether an AudioLDM pack holds the CLAP audio tower.
pub fn has_audio(w: &Weights) -> bool {
    audioldm::has_component(w, AUDIO_COMPONENT)
}

/// Load the audio tower of an AudioLDM pack (its config is the pack config's `clap_audio`).
/// A pack without it (converted before the audio tower was packed, or from a checkpoint
/// without `cond_stage_model.model.audio_branch.*`) is an error naming the pack and the first
/// missing tensor.
pub fn load_audio(w: &Weights) -> Result<ClapAudio> {
    let cfg = audioldm::pack_config(w)?;
    let (true, Some(c)) = (has_audio(w), cfg.clap_audio.as_ref()) else {
        return Err(Error::Format(format!(
            "{}: this AudioLDM pack has no CLAP audio tower (no `{PREFIX}.audio_branch.patch_embed.proj.weight`; components: {}); \
             convert the checkpoint again with this version of `ssv2a convert --kind audioldm`",
            w.source(),
            w.meta("components").unwrap_or("none")
        )));
    };
    ClapAudio::load(&w.sub(PREFIX), c)
}

/// The unconditional embedding computed from an AudioLDM pack's text tower, or `None` when
/// the pack has none.
pub async fn uncond_from_pack(w: &Weights) -> Result<Option<Vec<f32>>> {
    if !has_text(w) {
        return Ok(None);
    }
    Ok(Some(uncond_embedding(&load_text(w)?).await?))
}

/// For an AudioLDM conversion plan that packs the text tower: run the tower (from the source's
/// f32 values, not the f16-rounded pack) on `""` on `gpu` and add the result to the plan as
/// [`UNCOND_TENSOR`] (f32, [joint_embed_shape]). Returns whether it did; a plan without the
/// tower is left as it is.
pub async fn add_uncond_embedding(gpu: &Gpu, plan: &mut Plan, src: &dyn TensorSource) -> Result<bool> {
    let cfg: AudioLdmConfig =
        AudioLdmConfig::from_json(&serde_json::from_str(&plan.config_json).map_err(|e| Error::Format(format!("AudioLDM plan config: {e}")))?)?;
    let Some(c) = cfg.clap_text.as_ref() else { return Ok(false) };
    if plan.tensors.iter().any(|t| t.name == UNCOND_TENSOR) {
        return Err(Error::Format(format!("{}: the plan already has `{UNCOND_TENSOR}`", src.describe())));
    }
    let text = format!("{PREFIX}.text_");
    let mut tensors = vec![];
    for t in plan.tensors.iter().filter(|t| t.name.starts_with(&text)) {
        tensors.push(PackTensor::f32(t.name.clone(), t.shape.clone(), &t.compute(src)?));
    }
    let meta = crate::weights::pack_metadata(audioldm::KIND, &plan.config_json, "f32");
    let w = Weights::from_bytes(gpu, serialize_pack(&tensors, &meta)?, &format!("{} (CLAP text tower)", src.describe()))?;
    let model = ClapText::load(&w.sub(PREFIX), c)?;
    let u = uncond_embedding(&model).await?;
    if u.len() != c.joint_embed_shape || u.iter().any(|v| !v.is_finite()) {
        return Err(Error::Format(format!("{}: the CLAP text tower gives a non-finite embedding of \"\"", src.describe())));
    }
    plan.push(UNCOND_TENSOR, vec![u.len()], Recipe::Values(u));
    Ok(true)
}

/// What [`fix_tokenizer`] tells a user whose AudioLDM pack has no tokenizer.
pub const TOKENIZER_FIX: &str = "re-run `ssv2a fetch audioldm-s-full-v2 --force` (it downloads roberta-base's vocab.json and merges.txt and converts again), \
     or convert by hand with `ssv2a convert --kind audioldm --tokenizer-dir DIR` (DIR holding roberta-base's vocab.json and merges.txt)";

/// Whether pack metadata carries the tokenizer files.
pub fn has_tokenizer_meta(meta: &std::collections::BTreeMap<String, String>) -> bool {
    meta.contains_key(TOKENIZER_VOCAB_META) && meta.contains_key(TOKENIZER_MERGES_META)
}

/// The error for a pack (named `source`) without the tokenizer files.
pub fn no_tokenizer(source: &str) -> Error {
    Error::Format(format!(
        "{source}: this AudioLDM pack has no text tokenizer (it was converted without roberta-base's vocab.json and merges.txt); {TOKENIZER_FIX}"
    ))
}

/// Build the tokenizer from its two files' bytes (named `vocab_name`, `merges_name` in errors)
/// and check it fits `text`: every id below the tower's vocabulary size.
pub fn build_tokenizer(vocab_json: &[u8], vocab_name: &str, merges_txt: &[u8], merges_name: &str, text: &TextConfig) -> Result<RobertaTokenizer> {
    let tok = RobertaTokenizer::from_files_bytes(vocab_json, merges_txt)
        .map_err(|e| Error::Format(format!("tokenizer files {vocab_name} and {merges_name}: {e}")))?;
    if tok.vocab_size() > text.vocab_size {
        return Err(Error::Format(format!(
            "{vocab_name}: {} tokens, but the CLAP text tower's embedding table has {} rows: the tokenizer does not belong to this checkpoint",
            tok.vocab_size(),
            text.vocab_size
        )));
    }
    Ok(tok)
}

/// The tokenizer stored in an AudioLDM pack, checked against its text tower; an error naming
/// the fix when the pack has none.
pub fn load_tokenizer(w: &Weights) -> Result<RobertaTokenizer> {
    let (Some(v), Some(m)) = (w.meta(TOKENIZER_VOCAB_META), w.meta(TOKENIZER_MERGES_META)) else {
        return Err(no_tokenizer(w.source()));
    };
    let cfg = audioldm::pack_config(w)?;
    let text = cfg.clap_text.as_ref().ok_or_else(|| Error::Format(format!("{}: this AudioLDM pack has no CLAP text tower; {TOKENIZER_FIX}", w.source())))?;
    let src = w.source();
    build_tokenizer(v.as_bytes(), &format!("{src} ({TOKENIZER_VOCAB_META})"), m.as_bytes(), &format!("{src} ({TOKENIZER_MERGES_META})"), text)
}

/// For an AudioLDM conversion plan that packs the text tower: check the tokenizer files
/// (`vocab.json`, `merges.txt` bytes, named in errors) by building the tokenizer, and store
/// their text and sha256 in the plan's metadata. A plan without the text tower is an error
/// (the tokenizer would have nothing to feed). Native only (conversion runs natively).
#[cfg(not(target_arch = "wasm32"))]
pub fn add_tokenizer(plan: &mut Plan, vocab_json: &[u8], vocab_name: &str, merges_txt: &[u8], merges_name: &str) -> Result<()> {
    let cfg: AudioLdmConfig =
        AudioLdmConfig::from_json(&serde_json::from_str(&plan.config_json).map_err(|e| Error::Format(format!("AudioLDM plan config: {e}")))?)?;
    let Some(text) = cfg.clap_text.as_ref() else {
        return Err(Error::Format(format!("tokenizer files {vocab_name} and {merges_name} given, but the checkpoint has no CLAP text tower to use them")));
    };
    build_tokenizer(vocab_json, vocab_name, merges_txt, merges_name, text)?;
    let utf8 = |b: &[u8], name: &str| {
        std::str::from_utf8(b).map(str::to_string).map_err(|e| Error::Format(format!("{name}: not UTF-8 text (invalid byte at offset {})", e.valid_up_to())))
    };
    let sha = |b: &[u8]| {
        use sha2::Digest;
        sha2::Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect::<String>()
    };
    plan.metadata.insert(TOKENIZER_VOCAB_META.into(), utf8(vocab_json, vocab_name)?);
    plan.metadata.insert(TOKENIZER_MERGES_META.into(), utf8(merges_txt, merges_name)?);
    plan.metadata.insert("tokenizer.vocab_sha256".into(), sha(vocab_json));
    plan.metadata.insert("tokenizer.merges_sha256".into(), sha(merges_txt));
    Ok(())
}

/// AudioLDM's text conditioning, `CLAP.get_text_embedding(tokenizer(prompt))`: tokenized to
/// [`TOKENIZER_MAX_LENGTH`] (or the tower's position limit if smaller), through the tower,
/// L2-normalised. Returns the unit-norm embedding and the tokenizer's [`Encoding`](crate::tokenize::Encoding).
pub async fn prompt_embedding(model: &ClapText, tok: &RobertaTokenizer, prompt: &str) -> Result<(Vec<f32>, crate::tokenize::Encoding)> {
    let len = TOKENIZER_MAX_LENGTH.min(model.config.max_len());
    let enc = tok.encode_padded(prompt, len)?;
    if let Some(&bad) = enc.ids.iter().find(|&&i| i as usize >= model.config.vocab_size) {
        return Err(Error::Format(format!("token id {bad} is outside the CLAP text tower's {} embeddings", model.config.vocab_size)));
    }
    let tokens = TextTokens { batch: 1, len, ids: enc.ids.clone(), mask: enc.attention_mask.iter().map(|&m| m as f32).collect() };
    let e = model.embed(&tokens)?.to_vec().await?;
    if e.iter().any(|v| !v.is_finite()) {
        return Err(Error::Format("the CLAP text tower gives a non-finite embedding of the prompt".into()));
    }
    Ok((e, enc))
}
