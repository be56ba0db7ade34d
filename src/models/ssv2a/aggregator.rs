//! Temporal aggregation (`ssv2a/model/aggregator.py:16-49`, spec §2.7): per-frame CLAPs
//! [B, L, 512] → one CLAP [B, 512].
//!
//! Two learned prediction tokens are prepended, the sinusoidal `PositionalEmbedding(E, R,
//! 'add')` with base 2R (= 2048) is added (positions 0–1 are the tokens), one ESA layer (FFN
//! ×2) runs, and `out_mu(head_mu(h[:, 0]))`, `out_sigma(head_sigma(h[:, 1]))` give μ and the
//! log-variance. `sample` averages N Gaussian samples and L2-normalises.
//!
//! **Dropout.** The official `video_to_audio` never calls `.eval()` on the aggregator, so its
//! `Dropout(p = 0.2)` layers stay active at inference: on the attention context C, after the
//! FFN's GELU and after each head's LayerNorm. [`Aggregator::sample`] runs in eval mode by
//! default (deterministic given ε, and what the module was meant to compute);
//! [`AggregatorMode::OfficialTrainDropout`] reproduces the official behaviour with masks drawn
//! from the [`Noise`] source (keep probability 1 − p, kept values scaled by 1/(1 − p), as
//! `nn.Dropout` does), and [`Aggregator::forward`] takes explicit masks for tests.
//!
//! The `pe.pe` buffer [R, 1, E] of `agg.pth` is a fixed sinusoid table; the converter checks it
//! against the table recomputed here and drops it, and the runtime recomputes it in f32 as
//! PyTorch does (an fp16 pack would otherwise round it).

use serde::{Deserialize, Serialize};

use crate::convert::plan::{Plan, TensorSource};
use crate::nn::Linear;
use crate::tensor::{HostTensor, Tensor};
use crate::weights::Weights;
use crate::{Error, Result};

use super::mlp::{Mlp, MlpSpec};
use super::remixer::{LayerMasks, TransEncoder};
use super::sampling::{l2_normalize_rows, sample, Draw, DrawKind, Noise, VarSamples};
use super::{check_unexpected, record, sub_trace, Trace};

/// Pack kind of `agg.pth` packs.
pub const KIND: &str = "aggregator";

/// The aggregator's hyper-parameters. The official class hard-codes them
/// ([`AggregatorConfig::official`]); the tiny fixture uses other widths.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AggregatorConfig {
    pub emb_dim: usize,
    pub nhead: usize,
    pub exp_rate: usize,
    /// PE table rows R (the base of the sinusoids is 2R).
    pub resolution: usize,
    pub dropout: f64,
    pub num_layers: usize,
}

impl AggregatorConfig {
    /// `Aggregator(512)` as `pipeline.py:330` builds it.
    pub fn official() -> AggregatorConfig {
        AggregatorConfig { emb_dim: 512, nhead: 8, exp_rate: 2, resolution: 1024, dropout: 0.2, num_layers: 1 }
    }

    /// The official values, with widths read from a state dict (`pred_token`, `ffn.linear1`,
    /// `pe.pe`) so that non-standard sizes convert; `overrides` (a JSON object with the field
    /// names above) wins for anything given.
    pub fn from_source(src: &dyn TensorSource, overrides: Option<&serde_json::Value>) -> Result<AggregatorConfig> {
        let mut c = AggregatorConfig::official();
        if let Some(s) = src.shape("pred_token") {
            if s.len() == 2 {
                c.emb_dim = s[1];
            }
        }
        if let Some(s) = src.shape("encoder.encoder.0.ffn.linear1.weight") {
            if s.len() == 2 && c.emb_dim > 0 && s[0] % c.emb_dim == 0 {
                c.exp_rate = s[0] / c.emb_dim;
            }
        }
        if let Some(s) = src.shape("pe.pe") {
            c.resolution = s[0];
        }
        c.num_layers = (0..).take_while(|i| src.contains(&format!("encoder.encoder.{i}.esa.query.weight"))).count().max(1);
        if let Some(v) = overrides {
            let mut j = serde_json::to_value(&c).map_err(|e| Error::Format(e.to_string()))?;
            if let (Some(o), Some(base)) = (v.as_object(), j.as_object_mut()) {
                for (k, val) in o {
                    if base.contains_key(k) {
                        base.insert(k.clone(), val.clone());
                    }
                }
            }
            c = serde_json::from_value(j).map_err(|e| Error::Format(format!("aggregator config: {e}")))?;
        }
        c.check()?;
        Ok(c)
    }

