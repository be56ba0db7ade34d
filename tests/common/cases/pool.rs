//! Pool family cases.

use super::{e, R};
use crate::common::{assert_close, rand, Tol};
use ssv2a::ops::pool::reference as r;
use ssv2a::{Gpu, Tensor};

pub async fn max_pool(gpu: &Gpu) -> R {
    for (i, (n, c, h, w, k, s, p)) in [
        (1usize, 1usize, 1usize, 1usize, 1usize, 1usize, 0usize),
        (1, 3, 7, 5, 5, 1, 2),
        (2, 4, 20, 20, 5, 1, 2),
        (1, 2, 9, 11, 3, 2, 1),
        (1, 1, 8, 8, 2, 2, 0),
    ]
    .into_iter()
    .enumerate()
    {
        // All-negative inputs: zero padding would wrongly return 0 at the borders.
        let x: Vec<f32> = rand(1200 + i as u64, n * c * h * w).iter().map(|v| v - 3.0).collect();
        let t = Tensor::from_slice(gpu, &x, [n, c, h, w]).map_err(e)?;
        let got = t.max_pool2d((k, k), (s, s), (p, p)).map_err(e)?;
        let want = r::max_pool2d(&x, n * c, h, w, (k, k), (s, s), (p, p));
        assert_close(&format!("max_pool2d [{n},{c},{h},{w}] k{k} s{s} p{p}"), &got.to_vec().await.map_err(e)?, &want, Tol { abs: 0.0, rel: 0.0 })?;
    }
    Ok(())
}
