//! Conv family cases: every kernel that accepts a shape runs it and is compared with
//! `ssv2a::ops::conv::reference`.
//!
//! Weights are scaled by 1/√K (K = taps per output) so outputs stay O(1) like in real networks.
//! fp16 weights: the reference gets the same fp16-rounded values, so the comparison measures only
//! the kernel's f32 arithmetic and the default conv tolerance (abs 1e-5 + rel 1e-4) applies to
//! both dtypes.

use super::{e, R};
use crate::common::{assert_close, rand, Tol};
use ssv2a::ops::conv::{reference as cr, Conv1dArgs, Conv2dArgs, ConvKernel, ConvTranspose1dArgs};
use ssv2a::ops::Act;
use ssv2a::{Error, Gpu, HostTensor, Tensor, Weight, WeightDtype};

/// Matmul/conv tolerance (HOUSE_STYLE §2.7); K ≤ 600 here, so no √K loosening is needed.
const CONV: Tol = Tol { abs: 1e-5, rel: 1e-4 };

/// Random weights of `shape` scaled by 1/√k, uploaded as `dtype`, and the values the GPU sees
/// (fp16-rounded for F16) for the reference.
fn weight(gpu: &Gpu, seed: u64, shape: &[usize], k: usize, dtype: WeightDtype) -> Result<(Weight, HostTensor), String> {
    let s = 1.0 / (k as f32).sqrt();
    let v: Vec<f32> = rand(seed, shape.iter().product()).iter().map(|x| x * s).collect();
    let w = Weight::from_f32(gpu, &v, shape.to_vec(), dtype).map_err(e)?;
    let seen = match dtype {
        WeightDtype::F16 => v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect(),
        WeightDtype::F32 => v,
    };
    Ok((w, HostTensor::new(shape.to_vec(), seen).map_err(e)?))
}

struct C2 {
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    k: (usize, usize),
    args: Conv2dArgs,
    bias: bool,
    dtype: WeightDtype,
}

fn c2(n: usize, cin: usize, cout: usize, hw: (usize, usize), k: (usize, usize), args: Conv2dArgs) -> C2 {
    C2 { n, cin, cout, h: hw.0, w: hw.1, k, args, bias: true, dtype: WeightDtype::F16 }
}

impl C2 {
    fn f32(self) -> Self {
        C2 { dtype: WeightDtype::F32, ..self }
    }
    fn no_bias(self) -> Self {
        C2 { bias: false, ..self }
    }
}

/// The conv2d kernels that can run `a` with kernel size k.
fn kernels_for(k: (usize, usize), a: &Conv2dArgs) -> Vec<ConvKernel> {
    // Split-K (of `conv2d_3x3` for 3×3 stride-1 shapes, else of `conv2d`) in 2, 3 and 5 parts:
    // uneven chunks, and parts left without any reduction when it is shorter than 5 channels
    // or 4-wide steps (they must add zeros).
    let mut v = vec![ConvKernel::Auto, ConvKernel::General, ConvKernel::Naive, ConvKernel::Split(2), ConvKernel::Split(3), ConvKernel::Split(5)];
    if k == (3, 3) && a.stride == (1, 1) && a.dilation == (1, 1) {
        v.push(ConvKernel::Patch3x3);
    }

    v
}

async fn check_conv2d(gpu: &Gpu, i: usize, c: &C2) -> R {
    let g = c.args.groups;
    let (kh, kw) = c.k;
    let xs = [c.n, c.cin, c.h, c.w];
    let xv = rand(1000 + i as u64, xs.iter().product());
    let x = Tensor::from_slice(gpu, &xv, xs.to_vec()).map_err(e)?;
    let (w, wh) = weight(gpu, 2000 + i as u64, &[c.cout, c.cin / g, kh, kw], c.cin / g * kh * kw, c.dtype)?;
    let bv = rand(3000 + i as u64, c.cout);
    let b = Tensor::from_slice(gpu, &bv, [c.cout]).map_err(e)?;
    let bias = c.bias.then_some(&b);
    let want = cr::conv2d(&HostTensor::new(xs.to_vec(), xv).map_err(e)?, &wh, c.bias.then_some(&bv[..]), &c.args);
    for kernel in kernels_for(c.k, &c.args) {
        let what = format!("conv2d case {i} {kernel:?} x{xs:?} k{:?} {:?} bias={} {:?}", c.k, c.args, c.bias, c.dtype);
        let y = x.conv2d_with(&w, bias, &c.args, kernel).map_err(|err| format!("{what}: {err}"))?;
        if y.shape() != want.shape.as_slice() {
            return Err(format!("{what}: shape {:?}, expected {:?}", y.shape(), want.shape));
        }
        assert_close(&what, &y.to_vec().await.map_err(e)?, &want.data, CONV)?;
    }
    Ok(())
}

