//! [`Checkpoint`]: a PyTorch checkpoint opened for reading, without Python.
//!
//! Formats, detected from the first bytes:
//! - the zip archive of `torch.save` (PyTorch ≥ 1.6) and `torch.jit.save`: `<prefix>/data.pkl`
//!   plus one record per storage, `<prefix>/data/<key>`, under whatever top folder name the
//!   writer chose; a `byteorder` record, if present, must say `little`;
//! - the legacy stream of `torch.save(..., _use_new_zipfile_serialization=False)`: magic
//!   number, protocol version and system-info pickles, the object pickle, the list of storage
//!   keys, then each storage as an 8-byte element count followed by its bytes;
//! - safetensors files (a flat dict of tensors), so converters accept both layouts upstream
//!   publishes.
//!
//! Opening reads only the directory and the object pickle; tensor bytes are read one tensor at
//! a time by [`Checkpoint::read`], so converting a checkpoint needs memory for the largest
//! tensor, not for the file.
//!
//! [`Checkpoint::tensors`] flattens any part of the object tree into state-dict names: nested
//! dicts (Lightning's `state_dict`, SSV2A's `manifold_state`/…), lists, and pickled
//! `nn.Module` objects (ultralytics' `.pt`), whose `_parameters`, persistent `_buffers` and
//! `_modules` are walked in the order `Module.state_dict()` uses. Objects that are not modules
//! (TorchScript modules, namespaces) contribute their attributes. Non-tensor leaves (class
//! names, strides, configs) are reached with [`Checkpoint::get`] and [`Value::to_json`].

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex};

use half::{bf16, f16};

use super::pickle;
use super::value::{spend, DType, Object, Storage, TensorRef, Value, MAX_VISITS};
use super::zip;
use crate::{Error, Result};

/// A non-contiguous view may repeat storage elements (stride 0, overlapping strides); reading
/// one is refused when it would produce more than this many bytes beyond the storage span it
/// reads.
pub const MAX_EXPANDED_BYTES: u64 = 256 << 20;

/// Largest object pickle accepted (real ones are kilobytes to a few megabytes).
const MAX_PICKLE_BYTES: u64 = 1 << 30;

/// Anything a checkpoint can be read from.
pub trait Source: Read + Seek + Send {}
impl<T: Read + Seek + Send> Source for T {}

/// Which file layout a checkpoint came in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Format {
    /// `torch.save` / `torch.jit.save` zip archive; `prefix` is its top folder (`archive`).
    Zip {
        prefix: String,
        version: Option<String>,
    },
    /// `torch.save(..., _use_new_zipfile_serialization=False)`.
    Legacy,
    Safetensors,
}

/// Where the bytes of one storage record lie.
#[derive(Clone, Debug)]
enum Record {
    /// A zip record; its data offset is found from the local header when first read.
    Zip(zip::Entry),
    /// A byte range of the file.
    Range { offset: u64, len: u64 },
}

/// A tensor's bytes, contiguous and little-endian.
#[derive(Clone, Debug, PartialEq)]
pub struct RawTensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

/// A PyTorch checkpoint open for reading.
pub struct Checkpoint {
    name: String,
    source: Mutex<Box<dyn Source>>,
    file_len: u64,
    format: Format,
    root: Value,
    records: HashMap<String, Record>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint").field("name", &self.name).field("format", &self.format).field("records", &self.records.len()).finish()
    }
}

