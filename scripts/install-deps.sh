#!/usr/bin/env bash
# Installs the system packages vhostfs's build, tests, e2e guests and benchmarks need on a
# Debian 12 machine. Idempotent: does nothing that is already done.
#   VHOSTFS_SKIP_APT=1      skip apt entirely (the packages are known to be there)
#   VHOSTFS_WITH_VIRTIOFSD=0  do not build the reference daemon virtiofsd for side-by-side runs
set -euo pipefail

need_apt=0
for cmd in qemu-system-x86_64 busybox cpio depmod fio fusermount3 setfattr python3 xz; do
    command -v "$cmd" >/dev/null 2>&1 || need_apt=1
done
# QEMU must be 10.x (multiqueue vhost-user-fs); bookworm's own 7.2 is not enough.
if command -v qemu-system-x86_64 >/dev/null 2>&1; then
    qemu-system-x86_64 --version | grep -qE 'version (9|1[0-9])\.' || need_apt=1
fi

if [ "${VHOSTFS_SKIP_APT:-0}" != 1 ] && [ "$need_apt" = 1 ]; then
    export DEBIAN_FRONTEND=noninteractive
    src=/etc/apt/sources.list.d/debian.sources
    if [ -f "$src" ] && ! grep -q 'bookworm-backports' "$src"; then
        sed -i 's/^Suites: bookworm bookworm-updates$/& bookworm-backports/' "$src"
    fi
    apt-get update -q
    apt-get install -y -q -t bookworm-backports qemu-system-x86
    apt-get install -y -q busybox-static cpio kmod fio fuse3 attr acl python3 xz-utils \
        libseccomp-dev libcap-ng-dev
fi

# The reference daemon, for side-by-side hostile tests and benchmarks.
VIRTIOFSD_ROOT=${VIRTIOFSD_ROOT:-/opt/virtiofsd}
if [ "${VHOSTFS_WITH_VIRTIOFSD:-1}" = 1 ] && [ ! -x "$VIRTIOFSD_ROOT/bin/virtiofsd" ]; then
    echo "install-deps: building virtiofsd 1.14.0 into $VIRTIOFSD_ROOT (a few minutes)"
    cargo install --quiet virtiofsd --version 1.14.0 --locked --root "$VIRTIOFSD_ROOT"
fi
