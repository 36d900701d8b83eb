//! Host-mount tests: the real `vhostfs` binary serves a temporary directory through
//! `/dev/fuse` (`--fuse-mountpoint`), and ordinary programs and syscalls use the mount. Every
//! operation is also done directly on a plain host directory on the same file system, and the
//! results (values and errnos) must be the same.
//!
//! Needs root and `/dev/fuse`; every test skips itself otherwise.

mod common;

use std::ffi::CString;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{c, errno, exchange_until, io, renameat2, sys, Fixture};

type R<T> = Result<T, i32>;

/// A named group of operations run against a fixture.
type NamedOp = (&'static str, fn(&Fixture));

/// Runs `op` on the mount and on the reference directory and asserts equal outcomes.
fn same<T: PartialEq + Debug>(fx: &Fixture, what: &str, op: impl Fn(&Path) -> T) {
    let on_mount = op(&fx.mnt);
    let on_host = op(&fx.reference);
    assert_eq!(
        on_mount,
        on_host,
        "{what}: through the mount (left) differs from the host (right)\ndaemon log:\n{}",
        fx.log_text()
    );
}

/// File type, permission bits, size, link count, owner and rdev: what should match.
#[derive(Debug, PartialEq, Eq)]
struct St {
    mode: u32,
    size: u64,
    nlink: u64,
    uid: u32,
    gid: u32,
    rdev: u64,
}

fn lst(p: &Path) -> R<St> {
    let m = io(fs::symlink_metadata(p))?;
    Ok(St {
        mode: m.mode(),
        // Directory sizes are file-system specific.
        size: if m.is_dir() { 0 } else { m.size() },
        nlink: m.nlink(),
        uid: m.uid(),
        gid: m.gid(),
        rdev: m.rdev(),
    })
}

fn read_all(p: &Path) -> R<Vec<u8>> {
    io(fs::read(p))
}

/// Opens `p` for reading and writing.
fn open_rw(p: &Path) -> std::io::Result<File> {
    OpenOptions::new().read(true).write(true).open(p)
}

/// Creates (or truncates) `p` and opens it for reading and writing.
fn create_rw(p: &Path) -> R<File> {
    io(OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(p))
}

/// `fallocate(2)` on `f`.
fn fallocate(f: &File, mode: i32, offset: i64, len: i64) -> R<i64> {
    // SAFETY: `f` is an open file; fallocate takes no pointers.
    sys(unsafe { libc::fallocate(f.as_raw_fd(), mode, offset, len) })
}

/// `lseek(2)` on `f`.
fn lseek(f: &File, offset: i64, whence: i32) -> R<i64> {
    // SAFETY: `f` is an open file; lseek takes no pointers.
    sys(unsafe { libc::lseek(f.as_raw_fd(), offset, whence) })
}

/// `flock(2)` on `f`.
fn flock(f: &File, op: i32) -> R<i64> {
    // SAFETY: `f` is an open file; flock takes no pointers.
    sys(unsafe { libc::flock(f.as_raw_fd(), op) })
}

/// `fcntl(2)` with a record-lock command (`F_SETLK`, `F_GETLK`, the `F_OFD_*` ones, ...) on
/// `f`; `fl` is read and, for the GETLK commands, written back.
fn fcntl_lock(f: &File, cmd: i32, fl: &mut libc::flock) -> R<i64> {
    // SAFETY: `f` is an open file and `fl` a valid, exclusive `struct flock`.
    sys(unsafe { libc::fcntl(f.as_raw_fd(), cmd, fl as *mut libc::flock) })
}

/// A `struct flock` of type `typ` (`F_RDLCK`, ...) for `len` bytes (0: to the end) from
/// `start`.
fn flock_struct(typ: i32, start: i64, len: i64) -> libc::flock {
    // SAFETY: `struct flock` is plain old data; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = typ as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    fl.l_start = start;
    fl.l_len = len;
    fl
}

/// Runs the shell command `script` as the unprivileged user and group 65534, without
/// supplementary groups.
fn sh_as_nobody(script: &str) -> R<std::process::Output> {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
            script,
        ])
        .output()
        .map_err(|_| -1)
}

fn fixture(extra: &[&str]) -> Option<Fixture> {
    Fixture::start(extra)
}

/// A test that runs `$ops` on a fixture started with the daemon arguments `$arg`s (skipped
/// where the fixture cannot start: without root or `/dev/fuse`).
macro_rules! fixture_test {
    ($name:ident, $ops:ident $(, $arg:literal)*) => {
        #[test]
        fn $name() {
            let Some(fx) = fixture(&[$($arg),*]) else {
                return;
            };
            $ops(&fx);
        }
    };
}

fixture_test! { create_read_write_append_truncate, create_read_write_append_truncate_ops }

fn create_read_write_append_truncate_ops(fx: &Fixture) {
    same(fx, "write/read", |d| {
        let p = d.join("f");
        io(fs::write(&p, b"hello world"))?;
        let a = read_all(&p)?;
        let mut f = io(OpenOptions::new().append(true).open(&p))?;
        io(f.write_all(b", appended"))?;
        drop(f);
        let b = read_all(&p)?;
        let f = io(OpenOptions::new().write(true).open(&p))?;
        io(f.set_len(5))?;
        let c1 = read_all(&p)?;
        io(f.set_len(8))?;
        drop(f);
        let c2 = read_all(&p)?;
        let mut f = io(OpenOptions::new().read(true).write(true).open(&p))?;
        io(f.seek(SeekFrom::Start(100)))?;
        io(f.write_all(b"x"))?;
        let st = lst(&p)?;
        Ok::<_, i32>((a, b, c1, c2, st))
    });
    same(fx, "O_EXCL and missing files", |d| {
        let p = d.join("g");
        let first = io(OpenOptions::new().write(true).create_new(true).open(&p)).map(|_| ());
        let second = io(OpenOptions::new().write(true).create_new(true).open(&p)).map(|_| ());
        let missing = io(File::open(d.join("nope"))).map(|_| ());
        let trunc = io(OpenOptions::new().write(true).truncate(true).open(&p)).map(|_| ());
        (first, second, missing, trunc)
    });
    same(fx, "large write and read back", |d| {
        let p = d.join("big");
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i * 7 + i / 4096) as u8)
            .collect();
        io(fs::write(&p, &data))?;
        let back = read_all(&p)?;
        Ok::<_, i32>((back == data, back.len()))
    });
}

fixture_test! { chmod_chown_utimens, chmod_chown_utimens_ops }

