//! The `/dev/fuse` transport: mounts a FUSE file system on the host with `mount(2)` and
//! serves the kernel's requests with a pool of worker threads.
//!
//! This transport exists so that the same [`Server`] that answers virtio-fs guests can be
//! exercised by the host kernel's own FUSE client (fast tests, debugging without a VM). It
//! knows nothing about what requests mean: each worker reads one request per `read(2)` into
//! its own buffer, hands it to a [`RequestHandler`] (normally the [`Server`]) through a
//! [`SliceReader`] and a [`VecWriter`], and writes the reply back with a single `write(2)`.
//! `/dev/fuse` offers no zero-copy path, so file data is copied once through those buffers.
//!
//! # Mount options
//! The mount mirrors what the guest's virtio-fs driver does for its own superblock
//! (`default_permissions` and `allow_other` are always on there), so that host tests see the
//! semantics a guest sees:
//! - `default_permissions`: the kernel checks permissions from the attributes we return;
//! - `allow_other`: users other than the mounter may use the mount (tests drop privileges);
//! - `nosuid,nodev` (mount flags, on by default): a share is host data under test, so setuid
//!   bits and device nodes in it are not honoured on the host; they are still created,
//!   listed and stat'ed normally;
//! - `max_read=` the server's `max_write`, so READ replies always fit a worker's buffer.
//!
//! # Shutdown
//! Workers wait in `poll(2)` on the FUSE fd and on a stop eventfd. The session ends when the
//! file system is unmounted (by us through [`Session::unmount`] / [`SessionHandle::shutdown`],
//! or by anyone else with `umount`: `read` then fails with `ENODEV`), or when
//! [`SessionHandle::stop`] is called. Dropping the [`Session`] unmounts (lazily, `MNT_DETACH`)
//! and closing the device fd aborts whatever the kernel still has pending.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use vhostfs_server::abi::{InHeader, OutHeader, MIN_READ_BUFFER};
use vhostfs_server::{FileSystem, Server, SliceReader, VecWriter};

/// Room for the request header and the largest fixed argument struct in front of WRITE data.
/// libfuse and the kernel both reserve one page for this.
const HEADER_ROOM: usize = 4096;

/// Most requests that may block for long (SETLKW, FSYNC, ...) served at once on threads of
/// their own; past this they are served inline by the worker that read them.
const MAX_BLOCKING_THREADS: usize = 64;

/// Serves the requests a transport reads. [`Server`] implements it; tests may use fakes.
pub trait RequestHandler: Send + Sync + 'static {
    /// Handles the request in `request` (header included), writing the reply to `reply`.
    /// Returns the reply length; 0 for requests that take no reply. `Err` means no reply
    /// could be produced.
    fn handle(&self, request: &[u8], reply: &mut VecWriter) -> io::Result<usize>;

    /// True when `request` may block for long and should not hold up a worker.
    fn may_block(&self, request: &[u8]) -> bool;

    /// Largest WRITE payload this handler negotiates (sizes the read buffers).
    fn max_write(&self) -> usize;
}

impl<F: FileSystem + 'static> RequestHandler for Server<F> {
    fn handle(&self, request: &[u8], reply: &mut VecWriter) -> io::Result<usize> {
        self.handle_message(&mut SliceReader::new(request), reply)
    }

    fn may_block(&self, request: &[u8]) -> bool {
        vhostfs_server::request_may_block(request)
    }

    fn max_write(&self) -> usize {
        self.options().max_write as usize
    }
}

