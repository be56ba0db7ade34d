//! Matmul family cases: `linear` (fp16/f32 weights, bias, every activation), the naive
//! baseline, `bmm` both ways, the strided per-head variant and shape errors.

use super::{e, R};
use crate::common::{assert_close, rand, Tol};
use ssv2a::ops::matmul::{reference as mr, BmmStrided, MatView, MatmulKernel};
use ssv2a::ops::Act;
use ssv2a::{Error, Gpu, Tensor, Weight, WeightDtype};

/// f32 accumulation of k products: the rounding error of the sum grows about like √k times
/// the terms' size (random signs), so the absolute part scales with √k; the CPU reference
/// accumulates in f64. fp16 weights are compared with a reference on the fp16-rounded weights,
/// so the tolerance stays at this f32 level.
fn tol(k: usize) -> Tol {
    Tol { abs: 1e-5 * (k as f64).sqrt().max(1.0), rel: 1e-4 }
}

const ACTS: [Act; 7] = [Act::None, Act::Gelu, Act::GeluTanh, Act::QuickGelu, Act::Silu, Act::Relu, Act::Tanh];

/// (m, n, k): size 1, primes, just above the 8×16 thread block and the 64×128 workgroup
/// block, k = 1, 3, 5, 127 (tails), 1024 with small m, one row / one column (lane layouts).
const LINEAR_SHAPES: &[(usize, usize, usize)] =
    &[(1, 1, 1), (1, 7, 3), (3, 5, 5), (9, 17, 4), (37, 41, 43), (65, 129, 16), (13, 31, 127), (3, 70, 1024), (1, 300, 64), (300, 1, 64), (130, 20, 12)];

/// One linear case: (m, n, k), the weight dtype, bias or not, the fused activation.
#[derive(Clone, Copy)]
struct Linear {
    m: usize,
    n: usize,
    k: usize,
    dtype: WeightDtype,
    bias: bool,
    act: Act,
}

async fn check_linear(gpu: &Gpu, c: Linear, kernel: MatmulKernel, seed: u64) -> R {
    let Linear { m, n, k, dtype, bias, act } = c;
    let what = format!("linear m={m} n={n} k={k} {dtype:?} bias={bias} {act:?} {kernel:?}");
    let x = rand(seed, m * k);
    let w = rand(seed + 1, n * k);
    let bv = rand(seed + 2, n);
    let tx = Tensor::from_slice(gpu, &x, [m, k]).map_err(e)?;
    let tw = Weight::from_f32(gpu, &w, [n, k], dtype).map_err(e)?;
    let tb = Tensor::from_slice(gpu, &bv, [n]).map_err(e)?;
    let y = tx.linear_with(&tw, bias.then_some(&tb), act, kernel).map_err(e)?;
    if y.shape() != [m, n] {
        return Err(format!("{what}: shape {:?}", y.shape()));
    }
    let wr = if dtype == WeightDtype::F16 { mr::round_f16(&w) } else { w };
    let want = mr::linear(&x, &wr, bias.then_some(&bv[..]), act, m, n, k);
    assert_close(&what, &y.to_vec().await.map_err(e)?, &want, tol(k))
}

/// Every shape with both weight dtypes, alternating bias and cycling activations.
pub async fn linear_shapes(gpu: &Gpu) -> R {
    for (i, &(m, n, k)) in LINEAR_SHAPES.iter().enumerate() {
        for (j, dtype) in [WeightDtype::F16, WeightDtype::F32].into_iter().enumerate() {
            let bias = (i + j) % 2 == 0;
            let act = ACTS[(i + 3 * j) % ACTS.len()];
            check_linear(gpu, Linear { m, n, k, dtype, bias, act }, MatmulKernel::Tiled, 1000 + 10 * i as u64).await?;
        }
    }
    Ok(())
}

