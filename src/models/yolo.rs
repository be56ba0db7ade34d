//! YOLOv8 detection network (ultralytics 8.2.90 `DetectionModel` built from
//! `ultralytics/cfg/models/v8/yolov8.yaml`), as SSV2A runs it with `yolov8x-oiv7.pt`:
//! pixels [B, 3, H, W] in [0, 1] (RGB, H and W multiples of 32) → the Detect head's decoded
//! output [B, 4 + nc, A]: box centre x, centre y, width, height in input pixels, then the
//! sigmoid score of every class (no objectness). A = (H/8·W/8)·(1 + 1/4 + 1/16).
//!
//! Reference: ultralytics 8.2.90, `nn/tasks.py` (`parse_model`, `DetectionModel`),
//! `nn/modules/{conv.py Conv, block.py C2f/Bottleneck/SPPF/DFL, head.py Detect}`,
//! `utils/tal.py` (`make_anchors`, `dist2bbox`).
//!
//! - **Conv** = Conv2d(k, s, pad k/2) with the BatchNorm (eps from the checkpoint, 1e-3 as
//!   `initialize_weights` sets it) folded in by the converter, then SiLU (fused in the kernel):
//!   what ultralytics' `AutoBackend` runs after `model.fuse()`.
//! - **C2f**, **Bottleneck**, **SPPF** (max-pool k5 s1 p2 with −∞ padding, as PyTorch).
//! - **Detect** (reg_max 16): per level cat(cv2 box branch [64 ch], cv3 class branch [nc ch]);
//!   DFL = softmax over the 16 bins, then the fixed 1×1 conv `dfl.conv.weight` (0…15, kept in
//!   the pack as stored; the runtime uses the stored values, so a checkpoint with other values
//!   would be honoured); anchors (cell centres) and strides 8/16/32 are made on the CPU.
//!
//! Channels and depths follow `parse_model`: a yaml channel c becomes
//! `ceil(min(c, max_channels)·width / 8)·8`, a repeat count n > 1 becomes
//! `max(round(n·depth), 1)`; x is depth 1.0, width 1.25, max_channels 512 (1024 → 640).
//!
//! Weights: `model.{i}.…` state-dict names of the checkpoint; the converter ([`plan`]) folds
//! every `bn` into its `conv` (the pack holds `model.{i}.conv.{weight,bias}`, as the fused
//! model's state dict names them) and drops `num_batches_tracked`. The pack's `config`
//! metadata holds [`Config`] (multiples, nc, class names) derived from the checkpoint's yaml.

use serde::{Deserialize, Serialize};

use crate::convert::plan::{Plan, Recipe, TensorSource};
use crate::media::image::round_half_even;
use crate::nn::Conv2d;
use crate::ops::conv::Conv2dArgs;
use crate::ops::Act;
use crate::tensor::{HostTensor, Tensor, Weight};
use crate::weights::Weights;
use crate::{Error, Result};

/// Pack kind of YOLO packs.
pub const KIND: &str = "yolo";
/// DFL bins per box side (`Detect.reg_max`).
pub const REG_MAX: usize = 16;
/// Strides of the three detection levels (P3, P4, P5).
pub const STRIDES: [usize; 3] = [8, 16, 32];

pub use crate::models::Trace;

/// The network's hyper-parameters (what `parse_model` reads from the yaml), plus class names.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Config {
    /// `depth_multiple` (scale[0]).
    pub depth_multiple: f64,
    /// `width_multiple` (scale[1]).
    pub width_multiple: f64,
    /// `max_channels` (scale[2]); yaml channels are capped at this before the width multiple.
    pub max_channels: u64,
    /// Number of classes.
    pub nc: usize,
    /// Class names, index = class id (601 Open Images V7 names for yolov8x-oiv7).
    #[serde(default)]
    pub names: Vec<String>,
    /// BatchNorm eps the converter folded with (informational; 1e-3 in ultralytics models).
    #[serde(default = "default_bn_eps")]
    pub bn_eps: f64,
    /// The scale letter (`n`, `s`, `m`, `l`, `x`, …) if the yaml named one.
    #[serde(default)]
    pub scale: Option<String>,
}

fn default_bn_eps() -> f64 {
    1e-3
}

/// One row of yolov8.yaml: `[from, repeats, module, args]` with yaml (unscaled) channels.
#[derive(Clone, Copy, Debug)]
enum Spec {
    Conv { c2: usize, k: usize, s: usize },
    C2f { c2: usize, n: usize, shortcut: bool },
    Sppf { c2: usize, k: usize },
    Upsample,
    Concat,
    Detect,
}