fn chmod_chown_utimens_ops(fx: &Fixture) {
    same(fx, "chmod/chown", |d| {
        let p = d.join("f");
        io(fs::write(&p, b"x"))?;
        io(fs::set_permissions(&p, fs::Permissions::from_mode(0o640)))?;
        let a = lst(&p)?;
        let cp = c(&p);
        // SAFETY: valid C string.
        sys(unsafe { libc::chown(cp.as_ptr(), 1234, 5678) })?;
        let b = lst(&p)?;
        // SAFETY: valid C string; -1 leaves the group alone.
        sys(unsafe { libc::chown(cp.as_ptr(), 4321, u32::MAX) })?;
        let c2 = lst(&p)?;
        io(fs::set_permissions(&p, fs::Permissions::from_mode(0o4755)))?;
        let s = lst(&p)?;
        Ok::<_, i32>((a, b, c2, s))
    });
    same(fx, "utimensat", |d| {
        let p = d.join("t");
        io(fs::write(&p, b"x"))?;
        let cp = c(&p);
        let times = [
            libc::timespec {
                tv_sec: 1_000_000_000,
                tv_nsec: 123_456_789,
            },
            libc::timespec {
                tv_sec: 1_500_000_000,
                tv_nsec: 987_654_321,
            },
        ];
        // SAFETY: valid C string and a two-element timespec array.
        sys(unsafe { libc::utimensat(libc::AT_FDCWD, cp.as_ptr(), times.as_ptr(), 0) })?;
        let m = io(fs::metadata(&p))?;
        let set = (m.atime(), m.atime_nsec(), m.mtime(), m.mtime_nsec());
        let now = [
            libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_OMIT,
            },
            libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_NOW,
            },
        ];
        // SAFETY: as above.
        sys(unsafe { libc::utimensat(libc::AT_FDCWD, cp.as_ptr(), now.as_ptr(), 0) })?;
        let m = io(fs::metadata(&p))?;
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mtime_is_now = (m.mtime() - wall).abs() < 60;
        let atime_kept = (m.atime(), m.atime_nsec()) == (set.0, set.1);
        Ok::<_, i32>((set, mtime_is_now, atime_kept))
    });
}

fixture_test! { symlink_readlink_and_special_files, symlink_readlink_and_special_files_ops }

fn symlink_readlink_and_special_files_ops(fx: &Fixture) {
    same(fx, "symlink/readlink", |d| {
        io(std::os::unix::fs::symlink("some/target", d.join("l")))?;
        let t = io(fs::read_link(d.join("l")))?;
        let st = lst(&d.join("l"))?;
        io(fs::write(d.join("plain"), b""))?;
        let not_link = io(fs::read_link(d.join("plain"))).map(|_| ());
        let dangling = io(fs::read(d.join("l"))).map(|_| ());
        let again = io(std::os::unix::fs::symlink("x", d.join("l")));
        Ok::<_, i32>((t, st, not_link, dangling, again))
    });
    same(fx, "mknod fifo, socket, char device", |d| {
        let mut out = Vec::new();
        for (name, mode, dev) in [
            ("fifo", libc::S_IFIFO | 0o644, 0),
            ("sock", libc::S_IFSOCK | 0o600, 0),
            ("null", libc::S_IFCHR | 0o666, libc::makedev(1, 3)),
            ("blk", libc::S_IFBLK | 0o600, libc::makedev(7, 0)),
        ] {
            let p = c(&d.join(name));
            // SAFETY: valid C string.
            let r = sys(unsafe { libc::mknod(p.as_ptr(), mode, dev) });
            let ft = fs::symlink_metadata(d.join(name)).map(|m| {
                let t = m.file_type();
                (
                    t.is_fifo(),
                    t.is_socket(),
                    t.is_char_device(),
                    t.is_block_device(),
                )
            });
            out.push((r, io(ft), lst(&d.join(name))));
        }
        out
    });
}

fixture_test! { mkdir_rmdir_unlink_errors, mkdir_rmdir_unlink_errors_ops }

fn mkdir_rmdir_unlink_errors_ops(fx: &Fixture) {
    same(fx, "directory operations", |d| {
        let dir = d.join("dir");
        let a = io(fs::create_dir(&dir));
        let b = io(fs::create_dir(&dir));
        io(fs::write(dir.join("f"), b"x"))?;
        let not_empty = io(fs::remove_dir(&dir));
        let unlink_dir = io(fs::remove_file(&dir));
        let rmdir_file = io(fs::remove_dir(dir.join("f")));
        let missing = io(fs::remove_file(d.join("missing")));
        let under_file = io(fs::create_dir(dir.join("f").join("sub")));
        io(fs::remove_file(dir.join("f")))?;
        let ok = io(fs::remove_dir(&dir));
        let gone = lst(&dir);
        let long = io(fs::write(d.join("x".repeat(256)), b"")).map(|_| ());
        Ok::<_, i32>((
            a, b, not_empty, unlink_dir, rmdir_file, missing, under_file, ok, gone, long,
        ))
    });
}

fixture_test! { rename_variants_and_hard_links, rename_variants_and_hard_links_ops }

fn rename_variants_and_hard_links_ops(fx: &Fixture) {
    same(fx, "rename, RENAME_NOREPLACE, RENAME_EXCHANGE", |d| {
        io(fs::write(d.join("a"), b"A"))?;
        io(fs::write(d.join("b"), b"B"))?;
        io(fs::create_dir(d.join("dir")))?;
        let plain = io(fs::rename(d.join("a"), d.join("a2")));
        let noreplace = renameat2(&d.join("a2"), &d.join("b"), libc::RENAME_NOREPLACE);
        let exchange = renameat2(&d.join("a2"), &d.join("b"), libc::RENAME_EXCHANGE);
        let contents = (read_all(&d.join("a2"))?, read_all(&d.join("b"))?);
        let exchange_missing = renameat2(&d.join("a2"), &d.join("zz"), libc::RENAME_EXCHANGE);
        let file_over_dir = io(fs::rename(d.join("b"), d.join("dir")));
        let into_dir = io(fs::rename(d.join("b"), d.join("dir").join("b")));
        let replace = io(fs::rename(d.join("a2"), d.join("dir").join("b")));
        let after = read_all(&d.join("dir").join("b"))?;
        let renames = (plain, noreplace, exchange, exchange_missing);
        let moves = (file_over_dir, into_dir, replace);
        Ok::<_, i32>((renames, contents, moves, after))
    });
    same(fx, "hard links share an inode", |d| {
        io(fs::write(d.join("orig"), b"data"))?;
        let l = io(fs::hard_link(d.join("orig"), d.join("link")));
        let a = io(fs::metadata(d.join("orig")))?;
        let b = io(fs::metadata(d.join("link")))?;
        let exists = io(fs::hard_link(d.join("orig"), d.join("link")));
        io(fs::create_dir(d.join("dir")))?;
        let dir_link = io(fs::hard_link(d.join("dir"), d.join("dirlink")));
        Ok::<_, i32>((l, a.ino() == b.ino(), a.nlink(), exists, dir_link))
    });
}

