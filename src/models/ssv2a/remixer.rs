//! The Sound Source Remixer (`ssv2a/model/remixer.py`) and the efficient-attention encoder it
//! shares with the aggregator (`modules.py`: `EfficientSelfAttention`, `FFN`, `ESALayer`,
//! `TransEncoder`); spec §2.1 and §2.4.
//!
//! `Styler.forward(src, clips)`: `in_proj(cat(src, clips))` per slot, two learned prediction
//! tokens prepended (μ token, log-variance token), the `TransEncoder`, then
//! `out_mu(head_mu(h[:, 0]))` and `out_sigma(head_sigma(h[:, 1]))`, each head an
//! `MLP([E, E])` (Linear → LayerNorm → GELU). No positional embedding, no mask: the outputs
//! are invariant under any permutation of the slots (up to float summation order).
//!
//! `ESALayer`: `n = LN(x)`; q̂, k̂ = softmax of each head's d features of q, k (not over
//! tokens); `a = q̂ · Σ_t k̂ᵀ v` per head, no 1/√d; `y = highway(x) + a`; then the pre-LN FFN
//! `z = y + linear2(GELU(linear1(LN(y))))`.

use crate::nn::{LayerNorm, Linear};
use crate::ops::Act;
use crate::tensor::Tensor;
use crate::weights::Weights;
use crate::{Error, Result};

use super::mlp::{Mlp, MlpSpec};
use super::{record, sub_trace, Config, Trace, LN_EPS};

/// Train-mode dropout multipliers (0 or 1/(1−p)) for one ESA layer; `None` parts are eval.
#[derive(Clone, Copy, Default)]
pub struct LayerMasks<'a> {
    /// On the attention context C: [B, H, d, d].
    pub context: Option<&'a Tensor>,
    /// After the FFN's GELU: [B, T, E·exp_rate].
    pub ffn: Option<&'a Tensor>,
}

/// `EfficientSelfAttention`: query, key, value, highway (Linear E→E) and the input LayerNorm.
pub struct EfficientSelfAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    highway: Linear,
    norm: LayerNorm,
    heads: usize,
}

/// `FFN`: pre-LN, linear1 E→E·r, GELU, linear2 E·r→E, residual.
pub struct Ffn {
    linear1: Linear,
    linear2: Linear,
    norm: LayerNorm,
}

/// One `ESALayer`.
pub struct EsaLayer {
    esa: EfficientSelfAttention,
    ffn: Ffn,
}

/// Keys of one ESA layer below `encoder.<i>`.
pub fn esa_layer_keys(e: usize, exp_rate: usize) -> Vec<(String, Vec<usize>)> {
    let mut k = vec![];
    for l in ["query", "key", "value", "highway"] {
        k.push((format!("esa.{l}.weight"), vec![e, e]));
        k.push((format!("esa.{l}.bias"), vec![e]));
    }
    k.push(("esa.norm.weight".into(), vec![e]));
    k.push(("esa.norm.bias".into(), vec![e]));
    k.push(("ffn.linear1.weight".into(), vec![e * exp_rate, e]));
    k.push(("ffn.linear1.bias".into(), vec![e * exp_rate]));
    k.push(("ffn.linear2.weight".into(), vec![e, e * exp_rate]));
    k.push(("ffn.linear2.bias".into(), vec![e]));
    k.push(("ffn.norm.weight".into(), vec![e]));
    k.push(("ffn.norm.bias".into(), vec![e]));
    k
}

