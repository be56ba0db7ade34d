//! Sound-source detection as the official SSV2A runs it (`ssv2a/data/detect.py` `yolo_detect`,
//! ultralytics 8.2.90 `YOLO.predict(..., augment=True)`): image → letterbox → YOLOv8 on the GPU
//! (three test-time-augmentation passes) → NMS on the CPU → boxes in image pixels → crops.
//! Pure Rust on the host side (no files, no wgpu), so the browser runs the same code.
//!
//! ```text
//! image (RGB8) ─ letterbox (cv2 INTER_LINEAR, pad 114, to a multiple of 32) ─ /255 ─┐
//!   TTA: scales 1, 0.83 (flipped left-right), 0.67; bilinear + pad 0.447 ─ Yolo ×3 ─┤
//!   de-scale, un-flip, drop the P5 part of pass 1 and the P3 part of pass 3, concat ─┘
//! ─ NMS (conf, best class, class offset 7680, IoU, max_det) ─ scale_boxes ─ top_k ─ crops
//! ```
//!
//! **Settings and their defaults** ([`Settings::default`] = [`Settings::ssv2a`]): the values in
//! SSV2A's `ssv2a.json` `detector` section, which the official pipeline passes: conf 0.25,
//! iou 0 (any positive overlap with a higher-scoring box of the same class suppresses),
//! max_det 64, top_k 16, TTA on. `yolo_detect`'s own keyword defaults differ (conf 0.5,
//! iou 0.5, max_det 64, top_k None): [`Settings::detector_defaults`]. Every value is a field.
//!
//! **The `imgsz` quirk.** `yolo_detect` passes `imgsz = PIL.Image.open(images[0]).size`, i.e.
//! (W, H) of the *first* image, and ultralytics reads a pair as (h, w); `check_imgsz` then
//! rounds each up to a multiple of 32 and the letterbox fits every image into that (h, w)
//! (then trims the padding to a multiple of 32, `auto=True`). Square inputs (SSV2A's 512×512
//! video frames) are unaffected; a 640×427 photo is fitted into 640 (h) × 448 (w), i.e.
//! detected at 448×299 instead of 640×427. [`ImgSize::Ssv2a`] (the default) reproduces this;
//! [`ImgSize::FirstImage`] uses the first image's (H, W) as intended; [`ImgSize::Fixed`] gives
//! one size for all (ultralytics' own default is 640). Every image of a call is letterboxed
//! to the size derived from the first image, and crops are resized to the first image's
//! (W, H), as the official code does.
//!
//! **Crops** ([`CropMode`]): official = crop the image by the box (PIL rounding) and resize it
//! to the full image size (W, H) with PIL bicubic, stretching it; CLIP's centre crop then cuts
//! the sides of the stretched crop. [`CropMode::KeepAspect`] instead scales the crop by one
//! factor so that it fits inside (W, H) (documented improvement, not the official behaviour).
//! A box that rounds to zero width or height gives an all-black crop (PIL resizes an empty
//! crop to black).
//!
//! **More than 63 sources.** The pipeline's slot tensor has 64 rows, row 0 being the global
//! image, so at most 63 crops fit. Officially `emb2seq` keeps L ≤ 63 crops as they are,
//! crashes at exactly L = 64 (negative padding), and for L > 64 keeps a *random* sample of 63
//! in random order. With the official settings this cannot happen (top_k 16 ≤ 63). If top_k
//! (and max_det) are raised, [`slot_sources`] keeps the 63 highest-scoring sources instead:
//! deterministic, no crash at 64, and the best detections are the ones kept.
//!
//! **Images with no detections** give an empty list; the pipeline then has only slot 0
//! (the global image embedding).
//!
//! Known differences from the official front end: images are decoded by the `image` crate (or
//! the browser), not OpenCV, so JPEG pixels can differ by a few levels, and EXIF orientation is
//! not applied (`cv2.imread` applies it for detection while the official crops come from PIL,
//! which does not: rotated JPEGs are inconsistent upstream); crops are cut from the RGB image
//! (alpha dropped) and always resized with bicubic (PIL would use NEAREST for palette images and
//! resize RGBA premultiplied).
//!
//! **Large images** (a documented deviation; the official code has no limit and runs out of
//! memory). Activations must fit one storage binding: WebGPU's default limit is 128 MiB, which
//! the x model reaches at a detection size of about 1.3 megapixels (1152×1152: its first C2f
//! concatenates 400 channels at 1/4 resolution). With the official `imgsz` rule a photo is
//! detected at its own size, so a 12-megapixel photo would need a 1.2 GB activation. For
//! [`ImgSize::Ssv2a`] and [`ImgSize::FirstImage`] the detection size is therefore scaled down
//! (aspect kept, then rounded up to multiples of 32) until it has at most [`DETECT_MAX_PIXELS`]
//! (1024²) and its largest activation fits [`DETECT_BINDING_BYTES`] ([`Detector::detect_size`]):
//! the same size on every adapter, so results do not depend on the machine, and unchanged for
//! images up to about a megapixel (every input the official tests use). A [`ImgSize::Fixed`] size is taken as given and refused with
//! a clear error, before anything runs, when it does not fit the adapter
//! ([`crate::models::yolo::Config::max_activation_bytes`]). Crops are likewise stretched to at
//! most [`CROP_MAX_PIXELS`] ([`crop_size`]) instead of the full image size when the first image
//! is larger: CLIP shrinks them to 224 pixels right after, so this changes its input by at
//! most a few levels (`tests/models_yolo.rs` measures it), while 16 crops of a 100-megapixel
//! image at full size would hold 4.8 GB.

