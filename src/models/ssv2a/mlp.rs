//! The official `MLP` (`ssv2a/model/modules.py:255-286`) with its `ResWrapper` blocks.
//!
//! With `resnet` (honoured only for more than two layers), layer triples (a, b, c) at 2i,
//! 2i+1, 2i+2 become residual blocks `h ← GELU(P(h) + LN_c(L2(GELU(LN_b(L1(h))))))`, then each
//! remaining pair gets `Linear → LayerNorm → (Dropout) → GELU`; without it every pair does.
//!
//! The `nn.Sequential` indices depend on the dropout: the official code only appends
//! `nn.Dropout` modules when `dropout != 0`, which shifts every later index. [`MlpLayout`]
//! computes the key names from (layers, resnet, dropout) exactly as the constructor builds
//! them, so a pack whose config disagrees with its keys fails to load with the missing key.

use crate::nn::{LayerNorm, Linear};
use crate::tensor::Tensor;
use crate::weights::Weights;
use crate::Result;

use super::{record, Trace, LN_EPS};

/// Config of one MLP: the `layers`, `resnet` and `dropout` fields of ssv2a.json.
#[derive(Clone, Debug, PartialEq)]
pub struct MlpSpec {
    pub layers: Vec<usize>,
    pub resnet: bool,
    pub dropout: f64,
}

/// Where each module of the MLP sits in its `nn.Sequential` (key prefixes below `model.`).
#[derive(Clone, Debug, PartialEq)]
pub struct MlpLayout {
    /// (a, b, c, sequential index of the ResWrapper, indices of L1, LN_b, L2, LN_c inside `mod`).
    pub blocks: Vec<([usize; 3], usize, [usize; 4])>,
    /// (in, out, index of the Linear, index of the LayerNorm, index of the GELU).
    pub pairs: Vec<(usize, usize, usize, usize, usize)>,
}

impl MlpSpec {
    pub fn layout(&self) -> MlpLayout {
        let l = &self.layers;
        let drop = usize::from(self.dropout != 0.0);
        let mut blocks = vec![];
        let mut start = 0;
        if self.resnet && l.len() > 2 {
            for i in 0..(l.len() - 1) / 2 {
                // mod: Linear, LN, [Dropout], GELU, Linear, LN, [Dropout]
                let inner = [0, 1, 3 + drop, 4 + drop];
                blocks.push(([l[2 * i], l[2 * i + 1], l[2 * i + 2]], 2 * i, inner));
                start = 2 * i + 2;
            }
        }
        let mut pairs = vec![];
        let mut idx = blocks.len() * 2;
        for i in start..l.len().saturating_sub(1) {
            // Linear, LN, [Dropout], GELU
            pairs.push((l[i], l[i + 1], idx, idx + 1, idx + 2 + drop));
            idx += 3 + drop;
        }
        MlpLayout { blocks, pairs }
    }

    /// Every state-dict key (below the MLP's own prefix) with its shape.
    pub fn keys(&self) -> Vec<(String, Vec<usize>)> {
        let lay = self.layout();
        let mut out = vec![];
        let lin = |out: &mut Vec<(String, Vec<usize>)>, p: String, i: usize, o: usize| {
            out.push((format!("{p}.weight"), vec![o, i]));
            out.push((format!("{p}.bias"), vec![o]));
        };
        let ln = |out: &mut Vec<(String, Vec<usize>)>, p: String, d: usize| {
            out.push((format!("{p}.weight"), vec![d]));
            out.push((format!("{p}.bias"), vec![d]));
        };
        for ([a, b, c], idx, m) in &lay.blocks {
            lin(&mut out, format!("model.{idx}.mod.{}", m[0]), *a, *b);
            ln(&mut out, format!("model.{idx}.mod.{}", m[1]), *b);
            lin(&mut out, format!("model.{idx}.mod.{}", m[2]), *b, *c);
            ln(&mut out, format!("model.{idx}.mod.{}", m[3]), *c);
            lin(&mut out, format!("model.{idx}.proj"), *a, *c);
        }
        for (i, o, li, ni, _) in &lay.pairs {
            lin(&mut out, format!("model.{li}"), *i, *o);
            ln(&mut out, format!("model.{ni}"), *o);
        }
        out
    }

