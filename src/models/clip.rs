//! OpenAI CLIP's vision tower (ViT-L/14 for SSV2A): pixels [B, 3, 224, 224] → image
//! embedding [B, 768] (before L2 normalisation).
//!
//! Reference: openai/CLIP @ dcba3cb, `clip/model.py` `VisionTransformer` (what SSV2A runs via
//! `clip.load("ViT-L/14")`); the same network as transformers' `CLIPVisionModelWithProjection`.
//! Patchify (Conv2d k = s = patch, no bias) → prepend the class embedding → add the positional
//! embedding → `ln_pre` → pre-LN residual blocks (multi-head attention with 1/√d scaling,
//! MLP with QuickGELU `x·σ(1.702x)`) → `ln_post` of the class token → `@ proj` (no bias).
//! LayerNorm eps 1e-5. The patch convolution runs as one matmul over unfolded patches (the
//! stride equals the kernel, so the patches do not overlap).
//!
//! Weights: `ssv2a convert --kind clip` reads the OpenAI layout (`ViT-L-14.pt`, a TorchScript
//! archive, or a `state_dict`) or the Hugging Face layout (`openai/clip-vit-large-patch14`
//! `model.safetensors` / `pytorch_model.bin`) and writes a `clip` pack in the **Hugging Face
//! names** (`vision_model.*`, `visual_projection.weight`, `text_model.*`,
//! `text_projection.weight`, `logit_scale`): the OpenAI `attn.in_proj_weight` is split into
//! `q_proj`/`k_proj`/`v_proj` rows, and `visual.proj` / `text_projection` are transposed into
//! Linear weights. The text tower is kept for the text encoder (not run here).
//!
//! Deviation: SSV2A on CUDA runs CLIP in fp16 (`clip.load` keeps fp16 weights there); here the
//! weights are fp16 (f16 pack) or f32 and the arithmetic is f32.
//!
//! Preprocessing ([`ClipImage`], [`ClipVision::embed_images`]): OpenAI's `_transform(224)` as
//! PIL ≤ 12 computes it, bit for bit against Pillow 11.3 on the test images: bicubic resize of
//! the short side (RGBA premultiplied, palette and 1-bit images NEAREST, as PIL forces for
//! modes "P" and "1"), centre crop with Python's rounding, `convert("RGB")`, then
//! `(x/255 − mean)/std` in f32; CMYK JPEGs are resized in CMYK and converted after, as PIL
//! does. JPEGs are decoded by [`crate::media::jpeg`], which reproduces PIL's libjpeg-turbo decode bit
//! for bit, so the whole preprocessing of the test JPEGs is exact too.

use serde::{Deserialize, Serialize};

use crate::convert::plan::{Plan, Recipe, TensorSource};
use crate::media::image::{CmykImage, Picture, RgbImage, RgbaImage};
use crate::nn::{LayerNorm, Linear};
use crate::ops::Act;
use crate::tensor::{HostTensor, Tensor, Weight};
use crate::weights::Weights;
use crate::{Error, Result};

/// Pack kind of CLIP packs.
pub const KIND: &str = "clip";
const LN_EPS: f32 = 1e-5;

pub use crate::models::Trace;

/// `clip.model.CLIP` constructor arguments (the names `build_model` uses), plus the vision
/// head count, which `CLIP()` derives as `vision_width // 64`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Config {
    pub embed_dim: usize,
    pub image_resolution: usize,
    pub vision_layers: usize,
    pub vision_width: usize,
    pub vision_patch_size: usize,
    pub vision_heads: usize,
    pub context_length: usize,
    pub vocab_size: usize,
    pub transformer_width: usize,
    pub transformer_heads: usize,
    pub transformer_layers: usize,
}

impl Config {
    /// ViT-L/14 at 224 px (`openai/clip-vit-large-patch14`): 768-d embeddings.
    pub fn vit_l14() -> Config {
        Config {
            embed_dim: 768,
            image_resolution: 224,
            vision_layers: 24,
            vision_width: 1024,
            vision_patch_size: 14,
            vision_heads: 16,
            context_length: 77,
            vocab_size: 49408,
            transformer_width: 768,
            transformer_heads: 12,
            transformer_layers: 12,
        }
    }

    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.image_resolution / self.vision_patch_size
    }

    fn check(&self) -> Result<()> {
        let ok = self.vision_patch_size > 0
            && self.image_resolution.is_multiple_of(self.vision_patch_size)
            && self.vision_heads > 0
            && self.vision_width.is_multiple_of(self.vision_heads)
            && (self.vision_width / self.vision_heads).is_multiple_of(4)
            && self.vision_layers > 0
            && self.embed_dim > 0;
        if ok {
            Ok(())
        } else {
            Err(Error::Format(format!("unsupported CLIP vision config {self:?} (head dim must be a multiple of 4)")))
        }
    }
}

