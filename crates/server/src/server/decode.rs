//! Checked decoding of request arguments and request extensions from untrusted bytes.

use std::ffi::{CStr, CString};
use std::io;

use vhostfs_fuse_abi as abi;
use zerocopy::{FromBytes, Immutable, KnownLayout};

use crate::filesystem::{Context, Name, SecurityContext};

/// Longest xattr name accepted, like `XATTR_NAME_MAX`.
pub(crate) const XATTR_NAME_MAX: usize = 255;
/// Largest xattr value accepted, like `XATTR_SIZE_MAX`.
pub(crate) const XATTR_SIZE_MAX: usize = 65536;
/// Longest symlink target accepted, including its NUL, like `PATH_MAX`.
pub(crate) const PATH_MAX: usize = 4096;

/// The error every malformed request gets.
pub(crate) fn einval() -> io::Error {
    io::Error::from_raw_os_error(libc::EINVAL)
}

/// A cursor over the (already length-checked) argument bytes of one request.
#[derive(Debug)]
pub(crate) struct Args<'a> {
    buf: &'a [u8],
}

impl<'a> Args<'a> {
    /// Arguments in `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Bytes not yet consumed.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Reads one wire struct; `EINVAL` when fewer bytes than its size are left.
    pub(crate) fn obj<T: FromBytes + KnownLayout + Immutable>(&mut self) -> io::Result<T> {
        let (value, rest) = T::read_from_prefix(self.buf).map_err(|_| einval())?;
        self.buf = rest;
        Ok(value)
    }

    /// Reads the first `prefix` bytes of a wire struct whose tail fields are optional (legacy
    /// layouts); the missing tail reads as zeros. `EINVAL` when fewer than `prefix` bytes
    /// are left.
    pub(crate) fn obj_prefix<T: FromBytes + KnownLayout + Immutable + zerocopy::IntoBytes>(
        &mut self,
        prefix: usize,
    ) -> io::Result<T> {
        let full = std::mem::size_of::<T>();
        let take = prefix.min(full);
        let head = self.bytes(take)?;
        let mut value = T::new_zeroed();
        value.as_mut_bytes()[..take].copy_from_slice(head);
        Ok(value)
    }

    /// Takes exactly `n` bytes; `EINVAL` when fewer are left.
    pub(crate) fn bytes(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if n > self.buf.len() {
            return Err(einval());
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Takes everything left.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Reads a NUL-terminated string; `EINVAL` when there is no NUL.
    pub(crate) fn cstr(&mut self) -> io::Result<&'a CStr> {
        let s = CStr::from_bytes_until_nul(self.buf).map_err(|_| einval())?;
        self.buf = &self.buf[s.to_bytes_with_nul().len()..];
        Ok(s)
    }

    /// Reads a NUL-terminated single path component (see [`Name::new`]).
    pub(crate) fn name(&mut self) -> io::Result<Name<'a>> {
        Name::new(self.cstr()?)
    }

    /// Reads a NUL-terminated xattr name: not empty, at most [`XATTR_NAME_MAX`] bytes
    /// (`ERANGE` otherwise, like `setxattr(2)`).
    pub(crate) fn xattr_name(&mut self) -> io::Result<&'a CStr> {
        let name = self.cstr()?;
        let len = name.to_bytes().len();
        if len == 0 || len > XATTR_NAME_MAX {
            return Err(io::Error::from_raw_os_error(libc::ERANGE));
        }
        Ok(name)
    }
}

/// What the request extensions may fill in; gated by what INIT negotiated.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ExtPolicy {
    /// `SECURITY_CTX` was negotiated: keep a security context extension.
    pub(crate) security_ctx: bool,
    /// `CREATE_SUPP_GROUP` was negotiated: keep a supplementary group extension.
    pub(crate) supp_group: bool,
}

/// Parses the request extensions in `ext` (the last `total_extlen * 8` bytes of a request)
/// into `ctx`. Each extension starts with an [`abi::ExtHeader`] whose `size` covers the whole
/// extension, is a multiple of 8 and fits in what is left. Types 0..=31 are a security
/// context header (`nr_secctx` = type), type 32 is the supplementary groups list; other types
/// are skipped. Anything malformed is `EINVAL`.
pub(crate) fn parse_extensions(ext: &[u8], policy: ExtPolicy, ctx: &mut Context) -> io::Result<()> {
    let mut rest = ext;
    while !rest.is_empty() {
        let (hdr, _) = abi::ExtHeader::read_from_prefix(rest).map_err(|_| einval())?;
        let size = hdr.size as usize;
        let hdr_len = std::mem::size_of::<abi::ExtHeader>();
        if size < hdr_len || size & 7 != 0 || size > rest.len() {
            return Err(einval());
        }
        let payload = &rest[hdr_len..size];
        rest = &rest[size..];
        if hdr.typ <= abi::ext_type::SECURITY_CTX {
            let secctx = parse_secctx(payload, hdr.typ)?;
            if policy.security_ctx {
                ctx.security_ctx = secctx;
            }
        } else if hdr.typ == abi::ext_type::GROUPS {
            let gid = parse_groups(payload)?;
            if policy.supp_group {
                ctx.supplementary_gid = gid;
            }
        }
    }
    Ok(())
}

