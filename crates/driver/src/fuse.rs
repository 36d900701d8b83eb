//! FUSE over the driver: request encoding, reply parsing and typed helpers for well-formed
//! requests (`init`, `lookup`, `getattr`, ...).

use std::time::Duration;

use vhostfs_fuse_abi as abi;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::chain::ChainBuilder;
use crate::driver::{Completion, Driver, HIPRIO_QUEUE, REQUEST_QUEUE};
use crate::{Error, Result};

/// Size of `fuse_in_header`.
pub const IN_HEADER_LEN: usize = core::mem::size_of::<abi::InHeader>();
/// Size of `fuse_out_header`.
pub const OUT_HEADER_LEN: usize = core::mem::size_of::<abi::OutHeader>();

/// Encodes a request: header (with `len` = total length) followed by `args` back to back.
pub fn encode(opcode: u32, unique: u64, nodeid: u64, args: &[&[u8]]) -> Vec<u8> {
    let body: usize = args.iter().map(|a| a.len()).sum();
    let len = u32::try_from(IN_HEADER_LEN + body).unwrap_or(u32::MAX);
    encode_with_len(opcode, unique, nodeid, len, args)
}

/// Like [`encode`] but with an arbitrary `len` in the header.
pub fn encode_with_len(opcode: u32, unique: u64, nodeid: u64, len: u32, args: &[&[u8]]) -> Vec<u8> {
    let h = abi::InHeader {
        len,
        opcode,
        unique,
        nodeid,
        uid: 0,
        gid: 0,
        pid: std::process::id(),
        total_extlen: 0,
        padding: 0,
    };
    let mut v = h.as_bytes().to_vec();
    for a in args {
        v.extend_from_slice(a);
    }
    v
}

/// A name as the kernel sends it: the bytes plus a terminating NUL.
pub fn cname(name: &[u8]) -> Vec<u8> {
    let mut v = name.to_vec();
    v.push(0);
    v
}

/// A parsed FUSE reply.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The out header.
    pub header: abi::OutHeader,
    /// Bytes after the header (as many as the used length and header length allow).
    pub payload: Vec<u8>,
    /// The used-ring length reported by the device.
    pub used_len: u32,
}

impl Reply {
    /// Parses a completion. Fails if it is shorter than an out header or the header's
    /// length disagrees with what the device wrote.
    pub fn parse(c: &Completion) -> Result<Self> {
        let (header, rest) = abi::OutHeader::read_from_prefix(&c.data).map_err(|_| {
            Error::BadReply(format!(
                "used len {} / {} bytes readable: shorter than an out header",
                c.used_len,
                c.data.len()
            ))
        })?;
        let hl = header.len as usize;
        if hl < OUT_HEADER_LEN || hl > c.data.len() {
            return Err(Error::BadReply(format!(
                "out header len {hl} but used len {} ({} bytes readable)",
                c.used_len,
                c.data.len()
            )));
        }
        Ok(Self {
            header,
            payload: rest[..hl - OUT_HEADER_LEN].to_vec(),
            used_len: c.used_len,
        })
    }

    /// `Err(Errno)` if the reply carries an error.
    pub fn ok(self) -> Result<Self> {
        if self.header.error < 0 {
            Err(Error::Errno(-self.header.error))
        } else if self.header.error > 0 {
            Err(Error::BadReply(format!(
                "positive error {}",
                self.header.error
            )))
        } else {
            Ok(self)
        }
    }

    /// The payload's leading struct.
    pub fn get<T: FromBytes + KnownLayout + Immutable>(&self) -> Result<T> {
        T::read_from_prefix(&self.payload)
            .map(|(t, _)| t)
            .map_err(|_| {
                Error::BadReply(format!(
                    "payload of {} bytes too short for {}",
                    self.payload.len(),
                    std::any::type_name::<T>()
                ))
            })
    }
}

/// One entry of a READDIR reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Inode number.
    pub ino: u64,
    /// Offset of the next entry.
    pub off: u64,
    /// `DT_*` type.
    pub typ: u32,
    /// Name bytes.
    pub name: Vec<u8>,
}

