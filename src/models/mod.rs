//! Model architectures, one file (or folder) per checkpoint family, each with its config, its
//! `load(&Weights)` and `forward`, and its converter rules.

pub mod audioldm;
pub mod clap;
pub mod clip;
pub mod detect;
pub mod hifigan;
pub mod ssv2a;
pub mod yolo;

/// Named intermediate activations recorded by `forward(.., Some(trace))`, in execution order,
/// for golden tests (the first diverging stage names itself).
pub type Trace = Vec<(String, crate::tensor::Tensor)>;
