//! AudioLDM's latent-diffusion UNet (ε-prediction), as `audioldm==0.1.1` runs it for SSV2A:
//! `UNetModel` in `audioldm/latent_diffusion/openaimodel.py` with the `SpatialTransformer` of
//! `attention.py` (github.com/haoheliu/AudioLDM at 4054cb4, the code of the PyPI release).
//!
//! x [n, 8, T, F] (T = time, F = frequency), timesteps t [n], FiLM condition y [n, 512] → ε.
//! - Time embedding: sinusoid of width `model_channels` ([cos | sin], max period 10000, computed
//!   on the CPU in f32 as PyTorch does) → Linear → SiLU → Linear (width 4·model_channels).
//! - FiLM: `film_emb` Linear(y) **concatenated after** the time embedding
//!   (`extra_film_use_concat`), so every ResBlock receives an 8·model_channels vector.
//! - ResBlock: GN(32, 1e-5)+SiLU → conv3×3 → + Linear(SiLU(emb)) over (T, F) → GN+SiLU → conv3×3,
//!   plus the input (1×1 conv when the channel count changes).
//! - SpatialTransformer: GN(32, **1e-6**) → 1×1 proj_in → per block x += attn1(LN x),
//!   x += attn2(LN x), x += FF(LN x) (LN eps 1e-5; attn2 is self-attention too because FiLM
//!   conditioning sets `no_context`; q/k/v without bias; FF = GEGLU C→4C·2 then 4C→C) → 1×1
//!   proj_out → + input. Heads = channels / `num_head_channels` (the stock diffusers config
//!   gets this wrong). Attention runs through the fused `sdpa` kernel, which never stores the
//!   score matrix (the level-1 attention at batch 6 would need ≈200 MB).
//! - Down: conv3×3 stride 2; up: nearest ×2 then conv3×3; output blocks concatenate the skip
//!   after the running activation; out: GN+SiLU → conv3×3.
//!
//! Weights: `model.diffusion_model.*` of the AudioLDM pack, original key names (the converter
//! puts the EMA copy there when the checkpoint has one). Supported: the options AudioLDM's
//! configs use (spatial transformer, FiLM by concatenation, no scale-shift norm, conv
//! resampling, 2-D); anything else is rejected by [`UnetConfig::validate`], not approximated.

use serde::{Deserialize, Serialize};

use crate::nn::{Conv2d, GroupNorm, LayerNorm, Linear};
use crate::ops::conv::Conv2dArgs;
use crate::ops::Act;
use crate::tensor::Tensor;
use crate::weights::Weights;
use crate::{Error, Result};

use super::vae::Trace;

const GN_GROUPS: usize = 32;
/// `normalization()` in openaimodel (ResBlocks and the output head).
const GN_EPS: f32 = 1e-5;
/// `Normalize()` in attention.py (SpatialTransformer input).
const ST_GN_EPS: f32 = 1e-6;
const LN_EPS: f32 = 1e-5;
const MAX_PERIOD: f64 = 10000.0;

fn minus_one() -> i64 {
    -1
}
fn one() -> usize {
    1
}
fn two() -> usize {
    2
}
fn yes() -> bool {
    true
}
fn default_mult() -> Vec<usize> {
    vec![1, 2, 4, 8]
}

