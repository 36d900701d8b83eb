//! Hostile-guest tests: a vhost-user frontend of our own (crates/driver) sends malformed
//! descriptor chains and FUSE requests to the `vhostfs` binary and checks that it answers
//! with an error or drops the request, and then keeps serving; that resources stay bounded
//! over 100,000 hostile requests; and that no request reaches a host path outside the share,
//! also while the host races the requests by swapping a directory for a symlink.
//!
//! When virtiofsd is installed at /opt/virtiofsd/bin/virtiofsd, the same scenarios are run
//! against it and a comparison table is printed (run with `--nocapture` to see it); virtiofsd's
//! results are recorded, not asserted.
//!
//! If the `vhostfs` binary reports that the vhost-user transport is not implemented, the tests
//! print why and return early.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::exchange_until;

use vhostfs_driver::daemon::{DaemonSpec, VIRTIOFSD};
use vhostfs_driver::driver::{HIPRIO_QUEUE, REQUEST_QUEUE};
use vhostfs_driver::hostile::{self, Health, SpawnedTarget, Target, SECRET};
use vhostfs_driver::{ChainBuilder, DriverConfig, Error};
use vhostfs_fuse_abi as abi;

const WAIT: Duration = Duration::from_millis(300);

fn vhostfs_spec() -> DaemonSpec {
    DaemonSpec::vhostfs(env!("CARGO_BIN_EXE_vhostfs"))
}

/// Spawns vhostfs with the default driver configuration as changed by `tweak`, or explains
/// why the test cannot run (stub binary) and returns None.
fn spawn_vhostfs(tweak: impl FnOnce(&mut DriverConfig)) -> Option<SpawnedTarget> {
    let mut cfg = DriverConfig::default();
    tweak(&mut cfg);
    match SpawnedTarget::new(vhostfs_spec(), cfg) {
        Ok(t) => Some(t),
        Err(e) if e.is_not_implemented() => {
            println!("SKIP: vhostfs is not wired up yet: {e}");
            None
        }
        Err(e) => panic!("vhostfs failed to start: {e}"),
    }
}

fn virtiofsd_present() -> Option<PathBuf> {
    let p = PathBuf::from(VIRTIOFSD);
    if p.exists() {
        Some(p)
    } else {
        println!("NOTE: {VIRTIOFSD} not installed; virtiofsd column skipped");
        None
    }
}

/// Panics, listing them, if any of `recs` did not pass; `who` names the backend.
fn assert_all_passed(who: &str, recs: &[hostile::Record]) {
    let failed: Vec<String> = recs
        .iter()
        .filter(|r| !r.passed())
        .map(|r| format!("{}: {}", r.name, r.summary()))
        .collect();
    assert!(
        failed.is_empty(),
        "{who} failed hostile scenarios:\n{}",
        failed.join("\n")
    );
}

/// Every scenario of the catalogue against vhostfs (asserted) and virtiofsd (recorded).
#[test]
fn hostile_catalogue() {
    let Some(mut t) = spawn_vhostfs(|_| {}) else {
        return;
    };
    let scenarios = hostile::catalogue();
    let ours = hostile::run(&mut t, &scenarios, WAIT);
    let mut labels = vec![format!("vhostfs ({} spawns)", t.spawns())];
    let mut results = vec![ours.clone()];
    // The production configuration: our namespace sandbox. Asserted the same way.
    let breakers = scenarios.iter().filter(|s| s.breaks_queue).count() as u32;
    match SpawnedTarget::new(
        DaemonSpec::vhostfs_sandboxed(env!("CARGO_BIN_EXE_vhostfs")),
        DriverConfig::default(),
    ) {
        Ok(mut ns) => {
            let recs = hostile::run(&mut ns, &scenarios, WAIT);
            labels.push(format!("vhostfs-ns ({} spawns)", ns.spawns()));
            assert_all_passed("sandboxed vhostfs", &recs);
            assert!(ns.spawns() <= 1 + breakers);
            results.push(recs);
        }
        Err(e) => println!("NOTE: vhostfs with its namespace sandbox did not start: {e}"),
    }
    if let Some(bin) = virtiofsd_present() {
        // Its default configuration; `vhostfs-driver compare` also runs it with --sandbox none.
        match SpawnedTarget::new(
            DaemonSpec::virtiofsd_sandboxed(&bin),
            DriverConfig::default(),
        ) {
            Ok(mut v) => {
                let recs = hostile::run(&mut v, &scenarios, WAIT);
                labels.push(format!("virtiofsd ({} spawns)", v.spawns()));
                results.push(recs);
            }
            Err(e) => println!("NOTE: virtiofsd did not start: {e}"),
        }
    }
    println!("{}", hostile::table(&labels, &results));

    assert_all_passed("vhostfs", &ours);
    for r in &ours {
        assert!(
            !matches!(r.health, Health::Dead(_) | Health::Degraded(_)),
            "{}: {}",
            r.name,
            r.health
        );
    }
    // Only the queue-breaking scenarios may cost a reconnect.
    assert!(
        t.spawns() <= 1 + breakers,
        "vhostfs was respawned {} times",
        t.spawns()
    );
}

