//! Row gather (`shaders/embed.wgsl`): from a weight table ([`Weight::gather_rows`]) or from an
//! f32 tensor ([`Tensor::gather_rows`], token permutations).

use super::{params, u32_of};
use crate::device::Grid;
use crate::shaders::entry::embed as e;
use crate::tensor::{Tensor, Weight};
use crate::{Error, Result};

params!(EmbedParams { n: u32, dim: u32, row_stride: u32, rows: u32 });

/// ids as exact f32 values (the kernel's index format), checked against `rows`.
fn ids_tensor(op: &str, gpu: &crate::Gpu, ids: &[u32], rows: usize) -> Result<Tensor> {
    if let Some(bad) = ids.iter().find(|&&i| i as usize >= rows) {
        return Err(Error::arg(op, format!("index {bad} out of range for a table of {rows} rows")));
    }
    if rows > (1 << 24) {
        return Err(Error::arg(op, format!("{rows} rows: indices above 2^24 are not exact in f32")));
    }
    let f: Vec<f32> = ids.iter().map(|&i| i as f32).collect();
    Tensor::from_slice(gpu, &f, [ids.len()])
}

impl Tensor {
    /// Rows of a tensor viewed as [rows, dim] (rows = the first dim): `y[i, :] = x[ids[i], :]`.
    /// Any order, repeats allowed; `ids` are validated here, on the CPU.
    /// x: [rows, ..] -> [ids.len(), ..]
    pub fn gather_rows(&self, ids: &[u32]) -> Result<Tensor> {
        let op = "tensor gather_rows";
        let Some((&rows, rest)) = self.shape().split_first() else {
            return Err(Error::shape(op, "rank ≥ 1", self.shape()));
        };
        let dim: usize = rest.iter().product();
        let idt = ids_tensor(op, self.gpu(), ids, rows)?;
        let mut shape = self.shape().to_vec();
        shape[0] = ids.len();
        let y = Tensor::empty(self.gpu(), shape)?;
        if y.numel() == 0 {
            return Ok(y);
        }
        let p = EmbedParams { n: u32_of(op, ids.len())?, dim: u32_of(op, dim)?, row_stride: u32_of(op, dim)?, rows: u32_of(op, rows)? };
        self.gpu().launch(e::GATHER_ROWS, &[("W_F16", 0.0)], &p, &[Some(self.raw()), Some(idt.raw()), Some(y.raw())], Grid::threads(y.numel() as u64, 256)?)?;
        Ok(y)
    }
}

/// CPU references.
pub mod reference {
    /// `y[i, :] = x[ids[i], :]` for x of rows of `dim` values.
    pub fn gather_rows(x: &[f32], dim: usize, ids: &[u32]) -> Vec<f32> {
        ids.iter().flat_map(|&i| x[i as usize * dim..(i as usize + 1) * dim].iter().copied()).collect()
    }
}

impl Weight {
    /// Embedding lookup: rows of a [rows, dim] table. `ids` are validated here, on the CPU.
    /// ids: [n] -> [n, dim]
    pub fn gather_rows(&self, ids: &[u32]) -> Result<Tensor> {
        let op = "gather_rows";
        let (rows, dim) = (self.rows(), self.cols());
        let idt = ids_tensor(op, self.gpu(), ids, rows)?;
        let y = Tensor::empty(self.gpu(), [ids.len(), dim])?;
        if ids.is_empty() {
            return Ok(y);
        }
        let p = EmbedParams { n: u32_of(op, ids.len())?, dim: u32_of(op, dim)?, row_stride: u32_of(op, self.row_stride())?, rows: u32_of(op, rows)? };
        self.gpu().launch(e::GATHER_ROWS, &self.overrides(), &p, &[Some(self.raw()), Some(idt.raw()), Some(y.raw())], Grid::threads(y.numel() as u64, 256)?)?;
        Ok(y)
    }
}
