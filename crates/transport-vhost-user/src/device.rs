//! The vhost-user-fs device: queue workers that pop descriptor chains, hand them to the
//! request server, and put the replies on the used ring.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tracing::{debug, trace, warn};
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost_user_backend::{VhostUserBackend, VringRwLock, VringT};
use virtio_bindings::bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::bindings::virtio_ring::{
    VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};
use virtio_queue::{DescriptorChain, QueueT};
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

use vhostfs_server::{request_may_block, FileSystem, ReplyWriter, Server};

use crate::descriptor::ChainBuffers;
use crate::pool::{BlockingRunner, Job, ThreadPool};
use crate::DeviceConfig;

/// Guest memory as the vhost-user library maps it (no dirty-page bitmap yet).
pub(crate) type Mem = GuestMemoryMmap<()>;
/// The shared, replaceable guest memory map.
pub(crate) type AtomicMem = GuestMemoryAtomic<Mem>;
/// One virtqueue with its kick/call eventfds.
pub(crate) type Vring = VringRwLock<AtomicMem>;

/// Size of the virtio-fs config space: `tag[36]` then `num_request_queues: le32`.
const CONFIG_SPACE_LEN: usize = 40;
/// Length of the tag field in the config space.
pub(crate) const TAG_LEN: usize = 36;
/// Bytes of the FUSE request header (`fuse_in_header`).
const IN_HEADER_LEN: usize = 40;
/// Most threads running requests that may block (SETLKW) at once.
const MAX_BLOCKING_THREADS: usize = 256;
/// Index of the high-priority queue (FORGET, INTERRUPT).
const HIPRIO_QUEUE: usize = 0;

/// The vhost-user backend of the virtio-fs device.
pub(crate) struct FsBackend<F: FileSystem> {
    server: Arc<Server<F>>,
    config: DeviceConfig,
    mem: AtomicMem,
    event_idx: AtomicBool,
    /// Per queue: bumped whenever the frontend stops the queue (GET_VRING_BASE, e.g. on a
    /// guest reboot). A request completes only on the same generation of its queue as it was
    /// popped from: a late reply must never land on a stopped ring or on the ring of the
    /// next guest.
    generations: Arc<Vec<AtomicU64>>,
    pool: Option<ThreadPool>,
    blocking: BlockingRunner,
}

