//! Kernel benchmarks (`ssv2a bench kernels`): GFLOP/s of the matmul kernels on the current
//! adapter, the tiled kernel against the naive one in the same process.
//!
//! Timing: one warm-up run (pipeline compilation, LLVM on lavapipe), then `reps` timed runs,
//! each one dispatch followed by [`Gpu::sync`]; best and median are reported. The clock is a
//! parameter because wasm32 has no `std::time` ([`native_now`] natively; in a browser pass a
//! function around `performance.now() / 1000`).

pub mod conv;
pub mod unet;

use crate::device::{Counters, DispatchTime, TimerMode};
use crate::ops::matmul::{reference, MatmulKernel};
use crate::ops::Act;
use crate::rng::Rng;
use crate::tensor::{Tensor, Weight, WeightDtype};
use crate::{Error, Gpu, Result};

/// Seconds since an arbitrary origin ([`crate::clock::now_s`]).
#[cfg(not(target_arch = "wasm32"))]
pub fn native_now() -> f64 {
    crate::clock::now_s()
}

/// What the device layer did during one timed run (a UNet step, say) and where the GPU time
/// went: `ssv2a bench … --profile`.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    /// Wall time of the run the counters come from.
    pub wall_s: f64,
    pub counters: Counters,
    /// From a separate run with GPU timestamps; `None` where the adapter has none.
    pub gpu: Option<GpuTimes>,
}

/// GPU time of one run from timestamp queries.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuTimes {
    pub mode: TimerMode,
    pub dispatches: usize,
    /// Sum of the dispatches' times.
    pub busy_s: f64,
    /// First start to last end.
    pub span_s: f64,
    /// Per entry point: (name, dispatches, seconds, workgroups), most time first.
    pub by_entry: Vec<(&'static str, usize, f64, u64)>,
}

