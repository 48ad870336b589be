#!/usr/bin/env bash
# Membership side by side: flotilla's membership daemon (`flotilla groupd`) against two "anchors",
# serf (HashiCorp; SWIM gossip with Lifeguard) and corosync (Totem ring over knet), on this machine and
# under the same conditions.
#
# What it measures, for every system (every corosync profile too) and every cluster size N:
#   1. Failure detection / view convergence. N daemons, all joined. `kill -9` one of them and take the
#      time from the kill until EVERY survivor's membership no longer lists it. Each survivor is polled
#      with the system's own CLI, with POLL_SLEEP between queries; the poll period actually achieved is
#      reported, since each query costs a few ms on top of the sleep. There are TRIALS trials and the
#      victim rotates n1, n2, .... After each trial the victim is restarted, and the time until all N
#      list each other again goes into the raw output. The table gives min / median / max over trials.
#   2. Steady-state load. The cluster is idle (SETTLE s after it formed). For each daemon, count the
#      packets and bytes it sends in a WINDOW-second window. The count is the tx counter of eth0 in the
#      daemon's own network namespace (/proc/net/dev; Ethernet frames with their headers, ARP included,
#      which is a few frames a minute). The table shows the mean over the daemons. The raw output also
#      keeps received traffic and the UDP datagrams / TCP segments sent (/proc/net/snmp). WINDOW is 30 s
#      by default because serf's TCP push/pull and reconnect timers run every 30 s: a shorter window
#      catches them, or misses them, by chance.
#
# How: every daemon runs in a network namespace of its own, as one "host" with address 10.98.0.K
# (K = 1..N). Its eth0 is one end of a veth pair whose other end sits on a bridge in a further namespace.
# The whole run happens inside a private network + mount namespace (unshare), with the namespace names on
# a private tmpfs, so no 10.x packet ever leaves the machine and no name can clash with anything else.
# This is the same method for all three systems (corosync needs distinct addresses anyway):
#   serf      serf agent -node=nK -bind=10.98.0.K:7946 -rpc-addr=127.0.0.1:7373 [-join=10.98.0.1:7946]
#             (default LAN profile, no encryption, no snapshot); polled with
#             `serf members -rpc-addr=127.0.0.1:7373 -status=alive` inside the survivor's namespace.
#   corosync  corosync -f, knet transport, crypto off, static nodelist n1..nN, votequorum. Each node also
#             gets a private mount namespace (own /run, /dev/shm, /var/lib/corosync). Polled with
#             `corosync-quorumtool -l` in the survivor's network + mount namespace.
#             Profiles (CORO_PROFILES): default = token 3000; t300 = "token: 300" (corosync then adds
#             token_coefficient 650 ms per node beyond 2, so the runtime token is 2250 ms at N=5);
#             t300c0 = token 300 with token_coefficient 0 (optional). The runtime token and consensus
#             timeouts are read back with corosync-cmapctl and printed in the table.
#   flotilla  target/release/flotilla, built at the start with `cargo build --release -p flotilla`:
#             `flotilla groupd --name nK --listen 10.98.0.K:4803 [--join 10.98.0.1:4803]` (ready when it
#             prints "listening on"); polled with `flotilla members --daemon 10.98.0.K:4803`, whose first
#             line is `view EPOCH COORDINATOR primary|non-primary members=N` and then `NAME ADDRESS ...`
#             for each member. If the binary has no `groupd`/`members` subcommand (or fails to build),
#             flotilla's rows say "flotilla groupd not available" and the other systems still run.
#
# Usage (root; Linux network namespaces):
#   benches/membership-vs-anchors.sh                      # N=5, 3 trials, all systems: about 4 minutes
#   SIZES="5 10" TRIALS=5 benches/membership-vs-anchors.sh
#   SYSTEMS="serf corosync" CORO_PROFILES="default t300 t300c0" benches/membership-vs-anchors.sh
# Env knobs:
#   SIZES="5"                       cluster sizes N (N=10 adds about 5.5 minutes)
#   TRIALS=3                        kill -9 trials per system/profile/N
#   SYSTEMS="serf corosync flotilla"
#   CORO_PROFILES="default t300"    corosync profiles (default, t300, t300c0)
#   WINDOW=30 SETTLE=5              steady-state window, and the idle time before it (s)
#   POLL_SLEEP=0.01                 sleep between two membership queries of one survivor (s)
#   DETECT_TIMEOUT=60               give up on a trial's detection after this many seconds
#   FORM_TIMEOUT=60                 give up on a cluster forming (or a victim rejoining) after this many s
#   TRIAL_GAP=2                     idle seconds between a rejoin and the next kill
#   OUT=target/membership-bench     results: results.md (the table), detect.tsv, load.tsv, env.txt, logs/
#   FLOTILLA=target/release/flotilla  the binary to use; BUILD=0 skips the cargo build
#   INSTALL=1                       install missing packages (serf, corosync) with apt-get (root + apt-get
#                                   present); INSTALL=0 fails instead
# Needs: root, iproute2, util-linux (unshare, nsenter), coreutils, gawk or mawk; serf and corosync from
# Debian (it installs them with apt-get when run as root and they are missing); cargo for flotilla.
# Everything it starts, it stops by PID (trap on exit). It deletes only the namespaces it made, which live
# in its own private namespace anyway. Each system/profile/N runs in a subshell of its own: if one fails
# (a daemon exits, a cluster does not form, a wait times out), its daemons are stopped, its row in the
# table says FAILED with the reason, and the other cases still run.
set -Eeuo pipefail

