//! Request decoding, dispatch to the [`FileSystem`], and reply encoding.
//!
//! # Request checks
//! Every request starts with a 40-byte `fuse_in_header`. Its `len` must equal exactly the
//! number of bytes the transport delivered (header included); anything else is `EINVAL`.
//! Request extensions (`total_extlen * 8` bytes) sit at the end of the request and must fit.
//! Except for WRITE, the whole request body is copied once into a buffer bounded by what the
//! transport delivered and by [`MAX_REQUEST_BODY`], then decoded from there with
//! `zerocopy`; WRITE data stays in the transport's buffers and is moved to the file by the
//! file system through [`ZeroCopyReader`](crate::io::ZeroCopyReader). WRITE ignores request
//! extensions (the kernel sends none with it) but still accounts for their length.
//!
//! # Replies
//! A reply is a `fuse_out_header` (`len` = header plus body, `error` = 0 or `-errno`,
//! `unique`) and, on success, a body. Error replies have no body. FORGET, BATCH_FORGET,
//! INTERRUPT and NOTIFY_REPLY get no reply. When the reply writer cannot even hold a reply
//! header, the request is not executed and [`Server::handle_message`] returns an error.
//! Replies of fixed size are checked to fit before the file system is called (`EINVAL`
//! otherwise), so no operation with side effects runs when its reply cannot be sent. Errnos
//! outside 1..512 become `EIO` (the kernel refuses others). READ and READDIR(PLUS) stream
//! their body after a placeholder header that is filled in at the end; if the file system
//! fails after producing some data, the data is sent as a short success, like `read(2)`.
//!
//! # INIT
//! Every request before INIT gets `EIO`. An INIT on a live session (a guest that rebooted
//! while the device stayed connected) ends that session as [`Server::reset`] does and starts a
//! new one; an INIT racing another one in progress gets `EIO`. The minor version is `min(ours, theirs)`; clients older than 7.27
//! get `EPROTO`; a client with a newer major gets a reply carrying only our major and minor,
//! as the protocol asks. See [`SERVER_INIT_FLAGS`] and [`UNSUPPORTED_INIT_FLAGS`] for which
//! capability bits come from where.

//!
//! # Opcodes
//! | opcode | arguments decoded | reply |
//! |---|---|---|
//! | INIT | `fuse_init_in` (16-byte legacy or 64-byte) | `fuse_init_out` |
//! | DESTROY | — | header only; session reset ([`FileSystem::destroy`]) |
//! | LOOKUP, UNLINK, RMDIR | name | `fuse_entry_out` / header |
//! | FORGET, BATCH_FORGET | `fuse_forget_in`; batch count bounded by the payload | none |
//! | GETATTR, SETATTR | `fuse_getattr_in` (`GETATTR_FH`), `fuse_setattr_in` (`FATTR_*`) | `fuse_attr_out` |
//! | READLINK | — | target bytes |
//! | SYMLINK | name, target | `fuse_entry_out` |
//! | MKNOD, MKDIR | `fuse_mknod_in`/`fuse_mkdir_in`, name | `fuse_entry_out` |
//! | RENAME, RENAME2 | `fuse_rename_in`/`fuse_rename2_in`, two names | header |
//! | LINK | `fuse_link_in`, name | `fuse_entry_out` |
//! | OPEN, OPENDIR | `fuse_open_in` | `fuse_open_out` |
//! | CREATE, TMPFILE | `fuse_create_in`, name (TMPFILE's is ignored) | entry + open out |
//! | READ | `fuse_read_in`; size capped by `max_pages` and the reply buffer | data (zero-copy) |
//! | WRITE | `fuse_write_in`; size ≤ payload and ≤ `max_write` | `fuse_write_out` |
//! | STATFS | — | `fuse_statfs_out` |
//! | RELEASE, RELEASEDIR, FLUSH, FSYNC, FSYNCDIR | `fuse_release_in`, `fuse_flush_in`, `fuse_fsync_in` | header |
//! | SETXATTR | `fuse_setxattr_in` (8 or 16 bytes by `SETXATTR_EXT`), name, value (= size) | header |
//! | GETXATTR, LISTXATTR | `fuse_getxattr_in` (+ name) | `fuse_getxattr_out` for size 0, else data |
//! | REMOVEXATTR | name | header |
//! | READDIR, READDIRPLUS | `fuse_read_in` | packed 8-aligned dirents |
//! | GETLK, SETLK, SETLKW | `fuse_lk_in` (`LK_FLOCK`) | `fuse_lk_out` / header |
//! | INTERRUPT | `fuse_interrupt_in` | none (interrupts a waiting SETLKW) |
//! | ACCESS, FALLOCATE, LSEEK, COPY_FILE_RANGE, SYNCFS | their `*_in` | header / `lseek_out` / `write_out` |
//! | NOTIFY_REPLY | — | none |
//! | IOCTL, POLL, BMAP, SETUPMAPPING, REMOVEMAPPING, STATX, CUSE_INIT, unknown | — | `ENOSYS` |

mod decode;
mod interrupt;
mod reply;
#[cfg(test)]
mod tests;

use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use vhostfs_fuse_abi as abi;
use vhostfs_fuse_abi::{init_flags as initf, opcode as op};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::filesystem::{
    Context, DirEntry, FileSystem, IoFlags, Lock, SetAttr, SetTime, XattrReply,
};
use crate::io::{ReplyWriter, RequestReader};

use decode::{einval, Args, ExtPolicy, PATH_MAX, XATTR_SIZE_MAX};
pub use interrupt::INTERRUPT_SIGNAL;
use interrupt::{Interrupts, Registered};
use reply::{
    attr_out, entry_out, errno_of, lk_out, open_out, statfs_out, write_error, write_reply,
    write_result, CreateOut, Limited, OUT_HEADER_LEN,
};