impl Checkpoint {
    /// Open a checkpoint file (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Checkpoint> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| Error::io(format!("opening checkpoint {}", path.display()), e))?;
        Self::from_reader(file, &path.display().to_string())
    }

    /// Read a checkpoint held in memory (tests, fuzzing, the browser).
    pub fn from_bytes(bytes: Vec<u8>, name: &str) -> Result<Checkpoint> {
        Self::from_reader(std::io::Cursor::new(bytes), name)
    }

    /// Read a checkpoint from any seekable source; `name` is used in errors.
    pub fn from_reader(mut r: impl Source + 'static, name: &str) -> Result<Checkpoint> {
        let file_len = r.seek(SeekFrom::End(0)).map_err(|e| Error::io(format!("reading {name}"), e))?;
        let head = zip::read_at(&mut r, file_len, 0, file_len.min(16), name)?;
        let (format, root, records) = if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
            open_zip(&mut r, file_len, name)?
        } else if head.starts_with(b"\x80\x02\x8a\x0a") {
            open_legacy(&mut r, file_len, name)?
        } else if head.len() >= 9 && head[8] == b'{' {
            open_safetensors(&mut r, file_len, name)?
        } else if head.len() >= 8 && file_len >= 512 && is_tar(&mut r, file_len)? {
            return Err(Error::Format(format!(
                "{name}: a PyTorch checkpoint in the tar format of torch < 0.4, which is not supported; load and re-save it with a recent torch (`torch.save(torch.load(f), g)`)"
            )));
        } else {
            return Err(Error::Format(format!(
                "{name}: not a PyTorch checkpoint (neither the zip format of torch.save nor its legacy format) nor a safetensors file"
            )));
        };
        Ok(Checkpoint { name: name.to_string(), source: Mutex::new(Box::new(r)), file_len, format, root, records })
    }

    /// The file name given at open (used in errors).
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn format(&self) -> &Format {
        &self.format
    }
    /// The unpickled object (for safetensors inputs, a dict of all tensors).
    pub fn root(&self) -> &Value {
        &self.root
    }

    /// A value by dotted path from the root (`"model.names"`, `"epoch"`,
    /// `"state_dict.model.diffusion_model.out.0.weight"`); see [`Value::at`].
    pub fn get(&self, path: &str) -> Option<&Value> {
        self.root.at(path)
    }

    /// State-dict names and tensors of the value at `path` (`""` for the whole checkpoint),
    /// in state-dict order. Every tensor is checked to lie inside its storage and its storage
    /// record to exist, so a plan made from this list does not fail halfway for those reasons.
    pub fn tensors(&self, path: &str) -> Result<Vec<(String, TensorRef)>> {
        let v = self.get(path).ok_or_else(|| {
            let keys = top_keys(&self.root);
            Error::Format(format!("{}: no `{path}` in the checkpoint (top-level keys: {keys})", self.name))
        })?;
        let found = flatten(v)?;
        let mut out = Vec::with_capacity(found.len());
        for (name, t) in found {
            self.check(&t).map_err(|e| Error::Format(format!("{}: tensor `{name}`: {e}", self.name)))?;
            out.push((name, t.as_ref().clone()));
        }
        Ok(out)
    }

    /// The record a storage lives in and the byte range `[start, end)` of the record the
    /// tensor's view covers.
    fn locate(&self, t: &TensorRef) -> Result<(&Record, u64, u64)> {
        let rec = self.records.get(&t.storage.key).ok_or_else(|| {
            let where_ = match &self.format {
                Format::Zip { prefix, .. } => format!(" (no record `{prefix}/data/{}`)", t.storage.key),
                _ => String::new(),
            };
            Error::Format(format!("storage `{}` is missing from the archive{where_}", t.storage.key))
        })?;
        let rec_len = match rec {
            Record::Zip(e) => e.size,
            Record::Range { len, .. } => *len,
        };
        let claimed = t.storage.numel.checked_mul(t.storage.dtype.size() as u64).and_then(|b| b.checked_add(t.storage.view_offset));
        if claimed.is_none_or(|c| c > rec_len) {
            return Err(Error::Format(format!(
                "storage `{}` claims {} × {:?} elements but its record holds {rec_len} bytes",
                t.storage.key, t.storage.numel, t.storage.dtype
            )));
        }
        let (start, end) = t.storage_span()?;
        let es = t.dtype.size() as u64;
        Ok((rec, t.storage.view_offset + start * es, t.storage.view_offset + end * es))
    }

    fn check(&self, t: &TensorRef) -> Result<()> {
        let (_, start, end) = self.locate(t)?;
        let out = (t.numel() as u64).saturating_mul(t.dtype.size() as u64);
        if out > (end - start).saturating_add(MAX_EXPANDED_BYTES) {
            return Err(Error::Format(format!(
                "a view of shape {:?} with strides {:?} would expand {} storage bytes to {out}",
                t.shape,
                t.strides,
                end - start
            )));
        }
        Ok(())
    }

    /// Read one tensor: contiguous, little-endian bytes of its dtype.
    pub fn read(&self, t: &TensorRef) -> Result<RawTensor> {
        self.check(t).map_err(|e| Error::Format(format!("{}: {e}", self.name)))?;
        let (rec, start, end) = self.locate(t)?;
        let es = t.dtype.size();
        let span = self.read_record(rec, &t.storage.key, start, end)?;
        let data = if t.is_contiguous() && span.len() == t.nbytes() { span } else { gather(&span, es, &t.shape, &t.strides, t.numel()) };
        Ok(RawTensor { dtype: t.dtype, shape: t.shape.clone(), data })
    }

    /// Read one tensor as f32 values.
    pub fn read_f32(&self, t: &TensorRef) -> Result<Vec<f32>> {
        self.read(t)?.to_f32()
    }

    /// Bytes `[start, end)` of a storage record.
    fn read_record(&self, rec: &Record, key: &str, start: u64, end: u64) -> Result<Vec<u8>> {
        let mut src = self.source.lock().unwrap_or_else(|e| e.into_inner());
        match rec {
            Record::Range { offset, .. } => zip::read_at(&mut **src, self.file_len, offset + start, end - start, &self.name),
            Record::Zip(entry) => {
                if let Some(why) = entry.why_not_stored() {
                    return Err(Error::Format(format!(
                        "{}: record `{}` is {why}; torch.save writes stored records, so re-save the checkpoint with torch.save",
                        self.name, entry.name
                    )));
                }
                let data_start = zip::data_offset(&mut **src, self.file_len, entry, &self.name)?;
                let bytes = zip::read_at(&mut **src, self.file_len, data_start + start, end - start, &self.name)?;
                if start == 0 && end == entry.size && zip::crc32(0, &bytes) != entry.crc32 {
                    return Err(Error::Format(format!("{}: storage `{key}` fails its CRC-32 check (corrupt file)", self.name)));
                }
                Ok(bytes)
            }
        }
    }
}

