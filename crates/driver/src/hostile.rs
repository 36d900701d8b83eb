//! A catalogue of hostile inputs, a runner that checks the backend survives each of them, and
//! the record of what the backend did (for the vhostfs-vs-virtiofsd comparison table).
//!
//! Every scenario sends one (or a few) malformed requests, classifies what came back
//! ([`Outcome`]), and judges it ([`Verdict`]). The runner then *probes*: a well-formed GETATTR
//! of the root must be answered ([`Health`]). A dropped request is fine; a stuck queue or a dead
//! process is not.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use vhostfs_fuse_abi as abi;
use zerocopy::IntoBytes;

use crate::chain::{ChainBuilder, Next};
use crate::daemon::{Daemon, DaemonSpec, ScratchDir, SpawnError};
use crate::driver::{Completion, Driver, DriverConfig, HIPRIO_QUEUE, REQUEST_QUEUE};
use crate::fuse::{cname, encode, encode_with_len, Reply, SMALL_REPLY};
use crate::vring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use crate::{Error, Result};

/// Contents of the file planted outside the shared directory.
pub const SECRET: &[u8] = b"host-secret-outside-the-share\n";
/// Contents of `hello` inside the shared directory.
pub const HELLO: &[u8] = b"hello from the shared dir\n";

/// What the backend did with one hostile request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It answered with this errno.
    Errno(i32),
    /// It answered successfully (a short summary).
    Success(String),
    /// It returned the chain in the used ring without a valid FUSE reply.
    UsedNoReply {
        /// The used-ring length.
        used_len: u32,
    },
    /// No used-ring entry within the wait: dropped (or still pending).
    Dropped,
    /// The scenario could not run here (missing feature or fixture).
    Skipped(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Errno(e) => write!(f, "{}", errno_short(*e)),
            Outcome::Success(s) if s.is_empty() => write!(f, "ok"),
            Outcome::Success(s) => write!(f, "ok ({s})"),
            Outcome::UsedNoReply { used_len } => write!(f, "used len={used_len}, no reply"),
            Outcome::Dropped => write!(f, "no used entry"),
            Outcome::Skipped(why) => write!(f, "skipped: {why}"),
        }
    }
}

/// Whether the outcome is acceptable for the scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Acceptable.
    Pass,
    /// Not acceptable, with the reason.
    Fail(String),
}

/// State of the backend after a scenario, from a well-formed probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// The probe was answered.
    Serving,
    /// The probe was answered, but with an error: the session is damaged (e.g. the root
    /// inode was forgotten).
    Degraded(String),
    /// The probe was not answered in time but the process lives.
    QueueStuck,
    /// The process exited or the vhost-user connection broke.
    Dead(String),
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Serving => write!(f, "serving"),
            Health::Degraded(why) => write!(f, "DEGRADED ({why})"),
            Health::QueueStuck => write!(f, "QUEUE STUCK"),
            Health::Dead(why) => write!(f, "DEAD ({why})"),
        }
    }
}

/// What happened with one scenario.
#[derive(Clone, Debug)]
pub struct Record {
    /// Scenario name.
    pub name: &'static str,
    /// What the backend did.
    pub outcome: Outcome,
    /// Whether that was acceptable.
    pub verdict: Verdict,
    /// Whether it kept serving.
    pub health: Health,
    /// Copied from the scenario: a stuck queue is acceptable.
    pub breaks_queue: bool,
}

impl Record {
    /// Acceptable outcome and still serving (a skipped scenario passes).
    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Pass
            && (self.health == Health::Serving
                || matches!(self.outcome, Outcome::Skipped(_))
                || (self.breaks_queue && self.health == Health::QueueStuck))
    }

    /// One-cell summary for tables.
    pub fn summary(&self) -> String {
        let mut s = self.outcome.to_string();
        if let Verdict::Fail(why) = &self.verdict {
            s.push_str(&format!(" [FAIL: {why}]"));
        }
        if self.health != Health::Serving && !matches!(self.outcome, Outcome::Skipped(_)) {
            s.push_str(&format!(" -> {}", self.health));
        }
        s
    }
}

/// Host paths the escape scenarios rely on.
#[derive(Clone, Debug)]
pub struct Fixtures {
    /// The directory holding `shared` and `outside` (and sockets and logs).
    pub root: PathBuf,
    /// The shared directory.
    pub shared: PathBuf,
    /// A directory next to it that must stay unreachable.
    pub outside: PathBuf,
}

/// Entries the shared directory holds between scenarios.
const SHARED_ENTRIES: &[&str] = &[
    "hello",
    "sub",
    "escape_dir",
    "escape_file",
    "escape_rel",
    "toctou_target_17c",
];

/// A fixture whose name (with NUL) is as long as `../outside/secret`.
const TOCTOU_NAME: &[u8] = b"toctou_target_17c\0";

impl Fixtures {
    /// Creates `shared/{hello, sub/inner, escape_dir, escape_file, escape_rel}` and
    /// `outside/secret` under `root`.
    pub fn create(root: &Path) -> Result<Self> {
        let shared = root.join("shared");
        let outside = root.join("outside");
        fs::create_dir_all(shared.join("sub"))?;
        fs::create_dir_all(&outside)?;
        fs::write(shared.join("hello"), HELLO)?;
        fs::write(shared.join("sub/inner"), b"inner\n")?;
        fs::write(shared.join("toctou_target_17c"), b"t\n")?;
        fs::write(outside.join("secret"), SECRET)?;
        let link = |target: &Path, name: &str| -> Result<()> {
            let p = shared.join(name);
            let _ = fs::remove_file(&p);
            std::os::unix::fs::symlink(target, p)?;
            Ok(())
        };
        link(&outside, "escape_dir")?;
        link(&outside.join("secret"), "escape_file")?;
        link(Path::new("../outside"), "escape_rel")?;
        Ok(Self {
            root: root.to_path_buf(),
            shared,
            outside,
        })
    }

    /// Paths outside the shared directory that a backend created (anything in `root` other
    /// than `shared`, `outside`, sockets, the pid files daemons keep next to them (virtiofsd's
    /// `SOCKET.pid`) and logs; anything in `outside` but `secret`).
    pub fn escapes(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        let ok_root = |n: &str| {
            n == "shared"
                || n == "outside"
                || (n.starts_with('s') && (n.ends_with(".sock") || n.ends_with(".sock.pid")))
                || (n.starts_with("log") && n.ends_with(".txt"))
        };
        for (dir, ok) in [
            (&self.root, &ok_root as &dyn Fn(&str) -> bool),
            (&self.outside, &|n: &str| n == "secret"),
        ] {
            if let Ok(rd) = fs::read_dir(dir) {
                for e in rd.flatten() {
                    if !ok(&e.file_name().to_string_lossy()) {
                        v.push(e.path());
                    }
                }
            }
        }
        v
    }

    /// Removes escapes and leftovers and restores every fixture to its initial contents.
    pub fn reset(&self) -> Result<()> {
        for p in self.escapes() {
            let _ = fs::remove_dir_all(&p).or_else(|_| fs::remove_file(&p));
        }
        if let Ok(rd) = fs::read_dir(&self.shared) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if !SHARED_ENTRIES.contains(&n.as_str()) {
                    let p = e.path();
                    let _ = fs::remove_dir_all(&p).or_else(|_| fs::remove_file(&p));
                }
            }
        }
        if let Ok(rd) = fs::read_dir(self.shared.join("sub")) {
            for e in rd.flatten() {
                if e.file_name() != "inner" {
                    let p = e.path();
                    let _ = fs::remove_dir_all(&p).or_else(|_| fs::remove_file(&p));
                }
            }
        }
        Fixtures::create(&self.root).map(|_| ())
    }
}

/// What a scenario gets to work with.
pub struct Ctx<'a> {
    /// The connected, initialised driver.
    pub d: &'a mut Driver,
    /// Host fixtures, when the backend was spawned by us.
    pub fx: Option<&'a Fixtures>,
    /// How long to wait for a hostile request's used entry.
    pub wait: Duration,
}

/// One hostile input.
pub struct Scenario {
    /// Short unique name.
    pub name: &'static str,
    /// What it sends.
    pub what: &'static str,
    /// Runs it.
    pub run: fn(&mut Ctx) -> Result<(Outcome, Verdict)>,
    /// The input breaks the virtqueue itself (the spec lets a device stop serving a queue
    /// the driver corrupted): a stuck queue is acceptable, a dead process is not.
    pub breaks_queue: bool,
}

impl Ctx<'_> {
    /// Sends `chain` on `q` and classifies what came back within [`Ctx::wait`].
    pub fn send(&mut self, q: usize, chain: &ChainBuilder) -> Result<Outcome> {
        let head = self.d.submit(q, chain)?;
        let wait = self.wait;
        Ok(match self.d.wait(q, head, wait)? {
            None => Outcome::Dropped,
            Some(c) => match Reply::parse(&c) {
                Err(_) => Outcome::UsedNoReply {
                    used_len: c.used_len,
                },
                Ok(r) if r.header.error < 0 => Outcome::Errno(-r.header.error),
                Ok(r) => Outcome::Success(format!("{} bytes", r.payload.len())),
            },
        })
    }

    /// Encodes a well-formed request with a fresh unique.
    pub fn req(&mut self, opcode: u32, nodeid: u64, args: &[&[u8]]) -> Vec<u8> {
        let u = self.d.next_unique();
        encode(opcode, u, nodeid, args)
    }

    /// A well-formed GETATTR of the root.
    pub fn getattr_req(&mut self) -> Vec<u8> {
        getattr_root(self.d)
    }

    /// Sends `req` in the usual two-descriptor layout on the request queue.
    pub fn send_req(&mut self, req: &[u8]) -> Result<Outcome> {
        self.send(REQUEST_QUEUE, &request_chain(req))
    }

    /// Sends `req` on the hiprio queue (no writable buffer, like the kernel's FORGETs).
    pub fn send_hiprio(&mut self, req: &[u8]) -> Result<Outcome> {
        let chain = ChainBuilder::new().readable(req);
        self.send(HIPRIO_QUEUE, &chain)
    }

    /// Looks up `name` under the root (well-formed).
    pub fn node(&mut self, name: &[u8]) -> Result<abi::EntryOut> {
        self.d.lookup(abi::ROOT_ID, name)
    }

    /// Inode number of the root as the backend reports it.
    pub fn root_ino(&mut self) -> Result<u64> {
        Ok(self.d.getattr(abi::ROOT_ID)?.attr.ino)
    }

    /// One past the end of guest memory.
    pub fn mem_end(&self) -> u64 {
        self.d.mem().end()
    }

    /// Entries per queue.
    pub fn qsize(&self) -> u16 {
        self.d
            .queue(REQUEST_QUEUE)
            .map(|q| q.layout.size)
            .unwrap_or(0)
    }

    /// Whether indirect descriptors were negotiated.
    pub fn has_indirect(&self) -> bool {
        self.d.features() & crate::driver::VIRTIO_RING_F_INDIRECT_DESC != 0
    }
}