/// The value of `$res`, or (for an error) a return from the calling handler with the error
/// reply for it, written to `$w` for request `$u`.
macro_rules! or_error_reply {
    ($res:expr, $w:expr, $u:expr) => {
        match $res {
            Ok(v) => v,
            Err(e) => return write_error($w, $u, errno_of(&e)),
        }
    };
}

/// Size of the request header.
const IN_HEADER_LEN: usize = std::mem::size_of::<abi::InHeader>();

/// Upper bound on a non-WRITE request body (arguments plus extensions) when `max_write` is
/// small: enough for the largest xattr value, two names, a symlink target and the largest
/// extension area. Bodies larger than `max(MAX_REQUEST_BODY, max_write + 64 KiB)` get
/// `EINVAL` without being read.
pub const MAX_REQUEST_BODY: usize = 1 << 20;

/// Request bodies up to this size are decoded from a stack buffer instead of the heap.
const SMALL_BODY: usize = 512;

/// Capability bits the server itself asks for whenever the client offers them, because they
/// concern how requests are transported and dispatched, not file-system policy: parallel
/// reads and directory operations, large writes, `max_pages`, async direct I/O, and the
/// 64-bit flags (`INIT_EXT`). Everything else (writeback cache, readdirplus, locks, ACLs,
/// killpriv, security contexts, supplementary groups, export support, ...) is decided by
/// [`FileSystem::init`].
pub const SERVER_INIT_FLAGS: u64 = initf::ASYNC_READ
    | initf::BIG_WRITES
    | initf::MAX_PAGES
    | initf::PARALLEL_DIROPS
    | initf::ASYNC_DIO
    | initf::INIT_EXT;

/// Capability bits never granted, whatever the file system asks, because the server does not
/// implement what they imply: DAX mappings, FUSE passthrough (backing ids), idmapped mounts,
/// ioctls on directories and the reserved bit.
pub const UNSUPPORTED_INIT_FLAGS: u64 = initf::MAP_ALIGNMENT
    | initf::HAS_INODE_DAX
    | initf::PASSTHROUGH
    | initf::ALLOW_IDMAP
    | initf::HAS_IOCTL_DIR
    | initf::INIT_RESERVED;

/// Minor version from which security contexts and supplementary groups arrive as request
/// extensions (older clients lay them out differently, so we do not negotiate them there).
const EXTENSIONS_MINOR: u32 = 38;

/// Largest COPY_FILE_RANGE length asked of the file system: its reply carries a `u32`, so
/// never more than fits, page aligned (as the kernel itself clamps).
const COPY_FILE_RANGE_MAX: u64 = 0xffff_f000;

const STATE_UNINIT: u8 = 0;
const STATE_INITIALIZING: u8 = 1;
const STATE_READY: u8 = 2;

/// Settings of the server that do not belong to any one file system.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Largest WRITE payload (and READ size) to negotiate, in bytes.
    pub max_write: u32,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self { max_write: 1 << 20 }
    }
}

/// Number of opcode slots counted by [`ServerStats`] (opcodes 0..STATS_SLOTS; slot 0 counts
/// everything unknown).
const STATS_SLOTS: usize = 64;

/// Per-opcode request counters, for observability.
pub struct ServerStats {
    requests: [AtomicU64; STATS_SLOTS],
    errors: [AtomicU64; STATS_SLOTS],
}

/// One opcode's count in a [`ServerStats::snapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpCount {
    /// The opcode (0 for unknown opcodes).
    pub opcode: u32,
    /// Its name ("UNKNOWN" for slot 0).
    pub name: &'static str,
    /// Requests received.
    pub requests: u64,
    /// Requests answered with an error.
    pub errors: u64,
}

