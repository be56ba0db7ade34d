//! Streaming weight-pack writer (native only).
//!
//! A pack is a safetensors file (see [`crate::weights`]). The header (every name, dtype, shape
//! and offset, plus `__metadata__`) is computed first from a plan; then the tensors are produced
//! and written one at a time, in name order, so converting needs memory for one tensor, not the
//! whole pack. The file is written under a temporary name in the output's directory and renamed
//! into place only when everything succeeded: on error nothing is left behind and an existing
//! pack at the output path is untouched.
//!
//! The layout is byte-for-byte that of [`crate::weights::serialize_pack`]: tensors sorted by
//! name, the JSON header padded with spaces to a multiple of 8 bytes.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use safetensors::tensor::Dtype;

use super::torch::{Checkpoint, RawTensor};
use super::value::{DType, TensorRef};
use crate::{Error, Result};

/// One planned tensor of a pack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackEntry {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
}

impl PackEntry {
    pub fn new(name: impl Into<String>, dtype: Dtype, shape: Vec<usize>) -> PackEntry {
        PackEntry { name: name.into(), dtype, shape }
    }

    /// Bytes of the tensor's data.
    pub fn nbytes(&self) -> Result<usize> {
        self.shape
            .iter()
            .try_fold(self.dtype.bitsize() / 8, |a, &n| a.checked_mul(n))
            .ok_or_else(|| Error::Format(format!("tensor `{}`: shape {:?} is too large", self.name, self.shape)))
    }
}

/// What [`write_pack`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackStats {
    pub tensors: usize,
    /// Size of the file.
    pub bytes: u64,
}

/// The header of a pack holding `entries` (sorted by name here): the 8-byte length, the padded
/// JSON, and each entry's data size in order.
pub fn pack_header(entries: &mut [PackEntry], metadata: &BTreeMap<String, String>) -> Result<(Vec<u8>, Vec<usize>)> {
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(w) = entries.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(Error::Format(format!("pack plan names tensor `{}` twice", w[0].name)));
    }
    if entries.iter().any(|e| e.name == "__metadata__") {
        return Err(Error::Format("a tensor cannot be named `__metadata__`".into()));
    }
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), serde_json::to_value(metadata).map_err(|e| Error::Format(e.to_string()))?);
    }
    let mut sizes = Vec::with_capacity(entries.len());
    let mut off = 0usize;
    for e in entries.iter() {
        let n = e.nbytes()?;
        let dt = serde_json::to_value(e.dtype).map_err(|err| Error::Format(err.to_string()))?;
        let end = off.checked_add(n).ok_or_else(|| Error::Format("pack larger than the address space".into()))?;
        header.insert(e.name.clone(), serde_json::json!({"dtype": dt, "shape": e.shape, "data_offsets": [off, end]}));
        sizes.push(n);
        off = end;
    }
    let mut h = serde_json::to_vec(&serde_json::Value::Object(header)).map_err(|e| Error::Format(e.to_string()))?;
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + h.len());
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    Ok((out, sizes))
}

/// Write a pack to `path`: the header from `entries` and `metadata`, then each tensor's bytes
/// as `produce(entry)` returns them (called once per entry, in name order; it must return
/// exactly the entry's little-endian bytes). Atomic: a temporary file renamed on success.
pub fn write_pack(
    path: impl AsRef<Path>,
    metadata: &BTreeMap<String, String>,
    mut entries: Vec<PackEntry>,
    mut produce: impl FnMut(&PackEntry) -> Result<Vec<u8>>,
) -> Result<PackStats> {
    let path = path.as_ref();
    let (header, sizes) = pack_header(&mut entries, metadata)?;
    let mut out = crate::fs::AtomicFile::create(path)?;
    let ctx = |what: &str| format!("{what} {}", path.display());
    let mut w = BufWriter::with_capacity(1 << 20, out.file()?);
    w.write_all(&header).map_err(|e| Error::io(ctx("writing"), e))?;
    let mut bytes = header.len() as u64;
    for (e, &n) in entries.iter().zip(&sizes) {
        let data = produce(e)?;
        if data.len() != n {
            return Err(Error::Format(format!("tensor `{}`: {} bytes produced for shape {:?} {:?}, expected {n}", e.name, data.len(), e.shape, e.dtype)));
        }
        w.write_all(&data).map_err(|err| Error::io(ctx("writing"), err))?;
        bytes += n as u64;
    }
    w.flush().map_err(|e| Error::io(ctx("writing"), e))?;
    drop(w);
    out.commit()?;
    Ok(PackStats { tensors: entries.len(), bytes })
}

