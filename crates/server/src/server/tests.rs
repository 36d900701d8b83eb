//! Tests of the request server against the in-memory [`FakeFs`].

use std::io;
use std::sync::Arc;
use std::time::Duration;

use vhostfs_fuse_abi as abi;
use vhostfs_fuse_abi::{init_flags as initf, opcode as op};
use zerocopy::{FromBytes, IntoBytes};

use super::*;
use crate::io::{SliceReader, VecWriter};
use crate::testing::{init_request, parse_reply, FakeFs, RequestBuilder, ALL_CLIENT_FLAGS};

const BIG: usize = 4 << 20;

fn raw_call<F: FileSystem>(s: &Server<F>, req: &[u8], limit: usize) -> io::Result<Vec<u8>> {
    let mut r = SliceReader::new(req);
    let mut w = VecWriter::new(limit);
    let n = s.handle_message(&mut r, &mut w)?;
    let out = w.into_inner();
    assert_eq!(n, out.len(), "returned length is what was written");
    assert_well_formed(&out);
    Ok(out)
}

/// Checks the reply bytes `out` (if any): the header's `len` is their length, and an error
/// carries an errno the kernel accepts and no body.
fn assert_well_formed(out: &[u8]) {
    if out.is_empty() {
        return;
    }
    let (h, _) = parse_reply(out).expect("reply has a header");
    assert_eq!(h.len as usize, out.len(), "header len is the reply length");
    if h.error != 0 {
        assert_eq!(out.len(), 16, "error replies have no body");
        assert!(h.error < 0 && h.error > -512);
    }
}

/// Sends `req` and returns (errno or 0, body).
fn call<F: FileSystem>(s: &Server<F>, req: &[u8]) -> (i32, Vec<u8>) {
    let out = raw_call(s, req, BIG).expect("reply written");
    let (h, body) = parse_reply(&out).expect("a reply");
    (-h.error, body.to_vec())
}

fn ok_body<F: FileSystem>(s: &Server<F>, req: &[u8]) -> Vec<u8> {
    let (e, body) = call(s, req);
    assert_eq!(e, 0, "request failed with errno {e}");
    body
}

fn errno<F: FileSystem>(s: &Server<F>, req: &[u8]) -> i32 {
    call(s, req).0
}

/// A table of requests and the errno each must get: `server; "what": request builder =>
/// errno; ...`.
macro_rules! assert_errnos {
    ($s:expr; $($what:literal: $req:expr => $errno:expr;)*) => {
        $(assert_eq!(errno($s, &$req.build()), $errno, $what);)*
    };
}

fn ready_server() -> Server<FakeFs> {
    let s = Server::new(FakeFs::new(), ServerOptions::default());
    ok_body(&s, &init_request(1, ALL_CLIENT_FLAGS));
    s
}

fn req(opcode: u32, nodeid: u64) -> RequestBuilder {
    RequestBuilder::new(opcode, 100 + u64::from(opcode), nodeid)
}

fn entry(body: &[u8]) -> abi::EntryOut {
    abi::EntryOut::read_from_prefix(body).expect("entry").0
}

fn mkdir(s: &Server<FakeFs>, parent: u64, name: &[u8]) -> u64 {
    let m = abi::MkdirIn {
        mode: 0o755,
        umask: 0o022,
    };
    entry(&ok_body(
        s,
        &req(op::MKDIR, parent).arg(&m).name(name).build(),
    ))
    .nodeid
}

/// Creates a file and returns (inode, handle).
fn create(s: &Server<FakeFs>, parent: u64, name: &[u8]) -> (u64, u64) {
    let c = abi::CreateIn {
        flags: libc::O_RDWR as u32,
        mode: libc::S_IFREG | 0o644,
        umask: 0,
        open_flags: 0,
    };
    let body = ok_body(s, &req(op::CREATE, parent).arg(&c).name(name).build());
    assert_eq!(body.len(), 144);
    let e = entry(&body);
    let o = abi::OpenOut::read_from_bytes(&body[128..]).unwrap();
    (e.nodeid, o.fh)
}

fn write_req(ino: u64, fh: u64, offset: u64, data: &[u8]) -> Vec<u8> {
    let wi = abi::WriteIn {
        fh,
        offset,
        size: data.len() as u32,
        ..Default::default()
    };
    req(op::WRITE, ino).arg(&wi).bytes(data).build()
}

fn read_req(opcode: u32, ino: u64, fh: u64, offset: u64, size: u32) -> Vec<u8> {
    let ri = abi::ReadIn {
        fh,
        offset,
        size,
        ..Default::default()
    };
    req(opcode, ino).arg(&ri).build()
}

#[test]
fn init_negotiates() {
    let s = Server::new(FakeFs::new(), ServerOptions::default());
    assert_eq!(s.negotiated_flags(), None);
    let body = ok_body(&s, &init_request(1, ALL_CLIENT_FLAGS));
    let out = abi::InitOut::read_from_bytes(&body).unwrap();
    assert_eq!(out.major, 7);
    assert_eq!(out.minor, abi::KERNEL_MINOR_VERSION);
    assert_eq!(out.max_write, 1 << 20);
    assert_eq!(out.max_pages, 256);
    assert_eq!(out.time_gran, 1);
    let flags = u64::from(out.flags) | (u64::from(out.flags2) << 32);
    assert_eq!(flags & SERVER_INIT_FLAGS, SERVER_INIT_FLAGS);
    assert_eq!(flags & UNSUPPORTED_INIT_FLAGS, 0);
    for bit in [
        initf::DO_READDIRPLUS,
        initf::SETXATTR_EXT,
        initf::SECURITY_CTX,
        initf::CREATE_SUPP_GROUP,
        initf::WRITEBACK_CACHE,
    ] {
        assert_ne!(flags & bit, 0, "{bit:#x} from fs.init");
    }
    // Not asked for by the fs.
    assert_eq!(flags & initf::EXPORT_SUPPORT, 0);
    assert_eq!(s.negotiated_flags(), Some(flags));
    // A second INIT (a rebooted guest) starts a new session with a fresh negotiation.
    let offered = initf::ASYNC_READ;
    let body = ok_body(&s, &init_request(2, offered));
    let out = abi::InitOut::read_from_bytes(&body).unwrap();
    assert_eq!(u64::from(out.flags), offered | initf::INIT_EXT);
    assert_eq!(s.negotiated_flags(), Some(offered | initf::INIT_EXT));
}

