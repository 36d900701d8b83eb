# Host side of posix-locks.sh (runs on the host, in the background, during the boot).
python3 - "$SHARE/locks-1" <<'PY'
import errno, fcntl, os, sys, time

d = sys.argv[1]

def wait(name, limit=800):
    end = time.time() + limit
    while not os.path.exists(os.path.join(d, name)):
        if time.time() > end:
            sys.exit(f"timed out waiting for guest marker {name}")
        time.sleep(0.1)

def mark(name, text="1"):
    tmp = os.path.join(d, "." + name)
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, os.path.join(d, name))

wait("guest-locked")
f = open(os.path.join(d, "file"), "r+")
try:
    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("host got the lock the guest holds")
    fcntl.lockf(f, fcntl.LOCK_UN)
    mark("host-checked", "no-conflict")
    sys.exit(1)
except OSError as e:
    assert e.errno in (errno.EAGAIN, errno.EACCES), e
    print("host sees the guest's lock")
    mark("host-checked", "conflict")
wait("guest-released", 60)
fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("host holds the lock")
mark("host-locked")
wait("guest-waiting", 60)
time.sleep(3)
fcntl.lockf(f, fcntl.LOCK_UN)
print("host released the lock")
wait("guest-relocked", 60)
PY