/// How to mount. See the crate documentation for why the defaults are what they are.
#[derive(Clone, Debug)]
pub struct MountOptions {
    /// Mount source shown in `/proc/self/mountinfo`.
    pub fs_name: String,
    /// FUSE subtype; the file system type becomes `fuse.<subtype>`.
    pub subtype: String,
    /// Let the kernel check permissions from the attributes (`default_permissions`).
    pub default_permissions: bool,
    /// Let users other than the mounter use the mount (`allow_other`).
    pub allow_other: bool,
    /// Mount read-only (`MS_RDONLY`).
    pub read_only: bool,
    /// Ignore setuid/setgid bits on exec (`MS_NOSUID`).
    pub nosuid: bool,
    /// Do not honour device nodes (`MS_NODEV`).
    pub nodev: bool,
    /// Largest READ the kernel may send; `None` derives it from the handler's `max_write`.
    pub max_read: Option<u32>,
}

impl Default for MountOptions {
    fn default() -> Self {
        Self {
            fs_name: "vhostfs".into(),
            subtype: "vhostfs".into(),
            default_permissions: true,
            allow_other: true,
            read_only: false,
            nosuid: true,
            nodev: true,
            max_read: None,
        }
    }
}

impl MountOptions {
    /// The `data` string passed to `mount(2)` for a FUSE device fd `fd`.
    pub fn data_string(&self, fd: i32, uid: u32, gid: u32, max_read: u32) -> String {
        let mut s =
            format!("fd={fd},rootmode=40000,user_id={uid},group_id={gid},max_read={max_read}");
        if self.default_permissions {
            s.push_str(",default_permissions");
        }
        if self.allow_other {
            s.push_str(",allow_other");
        }
        s
    }

    fn ms_flags(&self) -> MsFlags {
        let mut f = MsFlags::empty();
        if self.read_only {
            f |= MsFlags::MS_RDONLY;
        }
        if self.nosuid {
            f |= MsFlags::MS_NOSUID;
        }
        if self.nodev {
            f |= MsFlags::MS_NODEV;
        }
        f
    }
}

/// State shared by the session, its handles and its worker threads.
#[derive(Debug)]
struct Inner {
    /// The `/dev/fuse` connection (non-blocking).
    dev: OwnedFd,
    /// Becomes readable when the workers should stop.
    stop: EventFd,
    stopped: AtomicBool,
    mountpoint: PathBuf,
    /// True while we believe the mount is ours to remove.
    mounted: Mutex<bool>,
    /// Requests currently served on their own threads.
    blocking: AtomicUsize,
}

impl Inner {
    fn stop(&self) {
        if !self.stopped.swap(true, Ordering::SeqCst) {
            if let Err(e) = self.stop.write(1) {
                tracing::warn!("fuse-dev: cannot signal workers to stop: {e}");
            }
        }
    }

    fn unmount(&self) -> io::Result<()> {
        let mut mounted = self.mounted.lock().unwrap_or_else(|p| p.into_inner());
        if !*mounted {
            return Ok(());
        }
        *mounted = false;
        match nix::mount::umount2(&self.mountpoint, MntFlags::MNT_DETACH) {
            // EINVAL: no longer a mount point (someone else unmounted it already).
            Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(io::Error::new(
                io::Error::from(e).kind(),
                format!("unmounting {}: {e}", self.mountpoint.display()),
            )),
        }
    }
}

/// A mounted FUSE file system and its `/dev/fuse` connection.
#[derive(Debug)]
pub struct Session {
    inner: Arc<Inner>,
}

/// A cloneable handle to stop or unmount a [`Session`] from another thread (a signal handler
/// thread, for example).
#[derive(Clone, Debug)]
pub struct SessionHandle {
    inner: Arc<Inner>,
}

impl SessionHandle {
    /// Makes the workers return as soon as they finish the request at hand.
    pub fn stop(&self) {
        self.inner.stop();
    }

    /// Lazily unmounts the file system and stops the workers.
    pub fn shutdown(&self) -> io::Result<()> {
        let res = self.inner.unmount();
        self.inner.stop();
        res
    }
}

