# Unmount and mount again (DESTROY, then a fresh INIT on the same connection); data written
# before the unmount is still there, and the new mount works.
. "$E2E_DIR/scenarios/lib.sh"
head -c 1000000 /dev/urandom >"$SCRATCH/data"
mkdir -p "$MNT/remount-$GUEST_ID"
cp "$SCRATCH/data" "$MNT/remount-$GUEST_ID/data"
ln -s data "$MNT/remount-$GUEST_ID/link"
for round in 1 2 3; do
    cd /
    check "umount (round $round)" umount "$MNT"
    check "nothing mounted" sh -c "! grep -q ' $MNT virtiofs ' /proc/mounts"
    check "mount (round $round)" mount -t virtiofs "$TAG" "$MNT"
    check "data after remount" cmp "$SCRATCH/data" "$MNT/remount-$GUEST_ID/link"
    echo "round $round" >>"$MNT/remount-$GUEST_ID/log"
    cd "$SCRATCH"
done
check "writes of every round kept" test "$(wc -l <"$MNT/remount-$GUEST_ID/log")" = 3
# A second, simultaneous mount of the same tag is refused or works; either way no hang.
mkdir -p /run/e2e/mnt2
if mount -t virtiofs "$TAG" /run/e2e/mnt2 2>/dev/null; then
    check "second mount sees the data" cmp "$SCRATCH/data" /run/e2e/mnt2/remount-$GUEST_ID/data
    umount /run/e2e/mnt2
fi
rm -rf "$MNT/remount-$GUEST_ID"
echo ok
