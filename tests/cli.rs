//! The `vhostfs` binary's command line and lifecycle: exit codes and one-line errors, socket
//! creation (live socket refused, stale one replaced, group, inherited fd), serving one
//! frontend until it disconnects, and SIGTERM.

mod common;

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::wait_for;

fn vhostfs() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vhostfs"));
    cmd.env_remove("VHOSTFS_LOG").stdin(Stdio::null());
    // SAFETY: prctl is async-signal-safe; the daemon dies with the test.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd
}

/// Sandbox and seccomp settings the lifecycle tests run with (the last: the defaults).
const SANDBOX_SETTINGS: [&[&str]; 3] = [
    &["--sandbox=none", "--seccomp=none"],
    &["--sandbox=chroot"],
    &[],
];

/// A new temporary directory and the path of a socket `s.sock` in it.
fn socket_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s.sock");
    (dir, sock)
}

fn run(args: &[&str]) -> Output {
    vhostfs().args(args).output().expect("run vhostfs")
}

/// Asserts a failed run whose reason is one line (`vhostfs: error: ...`, the last line; any
/// lines before it are ordinary log lines), and returns that line.
fn one_line_error(out: &Output, code: i32) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "expected one error line, got: {err}");
    assert_eq!(err.lines().last(), Some(errors[0]), "{err}");
    assert!(errors[0].starts_with("vhostfs: error: "), "{err}");
    errors[0].to_string()
}

