//! Attention family cases: both SDPA kernels against the f64 reference (and so against each
//! other), masks and bias, both layouts, the tiling case, efficient attention, shape errors.

use super::{e, R};
use crate::common::{assert_close, rand, Tol, REDUCTION};
use ssv2a::ops::attention::reference::{self as ar, Dims};
use ssv2a::ops::attention::{ScoreBias, Sdpa, SdpaKernel};
use ssv2a::{Gpu, Tensor};

/// The kernels that take head dim `d`: both up to 32, the tiled one beyond.
fn kernels(d: usize) -> &'static [SdpaKernel] {
    if d <= ssv2a::ops::attention::ROWS_MAX_D {
        &[SdpaKernel::Rows, SdpaKernel::Tiled]
    } else {
        &[SdpaKernel::Tiled]
    }
}

fn dims(b: usize, tq: usize, tk: usize, heads: usize, d: usize) -> Dims {
    Dims { b, tq, tk, heads, kv_heads: heads, d }
}

/// Seeded q, k, v in token-major layout.
fn qkv(seed: u64, n: Dims) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let q = rand(seed, n.b * n.tq * n.heads * n.d);
    let k = rand(seed + 1, n.b * n.tk * n.kv_heads * n.d);
    let v = rand(seed + 2, n.b * n.tk * n.kv_heads * n.d);
    (q, k, v)
}

/// Upload token-major q/k/v, run `opts` on `kernel`, compare with the reference.
#[allow(clippy::too_many_arguments)]
async fn check(gpu: &Gpu, what: &str, n: Dims, seed: u64, opts: Sdpa<'_>, bias: Option<ar::Bias<'_>>, kernel: SdpaKernel, tol: Tol) -> R {
    let (q, k, v) = qkv(seed, n);
    let tq = Tensor::from_slice(gpu, &q, [n.b, n.tq, n.heads * n.d]).map_err(e)?;
    let tk = Tensor::from_slice(gpu, &k, [n.b, n.tk, n.kv_heads * n.d]).map_err(e)?;
    let tv = Tensor::from_slice(gpu, &v, [n.b, n.tk, n.kv_heads * n.d]).map_err(e)?;
    let got = tq.sdpa_with(&tk, &tv, &Sdpa { kernel, ..opts }).map_err(e)?;
    if got.shape() != tq.shape() {
        return Err(format!("{what}: output shape {:?}", got.shape()));
    }
    let want = ar::sdpa(&q, &k, &v, n, opts.scale as f64, opts.causal.map(|c| c as i64), bias);
    assert_close(&format!("{what} {n:?} {kernel:?}"), &got.to_vec().await.map_err(e)?, &want, tol)
}

pub async fn sdpa_shapes(gpu: &Gpu) -> R {
    let cases = [
        dims(1, 1, 1, 1, 32),
        dims(2, 7, 7, 3, 24),
        dims(1, 33, 65, 8, 32),
        dims(3, 65, 33, 1, 64),
        dims(1, 130, 130, 3, 96),
        dims(2, 13, 130, 2, 128),
        dims(1, 5, 9, 2, 4),
    ];
    for (i, n) in cases.into_iter().enumerate() {
        let opts = Sdpa::new(n.heads, 1.0 / (n.d as f32).sqrt());
        for &kernel in kernels(n.d) {
            check(gpu, "sdpa", n, 10 * i as u64, opts, None, kernel, REDUCTION).await?;
        }
    }
    // d = 512 (the VAE's single head): one and several key blocks, one and two query tiles.
    for (i, n) in [dims(1, 40, 40, 1, 512), dims(2, 33, 130, 1, 512)].into_iter().enumerate() {
        let opts = Sdpa::new(1, 1.0 / (512f32).sqrt());
        check(gpu, "sdpa d=512", n, 100 + i as u64, opts, None, SdpaKernel::Auto, REDUCTION).await?;
    }
    Ok(())
}

/// Logits of a few hundred: exp would overflow f32 (> 88) without the running max.
pub async fn sdpa_large_logits(gpu: &Gpu) -> R {
    let n = dims(2, 33, 70, 2, 32);
    // |score| reaches ~300; f32 rounding of a score of that size is ~3e-5 in the exponent,
    // i.e. a relative error of that order in the weights of near-tied keys.
    let tol = Tol { abs: 1e-4, rel: 2e-4 };
    for &kernel in kernels(n.d) {
        check(gpu, "sdpa large logits", n, 7, Sdpa::new(2, 4.0), None, kernel, tol).await?;
    }
    Ok(())
}