impl Session {
    /// Opens `/dev/fuse` and mounts a FUSE file system on `mountpoint` (which must be an
    /// existing directory). Needs `CAP_SYS_ADMIN`.
    pub fn mount(mountpoint: &Path, options: &MountOptions, max_write: usize) -> io::Result<Self> {
        let meta = std::fs::metadata(mountpoint)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", mountpoint.display())))?;
        if !meta.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a directory", mountpoint.display()),
            ));
        }
        let mountpoint = std::fs::canonicalize(mountpoint)?;

        // SAFETY: plain open(2) of a constant, NUL-terminated path; the result is checked.
        let raw = unsafe {
            libc::open(
                c"/dev/fuse".as_ptr(),
                libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
            )
        };
        if raw < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("opening /dev/fuse: {e}")));
        }
        // SAFETY: `raw` is a freshly opened fd that nothing else owns.
        let dev = unsafe { OwnedFd::from_raw_fd(raw) };

        let max_read = options
            .max_read
            .unwrap_or_else(|| u32::try_from(max_write).unwrap_or(u32::MAX))
            .max(4096);
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let data = options.data_string(dev.as_raw_fd(), uid, gid, max_read);
        let fstype = format!("fuse.{}", options.subtype);
        nix::mount::mount(
            Some(options.fs_name.as_str()),
            &mountpoint,
            Some(fstype.as_str()),
            options.ms_flags(),
            Some(data.as_str()),
        )
        .map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("mounting FUSE on {}: {e}", mountpoint.display()),
            )
        })?;
        tracing::info!(mountpoint = %mountpoint.display(), %data, "fuse-dev: mounted");

        let stop = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(io::Error::from)?;
        Ok(Self {
            inner: Arc::new(Inner {
                dev,
                stop,
                stopped: AtomicBool::new(false),
                mountpoint,
                mounted: Mutex::new(true),
                blocking: AtomicUsize::new(0),
            }),
        })
    }

    /// The (canonical) mount point.
    pub fn mountpoint(&self) -> &Path {
        &self.inner.mountpoint
    }

    /// A handle to stop or unmount this session from another thread.
    pub fn handle(&self) -> SessionHandle {
        SessionHandle {
            inner: Arc::clone(&self.inner),
        }
    }

    /// Serves `server` with `threads` workers (at least one) until the file system is
    /// unmounted or the session is stopped.
    pub fn serve<F: FileSystem + 'static>(
        &self,
        server: Arc<Server<F>>,
        threads: usize,
    ) -> io::Result<()> {
        self.serve_with(server, threads)
    }

    /// Like [`serve`](Session::serve) for any [`RequestHandler`].
    pub fn serve_with<H: RequestHandler>(&self, handler: Arc<H>, threads: usize) -> io::Result<()> {
        let buf_size = handler
            .max_write()
            .saturating_add(HEADER_ROOM)
            .max(MIN_READ_BUFFER);
        let threads = threads.max(1);
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let inner = Arc::clone(&self.inner);
            let handler = Arc::clone(&handler);
            let w = std::thread::Builder::new()
                .name(format!("fuse-worker-{i}"))
                .spawn(move || {
                    let res = worker_loop(&inner, &handler, buf_size);
                    // Whatever ended this worker ends the others too.
                    inner.stop();
                    res
                })?;
            workers.push(w);
        }
        let mut result = Ok(());
        for w in workers {
            match w.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    if result.is_ok() {
                        result = Err(e);
                    }
                }
                Err(_) => {
                    if result.is_ok() {
                        result = Err(io::Error::other("a fuse-dev worker panicked"));
                    }
                }
            }
        }
        result
    }

    /// Lazily unmounts the file system (`umount2(MNT_DETACH)`) and stops the workers.
    /// Unmounting something already unmounted is not an error.
    pub fn unmount(&self) -> io::Result<()> {
        self.handle().shutdown()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Err(e) = self.inner.unmount() {
            tracing::warn!("fuse-dev: {e}");
        }
        self.inner.stop();
    }
}

