//! The seccomp allow-list of the daemon.
//!
//! The list covers what the daemon does in every mode after confinement: the Rust standard
//! library and glibc (threads, memory, signals, time, randomness), vhost-user (epoll, eventfd,
//! `recvmsg` with `SCM_RIGHTS`, `mmap` of guest memory, `accept4` on the listening socket), the
//! passthrough file system (the `*at` family, `openat2`, file handles, xattrs, locks, `fallocate`,
//! `copy_file_range`, per-thread credentials with `setfsuid`/`setresuid`/`setgroups`,
//! `unshare(CLONE_FS)` for per-thread umask), the `/dev/fuse` transport (`read`/`write`/`ioctl`,
//! `umount2`), and logging to stderr or syslog (an `AF_UNIX` datagram socket).
//!
//! Some syscalls are allowed only with restricted arguments: `clone` only to create threads
//! (`CLONE_THREAD` set), `unshare` only with `CLONE_FS` / `CLONE_FILES` / `CLONE_SYSVSEM`,
//! `socket` only for `AF_UNIX`, and `ioctl` with anything but `TIOCSTI`/`TIOCLINUX` (no typing
//! into a terminal). `clone3`, whose flags a filter cannot see, fails with `ENOSYS` so that the C
//! library falls back to `clone`.

use std::collections::BTreeMap;

use seccompiler::{
    SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

use crate::{Error, SeccompAction};

macro_rules! syscalls {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), libc::$name)),*]
    };
}

/// Syscalls allowed without conditions on every architecture.
const COMMON: &[(&str, i64)] = syscalls![
    // I/O on descriptors.
    SYS_read,
    SYS_write,
    SYS_readv,
    SYS_writev,
    SYS_pread64,
    SYS_pwrite64,
    SYS_preadv,
    SYS_pwritev,
    SYS_preadv2,
    SYS_pwritev2,
    SYS_lseek,
    SYS_close,
    SYS_close_range,
    SYS_dup,
    SYS_dup3,
    SYS_fcntl,
    SYS_flock,
    SYS_pipe2,
    SYS_splice,
    SYS_tee,
    SYS_vmsplice,
    SYS_sendfile,
    SYS_copy_file_range,
    SYS_fallocate,
    SYS_ftruncate,
    SYS_truncate,
    SYS_fsync,
    SYS_fdatasync,
    SYS_syncfs,
    SYS_sync_file_range,
    SYS_fadvise64,
    SYS_readahead,
    // Names and metadata.
    SYS_openat,
    SYS_openat2,
    SYS_name_to_handle_at,
    SYS_open_by_handle_at,
    SYS_newfstatat,
    SYS_fstat,
    SYS_statx,
    SYS_statfs,
    SYS_fstatfs,
    SYS_getdents64,
    SYS_mkdirat,
    SYS_mknodat,
    SYS_unlinkat,
    SYS_renameat,
    SYS_renameat2,
    SYS_linkat,
    SYS_symlinkat,
    SYS_readlinkat,
    SYS_fchmod,
    SYS_fchmodat,
    SYS_fchmodat2,
    SYS_fchown,
    SYS_fchownat,
    SYS_utimensat,
    SYS_faccessat,
    SYS_faccessat2,
    SYS_getcwd,
    SYS_chdir,
    SYS_fchdir,
    SYS_umask,
    SYS_umount2,
    // Extended attributes.
    SYS_getxattr,
    SYS_lgetxattr,
    SYS_fgetxattr,
    SYS_setxattr,
    SYS_lsetxattr,
    SYS_fsetxattr,
    SYS_listxattr,
    SYS_llistxattr,
    SYS_flistxattr,
    SYS_removexattr,
    SYS_lremovexattr,
    SYS_fremovexattr,
    // Event loops, vhost-user sockets.
    SYS_epoll_create1,
    SYS_epoll_ctl,
    SYS_epoll_pwait,
    SYS_epoll_pwait2,
    SYS_eventfd2,
    SYS_ppoll,
    SYS_pselect6,
    SYS_recvmsg,
    SYS_sendmsg,
    SYS_recvfrom,
    SYS_sendto,
    SYS_accept4,
    SYS_connect,
    SYS_shutdown,
    SYS_getsockopt,
    SYS_getsockname,
    SYS_getpeername,
    // Memory.
    SYS_mmap,
    SYS_munmap,
    SYS_mremap,
    SYS_mprotect,
    SYS_madvise,
    SYS_brk,
    // Threads, synchronisation, scheduling.
    SYS_futex,
    SYS_set_robust_list,
    SYS_rseq,
    SYS_set_tid_address,
    SYS_sched_yield,
    SYS_sched_getaffinity,
    SYS_membarrier,
    SYS_prctl,
    SYS_exit,
    SYS_exit_group,
    SYS_restart_syscall,
    // Signals.
    SYS_rt_sigaction,
    SYS_rt_sigprocmask,
    SYS_rt_sigreturn,
    SYS_rt_sigtimedwait,
    SYS_rt_sigsuspend,
    SYS_sigaltstack,
    SYS_tgkill,
    SYS_tkill,
    // Credentials (per-thread switching to the guest caller).
    SYS_getpid,
    SYS_gettid,
    SYS_getppid,
    SYS_getuid,
    SYS_geteuid,
    SYS_getgid,
    SYS_getegid,
    SYS_getresuid,
    SYS_getresgid,
    SYS_getgroups,
    SYS_setresuid,
    SYS_setresgid,
    SYS_setfsuid,
    SYS_setfsgid,
    SYS_setgroups,
    SYS_capget,
    SYS_capset,
    // Time, randomness, limits, system information.
    SYS_clock_gettime,
    SYS_clock_getres,
    SYS_clock_nanosleep,
    SYS_gettimeofday,
    SYS_nanosleep,
    SYS_getrandom,
    SYS_prlimit64,
    SYS_getrlimit,
    SYS_uname,
    SYS_sysinfo,
];

