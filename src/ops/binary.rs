//! Broadcasting elementwise binary ops (`shaders/binary.wgsl`).

use super::{params, same_gpu, u32_of};
use crate::device::Grid;
use crate::shaders::{entry::binary as e, Entry};
use crate::tensor::Tensor;
use crate::{Error, Result};

params!(BinaryParams { n: u32, rank: u32, alpha: f32, beta: f32, shape: [[u32; 4]; 2], a_strides: [[u32; 4]; 2], b_strides: [[u32; 4]; 2] });

/// NumPy broadcast of two shapes, or `None` if incompatible.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r { a[i + a.len() - r] } else { 1 };
        let db = if i + b.len() >= r { b[i + b.len() - r] } else { 1 };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// Element strides of a contiguous tensor of `shape` viewed as `out` (0 where it broadcasts).
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let r = out.len();
    let mut strides = vec![0; r];
    let mut s = 1;
    for i in (0..shape.len()).rev() {
        let oi = i + r - shape.len();
        strides[oi] = if shape[i] == 1 && out[oi] != 1 { 0 } else { s };
        s *= shape[i];
    }
    strides
}

/// Drop size-1 dims and merge adjacent dims that are contiguous in every operand.
pub fn collapse(shape: &[usize], strides: &[Vec<usize>]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut s: Vec<usize> = vec![];
    let mut st: Vec<Vec<usize>> = vec![vec![]; strides.len()];
    for d in 0..shape.len() {
        if shape[d] == 1 {
            continue;
        }
        let mergeable = !s.is_empty() && strides.iter().enumerate().all(|(k, sv)| st[k].last() == Some(&(sv[d] * shape[d])));
        if mergeable {
            *s.last_mut().unwrap() *= shape[d];
            for (k, sv) in strides.iter().enumerate() {
                *st[k].last_mut().unwrap() = sv[d];
            }
        } else {
            s.push(shape[d]);
            for (k, sv) in strides.iter().enumerate() {
                st[k].push(sv[d]);
            }
        }
    }
    if s.is_empty() {
        s.push(1);
        for v in st.iter_mut() {
            v.push(1);
        }
    }
    (s, st)
}

pub(crate) fn pack8(op: &str, v: &[usize]) -> Result<[[u32; 4]; 2]> {
    let mut out = [[0u32; 4]; 2];
    if v.len() > 8 {
        return Err(Error::arg(op, format!("more than 8 non-mergeable dims ({v:?})")));
    }
    for (i, &x) in v.iter().enumerate() {
        out[i / 4][i % 4] = u32_of(op, x)?;
    }
    Ok(out)
}

impl Tensor {
    fn binary(&self, other: &Tensor, entry: Entry, alpha: f32, beta: f32) -> Result<Tensor> {
        same_gpu(entry.name, self.gpu(), &[other])?;
        let out = broadcast_shape(self.shape(), other.shape()).ok_or_else(|| Error::shape(entry.name, self.shape(), other.shape()))?;
        let sa = broadcast_strides(self.shape(), &out);
        let sb = broadcast_strides(other.shape(), &out);
        let (shape, st) = collapse(&out, &[sa, sb]);
        let y = Tensor::empty(self.gpu(), out)?;
        let n = y.numel();
        let p = BinaryParams {
            n: u32_of(entry.name, n)?,
            rank: shape.len() as u32,
            alpha,
            beta,
            shape: pack8(entry.name, &shape)?,
            a_strides: pack8(entry.name, &st[0])?,
            b_strides: pack8(entry.name, &st[1])?,
        };
        self.gpu().launch(entry, &[], &p, &[Some(self.raw()), Some(other.raw()), Some(y.raw())], Grid::threads(n as u64, 256)?)?;
        Ok(y)
    }

    /// `self + other` with broadcasting.
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, e::ADD, 0.0, 0.0)
    }
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, e::SUB, 0.0, 0.0)
    }
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, e::MUL, 0.0, 0.0)
    }
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, e::DIV, 0.0, 0.0)
    }
    pub fn maximum(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, e::MAXIMUM, 0.0, 0.0)
    }
    pub fn minimum(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, e::MINIMUM, 0.0, 0.0)
    }
    /// `alpha·self + beta·other` with broadcasting (e.g. classifier-free guidance).
    pub fn axpby(&self, alpha: f32, other: &Tensor, beta: f32) -> Result<Tensor> {
        self.binary(other, e::AXPBY, alpha, beta)
    }
}

/// CPU references.
pub mod reference {
    use super::{broadcast_shape, broadcast_strides};

    /// Broadcasting `f(a, b)` on the host.
    pub fn binary(a: &[f32], sa: &[usize], b: &[f32], sb: &[usize], f: impl Fn(f64, f64) -> f64) -> (Vec<usize>, Vec<f32>) {
        let out = broadcast_shape(sa, sb).expect("broadcastable");
        let (ta, tb) = (broadcast_strides(sa, &out), broadcast_strides(sb, &out));
        let n: usize = out.iter().product();
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let (mut rem, mut oa, mut ob) = (i, 0, 0);
            for d in (0..out.len()).rev() {
                let c = rem % out[d];
                rem /= out[d];
                oa += c * ta[d];
                ob += c * tb[d];
            }
            y.push(f(a[oa] as f64, b[ob] as f64) as f32);
        }
        (out, y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn broadcast_rules() {
        assert_eq!(broadcast_shape(&[2, 3, 4], &[3, 1]), Some(vec![2, 3, 4]));
        assert_eq!(broadcast_shape(&[2, 1], &[1, 5]), Some(vec![2, 5]));
        assert_eq!(broadcast_shape(&[2, 3], &[4]), None);
        assert_eq!(broadcast_strides(&[3, 1], &[2, 3, 4]), vec![0, 1, 0]);
        // [2,3,4] + [4] collapses to [6,4] with strides a=[4,1], b=[0,1].
        let (s, st) = collapse(&[2, 3, 4], &[vec![12, 4, 1], vec![0, 0, 1]]);
        assert_eq!(s, vec![6, 4]);
        assert_eq!(st, vec![vec![4, 1], vec![0, 1]]);
        // Same shapes collapse to one dim.
        let (s, _) = collapse(&[2, 3, 4], &[vec![12, 4, 1], vec![12, 4, 1]]);
        assert_eq!(s, vec![24]);
    }
}
