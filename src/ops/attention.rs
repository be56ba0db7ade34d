//! Attention (`shaders/attention.wgsl`): fused scaled-dot-product attention with an online
//! softmax (no score matrix in memory), and SSV2A's efficient attention.
//!
//! Layouts (the output always has q's layout):
//! - rank 3, token-major `[B, T, H·d]` (what a Linear produces; head h = features
//!   `[h·d, (h+1)·d)`);
//! - rank 4, head-major `[B, H, T, d]`.
//!
//! Both are read through element strides, so neither needs a copy.

use super::{params, same_gpu, u32_of};
use crate::device::Grid;
use crate::shaders::entry::attention as e;
use crate::tensor::Tensor;
use crate::{Error, Result};

params!(AttentionParams {
    batch: u32,
    heads: u32,
    tq: u32,
    tk: u32,
    groups: u32,
    kv_group: u32,
    flags: u32,
    scale: f32,
    q_b: u32,
    q_t: u32,
    q_h: u32,
    causal_offset: i32,
    k_b: u32,
    k_t: u32,
    k_h: u32,
    d4: u32,
    v_b: u32,
    v_t: u32,
    v_h: u32,
    bias_mod: u32,
    o_b: u32,
    o_t: u32,
    o_h: u32,
    pad0: u32,
    bias_b: u32,
    bias_h: u32,
    bias_t: u32,
    pad1: u32,
});

const CAUSAL: u32 = 1;
const HAS_BIAS: u32 = 2;
/// Largest head dim of the register kernel `sdpa` (`D4 ≤ 8` in WGSL).
pub const ROWS_MAX_D: usize = 32;
/// Query rows per invocation of `sdpa`.
const ROWS_TQ: usize = 4;
/// Query rows per workgroup of `sdpa_tiled` (`TBQ`).
const TILED_BQ: usize = 32;

/// Which kernel runs an attention call. `Auto` picks `Rows` on a CPU adapter (lavapipe) when
/// d ≤ 32, where it is the faster one, and `Tiled` otherwise: `Rows` keeps 256 floats per
/// invocation in registers, which a real GPU would spill.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SdpaKernel {
    #[default]
    Auto,
    /// `sdpa`: 4 query rows and their accumulators in registers (d ≤ 32).
    Rows,
    /// `sdpa_tiled`: workgroup tiles of 32 queries × 64 keys, any d.
    Tiled,
}

/// An additive bias on the scores (relative-position bias, window masks; `-inf` hides a key).
/// Score (b, h, t, j) gets `tensor[(b mod batch_period)·batch_stride + h·head_stride +
/// t·row_stride + j]`; a stride of 0 broadcasts.
#[derive(Clone, Copy, Debug)]
pub struct ScoreBias<'a> {
    pub tensor: &'a Tensor,
    pub batch_stride: usize,
    pub head_stride: usize,
    pub row_stride: usize,
    /// Batch items are mapped to bias items modulo this (e.g. Swin windows: batch = images ×
    /// windows, the mask repeats per image). At least 1.
    pub batch_period: usize,
}

/// Options of [`Tensor::sdpa_with`]. `Sdpa::new(heads, scale)` gives plain multi-head attention.
#[derive(Clone, Copy, Debug)]
pub struct Sdpa<'a> {
    /// Query heads H.
    pub heads: usize,
    /// Key/value heads; query head h uses key/value head `h / (heads / kv_heads)`. Equal to
    /// `heads` for multi-head, 1 for multi-query attention.
    pub kv_heads: usize,
    /// Multiplies q·k (usually d^-0.5).
    pub scale: f32,
    /// `Some(offset)`: key j is visible from query t iff `j ≤ t + offset` (0: the usual causal
    /// mask for Tq = Tk; `Tk − Tq`: bottom-right aligned).
    pub causal: Option<i32>,
    pub bias: Option<ScoreBias<'a>>,
    pub kernel: SdpaKernel,
}

impl<'a> Sdpa<'a> {
    pub fn new(heads: usize, scale: f32) -> Self {
        Sdpa { heads, kv_heads: heads, scale, causal: None, bias: None, kernel: SdpaKernel::Auto }
    }
}

/// Element strides (batch, token, head) and sizes (batch, tokens, heads, d) of a q/k/v tensor.
struct View {
    b: usize,
    t: usize,
    h: usize,
    d: usize,
    strides: [usize; 3],
}