pub async fn sdpa_masks(gpu: &Gpu) -> R {
    for &kernel in kernels(32) {
        // Causal self-attention (CLIP text tower).
        let n = dims(2, 33, 33, 3, 32);
        let opts = Sdpa { causal: Some(0), ..Sdpa::new(3, 0.2) };
        check(gpu, "causal", n, 20, opts, None, kernel, REDUCTION).await?;
        // DALLE-2 prior: multi-query (one shared k/v head), a null key prepended, so query t
        // sees keys 0 ..= t + 1 (its heads are 64 wide: tiled only; 32 here for both).
        for d in [32, 64] {
            let n = Dims { b: 2, tq: 20, tk: 21, heads: 4, kv_heads: 1, d };
            let opts = Sdpa { kv_heads: 1, causal: Some(1), ..Sdpa::new(4, 0.125) };
            if kernels(d).contains(&kernel) {
                check(gpu, "causal mqa", n, 30, opts, None, kernel, REDUCTION).await?;
            }
        }
        // A negative offset: the first rows see no key and must come out as zeros.
        let n = dims(1, 9, 9, 2, 24);
        let opts = Sdpa { causal: Some(-3), ..Sdpa::new(2, 0.3) };
        check(gpu, "causal offset -3", n, 40, opts, None, kernel, REDUCTION).await?;

        // Additive bias per (window, head), windows repeating every 2 batch items (Swin), with
        // -inf entries masking keys and one fully masked row.
        let n = dims(4, 11, 19, 3, 32);
        let (period, heads) = (2, 3);
        let mut bv = rand(50, period * heads * n.tq * n.tk);
        for (i, x) in bv.iter_mut().enumerate() {
            if i % 7 == 3 {
                *x = f32::NEG_INFINITY;
            }
        }
        let row = n.tq * n.tk; // batch item 0, head 1, query row 0: fully masked
        bv[row..row + n.tk].iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
        let strides = [heads * n.tq * n.tk, n.tq * n.tk, n.tk];
        let bt = Tensor::from_slice(gpu, &bv, [period, heads, n.tq, n.tk]).map_err(e)?;
        let bias = ScoreBias { tensor: &bt, batch_stride: strides[0], head_stride: strides[1], row_stride: strides[2], batch_period: period };
        let opts = Sdpa { bias: Some(bias), ..Sdpa::new(heads, 0.25) };
        check(gpu, "bias", n, 60, opts, Some((&bv, strides, period)), kernel, REDUCTION).await?;
        // A bias shared by all heads and rows (a key padding mask), with causal on top.
        let kb: Vec<f32> = (0..n.tk).map(|j| if j % 5 == 4 { f32::NEG_INFINITY } else { 0.1 * j as f32 }).collect();
        let kt = Tensor::from_slice(gpu, &kb, [n.tk]).map_err(e)?;
        let bias = ScoreBias { tensor: &kt, batch_stride: 0, head_stride: 0, row_stride: 0, batch_period: 1 };
        let opts = Sdpa { bias: Some(bias), causal: Some(8), ..Sdpa::new(heads, 0.25) };
        check(gpu, "key mask + causal", n, 70, opts, Some((&kb, [0, 0, 0], 1)), kernel, REDUCTION).await?;
    }
    Ok(())
}

/// [B, H, T, d] inputs give the same result as [B, T, H·d] ones, in [B, H, T, d].
pub async fn sdpa_head_major(gpu: &Gpu) -> R {
    let n = dims(2, 17, 23, 3, 32);
    let (q, k, v) = qkv(80, n);
    let to_bhtd = |x: &[f32], t: usize| {
        let mut y = vec![0f32; x.len()];
        for b in 0..n.b {
            for ti in 0..t {
                for h in 0..n.heads {
                    for c in 0..n.d {
                        y[((b * n.heads + h) * t + ti) * n.d + c] = x[((b * t + ti) * n.heads + h) * n.d + c];
                    }
                }
            }
        }
        y
    };
    let want = to_bhtd(&ar::sdpa(&q, &k, &v, n, 0.3, None, None), n.tq);
    let tq = Tensor::from_slice(gpu, &to_bhtd(&q, n.tq), [n.b, n.heads, n.tq, n.d]).map_err(e)?;
    let tk = Tensor::from_slice(gpu, &to_bhtd(&k, n.tk), [n.b, n.heads, n.tk, n.d]).map_err(e)?;
    let tv = Tensor::from_slice(gpu, &to_bhtd(&v, n.tk), [n.b, n.heads, n.tk, n.d]).map_err(e)?;
    for &kernel in kernels(n.d) {
        let got = tq.sdpa_with(&tk, &tv, &Sdpa { kernel, ..Sdpa::new(n.heads, 0.3) }).map_err(e)?;
        assert_close(&format!("sdpa [B,H,T,d] {kernel:?}"), &got.to_vec().await.map_err(e)?, &want, REDUCTION)?;
    }
    Ok(())
}

