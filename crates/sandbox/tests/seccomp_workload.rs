//! Runs a representative workload of the daemon's syscalls under the `kill` seccomp filter in a
//! child process (which must exit 0), and checks that a forbidden syscall kills a child with
//! `SIGSYS`.
//!
//! The test binary re-executes itself with `--child <case>`; the parent only checks statuses.

use std::ffi::{CStr, CString};
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};

use vhostfs_sandbox::{install_seccomp, SeccompAction};

fn check(what: &str, rc: libc::c_long) {
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        // Errors are fine (the file system may not support the call); only the filter matters.
        eprintln!("  {what}: {e}");
    }
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// Creates (or opens) `name` in the directory `dfd` for reading and writing; the descriptor,
/// or -1.
fn create_at(dfd: RawFd, name: &CStr) -> RawFd {
    // SAFETY: `name` is a valid NUL-terminated string that openat only reads during the call;
    // a bad `dfd` only makes it fail.
    unsafe {
        libc::openat(
            dfd,
            name.as_ptr(),
            libc::O_CREAT | libc::O_RDWR | libc::O_CLOEXEC,
            0o644,
        )
    }
}

static SIGNALS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_usr1(_: libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

/// The raw `*at`, file-handle, xattr and locking syscalls the passthrough file system makes.
///
/// # Safety
///
/// Only to be called from the workload child: it makes raw syscalls whose pointer arguments all
/// point to live local buffers and whose descriptors are created and closed here.
unsafe fn raw_at_syscalls(dir: &std::path::Path) {
    // --- raw *at syscalls, as the passthrough file system makes them
    let dirc = cstr(dir.to_str().unwrap());
    let dfd = libc::open(
        dirc.as_ptr(),
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
    );
    assert!(dfd >= 0);
    let name = cstr("x");
    let fd = create_at(dfd, &name);
    assert!(fd >= 0);
    let mut how: libc::open_how = std::mem::zeroed();
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    let fd2 = libc::syscall(
        libc::SYS_openat2,
        dfd,
        name.as_ptr(),
        &how,
        std::mem::size_of::<libc::open_how>(),
    );
    check("openat2", fd2);
    if fd2 >= 0 {
        libc::close(fd2 as RawFd);
    }
    check("fallocate", libc::fallocate(fd, 0, 0, 4096) as _);
    check("ftruncate", libc::ftruncate(fd, 8192) as _);
    let iov = [libc::iovec {
        iov_base: b"abcd".as_ptr() as *mut _,
        iov_len: 4,
    }];
    check("pwritev", libc::pwritev(fd, iov.as_ptr(), 1, 100) as _);
    let mut rb = [0u8; 4];
    let riov = [libc::iovec {
        iov_base: rb.as_mut_ptr() as *mut _,
        iov_len: 4,
    }];
    check("preadv", libc::preadv(fd, riov.as_ptr(), 1, 100) as _);
    check("preadv2", libc::preadv2(fd, riov.as_ptr(), 1, 100, 0) as _);
    check("lseek", libc::lseek(fd, 0, libc::SEEK_DATA));
    let fdy = create_at(dfd, &cstr("y"));
    let (mut off_in, mut off_out): (i64, i64) = (0, 0);
    check(
        "copy_file_range",
        libc::copy_file_range(fd, &mut off_in, fdy, &mut off_out, 104, 0) as _,
    );
    check("flock", libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) as _);
    check("flock un", libc::flock(fd, libc::LOCK_UN) as _);
    let mut lk: libc::flock = std::mem::zeroed();
    lk.l_type = libc::F_WRLCK as _;
    lk.l_whence = libc::SEEK_SET as _;
    lk.l_len = 10;
    check("OFD setlk", libc::fcntl(fd, libc::F_OFD_SETLK, &lk) as _);
    check(
        "OFD getlk",
        libc::fcntl(fd, libc::F_OFD_GETLK, &mut lk) as _,
    );
    check("getfl", libc::fcntl(fd, libc::F_GETFL) as _);
    check("fsync", libc::fsync(fd) as _);
    check("fdatasync", libc::fdatasync(fd) as _);
    check("syncfs", libc::syncfs(fd) as _);
    check(
        "sync_file_range",
        libc::sync_file_range(fd, 0, 0, libc::SYNC_FILE_RANGE_WRITE) as _,
    );
    check(
        "fadvise",
        libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED) as _,
    );
    let mut sfs: libc::statfs = std::mem::zeroed();
    check("fstatfs", libc::fstatfs(fd, &mut sfs) as _);
    let mut stx: libc::statx = std::mem::zeroed();
    let empty = cstr("");
    check(
        "statx",
        libc::statx(
            fd,
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_BASIC_STATS,
            &mut stx,
        ) as _,
    );
    let mut st: libc::stat = std::mem::zeroed();
    check(
        "fstatat",
        libc::fstatat(dfd, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) as _,
    );
    check("fchmod", libc::fchmod(fd, 0o600) as _);
    check(
        "fchmodat",
        libc::fchmodat(dfd, name.as_ptr(), 0o644, 0) as _,
    );
    check(
        "fchownat",
        libc::fchownat(
            dfd,
            name.as_ptr(),
            libc::geteuid(),
            libc::getegid(),
            libc::AT_SYMLINK_NOFOLLOW,
        ) as _,
    );
    check(
        "fchown",
        libc::fchown(fd, libc::geteuid(), libc::getegid()) as _,
    );
    let times = [
        libc::timespec {
            tv_sec: 1,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
    ];
    check(
        "utimensat",
        libc::utimensat(
            dfd,
            name.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        ) as _,
    );
    check(
        "faccessat",
        libc::faccessat(dfd, name.as_ptr(), libc::R_OK, 0) as _,
    );
    check(
        "faccessat2",
        libc::syscall(
            libc::SYS_faccessat2,
            dfd,
            name.as_ptr(),
            libc::R_OK,
            libc::AT_EACCESS,
        ),
    );
    let sub = cstr("sub");
    check("mkdirat", libc::mkdirat(dfd, sub.as_ptr(), 0o755) as _);
    let fifo = cstr("fifo");
    check(
        "mknodat",
        libc::mknodat(dfd, fifo.as_ptr(), libc::S_IFIFO | 0o644, 0) as _,
    );
    let sl = cstr("sl");
    check(
        "symlinkat",
        libc::symlinkat(name.as_ptr(), dfd, sl.as_ptr()) as _,
    );
    let mut lb = [0u8; 64];
    check(
        "readlinkat",
        libc::readlinkat(dfd, sl.as_ptr(), lb.as_mut_ptr() as *mut _, lb.len()) as _,
    );
    let hl = cstr("hl");
    check(
        "linkat",
        libc::linkat(dfd, name.as_ptr(), dfd, hl.as_ptr(), 0) as _,
    );
    let hl2 = cstr("hl2");
    check(
        "renameat2",
        libc::renameat2(dfd, hl.as_ptr(), dfd, hl2.as_ptr(), libc::RENAME_NOREPLACE) as _,
    );
    check(
        "renameat",
        libc::renameat(dfd, hl2.as_ptr(), dfd, hl.as_ptr()) as _,
    );
    check("unlinkat", libc::unlinkat(dfd, hl.as_ptr(), 0) as _);
    check(
        "unlinkat dir",
        libc::unlinkat(dfd, sub.as_ptr(), libc::AT_REMOVEDIR) as _,
    );
    let mut dents = [0u8; 4096];
    check(
        "getdents64",
        libc::syscall(
            libc::SYS_getdents64,
            fd_dir(dfd, &dirc),
            dents.as_mut_ptr(),
            dents.len(),
        ),
    );
    // Reopen through /proc/self/fd like the passthrough does.
    let pfd = vhostfs_sandbox::proc_self_fd().unwrap();
    let num = cstr(&fd.to_string());
    let re = libc::openat(
        pfd.as_raw_fd(),
        num.as_ptr(),
        libc::O_RDONLY | libc::O_CLOEXEC,
    );
    check("reopen via /proc/self/fd", re as _);
    if re >= 0 {
        libc::close(re);
    }
    // File handles.
    let mut fh = vec![0u8; 8 + 128];
    fh[..4].copy_from_slice(&128u32.to_ne_bytes());
    let mut mount_id: libc::c_int = 0;
    let rc = libc::syscall(
        libc::SYS_name_to_handle_at,
        dfd,
        name.as_ptr(),
        fh.as_mut_ptr(),
        &mut mount_id,
        0,
    );
    check("name_to_handle_at", rc);
    if rc == 0 {
        let h = libc::syscall(
            libc::SYS_open_by_handle_at,
            dfd,
            fh.as_mut_ptr(),
            libc::O_PATH | libc::O_CLOEXEC,
        );
        check("open_by_handle_at", h);
        if h >= 0 {
            libc::close(h as RawFd);
        }
    }
    // Extended attributes.
    let xn = cstr("user.test");
    check(
        "fsetxattr",
        libc::fsetxattr(fd, xn.as_ptr(), b"v".as_ptr() as *const _, 1, 0) as _,
    );
    let mut xb = [0u8; 64];
    check(
        "fgetxattr",
        libc::fgetxattr(fd, xn.as_ptr(), xb.as_mut_ptr() as *mut _, xb.len()) as _,
    );
    check(
        "flistxattr",
        libc::flistxattr(fd, xb.as_mut_ptr() as *mut _, xb.len()) as _,
    );
    check("fremovexattr", libc::fremovexattr(fd, xn.as_ptr()) as _);
    let path = cstr(dir.join("x").to_str().unwrap());
    check(
        "lsetxattr",
        libc::lsetxattr(path.as_ptr(), xn.as_ptr(), b"v".as_ptr() as *const _, 1, 0) as _,
    );
    check(
        "getxattr",
        libc::getxattr(
            path.as_ptr(),
            xn.as_ptr(),
            xb.as_mut_ptr() as *mut _,
            xb.len(),
        ) as _,
    );
    check(
        "llistxattr",
        libc::llistxattr(path.as_ptr(), xb.as_mut_ptr() as *mut _, xb.len()) as _,
    );
    check(
        "removexattr",
        libc::removexattr(path.as_ptr(), xn.as_ptr()) as _,
    );
    check("umask", libc::umask(0o022) as _);

    libc::close(fdy);
    libc::close(fd);
    libc::close(dfd);
}

