//! HiFi-GAN vocoder (mel → 16 kHz waveform) as AudioLDM 0.1.1 runs it
//! (`audioldm/hifigan/models.py` `Generator`, resblock type "1", weight norm removed).
//!
//! conv_pre (k7) → per stage: LeakyReLU(0.1) → ConvTranspose1d(c → c/2, k, u, (k−u)/2) → mean
//! of the ResBlock1 of each kernel size → LeakyReLU(**0.01**, PyTorch's default, not 0.1) →
//! conv_post (k7) → tanh. ResBlock1(k): for d in dilations: x += conv2(lrelu(conv1_d(lrelu(x)))).
//! For the real config the output has 160·F + 32 samples (the first transposed conv adds one).
//!
//! Weights: `first_stage_model.vocoder.*` of the AudioLDM checkpoint (plain weight/bias; packs
//! converted from a weight-normed state dict have `weight_g`/`weight_v` folded by the converter).

use serde::{Deserialize, Serialize};

use crate::nn::{Conv1d, ConvTranspose1d};
use crate::ops::conv::{Conv1dArgs, ConvTranspose1dArgs};
use crate::tensor::Tensor;
use crate::weights::Weights;
use crate::{Error, Result};

/// The slope of the LeakyReLUs inside the generator (`LRELU_SLOPE`).
const LRELU_SLOPE: f32 = 0.1;
/// The last LeakyReLU uses PyTorch's default slope.
const FINAL_SLOPE: f32 = 0.01;

/// HiFi-GAN `h` config (original key names).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Config {
    #[serde(default = "resblock_1")]
    pub resblock: String,
    pub upsample_rates: Vec<usize>,
    pub upsample_kernel_sizes: Vec<usize>,
    pub upsample_initial_channel: usize,
    pub resblock_kernel_sizes: Vec<usize>,
    pub resblock_dilation_sizes: Vec<Vec<usize>>,
    pub num_mels: usize,
}

fn resblock_1() -> String {
    "1".into()
}

impl Config {
    /// AudioLDM's `HIFIGAN_16K_64`.
    pub fn audioldm_16k_64() -> Config {
        Config {
            resblock: "1".into(),
            upsample_rates: vec![5, 4, 2, 2, 2],
            upsample_kernel_sizes: vec![16, 16, 8, 4, 4],
            upsample_initial_channel: 1024,
            resblock_kernel_sizes: vec![3, 7, 11],
            resblock_dilation_sizes: vec![vec![1, 3, 5]; 3],
            num_mels: 64,
        }
    }

    /// Samples produced for `frames` mel frames.
    pub fn output_len(&self, frames: usize) -> usize {
        let mut l = frames;
        for (&u, &k) in self.upsample_rates.iter().zip(&self.upsample_kernel_sizes) {
            let p = (k - u) / 2;
            l = (l - 1) * u + k - 2 * p;
        }
        l
    }

    fn check(&self) -> Result<()> {
        let bad = self.resblock != "1"
            || self.upsample_rates.len() != self.upsample_kernel_sizes.len()
            || self.resblock_kernel_sizes.len() != self.resblock_dilation_sizes.len()
            || self.resblock_kernel_sizes.is_empty()
            || self.upsample_rates.iter().zip(&self.upsample_kernel_sizes).any(|(&u, &k)| u == 0 || k < u)
            || self.upsample_initial_channel >> self.upsample_rates.len() == 0;
        if bad {
            return Err(Error::Format(format!("unsupported HiFi-GAN config {self:?} (resblock \"1\", k ≥ u per stage)")));
        }
        Ok(())
    }
}

/// Every tensor of the generator (weight norm removed) as `(key under the vocoder, shape)`.
pub fn param_shapes(c: &Config) -> Vec<(String, Vec<usize>)> {
    let mut out: Vec<(String, Vec<usize>)> = vec![];
    let mut conv = |k: String, w: Vec<usize>, bias: usize| {
        out.push((format!("{k}.weight"), w));
        out.push((format!("{k}.bias"), vec![bias]));
    };
    let c0 = c.upsample_initial_channel;
    conv("conv_pre".into(), vec![c0, c.num_mels, 7], c0);
    for (i, &k) in c.upsample_kernel_sizes.iter().enumerate() {
        conv(format!("ups.{i}"), vec![c0 >> i, c0 >> (i + 1), k], c0 >> (i + 1));
        for (j, (&rk, dil)) in c.resblock_kernel_sizes.iter().zip(&c.resblock_dilation_sizes).enumerate() {
            let ch = c0 >> (i + 1);
            let idx = i * c.resblock_kernel_sizes.len() + j;
            for d in 0..dil.len() {
                conv(format!("resblocks.{idx}.convs1.{d}"), vec![ch, ch, rk], ch);
                conv(format!("resblocks.{idx}.convs2.{d}"), vec![ch, ch, rk], ch);
            }
        }
    }
    conv("conv_post".into(), vec![1, c0 >> c.upsample_kernel_sizes.len(), 7], 1);
    out
}