#[test]
fn init_masks_by_what_client_offers() {
    let s = Server::new(FakeFs::new(), ServerOptions::default());
    let offered = initf::ASYNC_READ | initf::DO_READDIRPLUS;
    let body = ok_body(&s, &init_request(1, offered));
    let out = abi::InitOut::read_from_bytes(&body).unwrap();
    let flags = u64::from(out.flags) | (u64::from(out.flags2) << 32);
    assert_eq!(flags, offered | initf::INIT_EXT);
}

#[test]
fn init_legacy_and_old_minor() {
    // 16-byte InitIn of a 7.31 client: no flags2; extensions-based bits never granted.
    let s = Server::new(FakeFs::new(), ServerOptions::default());
    let init = abi::InitIn {
        major: 7,
        minor: 31,
        max_readahead: 4096,
        flags: u32::MAX,
        ..Default::default()
    };
    let body = ok_body(
        &s,
        &RequestBuilder::new(op::INIT, 1, 0)
            .bytes(&init.as_bytes()[..16])
            .build(),
    );
    let out = abi::InitOut::read_from_bytes(&body).unwrap();
    assert_eq!(out.minor, 31);
    assert_eq!(out.max_readahead, 4096);
    // flags2 was not read (INIT_EXT is in flags, but the bytes were absent: zeros).
    assert_eq!(out.flags2, 0);
    assert_eq!(
        s.negotiated_flags().unwrap() & (initf::SECURITY_CTX | initf::CREATE_SUPP_GROUP),
        0
    );

    // 7.37 with INIT_EXT: security contexts not granted below 7.38.
    let s = Server::new(FakeFs::new(), ServerOptions::default());
    let init = abi::InitIn {
        major: 7,
        minor: 37,
        flags: u32::MAX,
        flags2: u32::MAX,
        ..Default::default()
    };
    ok_body(&s, &RequestBuilder::new(op::INIT, 1, 0).arg(&init).build());
    let f = s.negotiated_flags().unwrap();
    assert_eq!(f & (initf::SECURITY_CTX | initf::CREATE_SUPP_GROUP), 0);
    assert_ne!(f & initf::SETXATTR_EXT, 0);
}

#[test]
fn init_version_mismatch() {
    let s = Server::new(FakeFs::new(), ServerOptions::default());
    let mk = |major, minor| {
        RequestBuilder::new(op::INIT, 1, 0)
            .arg(&abi::InitIn {
                major,
                minor,
                ..Default::default()
            })
            .build()
    };
    // Newer major: we answer with ours only, and stay uninitialised.
    let body = ok_body(&s, &mk(8, 0));
    let out = abi::InitOut::read_from_bytes(&body).unwrap();
    assert_eq!((out.major, out.flags, out.max_write), (7, 0, 0));
    assert_eq!(s.negotiated_flags(), None);
    assert_eq!(errno(&s, &mk(6, 40)), libc::EPROTO);
    assert_eq!(errno(&s, &mk(7, 26)), libc::EPROTO);
    // Truncated InitIn.
    let short = RequestBuilder::new(op::INIT, 1, 0)
        .bytes(&[7, 0, 0, 0])
        .build();
    assert_eq!(errno(&s, &short), libc::EINVAL);
    ok_body(&s, &mk(7, 41));
}

#[test]
fn init_failure_from_fs_allows_retry() {
    struct Failing(std::sync::atomic::AtomicBool);
    impl FileSystem for Failing {
        fn init(&self, _c: u64) -> io::Result<u64> {
            if self.0.swap(false, Ordering::SeqCst) {
                Err(io::Error::from_raw_os_error(libc::ENOMEM))
            } else {
                Ok(0)
            }
        }
    }
    let s = Server::new(
        Failing(std::sync::atomic::AtomicBool::new(true)),
        ServerOptions::default(),
    );
    assert_eq!(errno(&s, &init_request(1, ALL_CLIENT_FLAGS)), libc::ENOMEM);
    ok_body(&s, &init_request(2, ALL_CLIENT_FLAGS));
}

#[test]
fn requests_before_init_fail() {
    let s = Server::new(FakeFs::new(), ServerOptions::default());
    assert_eq!(
        errno(
            &s,
            &req(op::GETATTR, 1).arg(&abi::GetattrIn::default()).build()
        ),
        libc::EIO
    );
    assert_eq!(errno(&s, &req(op::DESTROY, 0).build()), libc::EIO);
    // No-reply requests produce nothing.
    let forget = req(op::FORGET, 1)
        .arg(&abi::ForgetIn { nlookup: 1 })
        .build();
    assert!(raw_call(&s, &forget, BIG).unwrap().is_empty());
}

#[test]
fn destroy_resets_session() {
    let s = ready_server();
    create(&s, 1, b"f");
    assert_eq!(s.fs().handle_count(), 1);
    ok_body(&s, &req(op::DESTROY, 0).build());
    assert_eq!(s.fs().destroy_count(), 1);
    assert_eq!(s.fs().handle_count(), 0);
    assert_eq!(s.negotiated_flags(), None);
    assert_eq!(errno(&s, &req(op::STATFS, 1).build()), libc::EIO);
    ok_body(&s, &init_request(9, ALL_CLIENT_FLAGS));
    ok_body(&s, &req(op::STATFS, 1).build());
}