/// One head of 1024 tokens, the size of the UNet's first attention level. Untiled, one score
/// matrix is 4 MiB here, but at the real sizes it would not fit one storage binding (128 MiB
/// on lavapipe): the UNet level at batch 6 × 8 heads is 1024²·48·4 B ≈ 201 MB, the VAE's
/// 4096-token head 64 MiB per batch item. The kernels hold only 4×4 (`sdpa`) or 32×64
/// (`sdpa_tiled`) scores at a time.
pub async fn sdpa_tiling(gpu: &Gpu) -> R {
    let n = dims(1, 1024, 1024, 1, 32);
    for &kernel in kernels(n.d) {
        check(gpu, "sdpa 1024 tokens", n, 90, Sdpa::new(1, 1.0 / (32f32).sqrt()), None, kernel, REDUCTION).await?;
    }
    Ok(())
}

/// Fast vs slow: the register kernel and the tiled one agree with each other directly (two
/// UNet-like heads at batch 2, causal on), not only each with the reference.
pub async fn sdpa_kernels_agree(gpu: &Gpu) -> R {
    let n = dims(2, 300, 257, 2, 32);
    let (q, k, v) = qkv(95, n);
    let tq = Tensor::from_slice(gpu, &q, [n.b, n.tq, n.heads * n.d]).map_err(e)?;
    let tk = Tensor::from_slice(gpu, &k, [n.b, n.tk, n.heads * n.d]).map_err(e)?;
    let tv = Tensor::from_slice(gpu, &v, [n.b, n.tk, n.heads * n.d]).map_err(e)?;
    let opts = Sdpa { causal: Some(-43), ..Sdpa::new(n.heads, 1.0 / (32f32).sqrt()) };
    let rows = tq.sdpa_with(&tk, &tv, &Sdpa { kernel: SdpaKernel::Rows, ..opts }).map_err(e)?;
    let tiled = tq.sdpa_with(&tk, &tv, &Sdpa { kernel: SdpaKernel::Tiled, ..opts }).map_err(e)?;
    assert_close("sdpa Rows vs Tiled", &rows.to_vec().await.map_err(e)?, &tiled.to_vec().await.map_err(e)?, REDUCTION)
}