SIZES=${SIZES:-5}
TRIALS=${TRIALS:-3}
SYSTEMS=${SYSTEMS:-serf corosync flotilla}
CORO_PROFILES=${CORO_PROFILES:-default t300}
WINDOW=${WINDOW:-30}
SETTLE=${SETTLE:-5}
POLL_SLEEP=${POLL_SLEEP:-0.01}
DETECT_TIMEOUT=${DETECT_TIMEOUT:-60}
FORM_TIMEOUT=${FORM_TIMEOUT:-60}
TRIAL_GAP=${TRIAL_GAP:-2}
INSTALL=${INSTALL:-1}
BUILD=${BUILD:-1}
SUBNET=10.98.0
SERF_PORT=7946
SERF_RPC=7373
FL_PORT=4803

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    log "FATAL: $*"
    if [ -n "${W:-}" ] && [ -d "${W:-}" ]; then printf '%s\n' "$*" >"$W/lastfail"; fi
    exit 1
}
on_err() { log "command failed (exit $1) at line $2: $3"; }
trap 'on_err $? $LINENO "$BASH_COMMAND"' ERR

SELF=$(readlink -f "$0")
ROOT=$(cd "$(dirname "$SELF")/.." && pwd)
cd "$ROOT"

############################################################################ stage 0: outside the sandbox
if [ -z "${MEMBENCH_INSIDE:-}" ]; then
    [ "$(id -u)" = 0 ] || die "run as root: every daemon gets its own network namespace"
    OUT=${OUT:-target/membership-bench}
    mkdir -p "$OUT"
    OUT=$(cd "$OUT" && pwd)
    rm -rf "$OUT/logs"
    rm -f "$OUT/results.md" "$OUT/detect.tsv" "$OUT/load.tsv" "$OUT/env.txt" "$OUT/cargo-build.log"
    mkdir -p "$OUT/logs"

    # packages: command -> Debian package
    need=""
    for c in ip:iproute2 nsenter:util-linux unshare:util-linux timeout:coreutils awk:mawk; do
        command -v "${c%%:*}" >/dev/null 2>&1 || need="$need ${c#*:}"
    done
    case " $SYSTEMS " in *" serf "*) command -v serf >/dev/null 2>&1 || need="$need serf" ;; esac
    case " $SYSTEMS " in *" corosync "*)
        for c in corosync corosync-quorumtool corosync-cmapctl; do
            command -v "$c" >/dev/null 2>&1 || { need="$need corosync"; break; }
        done ;;
    esac
    if [ -n "$need" ]; then
        if [ "$INSTALL" = 1 ] && command -v apt-get >/dev/null 2>&1; then
            log "installing with apt-get:$need"
            apt-get update -qq
            # shellcheck disable=SC2086 # word splitting of the package list is intended
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
        else
            die "missing packages:$need (install them, or run as root with INSTALL=1 on a machine with apt-get)"
        fi
    fi
    # On a machine with systemd, installing the corosync package also starts corosync.service (one node,
    # default configuration). This script leaves that service alone; its own corosyncs have private
    # network and mount namespaces (own /run, /dev/shm, /var/lib/corosync) and do not meet it.

    FL_STATUS=ok
    FLOTILLA=${FLOTILLA:-$ROOT/target/release/flotilla}
    case " $SYSTEMS " in *" flotilla "*)
        if [ "$BUILD" = 1 ]; then
            log "building flotilla: cargo build --release -p flotilla (log: $OUT/cargo-build.log)"
            if ! command -v cargo >/dev/null 2>&1; then
                FL_STATUS="flotilla groupd not available: cargo not found (PATH under sudo?), nothing built"
            elif ! timeout 1200 cargo build --release -p flotilla >"$OUT/cargo-build.log" 2>&1; then
                # (bounded: another cargo holding the build lock would otherwise keep us waiting)
                FL_STATUS="flotilla groupd not available: cargo build --release -p flotilla failed or took over 20 min (see cargo-build.log)"
            fi
        fi
        if [ "$FL_STATUS" = ok ]; then
            FLOTILLA=$(readlink -f "$FLOTILLA" || echo "$FLOTILLA")
            if [ ! -x "$FLOTILLA" ]; then
                FL_STATUS="flotilla groupd not available: no executable at $FLOTILLA"
            elif ! "$FLOTILLA" groupd --help >/dev/null 2>&1 || ! "$FLOTILLA" members --help >/dev/null 2>&1; then
                FL_STATUS="flotilla groupd not available: $FLOTILLA has no groupd/members subcommand yet"
            fi
        fi
        if [ "$FL_STATUS" != ok ]; then log "$FL_STATUS"; fi ;;
    esac

    export MEMBENCH_INSIDE=1 OUT FLOTILLA FL_STATUS SIZES TRIALS SYSTEMS CORO_PROFILES WINDOW SETTLE \
        POLL_SLEEP DETECT_TIMEOUT FORM_TIMEOUT TRIAL_GAP
    trap - ERR
    # A private network namespace (empty but for lo) and a private mount namespace; exec keeps the PID.
    exec unshare --net --mount --propagation private -- bash "$SELF"
