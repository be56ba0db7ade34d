//! `ssv2a bench …`: benchmarks on the current adapter, each next to a baseline run in the same
//! process (kernels: tiled vs naive; UNet: profile and split-K/pass layouts; SSV2A: Box–Muller
//! and collapsed sampling; YOLO: without and with TTA; JPEG: the `image` crate's decoder; CLAP:
//! PyTorch CPU through tests/reference/bench_clap.py). The
//! library side lives in `ssv2a::bench`; figures go to tests/reference/RESULTS.md.

mod clap_towers;
mod heads;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchWhat {
    /// Matmul and convolution kernels at model shapes (GFLOP/s, tiled vs naive).
    Kernels {
        /// Timed repetitions per kernel (after one warm-up run).
        #[arg(long, default_value_t = 3)]
        reps: usize,
    },
    /// One full-size AudioLDM UNet step on random weights: time and peak GPU memory.
    Unet {
        /// Batch (2 = one item with guidance; 6 = SSV2A's 3 candidates with guidance).
        #[arg(long, default_value_t = 2)]
        batch: usize,
        /// Latent frames (256 = 10 s).
        #[arg(long, default_value_t = 256)]
        frames: usize,
        /// Weight storage: f16 or f32.
        #[arg(long, default_value = "f16")]
        dtype: String,
        /// Timed steps after one warm-up step.
        #[arg(long, default_value_t = 2)]
        reps: usize,
        /// Also print the device layer's work in the median step (dispatches, passes, bind
        /// groups, submits, waits; CPU recording / submitting / waiting time) and the GPU time
        /// of one more step from timestamp queries where the adapter has them.
        #[arg(long)]
        profile: bool,
        /// Baseline: record every dispatch in a compute pass of its own (the layout before
        /// 2026-12-04) instead of one shared pass.
        #[arg(long)]
        split_passes: bool,
        /// Split a conv/linear's reduction (split-K) when its grid has fewer workgroups than
        /// this; 0 never splits (the baseline). Default: the adapter's (1024 on GPUs, 0 on CPU
        /// adapters such as lavapipe).
        #[arg(long)]
        split_k_target: Option<u64>,
    },
    /// The CLIP ViT-L/14 vision tower (batch 1 and 17) and a full 65 × 64 Cycle Mix, with
    /// random weights at the real sizes.
    Ssv2a(heads::Args),
    /// CLAP's text tower (roberta-base, 512 tokens) and audio tower (HTSAT-tiny, 10 s clips,
    /// batch 1 and 3) with random weights at the released sizes.
    Clap(clap_towers::Args),
    /// YOLO forward time without and with TTA on random pixels.
    Yolo {
        /// A yolo pack (default: random yolov8x-oiv7 weights generated in memory).
        #[arg(long)]
        weights: Option<std::path::PathBuf>,
        /// Input side (pixels, a multiple of 32).
        #[arg(long, default_value_t = 640)]
        size: usize,
        /// Timed runs of each (after one warm-up run).
        #[arg(long, default_value_t = 2)]
        reps: usize,
        /// Also time every layer (GPU synced after each).
        #[arg(long)]
        profile: bool,
    },
    /// JPEG decoding on the CPU: ssv2a's libjpeg-exact decoder next to the `image` crate's
    /// (zune-jpeg) on the same file, in the same process.
    Jpeg {
        /// A JPEG file (default: a 4032×3024 synthetic photo with noise, 4:2:0, quality 90,
        /// encoded in memory).
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// Timed decodes of each (after one warm-up).
        #[arg(long, default_value_t = 5)]
        reps: usize,
    },
}

pub async fn run(what: BenchWhat) -> anyhow::Result<()> {
    match what {
        BenchWhat::Kernels { reps } => bench_kernels(reps).await,
        BenchWhat::Unet { batch, frames, dtype, reps, profile, split_passes, split_k_target } => {
            bench_unet(batch, frames, &dtype, reps, profile, split_passes, split_k_target).await
        }
        BenchWhat::Ssv2a(a) => heads::run(a).await,
        BenchWhat::Clap(a) => clap_towers::run(a).await,
        BenchWhat::Yolo { weights, size, reps, profile } => super::detect::bench(weights.as_deref(), size, reps, profile).await,
        BenchWhat::Jpeg { file, reps } => bench_jpeg(file.as_deref(), reps),
    }
}

