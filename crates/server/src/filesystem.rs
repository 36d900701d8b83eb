//! The `FileSystem` trait: the typed calls the request server makes once it has decoded and
//! checked a request. Implementations (the passthrough file system, test fakes) never see
//! wire bytes; every argument here has already been bounds-checked by the server.
//!
//! Every method has a default that answers `ENOSYS`, so a file system implements only what it
//! supports. Errors are plain `io::Error`s; the server turns them into negative errnos.

use std::ffi::CStr;
use std::io;
use std::time::Duration;

use crate::io::{ZeroCopyReader, ZeroCopyWriter};

/// Node id of a guest-visible inode. [`ROOT_INODE`] is the shared directory.
pub type Inode = u64;
/// File or directory handle returned by OPEN/OPENDIR/CREATE.
pub type Handle = u64;
/// The root inode's id.
pub const ROOT_INODE: Inode = 1;

/// Who asked: the credentials and process of the guest caller, from the request header and
/// its extensions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    /// Caller's (guest) user id.
    pub uid: u32,
    /// Caller's (guest) group id.
    pub gid: u32,
    /// Caller's (guest) process id; 0 for requests the kernel makes on its own.
    pub pid: u32,
    /// With `CREATE_SUPP_GROUP`: a supplementary group of the caller that owns the parent
    /// directory (the kernel sends it on creating requests so that group ownership follows
    /// local semantics).
    pub supplementary_gid: Option<u32>,
    /// With `SECURITY_CTX`: the security label (e.g. `security.selinux`) to set on a newly
    /// created inode.
    pub security_ctx: Option<SecurityContext>,
}

/// A security label sent with creating requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityContext {
    /// The xattr name, e.g. `security.selinux`.
    pub name: std::ffi::CString,
    /// The xattr value.
    pub value: Vec<u8>,
}

/// A name from a request, checked to be a single path component: not empty, at most 255
/// bytes, no `/`, no NUL. It may still be `.` or `..`; file systems must refuse or confine
/// those where it matters (a `..` lookup at the root stays at the root).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Name<'a>(&'a CStr);

/// Longest name accepted, like `NAME_MAX`.
pub const NAME_MAX: usize = 255;

impl<'a> Name<'a> {
    /// Checks `name` and wraps it. Fails with `EINVAL` for an empty name or one containing
    /// `/`, and `ENAMETOOLONG` for one longer than [`NAME_MAX`].
    pub fn new(name: &'a CStr) -> io::Result<Self> {
        let bytes = name.to_bytes();
        if bytes.is_empty() || bytes.contains(&b'/') {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        if bytes.len() > NAME_MAX {
            return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        }
        Ok(Self(name))
    }

    /// The name as a C string (for `*at` syscalls).
    pub fn as_c_str(&self) -> &'a CStr {
        self.0
    }

    /// The name's bytes, without the NUL.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0.to_bytes()
    }

    /// True for `.` and `..`.
    pub fn is_dot_or_dotdot(&self) -> bool {
        matches!(self.as_bytes(), b"." | b"..")
    }
}

/// Reply to a request that creates or finds a directory entry.
#[derive(Clone, Copy)]
pub struct Entry {
    /// Node id the guest will use for this inode; 0 means "negative entry" (the name does not
    /// exist, and the guest may cache that for `entry_timeout`).
    pub inode: Inode,
    /// Generation number; (inode, generation) must be unique over the file system's life.
    pub generation: u64,
    /// The inode's attributes.
    pub attr: libc::stat64,
    /// Extra attribute flags (`FUSE_ATTR_*`), e.g. submount.
    pub attr_flags: u32,
    /// How long the guest may cache the attributes.
    pub attr_timeout: Duration,
    /// How long the guest may cache the name → inode mapping.
    pub entry_timeout: Duration,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("inode", &self.inode)
            .field("generation", &self.generation)
            .field("st_ino", &self.attr.st_ino)
            .field("st_mode", &self.attr.st_mode)
            .finish_non_exhaustive()
    }
}

/// Reply to GETATTR and SETATTR.
#[derive(Clone, Copy)]
pub struct AttrReply {
    /// The inode's attributes.
    pub attr: libc::stat64,
    /// How long the guest may cache them.
    pub timeout: Duration,
}

/// Reply to OPEN, OPENDIR (and the second half of CREATE/TMPFILE).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Opened {
    /// The handle the guest passes back on later requests.
    pub handle: Handle,
    /// `FOPEN_*` flags (direct I/O, keep cache, ...).
    pub open_flags: u32,
}