/// A security context extension payload: `nr` records of [`abi::Secctx`], NUL-terminated
/// name and value, each padded to 8 bytes. We keep the first record.
fn parse_secctx(payload: &[u8], nr: u32) -> io::Result<Option<SecurityContext>> {
    let mut args = Args::new(payload);
    let mut first = None;
    for _ in 0..nr {
        let start = args.remaining();
        let rec: abi::Secctx = args.obj()?;
        let name = args.cstr()?;
        let value_len = rec.size as usize;
        if value_len > XATTR_SIZE_MAX || name.to_bytes().is_empty() {
            return Err(einval());
        }
        let value = args.bytes(value_len)?;
        let used = start - args.remaining();
        let padded = abi::dirent_size(used, 0);
        args.bytes(padded - used)?;
        if first.is_none() {
            first = Some(SecurityContext {
                name: CString::from(name),
                value: value.to_vec(),
            });
        }
    }
    Ok(first)
}

/// A supplementary groups extension payload: [`abi::SuppGroups`] then that many u32s. The
/// kernel sends one group (the parent directory's); we keep the first.
fn parse_groups(payload: &[u8]) -> io::Result<Option<u32>> {
    let mut args = Args::new(payload);
    let hdr: abi::SuppGroups = args.obj()?;
    let n = hdr.nr_groups as usize;
    if n > args.remaining() / 4 {
        return Err(einval());
    }
    if n == 0 {
        return Ok(None);
    }
    let gid: u32 = args.obj()?;
    Ok(Some(gid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::IntoBytes;

    fn all() -> ExtPolicy {
        ExtPolicy {
            security_ctx: true,
            supp_group: true,
        }
    }

    #[test]
    fn args_cursor() {
        let data = b"abc\0def\0";
        let mut a = Args::new(data);
        assert_eq!(a.name().unwrap().as_bytes(), b"abc");
        assert_eq!(a.cstr().unwrap().to_bytes(), b"def");
        assert!(a.cstr().is_err());
        let mut a = Args::new(b"no-nul");
        assert!(a.cstr().is_err());
        let mut a = Args::new(b"a/b\0");
        assert_eq!(a.name().unwrap_err().raw_os_error(), Some(libc::EINVAL));
        let mut a = Args::new(&[1, 2, 3]);
        assert!(a.obj::<u64>().is_err());
        assert_eq!(a.remaining(), 3);
        let v: abi::InitIn = Args::new(&[7, 0, 0, 0]).obj_prefix(4).unwrap();
        assert_eq!(v.major, 7);
        assert!(Args::new(&[7, 0]).obj_prefix::<abi::InitIn>(4).is_err());
    }

    fn groups_ext(gids: &[u32], claimed: u32) -> Vec<u8> {
        let mut v = Vec::new();
        let size = abi::dirent_size(8 + 4 + 4 * gids.len(), 0) as u32;
        v.extend_from_slice(
            abi::ExtHeader {
                size,
                typ: abi::ext_type::GROUPS,
            }
            .as_bytes(),
        );
        v.extend_from_slice(&claimed.to_ne_bytes());
        for g in gids {
            v.extend_from_slice(&g.to_ne_bytes());
        }
        v.resize(size as usize, 0);
        v
    }

    fn secctx_ext(name: &[u8], value: &[u8]) -> Vec<u8> {
        let rec_len = abi::dirent_size(8 + name.len() + 1 + value.len(), 0);
        let size = (8 + rec_len) as u32;
        let mut v = Vec::new();
        v.extend_from_slice(abi::ExtHeader { size, typ: 1 }.as_bytes());
        v.extend_from_slice(
            abi::Secctx {
                size: value.len() as u32,
                padding: 0,
            }
            .as_bytes(),
        );
        v.extend_from_slice(name);
        v.push(0);
        v.extend_from_slice(value);
        v.resize(size as usize, 0);
        v
    }

    #[test]
    fn extensions_parse() {
        let mut ext = secctx_ext(b"security.selinux", b"system_u:object_r:foo_t:s0\0");
        ext.extend(groups_ext(&[1234], 1));
        let mut ctx = Context::default();
        parse_extensions(&ext, all(), &mut ctx).unwrap();
        assert_eq!(ctx.supplementary_gid, Some(1234));
        let sc = ctx.security_ctx.unwrap();
        assert_eq!(sc.name.as_bytes(), b"security.selinux");
        assert_eq!(sc.value, b"system_u:object_r:foo_t:s0\0");

        // Not negotiated: ignored.
        let mut ctx = Context::default();
        parse_extensions(&ext, ExtPolicy::default(), &mut ctx).unwrap();
        assert_eq!(ctx, Context::default());
    }

    #[test]
    fn extensions_reject_malformed() {
        let mut ctx = Context::default();
        // Size too small / unaligned / too big.
        for size in [0u32, 4, 12, 24] {
            let ext = abi::ExtHeader { size, typ: 99 };
            let mut v = ext.as_bytes().to_vec();
            v.extend_from_slice(&[0; 8]);
            assert!(
                parse_extensions(&v, all(), &mut ctx).is_err(),
                "size {size}"
            );
        }
        // Group count larger than the payload.
        assert!(parse_extensions(&groups_ext(&[1], 1000), all(), &mut ctx).is_err());
        // Truncated header.
        assert!(parse_extensions(&[8, 0, 0], all(), &mut ctx).is_err());
        // Unknown type of a valid size is skipped.
        let mut v = abi::ExtHeader { size: 16, typ: 99 }.as_bytes().to_vec();
        v.extend_from_slice(&[0xff; 8]);
        parse_extensions(&v, all(), &mut ctx).unwrap();
        // Secctx claiming a value longer than the record.
        let mut sc = secctx_ext(b"security.x", b"v");
        sc[8] = 200;
        assert!(parse_extensions(&sc, all(), &mut ctx).is_err());
        // Zero groups.
        let mut ctx = Context::default();
        parse_extensions(&groups_ext(&[], 0), all(), &mut ctx).unwrap();
        assert_eq!(ctx.supplementary_gid, None);
    }
}
