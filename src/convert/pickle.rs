//! A pickle reader that never executes anything: protocols 0–5 as `torch.save` writes them
//! (protocol 2 by default), decoded into plain data.
//!
//! Python's unpickler calls whatever `GLOBAL` + `REDUCE` name; this one only *records* them. A
//! handful of callables that torch checkpoints rely on are interpreted as data constructors
//! (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`, `_rebuild_parameter`,
//! `torch.Size`, `_codecs.encode`, the `torch.jit._pickle` list builders, …); every other call,
//! `os.system` included, becomes an inert [`Object`] holding its class and arguments, and
//! `BUILD` state is kept as data. Tensors become [`TensorRef`]s naming a storage record;
//! reading bytes is the job of [`super::Checkpoint`].
//!
//! The virtual machine keeps containers in an arena (so memo sharing and later mutation have
//! Python's reference semantics, and cycles or deep nesting cannot recurse on drop), then
//! freezes the result into [`Value`], a tree of `Arc`s in which shared containers stay shared.
//! Every length field is checked against the remaining input before anything is allocated, and
//! nesting deeper than [`MAX_DEPTH`] is an error.

use std::collections::HashMap;
use std::sync::Arc;

pub use super::value::MAX_DEPTH;
// The types `load` produces, also reachable as `pickle::Value` etc.
pub use super::value::{DType, Global, Object, Storage, TensorRef, Value};
use crate::{Error, Result};

// ---------------------------------------------------------------------------------------------
// The virtual machine.

/// A value on the VM stack: scalars inline, everything else an arena index.
#[derive(Clone, Copy, Debug)]
enum V {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Node(u32),
}

#[derive(Debug)]
enum Node {
    Str(String),
    Bytes(Vec<u8>),
    BigInt(Vec<u8>),
    Tuple(Vec<V>),
    List(Vec<V>),
    Dict(Vec<(V, V)>),
    Global(Arc<Global>),
    Object { class: V, args: Vec<V>, kwargs: Vec<(V, V)>, state: Option<V>, items: Vec<(V, V)>, list: Vec<V> },
    Storage(Arc<Storage>),
    Tensor(TensorRef),
}

impl Node {
    /// A recorded call `class(*args)`.
    fn object(class: V, args: Vec<V>) -> Node {
        Node::Object { class, args, kwargs: Vec::new(), state: None, items: Vec::new(), list: Vec::new() }
    }
}

/// Why parsing stopped: `truncated` errors mean more input could have helped (the legacy
/// loader reads on).
#[derive(Debug)]
pub(crate) struct PickleError {
    pub offset: usize,
    pub msg: String,
    pub truncated: bool,
}

impl From<PickleError> for Error {
    fn from(e: PickleError) -> Error {
        Error::Format(format!("pickle: {} at byte offset {}", e.msg, e.offset))
    }
}

type PResult<T> = std::result::Result<T, PickleError>;

/// Decode one pickle from the start of `data`; returns the value and the bytes it used
/// (through `STOP`).
pub fn load(data: &[u8]) -> Result<(Value, usize)> {
    Ok(load_inner(data)?)
}

pub(crate) fn load_inner(data: &[u8]) -> PResult<(Value, usize)> {
    let mut vm = Vm { data, pos: 0, op_pos: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new(), nodes: Vec::new() };
    let top = vm.run()?;
    let value = vm.freeze_root(top)?;
    Ok((value, vm.pos))
}

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    /// Offset of the opcode being executed (for errors).
    op_pos: usize,
    stack: Vec<V>,
    marks: Vec<usize>,
    memo: HashMap<u64, V>,
    nodes: Vec<Node>,
}

fn opcode_name(op: u8) -> &'static str {
    match op {
        b'(' => "MARK",
        b'.' => "STOP",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'F' => "FLOAT",
        b'I' => "INT",
        b'J' => "BININT",
        b'K' => "BININT1",
        b'L' => "LONG",
        b'M' => "BININT2",
        b'N' => "NONE",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        b'R' => "REDUCE",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'X' => "BINUNICODE",
        b'a' => "APPEND",
        b'b' => "BUILD",
        b'c' => "GLOBAL",
        b'd' => "DICT",
        b'}' => "EMPTY_DICT",
        b'e' => "APPENDS",
        b'g' => "GET",
        b'h' => "BINGET",
        b'i' => "INST",
        b'j' => "LONG_BINGET",
        b'l' => "LIST",
        b']' => "EMPTY_LIST",
        b'o' => "OBJ",
        b'p' => "PUT",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        b's' => "SETITEM",
        b't' => "TUPLE",
        b')' => "EMPTY_TUPLE",
        b'u' => "SETITEMS",
        b'G' => "BINFLOAT",
        0x80 => "PROTO",
        0x81 => "NEWOBJ",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        0x88 => "NEWTRUE",
        0x89 => "NEWFALSE",
        0x8a => "LONG1",
        0x8b => "LONG4",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8",
        0x8e => "BINBYTES8",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x93 => "STACK_GLOBAL",
        0x94 => "MEMOIZE",
        0x95 => "FRAME",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => "unknown",
    }
}