fi

############################################################################ stage 1: inside the sandbox
SFX=$$ # unchanged by exec: a unique suffix for every name
W=$(mktemp -d -t membench.XXXXXX)
BR=mbr-$SFX
NSS=()                # namespaces we created
declare -A PROCS=()   # pid -> what it is: every background process we start
declare -a PID=()     # node k -> daemon pid (0 = not running)
CUR_N=0
CASEPID=""            # the subshell running the current case
SYS=""                # system under test
PROF=""               # its profile

# our own child: of this shell, or of the case subshell we are in
is_child() { [ -r "/proc/$1/stat" ] && [ "$(awk '{print $4}' "/proc/$1/stat" 2>/dev/null)" = "$BASHPID" ]; }
# nap SECONDS: sleep without forking /bin/sleep (that costs ~5 ms, a lot in a poll loop), and so that
# a signal interrupts it at once: a read with a timeout on a pipe that never delivers anything
exec {NAPFD}<> <(:)
nap() { read -r -t "$1" -u "$NAPFD" _ || true; }
is_running() { is_child "$1" && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
stop_pid() { # stop_pid PID [grace_s]: SIGTERM, wait up to grace, SIGKILL. Only our own children.
    local p=$1 g=${2:-5} i
    if is_running "$p"; then
        kill -TERM "$p" 2>/dev/null || true
        for ((i = 0; i < g * 20; i++)); do
            if ! is_running "$p"; then break; fi
            nap 0.05
        done
        if is_running "$p"; then kill -KILL "$p" 2>/dev/null || true; fi
    fi
    wait "$p" 2>/dev/null || true
    unset "PROCS[$p]"
}
cleanup() {
    set +eu
    trap - EXIT ERR
    trap '' INT TERM
    local p ns
    # a running case first: its subshell stops its own daemons on TERM (case_cleanup)
    if [ -n "${CASEPID:-}" ]; then stop_pid "$CASEPID" 90; fi
    for p in "${!PROCS[@]}"; do stop_pid "$p" 10; done
    for ns in "${NSS[@]}"; do ip netns del "$ns" 2>/dev/null; done
    umount /run/netns 2>/dev/null
    rm -rf "$W"
    log "stopped everything we started; results in $OUT"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

mkdir -p /run/netns
mount -t tmpfs -o mode=0755 tmpfs /run/netns || die "cannot mount a private tmpfs on /run/netns"
ip link set lo up

now() { printf '%s' "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'; }
elapsed_gt() { awk -v a="$1" -v b="$EPOCHREALTIME" -v t="$2" 'BEGIN { exit !(b - a > t) }'; }

############################################################################ network
nsname() { printf 'mn%s-%s' "$1" "$SFX"; }
net_up() { # net_up N: bridge namespace plus N node namespaces, eth0 = 10.98.0.K/24
    local n=$1 k ns
    ip netns add "$BR"
    NSS+=("$BR")
    ip -n "$BR" link set lo up
    ip -n "$BR" link add br0 type bridge
    ip -n "$BR" link set br0 up
    for ((k = 1; k <= n; k++)); do
        ns=$(nsname "$k")
        ip netns add "$ns"
        NSS+=("$ns")
        # veth created in the bridge namespace, its peer created directly inside the node's namespace
        ip -n "$BR" link add "v$k" type veth peer name eth0 netns "$ns"
        ip -n "$BR" link set "v$k" master br0
        ip -n "$BR" link set "v$k" up
        ip -n "$ns" link set lo up
        ip -n "$ns" addr add "$SUBNET.$k/24" dev eth0
        ip -n "$ns" link set eth0 up
    done
    CUR_N=$n # the bridge has no STP: its ports forward as soon as they are up
}
net_down() {
    local ns
    for ns in "${NSS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    NSS=()
    CUR_N=0
}
in_net() { # in_net K CMD...: run CMD in node K's network namespace
    local k=$1
    shift
    nsenter --net="/run/netns/$(nsname "$k")" -- "$@"
}

############################################################################ corosync configuration
coro_totem() {
    case $1 in
    default) ;;
    t300) echo " token: 300" ;;
    t300c0) printf ' token: 300\n token_coefficient: 0\n' ;;
    *) die "unknown corosync profile $1 (known: default t300 t300c0)" ;;
    esac
}
coro_conf() { # coro_conf N PROFILE: one corosync.conf per node
    local n=$1 prof=$2 k j
    for ((k = 1; k <= n; k++)); do
        mkdir -p "$W/n$k/lib"
        {
            printf 'totem {\n version: 2\n cluster_name: mbench%s\n transport: knet\n crypto_cipher: none\n crypto_hash: none\n' "$SFX"
            coro_totem "$prof"
            printf '}\nnodelist {\n'
            for ((j = 1; j <= n; j++)); do
                printf ' node {\n  ring0_addr: %s.%d\n  name: n%d\n  nodeid: %d\n }\n' "$SUBNET" "$j" "$j" "$j"
            done
            printf '}\nquorum {\n provider: corosync_votequorum\n}\n'
            printf 'logging {\n to_stderr: no\n to_syslog: no\n to_logfile: yes\n logfile: %s\n timestamp: hires\n}\n' "$W/n$k/corosync.log"
        } >"$W/n$k/corosync.conf"
    done
}

