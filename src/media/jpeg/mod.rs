//! A JPEG decoder that reproduces libjpeg-turbo's default decode bit for bit: the pixels PIL
//! (and so the official SSV2A preprocessing) and OpenCV see.
//!
//! Why our own: the `image` crate's decoder (zune-jpeg) uses another IDCT and rounds its chroma
//! upsampling differently, which put CLIP's input up to 4/255 off PIL's on photographs. This
//! module follows libjpeg-turbo 3.x with the settings PIL leaves at their defaults:
//! - entropy decoding: baseline/extended sequential and progressive Huffman scans (`jdhuff.c`,
//!   `jdphuff.c`), restart intervals, interleaved and single-component scans, 8-bit samples;
//! - dequantisation and the accurate integer IDCT (`jidctint.c`, JDCT_ISLOW), with its
//!   wrap-around range-limit table;
//! - "fancy" (triangular) chroma upsampling for h2v1, h1v2 and h2v2, replication for other
//!   integral factors (`jdsample.c`), with libjpeg's edge replication at the image borders;
//! - colour conversion with libjpeg's 16-bit fixed-point YCbCr tables (`jdcolor.c`); the
//!   colour space is guessed from the JFIF/Adobe markers and component ids as `jdapimin.c`
//!   does; YCCK becomes CMYK; CMYK comes back inverted, as PIL's "CMYK;I" raw mode stores it;
//! - block smoothing of progressive files whose scans leave some of the first nine AC
//!   coefficients unrefined (`jdcoefct.c` decompress_smooth_data, libjpeg-turbo ≥ 2.1's 5×5
//!   DC neighbourhood; common encoders refine every coefficient, and then nothing is smoothed).
//!
//! Every path above has a bit-exact test against Pillow 11.3 (`tests/decode.rs`). Arithmetic-coded, lossless, hierarchical
//! and 12-bit JPEGs are errors (PIL refuses 12-bit too). Corrupt entropy data (a bad Huffman
//! code, a missing restart marker) is an error where libjpeg would warn and fill with zeros.
//!
//! Scalar code: 42 MP/s on the project machine, 1.6× slower than zune-jpeg's SIMD decoder
//! (`ssv2a bench jpeg`). Components are IDCT-ed and upsampled one at a time, each freeing its
//! coefficients.

mod color;
mod entropy;
mod idct;
mod upsample;

use self::color::{clamp8, YccTables};
use self::entropy::{ac_first, ac_refine, decode_block, extend, find_marker, Bits, Huffman};
use self::idct::idct_component;
use self::upsample::upsample;
use crate::media::image::MAX_PIXELS;

/// Colour layout of [`Jpeg::data`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One byte per pixel (PIL mode "L").
    Gray,
    /// R, G, B (PIL mode "RGB").
    Rgb,
    /// C, M, Y, K with PIL's polarity (mode "CMYK" read through raw mode "CMYK;I": libjpeg's
    /// Adobe-convention CMYK inverted).
    Cmyk,
}

impl Layout {
    pub fn channels(self) -> usize {
        match self {
            Layout::Gray => 1,
            Layout::Rgb => 3,
            Layout::Cmyk => 4,
        }
    }
}

/// A decoded JPEG.
#[derive(Clone, Debug)]
pub struct Jpeg {
    pub width: usize,
    pub height: usize,
    pub layout: Layout,
    /// Row-major, `layout.channels()` bytes per pixel.
    pub data: Vec<u8>,
    pub progressive: bool,
    /// A progressive file whose scans leave some of the first nine AC coefficients unrefined:
    /// its blocks were smoothed as libjpeg does (`jdcoefct.c` decompress_smooth_data).
    pub smoothed: bool,
}

impl Jpeg {
    /// As PIL holds the image for CLIP preprocessing: RGB (greyscale replicated, which resizes
    /// the same as PIL's "L"), or CMYK (resized in CMYK, converted after).
    pub fn into_picture(self) -> crate::Result<crate::media::image::Picture> {
        use crate::media::image::{CmykImage, Picture, RgbImage};
        Ok(match self.layout {
            Layout::Rgb => Picture::Rgb(RgbImage::new(self.width, self.height, self.data)?),
            Layout::Gray => Picture::Rgb(RgbImage::new(self.width, self.height, self.data.iter().flat_map(|&v| [v, v, v]).collect())?),
            Layout::Cmyk => Picture::Cmyk(CmykImage::new(self.width, self.height, self.data)?),
        })
    }
}

