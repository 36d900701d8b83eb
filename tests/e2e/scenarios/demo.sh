# The demo (scripts/demo.sh): the host puts a few files in the share, the guest lists and
# reads them through virtio-fs, writes one back, and the host sees it.
# timeout: 60
. "$E2E_DIR/scenarios/lib.sh"

# The host's side of the share (9p view of the host directory, bypassing virtio-fs).
printf 'Hello from the host, served by %s.\n' "$DAEMON_KIND" >"$HOSTSIDE/hello.txt"
mkdir -p "$HOSTSIDE/docs"
cp "$REPO_DIR/README.md" "$HOSTSIDE/docs/README.md"
ln -sf docs/README.md "$HOSTSIDE/readme-link"

echo "== guest: mount | grep virtiofs"
mount | grep " $MNT "
echo "== guest: ls -la $MNT"
ls -la "$MNT"
echo "== guest: ls -la $MNT/docs"
ls -la "$MNT/docs"
echo "== guest: cat $MNT/hello.txt"
cat "$MNT/hello.txt"
check "the guest reads what the host wrote" grep -q "Hello from the host" "$MNT/hello.txt"
check "a symlink resolves in the guest" cmp "$MNT/readme-link" "$REPO_DIR/README.md"

echo "Hello from guest $GUEST_ID ($(uname -r))." >"$MNT/from-guest.txt"
sync
echo "== host view: cat from-guest.txt"
cat "$HOSTSIDE/from-guest.txt"
check "the host sees what the guest wrote" grep -q "Hello from guest" "$HOSTSIDE/from-guest.txt"
echo "== guest: df -h $MNT"
df -h "$MNT"