/// A queue the guest broke may stop, but the daemon must not spin on it.
#[test]
fn broken_queue_does_not_spin() {
    let Some(mut t) = spawn_vhostfs(|_| {}) else {
        return;
    };
    let mut d = t.connect().expect("connect");
    let (idx, n) = {
        let q = d.queue(REQUEST_QUEUE).unwrap();
        (q.avail_idx(), q.layout.size)
    };
    d.set_avail_idx_raw(REQUEST_QUEUE, idx.wrapping_add(n).wrapping_add(1))
        .unwrap();
    d.kick(REQUEST_QUEUE).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let daemon = t.daemon().expect("daemon");
    let before = daemon.cpu_ticks().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let after = daemon.cpu_ticks().unwrap();
    assert!(daemon.is_alive(), "vhostfs died on a broken avail index");
    // clock ticks are 1/100 s: allow 20% of one core.
    assert!(
        after - before < 20,
        "vhostfs burns CPU on a broken queue: {} ticks/s",
        after - before
    );
    // The hiprio queue is independent and keeps working.
    assert!(d
        .forget(0x7fff_0000_0000_0001, 1, Duration::from_secs(3))
        .unwrap());
    let _ = HIPRIO_QUEUE;
}

/// 100,000 hostile requests: no crash, no hang, fds and memory bounded.
#[test]
fn hostile_volume_bounded_resources() {
    let Some(mut t) = spawn_vhostfs(|_| {}) else {
        return;
    };
    let mut d = t.connect().expect("connect");
    // Warm up allocator pools and caches before the baseline.
    hostile::hammer(&mut d, 5_000, 64).expect("warm-up hammer");
    let daemon = t.daemon().expect("daemon");
    let fds0 = daemon.fd_count().unwrap();
    let rss0 = daemon.rss_kib().unwrap();
    let start = Instant::now();
    let st = hostile::hammer(&mut d, 100_000, 64).expect("hammer");
    let elapsed = start.elapsed();
    let daemon = t.daemon().expect("daemon");
    assert!(daemon.is_alive());
    let fds1 = daemon.fd_count().unwrap();
    let rss1 = daemon.rss_kib().unwrap();
    println!("vhostfs: {st:?} in {elapsed:?}; fds {fds0} -> {fds1}; RSS {rss0} KiB -> {rss1} KiB");
    assert_eq!(st.sent, 100_000);
    assert!(
        st.probes >= 100_000 / 64,
        "every batch was followed by an answered probe"
    );
    assert!(
        fds1.abs_diff(fds0) <= 2,
        "fd count moved from {fds0} to {fds1}"
    );
    assert!(
        rss1 < rss0 + 20 * 1024,
        "RSS grew from {rss0} KiB to {rss1} KiB"
    );
    // Still serving well-formed requests afterwards.
    assert_eq!(
        d.getattr(abi::ROOT_ID).unwrap().attr.mode & libc::S_IFMT,
        libc::S_IFDIR
    );

    // For the comparison note: what virtiofsd does with the same stream.
    if let Some(bin) = virtiofsd_present() {
        if let Ok(mut v) = SpawnedTarget::new(DaemonSpec::virtiofsd(bin), DriverConfig::default()) {
            match v.connect() {
                Ok(mut vd) => match hostile::hammer(&mut vd, 10_000, 64) {
                    Ok(s) => println!("virtiofsd: {s:?}"),
                    Err(e) => println!(
                        "virtiofsd: stopped serving during the hostile stream: {e}; alive: {}",
                        v.daemon().map(|d| d.is_alive()).unwrap_or(false)
                    ),
                },
                Err(e) => println!("virtiofsd: cannot connect: {e}"),
            }
        }
    }
}

