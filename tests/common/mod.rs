//! Helpers for tests that run the real `vhostfs` binary with `--fuse-mountpoint`.

#![allow(dead_code)]

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long to wait for anything the daemon does (generous: slow CI machines).
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// True when this process may mount FUSE file systems (root and /dev/fuse present).
pub fn can_mount() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && Path::new("/dev/fuse").exists()
}

/// A path as a C string.
pub fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

/// The current errno.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `Ok(r)` for a non-negative syscall result, `Err(errno)` otherwise.
pub fn sys<T: Into<i64> + Copy>(r: T) -> Result<i64, i32> {
    let v: i64 = r.into();
    if v < 0 {
        Err(errno())
    } else {
        Ok(v)
    }
}

/// Maps an `io::Result` to `Result<T, errno>`.
pub fn io<T>(r: std::io::Result<T>) -> Result<T, i32> {
    r.map_err(|e| e.raw_os_error().unwrap_or(-1))
}

/// `renameat2(2)` of `from` to `to` (both relative to the working directory) with `flags`.
pub fn renameat2(from: &Path, to: &Path, flags: u32) -> Result<i64, i32> {
    let (f, t) = (c(from), c(to));
    // SAFETY: both paths are valid NUL-terminated strings that outlive the call.
    sys(unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            flags,
        )
    })
}

/// Atomically exchanges `a` and `b` (`RENAME_EXCHANGE`) over and over until `stop` is set, as
/// a host racing the guest would; returns how many exchanges were made, or the errno of the
/// first that failed.
pub fn exchange_until(a: &Path, b: &Path, stop: &AtomicBool) -> Result<u64, i32> {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        renameat2(a, b, libc::RENAME_EXCHANGE)?;
        n += 1;
    }
    Ok(n)
}

/// True when `path` is a mount point of type `fuse.vhostfs` in this mount namespace.
pub fn is_vhostfs_mount(path: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines().any(|line| {
        let f: Vec<&str> = line.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-");
        f.get(4) == Some(&want.as_ref()) && sep.and_then(|i| f.get(i + 1)) == Some(&"fuse.vhostfs")
    })
}

/// Polls `f` every 20 ms until it returns true or [`TIMEOUT`] passes.
pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            eprintln!("timed out waiting for {what}");
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running daemon serving `share` at `mnt`, plus a plain host directory `reference` on
/// the same file system to compare against, and an `outside` directory that must never be
/// reachable through the mount.
pub struct Fixture {
    /// Holds everything; removed on drop.
    pub base: tempfile::TempDir,
    /// The shared directory.
    pub share: PathBuf,
    /// Where the share is mounted.
    pub mnt: PathBuf,
    /// A plain directory where the same operations run directly on the host.
    pub reference: PathBuf,
    /// Outside the share.
    pub outside: PathBuf,
    /// The daemon's stderr.
    pub log: PathBuf,
    child: Option<Child>,
}

impl Fixture {
    /// Starts `vhostfs --shared-dir SHARE --fuse-mountpoint MNT --sandbox none` plus `extra`
    /// and waits for the mount. `None` (test skipped) when we cannot mount.
    pub fn start(extra: &[&str]) -> Option<Fixture> {
        if !can_mount() {
            eprintln!("skipped: needs root and /dev/fuse");
            return None;
        }
        let base = tempfile::Builder::new()
            .prefix("vhostfs-test-")
            .tempdir()
            .expect("tempdir");
        let root = fs::canonicalize(base.path()).expect("canonicalize");
        let share = root.join("share");
        // The mount point sits one level deeper than the share, so that a relative symlink
        // like "../outside" means different things to the daemon (next to the share) and to
        // the kernel following it through the mount (next to the mount point).
        let mnt = root.join("m").join("mnt");
        let reference = root.join("ref");
        let outside = root.join("outside");
        for d in [&share, &mnt, &reference, &outside] {
            fs::create_dir_all(d).expect("mkdir");
        }
        let log = root.join("daemon.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vhostfs"));
        cmd.arg("--shared-dir")
            .arg(&share)
            .arg("--fuse-mountpoint")
            .arg(&mnt)
            .arg("--sandbox")
            .arg("none")
            .args(extra)
            .env("VHOSTFS_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("log file"));
        // SAFETY: prctl is async-signal-safe; the daemon gets SIGTERM (and unmounts) if the
        // test process dies before it can stop the daemon itself.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn vhostfs");
        let mut fx = Fixture {
            base,
            share,
            mnt,
            reference,
            outside,
            log,
            child: Some(child),
        };
        let mnt = fx.mnt.clone();
        let mut exited = None;
        let ok = wait_for("the mount", || {
            if let Some(st) = fx.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                exited = Some(st);
                return true;
            }
            is_vhostfs_mount(&mnt)
        });
        if let Some(st) = exited {
            panic!("vhostfs exited early ({st}):\n{}", fx.log_text());
        }
        assert!(ok, "vhostfs did not mount:\n{}", fx.log_text());
        // The first request waits for INIT; make sure the file system answers.
        if let Err(e) = fs::metadata(&fx.mnt) {
            panic!("stat of the mount failed: {e}\n{}", fx.log_text());
        }
        Some(fx)
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The daemon's pid.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// Waits for the daemon to exit on its own; `None` on timeout (the daemon is then killed).
    pub fn wait_exit(&mut self) -> Option<ExitStatus> {
        self.signal_and_wait(0)
    }

    /// Sends `sig` (none for 0) and waits for the daemon to exit; `None` on timeout (the
    /// daemon is then killed).
    pub fn signal_and_wait(&mut self, sig: i32) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if sig != 0 {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, sig) };
        }
        let mut status = None;
        wait_for("the daemon to exit", || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        status
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal_and_wait(libc::SIGTERM);
        }
        if is_vhostfs_mount(&self.mnt) {
            let p = c(&self.mnt);
            // SAFETY: umount2 with a valid C string.
            unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) };
        }
    }
}