/// Split-K `linear` (k cut into parts summed by `split_sum`): parts from 2 to 16, edge blocks
/// in m and n, both dtypes, bias and activations; and the split's argument errors.
pub async fn linear_split_k(gpu: &Gpu) -> R {
    let cases: &[(usize, usize, usize, usize)] = &[(1, 7, 8, 2), (37, 41, 192, 3), (130, 20, 256, 4), (3, 70, 1024, 16), (9, 129, 64, 8)];
    for (i, &(m, n, k, parts)) in cases.iter().enumerate() {
        for (j, dtype) in [WeightDtype::F16, WeightDtype::F32].into_iter().enumerate() {
            let act = ACTS[(i + 2 * j) % ACTS.len()];
            check_linear(gpu, Linear { m, n, k, dtype, bias: (i + j) % 2 == 0, act }, MatmulKernel::SplitK(parts), 4000 + 10 * i as u64).await?;
        }
    }
    let x = Tensor::from_slice(gpu, &rand(1, 2 * 12), [2, 12]).map_err(e)?;
    let w = Weight::from_f32(gpu, &rand(2, 3 * 12), [3, 12], WeightDtype::F16).map_err(e)?;
    for parts in [0, 2, 4] {
        match x.linear_with(&w, None, Act::None, MatmulKernel::SplitK(parts)) {
            Err(Error::Arg { .. }) => {}
            other => return Err(format!("linear split into {parts} parts with k = 12: expected an argument error, got {other:?}")),
        }
    }
    Ok(())
}

/// Every activation, with and without bias, on a shape with edge blocks in m, n and k.
pub async fn linear_acts(gpu: &Gpu) -> R {
    for (i, act) in ACTS.into_iter().enumerate() {
        for bias in [false, true] {
            check_linear(gpu, Linear { m: 19, n: 35, k: 21, dtype: WeightDtype::F16, bias, act }, MatmulKernel::Auto, 2000 + i as u64).await?;
        }
    }
    // Large pre-activations: the tanh/sigmoid/erf tails must not produce NaN.
    let (m, n, k) = (4, 6, 8);
    let x: Vec<f32> = rand(5, m * k).iter().map(|v| v * 40.0).collect();
    let w = rand(6, n * k);
    let tx = Tensor::from_slice(gpu, &x, [m, k]).map_err(e)?;
    let tw = Weight::from_f32(gpu, &w, [n, k], WeightDtype::F32).map_err(e)?;
    for act in ACTS {
        let y = tx.linear(&tw, None, act).map_err(e)?.to_vec().await.map_err(e)?;
        let want = mr::linear(&x, &w, None, act, m, n, k);
        assert_close(&format!("linear large {act:?}"), &y, &want, tol(k))?;
    }
    Ok(())
}

/// The naive baseline computes the same thing.
pub async fn linear_naive(gpu: &Gpu) -> R {
    for (i, &(m, n, k)) in [(1, 1, 1), (13, 31, 127), (65, 129, 16)].iter().enumerate() {
        for dtype in [WeightDtype::F16, WeightDtype::F32] {
            check_linear(gpu, Linear { m, n, k, dtype, bias: true, act: ACTS[2 * i + 1] }, MatmulKernel::Naive, 3000 + i as u64).await?;
        }
    }
    Ok(())
}

/// Rank-3 input and a 1×1 conv weight [n, k, 1, 1].
pub async fn linear_layouts(gpu: &Gpu) -> R {
    let (b, t, k, n) = (2, 5, 12, 7);
    let x = rand(40, b * t * k);
    let w = rand(41, n * k);
    let tx = Tensor::from_slice(gpu, &x, [b, t, k]).map_err(e)?;
    let tw = Weight::from_f32(gpu, &w, [n, k, 1, 1], WeightDtype::F16).map_err(e)?;
    let y = tx.linear(&tw, None, Act::None).map_err(e)?;
    if y.shape() != [b, t, n] {
        return Err(format!("linear rank 3: shape {:?}", y.shape()));
    }
    let want = mr::linear(&x, &mr::round_f16(&w), None, Act::None, b * t, n, k);
    assert_close("linear rank 3, [n, k, 1, 1] weight", &y.to_vec().await.map_err(e)?, &want, tol(k))
}