/// A guest that never sends FORGET: repeated lookups of the same names must not grow the
/// daemon's memory or fds without bound.
#[test]
fn lookups_without_forget_are_bounded() {
    let Some(mut t) = spawn_vhostfs(|_| {}) else {
        return;
    };
    let mut d = t.connect().expect("connect");
    for _ in 0..250 {
        for name in [&b"hello"[..], b"sub", b"..", b"escape_file"] {
            d.lookup(abi::ROOT_ID, name).unwrap();
        }
    }
    let daemon = t.daemon().expect("daemon");
    let fds0 = daemon.fd_count().unwrap();
    let rss0 = daemon.rss_kib().unwrap();
    let mut nodes = std::collections::HashSet::new();
    for i in 0..50_000 {
        let name: &[u8] = match i % 4 {
            0 => b"hello",
            1 => b"sub",
            2 => b"..",
            _ => b"escape_file",
        };
        nodes.insert(d.lookup(abi::ROOT_ID, name).unwrap().nodeid);
    }
    let daemon = t.daemon().expect("daemon");
    let fds1 = daemon.fd_count().unwrap();
    let rss1 = daemon.rss_kib().unwrap();
    println!(
        "50,000 lookups: {} distinct nodes; fds {fds0} -> {fds1}; RSS {rss0} -> {rss1} KiB",
        nodes.len()
    );
    assert!(nodes.len() <= 4, "same names gave {} node ids", nodes.len());
    assert!(fds1.abs_diff(fds0) <= 2);
    assert!(rss1 < rss0 + 8 * 1024);
}

/// Escape attempts, asserted one by one with the typed helpers.
#[test]
fn escape_attempts_stay_inside_the_share() {
    let Some(mut t) = spawn_vhostfs(|_| {}) else {
        return;
    };
    let fx = t.fx().clone();
    let mut d = t.connect().expect("connect");
    let root = d.getattr(abi::ROOT_ID).unwrap().attr.ino;

    // '..' at the root is the root.
    let up = d.lookup(abi::ROOT_ID, b"..").unwrap();
    assert_eq!(up.attr.ino, root);
    // '..' from a subdirectory never goes above the root.
    let sub = d.lookup(abi::ROOT_ID, b"sub").unwrap();
    let subup = d.lookup(sub.nodeid, b"..").unwrap();
    assert_eq!(subup.attr.ino, root);
    assert_eq!(d.lookup(subup.nodeid, b"..").unwrap().attr.ino, root);

    // Names with '/' are refused.
    assert!(d.lookup(abi::ROOT_ID, b"sub/inner").is_err());
    assert!(d.lookup(abi::ROOT_ID, b"../outside").is_err());
    assert!(d.mkdir(abi::ROOT_ID, b"../made", 0o755).is_err());
    assert!(d
        .create(abi::ROOT_ID, b"../made2", 0o644, libc::O_RDWR as u32)
        .is_err());

    // Symlinks planted on the host are not followed.
    let l = d.lookup(abi::ROOT_ID, b"escape_dir").unwrap();
    assert_eq!(l.attr.mode & libc::S_IFMT, libc::S_IFLNK);
    assert!(d.lookup(l.nodeid, b"secret").is_err());
    let f = d.lookup(abi::ROOT_ID, b"escape_file").unwrap();
    match d.open(f.nodeid, libc::O_RDONLY as u32) {
        Err(_) => {}
        Ok(o) => {
            let data = d.read(f.nodeid, o.fh, 0, 4096).unwrap_or_default();
            assert!(
                !data.windows(SECRET.len()).any(|w| w == SECRET),
                "read a file outside the share"
            );
        }
    }
    // READLINK returns the link text; it is the guest kernel's job to resolve it in the guest.
    assert_eq!(
        d.readlink(f.nodeid).unwrap(),
        fx.outside.join("secret").as_os_str().as_encoded_bytes()
    );

    // Forged node ids and handles are errors.
    assert!(matches!(d.getattr(0xdead_beef), Err(Error::Errno(_))));
    assert!(matches!(d.getattr(0), Err(Error::Errno(_))));
    assert!(matches!(
        d.lookup(0x1234_5678, b"hello"),
        Err(Error::Errno(_))
    ));
    let h = d.lookup(abi::ROOT_ID, b"hello").unwrap();
    assert!(matches!(
        d.read(h.nodeid, 0xdead_beef, 0, 16),
        Err(Error::Errno(_))
    ));
    assert!(matches!(
        d.write(h.nodeid, 0xdead_beef, 0, b"x"),
        Err(Error::Errno(_))
    ));

    assert!(
        fx.escapes().is_empty(),
        "created outside the share: {:?}",
        fx.escapes()
    );
}