/// `UNetModel` constructor arguments (original names and defaults). Keys the runtime does not
/// need (`image_size`, `dropout`, `use_checkpoint`, ...) are ignored.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct UnetConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    /// Base width; also the width of the sinusoidal timestep embedding.
    pub model_channels: usize,
    pub num_res_blocks: usize,
    /// Downsampling factors (1, 2, 4, ...) at which blocks get a SpatialTransformer.
    pub attention_resolutions: Vec<usize>,
    #[serde(default = "default_mult")]
    pub channel_mult: Vec<usize>,
    /// Used when `num_head_channels` is −1.
    #[serde(default = "minus_one")]
    pub num_heads: i64,
    /// Width of one attention head; heads = channels / this (−1: use `num_heads`).
    #[serde(default = "minus_one")]
    pub num_head_channels: i64,
    #[serde(default)]
    pub use_spatial_transformer: bool,
    #[serde(default = "one")]
    pub transformer_depth: usize,
    /// Width of the FiLM condition (CLAP: 512).
    #[serde(default)]
    pub extra_film_condition_dim: Option<usize>,
    #[serde(default)]
    pub extra_film_use_concat: bool,
    #[serde(default)]
    pub context_dim: Option<serde_json::Value>,
    #[serde(default)]
    pub use_scale_shift_norm: bool,
    #[serde(default)]
    pub resblock_updown: bool,
    #[serde(default = "yes")]
    pub conv_resample: bool,
    #[serde(default = "two")]
    pub dims: usize,
    #[serde(default)]
    pub num_classes: Option<usize>,
    #[serde(default)]
    pub n_embed: Option<usize>,
}

impl UnetConfig {
    /// `audioldm-s-full-v2` (audioldm 0.1.1 `default_audioldm_config`).
    pub fn s_full_v2() -> UnetConfig {
        UnetConfig {
            in_channels: 8,
            out_channels: 8,
            model_channels: 128,
            num_res_blocks: 2,
            attention_resolutions: vec![8, 4, 2],
            channel_mult: vec![1, 2, 3, 5],
            num_heads: -1,
            num_head_channels: 32,
            use_spatial_transformer: true,
            transformer_depth: 1,
            extra_film_condition_dim: Some(512),
            extra_film_use_concat: true,
            context_dim: None,
            use_scale_shift_norm: false,
            resblock_updown: false,
            conv_resample: true,
            dims: 2,
            num_classes: None,
            n_embed: None,
        }
    }

    /// Read the original kwargs (`unet_config.params`), then [`UnetConfig::validate`].
    pub fn from_json(v: &serde_json::Value) -> Result<UnetConfig> {
        let c: UnetConfig = serde_json::from_value(v.clone()).map_err(|e| Error::Format(format!("UNet config: {e}")))?;
        c.validate()?;
        Ok(c)
    }

    /// Reject configurations this port does not implement, and sizes that cannot work.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Format(format!("UNet config: {m}")));
        if !self.use_spatial_transformer {
            return bad("only use_spatial_transformer = true (AudioLDM) is implemented".into());
        }
        if self.extra_film_condition_dim.is_none() || !self.extra_film_use_concat {
            return bad("only FiLM conditioning by concatenation (extra_film_condition_dim with extra_film_use_concat = true) is implemented".into());
        }
        if self.use_scale_shift_norm || self.resblock_updown || !self.conv_resample || self.dims != 2 {
            return bad("use_scale_shift_norm, resblock_updown, conv_resample = false and dims ≠ 2 are not implemented".into());
        }
        if self.num_classes.is_some() || self.n_embed.is_some() {
            return bad("num_classes / n_embed are not implemented".into());
        }
        if self.channel_mult.is_empty() || self.channel_mult.contains(&0) || self.num_res_blocks == 0 || self.transformer_depth == 0 {
            return bad(format!("channel_mult {:?}, num_res_blocks {}, transformer_depth {}", self.channel_mult, self.num_res_blocks, self.transformer_depth));
        }
        if self.model_channels == 0 || !self.model_channels.is_multiple_of(2) || self.in_channels == 0 || self.out_channels == 0 {
            return bad(format!("model_channels {} must be even and non-zero", self.model_channels));
        }
        for &m in &self.channel_mult {
            let ch = m * self.model_channels;
            if !ch.is_multiple_of(GN_GROUPS) {
                return bad(format!("{ch} channels are not divisible into {GN_GROUPS} GroupNorm groups"));
            }
            self.heads(ch)?;
        }
        Ok(())
    }

    /// Attention heads and head width of a SpatialTransformer on `ch` channels (the legacy
    /// rule of `UNetModel.__init__`: heads = ch / num_head_channels, head width = ch / heads).
    pub fn heads(&self, ch: usize) -> Result<(usize, usize)> {
        let heads = if self.num_head_channels > 0 {
            ch / self.num_head_channels as usize
        } else if self.num_heads > 0 {
            self.num_heads as usize
        } else {
            return Err(Error::Format("UNet config: either num_heads or num_head_channels must be set".into()));
        };
        if heads == 0 || !ch.is_multiple_of(heads) || !(ch / heads).is_multiple_of(4) {
            return Err(Error::Format(format!("UNet config: {ch} channels in {heads} heads: the head width must be a whole multiple of 4")));
        }
        Ok((heads, ch / heads))
    }

    /// Width of the time embedding (4·model_channels).
    pub fn time_embed_dim(&self) -> usize {
        4 * self.model_channels
    }

    /// Width of the FiLM condition.
    pub fn film_dim(&self) -> usize {
        self.extra_film_condition_dim.unwrap_or(0)
    }

    /// The latent time and frequency sizes must be multiples of this (2^(levels − 1)): each
    /// downsampling halves them and the skip concatenation needs the upsampled size to match.
    pub fn size_multiple(&self) -> usize {
        1 << (self.channel_mult.len() - 1)
    }
}

