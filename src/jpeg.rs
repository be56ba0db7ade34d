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

use crate::image::MAX_PIXELS;

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
    pub fn into_picture(self) -> crate::Result<crate::image::Picture> {
        use crate::image::{CmykImage, Picture, RgbImage};
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
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21,
    28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61,
    54, 47, 55, 62, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
];

/// Decode a JPEG file's bytes. Errors are one line, without the file name (the caller adds it).
pub fn decode(bytes: &[u8]) -> Result<Jpeg, String> {
    Decoder::new(bytes)?.run()
}

struct Huffman {
    /// 9-bit lookahead: (code length, symbol); length 0 = longer code.
    fast: Vec<(u8, u8)>,
    /// Largest code of each length 1..=16 (-1: none), and the offset from a code to its symbol.
    maxcode: [i32; 18],
    valoffset: [i32; 17],
    vals: Vec<u8>,
}

const FAST_BITS: u32 = 9;

impl Huffman {
    fn new(counts: &[u8; 16], vals: Vec<u8>, dc: bool) -> Result<Huffman, String> {
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        if total > 256 || total != vals.len() {
            return Err("bad Huffman table".into());
        }
        if dc && vals.iter().any(|&v| v > 15) {
            return Err("bad Huffman table (DC symbol above 15)".into());
        }
        let mut maxcode = [-1i32; 18];
        let mut valoffset = [0i32; 17];
        let mut fast = vec![(0u8, 0u8); 1 << FAST_BITS];
        let last = (1..=16usize).rev().find(|&l| counts[l - 1] > 0).unwrap_or(0);
        let mut code: i32 = 0;
        let mut k = 0usize;
        for len in 1..=16usize {
            let n = counts[len - 1] as usize;
            if n > 0 {
                valoffset[len] = k as i32 - code;
                for _ in 0..n {
                    if len as u32 <= FAST_BITS {
                        let shift = FAST_BITS - len as u32;
                        let base = (code as usize) << shift;
                        for e in fast.iter_mut().skip(base).take(1 << shift) {
                            *e = (len as u8, vals[k]);
                        }
                    }
                    code += 1;
                    k += 1;
                }
                maxcode[len] = code - 1;
            }
            // jdhuff.c's check: the codes of each length up to the longest must fit in `len`
            // bits, the all-ones code excluded.
            if len <= last && code >= (1 << len) {
                return Err("bad Huffman table (code space overflow)".into());
            }
            code <<= 1;
        }
        maxcode[17] = i32::MAX;
        Ok(Huffman { fast, maxcode, valoffset, vals })
    }
}

/// Entropy-coded data reader: unstuffs 0xFF00, stops at markers and then supplies zero bits
/// (as libjpeg does at the end of a segment).
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    n: u32,
    /// At a marker: `pos` is its 0xFF.
    marker: bool,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8], pos: usize) -> Bits<'a> {
        Bits { data, pos, acc: 0, n: 0, marker: false }
    }

    fn fill(&mut self) {
        while self.n <= 56 {
            let mut b = 0u8;
            if !self.marker {
                match self.data.get(self.pos) {
                    None => self.marker = true,
                    Some(&0xFF) => {
                        let mut p = self.pos + 1;
                        while self.data.get(p) == Some(&0xFF) {
                            p += 1;
                        }
                        match self.data.get(p) {
                            Some(&0) => {
                                b = 0xFF;
                                self.pos = p + 1;
                            }
                            _ => {
                                self.pos = p - 1;
                                self.marker = true;
                            }
                        }
                    }
                    Some(&v) => {
                        b = v;
                        self.pos += 1;
                    }
                }
            }
            self.acc |= (b as u64) << (56 - self.n);
            self.n += 8;
        }
    }

    #[inline]
    fn peek(&mut self, k: u32) -> u32 {
        if self.n < k {
            self.fill();
        }
        (self.acc >> (64 - k)) as u32
    }

    #[inline]
    fn consume(&mut self, k: u32) {
        self.acc <<= k;
        self.n -= k;
    }

    #[inline]
    fn bits(&mut self, k: u32) -> u32 {
        if k == 0 {
            return 0;
        }
        let v = self.peek(k);
        self.consume(k);
        v
    }

    #[inline]
    fn bit(&mut self) -> bool {
        self.bits(1) == 1
    }

    fn huff(&mut self, t: &Huffman) -> Result<u8, String> {
        let p = self.peek(16);
        let (len, sym) = t.fast[(p >> (16 - FAST_BITS)) as usize];
        if len > 0 {
            self.consume(len as u32);
            return Ok(sym);
        }
        for len in FAST_BITS as usize + 1..=16 {
            let code = (p >> (16 - len)) as i32;
            if code <= t.maxcode[len] {
                self.consume(len as u32);
                let i = (code + t.valoffset[len]) as usize;
                return t.vals.get(i).copied().ok_or_else(|| "corrupt JPEG data (bad Huffman code)".to_string());
            }
        }
        Err("corrupt JPEG data (bad Huffman code)".into())
    }

    /// Drop the bits left in the buffer (restart, end of scan: they are padding) and return
    /// where reading stopped. The reader never reads past a marker, so whatever lies between
    /// this position and the next marker is padding or garbage, which libjpeg skips too.
    fn reset(&mut self) -> usize {
        self.acc = 0;
        self.n = 0;
        self.marker = false;
        self.pos
    }
}