/// Fill a 1024-entry ring many times over: every request answered.
#[test]
fn flood_large_ring() {
    let Some(mut t) = spawn_vhostfs(|c| c.queue_size = 1024) else {
        return;
    };
    let mut d = t.connect().expect("connect");
    let mut answered = 0;
    for _ in 0..10 {
        let mut heads = Vec::new();
        for _ in 0..512 {
            let u = d.next_unique();
            let r =
                vhostfs_driver::fuse::encode(abi::opcode::GETATTR, u, abi::ROOT_ID, &[&[0u8; 16]]);
            heads.push(
                d.submit_nokick(
                    REQUEST_QUEUE,
                    &ChainBuilder::new().readable(&r).writable(256),
                )
                .unwrap(),
            );
        }
        d.kick(REQUEST_QUEUE).unwrap();
        for h in heads {
            let c = d
                .wait(REQUEST_QUEUE, h, Duration::from_secs(10))
                .unwrap()
                .expect("flooded request answered");
            assert_eq!(vhostfs_driver::Reply::parse(&c).unwrap().header.error, 0);
            answered += 1;
        }
    }
    assert_eq!(answered, 5120);
}

/// Every request queue is served, and a malformed chain on one does not disturb the other.
#[test]
fn second_request_queue_serves() {
    let Some(mut t) = spawn_vhostfs(|c| c.request_queues = 2) else {
        return;
    };
    let mut d = t.connect().expect("vhostfs offers two request queues");
    let q2 = REQUEST_QUEUE + 1;
    let getattr = |d: &mut vhostfs_driver::Driver, q: usize| {
        let u = d.next_unique();
        let r = vhostfs_driver::fuse::encode(abi::opcode::GETATTR, u, abi::ROOT_ID, &[&[0u8; 16]]);
        d.fuse_chain(q, &ChainBuilder::new().readable(&r).writable(256))
            .and_then(|r| r.ok())
    };
    getattr(&mut d, q2).expect("GETATTR on the second request queue");
    // Garbage on queue 2, then both queues still answer.
    let end = d.mem().end();
    let head = d
        .submit(
            q2,
            &ChainBuilder::new()
                .readable_at(end + 4096, 56)
                .writable(256),
        )
        .unwrap();
    let _ = d.wait(q2, head, WAIT).unwrap();
    getattr(&mut d, REQUEST_QUEUE).expect("queue 1 after garbage on queue 2");
    getattr(&mut d, q2).expect("queue 2 after garbage on queue 2");
}

/// Guest RAM split into two adjacent regions (as with hot-plugged DIMMs): requests, replies
/// and READ data that straddle the boundary are served intact.
#[test]
fn buffers_straddling_memory_regions() {
    let Some(mut t) = spawn_vhostfs(|c| c.mem_regions = 2) else {
        return;
    };
    let scenarios: Vec<_> = hostile::catalogue()
        .into_iter()
        .filter(|s| s.name == "cross-region-buffers")
        .collect();
    assert_eq!(scenarios.len(), 1);
    let recs = hostile::run(&mut t, &scenarios, WAIT);
    println!("{}: {}", recs[0].name, recs[0].summary());
    assert!(recs[0].passed(), "{}", recs[0].summary());
    assert!(
        matches!(recs[0].outcome, hostile::Outcome::Success(_)),
        "the scenario must not be skipped with two regions"
    );
}

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
        std::thread::spawn(move || exchange_until(&swap, &alt, &stop))
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
    rep.swaps = swapper
        .join()
        .map_err(|_| "swapper panicked".to_string())?
        .map_err(|e| format!("renameat2(RENAME_EXCHANGE): errno {e}"))?;
    for p in fx.escapes() {
        rep.leaks
            .push(format!("created outside the share: {}", p.display()));
    }
    if std::fs::read(fx.outside.join("secret")).ok().as_deref() != Some(SECRET) {
        rep.leaks.push("the outside's secret changed".into());
    }
    outcome.map(|()| rep)
}

/// A directory of the share that the host keeps exchanging with a symlink to the outside
/// (`renameat2(RENAME_EXCHANGE)`) while the driver sends LOOKUP, CREATE, MKDIR, OPENDIR,
/// READDIR and READ into it, as a hostile guest racing the host would: whatever node the daemon
/// hands out, nothing outside the share is read, listed or created. virtiofsd's result is
/// printed for the comparison note.
#[test]
fn directory_swapped_for_symlink_while_requests_run() {
    let Some(mut t) = spawn_vhostfs(|_| {}) else {
        return;
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

    if let Some(bin) = virtiofsd_present() {
        match SpawnedTarget::new(
            DaemonSpec::virtiofsd_sandboxed(&bin),
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
