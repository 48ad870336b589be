#!/usr/bin/env bash
# Client groups (issue 10) side by side with corosync's CPG, on this machine and in the same run:
# agreed-order throughput and latency of one sender through three daemons, and what an idle client
# costs a daemon.
#
#   1. flotilla: three `flotilla groupd` daemons on loopback (a alone, b and c --join a), driven by
#      benches/groups_loopback.rs (`groups-loopback`): one receiving client per daemon in a fresh
#      group, one sender on a; N_SMALL messages of 100 B, then N_BIG of 10 KiB, as fast as the
#      protocol allows (pipelined sends, at most WINDOW unanswered and CREDIT undelivered at a), then
#      RATE_MSGS messages of 100 B paced at RATE msgs/s (latency under a light load). Every receiver
#      must see every message once, in the same (view, seq) order: a run that does not is reported
#      FAILED and the script exits non-zero at the end. With FIFO=1 (the default) the same three
#      runs again in the cheaper FIFO mode (`fsend`, `601` notices; one sender, so its order is
#      checked the same way).
#   2. The daemons are stopped by PID; three fresh ones are started and IDLE_CLIENTS clients connect
#      to a, each joining a group of its own and then staying silent: a's VmRSS before and after
#      (bytes per idle client), b's and c's growth (the replicated group table), and whether a still
#      answers `members` and carries messages with all of them connected. Stopped by PID again.
#   3. corosync: CORO_SCRIPT (corosync-netns.sh) with PHASES=tput SIZES=3 TPUT_REPS=1 and the same
#      N_SMALL / N_BIG: three corosync 3 nodes (knet, each in its own network namespace on one bridge),
#      cpgperf sending from node 1 with CPG_TYPE_AGREED, receivers on the other nodes. Needs root; it
#      installs corosync, libcpg-dev and libqb-dev with apt-get when INSTALL=1.
#   Then one table: msgs/s from the first send until the last message reached every receiver, MB/s,
#   and latency (send to delivery; corosync's cpgperf gives its average and maximum only).
#
# Usage (root for the corosync part; without root it is skipped and said so):
#   benches/groups-vs-cpg.sh
#   N_SMALL=100000 N_BIG=20000 benches/groups-vs-cpg.sh
# Env knobs:
#   N_SMALL=20000 N_BIG=5000     messages of 100 B and of 10 KiB (both systems)
#   WINDOW=256 CREDIT=1000       the load generator's pipelining (see benches/groups_loopback.rs)
#   RATE=2000 RATE_MSGS=10000    the paced 100 B run (flotilla only); RATE=0 skips it
#   FIFO=1                       also run flotilla's FIFO mode (0: agreed order only)
#   BINARY=1                     also run agreed order on the binary client path (`bsend`, `602`;
#                                SPEC.md §10.6), as the Rust client library speaks it
#   IDLE_CLIENTS=10000           idle clients (each needs a descriptor here and one in the daemon)
#   CPG=1                        run corosync's side (0: flotilla only)
#   CORO_SCRIPT=/work/shared/research/corosync-netns.sh
#   INSTALL=1                    let CORO_SCRIPT install what it needs with apt-get
#   BUILD=1                      cargo build --release first (0: use target/release as it is)
#   OUT=target/groups-bench      results.txt (the table), raw.txt (every key=value line), daemon
#                                logs, corosync/ (CORO_SCRIPT's output)
# Everything it starts it stops by PID (also on exit or Ctrl-C).
set -euo pipefail

N_SMALL=${N_SMALL:-20000}
N_BIG=${N_BIG:-5000}
WINDOW=${WINDOW:-256}
CREDIT=${CREDIT:-1000}
RATE=${RATE:-2000}
RATE_MSGS=${RATE_MSGS:-10000}
FIFO=${FIFO:-1}
BINARY=${BINARY:-1}
IDLE_CLIENTS=${IDLE_CLIENTS:-10000}
CPG=${CPG:-1}
CORO_SCRIPT=${CORO_SCRIPT:-/work/shared/research/corosync-netns.sh}
INSTALL=${INSTALL:-1}
BUILD=${BUILD:-1}

cd "$(dirname "$0")/.."
OUT=${OUT:-target/groups-bench}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -rf "$OUT/logs" "$OUT/corosync"
mkdir -p "$OUT/logs"
: >"$OUT/raw.txt"

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

if [ "$BUILD" = 1 ]; then
    log "cargo build --release -p flotilla -p flotilla-benches"
    cargo build --quiet --release -p flotilla -p flotilla-benches --bin flotilla --bin groups-loopback
fi
FLOTILLA=$PWD/target/release/flotilla
LOAD=$PWD/target/release/groups-loopback