    pub fn out_dim(&self) -> usize {
        *self.layers.last().unwrap_or(&0)
    }
}

/// `ResWrapper(mod, proj)`: `proj(x) + mod(x)`; the MLP applies GELU after it.
struct ResBlock {
    l1: Linear,
    ln_b: LayerNorm,
    l2: Linear,
    ln_c: LayerNorm,
    proj: Linear,
    index: usize,
}

struct Pair {
    linear: Linear,
    norm: LayerNorm,
    gelu_index: usize,
}

/// The official `MLP`. Dropout is identity (eval mode) unless a mask is given to
/// [`Mlp::forward_masked`].
pub struct Mlp {
    blocks: Vec<ResBlock>,
    pairs: Vec<Pair>,
}

impl Mlp {
    /// `w` is scoped at the MLP module (its keys are `model.<i>...`).
    pub fn load(w: &Weights, spec: &MlpSpec) -> Result<Mlp> {
        let lay = spec.layout();
        let mut blocks = vec![];
        for ([a, b, c], idx, m) in &lay.blocks {
            let s = w.sub(&format!("model.{idx}"));
            blocks.push(ResBlock {
                l1: Linear::load(&s.sub(&format!("mod.{}", m[0])), *a, *b, true)?,
                ln_b: LayerNorm::load(&s.sub(&format!("mod.{}", m[1])), *b, LN_EPS)?,
                l2: Linear::load(&s.sub(&format!("mod.{}", m[2])), *b, *c, true)?,
                ln_c: LayerNorm::load(&s.sub(&format!("mod.{}", m[3])), *c, LN_EPS)?,
                proj: Linear::load(&s.sub("proj"), *a, *c, true)?,
                index: *idx,
            });
        }
        let mut pairs = vec![];
        for (i, o, li, ni, gi) in &lay.pairs {
            pairs.push(Pair {
                linear: Linear::load(&w.sub(&format!("model.{li}")), *i, *o, true)?,
                norm: LayerNorm::load(&w.sub(&format!("model.{ni}")), *o, LN_EPS)?,
                gelu_index: *gi,
            });
        }
        Ok(Mlp { blocks, pairs })
    }

    /// x: [.., layers[0]] -> [.., layers[last]] (eval mode). The trace records the output of
    /// each ResWrapper (`model.<i>`), of the GELU after it (`model.<i+1>`) and of each pair's
    /// GELU, under the Sequential indices.
    pub fn forward(&self, x: &Tensor, trace: Option<&mut Trace>) -> Result<Tensor> {
        self.forward_masked(x, None, trace)
    }

    /// With train-mode dropout after the LayerNorm of every pair: `mask` (already scaled by
    /// 1/(1−p)) multiplies the LayerNorm output. Only used for the aggregator's heads, which
    /// are single pairs (`MLP([E, E])`), so one mask of the pair's output shape suffices.
    pub fn forward_masked(&self, x: &Tensor, mask: Option<&Tensor>, mut trace: Option<&mut Trace>) -> Result<Tensor> {
        let mut h = x.clone();
        for b in &self.blocks {
            let t = b.ln_b.forward(&b.l1.forward(&h)?)?.gelu()?;
            let t = b.ln_c.forward(&b.l2.forward(&t)?)?;
            let r = b.proj.forward(&h)?.add(&t)?;
            record(&mut trace, format!("model.{}", b.index), &r);
            h = r.gelu()?;
            record(&mut trace, format!("model.{}", b.index + 1), &h);
        }
        for p in &self.pairs {
            let mut t = p.norm.forward(&p.linear.forward(&h)?)?;
            if let Some(m) = mask {
                t = t.mul(m)?;
            }
            h = t.gelu()?;
            record(&mut trace, format!("model.{}", p.gelu_index), &h);
        }
        Ok(h)
    }
}

/// The body shared by `ManifoldEncoder` and `Generator` (arch "mlp", variational):
/// `model.0` Linear(in → layers[0]) (bias-free in the manifold encoders), `model.1` the MLP,
/// then the heads `out_mu` and `out_sigma` (a log-variance) Linear(layers[last] → out).
pub struct VariationalMlp {
    in_linear: Linear,
    mlp: Mlp,
    out_mu: Linear,
    out_sigma: Linear,
    pub in_dim: usize,
    pub out_dim: usize,
}

