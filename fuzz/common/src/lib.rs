//! Helpers shared by the vhostfs fuzz targets and the seed-corpus generator.
//!
//! # Input format of the request-server targets
//!
//! ```text
//! byte 0      flags: bit 0 set = do NOT send a valid INIT first;
//!                    bits 1..=3 = reply buffer size class (index into REPLY_SIZES)
//! then        messages, each a little-endian u16 length followed by that many bytes
//!             (the last one is truncated at the end of the input)
//! ```
//!
//! Each message goes to `Server::handle_message` as one request, so the fuzzer controls every
//! byte of every header, including `len` (which then need not match the message length).
//! Sending a valid INIT first by default lets the fuzzer reach every opcode handler without
//! having to discover INIT itself.

#![warn(missing_docs)]

use vhostfs_server::abi;
use vhostfs_server::testing::{init_request, RequestBuilder, ALL_CLIENT_FLAGS};
use vhostfs_server::{FileSystem, ReplyWriter, Server, SliceReader, VecWriter};
use zerocopy::FromBytes;

/// Reply buffer sizes selectable by the flags byte.
pub const REPLY_SIZES: [usize; 8] = [0, 15, 16, 80, 256, 4096, 65536, (1 << 20) + 4096];

/// Most messages handled per input (bounds the time per run).
pub const MAX_MESSAGES: usize = 64;

/// A decoded fuzz input.
#[derive(Debug)]
pub struct Input<'a> {
    /// Send a valid INIT before the fuzzer's messages.
    pub auto_init: bool,
    /// Size of the reply buffer for every message.
    pub reply_limit: usize,
    /// The requests.
    pub messages: Vec<&'a [u8]>,
}

/// Splits fuzzer bytes into an [`Input`].
pub fn decode(data: &[u8]) -> Input<'_> {
    let (flags, mut rest) = match data.split_first() {
        Some((f, r)) => (*f, r),
        None => (0, &[][..]),
    };
    let mut messages = Vec::new();
    while rest.len() >= 2 && messages.len() < MAX_MESSAGES {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
        let n = len.min(rest.len());
        messages.push(&rest[..n]);
        rest = &rest[n..];
    }
    Input {
        auto_init: flags & 1 == 0,
        reply_limit: REPLY_SIZES[usize::from((flags >> 1) & 7)],
        messages,
    }
}

/// Encodes messages in the input format (the inverse of [`decode`]).
pub fn encode(auto_init: bool, size_class: u8, messages: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![u8::from(!auto_init) | ((size_class & 7) << 1)];
    for m in messages {
        let len = u16::try_from(m.len()).expect("seed message too long");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(m);
    }
    out
}

/// The INIT request sent before the fuzzer's messages.
pub fn init() -> Vec<u8> {
    init_request(0x1000, ALL_CLIENT_FLAGS)
}

/// Checks what must hold for any reply, whatever the request: the header's `len` is the number
/// of bytes written, the `unique` is the request's, the error is 0 or a negative errno, and an
/// error reply carries no body.
pub fn check_reply(request: &[u8], reply: &[u8], written: usize) {
    assert_eq!(reply.len(), written, "reported length differs from bytes written");
    if written == 0 {
        return;
    }
    let (h, _) = abi::OutHeader::read_from_prefix(reply).expect("reply shorter than a header");
    assert_eq!(h.len as usize, written, "reply header len is not the reply length");
    if let Ok((req, _)) = abi::InHeader::read_from_prefix(request) {
        assert_eq!(h.unique, req.unique, "reply unique differs from the request's");
    }
    assert!(h.error <= 0 && h.error > -4096, "bad error field {}", h.error);
    if h.error != 0 {
        assert_eq!(written, std::mem::size_of::<abi::OutHeader>(), "error reply with a body");
    }
}

/// Runs every message of `data` through `server`, checking each reply.
pub fn run_server<F: FileSystem>(server: &Server<F>, data: &[u8]) {
    let input = decode(data);
    if input.auto_init {
        let req = init();
        let mut w = VecWriter::new(4096);
        let n = server
            .handle_message(&mut SliceReader::new(&req), &mut w)
            .expect("INIT must get a reply");
        check_reply(&req, w.as_slice(), n);
    }
    for m in &input.messages {
        let mut w = VecWriter::new(input.reply_limit);
        if let Ok(n) = server.handle_message(&mut SliceReader::new(m), &mut w) {
            assert!(n <= input.reply_limit);
            assert_eq!(w.bytes_written(), n);
            check_reply(m, w.as_slice(), n);
        }
    }
}

fn req(op: u32, unique: u64, node: u64) -> RequestBuilder {
    RequestBuilder::new(op, unique, node).creds(0, 0, 1)
}

