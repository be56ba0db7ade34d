//! Images on the CPU: an RGB8 image type, resampling that reproduces Pillow bit for bit
//! (bicubic with antialiasing, as torchvision's `Resize` calls it on PIL images) and OpenCV's
//! `INTER_LINEAR` (YOLO letterboxing), crops, and OpenAI CLIP's preprocessing.
//!
//! Pillow version: this is Pillow's classic two-pass order (horizontal pass, then vertical),
//! as in Pillow <= 12 — the versions the official SSV2A ran with. The Pillow 13.0.0 wheel
//! sometimes runs the vertical pass first (measured: always when widening while shrinking in
//! height, and in about a third of the cases that shrink both ways), which changes pixels by a
//! few levels on photos. `tests/reference/make_resize_fixture.py` pins Pillow 11.3.
//!
//! Pure Rust and target-independent; [`crate::media::imageio`] decodes files into [`Picture`]s (natively
//! and in wasm).

use crate::{Error, Result};

/// An 8-bit RGB image, rows top to bottom, pixels interleaved R, G, B.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

/// An 8-bit RGBA image (straight alpha, as decoders produce it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbaImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

/// Largest image accepted anywhere (pixels): 100 megapixels (a 10000×10000 photo).
pub const MAX_PIXELS: usize = 100_000_000;

fn check_size(op: &str, w: usize, h: usize, len: usize, ch: usize) -> Result<()> {
    if w == 0 || h == 0 {
        return Err(Error::arg(op, format!("empty image ({w}×{h})")));
    }
    if w.saturating_mul(h) > MAX_PIXELS {
        return Err(Error::arg(op, format!("image of {w}×{h} pixels is larger than the {MAX_PIXELS}-pixel limit")));
    }
    if len != w * h * ch {
        return Err(Error::arg(op, format!("{len} bytes for a {w}×{h} image with {ch} channels")));
    }
    Ok(())
}

impl RgbImage {
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Result<RgbImage> {
        check_size("RgbImage::new", width, height, data.len(), 3)?;
        Ok(RgbImage { width, height, data })
    }

    /// Pixels from RGBA by dropping alpha (PIL `convert("RGB")` on RGBA).
    pub fn from_rgba_drop_alpha(img: &RgbaImage) -> RgbImage {
        let data = img.data.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
        RgbImage { width: img.width, height: img.height, data }
    }

    /// Crop to the box (x0, y0, x1, y1) in pixel coordinates as PIL's `Image.crop` does:
    /// coordinates are rounded (Python `round`, half to even), the box may extend past the
    /// image (outside pixels are black, as PIL fills them), and it must be non-empty.
    pub fn crop(&self, x0: f64, y0: f64, x1: f64, y1: f64) -> Result<RgbImage> {
        let r = |v: f64| round_half_even(v) as i64;
        let (x0, y0, x1, y1) = (r(x0), r(y0), r(x1), r(y1));
        if x1 <= x0 || y1 <= y0 {
            return Err(Error::arg("crop", format!("empty box ({x0}, {y0}, {x1}, {y1})")));
        }
        let (w, h) = ((x1 - x0) as usize, (y1 - y0) as usize);
        check_size("crop", w, h, w * h * 3, 3)?;
        let mut data = vec![0u8; w * h * 3];
        for y in 0..h {
            let sy = y0 + y as i64;
            if sy < 0 || sy >= self.height as i64 {
                continue;
            }
            for x in 0..w {
                let sx = x0 + x as i64;
                if sx < 0 || sx >= self.width as i64 {
                    continue;
                }
                let s = (sy as usize * self.width + sx as usize) * 3;
                data[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&self.data[s..s + 3]);
            }
        }
        Ok(RgbImage { width: w, height: h, data })
    }

    /// Pillow's `Image.resize(size, BICUBIC)` (antialiased when shrinking).
    pub fn resize_bicubic(&self, width: usize, height: usize) -> Result<RgbImage> {
        check_size("resize", width, height, width * height * 3, 3)?;
        let data = pil_resample(&self.data, 3, self.width, self.height, width, height, &BICUBIC);
        Ok(RgbImage { width, height, data })
    }

