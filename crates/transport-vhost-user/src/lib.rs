//! The vhost-user-fs device backend: serves FUSE requests arriving on virtqueues.
//! Placeholder API; see the crate description.

use std::os::unix::net::UnixListener;
use std::sync::Arc;

use vhostfs_server::{FileSystem, Server};

/// Device settings a VMM cannot change.
#[derive(Clone, Debug)]
pub struct DeviceConfig {
    /// Mount tag reported in the device config space (when the frontend asks for it).
    pub tag: Option<String>,
    /// Most request queues offered (besides the hiprio queue).
    pub max_request_queues: usize,
    /// Largest queue size accepted.
    pub max_queue_size: usize,
    /// Worker threads shared by all queues; 0 serves each queue on its own thread only.
    pub thread_pool_size: usize,
}

/// Errors of the vhost-user device.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Setting up or running the vhost-user daemon failed.
    #[error("vhost-user: {0}")]
    VhostUser(String),
}

/// Accepts one frontend on `listener` and serves it until it disconnects.
pub fn serve<F: FileSystem + 'static>(
    server: Arc<Server<F>>,
    listener: UnixListener,
    config: DeviceConfig,
) -> Result<(), Error> {
    let _ = (server, listener, config);
    Err(Error::VhostUser("not implemented yet".into()))
}
