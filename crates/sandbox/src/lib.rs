//! Confinement of the daemon process: namespaces or `chroot`, capabilities, seccomp, rlimits.
//!
//! # Order of calls
//!
//! The daemon is expected to set itself up in this order, **before it creates any thread**:
//!
//! 1. open everything that lives outside the shared directory and is needed later: the
//!    vhost-user listening socket (or `/dev/fuse`), the syslog socket, log files;
//! 2. [`set_rlimit_nofile`] (it reads `/proc/sys/fs/nr_open`, so do it before step 3);
//! 3. [`enter`] the sandbox: afterwards the shared directory is `/` (namespace and chroot modes)
//!    and the host's file system is out of reach;
//! 4. create the file system, which may use [`proc_self_fd`] to reopen `O_PATH` handles;
//! 5. [`drop_capabilities`] to the set the enabled features need ([`default_capabilities`],
//!    possibly edited by [`modcaps`]);
//! 6. [`install_seccomp`] (it covers every thread, but threads created later inherit the filter
//!    anyway);
//! 7. start worker threads and serve.
//!
//! [`enter`] in [`SandboxMode::Namespace`] forks; the original process stays behind as a
//! supervisor that forwards `SIGTERM`, `SIGINT`, `SIGHUP` and `SIGQUIT` to the daemon and exits
//! with its status. The daemon is pid 1 of a new pid namespace, so a signal it has no handler for
//! is ignored: [`enter`] installs a fallback handler that exits with status `128 + signal` for
//! those four signals, which the daemon may replace with its own handler. The caller's signal
//! mask is kept, so a daemon that blocks these signals and `sigwait`s for them in a thread still
//! receives them there.
//!
//! After [`enter`] in namespace or chroot mode, `/proc` is no longer reachable by path: a file
//! system that needs `/proc/self/fd` must take the descriptor from [`proc_self_fd`] rather than
//! open the path itself.

#![warn(missing_docs)]

mod caps;
mod seccomp;

pub use caps::{default_capabilities, drop_capabilities, modcaps, Cap};
pub use seccomp::{allowed_syscalls, install_seccomp};

use std::fs;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{chdir, chroot, fork, pivot_root, ForkResult, Pid};

/// How to confine the daemon (`--sandbox`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SandboxMode {
    /// New user (when not root), mount, pid, net and ipc namespaces, `pivot_root` into the share.
    Namespace,
    /// `chroot` into the share.
    Chroot,
    /// No confinement.
    None,
}

/// What a seccomp violation does (`--seccomp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeccompAction {
    /// Kill the process.
    Kill,
    /// Log and allow.
    Log,
    /// Send SIGSYS.
    Trap,
    /// No filter.
    None,
}

/// Errors from setting up confinement.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A syscall failed.
    #[error("{what}: {source}")]
    Sys {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// Building the seccomp filter failed.
    #[error("seccomp filter: {0}")]
    Seccomp(String),
    /// A capability name or `--modcaps` specification is not valid.
    #[error("capabilities: {0}")]
    Caps(String),
}

fn sys(what: &'static str) -> impl FnOnce(nix::Error) -> Error {
    move |e| Error::Sys {
        what,
        source: io::Error::from(e),
    }
}

fn sys_io(what: &'static str) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Sys { what, source }
}

/// The `/proc/self/fd` directory opened by [`enter`] before the host's `/proc` went out of
/// reach.
static PROC_SELF_FD: OnceLock<OwnedFd> = OnceLock::new();

/// Returns a file descriptor for this process's `/proc/self/fd` directory (`O_PATH`).
///
/// After [`enter`] in namespace or chroot mode `/proc` is not reachable by path any more; this
/// returns a duplicate of the descriptor [`enter`] opened beforehand. Without a sandbox (or
/// before [`enter`]) it opens `/proc/self/fd` afresh. Use it as the directory fd of
/// `openat(fd, "<n>", flags)` to reopen an `O_PATH` descriptor `n` with real access flags.
pub fn proc_self_fd() -> io::Result<OwnedFd> {
    match PROC_SELF_FD.get() {
        Some(fd) => fd.try_clone(),
        None => open_dir_path(c"/proc/self/fd"),
    }
}

