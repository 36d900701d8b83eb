//! Reply encoding: host types to wire structs, and writing header plus body.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use vhostfs_fuse_abi as abi;
use zerocopy::{Immutable, IntoBytes};

use crate::filesystem::{AttrReply, Entry, Lock, Opened};
use crate::io::{ReplyWriter, ZeroCopyReader, ZeroCopyWriter};

/// Size of the reply header.
pub(crate) const OUT_HEADER_LEN: usize = std::mem::size_of::<abi::OutHeader>();

/// The errno to send for `e`: its OS error when it has one in the range the kernel accepts
/// (1..512), `EIO` otherwise.
pub(crate) fn errno_of(e: &io::Error) -> i32 {
    match e.raw_os_error() {
        Some(n) if n > 0 && n < 512 => n,
        _ => libc::EIO,
    }
}

/// Splits a timeout into the (seconds, nanoseconds) pair of the wire format.
pub(crate) fn timeout(d: Duration) -> (u64, u32) {
    (d.as_secs(), d.subsec_nanos())
}

/// Encodes a host device number the way the kernel's `new_decode_dev` reads `fuse_attr.rdev`:
/// 12 bits of major, 20 bits of minor.
pub(crate) fn encode_rdev(rdev: u64) -> u32 {
    let major = libc::major(rdev);
    let minor = libc::minor(rdev);
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

/// Converts a host `stat64` to the wire attributes.
pub(crate) fn attr_from_stat(st: &libc::stat64, flags: u32) -> abi::Attr {
    abi::Attr {
        ino: st.st_ino,
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        atime: st.st_atime as u64,
        mtime: st.st_mtime as u64,
        ctime: st.st_ctime as u64,
        atimensec: st.st_atime_nsec as u32,
        mtimensec: st.st_mtime_nsec as u32,
        ctimensec: st.st_ctime_nsec as u32,
        mode: st.st_mode,
        nlink: u32::try_from(st.st_nlink).unwrap_or(u32::MAX),
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: encode_rdev(st.st_rdev),
        blksize: u32::try_from(st.st_blksize).unwrap_or(0),
        flags,
    }
}

/// Converts an [`Entry`] to `fuse_entry_out`.
pub(crate) fn entry_out(e: &Entry) -> abi::EntryOut {
    let (entry_valid, entry_valid_nsec) = timeout(e.entry_timeout);
    let (attr_valid, attr_valid_nsec) = timeout(e.attr_timeout);
    abi::EntryOut {
        nodeid: e.inode,
        generation: e.generation,
        entry_valid,
        attr_valid,
        entry_valid_nsec,
        attr_valid_nsec,
        attr: attr_from_stat(&e.attr, e.attr_flags),
    }
}

/// Converts an [`AttrReply`] to `fuse_attr_out`.
pub(crate) fn attr_out(a: &AttrReply) -> abi::AttrOut {
    let (attr_valid, attr_valid_nsec) = timeout(a.timeout);
    abi::AttrOut {
        attr_valid,
        attr_valid_nsec,
        dummy: 0,
        attr: attr_from_stat(&a.attr, 0),
    }
}

/// Converts an [`Opened`] to `fuse_open_out`.
pub(crate) fn open_out(o: &Opened) -> abi::OpenOut {
    abi::OpenOut {
        fh: o.handle,
        // FUSE passthrough needs a backing id we never register.
        open_flags: o.open_flags & !abi::fopen::PASSTHROUGH,
        backing_id: 0,
    }
}

/// Converts a host `statvfs64` to `fuse_statfs_out`.
pub(crate) fn statfs_out(st: &libc::statvfs64) -> abi::StatfsOut {
    abi::StatfsOut {
        st: abi::Kstatfs {
            blocks: st.f_blocks,
            bfree: st.f_bfree,
            bavail: st.f_bavail,
            files: st.f_files,
            ffree: st.f_ffree,
            bsize: u32::try_from(st.f_bsize).unwrap_or(u32::MAX),
            namelen: u32::try_from(st.f_namemax).unwrap_or(u32::MAX),
            frsize: u32::try_from(st.f_frsize).unwrap_or(u32::MAX),
            padding: 0,
            spare: [0; 6],
        },
    }
}

/// Converts a [`Lock`] to `fuse_lk_out`.
pub(crate) fn lk_out(l: &Lock) -> abi::LkOut {
    abi::LkOut {
        lk: abi::FileLock {
            start: l.start,
            end: l.end,
            typ: l.typ,
            pid: l.pid,
        },
    }
}

/// The CREATE/TMPFILE reply body: `fuse_entry_out` then `fuse_open_out`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, IntoBytes, Immutable)]
pub(crate) struct CreateOut {
    /// The new inode.
    pub(crate) entry: abi::EntryOut,
    /// The handle it was opened with.
    pub(crate) open: abi::OpenOut,
}

/// Writes a complete reply (header, then `body`) at the writer's position; returns its length.
/// Writes nothing and fails with `WriteZero` when the writer cannot hold it all.
pub(crate) fn write_reply(
    w: &mut dyn ReplyWriter,
    unique: u64,
    error: i32,
    body: &[u8],
) -> io::Result<usize> {
    let len = OUT_HEADER_LEN + body.len();
    if len > w.available() {
        return Err(io::ErrorKind::WriteZero.into());
    }
    let header = abi::OutHeader {
        len: u32::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
        error,
        unique,
    };
    w.write_all(header.as_bytes())?;
    if !body.is_empty() {
        w.write_all(body)?;
    }
    Ok(len)
}

/// Writes an error reply (`-errno`, no body).
pub(crate) fn write_error(w: &mut dyn ReplyWriter, unique: u64, errno: i32) -> io::Result<usize> {
    note_error(errno);
    write_reply(w, unique, -errno, &[])
}

thread_local! {
    /// The errno of the last error reply made on this thread (for statistics).
    static LAST_ERROR: std::cell::Cell<Option<i32>> = const { std::cell::Cell::new(None) };
}

/// Records that an error reply with `errno` is being sent.
pub(crate) fn note_error(errno: i32) {
    LAST_ERROR.with(|c| c.set(Some(errno)));
}

/// The errno recorded since the last call, if any.
pub(crate) fn take_last_error() -> Option<i32> {
    LAST_ERROR.with(|c| c.take())
}

/// Writes the reply for a typed result: the struct on success, the errno on failure.
pub(crate) fn write_result<T: IntoBytes + Immutable>(
    w: &mut dyn ReplyWriter,
    unique: u64,
    res: io::Result<T>,
) -> io::Result<usize> {
    match res {
        Ok(v) => write_reply(w, unique, 0, v.as_bytes()),
        Err(e) => write_error(w, unique, errno_of(&e)),
    }
}

/// Lets a file system move at most `limit` bytes through `inner`: READ data into the reply
/// (while the server keeps the reply writer, for the header) or WRITE data out of the request
/// (so it can never consume bytes past the payload the header announced).
pub(crate) struct Limited<'a, T: ?Sized> {
    /// The reply writer (READ) or the request reader (WRITE).
    pub(crate) inner: &'a mut T,
    /// Bytes still allowed through.
    pub(crate) limit: usize,
}

