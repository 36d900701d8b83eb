//! Building descriptor chains exactly as a test wants them, well-formed or not.
//!
//! A [`ChainBuilder`] is a list of parts; each part becomes one descriptor. By default each
//! descriptor gets the natural flags (`WRITE` for writable parts, `NEXT` on all but the last)
//! and `next` pointing at the following part, but every field can be overridden, and parts can
//! point anywhere (outside guest memory, into another part, into the rings themselves).

use std::time::Instant;

use crate::mem::GuestMem;
use crate::vring::{
    Descriptor, InFlight, Vring, DESC_SIZE, VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT,
    VRING_DESC_F_WRITE,
};
use crate::Error;

/// Where a descriptor's `next` field points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// The part that follows in the builder (0 for the last part).
    Following,
    /// The descriptor of part `n` of the same list (so `Rel(0)` on the last part is a loop).
    Rel(usize),
    /// An absolute descriptor-table index, possibly out of range.
    Abs(u16),
}

#[derive(Clone, Debug)]
enum Buf {
    /// Bytes copied into the queue's arena.
    Data(Vec<u8>),
    /// A zeroed buffer of this many bytes in the arena.
    Zeroed(u32),
    /// A literal guest-physical address.
    At(u64),
    /// The buffer of another part of the same list, plus an offset.
    Alias { part: usize, offset: u64 },
    /// An indirect table built from these parts.
    Table(Vec<Part>),
}

/// One descriptor of a chain being built.
#[derive(Clone, Debug)]
pub struct Part {
    buf: Buf,
    len: u32,
    write: bool,
    flags: Option<u16>,
    next: Next,
    addr_override: Option<u64>,
}

impl Part {
    fn new(buf: Buf, len: u32, write: bool) -> Self {
        Self {
            buf,
            len,
            write,
            flags: None,
            next: Next::Following,
            addr_override: None,
        }
    }
}

/// A chain layout under construction. See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct ChainBuilder {
    parts: Vec<Part>,
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl ChainBuilder {
    /// An empty chain.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of parts (top-level descriptors).
    pub fn len(&self) -> usize {
        self.parts.len()
    }

    /// Whether the chain has no parts.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// A device-readable descriptor holding `bytes`.
    pub fn readable(mut self, bytes: &[u8]) -> Self {
        self.parts.push(Part::new(
            Buf::Data(bytes.to_vec()),
            to_u32(bytes.len()),
            false,
        ));
        self
    }

    /// `bytes` split into several device-readable descriptors at the given offsets
    /// (offsets past the end are ignored; equal offsets produce zero-length descriptors).
    pub fn readable_split(mut self, bytes: &[u8], at: &[usize]) -> Self {
        let mut start = 0usize;
        for &cut in at {
            let cut = cut.clamp(start, bytes.len());
            self = self.readable(&bytes[start..cut]);
            start = cut;
        }
        self.readable(&bytes[start..])
    }

    /// A device-writable zeroed buffer of `len` bytes.
    pub fn writable(mut self, len: u32) -> Self {
        self.parts.push(Part::new(Buf::Zeroed(len), len, true));
        self
    }

    /// Writable buffers of the given sizes, one descriptor each.
    pub fn writable_split(mut self, lens: &[u32]) -> Self {
        for &l in lens {
            self = self.writable(l);
        }
        self
    }

    /// A readable descriptor at a literal guest address (nothing is written there).
    pub fn readable_at(mut self, addr: u64, len: u32) -> Self {
        self.parts.push(Part::new(Buf::At(addr), len, false));
        self
    }

    /// A writable descriptor at a literal guest address.
    pub fn writable_at(mut self, addr: u64, len: u32) -> Self {
        self.parts.push(Part::new(Buf::At(addr), len, true));
        self
    }

    /// A descriptor overlapping the buffer of part `part` (of this list) from `offset`.
    pub fn alias(mut self, part: usize, offset: u64, len: u32, write: bool) -> Self {
        self.parts
            .push(Part::new(Buf::Alias { part, offset }, len, write));
        self
    }

    /// A descriptor with every field given verbatim.
    pub fn raw_descriptor(mut self, addr: u64, len: u32, flags: u16, next: Next) -> Self {
        let mut p = Part::new(Buf::At(addr), len, flags & VRING_DESC_F_WRITE != 0);
        p.flags = Some(flags);
        p.next = next;
        self.parts.push(p);
        self
    }

    /// A descriptor with the INDIRECT flag whose table holds the parts of `table`
    /// (their `Next::Rel`/`Following` refer to positions in that table).
    pub fn indirect(mut self, table: ChainBuilder) -> Self {
        let len = to_u32(table.parts.len() * DESC_SIZE as usize);
        self.parts
            .push(Part::new(Buf::Table(table.parts), len, false));
        self
    }

    /// An INDIRECT descriptor with an arbitrary table address and length.
    pub fn raw_indirect(mut self, addr: u64, len: u32) -> Self {
        let mut p = Part::new(Buf::At(addr), len, false);
        p.flags = Some(VRING_DESC_F_INDIRECT);
        self.parts.push(p);
        self
    }

    fn part_mut(&mut self, i: usize) -> Option<&mut Part> {
        self.parts.get_mut(i)
    }

    /// Overrides the flags of part `i` (all bits, verbatim).
    pub fn set_flags(mut self, i: usize, flags: u16) -> Self {
        if let Some(p) = self.part_mut(i) {
            p.flags = Some(flags);
        }
        self
    }

    /// Overrides the `next` of part `i`.
    pub fn set_next(mut self, i: usize, next: Next) -> Self {
        if let Some(p) = self.part_mut(i) {
            p.next = next;
        }
        self
    }

    /// Overrides the length of part `i` (the buffer itself keeps its size).
    pub fn set_len(mut self, i: usize, len: u32) -> Self {
        if let Some(p) = self.part_mut(i) {
            p.len = len;
        }
        self
    }

    /// Overrides the address of part `i`.
    pub fn set_addr(mut self, i: usize, addr: u64) -> Self {
        if let Some(p) = self.part_mut(i) {
            p.addr_override = Some(addr);
        }
        self
    }

    /// Places the chain in guest memory and the descriptor table of `q`, returning the head
    /// index and the bookkeeping record (not yet tracked nor made available).
    pub(crate) fn place(&self, mem: &GuestMem, q: &mut Vring) -> Result<(u16, InFlight), Error> {
        if self.parts.is_empty() {
            return Err(Error::Config("empty chain".into()));
        }
        let slots = q.alloc_descs(self.parts.len())?;
        let mut writable = Vec::new();
        let descs = match resolve(&self.parts, mem, q, &slots, &mut writable) {
            Ok(d) => d,
            Err(e) => {
                q.abandon_descs(&slots);
                if q.in_flight() == 0 {
                    q.arena.reset();
                }
                return Err(e);
            }
        };
        for (slot, d) in slots.iter().zip(&descs) {
            q.write_desc(mem, *slot, d)?;
        }
        Ok((
            slots[0],
            InFlight {
                descs: slots,
                writable,
                submitted: Instant::now(),
            },
        ))
    }
}

