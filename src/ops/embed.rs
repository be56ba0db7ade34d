//! Row gather from a weight table (`shaders/embed.wgsl`).

use super::{params, u32_of};
use crate::device::Grid;
use crate::shaders::entry::embed as e;
use crate::tensor::{Tensor, Weight};
use crate::{Error, Result};

params!(EmbedParams { n: u32, dim: u32, row_stride: u32, rows: u32 });

impl Weight {
    /// Embedding lookup: rows of a [rows, dim] table. `ids` are validated here, on the CPU.
    /// ids: [n] -> [n, dim]
    pub fn gather_rows(&self, ids: &[u32]) -> Result<Tensor> {
        let op = "gather_rows";
        let (rows, dim) = (self.rows(), self.cols());
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= rows) {
            return Err(Error::arg(op, format!("index {bad} out of range for a table of {rows} rows")));
        }
        if rows > (1 << 24) {
            return Err(Error::arg(op, format!("{rows} rows: indices above 2^24 are not exact in f32")));
        }
        let f: Vec<f32> = ids.iter().map(|&i| i as f32).collect();
        let idt = Tensor::from_slice(self.gpu(), &f, [ids.len()])?;
        let y = Tensor::empty(self.gpu(), [ids.len(), dim])?;
        if ids.is_empty() {
            return Ok(y);
        }
        let p = EmbedParams { n: u32_of(op, ids.len())?, dim: u32_of(op, dim)?, row_stride: u32_of(op, self.row_stride())?, rows: u32_of(op, rows)? };
        self.gpu().launch(e::GATHER_ROWS, &self.overrides(), &p, &[Some(self.raw()), Some(idt.raw()), Some(y.raw())], Grid::threads(y.numel() as u64, 256)?)?;
        Ok(y)
    }
}
