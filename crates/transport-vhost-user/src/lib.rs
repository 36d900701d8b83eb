//! The vhost-user-fs device backend: serves FUSE requests arriving on virtqueues.
//!
//! A VMM (QEMU, cloud-hypervisor, ...) connects to a Unix socket, shares the guest's memory
//! and hands over the virtqueues of a `vhost-user-fs` device. Queue 0 is the high-priority
//! queue (FORGET, INTERRUPT); queues 1..=N carry ordinary requests. Every queue has a worker
//! thread of its own, which pops descriptor chains, turns them into a
//! [`RequestReader`](vhostfs_server::RequestReader) and a
//! [`ReplyWriter`](vhostfs_server::ReplyWriter) over guest memory ([`descriptor`]), lets the
//! [`Server`] answer, and puts the chain on the used ring. Requests that may block for long
//! (SETLKW) run on threads of their own so that they never stall a queue; with a thread pool
//! configured, ordinary requests of the request queues run on the pool.
//!
//! [`serve`] handles one frontend connection and returns when it goes away.

pub mod descriptor;
mod device;
mod pool;

use std::os::unix::net::UnixListener;
use std::sync::Arc;

use vhost::vhost_user::{Error as VhostUserError, Listener};
use vhost_user_backend::{Error as DaemonError, VhostUserDaemon};
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};

use vhostfs_server::{FileSystem, Server};

use crate::device::{FsBackend, TAG_LEN};

/// Most request queues a device can offer: the library maps queues to threads with a 64-bit
/// mask, and queue 0 is the high-priority queue.
pub const MAX_REQUEST_QUEUES: usize = 63;

/// Largest virtqueue size the virtio spec allows for split queues.
pub const MAX_QUEUE_SIZE: usize = 32768;

/// Device settings a VMM cannot change.
#[derive(Clone, Debug)]
pub struct DeviceConfig {
    /// Mount tag reported in the device config space (when the frontend asks for it). When
    /// set, the CONFIG protocol feature is offered; at most 36 bytes.
    pub tag: Option<String>,
    /// Most request queues offered (besides the hiprio queue), at least 1. [`serve`] offers
    /// at most [`MAX_REQUEST_QUEUES`] (a larger value is lowered, with a warning).
    pub max_request_queues: usize,
    /// Largest queue size accepted: a power of two, at most [`MAX_QUEUE_SIZE`].
    pub max_queue_size: usize,
    /// Worker threads shared by all request queues; 0 serves each queue on its own thread
    /// only.
    pub thread_pool_size: usize,
}

impl Default for DeviceConfig {
    /// No tag, 16 request queues, queues of up to 1024 entries, no thread pool.
    fn default() -> Self {
        Self {
            tag: None,
            max_request_queues: 16,
            max_queue_size: 1024,
            thread_pool_size: 0,
        }
    }
}

impl DeviceConfig {
    /// Checks the settings: at least one request queue, queue size within the limits, tag not
    /// too long.
    pub fn validate(&self) -> Result<(), Error> {
        if self.max_request_queues == 0 {
            return Err(Error::Config("at least one request queue is needed".into()));
        }
        if !self.max_queue_size.is_power_of_two() || self.max_queue_size > MAX_QUEUE_SIZE {
            return Err(Error::Config(format!(
                "queue size must be a power of two up to {MAX_QUEUE_SIZE}, not {}",
                self.max_queue_size
            )));
        }
        if let Some(tag) = &self.tag {
            if tag.is_empty() || tag.len() > TAG_LEN {
                return Err(Error::Config(format!(
                    "tag must be 1..={TAG_LEN} bytes, not {}",
                    tag.len()
                )));
            }
        }
        Ok(())
    }
}

/// Errors of the vhost-user device.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Setting up or running the vhost-user daemon failed.
    #[error("vhost-user: {0}")]
    VhostUser(String),
    /// The device settings are invalid.
    #[error("invalid device settings: {0}")]
    Config(String),
}

/// Accepts one frontend on `listener` and serves it until it disconnects.
///
/// Returns `Ok(())` when the frontend goes away (the VM shut down or the VMM closed the
/// socket), like virtiofsd, which then exits with status 0. The server's session is reset
/// ([`Server::reset`], which calls [`FileSystem::destroy`]) before returning, since the
/// guest's inodes and handles are gone with the connection.
pub fn serve<F: FileSystem + 'static>(
    server: Arc<Server<F>>,
    listener: UnixListener,
    config: DeviceConfig,
) -> Result<(), Error> {
    config.validate()?;
    let mut config = config;
    if config.max_request_queues > MAX_REQUEST_QUEUES {
        tracing::warn!(
            "offering {MAX_REQUEST_QUEUES} request queues, not {} (the most this device supports)",
            config.max_request_queues
        );
        config.max_request_queues = MAX_REQUEST_QUEUES;
    }
    let mem = GuestMemoryAtomic::new(GuestMemoryMmap::<()>::new());
    let backend = FsBackend::new(Arc::clone(&server), config, mem.clone())
        .map_err(|e| Error::VhostUser(format!("cannot start worker threads: {e}")))?;
    let mut daemon = VhostUserDaemon::new("vhostfs".to_string(), Arc::new(backend), mem)
        .map_err(|e| Error::VhostUser(e.to_string()))?;
    let mut listener = Listener::from(listener);
    daemon
        .start(&mut listener)
        .map_err(|e| Error::VhostUser(e.to_string()))?;
    let result = match daemon.wait() {
        Ok(()) => Ok(()),
        Err(DaemonError::HandleRequest(
            VhostUserError::Disconnected | VhostUserError::PartialMessage,
        )) => Ok(()),
        Err(e) => Err(Error::VhostUser(e.to_string())),
    };
    // Stops and joins the queue worker threads.
    drop(daemon);
    server.reset();
    result
}

#[cfg(test)]
mod tests;