/// Everything the daemon might do after confinement, as far as it can be done here.
fn workload(dir: &std::path::Path, sock_tx: OwnedFd, sock_rx: OwnedFd, memfd: OwnedFd) {
    // --- plain std file operations (openat, statx, getdents64, renameat, linkat, ...)
    let a = dir.join("a");
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&a)
        .unwrap();
    f.write_all(b"hello world").unwrap();
    f.write_at(b"HELLO", 0).unwrap();
    let mut buf = [0u8; 5];
    f.read_at(&mut buf, 6).unwrap();
    assert_eq!(&buf, b"world");
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut s = String::new();
    fs::File::open(&a).unwrap().read_to_string(&mut s).unwrap();
    assert_eq!(s, "HELLO world");
    let _ = fs::metadata(&a).unwrap();
    let _ = fs::symlink_metadata(&a).unwrap();
    fs::set_permissions(&a, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    fs::create_dir(dir.join("d")).unwrap();
    fs::rename(&a, dir.join("d/b")).unwrap();
    fs::hard_link(dir.join("d/b"), dir.join("c")).unwrap();
    std::os::unix::fs::symlink("d/b", dir.join("l")).unwrap();
    assert_eq!(
        fs::read_link(dir.join("l")).unwrap(),
        std::path::Path::new("d/b")
    );
    let names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(names.len() >= 3);
    let _ = fs::canonicalize(dir.join("l")).unwrap();

    // --- raw *at syscalls, as the passthrough file system makes them
    // SAFETY: see raw_at_syscalls; called once from the workload child.
    unsafe { raw_at_syscalls(dir) };

    // --- per-thread credentials
    // SAFETY: raw credential syscalls affecting only this thread; restored right away.
    unsafe {
        libc::syscall(libc::SYS_setfsgid, 65534);
        libc::syscall(libc::SYS_setfsuid, 65534);
        libc::syscall(libc::SYS_setfsuid, 0);
        libc::syscall(libc::SYS_setfsgid, 0);
        check("setresgid", libc::syscall(libc::SYS_setresgid, -1, -1, -1));
        check("setresuid", libc::syscall(libc::SYS_setresuid, -1, -1, -1));
        let mut groups = [0 as libc::gid_t; 64];
        let n = libc::syscall(libc::SYS_getgroups, 64, groups.as_mut_ptr());
        check("getgroups", n);
        if n >= 0 {
            check(
                "setgroups",
                libc::syscall(libc::SYS_setgroups, n, groups.as_ptr()),
            );
        }
        let mut hdr = [0x2008_0522u32, 0];
        let mut data = [0u32; 6];
        check(
            "capget",
            libc::syscall(libc::SYS_capget, hdr.as_mut_ptr(), data.as_mut_ptr()),
        );
    }

    // --- clone3 is refused with ENOSYS (threads below then come from clone)
    // SAFETY: clone3 with a null argument structure never creates anything.
    let rc = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0) };
    assert_eq!(rc, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::ENOSYS)
    );

    // --- threads, futexes, channels, per-thread fs state
    let pair = Arc::new((Mutex::new(0), Condvar::new()));
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::new();
    for i in 0..4 {
        let pair = pair.clone();
        let tx = tx.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || {
                    // SAFETY: unshare with CLONE_FS only affects this thread's fs attributes.
                    let rc = unsafe { libc::unshare(libc::CLONE_FS) };
                    check("unshare(CLONE_FS)", rc as _);
                    // SAFETY: umask has no memory-safety preconditions.
                    unsafe { libc::umask(0o077) };
                    let (m, c) = &*pair;
                    *m.lock().unwrap() += 1;
                    c.notify_all();
                    tx.send(i).unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    std::thread::yield_now();
                })
                .unwrap(),
        );
    }
    {
        let (m, c) = &*pair;
        let g = c.wait_while(m.lock().unwrap(), |n| *n < 4).unwrap();
        assert_eq!(*g, 4);
    }
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(rx.iter().take(4).count(), 4);
    let _ = std::thread::available_parallelism();

    // --- epoll + eventfd
    // SAFETY: raw syscalls on descriptors created here.
    unsafe {
        let ep = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        assert!(ep >= 0);
        let ev = libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK);
        assert!(ev >= 0);
        let mut e = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: 7,
        };
        assert_eq!(libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, ev, &mut e), 0);
        let one = 1u64;
        assert_eq!(libc::write(ev, &one as *const u64 as *const _, 8), 8);
        let mut out = [libc::epoll_event { events: 0, u64: 0 }; 4];
        assert_eq!(libc::epoll_wait(ep, out.as_mut_ptr(), 4, 1000), 1);
        assert_eq!(
            libc::epoll_pwait(ep, out.as_mut_ptr(), 4, 0, std::ptr::null()),
            1
        );
        let mut v = 0u64;
        assert_eq!(libc::read(ev, &mut v as *mut u64 as *mut _, 8), 8);
        let mut p = libc::pollfd {
            fd: ev,
            events: libc::POLLIN,
            revents: 0,
        };
        check("poll", libc::poll(&mut p, 1, 0) as _);
        libc::close(ev);
        libc::close(ep);
    }

    // --- recvmsg/sendmsg with SCM_RIGHTS (vhost-user memory tables, eventfds)
    // SAFETY: well-formed msghdr with a control buffer large enough for one fd.
    unsafe {
        let sfd = sock_tx.as_raw_fd();
        let rfd = sock_rx.as_raw_fd();
        let mut cmsg_buf = [0u64; 8];
        let payload = *b"ping";
        let mut iov = libc::iovec {
            iov_base: payload.as_ptr() as *mut _,
            iov_len: 4,
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg_buf.as_mut_ptr() as *mut _;
        msg.msg_controllen = libc::CMSG_SPACE(4) as _;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(4) as _;
        *(libc::CMSG_DATA(c) as *mut RawFd) = memfd.as_raw_fd();
        assert_eq!(libc::sendmsg(sfd, &msg, 0), 4);
        let mut rbuf = [0u8; 4];
        let mut riov = libc::iovec {
            iov_base: rbuf.as_mut_ptr() as *mut _,
            iov_len: 4,
        };
        let mut rmsg: libc::msghdr = std::mem::zeroed();
        let mut rcmsg = [0u64; 8];
        rmsg.msg_iov = &mut riov;
        rmsg.msg_iovlen = 1;
        rmsg.msg_control = rcmsg.as_mut_ptr() as *mut _;
        rmsg.msg_controllen = std::mem::size_of_val(&rcmsg) as _;
        assert_eq!(libc::recvmsg(rfd, &mut rmsg, libc::MSG_CMSG_CLOEXEC), 4);
        let c = libc::CMSG_FIRSTHDR(&rmsg);
        assert!(!c.is_null());
        let got = *(libc::CMSG_DATA(c) as *const RawFd);
        // --- mmap of "guest memory" received over the socket
        let len = 1 << 20;
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_NORESERVE,
            got,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        *(p as *mut u8) = 42;
        check("madvise", libc::madvise(p, len, libc::MADV_DONTDUMP) as _);
        assert_eq!(libc::munmap(p, len), 0);
        libc::close(got);
        let mut peer: libc::sockaddr_un = std::mem::zeroed();
        let mut plen = std::mem::size_of_val(&peer) as libc::socklen_t;
        check(
            "getpeername",
            libc::getpeername(sfd, &mut peer as *mut _ as *mut _, &mut plen) as _,
        );
    }

    // --- syslog-style logging socket
    // SAFETY: plain socket calls on a descriptor created here.
    unsafe {
        let s = libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        assert!(s >= 0);
        let mut addr: libc::sockaddr_un = std::mem::zeroed();
        addr.sun_family = libc::AF_UNIX as _;
        for (i, b) in b"/nonexistent/log".iter().enumerate() {
            addr.sun_path[i] = *b as _;
        }
        check(
            "connect",
            libc::connect(
                s,
                &addr as *const _ as *const _,
                std::mem::size_of_val(&addr) as _,
            ) as _,
        );
        libc::close(s);
    }

    // --- signals: a handler run via tgkill (how a blocked request is interrupted)
    // SAFETY: installs a handler that only touches an atomic, then signals this thread.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_usr1 as *const () as usize;
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
        assert_eq!(
            libc::syscall(
                libc::SYS_tgkill,
                libc::getpid(),
                libc::gettid(),
                libc::SIGUSR1
            ),
            0
        );
    }
    assert_eq!(SIGNALS.load(Ordering::SeqCst), 1);

    // --- time, randomness, limits
    let _ = std::time::SystemTime::now();
    let _ = std::time::Instant::now();
    let mut rnd = [0u8; 16];
    // SAFETY: valid buffer of 16 bytes.
    let rc = unsafe { libc::getrandom(rnd.as_mut_ptr() as *mut _, 16, 0) };
    check("getrandom", rc as _);
    let _ = std::collections::HashMap::<u32, u32>::new();
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid rlimit out-parameter.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
    check("getrlimit", rc as _);
    // Formatting and writing to stdout/stderr.
    println!("workload done");
    eprintln!("workload done");
    fs::remove_dir_all(dir).unwrap();
}

