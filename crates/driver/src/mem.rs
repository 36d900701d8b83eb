//! Guest memory as a VMM would provide it: one memfd-backed region, mapped shared in this
//! process and handed to the backend with `VHOST_USER_SET_MEM_TABLE`.
//!
//! Addresses used in descriptors are guest-physical addresses (GPAs); the ring addresses sent
//! with `SET_VRING_ADDR` are this process's virtual addresses, as QEMU sends them.

use std::fs::File;
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use vhost::VhostUserMemoryRegionInfo;
use vm_memory::{
    Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
};

use crate::Error;

/// Guest memory: one or more memfd-backed regions, contiguous in guest-physical address space
/// from `base` (but not in this process's address space when there are several).
pub struct GuestMem {
    mem: GuestMemoryMmap<()>,
    base: u64,
    size: u64,
    regions: usize,
}

fn memfd(size: u64) -> Result<File, Error> {
    let name = c"vhostfs-driver-guest-ram";
    // SAFETY: `name` is a valid NUL-terminated string; memfd_create has no other
    // preconditions and returns a new fd or -1.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(Error::Io(std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(size)?;
    Ok(file)
}

impl GuestMem {
    /// Creates a memfd of `size` bytes, maps it shared and places it at guest address `base`.
    pub fn new(base: u64, size: usize) -> Result<Self, Error> {
        Self::with_regions(base, size, 1)
    }

    /// Like [`GuestMem::new`], but split into `regions` equal memfd regions that are adjacent
    /// in guest-physical space, so buffers can straddle a region boundary.
    pub fn with_regions(base: u64, size: usize, regions: usize) -> Result<Self, Error> {
        let regions = regions.max(1);
        let per = (size / regions) & !0xfff;
        if per == 0 {
            return Err(Error::Mem("guest memory too small to split".into()));
        }
        let mut ranges = Vec::with_capacity(regions);
        for r in 0..regions {
            let file = memfd(per as u64)?;
            ranges.push((
                GuestAddress(base + (r * per) as u64),
                per,
                Some(FileOffset::new(file, 0)),
            ));
        }
        let mem = GuestMemoryMmap::<()>::from_ranges_with_files(ranges)
            .map_err(|e| Error::Mem(format!("mapping guest memory: {e}")))?;
        Ok(Self {
            mem,
            base,
            size: (per * regions) as u64,
            regions,
        })
    }

    /// GPAs where one region ends and the next begins.
    pub fn boundaries(&self) -> Vec<u64> {
        let per = self.size / self.regions as u64;
        (1..self.regions as u64)
            .map(|r| self.base + r * per)
            .collect()
    }

    /// First guest-physical address of the region.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Size of the region in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// One past the last valid guest-physical address.
    pub fn end(&self) -> u64 {
        self.base + self.size
    }

    /// The region descriptions (with their fds) for `VHOST_USER_SET_MEM_TABLE`.
    pub fn region_infos(&self) -> Result<Vec<VhostUserMemoryRegionInfo>, Error> {
        self.mem
            .iter()
            .map(|r| VhostUserMemoryRegionInfo::from_guest_region(r).map_err(Error::Vhost))
            .collect()
    }

    /// Translates a GPA of this region into this process's virtual address (for
    /// `SET_VRING_ADDR`, which carries frontend virtual addresses).
    pub fn host_addr(&self, gpa: u64) -> Result<u64, Error> {
        let region = self
            .mem
            .find_region(GuestAddress(gpa))
            .ok_or_else(|| Error::Mem(format!("gpa {gpa:#x} outside guest memory")))?;
        let off = gpa - region.start_addr().0;
        Ok(region.as_ptr() as u64 + off)
    }

    /// Copies `data` into guest memory at `gpa`.
    pub fn write(&self, gpa: u64, data: &[u8]) -> Result<(), Error> {
        self.mem
            .write_slice(data, GuestAddress(gpa))
            .map_err(|e| Error::Mem(format!("write {} bytes at {gpa:#x}: {e}", data.len())))
    }

