//! Data movement (`shaders/copy.wgsl`): permute, slice, concat, pad, expand and nearest
//! upsampling, all as one strided "reindex" copy or a pad kernel. `reshape` is metadata only
//! (see `Tensor::reshape`).

use super::binary::{collapse, pack8};
use super::{params, same_gpu, u32_of};
use crate::device::Grid;
use crate::shaders::entry::copy as e;
use crate::tensor::Tensor;
use crate::{Error, Result};

params!(CopyParams {
    n: u32,
    rank: u32,
    in_offset: u32,
    out_offset: u32,
    value: f32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
    shape: [[u32; 4]; 2],
    in_strides: [[u32; 4]; 2],
    out_strides: [[u32; 4]; 2],
    in_shape: [[u32; 4]; 2],
    before: [[u32; 4]; 2],
});

/// How `pad` fills the border.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PadMode {
    /// A constant (0 for convolutions).
    Constant(f32),
    /// −∞, as PyTorch's `MaxPool2d(padding=…)` pads.
    NegInf,
    /// PyTorch "reflect": the edge value is not repeated.
    Reflect,
}

/// Row-major strides of a contiguous `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

impl Tensor {
    /// The general strided copy: for every coordinate `c` of `shape`,
    /// `dst[out_offset + c·out_strides] = self[in_offset + c·in_strides]`.
    pub fn strided_copy_into(
        &self,
        dst: &Tensor,
        shape: &[usize],
        in_offset: usize,
        in_strides: &[usize],
        out_offset: usize,
        out_strides: &[usize],
    ) -> Result<()> {
        let op = "strided_copy";
        same_gpu(op, self.gpu(), &[dst])?;
        if shape.len() != in_strides.len() || shape.len() != out_strides.len() {
            return Err(Error::arg(op, "shape and strides differ in rank"));
        }
        let n: usize = shape.iter().product();
        if n == 0 {
            return Ok(());
        }
        // Bounds: the largest offsets touched must lie inside both tensors.
        let last_in = in_offset + shape.iter().zip(in_strides).map(|(d, s)| (d - 1) * s).sum::<usize>();
        let last_out = out_offset + shape.iter().zip(out_strides).map(|(d, s)| (d - 1) * s).sum::<usize>();
        if last_in >= self.numel() || last_out >= dst.numel() {
            return Err(Error::arg(op, format!("copy of {shape:?} is out of bounds of {:?} -> {:?}", self.shape(), dst.shape())));
        }
        let (cs, st) = collapse(shape, &[in_strides.to_vec(), out_strides.to_vec()]);
        let p = CopyParams {
            n: u32_of(op, n)?,
            rank: cs.len() as u32,
            in_offset: u32_of(op, in_offset)?,
            out_offset: u32_of(op, out_offset)?,
            shape: pack8(op, &cs)?,
            in_strides: pack8(op, &st[0])?,
            out_strides: pack8(op, &st[1])?,
            ..Default::default()
        };
        self.gpu().launch(e::STRIDED_COPY, &[], &p, &[Some(self.raw()), Some(dst.raw())], Grid::threads(n as u64, 256)?)
    }

