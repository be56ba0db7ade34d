//! Elementwise unary ops (`shaders/unary.wgsl`).

use super::{params, same_gpu, u32_of};
use crate::device::Grid;
use crate::shaders::{entry::unary as e, Entry};
use crate::tensor::Tensor;
use crate::{Error, Result};

params!(UnaryParams { n: u32, cols: u32, alpha: f32, beta: f32 });

impl Tensor {
    fn unary(&self, entry: Entry, alpha: f32, beta: f32) -> Result<Tensor> {
        let y = Tensor::empty(self.gpu(), self.shape().to_vec())?;
        self.unary_into(&y, entry, alpha, beta)?;
        Ok(y)
    }

    fn unary_into(&self, y: &Tensor, entry: Entry, alpha: f32, beta: f32) -> Result<()> {
        same_gpu(entry.name, self.gpu(), &[y])?;
        let n = self.numel();
        let p = UnaryParams { n: u32_of(entry.name, n)?, cols: 0, alpha, beta };
        self.gpu().launch(entry, &[], &p, &[Some(self.raw()), Some(y.raw())], Grid::threads(n as u64, 256)?)
    }

    /// Exact GELU, `0.5·x·(1 + erf(x/√2))` (PyTorch `nn.GELU()`). x: [..] -> [..]
    pub fn gelu(&self) -> Result<Tensor> {
        self.unary(e::GELU, 0.0, 0.0)
    }
    /// tanh-approximated GELU (PyTorch `GELU(approximate="tanh")`). x: [..] -> [..]
    pub fn gelu_tanh(&self) -> Result<Tensor> {
        self.unary(e::GELU_TANH, 0.0, 0.0)
    }
    /// `x·σ(1.702x)` (CLIP's QuickGELU). x: [..] -> [..]
    pub fn quick_gelu(&self) -> Result<Tensor> {
        self.unary(e::QUICK_GELU, 0.0, 0.0)
    }
    pub fn silu(&self) -> Result<Tensor> {
        self.unary(e::SILU, 0.0, 0.0)
    }
    pub fn sigmoid(&self) -> Result<Tensor> {
        self.unary(e::SIGMOID, 0.0, 0.0)
    }
    pub fn tanh(&self) -> Result<Tensor> {
        self.unary(e::TANH_OP, 0.0, 0.0)
    }
    pub fn relu(&self) -> Result<Tensor> {
        self.unary(e::RELU, 0.0, 0.0)
    }
    /// `x > 0 ? x : slope·x`.
    pub fn leaky_relu(&self, slope: f32) -> Result<Tensor> {
        self.unary(e::LEAKY_RELU, slope, 0.0)
    }
    /// `x > 0 ? x : alpha·(eˣ − 1)`.
    pub fn elu(&self, alpha: f32) -> Result<Tensor> {
        self.unary(e::ELU, alpha, 0.0)
    }
    pub fn exp(&self) -> Result<Tensor> {
        self.unary(e::EXP_OP, 0.0, 0.0)
    }
    pub fn sqrt(&self) -> Result<Tensor> {
        self.unary(e::SQRT_OP, 0.0, 0.0)
    }
    pub fn square(&self) -> Result<Tensor> {
        self.unary(e::SQUARE, 0.0, 0.0)
    }
    pub fn abs(&self) -> Result<Tensor> {
        self.unary(e::ABS_OP, 0.0, 0.0)
    }
    /// Clamp to `[lo, hi]`.
    pub fn clamp(&self, lo: f32, hi: f32) -> Result<Tensor> {
        self.unary(e::CLAMP_OP, lo, hi)
    }
    /// Natural log of `max(x, floor)` (e.g. a power spectrum's `log(clamp(x, min=amin))`).
    /// `floor` must be positive. x: [..] -> [..]
    pub fn log_floor(&self, floor: f32) -> Result<Tensor> {
        if !(floor > 0.0 && floor.is_finite()) {
            return Err(Error::arg("log_floor", format!("floor {floor}: must be a positive finite number")));
        }
        self.unary(e::LOG_FLOOR, floor, 0.0)
    }
    /// `x·a + b`.
    pub fn affine(&self, a: f32, b: f32) -> Result<Tensor> {
        self.unary(e::AFFINE, a, b)
    }
    /// `x·a`.
    pub fn scale(&self, a: f32) -> Result<Tensor> {
        self.unary(e::AFFINE, a, 0.0)
    }
    /// Overwrite every element with `v` (in place).
    pub fn fill(&self, v: f32) -> Result<()> {
        let n = self.numel();
        let p = UnaryParams { n: u32_of("fill", n)?, cols: 0, alpha: v, beta: 0.0 };
        self.gpu().launch(e::FILL, &[], &p, &[None, Some(self.raw())], Grid::threads(n as u64, 256)?)
    }

