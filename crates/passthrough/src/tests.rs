//! Tests of the passthrough file system against temporary directories, calling the
//! [`FileSystem`] methods directly as the server would.

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use vhostfs_server::abi::init_flags;
use vhostfs_server::{
    Context, DirEntry, Entry, FileSystem, IoFlags, Lock, Name, Opened, SetAttr, SetTime,
    SliceReader, VecWriter, XattrReply, ROOT_INODE,
};

use crate::{CachePolicy, Config, InodeFileHandles, PassthroughFs};

fn root_ctx() -> Context {
    Context::default()
}

/// A caller with `uid` and `gid` and nothing else.
fn caller(uid: u32, gid: u32) -> Context {
    Context {
        uid,
        gid,
        ..Default::default()
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().as_raw() == 0
}

fn name(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn n(c: &CStr) -> Name<'_> {
    Name::new(c).unwrap()
}

fn errno_of<T>(r: io::Result<T>) -> i32 {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.raw_os_error().expect("an errno"),
    }
}

fn new_fs_with(dir: &Path, f: impl FnOnce(&mut Config)) -> PassthroughFs {
    let mut cfg = Config {
        root_dir: dir.to_path_buf(),
        xattr: true,
        announce_submounts: true,
        killpriv_v2: true,
        allow_direct_io: true,
        ..Config::default()
    };
    f(&mut cfg);
    let fs = PassthroughFs::new(cfg).unwrap();
    fs.init(u64::MAX).unwrap();
    fs
}

fn new_fs(dir: &Path) -> PassthroughFs {
    new_fs_with(dir, |_| {})
}

/// A file system on a new empty share, made from [`Config::default`] as `f` edits it (none of
/// the settings [`new_fs_with`] adds), and the flags its `init` (offered everything) returned.
fn init_fs(f: impl FnOnce(&mut Config)) -> (tempfile::TempDir, PassthroughFs, u64) {
    let td = tempfile::tempdir().unwrap();
    let mut cfg = Config {
        root_dir: td.path().to_path_buf(),
        ..Config::default()
    };
    f(&mut cfg);
    let fs = PassthroughFs::new(cfg).unwrap();
    let got = fs.init(u64::MAX).unwrap();
    (td, fs, got)
}

/// A file system (see [`new_fs_with`]) on a new empty share.
fn empty_fs_with(f: impl FnOnce(&mut Config)) -> (tempfile::TempDir, PassthroughFs) {
    let td = tempfile::tempdir().unwrap();
    let fs = new_fs_with(td.path(), f);
    (td, fs)
}

fn empty_fs() -> (tempfile::TempDir, PassthroughFs) {
    empty_fs_with(|_| {})
}

/// A file system (see [`new_fs_with`]) on a new share holding the file `a` with `content`,
/// and the entry of `a` (one lookup).
fn fs_with_file_a(
    content: &[u8],
    f: impl FnOnce(&mut Config),
) -> (tempfile::TempDir, PassthroughFs, Entry) {
    let td = tempfile::tempdir().unwrap();
    std::fs::write(td.path().join("a"), content).unwrap();
    let fs = new_fs_with(td.path(), f);
    let e = lookup(&fs, ROOT_INODE, "a").unwrap();
    (td, fs, e)
}

/// A new share holding the empty files `{prefix}0` .. `{prefix}{count - 1}` (numbers padded
/// to `width` digits).
fn share_with_files(prefix: &str, count: usize, width: usize) -> tempfile::TempDir {
    let td = tempfile::tempdir().unwrap();
    for i in 0..count {
        std::fs::write(td.path().join(format!("{prefix}{i:0width$}")), b"").unwrap();
    }
    td
}

/// A world-writable share for the tests that switch credentials, or `None` when the tests do
/// not run as root (those tests are then skipped).
fn world_writable_share() -> Option<tempfile::TempDir> {
    if !is_root() {
        return None;
    }
    let td = tempfile::tempdir().unwrap();
    std::fs::set_permissions(td.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    Some(td)
}

fn lookup(fs: &PassthroughFs, parent: u64, s: &str) -> io::Result<Entry> {
    let c = name(s);
    fs.lookup(&root_ctx(), parent, n(&c))
}

/// OPEN of `inode` with `flags` (`O_*`) as root; the handle.
fn open_handle(fs: &PassthroughFs, inode: u64, flags: i32) -> u64 {
    fs.open(&root_ctx(), inode, flags as u32, 0).unwrap().handle
}

/// CREATE of `s` in the root directory by `ctx`, with `flags` (`O_*`) and umask 0.
fn create(
    fs: &PassthroughFs,
    ctx: &Context,
    s: &str,
    mode: u32,
    flags: i32,
) -> io::Result<(Entry, Opened)> {
    let c = name(s);
    fs.create(ctx, ROOT_INODE, n(&c), mode, flags as u32, 0, 0)
}

/// READ of at most `size` bytes at `offset` through `handle`, as root: the data.
fn read(
    fs: &PassthroughFs,
    inode: u64,
    handle: u64,
    size: u32,
    offset: u64,
) -> io::Result<Vec<u8>> {
    let mut w = VecWriter::new(size as usize);
    let got = fs.read(
        &root_ctx(),
        inode,
        handle,
        &mut w,
        size,
        offset,
        IoFlags::default(),
    )?;
    assert_eq!(got, w.as_slice().len(), "READ returns what it wrote");
    Ok(w.into_inner())
}

/// WRITE of `data` at `offset` through `handle`, as root: the count.
fn write(
    fs: &PassthroughFs,
    inode: u64,
    handle: u64,
    data: &[u8],
    offset: u64,
    flags: IoFlags,
) -> io::Result<usize> {
    let mut r = SliceReader::new(data);
    let size = data.len() as u32;
    fs.write(&root_ctx(), inode, handle, &mut r, size, offset, flags)
}

/// A POSIX write lock of the bytes `start..=end`.
fn write_lock(start: u64, end: u64, pid: u32) -> Lock {
    Lock {
        start,
        end,
        typ: libc::F_WRLCK as u32,
        pid,
    }
}

/// The unlock of the range of `lock`.
fn unlock(lock: Lock) -> Lock {
    Lock {
        typ: libc::F_UNLCK as u32,
        ..lock
    }
}

/// Permission bits (setuid, setgid and sticky included) of the host file `p`.
fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn readdir_names(fs: &PassthroughFs, dir: u64) -> Vec<String> {
    let h = fs.opendir(&root_ctx(), dir, 0).unwrap().handle;
    let mut out = Vec::new();
    fs.readdir(&root_ctx(), dir, h, 4096, 0, &mut |e: DirEntry<'_>| {
        out.push(String::from_utf8_lossy(e.name).into_owned());
        Ok(true)
    })
    .unwrap();
    fs.releasedir(&root_ctx(), dir, 0, h).unwrap();
    out.sort();
    out
}

