//! Split virtqueues laid out by hand in guest memory (virtio 1.x §2.7), with no validation:
//! the driver writes whatever descriptors a test asks for.

use std::collections::HashMap;
use std::time::Instant;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::mem::{Arena, GuestMem};
use crate::Error;

/// Descriptor flag: the chain continues at `next`.
pub const VRING_DESC_F_NEXT: u16 = 1;
/// Descriptor flag: the buffer is device-writable.
pub const VRING_DESC_F_WRITE: u16 = 2;
/// Descriptor flag: the buffer is a table of indirect descriptors.
pub const VRING_DESC_F_INDIRECT: u16 = 4;
/// Size of one descriptor in bytes.
pub const DESC_SIZE: u64 = 16;

/// One split-queue descriptor (`struct virtq_desc`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Descriptor {
    /// Guest-physical address of the buffer.
    pub addr: u64,
    /// Length of the buffer in bytes.
    pub len: u32,
    /// `VRING_DESC_F_*` bits.
    pub flags: u16,
    /// Index of the next descriptor when `VRING_DESC_F_NEXT` is set.
    pub next: u16,
}

impl Descriptor {
    /// The 16 little-endian bytes of the descriptor as it sits in a table.
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[12..14].copy_from_slice(&self.flags.to_le_bytes());
        b[14..16].copy_from_slice(&self.next.to_le_bytes());
        b
    }
}

/// Where the three parts of a split queue live in guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLayout {
    /// Number of descriptors (a power of two).
    pub size: u16,
    /// GPA of the descriptor table.
    pub desc: u64,
    /// GPA of the available ring.
    pub avail: u64,
    /// GPA of the used ring.
    pub used: u64,
}

fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

impl QueueLayout {
    /// Bytes of guest memory a queue of `size` entries occupies with [`QueueLayout::at`].
    pub fn bytes_needed(size: u16) -> u64 {
        let n = u64::from(size);
        let avail = n * DESC_SIZE;
        let used = align_up(avail + 6 + 2 * n, 4096);
        align_up(used + 6 + 8 * n, 4096)
    }

    /// A queue of `size` entries starting at `base` (which should be page aligned).
    pub fn at(base: u64, size: u16) -> Self {
        let n = u64::from(size);
        let avail = base + n * DESC_SIZE;
        let used = align_up(avail + 6 + 2 * n, 4096);
        Self {
            size,
            desc: base,
            avail,
            used,
        }
    }

    /// GPA of descriptor `i` (not reduced modulo the size: tests may point past the table).
    pub fn desc_addr(&self, i: u16) -> u64 {
        self.desc + u64::from(i) * DESC_SIZE
    }

    /// GPA of `avail->idx`.
    pub fn avail_idx_addr(&self) -> u64 {
        self.avail + 2
    }

    /// GPA of `avail->ring[idx % size]`.
    pub fn avail_slot_addr(&self, idx: u16) -> u64 {
        ring_entry(self.avail, AVAIL_ENTRY, idx % self.size)
    }

    /// GPA of `avail->used_event` (EVENT_IDX).
    pub fn used_event_addr(&self) -> u64 {
        ring_entry(self.avail, AVAIL_ENTRY, self.size)
    }

    /// GPA of `used->idx`.
    pub fn used_idx_addr(&self) -> u64 {
        self.used + 2
    }

    /// GPA of `used->ring[idx % size]`.
    pub fn used_elem_addr(&self, idx: u16) -> u64 {
        ring_entry(self.used, USED_ENTRY, idx % self.size)
    }

    /// GPA of `used->avail_event` (EVENT_IDX).
    pub fn avail_event_addr(&self) -> u64 {
        ring_entry(self.used, USED_ENTRY, self.size)
    }
}

/// Bytes of one `avail->ring` entry (a descriptor index).
const AVAIL_ENTRY: u64 = 2;
/// Bytes of one `used->ring` entry (id and len).
const USED_ENTRY: u64 = 8;

/// GPA of entry `i` of the ring at `ring` (after its `flags` and `idx` fields), with
/// `entry`-byte entries. Entry `size` is the event field that follows the ring.
fn ring_entry(ring: u64, entry: u64, i: u16) -> u64 {
    ring + 4 + entry * u64::from(i)
}

/// One entry the device put in the used ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsedElem {
    /// Head descriptor index the device returned.
    pub id: u32,
    /// Bytes the device says it wrote.
    pub len: u32,
}

/// A chain the driver made available and has not yet seen come back.
#[derive(Clone, Debug)]
pub struct InFlight {
    /// Descriptor-table indices owned by the chain (returned to the free list on completion).
    pub descs: Vec<u16>,
    /// Device-writable buffers in chain order, where the reply is read from.
    pub writable: Vec<(u64, u32)>,
    /// When it was made available.
    pub submitted: Instant,
}

