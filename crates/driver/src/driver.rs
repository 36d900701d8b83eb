//! The vhost-user frontend: handshake, queue setup, submit, kick and wait.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use vhost::vhost_user::message::VhostUserHeaderFlag;
use vhost::vhost_user::{Frontend, VhostUserFrontend, VhostUserProtocolFeatures};
use vhost::{VhostBackend, VringConfigData};

use crate::chain::ChainBuilder;
use crate::mem::{Arena, GuestMem};
use crate::vring::{Descriptor, QueueLayout, Vring};
use crate::{Error, Result};

/// `VIRTIO_F_VERSION_1`.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// `VIRTIO_RING_F_INDIRECT_DESC`.
pub const VIRTIO_RING_F_INDIRECT_DESC: u64 = 1 << 28;
/// `VIRTIO_RING_F_EVENT_IDX`.
pub const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;
/// `VHOST_USER_F_PROTOCOL_FEATURES`.
pub const VHOST_USER_F_PROTOCOL_FEATURES: u64 = 1 << 30;

/// Index of the virtio-fs high-priority queue (FORGET, BATCH_FORGET, INTERRUPT).
pub const HIPRIO_QUEUE: usize = 0;
/// Index of the first virtio-fs request queue.
pub const REQUEST_QUEUE: usize = 1;

/// Bytes at the end of guest memory left to tests ([`Driver::scratch`]).
pub const SCRATCH_LEN: u64 = 1 << 20;

/// How the driver sets up the device.
#[derive(Clone, Debug)]
pub struct DriverConfig {
    /// Guest RAM size in bytes.
    pub mem_size: usize,
    /// Guest-physical address where guest RAM starts.
    pub gpa_base: u64,
    /// Entries per virtqueue (power of two).
    pub queue_size: u16,
    /// Number of request queues to set up (the hiprio queue is always set up too).
    pub request_queues: usize,
    /// Offer `VIRTIO_RING_F_INDIRECT_DESC` (accepted only if the backend offers it).
    pub indirect: bool,
    /// Offer `VIRTIO_RING_F_EVENT_IDX` (accepted only if the backend offers it).
    pub event_idx: bool,
    /// Default time to wait for a reply.
    pub timeout: Duration,
    /// Number of memfd regions guest RAM is split into (adjacent in guest-physical space).
    pub mem_regions: usize,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            mem_size: 64 << 20,
            gpa_base: 0,
            queue_size: 256,
            request_queues: 1,
            indirect: true,
            event_idx: false,
            timeout: Duration::from_secs(5),
            mem_regions: 1,
        }
    }
}

/// A completed chain: what the device put in the used ring and the bytes it wrote.
#[derive(Clone, Debug)]
pub struct Completion {
    /// Head descriptor index.
    pub head: u16,
    /// `len` of the used-ring entry.
    pub used_len: u32,
    /// The first `used_len` bytes of the chain's writable buffers (fewer if the buffers are
    /// shorter or lie outside guest memory).
    pub data: Vec<u8>,
}

/// A connected vhost-user-fs frontend with its guest memory and virtqueues.
pub struct Driver {
    frontend: Frontend,
    mem: GuestMem,
    queues: Vec<Vring>,
    features: u64,
    protocol_features: VhostUserProtocolFeatures,
    queue_num: u64,
    unique: u64,
    timeout: Duration,
}

impl Driver {
    /// Connects to the backend listening on `socket` and sets up the device.
    pub fn connect(socket: impl AsRef<Path>, cfg: DriverConfig) -> Result<Self> {
        let nq = 1 + cfg.request_queues.max(1);
        let frontend = Frontend::connect(socket, nq as u64)?;
        Self::setup(frontend, cfg)
    }

