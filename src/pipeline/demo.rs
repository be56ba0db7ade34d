//! `ssv2a demo`: the whole pipeline at reduced size on seeded random weights built in memory,
//! so a fresh machine can run every stage (and every kernel family) with no download. The
//! sound is not meaningful: the weights are random.
//!
//! Sizes: a YOLOv8n-width detector with 8 classes, a 2-layer CLIP ViT (patch 32, width 64,
//! 224 px input as the real one), SSV2A with 64-d CLIP/CLAP/manifold spaces and the real 64
//! slots, and an AudioLDM whose latent, mel and waveform have the real geometry (8 × 256 × 16
//! latent for 10 s, 64 mel bins, 16 kHz) with 32-channel networks, and a 2-layer, 64-wide CLAP
//! text tower (with the tokenizer tests' 1761-token vocabulary as its tokenizer) whose embedding of `""` is guidance's unconditional embedding, computed as
//! `ssv2a convert` computes a real pack's (in memory when AudioLDM first runs; stored by
//! [`write_packs`]).

use std::collections::BTreeMap;

use super::{Model, PackSource, Pipeline, UNCOND_TENSOR};
use crate::media::image::RgbImage;
use crate::models::ssv2a::{AggregatorConfig, Config as Ssv2aConfig};
use crate::models::{audioldm, clap, clip, ssv2a, yolo};
use crate::rng::Rng;
use crate::{Error, Gpu, HostTensor, Result, Weights};

/// Embedding width of the demo's CLIP, CLAP and manifold spaces.
pub const DEMO_DIM: usize = 64;

/// Seed of the demo's random weights (`--seed` varies the run, not the weights).
pub const WEIGHTS_SEED: u64 = 7;

/// Class names of the demo detector.
pub const DEMO_CLASSES: [&str; 8] = ["Car", "Dog", "Bird", "Tree", "Person", "Bicycle", "Waterfall", "Train"];

fn json(v: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Format(e.to_string()))
}

/// The demo detector's config.
pub fn yolo_config() -> yolo::Config {
    let mut c = yolo::Config::n(DEMO_CLASSES.len());
    c.names = DEMO_CLASSES.iter().map(|s| s.to_string()).collect();
    c
}

pub fn clip_config() -> clip::Config {
    clip::Config {
        embed_dim: DEMO_DIM,
        image_resolution: 224,
        vision_layers: 2,
        vision_width: 64,
        vision_patch_size: 32,
        vision_heads: 4,
        context_length: 77,
        vocab_size: 49408,
        transformer_width: 64,
        transformer_heads: 4,
        transformer_layers: 1,
    }
}

pub fn ssv2a_config() -> Ssv2aConfig {
    let mut c = Ssv2aConfig::official();
    c.clip_dim = DEMO_DIM;
    c.clap_dim = DEMO_DIM;
    c.manifold_dim = DEMO_DIM;
    c.manifold.layers = vec![64, 64, 128, 128];
    c.generator.layers = vec![64, 64, 96, 96];
    c.remixer.styler.embed_dim = DEMO_DIM;
    c
}

