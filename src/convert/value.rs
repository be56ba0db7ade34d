//! What a checkpoint's pickle decodes to: [`Value`] (plain data, shared containers stay shared),
//! inert [`Object`]s for recorded calls, and torch's [`Storage`] and [`TensorRef`] records with
//! their [`DType`]. Navigation ([`Value::get`], [`Value::at`]) follows dict keys, list indices
//! and object attributes (for `nn.Module`s, children, parameters and buffers first).

use std::sync::Arc;

use crate::{Error, Result};

/// Most values `Checkpoint::tensors` or [`Value::to_json`] visit before giving up: a pickle
/// can share containers so that walking it as a tree would take exponential time.
pub const MAX_VISITS: usize = 10_000_000;

/// Deepest nesting of containers accepted in a pickle (real checkpoints stay below ~40).
pub const MAX_DEPTH: usize = 512;

/// A decoded pickle value. Containers are `Arc`s: a container referenced twice in the pickle
/// (memo) is shared, not copied.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer outside `i64` (`LONG1`/`LONG4`): little-endian two's complement bytes.
    BigInt(Arc<[u8]>),
    Float(f64),
    Str(Arc<str>),
    Bytes(Arc<[u8]>),
    Tuple(Arc<[Value]>),
    /// A list, or a set (`EMPTY_SET`/`FROZENSET`/`builtins.set`), in pickle order.
    List(Arc<[Value]>),
    /// A dict or `OrderedDict`, in insertion order; a key set twice keeps its first position
    /// and its last value, as in Python.
    Dict(Arc<[(Value, Value)]>),
    /// A reference to a class or function (`GLOBAL` / `STACK_GLOBAL`) that was not called.
    Global(Arc<Global>),
    /// Any other object: a call that was recorded, not executed.
    Object(Arc<Object>),
    /// A storage record (persistent id `('storage', …)`).
    Storage(Arc<Storage>),
    /// A tensor rebuilt by `torch._utils._rebuild_tensor*` (or a `Parameter` wrapping one).
    Tensor(Arc<TensorRef>),
    /// A reference to a container that contains itself; the cycle is cut here.
    Cycle,
}

/// `module.name` of a `GLOBAL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Global {
    pub module: String,
    pub name: String,
}

impl Global {
    pub fn is(&self, module: &str, name: &str) -> bool {
        self.module == module && self.name == name
    }
}

impl std::fmt::Display for Global {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.module, self.name)
    }
}

/// An object built by `REDUCE`, `NEWOBJ`, `NEWOBJ_EX`, `INST` or `OBJ`, as data.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    /// The callable: usually a [`Value::Global`].
    pub class: Value,
    /// Positional arguments of the call.
    pub args: Vec<Value>,
    /// Keyword arguments (`NEWOBJ_EX`).
    pub kwargs: Vec<(Value, Value)>,
    /// The `BUILD` argument (for plain Python objects, their `__dict__`); `None` if never built.
    pub state: Value,
    /// `SETITEM(S)` applied to the object (dict subclasses).
    pub items: Vec<(Value, Value)>,
    /// `APPEND(S)` applied to the object (list subclasses).
    pub list: Vec<Value>,
}

impl Object {
    /// `module.name` of the class, or `?` if the callable is not a global.
    pub fn class_name(&self) -> String {
        match &self.class {
            Value::Global(g) => g.to_string(),
            _ => "?".into(),
        }
    }

    /// The attribute dict from `BUILD` (`__dict__`, or the first half of a
    /// `(__dict__, slots)` state).
    pub fn attrs(&self) -> Option<&[(Value, Value)]> {
        match &self.state {
            Value::Dict(d) => Some(d),
            Value::Tuple(t) if t.len() == 2 => match &t[0] {
                Value::Dict(d) => Some(d),
                _ => None,
            },
            _ => None,
        }
    }

