//! Conversion plans: what a weight pack will contain (names, shapes) and how each tensor is
//! computed from the source checkpoint (copy, weight-norm fold, BatchNorm fold, slice, …).
//! A model's converter rules (in its model file) build a [`Plan`] from a [`TensorSource`]; the
//! plan is then either streamed to a file (`ssv2a convert`, bounded memory) or serialised in
//! memory (golden tests convert a fixture's state dict; the browser could too).
//!
//! Storage rule for f16 packs: tensors of rank ≥ 2 (matrices, kernels, embeddings) are stored
//! f16; rank ≤ 1 tensors (biases, norm affines, scalars such as `scale_factor`) stay f32 — they
//! are well under 1 % of the bytes and keep f16 rounding out of normalisation and scaling.

use std::collections::{BTreeMap, HashMap};

use safetensors::Dtype;

use super::{Checkpoint, TensorRef};
use crate::tensor::{numel, HostTensor};
use crate::weights::{pack_metadata, serialize_pack, PackTensor};
use crate::{Error, Result};

/// Tensors a converter reads from.
pub trait TensorSource {
    /// Every tensor name (state-dict layout, e.g. `first_stage_model.decoder.conv_in.weight`).
    fn names(&self) -> Vec<String>;
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
    /// The tensor as f32 values (any float or integer source dtype).
    fn read_f32(&self, name: &str) -> Result<Vec<f32>>;
    /// Where the tensors come from (for errors and metadata).
    fn describe(&self) -> String;

    fn contains(&self, name: &str) -> bool {
        self.shape(name).is_some()
    }
}

/// A checkpoint's state dict below `root` (e.g. `state_dict` of a Lightning checkpoint).
pub struct CheckpointSource<'a> {
    ckpt: &'a Checkpoint,
    tensors: HashMap<String, TensorRef>,
    order: Vec<String>,
}

impl<'a> CheckpointSource<'a> {
    pub fn new(ckpt: &'a Checkpoint, root: &str) -> Result<CheckpointSource<'a>> {
        let list = ckpt.tensors(root)?;
        let order = list.iter().map(|(n, _)| n.clone()).collect();
        Ok(CheckpointSource { ckpt, tensors: list.into_iter().collect(), order })
    }
}

impl TensorSource for CheckpointSource<'_> {
    fn names(&self) -> Vec<String> {
        self.order.clone()
    }
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensors.get(name).map(|t| t.shape.clone())
    }
    fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let t = self.tensors.get(name).ok_or_else(|| Error::MissingWeight(name.to_string()))?;
        self.ckpt.read(t).and_then(|r| r.to_f32()).map_err(|e| Error::Format(format!("{}: tensor `{name}`: {e}", self.ckpt.name())))
    }
    fn describe(&self) -> String {
        self.ckpt.name().to_string()
    }
}

/// Tensors held in memory (golden fixtures' `state.*` entries, tests).
pub struct MemSource {
    pub name: String,
    pub tensors: BTreeMap<String, HostTensor>,
}

impl TensorSource for MemSource {
    fn names(&self) -> Vec<String> {
        self.tensors.keys().cloned().collect()
    }
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensors.get(name).map(|t| t.shape.clone())
    }
    fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        self.tensors.get(name).map(|t| t.data.clone()).ok_or_else(|| Error::MissingWeight(name.to_string()))
    }
    fn describe(&self) -> String {
        self.name.clone()
    }
}

/// How one pack tensor is computed.
pub enum Recipe {
    /// The source tensor unchanged.
    Copy(String),
    /// `torch.nn.utils.weight_norm` folded: `w[i] = g[i] · v[i] / ‖v[i]‖` over dim 0.
    WeightNorm { g: String, v: String },
    /// BatchNorm folded into the preceding bias-free conv: `w' = w·γ/√(σ²+ε)` per out channel.
    BnWeight { conv: String, bn: String, eps: f64 },
    /// The matching bias: `b' = β − μ·γ/√(σ²+ε)`.
    BnBias { bn: String, eps: f64 },
    /// Rows `[start, start + len)` of dim 0 (e.g. one third of an `in_proj_weight`).
    Rows { src: String, start: usize, len: usize },
    /// A 2-D tensor transposed.
    Transpose(String),
    /// Fixed values.
    Values(Vec<f32>),
}

/// One tensor of the pack.
pub struct Planned {
    pub name: String,
    pub shape: Vec<usize>,
    pub recipe: Recipe,
}

/// Everything needed to write a pack.
pub struct Plan {
    pub kind: String,
    pub config_json: String,
    /// Extra metadata (e.g. `ema = "true"`).
    pub metadata: BTreeMap<String, String>,
    pub tensors: Vec<Planned>,
}

fn read_checked(src: &dyn TensorSource, name: &str, n: usize) -> Result<Vec<f32>> {
    let v = src.read_f32(name)?;
    if v.len() != n {
        return Err(Error::Format(format!("{}: tensor `{name}` has {} values, expected {n}", src.describe(), v.len())));
    }
    Ok(v)
}