pub fn audioldm_config() -> Result<audioldm::AudioLdmConfig> {
    let v = serde_json::json!({
        "first_stage_config": {"params": {"embed_dim": 8, "ddconfig": {
            "double_z": true, "z_channels": 8, "resolution": 256, "in_channels": 1, "out_ch": 1,
            "ch": 32, "ch_mult": [1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}}},
        "h": {"resblock": "1", "upsample_rates": [5, 4, 2, 2, 2], "upsample_kernel_sizes": [16, 16, 8, 4, 4],
              "upsample_initial_channel": 32, "resblock_kernel_sizes": [3, 7, 11],
              "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "num_mels": 64,
              "sampling_rate": 16000, "hop_size": 160},
        "unet_config": {"params": {"image_size": 64, "extra_film_condition_dim": DEMO_DIM, "extra_film_use_concat": true,
            "in_channels": 8, "out_channels": 8, "model_channels": 32, "attention_resolutions": [2],
            "num_res_blocks": 1, "channel_mult": [1, 2], "num_head_channels": 16, "use_spatial_transformer": true,
            "transformer_depth": 1}},
        "ldm": {"linear_start": 0.0015, "linear_end": 0.0195, "timesteps": 1000, "channels": 8, "latent_f_size": 16},
        "clap_text": demo_text_config(),
        "clap_audio": demo_audio_config()
    });
    audioldm::AudioLdmConfig::from_json(&v)
}

/// The demo AudioLDM pack's CLAP text tower: a 2-layer, 64-wide RoBERTa with 4 heads, a
/// 256-token vocabulary (ids 0..=2 are `<s>`, `<pad>`, `</s>` as in roberta-base) and the
/// real position table (514), so `""` is embedded at AudioLDM's length of 512.
/// The demo AudioLDM pack's tokenizer: the small byte-level BPE vocabulary trained for the
/// tokenizer tests (tests/fixtures/tokenizer/roberta/, see tests/reference/README.md), so
/// `demo --write-packs DIR` then `generate --models DIR --prompt …` runs text to audio end to end.
pub const DEMO_TOKENIZER_VOCAB_JSON: &str = include_str!("../../tests/fixtures/tokenizer/roberta/vocab.json");
/// Its `merges.txt`.
pub const DEMO_TOKENIZER_MERGES_TXT: &str = include_str!("../../tests/fixtures/tokenizer/roberta/merges.txt");
/// Entries in [`DEMO_TOKENIZER_VOCAB_JSON`]: the demo text tower's vocabulary size.
pub const DEMO_TOKENIZER_VOCAB: usize = 1761;

pub fn demo_text_config() -> clap::TextConfig {
    clap::TextConfig {
        vocab_size: DEMO_TOKENIZER_VOCAB,
        hidden_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 256,
        max_position_embeddings: 514,
        type_vocab_size: 1,
        joint_embed_shape: DEMO_DIM,
        ..clap::TextConfig::default()
    }
}

/// The demo AudioLDM pack's CLAP audio tower: HTSAT's real front end and geometry (48 kHz,
/// 10 s clips, 64 mel bins, a 256×256 image, 4×4 patches, windows of 8) at 16 wide, two blocks
/// per stage, so ranking and audio sources run on random weights.
pub fn demo_audio_config() -> clap::AudioConfig {
    clap::AudioConfig {
        embed_dim: 16,
        depths: vec![2, 2, 2, 2],
        num_heads: vec![2, 2, 4, 8],
        mlp_hidden: vec![64, 128, 256, 512],
        joint_embed_shape: DEMO_DIM,
        ..clap::AudioConfig::htsat_tiny()
    }
}

pub fn aggregator_config() -> AggregatorConfig {
    AggregatorConfig { emb_dim: DEMO_DIM, ..AggregatorConfig::official() }
}

/// Model sizes of the random packs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// Reduced widths, real geometry (the demo).
    Demo,
    /// The released models' configs (YOLOv8x-oiv7, ViT-L/14, SSV2A, AudioLDM-S-full-v2, the
    /// aggregator): for memory and speed measurements without the checkpoints.
    Full,
}

/// Seeded random packs for every model of the pipeline. With `record`, each pack keeps what
/// the models took from it so that [`write_packs`] can save it after the models are loaded.
pub fn packs(gpu: &Gpu, seed: u64, record: bool) -> Result<BTreeMap<Model, Weights>> {
    packs_of(gpu, seed, record, Size::Demo)
}

