# timeout: 120
# A guest process blocked in F_SETLKW is killed. Linux's virtio-fs driver never sends FUSE
# INTERRUPT and waits out requests already handed to the device, so the killed process only
# goes away once the lock is granted. After that, the dead process's lock must be released on
# the host (its files are closed): a third process gets the lock, and the daemon keeps serving.
. "$E2E_DIR/scenarios/lib.sh"
d=$MNT/lockint-$GUEST_ID
mkdir -p "$d"
python3 - "$d/file" <<'PY'
import fcntl, signal, subprocess, sys, time
path = sys.argv[1]
holder = open(path, "w+")
fcntl.lockf(holder, fcntl.LOCK_EX)
waiter_code = f"""
import fcntl
f = open({path!r}, "r+")
print("waiting", flush=True)
fcntl.lockf(f, fcntl.LOCK_EX)
print("GOT THE LOCK", flush=True)
"""
w = subprocess.Popen([sys.executable, "-c", waiter_code], stdout=subprocess.PIPE, text=True)
assert w.stdout.readline().strip() == "waiting"
time.sleep(1)
assert w.poll() is None, "the waiter did not block"
w.send_signal(signal.SIGKILL)
time.sleep(1)
fcntl.lockf(holder, fcntl.LOCK_UN)
t0 = time.time()
out, _ = w.communicate(timeout=30)
assert "GOT THE LOCK" not in out, out
print(f"killed waiter gone {time.time() - t0:.2f}s after the holder released, status {w.returncode}")
taker = """
import fcntl, sys, time
f = open(sys.argv[1], "r+")
for _ in range(50):
    try:
        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        print("taken")
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("the lock stayed taken after its holders released it or died")
"""
subprocess.run([sys.executable, "-c", taker, path], check=True, timeout=30)
holder.close()
PY
echo ok
