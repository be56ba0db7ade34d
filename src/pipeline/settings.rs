//! Run settings: the presets, and [`Overrides`], the one place where the CLI's flags, the web
//! API's options and (batch) manifest lines become [`Settings`].
//!
//! Every entry point deserializes its input into [`Overrides`] (serde: the JSON object below;
//! the CLI builds the same struct from its flags) and calls [`Overrides::settings`], which
//! applies them on top of a preset and validates the result with [`Settings::check`]. A new
//! setting is one field of [`Overrides`], one line of [`Overrides::apply`] (and one of
//! [`Overrides::or`]), one check in [`Settings::check`] if it has limits, and one CLI flag.
//!
//! # JSON schema of the options (every key optional; unknown keys are an error)
//!
//! | key | type | meaning | default (official / fast) |
//! |---|---|---|---|
//! | `preset` | `"official"` \| `"fast"` | starting point | caller's choice |
//! | `seed` | integer ≥ 0 | one seed for the whole run | [`DEFAULT_SEED`] |
//! | `sampler` | `"ddim"` \| `"dpmpp"` | diffusion sampler; also sets its usual step count unless `steps` is given | ddim / dpmpp |
//! | `steps` | integer 1..=[`MAX_STEPS`] (DPM-Solver++: 1..=998) | sampler steps | 200 / 25 |
//! | `guidance` | number | classifier-free guidance scale | [`audioldm::GUIDANCE`] |
//! | `candidates` | integer 1..=[`MAX_CANDIDATES`] | AudioLDM candidates sampled together | 3 / 1 |
//! | `rank` | `"conditioning"` \| `"official"` \| `"none"` | how the candidates are ranked ([`Rank`]) | `"conditioning"` |
//! | `duration` | number > 0 (seconds) | length of the audio | 10 |
//! | `cycle_its` | integer 0..=[`MAX_CYCLE_ITS`] | Cycle Mix rounds − 1 | 64 / 7 |
//! | `cycle_samples` | integer 1..=[`MAX_CYCLE_SAMPLES`] | Cycle Mix candidates per round | 64 / 16 |
//! | `var_samples` | integer ≥ 1 | Gaussian samples averaged per variational draw | 64 |
//! | `low_memory` | bool | release each model when the run is done with it | false |
//! | `conf` | number in [0, 1] | detection confidence threshold | 0.25 |
//! | `iou` | number in [0, 1] | detection NMS IoU threshold | 0 |
//! | `top_k` | integer ≥ 0 | detected sources kept, best first (0 = all) | 16 |
//! | `tta` | bool | detection test-time augmentation | true |
//! | `imgsz` | `"ssv2a"` \| `"image"` \| `"N"` \| `"HxW"` | detection size | `"ssv2a"` |
//! | `keep_aspect` | bool | keep each crop's aspect ratio | false |

use serde::{Deserialize, Serialize};

use crate::models::audioldm::{self, AudioLdm, GenerateSettings};
use crate::models::detect::{self, CropMode, ImgSize};
use crate::models::ssv2a::cycle_mix::CycleMixOptions;
use crate::{Error, Result};

/// The official code's seed.
pub const DEFAULT_SEED: u64 = 42;
/// Most sampler steps (AudioLDM's 1000 training timesteps − 1; DPM-Solver++'s leading spacing
/// allows a little less: `audioldm::sampler::check_steps` says how many).
pub const MAX_STEPS: usize = audioldm::TRAIN_TIMESTEPS - 1;
/// Most AudioLDM candidates in one run.
pub const MAX_CANDIDATES: usize = audioldm::MAX_CANDIDATES;
/// Most Cycle Mix rounds − 1.
pub const MAX_CYCLE_ITS: usize = 10_000;
/// Most Cycle Mix candidates per round.
pub const MAX_CYCLE_SAMPLES: usize = 4096;

/// The presets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// The paper's code ([`Settings::official`]).
    Official,
    /// Fewer steps and rounds ([`Settings::fast`]).
    Fast,
}

impl std::str::FromStr for Preset {
    type Err = Error;
    fn from_str(s: &str) -> Result<Preset> {
        match s {
            "official" => Ok(Preset::Official),
            "fast" => Ok(Preset::Fast),
            other => Err(Error::arg("settings", format!("unknown preset `{other}` (official, fast)"))),
        }
    }
}

