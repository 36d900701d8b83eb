//! The [`FileSystem`] implementation of [`PassthroughFs`].

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, Timespec, Timestamps};
use vhostfs_server::abi::{flags as fuse_flags, init_flags};
use vhostfs_server::{
    AttrReply, Context, DirEntry, Entry, FileSystem, Handle, Inode, IoFlags, Lock, Name, Opened,
    SetAttr, SetTime, XattrReply, ZeroCopyReader, ZeroCopyWriter,
};

use crate::handle::HandleData;
use crate::inode::{InodeData, LockFd, LockOwner};
use crate::sys::{self, errno, statx_fd};
use crate::{CachePolicy, PassthroughFs};

/// Largest xattr value or list the kernel handles (`XATTR_SIZE_MAX`, `XATTR_LIST_MAX`).
const XATTR_MAX: usize = 65536;

fn set_time(t: Option<SetTime>) -> Timespec {
    match t {
        None => Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        Some(SetTime::Now) => Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        },
        Some(SetTime::At { secs, nsecs }) => Timespec {
            tv_sec: secs,
            tv_nsec: i64::from(nsecs.min(999_999_999)),
        },
    }
}

/// Refuses `.` and `..` as the name of an entry to create, remove or rename (the host would
/// refuse them too; this keeps such requests away from the parent's parent).
fn check_plain_name(name: &Name<'_>, err: i32) -> io::Result<()> {
    if name.is_dot_or_dotdot() {
        Err(errno(err))
    } else {
        Ok(())
    }
}

impl PassthroughFs {
    /// The entry of a freshly created `name` in `parent` (a lookup).
    fn created_entry(
        &self,
        ctx: &Context,
        parent: &crate::inode::InodeData,
        name: &CStr,
    ) -> io::Result<Entry> {
        let entry = self.do_lookup(parent, name)?;
        if ctx.security_ctx.is_some() {
            if let Ok(data) = self.inode(entry.inode) {
                self.apply_security_ctx(ctx, &data);
            }
        }
        Ok(entry)
    }

    /// Opens the file behind the `O_PATH` fd of a just-created file and enters it in the
    /// table (CREATE and TMPFILE), returning its entry.
    fn enter_open_file(&self, file: BorrowedFd<'_>, parent_mnt: u64) -> io::Result<Entry> {
        let path_fd = sys::reopen(self.proc_self_fd.as_fd(), file, OFlags::PATH)?;
        let sx = statx_fd(path_fd.as_fd())?;
        self.insert_inode(path_fd, sx, parent_mnt)
    }

    /// The parent directory of a request that creates or removes the entry `name`, after the
    /// checks every such request makes: the share is writable (`EROFS`) and `name` is not
    /// `.` or `..` (`dot_errno`).
    fn writable_parent(
        &self,
        parent: Inode,
        name: &Name<'_>,
        dot_errno: i32,
    ) -> io::Result<Arc<InodeData>> {
        self.check_writable()?;
        check_plain_name(name, dot_errno)?;
        self.inode(parent)
    }

