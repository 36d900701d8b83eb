# timeout: 240
# POSIX (fcntl) record locks taken in the guest are real locks on the host file: a host
# process sees the conflict; a lock held on the host blocks the guest; a guest F_SETLKW waits
# for the host to release it, and while it waits other requests keep flowing.
# The host side is posix-locks.host.sh; the two talk through marker files.
. "$E2E_DIR/scenarios/lib.sh"
d=$MNT/locks-$GUEST_ID
mkdir -p "$d"
python3 - "$d" "$HOSTSIDE/locks-$GUEST_ID" <<'PY'
import errno, fcntl, os, sys, threading, time

d, host = sys.argv[1], sys.argv[2]

def mark(name):
    with open(os.path.join(d, name), "w") as f:
        f.write("1")

def wait_host(name, limit=60):
    path = os.path.join(host, name)
    end = time.time() + limit
    while not os.path.exists(path):
        if time.time() > end:
            sys.exit(f"timed out waiting for host marker {name}")
        time.sleep(0.1)
    with open(path) as f:
        return f.read().strip()

f = open(os.path.join(d, "file"), "w+")
fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("guest holds a write lock")
mark("guest-locked")
verdict = wait_host("host-checked")
assert verdict == "conflict", f"host saw {verdict!r} instead of a conflict"
fcntl.lockf(f, fcntl.LOCK_UN)
mark("guest-released")
wait_host("host-locked")
try:
    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    sys.exit("guest got a lock the host holds")
except OSError as e:
    assert e.errno in (errno.EAGAIN, errno.EACCES), e
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
mark("guest-waiting")
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
mark("guest-relocked")
fcntl.lockf(f, fcntl.LOCK_UN)
f.close()
PY
echo ok
