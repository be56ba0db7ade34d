//! Matrix products (`shaders/matmul.wgsl`): `linear` (activations × fp16/f32 weightsᵀ, fused
//! bias and activation) and batched activation × activation products for attention (`bmm`,
//! and `bmm_strided_into` for per-head slices without permute copies).
//!
//! Kernel design (details in the shader header): each invocation keeps an 8×16 block of C in
//! registers and streams 4-wide k steps of 8 A rows and 16 B rows, without workgroup memory;
//! the lane layout of the 64-invocation workgroup (`lanes_n`) is chosen per shape so small M
//! or small N do not launch idle lanes. `linear_naive` (one dot product per invocation) is
//! kept only as the benchmark baseline.
//!
//! Measured on lavapipe (2 threads, CPU time of the process, so other load on the host does
//! not count): 1024³ with fp16 weights 26 GFLOP/s, f32 weights 21; [4096×1280]·[1280×640]ᵀ
//! 27 (fp16) and 21 (f32); the naive kernel 1.4. LLVM compiles each tiled pipeline in about
//! 0.7 s of CPU on a cold Mesa shader cache (`W_F16` × `ALIGNED` variants are compiled only
//! when used).

use super::{params, same_gpu, split_count, u32_of, Act};
use crate::device::Grid;
use crate::shaders::{entry::matmul as e, Entry};
use crate::tensor::{Tensor, Weight};
use crate::{Error, Result};

params!(MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    flags: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    act: u32,
    b1: u32,
    batches: u32,
    tiles_m: u32,
    tiles_n: u32,
    sa0: u32,
    sa1: u32,
    sb0: u32,
    sb1: u32,
    sc0: u32,
    sc1: u32,
    a_off: u32,
    b_off: u32,
    c_off: u32,
    alpha: f32,
    lanes_n: u32,
    pad0: u32,
});

/// Rows × columns of C computed by one invocation of the tiled entries (`TM`, `TN` in WGSL).
pub const TILE: [usize; 2] = [8, 16];
/// Invocations per workgroup of every entry (`WG` in WGSL).
const WG: usize = 64;
/// Fewest k values per split-K part of `linear` (each is 128 outputs per invocation, so 64 k
/// values are 8192 FMAs against 128 partial sums written and read back).
const MIN_SPLIT_K: usize = 64;

/// Which kernel computes a [`Tensor::linear_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MatmulKernel {
    /// The tiled kernel, split over k (split-K) when its grid is smaller than
    /// [`crate::Gpu::parallel_target`]: on GPUs, `linear` on the UNet's small token counts ran
    /// 0.2 ms per dispatch on 6 to 131 workgroups of an H200, whatever the size.
    #[default]
    Auto,
    /// The portable register-tiled kernel (no workgroup memory, no subgroups, no f16).
    Tiled,
    /// One dot product per invocation: the baseline for benchmarks.
    Naive,
    /// [`MatmulKernel::Tiled`] split over k into this many parts (k must be a multiple of 4 ×
    /// parts), summed by `split_sum` (tests; `Auto` splits when the grid is small for the
    /// adapter).
    SplitK(usize),
}

/// Where a matrix lives in a tensor's buffer, in f32 elements: element (row r, column j) of
/// batch (i0, i1) is at `offset + i0·batch_strides[0] + i1·batch_strides[1] + r·row_stride + j`.
/// Columns are always contiguous.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MatView {
    pub offset: usize,
    pub batch_strides: [usize; 2],
    pub row_stride: usize,
}

impl MatView {
    /// Densely packed `[b0, b1, rows, cols]` starting at element 0.
    pub fn packed(b1: usize, rows: usize, cols: usize) -> MatView {
        MatView { offset: 0, batch_strides: [b1 * rows * cols, rows * cols], row_stride: cols }
    }

    /// Largest element index this view touches for `batch` × `rows` × `cols` (all ≥ 1).
    fn last(&self, batch: [usize; 2], rows: usize, cols: usize) -> Option<usize> {
        let s = |d: usize, st: usize| (d - 1).checked_mul(st);
        self.offset
            .checked_add(s(batch[0], self.batch_strides[0])?)?
            .checked_add(s(batch[1], self.batch_strides[1])?)?
            .checked_add(s(rows, self.row_stride)?)?
            .checked_add(cols - 1)
    }
}