    /// Sets up the device over an already connected frontend endpoint.
    pub fn setup(mut frontend: Frontend, cfg: DriverConfig) -> Result<Self> {
        let nq = 1 + cfg.request_queues.max(1);
        let ring_bytes = QueueLayout::bytes_needed(cfg.queue_size);
        let rings_total = ring_bytes * nq as u64;
        let mem_size = cfg.mem_size as u64;
        if mem_size < rings_total + SCRATCH_LEN + (2 << 20) {
            return Err(Error::Config(format!(
                "guest memory of {mem_size} bytes too small for {nq} queues"
            )));
        }
        let mem = GuestMem::with_regions(cfg.gpa_base, cfg.mem_size, cfg.mem_regions)?;

        frontend.set_owner()?;
        let offered = frontend.get_features()?;
        let mut want = VIRTIO_F_VERSION_1 | VHOST_USER_F_PROTOCOL_FEATURES;
        if cfg.indirect {
            want |= VIRTIO_RING_F_INDIRECT_DESC;
        }
        if cfg.event_idx {
            want |= VIRTIO_RING_F_EVENT_IDX;
        }
        let features = offered & want;
        if features & VIRTIO_F_VERSION_1 == 0 || features & VHOST_USER_F_PROTOCOL_FEATURES == 0 {
            return Err(Error::Config(format!(
                "backend offers features {offered:#x} without VERSION_1/PROTOCOL_FEATURES"
            )));
        }
        let pf_offered = frontend.get_protocol_features()?;
        let pf = pf_offered
            & (VhostUserProtocolFeatures::MQ
                | VhostUserProtocolFeatures::REPLY_ACK
                | VhostUserProtocolFeatures::CONFIG);
        frontend.set_protocol_features(pf)?;
        let queue_num = if pf.contains(VhostUserProtocolFeatures::MQ) {
            frontend.get_queue_num()?
        } else {
            nq as u64
        };
        if queue_num < nq as u64 {
            return Err(Error::Config(format!(
                "backend supports {queue_num} queues, {nq} wanted"
            )));
        }
        frontend.set_features(features)?;
        if pf.contains(VhostUserProtocolFeatures::REPLY_ACK) {
            frontend.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
        }
        frontend.set_mem_table(&mem.region_infos()?)?;

        // Rings first, then one arena per queue: the hiprio queue gets a small one.
        let arenas_start = cfg.gpa_base + rings_total.div_ceil(4096) * 4096;
        // The last MiB is scratch space for tests that lay out memory themselves.
        let scratch = mem.end() - SCRATCH_LEN;
        let arenas_len = scratch - arenas_start;
        let hiprio_len = (arenas_len / 16).min(1 << 20);
        let per_req = (arenas_len - hiprio_len) / (nq as u64 - 1);
        let mut queues = Vec::with_capacity(nq);
        for q in 0..nq {
            let layout = QueueLayout::at(cfg.gpa_base + ring_bytes * q as u64, cfg.queue_size);
            let arena = if q == HIPRIO_QUEUE {
                Arena::new(arenas_start, hiprio_len)
            } else {
                Arena::new(
                    arenas_start + hiprio_len + per_req * (q as u64 - 1),
                    per_req,
                )
            };
            let vring = Vring::new(q, layout, arena, &mem)?;
            frontend.set_vring_num(q, cfg.queue_size)?;
            frontend.set_vring_base(q, 0)?;
            frontend.set_vring_addr(
                q,
                &VringConfigData {
                    queue_max_size: cfg.queue_size,
                    queue_size: cfg.queue_size,
                    flags: 0,
                    desc_table_addr: mem.host_addr(layout.desc)?,
                    used_ring_addr: mem.host_addr(layout.used)?,
                    avail_ring_addr: mem.host_addr(layout.avail)?,
                    log_addr: None,
                },
            )?;
            frontend.set_vring_call(q, &vring.call)?;
            frontend.set_vring_kick(q, &vring.kick)?;
            frontend.set_vring_enable(q, true)?;
            queues.push(vring);
        }
        Ok(Self {
            frontend,
            mem,
            queues,
            features,
            protocol_features: pf,
            queue_num,
            unique: 0,
            timeout: cfg.timeout,
        })
    }

    /// Virtio feature bits negotiated.
    pub fn features(&self) -> u64 {
        self.features
    }

    /// vhost-user protocol features negotiated.
    pub fn protocol_features(&self) -> VhostUserProtocolFeatures {
        self.protocol_features
    }

