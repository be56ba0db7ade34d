//! `ssv2a bench ssv2a`: the CLIP ViT-L/14 vision tower (batch 1 and 17) and a full Cycle Mix
//! (65 rounds × 64 candidates × 64 samples) with seeded random weights at the real sizes.
//!
//! Timing: one warm-up run (pipeline compilation; on lavapipe LLVM compiles each pipeline on
//! first use), then `reps` timed runs, each ending with a readback (so the GPU work is done).
//! The load average is printed before and after: on a shared machine other processes take
//! CPU from lavapipe and the numbers are only as good as the load was low.

use std::collections::BTreeMap;
use std::time::Instant;

use ssv2a::models::clip::{self, ClipVision};
use ssv2a::models::ssv2a::{self as m, CycleMixOptions, Draw, MixInput, Noise, RemixMode, Ssv2a};
use ssv2a::rng::Rng;
use ssv2a::{Gpu, Tensor, Weights};

#[derive(clap::Args)]
pub struct Args {
    /// Timed repetitions after one warm-up run.
    #[arg(long, default_value_t = 2)]
    reps: usize,
    /// Store matrices as f16 (the default packs) or f32.
    #[arg(long, default_value = "f16")]
    dtype: String,
    /// CLIP batch sizes to time.
    #[arg(long, value_delimiter = ',', default_value = "1,17")]
    clip_batches: Vec<usize>,
    /// Cycle Mix rounds − 1 (official 64); 0 skips Cycle Mix.
    #[arg(long, default_value_t = 64)]
    cycle_its: usize,
    /// Also time the literal per-candidate shuffled remixer for this many rounds − 1.
    #[arg(long)]
    shuffled_its: Option<usize>,
    /// Also time Cycle Mix with collapsed sampling (one draw with std/√N instead of the
    /// average of N draws; the same distribution).
    #[arg(long)]
    collapsed: bool,
    /// Also time Cycle Mix with the Box–Muller normals this crate used before the ziggurat
    /// (the baseline for the sampling cost, same process).
    #[arg(long)]
    box_muller: bool,
    /// Detected sources in the Cycle Mix scene (the detector keeps at most 16).
    #[arg(long, default_value_t = 16)]
    sources: usize,
    /// Also report the cosine similarity of fp16-stored weights to f32 ones (same random
    /// weights) for the CLIP tower and each SSV2A module.
    #[arg(long)]
    cosines: bool,
}

/// The baseline normal generator: Box–Muller in f64 on the same xoshiro stream (both values of
/// each pair used), as `Rng::normal` was before the ziggurat.
struct BoxMuller(Rng, Option<f64>);

impl BoxMuller {
    fn normal(&mut self) -> f64 {
        if let Some(v) = self.1.take() {
            return v;
        }
        let u1 = loop {
            let u = self.0.uniform();
            if u > 0.0 {
                break u;
            }
        };
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (2.0 * std::f64::consts::PI * self.0.uniform()).sin_cos();
        self.1 = Some(r * s);
        r * c
    }
}

