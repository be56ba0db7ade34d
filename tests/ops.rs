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
