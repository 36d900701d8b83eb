//! Running host system calls as the guest caller, and per-thread file system state.
//!
//! # Credentials
//!
//! Requests that create inodes (MKNOD, MKDIR, SYMLINK, CREATE, TMPFILE) and ACCESS run with the
//! caller's (id-mapped) uid and gid as the thread's *file system* uid/gid, so that new files get
//! the right owner without a separate `chown` (which would leave a window with root-owned files
//! and break setgid directories), and permission checks use the caller's identity. The switch
//! uses the raw `setfsuid`/`setfsgid` system calls, which change only the calling thread's
//! credentials (glibc's `setuid`/`setgroups` wrappers, by contrast, broadcast to every thread).
//! Changing the fsuid away from 0 drops the file-system capabilities (`CAP_DAC_OVERRIDE`,
//! `CAP_FOWNER`, ...) of the thread, and switching back to 0 restores them.
//!
//! With `FUSE_CREATE_SUPP_GROUP` the guest kernel sends one supplementary group of the caller
//! (the group owning the parent directory, when the caller is a member but it is not the
//! caller's primary group). That group is installed as the thread's only supplementary group
//! for the call with the raw `setgroups` system call (again per thread), so that a new file in a
//! setgid-less directory owned by that group behaves as it would locally.
//!
//! [`CredGuard`] restores the daemon's own ids (and supplementary groups) when dropped.
//!
//! When the daemon does not run as root (euid != 0) it cannot switch ids; then nothing is
//! switched and all calls run as the daemon's user.
//!
//! Other requests (OPEN, SETATTR, UNLINK, RENAME, ...) run with the daemon's credentials: the
//! guest kernel checks permissions itself before sending them (virtio-fs mounts always use
//! `default_permissions`), as it does for virtiofsd.
//!
//! # Umask and the current directory
//!
//! The host must create files with exactly the mode the guest asks for, not masked again by
//! the daemon's own umask, yet the process umask must not change (it also governs the
//! daemon's sockets and logs). So each thread that creates files gets its own file system
//! context once (`unshare(CLONE_FS)`), and creating requests set that thread's umask:
//! to 0 with the guest's umask applied to the mode here (`mode & !umask`; without
//! `FUSE_DONT_MASK` the guest kernel has already done so, so this changes nothing), or, with
//! POSIX ACLs, to the guest's umask with the mode passed unmasked, because the umask must
//! only apply when the parent directory has no default ACL, which only the host kernel can
//! decide. Where `unshare` is refused the process umask applies on top (logged once).
//!
//! The same per-thread context lets the thread's current directory be `/proc/self/fd`, so that
//! extended attribute calls on symlinks and special files (which cannot be opened) can name the
//! file as the relative path `"N"` of its `O_PATH` fd, even when the daemon runs chrooted
//! without `/proc` in its root. Seccomp policies must therefore allow `unshare`, `umask` and
//! `fchdir`.

use std::cell::Cell;
use std::io;
use std::os::fd::BorrowedFd;

use crate::sys::errno;

/// Sets the calling thread's fsuid; returns the previous one.
fn set_fsuid(uid: u32) -> u32 {
    // SAFETY: `setfsuid` takes an integer and changes only this thread's credentials.
    unsafe { libc::syscall(libc::SYS_setfsuid, uid as libc::c_long) as u32 }
}

/// Sets the calling thread's fsgid; returns the previous one.
fn set_fsgid(gid: u32) -> u32 {
    // SAFETY: `setfsgid` takes an integer and changes only this thread's credentials.
    unsafe { libc::syscall(libc::SYS_setfsgid, gid as libc::c_long) as u32 }
}

/// Replaces the calling thread's supplementary groups.
fn set_thread_groups(groups: &[libc::gid_t]) -> io::Result<()> {
    // SAFETY: `groups` is a valid array of `groups.len()` gids for the duration of the call;
    // the raw system call changes only this thread's credentials.
    let ret = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The daemon's own identity, captured once at startup.
#[derive(Clone, Debug)]
pub(crate) struct DaemonCreds {
    /// Whether the daemon may switch ids at all (it runs as root).
    pub can_switch: bool,
    uid: u32,
    gid: u32,
    groups: Vec<libc::gid_t>,
}

impl DaemonCreds {
    /// Captures the calling process's identity.
    pub fn capture() -> Self {
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        let groups = rustix::process::getgroups()
            .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
            .unwrap_or_default();
        Self {
            can_switch: uid == 0,
            uid,
            gid,
            groups,
        }
    }
}

/// Runs the current thread as a guest caller until dropped (see the module docs).
pub(crate) struct CredGuard<'a> {
    daemon: &'a DaemonCreds,
    uid_switched: bool,
    gid_switched: bool,
    groups_switched: bool,
}