/// The safetensors dtype that stores `d` unchanged.
pub fn safetensors_dtype(d: DType) -> Result<Dtype> {
    Ok(match d {
        DType::F64 => Dtype::F64,
        DType::F32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::I64 => Dtype::I64,
        DType::I32 => Dtype::I32,
        DType::I16 => Dtype::I16,
        DType::I8 => Dtype::I8,
        DType::U8 => Dtype::U8,
        DType::Bool => Dtype::BOOL,
        DType::U16 => Dtype::U16,
        DType::U32 => Dtype::U32,
        DType::U64 => Dtype::U64,
        DType::F8E4M3 => Dtype::F8_E4M3,
        DType::F8E5M2 => Dtype::F8_E5M2,
        DType::C64 | DType::C128 => return Err(Error::Format(format!("complex tensors ({d:?}) cannot be stored in a pack"))),
    })
}

/// Encode a tensor as `dtype`: F16, F32 or BF16 from any real dtype, or any dtype unchanged.
/// A finite value that f16 cannot hold is an error (it would silently become ±inf): such a
/// tensor has to stay f32.
pub fn encode(raw: &RawTensor, dtype: Dtype) -> Result<Vec<u8>> {
    match dtype {
        Dtype::F16 => {
            let out = raw.to_f16_bytes()?;
            let has_inf = out.chunks_exact(2).any(|c| u16::from_le_bytes([c[0], c[1]]) & 0x7fff == 0x7c00);
            if has_inf {
                if let Some(x) = raw.f16_overflow()? {
                    return Err(Error::Format(format!(
                        "a value of magnitude {x} does not fit f16 (largest 65504); store this tensor as f32 (`--dtype f32`, or a model rule keeping it f32)"
                    )));
                }
            }
            Ok(out)
        }
        Dtype::F32 => raw.to_f32_bytes(),
        Dtype::BF16 if raw.dtype == DType::BF16 => Ok(raw.data.clone()),
        Dtype::BF16 => Ok(raw.to_f32()?.iter().flat_map(|&x| half::bf16::from_f32(x).to_le_bytes()).collect()),
        d if safetensors_dtype(raw.dtype).ok() == Some(d) => Ok(raw.data.clone()),
        d => Err(Error::Format(format!("cannot store a {:?} tensor as {d:?}", raw.dtype))),
    }
}

/// Write `tensors` of `ckpt` as a pack, unchanged in name and shape: floating-point tensors as
/// `float_dtype`, others in their own dtype (e.g. `num_batches_tracked` stays I64).
pub fn write_checkpoint_pack(
    ckpt: &Checkpoint,
    tensors: &[(String, TensorRef)],
    path: impl AsRef<Path>,
    metadata: &BTreeMap<String, String>,
    float_dtype: Dtype,
) -> Result<PackStats> {
    let mut by_name: HashMap<&str, &TensorRef> = HashMap::with_capacity(tensors.len());
    let mut entries = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let dtype = if t.dtype.is_float() { float_dtype } else { safetensors_dtype(t.dtype)? };
        entries.push(PackEntry::new(name.clone(), dtype, t.shape.clone()));
        by_name.insert(name, t);
    }
    write_pack(path, metadata, entries, |e| {
        let t = by_name[e.name.as_str()];
        let raw = ckpt.read(t).map_err(|err| Error::Format(format!("tensor `{}`: {err}", e.name)))?;
        encode(&raw, e.dtype)
    })
}

/// SHA-256 of a file as lowercase hex, read in 1 MiB blocks.
pub fn sha256_file(path: impl AsRef<Path>) -> Result<String> {
    use sha2::Digest;
    let path = path.as_ref();
    let mut f = File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
