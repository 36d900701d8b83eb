#!/usr/bin/env bash
# Prepares everything the guest end-to-end suite needs, idempotently, on a Debian 12 host:
#   - QEMU 10 (bookworm-backports), busybox-static, cpio, kmod, fio, python3, xz, attr
#   - the Linux 6.12 guest kernel from bookworm-backports (downloaded, not installed)
#   - a busybox initramfs with the virtio_pci, virtiofs, fuse, 9p and 9pnet_virtio modules
# Everything is cached under tests/e2e/work/ (gitignored); a rerun with the cache in place
# takes well under a second.
#   VHOSTFS_SKIP_APT=1   never call apt-get install (the packages are known to be there)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$here/work
mkdir -p "$work"
log() { printf 'e2e-setup: %s\n' "$*" >&2; }

# --- host packages --------------------------------------------------------------------
need_apt=0
for cmd in qemu-system-x86_64 busybox cpio depmod modprobe fio python3 xz setfattr sha256sum; do
    command -v "$cmd" >/dev/null 2>&1 || need_apt=1
done
if command -v qemu-system-x86_64 >/dev/null 2>&1; then
    # vhost-user-fs multiqueue (num-request-queues) needs QEMU 10.
    qemu-system-x86_64 --version | grep -qE 'version (1[0-9])\.' || need_apt=1
fi
# busybox must be the static one (it runs as the guest's init before any library exists).
if command -v busybox >/dev/null 2>&1 && ! dpkg -s busybox-static >/dev/null 2>&1; then
    need_apt=1
fi
if [ "$need_apt" = 1 ] && [ "${VHOSTFS_SKIP_APT:-0}" != 1 ]; then
    export DEBIAN_FRONTEND=noninteractive
    src=/etc/apt/sources.list.d/debian.sources
    if [ -f "$src" ] && ! grep -q 'bookworm-backports' "$src"; then
        log "enabling bookworm-backports"
        sed -i 's/^Suites: bookworm bookworm-updates$/& bookworm-backports/' "$src"
    fi
    apt-get update -q
    apt-get install -y -q -t bookworm-backports qemu-system-x86
    apt-get install -y -q busybox-static cpio kmod fio python3 xz-utils attr coreutils
fi

# --- guest kernel ---------------------------------------------------------------------
kdir=$work/kernel
if [ ! -f "$kdir/vmlinuz" ] || [ ! -f "$kdir/version" ]; then
    pkg=$(apt-cache depends -t bookworm-backports linux-image-amd64 |
        awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
    [ -n "$pkg" ] || { log "cannot find the backports kernel package (apt-get update?)"; exit 1; }
    ver=${pkg#linux-image-}
    log "downloading $pkg"
    rm -rf "$kdir" "$work/deb"
    mkdir -p "$work/deb" "$kdir"
    (cd "$work/deb" && apt-get download -q "$pkg")
    dpkg -x "$work"/deb/*.deb "$kdir/root"
    depmod -b "$kdir/root" "$ver"
    cp "$kdir/root/boot/vmlinuz-$ver" "$kdir/vmlinuz"
    echo "$ver" >"$kdir/version"
    rm -rf "$work/deb"
fi
ver=$(cat "$kdir/version")

# --- initramfs ------------------------------------------------------------------------
# base.cpio: busybox, the modules (decompressed, loaded in dependency order by /init with
# insmod) and /init itself. /init mounts the host's / read-only over 9p and switch_roots into
# it, so every host tool runs in the guest; see guest-init.sh.
initrd=$work/initramfs.cpio
stamp_src=("$here/guest-init.sh" "$here/setup.sh")
if [ ! -f "$initrd" ] || [ -n "$(find "${stamp_src[@]}" -newer "$initrd" 2>/dev/null)" ]; then
    log "building the initramfs"
    root=$work/initramfs
    rm -rf "$root"
    mkdir -p "$root"/{bin,sbin,dev,proc,sys,newroot,lib/modules}
    cp "$(command -v busybox)" "$root/bin/busybox"
    : >"$root/modules.order"
    for m in virtio_pci virtiofs fuse 9p 9pnet_virtio; do
        modprobe -d "$kdir/root" -S "$ver" --show-depends "$m" | while read -r kind path _; do
            [ "$kind" = insmod ] || continue
            name=$(basename "$path")
            name=${name%.xz}
            name=${name%.zst}
            grep -qx "/lib/modules/$name" "$root/modules.order" && continue
            case "$path" in
            *.xz) xz -dc "$path" >"$root/lib/modules/$name" ;;
            *.zst) zstd -dcq "$path" >"$root/lib/modules/$name" ;;
            *) cp "$path" "$root/lib/modules/$name" ;;
            esac
            echo "/lib/modules/$name" >>"$root/modules.order"
        done
    done
    cp "$here/guest-init.sh" "$root/init"
    chmod +x "$root/init"
    (cd "$root" && find . | cpio -o -H newc --quiet) >"$initrd.tmp"
    mv "$initrd.tmp" "$initrd"
    log "initramfs: $(wc -l <"$root/modules.order") modules, $(du -h "$initrd" | cut -f1)"
fi
log "ready: kernel $ver, $(qemu-system-x86_64 --version | head -1)"