/// Opens `dir` for reading (getdents64 needs a real directory descriptor).
fn fd_dir(_dfd: RawFd, dirc: &CString) -> RawFd {
    // SAFETY: valid path; the descriptor is leaked until process exit, which is fine here.
    unsafe {
        libc::open(
            dirc.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    }
}

fn child(case: &str) -> i32 {
    match case {
        "workload" => {
            // Created before the filter: the daemon gets these from QEMU, already open.
            let mut sv = [0; 2];
            // SAFETY: valid out-array for two descriptors.
            let rc = unsafe {
                libc::socketpair(
                    libc::AF_UNIX,
                    libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                    0,
                    sv.as_mut_ptr(),
                )
            };
            assert_eq!(rc, 0);
            // SAFETY: socketpair returned two fresh descriptors we now own.
            let (tx, rx) = unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) };
            let name = cstr("guest-ram");
            // SAFETY: valid name.
            let m = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
            assert!(m >= 0);
            // SAFETY: fresh descriptor.
            let memfd = unsafe { OwnedFd::from_raw_fd(m) };
            // SAFETY: valid fd.
            assert_eq!(unsafe { libc::ftruncate(m, 1 << 20) }, 0);
            let dir = tempfile::Builder::new()
                .prefix("seccomp-wl")
                .tempdir()
                .unwrap()
                .keep();
            install_seccomp(SeccompAction::Kill).unwrap();
            workload(&dir, tx, rx, memfd);
            0
        }
        "forbidden" => {
            install_seccomp(SeccompAction::Kill).unwrap();
            // SAFETY: kexec_load with no segments; the filter kills us before the kernel looks.
            unsafe { libc::syscall(libc::SYS_kexec_load, 0, 0, std::ptr::null::<u8>(), 0) };
            3
        }
        "tiocsti" => {
            install_seccomp(SeccompAction::Kill).unwrap();
            let c = 0u8;
            // SAFETY: TIOCSTI on stdin with a valid byte; the filter kills us first.
            unsafe { libc::ioctl(0, libc::TIOCSTI, &c) };
            3
        }
        "forbidden-trap" => {
            install_seccomp(SeccompAction::Trap).unwrap();
            // SAFETY: as above; SIGSYS has its default action (terminate).
            unsafe { libc::syscall(libc::SYS_ptrace, libc::PTRACE_TRACEME, 0, 0, 0) };
            3
        }
        "log" => {
            install_seccomp(SeccompAction::Log).unwrap();
            // Allowed (and logged) under the log action; fails with EPERM/ENOSYS, harmlessly.
            // SAFETY: as above.
            unsafe { libc::syscall(libc::SYS_kexec_load, 0, 0, std::ptr::null::<u8>(), 0) };
            0
        }
        _ => 2,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let case = args.get(i + 1).map(String::as_str).unwrap_or("");
        std::process::exit(child(case));
    }
    let exe = std::env::current_exe().unwrap();
    let run = |case: &str| Command::new(&exe).args(["--child", case]).status().unwrap();
    let mut failed = 0;

    // (case, whether it must be killed with SIGSYS rather than exit with 0, what that shows)
    let cases = [
        ("workload", false, "workload under --seccomp kill runs"),
        (
            "forbidden",
            true,
            "kexec_load under kill is killed with SIGSYS",
        ),
        (
            "tiocsti",
            true,
            "ioctl(TIOCSTI) under kill is killed with SIGSYS",
        ),
        (
            "forbidden-trap",
            true,
            "ptrace under trap is trapped with SIGSYS",
        ),
        ("log", false, "kexec_load is allowed under log"),
    ];
    for (case, sigsys, what) in cases {
        let st = run(case);
        if sigsys && st.signal() == Some(libc::SIGSYS) || !sigsys && st.code() == Some(0) {
            println!("ok: {what}");
        } else {
            println!("FAIL: {what}: {st:?} (signal {:?})", st.signal());
            failed += 1;
        }
    }
    if failed > 0 {
        std::process::exit(1);
    }
}
