//! SSV2A's own networks (wguo86/SSV2A @ 7f01d5f, `ssv2a/model/*.py`; described in
//! `../shared/spec/ssv2a.md` §2–3), in eval mode, with the official state-dict key names:
//!
//! - [`manifold`]: the CMSS manifold, `Manifold { clip_encoder, clap_encoder }`
//!   (`manifold.py`), and its "fold" = average of N Gaussian samples;
//! - [`generator`]: the CLAP reconstructor `Generator` (`generator.py`), `fold2claps`;
//! - [`remixer`]: `Remixer { styler }` with the efficient-attention `ESALayer` (`remixer.py`,
//!   `modules.py`), shared with the aggregator;
//! - [`aggregator`]: temporal aggregation (`aggregator.py`), with the official train-mode
//!   dropout as an explicit option;
//! - [`cycle_mix`]: `Pipeline.cycle_mix` (`pipeline.py:107-155`);
//! - [`sampling`]: the variational "average of N samples" and injectable noise, plus an
//!   opt-in collapsed draw with the same distribution ([`VarSamples`]).
//!
//! Weights: `ssv2a convert --kind ssv2a` turns the official `ssv2a.pth` (a dict with
//! `manifold_state`, `generator_state`, `remixer_state`) plus `ssv2a.json` into one pack
//! (`kind = "ssv2a"`) whose tensors keep the checkpoint's names under those three prefixes;
//! the training-only scalars `logit_scale` and `self_logit_scale` are dropped.
//! `--kind aggregator` converts `agg.pth` (`kind = "aggregator"`).
//!
//! Deviations from the official code: none in the arithmetic. Randomness comes from
//! [`sampling::Noise`] (the crate's seeded [`crate::rng::Rng`], or injected tensors in tests)
//! instead of torch's and Python's global generators, so results match PyTorch only when the
//! noise is injected. See [`cycle_mix`] for the one computational shortcut (the candidates of
//! a round share one remixer pass, which is exact because the remixer is permutation
//! invariant) and how to run the literal per-candidate shuffle instead.

pub mod aggregator;
pub mod cycle_mix;
pub mod generator;
pub mod manifold;
pub mod mlp;
pub mod remixer;
pub mod sampling;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::convert::plan::{Plan, TensorSource};
use crate::tensor::Tensor;
use crate::weights::Weights;
use crate::{Error, Result};

pub use aggregator::{Aggregator, AggregatorConfig, DropoutMasks};
pub use cycle_mix::{CycleMixOptions, CycleMixTrace, MixInput, RemixMode};
pub use generator::Generator;
pub use manifold::Manifold;
pub use mlp::MlpSpec;
pub use remixer::Remixer;
pub use sampling::{Draw, DrawKind, Noise, VarSamples};

/// Pack kind of `ssv2a.pth` packs.
pub const KIND: &str = "ssv2a";
/// LayerNorm epsilon everywhere in SSV2A (PyTorch's default).
pub const LN_EPS: f32 = 1e-5;

pub use crate::models::Trace;

pub(crate) fn record(trace: &mut Option<&mut Trace>, name: String, t: &Tensor) {
    if let Some(tr) = trace.as_deref_mut() {
        tr.push((name, t.clone()));
    }
}

/// Run `f` with a sub-trace whose names get `prefix.` prepended.
pub(crate) fn sub_trace<T>(trace: &mut Option<&mut Trace>, prefix: &str, f: impl FnOnce(Option<&mut Trace>) -> Result<T>) -> Result<T> {
    match trace.as_deref_mut() {
        Some(tr) => {
            let mut sub = vec![];
            let out = f(Some(&mut sub))?;
            tr.extend(sub.into_iter().map(|(n, v)| (format!("{prefix}.{n}"), v)));
            Ok(out)
        }
        None => f(None),
    }
}

fn default_true() -> bool {
    true
}
fn default_one() -> usize {
    1
}
fn default_mlp() -> String {
    "mlp".into()
}

/// The `manifold` and `generator` sections of ssv2a.json (fields the inference path reads).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MlpConfig {
    #[serde(default = "default_true")]
    pub variational: bool,
    #[serde(default = "default_mlp")]
    pub arch: String,
    pub layers: Vec<usize>,
    pub dropout: f64,
    pub resnet: bool,
    /// Generator only: `disabled` must be false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

