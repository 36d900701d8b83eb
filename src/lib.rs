//! The `vhostfs` daemon as a library: command-line parsing ([`cli`]), the vhost-user socket
//! ([`socket`]) and the wiring of file system, sandbox and transport ([`daemon`]). The binary
//! in `main.rs` only calls [`daemon::main`]; tests and fuzz targets use the pieces.

pub mod cli;
pub mod daemon;
pub mod socket;
pub mod syslog;