/// The sinusoidal timestep embedding of `timestep_embedding` (util.py), in f32 the way
/// PyTorch computes it: freqs = exp(−ln(10000)·i/half), args = t·freqs, [cos | sin].
/// t: n timesteps -> [n, dim] row-major.
pub fn timestep_embedding(t: &[f32], dim: usize) -> Vec<f32> {
    let half = dim / 2;
    let neg_log = -(MAX_PERIOD.ln()) as f32;
    let freqs: Vec<f32> = (0..half).map(|i| ((neg_log * i as f32 / half as f32) as f64).exp() as f32).collect();
    let mut out = vec![0f32; t.len() * dim];
    for (row, &tt) in out.chunks_mut(dim).zip(t) {
        for (i, &f) in freqs.iter().enumerate() {
            let a = (tt * f) as f64;
            row[i] = a.cos() as f32;
            row[half + i] = a.sin() as f32;
        }
    }
    out
}

/// Every parameter of the UNet as `(key under model.diffusion_model, shape)`: what a
/// checkpoint of this config holds. Used to build
/// random-weight packs for benchmarks; the golden tests check it against real state dicts.
pub fn param_shapes(c: &UnetConfig) -> Result<Vec<(String, Vec<usize>)>> {
    c.validate()?;
    let mut out: Vec<(String, Vec<usize>)> = vec![];
    let mut p = |k: String, s: &[usize]| out.push((k, s.to_vec()));
    let mc = c.model_channels;
    let ted = c.time_embed_dim();
    let emb = 2 * ted;
    let lin = |p: &mut dyn FnMut(String, &[usize]), k: &str, i: usize, o: usize, bias: bool| {
        p(format!("{k}.weight"), &[o, i]);
        if bias {
            p(format!("{k}.bias"), &[o]);
        }
    };
    let conv = |p: &mut dyn FnMut(String, &[usize]), k: &str, i: usize, o: usize, ks: usize| {
        p(format!("{k}.weight"), &[o, i, ks, ks]);
        p(format!("{k}.bias"), &[o]);
    };
    let norm = |p: &mut dyn FnMut(String, &[usize]), k: &str, ch: usize| {
        p(format!("{k}.weight"), &[ch]);
        p(format!("{k}.bias"), &[ch]);
    };
    let res = |p: &mut dyn FnMut(String, &[usize]), k: &str, i: usize, o: usize| {
        norm(p, &format!("{k}.in_layers.0"), i);
        conv(p, &format!("{k}.in_layers.2"), i, o, 3);
        lin(p, &format!("{k}.emb_layers.1"), emb, o, true);
        norm(p, &format!("{k}.out_layers.0"), o);
        conv(p, &format!("{k}.out_layers.3"), o, o, 3);
        if i != o {
            conv(p, &format!("{k}.skip_connection"), i, o, 1);
        }
    };
    let st = |p: &mut dyn FnMut(String, &[usize]), k: &str, ch: usize| -> Result<()> {
        let (heads, d) = c.heads(ch)?;
        let inner = heads * d;
        norm(p, &format!("{k}.norm"), ch);
        conv(p, &format!("{k}.proj_in"), ch, inner, 1);
        for b in 0..c.transformer_depth {
            let bk = format!("{k}.transformer_blocks.{b}");
            for a in ["attn1", "attn2"] {
                for q in ["to_q", "to_k", "to_v"] {
                    lin(p, &format!("{bk}.{a}.{q}"), inner, inner, false);
                }
                lin(p, &format!("{bk}.{a}.to_out.0"), inner, inner, true);
            }
            lin(p, &format!("{bk}.ff.net.0.proj"), inner, 8 * inner, true);
            lin(p, &format!("{bk}.ff.net.2"), 4 * inner, inner, true);
            for n in ["norm1", "norm2", "norm3"] {
                norm(p, &format!("{bk}.{n}"), inner);
            }
        }
        conv(p, &format!("{k}.proj_out"), inner, ch, 1);
        Ok(())
    };
    lin(&mut p, "time_embed.0", mc, ted, true);
    lin(&mut p, "time_embed.2", ted, ted, true);
    lin(&mut p, "film_emb", c.film_dim(), ted, true);
    conv(&mut p, "input_blocks.0.0", c.in_channels, mc, 3);
    let mut chans = vec![mc];
    let (mut ch, mut ds, mut i) = (mc, 1, 1);
    for (level, &mult) in c.channel_mult.iter().enumerate() {
        for _ in 0..c.num_res_blocks {
            res(&mut p, &format!("input_blocks.{i}.0"), ch, mult * mc);
            ch = mult * mc;
            if c.attention_resolutions.contains(&ds) {
                st(&mut p, &format!("input_blocks.{i}.1"), ch)?;
            }
            chans.push(ch);
            i += 1;
        }
        if level != c.channel_mult.len() - 1 {
            conv(&mut p, &format!("input_blocks.{i}.0.op"), ch, ch, 3);
            chans.push(ch);
            ds *= 2;
            i += 1;
        }
    }
    res(&mut p, "middle_block.0", ch, ch);
    st(&mut p, "middle_block.1", ch)?;
    res(&mut p, "middle_block.2", ch, ch);
    let mut o = 0;
    for (level, &mult) in c.channel_mult.iter().enumerate().rev() {
        for j in 0..=c.num_res_blocks {
            let ich = chans.pop().expect("one skip per input block");
            res(&mut p, &format!("output_blocks.{o}.0"), ch + ich, mc * mult);
            ch = mc * mult;
            let mut l = 1;
            if c.attention_resolutions.contains(&ds) {
                st(&mut p, &format!("output_blocks.{o}.1"), ch)?;
                l = 2;
            }
            if level > 0 && j == c.num_res_blocks {
                conv(&mut p, &format!("output_blocks.{o}.{l}.conv"), ch, ch, 3);
                ds /= 2;
            }
            o += 1;
        }
    }
    norm(&mut p, "out.0", ch);
    conv(&mut p, "out.2", mc, c.out_channels, 3);
    Ok(out)
}