impl<F: FileSystem + 'static> FsBackend<F> {
    /// A backend serving `server` with the (already validated) `config`.
    pub(crate) fn new(
        server: Arc<Server<F>>,
        config: DeviceConfig,
        mem: AtomicMem,
    ) -> io::Result<Self> {
        let pool = if config.thread_pool_size > 0 {
            Some(ThreadPool::new(config.thread_pool_size, "vhostfs-pool")?)
        } else {
            None
        };
        let generations = (0..=config.max_request_queues)
            .map(|_| AtomicU64::new(0))
            .collect();
        Ok(Self {
            server,
            config,
            mem,
            event_idx: AtomicBool::new(false),
            generations: Arc::new(generations),
            pool,
            blocking: BlockingRunner::new(MAX_BLOCKING_THREADS),
        })
    }

    /// The device's config space (`struct virtio_fs_config`).
    fn config_space(&self) -> [u8; CONFIG_SPACE_LEN] {
        let mut cfg = [0u8; CONFIG_SPACE_LEN];
        if let Some(tag) = &self.config.tag {
            let tag = tag.as_bytes();
            let n = tag.len().min(TAG_LEN);
            cfg[..n].copy_from_slice(&tag[..n]);
        }
        let nrq = u32::try_from(self.config.max_request_queues).unwrap_or(u32::MAX);
        cfg[TAG_LEN..].copy_from_slice(&nrq.to_le_bytes());
        cfg
    }

    /// Serves every available chain on queue `queue`, honouring EVENT_IDX: with it,
    /// notifications stay off while draining and are re-enabled only when the ring is empty.
    fn process_queue(&self, queue: usize, vring: &Vring) {
        let event_idx = self.event_idx.load(Ordering::Acquire);
        loop {
            if event_idx {
                let mut state = vring.get_mut();
                if !state.get_queue().ready() {
                    return;
                }
                if let Err(e) = state.disable_notification() {
                    warn!(queue, "cannot disable notifications: {e}");
                }
            }
            self.drain(queue, vring);
            if !event_idx {
                break;
            }
            let enabled = {
                let mut state = vring.get_mut();
                if !state.get_queue().ready() {
                    return;
                }
                state.enable_notification()
            };
            match enabled {
                // More chains arrived while notifications were off: go round again.
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    warn!(queue, "cannot enable notifications: {e}");
                    break;
                }
            }
        }
    }

    fn drain(&self, queue: usize, vring: &Vring) {
        // A snapshot of the memory map: it stays mapped as long as this Arc (and the chains
        // and jobs holding clones of it) live, even if the frontend replaces the map.
        let mem: Arc<Mem> = self.mem.memory().into_inner();
        let Some(generation) = self.generations.get(queue) else {
            return;
        };
        loop {
            // Pop and read the generation under the same lock: a chain belongs to the ring
            // generation it was popped from.
            let (chain, gen) = {
                let mut state = vring.get_mut();
                let gen = generation.load(Ordering::Acquire);
                (
                    state.get_queue_mut().pop_descriptor_chain(Arc::clone(&mem)),
                    gen,
                )
            };
            let Some(chain) = chain else {
                break;
            };
            let done = Completion {
                vring: vring.clone(),
                generations: Arc::clone(&self.generations),
                queue,
                gen,
            };
            self.dispatch(queue, done, &mem, chain);
        }
    }

    /// Runs one chain inline, on the pool, or on a thread of its own (requests that may
    /// block).
    fn dispatch(
        &self,
        queue: usize,
        done: Completion,
        mem: &Arc<Mem>,
        chain: DescriptorChain<Arc<Mem>>,
    ) {
        let head = chain.head_index();
        trace!(queue, head, "request popped");
        let bufs = match ChainBuffers::new(chain) {
            Ok(bufs) => bufs,
            Err(e) => {
                warn!(queue, head, "dropping request: {e}");
                done.complete(head, 0);
                return;
            }
        };
        // The hiprio queue (FORGET, INTERRUPT) is always served inline: its requests are quick
        // and must not wait behind ordinary ones.
        let blocking = queue != HIPRIO_QUEUE && may_block(mem, &bufs);
        if queue == HIPRIO_QUEUE || (!blocking && self.pool.is_none()) {
            let len = run_request(&self.server, mem, &bufs);
            done.complete(head, len);
            return;
        }

        let server = Arc::clone(&self.server);
        let job_mem = Arc::clone(mem);
        let job: Job = Box::new(move || {
            let len = run_request(&server, &job_mem, &bufs);
            done.complete(head, len);
        });
        let handed_over = if blocking {
            debug!(queue, head, "running a blocking request on its own thread");
            self.blocking.spawn(job).inspect_err(|_| {
                warn!(queue, "too many blocking requests; running one inline");
            })
        } else if let Some(pool) = &self.pool {
            pool.execute(job)
        } else {
            Err(job)
        };
        if let Err(job) = handed_over {
            job();
        }
    }
}

/// True when the request in `bufs` may block for long (its header says SETLKW, ...).
fn may_block(mem: &Mem, bufs: &ChainBuffers) -> bool {
    let Ok(reader) = bufs.reader(mem) else {
        return false;
    };
    let mut header = [0u8; IN_HEADER_LEN];
    let n = reader.peek(&mut header);
    request_may_block(&header[..n])
}

/// Serves the request in `bufs` and returns the reply length for the used ring (0 when the
/// chain is unusable, the request takes no reply, or the reply could not be written).
fn run_request<F: FileSystem>(server: &Server<F>, mem: &Mem, bufs: &ChainBuffers) -> u32 {
    let mut reader = match bufs.reader(mem) {
        Ok(r) => r,
        Err(e) => {
            warn!("dropping request: {e}");
            return 0;
        }
    };
    let mut writer = match bufs.writer(mem) {
        Ok(w) => w,
        Err(e) => {
            warn!("dropping request: {e}");
            return 0;
        }
    };
    match server.handle_message(&mut reader, &mut writer) {
        Ok(_) => u32::try_from(writer.bytes_written()).unwrap_or(0),
        Err(e) => {
            warn!("cannot reply to request: {e}");
            0
        }
    }
}