impl EsaLayer {
    pub fn load(w: &Weights, e: usize, heads: usize, exp_rate: usize) -> Result<EsaLayer> {
        if heads == 0 || !e.is_multiple_of(heads) {
            return Err(Error::Format(format!("ESA layer: {e} features are not divisible by {heads} heads")));
        }
        let a = w.sub("esa");
        let f = w.sub("ffn");
        Ok(EsaLayer {
            esa: EfficientSelfAttention {
                query: Linear::load(&a.sub("query"), e, e, true)?,
                key: Linear::load(&a.sub("key"), e, e, true)?,
                value: Linear::load(&a.sub("value"), e, e, true)?,
                highway: Linear::load(&a.sub("highway"), e, e, true)?,
                norm: LayerNorm::load(&a.sub("norm"), e, LN_EPS)?,
                heads,
            },
            ffn: Ffn {
                linear1: Linear::load(&f.sub("linear1"), e, e * exp_rate, true)?,
                linear2: Linear::load(&f.sub("linear2"), e * exp_rate, e, true)?,
                norm: LayerNorm::load(&f.sub("norm"), e, LN_EPS)?,
            },
        })
    }

    /// x: [B, T, E] -> [B, T, E]. Trace names: `esa.{norm, q_softmax, k_softmax, v, context,
    /// attn, out}`, `ffn.out` (the context [B, H, d, d] is computed for the trace only).
    pub fn forward(&self, x: &Tensor, masks: LayerMasks, mut trace: Option<&mut Trace>) -> Result<Tensor> {
        let a = &self.esa;
        let [b, t, e] = x.dims("ESALayer")?;
        let (h, d) = (a.heads, e / a.heads);
        let n = a.norm.forward(x)?;
        let q = a.query.forward(&n)?;
        let k = a.key.forward(&n)?;
        let v = a.value.forward(&n)?;
        let explicit = masks.context.is_some() || d % 4 != 0;
        let attn = if explicit || trace.is_some() {
            let qs = feature_softmax_any(&q, d)?;
            let ks = feature_softmax_any(&k, d)?;
            let ctx = context(&ks, &v, b, t, h, d)?; // [B·H, d, d]
            let ctx = match masks.context {
                Some(m) => {
                    m.expect("ESALayer context mask", &[b, h, d, d])?;
                    ctx.mul(&m.reshape([b * h, d, d])?)?
                }
                None => ctx,
            };
            record(&mut trace, "esa.norm".into(), &n);
            record(&mut trace, "esa.q_softmax".into(), &qs);
            record(&mut trace, "esa.k_softmax".into(), &ks);
            record(&mut trace, "esa.v".into(), &v);
            record(&mut trace, "esa.context".into(), &ctx.reshape([b, h, d, d])?);
            if explicit {
                apply_context(&qs, &ctx, b, t, h, d)?
            } else {
                q.efficient_attention(&k, &v, h)?
            }
        } else {
            q.efficient_attention(&k, &v, h)?
        };
        record(&mut trace, "esa.attn".into(), &attn);
        let y = a.highway.forward(x)?.add(&attn)?;
        record(&mut trace, "esa.out".into(), &y);
        let f = &self.ffn;
        let mut hid = f.linear1.forward_act(&f.norm.forward(&y)?, Act::Gelu)?;
        if let Some(m) = masks.ffn {
            hid = hid.mul(m)?;
        }
        let z = y.add(&f.linear2.forward(&hid)?)?;
        record(&mut trace, "ffn.out".into(), &z);
        Ok(z)
    }
}

/// Softmax over each run of `d` features, for any d (the fused op needs d % 4 == 0).
/// x: [.., H·d] -> same.
fn feature_softmax_any(x: &Tensor, d: usize) -> Result<Tensor> {
    if d.is_multiple_of(4) {
        return x.feature_softmax(d);
    }
    let shape = x.shape().to_vec();
    x.reshape([x.numel() / d, d])?.softmax()?.reshape(shape)
}

/// `C[b,h] = Σ_t k̂[b,t,h,:]ᵀ v[b,t,h,:]`. k̂, v: [B, T, H·d] -> [B·H, d, d].
fn context(ks: &Tensor, v: &Tensor, b: usize, t: usize, h: usize, d: usize) -> Result<Tensor> {
    let kt = ks.reshape([b, t, h, d])?.permute(&[0, 2, 3, 1])?.reshape([b * h, d, t])?;
    let vh = v.reshape([b, t, h, d])?.permute(&[0, 2, 1, 3])?.reshape([b * h, t, d])?;
    kt.bmm(&vh, false, 1.0)
}

