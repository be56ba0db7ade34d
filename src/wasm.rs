//! The JavaScript API (wasm32 only): thin `#[wasm_bindgen]` wrappers over the library, no logic
//! beyond translation. Errors become `JsError` with the library's message; a panic would kill
//! the wasm instance, so nothing here unwraps user input.

use wasm_bindgen::prelude::*;

use crate::{Gpu, Tensor};

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

fn js(e: crate::Error) -> JsError {
    JsError::new(&e.to_string())
}

/// A GPU session: the WebGPU device and everything loaded on it.
#[wasm_bindgen]
pub struct Session {
    gpu: Gpu,
}

#[wasm_bindgen]
impl Session {
    /// Request a WebGPU adapter and device.
    pub async fn create() -> Result<Session, JsError> {
        Ok(Session { gpu: Gpu::new().await.map_err(js)? })
    }

    /// Adapter, backend, limits and features, as text.
    pub fn info(&self) -> String {
        self.gpu.info().to_string()
    }

    /// Run a matmul with fp16 weights (m×k · (n×k)ᵀ) on the GPU, check 16 outputs against the
    /// CPU, and return `[seconds, max_abs_error]` (the page's self-test and speed check).
    pub async fn matmul_check(&self, m: usize, n: usize, k: usize, now: js_sys::Function) -> Result<Vec<f64>, JsError> {
        if m * n * k == 0 || m * k > 1 << 26 || n * k > 1 << 26 {
            return Err(JsError::new("matmul_check: sizes must be positive and at most 2^26 elements per operand"));
        }
        let mut rng = crate::rng::Rng::new(1);
        let a = rng.uniforms(m * k, -1.0, 1.0);
        let w = rng.uniforms(n * k, -1.0, 1.0);
        let x = Tensor::from_slice(&self.gpu, &a, [m, k]).map_err(js)?;
        let wt = crate::Weight::from_f32(&self.gpu, &w, [n, k], crate::WeightDtype::F16).map_err(js)?;
        let clock = |f: &js_sys::Function| f.call0(&JsValue::NULL).ok().and_then(|v| v.as_f64()).unwrap_or(0.0) / 1000.0;
        self.gpu.sync().await.map_err(js)?;
        let t0 = clock(&now);
        let y = x.linear(&wt, None, crate::ops::Act::None).map_err(js)?;
        let out = y.to_vec().await.map_err(js)?;
        let dt = clock(&now) - t0;
        let mut max_err = 0f64;
        for s in 0..16 {
            let (i, j) = ((s * 7919) % m, (s * 104_729) % n);
            let want: f64 = (0..k).map(|t| a[i * k + t] as f64 * half::f16::from_f32(w[j * k + t]).to_f64()).sum();
            max_err = max_err.max((out[i * n + j] as f64 - want).abs());
        }
        Ok(vec![dt, max_err])
    }
}