/// `ultralytics/cfg/models/v8/yolov8.yaml` (backbone then head), 8.2.90.
const YOLOV8: [(&[i64], Spec); 23] = [
    (&[-1], Spec::Conv { c2: 64, k: 3, s: 2 }),
    (&[-1], Spec::Conv { c2: 128, k: 3, s: 2 }),
    (&[-1], Spec::C2f { c2: 128, n: 3, shortcut: true }),
    (&[-1], Spec::Conv { c2: 256, k: 3, s: 2 }),
    (&[-1], Spec::C2f { c2: 256, n: 6, shortcut: true }),
    (&[-1], Spec::Conv { c2: 512, k: 3, s: 2 }),
    (&[-1], Spec::C2f { c2: 512, n: 6, shortcut: true }),
    (&[-1], Spec::Conv { c2: 1024, k: 3, s: 2 }),
    (&[-1], Spec::C2f { c2: 1024, n: 3, shortcut: true }),
    (&[-1], Spec::Sppf { c2: 1024, k: 5 }),
    (&[-1], Spec::Upsample),
    (&[-1, 6], Spec::Concat),
    (&[-1], Spec::C2f { c2: 512, n: 3, shortcut: false }),
    (&[-1], Spec::Upsample),
    (&[-1, 4], Spec::Concat),
    (&[-1], Spec::C2f { c2: 256, n: 3, shortcut: false }),
    (&[-1], Spec::Conv { c2: 256, k: 3, s: 2 }),
    (&[-1, 12], Spec::Concat),
    (&[-1], Spec::C2f { c2: 512, n: 3, shortcut: false }),
    (&[-1], Spec::Conv { c2: 512, k: 3, s: 2 }),
    (&[-1, 9], Spec::Concat),
    (&[-1], Spec::C2f { c2: 1024, n: 3, shortcut: false }),
    (&[15, 18, 21], Spec::Detect),
];

impl Config {
    fn scaled(depth: f64, width: f64, max_channels: u64, nc: usize, scale: &str) -> Config {
        Config { depth_multiple: depth, width_multiple: width, max_channels, nc, names: vec![], bn_eps: 1e-3, scale: Some(scale.into()) }
    }
    /// yolov8n: depth 0.33, width 0.25, max 1024.
    pub fn n(nc: usize) -> Config {
        Self::scaled(0.33, 0.25, 1024, nc, "n")
    }
    /// yolov8s: depth 0.33, width 0.50, max 1024.
    pub fn s(nc: usize) -> Config {
        Self::scaled(0.33, 0.5, 1024, nc, "s")
    }
    /// yolov8m: depth 0.67, width 0.75, max 768.
    pub fn m(nc: usize) -> Config {
        Self::scaled(0.67, 0.75, 768, nc, "m")
    }
    /// yolov8l: depth 1.0, width 1.0, max 512.
    pub fn l(nc: usize) -> Config {
        Self::scaled(1.0, 1.0, 512, nc, "l")
    }
    /// yolov8x: depth 1.0, width 1.25, max 512 (so 1024-channel layers have 640).
    pub fn x(nc: usize) -> Config {
        Self::scaled(1.0, 1.25, 512, nc, "x")
    }
    /// yolov8x-oiv7 (what SSV2A uses): x with the 601 Open Images V7 classes (names come from
    /// the checkpoint at conversion).
    pub fn x_oiv7() -> Config {
        Self::x(601)
    }

    /// From an ultralytics model yaml (as a JSON value: the checkpoint's `model.yaml`, or
    /// `yaml.safe_load` of a yaml file), as `parse_model` reads it: `nc`, then `scales[scale]`
    /// (the first scale if `scale` is absent) or `depth_multiple` / `width_multiple` (no channel
    /// cap). The backbone and head must be yolov8.yaml's; other topologies are an error.
    pub fn from_yaml(y: &serde_json::Value) -> Result<Config> {
        let nc = y.get("nc").and_then(|v| v.as_u64()).ok_or_else(|| Error::Format("YOLO yaml: no integer `nc`".into()))? as usize;
        check_topology(y)?;
        let num = |v: &serde_json::Value| v.as_f64();
        let (depth, width, max_ch, scale) = match y.get("scales").and_then(|s| s.as_object()).filter(|s| !s.is_empty()) {
            Some(scales) => {
                let key = match y.get("scale").and_then(|s| s.as_str()) {
                    Some(k) => k.to_string(),
                    None => scales.keys().next().cloned().unwrap_or_default(),
                };
                let s = scales.get(&key).and_then(|s| s.as_array()).ok_or_else(|| Error::Format(format!("YOLO yaml: no scale `{key}` in `scales`")))?;
                let vals: Vec<f64> = s.iter().filter_map(num).collect();
                if vals.len() != 3 {
                    return Err(Error::Format(format!("YOLO yaml: scale `{key}` is not [depth, width, max_channels]")));
                }
                (vals[0], vals[1], vals[2] as u64, Some(key))
            }
            None => {
                let d = y.get("depth_multiple").and_then(num).unwrap_or(1.0);
                let w = y.get("width_multiple").and_then(num).unwrap_or(1.0);
                (d, w, u64::MAX, None)
            }
        };
        if !(depth > 0.0 && width > 0.0 && max_ch > 0) || nc == 0 {
            return Err(Error::Format(format!("YOLO yaml: bad multiples depth {depth}, width {width}, max_channels {max_ch}, nc {nc}")));
        }
        Ok(Config { depth_multiple: depth, width_multiple: width, max_channels: max_ch, nc, names: vec![], bn_eps: 1e-3, scale })
    }