#[test]
fn every_opcode_decodes() {
    let s = ready_server();
    let fs = s.fs();

    // Directories and lookups.
    let d = mkdir(&s, 1, b"dir");
    let e = entry(&ok_body(&s, &req(op::LOOKUP, 1).name(b"dir").build()));
    assert_eq!(e.nodeid, d);
    assert_eq!(e.attr.mode & libc::S_IFMT, libc::S_IFDIR);
    assert_eq!(e.attr.mode & 0o777, 0o755);
    assert_eq!(fs.lookups(d), Some(2));
    assert_eq!(
        errno(&s, &req(op::LOOKUP, 1).name(b"nope").build()),
        libc::ENOENT
    );

    // FORGET and BATCH_FORGET produce no reply and reach the fs.
    let forget = req(op::FORGET, d)
        .arg(&abi::ForgetIn { nlookup: 1 })
        .build();
    assert!(raw_call(&s, &forget, 0).unwrap().is_empty());
    assert_eq!(fs.lookups(d), Some(1));
    let bf = req(op::BATCH_FORGET, 0)
        .arg(&abi::BatchForgetIn { count: 1, dummy: 0 })
        .arg(&abi::ForgetOne {
            nodeid: d,
            nlookup: 1,
        })
        .build();
    assert!(raw_call(&s, &bf, 0).unwrap().is_empty());
    assert_eq!(fs.lookups(d), Some(0));

    // Files: create, write, read, getattr, setattr.
    let (f, fh) = create(&s, d, b"file");
    let wo = ok_body(&s, &write_req(f, fh, 0, b"hello world"));
    assert_eq!(abi::WriteOut::read_from_bytes(&wo).unwrap().size, 11);
    assert_eq!(ok_body(&s, &read_req(op::READ, f, fh, 6, 100)), b"world");
    assert_eq!(ok_body(&s, &read_req(op::READ, f, fh, 100, 100)), b"");
    let ga = abi::GetattrIn {
        getattr_flags: abi::flags::GETATTR_FH,
        dummy: 0,
        fh,
    };
    let ao =
        abi::AttrOut::read_from_bytes(&ok_body(&s, &req(op::GETATTR, f).arg(&ga).build())).unwrap();
    assert_eq!(ao.attr.size, 11);
    assert_eq!(ao.attr.blksize, 4096);
    assert_eq!(ao.attr_valid, 1);
    let sa = abi::SetattrIn {
        valid: abi::fattr::SIZE | abi::fattr::MODE | abi::fattr::ATIME | abi::fattr::ATIME_NOW,
        size: 5,
        mode: 0o600,
        ..Default::default()
    };
    let ao =
        abi::AttrOut::read_from_bytes(&ok_body(&s, &req(op::SETATTR, f).arg(&sa).build())).unwrap();
    assert_eq!(ao.attr.size, 5);
    assert_eq!(ao.attr.mode, libc::S_IFREG | 0o600);
    let bad_time = abi::SetattrIn {
        valid: abi::fattr::MTIME,
        mtimensec: 1_000_000_000,
        ..Default::default()
    };
    assert_eq!(
        errno(&s, &req(op::SETATTR, f).arg(&bad_time).build()),
        libc::EINVAL
    );

    // Open, flush, fsync, release.
    let oi = abi::OpenIn {
        flags: libc::O_RDONLY as u32,
        open_flags: 0,
    };
    let oo =
        abi::OpenOut::read_from_bytes(&ok_body(&s, &req(op::OPEN, f).arg(&oi).build())).unwrap();
    let fh2 = oo.fh;
    let fl = abi::FlushIn {
        fh: fh2,
        ..Default::default()
    };
    ok_body(&s, &req(op::FLUSH, f).arg(&fl).build());
    let fsy = abi::FsyncIn {
        fh: fh2,
        fsync_flags: abi::flags::FSYNC_FDATASYNC,
        padding: 0,
    };
    ok_body(&s, &req(op::FSYNC, f).arg(&fsy).build());
    let rel = abi::ReleaseIn {
        fh: fh2,
        ..Default::default()
    };
    ok_body(&s, &req(op::RELEASE, f).arg(&rel).build());
    assert_eq!(
        errno(&s, &req(op::RELEASE, f).arg(&rel).build()),
        libc::EBADF
    );

    // Locks.
    let lk = abi::LkIn {
        fh,
        owner: 1,
        lk: abi::FileLock {
            start: 0,
            end: u64::MAX,
            typ: libc::F_WRLCK as u32,
            pid: 1,
        },
        ..Default::default()
    };
    let lo =
        abi::LkOut::read_from_bytes(&ok_body(&s, &req(op::GETLK, f).arg(&lk).build())).unwrap();
    assert_eq!(lo.lk.typ, libc::F_UNLCK as u32);
    ok_body(&s, &req(op::SETLK, f).arg(&lk).build());
    ok_body(&s, &req(op::SETLKW, f).arg(&lk).build());
    assert_eq!(s.interrupts.waiting_len(), 0);

    // Allocation, seeking, copying.
    let fa = abi::FallocateIn {
        fh,
        offset: 0,
        length: 100,
        mode: 0,
        padding: 0,
    };
    ok_body(&s, &req(op::FALLOCATE, f).arg(&fa).build());
    let ls = abi::LseekIn {
        fh,
        offset: 10,
        whence: libc::SEEK_HOLE as u32,
        padding: 0,
    };
    let lo =
        abi::LseekOut::read_from_bytes(&ok_body(&s, &req(op::LSEEK, f).arg(&ls).build())).unwrap();
    assert_eq!(lo.offset, 100);
    let (g, gh) = create(&s, d, b"copy");
    let cf = abi::CopyFileRangeIn {
        fh_in: fh,
        off_in: 0,
        nodeid_out: g,
        fh_out: gh,
        off_out: 0,
        len: 5,
        flags: 0,
    };
    let wo = ok_body(&s, &req(op::COPY_FILE_RANGE, f).arg(&cf).build());
    assert_eq!(abi::WriteOut::read_from_bytes(&wo).unwrap().size, 5);
    assert_eq!(ok_body(&s, &read_req(op::READ, g, gh, 0, 100)), b"hello");

    // Xattrs (SETXATTR_EXT negotiated: 16-byte SetxattrIn).
    let sx = abi::SetxattrIn {
        size: 3,
        flags: 0,
        setxattr_flags: 0,
        padding: 0,
    };
    ok_body(
        &s,
        &req(op::SETXATTR, f)
            .arg(&sx)
            .name(b"user.a")
            .bytes(b"xyz")
            .build(),
    );
    let bad = req(op::SETXATTR, f)
        .arg(&sx)
        .name(b"user.a")
        .bytes(b"xy")
        .build();
    assert_eq!(errno(&s, &bad), libc::EINVAL);
    let gx = |size| abi::GetxattrIn { size, padding: 0 };
    let probe = ok_body(
        &s,
        &req(op::GETXATTR, f).arg(&gx(0)).name(b"user.a").build(),
    );
    assert_eq!(abi::GetxattrOut::read_from_bytes(&probe).unwrap().size, 3);
    assert_eq!(
        ok_body(
            &s,
            &req(op::GETXATTR, f).arg(&gx(10)).name(b"user.a").build()
        ),
        b"xyz"
    );
    assert_eq!(
        errno(
            &s,
            &req(op::GETXATTR, f).arg(&gx(2)).name(b"user.a").build()
        ),
        libc::ERANGE
    );
    let probe = ok_body(&s, &req(op::LISTXATTR, f).arg(&gx(0)).build());
    assert_eq!(abi::GetxattrOut::read_from_bytes(&probe).unwrap().size, 7);
    assert_eq!(
        ok_body(&s, &req(op::LISTXATTR, f).arg(&gx(64)).build()),
        b"user.a\0"
    );
    ok_body(&s, &req(op::REMOVEXATTR, f).name(b"user.a").build());
    assert_eq!(
        errno(&s, &req(op::REMOVEXATTR, f).name(b"user.a").build()),
        libc::ENODATA
    );
    assert_eq!(
        errno(&s, &req(op::REMOVEXATTR, f).name(b"").build()),
        libc::ERANGE
    );

    // Symlinks, nodes, links.
    let sl = entry(&ok_body(
        &s,
        &req(op::SYMLINK, d).name(b"link").name(b"../target").build(),
    ));
    assert_eq!(
        ok_body(&s, &req(op::READLINK, sl.nodeid).build()),
        b"../target"
    );
    let mk = abi::MknodIn {
        mode: libc::S_IFCHR | 0o600,
        rdev: 0x0103,
        umask: 0,
        padding: 0,
    };
    let dev = entry(&ok_body(
        &s,
        &req(op::MKNOD, d).arg(&mk).name(b"null").build(),
    ));
    assert_eq!(dev.attr.rdev, 0x0103);
    let li = abi::LinkIn { oldnodeid: f };
    let le = entry(&ok_body(
        &s,
        &req(op::LINK, 1).arg(&li).name(b"hard").build(),
    ));
    assert_eq!(le.nodeid, f);
    assert_eq!(le.attr.nlink, 2);

    // Renames.
    let rn = abi::RenameIn { newdir: 1 };
    ok_body(
        &s,
        &req(op::RENAME, d)
            .arg(&rn)
            .name(b"copy")
            .name(b"moved")
            .build(),
    );
    let r2 = abi::Rename2In {
        newdir: 1,
        flags: libc::RENAME_NOREPLACE,
        padding: 0,
    };
    assert_eq!(
        errno(
            &s,
            &req(op::RENAME2, 1)
                .arg(&r2)
                .name(b"moved")
                .name(b"hard")
                .build()
        ),
        libc::EEXIST
    );

    // Directory listing.
    let oo = abi::OpenOut::read_from_bytes(&ok_body(
        &s,
        &req(op::OPENDIR, d).arg(&abi::OpenIn::default()).build(),
    ))
    .unwrap();
    let list = ok_body(&s, &read_req(op::READDIR, d, oo.fh, 0, 4096));
    let names = dirent_names(&list, false);
    assert_eq!(
        names,
        vec![
            b".".to_vec(),
            b"..".to_vec(),
            b"file".to_vec(),
            b"link".to_vec(),
            b"null".to_vec()
        ]
    );
    let before = fs.lookups(f).unwrap();
    let list = ok_body(&s, &read_req(op::READDIRPLUS, d, oo.fh, 0, 4096));
    assert_eq!(dirent_names(&list, true).len(), 5);
    assert_eq!(fs.lookups(f).unwrap(), before + 1);
    let fsync = abi::FsyncIn {
        fh: oo.fh,
        ..Default::default()
    };
    ok_body(&s, &req(op::FSYNCDIR, d).arg(&fsync).build());
    let release = abi::ReleaseIn {
        fh: oo.fh,
        ..Default::default()
    };
    ok_body(&s, &req(op::RELEASEDIR, d).arg(&release).build());

    // Removal.
    ok_body(&s, &req(op::UNLINK, d).name(b"link").build());
    assert_eq!(
        errno(&s, &req(op::RMDIR, 1).name(b"dir").build()),
        libc::ENOTEMPTY
    );
    let e2 = mkdir(&s, 1, b"empty");
    assert!(e2 > 1);
    ok_body(&s, &req(op::RMDIR, 1).name(b"empty").build());

    // The rest.
    ok_body(
        &s,
        &req(op::ACCESS, f)
            .arg(&abi::AccessIn {
                mask: libc::R_OK as u32,
                padding: 0,
            })
            .build(),
    );
    let st = abi::StatfsOut::read_from_bytes(&ok_body(&s, &req(op::STATFS, 1).build())).unwrap();
    assert_eq!(st.st.bsize, 4096);
    assert_eq!(st.st.namelen, 255);
    ok_body(
        &s,
        &req(op::SYNCFS, 1).arg(&abi::SyncfsIn::default()).build(),
    );
    let tmp = abi::CreateIn {
        flags: libc::O_RDWR as u32,
        mode: 0o600,
        umask: 0,
        open_flags: 0,
    };
    // The kernel names the unnamed dentry "/".
    let body = ok_body(&s, &req(op::TMPFILE, d).arg(&tmp).name(b"/").build());
    assert_eq!(body.len(), 144);
    let intr = req(op::INTERRUPT, 0)
        .arg(&abi::InterruptIn { unique: 12345 })
        .build();
    assert!(raw_call(&s, &intr, 0).unwrap().is_empty());

    for unsupported in [
        op::IOCTL,
        op::POLL,
        op::BMAP,
        op::SETUPMAPPING,
        op::REMOVEMAPPING,
        op::STATX,
        op::CUSE_INIT,
        7,
        19,
        999,
    ] {
        assert_eq!(
            errno(&s, &req(unsupported, 1).bytes(&[0; 64]).build()),
            libc::ENOSYS
        );
    }
    let nr = req(op::NOTIFY_REPLY, 1).bytes(&[0; 64]).build();
    assert!(raw_call(&s, &nr, 0).unwrap().is_empty());
    assert_eq!(s.negotiated_minor(), Some(abi::KERNEL_MINOR_VERSION));
    let counts = s.stats().snapshot();
    let count = |name: &str| counts.iter().find(|c| c.name == name).cloned().unwrap();
    assert_eq!(
        (count("READDIRPLUS").requests, count("READDIRPLUS").errors),
        (1, 0)
    );
    assert_eq!(count("LOOKUP").errors, 1);
    assert_eq!(count("RENAME2").errors, 1);
    // Unknown and out-of-range opcodes share slot 0; all got ENOSYS.
    let unknown = count("UNKNOWN");
    assert!(unknown.requests >= 2);
    assert_eq!(unknown.requests, unknown.errors);
}

