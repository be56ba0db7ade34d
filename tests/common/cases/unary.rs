//! Unary family cases.

use super::{e, R, SHAPES};
use crate::common::{assert_close, rand, Tol, ELEMENTWISE};
use ssv2a::ops::unary::reference as ur;
use ssv2a::{Gpu, Tensor};

pub async fn unary_all(gpu: &Gpu) -> R {
    for (si, shape) in SHAPES.iter().enumerate() {
        let n: usize = shape.iter().product();
        // Wider range so exp/tanh/sigmoid tails are exercised.
        let x: Vec<f32> = rand(100 + si as u64, n).iter().map(|v| v * 6.0).collect();
        let t = Tensor::from_slice(gpu, &x, shape.to_vec()).map_err(e)?;
        type F = fn(f64) -> f64;
        let cases: Vec<(&str, Tensor, F, Tol)> = vec![
            // erf approximation: ≤1.5e-7 absolute in erf (A&S 7.1.26), times |x|/2.
            ("gelu", t.gelu().map_err(e)?, ur::gelu, Tol { abs: 1e-6, rel: 2e-6 }),
            ("gelu_tanh", t.gelu_tanh().map_err(e)?, ur::gelu_tanh, ELEMENTWISE),
            ("quick_gelu", t.quick_gelu().map_err(e)?, ur::quick_gelu, ELEMENTWISE),
            ("silu", t.silu().map_err(e)?, ur::silu, ELEMENTWISE),
            ("sigmoid", t.sigmoid().map_err(e)?, ur::sigmoid, ELEMENTWISE),
            ("tanh", t.tanh().map_err(e)?, f64::tanh, ELEMENTWISE),
            ("relu", t.relu().map_err(e)?, |v| v.max(0.0), ELEMENTWISE),
            ("leaky_relu", t.leaky_relu(0.1).map_err(e)?, |v| ur::leaky_relu(v, 0.1), ELEMENTWISE),
            ("elu", t.elu(1.0).map_err(e)?, |v| ur::elu(v, 1.0), ELEMENTWISE),
            // exp of up to 12: f32 exp is accurate to a few ulp, i.e. relative.
            ("exp", t.exp().map_err(e)?, f64::exp, Tol { abs: 1e-6, rel: 4e-6 }),
            ("affine", t.affine(0.5, -1.25).map_err(e)?, |v| v * 0.5 - 1.25, ELEMENTWISE),
            ("square", t.square().map_err(e)?, |v| v * v, ELEMENTWISE),
            ("abs", t.abs().map_err(e)?, f64::abs, ELEMENTWISE),
            ("clamp", t.clamp(-1.5, 2.25).map_err(e)?, |v| v.clamp(-1.5, 2.25), ELEMENTWISE),
        ];
        for (name, got, f, tol) in cases {
            let want: Vec<f32> = x.iter().map(|&v| f(v as f64) as f32).collect();
            let got = got.to_vec().await.map_err(e)?;
            assert_close(&format!("{name} {shape:?}"), &got, &want, tol)?;
        }
        // sqrt on |x|.
        let ax: Vec<f32> = x.iter().map(|v| v.abs()).collect();
        let ta = Tensor::from_slice(gpu, &ax, shape.to_vec()).map_err(e)?;
        let want: Vec<f32> = ax.iter().map(|v| (*v as f64).sqrt() as f32).collect();
        assert_close(&format!("sqrt {shape:?}"), &ta.sqrt().map_err(e)?.to_vec().await.map_err(e)?, &want, ELEMENTWISE)?;
        // log_floor on x² (a power spectrum), some values under the floor.
        let floor = 1e-3f32;
        let sq: Vec<f32> = x.iter().map(|v| v * v).collect();
        let ts = Tensor::from_slice(gpu, &sq, shape.to_vec()).map_err(e)?;
        let want: Vec<f32> = sq.iter().map(|&v| ur::log_floor(v as f64, floor as f64) as f32).collect();
        // WGSL log: absolute error ≤ 2^-21 near 1, a few ulp elsewhere.
        assert_close(&format!("log_floor {shape:?}"), &ts.log_floor(floor).map_err(e)?.to_vec().await.map_err(e)?, &want, Tol { abs: 1e-6, rel: 4e-6 })?;
    }
    // log_floor: tiny, zero and huge inputs stay finite; a non-positive floor is refused.
    let x = [0.0f32, -1.0, 1e-30, 1e-10, 1.0, 3.0e38];
    let t = Tensor::from_slice(gpu, &x, [6]).map_err(e)?;
    let want: Vec<f32> = x.iter().map(|&v| ur::log_floor(v as f64, 1e-10) as f32).collect();
    assert_close("log_floor(extreme)", &t.log_floor(1e-10).map_err(e)?.to_vec().await.map_err(e)?, &want, Tol { abs: 1e-6, rel: 4e-6 })?;
    if t.log_floor(0.0).is_ok() || t.log_floor(f32::NAN).is_ok() {
        return Err("log_floor accepted a floor that is not positive".into());
    }
    // Extreme inputs: no NaN from overflow in tanh/sigmoid/gelu.
    let x = [-1e4f32, -100.0, -30.0, 30.0, 100.0, 1e4, 0.0, -0.0];
    let t = Tensor::from_slice(gpu, &x, [8]).map_err(e)?;
    for (name, got, f) in [
        ("tanh(extreme)", t.tanh().map_err(e)?, f64::tanh as fn(f64) -> f64),
        ("sigmoid(extreme)", t.sigmoid().map_err(e)?, ur::sigmoid),
        ("gelu(extreme)", t.gelu().map_err(e)?, ur::gelu),
        ("silu(extreme)", t.silu().map_err(e)?, ur::silu),
    ] {
        let want: Vec<f32> = x.iter().map(|&v| f(v as f64) as f32).collect();
        assert_close(name, &got.to_vec().await.map_err(e)?, &want, ELEMENTWISE)?;
    }
    Ok(())
}

pub async fn gated(gpu: &Gpu) -> R {
    for (rows, c) in [(1usize, 1usize), (3, 7), (5, 300)] {
        let x = rand(7 + c as u64, rows * 2 * c);
        let t = Tensor::from_slice(gpu, &x, [rows, 2 * c]).map_err(e)?;
        let g = t.geglu().map_err(e)?;
        if g.shape() != [rows, c] {
            return Err(format!("geglu shape {:?}", g.shape()));
        }
        assert_close("geglu", &g.to_vec().await.map_err(e)?, &ur::gated(&x, c, ur::gelu), Tol { abs: 1e-6, rel: 2e-6 })?;
        let s = t.swiglu().map_err(e)?;
        assert_close("swiglu", &s.to_vec().await.map_err(e)?, &ur::gated(&x, c, ur::silu), ELEMENTWISE)?;
    }
    let odd = Tensor::from_slice(gpu, &[1.0, 2.0, 3.0], [3]).map_err(e)?;
    if odd.geglu().is_ok() {
        return Err("geglu accepted an odd last dimension".into());
    }
    Ok(())
}
