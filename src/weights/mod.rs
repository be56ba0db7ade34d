//! Weight packs: safetensors files with `__metadata__` describing the pack, read from one
//! byte buffer (a file's contents natively, fetched bytes on the web: one code path).
//!
//! Loading is strict, like candle's `VarBuilder` and tinygrad's `load_state_dict`:
//! [`Weights::sub`] scopes by dotted prefix, every getter takes the expected shape and fails with
//! the full key, and [`Weights::finish`] fails if any tensor was never read.
//!
//! Storage on the GPU: matrices (Linear/Conv weights, embedding tables) become [`Weight`]s in the
//! pack's dtype (packed fp16, or f32 for parity packs); vectors (biases, norm affines) and other
//! small tensors become f32 [`Tensor`]s; [`Weights::host`] gives a CPU copy.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use half::{bf16, f16};
use safetensors::tensor::{Dtype, TensorInfo};

mod random;

use crate::device::Gpu;
use crate::tensor::{numel, HostTensor, Tensor, Weight, WeightDtype};
use crate::{Error, Result};
use random::RandomGen;

/// `__metadata__["format"]` of every pack this runtime writes and reads.
pub const PACK_FORMAT: &str = "ssv2a-pack";
/// `__metadata__["version"]`: bump when the layout of any pack changes incompatibly.
pub const PACK_VERSION: u32 = 1;

/// A view into a loaded pack, scoped to a key prefix.
#[derive(Clone)]
pub struct Weights {
    inner: Arc<Inner>,
    prefix: String,
}

struct Inner {
    gpu: Gpu,
    name: String,
    metadata: BTreeMap<String, String>,
    source: Source,
}

/// Where the tensors come from.
enum Source {
    /// A safetensors pack in memory: strict and shape-checked, every tensor must be read.
    Pack(Pack),
    /// Seeded random tensors made on request ([`random`]): for the demo and benchmarks.
    Random(Mutex<RandomGen>),
}

struct Pack {
    bytes: Vec<u8>,
    data_start: usize,
    tensors: BTreeMap<String, TensorInfo>,
    used: Mutex<BTreeSet<String>>,
}

/// Check pack metadata: ssv2a format, the current format version, and model `kind`. `src`
/// names the pack in errors.
pub fn check_pack_meta(meta: &BTreeMap<String, String>, src: &str, kind: &str) -> Result<()> {
    match meta.get("format").map(|s| s.as_str()) {
        Some(PACK_FORMAT) => {}
        Some(other) => return Err(Error::Format(format!("{src}: format `{other}` is not an ssv2a weight pack; convert the checkpoint with `ssv2a convert`"))),
        None => {
            return Err(Error::Format(format!("{src}: not an ssv2a weight pack (no `format` in its metadata); convert the checkpoint with `ssv2a convert`")))
        }
    }
    let v = meta.get("version").map(|s| s.as_str()).unwrap_or("?");
    if v != PACK_VERSION.to_string() {
        return Err(Error::Format(format!(
            "{src}: pack format version {v}, this runtime reads version {PACK_VERSION}; re-convert it with this version of `ssv2a convert`"
        )));
    }
    match meta.get("kind") {
        Some(k) if k == kind => Ok(()),
        Some(k) => Err(Error::Format(format!("{src}: this pack is of kind `{k}`, expected kind `{kind}`"))),
        None => Err(Error::Format(format!("{src}: pack has no `kind` in its metadata"))),
    }
}

/// A parsed safetensors header: where the data starts, the tensors, the metadata.
pub type Header = (usize, BTreeMap<String, TensorInfo>, BTreeMap<String, String>);

/// Parse a safetensors header: tensors and metadata. Errors name `name` (the file).
pub fn parse_header(bytes: &[u8], name: &str) -> Result<Header> {
    let (n, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| Error::Format(format!("{name}: not a valid safetensors file ({e:?})")))?;
    let tensors = meta.tensors().into_iter().map(|(k, v)| (k, v.clone())).collect();
    let metadata = meta.metadata().clone().unwrap_or_default().into_iter().collect();
    Ok((8 + n, tensors, metadata))
}

/// Decode little-endian f32/f16/bf16 bytes to f32.
pub fn decode_f32(dtype: Dtype, bytes: &[u8], key: &str) -> Result<Vec<f32>> {
    Ok(match dtype {
        Dtype::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => bytes.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => bytes.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::F64 => bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
        Dtype::I64 => bytes.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
        Dtype::I32 => bytes.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
        other => return Err(Error::Format(format!("tensor `{key}` has dtype {other:?}; expected F32, F16 or BF16"))),
    })
}

impl Weights {
    /// Parse a pack held in `bytes` (the only copy kept on the host). `name` is used in errors
    /// (usually the file name).
    pub fn from_bytes(gpu: &Gpu, bytes: Vec<u8>, name: &str) -> Result<Weights> {
        let (data_start, tensors, metadata) = parse_header(&bytes, name)?;
        Ok(Weights {
            inner: Arc::new(Inner {
                gpu: gpu.clone(),
                name: name.to_string(),
                metadata,
                source: Source::Pack(Pack { bytes, data_start, tensors, used: Mutex::default() }),
            }),
            prefix: String::new(),
        })
    }

