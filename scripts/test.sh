#!/usr/bin/env bash
# The whole vhostfs test suite, as CI runs it (.ci/run calls exactly this).
# Installs what it needs on a fresh Debian 12 machine, then runs, in order: formatting and lint
# checks, unit/property/host-mount/hostile-driver tests (cargo test), the QEMU guest end-to-end
# suite, and every fuzz target for a bounded time.
#   VHOSTFS_FUZZ_SECONDS=N   seconds per fuzz target (default 60; 0 skips fuzzing)
#   VHOSTFS_SKIP_E2E=1       skip the guest suite (for quick local runs)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
start=$(date +%s)
step() { printf '\n==== %s (+%ss)\n' "$*" "$(( $(date +%s) - start ))"; }

step "system packages"
./scripts/install-deps.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo test (unit, property, host /dev/fuse mount, hostile vhost-user driver)"
cargo test --workspace 2>&1 | tee target/cargo-test.log
grep -q '^test result: ' target/cargo-test.log

if [ "${VHOSTFS_SKIP_E2E:-0}" != 1 ]; then
    step "guest end-to-end suite (QEMU + Linux 6.12 guest)"
    cargo build --quiet --bin vhostfs
    ./tests/e2e/setup.sh
    # Spelled out although they are the defaults: the whole guest suite runs under the full
    # sandbox with seccomp=kill, which proves the syscall allow-list complete.
    ./tests/e2e/run.sh --daemon target/debug/vhostfs --daemon-args "--sandbox=namespace --seccomp=kill"
fi

fuzz_seconds=${VHOSTFS_FUZZ_SECONDS:-60}
if [ "$fuzz_seconds" != 0 ]; then
    step "fuzzing (${fuzz_seconds}s per target)"
    ./fuzz/run.sh "$fuzz_seconds"
fi

step "all suites passed"
