# timeout: 240
# POSIX (fcntl) record locks taken in the guest are real locks on the host file: a host
# process sees the conflict; a lock held on the host blocks the guest; a guest F_SETLKW waits
# for the host to release it, and while it waits other requests keep flowing.
# The host side is posix-locks.host.sh; the two talk through marker files.
. "$E2E_DIR/scenarios/lib.sh"
d=$MNT/locks-$GUEST_ID
mkdir -p "$d"
python3 -B - "$d" "$HOSTSIDE/locks-$GUEST_ID" <<'PY'
import fcntl, os, sys, threading, time
sys.path.insert(0, os.path.join(os.environ["E2E_DIR"], "scenarios"))
from markers import lock_refused, mark, wait

d, host = sys.argv[1], sys.argv[2]

f = open(os.path.join(d, "file"), "w+")
fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("guest holds a write lock")
mark(d, "guest-locked")
verdict = wait(host, "host-checked", whose="host")
assert verdict == "conflict", f"host saw {verdict!r} instead of a conflict"
fcntl.lockf(f, fcntl.LOCK_UN)
mark(d, "guest-released")
wait(host, "host-locked", whose="host")
if not lock_refused(f):
    sys.exit("guest got a lock the host holds")
print("guest sees the host's lock")
# A blocking lock (SETLKW) waits for the host; meanwhile the file system stays usable.
got = threading.Event()
def blocking():
    fcntl.lockf(f, fcntl.LOCK_EX)
    got.set()
t0 = time.time()
th = threading.Thread(target=blocking)
th.start()
time.sleep(0.5)
mark(d, "guest-waiting")
assert not got.is_set(), "SETLKW returned while the host held the lock"
for i in range(20):
    p = os.path.join(d, f"during-wait-{i}")
    with open(p, "w") as g:
        g.write("x" * 1000)
    os.stat(p)
    assert not got.is_set() or i > 0
print(f"20 writes while SETLKW waited, {time.time() - t0:.1f}s")
th.join(60)
assert got.is_set(), "SETLKW never returned"
print(f"SETLKW granted after {time.time() - t0:.1f}s")
mark(d, "guest-relocked")
fcntl.lockf(f, fcntl.LOCK_UN)
f.close()
PY
echo ok
