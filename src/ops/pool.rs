//! Pooling (`shaders/pool.wgsl`).

use super::{params, u32_of};
use crate::device::Grid;
use crate::shaders::entry::pool as e;
use crate::tensor::Tensor;
use crate::{Error, Result};

params!(PoolParams { planes: u32, h: u32, w: u32, ho: u32, wo: u32, kh: u32, kw: u32, sh: u32, sw: u32, ph: u32, pw: u32, pad0: u32 });

impl Tensor {
    /// 2-D max pooling with −∞ padding (PyTorch `MaxPool2d(kernel, stride, padding)`).
    /// x: [n, c, h, w] -> [n, c, (h + 2p − k)/s + 1, (w + 2p − k)/s + 1]
    pub fn max_pool2d(&self, kernel: (usize, usize), stride: (usize, usize), padding: (usize, usize)) -> Result<Tensor> {
        let op = "max_pool2d";
        let [n, c, h, w] = self.dims(op)?;
        let (kh, kw) = kernel;
        let (sh, sw) = stride;
        let (ph, pw) = padding;
        if kh == 0 || kw == 0 || sh == 0 || sw == 0 || 2 * ph > kh || 2 * pw > kw {
            return Err(Error::arg(op, format!("kernel {kernel:?}, stride {stride:?}, padding {padding:?} (padding must be ≤ kernel/2)")));
        }
        if h + 2 * ph < kh || w + 2 * pw < kw {
            return Err(Error::shape(op, format!("an input of at least {kernel:?} after padding"), self.shape()));
        }
        let ho = (h + 2 * ph - kh) / sh + 1;
        let wo = (w + 2 * pw - kw) / sw + 1;
        let y = Tensor::empty(self.gpu(), [n, c, ho, wo])?;
        let u = |v| u32_of(op, v);
        let p = PoolParams {
            planes: u(n * c)?,
            h: u(h)?,
            w: u(w)?,
            ho: u(ho)?,
            wo: u(wo)?,
            kh: u(kh)?,
            kw: u(kw)?,
            sh: u(sh)?,
            sw: u(sw)?,
            ph: u(ph)?,
            pw: u(pw)?,
            pad0: 0,
        };
        self.gpu().launch(e::MAX_POOL2D, &[], &p, &[Some(self.raw()), Some(y.raw())], Grid::threads(y.numel() as u64, 256)?)?;
        Ok(y)
    }
}

/// CPU references.
pub mod reference {
    /// x: [planes, h, w] flattened.
    #[allow(clippy::too_many_arguments)]
    pub fn max_pool2d(x: &[f32], planes: usize, h: usize, w: usize, k: (usize, usize), s: (usize, usize), pad: (usize, usize)) -> Vec<f32> {
        let ho = (h + 2 * pad.0 - k.0) / s.0 + 1;
        let wo = (w + 2 * pad.1 - k.1) / s.1 + 1;
        let mut y = vec![f32::NEG_INFINITY; planes * ho * wo];
        for pl in 0..planes {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut m = f32::NEG_INFINITY;
                    for ky in 0..k.0 {
                        for kx in 0..k.1 {
                            let iy = (oy * s.0 + ky) as i64 - pad.0 as i64;
                            let ix = (ox * s.1 + kx) as i64 - pad.1 as i64;
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                m = m.max(x[pl * h * w + iy as usize * w + ix as usize]);
                            }
                        }
                    }
                    y[pl * ho * wo + oy * wo + ox] = m;
                }
            }
        }
        y
    }
}