impl GpuTimes {
    pub fn new(mode: TimerMode, times: &[DispatchTime]) -> GpuTimes {
        let mut by_entry: Vec<(&'static str, usize, f64, u64)> = vec![];
        let mut busy_s = 0.0;
        for d in times {
            let s = ((d.end_ns - d.start_ns) * 1e-9).max(0.0);
            let wg = d.groups.iter().map(|&g| g as u64).product::<u64>();
            busy_s += s;
            match by_entry.iter_mut().find(|e| e.0 == d.entry) {
                Some(e) => {
                    e.1 += 1;
                    e.2 += s;
                    e.3 += wg;
                }
                None => by_entry.push((d.entry, 1, s, wg)),
            }
        }
        by_entry.sort_by(|a, b| b.2.total_cmp(&a.2));
        let first = times.iter().map(|d| d.start_ns).fold(f64::INFINITY, f64::min);
        let last = times.iter().map(|d| d.end_ns).fold(f64::NEG_INFINITY, f64::max);
        let span_s = if times.is_empty() { 0.0 } else { (last - first) * 1e-9 };
        GpuTimes { mode, dispatches: times.len(), busy_s, span_s, by_entry }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.counters;
        let ms = |s: f64| s * 1e3;
        let per = |s: f64, n: u64| if n == 0 { 0.0 } else { s * 1e6 / n as f64 };
        writeln!(
            f,
            "  device work: {} dispatches in {} compute passes, {} bind groups created, {} pipelines compiled, {} submits, {} waits; \
             buffers: {} from the pool, {} created; {} uploads ({:.2} MB), {:.1} KB of uniforms, {} copies",
            c.dispatches,
            c.passes,
            c.bind_groups,
            c.pipelines,
            c.submits,
            c.waits,
            c.pool_hits,
            c.buffers_created,
            c.uploads,
            c.upload_bytes as f64 / 1e6,
            c.uniform_bytes as f64 / 1e3,
            c.copies
        )?;
        write!(
            f,
            "  CPU: recording {:.1} ms ({:.1} µs per dispatch), submitting {:.1} ms, waiting for the GPU {:.1} ms, rest {:.1} ms (of {:.1} ms wall)",
            ms(c.encode_s),
            per(c.encode_s, c.dispatches),
            ms(c.submit_s),
            ms(c.wait_s),
            ms(self.wall_s - c.encode_s - c.submit_s - c.wait_s),
            ms(self.wall_s)
        )?;
        match &self.gpu {
            None => write!(f, "\n  GPU: no timestamp queries on this adapter"),
            Some(g) => {
                let how = match g.mode {
                    TimerMode::InsidePasses => "timestamps inside the pass, each dispatch from the previous one's end",
                    TimerMode::PassPerDispatch => "a pass per dispatch with begin/end timestamps",
                };
                write!(
                    f,
                    "\n  GPU ({how}; a separate run): {} dispatches, span {:.1} ms, busy {:.1} ms, gaps {:.1} ms ({:.1} µs per dispatch)",
                    g.dispatches,
                    ms(g.span_s),
                    ms(g.busy_s),
                    ms(g.span_s - g.busy_s),
                    per(g.busy_s, g.dispatches as u64)
                )?;
                for (name, n, s, wg) in g.by_entry.iter().take(12) {
                    write!(
                        f,
                        "\n    {name:<24} {n:>5}× {:>8.2} ms  ({:>7.1} µs each, {:>7.0} workgroups each)",
                        ms(*s),
                        per(*s, *n as u64),
                        *wg as f64 / *n as f64
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// Best and median wall time of the timed runs of one kernel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    pub best_s: f64,
    pub median_s: f64,
    /// 2·m·n·k / best time, in GFLOP/s.
    pub gflops: f64,
}

impl Timing {
    fn from_runs(mut t: Vec<f64>, flops: f64) -> Timing {
        t.sort_by(f64::total_cmp);
        let best_s = t[0];
        let median_s = t[t.len() / 2];
        Timing { best_s, median_s, gflops: flops / best_s / 1e9 }
    }
}

/// One benchmarked shape: `linear` of x [m, k] with a weight [n, k].
#[derive(Clone, Debug, PartialEq)]
pub struct BenchLine {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub dtype: WeightDtype,
    pub reps: usize,
    pub tiled: Timing,
    pub naive: Timing,
    /// Largest |GPU − CPU| / (1 + |CPU|) over 32 sampled outputs of the tiled kernel.
    pub max_err: f64,
}

impl std::fmt::Display for BenchLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dt = match self.dtype {
            WeightDtype::F16 => "f16",
            WeightDtype::F32 => "f32",
        };
        write!(
            f,
            "linear {}x{}x{} (m x n x k) {dt} weights: tiled {:.1} GFLOP/s (best {:.1} ms, median {:.1} ms) | naive {:.2} GFLOP/s (best {:.1} ms) | {:.1}x | {} reps, max err {:.1e}",
            self.m,
            self.n,
            self.k,
            self.tiled.gflops,
            self.tiled.best_s * 1e3,
            self.tiled.median_s * 1e3,
            self.naive.gflops,
            self.naive.best_s * 1e3,
            self.tiled.gflops / self.naive.gflops,
            self.reps,
            self.max_err
        )
    }
}

async fn time_kernel(x: &Tensor, w: &Weight, kernel: MatmulKernel, reps: usize, now: fn() -> f64) -> Result<(Vec<f64>, Tensor)> {
    let gpu = x.gpu();
    // Warm-up: compiles the pipeline.
    let mut y = x.linear_with(w, None, Act::None, kernel)?;
    gpu.sync().await?;
    let mut t = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        drop(y);
        let t0 = now();
        y = x.linear_with(w, None, Act::None, kernel)?;
        gpu.sync().await?;
        t.push(now() - t0);
    }
    Ok((t, y))
}

/// Time `linear` of a random x [m, k] with a random weight [n, k] stored as `dtype`: the tiled
/// kernel and the naive baseline, `reps` timed runs each after one warm-up. Checks 32 sampled
/// outputs against an f64 dot product (an error if any is off by more than 1e-3 relative).
pub async fn matmul(gpu: &Gpu, m: usize, n: usize, k: usize, dtype: WeightDtype, reps: usize, now: fn() -> f64) -> Result<BenchLine> {
    let mut rng = Rng::new(0x5eed);
    let xs = rng.uniforms(m * k, -1.0, 1.0);
    let ws = rng.uniforms(n * k, -1.0, 1.0);
    let x = Tensor::from_slice(gpu, &xs, [m, k])?;
    let w = Weight::from_f32(gpu, &ws, [n, k], dtype)?;
    let flops = 2.0 * m as f64 * n as f64 * k as f64;
    let (tt, y) = time_kernel(&x, &w, MatmulKernel::Tiled, reps, now).await?;
    let got = y.to_vec().await?;
    drop(y);
    let (tn, _) = time_kernel(&x, &w, MatmulKernel::Naive, reps, now).await?;

    let wr = if dtype == WeightDtype::F16 { reference::round_f16(&ws) } else { ws };
    let mut max_err = 0f64;
    for _ in 0..32 {
        let (i, j) = (rng.below(m as u64) as usize, rng.below(n as u64) as usize);
        let want: f64 = (0..k).map(|kk| xs[i * k + kk] as f64 * wr[j * k + kk] as f64).sum();
        max_err = max_err.max((got[i * n + j] as f64 - want).abs() / (1.0 + want.abs()));
    }
    if max_err > 1e-3 {
        return Err(Error::arg("bench matmul", format!("tiled result is wrong: max relative error {max_err:.3e}")));
    }
    Ok(BenchLine { m, n, k, dtype, reps, tiled: Timing::from_runs(tt, flops), naive: Timing::from_runs(tn, flops), max_err })
}