pub async fn sdpa_errors(gpu: &Gpu) -> R {
    let t = |shape: &[usize]| Tensor::zeros(gpu, shape.to_vec()).map_err(e);
    let q = t(&[2, 5, 32])?;
    let must_fail = |what: &str, r: ssv2a::Result<Tensor>| match r {
        Ok(_) => Err(format!("{what} was accepted")),
        Err(_) => Ok(()),
    };
    must_fail("d not dividing the features", q.sdpa(&q, &q, 3, 1.0))?;
    must_fail("d = 2, not a multiple of 4", q.sdpa(&q, &q, 16, 1.0))?;
    must_fail("zero heads", q.sdpa(&q, &q, 0, 1.0))?;
    must_fail("mismatched batch", q.sdpa(&t(&[1, 5, 32])?, &t(&[1, 5, 32])?, 2, 1.0))?;
    must_fail("k/v token mismatch", q.sdpa(&t(&[2, 5, 32])?, &t(&[2, 6, 32])?, 2, 1.0))?;
    must_fail("head dim mismatch", q.sdpa(&t(&[2, 5, 64])?, &t(&[2, 5, 64])?, 2, 1.0))?;
    must_fail("rank 2", t(&[5, 32])?.sdpa(&t(&[5, 32])?, &t(&[5, 32])?, 1, 1.0))?;
    must_fail("mixed layouts", q.sdpa(&t(&[2, 2, 5, 16])?, &t(&[2, 2, 5, 16])?, 2, 1.0))?;
    must_fail("head count of a rank-4 q", t(&[2, 3, 5, 16])?.sdpa(&t(&[2, 3, 5, 16])?, &t(&[2, 3, 5, 16])?, 2, 1.0))?;
    let o = Sdpa { kv_heads: 3, ..Sdpa::new(4, 1.0) };
    must_fail("kv heads not dividing heads", q.sdpa_with(&q, &q, &o))?;
    let big = t(&[1, 3, 64])?;
    must_fail("d = 64 on the register kernel", big.sdpa_with(&big, &big, &Sdpa { kernel: SdpaKernel::Rows, ..Sdpa::new(1, 1.0) }))?;
    let small = t(&[10])?;
    let bias = ScoreBias { tensor: &small, batch_stride: 0, head_stride: 0, row_stride: 5, batch_period: 1 };
    must_fail("bias too small", q.sdpa_with(&q, &q, &Sdpa { bias: Some(bias), ..Sdpa::new(2, 1.0) }))?;
    let bias = ScoreBias { tensor: &small, batch_stride: 0, head_stride: 0, row_stride: 0, batch_period: 0 };
    must_fail("bias period 0", q.sdpa_with(&q, &q, &Sdpa { bias: Some(bias), ..Sdpa::new(2, 1.0) }))?;
    must_fail("efficient attention: heads", q.efficient_attention(&q, &q, 3))?;
    must_fail("efficient attention: d % 4", q.efficient_attention(&q, &q, 16))?;
    must_fail("efficient attention: k batch", q.efficient_attention(&t(&[1, 5, 32])?, &t(&[1, 5, 32])?, 2))?;
    must_fail("efficient attention: v shape", q.efficient_attention(&q, &t(&[2, 4, 32])?, 2))?;
    must_fail("feature_softmax: d not tiling", q.feature_softmax(12))?;
    Ok(())
}

pub async fn feature_softmax(gpu: &Gpu) -> R {
    for (shape, d) in [(vec![1usize, 4], 4usize), (vec![3, 5, 24], 8), (vec![7, 96], 96), (vec![2, 1024], 512)] {
        let n: usize = shape.iter().product();
        let x: Vec<f32> = rand(d as u64, n).iter().map(|v| v * 20.0).collect();
        let t = Tensor::from_slice(gpu, &x, shape.clone()).map_err(e)?;
        let got = t.feature_softmax(d).map_err(e)?.to_vec().await.map_err(e)?;
        assert_close(&format!("feature_softmax {shape:?} d={d}"), &got, &ar::feature_softmax(&x, d), REDUCTION)?;
    }
    Ok(())
}

pub async fn efficient_attention(gpu: &Gpu) -> R {
    // (b, t, s, heads, d, kernel)
    let cases = [
        (1usize, 1usize, 1usize, 1usize, 4usize, SdpaKernel::Auto),
        (3, 7, 7, 3, 24, SdpaKernel::Auto),
        (5, 33, 20, 2, 64, SdpaKernel::Auto),
        (2, 66, 66, 8, 96, SdpaKernel::Auto),
        (4, 13, 29, 2, 32, SdpaKernel::Rows),
        (4, 13, 29, 2, 32, SdpaKernel::Tiled),
        (2, 9, 9, 1, 160, SdpaKernel::Auto),
        (3, 66, 66, 8, 64, SdpaKernel::Auto),
    ];
    for (i, (b, t, s, heads, d, kernel)) in cases.into_iter().enumerate() {
        let f = heads * d;
        // Features spread wider than [-2, 2] so the feature softmax is far from uniform.
        let q: Vec<f32> = rand(200 + i as u64, b * t * f).iter().map(|x| x * 3.0).collect();
        let k: Vec<f32> = rand(300 + i as u64, b * s * f).iter().map(|x| x * 3.0).collect();
        let v = rand(400 + i as u64, b * s * f);
        let tq = Tensor::from_slice(gpu, &q, [b, t, f]).map_err(e)?;
        let tk = Tensor::from_slice(gpu, &k, [b, s, f]).map_err(e)?;
        let tv = Tensor::from_slice(gpu, &v, [b, s, f]).map_err(e)?;
        let got = tq.efficient_attention_with(&tk, &tv, heads, kernel).map_err(e)?;
        let want = ar::efficient_attention(&q, &k, &v, b, t, s, heads, d);
        assert_close(&format!("efficient_attention b={b} t={t} s={s} heads={heads} d={d} {kernel:?}"), &got.to_vec().await.map_err(e)?, &want, REDUCTION)?;
    }
    Ok(())
}