    /// One attribute from the `BUILD` state.
    pub fn attr(&self, name: &str) -> Option<&Value> {
        self.attrs().and_then(|d| dict_get(d, name))
    }

    /// Whether this is a pickled `torch.nn.Module` (its state has `_modules` or `_parameters`).
    pub fn is_module(&self) -> bool {
        self.attr("_modules").is_some() || self.attr("_parameters").is_some()
    }
}

/// Element type of a storage or tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
    U16,
    U32,
    U64,
    C64,
    C128,
    F8E4M3,
    F8E5M2,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 | DType::U64 | DType::C64 => 8,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            DType::I8 | DType::U8 | DType::Bool | DType::F8E4M3 | DType::F8E5M2 => 1,
            DType::C128 => 16,
        }
    }

    /// PyTorch's name (`float32`, `bfloat16`, `int64`, …).
    pub fn torch_name(self) -> &'static str {
        match self {
            DType::F64 => "float64",
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::I16 => "int16",
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::Bool => "bool",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::C64 => "complex64",
            DType::C128 => "complex128",
            DType::F8E4M3 => "float8_e4m3fn",
            DType::F8E5M2 => "float8_e5m2",
        }
    }

    /// Whether the values are real floating point (f64, f32, f16, bf16, f8).
    pub fn is_float(self) -> bool {
        matches!(self, DType::F64 | DType::F32 | DType::F16 | DType::BF16 | DType::F8E4M3 | DType::F8E5M2)
    }

    /// The dtype of a legacy typed-storage class (`torch.FloatStorage`, …); `UntypedStorage`
    /// counts bytes.
    pub fn from_storage_class(name: &str) -> Option<DType> {
        Some(match name {
            "DoubleStorage" => DType::F64,
            "FloatStorage" => DType::F32,
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            "LongStorage" => DType::I64,
            "IntStorage" => DType::I32,
            "ShortStorage" => DType::I16,
            "CharStorage" => DType::I8,
            "ByteStorage" | "UntypedStorage" => DType::U8,
            "BoolStorage" => DType::Bool,
            "ComplexFloatStorage" => DType::C64,
            "ComplexDoubleStorage" => DType::C128,
            _ => return None,
        })
    }

    /// The dtype named by a `torch.<name>` global (`torch.float16`, `torch.half`, …).
    pub fn from_torch_name(name: &str) -> Option<DType> {
        Some(match name {
            "float64" | "double" => DType::F64,
            "float32" | "float" => DType::F32,
            "float16" | "half" => DType::F16,
            "bfloat16" => DType::BF16,
            "int64" | "long" => DType::I64,
            "int32" | "int" => DType::I32,
            "int16" | "short" => DType::I16,
            "int8" => DType::I8,
            "uint8" => DType::U8,
            "bool" => DType::Bool,
            "uint16" => DType::U16,
            "uint32" => DType::U32,
            "uint64" => DType::U64,
            "complex64" | "cfloat" => DType::C64,
            "complex128" | "cdouble" => DType::C128,
            "float8_e4m3fn" => DType::F8E4M3,
            "float8_e5m2" => DType::F8E5M2,
            _ => return None,
        })
    }
}

/// A storage record named by a persistent id: `('storage', torch.FloatStorage, key, location,
/// numel)` in zip checkpoints (`archive/data/<key>`), plus an optional view in legacy files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Storage {
    /// Record name (`archive/data/<key>` in a zip checkpoint).
    pub key: String,
    pub dtype: DType,
    /// Elements of `dtype` the pickle claims for this storage (after any view).
    pub numel: u64,
    /// Device it was saved from (`cpu`, `cuda:0`); ignored when reading.
    pub location: String,
    /// Byte offset of a legacy storage view into its record (0 otherwise).
    pub view_offset: u64,
}

/// A tensor: a strided view of a storage, as `torch._utils._rebuild_tensor_v2` describes it.
/// Offsets and strides count elements of `dtype`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorRef {
    pub storage: Arc<Storage>,
    pub dtype: DType,
    pub offset: u64,
    pub shape: Vec<usize>,
    pub strides: Vec<usize>,
}