fn dirent_names(mut buf: &[u8], plus: bool) -> Vec<Vec<u8>> {
    let mut names = Vec::new();
    while !buf.is_empty() {
        let fixed = if plus {
            let (p, _) = abi::DirentPlus::read_from_prefix(buf).unwrap();
            (p.dirent, std::mem::size_of::<abi::DirentPlus>())
        } else {
            let (d, _) = abi::Dirent::read_from_prefix(buf).unwrap();
            (d, std::mem::size_of::<abi::Dirent>())
        };
        let (d, off) = fixed;
        let len = abi::dirent_size(off, d.namelen as usize);
        assert!(len <= buf.len(), "dirent runs past the reply");
        names.push(buf[off..off + d.namelen as usize].to_vec());
        assert!(buf[off + d.namelen as usize..len].iter().all(|&b| b == 0));
        buf = &buf[len..];
    }
    names
}

#[test]
fn readdir_packing_at_boundaries() {
    let s = ready_server();
    for i in 0..10 {
        create(&s, 1, format!("name{i}").as_bytes());
    }
    let oo = abi::OpenOut::read_from_bytes(&ok_body(
        &s,
        &req(op::OPENDIR, 1).arg(&abi::OpenIn::default()).build(),
    ))
    .unwrap();
    // "." and ".." take 32 bytes each; "nameN" 32 bytes each.
    for (size, expect) in [
        (0u32, 0usize),
        (31, 0),
        (32, 1),
        (63, 1),
        (64, 2),
        (96, 3),
        (100, 3),
    ] {
        let list = ok_body(&s, &read_req(op::READDIR, 1, oo.fh, 0, size));
        assert_eq!(list.len(), expect * 32, "size {size}");
        assert_eq!(dirent_names(&list, false).len(), expect);
    }
    // Resuming from a cookie.
    let list = ok_body(&s, &read_req(op::READDIR, 1, oo.fh, 2, 64));
    assert_eq!(
        dirent_names(&list, false),
        vec![b"name0".to_vec(), b"name1".to_vec()]
    );
    // The writer, not the request size, is the limit.
    let out = raw_call(&s, &read_req(op::READDIR, 1, oo.fh, 0, 4096), 16 + 70).unwrap();
    assert_eq!(out.len(), 16 + 64);

    // READDIRPLUS: 160-byte records; entries not sent are not counted as lookups.
    let ino0 = entry(&ok_body(&s, &req(op::LOOKUP, 1).name(b"name0").build())).nodeid;
    let before = s.fs().lookups(ino0).unwrap();
    let list = ok_body(&s, &read_req(op::READDIRPLUS, 1, oo.fh, 0, 3 * 160 - 1));
    assert_eq!(dirent_names(&list, true).len(), 2);
    assert_eq!(s.fs().lookups(ino0).unwrap(), before);
    let list = ok_body(&s, &read_req(op::READDIRPLUS, 1, oo.fh, 0, 3 * 160));
    assert_eq!(dirent_names(&list, true).len(), 3);
    assert_eq!(s.fs().lookups(ino0).unwrap(), before + 1);
    // Errors with nothing sent are errors.
    assert_eq!(
        errno(&s, &read_req(op::READDIR, 999, 0, 0, 4096)),
        libc::ENOENT
    );
}

