//! The table of guest-visible inodes.
//!
//! Each guest node id names one host inode, identified by `(st_dev, st_ino, mnt_id)`; hard
//! links therefore share one node id. The table holds, per inode, either an `O_PATH` file
//! descriptor or a file handle (see [`InodeFileHandles`](crate::InodeFileHandles)) and the
//! guest's lookup count. Node ids are opaque keys drawn from a counter and never reused while
//! the file system lives; the generation number is fixed per file system instance (derived
//! from the start time) so that ids handed out by an earlier instance do not alias.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use rustix::fs::OFlags;
use vhostfs_server::{Inode, ROOT_INODE};

use crate::sys::{errno, open_by_handle, RawFileHandle};

/// What identifies a host inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct InodeKey {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// Host mount id (`statx` `STATX_MNT_ID`).
    pub mnt_id: u64,
}

/// How the table reaches a host inode.
pub(crate) enum InodeFile {
    /// An `O_PATH` fd, kept open.
    Fd(OwnedFd),
    /// A file handle, reopened with `open_by_handle_at` relative to a mount fd when needed.
    Handle {
        /// The handle.
        handle: RawFileHandle,
        /// Any fd on the handle's mount.
        mount_fd: Arc<OwnedFd>,
    },
}

/// An fd of an inode: borrowed from the table or freshly opened from a file handle.
pub(crate) enum InodeFd<'a> {
    /// The table's own `O_PATH` fd.
    Borrowed(BorrowedFd<'a>),
    /// Opened from a file handle for this use.
    Owned(OwnedFd),
}

impl AsFd for InodeFd<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            InodeFd::Borrowed(fd) => *fd,
            InodeFd::Owned(fd) => fd.as_fd(),
        }
    }
}

/// A host open file description carrying one guest lock owner's POSIX locks; counted in a
/// shared counter while open.
pub(crate) struct LockFd {
    fd: OwnedFd,
    counter: Arc<AtomicU64>,
}

impl LockFd {
    /// Wraps `fd`, counting it in `counter`.
    pub fn new(fd: OwnedFd, counter: Arc<AtomicU64>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self { fd, counter }
    }
}

impl AsFd for LockFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for LockFd {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The POSIX locks of one guest lock owner on one inode.
pub(crate) struct LockOwner {
    /// The host file description the locks live on.
    pub fd: Arc<LockFd>,
    /// The guest handles the owner locked through (see `release`).
    pub handles: Vec<vhostfs_server::Handle>,
}

/// One guest-visible inode.
pub(crate) struct InodeData {
    /// Guest node id.
    pub id: Inode,
    /// Host identity.
    pub key: InodeKey,
    /// File type bits (`S_IFMT` part of `st_mode`); never changes for an inode.
    pub file_type: u32,
    file: InodeFile,
    /// Guest lookup count; only changed with the table's lock held (read lock to increment,
    /// write lock to decrement and remove).
    refcount: AtomicU64,
    /// Per guest lock owner: the host open file description its POSIX locks live on.
    lock_fds: Mutex<HashMap<u64, LockOwner>>,
}

impl InodeData {
    /// An `O_PATH` fd of the inode.
    pub fn fd(&self) -> io::Result<InodeFd<'_>> {
        match &self.file {
            InodeFile::Fd(fd) => Ok(InodeFd::Borrowed(fd.as_fd())),
            InodeFile::Handle { handle, mount_fd } => Ok(InodeFd::Owned(open_by_handle(
                mount_fd.as_fd(),
                handle,
                OFlags::PATH | OFlags::NOFOLLOW,
            )?)),
        }
    }

    /// Opens the inode for I/O with `flags`: straight from the file handle (needs
    /// `CAP_DAC_READ_SEARCH`), or by reopening the `O_PATH` fd through `proc_self_fd`. The
    /// caller must have checked that the inode is a regular file or directory.
    pub fn open(&self, proc_self_fd: BorrowedFd<'_>, flags: OFlags) -> io::Result<OwnedFd> {
        match &self.file {
            InodeFile::Fd(fd) => crate::sys::reopen(proc_self_fd, fd.as_fd(), flags),
            InodeFile::Handle { handle, mount_fd } => open_by_handle(
                mount_fd.as_fd(),
                handle,
                flags & !(OFlags::CREATE | OFlags::NOFOLLOW),
            ),
        }
    }

    /// The file handle, when the inode is kept as one.
    pub fn file_handle(&self) -> Option<&RawFileHandle> {
        match &self.file {
            InodeFile::Handle { handle, .. } => Some(handle),
            InodeFile::Fd(_) => None,
        }
    }

    /// The lock file descriptions of this inode, by guest lock owner.
    pub fn lock_fds(&self) -> MutexGuard<'_, HashMap<u64, LockOwner>> {
        self.lock_fds.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True for directories.
    pub fn is_dir(&self) -> bool {
        self.file_type == libc::S_IFDIR
    }

    /// True for regular files.
    pub fn is_reg(&self) -> bool {
        self.file_type == libc::S_IFREG
    }

    /// True for symlinks.
    pub fn is_symlink(&self) -> bool {
        self.file_type == libc::S_IFLNK
    }

