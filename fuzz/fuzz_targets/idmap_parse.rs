//! `--translate-uid/gid` and `--uid-map` parsing and translation: no panics or overflows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vhostfs_passthrough::idmap::{parse_ns_map, IdMap, Rule};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut map = IdMap::default();
    let mut ids = Vec::new();
    for line in text.lines().take(32) {
        if let Some(n) = line.strip_prefix('#') {
            if let Ok(id) = n.trim().parse::<u32>() {
                ids.push(id);
            }
            continue;
        }
        if let Ok(r) = line.parse::<Rule>() {
            // Display round-trips.
            assert_eq!(r.to_string().parse::<Rule>().ok(), Some(r));
        }
        let _ = parse_ns_map(line);
        let _ = if line.starts_with('g') {
            map.gid.add_spec(line.get(1..).unwrap_or(""))
        } else {
            map.uid.add_spec(line)
        };
        let _ = map.add_uid_ns_map(line);
    }
    ids.extend_from_slice(&[0, 1, 65534, 65535, u32::MAX - 1, u32::MAX]);
    for id in ids {
        let _ = map.guest_to_host_uid(id);
        let _ = map.guest_to_host_gid(id);
        let _ = map.host_to_guest_uid(id);
        let _ = map.host_to_guest_gid(id);
    }
});
