//! virtiofsd-compatible extended attribute name mapping (`--xattrmap`). Work in progress.

use std::ffi::{CStr, CString};
use std::io;

/// Error parsing an `--xattrmap` specification.
#[derive(Debug, thiserror::Error)]
#[error("invalid xattrmap: {0}")]
pub struct ParseError(String);

/// A parsed set of xattr mapping rules.
#[derive(Clone, Debug, Default)]
pub struct XattrMap {
    _rules: Vec<()>,
}

/// Parses an `--xattrmap` specification.
pub fn parse(spec: &str) -> Result<XattrMap, ParseError> {
    let _ = spec;
    Ok(XattrMap::default())
}

impl XattrMap {
    /// Maps a name from the guest to the host name, or refuses it with an errno.
    pub fn guest_to_host(&self, name: &CStr) -> io::Result<CString> {
        Ok(name.to_owned())
    }

    /// Maps a host name to the guest; `None` hides it from the guest.
    pub fn host_to_guest(&self, name: &CStr) -> Option<CString> {
        Some(name.to_owned())
    }
}
