//! Arbitrary request sequences (see `vhostfs_fuzz_common` for the input format) through the
//! request server over the in-memory `FakeFs`. Finds panics, hangs and malformed replies in the
//! decoder/dispatcher/encoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vhostfs_server::testing::FakeFs;
use vhostfs_server::{Server, ServerOptions};

fuzz_target!(|data: &[u8]| {
    let server = Server::new(FakeFs::new(), ServerOptions::default());
    vhostfs_fuzz_common::run_server(&server, data);
});