/// `ResBlock` (no up/down, no scale-shift norm).
struct ResBlock {
    /// `in_layers.0`, `in_layers.2`
    in_norm: GroupNorm,
    in_conv: Conv2d,
    /// `emb_layers.1` (after a SiLU on the embedding, computed once per forward)
    emb_proj: Linear,
    /// `out_layers.0`, `out_layers.3`
    out_norm: GroupNorm,
    out_conv: Conv2d,
    /// `skip_connection` (1×1 conv) when the channel count changes
    skip_connection: Option<Conv2d>,
}

impl ResBlock {
    fn load(w: &Weights, cin: usize, cout: usize, emb_dim: usize) -> Result<ResBlock> {
        let c3 = Conv2dArgs::new(1, 1);
        Ok(ResBlock {
            in_norm: GroupNorm::load(&w.sub("in_layers.0"), GN_GROUPS, cin, GN_EPS)?,
            in_conv: Conv2d::load(&w.sub("in_layers.2"), cin, cout, 3, c3, true)?,
            emb_proj: Linear::load(&w.sub("emb_layers.1"), emb_dim, cout, true)?,
            out_norm: GroupNorm::load(&w.sub("out_layers.0"), GN_GROUPS, cout, GN_EPS)?,
            out_conv: Conv2d::load(&w.sub("out_layers.3"), cout, cout, 3, c3, true)?,
            skip_connection: if cin != cout { Some(Conv2d::load(&w.sub("skip_connection"), cin, cout, 1, Conv2dArgs::new(1, 0), true)?) } else { None },
        })
    }

