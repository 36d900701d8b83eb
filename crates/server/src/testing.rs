//! Test support for the server and its users (unit tests, property tests, fuzz targets).
//!
//! - [`FakeFs`]: a small in-memory [`FileSystem`] (directories, regular files backed by
//!   memfds so the zero-copy READ/WRITE paths are real, symlinks, device/fifo nodes, xattrs,
//!   handles, lookup counts). Every resource is bounded ([`FakeFs::MAX_NODES`],
//!   [`FakeFs::MAX_FILE_SIZE`], ...) so that a fuzzer cannot exhaust the host.
//! - [`RequestBuilder`]: builds well-formed request bytes (header with the right `len`).
//! - [`parse_reply`]: splits reply bytes into the header and body.
//!
//! This is not a file system to serve anything real with: no permission checks, no check
//! against renaming a directory into itself, coarse locking, no timestamps.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::Duration;

use vhostfs_fuse_abi as abi;
use zerocopy::{FromBytes, IntoBytes};

use crate::filesystem::{
    AttrReply, Context, DirEntry, Entry, FileSystem, Handle, Inode, IoFlags, Lock, Name, Opened,
    SetAttr, XattrReply, ROOT_INODE,
};
use crate::io::{ZeroCopyReader, ZeroCopyWriter};

fn err(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

enum Kind {
    Dir(BTreeMap<Vec<u8>, Inode>),
    File(OwnedFd),
    Symlink(Vec<u8>),
    Special,
}

struct Node {
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
    rdev: u32,
    nlink: u32,
    lookups: u64,
    open: u32,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

struct State {
    nodes: HashMap<Inode, Node>,
    next_ino: Inode,
    handles: HashMap<Handle, Inode>,
    next_handle: Handle,
    init_flags: u64,
    destroyed: u64,
}

/// A small, bounded, in-memory file system for tests and fuzzing.
///
/// [`FileSystem::init`] asks for every capability in [`FakeFs::with_init_flags`] (default:
/// readdirplus, locks, SETXATTR_EXT, security contexts and supplementary groups) that the
/// client offers.
pub struct FakeFs {
    state: Mutex<State>,
    /// Every context seen by creating calls, for assertions (bounded to the last 16).
    contexts: Mutex<Vec<Context>>,
}

impl Default for FakeFs {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeFs {
    /// Most inodes alive at once (root included).
    pub const MAX_NODES: usize = 128;
    /// Largest file size.
    pub const MAX_FILE_SIZE: u64 = 1 << 20;
    /// Most open handles at once.
    pub const MAX_HANDLES: usize = 128;
    /// Most xattrs per inode.
    pub const MAX_XATTRS: usize = 8;

    /// An empty file system: just the root directory.
    pub fn new() -> Self {
        Self::with_init_flags(
            abi::init_flags::DO_READDIRPLUS
                | abi::init_flags::POSIX_LOCKS
                | abi::init_flags::FLOCK_LOCKS
                | abi::init_flags::SETXATTR_EXT
                | abi::init_flags::SECURITY_CTX
                | abi::init_flags::CREATE_SUPP_GROUP
                | abi::init_flags::WRITEBACK_CACHE,
        )
    }

    /// An empty file system whose `init` asks for `flags`.
    pub fn with_init_flags(flags: u64) -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT_INODE,
            Node {
                kind: Kind::Dir(BTreeMap::new()),
                mode: libc::S_IFDIR | 0o755,
                uid: 0,
                gid: 0,
                rdev: 0,
                nlink: 2,
                lookups: 1,
                open: 0,
                xattrs: BTreeMap::new(),
            },
        );
        Self {
            state: Mutex::new(State {
                nodes,
                next_ino: ROOT_INODE + 1,
                handles: HashMap::new(),
                next_handle: 1,
                init_flags: flags,
                destroyed: 0,
            }),
            contexts: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of inodes alive (root included).
    pub fn node_count(&self) -> usize {
        self.lock().nodes.len()
    }

    /// Lookup count of `inode` (None if it is gone).
    pub fn lookups(&self, inode: Inode) -> Option<u64> {
        self.lock().nodes.get(&inode).map(|n| n.lookups)
    }

    /// Number of open handles.
    pub fn handle_count(&self) -> usize {
        self.lock().handles.len()
    }

    /// How many times DESTROY reached the file system.
    pub fn destroy_count(&self) -> u64 {
        self.lock().destroyed
    }

    /// The contexts of the last creating calls (newest last).
    pub fn recent_contexts(&self) -> Vec<Context> {
        self.contexts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs `f` on the file behind `handle`, holding the state lock.
    fn with_file<T>(
        &self,
        handle: Handle,
        f: impl FnOnce(std::os::fd::BorrowedFd<'_>) -> io::Result<T>,
    ) -> io::Result<T> {
        let st = self.lock();
        f(st.file(handle)?.as_fd())
    }

    fn note_ctx(&self, ctx: &Context) {
        let mut c = self.contexts.lock().unwrap_or_else(|p| p.into_inner());
        if c.len() >= 16 {
            c.remove(0);
        }
        c.push(ctx.clone());
    }
}

impl State {
    fn node(&self, ino: Inode) -> io::Result<&Node> {
        self.nodes.get(&ino).ok_or_else(|| err(libc::ENOENT))
    }

    fn node_mut(&mut self, ino: Inode) -> io::Result<&mut Node> {
        self.nodes.get_mut(&ino).ok_or_else(|| err(libc::ENOENT))
    }

    fn dir(&self, ino: Inode) -> io::Result<&BTreeMap<Vec<u8>, Inode>> {
        match &self.node(ino)?.kind {
            Kind::Dir(d) => Ok(d),
            _ => Err(err(libc::ENOTDIR)),
        }
    }

    fn dir_mut(&mut self, ino: Inode) -> io::Result<&mut BTreeMap<Vec<u8>, Inode>> {
        match &mut self.node_mut(ino)?.kind {
            Kind::Dir(d) => Ok(d),
            _ => Err(err(libc::ENOTDIR)),
        }
    }

    fn stat(&self, ino: Inode) -> io::Result<libc::stat64> {
        let n = self.node(ino)?;
        // SAFETY: stat64 is plain old data; all-zero is a valid value.
        let mut st: libc::stat64 = unsafe { std::mem::zeroed() };
        st.st_ino = ino;
        st.st_mode = n.mode;
        st.st_nlink = n.nlink.into();
        st.st_uid = n.uid;
        st.st_gid = n.gid;
        st.st_rdev = n.rdev.into();
        st.st_blksize = 4096;
        st.st_size = match &n.kind {
            Kind::File(fd) => file_len(fd)? as i64,
            Kind::Symlink(t) => t.len() as i64,
            Kind::Dir(d) => d.len() as i64,
            Kind::Special => 0,
        };
        st.st_blocks = (st.st_size + 511) / 512;
        Ok(st)
    }

    fn entry(&mut self, ino: Inode) -> io::Result<Entry> {
        let attr = self.stat(ino)?;
        self.node_mut(ino)?.lookups += 1;
        Ok(Entry {
            inode: ino,
            generation: 1,
            attr,
            attr_flags: 0,
            attr_timeout: Duration::from_secs(1),
            entry_timeout: Duration::from_secs(1),
        })
    }

    fn maybe_drop(&mut self, ino: Inode) {
        if ino == ROOT_INODE {
            return;
        }
        if let Some(n) = self.nodes.get(&ino) {
            if n.nlink == 0 && n.lookups == 0 && n.open == 0 {
                self.nodes.remove(&ino);
            }
        }
    }

    fn add_node(&mut self, parent: Inode, name: &Name<'_>, node: Node) -> io::Result<Entry> {
        if name.is_dot_or_dotdot() {
            return Err(err(libc::EEXIST));
        }
        if self.dir(parent)?.contains_key(name.as_bytes()) {
            return Err(err(libc::EEXIST));
        }
        if self.nodes.len() >= FakeFs::MAX_NODES {
            return Err(err(libc::ENOSPC));
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, node);
        self.dir_mut(parent)?.insert(name.as_bytes().to_vec(), ino);
        self.entry(ino)
    }

    fn child(&self, parent: Inode, name: &Name<'_>) -> io::Result<Inode> {
        self.dir(parent)?
            .get(name.as_bytes())
            .copied()
            .ok_or_else(|| err(libc::ENOENT))
    }

    fn open_handle(&mut self, ino: Inode) -> io::Result<Handle> {
        if self.handles.len() >= FakeFs::MAX_HANDLES {
            return Err(err(libc::EMFILE));
        }
        self.node_mut(ino)?.open += 1;
        let h = self.next_handle;
        self.next_handle += 1;
        self.handles.insert(h, ino);
        Ok(h)
    }

    /// Opens a handle on `ino`, as OPEN, OPENDIR and CREATE answer it.
    fn opened(&mut self, ino: Inode) -> io::Result<Opened> {
        Ok(Opened {
            handle: self.open_handle(ino)?,
            open_flags: 0,
        })
    }

    fn file(&self, handle: Handle) -> io::Result<&OwnedFd> {
        let ino = *self.handles.get(&handle).ok_or_else(|| err(libc::EBADF))?;
        match &self.node(ino)?.kind {
            Kind::File(fd) => Ok(fd),
            Kind::Dir(_) => Err(err(libc::EISDIR)),
            _ => Err(err(libc::EBADF)),
        }
    }
}

fn memfd() -> io::Result<OwnedFd> {
    // SAFETY: the name is a valid C string; the returned fd (if any) is ours.
    let fd = unsafe { libc::memfd_create(c"fakefs".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn file_len(fd: &OwnedFd) -> io::Result<u64> {
    Ok(std::fs::File::from(fd.try_clone()?).metadata()?.len())
}

fn set_len(fd: &OwnedFd, len: u64) -> io::Result<()> {
    if len > FakeFs::MAX_FILE_SIZE {
        return Err(err(libc::EFBIG));
    }
    std::fs::File::from(fd.try_clone()?).set_len(len)
}

/// The permission bits of a new node: `mode` less the `umask`.
fn perm(mode: u32, umask: u32) -> u32 {
    mode & 0o7777 & !umask
}

/// A new regular file (backed by a fresh memfd) owned by the caller.
fn new_file_node(mode: u32, umask: u32, ctx: &Context) -> io::Result<Node> {
    Ok(new_node(
        Kind::File(memfd()?),
        libc::S_IFREG | perm(mode, umask),
        ctx,
    ))
}

/// Runs `op(offset, len)` until `size` bytes are moved or it moves none; the bytes moved.
fn transfer(
    size: u32,
    offset: u64,
    mut op: impl FnMut(u64, usize) -> io::Result<usize>,
) -> io::Result<usize> {
    let mut done = 0usize;
    while done < size as usize {
        let n = op(offset + done as u64, size as usize - done)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

fn new_node(kind: Kind, mode: u32, ctx: &Context) -> Node {
    Node {
        kind,
        mode,
        uid: ctx.uid,
        gid: ctx.supplementary_gid.unwrap_or(ctx.gid),
        rdev: 0,
        nlink: 1,
        lookups: 0,
        open: 0,
        xattrs: BTreeMap::new(),
    }
}

impl FileSystem for FakeFs {
    fn init(&self, capable: u64) -> io::Result<u64> {
        Ok(self.lock().init_flags & capable)
    }

    fn destroy(&self) {
        let mut st = self.lock();
        st.destroyed += 1;
        st.handles.clear();
        for n in st.nodes.values_mut() {
            n.open = 0;
            n.lookups = 0;
        }
        if let Some(root) = st.nodes.get_mut(&ROOT_INODE) {
            root.lookups = 1;
        }
        let orphans: Vec<Inode> = st.nodes.keys().copied().collect();
        for ino in orphans {
            st.maybe_drop(ino);
        }
    }

    fn lookup(&self, _ctx: &Context, parent: Inode, name: Name<'_>) -> io::Result<Entry> {
        let mut st = self.lock();
        let ino = match name.as_bytes() {
            b"." | b".." => {
                st.dir(parent)?;
                parent
            }
            _ => st.child(parent, &name)?,
        };
        st.entry(ino)
    }

    fn forget(&self, inode: Inode, count: u64) {
        let mut st = self.lock();
        if let Some(n) = st.nodes.get_mut(&inode) {
            n.lookups = n.lookups.saturating_sub(count);
        }
        st.maybe_drop(inode);
    }

    fn getattr(&self, _ctx: &Context, inode: Inode, _h: Option<Handle>) -> io::Result<AttrReply> {
        Ok(AttrReply {
            attr: self.lock().stat(inode)?,
            timeout: Duration::from_secs(1),
        })
    }

    fn setattr(&self, _ctx: &Context, inode: Inode, attr: SetAttr) -> io::Result<AttrReply> {
        let mut st = self.lock();
        let n = st.node_mut(inode)?;
        if let Some(size) = attr.size {
            match &n.kind {
                Kind::File(fd) => set_len(fd, size)?,
                Kind::Dir(_) => return Err(err(libc::EISDIR)),
                _ => return Err(err(libc::EINVAL)),
            }
        }
        if let Some(mode) = attr.mode {
            n.mode = (n.mode & libc::S_IFMT) | (mode & 0o7777);
        }
        if let Some(uid) = attr.uid {
            n.uid = uid;
        }
        if let Some(gid) = attr.gid {
            n.gid = gid;
        }
        Ok(AttrReply {
            attr: st.stat(inode)?,
            timeout: Duration::from_secs(1),
        })
    }

    fn readlink(&self, _ctx: &Context, inode: Inode) -> io::Result<Vec<u8>> {
        match &self.lock().node(inode)?.kind {
            Kind::Symlink(t) => Ok(t.clone()),
            _ => Err(err(libc::EINVAL)),
        }
    }

    fn symlink(
        &self,
        ctx: &Context,
        target: &CStr,
        parent: Inode,
        name: Name<'_>,
    ) -> io::Result<Entry> {
        self.note_ctx(ctx);
        let node = new_node(
            Kind::Symlink(target.to_bytes().to_vec()),
            libc::S_IFLNK | 0o777,
            ctx,
        );
        self.lock().add_node(parent, &name, node)
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
        self.note_ctx(ctx);
        let perm = perm(mode, umask);
        let (kind, fmt) = match mode & libc::S_IFMT {
            libc::S_IFREG | 0 => (Kind::File(memfd()?), libc::S_IFREG),
            libc::S_IFIFO | libc::S_IFSOCK | libc::S_IFCHR | libc::S_IFBLK => {
                (Kind::Special, mode & libc::S_IFMT)
            }
            _ => return Err(err(libc::EINVAL)),
        };
        let mut node = new_node(kind, fmt | perm, ctx);
        node.rdev = rdev;
        self.lock().add_node(parent, &name, node)
    }

    fn mkdir(
        &self,
        ctx: &Context,
        parent: Inode,
        name: Name<'_>,
        mode: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        self.note_ctx(ctx);
        let mut node = new_node(
            Kind::Dir(BTreeMap::new()),
            libc::S_IFDIR | perm(mode, umask),
            ctx,
        );
        node.nlink = 2;
        self.lock().add_node(parent, &name, node)
    }

    fn unlink(&self, _ctx: &Context, parent: Inode, name: Name<'_>) -> io::Result<()> {
        let mut st = self.lock();
        let ino = st.child(parent, &name)?;
        if matches!(st.node(ino)?.kind, Kind::Dir(_)) {
            return Err(err(libc::EISDIR));
        }
        st.dir_mut(parent)?.remove(name.as_bytes());
        let n = st.node_mut(ino)?;
        n.nlink = n.nlink.saturating_sub(1);
        st.maybe_drop(ino);
        Ok(())
    }

    fn rmdir(&self, _ctx: &Context, parent: Inode, name: Name<'_>) -> io::Result<()> {
        let mut st = self.lock();
        if name.is_dot_or_dotdot() {
            return Err(err(libc::EINVAL));
        }
        let ino = st.child(parent, &name)?;
        if !st.dir(ino)?.is_empty() {
            return Err(err(libc::ENOTEMPTY));
        }
        st.dir_mut(parent)?.remove(name.as_bytes());
        st.node_mut(ino)?.nlink = 0;
        st.maybe_drop(ino);
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
        if flags & !libc::RENAME_NOREPLACE != 0 {
            return Err(err(libc::EINVAL));
        }
        let mut st = self.lock();
        if old_name.is_dot_or_dotdot() || new_name.is_dot_or_dotdot() {
            return Err(err(libc::EBUSY));
        }
        let ino = st.child(old_parent, &old_name)?;
        st.dir(new_parent)?;
        if ino == new_parent {
            return Err(err(libc::EINVAL));
        }
        if let Ok(existing) = st.child(new_parent, &new_name) {
            if existing == ino {
                return Ok(());
            }
            if flags & libc::RENAME_NOREPLACE != 0 {
                return Err(err(libc::EEXIST));
            }
            let is_dir = matches!(st.node(existing)?.kind, Kind::Dir(_));
            if is_dir && !st.dir(existing)?.is_empty() {
                return Err(err(libc::ENOTEMPTY));
            }
            let n = st.node_mut(existing)?;
            n.nlink = if is_dir { 0 } else { n.nlink.saturating_sub(1) };
            st.dir_mut(new_parent)?.remove(new_name.as_bytes());
            st.maybe_drop(existing);
        }
        st.dir_mut(old_parent)?.remove(old_name.as_bytes());
        st.dir_mut(new_parent)?
            .insert(new_name.as_bytes().to_vec(), ino);
        Ok(())
    }

    fn link(
        &self,
        _ctx: &Context,
        inode: Inode,
        new_parent: Inode,
        new_name: Name<'_>,
    ) -> io::Result<Entry> {
        let mut st = self.lock();
        if matches!(st.node(inode)?.kind, Kind::Dir(_)) {
            return Err(err(libc::EPERM));
        }
        if new_name.is_dot_or_dotdot() || st.child(new_parent, &new_name).is_ok() {
            return Err(err(libc::EEXIST));
        }
        st.dir_mut(new_parent)?
            .insert(new_name.as_bytes().to_vec(), inode);
        st.node_mut(inode)?.nlink += 1;
        st.entry(inode)
    }

    fn open(&self, _ctx: &Context, inode: Inode, flags: u32, _ff: u32) -> io::Result<Opened> {
        let mut st = self.lock();
        match &st.node(inode)?.kind {
            Kind::File(fd) => {
                if flags & libc::O_TRUNC as u32 != 0 {
                    set_len(fd, 0)?;
                }
            }
            Kind::Dir(_) => return Err(err(libc::EISDIR)),
            _ => return Err(err(libc::ENXIO)),
        }
        st.opened(inode)
    }

    fn create(
        &self,
        ctx: &Context,
        parent: Inode,
        name: Name<'_>,
        mode: u32,
        _flags: u32,
        umask: u32,
        _fuse_flags: u32,
    ) -> io::Result<(Entry, Opened)> {
        self.note_ctx(ctx);
        let node = new_file_node(mode, umask, ctx)?;
        let mut st = self.lock();
        if st.handles.len() >= FakeFs::MAX_HANDLES {
            return Err(err(libc::EMFILE));
        }
        let entry = st.add_node(parent, &name, node)?;
        let opened = st.opened(entry.inode)?;
        Ok((entry, opened))
    }

    fn tmpfile(
        &self,
        ctx: &Context,
        parent: Inode,
        mode: u32,
        _flags: u32,
        umask: u32,
    ) -> io::Result<(Entry, Opened)> {
        self.note_ctx(ctx);
        let mut st = self.lock();
        st.dir(parent)?;
        if st.nodes.len() >= FakeFs::MAX_NODES || st.handles.len() >= FakeFs::MAX_HANDLES {
            return Err(err(libc::ENOSPC));
        }
        let mut node = new_file_node(mode, umask, ctx)?;
        node.nlink = 0;
        let ino = st.next_ino;
        st.next_ino += 1;
        st.nodes.insert(ino, node);
        let entry = st.entry(ino)?;
        let opened = st.opened(ino)?;
        Ok((entry, opened))
    }

    fn read(
        &self,
        _ctx: &Context,
        _inode: Inode,
        handle: Handle,
        w: &mut dyn ZeroCopyWriter,
        size: u32,
        offset: u64,
        _flags: IoFlags,
    ) -> io::Result<usize> {
        self.with_file(handle, |fd| {
            transfer(size, offset, |off, len| w.write_from_file(fd, off, len))
        })
    }

    fn write(
        &self,
        _ctx: &Context,
        _inode: Inode,
        handle: Handle,
        r: &mut dyn ZeroCopyReader,
        size: u32,
        offset: u64,
        _flags: IoFlags,
    ) -> io::Result<usize> {
        self.with_file(handle, |fd| {
            if offset.saturating_add(u64::from(size)) > FakeFs::MAX_FILE_SIZE {
                return Err(err(libc::EFBIG));
            }
            transfer(size, offset, |off, len| r.read_to_file(fd, off, len))
        })
    }

    fn statfs(&self, _ctx: &Context, _inode: Inode) -> io::Result<libc::statvfs64> {
        let st = self.lock();
        // SAFETY: statvfs64 is plain old data; all-zero is a valid value.
        let mut s: libc::statvfs64 = unsafe { std::mem::zeroed() };
        s.f_bsize = 4096;
        s.f_frsize = 4096;
        s.f_blocks = 1 << 20;
        s.f_bfree = 1 << 19;
        s.f_bavail = 1 << 19;
        s.f_files = FakeFs::MAX_NODES as u64;
        s.f_ffree = FakeFs::MAX_NODES.saturating_sub(st.nodes.len()) as u64;
        s.f_namemax = 255;
        Ok(s)
    }

    fn release(
        &self,
        _ctx: &Context,
        _inode: Inode,
        _flags: u32,
        handle: Handle,
        _flush: bool,
        _flock_release: bool,
        _lock_owner: Option<u64>,
    ) -> io::Result<()> {
        let mut st = self.lock();
        let ino = st.handles.remove(&handle).ok_or_else(|| err(libc::EBADF))?;
        if let Some(n) = st.nodes.get_mut(&ino) {
            n.open = n.open.saturating_sub(1);
        }
        st.maybe_drop(ino);
        Ok(())
    }

    fn fsync(&self, _ctx: &Context, _inode: Inode, _ds: bool, handle: Handle) -> io::Result<()> {
        self.lock().file(handle).map(|_| ())
    }

    fn setxattr(
        &self,
        _ctx: &Context,
        inode: Inode,
        name: &CStr,
        value: &[u8],
        flags: u32,
        _extra_flags: u32,
    ) -> io::Result<()> {
        let mut st = self.lock();
        let n = st.node_mut(inode)?;
        let exists = n.xattrs.contains_key(name.to_bytes());
        if flags & libc::XATTR_CREATE as u32 != 0 && exists {
            return Err(err(libc::EEXIST));
        }
        if flags & libc::XATTR_REPLACE as u32 != 0 && !exists {
            return Err(err(libc::ENODATA));
        }
        if !exists && n.xattrs.len() >= FakeFs::MAX_XATTRS {
            return Err(err(libc::ENOSPC));
        }
        n.xattrs.insert(name.to_bytes().to_vec(), value.to_vec());
        Ok(())
    }

    fn getxattr(
        &self,
        _ctx: &Context,
        inode: Inode,
        name: &CStr,
        size: u32,
    ) -> io::Result<XattrReply> {
        let st = self.lock();
        let v = st
            .node(inode)?
            .xattrs
            .get(name.to_bytes())
            .ok_or_else(|| err(libc::ENODATA))?;
        xattr_reply(v.clone(), size)
    }

    fn listxattr(&self, _ctx: &Context, inode: Inode, size: u32) -> io::Result<XattrReply> {
        let st = self.lock();
        let mut list = Vec::new();
        for k in st.node(inode)?.xattrs.keys() {
            list.extend_from_slice(k);
            list.push(0);
        }
        xattr_reply(list, size)
    }

    fn removexattr(&self, _ctx: &Context, inode: Inode, name: &CStr) -> io::Result<()> {
        let mut st = self.lock();
        st.node_mut(inode)?
            .xattrs
            .remove(name.to_bytes())
            .map(|_| ())
            .ok_or_else(|| err(libc::ENODATA))
    }

    fn flush(&self, _ctx: &Context, _inode: Inode, handle: Handle, _lo: u64) -> io::Result<()> {
        self.lock().file(handle).map(|_| ())
    }

    fn opendir(&self, _ctx: &Context, inode: Inode, _flags: u32) -> io::Result<Opened> {
        let mut st = self.lock();
        st.dir(inode)?;
        st.opened(inode)
    }

    fn readdir(
        &self,
        _ctx: &Context,
        inode: Inode,
        _handle: Handle,
        _size: u32,
        offset: u64,
        add: &mut dyn FnMut(DirEntry<'_>) -> io::Result<bool>,
    ) -> io::Result<()> {
        let entries = self.dir_listing(inode)?;
        for (i, item) in entries.iter().enumerate().skip(offset as usize) {
            if !add(item.dirent(i))? {
                break;
            }
        }
        Ok(())
    }

    fn readdirplus(
        &self,
        _ctx: &Context,
        inode: Inode,
        _handle: Handle,
        _size: u32,
        offset: u64,
        add: &mut dyn FnMut(DirEntry<'_>, Entry) -> io::Result<bool>,
    ) -> io::Result<()> {
        let entries = self.dir_listing(inode)?;
        for (i, item) in entries.iter().enumerate().skip(offset as usize) {
            let ino = item.ino;
            let dot = item.name == b"." || item.name == b"..";
            let entry = {
                let mut st = self.lock();
                if dot {
                    let mut e = st.entry(ino)?;
                    st.node_mut(ino)?.lookups -= 1;
                    e.inode = 0;
                    e
                } else {
                    match st.entry(ino) {
                        Ok(e) => e,
                        Err(_) => continue,
                    }
                }
            };
            if !add(item.dirent(i), entry)? {
                if !dot {
                    self.forget(ino, 1);
                }
                break;
            }
        }
        Ok(())
    }

    fn releasedir(
        &self,
        ctx: &Context,
        inode: Inode,
        flags: u32,
        handle: Handle,
    ) -> io::Result<()> {
        self.release(ctx, inode, flags, handle, false, false, None)
    }

    fn fsyncdir(&self, _ctx: &Context, inode: Inode, _ds: bool, _h: Handle) -> io::Result<()> {
        self.lock().dir(inode).map(|_| ())
    }

    fn getlk(
        &self,
        _ctx: &Context,
        _inode: Inode,
        handle: Handle,
        _owner: u64,
        lock: Lock,
        _flock: bool,
    ) -> io::Result<Lock> {
        self.lock().file(handle)?;
        Ok(Lock {
            typ: libc::F_UNLCK as u32,
            ..lock
        })
    }

    fn setlk(
        &self,
        _ctx: &Context,
        _inode: Inode,
        handle: Handle,
        _owner: u64,
        _lock: Lock,
        _flock: bool,
        _wait: bool,
    ) -> io::Result<()> {
        self.lock().file(handle).map(|_| ())
    }

    fn access(&self, _ctx: &Context, inode: Inode, _mask: u32) -> io::Result<()> {
        self.lock().node(inode).map(|_| ())
    }

    fn fallocate(
        &self,
        _ctx: &Context,
        _inode: Inode,
        handle: Handle,
        mode: u32,
        offset: u64,
        length: u64,
    ) -> io::Result<()> {
        if mode != 0 {
            return Err(err(libc::EOPNOTSUPP));
        }
        let st = self.lock();
        let fd = st.file(handle)?;
        let end = offset.checked_add(length).ok_or_else(|| err(libc::EFBIG))?;
        if end > file_len(fd)? {
            set_len(fd, end)?;
        }
        Ok(())
    }

    fn lseek(
        &self,
        _ctx: &Context,
        _inode: Inode,
        handle: Handle,
        offset: u64,
        whence: u32,
    ) -> io::Result<u64> {
        let st = self.lock();
        let len = file_len(st.file(handle)?)?;
        match whence as i32 {
            libc::SEEK_SET => Ok(offset),
            libc::SEEK_DATA if offset < len => Ok(offset),
            libc::SEEK_HOLE if offset <= len => Ok(len),
            libc::SEEK_DATA | libc::SEEK_HOLE => Err(err(libc::ENXIO)),
            _ => Err(err(libc::EINVAL)),
        }
    }

    fn copy_file_range(
        &self,
        _ctx: &Context,
        _inode_in: Inode,
        handle_in: Handle,
        offset_in: u64,
        _inode_out: Inode,
        handle_out: Handle,
        offset_out: u64,
        len: u64,
        _flags: u64,
    ) -> io::Result<usize> {
        let st = self.lock();
        let src = std::fs::File::from(st.file(handle_in)?.try_clone()?);
        let dst = std::fs::File::from(st.file(handle_out)?.try_clone()?);
        let len = len.min(FakeFs::MAX_FILE_SIZE);
        if offset_out.saturating_add(len) > FakeFs::MAX_FILE_SIZE {
            return Err(err(libc::EFBIG));
        }
        let mut buf = vec![0u8; len as usize];
        use std::os::unix::fs::FileExt;
        let n = src.read_at(&mut buf, offset_in)?;
        dst.write_all_at(&buf[..n], offset_out)?;
        Ok(n)
    }

    fn syncfs(&self, _ctx: &Context, _inode: Inode) -> io::Result<()> {
        Ok(())
    }
}

impl FakeFs {
    /// `.`, `..` and the children of `inode`, with their inode numbers and `DT_*` types.
    fn dir_listing(&self, inode: Inode) -> io::Result<Vec<Listed>> {
        let st = self.lock();
        let dir = st.dir(inode)?;
        let mut out = vec![
            Listed::new(b".".to_vec(), inode, libc::DT_DIR),
            Listed::new(b"..".to_vec(), inode, libc::DT_DIR),
        ];
        for (name, &ino) in dir {
            let typ = match st.node(ino).map(|n| n.mode & libc::S_IFMT) {
                Ok(libc::S_IFDIR) => libc::DT_DIR,
                Ok(libc::S_IFREG) => libc::DT_REG,
                Ok(libc::S_IFLNK) => libc::DT_LNK,
                _ => libc::DT_UNKNOWN,
            };
            out.push(Listed::new(name.clone(), ino, typ));
        }
        Ok(out)
    }
}

/// One entry of a [`FakeFs::dir_listing`].
struct Listed {
    name: Vec<u8>,
    ino: Inode,
    /// `DT_*` type.
    typ: u32,
}

impl Listed {
    fn new(name: Vec<u8>, ino: Inode, typ: u8) -> Self {
        Self {
            name,
            ino,
            typ: u32::from(typ),
        }
    }

    /// The entry as READDIR sends it when it is the `index`-th of the listing (its cookie is
    /// the index of the next one).
    fn dirent(&self, index: usize) -> DirEntry<'_> {
        DirEntry {
            ino: self.ino,
            offset: index as u64 + 1,
            typ: self.typ,
            name: &self.name,
        }
    }
}

fn xattr_reply(v: Vec<u8>, size: u32) -> io::Result<XattrReply> {
    if size == 0 {
        Ok(XattrReply::Size(v.len() as u32))
    } else if v.len() > size as usize {
        Err(err(libc::ERANGE))
    } else {
        Ok(XattrReply::Data(v))
    }
}

/// Builds the bytes of one request: a header whose `len` matches, then arguments, then
/// (optionally) extensions.
#[derive(Clone, Debug)]
pub struct RequestBuilder {
    header: abi::InHeader,
    body: Vec<u8>,
    ext: Vec<u8>,
}

impl RequestBuilder {
    /// A request with `opcode`, `unique` and `nodeid`, uid/gid/pid 0.
    pub fn new(opcode: u32, unique: u64, nodeid: u64) -> Self {
        Self {
            header: abi::InHeader {
                opcode,
                unique,
                nodeid,
                ..Default::default()
            },
            body: Vec::new(),
            ext: Vec::new(),
        }
    }

    /// Sets the caller's credentials.
    pub fn creds(mut self, uid: u32, gid: u32, pid: u32) -> Self {
        self.header.uid = uid;
        self.header.gid = gid;
        self.header.pid = pid;
        self
    }

    /// Appends a wire struct to the arguments.
    pub fn arg<T: IntoBytes + zerocopy::Immutable>(mut self, v: &T) -> Self {
        self.body.extend_from_slice(v.as_bytes());
        self
    }

    /// Appends raw bytes to the arguments.
    pub fn bytes(mut self, b: &[u8]) -> Self {
        self.body.extend_from_slice(b);
        self
    }

    /// Appends a NUL-terminated string to the arguments.
    pub fn name(mut self, s: &[u8]) -> Self {
        self.body.extend_from_slice(s);
        self.body.push(0);
        self
    }

    /// Appends a supplementary-group extension carrying `gid`.
    pub fn supp_group(mut self, gid: u32) -> Self {
        let hdr = abi::ExtHeader {
            size: 16,
            typ: abi::ext_type::GROUPS,
        };
        self.ext.extend_from_slice(hdr.as_bytes());
        self.ext.extend_from_slice(&1u32.to_ne_bytes());
        self.ext.extend_from_slice(&gid.to_ne_bytes());
        self
    }

    /// Appends a security-context extension with one context.
    pub fn security_ctx(mut self, name: &[u8], value: &[u8]) -> Self {
        let rec = abi::dirent_size(8 + name.len() + 1 + value.len(), 0);
        let hdr = abi::ExtHeader {
            size: (8 + rec) as u32,
            typ: 1,
        };
        let start = self.ext.len();
        self.ext.extend_from_slice(hdr.as_bytes());
        self.ext.extend_from_slice(
            abi::Secctx {
                size: value.len() as u32,
                padding: 0,
            }
            .as_bytes(),
        );
        self.ext.extend_from_slice(name);
        self.ext.push(0);
        self.ext.extend_from_slice(value);
        self.ext.resize(start + 8 + rec, 0);
        self
    }

    /// The request bytes, with `len` and `total_extlen` filled in.
    pub fn build(&self) -> Vec<u8> {
        let mut h = self.header;
        let len = std::mem::size_of::<abi::InHeader>() + self.body.len() + self.ext.len();
        h.len = len as u32;
        h.total_extlen = (self.ext.len() / 8) as u16;
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(&self.body);
        out.extend_from_slice(&self.ext);
        out
    }
}

/// Splits reply bytes into the header and the body; `None` if shorter than a header.
pub fn parse_reply(bytes: &[u8]) -> Option<(abi::OutHeader, &[u8])> {
    let (h, body) = abi::OutHeader::read_from_prefix(bytes).ok()?;
    Some((h, body))
}

/// The INIT request a Linux 6.12 client sends, offering `flags` (low and high halves).
pub fn init_request(unique: u64, flags: u64) -> Vec<u8> {
    let init = abi::InitIn {
        major: abi::KERNEL_VERSION,
        minor: abi::KERNEL_MINOR_VERSION,
        max_readahead: 128 << 10,
        flags: flags as u32 | abi::init_flags::INIT_EXT as u32,
        flags2: (flags >> 32) as u32,
        unused: [0; 11],
    };
    RequestBuilder::new(abi::opcode::INIT, unique, 0)
        .arg(&init)
        .build()
}

/// Every init flag a Linux 6.12 client offers (roughly), for tests.
pub const ALL_CLIENT_FLAGS: u64 = (1 << 41) - 1;