/// Which key layout a checkpoint uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// The `clip` package's (`visual.conv1.weight`, `transformer.resblocks.*`, …).
    OpenAi,
    /// transformers' `CLIPModel` (`vision_model.*`, `text_model.*`).
    HuggingFace,
}

fn count_layers(src: &dyn TensorSource, fmt: impl Fn(usize) -> String) -> usize {
    (0..).take_while(|&i| src.contains(&fmt(i))).count()
}

fn dim(src: &dyn TensorSource, name: &str, axis: usize) -> Result<usize> {
    src.shape(name).and_then(|s| s.get(axis).copied()).ok_or_else(|| Error::missing(src.describe(), name.to_string()))
}

/// Keys of a checkpoint that carry no weights (TorchScript attributes, HF id buffers).
fn ignored(name: &str) -> bool {
    matches!(name, "input_resolution" | "context_length" | "vocab_size") || name.ends_with("position_ids")
}

/// Detect the layout and read the config from the tensor shapes (as `clip.build_model`
/// does), then apply `overrides`: a JSON object in this crate's names (e.g. the tiny fixture's
/// `vision_heads`) or a transformers `config.json` (`vision_config.num_attention_heads`, ...).
/// An override that contradicts the shapes is an error.
pub fn config_from_source(src: &dyn TensorSource, overrides: Option<&serde_json::Value>) -> Result<(Layout, Config, bool)> {
    let (layout, mut c, text) = if src.contains("visual.conv1.weight") {
        let w = dim(src, "visual.conv1.weight", 0)?;
        let p = dim(src, "visual.conv1.weight", 3)?;
        let t = dim(src, "visual.positional_embedding", 0)?;
        let grid = ((t.saturating_sub(1)) as f64).sqrt().round() as usize;
        let text = src.contains("token_embedding.weight");
        let tw = if text { dim(src, "ln_final.weight", 0)? } else { 0 };
        let c = Config {
            embed_dim: dim(src, "visual.proj", 1)?,
            image_resolution: p * grid,
            vision_layers: count_layers(src, |i| format!("visual.transformer.resblocks.{i}.attn.in_proj_weight")),
            vision_width: w,
            vision_patch_size: p,
            vision_heads: w / 64,
            context_length: if text { dim(src, "positional_embedding", 0)? } else { 0 },
            vocab_size: if text { dim(src, "token_embedding.weight", 0)? } else { 0 },
            transformer_width: tw,
            transformer_heads: tw / 64,
            transformer_layers: count_layers(src, |i| format!("transformer.resblocks.{i}.attn.in_proj_weight")),
        };
        (Layout::OpenAi, c, text)
    } else if src.contains("vision_model.embeddings.patch_embedding.weight") {
        let pe = "vision_model.embeddings.patch_embedding.weight";
        let w = dim(src, pe, 0)?;
        let p = dim(src, pe, 3)?;
        let t = dim(src, "vision_model.embeddings.position_embedding.weight", 0)?;
        let grid = ((t.saturating_sub(1)) as f64).sqrt().round() as usize;
        let text = src.contains("text_model.embeddings.token_embedding.weight");
        let tw = if text { dim(src, "text_model.final_layer_norm.weight", 0)? } else { 0 };
        let c = Config {
            embed_dim: dim(src, "visual_projection.weight", 0)?,
            image_resolution: p * grid,
            vision_layers: count_layers(src, |i| format!("vision_model.encoder.layers.{i}.self_attn.q_proj.weight")),
            vision_width: w,
            vision_patch_size: p,
            vision_heads: w / 64,
            context_length: if text { dim(src, "text_model.embeddings.position_embedding.weight", 0)? } else { 0 },
            vocab_size: if text { dim(src, "text_model.embeddings.token_embedding.weight", 0)? } else { 0 },
            transformer_width: tw,
            transformer_heads: tw / 64,
            transformer_layers: count_layers(src, |i| format!("text_model.encoder.layers.{i}.self_attn.q_proj.weight")),
        };
        (Layout::HuggingFace, c, text)
    } else {
        return Err(Error::Format(format!(
            "{}: not a CLIP checkpoint (no visual.conv1.weight or vision_model.embeddings.patch_embedding.weight)",
            src.describe()
        )));
    };
    if let Some(o) = overrides {
        apply_overrides(&mut c, o)?;
    }
    c.check()?;
    Ok((layout, c, text))
}

