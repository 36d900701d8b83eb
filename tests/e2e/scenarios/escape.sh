# timeout: 300
# A guest cannot reach host files outside the share: symlinks planted on the host (absolute,
# relative, deep `../..`) resolve in the guest's own namespace, never on the host; a directory
# that the host keeps swapping with a symlink to the outside only ever shows the share's
# contents; a hard link planted on the host is the one shared file and nothing more. The host
# side (escape.host.sh) plants the links, swaps, and checks the outside afterwards.
. "$E2E_DIR/scenarios/lib.sh"
d=$MNT/escape
wait_for "$HOSTSIDE/escape/planted" 120
secret=OUTSIDE-SECRET-do-not-read
reads=$SCRATCH/escape-reads
: >"$reads"

# The links are links to the guest, with the host's targets as text.
check "abs-file is a symlink" test -L "$d/abs-file"
check "rel-dir is a symlink" test -L "$d/rel-dir"
case $(readlink "$d/rel-file") in ../*) ;; *) fail "rel-file target $(readlink "$d/rel-file")" ;; esac
# Following them resolves in the guest, where the host's outside directory does not exist.
for l in abs-file rel-file abs-dir/secret rel-dir/secret abs-dir/dir/secret; do
    cat "$d/$l" >>"$reads" 2>/dev/null || true
    if echo pwn 2>/dev/null >"$d/$l"; then fail "wrote through $l"; fi
done
# deep-rel resolves to the guest's own /etc/passwd, which is legitimate; the point is only
# that it is not the host's file (the guest's has no host users).
cat "$d/deep-rel" >/dev/null 2>&1 || true
check "no entries appeared behind the links" test ! -e "$d/abs-dir/new"

# A hard link planted on the host is the same file as its outside twin: readable and writable,
# but it leads nowhere else (a file has no parent to climb to).
if [ "$(cat "$HOSTSIDE/escape/planted")" = yes ]; then
    check "hard link readable" grep -qx hard-linked "$d/hard"
    check "hard link has two names" test "$(stat -c %h "$d/hard")" = 2
    if ls "$d/hard/.." >/dev/null 2>&1; then fail "climbed out of a file"; fi
    echo written-through-hard-link >"$d/hard"
fi

# Work through "swap" while the host keeps exchanging it with a symlink to the outside.
end=$(($(date +%s) + 15))
n=0
while [ "$(date +%s)" -lt $end ]; do
    n=$((n + 1))
    cat "$d/swap/inside" "$d/swap/secret" "$d/swap-alt/secret" >>"$reads" 2>/dev/null || true
    ls "$d/swap/" "$d/swap-alt/" >>"$reads" 2>/dev/null || true
    echo "$n" 2>/dev/null >"$d/swap/new-$n" || true
    mkdir "$d/swap/dir-$n" 2>/dev/null || true
    python3 -c 'import os,sys
for p in sys.argv[1:]:
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
        print(os.read(fd, 100).decode(errors="replace"))
        os.close(fd)
    except OSError:
        pass' "$d/swap/secret" "$d/swap-alt/secret" >>"$reads" 2>/dev/null || true
done
echo "$n rounds through the swapped directory"
: >"$d/guest-done"
# The secret is both the content of the outside files and the name of one in each outside
# directory, so a read or a listing of the outside would show it.
if grep -q "$secret" "$reads"; then fail "read or listed a file outside the share"; fi
check "the share's own file was seen" grep -qx inside "$reads"
# Whatever the guest created landed inside the share (in one of the two swapped names).
created=$(find "$HOSTSIDE/escape" -name 'new-*' | wc -l)
echo "$created files created, all inside the share"
