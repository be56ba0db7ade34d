//! `ssv2a generate` (sources → WAV) and `ssv2a demo` (the whole pipeline on random weights).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use ssv2a::media::audio::WavFormat;
use ssv2a::pipeline::settings::DEFAULT_SEED;
use ssv2a::pipeline::{self, demo, AudioClip, Event, ImageSource, Model, Output, Overrides, Pipeline, Preset, Request, Sampler, SourceBox, Stage, VideoFrames};
use ssv2a::Gpu;

/// Knobs shared by `generate` and `demo`: the run settings of [`Overrides`] (defaults come from
/// the preset) and the output options.
#[derive(clap::Args, Clone)]
pub struct Knobs {
    /// official (the paper's code: Cycle Mix 64×64, DDIM 200 steps, 3 candidates) or fast
    /// (DPM-Solver++ 25 steps, 1 candidate, Cycle Mix 8 rounds × 16). Default: official for
    /// generate, fast for demo.
    #[arg(long)]
    preset: Option<String>,
    /// One seed for the whole run.
    #[arg(long, help = format!("One seed for the whole run (default {DEFAULT_SEED}, the official code's)"))]
    seed: Option<u64>,
    /// Sampler steps (overrides the preset).
    #[arg(long)]
    steps: Option<usize>,
    /// ddim (η = 1, as AudioLDM) or dpmpp (DPM-Solver++ 2M).
    #[arg(long)]
    sampler: Option<String>,
    /// Classifier-free guidance scale.
    #[arg(long, help = format!("Classifier-free guidance scale (default {})", ssv2a::models::audioldm::GUIDANCE))]
    guidance: Option<f32>,
    /// AudioLDM candidates sampled together (3 upstream); the best by CLAP is kept (--rank).
    #[arg(long)]
    candidates: Option<usize>,
    /// How candidates are ranked by CLAP's audio tower: conditioning (default: similarity to the
    /// CLAP vector that generated them), official (similarity to CLAP's "" text embedding, as
    /// the original code), none (keep the first).
    #[arg(long)]
    rank: Option<String>,
    /// Seconds of audio (10).
    #[arg(long)]
    duration: Option<f64>,
    /// Cycle Mix rounds − 1 (64).
    #[arg(long)]
    cycle_its: Option<usize>,
    /// Cycle Mix candidates per round (64).
    #[arg(long)]
    cycle_samples: Option<usize>,
    /// Gaussian samples averaged per variational draw (64).
    #[arg(long)]
    var_samples: Option<usize>,
    /// Write 32-bit float WAV instead of 16-bit PCM.
    #[arg(long)]
    float: bool,
    /// No progress bars.
    #[arg(long, short)]
    quiet: bool,
    /// Release each model as soon as the run no longer needs it (lower peak GPU memory).
    #[arg(long)]
    low_memory: bool,
}