############################################################################ per-system operations
# start_node K [JOIN_K]: start the daemon of node K (joining node JOIN_K where the system needs it)
start_node() {
    local k=$1 j=${2:-} ns p
    ns=$(nsname "$k")
    mkdir -p "$W/n$k"
    echo "=== start $(date -Is) $SYS $PROF" >>"$W/n$k/daemon.log"
    case $SYS in
    serf)
        local join=()
        if [ -n "$j" ]; then join=(-join="$SUBNET.$j:$SERF_PORT"); fi
        nsenter --net="/run/netns/$ns" -- serf agent -node="n$k" -bind="$SUBNET.$k:$SERF_PORT" \
            -rpc-addr="127.0.0.1:$SERF_RPC" -log-level=info "${join[@]}" >>"$W/n$k/daemon.log" 2>&1 &
        ;;
    corosync)
        # private /run, /dev/shm and /var/lib/corosync: own pid file, IPC rings and ring-id state
        nsenter --net="/run/netns/$ns" -- unshare --mount --propagation private -- sh -c \
            "mount -t tmpfs -o mode=0755 tmpfs /run && mount -t tmpfs -o mode=1777 tmpfs /dev/shm &&
             mount --bind '$W/n$k/lib' /var/lib/corosync && exec corosync -f -c '$W/n$k/corosync.conf'" \
            >>"$W/n$k/daemon.log" 2>&1 &
        ;;
    flotilla)
        local join=()
        if [ -n "$j" ]; then join=(--join "$SUBNET.$j:$FL_PORT"); fi
        : >"$W/n$k/ready"
        nsenter --net="/run/netns/$ns" -- "$FLOTILLA" groupd --name "n$k" --listen "$SUBNET.$k:$FL_PORT" \
            "${join[@]}" >"$W/n$k/ready" 2>>"$W/n$k/daemon.log" &
        ;;
    esac
    p=$!
    PID[k]=$p
    PROCS[$p]="$SYS n$k"
}

# query K: print node K's current membership listing, the system's own CLI output (exit != 0: no answer)
query() {
    local k=$1
    case $SYS in
    serf) in_net "$k" timeout 5 serf members -rpc-addr="127.0.0.1:$SERF_RPC" -status=alive ;;
    corosync) nsenter -t "${PID[k]}" -n -m -- timeout 5 corosync-quorumtool -l ;;
    flotilla) in_net "$k" timeout 5 "$FLOTILLA" members --daemon "$SUBNET.$k:$FL_PORT" ;;
    esac
}

# parse_names RAW: set NAMES=" nA nB ... " from a query's output; fail if it is not a membership listing
parse_names() {
    local a b line first=1
    NAMES=" "
    case $SYS in
    serf) # "n1  10.98.0.1:7946  alive  [tags]"
        while read -r a b _; do
            if [[ -n $a && $b == *:* ]]; then NAMES+="$a "; fi
        done <<<"$1"
        ;;
    corosync) # header "Nodeid Votes Name", then "1 1 n1 (local)"
        if [[ $1 != *Nodeid* ]]; then return 1; fi
        while read -r a b _; do
            if [[ $a =~ ^[0-9]+$ && $b =~ ^[0-9]+$ ]]; then NAMES+="n$a "; fi
        done <<<"$1"
        ;;
    flotilla) # "view EPOCH COORD primary|non-primary members=N", then "NAME ADDRESS incarnation=HEX"
        while IFS= read -r line; do
            if [ $first = 1 ]; then
                if [[ $line != "view "* ]]; then return 1; fi
                first=0
                continue
            fi
            read -r a b _ <<<"$line"
            if [[ -n $a && -n $b ]]; then NAMES+="$a "; fi
        done <<<"$1"
        if [ $first = 1 ]; then return 1; fi
        ;;
    esac
    [ "$NAMES" != " " ]
}