    /// x: [n, cin, h, w], emb_silu: [n, emb] -> [n, cout, h, w]
    fn forward(&self, x: &Tensor, emb_silu: &Tensor) -> Result<Tensor> {
        let h = self.in_conv.forward(&self.in_norm.forward_silu(x)?)?;
        let [n, c, _, _] = h.dims("unet.resblock")?;
        let e = self.emb_proj.forward(emb_silu)?.reshape([n, c, 1, 1])?;
        let h = h.add(&e)?;
        let h = self.out_conv.forward(&self.out_norm.forward_silu(&h)?)?;
        match &self.skip_connection {
            Some(s) => s.forward(x)?.add(&h),
            None => x.add(&h),
        }
    }
}

/// `CrossAttention` used as self-attention.
struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    /// `to_out.0`
    to_out: Linear,
    heads: usize,
    scale: f32,
}

impl Attention {
    fn load(w: &Weights, dim: usize, heads: usize, d_head: usize) -> Result<Attention> {
        let inner = heads * d_head;
        Ok(Attention {
            to_q: Linear::load(&w.sub("to_q"), dim, inner, false)?,
            to_k: Linear::load(&w.sub("to_k"), dim, inner, false)?,
            to_v: Linear::load(&w.sub("to_v"), dim, inner, false)?,
            to_out: Linear::load(&w.sub("to_out.0"), inner, dim, true)?,
            heads,
            scale: (d_head as f32).powf(-0.5),
        })
    }

    /// x: [n, t, dim] -> [n, t, dim]
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (q, k, v) = (self.to_q.forward(x)?, self.to_k.forward(x)?, self.to_v.forward(x)?);
        self.to_out.forward(&q.sdpa(&k, &v, self.heads, self.scale)?)
    }
}

/// `BasicTransformerBlock` without context.
struct BasicTransformerBlock {
    attn1: Attention,
    attn2: Attention,
    norm1: LayerNorm,
    norm2: LayerNorm,
    norm3: LayerNorm,
    /// `ff.net.0.proj`: dim -> 2·4·dim (GEGLU value | gate)
    ff_proj: Linear,
    /// `ff.net.2`: 4·dim -> dim
    ff_out: Linear,
}

impl BasicTransformerBlock {
    fn load(w: &Weights, dim: usize, heads: usize, d_head: usize) -> Result<BasicTransformerBlock> {
        let inner = 4 * dim;
        Ok(BasicTransformerBlock {
            attn1: Attention::load(&w.sub("attn1"), dim, heads, d_head)?,
            attn2: Attention::load(&w.sub("attn2"), dim, heads, d_head)?,
            norm1: LayerNorm::load(&w.sub("norm1"), dim, LN_EPS)?,
            norm2: LayerNorm::load(&w.sub("norm2"), dim, LN_EPS)?,
            norm3: LayerNorm::load(&w.sub("norm3"), dim, LN_EPS)?,
            ff_proj: Linear::load(&w.sub("ff.net.0.proj"), dim, 2 * inner, true)?,
            ff_out: Linear::load(&w.sub("ff.net.2"), inner, dim, true)?,
        })
    }