impl TensorRef {
    /// Element count (saturating: a shape whose product overflows reports `usize::MAX`, which
    /// no storage can back, so reading it fails).
    pub fn numel(&self) -> usize {
        if self.shape.contains(&0) {
            return 0;
        }
        self.shape.iter().try_fold(1usize, |a, &n| a.checked_mul(n)).unwrap_or(usize::MAX)
    }

    /// Bytes of the tensor once made contiguous (saturating).
    pub fn nbytes(&self) -> usize {
        self.numel().saturating_mul(self.dtype.size())
    }

    /// Row-major strides: the tensor can be read as one byte range.
    pub fn is_contiguous(&self) -> bool {
        let mut expect = 1usize;
        for (&n, &s) in self.shape.iter().zip(&self.strides).rev() {
            if n != 1 && s != expect {
                return false;
            }
            expect = expect.saturating_mul(n);
        }
        true
    }

    /// The range of storage elements the view touches, `[start, end)`, checked against the
    /// storage's size; the error names both.
    pub fn storage_span(&self) -> Result<(u64, u64)> {
        let bad = |why: &str| {
            Error::Format(format!(
                "tensor of shape {:?} with strides {:?} at offset {} {why} storage `{}` ({} × {:?})",
                self.shape, self.strides, self.offset, self.storage.key, self.storage.numel, self.storage.dtype
            ))
        };
        if self.shape.len() != self.strides.len() {
            return Err(bad("has a stride per dimension mismatch with"));
        }
        if self.shape.contains(&0) {
            return Ok((self.offset, self.offset));
        }
        let mut last = self.offset;
        for (&n, &s) in self.shape.iter().zip(&self.strides) {
            let step = (n as u64 - 1).checked_mul(s as u64).ok_or_else(|| bad("overflows"))?;
            last = last.checked_add(step).ok_or_else(|| bad("overflows"))?;
        }
        let storage_elems = self.storage.numel.saturating_mul(self.storage.dtype.size() as u64) / self.dtype.size() as u64;
        if last >= storage_elems {
            return Err(bad("reaches past the end of"));
        }
        Ok((self.offset, last + 1))
    }
}

/// Look up a string key in dict entries (also matches integer keys by their decimal text).
pub fn dict_get<'a>(entries: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
    entries.iter().find(|(k, _)| k.key_matches(key)).map(|(_, v)| v)
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
    /// Items of a list, tuple or set.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(v) | Value::List(v) => Some(v),
            _ => None,
        }
    }
    /// Entries of a dict, or the items of a dict-subclass object.
    pub fn as_dict(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Dict(d) => Some(d),
            Value::Object(o) if !o.items.is_empty() => Some(&o.items),
            _ => None,
        }
    }
    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }
    pub fn as_tensor(&self) -> Option<&TensorRef> {
        match self {
            Value::Tensor(t) => Some(t),
            _ => None,
        }
    }
    pub fn is_none(&self) -> bool {
        matches!(self, Value::None)
    }

    /// Whether this (dict key) is the string `key`, or an integer whose decimal text is `key`.
    pub fn key_matches(&self, key: &str) -> bool {
        match self {
            Value::Str(s) => &**s == key,
            Value::Int(i) => key.parse::<i64>().ok() == Some(*i),
            _ => false,
        }
    }

    /// The text a dict key contributes to a dotted name (`None` for keys that are neither
    /// strings nor integers).
    pub fn key_text(&self) -> Option<String> {
        match self {
            Value::Str(s) => Some(s.to_string()),
            Value::Int(i) => Some(i.to_string()),
            _ => None,
        }
    }

    /// One step down: a dict key, a list index, or an attribute of an object (for modules,
    /// children, parameters and buffers come first, as `getattr` on a module finds them).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(d) => dict_get(d, key),
            Value::Tuple(v) | Value::List(v) => key.parse::<usize>().ok().and_then(|i| v.get(i)),
            Value::Object(o) => {
                for slot in ["_modules", "_parameters", "_buffers"] {
                    if let Some(found) = o.attr(slot).and_then(|d| d.as_dict()).and_then(|d| dict_get(d, key)) {
                        return Some(found);
                    }
                }
                o.attr(key).or_else(|| dict_get(&o.items, key))
            }
            _ => None,
        }
    }

    /// Follow a dotted path (`"model.names"`, `"state_dict.model.diffusion_model.out.0.weight"`).
    /// Keys that themselves contain dots are found: at each step the longest run of segments
    /// that names a key wins.
    pub fn at(&self, path: &str) -> Option<&Value> {
        if path.is_empty() {
            return Some(self);
        }
        let segs: Vec<&str> = path.split('.').collect();
        let mut cur = self;
        let mut i = 0;
        'outer: while i < segs.len() {
            for j in (i + 1..=segs.len()).rev() {
                let key = segs[i..j].join(".");
                if let Some(next) = cur.get(&key) {
                    cur = next;
                    i = j;
                    continue 'outer;
                }
            }
            return None;
        }
        Some(cur)
    }
}