    /// Pillow's `Image.resize(size, BILINEAR)` (antialiased when shrinking).
    pub fn resize_bilinear_pil(&self, width: usize, height: usize) -> Result<RgbImage> {
        check_size("resize", width, height, width * height * 3, 3)?;
        let data = pil_resample(&self.data, 3, self.width, self.height, width, height, &BILINEAR);
        Ok(RgbImage { width, height, data })
    }

    /// OpenCV's `cv2.resize(..., interpolation=INTER_LINEAR)` (no antialiasing), as
    /// ultralytics' letterbox calls it.
    pub fn resize_cv2_linear(&self, width: usize, height: usize) -> Result<RgbImage> {
        check_size("resize", width, height, width * height * 3, 3)?;
        Ok(RgbImage { width, height, data: cv2_resize_linear(&self.data, 3, self.width, self.height, width, height) })
    }

    /// Pillow's `Image.resize(size, NEAREST)`, which PIL also uses for palette ("P") and
    /// 1-bit ("1") images whatever filter is asked: output pixel x takes source column
    /// `int(x0)` with `x0` stepping from `0.5·w/ow` by `w/ow` in f64 (accumulated, as
    /// `ImagingScaleAffine` does), likewise for rows; the same size is a plain copy.
    pub fn resize_nearest_pil(&self, width: usize, height: usize) -> Result<RgbImage> {
        check_size("resize", width, height, width * height * 3, 3)?;
        if width == self.width && height == self.height {
            return Ok(self.clone());
        }
        let taps = |in_size: usize, out_size: usize| -> Vec<Option<usize>> {
            let a = in_size as f64 / out_size as f64;
            let mut o = a * 0.5;
            (0..out_size)
                .map(|_| {
                    let i = if o < 0.0 { -1 } else { o as i64 };
                    o += a;
                    (i >= 0 && (i as usize) < in_size).then_some(i as usize)
                })
                .collect()
        };
        let (xs, ys) = (taps(self.width, width), taps(self.height, height));
        let mut data = vec![0u8; width * height * 3];
        for (y, sy) in ys.iter().enumerate() {
            let Some(sy) = sy else { continue };
            for (x, sx) in xs.iter().enumerate() {
                if let Some(sx) = sx {
                    let s = (sy * self.width + sx) * 3;
                    data[(y * width + x) * 3..(y * width + x) * 3 + 3].copy_from_slice(&self.data[s..s + 3]);
                }
            }
        }
        Ok(RgbImage { width, height, data })
    }

    /// Flip left-right.
    pub fn flip_lr(&self) -> RgbImage {
        let mut data = Vec::with_capacity(self.data.len());
        for y in 0..self.height {
            for x in (0..self.width).rev() {
                let s = (y * self.width + x) * 3;
                data.extend_from_slice(&self.data[s..s + 3]);
            }
        }
        RgbImage { width: self.width, height: self.height, data }
    }
}

impl RgbaImage {
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Result<RgbaImage> {
        check_size("RgbaImage::new", width, height, data.len(), 4)?;
        Ok(RgbaImage { width, height, data })
    }

    /// Pillow's resize of an RGBA image: premultiply (mode "RGBa"), resample, un-premultiply.
    pub fn resize_bicubic(&self, width: usize, height: usize) -> Result<RgbaImage> {
        check_size("resize", width, height, width * height * 4, 4)?;
        let pre: Vec<u8> = self
            .data
            .chunks_exact(4)
            .flat_map(|p| {
                let a = p[3] as u32;
                [muldiv255(p[0] as u32, a), muldiv255(p[1] as u32, a), muldiv255(p[2] as u32, a), p[3]]
            })
            .collect();
        let out = pil_resample(&pre, 4, self.width, self.height, width, height, &BICUBIC);
        let data = out
            .chunks_exact(4)
            .flat_map(|p| {
                let a = p[3] as u32;
                if a == 255 || a == 0 {
                    [p[0], p[1], p[2], p[3]]
                } else {
                    let u = |c: u8| ((255 * c as u32) / a).min(255) as u8;
                    [u(p[0]), u(p[1]), u(p[2]), p[3]]
                }
            })
            .collect();
        Ok(RgbaImage { width, height, data })
    }
}

