#!/usr/bin/env bash
# Durable writes per second: a flotilla mothership with --state against etcd's
# single-node server, side by side on this machine, driven by the same client
# (benches/durable_load.rs: one persistent connection per writer, the next write sent
# when the last is acknowledged). Four servers: flotilla on a small configuration and
# on a 64 MiB one (a configuration file of 62,000 parameters of 1,000 bytes), etcd on an
# empty keyspace and on 64 MB of keys; each with 1 and 8 writers, each figure the median
# of RUNS runs of SECS seconds. Results go in BENCHMARKS.md.
#
#   benches/durable-vs-etcd.sh                 # RUNS=3 SECS=5 by default
#   RUNS=5 SECS=10 benches/durable-vs-etcd.sh
#
# Needs etcd (Debian: apt-get install etcd-server); installs it when run as root on a
# machine with apt-get. Data goes to a temporary directory under target/ (same disk for
# both), removed at the end.
set -euo pipefail

RUNS=${RUNS:-3}
SECS=${SECS:-5}
cd "$(dirname "$0")/.."

if ! command -v etcd >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing etcd-server (apt-get)..." >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server >/dev/null
    else
        echo "error: etcd is not installed (Debian: apt-get install etcd-server)" >&2
        exit 1
    fi
fi

cargo build --quiet --release -p flotilla -p flotilla-benches --bin flotilla --bin durable-load
FLOTILLA=target/release/flotilla
LOAD=target/release/durable-load

WORK=$(mktemp -d "$PWD/target/durable-bench.XXXXXX")
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# The median of RUNS runs of durable-load with the given arguments (writes/s).
measure() {
    i=0
    : >"$WORK/runs"
    while [ "$i" -lt "$RUNS" ]; do
        "$LOAD" "$@" --seconds "$SECS" | awk '{print $1}' >>"$WORK/runs"
        i=$((i + 1))
    done
    sort -n "$WORK/runs" | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'
}

wait_port() {
    n=0
    until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        n=$((n + 1))
        [ "$n" -lt 600 ] || { echo "error: nothing listens on port $1" >&2; exit 1; }
        sleep 0.1
    done
}

# A port nothing listens on now.
free_port() {
    while :; do
        p=$((30000 + RANDOM % 20000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
}

row() { printf '%-34s %10s %10s\n' "$1" "$2" "$3"; }

flotilla_case() {
    name=$1 conf=$2
    out="$WORK/${name// /-}"
    "$FLOTILLA" mothership --listen 127.0.0.1:0 --config "$conf" \
        --state "$out.state" >"$out.out" 2>"$out.err" &
    pid=$!
    PIDS="$PIDS $pid"
    # The ready line names the port: "mothership listening on 127.0.0.1:PORT".
    n=0
    until port=$(awk -F: '/listening on/ {print $NF; exit}' "$out.out") && [ -n "$port" ]; do
        n=$((n + 1))
        [ "$n" -lt 1200 ] || { echo "error: the mothership did not start: $(cat "$out.err")" >&2; exit 1; }
        sleep 0.1
    done
    one=$(measure flotilla "127.0.0.1:$port" --writers 1)
    eight=$(measure flotilla "127.0.0.1:$port" --writers 8)
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    row "flotilla, $name" "$one" "$eight"
}

etcd_case() {
    name=$1 fill=$2
    port=$(free_port)
    peer=$(free_port)
    etcd --data-dir "$WORK/etcd-${name// /-}" --name bench \
        --listen-client-urls "http://127.0.0.1:$port" \
        --advertise-client-urls "http://127.0.0.1:$port" \
        --listen-peer-urls "http://127.0.0.1:$peer" \
        --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "bench=http://127.0.0.1:$peer" \
        >"$WORK/etcd-${name// /-}.log" 2>&1 &
    pid=$!
    PIDS="$PIDS $pid"
    wait_port "$port"
    if [ "$fill" -gt 0 ]; then
        "$LOAD" etcd "127.0.0.1:$port" --fill "$fill" >/dev/null
    fi
    one=$(measure etcd "127.0.0.1:$port" --writers 1)
    eight=$(measure etcd "127.0.0.1:$port" --writers 8)
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    row "etcd $(etcd --version | awk 'NR==1 {print $3}'), $name" "$one" "$eight"
}

echo '(:param mode fast)' >"$WORK/small.conf"
# 62 nodes of 1,000 parameters of 1,000 bytes: 63 MB of file, just under the 64 MiB
# limit once encoded (a node holds at most 10,000 parameters).
awk 'BEGIN {
    v = sprintf("%1000s", ""); gsub(/ /, "x", v)
    print "(:param mode fast)"
    for (n = 0; n < 62; n++) {
        printf "(:node fill%d\n", n
        for (k = 0; k < 1000; k++) printf "  (:param p%d %s)\n", k, v
        print ")"
    }
}' >"$WORK/big.conf"

echo "durable writes/s, 100-byte values, median of $RUNS runs of ${SECS}s; $(nproc) cores"
row "server" "1 writer" "8 writers"
flotilla_case "small tree" "$WORK/small.conf"
flotilla_case "64 MiB configuration" "$WORK/big.conf"
etcd_case "empty keyspace" 0
etcd_case "64 MB keyspace" 64000000