/// `bmm` with trans_b both ways: batch 1, odd sizes, tails in k, edges in m and n, and a
/// batch of 70 000 tiny products (more than 65 535 workgroups: the grid is folded into y).
pub async fn bmm_shapes(gpu: &Gpu) -> R {
    let shapes: &[(usize, usize, usize, usize)] =
        &[(1, 1, 1, 1), (2, 7, 5, 3), (3, 65, 129, 33), (2, 17, 64, 128), (1, 9, 300, 6), (4, 1, 20, 64), (2, 130, 1, 8), (70_000, 1, 2, 3)];
    for (i, &(bt, m, n, k)) in shapes.iter().enumerate() {
        for trans_b in [false, true] {
            let what = format!("bmm bt={bt} m={m} n={n} k={k} trans_b={trans_b}");
            let a = rand(4000 + i as u64, bt * m * k);
            let b = rand(4100 + i as u64, bt * n * k);
            let alpha = 0.375;
            let ta = Tensor::from_slice(gpu, &a, [bt, m, k]).map_err(e)?;
            let tb = Tensor::from_slice(gpu, &b, if trans_b { [bt, n, k] } else { [bt, k, n] }).map_err(e)?;
            let c = ta.bmm(&tb, trans_b, alpha).map_err(e)?;
            if c.shape() != [bt, m, n] {
                return Err(format!("{what}: shape {:?}", c.shape()));
            }
            let want = mr::bmm(&a, &b, bt, m, n, k, trans_b, alpha);
            assert_close(&what, &c.to_vec().await.map_err(e)?, &want, tol(k))?;
        }
    }
    // Rank 2 is a batch of one.
    let (a, b) = (rand(50, 6 * 10), rand(51, 10 * 3));
    let ta = Tensor::from_slice(gpu, &a, [6, 10]).map_err(e)?;
    let tb = Tensor::from_slice(gpu, &b, [10, 3]).map_err(e)?;
    let c = ta.bmm(&tb, false, 1.0).map_err(e)?;
    if c.shape() != [6, 3] {
        return Err(format!("bmm rank 2: shape {:?}", c.shape()));
    }
    assert_close("bmm rank 2", &c.to_vec().await.map_err(e)?, &mr::bmm(&a, &b, 1, 6, 3, 10, false, 1.0), tol(10))
}

