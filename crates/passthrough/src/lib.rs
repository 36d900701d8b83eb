//! A [`FileSystem`](vhostfs_server::FileSystem) that passes requests through to a host
//! directory, with the semantics of a local file system.
//!
//! # Confinement
//!
//! Inodes are `O_PATH` file descriptors (or file handles), never paths: every operation names
//! at most one component relative to a parent directory's fd, with `O_NOFOLLOW` /
//! `AT_SYMLINK_NOFOLLOW`, so symlinks planted in the share are never followed and a guest
//! cannot reach outside the shared directory. `..` at the root is the root itself; `..`
//! elsewhere is answered only for a parent the guest already knows. Opening a file goes
//! through the magic link `/proc/self/fd/N` of the inode's `O_PATH` fd (the `/proc/self/fd`
//! directory is opened once at startup, so this keeps working when the daemon later runs in a
//! sandbox); only regular files and directories are ever opened, symlinks give `ELOOP` and
//! device nodes, fifos and sockets `ENXIO`.
//!
//! # Credentials, umask
//!
//! Creating requests (MKNOD, MKDIR, SYMLINK, CREATE, TMPFILE) and ACCESS run with the caller's
//! (id-mapped) uid and gid as the worker thread's fsuid/fsgid (raw per-thread `setfsuid`,
//! `setfsgid`, `setgroups` for the `CREATE_SUPP_GROUP` group), so new files get the right owner
//! and permission checks use the caller's identity; other requests rely on the guest kernel's
//! permission checks (virtio-fs always mounts with `default_permissions`), as with virtiofsd.
//! A daemon that is not root switches nothing. The guest's umask is applied per request with a
//! per-thread umask (`unshare(CLONE_FS)` once per thread); with POSIX ACLs the host kernel
//! applies it only where the parent has no default ACL. The process umask is left alone. The
//! `credentials` module (private) has the details.
//!
//! # Locks
//!
//! POSIX record locks belong to a process (the FUSE lock owner), not to an open file, and a
//! process loses all its locks on a file when it closes any descriptor of it. The daemon
//! serves many guest processes from one host process, so it cannot use classic POSIX locks;
//! it uses open file description locks (`F_OFD_SETLK`, `F_OFD_SETLKW`, `F_OFD_GETLK`) on one
//! host file description per (inode, guest lock owner), opened on the owner's first lock.
//! Locks of one guest process therefore merge and never conflict with each other, locks of
//! different processes (and guests, and host processes) conflict, and FLUSH (sent on every
//! guest `close`, with the closing process as owner) closes that description, which drops the
//! owner's locks exactly as a local close would. Guest OFD locks arrive with the guest's open
//! file as owner; the guest kernel never unlocks them on close, so RELEASE drops the locks of
//! every owner that locked only through the released handle (a process owner among those has
//! already been dropped by the FLUSH of its own close). `flock` maps to `flock(2)` on the handle's fd
//! (flock locks belong to the open file, which the handle is). FLUSH also emulates the close
//! itself (`dup` + `close` of the handle's fd, which lets network file systems flush).

