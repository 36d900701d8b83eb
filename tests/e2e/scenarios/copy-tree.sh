# timeout: 300
# `cp -a` of a real source tree into the share and back out; every file's checksum, mode,
# type and symlink target must match the original, on the guest side and on the host side.
. "$E2E_DIR/scenarios/lib.sh"
src=$SCRATCH/src
mkdir -p "$src"
# This repository's sources (read from the host over 9p) and some of /usr/share/doc.
cp -a "$REPO_DIR/crates" "$src/"
mkdir -p "$src/e2e" && cp -a "$E2E_DIR/scenarios" "$src/e2e/"
cp -a /usr/share/doc/python3* /usr/share/doc/coreutils "$src/" 2>/dev/null || true
ln -s crates "$src/link-to-crates"
ln -s /nonexistent/target "$src/dangling"
mkdir -m 700 "$src/private"
echo secret >"$src/private/f"
chmod 600 "$src/private/f"
echo "source tree: $(find "$src" | wc -l) entries, $(du -sh "$src" | cut -f1)"

tree_sums "$src" >"$SCRATCH/expected"
dst=$MNT/tree-$GUEST_ID
rm -rf "$dst"
cp -a "$src" "$dst"
tree_sums "$dst" >"$SCRATCH/guest-in"
check "tree copied in (guest view)" cmp "$SCRATCH/expected" "$SCRATCH/guest-in"
tree_sums "$HOSTSIDE/tree-$GUEST_ID" >"$SCRATCH/host-in"
check "tree copied in (host view)" cmp "$SCRATCH/expected" "$SCRATCH/host-in"

# Drop the guest's caches so that the copy out really reads through virtio-fs.
sync
echo 3 >/proc/sys/vm/drop_caches
cp -a "$dst" "$SCRATCH/out"
tree_sums "$SCRATCH/out" >"$SCRATCH/out-sums"
check "tree copied out" cmp "$SCRATCH/expected" "$SCRATCH/out-sums"
check "diff -r" diff -r --no-dereference "$src" "$SCRATCH/out"
rm -rf "$dst"
check "tree removed on host" test ! -e "$HOSTSIDE/tree-$GUEST_ID"
echo ok
