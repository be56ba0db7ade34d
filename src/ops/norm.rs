//! LayerNorm and GroupNorm (`shaders/norm.wgsl`).

use super::{params, same_gpu, u32_of};
use crate::device::Grid;
use crate::shaders::entry::norm as e;
use crate::tensor::Tensor;
use crate::{Error, Result};

params!(NormParams { rows: u32, cols: u32, inner: u32, chans: u32, groups: u32, flags: u32, eps: f32, pad0: u32 });

fn affine_flags(op: &str, c: usize, gamma: Option<&Tensor>, beta: Option<&Tensor>) -> Result<u32> {
    let mut flags = 0;
    if let Some(g) = gamma {
        g.expect(&format!("{op}.weight"), &[c])?;
        flags |= 1;
    }
    if let Some(b) = beta {
        b.expect(&format!("{op}.bias"), &[c])?;
        flags |= 2;
    }
    Ok(flags)
}

impl Tensor {
    /// LayerNorm over the last dim (biased variance, f32 statistics).
    /// x: [.., c], gamma/beta: [c] -> [.., c]
    pub fn layer_norm(&self, gamma: Option<&Tensor>, beta: Option<&Tensor>, eps: f32) -> Result<Tensor> {
        let c = *self.shape().last().ok_or_else(|| Error::shape("layer_norm", "rank ≥ 1", self.shape()))?;
        if c == 0 {
            return Err(Error::shape("layer_norm", "a non-empty last dimension", self.shape()));
        }
        let flags = affine_flags("layer_norm", c, gamma, beta)?;
        let rows = self.numel() / c;
        let y = Tensor::empty(self.gpu(), self.shape().to_vec())?;
        let others: Vec<&Tensor> = gamma.into_iter().chain(beta).collect();
        same_gpu("layer_norm", self.gpu(), &others)?;
        let p = NormParams {
            rows: u32_of("layer_norm", rows)?,
            cols: u32_of("layer_norm", c)?,
            inner: 1,
            chans: u32_of("layer_norm", c)?,
            groups: 1,
            flags,
            eps,
            pad0: 0,
        };
        self.gpu().launch(
            e::LAYER_NORM,
            &[],
            &p,
            &[Some(self.raw()), gamma.map(|t| t.raw()), beta.map(|t| t.raw()), Some(y.raw())],
            Grid::linear(rows as u64)?,
        )?;
        Ok(y)
    }

    /// GroupNorm over channel groups of an [N, C, ...] tensor (PyTorch `nn.GroupNorm`),
    /// optionally followed by a fused SiLU. x: [n, c, ..], gamma/beta: [c] -> [n, c, ..]
    pub fn group_norm(&self, groups: usize, gamma: Option<&Tensor>, beta: Option<&Tensor>, eps: f32, silu: bool) -> Result<Tensor> {
        let op = "group_norm";
        if self.rank() < 2 {
            return Err(Error::shape(op, "[N, C, ...]", self.shape()));
        }
        let (n, c) = (self.shape()[0], self.shape()[1]);
        if groups == 0 || c % groups != 0 {
            return Err(Error::arg(op, format!("{c} channels are not divisible into {groups} groups")));
        }
        let inner: usize = self.shape()[2..].iter().product();
        if inner == 0 {
            return Err(Error::shape(op, "non-empty spatial dims", self.shape()));
        }
        let flags = affine_flags(op, c, gamma, beta)?;
        let chans = c / groups;
        let rows = n * groups;
        let y = Tensor::empty(self.gpu(), self.shape().to_vec())?;
        let others: Vec<&Tensor> = gamma.into_iter().chain(beta).collect();
        same_gpu(op, self.gpu(), &others)?;
        let p = NormParams {
            rows: u32_of(op, rows)?,
            cols: u32_of(op, chans * inner)?,
            inner: u32_of(op, inner)?,
            chans: u32_of(op, chans)?,
            groups: u32_of(op, groups)?,
            flags,
            eps,
            pad0: 0,
        };
        let entry = if silu { e::GROUP_NORM_SILU } else { e::GROUP_NORM };
        self.gpu().launch(entry, &[], &p, &[Some(self.raw()), gamma.map(|t| t.raw()), beta.map(|t| t.raw()), Some(y.raw())], Grid::linear(rows as u64)?)?;
        Ok(y)
    }
}

/// CPU references (f64 statistics).
pub mod reference {
    pub fn layer_norm(x: &[f32], c: usize, gamma: Option<&[f32]>, beta: Option<&[f32]>, eps: f64) -> Vec<f32> {
        x.chunks(c)
            .flat_map(|r| {
                let m = r.iter().map(|&v| v as f64).sum::<f64>() / c as f64;
                let var = r.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / c as f64;
                let rs = 1.0 / (var + eps).sqrt();
                r.iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        let mut o = (v as f64 - m) * rs;
                        if let Some(g) = gamma {
                            o *= g[i] as f64;
                        }
                        if let Some(b) = beta {
                            o += b[i] as f64;
                        }
                        o as f32
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// x: [n, c, inner] flattened.
    #[allow(clippy::too_many_arguments)]
    pub fn group_norm(
        x: &[f32],
        n: usize,
        c: usize,
        inner: usize,
        groups: usize,
        gamma: Option<&[f32]>,
        beta: Option<&[f32]>,
        eps: f64,
        silu: bool,
    ) -> Vec<f32> {
        let mut y = vec![0f32; x.len()];
        let cg = c / groups;
        for b in 0..n {
            for g in 0..groups {
                let base = (b * c + g * cg) * inner;
                let len = cg * inner;
                let r = &x[base..base + len];
                let m = r.iter().map(|&v| v as f64).sum::<f64>() / len as f64;
                let var = r.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / len as f64;
                let rs = 1.0 / (var + eps).sqrt();
                for i in 0..len {
                    let ch = g * cg + i / inner;
                    let mut o = (r[i] as f64 - m) * rs;
                    if let Some(gm) = gamma {
                        o *= gm[ch] as f64;
                    }
                    if let Some(bt) = beta {
                        o += bt[ch] as f64;
                    }
                    if silu {
                        o = o / (1.0 + (-o).exp());
                    }
                    y[base + i] = o as f32;
                }
            }
        }
        y
    }
}
