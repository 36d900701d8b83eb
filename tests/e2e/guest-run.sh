#!/bin/bash
# PID 1 of an e2e guest, running from the host's / (9p, read-only). Sets up a writable
# scratch space, mounts the run directory (9p, read-write) and the virtio-fs share at /mnt,
# runs the scenarios listed in the run's env file, records `PASS|FAIL name seconds` lines in
# $RUN_DIR/guest$GUEST_ID/results, and powers the guest off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8

poweroff_now() {
    echo "E2E-GUEST-EXIT $1"
    echo "E2E-GUEST-EXIT $1" >/dev/console
    sync
    echo o >/proc/sysrq-trigger
    sleep 30
}
die() {
    echo "e2e-guest: $*"
    poweroff_now 99
}

for d in /tmp /run /var/tmp /root; do
    mount -t tmpfs -o mode=1777 tmpfs "$d" || die "tmpfs on $d"
done
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm

env_file=
repo=
for arg in $(cat /proc/cmdline); do
    case "$arg" in
    e2e_env=*) env_file=${arg#e2e_env=} ;;
    e2e_repo=*) repo=${arg#e2e_repo=} ;;
    esac
done
# The checkout may live under a directory the tmpfs mounts above just covered (a CI clone in
# /tmp, say): put it back at the same path from its own read-only 9p export.
if [ -n "$repo" ]; then
    mkdir -p "$repo" 2>/dev/null
    mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000 e2erepo "$repo" ||
        die "cannot mount the checkout at $repo"
fi
[ -f "$env_file" ] || die "no env file ($env_file)"
# shellcheck source=/dev/null
. "$env_file"
: "${RUN_DIR:?}" "${GUEST_ID:?}" "${E2E_DIR:?}" "${TAG:?}"

mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 e2erun "$RUN_DIR" ||
    die "cannot mount the run directory"
export HOSTSIDE=/run/e2e/hostside
mkdir -p "$HOSTSIDE"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 hostshare "$HOSTSIDE" ||
    die "cannot mount the host side of the share"
out=$RUN_DIR/guest$GUEST_ID
mkdir -p "$out"
exec >"$out/console.log" 2>&1 </dev/null

export MNT=/mnt
[ -d /mnt ] || MNT=/run/e2e/mnt
mkdir -p "$MNT" 2>/dev/null
if ! mount -t virtiofs "$TAG" "$MNT"; then
    echo "FAIL mount 0" >>"$out/results"
    poweroff_now 1
fi
echo "uptime at mount: $(cut -d' ' -f1 /proc/uptime)" >"$out/boot"

export GUEST_ID RUN_DIR E2E_DIR REPO_DIR TAG QUEUES DAEMON_KIND CACHE SCRATCH=/tmp/scratch
# A scenario may reboot the guest (reboot.sh): the next boot skips the scenarios that already
# have a result and tells the rebooting one, through REBOOTED=1, that it is in its second half.
boots=$(($(cat "$out/boots" 2>/dev/null || echo 0) + 1))
echo "$boots" >"$out/boots"
if [ "$boots" -gt 3 ]; then
    echo "FAIL boot-loop 0" >>"$out/results"
    poweroff_now 98
fi
status=0
grep -q '^FAIL ' "$out/results" 2>/dev/null && status=1
for name in $SCENARIOS; do
    if grep -qE "^(PASS|FAIL) $name " "$out/results" 2>/dev/null; then
        continue
    fi
    export REBOOTED=0
    [ -f "$out/reboot-$name" ] && REBOOTED=1
    script=$E2E_DIR/scenarios/$name.sh
    [ -f "$script" ] || script=$E2E_DIR/scenarios/$name.2g.sh
    limit=$(sed -n 's/^# timeout: *\([0-9]*\).*/\1/p' "$script" | head -1)
    rm -rf "$SCRATCH" && mkdir -p "$SCRATCH"
    export SCENARIO=$name
    start=$(date +%s.%N)
    (cd "$SCRATCH" && timeout -k 5 "${limit:-${SCENARIO_TIMEOUT:-180}}" bash -e "$script") \
        >>"$out/$name.log" 2>&1
    rc=$?
    secs=$(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')" 2>/dev/null || echo 0)
    if [ $rc = 0 ]; then
        echo "PASS $name $secs" >>"$out/results"
    else
        echo "exit status $rc" >>"$out/$name.log"
        echo "FAIL $name $secs" >>"$out/results"
        : >"$HOSTSIDE/.e2e-failed-$name-$GUEST_ID"
        status=1
    fi
    echo "uptime after $name: $(cut -d' ' -f1 /proc/uptime)"
    sync
done
cd /
echo "uptime before umount: $(cut -d' ' -f1 /proc/uptime)"
umount "$MNT" || echo "umount $MNT failed"
echo "uptime after umount: $(cut -d' ' -f1 /proc/uptime)"
sync
echo "done" >"$out/done"
sync
poweroff_now $status