use crate::media::image::{round_half_even, RgbImage};
use crate::models::yolo::Yolo;
use crate::tensor::{HostTensor, Tensor};
use crate::weights::Weights;
use crate::{Error, Result};

/// Stride the letterbox and TTA pad to (the model's largest stride).
pub const STRIDE: usize = 32;
/// ultralytics' class offset for class-aware NMS (`max_wh`).
pub const MAX_WH: f32 = 7680.0;
/// ultralytics' cap on boxes entering NMS (`max_nms`).
pub const MAX_NMS: usize = 30000;
/// Letterbox padding value.
pub const PAD_VALUE: u8 = 114;
/// TTA padding value (`scale_img`, the ImageNet mean).
pub const TTA_PAD: f32 = 0.447;
/// TTA scales and whether each pass is flipped left-right (`_predict_augment`).
pub const TTA_PASSES: [(f64, bool); 3] = [(1.0, false), (0.83, true), (0.67, false)];
/// Sources that fit in the pipeline's 64 slots (slot 0 holds the global image).
pub const MAX_SOURCES: usize = 63;
/// The largest activation a detection size derived from the image may need: WebGPU's default
/// `maxStorageBufferBindingSize` (128 MiB), so the cap is the same on every adapter.
pub const DETECT_BINDING_BYTES: u64 = 128 << 20;
/// The most pixels a detection size derived from the image may have (1024², 2.6× ultralytics'
/// default 640²): bounds the detector's total memory, not only its largest activation.
pub const DETECT_MAX_PIXELS: usize = 1 << 20;
/// Crops are stretched to the first image's size, scaled down (aspect kept) to at most this
/// many pixels (4 MP: a square crop's side stays 9× CLIP's 224).
pub const CROP_MAX_PIXELS: usize = 1 << 22;

/// [`Detector::detect_size`] for a model of config `cfg`.
pub fn detect_size(cfg: &crate::models::yolo::Config, imgsz: ImgSize, w0: usize, h0: usize) -> Result<(usize, usize)> {
    let (h, w) = imgsz.target(w0, h0)?;
    if matches!(imgsz, ImgSize::Fixed { .. }) {
        return Ok((h, w));
    }
    let fits = |h: usize, w: usize| h * w <= DETECT_MAX_PIXELS && cfg.max_activation_bytes(h, w) <= DETECT_BINDING_BYTES;
    if fits(h, w) {
        return Ok((h, w));
    }
    // Activations grow with the area: start at the area ratio, then step down until it fits.
    let ratio = (DETECT_BINDING_BYTES as f64 / cfg.max_activation_bytes(h, w) as f64).min(DETECT_MAX_PIXELS as f64 / (h * w) as f64);
    let mut s = ratio.sqrt();
    loop {
        let (hs, ws) = (check_imgsz(((h as f64 * s) as usize).max(1)), check_imgsz(((w as f64 * s) as usize).max(1)));
        if fits(hs, ws) || (hs == STRIDE && ws == STRIDE) {
            return Ok((hs, ws));
        }
        s *= 0.97;
    }
}

/// The size crops are resized to for a first image of `w × h`: (w, h) as the official code
/// does, scaled by one factor to at most [`CROP_MAX_PIXELS`] (see the module docs).
pub fn crop_size(w: usize, h: usize) -> (usize, usize) {
    if w.saturating_mul(h) <= CROP_MAX_PIXELS {
        return (w, h);
    }
    let s = (CROP_MAX_PIXELS as f64 / (w as f64 * h as f64)).sqrt();
    (((w as f64 * s) as usize).max(1), ((h as f64 * s) as usize).max(1))
}

