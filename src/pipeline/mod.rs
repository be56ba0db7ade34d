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
//! Not reproduced either, by choice: AudioLDM's CLAP re-ranking of its 3 candidates (needs the
//! CLAP audio tower; candidate 0 is kept, see [`audioldm::GenerateSettings::candidates`]), and the
//! random choice of 63 sources when more are given (the best-scoring are kept).
//!
//! The unconditional embedding of classifier-free guidance is the CLAP text embedding of `""`.
//! `ssv2a convert --kind audioldm` computes it with the checkpoint's CLAP text tower and stores
//! it in the pack (tensor [`UNCOND_TENSOR`]); a pack with the tower but without the tensor (the
//! demo's in-memory random pack) has it computed the same way when AudioLDM first runs;
//! [`Pipeline::set_uncond`] overrides both.

pub mod demo;
pub mod request;
pub mod settings;

pub use crate::media::image::Picture;
use request::{check_box, check_inputs};
pub use request::{AudioClip, ImageSource, Mode, Request, SourceBox, VideoFrames};
pub use settings::{Overrides, Preset, Sampler, Settings};

use std::collections::BTreeMap;

use crate::media::image::RgbImage;
use crate::models::audioldm::{self, AudioLdm};
use crate::models::clap::{self, ClapText};
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
}