/// Driver-side state of one split virtqueue.
pub struct Vring {
    /// Queue index (0 = hiprio, 1.. = request queues for virtio-fs).
    pub index: usize,
    /// Where the rings live.
    pub layout: QueueLayout,
    /// Eventfd we write to notify the device.
    pub kick: EventFd,
    /// Eventfd the device writes when it used buffers.
    pub call: EventFd,
    /// Buffers for requests on this queue.
    pub arena: Arena,
    next_avail: u16,
    last_used: u16,
    free: Vec<u16>,
    in_use: Vec<bool>,
    inflight: HashMap<u16, InFlight>,
    done: HashMap<u16, UsedElem>,
    stray: Vec<UsedElem>,
}

impl Vring {
    /// Sets up an empty queue (zeroed rings) at `layout`, with request buffers in `arena`.
    pub fn new(
        index: usize,
        layout: QueueLayout,
        arena: Arena,
        mem: &GuestMem,
    ) -> Result<Self, Error> {
        if layout.size == 0 || !layout.size.is_power_of_two() {
            return Err(Error::Config(format!(
                "queue size {} is not a power of two",
                layout.size
            )));
        }
        mem.fill(
            layout.desc,
            QueueLayout::bytes_needed(layout.size) as usize,
            0,
        )?;
        Ok(Self {
            index,
            layout,
            kick: EventFd::new(EFD_NONBLOCK)?,
            call: EventFd::new(EFD_NONBLOCK)?,
            arena,
            next_avail: 0,
            last_used: 0,
            free: (0..layout.size).rev().collect(),
            in_use: vec![false; usize::from(layout.size)],
            inflight: HashMap::new(),
            done: HashMap::new(),
            stray: Vec::new(),
        })
    }