/// The diffusion samplers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sampler {
    /// DDIM with η = 1, as AudioLDM.
    Ddim,
    /// DPM-Solver++(2M), leading spacing with offset 1, as AudioLDM's diffusers config.
    Dpmpp,
}

impl Sampler {
    pub fn method(self) -> audioldm::sampler::Method {
        use audioldm::sampler::{Method, Spacing};
        match self {
            Sampler::Ddim => Method::Ddim { eta: 1.0 },
            Sampler::Dpmpp => Method::DpmSolverPp { spacing: Spacing::Leading { steps_offset: 1 } },
        }
    }

    /// The sampler's usual step count (AudioLDM's 200 for DDIM; 25 for DPM-Solver++, as
    /// diffusers' AudioLDM pipeline).
    pub fn default_steps(self) -> usize {
        match self {
            Sampler::Ddim => 200,
            Sampler::Dpmpp => 25,
        }
    }
}

impl std::str::FromStr for Sampler {
    type Err = Error;
    fn from_str(s: &str) -> Result<Sampler> {
        match s {
            "ddim" => Ok(Sampler::Ddim),
            "dpmpp" => Ok(Sampler::Dpmpp),
            other => Err(Error::arg("settings", format!("sampler `{other}`: ddim or dpmpp"))),
        }
    }
}

/// How AudioLDM's candidates are ranked (with more than one). Each waveform goes through CLAP's
/// audio tower (16 kHz → 48 kHz as torchaudio resamples, fitted to 10 s from its start) and is
/// scored by cosine similarity with a target; the best is kept and every score is reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rank {
    /// Against the CLAP embedding that conditioned the generation (what the paper means to
    /// select: the candidate that sounds most like the scene's CLAP vector).
    #[default]
    Conditioning,
    /// As the official code: against the CLAP text embedding of `""` (the candidate most like
    /// "no prompt"). The official wrapper also replaces each audio embedding by that same vector
    /// with probability 0.1 and crops a random 10 s window: neither is reproduced (both are
    /// noise, not a choice).
    Official,
    /// Keep candidate 0 (no scoring, no CLAP audio tower needed).
    None,
}

impl std::str::FromStr for Rank {
    type Err = Error;
    fn from_str(s: &str) -> Result<Rank> {
        match s {
            "conditioning" => Ok(Rank::Conditioning),
            "official" => Ok(Rank::Official),
            "none" => Ok(Rank::None),
            other => Err(Error::arg("settings", format!("rank `{other}`: conditioning, official or none"))),
        }
    }
}

/// Everything a run can be tuned with. [`Settings::official`] is the official CLI.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub detect: detect::Settings,
    pub cycle: CycleMixOptions,
    /// Sampler, steps, guidance, candidates, duration.
    pub generate: GenerateSettings,
    /// How the candidates are ranked.
    pub rank: Rank,
    /// One seed for the whole run (Cycle Mix noise and AudioLDM), deterministic on a given
    /// adapter. Upstream: 42, and AudioLDM ignores `--seed`; here it does not.
    pub seed: u64,
    /// Gaussian samples averaged by the temporal aggregator (official: 1).
    pub aggregator_var_samples: usize,
    /// Keep the aggregator's dropout active, as the official code (left in train mode) does.
    pub aggregator_dropout: bool,
    /// Release each model as soon as the run no longer needs it (lower peak memory; the next
    /// run reloads).
    pub release_after_use: bool,
}

impl Settings {
    /// The official CLI: detection as `ssv2a.json` ([`detect::Settings::ssv2a`]), Cycle Mix as
    /// [`CycleMixOptions::default`], AudioLDM as [`GenerateSettings::default`], seed
    /// [`DEFAULT_SEED`].
    pub fn official() -> Settings {
        Settings {
            detect: detect::Settings::ssv2a(),
            cycle: CycleMixOptions::default(),
            generate: GenerateSettings::default(),
            seed: DEFAULT_SEED,
            aggregator_var_samples: 1,
            aggregator_dropout: false,
            release_after_use: false,
            rank: Rank::Conditioning,
        }
    }