impl MlpConfig {
    pub fn spec(&self) -> MlpSpec {
        MlpSpec { layers: self.layers.clone(), resnet: self.resnet, dropout: self.dropout }
    }
}

/// `remixer.styler` of ssv2a.json.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StylerConfig {
    #[serde(default = "default_true")]
    pub variational: bool,
    pub arch: String,
    pub embed_dim: usize,
    pub num_layers: usize,
    pub nhead: usize,
    pub dropout: f64,
    /// Absent in the released config: 1.
    #[serde(default = "default_one")]
    pub exp_rate: usize,
}

/// `remixer` of ssv2a.json.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RemixerConfig {
    /// Slots per scene (64).
    pub slot: usize,
    pub guidance: String,
    pub styler: StylerConfig,
}

/// The fields of `ssv2a.json` the networks are built from (original names; other fields of the
/// file are ignored).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Config {
    pub clip_dim: usize,
    pub clap_dim: usize,
    pub manifold_dim: usize,
    pub manifold: MlpConfig,
    pub generator: MlpConfig,
    pub remixer: RemixerConfig,
}

impl Config {
    /// The released model (third-party copy of `ssv2a.json`, spec §3.3).
    pub fn official() -> Config {
        Config {
            clip_dim: 768,
            clap_dim: 512,
            manifold_dim: 768,
            manifold: MlpConfig {
                variational: true,
                arch: "mlp".into(),
                layers: vec![768, 768, 1536, 1536, 3072, 3072],
                dropout: 0.2,
                resnet: true,
                disabled: None,
            },
            generator: MlpConfig {
                variational: true,
                arch: "mlp".into(),
                layers: vec![768, 768, 896, 896, 1024, 1024, 2048, 2048],
                dropout: 0.2,
                resnet: true,
                disabled: Some(false),
            },
            remixer: RemixerConfig {
                slot: 64,
                guidance: "manifold".into(),
                styler: StylerConfig { variational: true, arch: "transformer".into(), embed_dim: 768, num_layers: 1, nhead: 8, dropout: 0.2, exp_rate: 1 },
            },
        }
    }

    /// Parse ssv2a.json (or a pack's config).
    pub fn from_json(v: &serde_json::Value) -> Result<Config> {
        let c: Config = serde_json::from_value(v.clone()).map_err(|e| Error::Format(format!("ssv2a config: {e}")))?;
        c.check()?;
        Ok(c)
    }

    /// Only the configuration the released model uses is implemented (spec §2.8 lists the
    /// alternatives the code defines but never runs).
    pub fn check(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::Format(format!("ssv2a config: {what} is not supported (only the released model's settings are implemented)")));
        for (name, m) in [("manifold", &self.manifold), ("generator", &self.generator)] {
            if m.arch != "mlp" {
                return bad(&format!("{name}.arch = {:?}", m.arch));
            }
            if !m.variational {
                return bad(&format!("{name}.variational = false"));
            }
            if m.layers.len() < 2 || m.layers.contains(&0) {
                return bad(&format!("{name}.layers = {:?}", m.layers));
            }
        }
        if self.generator.disabled == Some(true) {
            return bad("generator.disabled = true");
        }
        if self.remixer.guidance != "manifold" {
            return bad(&format!("remixer.guidance = {:?}", self.remixer.guidance));
        }
        let s = &self.remixer.styler;
        if s.arch != "transformer" || !s.variational {
            return bad(&format!("remixer.styler arch {:?} variational {}", s.arch, s.variational));
        }
        if s.nhead == 0 || !s.embed_dim.is_multiple_of(s.nhead) || s.num_layers == 0 || s.exp_rate == 0 {
            return bad(&format!("remixer.styler embed_dim {} nhead {} num_layers {}", s.embed_dim, s.nhead, s.num_layers));
        }
        if self.remixer.slot == 0 || self.clip_dim == 0 || self.clap_dim == 0 || self.manifold_dim == 0 {
            return bad("a zero dimension");
        }
        Ok(())
    }

    /// Every key of the three state dicts (with their prefixes) and its shape.
    pub fn keys(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = vec![];
        let m = self.manifold.spec();
        for (enc, d) in [("clip_encoder", self.clip_dim), ("clap_encoder", self.clap_dim)] {
            for (k, s) in mlp::VariationalMlp::keys(d, self.manifold_dim, false, &m) {
                out.push((format!("manifold_state.{enc}.{k}"), s));
            }
        }
        for (k, s) in mlp::VariationalMlp::keys(self.manifold_dim, self.clap_dim, true, &self.generator.spec()) {
            out.push((format!("generator_state.{k}"), s));
        }
        for (k, s) in remixer::Remixer::keys(self) {
            out.push((format!("remixer_state.{k}"), s));
        }
        out
    }
}

