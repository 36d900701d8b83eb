#!/usr/bin/env bash
# The guest end-to-end suite: real Linux guests (QEMU, Linux 6.12) mount a directory served by
# a virtio-fs daemon and run scenario scripts against it.
#
#   tests/e2e/run.sh [--daemon PATH] [--queues N] [--cache auto|never] [--keep]
#                    [--daemon-args "ARGS"] [scenario...]
#
#   --daemon PATH   the daemon to test (default: target/release/vhostfs, else target/debug/vhostfs);
#                   /opt/virtiofsd/bin/virtiofsd works too, for comparison
#   --queues N      num-request-queues of the device (default 4; 1 for virtiofsd, which has
#                   only one request queue)
#   --cache MODE    cache mode of the first daemon (default auto); in the two-guest boot the
#                   second daemon always uses cache=never
#   --daemon-args   extra arguments for every daemon
#   --keep          keep the run directory (shares, logs) even when everything passed
#   scenario...     names of scenarios to run (default: all of tests/e2e/scenarios)
#   VHOSTFS_E2E_KVM=1   use KVM (-enable-kvm -cpu host) instead of TCG
#   VHOSTFS_E2E_VM_TIMEOUT=S  wall-clock limit of one boot (default 900)
#
# Scenarios live in tests/e2e/scenarios: NAME.sh runs in the single-guest boot, NAME.2g.sh
# runs in both guests of the two-guest boot (GUEST_ID=1 or 2, two daemons on one host
# directory), and an optional NAME.host.sh runs on the host at the same time (it gets SHARE,
# the host directory). A scenario passes when every part exits 0. Each boot runs all its
# scenarios; see guest-run.sh and scenarios/lib.sh for the environment they get.
#
# Output: one `PASS name` or `FAIL name` line per scenario, then `N passed, N failed`.
# Exit status is non-zero when anything failed.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=$here/work

daemon=
queues=
cache=auto
daemon_args=
keep=0
want=()
while [ $# -gt 0 ]; do
    case "$1" in
    --daemon) daemon=$2; shift 2 ;;
    --daemon=*) daemon=${1#*=}; shift ;;
    --queues) queues=$2; shift 2 ;;
    --queues=*) queues=${1#*=}; shift ;;
    --cache) cache=$2; shift 2 ;;
    --cache=*) cache=${1#*=}; shift ;;
    --daemon-args) daemon_args=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed 's/^# \{0,1\}//; /^set -uo/d'; exit 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) want+=("$1"); shift ;;
    esac
done
if [ -z "$daemon" ]; then
    for d in "$repo/target/release/vhostfs" "$repo/target/debug/vhostfs"; do
        [ -x "$d" ] && { daemon=$d; break; }
    done
fi
if [ -z "$daemon" ] || [ ! -x "$daemon" ]; then
    echo "run.sh: no daemon (build vhostfs or pass --daemon)" >&2
    exit 2
fi
daemon=$(cd "$(dirname "$daemon")" && pwd)/$(basename "$daemon")
kind=vhostfs
case "$(basename "$daemon")" in virtiofsd*) kind=virtiofsd ;; esac
if [ -z "$queues" ]; then
    if [ "$kind" = virtiofsd ]; then queues=1; else queues=4; fi
fi

"$here/setup.sh" || { echo "run.sh: setup failed" >&2; exit 2; }
kernel=$work/kernel/vmlinuz
initrd=$work/initramfs.cpio