/// [`packs`] at a given [`Size`].
pub fn packs_of(gpu: &Gpu, seed: u64, record: bool, size: Size) -> Result<BTreeMap<Model, Weights>> {
    let full = size == Size::Full;
    let mut out = BTreeMap::new();
    let ycfg = if full { yolo::Config::x_oiv7() } else { yolo_config() };
    out.insert(Model::Detector, Weights::from_bytes(gpu, yolo::random_pack(&ycfg, seed, true)?, "random yolo weights")?);
    let random = |kind: &str, cfg: String, k: u64, fixed: BTreeMap<String, HostTensor>, extra: BTreeMap<String, String>| {
        Weights::random_with(gpu, kind, &cfg, seed.wrapping_add(k), true, fixed, extra, record)
    };
    let (ccfg, scfg, acfg, lcfg) = if full {
        let lcfg = audioldm::AudioLdmConfig { clap_audio: Some(clap::AudioConfig::htsat_tiny()), ..audioldm::AudioLdmConfig::s_full_v2() };
        (clip::Config::vit_l14(), Ssv2aConfig::official(), AggregatorConfig::official(), lcfg)
    } else {
        (clip_config(), ssv2a_config(), aggregator_config(), audioldm_config()?)
    };
    out.insert(Model::Clip, random(clip::KIND, json(&ccfg)?, 1, BTreeMap::new(), BTreeMap::new()));
    out.insert(Model::Ssv2a, random(ssv2a::KIND, json(&scfg)?, 2, BTreeMap::new(), BTreeMap::new()));
    out.insert(Model::Aggregator, random(ssv2a::aggregator::KIND, json(&acfg)?, 3, BTreeMap::new(), BTreeMap::new()));
    let mut fixed = BTreeMap::from([("scale_factor".to_string(), HostTensor::new(Vec::<usize>::new(), vec![1.0])?)]);
    let components = if full {
        // Full-size random packs measure generation: a real pack's stored embedding costs
        // nothing at run time, so these get a random unit vector instead of a RoBERTa-base.
        let dim = scfg.clap_dim;
        let mut uncond = Rng::new(seed ^ 0xd3e0).normals(dim);
        let norm = uncond.iter().map(|v| v * v).sum::<f32>().sqrt();
        uncond.iter_mut().for_each(|v| *v /= norm);
        fixed.insert(UNCOND_TENSOR.to_string(), HostTensor::new([dim], uncond)?);
        format!("unet,vae,vocoder,{}", clap::AUDIO_COMPONENT)
    } else {
        // The demo's comes from its random CLAP text tower, as a converted pack's does (the
        // pipeline computes it when the model loads; `write_packs` stores it).
        format!("unet,vae,vocoder,{},{}", clap::TEXT_COMPONENT, clap::AUDIO_COMPONENT)
    };
    let mut extra = BTreeMap::from([("components".to_string(), components), ("ema".to_string(), "false".to_string())]);
    if !full {
        extra.insert(clap::TOKENIZER_VOCAB_META.to_string(), DEMO_TOKENIZER_VOCAB_JSON.to_string());
        extra.insert(clap::TOKENIZER_MERGES_META.to_string(), DEMO_TOKENIZER_MERGES_TXT.to_string());
    }
    out.insert(Model::AudioLdm, random(audioldm::KIND, json(&lcfg)?, 4, fixed, extra));
    Ok(out)
}

/// A pipeline on the demo packs.
pub fn pipeline(gpu: &Gpu, seed: u64, record: bool) -> Result<(Pipeline, BTreeMap<Model, Weights>)> {
    pipeline_of(gpu, seed, record, Size::Demo)
}

/// A pipeline on random packs of `size`.
pub fn pipeline_of(gpu: &Gpu, seed: u64, record: bool, size: Size) -> Result<(Pipeline, BTreeMap<Model, Weights>)> {
    let packs = packs_of(gpu, seed, record, size)?;
    let mut p = Pipeline::new(gpu);
    for (m, w) in &packs {
        p.set_pack(*m, PackSource::Weights(w.clone()));
    }
    Ok((p, packs))
}

/// Load every model from recording demo packs and write them as pack files
/// `<dir>/<manifest>.safetensors`, the layout [`Pipeline::use_models_dir`] reads.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_packs(gpu: &Gpu, seed: u64, dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
    let packs = packs(gpu, seed, true)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let mut written = vec![];
    for (m, w) in &packs {
        let bytes = match m {
            Model::Detector => yolo::random_pack(&yolo_config(), seed, true)?,
            Model::Clip => {
                clip::ClipVision::load(w)?;
                w.random_to_pack()?
            }
            Model::Ssv2a => {
                ssv2a::Ssv2a::load(w)?;
                w.random_to_pack()?
            }
            Model::Aggregator => {
                ssv2a::Aggregator::load(w)?;
                w.random_to_pack()?
            }
            Model::AudioLdm => {
                // Loaded in the pipeline's order (UNet, decoder, then the text tower), so the
                // random weights are the ones an in-memory demo run draws.
                audioldm::AudioLdm::load(w)?;
                clap::load_text(w)?;
                clap::load_tokenizer(w)?;
                clap::load_audio(w)?;
                // The fixed tensors are only recorded when asked for.
                w.host("scale_factor", &[])?;
                with_uncond_embedding(gpu, w.random_to_pack()?, w.source())?
            }
        };
        let path = dir.join(m.pack_file());
        crate::fs::write_atomic(&path, &bytes)?;
        written.push(path);
    }
    Ok(written)
}

