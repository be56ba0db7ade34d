//! Tensors: contiguous f32 activations on the GPU ([`Tensor`]), their host copies
//! ([`HostTensor`]), and weights stored as packed fp16 (or f32 for parity packs) ([`Weight`]).
//! No math here: ops live in `ops/`.

use std::sync::Arc;

use crate::device::{Gpu, GpuBuffer};
use crate::{Error, Result};

/// A contiguous row-major f32 tensor in a GPU buffer. Cloning shares the buffer;
/// `reshape` is metadata only. Views that move data (permute, slice, pad) are copy kernels.
#[derive(Clone)]
pub struct Tensor {
    buf: Arc<GpuBuffer>,
    shape: Vec<usize>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor{:?}", self.shape)
    }
}

/// A tensor on the host: f32 values in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl HostTensor {
    pub fn new(shape: impl Into<Vec<usize>>, data: Vec<f32>) -> Result<HostTensor> {
        let shape = shape.into();
        if numel(&shape) != data.len() {
            return Err(Error::shape("HostTensor::new", format!("{} values for {shape:?}", numel(&shape)), data.len()));
        }
        Ok(HostTensor { shape, data })
    }
    pub fn zeros(shape: impl Into<Vec<usize>>) -> HostTensor {
        let shape = shape.into();
        let n = numel(&shape);
        HostTensor { shape, data: vec![0.0; n] }
    }
    pub fn numel(&self) -> usize {
        self.data.len()
    }
    pub fn reshape(mut self, shape: impl Into<Vec<usize>>) -> Result<HostTensor> {
        let shape = shape.into();
        if numel(&shape) != self.data.len() {
            return Err(Error::shape("reshape", &self.shape, shape));
        }
        self.shape = shape;
        Ok(self)
    }
}

impl Tensor {
    pub(crate) fn from_parts(buf: GpuBuffer, shape: Vec<usize>) -> Tensor {
        Tensor { buf: Arc::new(buf), shape }
    }

    /// An uninitialised tensor (its contents are whatever the pooled buffer held).
    pub fn empty(gpu: &Gpu, shape: impl Into<Vec<usize>>) -> Result<Tensor> {
        let shape = shape.into();
        let bytes = checked_bytes(&shape, 4, "Tensor::empty")?;
        Ok(Tensor::from_parts(gpu.alloc(bytes, false, "tensor")?, shape))
    }

    /// Upload host data.
    pub fn from_slice(gpu: &Gpu, data: &[f32], shape: impl Into<Vec<usize>>) -> Result<Tensor> {
        let shape = shape.into();
        if numel(&shape) != data.len() {
            return Err(Error::shape("Tensor::from_slice", format!("{} values for {shape:?}", numel(&shape)), data.len()));
        }
        checked_bytes(&shape, 4, "Tensor::from_slice")?;
        let buf = gpu.upload_bytes(bytemuck::cast_slice(data), "upload")?;
        Ok(Tensor::from_parts(buf, shape))
    }

    pub fn upload(gpu: &Gpu, host: &HostTensor) -> Result<Tensor> {
        Self::from_slice(gpu, &host.data, host.shape.clone())
    }

    /// A tensor filled with zeros.
    pub fn zeros(gpu: &Gpu, shape: impl Into<Vec<usize>>) -> Result<Tensor> {
        let shape = shape.into();
        let t = Tensor::empty(gpu, shape)?;
        t.fill(0.0)?;
        Ok(t)
    }

    pub fn gpu(&self) -> &Gpu {
        self.buf.gpu()
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }
    pub(crate) fn raw(&self) -> &wgpu::Buffer {
        self.buf.raw()
    }

    /// The dims of a rank-`N` tensor, or an error naming `op`.
    pub fn dims<const N: usize>(&self, op: &str) -> Result<[usize; N]> {
        self.shape.as_slice().try_into().map_err(|_| Error::shape(op, format!("a rank-{N} tensor"), &self.shape))
    }

    /// Error unless the shape equals `shape`.
    pub fn expect(&self, op: &str, shape: &[usize]) -> Result<()> {
        if self.shape != shape {
            return Err(Error::shape(op, shape, &self.shape));
        }
        Ok(())
    }

