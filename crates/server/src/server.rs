//! Request decoding, dispatch to the [`FileSystem`], and reply encoding.

use std::io;

use crate::filesystem::FileSystem;
use crate::io::{ReplyWriter, RequestReader};

/// Settings of the server that do not belong to any one file system.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Largest WRITE payload (and READ size) to negotiate, in bytes.
    pub max_write: u32,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self { max_write: 1 << 20 }
    }
}

/// Serves FUSE requests from any transport against one [`FileSystem`].
pub struct Server<F> {
    fs: F,
    options: ServerOptions,
}

impl<F: FileSystem> Server<F> {
    /// A server for `fs`.
    pub fn new(fs: F, options: ServerOptions) -> Self {
        Self { fs, options }
    }

    /// The file system behind this server.
    pub fn fs(&self) -> &F {
        &self.fs
    }

    /// The options this server was made with.
    pub fn options(&self) -> &ServerOptions {
        &self.options
    }

    /// Handles one request read from `r`, writing its reply (header included) to `w`.
    ///
    /// Returns the number of reply bytes written; 0 when the request takes no reply (FORGET,
    /// BATCH_FORGET, INTERRUPT). Malformed requests get an error reply, never a panic. An
    /// `Err` means only that the reply could not be written (the writer is too small or
    /// failed); the transport should drop the request.
    pub fn handle_message(
        &self,
        r: &mut dyn RequestReader,
        w: &mut dyn ReplyWriter,
    ) -> io::Result<usize> {
        let _ = (r, w);
        Err(io::Error::from_raw_os_error(libc::ENOSYS))
    }
}

/// True when the request whose first bytes are `header` (at least the 40-byte FUSE header)
/// may block for long (SETLKW waiting for a lock, FSYNC, ...), so that a transport should run
/// it where it does not hold up other requests. Unknown or short input gives `false`.
pub fn request_may_block(header: &[u8]) -> bool {
    let _ = header;
    false
}