/// A strided batched product `C = alpha·A·op(B)` over a two-level batch `(i0, i1)` with
/// `i0 < batch[0]`, `i1 < batch[1]`: A is `[m, k]`, `op(B)` is `[k, n]` (B stored `[k, n]`, or
/// `[n, k]` when `trans_b`), C is `[m, n]`, each placed by a [`MatView`].
///
/// Example, attention scores per head without permutes: q, k: `[b, t, h, d]` contiguous,
/// scores `[b, h, t, t]`:
/// ```text
/// BmmStrided { batch: [b, h], m: t, n: t, k: d, trans_b: true, alpha: 1/√d,
///              a: MatView { offset: 0, batch_strides: [t·h·d, d], row_stride: h·d },   // q
///              b: MatView { offset: 0, batch_strides: [t·h·d, d], row_stride: h·d },   // k
///              c: MatView::packed(h, t, t) }
/// ```
/// and `probs·v` back into `[b, t, h, d]`: `trans_b: false`, a = `MatView::packed(h, t, t)`,
/// b = v's view as above (rows = t, columns = d), c = the same view into the output.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BmmStrided {
    pub batch: [usize; 2],
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub trans_b: bool,
    pub alpha: f32,
    pub a: MatView,
    pub b: MatView,
    pub c: MatView,
}

/// Lane layout and grid for an m × n output per batch: `(lanes_n, tiles_m, tiles_n)` that
/// launch the fewest workgroups (so small m or n do not launch idle lanes), preferring 8 × 8
/// lanes on ties (a 64 × 128 block of C per workgroup).
fn plan(m: usize, n: usize) -> (u32, u32, u32) {
    let (bm, bn) = (m.div_ceil(TILE[0]), n.div_ceil(TILE[1]));
    let (_, _, lanes_n, tm, tn) = (0..=6usize)
        .map(|lg| {
            let lanes_n = 1 << lg;
            let (tm, tn) = (bm.div_ceil(WG / lanes_n), bn.div_ceil(lanes_n));
            (tm * tn, lg.abs_diff(3), lanes_n, tm, tn)
        })
        .min()
        .expect("seven layouts");
    (lanes_n as u32, tm as u32, tn as u32)
}

/// A shape error whose expected/got are already formatted.
fn shape_err(op: &str, expected: String, got: String) -> Error {
    Error::Shape { op: op.into(), expected, got }
}

/// Whether the `ALIGNED` variant may run: A rows start at multiples of 4 elements and f32 B
/// rows at even elements (fp16 B is always aligned: see [`Weight::row_stride`]).
fn aligned(s: &BmmStrided, b_f16: bool) -> bool {
    let all = |v: &MatView, m: usize| [v.offset, v.batch_strides[0], v.batch_strides[1], v.row_stride].iter().all(|x| x % m == 0);
    all(&s.a, 4) && (b_f16 || all(&s.b, 2))
}

