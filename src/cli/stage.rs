//! `ssv2a stage STAGE --weights PACK --input IN.safetensors --output OUT.safetensors`: one
//! deterministic stage on f32 tensors (contract: ../shared/spec/interfaces.md).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use ssv2a::tensor::HostTensor;
use ssv2a::weights::{parse_header, serialize_pack, PackTensor};
use ssv2a::{Gpu, Tensor, Weights};

#[derive(clap::Args)]
pub struct Args {
    /// vae | hifigan | yolo (more stages arrive with their models; see --help of the contract)
    stage: String,
    #[arg(long)]
    weights: PathBuf,
    #[arg(long)]
    input: PathBuf,
    #[arg(long)]
    output: PathBuf,
}

fn read_inputs(path: &PathBuf) -> anyhow::Result<BTreeMap<String, HostTensor>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let name = path.display().to_string();
    let (start, infos, _) = parse_header(&bytes, &name)?;
    let mut out = BTreeMap::new();
    for (k, info) in infos {
        let (a, b) = info.data_offsets;
        let data = ssv2a::weights::decode_f32(info.dtype, &bytes[start + a..start + b], &k)?;
        out.insert(k, HostTensor::new(info.shape.clone(), data)?);
    }
    Ok(out)
}

fn input<'a>(m: &'a BTreeMap<String, HostTensor>, name: &str, path: &PathBuf) -> anyhow::Result<&'a HostTensor> {
    m.get(name).ok_or_else(|| anyhow!("{}: no tensor `{name}` (found: {:?})", path.display(), m.keys().collect::<Vec<_>>()))
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let inputs = read_inputs(&a.input)?;
    let gpu = Gpu::new().await?;
    let w = Weights::from_file(&gpu, &a.weights)?;
    let mut outputs: Vec<(String, Tensor)> = vec![];
    match a.stage.as_str() {
        "vae" => {
            let dec = ssv2a::models::audioldm::Decoder::load(&w)?;
            let latent = Tensor::upload(&gpu, input(&inputs, "latent", &a.input)?)?;
            outputs.push(("mel".into(), dec.latent_to_mel(&latent, None)?));
        }
        "hifigan" => {
            let dec = ssv2a::models::audioldm::Decoder::load(&w)?;
            let mel = Tensor::upload(&gpu, input(&inputs, "mel", &a.input)?)?;
            outputs.push(("waveform".into(), dec.mel_to_waveform(&mel, None)?));
        }
        "yolo" => {
            let model = ssv2a::models::yolo::Yolo::from_pack(&w)?;
            let pixels = Tensor::upload(&gpu, input(&inputs, "pixels", &a.input)?)?;
            outputs.push(("raw".into(), model.forward(&pixels, None)?));
        }
        "unet" | "clip-vision" | "clip-text" | "manifold-clip" | "manifold-clap" | "generator" | "remixer" | "aggregator"
        | "clap-audio" | "clap-text" | "prior-net" => bail!("stage `{}` is not implemented yet in this version of ssv2a", a.stage),
        other => bail!("unknown stage `{other}`"),
    }
    let mut pack = vec![];
    for (name, t) in outputs {
        let h = t.to_host().await?;
        pack.push(PackTensor::f32(name, h.shape.clone(), &h.data));
    }
    let bytes = serialize_pack(&pack, &BTreeMap::new())?;
    write_atomic(&a.output, &bytes)?;
    Ok(())
}

/// Write via a temporary file in the same directory, renamed into place.
pub fn write_atomic(path: &PathBuf, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).map(|p| p.to_path_buf()).unwrap_or_else(|| ".".into());
    let tmp = dir.join(format!(".{}.partial-{}", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(), std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display())).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
