//! The FUSE kernel wire format, as spoken by Linux's FUSE client (and its virtio-fs driver).
//!
//! This crate is pure data: `#[repr(C)]` structs that mirror `include/uapi/linux/fuse.h`
//! (protocol 7.41, Linux 6.12), the opcodes, and the flag constants. It performs no I/O and
//! knows nothing about files, virtqueues or `/dev/fuse`. Every struct derives the `zerocopy`
//! traits so that it can be read from untrusted bytes without `unsafe` and written back as
//! bytes; the tests below pin each struct's size to the kernel's.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Major version of the protocol we speak.
pub const KERNEL_VERSION: u32 = 7;
/// Highest minor version we implement (Linux 6.12 speaks 7.41).
pub const KERNEL_MINOR_VERSION: u32 = 41;
/// Oldest minor version we accept from a client (virtio-fs appeared with 7.31).
pub const MIN_KERNEL_MINOR_VERSION: u32 = 27;
/// The node id of the root directory of a FUSE file system.
pub const ROOT_ID: u64 = 1;
/// The smallest read buffer a `/dev/fuse` server must offer.
pub const MIN_READ_BUFFER: usize = 8192;
/// Byte size of the legacy (pre-7.36) `fuse_init_in` that carries no `flags2`.
pub const INIT_IN_LEGACY_SIZE: usize = 16;
/// Byte size of the pre-7.33 `fuse_setxattr_in` (without `setxattr_flags`).
pub const SETXATTR_IN_LEGACY_SIZE: usize = 8;

/// Derives the traits every wire struct needs; each field is documented as the kernel
/// struct's field of the same name (followed by its own doc comment, if it has one).
macro_rules! wire_struct {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
        pub struct $name {
            $(
                #[doc = concat!("The `", stringify!($field), "` field of the kernel struct.")]
                $(#[$fmeta])*
                pub $field: $ty
            ),*
        }
    };
}

/// Declares the opcode constants (`NAME => value`) and, from the same table, `name()`, which
/// maps an opcode back to its name.
macro_rules! opcodes {
    ($($name:ident => $value:literal,)*) => {
        $(
            #[doc = concat!("The `", stringify!($name), "` request (opcode ", stringify!($value), ").")]
            pub const $name: u32 = $value;
        )*

        /// A short human-readable name for an opcode, for logs and statistics.
        pub fn name(op: u32) -> &'static str {
            match op {
                $($name => stringify!($name),)*
                _ => "UNKNOWN",
            }
        }
    };
}

/// Declares single-bit constants of type `$ty` (`NAME => bit`), each documented with the
/// kernel's name for it (`$prefix` followed by `NAME`).
macro_rules! bit_flags {
    ($ty:ty, $prefix:literal; $($name:ident => $bit:literal,)*) => {
        $(
            #[doc = concat!("`", $prefix, stringify!($name), "` (bit ", stringify!($bit), ").")]
            pub const $name: $ty = 1 << $bit;
        )*
    };
}

/// FUSE request opcodes (`enum fuse_opcode`).
pub mod opcode {
    opcodes! {
        LOOKUP => 1,
        FORGET => 2,
        GETATTR => 3,
        SETATTR => 4,
        READLINK => 5,
        SYMLINK => 6,
        MKNOD => 8,
        MKDIR => 9,
        UNLINK => 10,
        RMDIR => 11,
        RENAME => 12,
        LINK => 13,
        OPEN => 14,
        READ => 15,
        WRITE => 16,
        STATFS => 17,
        RELEASE => 18,
        FSYNC => 20,
        SETXATTR => 21,
        GETXATTR => 22,
        LISTXATTR => 23,
        REMOVEXATTR => 24,
        FLUSH => 25,
        INIT => 26,
        OPENDIR => 27,
        READDIR => 28,
        RELEASEDIR => 29,
        FSYNCDIR => 30,
        GETLK => 31,
        SETLK => 32,
        SETLKW => 33,
        ACCESS => 34,
        CREATE => 35,
        INTERRUPT => 36,
        BMAP => 37,
        DESTROY => 38,
        IOCTL => 39,
        POLL => 40,
        NOTIFY_REPLY => 41,
        BATCH_FORGET => 42,
        FALLOCATE => 43,
        READDIRPLUS => 44,
        RENAME2 => 45,
        LSEEK => 46,
        COPY_FILE_RANGE => 47,
        SETUPMAPPING => 48,
        REMOVEMAPPING => 49,
        SYNCFS => 50,
        TMPFILE => 51,
        STATX => 52,
        CUSE_INIT => 4096,
    }
}

