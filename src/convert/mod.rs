//! From official PyTorch checkpoints to weight packs, without Python.
//!
//! - [`pickle`]: a pickle reader that records calls instead of making them, so loading a
//!   checkpoint can never execute code; torch's tensor and storage constructors become
//!   [`TensorRef`]s.
//! - [`value`]: the decoded data ([`Value`], [`Object`], [`TensorRef`], [`DType`]) and its
//!   navigation and JSON rendering.
//! - [`zip`]: the stored-records subset of zip that `torch.save` archives use.
//! - [`torch`]: [`Checkpoint`] opens `torch.save` zip archives (any top folder name),
//!   TorchScript archives, the legacy non-zip format and safetensors files; it flattens dicts,
//!   Lightning checkpoints and pickled `nn.Module` trees into state-dict names and reads one
//!   tensor at a time.
//! - `pack_writer` (native only): writes a pack from a plan, streaming one tensor at a time
//!   into a temporary file renamed into place on success.
//!
//! The kinds and the one path from a checkpoint file to a pack
//! ([`crate::registry::convert_checkpoint`]) live in [`crate::registry`], above the models.
//!
//! ```no_run
//! # fn main() -> ssv2a::Result<()> {
//! use ssv2a::convert::{Checkpoint, pack_writer};
//! let ckpt = Checkpoint::open("yolov8n.pt")?;
//! let names = ckpt.get("model.names").map(|v| v.to_json()).transpose()?;   // {"0": "person", ...}
//! let tensors = ckpt.tensors("model")?;              // [("model.0.conv.weight", TensorRef), ...]
//! let meta = ssv2a::weights::pack_metadata("yolo", &serde_json::json!({"names": names}).to_string(), "f16");
//! pack_writer::write_checkpoint_pack(&ckpt, &tensors, "yolo.safetensors", &meta, safetensors::Dtype::F16)?;
//! # Ok(()) }
//! ```

#[cfg(not(target_arch = "wasm32"))]
pub mod pack_writer;
pub mod pickle;
pub mod plan;
pub mod torch;
pub mod value;
pub mod zip;

pub use torch::flatten;
pub use torch::{Checkpoint, Format, RawTensor};
pub use value::{DType, Global, Object, Storage, TensorRef, Value};