impl UsedSource {
    fn whole(label: String, weight: f32) -> UsedSource {
        UsedSource { label, xyxy: None, score: None, weight }
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
        let found = det.sources(&self.gpu, std::slice::from_ref(image), settings).await?;
        Ok(found.iter().flatten().map(|s| SourceBox::detected(&s.detection)).collect())
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
        m.extend([Model::Clip, Model::Ssv2a]);
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
        if !request.audios.is_empty() {
            return Err(Error::Format("audio sources need the CLAP audio tower, which this version of ssv2a does not have yet".into()));
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
            Mode::Composition => self.composition_clap(&request.images, settings, &mut noise, &mut run).await?,
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
        let waveform = self.audio(&clap, settings, &mut run).await?;
        if settings.release_after_use {
            self.release(Model::AudioLdm);
        }
        let peak = self.gpu.memory().peak_allocated;
        Ok(Output { waveform, sample_rate: SAMPLE_RATE, mode, sources, clap, timings: run.timings, peak_gpu_bytes: peak, prompt })
    }

    /// Text to audio needs the AudioLDM pack's CLAP text tower and tokenizer files: checked from
    /// the pack's header before any model runs.
    fn check_prompt_pack(&self) -> Result<()> {
        let (meta, name) = match self.packs.get(&Model::AudioLdm) {
            None => return self.weights(Model::AudioLdm).map(|_| ()),
            #[cfg(not(target_arch = "wasm32"))]
            Some(PackSource::File(p)) => (read_pack_meta(p)?, p.display().to_string()),
            Some(PackSource::Weights(w)) => (w.metadata().clone(), w.source().to_string()),
        };
        if !meta.get("components").is_some_and(|c| c.split(',').any(|x| x == clap::TEXT_COMPONENT)) {
            return Err(Error::Format(format!(
                "{name}: this AudioLDM pack has no CLAP text tower (components: {}); {}",
                meta.get("components").map(|s| s.as_str()).unwrap_or("none"),
                clap::TOKENIZER_FIX
            )));
        }
        if !clap::has_tokenizer_meta(&meta) {
            return Err(clap::no_tokenizer(&name));
        }
        Ok(())
    }

    /// The prompt's CLAP text embedding (the text encoder stage: loading the tower and the
    /// tokenizer the first time, tokenizing, the tower, L2 normalisation).
    async fn prompt_clap(&mut self, prompt: &str, run: &mut Run<'_>) -> Result<(Vec<f32>, PromptTokens)> {
        self.load(Model::AudioLdm, run)?;
        run.check()?;
        let t0 = now_s();
        run.event(Stage::TextEncoder, 0, 1);
        if self.clap_text.is_none() {
            let w = self.weights(Model::AudioLdm)?;
            let tok = clap::load_tokenizer(&w)?;
            let text = clap::load_text(&w)?;
            if let Some((_, slot @ None)) = &mut self.audioldm {
                // A pack without a stored "" embedding (the demo's in-memory one): take it from
                // this same tower rather than loading the tower a second time.
                *slot = Some(clap::uncond_embedding(&text).await?);
            }
            self.clap_text = Some((text, tok));
        }
        let (model, tok) = self.clap_text.as_ref().ok_or_else(|| Error::Format("CLAP text tower not loaded".into()))?;
        let (emb, enc) = clap::prompt_embedding(model, tok, prompt).await?;
        let fd = self.audioldm.as_ref().map(|(l, _)| l.unet.config.film_dim()).unwrap_or(emb.len());
        if emb.len() != fd {
            return Err(Error::Format(format!(
                "the AudioLDM pack's CLAP text tower makes {}-d embeddings but its UNet takes {fd}-d ones: the pack is inconsistent",
                emb.len()
            )));
        }
        let used = enc.attention_mask.iter().filter(|&&m| m != 0).count();
        let tokens = PromptTokens { tokens: used.saturating_sub(2), max_length: enc.ids.len(), truncated: enc.truncated };
        run.event(Stage::TextEncoder, 1, 1);
        run.time(Stage::TextEncoder, t0);
        Ok((emb, tokens))
    }

    /// Sources of one image (given or detected), with their crops.
    async fn image_sources(
        &mut self,
        images: &[&RgbImage],
        given: Option<&[SourceBox]>,
        settings: &Settings,
        run: &mut Run<'_>,
    ) -> Result<Vec<Vec<(SourceBox, RgbImage)>>> {
        let first = images.first().ok_or_else(|| Error::arg("detect", "no images"))?;
        let size = (first.width, first.height);
        if let Some(boxes) = given {
            let img = images[0];
            if boxes.len() > MAX_SOURCES {
                return Err(Error::arg("sources", format!("{} sources: at most {MAX_SOURCES} fit the remixer's slots", boxes.len())));
            }
            let mut out = vec![];
            for (i, b) in boxes.iter().enumerate() {
                check_box(b, img, i)?;
                out.push((b.clone(), crop_source(img, b.xyxy, size, settings.detect.crop)?));
            }
            return Ok(vec![out]);
        }
        self.load(Model::Detector, run)?;
        run.check()?;
        let t0 = now_s();
        run.event(Stage::Detect, 0, images.len());
        let det = self.detector.as_ref().ok_or_else(|| Error::Format("detector not loaded".into()))?;
        let owned: Vec<RgbImage> = images.iter().map(|i| (*i).clone()).collect();
        let found = det.sources(&self.gpu, &owned, &settings.detect).await?;
        self.done_with(Model::Detector, settings);
        run.event(Stage::Detect, images.len(), images.len());
        run.time(Stage::Detect, t0);
        Ok(found.into_iter().map(|srcs| detect::slot_sources(&srcs).iter().map(|s| (SourceBox::detected(&s.detection), s.crop.clone())).collect()).collect())
    }

    async fn embed(&mut self, images: &[ClipImage<'_>], settings: &Settings, run: &mut Run<'_>) -> Result<HostTensor> {
        self.load(Model::Clip, run)?;
        run.check()?;
        let t0 = now_s();
        run.event(Stage::Clip, 0, images.len());
        let clip = self.clip.as_ref().ok_or_else(|| Error::Format("CLIP not loaded".into()))?;
        // Chunks bound the activation size (ViT-L/14 at 17 images is ~60 MB per activation).
        let mut data = vec![];
        let mut d = 0;
        for chunk in images.chunks(17) {
            let e = clip.embed_images(chunk).await?;
            d = e.shape[1];
            data.extend(e.data);
            run.check()?;
        }
        self.done_with(Model::Clip, settings);
        run.event(Stage::Clip, images.len(), images.len());
        run.time(Stage::Clip, t0);
        HostTensor::new([images.len(), d], data)
    }

    async fn mix(&mut self, input: &MixInput, settings: &Settings, noise: &mut Rng, run: &mut Run<'_>) -> Result<HostTensor> {
        self.load(Model::Ssv2a, run)?;
        run.check()?;
        let t0 = now_s();
        let rounds = settings.cycle.its + 1;
        run.event(Stage::CycleMix, 0, rounds);
        let model = self.ssv2a.as_ref().ok_or_else(|| Error::Format("SSV2A not loaded".into()))?;
        let cancel = run.cancel;
        let progress = &mut *run.progress;
        let out = model
            .cycle_mix_with(input, &settings.cycle, noise, None, &mut |i, n| progress(Event { stage: Stage::CycleMix, done: i, total: n }), cancel)
            .await?;
        run.time(Stage::CycleMix, t0);
        Ok(out)
    }

    fn ssv2a_dims(&mut self, run: &mut Run<'_>) -> Result<(usize, usize)> {
        self.load(Model::Ssv2a, run)?;
        let c = &self.ssv2a.as_ref().ok_or_else(|| Error::Format("SSV2A not loaded".into()))?.config;
        Ok((c.clip_dim, c.remixer.slot))
    }

    /// Slot sequence of one image scene: [global, sources…] with weights.
    fn scene_input(global: &[f32], sources: &[(SourceBox, Vec<f32>)], image_weight: f32, slot: usize) -> Result<MixInput> {
        let rows: Vec<&[f32]> = sources.iter().map(|(_, e)| e.as_slice()).collect();
        let mut input = MixInput::image(global, &rows, slot)?;
        let mut w = vec![1f32; slot];
        w[0] = image_weight;
        for (k, (b, _)) in sources.iter().enumerate() {
            w[k + 1] = b.weight;
        }
        if w.iter().any(|&x| x != 1.0) {
            input.weights = Some(w);
        }
        Ok(input)
    }

    async fn image_clap(&mut self, image: &ImageSource, settings: &Settings, noise: &mut Rng, run: &mut Run<'_>) -> Result<(Vec<f32>, Vec<Vec<UsedSource>>)> {
        let (clip_dim, slot) = self.ssv2a_dims(run)?;
        let rgb = image.picture.to_rgb();
        let mut found = self.image_sources(&[&rgb], image.sources.as_deref(), settings, run).await?;
        let srcs = found.pop().unwrap_or_default();
        if srcs.len() + 1 > slot {
            return Err(Error::arg("sources", format!("{} sources do not fit the remixer's {slot} slots (slot 0 is the image)", srcs.len())));
        }
        let mut clip_in = vec![ClipImage::from(&image.picture)];
        clip_in.extend(srcs.iter().map(|(_, c)| ClipImage::Rgb(c)));
        let e = self.embed(&clip_in, settings, run).await?;
        check_dim(e.shape[1], clip_dim)?;
        let rows: Vec<(SourceBox, Vec<f32>)> =
            srcs.iter().enumerate().map(|(k, (b, _))| (b.clone(), e.data[(k + 1) * clip_dim..(k + 2) * clip_dim].to_vec())).collect();
        let input = Self::scene_input(&e.data[..clip_dim], &rows, image.weight, slot)?;
        let clap = self.mix(&input, settings, noise, run).await?;
        let mut used = vec![UsedSource::whole(format!("image {}", image.name), image.weight)];
        used.extend(srcs.iter().map(|(b, _)| b.used()));
        Ok((clap.data, vec![used]))
    }

    async fn composition_clap(
        &mut self,
        images: &[ImageSource],
        settings: &Settings,
        noise: &mut Rng,
        run: &mut Run<'_>,
    ) -> Result<(Vec<f32>, Vec<Vec<UsedSource>>)> {
        let (clip_dim, slot) = self.ssv2a_dims(run)?;
        if images.len() + 1 > slot {
            return Err(Error::arg("sources", format!("{} images do not fit the remixer's {slot} slots (slot 0 stays empty)", images.len())));
        }
        let clip_in: Vec<ClipImage> = images.iter().map(|i| ClipImage::from(&i.picture)).collect();
        let e = self.embed(&clip_in, settings, run).await?;
        check_dim(e.shape[1], clip_dim)?;
        let rows: Vec<&[f32]> = e.data.chunks_exact(clip_dim).collect();
        let manifold_dim = self.ssv2a.as_ref().map(|m| m.config.manifold_dim).unwrap_or(0);
        let mut input = MixInput::multimodal(&rows, &[], slot, clip_dim, manifold_dim)?;
        if images.iter().any(|i| i.weight != 1.0) {
            let mut w = vec![1f32; slot];
            for (k, i) in images.iter().enumerate() {
                w[k + 1] = i.weight;
            }
            input.weights = Some(w);
        }
        let clap = self.mix(&input, settings, noise, run).await?;
        let used = images.iter().map(|i| UsedSource::whole(format!("image {}", i.name), i.weight)).collect();
        Ok((clap.data, vec![used]))
    }

    async fn video_clap(&mut self, video: &VideoFrames, settings: &Settings, noise: &mut Rng, run: &mut Run<'_>) -> Result<(Vec<f32>, Vec<Vec<UsedSource>>)> {
        let (clip_dim, slot) = self.ssv2a_dims(run)?;
        if video.frames.is_empty() {
            return Err(Error::arg("video", format!("{}: no frames", video.name)));
        }
        let refs: Vec<&RgbImage> = video.frames.iter().collect();
        let per_frame = self.image_sources(&refs, None, settings, run).await?;
        let mut clip_in = vec![];
        for (f, srcs) in video.frames.iter().zip(&per_frame) {
            clip_in.push(ClipImage::Rgb(f));
            clip_in.extend(srcs.iter().map(|(_, c)| ClipImage::Rgb(c)));
        }
        let e = self.embed(&clip_in, settings, run).await?;
        check_dim(e.shape[1], clip_dim)?;
        // One batched Cycle Mix over all frames ([F, slot, d]), as upstream.
        let mut clips = vec![];
        let mut used = vec![];
        let mut row = 0;
        for srcs in &per_frame {
            let global = e.data[row * clip_dim..(row + 1) * clip_dim].to_vec();
            let rows: Vec<(SourceBox, Vec<f32>)> =
                srcs.iter().enumerate().map(|(k, (b, _))| (b.clone(), e.data[(row + 1 + k) * clip_dim..(row + 2 + k) * clip_dim].to_vec())).collect();
            row += 1 + srcs.len();
            clips.extend(Self::scene_input(&global, &rows, 1.0, slot)?.clips.data);
            let mut u = vec![UsedSource::whole("frame".into(), 1.0)];
            u.extend(srcs.iter().map(|(b, _)| b.used()));
            used.push(u);
        }
        let f = video.frames.len();
        let input = MixInput { clips: HostTensor::new([f, slot, clip_dim], clips)?, fixed_src: None, weights: None };
        let claps = self.mix(&input, settings, noise, run).await?; // [F, C]
        self.load(Model::Aggregator, run)?;
        run.check()?;
        let t0 = now_s();
        run.event(Stage::Aggregate, 0, 1);
        let agg = self.aggregator.as_ref().ok_or_else(|| Error::Format("aggregator not loaded".into()))?;
        let c = claps.shape[1];
        let t = Tensor::from_slice(&self.gpu, &claps.data, [1, f, c])?;
        let mode = if settings.aggregator_dropout { AggregatorMode::OfficialTrainDropout } else { AggregatorMode::Eval };
        let out = agg.sample(&t, settings.aggregator_var_samples, mode, noise).await?;
        run.event(Stage::Aggregate, 1, 1);
        run.time(Stage::Aggregate, t0);
        Ok((out.data, used))
    }

    /// AudioLDM alone: a CLAP-space embedding → waveform with `settings.generate` and
    /// `settings.seed`.
    pub async fn clap_to_audio(&mut self, clap: &[f32], settings: &Settings, progress: &mut dyn FnMut(Event), cancel: &dyn Fn() -> bool) -> Result<Vec<f32>> {
        settings.check()?;
        let mut run = Run { progress, cancel, timings: vec![] };
        self.audio(clap, settings, &mut run).await
    }

    async fn audio(&mut self, clap: &[f32], settings: &Settings, run: &mut Run<'_>) -> Result<Vec<f32>> {
        self.load(Model::AudioLdm, run)?;
        run.check()?;
        if self.uncond.is_none() && matches!(&self.audioldm, Some((_, None))) {
            // A pack with CLAP's text tower but no stored embedding (the demo's random pack):
            // compute it as the converter does.
            let u = crate::models::clap::uncond_from_pack(&self.weights(Model::AudioLdm)?).await?;
            if let Some((_, slot)) = &mut self.audioldm {
                *slot = u;
            }
        }
        let (ldm, pack_uncond) = self.audioldm.as_ref().ok_or_else(|| Error::Format("AudioLDM not loaded".into()))?;
        let fd = ldm.unet.config.film_dim();
        if clap.len() != fd {
            return Err(Error::Format(format!(
                "the SSV2A pack makes {}-d CLAP embeddings but the AudioLDM pack's UNet takes {fd}-d ones: the packs do not belong together",
                clap.len()
            )));
        }
        let uncond = self.uncond.as_ref().or(pack_uncond.as_ref()).ok_or_else(|| {
            Error::Format(format!(
                "the AudioLDM pack has no `{UNCOND_TENSOR}` (the CLAP text embedding of \"\", needed for classifier-free guidance) and none was given; \
                 the pack was converted without CLAP's text tower: convert the checkpoint again with this version (`ssv2a convert --kind audioldm` stores it) or pass one with --uncond FILE"
            ))
        })?;
        if uncond.len() != fd {
            return Err(Error::Format(format!("the unconditional embedding has {} values, the UNet takes {fd}", uncond.len())));
        }
        let gs = &settings.generate;
        let emb = Tensor::from_slice(&self.gpu, clap, [1, fd])?;
        let t0 = now_s();
        let steps = gs.steps;
        run.event(Stage::Diffusion, 0, steps);
        let mut t_diffused = None;
        let cancel = run.cancel;
        let wav = {
            let progress = &mut *run.progress;
            let mut on_step = |p: audioldm::sampler::Progress| {
                progress(Event { stage: Stage::Diffusion, done: p.step, total: p.steps });
                if p.step == p.steps {
                    t_diffused = Some(now_s());
                    progress(Event { stage: Stage::Decode, done: 0, total: 1 });
                }
            };
            ldm.generate(&emb, uncond, gs, settings.seed, &mut on_step, cancel).await?
        };
        let samples = wav.to_vec().await?;
        let t1 = now_s();
        let td = t_diffused.unwrap_or(t1);
        run.timings.push((Stage::Diffusion, td - t0));
        run.timings.push((Stage::Decode, t1 - td));
        run.event(Stage::Decode, 1, 1);
        if samples.iter().any(|v| !v.is_finite()) {
            return Err(Error::Format("the generated waveform has NaN or infinite samples".into()));
        }
        Ok(samples)
    }
}

fn check_dim(got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(Error::Format(format!("the CLIP pack makes {got}-d embeddings but the SSV2A pack takes {want}-d ones: the packs do not belong together")));
    }
    Ok(())
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
    let meta: BTreeMap<String, String> = v
        .get("__metadata__")
        .and_then(|m| m.as_object())
        .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string()))).collect())
        .unwrap_or_default();
    Ok(meta)
}
