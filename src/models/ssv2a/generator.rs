//! The CLAP reconstructor `Generator` (`ssv2a/model/generator.py`, arch "mlp", variational):
//! `Linear(768, 768)` with bias → the residual MLP → μ / log-variance heads into CLAP space
//! (spec §2.3). `fold2claps` averages N samples and always L2-normalises.

use crate::tensor::{HostTensor, Tensor};
use crate::weights::Weights;
use crate::Result;

use super::manifold::fold;
use super::mlp::VariationalMlp;
use super::sampling::{l2_normalize_rows, Draw, Noise, VarSamples};
use super::{Config, Trace};

pub struct Generator {
    pub net: VariationalMlp,
}

impl Generator {
    /// `w` is scoped at `generator_state`.
    pub fn load(w: &Weights, cfg: &Config) -> Result<Generator> {
        Ok(Generator { net: VariationalMlp::load(w, cfg.manifold_dim, cfg.clap_dim, true, &cfg.generator.spec())? })
    }

    /// x: [.., manifold_dim] -> (mu, logvar) [.., clap_dim]
    pub fn forward(&self, x: &Tensor, trace: Option<&mut Trace>) -> Result<(Tensor, Tensor)> {
        self.net.forward(x, trace)
    }

    /// `fold2claps(folds, N)`: the average of N samples, L2-normalised per row.
    /// x: [.., manifold_dim] -> [.., clap_dim]; ε is drawn as [N, .., clap_dim].
    pub async fn fold2claps(&self, x: &Tensor, n: impl Into<VarSamples>, noise: &mut dyn Noise, draw: Draw) -> Result<HostTensor> {
        let mut h = fold(&self.net, x, n.into(), noise, draw).await?;
        let d = self.net.out_dim;
        l2_normalize_rows(&mut h.data, d);
        Ok(h)
    }
}