fn open_dir_path(path: &std::ffi::CStr) -> io::Result<OwnedFd> {
    // SAFETY: `path` is a valid NUL-terminated string; the flags ask for a new descriptor.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by open() and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Enters the sandbox; returns the path of the shared directory as seen from inside it.
///
/// * [`SandboxMode::None`]: nothing changes; returns `shared_dir`.
/// * [`SandboxMode::Chroot`]: opens `/proc/self/fd` (see [`proc_self_fd`]), `chroot`s into
///   `shared_dir` and returns `/`. Needs `CAP_SYS_CHROOT`.
/// * [`SandboxMode::Namespace`]: when not running as root, first enters a new user namespace in
///   which the caller's uid and gid are mapped to 0. Then creates new mount, pid, net and ipc
///   namespaces and forks: the parent never returns from this function (it supervises the child
///   and exits with its status; see the crate documentation), the child is pid 1 of the new pid
///   namespace. The child makes every mount a slave (no propagation back to the host), mounts a
///   fresh `/proc` for its pid namespace and opens `/proc/self/fd` from it, bind-mounts
///   `shared_dir` onto itself, `pivot_root`s into it and lazily unmounts the old root (the
///   `/proc` mount stays usable through the open descriptor only), then returns `/`.
///
/// Must be called while the process has a single thread: `fork` copies only the calling thread,
/// and the credentials and namespaces changed here are per thread until threads are created.
pub fn enter(mode: SandboxMode, shared_dir: &Path) -> Result<PathBuf, Error> {
    match mode {
        SandboxMode::None => Ok(shared_dir.to_path_buf()),
        SandboxMode::Chroot => {
            let shared = fs::canonicalize(shared_dir).map_err(sys_io("resolving shared dir"))?;
            let proc_fd = open_dir_path(c"/proc/self/fd").map_err(sys_io("open /proc/self/fd"))?;
            chroot(&shared).map_err(sys("chroot"))?;
            chdir("/").map_err(sys("chdir /"))?;
            let _ = PROC_SELF_FD.set(proc_fd);
            Ok(PathBuf::from("/"))
        }
        SandboxMode::Namespace => {
            let shared = fs::canonicalize(shared_dir).map_err(sys_io("resolving shared dir"))?;
            enter_namespaces(&shared)?;
            Ok(PathBuf::from("/"))
        }
    }
}

/// Signals the supervisor forwards to the sandboxed daemon.
const FORWARDED: [Signal; 4] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

fn enter_namespaces(shared: &Path) -> Result<(), Error> {
    // SAFETY: geteuid/getegid have no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if uid != 0 {
        unshare(CloneFlags::CLONE_NEWUSER).map_err(sys("unshare(CLONE_NEWUSER)"))?;
        fs::write("/proc/self/setgroups", "deny").map_err(sys_io("write /proc/self/setgroups"))?;
        fs::write("/proc/self/uid_map", format!("0 {uid} 1"))
            .map_err(sys_io("write /proc/self/uid_map"))?;
        fs::write("/proc/self/gid_map", format!("0 {gid} 1"))
            .map_err(sys_io("write /proc/self/gid_map"))?;
    }
    unshare(
        CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWIPC,
    )
    .map_err(sys("unshare(mount, pid, net, ipc namespaces)"))?;

    // Block the forwarded signals (and SIGCHLD) before forking so none is lost in between; the
    // child restores the caller's mask.
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set.add(Signal::SIGCHLD);
    let old_mask = set
        .thread_swap_mask(nix::sys::signal::SigmaskHow::SIG_BLOCK)
        .map_err(sys("sigprocmask"))?;

    // SAFETY: the caller guarantees the process is single-threaded (documented on `enter`).
    match unsafe { fork() }.map_err(sys("fork"))? {
        ForkResult::Parent { child } => supervise(child, &set),
        ForkResult::Child => {
            // Back to the caller's mask: a daemon that blocks SIGTERM to `sigwait` for it in a
            // thread keeps doing so.
            old_mask.thread_set_mask().map_err(sys("sigprocmask"))?;
            // Die with the supervisor.
            // SAFETY: plain prctl with integer arguments.
            if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } != 0 {
                return Err(sys_io("prctl(PR_SET_PDEATHSIG)")(io::Error::last_os_error()));
            }
            install_fallback_handlers()?;
            setup_mounts(shared)
        }
    }
}