/// `a[b,t,h,:] = q̂[b,t,h,:] · C[b,h]`. q̂: [B, T, H·d], C: [B·H, d, d] -> [B, T, H·d].
fn apply_context(qs: &Tensor, ctx: &Tensor, b: usize, t: usize, h: usize, d: usize) -> Result<Tensor> {
    let qh = qs.reshape([b, t, h, d])?.permute(&[0, 2, 1, 3])?.reshape([b * h, t, d])?;
    qh.bmm(ctx, false, 1.0)?.reshape([b, h, t, d])?.permute(&[0, 2, 1, 3])?.reshape([b, t, h * d])
}

/// `TransEncoder`: a stack of ESA layers (`encoder.<i>`).
pub struct TransEncoder {
    pub layers: Vec<EsaLayer>,
}

impl TransEncoder {
    /// `w` is scoped at the TransEncoder (keys `encoder.<i>.…`).
    pub fn load(w: &Weights, num_layers: usize, e: usize, heads: usize, exp_rate: usize) -> Result<TransEncoder> {
        let layers = (0..num_layers).map(|i| EsaLayer::load(&w.sub(&format!("encoder.{i}")), e, heads, exp_rate)).collect::<Result<_>>()?;
        Ok(TransEncoder { layers })
    }

    pub fn keys(num_layers: usize, e: usize, exp_rate: usize) -> Vec<(String, Vec<usize>)> {
        (0..num_layers).flat_map(|i| esa_layer_keys(e, exp_rate).into_iter().map(move |(k, s)| (format!("encoder.{i}.{k}"), s))).collect()
    }

    /// x: [B, T, E] -> [B, T, E]. `masks` apply to layer 0 only (the aggregator has one layer).
    pub fn forward(&self, x: &Tensor, masks: LayerMasks, mut trace: Option<&mut Trace>) -> Result<Tensor> {
        let mut h = x.clone();
        for (i, l) in self.layers.iter().enumerate() {
            let m = if i == 0 { masks } else { LayerMasks::default() };
            h = sub_trace(&mut trace, &format!("encoder.{i}"), |tr| l.forward(&h, m, tr))?;
        }
        Ok(h)
    }
}

/// The variational `Styler` with its prediction tokens and heads.
pub struct Styler {
    in_proj: Linear,
    style_encoder: TransEncoder,
    /// [2, E]: row 0 the μ token, row 1 the log-variance token.
    pred_token: Tensor,
    head_mu: Mlp,
    head_sigma: Mlp,
    out_mu: Linear,
    out_sigma: Linear,
    embed_dim: usize,
    src_dim: usize,
    clip_dim: usize,
}

/// `Remixer { styler }` with guidance "manifold" (the source input is the manifold code).
pub struct Remixer {
    pub styler: Styler,
    /// Slots per scene (`remixer.slot`).
    pub slot: usize,
}

fn head_spec(e: usize, dropout: f64) -> MlpSpec {
    MlpSpec { layers: vec![e, e], resnet: false, dropout }
}

impl Remixer {
    pub(crate) fn styler_gpu(&self) -> &crate::Gpu {
        self.styler.pred_token.gpu()
    }