/// Zig-zag position → natural (row-major) position, with 16 extra entries so that corrupt run
/// lengths past 63 land on the last coefficient instead of out of bounds (as libjpeg's table).
const NATURAL: [usize; 80] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29,
    22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
];

/// Decode a JPEG file's bytes. Errors are one line, without the file name (the caller adds it).
pub fn decode(bytes: &[u8]) -> Result<Jpeg, String> {
    Decoder::new(bytes)?.run()
}

struct Component {
    id: u8,
    h: usize,
    v: usize,
    tq: usize,
    /// Quantisation table (natural order), latched at the component's first scan.
    quant: Option<[u16; 64]>,
    /// Coefficient storage in blocks (padded to whole MCUs).
    bw: usize,
    bh: usize,
    /// libjpeg's downsampled_width/height: samples that carry image data.
    dw: usize,
    dh: usize,
    coefs: Vec<i16>,
    /// Successive-approximation state per coefficient (-1: never coded).
    coef_bits: [i32; 64],
}

struct Frame {
    progressive: bool,
    width: usize,
    height: usize,
    comps: Vec<Component>,
    maxh: usize,
    maxv: usize,
    mcux: usize,
    mcuy: usize,
}

struct Decoder<'a> {
    data: &'a [u8],
    pos: usize,
    quant: [Option<[u16; 64]>; 4],
    dc: [Option<Huffman>; 4],
    ac: [Option<Huffman>; 4],
    frame: Option<Frame>,
    restart_interval: usize,
    jfif: bool,
    adobe: Option<u8>,
}

impl<'a> Decoder<'a> {
    fn new(data: &'a [u8]) -> Result<Decoder<'a>, String> {
        if !data.starts_with(&[0xFF, 0xD8]) {
            return Err("not a JPEG (no start-of-image marker)".into());
        }
        Ok(Decoder {
            data,
            pos: 2,
            quant: [None; 4],
            dc: [None, None, None, None],
            ac: [None, None, None, None],
            frame: None,
            restart_interval: 0,
            jfif: false,
            adobe: None,
        })
    }

    /// The next marker code, skipping fill bytes and (as libjpeg, with a warning there)
    /// garbage before it.
    fn next_marker(&mut self) -> Result<u8, String> {
        let (p, m) = find_marker(self.data, self.pos).ok_or("truncated JPEG (the data ends before the end-of-image marker)")?;
        self.pos = p;
        Ok(m)
    }

    /// The payload of the marker segment at `pos` (after its length field).
    fn segment(&mut self) -> Result<&'a [u8], String> {
        let d = self.data;
        if self.pos + 2 > d.len() {
            return Err("truncated JPEG marker segment".into());
        }
        let len = u16::from_be_bytes([d[self.pos], d[self.pos + 1]]) as usize;
        if len < 2 || self.pos + len > d.len() {
            return Err("truncated or corrupt JPEG marker segment".into());
        }
        let s = &d[self.pos + 2..self.pos + len];
        self.pos += len;
        Ok(s)
    }