/// Legacy syscalls that exist only on x86_64 (glibc and std still use some of them).
#[cfg(target_arch = "x86_64")]
const ARCH: &[(&str, i64)] = syscalls![
    SYS_open,
    SYS_stat,
    SYS_lstat,
    SYS_access,
    SYS_readlink,
    SYS_getdents,
    SYS_dup2,
    SYS_pipe,
    SYS_poll,
    SYS_select,
    SYS_epoll_wait,
    SYS_epoll_create,
    SYS_eventfd,
    SYS_mkdir,
    SYS_rmdir,
    SYS_unlink,
    SYS_rename,
    SYS_link,
    SYS_symlink,
    SYS_chmod,
    SYS_chown,
    SYS_lchown,
    SYS_time,
    SYS_accept,
];

#[cfg(not(target_arch = "x86_64"))]
const ARCH: &[(&str, i64)] = &[];

/// Returns every syscall the filter allows (name, number), including the conditional ones.
pub fn allowed_syscalls() -> Vec<(&'static str, i64)> {
    let mut v: Vec<(&'static str, i64)> = COMMON.iter().chain(ARCH.iter()).copied().collect();
    v.push(("SYS_clone", libc::SYS_clone));
    v.push(("SYS_unshare", libc::SYS_unshare));
    v.push(("SYS_socket", libc::SYS_socket));
    v.push(("SYS_ioctl", libc::SYS_ioctl));
    v
}

fn target_arch() -> Result<TargetArch, Error> {
    if cfg!(target_arch = "x86_64") {
        Ok(TargetArch::x86_64)
    } else if cfg!(target_arch = "aarch64") {
        Ok(TargetArch::aarch64)
    } else if cfg!(target_arch = "riscv64") {
        Ok(TargetArch::riscv64)
    } else {
        Err(Error::Seccomp("unsupported architecture".into()))
    }
}

fn cond_rule(arg: u8, op: SeccompCmpOp, value: u64) -> Result<Vec<SeccompRule>, Error> {
    let c = SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| Error::Seccomp(e.to_string()))?;
    Ok(vec![
        SeccompRule::new(vec![c]).map_err(|e| Error::Seccomp(e.to_string()))?
    ])
}