    /// Reorder dims: `y.shape[i] = x.shape[perm[i]]`.
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        let r = self.rank();
        let mut seen = vec![false; r];
        if perm.len() != r || perm.iter().any(|&p| p >= r || std::mem::replace(&mut seen[p], true)) {
            return Err(Error::arg("permute", format!("{perm:?} is not a permutation of {r} dims")));
        }
        let xs = contiguous_strides(self.shape());
        let shape: Vec<usize> = perm.iter().map(|&p| self.shape()[p]).collect();
        let in_strides: Vec<usize> = perm.iter().map(|&p| xs[p]).collect();
        let y = Tensor::empty(self.gpu(), shape.clone())?;
        self.strided_copy_into(&y, &shape, 0, &in_strides, 0, &contiguous_strides(&shape))?;
        Ok(y)
    }

    /// Swap two dims.
    pub fn transpose(&self, a: usize, b: usize) -> Result<Tensor> {
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        if a >= perm.len() || b >= perm.len() {
            return Err(Error::arg("transpose", format!("dims {a}, {b} of a rank-{} tensor", self.rank())));
        }
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// `x[.., start..end:step, ..]` along `dim`.
    pub fn slice(&self, dim: usize, start: usize, end: usize, step: usize) -> Result<Tensor> {
        if dim >= self.rank() || step == 0 || start > end || end > self.shape()[dim] {
            return Err(Error::arg("slice", format!("[{start}..{end}:{step}] on dim {dim} of {:?}", self.shape())));
        }
        let xs = contiguous_strides(self.shape());
        let mut shape = self.shape().to_vec();
        shape[dim] = (end - start).div_ceil(step);
        let mut in_strides = xs.clone();
        in_strides[dim] *= step;
        let y = Tensor::empty(self.gpu(), shape.clone())?;
        self.strided_copy_into(&y, &shape, start * xs[dim], &in_strides, 0, &contiguous_strides(&shape))?;
        Ok(y)
    }

    /// Concatenate along `dim`; all other dims must match.
    pub fn concat(parts: &[&Tensor], dim: usize) -> Result<Tensor> {
        let first = parts.first().ok_or_else(|| Error::arg("concat", "no tensors"))?;
        let r = first.rank();
        if dim >= r {
            return Err(Error::arg("concat", format!("dim {dim} of a rank-{r} tensor")));
        }
        let mut shape = first.shape().to_vec();
        shape[dim] = 0;
        for t in parts {
            let ok = t.rank() == r && (0..r).all(|i| i == dim || t.shape()[i] == first.shape()[i]);
            if !ok {
                return Err(Error::shape("concat", first.shape(), t.shape()));
            }
            shape[dim] += t.shape()[dim];
        }
        let y = Tensor::empty(first.gpu(), shape.clone())?;
        let ys = contiguous_strides(&shape);
        let mut off = 0;
        for t in parts {
            t.strided_copy_into(&y, t.shape(), 0, &contiguous_strides(t.shape()), off * ys[dim], &ys)?;
            off += t.shape()[dim];
        }
        Ok(y)
    }

    /// Materialise a broadcast to `shape` (NumPy rules).
    pub fn expand(&self, shape: &[usize]) -> Result<Tensor> {
        match super::binary::broadcast_shape(self.shape(), shape) {
            Some(s) if s == shape => {}
            _ => return Err(Error::shape("expand", shape, self.shape())),
        }
        let in_strides = super::binary::broadcast_strides(self.shape(), shape);
        let y = Tensor::empty(self.gpu(), shape.to_vec())?;
        self.strided_copy_into(&y, shape, 0, &in_strides, 0, &contiguous_strides(shape))?;
        Ok(y)
    }

    /// Nearest-neighbour upsampling of the trailing `scales.len()` dims by integer factors
    /// (PyTorch `interpolate(mode="nearest")` with integer scale factors).
    /// E.g. [n, c, h, w] with scales [2, 2] -> [n, c, 2h, 2w].
    pub fn upsample_nearest(&self, scales: &[usize]) -> Result<Tensor> {
        let r = self.rank();
        if scales.is_empty() || scales.len() > r || scales.contains(&0) {
            return Err(Error::arg("upsample_nearest", format!("scales {scales:?} for {:?}", self.shape())));
        }
        let lead = r - scales.len();
        let xs = contiguous_strides(self.shape());
        // Iterate over [lead dims..., (d_i, s_i) pairs...]: the output viewed with each upsampled
        // dim split in two; the input stride of each s_i is 0.
        let mut shape = self.shape()[..lead].to_vec();
        let mut in_strides = xs[..lead].to_vec();
        let mut out_shape = self.shape()[..lead].to_vec();
        for (i, &s) in scales.iter().enumerate() {
            let d = self.shape()[lead + i];
            shape.extend([d, s]);
            in_strides.extend([xs[lead + i], 0]);
            out_shape.push(d * s);
        }
        let y = Tensor::empty(self.gpu(), out_shape)?;
        self.strided_copy_into(&y, &shape, 0, &in_strides, 0, &contiguous_strides(&shape))?;
        Ok(y)
    }

    /// Pad every dim by `pads[i] = (before, after)` (one pair per dim, outermost first).
    pub fn pad(&self, pads: &[(usize, usize)], mode: PadMode) -> Result<Tensor> {
        let op = "pad";
        let r = self.rank();
        if pads.len() != r || r > 8 {
            return Err(Error::arg(op, format!("{} pad pairs for a rank-{r} tensor (≤ 8)", pads.len())));
        }
        if mode == PadMode::Reflect {
            for (i, &(b, a)) in pads.iter().enumerate() {
                if b >= self.shape()[i].max(1) || a >= self.shape()[i].max(1) {
                    return Err(Error::arg(op, format!("reflect padding ({b}, {a}) must be smaller than dim {i} of {:?}", self.shape())));
                }
            }
        }
        if self.numel() == 0 {
            return Err(Error::shape(op, "a non-empty tensor", self.shape()));
        }
        let out: Vec<usize> = self.shape().iter().zip(pads).map(|(d, (b, a))| d + b + a).collect();
        let y = Tensor::empty(self.gpu(), out.clone())?;
        let n = y.numel();
        let (entry, value) = match mode {
            PadMode::Constant(v) => (e::PAD_CONST, v),
            PadMode::NegInf => (e::PAD_CONST, f32::NEG_INFINITY),
            PadMode::Reflect => (e::PAD_REFLECT, 0.0),
        };
        let before: Vec<usize> = pads.iter().map(|p| p.0).collect();
        let p = CopyParams {
            n: u32_of(op, n)?,
            rank: r as u32,
            value,
            shape: pack8(op, &out)?,
            in_strides: pack8(op, &contiguous_strides(self.shape()))?,
            out_strides: pack8(op, &contiguous_strides(&out))?,
            in_shape: pack8(op, self.shape())?,
            before: pack8(op, &before)?,
            ..Default::default()
        };
        self.gpu().launch(entry, &[], &p, &[Some(self.raw()), Some(y.raw())], Grid::threads(n as u64, 256)?)?;
        Ok(y)
    }
}

