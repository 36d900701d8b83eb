//! Device-level tests: queues in in-process guest memory, and a vhost-user frontend on a
//! real socket.

use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use vhost::vhost_user::message::VhostUserConfigFlags;
use vhost::vhost_user::{Frontend, VhostUserFrontend, VhostUserProtocolFeatures};
use vhost::VhostBackend;
use vhost_user_backend::{VhostUserBackend, VringT};
use vhostfs_server::{FileSystem, Server, ServerOptions};
use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::split::Descriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryAtomic, GuestMemoryMmap};

use crate::device::{AtomicMem, FsBackend, Mem, Vring};
use crate::{serve, DeviceConfig};

/// A file system that supports nothing: every request gets ENOSYS (or INIT's defaults).
struct NullFs;
impl FileSystem for NullFs {}

const QUEUE_SIZE: u16 = 64;

fn memory() -> Mem {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap()
}

fn backend(pool: usize, mem: &AtomicMem) -> FsBackend<NullFs> {
    let server = Arc::new(Server::new(NullFs, ServerOptions::default()));
    let config = DeviceConfig {
        tag: Some("myfs".into()),
        max_request_queues: 4,
        max_queue_size: 1024,
        thread_pool_size: pool,
    };
    FsBackend::new(server, config, mem.clone()).unwrap()
}

/// A ready vring over the mock queue's rings.
fn vring_for(mem: &AtomicMem, queue: &MockSplitQueue<'_, Mem>) -> Vring {
    let vring = Vring::new(mem.clone(), QUEUE_SIZE).unwrap();
    vring
        .set_queue_info(
            queue.desc_table_addr().0,
            queue.avail_addr().0,
            queue.used_addr().0,
        )
        .unwrap();
    vring.set_queue_size(QUEUE_SIZE);
    vring.set_queue_ready(true);
    vring.set_enabled(true);
    vring
}

/// A FUSE INIT request (header + fuse_init_in) with the given unique id.
fn init_request(unique: u64) -> Vec<u8> {
    let mut req = Vec::new();
    req.extend_from_slice(&104u32.to_le_bytes()); // len
    req.extend_from_slice(&26u32.to_le_bytes()); // FUSE_INIT
    req.extend_from_slice(&unique.to_le_bytes());
    req.extend_from_slice(&0u64.to_le_bytes()); // nodeid
    req.extend_from_slice(&[0u8; 16]); // uid gid pid extlen padding
    req.extend_from_slice(&7u32.to_le_bytes()); // major
    req.extend_from_slice(&41u32.to_le_bytes()); // minor
    req.extend_from_slice(&[0u8; 56]);
    assert_eq!(req.len(), 104);
    req
}

fn used_entries(queue: &MockSplitQueue<'_, Mem>) -> Vec<(u32, u32)> {
    let n = queue.used().idx().load();
    (0..n)
        .map(|i| {
            let e = queue.used().ring().ref_at(i as usize).unwrap().load();
            (e.id(), e.len())
        })
        .collect()
}

/// Queues chains: a well-formed INIT split over two readable descriptors, a chain with a
/// readable descriptor after a writable one, and one pointing outside guest memory.
/// Returns the head indexes in order.
fn add_chains(mem: &Mem, queue: &MockSplitQueue<'_, Mem>) -> Vec<u16> {
    let req = init_request(0x1234);
    mem.write_slice(&req[..17], GuestAddress(0x10_0000))
        .unwrap();
    mem.write_slice(&req[17..], GuestAddress(0x11_0000))
        .unwrap();
    let next = VRING_DESC_F_NEXT as u16;
    let write = VRING_DESC_F_WRITE as u16;
    let descs = [
        // Chain 0: heads at 0.
        Descriptor::new(0x10_0000, 17, next, 1),
        Descriptor::new(0x11_0000, (req.len() - 17) as u32, next, 2),
        Descriptor::new(0x12_0000, 4096, write, 0),
        // Chain 1: head at 3, bad order.
        Descriptor::new(0x13_0000, 40, next, 4),
        Descriptor::new(0x14_0000, 4096, write | next, 5),
        Descriptor::new(0x15_0000, 40, 0, 0),
        // Chain 2: head at 6, outside memory.
        Descriptor::new(0x7000_0000, 40, next, 7),
        Descriptor::new(0x16_0000, 4096, write, 0),
    ];
    let raw: Vec<RawDescriptor> = descs.iter().map(|d| RawDescriptor::from(*d)).collect();
    queue.add_desc_chains(&raw, 0).unwrap();
    vec![0, 3, 6]
}