#[test]
fn malformed_requests_get_errors() {
    let s = ready_server();
    // Truncated header: nothing can be replied.
    for n in [0, 1, 39] {
        let bytes = vec![0u8; n];
        assert!(raw_call(&s, &bytes, BIG).is_err());
    }
    // Header len disagreeing with what was delivered.
    let mut r = req(op::LOOKUP, 1).name(b"x").build();
    let good_len = r.len() as u32;
    for bad in [0u32, 39, 40, good_len - 1, good_len + 1, u32::MAX] {
        r[..4].copy_from_slice(&bad.to_ne_bytes());
        assert_eq!(errno(&s, &r), libc::EINVAL, "len {bad}");
    }
    // Extensions longer than the body.
    let mut r = req(op::LOOKUP, 1).name(b"x").build();
    r[36..38].copy_from_slice(&1u16.to_ne_bytes());
    assert_eq!(errno(&s, &r), libc::EINVAL);
    // Malformed extension.
    let mut r = req(op::MKDIR, 1)
        .arg(&abi::MkdirIn::default())
        .name(b"dd")
        .bytes(&[0; 6])
        .bytes(&[0xff; 8])
        .build();
    r[36..38].copy_from_slice(&1u16.to_ne_bytes());
    assert_eq!(errno(&s, &r), libc::EINVAL);
    // Truncated args.
    for opcode in [
        op::GETATTR,
        op::SETATTR,
        op::OPEN,
        op::READ,
        op::WRITE,
        op::RELEASE,
        op::FSYNC,
        op::SETXATTR,
        op::GETXATTR,
        op::LISTXATTR,
        op::FLUSH,
        op::OPENDIR,
        op::READDIR,
        op::READDIRPLUS,
        op::RELEASEDIR,
        op::FSYNCDIR,
        op::GETLK,
        op::SETLK,
        op::SETLKW,
        op::ACCESS,
        op::CREATE,
        op::MKNOD,
        op::MKDIR,
        op::RENAME,
        op::RENAME2,
        op::LINK,
        op::FALLOCATE,
        op::LSEEK,
        op::COPY_FILE_RANGE,
        op::TMPFILE,
    ] {
        assert_eq!(
            errno(&s, &req(opcode, 1).bytes(&[1, 2, 3]).build()),
            libc::EINVAL,
            "{}",
            op::name(opcode)
        );
    }
    // Names: missing NUL, empty, slash, too long.
    let names: [(&[u8], i32); 5] = [
        (b"abc", libc::EINVAL),
        (b"\0", libc::EINVAL),
        (b"a/b\0", libc::EINVAL),
        (b"/\0", libc::EINVAL),
        (&[b'x'; 300], libc::EINVAL),
    ];
    for (name, e) in names {
        assert_eq!(errno(&s, &req(op::LOOKUP, 1).bytes(name).build()), e);
        assert_eq!(errno(&s, &req(op::UNLINK, 1).bytes(name).build()), e);
    }
    let long = vec![b'x'; 256];
    let target = vec![b't'; 5000];
    // A body larger than any request may be is refused without being decoded.
    let huge = vec![b'v'; MAX_REQUEST_BODY + (128 << 10)];
    let huge_sx = abi::SetxattrIn {
        size: huge.len() as u32,
        ..Default::default()
    };
    let big_sx = abi::SetxattrIn {
        size: 1 << 20,
        ..Default::default()
    };
    let long_xattr = vec![b'u'; 256];
    assert_errnos! { &s;
        "LOOKUP of a long name": req(op::LOOKUP, 1).name(&long) => libc::ENAMETOOLONG;
        "MKDIR of a long name": req(op::MKDIR, 1).arg(&abi::MkdirIn::default()).name(&long) => libc::ENAMETOOLONG;
        "RENAME with one name only": req(op::RENAME, 1).arg(&abi::RenameIn { newdir: 1 }).name(b"a") => libc::EINVAL;
        "SYMLINK target without NUL": req(op::SYMLINK, 1).name(b"l").bytes(b"t") => libc::EINVAL;
        "SYMLINK target too long": req(op::SYMLINK, 1).name(b"l").name(&target) => libc::ENAMETOOLONG;
        "body larger than any request": req(op::SETXATTR, 1).arg(&huge_sx).name(b"user.x").bytes(&huge) => libc::EINVAL;
        "xattr value too large": req(op::SETXATTR, 1).arg(&big_sx).name(b"user.x") => libc::E2BIG;
        "xattr name too long": req(op::GETXATTR, 1).arg(&abi::GetxattrIn::default()).name(&long_xattr) => libc::ERANGE;
    }
}

