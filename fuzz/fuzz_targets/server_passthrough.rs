//! Arbitrary request sequences (same input format as `server_request`) through the request
//! server over the real `PassthroughFs`, on a fresh directory per input.
//!
//! The passthrough file system makes real host syscalls on behalf of a hostile guest, and the
//! fuzzer runs as root. To keep a confinement bug from damaging the host, the process first
//! moves into its own user namespace where ids 0..65535 are host ids 100000..165535 (no host
//! file owned by root or a real user is writable, device nodes cannot be created) and its own
//! mount namespace. Needs root (to set up that mapping); without root it runs unconfined in an
//! ordinary temporary directory.
#![no_main]

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vhostfs_passthrough::{Config, PassthroughFs};
use vhostfs_server::{Server, ServerOptions};

const HOST_BASE: u32 = 100_000;
const COUNT: u32 = 65_536;

static BASE: OnceLock<PathBuf> = OnceLock::new();
static RUN: AtomicU64 = AtomicU64::new(0);

/// Moves this (single-threaded) process into a user + mount namespace; a forked helper that
/// stays root in the parent namespace writes the id maps.
fn contain() -> std::io::Result<()> {
    let mut p = [0; 2];
    // SAFETY: valid out-array.
    if unsafe { libc::pipe(p.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: called from the fuzzer's init hook, before libFuzzer starts any thread.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if child == 0 {
        // Helper: wait for the parent to unshare, then map its ids.
        // SAFETY: p[0] is our read end.
        let mut r = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(p[0]) };
        let mut b = [0u8; 1];
        let ok = r.read_exact(&mut b).is_ok()
            && std::fs::write(format!("/proc/{parent}/uid_map"), format!("0 {HOST_BASE} {COUNT}"))
                .is_ok()
            && std::fs::write(format!("/proc/{parent}/gid_map"), format!("0 {HOST_BASE} {COUNT}"))
                .is_ok();
        // SAFETY: leave the forked helper without running any destructors.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    // SAFETY: p[1] is our write end.
    let mut w = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(p[1]) };
    // SAFETY: p[0] belongs to the helper now.
    unsafe { libc::close(p[0]) };
    // SAFETY: plain unshare; the process is single-threaded here.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) };
    let unshare_err = std::io::Error::last_os_error();
    let _ = w.write_all(b"x");
    drop(w);
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(child, &mut status, 0) };
    if rc != 0 {
        return Err(unshare_err);
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(std::io::Error::other("writing the id maps failed"));
    }
    // Become root of the new namespace (ids were unmapped until the helper wrote the maps).
    // SAFETY: plain credential syscalls.
    unsafe {
        libc::setresgid(0, 0, 0);
        libc::setresuid(0, 0, 0);
    }
    Ok(())
}

fn setup() -> PathBuf {
    // Root of the initial user namespace (not already contained, e.g. by a `-fork` parent)?
    // SAFETY: no preconditions.
    let root = unsafe { libc::geteuid() } == 0
        && std::fs::read_to_string("/proc/self/uid_map")
            .map(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
            .unwrap_or(false);
    let base = std::env::temp_dir().join(format!("vhostfs-fuzz-pt-{}", std::process::id()));
    std::fs::create_dir_all(&base).expect("fuzz base dir");
    if root {
        // libFuzzer writes new corpus entries and crash artifacts as the mapped (host 100000)
        // user: let it.
        for a in std::env::args().skip(1) {
            let dir = if let Some(p) = a.strip_prefix("-artifact_prefix=") {
                PathBuf::from(p)
            } else if !a.starts_with('-') && Path::new(&a).is_dir() {
                PathBuf::from(&a)
            } else {
                continue;
            };
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777));
        }
        let c = std::ffi::CString::new(base.to_str().expect("utf-8 temp dir")).expect("path");
        // SAFETY: valid path.
        unsafe { libc::chown(c.as_ptr(), HOST_BASE, HOST_BASE) };
        if let Err(e) = contain() {
            panic!("cannot confine the passthrough fuzzer: {e}");
        }
    }
    base
}

fuzz_target!(
    init: {
        BASE.set(setup()).expect("init once");
    },
    |data: &[u8]| {
        let base = BASE.get().expect("init ran");
        let dir = base.join(RUN.fetch_add(1, Ordering::Relaxed).to_string());
        std::fs::create_dir(&dir).expect("run dir");
        {
            let cfg = Config {
                root_dir: dir.clone(),
                ..Config::default()
            };
            let fs = PassthroughFs::new(cfg).expect("passthrough fs");
            let server = Server::new(fs, ServerOptions::default());
            // SETLKW on a lock held by another handle would block forever: make it SETLK.
            let mut owned = data.to_vec();
            neuter_setlkw(&mut owned);
            vhostfs_fuzz_common::run_server(&server, &owned);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
);

/// Rewrites the opcode of every SETLKW message into SETLK.
fn neuter_setlkw(data: &mut [u8]) {
    let mut pos = 1;
    while pos + 2 <= data.len() {
        let len = usize::from(u16::from_le_bytes([data[pos], data[pos + 1]]));
        let start = pos + 2;
        let end = (start + len).min(data.len());
        if end - start >= 8 && data[start + 4..start + 8] == 33u32.to_le_bytes() {
            data[start + 4..start + 8].copy_from_slice(&32u32.to_le_bytes());
        }
        pos = end;
    }
}
