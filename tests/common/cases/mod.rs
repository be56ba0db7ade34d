//! Kernel test cases shared by the native suite (`tests/ops.rs`, lavapipe) and the browser
//! suite (`tests/web.rs`, Chromium WebGPU): one file per kernel family. Each case runs the GPU
//! op on seeded inputs and compares with the CPU reference in `ssv2a::ops::<family>::reference`.
#![allow(dead_code)]

pub mod attention;
pub mod binary;
pub mod conv;
pub mod copy;
pub mod embed;
pub mod matmul;
pub mod norm;
pub mod pool;
pub mod reduce;
pub mod unary;
pub mod weights;

/// Shapes with odd sizes, primes and just-above-workgroup sizes (ggml-style).
pub const SHAPES: &[&[usize]] = &[&[1], &[7], &[257], &[10, 5, 4, 3], &[3, 1031]];

pub type R = Result<(), String>;

pub fn e(x: ssv2a::Error) -> String {
    x.to_string()
}
