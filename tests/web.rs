//! The kernel suite in a browser: headless Chromium's WebGPU (SwiftShader) through the wasm32
//! build. Run with
//! `CHROMEDRIVER=/usr/bin/chromedriver cargo test --target wasm32-unknown-unknown --no-default-features --test web`.
#![cfg(target_arch = "wasm32")]

mod common;

use common::{cases, check_backend};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

async fn gpu() -> ssv2a::Gpu {
    let g = ssv2a::Gpu::new().await.expect("a WebGPU adapter (is --enable-unsafe-webgpu set?)");
    check_backend(&g).unwrap();
    g
}

macro_rules! web_case {
    ($name:ident, $f:path) => {
        #[wasm_bindgen_test]
        async fn $name() {
            let g = gpu().await;
            if let Err(e) = $f(&g).await {
                panic!("{e}");
            }
        }
    };
}

web_case!(unary_in_browser, cases::unary::unary_all);
web_case!(binary_in_browser, cases::binary::binary_all);
web_case!(reduce_in_browser, cases::reduce::reduce_all);
web_case!(layer_norm_in_browser, cases::norm::layer_norm);
web_case!(group_norm_in_browser, cases::norm::group_norm);
web_case!(copy_in_browser, cases::copy::copy_all);
web_case!(max_pool_in_browser, cases::pool::max_pool);
web_case!(gather_in_browser, cases::embed::gather);
web_case!(weights_in_browser, cases::weights::round_trip);
web_case!(matmul_linear_shapes_in_browser, cases::matmul::linear_shapes);
web_case!(matmul_linear_acts_in_browser, cases::matmul::linear_acts);
web_case!(matmul_linear_layouts_in_browser, cases::matmul::linear_layouts);
web_case!(matmul_bmm_shapes_in_browser, cases::matmul::bmm_shapes);
web_case!(matmul_bmm_strided_heads_in_browser, cases::matmul::bmm_strided_heads);
web_case!(matmul_shape_errors_in_browser, cases::matmul::shape_errors);
web_case!(conv2d_in_browser, cases::conv::conv2d_all);
web_case!(conv1d_in_browser, cases::conv::conv1d_all);
web_case!(conv_transpose1d_in_browser, cases::conv::conv_transpose1d_all);
web_case!(conv_errors_in_browser, cases::conv::conv_errors);
web_case!(sdpa_shapes_in_browser, cases::attention::sdpa_shapes);
web_case!(sdpa_large_logits_in_browser, cases::attention::sdpa_large_logits);
web_case!(sdpa_masks_in_browser, cases::attention::sdpa_masks);
web_case!(sdpa_head_major_in_browser, cases::attention::sdpa_head_major);
web_case!(feature_softmax_in_browser, cases::attention::feature_softmax);
web_case!(efficient_attention_in_browser, cases::attention::efficient_attention);