#[test]
fn print_capabilities_help_and_version() {
    let out = run(&["--print-capabilities"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(r#""type": "fs""#), "{text}");
    assert!(text.contains(r#""separate-options""#), "{text}");
    assert!(!text.contains("migrate-precopy"), "{text}");
    assert!(run(&["--help"]).status.success());
    let v = run(&["--version"]);
    assert!(v.status.success());
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("vhostfs "));
}

#[test]
fn bad_command_lines_fail_with_one_line() {
    let l = one_line_error(&run(&["--bogus"]), 2);
    assert!(l.contains("--bogus"), "{l}");
    let l = one_line_error(
        &run(&["--shared-dir=/tmp", "--cache=sometimes", "--fd=3"]),
        2,
    );
    assert!(l.contains("sometimes"), "{l}");
    let l = one_line_error(&run(&["--socket-path=/tmp/x.sock"]), 2);
    assert!(l.contains("--shared-dir"), "{l}");
    let l = one_line_error(&run(&["--socket-path=/tmp/x", "-o", "source=/tmp,frob"]), 2);
    assert!(l.contains("frob"), "{l}");
    // Capability edits are checked before any socket is touched.
    let l = one_line_error(&run(&["--shared-dir=/tmp", "--fd=3", "--modcaps=chown"]), 1);
    assert!(l.contains("modcaps"), "{l}");
    let l = one_line_error(
        &run(&["--shared-dir=/tmp", "--fd=3", "--modcaps=-nosuchcap"]),
        1,
    );
    assert!(l.contains("nosuchcap"), "{l}");
}

#[test]
fn bad_shared_dir_fails_with_one_line() {
    let (dir, sock) = socket_dir();
    let missing = dir.path().join("missing");
    let args = |shared: &Path| {
        vec![
            format!("--shared-dir={}", shared.display()),
            format!("--socket-path={}", sock.display()),
            "--sandbox=none".to_string(),
            "--seccomp=none".to_string(),
        ]
    };
    let out = vhostfs().args(args(&missing)).output().unwrap();
    let l = one_line_error(&out, 1);
    assert!(l.contains("missing"), "{l}");
    let file = dir.path().join("file");
    fs::write(&file, b"x").unwrap();
    let out = vhostfs().args(args(&file)).output().unwrap();
    let l = one_line_error(&out, 1);
    assert!(l.contains("not a directory"), "{l}");
    assert!(!sock.exists(), "no socket may be left behind");
}

#[test]
fn live_socket_is_refused() {
    let (dir, sock) = socket_dir();
    let _live = UnixListener::bind(&sock).unwrap();
    let out = vhostfs()
        .arg(format!("--shared-dir={}", dir.path().display()))
        .arg(format!("--socket-path={}", sock.display()))
        .args(["--sandbox=none", "--seccomp=none"])
        .output()
        .unwrap();
    let l = one_line_error(&out, 1);
    assert!(l.contains("in use"), "{l}");
    assert!(sock.exists(), "the live socket must stay");
}

struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn spawn(mut cmd: Command, log: PathBuf) -> Daemon {
        cmd.env("VHOSTFS_LOG", "info")
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap());
        Daemon {
            child: cmd.spawn().unwrap(),
            log,
        }
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the daemon says it waits for a frontend.
    fn wait_ready(&mut self) {
        let log = self.log.clone();
        let child = &mut self.child;
        let ok = wait_for("the daemon to listen", || {
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "daemon exited early ({st}): {}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
            fs::read_to_string(&log).is_ok_and(|l| l.contains("waiting for a vhost-user frontend"))
        });
        assert!(ok, "{}", self.log_text());
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut status = None;
        let child = &mut self.child;
        wait_for("the daemon to exit", || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        match status {
            Some(s) => s,
            None => {
                let _ = self.child.kill();
                panic!("daemon did not exit: {}", self.log_text());
            }
        }
    }

    /// Waits for the daemon to exit, and asserts that it exited with status 0 and removed
    /// its socket `sock` (run with the arguments `extra`, for the messages).
    fn assert_clean_exit(&mut self, sock: &Path, extra: &[&str]) {
        let status = self.wait_exit();
        assert!(status.success(), "{extra:?}: {status}: {}", self.log_text());
        assert!(!sock.exists(), "{extra:?}: socket left behind");
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn socket_daemon(shared: &Path, sock: &Path, extra: &[&str], log: PathBuf) -> Daemon {
    let mut cmd = vhostfs();
    cmd.arg(format!("--shared-dir={}", shared.display()))
        .arg(format!("--socket-path={}", sock.display()))
        .args(extra);
    Daemon::spawn(cmd, log)
}

#[test]
fn serves_one_frontend_then_exits_zero_and_removes_the_socket() {
    if !common::can_mount() {
        return;
    }
    for extra in SANDBOX_SETTINGS {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("share");
        fs::create_dir(&shared).unwrap();
        fs::write(shared.join("hello"), b"hi").unwrap();
        let sock = dir.path().join("s.sock");
        // A stale socket (nobody listening) is replaced.
        drop(UnixListener::bind(&sock).unwrap());
        let mut d = socket_daemon(&shared, &sock, extra, dir.path().join("log"));
        d.wait_ready();
        assert!(fs::symlink_metadata(&sock).unwrap().file_type().is_socket());
        {
            let mut drv = match vhostfs_driver::Driver::connect(&sock, Default::default()) {
                Ok(drv) => drv,
                Err(e) => panic!("{extra:?}: connect: {e}\n{}", d.log_text()),
            };
            drv.init()
                .unwrap_or_else(|e| panic!("{extra:?}: INIT: {e}\n{}", d.log_text()));
            let entry = drv
                .lookup(1, b"hello")
                .unwrap_or_else(|e| panic!("{extra:?}: LOOKUP: {e}\n{}", d.log_text()));
            assert_eq!(entry.attr.size, 2);
        }
        d.assert_clean_exit(&sock, extra);
    }
}

#[test]
fn sigterm_while_waiting_removes_the_socket() {
    if !common::can_mount() {
        return;
    }
    for extra in SANDBOX_SETTINGS {
        let (dir, sock) = socket_dir();
        let mut d = socket_daemon(dir.path(), &sock, extra, dir.path().join("log"));
        d.wait_ready();
        d.signal(libc::SIGTERM);
        d.assert_clean_exit(&sock, extra);
    }
}

#[test]
fn socket_group_and_legacy_options() {
    if !common::can_mount() {
        return;
    }
    let (dir, sock) = socket_dir();
    let mut cmd = vhostfs();
    cmd.arg(format!("--socket={}", sock.display()))
        .arg("-o")
        .arg(format!(
            "source={},cache=none,no_xattr,sandbox=none,flock",
            dir.path().display()
        ))
        .args(["-f", "--seccomp=none", "--socket-group=nogroup"]);
    let mut d = Daemon::spawn(cmd, dir.path().join("log"));
    d.wait_ready();
    let meta = fs::metadata(&sock).unwrap();
    assert_eq!(meta.gid(), 65534);
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    let log = d.log_text();
    assert!(log.contains("--socket is deprecated"), "{log}");
    assert!(log.contains("-o flock has no effect"), "{log}");
    d.signal(libc::SIGINT);
    assert!(d.wait_exit().success());
}

#[test]
fn inherited_listening_fd() {
    if !common::can_mount() {
        return;
    }
    let (dir, sock) = socket_dir();
    let listener = UnixListener::bind(&sock).unwrap();
    let raw = listener.as_raw_fd();
    let mut cmd = vhostfs();
    cmd.arg(format!("--shared-dir={}", dir.path().display()))
        .args(["--fd=3", "--sandbox=none", "--seccomp=none"]);
    // SAFETY: dup2 is async-signal-safe; it puts the listener at fd 3 without CLOEXEC.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself keeps FD_CLOEXEC: clear it explicitly.
            if (raw != 3 && libc::dup2(raw, 3) < 0) || libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut d = Daemon::spawn(cmd, dir.path().join("log"));
    d.wait_ready();
    drop(listener);
    {
        let mut drv = vhostfs_driver::Driver::connect(&sock, Default::default())
            .unwrap_or_else(|e| panic!("connect: {e}\n{}", d.log_text()));
        drv.init().unwrap();
    }
    assert!(d.wait_exit().success(), "{}", d.log_text());
    // We did not create the socket file, so we leave it.
    assert!(sock.exists());
}

/// Every long option virtiofsd 1.14 knows is known to us too (when virtiofsd is installed for
/// comparison; see the README).
#[test]
fn every_virtiofsd_option_is_known() {
    let virtiofsd =
        std::env::var("VIRTIOFSD").unwrap_or_else(|_| "/opt/virtiofsd/bin/virtiofsd".into());
    let Ok(theirs) = Command::new(&virtiofsd).arg("--help").output() else {
        eprintln!("skipped: {virtiofsd} not installed");
        return;
    };
    let ours = run(&["--help"]);
    let ours = String::from_utf8_lossy(&ours.stdout).into_owned();
    let theirs = String::from_utf8_lossy(&theirs.stdout).into_owned();
    let options = |text: &str| -> std::collections::BTreeSet<String> {
        text.split(|c: char| c.is_whitespace() || c == '=' || c == '[' || c == ',')
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(|w| {
                w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                    .to_string()
            })
            .collect()
    };
    let missing: Vec<String> = options(&theirs)
        .difference(&options(&ours))
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "virtiofsd options we do not know: {missing:?}"
    );
}

#[test]
fn fuse_mountpoint_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let shared = format!("--shared-dir={}", dir.path().display());
    let missing = format!("--fuse-mountpoint={}", dir.path().join("missing").display());
    let l = one_line_error(&run(&[&shared, &missing]), 1);
    assert!(l.contains("missing"), "{l}");
    let here = format!("--fuse-mountpoint={}", dir.path().display());
    let l = one_line_error(&run(&[&shared, &here, "--sandbox=chroot"]), 2);
    assert!(l.contains("--sandbox none"), "{l}");
}
