//! AudioLDM v1 (S-full-v2, which SSV2A was published with, and every other release or size) as
//! `audioldm==0.1.1` runs it for SSV2A: the latent-diffusion UNet with
//! FiLM conditioning ([`unet`]), DDIM and DPM-Solver++ sampling ([`sampler`]), the VAE decoder
//! ([`vae`]) and the HiFi-GAN vocoder ([`crate::models::hifigan`]).
//!
//! One pack (`kind = "audioldm"`) holds every part, with the original checkpoint's key names:
//! `model.diffusion_model.*` (the EMA weights when the checkpoint has them, as the official
//! sampling runs under `ema_scope`), `first_stage_model.{post_quant_conv,decoder}.*`,
//! `first_stage_model.vocoder.*` (weight norm folded if present) and `scale_factor`. Its
//! metadata lists the `components` it has, so a pack converted from a partial state dict still
//! loads the parts it holds.
//!
//! The pack's `config` metadata is the whole config in this crate's layout ([`AudioLdmConfig`]),
//! which `ssv2a convert` reads from the checkpoint ([`resolve`]: tensor shapes, `--config`, the
//! checkpoint's `hyper_parameters` and `betas`, release defaults, the last listed in the pack's
//! [`CONFIG_DEFAULTS_META`]), so loading never guesses. Packs converted before `resolve` existed
//! have the same `config` layout (the released s-full-v2 config, or `--config`'s, checked against
//! the shapes), so they load unchanged and need no reconversion.
//!
//! [`AudioLdm::generate`] is SSV2A's `emb_to_audio`: CLAP-space embeddings [B, 512] → x_T from a
//! seeded RNG → DDIM (200 steps, η = 1) or DPM-Solver++(2M) with guidance [`GUIDANCE`] on
//! [uncond; cond] → clamp rule → VAE → HiFi-GAN → waveforms [B, samples] at 16 kHz.

pub mod resolve;
pub mod sampler;
pub mod unet;
pub mod vae;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::convert::plan::{names_under, Plan, Recipe, TensorSource};
use crate::models::hifigan::{self, HifiGan};
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::weights::Weights;
use crate::{Error, Result};
use sampler::{Guided, Method, NoiseSchedule, Progress, Sampler, StepNoise};
use unet::{UNet, UnetConfig};
use vae::{Trace, Vae, VaeConfig};

/// Pack kind of AudioLDM packs.
pub const KIND: &str = "audioldm";

/// Pack metadata listing the config values a conversion took from the checkpoint's buffers or
/// the released defaults rather than from tensor shapes or a stated config ([`resolve`]).
pub const CONFIG_DEFAULTS_META: &str = "config_defaults";

/// The noise schedule and latent geometry (LDM config keys).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DiffusionConfig {
    pub timesteps: usize,
    pub linear_start: f64,
    pub linear_end: f64,
    /// Latent channels.
    pub channels: usize,
    /// Latent frequency bins.
    pub latent_f_size: usize,
}

impl Default for DiffusionConfig {
    fn default() -> Self {
        DiffusionConfig { timesteps: 1000, linear_start: 0.0015, linear_end: 0.0195, channels: 8, latent_f_size: 16 }
    }
}

/// Everything the pack's `config` metadata holds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AudioLdmConfig {
    pub vae: VaeConfig,
    pub vocoder: hifigan::Config,
    #[serde(default)]
    pub diffusion: DiffusionConfig,
    /// The UNet's constructor arguments (original names), when the pack has a UNet.
    #[serde(default)]
    pub unet: Option<serde_json::Value>,
    /// CLAP's text tower (`cond_stage_model.model.text_*`), when the pack has one. In a
    /// `--config` file a partial object (e.g. only `num_attention_heads`); the converter
    /// completes it from the tensor shapes ([`crate::models::clap::text::config_from_source`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clap_text: Option<crate::models::clap::TextConfig>,
    /// CLAP's audio tower (`cond_stage_model.model.audio_*`), when the pack has one. In a
    /// `--config` file a partial object (e.g. `spec_size`, `hop_size`); the converter completes
    /// it from the tensor shapes ([`crate::models::clap::audio::config_from_source`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clap_audio: Option<crate::models::clap::AudioConfig>,
}

