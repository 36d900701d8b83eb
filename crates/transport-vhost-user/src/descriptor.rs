//! Request and reply buffers of one descriptor chain, as zero-copy views of guest memory.
//!
//! A virtio-fs request is a descriptor chain whose device-readable descriptors (the FUSE
//! request) come first and whose device-writable descriptors (room for the reply) follow.
//! [`ChainBuffers`] checks that layout and the chain's total size; [`GuestReader`] and
//! [`GuestWriter`] then give the request server a [`RequestReader`] and a [`ReplyWriter`]
//! over the guest's buffers. File data moves between those buffers and host files with
//! `pwritev`/`preadv` on iovecs that point straight into guest memory.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use vhostfs_server::io::overwrite_range;
use vhostfs_server::{ReplyWriter, RequestReader, ZeroCopyReader, ZeroCopyWriter};
use virtio_queue::desc::split::Descriptor;
use vm_memory::bitmap::{BitmapSlice, BS};
use vm_memory::volatile_memory::PtrGuard;
use vm_memory::{GuestAddress, GuestMemory, Permissions, VolatileSlice};

/// Largest total size of one chain's readable (or writable) buffers. A FUSE request or reply
/// is at most a little over `max_write` (1 MiB by default); anything far beyond is refused.
pub const MAX_CHAIN_BYTES: usize = 64 << 20;

/// Most iovecs handed to one `preadv`/`pwritev` call (`IOV_MAX` on Linux). Longer transfers
/// are short, which the I/O traits allow.
const MAX_IOVECS: usize = 1024;

/// Why a descriptor chain cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A device-readable descriptor follows a device-writable one.
    #[error("readable descriptor after a writable one")]
    ReadableAfterWritable,
    /// The readable or the writable part exceeds [`MAX_CHAIN_BYTES`].
    #[error("descriptor chain longer than {MAX_CHAIN_BYTES} bytes")]
    TooLong,
    /// A descriptor points (partly) outside guest memory.
    #[error("descriptor {addr:#x}+{len:#x} is outside guest memory")]
    BadAddress {
        /// The descriptor's guest address.
        addr: u64,
        /// The descriptor's length.
        len: u32,
    },
}

/// The guest buffers of one descriptor chain, split into the readable part (the request) and
/// the writable part (room for the reply). Zero-length descriptors are dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainBuffers {
    readable: Vec<(GuestAddress, u32)>,
    writable: Vec<(GuestAddress, u32)>,
    readable_len: usize,
    writable_len: usize,
}

impl ChainBuffers {
    /// Collects the descriptors of a chain (for example a
    /// [`virtio_queue::DescriptorChain`], which already bounds the chain's length, follows
    /// indirect tables and stops at loops), checking the direction order and total sizes.
    /// Addresses are checked later, by [`reader`](Self::reader) and [`writer`](Self::writer).
    pub fn new(descriptors: impl IntoIterator<Item = Descriptor>) -> Result<Self, ChainError> {
        let mut bufs = ChainBuffers::default();
        let mut seen_writable = false;
        for desc in descriptors {
            let len = desc.len();
            let size = usize::try_from(len).map_err(|_| ChainError::TooLong)?;
            if desc.is_write_only() {
                seen_writable = true;
                bufs.writable_len = add_capped(bufs.writable_len, size)?;
                if len != 0 {
                    bufs.writable.push((desc.addr(), len));
                }
            } else {
                // Check on every readable descriptor, even empty ones: the layout is wrong
                // whatever its length.
                if seen_writable {
                    return Err(ChainError::ReadableAfterWritable);
                }
                bufs.readable_len = add_capped(bufs.readable_len, size)?;
                if len != 0 {
                    bufs.readable.push((desc.addr(), len));
                }
            }
        }
        Ok(bufs)
    }

    /// Total bytes of the readable descriptors.
    pub fn readable_len(&self) -> usize {
        self.readable_len
    }

    /// Total bytes of the writable descriptors.
    pub fn writable_len(&self) -> usize {
        self.writable_len
    }