PIDS=()
stop_pid() { # SIGTERM (the daemon leaves the cluster), then SIGKILL after 5 s
    local p=$1 i
    kill -TERM "$p" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}
cleanup() {
    local p
    for p in "${PIDS[@]}"; do stop_pid "$p"; done
    PIDS=()
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT TERM

# A port nothing listens on now.
free_port() {
    local p
    while :; do
        p=$((30000 + RANDOM % 20000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
}

ADDR=()
# cluster_up TAG: daemons a, b, c on fresh ports; PIDS and ADDR hold them.
cluster_up() {
    local tag=$1 k name n
    local names=(a b c)
    ADDR=()
    PIDS=()
    for k in 0 1 2; do
        name=${names[k]}
        ADDR[k]=127.0.0.1:$(free_port)
        local join=()
        [ "$k" -gt 0 ] && join=(--join "${ADDR[0]}")
        RUST_LOG=info "$FLOTILLA" groupd --name "$name" --listen "${ADDR[k]}" "${join[@]}" \
            >"$OUT/logs/$tag-$name.out" 2>"$OUT/logs/$tag-$name.err" &
        PIDS[k]=$!
        n=0
        until grep -q 'listening on' "$OUT/logs/$tag-$name.out" 2>/dev/null; do
            n=$((n + 1))
            if [ "$n" -gt 100 ] || ! kill -0 "${PIDS[k]}" 2>/dev/null; then
                log "groupd $name did not start: $(tail -n 3 "$OUT/logs/$tag-$name.err")"
                exit 1
            fi
            sleep 0.1
        done
    done
    # Every daemon holds the view of three.
    n=0
    for k in 0 1 2; do
        until "$FLOTILLA" members --daemon "${ADDR[k]}" 2>/dev/null | grep -q 'members=3'; do
            n=$((n + 1))
            [ "$n" -lt 300 ] || { log "the cluster did not form"; exit 1; }
            sleep 0.1
        done
    done
    log "cluster $tag up: a=${ADDR[0]} (pid ${PIDS[0]}) b=${ADDR[1]} (pid ${PIDS[1]}) c=${ADDR[2]} (pid ${PIDS[2]})"
}

FAILED=0
# ticks: the CPU time (user + system, clock ticks) each daemon of PIDS has used so far
ticks() {
    local p
    for p in "${PIDS[@]}"; do awk '{ printf "%d ", $14 + $15 }' "/proc/$p/stat" 2>/dev/null || printf '0 '; done
}
# steal: the machine's stolen time so far (clock ticks: a virtual machine's CPUs running
# someone else's work, /proc/stat), so a run the host disturbed shows as such
steal() { awk '/^cpu / { print $9 }' /proc/stat; }
# run NAME ARGS...: one groups-loopback run; its key=value line, with each daemon's share of a CPU
# during the run (cpu_pct=a,b,c) and the share of the machine's CPU time stolen by the host
# (steal_pct), goes to raw.txt and to $NAME.kv
run() {
    local name=$1 rc=0 t0 t1 c0 c1 s0 s1
    shift
    log "groups-loopback $*"
    c0=$(ticks)
    s0=$(steal)
    t0=$EPOCHREALTIME
    "$LOAD" "$@" >"$OUT/$name.kv" 2>"$OUT/$name.err" || rc=$?
    t1=$EPOCHREALTIME
    c1=$(ticks)
    s1=$(steal)
    if [ -s "$OUT/$name.kv" ]; then
        awk -v a="$c0" -v b="$c1" -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" \
            -v s0="$s0" -v s1="$s1" -v cpus="$(nproc)" '
            { n = split(a, x, " "); split(b, y, " "); s = ""
              for (i = 1; i <= n; i++) s = s (i > 1 ? "," : "") sprintf("%.0f", 100 * (y[i] - x[i]) / hz / (t1 - t0))
              print $0 " cpu_pct=" s " steal_pct=" sprintf("%.1f", 100 * (s1 - s0) / hz / (t1 - t0) / cpus) }' \
            "$OUT/$name.kv" >"$OUT/$name.kv.tmp" && mv "$OUT/$name.kv.tmp" "$OUT/$name.kv"
    fi
    sed "s/^/$name /" "$OUT/$name.kv" >>"$OUT/raw.txt"
    cat "$OUT/$name.kv" >&2
    if [ "$rc" != 0 ]; then
        FAILED=1
        log "$name FAILED: $(tr '\n' ' ' <"$OUT/$name.err")"
    fi
}
# counters TAG: what each daemon of a cluster said of its links and clients when it stopped (the
# "groupd stopped" line): peer frames dropped on full queues, items sent again, clients evicted.
counters() {
    local name
    for name in a b c; do
        printf '%s: ' "$name"
        grep -h 'groupd stopped' "$OUT/logs/$1-$name.err" 2>/dev/null |
            grep -oE '(frames_out|frames_dropped|slow_clients|resent): [0-9]+' | tr -d ' ' | tr ':\n' '= ' || true
        echo
    done
}
# kv NAME KEY: a field of a run's line (NA if missing)
kv() {
    awk -v k="$2" '{ for (i = 1; i <= NF; i++) { split($i, a, "="); if (a[1] == k) { print a[2]; f = 1 } } }
        END { if (!f) print "NA" }' "$OUT/$1.kv" 2>/dev/null || echo NA
}

############################################################ 1. flotilla: throughput and latency
cluster_up tput
run small tput --messages "$N_SMALL" --size 100 --window "$WINDOW" --credit "$CREDIT" \
    "${ADDR[0]}" "${ADDR[1]}" "${ADDR[2]}"
run big tput --messages "$N_BIG" --size 10240 --window "$WINDOW" --credit "$CREDIT" \
    "${ADDR[0]}" "${ADDR[1]}" "${ADDR[2]}"
if [ "$RATE" != 0 ]; then
    run paced tput --messages "$RATE_MSGS" --size 100 --rate "$RATE" --window "$WINDOW" \
        --credit "$CREDIT" "${ADDR[0]}" "${ADDR[1]}" "${ADDR[2]}"
fi
if [ "$BINARY" = 1 ]; then
    run small-bin tput --binary --messages "$N_SMALL" --size 100 --window "$WINDOW" --credit "$CREDIT" \
        "${ADDR[0]}" "${ADDR[1]}" "${ADDR[2]}"
    run big-bin tput --binary --messages "$N_BIG" --size 10240 --window "$WINDOW" --credit "$CREDIT" \
        "${ADDR[0]}" "${ADDR[1]}" "${ADDR[2]}"
fi
if [ "$FIFO" = 1 ]; then
    run small-fifo tput --fifo --messages "$N_SMALL" --size 100 --window "$WINDOW" --credit "$CREDIT" \
        "${ADDR[0]}" "${ADDR[1]}" "${ADDR[2]}"
    run big-fifo tput --fifo --messages "$N_BIG" --size 10240 --window "$WINDOW" --credit "$CREDIT" \
        "${ADDR[0]}" "${ADDR[1]}" "${ADDR[2]}"
    # The sender on b, which does not order: agreed messages take two hops (b, the sequencer
    # a, every member), FIFO ones one.
    for m in agreed fifo; do
        f=(); [ "$m" = fifo ] && f=(--fifo)
        run "small-b-$m" tput "${f[@]}" --messages "$N_SMALL" --size 100 --window "$WINDOW" \
            --credit "$CREDIT" "${ADDR[1]}" "${ADDR[0]}" "${ADDR[2]}"
        run "big-b-$m" tput "${f[@]}" --messages "$N_BIG" --size 10240 --window "$WINDOW" \
            --credit "$CREDIT" "${ADDR[1]}" "${ADDR[0]}" "${ADDR[2]}"
    done
    if [ "$RATE" != 0 ]; then
        run paced-fifo tput --fifo --messages "$RATE_MSGS" --size 100 --rate "$RATE" --window "$WINDOW" \
            --credit "$CREDIT" "${ADDR[0]}" "${ADDR[1]}" "${ADDR[2]}"
    fi
fi
cleanup

############################################################ 2. flotilla: idle clients
if [ "$IDLE_CLIENTS" -gt 0 ]; then
    need=$((IDLE_CLIENTS + 200))
    if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
        ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    fi
    log "descriptors: ulimit -n $(ulimit -n)"
    cluster_up idle
    run idle idle --clients "$IDLE_CLIENTS" --pid "${PIDS[0]}" --peer-pids "${PIDS[1]},${PIDS[2]}" \
        "${ADDR[0]}"
    cleanup
fi

############################################################ 3. corosync CPG
CORO=""
if [ "$CPG" != 1 ]; then
    CORO="corosync not run (CPG=$CPG)"
elif [ "$(id -u)" != 0 ]; then
    CORO="corosync not run: it needs root (network namespaces)"
elif [ ! -r "$CORO_SCRIPT" ]; then
    CORO="corosync not run: no $CORO_SCRIPT"
else
    log "corosync: PHASES=tput SIZES=3 TPUT_REPS=1 N_SMALL=$N_SMALL N_BIG=$N_BIG bash $CORO_SCRIPT"
    if ! PHASES=tput SIZES=3 TPUT_REPS=1 N_SMALL=$N_SMALL N_BIG=$N_BIG CPGBENCH=0 INSTALL=$INSTALL \
        bash "$CORO_SCRIPT" "$OUT/corosync" >"$OUT/corosync.log" 2>&1; then
        CORO="corosync FAILED (see $OUT/corosync.log)"
        FAILED=1
    elif [ ! -s "$OUT/corosync/tput.tsv" ]; then
        CORO="corosync gave no figures (see $OUT/corosync.log)"
        FAILED=1
    fi
fi
# coro SIZE: "msgs/s MB/s avg_ms max_ms got/count" over node 1 (the sender's own deliveries) and
# the receivers: the clock runs from the first send until the last node has the last message.
coro() {
    awk -F'\t' -v s="$1" 'NR > 1 && $1 == 3 && $2 == s {
            n++; c = $3; if ($9 > t) t = $9; lat += $12; if ($13 != "NA" && $13 > mx) mx = $13
            if ($7 == $3 && $8 == 0) ok++
        }
        END { if (!n || t <= 0) { print "NA NA NA NA NA"; exit }
              printf "%.0f %.2f %.2f %.2f %d/%d\n", c / t, c * s / t / 1e6, lat / n, mx, ok, n }' \
        "$OUT/corosync/tput.tsv" 2>/dev/null || echo "NA NA NA NA NA"
}

############################################################ the table
{
    echo "client groups against corosync CPG: 3 nodes on one machine, agreed order, one sender"
    echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), kernel $(uname -r)"
    echo "source: $(git describe --always --dirty 2>/dev/null || echo '?') ($(git status --porcelain 2>/dev/null | grep -c . || true) files changed in the work tree)"
    echo "flotilla: 3 groupd on loopback TCP; corosync $(dpkg-query -W -f='${Version}' corosync 2>/dev/null || echo '?'): knet UDP, one network namespace per node"
    echo
    printf '%-26s %-7s %8s %9s %8s %9s %9s %9s %9s %s\n' system size messages msgs/s MB/s "avg ms" "p50 ms" "p99 ms" "max ms" check
    for sz in 100 10240; do
        name=small count=$N_SMALL label="100 B"
        [ "$sz" = 10240 ] && name=big count=$N_BIG label="10 KiB"
        ok=$([ "$(kv $name ok)" = 1 ] && echo ok || echo FAILED)
        printf '%-26s %-7s %8s %9s %8s %9s %9s %9s %9s %s\n' "flotilla groupd" "$label" "$count" \
            "$(kv $name msgs_per_s)" "$(kv $name mb_per_s)" "$(kv $name lat_avg_ms)" \
            "$(kv $name lat_p50_ms)" "$(kv $name lat_p99_ms)" "$(kv $name lat_max_ms)" "$ok"
        if [ -z "$CORO" ]; then
            read -r cm cb ca cx cok <<<"$(coro "$sz")"
            printf '%-26s %-7s %8s %9s %8s %9s %9s %9s %9s %s\n' "corosync CPG" "$label" "$count" \
                "$cm" "$cb" "$ca" - - "$cx" "$cok complete, in order"
            ratio=$(awk -v a="$(kv $name msgs_per_s)" -v b="$cm" 'BEGIN { if (b + 0 > 0 && a + 0 > 0) printf "%.2f", a / b; else print "NA" }')
            printf '%-26s %-7s %8s %9s\n' "flotilla / corosync" "$label" "" "${ratio}x"
        fi
        if [ "$BINARY" = 1 ]; then
            ok=$([ "$(kv $name-bin ok)" = 1 ] && echo ok || echo FAILED)
            printf '%-26s %-7s %8s %9s %8s %9s %9s %9s %9s %s\n' "flotilla groupd, binary" "$label" "$count" \
                "$(kv $name-bin msgs_per_s)" "$(kv $name-bin mb_per_s)" "$(kv $name-bin lat_avg_ms)" \
                "$(kv $name-bin lat_p50_ms)" "$(kv $name-bin lat_p99_ms)" "$(kv $name-bin lat_max_ms)" "$ok"
            if [ -z "$CORO" ]; then
                ratio=$(awk -v a="$(kv $name-bin msgs_per_s)" -v b="$cm" 'BEGIN { if (b + 0 > 0 && a + 0 > 0) printf "%.2f", a / b; else print "NA" }')
                printf '%-26s %-7s %8s %9s\n' "binary / corosync" "$label" "" "${ratio}x"
            fi
        fi
        if [ "$FIFO" = 1 ]; then
            ok=$([ "$(kv $name-fifo ok)" = 1 ] && echo ok || echo FAILED)
            printf '%-26s %-7s %8s %9s %8s %9s %9s %9s %9s %s\n' "flotilla groupd, FIFO" "$label" "$count" \
                "$(kv $name-fifo msgs_per_s)" "$(kv $name-fifo mb_per_s)" "$(kv $name-fifo lat_avg_ms)" \
                "$(kv $name-fifo lat_p50_ms)" "$(kv $name-fifo lat_p99_ms)" "$(kv $name-fifo lat_max_ms)" "$ok"
        fi
    done
    if [ "$RATE" != 0 ]; then
        ok=$([ "$(kv paced ok)" = 1 ] && echo ok || echo FAILED)
        printf '%-26s %-7s %8s %9s %8s %9s %9s %9s %9s %s\n' "flotilla, paced $RATE/s" "100 B" "$RATE_MSGS" \
            "$(kv paced msgs_per_s)" "$(kv paced mb_per_s)" "$(kv paced lat_avg_ms)" \
            "$(kv paced lat_p50_ms)" "$(kv paced lat_p99_ms)" "$(kv paced lat_max_ms)" "$ok"
        if [ "$FIFO" = 1 ]; then
            ok=$([ "$(kv paced-fifo ok)" = 1 ] && echo ok || echo FAILED)
            printf '%-26s %-7s %8s %9s %8s %9s %9s %9s %9s %s\n' "FIFO, paced $RATE/s" "100 B" "$RATE_MSGS" \
                "$(kv paced-fifo msgs_per_s)" "$(kv paced-fifo mb_per_s)" "$(kv paced-fifo lat_avg_ms)" \
                "$(kv paced-fifo lat_p50_ms)" "$(kv paced-fifo lat_p99_ms)" "$(kv paced-fifo lat_max_ms)" "$ok"
        fi
    fi
    if [ "$FIFO" = 1 ]; then
        echo "the sender on b (not the sequencer):"
        for sz in 100 10240; do
            name=small label="100 B" count=$N_SMALL
            [ "$sz" = 10240 ] && name=big label="10 KiB" count=$N_BIG
            for m in agreed fifo; do
                ok=$([ "$(kv $name-b-$m ok)" = 1 ] && echo ok || echo FAILED)
                printf '%-26s %-7s %8s %9s %8s %9s %9s %9s %9s %s\n' "flotilla groupd, b, $m" "$label" "$count" \
                    "$(kv $name-b-$m msgs_per_s)" "$(kv $name-b-$m mb_per_s)" "$(kv $name-b-$m lat_avg_ms)" \
                    "$(kv $name-b-$m lat_p50_ms)" "$(kv $name-b-$m lat_p99_ms)" "$(kv $name-b-$m lat_max_ms)" "$ok"
            done
        done
    fi
    if [ -n "$CORO" ]; then echo "$CORO"; fi
    echo "flotilla daemons' share of a CPU during each run (a,b,c; %): 100 B $(kv small cpu_pct), 10 KiB $(kv big cpu_pct)$([ "$RATE" != 0 ] && echo ", paced $(kv paced cpu_pct)")$([ "$BINARY" = 1 ] && echo "; binary: 100 B $(kv small-bin cpu_pct), 10 KiB $(kv big-bin cpu_pct)")$([ "$FIFO" = 1 ] && echo "; FIFO: 100 B $(kv small-fifo cpu_pct), 10 KiB $(kv big-fifo cpu_pct)")"
    echo "time stolen by the host during each run (% of the machine): 100 B $(kv small steal_pct), 10 KiB $(kv big steal_pct)$([ "$BINARY" = 1 ] && echo ", binary $(kv small-bin steal_pct), $(kv big-bin steal_pct)")"
    echo "flotilla daemons' counters when stopped after these runs:"
    counters tput | sed 's/^/  /'
    if [ "$IDLE_CLIENTS" -gt 0 ]; then
        echo
        echo "idle clients on one daemon: $(kv idle clients) connected (each joined a group of its own) in $(kv idle open_s) s;" \
            "VmRSS $(kv idle rss_before_kb) -> $(kv idle rss_after_kb) KiB = $(kv idle bytes_per_client) bytes per client;" \
            "the other daemons grew by $(kv idle peer_rss_delta_kb) KiB;" \
            "with all connected: members in $(kv idle members_ms) ms, $(kv idle probe_delivered) messages delivered in $(kv idle probe_ms) ms;" \
            "check $([ "$(kv idle ok)" = 1 ] && echo ok || echo FAILED)"
    fi
} | tee "$OUT/results.txt"
exit "$FAILED"