/// How the detection size is chosen (see the module docs on the `imgsz` quirk).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImgSize {
    /// Official: the first image's (W, H) read as (h, w).
    Ssv2a,
    /// The first image's (H, W).
    FirstImage,
    /// A fixed (h, w) for every image (rounded up to multiples of 32).
    Fixed { h: usize, w: usize },
}

impl std::str::FromStr for ImgSize {
    type Err = Error;
    /// `ssv2a` (official), `image`, `N` or `HxW` (pixels, positive).
    fn from_str(s: &str) -> Result<ImgSize> {
        Ok(match s {
            "ssv2a" => ImgSize::Ssv2a,
            "image" => ImgSize::FirstImage,
            other => {
                let parts: Vec<&str> = other.split(['x', 'X']).collect();
                let n = |p: &str| p.trim().parse::<usize>().ok().filter(|&v| v > 0);
                match parts[..] {
                    [a] => n(a).map(|v| ImgSize::Fixed { h: v, w: v }),
                    [a, b] => n(a).zip(n(b)).map(|(h, w)| ImgSize::Fixed { h, w }),
                    _ => None,
                }
                .ok_or_else(|| Error::arg("imgsz", format!("`{other}`: expected ssv2a, image, N or HxW")))?
            }
        })
    }
}

impl ImgSize {
    /// The letterbox target (h, w) for a first image of `w0 × h0`, after `check_imgsz`.
    pub fn target(&self, w0: usize, h0: usize) -> Result<(usize, usize)> {
        let (h, w) = match *self {
            ImgSize::Ssv2a => (w0, h0),
            ImgSize::FirstImage => (h0, w0),
            ImgSize::Fixed { h, w } => (h, w),
        };
        if h == 0 || w == 0 {
            return Err(Error::arg("detect", format!("image size {h}×{w} must be positive")));
        }
        Ok((check_imgsz(h), check_imgsz(w)))
    }
}

/// How crops are sized (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CropMode {
    /// Official: stretched to the first image's (W, H).
    Stretch,
    /// Scaled by one factor to fit inside the first image's (W, H).
    KeepAspect,
}

/// Every knob of the detector; [`Default`] is the official SSV2A configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// A box needs its best class score > conf (strictly).
    pub conf: f32,
    /// NMS IoU threshold: a box is dropped when its IoU with a kept box is > iou.
    pub iou: f32,
    /// At most this many boxes leave NMS.
    pub max_det: usize,
    /// Then the first top_k (score order) are kept; None keeps all.
    pub top_k: Option<usize>,
    /// Test-time augmentation (three passes).
    pub augment: bool,
    /// Class-agnostic NMS (off in SSV2A).
    pub agnostic: bool,
    pub imgsz: ImgSize,
    pub crop: CropMode,
}

impl Settings {
    /// `ssv2a.json`'s detector section, as the official pipeline runs it.
    pub fn ssv2a() -> Settings {
        Settings { conf: 0.25, iou: 0.0, max_det: 64, top_k: Some(16), augment: true, agnostic: false, imgsz: ImgSize::Ssv2a, crop: CropMode::Stretch }
    }
    /// `yolo_detect`'s keyword defaults (conf 0.5, iou 0.5, max_det 64, top_k None).
    pub fn detector_defaults() -> Settings {
        Settings { conf: 0.5, iou: 0.5, top_k: None, ..Settings::ssv2a() }
    }
    /// The NMS part.
    pub fn nms(&self) -> Nms {
        Nms { conf: self.conf, iou: self.iou, max_det: self.max_det, agnostic: self.agnostic }
    }
    /// Reject out-of-range values.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::arg("detect settings", m));
        if !(0.0..=1.0).contains(&self.conf) {
            return bad(format!("conf {} is not in [0, 1]", self.conf));
        }
        if !(0.0..=1.0).contains(&self.iou) {
            return bad(format!("iou {} is not in [0, 1]", self.iou));
        }
        if self.max_det == 0 {
            return bad("max_det must be at least 1".into());
        }
        if let ImgSize::Fixed { h, w } = self.imgsz {
            if h == 0 || w == 0 {
                return bad(format!("imgsz {h}×{w} must be positive"));
            }
        }
        Ok(())
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings::ssv2a()
    }
}

/// `check_imgsz` for one side: rounded up to a multiple of 32.
pub fn check_imgsz(x: usize) -> usize {
    x.div_ceil(STRIDE) * STRIDE
}

/// Geometry of a letterbox: the model input size and where the image sits in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Letterbox {
    /// Model input (h, w), multiples of 32.
    pub shape: (usize, usize),
    /// The resized image (w, h) before padding.
    pub resized: (usize, usize),
    /// Padding (left, top, right, bottom).
    pub pad: (usize, usize, usize, usize),
}

