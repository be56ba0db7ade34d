//! Random-weight packs: a [`Weights`] whose tensors are seeded random values made on first
//! request, with the shape the model asks for (the demo, full-size benchmarks and tests without
//! a checkpoint). The strict pack loader in the parent module knows nothing of this beyond the
//! `Source::Random` arm.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{lock, pack_metadata, serialize_pack, Inner, PackTensor, Source, Weights};
use crate::device::Gpu;
use crate::rng::Rng;
use crate::tensor::{numel, HostTensor};
use crate::{Error, Result};

/// Synthesises seeded random tensors for a random-weight pack (demo, benchmarks at full size
/// without a checkpoint). Scales keep activations of order one: matrices N(0, 1/fan_in),
/// norm gains 1 ± 0.1, biases and shifts N(0, 0.02²), running variances ≥ 1.
pub(super) struct RandomGen {
    pub(super) rng: Rng,
    pub(super) fixed: BTreeMap<String, HostTensor>,
    pub(super) made: BTreeMap<String, Vec<usize>>,
    pub(super) f16: bool,
    /// Every tensor handed out, as a pack would store it (see [`Weights::random_with`]).
    pub(super) kept: Option<Vec<PackTensor>>,
}

impl RandomGen {
    pub(super) fn values(&mut self, key: &str, shape: &[usize]) -> Vec<f32> {
        let v = self.make(key, shape);
        if let Some(kept) = &mut self.kept {
            if !kept.iter().any(|t| t.name == key) {
                kept.push(PackTensor::encode(key, shape.to_vec(), &v, self.f16 && shape.len() >= 2));
            }
        }
        v
    }

    fn make(&mut self, key: &str, shape: &[usize]) -> Vec<f32> {
        if let Some(t) = self.fixed.get(key) {
            return t.data.clone();
        }
        self.made.insert(key.to_string(), shape.to_vec());
        let n = numel(shape);
        let leaf = key.rsplit('.').next().unwrap_or(key);
        let rng = &mut self.rng;
        let normal = |rng: &mut Rng, s: f64| (0..n).map(|_| (rng.normal() * s) as f32).collect::<Vec<f32>>();
        match (shape.len(), leaf) {
            (0, _) => vec![0.5; n],
            (1, "running_var") => (0..n).map(|_| 1.0 + rng.uniform() as f32).collect(),
            (1, "weight") | (1, "g") => (0..n).map(|_| (1.0 + 0.1 * rng.normal()) as f32).collect(),
            (1, _) => normal(rng, 0.02),
            _ => {
                let fan_in = (n / shape[0]).max(1) as f64;
                normal(rng, 1.0 / fan_in.sqrt())
            }
        }
    }
}

impl Weights {
    /// A pack of seeded random weights for model `kind` with `config_json`: every tensor a
    /// model asks for is synthesised on first request with the shape asked (see `RandomGen`
    /// for the scales), except `fixed` ones (e.g. `scale_factor`), which are also the only
    /// ones `contains`/`shape_of` know. For the demo and full-size benchmarks; `finish` always
    /// succeeds. `f16` selects the storage of matrices, as in a converted pack.
    pub fn random(gpu: &Gpu, kind: &str, config_json: &str, seed: u64, f16: bool, fixed: BTreeMap<String, HostTensor>) -> Weights {
        Self::random_with(gpu, kind, config_json, seed, f16, fixed, BTreeMap::new(), false)
    }

    /// [`Weights::random`] with more metadata (e.g. an AudioLDM pack's `components`), and,
    /// with `record`, a copy of every tensor handed out so that [`Weights::random_to_pack`]
    /// can write the pack a model was loaded from (the demo's `--write-packs`).
    #[allow(clippy::too_many_arguments)]
    pub fn random_with(
        gpu: &Gpu,
        kind: &str,
        config_json: &str,
        seed: u64,
        f16: bool,
        fixed: BTreeMap<String, HostTensor>,
        extra: BTreeMap<String, String>,
        record: bool,
    ) -> Weights {
        let mut metadata = pack_metadata(kind, config_json, if f16 { "f16" } else { "f32" });
        metadata.extend(extra);
        metadata.insert("random".into(), seed.to_string());
        Weights {
            inner: Arc::new(Inner {
                gpu: gpu.clone(),
                name: format!("random {kind} weights (seed {seed})"),
                metadata,
                source: Source::Random(Mutex::new(RandomGen { rng: Rng::new(seed), fixed, made: BTreeMap::new(), f16, kept: record.then(Vec::new) })),
            }),
            prefix: String::new(),
        }
    }

    /// The pack file of a recording random pack ([`Weights::random_with`]): every tensor the
    /// models loaded so far asked for, and this pack's metadata. Loading a model from it gives
    /// the same weights.
    pub fn random_to_pack(&self) -> Result<Vec<u8>> {
        let Source::Random(r) = &self.inner.source else {
            return Err(Error::Format(format!("{}: not a random pack", self.inner.name)));
        };
        let g = lock(r);
        let kept = g.kept.as_ref().ok_or_else(|| Error::Format(format!("{}: made without recording", self.inner.name)))?;
        serialize_pack(kept, &self.inner.metadata)
    }

    /// Metadata of a random pack: how many tensors and values were synthesised.
    pub fn random_stats(&self) -> Option<(usize, usize)> {
        let Source::Random(r) = &self.inner.source else { return None };
        let g = lock(r);
        Some((g.made.len(), g.made.values().map(|s| numel(s)).sum()))
    }
}