impl ServerStats {
    fn new() -> Self {
        Self {
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            errors: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn slot(opcode: u32) -> usize {
        usize::try_from(opcode)
            .ok()
            .filter(|&s| s < STATS_SLOTS)
            .unwrap_or(0)
    }

    fn count(&self, opcode: u32) {
        self.requests[Self::slot(opcode)].fetch_add(1, Ordering::Relaxed);
    }

    fn count_error(&self, opcode: u32) {
        self.errors[Self::slot(opcode)].fetch_add(1, Ordering::Relaxed);
    }

    /// The opcodes seen so far with their counts.
    pub fn snapshot(&self) -> Vec<OpCount> {
        self.requests
            .iter()
            .enumerate()
            .filter_map(|(slot, c)| {
                let n = c.load(Ordering::Relaxed);
                (n > 0).then(|| OpCount {
                    opcode: slot as u32,
                    name: op::name(slot as u32),
                    requests: n,
                    errors: self.errors[slot].load(Ordering::Relaxed),
                })
            })
            .collect()
    }
}

/// Serves FUSE requests from any transport against one [`FileSystem`].
///
/// All methods take `&self`; one server may be shared by several queue threads.
pub struct Server<F> {
    fs: F,
    options: ServerOptions,
    state: AtomicU8,
    /// Negotiated capability bits (valid once `state` is READY).
    flags: AtomicU64,
    /// Negotiated minor version.
    minor: AtomicU32,
    interrupts: Interrupts,
    stats: ServerStats,
}

impl<F: FileSystem> Server<F> {
    /// A server for `fs`.
    ///
    /// The first server made in a process installs a do-nothing handler for
    /// [`INTERRUPT_SIGNAL`] (`SIGUSR2`), used to interrupt waiting SETLKW requests.
    pub fn new(fs: F, options: ServerOptions) -> Self {
        interrupt::install_handler();
        Self {
            fs,
            options,
            state: AtomicU8::new(STATE_UNINIT),
            flags: AtomicU64::new(0),
            minor: AtomicU32::new(0),
            interrupts: Interrupts::default(),
            stats: ServerStats::new(),
        }
    }

    /// The file system behind this server.
    pub fn fs(&self) -> &F {
        &self.fs
    }

    /// The options this server was made with.
    pub fn options(&self) -> &ServerOptions {
        &self.options
    }

    /// Per-opcode request counters.
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }

    /// The capability bits negotiated by INIT, or `None` before INIT completed.
    pub fn negotiated_flags(&self) -> Option<u64> {
        (self.state.load(Ordering::Acquire) == STATE_READY)
            .then(|| self.flags.load(Ordering::Relaxed))
    }

    /// Forgets the session (as DESTROY does, calling [`FileSystem::destroy`]) so that the next
    /// request must be INIT again. For transports whose device is reset without DESTROY (a
    /// guest reboot, a vhost-user reset).
    pub fn reset(&self) {
        if self.state.swap(STATE_UNINIT, Ordering::AcqRel) != STATE_UNINIT {
            self.fs.destroy();
        }
        self.flags.store(0, Ordering::Relaxed);
    }

    /// The protocol minor version negotiated by INIT, or `None` before INIT completed.
    pub fn negotiated_minor(&self) -> Option<u32> {
        (self.state.load(Ordering::Acquire) == STATE_READY)
            .then(|| self.minor.load(Ordering::Relaxed))
    }

    fn max_pages(&self) -> u16 {
        u16::try_from(self.options.max_write.div_ceil(4096).max(1)).unwrap_or(u16::MAX)
    }

    /// Largest READ size served.
    fn max_read(&self) -> usize {
        usize::from(self.max_pages()) * 4096
    }

    fn max_body(&self) -> usize {
        MAX_REQUEST_BODY.max(self.options.max_write as usize + (64 << 10))
    }

    fn negotiated(&self, bit: u64) -> bool {
        self.flags.load(Ordering::Relaxed) & bit != 0
    }

    /// Handles one request read from `r`, writing its reply (header included) to `w`.
    ///
    /// Returns the number of reply bytes written; 0 when the request takes no reply (FORGET,
    /// BATCH_FORGET, INTERRUPT, NOTIFY_REPLY). Malformed requests get an error reply, never a panic. An
    /// `Err` means only that the reply could not be written (the writer is too small or
    /// failed) or that not even a request header could be read; the transport should drop
    /// the request.
    pub fn handle_message(
        &self,
        r: &mut dyn RequestReader,
        w: &mut dyn ReplyWriter,
    ) -> io::Result<usize> {
        let mut hb = [0u8; IN_HEADER_LEN];
        if r.remaining() < IN_HEADER_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request shorter than a FUSE header",
            ));
        }
        r.read_exact(&mut hb)?;
        let hdr = abi::InHeader::read_from_bytes(&hb).map_err(|_| einval())?;
        self.stats.count(hdr.opcode);
        tracing::trace!(
            opcode = op::name(hdr.opcode),
            unique = hdr.unique,
            nodeid = hdr.nodeid,
            len = hdr.len,
            "request"
        );
        reply::take_last_error();
        let res = self.handle(&hdr, r, w);
        if let Some(errno) = reply::take_last_error() {
            self.stats.count_error(hdr.opcode);
            tracing::trace!(unique = hdr.unique, errno, "error reply");
        }
        res
    }

    fn handle(
        &self,
        hdr: &abi::InHeader,
        r: &mut dyn RequestReader,
        w: &mut dyn ReplyWriter,
    ) -> io::Result<usize> {
        let opcode = hdr.opcode;
        let unique = hdr.unique;
        // NOTIFY_REPLY (the answer to a NOTIFY_RETRIEVE, which we never send) takes no
        // reply either.
        let no_reply = matches!(
            opcode,
            op::FORGET | op::BATCH_FORGET | op::INTERRUPT | op::NOTIFY_REPLY
        );
        if !no_reply && w.available() < OUT_HEADER_LEN {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let fail = |w: &mut dyn ReplyWriter, errno: i32| -> io::Result<usize> {
            if no_reply {
                Ok(0)
            } else {
                write_error(w, unique, errno)
            }
        };

        let body_len = match (hdr.len as usize).checked_sub(IN_HEADER_LEN) {
            Some(n) if n == r.remaining() => n,
            _ => return fail(w, libc::EINVAL),
        };
        let ext_len = usize::from(hdr.total_extlen) * 8;
        if ext_len > body_len {
            return fail(w, libc::EINVAL);
        }

        if opcode != op::INIT && self.state.load(Ordering::Acquire) != STATE_READY {
            return fail(w, libc::EIO);
        }
        if let Some(n) = fixed_reply_len(opcode) {
            if w.available() < OUT_HEADER_LEN + n {
                return fail(w, libc::EINVAL);
            }
        }

        let mut ctx = Context {
            uid: hdr.uid,
            gid: hdr.gid,
            pid: hdr.pid,
            ..Context::default()
        };

        if opcode == op::WRITE {
            return self.do_write(&ctx, hdr, body_len - ext_len, r, w);
        }

        if body_len > self.max_body() {
            return fail(w, libc::EINVAL);
        }
        // Most requests are small: decode them from the stack.
        let mut stack = [0u8; SMALL_BODY];
        let mut heap;
        let body: &mut [u8] = if body_len <= SMALL_BODY {
            &mut stack[..body_len]
        } else {
            heap = vec![0u8; body_len];
            &mut heap
        };
        if r.read_exact(body).is_err() {
            return fail(w, libc::EINVAL);
        }
        let (arg_bytes, ext) = body.split_at(body_len - ext_len);
        if !ext.is_empty() {
            let policy = ExtPolicy {
                security_ctx: self.negotiated(initf::SECURITY_CTX),
                supp_group: self.negotiated(initf::CREATE_SUPP_GROUP),
            };
            if let Err(e) = decode::parse_extensions(ext, policy, &mut ctx) {
                return fail(w, errno_of(&e));
            }
        }
        let mut args = Args::new(arg_bytes);
        self.dispatch(&ctx, hdr, &mut args, w)
    }

    fn dispatch(
        &self,
        ctx: &Context,
        hdr: &abi::InHeader,
        a: &mut Args<'_>,
        w: &mut dyn ReplyWriter,
    ) -> io::Result<usize> {
        let u = hdr.unique;
        let ino = hdr.nodeid;
        let fs = &self.fs;
        match hdr.opcode {
            op::INIT => self.do_init(a, u, w),
            op::DESTROY => {
                self.reset();
                write_reply(w, u, 0, &[])
            }
            op::FORGET => {
                if let Ok(f) = a.obj::<abi::ForgetIn>() {
                    fs.forget(ino, f.nlookup);
                }
                Ok(0)
            }
            op::BATCH_FORGET => {
                self.do_batch_forget(a);
                Ok(0)
            }
            op::INTERRUPT => {
                if let Ok(i) = a.obj::<abi::InterruptIn>() {
                    self.interrupts.interrupt(i.unique);
                }
                Ok(0)
            }
            op::LOOKUP => {
                let res = a.name().and_then(|n| fs.lookup(ctx, ino, n));
                write_result(w, u, res.map(|e| entry_out(&e)))
            }
            op::GETATTR => reply_to(a, w, u, |g: abi::GetattrIn| {
                let fh = (g.getattr_flags & abi::flags::GETATTR_FH != 0).then_some(g.fh);
                fs.getattr(ctx, ino, fh).map(|a| attr_out(&a))
            }),
            op::SETATTR => reply_to(a, w, u, |s: abi::SetattrIn| {
                let s = setattr_from_wire(&s)?;
                fs.setattr(ctx, ino, s).map(|a| attr_out(&a))
            }),
            op::READLINK => self.do_readlink(ctx, ino, u, w),
            op::SYMLINK => {
                let res = (|| {
                    let name = a.name()?;
                    let target = a.cstr()?;
                    if target.to_bytes_with_nul().len() > PATH_MAX {
                        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
                    }
                    fs.symlink(ctx, target, ino, name)
                })();
                write_result(w, u, res.map(|e| entry_out(&e)))
            }
            op::MKNOD => {
                let res = a.obj::<abi::MknodIn>().and_then(|m| {
                    let name = a.name()?;
                    fs.mknod(ctx, ino, name, m.mode, m.rdev, m.umask)
                });
                write_result(w, u, res.map(|e| entry_out(&e)))
            }
            op::MKDIR => {
                let res = a.obj::<abi::MkdirIn>().and_then(|m| {
                    let name = a.name()?;
                    fs.mkdir(ctx, ino, name, m.mode, m.umask)
                });
                write_result(w, u, res.map(|e| entry_out(&e)))
            }
            op::UNLINK => write_result(w, u, a.name().and_then(|n| fs.unlink(ctx, ino, n))),
            op::RMDIR => write_result(w, u, a.name().and_then(|n| fs.rmdir(ctx, ino, n))),
            op::RENAME | op::RENAME2 => {
                let res = (|| {
                    let (newdir, flags) = if hdr.opcode == op::RENAME {
                        (a.obj::<abi::RenameIn>()?.newdir, 0)
                    } else {
                        let r2 = a.obj::<abi::Rename2In>()?;
                        (r2.newdir, r2.flags)
                    };
                    let old = a.name()?;
                    let new = a.name()?;
                    fs.rename(ctx, ino, old, newdir, new, flags)
                })();
                write_result(w, u, res)
            }
            op::LINK => {
                let res = a.obj::<abi::LinkIn>().and_then(|l| {
                    let name = a.name()?;
                    fs.link(ctx, l.oldnodeid, ino, name)
                });
                write_result(w, u, res.map(|e| entry_out(&e)))
            }
            op::OPEN => reply_to(a, w, u, |o: abi::OpenIn| {
                fs.open(ctx, ino, o.flags, o.open_flags)
                    .map(|o| open_out(&o))
            }),
            op::CREATE => {
                let res = a.obj::<abi::CreateIn>().and_then(|c| {
                    let name = a.name()?;
                    fs.create(ctx, ino, name, c.mode, c.flags, c.umask, c.open_flags)
                });
                write_result(w, u, res.map(create_out))
            }
            op::TMPFILE => {
                // The kernel sends the placeholder name "/" of the unnamed dentry; it must be
                // NUL-terminated but is otherwise ignored.
                let res = a.obj::<abi::CreateIn>().and_then(|c| {
                    a.cstr()?;
                    fs.tmpfile(ctx, ino, c.mode, c.flags, c.umask)
                });
                write_result(w, u, res.map(create_out))
            }
            op::READ => stream_reply(a, u, w, |rin, room, w| {
                self.read_body(ctx, ino, rin, room, w)
            }),
            op::STATFS => write_result(w, u, fs.statfs(ctx, ino).map(|s| statfs_out(&s))),
            op::RELEASE => reply_to(a, w, u, |rel: abi::ReleaseIn| {
                let flush = rel.release_flags & abi::flags::RELEASE_FLUSH != 0;
                let flock = rel.release_flags & abi::flags::RELEASE_FLOCK_UNLOCK != 0;
                let owner = (flush || flock).then_some(rel.lock_owner);
                fs.release(ctx, ino, rel.flags, rel.fh, flush, flock, owner)
            }),
            op::RELEASEDIR => reply_to(a, w, u, |rel: abi::ReleaseIn| {
                fs.releasedir(ctx, ino, rel.flags, rel.fh)
            }),
            op::FSYNC | op::FSYNCDIR => reply_to(a, w, u, |f: abi::FsyncIn| {
                let datasync = f.fsync_flags & abi::flags::FSYNC_FDATASYNC != 0;
                if hdr.opcode == op::FSYNC {
                    fs.fsync(ctx, ino, datasync, f.fh)
                } else {
                    fs.fsyncdir(ctx, ino, datasync, f.fh)
                }
            }),
            op::SETXATTR => write_result(w, u, self.do_setxattr(ctx, ino, a)),
            op::GETXATTR | op::LISTXATTR => self.do_getxattr(ctx, hdr.opcode, ino, a, u, w),
            op::REMOVEXATTR => {
                let res = a.xattr_name().and_then(|n| fs.removexattr(ctx, ino, n));
                write_result(w, u, res)
            }
            op::FLUSH => reply_to(a, w, u, |f: abi::FlushIn| {
                fs.flush(ctx, ino, f.fh, f.lock_owner)
            }),
            op::OPENDIR => reply_to(a, w, u, |o: abi::OpenIn| {
                fs.opendir(ctx, ino, o.flags).map(|o| open_out(&o))
            }),
            op::READDIR | op::READDIRPLUS => stream_reply(a, u, w, |rin, room, w| {
                self.readdir_body(ctx, hdr.opcode, ino, rin, room, w)
            }),
            op::GETLK => reply_to(a, w, u, |lk: abi::LkIn| {
                let flock = lk.lk_flags & abi::flags::LK_FLOCK != 0;
                fs.getlk(ctx, ino, lk.fh, lk.owner, lock_from_wire(&lk.lk), flock)
                    .map(|l| lk_out(&l))
            }),
            op::SETLK | op::SETLKW => reply_to(a, w, u, |lk: abi::LkIn| {
                let flock = lk.lk_flags & abi::flags::LK_FLOCK != 0;
                let lock = lock_from_wire(&lk.lk);
                if hdr.opcode == op::SETLK {
                    return fs.setlk(ctx, ino, lk.fh, lk.owner, lock, flock, false);
                }
                match self.interrupts.register(u) {
                    Registered::AlreadyInterrupted => {
                        Err(io::Error::from_raw_os_error(libc::EINTR))
                    }
                    Registered::Waiting(reg) => {
                        let res = fs.setlk(ctx, ino, lk.fh, lk.owner, lock, flock, true);
                        drop(reg);
                        res
                    }
                }
            }),
            op::ACCESS => reply_to(a, w, u, |acc: abi::AccessIn| fs.access(ctx, ino, acc.mask)),
            op::FALLOCATE => reply_to(a, w, u, |f: abi::FallocateIn| {
                fs.fallocate(ctx, ino, f.fh, f.mode, f.offset, f.length)
            }),
            op::LSEEK => reply_to(a, w, u, |l: abi::LseekIn| {
                let offset = fs.lseek(ctx, ino, l.fh, l.offset, l.whence)?;
                Ok(abi::LseekOut { offset })
            }),
            op::COPY_FILE_RANGE => reply_to(a, w, u, |c: abi::CopyFileRangeIn| {
                let len = c.len.min(COPY_FILE_RANGE_MAX);
                let n = fs.copy_file_range(
                    ctx,
                    ino,
                    c.fh_in,
                    c.off_in,
                    c.nodeid_out,
                    c.fh_out,
                    c.off_out,
                    len,
                    c.flags,
                )?;
                Ok(abi::WriteOut {
                    size: (n as u64).min(len) as u32,
                    padding: 0,
                })
            }),
            op::SYNCFS => write_result(w, u, fs.syncfs(ctx, ino)),
            op::NOTIFY_REPLY => Ok(0),
            // IOCTL, POLL, BMAP, SETUPMAPPING, REMOVEMAPPING, STATX, CUSE_INIT and anything
            // unknown.
            _ => write_error(w, u, libc::ENOSYS),
        }
    }

    fn do_init(&self, a: &mut Args<'_>, u: u64, w: &mut dyn ReplyWriter) -> io::Result<usize> {
        let full = std::mem::size_of::<abi::InitIn>();
        let init: abi::InitIn = if a.remaining() >= full {
            or_error_reply!(a.obj(), w, u)
        } else {
            or_error_reply!(a.obj_prefix(abi::INIT_IN_LEGACY_SIZE), w, u)
        };
        if self.state.load(Ordering::Acquire) == STATE_READY {
            // The guest's FUSE client started over (a guest reboot or driver reload while the
            // device stayed connected; QEMU does not tell the backend). Linux never sends INIT
            // twice in one session, so drop the old session's inodes and handles and negotiate
            // afresh: a guest can only hurt its own session this way.
            tracing::info!("INIT on a live session: the guest restarted its FUSE client");
            self.reset();
        }
        if init.major > abi::KERNEL_VERSION {
            // Tell the client which major we speak; it may retry with that.
            let out = abi::InitOut {
                major: abi::KERNEL_VERSION,
                minor: abi::KERNEL_MINOR_VERSION,
                ..Default::default()
            };
            return write_reply(w, u, 0, out.as_bytes());
        }
        if init.major < abi::KERNEL_VERSION || init.minor < abi::MIN_KERNEL_MINOR_VERSION {
            tracing::warn!("unsupported FUSE protocol {}.{}", init.major, init.minor);
            return write_error(w, u, libc::EPROTO);
        }
        if self
            .state
            .compare_exchange(
                STATE_UNINIT,
                STATE_INITIALIZING,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            return write_error(w, u, libc::EIO);
        }

        let mut capable = u64::from(init.flags);
        if capable & initf::INIT_EXT != 0 {
            capable |= u64::from(init.flags2) << 32;
        }
        let wanted = match self.fs.init(capable) {
            Ok(f) => f,
            Err(e) => {
                self.state.store(STATE_UNINIT, Ordering::Release);
                return write_error(w, u, errno_of(&e));
            }
        };
        let minor = init.minor.min(abi::KERNEL_MINOR_VERSION);
        let mut enabled = wanted & !UNSUPPORTED_INIT_FLAGS;
        if minor < EXTENSIONS_MINOR {
            enabled &= !(initf::SECURITY_CTX | initf::CREATE_SUPP_GROUP);
        }
        enabled = (enabled | SERVER_INIT_FLAGS) & capable;
        if capable & initf::INIT_EXT == 0 {
            enabled &= u64::from(u32::MAX);
        }

        self.flags.store(enabled, Ordering::Relaxed);
        self.minor.store(minor, Ordering::Relaxed);
        self.state.store(STATE_READY, Ordering::Release);
        tracing::debug!(
            "INIT: protocol 7.{minor}, flags offered {capable:#x}, enabled {enabled:#x}"
        );

        let out = abi::InitOut {
            major: abi::KERNEL_VERSION,
            minor,
            max_readahead: init.max_readahead,
            flags: enabled as u32,
            max_background: u16::MAX,
            congestion_threshold: u16::MAX / 4 * 3,
            max_write: self.options.max_write,
            time_gran: 1,
            max_pages: self.max_pages(),
            map_alignment: 0,
            flags2: (enabled >> 32) as u32,
            max_stack_depth: 0,
            unused: [0; 6],
        };
        write_reply(w, u, 0, out.as_bytes())
    }

    fn do_batch_forget(&self, a: &mut Args<'_>) {
        let Ok(hdr) = a.obj::<abi::BatchForgetIn>() else {
            return;
        };
        let one = std::mem::size_of::<abi::ForgetOne>();
        let n = (hdr.count as usize).min(a.remaining() / one);
        let mut list = Vec::with_capacity(n);
        for _ in 0..n {
            match a.obj::<abi::ForgetOne>() {
                Ok(f) => list.push((f.nodeid, f.nlookup)),
                Err(_) => break,
            }
        }
        if !list.is_empty() {
            self.fs.batch_forget(&list);
        }
    }

    fn do_readlink(
        &self,
        ctx: &Context,
        ino: u64,
        u: u64,
        w: &mut dyn ReplyWriter,
    ) -> io::Result<usize> {
        match self.fs.readlink(ctx, ino) {
            Ok(target) => {
                if OUT_HEADER_LEN + target.len() > w.available() {
                    write_error(w, u, libc::ENAMETOOLONG)
                } else {
                    write_reply(w, u, 0, &target)
                }
            }
            Err(e) => write_error(w, u, errno_of(&e)),
        }
    }

    /// Streams the data of a READ into `w`, at most `room` bytes (see [`stream_reply`]).
    fn read_body(
        &self,
        ctx: &Context,
        ino: u64,
        rin: &abi::ReadIn,
        room: usize,
        w: &mut dyn ReplyWriter,
    ) -> io::Result<()> {
        let size = (rin.size as usize).min(self.max_read()).min(room);
        let flags = IoFlags {
            lock_owner: (rin.read_flags & abi::flags::READ_LOCKOWNER != 0)
                .then_some(rin.lock_owner),
            open_flags: rin.flags,
            ..IoFlags::default()
        };
        let mut data = Limited {
            inner: w,
            limit: size,
        };
        self.fs
            .read(ctx, ino, rin.fh, &mut data, size as u32, rin.offset, flags)
            .map(|_| ())
    }

    fn do_write(
        &self,
        ctx: &Context,
        hdr: &abi::InHeader,
        payload_len: usize,
        r: &mut dyn RequestReader,
        w: &mut dyn ReplyWriter,
    ) -> io::Result<usize> {
        let u = hdr.unique;
        let win_len = std::mem::size_of::<abi::WriteIn>();
        let mut raw = [0u8; std::mem::size_of::<abi::WriteIn>()];
        if payload_len < win_len || r.read_exact(&mut raw).is_err() {
            return write_error(w, u, libc::EINVAL);
        }
        let Ok(win) = abi::WriteIn::read_from_bytes(&raw) else {
            return write_error(w, u, libc::EINVAL);
        };
        let data_len = payload_len - win_len;
        let size = win.size as usize;
        if size > data_len || win.size > self.options.max_write {
            return write_error(w, u, libc::EINVAL);
        }
        let flags = IoFlags {
            lock_owner: (win.write_flags & abi::flags::WRITE_LOCKOWNER != 0)
                .then_some(win.lock_owner),
            open_flags: win.flags,
            delayed_write: win.write_flags & abi::flags::WRITE_CACHE != 0,
            kill_suidgid: win.write_flags & abi::flags::WRITE_KILL_SUIDGID != 0,
        };
        let res = {
            let mut data = Limited {
                inner: &mut *r,
                limit: size,
            };
            self.fs.write(
                ctx, hdr.nodeid, win.fh, &mut data, win.size, win.offset, flags,
            )
        };
        write_result(
            w,
            u,
            res.map(|n| abi::WriteOut {
                size: n.min(size) as u32,
                padding: 0,
            }),
        )
    }

    fn do_setxattr(&self, ctx: &Context, ino: u64, a: &mut Args<'_>) -> io::Result<()> {
        let size = if self.negotiated(initf::SETXATTR_EXT) {
            std::mem::size_of::<abi::SetxattrIn>()
        } else {
            abi::SETXATTR_IN_LEGACY_SIZE
        };
        let sin: abi::SetxattrIn = a.obj_prefix(size)?;
        let name = a.xattr_name()?;
        let value = a.rest();
        if sin.size as usize > XATTR_SIZE_MAX {
            return Err(io::Error::from_raw_os_error(libc::E2BIG));
        }
        if value.len() != sin.size as usize {
            return Err(einval());
        }
        self.fs
            .setxattr(ctx, ino, name, value, sin.flags, sin.setxattr_flags)
    }

    fn do_getxattr(
        &self,
        ctx: &Context,
        opcode: u32,
        ino: u64,
        a: &mut Args<'_>,
        u: u64,
        w: &mut dyn ReplyWriter,
    ) -> io::Result<usize> {
        let res = (|| {
            let gin: abi::GetxattrIn = a.obj()?;
            let room = w.available() - OUT_HEADER_LEN;
            let probe = gin.size == 0;
            let size = if probe {
                if room < std::mem::size_of::<abi::GetxattrOut>() {
                    return Err(einval());
                }
                0
            } else {
                (gin.size as usize).min(XATTR_SIZE_MAX).min(room)
            };
            let reply = if opcode == op::GETXATTR {
                let name = a.xattr_name()?;
                self.fs.getxattr(ctx, ino, name, size as u32)?
            } else {
                self.fs.listxattr(ctx, ino, size as u32)?
            };
            match reply {
                XattrReply::Size(n) if probe => Ok(XattrReply::Size(n)),
                XattrReply::Data(d) if probe => Ok(XattrReply::Size(
                    u32::try_from(d.len())
                        .map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?,
                )),
                XattrReply::Data(d) if d.len() <= size => Ok(XattrReply::Data(d)),
                XattrReply::Data(_) => Err(io::Error::from_raw_os_error(libc::ERANGE)),
                XattrReply::Size(_) => Err(io::Error::from_raw_os_error(libc::EIO)),
            }
        })();
        match res {
            Ok(XattrReply::Size(n)) => {
                let out = abi::GetxattrOut {
                    size: n,
                    padding: 0,
                };
                write_reply(w, u, 0, out.as_bytes())
            }
            Ok(XattrReply::Data(d)) => write_reply(w, u, 0, &d),
            Err(e) => write_error(w, u, errno_of(&e)),
        }
    }

    /// Streams the entries of a READDIR or READDIRPLUS into `w`, at most `room` bytes (see
    /// [`stream_reply`]).
    fn readdir_body(
        &self,
        ctx: &Context,
        opcode: u32,
        ino: u64,
        rin: &abi::ReadIn,
        room: usize,
        w: &mut dyn ReplyWriter,
    ) -> io::Result<()> {
        let budget = (rin.size as usize).min(room);
        let mut out = DirentPacker {
            w,
            budget,
            used: 0,
            scratch: Vec::new(),
        };
        if opcode == op::READDIR {
            let mut add = |e: DirEntry<'_>| out.push(dirent(&e).as_bytes(), e.name);
            self.fs
                .readdir(ctx, ino, rin.fh, budget as u32, rin.offset, &mut add)
        } else {
            let mut add = |e: DirEntry<'_>, entry: crate::filesystem::Entry| {
                let plus = abi::DirentPlus {
                    entry_out: entry_out(&entry),
                    dirent: dirent(&e),
                };
                out.push(plus.as_bytes(), e.name)
            };
            self.fs
                .readdirplus(ctx, ino, rin.fh, budget as u32, rin.offset, &mut add)
        }
    }
}

