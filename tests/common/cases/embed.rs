//! Embed family cases: row gather from fp16 and f32 tables.

use super::{e, R};
use crate::common::{assert_close, rand, Tol};
use ssv2a::ops::embed::reference as er;
use ssv2a::{Gpu, Tensor, Weight, WeightDtype};

pub async fn gather(gpu: &Gpu) -> R {
    for (rows, dim) in [(1usize, 1usize), (13, 7), (50, 768)] {
        let table = rand(1300 + dim as u64, rows * dim);
        for dtype in [WeightDtype::F16, WeightDtype::F32] {
            let w = Weight::from_f32(gpu, &table, [rows, dim], dtype).map_err(e)?;
            let ids: Vec<u32> = (0..9).map(|i| (i * 7 % rows) as u32).collect();
            let got = w.gather_rows(&ids).map_err(e)?.to_vec().await.map_err(e)?;
            let want: Vec<f32> = ids
                .iter()
                .flat_map(|&i| {
                    table[i as usize * dim..(i as usize + 1) * dim].iter().map(|&v| if dtype == WeightDtype::F16 { half::f16::from_f32(v).to_f32() } else { v })
                })
                .collect();
            assert_close(&format!("gather_rows {rows}x{dim} {dtype:?}"), &got, &want, Tol { abs: 0.0, rel: 0.0 })?;
            if w.gather_rows(&[rows as u32]).is_ok() {
                return Err("gather_rows accepted an out-of-range id".into());
            }
        }
    }
    Ok(())
}

/// Row gather from an f32 tensor (token permutations): odd row widths, repeats, any order,
/// more and fewer ids than rows, rank 3 (rows of [a, b]); out-of-range ids are errors.
pub async fn gather_tensor(gpu: &Gpu) -> R {
    for (shape, n_ids) in [(vec![1usize, 1usize], 3usize), (vec![13, 7], 13), (vec![300, 5], 1031), (vec![37, 3, 11], 20)] {
        let rows = shape[0];
        let dim: usize = shape[1..].iter().product();
        let x = rand(1400 + rows as u64, rows * dim);
        let t = Tensor::from_slice(gpu, &x, shape.clone()).map_err(e)?;
        let ids: Vec<u32> = (0..n_ids).map(|i| ((i * 7919 + 3) % rows) as u32).collect();
        let y = t.gather_rows(&ids).map_err(e)?;
        let mut want_shape = shape.clone();
        want_shape[0] = n_ids;
        if y.shape() != want_shape.as_slice() {
            return Err(format!("tensor gather_rows {shape:?}: shape {:?}, want {want_shape:?}", y.shape()));
        }
        assert_close(
            &format!("tensor gather_rows {shape:?} × {n_ids}"),
            &y.to_vec().await.map_err(e)?,
            &er::gather_rows(&x, dim, &ids),
            Tol { abs: 0.0, rel: 0.0 },
        )?;
        if t.gather_rows(&[rows as u32]).is_ok() {
            return Err("tensor gather_rows accepted an out-of-range id".into());
        }
    }
    Ok(())
}
