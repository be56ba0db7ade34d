//! Swin token bookkeeping for HTSAT (audioldm 0.1.1 `clap/open_clip/htsat.py`), as index lists
//! computed once at load: the GPU only gathers rows ([`crate::Tensor::gather_rows`]).
//!
//! Tokens of one image are in PatchEmbed's order, `t = y·W + x` on an H×W grid. A block with
//! window w and shift s attends within windows of `roll(x, (−s, −s))`: [`window_order`] lists,
//! for each row of the window-major layout (`window_partition`: window `wy·(W/w) + wx`, then
//! `iy·w + ix` inside it), the token it takes; [`inverse`] undoes it (`window_reverse` and the
//! roll back). [`attention_bias`] is the relative position bias plus the shifted windows' −100
//! mask, one additive [windows, heads, w², w²] tensor; [`merge_order`] is PatchMerging's
//! gather (`x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]`, concatenated).

/// Row `p` of the window-major layout takes token `order[p]` (grid `h × w_grid`, window `win`,
/// shift `shift`).
pub fn window_order(h: usize, w_grid: usize, win: usize, shift: usize) -> Vec<u32> {
    let (nwy, nwx) = (h / win, w_grid / win);
    let mut out = Vec::with_capacity(h * w_grid);
    for wy in 0..nwy {
        for wx in 0..nwx {
            for iy in 0..win {
                for ix in 0..win {
                    let y = (wy * win + iy + shift) % h;
                    let x = (wx * win + ix + shift) % w_grid;
                    out.push((y * w_grid + x) as u32);
                }
            }
        }
    }
    out
}

/// The inverse permutation: `inv[order[p]] = p`.
pub fn inverse(order: &[u32]) -> Vec<u32> {
    let mut inv = vec![0u32; order.len()];
    for (p, &t) in order.iter().enumerate() {
        inv[t as usize] = p as u32;
    }
    inv
}

/// PatchMerging on an `h × w` grid: merged token `i·(w/2) + j` concatenates tokens
/// `(2i, 2j), (2i+1, 2j), (2i, 2j+1), (2i+1, 2j+1)`; gathering these rows of [h·w, C] gives
/// [h·w/4, 4C] row-major.
pub fn merge_order(h: usize, w: usize) -> Vec<u32> {
    let mut out = Vec::with_capacity(h * w);
    for i in 0..h / 2 {
        for j in 0..w / 2 {
            for (dy, dx) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                out.push(((2 * i + dy) * w + 2 * j + dx) as u32);
            }
        }
    }
    out
}

/// `WindowAttention.relative_position_index` for window `win`: [win², win²] row-major,
/// `(Δy + win − 1)·(2·win − 1) + (Δx + win − 1)`.
pub fn relative_position_index(win: usize) -> Vec<u32> {
    let t = win * win;
    let mut out = Vec::with_capacity(t * t);
    for i in 0..t {
        for j in 0..t {
            let dy = (i / win) as i64 - (j / win) as i64 + win as i64 - 1;
            let dx = (i % win) as i64 - (j % win) as i64 + win as i64 - 1;
            out.push((dy * (2 * win as i64 - 1) + dx) as u32);
        }
    }
    out
}

/// `SwinTransformerBlock.attn_mask` for a shifted block: [windows, win², win²], 0 between
/// tokens of the same region of the rolled image and −100 between different ones.
pub fn shift_mask(h: usize, w_grid: usize, win: usize, shift: usize) -> Vec<f32> {
    let region = |c: usize, n: usize| -> usize {
        if c < n - win {
            0
        } else if c < n - shift {
            1
        } else {
            2
        }
    };
    let (nwy, nwx, t) = (h / win, w_grid / win, win * win);
    let mut out = Vec::with_capacity(nwy * nwx * t * t);
    for wy in 0..nwy {
        for wx in 0..nwx {
            let labels: Vec<usize> = (0..t).map(|k| region(wy * win + k / win, h) * 3 + region(wx * win + k % win, w_grid)).collect();
            for &a in &labels {
                for &b in &labels {
                    out.push(if a == b { 0.0 } else { -100.0 });
                }
            }
        }
    }
    out
}

/// The additive attention bias of one block: the relative position bias from `table`
/// ([(2·win − 1)², heads] row-major) as [heads, win², win²], plus, with a shift, the mask of
/// [`shift_mask`] per window: [windows, heads, win², win²]. Without a shift: [heads, win², win²].
pub fn attention_bias(table: &[f32], heads: usize, h: usize, w_grid: usize, win: usize, shift: usize) -> Vec<f32> {
    let t = win * win;
    let index = relative_position_index(win);
    let mut bias = vec![0f32; heads * t * t];
    for hd in 0..heads {
        for (k, &r) in index.iter().enumerate() {
            bias[hd * t * t + k] = table[r as usize * heads + hd];
        }
    }
    if shift == 0 {
        return bias;
    }
    let mask = shift_mask(h, w_grid, win, shift);
    let windows = (h / win) * (w_grid / win);
    let mut out = Vec::with_capacity(windows * heads * t * t);
    for wdw in 0..windows {
        let m = &mask[wdw * t * t..(wdw + 1) * t * t];
        for hd in 0..heads {
            out.extend(bias[hd * t * t..(hd + 1) * t * t].iter().zip(m).map(|(b, m)| b + m));
        }
    }
    out
}

/// `order` for one image of `n` tokens repeated over `batch` images (image `b`'s rows offset by
/// `b·n`).
pub fn batched(order: &[u32], n: usize, batch: usize) -> Vec<u32> {
    (0..batch).flat_map(|b| order.iter().map(move |&i| i + (b * n) as u32)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The window order against a literal roll + partition of a labelled grid.
    #[test]
    fn window_order_is_roll_then_partition() {
        let (h, w, win, s) = (8, 8, 4, 2);
        let order = window_order(h, w, win, s);
        // Token (y, x) lands at rolled (y − s, x − s); window (wy, wx), inside (iy, ix).
        for y in 0..h {
            for x in 0..w {
                let (ry, rx) = ((y + h - s) % h, (x + w - s) % w);
                let p = ((ry / win) * (w / win) + rx / win) * win * win + (ry % win) * win + rx % win;
                assert_eq!(order[p], (y * w + x) as u32);
            }
        }
        let inv = inverse(&order);
        assert!((0..64).all(|t| order[inv[t] as usize] == t as u32));
    }

    #[test]
    fn merge_order_matches_strided_slices() {
        let m = merge_order(4, 6);
        // merged (0, 1): tokens (0,2), (1,2), (0,3), (1,3).
        assert_eq!(&m[4..8], &[2, 8, 3, 9]);
        assert_eq!(m.len(), 24);
    }

    #[test]
    fn mask_regions() {
        // Unshifted-equivalent corner window (0, 0) of an 8×8 grid with window 4, shift 2 is
        // one region; the last window mixes all four.
        let m = shift_mask(8, 8, 4, 2);
        assert!(m[..256].iter().all(|&v| v == 0.0));
        let last = &m[3 * 256..];
        assert_eq!(last.iter().filter(|&&v| v == 0.0).count(), 4 * 16, "four regions of four tokens each");
    }
}