/// A time to set with SETATTR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetTime {
    /// The current time.
    Now,
    /// A given time since the epoch.
    At {
        /// Seconds since the epoch.
        secs: i64,
        /// Nanoseconds, below 1e9.
        nsecs: u32,
    },
}

/// The changes a SETATTR asks for; `None` fields are left alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// New permission bits (and file type bits, which must match).
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size (truncate or extend).
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<SetTime>,
    /// New modification time.
    pub mtime: Option<SetTime>,
    /// Apply through this open handle (ftruncate, fchmod, ...) instead of the inode.
    pub handle: Option<Handle>,
    /// Lock owner of the caller, when given.
    pub lock_owner: Option<u64>,
    /// Killpriv v2: clear setuid/setgid as a local file system would on this change.
    pub kill_suidgid: bool,
}

/// Reply to GETXATTR and LISTXATTR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XattrReply {
    /// The request had size 0: how many bytes the value (or name list) needs.
    Size(u32),
    /// The value (or the NUL-separated name list); at most the size asked for.
    Data(Vec<u8>),
}

/// One directory entry produced by READDIR/READDIRPLUS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirEntry<'a> {
    /// Inode number (host `d_ino`; informational for READDIR).
    pub ino: u64,
    /// Cookie of the *next* entry: passing it back as READDIR's offset resumes after this one.
    pub offset: u64,
    /// `DT_*` file type.
    pub typ: u32,
    /// Entry name bytes (no NUL).
    pub name: &'a [u8],
}

/// A POSIX record lock or flock request/answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lock {
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive); `u64::MAX` (or `OFFSET_MAX`) means to end of file.
    pub end: u64,
    /// `F_RDLCK`, `F_WRLCK` or `F_UNLCK`.
    pub typ: u32,
    /// Process holding a conflicting lock (GETLK answer), or the requester.
    pub pid: u32,
}

/// What READ/WRITE carry besides handle, size and offset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoFlags {
    /// Lock owner when the guest passed one.
    pub lock_owner: Option<u64>,
    /// The guest's open flags for the file (`O_APPEND`, `O_DIRECT`, ...).
    pub open_flags: u32,
    /// WRITE only: a delayed write from the guest's page cache (writeback caching).
    pub delayed_write: bool,
    /// WRITE only: clear setuid/setgid bits, as a local write by a non-owner would.
    pub kill_suidgid: bool,
}

/// The file system behind the server. All methods may be called concurrently from several
/// threads; all take `&self`.
#[allow(unused_variables)]
pub trait FileSystem: Send + Sync {
    /// INIT: `capable` is the set of `init_flags` the guest kernel offers; returns the subset
    /// the file system wants enabled (the server masks it with `capable` again).
    fn init(&self, capable: u64) -> io::Result<u64> {
        Ok(0)
    }

    /// DESTROY (or the transport going away): drop every inode and handle.
    fn destroy(&self) {}

    /// LOOKUP `name` in directory `parent`; increments the inode's lookup count by one.
    fn lookup(&self, ctx: &Context, parent: Inode, name: Name<'_>) -> io::Result<Entry> {
        Err(enosys())
    }

    /// FORGET: decrement `inode`'s lookup count by `count`; drop it when it reaches zero.
    fn forget(&self, inode: Inode, count: u64) {}

    /// BATCH_FORGET: several forgets at once.
    fn batch_forget(&self, requests: &[(Inode, u64)]) {
        for &(inode, count) in requests {
            self.forget(inode, count);
        }
    }

    /// GETATTR, through `handle` when the guest gave one.
    fn getattr(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Option<Handle>,
    ) -> io::Result<AttrReply> {
        Err(enosys())
    }

    /// SETATTR: apply `attr` and return the new attributes.
    fn setattr(&self, ctx: &Context, inode: Inode, attr: SetAttr) -> io::Result<AttrReply> {
        Err(enosys())
    }

    /// READLINK: the symlink's target bytes.
    fn readlink(&self, ctx: &Context, inode: Inode) -> io::Result<Vec<u8>> {
        Err(enosys())
    }

    /// SYMLINK: create `name` in `parent` pointing to `target`.
    fn symlink(
        &self,
        ctx: &Context,
        target: &CStr,
        parent: Inode,
        name: Name<'_>,
    ) -> io::Result<Entry> {
        Err(enosys())
    }

    /// MKNOD: create a regular file, fifo, socket or device node.
    fn mknod(
        &self,
        ctx: &Context,
        parent: Inode,
        name: Name<'_>,
        mode: u32,
        rdev: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        Err(enosys())
    }

    /// MKDIR.
    fn mkdir(
        &self,
        ctx: &Context,
        parent: Inode,
        name: Name<'_>,
        mode: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        Err(enosys())
    }

