//! pw1, the native tunnel transport (issue 11). On this branch only its
//! congestion controller and pacer.
pub mod congestion;
pub mod pacer;