/// Answers READ, READDIR or READDIRPLUS: decodes the `fuse_read_in`, writes a placeholder
/// header, lets `body(args, room, w)` stream the reply body after it (`room` is what the
/// writer could take besides the header) and fills in the header: a success carrying what was
/// written, or (only when nothing was written) the error `body` returned.
fn stream_reply(
    a: &mut Args<'_>,
    u: u64,
    w: &mut dyn ReplyWriter,
    body: impl FnOnce(&abi::ReadIn, usize, &mut dyn ReplyWriter) -> io::Result<()>,
) -> io::Result<usize> {
    let rin: abi::ReadIn = or_error_reply!(a.obj(), w, u);
    let room = w.available() - OUT_HEADER_LEN;
    let start = w.bytes_written();
    w.write_all(&[0u8; OUT_HEADER_LEN])?;
    let res = body(&rin, room, &mut *w);
    let len = w.bytes_written().saturating_sub(start);
    let error = match res {
        Err(e) if len == OUT_HEADER_LEN => -errno_of(&e),
        _ => 0,
    };
    if error != 0 {
        reply::note_error(-error);
    }
    let header = abi::OutHeader {
        len: u32::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?,
        error,
        unique: u,
    };
    w.overwrite_at(start, header.as_bytes())?;
    Ok(len)
}

