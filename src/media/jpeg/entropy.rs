//! Entropy decoding: Huffman tables, the bit reader (unstuffing, markers) and the sequential
//! and progressive coefficient loops (`jdhuff.c`, `jdphuff.c`).

use super::NATURAL;

pub(super) struct Huffman {
    /// 9-bit lookahead: (code length, symbol); length 0 = longer code.
    pub(super) fast: Vec<(u8, u8)>,
    /// Largest code of each length 1..=16 (-1: none), and the offset from a code to its symbol.
    pub(super) maxcode: [i32; 18],
    pub(super) valoffset: [i32; 17],
    pub(super) vals: Vec<u8>,
}

pub(super) const FAST_BITS: u32 = 9;

impl Huffman {
    pub(super) fn new(counts: &[u8; 16], vals: Vec<u8>, dc: bool) -> Result<Huffman, String> {
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
pub(super) struct Bits<'a> {
    pub(super) data: &'a [u8],
    pub(super) pos: usize,
    pub(super) acc: u64,
    pub(super) n: u32,
    /// At a marker: `pos` is its 0xFF.
    pub(super) marker: bool,
}

impl<'a> Bits<'a> {
    pub(super) fn new(data: &'a [u8], pos: usize) -> Bits<'a> {
        Bits { data, pos, acc: 0, n: 0, marker: false }
    }

    pub(super) fn fill(&mut self) {
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
    pub(super) fn peek(&mut self, k: u32) -> u32 {
        if self.n < k {
            self.fill();
        }
        (self.acc >> (64 - k)) as u32
    }

    #[inline]
    pub(super) fn consume(&mut self, k: u32) {
        self.acc <<= k;
        self.n -= k;
    }

    #[inline]
    pub(super) fn bits(&mut self, k: u32) -> u32 {
        if k == 0 {
            return 0;
        }
        let v = self.peek(k);
        self.consume(k);
        v
    }

    #[inline]
    pub(super) fn bit(&mut self) -> bool {
        self.bits(1) == 1
    }

    pub(super) fn huff(&mut self, t: &Huffman) -> Result<u8, String> {
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
    pub(super) fn reset(&mut self) -> usize {
        self.acc = 0;
        self.n = 0;
        self.marker = false;
        self.pos
    }
}

/// The next marker at or after `p` (skipping fill bytes, stuffed zeros and garbage): the index
/// just past its code byte, and the code.
pub(super) fn find_marker(data: &[u8], mut p: usize) -> Option<(usize, u8)> {
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
pub(super) fn extend(v: u32, s: u32) -> i32 {
    if s == 0 {
        0
    } else if v < (1 << (s - 1)) {
        v as i32 - (1 << s) + 1
    } else {
        v as i32
    }
}

pub(super) fn decode_block(bits: &mut Bits, block: &mut [i16], dc: &Huffman, ac: &Huffman, pred: &mut i32) -> Result<(), String> {
    let s = bits.huff(dc)? as u32;
    let diff = extend(bits.bits(s), s);
    *pred = pred.wrapping_add(diff);
    block[0] = *pred as i16;
    ac_run_length(bits, block, ac, 1, 63, 0, None)
}

pub(super) fn ac_first(bits: &mut Bits, block: &mut [i16], ac: &Huffman, ss: usize, se: usize, al: u32, eobrun: &mut u32) -> Result<(), String> {
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
pub(super) fn ac_run_length(
    bits: &mut Bits,
    block: &mut [i16],
    ac: &Huffman,
    ss: usize,
    se: usize,
    al: u32,
    mut eobrun: Option<&mut u32>,
) -> Result<(), String> {
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

pub(super) fn ac_refine(bits: &mut Bits, block: &mut [i16], ac: &Huffman, ss: usize, se: usize, al: u32, eobrun: &mut u32) -> Result<(), String> {
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