/// Keys of the checkpoint that the runtime does not use (training-only parameters).
const TRAINING_ONLY: [&str; 2] = ["manifold_state.logit_scale", "manifold_state.self_logit_scale"];

/// Converter rules for `ssv2a.pth`: every key the config implies must be present with its
/// shape, and nothing else may be (the official load is strict), except the training-only
/// logit scales, which are dropped. `src` names are `manifold_state.…` etc.
pub fn plan(src: &dyn TensorSource, cfg: &Config) -> Result<Plan> {
    cfg.check()?;
    let mut plan = Plan::new(KIND, serde_json::to_string(cfg).map_err(|e| Error::Format(e.to_string()))?);
    let expected = cfg.keys();
    for (k, s) in &expected {
        plan.copy(src, k, s)?;
    }
    check_unexpected(src, expected.iter().map(|(k, _)| k.as_str()).chain(TRAINING_ONLY), &["manifold_state.", "generator_state.", "remixer_state."])?;
    Ok(plan)
}

/// Strictness on the source side: every tensor under `prefixes` must be in `known`.
pub(crate) fn check_unexpected<'a>(src: &dyn TensorSource, known: impl Iterator<Item = &'a str>, prefixes: &[&str]) -> Result<()> {
    let known: BTreeSet<&str> = known.collect();
    let extra: Vec<String> =
        src.names().into_iter().filter(|n| (prefixes.is_empty() || prefixes.iter().any(|p| n.starts_with(p))) && !known.contains(n.as_str())).collect();
    if extra.is_empty() {
        Ok(())
    } else {
        Err(Error::Format(format!(
            "{}: {} unexpected tensor(s) for this config (does the config match the checkpoint?): {}",
            src.describe(),
            extra.len(),
            extra.iter().take(8).cloned().collect::<Vec<_>>().join(", ")
        )))
    }
}

/// The three networks of `ssv2a.pth`.
pub struct Ssv2a {
    pub config: Config,
    pub manifold: Manifold,
    pub generator: Generator,
    pub remixer: Remixer,
}

impl Ssv2a {
    /// Load from an `ssv2a` pack (strict: every tensor must be used).
    pub fn load(w: &Weights) -> Result<Ssv2a> {
        w.expect_kind(KIND)?;
        let config = Config::from_json(&w.config::<serde_json::Value>()?)?;
        let model = Ssv2a {
            manifold: Manifold::load(&w.sub("manifold_state"), &config)?,
            generator: Generator::load(&w.sub("generator_state"), &config)?,
            remixer: Remixer::load(&w.sub("remixer_state"), &config)?,
            config,
        };
        w.finish()?;
        Ok(model)
    }
}

/// Shapes as a map (for tests and the converter).
pub fn key_map(keys: &[(String, Vec<usize>)]) -> BTreeMap<String, Vec<usize>> {
    keys.iter().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_keys_match_the_spec_counts() {
        // spec §3.1: 60 (incl. 2 logit scales), 40 and 31 tensors; 58,857,986 + 16,759,936 + 6,700,288 values.
        let keys = Config::official().keys();
        let count = |p: &str| keys.iter().filter(|(k, _)| k.starts_with(p)).count();
        let values = |p: &str| keys.iter().filter(|(k, _)| k.starts_with(p)).map(|(_, s)| s.iter().product::<usize>()).sum::<usize>();
        assert_eq!(count("manifold_state."), 58);
        assert_eq!(values("manifold_state."), 58_857_986 - 2);
        assert_eq!(count("generator_state."), 40);
        assert_eq!(values("generator_state."), 16_759_936);
        assert_eq!(count("remixer_state."), 31);
        assert_eq!(values("remixer_state."), 6_700_288);
    }
}
