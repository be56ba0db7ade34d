//! Subcommands of the `ssv2a` binary. File formats, progress output and argument parsing live
//! here; model logic lives in the library.

mod convert;
mod detect;
mod stage;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ssv2a",
    version,
    about = "SSV2A (sound source-aware vision-to-audio generation) on any GPU",
    long_about = "ssv2a turns pictures of a scene into the sound of that scene, running every stage of the \
official SSV2A model as WGSL kernels on your GPU (Vulkan, Metal, DX12; or WebGPU in a browser).\n\n\
Weights: convert the official checkpoints once with `ssv2a convert` (no Python needed)."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show the GPU adapter, backend, limits and features ssv2a would use.
    Info,
    /// Convert an official checkpoint into a weight pack (fp16 by default).
    Convert(convert::Args),
    /// Run one model stage on tensors from a safetensors file (for parity checks).
    Stage(stage::Args),
    /// Find the sound sources in images (YOLOv8 as SSV2A runs it) and print them.
    Detect(detect::Args),
    /// Benchmarks on the current adapter, as ratios against a baseline run in the same process.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Matmul and convolution kernels at model shapes (GFLOP/s, tiled vs naive).
    Kernels {
        /// Timed repetitions per kernel (after one warm-up run).
        #[arg(long, default_value_t = 3)]
        reps: usize,
    },
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
}

pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match pollster::block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Info => {
            let gpu = ssv2a::Gpu::new().await?;
            println!("{}", gpu.info());
            Ok(())
        }
        Cmd::Convert(a) => convert::run(a),
        Cmd::Stage(a) => stage::run(a).await,
        Cmd::Detect(a) => detect::run(a).await,
        Cmd::Bench { what: BenchWhat::Kernels { reps } } => bench_kernels(reps).await,
        Cmd::Bench { what: BenchWhat::Yolo { weights, size, reps, profile } } => detect::bench(weights.as_deref(), size, reps, profile).await,
    }
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
    for line in ssv2a::bench_conv::standard(&gpu, reps, now).await? {
        println!("{line}");
    }
    Ok(())
}