    /// Same data, new shape (metadata only). One dim may be `usize::MAX` to be inferred.
    pub fn reshape(&self, shape: impl Into<Vec<usize>>) -> Result<Tensor> {
        let mut shape: Vec<usize> = shape.into();
        if let Some(i) = shape.iter().position(|&d| d == usize::MAX) {
            let rest: usize = shape.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, d)| *d).product();
            if rest == 0 || !self.numel().is_multiple_of(rest) {
                return Err(Error::shape("reshape", &self.shape, &shape));
            }
            shape[i] = self.numel() / rest;
        }
        if numel(&shape) != self.numel() {
            return Err(Error::shape("reshape", &self.shape, shape));
        }
        Ok(Tensor { buf: self.buf.clone(), shape })
    }

    /// Read back to the host (flushes the open encoder).
    pub async fn to_host(&self) -> Result<HostTensor> {
        let bytes = self.gpu().read_bytes(self.raw(), 0, (self.numel() * 4) as u64).await?;
        Ok(HostTensor { shape: self.shape.clone(), data: bytemuck::pod_collect_to_vec(&bytes) })
    }

    /// Read back as a flat vector.
    pub async fn to_vec(&self) -> Result<Vec<f32>> {
        Ok(self.to_host().await?.data)
    }

    /// A copy with its own buffer.
    pub fn deep_clone(&self) -> Result<Tensor> {
        let out = Tensor::empty(self.gpu(), self.shape.clone())?;
        let n = (self.numel() * 4) as u64;
        if n > 0 {
            self.gpu().copy_buffer(self.raw(), 0, out.raw(), 0, n.div_ceil(4) * 4);
        }
        Ok(out)
    }
}

/// Bytes of a tensor of `shape` with `elem` bytes per value, checked for overflow.
pub(crate) fn checked_bytes(shape: &[usize], elem: usize, op: &str) -> Result<u64> {
    shape
        .iter()
        .try_fold(elem as u64, |a, &d| a.checked_mul(d as u64))
        .filter(|&b| b < (1u64 << 40))
        .ok_or_else(|| Error::arg(op, format!("shape {shape:?} is too large")))
}

/// Storage type of a [`Weight`] on the GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightDtype {
    /// IEEE half, two per `u32` (element 2i in the low half), read with `unpack2x16float`.
    F16,
    /// f32: packs converted with `--dtype f32`, for parity without fp16 rounding.
    F32,
}

/// A weight matrix on the GPU: logical `shape` = [rows, ...]; each row of `cols = prod(shape[1..])`
/// values is stored padded with zeros to `row_stride` = a multiple of 4 values, so kernels can
/// read 4 values at a time (one `vec2<u32>` in fp16, one `vec4<f32>` in f32).
#[derive(Clone)]
pub struct Weight {
    buf: Arc<GpuBuffer>,
    shape: Vec<usize>,
    dtype: WeightDtype,
    row_stride: usize,
}

impl std::fmt::Debug for Weight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Weight{:?}({:?})", self.shape, self.dtype)
    }
}

impl Weight {
    /// Upload `values` (row-major, logical `shape`) as `dtype`.
    pub fn from_f32(gpu: &Gpu, values: &[f32], shape: impl Into<Vec<usize>>, dtype: WeightDtype) -> Result<Weight> {
        let shape: Vec<usize> = shape.into();
        if numel(&shape) != values.len() || shape.is_empty() {
            return Err(Error::shape("Weight::from_f32", format!("{} values for {shape:?}", numel(&shape)), values.len()));
        }
        let rows = shape[0];
        let cols = numel(&shape[1..]);
        let stride = cols.div_ceil(4) * 4;
        let bytes: Vec<u8> = match dtype {
            WeightDtype::F16 => {
                let mut h = vec![half::f16::ZERO; rows * stride];
                for r in 0..rows {
                    for c in 0..cols {
                        h[r * stride + c] = half::f16::from_f32(values[r * cols + c]);
                    }
                }
                bytemuck::cast_slice(&h).to_vec()
            }
            WeightDtype::F32 => {
                let mut v = vec![0f32; rows * stride];
                for r in 0..rows {
                    v[r * stride..r * stride + cols].copy_from_slice(&values[r * cols..(r + 1) * cols]);
                }
                bytemuck::cast_slice(&v).to_vec()
            }
        };
        Self::from_padded_bytes(gpu, &bytes, shape, dtype)
    }