/// Notification codes a server may send unsolicited (`enum fuse_notify_code`).
pub mod notify {
    /// Wake up a poll waiter (`FUSE_NOTIFY_POLL`).
    pub const POLL: i32 = 1;
    /// Invalidate an inode's attributes and cached data (`FUSE_NOTIFY_INVAL_INODE`).
    pub const INVAL_INODE: i32 = 2;
    /// Invalidate a directory entry (`FUSE_NOTIFY_INVAL_ENTRY`).
    pub const INVAL_ENTRY: i32 = 3;
    /// Store data in the client's page cache (`FUSE_NOTIFY_STORE`).
    pub const STORE: i32 = 4;
    /// Ask the client for cached data (`FUSE_NOTIFY_RETRIEVE`).
    pub const RETRIEVE: i32 = 5;
    /// A directory entry was deleted (`FUSE_NOTIFY_DELETE`).
    pub const DELETE: i32 = 6;
    /// Ask the client to resend its pending requests (`FUSE_NOTIFY_RESEND`).
    pub const RESEND: i32 = 7;
}

/// `fuse_init_in.flags | (flags2 << 32)` capability bits negotiated by INIT.
pub mod init_flags {
    bit_flags! {
        u64, "FUSE_";
        ASYNC_READ => 0,
        POSIX_LOCKS => 1,
        FILE_OPS => 2,
        ATOMIC_O_TRUNC => 3,
        EXPORT_SUPPORT => 4,
        BIG_WRITES => 5,
        DONT_MASK => 6,
        SPLICE_WRITE => 7,
        SPLICE_MOVE => 8,
        SPLICE_READ => 9,
        FLOCK_LOCKS => 10,
        HAS_IOCTL_DIR => 11,
        AUTO_INVAL_DATA => 12,
        DO_READDIRPLUS => 13,
        READDIRPLUS_AUTO => 14,
        ASYNC_DIO => 15,
        WRITEBACK_CACHE => 16,
        NO_OPEN_SUPPORT => 17,
        PARALLEL_DIROPS => 18,
        HANDLE_KILLPRIV => 19,
        POSIX_ACL => 20,
        ABORT_ERROR => 21,
        MAX_PAGES => 22,
        CACHE_SYMLINKS => 23,
        NO_OPENDIR_SUPPORT => 24,
        EXPLICIT_INVAL_DATA => 25,
        MAP_ALIGNMENT => 26,
        SUBMOUNTS => 27,
        HANDLE_KILLPRIV_V2 => 28,
        SETXATTR_EXT => 29,
        INIT_EXT => 30,
        INIT_RESERVED => 31,
        SECURITY_CTX => 32,
        HAS_INODE_DAX => 33,
        CREATE_SUPP_GROUP => 34,
        HAS_EXPIRE_ONLY => 35,
        DIRECT_IO_ALLOW_MMAP => 36,
        PASSTHROUGH => 37,
        NO_EXPORT_SUPPORT => 38,
        HAS_RESEND => 39,
        ALLOW_IDMAP => 40,
    }
}