struct ResBlock1 {
    convs1: Vec<Conv1d>,
    convs2: Vec<Conv1d>,
}

impl ResBlock1 {
    fn load(w: &Weights, ch: usize, k: usize, dilations: &[usize]) -> Result<ResBlock1> {
        let mut convs1 = vec![];
        let mut convs2 = vec![];
        for (i, &d) in dilations.iter().enumerate() {
            let pad = (k * d - d) / 2;
            convs1.push(Conv1d::load(&w.sub(&format!("convs1.{i}")), ch, ch, k, Conv1dArgs::new(1, pad).dilation(d), true)?);
            convs2.push(Conv1d::load(&w.sub(&format!("convs2.{i}")), ch, ch, k, Conv1dArgs::new(1, (k - 1) / 2), true)?);
        }
        Ok(ResBlock1 { convs1, convs2 })
    }

    /// x: [n, c, l] -> [n, c, l]
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for (c1, c2) in self.convs1.iter().zip(&self.convs2) {
            let xt = c1.forward(&x.leaky_relu(LRELU_SLOPE)?)?;
            let xt = c2.forward(&xt.leaky_relu(LRELU_SLOPE)?)?;
            x = xt.add(&x)?;
        }
        Ok(x)
    }
}

/// The HiFi-GAN generator.
pub struct HifiGan {
    pub config: Config,
    conv_pre: Conv1d,
    ups: Vec<ConvTranspose1d>,
    resblocks: Vec<ResBlock1>,
    conv_post: Conv1d,
}

impl HifiGan {
    /// Load from `w` scoped at the vocoder (`first_stage_model.vocoder`).
    pub fn load(w: &Weights, config: &Config) -> Result<HifiGan> {
        config.check()?;
        let c0 = config.upsample_initial_channel;
        let conv_pre = Conv1d::load(&w.sub("conv_pre"), config.num_mels, c0, 7, Conv1dArgs::new(1, 3), true)?;
        let mut ups = vec![];
        let mut resblocks = vec![];
        for (i, (&u, &k)) in config.upsample_rates.iter().zip(&config.upsample_kernel_sizes).enumerate() {
            let (cin, cout) = (c0 >> i, c0 >> (i + 1));
            ups.push(ConvTranspose1d::load(&w.sub(&format!("ups.{i}")), cin, cout, k, ConvTranspose1dArgs::new(u, (k - u) / 2), true)?);
            for (j, (&rk, dil)) in config.resblock_kernel_sizes.iter().zip(&config.resblock_dilation_sizes).enumerate() {
                let idx = i * config.resblock_kernel_sizes.len() + j;
                resblocks.push(ResBlock1::load(&w.sub(&format!("resblocks.{idx}")), cout, rk, dil)?);
            }
        }
        let ch = c0 >> config.upsample_rates.len();
        let conv_post = Conv1d::load(&w.sub("conv_post"), ch, 1, 7, Conv1dArgs::new(1, 3), true)?;
        Ok(HifiGan { config: config.clone(), conv_pre, ups, resblocks, conv_post })
    }

    /// mel: [n, num_mels, frames] -> waveform [n, output_len(frames)] in [−1, 1].
    pub fn forward(&self, mel: &Tensor, mut trace: Option<&mut crate::models::audioldm::vae::Trace>) -> Result<Tensor> {
        let [n, m, _] = mel.dims("hifigan")?;
        if m != self.config.num_mels {
            return Err(Error::shape("hifigan", format!("[n, {}, frames]", self.config.num_mels), mel.shape()));
        }
        let mut rec = |name: String, t: &Tensor| {
            if let Some(tr) = trace.as_deref_mut() {
                tr.push((name, t.clone()));
            }
        };
        let mut x = self.conv_pre.forward(mel)?;
        rec("conv_pre".into(), &x);
        let nk = self.config.resblock_kernel_sizes.len();
        for (i, up) in self.ups.iter().enumerate() {
            x = up.forward(&x.leaky_relu(LRELU_SLOPE)?)?;
            rec(format!("ups.{i}"), &x);
            let mut xs: Option<Tensor> = None;
            for rb in &self.resblocks[i * nk..(i + 1) * nk] {
                let r = rb.forward(&x)?;
                xs = Some(match xs {
                    Some(s) => s.add(&r)?,
                    None => r,
                });
            }
            let xs = xs.ok_or_else(|| Error::Format("HiFi-GAN config has no resblocks".into()))?;
            x = xs.scale(1.0 / nk as f32)?;
            rec(format!("mrf.{i}"), &x);
        }
        let x = self.conv_post.forward(&x.leaky_relu(FINAL_SLOPE)?)?;
        rec("conv_post".into(), &x);
        let l = x.shape()[2];
        x.tanh()?.reshape([n, l])
    }
}