/// The next marker at or after `p` (skipping fill bytes, stuffed zeros and garbage): the index
/// just past its code byte, and the code.
fn find_marker(data: &[u8], mut p: usize) -> Option<(usize, u8)> {
    loop {
        while p < data.len() && data[p] != 0xFF {
            p += 1;
        }
        while p < data.len() && data[p] == 0xFF {
            p += 1;
        }
        match data.get(p) {
            None => return None,
            Some(&0) => p += 1,
            Some(&m) => return Some((p + 1, m)),
        }
    }
}

/// JPEG's sign extension of an `s`-bit magnitude category value (`HUFF_EXTEND`).
#[inline]
fn extend(v: u32, s: u32) -> i32 {
    if s == 0 {
        0
    } else if v < (1 << (s - 1)) {
        v as i32 - (1 << s) + 1
    } else {
        v as i32
    }
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
        Ok(Decoder { data, pos: 2, quant: [None; 4], dc: [None, None, None, None], ac: [None, None, None, None], frame: None, restart_interval: 0, jfif: false, adobe: None })
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
        let tables: Vec<(Option<&Huffman>, Option<&Huffman>)> = sel.iter().map(|&(_, td, ta)| (self.dc.get(td).and_then(Option::as_ref), self.ac.get(ta).and_then(Option::as_ref))).collect();
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

fn decode_block(bits: &mut Bits, block: &mut [i16], dc: &Huffman, ac: &Huffman, pred: &mut i32) -> Result<(), String> {
    let s = bits.huff(dc)? as u32;
    let diff = extend(bits.bits(s), s);
    *pred = pred.wrapping_add(diff);
    block[0] = *pred as i16;
    ac_run_length(bits, block, ac, 1, 63, 0, None)
}

fn ac_first(bits: &mut Bits, block: &mut [i16], ac: &Huffman, ss: usize, se: usize, al: u32, eobrun: &mut u32) -> Result<(), String> {
    if *eobrun > 0 {
        *eobrun -= 1;
        return Ok(());
    }
    ac_run_length(bits, block, ac, ss, se, al, Some(eobrun))
}

/// The AC run/size loop over zig-zag positions ss..=se, values shifted left by `al`. An s = 0
/// symbol other than ZRL (r = 15) ends the block; in a sequential scan (`eobrun` None, jdhuff)
/// that is all, in a progressive first AC scan (jdphuff) EOBr also starts an end-of-band run of
/// 2^r + r more bits − 1 further blocks. The two readers differ only there, also on symbols a
/// valid file never holds (r in 1..=14 with s = 0 in a sequential scan).
fn ac_run_length(bits: &mut Bits, block: &mut [i16], ac: &Huffman, ss: usize, se: usize, al: u32, mut eobrun: Option<&mut u32>) -> Result<(), String> {
    let mut k = ss;
    while k <= se {
        let rs = bits.huff(ac)?;
        let (r, s) = ((rs >> 4) as u32, (rs & 15) as u32);
        if s != 0 {
            k += r as usize;
            let v = extend(bits.bits(s), s);
            block[NATURAL[k.min(79)]] = (v as i64).wrapping_shl(al) as i16;
        } else if r == 15 {
            k += 15;
        } else {
            if let Some(run) = eobrun.as_deref_mut() {
                *run = (1u32 << r) + bits.bits(r) - 1;
            }
            break;
        }
        k += 1;
    }
    Ok(())
}

fn ac_refine(bits: &mut Bits, block: &mut [i16], ac: &Huffman, ss: usize, se: usize, al: u32, eobrun: &mut u32) -> Result<(), String> {
    let p1 = (1i32 << al) as i16;
    let m1 = ((-1i32) << al) as i16;
    let mut k = ss;
    let refine = |bits: &mut Bits, c: &mut i16| {
        if bits.bit() && (*c & p1) == 0 {
            *c = if *c >= 0 { c.wrapping_add(p1) } else { c.wrapping_add(m1) };
        }
    };
    if *eobrun == 0 {
        while k <= se {
            let rs = bits.huff(ac)?;
            let (mut r, s) = ((rs >> 4) as i32, (rs & 15) as u32);
            let mut val = 0i16;
            if s != 0 {
                // s != 1 is corrupt data; libjpeg warns and goes on as if it were 1.
                val = if bits.bit() { p1 } else { m1 };
            } else if r != 15 {
                *eobrun = (1u32 << r) + bits.bits(r as u32);
                break;
            }
            loop {
                let c = &mut block[NATURAL[k.min(79)]];
                if *c != 0 {
                    refine(bits, c);
                } else {
                    r -= 1;
                    if r < 0 {
                        break;
                    }
                }
                k += 1;
                if k > se {
                    break;
                }
            }
            if val != 0 {
                block[NATURAL[k.min(79)]] = val;
            }
            k += 1;
        }
    }
    if *eobrun > 0 {
        while k <= se {
            let c = &mut block[NATURAL[k]];
            if *c != 0 {
                refine(bits, c);
            }
            k += 1;
        }
        *eobrun -= 1;
    }
    Ok(())
}

/// libjpeg's post-IDCT range limit: `table[x & 1023]` = clamp of the sign-extended 10-bit value
/// plus 128 (so values far out of range wrap as in libjpeg, for corrupt data).
#[inline]
fn idct_limit(x: i64) -> u8 {
    let s = (((x & 1023) ^ 512) - 512) + 128;
    s.clamp(0, 255) as u8
}

/// `jpeg_idct_islow`: dequantise and inverse-DCT one block into `out` (stride `stride`).
fn idct_islow(coef: &[i16], q: &[u16; 64], out: &mut [u8], stride: usize) {
    const CB: u32 = 13;
    const P1: u32 = 2;
    const F0_298: i64 = 2446;
    const F0_390: i64 = 3196;
    const F0_541: i64 = 4433;
    const F0_765: i64 = 6270;
    const F0_899: i64 = 7373;
    const F1_175: i64 = 9633;
    const F1_501: i64 = 12299;
    const F1_847: i64 = 15137;
    const F1_961: i64 = 16069;
    const F2_053: i64 = 16819;
    const F2_562: i64 = 20995;
    const F3_072: i64 = 25172;
    let descale = |x: i64, n: u32| (x + (1i64 << (n - 1))) >> n;
    // The odd part and even part shared by both passes; inputs in JLONG (i64) as libjpeg on LP64.
    #[inline(always)]
    fn butterfly(d: [i64; 8]) -> ([i64; 4], [i64; 4]) {
        let (z2, z3) = (d[2], d[6]);
        let z1 = (z2 + z3) * F0_541;
        let tmp2 = z1 + z3 * -F1_847;
        let tmp3 = z1 + z2 * F0_765;
        let tmp0 = (d[0] + d[4]) << CB;
        let tmp1 = (d[0] - d[4]) << CB;
        let even = [tmp0 + tmp3, tmp1 + tmp2, tmp1 - tmp2, tmp0 - tmp3];
        let (t0, t1, t2, t3) = (d[7], d[5], d[3], d[1]);
        let z1 = t0 + t3;
        let z2 = t1 + t2;
        let z3 = t0 + t2;
        let z4 = t1 + t3;
        let z5 = (z3 + z4) * F1_175;
        let (t0, t1, t2, t3) = (t0 * F0_298, t1 * F2_053, t2 * F3_072, t3 * F1_501);
        let (z1, z2) = (z1 * -F0_899, z2 * -F2_562);
        let (z3, z4) = (z3 * -F1_961 + z5, z4 * -F0_390 + z5);
        let odd = [t0 + z1 + z3, t1 + z2 + z4, t2 + z2 + z3, t3 + z1 + z4];
        (even, odd)
    }
    let mut ws = [0i32; 64];
    for col in 0..8 {
        let deq = |r: usize| (coef[r * 8 + col] as i32).wrapping_mul(q[r * 8 + col] as i32);
        if (1..8).all(|r| coef[r * 8 + col] == 0) {
            let dc = deq(0).wrapping_shl(P1);
            for r in 0..8 {
                ws[r * 8 + col] = dc;
            }
            continue;
        }
        let d: [i64; 8] = std::array::from_fn(|r| deq(r) as i64);
        let (e, o) = butterfly(d);
        let n = CB - P1;
        ws[col] = descale(e[0] + o[3], n) as i32;
        ws[7 * 8 + col] = descale(e[0] - o[3], n) as i32;
        ws[8 + col] = descale(e[1] + o[2], n) as i32;
        ws[6 * 8 + col] = descale(e[1] - o[2], n) as i32;
        ws[2 * 8 + col] = descale(e[2] + o[1], n) as i32;
        ws[5 * 8 + col] = descale(e[2] - o[1], n) as i32;
        ws[3 * 8 + col] = descale(e[3] + o[0], n) as i32;
        ws[4 * 8 + col] = descale(e[3] - o[0], n) as i32;
    }
    for row in 0..8 {
        let w = &ws[row * 8..row * 8 + 8];
        let o = &mut out[row * stride..row * stride + 8];
        if w[1..].iter().all(|&v| v == 0) {
            o.fill(idct_limit(descale(w[0] as i64, P1 + 3)));
            continue;
        }
        let d: [i64; 8] = std::array::from_fn(|i| w[i] as i64);
        let (e, od) = butterfly(d);
        let n = CB + P1 + 3;
        o[0] = idct_limit(descale(e[0] + od[3], n));
        o[7] = idct_limit(descale(e[0] - od[3], n));
        o[1] = idct_limit(descale(e[1] + od[2], n));
        o[6] = idct_limit(descale(e[1] - od[2], n));
        o[2] = idct_limit(descale(e[2] + od[1], n));
        o[5] = idct_limit(descale(e[2] - od[1], n));
        o[3] = idct_limit(descale(e[3] + od[0], n));
        o[4] = idct_limit(descale(e[3] - od[0], n));
    }
}

/// A component's samples after the IDCT: `bw*8` × `bh*8`, of which `dw` × `dh` are image data.
struct Plane {
    data: Vec<u8>,
    stride: usize,
    dw: usize,
    dh: usize,
}

impl Plane {
    fn row(&self, y: usize) -> &[u8] {
        // Rows past the data replicate the last one (jdmainct.c set_bottom_pointers); callers
        // ask for row -1 as row 0 themselves.
        let y = y.min(self.dh - 1);
        &self.data[y * self.stride..y * self.stride + self.dw]
    }
}

fn idct_component(c: &Component, smooth: Option<usize>) -> Plane {
    let stride = c.bw * 8;
    let mut data = vec![0u8; stride * c.bh * 8];
    let q = c.quant.unwrap_or([0; 64]);
    let (wb, hb) = (c.dw.div_ceil(8), c.dh.div_ceil(8));
    // Only blocks that hold image data (libjpeg skips the MCU padding too).
    match smooth {
        None => {
            for by in 0..hb {
                for bx in 0..wb {
                    let off = (by * c.bw + bx) * 64;
                    idct_islow(&c.coefs[off..off + 64], &q, &mut data[by * 8 * stride + bx * 8..], stride);
                }
            }
        }
        Some(imcu_rows) => {
            let mut ws = [0i16; 64];
            for_each_smoothed_block(c, &q, imcu_rows, &mut ws, |by, bx, ws| {
                idct_islow(ws, &q, &mut data[by * 8 * stride + bx * 8..], stride);
            });
        }
    }
    Plane { data, stride, dw: c.dw, dh: c.dh }
}

/// libjpeg-turbo's block smoothing (`jdcoefct.c` decompress_smooth_data) for progressive files
/// whose first AC coefficients are not fully refined: zero coefficients among AC 1..9 that are
/// still imprecise are predicted from the DC values of the 5×5 neighbouring blocks (and, in a
/// DC-only file, the DC itself is smoothed). Calls `f(block row, block column, coefficients)`
/// for every block that holds image data, in libjpeg's order and with its edge rules (including
/// its row numbering in a partial last iMCU row).
fn for_each_smoothed_block(c: &Component, q: &[u16; 64], imcu_rows: usize, ws: &mut [i16; 64], mut f: impl FnMut(usize, usize, &[i16; 64])) {
    let (wb, hb, v) = (c.dw.div_ceil(8), c.dh.div_ceil(8), c.v);
    let bits = &c.coef_bits;
    let change_dc = bits[1..10].iter().all(|&b| b == -1);
    let dc = |row: usize, col: isize| -> i64 { c.coefs[(row * c.bw + col.clamp(0, wb as isize - 1) as usize) * 64] as i64 };
    // (coefficient index in zig-zag order, natural position); 6..9 only when smoothing the DC.
    const POS: [usize; 10] = [0, 1, 8, 16, 9, 2, 3, 10, 17, 24];
    let qv = |k: usize| q[POS[k]] as i64;
    for imcu in 0..imcu_rows {
        let block_rows = if imcu + 1 < imcu_rows {
            v
        } else {
            match hb % v {
                0 => v,
                r => r,
            }
        };
        let image_block_rows = block_rows * imcu_rows;
        for br in 0..block_rows {
            let row = imcu * v + br;
            if row >= hb {
                continue;
            }
            let ibr = imcu * block_rows + br;
            let prev = if ibr > 0 { row - 1 } else { row };
            let prev2 = if ibr > 1 { row - 2 } else { prev };
            let next = if ibr + 1 < image_block_rows { row + 1 } else { row };
            let next2 = if ibr + 2 < image_block_rows { row + 2 } else { next };
            let rows = [prev2, prev, row, next, next2];
            for bx in 0..wb {
                // d[r][k]: DC of the block at row offset r-2, column offset k-2 (DC01..DC25).
                let mut d = [[0i64; 5]; 5];
                for (r, &rr) in rows.iter().enumerate() {
                    for (k, e) in d[r].iter_mut().enumerate() {
                        *e = dc(rr, bx as isize + k as isize - 2);
                    }
                }
                let [[dc01, dc02, dc03, dc04, dc05], [dc06, dc07, dc08, dc09, dc10], [dc11, dc12, dc13, dc14, dc15], [dc16, dc17, dc18, dc19, dc20], [dc21, dc22, dc23, dc24, dc25]] = d;
                let off = (row * c.bw + bx) * 64;
                ws.copy_from_slice(&c.coefs[off..off + 64]);
                let q00 = qv(0);
                let predict = |num: i64, qk: i64, al: Option<i32>| -> i16 {
                    let mut pred = ((qk << 7) + num.abs()) / (qk << 8);
                    if let Some(al) = al.filter(|&a| a > 0) {
                        if pred >= (1i64 << al) {
                            pred = (1i64 << al) - 1;
                        }
                    }
                    (if num >= 0 { pred } else { -pred }) as i16
                };
                let mut set = |k: usize, num: i64| {
                    let al = bits[k];
                    if al != 0 && ws[POS[k]] == 0 {
                        ws[POS[k]] = predict(q00 * num, qv(k), Some(al));
                    }
                };
                if change_dc {
                    set(1, -dc01 - dc02 + dc04 + dc05 - 3 * dc06 + 13 * dc07 - 13 * dc09 + 3 * dc10 - 3 * dc11 + 38 * dc12 - 38 * dc14 + 3 * dc15 - 3 * dc16 + 13 * dc17 - 13 * dc19 + 3 * dc20 - dc21 - dc22 + dc24 + dc25);
                    set(2, -dc01 - 3 * dc02 - 3 * dc03 - 3 * dc04 - dc05 - dc06 + 13 * dc07 + 38 * dc08 + 13 * dc09 - dc10 + dc16 - 13 * dc17 - 38 * dc18 - 13 * dc19 + dc20 + dc21 + 3 * dc22 + 3 * dc23 + 3 * dc24 + dc25);
                    set(3, dc03 + 2 * dc07 + 7 * dc08 + 2 * dc09 - 5 * dc12 - 14 * dc13 - 5 * dc14 + 2 * dc17 + 7 * dc18 + 2 * dc19 + dc23);
                    set(4, -dc01 + dc05 + 9 * dc07 - 9 * dc09 - 9 * dc17 + 9 * dc19 + dc21 - dc25);
                    set(5, 2 * dc07 - 5 * dc08 + 2 * dc09 + dc11 + 7 * dc12 - 14 * dc13 + 7 * dc14 + dc15 + 2 * dc17 - 5 * dc18 + 2 * dc19);
                    set(6, dc07 - dc09 + 2 * dc12 - 2 * dc14 + dc17 - dc19);
                    set(7, dc07 - 3 * dc08 + dc09 - dc17 + 3 * dc18 - dc19);
                    set(8, dc07 - dc09 - 3 * dc12 + 3 * dc14 + dc17 - dc19);
                    set(9, dc07 + 2 * dc08 + dc09 - dc17 - 2 * dc18 - dc19);
                    let num = -2 * dc01 - 6 * dc02 - 8 * dc03 - 6 * dc04 - 2 * dc05 - 6 * dc06 + 6 * dc07 + 42 * dc08 + 6 * dc09 - 6 * dc10 - 8 * dc11 + 42 * dc12 + 152 * dc13 + 42 * dc14 - 8 * dc15 - 6 * dc16 + 6 * dc17 + 42 * dc18 + 6 * dc19 - 6 * dc20 - 2 * dc21 - 6 * dc22 - 8 * dc23 - 6 * dc24 - 2 * dc25;
                    ws[0] = predict(q00 * num, q00, None);
                } else {
                    set(1, -7 * dc11 + 50 * dc12 - 50 * dc14 + 7 * dc15);
                    set(2, -7 * dc03 + 50 * dc08 - 50 * dc18 + 7 * dc23);
                    set(3, -dc03 + 13 * dc08 - 24 * dc13 + 13 * dc18 - dc23);
                    set(4, dc10 + dc16 - 10 * dc17 + 10 * dc19 - dc02 - dc20 + dc22 - dc24 + dc04 - dc06 + 10 * dc07 - 10 * dc09);
                    set(5, -dc11 + 13 * dc12 - 24 * dc13 + 13 * dc14 - dc15);
                }
                f(row, bx, ws);
            }
        }
    }
}

/// Upsample a component to `width` × `height` as libjpeg-turbo's `jdsample.c` selects.
fn upsample(p: &Plane, h: usize, v: usize, maxh: usize, maxv: usize, width: usize, height: usize) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; width * height];
    let fancy_h = p.dw > 2;
    if h == maxh && v == maxv {
        for y in 0..height {
            out[y * width..(y + 1) * width].copy_from_slice(&p.row(y)[..width]);
        }
    } else if h * 2 == maxh && v == maxv && fancy_h {
        // h2v1_fancy_upsample
        let mut tmp = vec![0u8; 2 * p.dw];
        for y in 0..height {
            let r = p.row(y);
            let n = p.dw;
            tmp[0] = r[0];
            tmp[1] = ((r[0] as u32 * 3 + r[1] as u32 + 2) >> 2) as u8;
            for c in 1..n - 1 {
                let v3 = r[c] as u32 * 3;
                tmp[2 * c] = ((v3 + r[c - 1] as u32 + 1) >> 2) as u8;
                tmp[2 * c + 1] = ((v3 + r[c + 1] as u32 + 2) >> 2) as u8;
            }
            tmp[2 * n - 2] = ((r[n - 1] as u32 * 3 + r[n - 2] as u32 + 1) >> 2) as u8;
            tmp[2 * n - 1] = r[n - 1];
            out[y * width..(y + 1) * width].copy_from_slice(&tmp[..width]);
        }
    } else if h == maxh && v * 2 == maxv {
        // h1v2_fancy_upsample
        for y in 0..height {
            let (inrow, below) = (y / 2, y % 2 == 1);
            let near = p.row(inrow);
            let (far, bias) = if below { (p.row(inrow + 1), 2) } else { (p.row(inrow.saturating_sub(1)), 1) };
            for x in 0..width {
                out[y * width + x] = ((near[x] as u32 * 3 + far[x] as u32 + bias) >> 2) as u8;
            }
        }
    } else if h * 2 == maxh && v * 2 == maxv && fancy_h {
        // h2v2_fancy_upsample
        let n = p.dw;
        let mut sum = vec![0u32; n];
        let mut tmp = vec![0u8; 2 * n];
        for y in 0..height {
            let (inrow, below) = (y / 2, y % 2 == 1);
            let near = p.row(inrow);
            let far = if below { p.row(inrow + 1) } else { p.row(inrow.saturating_sub(1)) };
            for c in 0..n {
                sum[c] = near[c] as u32 * 3 + far[c] as u32;
            }
            tmp[0] = ((sum[0] * 4 + 8) >> 4) as u8;
            tmp[1] = ((sum[0] * 3 + sum[1] + 7) >> 4) as u8;
            for c in 1..n - 1 {
                tmp[2 * c] = ((sum[c] * 3 + sum[c - 1] + 8) >> 4) as u8;
                tmp[2 * c + 1] = ((sum[c] * 3 + sum[c + 1] + 7) >> 4) as u8;
            }
            tmp[2 * n - 2] = ((sum[n - 1] * 3 + sum[n - 2] + 8) >> 4) as u8;
            tmp[2 * n - 1] = ((sum[n - 1] * 4 + 7) >> 4) as u8;
            out[y * width..(y + 1) * width].copy_from_slice(&tmp[..width]);
        }
    } else if maxh.is_multiple_of(h) && maxv.is_multiple_of(v) {
        // h2v1_upsample / h2v2_upsample / int_upsample: replication.
        let (eh, ev) = (maxh / h, maxv / v);
        for y in 0..height {
            let r = p.row(y / ev);
            for x in 0..width {
                out[y * width + x] = r[x / eh];
            }
        }
    } else {
        return Err(format!("fractional chroma subsampling ({h}×{v} of {maxh}×{maxv}) is not supported, as in libjpeg"));
    }
    Ok(out)
}