    /// A reader over the readable descriptors in `mem`. Fails if any of them is not entirely
    /// inside guest memory.
    pub fn reader<'a, M>(
        &self,
        mem: &'a M,
    ) -> Result<GuestReader<'a, BS<'a, M::Bitmap>>, ChainError>
    where
        M: GuestMemory + ?Sized,
    {
        let slices = translate(mem, &self.readable, Permissions::Read)?;
        Ok(GuestReader {
            cursor: Cursor::new(slices, self.readable_len),
        })
    }

    /// A writer over the writable descriptors in `mem`. Fails if any of them is not entirely
    /// inside guest memory.
    pub fn writer<'a, M>(
        &self,
        mem: &'a M,
    ) -> Result<GuestWriter<'a, BS<'a, M::Bitmap>>, ChainError>
    where
        M: GuestMemory + ?Sized,
    {
        let slices = translate(mem, &self.writable, Permissions::Write)?;
        Ok(GuestWriter {
            cursor: Cursor::new(slices, self.writable_len),
        })
    }
}

fn add_capped(total: usize, len: usize) -> Result<usize, ChainError> {
    total
        .checked_add(len)
        .filter(|&t| t <= MAX_CHAIN_BYTES)
        .ok_or(ChainError::TooLong)
}

/// Maps each `(address, length)` to host slices (one descriptor may span several guest
/// memory regions).
fn translate<'a, M>(
    mem: &'a M,
    descs: &[(GuestAddress, u32)],
    access: Permissions,
) -> Result<Vec<VolatileSlice<'a, BS<'a, M::Bitmap>>>, ChainError>
where
    M: GuestMemory + ?Sized,
{
    let mut slices = Vec::with_capacity(descs.len());
    for &(addr, len) in descs {
        let bad = || ChainError::BadAddress { addr: addr.0, len };
        let size = usize::try_from(len).map_err(|_| bad())?;
        // Reject ranges that wrap around the address space before asking the memory map.
        addr.0.checked_add(u64::from(len)).ok_or_else(bad)?;
        let mut covered = 0usize;
        let iter = mem.get_slices(addr, size, access).map_err(|_| bad())?;
        for slice in iter {
            let slice = slice.map_err(|_| bad())?;
            covered = covered.checked_add(slice.len()).ok_or_else(bad)?;
            slices.push(slice);
        }
        if covered != size {
            return Err(bad());
        }
    }
    Ok(slices)
}

/// Which way [`Cursor::file_io`] moves file data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileIo {
    /// `pwritev`: from the guest buffers into the file (WRITE data).
    Write,
    /// `preadv`: from the file into the guest buffers (READ data).
    Read,
}

/// A position in a list of guest memory slices.
#[derive(Debug)]
struct Cursor<'a, B> {
    slices: Vec<VolatileSlice<'a, B>>,
    /// Slice holding the byte at `pos`.
    idx: usize,
    /// Offset of that byte in `slices[idx]`.
    off: usize,
    /// Bytes before the cursor.
    pos: usize,
    /// Bytes in all slices.
    total: usize,
}

impl<'a, B: BitmapSlice> Cursor<'a, B> {
    fn new(slices: Vec<VolatileSlice<'a, B>>, total: usize) -> Self {
        Self {
            slices,
            idx: 0,
            off: 0,
            pos: 0,
            total,
        }
    }

    fn remaining(&self) -> usize {
        self.total - self.pos
    }

    /// Moves the cursor `n` bytes forward (at most to the end).
    fn advance(&mut self, n: usize) {
        let mut n = n.min(self.remaining());
        self.pos += n;
        while n > 0 {
            let Some(slice) = self.slices.get(self.idx) else {
                return;
            };
            let avail = slice.len() - self.off;
            if n < avail {
                self.off += n;
                return;
            }
            n -= avail;
            self.idx += 1;
            self.off = 0;
        }
    }

    /// Sub-slices covering the next `len` bytes after the cursor (fewer if the buffers end).
    fn chunks(&self, len: usize) -> Chunks<'_, 'a, B> {
        Chunks {
            slices: &self.slices,
            idx: self.idx,
            off: self.off,
            left: len,
        }
    }

    /// Sub-slices covering `len` bytes from absolute position `pos`.
    fn chunks_at(&self, pos: usize, len: usize) -> Chunks<'_, 'a, B> {
        let mut skip = pos;
        let mut idx = 0;
        while let Some(slice) = self.slices.get(idx) {
            if skip < slice.len() {
                break;
            }
            skip -= slice.len();
            idx += 1;
        }
        Chunks {
            slices: &self.slices,
            idx,
            off: skip,
            left: len,
        }
    }