impl AudioLdmConfig {
    /// `audioldm-s-full-v2` as `default_audioldm_config` builds it.
    pub fn s_full_v2() -> AudioLdmConfig {
        AudioLdmConfig {
            vae: VaeConfig::s_full_v2(),
            vocoder: hifigan::Config::audioldm_16k_64(),
            diffusion: DiffusionConfig::default(),
            unet: Some(serde_json::json!({
                "image_size": 64, "extra_film_condition_dim": 512, "extra_film_use_concat": true,
                "in_channels": 8, "out_channels": 8, "model_channels": 128,
                "attention_resolutions": [8, 4, 2], "num_res_blocks": 2, "channel_mult": [1, 2, 3, 5],
                "num_head_channels": 32, "use_spatial_transformer": true, "transformer_depth": 1
            })),
            clap_text: None,
            clap_audio: None,
        }
    }

    /// Read a config in this crate's layout or in AudioLDM's own (`first_stage_config`,
    /// `unet_config`, vocoder `h`, LDM params at top level or under `model.params`).
    pub fn from_json(v: &serde_json::Value) -> Result<AudioLdmConfig> {
        if v.get("vae").is_some() {
            return serde_json::from_value(v.clone()).map_err(|e| Error::Format(format!("AudioLDM config: {e}")));
        }
        let root = v.pointer("/model/params").unwrap_or(v);
        let mut cfg = AudioLdmConfig::s_full_v2();
        if let Some(fs) = root.pointer("/first_stage_config/params") {
            cfg.vae = serde_json::from_value(fs.clone()).map_err(|e| Error::Format(format!("first_stage_config: {e}")))?;
        }
        if let Some(h) = root.get("h").or_else(|| root.pointer("/vocoder/h")).or_else(|| root.get("vocoder")) {
            cfg.vocoder = serde_json::from_value(h.clone()).map_err(|e| Error::Format(format!("vocoder config: {e}")))?;
        }
        if let Some(u) = root.pointer("/unet_config/params") {
            cfg.unet = Some(u.clone());
        }
        if let Some(t) = root.get("clap_text").or_else(|| v.get("clap_text")) {
            cfg.clap_text = Some(serde_json::from_value(t.clone()).map_err(|e| Error::Format(format!("clap_text config: {e}")))?);
        }
        if let Some(t) = root.get("clap_audio").or_else(|| v.get("clap_audio")) {
            cfg.clap_audio = Some(serde_json::from_value(t.clone()).map_err(|e| Error::Format(format!("clap_audio config: {e}")))?);
        }
        let ldm = root.get("ldm").unwrap_or(root);
        let num = |k: &str| ldm.get(k).and_then(|x| x.as_f64());
        if let Some(t) = num("timesteps") {
            cfg.diffusion.timesteps = t as usize;
        }
        if let Some(x) = num("linear_start") {
            cfg.diffusion.linear_start = x;
        }
        if let Some(x) = num("linear_end") {
            cfg.diffusion.linear_end = x;
        }
        if let Some(x) = num("channels") {
            cfg.diffusion.channels = x as usize;
        }
        if let Some(x) = num("latent_f_size") {
            cfg.diffusion.latent_f_size = x as usize;
        }
        Ok(cfg)
    }
}

/// `model_ema.` name of a `model.` parameter (LitEma removes the dots).
pub fn ema_name(param: &str) -> String {
    format!("model_ema.{}", param.trim_start_matches("model.").replace('.', ""))
}