    /// Number of queues the backend reported.
    pub fn backend_queue_num(&self) -> u64 {
        self.queue_num
    }

    /// The guest memory.
    pub fn mem(&self) -> &GuestMem {
        &self.mem
    }

    /// GPA and length of the scratch area at the end of guest memory, which the driver
    /// never allocates from: tests may place requests there themselves.
    pub fn scratch(&self) -> (u64, u64) {
        (self.mem.end() - SCRATCH_LEN, SCRATCH_LEN)
    }

    /// The vhost-user frontend endpoint, for raw protocol messages.
    pub fn frontend(&mut self) -> &mut Frontend {
        &mut self.frontend
    }

    /// Raw fd of the vhost-user socket.
    pub fn socket_fd(&self) -> i32 {
        self.frontend.as_raw_fd()
    }

    /// Queue `q`'s state.
    pub fn queue(&self, q: usize) -> Result<&Vring> {
        self.queues.get(q).ok_or_else(|| no_queue(q))
    }

    /// Queue `q`'s state, mutably.
    pub fn queue_mut(&mut self, q: usize) -> Result<&mut Vring> {
        self.queues.get_mut(q).ok_or_else(|| no_queue(q))
    }

    /// Guest memory and queue `q`'s state, mutably (borrowed together).
    fn mem_and_queue(&mut self, q: usize) -> Result<(&GuestMem, &mut Vring)> {
        let Self { mem, queues, .. } = self;
        let vq = queues.get_mut(q).ok_or_else(|| no_queue(q))?;
        Ok((mem, vq))
    }

    /// Default reply timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Changes the default reply timeout.
    pub fn set_timeout(&mut self, t: Duration) {
        self.timeout = t;
    }

    /// A fresh FUSE `unique` value.
    pub fn next_unique(&mut self) -> u64 {
        self.unique += 2;
        self.unique
    }

    /// Places `chain` on queue `q` and makes it available, without kicking.
    pub fn submit_nokick(&mut self, q: usize, chain: &ChainBuilder) -> Result<u16> {
        let (mem, vq) = self.mem_and_queue(q)?;
        let (head, inflight) = chain.place(mem, vq)?;
        vq.track(head, inflight);
        vq.push_avail(mem, head)?;
        Ok(head)
    }

    /// Places `chain` on queue `q`, makes it available and kicks.
    pub fn submit(&mut self, q: usize, chain: &ChainBuilder) -> Result<u16> {
        let head = self.submit_nokick(q, chain)?;
        self.kick(q)?;
        Ok(head)
    }

    /// Notifies the device that queue `q` has new buffers.
    pub fn kick(&self, q: usize) -> Result<()> {
        self.queue(q)?.kick()
    }

    /// Writes descriptor `i` of queue `q`'s table verbatim (not tracked).
    pub fn write_desc(&self, q: usize, i: u16, d: &Descriptor) -> Result<()> {
        self.queue(q)?.write_desc(&self.mem, i, d)
    }

    /// Puts an arbitrary head index in the avail ring of `q` (not tracked) and kicks.
    pub fn push_avail_raw(&mut self, q: usize, head: u16) -> Result<()> {
        let (mem, vq) = self.mem_and_queue(q)?;
        vq.push_avail(mem, head)?;
        vq.kick()
    }

    /// Collects new used-ring entries of `q` without waiting; returns how many arrived.
    pub fn collect(&mut self, q: usize) -> Result<usize> {
        let (mem, vq) = self.mem_and_queue(q)?;
        vq.collect(mem)
    }

    /// Publishes an arbitrary `avail->idx` for `q` (not kicked).
    pub fn set_avail_idx_raw(&mut self, q: usize, idx: u16) -> Result<()> {
        let (mem, vq) = self.mem_and_queue(q)?;
        vq.set_avail_idx_raw(mem, idx)
    }

    /// Whether the backend closed the vhost-user connection.
    pub fn backend_hung_up(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.frontend.as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: `pfd` is a valid pollfd array of length 1; timeout 0 does not block.
        let r = unsafe { libc::poll(&mut pfd, 1, 0) };
        r > 0 && pfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
    }