fn bench_jpeg(file: Option<&std::path::Path>, reps: usize) -> anyhow::Result<()> {
    let bytes = match file {
        Some(p) => std::fs::read(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))?,
        None => {
            // A photo-like image: the demo scene with seeded noise (entropy decoding dominates
            // real photos; flat synthetic areas would flatter both decoders).
            let (w, h) = (4032, 3024);
            let mut img = ssv2a::pipeline::demo::scene(w, h);
            let mut rng = ssv2a::rng::Rng::new(3);
            for v in img.data.iter_mut() {
                *v = (*v as f64 + rng.normal() * 12.0).clamp(0.0, 255.0) as u8;
            }
            let mut out = std::io::Cursor::new(Vec::new());
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90).encode(&img.data, w as u32, h as u32, image::ExtendedColorType::Rgb8)?;
            out.into_inner()
        }
    };
    let name = file.map(|p| p.display().to_string()).unwrap_or_else(|| "synthetic 4032×3024 q90 4:2:0".into());
    let time = |f: &dyn Fn() -> anyhow::Result<Vec<u8>>| -> anyhow::Result<(f64, f64, Vec<u8>)> {
        let out = f()?;
        let mut t = vec![];
        for _ in 0..reps.max(1) {
            let s = std::time::Instant::now();
            std::hint::black_box(f()?);
            t.push(s.elapsed().as_secs_f64());
        }
        t.sort_by(f64::total_cmp);
        Ok((t[0], t[t.len() / 2], out))
    };
    let j = ssv2a::media::jpeg::decode(&bytes).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    let mp = (j.width * j.height) as f64 / 1e6;
    let (best, med, ours) = time(&|| Ok(ssv2a::media::jpeg::decode(&bytes).map_err(|e| anyhow::anyhow!(e))?.data))?;
    let (zbest, zmed, theirs) = time(&|| Ok(image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg)?.to_rgb8().into_raw()))?;
    println!("jpeg {name}: {}×{} ({:?}, {} bytes, progressive {})", j.width, j.height, j.layout, bytes.len(), j.progressive);
    println!("  ssv2a::media::jpeg (libjpeg-exact): best {:.1} ms, median {:.1} ms, {:.1} MP/s", best * 1e3, med * 1e3, mp / best);
    println!("  image crate (zune-jpeg):     best {:.1} ms, median {:.1} ms, {:.1} MP/s", zbest * 1e3, zmed * 1e3, mp / zbest);
    let diff = if ours.len() == theirs.len() {
        ours.iter().zip(&theirs).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0).to_string()
    } else {
        "n/a (layouts differ)".into()
    };
    println!("  ssv2a / image crate time: {:.2}x (best), {:.2}x (median); max |Δ| between their pixels {diff}", best / zbest, med / zmed);
    Ok(())
}

async fn bench_unet(
    batch: usize,
    frames: usize,
    dtype: &str,
    reps: usize,
    profile: bool,
    split_passes: bool,
    split_k_target: Option<u64>,
) -> anyhow::Result<()> {
    let f16 = match dtype {
        "f16" => true,
        "f32" => false,
        other => anyhow::bail!("--dtype must be f16 or f32, not `{other}`"),
    };
    let gpu = ssv2a::Gpu::new().await?;
    gpu.set_split_passes(split_passes);
    gpu.set_parallel_target(split_k_target);
    println!(
        "adapter: {} ({:?}); {}; split-K below {} workgroups",
        gpu.info().name,
        gpu.info().backend,
        if split_passes { "a compute pass per dispatch (baseline)" } else { "one compute pass per submit" },
        gpu.parallel_target()
    );
    let cfg = ssv2a::models::audioldm::unet::UnetConfig::s_full_v2();
    let r = ssv2a::bench::unet::unet_step(&gpu, &cfg, batch, frames, f16, reps, profile, ssv2a::bench::native_now).await?;
    println!("{r}");
    Ok(())
}

async fn bench_kernels(reps: usize) -> anyhow::Result<()> {
    use ssv2a::WeightDtype::{F16, F32};
    let gpu = ssv2a::Gpu::new().await?;
    let info = gpu.info();
    println!("adapter: {} ({:?})", info.name, info.backend);
    let now = ssv2a::bench::native_now;
    for (m, n, k, dt) in [(1024, 1024, 1024, F16), (1024, 1024, 1024, F32), (4096, 640, 1280, F16)] {
        println!("{}", ssv2a::bench::matmul(&gpu, m, n, k, dt, reps, now).await?);
    }
    for line in ssv2a::bench::conv::standard(&gpu, reps, now).await? {
        println!("{line}");
    }
    Ok(())
}