/// Converter rules: the parts of an AudioLDM state dict the runtime uses. The CLAP text
/// tower's config is read from the shapes (completed by `cfg.clap_text`) and stored in the
/// pack config; its unconditional embedding needs a GPU and is added by
/// [`crate::models::clap::add_uncond_embedding`].
pub fn plan(src: &dyn TensorSource, cfg: &AudioLdmConfig) -> Result<Plan> {
    use crate::models::clap;
    // A text config error is reported after the other parts' shape checks (a wrong --config
    // usually shows there first, with the tensor that disagrees).
    let (text, text_err) = match clap::text::config_from_source(src, clap::PREFIX, cfg.clap_text.as_ref()) {
        Ok(t) => (t, None),
        Err(e) => (None, Some(e)),
    };
    let audio = clap::audio::config_from_source(src, clap::PREFIX, cfg.clap_audio.as_ref())?;
    let cfg = &AudioLdmConfig { clap_text: text.clone(), clap_audio: audio.clone(), ..cfg.clone() };
    let mut plan = Plan::new(KIND, serde_json::to_string(cfg).map_err(|e| Error::Format(e.to_string()))?);
    let mut components = vec![];
    // VAE decoder + post_quant_conv.
    if src.contains("first_stage_model.decoder.conv_in.weight") {
        for name in names_under(src, "first_stage_model.decoder").into_iter().chain(names_under(src, "first_stage_model.post_quant_conv")) {
            let shape = src.shape(&name).unwrap_or_default();
            plan.copy(src, &name, &shape)?;
        }
        components.push("vae");
    }
    // HiFi-GAN, folding weight norm.
    let voc = names_under(src, "first_stage_model.vocoder");
    if !voc.is_empty() {
        let set: BTreeSet<&str> = voc.iter().map(|s| s.as_str()).collect();
        for name in &voc {
            if let Some(base) = name.strip_suffix(".weight_v") {
                let g = format!("{base}.weight_g");
                if !set.contains(g.as_str()) {
                    return Err(Error::missing(src.describe(), g.to_string()));
                }
                let shape = src.shape(name).unwrap_or_default();
                plan.push(format!("{base}.weight"), shape, Recipe::WeightNorm { g, v: name.clone() });
            } else if name.ends_with(".weight_g") {
                continue;
            } else {
                let shape = src.shape(name).unwrap_or_default();
                plan.copy(src, name, &shape)?;
            }
        }
        components.push("vocoder");
    }
    // UNet: the EMA copy when the checkpoint has one for every parameter.
    let unet = names_under(src, "model.diffusion_model");
    if !unet.is_empty() {
        let ema = unet.iter().all(|n| src.contains(&ema_name(n)));
        for name in &unet {
            let shape = src.shape(name).unwrap_or_default();
            if ema {
                plan.copy_as(src, &ema_name(name), name, &shape)?;
            } else {
                plan.copy(src, name, &shape)?;
            }
        }
        plan.metadata.insert("ema".into(), ema.to_string());
        components.push("unet");
    }
    if src.contains("scale_factor") {
        let shape = src.shape("scale_factor").unwrap_or_default();
        plan.copy(src, "scale_factor", &shape)?;
    } else if components.contains(&"vae") {
        return Err(Error::missing(src.describe(), "scale_factor"));
    }
    if let Some(c) = &text {
        clap::text::plan(&mut plan, src, clap::PREFIX, c)?;
        components.push(clap::TEXT_COMPONENT);
    }
    if let Some(c) = &audio {
        clap::audio::plan(&mut plan, src, clap::PREFIX, c)?;
        components.push(clap::AUDIO_COMPONENT);
    }
    if components.is_empty() && text_err.is_none() {
        return Err(Error::Format(format!("{}: no AudioLDM weights found (expected model.diffusion_model.*, first_stage_model.* keys)", src.describe())));
    }
    check_config(src, cfg, &components)?;
    if let Some(e) = text_err {
        return Err(e);
    }
    plan.metadata.insert("components".into(), components.join(","));
    Ok(plan)
}

/// A pack `generate` can run: the UNet (every parameter its config implies, with its shape),
/// the VAE decoder and the vocoder are all in `plan`. `ssv2a convert` and `fetch` check this;
/// golden tests convert single parts through [`plan`] directly.
pub fn check_complete(plan: &Plan, src: &dyn TensorSource) -> Result<()> {
    let components = plan.metadata.get("components").map(String::as_str).unwrap_or("");
    let have: Vec<&str> = components.split(',').collect();
    let missing: Vec<&str> = [
        ("unet", "the UNet (model.diffusion_model.*)"),
        ("vae", "the VAE decoder (first_stage_model.decoder.*)"),
        ("vocoder", "the vocoder (first_stage_model.vocoder.*)"),
    ]
    .iter()
    .filter(|(c, _)| !have.contains(c))
    .map(|(_, what)| *what)
    .collect();
    if !missing.is_empty() {
        return Err(Error::Format(format!("{}: not a complete AudioLDM checkpoint: no {}", src.describe(), missing.join(", no "))));
    }
    let cfg: AudioLdmConfig = serde_json::from_str(&plan.config_json).map_err(|e| Error::Format(format!("{}: plan config: {e}", src.describe())))?;
    let u = cfg.unet.as_ref().ok_or_else(|| Error::Format(format!("{}: the UNet config is missing", src.describe())))?;
    let shapes: BTreeMap<&str, &[usize]> = plan.tensors.iter().map(|t| (t.name.as_str(), t.shape.as_slice())).collect();
    let want = unet::param_shapes(&UnetConfig::from_json(u)?)?;
    for (name, shape) in &want {
        let key = format!("model.diffusion_model.{name}");
        match shapes.get(key.as_str()) {
            None => return Err(Error::missing(src.describe(), key)),
            Some(s) if *s != shape.as_slice() => return Err(Error::TensorShape { file: src.describe(), name: key, expected: shape.clone(), got: s.to_vec() }),
            Some(_) => {}
        }
    }
    // A tensor the config does not account for (a block the shapes-to-config reading missed,
    // or a layer this port does not implement) is an error here, not at load time.
    let known: BTreeSet<String> = want.into_iter().map(|(n, _)| format!("model.diffusion_model.{n}")).collect();
    if let Some(t) = plan.tensors.iter().find(|t| t.name.starts_with("model.diffusion_model.") && !known.contains(&t.name)) {
        return Err(Error::Format(format!(
            "{}: `{}` (shape {:?}) is not part of the UNet the other tensors describe; this port does not implement that layer",
            src.describe(),
            t.name,
            t.shape
        )));
    }
    Ok(())
}