    fn run(mut self) -> Result<Jpeg, String> {
        let mut scans = 0usize;
        loop {
            let m = self.next_marker()?;
            match m {
                0xC0..=0xC2 => {
                    if self.frame.is_some() {
                        return Err("more than one frame header".into());
                    }
                    let seg = self.segment()?;
                    self.frame = Some(self.read_frame(seg, m == 0xC2)?);
                }
                0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                    let what = match m {
                        0xC3 => "lossless",
                        0xC5..=0xC7 => "hierarchical",
                        _ => "arithmetic-coded",
                    };
                    return Err(format!("{what} JPEG (SOF{}) is not supported; re-save it as a baseline or progressive JPEG, or as PNG", m - 0xC0));
                }
                0xC4 => {
                    let seg = self.segment()?;
                    self.read_huffman(seg)?;
                }
                0xDB => {
                    let seg = self.segment()?;
                    self.read_quant(seg)?;
                }
                0xDD => {
                    let seg = self.segment()?;
                    if seg.len() < 2 {
                        return Err("bad restart-interval segment".into());
                    }
                    self.restart_interval = u16::from_be_bytes([seg[0], seg[1]]) as usize;
                }
                0xE0 => {
                    let seg = self.segment()?;
                    // jdmarker.c examine_app0: JFIF with at least the 14-byte header.
                    if seg.len() >= 14 && seg.starts_with(b"JFIF\0") {
                        self.jfif = true;
                    }
                }
                0xEE => {
                    let seg = self.segment()?;
                    if seg.len() >= 12 && seg.starts_with(b"Adobe") {
                        self.adobe = Some(seg[11]);
                    }
                }
                0xDA => {
                    let seg = self.segment()?;
                    self.scan(seg)?;
                    scans += 1;
                }
                0xD9 => break,
                0xDC => return Err("JPEG with a DNL marker (height defined after the scan) is not supported".into()),
                0x01 | 0xD0..=0xD7 => {}
                0xD8 => return Err("corrupt JPEG (a second start-of-image marker)".into()),
                _ => {
                    self.segment()?;
                }
            }
        }
        if scans == 0 {
            return Err("JPEG has no image data (no scan before the end-of-image marker)".into());
        }
        let frame = self.frame.take().ok_or("JPEG has no frame header")?;
        // jdcoefct.c smoothing_ok: the quantisers of the DC and AC 1..9 non-zero and every DC
        // partly known in all components, and some of AC 1..9 not fully refined in one.
        let smoothed = frame.progressive
            && frame.comps.iter().all(|c| c.coef_bits[0] >= 0 && c.quant.is_some_and(|q| [0, 1, 8, 16, 9, 2, 3, 10, 17, 24].iter().all(|&p| q[p] != 0)))
            && frame.comps.iter().any(|c| c.coef_bits[1..10].iter().any(|&b| b != 0));
        let (width, height, progressive) = (frame.width, frame.height, frame.progressive);
        let (layout, data) = output(frame, self.jfif, self.adobe, smoothed)?;
        Ok(Jpeg { width, height, layout, data, progressive, smoothed })
    }

    fn read_frame(&self, seg: &[u8], progressive: bool) -> Result<Frame, String> {
        if seg.len() < 6 {
            return Err("frame header too short".into());
        }
        if seg[0] != 8 {
            return Err(format!("{}-bit JPEG samples are not supported (8-bit only, as PIL)", seg[0]));
        }
        let height = u16::from_be_bytes([seg[1], seg[2]]) as usize;
        let width = u16::from_be_bytes([seg[3], seg[4]]) as usize;
        let nf = seg[5] as usize;
        if width == 0 || height == 0 {
            return Err(format!("empty image ({width}×{height})"));
        }
        if width.saturating_mul(height) > MAX_PIXELS {
            return Err(format!("{width}×{height} pixels is over the {MAX_PIXELS}-pixel limit; downscale it first"));
        }
        if !matches!(nf, 1 | 3 | 4) {
            return Err(format!("JPEG with {nf} components is not supported (1, 3 or 4)"));
        }
        if seg.len() < 6 + 3 * nf {
            return Err("frame header too short".into());
        }
        let mut comps = Vec::with_capacity(nf);
        for i in 0..nf {
            let c = &seg[6 + 3 * i..9 + 3 * i];
            let (h, v) = ((c[1] >> 4) as usize, (c[1] & 15) as usize);
            if !(1..=4).contains(&h) || !(1..=4).contains(&v) || c[2] > 3 {
                return Err("bad sampling factors or quantisation table number in the frame header".into());
            }
            if comps.iter().any(|x: &Component| x.id == c[0]) {
                return Err("duplicate component id in the frame header".into());
            }
            comps.push(Component { id: c[0], h, v, tq: c[2] as usize, quant: None, bw: 0, bh: 0, dw: 0, dh: 0, coefs: vec![], coef_bits: [-1; 64] });
        }
        let maxh = comps.iter().map(|c| c.h).max().unwrap_or(1);
        let maxv = comps.iter().map(|c| c.v).max().unwrap_or(1);
        let mcux = width.div_ceil(8 * maxh);
        let mcuy = height.div_ceil(8 * maxv);
        for c in &mut comps {
            c.dw = (width * c.h).div_ceil(maxh);
            c.dh = (height * c.v).div_ceil(maxv);
            c.bw = mcux * c.h;
            c.bh = mcuy * c.v;
            c.coefs = vec![0; c.bw * c.bh * 64];
        }
        Ok(Frame { progressive, width, height, comps, maxh, maxv, mcux, mcuy })
    }

    fn read_huffman(&mut self, mut seg: &[u8]) -> Result<(), String> {
        while !seg.is_empty() {
            if seg.len() < 17 {
                return Err("bad Huffman table segment".into());
            }
            let (class, id) = (seg[0] >> 4, (seg[0] & 15) as usize);
            if class > 1 || id > 3 {
                return Err("bad Huffman table class or number".into());
            }
            let mut counts = [0u8; 16];
            counts.copy_from_slice(&seg[1..17]);
            let n: usize = counts.iter().map(|&c| c as usize).sum();
            if seg.len() < 17 + n {
                return Err("bad Huffman table segment".into());
            }
            let t = Huffman::new(&counts, seg[17..17 + n].to_vec(), class == 0)?;
            if class == 0 {
                self.dc[id] = Some(t);
            } else {
                self.ac[id] = Some(t);
            }
            seg = &seg[17 + n..];
        }
        Ok(())
    }

    fn read_quant(&mut self, mut seg: &[u8]) -> Result<(), String> {
        while !seg.is_empty() {
            let (prec, id) = (seg[0] >> 4, (seg[0] & 15) as usize);
            if prec > 1 || id > 3 {
                return Err("bad quantisation table precision or number".into());
            }
            let n = if prec == 0 { 64 } else { 128 };
            if seg.len() < 1 + n {
                return Err("bad quantisation table segment".into());
            }
            let mut q = [0u16; 64];
            for (k, &nat) in NATURAL.iter().take(64).enumerate() {
                q[nat] = if prec == 0 { seg[1 + k] as u16 } else { u16::from_be_bytes([seg[1 + 2 * k], seg[2 + 2 * k]]) };
            }
            self.quant[id] = Some(q);
            seg = &seg[1 + n..];
        }
        Ok(())
    }

    fn scan(&mut self, seg: &[u8]) -> Result<(), String> {
        let frame = self.frame.as_mut().ok_or("scan before the frame header")?;
        if seg.is_empty() {
            return Err("bad scan header".into());
        }
        let ns = seg[0] as usize;
        if ns == 0 || ns > 4 || seg.len() < 1 + 2 * ns + 3 {
            return Err("bad scan header".into());
        }
        let mut sel = Vec::with_capacity(ns);
        for i in 0..ns {
            let (id, t) = (seg[1 + 2 * i], seg[2 + 2 * i]);
            let ci = frame.comps.iter().position(|c| c.id == id).ok_or("scan names a component the frame lacks")?;
            if sel.iter().any(|&(c, _, _)| c == ci) {
                return Err("scan names a component twice".into());
            }
            sel.push((ci, (t >> 4) as usize, (t & 15) as usize));
        }
        let p = 1 + 2 * ns;
        let (ss, se, ah, al) = (seg[p] as usize, seg[p + 1] as usize, (seg[p + 2] >> 4) as u32, (seg[p + 2] & 15) as u32);
        if frame.progressive {
            // jdphuff.c start_pass_phuff_decoder's hard errors.
            let bad = if ss == 0 { se != 0 } else { se < ss || se > 63 || ns != 1 };
            if bad || (ah != 0 && al != ah - 1) || al > 13 {
                return Err("bad progressive scan parameters".into());
            }
        }
        if ns > 1 {
            let blocks: usize = sel.iter().map(|&(c, _, _)| frame.comps[c].h * frame.comps[c].v).sum();
            if blocks > 10 {
                return Err("bad MCU size (more than 10 blocks)".into());
            }
        }
        // Latch quantisation tables (jdinput.c latch_quant_tables) and check Huffman tables.
        for &(ci, td, ta) in &sel {
            let c = &mut frame.comps[ci];
            if c.quant.is_none() {
                c.quant = Some(self.quant[c.tq].ok_or_else(|| format!("quantisation table {} is not defined", c.tq))?);
            }
            let need_dc = !frame.progressive || (ss == 0 && ah == 0);
            let need_ac = !frame.progressive || ss > 0;
            if td > 3 || ta > 3 || (need_dc && self.dc[td].is_none()) || (need_ac && self.ac[ta].is_none()) {
                return Err("scan uses an undefined Huffman table".into());
            }
            // Successive-approximation bookkeeping (for the smoothing check).
            let (lo, hi) = if frame.progressive { (ss, se) } else { (0, 63) };
            for k in lo..=hi.min(63) {
                c.coef_bits[k] = al as i32;
            }
        }
        // Each scan component's tables (checked present above for what this scan decodes).
        let tables: Vec<(Option<&Huffman>, Option<&Huffman>)> =
            sel.iter().map(|&(_, td, ta)| (self.dc.get(td).and_then(Option::as_ref), self.ac.get(ta).and_then(Option::as_ref))).collect();
        let undefined = || "scan uses an undefined Huffman table".to_string();
        let data = self.data;
        let mut bits = Bits::new(data, self.pos);
        let mut dc_pred = [0i32; 4];
        let mut eobrun = 0u32;
        let (units_x, units_y) = if ns == 1 {
            let c = &frame.comps[sel[0].0];
            (c.dw.div_ceil(8), c.dh.div_ceil(8))
        } else {
            (frame.mcux, frame.mcuy)
        };
        let total = units_x * units_y;
        let mut rst = 0u8;
        let progressive = frame.progressive;
        for unit in 0..total {
            if self.restart_interval > 0 && unit > 0 && unit % self.restart_interval == 0 {
                let p = bits.reset();
                let next = find_marker(data, p).filter(|&(_, m)| m == 0xD0 + rst);
                let Some((q, _)) = next else {
                    return Err(format!("corrupt JPEG data (restart marker {rst} missing)"));
                };
                rst = (rst + 1) & 7;
                bits = Bits::new(data, q);
                dc_pred = [0; 4];
                eobrun = 0;
            }
            let (ux, uy) = (unit % units_x, unit / units_x);
            for (si, &(ci, _, _)) in sel.iter().enumerate() {
                let (dct, act) = tables[si];
                let c = &mut frame.comps[ci];
                let (nh, nv) = if ns == 1 { (1, 1) } else { (c.h, c.v) };
                for by in 0..nv {
                    for bx in 0..nh {
                        let (x, y) = if ns == 1 { (ux, uy) } else { (ux * c.h + bx, uy * c.v + by) };
                        let off = (y * c.bw + x) * 64;
                        let block = &mut c.coefs[off..off + 64];
                        if !progressive {
                            decode_block(&mut bits, block, dct.ok_or_else(undefined)?, act.ok_or_else(undefined)?, &mut dc_pred[si])?;
                        } else if ss == 0 {
                            if ah == 0 {
                                let s = bits.huff(dct.ok_or_else(undefined)?)? as u32;
                                let diff = extend(bits.bits(s), s);
                                dc_pred[si] = dc_pred[si].wrapping_add(diff);
                                block[0] = (dc_pred[si] as i64).wrapping_shl(al) as i16;
                            } else if bits.bit() {
                                block[0] |= (1i32 << al) as i16;
                            }
                        } else if ah == 0 {
                            ac_first(&mut bits, block, act.ok_or_else(undefined)?, ss, se, al, &mut eobrun)?;
                        } else {
                            ac_refine(&mut bits, block, act.ok_or_else(undefined)?, ss, se, al, &mut eobrun)?;
                        }
                    }
                }
            }
        }
        self.pos = bits.reset();
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq)]
enum ColorSpace {
    Gray,
    YCbCr,
    Rgb,
    Cmyk,
    Ycck,
}