/// CPU references.
pub mod reference {
    use super::contiguous_strides;

    pub fn permute(x: &[f32], shape: &[usize], perm: &[usize]) -> Vec<f32> {
        let xs = contiguous_strides(shape);
        let out: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        let n: usize = out.iter().product();
        (0..n)
            .map(|i| {
                let (mut rem, mut off) = (i, 0);
                for d in (0..out.len()).rev() {
                    off += (rem % out[d]) * xs[perm[d]];
                    rem /= out[d];
                }
                x[off]
            })
            .collect()
    }

    /// Pad with `value`, or reflect when `value` is None.
    pub fn pad(x: &[f32], shape: &[usize], pads: &[(usize, usize)], value: Option<f32>) -> Vec<f32> {
        let xs = contiguous_strides(shape);
        let out: Vec<usize> = shape.iter().zip(pads).map(|(d, (b, a))| d + b + a).collect();
        let n: usize = out.iter().product();
        (0..n)
            .map(|i| {
                let (mut rem, mut off) = (i, 0i64);
                for d in (0..out.len()).rev() {
                    let c = (rem % out[d]) as i64;
                    rem /= out[d];
                    let mut j = c - pads[d].0 as i64;
                    let len = shape[d] as i64;
                    if j < 0 || j >= len {
                        match value {
                            Some(v) => return v,
                            None => {
                                if j < 0 {
                                    j = -j;
                                }
                                if j >= len {
                                    j = 2 * (len - 1) - j;
                                }
                            }
                        }
                    }
                    off += j * xs[d] as i64;
                }
                x[off as usize]
            })
            .collect()
    }
}
