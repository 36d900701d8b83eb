# timeout: 120
# BSD flock() locks taken in the guest are seen by a host process (flock-locks.host.sh).
. "$E2E_DIR/scenarios/lib.sh"
d=$MNT/flock-$GUEST_ID
mkdir -p "$d"
python3 -B - "$d" "$HOSTSIDE/flock-$GUEST_ID" <<'PY'
import fcntl, os, sys
sys.path.insert(0, os.path.join(os.environ["E2E_DIR"], "scenarios"))
from markers import mark, wait
d, host = sys.argv[1], sys.argv[2]
f = open(os.path.join(d, "file"), "w+")
fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
mark(d, "guest-locked")
verdict = wait(host, "host-checked", whose="host")
assert verdict == "conflict", f"host saw {verdict!r} instead of a conflict"
fcntl.flock(f, fcntl.LOCK_UN)
mark(d, "guest-released")
assert wait(host, "host-locked-after-release", whose="host") == "ok"
PY
echo ok