impl Knobs {
    /// The run settings given on the command line (parsed here, not by clap, so that a bad
    /// value is one line naming the flag).
    fn overrides(&self) -> anyhow::Result<Overrides> {
        let preset = self.preset.as_deref().map(|v| v.parse::<Preset>().with_context(|| format!("--preset {v}"))).transpose()?;
        let sampler = self.sampler.as_deref().map(|v| v.parse::<Sampler>().with_context(|| format!("--sampler {v}"))).transpose()?;
        let rank = self.rank.as_deref().map(|v| v.parse::<ssv2a::pipeline::Rank>().with_context(|| format!("--rank {v}"))).transpose()?;
        Ok(Overrides {
            preset,
            seed: self.seed,
            sampler,
            steps: self.steps,
            guidance: self.guidance,
            candidates: self.candidates,
            rank,
            duration: self.duration,
            cycle_its: self.cycle_its,
            cycle_samples: self.cycle_samples,
            var_samples: self.var_samples,
            low_memory: self.low_memory.then_some(true),
            ..Overrides::default()
        })
    }
}

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// Image of the scene (PNG, JPEG, WebP). One image: its sound sources are detected (image
    /// to audio). Several, or with --text/--audio: each image is one source (composition).
    #[arg(long)]
    image: Vec<PathBuf>,
    /// Add a sound source box X0,Y0,X1,Y1 (pixels) to the detected ones, optionally with a
    /// weight: X0,Y0,X1,Y1@W. With --only-boxes, these are the only sources.
    #[arg(long = "box", value_name = "X0,Y0,X1,Y1[@W]")]
    boxes: Vec<String>,
    /// Use only the --box sources (no detection).
    #[arg(long)]
    only_boxes: bool,
    /// Drop detected source K (the numbers `ssv2a detect` prints); repeatable.
    #[arg(long, value_name = "K")]
    drop: Vec<usize>,
    /// Weight of detected source K: K=W (1 = as the official code; 0 silences it).
    #[arg(long, value_name = "K=W")]
    weight: Vec<String>,
    /// A text source (needs CLIP's text tower and the DALLE-2 prior: not in this version).
    #[arg(long)]
    text: Vec<String>,
    /// An audio source (WAV, FLAC, MP3, Ogg Vorbis; its first 30 s), embedded by CLAP's audio
    /// tower into its own slot. Repeatable; with --image it makes a composition.
    #[arg(long)]
    audio: Vec<PathBuf>,
    /// A video (64 frames through ffmpeg, which must be on PATH; needs the aggregator pack).
    #[arg(long)]
    video: Option<PathBuf>,
    /// AudioLDM's own text to audio, without SSV2A's sound-source path (to compare): the
    /// prompt's CLAP text embedding conditions AudioLDM. Needs only the AudioLDM pack (with its
    /// tokenizer); cannot be combined with other sources. Cut at 512 tokens, as AudioLDM does.
    #[arg(long)]
    prompt: Option<String>,
    /// Output WAV (16 kHz); written only when the run succeeds.
    #[arg(long, short)]
    output: PathBuf,
    /// Folder of installed packs (default: where `ssv2a fetch` installs them).
    #[arg(long)]
    models: Option<PathBuf>,
    /// Which installed AudioLDM release generates: s (audioldm-s-full-v2, default), m
    /// (audioldm-m-full) or l (audioldm-l-full); install it with `ssv2a fetch --audioldm …`.
    #[arg(long, value_name = "s|m|l")]
    audioldm: Option<String>,
    /// Detection confidence threshold (ssv2a.json: 0.25).
    #[arg(long)]
    conf: Option<f32>,
    /// Detection NMS IoU threshold (ssv2a.json: 0: any overlap within a class suppresses).
    #[arg(long)]
    iou: Option<f32>,
    /// Detected sources kept, best first (ssv2a.json: 16; 0 = all, at most 63 fit).
    #[arg(long)]
    top_k: Option<usize>,
    /// Detect without test-time augmentation (SSV2A runs it).
    #[arg(long)]
    no_tta: bool,
    /// Detection size: ssv2a (official: the image's W×H read as h×w), image, N or HxW.
    #[arg(long)]
    imgsz: Option<String>,
    /// Keep each crop's aspect ratio instead of stretching it to the image size.
    #[arg(long)]
    keep_aspect: bool,
    /// Unconditional embedding for guidance (safetensors with one tensor `uncond`), instead of
    /// the AudioLDM pack's (CLAP's text embedding of "", computed by `ssv2a convert`).
    #[arg(long)]
    uncond: Option<PathBuf>,
    #[command(flatten)]
    knobs: Knobs,
}

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Output WAV.
    #[arg(long, short, default_value = "demo.wav")]
    output: PathBuf,
    /// Use this image instead of the built-in synthetic street scene.
    #[arg(long)]
    image: Option<PathBuf>,
    /// Also write the random packs as files (DIR/<model>.safetensors), to try `generate --models DIR`.
    #[arg(long, value_name = "DIR")]
    write_packs: Option<PathBuf>,
    /// Random weights at the released models' sizes instead (YOLOv8x, ViT-L/14, AudioLDM-S):
    /// to measure memory and speed without checkpoints; slow on a CPU-emulated GPU.
    #[arg(long)]
    full_size: bool,
    #[command(flatten)]
    knobs: Knobs,
}

fn parse_box(s: &str) -> anyhow::Result<SourceBox> {
    let (coords, weight) = match s.split_once('@') {
        Some((c, w)) => (c, w.trim().parse::<f32>().with_context(|| format!("--box `{s}`: weight `{w}` is not a number"))?),
        None => (s, 1.0),
    };
    let v: Vec<f32> =
        coords.split(',').map(|p| p.trim().parse::<f32>()).collect::<Result<_, _>>().with_context(|| format!("--box `{s}`: expected X0,Y0,X1,Y1[@W]"))?;
    let [x0, y0, x1, y1] = v[..] else { bail!("--box `{s}`: expected four numbers X0,Y0,X1,Y1") };
    Ok(SourceBox::drawn([x0, y0, x1, y1], "box", weight))
}

fn open_image(p: &Path) -> anyhow::Result<ImageSource> {
    let d = ssv2a::media::imageio::open(p)?;
    Ok(ImageSource::new(p.display().to_string(), d))
}