impl Noise for BoxMuller {
    fn normals(&mut self, _: Draw, n: usize) -> ssv2a::Result<Vec<f32>> {
        Ok((0..n).map(|_| self.normal() as f32).collect())
    }
    fn permutation(&mut self, d: Draw, n: usize) -> ssv2a::Result<Vec<usize>> {
        Noise::permutation(&mut self.0, d, n)
    }
    fn uniforms(&mut self, d: Draw, n: usize) -> ssv2a::Result<Vec<f32>> {
        Noise::uniforms(&mut self.0, d, n)
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_else(|_| "?".into())
}

fn stats(mut t: Vec<f64>) -> String {
    t.sort_by(f64::total_cmp);
    format!("best {:.3} s, median {:.3} s over {}", t[0], t[t.len() / 2], t.len())
}

/// CPU seconds (user + system) this process has used, from /proc (lavapipe's threads run in
/// the process, so on a CPU adapter this is the compute cost regardless of other load).
fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit_once(')').map(|r| r.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (tick(11) + tick(12)) / 100.0
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let f16 = match a.dtype.as_str() {
        "f16" => true,
        "f32" => false,
        other => anyhow::bail!("--dtype must be f16 or f32, not `{other}`"),
    };
    let gpu = Gpu::new().await?;
    let info = gpu.info();
    println!("adapter: {} ({:?}); weights {}; load average at start: {}", info.name, info.backend, a.dtype, load());
    let reps = a.reps.max(1);
    if a.cosines {
        cosines(&gpu).await?;
    }

    let cfg = clip::Config::vit_l14();
    let w = Weights::random(&gpu, clip::KIND, &serde_json::to_string(&cfg)?, 1, f16, BTreeMap::new());
    let model = ClipVision::load(&w)?;
    let mut rng = Rng::new(7);
    let mut warmed = false;
    for &b in &a.clip_batches {
        let x = Tensor::from_slice(&gpu, &rng.normals(b * 3 * 224 * 224), [b, 3, 224, 224])?;
        // Warm-up (pipeline compilation) once, on the first batch size.
        let t0 = Instant::now();
        if !warmed {
            model.forward(&x, None)?.to_vec().await?;
            warmed = true;
        }
        let warm = t0.elapsed().as_secs_f64();
        let mut times = vec![];
        let c0 = cpu_seconds();
        for _ in 0..reps {
            let t0 = Instant::now();
            model.forward(&x, None)?.to_vec().await?;
            times.push(t0.elapsed().as_secs_f64());
        }
        let cpu = (cpu_seconds() - c0) / reps as f64;
        let best = times.iter().cloned().fold(f64::INFINITY, f64::min);
        let gflop = clip_gflop(&cfg, b);
        println!(
            "clip ViT-L/14 batch {b:>2}: {} ({:.3} s/image, {:.1} GFLOP/s); process CPU {cpu:.2} s per run; warm-up {warm:.2} s; load {}",
            stats(times),
            best / b as f64,
            gflop / best,
            load()
        );
    }
    drop(model);

    if a.cycle_its > 0 || a.shuffled_its.is_some() {
        let cfg = m::Config::official();
        let w = Weights::random(&gpu, m::KIND, &serde_json::to_string(&cfg)?, 2, f16, BTreeMap::new());
        let model = Ssv2a::load(&w)?;
        let unit = |rng: &mut Rng, n: usize| {
            let v = rng.normals(n);
            let s = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / s).collect::<Vec<f32>>()
        };
        let global = unit(&mut rng, 768);
        let srcs: Vec<Vec<f32>> = (0..a.sources).map(|_| unit(&mut rng, 768)).collect();
        let refs: Vec<&[f32]> = srcs.iter().map(|s| s.as_slice()).collect();
        let input = MixInput::image(&global, &refs, cfg.remixer.slot)?;
        if a.box_muller {
            // The normal generators alone: 2²⁴ values each, same process.
            let n = 1 << 24;
            let t0 = Instant::now();
            let z = Noise::normals(&mut Rng::new(5), Draw::new(m::DrawKind::Remix), n)?;
            let tz = t0.elapsed().as_secs_f64();
            let t0 = Instant::now();
            let b = BoxMuller(Rng::new(5), None).normals(Draw::new(m::DrawKind::Remix), n)?;
            let tb = t0.elapsed().as_secs_f64();
            anyhow::ensure!(z.len() == b.len());
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            println!(
                "normals: ziggurat in blocks on {threads} threads {:.2} ns/value, Box–Muller (one stream) {:.2} ns/value: {:.2}× faster",
                tz * 1e9 / n as f64,
                tb * 1e9 / n as f64,
                tb / tz
            );
        }
        let mut runs = vec![(RemixMode::Shared, a.cycle_its, false, false)];
        if a.box_muller {
            runs.push((RemixMode::Shared, a.cycle_its, false, true));
        }
        if a.collapsed {
            runs.push((RemixMode::Shared, a.cycle_its, true, false));
        }
        if let Some(s) = a.shuffled_its {
            runs.push((RemixMode::Shuffled, s, false, false));
        }
        let mut base_best = None;
        for (mode, its, collapsed, box_muller) in runs {
            if its == 0 && mode == RemixMode::Shared {
                continue;
            }
            let noise = |seed: u64| -> Box<dyn Noise> {
                if box_muller {
                    Box::new(BoxMuller(Rng::new(seed), None))
                } else {
                    Box::new(Rng::new(seed))
                }
            };
            let opts = CycleMixOptions { its, remix: mode, collapsed_sampling: collapsed, ..Default::default() };
            // warm-up: one round compiles every pipeline
            let warm = CycleMixOptions { its: 0, ..opts };
            let t0 = Instant::now();
            model.cycle_mix(&input, &warm, noise(3).as_mut(), None).await?;
            let first = t0.elapsed().as_secs_f64();
            let mut times = vec![];
            let c0 = cpu_seconds();
            for r in 0..reps {
                let t0 = Instant::now();
                let out = model.cycle_mix(&input, &opts, noise(42 + r as u64).as_mut(), None).await?;
                times.push(t0.elapsed().as_secs_f64());
                anyhow::ensure!(out.data.iter().all(|v| v.is_finite()), "non-finite Cycle Mix output");
            }
            let cpu = (cpu_seconds() - c0) / reps as f64;
            let best = times.iter().cloned().fold(f64::INFINITY, f64::min);
            let ratio = match (base_best, box_muller) {
                (Some(z), true) => format!("; ziggurat run {:.2}× faster", best / z),
                _ => String::new(),
            };
            if mode == RemixMode::Shared && !collapsed && !box_muller {
                base_best = Some(best);
            }
            println!(
                "cycle mix {mode:?}{}{}: {} rounds × {} candidates × {} samples, {} sources: {}; process CPU {cpu:.2} s per run; first round {first:.2} s; load {}{ratio}",
                if collapsed { " collapsed sampling" } else { "" },
                if box_muller { " Box–Muller normals (baseline)" } else { "" },
                its + 1,
                opts.samples,
                opts.var_samples,
                a.sources,
                stats(times),
                load()
            );
        }
    }
    Ok(())
}