fn apply_overrides(c: &mut Config, o: &serde_json::Value) -> Result<()> {
    let get = |path: &str| o.pointer(path).and_then(|v| v.as_u64()).map(|v| v as usize);
    // Head counts cannot be read from shapes; everything else must agree with them.
    if let Some(h) = get("/vision_heads").or(get("/vision_config/num_attention_heads")) {
        c.vision_heads = h;
    }
    if let Some(h) = get("/transformer_heads").or(get("/text_config/num_attention_heads")) {
        c.transformer_heads = h;
    }
    for (path, have) in [
        ("/embed_dim", c.embed_dim),
        ("/projection_dim", c.embed_dim),
        ("/image_resolution", c.image_resolution),
        ("/vision_config/image_size", c.image_resolution),
        ("/vision_layers", c.vision_layers),
        ("/vision_config/num_hidden_layers", c.vision_layers),
        ("/vision_width", c.vision_width),
        ("/vision_config/hidden_size", c.vision_width),
        ("/vision_patch_size", c.vision_patch_size),
        ("/vision_config/patch_size", c.vision_patch_size),
    ] {
        if let Some(v) = get(path) {
            if v != have {
                return Err(Error::Format(format!("CLIP config says {} = {v}, the checkpoint's shapes say {have}", &path[1..])));
            }
        }
    }
    if let Some(act) = o.pointer("/vision_config/hidden_act").and_then(|v| v.as_str()) {
        if act != "quick_gelu" {
            return Err(Error::Format(format!("CLIP vision hidden_act `{act}` is not supported (OpenAI CLIP uses quick_gelu)")));
        }
    }
    if let Some(eps) = o.pointer("/vision_config/layer_norm_eps").and_then(|v| v.as_f64()) {
        if (eps - 1e-5).abs() > 1e-12 {
            return Err(Error::Format(format!("CLIP layer_norm_eps {eps} is not supported (1e-5)")));
        }
    }
    Ok(())
}