    /// `w` is scoped at `remixer_state`.
    pub fn load(w: &Weights, cfg: &Config) -> Result<Remixer> {
        let s = &cfg.remixer.styler;
        let e = s.embed_dim;
        let w = w.sub("styler");
        let head = head_spec(e, s.dropout);
        Ok(Remixer {
            styler: Styler {
                in_proj: Linear::load(&w.sub("in_proj"), cfg.manifold_dim + cfg.clip_dim, e, true)?,
                style_encoder: TransEncoder::load(&w.sub("style_encoder"), s.num_layers, e, s.nhead, s.exp_rate)?,
                pred_token: w.tensor("pred_token", &[2, e])?,
                head_mu: Mlp::load(&w.sub("head_mu"), &head)?,
                head_sigma: Mlp::load(&w.sub("head_sigma"), &head)?,
                out_mu: Linear::load(&w.sub("out_mu"), e, cfg.clap_dim, true)?,
                out_sigma: Linear::load(&w.sub("out_sigma"), e, cfg.clap_dim, true)?,
                embed_dim: e,
                src_dim: cfg.manifold_dim,
                clip_dim: cfg.clip_dim,
            },
            slot: cfg.remixer.slot,
        })
    }

    /// Keys of `remixer_state` with shapes.
    pub fn keys(cfg: &Config) -> Vec<(String, Vec<usize>)> {
        let s = &cfg.remixer.styler;
        let e = s.embed_dim;
        let mut k = vec![
            ("styler.pred_token".to_string(), vec![2, e]),
            ("styler.in_proj.weight".into(), vec![e, cfg.manifold_dim + cfg.clip_dim]),
            ("styler.in_proj.bias".into(), vec![e]),
        ];
        k.extend(TransEncoder::keys(s.num_layers, e, s.exp_rate).into_iter().map(|(n, sh)| (format!("styler.style_encoder.{n}"), sh)));
        for h in ["head_mu", "head_sigma"] {
            k.extend(head_spec(e, s.dropout).keys().into_iter().map(|(n, sh)| (format!("styler.{h}.{n}"), sh)));
        }
        for o in ["out_mu", "out_sigma"] {
            k.push((format!("styler.{o}.weight"), vec![cfg.clap_dim, e]));
            k.push((format!("styler.{o}.bias"), vec![cfg.clap_dim]));
        }
        k
    }

    /// `Styler.forward`: src [B, S, manifold_dim] (manifold codes), clips [B, S, clip_dim]
    /// -> (mu, logvar) [B, clap_dim]. Trace names: `in_proj`, `tokens`, `style_encoder.…`,
    /// `head_mu`, `head_sigma`.
    pub fn forward(&self, src: &Tensor, clips: &Tensor, mut trace: Option<&mut Trace>) -> Result<(Tensor, Tensor)> {
        let st = &self.styler;
        let [b, s, m] = src.dims("remixer src")?;
        let want = [b, s, st.clip_dim];
        if m != st.src_dim || clips.shape() != want || b == 0 || s == 0 {
            return Err(Error::shape(
                "remixer",
                format!("src [B, S, {}] and clips {want:?}", st.src_dim),
                format!("{:?} and {:?}", src.shape(), clips.shape()),
            ));
        }
        let e = st.embed_dim;
        let x = st.in_proj.forward(&Tensor::concat(&[src, clips], 2)?)?; // [B, S, E]
        record(&mut trace, "in_proj".into(), &x);
        let tok = st.pred_token.reshape([1, 2, e])?.expand(&[b, 2, e])?;
        let x = Tensor::concat(&[&tok, &x], 1)?; // [B, S + 2, E]
        record(&mut trace, "tokens".into(), &x);
        let h = sub_trace(&mut trace, "style_encoder", |tr| st.style_encoder.forward(&x, LayerMasks::default(), tr))?;
        let h0 = h.slice(1, 0, 1, 1)?.reshape([b, e])?;
        let h1 = h.slice(1, 1, 2, 1)?.reshape([b, e])?;
        let hm = st.head_mu.forward(&h0, None)?;
        let hs = st.head_sigma.forward(&h1, None)?;
        record(&mut trace, "head_mu".into(), &hm);
        record(&mut trace, "head_sigma".into(), &hs);
        Ok((st.out_mu.forward(&hm)?, st.out_sigma.forward(&hs)?))
    }
}