    /// Moves up to `len` bytes between the buffers after the cursor and `fd` at `offset` (the
    /// file's position is not used) with one `pwritev`/`preadv` call on iovecs that point
    /// straight into guest memory, and moves the cursor past what was transferred. Returns
    /// the number of bytes transferred; may be short.
    fn file_io(
        &mut self,
        dir: FileIo,
        fd: BorrowedFd<'_>,
        offset: u64,
        len: usize,
    ) -> io::Result<usize> {
        let off = file_offset(offset)?;
        let len = len.min(self.remaining());
        if len == 0 {
            return Ok(0);
        }
        let (iovs, guards) = self.iovecs(len);
        let cnt = libc::c_int::try_from(iovs.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
        let n = match dir {
            FileIo::Write => {
                // SAFETY: every iovec points into a `VolatileSlice` of guest memory that stays
                // mapped for the cursor's lifetime `'a` (the caller holds the memory
                // snapshot), and its length is within that slice. The kernel only reads from
                // these buffers. The guards in `guards` keep the pointers valid until the call
                // returns.
                unsafe { libc::pwritev64(fd.as_raw_fd(), iovs.as_ptr(), cnt, off) }
            }
            FileIo::Read => {
                // SAFETY: every iovec points into a `VolatileSlice` of guest memory that stays
                // mapped for the cursor's lifetime `'a` (the caller holds the memory
                // snapshot), and its length is within that slice, so the kernel writes only
                // inside the chain's writable buffers. No Rust reference to that memory exists
                // (it is only accessed through volatile slices). The guards keep the pointers
                // valid until the call returns.
                unsafe { libc::preadv64(fd.as_raw_fd(), iovs.as_ptr(), cnt, off) }
            }
        };
        drop(guards);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = usize::try_from(n).map_err(|_| io::ErrorKind::InvalidData)?;
        if dir == FileIo::Read {
            // The kernel wrote behind the bitmap's back: record the dirtied bytes (for
            // migration).
            for chunk in self.chunks(n) {
                chunk.bitmap().mark_dirty(0, chunk.len());
            }
        }
        self.advance(n);
        Ok(n)
    }

    /// Builds iovecs for the next `len` bytes (at most [`MAX_IOVECS`] of them) and the pointer
    /// guards that keep them valid.
    fn iovecs(&self, len: usize) -> (Vec<libc::iovec>, Vec<PtrGuard>) {
        let mut iovs = Vec::new();
        let mut guards = Vec::new();
        for chunk in self.chunks(len).take(MAX_IOVECS) {
            let guard = chunk.ptr_guard();
            iovs.push(libc::iovec {
                iov_base: guard.as_ptr() as *mut libc::c_void,
                iov_len: chunk.len(),
            });
            guards.push(guard);
        }
        (iovs, guards)
    }
}

/// Iterator over sub-slices of a slice list, starting at `(idx, off)` and covering `left` bytes.
struct Chunks<'c, 'a, B> {
    slices: &'c [VolatileSlice<'a, B>],
    idx: usize,
    off: usize,
    left: usize,
}

impl<'a, B: BitmapSlice> Iterator for Chunks<'_, 'a, B> {
    type Item = VolatileSlice<'a, B>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.left > 0 {
            let slice = self.slices.get(self.idx)?;
            let avail = slice.len().saturating_sub(self.off);
            if avail == 0 {
                self.idx += 1;
                self.off = 0;
                continue;
            }
            let n = avail.min(self.left);
            let sub = slice.subslice(self.off, n).ok()?;
            self.left -= n;
            self.idx += 1;
            self.off = 0;
            return Some(sub);
        }
        None
    }
}

fn file_offset(offset: u64) -> io::Result<libc::off64_t> {
    libc::off64_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// The request bytes of one chain (its device-readable descriptors).
#[derive(Debug)]
pub struct GuestReader<'a, B> {
    cursor: Cursor<'a, B>,
}

