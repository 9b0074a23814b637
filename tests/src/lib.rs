//! Shared helpers for the integration tests.

pub mod simnet;
pub mod smol;