fixture_test! { tmpfile_and_umask, tmpfile_and_umask_ops }

fn tmpfile_and_umask_ops(fx: &Fixture) {
    same(fx, "O_TMPFILE", |d| {
        let dir = c(d);
        // SAFETY: valid C string.
        let fd = sys(unsafe { libc::open(dir.as_ptr(), libc::O_TMPFILE | libc::O_RDWR, 0o600) })?;
        // SAFETY: fd was just opened and is owned here.
        let mut f = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
        io(f.write_all(b"anonymous"))?;
        let entries = io(fs::read_dir(d))?.count();
        let proc = CString::new(format!("/proc/self/fd/{fd}")).unwrap();
        let target = c(&d.join("named"));
        // SAFETY: valid C strings.
        let linked = sys(unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                proc.as_ptr(),
                libc::AT_FDCWD,
                target.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        });
        let content = read_all(&d.join("named"));
        Ok::<_, i32>((entries, linked, content, lst(&d.join("named"))))
    });
    same(fx, "umask applies to creation", |d| {
        let out = Command::new("sh")
            .arg("-c")
            .arg("umask 027 && mkdir d && : > f && mkfifo p && ls -ln")
            .current_dir(d)
            .output()
            .map_err(|_| -1)?;
        Ok::<_, i32>((
            out.status.code(),
            lst(&d.join("d"))?.mode,
            lst(&d.join("f"))?.mode,
            lst(&d.join("p"))?.mode,
        ))
    });
}

/// Runs `call(buffer, size)`, a `getxattr`-like call, with a buffer of `size` bytes (a null
/// buffer for a size probe, `size` 0): the bytes it filled in, or for a probe the size it
/// reported, in decimal.
fn xattr_read(size: usize, call: impl FnOnce(*mut libc::c_void, usize) -> isize) -> R<Vec<u8>> {
    let mut buf = vec![0u8; size];
    let ptr = if size == 0 {
        std::ptr::null_mut()
    } else {
        buf.as_mut_ptr().cast()
    };
    let n = sys(call(ptr, size) as i64)?;
    if size == 0 {
        return Ok(n.to_string().into_bytes());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

fn getxattr(p: &Path, name: &str, size: usize) -> R<Vec<u8>> {
    let (cp, cn) = (c(p), CString::new(name).unwrap());
    xattr_read(size, |buf, size| {
        // SAFETY: valid C strings; `buf` is valid for `size` bytes (or null when 0).
        unsafe { libc::getxattr(cp.as_ptr(), cn.as_ptr(), buf, size) }
    })
}

fn listxattr(p: &Path, size: usize) -> R<Vec<Vec<u8>>> {
    let cp = c(p);
    let buf = xattr_read(size, |buf, size| {
        // SAFETY: valid C string; `buf` is valid for `size` bytes (or null when 0).
        unsafe { libc::listxattr(cp.as_ptr(), buf.cast(), size) }
    })?;
    if size == 0 {
        return Ok(vec![buf]);
    }
    let mut names: Vec<Vec<u8>> = buf
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| s.to_vec())
        .collect();
    // Only our own attributes (security.* may be added by the host).
    names.retain(|n| n.starts_with(b"user."));
    names.sort();
    Ok(names)
}

fn setxattr(p: &Path, name: &str, value: &[u8], flags: i32) -> R<i64> {
    let (cp, cn) = (c(p), CString::new(name).unwrap());
    // SAFETY: valid C strings and value slice.
    sys(unsafe {
        libc::setxattr(
            cp.as_ptr(),
            cn.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    })
}

fixture_test! { extended_attributes, extended_attributes_ops, "--xattr" }

fn extended_attributes_ops(fx: &Fixture) {
    same(fx, "xattrs", |d| {
        let p = d.join("f");
        io(fs::write(&p, b"x"))?;
        let set = setxattr(&p, "user.color", b"blue-green", 0);
        let create_again = setxattr(&p, "user.color", b"red", libc::XATTR_CREATE);
        let replace_missing = setxattr(&p, "user.none", b"red", libc::XATTR_REPLACE);
        let set2 = setxattr(&p, "user.second", b"", 0);
        let probe = getxattr(&p, "user.color", 0);
        let value = getxattr(&p, "user.color", 64);
        let small = getxattr(&p, "user.color", 3);
        let empty = getxattr(&p, "user.second", 16);
        let missing = getxattr(&p, "user.missing", 16);
        let list = listxattr(&p, 4096);
        let list_small = listxattr(&p, 1);
        let removed = {
            let (cp, cn) = (c(&p), CString::new("user.color").unwrap());
            // SAFETY: valid C strings.
            sys(unsafe { libc::removexattr(cp.as_ptr(), cn.as_ptr()) })
        };
        let removed_again = {
            let (cp, cn) = (c(&p), CString::new("user.color").unwrap());
            // SAFETY: valid C strings.
            sys(unsafe { libc::removexattr(cp.as_ptr(), cn.as_ptr()) })
        };
        let list_after = listxattr(&p, 4096);
        let bad_ns = setxattr(&p, "nonsense.attr", b"x", 0);
        io(fs::create_dir(d.join("dir")))?;
        let on_dir = setxattr(&d.join("dir"), "user.d", b"dirval", 0);
        let dir_value = getxattr(&d.join("dir"), "user.d", 64);
        Ok::<_, i32>(vec![
            format!("set {set:?}"),
            format!("create_again {create_again:?}"),
            format!("replace_missing {replace_missing:?}"),
            format!("set2 {set2:?}"),
            format!("probe {probe:?}"),
            format!("value {value:?}"),
            format!("small {small:?}"),
            format!("empty {empty:?}"),
            format!("missing {missing:?}"),
            format!("list {list:?}"),
            format!("list_small {list_small:?}"),
            format!("removed {removed:?}"),
            format!("removed_again {removed_again:?}"),
            format!("list_after {list_after:?}"),
            format!("bad_ns {bad_ns:?}"),
            format!("on_dir {on_dir:?}"),
            format!("dir_value {dir_value:?}"),
        ])
    });
}

fixture_test! { readdir_of_a_large_directory, readdir_of_a_large_directory_ops }

fn readdir_of_a_large_directory_ops(fx: &Fixture) {
    same(fx, "readdir 1000 entries", |d| {
        let dir = d.join("big");
        io(fs::create_dir(&dir))?;
        for i in 0..1000 {
            let name = format!("entry-{i:04}-{}", "n".repeat(i % 50));
            if i % 10 == 0 {
                io(fs::create_dir(dir.join(name)))?;
            } else {
                io(fs::write(dir.join(name), b""))?;
            }
        }
        let mut names: Vec<(String, bool)> = io(fs::read_dir(&dir))?
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.file_type().unwrap().is_dir(),
                )
            })
            .collect();
        names.sort();
        // Read again while removing entries: no entry may be returned twice.
        let mut seen = std::collections::HashSet::new();
        let mut dup = false;
        for (i, e) in io(fs::read_dir(&dir))?.enumerate() {
            let name = e.unwrap().file_name();
            dup |= !seen.insert(name);
            if i % 3 == 0 {
                let _ = fs::remove_file(dir.join(format!(
                    "entry-{:04}-{}",
                    i + 500,
                    "n".repeat((i + 500) % 50)
                )));
            }
        }
        Ok::<_, i32>((names.len(), names, dup))
    });
}