//! # Requests
//!
//! | request | host calls |
//! |---|---|
//! | LOOKUP | `openat(parent, name, O_PATH\|O_NOFOLLOW)` + `statx` (key `(st_dev, st_ino, mnt_id)`) |
//! | FORGET, BATCH_FORGET | lookup count; the `O_PATH` fd closes at zero |
//! | GETATTR | `statx` of the handle's fd or the inode's `O_PATH` fd |
//! | SETATTR | `fchownat(AT_EMPTY_PATH)`, `fchmod`/`fchmodat` via `/proc/self/fd`, `ftruncate`, `futimens`/`utimensat(AT_EMPTY_PATH)` |
//! | READLINK | `readlinkat(fd, "")` |
//! | MKNOD, MKDIR, SYMLINK | `mknodat`, `mkdirat`, `symlinkat` as the caller |
//! | UNLINK, RMDIR, RENAME(2) | `unlinkat`, `renameat2` |
//! | LINK | `linkat(AT_EMPTY_PATH)`, falling back to the `/proc/self/fd` magic link |
//! | OPEN, OPENDIR | reopen of the `O_PATH` fd through `/proc/self/fd` |
//! | CREATE | `openat(O_CREAT\|O_EXCL\|O_NOFOLLOW)` as the caller, else an OPEN of the existing file |
//! | TMPFILE | `openat(dir, ".", O_TMPFILE)` as the caller |
//! | READ, WRITE | `preadv`/`pwritev` between the handle's fd and the request's buffers |
//! | STATFS | `fstatvfs` |
//! | RELEASE, RELEASEDIR | close of the handle's fd |
//! | FLUSH | drop the owner's POSIX locks; `dup` + `close` |
//! | FSYNC, FSYNCDIR, SYNCFS | `fsync`/`fdatasync`, `syncfs` |
//! | *XATTR | `getxattr`/`setxattr`/`listxattr`/`removexattr` on the `/proc/self/fd/N` magic link |
//! | READDIR, READDIRPLUS | `getdents64`, cookies are `d_off`, `lseek` to resume; PLUS adds a LOOKUP per entry |
//! | GETLK, SETLK, SETLKW | OFD locks on a per-owner description; `flock(2)` on the handle's fd |
//! | ACCESS | `faccessat2(AT_EACCESS)` as the caller |
//! | FALLOCATE, LSEEK, COPY_FILE_RANGE | the same calls on the handles' fds |

#![warn(missing_docs)]

pub mod config;
mod credentials;
mod handle;
pub mod idmap;
mod inode;
mod ops;
mod sys;
pub mod xattrmap;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{Mode, OFlags};
use vhostfs_server::{Context, Entry, Inode, ROOT_INODE};

pub use config::{CachePolicy, Config, InodeFileHandles};

use credentials::DaemonCreds;
use handle::HandleTable;
use inode::{InodeData, InodeFd, InodeFile, InodeKey, InodeTable};
use sys::{errno, statx_fd, RawFileHandle, StatxResult, FUSE_ATTR_SUBMOUNT};

/// The passthrough file system: serves the host directory [`Config::root_dir`].
pub struct PassthroughFs {
    cfg: Config,
    inodes: InodeTable,
    handles: HandleTable,
    /// `/proc/self/fd`, opened at startup.
    proc_self_fd: OwnedFd,
    creds: DaemonCreds,
    generation: u64,
    /// Negotiated in INIT.
    writeback: AtomicBool,
    /// POSIX ACLs negotiated (and with them `FUSE_DONT_MASK`).
    posix_acl: AtomicBool,
    /// Killpriv v2 negotiated.
    killpriv_v2: AtomicBool,
    /// With file handles: an fd (not `O_PATH`) on each host mount, by mount id.
    mount_fds: Mutex<HashMap<u64, Arc<OwnedFd>>>,
    /// Unique id of this instance (for per-thread state that refers to `proc_self_fd`).
    instance: u64,
    /// Number of lock file descriptions open (see the module docs on locks).
    lock_fd_count: Arc<AtomicU64>,
}

impl std::fmt::Debug for PassthroughFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassthroughFs")
            .field("root_dir", &self.cfg.root_dir)
            .field("inodes", &self.inodes.len())
            .field("handles", &self.handles.len())
            .finish_non_exhaustive()
    }
}

/// Logs that a configured limit was hit, at most about once a second.
pub(crate) fn limit_warning(what: &str, max: usize) {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if LAST.swap(now, Ordering::Relaxed) != now {
        tracing::warn!("{what} limit of {max} reached; refusing the guest's request");
    }
}

