# timeout: 240
# Two guests, each through its own daemon (guest 2: cache=auto, guest 3: cache=never), share
# one host directory: each sees the other's files, appends interleave without loss, and a
# rename handoff goes back and forth.
. "$E2E_DIR/scenarios/lib.sh"
me=$GUEST_ID
other=$((5 - me))
d=$MNT/two
h=$HOSTSIDE/two
mkdir -p "$d"
head -c 2000000 /dev/urandom >"$d/from-$me"
sha256sum <"$d/from-$me" | cut -d' ' -f1 >"$d/sum-$me"
: >"$d/ready-$me"
wait_for "$h/ready-$other" 120
check "other guest's file visible" poll 15 test -s "$d/sum-$other"
check "other guest's data" poll 15 sh -c \
    "test \"\$(sha256sum <'$d/from-$other' | cut -d' ' -f1)\" = \"\$(cat '$d/sum-$other')\""

# O_APPEND from both guests at once.
python3 - "$d/log" "$me" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
for i in range(200):
    os.write(fd, f"guest{sys.argv[2]} line {i:04d}\n".encode())
os.close(fd)
PY
: >"$d/appended-$me"
wait_for "$h/appended-$other" 120
check "400 appended lines" poll_eq 15 400 sh -c "wc -l <'$d/log'"
check "no torn lines" test "$(grep -cE '^guest[23] line [0-9]{4}$' "$d/log")" = 400

# Rename handoff: guest 2 starts, each renames the baton to the next round's name.
for round in 1 2 3 4; do
    if [ $((round % 2)) = $((me % 2)) ]; then
        if [ $round = 1 ]; then echo baton >"$d/baton-1"; fi
        check "baton $round arrives" poll 30 test -e "$d/baton-$round"
        mv "$d/baton-$round" "$d/baton-$((round + 1))"
    fi
done
check "baton ends at 5" poll 30 test -e "$d/baton-5"
: >"$d/finished-$me"
wait_for "$h/finished-$other" 120
echo ok