/// Multiply-adds ×2 of the vision tower (patch embedding, attention projections, scores, MLP,
/// projection) for a batch of `b`.
fn clip_gflop(c: &clip::Config, b: usize) -> f64 {
    let (w, t, p) = (c.vision_width as f64, (c.grid() * c.grid() + 1) as f64, c.vision_patch_size as f64);
    let per_layer = 2.0 * t * (4.0 * w * w + 2.0 * 4.0 * w * w) + 2.0 * 2.0 * t * t * w;
    let total = 2.0 * (t - 1.0) * 3.0 * p * p * w + c.vision_layers as f64 * per_layer + 2.0 * w * c.embed_dim as f64;
    total * b as f64 / 1e9
}

/// Row-wise cosine similarity of two [rows, d] results.
fn row_cosines(a: &[f32], b: &[f32], d: usize) -> Vec<f64> {
    a.chunks(d)
        .zip(b.chunks(d))
        .map(|(x, y)| {
            let dot: f64 = x.iter().zip(y).map(|(p, q)| *p as f64 * *q as f64).sum();
            let n = |r: &[f32]| r.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
            dot / (n(x) * n(y))
        })
        .collect()
}

fn min_cos(v: &[f64]) -> String {
    let min = v.iter().cloned().fold(1.0, f64::min);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    format!("min {min:.7} (1 − cos = {:.1e}), mean {mean:.7}", 1.0 - min)
}

/// fp16 vs f32 weight storage at the real sizes, same random weights.
async fn cosines(gpu: &Gpu) -> anyhow::Result<()> {
    let mut rng = Rng::new(11);
    let cfg = clip::Config::vit_l14();
    let x = Tensor::from_slice(gpu, &rng.normals(2 * 3 * 224 * 224), [2, 3, 224, 224])?;
    let mut out = vec![];
    for f16 in [false, true] {
        let w = Weights::random(gpu, clip::KIND, &serde_json::to_string(&cfg)?, 1, f16, BTreeMap::new());
        out.push(ClipVision::load(&w)?.forward(&x, None)?.to_vec().await?);
    }
    println!("fp16 vs f32 weights, clip ViT-L/14 image_embeds: cosine {}", min_cos(&row_cosines(&out[0], &out[1], 768)));
    let cfg = m::Config::official();
    let clips = Tensor::from_slice(gpu, &rng.normals(64 * 768), [1, 64, 768])?.l2_normalize()?;
    let claps = Tensor::from_slice(gpu, &rng.normals(64 * 512), [1, 64, 512])?.l2_normalize()?;
    let codes = Tensor::from_slice(gpu, &rng.normals(64 * 768), [1, 64, 768])?;
    let mut res: Vec<Vec<Vec<f32>>> = vec![];
    for f16 in [false, true] {
        let w = Weights::random(gpu, m::KIND, &serde_json::to_string(&cfg)?, 2, f16, BTreeMap::new());
        let model = Ssv2a::load(&w)?;
        let mut r = vec![];
        for (mu, lv) in [
            model.manifold.encode_clips(&clips, None)?,
            model.manifold.encode_claps(&claps, None)?,
            model.generator.forward(&codes, None)?,
            model.remixer.forward(&codes, &clips, None)?,
        ] {
            r.push(mu.to_vec().await?);
            r.push(lv.to_vec().await?);
        }
        res.push(r);
    }
    let names = ["manifold-clip", "manifold-clap", "generator", "remixer"];
    for (i, name) in names.iter().enumerate() {
        let d = if i < 2 { 768 } else { 512 };
        println!(
            "fp16 vs f32 weights, {name}: mu cosine {}; logvar cosine {}",
            min_cos(&row_cosines(&res[0][2 * i], &res[1][2 * i], d)),
            min_cos(&row_cosines(&res[0][2 * i + 1], &res[1][2 * i + 1], d))
        );
    }
    Ok(())
}
