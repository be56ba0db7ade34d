//! The generation pipeline: sound sources → CLAP embedding → waveform, as the official SSV2A
//! runs it (../shared/spec/ssv2a.md §1), with the official bugs fixed.
//!
//! One [`Pipeline`] owns the packs and the models loaded from them. Models are loaded when a
//! run first needs them and stay loaded until [`Pipeline::release`] (or, with
//! [`Settings::release_after_use`], until the run no longer needs them).
//!
//! Modes, chosen from the [`Request`]:
//! - **image to audio** (one image, nothing else; `image_to_audio`): YOLO finds the sources
//!   (or the caller gives them, see [`SourceBox`]), each crop and the whole image go through
//!   CLIP, slot 0 = the image, slots 1.. = the sources, Cycle Mix, AudioLDM.
//! - **composition** (several images, or any text or audio; `srcs_to_audio`): each image is one
//!   source embedded whole (no detection, as upstream), slot 0 empty. Text sources need CLIP's
//!   text tower and the DALLE-2 prior, audio sources the CLAP audio tower: neither is in this
//!   version, so such requests fail with [`Error::Format`] naming the missing encoder (after
//!   every input has been decoded and checked).
//! - **video to audio** (`video_to_audio`): image to audio on each frame (one batched Cycle
//!   Mix), the Temporal Aggregation module, AudioLDM.
//! - **text to audio** ([`Request::prompt`], nothing else; `prompt_clap`): AudioLDM's own mode,
//!   beyond SSV2A: the prompt through the AudioLDM pack's RoBERTa tokenizer (length 512) and
//!   CLAP text tower, L2-normalised (`get_text_embedding`), then AudioLDM with the same samplers,
//!   presets, seed and guidance as the other modes. Needs only the AudioLDM pack, with its
//!   tokenizer files ([`crate::models::clap`]); a longer prompt is cut at 512 tokens and
//!   [`Output::prompt`] says so.
//!
//! Official bugs not reproduced (each has a test in `tests/pipeline.rs`): lists of multimodal
//! sources work; each audio source gets its own slot ([`MixInput::multimodal`]); crops live in
//! memory, so `.jpg` inputs keep every crop; the seed reaches AudioLDM (upstream it is always 42).
//!
//! **Candidates** (more than one): every candidate is decoded, resampled 16 → 48 kHz as
//! torchaudio does, embedded by the AudioLDM pack's CLAP audio tower and scored by cosine
//! similarity with a target ([`settings::Rank`]: by default the conditioning embedding, which is
//! what the paper means to select; `official` scores against `""` as the code does; `none` keeps
//! candidate 0). The best is kept; [`Output::candidates`] has every score.
//! Not reproduced, by choice: the official ranking's random condition dropping and random 10 s
//! crop (noise, not a choice), and the random choice of 63 sources when more are given (the
//! best-scoring are kept).
//!
//! **Audio sources** ([`Request::audios`], in a composition): each clip is resampled to 48 kHz
//! with a high-quality resampler (the official code goes through 16 kHz first, which drops
//! everything above 8 kHz), mean-removed and peak-normalised to 0.5 as the official code does,
//! fitted to 10 s, embedded by CLAP's audio tower and folded (`fold_claps`) into its own slot
//! (the official code writes every audio into the same slot, so only the last counted).
//!
//! The unconditional embedding of classifier-free guidance is the CLAP text embedding of `""`.
//! `ssv2a convert --kind audioldm` computes it with the checkpoint's CLAP text tower and stores
//! it in the pack (tensor [`UNCOND_TENSOR`]); a pack with the tower but without the tensor (the
//! demo's in-memory random pack) has it computed the same way when AudioLDM first runs;
//! [`Pipeline::set_uncond`] overrides both.

pub mod demo;
pub mod request;
pub mod settings;
mod stages;

pub use crate::media::image::Picture;
use request::{check_box, check_inputs};
pub use request::{check_boxes, AudioClip, ImageSource, Mode, Request, SourceBox, VideoFrames};
pub use settings::{Overrides, Preset, Rank, Sampler, Settings};

use std::collections::BTreeMap;