#[test]
fn write_size_checks() {
    let s = ready_server();
    let (f, fh) = create(&s, 1, b"f");
    // Size larger than the payload.
    let wi = abi::WriteIn {
        fh,
        size: 100,
        ..Default::default()
    };
    assert_eq!(
        errno(&s, &req(op::WRITE, f).arg(&wi).bytes(&[0; 10]).build()),
        libc::EINVAL
    );
    // Size larger than max_write (and than the payload).
    let wi = abi::WriteIn {
        fh,
        size: u32::MAX,
        ..Default::default()
    };
    assert_eq!(errno(&s, &req(op::WRITE, f).arg(&wi).build()), libc::EINVAL);
    // Size smaller than the payload: only `size` bytes are written.
    let wi = abi::WriteIn {
        fh,
        size: 3,
        ..Default::default()
    };
    let wo = ok_body(&s, &req(op::WRITE, f).arg(&wi).bytes(b"abcdef").build());
    assert_eq!(abi::WriteOut::read_from_bytes(&wo).unwrap().size, 3);
    assert_eq!(ok_body(&s, &read_req(op::READ, f, fh, 0, 100)), b"abc");
    // Extensions are not part of the data.
    let mut r = req(op::WRITE, f)
        .arg(&abi::WriteIn {
            fh,
            size: 4,
            ..Default::default()
        })
        .bytes(b"wxyz")
        .supp_group(5)
        .build();
    assert_eq!(u16::from_ne_bytes([r[36], r[37]]), 2);
    ok_body(&s, &r);
    assert_eq!(ok_body(&s, &read_req(op::READ, f, fh, 0, 100)), b"wxyz");
    // ... and must fit.
    r[36..38].copy_from_slice(&3u16.to_ne_bytes());
    assert_eq!(errno(&s, &r), libc::EINVAL);
    // Errors from the fs.
    assert_eq!(errno(&s, &write_req(f, 999, 0, b"x")), libc::EBADF);
    assert_eq!(
        errno(&s, &write_req(f, fh, FakeFs::MAX_FILE_SIZE, b"x")),
        libc::EFBIG
    );
}

#[test]
fn read_is_capped_by_writer_and_max() {
    let s = Server::new(FakeFs::new(), ServerOptions { max_write: 8192 });
    ok_body(&s, &init_request(1, ALL_CLIENT_FLAGS));
    let (f, fh) = create(&s, 1, b"f");
    let data = vec![7u8; 8192];
    ok_body(&s, &write_req(f, fh, 0, &data));
    ok_body(&s, &write_req(f, fh, 8192, &data));
    assert_eq!(
        ok_body(&s, &read_req(op::READ, f, fh, 0, u32::MAX)).len(),
        8192
    );
    let out = raw_call(&s, &read_req(op::READ, f, fh, 0, 4096), 16 + 100).unwrap();
    assert_eq!(out.len(), 116);
    // Too large for max_write.
    assert_eq!(
        errno(&s, &write_req(f, fh, 0, &vec![0; 8193])),
        libc::EINVAL
    );
    // Read error with nothing read.
    assert_eq!(errno(&s, &read_req(op::READ, f, 999, 0, 10)), libc::EBADF);
}

#[test]
fn small_reply_writers() {
    let s = ready_server();
    let lookup = req(op::LOOKUP, 1).name(b".").build();
    // Not even a header fits: no reply, and the fs is not called.
    assert!(raw_call(&s, &lookup, 15).is_err());
    assert_eq!(s.fs().lookups(1), Some(1));
    // A header fits but not the entry: EINVAL, fs not called (no lookup count taken).
    let out = raw_call(&s, &lookup, 100).unwrap();
    assert_eq!(parse_reply(&out).unwrap().0.error, -libc::EINVAL);
    assert_eq!(s.fs().lookups(1), Some(1));
    // Side-effecting CREATE is not run either.
    let c = abi::CreateIn {
        mode: 0o644,
        ..Default::default()
    };
    let out = raw_call(&s, &req(op::CREATE, 1).arg(&c).name(b"nf").build(), 143).unwrap();
    assert_eq!(parse_reply(&out).unwrap().0.error, -libc::EINVAL);
    assert_eq!(
        errno(&s, &req(op::LOOKUP, 1).name(b"nf").build()),
        libc::ENOENT
    );
    // GETXATTR probe needs room for GetxattrOut.
    let out = raw_call(
        &s,
        &req(op::LISTXATTR, 1)
            .arg(&abi::GetxattrIn::default())
            .build(),
        20,
    )
    .unwrap();
    assert_eq!(parse_reply(&out).unwrap().0.error, -libc::EINVAL);
    // READLINK longer than the writer.
    let sl = entry(&ok_body(
        &s,
        &req(op::SYMLINK, 1).name(b"l").name(&[b'a'; 100]).build(),
    ));
    let out = raw_call(&s, &req(op::READLINK, sl.nodeid).build(), 50).unwrap();
    assert_eq!(parse_reply(&out).unwrap().0.error, -libc::ENAMETOOLONG);
    // No-reply requests need no room.
    let forget = req(op::FORGET, sl.nodeid)
        .arg(&abi::ForgetIn { nlookup: 1 })
        .build();
    assert_eq!(raw_call(&s, &forget, 0).unwrap().len(), 0);
}

#[test]
fn batch_forget_count_is_bounded_by_payload() {
    let s = ready_server();
    let d = mkdir(&s, 1, b"d");
    entry(&ok_body(&s, &req(op::LOOKUP, 1).name(b"d").build()));
    assert_eq!(s.fs().lookups(d), Some(2));
    let bf = req(op::BATCH_FORGET, 0)
        .arg(&abi::BatchForgetIn {
            count: u32::MAX,
            dummy: 0,
        })
        .arg(&abi::ForgetOne {
            nodeid: d,
            nlookup: 1,
        })
        .bytes(&[0xff; 9])
        .build();
    assert!(raw_call(&s, &bf, 0).unwrap().is_empty());
    assert_eq!(s.fs().lookups(d), Some(1));
    // Truncated batch header: ignored.
    let bf = req(op::BATCH_FORGET, 0).bytes(&[1, 0, 0]).build();
    assert!(raw_call(&s, &bf, 0).unwrap().is_empty());
    assert_eq!(s.fs().lookups(d), Some(1));
}