    /// Faster: DPM-Solver++(2M) with its usual steps, 1 AudioLDM candidate, Cycle Mix 8 rounds
    /// × 16 candidates with collapsed variational sampling (the same distribution as averaging
    /// 64 draws). The speed-up is measured by `ssv2a demo --preset fast` and in the notes; its
    /// effect on quality can only be judged with the real weights.
    pub fn fast() -> Settings {
        let mut s = Settings::official();
        s.cycle.its = 7;
        s.cycle.samples = 16;
        s.cycle.collapsed_sampling = true;
        s.set_sampler(Sampler::Dpmpp, true);
        s.generate.candidates = 1;
        s
    }

    pub fn preset(p: Preset) -> Settings {
        match p {
            Preset::Official => Settings::official(),
            Preset::Fast => Settings::fast(),
        }
    }

    /// Use `sampler`; with `default_steps`, also its usual step count.
    pub fn set_sampler(&mut self, sampler: Sampler, default_steps: bool) {
        self.generate.method = sampler.method();
        if default_steps {
            self.generate.steps = sampler.default_steps();
        }
    }

    /// Reject bad values before any work starts.
    pub fn check(&self) -> Result<()> {
        const OP: &str = "settings";
        self.detect.check()?;
        audioldm::latent_frames(self.generate.duration_s, 1, AudioLdm::MAX_DURATION_S)?;
        audioldm::sampler::check_steps(audioldm::TRAIN_TIMESTEPS, self.generate.method, self.generate.steps)?;
        if !self.generate.guidance.is_finite() {
            return Err(Error::arg(OP, "guidance must be a finite number"));
        }
        if self.generate.candidates == 0 || self.generate.candidates > MAX_CANDIDATES {
            return Err(Error::arg(OP, format!("{} candidates: 1..={MAX_CANDIDATES}", self.generate.candidates)));
        }
        if self.cycle.samples == 0 || self.cycle.var_samples == 0 || self.cycle.its > MAX_CYCLE_ITS || self.cycle.samples > MAX_CYCLE_SAMPLES {
            return Err(Error::arg(OP, format!("Cycle Mix needs 1..={MAX_CYCLE_SAMPLES} candidates, ≥ 1 var_samples and at most {MAX_CYCLE_ITS} rounds")));
        }
        if self.aggregator_var_samples == 0 {
            return Err(Error::arg(OP, "aggregator var_samples must be at least 1"));
        }
        Ok(())
    }
}

/// Changes to a preset: what a user can set, from the CLI, the web API or a manifest line.
/// `None` keeps the preset's value. Its JSON form is the schema in the module docs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampler: Option<Sampler>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guidance: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidates: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank: Option<Rank>,
    /// Seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cycle_its: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cycle_samples: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub var_samples: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub low_memory: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conf: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iou: Option<f32>,
    /// 0 keeps every detection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tta: Option<bool>,
    /// `ssv2a`, `image`, `N` or `HxW`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub imgsz: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_aspect: Option<bool>,
}