    /// Runs `create(parent fd)` with the caller's credentials (see
    /// [`caller_creds`](Self::caller_creds)). The parent's fd is taken first, with the
    /// daemon's own: reopening a file handle needs its capabilities.
    fn as_caller_in<T>(
        &self,
        ctx: &Context,
        parent: &InodeData,
        create: impl FnOnce(BorrowedFd<'_>) -> io::Result<T>,
    ) -> io::Result<T> {
        let pfd = parent.fd()?;
        let _creds = self.caller_creds(ctx)?;
        create(pfd.as_fd())
    }

    /// Killpriv v2: an open with `O_TRUNC` and `FUSE_OPEN_KILL_SUIDGID` clears setuid/setgid
    /// of `data` (through `file`), as a local truncating open by a non-owner would.
    fn kill_suidgid_on_trunc(
        &self,
        data: &InodeData,
        oflags: OFlags,
        fuse_open_flags: u32,
        file: BorrowedFd<'_>,
    ) -> io::Result<()> {
        if oflags.contains(OFlags::TRUNC)
            && fuse_open_flags & fuse_flags::OPEN_KILL_SUIDGID != 0
            && self.killpriv_v2.load(Ordering::Relaxed)
        {
            self.kill_suidgid(data, Some(file))?;
        }
        Ok(())
    }

    /// Enters `file`, opened on `inode` (a directory for OPENDIR), in the handle table.
    fn new_handle(&self, inode: Inode, file: OwnedFd, dir: bool) -> io::Result<Opened> {
        let handle = self.handles.insert(HandleData::new(inode, file))?;
        Ok(Opened {
            handle,
            open_flags: self.fopen_flags(dir),
        })
    }

    /// The reply to CREATE and TMPFILE for the new file `file` with entry `entry`: enters it
    /// in the handle table, or drops the entry's lookup when that fails.
    fn created_and_opened(&self, entry: Entry, file: OwnedFd) -> io::Result<(Entry, Opened)> {
        match self.new_handle(entry.inode, file, false) {
            Ok(opened) => Ok((entry, opened)),
            Err(e) => {
                self.inodes.forget(entry.inode, 1);
                Err(e)
            }
        }
    }

    fn attr_reply(&self, st: libc::stat64) -> AttrReply {
        AttrReply {
            attr: self.guest_stat(st),
            timeout: self.cfg.cache.timeout(),
        }
    }

    fn xattr_enabled(&self) -> io::Result<()> {
        if self.cfg.xattr {
            Ok(())
        } else {
            Err(errno(libc::ENOSYS))
        }
    }

    /// Reads a list or value with the two-step size probe (values can grow in between).
    fn read_sized(
        &self,
        mut call: impl FnMut(&mut [u8]) -> io::Result<usize>,
        query: impl Fn() -> io::Result<usize>,
    ) -> io::Result<Vec<u8>> {
        for _ in 0..8 {
            let size = query()?.min(XATTR_MAX);
            let mut buf = vec![0u8; size];
            match call(&mut buf) {
                Ok(n) => {
                    buf.truncate(n);
                    return Ok(buf);
                }
                Err(e) if e.raw_os_error() == Some(libc::ERANGE) && size < XATTR_MAX => continue,
                Err(e) => return Err(e),
            }
        }
        Err(errno(libc::ERANGE))
    }

    /// Most lock file descriptions at once when no fd limit is configured.
    const DEFAULT_MAX_LOCK_FDS: u64 = 1 << 16;

    /// The host file description carrying the POSIX locks of guest lock `owner` on `data`,
    /// opened on first use (see the crate docs on locks); records that the owner locks
    /// through `handle`.
    fn lock_fd(&self, data: &InodeData, owner: u64, handle: Handle) -> io::Result<Arc<LockFd>> {
        let mut locks = data.lock_fds();
        if let Some(entry) = locks.get_mut(&owner) {
            if !entry.handles.contains(&handle) {
                entry.handles.push(handle);
            }
            return Ok(entry.fd.clone());
        }
        let max = self
            .cfg
            .max_open_fds
            .map_or(Self::DEFAULT_MAX_LOCK_FDS, |m| m as u64);
        if self.lock_fd_count.load(Ordering::Relaxed) >= max {
            crate::limit_warning("lock owner", max as usize);
            return Err(errno(libc::ENOLCK));
        }
        // Read and write locks need a description open for reading and writing; fall back to
        // reading only where writing is impossible (read-only files, running executables).
        let fd = match self.open_inode(data, OFlags::RDWR | OFlags::NONBLOCK) {
            Ok(fd) => fd,
            Err(_) => self.open_inode(data, OFlags::RDONLY | OFlags::NONBLOCK)?,
        };
        let fd = Arc::new(LockFd::new(fd, self.lock_fd_count.clone()));
        locks.insert(
            owner,
            LockOwner {
                fd: fd.clone(),
                handles: vec![handle],
            },
        );
        Ok(fd)
    }

    /// A guest process closed a descriptor of `data`: like a local close, that drops all its
    /// POSIX locks on the file.
    fn drop_lock_owner(&self, data: &InodeData, owner: u64) {
        data.lock_fds().remove(&owner);
    }

    /// The guest released `handle`. Every process that locked through it has closed it, and
    /// each close sent a FLUSH that dropped that process's locks, unless the process still
    /// locks through another open handle. What is left is the locks of owners that were the
    /// open file itself (guest OFD locks), which end with it.
    fn release_handle_locks(&self, data: &InodeData, handle: Handle) {
        data.lock_fds().retain(|_, entry| {
            entry.handles.retain(|&h| h != handle);
            !entry.handles.is_empty()
        });
    }

    fn lock_op(&self, fd: BorrowedFd<'_>, cmd: i32, lock: &Lock) -> io::Result<libc::flock64> {
        let (start, len) = sys::lock_range(lock.start, lock.end)?;
        let typ = match lock.typ as i32 {
            libc::F_RDLCK => libc::F_RDLCK,
            libc::F_WRLCK => libc::F_WRLCK,
            libc::F_UNLCK => libc::F_UNLCK,
            _ => return Err(errno(libc::EINVAL)),
        };
        sys::ofd_lock(fd, cmd, typ as i16, start, len)
    }

    /// The lock file description for a POSIX lock request through `handle`, checking that the
    /// handle's access mode allows the lock type (`EBADF` otherwise, as locally).
    fn posix_lock_fd(
        &self,
        inode: Inode,
        handle: Handle,
        owner: u64,
        lock: &Lock,
    ) -> io::Result<Arc<LockFd>> {
        let h = self.handles.get(handle, inode)?;
        let acc = rustix::fs::fcntl_getfl(h.file.as_fd())?.bits() as i32 & libc::O_ACCMODE;
        let ok = match lock.typ as i32 {
            libc::F_RDLCK => acc != libc::O_WRONLY,
            libc::F_WRLCK => acc != libc::O_RDONLY,
            _ => true,
        };
        if !ok {
            return Err(errno(libc::EBADF));
        }
        let data = self.inode(inode)?;
        self.lock_fd(&data, owner, handle)
    }
}

impl FileSystem for PassthroughFs {
    fn init(&self, capable: u64) -> io::Result<u64> {
        use init_flags::*;
        // A new session: forget whatever a previous one left behind without DESTROY.
        self.destroy();
        let mut want = ASYNC_READ
            | POSIX_LOCKS
            | FLOCK_LOCKS
            | ATOMIC_O_TRUNC
            | BIG_WRITES
            | PARALLEL_DIROPS
            | CACHE_SYMLINKS
            | CREATE_SUPP_GROUP
            | MAX_PAGES
            | INIT_EXT
            | ASYNC_DIO
            | HAS_RESEND;
        if self.cfg.readdirplus && self.cfg.cache != CachePolicy::Never {
            want |= DO_READDIRPLUS | READDIRPLUS_AUTO;
        }
        if self.cfg.allow_mmap {
            want |= DIRECT_IO_ALLOW_MMAP;
        }
        if self.cfg.writeback {
            want |= WRITEBACK_CACHE;
        }
        if self.cfg.killpriv_v2 && !self.cfg.readonly {
            want |= HANDLE_KILLPRIV_V2;
        }
        if self.cfg.announce_submounts {
            want |= SUBMOUNTS;
        }
        if self.cfg.security_label {
            want |= SECURITY_CTX;
        }
        if self.cfg.posix_acl
            && self.cfg.xattr
            && capable & (POSIX_ACL | DONT_MASK | SETXATTR_EXT)
                == POSIX_ACL | DONT_MASK | SETXATTR_EXT
        {
            want |= POSIX_ACL | DONT_MASK | SETXATTR_EXT;
        }
        let got = want & capable;
        self.writeback
            .store(got & WRITEBACK_CACHE != 0, Ordering::Relaxed);
        self.posix_acl
            .store(got & POSIX_ACL != 0, Ordering::Relaxed);
        self.killpriv_v2
            .store(got & HANDLE_KILLPRIV_V2 != 0, Ordering::Relaxed);
        Ok(got)
    }