#[test]
fn extensions_reach_the_fs() {
    let s = ready_server();
    let m = abi::MkdirIn {
        mode: 0o755,
        umask: 0,
    };
    let r = req(op::MKDIR, 1)
        .creds(1000, 1000, 42)
        .arg(&m)
        .name(b"d")
        .security_ctx(b"security.selinux", b"label\0")
        .supp_group(77)
        .build();
    let e = entry(&ok_body(&s, &r));
    assert_eq!(e.attr.gid, 77);
    let ctx = s.fs().recent_contexts().pop().unwrap();
    assert_eq!((ctx.uid, ctx.gid, ctx.pid), (1000, 1000, 42));
    assert_eq!(ctx.supplementary_gid, Some(77));
    let sc = ctx.security_ctx.unwrap();
    assert_eq!(sc.name.as_bytes(), b"security.selinux");
    assert_eq!(sc.value, b"label\0");

    // Without the capabilities negotiated, extensions are ignored.
    let s = Server::new(FakeFs::with_init_flags(0), ServerOptions::default());
    ok_body(&s, &init_request(1, ALL_CLIENT_FLAGS));
    let r = req(op::MKDIR, 1)
        .arg(&m)
        .name(b"d")
        .security_ctx(b"security.selinux", b"label\0")
        .supp_group(77)
        .build();
    ok_body(&s, &r);
    let ctx = s.fs().recent_contexts().pop().unwrap();
    assert_eq!(ctx.supplementary_gid, None);
    assert!(ctx.security_ctx.is_none());
}

#[test]
fn legacy_setxattr_layout() {
    let s = Server::new(FakeFs::with_init_flags(0), ServerOptions::default());
    ok_body(&s, &init_request(1, ALL_CLIENT_FLAGS));
    let sx = abi::SetxattrIn {
        size: 2,
        flags: 0,
        ..Default::default()
    };
    let r = req(op::SETXATTR, 1)
        .bytes(&sx.as_bytes()[..8])
        .name(b"user.k")
        .bytes(b"vv")
        .build();
    ok_body(&s, &r);
    assert_eq!(
        ok_body(
            &s,
            &req(op::GETXATTR, 1)
                .arg(&abi::GetxattrIn {
                    size: 2,
                    padding: 0
                })
                .name(b"user.k")
                .build()
        ),
        b"vv"
    );
}

/// A file system whose SETLKW blocks in `read` on a pipe nobody writes.
struct BlockingLocks;

impl FileSystem for BlockingLocks {
    fn setlk(
        &self,
        _ctx: &Context,
        _inode: u64,
        _handle: u64,
        _owner: u64,
        _lock: Lock,
        _flock: bool,
        wait: bool,
    ) -> io::Result<()> {
        if !wait {
            return Ok(());
        }
        let mut fds = [0; 2];
        // SAFETY: fds is a valid 2-int array.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut b = [0u8; 1];
        // SAFETY: reading into a valid 1-byte buffer from our own pipe.
        let n = unsafe { libc::read(fds[0], b.as_mut_ptr().cast(), 1) };
        let e = io::Error::last_os_error();
        // SAFETY: closing the fds we created.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        if n < 0 {
            Err(e)
        } else {
            Ok(())
        }
    }
}