impl<'a> Vm<'a> {
    fn err(&self, msg: impl Into<String>) -> PickleError {
        PickleError { offset: self.op_pos, msg: msg.into(), truncated: false }
    }

    fn take(&mut self, n: usize) -> PResult<&'a [u8]> {
        if n > self.data.len() - self.pos {
            return Err(PickleError {
                offset: self.op_pos,
                msg: format!("truncated input: needs {n} bytes, {} left", self.data.len() - self.pos),
                truncated: true,
            });
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// A length field: refused unless that many bytes remain, so no allocation follows a lie.
    fn take_len(&mut self, n: u64) -> PResult<&'a [u8]> {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        self.take(n)
    }

    fn u8(&mut self) -> PResult<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> PResult<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> PResult<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> PResult<u64> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    /// A text line (protocol 0 arguments), without its `\n`.
    fn line(&mut self) -> PResult<&'a str> {
        let rest = &self.data[self.pos..];
        let Some(n) = rest.iter().position(|&b| b == b'\n') else {
            return Err(PickleError { offset: self.op_pos, msg: "truncated input: unterminated line".into(), truncated: true });
        };
        let line = std::str::from_utf8(&rest[..n]).map_err(|_| self.err("line is not UTF-8"))?;
        self.pos += n + 1;
        Ok(line.strip_suffix('\r').unwrap_or(line))
    }

    /// Create a node and push it on the stack.
    fn push(&mut self, n: Node) -> PResult<()> {
        let v = self.push_node(n)?;
        self.stack.push(v);
        Ok(())
    }

    fn push_node(&mut self, n: Node) -> PResult<V> {
        let id = u32::try_from(self.nodes.len()).map_err(|_| self.err("too many objects"))?;
        self.nodes.push(n);
        Ok(V::Node(id))
    }

    fn pop(&mut self) -> PResult<V> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err("stack underflow"));
        }
        Ok(self.stack.pop().expect("non-empty"))
    }

    fn top(&self) -> PResult<V> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err("stack underflow"));
        }
        Ok(*self.stack.last().expect("non-empty"))
    }

    /// Everything above the last MARK, which is removed.
    fn pop_mark(&mut self) -> PResult<Vec<V>> {
        let m = self.marks.pop().ok_or_else(|| self.err("no MARK on the stack"))?;
        Ok(self.stack.split_off(m))
    }

    fn node(&self, v: V) -> Option<&Node> {
        match v {
            V::Node(i) => self.nodes.get(i as usize),
            _ => None,
        }
    }

    fn str_of(&self, v: V) -> Option<&str> {
        match self.node(v) {
            Some(Node::Str(s)) => Some(s),
            _ => None,
        }
    }

    fn global_of(&self, v: V) -> Option<Arc<Global>> {
        match self.node(v) {
            Some(Node::Global(g)) => Some(g.clone()),
            _ => None,
        }
    }

    fn seq_of(&self, v: V) -> Option<&[V]> {
        match self.node(v) {
            Some(Node::Tuple(t)) | Some(Node::List(t)) => Some(t),
            _ => None,
        }
    }

    fn memo_put(&mut self, key: u64) -> PResult<()> {
        let v = self.top()?;
        self.memo.insert(key, v);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> PResult<()> {
        let v = *self.memo.get(&key).ok_or_else(|| self.err(format!("memo key {key} was never stored")))?;
        self.stack.push(v);
        Ok(())
    }

    /// Run the program to STOP and return the top of the stack.
    fn run(&mut self) -> PResult<V> {
        loop {
            self.op_pos = self.pos;
            let op = self.u8()?;
            if let Some(top) = self.op(op)? {
                return Ok(top);
            }
        }
    }

    /// One opcode: protocol, framing, marks, POP/DUP and STOP (`Some(top)`) here, the other
    /// groups in their own functions.
    fn op(&mut self, op: u8) -> PResult<Option<V>> {
        match op {
            0x80 => {
                let p = self.u8()?;
                if p > 5 {
                    return Err(self.err(format!("unsupported pickle protocol {p}")));
                }
            }
            0x95 => {
                // FRAME: a length hint for buffered readers; the data follows inline.
                self.u64()?;
            }
            b'.' => return self.pop().map(Some),
            b'(' => self.marks.push(self.stack.len()),
            b'0' => {
                if self.marks.last() == Some(&self.stack.len()) {
                    self.marks.pop();
                } else {
                    self.pop()?;
                }
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let v = self.top()?;
                self.stack.push(v);
            }
            _ => {
                if !(self.scalar_op(op)? || self.container_op(op)? || self.object_op(op)? || self.memo_op(op)?) {
                    let name = opcode_name(op);
                    return Err(self.err(format!("unsupported opcode 0x{op:02x} ({name})")));
                }
            }
        }
        Ok(None)
    }

    /// Scalars: None, booleans, integers, floats, text and bytes. `false` when `op` is not one of them.
    fn scalar_op(&mut self, op: u8) -> PResult<bool> {
        match op {
            b'N' => self.stack.push(V::None),
            0x88 => self.stack.push(V::Bool(true)),
            0x89 => self.stack.push(V::Bool(false)),
            b'J' => {
                let v = self.u32()? as i32;
                self.stack.push(V::Int(v as i64));
            }
            b'K' => {
                let v = self.u8()?;
                self.stack.push(V::Int(v as i64));
            }
            b'M' => {
                let v = self.u16()?;
                self.stack.push(V::Int(v as i64));
            }
            0x8a => {
                let n = self.u8()? as u64;
                let b = self.take_len(n)?;
                let v = self.long_from_bytes(b)?;
                self.stack.push(v);
            }
            0x8b => {
                let n = self.u32()?;
                if n & 0x8000_0000 != 0 {
                    return Err(self.err("LONG4 with a negative length"));
                }
                let b = self.take_len(n as u64)?;
                let v = self.long_from_bytes(b)?;
                self.stack.push(v);
            }
            b'I' => {
                let line = self.line()?;
                let v = match line {
                    "00" => V::Bool(false),
                    "01" => V::Bool(true),
                    s => V::Int(s.trim().parse::<i64>().map_err(|_| self.err(format!("bad INT `{s}`")))?),
                };
                self.stack.push(v);
            }
            b'L' => {
                let line = self.line()?;
                let s = line.trim().trim_end_matches('L');
                let v = s.parse::<i64>().map_err(|_| self.err(format!("LONG `{line}` out of range")))?;
                self.stack.push(V::Int(v));
            }
            b'G' => {
                let b = self.take(8)?;
                self.stack.push(V::Float(f64::from_be_bytes(b.try_into().expect("8 bytes"))));
            }
            b'F' => {
                let line = self.line()?;
                let v = line.trim().parse::<f64>().map_err(|_| self.err(format!("bad FLOAT `{line}`")))?;
                self.stack.push(V::Float(v));
            }
            b'X' => {
                let n = self.u32()? as u64;
                self.unicode(n)?;
            }
            0x8c => {
                let n = self.u8()? as u64;
                self.unicode(n)?;
            }
            0x8d => {
                let n = self.u64()?;
                self.unicode(n)?;
            }
            b'V' => {
                // Raw-unicode-escape text; torch never writes it. Taken as UTF-8.
                let line = self.line()?.to_string();
                self.push(Node::Str(line))?;
            }
            b'B' => {
                let n = self.u32()? as u64;
                self.bytes(n)?;
            }
            b'C' => {
                let n = self.u8()? as u64;
                self.bytes(n)?;
            }
            0x8e | 0x96 => {
                let n = self.u64()?;
                self.bytes(n)?;
            }
            b'T' | b'U' => {
                // Python 2 `str`: Python 3 decodes it as text (latin-1 keeps every byte).
                let n = if op == b'T' { self.u32()? as u64 } else { self.u8()? as u64 };
                let b = self.take_len(n)?;
                let s: String = b.iter().map(|&c| c as char).collect();
                self.push(Node::Str(s))?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Tuples, lists and dicts, and adding to them. `false` when `op` is not one of them.
    fn container_op(&mut self, op: u8) -> PResult<bool> {
        match op {
            b')' => {
                self.push(Node::Tuple(Vec::new()))?;
            }
            b']' => {
                self.push(Node::List(Vec::new()))?;
            }
            b'}' => {
                self.push(Node::Dict(Vec::new()))?;
            }
            0x8f => {
                self.push(Node::List(Vec::new()))?;
            }
            b't' => {
                let items = self.pop_mark()?;
                self.push(Node::Tuple(items))?;
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let floor = self.marks.last().copied().unwrap_or(0);
                if self.stack.len() < floor + n {
                    return Err(self.err("stack underflow"));
                }
                let items = self.stack.split_off(self.stack.len() - n);
                self.push(Node::Tuple(items))?;
            }
            b'l' => {
                let items = self.pop_mark()?;
                self.push(Node::List(items))?;
            }
            0x91 => {
                let items = self.pop_mark()?;
                self.push(Node::List(items))?;
            }
            b'd' => {
                let items = self.pop_mark()?;
                if items.len() % 2 != 0 {
                    return Err(self.err("DICT with an odd number of items"));
                }
                let pairs = items.chunks_exact(2).map(|c| (c[0], c[1])).collect();
                self.push(Node::Dict(pairs))?;
            }
            b'a' => {
                let item = self.pop()?;
                let target = self.top()?;
                self.append(target, vec![item])?;
            }
            b'e' | 0x90 => {
                let items = self.pop_mark()?;
                let target = self.top()?;
                self.append(target, items)?;
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                let target = self.top()?;
                self.set_items(target, vec![(k, v)])?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                if items.len() % 2 != 0 {
                    return Err(self.err("SETITEMS with an odd number of items"));
                }
                let target = self.top()?;
                let pairs = items.chunks_exact(2).map(|c| (c[0], c[1])).collect();
                self.set_items(target, pairs)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Globals, calls, object construction and state, persistent ids (torch storages). `false` when `op` is not one of them.
    fn object_op(&mut self, op: u8) -> PResult<bool> {
        match op {
            b'c' => {
                let module = self.line()?.to_string();
                let name = self.line()?.to_string();
                let v = self.global(module, name)?;
                self.stack.push(v);
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Some(module), Some(name)) = (self.str_of(module), self.str_of(name)) else {
                    return Err(self.err("STACK_GLOBAL needs two strings"));
                };
                let (module, name) = (module.to_string(), name.to_string());
                let v = self.global(module, name)?;
                self.stack.push(v);
            }
            b'R' => {
                let args = self.pop()?;
                let func = self.pop()?;
                let args = self.seq_of(args).ok_or_else(|| self.err("REDUCE arguments are not a tuple"))?.to_vec();
                let v = self.call(func, args)?;
                self.stack.push(v);
            }
            0x81 => {
                let args = self.pop()?;
                let cls = self.pop()?;
                let args = self.seq_of(args).ok_or_else(|| self.err("NEWOBJ arguments are not a tuple"))?.to_vec();
                let v = self.new_object(cls, args, Vec::new())?;
                self.stack.push(v);
            }
            0x92 => {
                let kwargs = self.pop()?;
                let args = self.pop()?;
                let cls = self.pop()?;
                let args = self.seq_of(args).ok_or_else(|| self.err("NEWOBJ_EX arguments are not a tuple"))?.to_vec();
                let kwargs = match self.node(kwargs) {
                    Some(Node::Dict(d)) => d.clone(),
                    _ => return Err(self.err("NEWOBJ_EX keyword arguments are not a dict")),
                };
                let v = self.new_object(cls, args, kwargs)?;
                self.stack.push(v);
            }
            b'i' => {
                let module = self.line()?.to_string();
                let name = self.line()?.to_string();
                let args = self.pop_mark()?;
                let cls = self.global(module, name)?;
                let v = self.new_object(cls, args, Vec::new())?;
                self.stack.push(v);
            }
            b'o' => {
                let mut items = self.pop_mark()?;
                if items.is_empty() {
                    return Err(self.err("OBJ without a class"));
                }
                let args = items.split_off(1);
                let v = self.new_object(items[0], args, Vec::new())?;
                self.stack.push(v);
            }
            b'b' => {
                let state = self.pop()?;
                let target = self.top()?;
                self.build(target, state)?;
            }
            b'Q' => {
                let pid = self.pop()?;
                let v = self.persistent_load(pid)?;
                self.stack.push(v);
            }
            b'P' => {
                let line = self.line()?.to_string();
                let pid = self.push_node(Node::Str(line))?;
                let v = self.persistent_load(pid)?;
                self.stack.push(v);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The memo: PUT and GET. `false` when `op` is not one of them.
    fn memo_op(&mut self, op: u8) -> PResult<bool> {
        match op {
            b'p' => {
                let line = self.line()?;
                let key = line.trim().parse::<u64>().map_err(|_| self.err(format!("bad PUT key `{line}`")))?;
                self.memo_put(key)?;
            }
            b'q' => {
                let key = self.u8()? as u64;
                self.memo_put(key)?;
            }
            b'r' => {
                let key = self.u32()? as u64;
                self.memo_put(key)?;
            }
            0x94 => {
                let key = self.memo.len() as u64;
                self.memo_put(key)?;
            }
            b'g' => {
                let line = self.line()?;
                let key = line.trim().parse::<u64>().map_err(|_| self.err(format!("bad GET key `{line}`")))?;
                self.memo_get(key)?;
            }
            b'h' => {
                let key = self.u8()? as u64;
                self.memo_get(key)?;
            }
            b'j' => {
                let key = self.u32()? as u64;
                self.memo_get(key)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn long_from_bytes(&mut self, b: &[u8]) -> PResult<V> {
        if b.is_empty() {
            return Ok(V::Int(0));
        }
        if b.len() <= 8 {
            let neg = b[b.len() - 1] & 0x80 != 0;
            let mut buf = if neg { [0xffu8; 8] } else { [0u8; 8] };
            buf[..b.len()].copy_from_slice(b);
            return Ok(V::Int(i64::from_le_bytes(buf)));
        }
        self.push_node(Node::BigInt(b.to_vec()))
    }

    fn unicode(&mut self, n: u64) -> PResult<()> {
        let b = self.take_len(n)?;
        let s = std::str::from_utf8(b).map_err(|_| self.err("string is not valid UTF-8"))?.to_string();
        self.push(Node::Str(s))?;
        Ok(())
    }

    fn bytes(&mut self, n: u64) -> PResult<()> {
        let b = self.take_len(n)?.to_vec();
        self.push(Node::Bytes(b))?;
        Ok(())
    }

    fn global(&mut self, module: String, name: String) -> PResult<V> {
        // Python 3 maps Python 2 module names when loading old pickles (`_compat_pickle`).
        let module = match module.as_str() {
            "__builtin__" => "builtins".to_string(),
            "copy_reg" => "copyreg".to_string(),
            _ => module,
        };
        self.push_node(Node::Global(Arc::new(Global { module, name })))
    }

    fn append(&mut self, target: V, items: Vec<V>) -> PResult<()> {
        let V::Node(i) = target else { return Err(self.err("APPEND to a scalar")) };
        match &mut self.nodes[i as usize] {
            Node::List(l) => l.extend(items),
            Node::Object { list, .. } => list.extend(items),
            _ => return Err(self.err("APPEND to something that is not a list")),
        }
        Ok(())
    }

    fn set_items(&mut self, target: V, pairs: Vec<(V, V)>) -> PResult<()> {
        let V::Node(i) = target else { return Err(self.err("SETITEM on a scalar")) };
        match &mut self.nodes[i as usize] {
            Node::Dict(d) => d.extend(pairs),
            Node::Object { items, .. } => items.extend(pairs),
            _ => return Err(self.err("SETITEM on something that is not a dict")),
        }
        Ok(())
    }

    fn build(&mut self, target: V, state: V) -> PResult<()> {
        let V::Node(i) = target else { return Err(self.err("BUILD on a scalar")) };
        // Merge successive dict states, as `__dict__.update` would.
        let new_pairs = match self.node(state) {
            Some(Node::Dict(d)) => Some(d.clone()),
            _ => None,
        };
        let old_state = match &self.nodes[i as usize] {
            Node::Object { state: s, .. } => *s,
            // BUILD on a dict, list or tensor (OrderedDict's `_metadata`, Parameter state):
            // attributes we do not need; the value itself is unchanged.
            _ => return Ok(()),
        };
        if let (Some(V::Node(old)), Some(pairs)) = (old_state, new_pairs) {
            if let Node::Dict(d) = &mut self.nodes[old as usize] {
                d.extend(pairs);
                return Ok(());
            }
        }
        if let Node::Object { state: s, .. } = &mut self.nodes[i as usize] {
            *s = Some(state);
        }
        Ok(())
    }

    fn new_object(&mut self, cls: V, args: Vec<V>, kwargs: Vec<(V, V)>) -> PResult<V> {
        if let Some(g) = self.global_of(cls) {
            if g.is("collections", "OrderedDict") || g.is("builtins", "dict") {
                return self.push_node(Node::Dict(Vec::new()));
            }
        }
        self.push_node(Node::Object { class: cls, args, kwargs, state: None, items: Vec::new(), list: Vec::new() })
    }

    fn int_arg(&self, v: V, what: &str) -> PResult<i64> {
        match v {
            V::Int(i) => Ok(i),
            V::Bool(b) => Ok(b as i64),
            _ => Err(self.err(format!("{what} is not an integer"))),
        }
    }

    fn usize_list(&self, v: V, what: &str) -> PResult<Vec<usize>> {
        let items = self.seq_of(v).ok_or_else(|| self.err(format!("{what} is not a tuple")))?;
        items
            .iter()
            .map(|&x| {
                let i = self.int_arg(x, what)?;
                usize::try_from(i).map_err(|_| self.err(format!("{what} has a negative entry {i}")))
            })
            .collect()
    }

    /// `REDUCE`: interpret the callables torch checkpoints need; record every other call.
    fn call(&mut self, mut func: V, mut args: Vec<V>) -> PResult<V> {
        // `_rebuild_from_type_v2(func, type, args, state)` wraps a tensor subclass: unwrap it
        // (in a loop, so a chain of wrappers cannot recurse deeply) and rebuild the plain tensor.
        for _ in 0..=16 {
            match self.global_of(func) {
                Some(g) if g.module == "torch._tensor" && (g.name == "_rebuild_from_type_v2" || g.name == "_rebuild_from_type") => {
                    let (Some(&f), Some(&a)) = (args.first(), args.get(2)) else {
                        return Err(self.err(format!("{} needs (func, type, args, state)", g.name)));
                    };
                    args = self.seq_of(a).ok_or_else(|| self.err(format!("{} arguments are not a tuple", g.name)))?.to_vec();
                    func = f;
                }
                _ => break,
            }
        }
        let Some(g) = self.global_of(func) else {
            return self.push_node(Node::object(func, args));
        };
        let (module, name) = (g.module.as_str(), g.name.as_str());
        match (module, name) {
            ("collections", "OrderedDict") | ("builtins", "dict") => {
                let mut pairs = Vec::new();
                if let Some(&src) = args.first() {
                    let items = self.seq_of(src).ok_or_else(|| self.err("OrderedDict argument is not a list"))?.to_vec();
                    for it in items {
                        match self.seq_of(it) {
                            Some([k, v]) => pairs.push((*k, *v)),
                            _ => return Err(self.err("OrderedDict item is not a pair")),
                        }
                    }
                }
                self.push_node(Node::Dict(pairs))
            }
            ("builtins", "set") | ("builtins", "frozenset") | ("builtins", "list") | ("builtins", "tuple") | ("torch", "Size") => {
                let items = match args.first() {
                    Some(&src) => self.seq_of(src).ok_or_else(|| self.err(format!("{g} argument is not a sequence")))?.to_vec(),
                    None => Vec::new(),
                };
                if name == "tuple" || name == "Size" {
                    self.push_node(Node::Tuple(items))
                } else {
                    self.push_node(Node::List(items))
                }
            }
            ("_codecs", "encode") => {
                // Protocol 2 writes `bytes` as `_codecs.encode(text, "latin1")`.
                let text = args.first().and_then(|&a| self.str_of(a)).ok_or_else(|| self.err("_codecs.encode needs a string"))?;
                let bytes =
                    text.chars().map(|c| u8::try_from(c as u32).map_err(|_| self.err("_codecs.encode: text is not latin-1"))).collect::<PResult<Vec<u8>>>()?;
                self.push_node(Node::Bytes(bytes))
            }
            ("torch._utils", "_rebuild_tensor") | ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor_v3") => {
                self.rebuild_tensor(name, &args)
            }
            ("torch._utils", "_rebuild_parameter") | ("torch._utils", "_rebuild_parameter_with_state") | ("torch.nn.parameter", "Parameter") => {
                // A Parameter is its data tensor (requires_grad and hooks do not matter here).
                args.first().copied().ok_or_else(|| self.err(format!("{name} without arguments")))
            }
            ("torch.jit._pickle", n) if n.starts_with("build_") || n == "restore_type_tag" => {
                // TorchScript wraps typed lists: `build_intlist([..])`, `restore_type_tag(v, ty)`.
                args.first().copied().ok_or_else(|| self.err(format!("{name} without arguments")))
            }
            ("copyreg", "_reconstructor") | ("copyreg", "__newobj__") => {
                let Some(&cls) = args.first() else { return Err(self.err(format!("{name} without a class"))) };
                let rest = if name == "__newobj__" { args[1..].to_vec() } else { Vec::new() };
                self.new_object(cls, rest, Vec::new())
            }
            _ => self.push_node(Node::object(func, args)),
        }
    }

    fn rebuild_tensor(&mut self, name: &str, args: &[V]) -> PResult<V> {
        let need = if name == "_rebuild_tensor" {
            4
        } else if name == "_rebuild_tensor_v3" {
            7
        } else {
            6
        };
        if args.len() < need {
            return Err(self.err(format!("{name} needs {need} arguments, got {}", args.len())));
        }
        let storage = match self.node(args[0]) {
            Some(Node::Storage(s)) => s.clone(),
            // A storage we could not decode (unknown dtype, odd persistent id): keep the call.
            _ => {
                let func = self.global("torch._utils".into(), name.into())?;
                return self.push_node(Node::object(func, args.to_vec()));
            }
        };
        let offset = self.int_arg(args[1], "storage offset")?;
        let offset = u64::try_from(offset).map_err(|_| self.err(format!("negative storage offset {offset}")))?;
        let shape = self.usize_list(args[2], "tensor size")?;
        let strides = self.usize_list(args[3], "tensor stride")?;
        if shape.len() != strides.len() {
            return Err(self.err(format!("tensor size {shape:?} and stride {strides:?} differ in rank")));
        }
        let dtype = if name == "_rebuild_tensor_v3" {
            let g = self.global_of(args[6]).ok_or_else(|| self.err("_rebuild_tensor_v3 dtype is not a torch dtype"))?;
            match DType::from_torch_name(&g.name) {
                Some(d) if g.module == "torch" => d,
                _ => {
                    let func = self.global("torch._utils".into(), name.into())?;
                    return self.push_node(Node::object(func, args.to_vec()));
                }
            }
        } else {
            storage.dtype
        };
        self.push_node(Node::Tensor(TensorRef { storage, dtype, offset, shape, strides }))
    }

    /// `BINPERSID`: torch's `('storage', storage_type, key, location, numel[, view_metadata])`.
    fn persistent_load(&mut self, pid: V) -> PResult<V> {
        let record = self.seq_of(pid).map(|s| s.to_vec());
        let storage = record.as_deref().and_then(|r| self.storage_record(r).transpose()).transpose()?;
        match storage {
            Some(s) => self.push_node(Node::Storage(Arc::new(s))),
            None => {
                let func = self.global("pickle".into(), "persistent_load".into())?;
                self.push_node(Node::object(func, vec![pid]))
            }
        }
    }

    fn storage_record(&self, r: &[V]) -> PResult<Option<Storage>> {
        if r.len() < 5 || self.str_of(r[0]) != Some("storage") {
            return Ok(None);
        }
        let Some(class) = self.global_of(r[1]) else { return Ok(None) };
        let Some(dtype) = DType::from_storage_class(&class.name) else { return Ok(None) };
        let key = match (self.str_of(r[2]), r[2]) {
            (Some(s), _) => s.to_string(),
            (None, V::Int(i)) => i.to_string(),
            _ => return Err(self.err("storage key is not a string")),
        };
        let location = self.str_of(r[3]).unwrap_or("cpu").to_string();
        let numel = self.int_arg(r[4], "storage size")?;
        let mut numel = u64::try_from(numel).map_err(|_| self.err(format!("negative storage size {numel}")))?;
        let mut view_offset = 0;
        if let Some(&view) = r.get(5) {
            if let Some(v) = self.seq_of(view) {
                // Legacy storage view: (view_key, offset, size) into the root storage.
                let [_, off, size] = v else { return Err(self.err("storage view is not (key, offset, size)")) };
                let off = u64::try_from(self.int_arg(*off, "view offset")?).map_err(|_| self.err("negative view offset"))?;
                let size = u64::try_from(self.int_arg(*size, "view size")?).map_err(|_| self.err("negative view size"))?;
                if off.checked_add(size).is_none_or(|end| end > numel) {
                    return Err(self.err("storage view reaches past its storage"));
                }
                view_offset = off * dtype.size() as u64;
                numel = size;
            }
        }
        Ok(Some(Storage { key, dtype, numel, location, view_offset }))
    }

    // -----------------------------------------------------------------------------------------
    // Freezing the arena into `Value`s.

    fn freeze_root(&self, top: V) -> PResult<Value> {
        let mut f = Freezer { memo: vec![None; self.nodes.len()], busy: vec![false; self.nodes.len()] };
        Ok(self.freeze(top, 0, &mut f)?.0)
    }

    /// Returns the value and its height (nesting levels below and including it).
    fn freeze(&self, v: V, depth: usize, f: &mut Freezer) -> PResult<(Value, usize)> {
        let i = match v {
            V::None => return Ok((Value::None, 0)),
            V::Bool(b) => return Ok((Value::Bool(b), 0)),
            V::Int(x) => return Ok((Value::Int(x), 0)),
            V::Float(x) => return Ok((Value::Float(x), 0)),
            V::Node(i) => i as usize,
        };
        if let Some(done) = &f.memo[i] {
            return Ok(done.clone());
        }
        if f.busy[i] {
            return Ok((Value::Cycle, 0));
        }
        if depth >= MAX_DEPTH {
            return Err(PickleError { offset: self.data.len(), msg: format!("containers nested deeper than {MAX_DEPTH}"), truncated: false });
        }
        f.busy[i] = true;
        let mut h = 0usize;
        let mut sub = |v: V, f: &mut Freezer| -> PResult<Value> {
            let (x, hx) = self.freeze(v, depth + 1, f)?;
            h = h.max(hx);
            Ok(x)
        };
        let value = match &self.nodes[i] {
            Node::Str(s) => Value::Str(s.as_str().into()),
            Node::Bytes(b) => Value::Bytes(b.as_slice().into()),
            Node::BigInt(b) => Value::BigInt(b.as_slice().into()),
            Node::Global(g) => Value::Global(g.clone()),
            Node::Storage(s) => Value::Storage(s.clone()),
            Node::Tensor(t) => Value::Tensor(Arc::new(t.clone())),
            Node::Tuple(items) => Value::Tuple(items.iter().map(|&x| sub(x, f)).collect::<PResult<Vec<_>>>()?.into()),
            Node::List(items) => Value::List(items.iter().map(|&x| sub(x, f)).collect::<PResult<Vec<_>>>()?.into()),
            Node::Dict(pairs) => {
                let mut out: Vec<(Value, Value)> = Vec::with_capacity(pairs.len());
                let mut index: HashMap<KeyId, usize> = HashMap::new();
                for &(k, v) in pairs {
                    let (k, v) = (sub(k, f)?, sub(v, f)?);
                    match KeyId::of(&k) {
                        Some(id) => match index.get(&id) {
                            Some(&pos) => out[pos].1 = v,
                            None => {
                                index.insert(id, out.len());
                                out.push((k, v));
                            }
                        },
                        None => out.push((k, v)),
                    }
                }
                Value::Dict(out.into())
            }
            Node::Object { class, args, kwargs, state, items, list } => {
                let obj = Object {
                    class: sub(*class, f)?,
                    args: args.iter().map(|&x| sub(x, f)).collect::<PResult<_>>()?,
                    kwargs: kwargs.iter().map(|&(k, v)| Ok((sub(k, f)?, sub(v, f)?))).collect::<PResult<_>>()?,
                    state: match state {
                        Some(s) => sub(*s, f)?,
                        None => Value::None,
                    },
                    items: items.iter().map(|&(k, v)| Ok((sub(k, f)?, sub(v, f)?))).collect::<PResult<_>>()?,
                    list: list.iter().map(|&x| sub(x, f)).collect::<PResult<_>>()?,
                };
                Value::Object(Arc::new(obj))
            }
        };
        let h = h + 1;
        if h > MAX_DEPTH {
            return Err(PickleError { offset: self.data.len(), msg: format!("containers nested deeper than {MAX_DEPTH}"), truncated: false });
        }
        f.busy[i] = false;
        f.memo[i] = Some((value.clone(), h));
        Ok((value, h))
    }
}

struct Freezer {
    memo: Vec<Option<(Value, usize)>>,
    busy: Vec<bool>,
}

/// Identity of a hashable dict key, for Python's "a key set twice keeps one entry".
#[derive(PartialEq, Eq, Hash)]
enum KeyId {
    Str(Arc<str>),
    Int(i64),
    None,
}

impl KeyId {
    fn of(v: &Value) -> Option<KeyId> {
        match v {
            Value::Str(s) => Some(KeyId::Str(s.clone())),
            Value::Int(i) => Some(KeyId::Int(*i)),
            Value::Bool(b) => Some(KeyId::Int(*b as i64)),
            Value::None => Some(KeyId::None),
            _ => None,
        }
    }
}