impl<'a> CredGuard<'a> {
    /// Switches to host ids `uid`/`gid` (already mapped), with `supp_gid` as the only
    /// supplementary group when given. Does nothing when the daemon cannot switch ids or the
    /// ids are the daemon's own.
    pub fn new(
        daemon: &'a DaemonCreds,
        uid: u32,
        gid: u32,
        supp_gid: Option<u32>,
    ) -> io::Result<Self> {
        let mut guard = CredGuard {
            daemon,
            uid_switched: false,
            gid_switched: false,
            groups_switched: false,
        };
        if !daemon.can_switch {
            return Ok(guard);
        }
        if let Some(g) = supp_gid {
            set_thread_groups(&[g])?;
            guard.groups_switched = true;
        }
        if gid != daemon.gid {
            set_fsgid(gid);
            // setfsgid reports no errors; asking with an invalid id returns the current one.
            if set_fsgid(u32::MAX) != gid {
                return Err(errno(libc::EPERM));
            }
            guard.gid_switched = true;
        }
        if uid != daemon.uid {
            set_fsuid(uid);
            if set_fsuid(u32::MAX) != uid {
                return Err(errno(libc::EPERM));
            }
            guard.uid_switched = true;
        }
        Ok(guard)
    }
}

impl Drop for CredGuard<'_> {
    fn drop(&mut self) {
        if self.uid_switched {
            set_fsuid(self.daemon.uid);
        }
        if self.gid_switched {
            set_fsgid(self.daemon.gid);
        }
        if self.groups_switched {
            if let Err(e) = set_thread_groups(&self.daemon.groups) {
                tracing::error!("cannot restore supplementary groups: {e}");
            }
        }
    }
}

thread_local! {
    /// Whether this thread has its own fs context, and what we set in it.
    static THREAD_FS: Cell<ThreadFs> = const { Cell::new(ThreadFs { state: FsState::Shared, umask: 0, cwd_proc: 0 }) };
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FsState {
    Shared,
    Private,
    Failed,
}

#[derive(Clone, Copy)]
struct ThreadFs {
    state: FsState,
    umask: u32,
    /// Which `/proc/self/fd` the current directory is (an id of the file system instance that
    /// holds it; 0 = none): another instance's may be another process's, after a fork.
    cwd_proc: u64,
}

/// Gives the calling thread its own umask and current directory (once per thread).
fn private_fs() -> io::Result<ThreadFs> {
    let mut st = THREAD_FS.with(|c| c.get());
    match st.state {
        FsState::Private => Ok(st),
        FsState::Failed => Err(errno(libc::ENOTSUP)),
        FsState::Shared => {
            // SAFETY: unsharing CLONE_FS gives this thread a private copy of its root, current
            // directory and umask, which is what we want; the file system resolves every path
            // relative to fds it holds, and request worker threads do not rely on sharing the
            // current directory or umask with other threads.
            let r = unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FS) };
            match r {
                Ok(()) => {
                    st.state = FsState::Private;
                    st.umask = rustix::process::umask(rustix::fs::Mode::empty()).bits();
                    // Put it back: we only wanted to read it.
                    rustix::process::umask(rustix::fs::Mode::from_bits_retain(st.umask));
                    THREAD_FS.with(|c| c.set(st));
                    Ok(st)
                }
                Err(e) => {
                    tracing::warn!("unshare(CLONE_FS) failed ({e}); per-thread umask unavailable");
                    st.state = FsState::Failed;
                    THREAD_FS.with(|c| c.set(st));
                    Err(e.into())
                }
            }
        }
    }
}

/// Installs `umask` as the calling thread's umask. Fails when the thread cannot have its own
/// umask (the caller then masks the mode itself).
pub(crate) fn set_thread_umask(umask: u32) -> io::Result<()> {
    let mut st = private_fs()?;
    let umask = umask & 0o777;
    if st.umask != umask {
        rustix::process::umask(rustix::fs::Mode::from_bits_retain(umask));
        st.umask = umask;
        THREAD_FS.with(|c| c.set(st));
    }
    Ok(())
}

/// Makes `proc_self_fd` (held by the file system instance `instance`, a nonzero id) the
/// calling thread's current directory, so that `"N"` names fd N.
pub(crate) fn chdir_proc_self_fd(proc_self_fd: BorrowedFd<'_>, instance: u64) -> io::Result<()> {
    let mut st = private_fs()?;
    if st.cwd_proc != instance {
        rustix::process::fchdir(proc_self_fd)?;
        st.cwd_proc = instance;
        THREAD_FS.with(|c| c.set(st));
    }
    Ok(())
}