/// Builds the BPF program for `action` (`None` for [`SeccompAction::None`]).
pub(crate) fn build_filter(
    action: SeccompAction,
) -> Result<Option<seccompiler::BpfProgram>, Error> {
    let mismatch = match action {
        SeccompAction::None => return Ok(None),
        SeccompAction::Kill => seccompiler::SeccompAction::KillProcess,
        SeccompAction::Log => seccompiler::SeccompAction::Log,
        SeccompAction::Trap => seccompiler::SeccompAction::Trap,
    };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = COMMON
        .iter()
        .chain(ARCH.iter())
        .map(|&(_, nr)| (nr, Vec::new()))
        .collect();
    let thread = libc::CLONE_THREAD as u64;
    rules.insert(
        libc::SYS_clone,
        cond_rule(0, SeccompCmpOp::MaskedEq(thread), thread)?,
    );
    let unshare_ok = (libc::CLONE_FS | libc::CLONE_FILES | libc::CLONE_SYSVSEM) as u64;
    rules.insert(
        libc::SYS_unshare,
        cond_rule(0, SeccompCmpOp::MaskedEq(!unshare_ok), 0)?,
    );
    // Any ioctl (FUSE_DEV_IOC_CLONE, FS_IOC_*, terminal queries for logging) except pushing
    // input into a terminal the daemon may still hold (stderr).
    let ioctl_ok = vec![SeccompRule::new(vec![
        SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, libc::TIOCSTI)
            .map_err(|e| Error::Seccomp(e.to_string()))?,
        SeccompCondition::new(
            1,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Ne,
            libc::TIOCLINUX,
        )
        .map_err(|e| Error::Seccomp(e.to_string()))?,
    ])
    .map_err(|e| Error::Seccomp(e.to_string()))?];
    rules.insert(libc::SYS_ioctl, ioctl_ok);
    // clone3 passes its flags in memory, out of a filter's sight; it gets ENOSYS from the
    // second filter below (glibc then falls back to clone, filtered above). Allowing it here
    // keeps it from reaching the mismatch action.
    rules.insert(libc::SYS_clone3, Vec::new());
    rules.insert(
        libc::SYS_socket,
        cond_rule(0, SeccompCmpOp::Eq, libc::AF_UNIX as u64)?,
    );
    let filter = SeccompFilter::new(
        rules,
        mismatch,
        seccompiler::SeccompAction::Allow,
        target_arch()?,
    )
    .map_err(|e| Error::Seccomp(e.to_string()))?;
    let prog: seccompiler::BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| Error::Seccomp(e.to_string()))?;
    Ok(Some(prog))
}

/// A second filter that makes `clone3` fail with `ENOSYS`, so that threads are created with
/// `clone`, whose flags the main filter can check.
pub(crate) fn build_clone3_filter() -> Result<seccompiler::BpfProgram, Error> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    rules.insert(libc::SYS_clone3, Vec::new());
    let filter = SeccompFilter::new(
        rules,
        seccompiler::SeccompAction::Allow,
        seccompiler::SeccompAction::Errno(libc::ENOSYS as u32),
        target_arch()?,
    )
    .map_err(|e| Error::Seccomp(e.to_string()))?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| Error::Seccomp(e.to_string()))
}

/// Installs the seccomp allow-list on every thread of the process (`SECCOMP_FILTER_FLAG_TSYNC`);
/// threads created later inherit it. Also sets `PR_SET_NO_NEW_PRIVS`.
///
/// A syscall outside the list kills the whole process ([`SeccompAction::Kill`]), is logged to
/// the kernel audit log and allowed ([`SeccompAction::Log`]), or raises `SIGSYS`
/// ([`SeccompAction::Trap`]). [`SeccompAction::None`] installs nothing.
pub fn install_seccomp(action: SeccompAction) -> Result<(), Error> {
    let Some(prog) = build_filter(action)? else {
        return Ok(());
    };
    let clone3 = build_clone3_filter()?;
    // The clone3 filter first: once the allow-list is in place, seccomp(2) itself is refused.
    seccompiler::apply_filter_all_threads(&clone3).map_err(|e| Error::Seccomp(e.to_string()))?;
    seccompiler::apply_filter_all_threads(&prog).map_err(|e| Error::Seccomp(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_build() {
        assert!(build_filter(SeccompAction::None).unwrap().is_none());
        for a in [SeccompAction::Kill, SeccompAction::Log, SeccompAction::Trap] {
            let p = build_filter(a).unwrap().unwrap();
            assert!(!p.is_empty());
            // The classic BPF program length limit.
            assert!(p.len() < 4096);
        }
        assert!(!build_clone3_filter().unwrap().is_empty());
    }

    #[test]
    fn list_has_no_duplicates() {
        let mut v: Vec<i64> = allowed_syscalls().iter().map(|x| x.1).collect();
        let n = v.len();
        v.sort();
        v.dedup();
        assert_eq!(v.len(), n);
        let names: Vec<&str> = allowed_syscalls().iter().map(|x| x.0).collect();
        for forbidden in [
            "SYS_ptrace",
            "SYS_kexec_load",
            "SYS_execve",
            "SYS_mount",
            "SYS_reboot",
        ] {
            assert!(
                !names.contains(&forbidden),
                "{forbidden} must not be allowed"
            );
        }
    }
}