/// A well-formed GETATTR of the root with a fresh unique.
fn getattr_root(d: &mut Driver) -> Vec<u8> {
    let a = abi::GetattrIn::default();
    let u = d.next_unique();
    encode(abi::opcode::GETATTR, u, abi::ROOT_ID, &[a.as_bytes()])
}

/// `req` in the usual two-descriptor layout: one readable descriptor holding it and a
/// [`SMALL_REPLY`]-byte reply buffer.
fn request_chain(req: &[u8]) -> ChainBuilder {
    ChainBuilder::new().readable(req).writable(SMALL_REPLY)
}

/// How a scenario judges what the backend did.
type Judge = fn(&Outcome) -> Verdict;

/// What a scenario returns: what the backend did and whether that was acceptable.
type Judged = Result<(Outcome, Verdict)>;

fn must_fail(o: &Outcome) -> Verdict {
    match o {
        Outcome::Success(s) => Verdict::Fail(format!("accepted ({s})")),
        _ => Verdict::Pass,
    }
}

fn must_succeed(o: &Outcome) -> Verdict {
    match o {
        Outcome::Success(_) | Outcome::Skipped(_) => Verdict::Pass,
        other => Verdict::Fail(format!("well-formed content not served: {other}")),
    }
}

fn any(_: &Outcome) -> Verdict {
    Verdict::Pass
}

fn judged(o: Outcome, f: Judge) -> Judged {
    let v = f(&o);
    Ok((o, v))
}

fn outcome_of<T>(r: Result<T>, ok: impl FnOnce(&T) -> String) -> Result<Outcome> {
    match r {
        Ok(v) => Ok(Outcome::Success(ok(&v))),
        Err(Error::Errno(e)) => Ok(Outcome::Errno(e)),
        Err(Error::Timeout) => Ok(Outcome::Dropped),
        Err(Error::BadReply(_)) => Ok(Outcome::UsedNoReply { used_len: 0 }),
        Err(e) => Err(e),
    }
}

/// Classifies the result of a typed driver call (summarised by `ok` when it succeeded) and
/// judges it.
fn result_judged<T>(r: Result<T>, ok: impl FnOnce(&T) -> String, judge: Judge) -> Judged {
    judged(outcome_of(r, ok)?, judge)
}

/// A step the backend may refuse failed with `e`: whatever it answered is acceptable.
fn refused(e: Error) -> Judged {
    result_judged::<()>(Err(e), |_| String::new(), any)
}

/// Short errno names for tables.
pub fn errno_short(e: i32) -> String {
    let n = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::ESPIPE => "ESPIPE",
        libc::EROFS => "EROFS",
        libc::ERANGE => "ERANGE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ELOOP => "ELOOP",
        libc::ENODATA => "ENODATA",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EPROTO => "EPROTO",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ESTALE => "ESTALE",
        _ => return format!("errno {e}"),
    };
    n.to_string()
}

// ---------------------------------------------------------------------------------------
// Scenario building blocks
// ---------------------------------------------------------------------------------------

/// A handle a scenario works through (see [`Ctx::with_handle`]).
#[derive(Clone, Copy, Debug)]
enum Handle {
    /// `hello`, opened with these flags.
    Hello(i32),
    /// The root directory (OPENDIR).
    RootDir,
}

/// GETXATTR/LISTXATTR arguments asking for a 4 GiB-1 buffer.
const XATTR_SIZE_HUGE: abi::GetxattrIn = abi::GetxattrIn {
    size: u32::MAX,
    padding: 0,
};

/// FUSE_INIT arguments of protocol 7.41.
fn init_7_41() -> abi::InitIn {
    abi::InitIn {
        major: 7,
        minor: 41,
        ..Default::default()
    }
}

impl Ctx<'_> {
    /// Runs `f` with the host fixtures, or skips the scenario when there are none.
    fn with_fixtures(&mut self, f: impl FnOnce(&mut Self, &Fixtures) -> Judged) -> Judged {
        match self.fx {
            Some(fx) => f(self, fx),
            None => Ok((Outcome::Skipped("no host fixtures".into()), Verdict::Pass)),
        }
    }

    /// Runs `f`, or skips the scenario when indirect descriptors were not negotiated.
    fn with_indirect(&mut self, f: impl FnOnce(&mut Self) -> Judged) -> Judged {
        if !self.has_indirect() {
            return Ok((
                Outcome::Skipped("INDIRECT_DESC not offered".into()),
                Verdict::Pass,
            ));
        }
        f(self)
    }

    /// Sends `chain` on the request queue and judges what came back.
    fn chain_judged(&mut self, chain: ChainBuilder, judge: Judge) -> Judged {
        judged(self.send(REQUEST_QUEUE, &chain)?, judge)
    }

    /// Sends `req` in the usual layout on the request queue and judges what came back.
    fn req_judged(&mut self, req: &[u8], judge: Judge) -> Judged {
        judged(self.send_req(req)?, judge)
    }

    /// Encodes a request with a fresh unique, sends it in the usual layout on the request
    /// queue and judges what came back.
    fn request_judged(&mut self, judge: Judge, opcode: u32, nodeid: u64, args: &[&[u8]]) -> Judged {
        let r = self.req(opcode, nodeid, args);
        self.req_judged(&r, judge)
    }

    /// Encodes a request with a fresh unique and sends it on the hiprio queue; any answer is
    /// acceptable.
    fn hiprio_judged(&mut self, opcode: u32, nodeid: u64, args: &[&[u8]]) -> Judged {
        let r = self.req(opcode, nodeid, args);
        judged(self.send_hiprio(&r)?, any)
    }

    /// LOOKUP of `name` (sent as is) under the root.
    fn lookup_judged(&mut self, judge: Judge, name: &[u8]) -> Judged {
        self.request_judged(judge, abi::opcode::LOOKUP, abi::ROOT_ID, &[name])
    }

    /// GETATTR of `nodeid`, which is not a valid node: it must be refused.
    fn getattr_of(&mut self, nodeid: u64) -> Judged {
        let a = abi::GetattrIn::default();
        self.request_judged(must_fail, abi::opcode::GETATTR, nodeid, &[a.as_bytes()])
    }

    /// A request for the root whose header claims `len` bytes, whatever it really holds.
    fn claiming_len(&mut self, opcode: u32, len: u32, args: &[&[u8]]) -> Judged {
        let u = self.d.next_unique();
        let r = encode_with_len(opcode, u, abi::ROOT_ID, len, args);
        self.req_judged(&r, any)
    }

    /// A GETATTR of the root whose header claims `len` bytes.
    fn getattr_claiming(&mut self, len: u32) -> Judged {
        let a = abi::GetattrIn::default();
        self.claiming_len(abi::opcode::GETATTR, len, &[a.as_bytes()])
    }

    /// Sends the chain `layout` builds around a fresh well-formed GETATTR of the root and
    /// judges what came back.
    fn getattr_judged(
        &mut self,
        judge: Judge,
        layout: impl FnOnce(&Self, &[u8]) -> ChainBuilder,
    ) -> Judged {
        let r = self.getattr_req();
        let chain = layout(self, &r);
        self.chain_judged(chain, judge)
    }

    /// Sends the chain `layout` builds around [`indirect_table`] and judges what came back.
    fn table_judged(
        &mut self,
        judge: Judge,
        layout: impl FnOnce(ChainBuilder) -> ChainBuilder,
    ) -> Judged {
        let t = indirect_table(self);
        self.chain_judged(layout(t), judge)
    }

    /// A 56-byte readable descriptor at guest address `addr`, and a reply buffer: it must be
    /// refused.
    fn request_at(&mut self, addr: u64) -> Judged {
        let chain = ChainBuilder::new()
            .readable_at(addr, 56)
            .writable(SMALL_REPLY);
        self.chain_judged(chain, must_fail)
    }

    /// Opens `h`, runs `f` with its node id and file handle, and releases the handle (unless
    /// `f` failed).
    fn with_handle<T>(
        &mut self,
        h: Handle,
        f: impl FnOnce(&mut Self, u64, u64) -> Result<T>,
    ) -> Result<T> {
        let (nodeid, fh, dir) = match h {
            Handle::Hello(flags) => {
                let e = self.node(b"hello")?;
                let o = self.d.open(e.nodeid, flags as u32)?;
                (e.nodeid, o.fh, false)
            }
            Handle::RootDir => (abi::ROOT_ID, self.d.opendir(abi::ROOT_ID)?.fh, true),
        };
        let out = f(self, nodeid, fh)?;
        let _ = self.d.release(nodeid, fh, dir);
        Ok(out)
    }

    /// Sends the request `make` builds from the node id and file handle of `h` (opened and
    /// released around it) and judges what came back.
    fn handle_judged(
        &mut self,
        h: Handle,
        judge: Judge,
        make: impl FnOnce(&mut Self, u64, u64) -> Vec<u8>,
    ) -> Judged {
        let out = self.with_handle(h, |c, nodeid, fh| {
            let r = make(c, nodeid, fh);
            c.send_req(&r)
        })?;
        judged(out, judge)
    }

    /// A READ-style request (`opcode` READ or READDIR) through `h` asking for `size` bytes at
    /// `offset`; any answer is acceptable.
    fn read_claiming(&mut self, h: Handle, opcode: u32, offset: u64, size: u32) -> Judged {
        self.handle_judged(h, any, |c, nodeid, fh| {
            let a = abi::ReadIn {
                fh,
                offset,
                size,
                ..Default::default()
            };
            c.req(opcode, nodeid, &[a.as_bytes()])
        })
    }

    /// A WRITE to `hello` claiming `size` bytes at `offset` and carrying 10: it must be
    /// refused.
    fn write_claiming(&mut self, offset: u64, size: u32) -> Judged {
        self.handle_judged(Handle::Hello(libc::O_RDWR), must_fail, |c, nodeid, fh| {
            let a = abi::WriteIn {
                fh,
                offset,
                size,
                ..Default::default()
            };
            c.req(abi::opcode::WRITE, nodeid, &[a.as_bytes(), &[b'x'; 10]])
        })
    }

    /// A READ of up to 4096 bytes of `hello` whose reply lands in the writable buffers
    /// `reply` appends to the request; waits up to 5 s for it.
    fn read_hello_into(
        &mut self,
        reply: impl FnOnce(ChainBuilder) -> ChainBuilder,
    ) -> Result<Option<Completion>> {
        self.with_handle(Handle::Hello(libc::O_RDONLY), |c, nodeid, fh| {
            let a = abi::ReadIn {
                fh,
                size: 4096,
                ..Default::default()
            };
            let r = c.req(abi::opcode::READ, nodeid, &[a.as_bytes()]);
            let head =
                c.d.submit(REQUEST_QUEUE, &reply(ChainBuilder::new().readable(&r)))?;
            c.d.wait(REQUEST_QUEUE, head, Duration::from_secs(5))
        })
    }

    /// LOOKUP of `secret` through the host symlink `link` (to the outside directory): it
    /// must be refused.
    fn lookup_through_link(&mut self, link: &[u8]) -> Judged {
        self.with_fixtures(|c, _| {
            let l = c.node(link)?;
            let r = c.d.lookup(l.nodeid, b"secret");
            result_judged(r, |e| format!("ino {}", e.attr.ino), must_fail)
        })
    }

    /// OPEN+READ of the symlink `nodeid`: reading the secret outside the share fails the
    /// scenario with `why`.
    fn read_through_link(&mut self, nodeid: u64, why: &str) -> Judged {
        let o = match self.d.open(nodeid, libc::O_RDONLY as u32) {
            Ok(o) => o,
            Err(e) => return refused(e),
        };
        let data = self.d.read(nodeid, o.fh, 0, 4096);
        let _ = self.d.release(nodeid, o.fh, false);
        match data {
            Ok(b) if b.windows(SECRET.len()).any(|w| w == SECRET) => Ok((
                Outcome::Success("read the secret".into()),
                Verdict::Fail(why.into()),
            )),
            Ok(b) => Ok((
                Outcome::Success(format!("{} bytes", b.len())),
                Verdict::Pass,
            )),
            Err(e) => refused(e),
        }
    }
}