/// The shapes that pin down each part's config, checked before anything is written, so a
/// checkpoint converted with the wrong `--config` fails with the key and both shapes.
fn check_config(src: &dyn TensorSource, cfg: &AudioLdmConfig, components: &[&str]) -> Result<()> {
    let mut want: Vec<(String, Vec<usize>)> = vec![];
    if components.contains(&"vae") {
        let d = &cfg.vae.ddconfig;
        let top = d.ch * d.ch_mult.last().copied().unwrap_or(0);
        want.push(("first_stage_model.post_quant_conv.weight".into(), vec![d.z_channels, cfg.vae.embed_dim, 1, 1]));
        want.push(("first_stage_model.decoder.conv_in.weight".into(), vec![top, d.z_channels, 3, 3]));
        want.push(("first_stage_model.decoder.conv_out.weight".into(), vec![d.out_ch, d.ch * d.ch_mult[0], 3, 3]));
    }
    if components.contains(&"vocoder") {
        let v = &cfg.vocoder;
        let c0 = v.upsample_initial_channel;
        want.push(("first_stage_model.vocoder.conv_pre.weight".into(), vec![c0, v.num_mels, 7]));
        for (i, &k) in v.upsample_kernel_sizes.iter().enumerate() {
            want.push((format!("first_stage_model.vocoder.ups.{i}.weight"), vec![c0 >> i, c0 >> (i + 1), k]));
        }
    }
    for (name, shape) in want {
        // Weight-normed checkpoints store `weight_v` with the same shape.
        let got = src.shape(&name).or_else(|| src.shape(&name.replace(".weight", ".weight_v")));
        match got {
            Some(g) if g == shape => {}
            Some(g) => {
                return Err(Error::Format(format!(
                    "{}: `{name}` has shape {g:?} but the config implies {shape:?}; does --config match this checkpoint?",
                    src.describe()
                )))
            }
            None => return Err(Error::missing(src.describe(), name.to_string())),
        }
    }
    Ok(())
}

/// The latent → waveform tail of `generate_sample`: the clamp rule, `latent / scale_factor`,
/// the VAE decoder and the vocoder.
pub struct Decoder {
    pub vae: Vae,
    pub vocoder: HifiGan,
    pub scale_factor: f32,
}

/// Checks the pack and returns its config.
pub fn pack_config(w: &Weights) -> Result<AudioLdmConfig> {
    w.expect_kind(KIND)?;
    AudioLdmConfig::from_json(&w.config::<serde_json::Value>()?)
}

/// Whether the pack holds `component` (`vae`, `vocoder`, `unet`).
pub fn has_component(w: &Weights, component: &str) -> bool {
    w.meta("components").map(|c| c.split(',').any(|x| x == component)).unwrap_or(false)
}

fn need(w: &Weights, component: &str) -> Result<()> {
    if has_component(w, component) {
        Ok(())
    } else {
        Err(Error::Format(format!("{}: this AudioLDM pack has no {component} (components: {})", w.source(), w.meta("components").unwrap_or("none"))))
    }
}