fn open_audio(p: &Path) -> anyhow::Result<AudioClip> {
    let d = ssv2a::media::audio::open(p, &ssv2a::media::audio::AudioLimits::default())?;
    for w in &d.warnings {
        eprintln!("warning: {w}");
    }
    if d.capped {
        eprintln!("note: {}: using its first {:.1} s", p.display(), d.seconds());
    }
    Ok(AudioClip { name: p.display().to_string(), samples: d.samples, sample_rate: d.sample_rate })
}

/// Progress bars per stage (stderr), and the final summary.
struct Bars {
    quiet: bool,
    bar: Option<(Stage, ProgressBar)>,
}

impl Bars {
    fn on(&mut self, e: Event) {
        if self.quiet {
            return;
        }
        if self.bar.as_ref().map(|(s, _)| *s) != Some(e.stage) {
            if let Some((_, b)) = self.bar.take() {
                b.finish();
            }
            let b = ProgressBar::new(e.total as u64);
            b.set_style(
                ProgressStyle::with_template("{prefix:>16} [{bar:30}] {pos}/{len} {elapsed_precise}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            b.set_prefix(e.stage.to_string());
            self.bar = Some((e.stage, b));
        }
        if let Some((_, b)) = &self.bar {
            b.set_length(e.total as u64);
            b.set_position(e.done as u64);
        }
    }
    fn done(&mut self) {
        if let Some((_, b)) = self.bar.take() {
            b.finish();
        }
    }
}

fn summary(out: &Output, path: &Path) {
    let secs = out.waveform.len() as f64 / out.sample_rate as f64;
    eprintln!("mode: {:?}", out.mode);
    if let Some(p) = &out.prompt {
        eprintln!("prompt: {} tokens (of at most {} with <s> and </s>)", p.tokens, p.max_length);
        if p.truncated {
            eprintln!(
                "warning: the prompt was longer than {} tokens and was truncated, as AudioLDM truncates it: only its start conditions the sound",
                p.max_length
            );
        }
    }
    if out.sources.len() > 1 {
        let counts: Vec<String> = out.sources.iter().map(|s| (s.len() - 1).to_string()).collect();
        eprintln!("{} frames; sources per frame (besides the frame itself): {}", out.sources.len(), counts.join(" "));
    }
    for scene in out.sources.iter().take(1).filter(|_| out.prompt.is_none()) {
        eprintln!("sources ({}):", scene.len());
        // Detections keep `ssv2a detect`'s numbers (the ones --drop and --weight take); the
        // whole image and drawn boxes have none.
        for s in scene {
            let b = s.xyxy.map(|[a, b, c, d]| format!("  box {a:.0},{b:.0},{c:.0},{d:.0}")).unwrap_or_default();
            let sc = s.score.map(|v| format!("  score {v:.3}")).unwrap_or_default();
            let w = if s.weight != 1.0 { format!("  weight {}", s.weight) } else { String::new() };
            let k = s.detection.map(|k| format!("{k:>2}")).unwrap_or_else(|| " -".into());
            eprintln!("  {k} {}{sc}{b}{w}", s.label);
        }
    }
    if !out.candidates.is_empty() {
        let scores: Vec<String> = out.candidates.iter().enumerate().map(|(i, v)| format!("{}{i}: {v:.4}", if i == out.chosen { "*" } else { "" })).collect();
        eprintln!("candidates (CLAP cosine similarity to the ranking target; * kept): {}", scores.join("  "));
    }
    eprintln!("timings:");
    let total: f64 = out.timings.iter().map(|(_, t)| t).sum();
    for (s, t) in &out.timings {
        eprintln!("  {:<24} {t:>8.2} s", s.to_string());
    }
    eprintln!("  {:<24} {total:>8.2} s", "total");
    eprintln!("peak GPU memory: {:.1} MB", out.peak_gpu_bytes as f64 / 1e6);
    if let Some(kb) = peak_rss_kb() {
        eprintln!("peak memory (RSS): {:.1} MB", kb as f64 / 1e3);
    }
    eprintln!("wrote {} ({secs:.2} s at {} Hz)", path.display(), out.sample_rate);
}

/// The process's peak resident memory (Linux `VmHWM`, kB); `None` elsewhere.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()
}

fn write(out: &Output, path: &Path, float: bool) -> anyhow::Result<()> {
    let fmt = if float { WavFormat::Float32 } else { WavFormat::Pcm16 };
    ssv2a::media::audio::write_wav_atomic(path, &out.waveform, out.sample_rate, fmt)?;
    Ok(())
}

/// The image format of a file whose first bytes are an image signature (a still image given as
/// a video would otherwise run through ffmpeg for minutes).
fn still_image_kind(p: &Path) -> Option<&'static str> {
    use std::io::Read;
    let mut head = [0u8; 12];
    let n = std::fs::File::open(p).and_then(|mut f| f.read(&mut head)).ok()?;
    ssv2a::media::imageio::sniff(&head[..n])
}