use crate::media::image::RgbImage;
use crate::models::audioldm::{self, AudioLdm};
use crate::models::clap::{self, ClapAudio, ClapText};
use crate::models::clip::{ClipImage, ClipVision};
use crate::models::detect::{self, crop_source, Detector, MAX_SOURCES};
use crate::models::ssv2a::aggregator::AggregatorMode;
use crate::models::ssv2a::cycle_mix::MixInput;
use crate::models::ssv2a::{Aggregator, Ssv2a};
use crate::rng::Rng;
use crate::tokenize::RobertaTokenizer;
use crate::{Error, Gpu, HostTensor, Result, Tensor, Weights};

/// Name of the stored unconditional embedding in an AudioLDM pack ([film_dim], unit norm).
pub const UNCOND_TENSOR: &str = crate::models::clap::UNCOND_TENSOR;

/// Output sample rate (AudioLDM's vocoder).
pub const SAMPLE_RATE: u32 = 16_000;

pub use crate::registry::Model;

/// Where a model's weights come from.
#[derive(Clone)]
pub enum PackSource {
    /// A pack file, read when the model is loaded (native).
    #[cfg(not(target_arch = "wasm32"))]
    File(std::path::PathBuf),
    /// A pack already parsed (bytes from the web, or random weights).
    Weights(Weights),
}

/// Where a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Load(Model),
    Detect,
    Clip,
    CycleMix,
    Aggregate,
    /// Sampler steps.
    Diffusion,
    /// VAE decoder and vocoder.
    Decode,
    /// Tokenizer and CLAP text tower (text to audio).
    TextEncoder,
    /// CLAP audio tower on the audio sources.
    AudioEncoder,
    /// CLAP audio tower on AudioLDM's candidates.
    Rank,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stage::Load(m) => write!(f, "load {m}"),
            Stage::Detect => f.write_str("detect"),
            Stage::Clip => f.write_str("CLIP"),
            Stage::CycleMix => f.write_str("Cycle Mix"),
            Stage::Aggregate => f.write_str("aggregate"),
            Stage::Diffusion => f.write_str("diffusion"),
            Stage::Decode => f.write_str("decode"),
            Stage::TextEncoder => f.write_str("CLAP text"),
            Stage::AudioEncoder => f.write_str("CLAP audio"),
            Stage::Rank => f.write_str("rank candidates"),
        }
    }
}

/// A progress event: `done` of `total` units of `stage` (0 of n when it starts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub stage: Stage,
    pub done: usize,
    pub total: usize,
}

/// A source as it went into the remixer.
#[derive(Clone, Debug, PartialEq)]
pub struct UsedSource {
    /// "image", a class name, or "box" for user boxes.
    pub label: String,
    pub xyxy: Option<[f32; 4]>,
    pub score: Option<f32>,
    pub weight: f32,
    /// The detection number (see [`SourceBox::detection`]); None for the whole image, a frame
    /// and drawn boxes.
    pub detection: Option<usize>,
}

impl UsedSource {
    fn whole(label: String, weight: f32) -> UsedSource {
        UsedSource { label, xyxy: None, score: None, weight, detection: None }
    }
}

/// How a text-to-audio prompt was tokenized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromptTokens {
    /// Text tokens fed to the tower (besides `<s>` and `</s>`).
    pub tokens: usize,
    /// The tokenizer's limit (AudioLDM: 512 with `<s>` and `</s>`).
    pub max_length: usize,
    /// Whether the prompt had more tokens and lost its tail (as AudioLDM cuts it).
    pub truncated: bool,
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct Output {
    /// Mono, [`SAMPLE_RATE`] Hz, float (not clipped).
    pub waveform: Vec<f32>,
    pub sample_rate: u32,
    pub mode: Mode,
    /// Per scene (one, or one per video frame): the sources in slot order.
    pub sources: Vec<Vec<UsedSource>>,
    /// The CLAP-space embedding AudioLDM was conditioned on.
    pub clap: Vec<f32>,
    /// Seconds per stage, in order.
    pub timings: Vec<(Stage, f64)>,
    /// Peak GPU memory of the run (allocated by ssv2a's pool, bytes).
    pub peak_gpu_bytes: u64,
    /// Text to audio: how the prompt was tokenized (None in the other modes).
    pub prompt: Option<PromptTokens>,
    /// Every candidate's score (cosine similarity with the ranking target), in candidate
    /// order; empty when there was one candidate or ranking was off.
    pub candidates: Vec<f32>,
    /// The candidate kept.
    pub chosen: usize,
}