    /// The config a converted pack carries.
    pub fn from_weights(w: &Weights) -> Result<Config> {
        w.expect_kind(KIND)?;
        let c: Config = w.config()?;
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> Result<()> {
        // > 0 and not NaN.
        let positive = |v: f64| v.partial_cmp(&0.0) == Some(std::cmp::Ordering::Greater);
        if self.nc == 0 || !positive(self.width_multiple) || !positive(self.depth_multiple) || self.max_channels == 0 {
            return Err(Error::Format(format!("YOLO config: bad values {self:?}")));
        }
        if !self.names.is_empty() && self.names.len() != self.nc {
            return Err(Error::Format(format!("YOLO config: {} class names for nc = {}", self.names.len(), self.nc)));
        }
        Ok(())
    }

    /// Channels of a yaml channel count: `make_divisible(min(c, max_channels)·width, 8)`.
    pub fn channels(&self, c: usize) -> usize {
        let c = (c as u64).min(self.max_channels) as f64 * self.width_multiple;
        ((c / 8.0).ceil() * 8.0) as usize
    }

    /// Repeats of a yaml repeat count: `max(round(n·depth), 1)` for n > 1 (Python rounding).
    pub fn depth(&self, n: usize) -> usize {
        if n > 1 {
            (round_half_even(n as f64 * self.depth_multiple) as usize).max(1)
        } else {
            n
        }
    }

    /// Class name of `class` (its number if the pack has no names).
    pub fn name(&self, class: usize) -> String {
        self.names.get(class).cloned().unwrap_or_else(|| class.to_string())
    }

    /// Bytes of the largest activation a forward at h × w (batch 1) allocates, to refuse sizes
    /// over the adapter's storage binding limit before running.
    pub fn max_activation_bytes(&self, h: usize, w: usize) -> u64 {
        let c = self;
        let mut ch: Vec<(usize, usize)> = vec![]; // (channels, stride) per layer
        let mut most = 3 * h * w;
        for (from, spec) in YOLOV8.iter() {
            let (pc, ps) = ch.last().copied().unwrap_or((3, 1));
            let at = |f: i64| if f < 0 { (pc, ps) } else { ch[f as usize] };
            let (out, st, widest) = match *spec {
                Spec::Conv { c2, s, .. } => (c.channels(c2), ps * s, c.channels(c2)),
                Spec::C2f { c2, n, .. } => {
                    let c2 = c.channels(c2);
                    (c2, ps, (2 + c.depth(n)) * (c2 / 2))
                }
                Spec::Sppf { c2, .. } => (c.channels(c2), ps, 4 * (pc / 2)),
                Spec::Upsample => (pc, ps / 2, pc),
                Spec::Concat => {
                    let sum = from.iter().map(|&f| at(f).0).sum();
                    (sum, ps, sum)
                }
                Spec::Detect => {
                    let no = 4 * REG_MAX + c.nc;
                    most = most.max(no * num_anchors(h, w));
                    (4 + c.nc, 8, 0)
                }
            };
            most = most.max(widest * (h / st.max(1)) * (w / st.max(1)));
            ch.push((out, st));
        }
        4 * most as u64
    }
}

/// The yaml's backbone + head must be yolov8.yaml's: same sources, modules, repeats and channels.
fn check_topology(y: &serde_json::Value) -> Result<()> {
    let rows: Vec<&serde_json::Value> = ["backbone", "head"].iter().filter_map(|k| y.get(*k).and_then(|v| v.as_array())).flatten().collect();
    if rows.is_empty() {
        // A yaml without layer lists (e.g. a hand-written config with only the multiples) is
        // taken as yolov8.
        return Ok(());
    }
    let bad = |i: usize, why: &str| Error::Format(format!("YOLO yaml layer {i}: {why}; only the yolov8.yaml topology (detect) is supported"));
    if rows.len() != YOLOV8.len() {
        return Err(bad(rows.len().min(YOLOV8.len()), &format!("{} layers, yolov8.yaml has {}", rows.len(), YOLOV8.len())));
    }
    for (i, (row, (from, spec))) in rows.iter().zip(YOLOV8.iter()).enumerate() {
        let r = row.as_array().filter(|r| r.len() == 4).ok_or_else(|| bad(i, "not [from, repeats, module, args]"))?;
        let f: Vec<i64> = match &r[0] {
            serde_json::Value::Array(a) => a.iter().filter_map(|v| v.as_i64()).collect(),
            v => v.as_i64().into_iter().collect(),
        };
        if f != *from {
            return Err(bad(i, &format!("from {f:?}, expected {from:?}")));
        }
        let module = r[2].as_str().unwrap_or("");
        let n = r[1].as_u64().unwrap_or(0) as usize;
        let arg0 = r[3].as_array().and_then(|a| a.first()).and_then(|v| v.as_u64()).map(|v| v as usize);
        let ok = match *spec {
            Spec::Conv { c2, .. } => module == "Conv" && arg0 == Some(c2) && n == 1,
            Spec::C2f { c2, n: nn, .. } => module == "C2f" && arg0 == Some(c2) && n == nn,
            Spec::Sppf { c2, .. } => module == "SPPF" && arg0 == Some(c2),
            Spec::Upsample => module == "nn.Upsample",
            Spec::Concat => module == "Concat",
            Spec::Detect => module == "Detect",
        };
        if !ok {
            return Err(bad(i, &format!("{module} ×{n} {}, expected {spec:?}", r[3])));
        }
    }
    Ok(())
}

/// ultralytics `Conv`: conv (BN folded, with bias) + SiLU. Field = state-dict segment `conv`.
struct Conv {
    conv: Conv2d,
}

impl Conv {
    fn load(w: &Weights, c1: usize, c2: usize, k: usize, s: usize) -> Result<Conv> {
        Ok(Conv { conv: Conv2d::load(&w.sub("conv"), c1, c2, k, Conv2dArgs::new(s, k / 2).act(Act::Silu), true)? })
    }
    /// x: [b, c1, h, w] -> [b, c2, h/s, w/s]
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.conv.forward(x)
    }
}

