//! Subcommands of the `ssv2a` binary.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ssv2a", version, about = "SSV2A (sound source-aware vision-to-audio) on any GPU", long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show the GPU adapter, backend, limits and features ssv2a would use.
    Info,
}

pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let r = pollster::block_on(run(cli));
    match r {
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
    }
}
