//! The vhost-user listening socket: created at a path (refusing a live one, replacing a stale
//! one) or inherited as a file descriptor, and removed again when we exit.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::sys::stat::fstat;

/// Removes a socket we created, through a descriptor of its directory, so that it works from
/// inside a sandbox where the path no longer resolves.
#[derive(Debug)]
pub struct SocketCleanup {
    dir: OwnedFd,
    name: CString,
    path: PathBuf,
    /// Identity of the socket file we bound: device, inode and change time (inode numbers are
    /// reused quickly, so the time tells a replacement apart).
    id: (u64, u64, u32, i64, i64),
}

fn file_id(st: &nix::sys::stat::FileStat) -> (u64, u64, u32, i64, i64) {
    (
        st.st_dev,
        st.st_ino,
        st.st_mode,
        st.st_ctime,
        st.st_ctime_nsec,
    )
}

impl SocketCleanup {
    /// Unlinks the socket, if the name still refers to the socket we bound.
    pub fn remove(&self) {
        // Only remove what is still our socket: someone may have replaced it.
        match nix::sys::stat::fstatat(
            &self.dir,
            self.name.as_c_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) if file_id(&st) == self.id => {}
            _ => return,
        }
        if let Err(e) = nix::unistd::unlinkat(
            &self.dir,
            self.name.as_c_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        ) {
            tracing::warn!("removing socket {}: {e}", self.path.display());
        }
    }
}

/// Creates a listening vhost-user socket at `path`.
///
/// An existing socket that accepts connections belongs to a running daemon: refused. One that
/// refuses connections is stale and replaced. Anything else at `path` is refused.
pub fn bind(path: &Path) -> io::Result<(UnixListener, SocketCleanup)> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("socket {} is in use by a running process", path.display()),
                ))
            }
            Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
                tracing::info!("removing stale socket {}", path.display());
                std::fs::remove_file(path)?;
            }
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("checking existing socket {}: {e}", path.display()),
                ))
            }
        },
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }

    let listener = UnixListener::bind(path)
        .map_err(|e| io::Error::new(e.kind(), format!("binding {}: {e}", path.display())))?;

    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "socket path has no name"))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = nix::fcntl::open(
        parent,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(io::Error::from)?;
    let file = nix::sys::stat::fstatat(&dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(io::Error::from)?;
    let cleanup = SocketCleanup {
        dir,
        name: cstring(name)?,
        path: path.to_path_buf(),
        id: file_id(&file),
    };
    Ok((listener, cleanup))
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::ErrorKind::InvalidInput.into())
}

/// Gives the socket file at `path` to group `group` (by name) and lets the group connect.
pub fn set_group(path: &Path, group: &str) -> io::Result<()> {
    let gid = match nix::unistd::Group::from_name(group) {
        Ok(Some(g)) => g.gid,
        Ok(None) => {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("--socket-group {group}: no such group"),
            ))
        }
        Err(e) => {
            return Err(io::Error::new(
                io::Error::from(e).kind(),
                format!("group {group}: {e}"),
            ))
        }
    };
    nix::unistd::chown(path, None, Some(gid)).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("chown {} to group {group}: {e}", path.display()),
        )
    })?;
    // Connecting needs write permission on the socket file.
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        path,
        nix::sys::stat::Mode::from_bits_truncate(0o660),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("chmod {}: {e}", path.display()),
        )
    })
}

/// Takes over an inherited listening socket (`--fd`).
pub fn from_fd(fd: RawFd) -> io::Result<UnixListener> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("--fd {fd}: {why}"));
    // SAFETY: fcntl(F_GETFD) only queries the descriptor table.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(bad("not an open file descriptor"));
    }
    // SAFETY: `fd` is open (checked above) and, per --fd's contract, handed to us to own;
    // nothing else in this process uses it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let st = fstat(owned.as_fd()).map_err(io::Error::from)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        // Do not close what is not ours to use.
        std::mem::forget(owned);
        return Err(bad("not a socket"));
    }
    let listening = nix::sys::socket::getsockopt(&owned, nix::sys::socket::sockopt::AcceptConn)
        .map_err(io::Error::from)?;
    if !listening {
        return Err(bad("socket is not listening"));
    }
    // Make sure it does not leak into anything we might exec.
    // SAFETY: F_SETFD on a descriptor we own.
    unsafe { libc::fcntl(owned.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok(UnixListener::from(owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_socket_is_refused_and_stale_one_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let (live, cleanup) = bind(&path).unwrap();
        let e = bind(&path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(e.to_string().contains("in use"));
        drop(live); // the file stays: now stale
        assert!(path.exists());
        let (_l2, cleanup2) = bind(&path).unwrap();
        cleanup2.remove();
        assert!(!path.exists());
        // A cleanup must not remove what replaced its socket.
        std::fs::write(&path, b"not ours").unwrap();
        cleanup.remove();
        cleanup2.remove();
        assert!(path.exists());
    }

    #[test]
    fn non_socket_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        std::fs::write(&path, b"x").unwrap();
        assert_eq!(
            bind(&path).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
    }

    #[test]
    fn inherited_fd_must_be_a_listening_socket() {
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(dir.path().join("f")).unwrap();
        let e = from_fd(f.as_raw_fd()).unwrap_err();
        assert!(e.to_string().contains("not a socket"), "{e}");
        drop(f);
        assert!(from_fd(100_000).is_err());
        let l = UnixListener::bind(dir.path().join("l")).unwrap();
        let raw = l.as_raw_fd();
        std::mem::forget(l);
        from_fd(raw).unwrap();
    }

    #[test]
    fn unknown_group_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let (_l, _c) = bind(&path).unwrap();
        assert!(set_group(&path, "no-such-group-vhostfs").is_err());
        set_group(&path, "root").unwrap();
    }
}
