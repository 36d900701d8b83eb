//! Confinement of the daemon process (namespaces, chroot, capabilities, seccomp, rlimits).
//! Placeholder API; see the crate description.

use std::path::{Path, PathBuf};

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
}

/// Enters the sandbox; returns the path of the shared directory as seen from inside it.
pub fn enter(mode: SandboxMode, shared_dir: &Path) -> Result<PathBuf, Error> {
    let _ = mode;
    Ok(shared_dir.to_path_buf())
}

/// Installs the seccomp allow-list on every thread of the process.
pub fn install_seccomp(action: SeccompAction) -> Result<(), Error> {
    let _ = action;
    Ok(())
}