/// Waits until the device or the stop eventfd is readable. Returns false when stopping.
fn wait_readable(inner: &Inner) -> io::Result<bool> {
    loop {
        let mut fds = [
            PollFd::new(inner.dev.as_fd(), PollFlags::POLLIN),
            PollFd::new(inner.stop.as_fd(), PollFlags::POLLIN),
        ];
        match nix::poll::poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let stop = fds[1].revents().unwrap_or(PollFlags::empty());
        if !stop.is_empty() || inner.stopped.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let dev = fds[0].revents().unwrap_or(PollFlags::empty());
        if !dev.is_empty() {
            // Readable, or an error condition that the following read reports.
            return Ok(true);
        }
    }
}

fn worker_loop<H: RequestHandler>(
    inner: &Arc<Inner>,
    handler: &Arc<H>,
    buf_size: usize,
) -> io::Result<()> {
    let mut buf = vec![0u8; buf_size];
    let mut reply = Vec::with_capacity(buf_size);
    loop {
        if !wait_readable(inner)? {
            return Ok(());
        }
        let n = match nix::unistd::read(inner.dev.as_fd(), &mut buf) {
            Ok(n) => n,
            // Another worker took the request, or a signal: wait again.
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => continue,
            // The request was interrupted and withdrawn before we got it.
            Err(Errno::ENOENT) => continue,
            Err(Errno::ENODEV) => {
                tracing::debug!(mountpoint = %inner.mountpoint.display(), "fuse-dev: connection gone (unmounted)");
                // The kernel is gone; nothing left for us to unmount.
                *inner.mounted.lock().unwrap_or_else(|p| p.into_inner()) = false;
                return Ok(());
            }
            Err(e) => {
                tracing::error!("fuse-dev: reading /dev/fuse: {e}");
                return Err(e.into());
            }
        };
        if n == 0 {
            // Not expected from /dev/fuse; treat as the connection going away.
            return Ok(());
        }
        let request = &buf[..n];
        if handler.may_block(request) && try_spawn_blocking(inner, handler, request, buf_size) {
            continue;
        }
        reply = handle_one(inner, handler.as_ref(), request, reply, buf_size);
    }
}

/// Serves `request` on a thread of its own; false when too many such threads run already.
fn try_spawn_blocking<H: RequestHandler>(
    inner: &Arc<Inner>,
    handler: &Arc<H>,
    request: &[u8],
    buf_size: usize,
) -> bool {
    if inner.blocking.fetch_add(1, Ordering::SeqCst) >= MAX_BLOCKING_THREADS {
        inner.blocking.fetch_sub(1, Ordering::SeqCst);
        return false;
    }
    let owned = request.to_vec();
    let inner2 = Arc::clone(inner);
    let handler2 = Arc::clone(handler);
    let spawned = std::thread::Builder::new()
        .name("fuse-blocking".into())
        .spawn(move || {
            handle_one(&inner2, handler2.as_ref(), &owned, Vec::new(), buf_size);
            inner2.blocking.fetch_sub(1, Ordering::SeqCst);
        });
    match spawned {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!("fuse-dev: cannot spawn a thread for a blocking request: {e}");
            inner.blocking.fetch_sub(1, Ordering::SeqCst);
            false
        }
    }
}

/// Handles one request and writes its reply; returns the reply buffer for reuse.
fn handle_one<H: RequestHandler + ?Sized>(
    inner: &Inner,
    handler: &H,
    request: &[u8],
    reply_buf: Vec<u8>,
    limit: usize,
) -> Vec<u8> {
    let mut w = VecWriter::with_buffer(reply_buf, limit);
    match handler.handle(request, &mut w) {
        Ok(0) => {}
        Ok(_) => write_reply(inner.dev.as_fd(), w.as_slice()),
        Err(e) => {
            // No reply could be encoded; answer EIO so that the caller does not hang.
            tracing::warn!("fuse-dev: request could not be answered: {e}");
            if let Some(unique) = request_unique(request) {
                let hdr = OutHeader {
                    len: std::mem::size_of::<OutHeader>() as u32,
                    error: -libc::EIO,
                    unique,
                };
                write_reply(inner.dev.as_fd(), zerocopy::IntoBytes::as_bytes(&hdr));
            }
        }
    }
    w.into_inner()
}