/// An 8-bit CMYK image as PIL holds mode "CMYK" (0 = no ink; a JPEG's Adobe-inverted values
/// are already undone, see [`crate::media::jpeg::Layout::Cmyk`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CmykImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl CmykImage {
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Result<CmykImage> {
        check_size("CmykImage::new", width, height, data.len(), 4)?;
        Ok(CmykImage { width, height, data })
    }

    /// Pillow's resize of a CMYK image: the four planes resampled independently (no
    /// premultiplication: K is not an alpha).
    pub fn resize_bicubic(&self, width: usize, height: usize) -> Result<CmykImage> {
        check_size("resize", width, height, width * height * 4, 4)?;
        let data = pil_resample(&self.data, 4, self.width, self.height, width, height, &BICUBIC);
        Ok(CmykImage { width, height, data })
    }

    /// PIL `convert("RGB")` (`cmyk2rgb`): each of R, G, B = (255 − K) − C·(255 − K)/255 with
    /// PIL's `MULDIV255` rounding.
    pub fn to_rgb(&self) -> RgbImage {
        let data = self
            .data
            .chunks_exact(4)
            .flat_map(|p| {
                let nk = 255 - p[3] as u32;
                [0, 1, 2].map(|c| (nk - muldiv255(p[c] as u32, nk) as u32) as u8)
            })
            .collect();
        RgbImage { width: self.width, height: self.height, data }
    }
}

/// An image as decoded, keeping what CLIP preprocessing needs to match PIL: PIL resizes in the
/// file's own mode and converts to RGB after.
#[derive(Clone, Debug)]
pub enum Picture {
    Rgb(RgbImage),
    /// Resized premultiplied for CLIP, as PIL resizes RGBA.
    Rgba(RgbaImage),
    /// A palette or 1-bit image (PIL modes "P", "1") expanded to RGB: PIL resizes these with
    /// NEAREST whatever filter is asked.
    Palette(RgbImage),
    /// A CMYK JPEG: PIL resizes the four planes, then converts (`cmyk2rgb`).
    Cmyk(CmykImage),
}

impl Picture {
    pub fn width(&self) -> usize {
        match self {
            Picture::Rgb(i) | Picture::Palette(i) => i.width,
            Picture::Rgba(i) => i.width,
            Picture::Cmyk(i) => i.width,
        }
    }
    pub fn height(&self) -> usize {
        match self {
            Picture::Rgb(i) | Picture::Palette(i) => i.height,
            Picture::Rgba(i) => i.height,
            Picture::Cmyk(i) => i.height,
        }
    }
    /// RGB (PIL `convert("RGB")`: alpha dropped, CMYK converted) without copying an RGB image.
    pub fn rgb(&self) -> std::borrow::Cow<'_, RgbImage> {
        match self {
            Picture::Rgb(i) | Picture::Palette(i) => std::borrow::Cow::Borrowed(i),
            _ => std::borrow::Cow::Owned(self.to_rgb()),
        }
    }

    /// RGB (PIL `convert("RGB")`: alpha dropped, CMYK converted): what detection and crops see.
    pub fn to_rgb(&self) -> RgbImage {
        match self {
            Picture::Rgb(i) | Picture::Palette(i) => i.clone(),
            Picture::Rgba(i) => RgbImage::from_rgba_drop_alpha(i),
            Picture::Cmyk(i) => i.to_rgb(),
        }
    }
}

/// PIL's `MULDIV255`: round(a·b/255) with integer arithmetic.
fn muldiv255(a: u32, b: u32) -> u8 {
    let t = a * b + 128;
    (((t >> 8) + t) >> 8) as u8
}

/// Python's `round` (half to even).
pub fn round_half_even(v: f64) -> f64 {
    let r = v.round();
    if (v - v.trunc()).abs() == 0.5 {
        2.0 * (v / 2.0).round()
    } else {
        r
    }
}

struct Filter {
    support: f64,
    f: fn(f64) -> f64,
}

