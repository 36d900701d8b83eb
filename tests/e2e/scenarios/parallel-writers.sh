# timeout: 300
# Several processes write and verify files at the same time (spread over the request queues
# when the device has several), then fio runs a mixed verified workload.
. "$E2E_DIR/scenarios/lib.sh"
d=$MNT/parallel-$GUEST_ID
mkdir -p "$d"
echo "request queues: $QUEUES; guest CPUs: $(nproc)"
# Interrupts per request queue (one MSI-X vector each), to see the work spread over queues.
queue_irqs() {
    awk '/requests\.[0-9]+/ { n = 0; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n += $i; print $NF, n }' \
        /proc/interrupts | sort
}
queue_irqs >"$SCRATCH/irqs-before"
python3 - "$d" "$HOSTSIDE/parallel-$GUEST_ID" <<'PY'
import hashlib, os, sys
from concurrent.futures import ProcessPoolExecutor

d, host = sys.argv[1], sys.argv[2]
N, SIZE, CHUNK = 8, 4 << 20, 128 << 10

def job(i):
    path = os.path.join(d, f"w{i}")
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for off in range(0, SIZE, CHUNK):
            block = hashlib.sha256(f"{i}-{off}".encode()).digest() * (CHUNK // 32)
            f.write(block)
            h.update(block)
        f.flush()
        os.fsync(f.fileno())
    want = h.hexdigest()
    # read back through the guest (direct I/O-ish: drop our pages first)
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
    with open(path, "rb") as f:
        got = hashlib.sha256(f.read()).hexdigest()
    with open(os.path.join(host, f"w{i}"), "rb") as f:
        host_got = hashlib.sha256(f.read()).hexdigest()
    return i, want == got, want == host_got

with ProcessPoolExecutor(N) as ex:
    results = list(ex.map(job, range(N)))
bad = [r for r in results if not (r[1] and r[2])]
assert not bad, bad
print(f"{N} writers x {SIZE >> 20} MiB verified in guest and on host")
PY
if command -v fio >/dev/null; then
    fio --name=mixed --directory="$d" --numjobs=4 --size=8M --bs=64k --rw=randrw \
        --ioengine=psync --verify=crc32c --do_verify=1 --group_reporting \
        --output-format=terse --minimal >"$SCRATCH/fio.out" || fail "fio"
    echo "fio: $(cut -d';' -f1-8 "$SCRATCH/fio.out" | head -1)"
    # O_DIRECT reads and writes go straight between guest buffers and the host file.
    fio --name=direct --directory="$d" --numjobs=2 --size=4M --bs=256k --rw=write \
        --direct=1 --ioengine=psync --verify=md5 --do_verify=1 --minimal >/dev/null ||
        fail "fio direct"
fi
queue_irqs >"$SCRATCH/irqs-after"
echo "interrupts per request queue during the run:"
used=$(join "$SCRATCH/irqs-before" "$SCRATCH/irqs-after" | awk '{ print "  " $1, $3 - $2 > "/dev/stderr"; if ($3 > $2) n++ } END { print n + 0 }')
echo "request queues used: $used"
if [ "${QUEUES:-1}" -gt 1 ] && [ "$(nproc)" -gt 1 ] && [ -s "$SCRATCH/irqs-before" ]; then
    check "work spread over several request queues" test "$used" -ge 2
fi
rm -rf "$d"
echo ok