/// `req` over `pieces` readable descriptors, most of them zero-length.
fn spread(req: &[u8], pieces: usize) -> ChainBuilder {
    let cuts: Vec<usize> = (0..pieces - 1).map(|i| i.min(req.len())).collect();
    ChainBuilder::new().readable_split(req, &cuts)
}

/// `req` in one readable descriptor whose NEXT flag is set and points at `next`.
fn next_to(req: &[u8], next: Next) -> ChainBuilder {
    ChainBuilder::new()
        .readable(req)
        .set_flags(0, VRING_DESC_F_NEXT)
        .set_next(0, next)
}

// ---------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------

macro_rules! scenario {
    ($name:literal, $what:literal, $f:expr) => {
        Scenario {
            name: $name,
            what: $what,
            run: $f,
            breaks_queue: false,
        }
    };
    (breaks_queue $name:literal, $what:literal, $f:expr) => {
        Scenario {
            name: $name,
            what: $what,
            run: $f,
            breaks_queue: true,
        }
    };
}

/// Every scenario, in the order they are run (queue-killers last).
pub fn catalogue() -> Vec<Scenario> {
    let mut v = layout_scenarios();
    v.extend(indirect_scenarios());
    v.extend(header_scenarios());
    v.extend(name_scenarios());
    v.extend(size_scenarios());
    v.extend(handle_scenarios());
    v.extend(data_scenarios());
    v.extend(queue_scenarios());
    v
}

fn layout_scenarios() -> Vec<Scenario> {
    vec![
        scenario!(
            "desc-outside-memory",
            "readable descriptor past the end of guest RAM",
            |c| c.request_at(c.mem_end() + 0x1000)
        ),
        scenario!(
            "desc-addr-wraps",
            "readable descriptor at 2^64-16, len 56 (address wraps)",
            |c| c.request_at(u64::MAX - 15)
        ),
        scenario!(
            "desc-straddles-end",
            "readable descriptor starting 24 bytes before the end of RAM, len 56",
            |c| c.request_at(c.mem_end() - 24)
        ),
        scenario!(
            "writable-outside-memory",
            "good GETATTR, reply buffer past the end of RAM",
            |c| c.getattr_judged(any, |c, r| {
                ChainBuilder::new()
                    .readable(r)
                    .writable_at(c.mem_end() + 0x1000, SMALL_REPLY)
            })
        ),
        scenario!(
            "writable-len-huge",
            "good GETATTR, reply descriptor length 4 GiB-1",
            |c| c.getattr_judged(any, |_, r| request_chain(r).set_len(1, u32::MAX))
        ),
        scenario!(
            "reply-overlaps-request",
            "writable descriptor aliasing the request bytes",
            |c| c.getattr_judged(any, |_, r| {
                ChainBuilder::new()
                    .readable(r)
                    .alias(0, 0, SMALL_REPLY, true)
            })
        ),
        scenario!(
            "readables-overlap",
            "LOOKUP whose name descriptor aliases its own header",
            |c| {
                let u = c.d.next_unique();
                let hdr = encode_with_len(abi::opcode::LOOKUP, u, abi::ROOT_ID, 80, &[]);
                let ch = ChainBuilder::new()
                    .readable(&hdr)
                    .alias(0, 0, 40, false)
                    .writable(SMALL_REPLY);
                c.chain_judged(ch, any)
            }
        ),
        scenario!(
            "next-self-loop",
            "single descriptor with NEXT pointing at itself",
            |c| c.getattr_judged(any, |_, r| next_to(r, Next::Rel(0)))
        ),
        scenario!(
            "next-loop",
            "header, args, reply; reply's NEXT points back at the header",
            |c| c.getattr_judged(any, |_, r| {
                ChainBuilder::new()
                    .readable_split(r, &[40])
                    .writable(SMALL_REPLY)
                    .set_flags(2, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT)
                    .set_next(2, Next::Rel(0))
            })
        ),
        scenario!(
            "next-out-of-range",
            "NEXT to descriptor index queue_size+5",
            |c| c.getattr_judged(any, |c, r| next_to(r, Next::Abs(c.qsize().wrapping_add(5))))
        ),
        scenario!(
            "next-into-stale-desc",
            "NEXT to an in-range descriptor that belongs to no chain",
            |c| c.getattr_judged(any, |c, r| next_to(r, Next::Abs(c.qsize() - 1)))
        ),
        scenario!(
            "chain-whole-table",
            "valid GETATTR spread over exactly queue_size descriptors",
            // n-1 readable pieces (most zero-length) + 1 writable.
            |c| c.getattr_judged(any, |c, r| {
                spread(r, usize::from(c.qsize()) - 1).writable(SMALL_REPLY)
            })
        ),
        scenario!(
            "chain-longer-than-queue",
            "queue_size descriptors whose last NEXT wraps to the head",
            |c| c.getattr_judged(any, |c, r| {
                let n = usize::from(c.qsize());
                spread(r, n)
                    .set_flags(n - 1, VRING_DESC_F_NEXT)
                    .set_next(n - 1, Next::Rel(0))
            })
        ),
        scenario!(
            "readable-after-writable",
            "header, reply buffer, then GETATTR args readable",
            |c| c.getattr_judged(any, |_, r| request_chain(&r[..40]).readable(&r[40..]))
        ),
        scenario!("no-writable", "GETATTR with no reply buffer", |c| {
            c.getattr_judged(any, |_, r| ChainBuilder::new().readable(r))
        }),
        scenario!(
            "no-readable",
            "chain of one writable descriptor only",
            |c| c.chain_judged(ChainBuilder::new().writable(SMALL_REPLY), any)
        ),
        scenario!(
            "zero-length-descriptors",
            "valid GETATTR with zero-length descriptors in between",
            |c| c.getattr_judged(any, |_, r| {
                ChainBuilder::new()
                    .readable_split(r, &[0, 0, 7, 7, 40, 40])
                    .writable(0)
                    .writable(SMALL_REPLY)
            })
        ),
        scenario!(
            "header-split-midfield",
            "valid GETATTR split at bytes 3, 17, 39; reply split 5/11/240",
            |c| c.getattr_judged(must_succeed, |_, r| {
                ChainBuilder::new()
                    .readable_split(r, &[3, 17, 39])
                    .writable_split(&[5, 11, 240])
            })
        ),
        scenario!(
            "empty-request",
            "zero-length readable descriptor and a reply buffer",
            |c| c.chain_judged(request_chain(&[]), must_fail)
        ),
        scenario!(
            "reply-buffer-zero",
            "good GETATTR, zero-length reply buffer",
            |c| c.getattr_judged(any, |_, r| ChainBuilder::new().readable(r).writable(0))
        ),
        scenario!(
            "reply-buffer-too-small",
            "good GETATTR, 20-byte reply buffer",
            |c| c.getattr_judged(any, |_, r| ChainBuilder::new().readable(r).writable(20))
        ),
        scenario!(
            "reply-into-desc-table",
            "good GETATTR whose reply buffer is the descriptor table",
            |c| {
                let r = c.getattr_req();
                let desc = c.d.queue(REQUEST_QUEUE)?.layout.desc;
                // Far end of the table: entries unlikely to be in use.
                let at = desc + 16 * (u64::from(c.qsize()) - 16);
                let ch = ChainBuilder::new()
                    .readable(&r)
                    .writable_at(at, SMALL_REPLY);
                c.chain_judged(ch, any)
            }
        ),
    ]
}

fn indirect_table(c: &mut Ctx) -> ChainBuilder {
    let r = c.getattr_req();
    request_chain(&r)
}