    /// Takes `n` free descriptor indices.
    pub fn alloc_descs(&mut self, n: usize) -> Result<Vec<u16>, Error> {
        if n > self.free.len() {
            return Err(Error::QueueFull {
                need: n,
                free: self.free.len(),
            });
        }
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            if let Some(i) = self.free.pop() {
                self.in_use[usize::from(i)] = true;
                v.push(i);
            }
        }
        Ok(v)
    }

    /// Returns descriptors to the free list without any completion.
    pub(crate) fn abandon_descs(&mut self, descs: &[u16]) {
        self.release_descs(descs);
    }

    fn release_descs(&mut self, descs: &[u16]) {
        for &d in descs {
            if let Some(slot) = self.in_use.get_mut(usize::from(d)) {
                if *slot {
                    *slot = false;
                    self.free.push(d);
                }
            }
        }
    }

    /// Number of free descriptors.
    pub fn free_descs(&self) -> usize {
        self.free.len()
    }

    /// Writes descriptor `i` of the table (any index, even past the table's end).
    pub fn write_desc(&self, mem: &GuestMem, i: u16, d: &Descriptor) -> Result<(), Error> {
        mem.write(self.layout.desc_addr(i), &d.to_bytes())
    }

    /// Records a chain as in flight under `head`.
    pub fn track(&mut self, head: u16, inflight: InFlight) {
        self.inflight.insert(head, inflight);
    }

    /// Puts `head` in the next avail slot and publishes the new `avail->idx`.
    /// `head` is not checked: it may be out of range on purpose.
    pub fn push_avail(&mut self, mem: &GuestMem, head: u16) -> Result<(), Error> {
        let slot = self.layout.avail_slot_addr(self.next_avail);
        mem.write(slot, &head.to_le_bytes())?;
        self.next_avail = self.next_avail.wrapping_add(1);
        // Ask for an interrupt at the next used entry when EVENT_IDX is on.
        mem.store_u16(self.layout.used_event_addr(), self.last_used)?;
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        mem.store_u16(self.layout.avail_idx_addr(), self.next_avail)
    }

    /// Publishes an arbitrary `avail->idx` (e.g. far ahead of the ring) without filling slots.
    pub fn set_avail_idx_raw(&mut self, mem: &GuestMem, idx: u16) -> Result<(), Error> {
        self.next_avail = idx;
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        mem.store_u16(self.layout.avail_idx_addr(), idx)
    }

    /// The `avail->idx` most recently published.
    pub fn avail_idx(&self) -> u16 {
        self.next_avail
    }

    /// The used index up to which entries have been collected.
    pub fn last_used(&self) -> u16 {
        self.last_used
    }

    /// Notifies the device.
    pub fn kick(&self) -> Result<(), Error> {
        self.kick.write(1)?;
        Ok(())
    }

    /// Collects every new used-ring entry into the completed set. Returns how many were new.
    pub fn collect(&mut self, mem: &GuestMem) -> Result<usize, Error> {
        let used_idx = mem.load_u16(self.layout.used_idx_addr())?;
        let mut n = 0;
        while self.last_used != used_idx {
            let at = self.layout.used_elem_addr(self.last_used);
            let elem = UsedElem {
                id: mem.read_u32(at)?,
                len: mem.read_u32(at + 4)?,
            };
            self.last_used = self.last_used.wrapping_add(1);
            n += 1;
            match u16::try_from(elem.id) {
                Ok(head) if self.inflight.contains_key(&head) && !self.done.contains_key(&head) => {
                    self.done.insert(head, elem);
                }
                _ => self.stray.push(elem),
            }
        }
        Ok(n)
    }

    /// Takes the completion of `head` if it has arrived, freeing its descriptors.
    pub fn take_done(&mut self, head: u16) -> Option<(UsedElem, InFlight)> {
        let elem = self.done.remove(&head)?;
        let inflight = self.inflight.remove(&head)?;
        self.release_descs(&inflight.descs);
        self.maybe_reset_arena();
        Some((elem, inflight))
    }

    /// Forgets every chain still in flight or completed-but-unclaimed (after the device has
    /// provably moved past them), returning their descriptors to the free list.
    pub fn abandon_all(&mut self) -> usize {
        let heads: Vec<u16> = self.inflight.keys().copied().collect();
        for h in &heads {
            if let Some(f) = self.inflight.remove(h) {
                self.release_descs(&f.descs);
            }
        }
        self.done.clear();
        // Descriptors written raw (not tracked) become free again too.
        self.free = (0..self.layout.size).rev().collect();
        self.in_use.iter_mut().for_each(|b| *b = false);
        self.arena.reset();
        heads.len()
    }

    /// Forgets one in-flight chain (e.g. after a timeout).
    pub fn abandon(&mut self, head: u16) {
        self.done.remove(&head);
        if let Some(f) = self.inflight.remove(&head) {
            self.release_descs(&f.descs);
        }
        self.maybe_reset_arena();
    }

    fn maybe_reset_arena(&mut self) {
        if self.inflight.is_empty() {
            self.arena.reset();
        }
    }

    /// Number of chains in flight.
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// Used entries whose id matched no chain in flight (a device bug or a raw chain).
    pub fn stray(&self) -> &[UsedElem] {
        &self.stray
    }

    /// Drains the stray list.
    pub fn take_stray(&mut self) -> Vec<UsedElem> {
        std::mem::take(&mut self.stray)
    }

    /// The used entry for `head`, if it completed and was not yet claimed.
    pub fn is_done(&self, head: u16) -> bool {
        self.done.contains_key(&head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_spec_shaped() {
        let l = QueueLayout::at(0x10000, 256);
        assert_eq!(l.desc, 0x10000);
        assert_eq!(l.avail, 0x10000 + 4096);
        assert_eq!(l.used % 4096, 0);
        assert!(l.used >= l.avail + 6 + 512);
        assert_eq!(l.avail_slot_addr(257), l.avail + 4 + 2);
        assert!(l.avail_event_addr() + 2 <= l.desc + QueueLayout::bytes_needed(256));
    }

    #[test]
    fn descriptor_bytes() {
        let d = Descriptor {
            addr: 0x1122334455667788,
            len: 0x99aabbcc,
            flags: 3,
            next: 7,
        };
        let want: Vec<u8> = [
            &0x1122334455667788u64.to_le_bytes()[..],
            &0x99aabbccu32.to_le_bytes(),
            &3u16.to_le_bytes(),
            &7u16.to_le_bytes(),
        ]
        .concat();
        assert_eq!(d.to_bytes().to_vec(), want);
    }

    #[test]
    fn completion_bookkeeping() {
        let mem = GuestMem::new(0, 1 << 20).unwrap();
        let l = QueueLayout::at(0, 8);
        let mut q = Vring::new(1, l, Arena::new(0x10000, 0x1000), &mem).unwrap();
        let d = q.alloc_descs(3).unwrap();
        assert_eq!(q.free_descs(), 5);
        q.track(
            d[0],
            InFlight {
                descs: d.clone(),
                writable: vec![],
                submitted: Instant::now(),
            },
        );
        q.push_avail(&mem, d[0]).unwrap();
        assert_eq!(mem.load_u16(l.avail_idx_addr()).unwrap(), 1);
        // Play device: used entry for d[0] plus a stray one.
        mem.write(l.used_elem_addr(0), &u32::from(d[0]).to_le_bytes())
            .unwrap();
        mem.write(l.used_elem_addr(0) + 4, &16u32.to_le_bytes())
            .unwrap();
        mem.write(l.used_elem_addr(1), &99u32.to_le_bytes())
            .unwrap();
        mem.store_u16(l.used_idx_addr(), 2).unwrap();
        assert_eq!(q.collect(&mem).unwrap(), 2);
        let (e, _) = q.take_done(d[0]).unwrap();
        assert_eq!(e.len, 16);
        assert_eq!(q.stray().len(), 1);
        assert_eq!(q.free_descs(), 8);
    }
}