    /// Current lookup count (tests and diagnostics).
    #[cfg(test)]
    pub fn refcount(&self) -> u64 {
        self.refcount.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
struct Maps {
    by_id: HashMap<Inode, Arc<InodeData>>,
    by_key: HashMap<InodeKey, Inode>,
}

/// The inode table.
pub(crate) struct InodeTable {
    maps: RwLock<Maps>,
    next_id: AtomicU64,
    max: Option<usize>,
}

/// Whether an insertion found an existing inode or made a new one.
pub(crate) struct Inserted {
    /// The inode, its lookup count already incremented.
    pub data: Arc<InodeData>,
}

impl InodeTable {
    /// An empty table allowing at most `max` inodes (the root included).
    pub fn new(max: Option<usize>) -> Self {
        Self {
            maps: RwLock::new(Maps::default()),
            next_id: AtomicU64::new(ROOT_INODE + 1),
            max,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Maps> {
        self.maps.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Maps> {
        self.maps.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Installs the root inode (id [`ROOT_INODE`]), which is never forgotten.
    pub fn insert_root(&self, key: InodeKey, file: InodeFile) {
        let data = Arc::new(InodeData {
            id: ROOT_INODE,
            key,
            file_type: libc::S_IFDIR,
            file,
            refcount: AtomicU64::new(2),
            lock_fds: Mutex::new(HashMap::new()),
        });
        let mut maps = self.write();
        maps.by_key.insert(key, ROOT_INODE);
        maps.by_id.insert(ROOT_INODE, data);
    }

    /// The inode with guest id `id`; `EBADF` for ids the guest was never given or forgot.
    pub fn get(&self, id: Inode) -> io::Result<Arc<InodeData>> {
        self.read()
            .by_id
            .get(&id)
            .cloned()
            .ok_or_else(|| errno(libc::EBADF))
    }

    /// Takes one more lookup reference on the inode `id`.
    pub fn add_ref(&self, id: Inode) -> io::Result<Arc<InodeData>> {
        let maps = self.read();
        let data = maps.by_id.get(&id).ok_or_else(|| errno(libc::EBADF))?;
        data.refcount.fetch_add(1, Ordering::Relaxed);
        Ok(data.clone())
    }

    /// Finds the inode `key` and takes a lookup reference on it, or (when it is not in the
    /// table, or `same` says the entry there is a different, deleted file whose inode number
    /// was reused) makes a new one from `make()` with one reference. Fails with `ENFILE` when
    /// the table is full.
    pub fn get_or_insert(
        &self,
        key: InodeKey,
        file_type: u32,
        same: impl Fn(&InodeData) -> bool,
        make: impl FnOnce() -> io::Result<InodeFile>,
    ) -> io::Result<Inserted> {
        {
            let maps = self.read();
            if let Some(data) = maps.by_key.get(&key).and_then(|id| maps.by_id.get(id)) {
                if same(data) {
                    data.refcount.fetch_add(1, Ordering::Relaxed);
                    return Ok(Inserted { data: data.clone() });
                }
            }
        }
        let file = make()?;
        let mut maps = self.write();
        if let Some(data) = maps.by_key.get(&key).and_then(|id| maps.by_id.get(id)) {
            if same(data) {
                data.refcount.fetch_add(1, Ordering::Relaxed);
                return Ok(Inserted { data: data.clone() });
            }
        }
        if let Some(max) = self.max {
            if maps.by_id.len() >= max {
                drop(maps);
                crate::limit_warning("inode", max);
                return Err(errno(libc::ENFILE));
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let data = Arc::new(InodeData {
            id,
            key,
            file_type,
            file,
            refcount: AtomicU64::new(1),
            lock_fds: Mutex::new(HashMap::new()),
        });
        maps.by_key.insert(key, id);
        maps.by_id.insert(id, data.clone());
        Ok(Inserted { data })
    }

    /// The id of the inode `key`, if the guest knows it.
    pub fn find(&self, key: &InodeKey) -> Option<Inode> {
        self.read().by_key.get(key).copied()
    }

    /// Drops `count` lookup references of `id`; the inode leaves the table at zero (the root
    /// never does). Unknown ids are ignored.
    pub fn forget(&self, id: Inode, count: u64) {
        let mut maps = self.write();
        let Some(data) = maps.by_id.get(&id) else {
            return;
        };
        let old = data.refcount.load(Ordering::Relaxed);
        let new = old.saturating_sub(count);
        data.refcount.store(new, Ordering::Relaxed);
        if new == 0 && id != ROOT_INODE {
            let key = data.key;
            maps.by_id.remove(&id);
            if maps.by_key.get(&key) == Some(&id) {
                maps.by_key.remove(&key);
            }
        }
    }

    /// Drops every inode but the root (DESTROY).
    pub fn clear(&self) {
        let mut maps = self.write();
        let root = maps.by_id.get(&ROOT_INODE).cloned();
        maps.by_id.clear();
        maps.by_key.clear();
        if let Some(root) = root {
            root.refcount.store(2, Ordering::Relaxed);
            root.lock_fds().clear();
            maps.by_key.insert(root.key, ROOT_INODE);
            maps.by_id.insert(ROOT_INODE, root);
        }
    }

    /// Number of inodes in the table (the root included).
    pub fn len(&self) -> usize {
        self.read().by_id.len()
    }
}