fn indirect_scenarios() -> Vec<Scenario> {
    vec![
        scenario!(
            "indirect-valid",
            "well-formed GETATTR in an indirect table",
            |c| c.with_indirect(|c| {
                c.table_judged(must_succeed, |t| ChainBuilder::new().indirect(t))
            })
        ),
        scenario!(
            "indirect-outside-memory",
            "indirect table address past the end of RAM",
            |c| c.chain_judged(
                ChainBuilder::new().raw_indirect(c.mem_end() + 0x1000, 32),
                must_fail
            )
        ),
        scenario!(
            "indirect-len-not-multiple",
            "indirect table length 17",
            |c| c.table_judged(any, |t| ChainBuilder::new().indirect(t).set_len(0, 17))
        ),
        scenario!("indirect-len-zero", "indirect table length 0", |c| {
            c.table_judged(must_fail, |t| ChainBuilder::new().indirect(t).set_len(0, 0))
        }),
        scenario!(
            "indirect-len-huge",
            "indirect table length 0xfffffff0",
            |c| c.table_judged(must_fail, |t| {
                ChainBuilder::new().indirect(t).set_len(0, 0xffff_fff0)
            })
        ),
        scenario!(
            "indirect-nested",
            "indirect table containing an INDIRECT descriptor",
            |c| c.table_judged(must_fail, |t| {
                ChainBuilder::new().indirect(ChainBuilder::new().indirect(t))
            })
        ),
        scenario!(
            "indirect-with-next",
            "INDIRECT|NEXT head followed by another descriptor",
            |c| c.table_judged(any, |t| {
                ChainBuilder::new()
                    .indirect(t)
                    .writable(SMALL_REPLY)
                    .set_flags(0, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT)
            })
        ),
        scenario!("indirect-write-flag", "INDIRECT|WRITE head", |c| {
            c.table_judged(any, |t| {
                ChainBuilder::new()
                    .indirect(t)
                    .set_flags(0, VRING_DESC_F_INDIRECT | VRING_DESC_F_WRITE)
            })
        }),
        scenario!(
            "indirect-loop",
            "indirect table whose last entry's NEXT points to its first",
            |c| c.table_judged(any, |t| {
                ChainBuilder::new().indirect(
                    t.set_flags(1, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT)
                        .set_next(1, Next::Rel(0)),
                )
            })
        ),
        scenario!(
            "indirect-next-out-of-table",
            "indirect entry with NEXT beyond the table",
            |c| c.table_judged(any, |t| {
                ChainBuilder::new().indirect(t.set_next(0, Next::Abs(200)))
            })
        ),
        scenario!(
            "indirect-longer-than-queue",
            "indirect table of 2*queue_size entries",
            |c| c.with_indirect(|c| {
                c.getattr_judged(any, |c, r| {
                    let n = 2 * usize::from(c.qsize());
                    ChainBuilder::new().indirect(spread(r, n - 1).writable(SMALL_REPLY))
                })
            })
        ),
    ]
}

fn header_scenarios() -> Vec<Scenario> {
    vec![
        scenario!("header-truncated", "20 bytes of a 40-byte in_header", |c| {
            let r = c.getattr_req();
            c.req_judged(&r[..20], must_fail)
        }),
        scenario!(
            "header-len-longer",
            "GETATTR whose header len exceeds the chain by 100",
            |c| c.getattr_claiming(156)
        ),
        scenario!(
            "header-len-shorter",
            "LOOKUP whose header len covers only the header",
            |c| c.claiming_len(abi::opcode::LOOKUP, 40, &[b"hello\0"])
        ),
        scenario!(
            "header-len-below-header",
            "GETATTR with header len 8",
            |c| c.getattr_claiming(8)
        ),
        scenario!(
            "header-len-huge",
            "GETATTR with header len 0xffffffff",
            |c| c.getattr_claiming(u32::MAX)
        ),
        scenario!(
            "trailing-garbage",
            "GETATTR followed by 1000 extra bytes in the chain",
            |c| {
                let mut r = c.getattr_req();
                r.extend_from_slice(&[0xa5; 1000]);
                c.req_judged(&r, any)
            }
        ),
        scenario!(
            "args-truncated-getattr",
            "GETATTR with 8 of 16 argument bytes",
            |c| c.request_judged(any, abi::opcode::GETATTR, abi::ROOT_ID, &[&[0u8; 8]])
        ),
        scenario!(
            "args-truncated-setattr",
            "SETATTR(mode) with 40 of 88 argument bytes",
            |c| {
                let e = c.node(b"hello")?;
                let s = abi::SetattrIn {
                    valid: abi::fattr::MODE,
                    mode: 0o100777,
                    ..Default::default()
                };
                let args: &[&[u8]] = &[&s.as_bytes()[..40]];
                c.request_judged(must_fail, abi::opcode::SETATTR, e.nodeid, args)
            }
        ),
        scenario!(
            "args-truncated-read",
            "READ with 20 of 40 argument bytes",
            |c| c.handle_judged(Handle::Hello(libc::O_RDONLY), must_fail, |c, nodeid, fh| {
                let a = abi::ReadIn {
                    fh,
                    size: 4096,
                    ..Default::default()
                };
                c.req(abi::opcode::READ, nodeid, &[&a.as_bytes()[..20]])
            })
        ),
        scenario!("unknown-opcode", "opcode 9999", |c| {
            c.request_judged(must_fail, 9999, abi::ROOT_ID, &[&[0u8; 16]])
        }),
        scenario!("opcode-zero", "opcode 0", |c| {
            c.request_judged(must_fail, 0, abi::ROOT_ID, &[])
        }),
        scenario!("cuse-init", "CUSE_INIT (4096) on a virtio-fs queue", |c| {
            c.request_judged(
                must_fail,
                abi::opcode::CUSE_INIT,
                0,
                &[init_7_41().as_bytes()],
            )
        }),
        scenario!("reinit", "a second FUSE_INIT on a live session", |c| {
            c.request_judged(any, abi::opcode::INIT, 0, &[init_7_41().as_bytes()])
        }),
        scenario!(
            "extlen-bogus",
            "LOOKUP claiming 0xffff*8 bytes of extensions",
            |c| {
                let u = c.d.next_unique();
                let mut r = encode(abi::opcode::LOOKUP, u, abi::ROOT_ID, &[b"hello\0"]);
                r[36..38].copy_from_slice(&0xffffu16.to_le_bytes());
                c.req_judged(&r, any)
            }
        ),
        scenario!("nodeid-zero", "GETATTR of node 0", |c| c.getattr_of(0)),
        scenario!("nodeid-forged", "GETATTR of node 0xdeadbeef00001234", |c| {
            c.getattr_of(0xdead_beef_0000_1234)
        }),
        scenario!("nodeid-max", "GETATTR of node 2^64-1", |c| {
            c.getattr_of(u64::MAX)
        }),
        scenario!(
            "nodeid-near-valid",
            "GETATTR of (a real node id + 1000)",
            |c| {
                let e = c.node(b"hello")?;
                c.getattr_of(e.nodeid + 1000)
            }
        ),
        scenario!(
            "lookup-forged-parent",
            "LOOKUP hello under node 0x1234567",
            |c| c.request_judged(must_fail, abi::opcode::LOOKUP, 0x123_4567, &[b"hello\0"])
        ),
    ]
}

fn escape_check(c: &Ctx, name: &str) -> Verdict {
    match c.fx {
        Some(fx) if fx.outside.join(name).exists() || fx.root.join(name).exists() => {
            Verdict::Fail(format!("{name} created outside the shared directory"))
        }
        _ => Verdict::Pass,
    }
}

/// Judges a request that tried to create `name` above the share: it must be refused, and
/// nothing may have appeared outside.
fn refused_inside(c: &Ctx, o: &Outcome, name: &str) -> Verdict {
    match must_fail(o) {
        Verdict::Pass => escape_check(c, name),
        f => f,
    }
}

/// Host inode numbers of directories above or beside the share (the fixture root, the
/// outside directory, their parent and `/`).
fn forbidden_inos(c: &Ctx) -> Vec<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut dirs = vec![PathBuf::from("/")];
    if let Some(fx) = c.fx {
        dirs.push(fx.root.clone());
        dirs.push(fx.outside.clone());
        if let Some(p) = fx.root.parent() {
            dirs.push(p.to_path_buf());
        }
    }
    dirs.iter()
        .filter_map(|d| fs::metadata(d).ok())
        .map(|m| m.ino())
        .collect()
}