fn xattr_list(p: &Path) -> Vec<u8> {
    let c = CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = rustix::fs::listxattr(c.as_c_str(), &mut buf[..]).unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn lookup_getattr_and_forget() {
    let (_td, fs, e) = fs_with_file_a(b"hello", |_| {});
    assert_ne!(e.inode, ROOT_INODE);
    assert_eq!(e.attr.st_size, 5);
    let e2 = lookup(&fs, ROOT_INODE, "a").unwrap();
    assert_eq!(e.inode, e2.inode);
    assert_eq!(fs.inodes.get(e.inode).unwrap().refcount(), 2);
    let a = fs.getattr(&root_ctx(), e.inode, None).unwrap();
    assert_eq!(a.attr.st_ino, e.attr.st_ino);
    fs.forget(e.inode, 1);
    assert!(fs.getattr(&root_ctx(), e.inode, None).is_ok());
    fs.forget(e.inode, 1);
    assert_eq!(
        errno_of(fs.getattr(&root_ctx(), e.inode, None)),
        libc::EBADF
    );
    assert_eq!(fs.inode_count(), 1);
    // Root never goes away.
    fs.forget(ROOT_INODE, 100);
    assert!(fs.getattr(&root_ctx(), ROOT_INODE, None).is_ok());
    // Unknown ids are errors, not panics.
    assert_eq!(errno_of(fs.getattr(&root_ctx(), 12345, None)), libc::EBADF);
    assert_eq!(errno_of(lookup(&fs, 999, "a")), libc::EBADF);
    assert_eq!(errno_of(lookup(&fs, ROOT_INODE, "missing")), libc::ENOENT);
    fs.forget(777, 3);
}

#[test]
fn dotdot_at_root_is_root() {
    let td = tempfile::tempdir().unwrap();
    std::fs::create_dir(td.path().join("d")).unwrap();
    let fs = new_fs(td.path());
    let root_ino = std::fs::metadata(td.path()).unwrap().ino();
    let e = lookup(&fs, ROOT_INODE, "..").unwrap();
    assert_eq!(e.inode, ROOT_INODE);
    assert_eq!(e.attr.st_ino, root_ino);
    let e = lookup(&fs, ROOT_INODE, ".").unwrap();
    assert_eq!(e.inode, ROOT_INODE);
    let d = lookup(&fs, ROOT_INODE, "d").unwrap();
    let up = lookup(&fs, d.inode, "..").unwrap();
    assert_eq!(up.inode, ROOT_INODE);
}

#[test]
fn hard_links_share_an_inode() {
    let (td, fs, a) = fs_with_file_a(b"x", |_| {});
    std::fs::hard_link(td.path().join("a"), td.path().join("b")).unwrap();
    let b = lookup(&fs, ROOT_INODE, "b").unwrap();
    assert_eq!(a.inode, b.inode);
    let c_name = name("c");
    let c = fs
        .link(&root_ctx(), a.inode, ROOT_INODE, n(&c_name))
        .unwrap();
    assert_eq!(c.inode, a.inode);
    assert_eq!(c.attr.st_nlink, 3);
    assert_eq!(fs.inodes.get(a.inode).unwrap().refcount(), 3);
}

#[test]
fn create_write_read_roundtrip() {
    let (td, fs) = empty_fs();
    let f = name("f");
    let (e, o) = fs
        .create(
            &root_ctx(),
            ROOT_INODE,
            n(&f),
            0o644,
            libc::O_RDWR as u32,
            0o022,
            0,
        )
        .unwrap();
    let data = vec![7u8; 100_000];
    let w = write(&fs, e.inode, o.handle, &data, 0, IoFlags::default()).unwrap();
    assert_eq!(w, data.len());
    assert_eq!(read(&fs, e.inode, o.handle, 200_000, 0).unwrap(), data);
    // Read past EOF returns 0.
    assert_eq!(read(&fs, e.inode, o.handle, 10, 200_000).unwrap(), b"");
    fs.flush(&root_ctx(), e.inode, o.handle, 0).unwrap();
    fs.fsync(&root_ctx(), e.inode, true, o.handle).unwrap();
    fs.release(&root_ctx(), e.inode, 0, o.handle, false, false, None)
        .unwrap();
    assert_eq!(
        errno_of(fs.release(&root_ctx(), e.inode, 0, o.handle, false, false, None)),
        libc::EBADF
    );
    let meta = std::fs::metadata(td.path().join("f")).unwrap();
    assert_eq!(meta.len(), 100_000);
    assert_eq!(meta.permissions().mode() & 0o777, 0o644);
    // O_EXCL on an existing file.
    assert_eq!(
        errno_of(create(
            &fs,
            &root_ctx(),
            "f",
            0o644,
            libc::O_RDWR | libc::O_EXCL
        )),
        libc::EEXIST
    );
    // Open + O_TRUNC.
    let h = open_handle(&fs, e.inode, libc::O_WRONLY | libc::O_TRUNC);
    assert_eq!(std::fs::metadata(td.path().join("f")).unwrap().len(), 0);
    fs.release(&root_ctx(), e.inode, 0, h, false, false, None)
        .unwrap();
}

#[test]
fn umask_is_applied() {
    let (_td, fs) = empty_fs();
    let d = name("d");
    let e = fs
        .mkdir(&root_ctx(), ROOT_INODE, n(&d), 0o777, 0o027)
        .unwrap();
    assert_eq!(e.attr.st_mode & 0o7777, 0o750);
    assert_eq!(e.attr.st_mode & libc::S_IFMT, libc::S_IFDIR);
    // The daemon's own umask (the process's, 022 or so) does not mask the guest's mode.
    let d2 = name("d2");
    let e = fs.mkdir(&root_ctx(), ROOT_INODE, n(&d2), 0o777, 0).unwrap();
    assert_eq!(e.attr.st_mode & 0o7777, 0o777);
    let (e, _) = create(&fs, &root_ctx(), "f", 0o666, libc::O_RDWR).unwrap();
    assert_eq!(e.attr.st_mode & 0o7777, 0o666);
}

#[test]
fn mkdir_unlink_rmdir_mknod_symlink() {
    let (td, fs) = empty_fs();
    let ctx = root_ctx();
    let d = name("d");
    let de = fs.mkdir(&ctx, ROOT_INODE, n(&d), 0o755, 0).unwrap();
    let fifo = name("fifo");
    let fe = fs
        .mknod(&ctx, de.inode, n(&fifo), libc::S_IFIFO | 0o600, 0, 0)
        .unwrap();
    assert_eq!(fe.attr.st_mode & libc::S_IFMT, libc::S_IFIFO);
    // Special files are never opened.
    assert_eq!(
        errno_of(fs.open(&ctx, fe.inode, libc::O_RDONLY as u32, 0)),
        libc::ENXIO
    );
    let reg = name("reg");
    let re = fs
        .mknod(&ctx, de.inode, n(&reg), libc::S_IFREG | 0o600, 0, 0)
        .unwrap();
    assert_eq!(re.attr.st_mode & libc::S_IFMT, libc::S_IFREG);
    let l = name("l");
    let le = fs.symlink(&ctx, c"target/x", de.inode, n(&l)).unwrap();
    assert_eq!(le.attr.st_mode & libc::S_IFMT, libc::S_IFLNK);
    assert_eq!(fs.readlink(&ctx, le.inode).unwrap(), b"target/x");
    assert_eq!(errno_of(fs.readlink(&ctx, re.inode)), libc::EINVAL);
    assert_eq!(errno_of(fs.rmdir(&ctx, ROOT_INODE, n(&d))), libc::ENOTEMPTY);
    fs.unlink(&ctx, de.inode, n(&fifo)).unwrap();
    fs.unlink(&ctx, de.inode, n(&reg)).unwrap();
    fs.unlink(&ctx, de.inode, n(&l)).unwrap();
    assert_eq!(readdir_names(&fs, de.inode), vec![".", ".."]);
    fs.rmdir(&ctx, ROOT_INODE, n(&d)).unwrap();
    assert!(!td.path().join("d").exists());
}

#[test]
fn readdir_cookies_resume() {
    let td = share_with_files("file", 50, 2);
    let fs = new_fs(td.path());
    let ctx = root_ctx();
    let h = fs.opendir(&ctx, ROOT_INODE, 0).unwrap().handle;
    let mut names = Vec::new();
    let mut offset = 0;
    loop {
        let mut batch = 0;
        let mut next = offset;
        fs.readdir(&ctx, ROOT_INODE, h, 4096, offset, &mut |e: DirEntry<'_>| {
            if batch == 7 {
                return Ok(false);
            }
            batch += 1;
            names.push(String::from_utf8_lossy(e.name).into_owned());
            next = e.offset;
            Ok(true)
        })
        .unwrap();
        if batch == 0 {
            break;
        }
        offset = next;
    }
    names.sort();
    let mut expected: Vec<String> = (0..50).map(|i| format!("file{i:02}")).collect();
    expected.push(".".into());
    expected.push("..".into());
    expected.sort();
    assert_eq!(names, expected);
    // Rewind.
    let mut count = 0;
    fs.readdir(&ctx, ROOT_INODE, h, 65536, 0, &mut |_| {
        count += 1;
        Ok(true)
    })
    .unwrap();
    assert_eq!(count, 52);
    fs.releasedir(&ctx, ROOT_INODE, 0, h).unwrap();
}