/// Parses the payload of a READDIR reply.
pub fn parse_dirents(mut buf: &[u8]) -> Result<Vec<DirEntry>> {
    let mut out = Vec::new();
    let fixed = core::mem::size_of::<abi::Dirent>();
    while !buf.is_empty() {
        let (d, rest) = abi::Dirent::read_from_prefix(buf)
            .map_err(|_| Error::BadReply("truncated dirent".into()))?;
        let nl = d.namelen as usize;
        let name = rest
            .get(..nl)
            .ok_or_else(|| Error::BadReply("dirent name past the end".into()))?;
        out.push(DirEntry {
            ino: d.ino,
            off: d.off,
            typ: d.typ,
            name: name.to_vec(),
        });
        let sz = abi::dirent_size(fixed, nl);
        buf = buf.get(sz..).unwrap_or(&[]);
    }
    Ok(out)
}

/// Default size of the writable buffer offered for replies without data.
pub const SMALL_REPLY: u32 = 256;

impl Driver {
    /// Sends a well-formed request on the request queue (one readable descriptor with the
    /// whole request, one writable descriptor of `reply_len` bytes) and parses the reply.
    pub fn fuse_request(
        &mut self,
        opcode: u32,
        nodeid: u64,
        args: &[&[u8]],
        reply_len: u32,
    ) -> Result<Reply> {
        let unique = self.next_unique();
        let req = encode(opcode, unique, nodeid, args);
        let chain = ChainBuilder::new().readable(&req).writable(reply_len);
        let r = self.fuse_chain(REQUEST_QUEUE, &chain)?;
        if r.header.unique != unique {
            return Err(Error::BadReply(format!(
                "unique {} for request {unique}",
                r.header.unique
            )));
        }
        Ok(r)
    }

    /// Sends any chain on queue `q`, waits with the default timeout and parses the reply.
    /// A timeout abandons the chain (it is assumed dropped) and yields [`Error::Timeout`].
    pub fn fuse_chain(&mut self, q: usize, chain: &ChainBuilder) -> Result<Reply> {
        let t = self.timeout();
        self.fuse_chain_timeout(q, chain, t)
    }

    /// [`Driver::fuse_chain`] with an explicit timeout.
    pub fn fuse_chain_timeout(
        &mut self,
        q: usize,
        chain: &ChainBuilder,
        timeout: Duration,
    ) -> Result<Reply> {
        let head = self.submit(q, chain)?;
        match self.wait(q, head, timeout)? {
            Some(c) => Reply::parse(&c),
            None => {
                self.queue_mut(q)?.abandon(head);
                Err(Error::Timeout)
            }
        }
    }

    /// FUSE_INIT advertising protocol 7.41 and the given capability flags.
    pub fn init_with(&mut self, flags: u64) -> Result<abi::InitOut> {
        let inp = abi::InitIn {
            major: abi::KERNEL_VERSION,
            minor: abi::KERNEL_MINOR_VERSION,
            max_readahead: 128 * 1024,
            flags: flags as u32 | abi::init_flags::INIT_EXT as u32,
            flags2: (flags >> 32) as u32,
            unused: [0; 11],
        };
        self.fuse_request(abi::opcode::INIT, 0, &[inp.as_bytes()], SMALL_REPLY)?
            .ok()?
            .get()
    }

    /// FUSE_INIT with the capabilities the Linux virtio-fs driver typically asks for.
    pub fn init(&mut self) -> Result<abi::InitOut> {
        use abi::init_flags as f;
        self.init_with(
            f::ASYNC_READ
                | f::POSIX_LOCKS
                | f::ATOMIC_O_TRUNC
                | f::EXPORT_SUPPORT
                | f::BIG_WRITES
                | f::DONT_MASK
                | f::FLOCK_LOCKS
                | f::AUTO_INVAL_DATA
                | f::DO_READDIRPLUS
                | f::READDIRPLUS_AUTO
                | f::ASYNC_DIO
                | f::PARALLEL_DIROPS
                | f::HANDLE_KILLPRIV_V2
                | f::MAX_PAGES
                | f::SETXATTR_EXT,
        )
    }

    /// FUSE_LOOKUP of `name` in `parent`.
    pub fn lookup(&mut self, parent: u64, name: &[u8]) -> Result<abi::EntryOut> {
        self.fuse_request(abi::opcode::LOOKUP, parent, &[&cname(name)], SMALL_REPLY)?
            .ok()?
            .get()
    }

    /// FUSE_GETATTR of `nodeid`.
    pub fn getattr(&mut self, nodeid: u64) -> Result<abi::AttrOut> {
        let inp = abi::GetattrIn::default();
        self.fuse_request(abi::opcode::GETATTR, nodeid, &[inp.as_bytes()], SMALL_REPLY)?
            .ok()?
            .get()
    }

