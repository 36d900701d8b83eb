#!/usr/bin/env bash
# The main job, on a fresh Debian 12 machine: installs what it needs, builds vhostfs, boots a
# Linux 6.12 guest in QEMU whose virtio-fs share is served by vhostfs (default sandbox and
# seccomp), and shows the guest listing and using the share.
set -euo pipefail
cd "$(dirname "$0")/.."

VHOSTFS_WITH_VIRTIOFSD=0 ./scripts/install-deps.sh
cargo build --release --bin vhostfs
./tests/e2e/setup.sh

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
./tests/e2e/run.sh --daemon target/release/vhostfs --keep demo | tee "$log" || status=$?
run_dir=$(sed -n 's/.* run dir \(.*\)$/\1/p' "$log" | head -1)
if [ -n "$run_dir" ] && [ -f "$run_dir/guest1/demo.log" ]; then
    echo
    echo "---- what the guest saw (from $run_dir/guest1/demo.log)"
    cat "$run_dir/guest1/demo.log"
fi
exit "$status"