/// Launch one matmul-family dispatch. `w_f16`: the `W_F16` override (B is an fp16 weight;
/// `linear` entries only), as [`Weight::overrides`] gives it.
#[allow(clippy::too_many_arguments)]
fn launch(entry: Entry, w_f16: (&'static str, f64), s: &BmmStrided, a: &Tensor, b: &wgpu::Buffer, bias: Option<&Tensor>, c: &Tensor, act: Act) -> Result<()> {
    let op = entry.name;
    let u = |v: usize| u32_of(op, v);
    let batches = s.batch[0] * s.batch[1];
    let (lanes_n, tiles_m, tiles_n) = plan(s.m, s.n);
    let p = MatmulParams {
        m: u(s.m)?,
        n: u(s.n)?,
        k: u(s.k)?,
        flags: bias.is_some() as u32,
        lda: u(s.a.row_stride)?,
        ldb: u(s.b.row_stride)?,
        ldc: u(s.c.row_stride)?,
        act: act as u32,
        b1: u(s.batch[1])?,
        batches: u(batches)?,
        tiles_m,
        tiles_n,
        sa0: u(s.a.batch_strides[0])?,
        sa1: u(s.a.batch_strides[1])?,
        sb0: u(s.b.batch_strides[0])?,
        sb1: u(s.b.batch_strides[1])?,
        sc0: u(s.c.batch_strides[0])?,
        sc1: u(s.c.batch_strides[1])?,
        a_off: u(s.a.offset)?,
        b_off: u(s.b.offset)?,
        c_off: u(s.c.offset)?,
        alpha: s.alpha,
        lanes_n,
        pad0: 0,
    };
    let b_f16 = w_f16.1 != 0.0;
    let naive = entry == e::LINEAR_NAIVE;
    let groups = if naive {
        Grid::threads((batches * s.m * s.n) as u64, WG as u32)?
    } else if entry == e::SPLIT_SUM {
        Grid::threads((s.m * s.n) as u64, WG as u32)?
    } else {
        Grid::linear(batches as u64 * tiles_m as u64 * tiles_n as u64)?
    };
    let mut overrides = vec![w_f16];
    if !naive {
        overrides.push(("ALIGNED", if aligned(s, b_f16) { 1.0 } else { 0.0 }));
    }
    a.gpu().launch(entry, &overrides, &p, &[Some(a.raw()), Some(b), bias.map(|t| t.raw()), Some(c.raw())], groups)
}

impl Tensor {
    /// PyTorch `nn.Linear` with a fused activation: `act(x·Wᵀ + bias)`.
    /// x: [.., k], w: [n, k] (or any [n, ..] with k values per row, e.g. a 1×1 conv weight
    /// [n, k, 1, 1]), bias: [n] -> [.., n]. fp16 or f32 weight storage.
    pub fn linear(&self, w: &Weight, bias: Option<&Tensor>, act: Act) -> Result<Tensor> {
        self.linear_with(w, bias, act, MatmulKernel::Auto)
    }

    /// [`Tensor::linear`] with an explicit kernel choice (benchmarks and tests).
    pub fn linear_with(&self, w: &Weight, bias: Option<&Tensor>, act: Act, kernel: MatmulKernel) -> Result<Tensor> {
        const OP: &str = "linear";
        let (n, k) = (w.rows(), w.cols());
        let shape = self.shape();
        let ok = shape.last() == Some(&k) && k > 0;
        if !ok {
            return Err(shape_err(OP, format!("x [.., {k}] for weight {:?}", w.shape()), format!("x {shape:?}")));
        }
        if let Some(b) = bias {
            b.expect("linear.bias", &[n])?;
            same_gpu(OP, self.gpu(), &[b])?;
        }
        if !w.gpu().same(self.gpu()) {
            return Err(Error::arg(OP, "input and weight live on different GPU devices"));
        }
        let m = self.numel() / k;
        let mut out = shape.to_vec();
        *out.last_mut().unwrap() = n;
        let y = Tensor::empty(self.gpu(), out)?;
        if m == 0 || n == 0 {
            return Ok(y);
        }
        let s = BmmStrided {
            batch: [1, 1],
            m,
            n,
            k,
            trans_b: true,
            alpha: 1.0,
            a: MatView { offset: 0, batch_strides: [0, 0], row_stride: k },
            b: MatView { offset: 0, batch_strides: [0, 0], row_stride: w.row_stride() },
            c: MatView { offset: 0, batch_strides: [0, 0], row_stride: n },
        };
        let splits = match kernel {
            MatmulKernel::SplitK(0) => return Err(Error::arg(OP, "split-K needs at least one part")),
            MatmulKernel::SplitK(parts) if k % (4 * parts) != 0 => {
                return Err(Error::arg(OP, format!("split-K into {parts} parts needs k = {k} to be a multiple of {}", 4 * parts)))
            }
            MatmulKernel::SplitK(parts) => parts,
            MatmulKernel::Auto => {
                let (_, tiles_m, tiles_n) = plan(m, n);
                split_count(self.gpu(), tiles_m as u64 * tiles_n as u64, k, MIN_SPLIT_K, |parts| k % (4 * parts) == 0)
            }
            MatmulKernel::Tiled | MatmulKernel::Naive => 1,
        };
        if splits > 1 {
            // Batch z of the split runs k values [z·kc, (z + 1)·kc) into plane z of `parts`.
            let kc = k / splits;
            let parts = Tensor::empty(self.gpu(), [splits, m, n])?;
            u32_of(OP, parts.numel())?;
            let sk = BmmStrided {
                batch: [1, splits],
                k: kc,
                a: MatView { offset: 0, batch_strides: [0, kc], row_stride: k },
                b: MatView { offset: 0, batch_strides: [0, kc], row_stride: w.row_stride() },
                c: MatView { offset: 0, batch_strides: [0, m * n], row_stride: n },
                ..s
            };
            launch(e::LINEAR, w.overrides()[0], &sk, self, w.raw(), None, &parts, Act::None)?;
            let sum = BmmStrided { batch: [1, splits], ..s };
            launch(e::SPLIT_SUM, ("W_F16", 1.0), &sum, &parts, w.raw(), bias, &y, act)?;
            return Ok(y);
        }
        let entry = if kernel == MatmulKernel::Naive { e::LINEAR_NAIVE } else { e::LINEAR };
        launch(entry, w.overrides()[0], &s, self, w.raw(), bias, &y, act)?;
        Ok(y)
    }

    /// Batched product of activations, `alpha·a·b` (or `alpha·a·bᵀ` with `trans_b`).
    /// a: [bt, m, k], b: [bt, k, n] (trans_b: [bt, n, k]) -> [bt, m, n]; rank 2 operands are a
    /// batch of one ([m, k]·[k, n] -> [m, n]).
    pub fn bmm(&self, b: &Tensor, trans_b: bool, alpha: f32) -> Result<Tensor> {
        const OP: &str = "bmm";
        let err = || {
            let want = format!("[b, m, k] · [b, {}] (trans_b = {trans_b})", if trans_b { "n, k" } else { "k, n" });
            shape_err(OP, want, format!("{:?} · {:?}", self.shape(), b.shape()))
        };
        let (sa, sb) = (self.shape(), b.shape());
        if sa.len() != sb.len() || !(2..=3).contains(&sa.len()) {
            return Err(err());
        }
        let (bt, m, k) = if sa.len() == 3 { (sa[0], sa[1], sa[2]) } else { (1, sa[0], sa[1]) };
        let (bt2, r, cl) = if sb.len() == 3 { (sb[0], sb[1], sb[2]) } else { (1, sb[0], sb[1]) };
        let (kb, n) = if trans_b { (cl, r) } else { (r, cl) };
        if bt != bt2 || kb != k || k == 0 {
            return Err(err());
        }
        let mut out = sa.to_vec();
        let last = out.len() - 1;
        out[last] = n;
        let c = Tensor::empty(self.gpu(), out)?;
        if bt * m * n == 0 {
            return Ok(c);
        }
        let s = BmmStrided {
            batch: [1, bt],
            m,
            n,
            k,
            trans_b,
            alpha,
            a: MatView::packed(bt, m, k),
            b: if trans_b { MatView::packed(bt, n, k) } else { MatView::packed(bt, k, n) },
            c: MatView::packed(bt, m, n),
        };
        self.bmm_strided_into(b, &c, &s)?;
        Ok(c)
    }

    /// The strided batched product described by `s` (see [`BmmStrided`]), written into the
    /// existing tensor `c` (elements outside `s.c` are left as they are). `self` holds A, `b`
    /// holds B; the three views index the tensors' flat data. The C views of distinct
    /// (batch, row) pairs must not overlap.
    pub fn bmm_strided_into(&self, b: &Tensor, c: &Tensor, s: &BmmStrided) -> Result<()> {
        const OP: &str = "bmm_strided";
        same_gpu(OP, self.gpu(), &[b, c])?;
        if s.k == 0 {
            return Err(Error::arg(OP, "k = 0"));
        }
        if s.batch[0] * s.batch[1] * s.m * s.n == 0 {
            return Ok(());
        }
        let (br, bc) = if s.trans_b { (s.n, s.k) } else { (s.k, s.n) };
        for (name, v, t, rows, cols) in [("a", &s.a, self, s.m, s.k), ("b", &s.b, b, br, bc), ("c", &s.c, c, s.m, s.n)] {
            match v.last(s.batch, rows, cols) {
                Some(l) if l < t.numel() => {}
                _ => {
                    let want = format!("{name}: a tensor holding {:?} × [{rows}, {cols}] at {v:?}", s.batch);
                    return Err(shape_err(OP, want, format!("{name} {:?}", t.shape())));
                }
            }
        }
        if s.m > 1 && s.c.row_stride < s.n {
            return Err(Error::arg(OP, format!("c rows overlap: row_stride {} < n = {}", s.c.row_stride, s.n)));
        }
        let entry = if s.trans_b { e::LINEAR } else { e::BMM_NN };
        launch(entry, ("W_F16", 0.0), s, self, b.raw(), None, c, Act::None)
    }
}

/// CPU references: plain loops with f64 accumulation.
pub mod reference {
    use super::{Act, BmmStrided};

    /// `act(x·wᵀ + bias)`: x [m, k], w [n, k], bias [n] -> [m, n].
    pub fn linear(x: &[f32], w: &[f32], bias: Option<&[f32]>, act: Act, m: usize, n: usize, k: usize) -> Vec<f32> {
        let mut y = Vec::with_capacity(m * n);
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f64;
                for kk in 0..k {
                    s += x[i * k + kk] as f64 * w[j * k + kk] as f64;
                }
                if let Some(b) = bias {
                    s += b[j] as f64;
                }
                y.push(act.apply(s) as f32);
            }
        }
        y
    }

    /// Values rounded to fp16 and back, as an fp16 [`crate::Weight`] stores them.
    pub fn round_f16(v: &[f32]) -> Vec<f32> {
        v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
    }

    /// [`super::Tensor::bmm_strided_into`] on flat host buffers.
    pub fn bmm_strided(a: &[f32], b: &[f32], c: &mut [f32], s: &BmmStrided) {
        for i0 in 0..s.batch[0] {
            for i1 in 0..s.batch[1] {
                let ao = s.a.offset + i0 * s.a.batch_strides[0] + i1 * s.a.batch_strides[1];
                let bo = s.b.offset + i0 * s.b.batch_strides[0] + i1 * s.b.batch_strides[1];
                let co = s.c.offset + i0 * s.c.batch_strides[0] + i1 * s.c.batch_strides[1];
                for i in 0..s.m {
                    for j in 0..s.n {
                        let mut acc = 0f64;
                        for kk in 0..s.k {
                            let bv = if s.trans_b { b[bo + j * s.b.row_stride + kk] } else { b[bo + kk * s.b.row_stride + j] };
                            acc += a[ao + i * s.a.row_stride + kk] as f64 * bv as f64;
                        }
                        c[co + i * s.c.row_stride + j] = (acc * s.alpha as f64) as f32;
                    }
                }
            }
        }
    }

    /// `alpha·a·op(b)`: a [bt, m, k], b [bt, k, n] or [bt, n, k] (trans_b) -> [bt, m, n].
    #[allow(clippy::too_many_arguments)]
    pub fn bmm(a: &[f32], b: &[f32], bt: usize, m: usize, n: usize, k: usize, trans_b: bool, alpha: f32) -> Vec<f32> {
        use super::MatView;
        let mut c = vec![0f32; bt * m * n];
        let s = BmmStrided {
            batch: [1, bt],
            m,
            n,
            k,
            trans_b,
            alpha,
            a: MatView::packed(bt, m, k),
            b: if trans_b { MatView::packed(bt, n, k) } else { MatView::packed(bt, k, n) },
            c: MatView::packed(bt, m, n),
        };
        bmm_strided(a, b, &mut c, &s);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_prefers_few_workgroups_then_square_lanes() {
        // 1024 × 1024: 128 × 64 thread blocks, no waste at 8 × 8 lanes.
        assert_eq!(plan(1024, 1024), (8, 16, 8));
        // One row: all 64 lanes along n.
        assert_eq!(plan(1, 640), (64, 1, 1));
        // One column: all lanes along m.
        assert_eq!(plan(1000, 1), (1, 2, 1));
        for (m, n) in [(1, 1), (7, 300), (4096, 640), (65, 17)] {
            let (ln, tm, tn) = plan(m, n);
            let lm = WG as u32 / ln;
            assert!(tm * lm * TILE[0] as u32 >= m as u32 && tn * ln * TILE[1] as u32 >= n as u32, "{m}x{n}");
        }
    }

    #[test]
    fn mat_view_bounds() {
        let v = MatView::packed(3, 4, 5);
        assert_eq!(v.last([2, 3], 4, 5), Some(2 * 3 * 4 * 5 - 1));
    }
}