impl Planned {
    /// Compute the values.
    pub fn compute(&self, src: &dyn TensorSource) -> Result<Vec<f32>> {
        let n = numel(&self.shape);
        let rows = self.shape.first().copied().unwrap_or(1).max(1);
        Ok(match &self.recipe {
            Recipe::Copy(s) => read_checked(src, s, n)?,
            Recipe::Values(v) => v.clone(),
            Recipe::WeightNorm { g, v } => {
                let vv = read_checked(src, v, n)?;
                let gg = read_checked(src, g, rows)?;
                let per = n / rows;
                let mut out = vec![0f32; n];
                for i in 0..rows {
                    let r = &vv[i * per..(i + 1) * per];
                    let norm = r.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>().sqrt();
                    for j in 0..per {
                        out[i * per + j] = (gg[i] as f64 * r[j] as f64 / norm) as f32;
                    }
                }
                out
            }
            Recipe::BnWeight { conv, bn, eps } => {
                let w = read_checked(src, conv, n)?;
                let gamma = read_checked(src, &format!("{bn}.weight"), rows)?;
                let var = read_checked(src, &format!("{bn}.running_var"), rows)?;
                let per = n / rows;
                let mut out = w;
                for i in 0..rows {
                    let s = gamma[i] as f64 / (var[i] as f64 + eps).sqrt();
                    for x in &mut out[i * per..(i + 1) * per] {
                        *x = (*x as f64 * s) as f32;
                    }
                }
                out
            }
            Recipe::BnBias { bn, eps } => {
                let gamma = read_checked(src, &format!("{bn}.weight"), n)?;
                let beta = read_checked(src, &format!("{bn}.bias"), n)?;
                let mean = read_checked(src, &format!("{bn}.running_mean"), n)?;
                let var = read_checked(src, &format!("{bn}.running_var"), n)?;
                (0..n).map(|i| (beta[i] as f64 - mean[i] as f64 * gamma[i] as f64 / (var[i] as f64 + eps).sqrt()) as f32).collect()
            }
            Recipe::Rows { src: s, start, len } => {
                let shape = src.shape(s).ok_or_else(|| Error::MissingWeight(s.clone()))?;
                let full = read_checked(src, s, numel(&shape))?;
                let per = numel(&shape[1..]);
                if start + len > shape[0] || len * per != n {
                    return Err(Error::Format(format!("`{s}` {shape:?}: rows {start}..{} do not give {:?}", start + len, self.shape)));
                }
                full[start * per..(start + len) * per].to_vec()
            }
            Recipe::Transpose(s) => {
                let v = read_checked(src, s, n)?;
                let (r, c) = (self.shape[1], self.shape[0]);
                let mut out = vec![0f32; n];
                for i in 0..r {
                    for j in 0..c {
                        out[j * r + i] = v[i * c + j];
                    }
                }
                out
            }
        })
    }

    /// Storage dtype in a pack of `pack_f16`.
    pub fn dtype(&self, pack_f16: bool) -> Dtype {
        if pack_f16 && self.shape.len() >= 2 {
            Dtype::F16
        } else {
            Dtype::F32
        }
    }
}

impl Plan {
    pub fn new(kind: &str, config_json: String) -> Plan {
        Plan { kind: kind.into(), config_json, metadata: BTreeMap::new(), tensors: vec![] }
    }

    pub fn push(&mut self, name: impl Into<String>, shape: Vec<usize>, recipe: Recipe) {
        self.tensors.push(Planned { name: name.into(), shape, recipe });
    }

    /// Copy `name` from the source under the same name, checking its shape.
    pub fn copy(&mut self, src: &dyn TensorSource, name: &str, shape: &[usize]) -> Result<()> {
        self.copy_as(src, name, name, shape)
    }

    /// Copy source `from` to pack name `to`, checking the shape.
    pub fn copy_as(&mut self, src: &dyn TensorSource, from: &str, to: &str, shape: &[usize]) -> Result<()> {
        match src.shape(from) {
            Some(s) if s == shape => {
                self.push(to, shape.to_vec(), Recipe::Copy(from.into()));
                Ok(())
            }
            Some(s) => Err(Error::TensorShape { file: src.describe(), name: from.to_string(), expected: shape.to_vec(), got: s }),
            None => Err(Error::missing(src.describe(), from.to_string())),
        }
    }

    /// Full metadata of the pack.
    pub fn pack_metadata(&self, pack_f16: bool) -> BTreeMap<String, String> {
        let mut m = pack_metadata(&self.kind, &self.config_json, if pack_f16 { "f16" } else { "f32" });
        m.extend(self.metadata.clone());
        m
    }

    /// Serialise in memory.
    pub fn to_bytes(&self, src: &dyn TensorSource, pack_f16: bool) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            let v = t.compute(src)?;
            out.push(PackTensor::encode(t.name.clone(), t.shape.clone(), &v, t.dtype(pack_f16) == Dtype::F16));
        }
        serialize_pack(&out, &self.pack_metadata(pack_f16))
    }

    /// Stream to `path` (temporary file renamed on success), one tensor in memory at a time.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn write(
        &self,
        src: &dyn TensorSource,
        path: &std::path::Path,
        pack_f16: bool,
        extra: BTreeMap<String, String>,
    ) -> Result<super::pack_writer::PackStats> {
        use super::pack_writer::{write_pack, PackEntry};
        let mut meta = self.pack_metadata(pack_f16);
        meta.extend(extra);
        let by_name: HashMap<&str, &Planned> = self.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
        if by_name.len() != self.tensors.len() {
            return Err(Error::Format("conversion plan names a tensor twice".into()));
        }
        let entries = self.tensors.iter().map(|t| PackEntry::new(t.name.clone(), t.dtype(pack_f16), t.shape.clone())).collect();
        write_pack(path, &meta, entries, |e| {
            let t = by_name[e.name.as_str()];
            let v = t.compute(src)?;
            Ok(match e.dtype {
                Dtype::F16 => v.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect(),
                _ => v.iter().flat_map(|&x| x.to_le_bytes()).collect(),
            })
        })
    }
}

/// Names under `prefix.` in the source.
pub fn names_under(src: &dyn TensorSource, prefix: &str) -> Vec<String> {
    let p = format!("{prefix}.");
    src.names().into_iter().filter(|n| n.starts_with(&p)).collect()
}