const BICUBIC: Filter = Filter {
    support: 2.0,
    f: |x| {
        // Pillow's bicubic with a = −0.5.
        let a = -0.5;
        let x = x.abs();
        if x < 1.0 {
            ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
        } else if x < 2.0 {
            (((x - 5.0) * x + 8.0) * x - 4.0) * a
        } else {
            0.0
        }
    },
};

const BILINEAR: Filter = Filter {
    support: 1.0,
    f: |x| {
        let x = x.abs();
        if x < 1.0 {
            1.0 - x
        } else {
            0.0
        }
    },
};

/// Pillow's fixed-point precision for 8-bit resampling (`PRECISION_BITS = 32 − 8 − 2`).
const PRECISION_BITS: u32 = 22;

/// Pillow `precompute_coeffs` + `normalize_coeffs_8bpc`: per output index, the first input
/// index, the tap count and the fixed-point taps.
fn pil_coeffs(in_size: usize, out_size: usize, filter: &Filter) -> (usize, Vec<(usize, usize)>, Vec<i32>) {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut kk = vec![0i32; out_size * ksize];
    let ss = 1.0 / filterscale;
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // C's (int) cast truncates toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin);
        let mut w = vec![0f64; n];
        let mut ww = 0.0;
        for (x, wx) in w.iter_mut().enumerate() {
            *wx = (filter.f)((x as f64 + xmin as f64 - center + 0.5) * ss);
            ww += *wx;
        }
        for (x, wx) in w.iter().enumerate() {
            let v = if ww != 0.0 { wx / ww } else { *wx };
            let s = v * (1u64 << PRECISION_BITS) as f64;
            kk[xx * ksize + x] = if v < 0.0 { (-0.5 + s) as i32 } else { (0.5 + s) as i32 };
        }
        bounds.push((xmin, n));
    }
    (ksize, bounds, kk)
}

fn clip8(v: i64) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's two-pass `ImagingResample` for 8-bit images with `ch` interleaved channels:
/// horizontal pass over the rows the vertical pass needs, then the vertical pass.
fn pil_resample(src: &[u8], ch: usize, w: usize, h: usize, ow: usize, oh: usize, filter: &Filter) -> Vec<u8> {
    let need_h = ow != w;
    let need_v = oh != h;
    let (kh, bh, ch_k) = pil_coeffs(w, ow, filter);
    let (kv, mut bv, cv_k) = pil_coeffs(h, oh, filter);
    let half = 1i64 << (PRECISION_BITS - 1);
    if !need_h && !need_v {
        return src.to_vec();
    }
    // `cur` is the horizontal pass's output; the vertical pass reads `src` when there is none
    // (no copy of the source: it can be a 100-megapixel image).
    let (mut cur, mut cw, mut chh) = (Vec::new(), w, h);
    if need_h {
        let first = bv[0].0;
        let last = bv[oh - 1].0 + bv[oh - 1].1;
        for b in bv.iter_mut() {
            b.0 -= first;
        }
        let rows = last - first;
        let mut out = vec![0u8; rows * ow * ch];
        for y in 0..rows {
            let row = &src[(y + first) * w * ch..(y + first + 1) * w * ch];
            for (xx, &(xmin, n)) in bh.iter().enumerate() {
                let k = &ch_k[xx * kh..xx * kh + n];
                for c in 0..ch {
                    let mut ss = half;
                    for (x, &kx) in k.iter().enumerate() {
                        ss += row[(xmin + x) * ch + c] as i64 * kx as i64;
                    }
                    out[(y * ow + xx) * ch + c] = clip8(ss);
                }
            }
        }
        cur = out;
        cw = ow;
        chh = rows;
    }
    if need_v {
        let cur_in: &[u8] = if need_h { &cur } else { src };
        let mut out = vec![0u8; oh * cw * ch];
        for (yy, &(ymin, n)) in bv.iter().enumerate() {
            let k = &cv_k[yy * kv..yy * kv + n];
            for x in 0..cw {
                for c in 0..ch {
                    let mut ss = half;
                    for (y, &ky) in k.iter().enumerate() {
                        ss += cur_in[((ymin + y) * cw + x) * ch + c] as i64 * ky as i64;
                    }
                    out[(yy * cw + x) * ch + c] = clip8(ss);
                }
            }
        }
        cur = out;
        chh = oh;
    }
    debug_assert_eq!(cur.len(), ow * chh * ch);
    cur
}

