//! CLAP as AudioLDM carries it (`cond_stage_model.model.*` of an AudioLDM checkpoint; see
//! ../shared/spec/models.md §4): for now the text tower ([`text`]), which gives classifier-free
//! guidance its unconditional embedding, the L2-normalised text embedding of `""`.
//!
//! The AudioLDM converter packs the text tower under its original names and stores that
//! embedding as [`UNCOND_TENSOR`] ([`add_uncond_embedding`]); packs made before it have no
//! tower and no embedding. The demo's random AudioLDM pack computes its own the same way.

pub mod text;

pub use text::{ClapText, TextConfig, TextTokens};

use crate::convert::plan::{Plan, Recipe, TensorSource};
use crate::models::audioldm::{self, AudioLdmConfig};
use crate::weights::{serialize_pack, PackTensor, Weights};
use crate::{Error, Gpu, Result};

/// Where CLAP lives in an AudioLDM state dict and pack.
pub const PREFIX: &str = "cond_stage_model.model";

/// The AudioLDM pack component name of the text tower.
pub const TEXT_COMPONENT: &str = "clap_text";

/// Name of the stored unconditional embedding in an AudioLDM pack ([joint_embed_shape], unit
/// norm, f32).
pub const UNCOND_TENSOR: &str = "uncond_embedding";

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