fn check_used(mem: &Mem, used: &[(u32, u32)], heads: &[u16]) {
    let ids: Vec<u32> = used.iter().map(|e| e.0).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        heads.iter().map(|&h| u32::from(h)).collect::<Vec<_>>()
    );
    for &(id, len) in used {
        match id {
            0 => {
                // Answered (once the server speaks INIT) or dropped; never more than the
                // buffer, and a reply carries the request's unique id.
                assert!(len <= 4096);
                if len > 0 {
                    let mut hdr = [0u8; 16];
                    mem.read_slice(&mut hdr, GuestAddress(0x12_0000)).unwrap();
                    assert_eq!(u32::from_le_bytes(hdr[..4].try_into().unwrap()), len);
                    assert_eq!(u64::from_le_bytes(hdr[8..].try_into().unwrap()), 0x1234);
                }
            }
            _ => assert_eq!(len, 0, "malformed chain {id} used with 0 bytes"),
        }
    }
}

#[test]
fn queue_worker_completes_every_chain() {
    for event_idx in [false, true] {
        let mem = memory();
        let atomic = GuestMemoryAtomic::new(mem.clone());
        let backend = backend(0, &atomic);
        backend.set_event_idx(event_idx);
        let queue = MockSplitQueue::new(&mem, QUEUE_SIZE);
        let vring = vring_for(&atomic, &queue);
        vring.set_queue_event_idx(event_idx);
        let heads = add_chains(&mem, &queue);
        backend
            .handle_event(
                0,
                vmm_sys_util::epoll::EventSet::IN,
                std::slice::from_ref(&vring),
                1,
            )
            .unwrap();
        let used = used_entries(&queue);
        // Inline processing completes in order.
        assert_eq!(
            used.iter().map(|e| e.0).collect::<Vec<_>>(),
            vec![0, 3, 6],
            "event_idx {event_idx}"
        );
        check_used(&mem, &used, &heads);
        // Nothing left: another kick is a no-op.
        backend
            .handle_event(0, vmm_sys_util::epoll::EventSet::IN, &[vring], 1)
            .unwrap();
        assert_eq!(used_entries(&queue).len(), 3);
    }
}

#[test]
fn pool_completes_every_chain() {
    let mem = memory();
    let atomic = GuestMemoryAtomic::new(mem.clone());
    let backend = backend(2, &atomic);
    let queue = MockSplitQueue::new(&mem, QUEUE_SIZE);
    let vring = vring_for(&atomic, &queue);
    let heads = add_chains(&mem, &queue);
    backend
        .handle_event(0, vmm_sys_util::epoll::EventSet::IN, &[vring], 2)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while used_entries(&queue).len() < heads.len() {
        assert!(
            Instant::now() < deadline,
            "pool did not complete the chains"
        );
        thread::sleep(Duration::from_millis(5));
    }
    check_used(&mem, &used_entries(&queue), &heads);
}

#[test]
fn hiprio_queue_is_served_inline() {
    let mem = memory();
    let atomic = GuestMemoryAtomic::new(mem.clone());
    let backend = backend(2, &atomic);
    let queue = MockSplitQueue::new(&mem, QUEUE_SIZE);
    let vring = vring_for(&atomic, &queue);
    let heads = add_chains(&mem, &queue);
    backend
        .handle_event(0, vmm_sys_util::epoll::EventSet::IN, &[vring], 0)
        .unwrap();
    check_used(&mem, &used_entries(&queue), &heads);
}

#[test]
fn config_space_and_features() {
    let mem = GuestMemoryAtomic::new(memory());
    let b = backend(0, &mem);
    assert_eq!(b.num_queues(), 5);
    assert_eq!(b.queues_per_thread(), vec![1, 2, 4, 8, 16]);
    let cfg = b.get_config(0, 40);
    assert_eq!(&cfg[..4], b"myfs");
    assert!(cfg[4..36].iter().all(|&c| c == 0));
    assert_eq!(&cfg[36..], &4u32.to_le_bytes());
    assert_eq!(b.get_config(36, 4), 4u32.to_le_bytes().to_vec());
    assert!(b.get_config(36, 5).is_empty());
    assert!(b.get_config(u32::MAX, 2).is_empty());
    assert!(b.protocol_features().contains(
        VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::CONFIG
    ));
    let f = b.features();
    for bit in [32, 28, 29, 30] {
        assert_ne!(f & (1 << bit), 0, "feature bit {bit}");
    }
}

