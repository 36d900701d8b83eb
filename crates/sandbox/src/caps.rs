//! Linux capabilities: naming, the daemon's default set, and dropping everything else.

use std::fmt;
use std::io;

use crate::Error;

/// A Linux capability (its number, see capabilities(7)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cap(pub u8);

/// Capability names, indexed by number (without the `CAP_` prefix, lower case).
const NAMES: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

impl Cap {
    /// `CAP_CHOWN`: change file owners (SETATTR, creating files for other users).
    pub const CHOWN: Cap = Cap(0);
    /// `CAP_DAC_OVERRIDE`: bypass file permission checks (the guest kernel checks them).
    pub const DAC_OVERRIDE: Cap = Cap(1);
    /// `CAP_DAC_READ_SEARCH`: needed by `open_by_handle_at` (file-handle inodes).
    pub const DAC_READ_SEARCH: Cap = Cap(2);
    /// `CAP_FOWNER`: bypass owner checks (chmod, utimes, xattrs on others' files).
    pub const FOWNER: Cap = Cap(3);
    /// `CAP_FSETID`: keep set-id bits on write/chown.
    pub const FSETID: Cap = Cap(4);
    /// `CAP_SETGID`: `setfsgid`/`setresgid`/`setgroups` to act as the guest's caller.
    pub const SETGID: Cap = Cap(6);
    /// `CAP_SETUID`: `setfsuid`/`setresuid` to act as the guest's caller.
    pub const SETUID: Cap = Cap(7);
    /// `CAP_SETPCAP`: change the bounding set (needed while dropping capabilities).
    pub const SETPCAP: Cap = Cap(8);
    /// `CAP_LINUX_IMMUTABLE`: set the immutable / append-only inode flags.
    pub const LINUX_IMMUTABLE: Cap = Cap(9);
    /// `CAP_SYS_CHROOT`: `chroot`.
    pub const SYS_CHROOT: Cap = Cap(18);
    /// `CAP_SYS_ADMIN`: `trusted.*`/`security.*` xattrs, among much else.
    pub const SYS_ADMIN: Cap = Cap(21);
    /// `CAP_SYS_RESOURCE`: raise rlimits past the hard limit.
    pub const SYS_RESOURCE: Cap = Cap(24);
    /// `CAP_MKNOD`: create device nodes.
    pub const MKNOD: Cap = Cap(27);
    /// `CAP_LEASE`: file leases.
    pub const LEASE: Cap = Cap(28);
    /// `CAP_SETFCAP`: set `security.capability` xattrs.
    pub const SETFCAP: Cap = Cap(31);

    /// The capability's name in lower case without `CAP_` (e.g. `sys_admin`).
    pub fn name(self) -> Option<&'static str> {
        NAMES.get(usize::from(self.0)).copied()
    }

    /// Looks a capability up by name, case-insensitively, with or without the `cap_` prefix.
    pub fn from_name(name: &str) -> Option<Cap> {
        let lower = name.trim().to_ascii_lowercase();
        let bare = lower.strip_prefix("cap_").unwrap_or(&lower);
        NAMES
            .iter()
            .position(|n| *n == bare)
            .and_then(|i| u8::try_from(i).ok())
            .map(Cap)
    }
}

impl fmt::Display for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}"),
            None => write!(f, "cap{}", self.0),
        }
    }
}

/// The capabilities the daemon keeps by default (as virtiofsd): `chown`, `dac_override`,
/// `fowner`, `fsetid`, `setgid`, `setuid`, `mknod`, `setfcap`. Add `dac_read_search` when
/// inodes are file handles, and `sys_admin` for `trusted.*`/`security.*` xattrs without a
/// mapping (see [`modcaps`]).
pub fn default_capabilities() -> Vec<Cap> {
    vec![
        Cap::CHOWN,
        Cap::DAC_OVERRIDE,
        Cap::FOWNER,
        Cap::FSETID,
        Cap::SETGID,
        Cap::SETUID,
        Cap::MKNOD,
        Cap::SETFCAP,
    ]
}