impl<B: BitmapSlice> GuestReader<'_, B> {
    /// Copies up to `buf.len()` bytes from the current position into `buf` without
    /// consuming them; returns how many were copied.
    pub fn peek(&self, buf: &mut [u8]) -> usize {
        let mut done = 0;
        for chunk in self.cursor.chunks(buf.len()) {
            done += chunk.copy_to(&mut buf[done..]);
        }
        done
    }
}

impl<B: BitmapSlice> ZeroCopyReader for GuestReader<'_, B> {
    fn read_to_file(&mut self, fd: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<usize> {
        self.cursor.file_io(FileIo::Write, fd, offset, len)
    }
}

impl<B: BitmapSlice> RequestReader for GuestReader<'_, B> {
    fn remaining(&self) -> usize {
        self.cursor.remaining()
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        if buf.len() > self.cursor.remaining() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let done = self.peek(buf);
        if done != buf.len() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.cursor.advance(done);
        Ok(())
    }
}

/// The reply buffers of one chain (its device-writable descriptors).
#[derive(Debug)]
pub struct GuestWriter<'a, B> {
    cursor: Cursor<'a, B>,
}

impl<B: BitmapSlice> ZeroCopyWriter for GuestWriter<'_, B> {
    fn write_from_file(
        &mut self,
        fd: BorrowedFd<'_>,
        offset: u64,
        len: usize,
    ) -> io::Result<usize> {
        self.cursor.file_io(FileIo::Read, fd, offset, len)
    }
}

impl<B: BitmapSlice> ReplyWriter for GuestWriter<'_, B> {
    fn available(&self) -> usize {
        self.cursor.remaining()
    }

    fn bytes_written(&self) -> usize {
        self.cursor.pos
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        if data.len() > self.cursor.remaining() {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let done = copy_into(self.cursor.chunks(data.len()), data);
        self.cursor.advance(done);
        Ok(())
    }

    fn overwrite_at(&mut self, pos: usize, data: &[u8]) -> io::Result<()> {
        overwrite_range(pos, data.len(), self.cursor.pos)?;
        copy_into(self.cursor.chunks_at(pos, data.len()), data);
        Ok(())
    }
}