impl VariationalMlp {
    pub fn load(w: &Weights, in_dim: usize, out_dim: usize, in_bias: bool, spec: &MlpSpec) -> Result<VariationalMlp> {
        let first = *spec.layers.first().ok_or_else(|| crate::Error::Format("MLP with no layers".into()))?;
        let hidden = spec.out_dim();
        Ok(VariationalMlp {
            in_linear: Linear::load(&w.sub("model.0"), in_dim, first, in_bias)?,
            mlp: Mlp::load(&w.sub("model.1"), spec)?,
            out_mu: Linear::load(&w.sub("out_mu"), hidden, out_dim, true)?,
            out_sigma: Linear::load(&w.sub("out_sigma"), hidden, out_dim, true)?,
            in_dim,
            out_dim,
        })
    }

    /// Every state-dict key with its shape.
    pub fn keys(in_dim: usize, out_dim: usize, in_bias: bool, spec: &MlpSpec) -> Vec<(String, Vec<usize>)> {
        let first = spec.layers.first().copied().unwrap_or(0);
        let hidden = spec.out_dim();
        let mut k = vec![("model.0.weight".to_string(), vec![first, in_dim])];
        if in_bias {
            k.push(("model.0.bias".into(), vec![first]));
        }
        k.extend(spec.keys().into_iter().map(|(n, s)| (format!("model.1.{n}"), s)));
        for head in ["out_mu", "out_sigma"] {
            k.push((format!("{head}.weight"), vec![out_dim, hidden]));
            k.push((format!("{head}.bias"), vec![out_dim]));
        }
        k
    }

    /// x: [.., in] -> (mu, logvar) [.., out]. Trace names: `model.0`, `model.1.model.<i>`.
    pub fn forward(&self, x: &Tensor, mut trace: Option<&mut Trace>) -> Result<(Tensor, Tensor)> {
        let last = *x.shape().last().unwrap_or(&0);
        if last != self.in_dim {
            return Err(crate::Error::shape("ssv2a mlp encoder", format!("[.., {}]", self.in_dim), x.shape()));
        }
        let h = self.in_linear.forward(x)?;
        record(&mut trace, "model.0".into(), &h);
        let h = super::sub_trace(&mut trace, "model.1", |tr| self.mlp.forward(&h, tr))?;
        Ok((self.out_mu.forward(&h)?, self.out_sigma.forward(&h)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_official_sequential() {
        // Manifold encoder MLP, dropout 0.2 (spec §3.1): blocks at 0 and 2, pair at 4/5.
        let m = MlpSpec { layers: vec![768, 768, 1536, 1536, 3072, 3072], resnet: true, dropout: 0.2 };
        let lay = m.layout();
        assert_eq!(lay.blocks, vec![([768, 768, 1536], 0, [0, 1, 4, 5]), ([1536, 1536, 3072], 2, [0, 1, 4, 5])]);
        assert_eq!(lay.pairs, vec![(3072, 3072, 4, 5, 7)]);
        // Without dropout the modules shift.
        let m0 = MlpSpec { dropout: 0.0, ..m.clone() };
        assert_eq!(m0.layout().blocks[0].2, [0, 1, 3, 4]);
        assert_eq!(m0.layout().pairs, vec![(3072, 3072, 4, 5, 6)]);
        // Generator: three blocks, pair at 6/7.
        let g = MlpSpec { layers: vec![768, 768, 896, 896, 1024, 1024, 2048, 2048], resnet: true, dropout: 0.2 };
        assert_eq!(g.layout().pairs, vec![(2048, 2048, 6, 7, 9)]);
        assert_eq!(g.keys().len(), 3 * 10 + 4);
        // Heads: MLP([E, E]) -> Linear 0, LN 1.
        let h = MlpSpec { layers: vec![768, 768], resnet: false, dropout: 0.2 };
        assert_eq!(h.layout().pairs, vec![(768, 768, 0, 1, 3)]);
        assert!(h.layout().blocks.is_empty());
    }
}
