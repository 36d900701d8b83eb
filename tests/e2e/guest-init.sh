#!/bin/busybox sh
# /init of the e2e initramfs. Loads the virtio/9p/virtiofs modules, mounts the host's / (9p,
# read-only) and switch_roots into it, then runs the suite's guest runner from the host tree
# (tests/e2e/guest-run.sh, found through the e2e_runner= kernel parameter) as PID 1.
/bin/busybox mkdir -p /bin /proc /sys /dev /newroot
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules.order); do
    insmod "$m" 2>/dev/null || echo "e2e-init: insmod $m failed"
done
runner=
for arg in $(cat /proc/cmdline); do
    case "$arg" in
    e2e_runner=*) runner=${arg#e2e_runner=} ;;
    esac
done
die() {
    echo "e2e-init: $*"
    echo "E2E-GUEST-EXIT 99"
    echo o >/proc/sysrq-trigger
    sleep 10
}
# The virtio devices may take a moment to appear.
i=0
until mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /newroot 2>/dev/null; do
    i=$((i + 1))
    [ $i -lt 50 ] || die "cannot mount the host root over 9p"
    sleep 0.1
done
for d in proc sys dev; do
    mount --move /$d /newroot/$d || die "cannot move /$d"
done
[ -n "$runner" ] || die "no e2e_runner= on the kernel command line"
exec switch_root /newroot /bin/bash "$runner"