impl Decoder {
    pub fn load(w: &Weights) -> Result<Decoder> {
        let cfg = pack_config(w)?;
        need(w, "vae")?;
        need(w, "vocoder")?;
        let scale = w.host("scale_factor", &w.shape_of("scale_factor")?)?;
        if scale.data.len() != 1 || !scale.data[0].is_finite() || scale.data[0] == 0.0 {
            return Err(Error::Format(format!("{}: scale_factor must be one non-zero number", w.source())));
        }
        Ok(Decoder { vae: Vae::load(w, &cfg.vae)?, vocoder: HifiGan::load(&w.sub("first_stage_model.vocoder"), &cfg.vocoder)?, scale_factor: scale.data[0] })
    }

    /// The official rule before decoding: if max |latent| over the whole batch exceeds 100,
    /// every value is clamped to [−10, 10]. latent: [n, c, t, f] -> same.
    pub async fn clamp_rule(latent: &Tensor) -> Result<Tensor> {
        let flat = latent.reshape([latent.numel()])?;
        let m = flat.abs()?.max_last()?.to_vec().await?;
        if m[0] > 100.0 {
            latent.clamp(-10.0, 10.0)
        } else {
            Ok(latent.clone())
        }
    }

    /// VAE decode of a diffusion latent (multiplied by 1/scale_factor as AudioLDM does, with the
    /// reciprocal computed in f32). latent: [n, 8, t, f] -> mel [n, 1, 4t, 4f]
    pub fn latent_to_mel(&self, latent: &Tensor, trace: Option<&mut Trace>) -> Result<Tensor> {
        let z = latent.scale(1.0f32 / self.scale_factor)?;
        self.vae.decode(&z, trace)
    }

    /// mel [n, 1, frames, mels] -> waveform [n, 160·frames + 32]
    pub fn mel_to_waveform(&self, mel: &Tensor, trace: Option<&mut Trace>) -> Result<Tensor> {
        let [n, one, frames, mels] = mel.dims("hifigan")?;
        if one != 1 || mels != self.vocoder.config.num_mels {
            return Err(Error::shape("hifigan", format!("mel [n, 1, frames, {}]", self.vocoder.config.num_mels), mel.shape()));
        }
        let m = mel.reshape([n, frames, mels])?.permute(&[0, 2, 1])?;
        self.vocoder.forward(&m, trace)
    }

    /// The whole tail: clamp rule, decode, vocode. latent [n, 8, t, f] -> waveform [n, samples]
    pub async fn latent_to_waveform(&self, latent: &Tensor) -> Result<Tensor> {
        let z = Self::clamp_rule(latent).await?;
        let mel = self.latent_to_mel(&z, None)?;
        self.mel_to_waveform(&mel, None)
    }
}

/// The pack's UNet config (`unet_config.params` of the original).
pub fn unet_config(w: &Weights) -> Result<UnetConfig> {
    let cfg = pack_config(w)?;
    need(w, "unet")?;
    let u = cfg.unet.as_ref().ok_or_else(|| Error::Format(format!("{}: the pack config has no `unet` section", w.source())))?;
    UnetConfig::from_json(u)
}

/// Load the UNet of an AudioLDM pack (`model.diffusion_model.*`, strict).
pub fn load_unet(w: &Weights) -> Result<UNet> {
    let unet = UNet::load(w, &unet_config(w)?)?;
    w.sub("model.diffusion_model").finish()?;
    Ok(unet)
}

/// Latent frames per second of audio: SSV2A's `latent_t_size = int(duration · 25.6)`.
pub const LATENT_FRAMES_PER_SECOND: f64 = 25.6;

/// Latent time sizes for a duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatentFrames {
    /// `int(duration · 25.6)`: what SSV2A asks the UNet for.
    pub requested: usize,
    /// `requested` rounded up to a multiple of the UNet's [`UnetConfig::size_multiple`] (8 at
    /// full size): what actually runs.
    pub padded: usize,
}

/// `int(duration · 25.6)` rounded up to a multiple of `multiple`. Durations that are not finite,
/// not positive, shorter than one latent frame, or longer than `max_s` are an error.
pub fn latent_frames(duration_s: f64, multiple: usize, max_s: f64) -> Result<LatentFrames> {
    const OP: &str = "duration";
    if !duration_s.is_finite() || duration_s <= 0.0 {
        return Err(Error::arg(OP, format!("{duration_s} s: the duration must be a positive number of seconds")));
    }
    if duration_s > max_s {
        return Err(Error::arg(OP, format!("{duration_s} s is longer than the {max_s} s this runtime generates in one go")));
    }
    let requested = (duration_s * LATENT_FRAMES_PER_SECOND) as usize;
    if requested == 0 {
        return Err(Error::arg(OP, format!("{duration_s} s is shorter than one latent frame (1/{LATENT_FRAMES_PER_SECOND} s)")));
    }
    let m = multiple.max(1);
    Ok(LatentFrames { requested, padded: requested.div_ceil(m) * m })
}