pub async fn conv2d_all(gpu: &Gpu) -> R {
    let a = Conv2dArgs::new;
    let cases = [
        c2(1, 1, 1, (1, 1), (1, 1), a(1, 0)),
        c2(2, 3, 5, (7, 5), (3, 3), a(1, 1).act(Act::Silu)),
        c2(1, 33, 17, (17, 7), (3, 3), a(2, 1)).f32(),
        c2(1, 4, 6, (5, 17), (3, 3), a(1, 2).dilation(2).groups(2)),
        c2(1, 5, 5, (7, 7), (3, 3), a(1, 1).groups(5)).no_bias(),
        // 3×1 kernel.
        c2(2, 6, 9, (17, 1), (3, 1), Conv2dArgs { padding: (1, 0), ..a(1, 0) }.act(Act::Relu)),
        // CLIP-style patchify (kernel 14, stride 14), no bias.
        c2(1, 3, 8, (28, 28), (14, 14), a(14, 0)).no_bias(),
        c2(1, 16, 33, (5, 7), (1, 1), a(1, 0).act(Act::Gelu)),
        c2(1, 2, 3, (17, 17), (7, 7), a(3, 3).act(Act::Relu)).f32(),
        // UNet's narrow levels (W = 2): the 3x3 kernel walks H.
        c2(1, 8, 16, (32, 2), (3, 3), a(1, 1).act(Act::GeluTanh)),
        c2(1, 6, 4, (5, 7), (4, 4), a(2, 1).act(Act::QuickGelu)),
        c2(1, 9, 9, (7, 5), (3, 3), a(1, 0).groups(3).act(Act::Tanh)).f32(),
        c2(1, 1, 3, (1, 5), (1, 3), Conv2dArgs { padding: (0, 2), dilation: (1, 3), ..a(1, 0) }),
        c2(1, 3, 5, (7, 17), (5, 3), Conv2dArgs { stride: (2, 1), padding: (2, 1), dilation: (2, 1), ..a(1, 0) }),
        c2(3, 7, 35, (9, 11), (3, 3), a(1, 1)).f32(),
        c2(1, 4, 3, (11, 13), (11, 1), Conv2dArgs { stride: (1, 3), padding: (5, 0), ..a(1, 0) }),
    ];
    for (i, c) in cases.iter().enumerate() {
        check_conv2d(gpu, i, c).await?;
    }
    Ok(())
}

struct C1 {
    n: usize,
    cin: usize,
    cout: usize,
    l: usize,
    k: usize,
    args: Conv1dArgs,
    bias: bool,
    dtype: WeightDtype,
}

async fn check_conv1d(gpu: &Gpu, i: usize, c: &C1) -> R {
    let g = c.args.groups;
    let xs = [c.n, c.cin, c.l];
    let xv = rand(4000 + i as u64, xs.iter().product());
    let x = Tensor::from_slice(gpu, &xv, xs.to_vec()).map_err(e)?;
    let (w, wh) = weight(gpu, 5000 + i as u64, &[c.cout, c.cin / g, c.k], c.cin / g * c.k, c.dtype)?;
    let bv = rand(6000 + i as u64, c.cout);
    let b = Tensor::from_slice(gpu, &bv, [c.cout]).map_err(e)?;
    let want = cr::conv1d(&HostTensor::new(xs.to_vec(), xv).map_err(e)?, &wh, c.bias.then_some(&bv[..]), &c.args);
    for kernel in [ConvKernel::Auto, ConvKernel::General, ConvKernel::Naive, ConvKernel::Split(3)] {
        let what = format!("conv1d case {i} {kernel:?} x{xs:?} k{} {:?} bias={} {:?}", c.k, c.args, c.bias, c.dtype);
        let y = x.conv1d_with(&w, c.bias.then_some(&b), &c.args, kernel).map_err(|err| format!("{what}: {err}"))?;
        if y.shape() != want.shape.as_slice() {
            return Err(format!("{what}: shape {:?}, expected {:?}", y.shape(), want.shape));
        }
        assert_close(&what, &y.to_vec().await.map_err(e)?, &want.data, CONV)?;
    }
    Ok(())
}