/// Seed sessions: a few valid request sequences covering every opcode. Node ids and handles
/// assume a file system that numbers new inodes from 2 and handles from 1 (as the server's
/// `FakeFs` does); against another file system they still make valid-looking requests.
pub fn seed_sessions() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    use abi::opcode as op;
    let root = abi::ROOT_ID;
    let mut s: Vec<(&'static str, Vec<Vec<u8>>)> = Vec::new();
    let create = |u, name: &[u8]| {
        req(op::CREATE, u, root)
            .arg(&abi::CreateIn {
                flags: libc::O_RDWR as u32,
                mode: libc::S_IFREG | 0o644,
                umask: 0o022,
                open_flags: 0,
            })
            .name(name)
            .build()
    };
    let write = |u, node, fh, off, data: &[u8]| {
        req(op::WRITE, u, node)
            .arg(&abi::WriteIn {
                fh,
                offset: off,
                size: data.len() as u32,
                ..Default::default()
            })
            .bytes(data)
            .build()
    };
    let read = |u, node, fh, off, size| {
        req(op::READ, u, node)
            .arg(&abi::ReadIn {
                fh,
                offset: off,
                size,
                ..Default::default()
            })
            .build()
    };
    let lookup = |u, parent, name: &[u8]| req(op::LOOKUP, u, parent).name(name).build();
    let getattr = |u, node| req(op::GETATTR, u, node).arg(&abi::GetattrIn::default()).build();

    s.push(("lookup_getattr_statfs", vec![
        lookup(2, root, b"."),
        lookup(3, root, b"missing"),
        getattr(4, root),
        req(op::STATFS, 5, root).build(),
        req(op::ACCESS, 6, root).arg(&abi::AccessIn { mask: 4, padding: 0 }).build(),
    ]));
    s.push(("create_write_read", vec![
        create(2, b"f"),
        write(3, 2, 1, 0, b"hello, world"),
        read(4, 2, 1, 0, 4096),
        req(op::FLUSH, 5, 2).arg(&abi::FlushIn { fh: 1, ..Default::default() }).build(),
        req(op::FSYNC, 6, 2).arg(&abi::FsyncIn { fh: 1, ..Default::default() }).build(),
        req(op::FALLOCATE, 7, 2)
            .arg(&abi::FallocateIn { fh: 1, offset: 0, length: 8192, mode: 0, padding: 0 })
            .build(),
        req(op::LSEEK, 8, 2)
            .arg(&abi::LseekIn { fh: 1, offset: 0, whence: libc::SEEK_DATA as u32, padding: 0 })
            .build(),
        req(op::RELEASE, 9, 2).arg(&abi::ReleaseIn { fh: 1, ..Default::default() }).build(),
        req(op::FORGET, 10, 2).arg(&abi::ForgetIn { nlookup: 1 }).build(),
    ]));
    s.push(("setattr", vec![
        create(2, b"g"),
        req(op::SETATTR, 3, 2)
            .arg(&abi::SetattrIn {
                valid: (1 << 0) | (1 << 3) | (1 << 4) | (1 << 5),
                fh: 1,
                size: 100,
                mode: 0o600,
                atime: 1,
                mtime: 2,
                ..Default::default()
            })
            .build(),
        getattr(4, 2),
    ]));
    s.push(("dirs", vec![
        req(op::MKDIR, 2, root).arg(&abi::MkdirIn { mode: 0o755, umask: 0o022 }).name(b"d").build(),
        req(op::MKNOD, 3, 2)
            .arg(&abi::MknodIn { mode: libc::S_IFIFO | 0o644, rdev: 0, umask: 0, padding: 0 })
            .name(b"fifo")
            .build(),
        req(op::SYMLINK, 4, 2).name(b"l").name(b"fifo").build(),
        req(op::READLINK, 5, 4).build(),
        req(op::LINK, 6, 2).arg(&abi::LinkIn { oldnodeid: 3 }).name(b"fifo2").build(),
        req(op::OPENDIR, 7, 2).arg(&abi::OpenIn::default()).build(),
        req(op::READDIR, 8, 2).arg(&abi::ReadIn { fh: 1, size: 4096, ..Default::default() }).build(),
        req(op::READDIRPLUS, 9, 2)
            .arg(&abi::ReadIn { fh: 1, size: 4096, ..Default::default() })
            .build(),
        req(op::FSYNCDIR, 10, 2).arg(&abi::FsyncIn { fh: 1, ..Default::default() }).build(),
        req(op::RELEASEDIR, 11, 2).arg(&abi::ReleaseIn { fh: 1, ..Default::default() }).build(),
        req(op::RENAME, 12, 2).arg(&abi::RenameIn { newdir: root }).name(b"fifo2").name(b"moved").build(),
        req(op::RENAME2, 13, root)
            .arg(&abi::Rename2In { newdir: 2, flags: 0, padding: 0 })
            .name(b"moved")
            .name(b"back")
            .build(),
        req(op::UNLINK, 14, 2).name(b"back").build(),
        req(op::UNLINK, 15, 2).name(b"l").build(),
        req(op::UNLINK, 16, 2).name(b"fifo").build(),
        req(op::RMDIR, 17, root).name(b"d").build(),
        req(op::BATCH_FORGET, 0, 0)
            .arg(&abi::BatchForgetIn { count: 2, dummy: 0 })
            .arg(&abi::ForgetOne { nodeid: 2, nlookup: 1 })
            .arg(&abi::ForgetOne { nodeid: 3, nlookup: 1 })
            .build(),
    ]));
    s.push(("xattr", vec![
        create(2, b"x"),
        req(op::SETXATTR, 3, 2)
            .arg(&abi::SetxattrIn { size: 3, flags: 0, setxattr_flags: 0, padding: 0 })
            .name(b"user.k")
            .bytes(b"val")
            .build(),
        req(op::GETXATTR, 4, 2).arg(&abi::GetxattrIn { size: 64, padding: 0 }).name(b"user.k").build(),
        req(op::GETXATTR, 5, 2).arg(&abi::GetxattrIn { size: 0, padding: 0 }).name(b"user.k").build(),
        req(op::LISTXATTR, 6, 2).arg(&abi::GetxattrIn { size: 256, padding: 0 }).build(),
        req(op::REMOVEXATTR, 7, 2).name(b"user.k").build(),
    ]));
    // A write lock of bytes 0..=end by owner 7 through handle 1 of node 2 (a flock when
    // lk_flags is 1).
    let write_lock = |opcode, u, end, lk_flags| {
        req(opcode, u, 2)
            .arg(&abi::LkIn {
                fh: 1,
                owner: 7,
                lk: abi::FileLock { start: 0, end, typ: libc::F_WRLCK as u32, pid: 1 },
                lk_flags,
                padding: 0,
            })
            .build()
    };
    s.push(("locks", vec![
        create(2, b"lk"),
        write_lock(op::GETLK, 3, 99, 0),
        write_lock(op::SETLK, 4, 99, 0),
        write_lock(op::SETLK, 5, 0, 1),
        req(op::INTERRUPT, 6, 0).arg(&abi::InterruptIn { unique: 5 }).build(),
    ]));
    s.push(("copy_range_and_misc", vec![
        create(2, b"a"),
        create(3, b"b"),
        write(4, 2, 1, 0, &[7u8; 300]),
        req(op::COPY_FILE_RANGE, 5, 2)
            .arg(&abi::CopyFileRangeIn {
                fh_in: 1,
                off_in: 0,
                nodeid_out: 3,
                fh_out: 2,
                off_out: 10,
                len: 200,
                flags: 0,
            })
            .build(),
        req(op::SYNCFS, 6, root).arg(&abi::SyncfsIn::default()).build(),
        req(op::BMAP, 7, 2).arg(&abi::BmapIn { block: 0, blocksize: 4096, padding: 0 }).build(),
        req(op::IOCTL, 8, 2).bytes(&[0u8; 32]).build(),
        req(op::POLL, 9, 2).bytes(&[0u8; 24]).build(),
        req(op::TMPFILE, 10, root)
            .arg(&abi::CreateIn { flags: libc::O_RDWR as u32, mode: 0o600, umask: 0, open_flags: 0 })
            .name(b"")
            .build(),
        req(op::STATX, 11, 2).bytes(&[0u8; 16]).build(),
        req(op::OPEN, 12, 2).arg(&abi::OpenIn { flags: libc::O_RDONLY as u32, open_flags: 0 }).build(),
        req(op::SETUPMAPPING, 13, 2).arg(&abi::SetupMappingIn::default()).build(),
        req(op::DESTROY, 14, 0).build(),
    ]));
    s.push(("supp_groups_secctx", vec![
        req(op::CREATE, 2, root)
            .arg(&abi::CreateIn { flags: libc::O_RDWR as u32, mode: 0o644, umask: 0, open_flags: 0 })
            .name(b"ctx")
            .security_ctx(b"security.selinux", b"system_u:object_r:tmp_t:s0\0")
            .supp_group(1234)
            .build(),
        req(op::MKDIR, 3, root)
            .arg(&abi::MkdirIn { mode: 0o755, umask: 0 })
            .name(b"gd")
            .supp_group(5)
            .build(),
    ]));
    s
}