#[test]
fn readdirplus_counts_lookups_and_undoes_refused_entries() {
    let td = share_with_files("f", 5, 1);
    let fs = new_fs(td.path());
    let h = fs.opendir(&root_ctx(), ROOT_INODE, 0).unwrap().handle;
    let mut seen = Vec::new();
    let mut added = 0;
    fs.readdirplus(&root_ctx(), ROOT_INODE, h, 4096, 0, &mut |d, e| {
        if d.name == b"." || d.name == b".." {
            assert_eq!(e.inode, 0);
            return Ok(true);
        }
        if added == 3 {
            return Ok(false);
        }
        added += 1;
        seen.push(e.inode);
        Ok(true)
    })
    .unwrap();
    assert_eq!(seen.len(), 3);
    // Only the three sent entries hold a reference.
    assert_eq!(fs.inode_count(), 4);
    for i in seen {
        assert_eq!(fs.inodes.get(i).unwrap().refcount(), 1);
    }
    fs.releasedir(&root_ctx(), ROOT_INODE, 0, h).unwrap();
}

#[test]
fn rename_flags() {
    let td = tempfile::tempdir().unwrap();
    std::fs::write(td.path().join("a"), b"A").unwrap();
    std::fs::write(td.path().join("b"), b"B").unwrap();
    let fs = new_fs(td.path());
    let ctx = root_ctx();
    let (a, b, c) = (name("a"), name("b"), name("c"));
    assert_eq!(
        errno_of(fs.rename(
            &ctx,
            ROOT_INODE,
            n(&a),
            ROOT_INODE,
            n(&b),
            libc::RENAME_NOREPLACE
        )),
        libc::EEXIST
    );
    fs.rename(
        &ctx,
        ROOT_INODE,
        n(&a),
        ROOT_INODE,
        n(&b),
        libc::RENAME_EXCHANGE,
    )
    .unwrap();
    assert_eq!(std::fs::read(td.path().join("a")).unwrap(), b"B");
    assert_eq!(std::fs::read(td.path().join("b")).unwrap(), b"A");
    fs.rename(&ctx, ROOT_INODE, n(&a), ROOT_INODE, n(&c), 0)
        .unwrap();
    assert_eq!(std::fs::read(td.path().join("c")).unwrap(), b"B");
    assert_eq!(
        errno_of(fs.rename(&ctx, ROOT_INODE, n(&b), ROOT_INODE, n(&c), 1 << 20)),
        libc::EINVAL
    );
}