impl Letterbox {
    /// ultralytics `LetterBox(new_shape, auto=True, stride=32)` geometry for a `w × h` image.
    pub fn new(w: usize, h: usize, new_shape: (usize, usize)) -> Result<Letterbox> {
        let (nh, nw) = new_shape;
        if w == 0 || h == 0 || nh == 0 || nw == 0 {
            return Err(Error::arg("letterbox", format!("image {w}×{h} into {nw}×{nh}")));
        }
        let r = (nh as f64 / h as f64).min(nw as f64 / w as f64);
        let uw = round_half_even(w as f64 * r) as usize;
        let uh = round_half_even(h as f64 * r) as usize;
        if uw == 0 || uh == 0 {
            return Err(Error::arg("letterbox", format!("a {w}×{h} image shrinks to {uw}×{uh} in {nw}×{nh}; use a larger detection size")));
        }
        // auto: pad only up to the next multiple of the stride, centred.
        let dw = ((nw as i64 - uw as i64).rem_euclid(STRIDE as i64)) as f64 / 2.0;
        let dh = ((nh as i64 - uh as i64).rem_euclid(STRIDE as i64)) as f64 / 2.0;
        let r2 = |v: f64| round_half_even(v) as usize;
        let (top, bottom) = (r2(dh - 0.1), r2(dh + 0.1));
        let (left, right) = (r2(dw - 0.1), r2(dw + 0.1));
        Ok(Letterbox { shape: (uh + top + bottom, uw + left + right), resized: (uw, uh), pad: (left, top, right, bottom) })
    }

    /// Resize (cv2 INTER_LINEAR) and pad (114) `img`.
    pub fn apply(&self, img: &RgbImage) -> Result<RgbImage> {
        let (uw, uh) = self.resized;
        let resized = if (img.width, img.height) == (uw, uh) { img.clone() } else { img.resize_cv2_linear(uw, uh)? };
        let (left, top, _, _) = self.pad;
        let (h, w) = self.shape;
        let mut data = vec![PAD_VALUE; w * h * 3];
        for y in 0..uh {
            let d = ((y + top) * w + left) * 3;
            data[d..d + uw * 3].copy_from_slice(&resized.data[y * uw * 3..(y + 1) * uw * 3]);
        }
        RgbImage::new(w, h, data)
    }
}

/// RGB8 HWC → [1, 3, h, w] in [0, 1] (`/ 255` in f32, as ultralytics' preprocess).
pub fn to_pixels(img: &RgbImage) -> HostTensor {
    let (w, h) = (img.width, img.height);
    let mut data = vec![0f32; 3 * w * h];
    for i in 0..w * h {
        for c in 0..3 {
            data[c * w * h + i] = img.data[i * 3 + c] as f32 / 255.0;
        }
    }
    HostTensor { shape: vec![1, 3, h, w], data }
}

fn dims4(op: &str, x: &HostTensor) -> Result<[usize; 4]> {
    match x.shape[..] {
        [a, b, c, d] => Ok([a, b, c, d]),
        _ => Err(Error::shape(op, "[b, c, h, w]", &x.shape)),
    }
}

fn dims3(op: &str, x: &HostTensor) -> Result<[usize; 3]> {
    match x.shape[..] {
        [a, b, c] => Ok([a, b, c]),
        _ => Err(Error::shape(op, "[b, 4 + nc, a]", &x.shape)),
    }
}

/// `x.flip(3)`: mirror the last dim. x: [b, c, h, w] -> same.
pub fn flip_lr(x: &HostTensor) -> Result<HostTensor> {
    let [_, _, _, w] = dims4("flip_lr", x)?;
    let mut data = Vec::with_capacity(x.data.len());
    for row in x.data.chunks_exact(w) {
        data.extend(row.iter().rev());
    }
    Ok(HostTensor { shape: x.shape.clone(), data })
}

