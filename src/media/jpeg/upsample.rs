//! Chroma upsampling as libjpeg-turbo's `jdsample.c` selects it (fancy triangular h2v1, h1v2,
//! h2v2; replication otherwise), with its edge replication.

use super::idct::Plane;

/// Upsample a component to `width` × `height` as libjpeg-turbo's `jdsample.c` selects.
pub(super) fn upsample(p: &Plane, h: usize, v: usize, maxh: usize, maxv: usize, width: usize, height: usize) -> Result<Vec<u8>, String> {
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