#[test]
fn setattr_mode_size_times_owner() {
    let (_td, fs, e) = fs_with_file_a(b"hello world", |_| {});
    let ctx = root_ctx();
    let r = fs
        .setattr(
            &ctx,
            e.inode,
            SetAttr {
                mode: Some(0o600),
                size: Some(5),
                atime: Some(SetTime::At {
                    secs: 1000,
                    nsecs: 5,
                }),
                mtime: Some(SetTime::At {
                    secs: 2000,
                    nsecs: 7,
                }),
                uid: Some(1234),
                gid: Some(4321),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(r.attr.st_mode & 0o7777, 0o600);
    assert_eq!(r.attr.st_size, 5);
    assert_eq!(r.attr.st_mtime, 2000);
    assert_eq!(r.attr.st_mtime_nsec, 7);
    assert_eq!(r.attr.st_atime, 1000);
    assert_eq!(r.attr.st_uid, 1234);
    assert_eq!(r.attr.st_gid, 4321);
    // Through a handle, and "now".
    let h = open_handle(&fs, e.inode, libc::O_RDWR);
    let r = fs
        .setattr(
            &ctx,
            e.inode,
            SetAttr {
                size: Some(2),
                mtime: Some(SetTime::Now),
                handle: Some(h),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(r.attr.st_size, 2);
    assert!(r.attr.st_mtime > 2000);
    fs.release(&ctx, e.inode, 0, h, false, false, None).unwrap();
}

/// Found by fuzzing: an owner of -1 (chown's "unchanged") used to panic inside rustix.
#[test]
fn setattr_owner_minus_one_is_refused() {
    let (_td, fs, e) = fs_with_file_a(b"x", |_| {});
    for attr in [
        SetAttr {
            uid: Some(u32::MAX),
            ..Default::default()
        },
        SetAttr {
            gid: Some(u32::MAX),
            ..Default::default()
        },
    ] {
        assert_eq!(
            errno_of(fs.setattr(&root_ctx(), e.inode, attr)),
            libc::EINVAL
        );
    }
}

#[test]
fn planted_symlinks_are_never_followed() {
    let outer = tempfile::tempdir().unwrap();
    let share = outer.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let secret = outer.path().join("secret");
    std::fs::write(&secret, b"secret").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::symlink(&secret, share.join("abs")).unwrap();
    std::os::unix::fs::symlink("../secret", share.join("rel")).unwrap();
    std::os::unix::fs::symlink(outer.path(), share.join("dirlink")).unwrap();
    let fs = new_fs(&share);
    let ctx = root_ctx();
    for link in ["abs", "rel"] {
        let e = lookup(&fs, ROOT_INODE, link).unwrap();
        assert_eq!(e.attr.st_mode & libc::S_IFMT, libc::S_IFLNK);
        for flags in [libc::O_RDONLY, libc::O_WRONLY | libc::O_TRUNC] {
            assert_eq!(
                errno_of(fs.open(&ctx, e.inode, flags as u32, 0)),
                libc::ELOOP
            );
        }
        // chmod of a symlink is refused; truncate too.
        let chmod = SetAttr {
            mode: Some(0o777),
            ..Default::default()
        };
        let truncate = SetAttr {
            size: Some(0),
            ..Default::default()
        };
        for attr in [chmod, truncate] {
            assert!(fs.setattr(&ctx, e.inode, attr).is_err());
        }
        // Times and owner change the link itself.
        fs.setattr(
            &ctx,
            e.inode,
            SetAttr {
                mtime: Some(SetTime::At { secs: 42, nsecs: 0 }),
                uid: Some(99),
                ..Default::default()
            },
        )
        .unwrap();
        // xattrs act on the link (user.* is not allowed on symlinks), never on the target.
        let _ = fs.setxattr(&ctx, e.inode, c"user.evil", b"x", 0, 0);
        assert!(fs.getxattr(&ctx, e.inode, c"user.evil", 0).is_err());
        // The directory fs: lookup through a symlink is impossible.
        assert_eq!(errno_of(lookup(&fs, e.inode, "x")), libc::ENOTDIR);
    }
    let meta = std::fs::metadata(&secret).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o644);
    assert_eq!(meta.len(), 6);
    assert_ne!(meta.mtime(), 42);
    assert_ne!(meta.uid(), 99);
    assert_eq!(xattr_list(&secret), Vec::<u8>::new());
    // Creating through a symlink name fails instead of following it.
    assert!(create(&fs, &ctx, "abs", 0o644, libc::O_WRONLY).is_err());
    assert_eq!(std::fs::read(&secret).unwrap(), b"secret");
    let dl = lookup(&fs, ROOT_INODE, "dirlink").unwrap();
    assert_eq!(errno_of(fs.opendir(&ctx, dl.inode, 0)), libc::ENOTDIR);
}

#[test]
fn xattr_size_probe_and_erange() {
    let (_td, fs, e) = fs_with_file_a(b"", |_| {});
    let ctx = root_ctx();
    fs.setxattr(&ctx, e.inode, c"user.k", b"value", 0, 0)
        .unwrap();
    assert_eq!(
        errno_of(fs.setxattr(&ctx, e.inode, c"user.k", b"v", libc::XATTR_CREATE as u32, 0)),
        libc::EEXIST
    );
    assert_eq!(
        fs.getxattr(&ctx, e.inode, c"user.k", 0).unwrap(),
        XattrReply::Size(5)
    );
    assert_eq!(
        errno_of(fs.getxattr(&ctx, e.inode, c"user.k", 2)),
        libc::ERANGE
    );
    assert_eq!(
        fs.getxattr(&ctx, e.inode, c"user.k", 100).unwrap(),
        XattrReply::Data(b"value".to_vec())
    );
    assert_eq!(fs.listxattr(&ctx, e.inode, 0).unwrap(), XattrReply::Size(7));
    assert_eq!(errno_of(fs.listxattr(&ctx, e.inode, 3)), libc::ERANGE);
    assert_eq!(
        fs.listxattr(&ctx, e.inode, 100).unwrap(),
        XattrReply::Data(b"user.k\0".to_vec())
    );
    fs.removexattr(&ctx, e.inode, c"user.k").unwrap();
    assert_eq!(
        errno_of(fs.getxattr(&ctx, e.inode, c"user.k", 0)),
        libc::ENODATA
    );
    // Directories too.
    fs.setxattr(&ctx, ROOT_INODE, c"user.d", b"1", 0, 0)
        .unwrap();
    assert_eq!(
        fs.getxattr(&ctx, ROOT_INODE, c"user.d", 0).unwrap(),
        XattrReply::Size(1)
    );
}

#[test]
fn xattr_disabled_is_enosys() {
    let (_td, fs) = empty_fs_with(|c| c.xattr = false);
    let ctx = root_ctx();
    assert_eq!(
        errno_of(fs.getxattr(&ctx, ROOT_INODE, c"user.x", 0)),
        libc::ENOSYS
    );
    assert_eq!(errno_of(fs.listxattr(&ctx, ROOT_INODE, 0)), libc::ENOSYS);
    assert_eq!(
        errno_of(fs.setxattr(&ctx, ROOT_INODE, c"user.x", b"", 0, 0)),
        libc::ENOSYS
    );
    assert_eq!(
        errno_of(fs.removexattr(&ctx, ROOT_INODE, c"user.x")),
        libc::ENOSYS
    );
}

#[test]
fn readonly_refuses_modifications() {
    let (td, fs, e) = fs_with_file_a(b"data", |c| c.readonly = true);
    let ctx = root_ctx();
    let x = name("x");
    let a = name("a");
    assert_eq!(
        errno_of(fs.mkdir(&ctx, ROOT_INODE, n(&x), 0o755, 0)),
        libc::EROFS
    );
    assert_eq!(
        errno_of(create(&fs, &ctx, "x", 0o644, libc::O_RDWR)),
        libc::EROFS
    );
    assert_eq!(errno_of(fs.unlink(&ctx, ROOT_INODE, n(&a))), libc::EROFS);
    assert_eq!(
        errno_of(fs.setattr(
            &ctx,
            e.inode,
            SetAttr {
                size: Some(0),
                ..Default::default()
            }
        )),
        libc::EROFS
    );
    for flags in [libc::O_RDWR, libc::O_RDONLY | libc::O_TRUNC] {
        assert_eq!(
            errno_of(fs.open(&ctx, e.inode, flags as u32, 0)),
            libc::EROFS
        );
    }
    assert_eq!(
        errno_of(fs.setxattr(&ctx, e.inode, c"user.a", b"", 0, 0)),
        libc::EROFS
    );
    let h = open_handle(&fs, e.inode, libc::O_RDONLY);
    assert_eq!(
        errno_of(write(&fs, e.inode, h, b"zz", 0, IoFlags::default())),
        libc::EROFS
    );
    assert_eq!(read(&fs, e.inode, h, 100, 0).unwrap(), b"data");
    assert_eq!(std::fs::read(td.path().join("a")).unwrap(), b"data");
}

#[test]
fn limits_give_emfile_and_enfile() {
    let td = share_with_files("f", 4, 1);
    let fs = new_fs_with(td.path(), |c| {
        c.max_inodes = Some(3);
        c.max_open_fds = Some(2);
    });
    let ctx = root_ctx();
    let a = lookup(&fs, ROOT_INODE, "f0").unwrap();
    let b = lookup(&fs, ROOT_INODE, "f1").unwrap();
    assert_eq!(errno_of(lookup(&fs, ROOT_INODE, "f2")), libc::ENFILE);
    // Known inodes can still be looked up.
    assert!(lookup(&fs, ROOT_INODE, "f0").is_ok());
    fs.forget(b.inode, 1);
    assert!(lookup(&fs, ROOT_INODE, "f2").is_ok());
    let h1 = open_handle(&fs, a.inode, libc::O_RDONLY);
    let _h2 = open_handle(&fs, a.inode, libc::O_RDONLY);
    assert_eq!(
        errno_of(fs.open(&ctx, a.inode, libc::O_RDONLY as u32, 0)),
        libc::EMFILE
    );
    assert_eq!(errno_of(fs.opendir(&ctx, ROOT_INODE, 0)), libc::EMFILE);
    fs.release(&ctx, a.inode, 0, h1, false, false, None)
        .unwrap();
    assert!(fs.opendir(&ctx, ROOT_INODE, 0).is_ok());
}

#[test]
fn ofd_locks_conflict_between_handles() {
    let (_td, fs, e) = fs_with_file_a(b"0123456789", |_| {});
    let ctx = root_ctx();
    let h1 = open_handle(&fs, e.inode, libc::O_RDWR);
    let h2 = open_handle(&fs, e.inode, libc::O_RDWR);
    let wr = write_lock(0, 4, 1);
    fs.setlk(&ctx, e.inode, h1, 1, wr, false, false).unwrap();
    assert_eq!(
        errno_of(fs.setlk(&ctx, e.inode, h2, 2, wr, false, false)),
        libc::EAGAIN
    );
    let got = fs.getlk(&ctx, e.inode, h2, 2, wr, false).unwrap();
    assert_eq!(got.typ, libc::F_WRLCK as u32);
    assert_eq!((got.start, got.end), (0, 4));
    // A non-overlapping range is free.
    let other = write_lock(5, u64::MAX, 1);
    fs.setlk(&ctx, e.inode, h2, 2, other, false, false).unwrap();
    let free = fs.getlk(&ctx, e.inode, h1, 1, wr, false).unwrap();
    assert_eq!(free.typ, libc::F_UNLCK as u32);
    // Unlock and retry.
    fs.setlk(&ctx, e.inode, h1, 1, unlock(wr), false, false)
        .unwrap();
    fs.setlk(&ctx, e.inode, h2, 2, wr, false, false).unwrap();
    // Closing (FLUSH by owner 2, then RELEASE) drops owner 2's locks.
    fs.flush(&ctx, e.inode, h2, 2).unwrap();
    fs.release(&ctx, e.inode, 0, h2, false, false, None)
        .unwrap();
    fs.setlk(&ctx, e.inode, h1, 1, wr, false, false).unwrap();
    // flock.
    let h3 = open_handle(&fs, e.inode, libc::O_RDONLY);
    fs.setlk(&ctx, e.inode, h1, 1, wr, true, false).unwrap();
    assert_eq!(
        errno_of(fs.setlk(&ctx, e.inode, h3, 3, wr, true, false)),
        libc::EWOULDBLOCK
    );
}

#[test]
fn fallocate_lseek_copy_file_range_statfs_access() {
    let (td, fs) = empty_fs();
    let ctx = root_ctx();
    let (ea, oa) = create(&fs, &ctx, "a", 0o644, libc::O_RDWR).unwrap();
    let (eb, ob) = create(&fs, &ctx, "b", 0o644, libc::O_RDWR).unwrap();
    fs.fallocate(&ctx, ea.inode, oa.handle, 0, 0, 1 << 20)
        .unwrap();
    assert_eq!(
        std::fs::metadata(td.path().join("a")).unwrap().len(),
        1 << 20
    );
    fs.fallocate(
        &ctx,
        ea.inode,
        oa.handle,
        (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE) as u32,
        0,
        4096,
    )
    .unwrap();
    write(
        &fs,
        ea.inode,
        oa.handle,
        b"abcdef",
        8192,
        IoFlags::default(),
    )
    .unwrap();
    let data = fs
        .lseek(&ctx, ea.inode, oa.handle, 0, libc::SEEK_DATA as u32)
        .unwrap();
    assert!(data <= 8192);
    let n = fs
        .copy_file_range(
            &ctx, ea.inode, oa.handle, 8192, eb.inode, ob.handle, 0, 6, 0,
        )
        .unwrap();
    assert_eq!(n, 6);
    assert_eq!(std::fs::read(td.path().join("b")).unwrap(), b"abcdef");
    assert_eq!(
        errno_of(fs.lseek(&ctx, ea.inode, oa.handle, 0, 99)),
        libc::EINVAL
    );
    let st = fs.statfs(&ctx, ROOT_INODE).unwrap();
    assert!(st.f_bsize > 0);
    fs.access(&ctx, ea.inode, libc::R_OK as u32).unwrap();
    fs.syncfs(&ctx, ROOT_INODE).unwrap();
    // Wrong inode for a handle.
    assert_eq!(errno_of(read(&fs, eb.inode, oa.handle, 1, 0)), libc::EBADF);
}

#[test]
fn tmpfile_creates_unnamed_file() {
    let (td, fs) = empty_fs();
    let ctx = root_ctx();
    let (e, o) = match fs.tmpfile(&ctx, ROOT_INODE, 0o600, libc::O_RDWR as u32, 0) {
        Ok(x) => x,
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(e.attr.st_mode & libc::S_IFMT, libc::S_IFREG);
    write(&fs, e.inode, o.handle, b"tmp", 0, IoFlags::default()).unwrap();
    assert_eq!(readdir_names(&fs, ROOT_INODE), vec![".", ".."]);
    let l = name("named");
    fs.link(&ctx, e.inode, ROOT_INODE, n(&l)).unwrap();
    assert_eq!(std::fs::read(td.path().join("named")).unwrap(), b"tmp");
}

#[test]
fn init_negotiates_configured_flags() {
    let (td, fs, got) = init_fs(|c| {
        c.writeback = true;
        c.cache = CachePolicy::Always;
    });
    assert_ne!(got & init_flags::WRITEBACK_CACHE, 0);
    assert_ne!(got & init_flags::POSIX_LOCKS, 0);
    assert_ne!(got & init_flags::DO_READDIRPLUS, 0);
    assert_eq!(got & init_flags::POSIX_ACL, 0);
    let limited = fs.init(init_flags::POSIX_LOCKS).unwrap();
    assert_eq!(limited, init_flags::POSIX_LOCKS);
    // With writeback, a write-only open must be readable by the host fd.
    std::fs::write(td.path().join("a"), b"xyz").unwrap();
    fs.init(u64::MAX).unwrap();
    let e = lookup(&fs, ROOT_INODE, "a").unwrap();
    let o = fs
        .open(&root_ctx(), e.inode, libc::O_WRONLY as u32, 0)
        .unwrap();
    assert_ne!(o.open_flags & vhostfs_server::abi::fopen::KEEP_CACHE, 0);
    assert_eq!(read(&fs, e.inode, o.handle, 3, 0).unwrap(), b"xyz");
}

#[test]
fn file_handles_mode_works() {
    let td = tempfile::tempdir().unwrap();
    std::fs::create_dir(td.path().join("d")).unwrap();
    std::fs::write(td.path().join("d/f"), b"abc").unwrap();
    let fs = new_fs_with(td.path(), |c| {
        c.inode_file_handles = InodeFileHandles::Prefer
    });
    let d = lookup(&fs, ROOT_INODE, "d").unwrap();
    let f = lookup(&fs, d.inode, "f").unwrap();
    let h = open_handle(&fs, f.inode, libc::O_RDONLY);
    assert_eq!(read(&fs, f.inode, h, 10, 0).unwrap(), b"abc");
    assert_eq!(readdir_names(&fs, d.inode), vec![".", "..", "f"]);
}

#[test]
fn destroy_drops_everything_but_root() {
    let (_td, fs, e) = fs_with_file_a(b"", |_| {});
    let _h = open_handle(&fs, e.inode, 0);
    fs.destroy();
    assert_eq!(fs.inode_count(), 1);
    assert_eq!(fs.handle_count(), 0);
    assert!(lookup(&fs, ROOT_INODE, "a").is_ok());
}

#[test]
fn creds_switch_sets_owner() {
    creds_switch_sets_owner_with(InodeFileHandles::Never);
}

#[test]
fn creds_switch_sets_owner_with_file_handles() {
    creds_switch_sets_owner_with(InodeFileHandles::Mandatory);
}

fn creds_switch_sets_owner_with(handles: InodeFileHandles) {
    let Some(td) = world_writable_share() else {
        return;
    };
    let fs = new_fs_with(td.path(), |c| c.inode_file_handles = handles);
    let ctx = caller(1000, 1001);
    let (e, _) = create(&fs, &ctx, "owned", 0o644, libc::O_RDWR).unwrap();
    assert_eq!((e.attr.st_uid, e.attr.st_gid), (1000, 1001));
    let d = name("dir");
    let e = fs.mkdir(&ctx, ROOT_INODE, n(&d), 0o700, 0).unwrap();
    assert_eq!((e.attr.st_uid, e.attr.st_gid), (1000, 1001));
    // The thread is back to root afterwards.
    std::fs::write(td.path().join("rootfile"), b"").unwrap();
    assert_eq!(
        std::fs::metadata(td.path().join("rootfile")).unwrap().uid(),
        0
    );
    // A private directory of uid 1000 is not accessible to uid 2000.
    let other = caller(2000, 2000);
    assert_eq!(
        errno_of(fs.access(&other, e.inode, libc::R_OK as u32)),
        libc::EACCES
    );
    fs.access(&ctx, e.inode, libc::R_OK as u32).unwrap();
    let x = name("x");
    assert_eq!(
        errno_of(fs.mknod(&other, e.inode, n(&x), libc::S_IFREG | 0o600, 0, 0)),
        libc::EACCES
    );
}

#[test]
fn id_map_applies_to_creation_setattr_and_stat() {
    let Some(td) = world_writable_share() else {
        return;
    };
    let map =
        crate::idmap::IdMap::from_specs(["map:1000:101000:10"], ["map:1000:201000:10"]).unwrap();
    let fs = new_fs_with(td.path(), |c| c.id_map = Some(map));
    let (e, _) = create(&fs, &caller(1001, 1002), "f", 0o644, libc::O_RDWR).unwrap();
    // The guest sees its own ids, the host the mapped ones.
    assert_eq!((e.attr.st_uid, e.attr.st_gid), (1001, 1002));
    let meta = std::fs::metadata(td.path().join("f")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (101001, 201002));
    let r = fs
        .setattr(
            &root_ctx(),
            e.inode,
            SetAttr {
                uid: Some(1005),
                gid: Some(1006),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!((r.attr.st_uid, r.attr.st_gid), (1005, 1006));
    let meta = std::fs::metadata(td.path().join("f")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (101005, 201006));
}

#[test]
fn xattr_map_translates_and_filters() {
    let map = crate::xattrmap::parse(":prefix:all:user.:user.virtiofs.: :bad:all:::").unwrap();
    let (td, fs, e) = fs_with_file_a(b"", |c| c.xattr_map = Some(map));
    let ctx = root_ctx();
    fs.setxattr(&ctx, e.inode, c"user.k", b"v", 0, 0).unwrap();
    // Stored under the prefixed name on the host.
    let host = xattr_list(&td.path().join("a"));
    assert_eq!(host, b"user.virtiofs.user.k\0");
    assert_eq!(
        fs.getxattr(&ctx, e.inode, c"user.k", 10).unwrap(),
        XattrReply::Data(b"v".to_vec())
    );
    assert_eq!(
        fs.listxattr(&ctx, e.inode, 100).unwrap(),
        XattrReply::Data(b"user.k\0".to_vec())
    );
    assert_eq!(fs.listxattr(&ctx, e.inode, 0).unwrap(), XattrReply::Size(7));
    // Refused names look absent to getxattr and are refused to setxattr.
    assert_eq!(
        errno_of(fs.getxattr(&ctx, e.inode, c"trusted.x", 10)),
        libc::ENODATA
    );
    assert_eq!(
        errno_of(fs.setxattr(&ctx, e.inode, c"trusted.x", b"", 0, 0)),
        libc::EPERM
    );
}

#[test]
fn killpriv_v2_clears_setuid_on_write_and_trunc() {
    let td = tempfile::tempdir().unwrap();
    let p = td.path().join("suid");
    std::fs::write(&p, b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o6755)).unwrap();
    let fs = new_fs(td.path());
    let ctx = root_ctx();
    let e = lookup(&fs, ROOT_INODE, "suid").unwrap();
    let h = open_handle(&fs, e.inode, libc::O_RDWR);
    // A write without the flag keeps the bits (the daemon has CAP_FSETID).
    write(&fs, e.inode, h, b"x", 0, IoFlags::default()).unwrap();
    assert_eq!(mode_of(&p), 0o6755);
    let flags = IoFlags {
        kill_suidgid: true,
        ..Default::default()
    };
    write(&fs, e.inode, h, b"y", 0, flags).unwrap();
    assert_eq!(mode_of(&p), 0o755);
    // Open with O_TRUNC and OPEN_KILL_SUIDGID.
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let o2 = fs
        .open(
            &ctx,
            e.inode,
            (libc::O_WRONLY | libc::O_TRUNC) as u32,
            vhostfs_server::abi::flags::OPEN_KILL_SUIDGID,
        )
        .unwrap();
    assert_eq!(mode_of(&p), 0o755);
    // SETATTR with kill_suidgid (truncate by a non-owner).
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o2775)).unwrap();
    fs.setattr(
        &ctx,
        e.inode,
        SetAttr {
            size: Some(0),
            kill_suidgid: true,
            handle: Some(o2.handle),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(mode_of(&p), 0o775);
}

#[test]
fn dot_names_are_refused_for_modifications() {
    let td = tempfile::tempdir().unwrap();
    std::fs::create_dir(td.path().join("d")).unwrap();
    let fs = new_fs(td.path());
    let ctx = root_ctx();
    let d = lookup(&fs, ROOT_INODE, "d").unwrap();
    for dot in [c".", c".."] {
        let nm = n(dot);
        assert!(fs.mkdir(&ctx, d.inode, nm, 0o755, 0).is_err());
        assert!(fs.unlink(&ctx, d.inode, nm).is_err());
        assert!(fs.rmdir(&ctx, d.inode, nm).is_err());
        assert!(fs.symlink(&ctx, c"x", d.inode, nm).is_err());
        assert!(fs
            .create(&ctx, d.inode, nm, 0o644, libc::O_RDWR as u32, 0, 0)
            .is_err());
        let x = name("x");
        assert!(fs.rename(&ctx, d.inode, nm, ROOT_INODE, n(&x), 0).is_err());
    }
    assert!(td.path().join("d").is_dir());
    assert_eq!(readdir_names(&fs, ROOT_INODE), vec![".", "..", "d"]);
}

#[test]
fn submounts_are_announced() {
    let td = tempfile::tempdir().unwrap();
    let sub = td.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    if rustix::mount::mount(
        "tmpfs",
        &sub,
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        None,
    )
    .is_err()
    {
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = rustix::mount::unmount(self.0, rustix::mount::UnmountFlags::DETACH);
        }
    }
    let _guard = Unmount(&sub);
    std::fs::create_dir(td.path().join("plain")).unwrap();
    let fs = new_fs(td.path());
    let s = lookup(&fs, ROOT_INODE, "sub").unwrap();
    assert_eq!(s.attr_flags, crate::sys::FUSE_ATTR_SUBMOUNT);
    let p = lookup(&fs, ROOT_INODE, "plain").unwrap();
    assert_eq!(p.attr_flags, 0);
    let fs = new_fs_with(td.path(), |c| c.announce_submounts = false);
    assert_eq!(lookup(&fs, ROOT_INODE, "sub").unwrap().attr_flags, 0);
}

extern "C" fn noop_handler(_: libc::c_int) {}

#[test]
fn setlkw_blocks_and_is_interruptible() {
    use std::sync::Arc;
    let (_td, fs, e) = fs_with_file_a(b"x", |_| {});
    let fs = Arc::new(fs);
    let ctx = root_ctx();
    let h1 = open_handle(&fs, e.inode, libc::O_RDWR);
    let h2 = open_handle(&fs, e.inode, libc::O_RDWR);
    let wr = write_lock(0, u64::MAX, 0);
    fs.setlk(&ctx, e.inode, h1, 1, wr, false, false).unwrap();
    // SIGUSR2 with a handler that does not restart system calls.
    // SAFETY: installing a no-op handler for SIGUSR2, which nothing else in the tests uses.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = noop_handler as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        sa.sa_flags = 0;
        libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut());
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let fs2 = fs.clone();
    let ino = e.inode;
    let t = std::thread::spawn(move || {
        // SAFETY: pthread_self has no preconditions.
        tx.send(unsafe { libc::pthread_self() }).unwrap();
        fs2.setlk(&root_ctx(), ino, h2, 2, wr, false, true)
    });
    let tid = rx.recv().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!t.is_finished());
    // SAFETY: the thread is alive (it has not finished, checked above) and joined below.
    unsafe { libc::pthread_kill(tid, libc::SIGUSR2) };
    let r = t.join().unwrap();
    assert_eq!(errno_of(r), libc::EINTR);
    // Now let a waiter through by unlocking.
    let fs3 = fs.clone();
    let t = std::thread::spawn(move || fs3.setlk(&root_ctx(), ino, h2, 2, wr, false, true));
    std::thread::sleep(std::time::Duration::from_millis(100));
    fs.setlk(&ctx, e.inode, h1, 1, unlock(wr), false, false)
        .unwrap();
    t.join().unwrap().unwrap();
}

#[test]
fn posix_acl_mode_uses_thread_umask() {
    let (_td, fs, got) = init_fs(|c| {
        c.posix_acl = true;
        c.xattr = true;
    });
    assert_ne!(got & init_flags::POSIX_ACL, 0);
    assert_ne!(got & init_flags::DONT_MASK, 0);
    let d = name("d");
    // No default ACL on the parent: the umask applies.
    let e = fs
        .mkdir(&root_ctx(), ROOT_INODE, n(&d), 0o777, 0o022)
        .unwrap();
    assert_eq!(e.attr.st_mode & 0o777, 0o755);
    // The thread's umask does not leak into the next creation.
    let d2 = name("d2");
    let e = fs.mkdir(&root_ctx(), ROOT_INODE, n(&d2), 0o777, 0).unwrap();
    assert_eq!(e.attr.st_mode & 0o777, 0o777);
}

#[test]
fn file_handles_detect_reused_inode_numbers() {
    let (td, fs, a) = fs_with_file_a(b"old", |c| {
        c.inode_file_handles = InodeFileHandles::Mandatory
    });
    std::fs::remove_file(td.path().join("a")).unwrap();
    // Try a few times to get the inode number reused by a new file.
    for i in 0..20 {
        let p = td.path().join(format!("b{i}"));
        std::fs::write(&p, b"new").unwrap();
        if std::fs::metadata(&p).unwrap().ino() == a.attr.st_ino {
            let b = lookup(&fs, ROOT_INODE, &format!("b{i}")).unwrap();
            assert_ne!(b.inode, a.inode);
            let h = open_handle(&fs, b.inode, 0);
            assert_eq!(read(&fs, b.inode, h, 10, 0).unwrap(), b"new");
            return;
        }
    }
}

#[test]
fn create_never_opens_special_files() {
    let (td, fs) = empty_fs();
    let ctx = root_ctx();
    let fifo = name("fifo");
    fs.mknod(&ctx, ROOT_INODE, n(&fifo), libc::S_IFIFO | 0o666, 0, 0)
        .unwrap();
    // O_WRONLY on a fifo without a reader would block forever if it were opened.
    assert_eq!(
        errno_of(create(&fs, &ctx, "fifo", 0o644, libc::O_WRONLY)),
        libc::ENXIO
    );
    std::fs::create_dir(td.path().join("d")).unwrap();
    assert_eq!(
        errno_of(create(&fs, &ctx, "d", 0o644, libc::O_RDWR)),
        libc::EISDIR
    );
    // An existing regular file is opened (and truncated when asked).
    std::fs::write(td.path().join("f"), b"content").unwrap();
    let (e, o) = create(&fs, &ctx, "f", 0o644, libc::O_RDWR | libc::O_TRUNC).unwrap();
    assert_eq!(std::fs::metadata(td.path().join("f")).unwrap().len(), 0);
    fs.release(&ctx, e.inode, 0, o.handle, false, false, None)
        .unwrap();
    // Failed creates leave no lookup references behind: root, fifo (from MKNOD) and f.
    assert_eq!(fs.inode_count(), 3);
}

#[test]
fn create_of_existing_file_checks_caller_access() {
    let Some(td) = world_writable_share() else {
        return;
    };
    std::fs::write(td.path().join("rootonly"), b"secret").unwrap();
    std::fs::set_permissions(
        td.path().join("rootonly"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let fs = new_fs(td.path());
    assert_eq!(
        errno_of(create(
            &fs,
            &caller(1000, 1000),
            "rootonly",
            0o644,
            libc::O_RDWR
        )),
        libc::EACCES
    );
    assert_eq!(fs.inode_count(), 1);
}

#[test]
fn security_context_is_set_on_new_inodes() {
    let (td, fs) = empty_fs_with(|c| c.security_label = true);
    let ctx = Context {
        security_ctx: Some(vhostfs_server::SecurityContext {
            name: CString::new("user.label").unwrap(),
            value: b"lbl".to_vec(),
        }),
        ..Default::default()
    };
    create(&fs, &ctx, "f", 0o644, libc::O_RDWR).unwrap();
    let d = name("d");
    fs.mkdir(&ctx, ROOT_INODE, n(&d), 0o755, 0).unwrap();
    for p in ["f", "d"] {
        assert_eq!(xattr_list(&td.path().join(p)), b"user.label\0");
    }
}

#[test]
fn concurrent_lookups_and_forgets_keep_counts_exact() {
    use std::sync::Arc;
    let td = share_with_files("f", 8, 1);
    let fs = Arc::new(new_fs(td.path()));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let fs = fs.clone();
            std::thread::spawn(move || {
                for round in 0..500 {
                    let name = format!("f{}", (round + t) % 8);
                    let e = lookup(&fs, ROOT_INODE, &name).unwrap();
                    let h = open_handle(&fs, e.inode, 0);
                    fs.getattr(&root_ctx(), e.inode, Some(h)).unwrap();
                    fs.release(&root_ctx(), e.inode, 0, h, false, false, None)
                        .unwrap();
                    fs.forget(e.inode, 1);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(fs.inode_count(), 1);
    assert_eq!(fs.handle_count(), 0);
}

#[test]
fn posix_locks_follow_lock_owners() {
    let (td, fs, e) = fs_with_file_a(b"0123456789", |_| {});
    let ctx = root_ctx();
    let open = |flags: i32| open_handle(&fs, e.inode, flags);
    let (a1, a2, b) = (open(libc::O_RDWR), open(libc::O_RDWR), open(libc::O_RDWR));
    let wr = write_lock(0, 9, 0);
    // Owner A locks through one handle; its other handle does not conflict (one process).
    fs.setlk(&ctx, e.inode, a1, 0xA, wr, false, false).unwrap();
    fs.setlk(&ctx, e.inode, a2, 0xA, wr, false, false).unwrap();
    assert_eq!(
        fs.getlk(&ctx, e.inode, a2, 0xA, wr, false).unwrap().typ,
        libc::F_UNLCK as u32
    );
    // Owner B conflicts, through any handle.
    assert_eq!(
        errno_of(fs.setlk(&ctx, e.inode, b, 0xB, wr, false, false)),
        libc::EAGAIN
    );
    assert_eq!(
        errno_of(fs.setlk(&ctx, e.inode, a1, 0xB, wr, false, false)),
        libc::EAGAIN
    );
    // Host processes see the lock too.
    let host = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(td.path().join("a"))
        .unwrap();
    let fl = crate::sys::ofd_lock(
        std::os::fd::AsFd::as_fd(&host),
        libc::F_OFD_GETLK,
        libc::F_WRLCK as i16,
        0,
        1,
    )
    .unwrap();
    assert_eq!(fl.l_type, libc::F_WRLCK as i16);
    // Owner A closes *another* descriptor: like a local close, all of A's locks go.
    fs.flush(&ctx, e.inode, a2, 0xA).unwrap();
    fs.setlk(&ctx, e.inode, b, 0xB, wr, false, false).unwrap();
    // A write lock needs a handle open for writing.
    let ro = open(libc::O_RDONLY);
    assert_eq!(
        errno_of(fs.setlk(&ctx, e.inode, ro, 0xC, wr, false, false)),
        libc::EBADF
    );
    // Guest OFD locks: owner = the open file, dropped at RELEASE.
    fs.setlk(&ctx, e.inode, b, 0xB, unlock(wr), false, false)
        .unwrap();
    fs.setlk(&ctx, e.inode, a1, 0xF11E, wr, false, false)
        .unwrap();
    assert_eq!(
        errno_of(fs.setlk(&ctx, e.inode, b, 0xB, wr, false, false)),
        libc::EAGAIN
    );
    fs.release(&ctx, e.inode, 0, a1, false, false, None)
        .unwrap();
    fs.setlk(&ctx, e.inode, b, 0xB, wr, false, false).unwrap();
    // Lock descriptions go away with the inode.
    fs.forget(e.inode, 1);
    fs.destroy();
    assert_eq!(
        fs.lock_fd_count.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[test]
fn cache_policies_set_open_flags_and_readdirplus() {
    use vhostfs_server::abi::fopen;
    let td = tempfile::tempdir().unwrap();
    std::fs::write(td.path().join("a"), b"").unwrap();
    for (policy, file_flags, dir_flags, rdplus) in [
        (CachePolicy::Never, fopen::DIRECT_IO, 0, false),
        (
            CachePolicy::Metadata,
            fopen::DIRECT_IO,
            fopen::KEEP_CACHE | fopen::CACHE_DIR,
            true,
        ),
        (CachePolicy::Auto, 0, 0, true),
        (
            CachePolicy::Always,
            fopen::KEEP_CACHE,
            fopen::KEEP_CACHE | fopen::CACHE_DIR,
            true,
        ),
    ] {
        let fs = new_fs_with(td.path(), |c| c.cache = policy);
        let got = fs.init(u64::MAX).unwrap();
        assert_eq!(got & init_flags::DO_READDIRPLUS != 0, rdplus, "{policy:?}");
        let e = lookup(&fs, ROOT_INODE, "a").unwrap();
        let o = fs.open(&root_ctx(), e.inode, 0, 0).unwrap();
        assert_eq!(o.open_flags, file_flags, "{policy:?}");
        let d = fs.opendir(&root_ctx(), ROOT_INODE, 0).unwrap();
        assert_eq!(d.open_flags, dir_flags, "{policy:?}");
        assert_eq!(e.entry_timeout, policy.timeout());
    }
}

#[test]
fn supplementary_group_grants_access_to_the_parent() {
    if !is_root() {
        return;
    }
    let td = tempfile::tempdir().unwrap();
    let dir = td.path().join("team");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o770)).unwrap();
    std::os::unix::fs::chown(&dir, Some(0), Some(5000)).unwrap();
    let fs = new_fs(td.path());
    let d = lookup(&fs, ROOT_INODE, "team").unwrap();
    let mut ctx = caller(1000, 1000);
    let f = name("f");
    assert_eq!(
        errno_of(fs.mknod(&ctx, d.inode, n(&f), libc::S_IFREG | 0o644, 0, 0)),
        libc::EACCES
    );
    ctx.supplementary_gid = Some(5000);
    let e = fs
        .mknod(&ctx, d.inode, n(&f), libc::S_IFREG | 0o644, 0, 0)
        .unwrap();
    assert_eq!((e.attr.st_uid, e.attr.st_gid), (1000, 1000));
    // The thread's groups are back to the daemon's afterwards.
    let groups = rustix::process::getgroups().unwrap();
    assert!(!groups.iter().any(|g| g.as_raw() == 5000));
}

#[test]
fn hostile_ids_fail_closed() {
    if !is_root() {
        return;
    }
    let (td, fs) = empty_fs();
    // uid -1 cannot be switched to: refuse rather than create as root.
    let ctx = caller(u32::MAX, 0);
    let f = name("f");
    assert_eq!(
        errno_of(fs.mknod(&ctx, ROOT_INODE, n(&f), libc::S_IFREG | 0o644, 0, 0)),
        libc::EPERM
    );
    assert!(!td.path().join("f").exists());
}