/// PyTorch's CPU `upsample_bilinear2d` source index and weights (align_corners False, output
/// size given, so scale = in/out in f32): per output index (i0, i1, λ0, λ1).
fn bilinear_taps(input: usize, output: usize) -> Vec<(usize, usize, f32, f32)> {
    if input == output {
        return (0..output).map(|i| (i, i, 1.0, 0.0)).collect();
    }
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|i| {
            let real = (scale * (i as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (real.floor() as usize).min(input - 1);
            let l1 = (real - i0 as f32).clamp(0.0, 1.0);
            let i1 = if i0 < input - 1 { i0 + 1 } else { i0 };
            (i0, i1, 1.0 - l1, l1)
        })
        .collect()
}

/// `scale_img(x, ratio, gs=32)`: bilinear resize (align_corners False) to
/// (int(h·ratio), int(w·ratio)), then pad right and bottom with 0.447 to
/// ceil(h·ratio/32)·32 × ceil(w·ratio/32)·32. ratio 1 returns x unchanged.
/// x: [b, c, h, w] -> [b, c, h', w']
pub fn scale_img(x: &HostTensor, ratio: f64) -> Result<HostTensor> {
    let [b, c, h, w] = dims4("scale_img", x)?;
    if ratio == 1.0 {
        return Ok(x.clone());
    }
    if !(ratio > 0.0 && ratio < 1.0) {
        return Err(Error::arg("scale_img", format!("ratio {ratio} must be in (0, 1]")));
    }
    let (sh, sw) = ((h as f64 * ratio) as usize, (w as f64 * ratio) as usize);
    if sh == 0 || sw == 0 {
        return Err(Error::arg("scale_img", format!("{h}×{w} scaled by {ratio} is empty")));
    }
    let ph = (h as f64 * ratio / STRIDE as f64).ceil() as usize * STRIDE;
    let pw = (w as f64 * ratio / STRIDE as f64).ceil() as usize * STRIDE;
    let ty = bilinear_taps(h, sh);
    let tx = bilinear_taps(w, sw);
    let mut data = vec![TTA_PAD; b * c * ph * pw];
    for p in 0..b * c {
        let src = &x.data[p * h * w..(p + 1) * h * w];
        let dst = &mut data[p * ph * pw..(p + 1) * ph * pw];
        for (oy, &(y0, y1, wy0, wy1)) in ty.iter().enumerate() {
            for (ox, &(x0, x1, wx0, wx1)) in tx.iter().enumerate() {
                let r0 = src[y0 * w + x0] * wx0 + src[y0 * w + x1] * wx1;
                let r1 = src[y1 * w + x0] * wx0 + src[y1 * w + x1] * wx1;
                dst[oy * pw + ox] = r0 * wy0 + r1 * wy1;
            }
        }
    }
    Ok(HostTensor { shape: vec![b, c, ph, pw], data })
}

/// `_descale_pred`: boxes ÷ scale, then x → img_w − x if the pass was flipped.
/// p: [b, 4 + nc, a] (in place).
pub fn descale_pred(p: &mut HostTensor, flipped: bool, scale: f64, img_w: usize) -> Result<()> {
    let [b, no, a] = dims3("descale_pred", p)?;
    if no < 4 {
        return Err(Error::shape("descale_pred", "[b, 4 + nc, a]", &p.shape));
    }
    let s = scale as f32;
    for bi in 0..b {
        for r in 0..4 {
            let row = &mut p.data[(bi * no + r) * a..(bi * no + r + 1) * a];
            for v in row.iter_mut() {
                *v /= s;
                if r == 0 && flipped {
                    *v = img_w as f32 - *v;
                }
            }
        }
    }
    Ok(())
}

/// `_clip_augmented` + concatenation: drop the last A/21 anchors (the P5 part) of the first
/// pass and the first 16·A/21 (the P3 part) of the last, concatenate along anchors.
/// Each y: [b, 4 + nc, a_i] -> [b, 4 + nc, Σ kept]
pub fn clip_augmented(ys: &[HostTensor]) -> Result<HostTensor> {
    if ys.len() < 2 {
        return Err(Error::arg("clip_augmented", "needs at least two passes"));
    }
    let [b, no, _] = dims3("clip_augmented", &ys[0])?;
    let g = 21; // Σ 4^i over the 3 levels
    let mut ranges = vec![];
    for (k, y) in ys.iter().enumerate() {
        let [bb, nn, a] = dims3("clip_augmented", y)?;
        if bb != b || nn != no || a < g {
            return Err(Error::shape("clip_augmented", format!("[{b}, {no}, ≥{g}]"), &y.shape));
        }
        let r = if k == 0 {
            0..a - a / g
        } else if k == ys.len() - 1 {
            (a / g) * 16..a
        } else {
            0..a
        };
        ranges.push(r);
    }
    let total: usize = ranges.iter().map(|r| r.len()).sum();
    let mut data = Vec::with_capacity(b * no * total);
    for bi in 0..b {
        for row in 0..no {
            for (y, r) in ys.iter().zip(&ranges) {
                let a = y.shape[2];
                let base = (bi * no + row) * a;
                data.extend_from_slice(&y.data[base + r.start..base + r.end]);
            }
        }
    }
    Ok(HostTensor { shape: vec![b, no, total], data })
}

/// NMS thresholds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Nms {
    pub conf: f32,
    pub iou: f32,
    pub max_det: usize,
    pub agnostic: bool,
}

/// One box after NMS.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Det {
    /// x1, y1, x2, y2 (in the coordinates of the raw output, or image pixels after
    /// [`scale_boxes`]).
    pub xyxy: [f32; 4],
    pub conf: f32,
    pub class: usize,
}

