//! `enter()` in namespace and chroot mode, in child processes: afterwards `/` is the shared
//! directory, `/proc/self/fd` is still usable through `proc_self_fd()`, the daemon is pid 1 of
//! its pid namespace, and the supervisor forwards `SIGTERM` and propagates the exit status.
//!
//! The test binary re-executes itself with `--child <case> <dir>`.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use vhostfs_sandbox::{
    default_capabilities, drop_capabilities, enter, install_seccomp, proc_self_fd, SandboxMode,
    SeccompAction,
};

/// Checks the view from inside; returns a distinct code per failed check.
fn check_inside() -> i32 {
    if !Path::new("/marker").exists() {
        return 10;
    }
    if Path::new("/etc/passwd").exists() || Path::new("/usr").exists() {
        return 11;
    }
    let pfd = match proc_self_fd() {
        Ok(fd) => fd,
        Err(_) => return 12,
    };
    let f = match fs::File::open("/marker") {
        Ok(f) => f,
        Err(_) => return 13,
    };
    let name = std::ffi::CString::new(f.as_raw_fd().to_string()).unwrap();
    let mut buf = [0u8; 256];
    // SAFETY: valid descriptor, name and buffer.
    let n = unsafe {
        libc::readlinkat(
            pfd.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr() as *mut _,
            buf.len(),
        )
    };
    if n < 0 || &buf[..n as usize] != b"/marker" {
        eprintln!(
            "readlink gave {:?}",
            String::from_utf8_lossy(&buf[..n.max(0) as usize])
        );
        return 14;
    }
    // Reopen the file through /proc/self/fd, as the passthrough does with O_PATH handles.
    // SAFETY: valid descriptor and name.
    let re = unsafe {
        libc::openat(
            pfd.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if re < 0 {
        return 15;
    }
    // SAFETY: `re` is ours.
    unsafe { libc::close(re) };
    0
}

/// The calling thread's effective capability set.
fn effective_caps() -> Option<u64> {
    let mut hdr = [0x2008_0522u32, 0];
    let mut data = [0u32; 6];
    // SAFETY: version-3 header and room for two data structs (3 x u32 each).
    let rc = unsafe { libc::syscall(libc::SYS_capget, hdr.as_mut_ptr(), data.as_mut_ptr()) };
    (rc == 0).then(|| u64::from(data[0]) | (u64::from(data[3]) << 32))
}

fn child(case: &str, dir: &Path) -> i32 {
    match case {
        "namespace" => {
            let inside = match enter(SandboxMode::Namespace, dir) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("enter: {e}");
                    return 20;
                }
            };
            if inside != Path::new("/") {
                return 21;
            }
            // SAFETY: no preconditions.
            if unsafe { libc::getpid() } != 1 {
                return 22;
            }
            let rc = check_inside();
            if rc != 0 {
                return rc;
            }
            // Full confinement must still leave a working process.
            if drop_capabilities(&default_capabilities()).is_err() {
                return 23;
            }
            let want: u64 = default_capabilities().iter().map(|c| 1u64 << c.0).sum();
            if effective_caps() != Some(want) {
                eprintln!("effective caps {:x?}, want {want:x}", effective_caps());
                return 26;
            }
            if install_seccomp(SeccompAction::Kill).is_err() {
                return 24;
            }
            if fs::write("/written-inside", b"x").is_err() {
                return 25;
            }
            7 // A distinctive status that the supervisor must propagate.
        }
        "namespace-sleep" => {
            if enter(SandboxMode::Namespace, dir).is_err() {
                return 20;
            }
            fs::write("/ready", b"").unwrap();
            std::thread::sleep(Duration::from_secs(30));
            0
        }
        "namespace-sigwait" => {
            // A daemon that blocks SIGTERM and waits for it keeps receiving it.
            let mut set = nix::sys::signal::SigSet::empty();
            set.add(nix::sys::signal::Signal::SIGTERM);
            set.thread_block().unwrap();
            if enter(SandboxMode::Namespace, dir).is_err() {
                return 20;
            }
            fs::write("/ready", b"").unwrap();
            match set.wait() {
                Ok(nix::sys::signal::Signal::SIGTERM) => 42,
                _ => 40,
            }
        }
        "chroot" => {
            if enter(SandboxMode::Chroot, dir).ok().as_deref() != Some(Path::new("/")) {
                return 30;
            }
            let rc = check_inside();
            if rc != 0 {
                return rc;
            }
            0
        }
        _ => 2,
    }
}

fn shared_dir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("sandbox-test")
        .tempdir()
        .unwrap();
    fs::write(d.path().join("marker"), b"m").unwrap();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o777)).unwrap();
    d
}

/// The command that runs `case` of [`child`] on the shared directory `dir`.
fn child_command(exe: &Path, case: &str, dir: &Path) -> Command {
    let mut c = Command::new(exe);
    c.args(["--child", case]).arg(dir);
    c
}

/// Runs `case` (which writes `/ready` once it is set up inside the sandbox) on a new shared
/// directory, sends it `SIGTERM` when it is ready (or after 10 s), and returns its exit status
/// and how long it ran.
fn terminate_when_ready(exe: &Path, case: &str) -> (ExitStatus, Duration) {
    let d = shared_dir();
    let mut c = child_command(exe, case, d.path()).spawn().unwrap();
    let start = Instant::now();
    while !d.path().join("ready").exists() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    let st = c.wait().unwrap();
    (st, start.elapsed())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let case = args.get(i + 1).cloned().unwrap_or_default();
        let dir = args.get(i + 2).cloned().unwrap_or_default();
        std::process::exit(child(&case, Path::new(&dir)));
    }
    let exe = std::env::current_exe().unwrap();
    let mut failed = 0;
    let mut report = |ok: bool, what: &str| {
        println!("{}: {what}", if ok { "ok" } else { "FAIL" });
        if !ok {
            failed += 1;
        }
    };

    // SAFETY: no preconditions.
    let root = unsafe { libc::geteuid() } == 0;

    let d = shared_dir();
    let st = child_command(&exe, "namespace", d.path()).status().unwrap();
    report(
        st.code() == Some(7) && d.path().join("written-inside").exists(),
        &format!("namespace mode: / is the shared dir, pid 1, /proc/self/fd usable, caps+seccomp ({st:?})"),
    );

    if root {
        // The same as an unprivileged user: a user namespace is created first.
        let d = shared_dir();
        let st = child_command(&exe, "namespace", d.path())
            .uid(65534)
            .gid(65534)
            .status()
            .unwrap();
        if st.code() == Some(20) {
            println!("skip: unprivileged user namespaces are not available here");
        } else {
            report(
                st.code() == Some(7),
                &format!("namespace mode as uid 65534 (user namespace) ({st:?})"),
            );
        }
    }

    let (st, took) = terminate_when_ready(&exe, "namespace-sleep");
    report(
        st.code() == Some(128 + libc::SIGTERM) && took < Duration::from_secs(10),
        &format!("supervisor forwards SIGTERM to pid 1 ({st:?})"),
    );

    let (st, _) = terminate_when_ready(&exe, "namespace-sigwait");
    report(
        st.code() == Some(42),
        &format!("a daemon blocking SIGTERM receives it with sigwait ({st:?})"),
    );

    if root {
        let d = shared_dir();
        let st = child_command(&exe, "chroot", d.path()).status().unwrap();
        report(st.code() == Some(0), &format!("chroot mode ({st:?})"));
    }

    if failed > 0 {
        std::process::exit(1);
    }
}
