//! Dequantisation and libjpeg-turbo's accurate integer IDCT (`jidctint.c`), and block
//! smoothing of partially refined progressive files (`jdcoefct.c`).

use super::Component;

/// libjpeg's post-IDCT range limit: `table[x & 1023]` = clamp of the sign-extended 10-bit value
/// plus 128 (so values far out of range wrap as in libjpeg, for corrupt data).
#[inline]
pub(super) fn idct_limit(x: i64) -> u8 {
    let s = (((x & 1023) ^ 512) - 512) + 128;
    s.clamp(0, 255) as u8
}

/// `jpeg_idct_islow`: dequantise and inverse-DCT one block into `out` (stride `stride`).
pub(super) fn idct_islow(coef: &[i16], q: &[u16; 64], out: &mut [u8], stride: usize) {
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
pub(super) struct Plane {
    pub(super) data: Vec<u8>,
    pub(super) stride: usize,
    pub(super) dw: usize,
    pub(super) dh: usize,
}

impl Plane {
    pub(super) fn row(&self, y: usize) -> &[u8] {
        // Rows past the data replicate the last one (jdmainct.c set_bottom_pointers); callers
        // ask for row -1 as row 0 themselves.
        let y = y.min(self.dh - 1);
        &self.data[y * self.stride..y * self.stride + self.dw]
    }
}

pub(super) fn idct_component(c: &Component, smooth: Option<usize>) -> Plane {
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
pub(super) fn for_each_smoothed_block(c: &Component, q: &[u16; 64], imcu_rows: usize, ws: &mut [i16; 64], mut f: impl FnMut(usize, usize, &[i16; 64])) {
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
                let [[dc01, dc02, dc03, dc04, dc05], [dc06, dc07, dc08, dc09, dc10], [dc11, dc12, dc13, dc14, dc15], [dc16, dc17, dc18, dc19, dc20], [dc21, dc22, dc23, dc24, dc25]] =
                    d;
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
                    set(
                        1,
                        -dc01 - dc02 + dc04 + dc05 - 3 * dc06 + 13 * dc07 - 13 * dc09 + 3 * dc10 - 3 * dc11 + 38 * dc12 - 38 * dc14 + 3 * dc15 - 3 * dc16
                            + 13 * dc17
                            - 13 * dc19
                            + 3 * dc20
                            - dc21
                            - dc22
                            + dc24
                            + dc25,
                    );
                    set(
                        2,
                        -dc01 - 3 * dc02 - 3 * dc03 - 3 * dc04 - dc05 - dc06 + 13 * dc07 + 38 * dc08 + 13 * dc09 - dc10 + dc16
                            - 13 * dc17
                            - 38 * dc18
                            - 13 * dc19
                            + dc20
                            + dc21
                            + 3 * dc22
                            + 3 * dc23
                            + 3 * dc24
                            + dc25,
                    );
                    set(3, dc03 + 2 * dc07 + 7 * dc08 + 2 * dc09 - 5 * dc12 - 14 * dc13 - 5 * dc14 + 2 * dc17 + 7 * dc18 + 2 * dc19 + dc23);
                    set(4, -dc01 + dc05 + 9 * dc07 - 9 * dc09 - 9 * dc17 + 9 * dc19 + dc21 - dc25);
                    set(5, 2 * dc07 - 5 * dc08 + 2 * dc09 + dc11 + 7 * dc12 - 14 * dc13 + 7 * dc14 + dc15 + 2 * dc17 - 5 * dc18 + 2 * dc19);
                    set(6, dc07 - dc09 + 2 * dc12 - 2 * dc14 + dc17 - dc19);
                    set(7, dc07 - 3 * dc08 + dc09 - dc17 + 3 * dc18 - dc19);
                    set(8, dc07 - dc09 - 3 * dc12 + 3 * dc14 + dc17 - dc19);
                    set(9, dc07 + 2 * dc08 + dc09 - dc17 - 2 * dc18 - dc19);
                    let num = -2 * dc01 - 6 * dc02 - 8 * dc03 - 6 * dc04 - 2 * dc05 - 6 * dc06 + 6 * dc07 + 42 * dc08 + 6 * dc09 - 6 * dc10 - 8 * dc11
                        + 42 * dc12
                        + 152 * dc13
                        + 42 * dc14
                        - 8 * dc15
                        - 6 * dc16
                        + 6 * dc17
                        + 42 * dc18
                        + 6 * dc19
                        - 6 * dc20
                        - 2 * dc21
                        - 6 * dc22
                        - 8 * dc23
                        - 6 * dc24
                        - 2 * dc25;
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
