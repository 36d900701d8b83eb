//! The legacy `-o opt1,opt2=val,...` option parser of the binary: no panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(opts) = vhostfs::cli::parse_o_options(s) {
            let _ = format!("{opts:?}");
        }
    }
});