    /// UNLINK a non-directory.
    fn unlink(&self, ctx: &Context, parent: Inode, name: Name<'_>) -> io::Result<()> {
        Err(enosys())
    }

    /// RMDIR an empty directory.
    fn rmdir(&self, ctx: &Context, parent: Inode, name: Name<'_>) -> io::Result<()> {
        Err(enosys())
    }

    /// RENAME/RENAME2; `flags` are `RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT`.
    fn rename(
        &self,
        ctx: &Context,
        old_parent: Inode,
        old_name: Name<'_>,
        new_parent: Inode,
        new_name: Name<'_>,
        flags: u32,
    ) -> io::Result<()> {
        Err(enosys())
    }

    /// LINK: a new name for `inode` in `new_parent`.
    fn link(
        &self,
        ctx: &Context,
        inode: Inode,
        new_parent: Inode,
        new_name: Name<'_>,
    ) -> io::Result<Entry> {
        Err(enosys())
    }

    /// OPEN with the guest's `O_*` `flags`; `fuse_flags` carries `OPEN_KILL_SUIDGID`.
    fn open(&self, ctx: &Context, inode: Inode, flags: u32, fuse_flags: u32) -> io::Result<Opened> {
        Err(enosys())
    }

    /// CREATE and open `name` in `parent`.
    #[allow(clippy::too_many_arguments)]
    fn create(
        &self,
        ctx: &Context,
        parent: Inode,
        name: Name<'_>,
        mode: u32,
        flags: u32,
        umask: u32,
        fuse_flags: u32,
    ) -> io::Result<(Entry, Opened)> {
        Err(enosys())
    }

    /// TMPFILE: create and open an unnamed file in directory `parent` (`O_TMPFILE`).
    fn tmpfile(
        &self,
        ctx: &Context,
        parent: Inode,
        mode: u32,
        flags: u32,
        umask: u32,
    ) -> io::Result<(Entry, Opened)> {
        Err(enosys())
    }

    /// READ up to `size` bytes at `offset` into `w`; returns bytes read (short at EOF).
    #[allow(clippy::too_many_arguments)]
    fn read(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        w: &mut dyn ZeroCopyWriter,
        size: u32,
        offset: u64,
        flags: IoFlags,
    ) -> io::Result<usize> {
        Err(enosys())
    }

