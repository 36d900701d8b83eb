# timeout: 240
# Large sequential I/O with 1 MiB requests (multi-descriptor chains, zero-copy preadv/pwritev):
# buffered and O_DIRECT, sparse files, checked against the host's view.
. "$E2E_DIR/scenarios/lib.sh"
d=$MNT/large-$GUEST_ID
h=$HOSTSIDE/large-$GUEST_ID
mkdir -p "$d"
head -c $((48 << 20)) /dev/urandom >"$SCRATCH/src"
want=$(sha256sum <"$SCRATCH/src")
t0=$(date +%s.%N)
dd if="$SCRATCH/src" of="$d/buffered" bs=1M status=none conv=fsync
dd if="$SCRATCH/src" of="$d/direct" bs=1M oflag=direct status=none
t1=$(date +%s.%N)
echo "wrote 2 x 48 MiB in $(awk "BEGIN { print $t1 - $t0 }") s"
sync
echo 3 >/proc/sys/vm/drop_caches
check "buffered, read in guest" test "$(sha256sum <"$d/buffered")" = "$want"
check "direct, read in guest" test "$(dd if="$d/direct" bs=1M iflag=direct status=none | sha256sum)" = "$want"
check "buffered, on host" test "$(sha256sum <"$h/buffered")" = "$want"
check "direct, on host" test "$(sha256sum <"$h/direct")" = "$want"
# Sparse file: a hole reads back as zeros; SEEK_DATA/SEEK_HOLE work.
python3 - "$d/sparse" <<'PY'
import os, sys
p = sys.argv[1]
with open(p, "wb") as f:
    f.seek(64 << 20)
    f.write(b"end")
with open(p, "rb") as f:
    f.seek(10 << 20)
    assert f.read(1 << 20) == bytes(1 << 20)
    f.seek(64 << 20)
    assert f.read() == b"end"
fd = os.open(p, os.O_RDONLY)
try:
    data = os.lseek(fd, 0, os.SEEK_DATA)
    assert data >= (60 << 20), data
except OSError as e:
    print("SEEK_DATA not supported:", e)
os.close(fd)
PY
rm -rf "$d"
echo ok
