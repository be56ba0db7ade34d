//! CLAP's text tower as AudioLDM stores it: `cond_stage_model.model.text_branch` (a
//! transformers `RobertaModel`, roberta-base in the released checkpoints) and
//! `cond_stage_model.model.text_projection` (Linear → ReLU → Linear).
//!
//! Reference: audioldm 0.1.1 `audioldm/clap/open_clip/model.py`, class `CLAP` with tmodel
//! "roberta": `encode_text` = `text_projection(text_branch(input_ids, attention_mask)
//! ["pooler_output"])`, and `get_text_embedding` L2-normalises that. `RobertaModel` (transformers):
//! - embeddings: word + position + token type (all type 0) → LayerNorm. Position ids are
//!   `cumsum(ids ≠ pad)·(ids ≠ pad) + pad` (`create_position_ids_from_input_ids`: they come
//!   from the **input ids**, not from the attention mask; real tokens start at pad + 1 = 2);
//! - post-LN layers: self-attention with the additive mask `(1 − mask)·f32::MIN` on the keys,
//!   1/√d scaling → dense + residual → LayerNorm → Linear, GELU (erf), Linear + residual →
//!   LayerNorm; LayerNorm eps 1e-5 (roberta-base's; transformers' class default is 1e-12);
//! - pooler: `tanh(dense(x[:, 0]))`.
//!
//! Sizes are read from the tensor shapes at conversion (vocabulary, width, layers, FFN width,
//! positions, token types, projection width). The head count is not in any shape: it comes
//! from the config when one gives `clap_text.num_attention_heads`, else hidden / 64, which is
//! RoBERTa's rule (12 heads for roberta-base's 768, 16 for roberta-large's 1024).
//!
//! Deviations: none in the math. Weights are fp16 (f16 pack) or f32, arithmetic f32.

use serde::{Deserialize, Serialize};

use crate::convert::plan::{names_under, Plan, TensorSource};
use crate::nn::{LayerNorm, Linear};
use crate::ops::attention::{ScoreBias, Sdpa};
use crate::ops::Act;
use crate::tensor::{HostTensor, Tensor, Weight};
use crate::weights::Weights;
use crate::{Error, Result};

pub use crate::models::Trace;

/// The text tower's sizes, in transformers `RobertaConfig` names (plus CLAP's
/// `joint_embed_shape`). In a `--config` file every field is optional: the converter fills
/// the missing ones from the tensor shapes and refuses values that contradict them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub pad_token_id: usize,
    /// CLAP's `joint_embed_shape`: the projection's width (512).
    pub joint_embed_shape: usize,
}

impl Default for TextConfig {
    /// Nothing known but RoBERTa's fixed values (eps 1e-5, pad id 1); sizes 0 = "from shapes".
    fn default() -> Self {
        TextConfig {
            vocab_size: 0,
            hidden_size: 0,
            num_hidden_layers: 0,
            num_attention_heads: 0,
            intermediate_size: 0,
            max_position_embeddings: 0,
            type_vocab_size: 0,
            layer_norm_eps: 1e-5,
            pad_token_id: 1,
            joint_embed_shape: 0,
        }
    }
}

impl TextConfig {
    /// roberta-base with CLAP's 512-d projection (AudioLDM's released checkpoints).
    pub fn roberta_base() -> TextConfig {
        TextConfig {
            vocab_size: 50265,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            max_position_embeddings: 514,
            type_vocab_size: 1,
            joint_embed_shape: 512,
            ..TextConfig::default()
        }
    }