    /// Waits up to `timeout` for chain `head` of queue `q` to come back.
    /// `Ok(None)` means it did not; it stays in flight (see [`Driver::abandon_all`]).
    pub fn wait(&mut self, q: usize, head: u16, timeout: Duration) -> Result<Option<Completion>> {
        let deadline = Instant::now() + timeout;
        loop {
            let (mem, vq) = self.mem_and_queue(q)?;
            vq.collect(mem)?;
            if let Some((elem, inflight)) = vq.take_done(head) {
                let data = read_writable(mem, &inflight.writable, elem.len);
                return Ok(Some(Completion {
                    head,
                    used_len: elem.len,
                    data,
                }));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            wait_eventfd(
                vq.call.as_raw_fd(),
                (deadline - now).min(Duration::from_millis(20)),
            );
        }
    }

    /// Waits until nothing is in flight on `q` or `timeout` passes; returns what is left.
    pub fn drain(&mut self, q: usize, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let (mem, vq) = self.mem_and_queue(q)?;
            vq.collect(mem)?;
            let heads: Vec<u16> = (0..vq.layout.size).filter(|h| vq.is_done(*h)).collect();
            for h in heads {
                vq.take_done(h);
            }
            if vq.in_flight() == 0 || Instant::now() >= deadline {
                return Ok(vq.in_flight());
            }
            wait_eventfd(vq.call.as_raw_fd(), Duration::from_millis(20));
        }
    }

    /// Submits, kicks and waits with the default timeout.
    pub fn roundtrip(&mut self, q: usize, chain: &ChainBuilder) -> Result<Option<Completion>> {
        let t = self.timeout;
        self.roundtrip_timeout(q, chain, t)
    }

    /// Submits, kicks and waits up to `timeout`.
    pub fn roundtrip_timeout(
        &mut self,
        q: usize,
        chain: &ChainBuilder,
        timeout: Duration,
    ) -> Result<Option<Completion>> {
        let head = self.submit(q, chain)?;
        self.wait(q, head, timeout)
    }

    /// Forgets everything in flight on `q` and frees all descriptors and buffers. Only safe
    /// once the device has moved past those chains (e.g. a later request was answered).
    pub fn abandon_all(&mut self, q: usize) -> Result<usize> {
        Ok(self.queue_mut(q)?.abandon_all())
    }

    /// Sends `VHOST_USER_GET_VRING_BASE` for `q` (which stops the ring in the backend).
    pub fn get_vring_base(&mut self, q: usize) -> Result<u32> {
        Ok(self.frontend.get_vring_base(q)?)
    }
}

/// The error for a queue index the device does not have.
fn no_queue(q: usize) -> Error {
    Error::Config(format!("no queue {q}"))
}

/// Reads up to `len` bytes from the writable segments, stopping at the first one that is
/// not in guest memory.
fn read_writable(mem: &GuestMem, segs: &[(u64, u32)], len: u32) -> Vec<u8> {
    let mut left = len as usize;
    let mut out = Vec::with_capacity(left.min(1 << 20));
    for &(addr, seg_len) in segs {
        if left == 0 {
            break;
        }
        let n = left.min(seg_len as usize);
        let mut buf = vec![0u8; n];
        if mem.read(addr, &mut buf).is_err() {
            break;
        }
        out.extend_from_slice(&buf);
        left -= n;
    }
    out
}

/// Blocks until `fd` (an eventfd) is readable or `timeout` passes, then drains it.
fn wait_eventfd(fd: i32, timeout: Duration) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(timeout.as_millis())
        .unwrap_or(i32::MAX)
        .max(1);
    // SAFETY: `pfd` is a valid pollfd array of length 1 that outlives the call.
    let r = unsafe { libc::poll(&mut pfd, 1, ms) };
    if r > 0 {
        let mut v = 0u64;
        // SAFETY: reading 8 bytes into a valid u64 from a nonblocking eventfd we own.
        let _ = unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
    }
}