/// Answers a request whose arguments are one wire struct `T`: decodes it, passes it to `call`
/// and writes the reply for the result (`EINVAL` when the arguments are too short).
fn reply_to<T, R>(
    a: &mut Args<'_>,
    w: &mut dyn ReplyWriter,
    u: u64,
    call: impl FnOnce(T) -> io::Result<R>,
) -> io::Result<usize>
where
    T: FromBytes + KnownLayout + Immutable,
    R: IntoBytes + Immutable,
{
    write_result(w, u, a.obj::<T>().and_then(call))
}

/// Packs READDIR and READDIRPLUS records into a streamed reply body, at most `budget` bytes.
struct DirentPacker<'a> {
    w: &'a mut dyn ReplyWriter,
    budget: usize,
    used: usize,
    scratch: Vec<u8>,
}

impl DirentPacker<'_> {
    /// Adds the record `fixed` (a `fuse_dirent` or `fuse_direntplus`), then `name`, padded
    /// to 8 bytes. `Ok(true)` when it was added or skipped (a name the kernel would refuse),
    /// `Ok(false)` when it does not fit in what is left of the budget.
    fn push(&mut self, fixed: &[u8], name: &[u8]) -> io::Result<bool> {
        if !sendable_name(name) {
            return Ok(true);
        }
        let rec = abi::dirent_size(fixed.len(), name.len());
        if self.used + rec > self.budget {
            return Ok(false);
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(fixed);
        self.scratch.extend_from_slice(name);
        self.scratch.resize(rec, 0);
        self.w.write_all(&self.scratch)?;
        self.used += rec;
        Ok(true)
    }
}