/// Turns a list of parts into descriptors whose `next` values index `slots`.
fn resolve(
    parts: &[Part],
    mem: &GuestMem,
    q: &mut Vring,
    slots: &[u16],
    writable: &mut Vec<(u64, u32)>,
) -> Result<Vec<Descriptor>, Error> {
    let mut addrs: Vec<u64> = Vec::with_capacity(parts.len());
    let mut out = Vec::with_capacity(parts.len());
    for (i, p) in parts.iter().enumerate() {
        let mut natural_flags = 0u16;
        let addr = match &p.buf {
            Buf::Data(bytes) => {
                let a = q.arena.alloc(bytes.len() as u64, 8)?;
                mem.write(a, bytes)?;
                a
            }
            Buf::Zeroed(len) => {
                let a = q.arena.alloc(u64::from(*len), 8)?;
                mem.fill(a, *len as usize, 0)?;
                a
            }
            Buf::At(a) => *a,
            Buf::Alias { part, offset } => {
                addrs.get(*part).copied().unwrap_or(0).wrapping_add(*offset)
            }
            Buf::Table(sub) => {
                let n = sub.len();
                let table = q.arena.alloc((n as u64).max(1) * DESC_SIZE, 16)?;
                let pos: Vec<u16> = (0..n)
                    .map(|k| u16::try_from(k).unwrap_or(u16::MAX))
                    .collect();
                let sub_descs = resolve(sub, mem, q, &pos, writable)?;
                for (k, d) in sub_descs.iter().enumerate() {
                    mem.write(table + k as u64 * DESC_SIZE, &d.to_bytes())?;
                }
                natural_flags |= VRING_DESC_F_INDIRECT;
                table
            }
        };
        let addr = p.addr_override.unwrap_or(addr);
        addrs.push(addr);
        if p.write {
            natural_flags |= VRING_DESC_F_WRITE;
        }
        if i + 1 < parts.len() {
            natural_flags |= VRING_DESC_F_NEXT;
        }
        let flags = p.flags.unwrap_or(natural_flags);
        if flags & VRING_DESC_F_WRITE != 0 && flags & VRING_DESC_F_INDIRECT == 0 {
            writable.push((addr, p.len));
        }
        let next = match p.next {
            Next::Following => slots.get(i + 1).copied().unwrap_or(0),
            Next::Rel(k) => slots.get(k).copied().unwrap_or(u16::MAX),
            Next::Abs(n) => n,
        };
        out.push(Descriptor {
            addr,
            len: p.len,
            flags,
            next,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::Arena;
    use crate::vring::QueueLayout;

    fn setup() -> (GuestMem, Vring) {
        let mem = GuestMem::new(0, 1 << 20).unwrap();
        let q = Vring::new(
            1,
            QueueLayout::at(0, 16),
            Arena::new(0x10000, 0x10000),
            &mem,
        )
        .unwrap();
        (mem, q)
    }

    fn desc(mem: &GuestMem, q: &Vring, i: u16) -> Descriptor {
        let mut b = [0u8; 16];
        mem.read(q.layout.desc_addr(i), &mut b).unwrap();
        desc_from(&b)
    }

    fn desc_from(b: &[u8]) -> Descriptor {
        Descriptor {
            addr: u64::from_le_bytes(b[0..8].try_into().unwrap()),
            len: u32::from_le_bytes(b[8..12].try_into().unwrap()),
            flags: u16::from_le_bytes(b[12..14].try_into().unwrap()),
            next: u16::from_le_bytes(b[14..16].try_into().unwrap()),
        }
    }

    #[test]
    fn natural_flags_and_links() {
        let (mem, mut q) = setup();
        let ch = ChainBuilder::new()
            .readable_split(b"0123456789", &[3])
            .writable(32);
        let (head, f) = ch.place(&mem, &mut q).unwrap();
        assert_eq!(f.descs.len(), 3);
        assert_eq!(head, f.descs[0]);
        let d: Vec<Descriptor> = f.descs.iter().map(|&i| desc(&mem, &q, i)).collect();
        assert_eq!(d[0].flags, VRING_DESC_F_NEXT);
        assert_eq!(d[0].next, f.descs[1]);
        assert_eq!(d[0].len, 3);
        assert_eq!(d[1].flags, VRING_DESC_F_NEXT);
        assert_eq!(d[1].len, 7);
        assert_eq!(d[2].flags, VRING_DESC_F_WRITE);
        assert_eq!(d[2].len, 32);
        let mut b = [0u8; 7];
        mem.read(d[1].addr, &mut b).unwrap();
        assert_eq!(&b, b"3456789");
        assert_eq!(f.writable, vec![(d[2].addr, 32)]);
    }

    #[test]
    fn overrides_loops_and_aliases() {
        let (mem, mut q) = setup();
        let ch = ChainBuilder::new()
            .readable(b"abcd")
            .alias(0, 2, 2, true)
            .raw_descriptor(0xdead_0000, 9, VRING_DESC_F_NEXT, Next::Abs(999))
            .set_next(1, Next::Rel(0))
            .set_len(0, 77);
        let (_, f) = ch.place(&mem, &mut q).unwrap();
        let d: Vec<Descriptor> = f.descs.iter().map(|&i| desc(&mem, &q, i)).collect();
        assert_eq!(d[0].len, 77);
        assert_eq!(d[1].addr, d[0].addr + 2);
        assert_eq!(d[1].flags, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT);
        assert_eq!(d[1].next, f.descs[0]);
        assert_eq!(d[2].addr, 0xdead_0000);
        assert_eq!(d[2].next, 999);
        assert_eq!(d[2].flags, VRING_DESC_F_NEXT);
    }

    #[test]
    fn indirect_table_is_laid_out() {
        let (mem, mut q) = setup();
        let ch = ChainBuilder::new().indirect(ChainBuilder::new().readable(b"xy").writable(8));
        let (head, f) = ch.place(&mem, &mut q).unwrap();
        let top = desc(&mem, &q, head);
        assert_eq!(top.flags, VRING_DESC_F_INDIRECT);
        assert_eq!(top.len, 32);
        let mut t = [0u8; 32];
        mem.read(top.addr, &mut t).unwrap();
        let e0 = desc_from(&t[..16]);
        let e1 = desc_from(&t[16..]);
        assert_eq!((e0.flags, e0.next, e0.len), (VRING_DESC_F_NEXT, 1, 2));
        assert_eq!((e1.flags, e1.len), (VRING_DESC_F_WRITE, 8));
        assert_eq!(f.writable, vec![(e1.addr, 8)]);
    }

    #[test]
    fn too_many_descriptors_is_an_error_and_leaks_nothing() {
        let (mem, mut q) = setup();
        let ch = ChainBuilder::new().readable_split(&[0u8; 40], &(1..20).collect::<Vec<_>>());
        assert!(matches!(
            ch.place(&mem, &mut q),
            Err(Error::QueueFull { .. })
        ));
        assert_eq!(q.free_descs(), 16);
        let big = ChainBuilder::new().writable(1 << 20);
        assert!(big.place(&mem, &mut q).is_err());
        assert_eq!(q.free_descs(), 16);
    }
}
