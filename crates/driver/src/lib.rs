//! A vhost-user-fs *frontend* for tests: it connects to a backend socket the way a VMM does,
//! lays out split virtqueues by hand in memfd-backed "guest" memory, and sends FUSE requests as
//! descriptor chains of any shape — well-formed, or deliberately hostile.
//!
//! * [`mem`]: the guest memory region shared with the backend.
//! * [`vring`]: split-queue layout and driver-side bookkeeping (no validation on purpose).
//! * [`chain`]: [`ChainBuilder`], to build any descriptor chain.
//! * [`driver`]: [`Driver`], the vhost-user handshake, submit/kick/wait.
//! * [`fuse`]: FUSE request encoding, reply parsing and typed helpers (`init`, `lookup`, ...).
//! * [`hostile`]: a catalogue of malformed inputs and the outcome each one produced.
//! * [`daemon`]: spawning and watching a backend process (vhostfs or virtiofsd) for tests.
//!
//! ```no_run
//! use vhostfs_driver::{ChainBuilder, Driver, DriverConfig, Next};
//! use vhostfs_driver::driver::REQUEST_QUEUE;
//! use vhostfs_driver::fuse::encode;
//! use vhostfs_fuse_abi::opcode;
//!
//! let mut d = Driver::connect("/tmp/vfs.sock", DriverConfig::default())?;
//! d.init()?;
//! let root = d.getattr(1)?;
//! // A GETATTR split mid-header, with a descriptor that loops back to the head.
//! let req = encode(opcode::GETATTR, d.next_unique(), 1, &[&[0u8; 16]]);
//! let chain = ChainBuilder::new()
//!     .readable_split(&req, &[3, 17])
//!     .writable(256)
//!     .set_flags(3, vhostfs_driver::vring::VRING_DESC_F_WRITE | vhostfs_driver::vring::VRING_DESC_F_NEXT)
//!     .set_next(3, Next::Rel(0));
//! let head = d.submit(REQUEST_QUEUE, &chain)?;
//! let answer = d.wait(REQUEST_QUEUE, head, std::time::Duration::from_millis(300))?;
//! // `answer` is None if the backend dropped the chain; it must still answer this:
//! d.getattr(1)?;
//! # let _ = (root, answer);
//! # Ok::<(), vhostfs_driver::Error>(())
//! ```

#![warn(missing_docs)]

pub mod chain;
pub mod daemon;
pub mod driver;
pub mod fuse;
pub mod hostile;
pub mod mem;
pub mod vring;

pub use chain::{ChainBuilder, Next};
pub use driver::{Completion, Driver, DriverConfig};
pub use fuse::Reply;

/// Everything that can go wrong while driving a backend.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The backend answered the FUSE request with this (positive) errno.
    #[error("FUSE error: {}", errno_name(*.0))]
    Errno(i32),
    /// No used-ring entry arrived in time.
    #[error("timed out waiting for the backend")]
    Timeout,
    /// A used entry came back, but the reply in it is not a valid FUSE reply.
    #[error("malformed reply: {0}")]
    BadReply(String),
    /// vhost-user protocol failure (socket closed, backend refused a message, ...).
    #[error("vhost-user: {0}")]
    Vhost(vhost::Error),
    /// Guest-memory access or allocation failure in the driver.
    #[error("guest memory: {0}")]
    Mem(String),
    /// Not enough free descriptors for the chain.
    #[error("queue full: need {need} descriptors, {free} free")]
    QueueFull {
        /// Descriptors the chain needs.
        need: usize,
        /// Descriptors currently free.
        free: usize,
    },
    /// A backend process could not be started.
    #[error("backend: {0}")]
    Spawn(String),
    /// Invalid use of the driver itself.
    #[error("driver configuration: {0}")]
    Config(String),
    /// Host I/O error (eventfds, memfd, process inspection).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl From<vhost::Error> for Error {
    fn from(e: vhost::Error) -> Self {
        Error::Vhost(e)
    }
}

/// `"ENOENT (No such file or directory)"`-style text for an errno.
pub fn errno_name(e: i32) -> String {
    format!("errno {e} ({})", std::io::Error::from_raw_os_error(e))
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, Error>;