    /// x: [n, t, dim] -> [n, t, dim]
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.attn1.forward(&self.norm1.forward(x)?)?.add(x)?;
        let x = self.attn2.forward(&self.norm2.forward(&x)?)?.add(&x)?;
        let ff = self.ff_out.forward(&self.ff_proj.forward(&self.norm3.forward(&x)?)?.geglu()?)?;
        ff.add(&x)
    }
}

/// `SpatialTransformer` (1×1 conv projections, `use_linear_projection` = false upstream).
struct SpatialTransformer {
    norm: GroupNorm,
    /// 1×1 convs applied as Linears over the channels of the token layout.
    proj_in: Linear,
    transformer_blocks: Vec<BasicTransformerBlock>,
    proj_out: Linear,
}

impl SpatialTransformer {
    fn load(w: &Weights, ch: usize, heads: usize, d_head: usize, depth: usize) -> Result<SpatialTransformer> {
        let inner = heads * d_head;
        Ok(SpatialTransformer {
            norm: GroupNorm::load(&w.sub("norm"), GN_GROUPS, ch, ST_GN_EPS)?,
            proj_in: Linear::load_conv1x1(&w.sub("proj_in"), ch, inner, true)?,
            transformer_blocks: (0..depth)
                .map(|i| BasicTransformerBlock::load(&w.sub(&format!("transformer_blocks.{i}")), inner, heads, d_head))
                .collect::<Result<_>>()?,
            proj_out: Linear::load_conv1x1(&w.sub("proj_out"), inner, ch, true)?,
        })
    }

    /// x: [n, c, h, w] -> [n, c, h, w]
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let [n, c, hh, ww] = x.dims("unet.spatial_transformer")?;
        // Tokens [n, h·w, c] (PyTorch: "b c h w -> b (h w) c" after the 1×1 conv).
        let tokens = self.norm.forward(x)?.reshape([n, c, hh * ww])?.permute(&[0, 2, 1])?;
        let mut t = self.proj_in.forward(&tokens)?;
        for b in &self.transformer_blocks {
            t = b.forward(&t)?;
        }
        let h = self.proj_out.forward(&t)?.permute(&[0, 2, 1])?.reshape([n, c, hh, ww])?;
        h.add(x)
    }
}

/// One layer of a `TimestepEmbedSequential`.
enum Layer {
    Conv(Conv2d),
    Res(Box<ResBlock>),
    Attn(Box<SpatialTransformer>),
    /// `Downsample.op`: conv3×3 stride 2.
    Down(Conv2d),
    /// `Upsample.conv`: nearest ×2 then conv3×3.
    Up(Conv2d),
}

impl Layer {
    /// x: [n, c, h, w], emb_silu: [n, emb] -> [n, c', h', w']
    fn forward(&self, x: &Tensor, emb_silu: &Tensor) -> Result<Tensor> {
        match self {
            Layer::Conv(c) | Layer::Down(c) => c.forward(x),
            Layer::Res(r) => r.forward(x, emb_silu),
            Layer::Attn(a) => a.forward(x),
            Layer::Up(c) => c.forward(&x.upsample_nearest(&[2, 2])?),
        }
    }
}

/// `TimestepEmbedSequential`.
struct Block(Vec<Layer>);

impl Block {
    fn forward(&self, x: &Tensor, emb_silu: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for l in &self.0 {
            h = l.forward(&h, emb_silu)?;
        }
        Ok(h)
    }
}

/// The AudioLDM UNet.
pub struct UNet {
    pub config: UnetConfig,
    /// `time_embed.0`, `time_embed.2`
    time_embed_0: Linear,
    time_embed_2: Linear,
    film_emb: Linear,
    input_blocks: Vec<Block>,
    middle_block: Block,
    output_blocks: Vec<Block>,
    /// `out.0`, `out.2`
    out_norm: GroupNorm,
    out_conv: Conv2d,
}