/// Before any work: the output can be written (see `ssv2a::fs`).
fn check_output(path: &Path) -> anyhow::Result<()> {
    ssv2a::fs::check_writable(path)?;
    Ok(())
}

pub async fn generate(a: GenerateArgs) -> anyhow::Result<()> {
    if let Some(v) = &a.imgsz {
        v.parse::<ssv2a::models::detect::ImgSize>().with_context(|| format!("--imgsz {v}"))?;
    }
    let overrides = Overrides {
        conf: a.conf,
        iou: a.iou,
        top_k: a.top_k,
        tta: a.no_tta.then_some(false),
        imgsz: a.imgsz.clone(),
        keep_aspect: a.keep_aspect.then_some(true),
        ..a.knobs.overrides()?
    };
    let settings = overrides.settings(Preset::Official)?;
    check_output(&a.output)?;
    if let Some(p) = &a.prompt {
        if !a.image.is_empty() || !a.text.is_empty() || !a.audio.is_empty() || a.video.is_some() {
            bail!("--prompt (AudioLDM's own text to audio) cannot be combined with --image, --text, --audio or --video; run them separately to compare");
        }
        if !a.boxes.is_empty() || a.only_boxes || !a.drop.is_empty() || !a.weight.is_empty() {
            bail!("--box, --only-boxes, --drop and --weight apply to --image, not to --prompt");
        }
        if p.trim().is_empty() {
            bail!("--prompt is empty: describe the sound, e.g. --prompt \"rain on a tin roof\"");
        }
    }
    // Decode every input before any model work, so bad inputs fail at once.
    let mut req = Request {
        images: a.image.iter().map(|p| open_image(p)).collect::<anyhow::Result<_>>()?,
        texts: a.text.clone(),
        prompt: a.prompt.clone(),
        ..Request::default()
    };
    req.audios = a.audio.iter().map(|p| open_audio(p)).collect::<anyhow::Result<_>>()?;
    let user: Vec<SourceBox> = a.boxes.iter().map(|b| parse_box(b)).collect::<anyhow::Result<_>>()?;
    let mut weights = vec![];
    for w in &a.weight {
        let (k, v) = w.split_once('=').with_context(|| format!("--weight `{w}`: expected K=W"))?;
        let k: usize = k.trim().parse().with_context(|| format!("--weight `{w}`: K must be a source number"))?;
        let v: f32 = v.trim().parse().with_context(|| format!("--weight `{w}`: W must be a number"))?;
        if !v.is_finite() || v < 0.0 {
            bail!("--weight `{w}`: the weight must be a finite number ≥ 0");
        }
        weights.push((k, v));
    }
    // Drawn boxes are checked against the image now, before any model runs.
    if let [img] = &req.images[..] {
        let (w, h) = (img.picture.width(), img.picture.height());
        ssv2a::pipeline::check_boxes(&user, w, h).map_err(|e| anyhow::anyhow!("--box: {e}"))?;
    }
    let edits = !user.is_empty() || a.only_boxes || !a.drop.is_empty() || !weights.is_empty();
    if edits && req.images.len() != 1 {
        bail!("--box, --only-boxes, --drop and --weight apply to one --image");
    }
    if a.only_boxes && user.is_empty() {
        bail!("--only-boxes needs at least one --box");
    }
    if a.only_boxes && (!a.drop.is_empty() || !weights.is_empty()) {
        bail!("--drop and --weight refer to detected sources; with --only-boxes nothing is detected");
    }
    if let Some(v) = &a.video {
        if !req.images.is_empty() || !req.texts.is_empty() || !req.audios.is_empty() {
            bail!("--video cannot be combined with other sources");
        }
        if !v.is_file() {
            bail!("reading video {}: no such file", v.display());
        }
        if let Some(kind) = still_image_kind(v) {
            bail!("--video {} is a still image ({kind}); give it with --image", v.display());
        }
    }
    let dir = match &a.models {
        Some(d) if !d.is_dir() => bail!("--models {}: no such folder (`ssv2a fetch --models-dir {}` installs the packs there)", d.display(), d.display()),
        Some(d) => d.clone(),
        None => ssv2a::fetch::default_models_dir()?,
    };
    // The AudioLDM release's pack, found before any GPU work.
    let audioldm_pack = match a.audioldm.as_deref() {
        Some(size) => {
            let name = ssv2a::registry::audioldm_manifest(size)?;
            let p = dir.join(format!("{name}.safetensors"));
            if !p.is_file() {
                bail!("--audioldm {size}: no {} (install it with `ssv2a fetch --audioldm {size}`)", p.display());
            }
            Some(p)
        }
        None => None,
    };
    let gpu = Gpu::new().await?;
    let mut pipe = Pipeline::new(&gpu);
    pipe.use_models_dir(&dir);
    if let Some(p) = audioldm_pack {
        pipe.set_pack(Model::AudioLdm, pipeline::PackSource::File(p));
    }
    if let Some(u) = &a.uncond {
        let bytes = std::fs::read(u).with_context(|| format!("reading {}", u.display()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| anyhow::anyhow!("{}: not a safetensors file ({e:?})", u.display()))?;
        let t = st.tensor("uncond").map_err(|_| anyhow::anyhow!("{}: no tensor `uncond`", u.display()))?;
        let v = ssv2a::weights::decode_f32(t.dtype(), t.data(), "uncond")?;
        pipe.set_uncond(v);
    }
    if let Some(v) = &a.video {
        let frames = ssv2a::media::video::extract_frames(v, 64, 512)?;
        req.video = Some(VideoFrames { name: v.display().to_string(), frames });
    }
    let mut bars = Bars { quiet: a.knobs.quiet, bar: None };
    if edits {
        let img = &mut req.images[0];
        let mut sources = vec![];
        if !a.only_boxes {
            let needs = [Model::Detector];
            pipe.check_packs(&needs)?;
            let found = pipe.detect(&img.picture.to_rgb(), &settings.detect).await?;
            for &k in a.drop.iter().chain(weights.iter().map(|(k, _)| k)) {
                if k >= found.len() {
                    match found.len() {
                        0 => bail!("source {k} does not exist: no source was detected"),
                        n => bail!("source {k} does not exist: {n} source(s) were detected, numbered 0 to {}", n - 1),
                    }
                }
            }
            for (k, mut s) in found.into_iter().enumerate() {
                if a.drop.contains(&k) {
                    continue;
                }
                if let Some((_, w)) = weights.iter().rev().find(|(i, _)| *i == k) {
                    s.weight = *w;
                }
                sources.push(s);
            }
        }
        sources.extend(user);
        img.sources = Some(sources);
    }
    let out = pipe.generate(&req, &settings, &mut |e| bars.on(e), &|| false).await;
    bars.done();
    let out = out?;
    write(&out, &a.output, a.knobs.float)?;
    summary(&out, &a.output);
    Ok(())
}

pub async fn demo(a: DemoArgs) -> anyhow::Result<()> {
    let settings = a.knobs.overrides()?.settings(Preset::Fast)?;
    check_output(&a.output)?;
    let image = match &a.image {
        Some(p) => open_image(p)?,
        None => ImageSource::new("synthetic street scene", pipeline::Picture::Rgb(demo::scene(320, 240))),
    };
    let gpu = Gpu::new().await?;
    {
        let i = gpu.info();
        eprintln!("ssv2a demo on {} ({:?})", i.name, i.backend);
    }
    eprintln!(
        "The weights are RANDOM (weights seed {}, run seed {}), {}: every stage of the pipeline runs, but the sound is not meaningful.\n\
         For real audio, install the official weights with `ssv2a fetch` and run `ssv2a generate --image IMAGE -o out.wav`.",
        demo::WEIGHTS_SEED,
        settings.seed,
        if a.full_size { "at the released models' sizes" } else { "at reduced size" }
    );
    if let Some(dir) = &a.write_packs {
        for p in demo::write_packs(&gpu, demo::WEIGHTS_SEED, dir)? {
            eprintln!("wrote {}", p.display());
        }
    }
    if a.full_size && a.write_packs.is_some() {
        bail!("--write-packs writes the reduced-size packs; leave out --full-size");
    }
    let size = if a.full_size { demo::Size::Full } else { demo::Size::Demo };
    let (mut pipe, _packs) = demo::pipeline_of(&gpu, demo::WEIGHTS_SEED, false, size)?;
    let req = Request { images: vec![image], ..Request::default() };
    let mut bars = Bars { quiet: a.knobs.quiet, bar: None };
    let out = pipe.generate(&req, &settings, &mut |e| bars.on(e), &|| false).await;
    bars.done();
    let out = out?;
    write(&out, &a.output, a.knobs.float)?;
    summary(&out, &a.output);
    eprintln!("(random weights: not meaningful sound; see `ssv2a fetch` for the real models)");
    Ok(())
}