    fn gated(&self, entry: Entry) -> Result<Tensor> {
        let shape = self.shape().to_vec();
        let last = *shape.last().ok_or_else(|| Error::shape(entry.name, "rank ≥ 1", &shape))?;
        if last % 2 != 0 {
            return Err(Error::shape(entry.name, "an even last dimension", &shape));
        }
        let mut out = shape.clone();
        *out.last_mut().unwrap() = last / 2;
        let y = Tensor::empty(self.gpu(), out)?;
        let n = y.numel();
        let p = UnaryParams { n: u32_of(entry.name, n)?, cols: u32_of(entry.name, last / 2)?, alpha: 0.0, beta: 0.0 };
        self.gpu().launch(entry, &[], &p, &[Some(self.raw()), Some(y.raw())], Grid::threads(n as u64, 256)?)?;
        Ok(y)
    }

    /// GEGLU: x [.., 2c] -> [.., c] = x[.., :c] · gelu(x[.., c:]) (diffusers `GEGLU`).
    pub fn geglu(&self) -> Result<Tensor> {
        self.gated(e::GEGLU)
    }
    /// SwiGLU: x [.., 2c] -> [.., c] = x[.., :c] · silu(x[.., c:]) (DALLE-2 prior).
    pub fn swiglu(&self) -> Result<Tensor> {
        self.gated(e::SWIGLU)
    }
}

/// CPU references in f64.
pub mod reference {
    /// `ln(max(x, floor))`.
    pub fn log_floor(x: f64, floor: f64) -> f64 {
        x.max(floor).ln()
    }

    /// erf to ~1e-15: Taylor series below 3, continued fraction for erfc above.
    pub fn erf(x: f64) -> f64 {
        let a = x.abs();
        let r = if a < 3.0 {
            let z = x * x;
            let mut term = a;
            let mut sum = a;
            let mut n = 0.0;
            loop {
                n += 1.0;
                term *= -z / n;
                let t = term / (2.0 * n + 1.0);
                sum += t;
                if t.abs() <= 1e-17 * sum.abs() || n > 200.0 {
                    break;
                }
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc(a) = exp(-a²)/√π · 1/(a + 1/2/(a + 1/(a + 3/2/(a + ...)))) (Lentz)
            let mut f = a;
            let mut c = a;
            let mut d = 0.0;
            for k in 1..200 {
                let an = k as f64 / 2.0;
                d = a + an * d;
                d = if d == 0.0 { 1e-300 } else { 1.0 / d };
                c = a + an / c;
                let delta = c * d;
                f *= delta;
                if (delta - 1.0).abs() < 1e-16 {
                    break;
                }
            }
            1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / f
        };
        r.copysign(x)
    }
    pub fn gelu(x: f64) -> f64 {
        0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
    }
    pub fn gelu_tanh(x: f64) -> f64 {
        0.5 * x * (1.0 + (0.7978845608028654 * (x + 0.044715 * x * x * x)).tanh())
    }
    pub fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }
    pub fn quick_gelu(x: f64) -> f64 {
        x * sigmoid(1.702 * x)
    }
    pub fn silu(x: f64) -> f64 {
        x * sigmoid(x)
    }
    pub fn leaky_relu(x: f64, slope: f64) -> f64 {
        if x > 0.0 {
            x
        } else {
            slope * x
        }
    }
    pub fn elu(x: f64, alpha: f64) -> f64 {
        if x > 0.0 {
            x
        } else {
            alpha * x.exp_m1()
        }
    }
    /// Gated: x [rows, 2c] -> [rows, c] with `f` on the gate half.
    pub fn gated(x: &[f32], c: usize, f: impl Fn(f64) -> f64) -> Vec<f32> {
        let rows = x.len() / (2 * c);
        let mut y = Vec::with_capacity(rows * c);
        for r in 0..rows {
            for j in 0..c {
                y.push((x[r * 2 * c + j] as f64 * f(x[r * 2 * c + c + j] as f64)) as f32);
            }
        }
        y
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        #[test]
        fn erf_matches_known_values() {
            // Values from tables (A&S 7.1): erf(0.5)=0.5204998778, erf(1)=0.8427007929, erf(2)=0.9953222650,
            // erf(3.5)=0.9999992569.
            for (x, v) in [(0.5, 0.5204998778130465), (1.0, 0.8427007929497149), (2.0, 0.9953222650189527), (3.5, 0.9999992569016276)] {
                assert!((erf(x) - v).abs() < 1e-13, "erf({x}) = {}", erf(x));
                assert!((erf(-x) + v).abs() < 1e-13);
            }
            assert_eq!(erf(0.0), 0.0);
        }
    }
}