fn view(op: &str, name: &str, x: &Tensor, heads: usize) -> Result<View> {
    match *x.shape() {
        [b, t, f] => {
            if heads == 0 || f % heads != 0 {
                return Err(Error::arg(op, format!("{name} has {f} features, not divisible by {heads} heads")));
            }
            let d = f / heads;
            Ok(View { b, t, h: heads, d, strides: [t * f, f, d] })
        }
        [b, h, t, d] => {
            if h != heads {
                return Err(Error::shape(op, format!("{name} with {heads} heads [B, {heads}, T, d]"), x.shape()));
            }
            Ok(View { b, t, h, d, strides: [h * t * d, d, t * d] })
        }
        _ => Err(Error::shape(op, format!("{name} as [B, T, H·d] or [B, H, T, d]"), x.shape())),
    }
}

/// vec4 strides for the params, or an error if a stride is not a multiple of 4.
fn strides4(op: &str, s: [usize; 3]) -> Result<[u32; 3]> {
    let mut out = [0; 3];
    for (o, v) in out.iter_mut().zip(s) {
        if v % 4 != 0 {
            return Err(Error::arg(op, "head dim and strides must be multiples of 4 (the kernels read vec4)"));
        }
        *o = u32_of(op, v / 4)?;
    }
    Ok(out)
}

struct Plan<'a> {
    q: &'a Tensor,
    k: &'a Tensor,
    v: &'a Tensor,
    bias: Option<&'a Tensor>,
    out: &'a Tensor,
    params: AttentionParams,
    mode: u32,
    kernel: SdpaKernel,
}

fn run(op: &str, plan: Plan) -> Result<()> {
    let mut p = plan.params;
    let mode = ("MODE", plan.mode as f64);
    let (entry, grid, d4) = match plan.kernel {
        SdpaKernel::Rows => {
            p.groups = u32_of(op, (p.tq as usize).div_ceil(ROWS_TQ))?;
            let threads = p.batch as u64 * p.heads as u64 * p.groups as u64;
            (e::SDPA, Grid::threads(threads, 64)?, p.d4)
        }
        _ => {
            p.groups = u32_of(op, (p.tq as usize).div_ceil(TILED_BQ))?;
            // D4 is unused by sdpa_tiled; a fixed value keeps one pipeline per mode.
            (e::SDPA_TILED, Grid::linear(p.batch as u64 * p.heads as u64 * p.groups as u64)?, 8)
        }
    };
    plan.q.gpu().launch(
        entry,
        &[mode, ("D4", d4 as f64)],
        &p,
        &[Some(plan.q.raw()), Some(plan.k.raw()), Some(plan.v.raw()), plan.bias.map(|b| b.raw()), Some(plan.out.raw())],
        grid,
    )
}

fn pick_kernel(op: &str, gpu: &crate::Gpu, kernel: SdpaKernel, d: usize) -> Result<SdpaKernel> {
    if d == 0 || !d.is_multiple_of(4) {
        return Err(Error::arg(op, format!("head dim {d} is not a positive multiple of 4 (the kernels read vec4)")));
    }
    Ok(match kernel {
        SdpaKernel::Auto if d <= ROWS_MAX_D && gpu.info().device_type == wgpu::DeviceType::Cpu => SdpaKernel::Rows,
        SdpaKernel::Auto => SdpaKernel::Tiled,
        SdpaKernel::Rows if d > ROWS_MAX_D => return Err(Error::arg(op, format!("head dim {d} is over {ROWS_MAX_D}, the limit of the Rows kernel"))),
        k => k,
    })
}

impl Tensor {
    /// Multi-head scaled-dot-product attention `softmax(q·kᵀ·scale)·v` per (batch, head).
    /// q: [B, Tq, H·d], k, v: [B, Tk, H·d] -> [B, Tq, H·d] (or all [B, H, T, d]).
    pub fn sdpa(&self, k: &Tensor, v: &Tensor, heads: usize, scale: f32) -> Result<Tensor> {
        self.sdpa_with(k, v, &Sdpa::new(heads, scale))
    }