/// `fuse_open_out.open_flags` bits.
pub mod fopen {
    bit_flags! {
        u32, "FOPEN_";
        DIRECT_IO => 0,
        KEEP_CACHE => 1,
        NONSEEKABLE => 2,
        CACHE_DIR => 3,
        STREAM => 4,
        NOFLUSH => 5,
        PARALLEL_DIRECT_WRITES => 6,
        PASSTHROUGH => 7,
    }
}

/// `fuse_setattr_in.valid` bits: which fields of a SETATTR are to be applied.
pub mod fattr {
    bit_flags! {
        u32, "FATTR_";
        MODE => 0,
        UID => 1,
        GID => 2,
        SIZE => 3,
        ATIME => 4,
        MTIME => 5,
        FH => 6,
        ATIME_NOW => 7,
        MTIME_NOW => 8,
        LOCKOWNER => 9,
        CTIME => 10,
        KILL_SUIDGID => 11,
    }
}

/// Small per-request flag sets.
pub mod flags {
    /// `fuse_getattr_in.getattr_flags`: `fh` is valid.
    pub const GETATTR_FH: u32 = 1 << 0;
    /// `fuse_read_in.read_flags`: `lock_owner` is valid.
    pub const READ_LOCKOWNER: u32 = 1 << 1;
    /// `fuse_write_in.write_flags`: delayed write from the page cache.
    pub const WRITE_CACHE: u32 = 1 << 0;
    /// `fuse_write_in.write_flags`: `lock_owner` is valid.
    pub const WRITE_LOCKOWNER: u32 = 1 << 1;
    /// `fuse_write_in.write_flags`: clear setuid/setgid bits (killpriv v2).
    pub const WRITE_KILL_SUIDGID: u32 = 1 << 2;
    /// `fuse_release_in.release_flags`: flush before release.
    pub const RELEASE_FLUSH: u32 = 1 << 0;
    /// `fuse_release_in.release_flags`: drop flock locks held through this handle.
    pub const RELEASE_FLOCK_UNLOCK: u32 = 1 << 1;
    /// `fuse_lk_in.lk_flags`: this is a BSD `flock`, not a POSIX record lock.
    pub const LK_FLOCK: u32 = 1 << 0;
    /// `fuse_open_in.open_flags` / `fuse_create_in.open_flags`: clear setuid/setgid (killpriv v2).
    pub const OPEN_KILL_SUIDGID: u32 = 1 << 0;
    /// `fuse_setxattr_in.setxattr_flags`: clear setgid when setting a POSIX ACL.
    pub const SETXATTR_ACL_KILL_SGID: u32 = 1 << 0;
    /// `fuse_fsync_in.fsync_flags`: only data needs to be synced.
    pub const FSYNC_FDATASYNC: u32 = 1 << 0;
}

/// Types of request extensions that may follow a request's arguments (`enum fuse_ext_type`).
pub mod ext_type {
    /// Security contexts of a creating request (`fuse_secctx_header`; the kernel's
    /// `FUSE_MAX_NR_SECCTX`).
    pub const SECURITY_CTX: u32 = 31;
    /// Supplementary groups of a creating request (`FUSE_EXT_GROUPS`).
    pub const GROUPS: u32 = 32;
}

wire_struct! {
    /// Attributes of an inode (`struct fuse_attr`).
    pub struct Attr {
        pub ino: u64,
        pub size: u64,
        pub blocks: u64,
        pub atime: u64,
        pub mtime: u64,
        pub ctime: u64,
        pub atimensec: u32,
        pub mtimensec: u32,
        pub ctimensec: u32,
        pub mode: u32,
        pub nlink: u32,
        pub uid: u32,
        pub gid: u32,
        pub rdev: u32,
        pub blksize: u32,
        pub flags: u32,
    }
}

wire_struct! {
    /// File system statistics (`struct fuse_kstatfs`).
    pub struct Kstatfs {
        pub blocks: u64,
        pub bfree: u64,
        pub bavail: u64,
        pub files: u64,
        pub ffree: u64,
        pub bsize: u32,
        pub namelen: u32,
        pub frsize: u32,
        pub padding: u32,
        pub spare: [u32; 6],
    }
}

