//! AudioLDM's VAE decoder (mel latents → log-mel spectrogram), as `audioldm==0.1.1` runs it:
//! `first_stage_model.decode(z) = decoder(post_quant_conv(z))` in
//! `audioldm/variational_autoencoder/{autoencoder,modules}.py` (the LDM/taming `Decoder`).
//!
//! Every GroupNorm has 32 groups and eps 1e-6; ResnetBlocks have no time embedding; the mid
//! attention is one head over all H·W positions with 1×1-conv q/k/v/proj and scale C^−½; the
//! upsampler is nearest ×2 then a 3×3 conv; there is no tanh at the output.
//!
//! Weights: `first_stage_model.{post_quant_conv,decoder}.*` of the AudioLDM checkpoint, names
//! kept. The encoder is not needed for generation and is dropped by the converter.

use serde::{Deserialize, Serialize};

use crate::nn::{Conv2d, GroupNorm, Linear};
use crate::ops::conv::Conv2dArgs;
use crate::tensor::Tensor;
use crate::weights::Weights;
use crate::{Error, Result};

const GN_GROUPS: usize = 32;
const GN_EPS: f32 = 1e-6;

/// `ddconfig` of AudioLDM's `first_stage_config` (original key names).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DdConfig {
    pub ch: usize,
    pub out_ch: usize,
    pub ch_mult: Vec<usize>,
    pub num_res_blocks: usize,
    #[serde(default)]
    pub attn_resolutions: Vec<usize>,
    pub z_channels: usize,
    pub resolution: usize,
}

/// The VAE part of an AudioLDM config.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct VaeConfig {
    pub ddconfig: DdConfig,
    pub embed_dim: usize,
}

impl VaeConfig {
    /// `audioldm-s-full-v2` (audioldm 0.1.1 `default_audioldm_config`).
    pub fn s_full_v2() -> VaeConfig {
        VaeConfig {
            ddconfig: DdConfig { ch: 128, out_ch: 1, ch_mult: vec![1, 2, 4], num_res_blocks: 2, attn_resolutions: vec![], z_channels: 8, resolution: 256 },
            embed_dim: 8,
        }
    }
}

/// Every tensor of the decoder and `post_quant_conv` as `(key under first_stage_model, shape)`:
/// what a checkpoint of this config holds (the converter's tests build shape-only checkpoints
/// of the released sizes from it).
pub fn param_shapes(c: &VaeConfig) -> Vec<(String, Vec<usize>)> {
    let d = &c.ddconfig;
    let mut out: Vec<(String, Vec<usize>)> = vec![];
    let mut conv = |k: String, i: usize, o: usize, ks: usize| {
        out.push((format!("{k}.weight"), vec![o, i, ks, ks]));
        out.push((format!("{k}.bias"), vec![o]));
    };
    let levels = d.ch_mult.len();
    let mut block_in = d.ch * d.ch_mult.last().copied().unwrap_or(1);
    conv("post_quant_conv".into(), c.embed_dim, d.z_channels, 1);
    conv("decoder.conv_in".into(), d.z_channels, block_in, 3);
    let mut norms = vec![];
    let res = |conv: &mut dyn FnMut(String, usize, usize, usize), norms: &mut Vec<(String, usize)>, k: &str, i: usize, o: usize| {
        norms.push((format!("{k}.norm1"), i));
        conv(format!("{k}.conv1"), i, o, 3);
        norms.push((format!("{k}.norm2"), o));
        conv(format!("{k}.conv2"), o, o, 3);
        if i != o {
            conv(format!("{k}.nin_shortcut"), i, o, 1);
        }
    };
    let attn = |conv: &mut dyn FnMut(String, usize, usize, usize), norms: &mut Vec<(String, usize)>, k: &str, ch: usize| {
        norms.push((format!("{k}.norm"), ch));
        for q in ["q", "k", "v", "proj_out"] {
            conv(format!("{k}.{q}"), ch, ch, 1);
        }
    };
    res(&mut conv, &mut norms, "decoder.mid.block_1", block_in, block_in);
    attn(&mut conv, &mut norms, "decoder.mid.attn_1", block_in);
    res(&mut conv, &mut norms, "decoder.mid.block_2", block_in, block_in);
    let mut curr_res = d.resolution >> (levels - 1);
    for level in (0..levels).rev() {
        let block_out = d.ch * d.ch_mult[level];
        for i in 0..=d.num_res_blocks {
            res(&mut conv, &mut norms, &format!("decoder.up.{level}.block.{i}"), block_in, block_out);
            block_in = block_out;
            if d.attn_resolutions.contains(&curr_res) {
                attn(&mut conv, &mut norms, &format!("decoder.up.{level}.attn.{i}"), block_in);
            }
        }
        if level != 0 {
            conv(format!("decoder.up.{level}.upsample.conv"), block_in, block_in, 3);
            curr_res *= 2;
        }
    }
    norms.push(("decoder.norm_out".into(), block_in));
    conv("decoder.conv_out".into(), block_in, d.out_ch, 3);
    for (k, ch) in norms {
        out.push((format!("{k}.weight"), vec![ch]));
        out.push((format!("{k}.bias"), vec![ch]));
    }
    out
}