    /// [`Tensor::sdpa`] with masks, bias, multi-query heads and a kernel choice.
    /// q: [B, Tq, H·d], k, v: [B, Tk, Hkv·d] -> [B, Tq, H·d]; or q [B, H, Tq, d],
    /// k, v [B, Hkv, Tk, d] -> [B, H, Tq, d]. d must be a multiple of 4.
    pub fn sdpa_with(&self, k: &Tensor, v: &Tensor, o: &Sdpa) -> Result<Tensor> {
        const OP: &str = "sdpa";
        same_gpu(OP, self.gpu(), &[k, v])?;
        if o.kv_heads == 0 || !o.heads.is_multiple_of(o.kv_heads) {
            return Err(Error::arg(OP, format!("{} heads are not a multiple of {} key/value heads", o.heads, o.kv_heads)));
        }
        if k.rank() != self.rank() || v.rank() != self.rank() {
            return Err(Error::arg(OP, "q, k and v must have the same layout (all rank 3 or all rank 4)"));
        }
        let qv = view(OP, "q", self, o.heads)?;
        let kv = view(OP, "k", k, o.kv_heads)?;
        let vv = view(OP, "v", v, o.kv_heads)?;
        if kv.b != qv.b || vv.b != qv.b {
            return Err(Error::arg(OP, format!("batch sizes differ: q {}, k {}, v {}", qv.b, kv.b, vv.b)));
        }
        if kv.d != qv.d || vv.d != qv.d {
            return Err(Error::arg(OP, format!("head dims differ: q {}, k {}, v {}", qv.d, kv.d, vv.d)));
        }
        if vv.t != kv.t {
            return Err(Error::arg(OP, format!("k has {} tokens, v has {}", kv.t, vv.t)));
        }
        let kernel = pick_kernel(OP, self.gpu(), o.kernel, qv.d)?;
        let out = Tensor::empty(self.gpu(), self.shape().to_vec())?;
        let mut flags = 0;
        let mut causal_offset = 0;
        if let Some(off) = o.causal {
            flags |= CAUSAL;
            causal_offset = off;
        }
        let [mut bias_b, mut bias_h, mut bias_t, mut bias_mod] = [0u32, 0, 0, 1];
        if let Some(bias) = &o.bias {
            same_gpu(OP, self.gpu(), &[bias.tensor])?;
            if bias.batch_period == 0 {
                return Err(Error::arg(OP, "bias batch_period must be at least 1"));
            }
            let last = (bias.batch_period.min(qv.b).max(1) - 1) * bias.batch_stride
                + (qv.h - 1) * bias.head_stride
                + qv.t.saturating_sub(1) * bias.row_stride
                + kv.t.saturating_sub(1);
            if qv.t > 0 && kv.t > 0 && last >= bias.tensor.numel() {
                return Err(Error::arg(OP, format!("bias {:?} is too small for its strides (needs index {last})", bias.tensor.shape())));
            }
            flags |= HAS_BIAS;
            bias_b = u32_of(OP, bias.batch_stride)?;
            bias_h = u32_of(OP, bias.head_stride)?;
            bias_t = u32_of(OP, bias.row_stride)?;
            bias_mod = u32_of(OP, bias.batch_period)?;
        }
        let [q_b, q_t, q_h] = strides4(OP, qv.strides)?;
        let [k_b, k_t, k_h] = strides4(OP, kv.strides)?;
        let [v_b, v_t, v_h] = strides4(OP, vv.strides)?;
        let params = AttentionParams {
            batch: u32_of(OP, qv.b)?,
            heads: u32_of(OP, qv.h)?,
            tq: u32_of(OP, qv.t)?,
            tk: u32_of(OP, kv.t)?,
            groups: 0,
            kv_group: u32_of(OP, o.heads / o.kv_heads)?,
            flags,
            scale: o.scale,
            q_b,
            q_t,
            q_h,
            causal_offset,
            k_b,
            k_t,
            k_h,
            d4: u32_of(OP, qv.d / 4)?,
            v_b,
            v_t,
            v_h,
            bias_mod,
            o_b: q_b,
            o_t: q_t,
            o_h: q_h,
            pad0: 0,
            bias_b,
            bias_h,
            bias_t,
            pad1: 0,
        };
        run(OP, Plan { q: self, k, v, bias: o.bias.map(|b| b.tensor), out: &out, params, mode: 0, kernel })?;
        Ok(out)
    }

