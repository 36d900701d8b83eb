#!/usr/bin/env bash
# Finds syscalls the daemon makes that the seccomp allow-list misses.
#
#   crates/sandbox/scripts/seccomp-audit.sh [path/to/vhostfs] [log|kill]
#
# Mounts a scratch share on the host through /dev/fuse with `--seccomp log` (default) or
# `--seccomp kill`, runs a file-system workload on the mount, unmounts, and prints the syscalls
# the kernel's audit log (dmesg) recorded for the daemon: with `log` every such syscall is a
# gap in the allow-list; with `kill` the daemon dies on the first one. Needs root, /dev/fuse
# and a readable dmesg. The same check over vhost-user needs a guest (see the e2e suite): run it
# with `--seccomp log` and grep dmesg for `comm="vhostfs"` the same way.
set -euo pipefail

bin="${1:-${CARGO_TARGET_DIR:-target}/debug/vhostfs}"
action="${2:-log}"
work="$(mktemp -d)"
share="$work/share"
mnt="$work/mnt"
mkdir -p "$share" "$mnt"
echo hello >"$share/existing"

before="$(dmesg | wc -l)"
"$bin" --shared-dir "$share" --fuse-mountpoint "$mnt" --sandbox none --seccomp "$action" \
    --log-level warn &
pid=$!
for _ in $(seq 100); do
    mountpoint -q "$mnt" && break
    sleep 0.1
done
mountpoint -q "$mnt" || { echo "mount did not appear"; kill "$pid" || true; exit 1; }

status=0
(
    set -e
    cd "$mnt"
    cat existing >/dev/null
    mkdir -p d/e/f
    for i in $(seq 20); do echo "line $i" >>d/file; done
    dd if=/dev/zero of=big bs=64k count=64 status=none
    dd if=big of=/dev/null bs=1M status=none
    cp big d/copy
    truncate -s 1M d/copy
    fallocate -l 2M d/alloc 2>/dev/null || true
    ln -s d/file sym
    readlink sym >/dev/null
    ln d/file hard
    mv hard d/e/moved
    chmod 600 d/e/moved
    chown 1000:1000 d/e/moved
    touch -d "2001-01-01" d/e/moved
    stat d/e/moved >/dev/null
    ls -laR . >/dev/null
    find . -type f | xargs cat >/dev/null
    mkfifo fifo
    setfattr -n user.test -v 1 d/file 2>/dev/null || true
    getfattr -d d/file >/dev/null 2>&1 || true
    setfattr -x user.test d/file 2>/dev/null || true
    flock d/file true
    python3 - <<'PY'
import fcntl, os
fd = os.open("d/file", os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX)
fcntl.lockf(fd, fcntl.LOCK_UN)
os.fsync(fd); os.fdatasync(fd)
os.lseek(fd, 0, os.SEEK_END)
os.pwrite(fd, b"x", 3); os.pread(fd, 4, 0)
try:
    os.copy_file_range(fd, os.open("d/copy", os.O_RDWR), 100, 0, 0)
except OSError:
    pass
os.statvfs(".")
os.sync()
os.close(fd)
tmp = os.open(".", os.O_TMPFILE | os.O_RDWR, 0o600) if hasattr(os, "O_TMPFILE") else None
PY
    rm -rf d sym fifo big
    sync
) || status=$?

fusermount3 -u "$mnt" 2>/dev/null || fusermount -u "$mnt" 2>/dev/null || umount "$mnt" || true
sleep 0.5
alive="no"
kill -0 "$pid" 2>/dev/null && alive="yes"
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null && daemon_rc=0 || daemon_rc=$?
rm -rf "$work"

echo "workload status: $status, daemon exit: $daemon_rc"
# Audit records of seccomp (type=1326) from the daemon since the start.
nums="$(dmesg | tail -n +"$((before + 1))" | grep 'type=1326' | grep 'vhostfs' \
    | grep -o 'syscall=[0-9]*' | sort -un | cut -d= -f2 || true)"
unistd="$(ls /usr/include/*/asm/unistd_64.h /usr/include/asm/unistd_64.h 2>/dev/null | head -1 || true)"
if [ -n "$nums" ]; then
    echo "syscalls outside the allow-list:"
    for n in $nums; do
        name=""
        [ -n "$unistd" ] && name="$(awk -v n="$n" '$1 == "#define" && $3 == n { sub("__NR_", "", $2); print $2 }' "$unistd")"
        echo "  $n ${name:-?}"
    done
    exit 1
fi
if [ "$action" = kill ] && [ "$daemon_rc" = 159 ]; then
    echo "daemon was killed by SIGSYS"
    exit 1
fi
echo "no seccomp violations recorded"
[ "$status" = 0 ]
