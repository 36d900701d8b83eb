//! Writes the seed corpora of the fuzz targets under `fuzz/corpus/<target>/`.
//!
//! Run from anywhere: `cargo run --manifest-path fuzz/corpus-gen/Cargo.toml`.

use std::fs;
use std::path::Path;

use vhostfs_fuzz_common::{encode, init, seed_sessions};

fn write(dir: &Path, name: &str, data: &[u8]) {
    fs::create_dir_all(dir).expect("corpus dir");
    fs::write(dir.join(name), data).expect("corpus file");
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    let sessions = seed_sessions();
    for target in ["server_request", "server_passthrough"] {
        let dir = root.join(target);
        for (name, msgs) in &sessions {
            // Whole session, then one file per request (each after the automatic INIT).
            write(&dir, &format!("{name}"), &encode(true, 5, msgs));
            for (i, m) in msgs.iter().enumerate() {
                write(&dir, &format!("{name}-{i}"), &encode(true, 5, std::slice::from_ref(m)));
            }
        }
        // Explicit INIT and a small reply buffer.
        write(&dir, "explicit-init", &encode(false, 5, &[init()]));
        write(&dir, "tiny-reply", &encode(true, 2, &sessions[0].1));
    }

    // descriptor_chain: one readable descriptor over the request at 0, one writable after it.
    let dir = root.join("descriptor_chain");
    for (name, msgs) in sessions.iter().take(3) {
        for (i, m) in msgs.iter().enumerate().take(3) {
            let mut d = vec![2u8];
            d.extend_from_slice(&0u32.to_le_bytes());
            d.extend_from_slice(&(m.len() as u32).to_le_bytes());
            d.push(0);
            d.extend_from_slice(&0x8000u32.to_le_bytes());
            d.extend_from_slice(&4096u32.to_le_bytes());
            d.push(1);
            d.extend_from_slice(m);
            write(&dir, &format!("{name}-{i}"), &d);
        }
    }

    let dir = root.join("xattrmap_parse");
    for (i, spec) in [
        ":prefix:all::user.virtiofs.::bad:all:::\nsecurity.selinux\nuser.virtiofs.x",
        "/prefix/all/trusted./user.virtiofs./ /bad/server//trusted./ /bad/client/user.virtiofs.// /ok/all///\ntrusted.overlay.opaque",
        ":map:security.:user.virtiofs.:\nsecurity.capability\nuser.a",
        "/unsupported/all/security.selinux/security.selinux//ok/all///\nsecurity.selinux",
        ":ok:client:user.::\nuser.x\ntrusted.y",
    ]
    .iter()
    .enumerate()
    {
        write(&dir, &format!("seed-{i}"), spec.as_bytes());
    }

    let dir = root.join("idmap_parse");
    for (i, spec) in [
        "map:1000:2000:10\nsquash-guest:100:65534:100\nforbid-guest:0:1\n#1005\n#150",
        "host:5000:7:3\nsquash-host:6000:99:1000\ngguest:1:500:1\n#5001",
        ":0:100000:65536:\n#1",
        "forbid-guest:0:1000\nmap:1000:1000:1\nforbid-guest:1001:4294966295\n#1000",
    ]
    .iter()
    .enumerate()
    {
        write(&dir, &format!("seed-{i}"), spec.as_bytes());
    }

    let dir = root.join("cli_o_options");
    for (i, s) in [
        "source=/srv/share,cache=auto,xattr,no_posix_lock",
        "log_level=debug,writeback,timeout=5,norace",
        "xattrmap=:map\\,::user.virtiofs.:,modcaps=+sys_admin:-mknod",
        "flock,no_flock,posix_acl,no_readdirplus,announce_submounts",
    ]
    .iter()
    .enumerate()
    {
        write(&dir, &format!("seed-{i}"), s.as_bytes());
    }
    println!("corpora written under {}", root.display());
}