    /// Longest token sequence the position table allows: positions run up to `pad + L`.
    pub fn max_len(&self) -> usize {
        self.max_position_embeddings.saturating_sub(self.pad_token_id + 1)
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    pub fn check(&self) -> Result<()> {
        let c = self;
        let ok = c.vocab_size > c.pad_token_id.max(2)
            && c.hidden_size > 0
            && c.num_hidden_layers > 0
            && c.num_attention_heads > 0
            && c.hidden_size.is_multiple_of(c.num_attention_heads)
            && c.head_dim().is_multiple_of(4)
            && c.intermediate_size > 0
            && c.max_len() > 0
            && c.type_vocab_size > 0
            && c.joint_embed_shape > 0
            && c.layer_norm_eps > 0.0;
        if ok {
            Ok(())
        } else {
            Err(Error::Format(format!(
                "unsupported CLAP text config {c:?} (the vocabulary must hold ids 0..=2, the width split into heads whose size is a multiple of 4)"
            )))
        }
    }
}

fn dim(src: &dyn TensorSource, name: &str, axis: usize) -> Result<usize> {
    src.shape(name).and_then(|s| s.get(axis).copied()).ok_or_else(|| Error::missing(src.describe(), name.to_string()))
}

/// Buffers of a `RobertaModel` state dict that carry no weights (older transformers saved them).
fn is_buffer(name: &str) -> bool {
    name.ends_with("embeddings.position_ids") || name.ends_with("embeddings.token_type_ids")
}

/// The text tower's config from the tensor shapes under `prefix` (e.g.
/// `cond_stage_model.model`), completed by `given` (a partial config; its non-zero sizes must
/// agree with the shapes). `None` when the source has no text tower.
pub fn config_from_source(src: &dyn TensorSource, prefix: &str, given: Option<&TextConfig>) -> Result<Option<TextConfig>> {
    let tb = format!("{prefix}.text_branch");
    let word = format!("{tb}.embeddings.word_embeddings.weight");
    if !src.contains(&word) {
        return Ok(None);
    }
    let hidden = dim(src, &word, 1)?;
    let layers = (0..).take_while(|i| src.contains(&format!("{tb}.encoder.layer.{i}.attention.self.query.weight"))).count();
    let mut c = TextConfig {
        vocab_size: dim(src, &word, 0)?,
        hidden_size: hidden,
        num_hidden_layers: layers,
        num_attention_heads: hidden / 64,
        intermediate_size: dim(src, &format!("{tb}.encoder.layer.0.intermediate.dense.weight"), 0)?,
        max_position_embeddings: dim(src, &format!("{tb}.embeddings.position_embeddings.weight"), 0)?,
        type_vocab_size: dim(src, &format!("{tb}.embeddings.token_type_embeddings.weight"), 0)?,
        joint_embed_shape: dim(src, &format!("{prefix}.text_projection.0.weight"), 0)?,
        ..TextConfig::default()
    };
    let heads_given = given.is_some_and(|g| g.num_attention_heads != 0);
    if !heads_given && (hidden < 64 || hidden % 64 != 0) {
        return Err(Error::Format(format!(
            "{}: the CLAP text width {hidden} does not split into 64-wide heads (RoBERTa's rule), and the head count is not in the tensor shapes: give it as clap_text.num_attention_heads in --config",
            src.describe()
        )));
    }
    if let Some(g) = given {
        if g.num_attention_heads != 0 {
            c.num_attention_heads = g.num_attention_heads;
        }
        c.layer_norm_eps = g.layer_norm_eps;
        c.pad_token_id = g.pad_token_id;
        for (what, want, have) in [
            ("vocab_size", g.vocab_size, c.vocab_size),
            ("hidden_size", g.hidden_size, c.hidden_size),
            ("num_hidden_layers", g.num_hidden_layers, c.num_hidden_layers),
            ("intermediate_size", g.intermediate_size, c.intermediate_size),
            ("max_position_embeddings", g.max_position_embeddings, c.max_position_embeddings),
            ("type_vocab_size", g.type_vocab_size, c.type_vocab_size),
            ("joint_embed_shape", g.joint_embed_shape, c.joint_embed_shape),
        ] {
            if want != 0 && want != have {
                return Err(Error::Format(format!("{}: the config says clap_text.{what} = {want}, the checkpoint's shapes say {have}", src.describe())));
            }
        }
    }
    c.check().map_err(|e| Error::Format(format!("{}: {e}", src.describe())))?;
    Ok(Some(c))
}

/// Converter rules for the text tower under `prefix`: every `text_branch.*` and
/// `text_projection.*` tensor, copied under its own name with its shape checked against `c`.
/// A `text_branch` tensor that is not part of the model (other than the id buffers) is an error.
pub fn plan(plan: &mut Plan, src: &dyn TensorSource, prefix: &str, c: &TextConfig) -> Result<()> {
    let (h, f) = (c.hidden_size, c.intermediate_size);
    let tb = format!("{prefix}.text_branch");
    let mut want: Vec<(String, Vec<usize>)> = vec![
        (format!("{tb}.embeddings.word_embeddings.weight"), vec![c.vocab_size, h]),
        (format!("{tb}.embeddings.position_embeddings.weight"), vec![c.max_position_embeddings, h]),
        (format!("{tb}.embeddings.token_type_embeddings.weight"), vec![c.type_vocab_size, h]),
        (format!("{tb}.embeddings.LayerNorm.weight"), vec![h]),
        (format!("{tb}.embeddings.LayerNorm.bias"), vec![h]),
    ];
    for i in 0..c.num_hidden_layers {
        let l = format!("{tb}.encoder.layer.{i}");
        for (n, o, ii) in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", f, h),
            ("output.dense", h, f),
        ] {
            want.push((format!("{l}.{n}.weight"), vec![o, ii]));
            want.push((format!("{l}.{n}.bias"), vec![o]));
        }
        for n in ["attention.output.LayerNorm", "output.LayerNorm"] {
            want.push((format!("{l}.{n}.weight"), vec![h]));
            want.push((format!("{l}.{n}.bias"), vec![h]));
        }
    }
    let j = c.joint_embed_shape;
    want.push((format!("{tb}.pooler.dense.weight"), vec![h, h]));
    want.push((format!("{tb}.pooler.dense.bias"), vec![h]));
    for (n, s) in [("0.weight", vec![j, h]), ("0.bias", vec![j]), ("2.weight", vec![j, j]), ("2.bias", vec![j])] {
        want.push((format!("{prefix}.text_projection.{n}"), s));
    }
    let known: std::collections::BTreeSet<&str> = want.iter().map(|(n, _)| n.as_str()).collect();
    let extra: Vec<String> = names_under(src, &tb)
        .into_iter()
        .chain(names_under(src, &format!("{prefix}.text_projection")))
        .filter(|n| !known.contains(n.as_str()) && !is_buffer(n))
        .collect();
    if !extra.is_empty() {
        return Err(Error::Format(format!(
            "{}: {} CLAP text tensor(s) that are not part of a {}-layer RobertaModel + text_projection: {}",
            src.describe(),
            extra.len(),
            c.num_hidden_layers,
            extra.iter().take(8).cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    for (name, shape) in want {
        plan.copy(src, &name, &shape)?;
    }
    Ok(())
}

/// One post-LN `RobertaLayer`.
struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_dense: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

impl Layer {
    fn load(w: &Weights, c: &TextConfig) -> Result<Layer> {
        let (h, f, eps) = (c.hidden_size, c.intermediate_size, c.layer_norm_eps as f32);
        Ok(Layer {
            query: Linear::load(&w.sub("attention.self.query"), h, h, true)?,
            key: Linear::load(&w.sub("attention.self.key"), h, h, true)?,
            value: Linear::load(&w.sub("attention.self.value"), h, h, true)?,
            attention_dense: Linear::load(&w.sub("attention.output.dense"), h, h, true)?,
            attention_norm: LayerNorm::load(&w.sub("attention.output.LayerNorm"), h, eps)?,
            intermediate: Linear::load(&w.sub("intermediate.dense"), h, f, true)?,
            output: Linear::load(&w.sub("output.dense"), f, h, true)?,
            output_norm: LayerNorm::load(&w.sub("output.LayerNorm"), h, eps)?,
        })
    }

    /// x: [B, L, H], mask bias [B, L] -> [B, L, H]
    fn forward(&self, x: &Tensor, bias: &Tensor, c: &TextConfig) -> Result<Tensor> {
        let [b, l, _] = x.dims("roberta layer")?;
        let q = self.query.forward(x)?;
        let k = self.key.forward(x)?;
        let v = self.value.forward(x)?;
        let mut o = Sdpa::new(c.num_attention_heads, 1.0 / (c.head_dim() as f32).sqrt());
        o.bias = Some(ScoreBias { tensor: bias, batch_stride: l, head_stride: 0, row_stride: 0, batch_period: b });
        let a = q.sdpa_with(&k, &v, &o)?;
        let x = self.attention_norm.forward(&self.attention_dense.forward(&a)?.add(x)?)?;
        let h = self.intermediate.forward_act(&x, Act::Gelu)?;
        self.output_norm.forward(&self.output.forward(&h)?.add(&x)?)
    }
}

/// Token ids and attention mask of a batch, checked against a [`TextConfig`].
#[derive(Clone, Debug, PartialEq)]
pub struct TextTokens {
    pub batch: usize,
    pub len: usize,
    /// [batch · len] row-major.
    pub ids: Vec<u32>,
    /// [batch · len], 0 or 1.
    pub mask: Vec<f32>,
}

impl TextTokens {
    /// From the f32 tensors of the `stage clap-text` contract: `input_ids` [B, L] (whole
    /// numbers below the vocabulary size) and `attention_mask` [B, L] (0 or 1), L ≤ the
    /// position table's limit.
    pub fn from_host(ids: &HostTensor, mask: &HostTensor, c: &TextConfig) -> Result<TextTokens> {
        const OP: &str = "clap text";
        let [b, l] = match ids.shape[..] {
            [b, l] => [b, l],
            _ => return Err(Error::shape(OP, "input_ids [B, L]", &ids.shape)),
        };
        if mask.shape != ids.shape {
            return Err(Error::shape(OP, format!("attention_mask [{b}, {l}] like input_ids"), &mask.shape));
        }
        if b == 0 || l == 0 {
            return Err(Error::arg(OP, format!("input_ids [{b}, {l}]: need at least one sequence of at least one token")));
        }
        if l > c.max_len() {
            return Err(Error::arg(
                OP,
                format!(
                    "{l} tokens per sequence: this model takes at most {} (max_position_embeddings {} − pad id {} − 1)",
                    c.max_len(),
                    c.max_position_embeddings,
                    c.pad_token_id
                ),
            ));
        }
        let mut out = Vec::with_capacity(ids.data.len());
        for (i, &v) in ids.data.iter().enumerate() {
            if !(v.is_finite() && v >= 0.0 && v.fract() == 0.0 && (v as usize) < c.vocab_size) {
                return Err(Error::arg(OP, format!("input_ids[{}, {}] = {v}: token ids must be whole numbers in 0..{}", i / l, i % l, c.vocab_size)));
            }
            out.push(v as u32);
        }
        if let Some(i) = mask.data.iter().position(|&m| m != 0.0 && m != 1.0) {
            return Err(Error::arg(OP, format!("attention_mask[{}, {}] = {}: the mask must be 0 or 1", i / l, i % l, mask.data[i])));
        }
        Ok(TextTokens { batch: b, len: l, ids: out, mask: mask.data.clone() })
    }

    /// `RobertaEmbeddings` position ids: `cumsum(ids ≠ pad)·(ids ≠ pad) + pad` per row.
    pub fn position_ids(&self, pad: usize) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.ids.len());
        for row in self.ids.chunks(self.len.max(1)) {
            let mut n = 0u32;
            for &id in row {
                if id as usize != pad {
                    n += 1;
                    out.push(pad as u32 + n);
                } else {
                    out.push(pad as u32);
                }
            }
        }
        out
    }
}

/// The word-embedding table: on the GPU when it fits one storage binding even as f32 (the
/// widest a pack stores it), else on the host, where a batch's rows are gathered and uploaded:
/// roberta-base's 50265 × 768 table is 154 MB in f32, over the 128 MiB binding limit of
/// WebGPU's defaults and of lavapipe. Both give the pack's values exactly.
enum WordTable {
    Gpu(Weight),
    Host(HostTensor),
}

impl WordTable {
    /// ids: [n] -> [n, hidden]
    fn gather(&self, gpu: &crate::Gpu, ids: &[u32]) -> Result<Tensor> {
        match self {
            WordTable::Gpu(w) => w.gather_rows(ids),
            WordTable::Host(t) => {
                let (rows, h) = (t.shape[0], t.shape[1]);
                let mut out = Vec::with_capacity(ids.len() * h);
                for &i in ids {
                    let i = i as usize;
                    if i >= rows {
                        return Err(Error::arg("gather_rows", format!("index {i} out of range for a table of {rows} rows")));
                    }
                    out.extend_from_slice(&t.data[i * h..(i + 1) * h]);
                }
                Tensor::from_slice(gpu, &out, [ids.len(), h])
            }
        }
    }
}

/// `RobertaModel` (with pooler) + CLAP's `text_projection`.
pub struct ClapText {
    pub config: TextConfig,
    word_embeddings: WordTable,
    position_embeddings: Weight,
    /// Row 0 of `token_type_embeddings` (every token has type 0): [H].
    token_type: Tensor,
    embeddings_norm: LayerNorm,
    layers: Vec<Layer>,
    pooler: Linear,
    projection_0: Linear,
    projection_2: Linear,
}

impl ClapText {
    /// Load from a view at CLAP's root (`cond_stage_model.model` of an AudioLDM pack), strictly
    /// over `text_branch.*` and `text_projection.*` (the id buffers are never packed).
    pub fn load(w: &Weights, c: &TextConfig) -> Result<ClapText> {
        Self::load_with_table_limit(w, c, w.gpu().max_binding())
    }

    /// [`ClapText::load`] keeping the word-embedding table on the host when its f32 size is
    /// over `limit` bytes (`load` uses the adapter's storage binding limit).
    pub fn load_with_table_limit(w: &Weights, c: &TextConfig, limit: u64) -> Result<ClapText> {
        c.check()?;
        let (h, j, eps) = (c.hidden_size, c.joint_embed_shape, c.layer_norm_eps as f32);
        let tb = w.sub("text_branch");
        let e = tb.sub("embeddings");
        // A Weight like the other tables, so an f16 pack rounds it the same way everywhere.
        let types = e.weight("token_type_embeddings.weight", &[c.type_vocab_size, h])?;
        let model = ClapText {
            word_embeddings: if (c.vocab_size as u64) * (h as u64) * 4 <= limit {
                WordTable::Gpu(e.weight("word_embeddings.weight", &[c.vocab_size, h])?)
            } else {
                WordTable::Host(e.host("word_embeddings.weight", &[c.vocab_size, h])?)
            },
            position_embeddings: e.weight("position_embeddings.weight", &[c.max_position_embeddings, h])?,
            token_type: types.gather_rows(&[0])?.reshape([h])?,
            embeddings_norm: LayerNorm::load(&e.sub("LayerNorm"), h, eps)?,
            layers: (0..c.num_hidden_layers).map(|i| Layer::load(&tb.sub(&format!("encoder.layer.{i}")), c)).collect::<Result<_>>()?,
            pooler: Linear::load(&tb.sub("pooler.dense"), h, h, true)?,
            projection_0: Linear::load(&w.sub("text_projection.0"), h, j, true)?,
            projection_2: Linear::load(&w.sub("text_projection.2"), j, j, true)?,
            config: c.clone(),
        };
        tb.finish()?;
        w.sub("text_projection").finish()?;
        Ok(model)
    }

    /// Tokens -> text embeddings [B, joint_embed_shape] **before** L2 normalisation
    /// (`CLAP.encode_text`). Trace names are the transformers modules': `text_branch.embeddings`
    /// [B, L, H] (after the LayerNorm), `text_branch.encoder.layer.<i>` [B, L, H],
    /// `text_branch.pooler` [B, H].
    pub fn forward(&self, tokens: &TextTokens, mut trace: Option<&mut Trace>) -> Result<Tensor> {
        let c = &self.config;
        let (b, l, h) = (tokens.batch, tokens.len, c.hidden_size);
        if tokens.ids.len() != b * l || tokens.mask.len() != b * l || b == 0 || l == 0 || l > c.max_len() {
            return Err(Error::arg(
                "clap text",
                format!("{b}×{l} tokens with {} ids and {} mask values (at most {} per row)", tokens.ids.len(), tokens.mask.len(), c.max_len()),
            ));
        }
        if let Some(bad) = tokens.ids.iter().find(|&&i| i as usize >= c.vocab_size) {
            return Err(Error::arg("clap text", format!("token id {bad} is outside the vocabulary of {}", c.vocab_size)));
        }
        let mut rec = |name: String, t: &Tensor| {
            if let Some(tr) = trace.as_deref_mut() {
                tr.push((name, t.clone()));
            }
        };
        let gpu = self.token_type.gpu();
        let words = self.word_embeddings.gather(gpu, &tokens.ids)?;
        let positions = self.position_embeddings.gather_rows(&tokens.position_ids(c.pad_token_id))?;
        let x = words.add(&self.token_type)?.add(&positions)?;
        let mut x = self.embeddings_norm.forward(&x)?.reshape([b, l, h])?;
        rec("text_branch.embeddings".into(), &x);
        // transformers' extended attention mask: 0 on tokens, the most negative f32 on padding.
        let bias: Vec<f32> = tokens.mask.iter().map(|&m| (1.0 - m) * f32::MIN).collect();
        let bias = Tensor::from_slice(gpu, &bias, [b, l])?;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x, &bias, c)?;
            rec(format!("text_branch.encoder.layer.{i}"), &x);
        }
        let first = x.slice(1, 0, 1, 1)?.reshape([b, h])?;
        let pooled = self.pooler.forward_act(&first, Act::Tanh)?;
        rec("text_branch.pooler".into(), &pooled);
        let p = self.projection_0.forward_act(&pooled, Act::Relu)?;
        self.projection_2.forward(&p)
    }

    /// `CLAP.get_text_embedding`: [`ClapText::forward`] L2-normalised. -> [B, joint_embed_shape]
    pub fn embed(&self, tokens: &TextTokens) -> Result<Tensor> {
        self.forward(tokens, None)?.l2_normalize()
    }
}