# node_ready K: the daemon of node K answers (it must still be running)
node_ready() {
    local k=$1 raw
    is_running "${PID[k]}" || die "$SYS n$k (pid ${PID[k]}) exited; its log: $(tail -n 5 "$W/n$k/daemon.log" | tr '\n' ' ')"
    case $SYS in
    flotilla) grep -q 'listening on' "$W/n$k/ready" 2>/dev/null ;;
    *) raw=$(query "$k" 2>/dev/null) && parse_names "$raw" ;;
    esac
}
wait_ready() { # wait_ready K TIMEOUT_S
    local t0
    t0=$(now)
    until node_ready "$1"; do
        if elapsed_gt "$t0" "$2"; then
            die "timed out ($2 s) waiting for $SYS n$1 to be ready (flotilla: a 'listening on' line; others: an answer to its membership query)"
        fi
        nap 0.05
    done
}

# lists_all K N: node K lists exactly n1..nN
lists_all() {
    local k=$1 n=$2 raw j
    raw=$(query "$k" 2>/dev/null) || return 1
    parse_names "$raw" || return 1
    for ((j = 1; j <= n; j++)); do
        if [[ $NAMES != *" n$j "* ]]; then return 1; fi
    done
    local -a arr
    read -r -a arr <<<"$NAMES"
    [ "${#arr[@]}" -eq "$n" ]
}
wait_full() { # wait_full N TIMEOUT_S: every node lists all N; on timeout report what each saw
    local n=$1 tmo=$2 k ok t0
    t0=$(now)
    while :; do
        ok=1
        for ((k = 1; k <= n; k++)); do
            if ! lists_all "$k" "$n"; then
                ok=0
                break
            fi
        done
        if [ $ok = 1 ]; then return 0; fi
        if elapsed_gt "$t0" "$tmo"; then
            log "timed out ($tmo s) waiting for all $n $SYS daemons to list n1..n$n; their views:"
            for ((k = 1; k <= n; k++)); do
                if lists_all "$k" "$n"; then log "  n$k: complete"; else log "  n$k:${NAMES:- no answer}"; fi
            done
            return 1
        fi
        nap 0.05
    done
}

cluster_up() { # cluster_up N
    local n=$1 k
    if [ "$SYS" = corosync ]; then
        coro_conf "$n" "$PROF"
        for ((k = 1; k <= n; k++)); do start_node "$k"; done
    else
        start_node 1
        wait_ready 1 30
        for ((k = 2; k <= n; k++)); do start_node "$k" 1; done
    fi
    for ((k = 1; k <= n; k++)); do wait_ready "$k" 30; done
    wait_full "$n" "$FORM_TIMEOUT" || die "$SYS ($PROF) N=$n did not form"
}
cluster_down() {
    local k
    for ((k = 1; k <= CUR_N; k++)); do
        if [ "${PID[k]:-0}" != 0 ]; then stop_pid "${PID[k]}" 10; fi
        PID[k]=0
    done
}
save_logs() { # save_logs TAG
    local k
    for ((k = 1; k <= CUR_N; k++)); do
        if [ -f "$W/n$k/daemon.log" ]; then mv "$W/n$k/daemon.log" "$OUT/logs/$1-n$k-daemon.log"; fi
        if [ -f "$W/n$k/corosync.log" ]; then mv "$W/n$k/corosync.log" "$OUT/logs/$1-n$k-corosync.log"; fi
        if [ -f "$W/n$k/corosync.conf" ]; then mv "$W/n$k/corosync.conf" "$OUT/logs/$1-corosync.conf"; fi
        if [ -f "$W/n$k/ready" ]; then mv "$W/n$k/ready" "$OUT/logs/$1-n$k-stdout.log"; fi
    done
}