    pub fn check(&self) -> Result<()> {
        let e = self.emb_dim;
        if e == 0
            || !e.is_multiple_of(2)
            || self.nhead == 0
            || !e.is_multiple_of(self.nhead)
            || self.exp_rate == 0
            || self.resolution < 3
            || self.num_layers == 0
        {
            return Err(Error::Format(format!("unsupported aggregator config {self:?}")));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::Format(format!("aggregator dropout {} is not in [0, 1)", self.dropout)));
        }
        Ok(())
    }

    pub fn keys(&self) -> Vec<(String, Vec<usize>)> {
        let e = self.emb_dim;
        let mut k = vec![("pred_token".to_string(), vec![2, e])];
        k.extend(TransEncoder::keys(self.num_layers, e, self.exp_rate).into_iter().map(|(n, s)| (format!("encoder.{n}"), s)));
        for h in ["head_mu", "head_sigma"] {
            k.extend(self.head_spec().keys().into_iter().map(|(n, s)| (format!("{h}.{n}"), s)));
        }
        for o in ["out_mu", "out_sigma"] {
            k.push((format!("{o}.weight"), vec![e, e]));
            k.push((format!("{o}.bias"), vec![e]));
        }
        k
    }

    fn head_spec(&self) -> MlpSpec {
        MlpSpec { layers: vec![self.emb_dim; 2], resnet: false, dropout: self.dropout }
    }

    /// `PositionalEmbedding` table rows 0..t as [t, E], computed in f32 like PyTorch:
    /// `freq = exp(arange(0, E, 2) · (−ln(2R)/E))`, `pe[p, 2i] = sin(p·freq_i)`,
    /// `pe[p, 2i+1] = cos(p·freq_i)`.
    pub fn positional_table(&self, t: usize) -> Vec<f32> {
        let e = self.emb_dim;
        let c = (-(2.0 * self.resolution as f64).ln() / e as f64) as f32;
        let freq: Vec<f32> = (0..e / 2).map(|i| ((2 * i) as f32 * c).exp()).collect();
        let mut out = vec![0f32; t * e];
        for p in 0..t {
            for (i, &f) in freq.iter().enumerate() {
                let a = p as f32 * f;
                out[p * e + 2 * i] = a.sin();
                out[p * e + 2 * i + 1] = a.cos();
            }
        }
        out
    }
}

/// Converter rules for `agg.pth` (a plain state dict): strict on both sides; `pe.pe` is
/// checked against the recomputed table (|Δ| ≤ 1e-4: PyTorch computes it in f32) and dropped.
pub fn plan(src: &dyn TensorSource, cfg: &AggregatorConfig) -> Result<Plan> {
    cfg.check()?;
    let mut plan = Plan::new(KIND, serde_json::to_string(cfg).map_err(|e| Error::Format(e.to_string()))?);
    let keys = cfg.keys();
    for (k, s) in &keys {
        plan.copy(src, k, s)?;
    }
    let (r, e) = (cfg.resolution, cfg.emb_dim);
    match src.shape("pe.pe") {
        Some(s) if s == [r, 1, e] => {
            let stored = src.read_f32("pe.pe")?;
            let table = cfg.positional_table(r);
            let (i, d) = stored.iter().zip(&table).map(|(a, b)| (a - b).abs()).enumerate().fold((0, 0f32), |m, (i, d)| if d > m.1 { (i, d) } else { m });
            if d > 1e-4 || d.is_nan() {
                return Err(Error::Format(format!(
                    "{}: pe.pe differs from the sinusoid table (base 2·{r}) by {d} at row {}, column {}: not an SSV2A aggregator PE",
                    src.describe(),
                    i / e,
                    i % e
                )));
            }
        }
        Some(s) => return Err(Error::TensorShape { file: src.describe(), name: "pe.pe".into(), expected: vec![r, 1, e], got: s }),
        None => return Err(Error::missing(src.describe(), "pe.pe")),
    }
    check_unexpected(src, keys.iter().map(|(k, _)| k.as_str()).chain(["pe.pe"]), &[])?;
    Ok(plan)
}