/// taming `ResnetBlock` without time embedding.
struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    norm2: GroupNorm,
    conv2: Conv2d,
    nin_shortcut: Option<Conv2d>,
}

impl ResnetBlock {
    fn load(w: &Weights, cin: usize, cout: usize) -> Result<ResnetBlock> {
        let a = Conv2dArgs::new(1, 1);
        Ok(ResnetBlock {
            norm1: GroupNorm::load(&w.sub("norm1"), GN_GROUPS, cin, GN_EPS)?,
            conv1: Conv2d::load(&w.sub("conv1"), cin, cout, 3, a, true)?,
            norm2: GroupNorm::load(&w.sub("norm2"), GN_GROUPS, cout, GN_EPS)?,
            conv2: Conv2d::load(&w.sub("conv2"), cout, cout, 3, a, true)?,
            nin_shortcut: if cin != cout { Some(Conv2d::load(&w.sub("nin_shortcut"), cin, cout, 1, Conv2dArgs::new(1, 0), true)?) } else { None },
        })
    }

    /// x: [n, cin, h, w] -> [n, cout, h, w]
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward(&self.norm1.forward_silu(x)?)?;
        let h = self.conv2.forward(&self.norm2.forward_silu(&h)?)?;
        match &self.nin_shortcut {
            Some(s) => s.forward(x)?.add(&h),
            None => x.add(&h),
        }
    }
}

/// taming `AttnBlock`: single-head self-attention over the H·W positions.
struct AttnBlock {
    norm: GroupNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    proj_out: Linear,
    channels: usize,
}

impl AttnBlock {
    fn load(w: &Weights, c: usize) -> Result<AttnBlock> {
        Ok(AttnBlock {
            norm: GroupNorm::load(&w.sub("norm"), GN_GROUPS, c, GN_EPS)?,
            q: Linear::load_conv1x1(&w.sub("q"), c, c, true)?,
            k: Linear::load_conv1x1(&w.sub("k"), c, c, true)?,
            v: Linear::load_conv1x1(&w.sub("v"), c, c, true)?,
            proj_out: Linear::load_conv1x1(&w.sub("proj_out"), c, c, true)?,
            channels: c,
        })
    }

    /// x: [n, c, h, w] -> [n, c, h, w]
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let [n, c, hh, ww] = x.dims("vae.attn")?;
        // Tokens [n, h·w, c]: the 1×1 convs become Linears over channels.
        let t = self.norm.forward(x)?.reshape([n, c, hh * ww])?.permute(&[0, 2, 1])?;
        let (q, k, v) = (self.q.forward(&t)?, self.k.forward(&t)?, self.v.forward(&t)?);
        let a = q.sdpa(&k, &v, 1, (self.channels as f32).powf(-0.5))?;
        let h = self.proj_out.forward(&a)?.permute(&[0, 2, 1])?.reshape([n, c, hh, ww])?;
        x.add(&h)
    }
}

struct UpLevel {
    block: Vec<ResnetBlock>,
    attn: Vec<AttnBlock>,
    upsample: Option<Conv2d>,
}