############################################################################ steady-state load
# counters K: "tx_packets tx_bytes rx_packets rx_bytes udp_out_datagrams tcp_out_segments" of node K's netns
counters() {
    in_net "$1" cat /proc/net/dev /proc/net/snmp | awk '
        /eth0:/ { s = $0; sub(/.*eth0:/, "", s); split(s, f, " "); rxb = f[1]; rxp = f[2]; txb = f[9]; txp = f[10] }
        /^Udp:/ { if (!uh) { for (i = 2; i <= NF; i++) un[i] = $i; uh = 1 } else { for (i = 2; i <= NF; i++) if (un[i] == "OutDatagrams") uo = $i } }
        /^Tcp:/ { if (!th) { for (i = 2; i <= NF; i++) tn[i] = $i; th = 1 } else { for (i = 2; i <= NF; i++) if (tn[i] == "OutSegs") to = $i } }
        END { print txp + 0, txb + 0, rxp + 0, rxb + 0, uo + 0, to + 0 }'
}
measure_load() { # measure_load N: one WINDOW-second window, one row per daemon in load.tsv
    local n=$1 k t0 t1 secs
    local -a c0 c1
    for ((k = 1; k <= n; k++)); do c0[k]=$(counters "$k"); done
    t0=$(now)
    nap "$WINDOW"
    for ((k = 1; k <= n; k++)); do c1[k]=$(counters "$k"); done
    t1=$(now)
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    for ((k = 1; k <= n; k++)); do
        is_running "${PID[k]}" || die "$SYS n$k died during the steady-state window"
        awk -v a="${c0[k]}" -v b="${c1[k]}" -v s="$secs" -v pre="$n\t$SYS\t$PROF\tn$k" 'BEGIN {
            split(a, x, " "); split(b, y, " ")
            printf "%s\t%.3f", pre, s
            for (i = 1; i <= 6; i++) printf "\t%.1f", (y[i] - x[i]) / s
            printf "\n" }' | tee -a "$OUT/load.tsv" >&2
    done
}

############################################################################ failure detection
# poller K VICTIM DEADLINE_EPOCH_S: query node K until the victim is gone (after having seen it listed)
# prints "SEEN t", then "GONE t polls=P period_ms=X" or "TIMEOUT polls=P"
poller() {
    set +e
    trap - ERR
    local k=$1 v=$2 dl=$3 raw rc t seen=0 polls=0 t_seen=""
    while :; do
        raw=$(query "$k" 2>/dev/null)
        rc=$?
        t=$EPOCHREALTIME
        polls=$((polls + 1))
        if [ $rc = 0 ] && parse_names "$raw"; then
            if [[ $NAMES == *" $v "* ]]; then
                if [ $seen = 0 ]; then
                    echo "SEEN $t"
                    seen=1
                    t_seen=$t
                    polls=0
                fi
            elif [ $seen = 1 ]; then
                echo "GONE $t polls=$polls period_ms=$(awk -v a="$t_seen" -v b="$t" -v p="$polls" 'BEGIN { printf "%.1f", 1000 * (b - a) / p }')"
                return 0
            fi
        fi
        if [ "${t%.*}" -ge "$dl" ]; then
            echo "TIMEOUT polls=$polls"
            return 1
        fi
        nap "$POLL_SLEEP"
    done
}

