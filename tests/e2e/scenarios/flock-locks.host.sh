# Host side of flock-locks.sh.
python3 -B - "$SHARE/flock-1" <<'PY'
import fcntl, os, sys, time
sys.path.insert(0, os.path.join(os.environ["E2E_DIR"], "scenarios"))
from markers import mark, wait
d = sys.argv[1]
wait(d, "guest-locked", 800, whose="guest")
f = open(os.path.join(d, "file"), "r+")
try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    fcntl.flock(f, fcntl.LOCK_UN)
    mark(d, "host-checked", "no-conflict")
    sys.exit("host got the flock the guest holds")
except BlockingIOError:
    mark(d, "host-checked", "conflict")
wait(d, "guest-released", 60, whose="guest")
for _ in range(50):
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        break
    except BlockingIOError:
        time.sleep(0.1)
else:
    mark(d, "host-locked-after-release", "still-locked")
    sys.exit("flock not released")
mark(d, "host-locked-after-release", "ok")
PY
