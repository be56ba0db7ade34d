//! Colour conversion with libjpeg's 16-bit fixed-point YCbCr tables (`jdcolor.c`).

/// libjpeg's YCbCr → RGB tables (`build_ycc_rgb_table`).
pub(super) struct YccTables {
    pub(super) cr_r: [i32; 256],
    pub(super) cb_b: [i32; 256],
    pub(super) cr_g: [i64; 256],
    pub(super) cb_g: [i64; 256],
}

impl YccTables {
    pub(super) fn new() -> YccTables {
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
    pub(super) fn rgb(&self, y: u8, cb: u8, cr: u8) -> [i32; 3] {
        let y = y as i32;
        let (cb, cr) = (cb as usize, cr as usize);
        [y + self.cr_r[cr], y + ((self.cb_g[cb] + self.cr_g[cr]) >> 16) as i32, y + self.cb_b[cb]]
    }
}

pub(super) fn clamp8(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}