/// `ops.non_max_suppression` (8.2.90; multi_label off, no class filter, max_nms 30000,
/// max_wh 7680) with torchvision's CPU `nms` kernel, in the same f32 arithmetic: candidates
/// need their best class score > conf; boxes are offset by class·7680 (0 if agnostic); boxes
/// are visited in stable descending score order and drop every later box whose IoU with them
/// is > iou; at most max_det are kept, in that order.
/// raw: [b, 4 + nc, a] -> per image a list of boxes.
pub fn non_max_suppression(raw: &HostTensor, nms: &Nms) -> Result<Vec<Vec<Det>>> {
    let [b, no, a] = dims3("non_max_suppression", raw)?;
    if no < 5 {
        return Err(Error::shape("non_max_suppression", "[b, 4 + nc, a] with nc ≥ 1", &raw.shape));
    }
    let nc = no - 4;
    let mut out = Vec::with_capacity(b);
    for bi in 0..b {
        let at = |row: usize, j: usize| raw.data[(bi * no + row) * a + j];
        // Candidates: best class (first index of the max), score > conf.
        let mut cand: Vec<Det> = vec![];
        for j in 0..a {
            let (mut best, mut cls) = (at(4, j), 0);
            for c in 1..nc {
                let v = at(4 + c, j);
                if v > best || (v.is_nan() && !best.is_nan()) {
                    best = v;
                    cls = c;
                }
            }
            // Strictly above the threshold; a NaN score never passes.
            if best.partial_cmp(&nms.conf) != Some(std::cmp::Ordering::Greater) {
                continue;
            }
            let (cx, cy) = (at(0, j), at(1, j));
            let (hw, hh) = (at(2, j) / 2.0, at(3, j) / 2.0);
            cand.push(Det { xyxy: [cx - hw, cy - hh, cx + hw, cy + hh], conf: best, class: cls });
        }
        if cand.len() > MAX_NMS {
            cand.sort_by(|p, q| q.conf.total_cmp(&p.conf));
            cand.truncate(MAX_NMS);
        }
        // torchvision nms on class-offset boxes (f32 throughout, as the CPU kernel).
        let off: Vec<[f32; 4]> = cand
            .iter()
            .map(|d| {
                let c = if nms.agnostic { 0.0 } else { d.class as f32 * MAX_WH };
                [d.xyxy[0] + c, d.xyxy[1] + c, d.xyxy[2] + c, d.xyxy[3] + c]
            })
            .collect();
        let area: Vec<f32> = off.iter().map(|o| (o[2] - o[0]) * (o[3] - o[1])).collect();
        let mut order: Vec<usize> = (0..cand.len()).collect();
        order.sort_by(|&p, &q| cand[q].conf.total_cmp(&cand[p].conf)); // stable, descending
        let mut suppressed = vec![false; cand.len()];
        let mut keep = vec![];
        for (oi, &i) in order.iter().enumerate() {
            if suppressed[i] {
                continue;
            }
            keep.push(i);
            if keep.len() >= nms.max_det {
                break; // later boxes can only be suppressed or cut by max_det
            }
            let bi_ = off[i];
            for &j in &order[oi + 1..] {
                if suppressed[j] {
                    continue;
                }
                let bj = off[j];
                let w = (bi_[2].min(bj[2]) - bi_[0].max(bj[0])).max(0.0);
                let h = (bi_[3].min(bj[3]) - bi_[1].max(bj[1])).max(0.0);
                let inter = w * h;
                let ovr = inter / (area[i] + area[j] - inter);
                if ovr as f64 > nms.iou as f64 {
                    suppressed[j] = true;
                }
            }
        }
        out.push(keep.into_iter().map(|i| cand[i]).collect());
    }
    Ok(out)
}

/// `scale_boxes(img1_shape, boxes, img0_shape)` + `clip_boxes`: from letterboxed-input pixels
/// (h1, w1) back to the original image (h0, w0): subtract the centred padding, divide by the
/// gain, clip to the image.
pub fn scale_boxes(dets: &mut [Det], img1: (usize, usize), img0: (usize, usize)) {
    let (h1, w1) = (img1.0 as f64, img1.1 as f64);
    let (h0, w0) = (img0.0 as f64, img0.1 as f64);
    let gain = (h1 / h0).min(w1 / w0);
    let px = round_half_even((w1 - w0 * gain) / 2.0 - 0.1) as f32;
    let py = round_half_even((h1 - h0 * gain) / 2.0 - 0.1) as f32;
    let g = gain as f32;
    for d in dets {
        let b = &mut d.xyxy;
        b[0] = ((b[0] - px) / g).clamp(0.0, w0 as f32);
        b[1] = ((b[1] - py) / g).clamp(0.0, h0 as f32);
        b[2] = ((b[2] - px) / g).clamp(0.0, w0 as f32);
        b[3] = ((b[3] - py) / g).clamp(0.0, h0 as f32);
    }
}