wire_struct! {
    /// A POSIX record lock (`struct fuse_file_lock`).
    pub struct FileLock {
        pub start: u64,
        pub end: u64,
        pub typ: u32,
        pub pid: u32,
    }
}

wire_struct! {
    /// Header of every request (`struct fuse_in_header`).
    pub struct InHeader {
        pub len: u32,
        pub opcode: u32,
        pub unique: u64,
        pub nodeid: u64,
        pub uid: u32,
        pub gid: u32,
        pub pid: u32,
        /// Length of request extensions, in units of 8 bytes.
        pub total_extlen: u16,
        pub padding: u16,
    }
}

wire_struct! {
    /// Header of every reply (`struct fuse_out_header`).
    pub struct OutHeader {
        pub len: u32,
        /// Zero or a negated errno.
        pub error: i32,
        pub unique: u64,
    }
}

wire_struct! {
    /// Reply to LOOKUP, MKNOD, MKDIR, SYMLINK, LINK (`struct fuse_entry_out`).
    pub struct EntryOut {
        pub nodeid: u64,
        pub generation: u64,
        pub entry_valid: u64,
        pub attr_valid: u64,
        pub entry_valid_nsec: u32,
        pub attr_valid_nsec: u32,
        pub attr: Attr,
    }
}

wire_struct! {
    /// FORGET arguments (`struct fuse_forget_in`).
    pub struct ForgetIn {
        pub nlookup: u64,
    }
}

wire_struct! {
    /// One entry of a BATCH_FORGET (`struct fuse_forget_one`).
    pub struct ForgetOne {
        pub nodeid: u64,
        pub nlookup: u64,
    }
}

wire_struct! {
    /// BATCH_FORGET arguments, followed by `count` [`ForgetOne`]s (`struct fuse_batch_forget_in`).
    pub struct BatchForgetIn {
        pub count: u32,
        pub dummy: u32,
    }
}

wire_struct! {
    /// GETATTR arguments (`struct fuse_getattr_in`).
    pub struct GetattrIn {
        pub getattr_flags: u32,
        pub dummy: u32,
        pub fh: u64,
    }
}

wire_struct! {
    /// Reply to GETATTR and SETATTR (`struct fuse_attr_out`).
    pub struct AttrOut {
        pub attr_valid: u64,
        pub attr_valid_nsec: u32,
        pub dummy: u32,
        pub attr: Attr,
    }
}

wire_struct! {
    /// MKNOD arguments, followed by the name (`struct fuse_mknod_in`).
    pub struct MknodIn {
        pub mode: u32,
        pub rdev: u32,
        pub umask: u32,
        pub padding: u32,
    }
}

wire_struct! {
    /// MKDIR arguments, followed by the name (`struct fuse_mkdir_in`).
    pub struct MkdirIn {
        pub mode: u32,
        pub umask: u32,
    }
}

wire_struct! {
    /// RENAME arguments, followed by old and new names (`struct fuse_rename_in`).
    pub struct RenameIn {
        pub newdir: u64,
    }
}

wire_struct! {
    /// RENAME2 arguments, followed by old and new names (`struct fuse_rename2_in`).
    pub struct Rename2In {
        pub newdir: u64,
        pub flags: u32,
        pub padding: u32,
    }
}

wire_struct! {
    /// LINK arguments, followed by the new name (`struct fuse_link_in`).
    pub struct LinkIn {
        pub oldnodeid: u64,
    }
}

wire_struct! {
    /// SETATTR arguments (`struct fuse_setattr_in`).
    pub struct SetattrIn {
        pub valid: u32,
        pub padding: u32,
        pub fh: u64,
        pub size: u64,
        pub lock_owner: u64,
        pub atime: u64,
        pub mtime: u64,
        pub ctime: u64,
        pub atimensec: u32,
        pub mtimensec: u32,
        pub ctimensec: u32,
        pub mode: u32,
        pub unused4: u32,
        pub uid: u32,
        pub gid: u32,
        pub unused5: u32,
    }
}

