//! The transport-agnostic FUSE request server.
//!
//! A transport (vhost-user virtqueues, `/dev/fuse`) hands [`Server::handle_message`] a
//! [`RequestReader`] over one request's bytes and a [`ReplyWriter`] over the buffer for its
//! reply. The server decodes and checks the request, calls the [`FileSystem`], and encodes the
//! reply. It knows nothing about virtio, vhost-user or host syscalls.

#![warn(missing_docs)]

pub mod filesystem;
pub mod io;
mod server;
pub mod testing;

pub use filesystem::*;
pub use io::{ReplyWriter, RequestReader, SliceReader, VecWriter, ZeroCopyReader, ZeroCopyWriter};
pub use server::{
    request_may_block, OpCount, Server, ServerOptions, ServerStats, INTERRUPT_SIGNAL,
    MAX_REQUEST_BODY, SERVER_INIT_FLAGS, UNSUPPORTED_INIT_FLAGS,
};
pub use vhostfs_fuse_abi as abi;