pub async fn conv1d_all(gpu: &Gpu) -> R {
    let f16 = WeightDtype::F16;
    let f32 = WeightDtype::F32;
    let a = Conv1dArgs::new;
    let c = |n, cin, cout, l, k, args, bias, dtype| C1 { n, cin, cout, l, k, args, bias, dtype };
    let cases = [
        c(1, 1, 1, 1, 1, a(1, 0), true, f16),
        // HiFi-GAN resblock convs: k 3/7/11 with dilation 1/3/5, "same" padding.
        c(1, 5, 7, 37, 3, a(1, 1), true, f16),
        c(2, 3, 4, 100, 7, a(1, 9).dilation(3), true, f32),
        c(1, 4, 4, 200, 11, a(1, 25).dilation(5).act(Act::Tanh), true, f16),
        c(1, 6, 9, 50, 5, a(2, 2).groups(3), false, f16),
        c(1, 5, 3, 17, 4, a(3, 2).act(Act::Silu), true, f32),
        // conv_pre-like (k7, pad 3) with more channels than one tile.
        c(1, 7, 33, 41, 7, a(1, 3), true, f16),
        c(2, 4, 2, 9, 3, a(1, 0).dilation(2).groups(2), true, f16),
    ];
    for (i, cs) in cases.iter().enumerate() {
        check_conv1d(gpu, i, cs).await?;
    }
    Ok(())
}

struct CT {
    n: usize,
    cin: usize,
    cout: usize,
    l: usize,
    k: usize,
    args: ConvTranspose1dArgs,
    bias: bool,
    dtype: WeightDtype,
}

async fn check_conv_transpose1d(gpu: &Gpu, i: usize, c: &CT) -> R {
    let g = c.args.groups;
    let xs = [c.n, c.cin, c.l];
    let xv = rand(7000 + i as u64, xs.iter().product());
    let x = Tensor::from_slice(gpu, &xv, xs.to_vec()).map_err(e)?;
    let taps = (c.cin / g * c.k).div_ceil(c.args.stride);
    let (w, wh) = weight(gpu, 8000 + i as u64, &[c.cin, c.cout / g, c.k], taps, c.dtype)?;
    let bv = rand(9000 + i as u64, c.cout);
    let b = Tensor::from_slice(gpu, &bv, [c.cout]).map_err(e)?;
    let want = cr::conv_transpose1d(&HostTensor::new(xs.to_vec(), xv).map_err(e)?, &wh, c.bias.then_some(&bv[..]), &c.args);
    for kernel in [ConvKernel::Auto, ConvKernel::Naive] {
        let what = format!("conv_transpose1d case {i} {kernel:?} x{xs:?} k{} {:?} bias={} {:?}", c.k, c.args, c.bias, c.dtype);
        let y = x.conv_transpose1d_with(&w, c.bias.then_some(&b), &c.args, kernel).map_err(|err| format!("{what}: {err}"))?;
        if y.shape() != want.shape.as_slice() {
            return Err(format!("{what}: shape {:?}, expected {:?}", y.shape(), want.shape));
        }
        assert_close(&what, &y.to_vec().await.map_err(e)?, &want.data, CONV)?;
    }
    Ok(())
}

pub async fn conv_transpose1d_all(gpu: &Gpu) -> R {
    let f16 = WeightDtype::F16;
    let f32 = WeightDtype::F32;
    let a = ConvTranspose1dArgs::new;
    let c = |n, cin, cout, l, k, args, bias, dtype| CT { n, cin, cout, l, k, args, bias, dtype };
    let cases = [
        // Every HiFi-GAN upsampler (k, stride, padding), small channels.
        c(1, 5, 3, 7, 16, a(5, 5), true, f16),
        c(2, 6, 5, 13, 16, a(4, 6), true, f32),
        c(1, 7, 4, 11, 8, a(2, 3), false, f16),
        c(1, 4, 2, 9, 4, a(2, 1), true, f16),
        c(1, 3, 3, 40, 4, a(2, 1).act(Act::Silu), true, f32),
        c(1, 2, 3, 5, 3, a(2, 1).output_padding(1), true, f16),
        c(1, 4, 6, 10, 5, a(3, 2).dilation(2).groups(2), true, f16),
        c(1, 3, 2, 6, 3, a(1, 1), true, f32),
        c(1, 1, 1, 1, 1, a(1, 0), false, f16),
        c(1, 2, 9, 8, 7, a(3, 0).dilation(6).output_padding(2), true, f16),
        // More outputs of one phase than one invocation covers, and channels over one tile.
        c(1, 3, 9, 70, 4, a(2, 1), true, f16),
    ];
    for (i, cs) in cases.iter().enumerate() {
        check_conv_transpose1d(gpu, i, cs).await?;
    }
    Ok(())
}

fn expect_err<T: std::fmt::Debug>(what: &str, r: ssv2a::Result<T>) -> R {
    match r {
        Err(Error::Shape { .. } | Error::Arg { .. }) => Ok(()),
        other => Err(format!("{what}: expected a shape/argument error, got {other:?}")),
    }
}

