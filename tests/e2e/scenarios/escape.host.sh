# Host side of escape.sh: plants symlinks and a hard link in the share that point outside it,
# keeps swapping a directory of the share with a symlink to the outside while the guest works
# through it, and at the end checks that nothing outside the share was read or changed.
outside=$(mktemp -d /tmp/vhostfs-e2e-outside.XXXXXX)
trap 'rm -rf "$outside"' EXIT
python3 -B - "$SHARE/escape" "$outside" <<'PY'
import ctypes, os, sys, time
sys.path.insert(0, os.path.join(os.environ["E2E_DIR"], "scenarios"))
from markers import mark

d, outside = sys.argv[1], sys.argv[2]
SECRET = "OUTSIDE-SECRET-" + "do-not-read\n"
os.makedirs(d, exist_ok=True)
with open(os.path.join(outside, "secret"), "w") as f:
    f.write(SECRET)
os.mkdir(os.path.join(outside, "dir"))
with open(os.path.join(outside, "dir", "secret"), "w") as f:
    f.write(SECRET)
# Names that give the outside away if a guest ever lists it.
for sub in ("", "dir"):
    open(os.path.join(outside, sub, SECRET.strip()), "w").close()
with open(os.path.join(outside, "hard-src"), "w") as f:
    f.write("hard-linked\n")
before = sorted(os.walk(outside))

rel = os.path.relpath(outside, d)
os.symlink(os.path.join(outside, "secret"), os.path.join(d, "abs-file"))
os.symlink(os.path.join(rel, "secret"), os.path.join(d, "rel-file"))
os.symlink(outside, os.path.join(d, "abs-dir"))
os.symlink(os.path.join(rel, "dir"), os.path.join(d, "rel-dir"))
os.symlink("../../../../../../../../../../../../etc/passwd", os.path.join(d, "deep-rel"))
try:
    os.link(os.path.join(outside, "hard-src"), os.path.join(d, "hard"))
    hard = "yes"
except OSError as e:  # EXDEV: /tmp is another file system here
    print(f"no hard link planted: {e}")
    hard = "no"
# "swap" alternates between a real directory of the share and a symlink to the outside.
os.mkdir(os.path.join(d, "swap"))
with open(os.path.join(d, "swap", "inside"), "w") as f:
    f.write("inside\n")
os.symlink(os.path.join(outside, "dir"), os.path.join(d, "swap-alt"))

mark(d, "planted", hard)
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2
a, b = os.path.join(d, "swap").encode(), os.path.join(d, "swap-alt").encode()
swaps, end = 0, time.time() + 800
while not os.path.exists(os.path.join(d, "guest-done")):
    if time.time() > end:
        sys.exit("timed out waiting for the guest")
    if libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) != 0:
        sys.exit(f"renameat2: errno {ctypes.get_errno()}")
    swaps += 1
    time.sleep(0.001)
print(f"{swaps} swaps while the guest worked")

after = sorted(os.walk(outside))
assert after == before, f"the outside directory changed: {before} -> {after}"
for p in ("secret", "dir/secret"):
    with open(os.path.join(outside, p)) as f:
        assert f.read() == SECRET, f"{p} was changed"
with open(os.path.join(outside, "hard-src")) as f:
    got = f.read()
# The guest writes through the hard link on purpose: it is the same file, shared by the host.
assert got in ("hard-linked\n", "written-through-hard-link\n"), got
print("nothing outside the share was created, removed or changed")
PY