/// Where and when a popped chain may be completed: its queue, and the queue's generation at
/// pop time.
struct Completion {
    vring: Vring,
    generations: Arc<Vec<AtomicU64>>,
    queue: usize,
    gen: u64,
}

impl Completion {
    /// Puts `head` on the used ring with `len` reply bytes and signals the guest if it wants
    /// to be told (EVENT_IDX). Does nothing if the queue was stopped since the chain was
    /// popped (the guest that sent it is gone).
    fn complete(&self, head: u16, len: u32) {
        trace!(queue = self.queue, head, len, "request completed");
        let notify = {
            let mut state = self.vring.get_mut();
            let current = self
                .generations
                .get(self.queue)
                .map(|g| g.load(Ordering::Acquire));
            if !state.get_queue().ready() || current != Some(self.gen) {
                debug!(
                    queue = self.queue,
                    head, "queue stopped since the request arrived; reply dropped"
                );
                return;
            }
            if let Err(e) = state.add_used(head, len) {
                warn!(head, "cannot add to the used ring: {e}");
                return;
            }
            state.needs_notification().unwrap_or(true)
        };
        if notify {
            if let Err(e) = self.vring.signal_used_queue() {
                warn!("cannot signal the guest: {e}");
            }
        }
    }
}

impl<F: FileSystem + 'static> VhostUserBackend for FsBackend<F> {
    type Bitmap = ();
    type Vring = Vring;

    fn num_queues(&self) -> usize {
        self.config.max_request_queues + 1
    }

    fn max_queue_size(&self) -> usize {
        self.config.max_queue_size
    }

    fn features(&self) -> u64 {
        (1u64 << VIRTIO_F_VERSION_1)
            | (1u64 << VIRTIO_RING_F_INDIRECT_DESC)
            | (1u64 << VIRTIO_RING_F_EVENT_IDX)
            | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        let mut features = VhostUserProtocolFeatures::MQ | VhostUserProtocolFeatures::REPLY_ACK;
        // Without a tag the config space would be useless (an empty tag): leave it to the VMM.
        if self.config.tag.is_some() {
            features |= VhostUserProtocolFeatures::CONFIG;
        }
        features
    }

    fn set_event_idx(&self, enabled: bool) {
        self.event_idx.store(enabled, Ordering::Release);
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        let cfg = self.config_space();
        let (Ok(start), Ok(size)) = (usize::try_from(offset), usize::try_from(size)) else {
            return Vec::new();
        };
        match start.checked_add(size).and_then(|end| cfg.get(start..end)) {
            Some(bytes) => bytes.to_vec(),
            None => Vec::new(),
        }
    }

    fn stop_vring(&self, queue_index: u32) -> io::Result<()> {
        // Called after the library marked the queue not ready: requests still running will
        // see the new generation and drop their replies.
        if let Some(g) = usize::try_from(queue_index)
            .ok()
            .and_then(|i| self.generations.get(i))
        {
            g.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }

    fn reset_device(&self) {
        for g in self.generations.iter() {
            g.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn update_memory(&self, _mem: AtomicMem) -> io::Result<()> {
        // The library replaces the map inside the same `GuestMemoryAtomic` we hold.
        Ok(())
    }

    fn queues_per_thread(&self) -> Vec<u64> {
        // One worker thread per queue: thread i serves queue i.
        (0..self.num_queues()).map(|i| 1u64 << i).collect()
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        new_event_consumer_and_notifier(EventFlag::NONBLOCK | EventFlag::CLOEXEC).ok()
    }

    fn handle_event(
        &self,
        device_event: u16,
        evset: EventSet,
        vrings: &[Vring],
        thread_id: usize,
    ) -> io::Result<()> {
        if evset != EventSet::IN {
            warn!(device_event, "unexpected event set {evset:?}");
            return Ok(());
        }
        // Each thread owns exactly one queue, so the event index is 0 and the queue index is
        // the thread index.
        let Some(vring) = vrings.get(usize::from(device_event)) else {
            warn!(device_event, "event for an unknown queue");
            return Ok(());
        };
        self.process_queue(thread_id, vring);
        Ok(())
    }
}
