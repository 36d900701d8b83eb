//! Resource limits through a real `/dev/fuse` mount: `--max-open-files` and `--max-inodes`
//! refuse the guest's request with EMFILE / ENFILE, warn on the host, and the daemon goes on
//! serving; once the guest lets go (close, or the kernel forgetting inodes), requests succeed
//! again.

mod common;

use common::{io, Fixture};
use std::fs;

const MAX_OPEN: usize = 4;
const MAX_INODES: usize = 12;

fn start() -> Option<Fixture> {
    let max_open = MAX_OPEN.to_string();
    let max_inodes = MAX_INODES.to_string();
    Fixture::start(&[
        "--max-open-files",
        &max_open,
        "--max-inodes",
        &max_inodes,
        // Entries and attributes are not cached, so every stat is a request.
        "--cache",
        "never",
    ])
}

#[test]
fn open_files_beyond_the_cap_fail_with_emfile_until_one_is_closed() {
    let Some(fx) = start() else { return };
    for i in 0..=MAX_OPEN {
        fs::write(fx.share.join(format!("f{i}")), b"x").expect("write on the host");
    }
    let mut held = Vec::new();
    for i in 0..MAX_OPEN {
        held.push(fs::File::open(fx.mnt.join(format!("f{i}"))).expect("open under the cap"));
    }
    let over = io(fs::File::open(fx.mnt.join(format!("f{MAX_OPEN}"))));
    assert_eq!(over.err(), Some(libc::EMFILE), "open beyond the cap");
    assert!(
        fx.log_text().contains("open file limit of 4 reached"),
        "no warning on the host:\n{}",
        fx.log_text()
    );
    // The daemon still serves, and closing one handle makes room for another.
    assert!(fs::metadata(&fx.mnt).is_ok());
    held.pop();
    let again = fs::read(fx.mnt.join(format!("f{MAX_OPEN}")));
    assert_eq!(again.ok().as_deref(), Some(&b"x"[..]), "open after a close");
}

#[test]
fn inodes_beyond_the_cap_fail_with_enfile_until_the_guest_forgets() {
    let Some(fx) = start() else { return };
    let count = MAX_INODES * 2;
    for i in 0..count {
        fs::write(fx.share.join(format!("n{i}")), b"").expect("write on the host");
    }
    let results: Vec<Result<fs::Metadata, i32>> = (0..count)
        .map(|i| io(fs::symlink_metadata(fx.mnt.join(format!("n{i}")))))
        .collect();
    let refused = results.iter().filter(|r| r.is_err()).count();
    assert!(refused > 0, "no lookup was refused");
    for r in &results {
        if let Err(e) = r {
            assert_eq!(*e, libc::ENFILE, "lookup beyond the cap");
        }
    }
    // The root (and every inode the kernel still holds) keeps working.
    assert!(fs::metadata(&fx.mnt).is_ok());
    assert!(fs::symlink_metadata(fx.mnt.join("n0")).is_ok());
    assert!(
        fx.log_text().contains("inode limit of 12 reached"),
        "no warning on the host:\n{}",
        fx.log_text()
    );
    // Make the kernel drop its dentries and inodes: it sends FORGET for them, the daemon's
    // table empties, and the refused names can be looked up again.
    let forgotten = common::wait_for("the kernel to forget inodes", || {
        let _ = fs::write("/proc/sys/vm/drop_caches", b"2");
        fs::symlink_metadata(fx.mnt.join(format!("n{}", count - 1))).is_ok()
    });
    assert!(
        forgotten,
        "lookups still refused after the guest forgot its inodes"
    );
}