pub(crate) fn spend(budget: &mut usize) -> Result<()> {
    if *budget == 0 {
        return Err(Error::Format(format!("checkpoint structure too large: more than {MAX_VISITS} values to walk")));
    }
    *budget -= 1;
    Ok(())
}

impl Value {
    /// A JSON rendering for configs and metadata: dicts become objects (non-string keys as
    /// text), tuples and lists arrays, tensors `{"tensor": "float32", "shape": [...]}`, objects
    /// `{"class": "module.name", ...their attributes}`, NaN and ±inf `null`, bytes latin-1 text.
    pub fn to_json(&self) -> Result<serde_json::Value> {
        let mut budget = MAX_VISITS;
        to_json(self, &mut budget)
    }
}

fn to_json(v: &Value, budget: &mut usize) -> Result<serde_json::Value> {
    use serde_json::Value as J;
    spend(budget)?;
    let pairs = |d: &[(Value, Value)], budget: &mut usize| -> Result<serde_json::Map<String, J>> {
        let mut m = serde_json::Map::new();
        for (k, x) in d {
            let key = match k {
                Value::Str(s) => s.to_string(),
                Value::Int(i) => i.to_string(),
                Value::Float(f) => f.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::None => "null".into(),
                _ => continue,
            };
            m.insert(key, to_json(x, budget)?);
        }
        Ok(m)
    };
    Ok(match v {
        Value::None | Value::Cycle => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::BigInt(_) => J::Null,
        Value::Float(f) => serde_json::Number::from_f64(*f).map(J::Number).unwrap_or(J::Null),
        Value::Str(s) => J::String(s.to_string()),
        Value::Bytes(b) => J::String(b.iter().map(|&c| c as char).collect()),
        Value::Tuple(items) | Value::List(items) => J::Array(items.iter().map(|x| to_json(x, budget)).collect::<Result<_>>()?),
        Value::Dict(d) => J::Object(pairs(d, budget)?),
        Value::Global(g) => J::String(g.to_string()),
        Value::Storage(s) => serde_json::json!({"storage": s.key, "dtype": s.dtype.torch_name()}),
        Value::Tensor(t) => serde_json::json!({"tensor": t.dtype.torch_name(), "shape": t.shape}),
        Value::Object(o) => {
            let mut m = serde_json::Map::new();
            m.insert("class".into(), J::String(o.class_name()));
            if let Some(a) = o.attrs() {
                m.extend(pairs(a, budget)?);
            }
            if !o.items.is_empty() {
                m.extend(pairs(&o.items, budget)?);
            }
            J::Object(m)
        }
    })
}
