//! Every kernel entry point against its CPU reference, on the native adapter (lavapipe in CI).
mod common;
use common::{cases, run};

#[test]
fn unary_matches_reference() {
    run(|g| async move { cases::unary::unary_all(&g).await });
}

#[test]
fn gated_matches_reference() {
    run(|g| async move { cases::unary::gated(&g).await });
}

#[test]
fn binary_matches_reference() {
    run(|g| async move { cases::binary::binary_all(&g).await });
}

#[test]
fn reduce_matches_reference() {
    run(|g| async move { cases::reduce::reduce_all(&g).await });
}

#[test]
fn layer_norm_matches_reference() {
    run(|g| async move { cases::norm::layer_norm(&g).await });
}

#[test]
fn group_norm_matches_reference() {
    run(|g| async move { cases::norm::group_norm(&g).await });
}

#[test]
fn copy_matches_reference() {
    run(|g| async move { cases::copy::copy_all(&g).await });
}

#[test]
fn max_pool2d_matches_reference() {
    run(|g| async move { cases::pool::max_pool(&g).await });
}

#[test]
fn gather_rows_matches_table() {
    run(|g| async move { cases::embed::gather(&g).await });
}

#[test]
fn tensor_gather_rows_matches_reference() {
    run(|g| async move { cases::embed::gather_tensor(&g).await });
}

#[test]
fn weights_round_trip_and_strictness() {
    run(|g| async move { cases::weights::round_trip(&g).await });
}

#[test]
fn corrupt_weight_files_are_errors() {
    run(|g| async move { cases::weights::corrupt_files(&g).await });
}

#[test]
fn matmul_linear_shapes() {
    run(|g| async move { cases::matmul::linear_shapes(&g).await });
}

#[test]
fn matmul_linear_acts() {
    run(|g| async move { cases::matmul::linear_acts(&g).await });
}

#[test]
fn matmul_linear_split_k() {
    run(|g| async move { cases::matmul::linear_split_k(&g).await });
}

#[test]
fn matmul_linear_naive() {
    run(|g| async move { cases::matmul::linear_naive(&g).await });
}

#[test]
fn matmul_linear_layouts() {
    run(|g| async move { cases::matmul::linear_layouts(&g).await });
}

#[test]
fn matmul_bmm_shapes() {
    run(|g| async move { cases::matmul::bmm_shapes(&g).await });
}

#[test]
fn matmul_bmm_strided_heads() {
    run(|g| async move { cases::matmul::bmm_strided_heads(&g).await });
}

#[test]
fn matmul_bmm_strided_padded_rows() {
    run(|g| async move { cases::matmul::bmm_strided_padded_rows(&g).await });
}

#[test]
fn matmul_shape_errors() {
    run(|g| async move { cases::matmul::shape_errors(&g).await });
}

#[test]
fn conv2d_matches_reference() {
    run(|g| async move { cases::conv::conv2d_all(&g).await });
}

#[test]
fn conv1d_matches_reference() {
    run(|g| async move { cases::conv::conv1d_all(&g).await });
}

#[test]
fn conv_transpose1d_matches_reference() {
    run(|g| async move { cases::conv::conv_transpose1d_all(&g).await });
}

#[test]
fn conv_large_grid_folds() {
    run(|g| async move { cases::conv::conv_grid_fold(&g).await });
}

#[test]
fn conv_bad_arguments_are_errors() {
    run(|g| async move { cases::conv::conv_errors(&g).await });
}

#[test]
fn sdpa_matches_reference() {
    run(|g| async move { cases::attention::sdpa_shapes(&g).await });
}

#[test]
fn sdpa_large_logits_match_reference() {
    run(|g| async move { cases::attention::sdpa_large_logits(&g).await });
}

#[test]
fn sdpa_masks_match_reference() {
    run(|g| async move { cases::attention::sdpa_masks(&g).await });
}

#[test]
fn sdpa_head_major_matches_reference() {
    run(|g| async move { cases::attention::sdpa_head_major(&g).await });
}

#[test]
fn sdpa_tiling_matches_reference() {
    run(|g| async move { cases::attention::sdpa_tiling(&g).await });
}

#[test]
fn sdpa_kernels_agree() {
    run(|g| async move { cases::attention::sdpa_kernels_agree(&g).await });
}

#[test]
fn sdpa_rejects_bad_shapes() {
    run(|g| async move { cases::attention::sdpa_errors(&g).await });
}

#[test]
fn feature_softmax_matches_reference() {
    run(|g| async move { cases::attention::feature_softmax(&g).await });
}

#[test]
fn efficient_attention_matches_reference() {
    run(|g| async move { cases::attention::efficient_attention(&g).await });
}

