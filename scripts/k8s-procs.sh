# Shared by scripts/k8s-controlplane.sh and scripts/k8s-realnode.sh (sourced):
# timing, whether the caller holds the session lock ($LOCK), and processes
# started in a session of their own and stopped by their recorded PID
# (checked against start time and executable, so a recycled PID is never
# signalled).  The sourcing script defines say() and $STATE.

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

lock_held_by_caller() {
    [[ -e $LOCK ]] || return 1
    local ino holders pid p
    ino=$(stat -c %i "$LOCK")
    holders=$(awk -v ino="$ino" '$2 == "FLOCK" && $4 == "WRITE" {
                  n = split($6, f, ":"); if (f[n] == ino) print $5 }' /proc/locks)
    for pid in $holders; do
        p=$$
        while [[ -n $p && $p != 0 ]]; do
            [[ $p == "$pid" ]] && return 0
            p=$(awk '{ print $4 }' "/proc/$p/stat" 2>/dev/null || true)
        done
    done
    return 1
}

pid_file() { echo "$STATE/pids/$1"; }
proc_start() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $20 }'; }

pid_alive() {
    local f pid start exe
    f=$(pid_file "$1")
    [[ -f $f ]] || return 1
    read -r pid start exe <"$f" || return 1
    [[ -r /proc/$pid/stat ]] || return 1
    [[ $(proc_start "$pid") == "$start" ]] || return 1
    [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$exe" ]] || return 1
    echo "$pid"
}

start_proc() {
    local name=$1 exe=$2 pid
    shift 2
    setsid "$exe" "$@" </dev/null >"$STATE/logs/$name.log" 2>&1 &
    pid=$!
    echo "$pid $(proc_start "$pid") $exe" >"$(pid_file "$name")"
}

stop_proc() {
    local name=$1 pid i
    if pid=$(pid_alive "$name"); then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 300; i++)); do
            pid_alive "$name" >/dev/null || break
            sleep 0.05
        done
        if pid=$(pid_alive "$name"); then
            say "$name ($pid) did not stop on SIGTERM within 15 s; SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            for ((i = 0; i < 100; i++)); do
                pid_alive "$name" >/dev/null || break
                sleep 0.05
            done
        fi
    fi
    rm -f "$(pid_file "$name")"
}

# Removes $STATE, keeping its logs in $LAST_LOGS for a post-mortem of the
# last session.
remove_state() {
    if [[ -d $STATE/logs ]]; then
        rm -rf "$LAST_LOGS"
        cp -r "$STATE/logs" "$LAST_LOGS" 2>/dev/null || true
    fi
    rm -rf "$STATE"
}
