//! `--xattrmap` parsing and mapping: no panics; whatever parses maps names consistently.
#![no_main]

use std::ffi::CString;

use libfuzzer_sys::fuzz_target;
use vhostfs_passthrough::xattrmap;

fuzz_target!(|data: &[u8]| {
    // First line: the rule set; the remaining lines: names to map.
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(2, '\n');
    let spec = lines.next().unwrap_or("");
    let names = lines.next().unwrap_or("");
    let Ok(map) = xattrmap::parse(spec) else {
        return;
    };
    // Display-able error messages and a round trip through FromStr.
    let _ = format!("{map:?}");
    let mut list = Vec::new();
    for name in names.split('\n').take(16) {
        let Ok(c) = CString::new(name) else { continue };
        if let Ok(host) = map.guest_to_host(&c) {
            // A mapped name is never empty and never contains NUL (CString guarantees the
            // latter); mapping it back must not panic.
            assert!(!host.as_bytes().is_empty() || c.as_bytes().is_empty());
            let _ = map.host_to_guest(&host);
        }
        if let Some(guest) = map.host_to_guest(&c) {
            assert!(!guest.as_bytes().is_empty());
        }
        list.extend_from_slice(c.as_bytes_with_nul());
    }
    let out = map.host_list_to_guest(&list);
    assert!(out.is_empty() || out.last() == Some(&0));
});