/// libjpeg's YCbCr → RGB tables (`build_ycc_rgb_table`).
struct YccTables {
    cr_r: [i32; 256],
    cb_b: [i32; 256],
    cr_g: [i64; 256],
    cb_g: [i64; 256],
}

impl YccTables {
    fn new() -> YccTables {
        let fix = |x: f64| (x * 65536.0 + 0.5) as i64;
        let mut t = YccTables { cr_r: [0; 256], cb_b: [0; 256], cr_g: [0; 256], cb_g: [0; 256] };
        for i in 0..256 {
            let x = i as i64 - 128;
            t.cr_r[i] = ((fix(1.40200) * x + 32768) >> 16) as i32;
            t.cb_b[i] = ((fix(1.77200) * x + 32768) >> 16) as i32;
            t.cr_g[i] = -fix(0.71414) * x;
            t.cb_g[i] = -fix(0.34414) * x + 32768;
        }
        t
    }

    #[inline]
    fn rgb(&self, y: u8, cb: u8, cr: u8) -> [i32; 3] {
        let y = y as i32;
        let (cb, cr) = (cb as usize, cr as usize);
        [y + self.cr_r[cr], y + ((self.cb_g[cb] + self.cr_g[cr]) >> 16) as i32, y + self.cb_b[cb]]
    }
}

fn clamp8(v: i32) -> u8 {
    v.clamp(0, 255) as u8
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
