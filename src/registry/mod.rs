//! Every model kind in one table: its pack kind (`ssv2a convert --kind`), the pipeline model
//! that loads it, its manifest and pack file, the names the web API accepts, the `ssv2a stage`
//! stages it serves, and its converter. Adding a kind is one entry of [`KINDS`] (plus, for a
//! model the pipeline runs, a [`Model`] variant and its loaded field in the pipeline).
//!
//! This module sits above `models/` (it names their converters) and below `pipeline`, `cli`,
//! `wasm` and `fetch`, which look kinds up here instead of spelling them.

#[cfg(not(target_arch = "wasm32"))]
pub mod convert;

use crate::convert::plan::{CheckpointSource, Plan};
use crate::convert::Checkpoint;
use crate::models;
use crate::{Error, Result};

#[cfg(not(target_arch = "wasm32"))]
pub use convert::{convert_checkpoint, ConvertJob, Converted};

/// The model families a pipeline loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Model {
    Detector,
    Clip,
    Ssv2a,
    AudioLdm,
    Aggregator,
}

/// A checkpoint (with its optional `--config` JSON) → the conversion plan and the tensors it
/// reads.
pub type Converter = for<'a> fn(&'a Checkpoint, Option<&serde_json::Value>) -> Result<(Plan, CheckpointSource<'a>)>;

/// A step after planning that computes tensors on the GPU (AudioLDM: the CLAP text embedding
/// of "" for guidance). Natively it blocks on the GPU.
pub type Complete = for<'a> fn(&mut Plan, &CheckpointSource<'a>) -> Result<()>;

/// One model kind.
pub struct Kind {
    /// Pack kind and `ssv2a convert --kind`.
    pub name: &'static str,
    /// For messages.
    pub title: &'static str,
    /// The pipeline model that loads this kind's packs (None: not run by the pipeline yet).
    pub model: Option<Model>,
    /// Its manifest in `models/` (what `ssv2a fetch` installs); the pack file is
    /// `<manifest>.safetensors`.
    pub manifest: &'static str,
    /// Names the web API takes for it (`Generator.set_pack(name, …)`), besides `name`.
    pub aliases: &'static [&'static str],
    /// `ssv2a stage` stages served by this kind's packs (../shared/spec/interfaces.md).
    pub stages: &'static [&'static str],
    /// The converter (None: this version cannot convert the kind yet).
    pub convert: Option<Converter>,
    /// Run after the converter, before the pack is written.
    pub complete: Option<Complete>,
}

/// Every kind of the convert contract (../shared/spec/interfaces.md).
pub const KINDS: &[Kind] = &[
    Kind {
        name: models::audioldm::KIND,
        title: "AudioLDM",
        model: Some(Model::AudioLdm),
        manifest: "audioldm-s-full-v2",
        aliases: &[],
        stages: &["unet", "vae", "hifigan", "clap-audio", "clap-text"],
        convert: Some(convert_audioldm),
        complete: Some(complete_audioldm),
    },
    Kind {
        name: models::ssv2a::KIND,
        title: "SSV2A",
        model: Some(Model::Ssv2a),
        manifest: "ssv2a",
        aliases: &[],
        stages: &["manifold-clip", "manifold-clap", "generator", "remixer"],
        convert: Some(convert_ssv2a),
        complete: None,
    },
    Kind {
        name: models::ssv2a::aggregator::KIND,
        title: "temporal aggregator",
        model: Some(Model::Aggregator),
        manifest: "aggregator",
        aliases: &[],
        stages: &["aggregator"],
        convert: Some(convert_aggregator),
        complete: None,
    },
    Kind {
        name: models::clip::KIND,
        title: "CLIP",
        model: Some(Model::Clip),
        manifest: "clip-vit-l14",
        aliases: &[],
        stages: &["clip-vision", "clip-text"],
        convert: Some(convert_clip),
        complete: None,
    },
    Kind {
        name: models::yolo::KIND,
        title: "detector (YOLOv8)",
        model: Some(Model::Detector),
        manifest: "yolov8x-oiv7",
        aliases: &["detector"],
        stages: &["yolo"],
        convert: Some(convert_yolo),
        complete: None,
    },
    Kind { name: "prior", title: "DALLE-2 prior", model: None, manifest: "dalle2-prior", aliases: &[], stages: &["prior-net"], convert: None, complete: None },
];

