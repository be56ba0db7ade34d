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
