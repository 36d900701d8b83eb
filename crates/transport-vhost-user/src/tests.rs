//! Device-level tests: queues in in-process guest memory, and a vhost-user frontend on a
//! real socket.

use std::os::unix::net::UnixListener;
use std::sync::{mpsc, Arc, Mutex};
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

/// A request server over [`NullFs`].
fn null_server() -> Arc<Server<NullFs>> {
    Arc::new(Server::new(NullFs, ServerOptions::default()))
}

fn backend(pool: usize, mem: &AtomicMem) -> FsBackend<NullFs> {
    let server = null_server();
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

/// A device that `make` builds over `mem` (shared the way the backend sees guest memory),
/// and a ready vring over the mock queue's rings.
fn device_over<T>(
    mem: &Mem,
    queue: &MockSplitQueue<'_, Mem>,
    make: impl FnOnce(&AtomicMem) -> T,
) -> (T, Vring) {
    let atomic = GuestMemoryAtomic::new(mem.clone());
    let device = make(&atomic);
    (device, vring_for(&atomic, queue))
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

/// Delivers a kick of `vring`, device queue `queue_index` (its worker thread's only queue),
/// to `backend`.
fn kick<F: FileSystem + Send + Sync + 'static>(
    backend: &FsBackend<F>,
    vring: &Vring,
    queue_index: usize,
) {
    backend
        .handle_event(
            0,
            vmm_sys_util::epoll::EventSet::IN,
            std::slice::from_ref(vring),
            queue_index,
        )
        .unwrap();
}

/// Waits up to `within` for `queue`'s used ring to hold `n` entries; `what` says what did not
/// happen otherwise.
fn wait_used(queue: &MockSplitQueue<'_, Mem>, n: usize, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while used_entries(queue).len() < n {
        assert!(Instant::now() < deadline, "{what}");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn queue_worker_completes_every_chain() {
    for event_idx in [false, true] {
        let mem = memory();
        let queue = MockSplitQueue::new(&mem, QUEUE_SIZE);
        let (backend, vring) = device_over(&mem, &queue, |m| backend(0, m));
        backend.set_event_idx(event_idx);
        vring.set_queue_event_idx(event_idx);
        let heads = add_chains(&mem, &queue);
        kick(&backend, &vring, 1);
        let used = used_entries(&queue);
        // Inline processing completes in order.
        assert_eq!(
            used.iter().map(|e| e.0).collect::<Vec<_>>(),
            vec![0, 3, 6],
            "event_idx {event_idx}"
        );
        check_used(&mem, &used, &heads);
        // Nothing left: another kick is a no-op.
        kick(&backend, &vring, 1);
        assert_eq!(used_entries(&queue).len(), 3);
    }
}

/// Queues [`add_chains`] on device queue `queue_index` of a backend with a pool of `pool`
/// threads, kicks it, and checks that every chain was used within `within`.
fn completes_every_chain(pool: usize, queue_index: usize, within: Duration) {
    let mem = memory();
    let queue = MockSplitQueue::new(&mem, QUEUE_SIZE);
    let (backend, vring) = device_over(&mem, &queue, |m| backend(pool, m));
    let heads = add_chains(&mem, &queue);
    kick(&backend, &vring, queue_index);
    wait_used(&queue, heads.len(), within, "the chains were not completed");
    check_used(&mem, &used_entries(&queue), &heads);
}

#[test]
fn pool_completes_every_chain() {
    completes_every_chain(2, 2, Duration::from_secs(10));
}

#[test]
fn hiprio_queue_is_served_inline() {
    // Inline: every chain is used by the time the kick was handled, without any wait.
    completes_every_chain(2, 0, Duration::ZERO);
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

/// A [`serve`] thread (over [`NullFs`]) and a frontend connected to it that negotiated every
/// feature and protocol feature the daemon offered.
struct Session {
    frontend: Frontend,
    features: u64,
    proto: VhostUserProtocolFeatures,
    daemon: thread::JoinHandle<Result<(), crate::Error>>,
    /// Holds the socket; removed on drop.
    _dir: tempfile::TempDir,
}

/// Runs [`serve`] with `config` on a fresh socket in a thread, and connects a frontend to it
/// that asks for `queues` queues and accepts all the features it is offered.
fn serve_and_negotiate(config: DeviceConfig, queues: u64) -> Session {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vfs.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let server = null_server();
    let daemon = thread::spawn(move || serve(server, listener, config));

    let mut frontend = Frontend::connect(&path, queues).unwrap();
    frontend.set_owner().unwrap();
    let features = frontend.get_features().unwrap();
    frontend.set_features(features).unwrap();
    let proto = frontend.get_protocol_features().unwrap();
    frontend.set_protocol_features(proto).unwrap();
    Session {
        frontend,
        features,
        proto,
        daemon,
        _dir: dir,
    }
}

#[test]
fn serve_talks_vhost_user_and_returns_ok_on_disconnect() {
    let config = DeviceConfig {
        tag: Some("myfs".into()),
        max_request_queues: 4,
        ..DeviceConfig::default()
    };
    let Session {
        mut frontend,
        features,
        proto,
        daemon,
        _dir,
    } = serve_and_negotiate(config, 5);
    assert_ne!(features & (1 << 32), 0);
    assert!(proto.contains(VhostUserProtocolFeatures::MQ | VhostUserProtocolFeatures::CONFIG));
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
    let config = DeviceConfig {
        max_request_queues: 0,
        ..DeviceConfig::default()
    };
    assert!(serve(null_server(), listener, config).is_err());
}

/// A file system whose blocking SETLK waits until the test says so.
struct BlockingLockFs {
    release: Mutex<mpsc::Receiver<()>>,
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

/// A device over a [`BlockingLockFs`], and the sender that lets its blocked SETLKW return.
fn blocking_backend(mem: &AtomicMem) -> (FsBackend<BlockingLockFs>, mpsc::Sender<()>) {
    let (release, rx) = mpsc::channel();
    let fs = BlockingLockFs {
        release: Mutex::new(rx),
    };
    let server = Arc::new(Server::new(fs, ServerOptions::default()));
    let backend = FsBackend::new(server, DeviceConfig::default(), mem.clone()).unwrap();
    (backend, release)
}

/// A SETLKW (unique 2, node 1) for a write lock on the whole file.
fn setlkw_request(fh: u64, owner: u64, pid: u32) -> Vec<u8> {
    let mut req = header(88, 33, 2, 1);
    req.extend_from_slice(&fh.to_le_bytes());
    req.extend_from_slice(&owner.to_le_bytes());
    req.extend_from_slice(&0u64.to_le_bytes()); // start
    req.extend_from_slice(&u64::MAX.to_le_bytes()); // end
    req.extend_from_slice(&(libc::F_WRLCK as u32).to_le_bytes());
    req.extend_from_slice(&pid.to_le_bytes());
    req.extend_from_slice(&[0u8; 8]); // lk_flags, padding
    assert_eq!(req.len(), 88);
    req
}

/// Queues one chain per request: request `i` in a readable descriptor at
/// `0x10_0000 + 0x1_0000 * i`, chained to a 4096-byte reply buffer `0x8000` after it. Chain
/// `i`'s head is descriptor `2 * i`.
fn add_requests(mem: &Mem, queue: &MockSplitQueue<'_, Mem>, requests: &[Vec<u8>]) {
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
    let queue = MockSplitQueue::new(&mem, QUEUE_SIZE);
    let ((backend, release), vring) = device_over(&mem, &queue, blocking_backend);

    // INIT, then SETLKW (blocks in the file system), then GETATTR.
    let mut getattr = header(56, 3, 3, 1);
    getattr.extend_from_slice(&[0u8; 16]);
    let requests = [init_request(1), setlkw_request(7, 9, 1), getattr];
    add_requests(&mem, &queue, &requests);

    kick(&backend, &vring, 1);
    // The worker returned with INIT and GETATTR answered, the SETLKW still waiting.
    let used = used_entries(&queue);
    let ids: Vec<u32> = used.iter().map(|e| e.0).collect();
    assert_eq!(ids, vec![0, 4], "used entries {used:?}");
    release.send(()).unwrap();
    wait_used(&queue, 3, Duration::from_secs(10), "SETLKW never completed");
    let (id, len) = used_entries(&queue)[2];
    assert_eq!(id, 2);
    assert_eq!(len, 16, "SETLKW answered with a bare header");
}

#[test]
fn oversized_queue_count_is_lowered() {
    let config = DeviceConfig {
        max_request_queues: 1000,
        ..DeviceConfig::default()
    };
    let Session {
        mut frontend,
        daemon,
        _dir,
        ..
    } = serve_and_negotiate(config, 64);
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
    let queue = MockSplitQueue::new(&mem, QUEUE_SIZE);
    let ((backend, release), vring) = device_over(&mem, &queue, blocking_backend);
    add_requests(&mem, &queue, &[init_request(1), setlkw_request(0, 0, 0)]);
    kick(&backend, &vring, 1);
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
