//! The crate's error type. Library code returns [`Result`] for anything an input can trigger;
//! in the browser a panic traps the wasm instance, so user input must never reach one.

/// Every error the library reports. Messages name the op, tensor, key or file involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No adapter matched the request (e.g. `WGPU_BACKEND=vulkan` with no Vulkan driver).
    #[error("no GPU adapter found: {0} (without a GPU driver, install a software Vulkan driver: `scripts/setup.sh` installs Mesa lavapipe on Debian/Ubuntu)")]
    NoAdapter(String),
    /// Device request, pipeline creation, GPU validation error or device loss.
    #[error("GPU error: {0}")]
    Device(String),
    /// An op got tensors of incompatible shapes.
    #[error("{op}: shape mismatch: expected {expected}, got {got}")]
    Shape { op: String, expected: String, got: String },
    /// A bad argument that is not a shape (a stride of 0, groups not dividing channels, ...).
    #[error("{op}: {msg}")]
    Arg { op: String, msg: String },
    /// A weight pack lacks a tensor.
    #[error("missing weight `{0}`")]
    MissingWeight(String),
    /// A checkpoint being converted lacks a tensor (the file, then the tensor's name).
    #[error("{file}: missing tensor `{name}`")]
    MissingTensor { file: String, name: String },
    /// A checkpoint being converted has a tensor of another shape than the model's config implies.
    #[error("{file}: tensor `{name}` has shape {got:?}, expected {expected:?}")]
    TensorShape { file: String, name: String, expected: Vec<usize>, got: Vec<usize> },
    /// A weight has the wrong shape.
    #[error("weight `{name}` has shape {got:?}, expected {expected:?}")]
    WeightShape { name: String, expected: Vec<usize>, got: Vec<usize> },
    /// A strict load left tensors unread: a misspelled field or a skipped layer.
    #[error("{} unused weight(s) in the pack: {}", .0.len(), preview(.0))]
    UnusedWeights(Vec<String>),
    /// A file or pack is malformed, of the wrong kind or of another format version.
    #[error("{0}")]
    Format(String),
    /// Work was cancelled by the caller.
    #[error("cancelled")]
    Cancelled,
    /// The OS error is part of the message and deliberately not a `source()`, so chained
    /// printing (`{:#}`) does not repeat it.
    #[error("{context}: {err}")]
    Io { context: String, err: std::io::Error },
}

fn preview(v: &[String]) -> String {
    let mut s = v.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
    if v.len() > 8 {
        s.push_str(&format!(", … ({} more)", v.len() - 8));
    }
    s
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn shape(op: impl Into<String>, expected: impl std::fmt::Debug, got: impl std::fmt::Debug) -> Self {
        Error::Shape { op: op.into(), expected: format!("{expected:?}"), got: format!("{got:?}") }
    }
    /// [`Error::MissingTensor`]: `name` is not in the checkpoint `file`.
    pub fn missing(file: impl Into<String>, name: impl Into<String>) -> Self {
        Error::MissingTensor { file: file.into(), name: name.into() }
    }
    pub fn arg(op: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Arg { op: op.into(), msg: msg.into() }
    }
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), err: source }
    }
}

/// `ensure!(cond, Error::…)` or `ensure!(cond, "op", "message {x}")` (an [`Error::Arg`]).
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $err:expr) => {
        if !$cond {
            return Err($err);
        }
    };
    ($cond:expr, $op:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::Error::arg($op, format!($($fmt)+)));
        }
    };
}

/// `bail!(Error::…)` or `bail!("op", "message {x}")`.
#[macro_export]
macro_rules! bail {
    ($err:expr) => {
        return Err($err)
    };
    ($op:expr, $($fmt:tt)+) => {
        return Err($crate::Error::arg($op, format!($($fmt)+)))
    };
}