impl PassthroughFs {
    /// Opens the shared directory and `/proc/self/fd` and prepares the inode table. Call it
    /// before entering a sandbox that hides `/proc`, or use
    /// [`with_proc_self_fd`](Self::with_proc_self_fd).
    pub fn new(cfg: Config) -> io::Result<Self> {
        let proc_self_fd = rustix::fs::open(
            "/proc/self/fd",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Self::with_proc_self_fd(cfg, proc_self_fd)
    }

    /// Like [`new`](Self::new), with `proc_self_fd` an `O_PATH` descriptor of this process's
    /// own `/proc/self/fd` directory, for use inside a sandbox where `/proc` is not reachable
    /// by path (see `vhostfs_sandbox::proc_self_fd`). It must belong to the calling process:
    /// one opened before a `fork` names the parent's descriptors.
    pub fn with_proc_self_fd(cfg: Config, proc_self_fd: OwnedFd) -> io::Result<Self> {
        let root = rustix::fs::open(
            &cfg.root_dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!(
                    "cannot open shared directory {}: {e}",
                    cfg.root_dir.display()
                ),
            )
        })?;
        let StatxResult { st, mnt_id } = statx_fd(root.as_fd())?;
        let key = InodeKey {
            dev: st.st_dev,
            ino: st.st_ino,
            mnt_id,
        };
        let generation = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let fs = Self {
            inodes: InodeTable::new(cfg.max_inodes),
            handles: HandleTable::new(cfg.max_open_fds),
            proc_self_fd,
            creds: DaemonCreds::capture(),
            generation,
            writeback: AtomicBool::new(false),
            posix_acl: AtomicBool::new(false),
            killpriv_v2: AtomicBool::new(false),
            mount_fds: Mutex::new(HashMap::new()),
            lock_fd_count: Arc::new(AtomicU64::new(0)),
            instance: {
                static NEXT: AtomicU64 = AtomicU64::new(1);
                NEXT.fetch_add(1, Ordering::Relaxed)
            },
            cfg,
        };
        if fs.cfg.inode_file_handles != InodeFileHandles::Never {
            let dir = sys::reopen(
                fs.proc_self_fd.as_fd(),
                root.as_fd(),
                OFlags::RDONLY | OFlags::DIRECTORY,
            )?;
            fs.mount_fds
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(mnt_id, Arc::new(dir));
        }
        fs.inodes.insert_root(key, InodeFile::Fd(root));
        Ok(fs)
    }

    /// The configuration this file system was made with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Number of guest-visible inodes (the root included).
    pub fn inode_count(&self) -> usize {
        self.inodes.len()
    }

    /// Number of open guest handles.
    pub fn handle_count(&self) -> usize {
        self.handles.len()
    }

    fn check_writable(&self) -> io::Result<()> {
        if self.cfg.readonly {
            Err(errno(libc::EROFS))
        } else {
            Ok(())
        }
    }

    fn inode(&self, id: Inode) -> io::Result<Arc<InodeData>> {
        self.inodes.get(id)
    }

    /// Host uid for a guest uid.
    fn host_uid(&self, uid: u32) -> io::Result<u32> {
        match &self.cfg.id_map {
            Some(m) => m.guest_to_host_uid(uid),
            None => Ok(uid),
        }
    }

    /// Host gid for a guest gid.
    fn host_gid(&self, gid: u32) -> io::Result<u32> {
        match &self.cfg.id_map {
            Some(m) => m.guest_to_host_gid(gid),
            None => Ok(gid),
        }
    }

    /// Host attributes as the guest sees them (ids mapped).
    fn guest_stat(&self, mut st: libc::stat64) -> libc::stat64 {
        if let Some(m) = &self.cfg.id_map {
            st.st_uid = m.host_to_guest_uid(st.st_uid);
            st.st_gid = m.host_to_guest_gid(st.st_gid);
        }
        st
    }

    /// Runs the thread as the guest caller until the guard drops.
    fn caller_creds(&self, ctx: &Context) -> io::Result<credentials::CredGuard<'_>> {
        let uid = self.host_uid(ctx.uid)?;
        let gid = self.host_gid(ctx.gid)?;
        let supp = match ctx.supplementary_gid {
            Some(g) => Some(self.host_gid(g)?),
            None => None,
        };
        credentials::CredGuard::new(&self.creds, uid, gid, supp)
    }

    /// The mode to create a file with, given the guest's mode and umask (see the credentials
    /// module docs).
    fn creation_mode(&self, mode: u32, umask: u32) -> u32 {
        if self.posix_acl.load(Ordering::Relaxed) {
            if credentials::set_thread_umask(umask).is_ok() {
                return mode & 0o7777;
            }
        } else {
            // Masked here; the host must not mask again with the daemon's umask. Without a
            // private umask (unshare refused) the process umask still applies.
            let _ = credentials::set_thread_umask(0);
        }
        mode & !umask & 0o7777
    }

    /// The entry reply for an inode with attributes `st` (host view).
    fn make_entry(&self, data: &InodeData, st: libc::stat64, parent_mnt: u64) -> Entry {
        let timeout = self.cfg.cache.timeout();
        let attr_flags = if self.cfg.announce_submounts
            && data.is_dir()
            && data.key.mnt_id != parent_mnt
            && data.id != ROOT_INODE
        {
            FUSE_ATTR_SUBMOUNT
        } else {
            0
        };
        Entry {
            inode: data.id,
            generation: self.generation,
            attr: self.guest_stat(st),
            attr_flags,
            attr_timeout: timeout,
            entry_timeout: timeout,
        }
    }

    /// Takes a reference on an inode the guest already knows and makes its entry.
    fn entry_for_known(&self, id: Inode, parent_mnt: u64) -> io::Result<Entry> {
        let data = self.inodes.add_ref(id)?;
        let st = match data.fd().and_then(|fd| statx_fd(fd.as_fd())) {
            Ok(sx) => sx.st,
            Err(e) => {
                self.inodes.forget(id, 1);
                return Err(e);
            }
        };
        Ok(self.make_entry(&data, st, parent_mnt))
    }

    /// Looks `name` up in `parent`, taking one lookup reference on the result.
    fn do_lookup(&self, parent: &InodeData, name: &CStr) -> io::Result<Entry> {
        match name.to_bytes() {
            b"." => return self.entry_for_known(parent.id, parent.key.mnt_id),
            b".." if parent.id == ROOT_INODE => {
                return self.entry_for_known(ROOT_INODE, parent.key.mnt_id)
            }
            _ => {}
        }
        let pfd = parent.fd()?;
        let fd = rustix::fs::openat(
            pfd.as_fd(),
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let sx = statx_fd(fd.as_fd())?;
        if name.to_bytes() == b".." {
            // Only a parent the guest already knows: a directory the host moved out of the
            // share must not lead the guest further out.
            let key = InodeKey {
                dev: sx.st.st_dev,
                ino: sx.st.st_ino,
                mnt_id: sx.mnt_id,
            };
            let id = self.inodes.find(&key).ok_or_else(|| errno(libc::ENOENT))?;
            return self.entry_for_known(id, parent.key.mnt_id);
        }
        self.insert_inode(fd, sx, parent.key.mnt_id)
    }

    /// Enters the inode behind the `O_PATH` fd `fd` (attributes `sx`) in the table (or finds
    /// it there), taking one lookup reference, and makes its entry.
    fn insert_inode(&self, fd: OwnedFd, sx: StatxResult, parent_mnt: u64) -> io::Result<Entry> {
        let key = InodeKey {
            dev: sx.st.st_dev,
            ino: sx.st.st_ino,
            mnt_id: sx.mnt_id,
        };
        let file_type = sx.st.st_mode & libc::S_IFMT;
        let handle = match self.cfg.inode_file_handles {
            InodeFileHandles::Never => None,
            _ => Some(sys::name_to_handle(fd.as_fd()).map(|(h, _)| h)),
        };
        // An entry kept as a file handle does not pin its host inode: when the handle differs,
        // the inode number was reused by a new file.
        let same = |d: &InodeData| match (d.file_handle(), &handle) {
            (Some(old), Some(Ok(new))) => old == new,
            _ => true,
        };
        let for_make = handle.as_ref().map(|r| match r {
            Ok(h) => Ok(h.clone()),
            Err(e) => Err(errno(e.raw_os_error().unwrap_or(libc::EIO))),
        });
        let inserted = self.inodes.get_or_insert(key, file_type, same, || {
            self.inode_file(fd, sx.mnt_id, file_type, for_make)
        })?;
        Ok(self.make_entry(&inserted.data, sx.st, parent_mnt))
    }

    /// How to keep a new inode: its `O_PATH` fd, or a file handle when configured.
    fn inode_file(
        &self,
        fd: OwnedFd,
        mnt_id: u64,
        file_type: u32,
        handle: Option<io::Result<RawFileHandle>>,
    ) -> io::Result<InodeFile> {
        let Some(handle) = handle else {
            return Ok(InodeFile::Fd(fd));
        };
        match handle.and_then(|h| self.file_handle(h, fd.as_fd(), mnt_id, file_type)) {
            Ok(f) => Ok(f),
            Err(e) if self.cfg.inode_file_handles == InodeFileHandles::Mandatory => Err(e),
            Err(_) => Ok(InodeFile::Fd(fd)),
        }
    }

    fn file_handle(
        &self,
        handle: RawFileHandle,
        fd: BorrowedFd<'_>,
        mnt_id: u64,
        file_type: u32,
    ) -> io::Result<InodeFile> {
        let mut mounts = self.mount_fds.lock().unwrap_or_else(|e| e.into_inner());
        let mount_fd = match mounts.get(&mnt_id) {
            Some(m) => m.clone(),
            None if file_type == libc::S_IFDIR => {
                let dir = Arc::new(sys::reopen(
                    self.proc_self_fd.as_fd(),
                    fd,
                    OFlags::RDONLY | OFlags::DIRECTORY,
                )?);
                mounts.insert(mnt_id, dir.clone());
                dir
            }
            None => return Err(errno(libc::EOPNOTSUPP)),
        };
        drop(mounts);
        // Check that the handle can be opened at all before relying on it.
        sys::open_by_handle(mount_fd.as_fd(), &handle, OFlags::PATH | OFlags::NOFOLLOW)?;
        Ok(InodeFile::Handle { handle, mount_fd })
    }

    /// Opens the inode `data` for I/O with host `flags`: regular files and directories only.
    fn open_inode(&self, data: &InodeData, flags: OFlags) -> io::Result<OwnedFd> {
        match data.file_type {
            libc::S_IFREG | libc::S_IFDIR => {}
            libc::S_IFLNK => return Err(errno(libc::ELOOP)),
            _ => return Err(errno(libc::ENXIO)),
        }
        let r = data.open(self.proc_self_fd.as_fd(), flags);
        if let Err(e) = &r {
            if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) {
                tracing::warn!("host is out of file descriptors: {e}");
            }
        }
        r
    }

    /// `chmod` of an inode without an open file (symlinks have no mode of their own).
    fn chmod_inode(&self, data: &InodeData, fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
        if data.is_symlink() {
            return Err(errno(libc::EOPNOTSUPP));
        }
        let name = sys::fd_name(fd.as_raw_fd());
        rustix::fs::chmodat(
            self.proc_self_fd.as_fd(),
            name.as_c_str(),
            Mode::from_bits_retain(mode & 0o7777),
            rustix::fs::AtFlags::empty(),
        )?;
        Ok(())
    }

    /// Clears setuid (and setgid, when group-executable) from an inode, as a local write or
    /// truncate by a process without `CAP_FSETID` would.
    fn kill_suidgid(&self, data: &InodeData, open: Option<BorrowedFd<'_>>) -> io::Result<()> {
        let fd = data.fd()?;
        let st = statx_fd(fd.as_fd())?.st;
        let mut mode = st.st_mode & 0o7777;
        let sgid_exec = libc::S_ISGID | libc::S_IXGRP;
        let mut clear = libc::S_ISUID;
        if mode & sgid_exec == sgid_exec {
            clear |= libc::S_ISGID;
        }
        if mode & clear == 0 || !data.is_reg() {
            return Ok(());
        }
        mode &= !clear;
        match open {
            Some(f) => Ok(rustix::fs::fchmod(f, Mode::from_bits_retain(mode))?),
            None => self.chmod_inode(data, fd.as_fd(), mode),
        }
    }

    /// Host open flags for a guest open of a regular file.
    fn file_open_flags(&self, flags: u32) -> io::Result<OFlags> {
        let flags = flags as i32;
        let keep = libc::O_ACCMODE
            | libc::O_APPEND
            | libc::O_TRUNC
            | libc::O_DIRECT
            | libc::O_SYNC
            | libc::O_DSYNC
            | libc::O_NOATIME
            | libc::O_NONBLOCK
            | libc::O_LARGEFILE;
        let mut f = flags & keep;
        if f & libc::O_ACCMODE == libc::O_ACCMODE {
            return Err(errno(libc::EINVAL));
        }
        if self.writeback.load(Ordering::Relaxed) {
            // With writeback caching the guest kernel may read pages of a file it opened for
            // writing only (to fill partial pages), and it handles O_APPEND itself (the
            // offsets it sends are right, and a host O_APPEND would ignore them).
            if f & libc::O_ACCMODE == libc::O_WRONLY {
                f = (f & !libc::O_ACCMODE) | libc::O_RDWR;
            }
            f &= !libc::O_APPEND;
        }
        if !self.cfg.allow_direct_io {
            f &= !libc::O_DIRECT;
        }
        Ok(OFlags::from_bits_retain(f as u32))
    }

    /// Whether an open with host flags `f` may modify the file.
    fn flags_modify(f: OFlags) -> bool {
        let acc = f.bits() as i32 & libc::O_ACCMODE;
        acc != libc::O_RDONLY || f.contains(OFlags::TRUNC)
    }

    /// The `FOPEN_*` flags for an open file.
    fn fopen_flags(&self, dir: bool) -> u32 {
        use vhostfs_server::abi::fopen;
        match (self.cfg.cache, dir) {
            (CachePolicy::Never | CachePolicy::Metadata, false) => fopen::DIRECT_IO,
            (CachePolicy::Always, false) => fopen::KEEP_CACHE,
            (CachePolicy::Always | CachePolicy::Metadata, true) => {
                fopen::KEEP_CACHE | fopen::CACHE_DIR
            }
            _ => 0,
        }
    }

    /// Sets the security label the guest sent with a creating request, if configured.
    fn apply_security_ctx(&self, ctx: &Context, data: &InodeData) {
        if !self.cfg.security_label {
            return;
        }
        let Some(sec) = &ctx.security_ctx else {
            return;
        };
        let res = self
            .host_xattr_name(&sec.name)
            .and_then(|name| self.xattr_set(data, &name, &sec.value, 0));
        if let Err(e) = res {
            tracing::warn!("cannot set security label {:?}: {e}", sec.name);
        }
    }

    /// Maps a guest xattr name to the host name.
    fn host_xattr_name(&self, name: &CStr) -> io::Result<CString> {
        match &self.cfg.xattr_map {
            Some(m) => m.guest_to_host(name),
            None => Ok(name.to_owned()),
        }
    }

    /// Runs `f` with a path naming the inode's file (following the magic link of its `O_PATH`
    /// fd: `"N"` relative to the thread's current directory `/proc/self/fd`).
    fn with_inode_path<T>(
        &self,
        data: &InodeData,
        f: impl FnOnce(&CStr) -> io::Result<T>,
    ) -> io::Result<T> {
        let fd: InodeFd<'_> = data.fd()?;
        credentials::chdir_proc_self_fd(self.proc_self_fd.as_fd(), self.instance)?;
        let name = sys::fd_name(fd.as_fd().as_raw_fd());
        f(name.as_c_str())
    }

    fn xattr_set(&self, data: &InodeData, name: &CStr, value: &[u8], flags: u32) -> io::Result<()> {
        let flags = rustix::fs::XattrFlags::from_bits(flags).ok_or_else(|| errno(libc::EINVAL))?;
        self.with_inode_path(data, |p| Ok(rustix::fs::setxattr(p, name, value, flags)?))
    }
}