/// `Bottleneck(c, c, shortcut, k=(3, 3), e=1.0)`.
struct Bottleneck {
    cv1: Conv,
    cv2: Conv,
    add: bool,
}

impl Bottleneck {
    fn load(w: &Weights, c: usize, shortcut: bool) -> Result<Bottleneck> {
        Ok(Bottleneck { cv1: Conv::load(&w.sub("cv1"), c, c, 3, 1)?, cv2: Conv::load(&w.sub("cv2"), c, c, 3, 1)?, add: shortcut })
    }
    /// x: [b, c, h, w] -> [b, c, h, w]
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.cv2.forward(&self.cv1.forward(x)?)?;
        if self.add {
            x.add(&y)
        } else {
            Ok(y)
        }
    }
}

/// `C2f(c1, c2, n, shortcut)`: cv1 1×1 → halves y0, y1; y1 through n Bottlenecks, each output
/// kept; concat (2 + n)·c → cv2 1×1.
struct C2f {
    c: usize,
    cv1: Conv,
    cv2: Conv,
    m: Vec<Bottleneck>,
}

impl C2f {
    fn load(w: &Weights, c1: usize, c2: usize, n: usize, shortcut: bool) -> Result<C2f> {
        let c = c2 / 2;
        Ok(C2f {
            c,
            cv1: Conv::load(&w.sub("cv1"), c1, 2 * c, 1, 1)?,
            cv2: Conv::load(&w.sub("cv2"), (2 + n) * c, c2, 1, 1)?,
            m: (0..n).map(|i| Bottleneck::load(&w.sub(&format!("m.{i}")), c, shortcut)).collect::<Result<_>>()?,
        })
    }
    /// x: [b, c1, h, w] -> [b, c2, h, w]
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.cv1.forward(x)?;
        let mut parts = vec![y.clone()];
        let mut last = y.slice(1, self.c, 2 * self.c, 1)?;
        for b in &self.m {
            last = b.forward(&last)?;
            parts.push(last.clone());
        }
        let refs: Vec<&Tensor> = parts.iter().collect();
        self.cv2.forward(&Tensor::concat(&refs, 1)?)
    }
}

/// `SPPF(c1, c2, k=5)`: cv1 1×1 to c1/2, three chained max-pools (k, stride 1, pad k/2, −∞
/// padding), concat of the four → cv2 1×1.
struct Sppf {
    cv1: Conv,
    cv2: Conv,
    k: usize,
}

impl Sppf {
    fn load(w: &Weights, c1: usize, c2: usize, k: usize) -> Result<Sppf> {
        let c_ = c1 / 2;
        Ok(Sppf { cv1: Conv::load(&w.sub("cv1"), c1, c_, 1, 1)?, cv2: Conv::load(&w.sub("cv2"), 4 * c_, c2, 1, 1)?, k })
    }
    /// x: [b, c1, h, w] -> [b, c2, h, w]
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let p = |t: &Tensor| t.max_pool2d((self.k, self.k), (1, 1), (self.k / 2, self.k / 2));
        let x = self.cv1.forward(x)?;
        let y1 = p(&x)?;
        let y2 = p(&y1)?;
        let y3 = p(&y2)?;
        self.cv2.forward(&Tensor::concat(&[&x, &y1, &y2, &y3], 1)?)
    }
}

/// One branch of the Detect head: Conv 3×3, Conv 3×3, plain 1×1 conv with bias.
struct Branch {
    c0: Conv,
    c1: Conv,
    c2: Conv2d,
}

