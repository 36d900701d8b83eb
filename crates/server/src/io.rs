//! What a transport hands the server for one request: a reader over the request bytes and a
//! writer over the reply buffer.
//!
//! Both may be scattered over many buffers (a virtio descriptor chain, for example). File data
//! moves between those buffers and host files without an intermediate copy through
//! [`ZeroCopyReader::read_to_file`] (`pwritev` from the request buffers) and
//! [`ZeroCopyWriter::write_from_file`] (`preadv` into the reply buffers).

use std::io;
use std::ops::Range;
use std::os::fd::BorrowedFd;

/// Moves request payload bytes (WRITE data) straight into a host file.
pub trait ZeroCopyReader {
    /// Writes up to `len` bytes of the remaining request payload to `fd` at `offset` (the
    /// file's position is not used), consuming what was written. Returns the number of bytes
    /// written; may be short, like `pwritev`.
    fn read_to_file(&mut self, fd: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<usize>;
}

/// Moves host file bytes (READ data) straight into the reply buffers.
pub trait ZeroCopyWriter {
    /// Reads up to `len` bytes from `fd` at `offset` (the file's position is not used) into
    /// the reply, after what was written so far. Returns the number of bytes read; 0 means end
    /// of file. May be short, like `preadv`.
    fn write_from_file(&mut self, fd: BorrowedFd<'_>, offset: u64, len: usize)
        -> io::Result<usize>;
}

/// The readable side of one request, as the transport received it.
pub trait RequestReader: ZeroCopyReader {
    /// Bytes not yet consumed.
    fn remaining(&self) -> usize;
    /// Fills `buf` completely from the request or fails with `UnexpectedEof` (consuming
    /// nothing in that case).
    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()>;
}

/// The writable side of one request: where the reply goes.
pub trait ReplyWriter: ZeroCopyWriter {
    /// Bytes that can still be written.
    fn available(&self) -> usize;
    /// Bytes written so far (the reply length).
    fn bytes_written(&self) -> usize;
    /// Appends all of `data`, or fails with `WriteZero` (writing nothing) when it does not fit.
    fn write_all(&mut self, data: &[u8]) -> io::Result<()>;
    /// Overwrites bytes already written at `pos` (used to fill in the reply header once the
    /// reply's length is known). Fails if `pos + data.len()` exceeds [`bytes_written`].
    ///
    /// [`bytes_written`]: ReplyWriter::bytes_written
    fn overwrite_at(&mut self, pos: usize, data: &[u8]) -> io::Result<()>;
}

/// A [`RequestReader`] over one contiguous byte slice (the `/dev/fuse` transport, tests).
#[derive(Debug)]
pub struct SliceReader<'a> {
    buf: &'a [u8],
}

impl<'a> SliceReader<'a> {
    /// Reads from `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }
}

impl ZeroCopyReader for SliceReader<'_> {
    fn read_to_file(&mut self, fd: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<usize> {
        let len = len.min(self.buf.len());
        let n = pwrite_at(fd, &self.buf[..len], offset)?;
        self.buf = &self.buf[n..];
        Ok(n)
    }
}

impl RequestReader for SliceReader<'_> {
    fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn read_exact(&mut self, out: &mut [u8]) -> io::Result<()> {
        if out.len() > self.buf.len() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let (head, tail) = self.buf.split_at(out.len());
        out.copy_from_slice(head);
        self.buf = tail;
        Ok(())
    }
}

/// A [`ReplyWriter`] that appends to a `Vec<u8>` up to a byte limit (the `/dev/fuse`
/// transport, tests).
#[derive(Debug)]
pub struct VecWriter {
    buf: Vec<u8>,
    limit: usize,
}

impl VecWriter {
    /// An empty writer that accepts at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            limit,
        }
    }

    /// Reuses `buf`'s allocation (cleared) for a writer of at most `limit` bytes.
    pub fn with_buffer(mut buf: Vec<u8>, limit: usize) -> Self {
        buf.clear();
        Self { buf, limit }
    }

    /// The reply bytes written so far.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// Takes the written bytes out.
    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }
}

impl ZeroCopyWriter for VecWriter {
    fn write_from_file(
        &mut self,
        fd: BorrowedFd<'_>,
        offset: u64,
        len: usize,
    ) -> io::Result<usize> {
        let len = len.min(self.available());
        let start = self.buf.len();
        self.buf.resize(start + len, 0);
        let res = pread_at(fd, &mut self.buf[start..], offset);
        let n = *res.as_ref().unwrap_or(&0);
        self.buf.truncate(start + n);
        res
    }
}

impl ReplyWriter for VecWriter {
    fn available(&self) -> usize {
        self.limit.saturating_sub(self.buf.len())
    }

    fn bytes_written(&self) -> usize {
        self.buf.len()
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        if data.len() > self.available() {
            return Err(io::ErrorKind::WriteZero.into());
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    fn overwrite_at(&mut self, pos: usize, data: &[u8]) -> io::Result<()> {
        let range = overwrite_range(pos, data.len(), self.buf.len())?;
        self.buf[range].copy_from_slice(data);
        Ok(())
    }
}

/// The bytes `pos..pos + len` that [`ReplyWriter::overwrite_at`] may overwrite in a reply of
/// which `written` bytes were written so far. Fails with `InvalidInput` if the range overflows
/// or reaches past those bytes.
pub fn overwrite_range(pos: usize, len: usize, written: usize) -> io::Result<Range<usize>> {
    let end = pos.checked_add(len).ok_or(io::ErrorKind::InvalidInput)?;
    if end > written {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    Ok(pos..end)
}

fn pwrite_at(fd: BorrowedFd<'_>, buf: &[u8], offset: u64) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let off = i64::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `buf` is a valid readable slice for its length; the fd is borrowed for the call.
    let n = unsafe { libc::pwrite64(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), off) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn pread_at(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let off = i64::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `buf` is a valid writable slice for its length; the fd is borrowed for the call.
    let n = unsafe { libc::pread64(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), off) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_reader_refuses_short_reads_without_consuming() {
        let data = [1u8, 2, 3];
        let mut r = SliceReader::new(&data);
        let mut four = [0u8; 4];
        assert!(r.read_exact(&mut four).is_err());
        assert_eq!(r.remaining(), 3);
        let mut two = [0u8; 2];
        r.read_exact(&mut two).unwrap();
        assert_eq!(two, [1, 2]);
        assert_eq!(r.remaining(), 1);
    }

    #[test]
    fn vec_writer_respects_limit_and_overwrites() {
        let mut w = VecWriter::new(4);
        w.write_all(&[1, 2, 3]).unwrap();
        assert!(w.write_all(&[4, 5]).is_err());
        assert_eq!(w.bytes_written(), 3);
        w.overwrite_at(1, &[9, 9]).unwrap();
        assert!(w.overwrite_at(2, &[9, 9]).is_err());
        assert_eq!(w.as_slice(), &[1, 9, 9]);
    }
}
