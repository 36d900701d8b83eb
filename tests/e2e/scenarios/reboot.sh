# timeout: 120
# The guest reboots while the daemon stays connected (the VMM stops and restarts the
# virtqueues; the new guest kernel sends INIT on the live session). After the reboot, the
# share mounts again and the data written before it is intact.
. "$E2E_DIR/scenarios/lib.sh"
d=$MNT/reboot-$GUEST_ID
if [ "${REBOOTED:-0}" = 0 ]; then
    mkdir -p "$d"
    head -c 1000000 /dev/urandom >"$d/data"
    sha256sum <"$d/data" >"$RUN_DIR/guest$GUEST_ID/reboot-sum"
    # Keep a file open across the reboot: the daemon must drop the old session's handles.
    exec 3<"$d/data"
    : >"$RUN_DIR/guest$GUEST_ID/reboot-$SCENARIO"
    echo "rebooting at uptime $(cut -d' ' -f1 /proc/uptime)"
    sync
    echo b >/proc/sysrq-trigger
    sleep 60
    fail "the guest did not reboot"
fi
echo "rebooted; uptime $(cut -d' ' -f1 /proc/uptime)"
check "data survives the reboot" test "$(sha256sum <"$d/data")" = "$(cat "$RUN_DIR/guest$GUEST_ID/reboot-sum")"
check "data on the host" test "$(sha256sum <"$HOSTSIDE/reboot-$GUEST_ID/data")" = "$(cat "$RUN_DIR/guest$GUEST_ID/reboot-sum")"
echo after >"$d/after"
check "writes after the reboot" test "$(cat "$HOSTSIDE/reboot-$GUEST_ID/after")" = after
rm -rf "$d"
echo ok