    /// Copies `buf.len()` bytes of guest memory at `gpa` into `buf`.
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), Error> {
        self.mem
            .read_slice(buf, GuestAddress(gpa))
            .map_err(|e| Error::Mem(format!("read {} bytes at {gpa:#x}: {e}", buf.len())))
    }

    /// Fills `len` bytes at `gpa` with `byte`.
    pub fn fill(&self, gpa: u64, len: usize, byte: u8) -> Result<(), Error> {
        let chunk = [byte; 4096];
        let mut done = 0usize;
        while done < len {
            let n = (len - done).min(chunk.len());
            self.write(gpa + done as u64, &chunk[..n])?;
            done += n;
        }
        Ok(())
    }

    /// Atomically stores a little-endian `u16` (ring indices) with release ordering.
    pub fn store_u16(&self, gpa: u64, val: u16) -> Result<(), Error> {
        self.mem
            .store(u16::to_le(val), GuestAddress(gpa), Ordering::Release)
            .map_err(|e| Error::Mem(format!("store u16 at {gpa:#x}: {e}")))
    }

    /// Atomically loads a little-endian `u16` (ring indices) with acquire ordering.
    pub fn load_u16(&self, gpa: u64) -> Result<u16, Error> {
        self.mem
            .load::<u16>(GuestAddress(gpa), Ordering::Acquire)
            .map(u16::from_le)
            .map_err(|e| Error::Mem(format!("load u16 at {gpa:#x}: {e}")))
    }

    /// Reads a little-endian `u32`.
    pub fn read_u32(&self, gpa: u64) -> Result<u32, Error> {
        let mut b = [0u8; 4];
        self.read(gpa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
}

/// A thread that keeps rewriting a range of guest memory, cycling through byte patterns,
/// to race the backend's reads of a request (time-of-check/time-of-use, double fetches).
pub struct Flipper {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl Flipper {
    /// Rewrites made so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Waits (up to `timeout`) until the thread has made its first rewrite.
    pub fn wait_started(&self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while self.count() == 0 {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::yield_now();
        }
        true
    }

    /// Stops the thread and returns how many rewrites it made.
    pub fn stop(mut self) -> u64 {
        self.halt()
    }

    fn halt(&mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.count()
    }
}

impl Drop for Flipper {
    fn drop(&mut self) {
        self.halt();
    }
}

impl GuestMem {
    /// Starts a [`Flipper`] writing `variants[0]`, `variants[1]`, ... in turn at `gpa`
    /// as fast as it can. The mapping is shared with the thread, so it stays valid.
    pub fn flip(&self, gpa: u64, variants: Vec<Vec<u8>>) -> Flipper {
        let mem = self.mem.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let (st, cnt) = (stop.clone(), count.clone());
        let handle = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) && !variants.is_empty() {
                for v in &variants {
                    let _ = mem.write_slice(v, GuestAddress(gpa));
                    cnt.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Flipper {
            stop,
            count,
            handle: Some(handle),
        }
    }
}

/// A bump allocator over a range of guest memory, reset when no request using it is in flight.
#[derive(Debug, Clone)]
pub struct Arena {
    start: u64,
    end: u64,
    next: u64,
}

impl Arena {
    /// An arena covering `[start, start + len)`.
    pub fn new(start: u64, len: u64) -> Self {
        Self {
            start,
            end: start + len,
            next: start,
        }
    }

    /// Reserves `len` bytes aligned to `align` (a power of two) and returns their GPA.
    pub fn alloc(&mut self, len: u64, align: u64) -> Result<u64, Error> {
        let align = align.max(1);
        let at = self.next.div_ceil(align) * align;
        let end = at
            .checked_add(len)
            .ok_or_else(|| Error::Mem("arena allocation overflows".into()))?;
        if end > self.end {
            return Err(Error::Mem(format!(
                "arena exhausted: need {len} bytes, {} left",
                self.end.saturating_sub(at)
            )));
        }
        self.next = end;
        Ok(at)
    }

    /// Forgets every allocation.
    pub fn reset(&mut self) {
        self.next = self.start;
    }

    /// First GPA of the arena.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Bytes currently allocated.
    pub fn used(&self) -> u64 {
        self.next - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memfd_region_roundtrip() {
        let m = GuestMem::new(0x1000, 1 << 20).unwrap();
        m.write(0x2000, b"hello").unwrap();
        let mut b = [0u8; 5];
        m.read(0x2000, &mut b).unwrap();
        assert_eq!(&b, b"hello");
        m.store_u16(0x3000, 0xbeef).unwrap();
        assert_eq!(m.load_u16(0x3000).unwrap(), 0xbeef);
        assert!(m.write(0x0, b"x").is_err());
        assert!(m.write(m.end() - 2, b"xyz").is_err());
        let info = m.region_infos().unwrap()[0];
        assert_eq!(info.guest_phys_addr, 0x1000);
        assert_eq!(info.memory_size, 1 << 20);
        assert_eq!(m.host_addr(0x1000).unwrap(), info.userspace_addr);
    }

    #[test]
    fn split_regions_are_adjacent_and_straddled() {
        let m = GuestMem::with_regions(0, 1 << 20, 2).unwrap();
        let b = m.boundaries();
        assert_eq!(b, vec![1 << 19]);
        let data: Vec<u8> = (0..64).collect();
        m.write(b[0] - 20, &data).unwrap();
        let mut back = vec![0u8; 64];
        m.read(b[0] - 20, &mut back).unwrap();
        assert_eq!(back, data);
        let infos = m.region_infos().unwrap();
        assert_eq!(infos.len(), 2);
        assert_eq!(infos[1].guest_phys_addr, 1 << 19);
    }

    #[test]
    fn arena_aligns_and_exhausts() {
        let mut a = Arena::new(100, 64);
        assert_eq!(a.alloc(3, 8).unwrap(), 104);
        assert_eq!(a.alloc(8, 8).unwrap(), 112);
        assert!(a.alloc(100, 1).is_err());
        a.reset();
        assert_eq!(a.alloc(64, 1).unwrap(), 100);
    }
}