impl<T: ?Sized> Limited<'_, T> {
    /// Moves at most `len` bytes (and at most what is left of the limit) with `op`, and takes
    /// what it moved off the limit; calls nothing when that leaves 0 bytes.
    fn transfer(
        &mut self,
        len: usize,
        op: impl FnOnce(&mut T, usize) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let len = len.min(self.limit);
        if len == 0 {
            return Ok(0);
        }
        let n = op(self.inner, len)?.min(len);
        self.limit -= n;
        Ok(n)
    }
}

impl ZeroCopyWriter for Limited<'_, dyn ReplyWriter + '_> {
    fn write_from_file(&mut self, fd: BorrowedFd<'_>, off: u64, len: usize) -> io::Result<usize> {
        let len = len.min(self.inner.available());
        self.transfer(len, |w, len| w.write_from_file(fd, off, len))
    }
}

impl ZeroCopyReader for Limited<'_, dyn crate::io::RequestReader + '_> {
    fn read_to_file(&mut self, fd: BorrowedFd<'_>, off: u64, len: usize) -> io::Result<usize> {
        self.transfer(len, |r, len| r.read_to_file(fd, off, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdev_encoding_matches_kernel() {
        // new_encode_dev(MKDEV(8, 1)) == 0x801; MKDEV(259, 0x12345) spills minor high bits.
        assert_eq!(encode_rdev(libc::makedev(8, 1)), 0x801);
        assert_eq!(encode_rdev(libc::makedev(1, 3)), 0x103);
        let dev = libc::makedev(259, 0x12345);
        let enc = encode_rdev(dev);
        assert_eq!((enc & 0xfff00) >> 8, 259);
        assert_eq!((enc & 0xff) | ((enc >> 12) & 0xfff00), 0x12345);
        // Kernel encoding is what glibc's makedev gives for 32-bit values.
        assert_eq!(u64::from(enc), dev);
    }

    #[test]
    fn errno_mapping() {
        assert_eq!(
            errno_of(&io::Error::from_raw_os_error(libc::ENOENT)),
            libc::ENOENT
        );
        assert_eq!(errno_of(&io::Error::from_raw_os_error(0)), libc::EIO);
        assert_eq!(errno_of(&io::Error::from_raw_os_error(512)), libc::EIO);
        assert_eq!(errno_of(&io::Error::from_raw_os_error(-3)), libc::EIO);
        assert_eq!(errno_of(&io::ErrorKind::Other.into()), libc::EIO);
    }

    #[test]
    fn timeouts_split() {
        assert_eq!(timeout(Duration::new(5, 7)), (5, 7));
        assert_eq!(timeout(Duration::MAX), (u64::MAX, 999_999_999));
    }

    #[test]
    fn reply_too_big_writes_nothing() {
        let mut w = crate::io::VecWriter::new(20);
        assert!(write_reply(&mut w, 1, 0, &[0; 8]).is_err());
        assert_eq!(w.bytes_written(), 0);
        assert_eq!(write_reply(&mut w, 1, 0, &[0; 4]).unwrap(), 20);
    }
}
