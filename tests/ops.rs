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