    /// WRITE `size` bytes from `r` at `offset`; returns bytes written.
    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        r: &mut dyn ZeroCopyReader,
        size: u32,
        offset: u64,
        flags: IoFlags,
    ) -> io::Result<usize> {
        Err(enosys())
    }

    /// STATFS of the file system holding `inode`.
    fn statfs(&self, ctx: &Context, inode: Inode) -> io::Result<libc::statvfs64> {
        Err(enosys())
    }

    /// RELEASE an open file handle (after the guest's last close).
    #[allow(clippy::too_many_arguments)]
    fn release(
        &self,
        ctx: &Context,
        inode: Inode,
        flags: u32,
        handle: Handle,
        flush: bool,
        flock_release: bool,
        lock_owner: Option<u64>,
    ) -> io::Result<()> {
        Err(enosys())
    }

    /// FSYNC an open file.
    fn fsync(&self, ctx: &Context, inode: Inode, datasync: bool, handle: Handle) -> io::Result<()> {
        Err(enosys())
    }

    /// SETXATTR; `flags` are `XATTR_CREATE`/`XATTR_REPLACE`, `extra_flags` the
    /// `SETXATTR_ACL_KILL_SGID` bit.
    fn setxattr(
        &self,
        ctx: &Context,
        inode: Inode,
        name: &CStr,
        value: &[u8],
        flags: u32,
        extra_flags: u32,
    ) -> io::Result<()> {
        Err(enosys())
    }

    /// GETXATTR: with `size == 0` answer [`XattrReply::Size`]; otherwise the value, or
    /// `ERANGE` if it is longer than `size`.
    fn getxattr(
        &self,
        ctx: &Context,
        inode: Inode,
        name: &CStr,
        size: u32,
    ) -> io::Result<XattrReply> {
        Err(enosys())
    }

    /// LISTXATTR: like [`getxattr`](FileSystem::getxattr) for the NUL-separated name list.
    fn listxattr(&self, ctx: &Context, inode: Inode, size: u32) -> io::Result<XattrReply> {
        Err(enosys())
    }

    /// REMOVEXATTR.
    fn removexattr(&self, ctx: &Context, inode: Inode, name: &CStr) -> io::Result<()> {
        Err(enosys())
    }

    /// FLUSH (each guest `close` of a file description).
    fn flush(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        lock_owner: u64,
    ) -> io::Result<()> {
        Err(enosys())
    }

    /// OPENDIR.
    fn opendir(&self, ctx: &Context, inode: Inode, flags: u32) -> io::Result<Opened> {
        Err(enosys())
    }

    /// READDIR from cookie `offset`: call `add` for each entry in order until it returns
    /// `Ok(false)` (the reply is full; that entry was not added) or the directory ends.
    fn readdir(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        size: u32,
        offset: u64,
        add: &mut dyn FnMut(DirEntry<'_>) -> io::Result<bool>,
    ) -> io::Result<()> {
        Err(enosys())
    }

    /// READDIRPLUS: like [`readdir`](FileSystem::readdir) but each entry carries a lookup
    /// ([`Entry`], which counts as a LOOKUP). When `add` returns `Ok(false)` the entry was not
    /// sent, and the file system must undo that entry's lookup count itself. `.` and `..` are
    /// sent with an `Entry` whose `inode` is 0 and which count as no lookup.
    #[allow(clippy::type_complexity)]
    fn readdirplus(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        size: u32,
        offset: u64,
        add: &mut dyn FnMut(DirEntry<'_>, Entry) -> io::Result<bool>,
    ) -> io::Result<()> {
        Err(enosys())
    }

    /// RELEASEDIR.
    fn releasedir(
        &self,
        ctx: &Context,
        inode: Inode,
        flags: u32,
        handle: Handle,
    ) -> io::Result<()> {
        Err(enosys())
    }

    /// FSYNCDIR.
    fn fsyncdir(
        &self,
        ctx: &Context,
        inode: Inode,
        datasync: bool,
        handle: Handle,
    ) -> io::Result<()> {
        Err(enosys())
    }

    /// GETLK: the first lock that would conflict with `lock`, or `lock` with type `F_UNLCK`.
    fn getlk(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        owner: u64,
        lock: Lock,
        flock: bool,
    ) -> io::Result<Lock> {
        Err(enosys())
    }

    /// SETLK/SETLKW (`wait`), POSIX record lock or (with `flock`) a BSD flock. A waiting call
    /// may block for long; the server runs it where that blocks nothing else and interrupts it
    /// (the call then returns `EINTR`) when the guest sends INTERRUPT.
    #[allow(clippy::too_many_arguments)]
    fn setlk(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        owner: u64,
        lock: Lock,
        flock: bool,
        wait: bool,
    ) -> io::Result<()> {
        Err(enosys())
    }

    /// ACCESS: check `mask` (`R_OK|W_OK|X_OK|F_OK`) for the caller.
    fn access(&self, ctx: &Context, inode: Inode, mask: u32) -> io::Result<()> {
        Err(enosys())
    }

    /// FALLOCATE with `FALLOC_FL_*` `mode`.
    fn fallocate(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        mode: u32,
        offset: u64,
        length: u64,
    ) -> io::Result<()> {
        Err(enosys())
    }

    /// LSEEK (`SEEK_DATA`, `SEEK_HOLE`, and the plain whences); returns the new offset.
    fn lseek(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        offset: u64,
        whence: u32,
    ) -> io::Result<u64> {
        Err(enosys())
    }

    /// COPY_FILE_RANGE between two open files; returns bytes copied.
    #[allow(clippy::too_many_arguments)]
    fn copy_file_range(
        &self,
        ctx: &Context,
        inode_in: Inode,
        handle_in: Handle,
        offset_in: u64,
        inode_out: Inode,
        handle_out: Handle,
        offset_out: u64,
        len: u64,
        flags: u64,
    ) -> io::Result<usize> {
        Err(enosys())
    }

    /// SYNCFS: sync the file system(s) behind the share.
    fn syncfs(&self, ctx: &Context, inode: Inode) -> io::Result<()> {
        Err(enosys())
    }
}

/// The `ENOSYS` error the trait's defaults return.
pub fn enosys() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSYS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_single_components() {
        assert!(Name::new(c"file").is_ok());
        assert!(Name::new(c"..").unwrap().is_dot_or_dotdot());
        assert_eq!(
            Name::new(c"").unwrap_err().raw_os_error(),
            Some(libc::EINVAL)
        );
        assert_eq!(
            Name::new(c"a/b").unwrap_err().raw_os_error(),
            Some(libc::EINVAL)
        );
        assert_eq!(
            Name::new(c"/").unwrap_err().raw_os_error(),
            Some(libc::EINVAL)
        );
        let long = std::ffi::CString::new(vec![b'x'; 256]).unwrap();
        assert_eq!(
            Name::new(&long).unwrap_err().raw_os_error(),
            Some(libc::ENAMETOOLONG)
        );
    }
}