    /// SSV2A's efficient attention (ESALayer): with q̂ and k̂ the softmax of each head's d
    /// features (per token; not over tokens), `a[b,t,h,:] = q̂[b,t,h,:] · C[b,h]` where
    /// `C[b,h] = Σ_s k̂[b,s,h,:]ᵀ v[b,s,h,:]`. No 1/√d, no mask.
    /// q: [B, T, H·d], k, v: [B, S, H·d] -> [B, T, H·d].
    ///
    /// Computed as `(q̂·k̂ᵀ)·v` by the attention kernels in linear mode: the same product by
    /// associativity, 2·T·S·d flops per head instead of 2·(T+S)·d², which is less for
    /// SSV2A's T = S = 66 < d (96 in the remixer, 64 in the aggregator), and no d×d context is
    /// stored (for B = 4096 remixer rows it alone would be 1.2 GB). q̂ and k̂ are one
    /// `feature_softmax` pass each.
    pub fn efficient_attention(&self, k: &Tensor, v: &Tensor, heads: usize) -> Result<Tensor> {
        self.efficient_attention_with(k, v, heads, SdpaKernel::Auto)
    }

    /// [`Tensor::efficient_attention`] with an explicit kernel (for tests and benchmarks).
    pub fn efficient_attention_with(&self, k: &Tensor, v: &Tensor, heads: usize, kernel: SdpaKernel) -> Result<Tensor> {
        const OP: &str = "efficient_attention";
        same_gpu(OP, self.gpu(), &[k, v])?;
        let [b, t, f] = self.dims(OP)?;
        let [bk, s, fk] = k.dims(OP)?;
        v.expect(OP, &[bk, s, fk])?;
        if bk != b || fk != f {
            return Err(Error::shape(OP, format!("k, v as [{b}, S, {f}]"), k.shape()));
        }
        if heads == 0 || f % heads != 0 {
            return Err(Error::arg(OP, format!("{f} features are not divisible by {heads} heads")));
        }
        let d = f / heads;
        if !d.is_multiple_of(4) {
            return Err(Error::arg(OP, format!("head dim {d} is not a multiple of 4")));
        }
        let kernel = pick_kernel(OP, self.gpu(), kernel, d)?;
        let qh = self.feature_softmax(d)?;
        let kh = k.feature_softmax(d)?;
        let out = Tensor::empty(self.gpu(), self.shape().to_vec())?;
        let [q_b, q_t, q_h] = strides4(OP, [t * f, f, d])?;
        let [k_b, k_t, k_h] = strides4(OP, [s * f, f, d])?;
        let params = AttentionParams {
            batch: u32_of(OP, b)?,
            heads: u32_of(OP, heads)?,
            tq: u32_of(OP, t)?,
            tk: u32_of(OP, s)?,
            kv_group: 1,
            scale: 1.0,
            q_b,
            q_t,
            q_h,
            k_b,
            k_t,
            k_h,
            d4: u32_of(OP, d / 4)?,
            v_b: k_b,
            v_t: k_t,
            v_h: k_h,
            bias_mod: 1,
            o_b: q_b,
            o_t: q_t,
            o_h: q_h,
            ..Default::default()
        };
        run(OP, Plan { q: &qh, k: &kh, v, bias: None, out: &out, params, mode: 1, kernel })?;
        Ok(out)
    }

    /// Softmax over each run of `d` consecutive features (d a multiple of 4).
    /// x: [.., n·d] -> [.., n·d]
    pub fn feature_softmax(&self, d: usize) -> Result<Tensor> {
        const OP: &str = "feature_softmax";
        let n = self.numel();
        if d == 0 || !d.is_multiple_of(4) || self.shape().last().is_none_or(|&f| f % d != 0) {
            return Err(Error::arg(OP, format!("runs of {d} features (a multiple of 4) must tile the last dim of {:?}", self.shape())));
        }
        let out = Tensor::empty(self.gpu(), self.shape().to_vec())?;
        let runs = n / d;
        let p = AttentionParams { batch: u32_of(OP, runs)?, d4: u32_of(OP, d / 4)?, ..Default::default() };
        self.gpu().launch(e::FEATURE_SOFTMAX, &[], &p, &[Some(self.raw()), None, None, None, Some(out.raw())], Grid::threads(runs as u64, 64)?)?;
        Ok(out)
    }
}

/// CPU references (f64, max-subtracted softmax), all in the token-major layout.
pub mod reference {
    /// Problem sizes: batch, query tokens, key tokens, query heads, key/value heads, head dim.
    #[derive(Clone, Copy, Debug)]
    pub struct Dims {
        pub b: usize,
        pub tq: usize,
        pub tk: usize,
        pub heads: usize,
        pub kv_heads: usize,
        pub d: usize,
    }