fn name_scenarios() -> Vec<Scenario> {
    vec![
        scenario!(
            "name-no-nul",
            "LOOKUP 'hello' without a terminating NUL",
            |c| c.lookup_judged(any, b"hello")
        ),
        scenario!(
            "name-with-slash",
            "LOOKUP 'sub/inner' (two components)",
            |c| c.lookup_judged(must_fail, b"sub/inner\0")
        ),
        scenario!("name-embedded-nul", "LOOKUP 'hel\\0lo\\0'", |c| {
            c.lookup_judged(any, b"hel\0lo\0")
        }),
        scenario!("name-empty", "LOOKUP ''", |c| c.lookup_judged(any, b"\0")),
        scenario!("name-too-long", "LOOKUP of a 10000-byte name", |c| {
            c.lookup_judged(must_fail, &cname(&[b'a'; 10000]))
        }),
        scenario!(
            "dotdot-at-root",
            "LOOKUP '..' at the root must stay at the root",
            |c| {
                let root = c.root_ino()?;
                match c.d.lookup(abi::ROOT_ID, b"..") {
                    Ok(e) if e.attr.ino == root => {
                        Ok((Outcome::Success("root".into()), Verdict::Pass))
                    }
                    Ok(e) => Ok((
                        Outcome::Success(format!("ino {} (root is {root})", e.attr.ino)),
                        Verdict::Fail("'..' at the root did not return the root".into()),
                    )),
                    Err(e) => refused(e),
                }
            }
        ),
        scenario!(
            "dotdot-from-sub",
            "LOOKUP sub, then '..' twice: must never reach a directory above the root",
            |c| {
                let root = c.root_ino()?;
                let forbidden = forbidden_inos(c);
                let sub = c.node(b"sub")?;
                let up = match c.d.lookup(sub.nodeid, b"..") {
                    Ok(e) => e,
                    Err(e) => return refused(e),
                };
                let upup = match c.d.lookup(up.nodeid, b"..") {
                    Ok(e) => e,
                    Err(e) => return refused(e),
                };
                let desc = |ino: u64| {
                    if ino == root {
                        "root".to_string()
                    } else if ino == sub.attr.ino {
                        "sub".to_string()
                    } else {
                        format!("ino {ino}")
                    }
                };
                let o = Outcome::Success(format!(
                    "sub/.. = {}, sub/../.. = {}",
                    desc(up.attr.ino),
                    desc(upup.attr.ino)
                ));
                let escaped =
                    forbidden.contains(&up.attr.ino) || forbidden.contains(&upup.attr.ino);
                let v = if escaped {
                    Verdict::Fail("'..' climbed above the root".into())
                } else {
                    Verdict::Pass
                };
                Ok((o, v))
            }
        ),
        scenario!(
            "mkdir-dotdot",
            "MKDIR '../escaped_mkdir' at the root",
            |c| {
                let o = outcome_of(c.d.mkdir(abi::ROOT_ID, b"../escaped_mkdir", 0o755), |_| {
                    String::new()
                })?;
                let v = refused_inside(c, &o, "escaped_mkdir");
                Ok((o, v))
            }
        ),
        scenario!(
            "create-with-slash",
            "CREATE 'sub/created' at the root",
            |c| {
                let o = outcome_of(
                    c.d.create(abi::ROOT_ID, b"sub/created", 0o644, libc::O_RDWR as u32),
                    |_| String::new(),
                )?;
                let mut v = must_fail(&o);
                if let Some(fx) = c.fx {
                    if fx.shared.join("sub/created").exists() {
                        v = Verdict::Fail("created through a '/' name".into());
                    }
                }
                Ok((o, v))
            }
        ),
        scenario!("rename-dotdot", "RENAME hello -> '../stolen'", |c| {
            c.with_fixtures(|c, _| {
                let a = abi::RenameIn {
                    newdir: abi::ROOT_ID,
                };
                let r = c.req(
                    abi::opcode::RENAME,
                    abi::ROOT_ID,
                    &[a.as_bytes(), b"hello\0", b"../stolen\0"],
                );
                let o = c.send_req(&r)?;
                let v = refused_inside(c, &o, "stolen");
                Ok((o, v))
            })
        }),
        scenario!(
            "symlink-dir-escape",
            "host symlink escape_dir -> outside dir; LOOKUP escape_dir/secret",
            |c| c.lookup_through_link(b"escape_dir")
        ),
        scenario!(
            "symlink-rel-escape",
            "host symlink escape_rel -> ../outside; LOOKUP escape_rel/secret",
            |c| c.lookup_through_link(b"escape_rel")
        ),
        scenario!(
            "symlink-file-escape",
            "host symlink escape_file -> outside/secret; OPEN+READ it",
            |c| c.with_fixtures(|c, _| {
                let l = c.node(b"escape_file")?;
                c.read_through_link(l.nodeid, "followed a symlink out of the share")
            })
        ),
        scenario!(
            "guest-symlink-escape",
            "guest SYMLINK g_link -> <outside>/secret, then OPEN+READ it",
            |c| {
                let target = match c.fx {
                    Some(fx) => fx.outside.join("secret"),
                    None => PathBuf::from("/etc/hostname"),
                };
                let tb = cname(target.as_os_str().as_encoded_bytes());
                let r = c.req(abi::opcode::SYMLINK, abi::ROOT_ID, &[b"g_link\0", &tb]);
                let _ = c.send_req(&r)?;
                let l = match c.node(b"g_link") {
                    Ok(l) => l,
                    Err(e) => return refused(e),
                };
                let res =
                    c.read_through_link(l.nodeid, "followed a guest symlink out of the share")?;
                let _ = c.d.unlink(abi::ROOT_ID, b"g_link");
                Ok(res)
            }
        ),
        scenario!(
            "link-forged-node",
            "LINK of forged node 0xdeadbeef as 'linked'",
            |c| {
                let a = abi::LinkIn {
                    oldnodeid: 0xdead_beef,
                };
                let args: &[&[u8]] = &[a.as_bytes(), b"linked\0"];
                c.request_judged(must_fail, abi::opcode::LINK, abi::ROOT_ID, args)
            }
        ),
        scenario!("rename-missing-newname", "RENAME with only one name", |c| {
            let a = abi::RenameIn {
                newdir: abi::ROOT_ID,
            };
            let args: &[&[u8]] = &[a.as_bytes(), b"hello\0"];
            c.request_judged(must_fail, abi::opcode::RENAME, abi::ROOT_ID, args)
        }),
    ]
}

fn size_scenarios() -> Vec<Scenario> {
    vec![
        scenario!(
            "read-size-huge",
            "READ of 4 GiB-1 bytes with a 256-byte reply buffer",
            |c| c.read_claiming(
                Handle::Hello(libc::O_RDONLY),
                abi::opcode::READ,
                0,
                u32::MAX
            )
        ),
        scenario!(
            "write-size-mismatch",
            "WRITE claiming 4 GiB-1 bytes, carrying 10",
            |c| c.write_claiming(1 << 20, u32::MAX)
        ),
        scenario!(
            "write-size-larger-than-data",
            "WRITE claiming 4096 bytes, carrying 10",
            |c| c.write_claiming(1 << 20, 4096)
        ),
        scenario!("write-offset-huge", "WRITE at offset 2^63-5", |c| {
            c.write_claiming(i64::MAX as u64 - 4, 10)
        }),
        scenario!(
            "getxattr-size-huge",
            "GETXATTR user.x with size 4 GiB-1",
            |c| {
                let args: &[&[u8]] = &[XATTR_SIZE_HUGE.as_bytes(), b"user.x\0"];
                c.request_judged(any, abi::opcode::GETXATTR, abi::ROOT_ID, args)
            }
        ),
        scenario!("listxattr-size-huge", "LISTXATTR with size 4 GiB-1", |c| {
            let args: &[&[u8]] = &[XATTR_SIZE_HUGE.as_bytes()];
            c.request_judged(any, abi::opcode::LISTXATTR, abi::ROOT_ID, args)
        }),
        scenario!(
            "setxattr-size-mismatch",
            "SETXATTR claiming a 4 GiB-1 value, carrying 4 bytes",
            |c| {
                let a = abi::SetxattrIn {
                    size: u32::MAX,
                    ..Default::default()
                };
                let args: &[&[u8]] = &[&a.as_bytes()[..8], b"user.x\0", b"abcd"];
                c.request_judged(must_fail, abi::opcode::SETXATTR, abi::ROOT_ID, args)
            }
        ),
        scenario!(
            "readdir-size-huge",
            "READDIR of 4 GiB-1 bytes with a 256-byte reply buffer",
            |c| c.read_claiming(Handle::RootDir, abi::opcode::READDIR, 0, u32::MAX)
        ),
        scenario!("readdir-offset-forged", "READDIR from offset 2^63", |c| {
            c.read_claiming(Handle::RootDir, abi::opcode::READDIR, 1 << 63, 4096)
        }),
        scenario!(
            "batch-forget-count-huge",
            "BATCH_FORGET count 2^32-1 with one entry (hiprio)",
            |c| {
                let a = abi::BatchForgetIn {
                    count: u32::MAX,
                    dummy: 0,
                };
                let one = abi::ForgetOne {
                    nodeid: 0xdead_beef,
                    nlookup: 1,
                };
                c.hiprio_judged(
                    abi::opcode::BATCH_FORGET,
                    0,
                    &[a.as_bytes(), one.as_bytes()],
                )
            }
        ),
        scenario!(
            "batch-forget-forged",
            "BATCH_FORGET of 1000 forged node ids (hiprio)",
            |c| {
                let a = abi::BatchForgetIn {
                    count: 1000,
                    dummy: 0,
                };
                let mut body = Vec::new();
                for i in 0..1000u64 {
                    body.extend_from_slice(
                        abi::ForgetOne {
                            nodeid: 0x4000_0000 + i * 7,
                            nlookup: u64::MAX,
                        }
                        .as_bytes(),
                    );
                }
                c.hiprio_judged(abi::opcode::BATCH_FORGET, 0, &[a.as_bytes(), &body])
            }
        ),
        scenario!(
            "forget-root",
            "FORGET the root with nlookup 2^64-1 (hiprio)",
            |c| {
                let a = abi::ForgetIn { nlookup: u64::MAX };
                c.hiprio_judged(abi::opcode::FORGET, abi::ROOT_ID, &[a.as_bytes()])
            }
        ),
        scenario!(
            "forget-overcount",
            "LOOKUP hello, FORGET it 2^64-1 times, GETATTR it",
            |c| {
                let e = c.node(b"hello")?;
                let a = abi::ForgetIn { nlookup: u64::MAX };
                let r = c.req(abi::opcode::FORGET, e.nodeid, &[a.as_bytes()]);
                let _ = c.send_hiprio(&r)?;
                // Give the hiprio queue a moment; the stale node must now fail or still work, never crash.
                std::thread::sleep(Duration::from_millis(20));
                result_judged(c.d.getattr(e.nodeid), |_| String::new(), any)
            }
        ),
        scenario!(
            "forget-on-request-queue",
            "FORGET sent on the request queue",
            |c| {
                let a = abi::ForgetIn { nlookup: 1 };
                c.request_judged(any, abi::opcode::FORGET, 0xdead_beef, &[a.as_bytes()])
            }
        ),
        scenario!(
            "getattr-on-hiprio",
            "GETATTR sent on the hiprio queue",
            |c| {
                let r = c.getattr_req();
                judged(c.send(HIPRIO_QUEUE, &request_chain(&r))?, any)
            }
        ),
        scenario!(
            "interrupt-forged",
            "INTERRUPT of a unique that was never sent",
            |c| {
                let a = abi::InterruptIn {
                    unique: 0xdead_beef,
                };
                c.request_judged(any, abi::opcode::INTERRUPT, 0, &[a.as_bytes()])
            }
        ),
        scenario!("lseek-bad-whence", "LSEEK with whence 99", |c| {
            c.handle_judged(Handle::Hello(libc::O_RDONLY), must_fail, |c, nodeid, fh| {
                let a = abi::LseekIn {
                    fh,
                    offset: 0,
                    whence: 99,
                    padding: 0,
                };
                c.req(abi::opcode::LSEEK, nodeid, &[a.as_bytes()])
            })
        }),
        scenario!("fallocate-huge", "FALLOCATE of 2^62 bytes", |c| {
            c.handle_judged(Handle::Hello(libc::O_RDWR), must_fail, |c, nodeid, fh| {
                let a = abi::FallocateIn {
                    fh,
                    offset: 0,
                    length: 1 << 62,
                    mode: 0,
                    padding: 0,
                };
                c.req(abi::opcode::FALLOCATE, nodeid, &[a.as_bytes()])
            })
        }),
    ]
}

