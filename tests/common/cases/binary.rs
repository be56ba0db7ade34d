//! Binary family cases: broadcasting in every position.

use super::{e, R};
use crate::common::{assert_close, rand, ELEMENTWISE};
use ssv2a::ops::binary::reference::binary;
use ssv2a::{Gpu, Tensor};

pub async fn binary_all(gpu: &Gpu) -> R {
    let pairs: &[(&[usize], &[usize])] = &[
        (&[1], &[1]),
        (&[257], &[257]),
        (&[10, 5, 4, 3], &[10, 5, 4, 3]),
        (&[10, 5, 4, 3], &[3]),
        (&[10, 5, 4, 3], &[5, 1, 1]),
        (&[2, 7, 1], &[1, 7, 13]),
        (&[1031, 1], &[1, 5]),
        (&[4], &[3, 1]),
    ];
    for (i, (sa, sb)) in pairs.iter().enumerate() {
        let a = rand(200 + i as u64, sa.iter().product());
        // Keep divisors away from 0.
        let b: Vec<f32> = rand(300 + i as u64, sb.iter().product()).iter().map(|v| if v.abs() < 0.25 { 0.25 + v } else { *v }).collect();
        let ta = Tensor::from_slice(gpu, &a, sa.to_vec()).map_err(e)?;
        let tb = Tensor::from_slice(gpu, &b, sb.to_vec()).map_err(e)?;
        type F = fn(f64, f64) -> f64;
        let ops: Vec<(&str, Tensor, F)> = vec![
            ("add", ta.add(&tb).map_err(e)?, |x, y| x + y),
            ("sub", ta.sub(&tb).map_err(e)?, |x, y| x - y),
            ("mul", ta.mul(&tb).map_err(e)?, |x, y| x * y),
            ("div", ta.div(&tb).map_err(e)?, |x, y| x / y),
            ("maximum", ta.maximum(&tb).map_err(e)?, f64::max),
            ("minimum", ta.minimum(&tb).map_err(e)?, f64::min),
            ("axpby", ta.axpby(-1.5, &tb, 2.5).map_err(e)?, |x, y| -1.5 * x + 2.5 * y),
        ];
        for (name, got, f) in ops {
            let (shape, want) = binary(&a, sa, &b, sb, f);
            if got.shape() != shape.as_slice() {
                return Err(format!("{name} {sa:?}x{sb:?}: shape {:?}, expected {shape:?}", got.shape()));
            }
            assert_close(&format!("{name} {sa:?}x{sb:?}"), &got.to_vec().await.map_err(e)?, &want, ELEMENTWISE)?;
        }
    }
    let a = Tensor::from_slice(gpu, &[1.0; 6], [2, 3]).map_err(e)?;
    let b = Tensor::from_slice(gpu, &[1.0; 4], [4]).map_err(e)?;
    match a.add(&b) {
        Err(ssv2a::Error::Shape { .. }) => Ok(()),
        other => Err(format!("add [2,3]+[4] should be a shape error, got {other:?}")),
    }
}
