//! Embed family cases: row gather from fp16 and f32 tables.

use super::{e, R};
use crate::common::{assert_close, rand, Tol};
use ssv2a::{Gpu, Weight, WeightDtype};

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