#[test]
fn config_validation() {
    let ok = DeviceConfig::default();
    assert!(ok.validate().is_ok());
    for bad in [
        DeviceConfig {
            max_request_queues: 0,
            ..ok.clone()
        },
        DeviceConfig {
            max_queue_size: 1000,
            ..ok.clone()
        },
        DeviceConfig {
            max_queue_size: 65536,
            ..ok.clone()
        },
        DeviceConfig {
            tag: Some("x".repeat(37)),
            ..ok.clone()
        },
        DeviceConfig {
            tag: Some(String::new()),
            ..ok.clone()
        },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
}

#[test]
fn serve_talks_vhost_user_and_returns_ok_on_disconnect() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vfs.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let server = Arc::new(Server::new(NullFs, ServerOptions::default()));
    let config = DeviceConfig {
        tag: Some("myfs".into()),
        max_request_queues: 4,
        ..DeviceConfig::default()
    };
    let daemon = thread::spawn(move || serve(server, listener, config));

    let mut frontend = Frontend::connect(&path, 5).unwrap();
    frontend.set_owner().unwrap();
    let features = frontend.get_features().unwrap();
    assert_ne!(features & (1 << 32), 0);
    frontend.set_features(features).unwrap();
    let proto = frontend.get_protocol_features().unwrap();
    assert!(proto.contains(VhostUserProtocolFeatures::MQ | VhostUserProtocolFeatures::CONFIG));
    frontend.set_protocol_features(proto).unwrap();
    assert_eq!(frontend.get_queue_num().unwrap(), 5);
    let (_, payload) = frontend
        .get_config(0, 40, VhostUserConfigFlags::WRITABLE, &[0u8; 40])
        .unwrap();
    assert_eq!(&payload[..4], b"myfs");
    assert_eq!(&payload[36..40], &4u32.to_le_bytes());
    drop(frontend);

    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemon.is_finished() {
        assert!(
            Instant::now() < deadline,
            "serve did not return on disconnect"
        );
        thread::sleep(Duration::from_millis(10));
    }
    daemon.join().unwrap().unwrap();
}

#[test]
fn serve_refuses_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let listener = UnixListener::bind(dir.path().join("s")).unwrap();
    let server = Arc::new(Server::new(NullFs, ServerOptions::default()));
    let config = DeviceConfig {
        max_request_queues: 0,
        ..DeviceConfig::default()
    };
    assert!(serve(server, listener, config).is_err());
}

/// A file system whose blocking SETLK waits until the test says so.
struct BlockingLockFs {
    release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl FileSystem for BlockingLockFs {
    #[allow(clippy::too_many_arguments)]
    fn setlk(
        &self,
        _ctx: &vhostfs_server::Context,
        _inode: u64,
        _handle: u64,
        _owner: u64,
        _lock: vhostfs_server::Lock,
        _flock: bool,
        wait: bool,
    ) -> std::io::Result<()> {
        if wait {
            let rx = self.release.lock().unwrap();
            rx.recv_timeout(Duration::from_secs(20)).unwrap();
        }
        Ok(())
    }
}

fn header(len: u32, opcode: u32, unique: u64, nodeid: u64) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&len.to_le_bytes());
    h.extend_from_slice(&opcode.to_le_bytes());
    h.extend_from_slice(&unique.to_le_bytes());
    h.extend_from_slice(&nodeid.to_le_bytes());
    h.extend_from_slice(&[0u8; 16]);
    h
}

