//! The subcommands of the `punchwire` binary.

pub mod firmware_config;
pub mod schedule;
pub mod status;
pub mod tcp;
pub mod udp;
