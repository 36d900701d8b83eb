//! Mounts a tiny fake file system through `/dev/fuse` and talks to it with ordinary syscalls.
//! Needs root (CAP_SYS_ADMIN) and `/dev/fuse`; skips itself otherwise.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vhostfs_fuse_dev::{is_fuse_mountpoint, MountOptions, RequestHandler, Session};
use vhostfs_server::abi::{init_flags, opcode, AttrOut, InHeader, InitIn, InitOut, OutHeader};
use vhostfs_server::{ReplyWriter, VecWriter};
use zerocopy::{FromBytes, IntoBytes};

/// Answers INIT, GETATTR of the root (a 0755 directory with inode number 1), LOOKUP with
/// ENOENT, and everything else with ENOSYS.
#[derive(Default)]
struct Fake {
    requests: AtomicUsize,
    /// While false, a LOOKUP of "slow" waits (it is classified as blocking).
    release_slow: AtomicBool,
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
                    // Lookups in one directory may run in parallel (else the kernel
                    // serializes them and a slow one holds up the rest).
                    flags: (init_flags::PARALLEL_DIROPS as u32) & init.flags,
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
            opcode::LOOKUP => {
                if rest.starts_with(b"slow\0") {
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while !self.release_slow.load(Ordering::SeqCst) && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                reply(w, hdr.unique, -libc::ENOENT, &[])
            }
            // No reply can be produced: the transport answers EIO.
            opcode::MKDIR => Err(io::ErrorKind::Other.into()),
            opcode::FORGET | opcode::BATCH_FORGET | opcode::INTERRUPT => Ok(0),
            opcode::DESTROY => reply(w, hdr.unique, 0, &[]),
            _ => reply(w, hdr.unique, -libc::ENOSYS, &[]),
        }
    }

    fn may_block(&self, request: &[u8]) -> bool {
        match InHeader::read_from_prefix(request) {
            Ok((hdr, rest)) => hdr.opcode == opcode::LOOKUP && rest.starts_with(b"slow\0"),
            Err(_) => false,
        }
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

#[test]
fn blocking_requests_do_not_hold_up_the_only_worker() {
    if !can_mount() {
        eprintln!("skipped: needs root and /dev/fuse");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let session = Session::mount(dir.path(), &MountOptions::default(), 65536).unwrap();
    let handle = session.handle();
    let fake = Arc::new(Fake::default());
    let fake2 = Arc::clone(&fake);
    // One worker only.
    let server = std::thread::spawn(move || session.serve_with(fake2, 1));
    std::fs::metadata(dir.path()).unwrap();

    let slow_path = dir.path().join("slow");
    let slow = std::thread::spawn(move || std::fs::metadata(slow_path).map(|_| ()));
    // Give the slow lookup time to reach the handler; correctness does not depend on it.
    std::thread::sleep(Duration::from_millis(100));
    // Other requests are still answered by the single worker.
    for i in 0..20 {
        let e = std::fs::metadata(dir.path().join(format!("fast{i}"))).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    }
    assert!(
        !slow.is_finished(),
        "the slow lookup should still be waiting"
    );
    fake.release_slow.store(true, Ordering::SeqCst);
    let e = slow.join().unwrap().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT));

    // A request the handler cannot answer gets EIO instead of hanging.
    let e = std::fs::create_dir(dir.path().join("d")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));

    handle.shutdown().unwrap();
    server.join().unwrap().unwrap();
}