fixture_test! { statfs_and_syncs, statfs_and_syncs_ops }

fn statfs_and_syncs_ops(fx: &Fixture) {
    let stat = |p: &Path| {
        let cp = c(p);
        // SAFETY: zeroed statvfs is a valid out-parameter.
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: valid C string and out-pointer.
        sys(unsafe { libc::statvfs(cp.as_ptr(), &mut s) })
            .map(|_| (s.f_bsize, s.f_blocks, s.f_namemax, s.f_files))
    };
    assert_eq!(
        stat(&fx.mnt),
        stat(&fx.share),
        "statvfs of the mount vs the shared dir"
    );
    same(fx, "fsync, fdatasync, syncfs", |d| {
        let mut f = io(File::create(d.join("f")))?;
        io(f.write_all(b"data"))?;
        let a = io(f.sync_all());
        let b = io(f.sync_data());
        // SAFETY: valid open fd.
        let s = sys(unsafe { libc::syncfs(f.as_raw_fd()) });
        let dir = io(File::open(d))?;
        let dsync = io(dir.sync_all());
        Ok::<_, i32>((a, b, s, dsync))
    });
}

fixture_test! { fallocate_lseek_copy_file_range, fallocate_lseek_copy_file_range_ops }

fn fallocate_lseek_copy_file_range_ops(fx: &Fixture) {
    same(fx, "fallocate modes", |d| {
        let p = d.join("f");
        let f = create_rw(&p)?;
        io((&f).write_all(&vec![0xAAu8; 64 * 1024]))?;
        let extend = fallocate(&f, 0, 0, 128 * 1024);
        let size1 = io(f.metadata())?.len();
        let keep = fallocate(&f, libc::FALLOC_FL_KEEP_SIZE, 0, 1024 * 1024);
        let size2 = io(f.metadata())?.len();
        let punch_keep = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        let punch = fallocate(&f, punch_keep, 4096, 8192);
        let punch_no_keep = fallocate(&f, libc::FALLOC_FL_PUNCH_HOLE, 4096, 8192);
        let zero = fallocate(&f, libc::FALLOC_FL_ZERO_RANGE, 20000, 5000);
        let bad = fallocate(&f, 0, -1, 10);
        drop(f);
        let content = read_all(&p)?;
        let sum: u64 = content.iter().map(|&b| b as u64).sum();
        Ok::<_, i32>((
            extend,
            size1,
            keep,
            size2,
            punch,
            punch_no_keep,
            zero,
            bad,
            content.len(),
            sum,
        ))
    });
    same(fx, "SEEK_DATA / SEEK_HOLE", |d| {
        let p = d.join("sparse");
        let mut f = create_rw(&p)?;
        io(f.write_all(&[1u8; 4096]))?;
        io(f.seek(SeekFrom::Start(1 << 20)))?;
        io(f.write_all(&[2u8; 4096]))?;
        io(f.sync_all())?;
        let r = [
            lseek(&f, 0, libc::SEEK_DATA),
            lseek(&f, 0, libc::SEEK_HOLE),
            lseek(&f, 8192, libc::SEEK_DATA),
            lseek(&f, (1 << 20) + 10, libc::SEEK_HOLE),
            lseek(&f, 10 << 20, libc::SEEK_DATA),
            lseek(&f, 10 << 20, libc::SEEK_HOLE),
            lseek(&f, 5, libc::SEEK_END),
            lseek(&f, -5, libc::SEEK_SET),
        ];
        Ok::<_, i32>(r)
    });
    same(fx, "copy_file_range", |d| {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        io(fs::write(d.join("src"), &data))?;
        let src = io(File::open(d.join("src")))?;
        let dst = io(OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(d.join("dst")))?;
        let mut off_in: i64 = 1000;
        let mut off_out: i64 = 10;
        // SAFETY: valid fds and offset pointers.
        let n = sys(unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut off_in,
                dst.as_raw_fd(),
                &mut off_out,
                50_000,
                0,
            ) as i64
        });
        // SAFETY: valid fds; null offsets use (and move) the file positions.
        let bad_flags = sys(unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                std::ptr::null_mut(),
                dst.as_raw_fd(),
                std::ptr::null_mut(),
                10,
                1,
            ) as i64
        });
        drop(dst);
        let out = read_all(&d.join("dst"))?;
        Ok::<_, i32>((
            n,
            off_in,
            off_out,
            bad_flags,
            out.len(),
            out[10..] == data[1000..51000],
        ))
    });
}

fn ofd_lock(f: &File, typ: i32, start: i64, len: i64, cmd: i32) -> R<(i16, i64, i64)> {
    let mut fl = flock_struct(typ, start, len);
    fcntl_lock(f, cmd, &mut fl)?;
    Ok((fl.l_type, fl.l_start, fl.l_len))
}

fixture_test! { posix_and_flock_locks, posix_and_flock_locks_ops }