/// OpenCV `resize` with `INTER_LINEAR` on 8-bit images: half-pixel centres, no antialiasing,
/// 11-bit fixed-point weights, the horizontal pass kept at 2^11 scale, the vertical pass
/// rounding with OpenCV's `(b0·S0 >> 4) + (b1·S1 >> 4) + 2 >> 2` ordering.
fn cv2_resize_linear(src: &[u8], ch: usize, w: usize, h: usize, ow: usize, oh: usize) -> Vec<u8> {
    const BITS: i32 = 11;
    const ONE: f32 = (1 << BITS) as f32;
    // Taps per output index: (first source index, second source index, weight 0, weight 1).
    // Along x OpenCV clamps the position at the borders (weight 0 becomes 1); along y it keeps
    // the fractional weight and clips the two source rows separately, which rounds
    // differently in the vertical pass, so both behaviours are reproduced.
    let coeffs = |in_size: usize, out_size: usize, clamp_weight: bool| -> Vec<(usize, usize, i32, i32)> {
        let scale = in_size as f64 / out_size as f64;
        (0..out_size)
            .map(|d| {
                let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
                let mut s = f.floor() as i64;
                let mut fx = f - s as f32;
                if clamp_weight {
                    if s < 0 {
                        s = 0;
                        fx = 0.0;
                    }
                    if s >= in_size as i64 - 1 {
                        s = in_size as i64 - 1;
                        fx = 0.0;
                    }
                }
                let c0 = ((1.0 - fx) * ONE).round_ties_even() as i32;
                let c1 = ((fx * ONE).round_ties_even()) as i32;
                let clip = |v: i64| v.clamp(0, in_size as i64 - 1) as usize;
                (clip(s), clip(s + 1), c0, c1)
            })
            .collect()
    };
    let xc = coeffs(w, ow, true);
    let yc = coeffs(h, oh, false);
    // Horizontal pass for every source row (values scaled by 2^11).
    let mut rows = vec![0i32; h * ow * ch];
    for y in 0..h {
        for (dx, &(s0, s1, c0, c1)) in xc.iter().enumerate() {
            for c in 0..ch {
                let a = src[(y * w + s0) * ch + c] as i32;
                let b = src[(y * w + s1) * ch + c] as i32;
                rows[(y * ow + dx) * ch + c] = a * c0 + b * c1;
            }
        }
    }
    let mut out = vec![0u8; oh * ow * ch];
    for (dy, &(s0, s1, b0, b1)) in yc.iter().enumerate() {
        for i in 0..ow * ch {
            let r0 = rows[s0 * ow * ch + i];
            let r1 = rows[s1 * ow * ch + i];
            let v = (((b0 * (r0 >> 4)) >> 16) + ((b1 * (r1 >> 4)) >> 16) + 2) >> 2;
            out[dy * ow * ch + i] = v.clamp(0, 255) as u8;
        }
    }
    out
}

/// CLIP's normalisation constants (OpenAI).
pub const CLIP_MEAN: [f32; 3] = [0.48145466, 0.4578275, 0.40821073];
pub const CLIP_STD: [f32; 3] = [0.26862954, 0.261_302_6, 0.275_777_1];

/// torchvision `Resize(size)` on a PIL image: the shorter side becomes `size`, the longer
/// `int(size · long / short)`.
pub fn shorter_side_size(w: usize, h: usize, size: usize) -> (usize, usize) {
    if w <= h {
        (size, (size as f64 * h as f64 / w as f64) as usize)
    } else {
        ((size as f64 * w as f64 / h as f64) as usize, size)
    }
}

/// OpenAI CLIP `_transform(n_px)` on an RGB image: Resize(n_px, bicubic) → CenterCrop(n_px)
/// → /255 → normalise. Returns [3, n_px, n_px] values in CHW order.
pub fn clip_preprocess(img: &RgbImage, n_px: usize) -> Result<Vec<f32>> {
    let (w, h) = shorter_side_size(img.width, img.height, n_px);
    let r = img.resize_bicubic(w, h)?;
    center_crop_normalize(&r, n_px)
}