/// A detected sound source.
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    /// x1, y1, x2, y2 in original image pixels.
    pub xyxy: [f32; 4],
    pub class: usize,
    /// Class name (the number if the pack has no names).
    pub name: String,
    pub score: f32,
}

/// A detection with its crop, as the pipeline feeds it to CLIP.
#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    pub detection: Detection,
    pub crop: RgbImage,
    /// Box area / image area (the official "locality"; recorded, unused at inference).
    pub locality: f64,
}

/// The crop of one box: `img.crop(box)` with PIL rounding, resized (PIL bicubic) to `size`
/// (w, h) — stretched, or scaled by one factor to fit inside `size` with
/// [`CropMode::KeepAspect`]. An empty rounded box gives a black image of `size`.
pub fn crop_source(img: &RgbImage, xyxy: [f32; 4], size: (usize, usize), mode: CropMode) -> Result<RgbImage> {
    let (w, h) = size;
    if w == 0 || h == 0 {
        return Err(Error::arg("crop", format!("crop size {w}×{h}")));
    }
    let [x0, y0, x1, y1] = xyxy.map(|v| v as f64);
    let (rx0, ry0, rx1, ry1) = (round_half_even(x0), round_half_even(y0), round_half_even(x1), round_half_even(y1));
    if !(rx1 > rx0 && ry1 > ry0) {
        return RgbImage::new(w, h, vec![0; w * h * 3]);
    }
    let c = img.crop(x0, y0, x1, y1)?;
    match mode {
        CropMode::Stretch => c.resize_bicubic(w, h),
        CropMode::KeepAspect => {
            let s = (w as f64 / c.width as f64).min(h as f64 / c.height as f64);
            let (cw, ch) = ((round_half_even(c.width as f64 * s) as usize).clamp(1, w), (round_half_even(c.height as f64 * s) as usize).clamp(1, h));
            c.resize_bicubic(cw, ch)
        }
    }
}

/// The sources that go into the pipeline's slots: at most [`MAX_SOURCES`] (63), the
/// highest-scoring first (see the module docs for how this differs from the official random
/// sample when there are more than 63).
pub fn slot_sources(sources: &[Source]) -> &[Source] {
    &sources[..sources.len().min(MAX_SOURCES)]
}

/// Draw each box as a 2-pixel rectangle in a colour per class (for `ssv2a detect --annotate`).
pub fn draw_boxes(img: &mut RgbImage, dets: &[Detection]) {
    let (w, h) = (img.width as i64, img.height as i64);
    for d in dets {
        let hue = (d.class as u64).wrapping_mul(2654435761) % 360;
        let color = hsv(hue as f64);
        let [x0, y0, x1, y1] = d.xyxy.map(|v| v.round() as i64);
        let mut put = |x: i64, y: i64| {
            if x >= 0 && y >= 0 && x < w && y < h {
                let i = ((y * w + x) * 3) as usize;
                img.data[i..i + 3].copy_from_slice(&color);
            }
        };
        for t in 0..2 {
            for x in x0..=x1 {
                put(x, y0 + t);
                put(x, y1 - t);
            }
            for y in y0..=y1 {
                put(x0 + t, y);
                put(x1 - t, y);
            }
        }
    }
}

fn hsv(h: f64) -> [u8; 3] {
    let x = 1.0 - ((h / 60.0) % 2.0 - 1.0).abs();
    let (r, g, b) = match (h / 60.0) as u32 {
        0 => (1.0, x, 0.0),
        1 => (x, 1.0, 0.0),
        2 => (0.0, 1.0, x),
        3 => (0.0, x, 1.0),
        4 => (x, 0.0, 1.0),
        _ => (1.0, 0.0, x),
    };
    [(r * 255.0) as u8, (g * 255.0) as u8, (b * 255.0) as u8]
}

/// One image's detections with the geometry they were found at.
#[derive(Clone, Debug, PartialEq)]
pub struct Detections {
    /// Score order, at most min(max_det, top_k).
    pub detections: Vec<Detection>,
    pub letterbox: Letterbox,
}

/// The detector: a YOLOv8 pack and the official pre- and post-processing.
pub struct Detector {
    pub model: Yolo,
}

impl Detector {
    /// Load a `yolo` pack (strict: every tensor must be used).
    pub fn load(w: &Weights) -> Result<Detector> {
        Ok(Detector { model: Yolo::from_pack(w)? })
    }