/// Attention-style per-head products on q, k, v: [b, t, h, d] without permutes: scores
/// [b, h, t, t] = q·kᵀ/√d, then out [b, t, h, d] = scores·v written head by head into a
/// tensor whose other elements must stay untouched. d = 12 uses the aligned variant, d = 5
/// the unaligned one.
pub async fn bmm_strided_heads(gpu: &Gpu) -> R {
    for (bsz, t, h, d) in [(2usize, 19usize, 3usize, 12usize), (1, 9, 2, 5), (2, 70, 2, 32)] {
        let n = bsz * t * h * d;
        let (q, k, v) = (rand(60 + d as u64, n), rand(61 + d as u64, n), rand(62 + d as u64, n));
        let tq = Tensor::from_slice(gpu, &q, [bsz, t, h, d]).map_err(e)?;
        let tk = Tensor::from_slice(gpu, &k, [bsz, t, h, d]).map_err(e)?;
        let tv = Tensor::from_slice(gpu, &v, [bsz, t, h, d]).map_err(e)?;
        let head = MatView { offset: 0, batch_strides: [t * h * d, d], row_stride: h * d };
        let scores_view = MatView::packed(h, t, t);
        let s1 = BmmStrided { batch: [bsz, h], m: t, n: t, k: d, trans_b: true, alpha: 1.0 / (d as f32).sqrt(), a: head, b: head, c: scores_view };
        let scores = Tensor::empty(gpu, [bsz, h, t, t]).map_err(e)?;
        tq.bmm_strided_into(&tk, &scores, &s1).map_err(e)?;
        let mut want_s = vec![0f32; bsz * h * t * t];
        mr::bmm_strided(&q, &k, &mut want_s, &s1);
        let got_s = scores.to_vec().await.map_err(e)?;
        assert_close(&format!("q·kᵀ per head b={bsz} t={t} h={h} d={d}"), &got_s, &want_s, tol(d))?;

        // scores · v into [b, t, h, d], one head at a time (offset = head · d), the rest
        // of the output pre-filled with a sentinel.
        let sentinel = 7.25f32;
        let out = Tensor::from_slice(gpu, &vec![sentinel; n], [bsz, t, h, d]).map_err(e)?;
        let mut want_o = vec![sentinel; n];
        for hh in 0..h {
            if hh == 1 {
                continue; // leave head 1 untouched: checks nothing outside the view is written
            }
            let s2 = BmmStrided {
                batch: [bsz, 1],
                m: t,
                n: d,
                k: t,
                trans_b: false,
                alpha: 1.0,
                a: MatView { offset: hh * t * t, batch_strides: [h * t * t, 0], row_stride: t },
                b: MatView { offset: hh * d, batch_strides: [t * h * d, 0], row_stride: h * d },
                c: MatView { offset: hh * d, batch_strides: [t * h * d, 0], row_stride: h * d },
            };
            scores.bmm_strided_into(&tv, &out, &s2).map_err(e)?;
            mr::bmm_strided(&got_s, &v, &mut want_o, &s2);
        }
        assert_close(&format!("probs·v per head b={bsz} t={t} h={h} d={d}"), &out.to_vec().await.map_err(e)?, &want_o, tol(t))?;
    }
    Ok(())
}

/// Rows longer than k (row_stride 8, k = 5): the aligned variant with a k tail, where vector
/// loads reach past k into the row's unused columns. Those hold inf (A) and NaN (B), so a
/// missing mask on either operand shows up as NaN.
pub async fn bmm_strided_padded_rows(gpu: &Gpu) -> R {
    let (m, n, k, ld) = (11usize, 21usize, 5usize, 8usize);
    let mut a = rand(70, m * ld);
    let mut bt = rand(71, n * ld);
    for r in 0..m {
        a[r * ld + k..(r + 1) * ld].fill(f32::INFINITY);
    }
    for r in 0..n {
        bt[r * ld + k..(r + 1) * ld].fill(f32::NAN);
    }
    let ta = Tensor::from_slice(gpu, &a, [m, ld]).map_err(e)?;
    let tbt = Tensor::from_slice(gpu, &bt, [n, ld]).map_err(e)?;
    let c = Tensor::empty(gpu, [m, n]).map_err(e)?;
    let view = |rows: usize| MatView { offset: 0, batch_strides: [0, 0], row_stride: rows };
    let s = BmmStrided { batch: [1, 1], m, n, k, trans_b: true, alpha: 1.0, a: view(ld), b: view(ld), c: view(n) };
    ta.bmm_strided_into(&tbt, &c, &s).map_err(e)?;
    let mut want = vec![0f32; m * n];
    mr::bmm_strided(&a, &bt, &mut want, &s);
    assert_close("A·Bᵀ with padded rows", &c.to_vec().await.map_err(e)?, &want, tol(k))?;

    // A·B with B [k, n] rows of stride 22 (even) and a k tail; rows past k hold NaN.
    let ldb = 22;
    let mut b = rand(72, (k + 3) * ldb);
    b[k * ldb..].fill(f32::NAN);
    let tb = Tensor::from_slice(gpu, &b, [k + 3, ldb]).map_err(e)?;
    let s = BmmStrided { trans_b: false, b: view(ldb), ..s };
    ta.bmm_strided_into(&tb, &c, &s).map_err(e)?;
    let mut want = vec![0f32; m * n];
    mr::bmm_strided(&a, &b, &mut want, &s);
    assert_close("A·B with padded rows", &c.to_vec().await.map_err(e)?, &want, tol(k))
}

