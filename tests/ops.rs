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