/// True for names the kernel accepts in a dirent (1..=255 bytes, no `/`, no NUL); the file
/// system's entries that are not are skipped.
fn sendable_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= crate::filesystem::NAME_MAX
        && !name.contains(&b'/')
        && !name.contains(&0)
}

fn dirent(e: &DirEntry<'_>) -> abi::Dirent {
    abi::Dirent {
        ino: e.ino,
        off: e.offset,
        namelen: e.name.len() as u32,
        typ: e.typ,
    }
}

fn create_out((entry, opened): (crate::filesystem::Entry, crate::filesystem::Opened)) -> CreateOut {
    CreateOut {
        entry: entry_out(&entry),
        open: open_out(&opened),
    }
}

fn lock_from_wire(l: &abi::FileLock) -> Lock {
    Lock {
        start: l.start,
        end: l.end,
        typ: l.typ,
        pid: l.pid,
    }
}

/// Builds the typed SETATTR request from the wire struct's `valid` bits; `EINVAL` for
/// nanoseconds out of range.
fn setattr_from_wire(s: &abi::SetattrIn) -> io::Result<SetAttr> {
    use abi::fattr;
    let v = s.valid;
    let time = |now: u32, set: u32, secs: u64, nsecs: u32| -> io::Result<Option<SetTime>> {
        if v & now != 0 {
            Ok(Some(SetTime::Now))
        } else if v & set != 0 {
            if nsecs >= 1_000_000_000 {
                return Err(einval());
            }
            Ok(Some(SetTime::At {
                secs: secs as i64,
                nsecs,
            }))
        } else {
            Ok(None)
        }
    };
    Ok(SetAttr {
        mode: (v & fattr::MODE != 0).then_some(s.mode),
        uid: (v & fattr::UID != 0).then_some(s.uid),
        gid: (v & fattr::GID != 0).then_some(s.gid),
        size: (v & fattr::SIZE != 0).then_some(s.size),
        atime: time(fattr::ATIME_NOW, fattr::ATIME, s.atime, s.atimensec)?,
        mtime: time(fattr::MTIME_NOW, fattr::MTIME, s.mtime, s.mtimensec)?,
        handle: (v & fattr::FH != 0).then_some(s.fh),
        lock_owner: (v & fattr::LOCKOWNER != 0).then_some(s.lock_owner),
        kill_suidgid: v & fattr::KILL_SUIDGID != 0,
    })
}

