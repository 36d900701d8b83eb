# Host side of flock-locks.sh.
python3 - "$SHARE/flock-1" <<'PY'
import fcntl, os, sys, time
d = sys.argv[1]
def wait(name, limit=800):
    end = time.time() + limit
    while not os.path.exists(os.path.join(d, name)):
        if time.time() > end:
            sys.exit(f"timed out waiting for guest marker {name}")
        time.sleep(0.1)
def mark(name, text):
    with open(os.path.join(d, "." + name), "w") as f:
        f.write(text)
    os.rename(os.path.join(d, "." + name), os.path.join(d, name))
wait("guest-locked")
f = open(os.path.join(d, "file"), "r+")
try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    fcntl.flock(f, fcntl.LOCK_UN)
    mark("host-checked", "no-conflict")
    sys.exit("host got the flock the guest holds")
except BlockingIOError:
    mark("host-checked", "conflict")
wait("guest-released", 60)
for _ in range(50):
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        break
    except BlockingIOError:
        time.sleep(0.1)
else:
    mark("host-locked-after-release", "still-locked")
    sys.exit("flock not released")
mark("host-locked-after-release", "ok")
PY
