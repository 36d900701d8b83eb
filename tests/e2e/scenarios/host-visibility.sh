# Changes made on the host (through the 9p view, bypassing virtio-fs) become visible in the
# guest: new files, changed content, deletions, renames. With cache=auto the guest may cache
# attributes and entries for about a second, so each check polls for a while; with
# cache=never every change must be visible at once. (Also runs in the two-guest boot as
# host-visibility-both, where guest 3's daemon uses cache=never.)
. "$E2E_DIR/scenarios/lib.sh"
if [ "${CACHE:-auto}" = never ]; then
    # No caching: the first look must already see the change.
    poll() { shift; "$@"; }
    poll_eq() {
        local want=$2 got
        shift 2
        got=$("$@" 2>&1)
        [ "$got" = "$want" ] || { echo "'$got', wanted '$want': $*" >&2; return 1; }
    }
fi
echo "cache=${CACHE:-auto}"
d=$MNT/hostvis-$GUEST_ID
h=$HOSTSIDE/hostvis-$GUEST_ID
mkdir -p "$h"
wait_for "$d" 10

echo "from the host" >"$h/new"
check "host-created file visible" poll 10 test -f "$d/new"
check "host-created content" poll 10 grep -qx "from the host" "$d/new"

# Same size, different content, new mtime: the guest must not serve stale page cache.
sleep 1.1
echo "FROM THE HOST" >"$h/new"
check "host-changed content" poll 10 grep -qx "FROM THE HOST" "$d/new"

# Grow the file on the host while the guest has it open.
exec 3<"$d/new"
head -c 100000 /dev/zero >>"$h/new"
check "host-grown size" poll_eq 10 100014 stat -c %s "$d/new"
exec 3<&-

mv "$h/new" "$h/moved"
check "host rename: new name" poll 10 test -f "$d/moved"
check "host rename: old name gone" poll 10 test ! -e "$d/new"
rm "$h/moved"
check "host unlink" poll 10 test ! -e "$d/moved"

mkdir -p "$h/sub/dir"
echo x >"$h/sub/dir/f"
check "host-created tree" poll 10 test -f "$d/sub/dir/f"
rm -rf "$h/sub"
check "host-removed tree" poll 10 test ! -e "$d/sub"

# And the other way round: guest writes are on the host at once (no writeback delay once
# the file is closed).
echo "from the guest" >"$d/g"
check "guest write visible on host" grep -qx "from the guest" "$h/g"
rm -rf "$d"
echo ok