fn handle_scenarios() -> Vec<Scenario> {
    vec![
        scenario!(
            "read-forged-fh",
            "READ hello with file handle 0xdeadbeef",
            |c| {
                let e = c.node(b"hello")?;
                let r = c.d.read(e.nodeid, 0xdead_beef, 0, 100);
                result_judged(r, |b| format!("{} bytes", b.len()), must_fail)
            }
        ),
        scenario!(
            "write-forged-fh",
            "WRITE hello with file handle 0xdeadbeef",
            |c| {
                let e = c.node(b"hello")?;
                let r = c.d.write(e.nodeid, 0xdead_beef, 0, b"pwned");
                result_judged(r, |n| format!("{n} bytes"), must_fail)
            }
        ),
        scenario!(
            "release-forged-fh",
            "RELEASE of file handle 0xdeadbeef",
            |c| {
                let r = c.d.release(abi::ROOT_ID, 0xdead_beef, false);
                result_judged(r, |_| String::new(), any)
            }
        ),
        scenario!(
            "readdir-forged-fh",
            "READDIR with directory handle 0xdeadbeef",
            |c| {
                let r = c.d.readdir(abi::ROOT_ID, 0xdead_beef, 0, 4096);
                result_judged(r, |v| format!("{} entries", v.len()), must_fail)
            }
        ),
        scenario!(
            "readdir-with-file-fh",
            "READDIR of the root using a regular file's handle",
            |c| {
                let o = c.with_handle(Handle::Hello(libc::O_RDONLY), |c, _, fh| {
                    let r = c.d.readdir(abi::ROOT_ID, fh, 0, 4096);
                    outcome_of(r, |v| format!("{} entries", v.len()))
                })?;
                judged(o, any)
            }
        ),
        scenario!(
            "release-twice",
            "RELEASE the same handle twice, then READ with it",
            |c| {
                let e = c.node(b"hello")?;
                let f = c.d.open(e.nodeid, libc::O_RDONLY as u32)?;
                c.d.release(e.nodeid, f.fh, false)?;
                let _ = c.d.release(e.nodeid, f.fh, false);
                let r = c.d.read(e.nodeid, f.fh, 0, 100);
                result_judged(r, |b| format!("{} bytes", b.len()), must_fail)
            }
        ),
    ]
}

fn cross_region(c: &mut Ctx) -> Judged {
    let Some(&b) = c.d.mem().boundaries().first() else {
        return Ok((
            Outcome::Skipped("guest memory is a single region".into()),
            Verdict::Pass,
        ));
    };
    let mut notes = Vec::new();
    // 1. The request straddles the boundary.
    let r = c.getattr_req();
    c.d.mem().write(b - 20, &r)?;
    let len = u32::try_from(r.len()).unwrap_or(u32::MAX);
    let ch = ChainBuilder::new()
        .readable_at(b - 20, len)
        .writable(SMALL_REPLY);
    notes.push(("request", c.send(REQUEST_QUEUE, &ch)?));
    // 2. The reply straddles it.
    let r = c.getattr_req();
    let ch = ChainBuilder::new().readable(&r).writable_at(b - 50, 120);
    notes.push(("reply", c.send(REQUEST_QUEUE, &ch)?));
    // 3. READ data straddles it and must arrive intact.
    let mut data_ok = true;
    if c.fx.is_some() {
        let done = c.read_hello_into(|ch| ch.writable_at(b - 16 - 7, 16 + 7 + 100))?;
        let o = match done.map(|d| Reply::parse(&d)) {
            Some(Ok(r)) if r.header.error == 0 => {
                data_ok = r.payload == HELLO;
                Outcome::Success(format!("{} bytes", r.payload.len()))
            }
            Some(Ok(r)) => Outcome::Errno(-r.header.error),
            Some(Err(_)) => Outcome::UsedNoReply { used_len: 0 },
            None => Outcome::Dropped,
        };
        notes.push(("read", o));
    }
    let bad: Vec<String> = notes
        .iter()
        .filter(|(_, o)| !matches!(o, Outcome::Success(_)))
        .map(|(n, o)| format!("{n}: {o}"))
        .collect();
    let summary = notes
        .iter()
        .map(|(n, o)| format!("{n} {o}"))
        .collect::<Vec<_>>()
        .join(", ");
    let v = if !bad.is_empty() {
        Verdict::Fail(format!(
            "well-formed buffers across regions not served: {}",
            bad.join("; ")
        ))
    } else if !data_ok {
        Verdict::Fail("READ data across the region boundary is corrupt".into())
    } else {
        Verdict::Pass
    };
    Ok((Outcome::Success(summary), v))
}

/// READ of `hello` into writable buffers of 16, 1, 2, 3, 5, 8, 13, 21 and 200 bytes: the
/// data must arrive intact.
fn read_scattered(c: &mut Ctx) -> Judged {
    let done = c.read_hello_into(|ch| ch.writable_split(&[16, 1, 2, 3, 5, 8, 13, 21, 200]))?;
    let Some(done) = done else {
        return Ok((Outcome::Dropped, Verdict::Fail("READ not answered".into())));
    };
    let rep = Reply::parse(&done)?;
    if rep.header.error < 0 {
        return Ok((
            Outcome::Errno(-rep.header.error),
            Verdict::Fail("READ failed".into()),
        ));
    }
    let v = if rep.payload == HELLO {
        Verdict::Pass
    } else {
        Verdict::Fail(format!("read {:?}", String::from_utf8_lossy(&rep.payload)))
    };
    Ok((Outcome::Success(format!("{} bytes", rep.payload.len())), v))
}

fn data_scenarios() -> Vec<Scenario> {
    vec![
        scenario!(
            "cross-region-buffers",
            "request, reply and READ data straddling a memory-region boundary (needs --mem-regions 2)",
            cross_region
        ),
        scenario!(
            "request-one-byte-descriptors",
            "valid GETATTR with every request byte in its own descriptor",
            |c| c.getattr_judged(must_succeed, |_, r| {
                let cuts: Vec<usize> = (1..r.len()).collect();
                ChainBuilder::new()
                    .readable_split(r, &cuts)
                    .writable(SMALL_REPLY)
            })
        ),
        scenario!(
            "reply-one-byte-descriptors",
            "valid GETATTR whose 120-byte reply lands in 120 one-byte descriptors",
            |c| c.getattr_judged(must_succeed, |_, r| {
                ChainBuilder::new().readable(r).writable_split(&[1; 120])
            })
        ),
        scenario!(
            "read-scattered",
            "READ hello into writable buffers of 16,1,2,3,5,8,13,21,200 bytes; data must match",
            |c| c.with_fixtures(|c, _| read_scattered(c))
        ),
        scenario!(
            "write-scattered",
            "WRITE 26 bytes given one byte per descriptor; host file must match",
            |c| c.with_fixtures(|c, fx| {
                let data = b"abcdefghijklmnopqrstuvwxyz";
                let out = c.with_handle(Handle::Hello(libc::O_RDWR), |c, nodeid, fh| {
                    let a = abi::WriteIn {
                        fh,
                        offset: 0,
                        size: data.len() as u32,
                        ..Default::default()
                    };
                    let r = c.req(abi::opcode::WRITE, nodeid, &[a.as_bytes(), data]);
                    let cuts: Vec<usize> = (40..r.len()).collect();
                    let ch = ChainBuilder::new()
                        .readable_split(&r, &cuts)
                        .writable(SMALL_REPLY);
                    c.send(REQUEST_QUEUE, &ch)
                })?;
                let host = fs::read(fx.shared.join("hello")).unwrap_or_default();
                let v = match &out {
                    Outcome::Success(_) if host.starts_with(data) => Verdict::Pass,
                    Outcome::Success(_) => Verdict::Fail(format!(
                        "host file holds {:?}",
                        String::from_utf8_lossy(&host)
                    )),
                    other => Verdict::Fail(format!("well-formed WRITE not served: {other}")),
                };
                Ok((out, v))
            })
        ),
    ]
}

