//! Guest/host uid and gid translation (`--translate-uid`, `--translate-gid`). Work in progress.

/// A uid/gid translation table.
#[derive(Clone, Debug, Default)]
pub struct IdMap {
    _p: (),
}

impl IdMap {
    /// Translates a guest uid to a host uid; `Err(EPERM)` when the guest id is forbidden.
    pub fn guest_to_host_uid(&self, uid: u32) -> std::io::Result<u32> {
        Ok(uid)
    }
    /// Translates a guest gid to a host gid; `Err(EPERM)` when the guest id is forbidden.
    pub fn guest_to_host_gid(&self, gid: u32) -> std::io::Result<u32> {
        Ok(gid)
    }
    /// Translates a host uid to a guest uid.
    pub fn host_to_guest_uid(&self, uid: u32) -> u32 {
        uid
    }
    /// Translates a host gid to a guest gid.
    pub fn host_to_guest_gid(&self, gid: u32) -> u32 {
        gid
    }
}
