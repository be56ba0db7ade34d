//! Norm family cases.

use super::{e, R};
use crate::common::{assert_close, rand, REDUCTION};
use ssv2a::ops::norm::reference as r;
use ssv2a::{Gpu, Tensor};

pub async fn layer_norm(gpu: &Gpu) -> R {
    for (i, (rows, c)) in [(1usize, 1usize), (1, 7), (5, 257), (66, 768), (3, 1031)].into_iter().enumerate() {
        let x: Vec<f32> = rand(500 + i as u64, rows * c).iter().map(|v| v * 3.0 + 1.5).collect();
        let g = rand(600 + i as u64, c);
        let b = rand(700 + i as u64, c);
        let t = Tensor::from_slice(gpu, &x, [rows, c]).map_err(e)?;
        let tg = Tensor::from_slice(gpu, &g, [c]).map_err(e)?;
        let tb = Tensor::from_slice(gpu, &b, [c]).map_err(e)?;
        let got = t.layer_norm(Some(&tg), Some(&tb), 1e-5).map_err(e)?.to_vec().await.map_err(e)?;
        assert_close(&format!("layer_norm [{rows},{c}]"), &got, &r::layer_norm(&x, c, Some(&g), Some(&b), 1e-5), REDUCTION)?;
        let got = t.layer_norm(Some(&tg), None, 1e-5).map_err(e)?.to_vec().await.map_err(e)?;
        assert_close(&format!("layer_norm gain-only [{rows},{c}]"), &got, &r::layer_norm(&x, c, Some(&g), None, 1e-5), REDUCTION)?;
    }
    let t = Tensor::from_slice(gpu, &[1.0; 6], [2, 3]).map_err(e)?;
    let g = Tensor::from_slice(gpu, &[1.0; 4], [4]).map_err(e)?;
    if t.layer_norm(Some(&g), None, 1e-5).is_ok() {
        return Err("layer_norm accepted a gamma of the wrong size".into());
    }
    Ok(())
}

pub async fn group_norm(gpu: &Gpu) -> R {
    // (n, c, h, w, groups)
    for (i, (n, c, h, w, g)) in
        [(1usize, 4usize, 1usize, 1usize, 2usize), (2, 6, 5, 7, 3), (1, 64, 17, 3, 32), (2, 32, 33, 16, 32), (1, 3, 10, 5, 1)].into_iter().enumerate()
    {
        let inner = h * w;
        let x: Vec<f32> = rand(800 + i as u64, n * c * inner).iter().map(|v| v * 2.0 - 0.7).collect();
        let gm = rand(900 + i as u64, c);
        let bt = rand(1000 + i as u64, c);
        let t = Tensor::from_slice(gpu, &x, [n, c, h, w]).map_err(e)?;
        let tg = Tensor::from_slice(gpu, &gm, [c]).map_err(e)?;
        let tb = Tensor::from_slice(gpu, &bt, [c]).map_err(e)?;
        for silu in [false, true] {
            for eps in [1e-5f32, 1e-6] {
                let got = t.group_norm(g, Some(&tg), Some(&tb), eps, silu).map_err(e)?.to_vec().await.map_err(e)?;
                let want = r::group_norm(&x, n, c, inner, g, Some(&gm), Some(&bt), eps as f64, silu);
                assert_close(&format!("group_norm [{n},{c},{h},{w}] g{g} silu={silu} eps={eps}"), &got, &want, REDUCTION)?;
            }
        }
    }
    let t = Tensor::from_slice(gpu, &[1.0; 10], [1, 5, 2]).map_err(e)?;
    if t.group_norm(2, None, None, 1e-5, false).is_ok() {
        return Err("group_norm accepted 5 channels in 2 groups".into());
    }
    Ok(())
}