fn posix_and_flock_locks_ops(fx: &Fixture) {
    same(fx, "OFD locks between two open file descriptions", |d| {
        io(fs::write(d.join("f"), b"0123456789"))?;
        let a = io(open_rw(&d.join("f")))?;
        let b = io(open_rw(&d.join("f")))?;
        let take = ofd_lock(&a, libc::F_WRLCK, 0, 5, libc::F_OFD_SETLK);
        let conflict = ofd_lock(&b, libc::F_WRLCK, 2, 2, libc::F_OFD_SETLK);
        let read_conflict = ofd_lock(&b, libc::F_RDLCK, 4, 1, libc::F_OFD_SETLK);
        let other_range = ofd_lock(&b, libc::F_WRLCK, 5, 5, libc::F_OFD_SETLK);
        let probe = ofd_lock(&b, libc::F_WRLCK, 0, 0, libc::F_OFD_GETLK);
        let unlock = ofd_lock(&a, libc::F_UNLCK, 0, 5, libc::F_OFD_SETLK);
        let now_free = ofd_lock(&b, libc::F_WRLCK, 0, 5, libc::F_OFD_SETLK);
        let conflicts = (conflict, read_conflict, other_range, probe);
        Ok::<_, i32>((take, conflicts, unlock, now_free))
    });
    same(fx, "flock between two open file descriptions", |d| {
        io(fs::write(d.join("g"), b""))?;
        let a = io(File::open(d.join("g")))?;
        let b = io(File::open(d.join("g")))?;
        let r = [
            flock(&a, libc::LOCK_EX),
            flock(&b, libc::LOCK_EX | libc::LOCK_NB),
            flock(&b, libc::LOCK_SH | libc::LOCK_NB),
            flock(&a, libc::LOCK_UN),
            flock(&b, libc::LOCK_SH | libc::LOCK_NB),
            flock(&a, libc::LOCK_SH | libc::LOCK_NB),
        ];
        Ok::<_, i32>(r)
    });

    // A lock taken directly on the host file is seen through the mount (the daemon takes real
    // locks on the host), and one taken through the mount is seen on the host.
    fs::write(fx.share.join("shared"), b"0123456789").unwrap();
    let host = open_rw(&fx.share.join("shared")).unwrap();
    let via = open_rw(&fx.mnt.join("shared")).unwrap();
    assert_eq!(
        ofd_lock(&host, libc::F_WRLCK, 0, 0, libc::F_OFD_SETLK),
        Ok((libc::F_WRLCK as i16, 0, 0))
    );
    assert_eq!(
        ofd_lock(&via, libc::F_WRLCK, 3, 1, libc::F_OFD_SETLK),
        Err(libc::EAGAIN),
        "a host lock must block a conflicting lock through the mount"
    );
    assert_eq!(
        ofd_lock(&via, libc::F_RDLCK, 3, 1, libc::F_OFD_GETLK).map(|l| l.0),
        Ok(libc::F_WRLCK as i16)
    );
    ofd_lock(&host, libc::F_UNLCK, 0, 0, libc::F_OFD_SETLK).unwrap();
    ofd_lock(&via, libc::F_WRLCK, 0, 0, libc::F_OFD_SETLK).unwrap();
    assert_eq!(
        ofd_lock(&host, libc::F_RDLCK, 0, 1, libc::F_OFD_SETLK),
        Err(libc::EAGAIN),
        "a lock through the mount must block a conflicting host lock"
    );

    // The same for flock.
    let host_f = File::open(fx.share.join("shared")).unwrap();
    let via_f = File::open(fx.mnt.join("shared")).unwrap();
    let (ex, sh) = (libc::LOCK_EX | libc::LOCK_NB, libc::LOCK_SH | libc::LOCK_NB);
    assert_eq!(flock(&host_f, ex), Ok(0));
    assert_eq!(
        flock(&via_f, ex),
        Err(libc::EWOULDBLOCK),
        "a host flock must block a conflicting flock through the mount"
    );
    assert_eq!(flock(&host_f, libc::LOCK_UN), Ok(0));
    assert_eq!(flock(&via_f, sh), Ok(0));
    assert_eq!(
        flock(&host_f, ex),
        Err(libc::EWOULDBLOCK),
        "a flock through the mount must block a conflicting host flock"
    );
}

/// A helper process: `lock-holder PATH` takes a POSIX write lock on PATH, prints "locked",
/// and holds it until its stdin closes. `lock-waiter PATH` blocks in F_SETLKW until SIGALRM
/// (no SA_RESTART) interrupts it and prints the errno.
#[test]
fn helper_process() {
    let Ok(role) = std::env::var("VHOSTFS_TEST_HELPER") else {
        return;
    };
    let path = std::env::var("VHOSTFS_TEST_PATH").unwrap();
    let f = open_rw(Path::new(&path)).unwrap();
    let mut fl = flock_struct(libc::F_WRLCK, 0, 0);
    match role.as_str() {
        "lock-holder" => {
            let r = fcntl_lock(&f, libc::F_SETLK, &mut fl);
            println!(
                "\nHELPER: {}",
                match r {
                    Ok(_) => "locked".to_string(),
                    Err(e) => format!("error {e}"),
                }
            );
            let _ = std::io::stdout().flush();
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        }
        "lock-waiter" => {
            extern "C" fn on_alarm(_: i32) {}
            // SAFETY: installing a handler that does nothing; no SA_RESTART so that the
            // blocked fcntl returns EINTR.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_alarm as extern "C" fn(i32) as usize;
                libc::sigemptyset(&mut sa.sa_mask);
                sa.sa_flags = 0;
                libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut());
            }
            // Deliver the signal to this very thread (the test harness has others).
            // SAFETY: pthread_self has no preconditions.
            let me = unsafe { libc::pthread_self() } as usize;
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(1));
                // SAFETY: the target thread is blocked in fcntl below and outlives us.
                unsafe { libc::pthread_kill(me as libc::pthread_t, libc::SIGALRM) };
            });
            let start = Instant::now();
            let (r, e) = match fcntl_lock(&f, libc::F_SETLKW, &mut fl) {
                Ok(r) => (r, 0),
                Err(e) => (-1, e),
            };
            println!("\nHELPER: {r} {e} {}", start.elapsed().as_millis());
        }
        _ => panic!("unknown helper role"),
    }
    std::process::exit(0);
}