#[test]
fn interrupt_cancels_waiting_setlkw() {
    let s = Arc::new(Server::new(BlockingLocks, ServerOptions::default()));
    ok_body(&*s, &init_request(1, ALL_CLIENT_FLAGS));
    let lk = abi::LkIn::default();
    let setlkw = RequestBuilder::new(op::SETLKW, 77, 1).arg(&lk).build();
    assert!(request_may_block(&setlkw));
    let s2 = s.clone();
    let h = std::thread::spawn(move || call(&*s2, &setlkw));
    let intr = RequestBuilder::new(op::INTERRUPT, 79, 0)
        .arg(&abi::InterruptIn { unique: 77 })
        .build();
    for _ in 0..500 {
        if s.interrupts.waiting_len() == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(s.interrupts.waiting_len(), 1);
    for _ in 0..200 {
        assert!(raw_call(&*s, &intr, BIG).unwrap().is_empty());
        std::thread::sleep(Duration::from_millis(10));
        if h.is_finished() {
            break;
        }
    }
    let (e, body) = h.join().unwrap();
    assert_eq!(e, libc::EINTR);
    assert!(body.is_empty());
    assert_eq!(s.interrupts.waiting_len(), 0);

    // An INTERRUPT that arrives first makes the SETLKW fail at once.
    let intr = RequestBuilder::new(op::INTERRUPT, 81, 0)
        .arg(&abi::InterruptIn { unique: 80 })
        .build();
    raw_call(&*s, &intr, BIG).unwrap();
    let setlkw = RequestBuilder::new(op::SETLKW, 80, 1).arg(&lk).build();
    assert_eq!(errno(&*s, &setlkw), libc::EINTR);
}

#[test]
fn may_block_classification() {
    let mk = |opcode| RequestBuilder::new(opcode, 1, 1).build();
    for opcode in [op::SETLKW, op::FSYNC, op::FSYNCDIR, op::SYNCFS] {
        assert!(request_may_block(&mk(opcode)));
    }
    for opcode in [
        op::READ,
        op::WRITE,
        op::SETLK,
        op::LOOKUP,
        op::INIT,
        0,
        9999,
    ] {
        assert!(!request_may_block(&mk(opcode)));
    }
    assert!(!request_may_block(&mk(op::SETLKW)[..39]));
    assert!(!request_may_block(&[]));
}

#[test]
fn reset_allows_new_init() {
    let s = ready_server();
    s.reset();
    assert_eq!(s.fs().destroy_count(), 1);
    s.reset();
    assert_eq!(s.fs().destroy_count(), 1);
    ok_body(&s, &init_request(5, ALL_CLIENT_FLAGS));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    /// Opcodes worth generating (all known ones plus a few unknown).
    const OPCODES: &[u32] = &[
        1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 20, 21, 22, 23, 24, 25, 26, 27,
        28, 29, 30, 31, 32, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51,
        52, 4096, 0, 7, 100,
    ];

    /// Hands `bytes` to the server with a reply buffer of `limit` bytes and checks the reply
    /// when there is one; returns what `handle_message` returned.
    fn send_checked(s: &Server<FakeFs>, bytes: &[u8], limit: usize) -> io::Result<usize> {
        let mut r = SliceReader::new(bytes);
        let mut w = VecWriter::new(limit);
        let res = s.handle_message(&mut r, &mut w);
        if let Ok(n) = res {
            assert_eq!(n, w.bytes_written());
            assert_well_formed(w.as_slice());
        }
        res
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), limit in 0usize..4096) {
            send_checked(&ready_server(), &bytes, limit).ok();
        }

        #[test]
        fn well_formed_headers_random_bodies(
            reqs in proptest::collection::vec(
                (proptest::sample::select(OPCODES), 0u64..8, proptest::collection::vec(any::<u8>(), 0..300), 0u16..4, 0usize..2048),
                1..24),
        ) {
            let s = ready_server();
            // Something to find.
            ok_body(&s, &req(op::MKDIR, 1).arg(&abi::MkdirIn { mode: 0o755, umask: 0 }).name(b"d").build());
            create(&s, 1, b"f");
            for (i, (opcode, nodeid, body, extlen, limit)) in reqs.into_iter().enumerate() {
                let mut bytes = RequestBuilder::new(opcode, i as u64 + 10, nodeid).bytes(&body).build();
                bytes[36..38].copy_from_slice(&extlen.to_ne_bytes());
                send_checked(&s, &bytes, limit).ok();
            }
        }

        #[test]
        fn structured_requests_never_panic(
            ops in proptest::collection::vec((0usize..24, 0u64..6, 0u64..6, any::<u32>(), any::<u64>(), proptest::sample::select(vec![&b"a"[..], b"b", b"..", b".", b"dir"])), 1..40),
        ) {
            let s = ready_server();
            for (i, (kind, ino, fh, size, off, name)) in ops.into_iter().enumerate() {
                let u = i as u64 + 10;
                let bytes = match kind {
                    0 => RequestBuilder::new(op::LOOKUP, u, ino).name(name).build(),
                    1 => RequestBuilder::new(op::MKDIR, u, ino).arg(&abi::MkdirIn { mode: 0o755, umask: 0 }).name(name).build(),
                    2 => RequestBuilder::new(op::CREATE, u, ino).arg(&abi::CreateIn { mode: 0o644, ..Default::default() }).name(name).build(),
                    3 => write_req(ino, fh, off % (2 << 20), &vec![1u8; (size % 5000) as usize]),
                    4 => read_req(op::READ, ino, fh, off, size),
                    5 => read_req(op::READDIR, ino, fh, off % 8, size % 8192),
                    6 => read_req(op::READDIRPLUS, ino, fh, off % 8, size % 8192),
                    7 => RequestBuilder::new(op::FORGET, u, ino).arg(&abi::ForgetIn { nlookup: off % 3 }).build(),
                    8 => RequestBuilder::new(op::UNLINK, u, ino).name(name).build(),
                    9 => RequestBuilder::new(op::RMDIR, u, ino).name(name).build(),
                    10 => RequestBuilder::new(op::RELEASE, u, ino).arg(&abi::ReleaseIn { fh, ..Default::default() }).build(),
                    11 => RequestBuilder::new(op::OPENDIR, u, ino).arg(&abi::OpenIn::default()).build(),
                    12 => RequestBuilder::new(op::SETATTR, u, ino).arg(&abi::SetattrIn { valid: size & 0xfff, fh, size: off % 8192, mode: size, atimensec: size, ..Default::default() }).build(),
                    13 => RequestBuilder::new(op::SYMLINK, u, ino).name(name).name(b"target").build(),
                    14 => RequestBuilder::new(op::RENAME2, u, ino).arg(&abi::Rename2In { newdir: fh, flags: size & 7, padding: 0 }).name(name).name(b"b").build(),
                    15 => RequestBuilder::new(op::LINK, u, ino).arg(&abi::LinkIn { oldnodeid: fh }).name(name).build(),
                    16 => RequestBuilder::new(op::SETXATTR, u, ino).arg(&abi::SetxattrIn { size: size % 100, flags: (off % 3) as u32, ..Default::default() }).name(b"user.x").bytes(&vec![7u8; (size % 100) as usize]).build(),
                    17 => RequestBuilder::new(op::GETXATTR, u, ino).arg(&abi::GetxattrIn { size: size % 64, padding: 0 }).name(b"user.x").build(),
                    18 => RequestBuilder::new(op::LISTXATTR, u, ino).arg(&abi::GetxattrIn { size: size % 64, padding: 0 }).build(),
                    19 => RequestBuilder::new(if off % 2 == 0 { op::SETLK } else { op::GETLK }, u, ino).arg(&abi::LkIn { fh, owner: off, lk: abi::FileLock { start: off, end: u64::from(size), typ: size % 3, pid: 1 }, lk_flags: size & 1, padding: 0 }).build(),
                    20 => RequestBuilder::new(op::TMPFILE, u, ino).arg(&abi::CreateIn { mode: 0o600, ..Default::default() }).name(b"/").build(),
                    21 => RequestBuilder::new(op::LSEEK, u, ino).arg(&abi::LseekIn { fh, offset: off, whence: size % 5, padding: 0 }).build(),
                    22 => RequestBuilder::new(op::COPY_FILE_RANGE, u, ino).arg(&abi::CopyFileRangeIn { fh_in: fh, off_in: off % 4096, nodeid_out: ino, fh_out: fh, off_out: off % 8192, len: u64::from(size), flags: 0 }).build(),
                    _ => RequestBuilder::new(op::FALLOCATE, u, ino).arg(&abi::FallocateIn { fh, offset: off % 4096, length: u64::from(size % 8192), mode: size % 2, padding: 0 }).build(),
                };
                let res = send_checked(&s, &bytes, 1 << 21);
                prop_assert!(res.is_ok() || kind == 7);
            }
        }
    }
}

/// Rough per-request cost of the server on top of a trivial file system
/// (`cargo test --release -p vhostfs-server -- --ignored --nocapture per_request_cost`).
#[test]
#[ignore]
fn per_request_cost() {
    let s = ready_server();
    let (f, fh) = create(&s, 1, b"f");
    ok_body(&s, &write_req(f, fh, 0, &[1u8; 4096]));
    let getattr = req(op::GETATTR, f).arg(&abi::GetattrIn::default()).build();
    let read = read_req(op::READ, f, fh, 0, 4096);
    let mut buf = Vec::with_capacity(8192);
    for (what, bytes) in [("GETATTR", &getattr), ("READ 4k", &read)] {
        let n = 200_000;
        let t = std::time::Instant::now();
        for _ in 0..n {
            let mut r = SliceReader::new(bytes);
            let mut w = VecWriter::with_buffer(std::mem::take(&mut buf), 8192);
            s.handle_message(&mut r, &mut w).unwrap();
            buf = w.into_inner();
        }
        println!("{what}: {:?} per request", t.elapsed() / n);
    }
}