/// Training timesteps T of every AudioLDM v1 checkpoint (`timesteps` in its config); run
/// settings are checked against it before a pack is read, the sampler again against the pack's.
pub const TRAIN_TIMESTEPS: usize = 1000;

/// SSV2A's classifier-free guidance scale (`emb_to_audio`'s `guidance_scale`).
pub const GUIDANCE: f32 = 2.5;
/// Most candidates [`AudioLdm::generate`] samples for one item.
pub const MAX_CANDIDATES: usize = 16;

/// Settings of [`AudioLdm::generate`]. `Default` is what SSV2A's `emb_to_audio` uses.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateSettings {
    /// DDIM with η = 1 upstream; DPM-Solver++(2M) for fewer steps.
    pub method: Method,
    /// DDIM: 200 upstream. DPM-Solver++: 20–25 is typical.
    pub steps: usize,
    /// Classifier-free guidance scale ([`GUIDANCE`] upstream).
    pub guidance: f32,
    /// Candidates per item (3 upstream). They are sampled in one batch like the original
    /// (candidate j of item i at row i + j·B); [`AudioLdm::generate`] keeps candidate 0,
    /// [`AudioLdm::generate_candidates`] decodes them all (the pipeline ranks them with CLAP).
    pub candidates: usize,
    /// Seconds of audio (10). The latent has `int(duration · 25.6)` frames; see
    /// [`AudioLdm::generate`] for durations the UNet cannot take directly.
    pub duration_s: f64,
}

impl Default for GenerateSettings {
    fn default() -> Self {
        GenerateSettings { method: Method::Ddim { eta: 1.0 }, steps: 200, guidance: GUIDANCE, candidates: 3, duration_s: 10.0 }
    }
}

/// The AudioLDM part of SSV2A: CLAP-space embedding → waveform (UNet + sampler + decoder).
pub struct AudioLdm {
    pub config: AudioLdmConfig,
    pub unet: UNet,
    pub decoder: Decoder,
    pub schedule: NoiseSchedule,
}

impl AudioLdm {
    /// Longest duration [`AudioLdm::generate`] accepts (the activations of a 60 s latent at
    /// batch 6 already exceed WebGPU's 128 MiB default storage binding).
    pub const MAX_DURATION_S: f64 = 60.0;

    /// Load the UNet and the decoder (VAE + vocoder) of an AudioLDM pack, strictly.
    pub fn load(w: &Weights) -> Result<AudioLdm> {
        let config = pack_config(w)?;
        let unet = load_unet(w)?;
        let decoder = Decoder::load(w)?;
        w.sub("first_stage_model").finish()?;
        if unet.config.in_channels != config.diffusion.channels || unet.config.out_channels != config.diffusion.channels {
            return Err(Error::Format(format!(
                "{}: UNet channels {}→{} but the latent has {}",
                w.source(),
                unet.config.in_channels,
                unet.config.out_channels,
                config.diffusion.channels
            )));
        }
        let schedule = NoiseSchedule::from_config(&config.diffusion)?;
        Ok(AudioLdm { config, unet, decoder, schedule })
    }

    /// Latent frames generated for `duration_s` (see [`latent_frames`]).
    pub fn latent_frames(&self, duration_s: f64) -> Result<LatentFrames> {
        latent_frames(duration_s, self.unet.config.size_multiple(), Self::MAX_DURATION_S)
    }

