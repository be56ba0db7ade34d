//! Copy family cases: permute, slice, concat, pad, expand, upsample.

use super::{e, R};
use crate::common::{assert_close, rand, ELEMENTWISE};
use ssv2a::ops::copy::{reference as r, PadMode};
use ssv2a::{Gpu, Tensor};

const EXACT: crate::common::Tol = crate::common::Tol { abs: 0.0, rel: 0.0 };

pub async fn copy_all(gpu: &Gpu) -> R {
    let shape = [10usize, 5, 4, 3];
    let x = rand(1100, 600);
    let t = Tensor::from_slice(gpu, &x, shape).map_err(e)?;
    for perm in [[0usize, 1, 2, 3], [3, 2, 1, 0], [0, 2, 1, 3], [1, 3, 0, 2]] {
        let got = t.permute(&perm).map_err(e)?;
        assert_close(&format!("permute {perm:?}"), &got.to_vec().await.map_err(e)?, &r::permute(&x, &shape, &perm), EXACT)?;
    }
    // slice with step on dim 1: [10, 5, 4, 3][:, 1..5:2]
    let got = t.slice(1, 1, 5, 2).map_err(e)?;
    if got.shape() != [10, 2, 4, 3] {
        return Err(format!("slice shape {:?}", got.shape()));
    }
    let mut want = vec![];
    for a in 0..10 {
        for b in [1usize, 3] {
            for c in 0..12 {
                want.push(x[a * 60 + b * 12 + c]);
            }
        }
    }
    assert_close("slice", &got.to_vec().await.map_err(e)?, &want, EXACT)?;
    // concat along dim 1 of [2,3,5] and [2,1,5]
    let a = rand(1101, 30);
    let b = rand(1102, 10);
    let ta = Tensor::from_slice(gpu, &a, [2, 3, 5]).map_err(e)?;
    let tb = Tensor::from_slice(gpu, &b, [2, 1, 5]).map_err(e)?;
    let got = Tensor::concat(&[&ta, &tb], 1).map_err(e)?;
    let mut want = vec![];
    for i in 0..2 {
        want.extend_from_slice(&a[i * 15..(i + 1) * 15]);
        want.extend_from_slice(&b[i * 5..(i + 1) * 5]);
    }
    assert_close("concat", &got.to_vec().await.map_err(e)?, &want, EXACT)?;
    if Tensor::concat(&[&ta, &Tensor::from_slice(gpu, &b, [1, 2, 5]).map_err(e)?], 1).is_ok() {
        return Err("concat accepted mismatched shapes".into());
    }
    // expand [3,1] -> [2,3,4]
    let s = rand(1103, 3);
    let ts = Tensor::from_slice(gpu, &s, [3, 1]).map_err(e)?;
    let got = ts.expand(&[2, 3, 4]).map_err(e)?.to_vec().await.map_err(e)?;
    let want: Vec<f32> = (0..24).map(|i| s[(i / 4) % 3]).collect();
    assert_close("expand", &got, &want, EXACT)?;
    // nearest upsample ×2 on [1,2,3,5] and ×3 on 1-D [2,4,7]
    let u = rand(1104, 30);
    let tu = Tensor::from_slice(gpu, &u, [1, 2, 3, 5]).map_err(e)?;
    let got = tu.upsample_nearest(&[2, 2]).map_err(e)?;
    if got.shape() != [1, 2, 6, 10] {
        return Err(format!("upsample shape {:?}", got.shape()));
    }
    let want: Vec<f32> = (0..120)
        .map(|i| {
            let (c, y, x) = (i / 60, (i / 10) % 6, i % 10);
            u[c * 15 + (y / 2) * 5 + x / 2]
        })
        .collect();
    assert_close("upsample_nearest 2d", &got.to_vec().await.map_err(e)?, &want, EXACT)?;
    let v = rand(1105, 56);
    let tv = Tensor::from_slice(gpu, &v, [2, 4, 7]).map_err(e)?;
    let want: Vec<f32> = (0..168).map(|i| v[(i / 21) * 7 + (i % 21) / 3]).collect();
    assert_close("upsample_nearest 1d", &tv.upsample_nearest(&[3]).map_err(e)?.to_vec().await.map_err(e)?, &want, EXACT)?;
    // pad: zero, −∞ and reflect on several dims
    let p = rand(1106, 2 * 3 * 4 * 5);
    let tp = Tensor::from_slice(gpu, &p, [2, 3, 4, 5]).map_err(e)?;
    let pads = [(0usize, 0usize), (1, 0), (2, 1), (1, 3)];
    for (mode, val) in [(PadMode::Constant(0.0), Some(0.0)), (PadMode::NegInf, Some(f32::NEG_INFINITY)), (PadMode::Constant(-2.5), Some(-2.5))] {
        let got = tp.pad(&pads, mode).map_err(e)?.to_vec().await.map_err(e)?;
        assert_close(&format!("pad {mode:?}"), &got, &r::pad(&p, &[2, 3, 4, 5], &pads, val), EXACT)?;
    }
    let rp = [(0usize, 0usize), (0, 0), (3, 2), (1, 4)];
    let got = tp.pad(&rp, PadMode::Reflect).map_err(e)?.to_vec().await.map_err(e)?;
    assert_close("pad reflect", &got, &r::pad(&p, &[2, 3, 4, 5], &rp, None), EXACT)?;
    if tp.pad(&[(0, 0), (0, 0), (4, 0), (0, 0)], PadMode::Reflect).is_ok() {
        return Err("reflect pad ≥ size must be an error".into());
    }
    // deep clone
    assert_close("deep_clone", &t.deep_clone().map_err(e)?.to_vec().await.map_err(e)?, &x, ELEMENTWISE)?;
    Ok(())
}
