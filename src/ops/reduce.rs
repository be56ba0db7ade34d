//! Row reductions over the last dimension (`shaders/reduce.wgsl`).

use super::{params, same_gpu, u32_of};
use crate::device::Grid;
use crate::shaders::{entry::reduce as e, Entry};
use crate::tensor::Tensor;
use crate::{Error, Result};

params!(ReduceParams { rows: u32, cols: u32, eps: f32, correction: f32 });

impl Tensor {
    fn rows_cols(&self, op: &str) -> Result<(usize, usize)> {
        let cols = *self.shape().last().ok_or_else(|| Error::shape(op, "rank ≥ 1", self.shape()))?;
        if cols == 0 {
            return Err(Error::shape(op, "a non-empty last dimension", self.shape()));
        }
        Ok((self.numel() / cols, cols))
    }

    fn reduce(&self, entry: Entry, keep_cols: bool, eps: f32, correction: f32) -> Result<Tensor> {
        let (rows, cols) = self.rows_cols(entry.name)?;
        let mut shape = self.shape().to_vec();
        if !keep_cols {
            shape.pop();
        }
        let y = Tensor::empty(self.gpu(), shape)?;
        same_gpu(entry.name, self.gpu(), &[&y])?;
        let p = ReduceParams { rows: u32_of(entry.name, rows)?, cols: u32_of(entry.name, cols)?, eps, correction };
        self.gpu().launch(entry, &[], &p, &[Some(self.raw()), Some(y.raw())], Grid::linear(rows as u64)?)?;
        Ok(y)
    }

    /// Softmax over the last dim. x: [.., c] -> [.., c]
    pub fn softmax(&self) -> Result<Tensor> {
        self.reduce(e::SOFTMAX, true, 0.0, 0.0)
    }
    /// Log-softmax over the last dim. x: [.., c] -> [.., c]
    pub fn log_softmax(&self) -> Result<Tensor> {
        self.reduce(e::LOG_SOFTMAX, true, 0.0, 0.0)
    }
    /// `x / max(‖x‖₂, 1e-12)` over the last dim (torch `F.normalize`). x: [.., c] -> [.., c]
    pub fn l2_normalize(&self) -> Result<Tensor> {
        self.reduce(e::L2_NORMALIZE, true, 1e-12, 0.0)
    }
    /// Sum over the last dim. x: [.., c] -> [..]
    pub fn sum_last(&self) -> Result<Tensor> {
        self.reduce(e::SUM_ROWS, false, 0.0, 0.0)
    }
    /// Mean over the last dim. x: [.., c] -> [..]
    pub fn mean_last(&self) -> Result<Tensor> {
        self.reduce(e::MEAN_ROWS, false, 0.0, 0.0)
    }
    /// Max over the last dim. x: [.., c] -> [..]
    pub fn max_last(&self) -> Result<Tensor> {
        self.reduce(e::MAX_ROWS, false, 0.0, 0.0)
    }
    /// Standard deviation over the last dim with `correction` (1 = unbiased, torch's default).
    /// x: [.., c] -> [..]
    pub fn std_last(&self, correction: f32) -> Result<Tensor> {
        let (_, cols) = self.rows_cols("std_last")?;
        if cols as f32 <= correction {
            return Err(Error::arg("std_last", format!("{cols} values with correction {correction}")));
        }
        self.reduce(e::STD_ROWS, false, 0.0, correction)
    }
}

/// CPU references (f64), row-wise over `cols`.
pub mod reference {
    pub fn softmax(x: &[f32], cols: usize) -> Vec<f32> {
        x.chunks(cols)
            .flat_map(|r| {
                let m = r.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
                let s: f64 = r.iter().map(|&v| (v as f64 - m).exp()).sum();
                r.iter().map(move |&v| ((v as f64 - m).exp() / s) as f32).collect::<Vec<_>>()
            })
            .collect()
    }
    pub fn log_softmax(x: &[f32], cols: usize) -> Vec<f32> {
        x.chunks(cols)
            .flat_map(|r| {
                let m = r.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
                let lse = m + r.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
                r.iter().map(move |&v| (v as f64 - lse) as f32).collect::<Vec<_>>()
            })
            .collect()
    }
    pub fn l2_normalize(x: &[f32], cols: usize, eps: f64) -> Vec<f32> {
        x.chunks(cols)
            .flat_map(|r| {
                let n = r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt().max(eps);
                r.iter().map(move |&v| (v as f64 / n) as f32).collect::<Vec<_>>()
            })
            .collect()
    }
    pub fn sum(x: &[f32], cols: usize) -> Vec<f32> {
        x.chunks(cols).map(|r| r.iter().map(|&v| v as f64).sum::<f64>() as f32).collect()
    }
    pub fn mean(x: &[f32], cols: usize) -> Vec<f32> {
        x.chunks(cols).map(|r| (r.iter().map(|&v| v as f64).sum::<f64>() / cols as f64) as f32).collect()
    }
    pub fn max(x: &[f32], cols: usize) -> Vec<f32> {
        x.chunks(cols).map(|r| r.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b))).collect()
    }
    pub fn std(x: &[f32], cols: usize, correction: f64) -> Vec<f32> {
        x.chunks(cols)
            .map(|r| {
                let m = r.iter().map(|&v| v as f64).sum::<f64>() / cols as f64;
                let ss: f64 = r.iter().map(|&v| (v as f64 - m).powi(2)).sum();
                (ss / (cols as f64 - correction)).sqrt() as f32
            })
            .collect()
    }
}