fn expect_shape_err(what: &str, r: ssv2a::Result<impl std::fmt::Debug>, must_contain: &[&str]) -> R {
    match r {
        Err(err @ (Error::Shape { .. } | Error::Arg { .. })) => {
            let msg = err.to_string();
            for s in must_contain {
                if !msg.contains(s) {
                    return Err(format!("{what}: error `{msg}` does not mention `{s}`"));
                }
            }
            Ok(())
        }
        Err(other) => Err(format!("{what}: wrong error kind: {other}")),
        Ok(v) => Err(format!("{what}: accepted ({v:?})")),
    }
}

pub async fn shape_errors(gpu: &Gpu) -> R {
    let x = Tensor::from_slice(gpu, &rand(80, 15), [3, 5]).map_err(e)?;
    let w = Weight::from_f32(gpu, &rand(81, 24), [4, 6], WeightDtype::F16).map_err(e)?;
    expect_shape_err("linear k mismatch", x.linear(&w, None, Act::None), &["linear", "[3, 5]", "[4, 6]"])?;
    let w5 = Weight::from_f32(gpu, &rand(82, 20), [4, 5], WeightDtype::F16).map_err(e)?;
    let bad_bias = Tensor::from_slice(gpu, &[0.0; 5], [5]).map_err(e)?;
    expect_shape_err("linear bias", x.linear(&w5, Some(&bad_bias), Act::None), &["linear.bias", "[4]", "[5]"])?;

    let a = Tensor::from_slice(gpu, &rand(83, 2 * 3 * 4), [2, 3, 4]).map_err(e)?;
    let b_wrong_k = Tensor::from_slice(gpu, &rand(84, 2 * 5 * 6), [2, 5, 6]).map_err(e)?;
    expect_shape_err("bmm k mismatch", a.bmm(&b_wrong_k, false, 1.0), &["bmm", "[2, 3, 4]", "[2, 5, 6]"])?;
    let b_batch = Tensor::from_slice(gpu, &rand(85, 3 * 4 * 6), [3, 4, 6]).map_err(e)?;
    expect_shape_err("bmm batch mismatch", a.bmm(&b_batch, false, 1.0), &["bmm", "[3, 4, 6]"])?;
    expect_shape_err("bmm trans_b k mismatch", a.bmm(&b_batch, true, 1.0), &["bmm"])?;
    let v = Tensor::from_slice(gpu, &rand(86, 4), [4]).map_err(e)?;
    expect_shape_err("bmm rank 1", a.bmm(&v, false, 1.0), &["bmm"])?;

    // A strided view that reaches past the end of its tensor.
    let c = Tensor::empty(gpu, [2, 3, 6]).map_err(e)?;
    let b_ok = Tensor::from_slice(gpu, &rand(87, 2 * 4 * 6), [2, 4, 6]).map_err(e)?;
    let s = BmmStrided {
        batch: [1, 2],
        m: 3,
        n: 6,
        k: 4,
        trans_b: false,
        alpha: 1.0,
        a: MatView::packed(2, 3, 4),
        b: MatView::packed(2, 4, 6),
        c: MatView::packed(2, 3, 6),
    };
    a.bmm_strided_into(&b_ok, &c, &s).map_err(e)?;
    let over = BmmStrided { a: MatView { offset: 1, ..s.a }, ..s };
    expect_shape_err("bmm_strided out of bounds", a.bmm_strided_into(&b_ok, &c, &over), &["bmm_strided", "a:"])?;
    let overlap = BmmStrided { c: MatView { row_stride: 5, ..s.c }, ..s };
    expect_shape_err("bmm_strided overlapping c rows", a.bmm_strided_into(&b_ok, &c, &overlap), &["bmm_strided"])?;
    Ok(())
}