impl Overrides {
    /// Parse the JSON form (an object; empty text or `null` is no override). Errors name the
    /// key and say what it must be.
    pub fn from_json(text: &str) -> Result<Overrides> {
        if text.trim().is_empty() {
            return Ok(Overrides::default());
        }
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| Error::arg("options", format!("not JSON ({e})")))?;
        Overrides::from_value(v)
    }

    /// As [`Overrides::from_json`], from a parsed value.
    pub fn from_value(v: serde_json::Value) -> Result<Overrides> {
        match v {
            serde_json::Value::Null => Ok(Overrides::default()),
            serde_json::Value::Object(_) => serde_json::from_value(v).map_err(|e| Error::arg("options", e.to_string())),
            _ => Err(Error::arg("options", "options must be a JSON object")),
        }
    }

    /// `self`, with `base`'s values where `self` has none (e.g. a manifest line over the
    /// command line's defaults).
    pub fn or(&self, base: &Overrides) -> Overrides {
        Overrides {
            preset: self.preset.or(base.preset),
            seed: self.seed.or(base.seed),
            sampler: self.sampler.or(base.sampler),
            steps: self.steps.or(base.steps),
            guidance: self.guidance.or(base.guidance),
            candidates: self.candidates.or(base.candidates),
            rank: self.rank.or(base.rank),
            duration: self.duration.or(base.duration),
            cycle_its: self.cycle_its.or(base.cycle_its),
            cycle_samples: self.cycle_samples.or(base.cycle_samples),
            var_samples: self.var_samples.or(base.var_samples),
            low_memory: self.low_memory.or(base.low_memory),
            conf: self.conf.or(base.conf),
            iou: self.iou.or(base.iou),
            top_k: self.top_k.or(base.top_k),
            tta: self.tta.or(base.tta),
            imgsz: self.imgsz.clone().or_else(|| base.imgsz.clone()),
            keep_aspect: self.keep_aspect.or(base.keep_aspect),
        }
    }

    /// The preset (`self.preset`, else `default_preset`) with these changes, checked.
    pub fn settings(&self, default_preset: Preset) -> Result<Settings> {
        let mut s = Settings::preset(self.preset.unwrap_or(default_preset));
        self.apply(&mut s)?;
        s.check()?;
        Ok(s)
    }

    /// Apply the changes to `s` (not checked: [`Overrides::settings`] checks).
    pub fn apply(&self, s: &mut Settings) -> Result<()> {
        if let Some(v) = self.sampler {
            s.set_sampler(v, self.steps.is_none());
        }
        let g = &mut s.generate;
        set(&mut s.seed, self.seed);
        set(&mut g.steps, self.steps);
        set(&mut g.guidance, self.guidance);
        set(&mut g.candidates, self.candidates);
        set(&mut s.rank, self.rank);
        set(&mut g.duration_s, self.duration);
        set(&mut s.cycle.its, self.cycle_its);
        set(&mut s.cycle.samples, self.cycle_samples);
        set(&mut s.cycle.var_samples, self.var_samples);
        set(&mut s.release_after_use, self.low_memory);
        let d = &mut s.detect;
        set(&mut d.conf, self.conf);
        set(&mut d.iou, self.iou);
        set(&mut d.top_k, self.top_k.map(|k| (k > 0).then_some(k)));
        set(&mut d.augment, self.tta);
        if let Some(v) = &self.imgsz {
            d.imgsz = v.parse::<ImgSize>()?;
        }
        if let Some(k) = self.keep_aspect {
            d.crop = if k { CropMode::KeepAspect } else { CropMode::Stretch };
        }
        Ok(())
    }
}

fn set<T>(field: &mut T, v: Option<T>) {
    if let Some(v) = v {
        *field = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Step counts are checked before anything loads, in one short line naming the range.
    #[test]
    fn step_counts_checked_up_front() {
        for (sampler, ok, bad, range) in [(Sampler::Ddim, [1, 3, 7, 999], [0, 1000], "1..=999"), (Sampler::Dpmpp, [1, 3, 25, 998], [0, 999], "1..=998")] {
            for n in ok {
                let o = Overrides { sampler: Some(sampler), steps: Some(n), ..Overrides::default() };
                o.settings(Preset::Fast).unwrap_or_else(|e| panic!("{sampler:?} {n}: {e}"));
            }
            for n in bad {
                let o = Overrides { sampler: Some(sampler), steps: Some(n), ..Overrides::default() };
                let err = o.settings(Preset::Fast).unwrap_err().to_string();
                assert!(err.contains(range) && err.len() < 120 && !err.contains('\n'), "{sampler:?} {n}: {err}");
            }
        }
    }

    #[test]
    fn json_options_and_merging() {
        let o = Overrides::from_json(r#"{"preset": "official", "steps": 50, "sampler": "dpmpp", "tta": false, "top_k": 0}"#).unwrap();
        let s = o.settings(Preset::Fast).unwrap();
        assert_eq!((s.generate.steps, s.detect.augment, s.detect.top_k, s.cycle.its), (50, false, None, 64));
        assert_eq!(s.generate.method, Sampler::Dpmpp.method());
        // The sampler alone brings its usual step count.
        assert_eq!(Overrides::from_json(r#"{"sampler": "ddim"}"#).unwrap().settings(Preset::Fast).unwrap().generate.steps, 200);
        for bad in [r#"{"stepz": 1}"#, r#"{"steps": -1}"#, r#"{"preset": "slow"}"#, "[1]", "not json"] {
            assert!(Overrides::from_json(bad).is_err(), "{bad}");
        }
        let line = Overrides { seed: Some(7), ..Overrides::default() };
        let cli = Overrides { seed: Some(1), steps: Some(3), ..Overrides::default() };
        assert_eq!(line.or(&cli), Overrides { seed: Some(7), steps: Some(3), ..Overrides::default() });
        // The JSON form round-trips.
        let text = serde_json::to_string(&o).unwrap();
        assert_eq!(Overrides::from_json(&text).unwrap(), o);
    }
}