fn toctou(c: &mut Ctx) -> Judged {
    let (gpa, _) = c.d.scratch();
    let u = c.d.next_unique();
    // Every variant is exactly 58 bytes, so only the contents race, not the chain length.
    let good = encode(abi::opcode::LOOKUP, u, abi::ROOT_ID, &[TOCTOU_NAME]);
    let dotdot = encode(
        abi::opcode::LOOKUP,
        u,
        abi::ROOT_ID,
        &[b"../outside/secret\0"],
    );
    let mkdir_in = abi::MkdirIn {
        mode: 0o755,
        umask: 0,
    };
    let mkdir = encode(
        abi::opcode::MKDIR,
        u,
        abi::ROOT_ID,
        &[mkdir_in.as_bytes(), b"../flippe\0"],
    );
    let huge = encode_with_len(
        abi::opcode::LOOKUP,
        u,
        abi::ROOT_ID,
        u32::MAX,
        &[TOCTOU_NAME],
    );
    let mut unterminated = good.clone();
    if let Some(last) = unterminated.last_mut() {
        *last = b'x';
    }
    debug_assert!([&dotdot, &mkdir, &huge, &unterminated]
        .iter()
        .all(|v| v.len() == good.len()));
    let len = u32::try_from(good.len()).unwrap_or(u32::MAX);
    c.d.mem().write(gpa, &good)?;
    let flipper =
        c.d.mem()
            .flip(gpa, vec![good, dotdot, mkdir, huge, unterminated]);
    flipper.wait_started(Duration::from_secs(2));
    let mut forbidden = forbidden_inos(c);
    if let Some(fx) = c.fx {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = fs::metadata(fx.outside.join("secret")) {
            forbidden.push(m.ino());
        }
    }
    let mut escaped = 0u32;
    let (mut ok, mut err, mut dropped) = (0u32, 0u32, 0u32);
    for _ in 0..50 {
        let mut heads = Vec::new();
        for _ in 0..32 {
            let ch = ChainBuilder::new()
                .readable_at(gpa, len)
                .writable(SMALL_REPLY);
            heads.push(c.d.submit_nokick(REQUEST_QUEUE, &ch)?);
        }
        c.d.kick(REQUEST_QUEUE)?;
        let mut stalled = false;
        for h in heads {
            // Once one chain is not answered, only collect what is already there: the probe
            // after the scenario decides whether the backend still serves.
            let t = if stalled {
                Duration::ZERO
            } else {
                Duration::from_secs(1)
            };
            let got = c.d.wait(REQUEST_QUEUE, h, t)?;
            stalled |= got.is_none();
            match got {
                Some(done) => match Reply::parse(&done) {
                    Ok(r) if r.header.error < 0 => err += 1,
                    Ok(r) => {
                        ok += 1;
                        if let Ok(e) = r.get::<abi::EntryOut>() {
                            if forbidden.contains(&e.attr.ino) {
                                escaped += 1;
                            }
                        }
                    }
                    Err(_) => dropped += 1,
                },
                None => dropped += 1,
            }
        }
        if stalled {
            break;
        }
        c.d.abandon_all(REQUEST_QUEUE)?;
    }
    let flips = flipper.stop();
    let v = if escaped == 0 {
        Verdict::Pass
    } else {
        Verdict::Fail(format!(
            "{escaped} replies named an inode outside the share"
        ))
    };
    Ok((
        Outcome::Success(format!(
            "{ok} ok, {err} errors, {dropped} dropped; {flips} rewrites"
        )),
        v,
    ))
}

fn queue_scenarios() -> Vec<Scenario> {
    vec![
        scenario!(
            "toctou-rewrite",
            "1600 chains whose bytes another thread keeps rewriting: LOOKUP hello / \
             LOOKUP ../outside/secret / MKDIR ../flipped / len 2^32-1 / name without NUL",
            toctou
        ),
        scenario!(
            "flood-hostile-ring",
            "half the ring of malformed chains published at once, one kick",
            |c| {
                let n = u64::from(c.qsize()) / 4;
                let mut st = HammerStats::default();
                for k in 0..n {
                    let ch = hammer_chain(c.d, k);
                    c.d.submit_nokick(REQUEST_QUEUE, &ch)?;
                    st.sent += 1;
                }
                c.d.kick(REQUEST_QUEUE)?;
                std::thread::sleep(c.wait);
                let got = c.d.collect(REQUEST_QUEUE)?;
                Ok((
                    Outcome::Success(format!("{got}/{} returned", st.sent)),
                    Verdict::Pass,
                ))
            }
        ),
        scenario!(
            "flood-fill-ring",
            "fill the whole request ring with GETATTRs, one kick",
            |c| {
                let n = usize::from(c.qsize()) / 2;
                let mut heads = Vec::with_capacity(n);
                for _ in 0..n {
                    let r = c.getattr_req();
                    heads.push(c.d.submit_nokick(REQUEST_QUEUE, &request_chain(&r))?);
                }
                c.d.kick(REQUEST_QUEUE)?;
                let mut answered = 0;
                for h in heads {
                    if let Some(done) = c.d.wait(REQUEST_QUEUE, h, Duration::from_secs(5))? {
                        if Reply::parse(&done)
                            .map(|r| r.header.error == 0)
                            .unwrap_or(false)
                        {
                            answered += 1;
                        }
                    }
                }
                let o = Outcome::Success(format!("{answered}/{n} answered"));
                let v = if answered == n {
                    Verdict::Pass
                } else {
                    Verdict::Fail(format!("only {answered} of {n} answered"))
                };
                Ok((o, v))
            }
        ),
        scenario!(
            "avail-head-out-of-range",
            "avail ring entry naming descriptor queue_size+7",
            |c| {
                let n = c.qsize();
                c.d.push_avail_raw(REQUEST_QUEUE, n.wrapping_add(7))?;
                std::thread::sleep(c.wait);
                c.d.collect(REQUEST_QUEUE)?;
                let stray = c.d.queue_mut(REQUEST_QUEUE)?.take_stray();
                let o = match stray.first() {
                    Some(e) => Outcome::Success(format!("used id {} len {}", e.id, e.len)),
                    None => Outcome::Dropped,
                };
                Ok((o, Verdict::Pass))
            }
        ),
        scenario!(
            breaks_queue "avail-idx-jump",
            "avail->idx moved queue_size+1 entries ahead at once",
            |c| {
                let (idx, n) = {
                    let q = c.d.queue(REQUEST_QUEUE)?;
                    (q.avail_idx(), q.layout.size)
                };
                c.d.set_avail_idx_raw(REQUEST_QUEUE, idx.wrapping_add(n).wrapping_add(1))?;
                c.d.kick(REQUEST_QUEUE)?;
                std::thread::sleep(c.wait);
                Ok((Outcome::Dropped, Verdict::Pass))
            }
        ),
    ]
}

// ---------------------------------------------------------------------------------------
// Running scenarios against a backend
// ---------------------------------------------------------------------------------------

/// A backend the runner can connect to, and reconnect to after it broke.
pub trait Target {
    /// Label for tables.
    fn label(&self) -> String;
    /// A connected driver after FUSE_INIT (respawning the backend if needed).
    fn connect(&mut self) -> Result<Driver>;
    /// Host fixtures, when known.
    fn fixtures(&self) -> Option<Fixtures>;
    /// `Some(reason)` if the backend process is known to have died.
    fn death(&mut self) -> Option<String>;
}

/// A backend process we spawn (and respawn after each connection ends or it dies).
pub struct SpawnedTarget {
    // Declared first so the daemon is killed before its directory is removed.
    daemon: Option<Daemon>,
    spec: DaemonSpec,
    root: ScratchDir,
    fx: Fixtures,
    connected: bool,
    spawns: u32,
    cfg: DriverConfig,
}

impl SpawnedTarget {
    /// Prepares a scratch directory with fixtures and starts the first daemon, so that a
    /// stub or missing binary is reported here.
    pub fn new(spec: DaemonSpec, cfg: DriverConfig) -> std::result::Result<Self, SpawnError> {
        let root = ScratchDir::new(&spec.label)
            .map_err(|e| SpawnError::Io(std::io::Error::other(e.to_string())))?;
        let fx = Fixtures::create(root.path())
            .map_err(|e| SpawnError::Io(std::io::Error::other(e.to_string())))?;
        let mut t = Self {
            spec,
            root,
            fx,
            daemon: None,
            connected: false,
            spawns: 0,
            cfg,
        };
        t.respawn()?;
        Ok(t)
    }

    fn respawn(&mut self) -> std::result::Result<(), SpawnError> {
        if let Some(mut d) = self.daemon.take() {
            d.kill();
        }
        self.spawns += 1;
        let sock = self.root.path().join(format!("s{}.sock", self.spawns));
        let log = self.root.path().join(format!("log{}.txt", self.spawns));
        self.daemon = Some(Daemon::spawn(&self.spec, &sock, &self.fx.shared, &log)?);
        self.connected = false;
        Ok(())
    }

    /// The running daemon.
    pub fn daemon(&mut self) -> Option<&mut Daemon> {
        self.daemon.as_mut()
    }

    /// How many times a daemon was started.
    pub fn spawns(&self) -> u32 {
        self.spawns
    }

    /// The fixtures.
    pub fn fx(&self) -> &Fixtures {
        &self.fx
    }
}

impl Target for SpawnedTarget {
    fn label(&self) -> String {
        self.spec.label.clone()
    }

    fn connect(&mut self) -> Result<Driver> {
        if self.connected || !self.daemon.as_mut().is_some_and(|d| d.is_alive()) {
            self.respawn().map_err(|e| Error::Spawn(e.to_string()))?;
        }
        self.connected = true;
        let d = self
            .daemon
            .as_ref()
            .ok_or_else(|| Error::Spawn("no daemon".into()))?;
        d.connect(self.cfg.clone())
    }

    fn fixtures(&self) -> Option<Fixtures> {
        Some(self.fx.clone())
    }

    fn death(&mut self) -> Option<String> {
        let d = self.daemon.as_mut()?;
        d.exit_status().map(|s| {
            let log = d.log_text();
            let last = log
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            // Drop a leading "[timestamp LEVEL target]" and ANSI colour codes.
            let msg = last.rsplit("] ").next().unwrap_or(last);
            let msg: String = msg
                .split('\x1b')
                .enumerate()
                .map(|(i, p)| match (i, p.split_once('m')) {
                    (0, _) | (_, None) => p,
                    (_, Some((_, rest))) => rest,
                })
                .collect();
            let status = s.replace("exit status: ", "exit ");
            format!(
                "{status}: {}",
                msg.trim().chars().take(90).collect::<String>()
            )
        })
    }
}

/// A backend someone else started; it can be connected to once.
pub struct ExternalTarget {
    /// Its socket.
    pub socket: PathBuf,
    /// Fixtures, if the caller created them in the shared directory.
    pub fx: Option<Fixtures>,
    /// Driver settings.
    pub cfg: DriverConfig,
    used: bool,
}

impl ExternalTarget {
    /// A target for the backend listening on `socket`.
    pub fn new(socket: PathBuf, fx: Option<Fixtures>, cfg: DriverConfig) -> Self {
        Self {
            socket,
            fx,
            cfg,
            used: false,
        }
    }
}

impl Target for ExternalTarget {
    fn label(&self) -> String {
        self.socket.display().to_string()
    }

    fn connect(&mut self) -> Result<Driver> {
        if self.used {
            return Err(Error::Spawn(
                "the external backend broke and cannot be restarted".into(),
            ));
        }
        self.used = true;
        let mut d = Driver::connect(&self.socket, self.cfg.clone())?;
        d.init()?;
        Ok(d)
    }

    fn fixtures(&self) -> Option<Fixtures> {
        self.fx.clone()
    }

    fn death(&mut self) -> Option<String> {
        None
    }
}