/// Train-mode dropout multipliers (0 or 1/(1−p)), as the official module in train mode applies
/// them: B = batch, T = L + 2 tokens, E = emb_dim, H heads, d = E/H.
#[derive(Clone, Debug)]
pub struct DropoutMasks {
    /// [B, H, d, d] on the attention context.
    pub context: HostTensor,
    /// [B, T, E·exp_rate] after the FFN's GELU.
    pub ffn: HostTensor,
    /// [B, E] after head_mu's LayerNorm.
    pub head_mu: HostTensor,
    /// [B, E] after head_sigma's LayerNorm.
    pub head_sigma: HostTensor,
}

impl DropoutMasks {
    /// Draw masks for a batch of `b` sequences of `l` frames, in the order the official forward
    /// applies them (context, FFN, head_mu, head_sigma).
    pub fn draw(cfg: &AggregatorConfig, b: usize, l: usize, noise: &mut dyn Noise) -> Result<DropoutMasks> {
        let (e, h) = (cfg.emb_dim, cfg.nhead);
        let d = e / h;
        let p = cfg.dropout as f32;
        let scale = 1.0 / (1.0 - p);
        let mut mk = |shape: Vec<usize>, part: usize| -> Result<HostTensor> {
            let n: usize = shape.iter().product();
            let u = noise.uniforms(Draw::at(DrawKind::Dropout, 0, part), n)?;
            HostTensor::new(shape, u.into_iter().map(|x| if x < p { 0.0 } else { scale }).collect())
        };
        Ok(DropoutMasks {
            context: mk(vec![b, h, d, d], 0)?,
            ffn: mk(vec![b, l + 2, e * cfg.exp_rate], 1)?,
            head_mu: mk(vec![b, e], 2)?,
            head_sigma: mk(vec![b, e], 3)?,
        })
    }
}

/// How [`Aggregator::sample`] treats dropout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AggregatorMode {
    /// Dropout off (`.eval()`): the default.
    #[default]
    Eval,
    /// The official inference as shipped: dropout p = 0.2 active (module left in train mode).
    OfficialTrainDropout,
}

pub struct Aggregator {
    pub config: AggregatorConfig,
    /// [2, E]
    pred_token: Tensor,
    encoder: TransEncoder,
    head_mu: Mlp,
    head_sigma: Mlp,
    out_mu: Linear,
    out_sigma: Linear,
}

impl Aggregator {
    /// Load from an `aggregator` pack (strict).
    pub fn load(w: &Weights) -> Result<Aggregator> {
        w.expect_kind(KIND)?;
        let config: AggregatorConfig = w.config()?;
        config.check()?;
        let e = config.emb_dim;
        let head = config.head_spec();
        let a = Aggregator {
            pred_token: w.tensor("pred_token", &[2, e])?,
            encoder: TransEncoder::load(&w.sub("encoder"), config.num_layers, e, config.nhead, config.exp_rate)?,
            head_mu: Mlp::load(&w.sub("head_mu"), &head)?,
            head_sigma: Mlp::load(&w.sub("head_sigma"), &head)?,
            out_mu: Linear::load(&w.sub("out_mu"), e, e, true)?,
            out_sigma: Linear::load(&w.sub("out_sigma"), e, e, true)?,
            config,
        };
        w.finish()?;
        Ok(a)
    }