    /// Additive bias as in [`super::ScoreBias`]: (values, batch, head, row strides, batch period).
    pub type Bias<'a> = (&'a [f32], [usize; 3], usize);

    /// q [b, tq, heads·d], k/v [b, tk, kv_heads·d] -> [b, tq, heads·d]. Keys with a score
    /// ≤ −1e30 (after bias) or hidden by `causal` get weight 0; a row with no visible key is 0.
    pub fn sdpa(q: &[f32], k: &[f32], v: &[f32], n: Dims, scale: f64, causal: Option<i64>, bias: Option<Bias>) -> Vec<f32> {
        let Dims { b, tq, tk, heads, kv_heads, d } = n;
        let (fq, fk) = (heads * d, kv_heads * d);
        let group = heads / kv_heads;
        let mut out = vec![0f32; b * tq * fq];
        let mut s = vec![0f64; tk];
        for bi in 0..b {
            for h in 0..heads {
                let hk = h / group;
                for t in 0..tq {
                    let qrow = &q[(bi * tq + t) * fq + h * d..][..d];
                    let mut max = f64::NEG_INFINITY;
                    for (j, sj) in s.iter_mut().enumerate() {
                        let krow = &k[(bi * tk + j) * fk + hk * d..][..d];
                        let mut dot = 0f64;
                        for c in 0..d {
                            dot += qrow[c] as f64 * krow[c] as f64;
                        }
                        let mut x = dot * scale;
                        if let Some((bv, [sb, sh, st], period)) = bias {
                            x += bv[(bi % period) * sb + h * sh + t * st + j] as f64;
                        }
                        let hidden = causal.is_some_and(|off| j as i64 > t as i64 + off);
                        *sj = if hidden || x.is_nan() || x <= -1e30 { f64::NEG_INFINITY } else { x };
                        max = max.max(*sj);
                    }
                    let orow = &mut out[(bi * tq + t) * fq + h * d..][..d];
                    if max == f64::NEG_INFINITY {
                        continue;
                    }
                    let mut sum = 0f64;
                    for sj in s.iter_mut() {
                        *sj = (*sj - max).exp();
                        sum += *sj;
                    }
                    for c in 0..d {
                        let mut a = 0f64;
                        for (j, sj) in s.iter().enumerate() {
                            a += sj * v[(bi * tk + j) * fk + hk * d + c] as f64;
                        }
                        orow[c] = (a / sum) as f32;
                    }
                }
            }
        }
        out
    }

    /// Softmax over each run of `d` values (f64 inside).
    pub fn feature_softmax(x: &[f32], d: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(x.len());
        for run in x.chunks(d) {
            let m = run.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v as f64));
            let sum: f64 = run.iter().map(|&v| (v as f64 - m).exp()).sum();
            out.extend(run.iter().map(|&v| ((v as f64 - m).exp() / sum) as f32));
        }
        out
    }

    /// SSV2A efficient attention exactly as the module computes it: q̂, k̂ = softmax over each
    /// head's features, `C = Σ_s k̂ᵀ v` (d×d), `a = q̂·C`. q [b, t, heads·d], k/v [b, s, heads·d].
    #[allow(clippy::too_many_arguments)] // the three operands and the five dimensions of the kernel's params
    pub fn efficient_attention(q: &[f32], k: &[f32], v: &[f32], b: usize, t: usize, s: usize, heads: usize, d: usize) -> Vec<f32> {
        let f = heads * d;
        let qh = feature_softmax(q, d);
        let kh = feature_softmax(k, d);
        let mut out = vec![0f32; b * t * f];
        let mut ctx = vec![0f64; d * d];
        for bi in 0..b {
            for h in 0..heads {
                ctx.iter_mut().for_each(|c| *c = 0.0);
                for si in 0..s {
                    let base = (bi * s + si) * f + h * d;
                    for i in 0..d {
                        let ki = kh[base + i] as f64;
                        for j in 0..d {
                            ctx[i * d + j] += ki * v[base + j] as f64;
                        }
                    }
                }
                for ti in 0..t {
                    let base = (bi * t + ti) * f + h * d;
                    for j in 0..d {
                        let mut a = 0f64;
                        for i in 0..d {
                            a += qh[base + i] as f64 * ctx[i * d + j];
                        }
                        out[base + j] = a as f32;
                    }
                }
            }
        }
        out
    }
}
