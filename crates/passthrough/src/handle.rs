//! The table of open files and directories (guest handles).

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use vhostfs_server::{Handle, Inode};

use crate::sys::errno;

/// One open file or directory.
pub(crate) struct HandleData {
    /// The inode the handle was opened on.
    pub inode: Inode,
    /// The host file description (never `O_PATH`).
    pub file: OwnedFd,
    /// Directories: serializes reads of the directory stream and remembers the cookie the
    /// stream's position corresponds to (`None` = unknown, seek before reading).
    dir_pos: Mutex<Option<u64>>,
}

impl HandleData {
    /// A handle on `inode` owning `file`.
    pub fn new(inode: Inode, file: OwnedFd) -> Self {
        Self {
            inode,
            file,
            dir_pos: Mutex::new(None),
        }
    }

    /// Locks the directory stream position.
    pub fn lock_dir(&self) -> MutexGuard<'_, Option<u64>> {
        self.dir_pos.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// All open handles.
pub(crate) struct HandleTable {
    map: RwLock<HashMap<Handle, Arc<HandleData>>>,
    next: AtomicU64,
    max: Option<usize>,
}

impl HandleTable {
    /// An empty table allowing at most `max` handles.
    pub fn new(max: Option<usize>) -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
            next: AtomicU64::new(1),
            max,
        }
    }

    /// Fails with `EMFILE` if no further handle may be opened (checked before opening, to
    /// save the host the work).
    pub fn check_room(&self) -> io::Result<()> {
        if let Some(max) = self.max {
            if self.map.read().unwrap_or_else(|e| e.into_inner()).len() >= max {
                crate::limit_warning("open file", max);
                return Err(errno(libc::EMFILE));
            }
        }
        Ok(())
    }

    /// Adds a handle; `EMFILE` when the table is full.
    pub fn insert(&self, data: HandleData) -> io::Result<Handle> {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if let Some(max) = self.max {
            if map.len() >= max {
                drop(map);
                crate::limit_warning("open file", max);
                return Err(errno(libc::EMFILE));
            }
        }
        let h = self.next.fetch_add(1, Ordering::Relaxed);
        map.insert(h, Arc::new(data));
        Ok(h)
    }

    /// The handle `h`, which must belong to `inode`; `EBADF` otherwise.
    pub fn get(&self, h: Handle, inode: Inode) -> io::Result<Arc<HandleData>> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        match map.get(&h) {
            Some(d) if d.inode == inode => Ok(d.clone()),
            _ => Err(errno(libc::EBADF)),
        }
    }

    /// Removes the handle `h` of `inode`; its file closes once no request uses it any more.
    pub fn remove(&self, h: Handle, inode: Inode) -> io::Result<()> {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        match map.get(&h) {
            Some(d) if d.inode == inode => {
                map.remove(&h);
                Ok(())
            }
            _ => Err(errno(libc::EBADF)),
        }
    }

    /// Drops every handle (DESTROY).
    pub fn clear(&self) {
        self.map.write().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Number of open handles.
    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}
