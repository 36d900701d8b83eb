//! A directory of the share that the host keeps exchanging with a symlink to the outside
//! (`renameat2(RENAME_EXCHANGE)`) while the test driver sends LOOKUP, CREATE, MKDIR, OPENDIR
//! and READDIR into it, as a hostile guest racing the host would. Whatever node the daemon
//! hands out, nothing outside the share is read, listed or created.
//!
//! vhostfs is asserted; virtiofsd (when installed) runs the same race and its result is
//! printed for the comparison note.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vhostfs_driver::daemon::{DaemonSpec, VIRTIOFSD};
use vhostfs_driver::hostile::{SpawnedTarget, Target, SECRET};
use vhostfs_driver::DriverConfig;
use vhostfs_fuse_abi as abi;

/// What the driver saw during the race.
#[derive(Debug, Default)]
struct RaceReport {
    swaps: u64,
    saw_dir: u64,
    saw_symlink: u64,
    created: u64,
    /// Outside names or contents that came back to the driver.
    leaks: Vec<String>,
}

/// Exchanges `a` and `b` until `stop` is set; returns how many times.
fn swap_until(a: &Path, b: &Path, stop: &AtomicBool) -> u64 {
    let a = CString::new(a.as_os_str().as_bytes()).expect("path without NUL");
    let b = CString::new(b.as_os_str().as_bytes()).expect("path without NUL");
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: both paths are valid NUL-terminated strings that outlive the call.
        let r = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                a.as_ptr(),
                libc::AT_FDCWD,
                b.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        assert_eq!(r, 0, "renameat2: {}", std::io::Error::last_os_error());
        n += 1;
    }
    n
}

/// Runs the race against `t` for `duration`.
fn race(t: &mut SpawnedTarget, duration: Duration) -> Result<RaceReport, String> {
    let fx = t.fx().clone();
    let swap = fx.shared.join("swap");
    let alt = fx.shared.join("swap-alt");
    std::fs::create_dir_all(&swap).map_err(|e| e.to_string())?;
    std::fs::write(swap.join("inside"), b"inside\n").map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&alt);
    std::os::unix::fs::symlink(&fx.outside, &alt).map_err(|e| e.to_string())?;

    let mut d = t.connect().map_err(|e| format!("connect: {e}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, swap, alt) = (stop.clone(), swap.clone(), alt.clone());
        std::thread::spawn(move || swap_until(&swap, &alt, &stop))
    };
    let mut rep = RaceReport::default();
    let end = Instant::now() + duration;
    let mut i = 0u64;
    let mut outcome = Ok(());
    while Instant::now() < end {
        i += 1;
        let e = match d.lookup(abi::ROOT_ID, b"swap") {
            Ok(e) => e,
            Err(vhostfs_driver::Error::Errno(_)) => continue,
            Err(e) => {
                outcome = Err(format!("LOOKUP swap: {e}"));
                break;
            }
        };
        if e.attr.mode & libc::S_IFMT == libc::S_IFLNK {
            rep.saw_symlink += 1;
            if d.lookup(e.nodeid, b"secret").is_ok() {
                rep.leaks.push("LOOKUP through a symlink node".into());
            }
            continue;
        }
        rep.saw_dir += 1;
        // The node is the share's directory, wherever the host has moved it by now.
        if d.lookup(e.nodeid, b"secret").is_ok() {
            rep.leaks.push("LOOKUP of the outside's secret".into());
        }
        let name = format!("new-{i}");
        if d.create(e.nodeid, name.as_bytes(), 0o644, libc::O_RDWR as u32)
            .is_ok()
        {
            rep.created += 1;
        }
        let _ = d.mkdir(e.nodeid, format!("dir-{i}").as_bytes(), 0o755);
        if let Ok(o) = d.opendir(e.nodeid) {
            if let Ok(ents) = d.readdir(e.nodeid, o.fh, 0, 4096) {
                if ents.iter().any(|x| x.name == b"secret") {
                    rep.leaks.push("READDIR listed the outside".into());
                }
            }
            let _ = d.release(e.nodeid, o.fh, true);
        }
        if let Ok(f) = d.lookup(e.nodeid, b"inside") {
            if let Ok(o) = d.open(f.nodeid, libc::O_RDONLY as u32) {
                let data = d.read(f.nodeid, o.fh, 0, 4096).unwrap_or_default();
                if data.windows(SECRET.len()).any(|w| w == SECRET) {
                    rep.leaks.push("READ returned the outside's secret".into());
                }
                let _ = d.release(f.nodeid, o.fh, false);
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    rep.swaps = swapper.join().map_err(|_| "swapper panicked".to_string())?;
    // virtiofsd keeps a pid file next to its socket; that is not the guest's doing.
    for p in fx
        .escapes()
        .iter()
        .filter(|p| p.extension() != Some("pid".as_ref()))
    {
        rep.leaks
            .push(format!("created outside the share: {}", p.display()));
    }
    if std::fs::read(fx.outside.join("secret")).ok().as_deref() != Some(SECRET) {
        rep.leaks.push("the outside's secret changed".into());
    }
    outcome.map(|()| rep)
}

#[test]
fn directory_swapped_for_symlink_while_requests_run() {
    let spec = DaemonSpec::vhostfs(env!("CARGO_BIN_EXE_vhostfs"));
    let mut t = match SpawnedTarget::new(spec, DriverConfig::default()) {
        Ok(t) => t,
        Err(e) if e.is_not_implemented() => return,
        Err(e) => panic!("vhostfs failed to start: {e}"),
    };
    let rep = race(&mut t, Duration::from_secs(4)).expect("race against vhostfs");
    println!("vhostfs: {rep:?}");
    assert!(rep.leaks.is_empty(), "escaped the share: {:?}", rep.leaks);
    assert!(
        rep.swaps > 0 && rep.saw_dir > 0,
        "the race did not run: {rep:?}"
    );
    assert!(
        t.daemon().is_some_and(|d| d.is_alive()),
        "vhostfs died during the race"
    );

    if Path::new(VIRTIOFSD).exists() {
        match SpawnedTarget::new(
            DaemonSpec::virtiofsd_sandboxed(VIRTIOFSD),
            DriverConfig::default(),
        ) {
            Ok(mut v) => match race(&mut v, Duration::from_secs(4)) {
                Ok(r) => println!("virtiofsd: {r:?}"),
                Err(e) => println!("virtiofsd: {e}"),
            },
            Err(e) => println!("virtiofsd did not start: {e}"),
        }
    }
}