/// Copy a strided view out of `span` (which starts at the view's first element).
fn gather(span: &[u8], es: usize, shape: &[usize], strides: &[usize], numel: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(numel * es);
    if numel == 0 {
        return out;
    }
    let nd = shape.len();
    if nd == 0 {
        out.extend_from_slice(&span[..es]);
        return out;
    }
    let (inner_n, inner_s) = (shape[nd - 1], strides[nd - 1]);
    let outer = &shape[..nd - 1];
    let mut idx = vec![0usize; outer.len()];
    let rows: usize = outer.iter().product();
    for _ in 0..rows {
        let base: usize = idx.iter().zip(strides).map(|(i, s)| i * s).sum();
        if inner_s == 1 {
            out.extend_from_slice(&span[base * es..(base + inner_n) * es]);
        } else {
            for j in 0..inner_n {
                let o = (base + j * inner_s) * es;
                out.extend_from_slice(&span[o..o + es]);
            }
        }
        for d in (0..idx.len()).rev() {
            idx[d] += 1;
            if idx[d] < outer[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    out
}

impl RawTensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The values as f32 (floats rounded, integers converted; bool as 0/1).
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        let b = &self.data;
        Ok(match self.dtype {
            DType::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            DType::F16 => b.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            DType::BF16 => b.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            DType::F64 => b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32).collect(),
            DType::I64 => b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f32).collect(),
            DType::U64 => b.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")) as f32).collect(),
            DType::I32 => b.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32).collect(),
            DType::U32 => b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32).collect(),
            DType::I16 => b.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as f32).collect(),
            DType::U16 => b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as f32).collect(),
            DType::I8 => b.iter().map(|&x| x as i8 as f32).collect(),
            DType::U8 => b.iter().map(|&x| x as f32).collect(),
            DType::Bool => b.iter().map(|&x| (x != 0) as u8 as f32).collect(),
            other => return Err(Error::Format(format!("tensor of dtype {other:?} cannot be converted to f32"))),
        })
    }

    /// The values as f16 bit patterns, rounded to nearest-even (f32 values beyond ±65504
    /// become ±inf).
    pub fn to_f16_bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.numel() * 2);
        match self.dtype {
            DType::F16 => out.extend_from_slice(&self.data),
            DType::F32 => {
                for c in self.data.chunks_exact(4) {
                    out.extend_from_slice(&f16::from_f32(f32::from_le_bytes([c[0], c[1], c[2], c[3]])).to_le_bytes());
                }
            }
            _ => {
                for x in self.to_f32()? {
                    out.extend_from_slice(&f16::from_f32(x).to_le_bytes());
                }
            }
        }
        Ok(out)
    }

    /// The largest finite magnitude that f16 cannot hold (it would round to ±inf: |x| ≥ 65520),
    /// or `None` if every value fits.
    pub fn f16_overflow(&self) -> Result<Option<f32>> {
        if matches!(self.dtype, DType::F16 | DType::I8 | DType::U8 | DType::Bool) {
            return Ok(None);
        }
        Ok(self.to_f32()?.into_iter().filter(|x| x.is_finite() && x.abs() >= 65520.0).map(f32::abs).reduce(f32::max))
    }

    /// The values as little-endian f32 bytes.
    pub fn to_f32_bytes(&self) -> Result<Vec<u8>> {
        if self.dtype == DType::F32 {
            return Ok(self.data.clone());
        }
        Ok(self.to_f32()?.iter().flat_map(|x| x.to_le_bytes()).collect())
    }
}

