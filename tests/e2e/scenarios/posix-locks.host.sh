# Host side of posix-locks.sh (runs on the host, in the background, during the boot).
python3 -B - "$SHARE/locks-1" <<'PY'
import fcntl, os, sys, time
sys.path.insert(0, os.path.join(os.environ["E2E_DIR"], "scenarios"))
from markers import lock_refused, mark, wait

d = sys.argv[1]

wait(d, "guest-locked", 800, whose="guest")
f = open(os.path.join(d, "file"), "r+")
if not lock_refused(f):
    print("host got the lock the guest holds")
    fcntl.lockf(f, fcntl.LOCK_UN)
    mark(d, "host-checked", "no-conflict")
    sys.exit(1)
print("host sees the guest's lock")
mark(d, "host-checked", "conflict")
wait(d, "guest-released", 60, whose="guest")
fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("host holds the lock")
mark(d, "host-locked")
wait(d, "guest-waiting", 60, whose="guest")
time.sleep(3)
fcntl.lockf(f, fcntl.LOCK_UN)
print("host released the lock")
wait(d, "guest-relocked", 60, whose="guest")
PY