wire_struct! {
    /// OPEN and OPENDIR arguments (`struct fuse_open_in`).
    pub struct OpenIn {
        pub flags: u32,
        pub open_flags: u32,
    }
}

wire_struct! {
    /// CREATE and TMPFILE arguments, followed by the name (`struct fuse_create_in`).
    pub struct CreateIn {
        pub flags: u32,
        pub mode: u32,
        pub umask: u32,
        pub open_flags: u32,
    }
}

wire_struct! {
    /// Reply to OPEN, OPENDIR, and second half of CREATE's reply (`struct fuse_open_out`).
    pub struct OpenOut {
        pub fh: u64,
        pub open_flags: u32,
        pub backing_id: i32,
    }
}

wire_struct! {
    /// RELEASE and RELEASEDIR arguments (`struct fuse_release_in`).
    pub struct ReleaseIn {
        pub fh: u64,
        pub flags: u32,
        pub release_flags: u32,
        pub lock_owner: u64,
    }
}

wire_struct! {
    /// FLUSH arguments (`struct fuse_flush_in`).
    pub struct FlushIn {
        pub fh: u64,
        pub unused: u32,
        pub padding: u32,
        pub lock_owner: u64,
    }
}

wire_struct! {
    /// READ, READDIR and READDIRPLUS arguments (`struct fuse_read_in`).
    pub struct ReadIn {
        pub fh: u64,
        pub offset: u64,
        pub size: u32,
        pub read_flags: u32,
        pub lock_owner: u64,
        pub flags: u32,
        pub padding: u32,
    }
}

wire_struct! {
    /// WRITE arguments, followed by the data (`struct fuse_write_in`).
    pub struct WriteIn {
        pub fh: u64,
        pub offset: u64,
        pub size: u32,
        pub write_flags: u32,
        pub lock_owner: u64,
        pub flags: u32,
        pub padding: u32,
    }
}

wire_struct! {
    /// Reply to WRITE and COPY_FILE_RANGE (`struct fuse_write_out`).
    pub struct WriteOut {
        pub size: u32,
        pub padding: u32,
    }
}

wire_struct! {
    /// Reply to STATFS (`struct fuse_statfs_out`).
    pub struct StatfsOut {
        pub st: Kstatfs,
    }
}

wire_struct! {
    /// FSYNC and FSYNCDIR arguments (`struct fuse_fsync_in`).
    pub struct FsyncIn {
        pub fh: u64,
        pub fsync_flags: u32,
        pub padding: u32,
    }
}

wire_struct! {
    /// SETXATTR arguments, followed by name and value (`struct fuse_setxattr_in`).
    ///
    /// Only when [`init_flags::SETXATTR_EXT`] was negotiated does the client send the
    /// `setxattr_flags` and `padding` fields; otherwise the struct is
    /// [`SETXATTR_IN_LEGACY_SIZE`] bytes long.
    pub struct SetxattrIn {
        pub size: u32,
        pub flags: u32,
        pub setxattr_flags: u32,
        pub padding: u32,
    }
}

wire_struct! {
    /// GETXATTR and LISTXATTR arguments (`struct fuse_getxattr_in`).
    pub struct GetxattrIn {
        pub size: u32,
        pub padding: u32,
    }
}

wire_struct! {
    /// Reply to a size probe (size 0) of GETXATTR or LISTXATTR (`struct fuse_getxattr_out`).
    pub struct GetxattrOut {
        pub size: u32,
        pub padding: u32,
    }
}

wire_struct! {
    /// GETLK, SETLK and SETLKW arguments (`struct fuse_lk_in`).
    pub struct LkIn {
        pub fh: u64,
        pub owner: u64,
        pub lk: FileLock,
        pub lk_flags: u32,
        pub padding: u32,
    }
}

