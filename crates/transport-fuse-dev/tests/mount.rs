//! Mounts a tiny fake file system through `/dev/fuse` and talks to it with ordinary syscalls.
//! Needs root (CAP_SYS_ADMIN) and `/dev/fuse`; skips itself otherwise.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vhostfs_fuse_dev::{is_fuse_mountpoint, MountOptions, RequestHandler, Session};
use vhostfs_server::abi::{opcode, AttrOut, InHeader, InitIn, InitOut, OutHeader};
use vhostfs_server::{ReplyWriter, VecWriter};
use zerocopy::{FromBytes, IntoBytes};

/// Answers INIT, GETATTR of the root (a 0755 directory with inode number 1), LOOKUP with
/// ENOENT, and everything else with ENOSYS.
#[derive(Default)]
struct Fake {
    requests: AtomicUsize,
}

fn reply(w: &mut VecWriter, unique: u64, error: i32, body: &[u8]) -> io::Result<usize> {
    let len = std::mem::size_of::<OutHeader>() + body.len();
    let hdr = OutHeader {
        len: len as u32,
        error,
        unique,
    };
    w.write_all(hdr.as_bytes())?;
    w.write_all(body)?;
    Ok(len)
}

impl RequestHandler for Fake {
    fn handle(&self, request: &[u8], w: &mut VecWriter) -> io::Result<usize> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let (hdr, rest) =
            InHeader::read_from_prefix(request).map_err(|_| io::ErrorKind::InvalidData)?;
        match hdr.opcode {
            opcode::INIT => {
                let mut padded = [0u8; std::mem::size_of::<InitIn>()];
                let n = rest.len().min(padded.len());
                padded[..n].copy_from_slice(&rest[..n]);
                let init =
                    InitIn::read_from_bytes(&padded).map_err(|_| io::ErrorKind::InvalidData)?;
                let out = InitOut {
                    major: 7,
                    minor: init.minor.min(31),
                    max_readahead: init.max_readahead,
                    max_write: 65536,
                    max_background: 16,
                    congestion_threshold: 12,
                    time_gran: 1,
                    ..Default::default()
                };
                reply(w, hdr.unique, 0, out.as_bytes())
            }
            opcode::GETATTR => {
                let mut out = AttrOut::default();
                out.attr.ino = 1;
                out.attr.mode = libc::S_IFDIR | 0o755;
                out.attr.nlink = 2;
                reply(w, hdr.unique, 0, out.as_bytes())
            }
            opcode::LOOKUP => reply(w, hdr.unique, -libc::ENOENT, &[]),
            opcode::FORGET | opcode::BATCH_FORGET | opcode::INTERRUPT => Ok(0),
            opcode::DESTROY => reply(w, hdr.unique, 0, &[]),
            _ => reply(w, hdr.unique, -libc::ENOSYS, &[]),
        }
    }

    fn may_block(&self, _request: &[u8]) -> bool {
        false
    }

    fn max_write(&self) -> usize {
        65536
    }
}

fn can_mount() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() == 0 };
    root && Path::new("/dev/fuse").exists()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn mount_serve_and_unmount_ourselves() {
    if !can_mount() {
        eprintln!("skipped: needs root and /dev/fuse");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let session = Session::mount(dir.path(), &MountOptions::default(), 65536).unwrap();
    assert!(is_fuse_mountpoint(dir.path()).unwrap());
    let handle = session.handle();
    let fake = Arc::new(Fake::default());
    let fake2 = Arc::clone(&fake);
    let server = std::thread::spawn(move || {
        let res = session.serve_with(fake2, 3);
        drop(session);
        res
    });

    let meta = std::fs::metadata(dir.path()).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.ino(), 1);
    assert_eq!(meta.mode() & 0o7777, 0o755);
    let err = std::fs::metadata(dir.path().join("nope")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    assert!(fake.requests.load(Ordering::SeqCst) >= 3);

    handle.shutdown().unwrap();
    server.join().unwrap().unwrap();
    assert!(!is_fuse_mountpoint(dir.path()).unwrap());
}

#[test]
fn external_umount_ends_the_session() {
    if !can_mount() {
        eprintln!("skipped: needs root and /dev/fuse");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let session = Session::mount(dir.path(), &MountOptions::default(), 65536).unwrap();
    let fake = Arc::new(Fake::default());
    let server = std::thread::spawn(move || session.serve_with(fake, 2));
    // Make sure INIT went through before unmounting.
    std::fs::metadata(dir.path()).unwrap();
    nix::mount::umount2(dir.path(), nix::mount::MntFlags::empty()).unwrap();
    wait_until("the session to end", || server.is_finished());
    server.join().unwrap().unwrap();
    assert!(!is_fuse_mountpoint(dir.path()).unwrap());
}

#[test]
fn mounting_on_a_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    let err = Session::mount(&file, &MountOptions::default(), 65536).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}