/// Attention timings at model sizes: `cargo test --release --no-default-features --test ops
/// attention_bench -- --ignored --nocapture`. Prints; asserts nothing about time.
#[test]
#[ignore = "benchmark"]
fn attention_bench() {
    use ssv2a::ops::attention::{Sdpa, SdpaKernel};
    use ssv2a::Tensor;
    run(|gpu| async move {
        let e = |x: ssv2a::Error| x.to_string();
        println!("{}", gpu.info());
        let reps: usize = std::env::var("BENCH_REPS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
        // (label, batch, tokens, heads, d, kernel)
        let cases = [
            ("UNet level 1 (1024 tok, 8x32, B=2)", 2usize, 1024usize, 8usize, 32usize, SdpaKernel::Rows),
            ("UNet level 1 (1024 tok, 8x32, B=2)", 2, 1024, 8, 32, SdpaKernel::Tiled),
            ("UNet level 2 (256 tok, 12x32, B=2)", 2, 256, 12, 32, SdpaKernel::Auto),
            ("CLIP vision (257 tok, 16x64, B=1)", 1, 257, 16, 64, SdpaKernel::Auto),
            ("VAE mid (4096 tok, 1x512, B=1)", 1, 4096, 1, 512, SdpaKernel::Tiled),
        ];
        let filter = std::env::var("BENCH_FILTER").unwrap_or_default();
        for (label, b, t, h, d, kernel) in cases {
            if !label.contains(filter.as_str()) {
                continue;
            }
            let n = b * t * h * d;
            let x = Tensor::from_slice(&gpu, &common::rand(1, n), [b, t, h * d]).map_err(e)?;
            let opts = Sdpa { kernel, ..Sdpa::new(h, 1.0 / (d as f32).sqrt()) };
            let t0 = std::time::Instant::now();
            x.sdpa_with(&x, &x, &opts).map_err(e)?;
            gpu.sync().await.map_err(e)?;
            let first = t0.elapsed().as_secs_f64();
            let mut best = f64::INFINITY;
            for _ in 0..reps {
                let t0 = std::time::Instant::now();
                x.sdpa_with(&x, &x, &opts).map_err(e)?;
                gpu.sync().await.map_err(e)?;
                best = best.min(t0.elapsed().as_secs_f64());
            }
            let flops = 4.0 * (b * h * t * t * d) as f64;
            println!(
                "{label:40} {kernel:?}: best {:8.1} ms of {reps} (first {:8.1} ms incl. compile), {:6.2} GFLOP/s",
                best * 1e3,
                first * 1e3,
                flops / best / 1e9
            );
        }
        // SSV2A remixer ESA: T = 66, 8 heads of 96; B = 256 rows (4 candidates × 64 slots).
        let (b, t, h, d) = (256usize, 66usize, 8usize, 96usize);
        if "efficient attention".contains(filter.as_str()) {
            let x = Tensor::from_slice(&gpu, &common::rand(2, b * t * h * d), [b, t, h * d]).map_err(e)?;
            x.efficient_attention(&x, &x, h).map_err(e)?;
            gpu.sync().await.map_err(e)?;
            let mut best = f64::INFINITY;
            for _ in 0..reps {
                let t0 = std::time::Instant::now();
                x.efficient_attention(&x, &x, h).map_err(e)?;
                gpu.sync().await.map_err(e)?;
                best = best.min(t0.elapsed().as_secs_f64());
            }
            println!("efficient attention (B=256, 66 tok, 8x96): best {:8.1} ms of {reps}", best * 1e3);
        }
        Ok(())
    });
}

/// First-call (pipeline compile) time per kernel variant: `MESA_SHADER_CACHE_DISABLE=true cargo
/// test --no-default-features --test ops attention_compile_times -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark"]
fn attention_compile_times() {
    use ssv2a::ops::attention::{Sdpa, SdpaKernel};
    use ssv2a::Tensor;
    run(|gpu| async move {
        let e = |x: ssv2a::Error| x.to_string();
        for d in [4usize, 24, 32, 64, 96, 512] {
            for kernel in [SdpaKernel::Rows, SdpaKernel::Tiled] {
                if kernel == SdpaKernel::Rows && d > 32 {
                    continue;
                }
                let x = Tensor::from_slice(&gpu, &common::rand(1, 3 * d), [1, 3, d]).map_err(e)?;
                let t0 = std::time::Instant::now();
                x.sdpa_with(&x, &x, &Sdpa { kernel, ..Sdpa::new(1, 1.0) }).map_err(e)?;
                gpu.sync().await.map_err(e)?;
                println!("d={d} {kernel:?}: first call {:.2} s", t0.elapsed().as_secs_f64());
            }
        }
        Ok(())
    });
}
