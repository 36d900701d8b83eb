# Helpers for scenario scripts (sourced; scenarios run with `bash -e`).
# Environment from guest-run.sh:
#   MNT       the virtio-fs mount (/mnt)
#   HOSTSIDE  the same host directory seen through 9p, i.e. the host's view, bypassing virtio-fs
#   SCRATCH   an empty guest-local directory (tmpfs), also the working directory
#   GUEST_ID  1 in the single-guest boot; 2 or 3 in the two-guest boot
#   SCENARIO  this scenario's name
#   CACHE     the cache mode of this guest's daemon (auto, never, ...)
#   RUN_DIR, E2E_DIR, REPO_DIR (this repository, read-only through 9p), QUEUES, DAEMON_KIND

fail() {
    echo "FAILED: $*" >&2
    exit 1
}

# check DESCRIPTION COMMAND...: runs COMMAND, fails the scenario with DESCRIPTION if it fails.
check() {
    local what=$1
    shift
    "$@" || fail "$what"
}

# other_failed: true when the same scenario already failed in another guest (two-guest boot),
# so that waiting for that guest is pointless.
other_failed() {
    compgen -G "$HOSTSIDE/.e2e-failed-$SCENARIO-*" >/dev/null
}

# wait_for PATH [SECONDS]: waits until PATH exists (default 60 s).
wait_for() {
    local path=$1 limit=${2:-60} i=0
    while [ ! -e "$path" ]; do
        i=$((i + 1))
        [ $i -le $((limit * 10)) ] || fail "timed out waiting for $path"
        ! other_failed || fail "the other guest failed this scenario"
        sleep 0.1
    done
}

# poll SECONDS COMMAND...: retries COMMAND every 0.1 s until it succeeds; false on timeout.
poll() {
    local limit=$1 i=0
    shift
    until "$@"; do
        i=$((i + 1))
        [ $i -le $((limit * 10)) ] || return 1
        sleep 0.1
    done
}

# poll_eq SECONDS EXPECTED COMMAND...: retries until COMMAND prints EXPECTED.
poll_eq() {
    local limit=$1 want=$2 i=0 got
    shift 2
    until got=$("$@" 2>&1) && [ "$got" = "$want" ]; do
        i=$((i + 1))
        if [ $i -gt $((limit * 10)) ]; then
            echo "still '$got', wanted '$want': $*" >&2
            return 1
        fi
        sleep 0.1
    done
}

# tree_sums DIR: sha256 of every regular file plus the type, mode and target of every entry,
# with paths relative to DIR, sorted: equal output means equal trees.
tree_sums() {
    (cd "$1" && find . -printf '%y %m %p %l\n' | LC_ALL=C sort &&
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
}