fn spawn_helper(role: &str, path: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("VHOSTFS_TEST_HELPER", role)
        .env("VHOSTFS_TEST_PATH", path)
        .env("RUST_TEST_THREADS", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn read_line(child: &mut std::process::Child) -> String {
    // The test harness prints its own text around ours; our line starts with "HELPER: ".
    let Some(mut out) = child.stdout.take() else {
        return "no stdout".into();
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while out.read(&mut byte).unwrap_or(0) == 1 {
            if byte[0] == b'\n' {
                let s = String::from_utf8_lossy(&line).into_owned();
                if let Some(rest) = s.strip_prefix("HELPER: ") {
                    let _ = tx.send(rest.to_string());
                    return;
                }
                line.clear();
            } else {
                line.push(byte[0]);
            }
        }
        let _ = tx.send("helper ended without answer".into());
    });
    match rx.recv_timeout(common::TIMEOUT) {
        Ok(s) => s,
        Err(_) => {
            let _ = child.kill();
            "helper timed out".into()
        }
    }
}

#[test]
fn posix_locks_between_processes_and_interrupted_setlkw() {
    let Some(fx) = fixture(&[]) else { return };
    for d in [&fx.mnt, &fx.reference] {
        fs::write(d.join("l"), b"0123456789").unwrap();
    }
    let run = |d: &Path| {
        let mut holder = spawn_helper("lock-holder", &d.join("l"));
        let first = read_line(&mut holder);
        let f = open_rw(&d.join("l")).unwrap();
        let mut fl = flock_struct(libc::F_WRLCK, 0, 0);
        let setlk = fcntl_lock(&f, libc::F_SETLK, &mut fl);
        let getlk = fcntl_lock(&f, libc::F_GETLK, &mut fl);
        let holder_seen = fl.l_type == libc::F_WRLCK as i16;
        // A waiter in F_SETLKW is interrupted by SIGALRM: the kernel sends INTERRUPT and the
        // waiter gets EINTR instead of hanging.
        let mut waiter = spawn_helper("lock-waiter", &d.join("l"));
        let waited = read_line(&mut waiter);
        let fields: Vec<i64> = waited
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .collect();
        let _ = waiter.wait();
        drop(holder.stdin.take());
        let _ = holder.wait();
        (
            first,
            setlk,
            getlk,
            holder_seen,
            fields.get(..2).map(|s| s.to_vec()),
        )
    };
    let on_mount = run(&fx.mnt);
    let on_host = run(&fx.reference);
    assert_eq!(on_mount, on_host, "daemon log:\n{}", fx.log_text());
    assert_eq!(on_host.4, Some(vec![-1, libc::EINTR as i64]));

    // A classic POSIX lock held by a host process on the shared file blocks a conflicting
    // lock taken through the mount.
    fs::write(fx.share.join("hostlocked"), b"0123456789").unwrap();
    let mut holder = spawn_helper("lock-holder", &fx.share.join("hostlocked"));
    assert_eq!(read_line(&mut holder), "locked");
    let f = open_rw(&fx.mnt.join("hostlocked")).unwrap();
    let r = fcntl_lock(&f, libc::F_SETLK, &mut flock_struct(libc::F_WRLCK, 0, 0));
    drop(holder.stdin.take());
    let _ = holder.wait();
    assert_eq!(
        r,
        Err(libc::EAGAIN),
        "host process lock not seen through the mount"
    );
}

fixture_test! {
    access_and_suid_cleared_on_write_by_non_owner,
    access_and_suid_cleared_on_write_by_non_owner_ops
}

fn access_and_suid_cleared_on_write_by_non_owner_ops(fx: &Fixture) {
    same(fx, "access", |d| {
        io(fs::write(d.join("f"), b"x"))?;
        io(fs::set_permissions(
            d.join("f"),
            fs::Permissions::from_mode(0o600),
        ))?;
        let p = c(&d.join("f"));
        let m = c(&d.join("missing"));
        // SAFETY: valid C strings.
        let r = unsafe {
            [
                sys(libc::access(p.as_ptr(), libc::R_OK | libc::W_OK)),
                sys(libc::access(p.as_ptr(), libc::X_OK)),
                sys(libc::access(m.as_ptr(), libc::F_OK)),
            ]
        };
        // As an unprivileged user.
        let out = sh_as_nobody(&format!(
            "test -r '{}' && echo readable || echo denied",
            d.join("f").display()
        ))?;
        Ok::<_, i32>((r, String::from_utf8_lossy(&out.stdout).into_owned()))
    });
    same(fx, "setuid/setgid cleared when a non-owner writes", |d| {
        let p = d.join("suid");
        io(fs::write(&p, b"x"))?;
        io(fs::set_permissions(d, fs::Permissions::from_mode(0o777)))?;
        io(fs::set_permissions(&p, fs::Permissions::from_mode(0o6777)))?;
        let before = lst(&p)?.mode;
        let out = sh_as_nobody(&format!("echo more >> '{}'", p.display()))?;
        let after = lst(&p)?;
        Ok::<_, i32>((before, out.status.code(), after, read_all(&p)?))
    });
}

#[test]
fn sigterm_unmounts_and_exits_zero() {
    let Some(mut fx) = fixture(&[]) else { return };
    fs::write(fx.mnt.join("f"), b"x").unwrap();
    let status = fx
        .signal_and_wait(libc::SIGTERM)
        .expect("daemon exits after SIGTERM");
    assert!(status.success(), "exit status {status}\n{}", fx.log_text());
    assert!(
        !common::is_vhostfs_mount(&fx.mnt),
        "still mounted after SIGTERM"
    );
    assert_eq!(fs::read(fx.share.join("f")).unwrap(), b"x");
}

#[test]
fn external_umount_ends_the_daemon() {
    let Some(mut fx) = fixture(&[]) else { return };
    let p = c(&fx.mnt);
    // SAFETY: valid C string.
    let rc = unsafe { libc::umount2(p.as_ptr(), 0) };
    assert_eq!(rc, 0, "umount: {}", errno());
    // The daemon notices (ENODEV) and exits 0 on its own.
    let status = fx.wait_exit();
    assert!(
        status.is_some_and(|s| s.success()),
        "daemon did not exit cleanly after umount: {status:?}\n{}",
        fx.log_text()
    );
}

const SECRET: &[u8] = b"TOPSECRET-outside-the-share";

/// No file outside the share is reachable through the mount: symlinks are never followed by
/// the daemon (the kernel follows them, relative to the mount), operations on symlink inodes
/// do not touch their targets, and swapping a directory for a symlink while lookups run does
/// not leak anything.
#[test]
fn symlinks_do_not_escape_the_share() {
    let Some(fx) = fixture(&["--xattr"]) else {
        return;
    };
    let secret = fx.outside.join("secret.txt");
    fs::write(&secret, SECRET).unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o644)).unwrap();
    // What the *kernel* finds when it follows "../outside" from the mount root: a decoy.
    let decoy_dir = fx.mnt.parent().unwrap().join("outside");
    fs::create_dir_all(&decoy_dir).unwrap();
    fs::write(decoy_dir.join("secret.txt"), b"DECOY").unwrap();

    let s = &fx.share;
    std::os::unix::fs::symlink("../outside", s.join("rel")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../../../../..", s.join("deep")).unwrap();
    std::os::unix::fs::symlink("/etc", s.join("etc")).unwrap();
    std::os::unix::fs::symlink(&secret, s.join("abs-secret")).unwrap();
    fs::create_dir(s.join("d")).unwrap();
    fs::write(s.join("d").join("secret.txt"), b"SAFE").unwrap();
    std::os::unix::fs::symlink("../outside", s.join("d-link")).unwrap();

    let m = &fx.mnt;
    assert_eq!(
        fs::read_link(m.join("rel")).unwrap(),
        Path::new("../outside")
    );
    assert_eq!(fs::read_link(m.join("etc")).unwrap(), Path::new("/etc"));
    assert_eq!(
        fs::read(m.join("rel").join("secret.txt")).unwrap(),
        b"DECOY"
    );

    // Operations on the symlink inodes themselves must not reach the target.
    let before = fs::metadata(&secret).unwrap();
    let l = c(&m.join("abs-secret"));
    // SAFETY: valid C string.
    let _ = unsafe { libc::lchown(l.as_ptr(), 4321, 4321) };
    let times = [
        libc::timespec {
            tv_sec: 1,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: 1,
            tv_nsec: 0,
        },
    ];
    // SAFETY: valid C string and timespec array.
    let _ = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            l.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    let name = CString::new("user.evil").unwrap();
    // SAFETY: valid C strings and value.
    let _ = unsafe { libc::lsetxattr(l.as_ptr(), name.as_ptr(), b"x".as_ptr().cast(), 1, 0) };
    let after = fs::metadata(&secret).unwrap();
    assert_eq!(
        (before.uid(), before.gid(), before.mtime()),
        (after.uid(), after.gid(), after.mtime())
    );
    assert_eq!(getxattr(&secret, "user.evil", 16), Err(libc::ENODATA));
    // O_NOFOLLOW open of the symlink through the mount fails like on the host.
    let e = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(m.join("abs-secret"))
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ELOOP));

    // Race: swap "d" between the real directory and a symlink while another thread reads
    // "d/secret.txt" through the mount. Whatever it gets must be SAFE, DECOY or an error.
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = Arc::clone(&stop);
        let (a, b) = (s.join("d"), s.join("d-link"));
        std::thread::spawn(move || exchange_until(&a, &b, &stop).expect("exchange d and d-link"))
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut reads = 0;
    let mut leaked = Vec::new();
    while Instant::now() < deadline {
        for p in [
            m.join("d").join("secret.txt"),
            m.join("d-link").join("secret.txt"),
        ] {
            if let Ok(data) = fs::read(&p) {
                reads += 1;
                if data != b"SAFE" && data != b"DECOY" {
                    leaked.push(String::from_utf8_lossy(&data).into_owned());
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(leaked.is_empty(), "read outside the share: {leaked:?}");
    assert!(
        reads > 0 && swaps > 0,
        "race did not run: {reads} reads, {swaps} swaps"
    );

    // Walking the whole mount (without following symlinks) never shows the secret.
    fn walk(dir: &Path, found: &mut Vec<String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                walk(&p, found);
            } else if t.is_file() && fs::read(&p).is_ok_and(|d| d == SECRET) {
                found.push(p.display().to_string());
            }
        }
    }
    let mut found = Vec::new();
    walk(m, &mut found);
    assert!(
        found.is_empty(),
        "secret visible through the mount at {found:?}"
    );
}

#[test]
fn readonly_share_refuses_changes() {
    let Some(fx) = fixture(&["--readonly", "--xattr"]) else {
        return;
    };
    fs::write(fx.share.join("f"), b"content").unwrap();
    fs::create_dir(fx.share.join("d")).unwrap();
    let m = &fx.mnt;
    assert_eq!(fs::read(m.join("f")).unwrap(), b"content");
    let erofs = |r: std::io::Result<()>, what: &str| {
        assert_eq!(
            r.map_err(|e| e.raw_os_error()),
            Err(Some(libc::EROFS)),
            "{what}"
        )
    };
    erofs(fs::write(m.join("new"), b"x"), "create");
    erofs(
        OpenOptions::new().write(true).open(m.join("f")).map(|_| ()),
        "open for writing",
    );
    erofs(fs::create_dir(m.join("nd")), "mkdir");
    erofs(fs::remove_file(m.join("f")), "unlink");
    erofs(fs::remove_dir(m.join("d")), "rmdir");
    erofs(fs::rename(m.join("f"), m.join("g")), "rename");
    erofs(
        fs::set_permissions(m.join("f"), fs::Permissions::from_mode(0o600)),
        "chmod",
    );
    erofs(std::os::unix::fs::symlink("f", m.join("l")), "symlink");
    erofs(fs::hard_link(m.join("f"), m.join("h")), "link");
    assert_eq!(
        setxattr(&m.join("f"), "user.x", b"1", 0),
        Err(libc::EROFS),
        "setxattr"
    );
    assert_eq!(fs::read(fx.share.join("f")).unwrap(), b"content");
}

#[test]
fn uid_translation_and_xattr_mapping_are_wired() {
    let Some(fx) = fixture(&[
        "--translate-uid=map:0:1000:1",
        "--translate-gid=map:0:1001:1",
        "--xattr",
        "--xattrmap=:map::user.virtiofs.:",
    ]) else {
        return;
    };
    // Root in the "guest" (here: the host process using the mount) creates files as host
    // uid 1000 / gid 1001, and sees them as its own. It owns the share's root.
    let share = c(&fx.share);
    // SAFETY: valid C string.
    assert_eq!(unsafe { libc::chown(share.as_ptr(), 1000, 1001) }, 0);
    let root = fs::metadata(&fx.mnt).unwrap();
    assert_eq!((root.uid(), root.gid()), (0, 0));
    fs::write(fx.mnt.join("f"), b"x").unwrap();
    let host = fs::metadata(fx.share.join("f")).unwrap();
    assert_eq!((host.uid(), host.gid()), (1000, 1001));
    let guest = fs::metadata(fx.mnt.join("f")).unwrap();
    assert_eq!((guest.uid(), guest.gid()), (0, 0));
    // Extended attribute names get the prefix on the host.
    setxattr(&fx.mnt.join("f"), "user.color", b"red", 0).unwrap();
    assert_eq!(
        getxattr(&fx.share.join("f"), "user.virtiofs.user.color", 16),
        Ok(b"red".to_vec())
    );
    assert_eq!(
        getxattr(&fx.mnt.join("f"), "user.color", 16),
        Ok(b"red".to_vec())
    );
    assert_eq!(
        getxattr(&fx.share.join("f"), "user.color", 16),
        Err(libc::ENODATA)
    );
}

#[test]
fn parallel_io_from_many_threads() {
    let Some(fx) = fixture(&["--thread-pool-size=4"]) else {
        return;
    };
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let dir = fx.mnt.join(format!("t{t}"));
            std::thread::spawn(move || {
                fs::create_dir(&dir).unwrap();
                for i in 0..100 {
                    let data: Vec<u8> = (0..(i * 997 % 70_000)).map(|b| (b + t) as u8).collect();
                    let p = dir.join(format!("f{i}"));
                    fs::write(&p, &data).unwrap();
                    assert_eq!(fs::read(&p).unwrap(), data);
                    if i % 2 == 0 {
                        fs::remove_file(&p).unwrap();
                    }
                }
                fs::read_dir(&dir).unwrap().count()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 50);
    }
}

/// The core operations again with other caching, I/O and inode settings: results must still
/// match the host.
#[test]
fn core_operations_under_other_settings() {
    let mut failures = Vec::new();
    for args in [
        &["--cache=never", "--xattr"][..],
        &["--cache=always", "--writeback", "--xattr"][..],
        &["--cache=metadata", "--allow-direct-io", "--xattr"][..],
        &["--inode-file-handles=prefer", "--xattr"][..],
        &["--killpriv-v2", "--xattr", "--posix-acl"][..],
        &["--cache=never", "--killpriv-v2", "--xattr"][..],
        &[
            "--cache=never",
            "--allow-mmap",
            "--no-readdirplus",
            "--killpriv-v2",
            "--xattr",
        ][..],
        &["--cache=auto", "--no-readdirplus", "--xattr"][..],
    ] {
        eprintln!("settings: {args:?}");
        let Some(fx) = fixture(args) else { return };
        let ops: [NamedOp; 14] = [
            ("read/write", create_read_write_append_truncate_ops),
            ("chmod/chown/utimens", chmod_chown_utimens_ops),
            ("symlink/mknod", symlink_readlink_and_special_files_ops),
            ("mkdir/rmdir/unlink", mkdir_rmdir_unlink_errors_ops),
            ("rename/link", rename_variants_and_hard_links_ops),
            ("tmpfile/umask", tmpfile_and_umask_ops),
            ("xattr", extended_attributes_ops),
            ("statfs/sync", statfs_and_syncs_ops),
            ("fallocate/lseek/copy", fallocate_lseek_copy_file_range_ops),
            ("locks", posix_and_flock_locks_ops),
            (
                "access/suid",
                access_and_suid_cleared_on_write_by_non_owner_ops,
            ),
            ("unlinked", open_unlinked_ops),
            ("mmap", shared_mmap_ops),
            ("programs", ordinary_programs_ops),
        ];
        for (name, op) in ops {
            let direct_io = args.contains(&"--cache=never") || args.contains(&"--cache=metadata");
            // Direct I/O files cannot be mapped shared (ENODEV) unless DIRECT_IO_ALLOW_MMAP
            // is negotiated (--allow-mmap): by design.
            if name == "mmap" && direct_io && !args.contains(&"--allow-mmap") {
                continue;
            }
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| op(&fx)));
            if r.is_err() {
                failures.push(format!("{args:?}: {name}"));
            }
            // Each op works in fresh names; clear the directories between ops.
            for d in [&fx.mnt, &fx.reference] {
                for e in fs::read_dir(d).unwrap().flatten() {
                    let p = e.path();
                    let _ = fs::remove_dir_all(&p).or_else(|_| fs::remove_file(&p));
                }
            }
        }
    }
    assert!(failures.is_empty(), "failed: {failures:#?}");
}