/// The AudioLDM v1 releases `--audioldm` chooses between (`ssv2a fetch`, `ssv2a generate`): the
/// flag's value and the manifest (= pack file stem) of that release. The first is the default,
/// [`Model::AudioLdm`]'s manifest.
pub const AUDIOLDM_RELEASES: &[(&str, &str)] = &[("s", "audioldm-s-full-v2"), ("m", "audioldm-m-full"), ("l", "audioldm-l-full")];

/// The manifest of the AudioLDM release `size` (`s`, `m` or `l`).
pub fn audioldm_manifest(size: &str) -> Result<&'static str> {
    AUDIOLDM_RELEASES.iter().find(|(s, _)| *s == size).map(|(_, m)| *m).ok_or_else(|| {
        let known: Vec<String> = AUDIOLDM_RELEASES.iter().map(|(s, m)| format!("{s} ({m})")).collect();
        Error::arg("--audioldm", format!("`{size}` is not an AudioLDM release: {}", known.join(", ")))
    })
}

/// The kind called `name` (its pack kind or an alias).
pub fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name || k.aliases.contains(&name))
}

/// The kind called `name`, or an error listing the known ones.
pub fn kind_or_err(name: &str) -> Result<&'static Kind> {
    kind(name).ok_or_else(|| Error::Format(format!("unknown kind `{name}` (known: {})", names(|_| true).join(", "))))
}

/// Names of the kinds that pass `keep`.
pub fn names(keep: impl Fn(&Kind) -> bool) -> Vec<&'static str> {
    KINDS.iter().filter(|k| keep(k)).map(|k| k.name).collect()
}

/// Whether this build converts `kind`.
pub fn is_convertible(kind_name: &str) -> bool {
    kind(kind_name).is_some_and(|k| k.convert.is_some())
}

/// The kind whose packs serve `stage`.
pub fn stage_kind(stage: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.stages.contains(&stage))
}

/// Every `ssv2a stage` stage.
pub fn stages() -> Vec<&'static str> {
    KINDS.iter().flat_map(|k| k.stages.iter().copied()).collect()
}

impl Model {
    pub const ALL: [Model; 5] = [Model::Detector, Model::Clip, Model::Ssv2a, Model::AudioLdm, Model::Aggregator];

    /// Its entry in [`KINDS`].
    pub fn info(self) -> &'static Kind {
        // Every Model has exactly one entry (tested in `every_model_has_one_kind`).
        KINDS.iter().find(|k| k.model == Some(self)).unwrap_or(&KINDS[0])
    }

    /// Pack kind (`ssv2a convert --kind`).
    pub fn kind(self) -> &'static str {
        self.info().name
    }

    /// The model's manifest in `models/` (what `ssv2a fetch` installs).
    pub fn manifest(self) -> &'static str {
        self.info().manifest
    }

    /// File name of the installed pack (the manifests' `pack`).
    pub fn pack_file(self) -> String {
        format!("{}.safetensors", self.manifest())
    }

    /// The model a web API name refers to (a kind name or an alias).
    pub fn named(name: &str) -> Result<Model> {
        kind(name).and_then(|k| k.model).ok_or_else(|| {
            let known: Vec<&str> = KINDS.iter().filter(|k| k.model.is_some()).flat_map(|k| k.aliases.iter().copied().chain([k.name])).collect();
            Error::arg("model", format!("unknown model `{name}` ({})", known.join(", ")))
        })
    }
}

impl std::fmt::Display for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.info().title)
    }
}

