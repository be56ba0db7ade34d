//! [`convert_checkpoint`]: one entry point from an official checkpoint to a pack, shared by
//! `ssv2a convert` and `ssv2a fetch` (native only: it reads and writes files).
//!
//! The kind's converter comes from [`super::KINDS`].

use std::collections::BTreeMap;
use std::path::Path;

use crate::convert::plan::{CheckpointSource, Plan, TensorSource};
use crate::convert::{pack_writer, Checkpoint};
use crate::{Error, Result};

/// What to convert.
#[derive(Clone, Debug)]
pub struct ConvertJob<'a> {
    pub kind: &'a str,
    /// The official checkpoint (torch.save zip / TorchScript / legacy file, or safetensors).
    pub input: &'a Path,
    /// Model config JSON where the checkpoint does not carry one.
    pub config: Option<&'a Path>,
    /// The pack to write (through a temporary file renamed on success).
    pub output: &'a Path,
    /// f16 storage of matrices and kernels (false: f32, for parity measurements).
    pub f16: bool,
    /// The input's sha256 when the caller already knows it (saves reading the file again).
    pub input_sha256: Option<&'a str>,
    /// More `__metadata__` entries (e.g. the manifest a pack was fetched for).
    pub extra_metadata: BTreeMap<String, String>,
    /// AudioLDM: the text tokenizer's `vocab.json` and `merges.txt` (roberta-base's), checked
    /// and stored in the pack ([`crate::models::clap::add_tokenizer`]).
    pub tokenizer: Option<(&'a Path, &'a Path)>,
}

impl<'a> ConvertJob<'a> {
    pub fn new(kind: &'a str, input: &'a Path, output: &'a Path) -> ConvertJob<'a> {
        ConvertJob { kind, input, config: None, output, f16: true, input_sha256: None, extra_metadata: BTreeMap::new(), tokenizer: None }
    }
}

/// What [`convert_checkpoint`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Converted {
    pub tensors: usize,
    /// Size of the pack file.
    pub bytes: u64,
    /// sha256 of the input checkpoint (recorded in the pack as `source_sha256`).
    pub source_sha256: String,
}

/// Convert `job.input` into a pack at `job.output`. Nothing is written unless the whole pack is
/// valid. The pack's metadata records the source file name and sha256 (and the config's sha256
/// when a config file was given) next to the kind's own entries.
pub fn convert_checkpoint(job: &ConvertJob) -> Result<Converted> {
    let available = || super::names(|k| k.convert.is_some()).join(", ");
    let kind = super::kind(job.kind).ok_or_else(|| Error::Format(format!("unknown kind `{}` (available: {})", job.kind, available())))?;
    let Some(convert) = kind.convert else {
        return Err(Error::Format(format!("conversion of kind `{}` is not available in this version of ssv2a (available: {})", kind.name, available())));
    };
    let config = match job.config {
        Some(p) => {
            let bytes = std::fs::read(p).map_err(|e| Error::io(format!("reading config {}", p.display()), e))?;
            let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| Error::Format(format!("{}: not valid JSON: {e}", p.display())))?;
            Some(v)
        }
        None => None,
    };
    let tokenizer = match job.tokenizer {
        Some((v, m)) => {
            if kind.name != crate::models::audioldm::KIND {
                return Err(Error::Format(format!("tokenizer files apply to --kind {}, not `{}`", crate::models::audioldm::KIND, kind.name)));
            }
            let read = |p: &Path| std::fs::read(p).map_err(|e| Error::io(format!("reading tokenizer file {}", p.display()), e));
            Some((read(v)?, v, read(m)?, m))
        }
        None => None,
    };
    let ckpt = Checkpoint::open(job.input)?;
    let (mut plan, src) = convert(&ckpt, config.as_ref())?;
    if let Some((vb, v, mb, m)) = &tokenizer {
        crate::models::clap::add_tokenizer(&mut plan, vb, &v.display().to_string(), mb, &m.display().to_string())?;
    }
    if let Some(complete) = kind.complete {
        complete(&mut plan, &src)?;
    }
    let source_sha256 = match job.input_sha256 {
        Some(s) => s.to_string(),
        None => pack_writer::sha256_file(job.input)?,
    };
    let mut extra = BTreeMap::new();
    extra.insert("source".into(), job.input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    extra.insert("source_sha256".into(), source_sha256.clone());
    if let Some(p) = job.config {
        extra.insert("config_source".into(), p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        extra.insert("config_sha256".into(), pack_writer::sha256_file(p)?);
    }
    extra.extend(job.extra_metadata.clone());
    let stats = plan.write(&src, job.output, job.f16, extra)?;
    Ok(Converted { tensors: stats.tensors, bytes: stats.bytes, source_sha256 })
}

/// The AudioLDM pack's `uncond_embedding`: CLAP's text tower run on `""` on a GPU adapter
/// (nothing is written without it). Plans without the text tower need no GPU.
pub(super) fn uncond_on_gpu(plan: &mut Plan, src: &CheckpointSource) -> Result<()> {
    use crate::models::clap;
    if !plan.tensors.iter().any(|t| t.name.starts_with(clap::PREFIX)) {
        return Ok(());
    }
    let gpu = block_on(crate::Gpu::new()).map_err(|e| {
        Error::Format(format!(
            "{}: converting an AudioLDM checkpoint computes CLAP's text embedding of \"\" (classifier-free guidance's unconditional embedding) on the GPU, and there is none: {e}",
            src.describe()
        ))
    })?;
    block_on(clap::add_uncond_embedding(&gpu, plan, src))?;
    Ok(())
}

/// Drive a future to completion on this thread (the GPU futures resolve inside `Gpu`'s own
/// blocking poll natively, so this only parks between wake-ups).
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}
