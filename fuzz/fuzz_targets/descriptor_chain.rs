//! The vhost-user transport's descriptor-chain reader/writer over real (in-process) guest
//! memory, feeding the request server: arbitrary descriptor layouts (directions, lengths,
//! addresses straddling region ends and gaps) and arbitrary guest memory contents.
//!
//! Input: byte 0 = number of descriptors (mod 17); then 9 bytes per descriptor (u32 address
//! selector, u32 length, u8 flags; bit 0 = device-writable); the rest is copied into guest
//! memory at address 0 (the request bytes, typically).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vhostfs_server::testing::FakeFs;
use vhostfs_server::{ReplyWriter, RequestReader, Server, ServerOptions, SliceReader, VecWriter};
use vhostfs_vhost_user::descriptor::ChainBuffers;
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Two 64 KiB regions with a gap, so that descriptors can cross region ends and gaps.
const REGIONS: [(u64, usize); 2] = [(0, 0x1_0000), (0x10_0000, 0x1_0000)];
const VRING_DESC_F_WRITE: u16 = 2;

fuzz_target!(|data: &[u8]| {
    let Some((&n, mut rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 17);
    let mut descs = Vec::with_capacity(n);
    for _ in 0..n {
        if rest.len() < 9 {
            break;
        }
        let sel = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let len = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let flags = rest[8];
        rest = &rest[9..];
        // Mostly addresses near the regions; sometimes anything.
        let addr = if sel & 0x8000_0000 != 0 {
            u64::from(sel) << 20
        } else {
            u64::from(sel) % 0x12_0000
        };
        // Mostly small lengths; sometimes huge ones.
        let len = if len & 0x8000_0000 != 0 { len } else { len & 0x1_ffff };
        let f = if flags & 1 != 0 { VRING_DESC_F_WRITE } else { 0 };
        descs.push(Descriptor::new(addr, len, f, 0));
    }
    let mem = GuestMemoryMmap::<()>::from_ranges(
        &REGIONS
            .iter()
            .map(|&(a, l)| (GuestAddress(a), l))
            .collect::<Vec<_>>(),
    )
    .expect("guest memory");
    let fill = rest.len().min(REGIONS[0].1);
    mem.write_slice(&rest[..fill], GuestAddress(0)).expect("fill");

    let Ok(chain) = ChainBuffers::new(descs) else {
        return;
    };
    let (Ok(mut r), Ok(mut w)) = (chain.reader(&mem), chain.writer(&mem)) else {
        return;
    };
    assert_eq!(r.remaining(), chain.readable_len());
    assert_eq!(w.available(), chain.writable_len());
    let mut peek = [0u8; 40];
    let _ = r.peek(&mut peek);
    assert_eq!(r.remaining(), chain.readable_len());

    let server = Server::new(FakeFs::new(), ServerOptions::default());
    let init = vhostfs_fuzz_common::init();
    let mut iw = VecWriter::new(4096);
    server
        .handle_message(&mut SliceReader::new(&init), &mut iw)
        .expect("INIT");
    if let Ok(written) = server.handle_message(&mut r, &mut w) {
        assert!(written <= chain.writable_len());
        assert_eq!(w.bytes_written(), written);
    }
});
