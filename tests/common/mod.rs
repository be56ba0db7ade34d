//! Shared test helpers: the GPU under test, tolerances, seeded inputs, and comparison with
//! informative failures (llm.c's `validate_result`: abs + rel·|want|, first pairs, max error).
#![allow(dead_code)]

pub mod cases;
pub mod golden;

use ssv2a::rng::Rng;
use ssv2a::Gpu;

/// FNV-1a over the f32 bits of `Rng::new(seed).normals(n)`: pins the seeded normal stream
/// (what a seed means for every sampled result) natively and in the browser.
pub fn normal_stream_digest(seed: u64, n: usize) -> u64 {
    Rng::new(seed)
        .normals(n)
        .iter()
        .flat_map(|v| v.to_bits().to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

/// `normal_stream_digest(42, 1 << 20)`: a million draws, about 15,000 of them through the
/// ziggurat's wedge test (`exp`) and 260 through its tail (`ln`).
pub const NORMAL_STREAM_42: u64 = 0xe6a5_261e_1ef1_4d59;

/// `|got − want| ≤ abs + rel·|want|` per element.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    pub abs: f64,
    pub rel: f64,
}

/// f32 elementwise ops: a few ulp of the f64 reference.
pub const ELEMENTWISE: Tol = Tol { abs: 1e-6, rel: 1e-5 };
/// Reductions and norms: f32 accumulation over up to ~10⁴ terms.
pub const REDUCTION: Tol = Tol { abs: 1e-5, rel: 1e-4 };

/// Compare `got` with `want`; on failure the message names `what`, the count of bad elements,
/// the largest error and its index, and the first five bad pairs.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: Tol) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{what}: {} values, expected {}", got.len(), want.len()));
    }
    let mut bad = 0;
    let mut first = vec![];
    let (mut max_err, mut max_i) = (0f64, 0);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g as f64, w as f64);
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            g == w
        } else {
            let err = (g - w).abs();
            if err > max_err || err.is_nan() {
                max_err = if err.is_nan() { f64::INFINITY } else { err };
                max_i = i;
            }
            err <= tol.abs + tol.rel * w.abs()
        };
        if !ok {
            bad += 1;
            if first.len() < 5 {
                first.push(format!("[{i}] got {g} want {w}"));
            }
        }
    }
    if bad > 0 {
        return Err(format!(
            "{what}: {bad}/{} values outside abs {} + rel {}; max abs err {max_err:.3e} at [{max_i}]; first: {}",
            got.len(),
            tol.abs,
            tol.rel,
            first.join(", ")
        ));
    }
    Ok(())
}

/// Seeded uniform inputs in [−2, 2].
pub fn rand(seed: u64, n: usize) -> Vec<f32> {
    Rng::new(seed).uniforms(n, -2.0, 2.0)
}

/// The backend GPU tests must run on: Vulkan natively (wgpu falls back to GL silently when no
/// Vulkan driver is installed), WebGPU in the browser. `SSV2A_TEST_BACKEND` overrides natively
/// (e.g. `metal` on a Mac).
pub fn check_backend(gpu: &Gpu) -> Result<(), String> {
    let b = gpu.info().backend;
    #[cfg(target_arch = "wasm32")]
    let want = wgpu::Backend::BrowserWebGpu;
    #[cfg(not(target_arch = "wasm32"))]
    let want = match std::env::var("SSV2A_TEST_BACKEND").as_deref() {
        Ok("metal") => wgpu::Backend::Metal,
        Ok("dx12") => wgpu::Backend::Dx12,
        Ok("gl") => wgpu::Backend::Gl,
        _ => wgpu::Backend::Vulkan,
    };
    if b != want {
        return Err(format!("GPU tests must run on {want:?}, got {b:?} ({}); install mesa-vulkan-drivers", gpu.info().name));
    }
    Ok(())
}

/// The shared GPU for native tests (one device per test binary, so pipelines compile once).
/// Without an adapter the test is skipped with a message, unless `REQUIRE_GPU=1` (CI sets it).
#[cfg(not(target_arch = "wasm32"))]
pub fn test_gpu() -> Option<Gpu> {
    use std::sync::OnceLock;
    static GPU: OnceLock<Option<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| match pollster::block_on(Gpu::new()) {
        Ok(g) => {
            check_backend(&g).unwrap_or_else(|e| panic!("{e}"));
            Some(g)
        }
        Err(e) => {
            if std::env::var("REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("REQUIRE_GPU=1 but no adapter: {e}");
            }
            eprintln!("SKIP: no adapter ({e})");
            None
        }
    })
    .clone()
}

/// Run an async test case on the shared GPU (native).
#[cfg(not(target_arch = "wasm32"))]
pub fn run<F, Fut>(f: F)
where
    F: FnOnce(Gpu) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    if let Some(gpu) = test_gpu() {
        if let Err(e) = pollster::block_on(f(gpu)) {
            panic!("{e}");
        }
    }
}