wire_struct! {
    /// Reply to GETLK (`struct fuse_lk_out`).
    pub struct LkOut {
        pub lk: FileLock,
    }
}

wire_struct! {
    /// ACCESS arguments (`struct fuse_access_in`).
    pub struct AccessIn {
        pub mask: u32,
        pub padding: u32,
    }
}

wire_struct! {
    /// INIT arguments (`struct fuse_init_in`, 7.36+ layout).
    ///
    /// Clients older than 7.36 send only the first [`INIT_IN_LEGACY_SIZE`] bytes.
    pub struct InitIn {
        pub major: u32,
        pub minor: u32,
        pub max_readahead: u32,
        pub flags: u32,
        pub flags2: u32,
        pub unused: [u32; 11],
    }
}

wire_struct! {
    /// Reply to INIT (`struct fuse_init_out`).
    pub struct InitOut {
        pub major: u32,
        pub minor: u32,
        pub max_readahead: u32,
        pub flags: u32,
        pub max_background: u16,
        pub congestion_threshold: u16,
        pub max_write: u32,
        pub time_gran: u32,
        pub max_pages: u16,
        pub map_alignment: u16,
        pub flags2: u32,
        pub max_stack_depth: u32,
        pub unused: [u32; 6],
    }
}

wire_struct! {
    /// INTERRUPT arguments (`struct fuse_interrupt_in`).
    pub struct InterruptIn {
        pub unique: u64,
    }
}

wire_struct! {
    /// BMAP arguments (`struct fuse_bmap_in`).
    pub struct BmapIn {
        pub block: u64,
        pub blocksize: u32,
        pub padding: u32,
    }
}

wire_struct! {
    /// FALLOCATE arguments (`struct fuse_fallocate_in`).
    pub struct FallocateIn {
        pub fh: u64,
        pub offset: u64,
        pub length: u64,
        pub mode: u32,
        pub padding: u32,
    }
}

wire_struct! {
    /// Fixed part of a READDIR entry, followed by the name padded to 8 bytes (`struct fuse_dirent`).
    pub struct Dirent {
        pub ino: u64,
        pub off: u64,
        pub namelen: u32,
        pub typ: u32,
    }
}

wire_struct! {
    /// Fixed part of a READDIRPLUS entry, followed by the name padded to 8 bytes
    /// (`struct fuse_direntplus`).
    pub struct DirentPlus {
        pub entry_out: EntryOut,
        pub dirent: Dirent,
    }
}

wire_struct! {
    /// LSEEK arguments (`struct fuse_lseek_in`).
    pub struct LseekIn {
        pub fh: u64,
        pub offset: u64,
        pub whence: u32,
        pub padding: u32,
    }
}

wire_struct! {
    /// Reply to LSEEK (`struct fuse_lseek_out`).
    pub struct LseekOut {
        pub offset: u64,
    }
}

wire_struct! {
    /// COPY_FILE_RANGE arguments (`struct fuse_copy_file_range_in`).
    pub struct CopyFileRangeIn {
        pub fh_in: u64,
        pub off_in: u64,
        pub nodeid_out: u64,
        pub fh_out: u64,
        pub off_out: u64,
        pub len: u64,
        pub flags: u64,
    }
}

wire_struct! {
    /// SETUPMAPPING arguments for the DAX window (`struct fuse_setupmapping_in`).
    pub struct SetupMappingIn {
        pub fh: u64,
        pub foffset: u64,
        pub len: u64,
        pub flags: u64,
        pub moffset: u64,
    }
}

wire_struct! {
    /// REMOVEMAPPING arguments, followed by `count` [`RemoveMappingOne`]s.
    pub struct RemoveMappingIn {
        pub count: u32,
    }
}

