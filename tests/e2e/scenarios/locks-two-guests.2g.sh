# timeout: 180
# A POSIX lock taken in one guest blocks the other guest (each through its own daemon); a
# blocked F_SETLKW in guest 3 is granted when guest 2 releases.
. "$E2E_DIR/scenarios/lib.sh"
d=$MNT/lk2
mkdir -p "$d"
python3 -B - "$d" "$HOSTSIDE/lk2" "$GUEST_ID" <<'PY'
import fcntl, os, sys, time
sys.path.insert(0, os.path.join(os.environ["E2E_DIR"], "scenarios"))
import markers
d, host, me = sys.argv[1], sys.argv[2], sys.argv[3]
failed = os.path.join(os.path.dirname(host), ".e2e-failed-locks-two-guests-*")
def mark(name):
    markers.mark(d, name)
def wait(name):
    markers.wait(host, name, 120, failed=failed)
if me == "2":
    f = open(os.path.join(d, "file"), "w+")
    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    mark("locked-2")
    wait("checked-3")
    time.sleep(2)
    mark("unlocking-2")
    fcntl.lockf(f, fcntl.LOCK_UN)
    wait("got-3")
else:
    wait("locked-2")
    f = open(os.path.join(d, "file"), "r+")
    if not markers.lock_refused(f):
        sys.exit("guest 3 got the lock guest 2 holds")
    mark("checked-3")
    t0 = time.time()
    fcntl.lockf(f, fcntl.LOCK_EX)
    waited = time.time() - t0
    assert os.path.exists(os.path.join(host, "unlocking-2")), "granted before guest 2 unlocked"
    print(f"SETLKW granted after {waited:.1f}s")
    mark("got-3")
PY
echo ok