impl UNet {
    /// Load from `w` scoped at the pack root (`model.diffusion_model.*` keys). The structure is
    /// built exactly as `UNetModel.__init__` does, so every key is read once.
    pub fn load(w: &Weights, config: &UnetConfig) -> Result<UNet> {
        config.validate()?;
        let c = config;
        let w = w.sub("model.diffusion_model");
        let mc = c.model_channels;
        let ted = c.time_embed_dim();
        let emb_dim = 2 * ted;
        let c3 = Conv2dArgs::new(1, 1);
        let rb = |w: &Weights, cin: usize, cout: usize| ResBlock::load(w, cin, cout, emb_dim);
        let st = |w: &Weights, ch: usize| -> Result<SpatialTransformer> {
            let (heads, d_head) = c.heads(ch)?;
            SpatialTransformer::load(w, ch, heads, d_head, c.transformer_depth)
        };

        let mut input_blocks = vec![Block(vec![Layer::Conv(Conv2d::load(&w.sub("input_blocks.0.0"), c.in_channels, mc, 3, c3, true)?)])];
        let mut chans = vec![mc];
        let mut ch = mc;
        let mut ds = 1;
        for (level, &mult) in c.channel_mult.iter().enumerate() {
            for _ in 0..c.num_res_blocks {
                let bw = w.sub(&format!("input_blocks.{}", input_blocks.len()));
                let mut layers = vec![Layer::Res(Box::new(rb(&bw.sub("0"), ch, mult * mc)?))];
                ch = mult * mc;
                if c.attention_resolutions.contains(&ds) {
                    layers.push(Layer::Attn(Box::new(st(&bw.sub("1"), ch)?)));
                }
                input_blocks.push(Block(layers));
                chans.push(ch);
            }
            if level != c.channel_mult.len() - 1 {
                let bw = w.sub(&format!("input_blocks.{}.0.op", input_blocks.len()));
                input_blocks.push(Block(vec![Layer::Down(Conv2d::load(&bw, ch, ch, 3, Conv2dArgs::new(2, 1), true)?)]));
                chans.push(ch);
                ds *= 2;
            }
        }
        let mw = w.sub("middle_block");
        let middle_block = Block(vec![
            Layer::Res(Box::new(rb(&mw.sub("0"), ch, ch)?)),
            Layer::Attn(Box::new(st(&mw.sub("1"), ch)?)),
            Layer::Res(Box::new(rb(&mw.sub("2"), ch, ch)?)),
        ]);
        let mut output_blocks = vec![];
        for (level, &mult) in c.channel_mult.iter().enumerate().rev() {
            for i in 0..=c.num_res_blocks {
                let ich = chans.pop().expect("one skip per input block");
                let bw = w.sub(&format!("output_blocks.{}", output_blocks.len()));
                let mut layers = vec![Layer::Res(Box::new(rb(&bw.sub("0"), ch + ich, mc * mult)?))];
                ch = mc * mult;
                if c.attention_resolutions.contains(&ds) {
                    layers.push(Layer::Attn(Box::new(st(&bw.sub(&layers.len().to_string()), ch)?)));
                }
                if level > 0 && i == c.num_res_blocks {
                    let uw = bw.sub(&format!("{}.conv", layers.len()));
                    layers.push(Layer::Up(Conv2d::load(&uw, ch, ch, 3, c3, true)?));
                    ds /= 2;
                }
                output_blocks.push(Block(layers));
            }
        }
        Ok(UNet {
            config: config.clone(),
            time_embed_0: Linear::load(&w.sub("time_embed.0"), mc, ted, true)?,
            time_embed_2: Linear::load(&w.sub("time_embed.2"), ted, ted, true)?,
            film_emb: Linear::load(&w.sub("film_emb"), c.film_dim(), ted, true)?,
            input_blocks,
            middle_block,
            output_blocks,
            out_norm: GroupNorm::load(&w.sub("out.0"), GN_GROUPS, ch, GN_EPS)?,
            out_conv: Conv2d::load(&w.sub("out.2"), mc, c.out_channels, 3, c3, true)?,
        })
    }