    /// Read a pack file (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_file(gpu: &Gpu, path: impl AsRef<std::path::Path>) -> Result<Weights> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(format!("reading weight pack {}", path.display()), e))?;
        Self::from_bytes(gpu, bytes, &path.display().to_string())
    }

    pub fn gpu(&self) -> &Gpu {
        &self.inner.gpu
    }
    /// The name given at load (file name).
    pub fn source(&self) -> &str {
        &self.inner.name
    }
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.inner.metadata
    }
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.inner.metadata.get(key).map(|s| s.as_str())
    }

    /// Check that this is an ssv2a pack of the current format version and of model `kind`.
    pub fn expect_kind(&self, kind: &str) -> Result<()> {
        check_pack_meta(&self.inner.metadata, &self.inner.name, kind)
    }

    /// The pack's `config` metadata (JSON) deserialised.
    pub fn config<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        let src = &self.inner.name;
        let s = self.meta("config").ok_or_else(|| Error::Format(format!("{src}: pack has no `config` metadata")))?;
        serde_json::from_str(s).map_err(|e| Error::Format(format!("{src}: bad `config` metadata: {e}")))
    }

    /// Descend one level: `w.sub("encoder").sub("layers.0")`.
    pub fn sub(&self, prefix: &str) -> Weights {
        Weights { inner: self.inner.clone(), prefix: self.key(prefix) }
    }

    /// The full key of `name` under this view's prefix.
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else if name.is_empty() {
            self.prefix.clone()
        } else {
            format!("{}.{}", self.prefix, name)
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        let key = self.key(name);
        match &self.inner.source {
            Source::Random(r) => lock(r).fixed.contains_key(&key),
            Source::Pack(p) => p.tensors.contains_key(&key),
        }
    }

    /// Keys under this view's prefix (full keys).
    pub fn keys(&self) -> Vec<String> {
        let p = if self.prefix.is_empty() { String::new() } else { format!("{}.", self.prefix) };
        match &self.inner.source {
            Source::Pack(pack) => pack.tensors.keys().filter(|k| k.starts_with(&p)).cloned().collect(),
            Source::Random(_) => vec![],
        }
    }

    /// The shape stored for `name`.
    pub fn shape_of(&self, name: &str) -> Result<Vec<usize>> {
        let key = self.key(name);
        match &self.inner.source {
            Source::Random(r) => lock(r).fixed.get(&key).map(|t| t.shape.clone()).ok_or(Error::MissingWeight(key)),
            Source::Pack(p) => p.tensors.get(&key).map(|i| i.shape.clone()).ok_or(Error::MissingWeight(key)),
        }
    }

    /// The tensor `name` of shape `shape`: the pack's bytes (checked and marked as read), or
    /// values made for it by a random source.
    fn values(&self, name: &str, shape: &[usize]) -> Result<Values<'_>> {
        let key = self.key(name);
        let pack = match &self.inner.source {
            Source::Pack(p) => p,
            Source::Random(r) => {
                let mut g = lock(r);
                let values = g.values(&key, shape);
                return Ok(Values::Made { key, values, f16: g.f16 });
            }
        };
        let info = pack.tensors.get(&key).ok_or_else(|| Error::MissingWeight(key.clone()))?;
        if info.shape != shape {
            return Err(Error::WeightShape { name: key, expected: shape.to_vec(), got: info.shape.clone() });
        }
        let (a, b) = info.data_offsets;
        let bytes = &pack.bytes[pack.data_start + a..pack.data_start + b];
        lock(&pack.used).insert(key.clone());
        Ok(Values::Stored { key, dtype: info.dtype, bytes })
    }

    /// A CPU copy of `name` as f32.
    pub fn host(&self, name: &str, shape: &[usize]) -> Result<HostTensor> {
        match self.values(name, shape)? {
            Values::Made { key, values, .. } => {
                HostTensor::new(shape.to_vec(), values).map_err(|_| Error::WeightShape { name: key, expected: shape.to_vec(), got: vec![] })
            }
            Values::Stored { key, dtype, bytes } => HostTensor::new(shape.to_vec(), decode_f32(dtype, bytes, &key)?),
        }
    }

    /// `name` as an f32 tensor on the GPU (vectors, small tensors).
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let h = self.host(name, shape)?;
        Tensor::upload(&self.inner.gpu, &h)
    }

    pub fn tensor_opt(&self, name: &str, shape: &[usize]) -> Result<Option<Tensor>> {
        if self.contains(name) {
            self.tensor(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }

    /// `name` as a GPU [`Weight`]: f16 storage for f16 and bf16 sources (bf16 values outside the
    /// f16 range keep f32 storage), f32 storage for f32 sources.
    pub fn weight(&self, name: &str, shape: &[usize]) -> Result<Weight> {
        if shape.is_empty() {
            return Err(Error::arg("Weights::weight", format!("`{}` is a scalar, not a matrix", self.key(name))));
        }
        let gpu = self.inner.gpu.clone();
        let (key, dtype, bytes) = match self.values(name, shape)? {
            Values::Made { values, f16, .. } => {
                return Weight::from_f32(&gpu, &values, shape.to_vec(), if f16 { WeightDtype::F16 } else { WeightDtype::F32 });
            }
            Values::Stored { key, dtype, bytes } => (key, dtype, bytes),
        };
        match dtype {
            Dtype::F16 => {
                let v: Vec<f16> = bytes.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]])).collect();
                Weight::from_f16(&gpu, &v, shape.to_vec())
            }
            Dtype::BF16 => {
                let v = decode_f32(dtype, bytes, &key)?;
                let fits = v.iter().all(|x| x.abs() <= 65504.0 || !x.is_finite());
                Weight::from_f32(&gpu, &v, shape.to_vec(), if fits { WeightDtype::F16 } else { WeightDtype::F32 })
            }
            _ => {
                let v = decode_f32(dtype, bytes, &key)?;
                Weight::from_f32(&gpu, &v, shape.to_vec(), WeightDtype::F32)
            }
        }
    }

    /// Mark `name` as read without loading it (tensors the runtime recomputes, e.g. fixed buffers).
    pub fn skip(&self, name: &str) -> Result<()> {
        let key = self.key(name);
        let Source::Pack(p) = &self.inner.source else { return Ok(()) };
        if !p.tensors.contains_key(&key) {
            return Err(Error::MissingWeight(key));
        }
        lock(&p.used).insert(key);
        Ok(())
    }

    /// Fail with the list of tensors under this view's prefix that were never read (a random
    /// source has nothing unread).
    pub fn finish(&self) -> Result<()> {
        let Source::Pack(p) = &self.inner.source else { return Ok(()) };
        let used = lock(&p.used);
        let unused: Vec<String> = self.keys().into_iter().filter(|k| !used.contains(k)).collect();
        if unused.is_empty() {
            Ok(())
        } else {
            Err(Error::UnusedWeights(unused))
        }
    }

    /// Total number of tensors in the pack (0 for a random source).
    pub fn len(&self) -> usize {
        match &self.inner.source {
            Source::Pack(p) => p.tensors.len(),
            Source::Random(_) => 0,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A tensor's values as [`Weights::values`] finds them.
enum Values<'a> {
    Stored { key: String, dtype: Dtype, bytes: &'a [u8] },
    Made { key: String, values: Vec<f32>, f16: bool },
}

/// Lock a mutex even if a thread panicked holding it (the data is a cache or a set of names).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One tensor to write into a pack.
#[derive(Clone, Debug)]
pub struct PackTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: Dtype,
    /// Little-endian bytes of `dtype`.
    pub data: Vec<u8>,
}

impl PackTensor {
    pub fn f32(name: impl Into<String>, shape: Vec<usize>, values: &[f32]) -> PackTensor {
        PackTensor { name: name.into(), shape, dtype: Dtype::F32, data: bytemuck::cast_slice(values).to_vec() }
    }
    pub fn f16(name: impl Into<String>, shape: Vec<usize>, values: &[f32]) -> PackTensor {
        let h: Vec<f16> = values.iter().map(|&x| f16::from_f32(x)).collect();
        PackTensor { name: name.into(), shape, dtype: Dtype::F16, data: bytemuck::cast_slice(&h).to_vec() }
    }
    /// Encode as the pack dtype (`f16` or `f32`).
    pub fn encode(name: impl Into<String>, shape: Vec<usize>, values: &[f32], f16_storage: bool) -> PackTensor {
        if f16_storage {
            Self::f16(name, shape, values)
        } else {
            Self::f32(name, shape, values)
        }
    }
}

/// Serialise tensors and metadata as safetensors bytes (sorted by name, as safetensors does).
pub fn serialize_pack(tensors: &[PackTensor], metadata: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), serde_json::to_value(metadata).map_err(|e| Error::Format(e.to_string()))?);
    }
    let mut sorted: Vec<&PackTensor> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut off = 0usize;
    for t in &sorted {
        let need = numel(&t.shape) * t.dtype.bitsize() / 8;
        if need != t.data.len() {
            return Err(Error::Format(format!("tensor `{}`: {} bytes for shape {:?} {:?}", t.name, t.data.len(), t.shape, t.dtype)));
        }
        let dt = serde_json::to_value(t.dtype).map_err(|e| Error::Format(e.to_string()))?;
        header.insert(t.name.clone(), serde_json::json!({"dtype": dt, "shape": t.shape, "data_offsets": [off, off + t.data.len()]}));
        off += t.data.len();
    }
    let mut h = serde_json::to_vec(&serde_json::Value::Object(header)).map_err(|e| Error::Format(e.to_string()))?;
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + h.len() + off);
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    for t in sorted {
        out.extend_from_slice(&t.data);
    }
    Ok(out)
}

/// Standard pack metadata.
pub fn pack_metadata(kind: &str, config_json: &str, dtype: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("format".into(), PACK_FORMAT.into());
    m.insert("version".into(), PACK_VERSION.to_string());
    m.insert("kind".into(), kind.into());
    m.insert("config".into(), config_json.into());
    m.insert("dtype".into(), dtype.into());
    m
}