    /// FUSE_OPEN of `nodeid` with `flags` (`O_*`); returns the file handle.
    pub fn open(&mut self, nodeid: u64, flags: u32) -> Result<abi::OpenOut> {
        let inp = abi::OpenIn {
            flags,
            open_flags: 0,
        };
        self.fuse_request(abi::opcode::OPEN, nodeid, &[inp.as_bytes()], SMALL_REPLY)?
            .ok()?
            .get()
    }

    /// FUSE_OPENDIR of `nodeid`.
    pub fn opendir(&mut self, nodeid: u64) -> Result<abi::OpenOut> {
        let inp = abi::OpenIn {
            flags: libc::O_RDONLY as u32,
            open_flags: 0,
        };
        self.fuse_request(abi::opcode::OPENDIR, nodeid, &[inp.as_bytes()], SMALL_REPLY)?
            .ok()?
            .get()
    }

    /// FUSE_READ of `size` bytes at `offset`.
    pub fn read(&mut self, nodeid: u64, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        let inp = abi::ReadIn {
            fh,
            offset,
            size,
            ..Default::default()
        };
        let r = self.fuse_request(
            abi::opcode::READ,
            nodeid,
            &[inp.as_bytes()],
            size.saturating_add(OUT_HEADER_LEN as u32),
        )?;
        Ok(r.ok()?.payload)
    }

    /// FUSE_WRITE of `data` at `offset`; returns the byte count written.
    pub fn write(&mut self, nodeid: u64, fh: u64, offset: u64, data: &[u8]) -> Result<u32> {
        let inp = abi::WriteIn {
            fh,
            offset,
            size: u32::try_from(data.len()).unwrap_or(u32::MAX),
            ..Default::default()
        };
        let r: abi::WriteOut = self
            .fuse_request(
                abi::opcode::WRITE,
                nodeid,
                &[inp.as_bytes(), data],
                SMALL_REPLY,
            )?
            .ok()?
            .get()?;
        Ok(r.size)
    }

    /// FUSE_CREATE of `name` in `parent`; returns the entry and the open handle.
    pub fn create(
        &mut self,
        parent: u64,
        name: &[u8],
        mode: u32,
        flags: u32,
    ) -> Result<(abi::EntryOut, abi::OpenOut)> {
        let inp = abi::CreateIn {
            flags,
            mode,
            umask: 0o022,
            open_flags: 0,
        };
        let r = self
            .fuse_request(
                abi::opcode::CREATE,
                parent,
                &[inp.as_bytes(), &cname(name)],
                SMALL_REPLY,
            )?
            .ok()?;
        let (e, rest) = abi::EntryOut::read_from_prefix(&r.payload)
            .map_err(|_| Error::BadReply("short CREATE reply".into()))?;
        let (o, _) = abi::OpenOut::read_from_prefix(rest)
            .map_err(|_| Error::BadReply("short CREATE reply".into()))?;
        Ok((e, o))
    }

    /// FUSE_MKDIR of `name` in `parent`.
    pub fn mkdir(&mut self, parent: u64, name: &[u8], mode: u32) -> Result<abi::EntryOut> {
        let inp = abi::MkdirIn { mode, umask: 0o022 };
        self.fuse_request(
            abi::opcode::MKDIR,
            parent,
            &[inp.as_bytes(), &cname(name)],
            SMALL_REPLY,
        )?
        .ok()?
        .get()
    }

    /// FUSE_UNLINK of `name` in `parent`.
    pub fn unlink(&mut self, parent: u64, name: &[u8]) -> Result<()> {
        self.fuse_request(abi::opcode::UNLINK, parent, &[&cname(name)], SMALL_REPLY)?
            .ok()
            .map(|_| ())
    }

    /// FUSE_READLINK of `nodeid`.
    pub fn readlink(&mut self, nodeid: u64) -> Result<Vec<u8>> {
        Ok(self
            .fuse_request(
                abi::opcode::READLINK,
                nodeid,
                &[],
                4096 + OUT_HEADER_LEN as u32,
            )?
            .ok()?
            .payload)
    }

    /// FUSE_READDIR of up to `size` bytes from `offset`.
    pub fn readdir(
        &mut self,
        nodeid: u64,
        fh: u64,
        offset: u64,
        size: u32,
    ) -> Result<Vec<DirEntry>> {
        let inp = abi::ReadIn {
            fh,
            offset,
            size,
            ..Default::default()
        };
        let r = self
            .fuse_request(
                abi::opcode::READDIR,
                nodeid,
                &[inp.as_bytes()],
                size.saturating_add(OUT_HEADER_LEN as u32),
            )?
            .ok()?;
        parse_dirents(&r.payload)
    }