/// The `unique` of a request that expects a reply, from its header.
fn request_unique(request: &[u8]) -> Option<u64> {
    use zerocopy::FromBytes;
    let (hdr, _) = InHeader::read_from_prefix(request).ok()?;
    use vhostfs_server::abi::opcode;
    match hdr.opcode {
        opcode::FORGET | opcode::BATCH_FORGET | opcode::INTERRUPT => None,
        _ => Some(hdr.unique),
    }
}

fn write_reply(dev: BorrowedFd<'_>, reply: &[u8]) {
    loop {
        match nix::unistd::write(dev, reply) {
            Ok(_) => return,
            Err(Errno::EINTR) => continue,
            // The request was interrupted and is gone: fine.
            Err(Errno::ENOENT) => return,
            Err(e) => {
                tracing::warn!(len = reply.len(), "fuse-dev: writing reply: {e}");
                return;
            }
        }
    }
}

/// True when `path` is a FUSE mount point according to `/proc/self/mountinfo`.
pub fn is_fuse_mountpoint(path: &Path) -> io::Result<bool> {
    let path = std::fs::canonicalize(path)?;
    let want = path.as_os_str().as_bytes();
    let info = std::fs::read("/proc/self/mountinfo")?;
    Ok(info.split(|&b| b == b'\n').any(|line| {
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        let sep = fields.iter().position(|f| *f == b"-");
        match (fields.get(4), sep.and_then(|i| fields.get(i + 1))) {
            (Some(mp), Some(fstype)) => {
                unescape_mountinfo(mp) == want && fstype.starts_with(b"fuse")
            }
            _ => false,
        }
    }))
}

/// Undoes the octal escapes (`\040` for space, ...) of `/proc/self/mountinfo`.
fn unescape_mountinfo(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && i + 3 < field.len()
            && field[i + 1..i + 4]
                .iter()
                .all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (field[i + 1] - b'0') as u32 * 64
                + (field[i + 2] - b'0') as u32 * 8
                + (field[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_string_has_the_documented_options() {
        let o = MountOptions::default();
        assert_eq!(
            o.data_string(7, 0, 0, 1 << 20),
            "fd=7,rootmode=40000,user_id=0,group_id=0,max_read=1048576,default_permissions,allow_other"
        );
        let bare = MountOptions {
            default_permissions: false,
            allow_other: false,
            ..MountOptions::default()
        };
        assert_eq!(
            bare.data_string(3, 1000, 100, 4096),
            "fd=3,rootmode=40000,user_id=1000,group_id=100,max_read=4096"
        );
        assert!(o
            .ms_flags()
            .contains(MsFlags::MS_NOSUID | MsFlags::MS_NODEV));
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo(br"/a\040b"), b"/a b");
        assert_eq!(unescape_mountinfo(br"/tab\011x\134"), b"/tab\tx\\");
        // Truncated or non-octal escapes are kept as they are.
        assert_eq!(unescape_mountinfo(br"/x\04"), br"/x\04");
        assert_eq!(unescape_mountinfo(br"/x\09a"), br"/x\09a");
    }

    #[test]
    fn unique_is_taken_only_from_requests_that_want_a_reply() {
        let mut hdr = InHeader {
            len: 40,
            opcode: vhostfs_server::abi::opcode::GETATTR,
            unique: 42,
            ..Default::default()
        };
        assert_eq!(
            request_unique(zerocopy::IntoBytes::as_bytes(&hdr)),
            Some(42)
        );
        hdr.opcode = vhostfs_server::abi::opcode::FORGET;
        assert_eq!(request_unique(zerocopy::IntoBytes::as_bytes(&hdr)), None);
        assert_eq!(request_unique(&[1, 2, 3]), None);
    }
}