impl Branch {
    fn load(w: &Weights, cin: usize, mid: usize, cout: usize) -> Result<Branch> {
        Ok(Branch {
            c0: Conv::load(&w.sub("0"), cin, mid, 3, 1)?,
            c1: Conv::load(&w.sub("1"), mid, mid, 3, 1)?,
            c2: Conv2d::load(&w.sub("2"), mid, cout, 1, Conv2dArgs::new(1, 0), true)?,
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.c2.forward(&self.c1.forward(&self.c0.forward(x)?)?)
    }
}

/// `Detect(nc, ch)`: per level cat(cv2 box [4·16], cv3 class [nc]), then DFL + decode.
struct Detect {
    nc: usize,
    cv2: Vec<Branch>,
    cv3: Vec<Branch>,
    /// `dfl.conv.weight` [1, 16, 1, 1] viewed as a [1, 16] linear weight.
    dfl: Weight,
}

impl Detect {
    fn load(w: &Weights, nc: usize, ch: &[usize]) -> Result<Detect> {
        let c2 = 16.max(ch[0] / 4).max(REG_MAX * 4);
        let c3 = ch[0].max(nc.min(100));
        let mut cv2 = vec![];
        let mut cv3 = vec![];
        for (i, &c) in ch.iter().enumerate() {
            cv2.push(Branch::load(&w.sub(&format!("cv2.{i}")), c, c2, 4 * REG_MAX)?);
            cv3.push(Branch::load(&w.sub(&format!("cv3.{i}")), c, c3, nc)?);
        }
        let dfl = w.weight("dfl.conv.weight", &[1, REG_MAX, 1, 1])?.reshape([1, REG_MAX])?;
        Ok(Detect { nc, cv2, cv3, dfl })
    }

    /// Three level features -> [b, 4 + nc, A] (xywh in pixels, class sigmoid).
    fn forward(&self, feats: &[Tensor], mut trace: Option<&mut Trace>) -> Result<Tensor> {
        let no = 4 * REG_MAX + self.nc;
        let b = feats[0].shape()[0];
        let mut flat = vec![];
        let mut sizes = vec![];
        for (i, x) in feats.iter().enumerate() {
            let [_, _, h, w] = x.dims("yolo.detect")?;
            let level = Tensor::concat(&[&self.cv2[i].forward(x)?, &self.cv3[i].forward(x)?], 1)?;
            if let Some(t) = trace.as_deref_mut() {
                t.push((format!("model.22.level{i}"), level.clone()));
            }
            flat.push(level.reshape([b, no, h * w])?);
            sizes.push((h, w));
        }
        let refs: Vec<&Tensor> = flat.iter().collect();
        let x_cat = Tensor::concat(&refs, 2)?; // [b, no, A]
        let a = x_cat.shape()[2];
        // DFL: softmax over the 16 bins of each side, then the 1×1 conv with weights 0..15.
        let bins = x_cat.slice(1, 0, 4 * REG_MAX, 1)?.reshape([b, 4, REG_MAX, a])?.permute(&[0, 1, 3, 2])?.softmax()?;
        let dist = bins.linear(&self.dfl, None, Act::None)?.reshape([b, 4, a])?;
        let (anchors, strides) = make_anchors(&sizes);
        let gpu = x_cat.gpu();
        let anchors = Tensor::upload(gpu, &anchors)?;
        let strides = Tensor::upload(gpu, &strides)?;
        if let Some(t) = trace {
            t.push(("model.22.dfl".into(), dist.clone()));
            t.push(("model.22.anchors".into(), anchors.clone()));
            t.push(("model.22.strides".into(), strides.clone()));
        }
        // dist2bbox(xywh): x1y1 = anchor − lt, x2y2 = anchor + rb; centre (x1y1 + x2y2)/2, size x2y2 − x1y1.
        let anc = anchors.reshape([1, 2, a])?;
        let x1y1 = anc.sub(&dist.slice(1, 0, 2, 1)?)?;
        let x2y2 = anc.add(&dist.slice(1, 2, 4, 1)?)?;
        let c_xy = x1y1.add(&x2y2)?.scale(0.5)?;
        let wh = x2y2.sub(&x1y1)?;
        let dbox = Tensor::concat(&[&c_xy, &wh], 1)?.mul(&strides.reshape([1, 1, a])?)?;
        let cls = x_cat.slice(1, 4 * REG_MAX, no, 1)?.sigmoid()?;
        Tensor::concat(&[&dbox, &cls], 1)
    }
}

/// `make_anchors(feats, strides, 0.5)` for level sizes (h, w): anchors [2, A] (x then y, cell
/// centres in grid units, row-major per level) and strides [1, A].
pub fn make_anchors(sizes: &[(usize, usize)]) -> (HostTensor, HostTensor) {
    let mut xs = vec![];
    let mut ys = vec![];
    let mut st = vec![];
    for (i, &(h, w)) in sizes.iter().enumerate() {
        for y in 0..h {
            for x in 0..w {
                xs.push(x as f32 + 0.5);
                ys.push(y as f32 + 0.5);
                st.push(STRIDES[i] as f32);
            }
        }
    }
    let a = xs.len();
    xs.extend(ys);
    (HostTensor { shape: vec![2, a], data: xs }, HostTensor { shape: vec![1, a], data: st })
}

/// Number of anchors for an input of h × w (multiples of 32).
pub fn num_anchors(h: usize, w: usize) -> usize {
    STRIDES.iter().map(|s| (h / s) * (w / s)).sum()
}

enum Layer {
    Conv(Conv),
    C2f(C2f),
    Sppf(Sppf),
    Upsample,
    Concat,
    Detect(Detect),
}

/// The YOLOv8 detection network.
pub struct Yolo {
    pub config: Config,
    layers: Vec<(&'static [i64], Layer)>,
    /// Whether layer i's output is used by a later non-adjacent layer.
    saved: Vec<bool>,
}

impl Yolo {
    /// Load from `w` scoped at the pack root (`model.{i}.…` names).
    pub fn load(w: &Weights, config: &Config) -> Result<Yolo> {
        config.validate()?;
        let c = config;
        let mut ch: Vec<usize> = vec![];
        let mut layers = vec![];
        let mut saved = vec![false; YOLOV8.len()];
        for (i, (from, spec)) in YOLOV8.iter().enumerate() {
            let lw = w.sub(&format!("model.{i}"));
            let prev = ch.last().copied().unwrap_or(3);
            let at = |f: i64| if f < 0 { prev } else { ch[f as usize] };
            for &f in from.iter() {
                if f >= 0 {
                    saved[f as usize] = true;
                }
            }
            let (layer, out) = match *spec {
                Spec::Conv { c2, k, s } => {
                    let c2 = c.channels(c2);
                    (Layer::Conv(Conv::load(&lw, prev, c2, k, s)?), c2)
                }
                Spec::C2f { c2, n, shortcut } => {
                    let c2 = c.channels(c2);
                    (Layer::C2f(C2f::load(&lw, prev, c2, c.depth(n), shortcut)?), c2)
                }
                Spec::Sppf { c2, k } => {
                    let c2 = c.channels(c2);
                    (Layer::Sppf(Sppf::load(&lw, prev, c2, k)?), c2)
                }
                Spec::Upsample => (Layer::Upsample, prev),
                Spec::Concat => (Layer::Concat, from.iter().map(|&f| at(f)).sum()),
                Spec::Detect => {
                    let chs: Vec<usize> = from.iter().map(|&f| at(f)).collect();
                    (Layer::Detect(Detect::load(&lw, c.nc, &chs)?), 4 + c.nc)
                }
            };
            layers.push((*from, layer));
            ch.push(out);
        }
        Ok(Yolo { config: config.clone(), layers, saved })
    }

    /// Load a converted pack (checks its kind and reads its config), strictly: every tensor
    /// of the pack must be used.
    pub fn from_pack(w: &Weights) -> Result<Yolo> {
        let cfg = Config::from_weights(w)?;
        let m = Yolo::load(w, &cfg)?;
        w.finish()?;
        Ok(m)
    }

    /// pixels: [b, 3, h, w] (RGB in [0, 1], h and w multiples of 32) -> [b, 4 + nc, A]
    pub fn forward(&self, x: &Tensor, mut trace: Option<&mut Trace>) -> Result<Tensor> {
        Self::check_input(x)?;
        let mut outs: Vec<Option<Tensor>> = Vec::with_capacity(self.layers.len());
        let mut cur = x.clone();
        for i in 0..self.layers.len() {
            cur = self.layer(i, &cur, &mut outs, trace.as_deref_mut())?;
        }
        Ok(cur)
    }

    /// Like [`Yolo::forward`], waiting for the GPU after every layer: seconds per layer
    /// (`model.{i}`) by the caller's clock, for benchmarks.
    pub async fn profile(&self, x: &Tensor, now: fn() -> f64) -> Result<Vec<(String, f64)>> {
        Self::check_input(x)?;
        let mut outs: Vec<Option<Tensor>> = Vec::with_capacity(self.layers.len());
        let mut cur = x.clone();
        let mut times = vec![];
        x.gpu().sync().await?;
        for i in 0..self.layers.len() {
            let t0 = now();
            cur = self.layer(i, &cur, &mut outs, None)?;
            x.gpu().sync().await?;
            times.push((format!("model.{i}"), now() - t0));
        }
        Ok(times)
    }

    fn check_input(x: &Tensor) -> Result<()> {
        let [_, c, h, w] = x.dims("yolo")?;
        if c != 3 || h == 0 || w == 0 || h % 32 != 0 || w % 32 != 0 {
            return Err(Error::shape("yolo", "[b, 3, h, w] with h and w positive multiples of 32", x.shape()));
        }
        Ok(())
    }

    /// Layer i on the previous output `cur`; `outs` holds the earlier outputs later layers use.
    fn layer(&self, i: usize, cur: &Tensor, outs: &mut Vec<Option<Tensor>>, mut trace: Option<&mut Trace>) -> Result<Tensor> {
        let (from, layer) = &self.layers[i];
        let input = |f: i64| -> Result<Tensor> {
            if f < 0 {
                Ok(cur.clone())
            } else {
                outs[f as usize].clone().ok_or_else(|| Error::arg("yolo", format!("layer {i} needs layer {f}'s output")))
            }
        };
        let y = match layer {
            Layer::Conv(m) => m.forward(cur)?,
            Layer::C2f(m) => m.forward(cur)?,
            Layer::Sppf(m) => m.forward(cur)?,
            Layer::Upsample => cur.upsample_nearest(&[2, 2])?,
            Layer::Concat => {
                let parts = from.iter().map(|&f| input(f)).collect::<Result<Vec<_>>>()?;
                let refs: Vec<&Tensor> = parts.iter().collect();
                Tensor::concat(&refs, 1)?
            }
            Layer::Detect(m) => {
                let feats = from.iter().map(|&f| input(f)).collect::<Result<Vec<_>>>()?;
                m.forward(&feats, trace.as_deref_mut())?
            }
        };
        if let Some(t) = trace {
            t.push((format!("model.{i}"), y.clone()));
        }
        outs.push(if self.saved[i] { Some(y.clone()) } else { None });
        Ok(y)
    }
}

/// Every convolution of the network for `cfg`: (module path, c_in, c_out, k, has BatchNorm).
/// The `Conv` modules have a `bn` (folded by the converter); the Detect head's last 1×1
/// convs are plain `nn.Conv2d` with a bias.
fn conv_list(cfg: &Config) -> Vec<(String, usize, usize, usize, bool)> {
    let mut out = vec![];
    let mut ch: Vec<usize> = vec![];
    for (i, (from, spec)) in YOLOV8.iter().enumerate() {
        let p = format!("model.{i}");
        let prev = ch.last().copied().unwrap_or(3);
        let at = |f: i64| if f < 0 { prev } else { ch[f as usize] };
        let c2 = match *spec {
            Spec::Conv { c2, k, .. } => {
                let c2 = cfg.channels(c2);
                out.push((p, prev, c2, k, true));
                c2
            }
            Spec::C2f { c2, n, .. } => {
                let (c2, n) = (cfg.channels(c2), cfg.depth(n));
                let c = c2 / 2;
                out.push((format!("{p}.cv1"), prev, 2 * c, 1, true));
                out.push((format!("{p}.cv2"), (2 + n) * c, c2, 1, true));
                for j in 0..n {
                    out.push((format!("{p}.m.{j}.cv1"), c, c, 3, true));
                    out.push((format!("{p}.m.{j}.cv2"), c, c, 3, true));
                }
                c2
            }
            Spec::Sppf { c2, .. } => {
                let c2 = cfg.channels(c2);
                out.push((format!("{p}.cv1"), prev, prev / 2, 1, true));
                out.push((format!("{p}.cv2"), prev / 2 * 4, c2, 1, true));
                c2
            }
            Spec::Upsample => prev,
            Spec::Concat => from.iter().map(|&f| at(f)).sum(),
            Spec::Detect => {
                let chs: Vec<usize> = from.iter().map(|&f| at(f)).collect();
                let c2 = 16.max(chs[0] / 4).max(REG_MAX * 4);
                let c3 = chs[0].max(cfg.nc.min(100));
                for (branch, mid, cout) in [("cv2", c2, 4 * REG_MAX), ("cv3", c3, cfg.nc)] {
                    for (l, &c) in chs.iter().enumerate() {
                        out.push((format!("{p}.{branch}.{l}.0"), c, mid, 3, true));
                        out.push((format!("{p}.{branch}.{l}.1"), mid, mid, 3, true));
                        out.push((format!("{p}.{branch}.{l}.2"), mid, cout, 1, false));
                    }
                }
                4 + cfg.nc
            }
        };
        ch.push(c2);
    }
    out
}

/// Converter rules: for every convolution the network has (from `cfg`), fold its `bn` into it
/// (w′ = w·γ/√(σ²+ε), b′ = β − μ·γ/√(σ²+ε), ε = `cfg.bn_eps`, computed in f64) giving
/// `….conv.{weight,bias}` as the fused model names them; copy the Detect head's plain 1×1
/// convs and `model.22.dfl.conv.weight` (kept as stored, normally 0…15); drop
/// `num_batches_tracked`. Every expected tensor must be in the source with its expected shape,
/// and any other tensor is an error (it would mean another architecture or scale).
pub fn plan(src: &dyn TensorSource, cfg: &Config) -> Result<Plan> {
    cfg.validate()?;
    let mut plan = Plan::new(KIND, serde_json::to_string(cfg).map_err(|e| Error::Format(e.to_string()))?);
    let mut used = std::collections::BTreeSet::new();
    let mut need = |name: String, shape: Vec<usize>| -> Result<String> {
        match src.shape(&name) {
            Some(s) if s == shape => {
                used.insert(name.clone());
                Ok(name)
            }
            Some(s) => Err(Error::TensorShape { file: src.describe(), name: name.to_string(), expected: shape, got: s }),
            None => Err(Error::Format(format!(
                "{}: missing tensor `{name}` (is the checkpoint's scale or class count different from the config's? {})",
                src.describe(),
                describe(cfg)
            ))),
        }
    };
    for (path, cin, cout, k, bn) in conv_list(cfg) {
        if bn {
            let conv = need(format!("{path}.conv.weight"), vec![cout, cin, k, k])?;
            for p in ["weight", "bias", "running_mean", "running_var"] {
                need(format!("{path}.bn.{p}"), vec![cout])?;
            }
            let bn = format!("{path}.bn");
            plan.push(conv.clone(), vec![cout, cin, k, k], Recipe::BnWeight { conv, bn: bn.clone(), eps: cfg.bn_eps });
            plan.push(format!("{path}.conv.bias"), vec![cout], Recipe::BnBias { bn, eps: cfg.bn_eps });
        } else {
            let w = need(format!("{path}.weight"), vec![cout, cin, k, k])?;
            let b = need(format!("{path}.bias"), vec![cout])?;
            plan.push(w.clone(), vec![cout, cin, k, k], Recipe::Copy(w));
            plan.push(b.clone(), vec![cout], Recipe::Copy(b));
        }
    }
    let dfl = need("model.22.dfl.conv.weight".into(), vec![1, REG_MAX, 1, 1])?;
    plan.push(dfl.clone(), vec![1, REG_MAX, 1, 1], Recipe::Copy(dfl));
    let extra: Vec<String> = src.names().into_iter().filter(|n| !used.contains(n) && !n.ends_with(".num_batches_tracked")).collect();
    if !extra.is_empty() {
        let shown: Vec<&String> = extra.iter().take(8).collect();
        return Err(Error::Format(format!(
            "{}: {} tensor(s) that a yolov8 detection model ({}) does not have: {shown:?}",
            src.describe(),
            extra.len(),
            describe(cfg)
        )));
    }
    Ok(plan)
}

fn describe(cfg: &Config) -> String {
    format!("depth {}, width {}, max_channels {}, nc {}", cfg.depth_multiple, cfg.width_multiple, cfg.max_channels, cfg.nc)
}

/// The standard scale (n, s, m, l, x) whose shapes match a state dict, for checkpoints that
/// carry no yaml (plain state dicts): nc from the class branch, then every expected tensor's
/// shape must match.
pub fn infer_config(src: &dyn TensorSource) -> Result<Config> {
    let nc = src
        .shape("model.22.cv3.0.2.weight")
        .and_then(|s| s.first().copied())
        .ok_or_else(|| Error::Format(format!("{}: no model.22.cv3.0.2.weight, not a YOLOv8 detection state dict", src.describe())))?;
    for cfg in [Config::n(nc), Config::s(nc), Config::m(nc), Config::l(nc), Config::x(nc)] {
        let fits = conv_list(&cfg).iter().all(|(p, cin, cout, k, bn)| {
            let name = if *bn { format!("{p}.conv.weight") } else { format!("{p}.weight") };
            src.shape(&name).as_deref() == Some(&[*cout, *cin, *k, *k][..])
        });
        if fits {
            return Ok(cfg);
        }
    }
    Err(Error::Format(format!("{}: the tensor shapes match none of yolov8 n/s/m/l/x with nc = {nc}; pass the model yaml as --config (JSON)", src.describe())))
}

/// Class names from a JSON list or a `{"0": "name", …}` / `{0: "name"}` dict.
pub fn names_from_json(v: &serde_json::Value) -> Result<Vec<String>> {
    match v {
        serde_json::Value::Array(a) => {
            a.iter().map(|x| x.as_str().map(String::from).ok_or_else(|| Error::Format("YOLO names: not all strings".into()))).collect()
        }
        serde_json::Value::Object(m) => {
            let mut pairs = vec![];
            for (k, x) in m {
                let i: usize = k.parse().map_err(|_| Error::Format(format!("YOLO names: key `{k}` is not a class index")))?;
                pairs.push((i, x.as_str().ok_or_else(|| Error::Format(format!("YOLO names: class {i} is not a string")))?.to_string()));
            }
            pairs.sort();
            if pairs.iter().enumerate().any(|(j, (i, _))| *i != j) {
                return Err(Error::Format("YOLO names: class indices are not 0..n".into()));
            }
            Ok(pairs.into_iter().map(|p| p.1).collect())
        }
        _ => Err(Error::Format("YOLO names: expected a list or a dict".into())),
    }
}

/// The weights and config of an ultralytics checkpoint, as ultralytics loads it
/// (`(ckpt.get("ema") or ckpt["model"])`): a pickled `DetectionModel` under `ema`/`model`
/// (its `yaml`, `names` and BatchNorm `eps` are read from the pickled object), or a plain state
/// dict with `model.{i}.…` keys (config inferred from the shapes). `config` (the `--config`
/// JSON) overrides: a model yaml as JSON (with `nc` and `scales`/`scale` or multiples), or this
/// crate's [`Config`]; either may carry `names`.
pub fn from_checkpoint<'a>(
    ckpt: &'a crate::convert::Checkpoint,
    config: Option<&serde_json::Value>,
) -> Result<(crate::convert::plan::CheckpointSource<'a>, Config)> {
    use crate::convert::plan::CheckpointSource;
    let module = |k: &str| ckpt.get(k).and_then(|v| v.as_object()).filter(|o| o.is_module()).map(|_| k.to_string());
    let root = module("ema").or_else(|| module("model")).unwrap_or_default();
    let src = CheckpointSource::new(ckpt, &root)?;
    let at = |k: &str| if root.is_empty() { None } else { ckpt.get(&format!("{root}.{k}")) };
    let mut cfg = match config {
        Some(v) if v.get("max_channels").is_some() => serde_json::from_value::<Config>(v.clone()).map_err(|e| Error::Format(format!("YOLO config: {e}")))?,
        Some(v) => Config::from_yaml(v)?,
        None => match at("yaml") {
            Some(y) => Config::from_yaml(&y.to_json()?)?,
            None => infer_config(&src)?,
        },
    };
    let names = config.and_then(|v| v.get("names")).cloned().map(Ok).or_else(|| at("names").map(|n| n.to_json()));
    if let Some(n) = names {
        cfg.names = names_from_json(&n?)?;
    }
    if !root.is_empty() {
        let mut eps: Option<f64> = None;
        for (path, _, _, _, bn) in conv_list(&cfg) {
            if let Some(e) = bn.then(|| at(&format!("{path}.bn.eps"))).flatten().and_then(|v| v.as_f64()) {
                if eps.is_some_and(|x| x != e) {
                    return Err(Error::Format(format!("{}: BatchNorm eps differs between layers ({} and {e})", ckpt.name(), eps.unwrap_or_default())));
                }
                eps = Some(e);
            }
        }
        if let Some(e) = eps {
            cfg.bn_eps = e;
        }
    }
    cfg.validate()?;
    Ok((src, cfg))
}

/// A pack with seeded random weights for `cfg` (benchmarks and smoke tests without a
/// checkpoint): every conv weight uniform in ±√(3/fan_in) (unit variance through each layer),
/// biases uniform in ±0.1, the DFL weight 0…15.
pub fn random_pack(cfg: &Config, seed: u64, f16: bool) -> Result<Vec<u8>> {
    use crate::weights::{pack_metadata, serialize_pack, PackTensor};
    cfg.validate()?;
    let mut rng = crate::rng::Rng::new(seed);
    let mut out = vec![];
    for (path, cin, cout, k, bn) in conv_list(cfg) {
        let (w, b) = if bn { (format!("{path}.conv.weight"), format!("{path}.conv.bias")) } else { (format!("{path}.weight"), format!("{path}.bias")) };
        let a = (3.0 / (cin * k * k) as f32).sqrt();
        out.push(PackTensor::encode(w, vec![cout, cin, k, k], &rng.uniforms(cout * cin * k * k, -a, a), f16));
        out.push(PackTensor::f32(b, vec![cout], &rng.uniforms(cout, -0.1, 0.1)));
    }
    let dfl: Vec<f32> = (0..REG_MAX).map(|i| i as f32).collect();
    out.push(PackTensor::encode("model.22.dfl.conv.weight", vec![1, REG_MAX, 1, 1], &dfl, f16));
    let json = serde_json::to_string(cfg).map_err(|e| Error::Format(e.to_string()))?;
    serialize_pack(&out, &pack_metadata(KIND, &json, if f16 { "f16" } else { "f32" }))
}