    /// FUSE_RELEASE (or RELEASEDIR when `dir`) of handle `fh`.
    pub fn release(&mut self, nodeid: u64, fh: u64, dir: bool) -> Result<()> {
        let inp = abi::ReleaseIn {
            fh,
            ..Default::default()
        };
        let op = if dir {
            abi::opcode::RELEASEDIR
        } else {
            abi::opcode::RELEASE
        };
        self.fuse_request(op, nodeid, &[inp.as_bytes()], SMALL_REPLY)?
            .ok()
            .map(|_| ())
    }

    /// FUSE_STATFS.
    pub fn statfs(&mut self) -> Result<abi::StatfsOut> {
        self.fuse_request(abi::opcode::STATFS, abi::ROOT_ID, &[], SMALL_REPLY)?
            .ok()?
            .get()
    }

    /// FUSE_FORGET on the hiprio queue. FORGET has no reply; this waits only for the used
    /// entry (up to `timeout`) and returns whether one came back.
    pub fn forget(&mut self, nodeid: u64, nlookup: u64, timeout: Duration) -> Result<bool> {
        let unique = self.next_unique();
        let inp = abi::ForgetIn { nlookup };
        let req = encode(abi::opcode::FORGET, unique, nodeid, &[inp.as_bytes()]);
        let head = self.submit(HIPRIO_QUEUE, &ChainBuilder::new().readable(&req))?;
        let done = self.wait(HIPRIO_QUEUE, head, timeout)?.is_some();
        if !done {
            self.queue_mut(HIPRIO_QUEUE)?.abandon(head);
        }
        Ok(done)
    }

    /// FUSE_BATCH_FORGET on the hiprio queue with the given (nodeid, nlookup) pairs.
    pub fn batch_forget(&mut self, items: &[(u64, u64)], timeout: Duration) -> Result<bool> {
        let unique = self.next_unique();
        let inp = abi::BatchForgetIn {
            count: u32::try_from(items.len()).unwrap_or(u32::MAX),
            dummy: 0,
        };
        let mut body = Vec::new();
        for &(nodeid, nlookup) in items {
            body.extend_from_slice(abi::ForgetOne { nodeid, nlookup }.as_bytes());
        }
        let req = encode(
            abi::opcode::BATCH_FORGET,
            unique,
            0,
            &[inp.as_bytes(), &body],
        );
        let head = self.submit(HIPRIO_QUEUE, &ChainBuilder::new().readable(&req))?;
        let done = self.wait(HIPRIO_QUEUE, head, timeout)?.is_some();
        if !done {
            self.queue_mut(HIPRIO_QUEUE)?.abandon(head);
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_sets_len() {
        let v = encode(abi::opcode::LOOKUP, 7, 1, &[b"abc\0"]);
        assert_eq!(v.len(), 44);
        let (h, _) = abi::InHeader::read_from_prefix(&v).unwrap();
        assert_eq!(h.len, 44);
        assert_eq!(h.unique, 7);
    }

    #[test]
    fn reply_parse_checks_lengths() {
        let mut data = abi::OutHeader {
            len: 24,
            error: 0,
            unique: 3,
        }
        .as_bytes()
        .to_vec();
        data.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let c = Completion {
            head: 0,
            used_len: 24,
            data: data.clone(),
        };
        let r = Reply::parse(&c).unwrap();
        assert_eq!(r.payload.len(), 8);
        let short = Completion {
            head: 0,
            used_len: 20,
            data: data[..20].to_vec(),
        };
        assert!(Reply::parse(&short).is_err());
        let err = abi::OutHeader {
            len: 16,
            error: -2,
            unique: 3,
        };
        let c = Completion {
            head: 0,
            used_len: 16,
            data: err.as_bytes().to_vec(),
        };
        assert!(matches!(
            Reply::parse(&c).unwrap().ok(),
            Err(Error::Errno(2))
        ));
    }

    #[test]
    fn dirents_roundtrip() {
        let mut buf = Vec::new();
        for (i, n) in [&b"."[..], b"..", b"file-with-long-name"]
            .iter()
            .enumerate()
        {
            let d = abi::Dirent {
                ino: i as u64 + 1,
                off: i as u64 + 1,
                namelen: n.len() as u32,
                typ: 4,
            };
            buf.extend_from_slice(d.as_bytes());
            buf.extend_from_slice(n);
            while buf.len() % 8 != 0 {
                buf.push(0);
            }
        }
        let v = parse_dirents(&buf).unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[2].name, b"file-with-long-name");
    }
}
