# Basic file operations through virtio-fs, each checked against the host's view of the share.
. "$E2E_DIR/scenarios/lib.sh"
d=$MNT/basic-$GUEST_ID
h=$HOSTSIDE/basic-$GUEST_ID
rm -rf "$d"
mkdir "$d"
check "mkdir visible on host" test -d "$h"

# create / write / read
printf 'hello virtio-fs\n' >"$d/hello"
check "content" grep -qx 'hello virtio-fs' "$d/hello"
check "content on host" cmp "$d/hello" "$h/hello"
head -c 3000000 /dev/urandom >"$d/big"
check "big file on host" cmp "$d/big" "$h/big"
[ "$(sha256sum <"$d/big")" = "$(sha256sum <"$h/big")" ] || fail "sha256 of big file"
# append and overwrite in the middle
printf 'more\n' >>"$d/hello"
printf 'J' | dd of="$d/hello" bs=1 seek=0 conv=notrunc status=none
check "append/overwrite" test "$(cat "$h/hello")" = "$(printf 'Jello virtio-fs\nmore')"

# rename, unlink
mv "$d/hello" "$d/renamed"
check "renamed on host" test -f "$h/renamed"
check "old name gone on host" test ! -e "$h/hello"
rm "$d/renamed"
check "unlinked on host" test ! -e "$h/renamed"

# mkdir -p / rmdir / rename directories
mkdir -p "$d/a/b/c"
mv "$d/a/b" "$d/b2"
check "dir rename" test -d "$h/b2/c"
rmdir "$d/b2/c" "$d/b2" "$d/a"

# symlink, hardlink
echo target >"$d/t"
ln -s t "$d/sym"
check "readlink" test "$(readlink "$d/sym")" = t
check "symlink on host" test "$(readlink "$h/sym")" = t
check "through symlink" test "$(cat "$d/sym")" = target
ln "$d/t" "$d/hard"
check "link count" test "$(stat -c %h "$d/t")" = 2
check "link count on host" test "$(stat -c %h "$h/t")" = 2
check "same inode" test "$(stat -c %i "$d/t")" = "$(stat -c %i "$d/hard")"

# chmod, chown, truncate, utimes
chmod 640 "$d/t"
check "mode" test "$(stat -c %a "$d/t")" = 640
check "mode on host" test "$(stat -c %a "$h/t")" = 640
truncate -s 100000 "$d/t"
check "truncate grow" test "$(stat -c %s "$h/t")" = 100000
truncate -s 3 "$d/t"
check "truncate shrink" test "$(cat "$h/t")" = tar
touch -d '2001-02-03 04:05:06' "$d/t"
check "mtime" test "$(stat -c %Y "$d/t")" = "$(stat -c %Y "$h/t")"
chown 1234:5678 "$d/t"
check "chown" test "$(stat -c %u:%g "$d/t")" = 1234:5678

# xattrs
python3 - "$d/t" <<'PY'
import os, sys
p = sys.argv[1]
os.setxattr(p, "user.e2e", b"value\0with nul")
assert os.getxattr(p, "user.e2e") == b"value\0with nul"
assert "user.e2e" in os.listxattr(p)
os.removexattr(p, "user.e2e")
assert "user.e2e" not in os.listxattr(p)
PY

# readdir of a large directory (several READDIR(PLUS) round trips)
mkdir "$d/many"
python3 - "$d/many" <<'PY'
import os, sys
d = sys.argv[1]
names = {f"file-{i:04d}-" + "x" * (i % 50) for i in range(1500)}
for n in names:
    open(os.path.join(d, n), "w").close()
got = set(os.listdir(d))
assert got == names, (len(got), len(names))
PY
check "readdir count on host" test "$(ls "$h/many" | wc -l)" = 1500
check "ls -l" test "$(ls -l "$d/many" | wc -l)" = 1501

# mmap write + read back, O_APPEND, fsync, statfs
python3 - "$d/mm" <<'PY'
import mmap, os, sys
p = sys.argv[1]
with open(p, "wb") as f:
    f.truncate(8192)
with open(p, "r+b") as f:
    m = mmap.mmap(f.fileno(), 8192)
    m[100:105] = b"mmap!"
    m.flush()
    m.close()
with open(p, "rb") as f:
    assert f.read()[100:105] == b"mmap!"
fd = os.open(p, os.O_WRONLY | os.O_APPEND)
os.write(fd, b"tail")
os.fsync(fd)
os.close(fd)
assert os.path.getsize(p) == 8196
st = os.statvfs(os.path.dirname(p))
assert st.f_blocks > 0 and st.f_bsize > 0
PY
check "mmap data on host" test "$(dd if="$h/mm" bs=1 skip=100 count=5 status=none)" = 'mmap!'

# errors come back as errnos
if mkdir "$d/many" 2>/dev/null; then fail "mkdir of an existing dir succeeded"; fi
if cat "$d/nonexistent" 2>/dev/null; then fail "cat of a missing file succeeded"; fi
if rmdir "$d/many" 2>/dev/null; then fail "rmdir of a non-empty dir succeeded"; fi

rm -rf "$d"
check "cleanup on host" test ! -e "$h"
echo ok