/// Applies a `--modcaps` edit such as `+sys_admin:-mknod` to `base`.
///
/// Items are separated by `:` or `,`; each is a capability name preceded by `+` (add) or `-`
/// (remove).
pub fn modcaps(base: &[Cap], spec: &str) -> Result<Vec<Cap>, Error> {
    let mut caps: Vec<Cap> = base.to_vec();
    for item in spec.split([':', ',']).filter(|s| !s.trim().is_empty()) {
        let item = item.trim();
        let (add, name) = if let Some(n) = item.strip_prefix('+') {
            (true, n)
        } else if let Some(n) = item.strip_prefix('-') {
            (false, n)
        } else {
            return Err(Error::Caps(format!(
                "'{item}' must start with '+' or '-' (e.g. +sys_admin:-mknod)"
            )));
        };
        let cap = Cap::from_name(name)
            .ok_or_else(|| Error::Caps(format!("unknown capability '{name}'")))?;
        caps.retain(|c| *c != cap);
        if add {
            caps.push(cap);
        }
    }
    caps.sort();
    Ok(caps)
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u8>().ok())
        .unwrap_or(40)
        .min(63)
}

fn sys_err(what: &'static str) -> Error {
    Error::Sys {
        what,
        source: io::Error::last_os_error(),
    }
}

/// Reduces the calling thread's capabilities to `keep` (effective and permitted; inheritable
/// and ambient sets are cleared), and removes every other capability from the bounding set so
/// that no later `execve` can regain them.
///
/// Capabilities are per thread: call this before creating threads (threads inherit the sets).
/// Capabilities in `keep` that the process does not have are ignored (not an error), so that the
/// daemon also runs unprivileged, with reduced features.
pub fn drop_capabilities(keep: &[Cap]) -> Result<(), Error> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and data are valid, correctly sized version-3 structures.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) } != 0 {
        return Err(sys_err("capget"));
    }
    let mut want = [0u32; 2];
    for c in keep {
        if c.0 < 64 {
            want[usize::from(c.0 / 32)] |= 1 << (c.0 % 32);
        }
    }

    // Bounding set first: that needs CAP_SETPCAP, which we may be about to give up.
    let have_setpcap = data[0].effective & (1 << Cap::SETPCAP.0) != 0;
    if have_setpcap {
        for c in 0..=last_cap() {
            if want[usize::from(c / 32)] & (1 << (c % 32)) != 0 {
                continue;
            }
            let cap = libc::c_ulong::from(c);
            // SAFETY: prctl with integer arguments.
            let in_bset = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap, 0, 0, 0) };
            if in_bset == 1 {
                // SAFETY: prctl with integer arguments.
                if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
                    return Err(sys_err("prctl(PR_CAPBSET_DROP)"));
                }
            }
        }
    }
    // SAFETY: prctl with integer arguments. Fails with EINVAL on kernels without ambient
    // capabilities, where there is nothing to clear.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };

    for (i, d) in data.iter_mut().enumerate() {
        d.permitted &= want[i];
        d.effective = d.permitted;
        d.inheritable = 0;
    }
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: header and data are valid, correctly sized version-3 structures.
    if unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) } != 0 {
        return Err(sys_err("capset"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(Cap::from_name("sys_admin"), Some(Cap::SYS_ADMIN));
        assert_eq!(
            Cap::from_name("CAP_DAC_READ_SEARCH"),
            Some(Cap::DAC_READ_SEARCH)
        );
        assert_eq!(Cap::from_name("nope"), None);
        assert_eq!(Cap::SETFCAP.to_string(), "setfcap");
        assert_eq!(Cap::from_name("checkpoint_restore"), Some(Cap(40)));
        for (i, n) in NAMES.iter().enumerate() {
            assert_eq!(Cap::from_name(n), Some(Cap(i as u8)));
        }
    }

    #[test]
    fn modcaps_edits() {
        let caps = modcaps(
            &default_capabilities(),
            "+sys_admin:-mknod,+DAC_READ_SEARCH",
        )
        .unwrap();
        assert!(caps.contains(&Cap::SYS_ADMIN));
        assert!(caps.contains(&Cap::DAC_READ_SEARCH));
        assert!(!caps.contains(&Cap::MKNOD));
        assert!(caps.contains(&Cap::CHOWN));
        // Adding twice does not duplicate.
        let caps2 = modcaps(&caps, "+sys_admin").unwrap();
        assert_eq!(caps, caps2);
        assert!(modcaps(&caps, "sys_admin").is_err());
        assert!(modcaps(&caps, "+flying").is_err());
        assert_eq!(modcaps(&caps, "").unwrap(), caps);
    }
}