/// One transformer block's mapping (OpenAI prefix `p`, HF prefix `q`), width `w`.
fn block(plan: &mut Plan, src: &dyn TensorSource, layout: Layout, p: &str, q: &str, w: usize, used: &mut Vec<String>) -> Result<()> {
    // OpenAI CLIP's MLP is always 4× wide (`mlp_ratio`); a shape error names the tensor.
    let hidden = 4 * w;
    let copy = |plan: &mut Plan, from: String, to: String, shape: Vec<usize>, used: &mut Vec<String>| -> Result<()> {
        plan.copy_as(src, &from, &to, &shape)?;
        used.push(from);
        Ok(())
    };
    match layout {
        Layout::OpenAi => {
            let (iw, ib) = (format!("{p}.attn.in_proj_weight"), format!("{p}.attn.in_proj_bias"));
            for (name, s) in [(&iw, vec![3 * w, w]), (&ib, vec![3 * w])] {
                match src.shape(name) {
                    Some(got) if got == s => {}
                    Some(got) => return Err(Error::TensorShape { file: src.describe(), name: name.to_string(), expected: s, got }),
                    None => return Err(Error::missing(src.describe(), name.to_string())),
                }
            }
            for (i, n) in ["q_proj", "k_proj", "v_proj"].iter().enumerate() {
                plan.push(format!("{q}.self_attn.{n}.weight"), vec![w, w], Recipe::Rows { src: iw.clone(), start: i * w, len: w });
                plan.push(format!("{q}.self_attn.{n}.bias"), vec![w], Recipe::Rows { src: ib.clone(), start: i * w, len: w });
            }
            used.push(iw);
            used.push(ib);
            for (a, b, s) in [
                ("attn.out_proj.weight", "self_attn.out_proj.weight", vec![w, w]),
                ("attn.out_proj.bias", "self_attn.out_proj.bias", vec![w]),
                ("ln_1.weight", "layer_norm1.weight", vec![w]),
                ("ln_1.bias", "layer_norm1.bias", vec![w]),
                ("mlp.c_fc.weight", "mlp.fc1.weight", vec![hidden, w]),
                ("mlp.c_fc.bias", "mlp.fc1.bias", vec![hidden]),
                ("mlp.c_proj.weight", "mlp.fc2.weight", vec![w, hidden]),
                ("mlp.c_proj.bias", "mlp.fc2.bias", vec![w]),
                ("ln_2.weight", "layer_norm2.weight", vec![w]),
                ("ln_2.bias", "layer_norm2.bias", vec![w]),
            ] {
                copy(plan, format!("{p}.{a}"), format!("{q}.{b}"), s, used)?;
            }
        }
        Layout::HuggingFace => {
            for (n, s) in [
                ("self_attn.q_proj.weight", vec![w, w]),
                ("self_attn.q_proj.bias", vec![w]),
                ("self_attn.k_proj.weight", vec![w, w]),
                ("self_attn.k_proj.bias", vec![w]),
                ("self_attn.v_proj.weight", vec![w, w]),
                ("self_attn.v_proj.bias", vec![w]),
                ("self_attn.out_proj.weight", vec![w, w]),
                ("self_attn.out_proj.bias", vec![w]),
                ("layer_norm1.weight", vec![w]),
                ("layer_norm1.bias", vec![w]),
                ("mlp.fc1.weight", vec![hidden, w]),
                ("mlp.fc1.bias", vec![hidden]),
                ("mlp.fc2.weight", vec![w, hidden]),
                ("mlp.fc2.bias", vec![w]),
                ("layer_norm2.weight", vec![w]),
                ("layer_norm2.bias", vec![w]),
            ] {
                copy(plan, format!("{q}.{n}"), format!("{q}.{n}"), s, used)?;
            }
        }
    }
    Ok(())
}