pub use crate::clock::now_s;

/// The packs and the models loaded from them.
pub struct Pipeline {
    gpu: Gpu,
    packs: BTreeMap<Model, PackSource>,
    detector: Option<Detector>,
    clip: Option<ClipVision>,
    ssv2a: Option<Ssv2a>,
    audioldm: Option<(AudioLdm, Option<Vec<f32>>)>,
    aggregator: Option<Aggregator>,
    uncond: Option<Vec<f32>>,
    /// The AudioLDM pack's CLAP text tower and tokenizer (text to audio), released with it.
    clap_text: Option<(ClapText, RobertaTokenizer)>,
    /// The AudioLDM pack's CLAP audio tower (ranking, audio sources), released with it.
    clap_audio: Option<ClapAudio>,
}

/// Progress and cancellation of one run.
struct Run<'a> {
    progress: &'a mut dyn FnMut(Event),
    cancel: &'a dyn Fn() -> bool,
    timings: Vec<(Stage, f64)>,
}

impl Run<'_> {
    fn event(&mut self, stage: Stage, done: usize, total: usize) {
        (self.progress)(Event { stage, done, total });
    }
    fn check(&self) -> Result<()> {
        if (self.cancel)() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }
    fn time(&mut self, stage: Stage, t0: f64) {
        self.timings.push((stage, now_s() - t0));
    }
}

impl Pipeline {
    pub fn new(gpu: &Gpu) -> Pipeline {
        Pipeline {
            gpu: gpu.clone(),
            packs: BTreeMap::new(),
            detector: None,
            clip: None,
            ssv2a: None,
            audioldm: None,
            aggregator: None,
            uncond: None,
            clap_text: None,
            clap_audio: None,
        }
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Set (or replace) a model's pack; a loaded model of that family is released.
    pub fn set_pack(&mut self, model: Model, source: PackSource) {
        self.release(model);
        self.packs.insert(model, source);
    }

    /// The installed packs of a models folder (`ssv2a fetch`'s layout: `<dir>/<manifest>.safetensors`);
    /// missing ones are left out (a run that needs one says which).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn use_models_dir(&mut self, dir: &std::path::Path) {
        for m in Model::ALL {
            let p = dir.join(m.pack_file());
            if p.is_file() {
                self.set_pack(m, PackSource::File(p));
            }
        }
    }

    /// Which models have a pack.
    pub fn has_pack(&self, model: Model) -> bool {
        self.packs.contains_key(&model)
    }

    /// The unconditional embedding for classifier-free guidance (overrides the pack's).
    pub fn set_uncond(&mut self, uncond: Vec<f32>) {
        self.uncond = Some(uncond);
    }

    /// Drop a loaded model and free the pool's unused buffers (its weights among them).
    pub fn release(&mut self, model: Model) {
        let was = self.is_loaded(model);
        match model {
            Model::Detector => self.detector = None,
            Model::Clip => self.clip = None,
            Model::Ssv2a => self.ssv2a = None,
            Model::AudioLdm => {
                self.audioldm = None;
                self.clap_text = None;
                self.clap_audio = None;
            }
            Model::Aggregator => self.aggregator = None,
        }
        if was {
            self.gpu.trim_pool();
        }
    }

    fn done_with(&mut self, model: Model, settings: &Settings) {
        if settings.release_after_use {
            self.release(model);
        }
    }

    pub fn is_loaded(&self, model: Model) -> bool {
        match model {
            Model::Detector => self.detector.is_some(),
            Model::Clip => self.clip.is_some(),
            Model::Ssv2a => self.ssv2a.is_some(),
            Model::AudioLdm => self.audioldm.is_some(),
            Model::Aggregator => self.aggregator.is_some(),
        }
    }