#[test]
fn blocking_lock_does_not_stall_its_queue() {
    let mem = memory();
    let atomic = GuestMemoryAtomic::new(mem.clone());
    let (release, rx) = std::sync::mpsc::channel();
    let fs = BlockingLockFs {
        release: std::sync::Mutex::new(rx),
    };
    let server = Arc::new(Server::new(fs, ServerOptions::default()));
    let backend = FsBackend::new(server, DeviceConfig::default(), atomic.clone()).unwrap();
    let queue = MockSplitQueue::new(&mem, QUEUE_SIZE);
    let vring = vring_for(&atomic, &queue);

    // INIT, then SETLKW (blocks in the file system), then GETATTR.
    let init = init_request(1);
    let mut setlkw = header(88, 33, 2, 1);
    setlkw.extend_from_slice(&7u64.to_le_bytes()); // fh
    setlkw.extend_from_slice(&9u64.to_le_bytes()); // owner
    setlkw.extend_from_slice(&0u64.to_le_bytes()); // start
    setlkw.extend_from_slice(&u64::MAX.to_le_bytes()); // end
    setlkw.extend_from_slice(&(libc::F_WRLCK as u32).to_le_bytes());
    setlkw.extend_from_slice(&1u32.to_le_bytes()); // pid
    setlkw.extend_from_slice(&[0u8; 8]); // lk_flags, padding
    assert_eq!(setlkw.len(), 88);
    let mut getattr = header(56, 3, 3, 1);
    getattr.extend_from_slice(&[0u8; 16]);
    let requests = [init, setlkw, getattr];
    let next = VRING_DESC_F_NEXT as u16;
    let write = VRING_DESC_F_WRITE as u16;
    let mut descs = Vec::new();
    for (i, req) in requests.iter().enumerate() {
        let base = 0x10_0000 + 0x1_0000 * i as u64;
        mem.write_slice(req, GuestAddress(base)).unwrap();
        let idx = 2 * i as u16;
        descs.push(RawDescriptor::from(Descriptor::new(
            base,
            req.len() as u32,
            next,
            idx + 1,
        )));
        descs.push(RawDescriptor::from(Descriptor::new(
            base + 0x8000,
            4096,
            write,
            0,
        )));
    }
    queue.add_desc_chains(&descs, 0).unwrap();

    backend
        .handle_event(0, vmm_sys_util::epoll::EventSet::IN, &[vring], 1)
        .unwrap();
    // The worker returned with INIT and GETATTR answered, the SETLKW still waiting.
    let used = used_entries(&queue);
    let ids: Vec<u32> = used.iter().map(|e| e.0).collect();
    assert_eq!(ids, vec![0, 4], "used entries {used:?}");
    release.send(()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while used_entries(&queue).len() < 3 {
        assert!(Instant::now() < deadline, "SETLKW never completed");
        thread::sleep(Duration::from_millis(5));
    }
    let (id, len) = used_entries(&queue)[2];
    assert_eq!(id, 2);
    assert_eq!(len, 16, "SETLKW answered with a bare header");
}

#[test]
fn oversized_queue_count_is_lowered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vfs.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let server = Arc::new(Server::new(NullFs, ServerOptions::default()));
    let config = DeviceConfig {
        max_request_queues: 1000,
        ..DeviceConfig::default()
    };
    let daemon = thread::spawn(move || serve(server, listener, config));
    let mut frontend = Frontend::connect(&path, 64).unwrap();
    frontend.set_owner().unwrap();
    let features = frontend.get_features().unwrap();
    frontend.set_features(features).unwrap();
    let proto = frontend.get_protocol_features().unwrap();
    frontend.set_protocol_features(proto).unwrap();
    assert_eq!(
        frontend.get_queue_num().unwrap(),
        crate::MAX_REQUEST_QUEUES as u64 + 1
    );
    drop(frontend);
    daemon.join().unwrap().unwrap();
}

#[test]
fn replies_after_the_queue_stopped_are_dropped() {
    let mem = memory();
    let atomic = GuestMemoryAtomic::new(mem.clone());
    let (release, rx) = std::sync::mpsc::channel();
    let fs = BlockingLockFs {
        release: std::sync::Mutex::new(rx),
    };
    let server = Arc::new(Server::new(fs, ServerOptions::default()));
    let backend = FsBackend::new(server, DeviceConfig::default(), atomic.clone()).unwrap();
    let queue = MockSplitQueue::new(&mem, QUEUE_SIZE);
    let vring = vring_for(&atomic, &queue);
    let init = init_request(1);
    let mut setlkw = header(88, 33, 2, 1);
    setlkw.extend_from_slice(&[0u8; 16]); // fh, owner
    setlkw.extend_from_slice(&0u64.to_le_bytes());
    setlkw.extend_from_slice(&u64::MAX.to_le_bytes());
    setlkw.extend_from_slice(&(libc::F_WRLCK as u32).to_le_bytes());
    setlkw.extend_from_slice(&[0u8; 12]);
    let next = VRING_DESC_F_NEXT as u16;
    let write = VRING_DESC_F_WRITE as u16;
    let mut descs = Vec::new();
    for (i, req) in [init, setlkw].iter().enumerate() {
        let base = 0x10_0000 + 0x1_0000 * i as u64;
        mem.write_slice(req, GuestAddress(base)).unwrap();
        let idx = 2 * i as u16;
        descs.push(RawDescriptor::from(Descriptor::new(
            base,
            req.len() as u32,
            next,
            idx + 1,
        )));
        descs.push(RawDescriptor::from(Descriptor::new(
            base + 0x8000,
            4096,
            write,
            0,
        )));
    }
    queue.add_desc_chains(&descs, 0).unwrap();
    backend
        .handle_event(
            0,
            vmm_sys_util::epoll::EventSet::IN,
            std::slice::from_ref(&vring),
            1,
        )
        .unwrap();
    assert_eq!(
        used_entries(&queue).len(),
        1,
        "INIT answered, SETLKW waiting"
    );
    // The frontend stops the queue (as GET_VRING_BASE does), then restarts it.
    vring.set_queue_ready(false);
    backend.stop_vring(1).unwrap();
    vring.set_queue_ready(true);
    release.send(()).unwrap();
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        used_entries(&queue).len(),
        1,
        "a reply from before the stop reached the ring"
    );
}
