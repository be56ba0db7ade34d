//! Decoding image files (natively, and in wasm from a file's bytes) into
//! [`crate::media::image::Picture`]: JPEG with [`crate::media::jpeg`] (libjpeg-turbo's output bit for bit, as
//! PIL decodes), PNG and WebP through the `image` crate, with limits.
//!
//! Conversions, and where they differ from PIL (what the official code uses):
//! - RGBA / grey+alpha keep their alpha so CLIP preprocessing can resize premultiplied, as PIL
//!   does for RGBA and LA; grey becomes RGB by replication (PIL `convert("RGB")`).
//! - Palette PNGs (PIL mode "P") and 1-bit greyscale PNGs (mode "1") come back as
//!   [`Decoded::Palette`], expanded to RGB (a palette's transparency is ignored, as
//!   `convert("RGB")` ignores it): PIL resizes those modes with NEAREST whatever filter is
//!   asked, and [`crate::models::clip::ClipImage::Palette`] does the same, so they match PIL.
//! - 16-bit images keep the high byte of each sample (`v >> 8`), which is what PIL does when it
//!   opens 16-bit RGB, RGBA and grey+alpha PNGs ("RGB;16B" raw modes). 16-bit greyscale is the
//!   exception: PIL opens it as mode "I;16" and `convert("RGB")` clips values above 255, which
//!   saturates almost every pixel; we treat that as a bug, not a behaviour to reproduce.
//! - CMYK JPEGs come back as [`Decoded::Cmyk`] (PIL's mode "CMYK"), so CLIP preprocessing
//!   resizes in CMYK and converts after, as PIL does. Detection gets PIL's `cmyk2rgb` too;
//!   ultralytics reads with OpenCV, whose CMYK conversion divides by 256 instead of 255
//!   (measured: ≤ 2 levels apart on the CMYK fixtures). JPEGs in other colour spaces decode
//!   identically in OpenCV and PIL.
//! - WebP goes through the `image` crate (PIL uses libwebp): on the test files, lossy and
//!   lossless, it gives libwebp 1.5.0's pixels exactly (tests/decode.rs).

use crate::media::image::{RgbImage, RgbaImage, MAX_PIXELS};
use crate::{Error, Result};

/// A decoded image (the same type as [`crate::pipeline::Picture`]).
pub use crate::media::image::Picture as Decoded;

/// The still-image format whose signature `head` (a file's first 12 bytes or more) starts with:
/// the formats this module decodes and a few it does not (for messages such as "a still image
/// given as a video").
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(&[0xFF, 0xD8]) {
        Some("JPEG")
    } else if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("PNG")
    } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        Some("WebP")
    } else if head.starts_with(b"GIF8") {
        Some("GIF")
    } else if head.starts_with(b"BM") {
        Some("BMP")
    } else {
        None
    }
}

/// Decode image bytes; `name` is used in errors.
pub fn decode(bytes: &[u8], name: &str) -> Result<Decoded> {
    if bytes.is_empty() {
        return Err(Error::Format(format!("{name}: empty file, not an image")));
    }
    if sniff(bytes) == Some("JPEG") {
        return decode_jpeg(bytes, name);
    }
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| Error::Format(format!("{name}: {e}")))?;
    if reader.format().is_none() {
        return Err(Error::Format(format!("{name}: not a PNG, JPEG or WebP image")));
    }
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(2 * 1024 * 1024 * 1024);
    reader.limits(limits);
    let (w, h) = reader.into_dimensions().map_err(|e| Error::Format(format!("{name}: unreadable image header ({e})")))?;
    if (w as usize).saturating_mul(h as usize) > MAX_PIXELS {
        return Err(Error::Format(format!("{name}: {w}×{h} pixels is over the {MAX_PIXELS}-pixel limit; downscale it first")));
    }
    if w == 0 || h == 0 {
        return Err(Error::Format(format!("{name}: empty image ({w}×{h})")));
    }
    let img = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::Format(format!("{name}: {e}")))?
        .decode()
        .map_err(|e| Error::Format(format!("{name}: cannot decode ({e})")))?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    use image::ColorType as C;
    let sixteen = matches!(img.color(), C::L16 | C::La16 | C::Rgb16 | C::Rgba16);
    // High byte of 16-bit samples (PIL's "RGB;16B" raw modes), not the crate's rounding.
    let msb = |v: Vec<u16>| -> Vec<u8> { v.into_iter().map(|x| (x >> 8) as u8).collect() };
    // `into_*` reuses the decoder's buffer when it already has that layout (no second
    // full-size copy of a large image).
    Ok(if png_palette_like(bytes) {
        Decoded::Palette(RgbImage::new(w, h, img.into_rgb8().into_raw())?)
    } else if img.color().has_alpha() {
        let data = if sixteen { msb(img.into_rgba16().into_raw()) } else { img.into_rgba8().into_raw() };
        Decoded::Rgba(RgbaImage::new(w, h, data)?)
    } else {
        let data = if sixteen { msb(img.into_rgb16().into_raw()) } else { img.into_rgb8().into_raw() };
        Decoded::Rgb(RgbImage::new(w, h, data)?)
    })
}

fn decode_jpeg(bytes: &[u8], name: &str) -> Result<Decoded> {
    crate::media::jpeg::decode(bytes).map_err(|e| Error::Format(format!("{name}: {e}")))?.into_picture()
}

/// Whether `bytes` are a PNG that PIL opens in mode "P" (colour type 3) or "1" (1-bit grey):
/// the IHDR chunk is always first, with bit depth at byte 24 and colour type at byte 25.
fn png_palette_like(bytes: &[u8]) -> bool {
    bytes.len() > 25 && bytes.starts_with(b"\x89PNG\r\n\x1a\n") && &bytes[12..16] == b"IHDR" && (bytes[25] == 3 || (bytes[25] == 0 && bytes[24] == 1))
}

/// Read and decode an image file.
#[cfg(not(target_arch = "wasm32"))]
pub fn open(path: impl AsRef<std::path::Path>) -> Result<Decoded> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(format!("reading image {}", path.display()), e))?;
    decode(&bytes, &path.display().to_string())
}

/// Encode RGB as PNG bytes.
pub fn encode_png(img: &RgbImage) -> Result<Vec<u8>> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_raw(img.width as u32, img.height as u32, img.data.clone())
        .ok_or_else(|| Error::arg("encode_png", "bad buffer size"))?
        .write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| Error::Format(format!("PNG encode: {e}")))?;
    Ok(out.into_inner())
}
