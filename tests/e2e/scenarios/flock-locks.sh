# timeout: 120
# BSD flock() locks taken in the guest are seen by a host process (flock-locks.host.sh).
. "$E2E_DIR/scenarios/lib.sh"
d=$MNT/flock-$GUEST_ID
mkdir -p "$d"
python3 - "$d" "$HOSTSIDE/flock-$GUEST_ID" <<'PY'
import fcntl, os, sys, time
d, host = sys.argv[1], sys.argv[2]
def wait_host(name, limit=60):
    path = os.path.join(host, name)
    end = time.time() + limit
    while not os.path.exists(path):
        if time.time() > end:
            sys.exit(f"timed out waiting for host marker {name}")
        time.sleep(0.1)
    return open(path).read().strip()
f = open(os.path.join(d, "file"), "w+")
fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
open(os.path.join(d, "guest-locked"), "w").close()
verdict = wait_host("host-checked")
assert verdict == "conflict", f"host saw {verdict!r} instead of a conflict"
fcntl.flock(f, fcntl.LOCK_UN)
open(os.path.join(d, "guest-released"), "w").close()
assert wait_host("host-locked-after-release") == "ok"
PY
echo ok