/// A grid of more than 65 535 workgroups (folded into y by `Grid`): a depthwise
/// conv_transpose1d with dilation 64, where each output row takes 64 invocations (one per
/// residue mod 64), 2·34 000 rows.
pub async fn conv_grid_fold(gpu: &Gpu) -> R {
    let args = ConvTranspose1dArgs::new(1, 0).dilation(64).groups(34_000);
    let c = CT { n: 2, cin: 34_000, cout: 34_000, l: 1, k: 2, args, bias: true, dtype: WeightDtype::F16 };
    check_conv_transpose1d(gpu, 99, &c).await
}

pub async fn conv_errors(gpu: &Gpu) -> R {
    let f16 = WeightDtype::F16;
    let x = Tensor::from_slice(gpu, &rand(1, 2 * 6 * 5 * 5), [2, 6, 5, 5]).map_err(e)?;
    let w = |shape: &[usize]| Weight::from_f32(gpu, &vec![0.1; shape.iter().product()], shape.to_vec(), f16).map_err(e);
    let w3 = w(&[4, 6, 3, 3])?;
    let a = Conv2dArgs::new;
    expect_err("conv2d groups=4 with 6 channels", x.conv2d(&w(&[4, 1, 3, 3])?, None, &a(1, 1).groups(4)))?;
    expect_err("conv2d cout not divisible by groups", x.conv2d(&w(&[5, 3, 3, 3])?, None, &a(1, 1).groups(2)))?;
    expect_err("conv2d weight cin mismatch", x.conv2d(&w(&[4, 5, 3, 3])?, None, &a(1, 1)))?;
    expect_err("conv2d weight rank", x.conv2d(&w(&[4, 54])?, None, &a(1, 1)))?;
    expect_err("conv2d zero stride", x.conv2d(&w3, None, &a(0, 1)))?;
    expect_err("conv2d zero dilation", x.conv2d(&w3, None, &a(1, 1).dilation(0)))?;
    expect_err("conv2d groups 0", x.conv2d(&w3, None, &a(1, 1).groups(0)))?;
    expect_err("conv2d output ≤ 0", x.conv2d(&w(&[4, 6, 7, 7])?, None, &a(1, 0)))?;
    expect_err("conv2d dilated output ≤ 0", x.conv2d(&w3, None, &a(1, 0).dilation(3)))?;
    let b5 = Tensor::from_slice(gpu, &[0.0; 5], [5]).map_err(e)?;
    expect_err("conv2d bias shape", x.conv2d(&w3, Some(&b5), &a(1, 1)))?;
    expect_err("conv2d x rank", x.reshape([2, 6, 25]).map_err(e)?.conv2d(&w3, None, &a(1, 1)))?;
    expect_err("conv2d 3x3 kernel on stride 2", x.conv2d_with(&w3, None, &a(2, 1), ConvKernel::Patch3x3))?;

    let x1 = Tensor::from_slice(gpu, &rand(2, 6 * 10), [1, 6, 10]).map_err(e)?;
    let c1 = Conv1dArgs::new;
    expect_err("conv1d groups", x1.conv1d(&w(&[4, 2, 3])?, None, &c1(1, 1).groups(4)))?;
    expect_err("conv1d weight rank", x1.conv1d(&w(&[4, 6, 1, 3])?, None, &c1(1, 1)))?;
    expect_err("conv1d zero stride", x1.conv1d(&w(&[4, 6, 3])?, None, &c1(0, 1)))?;
    expect_err("conv1d output ≤ 0", x1.conv1d(&w(&[4, 6, 11])?, None, &c1(1, 0)))?;
    expect_err("conv1d on a 4-D tensor", x.conv1d(&w(&[4, 6, 3])?, None, &c1(1, 1)))?;

    let t = ConvTranspose1dArgs::new;
    let wt = w(&[6, 2, 4])?;
    expect_err("conv_transpose1d weight cin", x1.conv_transpose1d(&w(&[5, 2, 4])?, None, &t(2, 1)))?;
    expect_err("conv_transpose1d groups", x1.conv_transpose1d(&wt, None, &t(2, 1).groups(4)))?;
    expect_err("conv_transpose1d zero stride", x1.conv_transpose1d(&wt, None, &t(0, 1)))?;
    expect_err("conv_transpose1d output ≤ 0", x1.conv_transpose1d(&wt, None, &t(1, 20)))?;
    expect_err("conv_transpose1d output_padding ≥ stride", x1.conv_transpose1d(&wt, None, &t(2, 1).output_padding(2)))?;
    expect_err("conv_transpose1d bias", x1.conv_transpose1d(&wt, Some(&b5), &t(2, 1)))?;
    expect_err("conv_transpose1d 3x3 kernel", x1.conv_transpose1d_with(&wt, None, &t(2, 1), ConvKernel::Patch3x3))?;
    Ok(())
}