#[test]
fn uid_map_is_applied_as_a_translation() {
    let Some(fx) = fixture(&["--uid-map=:0:2000:10:", "--gid-map=:0:3000:10:"]) else {
        return;
    };
    let share = c(&fx.share);
    // SAFETY: valid C string.
    assert_eq!(unsafe { libc::chown(share.as_ptr(), 2000, 3000) }, 0);
    fs::write(fx.mnt.join("f"), b"x").unwrap();
    let host = fs::metadata(fx.share.join("f")).unwrap();
    assert_eq!((host.uid(), host.gid()), (2000, 3000));
    let p = c(&fx.mnt.join("f"));
    // SAFETY: valid C string.
    assert_eq!(unsafe { libc::chown(p.as_ptr(), 5, 6) }, 0, "{}", errno());
    let host = fs::metadata(fx.share.join("f")).unwrap();
    assert_eq!((host.uid(), host.gid()), (2005, 3006));
    let guest = fs::metadata(fx.mnt.join("f")).unwrap();
    assert_eq!((guest.uid(), guest.gid()), (5, 6));
}

fixture_test! { open_unlinked_files_and_shared_mmap, open_unlinked_files_and_shared_mmap_ops }

fn open_unlinked_files_and_shared_mmap_ops(fx: &Fixture) {
    open_unlinked_ops(fx);
    shared_mmap_ops(fx);
}