    fn weights(&self, model: Model) -> Result<Weights> {
        let src = self.packs.get(&model).ok_or_else(|| {
            Error::Format(format!(
                "no {model} weights: install them with `ssv2a fetch {}` (pack `{}`), or run `ssv2a demo` to try the pipeline on random weights",
                model.manifest(),
                model.pack_file()
            ))
        })?;
        let w = match src {
            #[cfg(not(target_arch = "wasm32"))]
            PackSource::File(p) => Weights::from_file(&self.gpu, p)?,
            PackSource::Weights(w) => w.clone(),
        };
        w.expect_kind(model.kind())?;
        Ok(w)
    }

    /// Check that every pack `models` need is present and of the right kind and format version,
    /// reading only the headers of pack files.
    pub fn check_packs(&self, models: &[Model]) -> Result<()> {
        for &m in models {
            match self.packs.get(&m) {
                None => {
                    self.weights(m)?;
                }
                #[cfg(not(target_arch = "wasm32"))]
                Some(PackSource::File(p)) => check_pack_header(p, m.kind())?,
                Some(PackSource::Weights(w)) => w.expect_kind(m.kind())?,
            }
        }
        Ok(())
    }

    fn load(&mut self, model: Model, run: &mut Run) -> Result<()> {
        if self.is_loaded(model) {
            return Ok(());
        }
        run.check()?;
        let t0 = now_s();
        run.event(Stage::Load(model), 0, 1);
        let w = self.weights(model)?;
        match model {
            Model::Detector => self.detector = Some(Detector::load(&w)?),
            Model::Clip => self.clip = Some(ClipVision::load(&w)?),
            Model::Ssv2a => self.ssv2a = Some(Ssv2a::load(&w)?),
            Model::AudioLdm => {
                let ldm = AudioLdm::load(&w)?;
                let fd = ldm.unet.config.film_dim();
                let uncond = if w.contains(UNCOND_TENSOR) { Some(w.host(UNCOND_TENSOR, &[fd])?.data) } else { None };
                self.audioldm = Some((ldm, uncond));
            }
            Model::Aggregator => self.aggregator = Some(Aggregator::load(&w)?),
        }
        run.event(Stage::Load(model), 1, 1);
        run.time(Stage::Load(model), t0);
        Ok(())
    }

    /// The official detection on one image: its sources, best first, as editable boxes.
    pub async fn detect(&mut self, image: &RgbImage, settings: &detect::Settings) -> Result<Vec<SourceBox>> {
        let mut run = Run { progress: &mut |_| {}, cancel: &|| false, timings: vec![] };
        self.load(Model::Detector, &mut run)?;
        let det = self.detector.as_ref().ok_or_else(|| Error::Format("detector not loaded".into()))?;
        let found = det.sources(&self.gpu, &[image], settings).await?;
        Ok(found.iter().flatten().enumerate().map(|(k, s)| SourceBox::detected(&s.detection, k)).collect())
    }

    /// The models a request needs.
    pub fn needs(request: &Request) -> Result<Vec<Model>> {
        let mode = request.mode()?;
        if mode == Mode::TextToAudio {
            return Ok(vec![Model::AudioLdm]);
        }
        let mut m = vec![];
        let detects = match mode {
            Mode::ImageToAudio => request.images[0].sources.is_none(),
            Mode::VideoToAudio => true,
            Mode::Composition | Mode::TextToAudio => false,
        };
        if detects {
            m.push(Model::Detector);
        }
        if mode != Mode::Composition || !request.images.is_empty() {
            m.push(Model::Clip);
        }
        m.push(Model::Ssv2a);
        if mode == Mode::VideoToAudio {
            m.push(Model::Aggregator);
        }
        m.push(Model::AudioLdm);
        Ok(m)
    }