trial() { # trial N T
    local n=$1 t=$2 v k t0 dl first last period rj j
    local -A PP=()
    v=$(((t - 1) % n + 1))
    wait_full "$n" "$FORM_TIMEOUT" || die "$SYS ($PROF) N=$n not complete before trial $t"
    dl=$((EPOCHSECONDS + DETECT_TIMEOUT + 10))
    for ((k = 1; k <= n; k++)); do
        if [ "$k" = "$v" ]; then continue; fi
        poller "$k" "n$v" "$dl" >"$W/poll$k" 2>/dev/null &
        PP[$k]=$!
        PROCS[$!]="poller n$k"
    done
    # every survivor's poller has seen the victim listed before the kill
    t0=$(now)
    for k in "${!PP[@]}"; do
        until grep -q '^SEEN' "$W/poll$k"; do
            if elapsed_gt "$t0" 15; then die "timed out (15 s) waiting for the poller of n$k to see n$v listed"; fi
            nap 0.02
        done
    done
    nap 0.3
    t0=$(now)
    kill -KILL "${PID[v]}"
    wait "${PID[v]}" 2>/dev/null || true
    unset "PROCS[${PID[v]}]"
    PID[v]=0
    # each poller stops by itself: victim gone, or its deadline (DETECT_TIMEOUT + 10 s)
    for k in "${!PP[@]}"; do
        wait "${PP[$k]}" 2>/dev/null || true
        unset "PROCS[${PP[$k]}]"
    done
    read -r first last period < <(for k in "${!PP[@]}"; do cat "$W/poll$k"; done | awk -v t0="$t0" -v lim="$DETECT_TIMEOUT" '
        $1 == "TIMEOUT" { na = 1 }
        $1 == "GONE" { d = $2 - t0; if (d > lim) na = 1; if (min == "" || d < min) min = d; if (d > max) max = d
                       split($4, p, "="); ps += p[2]; pn++ }
        END { if (na || pn == 0) printf "NA NA"; else printf "%.3f %.3f", min, max
              if (pn) printf " %.1f\n", ps / pn; else print " NA" }')
    for k in "${!PP[@]}"; do sed "s/^/n$k /" "$W/poll$k" >>"$OUT/logs/$SYS-$PROF-n$n-trial$t-poll.txt"; done
    # restart the victim (joining the lowest survivor), time until all N list each other again
    j=1
    if [ "$v" = 1 ]; then j=2; fi
    t0=$(now)
    start_node "$v" "$j"
    wait_ready "$v" 30
    if wait_full "$n" "$FORM_TIMEOUT"; then rj=$(since "$t0"); else die "n$v did not rejoin within $FORM_TIMEOUT s"; fi
    printf '%s\t%s\t%s\t%s\tn%s\t%s\t%s\t%s\t%s\n' "$n" "$SYS" "$PROF" "$t" "$v" "$first" "$last" "$period" "$rj" |
        tee -a "$OUT/detect.tsv" >&2
    nap "$TRIAL_GAP"
}

# case_guarded N SYSTEM PROFILE: run_case in a subshell; on failure stop its daemons, keep its logs,
# note the reason for the table and go on
case_guarded() {
    local rc
    trap - ERR # the subshell's own failure is reported below, not as a failed command
    set +e
    # in the background plus `wait`, so that a signal to this script is handled at once
    (
        set -e
        trap 'on_err $? $LINENO "$BASH_COMMAND"' ERR
        trap 'case_cleanup' EXIT
        trap 'exit 130' INT TERM
        run_case "$@"
    ) &
    CASEPID=$!
    wait "$CASEPID"
    rc=$?
    CASEPID=""
    set -e
    trap 'on_err $? $LINENO "$BASH_COMMAND"' ERR
    if [ "$rc" = 130 ]; then exit 130; fi
    if [ "$rc" != 0 ]; then
        local why="exit $rc"
        if [ -s "$W/lastfail" ]; then why=$(cat "$W/lastfail"); fi
        rm -f "$W/lastfail"
        printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$why" >>"$W/failed"
        log "$2 ($3) N=$1 FAILED: $why; going on with the next case"
    fi
}
case_cleanup() {
    set +eu
    trap - ERR
    trap '' INT TERM
    local p
    for p in "${!PROCS[@]}"; do stop_pid "$p" 10; done
    save_logs "$SYS-$PROF-n$CUR_N"
}

run_case() { # run_case N SYSTEM PROFILE
    local n=$1 t tag
    SYS=$2
    PROF=$3
    tag="$SYS-$PROF-n$n"
    log "=== $SYS ($PROF), N=$n: forming the cluster"
    cluster_up "$n"
    if [ "$SYS" = corosync ]; then
        local tok cons
        tok=$(nsenter -t "${PID[1]}" -n -m -- corosync-cmapctl -g runtime.config.totem.token | awk '{print $NF}')
        cons=$(nsenter -t "${PID[1]}" -n -m -- corosync-cmapctl -g runtime.config.totem.consensus | awk '{print $NF}')
        printf '%s\t%s\t%s\ttoken=%s consensus=%s\n' "$n" "$SYS" "$PROF" "$tok" "$cons" >>"$W/notes"
        log "corosync runtime timeouts: token $tok ms, consensus $cons ms"
    fi
    log "$tag: formed; idle ${SETTLE}s, then the ${WINDOW}s steady-state window"
    nap "$SETTLE"
    measure_load "$n"
    for ((t = 1; t <= TRIALS; t++)); do
        log "$tag: trial $t/$TRIALS (kill -9 n$(((t - 1) % n + 1)))"
        trial "$n" "$t"
    done
    cluster_down
    save_logs "$tag"
}

############################################################################ summary
summarize() {
    local res=$OUT/results.md
    {
        echo "# Membership: flotilla groupd vs serf and corosync ($(date -Is))"
        echo
        echo "Machine: $(nproc) cores, $(uname -r). $(cat "$W/versions")"
        echo "Command: SIZES=\"$SIZES\" TRIALS=$TRIALS SYSTEMS=\"$SYSTEMS\" CORO_PROFILES=\"$CORO_PROFILES\" WINDOW=$WINDOW SETTLE=$SETTLE POLL_SLEEP=$POLL_SLEEP benches/membership-vs-anchors.sh"
        echo
        echo "| system (profile) | N | detection min / median / max (s) | pkts/s sent per daemon | bytes/s sent per daemon | method |"
        echo "|---|---|---|---|---|---|"
        local n sys prof det load meth note
        for n in $SIZES; do
            for sys in $SYSTEMS; do
                local profs=default
                if [ "$sys" = corosync ]; then profs=$CORO_PROFILES; fi
                for prof in $profs; do
                    if [ "$sys" = flotilla ] && [ "$FL_STATUS" != ok ]; then
                        echo "| flotilla groupd | $n | $FL_STATUS | – | – | – |"
                        continue
                    fi
                    local failed
                    failed=$(awk -F'\t' -v n="$n" -v s="$sys" -v p="$prof" '$1 == n && $2 == s && $3 == p { print $4 }' "$W/failed")
                    if [ -n "$failed" ]; then
                        echo "| $sys ($prof) | $n | FAILED: $failed | – | – | logs/$sys-$prof-n$n-* |"
                        continue
                    fi
                    det=$(awk -F'\t' -v n="$n" -v s="$sys" -v p="$prof" '$1 == n && $2 == s && $3 == p {
                            if ($7 == "NA") na++; else v[++c] = $7; if ($8 != "NA") { ps += $8; pn++ } }
                        END {
                            if (c == 0) { printf "no detection (%d timeouts)|NA", na; exit }
                            for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
                            m = (c % 2) ? v[(c + 1) / 2] : (v[c / 2] + v[c / 2 + 1]) / 2
                            printf "%.2f / %.2f / %.2f", v[1], m, v[c]
                            if (na) printf " (+%d timed out)", na
                            printf "|%.0f", pn ? ps / pn : 0 }' "$OUT/detect.tsv" 2>/dev/null || echo "NA|NA")
                    load=$(awk -F'\t' -v n="$n" -v s="$sys" -v p="$prof" '$1 == n && $2 == s && $3 == p { pk += $6; by += $7; c++ }
                        END { if (c) printf "%.1f|%.0f", pk / c, by / c; else printf "NA|NA" }' "$OUT/load.tsv" 2>/dev/null || echo "NA|NA")
                    note=$(awk -F'\t' -v n="$n" -v s="$sys" -v p="$prof" '$1 == n && $2 == s && $3 == p { print $4 }' "$W/notes" 2>/dev/null || true)
                    case $sys in
                    serf) meth="\`serf members -status=alive\`" ;;
                    corosync) meth="knet, runtime ${note:-?}; \`corosync-quorumtool -l\`" ;;
                    flotilla) meth="\`flotilla members\`" ;;
                    esac
                    meth="$meth, poll every ≈${det##*|} ms; load: eth0 tx, ${WINDOW} s"
                    echo "| $sys ($prof) | $n | ${det%|*} | ${load%|*} | ${load#*|} | $meth |"
                done
            done
        done
        echo
        echo "Detection: seconds from \`kill -9\` until the LAST survivor's membership query stopped listing the victim"
        echo "(TRIALS=$TRIALS trials; the victim rotates n1, n2, ...; the poll period is the mean over survivors and"
        echo "trials, and bounds the resolution). Load: frames and bytes (Ethernet headers included) each daemon sent"
        echo "on the eth0 of its own network namespace during ${WINDOW} s of idle cluster, mean over the N daemons."
        echo "Every daemon runs in its own network namespace, address 10.98.0.K, bridged. Raw: detect.tsv, load.tsv, logs/."
    } >"$res"
    cat "$res"
}

