//! `ssv2a convert --kind KIND --input CHECKPOINT [--config JSON] --output PACK [--dtype f16|f32]
//! [--tokenizer-dir DIR]`
//! (contract: ../shared/spec/interfaces.md). The work is [`ssv2a::registry::convert_checkpoint`],
//! which `ssv2a fetch` calls too.

use std::path::PathBuf;

use anyhow::bail;
use ssv2a::registry::{convert_checkpoint, ConvertJob};

#[derive(clap::Args)]
pub struct Args {
    /// Model kind.
    #[arg(long, help = format!("Model kind: {} (see ../shared/spec/interfaces.md)", ssv2a::registry::names(|k| k.convert.is_some()).join(", ")))]
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
    /// AudioLDM: a folder holding roberta-base's `vocab.json` and `merges.txt`, stored in the
    /// pack for `generate --prompt` (`ssv2a fetch` passes them itself).
    #[arg(long, value_name = "DIR")]
    tokenizer_dir: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let f16 = match a.dtype.as_str() {
        "f16" => true,
        "f32" => false,
        other => bail!("--dtype must be f16 or f32, not `{other}`"),
    };
    ssv2a::fs::check_writable(&a.output)?;
    let t0 = std::time::Instant::now();
    let mut job = ConvertJob::new(&a.kind, &a.input, &a.output);
    job.config = a.config.as_deref();
    job.f16 = f16;
    let files = a.tokenizer_dir.as_ref().map(|d| (d.join("vocab.json"), d.join("merges.txt")));
    if let Some((v, m)) = &files {
        for p in [v, m] {
            if !p.is_file() {
                bail!("--tokenizer-dir: {} does not exist (the folder must hold roberta-base's vocab.json and merges.txt)", p.display());
            }
        }
    }
    job.tokenizer = files.as_ref().map(|(v, m)| (v.as_path(), m.as_path()));
    let done = convert_checkpoint(&job)?;
    eprintln!("wrote {} ({} tensors, {}) in {:.1} s", a.output.display(), done.tensors, if f16 { "f16" } else { "f32" }, t0.elapsed().as_secs_f64());
    Ok(())
}