fn open_unlinked_ops(fx: &Fixture) {
    same(fx, "I/O on an open, unlinked file", |d| {
        let p = d.join("gone");
        let mut f = create_rw(&p)?;
        io(fs::remove_file(&p))?;
        io(f.write_all(b"still here"))?;
        io(f.seek(SeekFrom::Start(0)))?;
        let mut back = Vec::new();
        io(f.read_to_end(&mut back))?;
        let m = io(f.metadata())?;
        io(f.set_len(4))?;
        let after = io(f.metadata())?.len();
        Ok::<_, i32>((back, m.nlink(), m.len(), after, lst(&p).map(|_| ())))
    });
}

fn shared_mmap_ops(fx: &Fixture) {
    same(fx, "shared mmap write, then read()", |d| {
        let p = d.join("mapped");
        let f = create_rw(&p)?;
        io(f.set_len(8192))?;
        // SAFETY: mapping 8192 bytes of a file of that size, shared, read-write.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                8192,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(errno());
        }
        // SAFETY: addr maps 8192 writable bytes.
        let map = unsafe { std::slice::from_raw_parts_mut(addr.cast::<u8>(), 8192) };
        map[100..105].copy_from_slice(b"mmap!");
        map[8000] = 7;
        // SAFETY: addr/len are the mapping made above.
        let synced = sys(unsafe { libc::msync(addr, 8192, libc::MS_SYNC) });
        // SAFETY: as above; the slice is not used afterwards.
        unsafe { libc::munmap(addr, 8192) };
        drop(f);
        let data = read_all(&p)?;
        Ok::<_, i32>((synced, data[100..105].to_vec(), data[8000], data.len()))
    });
}

fixture_test! { ordinary_programs_see_the_same_tree, ordinary_programs_ops, "--xattr" }

fn ordinary_programs_ops(fx: &Fixture) {
    let script = r#"
set -e
mkdir -p a/b/c
printf 'hello\n' > a/b/c/file
seq 1 20000 > a/big
ln -s c/file a/b/link
ln a/big a/hard
mkfifo a/fifo
chmod 0751 a/b
cp -a a copy
tar cf t.tar a
mkdir x
tar xf t.tar -C x
mv x/a x/renamed
rm -r copy/b
sed -i 's/^1$/one/' a/big
find . -path ./t.tar -prune -o -printf '%y %m %n %p %l\n' | LC_ALL=C sort
find . -type f -name '*' ! -name t.tar -exec sha256sum {} + | LC_ALL=C sort
wc -c < t.tar
"#;
    same(fx, "a shell script of ordinary programs", |d| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(d)
            .output()
            .map_err(|_| -1)?;
        Ok::<_, i32>((
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    });
    // The script ran to its end in both places (not just failed the same way).
    for d in [&fx.mnt, &fx.reference] {
        assert_eq!(fs::read(d.join("x/renamed/b/c/file")).unwrap(), b"hello\n");
        assert!(d.join("t.tar").exists());
    }
}