// ---------------------------------------------------------------------------------------------
// Flattening the object tree into state-dict names.

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn top_keys(v: &Value) -> String {
    let keys: Vec<String> = match v {
        Value::Dict(d) => d.iter().filter_map(|(k, _)| k.key_text()).collect(),
        Value::Object(o) => o.attrs().map(|d| d.iter().filter_map(|(k, _)| k.key_text()).collect()).unwrap_or_default(),
        _ => Vec::new(),
    };
    if keys.is_empty() {
        "none".into()
    } else {
        keys.iter().take(20).cloned().collect::<Vec<_>>().join(", ")
    }
}

/// State-dict names of every tensor under `v` (see the module docs for the rules).
pub fn flatten(v: &Value) -> Result<Vec<(String, Arc<TensorRef>)>> {
    let mut out = Vec::new();
    let mut budget = MAX_VISITS;
    walk(v, "", &mut out, &mut budget)?;
    Ok(out)
}

fn walk(v: &Value, prefix: &str, out: &mut Vec<(String, Arc<TensorRef>)>, budget: &mut usize) -> Result<()> {
    spend(budget)?;
    match v {
        Value::Tensor(t) => out.push((prefix.to_string(), t.clone())),
        Value::Dict(d) => walk_pairs(d, prefix, out, budget)?,
        Value::Tuple(items) | Value::List(items) => {
            for (i, x) in items.iter().enumerate() {
                walk(x, &join(prefix, &i.to_string()), out, budget)?;
            }
        }
        Value::Object(o) if o.is_module() => walk_module(o, prefix, out, budget)?,
        Value::Object(o) => {
            if let Some(attrs) = o.attrs() {
                walk_pairs(attrs, prefix, out, budget)?;
            }
            walk_pairs(&o.items, prefix, out, budget)?;
            for (i, x) in o.list.iter().enumerate() {
                walk(x, &join(prefix, &i.to_string()), out, budget)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn walk_pairs(d: &[(Value, Value)], prefix: &str, out: &mut Vec<(String, Arc<TensorRef>)>, budget: &mut usize) -> Result<()> {
    for (k, x) in d {
        if let Some(k) = k.key_text() {
            walk(x, &join(prefix, &k), out, budget)?;
        }
    }
    Ok(())
}

/// `Module.state_dict()`: own parameters, then persistent buffers, then each child module.
fn walk_module(o: &Object, prefix: &str, out: &mut Vec<(String, Arc<TensorRef>)>, budget: &mut usize) -> Result<()> {
    let dict = |name: &str| o.attr(name).and_then(|v| v.as_dict()).unwrap_or(&[]);
    let non_persistent: Vec<&str> = o.attr("_non_persistent_buffers_set").and_then(|v| v.as_seq()).unwrap_or(&[]).iter().filter_map(|v| v.as_str()).collect();
    for (k, x) in dict("_parameters") {
        spend(budget)?;
        if let (Some(k), Value::Tensor(t)) = (k.key_text(), x) {
            out.push((join(prefix, &k), t.clone()));
        }
    }
    for (k, x) in dict("_buffers") {
        spend(budget)?;
        if let (Some(k), Value::Tensor(t)) = (k.key_text(), x) {
            if !non_persistent.contains(&k.as_str()) {
                out.push((join(prefix, &k), t.clone()));
            }
        }
    }
    for (k, x) in dict("_modules") {
        if let Some(k) = k.key_text() {
            walk(x, &join(prefix, &k), out, budget)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Formats.

type Opened = (Format, Value, HashMap<String, Record>);

fn open_zip(r: &mut dyn Source, file_len: u64, name: &str) -> Result<Opened> {
    let entries = zip::read_directory(r, file_len, name)?;
    // `<prefix>/data.pkl` at depth one; torch names the prefix after the file or `archive`.
    let pkl = entries
        .iter()
        .find(|e| e.name.ends_with("/data.pkl") && e.name.matches('/').count() == 1)
        .or_else(|| entries.iter().find(|e| e.name == "data.pkl"))
        .ok_or_else(|| Error::Format(format!("{name}: a zip archive without `<name>/data.pkl`: not a torch.save checkpoint")))?
        .clone();
    let prefix = pkl.name.strip_suffix("data.pkl").unwrap_or_default().to_string();
    let read_small = |r: &mut dyn Source, e: &zip::Entry, max: u64| -> Result<Vec<u8>> {
        if let Some(why) = e.why_not_stored() {
            return Err(Error::Format(format!("{name}: record `{}` is {why}; torch.save writes stored records", e.name)));
        }
        if e.size > max {
            return Err(Error::Format(format!("{name}: record `{}` is {} bytes, more than the {max} accepted", e.name, e.size)));
        }
        let start = zip::data_offset(r, file_len, e, name)?;
        let bytes = zip::read_at(r, file_len, start, e.size, name)?;
        if zip::crc32(0, &bytes) != e.crc32 {
            return Err(Error::Format(format!("{name}: record `{}` fails its CRC-32 check (corrupt file)", e.name)));
        }
        Ok(bytes)
    };
    if let Some(e) = entries.iter().find(|e| e.name == format!("{prefix}byteorder")) {
        let order = read_small(r, e, 64)?;
        if order.trim_ascii() != b"little" {
            return Err(Error::Format(format!(
                "{name}: saved on a `{}` machine; only little-endian checkpoints are supported",
                String::from_utf8_lossy(&order).trim()
            )));
        }
    }
    let version = entries
        .iter()
        .find(|e| e.name == format!("{prefix}version") || e.name == format!("{prefix}.data/version"))
        .map(|e| read_small(r, e, 64))
        .transpose()?
        .map(|b| String::from_utf8_lossy(&b).trim().to_string());
    let data = read_small(r, &pkl, MAX_PICKLE_BYTES)?;
    let (root, _) = pickle::load(&data).map_err(|e| Error::Format(format!("{name}: {}: {e}", pkl.name)))?;
    let data_dir = format!("{prefix}data/");
    let records = entries.into_iter().filter_map(|e| e.name.strip_prefix(&data_dir).map(|k| (k.to_string(), Record::Zip(e.clone())))).collect();
    Ok((Format::Zip { prefix: prefix.trim_end_matches('/').to_string(), version }, root, records))
}

/// Parse one pickle starting at `offset`, reading more of the file while it is truncated.
fn pickle_at(r: &mut dyn Source, file_len: u64, offset: u64, name: &str, what: &str) -> Result<(Value, u64)> {
    let mut want = 1u64 << 16;
    loop {
        let len = want.min(file_len.saturating_sub(offset)).min(MAX_PICKLE_BYTES);
        let buf = zip::read_at(r, file_len, offset, len, name)?;
        match pickle::load_inner(&buf) {
            Ok((v, used)) => return Ok((v, offset + used as u64)),
            Err(e) if e.truncated && len < file_len - offset && len < MAX_PICKLE_BYTES => want *= 4,
            Err(e) => return Err(Error::Format(format!("{name}: {what}: {}", Error::from(e)))),
        }
    }
}

fn open_legacy(r: &mut dyn Source, file_len: u64, name: &str) -> Result<Opened> {
    const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
    let (magic, pos) = pickle_at(r, file_len, 0, name, "magic number")?;
    if !matches!(&magic, Value::BigInt(b) if **b == MAGIC) {
        return Err(Error::Format(format!("{name}: not a PyTorch legacy checkpoint (bad magic number)")));
    }
    let (proto, pos) = pickle_at(r, file_len, pos, name, "protocol version")?;
    if proto.as_int() != Some(1001) {
        return Err(Error::Format(format!("{name}: unsupported legacy protocol version {proto:?}")));
    }
    let (sys_info, pos) = pickle_at(r, file_len, pos, name, "system info")?;
    if sys_info.get("little_endian").and_then(|v| v.as_bool()) == Some(false) {
        return Err(Error::Format(format!("{name}: saved on a big-endian machine; only little-endian checkpoints are supported")));
    }
    let (root, pos) = pickle_at(r, file_len, pos, name, "object pickle")?;
    let (keys, mut pos) = pickle_at(r, file_len, pos, name, "storage keys")?;
    let keys = keys.as_seq().ok_or_else(|| Error::Format(format!("{name}: storage key list is not a list")))?;

    // Element sizes come from the storages the object pickle names.
    let mut dtypes: HashMap<String, DType> = HashMap::new();
    let mut budget = MAX_VISITS;
    collect_storages(&root, &mut dtypes, &mut budget)?;
    let mut records = HashMap::new();
    for k in keys.iter() {
        let key = k.key_text().ok_or_else(|| Error::Format(format!("{name}: storage key {k:?} is not a string")))?;
        let dtype = *dtypes.get(&key).ok_or_else(|| Error::Format(format!("{name}: storage `{key}` is listed but never used")))?;
        let head = zip::read_at(r, file_len, pos, 8, name)?;
        let numel = u64::from_le_bytes(head.try_into().expect("8 bytes"));
        let len = numel
            .checked_mul(dtype.size() as u64)
            .filter(|&l| l <= file_len - pos - 8)
            .ok_or_else(|| Error::Format(format!("{name}: truncated file: storage `{key}` claims {numel} elements past the end of the file")))?;
        records.insert(key, Record::Range { offset: pos + 8, len });
        pos += 8 + len;
    }
    Ok((Format::Legacy, root, records))
}

fn collect_storages(v: &Value, out: &mut HashMap<String, DType>, budget: &mut usize) -> Result<()> {
    spend(budget)?;
    let mut each = |x: &Value| collect_storages(x, out, budget);
    match v {
        Value::Storage(s) => {
            out.entry(s.key.clone()).or_insert(s.dtype);
        }
        Value::Tensor(t) => {
            out.entry(t.storage.key.clone()).or_insert(t.storage.dtype);
        }
        Value::Tuple(items) | Value::List(items) => items.iter().try_for_each(&mut each)?,
        Value::Dict(d) => d.iter().try_for_each(|(k, x)| each(k).and_then(|_| each(x)))?,
        Value::Object(o) => {
            each(&o.class)?;
            o.args.iter().try_for_each(&mut each)?;
            o.kwargs.iter().try_for_each(|(k, x)| each(k).and_then(|_| each(x)))?;
            each(&o.state)?;
            o.items.iter().try_for_each(|(k, x)| each(k).and_then(|_| each(x)))?;
            o.list.iter().try_for_each(&mut each)?;
        }
        _ => {}
    }
    Ok(())
}

fn is_tar(r: &mut dyn Source, file_len: u64) -> Result<bool> {
    let h = zip::read_at(r, file_len, 257, 5, "checkpoint")?;
    Ok(h == b"ustar")
}

fn open_safetensors(r: &mut dyn Source, file_len: u64, name: &str) -> Result<Opened> {
    let head = zip::read_at(r, file_len, 0, 8, name)?;
    let n = u64::from_le_bytes(head.try_into().expect("8 bytes"));
    if n > 100_000_000 || n > file_len - 8 {
        return Err(Error::Format(format!("{name}: safetensors header of {n} bytes does not fit the file ({file_len} bytes)")));
    }
    let header = zip::read_at(r, file_len, 8, n, name)?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| Error::Format(format!("{name}: bad safetensors header: {e}")))?;
    let data_start = 8 + n;
    let mut entries: Vec<(u64, String, Value)> = Vec::new();
    let mut records = HashMap::new();
    for (key, info) in header {
        if key == "__metadata__" {
            continue;
        }
        let bad = |why: &str| Error::Format(format!("{name}: safetensors tensor `{key}`: {why}"));
        let dtype = match info.get("dtype").and_then(|d| d.as_str()) {
            Some("F64") => DType::F64,
            Some("F32") => DType::F32,
            Some("F16") => DType::F16,
            Some("BF16") => DType::BF16,
            Some("I64") => DType::I64,
            Some("I32") => DType::I32,
            Some("I16") => DType::I16,
            Some("I8") => DType::I8,
            Some("U8") => DType::U8,
            Some("BOOL") => DType::Bool,
            Some("U16") => DType::U16,
            Some("U32") => DType::U32,
            Some("U64") => DType::U64,
            Some("F8_E4M3") => DType::F8E4M3,
            Some("F8_E5M2") => DType::F8E5M2,
            other => return Err(bad(&format!("unsupported dtype {other:?}"))),
        };
        let shape: Vec<usize> = info
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|a| a.iter().map(|x| x.as_u64().and_then(|x| usize::try_from(x).ok())).collect())
            .ok_or_else(|| bad("bad shape"))?;
        let offs: Vec<u64> =
            info.get("data_offsets").and_then(|s| s.as_array()).and_then(|a| a.iter().map(|x| x.as_u64()).collect()).ok_or_else(|| bad("bad data_offsets"))?;
        let [a, b] = offs[..] else { return Err(bad("bad data_offsets")) };
        let numel = shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64)).ok_or_else(|| bad("shape overflows"))?;
        if b < a || b - a != numel.saturating_mul(dtype.size() as u64) || data_start + b > file_len {
            return Err(bad(&format!("data_offsets [{a}, {b}] do not match shape {shape:?} {dtype:?} within the file")));
        }
        let mut strides = vec![1usize; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            // Saturating: only a zero-sized tensor can have a product past usize, and its
            // strides are never used.
            strides[i] = strides[i + 1].saturating_mul(shape[i + 1]);
        }
        let storage = Arc::new(Storage { key: key.clone(), dtype, numel, location: "cpu".into(), view_offset: 0 });
        let t = TensorRef { storage, dtype, offset: 0, shape, strides };
        records.insert(key.clone(), Record::Range { offset: data_start + a, len: b - a });
        entries.push((a, key, Value::Tensor(Arc::new(t))));
    }
    // File order, as the writer laid the tensors out.
    entries.sort_by(|x, y| (x.0, &x.1).cmp(&(y.0, &y.1)));
    let root = Value::Dict(entries.into_iter().map(|(_, k, v)| (Value::Str(k.into()), v)).collect::<Vec<_>>().into());
    Ok((Format::Safetensors, root, records))
}