/// CLIP preprocessing of an RGBA image as PIL runs it: the resize happens on the RGBA image
/// (premultiplied), the alpha is dropped afterwards (`convert("RGB")` comes after the crop).
pub fn clip_preprocess_rgba(img: &RgbaImage, n_px: usize) -> Result<Vec<f32>> {
    let (w, h) = shorter_side_size(img.width, img.height, n_px);
    let r = img.resize_bicubic(w, h)?;
    center_crop_normalize(&RgbImage::from_rgba_drop_alpha(&r), n_px)
}

/// CLIP preprocessing of a palette ("P") or 1-bit image as PIL runs it: `Resize` is forced to
/// NEAREST for those modes, then the palette colours are looked up (`convert("RGB")`). Since
/// the lookup commutes with picking pixels, this takes the image already expanded to RGB.
pub fn clip_preprocess_nearest(img: &RgbImage, n_px: usize) -> Result<Vec<f32>> {
    let (w, h) = shorter_side_size(img.width, img.height, n_px);
    let r = img.resize_nearest_pil(w, h)?;
    center_crop_normalize(&r, n_px)
}

/// CLIP preprocessing of a CMYK image as PIL runs it: resize the CMYK planes, convert to RGB.
pub fn clip_preprocess_cmyk(img: &CmykImage, n_px: usize) -> Result<Vec<f32>> {
    let (w, h) = shorter_side_size(img.width, img.height, n_px);
    center_crop_normalize(&img.resize_bicubic(w, h)?.to_rgb(), n_px)
}

fn center_crop_normalize(r: &RgbImage, n: usize) -> Result<Vec<f32>> {
    if r.width < n || r.height < n {
        return Err(Error::arg("clip_preprocess", format!("resized image {}×{} is smaller than the {n}px crop", r.width, r.height)));
    }
    let top = round_half_even((r.height - n) as f64 / 2.0) as usize;
    let left = round_half_even((r.width - n) as f64 / 2.0) as usize;
    let mut out = vec![0f32; 3 * n * n];
    for y in 0..n {
        for x in 0..n {
            let s = ((top + y) * r.width + left + x) * 3;
            for c in 0..3 {
                out[c * n * n + y * n + x] = (r.data[s + c] as f32 / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c];
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_rounding() {
        assert_eq!(round_half_even(0.5), 0.0);
        assert_eq!(round_half_even(1.5), 2.0);
        assert_eq!(round_half_even(2.5), 2.0);
        assert_eq!(round_half_even(-0.5), -0.0);
        assert_eq!(round_half_even(2.6), 3.0);
    }

    #[test]
    fn resize_identity_and_constant() {
        let img = RgbImage::new(5, 3, (0..45).map(|i| (i * 5) as u8).collect()).unwrap();
        assert_eq!(img.resize_bicubic(5, 3).unwrap(), img);
        let c = RgbImage::new(7, 9, vec![77; 7 * 9 * 3]).unwrap();
        // A constant image stays constant under any normalised filter.
        assert!(c.resize_bicubic(3, 4).unwrap().data.iter().all(|&v| v == 77));
        assert!(c.resize_bicubic(20, 31).unwrap().data.iter().all(|&v| v == 77));
        assert!(c.resize_cv2_linear(20, 3).unwrap().data.iter().all(|&v| v == 77));
    }

    #[test]
    fn shorter_side() {
        assert_eq!(shorter_side_size(640, 480, 224), (298, 224));
        assert_eq!(shorter_side_size(97, 61, 224), (356, 224));
        assert_eq!(shorter_side_size(224, 224, 224), (224, 224));
    }

    #[test]
    fn bad_sizes_are_errors() {
        assert!(RgbImage::new(0, 3, vec![]).is_err());
        assert!(RgbImage::new(2, 2, vec![0; 11]).is_err());
        assert!(RgbImage::new(20_000, 20_000, vec![]).is_err());
        let img = RgbImage::new(4, 4, vec![0; 48]).unwrap();
        assert!(img.crop(2.0, 2.0, 2.0, 3.0).is_err());
    }
}