/// Copies the start of `data` into `chunks`, in order; returns how many bytes were copied.
/// The chunks must cover at most `data.len()` bytes (as [`Cursor::chunks`] for that length).
fn copy_into<'a, B: BitmapSlice>(
    chunks: impl Iterator<Item = VolatileSlice<'a, B>>,
    data: &[u8],
) -> usize {
    let mut done = 0;
    for chunk in chunks {
        let end = done + chunk.len();
        chunk.copy_from(&data[done..end]);
        done = end;
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::os::fd::AsFd;

    use virtio_bindings::bindings::virtio_ring::{
        VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
    };
    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Address, Bytes, GuestMemoryMmap};

    type Mem = GuestMemoryMmap<()>;

    const REGION: u64 = 0x10_0000;

    /// Two adjacent 1 MiB regions, so that buffers can straddle a region boundary.
    fn memory() -> Mem {
        GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), REGION as usize),
            (GuestAddress(REGION), REGION as usize),
        ])
        .unwrap()
    }

    fn rd(addr: u64, len: u32) -> Descriptor {
        Descriptor::new(addr, len, 0, 0)
    }

    fn wr(addr: u64, len: u32) -> Descriptor {
        Descriptor::new(addr, len, VRING_DESC_F_WRITE as u16, 0)
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + 3) as u8).collect()
    }

    /// Writes `data` into guest memory over the readable descriptors `descs`.
    fn fill(mem: &Mem, descs: &[Descriptor], data: &[u8]) {
        let mut done = 0;
        for d in descs {
            let n = d.len() as usize;
            mem.write_slice(&data[done..done + n], d.addr()).unwrap();
            done += n;
        }
        assert_eq!(done, data.len());
    }

    /// Fills the readable `descs` with `data` and returns a reader over them.
    fn reader_over<'m>(
        mem: &'m Mem,
        descs: &[Descriptor],
        data: &[u8],
    ) -> GuestReader<'m, BS<'m, ()>> {
        fill(mem, descs, data);
        ChainBuffers::new(descs.iter().copied())
            .unwrap()
            .reader(mem)
            .unwrap()
    }

    /// Reads everything left in `r`.
    fn read_rest(r: &mut GuestReader<'_, BS<'_, ()>>) -> Vec<u8> {
        let mut all = vec![0u8; r.remaining()];
        r.read_exact(&mut all).unwrap();
        all
    }

    /// Reads guest memory back over the writable descriptors `descs`.
    fn collect(mem: &Mem, descs: &[Descriptor], len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for d in descs {
            let mut buf = vec![0u8; d.len() as usize];
            mem.read_slice(&mut buf, d.addr()).unwrap();
            out.extend_from_slice(&buf);
        }
        out.truncate(len);
        out
    }

    #[test]
    fn header_split_at_every_byte_boundary() {
        let mem = memory();
        let data = pattern(64);
        for split in 0..=data.len() {
            let descs = [rd(0x1000, split as u32), rd(0x3000, (64 - split) as u32)];
            fill(&mem, &descs, &data);
            let bufs = ChainBuffers::new(descs).unwrap();
            assert_eq!(bufs.readable_len(), 64);
            let mut r = bufs.reader(&mem).unwrap();
            let mut header = [0u8; 40];
            r.read_exact(&mut header).unwrap();
            assert_eq!(&header[..], &data[..40], "split at {split}");
            let mut rest = [0u8; 24];
            r.read_exact(&mut rest).unwrap();
            assert_eq!(&rest[..], &data[40..], "split at {split}");
            assert_eq!(r.remaining(), 0);
        }
    }

    #[test]
    fn reads_of_every_size_across_three_descriptors() {
        let mem = memory();
        let data = pattern(30);
        let descs = [rd(0x1000, 7), rd(0x2000, 1), rd(0x2100, 22)];
        fill(&mem, &descs, &data);
        let bufs = ChainBuffers::new(descs).unwrap();
        for step in 1..=30 {
            let mut r = bufs.reader(&mem).unwrap();
            let mut got = Vec::new();
            while r.remaining() > 0 {
                let n = step.min(r.remaining());
                let mut buf = vec![0u8; n];
                r.read_exact(&mut buf).unwrap();
                got.extend_from_slice(&buf);
            }
            assert_eq!(got, data, "step {step}");
        }
    }

    #[test]
    fn short_read_consumes_nothing() {
        let mem = memory();
        let data = pattern(10);
        let descs = [rd(0x1000, 4), rd(0x2000, 6)];
        let mut r = reader_over(&mem, &descs, &data);
        let mut big = [0u8; 11];
        assert_eq!(
            r.read_exact(&mut big).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        assert_eq!(r.remaining(), 10);
        let mut all = [0u8; 10];
        r.read_exact(&mut all).unwrap();
        assert_eq!(&all[..], &data[..]);
    }

    #[test]
    fn readable_after_writable_is_refused() {
        let err = ChainBuffers::new([rd(0x1000, 8), wr(0x2000, 8), rd(0x3000, 8)]).unwrap_err();
        assert_eq!(err, ChainError::ReadableAfterWritable);
        // Even an empty readable descriptor after a writable one.
        let err = ChainBuffers::new([wr(0x2000, 8), rd(0x3000, 0)]).unwrap_err();
        assert_eq!(err, ChainError::ReadableAfterWritable);
        // And after an empty writable one.
        let err = ChainBuffers::new([wr(0x2000, 0), rd(0x3000, 8)]).unwrap_err();
        assert_eq!(err, ChainError::ReadableAfterWritable);
        // Writable-only and readable-only chains are fine.
        assert!(ChainBuffers::new([wr(0x2000, 8)]).is_ok());
        assert!(ChainBuffers::new([rd(0x2000, 8)]).is_ok());
    }

    #[test]
    fn zero_length_descriptors_are_skipped() {
        let mem = memory();
        let data = pattern(12);
        let descs = [
            rd(0x1000, 0),
            rd(0x1000, 5),
            rd(0xdead_0000_0000, 0),
            rd(0x2000, 7),
        ];
        let mut r = reader_over(&mem, &descs, &data);
        assert_eq!(read_rest(&mut r), data);
        // A zero-length read is always fine.
        r.read_exact(&mut []).unwrap();
        let mut w = ChainBuffers::new([wr(0xdead_0000, 0)])
            .unwrap()
            .writer(&mem)
            .unwrap();
        assert_eq!(w.available(), 0);
        w.write_all(&[]).unwrap();
        assert_eq!(
            w.write_all(&[1]).unwrap_err().kind(),
            io::ErrorKind::WriteZero
        );
    }

    #[test]
    fn addresses_outside_guest_memory_are_errors() {
        let mem = memory();
        let end = 2 * REGION;
        let cases = [
            (end, 1),                // just past the end
            (end - 4, 8),            // straddles the end
            (u64::MAX - 3, 16),      // wraps around
            (0x4000_0000_0000, 512), // far away
        ];
        for (addr, len) in cases {
            let bufs = ChainBuffers::new([rd(0x1000, 8), rd(addr, len)]).unwrap();
            assert_eq!(
                bufs.reader(&mem).unwrap_err(),
                ChainError::BadAddress { addr, len },
                "readable {addr:#x}+{len}"
            );
            let bufs = ChainBuffers::new([wr(0x1000, 8), wr(addr, len)]).unwrap();
            assert!(bufs.writer(&mem).is_err(), "writable {addr:#x}+{len}");
        }
    }

    #[test]
    fn chains_over_the_size_cap_are_refused() {
        let half = (MAX_CHAIN_BYTES / 2 + 1) as u32;
        assert_eq!(
            ChainBuffers::new([rd(0, half), rd(0, half)]).unwrap_err(),
            ChainError::TooLong
        );
        assert_eq!(
            ChainBuffers::new([wr(0, u32::MAX)]).unwrap_err(),
            ChainError::TooLong
        );
        assert!(ChainBuffers::new([rd(0, half), wr(0, half)]).is_ok());
    }

    #[test]
    fn buffer_straddling_two_regions() {
        let mem = memory();
        let data = pattern(100);
        let descs = [rd(REGION - 30, 100)];
        let mut r = reader_over(&mem, &descs, &data);
        assert_eq!(read_rest(&mut r), data);

        let wdescs = [wr(REGION - 10, 50)];
        let mut w = ChainBuffers::new(wdescs).unwrap().writer(&mem).unwrap();
        w.write_all(&data[..50]).unwrap();
        assert_eq!(collect(&mem, &wdescs, 50), &data[..50]);
    }

    #[test]
    fn writer_appends_and_overwrites_across_descriptors() {
        let mem = memory();
        let descs = [wr(0x1000, 3), wr(0x2000, 5), wr(0x3000, 8)];
        let mut w = ChainBuffers::new(descs).unwrap().writer(&mem).unwrap();
        assert_eq!(w.available(), 16);
        w.write_all(&[0; 4]).unwrap();
        w.write_all(&[1, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(w.bytes_written(), 10);
        assert_eq!(w.available(), 6);
        // Too big: nothing written.
        assert_eq!(
            w.write_all(&[9; 7]).unwrap_err().kind(),
            io::ErrorKind::WriteZero
        );
        assert_eq!(w.bytes_written(), 10);
        // Fill in a "header" that straddles the first two descriptors.
        w.overwrite_at(1, &[7, 7, 7, 7]).unwrap();
        // Past what was written: refused.
        assert!(w.overwrite_at(8, &[0; 3]).is_err());
        assert!(w.overwrite_at(usize::MAX, &[0; 3]).is_err());
        assert_eq!(
            collect(&mem, &descs, 10),
            vec![0, 7, 7, 7, 7, 2, 3, 4, 5, 6]
        );
        // Every overwrite position across the boundaries.
        for pos in 0..10 {
            let len = 10 - pos;
            let data = pattern(len);
            w.overwrite_at(pos, &data).unwrap();
            assert_eq!(&collect(&mem, &descs, 10)[pos..], &data[..]);
        }
    }

    #[test]
    fn preadv_straight_into_guest_memory() {
        let mem = memory();
        let content = pattern(10_000);
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&content).unwrap();

        let descs = [
            wr(0x1000, 3),
            wr(0x8000, 4096),
            wr(REGION - 50, 100),
            wr(0x20000, 8000),
        ];
        let mut w = ChainBuffers::new(descs).unwrap().writer(&mem).unwrap();
        w.write_all(b"hdr").unwrap();
        let n = w.write_from_file(file.as_fd(), 1, 5000).unwrap();
        assert_eq!(n, 5000);
        assert_eq!(w.bytes_written(), 5003);
        // Reading at EOF gives 0 and leaves the writer unchanged.
        assert_eq!(w.write_from_file(file.as_fd(), 10_000, 100).unwrap(), 0);
        // Short read at the end of the file.
        let n = w.write_from_file(file.as_fd(), 9_990, 100).unwrap();
        assert_eq!(n, 10);
        let got = collect(&mem, &descs, 5013);
        assert_eq!(&got[..3], b"hdr");
        assert_eq!(&got[3..5003], &content[1..5001]);
        assert_eq!(&got[5003..], &content[9_990..]);
        // More than fits is cut to what fits.
        let n = w.write_from_file(file.as_fd(), 0, 1 << 20).unwrap();
        assert_eq!(n, 3 + 4096 + 100 + 8000 - 5013);
        assert_eq!(w.available(), 0);
        assert_eq!(w.write_from_file(file.as_fd(), 0, 10).unwrap(), 0);
        // Offsets beyond i64 are refused.
        assert!(w.write_from_file(file.as_fd(), u64::MAX, 1).is_err() || w.available() == 0);
    }

    #[test]
    fn pwritev_straight_from_guest_memory() {
        let mem = memory();
        let data = pattern(6000);
        let descs = [rd(0x1000, 10), rd(0x5000, 1000), rd(REGION - 100, 4990)];
        let mut r = reader_over(&mem, &descs, &data);
        let mut header = [0u8; 16];
        r.read_exact(&mut header).unwrap();
        let mut file = tempfile::tempfile().unwrap();
        let n = r.read_to_file(file.as_fd(), 100, 5000).unwrap();
        assert_eq!(n, 5000);
        assert_eq!(r.remaining(), 6000 - 16 - 5000);
        let n = r.read_to_file(file.as_fd(), 5100, 1 << 20).unwrap();
        assert_eq!(n, 6000 - 16 - 5000);
        assert_eq!(r.read_to_file(file.as_fd(), 0, 10).unwrap(), 0);
        let mut got = Vec::new();
        file.seek(SeekFrom::Start(100)).unwrap();
        file.read_to_end(&mut got).unwrap();
        assert_eq!(&got[..], &data[16..]);
        let mut r = ChainBuffers::new(descs).unwrap().reader(&mem).unwrap();
        assert_eq!(
            r.read_to_file(file.as_fd(), u64::MAX, 1)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EINVAL)
        );
        assert_eq!(r.remaining(), 6000);
    }

    #[test]
    fn chain_from_a_queue_with_indirect_table() {
        let mem = memory();
        let queue = MockSplitQueue::new(&mem, 16);
        // An indirect table of three descriptors: request split in two, reply in one.
        let table = GuestAddress(0x9_0000);
        let entries = [
            Descriptor::new(0x1000, 20, VRING_DESC_F_NEXT as u16, 1),
            Descriptor::new(0x2000, 20, VRING_DESC_F_NEXT as u16, 2),
            Descriptor::new(0x3000, 64, VRING_DESC_F_WRITE as u16, 0),
        ];
        for (i, d) in entries.iter().enumerate() {
            mem.write_obj(RawDescriptor::from(*d), table.unchecked_add(16 * i as u64))
                .unwrap();
        }
        let head = RawDescriptor::from(Descriptor::new(
            table.0,
            16 * entries.len() as u32,
            VRING_DESC_F_INDIRECT as u16,
            0,
        ));
        let chain = queue.build_desc_chain(&[head]).unwrap();
        let bufs = ChainBuffers::new(chain).unwrap();
        assert_eq!(bufs.readable_len(), 40);
        assert_eq!(bufs.writable_len(), 64);
    }

    #[test]
    fn chain_from_a_queue_with_bad_order() {
        let mem = memory();
        let queue = MockSplitQueue::new(&mem, 16);
        let descs = [
            RawDescriptor::from(rd(0x1000, 40)),
            RawDescriptor::from(wr(0x2000, 40)),
            RawDescriptor::from(rd(0x3000, 40)),
        ];
        let chain = queue.build_desc_chain(&descs).unwrap();
        assert_eq!(
            ChainBuffers::new(chain).unwrap_err(),
            ChainError::ReadableAfterWritable
        );
    }
}
