//! Convolution benchmarks: the tiled kernels against the textbook one-output-per-invocation
//! entries (`conv2d_naive`, `conv_transpose1d_naive`, kept in `shaders/conv.wgsl` for scale),
//! on the same inputs in the same process. Called by `ssv2a bench kernels`.
//!
//! Timing: one warm-up run per kernel (pipeline compile + first dispatch), then `reps` runs
//! recorded back to back and closed with `gpu.sync().await`; the time per run is the mean. The
//! clock is the caller's `now()` in seconds (e.g. `std::time::Instant` natively,
//! `performance.now() / 1000` in a browser), so this module has no platform code.
//! The tiled result is also compared with the naive one (max abs difference) as a sanity check.

use crate::ops::conv::{Conv1dArgs, Conv2dArgs, ConvKernel, ConvTranspose1dArgs};
use crate::rng::Rng;
use crate::tensor::{Tensor, Weight, WeightDtype};
use crate::{Gpu, Result};

/// One benchmarked shape.
#[derive(Clone, Debug)]
pub struct BenchLine {
    /// e.g. `conv2d 3x3 640->640 2x32x4`
    pub name: String,
    /// Useful floating-point operations of one run (2 per multiply-add).
    pub flop: f64,
    /// Mean seconds per run of the kernel `Auto` picks.
    pub secs: f64,
    /// Mean seconds per run of the naive kernel.
    pub naive_secs: f64,
    /// Entry `Auto` picked.
    pub kernel: &'static str,
    /// max |tiled − naive| over the output.
    pub max_diff: f32,
}

impl BenchLine {
    pub fn gflops(&self) -> f64 {
        self.flop / self.secs / 1e9
    }
    pub fn naive_gflops(&self) -> f64 {
        self.flop / self.naive_secs / 1e9
    }
}

impl std::fmt::Display for BenchLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<44} {:>8.2} GFLOP/s ({:>9.2} ms, {:<16}) naive {:>7.2} GFLOP/s ({:>9.2} ms) x{:<5.1} maxdiff {:.1e}",
            self.name,
            self.gflops(),
            self.secs * 1e3,
            self.kernel,
            self.naive_gflops(),
            self.naive_secs * 1e3,
            self.naive_secs / self.secs,
            self.max_diff
        )
    }
}

fn rand(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    Rng::new(seed).uniforms(n, -scale, scale)
}

async fn time(gpu: &Gpu, reps: usize, now: fn() -> f64, f: &dyn Fn() -> Result<Tensor>) -> Result<(f64, Tensor)> {
    let warm = f()?;
    gpu.sync().await?;
    let t0 = now();
    for _ in 0..reps.max(1) {
        drop(f()?);
    }
    gpu.sync().await?;
    Ok(((now() - t0) / reps.max(1) as f64, warm))
}

async fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    let (a, b) = (a.to_vec().await?, b.to_vec().await?);
    Ok(a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max))
}

/// Which entry `Auto` runs for a conv2d of this shape (for the report).
fn auto_name(k: usize, stride: usize, dil: usize, one_d: bool) -> &'static str {
    if !one_d && k == 3 && stride == 1 && dil == 1 {
        "conv2d_3x3"
    } else {
        "conv2d"
    }
}

/// k×k conv2d, stride 1, padding k/2, with bias: x [n, cin, h, w] -> [n, cout, h, w].
#[allow(clippy::too_many_arguments)]
pub async fn conv2d(
    gpu: &Gpu,
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    k: usize,
    dtype: WeightDtype,
    reps: usize,
    now: fn() -> f64,
) -> Result<BenchLine> {
    let x = Tensor::from_slice(gpu, &rand(1, n * cin * h * w, 1.0), [n, cin, h, w])?;
    let wscale = 1.0 / ((cin * k * k) as f32).sqrt();
    let wt = Weight::from_f32(gpu, &rand(2, cout * cin * k * k, wscale), [cout, cin, k, k], dtype)?;
    let b = Tensor::from_slice(gpu, &rand(3, cout, 0.1), [cout])?;
    let args = Conv2dArgs::new(1, k / 2);
    let (secs, fast) = time(gpu, reps, now, &|| x.conv2d(&wt, Some(&b), &args)).await?;
    let (naive_secs, slow) = time(gpu, reps, now, &|| x.conv2d_with(&wt, Some(&b), &args, ConvKernel::Naive)).await?;
    let [_, _, ho, wo] = fast.dims("bench")?;
    Ok(BenchLine {
        name: format!("conv2d {k}x{k} {cin}->{cout} {n}x{h}x{w} {dtype:?}"),
        flop: 2.0 * (n * cout * ho * wo * cin * k * k) as f64,
        secs,
        naive_secs,
        kernel: auto_name(k, 1, 1, false),
        max_diff: max_diff(&fast, &slow).await?,
    })
}