    /// Embedding → waveform, as SSV2A's `emb_to_audio` (AudioLDM `generate_sample`):
    /// x_T ~ N(0, I) from `Rng::new(seed)` (SSV2A always passes 42; the pipeline passes the run's seed), the sampler with classifier-free guidance on
    /// [uncond; cond], the clamp rule (over all candidates, as upstream), latent / scale_factor,
    /// VAE decoder and HiFi-GAN. Candidate 0 of each item is returned (only it is decoded);
    /// [`Self::generate_candidates`] returns every candidate.
    ///
    /// Durations: the latent has T = int(duration · 25.6) frames. The UNet needs T to be a
    /// multiple of 2^(levels − 1) (8 at full size: 5 s, 10 s, 15 s … work directly). Other
    /// durations are **rounded up** to the next such T and the waveform is **trimmed** to the
    /// length an unpadded T-frame latent would decode to (`vocoder.output_len(mel frames of T)`).
    /// Non-positive, non-finite, sub-frame or over-[`Self::MAX_DURATION_S`] durations are an error.
    ///
    /// `progress` is called after every sampler step; `cancel` is polled before every step and
    /// stops with [`Error::Cancelled`].
    /// emb: [B, film_dim] (L2-normalised CLAP-space vectors), uncond: [film_dim] -> [B, samples]
    pub async fn generate(
        &self,
        emb: &Tensor,
        uncond: &[f32],
        settings: &GenerateSettings,
        seed: u64,
        progress: &mut dyn FnMut(Progress),
        cancel: &dyn Fn() -> bool,
    ) -> Result<Tensor> {
        self.sample_decode(emb, uncond, settings, seed, progress, cancel, false).await
    }

    /// As [`Self::generate`], decoding every candidate: [B·candidates, samples], candidate j of
    /// item i at row i + j·B (the layout upstream ranks).
    pub async fn generate_candidates(
        &self,
        emb: &Tensor,
        uncond: &[f32],
        settings: &GenerateSettings,
        seed: u64,
        progress: &mut dyn FnMut(Progress),
        cancel: &dyn Fn() -> bool,
    ) -> Result<Tensor> {
        self.sample_decode(emb, uncond, settings, seed, progress, cancel, true).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn sample_decode(
        &self,
        emb: &Tensor,
        uncond: &[f32],
        settings: &GenerateSettings,
        seed: u64,
        progress: &mut dyn FnMut(Progress),
        cancel: &dyn Fn() -> bool,
        all: bool,
    ) -> Result<Tensor> {
        const OP: &str = "audioldm.generate";
        let fd = self.unet.config.film_dim();
        let [b, f] = emb.dims(OP)?;
        if f != fd || b == 0 {
            return Err(Error::shape(OP, format!("emb [B ≥ 1, {fd}]"), emb.shape()));
        }
        if uncond.len() != fd {
            return Err(Error::shape(OP, format!("uncond [{fd}]"), [uncond.len()]));
        }
        if settings.candidates == 0 || settings.candidates > MAX_CANDIDATES {
            return Err(Error::arg(OP, format!("{} candidates: 1..={MAX_CANDIDATES} are supported", settings.candidates)));
        }
        let frames = self.latent_frames(settings.duration_s)?;
        let steps = Sampler::new(&self.schedule, settings.method, settings.steps)?;
        let gpu = emb.gpu().clone();
        let n = b * settings.candidates;
        // [c; c; …]: candidate j of item i at row i + j·B.
        let reps: Vec<&Tensor> = std::iter::repeat_n(emb, settings.candidates).collect();
        let cond = Tensor::concat(&reps, 0)?;
        let uncond = Tensor::from_slice(&gpu, uncond, [1, fd])?.expand(&[n, fd])?;
        let guided = Guided::new(&self.unet, &cond, Some(&uncond), settings.guidance)?;
        let d = &self.config.diffusion;
        let shape = [n, d.channels, frames.padded, d.latent_f_size];
        let mut rng = Rng::new(seed);
        let x_t = sampler::initial_latent(&gpu, &shape, &mut rng)?;
        let latent = sampler::sample(&guided, &steps, x_t, &mut StepNoise::Rng(&mut rng), progress, cancel, None).await?;
        if cancel() {
            return Err(Error::Cancelled);
        }
        let latent = Decoder::clamp_rule(&latent).await?;
        let latent = if all { latent } else { latent.slice(0, 0, b, 1)? };
        let mel = self.decoder.latent_to_mel(&latent, None)?;
        let wav = self.decoder.mel_to_waveform(&mel, None)?;
        if frames.padded == frames.requested {
            return Ok(wav);
        }
        let mel_frames = mel.shape()[2] / frames.padded * frames.requested;
        let keep = self.decoder.vocoder.config.output_len(mel_frames).min(wav.shape()[1]);
        wav.slice(1, 0, keep, 1)
    }
}
