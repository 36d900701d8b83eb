//! Thin wrappers around the host system calls the file system needs beyond what `rustix`
//! offers directly, and conversions between host and FUSE representations.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use rustix::fs::{AtFlags, Mode, OFlags, StatxFlags};

/// `FUSE_ATTR_SUBMOUNT`: the entry is the root of a host mount.
pub(crate) const FUSE_ATTR_SUBMOUNT: u32 = 1 << 0;

/// An `io::Error` from an errno value.
pub(crate) fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

/// Result of a `statx` call: the classic stat plus the mount id.
pub(crate) struct StatxResult {
    /// The attributes, in the layout FUSE replies use.
    pub st: libc::stat64,
    /// The host mount id of the file (0 when the kernel does not report it).
    pub mnt_id: u64,
}

/// `statx` of the file `fd` refers to (any kind of fd, `O_PATH` included), not following a
/// symlink.
pub(crate) fn statx_fd(fd: BorrowedFd<'_>) -> io::Result<StatxResult> {
    statx_at(fd, c"", AtFlags::EMPTY_PATH)
}

/// `statx` of `name` relative to directory `dir`, not following a symlink.
pub(crate) fn statx_at(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: AtFlags,
) -> io::Result<StatxResult> {
    let stx = rustix::fs::statx(
        dir,
        name,
        flags | AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS | StatxFlags::MNT_ID,
    )?;
    // SAFETY: `stat64` is plain old data; all-zero is a valid value.
    let mut st: libc::stat64 = unsafe { std::mem::zeroed() };
    st.st_dev = libc::makedev(stx.stx_dev_major, stx.stx_dev_minor);
    st.st_ino = stx.stx_ino;
    st.st_nlink = stx.stx_nlink.into();
    st.st_mode = stx.stx_mode.into();
    st.st_uid = stx.stx_uid;
    st.st_gid = stx.stx_gid;
    st.st_rdev = libc::makedev(stx.stx_rdev_major, stx.stx_rdev_minor);
    st.st_size = stx.stx_size as i64;
    st.st_blksize = stx.stx_blksize.into();
    st.st_blocks = stx.stx_blocks as i64;
    st.st_atime = stx.stx_atime.tv_sec;
    st.st_atime_nsec = stx.stx_atime.tv_nsec.into();
    st.st_mtime = stx.stx_mtime.tv_sec;
    st.st_mtime_nsec = stx.stx_mtime.tv_nsec.into();
    st.st_ctime = stx.stx_ctime.tv_sec;
    st.st_ctime_nsec = stx.stx_ctime.tv_nsec.into();
    let mnt_id = if stx.stx_mask & libc::STATX_MNT_ID != 0 {
        stx.stx_mnt_id
    } else {
        0
    };
    Ok(StatxResult { st, mnt_id })
}

/// The decimal name of an fd in `/proc/self/fd`, NUL-terminated, without allocating.
pub(crate) struct FdName {
    buf: [u8; 12],
    start: usize,
}

impl FdName {
    /// The name as a C string.
    pub fn as_c_str(&self) -> &CStr {
        // The buffer ends in the NUL written by `fd_name` and holds only digits before it.
        CStr::from_bytes_with_nul(&self.buf[self.start..]).unwrap_or(c"")
    }
}

/// The decimal name of `fd` in `/proc/self/fd`.
pub(crate) fn fd_name(fd: RawFd) -> FdName {
    let mut buf = [0u8; 12];
    let mut pos = buf.len() - 1; // buf[11] stays the NUL
    let mut n = fd.unsigned_abs();
    loop {
        pos -= 1;
        buf[pos] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    FdName { buf, start: pos }
}

/// Opens the file behind `fd` (an `O_PATH` fd) again with `flags`, through the magic link
/// `/proc/self/fd/N` (`proc_self_fd` is an fd of that directory opened at startup). The caller
/// must make sure the file is not a symlink: the magic link would then refer to the symlink
/// itself and the open fails with `ELOOP`, which is also fine.
pub(crate) fn reopen(
    proc_self_fd: BorrowedFd<'_>,
    fd: BorrowedFd<'_>,
    flags: OFlags,
) -> io::Result<OwnedFd> {
    let name = fd_name(fd.as_raw_fd());
    let flags = (flags | OFlags::CLOEXEC) & !(OFlags::CREATE | OFlags::NOFOLLOW);
    Ok(rustix::fs::openat(
        proc_self_fd,
        name.as_c_str(),
        flags,
        Mode::empty(),
    )?)
}

/// Converts a FUSE lock range (inclusive `end`, `u64::MAX`/`OFFSET_MAX` = to end of file) to
/// the `(l_start, l_len)` of a `struct flock`.
pub(crate) fn lock_range(start: u64, end: u64) -> io::Result<(i64, i64)> {
    let l_start = i64::try_from(start).map_err(|_| errno(libc::EINVAL))?;
    if end >= i64::MAX as u64 {
        return Ok((l_start, 0));
    }
    if end < start {
        return Err(errno(libc::EINVAL));
    }
    let len = end - start + 1;
    Ok((
        l_start,
        i64::try_from(len).map_err(|_| errno(libc::EINVAL))?,
    ))
}

/// An open-file-description lock command (`F_OFD_GETLK`, `F_OFD_SETLK`, `F_OFD_SETLKW`) on
/// `fd`. Returns the (possibly updated) lock description.
pub(crate) fn ofd_lock(
    fd: BorrowedFd<'_>,
    cmd: i32,
    typ: i16,
    start: i64,
    len: i64,
) -> io::Result<libc::flock64> {
    // SAFETY: `flock64` is plain old data; all-zero is a valid value.
    let mut fl: libc::flock64 = unsafe { std::mem::zeroed() };
    fl.l_type = typ;
    fl.l_whence = libc::SEEK_SET as i16;
    fl.l_start = start;
    fl.l_len = len;
    fl.l_pid = 0;
    // SAFETY: `fl` is a valid, writable `flock64` for the duration of the call, as the OFD
    // lock commands require; the fd is borrowed.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), cmd, &mut fl as *mut libc::flock64) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(fl)
    }
}

