//! `ssv2a stage STAGE --weights PACK --input IN.safetensors --output OUT.safetensors`: one
//! deterministic stage on f32 tensors (contract: ../shared/spec/interfaces.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use ssv2a::tensor::HostTensor;
use ssv2a::weights::{parse_header, serialize_pack, PackTensor};
use ssv2a::{Gpu, Tensor, Weights};

#[derive(clap::Args)]
pub struct Args {
    /// The stage (../shared/spec/interfaces.md).
    #[arg(help = format!("The stage: {} (../shared/spec/interfaces.md)", ssv2a::registry::stages().join(" | ")))]
    stage: String,
    #[arg(long)]
    weights: PathBuf,
    #[arg(long)]
    input: PathBuf,
    #[arg(long)]
    output: PathBuf,
    /// Also time the stage: run it this many more times after the first (warm-up) run and print
    /// `stage-time: best=… median=…` (seconds, GPU work and readback, no loading) to stderr.
    #[arg(long, default_value_t = 0)]
    repeat: usize,
}

fn read_inputs(path: &Path) -> anyhow::Result<BTreeMap<String, HostTensor>> {
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

fn input<'a>(m: &'a BTreeMap<String, HostTensor>, name: &str, path: &Path) -> anyhow::Result<&'a HostTensor> {
    m.get(name).ok_or_else(|| anyhow!("{}: no tensor `{name}` (found: {:?})", path.display(), m.keys().collect::<Vec<_>>()))
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let Some(kind) = ssv2a::registry::stage_kind(&a.stage) else {
        bail!("unknown stage `{}` (stages: {})", a.stage, ssv2a::registry::stages().join(", "));
    };
    ssv2a::fs::check_writable(&a.output)?;
    let inputs = read_inputs(&a.input)?;
    let gpu = Gpu::new().await?;
    let w = Weights::from_file(&gpu, &a.weights)?;
    w.expect_kind(kind.name)?;
    let stage = prepare(&a, &gpu, &w)?;
    let mut times = vec![];
    let mut outputs: Vec<(String, Tensor)> = vec![];
    for rep in 0..=a.repeat {
        let t0 = std::time::Instant::now();
        outputs = stage(&inputs)?;
        for (_, t) in &outputs {
            t.to_host().await?;
        }
        if rep > 0 {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    if !times.is_empty() {
        times.sort_by(f64::total_cmp);
        eprintln!("stage-time: best={:.4} median={:.4} runs={}", times[0], times[times.len() / 2], times.len());
    }
    for (name, t) in &inputs {
        warn_non_finite("input", name, &t.data);
    }
    let mut pack = vec![];
    for (name, t) in outputs {
        let h = t.to_host().await?;
        warn_non_finite("output", &name, &h.data);
        pack.push(PackTensor::f32(name, h.shape.clone(), &h.data));
    }
    let bytes = serialize_pack(&pack, &BTreeMap::new())?;
    ssv2a::fs::write_atomic(&a.output, &bytes)?;
    Ok(())
}

type Inputs = BTreeMap<String, HostTensor>;
type StageFn = Box<dyn Fn(&Inputs) -> anyhow::Result<Vec<(String, Tensor)>>>;

/// Load the stage's model once; the returned closure runs it on a set of inputs.
fn prepare(a: &Args, gpu: &Gpu, w: &Weights) -> anyhow::Result<StageFn> {
    let (gpu, path) = (gpu.clone(), a.input.clone());
    Ok(match a.stage.as_str() {
        "vae" => {
            let dec = ssv2a::models::audioldm::Decoder::load(w)?;
            Box::new(move |inputs: &Inputs| {
                let latent = Tensor::upload(&gpu, input(inputs, "latent", &path)?)?;
                Ok(vec![("mel".into(), dec.latent_to_mel(&latent, None)?)])
            })
        }
        "hifigan" => {
            let dec = ssv2a::models::audioldm::Decoder::load(w)?;
            Box::new(move |inputs: &Inputs| {
                let mel = Tensor::upload(&gpu, input(inputs, "mel", &path)?)?;
                Ok(vec![("waveform".into(), dec.mel_to_waveform(&mel, None)?)])
            })
        }
        "unet" => {
            let unet = ssv2a::models::audioldm::load_unet(w)?;
            Box::new(move |inputs: &Inputs| {
                let x = Tensor::upload(&gpu, input(inputs, "x", &path)?)?;
                let t = input(inputs, "t", &path)?;
                let film = Tensor::upload(&gpu, input(inputs, "film", &path)?)?;
                Ok(vec![("eps".into(), unet.forward(&x, &t.data, &film, None)?)])
            })
        }
        "clip-vision" => {
            let model = ssv2a::models::clip::ClipVision::load(w)?;
            Box::new(move |inputs: &Inputs| {
                let px = Tensor::upload(&gpu, input(inputs, "pixels", &path)?)?;
                Ok(vec![("image_embeds".into(), model.forward(&px, None)?)])
            })
        }
        "manifold-clip" | "manifold-clap" | "generator" | "remixer" => {
            let model = ssv2a::models::ssv2a::Ssv2a::load(w)?;
            let stage = a.stage.clone();
            Box::new(move |inputs: &Inputs| {
                let (mu, logvar) = match stage.as_str() {
                    "remixer" => {
                        let src = Tensor::upload(&gpu, input(inputs, "src", &path)?)?;
                        let clips = Tensor::upload(&gpu, input(inputs, "clips", &path)?)?;
                        model.remixer.forward(&src, &clips, None)?
                    }
                    stage => {
                        let x = Tensor::upload(&gpu, input(inputs, "x", &path)?)?;
                        match stage {
                            "manifold-clip" => model.manifold.encode_clips(&x, None)?,
                            "manifold-clap" => model.manifold.encode_claps(&x, None)?,
                            _ => model.generator.forward(&x, None)?,
                        }
                    }
                };
                Ok(vec![("mu".into(), mu), ("logvar".into(), logvar)])
            })
        }
        "aggregator" => {
            let model = ssv2a::models::ssv2a::Aggregator::load(w)?;
            Box::new(move |inputs: &Inputs| {
                let claps = Tensor::upload(&gpu, input(inputs, "claps", &path)?)?;
                let (mu, logvar) = model.forward(&claps, None, None)?;
                Ok(vec![("mu".into(), mu), ("logvar".into(), logvar)])
            })
        }
        "yolo" => {
            let model = ssv2a::models::yolo::Yolo::from_pack(w)?;
            Box::new(move |inputs: &Inputs| {
                let pixels = Tensor::upload(&gpu, input(inputs, "pixels", &path)?)?;
                Ok(vec![("raw".into(), model.forward(&pixels, None)?)])
            })
        }
        "clap-text" => {
            let model = ssv2a::models::clap::load_text(w)?;
            Box::new(move |inputs: &Inputs| {
                let tokens =
                    ssv2a::models::clap::TextTokens::from_host(input(inputs, "input_ids", &path)?, input(inputs, "attention_mask", &path)?, &model.config)
                        .with_context(|| format!("{}", path.display()))?;
                Ok(vec![("text_embeds".into(), model.forward(&tokens, None)?)])
            })
        }
        "clap-audio" => {
            let model = ssv2a::models::clap::load_audio(w)?;
            Box::new(move |inputs: &Inputs| {
                let wave = input(inputs, "waveform", &path)?;
                let want = model.config.clip_samples;
                if wave.shape.len() != 2 || wave.shape[1] != want || wave.shape[0] == 0 {
                    bail!(
                        "{}: `waveform` is {:?}, expected [B, {want}] ({} s clips at {} Hz, already fitted: longer audio cropped, shorter repeat-padded)",
                        path.display(),
                        wave.shape,
                        want as f64 / model.config.sample_rate as f64,
                        model.config.sample_rate
                    );
                }
                let x = Tensor::upload(&gpu, wave)?;
                Ok(vec![("audio_embeds".into(), model.forward(&x, None)?)])
            })
        }
        "clip-text" | "prior-net" => bail!("stage `{}` is not implemented yet in this version of ssv2a", a.stage),
        other => bail!("unknown stage `{other}`"),
    })
}

/// One stderr line when a tensor holds NaN or infinite values (the stage still writes them:
/// they may be what is being checked).
fn warn_non_finite(what: &str, name: &str, data: &[f32]) {
    let bad = data.iter().filter(|v| !v.is_finite()).count();
    if bad > 0 {
        eprintln!("warning: {what} `{name}` has {bad} NaN or infinite value(s) of {}", data.len());
    }
}
