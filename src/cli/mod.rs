//! Subcommands of the `ssv2a` binary. File formats, progress output and argument parsing live
//! here; model logic lives in the library.

mod bench;
mod convert;
mod detect;
mod fetch;
mod generate;
mod stage;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ssv2a",
    version,
    about = "SSV2A (sound source-aware vision-to-audio generation) on any GPU",
    long_about = "ssv2a turns pictures of a scene into the sound of that scene, running every stage of the \
official SSV2A model as WGSL kernels on your GPU (Vulkan, Metal, DX12; or WebGPU in a browser).\n\n\
Weights: `ssv2a fetch` downloads the official checkpoints and converts them into packs once \
(no Python needed); `ssv2a models` lists what is installed.\n\n\
Start here: `ssv2a demo` runs the whole pipeline on random weights (no download) and writes \
demo.wav; then `ssv2a generate --image street.jpg -o street.wav` with the real weights."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show the GPU adapter, backend, limits and features ssv2a would use.
    Info,
    /// Turn an image, several images or a video into the audio of the scene (WAV); text and sound
    /// sources are not available yet.
    Generate(Box<generate::GenerateArgs>),
    /// Run the whole pipeline at reduced size on random weights (no download needed) and
    /// write demo.wav; the sound is not meaningful.
    Demo(generate::DemoArgs),
    /// Convert an official checkpoint into a weight pack (fp16 by default).
    Convert(convert::Args),
    /// Download the official checkpoints (resuming, sha256-verified) and install their packs.
    Fetch(fetch::FetchArgs),
    /// List the models: installed, missing or stale.
    Models(fetch::ModelsArgs),
    /// Run one model stage on tensors from a safetensors file (for parity checks).
    Stage(stage::Args),
    /// Find the sound sources in images (YOLOv8 as SSV2A runs it) and print them.
    Detect(detect::Args),
    /// Benchmarks on the current adapter, as ratios against a baseline run in the same process.
    Bench {
        #[command(subcommand)]
        what: bench::BenchWhat,
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
        Cmd::Generate(a) => generate::generate(*a).await,
        Cmd::Demo(a) => generate::demo(a).await,
        Cmd::Convert(a) => convert::run(a),
        Cmd::Fetch(a) => fetch::fetch(a),
        Cmd::Models(a) => fetch::models(a),
        Cmd::Stage(a) => stage::run(a).await,
        Cmd::Detect(a) => detect::run(a).await,
        Cmd::Bench { what } => bench::run(what).await,
    }
}