wire_struct! {
    /// One range of a REMOVEMAPPING (`struct fuse_removemapping_one`).
    pub struct RemoveMappingOne {
        pub moffset: u64,
        pub len: u64,
    }
}

wire_struct! {
    /// SYNCFS arguments (`struct fuse_syncfs_in`).
    pub struct SyncfsIn {
        pub padding: u64,
    }
}

wire_struct! {
    /// Header of one request extension (`struct fuse_ext_header`).
    pub struct ExtHeader {
        pub size: u32,
        pub typ: u32,
    }
}

wire_struct! {
    /// Supplementary-groups extension payload header, followed by `nr_groups` u32s.
    pub struct SuppGroups {
        pub nr_groups: u32,
    }
}

wire_struct! {
    /// Security-context extension header (`struct fuse_secctx_header`).
    pub struct SecctxHeader {
        pub size: u32,
        pub nr_secctx: u32,
    }
}

wire_struct! {
    /// One security context, followed by its name and value (`struct fuse_secctx`).
    pub struct Secctx {
        pub size: u32,
        pub padding: u32,
    }
}

wire_struct! {
    /// Notification: invalidate an inode's attributes and a range of its data.
    pub struct NotifyInvalInodeOut {
        pub ino: u64,
        pub off: i64,
        pub len: i64,
    }
}

wire_struct! {
    /// Notification: invalidate a directory entry, followed by the name.
    pub struct NotifyInvalEntryOut {
        pub parent: u64,
        pub namelen: u32,
        pub flags: u32,
    }
}

wire_struct! {
    /// Notification: a directory entry was deleted, followed by the name.
    pub struct NotifyDeleteOut {
        pub parent: u64,
        pub child: u64,
        pub namelen: u32,
        pub padding: u32,
    }
}