    /// claps: [B, L, E] -> (mu, logvar) [B, E]. `masks`: train-mode dropout (None = eval).
    /// Trace names: `tokens`, `pe`, `encoder.…`, `head_mu`, `head_sigma`.
    pub fn forward(&self, claps: &Tensor, masks: Option<&DropoutMasks>, mut trace: Option<&mut Trace>) -> Result<(Tensor, Tensor)> {
        let c = &self.config;
        let e = c.emb_dim;
        let [b, l, e_in] = claps.dims("aggregator")?;
        if e_in != e || l == 0 || b == 0 || l + 2 > c.resolution {
            return Err(Error::shape("aggregator", format!("[B ≥ 1, 1 ≤ L ≤ {}, {e}]", c.resolution - 2), claps.shape()));
        }
        let gpu = claps.gpu();
        let t = l + 2;
        let tok = self.pred_token.reshape([1, 2, e])?.expand(&[b, 2, e])?;
        let x = Tensor::concat(&[&tok, claps], 1)?; // [B, T, E]
        record(&mut trace, "tokens".into(), &x);
        let pe = Tensor::from_slice(gpu, &c.positional_table(t), [t, e])?;
        let x = x.add(&pe)?;
        record(&mut trace, "pe".into(), &x);
        let up = |h: &HostTensor| Tensor::upload(gpu, h);
        let m = match masks {
            Some(m) => {
                let d = e / c.nhead;
                for (name, t, want) in [
                    ("context", &m.context, vec![b, c.nhead, d, d]),
                    ("ffn", &m.ffn, vec![b, t, e * c.exp_rate]),
                    ("head_mu", &m.head_mu, vec![b, e]),
                    ("head_sigma", &m.head_sigma, vec![b, e]),
                ] {
                    if t.shape != want {
                        return Err(Error::shape(format!("aggregator dropout mask `{name}`"), want, &t.shape));
                    }
                }
                Some([up(&m.context)?, up(&m.ffn)?, up(&m.head_mu)?, up(&m.head_sigma)?])
            }
            None => None,
        };
        let lm = LayerMasks { context: m.as_ref().map(|m| &m[0]), ffn: m.as_ref().map(|m| &m[1]) };
        let h = sub_trace(&mut trace, "encoder", |tr| self.encoder.forward(&x, lm, tr))?;
        let h0 = h.slice(1, 0, 1, 1)?.reshape([b, e])?;
        let h1 = h.slice(1, 1, 2, 1)?.reshape([b, e])?;
        let hm = self.head_mu.forward_masked(&h0, m.as_ref().map(|m| &m[2]), None)?;
        let hs = self.head_sigma.forward_masked(&h1, m.as_ref().map(|m| &m[3]), None)?;
        record(&mut trace, "head_mu".into(), &hm);
        record(&mut trace, "head_sigma".into(), &hs);
        Ok((self.out_mu.forward(&hm)?, self.out_sigma.forward(&hs)?))
    }

    /// `Aggregator.sample(claps, N)`: the average of N samples, L2-normalised.
    /// claps: [B, L, E] -> [B, E]. ε is drawn as [N, B, E] (`DrawKind::Aggregator`); in
    /// [`AggregatorMode::OfficialTrainDropout`] the masks are drawn first.
    pub async fn sample(&self, claps: &Tensor, n: impl Into<VarSamples>, mode: AggregatorMode, noise: &mut dyn Noise) -> Result<HostTensor> {
        let [b, l, _] = claps.dims("aggregator")?;
        let masks = match mode {
            AggregatorMode::Eval => None,
            AggregatorMode::OfficialTrainDropout => Some(DropoutMasks::draw(&self.config, b, l, noise)?),
        };
        self.sample_with(claps, n, masks.as_ref(), noise).await
    }

    /// [`Aggregator::sample`] with explicit dropout masks (None = eval).
    pub async fn sample_with(&self, claps: &Tensor, n: impl Into<VarSamples>, masks: Option<&DropoutMasks>, noise: &mut dyn Noise) -> Result<HostTensor> {
        let (mu, lv) = self.forward(claps, masks, None)?;
        let mu = mu.to_host().await?;
        let lv = lv.to_host().await?;
        let mut v = sample(&mu.data, &lv.data, n.into(), noise, Draw::new(DrawKind::Aggregator))?;
        l2_normalize_rows(&mut v, self.config.emb_dim);
        HostTensor::new(mu.shape, v)
    }
}
