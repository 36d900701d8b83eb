//! `vhostfs`: a virtio-fs vhost-user daemon, a drop-in for virtiofsd.

fn main() {
    std::process::exit(vhostfs::daemon::main());
}