# --- scenarios ------------------------------------------------------------------------
single=()
double=()
host_pids=()
for f in "$here"/scenarios/*.sh; do
    b=$(basename "$f")
    case "$b" in
    lib.sh | *.host.sh) continue ;;
    *.2g.sh) name=${b%.2g.sh}; list=double ;;
    *) name=${b%.sh}; list=single ;;
    esac
    if [ ${#want[@]} -gt 0 ]; then
        match=0
        for w in "${want[@]}"; do [ "$w" = "$name" ] && match=1; done
        [ $match = 1 ] || continue
    fi
    if [ "$list" = single ]; then single+=("$name"); else double+=("$name"); fi
done
for w in "${want[@]}"; do
    if [ ! -f "$here/scenarios/$w.sh" ] && [ ! -f "$here/scenarios/$w.2g.sh" ]; then
        echo "run.sh: no scenario named $w" >&2
        exit 2
    fi
done

run_dir=$work/runs/$(date +%Y%m%d-%H%M%S)-$kind-$$
mkdir -p "$run_dir"
share=$run_dir/share
mkdir -p "$share"
echo "e2e: daemon $daemon ($kind), queues $queues, run dir $run_dir"

# shellcheck disable=SC2054 # QEMU option values, not array elements
if [ "${VHOSTFS_E2E_KVM:-0}" = 1 ]; then
    accel=(-enable-kvm -cpu host,-arch-capabilities)
else
    accel=(-accel tcg,thread=multi -cpu max)
fi
vm_timeout=${VHOSTFS_E2E_VM_TIMEOUT:-900}

pids_to_kill=()
cleanup() {
    for p in "${pids_to_kill[@]}"; do kill "$p" 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_daemon ID CACHE: starts a daemon on $share; sets daemon_pid and sock.
start_daemon() {
    local id=$1 mode=$2
    sock=$run_dir/vfs$id.sock
    rm -f "$sock"
    local args=(--socket-path="$sock" --shared-dir="$share" --cache="$mode" --xattr)
    # vhostfs offers one request queue per CPU by default; offer what QEMU will ask for.
    [ "$kind" = vhostfs ] && args+=(--num-request-queues="$queues")
    # shellcheck disable=SC2206
    args+=($daemon_args)
    "$daemon" "${args[@]}" >"$run_dir/daemon$id.log" 2>&1 &
    daemon_pid=$!
    pids_to_kill+=("$daemon_pid")
    echo "$daemon ${args[*]}" >"$run_dir/daemon$id.cmd"
    local i
    for i in $(seq 100); do
        [ -S "$sock" ] && return 0
        kill -0 "$daemon_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "e2e: daemon $id did not create its socket:" >&2
    tail -20 "$run_dir/daemon$id.log" >&2
    return 1
}

# boot_guest ID SOCK CACHE SCENARIOS...: boots a guest in the background; sets qemu_pid.
boot_guest() {
    local id=$1 sock=$2 guest_cache=$3
    shift 3
    local env=$run_dir/guest$id.env
    cat >"$env" <<EOF
RUN_DIR=$run_dir
GUEST_ID=$id
E2E_DIR=$here
REPO_DIR=$repo
TAG=myfs
QUEUES=$queues
DAEMON_KIND=$kind
CACHE=$guest_cache
SCENARIOS="$*"
EOF
    timeout -k 10 "$vm_timeout" qemu-system-x86_64 \
        -name "e2e-guest$id" -nographic -monitor none -serial stdio -nic none \
        "${accel[@]}" -smp 2 -m 1G \
        -object memory-backend-memfd,id=mem,size=1G,share=on -numa node,memdev=mem \
        -kernel "$kernel" -initrd "$initrd" \
        -append "console=ttyS0 panic=-1 e2e_runner=$here/guest-run.sh e2e_env=$env e2e_repo=$repo" \
        -chardev socket,id=vfs,path="$sock" \
        -device vhost-user-fs-pci,queue-size=1024,chardev=vfs,tag=myfs,num-request-queues="$queues" \
        -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
        -virtfs local,path="$repo",mount_tag=e2erepo,security_model=none,readonly=on,multidevs=remap \
        -virtfs local,path="$run_dir",mount_tag=e2erun,security_model=none,multidevs=remap \
        -virtfs local,path="$share",mount_tag=hostshare,security_model=none,multidevs=remap \
        </dev/null >"$run_dir/qemu$id.console" 2>&1 &
    qemu_pid=$!
    pids_to_kill+=("$qemu_pid")
}

# start_host_parts GUESTS NAMES...: runs NAME.host.sh companions in the background.
start_host_parts() {
    local guests=$1
    shift
    local name
    for name in "$@"; do
        local h=$here/scenarios/$name.host.sh
        [ -f "$h" ] || continue
        (
            cd "$run_dir" &&
                SHARE=$share GUESTS=$guests RUN_DIR=$run_dir E2E_DIR=$here \
                    timeout -k 5 "$vm_timeout" bash -e "$h" >"$run_dir/host-$name.log" 2>&1
            echo $? >"$run_dir/host-$name.rc"
        ) &
        host_pids+=($!)
    done
}

# tree_cpu PID: CPU seconds (user+system) of PID and all its descendants (the namespace
# sandbox runs the real daemon as a child).
tree_cpu() {
    local hz pids=("$1") all=() p c
    hz=$(getconf CLK_TCK)
    while [ ${#pids[@]} -gt 0 ]; do
        p=${pids[0]}
        pids=("${pids[@]:1}")
        all+=("$p")
        for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do pids+=("$c"); done
    done
    for p in "${all[@]}"; do cat "/proc/$p/stat" 2>/dev/null; echo; done |
        awk -v hz="$hz" 'NF { sub(/^.*\) /, ""); t += $12 + $13 } END { printf "%.2f\n", t / hz }'
}

# wait_boots "ID QEMU_PID DAEMON_PID"...: waits for guests to power off, sampling each
# daemon's CPU time. A guest whose daemon died cannot finish (its requests are never
# answered): it is stopped 10 s after its daemon.
wait_boots() {
    local spec id q d running cpu
    declare -A dead=()
    while :; do
        running=0
        for spec in "$@"; do
            read -r id q d <<<"$spec"
            kill -0 "$q" 2>/dev/null || continue
            running=1
            if kill -0 "$d" 2>/dev/null; then
                cpu=$(tree_cpu "$d")
                [ -z "$cpu" ] || echo "$cpu" >"$run_dir/daemon$id.cpu"
            else
                dead[$id]=$((${dead[$id]:-0} + 1))
                if [ "${dead[$id]}" = 20 ]; then
                    echo "e2e: daemon of guest $id exited while the guest was running; stopping the guest"
                    kill "$q" 2>/dev/null
                fi
            fi
        done
        [ $running = 1 ] || break
        sleep 0.5
    done
    for spec in "$@"; do
        read -r id q d <<<"$spec"
        wait "$q"
        echo $? >"$run_dir/qemu$id.rc"
    done
}

# stop_host_parts: gives the host companions of a finished boot 15 s, then ends them.
stop_host_parts() {
    local p i
    for p in "${host_pids[@]}"; do
        for i in $(seq 150); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        # The subshell runs `timeout`, which ends its script when signalled.
        pkill -TERM -P "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    host_pids=()
}

# wait_daemon ID PID: waits (up to 20 s) for a daemon to exit after its guest went away.
wait_daemon() {
    local id=$1 pid=$2 _
    for _ in $(seq 200); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "daemon $id still running 20 s after the guest left; killing it" >>"$run_dir/daemon$id.log"
        kill "$pid" 2>/dev/null
        sleep 0.5
        kill -9 "$pid" 2>/dev/null
    fi
    wait "$pid"
    echo $? >"$run_dir/daemon$id.rc"
}

boot_report() {
    local id=$1 t0=$2
    local t1 booted
    t1=$(date +%s.%N)
    booted=$(sed -n 's/^uptime at mount: //p' "$run_dir/guest$id/boot" 2>/dev/null)
    printf 'e2e: guest %s: %.1f s wall, mounted at guest uptime %s s, daemon CPU %s s, %s\n' \
        "$id" "$(awk "BEGIN { print $t1 - $t0 }")" "${booted:-?}" \
        "$(cat "$run_dir/daemon$id.cpu" 2>/dev/null || echo '?')" \
        "$(grep -ao 'E2E-GUEST-EXIT [0-9]*' "$run_dir/qemu$id.console" | tail -1)"
}

# --- boot 1: one guest ----------------------------------------------------------------
if [ ${#single[@]} -gt 0 ]; then
    if start_daemon 1 "$cache"; then
        d1=$daemon_pid
        start_host_parts 1 "${single[@]}"
        t0=$(date +%s.%N)
        boot_guest 1 "$sock" "$cache" "${single[@]}"
        wait_boots "1 $qemu_pid $d1"
        boot_report 1 "$t0"
        stop_host_parts
        wait_daemon 1 "$d1"
    fi
fi

# --- boot 2: two guests, two daemons, one directory -----------------------------------
if [ ${#double[@]} -gt 0 ]; then
    if start_daemon 2 "$cache" && s2=$sock && d2=$daemon_pid &&
        start_daemon 3 never && s3=$sock && d3=$daemon_pid; then
        start_host_parts 2 "${double[@]}"
        t0=$(date +%s.%N)
        boot_guest 2 "$s2" "$cache" "${double[@]}"
        q2=$qemu_pid
        boot_guest 3 "$s3" never "${double[@]}"
        q3=$qemu_pid
        wait_boots "2 $q2 $d2" "3 $q3 $d3"
        boot_report 2 "$t0"
        boot_report 3 "$t0"
        stop_host_parts
        wait_daemon 2 "$d2"
        wait_daemon 3 "$d3"
    fi
fi

# --- results --------------------------------------------------------------------------
passed=0
failed=0
lines=()
verdict() { # NAME OK
    if [ "$2" = 1 ]; then
        lines+=("PASS $1")
        passed=$((passed + 1))
    else
        lines+=("FAIL $1")
        failed=$((failed + 1))
    fi
}
result_of() { # GUEST NAME -> prints "PASS secs" / "FAIL secs" / nothing
    sed -n "s/^\(PASS\|FAIL\) $2 \(.*\)$/\1 \2/p" "$run_dir/guest$1/results" 2>/dev/null | tail -1
}
check_host_part() { # NAME -> 0 ok or no host part
    [ -f "$here/scenarios/$1.host.sh" ] || return 0
    [ "$(cat "$run_dir/host-$1.rc" 2>/dev/null)" = 0 ]
}
show_failure() { # GUEST NAME
    local log=$run_dir/guest$1/$2.log
    echo "---- $2 (guest $1): last lines of $log"
    tail -15 "$log" 2>/dev/null | sed 's/^/    /'
}

for name in "${single[@]}"; do
    r=$(result_of 1 "$name")
    ok=0
    [ "${r%% *}" = PASS ] && check_host_part "$name" && ok=1
    printf 'e2e: time %-28s %6ss  guest1=%s host=%s\n' "$name" "${r#* }" "${r%% *}" \
        "$(cat "$run_dir/host-$name.rc" 2>/dev/null || echo -)"
    [ $ok = 1 ] || show_failure 1 "$name"
    verdict "$name" $ok
done
for name in "${double[@]}"; do
    r2=$(result_of 2 "$name")
    r3=$(result_of 3 "$name")
    ok=0
    [ "${r2%% *}" = PASS ] && [ "${r3%% *}" = PASS ] && check_host_part "$name" && ok=1
    printf 'e2e: time %-28s %6ss  guest2=%s guest3=%s %6ss host=%s\n' "$name" "${r2#* }" \
        "${r2%% *}" "${r3%% *}" "${r3#* }" "$(cat "$run_dir/host-$name.rc" 2>/dev/null || echo -)"
    if [ $ok = 0 ]; then
        show_failure 2 "$name"
        show_failure 3 "$name"
    fi
    verdict "$name" $ok
done
# Every daemon must exit by itself, with status 0, once its guest has shut down.
for id in 1 2 3; do
    [ -f "$run_dir/daemon$id.cmd" ] || continue
    rc=$(cat "$run_dir/daemon$id.rc" 2>/dev/null || echo none)
    if [ "$rc" != 0 ] || grep -q 'still running' "$run_dir/daemon$id.log"; then
        echo "---- daemon $id exit status $rc; last lines of $run_dir/daemon$id.log"
        tail -15 "$run_dir/daemon$id.log" | sed 's/^/    /'
        verdict "daemon-exit-$id" 0
    else
        verdict "daemon-exit-$id" 1
    fi
done

printf '%s\n' "${lines[@]}"
echo "$passed passed, $failed failed"
if [ "$failed" = 0 ] && [ "$keep" = 0 ]; then
    rm -rf "$share"
fi
[ "$failed" = 0 ]