/// Converter rules: an OpenAI or HF CLIP checkpoint → a `clip` pack in HF names (see the module
/// docs). Strict: every source tensor must be mapped (TorchScript's `input_resolution`,
/// `context_length`, `vocab_size` and HF's `position_ids` are skipped).
pub fn plan(src: &dyn TensorSource, overrides: Option<&serde_json::Value>) -> Result<Plan> {
    let (layout, c, text) = config_from_source(src, overrides)?;
    let mut plan = Plan::new(KIND, serde_json::to_string(&c).map_err(|e| Error::Format(e.to_string()))?);
    let mut used: Vec<String> = vec![];
    let (w, p, t) = (c.vision_width, c.vision_patch_size, c.grid() * c.grid() + 1);
    let oa = layout == Layout::OpenAi;
    let map = |plan: &mut Plan, openai: &str, hf: &str, shape: Vec<usize>, used: &mut Vec<String>| -> Result<()> {
        let from = if oa { openai } else { hf };
        plan.copy_as(src, from, hf, &shape)?;
        used.push(from.to_string());
        Ok(())
    };
    map(&mut plan, "visual.conv1.weight", "vision_model.embeddings.patch_embedding.weight", vec![w, 3, p, p], &mut used)?;
    map(&mut plan, "visual.class_embedding", "vision_model.embeddings.class_embedding", vec![w], &mut used)?;
    map(&mut plan, "visual.positional_embedding", "vision_model.embeddings.position_embedding.weight", vec![t, w], &mut used)?;
    for s in ["weight", "bias"] {
        map(&mut plan, &format!("visual.ln_pre.{s}"), &format!("vision_model.pre_layrnorm.{s}"), vec![w], &mut used)?;
        map(&mut plan, &format!("visual.ln_post.{s}"), &format!("vision_model.post_layernorm.{s}"), vec![w], &mut used)?;
    }
    for i in 0..c.vision_layers {
        block(&mut plan, src, layout, &format!("visual.transformer.resblocks.{i}"), &format!("vision_model.encoder.layers.{i}"), w, &mut used)?;
    }
    let projection = |plan: &mut Plan, openai: &str, hf: &str, d_in: usize, used: &mut Vec<String>| -> Result<()> {
        if oa {
            match src.shape(openai) {
                Some(s) if s == [d_in, c.embed_dim] => plan.push(hf, vec![c.embed_dim, d_in], Recipe::Transpose(openai.into())),
                Some(s) => return Err(Error::TensorShape { file: src.describe(), name: openai.to_string(), expected: vec![d_in, c.embed_dim], got: s }),
                None => return Err(Error::missing(src.describe(), openai.to_string())),
            }
            used.push(openai.into());
            Ok(())
        } else {
            plan.copy(src, hf, &[c.embed_dim, d_in])?;
            used.push(hf.into());
            Ok(())
        }
    };
    projection(&mut plan, "visual.proj", "visual_projection.weight", w, &mut used)?;
    let mut components = vec!["vision"];
    if text {
        let tw = c.transformer_width;
        map(&mut plan, "token_embedding.weight", "text_model.embeddings.token_embedding.weight", vec![c.vocab_size, tw], &mut used)?;
        map(&mut plan, "positional_embedding", "text_model.embeddings.position_embedding.weight", vec![c.context_length, tw], &mut used)?;
        for s in ["weight", "bias"] {
            map(&mut plan, &format!("ln_final.{s}"), &format!("text_model.final_layer_norm.{s}"), vec![tw], &mut used)?;
        }
        for i in 0..c.transformer_layers {
            block(&mut plan, src, layout, &format!("transformer.resblocks.{i}"), &format!("text_model.encoder.layers.{i}"), tw, &mut used)?;
        }
        projection(&mut plan, "text_projection", "text_projection.weight", tw, &mut used)?;
        components.push("text");
    }
    if src.contains("logit_scale") {
        plan.copy(src, "logit_scale", &src.shape("logit_scale").unwrap_or_default())?;
        used.push("logit_scale".into());
    }
    let used: std::collections::BTreeSet<String> = used.into_iter().collect();
    let extra: Vec<String> = src.names().into_iter().filter(|n| !used.contains(n) && !ignored(n)).collect();
    if !extra.is_empty() {
        return Err(Error::Format(format!(
            "{}: {} tensor(s) that are not part of OpenAI CLIP: {}",
            src.describe(),
            extra.len(),
            extra.iter().take(8).cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    plan.metadata.insert("components".into(), components.join(","));
    plan.metadata.insert("source_layout".into(), if oa { "openai" } else { "huggingface" }.into());
    Ok(plan)
}

/// One pre-LN residual attention block (`ResidualAttentionBlock` / `CLIPEncoderLayer`).
struct EncoderLayer {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    layer_norm1: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    layer_norm2: LayerNorm,
    heads: usize,
}

impl EncoderLayer {
    fn load(w: &Weights, width: usize, heads: usize) -> Result<EncoderLayer> {
        let hidden = 4 * width;
        let a = w.sub("self_attn");
        Ok(EncoderLayer {
            q_proj: Linear::load(&a.sub("q_proj"), width, width, true)?,
            k_proj: Linear::load(&a.sub("k_proj"), width, width, true)?,
            v_proj: Linear::load(&a.sub("v_proj"), width, width, true)?,
            out_proj: Linear::load(&a.sub("out_proj"), width, width, true)?,
            layer_norm1: LayerNorm::load(&w.sub("layer_norm1"), width, LN_EPS)?,
            fc1: Linear::load(&w.sub("mlp.fc1"), width, hidden, true)?,
            fc2: Linear::load(&w.sub("mlp.fc2"), hidden, width, true)?,
            layer_norm2: LayerNorm::load(&w.sub("layer_norm2"), width, LN_EPS)?,
            heads,
        })
    }

    /// x: [b, t, w] -> [b, t, w]
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let w = x.shape()[2];
        let d = w / self.heads;
        let n = self.layer_norm1.forward(x)?;
        let q = self.q_proj.forward(&n)?;
        let k = self.k_proj.forward(&n)?;
        let v = self.v_proj.forward(&n)?;
        let a = q.sdpa(&k, &v, self.heads, 1.0 / (d as f32).sqrt())?;
        let x = x.add(&self.out_proj.forward(&a)?)?;
        let h = self.fc1.forward_act(&self.layer_norm2.forward(&x)?, Act::QuickGelu)?;
        x.add(&self.fc2.forward(&h)?)
    }
}

/// The vision tower with its projection.
pub struct ClipVision {
    pub config: Config,
    /// [W, 3, p, p], used as a Linear over unfolded patches.
    patch_embedding: Weight,
    /// [W]
    class_embedding: Tensor,
    /// [g² + 1, W]
    position_embedding: Tensor,
    pre_layrnorm: LayerNorm,
    layers: Vec<EncoderLayer>,
    post_layernorm: LayerNorm,
    /// [embed_dim, W], no bias.
    visual_projection: Linear,
}

/// Checks the pack and returns its config.
pub fn pack_config(w: &Weights) -> Result<Config> {
    w.expect_kind(KIND)?;
    let c: Config = w.config()?;
    c.check()?;
    Ok(c)
}

impl ClipVision {
    /// Load the vision tower from a `clip` pack. Strict over `vision_model.*` and
    /// `visual_projection.*` (the text tower's tensors are left for the text encoder).
    pub fn load(w: &Weights) -> Result<ClipVision> {
        let c = pack_config(w)?;
        let (width, p, t) = (c.vision_width, c.vision_patch_size, c.grid() * c.grid() + 1);
        let v = w.sub("vision_model");
        let e = v.sub("embeddings");
        let model = ClipVision {
            patch_embedding: e.weight("patch_embedding.weight", &[width, 3, p, p])?,
            class_embedding: e.tensor("class_embedding", &[width])?,
            position_embedding: e.tensor("position_embedding.weight", &[t, width])?,
            pre_layrnorm: LayerNorm::load(&v.sub("pre_layrnorm"), width, LN_EPS)?,
            layers: (0..c.vision_layers).map(|i| EncoderLayer::load(&v.sub(&format!("encoder.layers.{i}")), width, c.vision_heads)).collect::<Result<_>>()?,
            post_layernorm: LayerNorm::load(&v.sub("post_layernorm"), width, LN_EPS)?,
            visual_projection: Linear::load(&w.sub("visual_projection"), width, c.embed_dim, false)?,
            config: c,
        };
        v.finish()?;
        w.sub("visual_projection").finish()?;
        Ok(model)
    }

    /// pixels: [B, 3, R, R] (preprocessed) -> image embeddings [B, embed_dim], before L2
    /// normalisation. Trace names follow the OpenAI modules: `visual.conv1` [B, W, g, g],
    /// `visual.embeddings`, `visual.ln_pre`, `visual.transformer.resblocks.<i>` [B, T, W],
    /// `visual.ln_post` [B, W].
    pub fn forward(&self, pixels: &Tensor, mut trace: Option<&mut Trace>) -> Result<Tensor> {
        let c = &self.config;
        let (r, p, g, w) = (c.image_resolution, c.vision_patch_size, c.grid(), c.vision_width);
        let [b, ch, h, wd] = pixels.dims("clip vision")?;
        if ch != 3 || h != r || wd != r || b == 0 {
            return Err(Error::shape("clip vision", format!("pixels [B, 3, {r}, {r}]"), pixels.shape()));
        }
        let tracing = trace.is_some();
        let mut rec = |name: String, t: &Tensor| {
            if let Some(tr) = trace.as_deref_mut() {
                tr.push((name, t.clone()));
            }
        };
        // Unfold non-overlapping patches in (c, kh, kw) order: [B, g·g, 3·p·p].
        let patches = pixels.reshape([b, 3, g, p, g, p])?.permute(&[0, 2, 4, 1, 3, 5])?.reshape([b, g * g, 3 * p * p])?;
        let x = patches.linear(&self.patch_embedding, None, Act::None)?; // [B, g², W]
        if tracing {
            rec("visual.conv1".into(), &x.permute(&[0, 2, 1])?.reshape([b, w, g, g])?);
        }
        let cls = self.class_embedding.reshape([1, 1, w])?.expand(&[b, 1, w])?;
        let x = Tensor::concat(&[&cls, &x], 1)?.add(&self.position_embedding)?; // [B, T, W]
        rec("visual.embeddings".into(), &x);
        let mut x = self.pre_layrnorm.forward(&x)?;
        rec("visual.ln_pre".into(), &x);
        for (i, l) in self.layers.iter().enumerate() {
            x = l.forward(&x)?;
            rec(format!("visual.transformer.resblocks.{i}"), &x);
        }
        let x = x.slice(1, 0, 1, 1)?.reshape([b, w])?;
        let x = self.post_layernorm.forward(&x)?;
        rec("visual.ln_post".into(), &x);
        self.visual_projection.forward(&x)
    }

    /// CLIP embeddings of images, as SSV2A computes them (`utils.py:146-156`): OpenAI
    /// preprocessing on the CPU, the vision tower, L2 normalisation. Returns [B, embed_dim].
    pub async fn embed_images(&self, images: &[ClipImage<'_>]) -> Result<HostTensor> {
        let r = self.config.image_resolution;
        if images.is_empty() {
            return Err(Error::arg("clip embed_images", "no images"));
        }
        let mut px = Vec::with_capacity(images.len() * 3 * r * r);
        for img in images {
            px.extend(img.preprocess(r)?);
        }
        let gpu = self.class_embedding.gpu();
        let x = Tensor::from_slice(gpu, &px, [images.len(), 3, r, r])?;
        let e = self.forward(&x, None)?.l2_normalize()?;
        e.to_host().await
    }
}

/// An image for [`ClipVision::embed_images`].
#[derive(Clone, Copy, Debug)]
pub enum ClipImage<'a> {
    Rgb(&'a RgbImage),
    /// Resized premultiplied, as PIL resizes RGBA, then the alpha is dropped.
    Rgba(&'a RgbaImage),
    /// A palette ("P" mode) image expanded to RGB: PIL resizes these with NEAREST whatever
    /// filter is asked, so this does too (see [`crate::media::image::clip_preprocess_nearest`]).
    Palette(&'a RgbImage),
    /// A CMYK image: resized in CMYK, converted to RGB after, as PIL does.
    Cmyk(&'a CmykImage),
}

impl ClipImage<'_> {
    pub fn width(&self) -> usize {
        match self {
            ClipImage::Rgb(i) | ClipImage::Palette(i) => i.width,
            ClipImage::Rgba(i) => i.width,
            ClipImage::Cmyk(i) => i.width,
        }
    }
    pub fn height(&self) -> usize {
        match self {
            ClipImage::Rgb(i) | ClipImage::Palette(i) => i.height,
            ClipImage::Rgba(i) => i.height,
            ClipImage::Cmyk(i) => i.height,
        }
    }

    /// OpenAI `_transform(n_px)`: [3, n_px, n_px] normalised values.
    pub fn preprocess(&self, n_px: usize) -> Result<Vec<f32>> {
        match self {
            ClipImage::Rgb(i) => crate::media::image::clip_preprocess(i, n_px),
            ClipImage::Rgba(i) => crate::media::image::clip_preprocess_rgba(i, n_px),
            ClipImage::Palette(i) => crate::media::image::clip_preprocess_nearest(i, n_px),
            ClipImage::Cmyk(i) => crate::media::image::clip_preprocess_cmyk(i, n_px),
        }
    }

    /// The steps of `_transform(n_px)` before scaling: `Resize(n_px, BICUBIC)` (NEAREST for
    /// palette images, premultiplied for RGBA), `CenterCrop(n_px)`, `convert("RGB")`.
    pub fn resize_crop(&self, n_px: usize) -> Result<RgbImage> {
        use crate::media::image::{round_half_even, shorter_side_size};
        let (w, h) = shorter_side_size(self.width(), self.height(), n_px);
        let r = match self {
            ClipImage::Rgb(i) => i.resize_bicubic(w, h)?,
            ClipImage::Rgba(i) => RgbImage::from_rgba_drop_alpha(&i.resize_bicubic(w, h)?),
            ClipImage::Palette(i) => i.resize_nearest_pil(w, h)?,
            ClipImage::Cmyk(i) => i.resize_bicubic(w, h)?.to_rgb(),
        };
        let top = round_half_even((h - n_px) as f64 / 2.0);
        let left = round_half_even((w - n_px) as f64 / 2.0);
        r.crop(left, top, left + n_px as f64, top + n_px as f64)
    }
}

impl<'a> From<&'a Picture> for ClipImage<'a> {
    fn from(p: &'a Picture) -> ClipImage<'a> {
        match p {
            Picture::Rgb(i) => ClipImage::Rgb(i),
            Picture::Rgba(i) => ClipImage::Rgba(i),
            Picture::Palette(i) => ClipImage::Palette(i),
            Picture::Cmyk(i) => ClipImage::Cmyk(i),
        }
    }
}