/// `fstatvfs` of the file system holding `fd` (`O_PATH` fds are fine).
pub(crate) fn fstatvfs(fd: BorrowedFd<'_>) -> io::Result<libc::statvfs64> {
    // SAFETY: `statvfs64` is plain old data; all-zero is a valid value.
    let mut st: libc::statvfs64 = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid writable `statvfs64`; the fd is borrowed for the call.
    let ret = unsafe { libc::fstatvfs64(fd.as_raw_fd(), &mut st) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(st)
    }
}

/// `lseek` with any whence (`SEEK_DATA`/`SEEK_HOLE` included).
pub(crate) fn lseek(fd: BorrowedFd<'_>, offset: i64, whence: i32) -> io::Result<u64> {
    // SAFETY: plain syscall on a borrowed fd.
    let ret = unsafe { libc::lseek64(fd.as_raw_fd(), offset, whence) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as u64)
    }
}

/// `dup` of `fd` (used to emulate a `close` without giving up the handle).
pub(crate) fn dup(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    fd.try_clone_to_owned()
}

/// A file handle of the host file system, from `name_to_handle_at`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct RawFileHandle {
    /// `file_handle.handle_type`.
    pub handle_type: i32,
    /// `file_handle.f_handle`.
    pub bytes: Vec<u8>,
}

/// Largest handle we accept (`MAX_HANDLE_SZ`).
const MAX_HANDLE_SZ: usize = 128;

/// `struct file_handle` with room for the largest handle.
#[repr(C)]
struct FileHandleBuf {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; MAX_HANDLE_SZ],
}

/// `name_to_handle_at(fd, "", AT_EMPTY_PATH)`: the handle and mount id of the file `fd`
/// refers to.
pub(crate) fn name_to_handle(fd: BorrowedFd<'_>) -> io::Result<(RawFileHandle, i32)> {
    let mut buf = FileHandleBuf {
        handle_bytes: MAX_HANDLE_SZ as u32,
        handle_type: 0,
        f_handle: [0; MAX_HANDLE_SZ],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `buf` is a `struct file_handle` with `handle_bytes` set to the room that follows
    // it; `mount_id` is a valid int; the path is a NUL-terminated empty string.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            fd.as_raw_fd(),
            c"".as_ptr(),
            &mut buf as *mut FileHandleBuf,
            &mut mount_id as *mut libc::c_int,
            libc::AT_EMPTY_PATH,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let len = (buf.handle_bytes as usize).min(MAX_HANDLE_SZ);
    Ok((
        RawFileHandle {
            handle_type: buf.handle_type,
            bytes: buf.f_handle[..len].to_vec(),
        },
        mount_id,
    ))
}

/// `open_by_handle_at(mount_fd, handle, flags)`.
pub(crate) fn open_by_handle(
    mount_fd: BorrowedFd<'_>,
    handle: &RawFileHandle,
    flags: OFlags,
) -> io::Result<OwnedFd> {
    let len = handle.bytes.len().min(MAX_HANDLE_SZ);
    let mut buf = FileHandleBuf {
        handle_bytes: len as u32,
        handle_type: handle.handle_type,
        f_handle: [0; MAX_HANDLE_SZ],
    };
    buf.f_handle[..len].copy_from_slice(&handle.bytes[..len]);
    // SAFETY: `buf` is a valid `struct file_handle` of `len` bytes; the fd is borrowed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount_fd.as_raw_fd(),
            &mut buf as *mut FileHandleBuf,
            (flags | OFlags::CLOEXEC).bits() as libc::c_int,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

/// Reads a directory entry stream: calls `f(ino, next_cookie, dtype, name)` for each entry
/// of `dir` starting at its current position, until `f` returns `Ok(false)` or the directory
/// ends. `buf_size` is the getdents buffer size.
pub(crate) fn for_each_dirent(
    dir: BorrowedFd<'_>,
    buf_size: usize,
    mut f: impl FnMut(u64, u64, u32, &[u8]) -> io::Result<bool>,
) -> io::Result<()> {
    let mut buf = Vec::with_capacity(buf_size.clamp(1024, 1 << 16));
    let mut raw = rustix::fs::RawDir::new(dir.as_fd(), buf.spare_capacity_mut());
    while let Some(entry) = raw.next() {
        let entry = entry?;
        let dtype = entry.file_type().as_raw_mode() >> 12;
        if !f(
            entry.ino(),
            entry.next_entry_cookie(),
            dtype,
            entry.file_name().to_bytes(),
        )? {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_names() {
        assert_eq!(fd_name(0).as_c_str(), c"0");
        assert_eq!(fd_name(7).as_c_str(), c"7");
        assert_eq!(fd_name(1234567).as_c_str(), c"1234567");
        assert_eq!(fd_name(i32::MAX).as_c_str(), c"2147483647");
    }

    #[test]
    fn lock_ranges() {
        assert_eq!(lock_range(0, u64::MAX).unwrap(), (0, 0));
        assert_eq!(lock_range(5, i64::MAX as u64).unwrap(), (5, 0));
        assert_eq!(lock_range(5, 9).unwrap(), (5, 5));
        assert!(lock_range(9, 5).is_err());
        assert!(lock_range(u64::MAX, u64::MAX).is_err());
    }
}