/// AudioLDM: the config is read from the checkpoint ([`models::audioldm::resolve`]): tensor
/// shapes, then `--config`, then the checkpoint's own `hyper_parameters` (a Lightning
/// checkpoint's `LatentDiffusion` arguments, when it carries them as a plain dict), then the
/// released defaults, listed in the pack's `config_defaults`.
fn convert_audioldm<'a>(ckpt: &'a Checkpoint, config: Option<&serde_json::Value>) -> Result<(Plan, CheckpointSource<'a>)> {
    use models::audioldm::resolve::{resolve, Stated};
    let root = if ckpt.get("state_dict").is_some() { "state_dict" } else { "" };
    let src = CheckpointSource::new(ckpt, root)?;
    let mut stated = vec![];
    if let Some(v) = config {
        stated.push(Stated { origin: "--config".into(), json: v });
    }
    let embedded = ["hyper_parameters", "hparams"]
        .iter()
        .filter(|_| !root.is_empty())
        .find_map(|k| ckpt.get(k).and_then(|v| v.to_json().ok()).filter(|j| j.is_object()).map(|j| (*k, j)));
    if let Some((k, j)) = &embedded {
        stated.push(Stated { origin: format!("the checkpoint's `{k}`"), json: j });
    }
    let resolved = resolve(&src, &stated)?;
    let mut plan = models::audioldm::plan(&src, &resolved.config)?;
    if !resolved.notes.is_empty() {
        plan.metadata.insert(models::audioldm::CONFIG_DEFAULTS_META.into(), resolved.notes.join("; "));
    }
    models::audioldm::check_complete(&plan, &src)?;
    Ok((plan, src))
}

#[cfg(not(target_arch = "wasm32"))]
fn complete_audioldm(plan: &mut Plan, src: &CheckpointSource) -> Result<()> {
    convert::uncond_on_gpu(plan, src)
}

#[cfg(target_arch = "wasm32")]
fn complete_audioldm(_: &mut Plan, src: &CheckpointSource) -> Result<()> {
    use crate::convert::plan::TensorSource;
    Err(Error::Format(format!("{}: converting an AudioLDM checkpoint runs natively only (`ssv2a convert`)", src.describe())))
}

fn convert_ssv2a<'a>(ckpt: &'a Checkpoint, config: Option<&serde_json::Value>) -> Result<(Plan, CheckpointSource<'a>)> {
    let src = CheckpointSource::new(ckpt, "")?;
    let Some(v) = config else {
        return Err(Error::Format("--kind ssv2a needs --config ssv2a.json (the released model's config)".into()));
    };
    Ok((models::ssv2a::plan(&src, &models::ssv2a::Config::from_json(v)?)?, src))
}

fn convert_aggregator<'a>(ckpt: &'a Checkpoint, config: Option<&serde_json::Value>) -> Result<(Plan, CheckpointSource<'a>)> {
    let src = CheckpointSource::new(ckpt, "")?;
    let cfg = models::ssv2a::AggregatorConfig::from_source(&src, config)?;
    Ok((models::ssv2a::aggregator::plan(&src, &cfg)?, src))
}

fn convert_clip<'a>(ckpt: &'a Checkpoint, config: Option<&serde_json::Value>) -> Result<(Plan, CheckpointSource<'a>)> {
    let src = CheckpointSource::new(ckpt, "")?;
    Ok((models::clip::plan(&src, config)?, src))
}

fn convert_yolo<'a>(ckpt: &'a Checkpoint, config: Option<&serde_json::Value>) -> Result<(Plan, CheckpointSource<'a>)> {
    let (src, cfg) = models::yolo::from_checkpoint(ckpt, config)?;
    Ok((models::yolo::plan(&src, &cfg)?, src))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_has_one_kind() {
        for m in Model::ALL {
            let n = KINDS.iter().filter(|k| k.model == Some(m)).count();
            assert_eq!(n, 1, "{m:?}");
            assert_eq!(Model::named(m.kind()).unwrap(), m);
        }
    }

    #[test]
    fn the_default_audioldm_release_is_the_kinds_manifest() {
        assert_eq!(audioldm_manifest("s").unwrap(), Model::AudioLdm.manifest());
        assert_eq!(audioldm_manifest("l").unwrap(), "audioldm-l-full");
        let err = audioldm_manifest("xl").unwrap_err().to_string();
        assert!(err.starts_with("--audioldm") && err.contains("`xl`") && err.contains("m (audioldm-m-full)"), "{err}");
    }

    #[test]
    fn names_and_stages_are_unique() {
        let mut all: Vec<&str> = KINDS.iter().flat_map(|k| k.aliases.iter().copied().chain([k.name])).collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "a kind name or alias is used twice");
        let mut st = stages();
        let n = st.len();
        st.sort();
        st.dedup();
        assert_eq!(st.len(), n, "a stage is served by two kinds");
        assert_eq!(stage_kind("unet").map(|k| k.name), Some("audioldm"));
        assert!(Model::named("detector").is_ok() && Model::named("yolo").is_ok() && Model::named("prior").is_err());
    }
}