############################################################################ main
{
    printf 'n\tsystem\tprofile\ttrial\tvictim\tfirst_survivor_s\tall_survivors_s\tpoll_period_ms\trejoin_s\n'
} >"$OUT/detect.tsv"
printf 'n\tsystem\tprofile\tnode\twindow_s\ttx_pkts_per_s\ttx_bytes_per_s\trx_pkts_per_s\trx_bytes_per_s\tudp_out_per_s\ttcp_out_segs_per_s\n' >"$OUT/load.tsv"
: >"$W/notes"
: >"$W/failed"
{
    v=""
    case " $SYSTEMS " in *" serf "*) v="$v serf $(serf version | awk 'NR == 1 { print $1 }') (Debian $(dpkg-query -W -f='${Version}' serf 2>/dev/null || echo '?'))." ;; esac
    case " $SYSTEMS " in *" corosync "*) v="$v corosync $(dpkg-query -W -f='${Version}' corosync 2>/dev/null || echo '?'), libknet1 $(dpkg-query -W -f='${Version}' libknet1 2>/dev/null || echo '?')." ;; esac
    case " $SYSTEMS " in *" flotilla "*) v="$v flotilla $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo '+changes')." ;; esac
    echo "${v# }"
} >"$W/versions"
{
    echo "date: $(date -Is)"
    echo "kernel: $(uname -r); cpus: $(nproc)"
    cat "$W/versions"
    echo "SIZES=$SIZES TRIALS=$TRIALS SYSTEMS=$SYSTEMS CORO_PROFILES=$CORO_PROFILES WINDOW=$WINDOW SETTLE=$SETTLE POLL_SLEEP=$POLL_SLEEP DETECT_TIMEOUT=$DETECT_TIMEOUT"
    echo "flotilla: $FLOTILLA ($FL_STATUS)"
} >"$OUT/env.txt"

for n in $SIZES; do
    net_up "$n"
    for sys in $SYSTEMS; do
        case $sys in
        serf) case_guarded "$n" serf default ;;
        corosync) for prof in $CORO_PROFILES; do case_guarded "$n" corosync "$prof"; done ;;
        flotilla)
            if [ "$FL_STATUS" = ok ]; then
                case_guarded "$n" flotilla default
            else
                log "$FL_STATUS"
            fi
            ;;
        *) die "unknown system $sys (known: serf corosync flotilla)" ;;
        esac
    done
    net_down
done
summarize