    fn destroy(&self) {
        self.handles.clear();
        self.inodes.clear();
    }

    fn lookup(&self, _ctx: &Context, parent: Inode, name: Name<'_>) -> io::Result<Entry> {
        let p = self.inode(parent)?;
        if !p.is_dir() {
            return Err(errno(libc::ENOTDIR));
        }
        self.do_lookup(&p, name.as_c_str())
    }

    fn forget(&self, inode: Inode, count: u64) {
        self.inodes.forget(inode, count);
    }

    fn getattr(
        &self,
        _ctx: &Context,
        inode: Inode,
        handle: Option<Handle>,
    ) -> io::Result<AttrReply> {
        let data = self.inode(inode)?;
        // A handle is only an optimization; an unknown one falls back to the inode.
        let st = match handle.and_then(|h| self.handles.get(h, inode).ok()) {
            Some(h) => statx_fd(h.file.as_fd())?.st,
            None => statx_fd(data.fd()?.as_fd())?.st,
        };
        Ok(self.attr_reply(st))
    }

    fn setattr(&self, _ctx: &Context, inode: Inode, attr: SetAttr) -> io::Result<AttrReply> {
        self.check_writable()?;
        let data = self.inode(inode)?;
        let handle = match attr.handle {
            Some(h) => Some(self.handles.get(h, inode)?),
            None => None,
        };
        let pfd = data.fd()?;
        let hfd = handle.as_ref().map(|h| h.file.as_fd());

        // Owner first: a chown clears setuid/setgid, an explicit mode in the same request
        // must win.
        if attr.uid.is_some() || attr.gid.is_some() {
            let uid = attr.uid.map(|u| self.host_uid(u)).transpose()?;
            let gid = attr.gid.map(|g| self.host_gid(g)).transpose()?;
            rustix::fs::chownat(
                pfd.as_fd(),
                c"",
                uid.map(host_uid_t).transpose()?,
                gid.map(host_gid_t).transpose()?,
                AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        if let Some(mode) = attr.mode {
            match hfd {
                Some(f) => rustix::fs::fchmod(f, Mode::from_bits_retain(mode & 0o7777))?,
                None => self.chmod_inode(&data, pfd.as_fd(), mode)?,
            }
        }
        if let Some(size) = attr.size {
            match hfd {
                Some(f) => rustix::fs::ftruncate(f, size)?,
                None => {
                    if data.is_dir() {
                        return Err(errno(libc::EISDIR));
                    }
                    if !data.is_reg() {
                        return Err(errno(libc::EINVAL));
                    }
                    let f = self.open_inode(&data, OFlags::WRONLY)?;
                    rustix::fs::ftruncate(&f, size)?;
                }
            }
        }
        if attr.kill_suidgid && attr.mode.is_none() && self.killpriv_v2.load(Ordering::Relaxed) {
            self.kill_suidgid(&data, hfd)?;
        }
        if attr.atime.is_some() || attr.mtime.is_some() {
            let times = Timestamps {
                last_access: set_time(attr.atime),
                last_modification: set_time(attr.mtime),
            };
            match hfd {
                Some(f) => rustix::fs::futimens(f, &times)?,
                None => rustix::fs::utimensat(
                    pfd.as_fd(),
                    c"",
                    &times,
                    AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
                )?,
            }
        }
        let st = match hfd {
            Some(f) => statx_fd(f)?.st,
            None => statx_fd(pfd.as_fd())?.st,
        };
        Ok(self.attr_reply(st))
    }

    fn readlink(&self, _ctx: &Context, inode: Inode) -> io::Result<Vec<u8>> {
        let data = self.inode(inode)?;
        if !data.is_symlink() {
            return Err(errno(libc::EINVAL));
        }
        let target = rustix::fs::readlinkat(data.fd()?.as_fd(), c"", Vec::new())?;
        Ok(target.into_bytes())
    }

    fn symlink(
        &self,
        ctx: &Context,
        target: &CStr,
        parent: Inode,
        name: Name<'_>,
    ) -> io::Result<Entry> {
        let p = self.writable_parent(parent, &name, libc::EEXIST)?;
        self.as_caller_in(ctx, &p, |pfd| {
            Ok(rustix::fs::symlinkat(target, pfd, name.as_c_str())?)
        })?;
        self.created_entry(ctx, &p, name.as_c_str())
    }

    fn mknod(
        &self,
        ctx: &Context,
        parent: Inode,
        name: Name<'_>,
        mode: u32,
        rdev: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        let p = self.writable_parent(parent, &name, libc::EEXIST)?;
        let file_type = match mode & libc::S_IFMT {
            libc::S_IFREG | 0 => FileType::RegularFile,
            libc::S_IFIFO => FileType::Fifo,
            libc::S_IFSOCK => FileType::Socket,
            libc::S_IFCHR => FileType::CharacterDevice,
            libc::S_IFBLK => FileType::BlockDevice,
            _ => return Err(errno(libc::EINVAL)),
        };
        let mode = Mode::from_bits_retain(self.creation_mode(mode, umask));
        self.as_caller_in(ctx, &p, |pfd| {
            Ok(rustix::fs::mknodat(
                pfd,
                name.as_c_str(),
                file_type,
                mode,
                u64::from(rdev),
            )?)
        })?;
        self.created_entry(ctx, &p, name.as_c_str())
    }

    fn mkdir(
        &self,
        ctx: &Context,
        parent: Inode,
        name: Name<'_>,
        mode: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        let p = self.writable_parent(parent, &name, libc::EEXIST)?;
        let mode = Mode::from_bits_retain(self.creation_mode(mode, umask));
        self.as_caller_in(ctx, &p, |pfd| {
            Ok(rustix::fs::mkdirat(pfd, name.as_c_str(), mode)?)
        })?;
        self.created_entry(ctx, &p, name.as_c_str())
    }

    fn unlink(&self, _ctx: &Context, parent: Inode, name: Name<'_>) -> io::Result<()> {
        let p = self.writable_parent(parent, &name, libc::EISDIR)?;
        rustix::fs::unlinkat(p.fd()?.as_fd(), name.as_c_str(), AtFlags::empty())?;
        Ok(())
    }

    fn rmdir(&self, _ctx: &Context, parent: Inode, name: Name<'_>) -> io::Result<()> {
        let p = self.writable_parent(parent, &name, libc::EINVAL)?;
        rustix::fs::unlinkat(p.fd()?.as_fd(), name.as_c_str(), AtFlags::REMOVEDIR)?;
        Ok(())
    }

    fn rename(
        &self,
        _ctx: &Context,
        old_parent: Inode,
        old_name: Name<'_>,
        new_parent: Inode,
        new_name: Name<'_>,
        flags: u32,
    ) -> io::Result<()> {
        self.check_writable()?;
        check_plain_name(&old_name, libc::EBUSY)?;
        check_plain_name(&new_name, libc::EBUSY)?;
        let known = libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE | libc::RENAME_WHITEOUT;
        if flags & !known != 0 {
            return Err(errno(libc::EINVAL));
        }
        let op = self.inode(old_parent)?;
        let np = self.inode(new_parent)?;
        let ofd = op.fd()?;
        let nfd = np.fd()?;
        rustix::fs::renameat_with(
            ofd.as_fd(),
            old_name.as_c_str(),
            nfd.as_fd(),
            new_name.as_c_str(),
            RenameFlags::from_bits_retain(flags),
        )?;
        Ok(())
    }

    fn link(
        &self,
        _ctx: &Context,
        inode: Inode,
        new_parent: Inode,
        new_name: Name<'_>,
    ) -> io::Result<Entry> {
        self.check_writable()?;
        check_plain_name(&new_name, libc::EEXIST)?;
        let data = self.inode(inode)?;
        let np = self.inode(new_parent)?;
        if data.is_dir() {
            return Err(errno(libc::EPERM));
        }
        let fd = data.fd()?;
        let nfd = np.fd()?;
        let r = rustix::fs::linkat(
            fd.as_fd(),
            c"",
            nfd.as_fd(),
            new_name.as_c_str(),
            AtFlags::EMPTY_PATH,
        );
        if let Err(e) = r {
            if e != rustix::io::Errno::NOENT && e != rustix::io::Errno::PERM {
                return Err(e.into());
            }
            // Without CAP_DAC_READ_SEARCH: link through the magic link instead.
            let name = sys::fd_name(std::os::fd::AsRawFd::as_raw_fd(&fd.as_fd()));
            rustix::fs::linkat(
                self.proc_self_fd.as_fd(),
                name.as_c_str(),
                nfd.as_fd(),
                new_name.as_c_str(),
                AtFlags::SYMLINK_FOLLOW,
            )?;
        }
        self.entry_for_known(inode, np.key.mnt_id)
    }

    fn open(
        &self,
        _ctx: &Context,
        inode: Inode,
        flags: u32,
        fuse_open_flags: u32,
    ) -> io::Result<Opened> {
        let data = self.inode(inode)?;
        if data.is_dir() {
            return Err(errno(libc::EISDIR));
        }
        let oflags = self.file_open_flags(flags)?;
        if Self::flags_modify(oflags) {
            self.check_writable()?;
        }
        self.handles.check_room()?;
        let file = match self.open_inode(&data, oflags) {
            // Writeback caching made a write-only open read-write; where the daemon may not
            // read the file, fall back to what the guest asked for.
            Err(e)
                if e.raw_os_error() == Some(libc::EACCES)
                    && flags as i32 & libc::O_ACCMODE == libc::O_WRONLY
                    && oflags.bits() as i32 & libc::O_ACCMODE == libc::O_RDWR =>
            {
                let wronly = (oflags & !OFlags::RDWR) | OFlags::WRONLY;
                self.open_inode(&data, wronly)?
            }
            r => r?,
        };
        self.kill_suidgid_on_trunc(&data, oflags, fuse_open_flags, file.as_fd())?;
        self.new_handle(inode, file, false)
    }

    fn create(
        &self,
        ctx: &Context,
        parent: Inode,
        name: Name<'_>,
        mode: u32,
        flags: u32,
        umask: u32,
        fuse_open_flags: u32,
    ) -> io::Result<(Entry, Opened)> {
        let p = self.writable_parent(parent, &name, libc::EISDIR)?;
        let oflags = self.file_open_flags(flags)?;
        let guest_excl = flags as i32 & libc::O_EXCL != 0;
        self.handles.check_room()?;
        // Always create exclusively: an existing name is opened like OPEN does (regular files
        // only), so that a special file (a fifo that would block, a device node) is never
        // opened through O_CREAT.
        let mode = Mode::from_bits_retain(self.creation_mode(mode, umask));
        let created = self.as_caller_in(ctx, &p, |pfd| {
            let how = oflags | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match rustix::fs::openat(pfd, name.as_c_str(), how, mode) {
                Ok(f) => Ok(Some(f)),
                Err(rustix::io::Errno::EXIST) if !guest_excl => Ok(None),
                Err(e) => Err(e.into()),
            }
        })?;
        let (entry, file) = match created {
            Some(file) => (self.enter_open_file(file.as_fd(), p.key.mnt_id)?, file),
            None => {
                let entry = self.do_lookup(&p, name.as_c_str())?;
                // The guest expected to create the file: check its access to the one it
                // raced with by opening as the caller.
                let opened = self
                    .inode(entry.inode)
                    .and_then(|data| match data.file_type {
                        libc::S_IFREG => {
                            // (The fd first: reopening a file handle needs the daemon's
                            // capabilities.)
                            let fd = data.fd()?;
                            let _creds = self.caller_creds(ctx)?;
                            sys::reopen(self.proc_self_fd.as_fd(), fd.as_fd(), oflags)
                        }
                        libc::S_IFDIR => Err(errno(libc::EISDIR)),
                        libc::S_IFLNK => Err(errno(libc::ELOOP)),
                        _ => Err(errno(libc::ENXIO)),
                    });
                match opened {
                    Ok(file) => (entry, file),
                    Err(e) => {
                        self.inodes.forget(entry.inode, 1);
                        return Err(e);
                    }
                }
            }
        };
        let data = self.inode(entry.inode)?;
        if ctx.security_ctx.is_some() {
            self.apply_security_ctx(ctx, &data);
        }
        self.kill_suidgid_on_trunc(&data, oflags, fuse_open_flags, file.as_fd())?;
        self.created_and_opened(entry, file)
    }

    fn tmpfile(
        &self,
        ctx: &Context,
        parent: Inode,
        mode: u32,
        flags: u32,
        umask: u32,
    ) -> io::Result<(Entry, Opened)> {
        self.check_writable()?;
        let p = self.inode(parent)?;
        let mut oflags = self.file_open_flags(flags)?;
        if oflags.bits() as i32 & libc::O_ACCMODE == libc::O_RDONLY {
            oflags = (oflags & !OFlags::RDONLY) | OFlags::RDWR;
        }
        self.handles.check_room()?;
        let mode = Mode::from_bits_retain(self.creation_mode(mode, umask));
        let file = self.as_caller_in(ctx, &p, |pfd| {
            let how = oflags | OFlags::TMPFILE | OFlags::CLOEXEC;
            Ok(rustix::fs::openat(pfd, c".", how, mode)?)
        })?;
        let entry = self.enter_open_file(file.as_fd(), p.key.mnt_id)?;
        self.created_and_opened(entry, file)
    }

    fn read(
        &self,
        _ctx: &Context,
        inode: Inode,
        handle: Handle,
        w: &mut dyn ZeroCopyWriter,
        size: u32,
        offset: u64,
        _flags: IoFlags,
    ) -> io::Result<usize> {
        let h = self.handles.get(handle, inode)?;
        transfer_all(size as usize, offset, "read", |off, len| {
            w.write_from_file(h.file.as_fd(), off, len)
        })
    }

    fn write(
        &self,
        _ctx: &Context,
        inode: Inode,
        handle: Handle,
        r: &mut dyn ZeroCopyReader,
        size: u32,
        offset: u64,
        flags: IoFlags,
    ) -> io::Result<usize> {
        self.check_writable()?;
        let h = self.handles.get(handle, inode)?;
        // The guest kernel sets this flag for writers without CAP_FSETID also when killpriv v2
        // was not negotiated (direct I/O writes skip its own file_remove_privs), so honour
        // it always: a local write by a non-owner clears setuid/setgid.
        if flags.kill_suidgid {
            let data = self.inode(inode)?;
            self.kill_suidgid(&data, Some(h.file.as_fd()))?;
        }
        transfer_all(size as usize, offset, "write", |off, len| {
            r.read_to_file(h.file.as_fd(), off, len)
        })
    }

    fn statfs(&self, _ctx: &Context, inode: Inode) -> io::Result<libc::statvfs64> {
        let data = self.inode(inode)?;
        sys::fstatvfs(data.fd()?.as_fd())
    }

    fn release(
        &self,
        _ctx: &Context,
        inode: Inode,
        _flags: u32,
        handle: Handle,
        _flush: bool,
        _flock_release: bool,
        _lock_owner: Option<u64>,
    ) -> io::Result<()> {
        if let Ok(data) = self.inode(inode) {
            self.release_handle_locks(&data, handle);
        }
        // Dropping the last reference closes the fd, which releases its flock locks.
        self.handles.remove(handle, inode)
    }

    fn fsync(
        &self,
        _ctx: &Context,
        inode: Inode,
        datasync: bool,
        handle: Handle,
    ) -> io::Result<()> {
        let h = self.handles.get(handle, inode)?;
        if datasync {
            rustix::fs::fdatasync(h.file.as_fd())?;
        } else {
            rustix::fs::fsync(h.file.as_fd())?;
        }
        Ok(())
    }

    fn setxattr(
        &self,
        _ctx: &Context,
        inode: Inode,
        name: &CStr,
        value: &[u8],
        flags: u32,
        extra_flags: u32,
    ) -> io::Result<()> {
        self.xattr_enabled()?;
        self.check_writable()?;
        if flags & !((libc::XATTR_CREATE | libc::XATTR_REPLACE) as u32) != 0 {
            return Err(errno(libc::EINVAL));
        }
        if value.len() > XATTR_MAX {
            return Err(errno(libc::E2BIG));
        }
        let data = self.inode(inode)?;
        let host = self.host_xattr_name(name)?;
        self.xattr_set(&data, &host, value, flags)?;
        if extra_flags & fuse_flags::SETXATTR_ACL_KILL_SGID != 0
            && name.to_bytes() == b"system.posix_acl_access"
        {
            let fd = data.fd()?;
            let st = statx_fd(fd.as_fd())?.st;
            if st.st_mode & libc::S_ISGID != 0 {
                self.chmod_inode(&data, fd.as_fd(), st.st_mode & 0o7777 & !libc::S_ISGID)?;
            }
        }
        Ok(())
    }

    fn getxattr(
        &self,
        _ctx: &Context,
        inode: Inode,
        name: &CStr,
        size: u32,
    ) -> io::Result<XattrReply> {
        self.xattr_enabled()?;
        let data = self.inode(inode)?;
        let host = match self.host_xattr_name(name) {
            Ok(h) => h,
            // A name the map refuses simply does not exist for the guest.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => return Err(errno(libc::ENODATA)),
            Err(e) => return Err(e),
        };
        self.with_inode_path(&data, |p| {
            if size == 0 {
                let n = rustix::fs::getxattr_query(p, host.as_c_str())?;
                return Ok(XattrReply::Size(n.min(u32::MAX as usize) as u32));
            }
            let mut buf = vec![0u8; (size as usize).min(XATTR_MAX)];
            let n = rustix::fs::getxattr(p, host.as_c_str(), &mut buf[..])?;
            buf.truncate(n);
            Ok(XattrReply::Data(buf))
        })
    }

    fn listxattr(&self, _ctx: &Context, inode: Inode, size: u32) -> io::Result<XattrReply> {
        self.xattr_enabled()?;
        let data = self.inode(inode)?;
        self.with_inode_path(&data, |p| {
            let Some(map) = &self.cfg.xattr_map else {
                if size == 0 {
                    let n = rustix::fs::listxattr_query(p)?;
                    return Ok(XattrReply::Size(n.min(u32::MAX as usize) as u32));
                }
                let mut buf = vec![0u8; (size as usize).min(XATTR_MAX)];
                let n = rustix::fs::listxattr(p, &mut buf[..])?;
                buf.truncate(n);
                return Ok(XattrReply::Data(buf));
            };
            let list = self.read_sized(
                |buf| Ok(rustix::fs::listxattr(p, buf)?),
                || Ok(rustix::fs::listxattr_query(p)?),
            )?;
            let list = map.host_list_to_guest(&list);
            if size == 0 {
                Ok(XattrReply::Size(list.len() as u32))
            } else if list.len() > size as usize {
                Err(errno(libc::ERANGE))
            } else {
                Ok(XattrReply::Data(list))
            }
        })
    }

    fn removexattr(&self, _ctx: &Context, inode: Inode, name: &CStr) -> io::Result<()> {
        self.xattr_enabled()?;
        self.check_writable()?;
        let data = self.inode(inode)?;
        let host = self.host_xattr_name(name)?;
        self.with_inode_path(&data, |p| Ok(rustix::fs::removexattr(p, host.as_c_str())?))
    }

    fn flush(
        &self,
        _ctx: &Context,
        inode: Inode,
        handle: Handle,
        lock_owner: u64,
    ) -> io::Result<()> {
        let h = self.handles.get(handle, inode)?;
        // A close drops the closing process's POSIX locks on the file.
        if let Ok(data) = self.inode(inode) {
            self.drop_lock_owner(&data, lock_owner);
        }
        // Emulate the close itself: closing a duplicate lets file systems that act on close
        // (NFS, FUSE) do so.
        let dup = sys::dup(h.file.as_fd())?;
        drop(dup);
        Ok(())
    }

    fn opendir(&self, _ctx: &Context, inode: Inode, _flags: u32) -> io::Result<Opened> {
        let data = self.inode(inode)?;
        if !data.is_dir() {
            return Err(errno(libc::ENOTDIR));
        }
        self.handles.check_room()?;
        let file = self.open_inode(&data, OFlags::RDONLY | OFlags::DIRECTORY)?;
        self.new_handle(inode, file, true)
    }

    fn readdir(
        &self,
        _ctx: &Context,
        inode: Inode,
        handle: Handle,
        size: u32,
        offset: u64,
        add: &mut dyn FnMut(DirEntry<'_>) -> io::Result<bool>,
    ) -> io::Result<()> {
        let h = self.handles.get(handle, inode)?;
        list_dir(&h, size, offset, |ino, next, typ, name| {
            add(DirEntry {
                ino,
                offset: next,
                typ,
                name,
            })
        })
    }

    fn readdirplus(
        &self,
        _ctx: &Context,
        inode: Inode,
        handle: Handle,
        size: u32,
        offset: u64,
        add: &mut dyn FnMut(DirEntry<'_>, Entry) -> io::Result<bool>,
    ) -> io::Result<()> {
        let h = self.handles.get(handle, inode)?;
        let dir = self.inode(inode)?;
        list_dir(&h, size, offset, |ino, next, typ, name| {
            let dirent = DirEntry {
                ino,
                offset: next,
                typ,
                name,
            };
            let entry = if name == b"." || name == b".." {
                // SAFETY: `stat64` is plain old data; all-zero is a valid value.
                let mut attr: libc::stat64 = unsafe { std::mem::zeroed() };
                attr.st_ino = ino;
                attr.st_mode = libc::S_IFDIR;
                Entry {
                    inode: 0,
                    generation: 0,
                    attr,
                    attr_flags: 0,
                    attr_timeout: std::time::Duration::ZERO,
                    entry_timeout: std::time::Duration::ZERO,
                }
            } else {
                let cname = match std::ffi::CString::new(name) {
                    Ok(c) => c,
                    Err(_) => return Ok(true),
                };
                match self.do_lookup(&dir, &cname) {
                    Ok(e) => e,
                    // Gone since getdents read it: skip it.
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(true),
                    Err(e) => return Err(e),
                }
            };
            let dirent = DirEntry {
                ino: entry.attr.st_ino,
                ..dirent
            };
            // An entry that was not sent (reply full, or the reply failed) was not looked up
            // as far as the guest knows.
            let more = add(dirent, entry);
            if !matches!(more, Ok(true)) && entry.inode != 0 {
                self.inodes.forget(entry.inode, 1);
            }
            more
        })
    }

    fn releasedir(
        &self,
        _ctx: &Context,
        inode: Inode,
        _flags: u32,
        handle: Handle,
    ) -> io::Result<()> {
        self.handles.remove(handle, inode)
    }

    fn fsyncdir(
        &self,
        _ctx: &Context,
        inode: Inode,
        datasync: bool,
        handle: Handle,
    ) -> io::Result<()> {
        self.fsync(_ctx, inode, datasync, handle)
    }

    fn getlk(
        &self,
        _ctx: &Context,
        inode: Inode,
        handle: Handle,
        owner: u64,
        lock: Lock,
        flock: bool,
    ) -> io::Result<Lock> {
        if flock {
            return Err(errno(libc::EINVAL));
        }
        let fd = self.posix_lock_fd(
            inode,
            handle,
            owner,
            &Lock {
                typ: libc::F_UNLCK as u32,
                ..lock
            },
        )?;
        let fl = self.lock_op(fd.as_fd(), libc::F_OFD_GETLK, &lock)?;
        if fl.l_type == libc::F_UNLCK as i16 {
            return Ok(Lock {
                typ: libc::F_UNLCK as u32,
                ..lock
            });
        }
        let start = fl.l_start.max(0) as u64;
        let end = if fl.l_len == 0 {
            i64::MAX as u64
        } else {
            start.saturating_add(fl.l_len as u64).saturating_sub(1)
        };
        Ok(Lock {
            start,
            end,
            typ: fl.l_type as u32,
            pid: fl.l_pid.max(0) as u32,
        })
    }

    fn setlk(
        &self,
        _ctx: &Context,
        inode: Inode,
        handle: Handle,
        owner: u64,
        lock: Lock,
        flock: bool,
        wait: bool,
    ) -> io::Result<()> {
        if flock {
            let h = self.handles.get(handle, inode)?;
            use rustix::fs::FlockOperation as Op;
            let op = match (lock.typ as i32, wait) {
                (libc::F_RDLCK, true) => Op::LockShared,
                (libc::F_RDLCK, false) => Op::NonBlockingLockShared,
                (libc::F_WRLCK, true) => Op::LockExclusive,
                (libc::F_WRLCK, false) => Op::NonBlockingLockExclusive,
                (libc::F_UNLCK, _) => Op::Unlock,
                _ => return Err(errno(libc::EINVAL)),
            };
            rustix::fs::flock(h.file.as_fd(), op)?;
            return Ok(());
        }
        let fd = self.posix_lock_fd(inode, handle, owner, &lock)?;
        let cmd = if wait {
            libc::F_OFD_SETLKW
        } else {
            libc::F_OFD_SETLK
        };
        self.lock_op(fd.as_fd(), cmd, &lock)?;
        Ok(())
    }

    fn access(&self, ctx: &Context, inode: Inode, mask: u32) -> io::Result<()> {
        let data = self.inode(inode)?;
        let access = rustix::fs::Access::from_bits(mask).ok_or_else(|| errno(libc::EINVAL))?;
        let fd = data.fd()?;
        if mask & libc::W_OK as u32 != 0 && self.cfg.readonly {
            return Err(errno(libc::EROFS));
        }
        // Through the magic link: faccessat2 takes AT_EMPTY_PATH, but rustix refuses it.
        let path = sys::fd_name(std::os::fd::AsRawFd::as_raw_fd(&fd.as_fd()));
        let _creds = self.caller_creds(ctx)?;
        rustix::fs::accessat(
            self.proc_self_fd.as_fd(),
            path.as_c_str(),
            access,
            AtFlags::EACCESS,
        )?;
        Ok(())
    }

    fn fallocate(
        &self,
        _ctx: &Context,
        inode: Inode,
        handle: Handle,
        mode: u32,
        offset: u64,
        length: u64,
    ) -> io::Result<()> {
        self.check_writable()?;
        let h = self.handles.get(handle, inode)?;
        let flags =
            rustix::fs::FallocateFlags::from_bits(mode).ok_or_else(|| errno(libc::EOPNOTSUPP))?;
        rustix::fs::fallocate(h.file.as_fd(), flags, offset, length)?;
        Ok(())
    }

    fn lseek(
        &self,
        _ctx: &Context,
        inode: Inode,
        handle: Handle,
        offset: u64,
        whence: u32,
    ) -> io::Result<u64> {
        let h = self.handles.get(handle, inode)?;
        let whence = match whence as i32 {
            w @ (libc::SEEK_SET
            | libc::SEEK_CUR
            | libc::SEEK_END
            | libc::SEEK_DATA
            | libc::SEEK_HOLE) => w,
            _ => return Err(errno(libc::EINVAL)),
        };
        // The stream position of a directory handle is readdir's business.
        *h.lock_dir() = None;
        sys::lseek(h.file.as_fd(), offset as i64, whence)
    }

    fn copy_file_range(
        &self,
        _ctx: &Context,
        inode_in: Inode,
        handle_in: Handle,
        offset_in: u64,
        inode_out: Inode,
        handle_out: Handle,
        offset_out: u64,
        len: u64,
        flags: u64,
    ) -> io::Result<usize> {
        self.check_writable()?;
        if flags != 0 {
            return Err(errno(libc::EINVAL));
        }
        let hin = self.handles.get(handle_in, inode_in)?;
        let hout = self.handles.get(handle_out, inode_out)?;
        let mut off_in = offset_in;
        let mut off_out = offset_out;
        // The reply carries a u32 count.
        let len = len.min(u64::from(u32::MAX) & !4095) as usize;
        Ok(rustix::fs::copy_file_range(
            hin.file.as_fd(),
            Some(&mut off_in),
            hout.file.as_fd(),
            Some(&mut off_out),
            len,
        )?)
    }

    fn syncfs(&self, _ctx: &Context, inode: Inode) -> io::Result<()> {
        let data = self.inode(inode)?;
        let dir = if data.is_dir() || data.is_reg() {
            data
        } else {
            self.inode(vhostfs_server::ROOT_INODE)?
        };
        let flags = if dir.is_dir() {
            OFlags::RDONLY | OFlags::DIRECTORY
        } else {
            OFlags::RDONLY | OFlags::NONBLOCK
        };
        let fd = self.open_inode(&dir, flags)?;
        rustix::fs::syncfs(&fd)?;
        Ok(())
    }
}

/// Lists the directory open as `h` from cookie `offset` (about `size` bytes of `getdents`
/// output), calling `each(ino, next cookie, DT_* type, name)` for each entry until it returns
/// `Ok(false)` or fails. Keeps track of the stream position, so that a call that resumes
/// where the previous one stopped needs no seek.
fn list_dir(
    h: &HandleData,
    size: u32,
    offset: u64,
    mut each: impl FnMut(u64, u64, u32, &[u8]) -> io::Result<bool>,
) -> io::Result<()> {
    let mut pos = h.lock_dir();
    // Unknown until this call completes: an error midway leaves the stream anywhere.
    if pos.take() != Some(offset) {
        sys::lseek(h.file.as_fd(), offset as i64, libc::SEEK_SET)?;
    }
    let mut last = offset;
    let mut complete = true;
    sys::for_each_dirent(h.file.as_fd(), size as usize, |ino, next, typ, name| {
        let more = each(ino, next, typ, name);
        match more {
            Ok(true) => last = next,
            _ => complete = false,
        }
        more
    })?;
    // When we stopped early the stream went past what the guest got: seek next time.
    *pos = if complete { Some(last) } else { None };
    Ok(())
}

/// Repeats `step(offset, len)` (a `preadv`/`pwritev`-like partial transfer) until `size` bytes
/// moved or it returns 0 (end of file). An error after some progress ends the loop with the
/// short count, as `read(2)`/`write(2)` report it; `EINTR` is retried.
fn transfer_all(
    size: usize,
    offset: u64,
    what: &str,
    mut step: impl FnMut(u64, usize) -> io::Result<usize>,
) -> io::Result<usize> {
    let mut done = 0usize;
    while done < size {
        let off = offset
            .checked_add(done as u64)
            .ok_or_else(|| errno(libc::EINVAL))?;
        match step(off, size - done) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if done > 0 => {
                tracing::debug!("short {what} after {done} bytes: {e}");
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// A host uid for `chown`. `u32::MAX` is chown's "leave unchanged" and no id a guest may set
/// (the guest kernel never sends it), so a request carrying it is refused with `EINVAL`.
fn host_uid_t(u: u32) -> io::Result<rustix::fs::Uid> {
    if u == u32::MAX {
        return Err(errno(libc::EINVAL));
    }
    Ok(rustix::fs::Uid::from_raw(u))
}

/// A host gid for `chown`; `u32::MAX` is refused like in [`host_uid_t`].
fn host_gid_t(g: u32) -> io::Result<rustix::fs::Gid> {
    if g == u32::MAX {
        return Err(errno(libc::EINVAL));
    }
    Ok(rustix::fs::Gid::from_raw(g))
}