/// The AudioLDM VAE decoder with its `post_quant_conv`.
pub struct Vae {
    pub config: VaeConfig,
    post_quant_conv: Conv2d,
    conv_in: Conv2d,
    mid_block_1: ResnetBlock,
    mid_attn_1: AttnBlock,
    mid_block_2: ResnetBlock,
    /// Indexed by level as in the checkpoint (`decoder.up.{level}`); level L−1 runs first.
    up: Vec<UpLevel>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

pub use crate::models::Trace;

impl Vae {
    /// Load from `w` scoped at the checkpoint root (`first_stage_model.*` keys).
    pub fn load(w: &Weights, config: &VaeConfig) -> Result<Vae> {
        let d = &config.ddconfig;
        if d.ch_mult.is_empty() || d.ch_mult.iter().any(|&m| m == 0 || !(m * d.ch).is_multiple_of(GN_GROUPS)) {
            return Err(Error::Format(format!(
                "VAE config: ch {} × ch_mult {:?}: every level's width must be a non-zero multiple of {GN_GROUPS}",
                d.ch, d.ch_mult
            )));
        }
        let fs = w.sub("first_stage_model");
        let dec = fs.sub("decoder");
        let levels = d.ch_mult.len();
        let mut block_in = d.ch * d.ch_mult[levels - 1];
        let mut curr_res = d.resolution >> (levels - 1);
        let c3 = Conv2dArgs::new(1, 1);
        let post_quant_conv = Conv2d::load(&fs.sub("post_quant_conv"), config.embed_dim, d.z_channels, 1, Conv2dArgs::new(1, 0), true)?;
        let conv_in = Conv2d::load(&dec.sub("conv_in"), d.z_channels, block_in, 3, c3, true)?;
        let mid = dec.sub("mid");
        let mid_block_1 = ResnetBlock::load(&mid.sub("block_1"), block_in, block_in)?;
        let mid_attn_1 = AttnBlock::load(&mid.sub("attn_1"), block_in)?;
        let mid_block_2 = ResnetBlock::load(&mid.sub("block_2"), block_in, block_in)?;
        let mut up: Vec<Option<UpLevel>> = (0..levels).map(|_| None).collect();
        for level in (0..levels).rev() {
            let lw = dec.sub(&format!("up.{level}"));
            let block_out = d.ch * d.ch_mult[level];
            let mut block = vec![];
            let mut attn = vec![];
            for i in 0..=d.num_res_blocks {
                block.push(ResnetBlock::load(&lw.sub(&format!("block.{i}")), block_in, block_out)?);
                block_in = block_out;
                if d.attn_resolutions.contains(&curr_res) {
                    attn.push(AttnBlock::load(&lw.sub(&format!("attn.{i}")), block_in)?);
                }
            }
            let upsample = if level != 0 {
                curr_res *= 2;
                Some(Conv2d::load(&lw.sub("upsample.conv"), block_in, block_in, 3, c3, true)?)
            } else {
                None
            };
            up[level] = Some(UpLevel { block, attn, upsample });
        }
        Ok(Vae {
            config: config.clone(),
            post_quant_conv,
            conv_in,
            mid_block_1,
            mid_attn_1,
            mid_block_2,
            up: up.into_iter().map(|u| u.expect("every level built")).collect(),
            norm_out: GroupNorm::load(&dec.sub("norm_out"), GN_GROUPS, block_in, GN_EPS)?,
            conv_out: Conv2d::load(&dec.sub("conv_out"), block_in, d.out_ch, 3, c3, true)?,
        })
    }

    /// Decode already-scaled latents (z = latent / scale_factor).
    /// z: [n, embed_dim, t, f] -> mel [n, out_ch, t·2^(L−1), f·2^(L−1)]
    pub fn decode(&self, z: &Tensor, mut trace: Option<&mut Trace>) -> Result<Tensor> {
        let [_, c, _, _] = z.dims("vae.decode")?;
        if c != self.config.embed_dim {
            return Err(Error::shape("vae.decode", format!("[n, {}, t, f]", self.config.embed_dim), z.shape()));
        }
        let mut rec = |name: &str, t: &Tensor| {
            if let Some(tr) = trace.as_deref_mut() {
                tr.push((name.to_string(), t.clone()));
            }
        };
        let h = self.post_quant_conv.forward(z)?;
        rec("post_quant_conv", &h);
        let mut h = self.conv_in.forward(&h)?;
        rec("decoder.conv_in", &h);
        h = self.mid_block_1.forward(&h)?;
        rec("decoder.mid.block_1", &h);
        h = self.mid_attn_1.forward(&h)?;
        rec("decoder.mid.attn_1", &h);
        h = self.mid_block_2.forward(&h)?;
        rec("decoder.mid.block_2", &h);
        for (level, u) in self.up.iter().enumerate().rev() {
            for (i, b) in u.block.iter().enumerate() {
                h = b.forward(&h)?;
                if let Some(a) = u.attn.get(i) {
                    h = a.forward(&h)?;
                }
                rec(&format!("decoder.up.{level}.block.{i}"), &h);
            }
            if let Some(conv) = &u.upsample {
                h = conv.forward(&h.upsample_nearest(&[2, 2])?)?;
                rec(&format!("decoder.up.{level}.upsample"), &h);
            }
        }
        let h = self.norm_out.forward_silu(&h)?;
        rec("decoder.norm_out_silu", &h);
        self.conv_out.forward(&h)
    }
}