/// Runs in the supervisor: forwards signals to `child` and exits with its status.
fn supervise(child: Pid, set: &SigSet) -> ! {
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => loop {
                match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(_, code)) => std::process::exit(code),
                    Ok(WaitStatus::Signaled(_, sig, _)) => std::process::exit(128 + sig as i32),
                    Ok(WaitStatus::StillAlive) => break,
                    Ok(_) => continue,
                    Err(nix::Error::EINTR) => continue,
                    Err(_) => std::process::exit(1),
                }
            },
            Ok(sig) => {
                let _ = nix::sys::signal::kill(child, sig);
            }
            Err(_) => continue,
        }
    }
}

extern "C" fn fallback_exit(sig: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(128 + sig) }
}

/// Installs handlers so that pid 1 (which ignores signals without a handler) still terminates on
/// the forwarded signals.
fn install_fallback_handlers() -> Result<(), Error> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler};
    let act = SigAction::new(
        SigHandler::Handler(fallback_exit),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for s in FORWARDED {
        // SAFETY: the handler only calls the async-signal-safe `_exit`.
        unsafe { sigaction(s, &act) }.map_err(sys("sigaction"))?;
    }
    Ok(())
}

/// Mount-namespace setup in the child: slave mounts, fresh /proc, pivot_root into `shared`.
fn setup_mounts(shared: &Path) -> Result<(), Error> {
    let none: Option<&str> = None;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_SLAVE, none)
        .map_err(sys("making mounts private (MS_REC|MS_SLAVE on /)"))?;
    // A /proc for our own pid namespace, so that /proc/self is this process.
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_NOSUID,
        none,
    )
    .map_err(sys("mounting /proc"))?;
    let proc_fd = open_dir_path(c"/proc/self/fd").map_err(sys_io("open /proc/self/fd"))?;

    mount(
        Some(shared),
        shared,
        none,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        none,
    )
    .map_err(sys("bind-mounting the shared directory"))?;
    chdir(shared).map_err(sys("chdir into the shared directory"))?;
    // pivot_root(".", ".") stacks the old root on top of the new one at "/"; unmounting "."
    // then removes the old root (see pivot_root(2)).
    pivot_root(".", ".").map_err(sys("pivot_root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(sys("unmounting the old root"))?;
    chdir("/").map_err(sys("chdir /"))?;
    let _ = PROC_SELF_FD.set(proc_fd);
    Ok(())
}

/// Default for `--rlimit-nofile`: `min(1_000_000, /proc/sys/fs/nr_open)`.
pub fn default_rlimit_nofile() -> u64 {
    let nr_open = fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1_048_576);
    nr_open.min(1_000_000)
}

/// Sets the open-file limit (`RLIMIT_NOFILE`) to `n` (soft and hard); returns the resulting soft
/// limit.
///
/// `n == 0` leaves the limit unchanged. If raising the hard limit is not permitted, the soft
/// limit is raised as far as the current hard limit allows. A lower `n` than the current limit
/// lowers it.
pub fn set_rlimit_nofile(n: u64) -> Result<u64, Error> {
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `cur` is a valid rlimit to fill in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut cur) } != 0 {
        return Err(sys_io("getrlimit(RLIMIT_NOFILE)")(
            io::Error::last_os_error(),
        ));
    }
    if n == 0 {
        return Ok(cur.rlim_cur);
    }
    let want = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: `want` is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
        return Ok(n);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EPERM) {
        return Err(sys_io("setrlimit(RLIMIT_NOFILE)")(err));
    }
    let fallback = libc::rlimit {
        rlim_cur: n.min(cur.rlim_max),
        rlim_max: cur.rlim_max,
    };
    // SAFETY: `fallback` is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &fallback) } != 0 {
        return Err(sys_io("setrlimit(RLIMIT_NOFILE)")(
            io::Error::last_os_error(),
        ));
    }
    Ok(fallback.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_mode_is_identity() {
        let p = Path::new("/tmp");
        assert_eq!(enter(SandboxMode::None, p).unwrap(), p);
    }

    #[test]
    fn proc_self_fd_opens() {
        let fd = proc_self_fd().unwrap();
        // SAFETY: `stat` is plain old data; all-zero is a valid value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fd is valid, empty path with AT_EMPTY_PATH stats the fd itself.
        let rc = unsafe {
            libc::fstatat(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                c"".as_ptr(),
                &mut st,
                libc::AT_EMPTY_PATH,
            )
        };
        assert_eq!(rc, 0);
        assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFDIR);
    }

    #[test]
    fn rlimit_roundtrip() {
        let before = set_rlimit_nofile(0).unwrap();
        assert!(before > 0);
        assert!(default_rlimit_nofile() > 0);
    }
}