    /// Upload f16 values (row-major, logical `shape`) without a round trip through f32.
    pub fn from_f16(gpu: &Gpu, values: &[half::f16], shape: impl Into<Vec<usize>>) -> Result<Weight> {
        let shape: Vec<usize> = shape.into();
        if numel(&shape) != values.len() || shape.is_empty() {
            return Err(Error::shape("Weight::from_f16", format!("{} values for {shape:?}", numel(&shape)), values.len()));
        }
        let cols = numel(&shape[1..]);
        let stride = cols.div_ceil(4) * 4;
        if stride == cols {
            return Self::from_padded_bytes(gpu, bytemuck::cast_slice(values), shape, WeightDtype::F16);
        }
        let rows = shape[0];
        let mut h = vec![half::f16::ZERO; rows * stride];
        for r in 0..rows {
            h[r * stride..r * stride + cols].copy_from_slice(&values[r * cols..(r + 1) * cols]);
        }
        Self::from_padded_bytes(gpu, bytemuck::cast_slice(&h), shape, WeightDtype::F16)
    }

    fn from_padded_bytes(gpu: &Gpu, bytes: &[u8], shape: Vec<usize>, dtype: WeightDtype) -> Result<Weight> {
        let cols = numel(&shape[1..]);
        let row_stride = cols.div_ceil(4) * 4;
        let buf = gpu.upload_bytes(bytes, "weight upload")?;
        Ok(Weight { buf: Arc::new(buf), shape, dtype, row_stride })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn dtype(&self) -> WeightDtype {
        self.dtype
    }
    pub fn rows(&self) -> usize {
        self.shape[0]
    }
    /// Logical values per row.
    pub fn cols(&self) -> usize {
        numel(&self.shape[1..])
    }
    /// Stored values per row (a multiple of 4).
    pub fn row_stride(&self) -> usize {
        self.row_stride
    }
    pub fn gpu(&self) -> &Gpu {
        self.buf.gpu()
    }
    pub(crate) fn raw(&self) -> &wgpu::Buffer {
        self.buf.raw()
    }
    /// Bytes on the GPU.
    pub fn bytes(&self) -> u64 {
        self.buf.size()
    }
    /// Pipeline override selecting the storage type in kernels that read weights.
    pub(crate) fn overrides(&self) -> [(&'static str, f64); 1] {
        [("W_F16", if self.dtype == WeightDtype::F16 { 1.0 } else { 0.0 })]
    }
    /// Same storage viewed with another logical shape of the same rows × cols.
    pub fn reshape(&self, shape: impl Into<Vec<usize>>) -> Result<Weight> {
        let shape: Vec<usize> = shape.into();
        if shape.is_empty() || shape[0] != self.rows() || numel(&shape[1..]) != self.cols() {
            return Err(Error::shape("Weight::reshape", &self.shape, shape));
        }
        Ok(Weight { shape, ..self.clone() })
    }

    /// Read back as f32 values in the logical layout (for tests and debugging).
    pub async fn to_host(&self) -> Result<HostTensor> {
        let (rows, cols, stride) = (self.rows(), self.cols(), self.row_stride);
        let elem = if self.dtype == WeightDtype::F16 { 2 } else { 4 };
        let bytes = self.gpu().read_bytes(self.raw(), 0, (rows * stride * elem) as u64).await?;
        let mut out = Vec::with_capacity(rows * cols);
        for r in 0..rows {
            for c in 0..cols {
                let i = r * stride + c;
                out.push(match self.dtype {
                    WeightDtype::F16 => half::f16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]).to_f32(),
                    WeightDtype::F32 => f32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap()),
                });
            }
        }
        HostTensor::new(self.shape.clone(), out)
    }
}
