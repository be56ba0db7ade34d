//! The CMSS manifold (`ssv2a/model/manifold.py`): two independent variational encoders into
//! the shared 768-d manifold, `clip_encoder` (CLIP image/text embeddings) and `clap_encoder`
//! (CLAP audio embeddings). Each is `Linear(in, 768, bias=False)` → the residual MLP →
//! μ / log-variance heads (spec §2.2).
//!
//! A zero input does not map to a zero code (the MLP's Linears have biases), so empty slots
//! get a non-zero code; Cycle Mix depends on that.

use crate::tensor::{HostTensor, Tensor};
use crate::weights::Weights;
use crate::Result;

use super::mlp::VariationalMlp;
use super::sampling::{sample, Draw, Noise, VarSamples};
use super::{Config, Trace};

/// `Manifold` without its training-only `logit_scale` / `self_logit_scale`.
pub struct Manifold {
    pub clip_encoder: VariationalMlp,
    pub clap_encoder: VariationalMlp,
}

impl Manifold {
    /// `w` is scoped at `manifold_state`.
    pub fn load(w: &Weights, cfg: &Config) -> Result<Manifold> {
        let spec = cfg.manifold.spec();
        Ok(Manifold {
            clip_encoder: VariationalMlp::load(&w.sub("clip_encoder"), cfg.clip_dim, cfg.manifold_dim, false, &spec)?,
            clap_encoder: VariationalMlp::load(&w.sub("clap_encoder"), cfg.clap_dim, cfg.manifold_dim, false, &spec)?,
        })
    }

    /// x: [.., clip_dim] -> (mu, logvar) [.., manifold_dim]
    pub fn encode_clips(&self, x: &Tensor, trace: Option<&mut Trace>) -> Result<(Tensor, Tensor)> {
        self.clip_encoder.forward(x, trace)
    }

    /// x: [.., clap_dim] -> (mu, logvar) [.., manifold_dim]
    pub fn encode_claps(&self, x: &Tensor, trace: Option<&mut Trace>) -> Result<(Tensor, Tensor)> {
        self.clap_encoder.forward(x, trace)
    }

    /// `fold_clips(x, N)`: the average of N samples of the CLIP encoder (not normalised).
    /// x: [.., clip_dim] -> [.., manifold_dim]; ε is drawn as [N, .., manifold_dim].
    pub async fn fold_clips(&self, x: &Tensor, n: impl Into<VarSamples>, noise: &mut dyn Noise, draw: Draw) -> Result<HostTensor> {
        fold(&self.clip_encoder, x, n.into(), noise, draw).await
    }

    /// `fold_claps(x, N)`: as [`Manifold::fold_clips`] with the CLAP encoder.
    /// x: [.., clap_dim] -> [.., manifold_dim]
    pub async fn fold_claps(&self, x: &Tensor, n: impl Into<VarSamples>, noise: &mut dyn Noise, draw: Draw) -> Result<HostTensor> {
        fold(&self.clap_encoder, x, n.into(), noise, draw).await
    }
}

/// Average of N samples of a variational encoder's output, on the host.
pub(crate) async fn fold(enc: &VariationalMlp, x: &Tensor, n: VarSamples, noise: &mut dyn Noise, draw: Draw) -> Result<HostTensor> {
    let (mu, lv) = enc.forward(x, None)?;
    let mu = mu.to_host().await?;
    let lv = lv.to_host().await?;
    let v = sample(&mu.data, &lv.data, n, noise, draw)?;
    HostTensor::new(mu.shape, v)
}
