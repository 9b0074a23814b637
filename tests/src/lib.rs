//! Shared helpers for the integration tests.

pub mod host_tunnel;
pub mod simnet;
pub mod smol;