fn output(mut frame: Frame, jfif: bool, adobe: Option<u8>, smooth: bool) -> Result<(Layout, Vec<u8>), String> {
    let ids: Vec<u8> = frame.comps.iter().map(|c| c.id).collect();
    let space = match frame.comps.len() {
        1 => ColorSpace::Gray,
        3 if jfif => ColorSpace::YCbCr,
        3 => match adobe {
            Some(0) => ColorSpace::Rgb,
            Some(_) => ColorSpace::YCbCr,
            None if ids == [82, 71, 66] => ColorSpace::Rgb,
            None => ColorSpace::YCbCr,
        },
        _ => match adobe {
            Some(0) | None => ColorSpace::Cmyk,
            Some(_) => ColorSpace::Ycck,
        },
    };
    let (w, h) = (frame.width, frame.height);
    // One component at a time, freeing its coefficients and samples as soon as they are used
    // (peak memory: the coefficients left, one plane, the upsampled planes).
    let (maxh, maxv) = (frame.maxh, frame.maxv);
    let mut planes = Vec::with_capacity(frame.comps.len());
    for c in frame.comps.iter_mut() {
        let plane = idct_component(c, smooth.then_some(frame.mcuy));
        c.coefs = Vec::new();
        planes.push(upsample(&plane, c.h, c.v, maxh, maxv, w, h)?);
    }
    let n = w * h;
    Ok(match space {
        ColorSpace::Gray => (Layout::Gray, planes.into_iter().next().unwrap_or_default()),
        ColorSpace::Rgb => {
            let mut out = vec![0u8; n * 3];
            for (i, o) in out.chunks_exact_mut(3).enumerate() {
                o.copy_from_slice(&[planes[0][i], planes[1][i], planes[2][i]]);
            }
            (Layout::Rgb, out)
        }
        ColorSpace::YCbCr => {
            let t = YccTables::new();
            let mut out = vec![0u8; n * 3];
            let (p0, p1, p2) = (&planes[0][..n], &planes[1][..n], &planes[2][..n]);
            for (i, o) in out.chunks_exact_mut(3).enumerate() {
                let [r, g, b] = t.rgb(p0[i], p1[i], p2[i]);
                o.copy_from_slice(&[clamp8(r), clamp8(g), clamp8(b)]);
            }
            (Layout::Rgb, out)
        }
        ColorSpace::Cmyk | ColorSpace::Ycck => {
            let t = YccTables::new();
            let mut out = vec![0u8; n * 4];
            for (i, o) in out.chunks_exact_mut(4).enumerate() {
                let (c, m, y) = if space == ColorSpace::Cmyk {
                    (planes[0][i], planes[1][i], planes[2][i])
                } else {
                    let [r, g, b] = t.rgb(planes[0][i], planes[1][i], planes[2][i]);
                    (clamp8(255 - r), clamp8(255 - g), clamp8(255 - b))
                };
                // PIL reads libjpeg's CMYK through raw mode "CMYK;I" (inverted).
                o.copy_from_slice(&[255 - c, 255 - m, 255 - y, 255 - planes[3][i]]);
            }
            (Layout::Cmyk, out)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::idct::{idct_islow, idct_limit};
    use super::*;

    /// The IDCT of a DC-only block is flat at round(dc·q/8) + 128.
    #[test]
    fn dc_only_block_is_flat() {
        let mut coef = [0i16; 64];
        coef[0] = -3;
        let q = [16u16; 64];
        let mut out = [0u8; 64];
        idct_islow(&coef, &q, &mut out, 8);
        assert!(out.iter().all(|&v| v == 122), "{out:?}");
    }

    #[test]
    fn range_limit_matches_libjpeg_table() {
        // libjpeg's table: [0,127] → x+128, [128,511] → 255, [512,895] → 0, [896,1023] → x-896.
        for x in 0..1024i64 {
            let want = match x {
                0..=127 => x + 128,
                128..=511 => 255,
                512..=895 => 0,
                _ => x - 896,
            };
            assert_eq!(idct_limit(x) as i64, want, "{x}");
            assert_eq!(idct_limit(x - 4096) as i64, want, "{x} wrapped");
        }
    }

    #[test]
    fn ycc_tables_match_libjpeg_constants() {
        let t = YccTables::new();
        // FIX(1.402)=91881, FIX(1.772)=116130, FIX(0.71414)=46802, FIX(0.34414)=22554.
        assert_eq!(t.cr_r[255], ((91881i64 * 127 + 32768) >> 16) as i32);
        assert_eq!(t.cb_b[0], ((116130i64 * -128 + 32768) >> 16) as i32);
        assert_eq!(t.cr_g[0], 46802 * 128);
        assert_eq!(t.cb_g[255], -22554 * 127 + 32768);
    }

    #[test]
    fn garbage_gives_errors_not_panics() {
        assert!(decode(b"").is_err());
        assert!(decode(&[0xFF, 0xD8]).is_err());
        assert!(decode(&[0xFF, 0xD8, 0xFF, 0xD9]).is_err());
        let mut seeded = 12345u64;
        for len in [3usize, 10, 50, 300] {
            for _ in 0..200 {
                let mut b = vec![0xFF, 0xD8];
                for _ in 0..len {
                    seeded = seeded.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    b.push((seeded >> 56) as u8);
                }
                let _ = decode(&b);
            }
        }
    }
}