/// Body size of the replies whose size does not depend on the file system's answer.
fn fixed_reply_len(opcode: u32) -> Option<usize> {
    use std::mem::size_of;
    Some(match opcode {
        op::LOOKUP | op::MKNOD | op::MKDIR | op::SYMLINK | op::LINK => size_of::<abi::EntryOut>(),
        op::GETATTR | op::SETATTR => size_of::<abi::AttrOut>(),
        op::OPEN | op::OPENDIR => size_of::<abi::OpenOut>(),
        op::CREATE | op::TMPFILE => size_of::<CreateOut>(),
        op::WRITE | op::COPY_FILE_RANGE => size_of::<abi::WriteOut>(),
        op::STATFS => size_of::<abi::StatfsOut>(),
        op::GETLK => size_of::<abi::LkOut>(),
        op::LSEEK => size_of::<abi::LseekOut>(),
        op::INIT => size_of::<abi::InitOut>(),
        _ => return None,
    })
}

/// True when the request whose first bytes are `header` (at least the 40-byte FUSE header)
/// may block for long, so that a transport should run it where it does not hold up other
/// requests. Unknown or short input gives `false`.
///
/// That is SETLKW (it may wait for a lock forever, until another guest process or another
/// VM releases it or an INTERRUPT comes), and the syncs FSYNC, FSYNCDIR and SYNCFS, which
/// wait for the host's storage and can take seconds on a slow or busy disk. FALLOCATE and
/// COPY_FILE_RANGE are not counted: on the file systems we serve they are bounded like
/// WRITE.
pub fn request_may_block(header: &[u8]) -> bool {
    if header.len() < IN_HEADER_LEN {
        return false;
    }
    let Some(bytes) = header.get(4..8) else {
        return false;
    };
    let mut opcode = [0u8; 4];
    opcode.copy_from_slice(bytes);
    matches!(
        u32::from_ne_bytes(opcode),
        op::SETLKW | op::FSYNC | op::FSYNCDIR | op::SYNCFS
    )
}