    /// Check the inputs of [`UNet::forward`] without running it.
    pub fn check_inputs(&self, x_shape: &[usize], t: &[f32], film_shape: &[usize]) -> Result<()> {
        const OP: &str = "unet";
        let c = &self.config;
        let m = c.size_multiple();
        let ok = matches!(x_shape, [n, ch, h, w] if *n > 0 && *ch == c.in_channels && *h > 0 && *w > 0 && h % m == 0 && w % m == 0);
        if !ok {
            return Err(Error::shape(OP, format!("x [n, {}, T, F] with T and F non-zero multiples of {m}", c.in_channels), x_shape));
        }
        let n = x_shape[0];
        if t.len() != n {
            return Err(Error::arg(OP, format!("{} timesteps for a batch of {n}", t.len())));
        }
        if t.iter().any(|v| !v.is_finite()) {
            return Err(Error::arg(OP, "timesteps must be finite"));
        }
        if film_shape != [n, c.film_dim()] {
            return Err(Error::shape(OP, format!("film [{n}, {}]", c.film_dim()), film_shape));
        }
        Ok(())
    }

    /// The conditioning vector every ResBlock receives: concat(time_embed(t), film_emb(y)).
    /// t: n timesteps, film: [n, film_dim] -> [n, 8·model_channels]
    pub fn embedding(&self, t: &[f32], film: &Tensor, trace: Option<&mut Trace>) -> Result<Tensor> {
        let n = t.len();
        let mc = self.config.model_channels;
        let t_emb = Tensor::from_slice(film.gpu(), &timestep_embedding(t, mc), [n, mc])?;
        let time = self.time_embed_2.forward(&self.time_embed_0.forward_act(&t_emb, Act::Silu)?)?;
        let film_e = self.film_emb.forward(film)?;
        let emb = Tensor::concat(&[&time, &film_e], 1)?;
        if let Some(tr) = trace {
            tr.push(("t_emb".into(), t_emb));
            tr.push(("time_embed".into(), time));
            tr.push(("film_emb".into(), film_e));
            tr.push(("emb".into(), emb.clone()));
        }
        Ok(emb)
    }

    /// ε prediction. x: [n, in, T, F], t: n timesteps (f32, may be fractional), film: [n, film_dim]
    /// -> [n, out, T, F]. T and F must be multiples of [`UnetConfig::size_multiple`].
    pub fn forward(&self, x: &Tensor, t: &[f32], film: &Tensor, mut trace: Option<&mut Trace>) -> Result<Tensor> {
        self.check_inputs(x.shape(), t, film.shape())?;
        let emb = self.embedding(t, film, trace.as_deref_mut())?;
        let mut rec = |name: String, t: &Tensor| {
            if let Some(tr) = trace.as_deref_mut() {
                tr.push((name, t.clone()));
            }
        };
        // Every ResBlock's emb_layers starts with a SiLU of the same vector: compute it once.
        let emb_silu = emb.silu()?;
        let mut skips = Vec::with_capacity(self.input_blocks.len());
        let mut h = x.clone();
        for (i, b) in self.input_blocks.iter().enumerate() {
            h = b.forward(&h, &emb_silu)?;
            rec(format!("input_blocks.{i}"), &h);
            skips.push(h.clone());
        }
        for (i, l) in self.middle_block.0.iter().enumerate() {
            h = l.forward(&h, &emb_silu)?;
            rec(format!("middle_block.{i}"), &h);
        }
        for (i, b) in self.output_blocks.iter().enumerate() {
            let skip = skips.pop().expect("one skip per output block");
            h = b.forward(&Tensor::concat(&[&h, &skip], 1)?, &emb_silu)?;
            rec(format!("output_blocks.{i}"), &h);
        }
        self.out_conv.forward(&self.out_norm.forward_silu(&h)?)
    }
}
