//! Reduce family cases.

use super::{e, R, SHAPES};
use crate::common::{assert_close, rand, REDUCTION};
use ssv2a::ops::reduce::reference as r;
use ssv2a::{Gpu, Tensor};

pub async fn reduce_all(gpu: &Gpu) -> R {
    for (si, shape) in SHAPES.iter().enumerate() {
        let n: usize = shape.iter().product();
        let cols = *shape.last().unwrap();
        let x = rand(400 + si as u64, n);
        let t = Tensor::from_slice(gpu, &x, shape.to_vec()).map_err(e)?;
        let s = format!("{shape:?}");
        assert_close(&format!("softmax {s}"), &t.softmax().map_err(e)?.to_vec().await.map_err(e)?, &r::softmax(&x, cols), REDUCTION)?;
        assert_close(&format!("log_softmax {s}"), &t.log_softmax().map_err(e)?.to_vec().await.map_err(e)?, &r::log_softmax(&x, cols), REDUCTION)?;
        assert_close(&format!("l2_normalize {s}"), &t.l2_normalize().map_err(e)?.to_vec().await.map_err(e)?, &r::l2_normalize(&x, cols, 1e-12), REDUCTION)?;
        assert_close(&format!("sum {s}"), &t.sum_last().map_err(e)?.to_vec().await.map_err(e)?, &r::sum(&x, cols), REDUCTION)?;
        assert_close(&format!("mean {s}"), &t.mean_last().map_err(e)?.to_vec().await.map_err(e)?, &r::mean(&x, cols), REDUCTION)?;
        assert_close(&format!("max {s}"), &t.max_last().map_err(e)?.to_vec().await.map_err(e)?, &r::max(&x, cols), REDUCTION)?;
        if cols > 1 {
            assert_close(&format!("std {s}"), &t.std_last(1.0).map_err(e)?.to_vec().await.map_err(e)?, &r::std(&x, cols, 1.0), REDUCTION)?;
        } else if t.std_last(1.0).is_ok() {
            return Err("unbiased std of one value must be an error".into());
        }
    }
    // Large logits: a softmax without max subtraction would overflow.
    let x: Vec<f32> = (0..300).map(|i| 80.0 + (i % 7) as f32 * 5.0).collect();
    let t = Tensor::from_slice(gpu, &x, [3, 100]).map_err(e)?;
    assert_close("softmax(large logits)", &t.softmax().map_err(e)?.to_vec().await.map_err(e)?, &r::softmax(&x, 100), REDUCTION)?;
    // All-negative rows for max.
    let x: Vec<f32> = (0..130).map(|i| -1000.0 - i as f32).collect();
    let t = Tensor::from_slice(gpu, &x, [2, 65]).map_err(e)?;
    assert_close("max(all negative)", &t.max_last().map_err(e)?.to_vec().await.map_err(e)?, &r::max(&x, 65), REDUCTION)?;
    // A zero row normalises to zeros (eps), not NaN.
    let t = Tensor::from_slice(gpu, &[0.0; 8], [2, 4]).map_err(e)?;
    assert_close("l2_normalize(0)", &t.l2_normalize().map_err(e)?.to_vec().await.map_err(e)?, &[0.0; 8], REDUCTION)?;
    Ok(())
}