/// An AudioLDM pack's bytes with [`UNCOND_TENSOR`] computed from its CLAP text tower and
/// added, as `ssv2a convert` stores it.
#[cfg(not(target_arch = "wasm32"))]
fn with_uncond_embedding(gpu: &Gpu, bytes: Vec<u8>, name: &str) -> Result<Vec<u8>> {
    use crate::weights::{parse_header, serialize_pack, PackTensor};
    let w = Weights::from_bytes(gpu, bytes.clone(), name)?;
    let u = crate::registry::convert::block_on(clap::uncond_from_pack(&w))?
        .ok_or_else(|| Error::Format(format!("{name}: the demo AudioLDM pack has no CLAP text tower")))?;
    let raw = &bytes[..];
    let (start, infos, meta) = parse_header(raw, name)?;
    let mut tensors: Vec<PackTensor> = infos
        .into_iter()
        .map(|(k, i)| PackTensor { name: k, shape: i.shape.clone(), dtype: i.dtype, data: raw[start + i.data_offsets.0..start + i.data_offsets.1].to_vec() })
        .collect();
    tensors.push(PackTensor::f32(UNCOND_TENSOR, vec![u.len()], &u));
    serialize_pack(&tensors, &meta)
}

/// A synthetic street scene (sky, sun, buildings with windows, a road, a car, a tree), w × h.
pub fn scene(w: usize, h: usize) -> RgbImage {
    let mut data = vec![0u8; w * h * 3];
    let put = |data: &mut Vec<u8>, x: usize, y: usize, c: [u8; 3]| {
        let i = (y * w + x) * 3;
        data[i..i + 3].copy_from_slice(&c);
    };
    let (wf, hf) = (w as f32, h as f32);
    for y in 0..h {
        for x in 0..w {
            let (u, v) = (x as f32 / wf, y as f32 / hf);
            let mut c = if v < 0.6 { [(110.0 + 100.0 * v) as u8, (160.0 + 60.0 * v) as u8, 235] } else { [70, 70, 75] };
            if v > 0.78 && v < 0.8 && (x / 12) % 2 == 0 {
                c = [230, 220, 120];
            }
            let (dx, dy) = (u - 0.82, v - 0.15);
            if dx * dx + dy * dy < 0.004 {
                c = [255, 225, 90];
            }
            for (bx0, bx1, top) in [(0.05f32, 0.22f32, 0.25f32), (0.25, 0.4, 0.35), (0.44, 0.58, 0.18)] {
                if u > bx0 && u < bx1 && v > top && v < 0.6 {
                    let win = ((u - bx0) * wf) as usize % 10 < 5 && ((v - top) * hf) as usize % 12 < 6;
                    c = if win { [250, 240, 170] } else { [120, 90, 80] };
                }
            }
            if u > 0.3 && u < 0.5 && v > 0.66 && v < 0.76 {
                c = [200, 30, 40];
            }
            for wx in [0.34f32, 0.46] {
                let (dx, dy) = (u - wx, v - 0.77);
                if dx * dx + dy * dy < 0.0007 {
                    c = [20, 20, 20];
                }
            }
            if u > 0.68 && u < 0.71 && v > 0.42 && v < 0.62 {
                c = [90, 60, 30];
            }
            let (dx, dy) = (u - 0.695, v - 0.36);
            if dx * dx + 0.5 * dy * dy < 0.005 {
                c = [40, 130, 50];
            }
            put(&mut data, x, y, c);
        }
    }
    RgbImage { width: w, height: h, data }
}
