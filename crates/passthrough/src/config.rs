//! Settings of a [`PassthroughFs`](crate::PassthroughFs).

use std::path::PathBuf;
use std::time::Duration;

use crate::idmap::IdMap;
use crate::xattrmap::XattrMap;

/// How much the guest may cache, like virtiofsd's `--cache`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CachePolicy {
    /// No caching: entry and attribute timeouts are 0 and every file is opened with
    /// `FOPEN_DIRECT_IO`, so all data goes through the daemon.
    Never,
    /// Metadata (entries and attributes) is cached for a long time; file data is not cached
    /// (files are opened with `FOPEN_DIRECT_IO`), directory contents are kept.
    Metadata,
    /// Entries and attributes are cached for one second; file data is kept as long as the
    /// guest's attributes say the file did not change.
    #[default]
    Auto,
    /// Everything is cached for a long time; file data and directory contents are kept across
    /// opens (`FOPEN_KEEP_CACHE`, `FOPEN_CACHE_DIR`). Only safe when nobody else changes the
    /// shared directory.
    Always,
}

impl CachePolicy {
    /// The entry/attribute timeout this policy gives the guest.
    pub fn timeout(self) -> Duration {
        match self {
            CachePolicy::Never => Duration::ZERO,
            CachePolicy::Auto => Duration::from_secs(1),
            CachePolicy::Metadata | CachePolicy::Always => Duration::from_secs(86400),
        }
    }
}

/// Whether inodes are kept as O_PATH file descriptors or as file handles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InodeFileHandles {
    /// Every inode holds an `O_PATH` file descriptor (one host fd per guest inode).
    #[default]
    Never,
    /// Inodes are kept as file handles (`name_to_handle_at`) where the host file system
    /// supports them, falling back to `O_PATH` fds elsewhere. Saves host fds; needs
    /// `CAP_DAC_READ_SEARCH` to reopen the handles.
    Prefer,
    /// Like `Prefer`, but a lookup fails (with the host's error) where no handle can be made.
    Mandatory,
}

/// Configuration of a [`PassthroughFs`](crate::PassthroughFs).
#[derive(Clone, Debug)]
pub struct Config {
    /// The host directory shared with the guest. Nothing outside it is ever reachable.
    pub root_dir: PathBuf,
    /// Caching policy announced to the guest.
    pub cache: CachePolicy,
    /// Ask the guest for writeback caching (`FUSE_WRITEBACK_CACHE`).
    pub writeback: bool,
    /// Honour `O_DIRECT` from the guest; when false the flag is dropped on open.
    pub allow_direct_io: bool,
    /// Offer READDIRPLUS (directory listings that carry each entry's attributes). It is never
    /// offered with [`CachePolicy::Never`], where the attributes could not be cached anyway.
    pub readdirplus: bool,
    /// Let the guest `mmap` files opened with direct I/O ([`CachePolicy::Never`] and
    /// [`CachePolicy::Metadata`]) by negotiating `FUSE_DIRECT_IO_ALLOW_MMAP`.
    pub allow_mmap: bool,
    /// Support extended attributes; when false every xattr request fails with `ENOSYS`
    /// (which makes the guest stop asking).
    pub xattr: bool,
    /// Refuse every modifying request with `EROFS`.
    pub readonly: bool,
    /// Offer POSIX ACLs to the guest (`FUSE_POSIX_ACL`, needs `xattr`).
    pub posix_acl: bool,
    /// Tell the guest about host mount points inside the share (`FUSE_SUBMOUNTS`), so that
    /// each appears as its own mount with its own `st_dev`.
    pub announce_submounts: bool,
    /// How inodes are kept.
    pub inode_file_handles: InodeFileHandles,
    /// Most open files and directories (guest handles) at once; `EMFILE` beyond.
    pub max_open_fds: Option<usize>,
    /// Most guest-visible inodes at once; `ENFILE` beyond.
    pub max_inodes: Option<usize>,
    /// Negotiate `FUSE_HANDLE_KILLPRIV_V2`: the daemon clears setuid/setgid bits on write,
    /// truncate and chown as the guest asks.
    pub killpriv_v2: bool,
    /// Honour security labels sent with creating requests (`FUSE_SECURITY_CTX`).
    pub security_label: bool,
    /// Translation of extended attribute names.
    pub xattr_map: Option<XattrMap>,
    /// Translation of user and group ids.
    pub id_map: Option<IdMap>,
}

impl Default for Config {
    /// The defaults of virtiofsd 1.14: `cache=auto`, no writeback, `O_DIRECT` ignored,
    /// readdirplus, no mmap of direct-I/O files, no xattrs, no ACLs, no submount announcements, no killpriv v2, no security labels, `O_PATH`
    /// fds for inodes, no limits beyond the host's. `root_dir` must be set.
    fn default() -> Self {
        Self {
            root_dir: PathBuf::from("/"),
            cache: CachePolicy::default(),
            writeback: false,
            allow_direct_io: false,
            readdirplus: true,
            allow_mmap: false,
            xattr: false,
            readonly: false,
            posix_acl: false,
            announce_submounts: false,
            inode_file_handles: InodeFileHandles::default(),
            max_open_fds: None,
            max_inodes: None,
            killpriv_v2: false,
            security_label: false,
            xattr_map: None,
            id_map: None,
        }
    }
}