/// Size of a dirent record (fixed part plus name) rounded up to the 8-byte alignment the
/// kernel expects.
pub const fn dirent_size(fixed: usize, namelen: usize) -> usize {
    (fixed + namelen + 7) & !7
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, size_of};

    /// Sizes from `include/uapi/linux/fuse.h` (Linux 6.12, protocol 7.41).
    #[test]
    fn struct_sizes_match_kernel_abi() {
        assert_eq!(size_of::<Attr>(), 88);
        assert_eq!(size_of::<Kstatfs>(), 80);
        assert_eq!(size_of::<FileLock>(), 24);
        assert_eq!(size_of::<InHeader>(), 40);
        assert_eq!(size_of::<OutHeader>(), 16);
        assert_eq!(size_of::<EntryOut>(), 128);
        assert_eq!(size_of::<ForgetIn>(), 8);
        assert_eq!(size_of::<ForgetOne>(), 16);
        assert_eq!(size_of::<BatchForgetIn>(), 8);
        assert_eq!(size_of::<GetattrIn>(), 16);
        assert_eq!(size_of::<AttrOut>(), 104);
        assert_eq!(size_of::<MknodIn>(), 16);
        assert_eq!(size_of::<MkdirIn>(), 8);
        assert_eq!(size_of::<RenameIn>(), 8);
        assert_eq!(size_of::<Rename2In>(), 16);
        assert_eq!(size_of::<LinkIn>(), 8);
        assert_eq!(size_of::<SetattrIn>(), 88);
        assert_eq!(size_of::<OpenIn>(), 8);
        assert_eq!(size_of::<CreateIn>(), 16);
        assert_eq!(size_of::<OpenOut>(), 16);
        assert_eq!(size_of::<ReleaseIn>(), 24);
        assert_eq!(size_of::<FlushIn>(), 24);
        assert_eq!(size_of::<ReadIn>(), 40);
        assert_eq!(size_of::<WriteIn>(), 40);
        assert_eq!(size_of::<WriteOut>(), 8);
        assert_eq!(size_of::<StatfsOut>(), 80);
        assert_eq!(size_of::<FsyncIn>(), 16);
        assert_eq!(size_of::<SetxattrIn>(), 16);
        assert_eq!(size_of::<GetxattrIn>(), 8);
        assert_eq!(size_of::<GetxattrOut>(), 8);
        assert_eq!(size_of::<LkIn>(), 48);
        assert_eq!(size_of::<LkOut>(), 24);
        assert_eq!(size_of::<AccessIn>(), 8);
        assert_eq!(size_of::<InitIn>(), 64);
        assert_eq!(size_of::<InitOut>(), 64);
        assert_eq!(size_of::<InterruptIn>(), 8);
        assert_eq!(size_of::<BmapIn>(), 16);
        assert_eq!(size_of::<FallocateIn>(), 32);
        assert_eq!(size_of::<Dirent>(), 24);
        assert_eq!(size_of::<DirentPlus>(), 152);
        assert_eq!(size_of::<LseekIn>(), 24);
        assert_eq!(size_of::<LseekOut>(), 8);
        assert_eq!(size_of::<CopyFileRangeIn>(), 56);
        assert_eq!(size_of::<SetupMappingIn>(), 40);
        assert_eq!(size_of::<RemoveMappingIn>(), 4);
        assert_eq!(size_of::<RemoveMappingOne>(), 16);
        assert_eq!(size_of::<SyncfsIn>(), 8);
        assert_eq!(size_of::<ExtHeader>(), 8);
        assert_eq!(size_of::<SecctxHeader>(), 8);
        assert_eq!(size_of::<Secctx>(), 8);
        assert_eq!(size_of::<NotifyInvalInodeOut>(), 24);
        assert_eq!(size_of::<NotifyInvalEntryOut>(), 16);
        assert_eq!(size_of::<NotifyDeleteOut>(), 24);
    }

    #[test]
    fn no_implicit_padding() {
        // IntoBytes refuses to derive on structs with padding, so compiling is the check;
        // alignment must still be what the kernel uses.
        assert_eq!(align_of::<InHeader>(), 8);
        assert_eq!(align_of::<RemoveMappingIn>(), 4);
    }

    #[test]
    fn field_offsets_match_kernel_abi() {
        let h = InHeader {
            len: 0x11111111,
            opcode: 0x22222222,
            unique: 0x3333333333333333,
            nodeid: 0x4444444444444444,
            uid: 0x55555555,
            gid: 0x66666666,
            pid: 0x77777777,
            total_extlen: 0x8888,
            padding: 0x9999,
        };
        let b = h.as_bytes();
        assert_eq!(&b[0..4], &0x11111111u32.to_ne_bytes());
        assert_eq!(&b[8..16], &0x3333333333333333u64.to_ne_bytes());
        assert_eq!(&b[24..28], &0x55555555u32.to_ne_bytes());
        assert_eq!(&b[36..38], &0x8888u16.to_ne_bytes());
        let parsed = InHeader::read_from_bytes(b).expect("40 bytes parse");
        assert_eq!(parsed, h);

        let out = InitOut {
            max_write: 0xabcdef01,
            flags2: 0x12345678,
            ..Default::default()
        };
        let b = out.as_bytes();
        assert_eq!(&b[20..24], &0xabcdef01u32.to_ne_bytes());
        assert_eq!(&b[32..36], &0x12345678u32.to_ne_bytes());
    }

    #[test]
    fn dirent_sizes_are_8_aligned() {
        assert_eq!(dirent_size(size_of::<Dirent>(), 1), 32);
        assert_eq!(dirent_size(size_of::<Dirent>(), 8), 32);
        assert_eq!(dirent_size(size_of::<Dirent>(), 9), 40);
        assert_eq!(dirent_size(size_of::<DirentPlus>(), 3), 160);
    }

    #[test]
    fn opcode_names() {
        assert_eq!(opcode::name(opcode::READDIRPLUS), "READDIRPLUS");
        assert_eq!(opcode::name(9999), "UNKNOWN");
    }
}