    /// Class names of the pack.
    pub fn names(&self) -> &[String] {
        &self.model.config.names
    }

    /// The network on one input. pixels: [b, 3, h, w] -> [b, 4 + nc, A]
    pub async fn raw(&self, gpu: &crate::Gpu, pixels: &HostTensor) -> Result<HostTensor> {
        let [b, _, h, w] = dims4("detect", pixels)?;
        let need = self.model.config.max_activation_bytes(h, w) * b as u64;
        if need > gpu.max_binding() {
            return Err(Error::arg(
                "detect",
                format!(
                    "a {w}×{h} detection input needs a {} MB activation, over this adapter's {} MB storage binding limit; detect at a fixed size instead (ImgSize::Fixed, `--imgsz 640`)",
                    need / 1_000_000,
                    gpu.max_binding() / 1_000_000
                ),
            ));
        }
        let x = Tensor::upload(gpu, pixels)?;
        let y = self.model.forward(&x, None)?;
        y.to_host().await
    }

    /// `DetectionModel._predict_augment`: three passes (scale 1; 0.83 flipped; 0.67), each
    /// de-scaled to the input's pixels, tails clipped, concatenated.
    /// pixels: [b, 3, h, w] -> [b, 4 + nc, A′]
    pub async fn raw_augmented(&self, gpu: &crate::Gpu, pixels: &HostTensor) -> Result<HostTensor> {
        let [_, _, _, w] = dims4("detect", pixels)?;
        let mut ys = vec![];
        for (scale, flipped) in TTA_PASSES {
            let x = if flipped { flip_lr(pixels)? } else { pixels.clone() };
            let xi = scale_img(&x, scale)?;
            let mut y = self.raw(gpu, &xi).await?;
            descale_pred(&mut y, flipped, scale, w)?;
            ys.push(y);
        }
        clip_augmented(&ys)
    }

    /// Detect in one image letterboxed into `imgsz` (h, w) (see [`ImgSize::target`]).
    pub async fn detect(&self, gpu: &crate::Gpu, img: &RgbImage, imgsz: (usize, usize), s: &Settings) -> Result<Detections> {
        s.check()?;
        let lb = Letterbox::new(img.width, img.height, imgsz)?;
        let pixels = to_pixels(&lb.apply(img)?);
        let raw = if s.augment { self.raw_augmented(gpu, &pixels).await? } else { self.raw(gpu, &pixels).await? };
        if raw.shape.get(1) != Some(&(4 + self.model.config.nc)) {
            return Err(Error::shape("detect", format!("[1, {}, a]", 4 + self.model.config.nc), &raw.shape));
        }
        let mut dets = non_max_suppression(&raw, &s.nms())?.pop().unwrap_or_default();
        scale_boxes(&mut dets, lb.shape, (img.height, img.width));
        if let Some(k) = s.top_k {
            dets.truncate(k);
        }
        let detections = dets.into_iter().map(|d| Detection { xyxy: d.xyxy, class: d.class, name: self.model.config.name(d.class), score: d.conf }).collect();
        Ok(Detections { detections, letterbox: lb })
    }

    /// The letterbox target (h, w) for a first image of `w0 × h0`: [`ImgSize::target`], scaled
    /// down for the image-derived rules until the largest activation fits
    /// [`DETECT_BINDING_BYTES`] (see the module docs on large images).
    pub fn detect_size(&self, imgsz: ImgSize, w0: usize, h0: usize) -> Result<(usize, usize)> {
        detect_size(&self.model.config, imgsz, w0, h0)
    }

    /// The official `yolo_detect` on a list of images: the detection size and the crop size
    /// come from the first image (both capped for large images, see the module docs); each
    /// image gets its detections (score order, at most top_k) with their crops. An image
    /// without detections gets an empty list.
    pub async fn sources(&self, gpu: &crate::Gpu, images: &[&RgbImage], s: &Settings) -> Result<Vec<Vec<Source>>> {
        let first = images.first().ok_or_else(|| Error::arg("detect", "no images"))?;
        let imgsz = self.detect_size(s.imgsz, first.width, first.height)?;
        let size = crop_size(first.width, first.height);
        let area = (first.width * first.height) as f64;
        let mut out = Vec::with_capacity(images.len());
        for &img in images {
            let found = self.detect(gpu, img, imgsz, s).await?;
            let mut srcs = vec![];
            for d in found.detections {
                let crop = crop_source(img, d.xyxy, size, s.crop)?;
                let [x0, y0, x1, y1] = d.xyxy.map(|v| v as f64);
                srcs.push(Source { locality: (x1 - x0).abs() * (y1 - y0).abs() / area, detection: d, crop });
            }
            out.push(srcs);
        }
        Ok(out)
    }
}