    /// Run a request. `progress` gets an [`Event`] at the start and end of every stage and
    /// after every Cycle Mix round and sampler step; `cancel` is polled as often and stops the
    /// run with [`Error::Cancelled`].
    pub async fn generate(&mut self, request: &Request, settings: &Settings, progress: &mut dyn FnMut(Event), cancel: &dyn Fn() -> bool) -> Result<Output> {
        settings.check()?;
        let mode = request.mode()?;
        check_inputs(request)?;
        if !request.texts.is_empty() {
            return Err(Error::Format("text sources need CLIP's text tower and the DALLE-2 prior, which this version of ssv2a does not have yet".into()));
        }
        let needs = Self::needs(request)?;
        self.check_packs(&needs)?;
        if mode == Mode::TextToAudio {
            self.check_prompt_pack()?;
        }
        self.gpu.reset_peak();
        let mut run = Run { progress, cancel, timings: vec![] };
        let mut noise = Rng::new(settings.seed);
        let mut prompt = None;
        let (clap, sources) = match mode {
            Mode::TextToAudio => {
                let text = request.prompt.as_deref().ok_or_else(|| Error::arg("request", "no prompt"))?;
                let (clap, tokens) = self.prompt_clap(text, &mut run).await?;
                prompt = Some(tokens);
                (clap, vec![vec![UsedSource::whole("prompt".into(), 1.0)]])
            }
            Mode::ImageToAudio => self.image_clap(&request.images[0], settings, &mut noise, &mut run).await?,
            Mode::Composition => self.composition_clap(&request.images, &request.audios, settings, &mut noise, &mut run).await?,
            Mode::VideoToAudio => {
                let v = request.video.as_ref().ok_or_else(|| Error::arg("request", "no video"))?;
                self.video_clap(v, settings, &mut noise, &mut run).await?
            }
        };
        if settings.release_after_use {
            for m in [Model::Detector, Model::Clip, Model::Ssv2a, Model::Aggregator] {
                self.release(m);
            }
        }
        let (waveform, candidates, chosen) = self.audio_ranked(&clap, settings, &mut run).await?;
        if settings.release_after_use {
            self.release(Model::AudioLdm);
        }
        let peak = self.gpu.memory().peak_allocated;
        Ok(Output { waveform, sample_rate: SAMPLE_RATE, mode, sources, clap, timings: run.timings, peak_gpu_bytes: peak, prompt, candidates, chosen })
    }
}

/// Check a pack file's header: ssv2a format, version and `kind` (reads only the header).
#[cfg(not(target_arch = "wasm32"))]
pub fn check_pack_header(path: &std::path::Path, kind: &str) -> Result<()> {
    let meta = read_pack_meta(path)?;
    crate::weights::check_pack_meta(&meta, &path.display().to_string(), kind)
}

/// A pack file's `__metadata__` (reads only the header).
#[cfg(not(target_arch = "wasm32"))]
pub fn read_pack_meta(path: &std::path::Path) -> Result<BTreeMap<String, String>> {
    use std::io::Read;
    let name = path.display().to_string();
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(format!("reading weight pack {name}"), e))?;
    let mut n = [0u8; 8];
    f.read_exact(&mut n).map_err(|_| Error::Format(format!("{name}: not a safetensors file (shorter than 8 bytes)")))?;
    let len = u64::from_le_bytes(n);
    if len > 100 << 20 {
        return Err(Error::Format(format!("{name}: not a safetensors file (header of {len} bytes)")));
    }
    let mut head = vec![0u8; 8 + len as usize];
    head[..8].copy_from_slice(&n);
    f.read_exact(&mut head[8..]).map_err(|_| Error::Format(format!("{name}: truncated safetensors header")))?;
    let v: serde_json::Value = serde_json::from_slice(&head[8..]).map_err(|e| Error::Format(format!("{name}: not a safetensors file ({e})")))?;
    // A truncated pack (an interrupted copy) is found here, before any model runs: the data
    // must reach the end of the last tensor.
    let data_end = v
        .as_object()
        .map(|o| o.iter().filter(|(k, _)| *k != "__metadata__").filter_map(|(_, t)| t.get("data_offsets")?.get(1)?.as_u64()).max().unwrap_or(0))
        .unwrap_or(0);
    let file_len = f.metadata().map_err(|e| Error::io(format!("reading weight pack {name}"), e))?.len();
    let need = 8 + len + data_end;
    if file_len < need {
        return Err(Error::Format(format!("{name}: truncated weight pack ({file_len} bytes, its header describes {need}); copy or convert it again")));
    }
    let meta: BTreeMap<String, String> = v
        .get("__metadata__")
        .and_then(|m| m.as_object())
        .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string()))).collect())
        .unwrap_or_default();
    Ok(meta)
}