/// conv1d with kernel k, dilation d, stride 1, "same" padding d·(k−1)/2, with bias.
#[allow(clippy::too_many_arguments)]
pub async fn conv1d(
    gpu: &Gpu,
    n: usize,
    cin: usize,
    cout: usize,
    l: usize,
    k: usize,
    dilation: usize,
    dtype: WeightDtype,
    reps: usize,
    now: fn() -> f64,
) -> Result<BenchLine> {
    let x = Tensor::from_slice(gpu, &rand(4, n * cin * l, 1.0), [n, cin, l])?;
    let wscale = 1.0 / ((cin * k) as f32).sqrt();
    let wt = Weight::from_f32(gpu, &rand(5, cout * cin * k, wscale), [cout, cin, k], dtype)?;
    let b = Tensor::from_slice(gpu, &rand(6, cout, 0.1), [cout])?;
    let args = Conv1dArgs::new(1, dilation * (k - 1) / 2).dilation(dilation);
    let (secs, fast) = time(gpu, reps, now, &|| x.conv1d(&wt, Some(&b), &args)).await?;
    let (naive_secs, slow) = time(gpu, reps, now, &|| x.conv1d_with(&wt, Some(&b), &args, ConvKernel::Naive)).await?;
    let [_, _, lo] = fast.dims("bench")?;
    Ok(BenchLine {
        name: format!("conv1d k{k} d{dilation} {cin}->{cout} {n}x{l} {dtype:?}"),
        flop: 2.0 * (n * cout * lo * cin * k) as f64,
        secs,
        naive_secs,
        kernel: auto_name(k, 1, dilation, true),
        max_diff: max_diff(&fast, &slow).await?,
    })
}

/// conv_transpose1d (PyTorch layout weight [cin, cout, k]) with bias.
#[allow(clippy::too_many_arguments)]
pub async fn conv_transpose1d(
    gpu: &Gpu,
    n: usize,
    cin: usize,
    cout: usize,
    l: usize,
    k: usize,
    stride: usize,
    padding: usize,
    dtype: WeightDtype,
    reps: usize,
    now: fn() -> f64,
) -> Result<BenchLine> {
    let x = Tensor::from_slice(gpu, &rand(7, n * cin * l, 1.0), [n, cin, l])?;
    let wscale = 1.0 / ((cin * k / stride) as f32).sqrt();
    let wt = Weight::from_f32(gpu, &rand(8, cin * cout * k, wscale), [cin, cout, k], dtype)?;
    let b = Tensor::from_slice(gpu, &rand(9, cout, 0.1), [cout])?;
    let args = ConvTranspose1dArgs::new(stride, padding);
    let (secs, fast) = time(gpu, reps, now, &|| x.conv_transpose1d(&wt, Some(&b), &args)).await?;
    let (naive_secs, slow) = time(gpu, reps, now, &|| x.conv_transpose1d_with(&wt, Some(&b), &args, ConvKernel::Naive)).await?;
    Ok(BenchLine {
        name: format!("conv_transpose1d k{k} s{stride} p{padding} {cin}->{cout} {n}x{l} {dtype:?}"),
        // Every input sample meets every tap once: useful work is n·cin·cout·l·k multiply-adds.
        flop: 2.0 * (n * cin * cout * l * k) as f64,
        secs,
        naive_secs,
        kernel: "conv_transpose1d",
        max_diff: max_diff(&fast, &slow).await?,
    })
}

/// The shapes `ssv2a bench kernels` reports (AudioLDM UNet/VAE, HiFi-GAN), fp16 weights.
pub async fn standard(gpu: &Gpu, reps: usize, now: fn() -> f64) -> Result<Vec<BenchLine>> {
    let f = WeightDtype::F16;
    Ok(vec![
        conv2d(gpu, 2, 640, 640, 32, 4, 3, f, reps, now).await?,
        conv2d(gpu, 6, 640, 640, 32, 4, 3, f, reps, now).await?,
        conv2d(gpu, 1, 512, 512, 256, 16, 3, f, reps, now).await?,
        conv2d(gpu, 1, 128, 128, 1024, 64, 3, f, reps, now).await?,
        conv_transpose1d(gpu, 1, 1024, 512, 1024, 16, 5, 5, f, reps, now).await?,
        conv1d(gpu, 1, 32, 32, 163_872, 11, 5, f, reps, now).await?,
    ])
}