/// Time the probe waits for its reply.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Checks that both queues still serve: GETATTR of the root on the request queue, and a
/// FORGET of an unknown node on the hiprio queue. On success, everything the hostile
/// requests left in flight is reclaimed.
pub fn probe(d: &mut Driver) -> Health {
    if d.backend_hung_up() {
        return Health::Dead("vhost-user connection closed".into());
    }
    let r = getattr_root(d);
    match d.fuse_chain_timeout(REQUEST_QUEUE, &request_chain(&r), PROBE_TIMEOUT) {
        Ok(r) if r.header.error < 0 => {
            let why = format!("GETATTR of the root -> {}", errno_short(-r.header.error));
            let _ = d.abandon_all(REQUEST_QUEUE);
            return Health::Degraded(why);
        }
        Ok(_) => {}
        Err(Error::Timeout) => {
            return if d.backend_hung_up() {
                Health::Dead("vhost-user connection closed".into())
            } else {
                Health::QueueStuck
            }
        }
        Err(Error::BadReply(_)) => return Health::QueueStuck,
        Err(e) => return Health::Dead(e.to_string()),
    }
    match d.forget(0x7fff_ffff_0000_0001, 1, PROBE_TIMEOUT) {
        Ok(true) => {}
        Ok(false) => return Health::QueueStuck,
        Err(e) => return Health::Dead(e.to_string()),
    }
    // Stragglers from a thread pool get a moment to land before buffers are reused.
    let _ = d.drain(REQUEST_QUEUE, Duration::from_millis(20));
    let _ = d.abandon_all(REQUEST_QUEUE);
    let _ = d.abandon_all(HIPRIO_QUEUE);
    Health::Serving
}

/// Runs `scenarios` against `target`, reconnecting (respawning) after any that broke it.
pub fn run(target: &mut dyn Target, scenarios: &[Scenario], wait: Duration) -> Vec<Record> {
    let mut out = Vec::with_capacity(scenarios.len());
    let mut drv: Option<Driver> = None;
    for s in scenarios {
        if drv.is_none() {
            match target.connect() {
                Ok(d) => drv = Some(d),
                Err(e) => {
                    out.push(Record {
                        name: s.name,
                        outcome: Outcome::Skipped(format!("cannot connect: {e}")),
                        verdict: Verdict::Fail(format!("cannot connect: {e}")),
                        health: Health::Dead(e.to_string()),
                        breaks_queue: s.breaks_queue,
                    });
                    continue;
                }
            }
        }
        let Some(d) = drv.as_mut() else { continue };
        let fx = target.fixtures();
        if let Some(f) = &fx {
            let _ = f.reset();
        }
        let mut ctx = Ctx {
            d,
            fx: fx.as_ref(),
            wait,
        };
        let (outcome, verdict) = match (s.run)(&mut ctx) {
            Ok(x) => x,
            Err(Error::Timeout) => (
                Outcome::Dropped,
                Verdict::Fail("a well-formed step of the scenario was not answered".into()),
            ),
            Err(e) => (
                Outcome::Skipped(format!("driver: {e}")),
                Verdict::Fail(format!("scenario could not run: {e}")),
            ),
        };
        let (outcome, verdict) = match fx.as_ref().map(|f| f.escapes()).unwrap_or_default() {
            esc if esc.is_empty() => (outcome, verdict),
            esc => {
                let names: Vec<String> = esc.iter().map(|p| p.display().to_string()).collect();
                (
                    outcome,
                    Verdict::Fail(format!(
                        "host paths created outside the share: {}",
                        names.join(", ")
                    )),
                )
            }
        };
        let health = match target.death() {
            Some(why) => Health::Dead(why),
            None => match probe(d) {
                Health::Serving => Health::Serving,
                other => target.death().map(Health::Dead).unwrap_or(other),
            },
        };
        if health != Health::Serving {
            drv = None;
        }
        out.push(Record {
            name: s.name,
            outcome,
            verdict,
            health,
            breaks_queue: s.breaks_queue,
        });
    }
    out
}

/// A Markdown table with one column per backend.
pub fn table(labels: &[String], results: &[Vec<Record>]) -> String {
    let mut s = String::from("| scenario |");
    for l in labels {
        s.push_str(&format!(" {l} |"));
    }
    s.push_str("\n|---|");
    for _ in labels {
        s.push_str("---|");
    }
    s.push('\n');
    let names: Vec<&str> = results
        .first()
        .map(|r| r.iter().map(|x| x.name).collect())
        .unwrap_or_default();
    for (i, n) in names.iter().enumerate() {
        s.push_str(&format!("| {n} |"));
        for r in results {
            let cell = r.get(i).map(|x| x.summary()).unwrap_or_default();
            s.push_str(&format!(" {} |", cell.replace('|', "/")));
        }
        s.push('\n');
    }
    s
}

// ---------------------------------------------------------------------------------------
// Volume: many hostile requests, for resource-growth checks
// ---------------------------------------------------------------------------------------

/// Counts from [`hammer`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HammerStats {
    /// Hostile chains made available.
    pub sent: u64,
    /// Of those, answered with an error.
    pub errors: u64,
    /// Answered successfully (e.g. LOOKUP '..' that is never forgotten).
    pub successes: u64,
    /// Returned without a valid reply, or not returned before the probe.
    pub dropped: u64,
    /// Probes (well-formed GETATTRs) answered.
    pub probes: u64,
    /// Hostile BATCH_FORGETs sent on the hiprio queue (each followed by a FORGET probe).
    pub hiprio_sent: u64,
}

fn hammer_chain(d: &mut Driver, k: u64) -> ChainBuilder {
    let u = d.next_unique();
    let end = d.mem().end();
    let ga = abi::GetattrIn::default();
    let getattr = encode(abi::opcode::GETATTR, u, abi::ROOT_ID, &[ga.as_bytes()]);
    // A forged file handle for READ and WRITE.
    let fh = 0xbad0_0000 + k;
    match k % 16 {
        0 => ChainBuilder::new()
            .readable_at(end + 4096, 56)
            .writable(SMALL_REPLY),
        1 => request_chain(&getattr[..20]),
        2 => request_chain(&encode(9999, u, 1, &[&[0; 8]])),
        3 => request_chain(&encode(
            abi::opcode::GETATTR,
            u,
            0xdead_0000 + k,
            &[ga.as_bytes()],
        )),
        4 => request_chain(&encode(abi::opcode::LOOKUP, u, 1, &[b"sub/inner\0"])),
        5 => next_to(&getattr, Next::Rel(0)),
        6 => request_chain(&[]),
        7 => {
            let a = abi::ReadIn {
                fh,
                size: 4096,
                ..Default::default()
            };
            request_chain(&encode(abi::opcode::READ, u, 1, &[a.as_bytes()]))
        }
        8 => request_chain(&encode(abi::opcode::LOOKUP, u, 1, &[b"..\0"])),
        9 => request_chain(&encode(abi::opcode::LOOKUP, u, 1, &[b"hello\0"])),
        10 => ChainBuilder::new().raw_indirect(end + 8192, 48),
        11 => request_chain(&encode_with_len(
            abi::opcode::GETATTR,
            u,
            1,
            u32::MAX,
            &[ga.as_bytes()],
        )),
        12 => {
            let a = abi::WriteIn {
                fh,
                size: 4,
                ..Default::default()
            };
            request_chain(&encode(abi::opcode::WRITE, u, 1, &[a.as_bytes(), b"abcd"]))
        }
        13 => {
            let a = abi::MkdirIn {
                mode: 0o755,
                umask: 0,
            };
            let args: &[&[u8]] = &[a.as_bytes(), b"../escape\0"];
            request_chain(&encode(abi::opcode::MKDIR, u, 1, args))
        }
        14 => request_chain(&encode(abi::opcode::LOOKUP, u, 1, &[&cname(&[b'n'; 300])])),
        _ => ChainBuilder::new()
            .readable(&getattr)
            .writable_at(end + 4096, SMALL_REPLY),
    }
}

/// Sends `n` hostile requests in batches of `batch` (one kick per batch), each batch followed
/// by a well-formed probe that must be answered. Returns an error if a probe is not.
pub fn hammer(d: &mut Driver, n: u64, batch: usize) -> Result<HammerStats> {
    let mut st = HammerStats::default();
    let mut k = 0u64;
    while st.sent < n {
        let mut heads = Vec::with_capacity(batch);
        for _ in 0..batch {
            if st.sent >= n {
                break;
            }
            let ch = hammer_chain(d, k);
            k += 1;
            heads.push(d.submit_nokick(REQUEST_QUEUE, &ch)?);
            st.sent += 1;
        }
        d.kick(REQUEST_QUEUE)?;
        // One hostile BATCH_FORGET per batch on the hiprio queue: count disagreeing with the
        // entries, forged node ids.
        let u = d.next_unique();
        let bf = abi::BatchForgetIn {
            count: if k & 1 == 0 { u32::MAX } else { 3 },
            dummy: 0,
        };
        let one = abi::ForgetOne {
            nodeid: 0x5eed_0000 + k,
            nlookup: u64::MAX,
        };
        let r = encode(
            abi::opcode::BATCH_FORGET,
            u,
            0,
            &[bf.as_bytes(), one.as_bytes()],
        );
        d.submit(HIPRIO_QUEUE, &ChainBuilder::new().readable(&r))?;
        st.hiprio_sent += 1;

        let r = getattr_root(d);
        d.fuse_chain_timeout(REQUEST_QUEUE, &request_chain(&r), PROBE_TIMEOUT)?
            .ok()?;
        st.probes += 1;
        for h in heads {
            match d.wait(REQUEST_QUEUE, h, Duration::ZERO)? {
                Some(c) => match Reply::parse(&c) {
                    Ok(r) if r.header.error < 0 => st.errors += 1,
                    Ok(_) => st.successes += 1,
                    Err(_) => st.dropped += 1,
                },
                None => st.dropped += 1,
            }
        }
        d.abandon_all(REQUEST_QUEUE)?;
        // The hiprio queue must keep consuming too.
        if !d.forget(0x7fff_ffff_0000_0002, 1, PROBE_TIMEOUT)? {
            return Err(Error::Timeout);
        }
        d.abandon_all(HIPRIO_QUEUE)?;
    }
    Ok(st)
}
