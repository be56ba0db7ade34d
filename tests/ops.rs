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
