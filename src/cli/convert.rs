//! `ssv2a convert --kind KIND --input CHECKPOINT [--config JSON] --output PACK [--dtype f16|f32]`
//! (contract: ../shared/spec/interfaces.md).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use ssv2a::convert::plan::{CheckpointSource, Plan};
use ssv2a::convert::{pack_writer, Checkpoint};

#[derive(clap::Args)]
pub struct Args {
    /// Model family: audioldm (UNet, VAE decoder, HiFi-GAN), yolo (ultralytics YOLOv8 .pt or
    /// state dict; --config: the model yaml as JSON, optional); more kinds arrive with their models.
    #[arg(long)]
    kind: String,
    /// The official checkpoint (torch.save zip / legacy file, or safetensors).
    #[arg(long)]
    input: PathBuf,
    /// Model config JSON where the checkpoint does not carry one (default: the official model's).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where to write the pack (written to a temporary file, renamed on success).
    #[arg(long)]
    output: PathBuf,
    /// Storage of matrices and kernels: f16 (default) or f32 (for parity measurements).
    #[arg(long, default_value = "f16")]
    dtype: String,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let f16 = match a.dtype.as_str() {
        "f16" => true,
        "f32" => false,
        other => bail!("--dtype must be f16 or f32, not `{other}`"),
    };
    let config: Option<serde_json::Value> = match &a.config {
        Some(p) => Some(
            serde_json::from_slice(&std::fs::read(p).with_context(|| format!("reading {}", p.display()))?)
                .with_context(|| format!("{} is not valid JSON", p.display()))?,
        ),
        None => None,
    };
    let t0 = std::time::Instant::now();
    let ckpt = Checkpoint::open(&a.input)?;
    let (plan, src) = match a.kind.as_str() {
        "audioldm" => {
            let root = if ckpt.get("state_dict").is_some() { "state_dict" } else { "" };
            let src = CheckpointSource::new(&ckpt, root)?;
            let cfg = match &config {
                Some(v) => ssv2a::models::audioldm::AudioLdmConfig::from_json(v)?,
                None => ssv2a::models::audioldm::AudioLdmConfig::s_full_v2(),
            };
            (ssv2a::models::audioldm::plan(&src, &cfg)?, src)
        }
        "yolo" => {
            let (src, cfg) = ssv2a::models::yolo::from_checkpoint(&ckpt, config.as_ref())?;
            (ssv2a::models::yolo::plan(&src, &cfg)?, src)
        }
        "ssv2a" | "aggregator" | "clip" | "prior" => {
            bail!("--kind {} is not implemented yet in this version of ssv2a", a.kind)
        }
        other => bail!("unknown --kind `{other}` (audioldm, ssv2a, aggregator, clip, yolo, prior)"),
    };
    write(&plan, &src, &a, f16)?;
    eprintln!(
        "wrote {} ({} tensors, {}) in {:.1} s",
        a.output.display(),
        plan.tensors.len(),
        if f16 { "f16" } else { "f32" },
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn write(plan: &Plan, src: &CheckpointSource, a: &Args, f16: bool) -> anyhow::Result<()> {
    let mut extra = BTreeMap::new();
    extra.insert("source".into(), a.input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    extra.insert("source_sha256".into(), pack_writer::sha256_file(&a.input)?);
    plan.write(src, &a.output, f16, extra)?;
    Ok(())
}
